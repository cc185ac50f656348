"""Property tests (hypothesis) of the window math, the reader and the safety helpers.

Not covered elsewhere: tests/test_aoi.py checks AOI parsing, tests/test_render.py the RGB
scaling and GIF frames, tests/test_profiles.py band names, offsets and datetime ranges.
"""

from __future__ import annotations

import email.utils
import math
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import rasterio
from faultproxy import FaultProxy
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer
from rasterio.transform import from_origin
from rasterio.windows import Window

import s2intake
from s2intake import ReadError, SecurityError
from s2intake.gdal_env import ReadOptions, redact_url, redact_urls, scrub, secret_values
from s2intake.reader import ChunkTask, Source, _TileChecker, gdal_path, read_chunk
from s2intake.search import _retry_after
from s2intake.stack import _chunk_edges, _output_bounds, _snap

UTM10 = CRS.from_epsg(32610)
RES = st.sampled_from([10.0, 20.0, 60.0, 30.0, 0.5])
COORD = st.floats(-2e6, 2e6, allow_nan=False, allow_infinity=False)
TOL = 1e-6


def _grid_offset(value: float, anchor: float, res: float) -> float:
    """Distance of ``value`` from the anchor's pixel grid, in pixels (0 = on the grid)."""
    steps = (value - anchor) / res
    return abs(steps - round(steps))


# ------------------------------------------------------------------------- window math


@settings(max_examples=300, deadline=None)
@given(COORD, COORD, RES, COORD, COORD, st.floats(0, 5e4), st.floats(0, 5e4))
def test_snapped_window_covers_the_box_with_at_most_one_pixel_of_slack(
        ax: float, ay: float, res: float, minx: float, miny: float, w: float,
        h: float) -> None:
    maxx, maxy = minx + max(w, res), miny + max(h, res)  # _output_bounds' minimum size
    x0, y1, width, height = _snap((minx, miny, maxx, maxy), res, (ax, ay))
    x1, y0 = x0 + width * res, y1 - height * res
    slack = res * (1 + TOL)
    eps = res * TOL + 1e-6 * max(1.0, abs(minx), abs(maxx), abs(miny), abs(maxy))
    # covers the box
    assert x0 <= minx + eps and x1 >= maxx - eps and y0 <= miny + eps and y1 >= maxy - eps
    # no more than one pixel of slack on each side
    assert minx - x0 < slack and x1 - maxx < slack and miny - y0 < slack and y1 - maxy < slack
    # on the anchor's pixel grid, at least one pixel
    assert _grid_offset(x0, ax, res) < 1e-5 and _grid_offset(y1, ay, res) < 1e-5
    assert width >= 1 and height >= 1


@settings(max_examples=300, deadline=None)
@given(st.integers(-50_000, 50_000), st.integers(1, 30_000), RES, COORD,
       st.sampled_from([16, 256, 512, 1000, 1024, 2048]), st.sampled_from([1, -1]))
def test_chunk_edges_fall_on_the_anchor_block_grid(offset: int, size: int, res: float,
                                                   anchor: float, chunks: int,
                                                   sign: int) -> None:
    start = anchor + sign * offset * res  # the window starts ``offset`` pixels from anchor
    edges = _chunk_edges(start, size, res, anchor, chunks, sign)
    assert edges[0] == 0 and edges[-1] == size
    steps = np.diff(edges)
    assert (steps > 0).all() and (steps <= chunks).all()
    for edge in edges[1:-1]:  # every inner boundary is on the anchor's block grid
        assert (offset + edge) % chunks == 0
    assert all(s == chunks for s in steps[1:-1])  # only the first and last are partial


@st.composite
def _boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    lon = draw(st.floats(-121.8, -121.0))
    lat = draw(st.floats(39.2, 40.3))
    width = draw(st.floats(1e-4, 0.3))
    height = draw(st.floats(1e-4, 0.3))
    return lon, lat, min(lon + width, -120.9), min(lat + height, 40.4)


def _item(epsg: int = 32610) -> dict:
    asset = {"href": "https://example.org/B04.tif", "proj:transform": [10, 0, 600000, 0, -10,
                                                                       4500000],
             "proj:shape": [10980, 10980]}
    return {
        "type": "Feature", "id": "S2A_10SFJ_20200908_0_L2A", "collection": "sentinel-2-l2a",
        "bbox": [-122.0, 39.0, -120.0, 41.0],
        "geometry": {"type": "Polygon", "coordinates": [[[-122, 39], [-120, 39], [-120, 41],
                                                          [-122, 41], [-122, 39]]]},
        "properties": {"datetime": "2020-09-08T19:00:00Z", "proj:epsg": epsg,
                       "s2:processing_baseline": "02.14", "eo:cloud_cover": 1.0},
        "assets": {"red": asset, "green": dict(asset, href="https://example.org/B03.tif")},
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_boxes(), st.sampled_from([10, 20]), st.sampled_from([256, 1024]))
def test_stack_window_covers_the_aoi_and_chunks_follow_the_cog_tiles(
        box: tuple[float, float, float, float], res: int, chunks: int) -> None:
    """The real ``stack()`` (metadata only, nothing read) over random AOIs."""
    west, south, east, north = box
    aoi = s2intake.read_aoi({"type": "Polygon", "coordinates": [[
        [west, south], [east, south], [east, north], [west, north], [west, south]]]})
    ds = s2intake.stack([_item()], ["red"], aoi=aoi, resolution=res, chunks=chunks)
    xs, ys = ds["x"].values, ds["y"].values
    x0, x1 = xs[0] - res / 2, xs[-1] + res / 2
    y1, y0 = ys[0] + res / 2, ys[-1] - res / 2
    minx, miny, maxx, maxy = aoi.to_crs(UTM10).bounds
    maxx, maxy = max(maxx, minx + res), max(maxy, miny + res)
    eps = 1e-6
    assert x0 <= minx + eps and x1 >= maxx - eps and y0 <= miny + eps and y1 >= maxy - eps
    assert minx - x0 < res and x1 - maxx < res and miny - y0 < res and y1 - maxy < res
    assert np.allclose(np.diff(xs), res) and np.allclose(np.diff(ys), -res)
    # every chunk boundary is on the COGs' block grid (anchored at the tile's corner)
    col_edges = np.cumsum(ds.red.data.chunks[2])[:-1]
    row_edges = np.cumsum(ds.red.data.chunks[1])[:-1]
    assert all(_grid_offset(x0 + e * res, 600000, chunks * res) < TOL for e in col_edges)
    assert all(_grid_offset(y1 - e * res, 4500000, chunks * res) < TOL for e in row_edges)


@settings(max_examples=100, deadline=None)
@given(st.floats(-121.8, -121.0), st.floats(39.2, 40.3), RES)
def test_a_point_aoi_still_gets_one_pixel(lon: float, lat: float, res: float) -> None:
    area = s2intake.read_aoi({"type": "Point", "coordinates": [lon, lat]})
    minx, miny, maxx, maxy = _output_bounds([_item()], area, None, UTM10, res)
    x, y = Transformer.from_crs(4326, 32610, always_xy=True).transform(lon, lat)
    assert maxx - minx >= res and maxy - miny >= res
    assert math.isclose(minx, x, abs_tol=1e-6) and math.isclose(miny, y, abs_tol=1e-6)
    x0, y1, width, height = _snap((minx, miny, maxx, maxy), res, (600000.0, 4500000.0))
    assert 1 <= width <= 2 and 1 <= height <= 2


# ------------------------------------------------------------------------- the reader


@st.composite
def _rasters(draw: st.DrawFn) -> dict:
    dtype = draw(st.sampled_from(["uint16", "uint8", "int16"]))
    block = draw(st.sampled_from([16, 32]))
    width = draw(st.integers(1, 3 * block + 5))
    height = draw(st.integers(1, 3 * block + 5))
    high = 60000 if dtype == "uint16" else (250 if dtype == "uint8" else 30000)
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, high, (height, width)).astype(dtype)
    data[draw(st.integers(0, height - 1)), :] = 0  # some nodata
    return {"dtype": dtype, "block": block, "data": data,
            "predictor": draw(st.sampled_from([1, 2])), "tiled": draw(st.booleans())}


def _write(path: Path, spec: dict, origin: tuple[float, float] = (600000.0, 4500000.0)) -> None:
    height, width = spec["data"].shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
               "dtype": spec["dtype"], "crs": "EPSG:32610", "nodata": 0,
               "transform": from_origin(origin[0], origin[1], 10, 10), "compress": "DEFLATE",
               "predictor": spec["predictor"]}
    if spec["tiled"]:
        profile.update(tiled=True, blockxsize=spec["block"], blockysize=spec["block"])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(spec["data"], 1)


def _task(path: str, window: Window, dtype: str, **options: object) -> ChunkTask:
    transform = (10.0, 0.0, 600000.0 + 10 * window.col_off, 0.0, -10.0,
                 4500000.0 - 10 * window.row_off)
    return ChunkTask((Source(path, "item"),), "red", "EPSG:32610", transform,
                     (int(window.height), int(window.width)), dtype, 0, "nearest", None,
                     ReadOptions.make(allow_local=True, backoff=0, **options))


@settings(max_examples=40, deadline=None)
@given(_rasters(), st.data())
def test_verified_reads_equal_plain_reads_for_any_deflate_layout(spec: dict,
                                                                 data: st.DataObject) -> None:
    """No false alarm: the tile checksum check accepts every intact file and window
    (dtypes, predictors, tiles or strips, partial edge tiles)."""
    height, width = spec["data"].shape
    col = data.draw(st.integers(-5, width - 1))
    row = data.draw(st.integers(-5, height - 1))
    window = Window(col, row, data.draw(st.integers(1, width + 5)),
                    data.draw(st.integers(1, height + 5)))
    verified = []
    original = _TileChecker._verify

    def counting(self: _TileChecker, *args: object) -> None:
        verified.append(args[1:3])
        original(self, *args)

    with tempfile.TemporaryDirectory() as folder, \
            mock.patch.object(_TileChecker, "_verify", counting):
        path = str(Path(folder) / "a.tif")
        _write(Path(path), spec)
        got = read_chunk(_task(path, window, spec["dtype"], retries=0))
        with rasterio.open(path) as src:
            expected = src.read(1, window=window, boundless=True, fill_value=0)
            overlaps = window.col_off < src.width and window.row_off < src.height and \
                window.col_off + window.width > 0 and window.row_off + window.height > 0
    np.testing.assert_array_equal(got, expected)
    assert bool(verified) == overlaps  # tiles and strips alike were checked


@settings(max_examples=40, deadline=None)
@given(_rasters(), st.integers(0, 2**32 - 1))
def test_a_corrupted_tile_is_never_returned_as_pixels(spec: dict, seed: int) -> None:
    """A byte changed inside a tile's compressed data: the read raises, or (when the byte
    did not matter) returns exactly the file's pixels; never other pixels."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.tif"
        _write(path, spec)
        with rasterio.open(path) as src:
            bh, bw = src.block_shapes[0]
            blocks = [(int(src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1) or 0),
                       int(src.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1) or 0))
                      for r in range(-(-src.height // bh)) for c in range(-(-src.width // bw))]
            truth = src.read(1)
        offset, size = blocks[int(rng.integers(len(blocks)))]
        assume(size > 0)
        raw = bytearray(path.read_bytes())
        position = offset + int(rng.integers(0, size))
        raw[position] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(raw))
        window = Window(0, 0, truth.shape[1], truth.shape[0])
        try:
            got = read_chunk(_task(str(path), window, spec["dtype"], retries=0))
        except ReadError as exc:
            assert "item" in str(exc)
            return
    np.testing.assert_array_equal(got, truth)


# ------------------------------------------------------------------------- safety helpers

_SAFE = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=6, max_size=20)


@settings(max_examples=200, deadline=None)
@given(_SAFE, _SAFE, _SAFE, st.sampled_from(["X-Amz-Signature", "sig", "token", "X-Goog-Credential",
                                              "api_key", "se"]))
def test_redacted_urls_and_texts_never_contain_the_secret(user: str, password: str,
                                                         secret: str, name: str) -> None:
    assume(password not in user and secret not in user and len({password, secret}) == 2)
    url = f"https://{user}:{password}@example.org/a/B04.tif?x=1&{name}={secret}"
    clean = redact_url(url)
    assert password not in clean and secret not in clean
    assert clean.startswith(f"https://{user}:***@example.org/a/B04.tif?")
    assert redact_url(clean) == clean  # idempotent
    text = f"GDAL: HTTP error code: 503 - {url}. Retrying again in 0.5 secs"
    assert password not in redact_urls(text) and secret not in redact_urls(text)
    options = {"GDAL_HTTP_HEADERS": f"Authorization: Bearer {secret}\r\nX-Other: 1",
               "AWS_SECRET_ACCESS_KEY": password}
    message = f"failed: {secret} / {password} / Authorization: Bearer {secret}"
    scrubbed = scrub(message, secret_values(options))
    assert secret not in scrubbed and password not in scrubbed


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(
    r"(file|s3|https?|ftp|vrt|gs|/vsi[a-z]+|[A-Za-z]):[/\\]{0,3}[a-z0-9./:_-]{0,20}",
    fullmatch=True)))
def test_gdal_path_only_ever_returns_remote_paths(href: str) -> None:
    try:
        path = gdal_path(href)
    except SecurityError:
        return
    assert path.startswith(("http://", "https://", "/vsis3/"))
    assert not path.startswith("/vsis3/") or href.lower().startswith("s3://")


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.floats(0, 1e6), st.integers(0, 10**6)))
def test_retry_after_accepts_seconds_and_http_dates(seconds: float) -> None:
    assert _retry_after(str(seconds)) == pytest.approx(float(seconds))
    stamp = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (_retry_after(stamp) or 0) <= 31
    assert _retry_after("soon") is None and _retry_after(None) is None


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=2, max_size=4000), st.booleans(), st.integers(0, 1000))
@example(body=b"\x00\xff", text=True, seed=0)  # the original byte was already 0xFF
def test_the_proxy_corruption_always_changes_the_body(body: bytes, text: bool,
                                                      seed: int) -> None:
    proxy = FaultProxy("http://127.0.0.1:9", seed=seed)  # never started: no socket
    out = proxy._corrupt(body, text)
    assert len(out) == len(body) and out != body
    if text:
        with pytest.raises(UnicodeDecodeError):
            out.decode("utf-8")
