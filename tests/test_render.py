"""RGB scaling and GIF writing on small in-memory stacks (no server needed)."""

from __future__ import annotations

import io
import os
import pickle

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import s2intake  # noqa: F401  (registers the accessor)
from s2intake import RenderError, render
from s2intake.render import to_gif, to_rgb, write_atomic


def _stack(values: np.ndarray, times: int = 1) -> xr.Dataset:
    arr = np.broadcast_to(values, (times, *values.shape)).copy()
    data = {}
    for i, band in enumerate(["red", "green", "blue"]):
        layer = np.where(arr == 0, 0, arr + i).astype(arr.dtype)
        data[band] = (("time", "y", "x"), da.from_array(layer, chunks=(1, 16, 16)))
    return xr.Dataset(data, coords={
        "time": pd.date_range("2020-09-01", periods=times, freq="5D"),
        "y": np.arange(values.shape[0]) * -10.0, "x": np.arange(values.shape[1]) * 10.0})


def test_rgb_clamps_scales_and_makes_nodata_transparent():
    values = np.array([[0, 1, 750], [1500, 3000, 100]], dtype=np.uint16)
    ds = _stack(values)
    rgba = ds.s2.to_rgb(clamp=(1, 1500)).compute()
    assert rgba.dtype == np.uint8 and rgba.dims == ("time", "y", "x", "band")
    assert list(rgba["band"].values) == ["r", "g", "b", "a"]
    red = rgba.sel(band="r").values[0]
    alpha = rgba.sel(band="a").values[0]
    assert alpha.tolist() == [[0, 255, 255], [255, 255, 255]]
    assert red.tolist() == [[0, 0, round(749 * 255 / 1499)], [255, 255, round(99 * 255 / 1499)]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10000), min_size=2, max_size=40),
       st.integers(1, 3000), st.integers(1, 5000))
def test_rgb_is_monotonic_in_range_and_alpha_follows_nodata(values, lo, span):
    arr = np.array(sorted(values), dtype=np.uint16).reshape(1, -1)
    rgba = to_rgb(_stack(arr), clamp=(lo, lo + span)).compute()
    red = rgba.sel(band="r").values[0, 0].astype(int)
    alpha = rgba.sel(band="a").values[0, 0]
    valid = arr[0] != 0
    assert (alpha[valid] == 255).all() and (alpha[~valid] == 0).all()
    assert (red[~valid] == 0).all()
    assert (np.diff(red[valid]) >= 0).all()  # sorted input stays sorted
    assert red.min() >= 0 and red.max() <= 255


def test_float_reflectance_uses_reflectance_clamp_and_nan_nodata():
    ds = _stack(np.array([[0, 1000]], dtype=np.uint16)).astype("float32") * 1e-4
    ds = ds.where(ds != 0)
    rgba = ds.s2.to_rgb(clamp=None).compute()
    assert rgba.sel(band="a").values[0].tolist() == [[0, 255]]
    assert rgba.sel(band="r").values[0, 0, 1] == round((0.1 - 0.0001) * 255 / (0.15 - 0.0001))


def test_rgb_errors():
    ds = _stack(np.ones((2, 2), dtype=np.uint16))
    with pytest.raises(RenderError, match="exactly 3 bands"):
        ds.s2.to_rgb(bands=["red", "green"])
    with pytest.raises(RenderError, match="no band 'nir'"):
        ds.s2.to_rgb(bands=["nir", "green", "blue"])
    with pytest.raises(RenderError, match="high > low"):
        ds.s2.to_rgb(clamp=(10, 1))


def test_gif_has_one_captioned_frame_per_date_and_transparency(tmp_path):
    values = np.full((40, 60), 800, dtype=np.uint16)
    values[:, :10] = 0
    ds = _stack(values, times=3)
    path = ds.s2.to_gif(tmp_path / "out.gif", fps=4)
    with Image.open(path) as gif:
        assert gif.n_frames == 3
        assert gif.info["duration"] == 250 and gif.info["loop"] == 0
        frame = np.asarray(gif.convert("RGBA"))
        assert (frame[-1, :10, 3] == 0).all()      # nodata column transparent
        assert (frame[-1, 20:, 3] == 255).all()
        assert (frame[:2, :2, :3] == 0).all()      # caption box is drawn top-left
        assert frame[:12, :40, 0].max() == 255     # with white text in it
    assert oct(os.stat(path).st_mode & 0o777) != "0o600"
    as_bytes = ds.s2.to_gif(None, fps=4)
    assert as_bytes[:6] == b"GIF89a"


def test_gif_respects_max_size():
    ds = _stack(np.full((300, 200), 800, dtype=np.uint16))
    data = to_gif(ds, None, max_size=100, date_format=None)
    with Image.open(io.BytesIO(data)) as gif:
        assert max(gif.size) == 100


def test_failed_gif_leaves_no_file(tmp_path):
    def boom(block):
        raise RuntimeError("read failed")

    ds = _stack(np.full((8, 8), 800, dtype=np.uint16), times=2)
    ds["red"].data = ds["red"].data.map_blocks(boom, dtype=np.uint16)
    target = tmp_path / "broken.gif"
    with pytest.raises(RuntimeError, match="read failed"):
        ds.s2.to_gif(target)
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_refuses_missing_folder(tmp_path):
    with pytest.raises(RenderError, match="output folder does not exist"):
        write_atomic(tmp_path / "missing" / "x.gif", b"GIF89a")


# --- the lookup-table path for integer bands -----------------------------------------------

#: Values where clamping and rounding change (0 is nodata; 65535 the largest DN).
EDGES = np.array([0, 1, 2, 1499, 1500, 1501, 65535], dtype=np.uint16)


def _random_bands(shape: tuple[int, ...], dtype: str = "uint16",
                  seed: int = 0) -> list[np.ndarray]:
    """Three independent bands of ``shape`` with every edge value, zeros at different pixels."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    bands = []
    for _ in range(3):
        band = rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
        band.flat[rng.choice(band.size, band.size // 4, replace=False)] = \
            rng.integers(0, 4000, band.size // 4).astype(dtype)  # many pixels in the clamp
        band.flat[rng.choice(band.size, len(EDGES) * 3, replace=False)] = \
            np.tile(EDGES.astype(dtype), 3)
        bands.append(band)
    return bands


def _as_input(bands: list[np.ndarray], kind: str, backend: str,
              chunks: tuple[int, ...] = (1, 16, 16)) -> xr.Dataset | xr.DataArray:
    """A Dataset of red/green/blue variables, or a DataArray with a ``band`` dim (B04 B03 B02)."""
    shape = bands[0].shape
    dims = ("time", "y", "x")[-len(shape):]
    coords = {"y": np.arange(shape[-2]) * -10.0, "x": np.arange(shape[-1]) * 10.0,
              "spatial_ref": xr.DataArray(0, attrs={"crs_wkt": "EPSG:32610"})}
    if "time" in dims:
        coords["time"] = pd.date_range("2020-09-01", periods=shape[0], freq="5D")
        coords["id"] = ("time", [f"item{i}" for i in range(shape[0])])
    data = [da.from_array(b, chunks=chunks[-len(shape):]) if backend == "dask" else b
            for b in bands]
    ds = xr.Dataset({name: (dims, d, {"nodata": 0})
                     for name, d in zip(["red", "green", "blue"], data, strict=True)},
                    coords=coords, attrs={"crs": "EPSG:32610", "transform": (10.0, 0.0),
                                          "skipped": {"not": "copied"}})
    if kind == "dataset":
        return ds
    arr = ds.to_array("band").assign_coords(band=["B04", "B03", "B02"])
    arr.attrs = ds.attrs
    return arr.transpose(*dims[:-2], "band", *dims[-2:])  # band between time and y, as stackstac


@pytest.fixture
def lut_calls(monkeypatch):
    """Counts calls of the lookup-table block function (so a test knows that path ran)."""
    calls = []
    block = render._rgba_lut_block

    def spy(*args):
        calls.append(args[0].shape)
        return block(*args)

    monkeypatch.setattr(render, "_rgba_lut_block", spy)
    return calls


def _generic(obj, bands=None, clamp=None):
    return render._to_rgb(obj, bands, clamp, lut=False)


def _assert_same_bytes(fast: xr.DataArray, slow: xr.DataArray) -> None:
    fast, slow = fast.compute(), slow.compute()
    xr.testing.assert_identical(fast, slow)  # values, dims, coords (and their attrs), attrs
    assert fast.dims == slow.dims and fast["band"].dtype == slow["band"].dtype
    assert fast.values.tobytes() == slow.values.tobytes()


@pytest.mark.parametrize("backend", ["dask", "numpy"])
@pytest.mark.parametrize("kind", ["dataset", "dataarray"])
@pytest.mark.parametrize("clamp", [None, (1, 1500), [250.5, 3000.25]])  # a list, as from YAML
def test_lut_path_gives_the_generic_bytes(kind, backend, clamp, lut_calls):
    obj = _as_input(_random_bands((2, 40, 36)), kind, backend)
    fast = to_rgb(obj, clamp=clamp)
    assert isinstance(fast.data, da.Array if backend == "dask" else np.ndarray)
    _assert_same_bytes(fast, _generic(obj, clamp=clamp))
    assert lut_calls  # the table path ran, not the generic one
    assert fast.attrs == {"crs": "EPSG:32610", "transform": (10.0, 0.0),
                          "clamp": (1.0, 1500.0) if clamp is None else tuple(clamp)}


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int16", "int8"])
@pytest.mark.parametrize("clamp", [(1, 1500), (0, 510), (-300, 40000), (0.3, 0.7),
                                   (np.float64(1), np.float64(1500))])
def test_lut_matches_generic_on_every_value(dtype, clamp, lut_calls):
    # (0, 510) scales by exactly 0.5: odd values land on .5, where round-half-even matters;
    # numpy float64 bounds make the formula float64, a separate cached table
    info = np.iinfo(dtype)
    every = np.arange(info.min, info.max + 1).astype(dtype).reshape(1, 1, -1)
    shuffled = [np.random.default_rng(i).permutation(every, axis=2) for i in range(2)]
    obj = _as_input([every, *shuffled], "dataset", "numpy")
    _assert_same_bytes(to_rgb(obj, clamp=clamp), _generic(obj, clamp=clamp))
    assert lut_calls


def test_numpy_float_clamp_gets_its_own_table():
    # np.float64 bounds make the formula run in float64 (NumPy 2, NEP 50): with (0, 3000) a
    # few of the 65536 values round differently than in float32, so 0 and np.float64(0)
    # must not share a cached table
    every = np.arange(65536, dtype=np.uint16).reshape(1, 1, -1)
    obj = _as_input([every, every, every], "dataset", "numpy")
    wide = (np.float64(0), np.float64(3000))
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        assert (_generic(obj, clamp=(0, 3000)).values != _generic(obj, clamp=wide).values).any()
    for clamp in [(0, 3000), wide, (0, 3000)]:
        _assert_same_bytes(to_rgb(obj, clamp=clamp), _generic(obj, clamp=clamp))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=3, max_size=60),
       st.floats(-2000, 20000, allow_nan=False), st.floats(1e-3, 30000))
def test_lut_matches_generic_for_any_clamp(values, lo, span):
    arr = np.array(values, dtype=np.uint16).reshape(1, 1, -1)
    obj = _as_input([arr, arr[..., ::-1].copy(), np.roll(arr, 1)], "dataset", "dask")
    _assert_same_bytes(to_rgb(obj, clamp=(lo, lo + span)),
                       _generic(obj, clamp=(lo, lo + span)))


def test_lut_path_is_one_task_per_chunk_without_the_table_in_the_graph():
    obj = _as_input(_random_bands((3, 40, 36)), "dataset", "dask")
    chunks = obj["red"].data.npartitions
    inputs = set().union(*(obj[b].data.dask.layers for b in ("red", "green", "blue")))
    graph = to_rgb(obj).data.dask
    added = {name: layer for name, layer in graph.layers.items() if name not in inputs}
    assert len(added) == 1  # one fused layer, not clip/sub/mul/round/where/concat...
    (layer,) = added.values()
    assert len(layer) == chunks == 27
    # lo and hi travel in the graph, not a 64 KiB table (one would make this > 65536)
    assert len(pickle.dumps(dict(layer))) < 16 * 1024
    generic = _generic(obj).data.dask
    assert len([n for n in generic.layers if n not in inputs]) > 5  # what the test guards


def test_lut_path_of_a_band_dataarray_selects_then_maps_once(lut_calls):
    obj = _as_input(_random_bands((3, 40, 36)), "dataarray", "dask")
    inputs = set(obj.data.dask.layers)
    rgba = to_rgb(obj)
    added = {name: len(layer) for name, layer in rgba.data.dask.layers.items()
             if name not in inputs}
    chunks = rgba.data.npartitions
    assert chunks == 27 and added[rgba.data.name] == chunks
    # besides the RGBA layer only the three single-band selections (one getitem per chunk)
    assert sorted(added.values()) == [chunks] * 4
    rgba.compute()
    assert len(lut_calls) == chunks


def test_lut_is_built_once_per_clamp_and_dtype():
    obj = _as_input(_random_bands((3, 40, 36), seed=3), "dataset", "dask")
    render._lut.cache_clear()
    to_rgb(obj, clamp=(7, 777)).compute(scheduler="threads")
    to_rgb(obj, clamp=(7, 777)).compute()
    info = render._lut.cache_info()
    assert info.misses == 1 and info.hits == 2 * 3 * 27 - 1


@pytest.mark.parametrize("backend", ["dask", "numpy"])
def test_lut_nodata_is_black_and_transparent(backend, lut_calls):
    red = np.array([[0, 1, 1500, 1501], [65535, 750, 9, 0]], dtype=np.uint16)
    green = np.array([[5, 0, 1500, 1501], [65535, 750, 9, 0]], dtype=np.uint16)
    blue = np.array([[5, 1, 0, 1501], [65535, 750, 9, 0]], dtype=np.uint16)
    rgba = to_rgb(_as_input([red, green, blue], "dataset", backend, chunks=(2, 2)))
    assert rgba.dims == ("y", "x", "band")
    out = rgba.values
    # a zero in any band -> alpha 0 and black, even where the other bands have values
    assert out[..., 3].tolist() == [[0, 0, 0, 255], [255, 255, 255, 0]]
    assert out[0, :3, :3].tolist() == [[0, 0, 0]] * 3 and out[1, 3, :3].tolist() == [0, 0, 0]
    # valid pixels: 1501 and 65535 saturate; 750 and 9 scale by 255 / 1499, rounded
    assert out[0, 3, :3].tolist() == [255] * 3 and out[1, 0, :3].tolist() == [255] * 3
    assert out[1, 1, :3].tolist() == [round(749 * 255 / 1499)] * 3
    assert out[1, 2, :3].tolist() == [round(8 * 255 / 1499)] * 3
    assert lut_calls


def test_lut_signed_bands_only_zero_is_nodata(lut_calls):
    values = np.array([[-32768, -1, 0, 1, 1500, 32767]], dtype=np.int16)
    obj = _as_input([values, values, values], "dataset", "dask", chunks=(1, 3))
    rgba = to_rgb(obj)
    _assert_same_bytes(rgba, _generic(obj))
    assert rgba.values[0, :, 3].tolist() == [255, 255, 0, 255, 255, 255]
    assert rgba.values[0, :, 0].tolist() == [0, 0, 0, 0, 255, 255]
    assert lut_calls


def test_float_and_wide_integer_bands_keep_the_generic_path(lut_calls):
    bands = _random_bands((1, 8, 8))
    as_float = _as_input([(b * 1e-4).astype("float32") for b in bands], "dataset", "dask")
    as_int64 = _as_input([b.astype("int64") for b in bands], "dataset", "dask")
    _assert_same_bytes(to_rgb(as_float), _generic(as_float))
    _assert_same_bytes(to_rgb(as_int64), _generic(as_int64))
    as_uint16 = _as_input(bands, "dataset", "dask")
    array_clamp = (np.array(1), np.array(1500))  # unhashable: cannot key a cached table
    _assert_same_bytes(to_rgb(as_uint16, clamp=array_clamp),
                       _generic(as_uint16, clamp=array_clamp))
    assert to_rgb(as_float).attrs["clamp"] == (0.0001, 0.15)
    assert not lut_calls


def test_per_band_coords_are_dropped_on_both_paths(lut_calls):
    arr = _as_input(_random_bands((2, 8, 8)), "dataarray", "dask")
    arr = arr.assign_coords(common_name=("band", ["red", "green", "blue"]))
    fast = to_rgb(arr)
    assert "common_name" not in fast.coords
    _assert_same_bytes(fast, _generic(arr))
    assert lut_calls


def test_gif_bytes_are_the_same_through_the_lut(monkeypatch, lut_calls):
    bands = _random_bands((3, 30, 40), seed=5)
    ds = _as_input(bands, "dataset", "dask")
    fast = to_gif(ds, None, fps=2)
    assert lut_calls
    monkeypatch.setattr(render, "to_rgb", _generic)
    assert to_gif(ds, None, fps=2) == fast
