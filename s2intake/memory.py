"""Hand freed heap memory back to the operating system after a computation.

Computing a stack decodes every tile into its own chunk, then Dask copies the chunks into
the result and frees them. glibc keeps most of that freed memory in its per-thread arenas
(the chunks are too many and too small to be ``mmap``-ed one by one without slowing every
read with page faults), so a process's resident memory after a large load is the result
*plus* about the same again. ``malloc_trim(0)`` returns those free pages; :func:`compute` does
it after computing. On other C libraries and systems these are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim_memory() -> bool:
    """Return the C heap's free pages to the OS; True when the C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def compute(obj: Any, **compute_kwargs: Any) -> Any:
    """Compute a lazy stack (or anything derived from it), then :func:`trim_memory`.

    Parameters
    ----------
    obj:
        A Dask-backed ``xarray.Dataset``/``DataArray`` (or any Dask collection).
    **compute_kwargs:
        Passed to ``obj.compute()`` (``scheduler=``...).

    Returns
    -------
    The computed object. On Linux, the process keeps about the result's size plus a small
    fixed amount instead of the result plus all the freed chunks.
    """
    result = obj.compute(**compute_kwargs)
    trim_memory()
    return result
