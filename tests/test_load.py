"""Load against the local replica (loopback only), bounded in count and time.

* 200 searches at once, from 200 threads, against the STAC API (uvicorn + pgstac);
* 8 full Berry Creek loads at once (search + stack + clip + compute), against the STAC API
  and nginx.

Every one must succeed and give the same answer as a lone run. The peak RSS growth of the
test process is measured by sampling (psutil) and printed for docs/reliability.md.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import s2intake
from s2intake.reader import FAILED_READS_ATTR, compute_with_failures

AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
WHEN = "2020-01-01/2021-06-30"
SEARCHES = 200
LOADS = 8
MiB = 1024 * 1024
#: GDAL's block cache is process-wide and by default 5% of RAM (1.2 GiB here); it fills up
#: with decoded tiles. Bounded, as docs/reliability.md recommends for many concurrent loads.
CACHE_MB = 256


class PeakRss:
    """Samples this process's RSS every ``interval`` seconds while in the ``with`` block."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.baseline = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.baseline = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        """Peak RSS above the RSS at entry, in MiB."""
        return (self.peak - self.baseline) / MiB


def _run_all(count: int, job: Callable[[int], Any], timeout: float) -> tuple[list[Any], float]:
    """``job(i)`` for ``i < count`` on ``count`` threads released together; results, seconds."""
    barrier = threading.Barrier(count)

    def start(i: int) -> Any:
        barrier.wait(timeout=60)
        return job(i)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="load") as pool:
        futures = [pool.submit(start, i) for i in range(count)]
        results = [f.result(timeout=timeout) for f in futures]  # re-raises any error
    return results, time.monotonic() - started


def _retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if "retrying" in r.getMessage())


@pytest.mark.slow
def test_200_concurrent_searches(stac_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="s2intake")
    expected = [i["id"] for i in s2intake.search(AOI, WHEN, max_cloud=10, url=stac_url).items]
    caplog.clear()

    def one(_: int) -> list[str]:
        found = s2intake.search(AOI, WHEN, max_cloud=10, url=stac_url, timeout=60)
        return [i["id"] for i in found.items]

    with PeakRss() as rss:
        results, seconds = _run_all(SEARCHES, one, timeout=240)
    assert len(results) == SEARCHES
    assert all(ids == expected for ids in results)
    print(f"\n{SEARCHES} concurrent searches: {seconds:.1f} s, "
          f"{SEARCHES / seconds:.1f} searches/s, {len(expected)} items each, "
          f"{_retries(caplog)} retries, peak RSS growth {rss.growth_mib:.0f} MiB "
          f"(from {rss.baseline / MiB:.0f} MiB)")
    assert seconds < 240


def _digest(ds: Any) -> str:
    sha = hashlib.sha256()
    for name in sorted(ds.data_vars):
        sha.update(np.ascontiguousarray(ds[name].values).tobytes())
    return sha.hexdigest()


@pytest.mark.slow
def test_8_concurrent_berry_creek_loads(stac_url: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="s2intake")

    def load(_: int) -> tuple[str, tuple[int, ...], int]:
        found = s2intake.search(AOI, WHEN, max_cloud=10, url=stac_url, timeout=60)
        ds = s2intake.stack(found, ["red", "green", "blue"],
                            gdal_options={"GDAL_CACHEMAX": CACHE_MB}).s2.clip_aoi()
        out = compute_with_failures(ds)
        assert out.attrs[FAILED_READS_ATTR] == []
        return _digest(out), tuple(out.red.shape), int(out.red.values.astype(bool).sum())

    with PeakRss() as single_rss:
        started = time.monotonic()
        alone = load(0)
        single = time.monotonic() - started
    gc.collect()
    with PeakRss() as rss:
        results, seconds = _run_all(LOADS, load, timeout=600)
    assert alone[2] > 0 and all(r == alone for r in results)
    size_mib = 3 * np.prod(alone[1]) * 2 / MiB
    print(f"\none Berry Creek load: {single:.1f} s, {alone[1]} x 3 bands uint16 "
          f"({size_mib:.0f} MiB), peak RSS growth {single_rss.growth_mib:.0f} MiB\n"
          f"{LOADS} concurrent loads: {seconds:.1f} s, all identical, {_retries(caplog)} "
          f"retries, peak RSS growth {rss.growth_mib:.0f} MiB "
          f"(from {rss.baseline / MiB:.0f} MiB; {LOADS} results hold "
          f"{LOADS * size_mib:.0f} MiB)")
    assert seconds < 600
    # what grows is bounded: GDAL's cache, and per load about 4 result sizes (the chunks
    # read, the clipped chunks, the assembled result); nothing piles up per request
    assert single_rss.growth_mib < CACHE_MB + 4 * size_mib + 256
    assert rss.growth_mib < CACHE_MB + LOADS * 4 * size_mib + 512
