"""Peak memory of Dask worker processes while they compute the Berry Creek GIF.

Runs the seed's pipeline (search -> stack -> clip -> GIF) on a ``distributed`` cluster whose
workers are separate processes, reading the embedded sample's COGs over HTTP from nginx,
and samples the resident set size (RSS) of every worker process every ``--interval``
seconds with psutil. Reports per worker the RSS before the run (s2intake and GDAL already
imported), the peak during it, and the difference, which is the run's working memory.

By default it starts its own cluster on this machine (a LocalCluster of ``--workers``
processes with ``--threads`` each). With ``--scheduler tcp://...`` it uses a running one;
psutil then sees only the workers that run on this machine, and the cluster-wide figure
comes from distributed's ``MemorySampler`` (coarser: worker heartbeats).

Examples
--------
Default sample (25 dates, sparse COGs), 2 workers x 1 thread::

    python -m bench.cluster_memory

The 48-date dense sample (built first if absent: slow), 4 worker threads, 256 px chunks::

    python -m bench.cluster_memory --dense --dates 48 --workers 2 --threads 2 --chunks 256

Frames all submitted at once instead of a few at a time (to compare)::

    python -m bench.cluster_memory --in-flight 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

MIB = 1024 * 1024
DATES = "2020-01-01/2021-06-30"
MAX_CLOUD = 10


class RssSampler:
    """Samples the RSS of a set of processes on a background thread.

    Parameters
    ----------
    pids:
        Process ids to watch (processes that exit are dropped).
    interval:
        Seconds between samples.
    """

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.interval = interval
        self.peak: dict[str, int] = {name: 0 for name in self.procs}
        self.peak_total = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> dict[str, int]:
        """Current RSS in bytes of each process still alive."""
        out = {}
        for name, proc in self.procs.items():
            try:
                out[name] = proc.memory_info().rss
            except psutil.Error:
                continue
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.rss()
            for name, value in now.items():
                self.peak[name] = max(self.peak[name], value)
            self.peak_total = max(self.peak_total, sum(now.values()))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if args.scheduler:
        with Client(args.scheduler) as client:
            yield client
        return
    env = dict(pair.split("=", 1) for pair in args.worker_env)
    with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads,
                      processes=True, memory_limit=args.memory_limit, env=env,
                      host="127.0.0.1", dashboard_address=None,
                      local_directory=args.workdir) as cluster, \
            Client(cluster) as client:
        yield client


def _sample(args: argparse.Namespace) -> Any:
    from s2intake.sample import SampleInfo, build_sample, default_root

    root = Path(args.root).expanduser() if args.root else None
    if args.no_build:  # as found, even if made by another version of the generator
        root = root or default_root(args.dense)
        manifest = root / "manifest.json"
        if not manifest.is_file():
            raise SystemExit(f"no built sample at {root} (no manifest.json); drop --no-build")
        params = json.loads(manifest.read_text()).get("params", {})
        if params.get("dense") != args.dense or (args.dates and params.get("n_dates") != args.dates):
            raise SystemExit(f"the sample at {root} was built with {params}, not "
                             f"dense={args.dense} dates={args.dates}")
        stac = root / "stac"
        return SampleInfo(root=root, cog_root=root,
                          items_path={v: stac / v / "items.json" for v in ("v1", "v0")},
                          collection_path={v: stac / v / "collection.json" for v in ("v1", "v0")},
                          truth_path=root / "truth.json")
    t0 = time.perf_counter()
    info = build_sample(root, dense=args.dense, n_dates=args.dates,
                        progress=lambda m: print(f"  sample: {m}", file=sys.stderr))
    took = time.perf_counter() - t0
    if took > 2:
        print(f"sample ready in {took:.0f} s at {info.root}", file=sys.stderr)
    return info


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the GIF on the cluster and return the measurements (see the module docstring)."""
    import dask
    from distributed.diagnostics import MemorySampler

    import s2intake
    from s2intake import cluster as s2cluster
    from s2intake.replica import CogServer
    from s2intake.sample import AOI_PATH

    info = _sample(args)
    with CogServer(info.cog_root, Path(args.workdir) / "nginx") as cogs:
        items_file = Path(args.workdir) / "items-http.json"
        items_file.write_text(json.dumps({"type": "FeatureCollection",
                                          "features": info.items("v1", base=cogs.url)}))
        found = s2intake.search(AOI_PATH, DATES, max_cloud=MAX_CLOUD, url=str(items_file))
        gdal_options = dict(pair.split("=", 1) for pair in args.gdal_option)
        ds = s2intake.stack(found, ["red", "green", "blue"], chunks=args.chunks,
                            gdal_options=gdal_options or None)
        clipped = ds.s2.clip_aoi()
        frames, height, width = clipped.sizes["time"], clipped.sizes["y"], clipped.sizes["x"]
        print(f"{frames} frames of {width} x {height} px, chunks {args.chunks} px", file=sys.stderr)
        with _cluster(args) as client:
            # the imports a task triggers are not the run's memory: do them first
            client.run(exec, "import s2intake.stack, s2intake.render, s2intake.clip, rasterio")
            pids = client.run(os.getpid)
            here = platform.node()
            hosts = client.run(platform.node)
            local = {addr: pid for addr, pid in pids.items() if hosts[addr] == here}
            sampler = RssSampler(local, args.interval)
            before = sampler.rss()
            done: list[float] = []
            t0 = time.perf_counter()
            in_flight = args.in_flight

            def tick(n: int, total: int) -> None:
                done.append(time.perf_counter() - t0)

            ms = MemorySampler()
            with sampler, ms.sample("gif", measure="process", interval=0.1):
                if in_flight == 0:
                    frames_delayed = s2intake.render.gif_frames(s2intake.to_rgb(clipped))
                    images = client.gather(client.compute(frames_delayed))
                    assert len(images) == frames
                else:
                    rgba = s2intake.to_rgb(clipped)
                    delayed = s2intake.render.gif_frames(rgba)
                    images = s2cluster.compute_as_completed(
                        client, delayed, tick, in_flight=in_flight or None)
                    assert len(images) == frames
            seconds = time.perf_counter() - t0
            after = sampler.rss()
            series = ms.to_pandas()
            cluster_peak = float(series["gif"].max()) if len(series) else float("nan")
            threads = sum(client.nthreads().values())
    frame_bytes = height * width * 4  # one RGBA frame, uint8
    chunk_bytes = min(args.chunks, height) * min(args.chunks, width) * 2  # one uint16 chunk
    workers = {
        addr: {"rss_before_mib": before.get(addr, 0) / MIB,
               "rss_peak_mib": sampler.peak[addr] / MIB,
               "rss_after_mib": after.get(addr, 0) / MIB,
               "growth_mib": (sampler.peak[addr] - before.get(addr, 0)) / MIB}
        for addr in local
    }
    return {
        "sample": str(info.root), "dense": args.dense, "dates_requested": args.dates,
        "frames": frames, "frame_px": [width, height], "chunks": args.chunks,
        "in_flight": "all" if in_flight == 0 else (in_flight or f"auto ({threads + 1})"),
        "workers": len(pids), "threads": threads, "seconds": round(seconds, 2),
        "samples": sampler.samples, "interval_s": args.interval,
        "frame_rgba_mib": frame_bytes / MIB, "chunk_uint16_mib": chunk_bytes / MIB,
        "per_worker": workers,
        "max_worker_peak_mib": max((w["rss_peak_mib"] for w in workers.values()), default=0),
        "max_worker_growth_mib": max((w["growth_mib"] for w in workers.values()), default=0),
        "local_workers_peak_total_mib": sampler.peak_total / MIB,
        "cluster_peak_memorysampler_mib": cluster_peak / MIB,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "load_avg_1min": os.getloadavg()[0],
        "worker_env": args.worker_env,
        "gdal_options": args.gdal_option,
        "dask": dask.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints a summary and (``--json``) writes the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dense", action="store_true",
                        help="use the dense sample (whole tiles; built first if absent)")
    parser.add_argument("--dates", type=int, default=None,
                        help="number of acquisitions of the sample (default: the demo set)")
    parser.add_argument("--root", default=None, help="sample folder (default: the cache)")
    parser.add_argument("--no-build", action="store_true",
                        help="use the sample found at --root as is (no rebuild when the "
                             "generator changed; fails if there is none)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--memory-limit", default="2GiB", help="per worker")
    parser.add_argument("--chunks", type=int, default=1024, help="chunk size in pixels")
    parser.add_argument("--in-flight", type=int, default=None,
                        help="frames submitted at once (default: threads + 1; 0: all at once)")
    parser.add_argument("--interval", type=float, default=0.05, help="RSS sampling period, s")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for the local workers, e.g. "
                             "GDAL_CACHEMAX=128 (repeatable)")
    parser.add_argument("--gdal-option", action="append", default=[], metavar="NAME=VALUE",
                        help="GDAL option passed to stack(gdal_options=...), travelling in "
                             "the graph (repeatable)")
    parser.add_argument("--scheduler", default=None, help="use this running scheduler")
    parser.add_argument("--workdir", default=None, help="where logs and items go (temp)")
    parser.add_argument("--json", dest="json_path", default=None, help="write results here")
    args = parser.parse_args(argv)
    for var in ("NO_PROXY", "no_proxy"):  # loopback nginx, never through a proxy
        os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1,localhost"]))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="s2intake-bench-") as tmp:
        args.workdir = args.workdir or tmp
        result = measure(args)
    print(json.dumps(result, indent=1, default=str))
    print(f"\npeak worker RSS {result['max_worker_peak_mib']:.0f} MiB "
          f"(+{result['max_worker_growth_mib']:.0f} MiB over its idle RSS) for "
          f"{result['frames']} frames of {result['frame_px'][0]} x {result['frame_px'][1]} px "
          f"on {result['workers']} workers x {args.threads} threads in {result['seconds']} s",
          file=sys.stderr)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
