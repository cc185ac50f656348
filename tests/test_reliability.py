"""Flaky servers, through a fault-injecting proxy in front of the local Earth Search replica.

Every test puts :class:`tests.faultproxy.FaultProxy` instances between s2intake and the
replica: one before the STAC API (rewriting the COG server's URL in the items to the COG
proxy's) and one before nginx. Faults are 5xx, 429 + Retry-After, connection resets,
stalls past the client timeout, truncated and corrupted bodies, on chosen requests or at a
seeded random rate. Expected results are computed without faults, through the same code.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from faultproxy import DEFAULT_MIX, FaultProxy, Rule, replica_proxies, wait_until

import s2intake
from s2intake import ReadError, SearchError
from s2intake.reader import FAILED_READS_ATTR, ReadFailure, compute_with_failures

AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
WHEN = "2020-01-01/2021-06-30"
#: Short GDAL timeouts and delays so that faults cost little test time.
#: A stall is cut after 1 s without a byte (low-speed limit), not after the 10 s timeout.
FAST_GDAL = {"GDAL_HTTP_TIMEOUT": "10", "GDAL_HTTP_LOW_SPEED_TIME": "1",
             "GDAL_HTTP_LOW_SPEED_LIMIT": "1", "GDAL_HTTP_CONNECTTIMEOUT": "2",
             "GDAL_HTTP_MAX_RETRY": "4", "GDAL_HTTP_RETRY_DELAY": "0.05"}
#: For tests where reads must fail: GDAL gives up quickly.
FAIL_GDAL = {**FAST_GDAL, "GDAL_HTTP_MAX_RETRY": "1", "GDAL_HTTP_RETRY_DELAY": "0.05"}
#: A 200 x 200 px window inside one 1024-px tile of 10SFJ (row 8, column 2).
SMALL = (625000.0, 4410000.0, 627000.0, 4412000.0)
#: Tile reads: a Range that does not start at byte 0 (the header read does).
TILE_READ = {"Range": r"^bytes=[1-9]"}
#: The header read GDAL makes when it opens a COG (``GDAL_INGESTED_BYTES_AT_OPEN``).
HEADER_READ = {"Range": r"^bytes=0-"}
ALL_KINDS = ("500", "502", "503", "504", "429", "reset", "stall", "truncate", "corrupt")
#: 502 and 504 take the same path as 500 and 503 in GDAL and in s2intake.
KINDS = ("500", "503", "429", "reset", "stall", "truncate", "corrupt")
#: Runs of the Berry Creek GIF at a 10% fault rate (the figure in docs/reliability.md).
FIGURE_RUNS = max(3, int(os.environ.get("S2INTAKE_FIGURE_RUNS", "3")))


proxies = replica_proxies


def _search(url: str, **kwargs: Any) -> s2intake.SearchResult:
    kwargs.setdefault("timeout", 2)
    return s2intake.search(AOI, WHEN, max_cloud=10, url=url, **kwargs)


def _ids(found: s2intake.SearchResult) -> list[str]:
    return [i["id"] for i in found.items]


def _small_stack(found: s2intake.SearchResult, count: int = 1,
                 bands: tuple[str, ...] = ("red",), **kwargs: Any) -> Any:
    """The first ``count`` items with data over :data:`SMALL` (one tile each)."""
    kwargs.setdefault("gdal_options", FAST_GDAL)
    items = [i for i in found.items if i["id"] in SMALL_IDS][:count]
    return s2intake.stack(items, list(bands), bounds=SMALL, mosaic=False, **kwargs)


#: Ids of the items that have pixels over :data:`SMALL` (set by the ``reference`` fixture).
SMALL_IDS: list[str] = []


@pytest.fixture(scope="module")
def reference(replica: Any) -> dict[str, Any]:
    """Fault-free results through fault-free proxies: search ids and small-window pixels."""
    with proxies(replica) as (stac, _cog):
        found = _search(stac.url, limit=5)
        first = s2intake.stack(found.items[:8], ["red"], bounds=SMALL, mosaic=False)
        pixels = first.red.values
    full = [i for i in range(len(pixels)) if pixels[i].all()]
    assert len(found) > 5 and len(full) >= 3
    SMALL_IDS[:] = [found.items[i]["id"] for i in full]
    return {"ids": _ids(found), "pixels": pixels[full], "items": found.items}


def _retries(caplog: pytest.LogCaptureFixture, logger: str) -> int:
    return sum(1 for r in caplog.records if r.name == logger and "retrying" in r.getMessage())


# ------------------------------------------------------------------------------ the proxy


def test_proxy_passes_ranges_and_posts_and_injects_each_fault(replica: Any) -> None:
    """The tool itself: pass-through is byte-exact; every fault kind looks as documented."""
    items = s2intake.search(AOI, WHEN, max_cloud=10, url=replica.stac_url).items
    href = items[0]["assets"]["red"]["href"]
    path = href[len(replica.cog_url):]
    direct = requests.get(href, headers={"Range": "bytes=100-4195"}, timeout=5)
    body = {"collections": ["sentinel-2-l2a"], "limit": 2}
    with proxies(replica) as (stac, cog):
        got = requests.get(cog.url + path, headers={"Range": "bytes=100-4195"}, timeout=5)
        assert got.status_code == 206 and got.content == direct.content
        assert got.headers["Content-Range"] == direct.headers["Content-Range"]
        page = requests.post(stac.url + "/search", json=body, timeout=5).json()
        assert [f["id"] for f in page["features"]] == [
            f["id"] for f in requests.post(replica.stac_url + "/search", json=body,
                                           timeout=5).json()["features"]]
        assert cog.url in page["features"][0]["assets"]["red"]["href"]  # rewritten
        assert replica.cog_url not in requests.get(stac.url + "/search?limit=1",
                                                   timeout=5).text

        def once(kind: str, **kwargs: Any) -> requests.Response:
            cog.configure(rules=[Rule(kind, nth={1})])
            return requests.get(cog.url + path, headers={"Range": "bytes=0-65535"}, **kwargs)

        for status in ("500", "502", "503", "504"):
            assert once(status, timeout=5).status_code == int(status)
        answer = once("429", timeout=5)
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "0.2"
        with pytest.raises(requests.ConnectionError):
            once("reset", timeout=5)
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            once("stall", timeout=1)
        assert 0.9 < time.monotonic() - started < 2.9
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            once("truncate", timeout=5)
        garbled = once("corrupt", timeout=5)
        assert garbled.status_code == 206 and len(garbled.content) == 65536
        assert garbled.content != requests.get(
            cog.url + path, headers={"Range": "bytes=0-65535"}, timeout=5).content
        assert cog.stats.faults == Counter({k: 1 for k in ALL_KINDS})
        # a stalled request is recorded when the stall ends
        assert wait_until(lambda: len(cog.faulted()) == len(ALL_KINDS))
        port = cog.port
    with pytest.raises(requests.ConnectionError):  # stopped: nothing listens any more
        requests.get(f"http://127.0.0.1:{port}{path}", timeout=2)


def test_proxy_random_faults_follow_the_seed_and_rate(replica: Any) -> None:
    href = s2intake.search(AOI, WHEN, max_cloud=10, url=replica.stac_url).items[0]
    path = href["assets"]["red"]["href"][len(replica.cog_url):]
    runs = []
    for _ in range(2):
        with FaultProxy(replica.cog_url, rate=0.3, seed=7,
                        kinds=("500", "503")) as proxy:
            statuses = [requests.head(proxy.url + path, timeout=5).status_code
                        for _ in range(60)]
            runs.append(statuses)
            assert proxy.stats.requests == 60
            assert proxy.stats.injected == sum(s != 200 for s in statuses)
    assert runs[0] == runs[1]
    assert 6 <= sum(s != 200 for s in runs[0]) <= 32


# ------------------------------------------------------------------------------ search


@pytest.mark.parametrize("kind", KINDS)
def test_search_survives_each_fault_kind_on_a_page(kind: str, replica: Any,
                                                   reference: dict[str, Any],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="s2intake")
    with proxies(replica, stall=2.0) as (stac, _cog):
        # the second page: a POST /search whose body carries the paging token
        stac.configure(rules=[Rule(kind, method="POST", path=r"/search", body='"token"',
                                   nth={1})])
        found = _search(stac.url, limit=5, timeout=1)
        assert stac.stats.faults == Counter({kind: 1})
    assert _ids(found) == reference["ids"]
    assert _retries(caplog, "s2intake.search") == 1


@pytest.mark.parametrize("kind", ["503", "reset", "corrupt"])
def test_search_survives_faults_on_the_landing_page_and_collection(
        kind: str, replica: Any, reference: dict[str, Any]) -> None:
    with proxies(replica) as (stac, _cog):
        stac.configure(rules=[Rule(kind, method="GET", nth={1, 2, 4})])
        found = _search(stac.url, limit=5)
        assert stac.stats.faults[kind] == 3
    assert _ids(found) == reference["ids"]


def test_search_honours_retry_after(replica: Any, reference: dict[str, Any]) -> None:
    with proxies(replica, retry_after=1.5) as (stac, _cog):
        stac.configure(rules=[Rule("429", method="POST", path=r"/search", nth={1})])
        started = time.monotonic()
        found = _search(stac.url, limit=5)
        elapsed = time.monotonic() - started
    assert _ids(found) == reference["ids"]
    assert 1.5 <= elapsed < 10  # the jittered backoff alone would wait at most 0.5 s


def test_search_interrupted_on_page_two_raises_instead_of_a_partial_list(
        replica: Any) -> None:
    retries = 2
    with proxies(replica) as (stac, _cog):
        stac.configure(rules=[Rule("503", method="POST", path=r"/search", body='"token"')])
        started = time.monotonic()
        with pytest.raises(SearchError) as info:
            _search(stac.url, limit=5, retries=retries)
        elapsed = time.monotonic() - started
        page_two = [r for r in stac.records if r.fault == "503"]
        url = stac.url
    message = str(info.value)
    assert "page 2" in message and "after 5 items" in message
    assert "not returning a partial list" in message and "503" in message
    assert url in message
    assert len(page_two) == retries + 1  # bounded: tried exactly retries + 1 times
    assert elapsed < 0.5 + 1.0 + 2  # waits 0.25-0.5 s then 0.5-1 s, plus the requests


def test_search_whose_paging_ends_early_raises(replica: Any,
                                               reference: dict[str, Any]) -> None:
    """The API reports more matches than its pages deliver: an error, not a short list."""
    count = len(reference["ids"])
    body = {"collections": ["sentinel-2-l2a"], "limit": 1}
    text = requests.post(replica.stac_url + "/search", json=body, timeout=10).text
    found = re.search(r'"numberMatched": ?\d+', text)
    assert found, "the replica reports numberMatched"
    with proxies(replica) as (stac, _cog):
        sep = ": " if ": " in found.group() else ":"
        stac.rewrite[f'"numberMatched"{sep}{count}'] = f'"numberMatched"{sep}{count + 3}'
        with pytest.raises(SearchError, match=f"returned {count} items but the API "
                                              f"reported {count + 3} matches"):
            _search(stac.url, limit=5)


def test_search_total_time_is_bounded_when_the_api_hangs(replica: Any) -> None:
    with proxies(replica, stall=3.0) as (stac, _cog):
        stac.configure(rules=[Rule("stall")])
        started = time.monotonic()
        with pytest.raises(SearchError) as info:
            _search(stac.url, timeout=0.5, retries=2)
        elapsed = time.monotonic() - started
        assert stac.stats.requests == 3
    assert "did not answer" in str(info.value) or "no answer" in str(info.value)
    assert elapsed < 3 * 0.5 + 0.5 + 1.0 + 1.5


def test_search_of_an_api_that_is_down_names_it(replica: Any) -> None:
    with proxies(replica) as (stac, _cog):
        url = stac.url
    started = time.monotonic()
    with pytest.raises(SearchError, match=re.escape(url)):
        _search(url, retries=1)
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------ COG reads


@pytest.mark.parametrize(("kind", "target"), [(k, "tile") for k in KINDS] + [
    (k, "open") for k in ("503", "reset", "stall", "truncate")])
def test_cog_read_survives_each_fault_kind(kind: str, target: str, replica: Any,
                                           reference: dict[str, Any],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="s2intake")
    with proxies(replica, stall=2.0) as (stac, cog):
        found = _search(stac.url, limit=5)
        ds = _small_stack(found)
        headers = TILE_READ if target == "tile" else HEADER_READ
        cog.configure(rules=[Rule(kind, headers=headers, nth={1})])
        pixels = ds.red.values
        assert cog.stats.faults == Counter({kind: 1})
    np.testing.assert_array_equal(pixels, reference["pixels"][:1])
    if kind == "corrupt" and target == "tile":
        # GDAL cannot see a corrupted tile (the HTTP exchange was fine): the DEFLATE
        # decoder fails and s2intake's own loop reopens the file and fetches it again
        assert _retries(caplog, "s2intake.reader") == 1


def test_read_error_after_retries_names_url_item_and_status(
        replica: Any, reference: dict[str, Any]) -> None:
    with proxies(replica) as (stac, cog):
        found = _search(stac.url, limit=5)
        # with the per-file VSI cache on, GDAL fetches the header once per open, so the
        # header GETs count s2intake's attempts exactly (without it GDAL re-reads it)
        ds = _small_stack(found, retries=2,
                          gdal_options={**FAST_GDAL, "GDAL_HTTP_MAX_RETRY": "1",
                                        "VSI_CACHE": "TRUE"})
        cog.configure(rules=[Rule("503", headers=TILE_READ)])
        started = time.monotonic()
        with pytest.raises(ReadError) as info:
            ds.red.compute()
        elapsed = time.monotonic() - started
        tile_reads = len(cog.faulted("503"))
        opens = [r for r in cog.records if r.range and r.range.startswith("bytes=0-")]
    item = [i for i in found.items if i["id"] == SMALL_IDS[0]][0]
    href = item["assets"]["red"]["href"]
    message = str(info.value)
    assert href in message and repr(item["id"]) in message and "HTTP status 503" in message
    assert "after 3 attempts" in message
    assert (info.value.href, info.value.item_id, info.value.status) == (href, item["id"], 503)
    assert len(opens) == 3  # each s2intake attempt reopens the file once
    assert 3 * 2 <= tile_reads <= 3 * 10  # and GDAL retries each failed range (bounded)
    assert elapsed < 10


def test_open_error_after_retries_names_the_status(replica: Any,
                                                   reference: dict[str, Any]) -> None:
    with proxies(replica) as (stac, cog):
        found = _search(stac.url, limit=5)
        ds = _small_stack(found, retries=1,
                          gdal_options={**FAST_GDAL, "GDAL_HTTP_MAX_RETRY": "1"})
        cog.configure(rules=[Rule("502")])
        with pytest.raises(ReadError, match="HTTP status 502") as info:
            ds.red.compute()
    assert info.value.attempts == 2


def test_missing_asset_is_not_retried_and_says_404(replica: Any,
                                                   reference: dict[str, Any]) -> None:
    with proxies(replica) as (stac, cog):
        found = _search(stac.url, limit=5)
        item = dict(found.items[0])
        item["assets"] = {**item["assets"], "red": {
            **item["assets"]["red"], "href": cog.url + "/nowhere/B04.tif"}}
        ds = s2intake.stack([item], ["red"], bounds=SMALL, gdal_options=FAST_GDAL)
        with pytest.raises(ReadError, match=r"HTTP status 404") as info:
            ds.red.compute()
        assert cog.stats.requests <= 2  # HEAD (+ GET): nothing retried
    assert info.value.attempts == 1 and "/nowhere/B04.tif" in str(info.value)


@pytest.mark.parametrize("resolution", [10, 20])
def test_a_failed_read_never_becomes_silent_nodata(resolution: int, replica: Any,
                                                   reference: dict[str, Any]) -> None:
    """Aligned reads (10 m) and warped reads (20 m, through a WarpedVRT) both raise."""
    with proxies(replica) as (stac, cog):
        found = _search(stac.url, limit=5)
        ds = _small_stack(found, retries=1, resolution=resolution,
                          bands=("red", "green", "blue"), gdal_options=FAIL_GDAL)
        cog.configure(rules=[Rule("reset", headers=TILE_READ)])
        with pytest.raises(ReadError, match="after 2 attempts"):
            ds.red.compute()
        with pytest.raises(ReadError):
            ds.s2.to_gif(None)


def test_on_error_nodata_fills_warns_and_records_which_reads_failed(
        replica: Any, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import s2intake.reader as reader

    calls = Counter()
    original = reader.read_chunk_report

    def counting(task: Any, *files: Any) -> Any:
        with lock:
            calls[task.chunk] += 1
        return original(task, *files)

    lock = threading.Lock()
    monkeypatch.setattr(reader, "read_chunk_report", counting)
    with proxies(replica) as (stac, cog):
        found = _search(stac.url, limit=5)
        bad = [i for i in found.items if i["id"] == SMALL_IDS[1]][0]
        bad_path = bad["assets"]["red"]["href"][len(cog.url):]
        ds = _small_stack(found, 3, retries=1, on_error="nodata", gdal_options=FAIL_GDAL)
        cog.configure(rules=[Rule("503", path=re.escape(bad_path), headers=TILE_READ)])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = compute_with_failures(ds)
    assert sum(calls.values()) == 3 and set(calls.values()) == {1}  # each chunk read once
    failed = out.attrs[FAILED_READS_ATTR]
    assert len(failed) == 1
    record = failed[0]
    assert record["item_id"] == bad["id"] and record["band"] == "red"
    assert record["chunk"] == [1, 0, 0] and record["status"] == 503
    assert record["href"] == bad["assets"]["red"]["href"] and record["attempts"] == 2
    assert record["bounds"] == list(SMALL) and record["crs"] == ds.attrs["crs"]
    expected = reference["pixels"][:3].copy()
    expected[1] = 0
    np.testing.assert_array_equal(out.red.values, expected)
    assert not out.red.values[1].any() and out.red.values[0].any()
    notes = [w.message for w in caught if isinstance(w.message, ReadFailure)]
    assert len(notes) == 1 and notes[0].failure.to_dict() == record
    assert bad["id"] in str(notes[0]) and "filled with nodata" in str(notes[0])


def test_failures_are_recorded_only_for_the_chunks_a_subset_needs(
        replica: Any, reference: dict[str, Any]) -> None:
    with proxies(replica) as (stac, cog):
        found = _search(stac.url, limit=5)
        ds = _small_stack(found, 3, retries=0, on_error="nodata", gdal_options=FAIL_GDAL)
        cog.configure(rules=[Rule("503", headers=TILE_READ)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReadFailure)
            subset = compute_with_failures(ds.isel(time=[2]))
        third = [i for i in found.items if i["id"] == SMALL_IDS[2]][0]["assets"]["red"]["href"]
        # the other dates were not even read
        assert {cog.url + r.target for r in cog.records} == {third}
    assert [f["chunk"] for f in subset.attrs[FAILED_READS_ATTR]] == [[2, 0, 0]]
    assert not subset.red.values.any()


def test_failures_travel_back_from_distributed_workers(replica: Any,
                                                       reference: dict[str, Any]) -> None:
    """Warnings raised on worker processes never reach the client; the records do."""
    from distributed import Client, LocalCluster

    with proxies(replica) as (stac, cog):
        found = _search(stac.url, limit=5)
        ds = _small_stack(found, 2, retries=0, on_error="nodata", gdal_options=FAIL_GDAL)
        cog.configure(rules=[Rule("503", headers=TILE_READ)])
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                          dashboard_address=None) as cluster, Client(cluster), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = compute_with_failures(ds)
    failed = out.attrs[FAILED_READS_ATTR]
    assert sorted(f["item_id"] for f in failed) == sorted(SMALL_IDS[:2])
    assert {f["status"] for f in failed} == {503}
    assert not any(isinstance(w.message, ReadFailure) for w in caught)
    assert not out.red.values.any()


# ------------------------------------------------------------------------------ outputs


def test_a_failed_gif_leaves_no_partial_file_and_keeps_the_old_one(
        replica: Any, tmp_path: Path) -> None:
    target = tmp_path / "berry_creek.gif"
    target.write_bytes(b"GIF89a old")
    with proxies(replica) as (stac, cog):
        found = _search(stac.url, limit=5)
        ds = s2intake.stack(found.items[:2], ["red", "green", "blue"], aoi=AOI, retries=1,
                            gdal_options=FAIL_GDAL)
        # 2 dates x 3 bands: 6 tile reads (one multi-range GET per file); the 4th on fail
        cog.configure(rules=[Rule("503", headers=TILE_READ, nth=range(4, 10**9))])
        with pytest.raises(ReadError):
            ds.s2.clip_aoi().s2.to_gif(target)
        assert cog.stats.faults["503"] > 0
    assert target.read_bytes() == b"GIF89a old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["berry_creek.gif"]


# ------------------------------------------------------------------------------ the figure


def _berry_creek_gif(stac_url: str) -> bytes:
    found = _search(stac_url, limit=5)
    ds = s2intake.stack(found, ["red", "green", "blue"], gdal_options=FAST_GDAL)
    gif = ds.s2.clip_aoi().s2.to_gif(None)
    assert isinstance(gif, bytes)
    return gif


@pytest.mark.slow
def test_berry_creek_gif_is_identical_at_a_10_percent_fault_rate(
        replica: Any, caplog: pytest.LogCaptureFixture,
        record_property: Any) -> None:
    """The figure: at a 10% fault rate on every request, N of N GIFs equal the clean one."""
    caplog.set_level(logging.INFO, logger="s2intake")
    with proxies(replica) as (stac, cog):
        started = time.monotonic()
        clean = _berry_creek_gif(stac.url)
        clean_seconds = time.monotonic() - started
        requests_per_run = {"stac": stac.stats.requests, "cog": cog.stats.requests}
    lines = [f"fault-free: {clean_seconds:.1f} s, requests {requests_per_run}"]
    identical = 0
    injected: Counter[str] = Counter()
    for run in range(FIGURE_RUNS):
        caplog.clear()
        with proxies(replica, rate=0.10, seed=1000 + 17 * run, stall=2.5) as (stac, cog):
            started = time.monotonic()
            gif = _berry_creek_gif(stac.url)
            seconds = time.monotonic() - started
            identical += gif == clean
            gdal_retries = sum(1 for r in caplog.records if "Retrying again" in r.getMessage())
            lines.append(
                f"run {run + 1}: {'identical' if gif == clean else 'DIFFERENT'}, "
                f"{seconds:.1f} s; stac {stac.stats.requests} requests, faults "
                f"{dict(sorted(stac.stats.faults.items()))}; cog {cog.stats.requests} requests, "
                f"faults {dict(sorted(cog.stats.faults.items()))}; retries: search "
                f"{_retries(caplog, 's2intake.search')}, s2intake reads "
                f"{_retries(caplog, 's2intake.reader')}, GDAL {gdal_retries}")
            injected["stac"] += stac.stats.injected
            injected["cog"] += cog.stats.injected
            assert cog.stats.injected > 0
            assert set(cog.stats.faults) | set(stac.stats.faults) <= set(DEFAULT_MIX)
    summary = "\n".join(lines)
    record_property("figure", summary)
    print(f"\n{summary}\nidentical: {identical}/{FIGURE_RUNS}")
    assert identical == FIGURE_RUNS, summary
    assert injected["stac"] > 0, summary  # a few requests per search: not every run has one
