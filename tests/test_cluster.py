"""s2intake on a real ``distributed`` cluster whose workers are other processes.

A ``dask scheduler`` and two ``dask worker`` processes (one thread each, no nanny, so a
worker is exactly one process) run on the loopback interface for this module, against the
local Earth Search replica. The Berry Creek pipeline (search -> stack -> clip -> GIF) must
give the same GIF bytes there as with the threaded scheduler, with every pixel read on the
workers and the GDAL settings given to :func:`s2intake.stack` applied in the workers' HTTP
requests; the graph must pickle without open files or locks; a worker killed in the middle of
a GIF must not change the result. Every process started here is killed at teardown.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import dask
import numpy as np
import psutil
import pytest
import rasterio
import rasterio._base
import rasterio.io
import rasterio.vrt
from distributed import Client, get_task_stream
from PIL import Image

import s2intake
from s2intake.cluster import SCHEDULER_ENV, active_client, check_workers, compute_context
from s2intake.errors import ReadError, S2IntakeError
from s2intake.replica import CogServer

REPO = Path(__file__).resolve().parents[1]
AOI_PATH = REPO / "catalogs" / "berry_creek.geojson"
DATES = "2020-01-01/2021-06-30"
CLI_DATES = "2020-08-01/2020-10-31"  # around the fire: a few frames
MAX_CLOUD = 10
#: The checkout whose s2intake this test process imported: the workers must run the same.
PACKAGE_ROOT = Path(s2intake.__file__).resolve().parents[1]
START_TIMEOUT = 60.0
#: Keys of the chunk-read tasks (and of the tasks taking their pixels) in stack graphs.
READ_KEY = re.compile(r"\bs2(raw|read)-")

pytestmark = pytest.mark.timeout(300)


# --------------------------------------------------------------------------------------------
# a scheduler and workers as subprocesses
# --------------------------------------------------------------------------------------------
def _die_with_us() -> None:
    """In the child before exec: get SIGKILL if the thread that started it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not Linux; teardown still kills
        pass


class LoopbackCluster:
    """``dask scheduler`` + ``dask worker`` subprocesses on 127.0.0.1.

    Parameters
    ----------
    workdir:
        Holds the scheduler file, the logs and the workers' local directories.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.scheduler_file = workdir / "scheduler.json"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.every_pid: list[int] = []
        self._count = 0
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        self.env = env

    def _spawn(self, args: list[str], name: str,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the proc
        try:
            proc = subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                    env=env or self.env, preexec_fn=_die_with_us)  # noqa: PLW1509
        finally:
            log.close()
        self.every_pid.append(proc.pid)
        return proc

    def start(self, n_workers: int) -> None:
        """Start the scheduler and ``n_workers`` workers; return once all are connected."""
        self.scheduler = self._spawn(
            ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--scheduler-file", str(self.scheduler_file), "--no-dashboard", "--no-show"],
            "scheduler")
        deadline = time.monotonic() + START_TIMEOUT
        while not self.scheduler_file.exists():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dask scheduler did not start:\n{self.log('scheduler')}")
            time.sleep(0.1)
        for _ in range(n_workers):
            self.add_worker()
        with Client(scheduler_file=str(self.scheduler_file), timeout="30s",
                    set_as_default=False) as client:
            try:
                client.wait_for_workers(n_workers, timeout=START_TIMEOUT)
            except TimeoutError:
                logs = "\n".join(self.log(n) for n in self.workers)
                raise AssertionError(f"dask workers did not connect:\n{logs}") from None

    @property
    def address(self) -> str:
        """The scheduler's ``tcp://127.0.0.1:port``."""
        return json.loads(self.scheduler_file.read_text())["address"]

    def add_worker(self, env: dict[str, str] | None = None) -> str:
        """Start one more worker process (1 thread, 2 GiB, no nanny); return its name."""
        self._count += 1
        name = f"worker-{self._count}"
        local = self.workdir / name
        local.mkdir()
        self.workers[name] = self._spawn(
            ["distributed.cli.dask_worker", "--scheduler-file", str(self.scheduler_file),
             "--host", "127.0.0.1", "--nthreads", "1", "--memory-limit", "2GiB",
             "--no-dashboard", "--no-nanny", "--name", name, "--local-directory", str(local)],
            name, env)
        return name

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker process: the scheduler only learns it from the closed sockets."""
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def log(self, name: str) -> str:
        """The tail of a process's log."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "<no log>"

    def close(self) -> None:
        """Stop the workers and the scheduler (SIGTERM, then SIGKILL after 3 s)."""
        procs = [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.workers.clear()


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    """A scheduler and two single-threaded worker processes, killed at teardown."""
    cluster = LoopbackCluster(tmp_path_factory.mktemp("dask-cluster"))
    try:
        cluster.start(n_workers=2)
        yield cluster
    finally:
        cluster.close()
    left = _alive(cluster.every_pid)
    assert not left, f"dask processes still running after teardown: {left}"


@pytest.fixture()
def client(dask_cluster: LoopbackCluster) -> Iterator[Client]:
    """A client of the module's cluster, the default scheduler for the test's duration."""
    with Client(scheduler_file=str(dask_cluster.scheduler_file), timeout="30s") as c:
        c.wait_for_workers(2, timeout=START_TIMEOUT)
        yield c


# --------------------------------------------------------------------------------------------
# the pipeline, and watching where it reads
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def found(replica: Any) -> s2intake.SearchResult:
    """The Berry Creek search of the seed notebook, against the replica's STAC API."""
    result = s2intake.search(AOI_PATH, DATES, max_cloud=MAX_CLOUD, url=replica.stac_url)
    assert len(result) >= 4, f"the replica should hold several clear dates, found {result}"
    return result


def _threaded_gif(obj: Any, **kwargs: Any) -> bytes:
    with dask.config.set(scheduler="threads"):
        assert active_client() is None
        return obj.s2.to_gif(None, **kwargs)


@dataclass(frozen=True)
class Reference:
    """The whole pipeline's GIF computed in this process with the threaded scheduler."""

    gif: bytes
    times: list[np.datetime64]
    frames: list[np.ndarray]  # decoded RGBA frames


@pytest.fixture(scope="module")
def reference(found: s2intake.SearchResult) -> Reference:
    """The GIF of the whole Berry Creek pipeline, threaded scheduler, in this process."""
    clipped = s2intake.stack(found).s2.clip_aoi()
    gif = _threaded_gif(clipped)
    return Reference(gif, list(clipped["time"].values), _frames(gif))


class OpenRecorder:
    """Records every raster open or read made in *this* process (the client) while active.

    Reads are recorded too, not only opens: a thread of this process may still hold a
    dataset opened before (the reader keeps a per-thread cache of open datasets).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        original_open = rasterio.open

        def recording_open(fp: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((f"open {fp}", threading.current_thread().name))
            return original_open(fp, *args, **kwargs)

        monkeypatch.setattr(rasterio, "open", recording_open)
        for cls in (rasterio.io.DatasetReader, rasterio.vrt.WarpedVRT):
            monkeypatch.setattr(cls, "read", self._recording_read(cls.read))

    def _recording_read(self, original: Any) -> Any:
        def read(ds: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((f"read {ds.name}", threading.current_thread().name))
            return original(ds, *args, **kwargs)

        return read


def _frames(gif: bytes) -> list[np.ndarray]:
    with Image.open(io.BytesIO(gif)) as image:
        out = []
        for index in range(image.n_frames):
            image.seek(index)
            out.append(np.asarray(image.convert("RGBA")))
        return out


def _read_task_workers(stream: list[dict[str, Any]]) -> dict[str, int]:
    """Worker address -> number of s2intake chunk-read tasks it ran, from a task stream."""
    counts: dict[str, int] = {}
    for record in stream:
        if READ_KEY.search(str(record["key"])):
            counts[record["worker"]] = counts.get(record["worker"], 0) + 1
    return counts


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------
_FORBIDDEN: tuple[type, ...] = (
    rasterio._base.DatasetBase, rasterio.Env, io.IOBase, socket.socket,
    type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Thread,
)


class _TypeRecorder(cloudpickle.Pickler):
    """A cloudpickle pickler that remembers the type of everything it pickles."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.types: set[type] = set()

    def reducer_override(self, obj: Any) -> Any:
        self.types.add(type(obj))
        return super().reducer_override(obj)


def test_graph_pickles_without_handles_or_locks(found: s2intake.SearchResult,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    opened = OpenRecorder(monkeypatch)
    clipped = s2intake.stack(found, gdal_options={"GDAL_HTTP_USERAGENT": "graph-test"})\
        .s2.clip_aoi()
    frames = s2intake.render.gif_frames(s2intake.to_rgb(clipped))
    graph: dict[Any, Any] = {}
    for frame in frames:
        graph.update(dict(frame.__dask_graph__()))
    assert any(READ_KEY.search(str(k)) for k in graph), "no chunk-read task in the graph"

    buffer = io.BytesIO()
    recorder = _TypeRecorder(buffer)
    recorder.dump(graph)
    bad = sorted({t.__qualname__ for t in recorder.types if issubclass(t, _FORBIDDEN)})
    assert not bad, f"the graph pickles objects that must not travel to workers: {bad}"
    assert not opened.calls, f"building the graph opened rasters: {opened.calls[:3]}"
    # plain pickle too (distributed tries it first), and the round trip keeps every task
    assert set(pickle.loads(pickle.dumps(graph))) == set(graph)
    restored = pickle.loads(buffer.getvalue())
    assert set(restored) == set(graph)
    # the GDAL settings are inside the read tasks, as plain data
    assert b"graph-test" in buffer.getvalue()


def test_berry_creek_gif_on_workers_equals_threaded(
        client: Client, dask_cluster: LoopbackCluster, found: s2intake.SearchResult,
        reference: Reference, replica: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clipped = s2intake.stack(found).s2.clip_aoi()
    assert active_client() is client
    worker_addresses = set(client.scheduler_info(n_workers=-1)["workers"])
    opened = OpenRecorder(monkeypatch)
    calls: list[tuple[int, int]] = []
    mark = replica.cog_server.mark()
    with get_task_stream(client) as stream:
        gif = clipped.s2.to_gif(None, progress=lambda done, total: calls.append((done, total)))

    total = clipped.sizes["time"]
    assert gif == reference.gif, "the cluster's GIF differs from the threaded scheduler's"
    assert len(_frames(gif)) == total
    assert calls == [(i, total) for i in range(1, total + 1)], f"progress calls: {calls}"
    # where the pixels were read: not here, on both workers, over HTTP from the replica
    assert not opened.calls, f"the client process opened rasters itself: {opened.calls[:3]}"
    reads = _read_task_workers(stream.data)
    assert reads, "the task stream shows no chunk-read task"
    assert set(reads) <= worker_addresses, f"reads ran elsewhere than the workers: {reads}"
    assert len(reads) == 2, f"expected both workers to read chunks, got {reads}"
    requests = replica.cog_server.entries_since(mark)
    assert any(e.is_range and e.status == 206 for e in requests), \
        "the replica's nginx saw no Range request while the workers computed the GIF"
    # a local scheduler asked for explicitly still wins over the default client
    with dask.config.set(scheduler="threads"):
        assert active_client() is None


def test_read_error_on_a_worker_reaches_the_caller(
        client: Client, found: s2intake.SearchResult, replica: Any) -> None:
    items = json.loads(json.dumps(found.items[:2]))
    broken = items[1]
    href = broken["assets"]["red"]["href"]
    broken["assets"]["red"]["href"] = href.rsplit("/", 1)[0] + "/missing-B04.tif"
    clipped = s2intake.stack(items, aoi=found.aoi, retries=0).s2.clip_aoi()
    with pytest.raises(ReadError, match=re.escape(broken["id"])) as caught:
        clipped.s2.to_gif(None)
    assert "missing-B04.tif" in str(caught.value)
    assert "404" in str(caught.value)
    # what was still pending was cancelled, not left running on the cluster
    deadline = time.monotonic() + 20
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(client.processing().values()), client.processing()


class _AgentLoggingCogServer(CogServer):
    """The replica's nginx set-up, but logging each request's User-Agent."""

    LOG = "log_format rng '$request $status $body_bytes_sent \"$http_range\"';"
    NEW = "log_format rng '$status \"$http_user_agent\" \"$http_range\" $request';"
    LINE = re.compile(r'^(?P<status>\d{3}) "(?P<agent>[^"]*)" "(?P<range>[^"]*)" (?P<request>.*)$')

    def _config(self, port: int) -> str:
        text = super()._config(port)
        assert self.LOG in text, "CogServer's log_format changed; update this test's copy"
        return text.replace(self.LOG, self.NEW)

    def requests(self) -> list[dict[str, str]]:
        self._settle()
        lines = self.access_log_path.read_text().splitlines()
        parsed = [self.LINE.match(line) for line in lines]
        assert all(parsed), f"unparsed access log lines: {lines[:3]}"
        return [m.groupdict() for m in parsed if m]


def test_gdal_options_travel_to_the_workers(
        client: Client, found: s2intake.SearchResult, replica: Any, cog_root: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = f"s2intake-test-{uuid.uuid4().hex}"
    with _AgentLoggingCogServer(cog_root, tmp_path / "nginx") as server:
        items = json.loads(json.dumps(found.items).replace(replica.cog_url, server.url))
        assert server.url in json.dumps(items)
        ds = s2intake.stack(items, aoi=found.aoi,
                            gdal_options={"GDAL_HTTP_USERAGENT": agent})
        clipped = ds.s2.clip_aoi().isel(time=slice(0, 2))
        opened = OpenRecorder(monkeypatch)
        gif = clipped.s2.to_gif(None)
        requests = server.requests()
    assert len(_frames(gif)) == 2
    assert not opened.calls, f"the client process opened rasters itself: {opened.calls[:3]}"
    assert requests, "no request reached the test's nginx"
    agents = {r["agent"] for r in requests}
    assert agents == {agent}, f"requests came with other User-Agents than the one set: {agents}"
    assert any(r["range"].startswith("bytes=") and r["status"] == "206" for r in requests)


def test_cli_runs_on_the_scheduler_from_the_environment(
        dask_cluster: LoopbackCluster, replica: Any, reference: Reference, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from s2intake.cli import main

    output = tmp_path / "fire.gif"
    monkeypatch.setenv(SCHEDULER_ENV, dask_cluster.address)
    opened = OpenRecorder(monkeypatch)
    result = CliRunner().invoke(main, ["gif", str(AOI_PATH), str(output), "-d", CLI_DATES,
                                       "-c", str(MAX_CLOUD), "--url", replica.stac_url])
    assert result.exit_code == 0, result.output
    assert f"Dask scheduler {dask_cluster.address}: 2 workers, 2 threads" in result.stderr
    assert "frames" in result.stderr  # the progress bar
    assert not opened.calls, f"the CLI process opened rasters itself: {opened.calls[:3]}"
    # the same frames as the reference GIF on those dates (pixels and captions)
    start, end = (np.datetime64(d) for d in CLI_DATES.split("/"))
    wanted = [i for i, t in enumerate(reference.times)
              if start <= t < end + np.timedelta64(1, "D")]
    frames = _frames(output.read_bytes())
    assert len(wanted) >= 2 and len(frames) == len(wanted)
    for got, index in zip(frames, wanted, strict=True):
        assert np.array_equal(got, reference.frames[index]), f"frame {index} differs"


def test_compute_context_refuses_workers_without_s2intake(
        dask_cluster: LoopbackCluster, tmp_path: Path) -> None:
    # a worker whose `import s2intake` fails, as on an image without the package
    broken = tmp_path / "broken"
    (broken / "s2intake").mkdir(parents=True)
    (broken / "s2intake" / "__init__.py").write_text(
        "raise ImportError('s2intake is not installed on this worker')\n")
    env = dict(dask_cluster.env, PYTHONPATH=str(broken))
    name = dask_cluster.add_worker(env=env)
    try:
        with Client(scheduler_file=str(dask_cluster.scheduler_file), timeout="30s",
                    set_as_default=False) as c:
            c.wait_for_workers(3, timeout=START_TIMEOUT)
            with pytest.raises(S2IntakeError, match=r"1 of 3 Dask workers cannot run s2intake"):
                check_workers(c)
        for where in (dask_cluster.address, str(dask_cluster.scheduler_file)):
            with pytest.raises(S2IntakeError, match="cannot run s2intake"), \
                    compute_context(where):
                pytest.fail("compute_context should refuse a cluster with a broken worker")
    finally:
        dask_cluster.kill_worker(name)
    with Client(scheduler_file=str(dask_cluster.scheduler_file), timeout="30s",
                set_as_default=False) as c:
        deadline = time.monotonic() + 30
        while len(c.scheduler_info(n_workers=-1)["workers"]) != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        reports = check_workers(c)
    assert len(reports) == 2
    assert {r["s2intake"] for r in reports.values()} == {s2intake.__version__}
    assert all(r["pid"] != os.getpid() for r in reports.values())


def test_gif_survives_a_worker_killed_midway(
        client: Client, dask_cluster: LoopbackCluster, found: s2intake.SearchResult,
        reference: Reference) -> None:
    # smaller chunks than the COG tiles: 4 x more read tasks per frame
    count = 4
    clipped = s2intake.stack(found, chunks=512).s2.clip_aoi().isel(time=slice(0, count))
    pids = client.run(os.getpid)
    by_pid = {proc.pid: name for name, proc in dask_cluster.workers.items()}
    killed: dict[str, Any] = {}
    calls: list[int] = []

    def progress(done: int, _total: int) -> None:
        calls.append(done)
        if killed:
            return
        # SIGKILL the busiest worker now, while frames are still computing or to come
        processing = client.processing()
        address = max(processing, key=lambda a: len(processing[a]))
        killed.update(address=address, done=done, busy=len(processing[address]))
        dask_cluster.kill_worker(by_pid[pids[address]])
        killed["replacement"] = dask_cluster.add_worker()

    gif = clipped.s2.to_gif(None, progress=progress)

    assert killed, "no progress was reported, so no worker was killed"
    assert killed["done"] < count, "the worker was killed after the last frame"
    assert killed["busy"] > 0, f"the killed worker had no task in progress: {killed}"
    assert calls == list(range(1, count + 1))
    frames = _frames(gif)
    assert len(frames) == count, "frames are missing after losing a worker"
    for index, frame in enumerate(frames):
        assert np.array_equal(frame, reference.frames[index]), f"frame {index} differs"
    assert killed["address"] not in client.scheduler_info(n_workers=-1)["workers"]
    client.wait_for_workers(2, timeout=START_TIMEOUT)  # the replacement joined
