"""A fault-injecting HTTP/1.1 proxy on the loopback interface, for reliability tests.

:class:`FaultProxy` sits in front of one upstream server (the replica's STAC API or its
nginx COG server) and forwards every request to it: any method, request bodies (``POST``
searches) and headers (``Range`` included, so ``206 Partial Content`` answers pass through
unchanged). On chosen requests it answers with a fault instead:

============  ==================================================================================
``"500"``     ``500 Internal Server Error`` (also ``"502"``, ``"503"``, ``"504"``)
``"429"``     ``429 Too Many Requests`` with ``Retry-After: <retry_after>``
``"reset"``   the TCP connection is reset (``SO_LINGER`` 0, then close) without an answer
``"stall"``   no answer for ``stall_seconds`` (past the client's timeout), then a close
``"truncate"``  the upstream answer with its full ``Content-Length`` but only half the body
``"corrupt"``   the upstream answer with a few bytes in the middle of the body altered; text
              bodies (JSON) also get an ``0xFF`` byte, so the damage is detectable as
              invalid UTF-8 (silent damage inside JSON strings cannot be told apart from
              data, and TCP checksums make it practically impossible in real life)
============  ==================================================================================

Faults are picked per request, in this order: the first :class:`Rule` that matches the
request (by method, path regex, body regex and position among the requests it matches) and
still has injections left, else a seeded random draw at ``rate`` from ``kinds``. Every
request and fault is counted (:attr:`FaultProxy.stats`, :attr:`FaultProxy.records`).

The proxy binds ``127.0.0.1`` only, runs its handlers on daemon threads, and is bounded:
:meth:`FaultProxy.stop` (called by the context manager and by the test fixtures at
teardown) releases stalled requests, closes every client connection and the listening
socket; a watchdog also stops it after ``max_lifetime`` seconds if nobody did.

Examples
--------
>>> with FaultProxy("http://127.0.0.1:8080", rate=0.1, seed=1) as proxy:  # doctest: +SKIP
...     requests.get(proxy.url + "/x.tif", headers={"Range": "bytes=0-99"})
...     proxy.stats.faults
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"

STATUS_FAULTS: tuple[str, ...] = ("429", "500", "502", "503", "504")
#: Every fault kind the proxy knows.
FAULT_KINDS: tuple[str, ...] = (*STATUS_FAULTS, "reset", "stall", "truncate", "corrupt")
#: The default random mix (every kind once, status codes included).
DEFAULT_MIX: tuple[str, ...] = ("500", "502", "503", "429", "reset", "stall", "truncate",
                                "corrupt")

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "http2-settings",
})
_TEXT_TYPES = ("json", "text/", "xml", "javascript")


@dataclass
class Rule:
    """Inject ``fault`` into the requests this rule matches.

    Parameters
    ----------
    fault:
        One of :data:`FAULT_KINDS`.
    path:
        Regular expression searched in the request target (path and query); ``None``
        matches every request.
    method:
        HTTP method to match (``"GET"``, ``"POST"``...); ``None`` matches all.
    body:
        Regular expression searched in the request body (decoded as UTF-8, errors
        replaced), e.g. ``'"token"'`` for the second and later pages of a POST search.
    headers:
        ``{name: regex}``: each named request header must be present and match, e.g.
        ``{"Range": r"bytes=[1-9]"}`` for range reads past the first byte (tile reads,
        not the header read at ``bytes=0-``).
    nth:
        1-based positions, among the requests this rule's filters match, that get the
        fault (``{2}``, ``range(2, 10**9)``...); ``None`` means all of them.
    times:
        Most injections this rule makes (``None``: no limit).
    """

    fault: str
    path: str | None = None
    method: str | None = None
    body: str | None = None
    headers: Mapping[str, str] | None = None
    nth: Container[int] | None = None
    times: int | None = None
    seen: int = field(default=0, init=False)
    injected: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.fault not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.fault!r}; known: {', '.join(FAULT_KINDS)}")
        if isinstance(self.nth, int):
            self.nth = {self.nth}

    def matches(self, method: str, target: str, body: bytes,
                headers: Mapping[str, str] | None = None) -> bool:
        """Whether the filters (method, path, body, headers) select this request."""
        if self.method is not None and method.upper() != self.method.upper():
            return False
        for name, pattern in (self.headers or {}).items():
            value = (headers or {}).get(name)
            if value is None or not re.search(pattern, value):
                return False
        if self.path is not None and not re.search(self.path, target):
            return False
        return self.body is None or bool(re.search(self.body,
                                                   body.decode("utf-8", "replace")))


@dataclass(frozen=True)
class Record:
    """One request the proxy handled."""

    number: int
    method: str
    target: str
    range: str | None
    fault: str | None
    status: int | None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Stats:
    """Counts of requests and of injected faults (by kind)."""

    requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    upstream_errors: int = 0

    @property
    def injected(self) -> int:
        """Total faults injected."""
        return sum(self.faults.values())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__((LOOPBACK, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.proxy._track(request, True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.proxy._track(request, False)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Quiet: the proxy keeps its own records."""

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        if self._upstream is not None:
            self._upstream.close()

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        """Forward (or fault) one request; every method goes through here."""
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- request -------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        number, fault = proxy._decide(self.command, self.path, body, self.headers)
        status: int | None = None
        try:
            if fault in STATUS_FAULTS:
                status = int(fault)
                self._answer_status(status, proxy.retry_after if status == 429 else None)
                return
            if fault == "reset":
                self._reset()
                return
            if fault == "stall":
                proxy._stopped.wait(proxy.stall_seconds)
                self._reset()
                return
            try:
                status, reason, headers, data = self._forward(body)
            except (OSError, http.client.HTTPException) as exc:
                with proxy._lock:
                    proxy.stats.upstream_errors += 1
                status = 502
                self._answer_status(502, None, f"upstream error: {exc}".encode())
                return
            content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
            if proxy.rewrite and self.command != "HEAD":
                for old, new in proxy.rewrite.items():
                    data = data.replace(old.encode(), new.encode())
            if fault in ("truncate", "corrupt") and len(data) < 2:
                fault = proxy._replace_fault(fault, "503")
                status = 503
                self._answer_status(503, None)
                return
            if fault == "corrupt":
                data = proxy._corrupt(data, any(t in content_type for t in _TEXT_TYPES))
            self.send_response(status, reason)
            for key, value in headers:
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            if self.command != "HEAD" or any(k.lower() == "content-length" for k, _ in headers):
                length = len(data) if self.command != "HEAD" else next(
                    v for k, v in headers if k.lower() == "content-length")
                self.send_header("Content-Length", str(length))
            if fault == "truncate":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault == "truncate":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)
        except OSError:  # the client went away (GDAL and requests close early sometimes)
            self.close_connection = True
        finally:
            proxy._record(number, self.command, self.path, self.headers.get("Range"), fault,
                          status, tuple(self.headers.items()) if proxy.record_headers else ())

    # -- answers -------------------------------------------------------------------------
    def _answer_status(self, status: int, retry_after: float | None,
                       body: bytes | None = None) -> None:
        payload = body or f"fault proxy: injected {status}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        if retry_after is not None:
            self.send_header("Retry-After", f"{retry_after:g}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _reset(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        proxy = self.server.proxy
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if proxy.rewrite:
            headers.pop("Accept-Encoding", None)
            headers["Accept-Encoding"] = "identity"
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        target = proxy._base_path + self.path if proxy._base_path else self.path
        for attempt in range(2):  # a kept-alive upstream connection may have been closed
            conn = self._upstream
            if conn is None:
                conn = http.client.HTTPConnection(proxy._host, proxy._port,
                                                  timeout=proxy.upstream_timeout)
                self._upstream = conn
            try:
                conn.request(self.command, target, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._upstream = None
                if attempt:
                    raise
                continue
            if resp.will_close:
                conn.close()
                self._upstream = None
            return resp.status, resp.reason, resp.getheaders(), data
        raise AssertionError("unreachable")  # pragma: no cover


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 that injects faults into chosen requests.

    Parameters
    ----------
    upstream:
        Base URL of the server to forward to (``http://127.0.0.1:port``, optionally with a
        path prefix). Only loopback upstreams are accepted.
    rate:
        Probability that a request not taken by a rule gets a random fault.
    kinds:
        Fault kinds the random draw picks from (uniformly).
    seed:
        Seed of the random draws (the sequence of decisions is reproducible; which request
        gets which decision depends on the order requests arrive in).
    rules:
        :class:`Rule` objects, checked in order before the random draw.
    retry_after:
        Seconds sent in ``Retry-After`` with injected 429s.
    stall_seconds:
        How long a ``"stall"`` keeps the client waiting (set it past the client's timeout).
    rewrite:
        ``{old: new}`` text replaced in every response body (e.g. the COG server's URL by the
        COG proxy's URL in STAC items); ``Accept-Encoding`` is then dropped upstream.
    upstream_timeout:
        Socket timeout towards the upstream.
    max_lifetime:
        Watchdog: the proxy stops itself after this many seconds.
    name:
        Shown in ``repr`` and thread names.
    record_headers:
        Keep each request's headers in its :class:`Record` (to check what a client sent).
    """

    def __init__(self, upstream: str, *, rate: float = 0.0,
                 kinds: Sequence[str] = DEFAULT_MIX, seed: int = 0,
                 rules: Iterable[Rule] = (), retry_after: float = 1.0,
                 stall_seconds: float = 5.0, rewrite: Mapping[str, str] | None = None,
                 upstream_timeout: float = 60.0, max_lifetime: float = 1800.0,
                 name: str = "faultproxy", record_headers: bool = False) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or parsed.hostname not in (LOOPBACK, "localhost"):
            raise ValueError(f"upstream must be http://127.0.0.1:<port>[/prefix], got {upstream}")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.upstream = upstream.rstrip("/")
        self._host = LOOPBACK
        self._port = parsed.port or 80
        self._base_path = parsed.path.rstrip("/")
        self.kinds = tuple(kinds)
        self.rules: list[Rule] = list(rules)
        self.rate = float(rate)
        self.retry_after = retry_after
        self.stall_seconds = stall_seconds
        self.rewrite = dict(rewrite or {})
        self.upstream_timeout = upstream_timeout
        self.max_lifetime = max_lifetime
        self.name = name
        self.record_headers = record_headers
        self.stats = Stats()
        self.records: list[Record] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> Self:
        """Bind a free loopback port and serve on a daemon thread."""
        if self._server is not None:
            return self
        self._stopped.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"{self.name}-serve", daemon=True)
        self._thread.start()
        self._watchdog = threading.Timer(self.max_lifetime, self.stop)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def stop(self) -> None:
        """Release stalls, close client connections and the listening socket (idempotent)."""
        self._stopped.set()
        server, self._server = self._server, None
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.cancel()
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        """Whether the proxy is serving."""
        return self._server is not None and not self._stopped.is_set()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the proxy (``http://127.0.0.1:<port>``, no trailing slash)."""
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return (f"<FaultProxy {self.name} {where} -> {self.upstream} rate={self.rate} "
                f"requests={self.stats.requests} faults={dict(self.stats.faults)}>")

    # -- configuration -------------------------------------------------------------------
    def configure(self, *, rate: float | None = None, rules: Iterable[Rule] | None = None,
                  kinds: Sequence[str] | None = None, seed: int | None = None) -> None:
        """Change the fault plan while running (``None`` keeps a setting)."""
        with self._lock:
            if rate is not None:
                self.rate = float(rate)
            if rules is not None:
                self.rules = list(rules)
            if kinds is not None:
                self.kinds = tuple(kinds)
            if seed is not None:
                self._random = random.Random(seed)

    def reset_counts(self) -> None:
        """Zero the counters and forget the records."""
        with self._lock:
            self.stats = Stats()
            self.records = []

    def faulted(self, kind: str | None = None) -> list[Record]:
        """Records of requests that got a fault (of ``kind``, when given)."""
        with self._lock:
            return [r for r in self.records
                    if r.fault is not None and (kind is None or r.fault == kind)]

    # -- used by the handler -------------------------------------------------------------
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _decide(self, method: str, target: str, body: bytes,
                headers: Mapping[str, str] | None = None) -> tuple[int, str | None]:
        with self._lock:
            self.stats.requests += 1
            number = self.stats.requests
            fault: str | None = None
            for rule in self.rules:
                if not rule.matches(method, target, body, headers):
                    continue
                rule.seen += 1
                if rule.times is not None and rule.injected >= rule.times:
                    continue
                if rule.nth is None or rule.seen in rule.nth:
                    rule.injected += 1
                    fault = rule.fault
                    break
            if fault is None and self.rate > 0 and self._random.random() < self.rate:
                fault = self._random.choice(self.kinds)
            if fault is not None:
                self.stats.faults[fault] += 1
            return number, fault

    def _replace_fault(self, old: str, new: str) -> str:
        with self._lock:
            self.stats.faults[old] -= 1
            if not self.stats.faults[old]:
                del self.stats.faults[old]
            self.stats.faults[new] += 1
        return new

    def _corrupt(self, data: bytes, text: bool) -> bytes:
        with self._lock:
            span = min(16, max(1, len(data) // 4))
            start = len(data) // 2 - span // 2 + self._random.randrange(-span, span + 1)
            start = min(max(start, 0), len(data) - span)
            masks = [self._random.randrange(1, 256) for _ in range(span)]
        out = bytearray(data)
        for i, mask in enumerate(masks):
            out[start + i] ^= mask
        if text:
            # 0xFE/0xFF are never valid UTF-8: a garbled JSON body cannot parse (and the
            # byte must still differ from the original one)
            out[start] = 0xFE if data[start] == 0xFF else 0xFF
        return bytes(out)

    def _record(self, number: int, method: str, target: str, rng: str | None,
                fault: str | None, status: int | None,
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        with self._lock:
            if len(self.records) < 200_000:
                self.records.append(Record(number, method, target, rng, fault, status,
                                           headers))


@contextlib.contextmanager
def replica_proxies(replica: Any, *, rate: float = 0.0, seed: int = 0, stall: float = 3.0,
                    retry_after: float = 0.2, cog_rewrite_to: str | None = None,
                    record_headers: bool = False) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    """A STAC API proxy and a COG proxy in front of a :class:`s2intake.replica.Replica`.

    The STAC proxy rewrites the COG server's URL in every answer, to the COG proxy's URL
    (or to ``cog_rewrite_to``), so the items it serves point at the COG proxy. Both stop when
    the context exits. Yields ``(stac_proxy, cog_proxy)``.
    """
    cog = FaultProxy(replica.cog_url, rate=rate, seed=seed, stall_seconds=stall,
                     retry_after=retry_after, name="cog", record_headers=record_headers)
    stac = None
    try:
        cog.start()
        stac = FaultProxy(replica.stac_url, rate=rate, seed=seed + 1, stall_seconds=stall,
                          retry_after=retry_after, name="stac", record_headers=record_headers,
                          rewrite={replica.cog_url: cog_rewrite_to or cog.url}).start()
        yield stac, cog
    finally:
        if stac is not None:
            stac.stop()
        cog.stop()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
