"""A seeded, synthetic Sentinel-2 L2A sample over Berry Creek, California, on MGRS tile 10SFJ.

The North Complex Fire ran through Berry Creek on 8 September 2020. This module writes a small,
deterministic stand-in for what Earth Search serves for that place: Cloud-Optimized GeoTIFFs laid
out like the public ``sentinel-cogs`` bucket, and for every acquisition *both* an Earth Search
v1 ``sentinel-2-l2a`` item and a v0 ``sentinel-s2-l2a-cogs`` item pointing at the same files
(as the real service does). Everything is offline and built in seconds::

    info = build_sample()                        # idempotent, cached in ~/.cache/s2intake/sample
    items = info.items("v1", base="http://127.0.0.1:8080")   # hrefs rebased onto a server
    truth = json.loads(info.truth_path.read_text())          # what the pixels contain

Grid (exactly the real one)
    Tile 10SFJ is EPSG:32610 with its upper-left corner at x=600000, y=4500000. 10 m bands
    (``blue`` B02, ``green`` B03, ``red`` B04, ``nir`` B08) are 10980 x 10980 px, 20 m bands
    (``swir16`` B11, ``swir22`` B12, ``scl`` SCL) 5490 x 5490 px. Files are uint16 (SCL uint8),
    nodata 0, 1024 x 1024 internal tiles, DEFLATE (horizontal predictor for uint16), overviews
    at factors 2, 4, 8 and 16 (nodata-aware average; nearest for SCL), written by GDAL's COG
    driver (``LAYOUT=COG``). The neighbouring tile 10SFH (y origin 4400040) is used on the dates
    where a same-day mosaic is needed.

Sparse and dense
    By default only the 1024 px blocks the AOI touches are written (10SFJ: 10 m block columns
    2..4, rows 8..10; 20 m block columns 1..2, rows 4..5; 10SFH: block row 0 of the same
    columns). Every other block is absent from the file (``SPARSE_OK``) and reads as 0 = nodata,
    so a band costs a few MB. The item footprints still describe the whole tile (minus any
    nodata wedge): outside the AOI blocks the sample simply has no pixels. ``dense=True`` fills
    whole tiles (~230 MB and tens of seconds per 10 m band: benchmarks only).

Content
    A multi-octave terrain/vegetation texture (forest, dry grass, a few water bodies, hill
    shading), seasonal and per-date gains, and a burn scar that appears on 2020-09-08 and grows
    until 2020-10-08 (burned: NIR 800..1200, SWIR22 2000..2600, darker visible bands; the exact
    10 m mask per date is in ``truth.json``). Cloudy dates carry bright clouds (visible DN
    ~3000..8000) with their shadows, and a matching SCL band (0 nodata, 3 cloud shadow,
    4 vegetation, 5 not vegetated, 6 water, 8/9 cloud medium/high probability, 10 thin cirrus).
    Partial dates have a nodata wedge (DN 0 in every band, SCL 0) at an orbit edge or, on the
    mosaic date, a datastrip cut over the AOI's southern part that 10SFH covers. Every field is a
    function of the map position, the date and the seed only, so two tiles agree where they
    overlap, and a date's pixels do not depend on which other dates or bands were built.

Processing baseline and the BOA offset (the choice made here)
    2020 acquisitions are baseline ``02.14``, 2021-06-30 and later 2021 ones ``03.00``; their DNs
    are reflectance x 10000, the v1 items say ``raster:bands`` ``offset: 0`` and
    ``earthsearch:boa_offset_applied: false``, and the v0 items (like the real 2020 v0 records)
    carry the baseline only inside ``sentinel:product_id`` (``_N0214_``). The two 2022
    acquisitions (after 2022-01-25) are baseline ``04.00``: their DNs are reflectance x 10000
    + 1000 (nodata stays 0), the v1 items say ``offset: -0.1`` with
    ``earthsearch:boa_offset_applied: true``, the v0 items ``sentinel:processing_baseline``
    ``"04.00"`` and ``sentinel:boa_offset_applied: true``. So for every item
    ``reflectance = DN * 0.0001 + offset``, and the flag says whether that offset is non-zero.
    The v1 collection's ``item_assets`` keep the real collection's ``offset: 0``: the offset
    must be read per item.

Item shape
    v1 items follow real ``sentinel2-to-stac`` 0.1.1 items (e.g. ``S2A_13TDE_20231008_0_L2A``):
    the same top-level keys, property keys and per-asset keys. Only the seven assets written
    here are listed (no ``visual``/``thumbnail``/``-jp2``/metadata assets), and the API's
    ``thumbnail`` link is left out. v0 items follow the real v0 records: asset keys B02 B03 B04
    B08 B11 B12 SCL with 9-element ``proj:transform``, no ``raster:bands``; 2020/2021 items have
    the property set of ``S2B_36MYB_20200806_0_L2A``, 2022 items that of
    ``S2A_24XWF_20230506_1_L2A``. The overcast 2020-01-07 item has
    ``sentinel:valid_cloud_cover: false``. Item geometry is the valid-data footprint (tile square,
    or tile minus the wedge) in lon/lat; ``bbox`` is its bounds. Tile-level cloud and class
    percentages are estimated on a 200 m grid over the whole tile (a scene model, not the
    sparse pixels), so they are "rough" as the real ones; the AOI figures in ``truth.json`` are
    exact counts of the written 10 m pixels.

Layout under ``root``::

    sentinel-s2-l2a-cogs/10/S/FJ/2020/9/S2B_10SFJ_20200908_0_L2A/B02.tif ... B12.tif, SCL.tif
    sentinel-s2-l2a-cogs/10/S/FH/2020/9/S2A_10SFH_20200923_0_L2A/...
    stac/v1/collection.json, stac/v1/items.json      (FeatureCollection)
    stac/v0/collection.json, stac/v0/items.json
    truth.json, manifest.json                        (manifest written last)

Asset hrefs use the real base ``REAL_COG_BASE`` (``https://sentinel-cogs.s3.us-west-2.
amazonaws.com/sentinel-s2-l2a-cogs/10/S/FJ/2020/9/<id>/B04.tif``); :func:`rebase_hrefs` (or
:meth:`SampleInfo.items` with ``base=``) points them at a server or at the local files.

Dates
    The demo set (``n_dates=None``) has 25 10SFJ acquisitions, 23 of them in 2020-01-01..
    2021-06-30 on a 5-day cadence with S2A/S2B alternating (relative orbit 113, plus two
    acquisitions from the neighbouring orbit 70 whose swath edge leaves a nodata wedge), and two
    in 2022 (baseline 04.00), plus 10SFH items on 2020-09-23 (10SFJ cut by a datastrip boundary
    over the AOI's south) and 2020-11-12 (both tiles complete). ``DEMO_DATES`` lists them and
    ``truth.json`` tags each one (``clear``, ``cloudy``, ``partial``, ``burn``, ``burn_start``,
    ``boa_offset``, ``mosaic``, ``tile_cloudy_aoi_clear``, ``aoi_cloudy_tile_clear``...).
    A smaller ``n_dates`` keeps the most telling dates first; a larger one (up to ~110) adds
    more 5-day-cadence dates in 2020-2021.

Build
    Static fields (terrain, vegetation, water, burn day) are computed once per build, then one
    task per acquisition renders and writes its seven COGs in a ``processes=2`` pool (fork).
    GDAL's COG driver reads the pixels in place (``MEM:::`` datasets in a VRT with explicit
    overviews) and compresses with DEFLATE level 1. A lock file serialises concurrent builds of
    the same folder; ``manifest.json`` (parameters + generator version + a digest of this file)
    is written last, so an interrupted build is redone by the next call.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import S2IntakeError

__all__ = [
    "AOI_PATH",
    "BERRY_CREEK_AOI",
    "REAL_COG_BASE",
    "TILE_CRS",
    "SampleError",
    "SampleInfo",
    "build_sample",
    "default_root",
    "rebase_hrefs",
]

REAL_COG_BASE = "https://sentinel-cogs.s3.us-west-2.amazonaws.com"
TILE_CRS = "EPSG:32610"
COG_PREFIX = "sentinel-s2-l2a-cogs"
GENERATOR_VERSION = "1.0"
DEFAULT_SEED = 20200908

#: The Berry Creek analysis area (lon/lat), identical to ``catalogs/berry_creek.geojson``.
BERRY_CREEK_AOI: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [[
        [-121.50375, 39.68891], [-121.33577, 39.69113], [-121.32794, 39.77390],
        [-121.39941, 39.81365], [-121.50347, 39.80963], [-121.50375, 39.68891],
    ]],
}
_AOI_FEATURE: dict[str, Any] = {
    "type": "Feature",
    "properties": {"name": "Berry Creek / North Complex Fire 2020 (analysis area)"},
    "geometry": BERRY_CREEK_AOI,
}


def _find_aoi_path() -> Path:
    """``catalogs/berry_creek.geojson`` of the checkout, else a cached copy of the embedded AOI."""
    repo = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
    if repo.is_file():
        return repo
    cached = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "s2intake"
    cached = cached / "berry_creek.geojson"
    if not cached.is_file():
        with contextlib.suppress(OSError):
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(_AOI_FEATURE, indent=2) + "\n")
    return cached


#: The AOI file (the repository's ``catalogs/berry_creek.geojson``; the source of truth).
AOI_PATH: Path = _find_aoi_path()


class SampleError(S2IntakeError, ValueError):
    """The sample cannot be built as asked (bad parameter, unknown band...)."""


# ---------------------------------------------------------------------------------------------
# grid, tiles, bands
# ---------------------------------------------------------------------------------------------
ANCHOR_X = 600000.0  # 10SFJ upper-left corner: every grid used here is aligned to it
ANCHOR_Y = 4500000.0
TILE_SPAN = 109800
BLOCK = 1024
NPX = {10: 10980, 20: 5490}
OVERVIEW_FACTORS = (2, 4, 8, 16)
LATTICE_RES = 40.0  # smooth fields are evaluated on this lattice, then interpolated
META_RES = 200.0  # grid of the tile-level (metadata) scene statistics
BURN_START = dt.date(2020, 9, 8)
BASELINE_04_DATE = dt.date(2022, 1, 25)
BASELINE_03_DATE = dt.date(2021, 6, 30)
BOA_OFFSET_DN = 1000
DEFLATE_LEVEL = 1  # libdeflate level: the build is dominated by compression


@dataclass(frozen=True)
class _Tile:
    code: str
    utm_zone: int
    latitude_band: str
    grid_square: str
    x0: float
    y0: float
    epsg: int = 32610

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0 - TILE_SPAN, self.x0 + TILE_SPAN, self.y0)

    def path(self) -> str:
        return f"{self.utm_zone}/{self.latitude_band}/{self.grid_square}"


TILES: dict[str, _Tile] = {
    "10SFJ": _Tile("10SFJ", 10, "S", "FJ", 600000.0, 4500000.0),
    "10SFH": _Tile("10SFH", 10, "S", "FH", 600000.0, 4400040.0),
}


@dataclass(frozen=True)
class _Band:
    key: str  # v1 asset key (common name)
    v0_key: str  # v0 asset key
    file: str
    res: int
    dtype: str


BANDS: tuple[_Band, ...] = (
    _Band("blue", "B02", "B02.tif", 10, "uint16"),
    _Band("green", "B03", "B03.tif", 10, "uint16"),
    _Band("red", "B04", "B04.tif", 10, "uint16"),
    _Band("nir", "B08", "B08.tif", 10, "uint16"),
    _Band("swir16", "B11", "B11.tif", 20, "uint16"),
    _Band("swir22", "B12", "B12.tif", 20, "uint16"),
    _Band("scl", "SCL", "SCL.tif", 20, "uint8"),
)
BAND_KEYS = tuple(b.key for b in BANDS)
_BAND_BY_KEY = {b.key: b for b in BANDS}
_REFLECTANCE = tuple(b.key for b in BANDS if b.key != "scl")

#: Surface model, DN = reflectance x 10000: vegetation, dry grass/soil, water, burned at
#: severity 0 and 1, cloud top and seasonal amplitude (x vegetation fraction).
_SPEC: dict[str, dict[str, float]] = {
    "blue": {"veg": 370, "bare": 620, "water": 430, "burn0": 360, "burn1": 280,
             "cloud": 6200, "season": -15},
    "green": {"veg": 620, "bare": 800, "water": 480, "burn0": 440, "burn1": 330,
              "cloud": 6000, "season": 50},
    "red": {"veg": 410, "bare": 760, "water": 260, "burn0": 470, "burn1": 360,
            "cloud": 6100, "season": -50},
    "nir": {"veg": 2850, "bare": 2200, "water": 170, "burn0": 1180, "burn1": 830,
            "cloud": 6500, "season": 260},
    "swir16": {"veg": 1720, "bare": 2350, "water": 90, "burn0": 2000, "burn1": 2300,
               "cloud": 4300, "season": -110},
    "swir22": {"veg": 900, "bare": 1450, "water": 60, "burn0": 2050, "burn1": 2550,
               "cloud": 3100, "season": -70},
}
_DETAIL = 0.05  # strength of the fine texture (relative)
_BURNED_NIR = (800.0, 1200.0)  # burned NIR is clipped to this range (before the BOA offset)
_LAND_NIR_MIN = 1500.0  # unburned land never goes below this NIR (outside shadows)
_SHADOW_FACTOR = 0.45

# SCL classes
SCL_NODATA, SCL_SHADOW, SCL_VEG, SCL_NOTVEG, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10


@dataclass(frozen=True)
class _Grid:
    """A north-up pixel grid: upper-left corner ``(x0, y0)``, pixel size ``res``, ``w x h``."""

    x0: float
    y0: float
    res: float
    w: int
    h: int

    def xs(self) -> np.ndarray:
        return self.x0 + self.res * (np.arange(self.w) + 0.5)

    def ys(self) -> np.ndarray:
        return self.y0 - self.res * (np.arange(self.h) + 0.5)

    @property
    def transform(self) -> Any:
        from affine import Affine

        return Affine(self.res, 0.0, self.x0, 0.0, -self.res, self.y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0 - self.h * self.res, self.x0 + self.w * self.res, self.y0)

    def sub(self, r0: int, r1: int, c0: int, c1: int) -> _Grid:
        return _Grid(self.x0 + c0 * self.res, self.y0 - r0 * self.res, self.res, c1 - c0, r1 - r0)

    def coarsen(self, f: int) -> _Grid:
        return _Grid(self.x0, self.y0, self.res * f, -(-self.w // f), -(-self.h // f))

    def shifted(self, dx: float, dy: float) -> _Grid:
        return _Grid(self.x0 + dx, self.y0 + dy, self.res, self.w, self.h)


# ---------------------------------------------------------------------------------------------
# positional noise
# ---------------------------------------------------------------------------------------------
_M64 = (1 << 64) - 1


def _seed(*parts: Any) -> int:
    """A 64-bit seed from any printable parts (stable across runs and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) float32 from integer lattice coordinates (broadcast) and a seed."""
    h = ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h = h ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= np.uint64(seed & _M64)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _noise(grid: _Grid, cell: float, seed: int) -> np.ndarray:
    """Value noise with lattice spacing ``cell`` (metres), sampled at the grid's pixel centres."""
    u = grid.xs() / cell
    v = grid.ys() / cell
    iu = np.floor(u)
    iv = np.floor(v)
    fu = (u - iu).astype(np.float32)
    fv = (v - iv).astype(np.float32)
    iu = iu.astype(np.int64)
    iv = iv.astype(np.int64)
    lu = np.arange(iu.min(), iu.max() + 2, dtype=np.int64)
    lv = np.arange(iv.min(), iv.max() + 2, dtype=np.int64)
    lattice = _hash01(lu[None, :], lv[:, None], seed)
    a = iu - lu[0]
    b = iv - lv[0]
    su = fu * fu * (3 - 2 * fu)
    sv = (fv * fv * (3 - 2 * fv))[:, None]
    rows = lattice[:, a] * (1 - su) + lattice[:, a + 1] * su
    return rows[b] * (1 - sv) + rows[b + 1] * sv


def _noise_rot(grid: _Grid, cell: float, seed: int, angle: float) -> np.ndarray:
    """Value noise on a lattice rotated by ``angle`` (no axis-aligned artefacts), any grid."""
    c, s = math.cos(angle), math.sin(angle)
    xs = grid.xs()[None, :]
    ys = grid.ys()[:, None]
    u = (xs * c + ys * s) / cell
    v = (ys * c - xs * s) / cell
    iu = np.floor(u)
    iv = np.floor(v)
    fu = (u - iu).astype(np.float32)
    fv = (v - iv).astype(np.float32)
    iu = iu.astype(np.int64)
    iv = iv.astype(np.int64)
    su = fu * fu * (3 - 2 * fu)
    sv = fv * fv * (3 - 2 * fv)
    bottom = _hash01(iu, iv, seed) * (1 - su) + _hash01(iu + 1, iv, seed) * su
    top = _hash01(iu, iv + 1, seed) * (1 - su) + _hash01(iu + 1, iv + 1, seed) * su
    return bottom * (1 - sv) + top * sv


def _fbm(grid: _Grid, octaves: Sequence[tuple[float, float]], seed: int) -> np.ndarray:
    """Sum of rotated value-noise octaves ``(cell, weight)``: about zero mean, unit std.

    Grids finer than :data:`LATTICE_RES` are evaluated on the anchor-aligned lattice and
    interpolated, so the result depends on the position only, not on the window asked for.
    """
    if grid.res < LATTICE_RES:
        lattice = _lattice_for(grid)
        return _bilinear(_fbm(lattice, octaves, seed), lattice, grid)
    out = np.zeros((grid.h, grid.w), np.float32)
    norm = 0.0
    for k, (cell, weight) in enumerate(octaves):
        angle = (_seed(seed, k, "angle") % 3600) / 3600 * math.pi
        out += np.float32(weight) * (_noise_rot(grid, cell, _seed(seed, k), angle)
                                     - np.float32(0.5))
        norm += weight * weight
    out *= np.float32(1.0 / (0.19 * math.sqrt(norm)))
    return out


_PATTERN = 2048  # period (pixels) of the white-noise pattern


def _pixel_noise(grid: _Grid, seed: int) -> np.ndarray:
    """White noise in [-1, 1) keyed on the global pixel index (so windows agree).

    A seeded 2048 x 2048 pattern repeated over the grid: cheap, and its period (20 km at
    10 m) is invisible in white noise.
    """
    rng = np.random.default_rng(seed % (1 << 63))
    pattern = rng.random((_PATTERN, _PATTERN), dtype=np.float32)
    pattern *= np.float32(2.0)
    pattern -= np.float32(1.0)
    gx = round((grid.x0 - ANCHOR_X) / grid.res)
    gy = round((ANCHOR_Y - grid.y0) / grid.res)
    rows = (gy + np.arange(grid.h)) % _PATTERN
    cols = (gx + np.arange(grid.w)) % _PATTERN
    return pattern[rows][:, cols]


def _lattice_for(grid: _Grid, res: float = LATTICE_RES) -> _Grid:
    """The anchor-aligned lattice grid covering ``grid`` with a two-cell margin.

    Two cells, so that gradients taken on the lattice (hill shading) are central differences
    wherever they are interpolated: the fields then do not depend on the window.
    """
    x1 = grid.x0 + grid.w * grid.res
    y1 = grid.y0 - grid.h * grid.res
    c0 = math.floor((grid.x0 - ANCHOR_X) / res) - 2
    c1 = math.ceil((x1 - ANCHOR_X) / res) + 2
    r0 = math.floor((ANCHOR_Y - grid.y0) / res) - 2
    r1 = math.ceil((ANCHOR_Y - y1) / res) + 2
    return _Grid(ANCHOR_X + c0 * res, ANCHOR_Y - r0 * res, res, c1 - c0, r1 - r0)


def _bilinear(values: np.ndarray, src: _Grid, dst: _Grid) -> np.ndarray:
    """Bilinear interpolation of ``values`` (on ``src`` pixel centres) at ``dst`` centres."""
    fx = (dst.xs() - (src.x0 + src.res / 2)) / src.res
    fy = ((src.y0 - src.res / 2) - dst.ys()) / src.res
    i0 = np.clip(np.floor(fx).astype(np.int64), 0, src.w - 2)
    j0 = np.clip(np.floor(fy).astype(np.int64), 0, src.h - 2)
    wx = np.clip(fx - i0, 0, 1).astype(np.float32)
    wy = np.clip(fy - j0, 0, 1).astype(np.float32)[:, None]
    rows = values[:, i0] * (1 - wx) + values[:, i0 + 1] * wx
    return rows[j0] * (1 - wy) + rows[j0 + 1] * wy


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Each pixel repeated into a 2 x 2 block (20 m -> 10 m)."""
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def _mean2(a: np.ndarray) -> np.ndarray:
    """2 x 2 block mean (10 m -> 20 m) as float32; both sizes must be even."""
    out = a[0::2, 0::2].astype(np.float32)
    out += a[0::2, 1::2]
    out += a[1::2, 0::2]
    out += a[1::2, 1::2]
    out *= np.float32(0.25)
    return out


# ---------------------------------------------------------------------------------------------
# the landscape
# ---------------------------------------------------------------------------------------------
_TERRAIN = ((12000.0, 1.0), (4000.0, 0.6), (1500.0, 0.3), (500.0, 0.12), (200.0, 0.04))
_MOISTURE = ((6000.0, 1.0), (2000.0, 0.7), (700.0, 0.45), (250.0, 0.3), (120.0, 0.2))
_WATER = ((5000.0, 1.0), (1600.0, 0.5), (500.0, 0.2))
_RELIEF_M = 500.0  # metres of relief per unit of the terrain field
_SUN_AZ, _SUN_EL = math.radians(150.0), math.radians(50.0)
_V_LOW, _V_HIGH = -1.3, 0.0  # moisture -> vegetation fraction ramp
_WATER_LEVEL = 2.6


def _land_coarse(grid: _Grid, seed: int) -> dict[str, np.ndarray]:
    """Terrain, moisture, water fields and hill shading evaluated directly on ``grid``."""
    e = _fbm(grid, _TERRAIN, _seed(seed, "terrain"))
    m = _fbm(grid, _MOISTURE, _seed(seed, "moisture")) - np.float32(0.35) * e
    wn = _fbm(grid, _WATER, _seed(seed, "water")) - np.float32(0.6) * e
    z = e * np.float32(_RELIEF_M)
    dzdx = np.gradient(z, axis=1) / grid.res
    dzdy = -np.gradient(z, axis=0) / grid.res
    sx = math.sin(_SUN_AZ) * math.cos(_SUN_EL)
    sy = math.cos(_SUN_AZ) * math.cos(_SUN_EL)
    shade = (-dzdx * sx - dzdy * sy) / math.sin(_SUN_EL)
    illum = np.clip(1 + 0.7 * shade, 0.8, 1.2).astype(np.float32)
    return {"moisture": m.astype(np.float32), "water": wn.astype(np.float32), "illum": illum}


def _land(grid: _Grid, seed: int) -> dict[str, np.ndarray]:
    """Vegetation fraction, illumination, water mask and fine texture on a 10/20 m grid."""
    if grid.res < LATTICE_RES:
        lattice = _lattice_for(grid)
        coarse = _land_coarse(lattice, seed)
        fields = {k: _bilinear(v, lattice, grid) for k, v in coarse.items()}
        moisture = fields["moisture"]
        detail = np.float32(0.55) * _pixel_noise(grid, _seed(seed, "pixel"))
        detail += np.float32(0.9) * (_noise(grid, 60.0, _seed(seed, "detail")) - np.float32(0.5))
    else:
        fields = _land_coarse(grid, seed)
        moisture = fields["moisture"]
        detail = np.zeros((grid.h, grid.w), np.float32)
    water = fields["water"] > _WATER_LEVEL
    veg = np.clip((moisture - _V_LOW) / (_V_HIGH - _V_LOW), 0, 1).astype(np.float32)
    veg[water] = 0
    return {"veg": veg, "illum": fields["illum"], "water": water, "detail": detail}


def _surface_base(land: dict[str, np.ndarray], band: str) -> np.ndarray:
    """Static (pre-fire, neutral-season) DN of ``band``."""
    s = _SPEC[band]
    if "factor" not in land:  # illumination x texture, shared by every band
        land["factor"] = land["illum"] * (np.float32(1.0) + np.float32(_DETAIL) * land["detail"])
    out = land["veg"] * np.float32(s["veg"] - s["bare"])
    out += np.float32(s["bare"])
    out *= land["factor"]
    if band == "nir":
        np.maximum(out, _LAND_NIR_MIN + abs(s["season"]), out=out)
    if "water_detail" not in land:
        land["water_detail"] = np.float32(1.0) + np.float32(0.03) * land["detail"]
    np.copyto(out, np.float32(s["water"]) * land["water_detail"], where=land["water"])
    return out


def _static_scl(veg20: np.ndarray, water20: np.ndarray) -> np.ndarray:
    scl = np.where(veg20 >= 0.45, SCL_VEG, SCL_NOTVEG).astype(np.uint8)
    scl[water20 >= 0.5] = SCL_WATER
    return scl


# burn scar: an irregular ellipse-like region, burned in a first run on 2020-09-08 (core) and
# growing outwards until 2020-10-08.
_BURN_CENTER = (635400.0, 4401000.0)
_BURN_RADII = (6300.0, 4300.0)
_BURN_ROT = math.radians(28.0)
_BURN_CORE = 0.6  # S below this burns on day 0
_BURN_DAYS = 30.0  # S = 1 burns on day 30
_BURN_OCTAVES = ((3500.0, 1.0), (1200.0, 0.6), (400.0, 0.3))
_BURN_SEARCH = _Grid(620480.0, 4414000.0, 10.0, 3072, 2380)  # inside 10SFJ's AOI blocks


def _burn_fields(grid: _Grid, seed: int, land: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Burn day (days after 2020-09-08, inf = never) and severity on ``grid``."""
    dx = grid.xs()[None, :] - _BURN_CENTER[0]
    dy = grid.ys()[:, None] - _BURN_CENTER[1]
    c, s = math.cos(_BURN_ROT), math.sin(_BURN_ROT)
    r = np.sqrt(((dx * c + dy * s) / _BURN_RADII[0]) ** 2
                + ((-dx * s + dy * c) / _BURN_RADII[1]) ** 2).astype(np.float32)
    r += np.float32(0.2) * _fbm(grid, _BURN_OCTAVES, _seed(seed, "burn"))
    day = np.where(r <= _BURN_CORE, 0.0,
                   _BURN_DAYS * (r - _BURN_CORE) / (1 - _BURN_CORE)).astype(np.float32)
    day = np.ceil(day)
    day[r > 1] = np.inf
    if land is not None:
        day[land["water"]] = np.inf
    sev = np.clip(1.25 - 0.8 * r + 0.12 * _pixel_noise(grid, _seed(seed, "severity")), 0, 1)
    return {"day": day, "severity": sev.astype(np.float32)}


def _burnval(band: str, severity: np.ndarray, detail: np.ndarray) -> np.ndarray:
    s = _SPEC[band]
    out = np.float32(s["burn0"]) + np.float32(s["burn1"] - s["burn0"]) * severity
    out *= np.float32(1.0) + np.float32(0.04) * detail
    return out


# ---------------------------------------------------------------------------------------------
# acquisitions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Acq:
    tile: str
    date: dt.date
    platform: str  # "sentinel-2a" / "sentinel-2b"
    orbit: int
    scenario: str  # cloud scenario
    cut: str | None  # None, "orbit_edge" or "datastrip_south"
    seconds: float  # acquisition time of day (UTC seconds)
    mosaic: bool = False  # the same day is also acquired on the other tile
    valid_cloud_cover: bool = True

    @property
    def sat(self) -> str:
        return "S2A" if self.platform.endswith("a") else "S2B"

    @property
    def id(self) -> str:
        return f"{self.sat}_{self.tile}_{self.date:%Y%m%d}_0_L2A"

    @property
    def when(self) -> dt.datetime:
        midnight = dt.datetime(self.date.year, self.date.month, self.date.day, tzinfo=dt.UTC)
        return midnight + dt.timedelta(seconds=self.seconds)

    @property
    def baseline(self) -> str:
        if self.date >= BASELINE_04_DATE:
            return "04.00"
        return "03.00" if self.date >= BASELINE_03_DATE else "02.14"

    @property
    def dn_offset(self) -> int:
        return BOA_OFFSET_DN if self.date >= BASELINE_04_DATE else 0

    @property
    def burn_day(self) -> int:
        return (self.date - BURN_START).days

    def href_dir(self) -> str:
        t = TILES[self.tile]
        return f"{COG_PREFIX}/{t.path()}/{self.date.year}/{self.date.month}/{self.id}"


_MAIN_ORBIT, _EDGE_ORBIT = 113, 70
_MAIN_T0 = 18 * 3600 + 59 * 60 + 21.0  # 10SFJ on the main orbit, about 18:59:21 UTC
_EDGE_T0 = 18 * 3600 + 49 * 60 + 12.0
_FH_DELAY = 4.6  # seconds later on 10SFH (descending orbit: southern tile a little later)

#: The demo acquisitions on 10SFJ: (date, orbit, cloud scenario, nodata cut, options).
_DEMO: tuple[tuple[str, str, str, str | None, dict[str, Any]], ...] = (
    ("2020-01-07", "main", "overcast", None, {"valid_cloud_cover": False}),
    ("2020-03-02", "main", "clear", None, {}),
    ("2020-04-06", "main", "tile_cloudy_aoi_clear", None, {}),
    ("2020-05-01", "main", "clear", None, {}),
    ("2020-05-28", "edge", "clear", "orbit_edge", {}),
    ("2020-06-25", "main", "clear", None, {}),
    ("2020-07-20", "main", "aoi_cloudy_tile_clear", None, {}),
    ("2020-08-19", "main", "clear", None, {}),
    ("2020-09-03", "main", "clear", None, {}),
    ("2020-09-08", "main", "clear", None, {}),
    ("2020-09-13", "main", "scattered", None, {}),
    ("2020-09-18", "main", "clear", None, {}),
    ("2020-09-23", "main", "clear", "datastrip_south", {"fh": True}),
    ("2020-10-03", "main", "clear", None, {}),
    ("2020-10-13", "main", "cirrus", None, {}),
    ("2020-10-25", "edge", "clear", "orbit_edge", {}),
    ("2020-11-12", "main", "clear", None, {"fh": True}),
    ("2020-12-12", "main", "overcast", None, {}),
    ("2021-02-05", "main", "clear", None, {}),
    ("2021-03-17", "main", "scattered", None, {}),
    ("2021-04-16", "main", "clear", None, {}),
    ("2021-05-21", "main", "clear", None, {}),
    ("2021-06-30", "main", "clear", None, {}),
    ("2022-02-10", "main", "clear", None, {}),
    ("2022-06-10", "main", "clear", None, {}),
)
#: Which demo dates a smaller ``n_dates`` keeps first (the rest follow in date order).
_PRIORITY = (
    "2020-09-08", "2020-09-03", "2020-10-03", "2020-09-13", "2020-05-28", "2020-09-23",
    "2020-04-06", "2020-07-20", "2022-02-10", "2020-01-07", "2020-10-13", "2020-11-12",
    "2020-10-25", "2021-06-30", "2020-09-18",
)
_WINDOW = (dt.date(2020, 1, 1), dt.date(2021, 6, 30))
_EXTRA_SCENARIOS = ("clear",) * 6 + ("scattered", "scattered", "overcast", "cirrus")
DEMO_DATES: tuple[str, ...] = tuple(d[0] for d in _DEMO)


def _platform(date: dt.date, orbit: str) -> str:
    ref = BURN_START if orbit == "main" else BURN_START + dt.timedelta(days=2)
    k = (date - ref).days // 5
    return "sentinel-2b" if k % 2 == 0 else "sentinel-2a"


def _make_acq(date: dt.date, orbit: str, scenario: str, cut: str | None,
              opts: dict[str, Any]) -> _Acq:
    jitter = (date.toordinal() * 7919) % 1000 / 1000.0 * 3.0
    t0 = _MAIN_T0 if orbit == "main" else _EDGE_T0
    return _Acq(
        tile="10SFJ", date=date, platform=_platform(date, orbit),
        orbit=_MAIN_ORBIT if orbit == "main" else _EDGE_ORBIT, scenario=scenario, cut=cut,
        seconds=round(t0 + jitter, 3), mosaic=bool(opts.get("fh")),
        valid_cloud_cover=bool(opts.get("valid_cloud_cover", True)),
    )


def _plan(n_dates: int | None, seed: int) -> list[_Acq]:
    """The acquisitions (10SFJ, plus 10SFH on mosaic dates) of a build, in time order."""
    demo = {d: _make_acq(dt.date.fromisoformat(d), o, s, c, opts) for d, o, s, c, opts in _DEMO}
    if n_dates is None:
        chosen = list(demo.values())
    elif n_dates <= len(demo):
        order = list(_PRIORITY) + [d for d in DEMO_DATES if d not in _PRIORITY]
        chosen = [demo[d] for d in order[:n_dates]]
    else:
        taken = {a.date for a in demo.values()}
        slots = []
        day = BURN_START + dt.timedelta(days=5 * math.ceil((_WINDOW[0] - BURN_START).days / 5))
        while day <= _WINDOW[1]:
            if day not in taken:
                slots.append(day)
            day += dt.timedelta(days=5)
        need = n_dates - len(demo)
        if need > len(slots):
            raise SampleError(f"n_dates={n_dates} is more than the {len(demo) + len(slots)} "
                              "acquisitions the sample can generate")
        rng = np.random.default_rng(_seed(seed, "extra-dates") % (1 << 63))
        picks = sorted(rng.choice(len(slots), size=need, replace=False).tolist())
        chosen = list(demo.values())
        for i in picks:
            scen = _EXTRA_SCENARIOS[_seed(seed, "extra", slots[i].isoformat()) % 10]
            chosen.append(_make_acq(slots[i], "main", scen, None, {}))
    out: list[_Acq] = []
    for acq in sorted(chosen, key=lambda a: a.date):
        out.append(acq)
        if acq.mosaic:
            out.append(replace(acq, tile="10SFH", cut=None,
                               seconds=round(acq.seconds + _FH_DELAY, 3)))
    return out


# ---------------------------------------------------------------------------------------------
# clouds and nodata cuts
# ---------------------------------------------------------------------------------------------
#: Cloud scenarios: base level, noise amplitude, blobs (cx, cy, rx, ry, weight), opacity cap,
#: shadows on/off.
_SCENARIOS: dict[str, dict[str, Any]] = {
    "clear": {"blobs": ()},
    "overcast": {"bias": 0.72, "amp": 0.5, "blobs": ()},
    "scattered": {"bias": 0.1, "amp": 1.0,
                  "blobs": ((637500.0, 4405500.0, 5200.0, 3600.0, 0.75),
                            (660000.0, 4440000.0, 30000.0, 22000.0, 0.5))},
    "tile_cloudy_aoi_clear": {"bias": -0.15, "amp": 0.6,
                              "blobs": ((655000.0, 4482000.0, 80000.0, 32000.0, 1.2),
                                        (648500.0, 4412500.0, 2800.0, 2300.0, 1.6),
                                        (650300.0, 4411200.0, 1500.0, 1200.0, 1.3))},
    "aoi_cloudy_tile_clear": {"bias": -0.15, "amp": 0.6,
                              "blobs": ((633200.0, 4402200.0, 3000.0, 2400.0, 1.6),
                                        (636200.0, 4403600.0, 2200.0, 1500.0, 1.3),
                                        (631500.0, 4400600.0, 1600.0, 1300.0, 1.2))},
    "cirrus": {"bias": 0.1, "amp": 0.4, "cap": 0.2, "shadows": False,
               "blobs": ((642000.0, 4416000.0, 45000.0, 15000.0, 0.8),)},
}
_CLOUD_OCTAVES = ((7000.0, 0.4), (2500.0, 0.3), (800.0, 0.25), (250.0, 0.15), (100.0, 0.07))
_CLOUD_HEIGHT = 1500.0  # metres: sets the cloud -> shadow displacement


def _cloud_alpha(grid: _Grid, scenario: str, seed: int) -> np.ndarray | None:
    """Cloud opacity in [0, 1] on ``grid`` (None when the scenario has no cloud)."""
    spec = _SCENARIOS[scenario]
    if not spec["blobs"] and "bias" not in spec:
        return None
    field = np.full((grid.h, grid.w), spec.get("bias", 0.0), np.float32)
    xs = grid.xs()[None, :]
    ys = grid.ys()[:, None]
    if spec["blobs"]:
        bump = np.zeros((grid.h, grid.w), np.float32)
        for cx, cy, rx, ry, weight in spec["blobs"]:
            b = 1 - ((xs - cx) / rx) ** 2 - ((ys - cy) / ry) ** 2
            np.maximum(bump, np.float32(weight) * b.astype(np.float32), out=bump)
        field += np.maximum(bump, 0)
    field += np.float32(spec["amp"] * 0.5) * np.clip(
        _fbm(grid, _CLOUD_OCTAVES, _seed(seed, "cloud")), -2.0, 2.0)
    alpha = np.clip((field - np.float32(0.5)) / np.float32(0.3), 0, 1)
    if "cap" in spec:
        np.minimum(alpha, np.float32(spec["cap"]), out=alpha)
    return alpha


def _shadow_offset(acq: _Acq) -> tuple[float, float]:
    """Where the cloud casting a shadow on a point is, relative to that point (toward the sun)."""
    az, el = _sun_angles(acq.when, -121.0, 40.1)
    dist = _CLOUD_HEIGHT / math.tan(math.radians(max(el, 10.0)))
    return dist * math.sin(math.radians(az)), dist * math.cos(math.radians(az))


def _clouds(grid: _Grid, acq: _Acq, seed: int) -> dict[str, np.ndarray] | None:
    """Cloud opacity, cloud texture and shadow mask for one acquisition on ``grid``."""
    dseed = _seed(seed, acq.date.isoformat())
    alpha = _cloud_alpha(grid, acq.scenario, dseed)
    if alpha is None:
        return None
    tex = _noise(grid, 400.0, _seed(dseed, "cloud-texture"))
    if _SCENARIOS[acq.scenario].get("shadows", True):
        dx, dy = _shadow_offset(acq)
        caster = _cloud_alpha(grid.shifted(dx, dy), acq.scenario, dseed)
        shadow = (caster >= 0.4) & (alpha < 0.05)
    else:
        shadow = np.zeros(alpha.shape, bool)
    return {"alpha": alpha, "tex": tex, "shadow": shadow}


def _cut_mask(grid: _Grid, cut: str | None) -> np.ndarray | None:
    """True where the acquisition has no data (orbit-edge wedge or datastrip cut)."""
    if cut is None:
        return None
    xs = grid.xs()[None, :]
    ys = grid.ys()[:, None]
    if cut == "orbit_edge":  # swath edge of the eastern orbit, parallel to the ground track
        return xs < 636000.0 + (ys - 4400000.0) * math.tan(math.radians(12.5))
    if cut == "datastrip_south":  # datastrip boundary, roughly across track
        return ys < 4398200.0 - (xs - 635000.0) * 0.1
    raise SampleError(f"unknown cut {cut!r}")


def _cut_polygon(cut: str | None) -> Any:
    """The nodata region of a cut as a (large) shapely polygon in EPSG:32610."""
    from shapely.geometry import Polygon

    if cut is None:
        return None
    y_lo, y_hi = 4200000.0, 4600000.0
    if cut == "orbit_edge":
        t = math.tan(math.radians(12.5))
        return Polygon([(400000.0, y_lo), (636000.0 + (y_lo - 4400000.0) * t, y_lo),
                        (636000.0 + (y_hi - 4400000.0) * t, y_hi), (400000.0, y_hi)])
    x_lo, x_hi = 500000.0, 800000.0
    return Polygon([(x_lo, 4200000.0), (x_hi, 4200000.0),
                    (x_hi, 4398200.0 - (x_hi - 635000.0) * 0.1),
                    (x_lo, 4398200.0 - (x_lo - 635000.0) * 0.1)])


def _sun_angles(when: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """Solar azimuth (degrees from north, clockwise) and elevation (NOAA approximation)."""
    doy = when.timetuple().tm_yday
    hour = when.hour + when.minute / 60 + when.second / 3600
    g = 2 * math.pi / 365 * (doy - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
                       - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g))
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g)
            - 0.006758 * math.cos(2 * g) + 0.000907 * math.sin(2 * g)
            - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    ha = math.radians((hour * 60 + eqtime + 4 * lon) / 4 - 180)
    phi = math.radians(lat)
    cos_zen = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(ha)
    zen = math.acos(max(-1.0, min(1.0, cos_zen)))
    az = math.degrees(math.atan2(math.sin(ha),
                                 math.cos(ha) * math.sin(phi) - math.tan(decl) * math.cos(phi)))
    return (az + 180.0) % 360.0, 90.0 - math.degrees(zen)


# ---------------------------------------------------------------------------------------------
# AOI and windows
# ---------------------------------------------------------------------------------------------
def _aoi_utm() -> Any:
    """The AOI polygon in EPSG:32610 (its vertices projected; edges straight in UTM)."""
    from pyproj import Transformer
    from shapely.geometry import Polygon

    to_utm = Transformer.from_crs("EPSG:4326", TILE_CRS, always_xy=True)
    ring = [to_utm.transform(x, y) for x, y in BERRY_CREEK_AOI["coordinates"][0]]
    return Polygon(ring)


def _aoi_mask(grid: _Grid) -> np.ndarray:
    """AOI mask on ``grid``: pixel centres inside the projected AOI polygon."""
    from rasterio.features import geometry_mask

    return geometry_mask([_aoi_utm()], out_shape=(grid.h, grid.w), transform=grid.transform,
                         invert=True)


@dataclass(frozen=True)
class _Window:
    """A piece of a tile processed at once, in 10 m pixels of the tile (rows/cols [r0, r1))."""

    r0: int
    r1: int
    c0: int
    c1: int
    c10: tuple[int, int]  # columns (relative to c0) written for the 10 m bands
    r10: tuple[int, int]  # rows (relative to r0) written for the 10 m bands

    def grid(self, tile: _Tile) -> _Grid:
        return _Grid(tile.x0 + 10 * self.c0, tile.y0 - 10 * self.r0, 10.0,
                     self.c1 - self.c0, self.r1 - self.r0)


def _aoi_blocks(tile: _Tile, res: int) -> tuple[int, int, int, int] | None:
    """Pixel window (r0, r1, c0, c1) at ``res`` of the internal blocks the AOI touches."""
    minx, miny, maxx, maxy = _aoi_utm().bounds
    tx0, ty0, tx1, ty1 = tile.bounds
    minx, miny, maxx, maxy = max(minx, tx0), max(miny, ty0), min(maxx, tx1), min(maxy, ty1)
    if minx >= maxx or miny >= maxy:
        return None
    span = res * BLOCK
    n = NPX[res]
    c0 = int((minx - tile.x0) // span) * BLOCK
    c1 = min((int((maxx - tile.x0) // span) + 1) * BLOCK, n)
    r0 = int((tile.y0 - maxy) // span) * BLOCK
    r1 = min((int((tile.y0 - miny) // span) + 1) * BLOCK, n)
    return r0, r1, c0, c1


def _windows(tile: _Tile, dense: bool) -> list[_Window]:
    """The windows to render: the AOI blocks (sparse) or 2048-row strips (dense)."""
    n = NPX[10]
    if dense:
        return [_Window(r, min(r + 2 * BLOCK, n), 0, n, (0, n), (0, min(r + 2 * BLOCK, n) - r))
                for r in range(0, n, 2 * BLOCK)]
    b20 = _aoi_blocks(tile, 20)
    b10 = _aoi_blocks(tile, 10)
    if b20 is None or b10 is None:
        return []
    r0, r1, c0, c1 = (2 * v for v in b20)
    r1, c1 = min(r1, n), min(c1, n)
    return [_Window(r0, r1, c0, c1, (b10[2] - c0, b10[3] - c0), (b10[0] - r0, b10[1] - r0))]


# ---------------------------------------------------------------------------------------------
# precomputed static fields (shared with the worker processes through .npy files)
# ---------------------------------------------------------------------------------------------
def _save(work: Path, name: str, array: np.ndarray) -> str:
    path = work / f"{name}.npy"
    np.save(path, array)
    return str(path)


def _prepare(task: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """Run one precomputation task (in a worker): ``("window"|"burn"|"meta", work, ...)``."""
    kind, work, *args = task
    if kind == "window":
        return kind, _prepare_window(Path(work), *args)
    if kind == "burn":
        return kind, _prepare_burn(Path(work), *args)
    return kind, _prepare_meta(Path(work), TILES[args[0]], *args[1:])


def _prepare_window(work: Path, tile_code: str, index: int, win: _Window, seed: int,
                    bands_csv: str) -> dict[str, Any]:
    """Static fields of one window: paths of the saved arrays."""
    bands = bands_csv.split(",")
    tile = TILES[tile_code]
    grid = win.grid(tile)
    land = _land(grid, seed)
    tag = f"{tile_code}_{index}"
    (a0, a1), (b0, b1) = win.r10, win.c10
    out: dict[str, Any] = {"window": win, "tile": tile_code}
    vl = land["veg"] * land["illum"]
    out["vl10"] = _save(work, f"{tag}_vl10", vl[a0:a1, b0:b1])
    out["vl20"] = _save(work, f"{tag}_vl20", _mean2(vl))
    for band in _REFLECTANCE:
        if band not in bands:
            continue
        base = _surface_base(land, band)
        if _BAND_BY_KEY[band].res == 10:
            out[f"base_{band}"] = _save(work, f"{tag}_{band}", base[a0:a1, b0:b1])
        else:
            out[f"base_{band}"] = _save(work, f"{tag}_{band}", _mean2(base))
    veg20 = _mean2(land["veg"])
    water20 = _mean2(land["water"].astype(np.float32))
    out["scl"] = _save(work, f"{tag}_scl", _static_scl(veg20, water20))
    out["aoi10"] = _save(work, f"{tag}_aoi10", _aoi_mask(grid)[a0:a1, b0:b1])
    return out


def _burn_grid(seed: int) -> _Grid:
    """The 20 m-aligned bounding grid of the burn scar (final extent)."""
    fields = _burn_fields(_BURN_SEARCH, seed, None)
    fin = np.isfinite(fields["day"])
    rows = np.flatnonzero(fin.any(axis=1))
    cols = np.flatnonzero(fin.any(axis=0))
    if rows[0] == 0 or cols[0] == 0 or rows[-1] == fin.shape[0] - 1 or cols[-1] == fin.shape[1] - 1:
        raise SampleError("the burn scar does not fit its search grid")  # pragma: no cover
    r0, c0 = rows[0] - rows[0] % 2, cols[0] - cols[0] % 2
    r1, c1 = rows[-1] + 1 + (rows[-1] + 1) % 2, cols[-1] + 1 + (cols[-1] + 1) % 2
    return _BURN_SEARCH.sub(int(r0), int(r1), int(c0), int(c1))


def _prepare_burn(work: Path, seed: int) -> dict[str, Any]:
    grid = _burn_grid(seed)
    land = _land(grid, seed)
    fields = _burn_fields(grid, seed, land)
    out: dict[str, Any] = {"grid": grid}
    out["day"] = _save(work, "burn_day", fields["day"])
    out["severity"] = _save(work, "burn_severity", fields["severity"])
    out["detail"] = _save(work, "burn_detail", land["detail"])
    out["vl"] = _save(work, "burn_vl", land["veg"] * land["illum"])
    for band in ("swir16", "swir22"):
        out[f"base_{band}"] = _save(work, f"burn_base_{band}", _surface_base(land, band))
    out["aoi"] = _save(work, "burn_aoi", _aoi_mask(grid))
    return out


def _prepare_meta(work: Path, tile: _Tile, seed: int) -> dict[str, Any]:
    """Static fields on the 200 m grid of a whole tile (for the tile-level percentages)."""
    grid = _Grid(tile.x0, tile.y0, META_RES, int(TILE_SPAN // META_RES), int(TILE_SPAN // META_RES))
    land = _land(grid, seed)
    burn = _burn_fields(grid, seed, land)
    tag = f"meta_{tile.code}"
    return {
        "grid": grid,
        "tile": tile.code,
        "scl": _save(work, f"{tag}_scl", _static_scl(land["veg"],
                                                      land["water"].astype(np.float32))),
        "day": _save(work, f"{tag}_day", burn["day"]),
    }


# ---------------------------------------------------------------------------------------------
# rendering one acquisition (runs in the worker processes)
# ---------------------------------------------------------------------------------------------
def _date_gains(acq: _Acq, seed: int) -> tuple[dict[str, float], float]:
    """Per-band gains (atmosphere/illumination of the day) and the season term in [-1, 1]."""
    rng = np.random.default_rng(_seed(seed, "gains", acq.date.isoformat()) % (1 << 63))
    common = 1 + float(np.clip(rng.normal(0, 0.02), -0.04, 0.04))
    gains = {b: common * (1 + float(np.clip(rng.normal(0, 0.008), -0.02, 0.02)))
             for b in _REFLECTANCE}
    doy = acq.date.timetuple().tm_yday
    season = math.cos(2 * math.pi * (doy - 135) / 365.25)
    return gains, season


def _overviews(data: np.ndarray, categorical: bool) -> list[np.ndarray]:
    """Overview levels 2, 4, 8, 16: nodata(0)-aware average, or nearest for classes."""
    out = []
    a = data
    for _ in OVERVIEW_FACTORS:
        h, w = a.shape
        if h % 2 or w % 2:
            a = np.pad(a, ((0, h % 2), (0, w % 2)))
        if categorical:
            a = np.ascontiguousarray(a[::2, ::2])
        else:
            quads = (a[0::2, 0::2], a[0::2, 1::2], a[1::2, 0::2], a[1::2, 1::2])
            total = quads[0].astype(np.uint32)
            count = (quads[0] != 0).astype(np.uint32)
            for q in quads[1:]:
                total += q
                count += q != 0
            total += count // 2
            total //= np.maximum(count, 1)
            a = total.astype(data.dtype)
        out.append(a)
    return out


def _mem_name(array: np.ndarray) -> str:
    """A GDAL ``MEM:::`` name reading ``array`` in place (it must stay alive meanwhile)."""
    gdal_type = {"uint16": "UInt16", "uint8": "Byte"}[array.dtype.name]
    pointer = array.__array_interface__["data"][0]
    return (f"MEM:::DATAPOINTER={pointer},PIXELS={array.shape[1]},LINES={array.shape[0]},"
            f"BANDS=1,DATATYPE={gdal_type},PIXELOFFSET={array.itemsize},"
            f"LINEOFFSET={array.strides[0]}")


class _BandWriter:
    """Collects windows of one band (and its overviews) in whole-tile arrays, then writes the
    COG with GDAL's COG driver. ``np.zeros`` pages never written cost no memory, and blocks
    left at 0 are not stored in the file (``SPARSE_OK``)."""

    def __init__(self, band: _Band, tile: _Tile) -> None:
        self.band = band
        self.tile = tile
        self.n = NPX[band.res]
        self.levels = [_zeros((-(-self.n // f),) * 2, band.dtype)
                       for f in (1, *OVERVIEW_FACTORS)]
        self.written: list[tuple[int, slice, slice]] = []

    def write(self, data: np.ndarray, row: int, col: int) -> None:
        levels = [data, *_overviews(data, self.band.key == "scl")]
        for k, (f, full, arr) in enumerate(zip((1, *OVERVIEW_FACTORS), self.levels, levels,
                                               strict=True)):
            rows = slice(row // f, row // f + arr.shape[0])
            cols = slice(col // f, col // f + arr.shape[1])
            full[rows, cols] = arr
            self.written.append((k, rows, cols))

    def release(self) -> None:
        """Zero what was written and hand the arrays back to the per-process cache."""
        for k, rows, cols in self.written:
            self.levels[k][rows, cols] = 0
        for array in self.levels:
            _ZEROS.setdefault((array.shape, array.dtype.name), []).append(array)
        self.levels, self.written = [], []

    def finish(self, dest: Path) -> None:
        import rasterio.shutil

        gdal_type = "UInt16" if self.band.dtype == "uint16" else "Byte"
        gt = (self.tile.x0, float(self.band.res), 0.0, self.tile.y0, 0.0, -float(self.band.res))
        overviews = "".join(
            f"<Overview><SourceFilename>{_mem_name(a)}</SourceFilename>"
            f"<SourceBand>1</SourceBand></Overview>" for a in self.levels[1:])
        vrt = (f'<VRTDataset rasterXSize="{self.n}" rasterYSize="{self.n}">'
               f"<SRS>{TILE_CRS}</SRS><GeoTransform>{', '.join(repr(float(v)) for v in gt)}"
               f'</GeoTransform><VRTRasterBand dataType="{gdal_type}" band="1">'
               f"<NoDataValue>0</NoDataValue><SimpleSource><SourceFilename>"
               f"{_mem_name(self.levels[0])}</SourceFilename><SourceBand>1</SourceBand>"
               f"</SimpleSource>{overviews}</VRTRasterBand></VRTDataset>")
        options = {
            "BLOCKSIZE": BLOCK, "COMPRESS": "DEFLATE", "LEVEL": DEFLATE_LEVEL,
            "OVERVIEWS": "FORCE_USE_EXISTING", "SPARSE_OK": "TRUE", "NUM_THREADS": 1,
            "BIGTIFF": "IF_SAFER", "PREDICTOR": "YES" if self.band.dtype == "uint16" else "NO",
        }
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        try:
            rasterio.shutil.copy(vrt, str(tmp), driver="COG", **options)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            self.release()


#: Whole-tile zero arrays kept per process between acquisitions: re-zeroing the few written
#: blocks is much cheaper than faulting fresh pages in for every file.
_ZEROS: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}


def _zeros(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    free = _ZEROS.get((shape, dtype))
    return free.pop() if free else np.zeros(shape, dtype)


def _intersect(a: _Grid, b: _Grid) -> tuple[slice, slice, slice, slice] | None:
    """Row/column slices of the overlap of two aligned grids of the same resolution."""
    x0, x1 = max(a.x0, b.x0), min(a.x0 + a.w * a.res, b.x0 + b.w * b.res)
    y0, y1 = min(a.y0, b.y0), max(a.y0 - a.h * a.res, b.y0 - b.h * b.res)
    if x0 >= x1 or y1 >= y0:
        return None

    def rows(g: _Grid) -> slice:
        return slice(round((g.y0 - y0) / g.res), round((g.y0 - y1) / g.res))

    def cols(g: _Grid) -> slice:
        return slice(round((x0 - g.x0) / g.res), round((x1 - g.x0) / g.res))

    return rows(a), cols(a), rows(b), cols(b)


def _render_acq(job: dict[str, Any]) -> dict[str, Any]:
    """Render and write every band of one acquisition; returns exact AOI pixel statistics."""
    import rasterio

    acq: _Acq = job["acq"]
    seed: int = job["seed"]
    bands: list[str] = job["bands"]
    tile = TILES[acq.tile]
    out_dir = Path(job["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    gains, season = _date_gains(acq, seed)
    offset = np.float32(acq.dn_offset)
    burn = job["burn"]
    bgrid: _Grid = burn["grid"]

    def load(path: str) -> np.ndarray:
        return np.load(path, mmap_mode="r")

    bday = load(burn["day"])
    burned_bg = bday <= acq.burn_day
    stats = {"aoi_px": 0, "valid": 0, "clear": 0, "cloud": 0, "shadow": 0, "burn_visible": 0}
    with rasterio.Env(GDAL_NUM_THREADS=1, GDAL_CACHEMAX=256, GDAL_MEM_ENABLE_OPEN="YES"):
        writers = {b: _BandWriter(_BAND_BY_KEY[b], tile) for b in bands}
        for prep in job["windows"]:
            win: _Window = prep["window"]
            grid10 = win.grid(tile)
            grid20 = grid10.coarsen(2)
            (a0, a1), (b0, b1) = win.r10, win.c10
            sub10 = grid10.sub(a0, a1, b0, b1)
            cut20 = _cut_mask(grid20, acq.cut)
            cl = _clouds(grid20, acq, seed)
            # burn pieces at 10 m (sub10) and 20 m (whole window)
            hit10 = _intersect(sub10, bgrid)
            hit20 = _intersect(grid10, bgrid)
            scl = np.array(load(prep["scl"]))
            if hit20 is not None:
                wr, wc, br, bc = hit20
                frac = _mean2(burned_bg[br, bc].astype(np.float32))
                piece = scl[wr.start // 2:wr.stop // 2, wc.start // 2:wc.stop // 2]
                piece[(frac >= 0.5) & (piece != SCL_WATER)] = SCL_NOTVEG
            if cl is not None:
                scl[cl["shadow"]] = SCL_SHADOW
                alpha = cl["alpha"]
                scl[(alpha >= 0.05) & (alpha < 0.4)] = SCL_CIRRUS
                scl[(alpha >= 0.4) & (alpha < 0.75)] = SCL_CLOUD_MED
                scl[alpha >= 0.75] = SCL_CLOUD_HIGH
            if cut20 is not None:
                scl[cut20] = SCL_NODATA
            # 10 m versions of the per-date masks, on the 10 m part of the window
            up: dict[str, np.ndarray | None] = {"cut": None, "alpha": None, "tex": None,
                                                "shadow": None}
            rs, cs = slice(a0 // 2, a1 // 2), slice(b0 // 2, b1 // 2)  # all even
            if cut20 is not None:
                up["cut"] = _upsample2(cut20[rs, cs])
            if cl is not None:
                for key in ("alpha", "tex", "shadow"):
                    up[key] = _upsample2(cl[key][rs, cs])
            for band in bands:
                spec = _BAND_BY_KEY[band]
                if band == "scl":
                    writers[band].write(scl, win.r0 // 2, win.c0 // 2)
                    continue
                s = _SPEC[band]
                g = np.float32(gains[band])
                base = load(prep[f"base_{band}"])
                vl = load(prep["vl10" if spec.res == 10 else "vl20"])
                data = base * g
                data += np.float32(season * s["season"]) * g * vl
                hit = hit10 if spec.res == 10 else hit20
                if hit is not None:
                    wr, wc, br, bc = hit
                    burned = burned_bg[br, bc]
                    bval = _burnval(band, load(burn["severity"])[br, bc],
                                    load(burn["detail"])[br, bc]) * g
                    if band == "nir":
                        np.clip(bval, *_BURNED_NIR, out=bval)
                    if spec.res == 10:
                        data[wr, wc] = np.where(burned, bval, data[wr, wc])
                    else:
                        unburned = load(burn[f"base_{band}"])[br, bc] * g
                        unburned += (np.float32(season * s["season"]) * g
                                     * load(burn["vl"])[br, bc])
                        mixed = _mean2(np.where(burned, bval, unburned))
                        data[wr.start // 2:wr.stop // 2, wc.start // 2:wc.stop // 2] = mixed
                if spec.res == 10:
                    cut, alpha, tex, shadow = up["cut"], up["alpha"], up["tex"], up["shadow"]
                else:
                    cut = cut20
                    alpha, tex, shadow = ((cl["alpha"], cl["tex"], cl["shadow"])
                                          if cl is not None else (None, None, None))
                if shadow is not None:
                    data[shadow] *= np.float32(_SHADOW_FACTOR)
                if alpha is not None:
                    cloud = np.float32(s["cloud"]) * (np.float32(0.8) + np.float32(0.4) * tex)
                    data += alpha * (cloud - data)
                if offset:
                    data += offset
                np.rint(data, out=data)
                np.clip(data, 1, 65535, out=data)
                dn = data.astype(np.uint16)
                if cut is not None:
                    dn[cut] = 0
                if spec.res == 10:
                    writers[band].write(dn, win.r0 + a0, win.c0 + b0)
                else:
                    writers[band].write(dn, win.r0 // 2, win.c0 // 2)
            # exact AOI statistics at 10 m
            aoi = load(prep["aoi10"])
            scl10 = _upsample2(scl[rs, cs])
            valid = scl10 != SCL_NODATA
            clear = (scl10 >= SCL_VEG) & (scl10 <= SCL_WATER)
            stats["aoi_px"] += int(aoi.sum())
            stats["valid"] += int((valid & aoi).sum())
            stats["clear"] += int((clear & aoi).sum())
            stats["cloud"] += int(((scl10 >= SCL_CLOUD_MED) & aoi).sum())
            stats["shadow"] += int(((scl10 == SCL_SHADOW) & aoi).sum())
            if hit10 is not None:
                wr, wc, br, bc = hit10
                stats["burn_visible"] += int((burned_bg[br, bc] & clear[wr, wc]
                                              & aoi[wr, wc]).sum())
        for band, writer in writers.items():
            writer.finish(out_dir / _BAND_BY_KEY[band].file)
    stats["meta"] = _tile_stats(acq, job["meta"], seed)
    stats["id"] = acq.id
    return stats


def _tile_stats(acq: _Acq, meta: dict[str, Any], seed: int) -> dict[str, float]:
    """Tile-level SCL percentages (like the real product's), on the 200 m scene model."""
    grid: _Grid = meta["grid"]
    scl = np.load(meta["scl"])
    scl[np.load(meta["day"]) <= acq.burn_day] = SCL_NOTVEG
    nodata = np.zeros(scl.shape, bool)
    poly = _cut_polygon(acq.cut)
    cl = _clouds(grid, acq, seed)
    if cl is not None:
        scl[cl["shadow"]] = SCL_SHADOW
        alpha = cl["alpha"]
        scl[(alpha >= 0.05) & (alpha < 0.4)] = SCL_CIRRUS
        scl[(alpha >= 0.4) & (alpha < 0.75)] = SCL_CLOUD_MED
        scl[alpha >= 0.75] = SCL_CLOUD_HIGH
    cut = _cut_mask(grid, acq.cut)
    if cut is not None:
        nodata |= cut
    valid = ~nodata
    n_valid = max(int(valid.sum()), 1)

    def pct(cls: int) -> float:
        return round(100.0 * int(((scl == cls) & valid).sum()) / n_valid, 6)

    tile_box = _tile_box(TILES[acq.tile])
    nodata_pct = 0.0 if poly is None else 100.0 * tile_box.intersection(poly).area / tile_box.area
    out = {
        "nodata": round(nodata_pct, 6),
        "shadow": pct(SCL_SHADOW), "veg": pct(SCL_VEG), "notveg": pct(SCL_NOTVEG),
        "water": pct(SCL_WATER), "medium": pct(SCL_CLOUD_MED), "high": pct(SCL_CLOUD_HIGH),
        "cirrus": pct(SCL_CIRRUS),
    }
    out["cloud"] = round(out["medium"] + out["high"] + out["cirrus"], 6)
    return out


def _tile_box(tile: _Tile) -> Any:
    from shapely.geometry import box

    return box(*tile.bounds)


# ---------------------------------------------------------------------------------------------
# STAC items and collections
# ---------------------------------------------------------------------------------------------
_ES_V1 = "https://earth-search.aws.element84.com/v1"
_ES_V0 = "https://earth-search.aws.element84.com/v0"
_LICENSE = "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"
_V1_EXTENSIONS = [
    "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
]
#: v1 (sentinel2-to-stac 0.1.1) asset metadata: title, eo:bands entry (None for SCL), roles.
_V1_ASSET_META: dict[str, tuple[str, dict[str, Any] | None]] = {
    "blue": ("Blue (band 2) - 10m", {"name": "blue", "common_name": "blue",
                                     "description": "Blue (band 2)", "center_wavelength": 0.49,
                                     "full_width_half_max": 0.098}),
    "green": ("Green (band 3) - 10m", {"name": "green", "common_name": "green",
                                       "description": "Green (band 3)",
                                       "center_wavelength": 0.56, "full_width_half_max": 0.045}),
    "red": ("Red (band 4) - 10m", {"name": "red", "common_name": "red",
                                   "description": "Red (band 4)", "center_wavelength": 0.665,
                                   "full_width_half_max": 0.038}),
    "nir": ("NIR 1 (band 8) - 10m", {"name": "nir", "common_name": "nir",
                                     "description": "NIR 1 (band 8)",
                                     "center_wavelength": 0.842, "full_width_half_max": 0.145}),
    "swir16": ("SWIR 1 (band 11) - 20m", {"name": "swir16", "common_name": "swir16",
                                          "description": "SWIR 1 (band 11)",
                                          "center_wavelength": 1.61,
                                          "full_width_half_max": 0.143}),
    "swir22": ("SWIR 2 (band 12) - 20m", {"name": "swir22", "common_name": "swir22",
                                          "description": "SWIR 2 (band 12)",
                                          "center_wavelength": 2.19,
                                          "full_width_half_max": 0.242}),
    "scl": ("Scene classification map (SCL)", None),
}
#: v0 asset metadata (as in the 2023+ v0 records): title, eo:bands entry (None for SCL).
_V0_ASSET_META: dict[str, tuple[str, dict[str, Any] | None]] = {
    "B02": ("Band 2 (blue)", {"name": "B02", "common_name": "blue",
                              "center_wavelength": 0.4966, "full_width_half_max": 0.098}),
    "B03": ("Band 3 (green)", {"name": "B03", "common_name": "green",
                               "center_wavelength": 0.56, "full_width_half_max": 0.045}),
    "B04": ("Band 4 (red)", {"name": "B04", "common_name": "red",
                             "center_wavelength": 0.6645, "full_width_half_max": 0.038}),
    "B08": ("Band 8 (nir)", {"name": "B08", "common_name": "nir",
                             "center_wavelength": 0.8351, "full_width_half_max": 0.145}),
    "B11": ("Band 11 (swir16)", {"name": "B11", "common_name": "swir16",
                                 "center_wavelength": 1.6137, "full_width_half_max": 0.143}),
    "B12": ("Band 12 (swir22)", {"name": "B12", "common_name": "swir22",
                                 "center_wavelength": 2.22024, "full_width_half_max": 0.242}),
    "SCL": ("Scene Classification Map (SCL)", None),
}
_COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_LAUNCH = {"S2A": dt.date(2015, 6, 23), "S2B": dt.date(2017, 3, 7)}


def _iso_ms(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _footprint(acq: _Acq) -> tuple[dict[str, Any], list[float]]:
    """Valid-data footprint (GeoJSON, lon/lat, counter-clockwise) and its bbox."""
    from pyproj import Transformer
    from shapely.geometry import Polygon
    from shapely.geometry.polygon import orient

    tile = TILES[acq.tile]
    shape = _tile_box(tile)
    cut = _cut_polygon(acq.cut)
    if cut is not None:
        shape = shape.difference(cut)
    shape = orient(Polygon(shape.exterior.coords), 1.0)
    to_ll = Transformer.from_crs(TILE_CRS, "EPSG:4326", always_xy=True)
    ring = [list(to_ll.transform(x, y)) for x, y in shape.exterior.coords]
    ring[-1] = list(ring[0])
    lons = [p[0] for p in ring]
    lats = [p[1] for p in ring]
    return ({"type": "Polygon", "coordinates": [ring]},
            [min(lons), min(lats), max(lons), max(lats)])


def _ids(acq: _Acq) -> dict[str, Any]:
    """Product/datatake/datastrip/granule identifiers and processing times (plausible)."""
    t0 = _MAIN_T0 if acq.orbit == _MAIN_ORBIT else _EDGE_T0
    midnight = dt.datetime(acq.date.year, acq.date.month, acq.date.day, tzinfo=dt.UTC)
    start = midnight + dt.timedelta(seconds=int(t0) - 602)
    gen = start + dt.timedelta(hours=2, minutes=11, seconds=27 + acq.date.toordinal() % 29)
    strip = start + dt.timedelta(seconds=189)
    bl = acq.baseline
    centre = "EPAE" if acq.dn_offset == 0 else f"{acq.sat[1:]}PS"
    absolute = int((acq.date - _LAUNCH[acq.sat]).days * 14.3) + 41
    return {
        "start": start, "gen": gen,
        "product": (f"{acq.sat}_MSIL2A_{start:%Y%m%dT%H%M%S}_N{bl.replace('.', '')}_"
                    f"R{acq.orbit:03d}_T{acq.tile}_{gen:%Y%m%dT%H%M%S}"),
        "datatake": f"G{acq.sat}_{start:%Y%m%dT%H%M%S}_{absolute:06d}_N{bl}",
        "datastrip": (f"{acq.sat}_OPER_MSI_L2A_DS_{centre}_{gen:%Y%m%dT%H%M%S}_"
                      f"S{strip:%Y%m%dT%H%M%S}_N{bl}"),
        "granule": (f"{acq.sat}_OPER_MSI_L2A_TL_{centre}_{gen:%Y%m%dT%H%M%S}_A{absolute:06d}_"
                    f"T{acq.tile}_N{bl}"),
    }


def _tile_center_lonlat(tile: _Tile) -> tuple[float, float]:
    from pyproj import Transformer

    to_ll = Transformer.from_crs(TILE_CRS, "EPSG:4326", always_xy=True)
    return to_ll.transform(tile.x0 + TILE_SPAN / 2, tile.y0 - TILE_SPAN / 2)


def _asset_href(acq: _Acq, band: _Band) -> str:
    return f"{REAL_COG_BASE}/{acq.href_dir()}/{band.file}"


def _v1_item(acq: _Acq, meta: dict[str, float], bands: Sequence[str]) -> dict[str, Any]:
    tile = TILES[acq.tile]
    geometry, bbox = _footprint(acq)
    ids = _ids(acq)
    lon, lat = _tile_center_lonlat(tile)
    sun_az, sun_el = _sun_angles(acq.when, lon, lat)
    if acq.dn_offset:
        created = acq.when + dt.timedelta(hours=5, minutes=17, seconds=acq.date.day)
    else:
        created = (dt.datetime(2022, 11, 6, tzinfo=dt.UTC)
                   + dt.timedelta(seconds=acq.date.toordinal() % 86400 * 7 % 86400))
    doy = acq.date.timetuple().tm_yday
    rcf = 1 / (1 - 0.01672 * math.cos(math.radians(0.9856 * (doy - 4)))) ** 2
    props: dict[str, Any] = {
        "created": _iso_ms(created),
        "platform": acq.platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": meta["cloud"],
        "proj:epsg": tile.epsg,
        "mgrs:utm_zone": tile.utm_zone,
        "mgrs:latitude_band": tile.latitude_band,
        "mgrs:grid_square": tile.grid_square,
        "grid:code": f"MGRS-{tile.code}",
        "view:sun_azimuth": round(sun_az, 9),
        "view:sun_elevation": round(sun_el, 9),
        "s2:degraded_msi_data_percentage": 0,
        "s2:nodata_pixel_percentage": meta["nodata"],
        "s2:saturated_defective_pixel_percentage": 0,
        "s2:dark_features_percentage": 0,
        "s2:cloud_shadow_percentage": meta["shadow"],
        "s2:vegetation_percentage": meta["veg"],
        "s2:not_vegetated_percentage": meta["notveg"],
        "s2:water_percentage": meta["water"],
        "s2:unclassified_percentage": 0,
        "s2:medium_proba_clouds_percentage": meta["medium"],
        "s2:high_proba_clouds_percentage": meta["high"],
        "s2:thin_cirrus_percentage": meta["cirrus"],
        "s2:snow_ice_percentage": 0,
        "s2:product_type": "S2MSI2A",
        "s2:processing_baseline": acq.baseline,
        "s2:product_uri": ids["product"] + ".SAFE",
        "s2:generation_time": ids["gen"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "s2:datatake_id": ids["datatake"],
        "s2:datatake_type": "INS-NOBS",
        "s2:datastrip_id": ids["datastrip"],
        "s2:granule_id": ids["granule"],
        "s2:reflectance_conversion_factor": round(rcf, 12),
        "datetime": acq.when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "s2:sequence": "0",
        "earthsearch:s3_path": f"s3://sentinel-cogs/{acq.href_dir()}",
        "earthsearch:payload_id": ("roda-sentinel2/workflow-sentinel2-to-stac/"
                                   + hashlib.md5(acq.id.encode()).hexdigest()),
        "earthsearch:boa_offset_applied": bool(acq.dn_offset),
        "processing:software": {"sentinel2-to-stac": "0.1.1"},
        "updated": _iso_ms(created),
    }
    item_url = f"{_ES_V1}/collections/sentinel-2-l2a/items/{acq.id}"
    links = [
        {"rel": "self", "type": "application/geo+json", "href": item_url},
        {"rel": "canonical", "href": f"s3://sentinel-cogs/{acq.href_dir()}/{acq.id}.json",
         "type": "application/json"},
        {"rel": "license", "href": _LICENSE},
        {"rel": "derived_from", "href": (f"{_ES_V1}/collections/sentinel-2-l1c/items/"
                                         f"{acq.id.replace('_L2A', '_L1C')}"),
         "type": "application/geo+json"},
        {"rel": "parent", "type": "application/json",
         "href": f"{_ES_V1}/collections/sentinel-2-l2a"},
        {"rel": "collection", "type": "application/json",
         "href": f"{_ES_V1}/collections/sentinel-2-l2a"},
        {"rel": "root", "type": "application/json", "href": _ES_V1},
    ]
    assets: dict[str, Any] = {}
    for key in sorted(bands):
        band = _BAND_BY_KEY[key]
        title, eo = _V1_ASSET_META[key]
        asset: dict[str, Any] = {"href": _asset_href(acq, band), "type": _COG_TYPE,
                                 "title": title}
        if eo is not None:
            asset["eo:bands"] = [dict(eo)]
            asset["gsd"] = band.res
        asset["proj:shape"] = [NPX[band.res], NPX[band.res]]
        asset["proj:transform"] = [band.res, 0, int(tile.x0), 0, -band.res, int(tile.y0)]
        if eo is not None:
            asset["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                                      "spatial_resolution": band.res, "scale": 0.0001,
                                      "offset": -0.1 if acq.dn_offset else 0}]
        else:
            asset["raster:bands"] = [{"nodata": 0, "data_type": "uint8",
                                      "spatial_resolution": band.res}]
        asset["roles"] = ["data", "reflectance"]
        assets[key] = asset
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": acq.id,
        "properties": props,
        "geometry": geometry,
        "links": links,
        "assets": assets,
        "bbox": bbox,
        "stac_extensions": list(_V1_EXTENSIONS),
        "collection": "sentinel-2-l2a",
    }


def _v0_item(acq: _Acq, meta: dict[str, float], bands: Sequence[str]) -> dict[str, Any]:
    tile = TILES[acq.tile]
    geometry, bbox = _footprint(acq)
    ids = _ids(acq)
    if acq.dn_offset:
        created = acq.when + dt.timedelta(hours=3, minutes=38, seconds=acq.date.day)
    else:
        created = acq.when + dt.timedelta(days=9, hours=1, minutes=40, seconds=acq.date.day)
    props: dict[str, Any] = {
        "datetime": acq.when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": acq.platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "gsd": 10,
        "view:off_nadir": 0,
        "proj:epsg": tile.epsg,
        "sentinel:utm_zone": tile.utm_zone,
        "sentinel:latitude_band": tile.latitude_band,
        "sentinel:grid_square": tile.grid_square,
        "sentinel:sequence": "0",
        "sentinel:product_id": ids["product"],
        "sentinel:data_coverage": round(100.0 - meta["nodata"], 2),
        "eo:cloud_cover": round(meta["cloud"], 2),
        "sentinel:valid_cloud_cover": acq.valid_cloud_cover,
    }
    if acq.dn_offset:
        props["sentinel:processing_baseline"] = acq.baseline
        props["sentinel:boa_offset_applied"] = True
    props["created"] = _iso_ms(created)
    props["updated"] = _iso_ms(created)
    assets: dict[str, Any] = {}
    for band in BANDS:
        if band.key not in bands:
            continue
        title, eo = _V0_ASSET_META[band.v0_key]
        asset: dict[str, Any] = {"title": title, "type": _COG_TYPE, "roles": ["data"]}
        if eo is not None:
            asset["gsd"] = band.res
            asset["eo:bands"] = [dict(eo)]
        asset["href"] = _asset_href(acq, band)
        asset["proj:shape"] = [NPX[band.res], NPX[band.res]]
        asset["proj:transform"] = [band.res, 0, int(tile.x0), 0, -band.res, int(tile.y0),
                                   0, 0, 1]
        assets[band.v0_key] = asset
    coll = f"{_ES_V0}/collections/sentinel-s2-l2a-cogs"
    links = [
        {"rel": "self", "href": f"{coll}/items/{acq.id}"},
        {"title": "Source STAC Item", "rel": "derived_from",
         "href": (f"s3://cirrus-v0-data-1qm7gekzjucbq/sentinel-s2-l2a/{TILES[acq.tile].path()}/"
                  f"{acq.date.year}/{acq.date.month}/{acq.id}/{acq.id}.json"),
         "type": "application/json"},
        {"rel": "parent", "href": coll},
        {"rel": "collection", "href": coll},
        {"rel": "root", "href": f"{_ES_V0}/"},
    ]
    return {
        "type": "Feature",
        "stac_version": "1.0.0-beta.2",
        "stac_extensions": ["eo", "view", "proj"],
        "id": acq.id,
        "bbox": bbox,
        "geometry": geometry,
        "properties": props,
        "collection": "sentinel-s2-l2a-cogs",
        "assets": assets,
        "links": links,
    }


def _collection(version: str, items: list[dict[str, Any]], bands: Sequence[str]) -> dict[str, Any]:
    """The real Earth Search collection, with the sample's extent and assets."""
    coll = json.loads(_V1_COLLECTION_JSON if version == "v1" else _V0_COLLECTION_JSON)
    if "type" not in coll:  # the real v0 (STAC 1.0.0-beta.2) collection lacks it
        coll = {"type": "Collection", **coll}
    keys = {b.key if version == "v1" else b.v0_key for b in BANDS if b.key in bands}
    coll["item_assets"] = {k: v for k, v in coll["item_assets"].items() if k in keys}
    if items:
        boxes = np.array([i["bbox"] for i in items])
        times = sorted(i["properties"]["datetime"] for i in items)
        coll["extent"] = {
            "spatial": {"bbox": [[float(boxes[:, 0].min()), float(boxes[:, 1].min()),
                                  float(boxes[:, 2].max()), float(boxes[:, 3].max())]]},
            "temporal": {"interval": [[times[0], times[-1]]]},
        }
    return coll


def rebase_hrefs(items: Iterable[dict[str, Any]], base: str | os.PathLike[str]
                 ) -> list[dict[str, Any]]:
    """Deep copies of ``items`` with hrefs under :data:`REAL_COG_BASE` moved to ``base``.

    Parameters
    ----------
    items:
        STAC item dicts (v0 or v1).
    base:
        New base: an ``http(s)://`` (or any ``scheme://``) URL such as
        ``"http://127.0.0.1:8080"``, or a local directory (the sample's ``cog_root``), in
        which case hrefs become absolute local paths.

    Returns
    -------
    list of dict
        The rebased copies; the input is not modified. Hrefs elsewhere (``s3://``, the
        Earth Search API links) are kept.
    """
    prefix = REAL_COG_BASE + "/"
    base = os.fspath(base)
    if "://" in base:
        new_base = base.rstrip("/") + "/"

        def move(rest: str) -> str:
            return new_base + rest
    else:
        root = Path(base).expanduser().resolve()

        def move(rest: str) -> str:
            return str(root.joinpath(*rest.split("/")))

    out = []
    for item in items:
        new = copy.deepcopy(item)
        for obj in [*new.get("assets", {}).values(), *new.get("links", [])]:
            href = obj.get("href")
            if isinstance(href, str) and href.startswith(prefix):
                obj["href"] = move(href[len(prefix):])
        out.append(new)
    return out


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleInfo:
    """Where a built sample is and how to read its items.

    Attributes
    ----------
    root:
        The sample folder.
    cog_root:
        Folder such that ``cog_root / "sentinel-s2-l2a-cogs/..."`` are the COG files (the
        same as ``root``): serve it over HTTP, or pass it as ``base`` to :func:`rebase_hrefs`.
    items_path, collection_path:
        ``{"v1": ..., "v0": ...}`` paths of the FeatureCollection and collection JSON files.
    truth_path:
        ``truth.json``: per acquisition, what the pixels contain (clouds, wedge, burn area...).
    """

    root: Path
    cog_root: Path
    items_path: dict[str, Path]
    collection_path: dict[str, Path]
    truth_path: Path

    def __hash__(self) -> int:
        return hash((self.root, self.cog_root, self.truth_path))

    def items(self, version: str = "v1", base: str | os.PathLike[str] | None = None
              ) -> list[dict[str, Any]]:
        """The items of ``version`` ("v1" or "v0"), hrefs rebased onto ``base`` if given."""
        data = json.loads(Path(self.items_path[_version(version)]).read_text())
        feats = data["features"]
        return rebase_hrefs(feats, base) if base is not None else feats

    def collection(self, version: str = "v1") -> dict[str, Any]:
        """The collection dict of ``version``."""
        return json.loads(Path(self.collection_path[_version(version)]).read_text())

    def truth(self) -> dict[str, Any]:
        """The parsed ``truth.json``."""
        return json.loads(self.truth_path.read_text())

    def write_local_items(self, version: str = "v1", path: str | os.PathLike[str] | None = None
                          ) -> Path:
        """Write the items with hrefs pointing at the local COG files; returns the file.

        The default is ``<root>/stac/<version>/items-local.json`` (a FeatureCollection).
        """
        version = _version(version)
        target = Path(path) if path is not None else (
            self.root / "stac" / version / "items-local.json")
        fc = {"type": "FeatureCollection", "features": self.items(version, base=self.cog_root)}
        _write_json(target, fc)
        return target


def _version(version: str) -> str:
    if version not in ("v1", "v0"):
        raise SampleError(f"version must be 'v1' or 'v0', not {version!r}")
    return version


def default_root(dense: bool = False) -> Path:
    """Default sample folder: ``$S2INTAKE_SAMPLE_DIR`` or ``~/.cache/s2intake/sample``.

    A dense sample goes to the same path with a ``-dense`` suffix.
    """
    env = os.environ.get("S2INTAKE_SAMPLE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "s2intake" / "sample"
    return base.with_name(base.name + "-dense") if dense else base


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=indent) + "\n")
    os.replace(tmp, path)


def _info(root: Path) -> SampleInfo:
    stac = root / "stac"
    return SampleInfo(
        root=root,
        cog_root=root,
        items_path={v: stac / v / "items.json" for v in ("v1", "v0")},
        collection_path={v: stac / v / "collection.json" for v in ("v1", "v0")},
        truth_path=root / "truth.json",
    )


def _code_version() -> str:
    """Generator version plus a digest of this file (as imported): any code change rebuilds."""
    return _CODE_VERSION


def _digest_source() -> str:
    try:
        digest = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=6).hexdigest()
    except OSError:  # pragma: no cover - e.g. zipped
        digest = "unknown"
    return f"{GENERATOR_VERSION}+{digest}"


_CODE_VERSION = _digest_source()


def _is_current(root: Path, params: dict[str, Any]) -> bool:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("generator_version") != _code_version() or manifest.get("params") != params:
        return False
    return all((root / rel).is_file() for rel in manifest.get("files", []))


def _pool_map(func: Callable[[Any], Any], jobs: list[Any], processes: int) -> Iterable[Any]:
    """``imap_unordered`` over a process pool, or a plain loop for 1 process.

    The pool forks (cheap: no re-import) where possible; ``$S2INTAKE_SAMPLE_START_METHOD``
    (``spawn``, ``forkserver``) overrides that, e.g. from a process that runs threads.
    """
    if processes <= 1 or len(jobs) <= 1:
        yield from map(func, jobs)
        return
    methods = multiprocessing.get_all_start_methods()
    method = os.environ.get("S2INTAKE_SAMPLE_START_METHOD") or (
        "fork" if "fork" in methods else "spawn")
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(min(processes, len(jobs))) as pool:
        yield from pool.imap_unordered(func, jobs)


def build_sample(
    root: str | os.PathLike[str] | None = None,
    *,
    dense: bool = False,
    n_dates: int | None = None,
    processes: int = 2,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    seed: int = DEFAULT_SEED,
    bands: Sequence[str] | None = None,
) -> SampleInfo:
    """Build the Berry Creek sample (COGs, v1 + v0 items, collections, truth) if needed.

    Idempotent: ``manifest.json`` (written last) records the parameters and the generator
    version; a folder whose manifest matches and whose files are all there is reused as is.
    Anything else (other parameters, a newer generator, an interrupted build) is rebuilt.

    Parameters
    ----------
    root:
        Output folder; default :func:`default_root`.
    dense:
        Fill whole tiles instead of only the AOI's blocks (large and slow: benchmarks).
    n_dates:
        Number of 10SFJ acquisitions. ``None``: the demo set (25: 23 in 2020-01-01..
        2021-06-30 plus 2 in 2022). Fewer keeps the most telling ones first (burn start,
        pre-fire, grown burn, clouds, wedge, mosaic...); more adds further 5-day-cadence dates
        in 2020-2021 (up to about 110). 10SFH items come along with their mosaic dates.
    processes:
        Worker processes (one acquisition per task); 1 runs in this process.
    force:
        Rebuild even if the folder is up to date.
    progress:
        Called with a short message as the build goes.
    seed:
        Seed of every random field; the same seed gives the same pixels.
    bands:
        Subset of ``blue green red nir swir16 swir22 scl`` to write (default: all); the items
        list only these.

    Returns
    -------
    SampleInfo
    """
    say = progress or (lambda message: None)
    root_path = Path(root).expanduser() if root is not None else default_root(dense)
    root_path = root_path.resolve()
    if n_dates is not None and (not isinstance(n_dates, int) or n_dates < 1):
        raise SampleError(f"n_dates must be a positive integer, not {n_dates!r}")
    if processes < 1:
        raise SampleError(f"processes must be >= 1, not {processes!r}")
    chosen = list(BAND_KEYS) if bands is None else list(dict.fromkeys(bands))
    unknown = [b for b in chosen if b not in BAND_KEYS]
    if unknown or not chosen:
        raise SampleError(f"unknown or no bands {unknown}; choose from {', '.join(BAND_KEYS)}")
    chosen = [b for b in BAND_KEYS if b in chosen]
    params = {"dense": bool(dense), "n_dates": n_dates, "seed": int(seed),
              "bands": None if bands is None else chosen}
    info = _info(root_path)
    if not force and _is_current(root_path, params):
        say(f"sample up to date in {root_path}")
        return info
    with _locked(root_path):  # another process may be building the same folder
        if not force and _is_current(root_path, params):
            say(f"sample up to date in {root_path}")
            return info
        _build(root_path, params, chosen, int(seed), dense, n_dates, processes, say)
    return info


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``root/.lock`` (no-op where ``fcntl`` is missing)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(root / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(root_path: Path, params: dict[str, Any], chosen: list[str], seed: int, dense: bool,
           n_dates: int | None, processes: int, say: Callable[[str], None]) -> None:
    started = time.perf_counter()
    plan = _plan(n_dates, seed)
    say(f"building the sample in {root_path}: {len(plan)} items x {len(chosen)} bands"
        f"{' (dense)' if dense else ''}")
    root_path.mkdir(parents=True, exist_ok=True)
    (root_path / "manifest.json").unlink(missing_ok=True)
    for stale in (COG_PREFIX, "stac", ".build"):
        shutil.rmtree(root_path / stale, ignore_errors=True)
    (root_path / "truth.json").unlink(missing_ok=True)
    work = _work_dir(root_path, dense)
    try:
        stats = _render_all(plan, work, root_path, seed, chosen, dense, processes, say)
        burn = _burn_truth(work, plan, seed)
        files = _write_metadata(root_path, plan, stats, burn, chosen, seed, dense)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    _write_json(root_path / "manifest.json", {
        "generator": "s2intake.sample",
        "generator_version": _code_version(),
        "params": params,
        "built": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build_seconds": round(elapsed, 2),
        "python": sys.version.split()[0],
        "files": files,
    }, indent=1)
    say(f"sample built in {elapsed:.1f} s: {root_path}")


_WORK_PREFIX = "s2intake-sample-"


def _work_dir(root: Path, dense: bool) -> Path:
    """Scratch folder for the static fields: RAM-backed /dev/shm when it has room, else root.

    The folder records the building process id; folders of builds whose process is gone
    (killed before cleaning up) are removed here.
    """
    shm = Path("/dev/shm")
    need = (60 if dense else 1) << 30
    work = root / ".build"
    if shm.is_dir() and os.access(shm, os.W_OK):
        for stale in shm.glob(_WORK_PREFIX + "*"):
            if not _owner_alive(stale):
                shutil.rmtree(stale, ignore_errors=True)
        with contextlib.suppress(OSError):
            if shutil.disk_usage(shm).free > 2 * need:
                work = Path(tempfile.mkdtemp(prefix=_WORK_PREFIX, dir=shm))
    work.mkdir(parents=True, exist_ok=True)
    (work / "owner.pid").write_text(str(os.getpid()))
    return work


def _owner_alive(work: Path) -> bool:
    try:
        pid = int((work / "owner.pid").read_text())
    except (OSError, ValueError):
        try:  # no pid (yet): left alone unless clearly abandoned
            return time.time() - work.stat().st_mtime < 2 * 3600
        except OSError:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _render_all(plan: list[_Acq], work: Path, root: Path, seed: int, bands: list[str],
                dense: bool, processes: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Precompute the static fields, then render every acquisition (in parallel)."""
    t0 = time.perf_counter()
    tiles = sorted({a.tile for a in plan})
    prep_jobs: list[tuple[Any, ...]] = [("burn", str(work), seed)]
    prep_jobs += [("window", str(work), t, i, w, seed, ",".join(bands))
                  for t in tiles for i, w in enumerate(_windows(TILES[t], dense))]
    prep_jobs += [("meta", str(work), t, seed) for t in tiles]
    windows: dict[str, list[dict[str, Any]]] = {t: [] for t in tiles}
    meta: dict[str, dict[str, Any]] = {}
    burn: dict[str, Any] = {}
    for kind, res in _pool_map(_prepare, prep_jobs, processes):
        if kind == "window":
            windows[res["tile"]].append(res)
        elif kind == "meta":
            meta[res["tile"]] = res
        else:
            burn = res
    for t in tiles:
        windows[t].sort(key=lambda p: (p["window"].r0, p["window"].c0))
    say(f"static fields ready in {time.perf_counter() - t0:.1f} s")
    jobs = [{"acq": a, "seed": seed, "bands": bands, "windows": windows[a.tile], "burn": burn,
             "meta": meta[a.tile], "out_dir": str(root / a.href_dir())} for a in plan]
    stats: dict[str, Any] = {}
    try:
        for done, res in enumerate(_pool_map(_render_acq, jobs, processes), start=1):
            stats[res["id"]] = res
            say(f"[{done}/{len(jobs)}] {res['id']}")
    finally:
        _ZEROS.clear()  # only filled here when rendering in this process
    return stats


def _burn_truth(work: Path, plan: list[_Acq], seed: int) -> dict[str, Any]:
    """Exact burned areas (10 m pixels x 100 m2) in the AOI and in total, per burn day."""
    day = np.load(work / "burn_day.npy")
    aoi = np.load(work / "burn_aoi.npy")
    out: dict[str, Any] = {}
    for acq in plan:
        burned = day <= acq.burn_day
        out[acq.id] = (int((burned & aoi).sum()) * 100, int(burned.sum()) * 100)
    return out


def _aoi_pixels() -> int:
    """Number of 10 m pixels (of the common 10SFJ/10SFH grid) whose centre is in the AOI."""
    minx, miny, maxx, maxy = _aoi_utm().bounds
    c0 = math.floor((minx - ANCHOR_X) / 10) - 1
    c1 = math.ceil((maxx - ANCHOR_X) / 10) + 1
    r0 = math.floor((ANCHOR_Y - maxy) / 10) - 1
    r1 = math.ceil((ANCHOR_Y - miny) / 10) + 1
    grid = _Grid(ANCHOR_X + 10 * c0, ANCHOR_Y - 10 * r0, 10.0, c1 - c0, r1 - r0)
    return int(_aoi_mask(grid).sum())


def _kinds(acq: _Acq) -> list[str]:
    """Tags of an acquisition for ``truth.json``."""
    kinds = ["cloudy" if acq.scenario != "clear" else "clear"]
    if acq.scenario != "clear":
        kinds.append(acq.scenario)
    if acq.cut:
        kinds += ["partial", acq.cut]
    if acq.burn_day >= 0:
        kinds.append("burn")
    if acq.burn_day == 0:
        kinds.append("burn_start")
    if acq.dn_offset:
        kinds.append("boa_offset")
    if acq.mosaic:
        kinds.append("mosaic")
    if not acq.valid_cloud_cover:
        kinds.append("invalid_cloud_cover")
    return kinds


def _write_metadata(root: Path, plan: list[_Acq], stats: dict[str, Any],
                    burn: dict[str, Any], bands: list[str], seed: int, dense: bool) -> list[str]:
    """Items, collections, truth; returns the relative paths of every file of the sample."""
    items = {"v1": [], "v0": []}
    truth_rows = []
    aoi_total = _aoi_pixels()
    files: list[str] = []
    for acq in plan:
        st = stats[acq.id]
        meta = st["meta"]
        items["v1"].append(_v1_item(acq, meta, bands))
        items["v0"].append(_v0_item(acq, meta, bands))
        files += [f"{acq.href_dir()}/{_BAND_BY_KEY[b].file}" for b in bands]
        in_aoi, total = burn[acq.id]
        aoi_cloud = st["cloud"] / aoi_total
        same_day = [a.id for a in plan if a.date == acq.date and a.id != acq.id]
        truth_rows.append({
            "id": acq.id,
            "tile": acq.tile,
            "date": acq.date.isoformat(),
            "datetime": acq.when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "platform": acq.platform,
            "relative_orbit": acq.orbit,
            "kinds": _kinds(acq),
            "cloud_scenario": acq.scenario,
            "cloud_cover": meta["cloud"],
            "cloudy_over_aoi": aoi_cloud > 0.01,
            "aoi_cloud_fraction": round(aoi_cloud, 6),
            "aoi_shadow_fraction": round(st["shadow"] / aoi_total, 6),
            "partial": acq.cut is not None,
            "cut": acq.cut,
            "nodata_pixel_percentage": meta["nodata"],
            "aoi_valid_fraction": round(st["valid"] / aoi_total, 6),
            "clear_fraction": round(st["clear"] / aoi_total, 6),
            "burn_area_m2": in_aoi,
            "burn_area_total_m2": total,
            "burn_area_visible_m2": st["burn_visible"] * 100,
            "processing_baseline": acq.baseline,
            "dn_offset": acq.dn_offset,
            "same_day": same_day,
        })
    for version in ("v1", "v0"):
        items[version].sort(key=lambda i: (i["properties"]["datetime"], i["id"]))
        _write_json(root / "stac" / version / "items.json",
                    {"type": "FeatureCollection", "features": items[version]})
        _write_json(root / "stac" / version / "collection.json",
                    _collection(version, items[version], bands), indent=1)
        files += [f"stac/{version}/items.json", f"stac/{version}/collection.json"]
    truth = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "dense": dense,
        "crs": TILE_CRS,
        "aoi": {
            "path": "catalogs/berry_creek.geojson",
            "pixels_10m": aoi_total,
            "area_m2": aoi_total * 100,
            "rule": ("10 m pixels of the 10SFJ grid whose centre lies inside the AOI polygon with "
                     "its vertices projected to EPSG:32610 (rasterio geometry_mask, "
                     "all_touched=False)"),
        },
        "burn": {
            "start": BURN_START.isoformat(),
            "grows_until": (BURN_START + dt.timedelta(days=int(_BURN_DAYS))).isoformat(),
            "burned_nir_range": list(_BURNED_NIR),
            "unburned_land_nir_min": _LAND_NIR_MIN,
            "note": ("burn_area_m2 / burn_area_total_m2 are the ground-truth burned mask (inside "
                     "the AOI / anywhere) at 10 m; burn_area_visible_m2 counts the burned AOI "
                     "pixels that this item shows clear (valid, SCL 4/5/6)"),
        },
        "dn_offset_note": ("DN = reflectance x 10000 + dn_offset for valid pixels (0 = nodata); "
                           "dn_offset is 1000 for processing baseline 04.00 and later"),
        "scl_classes": {"0": "nodata", "3": "cloud shadow", "4": "vegetation",
                        "5": "not vegetated", "6": "water", "8": "cloud medium probability",
                        "9": "cloud high probability", "10": "thin cirrus"},
        "acquisitions": truth_rows,
    }
    _write_json(root / "truth.json", truth, indent=1)
    files.append("truth.json")
    return files


# ---------------------------------------------------------------------------------------------
# the real Earth Search collections (recorded; item_assets cut down to the assets written here)
# ---------------------------------------------------------------------------------------------
_V1_COLLECTION_JSON = r"""{
 "type": "Collection",
 "id": "sentinel-2-l2a",
 "stac_version": "1.0.0",
 "title": "Sentinel-2 Level-2A",
 "description": "Global Sentinel-2 data from the Multispectral Instrument (MSI) onboard Sentinel-2",
 "links": [
  {"rel": "self", "type": "application/json", "href": "https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a"},
  {"rel": "cite-as", "href": "https://doi.org/10.5270/S2_-742ikth", "title": "Copernicus Sentinel-2 MSI Level-2A (L2A) Bottom-of-Atmosphere Radiance"},
  {"rel": "license", "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice", "title": "proprietary"},
  {"rel": "parent", "type": "application/json", "href": "https://earth-search.aws.element84.com/v1"},
  {"rel": "root", "type": "application/json", "href": "https://earth-search.aws.element84.com/v1"},
  {"rel": "items", "type": "application/geo+json", "href": "https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items"},
  {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json", "href": "https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/queryables"},
  {"rel": "aggregate", "type": "application/json", "href": "https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/aggregate", "method": "GET"},
  {"rel": "aggregations", "type": "application/json", "href": "https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/aggregations"}
 ],
 "stac_extensions": ["https://stac-extensions.github.io/item-assets/v1.0.0/schema.json", "https://stac-extensions.github.io/view/v1.0.0/schema.json", "https://stac-extensions.github.io/scientific/v1.0.0/schema.json", "https://stac-extensions.github.io/raster/v1.1.0/schema.json", "https://stac-extensions.github.io/eo/v1.0.0/schema.json"],
 "item_assets": {
  "blue": {"type": "image/tiff; application=geotiff; profile=cloud-optimized", "title": "Blue (band 2) - 10m", "eo:bands": [{"name": "blue", "common_name": "blue", "description": "Blue (band 2)", "center_wavelength": 0.49, "full_width_half_max": 0.098}], "gsd": 10, "proj:shape": [10980, 10980], "proj:transform": [10, 0, 399960, 0, -10, 4900020], "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": 10, "scale": 0.0001, "offset": 0}], "roles": ["data", "reflectance"]},
  "green": {"type": "image/tiff; application=geotiff; profile=cloud-optimized", "title": "Green (band 3) - 10m", "eo:bands": [{"name": "green", "common_name": "green", "description": "Green (band 3)", "center_wavelength": 0.56, "full_width_half_max": 0.045}], "gsd": 10, "proj:shape": [10980, 10980], "proj:transform": [10, 0, 399960, 0, -10, 4900020], "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": 10, "scale": 0.0001, "offset": 0}], "roles": ["data", "reflectance"]},
  "red": {"type": "image/tiff; application=geotiff; profile=cloud-optimized", "title": "Red (band 4) - 10m", "eo:bands": [{"name": "red", "common_name": "red", "description": "Red (band 4)", "center_wavelength": 0.665, "full_width_half_max": 0.038}], "gsd": 10, "proj:shape": [10980, 10980], "proj:transform": [10, 0, 399960, 0, -10, 4900020], "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": 10, "scale": 0.0001, "offset": 0}], "roles": ["data", "reflectance"]},
  "nir": {"type": "image/tiff; application=geotiff; profile=cloud-optimized", "title": "NIR 1 (band 8) - 10m", "eo:bands": [{"name": "nir", "common_name": "nir", "description": "NIR 1 (band 8)", "center_wavelength": 0.842, "full_width_half_max": 0.145}], "gsd": 10, "proj:shape": [10980, 10980], "proj:transform": [10, 0, 399960, 0, -10, 4900020], "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": 10, "scale": 0.0001, "offset": 0}], "roles": ["data", "reflectance"]},
  "swir16": {"type": "image/tiff; application=geotiff; profile=cloud-optimized", "title": "SWIR 1 (band 11) - 20m", "eo:bands": [{"name": "swir16", "common_name": "swir16", "description": "SWIR 1 (band 11)", "center_wavelength": 1.61, "full_width_half_max": 0.143}], "gsd": 20, "proj:shape": [5490, 5490], "proj:transform": [20, 0, 399960, 0, -20, 4900020], "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": 20, "scale": 0.0001, "offset": 0}], "roles": ["data", "reflectance"]},
  "swir22": {"type": "image/tiff; application=geotiff; profile=cloud-optimized", "title": "SWIR 2 (band 12) - 20m", "eo:bands": [{"name": "swir22", "common_name": "swir22", "description": "SWIR 2 (band 12)", "center_wavelength": 2.19, "full_width_half_max": 0.242}], "gsd": 20, "proj:shape": [5490, 5490], "proj:transform": [20, 0, 399960, 0, -20, 4900020], "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": 20, "scale": 0.0001, "offset": 0}], "roles": ["data", "reflectance"]},
  "scl": {"type": "image/tiff; application=geotiff; profile=cloud-optimized", "title": "Scene classification map (SCL)", "proj:shape": [5490, 5490], "proj:transform": [20, 0, 399960, 0, -20, 4900020], "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}], "roles": ["data", "reflectance"]}
 },
 "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [["2015-06-27T10:25:31.456000Z", null]]}},
 "license": "proprietary",
 "keywords": ["sentinel", "earth observation", "esa"],
 "providers": [{"name": "ESA", "roles": ["producer"], "url": "https://earth.esa.int/web/guest/home"}, {"name": "Sinergise", "roles": ["processor"], "url": "https://registry.opendata.aws/sentinel-2/"}, {"name": "AWS", "roles": ["host"], "url": "http://sentinel-pds.s3-website.eu-central-1.amazonaws.com/"}, {"name": "Element 84", "roles": ["processor"], "url": "https://element84.com"}],
 "summaries": {
  "platform": ["sentinel-2a", "sentinel-2b"],
  "constellation": ["sentinel-2"],
  "instruments": ["msi"],
  "gsd": [10, 20, 60],
  "view:off_nadir": [0],
  "sci:doi": ["10.5270/s2_-znk9xsj"],
  "eo:bands": [{"name": "coastal", "common_name": "coastal", "description": "Coastal aerosol (band 1)", "center_wavelength": 0.443, "full_width_half_max": 0.027}, {"name": "blue", "common_name": "blue", "description": "Blue (band 2)", "center_wavelength": 0.49, "full_width_half_max": 0.098}, {"name": "green", "common_name": "green", "description": "Green (band 3)", "center_wavelength": 0.56, "full_width_half_max": 0.045}, {"name": "red", "common_name": "red", "description": "Red (band 4)", "center_wavelength": 0.665, "full_width_half_max": 0.038}, {"name": "rededge1", "common_name": "rededge", "description": "Red edge 1 (band 5)", "center_wavelength": 0.704, "full_width_half_max": 0.019}, {"name": "rededge2", "common_name": "rededge", "description": "Red edge 2 (band 6)", "center_wavelength": 0.74, "full_width_half_max": 0.018}, {"name": "rededge3", "common_name": "rededge", "description": "Red edge 3 (band 7)", "center_wavelength": 0.783, "full_width_half_max": 0.028}, {"name": "nir", "common_name": "nir", "description": "NIR 1 (band 8)", "center_wavelength": 0.842, "full_width_half_max": 0.145}, {"name": "nir08", "common_name": "nir08", "description": "NIR 2 (band 8A)", "center_wavelength": 0.865, "full_width_half_max": 0.033}, {"name": "nir09", "common_name": "nir09", "description": "NIR 3 (band 9)", "center_wavelength": 0.945, "full_width_half_max": 0.026}, {"name": "cirrus", "common_name": "cirrus", "description": "Cirrus (band 10)", "center_wavelength": 1.3735, "full_width_half_max": 0.075}, {"name": "swir16", "common_name": "swir16", "description": "SWIR 1 (band 11)", "center_wavelength": 1.61, "full_width_half_max": 0.143}, {"name": "swir22", "common_name": "swir22", "description": "SWIR 2 (band 12)", "center_wavelength": 2.19, "full_width_half_max": 0.242}]
 }
}"""
_V0_COLLECTION_JSON = r"""{
 "id": "sentinel-s2-l2a-cogs",
 "stac_version": "1.0.0-beta.2",
 "description": "Sentinel-2a and Sentinel-2b imagery, processed to Level 2A (Surface Reflectance) and converted to Cloud-Optimized GeoTIFFs",
 "links": [
  {"rel": "self", "href": "https://earth-search.aws.element84.com/v0/collections/sentinel-s2-l2a-cogs"},
  {"rel": "license", "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"},
  {"rel": "about", "href": "https://github.com/stac-utils/stac-sentinel"},
  {"rel": "parent", "href": "https://earth-search.aws.element84.com/v0/"},
  {"rel": "root", "href": "https://earth-search.aws.element84.com/v0/"},
  {"rel": "items", "href": "https://earth-search.aws.element84.com/v0/collections/sentinel-s2-l2a-cogs/items"}
 ],
 "stac_extensions": ["item-assets"],
 "title": "Sentinel 2 L2A COGs",
 "keywords": ["sentinel", "earth observation", "esa"],
 "providers": [{"name": "ESA", "roles": ["producer"], "url": "https://earth.esa.int/web/guest/home"}, {"name": "Sinergise", "roles": ["processor"], "url": "https://registry.opendata.aws/sentinel-2/"}, {"name": "AWS", "roles": ["host"], "url": "http://sentinel-pds.s3-website.eu-central-1.amazonaws.com/"}, {"name": "Element 84", "roles": ["processor"], "url": "https://element84.com"}],
 "summaries": {
  "platform": ["sentinel-2a", "sentinel-2b"],
  "constellation": ["sentinel-2"],
  "instruments": ["msi"],
  "gsd": [10],
  "view:off_nadir": [0]
 },
 "item_assets": {
  "B02": {"title": "Band 2 (blue)", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "gsd": 10, "eo:bands": [{"name": "B02", "common_name": "blue", "center_wavelength": 0.4966, "full_width_half_max": 0.098}]},
  "B03": {"title": "Band 3 (green)", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "gsd": 10, "eo:bands": [{"name": "B03", "common_name": "green", "center_wavelength": 0.56, "full_width_half_max": 0.045}]},
  "B04": {"title": "Band 4 (red)", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "gsd": 10, "eo:bands": [{"name": "B04", "common_name": "red", "center_wavelength": 0.6645, "full_width_half_max": 0.038}]},
  "B08": {"title": "Band 8 (nir)", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "gsd": 10, "eo:bands": [{"name": "B08", "common_name": "nir", "center_wavelength": 0.8351, "full_width_half_max": 0.145}]},
  "B11": {"title": "Band 11 (swir16)", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "gsd": 20, "eo:bands": [{"name": "B11", "common_name": "swir16", "center_wavelength": 1.6137, "full_width_half_max": 0.143}]},
  "B12": {"title": "Band 12 (swir22)", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "gsd": 20, "eo:bands": [{"name": "B12", "common_name": "swir22", "center_wavelength": 2.22024, "full_width_half_max": 0.242}]},
  "SCL": {"title": "Scene Classification Map (SCL)", "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"]}
 },
 "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [["2015-06-27T10:25:31.456000Z", null]]}},
 "license": "proprietary"
}"""
