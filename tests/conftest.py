"""Session fixtures: the embedded Berry Creek sample and a local Earth Search replica.

The replica is real: nginx serves the sample COGs with HTTP Range, PostgreSQL + pgstac holds
the v0 (``sentinel-s2-l2a-cogs``) and v1 (``sentinel-2-l2a``) items, stac-fastapi-pgstac
answers STAC API requests, all on 127.0.0.1. It starts once per test session and is stopped
at the end; a missing service makes the fixture fail loudly (never a skip).

Fixtures
--------
sample            SampleInfo of the sample built (once, cached) by ``s2intake.sample``
replica           started :class:`s2intake.replica.Replica` with v0 + v1 loaded
replica_items     ``{"v0": [...], "v1": [...]}``: every item dict loaded: the sample's, plus
                  metadata-only filler copies (``"s2intake:filler": true``, dated
                  2015-01..2018-06 or on another grid square; see ``FILLER_VARIANTS``)
replica_collections  ``{"v0": {...}, "v1": {...}}``: the collection dicts loaded
stac_url          the replica's STAC API landing page URL
stac_client       ``pystac_client.Client`` opened on it
cog_server        the replica's :class:`s2intake.replica.CogServer` (access log helpers)
cog_root          the local folder nginx serves (``cog_server.url + "/x"`` is ``cog_root/x``)

Environment
-----------
S2INTAKE_SAMPLE_DIR   where the sample is built/cached (default ``~/.cache/s2intake/sample``)
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
if find_spec("s2intake") is None:  # running `pytest` from a checkout that is not installed
    sys.path.insert(0, str(REPO))

# Loopback traffic must never go through a proxy (requests and GDAL/curl honour NO_PROXY).
for _var in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_var, "").split(",") if h]
    os.environ[_var] = ",".join(dict.fromkeys([*_hosts, "127.0.0.1", "localhost"]))

from s2intake.replica import Replica, pids_alive  # noqa: E402

V0 = "v0"
V1 = "v1"
S3_BASE = "https://sentinel-cogs.s3.us-west-2.amazonaws.com"
PLACEHOLDER_BASE = "http://replica.invalid"

#: Metadata-only copies made of every sample item, so that searches span several pages.
#: They stay out of the sample's own searches: the date-shifted ones fall in 2015-01..2018-06
#: (the sample spans 2020-01..2022-06; 2018-07..2019-12 stays empty) and the tile-shifted one
#: lies ~110 km east of Berry Creek, so a Berry Creek search over any date from 2018-07 on
#: finds only sample items.
FILLER_VARIANTS: tuple[dict[str, Any], ...] = (
    {"days": -4 * 365 - 1, "tile_shift": 0},  # the same tile four years earlier
    {"days": -5 * 365 - 1, "tile_shift": 0},  # five years earlier
    {"days": 0, "tile_shift": 1},  # the same date, one MGRS square east (10SFJ -> 10SGJ)
)
#: Cloud covers cycled through the filler items (a mix below/above the usual thresholds).
FILLER_CLOUD = (3.0, 55.0, 9.5, 0.0, 27.0, 6.25, 97.0, 12.0, 1.5, 40.0, 10.0)
FILLER_NODATA = (0.0, 12.5, 48.0, 3.0, 99.0, 0.5, 25.0)
TILE_SHIFT_DEG = 1.3  # ~ one 100 km MGRS square at 40 N
_ID_RE = re.compile(r"^(S2[A-D])_(\d{1,2})([C-X])([A-Z])([A-Z])_(\d{8})_(\d+)_(L[12][AC])$")
_COLS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # MGRS column letters (no I, O)

# replica start-up figures, printed in the terminal summary
_STATS: dict[str, Any] = {}


# --------------------------------------------------------------------------------------------
# filler items
# --------------------------------------------------------------------------------------------
def _shift_coords(coords: Any, dx: float) -> Any:
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], int | float):
        return [coords[0] + dx, *coords[1:]]
    return [_shift_coords(c, dx) for c in coords]


def _next_col(letter: str, step: int) -> str:
    return _COLS[(_COLS.index(letter) + step) % len(_COLS)] if letter in _COLS else letter


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def make_fillers(items: list[dict[str, Any]], taken: set[str]) -> list[dict[str, Any]]:
    """Metadata-only copies of ``items`` at other dates/tiles, with new unique ids.

    Assets keep their hrefs (the same COGs). Each filler carries ``"s2intake:filler": true``.
    ``taken`` holds ids already used; new ids are added to it.
    """
    out: list[dict[str, Any]] = []
    counter = 0
    for item in items:
        for k, variant in enumerate(FILLER_VARIANTS):
            new = copy.deepcopy(item)
            props = new["properties"]
            when = dt.datetime.fromisoformat(props["datetime"].replace("Z", "+00:00"))
            when = when + dt.timedelta(days=variant["days"])
            props["datetime"] = _iso(when)
            props["eo:cloud_cover"] = FILLER_CLOUD[counter % len(FILLER_CLOUD)]
            if "s2:nodata_pixel_percentage" in props:
                props["s2:nodata_pixel_percentage"] = FILLER_NODATA[counter % len(FILLER_NODATA)]
            if "sentinel:valid_cloud_cover" in props:
                props["sentinel:valid_cloud_cover"] = counter % 5 != 4
            props["s2intake:filler"] = True
            counter += 1

            match = _ID_RE.match(item["id"])
            sq_col, sq_row = (match[4], match[5]) if match else ("", "")
            shift = variant["tile_shift"]
            if shift:
                new["geometry"] = {
                    **new["geometry"],
                    "coordinates": _shift_coords(new["geometry"]["coordinates"],
                                                 shift * TILE_SHIFT_DEG),
                }
                if "bbox" in new:
                    bbox = list(new["bbox"])
                    half = len(bbox) // 2
                    bbox[0] += shift * TILE_SHIFT_DEG
                    bbox[half] += shift * TILE_SHIFT_DEG
                    new["bbox"] = bbox
                sq_col = _next_col(sq_col, shift) if sq_col else sq_col
                for key in ("sentinel:grid_square", "mgrs:grid_square"):
                    if key in props and len(props[key]) == 2:
                        props[key] = _next_col(props[key][0], shift) + props[key][1]
                if "grid:code" in props and match:
                    props["grid:code"] = f"MGRS-{match[2]}{match[3]}{sq_col}{sq_row}"

            seq = 5 + k
            while True:
                if match:
                    new_id = (f"{match[1]}_{match[2]}{match[3]}{sq_col}{sq_row}_"
                              f"{when:%Y%m%d}_{seq}_{match[8]}")
                else:
                    new_id = f"{item['id']}_filler{k}_{seq}"
                if new_id not in taken:
                    break
                seq += 1
            taken.add(new_id)
            new["id"] = new_id
            # links of the original point at the original item; keep only license-like ones
            new["links"] = [
                link for link in new.get("links", [])
                if link.get("rel") not in ("self", "canonical", "alternate", "derived_from")
            ]
            out.append(new)
    return out


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _serving_root(info: Any) -> Path:
    """The folder nginx must serve so that ``{base}/<path>`` is the rebased href's file."""
    candidates = [Path(info.cog_root), Path(info.root), Path(info.cog_root).parent]
    for item in info.items(V1, base=PLACEHOLDER_BASE):
        for asset in item["assets"].values():
            href = asset.get("href", "")
            if not href.startswith(PLACEHOLDER_BASE + "/"):
                continue
            rel = href[len(PLACEHOLDER_BASE) + 1:]
            for root in candidates:
                if (root / rel).is_file():
                    return root.resolve()
            raise AssertionError(
                f"sample asset {href} (item {item['id']}) not found under any of {candidates}"
            )
    raise AssertionError(f"no v1 sample asset href was rebased onto {PLACEHOLDER_BASE}")


@pytest.fixture(scope="session")
def sample() -> Any:
    """The embedded sample, built once (idempotent, cached across sessions)."""
    from s2intake.sample import build_sample

    root = os.environ.get("S2INTAKE_SAMPLE_DIR")
    t0 = time.perf_counter()
    info = build_sample(Path(root).expanduser()) if root else build_sample()
    _STATS["sample_seconds"] = time.perf_counter() - t0
    return info


@pytest.fixture(scope="session")
def cog_root(sample: Any) -> Path:
    """The local folder the replica's nginx serves."""
    return _serving_root(sample)


@pytest.fixture(scope="session")
def _replica_bundle(
    sample: Any, cog_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]]:
    workdir = tmp_path_factory.mktemp("replica")
    rep = Replica(cog_root, workdir)
    pids: list[int] = []
    ports: list[int] = []
    try:
        _STATS["startup_seconds"] = rep.startup_seconds
        _STATS["timings"] = dict(rep.timings)
        collections = {
            v: json.loads(Path(sample.collection_path[v]).read_text()) for v in (V0, V1)
        }
        taken: set[str] = set()
        items: dict[str, list[dict[str, Any]]] = {}
        for v in (V0, V1):
            base_items = [copy.deepcopy(i) for i in sample.items(v, base=rep.cog_url)]
            taken.update(i["id"] for i in base_items)
            items[v] = base_items
        for v in (V0, V1):
            items[v] = items[v] + make_fillers(items[v], taken)
        t0 = time.perf_counter()
        rep.load([collections[V0], collections[V1]], items[V0] + items[V1])
        _STATS["load_seconds"] = time.perf_counter() - t0
        _STATS["items"] = {v: len(items[v]) for v in items}
        pids = [pid for group in rep.pids().values() for pid in group]
        ports = [p for p in (rep.cog_server.port, rep.pgstac.port, rep.api.port) if p]
        yield rep, items, collections
    finally:
        t0 = time.perf_counter()
        rep.close()
        _STATS["close_seconds"] = time.perf_counter() - t0
    # Everything must be gone: fail the session teardown loudly if not.
    deadline = time.monotonic() + 10
    while pids_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = pids_alive(pids)
    assert not left, f"replica processes still running after close(): {left}"
    open_ports = [p for p in ports if _listening(p)]
    assert not open_ports, f"replica ports still open after close(): {open_ports}"
    _STATS["stopped_cleanly"] = True


@pytest.fixture(scope="session")
def replica(_replica_bundle: tuple[Replica, Any, Any]) -> Replica:
    """A running local Earth Search with the v0 and v1 sample (+ filler) items loaded."""
    return _replica_bundle[0]


@pytest.fixture(scope="session")
def replica_items(_replica_bundle: tuple[Replica, Any, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every item dict loaded into the replica, per API version (``"v0"``, ``"v1"``)."""
    return _replica_bundle[1]


@pytest.fixture(scope="session")
def replica_collections(_replica_bundle: tuple[Replica, Any, Any]) -> dict[str, dict[str, Any]]:
    """The collection dicts loaded into the replica, per API version."""
    return _replica_bundle[2]


@pytest.fixture(scope="session")
def stac_url(replica: Replica) -> str:
    """The replica's STAC API landing page."""
    return replica.stac_url


@pytest.fixture(scope="session")
def stac_client(stac_url: str) -> Any:
    """A pystac-client ``Client`` on the replica."""
    import pystac_client

    return pystac_client.Client.open(stac_url)


@pytest.fixture(scope="session")
def cog_server(replica: Replica) -> Any:
    """The replica's nginx (``.url``, ``.mark()``, ``.entries_since()``, ``.read_log()``)."""
    return replica.cog_server


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report how long the replica took to start, load and stop."""
    if "startup_seconds" not in _STATS:
        return
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in _STATS.get("timings", {}).items())
    line = f"replica: started in {_STATS['startup_seconds']:.2f} s ({timings})"
    if "load_seconds" in _STATS:
        line += f"; loaded {_STATS.get('items')} items in {_STATS['load_seconds']:.2f} s"
    if "close_seconds" in _STATS:
        line += f"; stopped in {_STATS['close_seconds']:.2f} s"
    if _STATS.get("stopped_cleanly"):
        line += " (all processes exited)"
    terminalreporter.write_line(line)
