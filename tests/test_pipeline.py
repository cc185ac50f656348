"""The Berry Creek pipeline end to end against the local Earth Search replica.

AOI -> search -> items table -> lazy stack -> clip -> RGB -> GIF, checked against the
sample's own COG files read directly with rasterio.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely.geometry
from click.testing import CliRunner
from PIL import Image
from rasterio.windows import from_bounds

import s2intake
from s2intake import EmptySearchError, ProfileError, ReadError, SearchError, StackError
from s2intake.cli import main as cli_main

AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
WINDOW = "2020-01-01/2021-06-30"


def _real(items):
    return [i for i in items if not i["properties"].get("s2intake:filler")]


@pytest.fixture(scope="module")
def found(stac_url):
    return s2intake.search(AOI, WINDOW, max_cloud=10, url=stac_url, limit=5)


@pytest.fixture(scope="module")
def ds(found):
    return s2intake.stack(found, ["red", "green", "blue"])


def _local_path(href: str, cog_server, cog_root: Path) -> Path:
    assert href.startswith(cog_server.url), href
    return cog_root / href[len(cog_server.url):].lstrip("/")


def test_search_matches_an_independent_filter_of_the_loaded_items(found, replica_items):
    aoi = shapely.geometry.shape(json.loads(AOI.read_text())["geometry"])
    start, end = pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2021-07-01", tz="UTC")
    expected = sorted(
        i["id"] for i in replica_items["v1"]
        if i["properties"]["eo:cloud_cover"] <= 10
        and start <= pd.Timestamp(i["properties"]["datetime"]) < end
        and shapely.geometry.shape(i["geometry"]).intersects(aoi))
    assert sorted(i["id"] for i in found.items) == expected
    assert len(expected) > 5  # more than one page at limit=5
    stamps = [i["properties"]["datetime"] for i in found.items]
    assert stamps == sorted(stamps)
    assert found.mode == "query" and found.aoi is not None


def test_items_table_is_indexed_by_datetime(found):
    table = s2intake.items_to_geodataframe(found)
    assert table.index.is_monotonic_increasing and str(table.index.dtype).startswith("datetime64")
    assert len(table) == len(found)
    assert str(table["properties.created"].dtype).startswith("datetime64")
    assert table.crs.to_epsg() == 4326


def test_stack_is_lazy_and_reads_nothing_until_compute(found, cog_server):
    mark = cog_server.mark()
    ds = s2intake.stack(found, ["red", "green", "blue", "nir", "scl"])
    rgba = ds.s2.clip_aoi().s2.to_rgb()
    assert cog_server.entries_since(mark) == []
    assert ds.red.dtype == np.uint16 and ds.scl.dtype == np.uint8
    assert ds.red.chunks is not None and rgba.chunks is not None
    rgba.isel(time=0).compute()
    requests = cog_server.entries_since(mark)
    gets = [e for e in requests if e.method == "GET"]
    assert gets and all(e.status == 206 and e.range for e in gets), gets[:5]
    # only size probes besides the ranged reads: no whole-file download
    assert all(e.method == "HEAD" and e.bytes == 0 for e in requests if e.method != "GET")


def test_stack_window_covers_only_the_aoi(ds):
    aoi_utm = s2intake.read_aoi(AOI).to_crs("EPSG:32610")
    minx, miny, maxx, maxy = aoi_utm.bounds
    x0, x1 = ds.x.values[0] - 5, ds.x.values[-1] + 5
    y1, y0 = ds.y.values[0] + 5, ds.y.values[-1] - 5
    assert x0 <= minx < x0 + 10 and maxx <= x1 < maxx + 10
    assert y0 <= miny < y0 + 10 and maxy <= y1 < maxy + 10
    assert ds.attrs["crs"] == "EPSG:32610"
    # chunk edges fall on the 10SFJ 1024-px block grid (every 10240 m from x=600000)
    edges = np.cumsum((0,) + ds.red.chunks[2][:-1])
    for edge in edges[1:]:
        assert (ds.x.values[edge] - 5 - 600000) % 10240 == 0


def test_stacked_pixels_equal_the_files(ds, found, cog_server, cog_root):
    item = next(i for i in found.items if "+" not in str(i["id"]))
    t = list(ds["id"].values).index(item["id"])
    path = _local_path(item["assets"]["red"]["href"], cog_server, cog_root)
    left, top = ds.x.values[0] - 5, ds.y.values[0] + 5
    right, bottom = ds.x.values[-1] + 5, ds.y.values[-1] - 5
    with rasterio.open(path) as src:
        window = from_bounds(left, bottom, right, top, src.transform)
        expected = src.read(1, window=window.round_offsets().round_lengths())
    got = ds.red.isel(time=t).values
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_v0_and_v1_give_the_same_stack(stac_url, ds):
    v0 = s2intake.search(AOI, WINDOW, url=stac_url, collection="sentinel-s2-l2a-cogs",
                         query=["eo:cloud_cover<=10", "sentinel:grid_square=FJ"])
    stack0 = s2intake.stack(v0, ["B04", "B03", "B02"])
    assert list(stack0.data_vars) == ["red", "green", "blue"]
    ids0 = [str(i) for i in stack0["id"].values]
    ids1 = [str(i) for i in ds["id"].values]
    common = [i for i in ids1 if i in ids0][:2]
    assert common
    a = stack0.red.isel(time=[ids0.index(i) for i in common]).values
    b = ds.red.isel(time=[ids1.index(i) for i in common]).values
    assert (a > 0).any()
    np.testing.assert_array_equal(a, b)


def test_clip_blanks_outside_and_keeps_inside(ds):
    clipped = ds.s2.clip_aoi()
    mask = clipped.s2.aoi_mask().values
    assert 0.5 < mask.mean() < 1.0  # a pentagon inside its bounding box
    red = clipped.red.isel(time=0).values
    raw = ds.red.isel(time=0).sel(x=clipped.x, y=clipped.y).values
    assert (red[~mask] == 0).all()
    np.testing.assert_array_equal(red[mask], raw[mask])


def test_gif_end_to_end(ds, tmp_path):
    ds = ds.isel(time=slice(-5, None))  # the full run is the demo's; five dates test the same
    clipped = ds.s2.clip_aoi()
    plain = clipped.s2.to_gif(tmp_path / "plain.gif", fps=3, max_size=None, date_format=None)
    captioned = clipped.s2.to_gif(tmp_path / "berry.gif", fps=3, max_size=None)
    rgba = clipped.s2.to_rgb().values
    mask = clipped.s2.aoi_mask().values
    with Image.open(plain) as gif:
        assert gif.n_frames == ds.sizes["time"]
        assert gif.size == (clipped.sizes["x"], clipped.sizes["y"])
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGBA"))
    with Image.open(captioned) as gif:
        assert gif.n_frames == ds.sizes["time"]
        gif.seek(gif.n_frames - 1)
        with_caption = np.asarray(gif.convert("RGBA"))
    assert (last[..., 3][~mask] == 0).all()  # outside the polygon: transparent
    inside = mask & (rgba[-1, ..., 3] == 255)
    assert (last[..., 3][inside] == 255).all()
    diff = np.abs(last[..., :3][inside].astype(int) - rgba[-1, ..., :3][inside].astype(int))
    assert np.median(diff) <= 4  # 255-colour palette quantisation only
    # the caption (date, white on black) is drawn top left and nowhere else
    # (the palette differs a little once the caption's colours are in, hence the tolerance)
    gap = np.abs(with_caption.astype(int) - last.astype(int)).max(axis=-1)
    changed = np.argwhere(gap > 40)
    assert len(changed) and changed[:, 0].max() < clipped.sizes["y"] // 6
    assert changed[:, 1].max() < clipped.sizes["x"] // 2
    assert pd.DatetimeIndex(ds.time.values).is_monotonic_increasing


def test_offset_baseline_items_are_harmonised(stac_url):
    later = s2intake.search(AOI, "2022-01-25/2022-12-31", url=stac_url)
    raw = s2intake.stack(later, ["nir"], harmonize=False).nir.isel(time=0).values
    fixed = s2intake.stack(later, ["nir"]).nir.isel(time=0).values
    valid = raw > 0
    assert valid.any()
    assert ((fixed == 0) == ~valid).all()
    np.testing.assert_array_equal(fixed[valid], np.maximum(raw[valid].astype(int) - 1000, 1))
    scaled = s2intake.stack(later, ["nir"], scale=True).nir.isel(time=0).values
    assert scaled.dtype == np.float32 and np.isnan(scaled[~valid]).all()
    np.testing.assert_allclose(scaled[valid], fixed[valid] * 1e-4, rtol=1e-6)


def test_same_day_tiles_are_mosaicked(stac_url):
    everything = s2intake.search(AOI, WINDOW, url=stac_url)
    per_day = pd.Series([s2intake.stack.__module__ and i["properties"]["datetime"][:10]
                         for i in everything.items]).value_counts()
    day = per_day.index[per_day.values > 1][0]
    pair = s2intake.search(AOI, day, url=stac_url)
    separate = s2intake.stack(pair, ["red"], mosaic=False)
    merged = s2intake.stack(pair, ["red"])
    assert separate.sizes["time"] == 2 and merged.sizes["time"] == 1
    first, second = separate.red.values
    mosaic = merged.red.values[0]
    assert ((mosaic > 0) == ((first > 0) | (second > 0))).all()
    assert (mosaic > 0).sum() > max((first > 0).sum(), (second > 0).sum())


def test_other_crs_is_reprojected(found):
    subset = s2intake.stack(found.items[:1], ["red"], aoi=found.aoi, crs="EPSG:32611",
                            allow_local_hrefs=False)
    values = subset.red.values[0]
    assert subset.attrs["crs"] == "EPSG:32611"
    assert (values > 0).mean() > 0.5


def test_bad_inputs_give_clear_errors(stac_url, found, replica, tmp_path):
    with pytest.raises(ProfileError, match="unknown collection 'landsat-c2-l2'"):
        s2intake.search(AOI, WINDOW, url=stac_url, collection="landsat-c2-l2")
    with pytest.raises(ProfileError, match="not found at"):
        s2intake.search(AOI, WINDOW, url=stac_url, collection="sentinel-2-c1-l2a")
    with pytest.raises(EmptySearchError, match="no sentinel-2-l2a item"):
        s2intake.search(AOI, "2019-01-01/2019-01-31", url=stac_url)
    with pytest.raises(SearchError, match="STAC API at http://127.0.0.1:9/"):
        s2intake.search(AOI, WINDOW, url="http://127.0.0.1:9/", retries=0, timeout=2)
    with pytest.raises(ProfileError, match="unknown band 'B13'"):
        s2intake.stack(found, ["B13"])
    with pytest.raises(StackError, match="resolution must be positive"):
        s2intake.stack(found, ["red"], resolution=0)
    broken = json.loads(json.dumps(found.items[0]))
    broken["assets"]["red"]["href"] = replica.cog_url + "/missing/B04.tif"
    lazy = s2intake.stack([broken], ["red"], aoi=AOI, retries=1)
    with pytest.raises(ReadError) as err:
        lazy.red.compute()
    text = str(err.value)
    assert broken["id"] in text and "/missing/B04.tif" in text and "404" in text


def test_cli_search_and_gif(stac_url, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli_main, ["search", str(AOI), "-d", WINDOW, "-c", "10",
                                      "--url", stac_url, "--format", "ids"])
    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert ids and all(i.startswith("S2") for i in ids)
    out = tmp_path / "cli.gif"
    result = runner.invoke(cli_main, ["gif", str(AOI), str(out), "-d", "2020-08-01/2020-10-31",
                                      "-c", "10", "--url", stac_url, "--no-progress",
                                      "--max-size", "256"])
    assert result.exit_code == 0, result.output
    with Image.open(io.BytesIO(out.read_bytes())) as gif:
        assert max(gif.size) == 256 and gif.n_frames >= 1
    result = runner.invoke(cli_main, ["search", str(AOI), "-d", "2019-01-01/2019-01-31",
                                      "--url", stac_url])
    assert result.exit_code == 3 and "no sentinel-2-l2a item" in result.output
    result = runner.invoke(cli_main, ["search", str(tmp_path / "nope.geojson"), "--url",
                                      stac_url])
    assert result.exit_code == 1 and "AOI file not found" in result.output
