"""Clip a stack to the AOI polygon: crop to its window, then mask pixels outside it (lazily)."""

from __future__ import annotations

import warnings
from typing import Any

import dask.array as da
import numpy as np
import shapely
import xarray as xr
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import geometry_mask

from .aoi import read_aoi
from .errors import AOIError, StackError
from .stack import AOI_ATTR


def dataset_aoi(obj: xr.Dataset | xr.DataArray, aoi: Any = None):
    """The AOI given, or the one that travelled in ``attrs`` from the search."""
    if aoi is not None:
        return read_aoi(aoi)
    text = obj.attrs.get(AOI_ATTR)
    if not text:
        raise AOIError("this dataset carries no AOI (it was not built from a search with an "
                       "AOI); pass one: clip_aoi(aoi)")
    return read_aoi(text)


def grid_of(obj: xr.Dataset | xr.DataArray) -> tuple[str, Affine]:
    """CRS text and pixel-corner transform of a stacked dataset or array."""
    crs = obj.attrs.get("crs")
    if crs is None and "spatial_ref" in obj.coords:
        crs = obj.coords["spatial_ref"].attrs.get("crs_wkt")
    if crs is None or "x" not in obj.dims or "y" not in obj.dims:
        raise StackError("need a dataset with x/y dims and a CRS (as s2intake.stack makes)")
    xs, ys = obj["x"].values, obj["y"].values
    res_x = float(xs[1] - xs[0]) if len(xs) > 1 else float(obj.attrs.get("resolution", 10))
    res_y = float(ys[1] - ys[0]) if len(ys) > 1 else -float(obj.attrs.get("resolution", 10))
    transform = Affine(res_x, 0, float(xs[0]) - res_x / 2, 0, res_y, float(ys[0]) - res_y / 2)
    return crs, transform


# rasterio 1.4's rasterize writes into a GDAL MEM dataset and sets the transform after
# opening it, which warns although the mask is georeferenced (a thread-safe, narrow filter
# instead of catch_warnings around each block)
warnings.filterwarnings("ignore", message="Dataset has no geotransform",
                        category=NotGeoreferencedWarning, module="rasterio.features")


def _mask_block(block: np.ndarray, geometry: bytes, transform: tuple, all_touched: bool,
                block_info: Any = None) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    local = Affine(*transform) @ Affine.translation(c0, r0)
    shape = (r1 - r0, c1 - c0)
    geom = shapely.from_wkb(geometry)
    return geometry_mask([geom], out_shape=shape, transform=local, invert=True,
                         all_touched=all_touched)


def aoi_mask(obj: xr.Dataset | xr.DataArray, aoi: Any = None,
             all_touched: bool | None = None) -> xr.DataArray:
    """Lazy boolean (y, x) mask, True inside the AOI, chunked like the data."""
    area = dataset_aoi(obj, aoi)
    crs, transform = grid_of(obj)
    geom = area.to_crs(crs)
    if all_touched is None:
        all_touched = geom.geom_type not in ("Polygon", "MultiPolygon")
    sample = next(iter(obj.data_vars.values())) if isinstance(obj, xr.Dataset) else obj
    if sample.chunks:
        chunks = (sample.chunks[sample.dims.index("y")], sample.chunks[sample.dims.index("x")])
    else:
        chunks = ((obj.sizes["y"],), (obj.sizes["x"],))
    template = da.zeros((obj.sizes["y"], obj.sizes["x"]), chunks=chunks, dtype=bool)
    mask = template.map_blocks(_mask_block, shapely.to_wkb(geom), tuple(transform)[:6],
                               all_touched, dtype=bool)
    return xr.DataArray(mask, dims=("y", "x"), coords={"y": obj["y"], "x": obj["x"]})


def clip(obj: xr.Dataset | xr.DataArray, aoi: Any = None, *, all_touched: bool | None = None,
         crop: bool = True) -> xr.Dataset | xr.DataArray:
    """Clip to the AOI polygon: outside pixels become nodata (0, or NaN for floats).

    Parameters
    ----------
    obj:
        A stack from :func:`s2intake.stack` (Dataset or one of its DataArrays).
    aoi:
        Area to clip to; default the AOI that travelled in ``attrs``.
    all_touched:
        Keep every pixel the geometry touches; default True for points and lines, False
        (pixel centres) for polygons.
    crop:
        First cut the x/y extent down to the AOI's bounds.
    """
    area = dataset_aoi(obj, aoi)
    crs, _ = grid_of(obj)
    if crop:
        minx, miny, maxx, maxy = area.to_crs(crs).bounds
        res = abs(float(obj["x"][1] - obj["x"][0])) if obj.sizes["x"] > 1 else 0
        xs = obj["x"].values
        ys = obj["y"].values
        keep_x = (xs >= minx - res) & (xs <= maxx + res)
        keep_y = (ys >= miny - res) & (ys <= maxy + res)
        if not keep_x.any() or not keep_y.any():
            raise AOIError("the AOI does not overlap this dataset")
        ix, iy = np.flatnonzero(keep_x), np.flatnonzero(keep_y)
        obj = obj.isel(x=slice(ix[0], ix[-1] + 1), y=slice(iy[0], iy[-1] + 1))
    mask = aoi_mask(obj, area, all_touched)

    def apply(var: xr.DataArray) -> xr.DataArray:
        if "x" not in var.dims or "y" not in var.dims:
            return var
        fill = np.nan if np.issubdtype(var.dtype, np.floating) else 0
        out = var.where(mask, other=np.array(fill, dtype=var.dtype))
        out.attrs = var.attrs
        return out

    result = obj.map(apply, keep_attrs=True) if isinstance(obj, xr.Dataset) else apply(obj)
    result.attrs[AOI_ATTR] = area.to_json()
    return result
