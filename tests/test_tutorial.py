"""``docs/tutorial.md`` runs: every ``python`` block, in order, in one namespace.

The tutorial's searches go to the embedded sample's items with their hrefs on the local
replica's nginx (HTTP range reads, as from the real bucket); ``python hvplot`` blocks run only
when hvplot is installed, ``python notest`` blocks (internet map tiles) never. The assertions
check the results the tutorial's prose states.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely.geometry
from PIL import Image

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
HAVE_HVPLOT = importlib.util.find_spec("hvplot") is not None
_FENCE = re.compile(r"^```(python[^\n]*)\n(.*?)^```", re.S | re.M)


def code_blocks(text: str) -> list[tuple[str, int, str]]:
    """``(info string, first line number, code)`` of every python block."""
    out = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start(2)) + 1
        out.append((match.group(1).strip(), line, match.group(2)))
    return out


def test_the_block_parser_sees_every_kind_of_block():
    blocks = code_blocks(TUTORIAL.read_text())
    kinds = {info for info, _, _ in blocks}
    assert kinds == {"python", "python hvplot", "python notest"}
    assert sum(info == "python" for info, _, _ in blocks) >= 12


@pytest.fixture(scope="module")
def ns(sample, replica, tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("tutorial")
    mp = pytest.MonkeyPatch()
    try:
        for version, var in (("v1", "S2INTAKE_STAC_URL"), ("v0", "S2INTAKE_STAC_URL_V0")):
            path = work / f"items-{version}.json"
            path.write_text(json.dumps({"type": "FeatureCollection",
                                        "features": sample.items(version,
                                                                 base=replica.cog_url)}))
            mp.setenv(var, str(path))
        mp.chdir(work)
        namespace: dict[str, Any] = {"__name__": "tutorial"}
        ran = []
        for info, line, code in code_blocks(TUTORIAL.read_text()):
            if info == "python notest" or (info == "python hvplot" and not HAVE_HVPLOT):
                continue
            exec(compile(code, f"{TUTORIAL}:{line}", "exec"), namespace)  # noqa: S102
            ran.append(line)
        namespace["_ran"] = ran
        namespace["_work"] = work
        yield namespace
    finally:
        mp.undo()


def _expected(sample, version: str, keep) -> list[str]:
    aoi = shapely.geometry.shape(json.loads(AOI.read_text())["geometry"])
    out = []
    for item in sample.items(version):
        props = item["properties"]
        if "2020-01-01" <= props["datetime"][:10] <= "2021-06-30" \
                and shapely.geometry.shape(item["geometry"]).intersects(aoi) and keep(props):
            out.append(item["id"])
    return sorted(out)


def test_the_seed_searches_v0_and_v1(ns, sample):
    v0 = _expected(sample, "v0", lambda p: p["eo:cloud_cover"] < 95
                   and p["sentinel:valid_cloud_cover"] and p["sentinel:grid_square"] == "FJ")
    v1 = _expected(sample, "v1", lambda p: p["eo:cloud_cover"] < 95
                   and p["mgrs:grid_square"] == "FJ")
    assert sorted(i["id"] for i in ns["found_v0"]) == v0
    assert sorted(i["id"] for i in ns["found"]) == v1
    assert sorted(set(v1) - set(v0)) == ["S2A_10SFJ_20200107_0_L2A"]  # as the prose says
    assert ns["items_dict"] == ns["found_v0"].items
    assert len(ns["items"]) == len(v1) and ns["items"].index.is_monotonic_increasing


def test_stack_clip_rgb_png_and_gif(ns):
    stack, rgb = ns["stack"], ns["rgb"]
    assert list(stack.data_vars) == ["red", "green", "blue"]
    assert stack.sizes["time"] == len(ns["found_v0"])  # FJ only: one scene per day
    assert rgb.dims == ("time", "y", "x", "band") and rgb.dtype == np.uint8
    with Image.open(ns["png"]) as png:
        assert png.size == (ns["subset"].sizes["x"], ns["subset"].sizes["y"])
    with Image.open(ns["gif"]) as gif:
        assert gif.n_frames == stack.sizes["time"] and max(gif.size) == 512
    if HAVE_HVPLOT:
        assert [str(d) for d in ns["slider"].kdims] == ["time"]


def test_tile_and_aoi_screening_disagree_where_the_prose_says(ns, sample):
    report, disagree = ns["report"], ns["disagree"]
    truth = {}
    for row in sample.truth()["acquisitions"]:
        truth.setdefault(row["date"], []).append(row)
    expected = set()
    for day, rows in truth.items():
        if len(rows) == 1 and day <= "2021-06-30":  # mosaic days: no single-tile truth
            keep_tile = rows[0]["cloud_cover"] <= 10
            keep_aoi = rows[0]["clear_fraction"] >= 0.9
            if keep_tile != keep_aoi:
                expected.add(day)
    days = {t.strftime("%Y-%m-%d"): row for t, row in disagree.iterrows()}
    assert set(days) == expected
    # the three cases the prose describes
    assert days["2020-04-06"]["verdict"] == "tile rejects a clear AOI"
    assert days["2020-04-06"]["tile_cloud_cover"] > 20  # "a quarter of the tile"
    assert days["2020-04-06"]["aoi_clear_fraction"] == 1.0  # "misses the AOI entirely"
    assert days["2020-07-20"]["verdict"] == "tile keeps a cloudy AOI"
    assert days["2020-07-20"]["tile_cloud_cover"] < 1  # "more than 99 % clear"
    for day in ("2020-05-28", "2020-10-25"):
        assert days[day]["verdict"] == "tile keeps a partly empty AOI"
        assert days[day]["tile_cloud_cover"] == 0 and days[day]["aoi_valid_fraction"] < 0.5
    clear = ns["clear"]
    assert (clear["clear_fraction"].values >= 0.9).all()
    assert clear.sizes["time"] == int((report["aoi_clear_fraction"] >= 0.9).sum())
    with Image.open(ns["clear_gif"]) as gif:
        assert gif.n_frames == ns["fire_season"].sizes["time"] >= 5


def test_burn_severity_matches_the_sample_and_the_prose(ns, sample):
    table, burned = ns["table"], ns["burned"]
    truth = max(a["burn_area_m2"] for a in sample.truth()["acquisitions"]) / 10_000
    assert burned == pytest.approx(truth, rel=0.05)
    assert burned == pytest.approx(truth, rel=0.01)  # "within 1 %" in the text
    assert list(table.index[:7]) == ["enhanced_regrowth_high", "enhanced_regrowth_low",
                                     "unburned", "low", "moderate_low", "moderate_high", "high"]
    assert table.loc["high", "area_ha"] > table.loc["moderate_high", "area_ha"] > 0
    with Image.open(ns["severity_map"]) as png:
        assert png.mode == "RGBA" and png.width > ns["dnbr"].sizes["x"]
    with Image.open(ns["burn_anim"]) as gif:
        assert gif.n_frames == 3


def test_the_frozen_snapshot_reloads(ns):
    header = json.loads(Path(ns["snapshot"]).read_text())["s2intake:snapshot"]
    assert header["ids"] == [i["id"] for i in ns["everything"]]
    assert header["parameters"]["datetime"].startswith("2020-01-01")
    assert ns["again"].sizes == ns["ds"].sizes
    written = {p.name for p in ns["_work"].iterdir()}
    assert {"berry_creek.gif", "berry_creek_clear.gif", "berry_creek_severity.png",
            "berry_creek_burn.gif", "berry_creek.snapshot.json",
            "berry_creek_2020-10-03.png"} <= written
    assert pd.Timestamp(header["frozen_at"]).year >= 2024
