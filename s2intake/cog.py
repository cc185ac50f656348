"""Direct COG reads: the header parsed by tifffile, tiles fetched by range, decoded by libdeflate.

This is s2intake's fast path for the common case, a Sentinel-2 COG read on its own grid
(same CRS, same pixel size, whole-pixel offset): per file, one GET for the header and one
multi-range GET for every tile the AOI touches (:mod:`s2intake.rangeio`), then each chunk
task decodes its tiles with imagecodecs' libdeflate and horizontal-predictor decoders,
straight into the output where it can.

libdeflate checks each tile's zlib checksum (GDAL does not), so bytes corrupted in transfer
raise :class:`CorruptTileError` and are fetched again instead of becoming wrong pixels.

Anything else (another CRS or resolution, compression other than DEFLATE or none, a
floating-point predictor, a non-GeoTIFF or pixel-is-point file, GDAL options this path does
not understand, non-http hrefs) is read through GDAL by :mod:`s2intake.reader`.
"""

from __future__ import annotations

import io
import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tifffile

from .rangeio import HttpSettings, read_prefix, read_ranges

try:  # libdeflate + a C predictor decoder: ~2x faster than zlib + numpy
    import imagecodecs

    # imagecodecs loads its codec modules on first use: load them with s2intake, not in the
    # first read task
    imagecodecs.deflate_decode, imagecodecs.delta_decode  # noqa: B018
except ImportError:  # pragma: no cover - imagecodecs is a dependency; keep working without
    imagecodecs = None

log = logging.getLogger(__name__)

#: Bytes fetched for the header first (GDAL's default ingest); more is fetched if needed.
HEADER_BYTES = 16384
#: Largest header s2intake fetches before giving the file to GDAL.
MAX_HEADER_BYTES = 4 << 20
#: TIFF compression codes the direct path decodes: none, DEFLATE (Adobe and old-style).
_COMPRESSIONS = {1: "none", 8: "deflate", 32946: "deflate"}


class CorruptTileError(OSError):
    """A tile's bytes did not decode (bad DEFLATE data or checksum): fetch it again."""


class _NeedMore(Exception):
    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


class _Prefix(io.RawIOBase):
    """A file-like view of a file's first bytes that asks for more instead of reading zeros."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.pos = data, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.pos, self.size)[whence]
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self.pos + len(view), self.size)
        if end > len(self.data):
            raise _NeedMore(end)
        got = self.data[self.pos:end]
        view[:len(got)] = got
        self.pos = end
        return len(got)


@dataclass(frozen=True)
class CogHeader:
    """What a chunk task needs to decode a COG's full-resolution tiles (picklable).

    ``offsets``/``counts`` are ``(tile rows, tile columns)`` arrays of byte positions;
    ``transform`` is GDAL-ordered ``(a, b, c, d, e, f)``.
    """

    width: int
    height: int
    block: tuple[int, int]
    dtype: str
    predictor: int
    compression: int
    nodata: float | None
    transform: tuple[float, float, float, float, float, float]
    epsg: int
    offsets: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)

    def tile_range(self, row: int, col: int) -> tuple[int, int] | None:
        """``[start, stop)`` bytes of a tile, or ``None`` for a sparse (absent) tile."""
        offset, count = int(self.offsets[row, col]), int(self.counts[row, col])
        return (offset, offset + count) if offset and count else None


class NotDirect(Exception):
    """The file needs GDAL (the message says why); not an error."""


def parse_header(data: bytes, size: int) -> CogHeader:
    """Parse a COG's first IFD from its first bytes.

    Raises
    ------
    NotDirect
        When the file is not one the direct path decodes.
    _NeedMore
        When the header extends past ``data``.
    """
    with tifffile.TiffFile(_Prefix(data, size), _useframes=False) as tif:
        page = tif.pages.first
        if not page.is_tiled or page.samplesperpixel != 1 or page.imagedepth != 1:
            raise NotDirect("not a single-band tiled TIFF")
        compression = int(page.compression)
        if compression not in _COMPRESSIONS:
            raise NotDirect(f"compression {compression} is not DEFLATE or none")
        predictor = int(page.predictor)
        dtype = np.dtype(page.dtype).newbyteorder(tif.byteorder)
        if predictor not in (1, 2) or (predictor == 2 and dtype.kind not in "ui"):
            raise NotDirect(f"predictor {predictor} with {dtype}")
        scale, tie = _tag(page, _PIXEL_SCALE), _tag(page, _TIEPOINT)
        keys = _geo_keys(_tag(page, _GEO_KEYS))
        epsg = keys.get(_PROJECTED_CRS_KEY, 0)
        if _tag(page, _TRANSFORMATION) or not scale or not tie or len(tie) < 6:
            raise NotDirect("no north-up pixel scale and tie point")
        if keys.get(_RASTER_TYPE_KEY, 1) != 1:
            raise NotDirect("pixel-is-point raster")
        if not 1024 <= epsg < 32767:
            raise NotDirect("no EPSG code of a projected CRS")
        nodata_tag = page.tags.get("GDAL_NODATA")
        nodata = float(str(nodata_tag.value).strip("\x00 ")) if nodata_tag else None
        rows = -(-page.imagelength // page.tilelength)
        cols = -(-page.imagewidth // page.tilewidth)
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        if offsets.size != rows * cols or counts.size != rows * cols:
            raise NotDirect("tile offsets do not match the tile grid")
        sx, sy = float(scale[0]), float(scale[1])
        x0 = float(tie[3]) - float(tie[0]) * sx
        y0 = float(tie[4]) + float(tie[1]) * sy
        return CogHeader(
            width=int(page.imagewidth), height=int(page.imagelength),
            block=(int(page.tilelength), int(page.tilewidth)), dtype=dtype.str,
            predictor=predictor, compression=compression, nodata=nodata,
            transform=(sx, 0.0, x0, 0.0, -sy, y0), epsg=epsg,
            offsets=offsets.reshape(rows, cols), counts=counts.reshape(rows, cols))


#: GeoTIFF tags and keys read here. tifffile's ``geotiff_tags`` decodes every key into enums
#: (20 ms the first time, under a lock every reading thread then waits on).
_PIXEL_SCALE, _TIEPOINT, _TRANSFORMATION, _GEO_KEYS = 33550, 33922, 34264, 34735
_RASTER_TYPE_KEY, _PROJECTED_CRS_KEY = 1025, 3072


def _tag(page: Any, code: int) -> Any:
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def _geo_keys(directory: Sequence[int] | None) -> dict[int, int]:
    """The GeoKeys with a short value stored in the key directory itself (``{id: value}``)."""
    if not directory or len(directory) < 4:
        return {}
    count = int(directory[3])
    entries = directory[4:4 + 4 * count]
    return {int(entries[i]): int(entries[i + 3]) for i in range(0, len(entries) - 3, 4)
            if entries[i + 1] == 0 and entries[i + 2] == 1}


def read_header(url: str, settings: HttpSettings) -> CogHeader:
    """Fetch and parse a COG header: one GET unless the header is unusually large."""
    length = HEADER_BYTES
    data, size = read_prefix(url, length, settings)
    while True:
        try:
            return parse_header(data, size)
        except _NeedMore as more:
            if more.needed > MAX_HEADER_BYTES or len(data) >= size:
                raise NotDirect(f"header larger than {MAX_HEADER_BYTES} bytes") from None
            extra = read_ranges(url, [(len(data), min(max(more.needed, 2 * len(data)), size))],
                                settings)
            data += bytes(next(iter(extra.values())))
        except NotDirect:
            raise
        except Exception as exc:  # noqa: BLE001 - tifffile's errors for a damaged header
            raise CorruptTileError(f"the header did not parse: {exc}") from exc


# ------------------------------------------------------------------------ grids and tiles

Window = tuple[int, int, int, int]  # row0, row1, col0, col1 (end exclusive)
Buffer = bytes | memoryview


def grid_offset(source: Sequence[float], target: Sequence[float]) -> tuple[int, int] | None:
    """``(row, col)`` of ``target``'s pixel (0, 0) on ``source``'s pixel grid, or ``None``
    when the two north-up affine transforms (GDAL order) differ in pixel size or do not share
    pixel edges."""
    sa, sb, sc, sd, se, sf = source[:6]
    a, b, c, d, e, f = target[:6]
    if sb or sd or b or d or not np.isclose(sa, a) or not np.isclose(se, e):
        return None
    col, row = (c - sc) / sa, (f - sf) / se
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(row)), int(round(col))


def file_window(header: CogHeader, transform: tuple[float, ...], shape: tuple[int, int],
                epsg: int | None) -> Window | None:
    """The file's pixel window of an output grid region, or ``None`` when not on its grid.

    The window may extend past the file (the part outside is nodata).
    """
    offset = grid_offset(header.transform, transform) if epsg == header.epsg else None
    if offset is None:
        return None
    r0, c0 = offset
    return r0, r0 + shape[0], c0, c0 + shape[1]


def tiles_of(header: CogHeader, window: Window) -> list[tuple[int, int]]:
    """``(row, col)`` of the tiles a file window touches (inside the file)."""
    r0, r1, c0, c1 = window
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, header.height), min(c1, header.width)
    if r0 >= r1 or c0 >= c1:
        return []
    bh, bw = header.block
    return [(r, c) for r in range(r0 // bh, (r1 - 1) // bh + 1)
            for c in range(c0 // bw, (c1 - 1) // bw + 1)]


def fetch_tiles(url: str, header: CogHeader, tiles: list[tuple[int, int]],
                settings: HttpSettings) -> dict[tuple[int, int], memoryview]:
    """Compressed bytes of ``tiles`` (sparse tiles are left out), in as few GETs as possible."""
    ranges = {tile: r for tile in tiles if (r := header.tile_range(*tile)) is not None}
    got = read_ranges(url, list(ranges.values()), settings)
    return {tile: got[r] for tile, r in ranges.items()}


def decode_tile(header: CogHeader, data: bytes | memoryview,
                rows: tuple[int, int] | None = None) -> np.ndarray:
    """One tile as a writable ``block``-shaped array in native byte order.

    ``rows`` (start, stop): only those rows are needed; the horizontal predictor is undone
    for them alone (the others hold undefined values). The whole tile is always inflated,
    so its checksum is always checked.

    Raises
    ------
    CorruptTileError
        When the bytes do not decode to exactly one tile (checksum included).
    """
    bh, bw = header.block
    dtype = np.dtype(header.dtype)
    nbytes = bh * bw * dtype.itemsize
    if header.compression == 1:
        if len(data) < nbytes:
            raise CorruptTileError(f"uncompressed tile has {len(data)} of {nbytes} bytes")
        tile = np.frombuffer(data, dtype=dtype, count=bh * bw).reshape(bh, bw).copy()
    else:
        tile = np.empty((bh, bw), dtype=dtype)
        try:
            if imagecodecs is not None:
                got = imagecodecs.deflate_decode(data, out=tile.reshape(-1).view(np.uint8))
                size = len(got)
            else:
                raw = zlib.decompress(data)
                size = len(raw)
                tile.reshape(-1).view(np.uint8)[:min(size, nbytes)] = \
                    np.frombuffer(raw, np.uint8)[:nbytes]
        except Exception as exc:  # noqa: BLE001 - imagecodecs.DeflateError, zlib.error
            raise CorruptTileError(f"tile did not decode: {exc}") from None
        if size != nbytes:
            raise CorruptTileError(f"tile decoded to {size} bytes, expected {nbytes}")
    if header.predictor == 2:
        if imagecodecs is not None and dtype.isnative:
            part = tile if rows is None else tile[rows[0]:rows[1]]
            imagecodecs.delta_decode(part, axis=-1, out=part)
        else:
            native = tile.astype(dtype.newbyteorder("="))
            tile = np.cumsum(native, axis=1, dtype=native.dtype)
    if not tile.dtype.isnative:
        tile = tile.astype(tile.dtype.newbyteorder("="))
    return tile


def assemble(header: CogHeader, window: Window, tiles: Mapping[tuple[int, int], Buffer],
             dtype: np.dtype, nodata: float) -> np.ndarray:
    """The pixels of a file window from its tiles' bytes; nodata outside the file.

    A window that is exactly one tile returns the decoded tile itself (no copy).

    Raises
    ------
    CorruptTileError
        When a tile does not decode; its ``tile`` attribute is ``(row, col)``.
    KeyError
        When a tile the window needs is missing from ``tiles``.
    """
    r0, r1, c0, c1 = window
    bh, bw = header.block
    file_nodata = header.nodata
    same_nodata = file_nodata is None or file_nodata == nodata
    if (same_nodata and r0 % bh == 0 and c0 % bw == 0 and r1 - r0 == bh and c1 - c0 == bw
            and r0 >= 0 and r1 <= header.height and c0 >= 0 and c1 <= header.width
            and np.dtype(header.dtype).newbyteorder("=") == dtype
            and header.tile_range(r0 // bh, c0 // bw) is not None):
        return _decode(header, tiles, (r0 // bh, c0 // bw))
    out = np.full((r1 - r0, c1 - c0), nodata, dtype=dtype)
    for row, col in tiles_of(header, window):
        if header.tile_range(row, col) is None:
            continue  # sparse tile: GDAL reads it as nodata too
        tr0, tc0 = row * bh, col * bw
        rs0, rs1 = max(r0, tr0), min(r1, tr0 + bh, header.height)
        tile = _decode(header, tiles, (row, col), (rs0 - tr0, rs1 - tr0))
        cs0, cs1 = max(c0, tc0), min(c1, tc0 + bw, header.width)
        part = tile[rs0 - tr0:rs1 - tr0, cs0 - tc0:cs1 - tc0]
        target = out[rs0 - r0:rs1 - r0, cs0 - c0:cs1 - c0]
        if same_nodata:
            target[...] = part
        else:
            target[...] = np.where(part == file_nodata, nodata, part)
    return out


def _decode(header: CogHeader, tiles: Mapping[tuple[int, int], Buffer],
            tile: tuple[int, int], rows: tuple[int, int] | None = None) -> np.ndarray:
    try:
        return decode_tile(header, tiles[tile], rows)
    except CorruptTileError as exc:
        exc.tile = tile  # type: ignore[attr-defined]
        raise
