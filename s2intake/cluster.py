"""Where computations run: a remote Dask scheduler, a LocalCluster, or plain threads.

Everything s2intake builds is a plain Dask graph whose read tasks carry their own GDAL
settings (:class:`~s2intake.gdal_env.ReadOptions`), so any ``distributed`` cluster whose
workers have s2intake installed can compute it: a scheduler on another machine, a
Kubernetes cluster, a Dask Gateway cluster. This module connects to one
(:func:`compute_context`), checks that its workers can run s2intake code
(:func:`check_workers`), and computes many small results, such as GIF frames, a few at a
time with progress (:func:`compute_as_completed`). See ``docs/cluster.md``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask

from .errors import S2IntakeError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

#: Environment variable holding a scheduler address (``tcp://host:8786``).
SCHEDULER_ENV = "S2INTAKE_SCHEDULER"

_LOCAL_SCHEDULERS = ("threads", "sync", "synchronous", "processes")


def active_client() -> Client | None:
    """The ``distributed.Client`` that ``dask.compute`` would use right now, if any.

    Follows Dask's own rules: ``dask.config.set(scheduler="threads")`` (or ``"sync"``) wins
    over a default client, so a local scheduler asked for explicitly is respected.

    Returns
    -------
    distributed.Client or None
        ``None`` when the computation would run on a local scheduler, or when the only
        client is asynchronous.
    """
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    from dask.base import get_scheduler

    try:
        scheduler = get_scheduler()
    except RuntimeError:  # an asynchronous client cannot run a synchronous computation
        return None
    owner = getattr(scheduler, "__self__", scheduler)
    return owner if isinstance(owner, Client) else None


def _worker_report() -> dict[str, Any]:
    """What a worker runs s2intake with (executed on each worker by :func:`check_workers`)."""
    import rasterio

    from . import __version__

    return {"s2intake": __version__, "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__, "python": platform.python_version(),
            "pid": os.getpid(), "gdal_cachemax": os.environ.get("GDAL_CACHEMAX")}


def check_workers(client: Client) -> dict[str, dict[str, Any]]:
    """Check that every worker of ``client`` can run s2intake's read and render tasks.

    A worker without s2intake (or rasterio) installed would fail every task with an import
    error deep inside a traceback; this says so up front, naming the workers.

    Parameters
    ----------
    client:
        A connected ``distributed.Client``. Workers that join later are not checked (a
        cluster that scales from zero reports no worker here, which is not an error).

    Returns
    -------
    dict
        ``{worker address: {"s2intake": version, "rasterio": ..., "gdal": ..., "python": ...,
        "pid": ..., "gdal_cachemax": $GDAL_CACHEMAX or None}}``.

    Raises
    ------
    S2IntakeError
        When some worker cannot import s2intake.

    Warns
    -----
    UserWarning
        When a worker runs another s2intake version than this process.
    """
    from . import __version__

    reports = client.run(_worker_report, on_error="return")
    broken = {addr: rep for addr, rep in reports.items() if isinstance(rep, BaseException)}
    if broken:
        lines = "; ".join(f"{addr}: {type(exc).__name__}: {exc}" for addr, exc in broken.items())
        raise S2IntakeError(
            f"{len(broken)} of {len(reports)} Dask workers cannot run s2intake ({lines}); "
            "install s2intake (same version as the client) in the workers' environment or "
            "image, see docs/cluster.md"
        )
    other = {addr: rep["s2intake"] for addr, rep in reports.items()
             if rep["s2intake"] != __version__}
    if other:
        warnings.warn(f"Dask workers run other s2intake versions than this client "
                      f"({__version__}): {other}", UserWarning, stacklevel=2)
    return reports


def _connect(scheduler: str) -> Client:
    from distributed import Client

    try:
        if scheduler.endswith(".json") and Path(scheduler).expanduser().is_file():
            return Client(scheduler_file=str(Path(scheduler).expanduser()), timeout="15s")
        return Client(scheduler, timeout="15s")
    except (OSError, TimeoutError) as exc:
        raise S2IntakeError(f"cannot connect to Dask scheduler {scheduler}: {exc}") from None


@contextlib.contextmanager
def compute_context(scheduler: str | None = None,
                    echo: Callable[[str], None] | None = None, *,
                    check: bool = True) -> Iterator[Client | None]:
    """Run the enclosed computations on ``scheduler``.

    Parameters
    ----------
    scheduler:
        ``tcp://...`` (or ``tls://...``) address of a running scheduler, or the path of a
        scheduler file (``*.json`` written by ``dask scheduler --scheduler-file``);
        ``"threads"`` or ``"sync"`` for Dask's local schedulers; ``"local"`` for a
        LocalCluster of worker processes sized to this machine.
        Default: ``$S2INTAKE_SCHEDULER``, else ``"threads"``.
    echo:
        Told where the work runs (workers, threads, dashboard link), e.g. ``print``.
    check:
        Check first that the remote workers can import s2intake (:func:`check_workers`).

    Yields
    ------
    distributed.Client or None
        The client, which is the default scheduler inside the block (``None`` for threads).

    Raises
    ------
    S2IntakeError
        Unknown scheduler name, unreachable scheduler, or workers without s2intake.
    """
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or "threads"
    if scheduler in _LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler):
            yield None
        return

    if scheduler == "local":
        from distributed import Client, LocalCluster

        workers = max(1, os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=1, threads_per_worker=workers, processes=True,
                               dashboard_address="127.0.0.1:0")
        client = Client(cluster)
        if echo:
            echo(f"local Dask cluster: {workers} threads, dashboard {client.dashboard_link}")
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    if "://" not in scheduler and not scheduler.endswith(".json"):
        raise S2IntakeError(f"scheduler {scheduler!r}: give tcp://host:port, a scheduler "
                            "file (*.json), 'local', 'threads' or 'sync'")
    client = _connect(scheduler)
    try:
        if check:
            check_workers(client)
        if echo:
            nthreads = client.nthreads()  # every worker (scheduler_info() may cap the list)
            try:
                link = client.dashboard_link
            except (KeyError, AttributeError):  # a scheduler without a dashboard
                link = None
            echo(f"Dask scheduler {client.scheduler.address}: {len(nthreads)} workers, "
                 f"{sum(nthreads.values())} threads" + (f", dashboard {link}" if link else ""))
        yield client  # a new Client makes itself Dask's default scheduler
    finally:
        client.close()


def _total_threads(client: Client) -> int:
    try:
        return sum(client.nthreads().values())
    except Exception:  # noqa: BLE001 - a scheduler that is reconnecting; guess small
        return 1


def compute_as_completed(client: Client, tasks: Sequence[Any],
                         progress: Callable[[int, int], None] | None = None, *,
                         in_flight: int | None = None) -> list[Any]:
    """Compute Dask collections on ``client``, a bounded number at a time, in order.

    Used for GIF frames: each collection is one frame, so at most ``in_flight`` frames'
    pixels are in the workers' memory at once, whatever the number of dates. Results are
    gathered as they finish (and released on the workers), ``progress`` is called each
    time, and a worker lost midway is survived (the scheduler recomputes what it held).

    Parameters
    ----------
    client:
        A connected ``distributed.Client``.
    tasks:
        Dask collections (e.g. ``dask.delayed`` objects), one result each.
    progress:
        Called as ``progress(done, total)`` in this thread after each result arrives.
    in_flight:
        How many to have submitted at once; default one more than the cluster's worker
        threads (re-read as workers come and go), at least 2.

    Returns
    -------
    list
        The results, in the order of ``tasks``.

    Raises
    ------
    Exception
        The first task error (e.g. :class:`~s2intake.errors.ReadError`); everything still
        pending is cancelled first. Pending work is also cancelled on ``KeyboardInterrupt``.
    """
    from distributed import as_completed

    total = len(tasks)
    results: list[Any] = [None] * total
    if not total:
        return results
    order = iter(range(total))
    position: dict[int, int] = {}  # id(future) -> index (keys may repeat; futures don't)
    pending: list[Any] = []
    stream = as_completed()

    def submit(limit: int) -> None:
        while len(pending) < limit:
            index = next(order, None)
            if index is None:
                return
            # earlier frames first: higher priority wins on the scheduler
            future = client.compute(tasks[index], priority=total - index)
            position[id(future)] = index
            pending.append(future)
            stream.add(future)

    def limit() -> int:
        return in_flight if in_flight else max(2, _total_threads(client) + 1)

    done = 0
    try:
        submit(limit())
        for future in stream:
            results[position.pop(id(future))] = future.result()
            pending.remove(future)
            future.release()  # free the result on the worker now
            done += 1
            if progress:
                progress(done, total)
            submit(limit())
    except BaseException:
        if pending:
            client.cancel(pending)
        raise
    return results
