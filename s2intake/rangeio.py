"""HTTP byte-range reads for COGs: one GET for the header, one multi-range GET for the tiles.

GDAL's ``/vsicurl/`` makes a HEAD per file, then a GET for the header and one GET per run of
consecutive tiles (per chunk). Reading a file's touched tiles this way needs two requests
per file whatever the AOI: the first ranged GET returns the file size in ``Content-Range``
(no HEAD), and every tile the AOI touches comes back in one ``multipart/byteranges`` reply.

Servers that ignore multi-range requests (AWS S3 answers them with the whole object) are
detected on their first reply: the connection is dropped after the status line and that
host gets one GET per run of consecutive tiles from then on (S3 hosts from the start).

Transient failures (connection resets, timeouts, truncated bodies, 429 and the statuses in
``GDAL_HTTP_RETRY_CODES``) are retried here with doubling delays, honouring ``Retry-After``;
:class:`HttpError` carries the last status for the caller's own retry loop and messages.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
import urllib3.exceptions

from .gdal_env import DEFAULT_GDAL_OPTIONS, ReadOptions, redact_url

#: GDAL options the direct reader understands; any other option (a proxy, a CA bundle,
#: a header file, AWS signing...) sends the read through GDAL, which knows them all.
_UNDERSTOOD = frozenset(DEFAULT_GDAL_OPTIONS) | {
    "GDAL_HTTP_USERAGENT", "GDAL_HTTP_HEADERS", "CPL_DEBUG", "CPL_CURL_VERBOSE",
    "CPL_VSIL_CURL_CACHE_SIZE", "CPL_VSIL_CURL_CHUNK_SIZE", "GDAL_HTTP_MULTIRANGE",
    "GDAL_NUM_THREADS", "GDAL_HTTP_MAX_RETRY", "GDAL_HTTP_RETRY_DELAY",
    "GDAL_HTTP_LOW_SPEED_TIME", "GDAL_HTTP_LOW_SPEED_LIMIT",
}
#: Proxy variables curl (so GDAL) honours and urllib3 does not: such reads go through GDAL.
_CURL_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
             "all_proxy", "GDAL_HTTP_PROXY")
#: CA bundle variables, used for https as curl would.
_CA_ENV = ("CURL_CA_BUNDLE", "GDAL_CURL_CA_BUNDLE", "SSL_CERT_FILE")
#: Hosts known to answer a multi-range request with the whole object.
_SINGLE_RANGE_HOSTS = re.compile(r"(^|\.)amazonaws\.com$|(^|\.)storage\.googleapis\.com$")
#: Longest wait honoured from a ``Retry-After`` header, in seconds.
MAX_RETRY_AFTER = 30.0
#: Longest ``Range`` header sent in one request (servers limit header lines to ~8 KiB).
MAX_RANGE_HEADER = 6000
#: Byte gaps up to this size between wanted ranges are fetched rather than split on.
MERGE_GAP = 1024

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


class HttpError(OSError):
    """A ranged GET failed; ``status`` is the last HTTP status (``None`` for network errors)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RangeNotSupported(HttpError):
    """The server ignored a ``Range`` header (answered 200 with the whole file)."""


@dataclass(frozen=True)
class HttpSettings:
    """What the direct reader needs from :class:`~s2intake.gdal_env.ReadOptions`."""

    headers: tuple[tuple[str, str], ...]
    connect_timeout: float
    read_timeout: float
    max_retry: int
    retry_delay: float
    retry_codes: frozenset[int]

    @classmethod
    def from_options(cls, options: ReadOptions) -> HttpSettings | None:
        """Settings for ``options``, or ``None`` when the read must go through GDAL."""
        env = options.env()
        if any(key not in _UNDERSTOOD for key in env) or any(os.environ.get(v) for v in _CURL_ENV):
            return None
        headers: dict[str, str] = {"User-Agent": env.get("GDAL_HTTP_USERAGENT")
                                   or f"s2intake/{_version()}"}
        for line in re.split(r"\r?\n|\\r\\n", env.get("GDAL_HTTP_HEADERS", "")):
            name, sep, value = line.partition(":")
            if sep and name.strip():
                headers[name.strip()] = value.strip()
        codes = {int(c) for c in re.findall(r"\d{3}", env.get("GDAL_HTTP_RETRY_CODES", ""))}
        read_timeout = float(env.get("GDAL_HTTP_TIMEOUT", 30))
        if env.get("GDAL_HTTP_LOW_SPEED_TIME"):  # curl: abort when too slow for that long;
            # here: when a read waits that long (a stalled transfer)
            read_timeout = min(read_timeout, float(env["GDAL_HTTP_LOW_SPEED_TIME"]))
        return cls(headers=tuple(headers.items()),
                   connect_timeout=float(env.get("GDAL_HTTP_CONNECTTIMEOUT", 10)),
                   read_timeout=read_timeout,
                   max_retry=int(env.get("GDAL_HTTP_MAX_RETRY", 0)),
                   retry_delay=float(env.get("GDAL_HTTP_RETRY_DELAY", 0.5)),
                   retry_codes=frozenset(codes | {429}))


def _version() -> str:
    from . import __version__

    return __version__


#: Follow up to 5 redirects (pre-signed URL services); no other retry here: ours do that.
_FOLLOW_REDIRECTS = urllib3.Retry(total=None, connect=0, read=0, redirect=5, status=0, other=0,
                                  raise_on_redirect=True, raise_on_status=False)


class _Pool:
    """One urllib3 pool manager per process (recreated after a fork), shared by threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = -1
        self.manager: urllib3.PoolManager | None = None
        self.single_range_hosts: set[str] = set()

    def get(self) -> urllib3.PoolManager:
        with self.lock:
            if self.manager is None or self.pid != os.getpid():
                bundle = next((os.environ[v] for v in _CA_ENV if os.environ.get(v)), None)
                # keep a connection per thread of a busy worker (urllib3 warns and drops the
                # connections beyond maxsize)
                self.manager = urllib3.PoolManager(num_pools=64, maxsize=64, retries=False,
                                                   ca_certs=bundle)
                self.pid = os.getpid()
            return self.manager


_POOL = _Pool()


def _request(url: str, ranges: str, settings: HttpSettings) -> urllib3.BaseHTTPResponse:
    headers = dict(settings.headers)
    headers["Range"] = f"bytes={ranges}"
    timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
    return _POOL.get().request("GET", url, headers=headers, timeout=timeout,
                               preload_content=False, retries=_FOLLOW_REDIRECTS)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _with_retries(url: str, ranges: str, settings: HttpSettings
                  ) -> tuple[urllib3.BaseHTTPResponse, bytes]:
    """GET ``ranges`` of ``url``; returns the response and its body (read in full).

    A 200 (the server ignored the ``Range``) is returned unread, with no body: the caller
    drops the connection instead of downloading the whole file.
    """
    delay = settings.retry_delay
    last: HttpError | None = None
    for attempt in range(settings.max_retry + 1):
        response = None
        try:
            response = _request(url, ranges, settings)
            status = response.status
            if status in (200, 206):
                if status == 200:
                    return response, b""
                data = response.read()
                response.release_conn()
                return response, data
            if status not in settings.retry_codes and status < 500:
                raise HttpError(f"HTTP error code: {status} - {redact_url(url)}", status)
            last = HttpError(f"HTTP error code: {status} - {redact_url(url)}", status)
        except HttpError:
            _close(response)
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            last = HttpError(f"{type(exc).__name__}: {_short(exc)} - {redact_url(url)}")
        _close(response)
        if attempt == settings.max_retry:
            break
        wait = retry_after_seconds(response.headers.get("Retry-After")) \
            if response is not None else None
        time.sleep(min(wait, MAX_RETRY_AFTER) if wait is not None
                   else delay * random.uniform(0.75, 1.0))
        delay *= 2
    assert last is not None
    raise last


def _close(response: urllib3.BaseHTTPResponse | None) -> None:
    if response is not None:
        try:
            response.drain_conn() if response.status >= 300 else response.close()
        except Exception:  # noqa: BLE001 - the connection is being thrown away anyway
            response.close()


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def read_prefix(url: str, length: int, settings: HttpSettings) -> tuple[bytes, int]:
    """The first ``length`` bytes of ``url`` (fewer if the file is shorter) and the file size.

    Raises
    ------
    RangeNotSupported
        When the server answers with the whole file instead of the range.
    HttpError
        When the GET fails after the retries.
    """
    response, data = _with_retries(url, f"0-{length - 1}", settings)
    if response.status == 200:
        _close(response)
        raise RangeNotSupported(f"{redact_url(url)} does not serve byte ranges", 200)
    match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
    if not match or match.group(3) == "*":
        raise HttpError(f"no file size in the reply for {redact_url(url)}", response.status)
    start, end, total = (int(match.group(i)) for i in (1, 2, 3))
    if start != 0 or len(data) != end - start + 1:
        raise HttpError(f"short or misplaced header bytes from {redact_url(url)} "
                        f"({len(data)} bytes for range {start}-{end})", response.status)
    return data, total


def merge_ranges(ranges: Sequence[tuple[int, int]], gap: int | None = None
                 ) -> list[tuple[int, int]]:
    """Sorted ``[start, stop)`` ranges with overlaps and gaps up to ``gap`` bytes merged.

    ``gap`` defaults to :data:`MERGE_GAP`; -1 keeps even touching ranges apart.
    """
    gap = MERGE_GAP if gap is None else gap
    out: list[list[int]] = []
    for start, stop in sorted(ranges):
        if out and start - out[-1][1] <= gap:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([start, stop])
    return [(a, b) for a, b in out]


def read_ranges(url: str, ranges: Sequence[tuple[int, int]], settings: HttpSettings
                ) -> dict[tuple[int, int], memoryview]:
    """The bytes of each ``[start, stop)`` range of ``url``, in as few GETs as the server allows.

    Returns
    -------
    dict
        ``{(start, stop): data}`` for every requested range; the values are read-only
        memoryviews into the reply (``bytes(value)`` copies one out).
    """
    wanted = [(int(a), int(b)) for a, b in ranges if b > a]
    if not wanted:
        return {}
    runs = merge_ranges(wanted)
    parts = urlsplit(url)
    host = parts.netloc
    got: dict[tuple[int, int], memoryview] = {}
    if len(runs) > 1 and host not in _POOL.single_range_hosts \
            and not _SINGLE_RANGE_HOSTS.search(parts.hostname or ""):
        for batch in _batches(runs):
            try:
                got.update(_multi_get(url, batch, settings))
            except RangeNotSupported:
                _POOL.single_range_hosts.add(host)
                break
        else:
            return _cut([(a, data) for (a, _), data in got.items()], wanted, url)
    for run in runs:
        if run not in got:
            got.update(_multi_get(url, [run], settings))
    return _cut([(a, data) for (a, _), data in got.items()], wanted, url)


def _batches(runs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    batches: list[list[tuple[int, int]]] = [[]]
    length = 0
    for start, stop in runs:
        text = len(f"{start}-{stop - 1},")
        if batches[-1] and length + text > MAX_RANGE_HEADER:
            batches.append([])
            length = 0
        batches[-1].append((start, stop))
        length += text
    return batches


def _multi_get(url: str, runs: list[tuple[int, int]], settings: HttpSettings
               ) -> dict[tuple[int, int], memoryview]:
    spec = ",".join(f"{a}-{b - 1}" for a, b in runs)
    response, data = _with_retries(url, spec, settings)
    if response.status == 200:
        _close(response)
        if len(runs) == 1:
            raise RangeNotSupported(f"{redact_url(url)} does not serve byte ranges", 200)
        raise RangeNotSupported(f"{redact_url(url)}: no multi-range replies", 200)
    kind = response.headers.get("Content-Type", "")
    view = memoryview(data)  # parts and tiles are slices of the one body: no copies
    if kind.lower().startswith("multipart/byteranges"):
        parts = _multipart(data, view, kind, url)
    else:
        match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
        if not match:
            raise HttpError(f"no Content-Range in the reply for {redact_url(url)}",
                            response.status)
        parts = [(int(match.group(1)), view)]
    return _cut(parts, runs, url)


def _multipart(body: bytes, view: memoryview, content_type: str, url: str
               ) -> list[tuple[int, memoryview]]:
    """``[(start, data)]`` of a ``multipart/byteranges`` body (sized by each part's range).

    ``view`` is a memoryview of ``body``: the parts are slices of it.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise HttpError(f"multipart reply without a boundary from {redact_url(url)}")
    delimiter = b"--" + match.group(1).encode()
    parts: list[tuple[int, memoryview]] = []
    pos = body.find(delimiter)
    while pos >= 0:
        pos += len(delimiter)
        if body[pos:pos + 2] == b"--":
            return parts
        end_headers = body.find(b"\r\n\r\n", pos)
        if end_headers < 0:
            break
        found = _CONTENT_RANGE.search(body[pos:end_headers].decode("latin-1"))
        if not found:
            break
        start, stop = int(found.group(1)), int(found.group(2)) + 1
        data_start = end_headers + 4
        chunk = view[data_start:data_start + stop - start]
        if len(chunk) != stop - start:
            break
        parts.append((start, chunk))
        pos = body.find(delimiter, data_start + len(chunk))
    raise HttpError(f"truncated or malformed multipart reply from {redact_url(url)}")


def _cut(pieces: list[tuple[int, memoryview]], wanted: Sequence[tuple[int, int]], url: str
         ) -> dict[tuple[int, int], memoryview]:
    """Each wanted ``[start, stop)`` sliced out of the ``(start, data)`` piece holding it
    (servers may merge ranges; runs hold several tiles)."""
    out: dict[tuple[int, int], memoryview] = {}
    for start, stop in wanted:
        for piece_start, data in pieces:
            if piece_start <= start and stop <= piece_start + len(data):
                out[(start, stop)] = data[start - piece_start:stop - piece_start]
                break
        else:
            raise HttpError(f"the reply from {redact_url(url)} lacks bytes {start}-{stop - 1}")
    return out

