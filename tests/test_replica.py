"""The world is real: searches and COG reads against the local Earth Search replica.

Every expectation is computed here, in Python, from the item JSON loaded into the replica
(``replica_items``), never from the server's answers.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window
from shapely.geometry import shape

from s2intake.errors import S2IntakeError
from s2intake.replica import (
    CogServer,
    PgStac,
    ServiceNotInstalledError,
    ServiceStartError,
    StacApi,
    free_port,
    pids_alive,
)

REPO = Path(__file__).resolve().parents[1]
AOI_PATH = REPO / "catalogs" / "berry_creek.geojson"
V0_COLLECTION = "sentinel-s2-l2a-cogs"
V1_COLLECTION = "sentinel-2-l2a"
LIMIT = 3


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _parse_dt(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _collection_items(replica_items: dict[str, list[dict]], version: str, collection: str):
    items = [i for i in replica_items[version] if i["collection"] == collection]
    assert items, f"no {version} items of {collection} were loaded"
    return items


def _paged_ids(search: Any) -> tuple[list[str], int]:
    """All ids returned by a search, following next links; and the number of pages."""
    ids: list[str] = []
    pages = 0
    for page in search.pages():
        pages += 1
        ids.extend(item.id for item in page.items)
    return ids, pages


def _assert_exact(search: Any, expected: set[str], what: str) -> None:
    assert len(expected) > LIMIT, (
        f"{what}: only {len(expected)} items are expected; the loaded data must give more "
        f"than limit={LIMIT} so that the search spans several pages"
    )
    ids, pages = _paged_ids(search)
    assert len(ids) == len(set(ids)), f"{what}: duplicated ids across pages: {Counter(ids)}"
    missing, extra = expected - set(ids), set(ids) - expected
    assert not missing and not extra, f"{what}: missing {sorted(missing)}, extra {sorted(extra)}"
    assert pages > 1, f"{what}: expected several pages with limit={LIMIT}, got {pages}"
    assert pages == -(-len(expected) // LIMIT) or pages == -(-len(expected) // LIMIT) + 1


def _aoi() -> dict:
    doc = json.loads(AOI_PATH.read_text())
    return doc["geometry"] if doc.get("type") == "Feature" else doc


# --------------------------------------------------------------------------------------------
# the API
# --------------------------------------------------------------------------------------------
def test_landing_page_and_conformance(stac_client: Any) -> None:
    assert stac_client.conforms_to("ITEM_SEARCH")
    assert stac_client.conforms_to("QUERY")
    assert stac_client.conforms_to("FILTER")
    ids = {c.id for c in stac_client.get_collections()}
    assert {V0_COLLECTION, V1_COLLECTION} <= ids


def test_v0_collection_is_served(stac_client: Any, replica_collections) -> None:
    # the real v0 collection (STAC 1.0.0-beta.2) has no "type": pgstac needs one, pystac then
    # needs stac_version >= 1.0.0-rc.1 (see PgStac.load_collections)
    coll = stac_client.get_collection(V0_COLLECTION)
    assert coll.id == replica_collections["v0"]["id"] == V0_COLLECTION


def test_v0_query_list_form(stac_client: Any, replica_items) -> None:
    items = _collection_items(replica_items, "v0", V0_COLLECTION)
    expected = {
        i["id"]
        for i in items
        if i["properties"].get("eo:cloud_cover") is not None
        and i["properties"]["eo:cloud_cover"] <= 10
        and i["properties"].get("sentinel:valid_cloud_cover") is True
        and i["properties"].get("sentinel:grid_square") == "FJ"
    }
    search = stac_client.search(
        collections=[V0_COLLECTION],
        query=["eo:cloud_cover<=10", "sentinel:valid_cloud_cover=true",
               "sentinel:grid_square=FJ"],
        limit=LIMIT,
    )
    _assert_exact(search, expected, "v0 query list form")


def test_v1_query_dict_form(stac_client: Any, replica_items) -> None:
    items = _collection_items(replica_items, "v1", V1_COLLECTION)
    expected = {
        i["id"] for i in items
        if i["properties"].get("eo:cloud_cover") is not None
        and i["properties"]["eo:cloud_cover"] < 10
    }
    search = stac_client.search(
        collections=[V1_COLLECTION], query={"eo:cloud_cover": {"lt": 10}}, limit=LIMIT
    )
    _assert_exact(search, expected, "v1 query dict form")


def test_numeric_queryables_are_typed(stac_client: Any, replica_items) -> None:
    # untyped, pgstac compares as text and "69.73" <= "100" is false: items would vanish
    items = _collection_items(replica_items, "v1", V1_COLLECTION)
    expected = {
        i["id"] for i in items
        if i["properties"].get("eo:cloud_cover") is not None
        and i["properties"]["eo:cloud_cover"] <= 100
    }
    assert any(i["properties"].get("eo:cloud_cover", 0) >= 10 for i in items)
    search = stac_client.search(
        collections=[V1_COLLECTION], query={"eo:cloud_cover": {"lte": 100}}, limit=LIMIT
    )
    _assert_exact(search, expected, "eo:cloud_cover <= 100")


def test_v1_cql2_json_filter(stac_client: Any, replica_items) -> None:
    items = _collection_items(replica_items, "v1", V1_COLLECTION)
    codes = Counter(i["properties"].get("grid:code") for i in items if "grid:code" in i["properties"])
    assert codes, "the v1 items carry no grid:code"
    code = codes.most_common(1)[0][0]
    expected = {
        i["id"] for i in items
        if i["properties"].get("grid:code") == code
        and i["properties"].get("eo:cloud_cover") is not None
        and i["properties"]["eo:cloud_cover"] <= 30
    }
    cql = {
        "op": "and",
        "args": [
            {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 30]},
            {"op": "=", "args": [{"property": "grid:code"}, code]},
        ],
    }
    search = stac_client.search(
        collections=[V1_COLLECTION], filter=cql, filter_lang="cql2-json", limit=LIMIT
    )
    _assert_exact(search, expected, f"CQL2-JSON cloud<=30 and grid:code={code}")


def test_v1_intersects_berry_creek(stac_client: Any, replica_items) -> None:
    aoi = _aoi()
    aoi_shape = shape(aoi)
    items = _collection_items(replica_items, "v1", V1_COLLECTION)
    expected = {i["id"] for i in items if shape(i["geometry"]).intersects(aoi_shape)}
    assert len(expected) < len(items), "every item intersects: the test would prove nothing"
    search = stac_client.search(collections=[V1_COLLECTION], intersects=aoi, limit=LIMIT)
    _assert_exact(search, expected, "intersects Berry Creek AOI")


def test_v0_intersects_berry_creek(stac_client: Any, replica_items) -> None:
    aoi = _aoi()
    aoi_shape = shape(aoi)
    items = _collection_items(replica_items, "v0", V0_COLLECTION)
    expected = {i["id"] for i in items if shape(i["geometry"]).intersects(aoi_shape)}
    search = stac_client.search(collections=[V0_COLLECTION], intersects=aoi, limit=LIMIT)
    _assert_exact(search, expected, "v0 intersects Berry Creek AOI")


def test_v1_datetime_range(stac_client: Any, replica_items) -> None:
    items = _collection_items(replica_items, "v1", V1_COLLECTION)
    times = sorted({_parse_dt(i["properties"]["datetime"]) for i in items})
    start, end = times[len(times) // 4], times[(3 * len(times)) // 4]
    expected = {
        i["id"] for i in items if start <= _parse_dt(i["properties"]["datetime"]) <= end
    }
    assert len(expected) < len(items)
    interval = f"{start.isoformat().replace('+00:00', 'Z')}/{end.isoformat().replace('+00:00', 'Z')}"
    search = stac_client.search(collections=[V1_COLLECTION], datetime=interval, limit=LIMIT)
    _assert_exact(search, expected, f"datetime {interval}")


def test_number_matched(stac_client: Any, replica_items) -> None:
    items = _collection_items(replica_items, "v1", V1_COLLECTION)
    search = stac_client.search(collections=[V1_COLLECTION], limit=LIMIT)
    assert search.matched() == len(items)


def test_items_point_at_the_replica_cogs(stac_client: Any, cog_server: CogServer) -> None:
    search = stac_client.search(collections=[V1_COLLECTION], limit=LIMIT, max_items=LIMIT)
    for item in search.items():
        tifs = [a.href for a in item.assets.values() if a.href.endswith(".tif")]
        assert tifs and any(h.startswith(cog_server.url + "/") for h in tifs), item.id


@pytest.mark.parametrize(("version", "collection"), [("v0", V0_COLLECTION), ("v1", V1_COLLECTION)])
def test_items_come_back_as_loaded(stac_client: Any, replica_items, version, collection) -> None:
    # pgstac dehydrates items against the collection's item_assets; the round trip must
    # give back exactly the properties and assets that were loaded
    loaded = {i["id"]: i for i in _collection_items(replica_items, version, collection)}
    ids = sorted(loaded)[:: max(1, len(loaded) // 5)]
    search = stac_client.search(collections=[collection], ids=ids, limit=LIMIT)
    got = {d["id"]: d for d in search.items_as_dicts()}
    assert set(got) == set(ids)
    for item_id in ids:
        want, have = loaded[item_id], got[item_id]
        assert have["properties"] == want["properties"], item_id
        assert have["assets"] == want["assets"], item_id
        assert have["collection"] == collection
        assert shape(have["geometry"]).equals_exact(shape(want["geometry"]), 1e-9), item_id


# --------------------------------------------------------------------------------------------
# COGs over HTTP
# --------------------------------------------------------------------------------------------
def _b04_href(replica_items: dict[str, list[dict]], base: str) -> str:
    for item in replica_items["v1"]:
        for asset in item["assets"].values():
            href = asset.get("href", "")
            if href.startswith(base + "/") and href.endswith("B04.tif"):
                return href
    raise AssertionError("no v1 item has a B04.tif asset on the replica")


def _data_window(path: Path) -> Window:
    """A 256 x 256 window with valid pixels: at the AOI's centre if possible."""
    with rasterio.open(path) as src:
        to_crs = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True)
        centre = shape(_aoi()).centroid
        x, y = to_crs.transform(centre.x, centre.y)
        row, col = src.index(x, y)
        candidates = [(row - 128, col - 128), (src.height // 2 - 128, src.width // 2 - 128)]
        candidates += [(r, c) for r in range(0, src.height - 256, 1024)
                       for c in range(0, src.width - 256, 1024)]
        for r, c in candidates:
            r = min(max(r, 0), src.height - 256)
            c = min(max(c, 0), src.width - 256)
            win = Window(c, r, 256, 256)
            if np.count_nonzero(src.read(1, window=win)):
                return win
    raise AssertionError(f"{path} has no 256 x 256 window with valid pixels")


def test_windowed_cog_read_uses_range_requests(
    replica_items, cog_server: CogServer, cog_root: Path
) -> None:
    href = _b04_href(replica_items, cog_server.url)
    rel = href[len(cog_server.url) + 1:]
    local = cog_root / rel
    window = _data_window(local)
    with rasterio.open(local) as src:
        expected = src.read(1, window=window)

    mark = cog_server.mark()
    # no /vsicurl/ cache: a read of the same file by another test must not hide requests
    with rasterio.Env(**cog_server.gdal_options()), rasterio.open(href) as src:
        got = src.read(1, window=window)
    entries = [e for e in cog_server.entries_since(mark) if e.path.split("?")[0] == "/" + rel]

    np.testing.assert_array_equal(got, expected)
    assert np.count_nonzero(got), "the window read holds no valid pixel"
    gets = [e for e in entries if e.method == "GET"]
    assert gets, f"no GET of /{rel} in {cog_server.access_log_path}"
    assert all(e.status == 206 and e.range and e.range.startswith("bytes=") for e in gets), gets
    size = local.stat().st_size
    assert not [e for e in entries if e.status == 200 and e.bytes >= size], "full-file GET"
    assert sum(e.bytes for e in gets) < size, "the window read fetched the whole file"


def test_access_log_counts_one_request(cog_server: CogServer, replica_items) -> None:
    import urllib.request

    href = _b04_href(replica_items, cog_server.url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    mark = cog_server.mark()
    req = urllib.request.Request(href, headers={"Range": "bytes=100-1123"})
    with opener.open(req) as resp:
        body = resp.read()
        assert resp.status == 206
    entries = cog_server.entries_since(mark)
    assert len(entries) == 1
    (entry,) = entries
    assert (entry.method, entry.status, entry.bytes, entry.range) == (
        "GET", 206, len(body), "bytes=100-1123"
    )
    assert len(body) == 1024


# --------------------------------------------------------------------------------------------
# life cycle and failures
# --------------------------------------------------------------------------------------------
def test_cog_server_stops_and_its_processes_exit(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.bin").write_bytes(b"0123456789")
    server = CogServer(tmp_path / "data", tmp_path / "nginx").start()
    assert server.read_log() == []  # the readiness probe is not logged
    pids = server.pids()
    assert len(pids) >= 2, pids  # master + worker
    port = server.port
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    server.stop()
    server.stop()  # idempotent
    assert not server.running
    assert not pids_alive(pids)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert server.access_log_path.is_file()  # a given workdir (and its logs) is kept


def test_nginx_start_failure_reports_the_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = CogServer(tmp_path, tmp_path / "nginx", port=port, startup_timeout=5)
        with pytest.raises(ServiceStartError, match="nginx failed to start") as info:
            server.start()
    assert "Address already in use" in str(info.value)
    assert isinstance(info.value, S2IntakeError)
    assert not server.running


def test_missing_nginx_names_the_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("S2INTAKE_NGINX", str(tmp_path / "no-nginx"))
    with pytest.raises(ServiceNotInstalledError, match=r"apt-get install nginx"):
        CogServer(tmp_path).start()


def test_missing_postgres_names_the_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("S2INTAKE_PGBIN", str(tmp_path / "no-pg"))
    with pytest.raises(ServiceNotInstalledError, match=r"apt-get install postgresql"):
        PgStac(tmp_path).start()


def test_missing_postgis_names_the_package(tmp_path: Path, monkeypatch) -> None:
    from s2intake import replica as replica_module

    monkeypatch.setattr(replica_module, "_pg_sharedir", lambda bindir: tmp_path)
    with pytest.raises(ServiceNotInstalledError, match=r"postgresql-\d+-postgis-3"):
        PgStac(tmp_path).start()


def test_stac_api_start_failure_reports_the_log(tmp_path: Path) -> None:
    api = StacApi(f"postgresql://u:p@127.0.0.1:{free_port()}/db", tmp_path, startup_timeout=30)
    with pytest.raises(ServiceStartError, match="STAC API .* failed to start") as info:
        api.start()
    assert "Connection refused" in str(info.value) or "connect" in str(info.value).lower()
    assert not api.running


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_replica_reports_startup(replica) -> None:
    assert replica.running
    assert replica.startup_seconds > 0
    assert set(replica.timings) >= {"nginx", "postgres+pgstac", "stac-api"}
    assert all(replica.pids().values())
