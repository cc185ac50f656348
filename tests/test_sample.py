"""The synthetic Berry Creek sample (s2intake.sample): COG layout, pixels, items, truth.

One small build (9 acquisitions of 10SFJ + one 10SFH) is made into a temporary folder for the
module and inspected from every side; a few extra one-band builds check determinism and the
rebuild rules. The real Earth Search JSON under ``/work/shared/earth-search-samples`` (or
``$S2INTAKE_ES_SAMPLES``) is the reference for the item/collection key sets.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.features import geometry_mask
from rasterio.windows import Window
from shapely.geometry import Point, box, shape

from s2intake import sample as S
from s2intake.errors import S2IntakeError

ES_SAMPLES = Path(os.environ.get("S2INTAKE_ES_SAMPLES", "/work/shared/earth-search-samples"))
N_DATES = 9  # burn start, pre-fire, grown burn, scattered clouds, wedge, mosaic (+10SFH),
#              tile-cloudy/AOI-clear, AOI-cloudy/tile-clear, 2022 offset
V1_TO_V0 = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11",
            "swir22": "B12", "scl": "SCL"}

# The AOI's internal blocks (row, col) on 10SFJ as the brief states them.
FJ_BLOCKS_10 = {(r, c) for r in range(8, 11) for c in range(2, 5)}
FJ_BLOCKS_20 = {(r, c) for r in range(4, 6) for c in range(1, 3)}
FH_BLOCKS_10 = {(0, c) for c in range(2, 5)}
# 10 m pixel window of those blocks on 10SFJ (row0, col0, height, width)
FJ_WIN10 = (8192, 2048, 10980 - 8192, 3072)


# ------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> S.SampleInfo:
    root = tmp_path_factory.mktemp("sample")
    t0 = time.perf_counter()
    info = S.build_sample(root, n_dates=N_DATES)
    print(f"sample build ({N_DATES} dates): {time.perf_counter() - t0:.1f} s")
    return info


@pytest.fixture(scope="module")
def items(built: S.SampleInfo) -> dict[str, dict[str, dict[str, Any]]]:
    return {v: {i["id"]: i for i in built.items(v, base=built.cog_root)} for v in ("v1", "v0")}


@pytest.fixture(scope="module")
def truth(built: S.SampleInfo) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in json.loads(built.truth_path.read_text())["acquisitions"]}


def _id(date: str, tile: str = "10SFJ", items: dict | None = None) -> str:
    stamp = date.replace("-", "")
    for sat in ("S2A", "S2B"):
        candidate = f"{sat}_{tile}_{stamp}_0_L2A"
        if items is None or candidate in items:
            return candidate
    raise AssertionError(f"no item for {date} {tile}")


def _read(item: dict[str, Any], key: str, window: tuple[int, int, int, int] = FJ_WIN10
          ) -> np.ndarray:
    """Read ``key`` over a 10 m window (row0, col0, h, w); 20 m bands are read at 20 m."""
    r0, c0, h, w = window
    with rasterio.open(item["assets"][key]["href"]) as ds:
        f = 2 if ds.res[0] == 20 else 1
        return ds.read(1, window=Window(c0 // f, r0 // f, w // f, h // f))


def _up(a: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def _to_utm(geom: Any) -> Any:
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)
    return shapely.transform(shape(geom), lambda xy: np.column_stack(to_utm.transform(*xy.T)))


def _aoi_utm() -> Any:
    return _to_utm(json.loads(S.AOI_PATH.read_text())["geometry"])


def _aoi_mask(y0: float = 4500000.0, window: tuple[int, int, int, int] = FJ_WIN10
              ) -> np.ndarray:
    r0, c0, h, w = window
    transform = Affine(10, 0, 600000 + 10 * c0, 0, -10, y0 - 10 * r0)
    return geometry_mask([_aoi_utm()], out_shape=(h, w), transform=transform, invert=True)


def _nonempty_blocks(path: str) -> set[tuple[int, int]]:
    with rasterio.open(path) as ds:
        n = math.ceil(ds.width / 1024)
        return {(r, c) for r in range(n) for c in range(n)
                if ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)}


def _real(version: str, name: str) -> dict[str, Any]:
    path = ES_SAMPLES / version / name
    if not path.is_file():
        pytest.skip(f"real Earth Search sample {path} not available")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------
# AOI, plan, API basics (no build)
# ------------------------------------------------------------------------------------------
def test_embedded_aoi_equals_the_catalog_file() -> None:
    assert S.AOI_PATH.name == "berry_creek.geojson"
    assert json.loads(S.AOI_PATH.read_text())["geometry"] == S.BERRY_CREEK_AOI


def test_aoi_touches_exactly_the_documented_blocks() -> None:
    minx, miny, maxx, maxy = _aoi_utm().bounds
    assert 628000 < minx < 628300 and 643100 < maxx < 643300
    assert 4394200 < miny < 4394400 and 4408200 < maxy < 4408400
    cols = range(int((minx - 600000) // 10240), int((maxx - 600000) // 10240) + 1)
    rows = range(int((4500000 - maxy) // 10240), int((4500000 - miny) // 10240) + 1)
    assert {(r, c) for r in rows for c in cols} == FJ_BLOCKS_10
    assert S._aoi_blocks(S.TILES["10SFJ"], 10) == (8192, 10980, 2048, 5120)
    assert S._aoi_blocks(S.TILES["10SFJ"], 20) == (4096, 5490, 1024, 3072)
    assert S._aoi_blocks(S.TILES["10SFH"], 10) == (0, 1024, 2048, 5120)


def test_plan_sizes_and_dates() -> None:
    demo = S._plan(None, S.DEFAULT_SEED)
    fj = [a for a in demo if a.tile == "10SFJ"]
    assert len(fj) == 25
    in_window = [a for a in fj if "2020-01-01" <= a.date.isoformat() <= "2021-06-30"]
    assert 18 <= len(in_window) <= 24
    late = [a for a in fj if a.date.year == 2022]
    assert len(late) == 2 and all(a.date.isoformat() > "2022-01-25" for a in late)
    assert {a.tile for a in demo} == {"10SFJ", "10SFH"}
    platforms = [a.platform for a in fj if a.orbit == S._MAIN_ORBIT]
    assert set(platforms) == {"sentinel-2a", "sentinel-2b"}
    big = S._plan(48, S.DEFAULT_SEED)
    big_fj = [a for a in big if a.tile == "10SFJ"]
    assert len(big_fj) == 48 and len({a.date for a in big_fj}) == 48
    extra = [a for a in big_fj if a.date.isoformat() not in S.DEMO_DATES]
    assert all("2020-01-01" <= a.date.isoformat() <= "2021-06-30" for a in extra)
    small = S._plan(1, S.DEFAULT_SEED)
    assert [a.id for a in small] == ["S2B_10SFJ_20200908_0_L2A"]
    with pytest.raises(S2IntakeError):
        S._plan(10_000, S.DEFAULT_SEED)


def test_bad_parameters_raise(tmp_path: Path) -> None:
    with pytest.raises(S.SampleError):
        S.build_sample(tmp_path, n_dates=0)
    with pytest.raises(S.SampleError):
        S.build_sample(tmp_path, bands=["red", "coastal"])
    with pytest.raises(ValueError):
        S.build_sample(tmp_path, processes=0)
    assert not (tmp_path / "manifest.json").exists()


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("S2INTAKE_SAMPLE_DIR", raising=False)
    assert S.default_root() == Path.home() / ".cache" / "s2intake" / "sample"
    assert S.default_root(dense=True) == Path.home() / ".cache" / "s2intake" / "sample-dense"
    monkeypatch.setenv("S2INTAKE_SAMPLE_DIR", str(tmp_path / "here"))
    assert S.default_root() == tmp_path / "here"
    assert S.default_root(True) == tmp_path / "here-dense"


def test_dense_windows_tile_the_whole_grid() -> None:
    for code in ("10SFJ", "10SFH"):
        wins = S._windows(S.TILES[code], dense=True)
        covered = np.zeros((10980, 10980), bool)
        for w in wins:
            assert not covered[w.r0:w.r1, w.c0:w.c1].any()
            covered[w.r0:w.r1, w.c0:w.c1] = True
            assert w.r0 % 2048 == 0 and (w.r1 - w.r0) % 2 == 0
        assert covered.all()


# ------------------------------------------------------------------------------------------
# layout and COG structure
# ------------------------------------------------------------------------------------------
def test_layout(built: S.SampleInfo, items: dict) -> None:
    root = built.root
    assert built.cog_root == root
    for v in ("v1", "v0"):
        assert built.items_path[v] == root / "stac" / v / "items.json"
        assert built.collection_path[v] == root / "stac" / v / "collection.json"
        assert json.loads(built.items_path[v].read_text())["type"] == "FeatureCollection"
    assert built.truth_path == root / "truth.json"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["params"]["n_dates"] == N_DATES
    assert len(items["v1"]) == N_DATES + 1  # + the 10SFH item of the mosaic date
    expected = root / "sentinel-s2-l2a-cogs/10/S/FJ/2020/9/S2B_10SFJ_20200908_0_L2A"
    assert sorted(p.name for p in expected.iterdir()) == sorted(
        ["B02.tif", "B03.tif", "B04.tif", "B08.tif", "B11.tif", "B12.tif", "SCL.tif"])
    assert (root / "sentinel-s2-l2a-cogs/10/S/FH/2020/9/S2A_10SFH_20200923_0_L2A/B04.tif"
            ).is_file()
    for rel in manifest["files"]:
        assert (root / rel).is_file(), rel
    assert not list(root.rglob("*.tmp*"))


@pytest.mark.parametrize(("key", "res", "dtype", "predictor"), [
    ("red", 10, "uint16", "2"), ("nir", 10, "uint16", "2"), ("swir22", 20, "uint16", "2"),
    ("scl", 20, "uint8", None)])
def test_cog_structure(items: dict, key: str, res: int, dtype: str, predictor: str | None
                       ) -> None:
    for tile, y0 in (("10SFJ", 4500000), ("10SFH", 4400040)):
        item = items["v1"][_id("2020-09-23", tile, items["v1"])]
        with rasterio.open(item["assets"][key]["href"]) as ds:
            n = 10980 if res == 10 else 5490
            assert (ds.width, ds.height, ds.count) == (n, n, 1)
            assert ds.dtypes == (dtype,)
            assert ds.nodata == 0
            assert ds.crs.to_epsg() == 32610
            assert ds.transform == Affine(res, 0, 600000, 0, -res, y0)
            assert ds.block_shapes == [(1024, 1024)]
            assert ds.overviews(1) == [2, 4, 8, 16]
            tags = ds.tags(ns="IMAGE_STRUCTURE")
            assert tags["LAYOUT"] == "COG"
            assert tags["COMPRESSION"] == "DEFLATE"
            assert tags.get("PREDICTOR") == predictor
            # overview pixels exist where the data is (nodata-aware average / nearest)
            ovr = ds.read(1, out_shape=(math.ceil(n / 16), math.ceil(n / 16)))
            assert (ovr > 0).sum() > 0
        assert item["assets"][key]["proj:shape"] == [n, n]
        assert item["assets"][key]["proj:transform"] == [res, 0, 600000, 0, -res, y0]


def test_sparse_only_the_aoi_blocks(items: dict) -> None:
    fj = items["v1"][_id("2020-09-08", items=items["v1"])]
    assert _nonempty_blocks(fj["assets"]["red"]["href"]) == FJ_BLOCKS_10
    assert _nonempty_blocks(fj["assets"]["swir16"]["href"]) == FJ_BLOCKS_20
    assert _nonempty_blocks(fj["assets"]["scl"]["href"]) == FJ_BLOCKS_20
    fh = items["v1"][_id("2020-09-23", "10SFH", items["v1"])]
    assert _nonempty_blocks(fh["assets"]["nir"]["href"]) == FH_BLOCKS_10
    assert _nonempty_blocks(fh["assets"]["scl"]["href"]) == {(0, 1), (0, 2)}
    with rasterio.open(fj["assets"]["red"]["href"]) as ds:
        assert not ds.read(1, window=Window(0, 0, 1024, 1024)).any()
        assert not ds.read(1, window=Window(6 * 1024, 8 * 1024, 1024, 1024)).any()
        assert (ds.read(1, window=Window(3 * 1024, 9 * 1024, 1024, 1024)) > 0).all()
    size = Path(fj["assets"]["red"]["href"]).stat().st_size
    assert 1e6 < size < 30e6  # a dense 10 m band is ~230 MB


def test_determinism_seed_and_rebuild_rules(built: S.SampleInfo, items: dict,
                                            tmp_path: Path) -> None:
    item = items["v1"][_id("2020-09-08", items=items["v1"])]
    block = (9 * 1024, 3 * 1024, 1024, 1024)

    def digest(info: S.SampleInfo) -> str:
        (only,) = info.items("v1", base=info.cog_root)
        assert only["id"] == item["id"] and list(only["assets"]) == ["red"]
        return hashlib.sha256(_read(only, "red", block).tobytes()).hexdigest()

    ref = hashlib.sha256(_read(item, "red", block).tobytes()).hexdigest()
    messages: list[str] = []
    small = S.build_sample(tmp_path, n_dates=1, bands=["red"], progress=messages.append)
    assert any("built" in m for m in messages)
    assert digest(small) == ref  # same seed, same pixels, whatever else is built
    red = Path(small.items("v1", base=small.cog_root)[0]["assets"]["red"]["href"])
    first = red.stat().st_mtime_ns

    messages.clear()  # up to date: nothing rebuilt
    assert S.build_sample(tmp_path, n_dates=1, bands=["red"], progress=messages.append) == small
    assert messages == [f"sample up to date in {tmp_path.resolve()}"]
    assert red.stat().st_mtime_ns == first

    (tmp_path / "manifest.json").unlink()  # as if the build had been interrupted
    S.build_sample(tmp_path, n_dates=1, bands=["red"])
    assert (tmp_path / "manifest.json").is_file()
    second = red.stat().st_mtime_ns
    assert second != first and digest(small) == ref

    seeded = S.build_sample(tmp_path, n_dates=1, bands=["red"], seed=7)  # other parameters
    assert red.stat().st_mtime_ns != second
    assert digest(seeded) != ref
    assert json.loads((tmp_path / "manifest.json").read_text())["params"]["seed"] == 7


def test_force_rebuilds_an_up_to_date_folder(built: S.SampleInfo,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(S, "_build", lambda *args: calls.append(args))
    assert S.build_sample(built.root, n_dates=N_DATES) == built
    assert calls == []
    assert S.build_sample(built.root, n_dates=N_DATES, force=True) == built
    assert len(calls) == 1 and calls[0][0] == built.root and calls[0][5] == N_DATES


def test_up_to_date_needs_every_file(built: S.SampleInfo) -> None:
    manifest = json.loads((built.root / "manifest.json").read_text())
    params = manifest["params"]
    assert S._is_current(built.root, params)
    assert not S._is_current(built.root, {**params, "seed": params["seed"] + 1})
    victim = built.root / manifest["files"][0]
    hidden = victim.with_name(victim.name + ".hidden")
    victim.rename(hidden)
    try:
        assert not S._is_current(built.root, params)
    finally:
        hidden.rename(victim)
    assert S._is_current(built.root, params)
    stamp = (built.root / "manifest.json").stat().st_mtime_ns
    t0 = time.perf_counter()
    assert S.build_sample(built.root, n_dates=N_DATES) == built
    assert time.perf_counter() - t0 < 5
    assert (built.root / "manifest.json").stat().st_mtime_ns == stamp


# ------------------------------------------------------------------------------------------
# content: burn, clouds, wedge, mosaic, offset
# ------------------------------------------------------------------------------------------
def _burned_in_aoi(item: dict[str, Any], aoi: np.ndarray, offset: int = 0) -> int:
    nir = _read(item, "nir").astype(np.int32) - offset
    return int(((nir >= 700) & (nir <= 1300) & aoi).sum())


def test_burn_scar_appears_on_2020_09_08_and_grows(items: dict, truth: dict) -> None:
    v1 = items["v1"]
    aoi = _aoi_mask()
    dates = ["2020-09-03", "2020-09-08", "2020-09-13", "2020-10-03"]
    areas = [truth[_id(d, items=v1)]["burn_area_m2"] for d in dates]
    assert areas[0] == 0 and 0 < areas[1] < areas[2] < areas[3]
    assert _burned_in_aoi(v1[_id("2020-09-03", items=v1)], aoi) == 0
    seen = [_burned_in_aoi(v1[_id(d, items=v1)], aoi) for d in ("2020-09-08", "2020-10-03")]
    assert seen[0] > 0.2 * aoi.sum() and seen[1] > seen[0]
    # burned pixels: NIR down, SWIR22 up, NBR drops strongly
    pre, post = v1[_id("2020-09-03", items=v1)], v1[_id("2020-10-03", items=v1)]
    nir_post = _read(post, "nir").astype(float)
    burned = (nir_post >= 700) & (nir_post <= 1300) & aoi
    burned20 = burned[::2, ::2] & burned[1::2, 1::2] & burned[::2, 1::2] & burned[1::2, ::2]

    def nbr(item: dict[str, Any]) -> np.ndarray:
        nir = _read(item, "nir").astype(float)[::2, ::2]
        swir = _read(item, "swir22").astype(float)
        return (nir - swir) / (nir + swir)

    assert (nbr(pre)[burned20].mean() - nbr(post)[burned20].mean()) > 0.5
    assert _read(post, "swir22")[burned20].mean() > 1900
    assert _read(post, "red")[burned].mean() < 500


def test_truth_burn_counts_match_pixels(built: S.SampleInfo, items: dict, truth: dict) -> None:
    v1 = items["v1"]
    aoi = _aoi_mask()
    for date in ("2020-09-08", "2020-10-03"):
        row = truth[_id(date, items=v1)]
        assert row["clear_fraction"] == 1.0
        assert _burned_in_aoi(v1[row["id"]], aoi) * 100 == row["burn_area_m2"]
        assert row["burn_area_visible_m2"] == row["burn_area_m2"]
        assert row["burn_area_total_m2"] >= row["burn_area_m2"]
    late = truth[_id("2022-02-10", items=v1)]
    assert _burned_in_aoi(v1[late["id"]], aoi, offset=1000) * 100 == late["burn_area_m2"]
    assert built.truth()["aoi"]["pixels_10m"] == int(aoi.sum())


def test_cloudy_date_scl_marks_the_bright_pixels(items: dict, truth: dict) -> None:
    item = items["v1"][_id("2020-09-13", items=items["v1"])]
    row = truth[item["id"]]
    assert row["cloudy_over_aoi"] and 0.05 < row["aoi_cloud_fraction"] < 0.9
    assert "cloudy" in row["kinds"]
    blue = _read(item, "blue")
    green = _read(item, "green")
    scl = _up(_read(item, "scl"))
    cloud = (scl == 8) | (scl == 9) | (scl == 10)
    bright = blue > 2000
    assert bright.sum() > 10_000
    assert cloud[bright].all()  # every bright pixel is flagged
    assert (blue[scl == 9] > 3000).all() and (green[scl == 9] > 3000).all()
    assert np.percentile(blue[scl == 9], 50) > 4000
    assert (blue[(scl == 4) | (scl == 5)] < 1300).all()
    shadow = scl == 3
    assert shadow.sum() > 0
    nir = _read(item, "nir")
    assert nir[shadow].mean() < 0.6 * nir[scl == 4].mean()
    # truth: AOI fractions are exact counts of the SCL over the AOI
    aoi = _aoi_mask()
    assert row["aoi_cloud_fraction"] == round(float((cloud & aoi).sum() / aoi.sum()), 6)
    clear = (scl >= 4) & (scl <= 6)
    assert row["clear_fraction"] == round(float((clear & aoi).sum() / aoi.sum()), 6)
    assert item["properties"]["eo:cloud_cover"] > 5


def test_tile_cloud_cover_versus_aoi_clouds(items: dict, truth: dict) -> None:
    v1 = items["v1"]
    aoi = _aoi_mask()
    tile_cloudy = v1[_id("2020-04-06", items=v1)]
    assert tile_cloudy["properties"]["eo:cloud_cover"] > 10
    assert truth[tile_cloudy["id"]]["clear_fraction"] == 1.0
    scl = _up(_read(tile_cloudy, "scl"))
    assert not (scl[aoi] >= 8).any() and not (scl[aoi] == 3).any()
    assert (scl[~aoi] >= 8).any()  # a cloud in the data blocks, just outside the AOI
    aoi_cloudy = v1[_id("2020-07-20", items=v1)]
    assert aoi_cloudy["properties"]["eo:cloud_cover"] < 10
    row = truth[aoi_cloudy["id"]]
    assert row["cloudy_over_aoi"] and row["aoi_cloud_fraction"] > 0.02
    scl = _up(_read(aoi_cloudy, "scl"))
    assert ((scl >= 8) & aoi).sum() / aoi.sum() == pytest.approx(row["aoi_cloud_fraction"],
                                                                  abs=1e-6)
    assert (_read(aoi_cloudy, "red")[(scl == 9) & aoi] > 3000).all()


def test_wedge_is_nodata_in_every_band(items: dict, truth: dict) -> None:
    item = items["v1"][_id("2020-05-28", items=items["v1"])]
    row = truth[item["id"]]
    assert row["partial"] and "partial" in row["kinds"]
    nodata = _read(item, "red") == 0
    for key in ("blue", "green", "nir"):
        assert np.array_equal(_read(item, key) == 0, nodata)
    for key in ("swir16", "swir22", "scl"):
        assert np.array_equal(_up(_read(item, key) == 0), nodata)
    aoi = _aoi_mask()
    assert 0.2 < nodata[aoi].mean() < 0.8  # the wedge cuts through the AOI
    assert row["aoi_valid_fraction"] == round(float((~nodata & aoi).sum() / aoi.sum()), 6)
    # footprint and coverage properties agree with the pixels
    footprint = _to_utm(item["geometry"])
    pct = item["properties"]["s2:nodata_pixel_percentage"]
    assert 10 < pct < 90
    tile = box(600000, 4390200, 709800, 4500000)
    assert footprint.area / tile.area == pytest.approx(1 - pct / 100, abs=0.005)
    v0 = items["v0"][item["id"]]["properties"]
    assert v0["sentinel:data_coverage"] == pytest.approx(100 - pct, abs=0.01)
    r0, c0 = FJ_WIN10[:2]
    rows, cols = np.nonzero(nodata & aoi)
    dead = Point(600000 + 10 * (c0 + cols[0]) + 5, 4500000 - 10 * (r0 + rows[0]) - 5)
    rows, cols = np.nonzero(~nodata & aoi)
    live = Point(600000 + 10 * (c0 + cols[-1]) + 5, 4500000 - 10 * (r0 + rows[-1]) - 5)
    assert footprint.buffer(-50).disjoint(dead.buffer(30)) and footprint.contains(live)
    clear = items["v1"][_id("2020-09-08", items=items["v1"])]
    assert clear["properties"]["s2:nodata_pixel_percentage"] == 0
    assert (_read(clear, "red") > 0).all()


def test_same_day_mosaic_with_10sfh(items: dict, truth: dict) -> None:
    v1 = items["v1"]
    fj, fh = v1[_id("2020-09-23", items=v1)], v1[_id("2020-09-23", "10SFH", v1)]
    t_fj = np.datetime64(fj["properties"]["datetime"].rstrip("Z"))
    t_fh = np.datetime64(fh["properties"]["datetime"].rstrip("Z"))
    assert np.timedelta64(0, "s") < abs(t_fh - t_fj) < np.timedelta64(10, "s")
    assert fh["properties"]["mgrs:grid_square"] == "FH"
    assert items["v0"][fh["id"]]["properties"]["sentinel:grid_square"] == "FH"
    assert truth[fj["id"]]["same_day"] == [fh["id"]]
    # the overlap of the two tiles inside 10SFJ's AOI blocks: 10SFJ rows 9996.. (y <= 4400040)
    overlap_fj = (9996, 2048, 10980 - 9996, 3072)
    overlap_fh = (0, 2048, 10980 - 9996, 3072)
    a = _read(fj, "nir", overlap_fj)
    b = _read(fh, "nir", overlap_fh)
    aoi = _aoi_mask(window=overlap_fj)
    assert np.array_equal(aoi, _aoi_mask(4400040.0, overlap_fh))
    missing = (a == 0) & aoi
    assert missing.sum() > 0.5 * aoi.sum()  # 10SFJ lacks most of the AOI's southern strip
    assert (b[aoi] > 0).all()  # 10SFH has all of it
    both = (a > 0) & (b > 0)
    assert both.sum() > 0 and np.array_equal(a[both], b[both])  # same ground, same values
    full_aoi = _aoi_mask()
    fj_nir = _read(fj, "nir")
    assert 0.5 < (fj_nir[full_aoi] > 0).mean() < 0.95
    row_fj, row_fh = truth[fj["id"]], truth[fh["id"]]
    assert row_fj["aoi_valid_fraction"] + row_fh["aoi_valid_fraction"] > 1.0


def test_baseline_04_offset(items: dict, truth: dict) -> None:
    v1, v0 = items["v1"], items["v0"]
    new, old = _id("2022-02-10", items=v1), _id("2020-09-03", items=v1)
    p_new, p_old = v1[new]["properties"], v1[old]["properties"]
    assert p_new["s2:processing_baseline"] >= "04.00" and p_new["earthsearch:boa_offset_applied"]
    assert p_old["s2:processing_baseline"] == "02.14"
    assert p_old["earthsearch:boa_offset_applied"] is False
    for key in ("red", "nir", "swir22"):
        assert v1[new]["assets"][key]["raster:bands"][0]["offset"] == -0.1
        assert v1[old]["assets"][key]["raster:bands"][0]["offset"] == 0
        assert v1[new]["assets"][key]["raster:bands"][0]["scale"] == 0.0001
    assert "offset" not in v1[new]["assets"]["scl"]["raster:bands"][0]
    q_new, q_old = v0[new]["properties"], v0[old]["properties"]
    assert q_new["sentinel:processing_baseline"] == "04.00"
    assert q_new["sentinel:boa_offset_applied"] is True
    assert "_N0400_" in q_new["sentinel:product_id"] and "_N0214_" in q_old["sentinel:product_id"]
    assert "sentinel:boa_offset_applied" not in q_old
    assert truth[new]["dn_offset"] == 1000 and truth[old]["dn_offset"] == 0
    red_new, red_old = _read(v1[new], "red"), _read(v1[old], "red")
    assert red_new.min() > 1000 and red_old.min() < 1000
    shift = np.median(red_new.astype(float)) - np.median(red_old.astype(float))
    assert 850 < shift < 1150


# ------------------------------------------------------------------------------------------
# items and collections
# ------------------------------------------------------------------------------------------
def test_v0_and_v1_point_at_the_same_files(built: S.SampleInfo) -> None:
    v1 = {i["id"]: i for i in built.items("v1")}
    v0 = {i["id"]: i for i in built.items("v0")}
    assert set(v1) == set(v0)
    for item_id, item in v1.items():
        assert item["collection"] == "sentinel-2-l2a"
        assert v0[item_id]["collection"] == "sentinel-s2-l2a-cogs"
        assert set(v0[item_id]["assets"]) == {V1_TO_V0[k] for k in item["assets"]}
        for key, asset in item["assets"].items():
            href = asset["href"]
            assert href == v0[item_id]["assets"][V1_TO_V0[key]]["href"]
            assert href.startswith(S.REAL_COG_BASE + "/sentinel-s2-l2a-cogs/10/S/F")
            assert href.endswith(f"/{item_id}/{V1_TO_V0[key]}.tif")
            assert (built.cog_root / href[len(S.REAL_COG_BASE) + 1:]).is_file()


def test_item_keys_match_real_earth_search(built: S.SampleInfo) -> None:
    real_v1 = _real("v1", "S2A_13TDE_20231008_0_L2A.json")  # sentinel2-to-stac 0.1.1
    real_v0_2020 = _real("v0", "S2B_36MYB_20200806_0_L2A.json")
    real_v0_2023 = _real("v0", "S2A_24XWF_20230506_1_L2A.json")
    for item in built.items("v1"):
        assert set(item) == set(real_v1)
        assert set(item["properties"]) == set(real_v1["properties"])
        assert item["stac_extensions"] == real_v1["stac_extensions"]
        for key, asset in item["assets"].items():
            assert set(asset) == set(real_v1["assets"][key]), key
            assert len(asset["proj:transform"]) == 6
            assert asset["type"] == real_v1["assets"][key]["type"]
            assert asset["roles"] == real_v1["assets"][key]["roles"]
            rb, real_rb = asset["raster:bands"][0], real_v1["assets"][key]["raster:bands"][0]
            assert set(rb) == set(real_rb)
            for field in ("nodata", "data_type", "bits_per_sample", "scale"):
                assert rb.get(field) == real_rb.get(field), (key, field)
            assert rb["spatial_resolution"] == asset.get("gsd", 20)
            if "eo:bands" in asset:
                assert asset["eo:bands"] == real_v1["assets"][key]["eo:bands"]
        rels = [link["rel"] for link in item["links"]]
        assert {"self", "parent", "collection", "root"} <= set(rels)
        assert set(rels) <= {link["rel"] for link in real_v1["links"]}
        for k, v in item["properties"].items():
            assert isinstance(v, type(real_v1["properties"][k])) or (
                isinstance(v, int | float) and isinstance(real_v1["properties"][k], int | float)
            ), k
        assert item["properties"]["grid:code"] in ("MGRS-10SFJ", "MGRS-10SFH")
    for item in built.items("v0"):
        real = real_v0_2023 if item["properties"]["datetime"] >= "2022" else real_v0_2020
        assert set(item) == set(real)
        assert set(item["properties"]) == set(real["properties"])
        assert item["stac_extensions"] == real["stac_extensions"]
        for key, asset in item["assets"].items():
            assert set(asset) == set(real_v0_2023["assets"][key]), key
            assert len(asset["proj:transform"]) == 9
            assert asset["proj:transform"][6:] == [0, 0, 1]
            assert "raster:bands" not in asset
        rels = {link["rel"] for link in item["links"]}
        assert {"self", "parent", "collection", "root"} <= rels
        assert rels <= {link["rel"] for link in real_v0_2023["links"]}
        assert item["properties"]["sentinel:product_id"].startswith(item["id"][:3] + "_MSIL2A_")
        assert item["properties"]["sentinel:grid_square"] in ("FJ", "FH")
    flags = [i["properties"]["sentinel:valid_cloud_cover"] for i in built.items("v0")]
    assert all(isinstance(f, bool) for f in flags)


def test_geometry_and_bbox(built: S.SampleInfo) -> None:
    aoi = shape(S.BERRY_CREEK_AOI)
    for item in built.items("v1") + built.items("v0"):
        geom = shape(item["geometry"])
        assert geom.is_valid and geom.exterior.is_ccw
        assert list(geom.bounds) == pytest.approx(item["bbox"])
        assert geom.intersects(aoi)
        lon, lat = geom.centroid.x, geom.centroid.y
        assert -122.0 < lon < -120.4 and 39.0 < lat < 40.7


def test_collections(built: S.SampleInfo) -> None:
    real_v1 = _real("v1", "collection_sentinel-2-l2a.json")
    real_v0 = _real("v0", "collection_sentinel-s2-l2a-cogs.json")
    v1, v0 = built.collection("v1"), built.collection("v0")
    assert set(v1) == set(real_v1) and v1["id"] == "sentinel-2-l2a" and v1["type"] == "Collection"
    assert set(v0) == set(real_v0) | {"type"} and v0["type"] == "Collection"
    assert v0["stac_version"] == "1.0.0-beta.2" and v0["id"] == "sentinel-s2-l2a-cogs"
    assert set(v1["item_assets"]) == set(V1_TO_V0)
    assert set(v0["item_assets"]) == set(V1_TO_V0.values())
    for key, asset in v1["item_assets"].items():
        assert asset == real_v1["item_assets"][key]  # offset 0 there: read it per item
    for version, coll in (("v1", v1), ("v0", v0)):
        items = built.items(version)
        bbox = coll["extent"]["spatial"]["bbox"][0]
        for item in items:
            b = item["bbox"]
            assert bbox[0] <= b[0] and bbox[1] <= b[1] and bbox[2] >= b[2] and bbox[3] >= b[3]
        times = sorted(i["properties"]["datetime"] for i in items)
        assert coll["extent"]["temporal"]["interval"] == [[times[0], times[-1]]]


def test_rebase_hrefs(built: S.SampleInfo, tmp_path: Path) -> None:
    original = built.items("v1")
    before = json.dumps(original)
    moved = S.rebase_hrefs(original, "http://127.0.0.1:8080/")
    assert json.dumps(original) == before  # deep copies
    for item in moved:
        for asset in item["assets"].values():
            assert asset["href"].startswith("http://127.0.0.1:8080/sentinel-s2-l2a-cogs/10/S/")
        canonical = [lk for lk in item["links"] if lk["rel"] == "canonical"]
        assert canonical[0]["href"].startswith("s3://sentinel-cogs/")
        assert item["links"][0]["href"].startswith("https://earth-search.aws.element84.com/v1")
    local = built.items("v0", base=built.cog_root)
    for item in local:
        for asset in item["assets"].values():
            path = Path(asset["href"])
            assert path.is_absolute() and path.is_file()
            with rasterio.open(path) as ds:
                assert ds.crs.to_epsg() == 32610
    rel = S.rebase_hrefs(built.items("v1")[:1], os.path.relpath(built.cog_root))
    assert Path(rel[0]["assets"]["red"]["href"]).is_absolute()
    written = built.write_local_items("v1", tmp_path / "local.json")
    data = json.loads(written.read_text())
    assert data["type"] == "FeatureCollection"
    assert all(Path(a["href"]).is_file() for i in data["features"] for a in i["assets"].values())


def test_truth_file(built: S.SampleInfo, truth: dict, items: dict) -> None:
    assert set(truth) == set(items["v1"])
    for row in truth.values():
        item = items["v1"][row["id"]]
        assert row["datetime"] == item["properties"]["datetime"]
        assert row["tile"] == item["properties"]["grid:code"][5:]
        assert row["cloud_cover"] == item["properties"]["eo:cloud_cover"]
        assert 0 <= row["clear_fraction"] <= row["aoi_valid_fraction"] <= 1
        assert isinstance(row["cloudy_over_aoi"], bool) and isinstance(row["partial"], bool)
        assert row["partial"] == (item["properties"]["s2:nodata_pixel_percentage"] > 0)
    kinds = {k for row in truth.values() for k in row["kinds"]}
    assert {"clear", "cloudy", "partial", "burn", "burn_start", "boa_offset", "mosaic"} <= kinds


# ------------------------------------------------------------------------------------------
# dense (opt-in: slow)
# ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not os.environ.get("S2INTAKE_TEST_DENSE"),
                    reason="set S2INTAKE_TEST_DENSE=1 to build a (one band, one date) dense tile")
def test_dense_tile(tmp_path: Path, items: dict) -> None:
    info = S.build_sample(tmp_path, dense=True, n_dates=1, bands=["nir"])
    item = info.items("v1", base=info.cog_root)[0]
    href = item["assets"]["nir"]["href"]
    assert _nonempty_blocks(href) == {(r, c) for r in range(11) for c in range(11)}
    sparse = items["v1"][item["id"]]
    assert np.array_equal(_read(item, "nir"), _read(sparse, "nir"))  # same pixels
    with rasterio.open(href) as ds:
        assert (ds.read(1, window=Window(0, 0, 1024, 1024)) > 0).all()
