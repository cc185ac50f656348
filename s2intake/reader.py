"""Chunk reads: one Dask task reads one (date, band, window) from one or more COGs.

A :class:`ChunkTask` is plain data (hrefs, grid numbers, options), so graphs pickle to remote
workers with no open file or lock inside. Each worker thread keeps its own small cache of
open datasets, so a COG's header is fetched once per thread, not once per chunk.

Reliability
-----------
Each source is read with two layers of retries:

1. GDAL's own HTTP retries (``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY`` /
   ``GDAL_HTTP_RETRY_CODES``): GDAL 3.10 repeats a request on 429/5xx, connection resets,
   timeouts and truncated bodies, doubling the delay each time.
2. s2intake's loop (:class:`~s2intake.gdal_env.ReadOptions` ``retries``/``backoff``/
   ``deadline``) around open + read: it catches what GDAL cannot retry, such as a tile whose
   bytes arrived corrupted (a DEFLATE decode error) or a header that did not parse. Before
   each new attempt the dataset is closed and GDAL is told not to reuse its cached bytes of
   the file, so a retry really fetches them again.

404/403/401/410 and missing local files are permanent and not retried. When the attempts
run out, :class:`~s2intake.errors.ReadError` names the band, the item id, the asset URL (with
credentials masked), the number of attempts, the last HTTP status GDAL reported and GDAL's
message. With ``on_error="nodata"`` the chunk is filled with nodata instead, a
:class:`ReadFailure` warning carries a :class:`FailedRead`, and
:func:`compute_with_failures` returns the computed data with every failure in
``attrs["s2intake_failed_reads"]``. Nothing else ever turns into nodata.

Security
--------
:func:`gdal_path` accepts only ``http(s)`` and ``s3`` hrefs unless local files are allowed,
and files are opened with the GTiff driver only, so an asset cannot make GDAL open a VRT
(which could point at local files) or any other format.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
import logging
import os
import random
import re
import threading
import time
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np
import rasterio
import rasterio.env
import rasterio.errors
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from . import cog
from .errors import ReadError, SecurityError
from .gdal_env import AWS_CREDENTIAL_OPTIONS, ReadOptions, redact_url, redact_urls
from .rangeio import HttpError, HttpSettings, RangeNotSupported

_REMOTE_SCHEMES = ("http", "https", "s3")
#: GDAL drivers an asset may be opened with (a VRT could reference local files).
ALLOWED_DRIVERS = ("GTiff",)
#: Attribute under which :func:`compute_with_failures` lists the failed reads.
FAILED_READS_ATTR = "s2intake_failed_reads"
#: Prefix of the graph layer whose tasks return ``(pixels, failures)`` per chunk.
RAW_LAYER_PREFIX = "s2raw-"

#: HTTP statuses that will not change on a retry.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 416})
_STATUS = re.compile(r"HTTP (?:response|error) code ?: ?(\d{3})", re.IGNORECASE)
_PERMANENT_TEXT = ("No such file or directory", "does not exist in the file system")

try:  # rasterio >= 1.0 raises CPLE_* errors (not RasterioError) from some GDAL calls
    from rasterio._err import CPLE_BaseError as _CPLError
except ImportError:  # pragma: no cover - very old or very new rasterio
    _CPLError = rasterio.errors.RasterioError

_READ_ERRORS: tuple[type[BaseException], ...] = (rasterio.errors.RasterioError, OSError,
                                                 _CPLError)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One asset to read for a chunk (several sources of one date are mosaicked)."""

    href: str
    item_id: str
    dn_offset: int = 0


@dataclass(frozen=True)
class ChunkTask:
    """Everything needed to read one output chunk, as picklable plain data.

    ``chunk`` is the chunk's ``(time, y, x)`` index in the stack, used to report failures.
    """

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
    chunk: tuple[int, int, int] | None = None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the chunk in ``crs``."""
        a, b, c, d, e, f = self.transform
        height, width = self.shape
        xs = (c, c + a * width + b * height)
        ys = (f, f + d * width + e * height)
        return min(xs), min(ys), max(xs), max(ys)


def epsg_of(crs: str) -> int | None:
    """The EPSG code of an ``"EPSG:n"`` CRS string (``None`` for anything else)."""
    name, _, code = crs.partition(":")
    return int(code) if name.upper() == "EPSG" and code.isdigit() else None


@dataclass(frozen=True)
class FileTask:
    """Fetch one asset's header and every tile that some chunks need, as picklable data.

    ``windows`` are the chunks' ``(row0, row1, col0, col1)`` output-pixel windows on the grid
    of ``transform`` (the stack's); culling a graph keeps only the needed chunks' windows.
    """

    source: Source
    band: str
    crs: str
    transform: tuple[float, float, float, float, float, float]
    windows: tuple[tuple[int, int, int, int], ...]


@dataclass
class FileData:
    """What :func:`fetch_file` got for one asset, handed to the chunk tasks that read it.

    ``gdal`` says why the chunks must read the file through GDAL instead (another grid,
    compression or transport); ``failure`` is ``(attempts, status, error)`` of a fetch that
    failed under ``on_error="nodata"``.
    """

    header: cog.CogHeader | None = None
    tiles: dict[tuple[int, int], bytes | memoryview] = field(default_factory=dict)
    gdal: str | None = None
    failure: tuple[int, int | None, str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # the tiles are memoryviews into one HTTP reply; a worker that pickles this for
        # another worker sends the tiles' bytes
        state = dict(self.__dict__)
        state["tiles"] = {key: bytes(value) for key, value in self.tiles.items()}
        return state


@dataclass(frozen=True)
class FailedRead:
    """A source read that failed and was filled with nodata (``on_error="nodata"``).

    Attributes
    ----------
    item_id, band:
        The item and band whose pixels are missing.
    href:
        The asset URL (credentials masked).
    chunk:
        ``(time, y, x)`` index of the chunk in the stack (``None`` when unknown).
    bounds:
        ``(minx, miny, maxx, maxy)`` of the chunk, in ``crs``.
    crs:
        The stack's CRS.
    attempts:
        How many times s2intake tried (each with GDAL's own HTTP retries inside).
    status:
        The last HTTP status GDAL reported, if any.
    error:
        GDAL's message (credentials removed).
    """

    item_id: str
    band: str
    href: str
    chunk: tuple[int, int, int] | None
    bounds: tuple[float, float, float, float]
    crs: str
    attempts: int
    status: int | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists instead of tuples), e.g. for JSON."""
        out = asdict(self)
        out["chunk"] = list(self.chunk) if self.chunk is not None else None
        out["bounds"] = list(self.bounds)
        return out


class ReadFailure(UserWarning):
    """Warned when ``on_error="nodata"`` replaced a failed read with nodata.

    The warning's ``failure`` attribute is the :class:`FailedRead`.
    """

    def __init__(self, message: str, failure: FailedRead | None = None) -> None:
        super().__init__(message)
        self.failure = failure

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.failure))


def gdal_path(href: str, allow_local: bool = False) -> str:
    """The path GDAL opens for an asset href; refuses local hrefs unless allowed.

    Raises
    ------
    SecurityError
        For ``file://``, ``/vsi...`` or bare paths when ``allow_local`` is false, and for
        schemes other than http(s)/s3.
    """
    if not isinstance(href, str) or not href:
        raise SecurityError(f"asset href {href!r} is not a non-empty string")
    if any(ch in href for ch in "\x00\r\n"):
        raise SecurityError(f"asset href {href!r} contains control characters")
    parsed = urlparse(href)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not parsed.netloc:
            raise SecurityError(f"asset href {redact_url(href)!r} has no host")
        return href
    if scheme == "s3":
        if not parsed.netloc:
            raise SecurityError(f"asset href {href!r} has no bucket")
        return f"/vsis3/{parsed.netloc}{parsed.path}"
    is_local = scheme in ("", "file") or (len(scheme) == 1 and href[1:3] in (":\\", ":/"))
    if is_local or href.startswith("/vsi"):
        if not allow_local:
            raise SecurityError(
                f"asset href {redact_url(href)!r} is local; s2intake reads only http(s) and s3 "
                "hrefs from STAC items unless you pass allow_local_hrefs=True"
            )
        return parsed.path if scheme == "file" else href
    raise SecurityError(f"asset href {redact_url(href)!r} uses unsupported scheme {scheme!r}; "
                        f"allowed: {', '.join(_REMOTE_SCHEMES)}")


# ------------------------------------------------------------------------ GDAL environment


@contextlib.contextmanager
def gdal_environment(options: ReadOptions, extra: Mapping[str, str] | None = None
                     ) -> Iterator[None]:
    """``rasterio.Env`` with ``options`` (AWS keys included, which ``Env()`` refuses).

    Nothing here logs option values: rasterio logs only the ``Env`` object's identity.
    """
    settings: dict[str, Any] = options.env()
    settings.update(extra or {})
    credentials = {k: settings.pop(k) for k in AWS_CREDENTIAL_OPTIONS if k in settings}
    cache = settings.get("GDAL_CACHEMAX")
    if isinstance(cache, str) and cache.strip().isdigit():
        settings["GDAL_CACHEMAX"] = int(cache)  # rasterio wants an int here (MB)
    with rasterio.Env(**settings):
        if credentials:
            rasterio.env.setenv(**credentials)
        yield


class _GdalMessages(logging.Handler):
    """Collects, per thread, the GDAL messages rasterio logs (``rasterio._err``/``_env``).

    GDAL reports the HTTP status of a failed range request only in the warnings it emits
    while retrying ("HTTP error code: 503 - <url>. Retrying again in 0.5 secs"); the
    exception raised at the end just says the tile could not be read.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.active: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        messages = self.active.get(record.thread or 0)
        if messages is not None:
            with contextlib.suppress(Exception):
                messages.append(record.getMessage())

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        ident = threading.get_ident()
        messages: list[str] = []
        previous = self.active.get(ident)
        self.active[ident] = messages
        try:
            yield messages
        finally:
            if previous is None:
                self.active.pop(ident, None)
            else:
                self.active[ident] = previous


class _RedactUrls(logging.Filter):
    """Masks passwords and signatures of URLs in GDAL's messages before anything logs them.

    GDAL's retry warnings quote the URL; an href from a catalog may carry credentials
    (``user:password@``, a pre-signed ``X-Amz-Signature``...).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - never break logging
            return True
        clean = redact_urls(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_GDAL_MESSAGES = _GdalMessages()
_REDACT_URLS = _RedactUrls()
for _name in ("rasterio._err", "rasterio._env"):  # where rasterio logs GDAL's messages
    logging.getLogger(_name).addHandler(_GDAL_MESSAGES)
    logging.getLogger(_name).addFilter(_REDACT_URLS)


# ------------------------------------------------------------------------ dataset cache


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
    ds = rasterio.open(path, driver=ALLOWED_DRIVERS[0])
    entries[key] = ds
    while len(entries) > _CACHE_SIZE:
        _, old = entries.popitem(last=False)
        old.close()
    return ds


def _evict(path: str, options: ReadOptions) -> None:
    ds = _CACHE.entries.pop((path, options.gdal), None)
    if ds is not None:
        with contextlib.suppress(Exception):
            ds.close()


def _vsi_name(path: str) -> str | None:
    """GDAL's virtual file name for a remote path (None for local files)."""
    if path.startswith(("http://", "https://")):
        return "/vsicurl/" + path
    if path.startswith("/vsi"):
        return path
    return None


# ------------------------------------------------------------------------ reading


def read_chunk(task: ChunkTask, *files: FileData | None) -> np.ndarray:
    """Read one output chunk: mosaic the sources (first valid pixel wins), fix DN offsets.

    ``files`` are the sources' :func:`fetch_file` results (direct reads); a source without
    one is read through GDAL. Returns a 2-D array of ``task.dtype`` (float32 reflectance
    with NaN nodata when ``task.scale`` is set).

    Raises
    ------
    ReadError
        When a source cannot be read after the retries and ``on_error="raise"``.
    """
    return read_chunk_report(task, *files)[0]


def read_chunk_report(task: ChunkTask, *files: FileData | None
                      ) -> tuple[np.ndarray, tuple[FailedRead, ...]]:
    """Like :func:`read_chunk`, also returning the source reads filled with nodata.

    The failures are empty unless ``on_error="nodata"`` (otherwise a failure raises).
    """
    height, width = task.shape
    raw_dtype = np.dtype(task.dtype) if task.scale is None else np.dtype("uint16")
    nodata = 0 if task.scale is not None else task.nodata
    out: np.ndarray | None = None
    empty: np.ndarray | None = None
    failures: list[FailedRead] = []
    for index, source in enumerate(task.sources):
        data, failure = _read_source_any(source, task, files[index] if index < len(files)
                                         else None)
        if failure is not None:
            failures.append(failure)
        if data is None:
            continue
        if source.dn_offset:
            valid = data != nodata
            shifted = data.astype(np.int32) + source.dn_offset
            # a dark pixel must stay valid data, not turn into nodata (0)
            data = np.where(valid, np.clip(shifted, 1, np.iinfo(raw_dtype).max),
                            nodata).astype(raw_dtype)
        if out is None and len(task.sources) == 1:
            out = data  # one source: its pixels are the chunk (no copy, no masks)
            break
        if out is None:
            out = np.full((height, width), nodata, dtype=raw_dtype)
            empty = np.ones((height, width), dtype=bool)
        assert empty is not None
        valid = data != nodata
        take = empty & valid
        out[take] = data[take]
        empty &= ~valid
        if not empty.any():
            break
    if out is None:
        out = np.full((height, width), nodata, dtype=raw_dtype)
    if task.scale is None:
        return out, tuple(failures)
    result = out.astype(np.float32) * np.float32(task.scale)
    result[out == 0] = np.nan
    return result, tuple(failures)


def _read_source_any(source: Source, task: ChunkTask, file: FileData | None
                     ) -> tuple[np.ndarray | None, FailedRead | None]:
    if file is None or file.gdal is not None:
        return _read_with_retries(source, task)
    if file.failure is not None:
        attempts, status, error = file.failure
        return _give_up(source, task, attempts, status, error)
    return _read_direct(source, task, file)


# ------------------------------------------------------------------------ retries


class _Failed(Exception):
    """One failed attempt: its last HTTP status, whether a retry can help, what happened."""

    def __init__(self, status: int | None, permanent: bool, message: str) -> None:
        super().__init__(message)
        self.status, self.permanent, self.message = status, permanent, message


def _retrying(source: Source, task: ChunkTask, attempt: Callable[[int], Any], *,
              warn: bool = True) -> tuple[Any, FailedRead | None]:
    """``(attempt(n), None)`` for the first attempt that does not raise :class:`_Failed`.

    Waits ``backoff`` (doubling, with jitter, at most ``max_backoff``) between attempts,
    makes at most ``retries + 1``, none after a permanent failure nor past ``deadline``;
    then records the failure or raises :class:`ReadError` (see :func:`_give_up`).
    """
    options = task.options
    started = time.monotonic()
    delay = options.backoff
    last: _Failed | None = None
    attempts = 0
    while last is None or (not last.permanent and attempts <= options.retries):
        if last is not None:
            wait = min(delay, options.max_backoff) * random.uniform(0.5, 1.0)
            if time.monotonic() - started + wait > options.deadline:
                break
            log.info("read of %s (item %s) failed, retrying in %.1f s: %s",
                     redact_url(source.href), source.item_id, wait, options.scrub(last.message))
            time.sleep(wait)
            delay *= 2
        attempts += 1
        try:
            return attempt(attempts - 1), None
        except _Failed as exc:
            last = exc
    return _give_up(source, task, attempts, last.status, options.scrub(last.message), warn=warn)


# ------------------------------------------------------------------------ direct reads


_DIRECT_ERRORS = (HttpError, cog.CorruptTileError, KeyError)


def _direct_failure(exc: BaseException) -> _Failed:
    status = getattr(exc, "status", None)
    message = f"tile {exc} was not fetched" if isinstance(exc, KeyError) else _gdal_message(exc)
    return _Failed(status, status in PERMANENT_STATUSES, redact_urls(message))


def _direct_settings(source: Source, options: ReadOptions) -> HttpSettings | None:
    """HTTP settings for a direct read of ``source``, or None when GDAL must read it."""
    path = gdal_path(source.href, options.allow_local)
    if not options.direct or not path.startswith(("http://", "https://")) \
            or urlparse(path).username is not None:  # curl knows user:password@ URLs
        return None
    return HttpSettings.from_options(options)


def fetch_file(task: FileTask, options: ReadOptions) -> FileData:
    """Graph task: one asset's header and the tiles its chunks need, in two GETs.

    ``options`` come from the stack's options key in the graph (one per stack, shared by
    its fetch tasks).

    Returns a :class:`FileData` telling the chunk tasks to use GDAL when the file or the
    options are not ones the direct path handles. Retries like :func:`read_chunk`.

    Raises
    ------
    ReadError
        When the fetch fails after the retries and ``on_error="raise"``.
    """
    settings = _direct_settings(task.source, options)
    if settings is None:
        return FileData(gdal="transport")
    href = task.source.href

    def attempt(_: int) -> FileData:
        try:
            header = cog.read_header(href, settings)
        except (cog.NotDirect, RangeNotSupported) as exc:
            return FileData(gdal=str(exc))
        except _DIRECT_ERRORS as exc:
            raise _direct_failure(exc) from exc
        # where the stack's pixel (0, 0) falls in the file; chunks are whole-pixel offsets
        origin = cog.file_window(header, task.transform, (0, 0), epsg_of(task.crs))
        if origin is None:
            return FileData(gdal="another grid")
        row, col = origin[0], origin[2]
        wanted: set[tuple[int, int]] = set()
        for r0, r1, c0, c1 in task.windows:
            wanted.update(cog.tiles_of(header, (row + r0, row + r1, col + c0, col + c1)))
        try:
            tiles = cog.fetch_tiles(href, header, sorted(wanted), settings)
        except _DIRECT_ERRORS as exc:
            raise _direct_failure(exc) from exc
        return FileData(header=header, tiles=tiles)

    chunk_task = ChunkTask((task.source,), task.band, task.crs, task.transform, (0, 0), "uint16",
                           0, "nearest", None, options)
    data, failure = _retrying(task.source, chunk_task, attempt, warn=False)
    if failure is not None:  # gave up under on_error="nodata": each chunk reports it
        return FileData(failure=(failure.attempts, failure.status, failure.error))
    return data


def _read_direct(source: Source, task: ChunkTask, file: FileData
                 ) -> tuple[np.ndarray | None, FailedRead | None]:
    header = file.header
    assert header is not None
    window = cog.file_window(header, task.transform, task.shape, epsg_of(task.crs))
    if window is None:  # pragma: no cover - fetch_file checked every chunk's window
        return _read_with_retries(source, task)
    raw_dtype = np.dtype(task.dtype) if task.scale is None else np.dtype("uint16")
    nodata = task.nodata if task.scale is None else 0
    tiles = file.tiles

    def attempt(_: int) -> np.ndarray:
        nonlocal tiles
        try:
            return cog.assemble(header, window, tiles, raw_dtype, nodata)
        except (cog.CorruptTileError, KeyError) as exc:
            failure = _direct_failure(exc)
        # fetch this chunk's tiles again (a corrupted transfer, or a plan that missed one)
        settings = _direct_settings(source, task.options)
        assert settings is not None  # fetch_file read this file directly with them
        try:
            tiles = cog.fetch_tiles(source.href, header, cog.tiles_of(header, window), settings)
        except _DIRECT_ERRORS as exc:
            raise _direct_failure(exc) from exc
        raise failure

    return _retrying(source, task, attempt)


# ------------------------------------------------------------------------ GDAL reads


def _read_with_retries(source: Source, task: ChunkTask
                       ) -> tuple[np.ndarray | None, FailedRead | None]:
    options = task.options
    path = gdal_path(source.href, options.allow_local)
    vsi = _vsi_name(path)

    def attempt(number: int) -> np.ndarray:
        # On a retry, GDAL must not serve the file's bytes from its /vsicurl/ cache: a
        # corrupted tile would otherwise fail the same way again without a new request.
        extra = {"CPL_VSIL_CURL_NON_CACHED": vsi} if number and vsi else None
        with _GDAL_MESSAGES.capture() as messages:
            try:
                with gdal_environment(options, extra):
                    return _read_source(path, task)
            except _READ_ERRORS as exc:
                failed = exc
        _evict(path, options)
        raise _Failed(_last_status(failed, messages), _is_permanent(failed, messages),
                      redact_urls(_gdal_message(failed, messages)))

    return _retrying(source, task, attempt)


def _give_up(source: Source, task: ChunkTask, attempts: int, status: int | None,
             error: str, warn: bool = True) -> tuple[None, FailedRead]:
    """Record a failed read (``on_error="nodata"``) or raise :class:`ReadError`."""
    options = task.options
    href = options.scrub(redact_url(source.href))
    message = (f"reading band {task.band!r} of item {source.item_id!r} from {href} failed "
               f"after {attempts} attempt{'s' if attempts > 1 else ''} "
               + (f"(HTTP status {status})" if status else "(no HTTP error status)")
               + f": {error}")
    if options.on_error == "nodata":
        failure = FailedRead(source.item_id, task.band, href, task.chunk, task.bounds,
                             task.crs, attempts, status, error)
        if not warn:  # the chunk tasks that needed the file warn, each for its chunk
            return None, failure
        warnings.warn(ReadFailure(message + " (filled with nodata as on_error='nodata' asked)",
                                  failure), stacklevel=3)
        return None, failure
    err = ReadError(message)
    err.item_id = source.item_id  # type: ignore[attr-defined]
    err.href = href  # type: ignore[attr-defined]
    err.band = task.band  # type: ignore[attr-defined]
    err.status = status  # type: ignore[attr-defined]
    err.attempts = attempts  # type: ignore[attr-defined]
    raise err from None


def _chain(exc: BaseException | None) -> list[str]:
    """Messages of an exception and of its causes (rasterio chains GDAL's error stack)."""
    out: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = " ".join(str(exc).split())
        if text and text not in out:
            out.append(text)
        exc = exc.__cause__ or exc.__context__
    return out


def _statuses(exc: BaseException | None, messages: list[str]) -> list[int]:
    found = [int(m) for text in messages for m in _STATUS.findall(text)]
    found += [int(m) for text in reversed(_chain(exc)) for m in _STATUS.findall(text)]
    return found


def _last_status(exc: BaseException | None, messages: list[str]) -> int | None:
    found = _statuses(exc, messages)
    return found[-1] if found else None


def _is_permanent(exc: BaseException | None, messages: list[str]) -> bool:
    if any(status in PERMANENT_STATUSES for status in _statuses(exc, messages)):
        return True
    text = " ".join(_chain(exc))
    return any(marker in text for marker in _PERMANENT_TEXT)


def _gdal_message(exc: BaseException | None, messages: list[str] | None = None) -> str:
    if exc is None:
        return "unknown error"
    parts = _chain(exc)
    if parts and parts[0].startswith("Read failed. See previous exception"):
        parts = parts[1:] or parts
    text = "; ".join(parts[:3])
    http = [m for m in (messages or []) if _STATUS.search(m) or "curl" in m.lower()]
    if http and not _STATUS.search(text):
        text += f" [GDAL: {' '.join(http[-1].split())}]"
    return text[:600]


def _read_source(path: str, task: ChunkTask) -> np.ndarray:
    ds = _open(path, task.options)
    height, width = task.shape
    target = Affine(*task.transform)
    resampling = Resampling[task.resampling]
    raw_dtype = task.dtype if task.scale is None else "uint16"
    nodata = task.nodata if task.scale is None else 0
    checker = _TileChecker.for_dataset(ds, path) if task.options.verify_tiles else None
    same_crs = ds.crs is not None and ds.crs.to_string() == task.crs
    offset = cog.grid_offset(tuple(ds.transform)[:6], task.transform) if same_crs else None
    if offset is not None:
        return _read_aligned(ds, offset, height, width, raw_dtype, nodata, checker)
    if checker is not None:
        checker.check_bounds(ds, task.bounds, task.crs)
    with WarpedVRT(ds, crs=task.crs, transform=target, width=width, height=height,
                   resampling=resampling, src_nodata=ds.nodata if ds.nodata is not None else 0,
                   nodata=nodata, dtype=raw_dtype) as vrt:
        return vrt.read(1, out_dtype=raw_dtype)


def _read_aligned(ds: Any, offset: tuple[int, int], height: int, width: int, dtype: str,
                  nodata: float, checker: _TileChecker | None = None) -> np.ndarray:
    """Plain windowed read of the part of the chunk the file covers; the rest is nodata.

    ``offset`` is the chunk's ``(row, col)`` in the file (:func:`cog.grid_offset`).
    """
    row0, col0 = offset
    c_start, r_start = max(col0, 0), max(row0, 0)
    c_stop, r_stop = min(col0 + width, ds.width), min(row0 + height, ds.height)
    out = np.full((height, width), nodata, dtype=dtype)
    if c_start >= c_stop or r_start >= r_stop:
        return out
    window = Window(c_start, r_start, c_stop - c_start, r_stop - r_start)
    if checker is not None:
        data = checker.read(ds, window).astype(dtype, copy=False)
    else:
        data = ds.read(1, window=window, out_dtype=dtype)
    if ds.nodata is not None and ds.nodata != nodata:
        data = data.copy() if not data.flags.writeable else data
        data[data == ds.nodata] = nodata
    out[r_start - row0:r_stop - row0, c_start - col0:c_stop - col0] = data
    return out


# ------------------------------------------------------------------------ tile checksums


class CorruptTileError(OSError):
    """A DEFLATE tile decoded to data whose checksum is not the one stored in the file."""


class _Vsi:
    """GDAL's VSI file API, through the libgdal rasterio has loaded (for raw byte reads)."""

    def __init__(self, lib: Any) -> None:
        self._open = lib.VSIFOpenL
        self._open.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        self._open.restype = ctypes.c_void_p
        self._seek = lib.VSIFSeekL
        self._seek.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
        self._seek.restype = ctypes.c_int
        self._read = lib.VSIFReadL
        self._read.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                               ctypes.c_void_p]
        self._read.restype = ctypes.c_size_t
        self._close = lib.VSIFCloseL
        self._close.argtypes = [ctypes.c_void_p]
        self._close.restype = ctypes.c_int

    def pread(self, name: str, offset: int, size: int) -> bytes | None:
        """``size`` bytes at ``offset`` of GDAL file ``name`` (served from GDAL's cache when
        GDAL just read them), or ``None`` when GDAL cannot read them."""
        handle = self._open(name.encode(), b"rb")
        if not handle:
            return None
        try:
            if self._seek(handle, offset, 0) != 0:
                return None
            buffer = ctypes.create_string_buffer(size)
            got = self._read(buffer, 1, size, handle)
            return buffer.raw[:got] if got == size else None
        finally:
            self._close(handle)


@functools.lru_cache(maxsize=1)
def _vsi() -> _Vsi | None:
    """The VSI binding, or ``None`` where rasterio's libgdal cannot be found."""
    candidates: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:  # Linux: the library rasterio actually loaded
            name = line.rsplit(None, 1)[-1] if "/" in line else ""
            if os.path.basename(name).startswith("libgdal"):
                candidates.append(name)
    package = os.path.dirname(rasterio.__file__)
    for folder in (os.path.join(package, ".dylibs"), package + ".libs"):
        candidates += sorted(glob.glob(os.path.join(folder, "*gdal*")))
    found = ctypes.util.find_library("gdal")
    if found:
        candidates.append(found)
    for candidate in dict.fromkeys(candidates):
        try:
            lib = ctypes.CDLL(candidate)
            if all(hasattr(lib, f) for f in ("VSIFOpenL", "VSIFSeekL", "VSIFReadL",
                                             "VSIFCloseL")):
                return _Vsi(lib)
        except OSError:
            continue
    log.warning("cannot find rasterio's libgdal: DEFLATE tile checksums are not verified")
    return None


class _TileChecker:
    """Verifies decoded DEFLATE tiles against the zlib checksum stored with each tile.

    GDAL (libtiff) does not check a tile's zlib adler32: a tile whose bytes were altered in
    transit often decodes, without any error, to wrong pixels. The checksum of the
    uncompressed tile is the last 4 bytes of its compressed data, so this recomputes it
    from the decoded tile (zero padding past the image edge, horizontal predictor applied
    again, file byte order) and compares. A mismatch raises :class:`CorruptTileError`, which
    the retry loop treats like any transient read error.

    A mismatch seen identically on two separate fetches is a property of the file (a writer
    that pads edge tiles differently), not a transport fault: it is then accepted (logged).
    """

    _cache: dict[tuple[int, str], _TileChecker | None] = {}
    _seen: dict[tuple[str, int, int, int, int], int] = {}
    _lock = threading.Lock()

    def __init__(self, ds: Any, name: str, vsi: _Vsi, big_endian: bool, predictor: int,
                 block: tuple[int, int]) -> None:
        self.name = name
        self.vsi = vsi
        self.dtype = np.dtype(ds.dtypes[0]).newbyteorder(">" if big_endian else "<")
        self.predictor = predictor
        self.block = block
        self.width, self.height = ds.width, ds.height

    @classmethod
    def for_dataset(cls, ds: Any, path: str) -> _TileChecker | None:
        """A checker for ``ds``, or ``None`` when its tiles cannot be checked this way."""
        key = (id(ds), path)
        with cls._lock:
            if key in cls._cache:
                return cls._cache[key]
        checker = cls._make(ds, path)
        with cls._lock:
            if len(cls._cache) > 4096:
                cls._cache.clear()
            cls._cache[key] = checker
        return checker

    @classmethod
    def _make(cls, ds: Any, path: str) -> _TileChecker | None:
        structure = ds.tags(ns="IMAGE_STRUCTURE")
        if str(structure.get("COMPRESSION", "")).upper() not in ("DEFLATE", "ZIP"):
            return None
        predictor = int(structure.get("PREDICTOR", "1") or 1)
        dtype = np.dtype(ds.dtypes[0])
        if ds.count != 1 or predictor not in (1, 2) or dtype.kind not in "ui":
            return None
        vsi = _vsi()
        if vsi is None:
            return None
        name = _vsi_name(path) or path
        magic = vsi.pread(name, 0, 2)
        if magic not in (b"II", b"MM"):
            return None
        return cls(ds, name, vsi, magic == b"MM", predictor, tuple(ds.block_shapes[0]))

    def read(self, ds: Any, window: Window) -> np.ndarray:
        """``window`` of band 1, read as whole tiles, each verified."""
        bh, bw = self.block
        c0, r0 = int(window.col_off), int(window.row_off)
        c1, r1 = c0 + int(window.width), r0 + int(window.height)
        tc0, tr0 = (c0 // bw) * bw, (r0 // bh) * bh
        tc1, tr1 = min(-(-c1 // bw) * bw, self.width), min(-(-r1 // bh) * bh, self.height)
        tiles = ds.read(1, window=Window(tc0, tr0, tc1 - tc0, tr1 - tr0))
        for row in range(tr0, tr1, bh):
            for col in range(tc0, tc1, bw):
                self._verify(ds, col // bw, row // bh,
                             tiles[row - tr0:row - tr0 + bh, col - tc0:col - tc0 + bw])
        return tiles[r0 - tr0:r1 - tr0, c0 - tc0:c1 - tc0]

    def check_bounds(self, ds: Any, bounds: tuple[float, float, float, float],
                     crs: str) -> None:
        """Verify the tiles a warp of ``bounds`` (in ``crs``) will read from ``ds``."""
        from rasterio.warp import transform_bounds
        from rasterio.windows import from_bounds

        try:
            left, bottom, right, top = transform_bounds(crs, ds.crs, *bounds, densify_pts=21)
            window = from_bounds(left, bottom, right, top, transform=ds.transform)
        except (ValueError, rasterio.errors.RasterioError):
            return  # no usable source window: let the warp itself report problems
        margin = 4  # resampling kernels read a few pixels around
        c0 = max(int(np.floor(window.col_off)) - margin, 0)
        r0 = max(int(np.floor(window.row_off)) - margin, 0)
        c1 = min(int(np.ceil(window.col_off + window.width)) + margin, self.width)
        r1 = min(int(np.ceil(window.row_off + window.height)) + margin, self.height)
        if c0 < c1 and r0 < r1:
            self.read(ds, Window(c0, r0, c1 - c0, r1 - r0))

    def _adler(self, block: np.ndarray) -> int:
        """zlib checksum of a block as stored: predictor applied, file byte order."""
        if self.predictor == 2:
            block = block.copy()
            block[:, 1:] = block[:, 1:] - block[:, :-1]
        return zlib.adler32(np.ascontiguousarray(block).tobytes())

    def _verify(self, ds: Any, bx: int, by: int, tile: np.ndarray) -> None:
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=1)
        size = ds.get_tag_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", bidx=1)
        if not offset or not size or int(size) < 6:
            return  # a sparse (absent) tile: nothing was read
        stored = self.vsi.pread(self.name, int(offset) + int(size) - 4, 4)
        if stored is None:
            return
        expected = int.from_bytes(stored, "big")
        bh, bw = self.block
        full = np.zeros((bh, bw), dtype=self.dtype)
        full[:tile.shape[0], :tile.shape[1]] = tile
        got = self._adler(full)
        if got == expected:
            return
        # the last strip of a striped file holds only its rows (tiles are padded)
        if tile.shape != (bh, bw) and tile.shape[1] == bw \
                and self._adler(full[:tile.shape[0]]) == expected:
            return
        key = (self.name, bx, by, expected, got)
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            seen = self._seen.get(key, 0)
            self._seen[key] = seen + 1
        if seen:  # the same on a fresh fetch: it is the file, not the transfer
            partial = tile.shape != (bh, bw)
            log.log(logging.DEBUG if partial else logging.WARNING,
                    "tile %d,%d of %s: checksum %08x differs from the stored %08x on every "
                    "fetch; using it as the file has it", bx, by, redact_url(self.name), got,
                    expected)
            return
        raise CorruptTileError(
            f"tile {bx},{by} decoded to data whose DEFLATE checksum {got:08x} is not the "
            f"stored {expected:08x}: its bytes were corrupted in transfer")


# ------------------------------------------------------------------------ graph helpers


def read_block(task: ChunkTask, *files: FileData | None
               ) -> tuple[np.ndarray, tuple[FailedRead, ...]]:
    """Graph task: the chunk as a ``(1, y, x)`` block, with its failed reads."""
    data, failures = read_chunk_report(task, *files)
    return data[np.newaxis], failures


def read_pixels(task: ChunkTask, *files: FileData | None) -> np.ndarray:
    """Graph task: the chunk as a ``(1, y, x)`` block (``on_error="raise"``: no failures)."""
    return read_chunk_report(task, *files)[0][np.newaxis]


def block_pixels(report: tuple[np.ndarray, tuple[FailedRead, ...]]) -> np.ndarray:
    """Graph task: the pixels of a :func:`read_block` result."""
    return report[0]


def _failures_of(report: tuple[np.ndarray, tuple[FailedRead, ...]]) -> tuple[FailedRead, ...]:
    """Graph task: the failures of a :func:`read_block` result (not its pixels, so the
    pixels can be freed as soon as the array has taken them)."""
    return report[1]


def _collect(*failures: tuple[FailedRead, ...]) -> np.ndarray:
    out = np.empty(1, dtype=object)
    out[0] = [f for chunk in failures for f in chunk]
    return out


def failed_reads_array(obj: Any) -> Any:
    """A one-element object dask array holding the failed reads ``obj`` would make.

    Computing it together with ``obj`` (``dask.compute(obj, arr)``) reads each chunk once:
    both depend on the same read tasks of the ``s2raw-*`` graph layers (stacks made with
    ``on_error="raise"`` have none: their failures raise, so the list is empty).
    """
    import dask.array as da
    from dask.base import tokenize
    from dask.core import flatten
    from dask.highlevelgraph import HighLevelGraph
    from dask.optimization import cull

    graph = obj.__dask_graph__()
    if graph is None:
        return da.from_array(_collect(), chunks=1)
    if not isinstance(graph, HighLevelGraph):
        graph = HighLevelGraph.from_collections(f"s2graph-{tokenize(graph)}", dict(graph))
    # only the reads ``obj`` needs (a clipped or subset stack needs fewer than the full one)
    needed, _ = cull(dict(graph), list(flatten(obj.__dask_keys__())))
    raw_keys = sorted((k for k in needed if isinstance(k, tuple) and isinstance(k[0], str)
                       and k[0].startswith(RAW_LAYER_PREFIX)), key=str)
    name = "s2failed-" + tokenize(raw_keys)
    per_chunk = {(f"{name}-chunk", n): (_failures_of, key) for n, key in enumerate(raw_keys)}
    layer = {**per_chunk, (name, 0): (_collect, *per_chunk)}
    layers = {**graph.layers, name: layer}
    dependencies = {**graph.dependencies,
                    name: {n for n in graph.layers if n.startswith(RAW_LAYER_PREFIX)}}
    return da.Array(HighLevelGraph(layers, dependencies), name, ((1,),), dtype=object,
                    meta=np.empty((0,), dtype=object))


def compute_with_failures(obj: Any, **compute_kwargs: Any) -> Any:
    """Compute a stack (or anything derived from it) and record the reads that failed.

    With ``stack(..., on_error="nodata")`` a read that fails after the retries is filled
    with nodata; this returns the computed Dataset/DataArray with
    ``attrs["s2intake_failed_reads"]``: a list of :meth:`FailedRead.to_dict` dicts (item id,
    band, href, chunk index and bounds, attempts, HTTP status, error), empty when every
    read succeeded. Each chunk is read once, on whatever scheduler is active (a
    ``distributed`` cluster included: the failures travel back with the results, unlike
    warnings emitted on workers).

    Parameters
    ----------
    obj:
        A lazy ``xarray.Dataset`` or ``DataArray`` from :func:`s2intake.stack`, clipped or
        subset or not.
    **compute_kwargs:
        Passed to :func:`dask.compute` (``scheduler=``...).

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Computed (numpy-backed); a copy of the attrs plus the failure list.
    """
    import dask

    failures_array = failed_reads_array(obj)
    computed, failures = dask.compute(obj, failures_array, **compute_kwargs)
    found = [f.to_dict() for f in failures[0]]
    computed.attrs = {**computed.attrs, FAILED_READS_ATTR: found}
    return computed
