"""A local, offline replica of Earth Search: pgstac + stac-fastapi + nginx serving COGs.

Earth Search is a STAC API in front of Cloud-Optimized GeoTIFFs on S3. This module starts the
closest real thing on the loopback interface, so tests and benchmarks talk HTTP to real
servers instead of mocks:

* :class:`CogServer` -- nginx in the foreground over a data folder, answering HTTP ``Range``
  requests with ``206`` and logging every request (line, status, bytes, ``Range`` header), so
  the I/O of one read can be counted exactly (:meth:`CogServer.mark` /
  :meth:`CogServer.entries_since`).
* :class:`PgStac` -- a throw-away PostgreSQL 15 cluster (``initdb`` + ``postgres``) with the
  pgstac schema migrated by pypgstac, typed queryables and the ``context`` setting on.
* :class:`StacApi` -- ``stac_fastapi.pgstac`` under uvicorn, pointed at a :class:`PgStac`.
* :class:`Replica` -- the three together; ``Replica(data_root, workdir)`` starts everything,
  :meth:`Replica.load` loads collections and items, :meth:`Replica.close` stops everything.

Every service binds to ``127.0.0.1`` on a free port, writes its logs under a work folder, is
stopped by :func:`atexit` if the caller forgets, and (when started from the main thread) dies
with the Python process that started it even if that process is killed. Missing system
packages raise :class:`ServiceNotInstalledError` naming the Debian package to install; a
service that does not come up raises :class:`ServiceStartError` with the tail of its log.

Examples
--------
>>> with Replica(Path("~/.cache/s2intake/sample").expanduser(), Path("/tmp/r")) as rep:  # doctest: +SKIP
...     rep.load([collection], items)
...     client = pystac_client.Client.open(rep.stac_url)
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import ctypes
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from s2intake.errors import S2IntakeError

__all__ = [
    "DEFAULT_QUERYABLES",
    "CogServer",
    "LogEntry",
    "PgStac",
    "Replica",
    "ReplicaError",
    "ServiceNotInstalledError",
    "ServiceStartError",
    "StacApi",
    "free_port",
    "pids_alive",
]

LOOPBACK = "127.0.0.1"

#: Typed queryables registered by default. pgstac compares any property it does not know as
#: TEXT ("69.73" <= "100" is false), so every numeric or boolean property that searches use
#: must be declared here. JSON Schema fragments, keyed by property name.
DEFAULT_QUERYABLES: dict[str, dict[str, Any]] = {
    # numbers
    "eo:cloud_cover": {"type": "number", "minimum": 0, "maximum": 100},
    "s2:nodata_pixel_percentage": {"type": "number", "minimum": 0, "maximum": 100},
    "sentinel:data_coverage": {"type": "number", "minimum": 0, "maximum": 100},
    # integers
    "sentinel:utm_zone": {"type": "integer"},
    "mgrs:utm_zone": {"type": "integer"},
    # booleans
    "sentinel:valid_cloud_cover": {"type": "boolean"},
    "sentinel:boa_offset_applied": {"type": "boolean"},
    "earthsearch:boa_offset_applied": {"type": "boolean"},
    # strings
    "platform": {"type": "string"},
    "constellation": {"type": "string"},
    "sentinel:grid_square": {"type": "string"},
    "sentinel:latitude_band": {"type": "string"},
    "sentinel:product_id": {"type": "string"},
    "sentinel:processing_baseline": {"type": "string"},
    "mgrs:grid_square": {"type": "string"},
    "mgrs:latitude_band": {"type": "string"},
    "grid:code": {"type": "string"},
    "s2:processing_baseline": {"type": "string"},
}

_READY_PATH = "/__s2intake_ready"  # nginx readiness probe, left out of the access log
_PDEATHSIG_OPTION = 1  # PR_SET_PDEATHSIG from <linux/prctl.h>
_TAIL_LINES = 40


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
class ReplicaError(S2IntakeError):
    """Base class for everything the local replica raises on purpose."""


class ServiceNotInstalledError(ReplicaError, FileNotFoundError):
    """A program, extension or Python package the replica needs is not installed.

    The message names the package to install (``apt-get install ...`` or ``pip install ...``).
    """


class ServiceStartError(ReplicaError, RuntimeError):
    """A service (nginx, PostgreSQL, the STAC API) did not start or a load step failed.

    The message carries the tail of the relevant log file.
    """


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    """Return a TCP port that is free on the loopback interface right now.

    Returns
    -------
    int
        A port number the caller can bind on ``127.0.0.1``. Another process could take it
        before the caller binds, so services in this module retry with a new port when
        binding fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file, or a note when it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc.strerror}>"
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept) if kept else f"<{path} is empty>"


def _port_open(port: int, timeout: float = 0.2) -> bool:
    """Return whether something accepts TCP connections on ``127.0.0.1:port``."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http_status(port: int, path: str = "/", timeout: float = 2.0) -> int | None:
    """GET ``path`` from ``127.0.0.1:port`` directly (never through a proxy).

    Returns the status code, or ``None`` when no HTTP answer came.
    """
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _pid_alive(pid: int) -> bool:
    """Return whether a process with this id exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # state is the first field after the parenthesised command name
    return stat.rpartition(")")[2].split()[0] != "Z"


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` asking Linux to send ``sig`` to the child when we die.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, so it is only
    used from the main thread; elsewhere the child relies on :func:`atexit` and explicit stops.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def _preexec() -> None:
        prctl(_PDEATHSIG_OPTION, int(sig), 0, 0, 0)

    return _preexec


def _stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send ``sig`` to ``proc``, wait up to ``timeout`` s, then SIGKILL and reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def _quote_conf(value: str | Path) -> str:
    """Quote a path for an nginx configuration file."""
    text = str(value)
    if any(ch in text for ch in '"\\\n;{}$'):
        raise ReplicaError(f"path not usable in an nginx config: {text!r}")
    return f'"{text}"'


class _Service:
    """Shared life cycle of a subprocess-backed service: atexit hook, context manager."""

    name = "service"

    def __init__(self, workdir: Path | str | None, port: int | None,
                 startup_timeout: float) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False
        # a given workdir is kept after stop(); a temporary one is made at start
        self._given_workdir = Path(workdir).expanduser().resolve() if workdir else None
        self.workdir: Path | None = self._given_workdir
        self._fixed_port = port
        self.port: int | None = port
        self.startup_timeout = startup_timeout

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Self:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _start_on_free_port(self, start_once: Callable[[], None],
                            cleanup: Callable[[], None]) -> None:
        """Run ``start_once`` on ``self.port``; on a port clash retry on another free port.

        ``start_once`` launches the process and waits until it serves (raising
        :class:`ServiceStartError`); ``cleanup`` stops a failed attempt. A fixed port gets
        one attempt, a free port three (another process may grab it in between).
        """
        fixed = self._fixed_port
        attempts = 1 if fixed else 3
        for attempt in range(attempts):
            self.port = fixed or free_port()
            try:
                start_once()
                return
            except ServiceStartError as exc:
                cleanup()
                if attempt + 1 < attempts and "already in use" in str(exc).lower():
                    continue
                raise

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True

    def _unregister_atexit(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    @property
    def pid(self) -> int | None:
        """Process id of the main process, or ``None`` when not started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the main process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogEntry:
    """One line of the :class:`CogServer` access log.

    Attributes
    ----------
    method : str
        HTTP method (``GET``, ``HEAD``...); ``"-"`` when the client sent no request line.
    path : str
        Request target as sent, e.g. ``/sentinel-s2-l2a-cogs/10/S/FJ/.../B04.tif``.
    status : int
        Response status (``206`` for a served ``Range``).
    bytes : int
        Body bytes sent (``$body_bytes_sent``; headers not counted).
    range : str or None
        The request's ``Range`` header (``"bytes=0-16383"``), ``None`` when absent.
    """

    method: str
    path: str
    status: int
    bytes: int
    range: str | None

    @property
    def is_range(self) -> bool:
        """Whether the request asked for a byte range."""
        return self.range is not None


_LOG_RE = re.compile(r'^(?P<request>.*) (?P<status>\d{3}) (?P<bytes>\d+) "(?P<range>.*)"$')


def _parse_log_line(line: str) -> LogEntry | None:
    match = _LOG_RE.match(line.rstrip("\n"))
    if match is None:
        return None
    parts = match["request"].split(" ")
    method = parts[0] if parts else "-"
    path = parts[1] if len(parts) > 1 else ""
    rng = match["range"]
    return LogEntry(
        method=method,
        path=path,
        status=int(match["status"]),
        bytes=int(match["bytes"]),
        range=None if rng in ("", "-") else rng,
    )


def _find_nginx() -> str:
    """Path of the nginx binary: ``$S2INTAKE_NGINX`` if set, else PATH or /usr/sbin."""
    if env := os.environ.get("S2INTAKE_NGINX"):
        candidates: tuple[str | None, ...] = (env,)
        where = f"S2INTAKE_NGINX={env}"
    else:
        candidates = (shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx")
        where = "PATH, /usr/sbin and /usr/local/sbin"
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceNotInstalledError(
        f"nginx not found (looked in {where}): install it with "
        "`apt-get install nginx` (the Debian package `nginx`, or `nginx-light`)"
    )


class CogServer(_Service):
    """nginx serving a folder of COGs on ``127.0.0.1`` with HTTP Range support.

    nginx runs in the foreground (``daemon off``) as a subprocess with its own generated
    configuration; the access log records every request with the format
    ``'$request $status $body_bytes_sent "$http_range"'`` so reads can be counted.

    Parameters
    ----------
    root : Path
        Folder served as the document root: ``GET /a/b.tif`` reads ``root/a/b.tif``.
    workdir : Path, optional
        Folder for ``nginx.conf``, the pid file and the logs. Default: a new temporary folder,
        removed by :meth:`stop`; a given folder is kept (logs stay readable after stop).
    port : int, optional
        Port to listen on; default a free one (re-chosen if taken while starting).
    startup_timeout : float
        Seconds to wait for nginx to answer HTTP.
    max_ranges : int, optional
        nginx's ``max_ranges``: with 1, a multi-range request gets the whole file (200), as
        from AWS S3; default unlimited (``multipart/byteranges`` replies).

    Examples
    --------
    >>> with CogServer(Path("/data")) as cogs:  # doctest: +SKIP
    ...     m = cogs.mark()
    ...     rasterio.open(cogs.url + "/x.tif").read(1, window=Window(0, 0, 256, 256))
    ...     entries = cogs.entries_since(m)
    """

    name = "nginx"

    def __init__(
        self,
        root: Path | str,
        workdir: Path | str | None = None,
        port: int | None = None,
        *,
        startup_timeout: float = 15.0,
        max_ranges: int | None = None,
    ) -> None:
        super().__init__(workdir, port, startup_timeout)
        self.max_ranges = max_ranges
        self.root = Path(root).expanduser().resolve()

    # -- paths ------------------------------------------------------------------------------
    def _dir(self) -> Path:
        if self.workdir is None:
            raise ReplicaError("CogServer has not been started")
        return self.workdir

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        if self.port is None:
            raise ReplicaError("CogServer has not been started")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def access_log_path(self) -> Path:
        """The access log file (one :class:`LogEntry` per line)."""
        return self._dir() / "access.log"

    @property
    def error_log_path(self) -> Path:
        """nginx's error log."""
        return self._dir() / "error.log"

    @property
    def config_path(self) -> Path:
        """The generated ``nginx.conf``."""
        return self._dir() / "nginx.conf"

    def _config(self, port: int) -> str:
        d = self._dir()
        tmp = d / "tmp"
        user = "user root root;\n" if os.geteuid() == 0 else ""
        return (
            "# generated by s2intake.replica.CogServer\n"
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes 1;\n"
            f"{user}"
            f"pid {_quote_conf(d / 'nginx.pid')};\n"
            f"error_log {_quote_conf(self.error_log_path)} warn;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            "    types {\n"
            "        image/tiff tif tiff;\n"
            "        application/json json;\n"
            "        application/xml xml;\n"
            "        image/png png;\n"
            "        image/jpeg jpg jpeg;\n"
            "        text/html html;\n"
            "    }\n"
            "    default_type application/octet-stream;\n"
            "    log_format rng '$request $status $body_bytes_sent \"$http_range\"';\n"
            f"    access_log {_quote_conf(self.access_log_path)} rng;\n"
            f"    client_body_temp_path {_quote_conf(tmp / 'body')};\n"
            f"    proxy_temp_path {_quote_conf(tmp / 'proxy')};\n"
            f"    fastcgi_temp_path {_quote_conf(tmp / 'fastcgi')};\n"
            f"    uwsgi_temp_path {_quote_conf(tmp / 'uwsgi')};\n"
            f"    scgi_temp_path {_quote_conf(tmp / 'scgi')};\n"
            "    sendfile on;\n"
            "    tcp_nopush on;\n"
            "    keepalive_timeout 65;\n"
            "    keepalive_requests 10000;\n"
            "    server_tokens off;\n"
            "    server {\n"
            f"        listen {LOOPBACK}:{port};\n"
            f"        root {_quote_conf(self.root)};\n"
            + (f"        max_ranges {int(self.max_ranges)};\n" if self.max_ranges else "")
            +
            "        location / { try_files $uri =404; }\n"
            f"        location = {_READY_PATH} {{ access_log off; return 204; }}\n"
            "    }\n"
            "}\n"
        )

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Write the configuration and start nginx; return once it answers HTTP.

        Raises
        ------
        ServiceNotInstalledError
            nginx is not installed.
        ServiceStartError
            nginx exited or did not answer within ``startup_timeout`` (message has the log).
        """
        if self.running:
            return self
        nginx = _find_nginx()
        if not self.root.is_dir():
            raise ReplicaError(f"CogServer root is not a folder: {self.root}")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="s2intake-nginx-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        self.access_log_path.touch()

        def start_once() -> None:
            self.config_path.write_text(self._config(self.port))
            stderr_path = self._dir() / "nginx.stderr"
            with open(stderr_path, "ab") as err:
                self._proc = subprocess.Popen(
                    [nginx, "-p", str(self._dir()), "-c", str(self.config_path),
                     "-e", str(self.error_log_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    cwd=self._dir(),
                    preexec_fn=_die_with_parent(signal.SIGTERM),  # noqa: PLW1509
                )
            self._register_atexit()
            self.wait_ready(self.startup_timeout)

        self._start_on_free_port(start_once, self._kill)
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until nginx answers an HTTP request on its port.

        Raises
        ------
        ServiceStartError
            nginx exited, or no answer came within ``timeout`` seconds.
        """
        if self._proc is None or self.port is None:
            raise ReplicaError("CogServer has not been started")
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServiceStartError(
                    f"nginx failed to start (exit code {code}) on {LOOPBACK}:{self.port} "
                    f"with config {self.config_path}:\n{self._log_tail()}"
                )
            # the probe location is not logged, so the access log holds only real requests
            if _port_open(self.port) and _http_status(self.port, _READY_PATH) == 204:
                return
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"nginx failed to start: no HTTP answer on {LOOPBACK}:{self.port} "
                    f"within {limit} s:\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def _log_tail(self) -> str:
        parts = [f"--- {self.error_log_path}\n{_tail(self.error_log_path)}"]
        stderr_path = self._dir() / "nginx.stderr"
        if stderr_path.exists() and stderr_path.stat().st_size:
            parts.append(f"--- {stderr_path}\n{_tail(stderr_path)}")
        return "\n".join(parts)

    def _kill(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM, timeout=10)

    def stop(self) -> None:
        """Stop nginx (fast shutdown, then SIGKILL after 10 s); idempotent.

        A temporary work folder created by :meth:`start` is removed; a given one is kept.
        """
        self._kill()
        self._unregister_atexit()
        if self._given_workdir is None and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # -- access log -------------------------------------------------------------------------
    def mark(self) -> int:
        """Return a position in the access log; see :meth:`entries_since`."""
        self._settle()
        try:
            return self.access_log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _settle(self, quiet: float = 0.05, timeout: float = 2.0) -> None:
        """Wait until the access log has not grown for ``quiet`` seconds.

        nginx writes a log line after the response is sent, so a client can finish reading
        a moment before its request is logged.
        """
        path = self.access_log_path
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            size = path.stat().st_size if path.exists() else 0
            if size == last:
                return
            last = size
            time.sleep(quiet)

    def read_log(self) -> list[LogEntry]:
        """Parse the whole access log."""
        return self.entries_since(0)

    def entries_since(self, mark: int, *, settle: bool = True) -> list[LogEntry]:
        """Return the requests logged after ``mark`` (a value from :meth:`mark`).

        Parameters
        ----------
        mark : int
            Byte offset in the access log returned by :meth:`mark` (0: from the start).
        settle : bool
            First wait until the log stops growing for 50 ms (see ``_settle``).
        """
        if settle:
            self._settle()
        with open(self.access_log_path, "rb") as fh:
            fh.seek(mark)
            data = fh.read().decode("utf-8", errors="replace")
        entries = []
        for line in data.splitlines():
            entry = _parse_log_line(line)
            if entry is not None:
                entries.append(entry)
        return entries

    def gdal_options(self, *, cache: bool = False) -> dict[str, str]:
        """GDAL configuration options for counting this server's requests exactly.

        Parameters
        ----------
        cache : bool
            Keep GDAL's process-wide ``/vsicurl/`` cache for this server. With the default
            ``False``, ``CPL_VSIL_CURL_NON_CACHED`` names :attr:`url`, so a read made earlier
            in the same process does not hide the requests of a later one from the log.

        Returns
        -------
        dict of str to str
            Options for ``rasterio.Env(**options)`` or ``gdal.SetConfigOption``.
        """
        options = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
        if not cache:
            options["CPL_VSIL_CURL_NON_CACHED"] = f"/vsicurl/{self.url}"
        return options

    def pids(self) -> list[int]:
        """nginx master and worker process ids (workers from /proc, Linux only)."""
        if self._proc is None or not self.running:
            return []
        return [self._proc.pid, *_child_pids(self._proc.pid)]


def _child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` read from /proc (empty when /proc is unavailable)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --------------------------------------------------------------------------------------------
# PostgreSQL + pgstac
# --------------------------------------------------------------------------------------------
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([A-Za-z]+))?")


def _before_type_member(stac_version: str) -> bool:
    """Whether a STAC version predates the mandatory ``type`` member (1.0.0-rc.1)."""
    match = _VERSION_RE.match(stac_version or "")
    if match is None:
        return False
    major, minor, patch = (int(match[i]) for i in (1, 2, 3))
    if (major, minor, patch) != (1, 0, 0):
        return (major, minor, patch) < (1, 0, 0)
    return (match[4] or "").lower() in ("alpha", "beta")


def _fix_collection(collection: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``collection`` that both stac-fastapi-pgstac and pystac accept."""
    doc = dict(collection)
    doc.setdefault("type", "Collection")
    version = str(doc.get("stac_version", ""))
    if doc["type"] == "Collection" and _before_type_member(version):
        doc["s2intake:original_stac_version"] = version
        doc["stac_version"] = "1.0.0"
    return doc


def _find_pg_bindir() -> Path:
    """Folder of initdb/postgres: ``$S2INTAKE_PGBIN`` if set, else the newest Debian one."""
    candidates: list[Path] = []
    if env := os.environ.get("S2INTAKE_PGBIN"):
        candidates.append(Path(env))
        where = f"S2INTAKE_PGBIN={env}"
    else:
        versions = sorted(
            (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
            key=lambda p: int(p.parent.name),
            reverse=True,
        )
        candidates.extend(versions)
        if which := shutil.which("initdb"):
            candidates.append(Path(which).parent)
        where = "/usr/lib/postgresql/*/bin and PATH"
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise ServiceNotInstalledError(
        f"PostgreSQL server programs (initdb, postgres) not found in {where}: install them "
        "with `apt-get install postgresql` (Debian 12: PostgreSQL 15), or set S2INTAKE_PGBIN "
        "to the folder holding initdb"
    )


def _pg_sharedir(bindir: Path) -> Path:
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        out = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return Path("/usr/share/postgresql") / bindir.parent.name


def _pg_major(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return match.group(1) if match else bindir.parent.name


def _check_pg_extensions(bindir: Path) -> None:
    ext = _pg_sharedir(bindir) / "extension"
    major = _pg_major(bindir)
    if not (ext / "postgis.control").is_file():
        raise ServiceNotInstalledError(
            f"the PostGIS extension is not installed for PostgreSQL {major} "
            f"({ext / 'postgis.control'} missing): install it with "
            f"`apt-get install postgresql-{major}-postgis-3`"
        )
    if not (ext / "btree_gist.control").is_file():
        raise ServiceNotInstalledError(
            f"the btree_gist extension is missing ({ext / 'btree_gist.control'}): install "
            f"`apt-get install postgresql-{major}` (it ships the contrib extensions)"
        )


def _require_python(module: str, pip_name: str) -> None:
    if find_spec(module.split(".")[0]) is None or find_spec(module) is None:
        raise ServiceNotInstalledError(
            f"Python package {module!r} is not installed: `pip install \"{pip_name}\"` "
            "(or `pip install \"s2intake[replica]\"`)"
        )


_CLUSTER_PREFIX = "s2intake-pg-"
_STALE_AFTER_S = 3600.0


def _sweep_stale_clusters(base: Path) -> None:
    """Delete cluster folders left by killed sessions (older than an hour, server gone)."""
    now = time.time()
    for path in base.glob(_CLUSTER_PREFIX + "*"):
        try:
            if not path.is_dir() or now - path.stat().st_mtime < _STALE_AFTER_S:
                continue
            pidfile = path / "data" / "postmaster.pid"
            if pidfile.exists():
                first = pidfile.read_text().split("\n", 1)[0].strip()
                if first.isdigit() and _pid_alive(int(first)):
                    continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


class PgStac(_Service):
    """A throw-away PostgreSQL cluster with the pgstac schema, on ``127.0.0.1``.

    ``initdb`` refuses to run as root, so when running as root the cluster belongs to the
    ``postgres`` system user: its data folder is a new temporary folder chowned to that user
    (somewhere that user can reach, e.g. ``/tmp``), and ``initdb``/``postgres``/``pg_ctl`` run
    as it. Authentication is ``trust`` on loopback; durability is off (``fsync=off``) since
    the cluster is deleted by :meth:`stop`.

    Parameters
    ----------
    workdir : Path, optional
        Folder for the log files (``initdb.log``, ``postgres.log``). Default: a temporary
        folder. The data folder itself is always a separate temporary folder.
    port : int, optional
        Port; default a free one.
    user, password, database : str
        Role created by ``initdb`` (superuser), its (unchecked) password and the database.
    context : bool
        Turn on pgstac's ``context`` setting so searches return ``numberMatched``.
    startup_timeout : float
        Seconds to wait for the server to accept connections.
    """

    name = "postgres"

    def __init__(
        self,
        workdir: Path | str | None = None,
        port: int | None = None,
        *,
        user: str = "stac",
        password: str = "stac",
        database: str = "postgres",
        context: bool = True,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(workdir, port, startup_timeout)
        self.user = user
        self.password = password
        self.database = database
        self.context = context
        self.cluster_dir: Path | None = None
        self.bindir: Path | None = None
        self.pgstac_version: str | None = None
        self.context_enabled = False
        self._db: Any = None  # pypgstac.db.PgstacDB, imported lazily

    # -- properties -------------------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """libpq URL, e.g. ``postgresql://stac:stac@127.0.0.1:5433/postgres``."""
        if self.port is None:
            raise ReplicaError("PgStac has not been started")
        return (
            f"postgresql://{urllib.parse.quote(self.user)}:{urllib.parse.quote(self.password)}"
            f"@{LOOPBACK}:{self.port}/{urllib.parse.quote(self.database)}"
        )

    @property
    def env(self) -> dict[str, str]:
        """``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD``/``PGDATABASE`` for clients."""
        if self.port is None:
            raise ReplicaError("PgStac has not been started")
        return {
            "PGHOST": LOOPBACK,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }

    @property
    def log_path(self) -> Path:
        """The server log (``postgres`` stdout/stderr)."""
        if self.workdir is None:
            raise ReplicaError("PgStac has not been started")
        return self.workdir / "postgres.log"

    # -- running programs as the cluster owner ----------------------------------------------
    def _owner_kwargs(self) -> dict[str, Any]:
        """Popen arguments running a program as the cluster owner."""
        if os.geteuid() != 0:
            return {}
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServiceNotInstalledError(
                "running as root but there is no `postgres` system user to own the cluster "
                "(initdb refuses root): install `apt-get install postgresql` (it creates the "
                "user) or run as an unprivileged user"
            ) from exc
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _owner_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "POSTGRES")) and k not in ("LC_ALL", "LANG")
        }
        env["LANG"] = "C.UTF-8"
        env["LC_ALL"] = "C.UTF-8"
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
        return env

    def _make_cluster_dir(self) -> Path:
        """A new temporary folder the cluster owner can write (chowned when root)."""
        kwargs = self._owner_kwargs()
        bases = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")]
        tried = []
        for base in dict.fromkeys(bases):
            if not base.is_dir():
                continue
            _sweep_stale_clusters(base)
            path = Path(tempfile.mkdtemp(prefix=_CLUSTER_PREFIX, dir=base))
            if kwargs:
                os.chown(path, kwargs["user"], kwargs["group"])
                ok = subprocess.run(
                    ["test", "-w", str(path), "-a", "-x", str(path)],
                    cwd="/",
                    check=False,
                    **kwargs,
                ).returncode == 0
            else:
                ok = True
            # unix socket paths are limited to 107 bytes
            if ok and len(str(path)) < 80:
                return path
            tried.append(str(base))
            shutil.rmtree(path, ignore_errors=True)
        raise ServiceStartError(
            "PostgreSQL failed to start: no temporary folder the `postgres` user can write "
            f"(tried {', '.join(tried)}); set TMPDIR to one"
        )

    def _run_owner(self, args: Sequence[str], log: Path, what: str, timeout: float) -> None:
        with open(log, "ab") as out:
            try:
                result = subprocess.run(
                    list(args),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    cwd=self.cluster_dir,
                    env=self._owner_env(),
                    timeout=timeout,
                    check=False,
                    **self._owner_kwargs(),
                )
            except subprocess.TimeoutExpired as exc:
                raise ServiceStartError(
                    f"PostgreSQL failed to start: {what} took more than {timeout} s:\n"
                    f"{_tail(log)}"
                ) from exc
        if result.returncode != 0:
            raise ServiceStartError(
                f"PostgreSQL failed to start: {what} exited with {result.returncode}:\n"
                f"--- {log}\n{_tail(log)}"
            )

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> Self:
        """Create the cluster, start PostgreSQL, migrate pgstac, apply settings.

        Raises
        ------
        ServiceNotInstalledError
            PostgreSQL, PostGIS or pypgstac is missing (the message names the package).
        ServiceStartError
            initdb, the server or the migration failed (the message has the log tail).
        """
        if self.running:
            return self
        self.bindir = _find_pg_bindir()
        _check_pg_extensions(self.bindir)
        _require_python("pypgstac.db", "pypgstac[psycopg]")
        _require_python("psycopg", "pypgstac[psycopg]")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="s2intake-pglog-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cluster_dir = self._make_cluster_dir()
        self._register_atexit()
        data = self.cluster_dir / "data"
        self._run_owner(
            [
                str(self.bindir / "initdb"),
                "-D", str(data),
                "-U", self.user,
                "--auth=trust",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            self.workdir / "initdb.log",
            "initdb",
            timeout=120,
        )
        self._start_on_free_port(lambda: self._start_server(data), self._kill)
        self._migrate()
        return self

    def _start_server(self, data: Path) -> None:
        assert self.bindir is not None and self.cluster_dir is not None
        args = [
            str(self.bindir / "postgres"),
            "-D", str(data),
            "-p", str(self.port),
            "-k", str(self.cluster_dir),
            "-c", f"listen_addresses={LOOPBACK}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "jit=off",
            "-c", "max_connections=100",
            "-c", "log_min_messages=warning",
            "-c", "log_line_prefix=%m [%p] ",
        ]
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.cluster_dir,
                env=self._owner_env(),
                # SIGINT is PostgreSQL's "fast" shutdown
                preexec_fn=_die_with_parent(signal.SIGINT),  # noqa: PLW1509
                **self._owner_kwargs(),
            )
        self._wait_accepting()

    def _wait_accepting(self) -> None:
        import psycopg

        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error = ""
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServiceStartError(
                    f"PostgreSQL failed to start (postgres exited with {code}) on "
                    f"{LOOPBACK}:{self.port}:\n--- {self.log_path}\n{_tail(self.log_path)}"
                )
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last_error = str(exc).strip()
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"PostgreSQL failed to start: no connection to {LOOPBACK}:{self.port} "
                    f"within {self.startup_timeout} s ({last_error}):\n"
                    f"--- {self.log_path}\n{_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _migrate(self) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        self._db = PgstacDB(dsn=self.dsn)
        try:
            self.pgstac_version = Migrate(self._db).run_migration()
        except Exception as exc:
            raise ServiceStartError(
                f"pgstac migration failed on {self.dsn}: {exc}\n"
                f"--- {self.log_path}\n{_tail(self.log_path)}"
            ) from exc
        if self.context:
            self.set_setting("context", "on")
            # recount on every search: the replica is reloaded while tests run
            self.set_setting("context_stats_ttl", "0 seconds")
            self.context_enabled = True

    def _kill(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        if self.bindir is not None and self.cluster_dir is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.cluster_dir / "data"),
                     "-m", "fast", "-w", "-t", "20"],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    cwd=self.cluster_dir,
                    env=self._owner_env(),
                    timeout=30,
                    check=False,
                    **self._owner_kwargs(),
                )
        # pg_ctl normally did it; otherwise SIGINT (fast), then SIGKILL
        _stop_process(self._proc, signal.SIGINT, timeout=15)

    def stop(self) -> None:
        """Stop PostgreSQL (``pg_ctl stop -m fast``) and delete the cluster; idempotent."""
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.disconnect()
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
        self._kill()
        self._unregister_atexit()
        if self.cluster_dir is not None:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self.cluster_dir = None

    # -- database helpers -------------------------------------------------------------------
    def _pgstac_db(self) -> Any:
        if self._db is None:
            raise ReplicaError("PgStac has not been started")
        return self._db

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one SQL statement (search_path ``pgstac,public``) and return its rows."""
        conn = self._pgstac_db().connect()
        with conn.cursor() as cur:
            cur.execute(sql, params)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description else []

    def set_setting(self, name: str, value: str) -> None:
        """Set a row of ``pgstac.pgstac_settings`` (e.g. ``context`` = ``on``)."""
        self.query(
            "INSERT INTO pgstac.pgstac_settings (name, value) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            [name, value],
        )

    def load_collection(self, collection: Mapping[str, Any]) -> None:
        """Upsert one collection; see :meth:`load_collections`."""
        self.load_collections([collection])

    def load_collections(self, collections: Iterable[Mapping[str, Any]]) -> None:
        """Upsert collections, adding ``"type": "Collection"`` where it is missing.

        The real Earth Search v0 collection (STAC 1.0.0-beta.2) has no ``type``, and
        stac-fastapi-pgstac answers 404 for a collection without one. But pystac only
        accepts a ``type`` member on objects of STAC 1.0.0-rc.1 or later (an older object
        with ``"type": "Collection"`` is "not STAC" and ``Client.get_collection`` fails), so
        the ``stac_version`` of such a collection is raised to ``1.0.0`` as well, and the
        original is kept in ``"s2intake:original_stac_version"``. The input is not modified.
        """
        from pypgstac.load import Loader, Methods

        docs = [_fix_collection(coll) for coll in collections]
        try:
            Loader(self._pgstac_db()).load_collections(iter(docs), Methods.upsert)
        except Exception as exc:
            ids = [d.get("id") for d in docs]
            raise ReplicaError(f"loading collections {ids} into pgstac failed: {exc}") from exc

    def load_items(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Upsert items (their collections must be loaded first); return how many."""
        from pypgstac.load import Loader, Methods

        docs = [copy.deepcopy(dict(item)) for item in items]
        if not docs:
            return 0
        try:
            Loader(self._pgstac_db()).load_items(iter(docs), Methods.upsert)
        except Exception as exc:
            raise ReplicaError(
                f"loading {len(docs)} items into pgstac failed (first id "
                f"{docs[0].get('id')!r}, collection {docs[0].get('collection')!r}): {exc}"
            ) from exc
        return len(docs)

    def load_queryables(
        self,
        properties: Mapping[str, Mapping[str, Any] | str] | None = None,
        collection_ids: Sequence[str] | None = None,
    ) -> int:
        """Register typed queryables so ``query``/``filter`` compare with the right type.

        Parameters
        ----------
        properties : mapping, optional
            Property name to a JSON Schema fragment (``{"type": "number"}``) or just a type
            name (``"number"``, ``"integer"``, ``"boolean"``, ``"string"``). Default
            :data:`DEFAULT_QUERYABLES`.
        collection_ids : sequence of str, optional
            Restrict to these collections; default all collections.

        Returns
        -------
        int
            Number of queryables registered or updated.
        """
        props = DEFAULT_QUERYABLES if properties is None else properties
        schema = {
            "type": "object",
            "properties": {
                name: ({"type": spec} if isinstance(spec, str) else dict(spec))
                for name, spec in props.items()
            },
        }
        try:
            rows = self.query(
                "SELECT upsert_queryables(%s::jsonb, %s::text[], NULL::text[], false)",
                [json.dumps(schema), list(collection_ids) if collection_ids else None],
            )
        except Exception as exc:
            hint = ""
            if "upsert_queryables" in str(exc) and "does not exist" in str(exc):
                hint = f" (pgstac {self.pgstac_version} has no upsert_queryables(): use pypgstac>=0.10)"
            raise ReplicaError(f"registering queryables failed{hint}: {exc}") from exc
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0


# --------------------------------------------------------------------------------------------
# stac-fastapi-pgstac
# --------------------------------------------------------------------------------------------
class StacApi(_Service):
    """``stac_fastapi.pgstac`` under uvicorn on ``127.0.0.1``, as a subprocess.

    Parameters
    ----------
    db : PgStac or str
        The database: a started :class:`PgStac`, or a ``postgresql://`` URL.
    workdir : Path, optional
        Folder for ``stac-api.log`` (uvicorn's stdout/stderr) and the process' working
        directory (pydantic-settings reads a ``.env`` there). Default: a temporary folder.
    port : int, optional
        Port; default a free one.
    startup_timeout : float
        Seconds to wait for ``GET /`` to answer 200.
    extra_env : mapping, optional
        More environment for the app (e.g. ``ENABLED_EXTENSIONS``).
    """

    name = "stac-fastapi"

    def __init__(
        self,
        db: PgStac | str,
        workdir: Path | str | None = None,
        port: int | None = None,
        *,
        startup_timeout: float = 60.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, port, startup_timeout)
        self.db = db
        self.extra_env = dict(extra_env or {})

    @property
    def url(self) -> str:
        """Landing page URL, e.g. ``http://127.0.0.1:40125`` (no trailing slash)."""
        if self.port is None:
            raise ReplicaError("StacApi has not been started")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        """uvicorn's output."""
        if self.workdir is None:
            raise ReplicaError("StacApi has not been started")
        return self.workdir / "stac-api.log"

    def _db_env(self) -> dict[str, str]:
        if isinstance(self.db, PgStac):
            return self.db.env
        url = urllib.parse.urlsplit(self.db)
        return {
            "PGHOST": url.hostname or LOOPBACK,
            "PGPORT": str(url.port or 5432),
            "PGUSER": urllib.parse.unquote(url.username or "postgres"),
            "PGPASSWORD": urllib.parse.unquote(url.password or "x"),
            "PGDATABASE": urllib.parse.unquote(url.path.lstrip("/") or "postgres"),
        }

    def start(self) -> Self:
        """Start uvicorn and return once ``GET /`` answers 200.

        Raises
        ------
        ServiceNotInstalledError
            stac-fastapi-pgstac or uvicorn is not installed.
        ServiceStartError
            The app exited or did not answer in time (the message has its log tail).
        """
        if self.running:
            return self
        _require_python("uvicorn", "stac-fastapi-pgstac[server]")
        _require_python("stac_fastapi.pgstac.app", "stac-fastapi-pgstac[server]")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="s2intake-stacapi-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "POSTGRES"))
        }
        env.update(self._db_env())
        env.setdefault("STAC_FASTAPI_TITLE", "s2intake local Earth Search replica")
        env.setdefault("STAC_FASTAPI_DESCRIPTION", "pgstac + stac-fastapi on 127.0.0.1")
        env.setdefault("STAC_FASTAPI_LANDING_ID", "s2intake-replica")
        env.setdefault("STAC_FASTAPI_VERSION", "local")
        env.setdefault("DB_MIN_CONN_SIZE", "1")
        env.setdefault("DB_MAX_CONN_SIZE", "4")
        env.update(self.extra_env)

        def start_once() -> None:
            with open(self.log_path, "ab") as out:
                self._proc = subprocess.Popen(
                    [
                        sys.executable, "-m", "uvicorn",
                        "stac_fastapi.pgstac.app:create_app", "--factory",
                        "--host", LOOPBACK, "--port", str(self.port),
                        "--workers", "1", "--log-level", "info",
                        "--timeout-graceful-shutdown", "5",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    cwd=self.workdir,
                    env=env,
                    preexec_fn=_die_with_parent(signal.SIGTERM),  # noqa: PLW1509
                )
            self._register_atexit()
            self.wait_ready()

        self._start_on_free_port(
            start_once, lambda: _stop_process(self._proc, signal.SIGTERM, timeout=10))
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until ``GET /`` answers 200.

        Raises
        ------
        ServiceStartError
            The process exited or did not answer within ``timeout`` seconds.
        """
        if self._proc is None or self.port is None:
            raise ReplicaError("StacApi has not been started")
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        status: int | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServiceStartError(
                    f"STAC API (stac-fastapi-pgstac) failed to start (exit code {code}) on "
                    f"{LOOPBACK}:{self.port}:\n--- {self.log_path}\n{_tail(self.log_path)}"
                )
            if _port_open(self.port):
                status = _http_status(self.port, "/", timeout=5)
                if status == 200:
                    return
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"STAC API (stac-fastapi-pgstac) failed to start: GET / on "
                    f"{LOOPBACK}:{self.port} gave {status} after {limit} s:\n"
                    f"--- {self.log_path}\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop uvicorn (SIGTERM, SIGKILL after 10 s); idempotent."""
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM, timeout=10)
        self._unregister_atexit()


# --------------------------------------------------------------------------------------------
# the whole replica
# --------------------------------------------------------------------------------------------
def _as_dict(obj: Mapping[str, Any] | Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise TypeError(f"expected a STAC dict or pystac object, got {type(obj).__name__}")


class Replica:
    """A local Earth Search: nginx over ``data_root`` + PostgreSQL/pgstac + stac-fastapi.

    The constructor starts everything (nginx, then PostgreSQL + migration + typed queryables,
    then the API) and records how long it took in :attr:`startup_seconds` and
    :attr:`timings`. If any step fails, what was started is stopped again and the error
    (a :class:`ReplicaError`) is raised.

    Parameters
    ----------
    data_root : Path
        Served by nginx at :attr:`cog_url`: ``data_root/a/b.tif`` is ``{cog_url}/a/b.tif``.
    workdir : Path
        Logs and configs of all three services (``nginx/``, ``postgres/``, ``stac-api/``).
        The PostgreSQL data folder itself lives in a temporary folder the ``postgres`` user
        can reach, deleted by :meth:`close`.
    queryables : mapping, optional
        Typed queryables to register (default :data:`DEFAULT_QUERYABLES`).
    context : bool
        Turn on pgstac's ``context`` so searches report ``numberMatched``.
    startup_timeout : float
        Per-service startup timeout in seconds.

    Examples
    --------
    >>> rep = Replica(sample_root, tmp_path)  # doctest: +SKIP
    >>> rep.load([collection], items)  # doctest: +SKIP
    >>> pystac_client.Client.open(rep.stac_url).search(collections=["sentinel-2-l2a"])
    ... # doctest: +SKIP
    >>> rep.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        data_root: Path | str,
        workdir: Path | str,
        *,
        queryables: Mapping[str, Mapping[str, Any] | str] | None = None,
        context: bool = True,
        startup_timeout: float = 60.0,
    ) -> None:
        self.data_root = Path(data_root).expanduser().resolve()
        self.workdir = Path(workdir).expanduser().resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self._closed = False
        self.cog_server = CogServer(
            self.data_root, self.workdir / "nginx", startup_timeout=startup_timeout
        )
        self.pgstac = PgStac(
            self.workdir / "postgres", context=context, startup_timeout=startup_timeout
        )
        self.api = StacApi(self.pgstac, self.workdir / "stac-api", startup_timeout=startup_timeout)
        atexit.register(self.close)
        t0 = time.perf_counter()
        try:
            self._timed("nginx", self.cog_server.start)
            self._timed("postgres+pgstac", self.pgstac.start)
            self._timed("queryables", lambda: self.pgstac.load_queryables(queryables))
            self._timed("stac-api", self.api.start)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.perf_counter() - t0

    def _timed(self, label: str, step: Callable[[], object]) -> None:
        t = time.perf_counter()
        step()
        self.timings[label] = time.perf_counter() - t

    # -- URLs -------------------------------------------------------------------------------
    @property
    def stac_url(self) -> str:
        """The STAC API landing page (give it to ``pystac_client.Client.open``)."""
        return self.api.url

    @property
    def cog_url(self) -> str:
        """Base URL of the COG server (``data_root`` is its document root)."""
        return self.cog_server.url

    @property
    def dsn(self) -> str:
        """The pgstac database URL."""
        return self.pgstac.dsn

    # -- data -------------------------------------------------------------------------------
    def load(
        self,
        collections: Iterable[Mapping[str, Any] | Any],
        items: Iterable[Mapping[str, Any] | Any],
    ) -> int:
        """Upsert collections, then items (dicts or pystac objects); return the item count.

        Collections without ``"type"`` (Earth Search v0) get ``"type": "Collection"``.
        """
        self.pgstac.load_collections([_as_dict(c) for c in collections])
        return self.pgstac.load_items(_as_dict(i) for i in items)

    # -- processes --------------------------------------------------------------------------
    def pids(self) -> dict[str, list[int]]:
        """Process ids of every service (nginx master+workers, postmaster+children, uvicorn)."""
        out: dict[str, list[int]] = {}
        out["nginx"] = self.cog_server.pids()
        pg = self.pgstac.pid
        out["postgres"] = [pg, *_child_pids(pg)] if pg and self.pgstac.running else []
        api = self.api.pid
        out["stac-api"] = [api, *_child_pids(api)] if api and self.api.running else []
        return out

    @property
    def running(self) -> bool:
        """Whether all three services are running."""
        return self.cog_server.running and self.pgstac.running and self.api.running

    def close(self) -> None:
        """Stop the API, PostgreSQL and nginx; idempotent, also run at interpreter exit."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for service in (self.api, self.pgstac, self.cog_server):
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{service.name}: {exc}")
        atexit.unregister(self.close)
        if errors:
            raise ReplicaError("stopping the replica failed: " + "; ".join(errors))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self.running else "partly running"
        urls = "" if self._closed else f" stac={self.stac_url} cogs={self.cog_url}"
        return f"<Replica {state}{urls} data_root={self.data_root}>"


def pids_alive(pids: Iterable[int]) -> list[int]:
    """Return the ids among ``pids`` that still belong to a live (non-zombie) process."""
    return [pid for pid in pids if _pid_alive(pid)]

