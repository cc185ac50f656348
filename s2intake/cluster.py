"""Where computations run: a remote Dask scheduler, a LocalCluster, or plain threads."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import dask

from .errors import S2IntakeError

#: Environment variable holding a scheduler address (``tcp://host:8786``).
SCHEDULER_ENV = "S2INTAKE_SCHEDULER"


@contextlib.contextmanager
def compute_context(scheduler: str | None = None,
                    echo: Callable[[str], None] | None = None) -> Iterator[object | None]:
    """Run the enclosed computations on ``scheduler``.

    Parameters
    ----------
    scheduler:
        ``tcp://...`` address of a running scheduler; ``"threads"`` or ``"sync"`` for
        Dask's local schedulers; ``"local"`` for a LocalCluster sized to this machine.
        Default: ``$S2INTAKE_SCHEDULER``, else ``"threads"``.
    echo:
        Told where the work runs (dashboard link), e.g. ``print``.

    Yields
    ------
    distributed.Client or None
    """
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or "threads"
    if scheduler in ("threads", "sync", "synchronous", "processes"):
        with dask.config.set(scheduler=scheduler):
            yield None
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
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
    if "://" not in scheduler:
        raise S2IntakeError(f"scheduler {scheduler!r}: give tcp://host:port, 'local', "
                            "'threads' or 'sync'")
    try:
        client = Client(scheduler, timeout="15s")
    except (OSError, TimeoutError) as exc:
        raise S2IntakeError(f"cannot connect to Dask scheduler {scheduler}: {exc}") from None
    if echo:
        echo(f"Dask scheduler {scheduler}, dashboard {client.dashboard_link}")
    try:
        yield client
    finally:
        client.close()
