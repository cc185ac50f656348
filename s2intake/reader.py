"""Chunk reads: one Dask task reads one (date, band, window) from one or more COGs.

A :class:`ChunkTask` is plain data (hrefs, grid numbers, options), so graphs pickle to remote
workers with no open file or lock inside. Each worker thread keeps its own small cache of
open datasets, so a COG's header is fetched once per thread, not once per chunk.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .errors import ReadError, SecurityError
from .gdal_env import ReadOptions

_REMOTE_SCHEMES = ("http", "https", "s3")


@dataclass(frozen=True)
class Source:
    """One asset to read for a chunk (several sources of one date are mosaicked)."""

    href: str
    item_id: str
    dn_offset: int = 0


@dataclass(frozen=True)
class ChunkTask:
    """Everything needed to read one output chunk, as picklable plain data."""

    sources: tuple[Source, ...]
    band: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    dtype: str
    nodata: float
    resampling: str
    scale: float | None
    options: ReadOptions


class ReadFailure(UserWarning):
    """Warned when ``on_error="nodata"`` replaced a failed read with nodata."""


def gdal_path(href: str, allow_local: bool = False) -> str:
    """The path GDAL opens for an asset href; refuses local hrefs unless allowed.

    Raises
    ------
    SecurityError
        For ``file://``, ``/vsi...`` or bare paths when ``allow_local`` is false, and for
        schemes other than http(s)/s3.
    """
    parsed = urlparse(href)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return href
    if scheme == "s3":
        return f"/vsis3/{parsed.netloc}{parsed.path}"
    is_local = scheme in ("", "file") or (len(scheme) == 1 and href[1:3] in (":\\", ":/"))
    if is_local or href.startswith("/vsi"):
        if not allow_local:
            raise SecurityError(
                f"asset href {href!r} is local; s2intake reads only http(s) and s3 hrefs from "
                "STAC items unless you pass allow_local_hrefs=True"
            )
        return parsed.path if scheme == "file" else href
    raise SecurityError(f"asset href {href!r} uses unsupported scheme {scheme!r}; "
                        f"allowed: {', '.join(_REMOTE_SCHEMES)}")


class _DatasetCache(threading.local):
    def __init__(self) -> None:
        self.entries: OrderedDict[tuple[str, tuple], Any] = OrderedDict()


_CACHE = _DatasetCache()
_CACHE_SIZE = 64


def _open(path: str, options: ReadOptions) -> Any:
    key = (path, options.gdal)
    entries = _CACHE.entries
    ds = entries.get(key)
    if ds is not None and not ds.closed:
        entries.move_to_end(key)
        return ds
    ds = rasterio.open(path)
    entries[key] = ds
    while len(entries) > _CACHE_SIZE:
        _, old = entries.popitem(last=False)
        old.close()
    return ds


def _evict(path: str, options: ReadOptions) -> None:
    ds = _CACHE.entries.pop((path, options.gdal), None)
    if ds is not None:
        ds.close()


def read_chunk(task: ChunkTask) -> np.ndarray:
    """Read one output chunk: mosaic the sources (first valid pixel wins), fix DN offsets.

    Returns a 2-D array of ``task.dtype`` (float32 reflectance with NaN nodata when
    ``task.scale`` is set).
    """
    height, width = task.shape
    raw_dtype = np.dtype(task.dtype) if task.scale is None else np.dtype("uint16")
    out = np.full((height, width), task.nodata if task.scale is None else 0, dtype=raw_dtype)
    nodata = 0 if task.scale is not None else task.nodata
    empty = np.ones((height, width), dtype=bool)
    with rasterio.Env(**task.options.env()):
        for source in task.sources:
            data = _read_with_retries(source, task)
            if data is None:
                continue
            valid = data != nodata
            if source.dn_offset:
                shifted = data.astype(np.int32) + source.dn_offset
                # a dark pixel must stay valid data, not turn into nodata (0)
                data = np.where(valid, np.clip(shifted, 1, np.iinfo(raw_dtype).max),
                                nodata).astype(raw_dtype)
            take = empty & valid
            out[take] = data[take]
            empty &= ~valid
            if not empty.any():
                break
    if task.scale is None:
        return out
    result = out.astype(np.float32) * np.float32(task.scale)
    result[out == 0] = np.nan
    return result


def _read_with_retries(source: Source, task: ChunkTask) -> np.ndarray | None:
    options = task.options
    path = gdal_path(source.href, options.allow_local)
    delay = options.backoff
    last: Exception | None = None
    for attempt in range(options.retries + 1):
        try:
            return _read_source(path, task)
        except (rasterio.errors.RasterioError, OSError) as exc:
            last = exc
            _evict(path, options)
            if _is_permanent(exc) or attempt == options.retries:
                break
            time.sleep(delay)
            delay *= 2
    message = (f"reading band {task.band!r} of item {source.item_id!r} from {source.href} "
               f"failed after {options.retries + 1} attempts: {_gdal_message(last)}")
    if options.on_error == "nodata":
        warnings.warn(message + " (filled with nodata as on_error='nodata' asked)",
                      ReadFailure, stacklevel=2)
        return None
    raise ReadError(message) from None


def _is_permanent(exc: Exception) -> bool:
    text = str(exc)
    return any(code in text for code in ("HTTP response code: 404", "HTTP response code: 403",
                                         "No such file", "not recognized as"))


def _gdal_message(exc: Exception | None) -> str:
    text = " ".join(str(exc).split()) if exc else "unknown error"
    return text[:400]


def _read_source(path: str, task: ChunkTask) -> np.ndarray:
    ds = _open(path, task.options)
    height, width = task.shape
    target = Affine(*task.transform)
    resampling = Resampling[task.resampling]
    raw_dtype = task.dtype if task.scale is None else "uint16"
    nodata = task.nodata if task.scale is None else 0
    same_crs = ds.crs is not None and ds.crs.to_string() == task.crs
    if same_crs and _same_grid(ds.transform, target):
        return _read_aligned(ds, target, height, width, raw_dtype, nodata)
    with WarpedVRT(ds, crs=task.crs, transform=target, width=width, height=height,
                   resampling=resampling, src_nodata=ds.nodata if ds.nodata is not None else 0,
                   nodata=nodata, dtype=raw_dtype) as vrt:
        return vrt.read(1, out_dtype=raw_dtype)


def _same_grid(src: Affine, dst: Affine) -> bool:
    if not (np.isclose(src.a, dst.a) and np.isclose(src.e, dst.e)
            and src.b == 0 and src.d == 0 and dst.b == 0 and dst.d == 0):
        return False
    col = (dst.c - src.c) / src.a
    row = (dst.f - src.f) / src.e
    return abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6


def _read_aligned(ds: Any, target: Affine, height: int, width: int, dtype: str,
                  nodata: float) -> np.ndarray:
    """Plain windowed read of the part of the chunk the file covers; the rest is nodata."""
    col0 = round((target.c - ds.transform.c) / ds.transform.a)
    row0 = round((target.f - ds.transform.f) / ds.transform.e)
    c_start, r_start = max(col0, 0), max(row0, 0)
    c_stop, r_stop = min(col0 + width, ds.width), min(row0 + height, ds.height)
    out = np.full((height, width), nodata, dtype=dtype)
    if c_start >= c_stop or r_start >= r_stop:
        return out
    window = Window(c_start, r_start, c_stop - c_start, r_stop - r_start)
    data = ds.read(1, window=window, out_dtype=dtype)
    if ds.nodata is not None and ds.nodata != nodata:
        data[data == ds.nodata] = nodata
    out[r_start - row0:r_stop - row0, c_start - col0:c_stop - col0] = data
    return out
