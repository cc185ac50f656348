"""Lazy stack: items + AOI -> a Dask-backed ``xarray.Dataset`` of only the AOI's window.

Layout: one data variable per band (``red``, ``green``...), each with dims
``(time, y, x)``; ``ds.s2.to_dataarray()`` gives the ``(time, band, y, x)`` view. Bands keep
their own dtype (uint16 reflectance DNs, uint8 SCL) so memory stays at 2 bytes a pixel unless
``scale=True`` asks for float32 reflectance.

Only item metadata is used to build the graph; no pixel (nor COG header) is read until
compute. Chunks are ``chunks`` pixels square and start on the items' native 1024-px block
grid, so each internal COG tile is read by exactly one task.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from pyproj import CRS

from .aoi import AOI, read_aoi
from .errors import StackError
from .gdal_env import ReadOptions
from .graph import ReadLayer, options_layer
from .profiles import BANDS, REFLECTANCE_SCALE, canonical_bands, detect_profile
from .reader import RAW_LAYER_PREFIX, ChunkTask, FileTask, Source, block_pixels, gdal_path

#: Attribute key under which the AOI (GeoJSON text, lon/lat) travels with a dataset.
AOI_ATTR = "s2intake_aoi"


def stack(
    items: Any,
    bands: str | Sequence[str] = ("red", "green", "blue"),
    *,
    aoi: Any = None,
    resolution: float = 10,
    crs: Any = None,
    bounds: Sequence[float] | None = None,
    chunks: int = 1024,
    scale: bool = False,
    harmonize: bool = True,
    mosaic: bool | str = "solar_day",
    resampling: str = "nearest",
    on_error: str = "raise",
    retries: int = 3,
    gdal_options: Mapping[str, Any] | None = None,
    allow_local_hrefs: bool | None = None,
    reader: str = "auto",
) -> xr.Dataset:
    """Stack Sentinel-2 items into a lazy dataset covering only the area of interest.

    Parameters
    ----------
    items:
        A :class:`~s2intake.search.SearchResult` (its AOI is used when ``aoi`` is None),
        a pystac ``ItemCollection``/``ItemSearch``, or item dicts (v1 or v0).
    bands:
        Common names (``red``, ``nir``, ``swir22``, ``scl``...) or either version's asset keys.
    aoi:
        Area to cover; its bounds (in the output CRS) define the window. It travels on in
        ``attrs`` for :meth:`ds.s2.clip_aoi`.
    resolution:
        Output pixel size in CRS units (10 m default; 20 m bands are resampled with
        ``resampling``, nearest by default).
    crs:
        Output CRS; default the most common ``proj:epsg`` of the items. Items in other UTM
        zones are reprojected to it.
    bounds:
        ``(minx, miny, maxx, maxy)`` in the output CRS instead of the AOI's bounds.
    chunks:
        Chunk size in pixels (y and x); 1024 matches the COGs' internal tiles.
    scale:
        Return float32 reflectance (``DN * 0.0001``, NaN for nodata) instead of DNs.
    harmonize:
        Remove the +1000 DN offset of processing baseline >= 04.00 (from 2022-01-25) so values
        compare across years; dark pixels stay >= 1 so they are not mistaken for nodata.
    mosaic:
        ``"solar_day"`` (default) or ``True`` merges items of the same day (adjacent tiles,
        same orbit) into one time step, first valid pixel wins; ``False`` keeps one step
        per item.
    on_error, retries, gdal_options:
        Read policy, see :class:`~s2intake.gdal_env.ReadOptions`.
    allow_local_hrefs:
        Read local/``file://`` hrefs. Default: allowed only for items from a local item file.
    reader:
        ``"auto"`` (default): files on the output grid are read by s2intake's direct reader
        (per file one GET for the header and one multi-range GET for every tile the stack
        needs, libdeflate decoding with checksums), everything else through GDAL;
        ``"gdal"``: everything through GDAL/rasterio.

    Returns
    -------
    xarray.Dataset
        Lazy; dims ``(time, y, x)``; coordinates ``time``, ``y``, ``x`` (pixel centres),
        ``id``, ``eo:cloud_cover``, ``platform`` per time step and ``spatial_ref``.
    """
    from .search import SearchResult, items_from

    dicts = items_from(items)
    if not dicts:
        raise StackError("no items to stack")
    if aoi is None and isinstance(items, SearchResult):
        aoi = items.aoi
    if allow_local_hrefs is None:
        allow_local_hrefs = isinstance(items, SearchResult) and items.mode == "local"
    area = read_aoi(aoi) if aoi is not None else None
    names = canonical_bands(bands)
    if len(set(names)) != len(names):
        raise StackError(f"bands repeat: {list(bands)}")
    if resolution <= 0:
        raise StackError(f"resolution must be positive, got {resolution}")
    if chunks < 16:
        raise StackError(f"chunks must be at least 16 pixels, got {chunks}")
    if reader not in ("auto", "gdal"):
        raise StackError(f"reader must be 'auto' or 'gdal', got {reader!r}")
    options = ReadOptions.make(gdal_options, retries=retries, on_error=on_error,
                               allow_local=bool(allow_local_hrefs), direct=reader == "auto")
    _check_assets(dicts, names)
    for item in dicts:  # refuse forbidden hrefs now, not on a worker at compute time
        profile = detect_profile(item)
        for name in names:
            gdal_path(item["assets"][profile.asset_key(name)]["href"], options.allow_local)

    out_crs = CRS.from_user_input(crs) if crs is not None else _common_crs(dicts)
    anchor = _grid_anchor(dicts, names[0], out_crs)
    box = _output_bounds(dicts, area, bounds, out_crs, resolution)
    x0, y1, width, height = _snap(box, resolution, anchor)
    transform = Affine(resolution, 0, x0, 0, -resolution, y1)
    groups = _group(dicts, mosaic)

    x_edges = _chunk_edges(x0, width, resolution, anchor[0], chunks, +1)
    y_edges = _chunk_edges(y1, height, resolution, anchor[1], chunks, -1)
    crs_text = out_crs.to_string()
    variables = {}
    for name in names:
        variables[name] = _band_array(name, groups, transform, x_edges, y_edges, crs_text,
                                      resampling, scale, harmonize, options)
    coords = _coords(groups, transform, width, height, out_crs)
    ds = xr.Dataset({n: (("time", "y", "x"), arr) for n, arr in variables.items()},
                    coords=coords)
    for name in names:
        ds[name].attrs.update(_band_attrs(name, scale))
    ds.attrs.update({
        "crs": crs_text,
        "transform": tuple(transform)[:6],
        "resolution": float(resolution),
        "collection": dicts[0].get("collection", ""),
        "profile": detect_profile(dicts[0]).name,
        "harmonized": bool(harmonize),
    })
    if area is not None:
        ds.attrs[AOI_ATTR] = area.to_json()
    return ds


def _check_assets(items: list[dict], names: list[str]) -> None:
    for item in items:
        profile = detect_profile(item)
        for name in names:
            key = profile.asset_key(name)
            if key not in item.get("assets", {}):
                raise StackError(
                    f"item {item.get('id')!r} has no asset {key!r} for band {name!r}; it has "
                    + ", ".join(sorted(item.get("assets", {})))
                )


def _item_epsg(item: Mapping[str, Any]) -> int | None:
    props = item.get("properties", {})
    if props.get("proj:epsg"):
        return int(props["proj:epsg"])
    code = props.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":")[1])
    return None


def _common_crs(items: list[dict]) -> CRS:
    codes = Counter(c for c in (_item_epsg(i) for i in items) if c)
    if not codes:
        raise StackError("the items carry no proj:epsg; pass crs= (for example 'EPSG:32610')")
    return CRS.from_epsg(codes.most_common(1)[0][0])


def _grid_anchor(items: list[dict], band: str, crs: CRS) -> tuple[float, float]:
    """Origin of the native block grid of the first item in ``crs`` (for chunk alignment)."""
    epsg = crs.to_epsg()
    for item in items:
        if _item_epsg(item) != epsg:
            continue
        asset = item["assets"][detect_profile(item).asset_key(band)]
        transform = asset.get("proj:transform")
        if transform and len(transform) >= 6:
            return float(transform[2]), float(transform[5])
    return 0.0, 0.0


def _output_bounds(items: list[dict], area: AOI | None, bounds: Sequence[float] | None,
                   crs: CRS, resolution: float) -> tuple[float, float, float, float]:
    if bounds is not None:
        if len(bounds) != 4 or bounds[0] >= bounds[2] or bounds[1] >= bounds[3]:
            raise StackError(f"bounds must be (minx, miny, maxx, maxy), got {tuple(bounds)}")
        return tuple(float(b) for b in bounds)  # type: ignore[return-value]
    if area is not None:
        geom = area.to_crs(crs)
    else:
        import shapely

        union = shapely.union_all([shapely.geometry.shape(i["geometry"]) for i in items])
        geom = AOI(union, "item footprints").to_crs(crs)
    minx, miny, maxx, maxy = geom.bounds
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise StackError(f"the area cannot be expressed in {crs.to_string()}")
    # a point or line still needs one pixel
    if maxx - minx < resolution:
        maxx = minx + resolution
    if maxy - miny < resolution:
        maxy = miny + resolution
    return minx, miny, maxx, maxy


def _snap(box: tuple[float, float, float, float], res: float,
          anchor: tuple[float, float]) -> tuple[float, float, int, int]:
    """Expand bounds outward onto the pixel grid through ``anchor``."""
    minx, miny, maxx, maxy = box
    ax, ay = anchor
    x0 = ax + math.floor((minx - ax) / res + 1e-9) * res
    x1 = ax + math.ceil((maxx - ax) / res - 1e-9) * res
    y0 = ay + math.floor((miny - ay) / res + 1e-9) * res
    y1 = ay + math.ceil((maxy - ay) / res - 1e-9) * res
    return x0, y1, int(round((x1 - x0) / res)), int(round((y1 - y0) / res))


def _chunk_edges(start: float, size: int, res: float, anchor: float, chunks: int,
                 sign: int) -> list[int]:
    """Pixel offsets of chunk boundaries so chunks start on the anchor's block grid."""
    offset_px = (sign * (start - anchor)) / res
    first = chunks - int(round(offset_px)) % chunks
    edges = [0]
    pos = first if first < chunks else chunks
    while pos < size:
        edges.append(pos)
        pos += chunks
    edges.append(size)
    return edges


def solar_day(item: Mapping[str, Any]) -> pd.Timestamp:
    """Local solar date of an acquisition (UTC time shifted by the footprint's longitude)."""
    stamp = pd.Timestamp(item["properties"]["datetime"])
    stamp = stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")
    bbox = item.get("bbox")
    if bbox:
        lon = (bbox[0] + bbox[2]) / 2
    else:
        import shapely.geometry

        lon = shapely.geometry.shape(item["geometry"]).centroid.x
    return (stamp + pd.Timedelta(hours=lon / 15)).normalize()


def _group(items: list[dict], mosaic: bool | str) -> list[list[dict]]:
    ordered = sorted(items, key=lambda i: (i["properties"]["datetime"], i["id"]))
    if not mosaic:
        return [[i] for i in ordered]
    if mosaic not in (True, "solar_day"):
        raise StackError(f"mosaic must be 'solar_day', True or False, got {mosaic!r}")
    groups: dict[pd.Timestamp, list[dict]] = defaultdict(list)
    for item in ordered:
        groups[solar_day(item)].append(item)
    out = []
    for key in sorted(groups):
        members = groups[key]
        # fuller tiles first, so the mosaic takes their pixels before the edge scenes'
        members.sort(key=lambda i: _nodata_fraction(i))
        out.append(members)
    return out


def _nodata_fraction(item: Mapping[str, Any]) -> float:
    props = item["properties"]
    if "s2:nodata_pixel_percentage" in props:
        return float(props["s2:nodata_pixel_percentage"])
    if "sentinel:data_coverage" in props:
        return 100.0 - float(props["sentinel:data_coverage"])
    return 0.0


def _band_dtype(name: str, scale: bool) -> tuple[str, float]:
    if name == "scl":
        return "uint8", 0
    if scale:
        return "float32", float("nan")
    return "uint16", 0


def _band_array(name: str, groups: list[list[dict]], transform: Affine, x_edges: list[int],
                y_edges: list[int], crs: str, resampling: str, scale: bool, harmonize: bool,
                options: ReadOptions) -> da.Array:
    dtype, nodata = _band_dtype(name, scale)
    factor = REFLECTANCE_SCALE if scale and name != "scl" else None
    method = "nearest" if name == "scl" else resampling
    tasks: dict[tuple[int, int, int], ChunkTask] = {}
    files: dict[tuple[int, int], FileTask] = {}
    full = tuple(transform)[:6]
    grid = {(i, j): (tuple(transform @ Affine.translation(x_edges[j], y_edges[i]))[:6],
                     (y_edges[i + 1] - y_edges[i], x_edges[j + 1] - x_edges[j]))
            for i in range(len(y_edges) - 1) for j in range(len(x_edges) - 1)}
    windows = tuple((y_edges[i], y_edges[i + 1], x_edges[j], x_edges[j + 1]) for i, j in grid)
    for t, group in enumerate(groups):
        sources = []
        for item in group:
            profile = detect_profile(item)
            asset = item["assets"][profile.asset_key(name)]
            offset = profile.dn_offset(item["properties"], asset, name) if harmonize else 0
            sources.append(Source(asset["href"], item["id"], offset))
        for s, source in enumerate(sources):
            files[(t, s)] = FileTask(source, name, crs, full, windows)  # type: ignore[arg-type]
        for (i, j), (chunk_transform, shape) in grid.items():
            tasks[(t, i, j)] = ChunkTask(
                sources=tuple(sources), band=name, crs=crs, transform=chunk_transform,
                shape=shape, dtype=dtype, nodata=nodata, resampling=method, scale=factor,
                options=options, chunk=(t, i, j))
    # the inputs of every task, without tokenizing each task's dataclasses (slow)
    token = tokenize(name, [[(s.href, s.item_id, s.dn_offset) for s in tasks[(t, 0, 0)].sources]
                            for t in range(len(groups))],
                     full, x_edges, y_edges, crs, method, dtype, nodata, factor, options)
    label = f"s2read-{name}-" + token
    fetch = f"s2fetch-{name}-" + token
    fetches = {(fetch, t, s): task for (t, s), task in files.items()}
    chunks = ((1,) * len(groups), tuple(np.diff(y_edges)), tuple(np.diff(x_edges)))

    def reads(layer_name: str) -> dict:
        return {(layer_name, t, i, j): (task, tuple((fetch, t, s)
                                                    for s in range(len(task.sources))))
                for (t, i, j), task in tasks.items()}

    options_key, options_graph = options_layer(options, tokenize(options))
    if options.on_error == "raise":
        # a failed read raises: the read tasks are the array's chunks (one task per chunk)
        hlg = HighLevelGraph({options_key: options_graph,
                              label: ReadLayer(fetches, reads(label), options_key,
                                               with_failures=False)},
                             {options_key: set(), label: {options_key}})
    else:
        # Two layers: the read layer fetches each file once (header + its tiles) and reads
        # each chunk from that, returning (pixels, failed reads); the array's chunk takes the
        # pixels. reader.compute_with_failures collects the failures from the same reads.
        raw = f"{RAW_LAYER_PREFIX}{name}-" + token
        graph = {(label, t, i, j): (block_pixels, (raw, t, i, j)) for (t, i, j) in tasks}
        hlg = HighLevelGraph({options_key: options_graph,
                              raw: ReadLayer(fetches, reads(raw), options_key), label: graph},
                             {options_key: set(), raw: {options_key}, label: {raw}})
    return da.Array(hlg, label, chunks, dtype=dtype,
                    meta=np.empty((0, 0, 0), dtype=dtype))


def _coords(groups: list[list[dict]], transform: Affine, width: int, height: int,
            crs: CRS) -> dict[str, Any]:
    times = []
    for group in groups:
        stamp = pd.Timestamp(group[0]["properties"]["datetime"])
        stamp = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
        times.append(stamp)
    xs = transform.c + transform.a * (np.arange(width) + 0.5)
    ys = transform.f + transform.e * (np.arange(height) + 0.5)

    def prop(group: list[dict], key: str) -> Any:
        values = [i["properties"].get(key) for i in group if i["properties"].get(key) is not None]
        return values

    clouds = [np.mean(v) if (v := prop(g, "eo:cloud_cover")) else np.nan for g in groups]
    spatial_ref = xr.DataArray(0, attrs={
        "crs_wkt": crs.to_wkt(), "spatial_ref": crs.to_wkt(),
        "GeoTransform": " ".join(str(v) for v in (transform.c, transform.a, transform.b,
                                                    transform.f, transform.d, transform.e)),
    })
    return {
        "time": ("time", pd.DatetimeIndex(times).values.astype("datetime64[ns]")),
        "y": ("y", ys),
        "x": ("x", xs),
        "id": ("time", ["+".join(i["id"] for i in g) for g in groups]),
        "platform": ("time", [",".join(sorted(set(prop(g, "platform")))) for g in groups]),
        "eo:cloud_cover": ("time", np.asarray(clouds, dtype=float)),
        "spatial_ref": spatial_ref,
    }


def _band_attrs(name: str, scale: bool) -> dict[str, Any]:
    common = BANDS[name]
    attrs: dict[str, Any] = {"band": name, "v0_asset": common[1], "native_resolution": common[2],
                             "grid_mapping": "spatial_ref"}
    if name == "scl":
        attrs.update(nodata=0, long_name="Scene classification")
    elif scale:
        attrs.update(units="reflectance", long_name=f"{name} surface reflectance")
    else:
        attrs.update(nodata=0, scale_factor_hint=REFLECTANCE_SCALE,
                     long_name=f"{name} surface reflectance x 10000 (DN)")
    return attrs
