"""SCL cloud masking, per-AOI clear fractions, and tile- vs AOI-level screening.

Checked against the embedded Berry Creek sample (COGs served by the replica's nginx) and its
``truth.json``, plus small in-memory stacks for the option semantics. The accessor's static
and interactive pictures (``to_png``, ``plot``) are tested here too.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dask.core import flatten
from PIL import Image

import s2intake
from s2intake import RenderError, StackError
from s2intake.masking import (
    DEFAULT_CLOUD_CLASSES,
    clear_fraction,
    cloud_classes,
    cloud_report,
    filter_clear,
    mask_clouds,
)
from s2intake.stack import AOI_ATTR

AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
WINDOW = "2020-01-01/2021-06-30"
NOT_CLEAR = (0, 3, 8, 9, 10)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def truth(sample):
    return {row["id"]: row for row in sample.truth()["acquisitions"]}


@pytest.fixture(scope="module")
def items(sample, replica):
    """The sample's real v1 items (no replica filler), hrefs on the replica's nginx."""
    return sample.items("v1", base=replica.cog_url)


@pytest.fixture(scope="module")
def ds(items):
    return s2intake.stack(items, ["nir", "scl"], aoi=AOI)


@pytest.fixture(scope="module")
def fractions(ds):
    return clear_fraction(ds).compute()


def _index(ds: xr.Dataset, item_id: str) -> int:
    ids = [str(i) for i in ds["id"].values]
    return next(k for k, v in enumerate(ids) if item_id in v.split("+"))


def _tiny(scl: np.ndarray, *, floats: bool = False) -> xr.Dataset:
    """A (time, 4, 4) stack with given SCL codes; red = 100 + pixel number (or reflectance)."""
    t, h, w = scl.shape
    red = (100 + np.arange(t * h * w).reshape(t, h, w)).astype(np.uint16)
    red[scl == 0] = 0
    if floats:
        red = np.where(red == 0, np.nan, red * 1e-4).astype(np.float32)
    return xr.Dataset(
        {"red": (("time", "y", "x"), da.from_array(red, chunks=(1, 2, 2))),
         "scl": (("time", "y", "x"), da.from_array(scl.astype(np.uint8), chunks=(1, 2, 2)))},
        coords={"time": pd.date_range("2020-09-01", periods=t, freq="5D"),
                "y": 4400005.0 - 10 * np.arange(h), "x": 630005.0 + 10 * np.arange(w)},
        attrs={"crs": "EPSG:32610", "resolution": 10.0})


# ------------------------------------------------------------------ against truth.json
def test_clear_fraction_matches_the_truth_for_every_date(ds, fractions, truth):
    assert fractions.dims == ("time",) and fractions.name == "clear_fraction"
    seen = 0
    gains = []
    for k, ids in enumerate(str(v).split("+") for v in ds["id"].values):
        rows = [truth[i] for i in ids]
        if len(rows) == 1:  # one tile: the exact AOI pixel count of the generator
            assert fractions.values[k] == pytest.approx(rows[0]["clear_fraction"], abs=2e-3), ids
            seen += 1
        else:  # same-day mosaic: the tiles together cover at least what each does alone
            assert fractions.values[k] >= max(r["clear_fraction"] for r in rows) - 2e-3, ids
            assert fractions.values[k] > 0.99
            gains.append(fractions.values[k] - max(r["clear_fraction"] for r in rows))
    assert seen >= 20
    assert max(gains) > 0.2  # 2020-09-23: 10SFH fills 10SFJ's datastrip gap


def test_tile_level_and_aoi_level_filtering_disagree(ds, truth, stac_url):
    days = ["2020-03-02", "2020-04-06", "2020-05-28", "2020-07-20", "2020-09-23",
            "2020-10-13", "2020-10-25", "2020-12-12"]  # the telling dates (and some others)
    ds = ds.isel(time=[k for k, t in enumerate(ds.time.values) if str(t)[:10] in days])
    report = cloud_report(ds, max_cloud=10, min_clear=0.9)
    by_id = {row["id"]: row for _, row in report.iterrows()}
    # The truth's scenarios: a cloudy tile whose clouds miss the AOI ...
    tile_cloudy_aoi_clear = [i for i, r in truth.items() if r["date"] in days
                             and r["cloud_cover"] > 10 and r["clear_fraction"] >= 0.9]
    # ... and a nearly clear tile whose one cloud sits on the AOI.
    tile_clear_aoi_cloudy = [i for i, r in truth.items() if r["date"] in days
                             and r["cloud_cover"] <= 10 and r["cloudy_over_aoi"]
                             and r["clear_fraction"] < 0.9]
    assert "S2A_10SFJ_20200406_0_L2A" in tile_cloudy_aoi_clear
    assert "S2B_10SFJ_20200720_0_L2A" in tile_clear_aoi_cloudy
    for item_id in tile_cloudy_aoi_clear:
        row = by_id[item_id]
        assert not row["keep_by_tile"] and row["keep_by_aoi"], row
        assert row["verdict"] == "tile rejects a clear AOI"
    for item_id in tile_clear_aoi_cloudy:
        row = by_id[item_id]
        assert row["keep_by_tile"] and not row["keep_by_aoi"], row
        assert row["verdict"] == "tile keeps a cloudy AOI"
    # dates the swath only partly covers are told apart from cloudy ones
    partial = [i for i, r in truth.items() if r["partial"] and len(r["same_day"]) == 0
               and r["date"] in days]
    assert partial and all(by_id[i]["verdict"] == "tile keeps a partly empty AOI"
                           for i in partial)
    # The tile-level filter is what a max_cloud search does: the real API agrees.
    found = s2intake.search(AOI, WINDOW, max_cloud=10, url=stac_url)
    ids = {i["id"] for i in found.items}
    assert len(partial) == 2 and "S2A_10SFJ_20200923_0_L2A" not in by_id  # a mosaic there
    assert by_id["S2B_10SFJ_20200302_0_L2A"]["verdict"] == "agree"
    assert not set(tile_cloudy_aoi_clear) & ids
    assert set(tile_clear_aoi_cloudy) <= ids
    # filter_clear keeps and drops exactly the other way round
    kept = filter_clear(ds, min_clear=0.9)
    kept_ids = {p for v in kept["id"].values for p in str(v).split("+")}
    assert set(tile_cloudy_aoi_clear) <= kept_ids
    assert not set(tile_clear_aoi_cloudy) & kept_ids
    assert (kept["clear_fraction"].values >= 0.9).all()


def test_filter_clear_threshold_is_inclusive_and_keeps_laziness(ds, fractions):
    cut = float(np.sort(fractions.values)[len(fractions) // 2])
    kept = filter_clear(ds, min_clear=cut)
    assert kept.sizes["time"] == int((fractions.values >= cut).sum())
    assert kept.nir.chunks is not None  # still lazy for the bands
    np.testing.assert_array_equal(kept["clear_fraction"].values,
                                  fractions.values[fractions.values >= cut])
    scl = np.full((3, 4, 4), 4, np.uint8)
    scl[1, 0, 0] = 9  # 15/16 clear
    scl[2] = 0  # no data at all
    tiny = _tiny(scl)
    assert list(filter_clear(tiny, min_clear=1.0)["clear_fraction"].values) == [1.0]
    assert filter_clear(tiny, min_clear=15 / 16).sizes["time"] == 2
    assert filter_clear(tiny, min_clear=0.0).sizes["time"] == 3
    with pytest.raises(StackError, match="between 0 and 1"):
        filter_clear(tiny, min_clear=80)


def test_mask_clouds_blanks_exactly_the_flagged_pixels(ds, truth, cog_server):
    mark = cog_server.mark()
    masked = mask_clouds(ds)
    assert cog_server.entries_since(mark) == []  # lazy: nothing read yet
    assert masked.nir.dtype == np.uint16 and masked.nir.chunks is not None
    assert masked.attrs["s2intake_masked_scl_classes"] == list(DEFAULT_CLOUD_CLASSES)
    t = _index(ds, "S2B_10SFJ_20200720_0_L2A")
    raw, scl, out = dask.compute(ds.nir.isel(time=t).data, ds.scl.isel(time=t).data,
                                 masked.nir.isel(time=t).data)
    flagged = np.isin(scl, DEFAULT_CLOUD_CLASSES)
    assert flagged.any() and (raw[flagged] > 0).all()
    assert (out[flagged] == 0).all()
    np.testing.assert_array_equal(out[~flagged], raw[~flagged])
    np.testing.assert_array_equal(masked.scl.isel(time=t).values, scl)  # scl kept as is
    # inside the AOI the masked share is the truth's cloud + shadow fraction
    inside = ds.s2.aoi_mask().values
    row = truth["S2B_10SFJ_20200720_0_L2A"]
    expected = row["aoi_cloud_fraction"] + row["aoi_shadow_fraction"]
    assert flagged[inside].mean() == pytest.approx(expected, abs=2e-3)


def test_clear_fraction_reads_only_the_scl_chunks_of_the_aoi(items):
    # a stack over a wider window in small chunks, scored over a small AOI in one corner
    big = s2intake.stack(items[:3], ["nir", "scl"], aoi=AOI, chunks=256)
    x0, y1 = float(big.x[0]) - 5, float(big.y[0]) + 5
    corner = s2intake.read_aoi({"type": "Polygon", "coordinates": [[
        [x0 + 100, y1 - 100], [x0 + 1500, y1 - 100], [x0 + 1500, y1 - 1500],
        [x0 + 100, y1 - 1500], [x0 + 100, y1 - 100]]]}, crs="EPSG:32610")
    fraction = clear_fraction(big, corner)
    wanted = set(flatten(fraction.data.__dask_keys__()))
    graph = dict(fraction.data.__dask_graph__().cull(wanted))  # only what the result needs
    chunk_ids = {k[1:] for k in graph if isinstance(k, tuple)
                 and re.match(r"^s2r\w*-scl-", str(k[0]))}
    band_keys = [k for k in graph if isinstance(k, tuple) and "-nir-" in str(k[0])]
    assert not band_keys  # the clear fraction never touches another band
    per_date_total = len(big.scl.chunks[1]) * len(big.scl.chunks[2])
    per_date = {c[1:] for c in chunk_ids}
    assert per_date_total >= 16 and 1 <= len(per_date) <= 4
    assert len(chunk_ids) == len(per_date) * big.sizes["time"]
    # and the corner is scored on its own pixels: a subset of the full answer's support
    assert ((fraction.compute().values >= 0) & (fraction.compute().values <= 1)).all()


# ------------------------------------------------------------------- option semantics
def test_default_classes_and_options():
    assert DEFAULT_CLOUD_CLASSES == (3, 8, 9, 10)
    assert cloud_classes(snow=True) == (3, 8, 9, 10, 11)
    assert cloud_classes(saturated=True, nodata=True) == (0, 1, 3, 8, 9, 10)
    assert cloud_classes([9]) == (9,)
    for bad in ([12], [-1], ["cloud"], [8.5]):
        with pytest.raises(StackError, match="SCL"):
            cloud_classes(bad)


@pytest.mark.parametrize("floats", [False, True])
def test_mask_clouds_options_on_a_tiny_stack(floats):
    scl = np.array([[[4, 3, 8, 9], [10, 11, 1, 0], [4, 5, 6, 7], [2, 4, 4, 4]]], np.uint8)
    ds = _tiny(scl, floats=floats)
    fill = (lambda a: np.isnan(a)) if floats else (lambda a: a == 0)

    def blanked(out: xr.Dataset) -> set[int]:
        values = out.red.values[0]
        return {int(c) for c in np.unique(scl[0][fill(values)])}

    assert blanked(mask_clouds(ds)) == {0, 3, 8, 9, 10}  # 0 was nodata already
    assert blanked(mask_clouds(ds, snow=True)) == {0, 3, 8, 9, 10, 11}
    assert blanked(mask_clouds(ds, saturated=True)) == {0, 1, 3, 8, 9, 10}
    assert blanked(mask_clouds(ds, classes=[9])) == {0, 9}
    out = mask_clouds(ds)
    assert out.red.dtype == ds.red.dtype
    keep = ~np.isin(scl[0], [0, 3, 8, 9, 10])
    np.testing.assert_array_equal(out.red.values[0][keep], ds.red.values[0][keep])


def test_clear_fraction_counts_nodata_as_not_clear_and_uses_the_aoi():
    scl = np.full((2, 4, 4), 4, np.uint8)
    scl[0, :2, :] = 9  # top half cloudy on date 0
    scl[1, :, :1] = 0  # left column without data on date 1
    ds = _tiny(scl)
    np.testing.assert_allclose(clear_fraction(ds).values, [0.5, 0.75])
    np.testing.assert_allclose(clear_fraction(ds, snow=True).values, [0.5, 0.75])
    # an AOI over the bottom-right 2 x 2 pixels (UTM box, pixel centres inside)
    box = {"type": "Polygon", "coordinates": [[[630020, 4399990], [630040, 4399990],
                                               [630040, 4399970], [630020, 4399970],
                                               [630020, 4399990]]]}
    area = s2intake.read_aoi(box, crs="EPSG:32610")
    np.testing.assert_allclose(clear_fraction(ds, area).values, [1.0, 1.0])
    ds.attrs[AOI_ATTR] = area.to_json()  # the travelling AOI is the default
    np.testing.assert_allclose(clear_fraction(ds).values, [1.0, 1.0])
    with pytest.raises(StackError, match="SCL band 'scl'"):
        clear_fraction(ds[["red"]])


def test_accessor_methods_match_the_functions():
    scl = np.full((2, 4, 4), 4, np.uint8)
    scl[0, 0, 0] = 8
    ds = _tiny(scl)
    xr.testing.assert_identical(ds.s2.mask_clouds(), mask_clouds(ds))
    xr.testing.assert_identical(ds.s2.clear_fraction().compute(), clear_fraction(ds).compute())
    assert ds.s2.filter_clear(min_clear=1.0).sizes["time"] == 1
    assert ds.s2.mask_clouds(snow=True).attrs["s2intake_masked_scl_classes"][-1] == 11
    assert list(ds.s2.cloud_report(max_cloud=10)["keep_by_aoi"]) == [True, True]


# --------------------------------------------------------- accessor: to_png and plot
def _rgb_stack(times: int = 2) -> xr.Dataset:
    values = np.array([[0, 500], [1000, 1500]], dtype=np.uint16)
    arr = np.stack([values + 10 * t * (values > 0) for t in range(times)]).astype(np.uint16)
    return xr.Dataset(
        {b: (("time", "y", "x"), da.from_array(arr, chunks=(1, 2, 2)))
         for b in ("red", "green", "blue")},
        coords={"time": pd.date_range("2020-09-08", periods=times, freq="5D"),
                "y": [4400005.0, 4399995.0], "x": [630005.0, 630015.0]},
        attrs={"crs": "EPSG:32610"})


def test_to_png_writes_one_date_with_transparent_nodata(tmp_path):
    ds = _rgb_stack()
    path = ds.s2.to_png(tmp_path / "one.png", time="2020-09-13", clamp=(1, 1500))
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGBA" and png.size == (2, 2)
        pixels = np.asarray(png)
    expected = ds.s2.to_rgb(clamp=(1, 1500)).isel(time=1).values
    np.testing.assert_array_equal(pixels, expected)
    assert pixels[0, 0, 3] == 0 and (pixels[..., 3].ravel()[1:] == 255).all()
    by_index = ds.s2.to_png(time=-1, clamp=(1, 1500))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(by_index))), pixels)
    with pytest.raises(RenderError, match="2 dates; pick one"):
        ds.s2.to_png(tmp_path / "x.png")
    with pytest.raises(RenderError, match="no date within a day"):
        ds.s2.to_png(time="2021-01-01")
    with pytest.raises(RenderError, match="out of range"):
        ds.s2.to_png(time=5)
    assert not (tmp_path / "x.png").exists()
    single = _rgb_stack(1).s2.to_png(max_size=1)
    assert Image.open(io.BytesIO(single)).size == (1, 1)


def test_plot_without_hvplot_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "hvplot", None)  # import hvplot -> ImportError
    monkeypatch.setitem(sys.modules, "hvplot.xarray", None)
    with pytest.raises(RenderError, match=r"pip install 's2intake\[plot\]'.*to_png"):
        _rgb_stack().s2.plot()


def test_plot_with_hvplot_is_an_rgb_time_slider():
    pytest.importorskip("hvplot")
    plot = _rgb_stack(3).s2.plot(clamp=(1, 1500))
    assert [str(d) for d in plot.kdims] == ["time"]
    first = plot[pd.Timestamp("2020-09-13")]
    assert type(first).__name__ == "RGB"
    assert [str(v) for v in first.vdims] == ["R", "G", "B"]
    expected = _rgb_stack(3).s2.to_rgb(clamp=(1, 1500)).isel(time=1)
    for name, band in zip("RGB", "rgb", strict=True):  # the second date's pixels
        got = first.dimension_values(name, flat=False)  # holoviews: south row first
        np.testing.assert_array_equal(np.flipud(got), expected.sel(band=band).values)
