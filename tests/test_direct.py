"""The direct read path: two HTTP requests per file, libdeflate decoding, GDAL fallback.

Everything runs against the replica's nginx (real HTTP Range and multipart/byteranges
replies); a second nginx with ``max_ranges 1`` behaves like AWS S3, which answers a
multi-range request with the whole file.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

import s2intake
from s2intake import cog, rangeio
from s2intake.gdal_env import ReadOptions
from s2intake.replica import CogServer

AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"


def _items(replica_items, n=4):
    real = [i for i in replica_items["v1"] if not i["properties"].get("s2intake:filler")]
    return sorted(real, key=lambda i: i["properties"]["datetime"])[:n]


def _per_file(entries):
    return collections.Counter(e.path for e in entries if e.path.endswith(".tif"))


def _gdal_stack(items, **kwargs):
    return s2intake.stack(items, ["red", "green"], aoi=AOI, reader="gdal", **kwargs)


@pytest.fixture(scope="module")
def gdal_result(replica_items):
    return _gdal_stack(_items(replica_items)).compute()


@pytest.mark.parametrize("merge_gap", [None, -1])
def test_direct_reads_equal_gdal_reads_with_two_requests_per_file(replica_items, cog_server,
                                                                  gdal_result, merge_gap,
                                                                  monkeypatch):
    if merge_gap is not None:  # one range per tile: a multipart/byteranges reply
        monkeypatch.setattr(rangeio, "MERGE_GAP", merge_gap)
    items = _items(replica_items)
    ds = s2intake.stack(items, ["red", "green"], aoi=AOI, chunks=512)
    assert max(ds.red.data.numblocks[1:]) > 1  # several chunks per file
    mark = cog_server.mark()
    out = ds.compute()
    entries = cog_server.entries_since(mark)
    for band in ("red", "green"):
        np.testing.assert_array_equal(out[band].values, gdal_result[band].values)
    per_file = _per_file(entries)
    assert len(per_file) == len(items) * 2
    assert max(per_file.values()) <= 2
    assert not [e for e in entries if e.method != "GET"]  # no HEAD
    assert all(e.status == 206 for e in entries)
    if merge_gap is not None:
        assert any("," in (e.range or "") for e in entries)


def test_direct_reads_only_the_touched_tiles_once(replica_items, cog_server, cog_root):
    items = _items(replica_items, 2)
    ds = s2intake.stack(items, ["red"], aoi=AOI)
    mark = cog_server.mark()
    ds.compute()
    entries = cog_server.entries_since(mark)
    href = items[0]["assets"]["red"]["href"]
    path = cog_root / href[len(cog_server.url):].lstrip("/")
    with rasterio.open(path) as src:
        window = rasterio.windows.from_bounds(*_utm_bounds(ds), transform=src.transform)
        r0, c0 = int(window.row_off) // 1024, int(window.col_off) // 1024
        r1 = (int(np.ceil(window.row_off + window.height)) - 1) // 1024
        c1 = (int(np.ceil(window.col_off + window.width)) - 1) // 1024
        tile_bytes = sum(int(src.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1) or 0)
                         for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))
    sent = sum(e.bytes for e in entries if href.endswith(e.path))
    assert tile_bytes > 0
    assert tile_bytes <= sent <= tile_bytes + cog.HEADER_BYTES + 1024


def _utm_bounds(ds):
    a, _, c, _, e, f = ds.attrs["transform"]
    return c, f + e * ds.sizes["y"], c + a * ds.sizes["x"], f


def test_a_slice_fetches_only_its_chunks_tiles(replica_items, cog_server):
    items = _items(replica_items, 1)
    ds = s2intake.stack(items, ["red"], aoi=AOI, chunks=256)
    mark = cog_server.mark()
    ds.red.compute()
    whole = sum(e.bytes for e in cog_server.entries_since(mark))
    mark = cog_server.mark()
    part = ds.red.isel(y=slice(0, 10), x=slice(0, 10)).compute()
    entries = cog_server.entries_since(mark)
    np.testing.assert_array_equal(part.values, ds.red.values[:, :10, :10])
    assert len(entries) <= 2
    assert sum(e.bytes for e in entries) < whole / 2


def test_a_slice_of_an_rgb_fetches_only_its_chunks_tiles(replica_items, cog_server):
    """Under a many-band blockwise (to_rgb) the read layers stay culled per chunk: Dask's
    ``fuse_roots`` must not turn them into plain dicts (which would fetch every tile)."""
    items = _items(replica_items, 1)
    ds = s2intake.stack(items, ["red", "green", "blue"], aoi=AOI, chunks=256)
    rgba = s2intake.to_rgb(ds)
    mark = cog_server.mark()
    rgba.compute()
    whole = sum(e.bytes for e in cog_server.entries_since(mark))
    mark = cog_server.mark()
    part = rgba.isel(y=slice(0, 10), x=slice(0, 10)).compute()
    entries = cog_server.entries_since(mark)
    assert part.shape[-3:] == (10, 10, 4)
    assert len(entries) <= 2 * 3
    assert sum(e.bytes for e in entries) < whole / 2


@pytest.mark.parametrize("on_error", ["raise", "nodata"])
def test_graph_has_one_fetch_per_file_and_one_read_per_chunk(replica_items, on_error):
    """With on_error="raise" the read tasks are the array's chunks; "nodata" adds one
    pixel-taking task per chunk so the failures can be collected from the same reads."""
    from s2intake.reader import compute_with_failures

    items = _items(replica_items, 2)
    ds = s2intake.stack(items, ["red"], aoi=AOI, chunks=256, on_error=on_error)
    graph = dict(ds.red.data.__dask_graph__())
    kinds = collections.Counter((key[0] if isinstance(key, tuple) else key).split("-")[0]
                                for key in graph)
    n_chunks = ds.red.data.npartitions
    per_chunk = 1 if on_error == "raise" else 2
    assert kinds["s2fetch"] == len(items)
    assert kinds["s2options"] == 1  # the stack's read options, shared by the fetch tasks
    assert len(graph) == 1 + len(items) + per_chunk * n_chunks
    out = compute_with_failures(ds)
    assert out.attrs["s2intake_failed_reads"] == []
    assert int(out.red.count()) > 0


def test_a_server_without_multirange_gets_one_request_per_run(replica_items, cog_server,
                                                              cog_root, gdal_result, tmp_path,
                                                              monkeypatch):
    monkeypatch.setattr(rangeio, "MERGE_GAP", -1)  # the sample's AOI tiles are contiguous
    s3like = CogServer(cog_root, tmp_path / "nginx", max_ranges=1)
    s3like.start()
    try:
        items = json.loads(json.dumps(_items(replica_items)).replace(cog_server.url, s3like.url))
        ds = s2intake.stack(items, ["red", "green"], aoi=AOI)
        out = ds.compute()
        for band in ("red", "green"):
            np.testing.assert_array_equal(out[band].values, gdal_result[band].values)
        assert s3like.url.split("//")[1] in rangeio._POOL.single_range_hosts
        mark = s3like.mark()
        s2intake.stack(items, ["red"], aoi=AOI).compute()
        entries = s3like.entries_since(mark)
        assert entries and all(e.status == 206 for e in entries)  # no whole-file replies
        assert all("," not in (e.range or "") for e in entries)
    finally:
        rangeio._POOL.single_range_hosts.clear()
        s3like.stop()


def test_a_header_larger_than_the_first_read_is_completed(replica_items, monkeypatch):
    href = _items(replica_items, 1)[0]["assets"]["red"]["href"]
    settings = rangeio.HttpSettings.from_options(ReadOptions.make())
    assert settings is not None
    full = cog.read_header(href, settings)
    monkeypatch.setattr(cog, "HEADER_BYTES", 64)
    small = cog.read_header(href, settings)
    assert small.transform == full.transform and small.block == full.block
    np.testing.assert_array_equal(small.offsets, full.offsets)


@pytest.mark.parametrize("how", ["option", "reader", "proxy"])
def test_what_the_direct_path_does_not_know_goes_through_gdal(how, replica_items, gdal_result,
                                                              monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the direct reader was used")

    monkeypatch.setattr(cog, "read_header", refuse)
    kwargs = {}
    if how == "option":
        kwargs["gdal_options"] = {"GDAL_HTTP_COOKIE": "a=b"}
    elif how == "reader":
        kwargs["reader"] = "gdal"
    else:  # curl honours proxy variables, urllib3 would not
        monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
    out = s2intake.stack(_items(replica_items), ["red", "green"], aoi=AOI, **kwargs).compute()
    np.testing.assert_array_equal(out.red.values, gdal_result.red.values)


def test_a_corrupt_tile_is_refetched_not_returned(replica_items, monkeypatch, gdal_result):
    items = _items(replica_items)
    original = cog.fetch_tiles
    calls = {"n": 0}

    def corrupting(url, header, tiles, settings):
        got = original(url, header, tiles, settings)
        calls["n"] += 1
        if calls["n"] == 1:  # the first file's first fetch arrives damaged
            key = next(iter(got))
            data = bytearray(got[key])
            data[len(data) // 2] ^= 0xFF
            got[key] = bytes(data)
        return got

    monkeypatch.setattr(cog, "fetch_tiles", corrupting)
    out = s2intake.stack(items, ["red", "green"], aoi=AOI).compute(scheduler="sync")
    assert calls["n"] > len(items) * 2  # one more fetch than files: the retry
    for band in ("red", "green"):
        np.testing.assert_array_equal(out[band].values, gdal_result[band].values)


def test_decode_rejects_damaged_bytes():
    header = cog.CogHeader(width=4, height=4, block=(4, 4), dtype="<u2", predictor=2,
                           compression=8, nodata=0, transform=(10, 0, 0, 0, -10, 40),
                           epsg=32610, offsets=np.array([[100]]), counts=np.array([[10]]))
    import zlib

    pixels = np.arange(16, dtype="<u2").reshape(4, 4)
    diffs = pixels.copy()
    diffs[:, 1:] = pixels[:, 1:] - pixels[:, :-1]
    good = zlib.compress(diffs.tobytes())
    np.testing.assert_array_equal(cog.decode_tile(header, good), pixels)
    bad = bytearray(good)
    bad[-1] ^= 1  # the adler32 checksum
    with pytest.raises(cog.CorruptTileError):
        cog.decode_tile(header, bytes(bad))
    with pytest.raises(cog.CorruptTileError):
        cog.decode_tile(header, good[:-3])


def test_merge_ranges_joins_neighbours_only():
    assert rangeio.merge_ranges([(10, 20), (0, 5), (20, 30), (5000, 6000)], gap=4) == \
        [(0, 5), (10, 30), (5000, 6000)]
    assert rangeio.merge_ranges([(0, 10), (14, 20)], gap=8) == [(0, 20)]


def test_redirects_are_followed_with_the_range(replica_items, cog_server):
    """A pre-signing service answers 302 with the real URL; the Range must go along."""
    import http.server
    import threading

    href = _items(replica_items, 1)[0]["assets"]["red"]["href"]

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(302)
            self.send_header("Location", href)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = rangeio.HttpSettings.from_options(ReadOptions.make())
        via = cog.read_header(f"http://127.0.0.1:{server.server_address[1]}/signed.tif",
                              settings)
        direct = cog.read_header(href, settings)
        assert via.transform == direct.transform
        np.testing.assert_array_equal(via.offsets, direct.offsets)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("window", [(0, 1024, 0, 1024), (5000, 5600, 3000, 3600),
                                    (10000, 10980, 10500, 10980), (100, 101, 0, 10980),
                                    (-20, 30, 10970, 11000), (8191, 9217, 2047, 3073)])
def test_assemble_equals_rasterio_for_any_window(replica_items, cog_server, cog_root, window):
    """Whole tiles, partial tiles (the predictor undone for the needed rows only), windows
    past the file's edge (nodata), one-row strips across every tile column."""
    href = _items(replica_items, 1)[0]["assets"]["red"]["href"]
    path = cog_root / href[len(cog_server.url):].lstrip("/")
    data = path.read_bytes()
    header = cog.parse_header(data[:cog.HEADER_BYTES], len(data))
    tiles = {t: data[slice(*r)] for t in cog.tiles_of(header, window)
             if (r := header.tile_range(*t)) is not None}
    got = cog.assemble(header, window, tiles, np.dtype("uint16"), 0)
    r0, r1, c0, c1 = window
    with rasterio.open(path) as src:
        expected = src.read(1, window=rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0),
                            boundless=True, fill_value=0)
    np.testing.assert_array_equal(got, expected)


def _geotiff(path, crs, transform, **tags):
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": 1, "dtype": "uint16",
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
               "crs": crs, "transform": transform, "nodata": 0}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((1, 512, 512), "uint16"))
        dst.update_tags(**tags)
    data = path.read_bytes()
    return cog.parse_header(data[:cog.HEADER_BYTES], len(data))


def test_header_reads_the_geotiff_keys_as_gdal_does(tmp_path):
    """The CRS, transform and nodata come from the GeoTIFF tags as GDAL reads them; what the
    direct path cannot place (geographic CRS, pixel-is-point, rotation) is refused."""
    from rasterio.transform import Affine

    north_up = Affine(20.0, 0, 399960.0, 0, -20.0, 4400040.0)
    header = _geotiff(tmp_path / "utm.tif", "EPSG:32610", north_up)
    assert header.epsg == 32610
    assert header.transform == tuple(north_up)[:6]
    assert header.nodata == 0
    assert header.block == (256, 256)
    with pytest.raises(cog.NotDirect, match="EPSG"):
        _geotiff(tmp_path / "wgs84.tif", "EPSG:4326", Affine(0.001, 0, -120, 0, -0.001, 40))
    with pytest.raises(cog.NotDirect, match="pixel-is-point"):
        _geotiff(tmp_path / "point.tif", "EPSG:32610", north_up, AREA_OR_POINT="Point")
    with pytest.raises(cog.NotDirect, match="north-up"):
        _geotiff(tmp_path / "rotated.tif", "EPSG:32610",
                 Affine(20.0, 1.0, 399960.0, 1.0, -20.0, 4400040.0))
