"""RGB scaling and GIF writing on small in-memory stacks (no server needed)."""

from __future__ import annotations

import io
import os

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import s2intake  # noqa: F401  (registers the accessor)
from s2intake import RenderError
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
