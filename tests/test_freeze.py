"""Frozen item snapshots: written atomically, complete, and loaded back offline to the same
dataset; plus the ``s2intake freeze`` command."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import s2intake
from s2intake import SearchError
from s2intake.cli_freeze import freeze as freeze_command
from s2intake.freeze import HEADER_KEY, freeze, open_snapshot, read_snapshot

AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
WINDOW = "2020-09-01/2020-10-31"
V0 = "sentinel-s2-l2a-cogs"


@pytest.fixture(scope="module")
def found_v1(stac_url):
    return s2intake.search(AOI, WINDOW, max_cloud=20, url=stac_url, limit=4)


@pytest.fixture(scope="module")
def found_v0(stac_url):
    return s2intake.search(AOI, WINDOW, url=stac_url, collection=V0,
                           query=["eo:cloud_cover<95", "sentinel:grid_square=FJ"])


@pytest.fixture()
def offline(monkeypatch):
    """Any attempt to reach a STAC API fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a STAC API was contacted: {args} {kwargs}")

    monkeypatch.setattr(importlib.import_module("s2intake.search"), "open_client", refuse)
    monkeypatch.setenv("S2INTAKE_STAC_URL", "http://127.0.0.1:9/unreachable")


def _same_stack(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(a, b)  # structure, coordinates, attrs (and graph tokens)
    name = next(iter(a.data_vars))  # and the pixels of one band on the last date, for real
    np.testing.assert_array_equal(a[name].isel(time=-1).values, b[name].isel(time=-1).values)


def test_snapshot_is_a_feature_collection_with_a_header(found_v1, tmp_path):
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    path = freeze(found_v1, tmp_path / "berry_creek.snapshot.json")
    document = json.loads(path.read_text())
    assert document["type"] == "FeatureCollection"
    assert document["features"] == found_v1.items  # the full items, untouched
    header = document[HEADER_KEY]
    frozen = dt.datetime.fromisoformat(header["frozen_at"].replace("Z", "+00:00"))
    assert before <= frozen <= dt.datetime.now(dt.UTC)
    assert header["source"] == found_v1.url and header["profile"] == "v1"
    assert header["collection"] == "sentinel-2-l2a"
    assert header["parameters"]["max_cloud"] == 20
    assert header["parameters"]["datetime"].startswith("2020-09-01")
    assert header["ids"] == [i["id"] for i in found_v1.items] and header["count"] > 4
    assert header["aoi"] == json.loads(found_v1.aoi.to_json())
    hrefs = [a["href"] for i in document["features"] for a in i["assets"].values()]
    assert hrefs and all(h.startswith("http://127.0.0.1:") for h in hrefs)
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("version", ["v1", "v0"])
def test_snapshot_loads_back_to_the_same_dataset_offline(version, found_v1, found_v0, tmp_path,
                                                         monkeypatch, request):
    found = found_v1 if version == "v1" else found_v0
    bands = ["red", "scl"] if version == "v1" else ["B04", "SCL"]
    original = s2intake.stack(found, bands)
    path = freeze(found, tmp_path / f"{version}.snapshot.json")
    request.getfixturevalue("offline")
    reopened = open_snapshot(path)
    assert [i["id"] for i in reopened] == [i["id"] for i in found]
    assert reopened.aoi.to_json() == found.aoi.to_json()
    assert reopened.profile.name == version and reopened.parameters["source"] == found.url
    _same_stack(original, s2intake.stack(reopened, bands))
    # the snapshot is also a plain local item file for search(url=...)
    collection = V0 if version == "v0" else None
    again = s2intake.search(AOI, WINDOW, url=str(path), collection=collection,
                            max_cloud=20 if version == "v1" else None)
    assert [i["id"] for i in again] == [i["id"] for i in found]
    xr.testing.assert_identical(s2intake.stack(again, bands), original)


def test_searching_inside_a_snapshot_narrows_it(found_v1, tmp_path, offline):
    path = freeze(found_v1, tmp_path / "snap.json")
    september = s2intake.search(AOI, "2020-09-01/2020-09-30", url=str(path))
    assert 0 < len(september) < len(found_v1)
    assert all(i["properties"]["datetime"] < "2020-10" for i in september)


def test_a_failed_write_leaves_the_old_snapshot_intact(found_v1, tmp_path, monkeypatch):
    path = freeze(found_v1, tmp_path / "snap.json")
    old = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        freeze(found_v1.items[:1], path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.json"]  # no temporary left


def test_edited_snapshots_are_refused(found_v1, tmp_path):
    path = freeze(found_v1, tmp_path / "snap.json")
    document = json.loads(path.read_text())
    document["features"][0]["properties"]["eo:cloud_cover"] = 55.5
    path.write_text(json.dumps(document))
    with pytest.raises(SearchError, match="sha256 mismatch"):
        open_snapshot(path)
    header, items = read_snapshot(path, verify=False)
    assert items[0]["properties"]["eo:cloud_cover"] == 55.5 and header["count"] == len(items)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    with pytest.raises(SearchError, match="no 's2intake:snapshot' header"):
        open_snapshot(plain)


def test_freeze_refuses_nothing_and_duplicates(found_v1, tmp_path):
    with pytest.raises(SearchError, match="no item"):
        freeze([], tmp_path / "empty.json")
    with pytest.raises(SearchError, match="ids repeat"):
        freeze(found_v1.items[:1] * 2, tmp_path / "dupes.json")
    assert list(tmp_path.iterdir()) == []
    path = freeze(found_v1.item_collection(), tmp_path / "items.json", aoi=AOI,
                  parameters={"note": "from an ItemCollection"})
    header, _ = read_snapshot(path)
    assert header["parameters"] == {"note": "from an ItemCollection"}
    assert header["aoi"] is not None and header["source"] is None


def test_freeze_command(stac_url, tmp_path):
    runner = CliRunner()
    out = tmp_path / "berry_creek.snapshot.json"
    args = [str(AOI), str(out), "-d", WINDOW, "-c", "20", "--url", stac_url]
    result = runner.invoke(freeze_command, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    header, items = read_snapshot(out)
    assert header["source"] == stac_url and header["parameters"]["max_cloud"] == 20
    assert len(items) == header["count"] > 0
    again = runner.invoke(freeze_command, args)
    assert again.exit_code == 1 and "exists; pass --force" in again.stderr
    assert runner.invoke(freeze_command, [*args, "--force"]).exit_code == 0
    empty = runner.invoke(freeze_command, [str(AOI), str(tmp_path / "none.json"), "-d",
                                           "1990-01-01/1990-12-31", "--url", stac_url])
    assert empty.exit_code == 3 and "no sentinel-2-l2a item" in empty.stderr
    assert not (tmp_path / "none.json").exists()
    v0 = runner.invoke(freeze_command, [str(AOI), str(tmp_path / "v0.json"), "-d", WINDOW,
                                        "--url", stac_url, "--collection", V0,
                                        "-q", "sentinel:grid_square=FJ"])
    assert v0.exit_code == 0, v0.output
    assert read_snapshot(tmp_path / "v0.json")[0]["profile"] == "v0"
