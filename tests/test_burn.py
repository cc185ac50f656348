"""NBR, dNBR, USGS severity classes, areas, PNG map and burn GIF.

The burned area is checked against the sample's known synthetic burn scar (``truth.json``):
the area of classes low severity and up must be within 5 % of the true burned area inside
the AOI.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image, ImageSequence

import s2intake
from s2intake import RenderError, StackError
from s2intake.burn import (
    SEVERITY_CLASSES,
    burn_gif,
    burned_area,
    classify,
    composite,
    dnbr,
    nbr,
    pixel_area_m2,
    severity_png,
    severity_table,
)
from s2intake.stack import AOI_ATTR

AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
BEFORE = ("2020-06-01", "2020-09-07")
AFTER = ("2020-10-09", "2020-11-30")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def truth(sample):
    return sample.truth()


@pytest.fixture(scope="module")
def true_burn_ha(truth):
    """Burned area inside the AOI once the fire stopped growing, in hectares."""
    end = truth["burn"]["grows_until"]
    areas = {row["burn_area_m2"] for row in truth["acquisitions"] if row["date"] > end}
    assert len(areas) == 1  # the scar does not change after it stopped growing
    return areas.pop() / 10_000


@pytest.fixture(scope="module")
def items(sample, replica):
    return sample.items("v1", base=replica.cog_url)


@pytest.fixture(scope="module")
def ds(items):
    return s2intake.stack(items, ["red", "green", "blue", "nir", "swir22", "scl"], aoi=AOI)


@pytest.fixture(scope="module")
def change(ds):
    return dnbr(ds, before=BEFORE, after=AFTER).compute()


@pytest.fixture(scope="module")
def table(change):
    return severity_table(change)


def _grid(values: np.ndarray, res: float = 10.0, crs: str = "EPSG:32610", **bands):
    t, h, w = values.shape
    coords = {"time": pd.date_range("2020-09-01", periods=t, freq="5D"),
              "y": 4400000.0 - res * (np.arange(h) + 0.5),
              "x": 630000.0 + res * (np.arange(w) + 0.5)}
    data = {k: (("time", "y", "x"), da.from_array(v, chunks=(1, h, w))) for k, v in bands.items()}
    return xr.Dataset(data, coords=coords, attrs={"crs": crs, "resolution": res})


# ------------------------------------------------------------------------ formula, classes
def test_nbr_is_float32_with_nan_for_nodata():
    nir = np.array([[[3000, 1000, 0, 500]]], np.uint16)
    swir = np.array([[[1000, 2500, 800, 0]]], np.uint16)
    ds = _grid(nir, nir=nir, swir22=swir)
    out = nbr(ds).values[0, 0]
    assert nbr(ds).dtype == np.float32 and nbr(ds).chunks is not None
    np.testing.assert_allclose(out[:2], [2000 / 4000, -1500 / 3500], rtol=1e-6)
    assert np.isnan(out[2:]).all()
    scaled = _grid(nir, nir=np.where(nir == 0, np.nan, nir * 1e-4).astype(np.float32),
                   swir22=np.where(swir == 0, np.nan, swir * 1e-4).astype(np.float32))
    np.testing.assert_allclose(nbr(scaled).values[0, 0], out, rtol=1e-5, equal_nan=True)
    xr.testing.assert_identical(ds.s2.nbr(), nbr(ds))
    with pytest.raises(StackError, match="'swir22' band"):
        nbr(ds[["nir"]])


def test_classes_follow_the_usgs_table():
    assert [(c.lower, c.upper) for c in SEVERITY_CLASSES] == [
        (-math.inf, -0.25), (-0.25, -0.1), (-0.1, 0.1), (0.1, 0.27), (0.27, 0.44),
        (0.44, 0.66), (0.66, math.inf)]
    values = np.array([-0.6, -0.2501, -0.25, -0.1001, -0.1, 0.0, 0.0999, 0.1, 0.2699, 0.27,
                       0.4399, 0.44, 0.6599, 0.66, 1.5, np.nan], np.float32)
    codes = classify(xr.DataArray(values, dims="x")).values
    assert codes.tolist() == [1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 0]
    assert codes.dtype == np.uint8


def test_severity_table_areas_come_from_the_grid():
    values = np.array([[[0.7, 0.7, 0.3, np.nan], [0.0, 0.0, 0.0, -0.3]]], np.float32)
    ds = _grid(values, res=20.0, d=values)
    arr = ds["d"].isel(time=0).assign_attrs(crs="EPSG:32610")
    assert pixel_area_m2(arr) == 400.0
    tab = severity_table(arr)
    assert list(tab.index) == [c.key for c in SEVERITY_CLASSES] + ["no_data"]
    assert tab.loc["high", "pixels"] == 2 and tab.loc["high", "area_ha"] == pytest.approx(0.08)
    assert tab.loc["moderate_low", "area_ha"] == pytest.approx(0.04)
    assert tab.loc["no_data", "pixels"] == 1
    assert tab.loc["unburned", "percent"] == pytest.approx(300 / 7)
    assert tab.attrs["burned_ha"] == pytest.approx(0.12) == burned_area(tab)
    assert burned_area(tab, from_class="high") == pytest.approx(0.08)
    with pytest.raises(StackError, match="unknown severity class"):
        burned_area(tab, from_class="severe")
    with pytest.raises(StackError, match="projected CRS"):
        pixel_area_m2(arr.assign_attrs(crs="EPSG:4326"))


# ------------------------------------------------------------ against the sample's truth
def test_burned_area_matches_the_known_scar(table, change, true_burn_ha, truth):
    burned = table.attrs["burned_ha"]
    print(f"burned (classes >= low) {burned:.1f} ha; truth {true_burn_ha:.1f} ha; "
          f"error {100 * (burned / true_burn_ha - 1):+.2f} %")
    assert burned == pytest.approx(true_burn_ha, rel=0.05)
    assert table.attrs["aoi_area_ha"] == pytest.approx(truth["aoi"]["area_m2"] / 1e4, rel=0.005)
    assert table.loc["no_data", "pixels"] == 0  # every AOI pixel had a clear value
    assert table.loc["unburned", "area_ha"] + burned == pytest.approx(
        table.attrs["aoi_area_ha"], rel=1e-3)  # no regrowth classes in one season
    assert change.dtype == np.float32 and change.dims == ("y", "x")
    assert change.attrs["before_dates"] == ["2020-06-25", "2020-07-20", "2020-08-19",
                                            "2020-09-03"]
    # the half-covered 2020-10-25 acquisition (42 % of the AOI) is screened out
    assert change.attrs["after_dates"] == ["2020-10-13", "2020-11-12"]


def test_without_screening_a_cloudy_after_date_ruins_the_estimate(ds, true_burn_ha):
    overcast = ("2020-12-01", "2020-12-31")  # only 2020-12-12: 4 % of the AOI clear
    with pytest.raises(StackError, match="at least 50% clear over the AOI.*2020-12-12 0.04"):
        dnbr(ds, before=BEFORE, after=overcast)
    one_clear_day = ("2020-08-19", "2020-08-19")
    naive = dnbr(ds, before=one_clear_day, after=overcast, min_clear=None, mask=False)
    wrong = severity_table(naive).attrs["burned_ha"]
    assert abs(wrong / true_burn_ha - 1) > 0.05


def test_composite_is_the_median_of_the_clear_pixels(ds):
    pre = composite(ds, BEFORE, bands=["nir"])
    assert pre.nir.dtype == np.uint16 and pre.nir.dims == ("y", "x")
    assert pre.attrs["s2intake_composite_dates"][0] == "2020-06-25"
    sub = ds.sel(time=slice(*BEFORE))
    nir, scl, got = dask.compute(sub.nir.data, sub.scl.data, pre.nir.data)  # one read
    rows, cols = np.nonzero(np.isin(scl, (3, 8, 9, 10)).any(axis=0))
    r, c = rows[0], cols[0]  # a pixel cloudy on some date: median of the other dates
    clear = nir[:, r, c][~np.isin(scl[:, r, c], (0, 3, 8, 9, 10))]
    assert got[r, c] == np.round(np.median(clear))
    assert (got > 0).mean() > 0.99


def test_severity_png_draws_the_classes_and_a_legend(change, table, tmp_path):
    path = severity_png(change, tmp_path / "severity.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGBA"
        pixels = np.asarray(png)
    height, width = change.chunk().s2.clip_aoi().shape  # the map is cropped to the AOI
    assert pixels.shape[0] == height and pixels.shape[1] > width + 100  # legend on the right
    picture = pixels[:, :width]
    for cls in SEVERITY_CLASSES:
        color = tuple(int(cls.color[i:i + 2], 16) for i in (1, 3, 5))
        count = int((np.all(picture[..., :3] == color, axis=-1) & (picture[..., 3] == 255)).sum())
        assert count == table.loc[cls.key, "pixels"], cls.key
    assert picture[0, -1, 3] == 0  # outside the AOI polygon: transparent
    legend = pixels[:, width:]
    assert (legend[..., :3] < 60).all(axis=-1).sum() > 200  # black legend text
    with pytest.raises(RenderError, match="does not exist"):
        severity_png(change, tmp_path / "missing" / "x.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["severity.png"]  # no partial file


@pytest.fixture(scope="module")
def small_area(ds):
    """A disc of about 1.5 km radius at the AOI's centre, in the scar."""
    return s2intake.read_aoi(ds.attrs[AOI_ATTR]).geometry.centroid.buffer(0.015)


@pytest.fixture(scope="module")
def gif_path(ds, small_area, tmp_path_factory):
    return burn_gif(ds, tmp_path_factory.mktemp("gif") / "burn.gif", before=BEFORE,
                    after=AFTER, aoi=small_area, min_size=64)


def test_burn_gif_has_before_after_and_severity_frames(gif_path):
    with Image.open(gif_path) as gif:
        assert gif.n_frames == 3 and gif.info["duration"] == 1000
        frames = [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(gif)]
    assert len({f.shape for f in frames}) == 1
    high = tuple(int(SEVERITY_CLASSES[-1].color[i:i + 2], 16) for i in (1, 3, 5))
    counts = [int(np.all(np.abs(f[..., :3].astype(int) - high) <= 6, axis=-1).sum())
              for f in frames]
    assert counts[2] > 1000 and counts[0] < 50 and counts[1] < 50
    # the burn darkens the scene: after is darker than before inside the picture
    body = [f[80:, : f.shape[1] // 2] for f in frames[:2]]
    brightness = [b[..., :3][b[..., 3] == 255].mean() for b in body]
    assert brightness[1] < brightness[0]



def test_burn_gif_reuses_a_computed_dnbr(ds, change, small_area, gif_path):
    reused = burn_gif(ds, before=BEFORE, after=AFTER, aoi=small_area, min_size=64,
                      dnbr_array=change)
    assert isinstance(reused, bytes) and reused[:6] == b"GIF89a"
    frames = [[np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(
        Image.open(source))] for source in (gif_path, io.BytesIO(reused))]
    assert len(frames[1]) == 3
    for a, b in zip(*frames, strict=True):
        np.testing.assert_array_equal(a, b)


def test_accessor_burn_methods(change, table):
    tab = change.s2.severity_table()
    pd.testing.assert_frame_equal(tab, table)
    assert (change.s2.severity().values == classify(change).values).all()
    assert change.s2.severity_png()[:8] == b"\x89PNG\r\n\x1a\n"
    values = np.array([[[3000, 3000]], [[1000, 1000]]], np.uint16)
    swir = np.array([[[1000, 1000]], [[2500, 2500]]], np.uint16)
    tiny = _grid(values, nir=values, swir22=swir)
    lazy = tiny.s2.dnbr(before=("2020-09-01", "2020-09-01"), after=("2020-09-06", "2020-09-06"))
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.values, 0.5 - (-1500 / 3500), rtol=1e-6)
    xr.testing.assert_identical(tiny.s2.composite(("2020-09-01", "2020-09-06")),
                                composite(tiny, ("2020-09-01", "2020-09-06")))
