"""``s2intake.compute`` / ``ds.s2.compute()`` give freed chunk memory back to the OS."""

from __future__ import annotations

import sys
import threading

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import s2intake
from s2intake import memory


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_trim_memory_returns_freed_heap_pages():
    # many 2 MiB blocks made and freed on other threads stay in glibc's arenas
    def churn(keep: list) -> None:
        del keep[:]  # (glibc mmaps a first big block; once freed, it serves them from heaps)
        keep.append(np.ones((1024, 1024), dtype=np.uint16))
        keep.pop()
        blocks = [np.ones((1024, 1024), dtype=np.uint16) for _ in range(60)]
        keep.append(blocks[-1].copy())  # something outlives the rest, as a result does
        del blocks

    threads = [threading.Thread(target=churn, args=([],)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    before = _rss()
    assert memory.trim_memory() is True
    assert _rss() < before - 32 * 2**20


def test_compute_equals_dask_compute_for_datasets_and_arrays():
    data = da.random.randint(0, 5000, size=(3, 300, 300), chunks=(1, 128, 128)).astype("uint16")
    ds = xr.Dataset({"red": (("time", "y", "x"), data)})
    out = ds.s2.compute()
    assert isinstance(out.red.data, np.ndarray)
    np.testing.assert_array_equal(out.red.values, ds.red.values)
    arr = s2intake.compute(ds.red, scheduler="sync")
    np.testing.assert_array_equal(arr.values, ds.red.values)
