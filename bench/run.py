"""Benchmark harness: s2intake against stackstac, odc-stac, lazycogs and a plain window reader.

One command runs the whole comparison and writes ``bench/RESULTS.md`` and ``bench/results.png``::

    python -m bench.run            # the full sweep on the dense sample (slow: see README)
    python -m bench.run --quick    # a tiny run on the default sparse sample (seconds)

Everything is served over HTTP by nginx on the loopback interface
(:class:`s2intake.replica.CogServer`), so every contender really does HTTP range requests,
and nginx's access log counts requests and bytes. Each (contender, cell, repeat) runs in its
own fresh Python process (GDAL caches and peak RSS start from zero); medians are reported.

Contenders (``--contenders``; a ``+patch`` suffix runs s2intake with a bench-side patch, see
:data:`PATCHES`):

``seed``       the seed blog's path: ``stackstac.stack`` of whole tiles (float64), rioxarray
               ``rio.clip`` to the AOI polygon, then an odc-algo-like RGBA (clamp 1..1500).
``stackstac``  ``stackstac.stack(bounds_latlon=...)`` (uint16, fill 0), same RGBA.
``odc``        ``odc.stac.load(geopolygon=..., chunks={x: 1024, y: 1024})``, same RGBA.
``lazycogs``   ``lazycogs.open(bbox=...)`` in the Python 3.12 venv ``bench/.venv312``.
``s2intake``   the ``berry_creek`` catalog entry (url = the bench's item file), ``to_rgb``.
``window``     the lower bound: rasterio windowed reads of exactly the internal tiles the AOI
               touches, one open per file, a thread per core, numpy RGBA.

This module imports only the standard library at the top, so the 3.12 venv (which has no
s2intake, rasterio or stackstac) can run its ``_worker`` entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"
VENV312 = BENCH_DIR / ".venv312"
OUT_DIR = BENCH_DIR / "out"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
RESULTS_PNG = BENCH_DIR / "results.png"
CATALOG = REPO / "catalogs" / "berry_creek.yaml"
BERRY_GEOJSON = REPO / "catalogs" / "berry_creek.geojson"

BANDS = ("red", "green", "blue")
CLAMP = (1.0, 1500.0)
TILE_CRS = "EPSG:32610"
TILE_X0, TILE_Y0 = 600000.0, 4500000.0  # 10SFJ upper-left corner
TILE_PX = 10980
RES = 10.0
BLOCK = 1024
REAL_COG_BASE = "https://sentinel-cogs.s3.us-west-2.amazonaws.com"
FIRST_DATE = dt.date(2020, 1, 3)  # bench dates: every 5 days from here
MIB = 1024 * 1024

#: Square AOIs as (minx, miny, maxx, maxy) in EPSG:32610, all inside the sparse sample's
#: written blocks (10 m block columns 2..4, rows 8..10), so ``--quick`` reads real pixels too.
#: 1km: inside one 1024-px block; 6km: centred on a block corner (2 x 2 blocks);
#: 20km: 3 x 3 blocks, crossing two block edges each way; tile: the whole 10980 px tile.
SQUARE_AOIS: dict[str, tuple[float, float, float, float]] = {
    "1km": (635340.0, 4402220.0, 636340.0, 4403220.0),
    "6km": (627720.0, 4404840.0, 633720.0, 4410840.0),
    "20km": (625840.0, 4392720.0, 645840.0, 4412720.0),
    "tile": (TILE_X0, TILE_Y0 - TILE_PX * RES, TILE_X0 + TILE_PX * RES, TILE_Y0),
}
#: Polygon AOIs (lon/lat GeoJSON files): the seed's Berry Creek area (~15 x 12 km).
POLYGON_AOIS: dict[str, Path] = {"berry": BERRY_GEOJSON}
AOI_ORDER = ("1km", "6km", "berry", "20km", "tile")

CONTENDERS = ("seed", "stackstac", "odc", "lazycogs", "s2intake", "window")
#: Contenders that count as "the anchors" for the 0.8 x target.
ANCHORS = ("seed", "stackstac", "odc", "lazycogs")

#: s2intake prototypes, applied in the worker before the job by monkeypatching (``s2intake+NAME``).
PATCHES: dict[str, str] = {
    "singleget": "GDAL_HTTP_MULTIRANGE=SINGLE_GET: one multi-range GET per read instead of "
                 "one GET per run of consecutive tiles",
    "nohttp2": "drop GDAL_HTTP_VERSION=2 / GDAL_HTTP_MULTIPLEX (nginx here speaks HTTP/1.1)",
    "ingest16k": "GDAL_INGESTED_BYTES_AT_OPEN=16384 (GDAL's default) instead of 32768",
    "novsicache": "drop VSI_CACHE/VSI_CACHE_SIZE: with the cache on, every tile read is "
                  "followed by a 32 KiB GET of the bytes after it (libtiff reads the tile "
                  "trailer through the cached layer)",
    "chunks2048": "stack(chunks=2048) instead of the catalog's 1024 (any chunksN works): "
                  "fewer, larger reads, so GDAL merges a file's tiles into fewer GETs",
    "cachemax64": "GDAL_CACHEMAX=64 (MB; set in the environment, rasterio.Env wants an int): "
                  "GDAL's block cache otherwise keeps every decoded tile of the still-open "
                  "datasets, up to 5% of RAM",
    "noverify": "ReadOptions(verify_tiles=False): no adler32 re-check of tiles GDAL decoded",
    "plaincompute": "load job with ds.compute() instead of ds.s2.compute() (no malloc_trim "
                    "after the compute)",
    "gdal": "stack(reader='gdal'): every read through GDAL/rasterio (the reader before the "
            "direct one): HEAD + header + a GET per run of tiles per chunk",
    "arena2": "MALLOC_ARENA_MAX=2 in the worker's environment (glibc keeps freed memory of "
              "per-thread arenas; GDAL decodes on several threads)",
    "threads1": "dask threaded scheduler with 1 thread",
    "threads4": "dask threaded scheduler with 4 threads (overlap HTTP waits with decoding)",
}


# ============================================================================ worker side
class Clock:
    """Wall-clock laps and RSS samples of one job (in the worker process)."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.cpu0 = 0.0
        self.laps: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rss_start = 0
        self.load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def start(self) -> None:
        """Start timing (call after the imports)."""
        self.rss_start = _rss()
        self.load_start = os.getloadavg()
        self.cpu0 = _cpu()
        self.t0 = time.perf_counter()

    def lap(self, name: str) -> None:
        """Record the seconds since :meth:`start` under ``name``."""
        if self.t0 is None:
            raise RuntimeError("Clock.lap before Clock.start")
        self.laps[name] = time.perf_counter() - self.t0
        self.cpu[name] = _cpu() - self.cpu0


def _rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _cpu() -> float:
    """CPU seconds (user + system, all threads) used by this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss() -> int:
    """Peak RSS of this process so far, in bytes (``ru_maxrss`` is KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _rgba_block(r: Any, g: Any, b: Any) -> Any:
    """odc-algo-like byte scaling of one block: clamp 1..1500 to 0..255, alpha from nodata.

    Works for uint16 (nodata 0) and float (NaN or 0 as nodata) inputs; returns uint8 with a
    trailing axis of 4 (r, g, b, a).
    """
    import numpy as np

    lo, hi = CLAMP
    valid = np.ones(r.shape, dtype=bool)
    for x in (r, g, b):
        valid &= (x == x) & (x != 0)  # x == x is False for NaN
    out = np.zeros((*r.shape, 4), dtype=np.uint8)
    scale = np.float32(255.0 / (hi - lo))
    for i, x in enumerate((r, g, b)):
        v = np.clip(x, lo, hi).astype(np.float32)
        v -= np.float32(lo)
        v *= scale
        np.rint(v, out=v)
        v[~valid] = 0
        out[..., i] = v.astype(np.uint8)
    out[..., 3] = valid.astype(np.uint8) * 255
    return out


def _rgba_lazy(r: Any, g: Any, b: Any) -> Any:
    """:func:`_rgba_block` mapped over three aligned dask arrays (one task per chunk)."""
    import dask.array as da
    import numpy as np

    return da.map_blocks(_rgba_block, r, g, b, dtype=np.uint8, new_axis=r.ndim,
                         chunks=(*r.chunks, (4,)))


def _read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _features(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The job's items (the first ``n_dates`` of the bench's item file), as dicts."""
    data = _read_json(spec["items_path"])
    feats = data["features"] if isinstance(data, dict) else data
    return feats[: spec["n_dates"]]


def _aoi_polygon(spec: Mapping[str, Any]) -> dict[str, Any]:
    return spec["aoi"]["lonlat"]


def _compute_timed(lazy: Any, clock: Clock) -> Any:
    """End the lazy lap, compute ``lazy`` (a dask array), end the compute lap."""
    clock.lap("lazy")
    out = lazy.compute()
    clock.lap("compute")
    return out


def _job_seed(spec: Mapping[str, Any], clock: Clock) -> Any:
    """(a) The seed: stackstac of whole tiles, rioxarray clip to the AOI, odc-algo-like RGBA."""
    import rioxarray  # noqa: F401  (registers .rio)
    import stackstac

    items = _features(spec)
    clock.start()
    # rescale=False: the seed read Earth Search v0 items (no raster:bands), so it got DNs,
    # which its clamp (1, 1500) expects; with v1 items stackstac >= 0.5 would scale them.
    stack = stackstac.stack(items, assets=list(BANDS), rescale=False)
    subset = stack.rio.clip([_aoi_polygon(spec)], crs="EPSG:4326")
    rgba = _rgba_lazy(*(subset.sel(band=b).data for b in BANDS))
    return _compute_timed(rgba, clock)


def _job_stackstac(spec: Mapping[str, Any], clock: Clock) -> Any:
    """(b) stackstac with ``bounds_latlon`` (uint16, fill 0: its cheapest correct output)."""
    import numpy as np
    import stackstac

    items = _features(spec)
    clock.start()
    stack = stackstac.stack(items, assets=list(BANDS), bounds_latlon=spec["aoi"]["lonlat_bbox"],
                            dtype=np.dtype("uint16"), fill_value=np.uint16(0), rescale=False)
    rgba = _rgba_lazy(*(stack.sel(band=b).data for b in BANDS))
    return _compute_timed(rgba, clock)


def _job_odc(spec: Mapping[str, Any], clock: Clock) -> Any:
    """(c) ``odc.stac.load`` with ``geopolygon`` and 1024-px chunks."""
    import odc.stac
    import pystac
    from odc.geo.geom import Geometry

    items = [pystac.Item.from_dict(i) for i in _features(spec)]
    clock.start()
    ds = odc.stac.load(items, bands=list(BANDS), geopolygon=Geometry(_aoi_polygon(spec),
                                                                    crs="EPSG:4326"),
                       chunks={"x": 1024, "y": 1024})
    rgba = _rgba_lazy(*(ds[b].data for b in BANDS))
    return _compute_timed(rgba, clock)


class _ItemShim:
    """Stands in for rustac's ``DuckdbClient`` for lazycogs (in-memory item filtering).

    rustac's DuckDB needs its ``spatial`` extension, which it downloads at run time (not
    possible offline), so lazycogs' item queries (bbox, datetime, ids) run here instead. The
    pixel path (async-geotiff + obstore HTTP range reads) is lazycogs' own.
    """

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    @staticmethod
    def _time(text: str, end: bool = False) -> dt.datetime:
        if "T" not in text:
            text += "T23:59:59.999999Z" if end else "T00:00:00Z"
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    def _match(self, item: Mapping[str, Any], bbox: Sequence[float] | None,
               when: str | None, ids: Sequence[str] | None) -> bool:
        if ids and item["id"] not in ids:
            return False
        if bbox:
            b = item["bbox"]
            if b[0] > bbox[2] or b[2] < bbox[0] or b[1] > bbox[3] or b[3] < bbox[1]:
                return False
        if when:
            t = self._time(item["properties"]["datetime"])
            if "/" in when:
                start, end = when.split("/")
                if start not in ("", "..") and t < self._time(start):
                    return False
                if end not in ("", "..") and t > self._time(end, end=True):
                    return False
            elif "T" in when:
                return t == self._time(when)
            else:
                return t.date().isoformat() == when
        return True

    def search(self, href: str, *, max_items: int | None = None,
               bbox: Sequence[float] | None = None, datetime: str | None = None,
               ids: Sequence[str] | None = None, **_: Any) -> list[dict[str, Any]]:
        """Items matching ``bbox``/``datetime``/``ids`` as ``{id, assets, datetime}`` dicts."""
        found = [{"id": i["id"], "assets": i["assets"], "datetime": i["properties"]["datetime"]}
                 for i in self.items if self._match(i, bbox, datetime, ids)]
        return found[:max_items] if max_items else found

    def search_to_arrow(self, href: str, **kwargs: Any) -> Any:
        """The matching items' datetimes as a minimal Arrow-table look-alike."""
        found = self.search(href, **{k: v for k, v in kwargs.items()
                                     if k in ("bbox", "datetime", "ids")})
        return _Table({"datetime": [i["datetime"] for i in found]})


class _Column:
    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def to_pylist(self) -> list[Any]:
        return list(self.values)


class _Schema:
    def __init__(self, names: list[str]) -> None:
        self.names = names


class _Table:
    """What lazycogs reads of an Arrow table: ``schema.names``, ``column().to_pylist()``."""

    def __init__(self, columns: dict[str, list[Any]]) -> None:
        self.columns = columns
        self.schema = _Schema(list(columns))

    def column(self, name: str) -> _Column:
        return _Column(self.columns[name])

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


def _job_lazycogs(spec: Mapping[str, Any], clock: Clock) -> Any:
    """(d) lazycogs (Python >= 3.12) over the AOI's bounds, 1024-px chunks."""
    from urllib.parse import urlparse

    import lazycogs
    from obstore.store import HTTPStore

    items = _features(spec)
    href = items[0]["assets"][BANDS[0]]["href"]
    parts = urlparse(href)
    clock.start()
    store = HTTPStore.from_url(f"{parts.scheme}://{parts.netloc}",
                               client_options={"allow_http": True})
    arr = lazycogs.open("bench-items.parquet", duckdb_client=_ItemShim(items), store=store,
                        bbox=tuple(spec["aoi"]["utm_bounds"]), crs=TILE_CRS, resolution=RES,
                        bands=list(BANDS), chunks={"time": 1, "y": 1024, "x": 1024})
    rgba = _rgba_lazy(*(arr.sel(band=b).data for b in BANDS))
    return _compute_timed(rgba, clock)


def _apply_patches(patches: Sequence[str]) -> None:
    """Monkeypatch s2intake (in this worker only) for the prototypes in :data:`PATCHES`."""
    import dask

    from s2intake import gdal_env

    for name in patches:
        if name == "singleget":
            gdal_env.DEFAULT_GDAL_OPTIONS["GDAL_HTTP_MULTIRANGE"] = "SINGLE_GET"
        elif name == "nohttp2":
            gdal_env.DEFAULT_GDAL_OPTIONS.pop("GDAL_HTTP_VERSION", None)
            gdal_env.DEFAULT_GDAL_OPTIONS.pop("GDAL_HTTP_MULTIPLEX", None)
        elif name == "ingest16k":
            gdal_env.DEFAULT_GDAL_OPTIONS["GDAL_INGESTED_BYTES_AT_OPEN"] = "16384"
        elif name == "novsicache":
            gdal_env.DEFAULT_GDAL_OPTIONS.pop("VSI_CACHE", None)
            gdal_env.DEFAULT_GDAL_OPTIONS.pop("VSI_CACHE_SIZE", None)
        elif name == "cachemax64":  # read by GDAL from the environment at its first block read
            os.environ["GDAL_CACHEMAX"] = "64"
        elif name == "noverify":
            _patch_noverify()
        elif name.startswith("chunks"):
            _patch_stack(chunks=int(name[len("chunks"):]))
        elif name == "plaincompute":
            pass  # read by _job_s2intake
        elif name == "gdal":
            _patch_stack(reader="gdal")
        elif name.startswith("threads"):
            dask.config.set(num_workers=int(name[len("threads"):]))
        elif name == "arena2":
            pass  # set in the worker's environment by run_worker (glibc reads it at start)
        else:
            raise ValueError(f"unknown s2intake patch {name!r}; known: {', '.join(PATCHES)}")


def _patch_noverify() -> None:
    """Make every ``ReadOptions.make`` call use ``verify_tiles=False``."""
    from s2intake import gdal_env

    original = gdal_env.ReadOptions.make.__func__  # type: ignore[attr-defined]

    def make(cls: Any, gdal_options: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("verify_tiles", False)
        return original(cls, gdal_options, **kwargs)

    gdal_env.ReadOptions.make = classmethod(make)  # type: ignore[method-assign]


def _patch_stack(**forced: Any) -> None:
    """Make every ``s2intake.stack`` call use ``forced`` keyword arguments (``chunks=``...)."""
    import functools
    import importlib

    stack_module = importlib.import_module("s2intake.stack")
    original = stack_module.stack

    @functools.wraps(original)
    def stack(*args: Any, **kwargs: Any) -> Any:
        kwargs.update(forced)
        return original(*args, **kwargs)

    stack_module.stack = stack


def _s2intake_source(spec: Mapping[str, Any]) -> Any:
    """The ``berry_creek`` catalog entry pointed at the bench's item file and AOI."""
    import s2intake

    cat = s2intake.open_catalog(CATALOG)
    args: dict[str, Any] = {"url": spec["items_path"], "start": spec["start"],
                            "end": spec["end"], "max_cloud": 100}
    if spec["aoi"]["name"] != "berry":  # the entry's default AOI is the Berry Creek file
        args["aoi"] = json.dumps(_aoi_polygon(spec))
    return cat.berry_creek(**args)


_RECORDED: dict[str, Any] = {}


def _record_gdal(spec: Mapping[str, Any]) -> None:
    """Remember the GDAL options s2intake will use (its defaults change as it is developed)."""
    from s2intake import gdal_env

    _RECORDED["s2intake_gdal"] = dict(gdal_env.DEFAULT_GDAL_OPTIONS)
    _RECORDED["GDAL_CACHEMAX_env"] = os.environ.get("GDAL_CACHEMAX")


def _job_s2intake(spec: Mapping[str, Any], clock: Clock) -> Any:
    """(e) s2intake through its catalog entry: search the item file, stack, (clip,) RGBA."""
    import s2intake

    _apply_patches(spec.get("patches", ()))
    _record_gdal(spec)
    clock.start()
    ds = _s2intake_source(spec).to_dask()
    if spec["job"] == "load":
        clock.lap("lazy")
        # the documented way to load: compute, then hand the freed chunks back to the OS
        out = ds.compute() if "plaincompute" in spec.get("patches", ()) else ds.s2.compute()
        clock.lap("compute")
        return out
    if spec["aoi"]["kind"] == "polygon":
        ds = ds.s2.clip_aoi()
    rgba = s2intake.to_rgb(ds)
    return _compute_timed(rgba.data, clock)


def _job_s2intake_gif(spec: Mapping[str, Any], clock: Clock) -> Any:
    """The seed's GIF through s2intake: catalog entry, ``clip_aoi``, ``to_gif`` (streamed)."""
    import s2intake  # noqa: F401  (registers ds.s2)

    _apply_patches(spec.get("patches", ()))
    clock.start()
    ds = _s2intake_source(spec).to_dask()
    clipped = ds.s2.clip_aoi()
    clock.lap("lazy")
    path = Path(spec["gif_path"])
    clipped.s2.to_gif(path)
    clock.lap("compute")
    return path


def _window_plan(bounds: Sequence[float]) -> tuple[int, int, int, int, int, int, int, int]:
    """Pixel window of ``bounds`` on the tile grid, and its block-aligned cover.

    Returns ``(r0, r1, c0, c1, br0, br1, bc0, bc1)``: rows/cols of the AOI (end exclusive,
    snapped outward) and of the whole blocks that hold them, clamped to the file.
    """
    minx, miny, maxx, maxy = bounds
    c0 = math.floor((minx - TILE_X0) / RES + 1e-9)
    c1 = math.ceil((maxx - TILE_X0) / RES - 1e-9)
    r0 = math.floor((TILE_Y0 - maxy) / RES + 1e-9)
    r1 = math.ceil((TILE_Y0 - miny) / RES - 1e-9)
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1, TILE_PX), min(r1, TILE_PX)
    bc0, br0 = c0 // BLOCK * BLOCK, r0 // BLOCK * BLOCK
    bc1 = min(-(-c1 // BLOCK) * BLOCK, TILE_PX)
    br1 = min(-(-r1 // BLOCK) * BLOCK, TILE_PX)
    return r0, r1, c0, c1, br0, br1, bc0, bc1


def _job_window(spec: Mapping[str, Any], clock: Clock) -> Any:
    """(f) The lower bound: one open per file, one block-aligned windowed read, numpy RGBA."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import rasterio
    from rasterio.windows import Window

    items = _features(spec)
    clock.start()
    r0, r1, c0, c1, br0, br1, bc0, bc1 = _window_plan(spec["aoi"]["utm_bounds"])
    window = Window(bc0, br0, bc1 - bc0, br1 - br0)
    out = np.zeros((len(items), r1 - r0, c1 - c0, 4), dtype=np.uint8)
    env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES"}

    def one(t: int) -> None:
        planes = []
        with rasterio.Env(**env):
            for band in BANDS:
                with rasterio.open(items[t]["assets"][band]["href"]) as ds:
                    data = ds.read(1, window=window)
                planes.append(data[r0 - br0:r1 - br0, c0 - bc0:c1 - bc0])
        out[t] = _rgba_block(*planes)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(one, range(len(items))))
    clock.lap("lazy")
    clock.lap("compute")
    return out


def _job_search(spec: Mapping[str, Any], clock: Clock) -> Any:
    """The search step: page through every matching item of the replica's STAC API."""
    kind = spec["contender"]
    if kind == "search-pystac":
        import pystac_client

        clock.start()
        client = pystac_client.Client.open(spec["stac_url"])
        found = client.search(collections=["sentinel-2-l2a"], intersects=_aoi_polygon(spec),
                              datetime=f"{spec['start']}/{spec['end']}", limit=spec["limit"])
        items = list(found.items_as_dicts())
    elif kind == "search-s2intake":
        import s2intake

        clock.start()
        items = s2intake.search(_aoi_polygon(spec), f"{spec['start']}/{spec['end']}",
                                url=spec["stac_url"], collection="sentinel-2-l2a",
                                limit=spec["limit"]).items
    else:  # search-catalog: the entry's to_dask (search + lazy graph, no pixel read)
        import s2intake

        clock.start()
        cat = s2intake.open_catalog(CATALOG)
        ds = cat.berry_creek(url=spec["stac_url"], aoi=json.dumps(_aoi_polygon(spec)),
                             start=spec["start"], end=spec["end"], max_cloud=100).to_dask()
        items = list(ds["id"].values)
    clock.lap("compute")
    return len(items)


JOBS: dict[str, Callable[[Mapping[str, Any], Clock], Any]] = {
    "seed": _job_seed,
    "stackstac": _job_stackstac,
    "odc": _job_odc,
    "lazycogs": _job_lazycogs,
    "s2intake": _job_s2intake,
    "window": _job_window,
}


def _describe_output(out: Any) -> dict[str, Any]:
    """Size and a checksum of a job's output (to check that contenders agree).

    Works one time step at a time, so it adds little memory (it runs after the peak RSS
    has been read anyway).
    """
    if isinstance(out, int | Path):
        return {"nbytes": 0, "shape": [], "value": str(out)}
    if hasattr(out, "data_vars"):  # a computed Dataset (the s2intake "load" job)
        return {"nbytes": int(out.nbytes), "shape": [int(v) for v in out.sizes.values()]}
    import numpy as np

    arr = np.asarray(out)
    info: dict[str, Any] = {"nbytes": int(arr.nbytes), "shape": list(arr.shape)}
    if arr.dtype == np.uint8 and arr.ndim >= 3 and arr.shape[-1] == 4:
        steps = arr.reshape((-1, *arr.shape[-3:])) if arr.ndim > 3 else arr[np.newaxis]
        valid = 0
        total = 0
        for step in steps:
            alpha = step[..., 3] == 255
            valid += int(alpha.sum())
            total += int(step[..., :3].sum(axis=-1, dtype=np.uint64)[alpha].sum())
        info["valid_px"] = valid
        info["rgb_mean"] = total / (3 * valid) if valid else 0.0
    return info


def _preimport(contender: str) -> None:
    """Imports the job would otherwise make inside the timed part (imports are excluded).

    dask's first ``compute`` imports ``distributed`` when it is installed (~0.25 s, to look
    for a default client): every dask-based contender pays it, the window reader does not.
    """
    import importlib

    modules = [] if contender == "window" else ["distributed"]
    if contender.startswith("s2intake"):
        modules += ["intake", "s2intake.intake_source"]
    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def worker_main(spec_path: str, result_path: str) -> int:
    """Run one job described by the JSON spec; write the result JSON (always)."""
    spec = _read_json(spec_path)
    result: dict[str, Any] = {"ok": False, "python": platform.python_version(),
                              "pid": os.getpid()}
    clock = Clock()
    try:
        _preimport(spec["contender"])
        if spec["contender"].startswith("search-"):
            out = _job_search(spec, clock)
        elif spec["job"] == "gif":
            out = _job_s2intake_gif(spec, clock)
        else:
            out = JOBS[spec["contender"]](spec, clock)
        # read the peak and the end RSS before anything else allocates
        result.update(ok=True, rss_end=_rss(), peak_rss=_peak_rss())
        result["output"] = _describe_output(out)
        del out
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, not raised
        import traceback

        result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        result["traceback"] = traceback.format_exc()[-4000:]
    result.setdefault("peak_rss", _peak_rss())
    result.update(_RECORDED)
    result.update(laps=clock.laps, rss_start=clock.rss_start, load_start=clock.load_start,
                  load_end=os.getloadavg())
    result["wall"] = clock.laps.get("compute")
    result["cpu"] = clock.cpu.get("compute")
    Path(result_path).write_text(json.dumps(result))
    return 0


# ============================================================================ parent side
def log(message: str) -> None:
    """Progress line on stderr with a timestamp."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


_WAIT_STATE = {"gave_up": False}


def wait_for_quiet(threshold: float, max_wait: float, poll: float = 120.0) -> float:
    """Wait until the 1-minute load average is below ``threshold`` (at most ``max_wait`` s).

    Once a wait has timed out the machine is taken as busy for good: later calls return at
    once (the load is still recorded with every run). Returns the load average seen.
    """
    load = os.getloadavg()[0]
    if threshold <= 0 or _WAIT_STATE["gave_up"]:
        return load
    deadline = time.monotonic() + max_wait
    announced = False
    while load >= threshold and time.monotonic() < deadline:
        if not announced:
            log(f"load average {load:.2f} >= {threshold}: waiting (up to {max_wait:.0f} s, "
                f"polling every {poll:.0f} s)")
            announced = True
        time.sleep(min(poll, max(1.0, deadline - time.monotonic())))
        load = os.getloadavg()[0]
    if load >= threshold:
        log(f"load average still {load:.2f} after waiting {max_wait:.0f} s: measuring anyway "
            "(no more waiting in this run)")
        _WAIT_STATE["gave_up"] = True
    return load


# ---------------------------------------------------------------------------- data
def _utm_to_lonlat(points: Iterable[tuple[float, float]]) -> list[list[float]]:
    from pyproj import Transformer

    tr = Transformer.from_crs(TILE_CRS, "EPSG:4326", always_xy=True)
    return [list(tr.transform(x, y)) for x, y in points]


def aoi_spec(name: str) -> dict[str, Any]:
    """A named AOI as every contender needs it: lon/lat polygon and bbox, UTM bounds."""
    if name in SQUARE_AOIS:
        minx, miny, maxx, maxy = SQUARE_AOIS[name]
        ring = _utm_to_lonlat([(minx, miny), (maxx, miny), (maxx, maxy), (minx, maxy),
                               (minx, miny)])
        polygon = {"type": "Polygon", "coordinates": [ring]}
        utm = [minx, miny, maxx, maxy]
        kind = "square"
    elif name in POLYGON_AOIS:
        from pyproj import Transformer

        data = json.loads(POLYGON_AOIS[name].read_text())
        polygon = data["features"][0]["geometry"] if "features" in data else \
            data.get("geometry", data)
        tr = Transformer.from_crs("EPSG:4326", TILE_CRS, always_xy=True)
        ring = polygon["coordinates"][0]
        xs, ys = tr.transform([p[0] for p in ring], [p[1] for p in ring])
        utm = [math.floor(min(xs) / RES) * RES, math.floor(min(ys) / RES) * RES,
               math.ceil(max(xs) / RES) * RES, math.ceil(max(ys) / RES) * RES]
        kind = "polygon"
    else:
        raise SystemExit(f"unknown AOI {name!r}; known: {', '.join(AOI_ORDER)}")
    lons = [p[0] for p in polygon["coordinates"][0]]
    lats = [p[1] for p in polygon["coordinates"][0]]
    area = (utm[2] - utm[0]) * (utm[3] - utm[1]) / 1e6
    return {"name": name, "kind": kind, "lonlat": polygon, "utm_bounds": utm,
            "lonlat_bbox": [min(lons), min(lats), max(lons), max(lats)], "area_km2": area}


class BenchData:
    """The served folder: ``n_max`` dated copies (hard links) of a few unique acquisitions.

    A dense sample of every date would be ~150-230 MB per band and date (48 x 3 bands: tens
    of GB, most of an hour to build); the COGs of ``unique`` real acquisitions are linked
    under the file names of ``n_max`` items instead, so every item has its own URLs (GDAL and
    the access log see distinct files) while the disk holds ``unique`` x 3 files.
    """

    def __init__(self, serve_root: Path, items_path: Path, sources: list[str],
                 sample_root: Path, dense: bool) -> None:
        self.serve_root = serve_root
        self.items_path = items_path  # FeatureCollection, hrefs under REAL_COG_BASE
        self.sources = sources
        self.sample_root = sample_root
        self.dense = dense

    def items(self) -> list[dict[str, Any]]:
        """The bench items (hrefs still under :data:`REAL_COG_BASE`)."""
        return _read_json(self.items_path)["features"]

    def write_items(self, base: str, path: Path) -> Path:
        """Write the items as a FeatureCollection with hrefs on ``base`` (the server)."""
        from s2intake.sample import rebase_hrefs

        fc = {"type": "FeatureCollection", "features": rebase_hrefs(self.items(), base)}
        path.write_text(json.dumps(fc))
        return path

    def local_file(self, href: str) -> Path:
        """The served file behind an item href."""
        return self.serve_root / href[len(REAL_COG_BASE) + 1:]


def _dense_sample(root: Path, unique: int) -> Path:
    """Build (or reuse) a dense sample of ``unique`` 10SFJ dates, red/green/blue only.

    A folder whose manifest has the same parameters and all its files is reused even when
    ``s2intake/sample.py`` changed since (the build takes minutes; pixel statistics do not
    matter here). Delete the folder to rebuild.
    """
    from s2intake.sample import build_sample

    params = {"dense": True, "n_dates": unique, "bands": sorted(BANDS)}
    manifest = root / "manifest.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        meta = json.loads(manifest.read_text())
        same = (meta["params"]["dense"] is True and meta["params"]["n_dates"] == unique
                and sorted(meta["params"]["bands"] or []) == params["bands"])
        if same and all((root / f).is_file() for f in meta["files"]):
            log(f"reusing dense sample {root} (built {meta.get('built')})")
            return root
    log(f"building a dense sample of {unique} dates x {len(BANDS)} bands in {root} "
        "(several minutes)")
    build_sample(root, dense=True, n_dates=unique, bands=list(BANDS), force=True,
                 progress=lambda m: log(f"  sample: {m}"))
    return root


def prepare_data(dense: bool, n_max: int, unique: int, data_root: Path | None,
                 view_root: Path | None) -> BenchData:
    """Build/reuse the sample and lay out the served folder of ``n_max`` dated items."""
    from s2intake.sample import build_sample

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "s2intake"
    if dense:
        sample_root = _dense_sample(data_root or cache / f"bench-dense-u{unique}", unique)
    elif data_root is not None:
        sample_root = data_root
    else:
        sample_root = build_sample(progress=lambda m: log(f"  sample: {m}")).root
    feats = _read_json(sample_root / "stac" / "v1" / "items.json")["features"]
    tiles = sorted((f for f in feats if "_10SFJ_" in f["id"]),
                   key=lambda f: f["properties"]["datetime"])
    if dense:
        sources = tiles[:unique]
    else:  # the sparse sample: prefer clear, whole dates (no wedge, few clouds)
        sources = sorted(tiles, key=lambda f: (f["properties"].get("s2:nodata_pixel_percentage",
                                                                   0) > 1,
                                               f["properties"].get("eo:cloud_cover", 0)))[:unique]
    if not sources:
        raise SystemExit(f"no 10SFJ items in {sample_root}")
    kind = "dense" if dense else "sparse"
    view = view_root or cache / "bench-views" / f"{kind}-u{len(sources)}"
    items: list[dict[str, Any]] = []
    for k in range(n_max):
        src = sources[k % len(sources)]
        items.append(_clone_item(src, k, view, sample_root))
    view.mkdir(parents=True, exist_ok=True)
    items_path = view / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return BenchData(view, items_path, [s["id"] for s in sources], sample_root, dense)


def _clone_item(src: Mapping[str, Any], k: int, view: Path, sample_root: Path) -> dict[str, Any]:
    """Item ``k`` of the bench: ``src`` re-dated, its band files linked under a new id."""
    import copy

    date = FIRST_DATE + dt.timedelta(days=5 * k)
    when = dt.datetime.fromisoformat(src["properties"]["datetime"].replace("Z", "+00:00"))
    when = dt.datetime.combine(date, when.timetz())
    sat = src["id"].split("_")[0]
    new_id = f"{sat}_10SFJ_{date:%Y%m%d}_0_L2A"
    item = copy.deepcopy(dict(src))
    item["id"] = new_id
    item["properties"]["datetime"] = when.isoformat().replace("+00:00", "Z")
    item["links"] = []
    item["assets"] = {}
    for band in BANDS:
        asset = copy.deepcopy(src["assets"][band])
        rel_src = asset["href"][len(REAL_COG_BASE) + 1:]
        name = rel_src.rsplit("/", 1)[1]
        rel = f"sentinel-s2-l2a-cogs/10/S/FJ/{date.year}/{date.month}/{new_id}/{name}"
        target = view / rel
        source = sample_root / rel_src
        if not target.exists() or os.stat(target).st_ino != os.stat(source).st_ino:
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            try:
                os.link(source, target)
            except OSError:  # another file system: nginx follows symlinks
                target.symlink_to(source)
        asset["href"] = f"{REAL_COG_BASE}/{rel}"
        item["assets"][band] = asset
    return item


# ---------------------------------------------------------------------------- I/O accounting
_TILE_BYTES: dict[tuple[int, int], dict[tuple[int, int], int]] = {}


def _block_sizes(path: Path) -> dict[tuple[int, int], int]:
    """Compressed byte count of every full-resolution tile of a local COG, by (row, col)."""
    import rasterio

    st = path.stat()
    key = (st.st_dev, st.st_ino)
    if key not in _TILE_BYTES:
        sizes = {}
        with rasterio.open(path) as ds:
            rows = -(-ds.height // BLOCK)
            cols = -(-ds.width // BLOCK)
            for r in range(rows):
                for c in range(cols):
                    value = ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1)
                    sizes[(r, c)] = int(value) if value else 0
        _TILE_BYTES[key] = sizes
    return _TILE_BYTES[key]


def needed_bytes(data: BenchData, items: Sequence[Mapping[str, Any]],
                 bounds: Sequence[float]) -> tuple[int, int]:
    """Compressed bytes and count of the internal tiles the AOI touches, over all files."""
    r0, r1, c0, c1, _, _, _, _ = _window_plan(bounds)
    blocks = [(r, c) for r in range(r0 // BLOCK, (r1 - 1) // BLOCK + 1)
              for c in range(c0 // BLOCK, (c1 - 1) // BLOCK + 1)]
    total = count = 0
    for item in items:
        for band in BANDS:
            sizes = _block_sizes(data.local_file(item["assets"][band]["href"]))
            for block in blocks:
                if sizes.get(block):
                    total += sizes[block]
                    count += 1
    return total, count


def io_stats(entries: Sequence[Any]) -> dict[str, Any]:
    """Requests and bytes of a run from nginx's access log entries."""
    per_file = Counter(e.path for e in entries)
    return {
        "requests": len(entries),
        "bytes": sum(e.bytes for e in entries),
        "heads": sum(1 for e in entries if e.method == "HEAD"),
        "unranged_gets": sum(1 for e in entries if e.method == "GET" and not e.range),
        "files": len(per_file),
        "max_req_per_file": max(per_file.values(), default=0),
        "mean_req_per_file": (len(entries) / len(per_file)) if per_file else 0.0,
        "bad_status": sum(1 for e in entries if e.status >= 400),
    }


# ---------------------------------------------------------------------------- running
def _python_for(contender: str) -> list[str] | None:
    """Interpreter for a contender (lazycogs needs the 3.12 venv); None when unavailable."""
    if contender.split("+")[0] == "lazycogs":
        python = VENV312 / "bin" / "python"
        if not python.exists():
            return None
        check = subprocess.run([str(python), "-c", "import lazycogs, dask, obstore"],
                               capture_output=True, text=True)
        return [str(python)] if check.returncode == 0 else None
    return [sys.executable]


def run_worker(server: Any, spec: dict[str, Any], workdir: Path, timeout: float
               ) -> dict[str, Any]:
    """Run one job in a fresh process; add the access-log I/O of exactly that process."""
    python = _python_for(spec["contender"])
    if python is None:
        return {"ok": False, "error": "interpreter unavailable (bench/.venv312 with lazycogs)"}
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="spec-", suffix=".json", dir=workdir)
    os.close(fd)
    spec_path = Path(name)
    result_path = spec_path.with_name(spec_path.name.replace("spec-", "result-"))
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in env.get(var, "").split(",") if h]
        env[var] = ",".join(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))
    env["PYTHONPATH"] = str(REPO)
    if "arena2" in spec.get("patches", ()):
        env["MALLOC_ARENA_MAX"] = "2"
    mark = server.mark() if server is not None else 0
    started = time.perf_counter()
    try:
        proc = subprocess.run([*python, "-m", "bench.run", "_worker", str(spec_path),
                               str(result_path)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=timeout)
        stderr = proc.stderr
        if proc.returncode < 0:
            stderr = f"killed by signal {-proc.returncode} (SIGKILL: the kernel's OOM killer?) " \
                + stderr
    except subprocess.TimeoutExpired as exc:
        stderr = f"timeout after {timeout} s: {exc.stderr!r}"[-2000:]
    process_seconds = time.perf_counter() - started
    try:
        result = _read_json(result_path)
    except (OSError, ValueError):
        result = {"ok": False, "error": f"no result; stderr: {stderr[-1500:]}"}
    result["process_seconds"] = process_seconds
    if server is not None:
        result.update(io_stats(server.entries_since(mark)))
    with contextlib.suppress(OSError):
        spec_path.unlink()
        result_path.unlink()
    return result


def _contender_parts(name: str) -> tuple[str, list[str]]:
    base, *patches = name.split("+")
    if base not in CONTENDERS:
        raise SystemExit(f"unknown contender {base!r}; known: {', '.join(CONTENDERS)}")
    if patches and base != "s2intake":
        raise SystemExit(f"patches apply to s2intake only, not {name!r}")
    for patch in patches:
        if patch not in PATCHES and not re.fullmatch(r"(chunks|threads)\d+", patch):
            raise SystemExit(f"unknown patch {patch!r}; known: {', '.join(PATCHES)}")
    return base, patches


def _cell_spec(contender: str, aoi: dict[str, Any], n_dates: int, job: str,
               items_path: Path, data: BenchData) -> dict[str, Any]:
    base, patches = _contender_parts(contender)
    feats = data.items()[:n_dates]
    start = feats[0]["properties"]["datetime"][:10]
    end = feats[-1]["properties"]["datetime"][:10]
    return {"contender": base, "label": contender, "patches": patches, "aoi": aoi,
            "n_dates": n_dates, "job": job, "items_path": str(items_path), "start": start,
            "end": end}


def run_cells(cells: Sequence[tuple[str, str, int, str]], repeats: int, data: BenchData,
              server: Any, items_path: Path, workdir: Path, args: argparse.Namespace,
              sink: Callable[[dict[str, Any]], None]) -> None:
    """Run every (contender, aoi, dates, job) cell ``repeats`` times, round-robin."""
    aois = {name: aoi_spec(name) for name in {c[1] for c in cells}}
    need: dict[tuple[str, int], tuple[int, int]] = {}
    for _, aoi_name, n_dates, _ in cells:
        key = (aoi_name, n_dates)
        if key not in need:
            need[key] = needed_bytes(data, data.items()[:n_dates], aois[aoi_name]["utm_bounds"])
    for rep in range(repeats):
        for contender, aoi_name, n_dates, job in cells:
            load = wait_for_quiet(args.wait_load, args.max_wait)
            spec = _cell_spec(contender, aois[aoi_name], n_dates, job, items_path, data)
            if job == "gif":
                spec["gif_path"] = str(workdir / f"{contender}-{aoi_name}-{n_dates}.gif")
            result = run_worker(server, spec, workdir / "tmp", args.timeout)
            tile_bytes, tiles = need[(aoi_name, n_dates)]
            result.update(contender=contender, aoi=aoi_name, n_dates=n_dates, job=job,
                          repeat=rep, tile_bytes=tile_bytes, tiles=tiles, load_before=load,
                          area_km2=aois[aoi_name]["area_km2"], time=time.time())
            sink(result)
            _say(result)


def _say(r: Mapping[str, Any]) -> None:
    if not r.get("ok"):
        log(f"{r['contender']:>20} {r['aoi']:>5} {r['n_dates']:>2}d {r['job']:>5} FAILED: "
            f"{r.get('error', '')[:300]}")
        return
    ratio = r["bytes"] / r["tile_bytes"] if r.get("tile_bytes") else float("nan")
    log(f"{r['contender']:>20} {r['aoi']:>5} {r['n_dates']:>2}d {r['job']:>5} "
        f"wall {r['wall']:7.2f} s cpu {r.get('cpu') or 0:6.2f} s  req {r['requests']:5d} (max/file {r['max_req_per_file']})  "
        f"{r['bytes'] / MIB:8.1f} MiB ({ratio:4.2f} x tiles)  peak {r['peak_rss'] / MIB:6.0f} MiB"
        f"  load {r['load_before']:.1f}")


# ---------------------------------------------------------------------------- search step
def run_search(data: BenchData, n_items: int, repeats: int, workdir: Path,
               args: argparse.Namespace, sink: Callable[[dict[str, Any]], None]) -> None:
    """Page ``n_items`` items out of a local pgstac + stac-fastapi replica, per client."""
    from s2intake.replica import Replica

    aoi = aoi_spec("6km")
    base = data.items()[0]
    items = []
    for k in range(n_items):
        item = json.loads(json.dumps(base))
        date = dt.date(2020, 1, 1) - dt.timedelta(days=5 * k)
        item["id"] = f"BENCH_10SFJ_{date:%Y%m%d}_{k}_L2A"
        item["properties"]["datetime"] = f"{date.isoformat()}T18:59:21Z"
        items.append(item)
    collection = _read_json(data.sample_root / "stac" / "v1" / "collection.json")
    start = (dt.date(2020, 1, 1) - dt.timedelta(days=5 * n_items)).isoformat()
    log(f"search step: starting the replica (pgstac + stac-fastapi) with {n_items} items")
    replica = Replica(data.serve_root, workdir / "replica")
    try:
        replica.load([collection], items)
        for rep in range(repeats):
            for contender in ("search-pystac", "search-s2intake", "search-catalog"):
                load = wait_for_quiet(args.wait_load, args.max_wait)
                spec = {"contender": contender, "label": contender, "aoi": aoi,
                        "stac_url": replica.stac_url, "start": start, "end": "2020-01-01",
                        "limit": 100, "job": "search", "n_dates": n_items}
                result = run_worker(None, spec, workdir / "tmp", args.timeout)
                result.update(contender=contender, aoi="6km", n_dates=n_items, job="search",
                              repeat=rep, load_before=load, time=time.time())
                sink(result)
                found = result.get("output", {}).get("value")
                log(f"{contender:>20} {'ok' if result.get('ok') else 'FAILED'} "
                    f"{result.get('wall') or 0:.2f} s, {found} items "
                    f"{result.get('error', '')[:200]}")
    finally:
        replica.close()


# ---------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    versions = {}
    for module in ("rasterio", "stackstac", "odc.stac", "rioxarray", "dask", "numpy",
                   "xarray", "s2intake"):
        with contextlib.suppress(Exception):
            mod = __import__(module, fromlist=["__version__"])
            versions[module] = getattr(mod, "__version__", "?")
    with contextlib.suppress(Exception):
        import rasterio

        info["gdal"] = rasterio.__gdal_version__
    lazy = VENV312 / "bin" / "python"
    if lazy.exists():
        proc = subprocess.run([str(lazy), "-c", "import importlib.metadata as m, platform;"
                               "print(m.version('lazycogs'), m.version('async-geotiff'),"
                               "platform.python_version())"], capture_output=True, text=True)
        if proc.returncode == 0:
            lc, ag, py = proc.stdout.split()
            versions["lazycogs"] = f"{lc} (async-geotiff {ag}, Python {py})"
    info["versions"] = versions
    import hashlib

    info["s2intake_sources"] = {
        name: hashlib.blake2b((REPO / "s2intake" / name).read_bytes(), digest_size=4).hexdigest()
        for name in ("reader.py", "stack.py", "gdal_env.py", "render.py", "intake_source.py")
        if (REPO / "s2intake" / name).exists()}
    return info


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarise(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Median per (job, aoi, dates, contender) over the successful repeats."""
    groups: dict[tuple[str, str, int, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        groups[(r["job"], r["aoi"], r["n_dates"], r["contender"])].append(r)
    rows = []
    for (job, aoi, n, contender), rs in groups.items():
        ok = [r for r in rs if r.get("ok")]
        row: dict[str, Any] = {"job": job, "aoi": aoi, "n_dates": n, "contender": contender,
                               "runs": len(ok), "failed": len(rs) - len(ok)}
        if not ok:
            row["error"] = rs[-1].get("error", "")
            rows.append(row)
            continue
        for key in ("wall", "cpu", "requests", "bytes", "peak_rss", "rss_end", "rss_start", "heads",
                    "max_req_per_file", "mean_req_per_file", "files", "tile_bytes", "tiles",
                    "load_before", "area_km2"):
            row[key] = _median(r.get(key) for r in ok)
        row["wall_min"] = min(r["wall"] for r in ok)
        row["wall_max"] = max(r["wall"] for r in ok)
        row["lazy"] = _median(r.get("laps", {}).get("lazy") for r in ok)
        row["out_nbytes"] = ok[0].get("output", {}).get("nbytes")
        row["valid_px"] = ok[0].get("output", {}).get("valid_px")
        row["rgb_mean"] = ok[0].get("output", {}).get("rgb_mean")
        rows.append(row)
    order = {name: i for i, name in enumerate(AOI_ORDER)}
    rows.sort(key=lambda r: (r["job"], order.get(r["aoi"], 99), r["n_dates"],
                             _contender_rank(r["contender"])))
    return rows


def _contender_rank(name: str) -> tuple[int, str]:
    base = name.split("+")[0]
    rank = CONTENDERS.index(base) if base in CONTENDERS else 99
    return rank, name


def _fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value / scale, spec)


def targets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check s2intake's targets per cell against the window reader and the anchors."""
    by_cell: dict[tuple[str, str, int], dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for r in rows:
        if r.get("runs"):
            by_cell[(r["job"], r["aoi"], r["n_dates"])][r["contender"]] = r
    checks = []
    for (job, aoi, n), cell in by_cell.items():
        if job not in ("rgba", "load", "gif"):
            continue
        anchors = [cell[a]["wall"] for a in ANCHORS if a in cell]
        window = cell.get("window", {}).get("wall")
        for name, r in cell.items():
            if not name.startswith("s2intake"):
                continue
            check: dict[str, Any] = {"job": job, "aoi": aoi, "n_dates": n, "contender": name}
            if r.get("tile_bytes"):
                check["bytes_ratio"] = r["bytes"] / r["tile_bytes"]
                check["bytes_ok"] = check["bytes_ratio"] <= 1.05
            check["max_req_per_file"] = r["max_req_per_file"]
            check["req_ok"] = r["max_req_per_file"] <= 2
            if window and job == "rgba":
                check["vs_window"] = r["wall"] / window
                check["window_ok"] = check["vs_window"] <= 1.0
            if anchors and job == "rgba":
                check["vs_best_anchor"] = r["wall"] / min(anchors)
                check["anchor_ok"] = check["vs_best_anchor"] <= 0.8
            if job == "load" and r.get("out_nbytes") is not None:
                check["end_rss_over_output_mib"] = (r["rss_end"] - r["out_nbytes"]) / MIB
                check["growth_over_output_mib"] = (r["rss_end"] - r["rss_start"]
                                                   - r["out_nbytes"]) / MIB
                check["memory_ok"] = r["rss_end"] <= r["out_nbytes"] + 300 * MIB
            if job == "gif":
                check["peak_mib"] = r["peak_rss"] / MIB
                check["gif_memory_ok"] = r["peak_rss"] <= 600 * MIB
            checks.append(check)
    return checks


def markdown(rows: Sequence[Mapping[str, Any]], checks: Sequence[Mapping[str, Any]],
             meta: Mapping[str, Any]) -> str:
    """The generated part of RESULTS.md: machine, configuration, tables."""
    m = meta["machine"]
    loads = meta.get("loads") or [0.0]
    lines = [
        f"Run `{meta['command']}` finished {meta['finished']} (took {meta['seconds'] / 60:.0f} "
        "min).",
        "",
        f"- Machine: {m.get('cpu', '?')}, {m['nproc']} cores, {m.get('ram_gib', '?')} GiB RAM, "
        f"{m['platform']}",
        f"- GDAL {m.get('gdal', '?')} (rasterio wheel); "
        + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()),
        f"- Load average (1 min) before each run: min {min(loads):.2f}, median "
        f"{statistics.median(loads):.2f}, max {max(loads):.2f}"
        + (f"; the harness waited for < {meta['wait_load']}"
           + (" but gave up after --max-wait and measured anyway" if meta.get("gave_up")
              else "") if meta.get("wait_load") else ""),
        f"- Data: {meta['data']}",
        "- s2intake sources measured (blake2b-32): "
        + ", ".join(f"{k} {v}" for k, v in m.get("s2intake_sources", {}).items()),
        f"- Repeats: {meta['repeats']} (median shown; whole-tile cells: {meta['tile_repeats']})",
        "",
        "wall = seconds from the first call to the computed RGBA array (imports excluded); "
        "cpu = CPU seconds (user + system, all threads) of the process in that time; "
        "cpu ms/tile = cpu / (files x internal tiles the AOI touches); "
        "req = HTTP requests (HEAD + GET) in nginx's log; MiB = body bytes sent; "
        "x tiles = bytes / compressed bytes of the internal tiles the AOI touches; "
        "max/file = most requests to one file; peak = peak RSS of the process (ru_maxrss); "
        "end = RSS after the job with its output alive; out = output size.",
        "",
    ]
    for job, title in (("rgba", "RGBA jobs"), ("load", "s2intake load (uint16 Dataset)"),
                       ("gif", "GIF (seed's run)"), ("search", "Search step")):
        sub = [r for r in rows if r["job"] == job]
        if not sub:
            continue
        lines += [f"### {title}", ""]
        if job == "search":
            lines += ["| client | items | wall s | peak MiB | runs |", "|---|---:|---:|---:|---:|"]
            for r in sub:
                lines.append(f"| {r['contender']} | {r['n_dates']} | {_fmt(r.get('wall'), '.2f')}"
                             f" | {_fmt(r.get('peak_rss'), '.0f', MIB)} | {r['runs']} |")
            lines.append("")
            continue
        lines += ["| AOI | dates | contender | wall s (min–max) | cpu s | cpu ms/tile | req | "
                  "max/file | MiB | x tiles | peak MiB | end MiB | out MiB | runs |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sub:
            if not r.get("runs"):
                lines.append(f"| {r['aoi']} | {r['n_dates']} | {r['contender']} | failed: "
                             f"{str(r.get('error', ''))[:80]} | | | | | | | | | | 0 |")
                continue
            ratio = r["bytes"] / r["tile_bytes"] if r.get("tile_bytes") else None
            per_tile = 1000 * r["cpu"] / r["tiles"] if r.get("tiles") and r.get("cpu") else None
            lines.append(
                f"| {r['aoi']} | {r['n_dates']} | {r['contender']} | {r['wall']:.2f} "
                f"({r['wall_min']:.2f}–{r['wall_max']:.2f}) | {_fmt(r.get('cpu'), '.2f')} | "
                f"{_fmt(per_tile, '.1f')} | {r['requests']:.0f} | "
                f"{r['max_req_per_file']:.0f} | {r['bytes'] / MIB:.1f} | {_fmt(ratio, '.2f')} | "
                f"{r['peak_rss'] / MIB:.0f} | {r['rss_end'] / MIB:.0f} | "
                f"{_fmt(r.get('out_nbytes'), '.0f', MIB)} | {r['runs']} |")
        lines.append("")
    if checks:
        lines += ["### s2intake targets per cell", "",
                  "| job | AOI | dates | variant | bytes/tiles (≤1.05) | max req/file (≤2) | "
                  "vs window (≤1.0) | vs best anchor (≤0.8) | memory |",
                  "|---|---|---:|---|---:|---:|---:|---:|---|"]
        for c in checks:
            memory = "–"
            if "memory_ok" in c:
                memory = (f"end − output = {c['end_rss_over_output_mib']:.0f} MiB "
                          f"{'✅' if c['memory_ok'] else '❌'} (end − start − output = "
                          f"{c['growth_over_output_mib']:.0f} MiB)")
            elif "gif_memory_ok" in c:
                memory = f"peak {c['peak_mib']:.0f} MiB {'✅' if c['gif_memory_ok'] else '❌'}"
            lines.append(
                f"| {c['job']} | {c['aoi']} | {c['n_dates']} | {c['contender']} | "
                f"{_mark(c, 'bytes_ok', _fmt(c.get('bytes_ratio'), '.3f'))} | "
                f"{_mark(c, 'req_ok', str(c['max_req_per_file']))} | "
                f"{_mark(c, 'window_ok', _fmt(c.get('vs_window'), '.2f'))} | "
                f"{_mark(c, 'anchor_ok', _fmt(c.get('vs_best_anchor'), '.2f'))} | {memory} |")
        lines.append("")
    return "\n".join(lines)


def _mark(check: Mapping[str, Any], key: str, value: str) -> str:
    if key not in check:
        return "–"
    return f"{value} {'✅' if check[key] else '❌'}"


def plot(rows: Sequence[Mapping[str, Any]], path: Path, fixed_dates: int, fixed_aoi: str) -> bool:
    """Wall time and peak RSS against dates and AOI area, one line per contender."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    rgba = [r for r in rows if r["job"] == "rgba" and r.get("runs")]
    if not rgba:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    names = sorted({r["contender"] for r in rgba}, key=_contender_rank)
    for name in names:
        by_date = sorted((r for r in rgba if r["contender"] == name and r["aoi"] == fixed_aoi),
                         key=lambda r: r["n_dates"])
        by_area = sorted((r for r in rgba if r["contender"] == name
                          and r["n_dates"] == fixed_dates and r["aoi"] in SQUARE_AOIS),
                         key=lambda r: r["area_km2"])
        style = {"marker": "o", "linewidth": 2 if name.startswith("s2intake") else 1}
        if by_date:
            axes[0].plot([r["n_dates"] for r in by_date], [r["wall"] for r in by_date],
                         label=name, **style)
            axes[2].plot([r["n_dates"] for r in by_date],
                         [r["peak_rss"] / MIB for r in by_date], label=name, **style)
        if by_area:
            axes[1].plot([r["area_km2"] for r in by_area], [r["wall"] for r in by_area],
                         label=name, **style)
    axes[0].set(xlabel="dates (3 bands)", ylabel="wall time, s",
                title=f"{fixed_aoi} AOI: time vs dates", xscale="log", yscale="log")
    axes[1].set(xlabel="AOI area, km²", ylabel="wall time, s",
                title=f"{fixed_dates} dates: time vs AOI area", xscale="log", yscale="log")
    axes[2].set(xlabel="dates (3 bands)", ylabel="peak RSS, MiB",
                title=f"{fixed_aoi} AOI: peak memory vs dates", xscale="log")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
            break
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


BEGIN, END = "<!-- bench:begin (generated by python -m bench.run) -->", "<!-- bench:end -->"


def write_results_md(path: Path, generated: str, image: str | None) -> None:
    """Put the generated tables between the markers of ``path``, keeping the rest."""
    block = f"{BEGIN}\n\n{generated}\n" + (f"\n![results]({image})\n" if image else "") + \
        f"\n{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + block + tail)
            return
    path.write_text("# Benchmark results\n\n" + block + "\n")


# ---------------------------------------------------------------------------- plan
def plan_cells(args: argparse.Namespace) -> tuple[list[tuple[str, str, int, str]],
                                                  list[tuple[str, str, int, str]]]:
    """(cells, tile cells): the sweep as (contender, aoi, dates, job) tuples."""
    contenders = args.contenders
    cells: list[tuple[str, str, int, str]] = []
    seen = set()

    def add(c: str, aoi: str, n: int, job: str) -> None:
        if (c, aoi, n, job) not in seen:
            seen.add((c, aoi, n, job))
            cells.append((c, aoi, n, job))

    for aoi in args.aois:  # AOI sweep at a fixed number of dates
        for c in contenders:
            add(c, aoi, args.fixed_dates, "rgba")
    for n in args.dates:  # date sweep at a fixed AOI
        for c in contenders:
            add(c, args.fixed_aoi, n, "rgba")
    if args.load_job:
        for c in contenders:
            if c.startswith("s2intake"):
                for aoi in args.aois:
                    add(c, aoi, args.fixed_dates, "load")
                add(c, args.fixed_aoi, max(args.dates), "load")
    tile_cells: list[tuple[str, str, int, str]] = []
    if args.tile:
        for c in contenders:
            tile_cells.append((c, "tile", args.tile_dates, "rgba"))
        if args.load_job:
            tile_cells += [(c, "tile", args.tile_dates, "load") for c in contenders
                           if c.startswith("s2intake")]
    if args.gif:
        tile_cells += [(c, "berry", args.gif_dates, "gif") for c in contenders
                       if c.startswith("s2intake")]
    return cells, tile_cells


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``python -m bench.run --help``)."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny run on the default sparse sample: window + s2intake, 1km, "
                        "2 dates, 1 repeat; writes only under --out")
    p.add_argument("--contenders", type=lambda s: [c for c in s.split(",") if c],
                   help=f"comma list of {', '.join(CONTENDERS)} (s2intake+PATCH allowed: "
                        f"{', '.join(PATCHES)}); default all six")
    p.add_argument("--aois", type=lambda s: [a for a in s.split(",") if a],
                   help="AOIs of the AOI sweep (default 1km,6km,20km)")
    p.add_argument("--dates", type=lambda s: [int(a) for a in s.split(",") if a],
                   help="date counts of the date sweep (default 6,12,24,48)")
    p.add_argument("--fixed-dates", type=int, help="dates of the AOI sweep (default 12)")
    p.add_argument("--fixed-aoi", help="AOI of the date sweep (default 6km)")
    p.add_argument("--repeats", type=int, help="repeats per cell (default 3)")
    p.add_argument("--tile", action=argparse.BooleanOptionalAction, default=None,
                   help="whole-tile cells (default on, off with --quick)")
    p.add_argument("--tile-dates", type=int, default=6)
    p.add_argument("--tile-repeats", type=int, default=1)
    p.add_argument("--gif", action=argparse.BooleanOptionalAction, default=None,
                   help="the seed's GIF through s2intake (berry AOI; default on, off with "
                        "--quick)")
    p.add_argument("--gif-dates", type=int, default=48)
    p.add_argument("--load-job", action=argparse.BooleanOptionalAction, default=None,
                   help="s2intake 'load' job (uint16 Dataset) for the memory target")
    p.add_argument("--search", action=argparse.BooleanOptionalAction, default=None,
                   help="the search step against a pgstac replica (default on, off with --quick)")
    p.add_argument("--search-items", type=int, default=500)
    p.add_argument("--dense", action=argparse.BooleanOptionalAction, default=None,
                   help="dense full-size COGs (default; --no-dense: the sparse sample)")
    p.add_argument("--unique", type=int, default=4,
                   help="unique acquisitions behind the dated items (default 4)")
    p.add_argument("--data-root", type=Path, help="sample folder to use (built if dense)")
    p.add_argument("--out", type=Path, help="output folder (default bench/out/<time>)")
    p.add_argument("--results", type=Path,
                   help="RESULTS.md to update (default bench/RESULTS.md; --quick: under --out)")
    p.add_argument("--wait-load", type=float, default=None,
                   help="wait before each run until the 1-min load average is below this "
                        "(default 2.5; 0 = never wait; --quick: 0)")
    p.add_argument("--max-wait", type=float, default=1800.0,
                   help="longest wait for a quiet machine before each run, s")
    p.add_argument("--timeout", type=float, default=1800.0, help="per-run timeout, s")
    p.add_argument("--report", type=Path, metavar="RESULTS_JSONL",
                   help="only rebuild the tables and plot from a results.jsonl of an earlier run "
                        "(its folder's meta.json is used when present)")
    args = p.parse_args(argv)
    quick = args.quick
    args.contenders = args.contenders or (["window", "s2intake"] if quick else list(CONTENDERS))
    for c in args.contenders:
        _contender_parts(c)
    args.aois = args.aois or (["1km"] if quick else ["1km", "6km", "20km"])
    for a in args.aois:
        if a not in SQUARE_AOIS and a not in POLYGON_AOIS:
            p.error(f"unknown AOI {a!r}")
    args.dates = args.dates or ([2] if quick else [6, 12, 24, 48])
    args.fixed_dates = args.fixed_dates or (2 if quick else 12)
    args.fixed_aoi = args.fixed_aoi or ("1km" if quick else "6km")
    args.repeats = args.repeats or (1 if quick else 3)
    args.tile = (not quick) if args.tile is None else args.tile
    args.gif = (not quick) if args.gif is None else args.gif
    args.search = (not quick) if args.search is None else args.search
    args.load_job = (not quick) if args.load_job is None else args.load_job
    args.dense = (not quick) if args.dense is None else args.dense
    args.wait_load = (0.0 if quick else 2.5) if args.wait_load is None else args.wait_load
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out = args.out or OUT_DIR / (("quick-" if quick else "") + stamp)
    args.results = args.results or (args.out / "RESULTS.md" if quick else RESULTS_MD)
    args.command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the results; 0 when every run succeeded."""
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_worker":
        return worker_main(argv[1], argv[2])
    args = parse_args(argv)
    if args.report:
        return report_only(args)
    from s2intake.replica import CogServer

    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    cells, tile_cells = plan_cells(args)
    n_max = max([n for _, _, n, _ in cells + tile_cells] + [1])
    data = prepare_data(args.dense, n_max, args.unique, args.data_root, None)
    if "lazycogs" in args.contenders and _python_for("lazycogs") is None:
        log("lazycogs unavailable (needs bench/.venv312 with lazycogs: see README): skipped")
        args.contenders = [c for c in args.contenders if c != "lazycogs"]
        cells = [c for c in cells if c[0] != "lazycogs"]
        tile_cells = [c for c in tile_cells if c[0] != "lazycogs"]
    results_path = args.out / "results.jsonl"
    results: list[dict[str, Any]] = []

    def sink(result: dict[str, Any]) -> None:
        results.append(result)
        with open(results_path, "a") as fh:
            fh.write(json.dumps(result) + "\n")

    log(f"{len(cells)} cells x {args.repeats} repeats + {len(tile_cells)} tile/GIF cells x "
        f"{args.tile_repeats}; data {data.serve_root} ({'dense' if data.dense else 'sparse'}, "
        f"unique {len(data.sources)}); output {args.out}")
    server = CogServer(data.serve_root, args.out / "nginx")
    server.start()
    try:
        items_path = data.write_items(server.url, args.out / "items.json")
        run_cells(cells, args.repeats, data, server, items_path, args.out, args, sink)
        if tile_cells:
            run_cells(tile_cells, args.tile_repeats, data, server, items_path, args.out, args,
                      sink)
    finally:
        server.stop()
    if args.search:
        run_search(data, args.search_items, args.repeats, args.out, args, sink)
    meta = {
        "machine": machine(), "command": args.command, "seconds": time.time() - started,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loads": [r["load_before"] for r in results if "load_before" in r],
        "wait_load": args.wait_load, "gave_up": _WAIT_STATE["gave_up"], "repeats": args.repeats, "tile_repeats": args.tile_repeats,
        "data": (f"{'dense full-size' if data.dense else 'sparse'} 10SFJ COGs "
                 f"(10980 x 10980 px, 1024-px DEFLATE tiles): {len(data.sources)} unique "
                 f"acquisitions x {len(BANDS)} bands hard-linked under {n_max} dated items "
                 f"({', '.join(data.sources)})"),
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    write_report(results, meta, args.out, args.results, args.fixed_dates, args.fixed_aoi)
    failed = [r for r in results if not r.get("ok")]
    log(f"done in {(time.time() - started) / 60:.1f} min: {len(results)} runs, "
        f"{len(failed)} failed; results in {args.results}")
    return 1 if failed else 0


def write_report(results: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], out: Path,
                 results_md: Path, fixed_dates: int, fixed_aoi: str) -> None:
    """summary.json, results.png and the generated part of ``results_md``."""
    rows = summarise(results)
    checks = targets(rows)
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows,
                                                  "checks": checks}, indent=1))
    png = out / "results.png"
    has_plot = plot(rows, png, fixed_dates, fixed_aoi)
    image = None
    if has_plot:
        if results_md.resolve().parent == BENCH_DIR.resolve():
            shutil.copyfile(png, RESULTS_PNG)
            image = RESULTS_PNG.name
        else:
            image = os.path.relpath(png, results_md.parent)
    results_md.parent.mkdir(parents=True, exist_ok=True)
    write_results_md(results_md, markdown(rows, checks, meta), image)


def report_only(args: argparse.Namespace) -> int:
    """``--report``: rebuild summary, plot and RESULTS.md from an earlier results.jsonl."""
    path: Path = args.report
    results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    meta_path = path.with_name("meta.json")
    summary_path = path.with_name("summary.json")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
    elif summary_path.exists() and "meta" in json.loads(summary_path.read_text()):
        meta = json.loads(summary_path.read_text())["meta"]
    else:
        times = [r["time"] for r in results if "time" in r]
        meta = {"machine": machine(), "command": "(see results.jsonl)",
                "seconds": (max(times) - min(times)) if times else 0.0,
                "finished": time.strftime("%Y-%m-%d %H:%M UTC",
                                          time.gmtime(max(times) if times else time.time())),
                "wait_load": args.wait_load, "gave_up": None, "repeats": args.repeats,
                "tile_repeats": args.tile_repeats, "data": "(see results.jsonl)"}
    meta["loads"] = [r["load_before"] for r in results if "load_before" in r]
    write_report(results, meta, path.parent, args.results, args.fixed_dates, args.fixed_aoi)
    log(f"rebuilt {args.results} from {len(results)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
