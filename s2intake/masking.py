"""Cloud masking with the L2A Scene Classification Layer (SCL), per AOI, lazily.

Earth Search's ``eo:cloud_cover`` describes a whole 110 km tile. Whether *your* area of
interest is clear on a date is a different question: a tile 60 % cloudy can leave a small AOI
untouched, and a tile 2 % cloudy can put its one cloud right on it. The SCL band answers the
AOI-level question pixel by pixel:

====  ==========================  ===========================
code  SCL class                   masked by default
====  ==========================  ===========================
0     no data                     optional (``nodata=True``)
1     saturated or defective      optional (``saturated=True``)
2     dark area pixels            no
3     cloud shadows               **yes**
4     vegetation                  no
5     not vegetated               no
6     water                       no
7     unclassified                no
8     cloud, medium probability   **yes**
9     cloud, high probability     **yes**
10    thin cirrus                 **yes**
11    snow or ice                 optional (``snow=True``)
====  ==========================  ===========================

The stack resamples the 20 m SCL onto the 10 m grid of the other bands (nearest neighbour),
so the mask lines up pixel for pixel. Everything here stays lazy except :func:`filter_clear`,
which must read the SCL over the AOI to decide which dates to keep.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from .clip import aoi_mask, dataset_aoi, grid_of
from .errors import AOIError, StackError
from .stack import AOI_ATTR

#: SCL class code -> name (Sentinel-2 L2A product specification).
SCL_CLASSES: dict[int, str] = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
#: Classes masked by default: cloud shadows, medium/high-probability cloud, thin cirrus.
DEFAULT_CLOUD_CLASSES: tuple[int, ...] = (3, 8, 9, 10)
SCL_NODATA = 0
SCL_SATURATED = 1
SCL_SNOW = 11

#: Attribute recording which SCL classes a dataset was masked with.
MASKED_ATTR = "s2intake_masked_scl_classes"


def cloud_classes(classes: Iterable[int] = DEFAULT_CLOUD_CLASSES, *, snow: bool = False,
                  saturated: bool = False, nodata: bool = False) -> tuple[int, ...]:
    """The sorted SCL codes to treat as "not clear".

    Parameters
    ----------
    classes:
        Base set of codes; default :data:`DEFAULT_CLOUD_CLASSES` (3, 8, 9, 10).
    snow, saturated, nodata:
        Also count snow/ice (11), saturated or defective (1) and SCL no-data (0) pixels.

    Raises
    ------
    StackError
        If a code is not an SCL class (0..11).
    """
    codes = set()
    for code in classes:
        try:
            value = int(code)
        except (TypeError, ValueError):
            raise StackError(f"SCL class {code!r} is not an integer code") from None
        if value not in SCL_CLASSES or value != code:
            raise StackError(f"SCL class {code!r} does not exist; SCL codes are 0..11: "
                             + ", ".join(f"{k} {v}" for k, v in SCL_CLASSES.items()))
        codes.add(value)
    if snow:
        codes.add(SCL_SNOW)
    if saturated:
        codes.add(SCL_SATURATED)
    if nodata:
        codes.add(SCL_NODATA)
    return tuple(sorted(codes))


def _scl(ds: xr.Dataset | xr.DataArray, scl: str | xr.DataArray) -> xr.DataArray:
    if isinstance(scl, xr.DataArray):
        return scl
    if isinstance(ds, xr.Dataset) and scl in ds.data_vars:
        return ds[scl]
    if isinstance(ds, xr.DataArray) and ds.name == scl:
        return ds
    have = ", ".join(map(str, ds.data_vars)) if isinstance(ds, xr.Dataset) else str(ds.name)
    raise StackError(f"cloud masking needs the SCL band {scl!r} but the data has only {have}; "
                     "stack it too, e.g. stack(found, ['red', 'green', 'blue', 'scl'])")


def cloud_mask(ds: xr.Dataset | xr.DataArray, classes: Iterable[int] = DEFAULT_CLOUD_CLASSES,
               *, snow: bool = False, saturated: bool = False, nodata: bool = False,
               scl: str | xr.DataArray = "scl") -> xr.DataArray:
    """Lazy boolean ``(time, y, x)`` array, True where the SCL says "not clear".

    Parameters are those of :func:`mask_clouds`.
    """
    codes = cloud_classes(classes, snow=snow, saturated=saturated, nodata=nodata)
    layer = _scl(ds, scl)
    return layer.isin(list(codes)).rename("cloud")


def mask_clouds(ds: xr.Dataset, classes: Iterable[int] = DEFAULT_CLOUD_CLASSES, *,
                snow: bool = False, saturated: bool = False, nodata: bool = False,
                scl: str | xr.DataArray = "scl") -> xr.Dataset:
    """Set pixels the SCL flags as cloud (or shadow, cirrus...) to nodata, lazily.

    Parameters
    ----------
    ds:
        A stack from :func:`s2intake.stack` that includes the ``scl`` band.
    classes:
        SCL codes to mask; default :data:`DEFAULT_CLOUD_CLASSES`: 3 cloud shadows, 8 cloud
        medium probability, 9 cloud high probability, 10 thin cirrus.
    snow:
        Also mask snow/ice (11).
    saturated:
        Also mask saturated or defective pixels (1).
    nodata:
        Also mask pixels without a scene classification (0). Off by default: where the SCL
        has no data the other bands normally have none either.
    scl:
        Name of the SCL variable, or an SCL DataArray on the same grid.

    Returns
    -------
    xarray.Dataset
        Same variables, dtypes, chunks and attrs; masked pixels of every band hold the band's
        nodata (0 for uint16 DNs, NaN for float reflectance). The SCL band itself is kept
        unchanged so the reason a pixel was masked stays visible. ``attrs`` record the codes
        under ``s2intake_masked_scl_classes``.
    """
    layer = _scl(ds, scl)
    codes = cloud_classes(classes, snow=snow, saturated=saturated, nodata=nodata)
    flagged = layer.isin(list(codes))
    scl_name = scl if isinstance(scl, str) else layer.name

    def apply(var: xr.DataArray) -> xr.DataArray:
        if var.name == scl_name or "x" not in var.dims or "y" not in var.dims:
            return var
        if "time" in flagged.dims and "time" not in var.dims:
            return var
        fill = np.nan if np.issubdtype(var.dtype, np.floating) else 0
        out = var.where(~flagged, other=np.array(fill, dtype=var.dtype))
        out.attrs = dict(var.attrs)
        return out

    result = ds.map(apply, keep_attrs=True)
    result.attrs[MASKED_ATTR] = list(codes)
    return result


def _crop(obj: xr.Dataset | xr.DataArray, geom: Any) -> xr.Dataset | xr.DataArray:
    """Cut x/y down to the pixels that can touch ``geom`` (bounds in the data's CRS)."""
    minx, miny, maxx, maxy = geom.bounds
    xs, ys = obj["x"].values, obj["y"].values
    res = abs(float(xs[1] - xs[0])) if len(xs) > 1 else float(obj.attrs.get("resolution", 10))
    keep_x = np.flatnonzero((xs >= minx - res) & (xs <= maxx + res))
    keep_y = np.flatnonzero((ys >= miny - res) & (ys <= maxy + res))
    if not len(keep_x) or not len(keep_y):
        raise AOIError("the AOI does not overlap this dataset")
    return obj.isel(x=slice(keep_x[0], keep_x[-1] + 1), y=slice(keep_y[0], keep_y[-1] + 1))


def as_dask(obj: xr.DataArray) -> xr.DataArray:
    """``obj`` itself when Dask-backed, else one Dask chunk of it (clip's masks need chunks)."""
    return obj if obj.chunks is not None else obj.chunk()


def _area_mask(layer: xr.DataArray, area: Any) -> tuple[xr.DataArray, xr.DataArray | None]:
    """The array cropped to the AOI's window, and the lazy inside-AOI mask (None: everywhere)."""
    if area is None:
        return layer, None
    crs, _ = grid_of(layer)
    layer = as_dask(_crop(layer, area.to_crs(crs)))
    return layer, aoi_mask(layer, area)


def clear_fraction(ds: xr.Dataset | xr.DataArray, aoi: Any = None,
                   classes: Iterable[int] = DEFAULT_CLOUD_CLASSES, *, snow: bool = False,
                   saturated: bool = False, scl: str | xr.DataArray = "scl") -> xr.DataArray:
    """Fraction of the AOI's pixels that are valid and clear, per date (lazy).

    A pixel counts as clear when its SCL class is neither no data (0) nor one of ``classes``.
    The denominator is every pixel inside the AOI, so a date whose swath covers only half the
    AOI scores at most 0.5. Only the SCL chunks that intersect the AOI's window are read.

    Parameters
    ----------
    ds:
        A stack with the ``scl`` band (or the SCL DataArray itself).
    aoi:
        Area to score; default the AOI that travelled with the stack, or the whole grid if
        none did.
    classes, snow, saturated:
        What counts as not clear, as in :func:`mask_clouds`.
    scl:
        Name of the SCL variable or the SCL DataArray.

    Returns
    -------
    xarray.DataArray
        float64 in ``[0, 1]``, dim ``time`` (with the stack's per-date coordinates such as
        ``id`` and ``eo:cloud_cover``), named ``clear_fraction``. Lazy: call ``.compute()``.
    """
    layer = _scl(ds, scl)
    if "crs" not in layer.attrs and "crs" in getattr(ds, "attrs", {}):
        layer = layer.assign_attrs(crs=ds.attrs["crs"])  # the grid's CRS lives on the Dataset
    area = _optional_aoi(ds, layer, aoi)
    codes = cloud_classes(classes, snow=snow, saturated=saturated, nodata=True)
    cropped, inside = _area_mask(layer, area)
    clear = ~cropped.isin(list(codes))
    if inside is None:
        total = cropped.sizes["y"] * cropped.sizes["x"]
        fraction = clear.sum(("y", "x")) / total
    else:
        total = inside.sum()
        fraction = (clear & inside).sum(("y", "x")) / total.where(total > 0)
    fraction = fraction.rename("clear_fraction")
    fraction.attrs = {"long_name": "fraction of AOI pixels with valid, clear SCL",
                      "scl_classes_not_clear": list(codes)}
    return fraction


def _optional_aoi(ds: Any, layer: xr.DataArray, aoi: Any) -> Any:
    if aoi is not None:
        return dataset_aoi(layer, aoi)
    for obj in (ds, layer):
        if getattr(obj, "attrs", {}).get(AOI_ATTR):
            return dataset_aoi(obj)
    return None


def filter_clear(ds: xr.Dataset, min_clear: float = 0.8, aoi: Any = None,
                 classes: Iterable[int] = DEFAULT_CLOUD_CLASSES, *, snow: bool = False,
                 saturated: bool = False, scl: str | xr.DataArray = "scl") -> xr.Dataset:
    """Keep only the dates on which at least ``min_clear`` of the AOI is valid and clear.

    This computes :func:`clear_fraction` (a read of the SCL over the AOI only); the dataset
    returned stays lazy for every band. The fractions of the kept dates are attached as the
    ``clear_fraction`` coordinate.

    Parameters
    ----------
    ds:
        A stack with the ``scl`` band.
    min_clear:
        Smallest clear fraction (0..1) to keep a date.
    aoi, classes, snow, saturated, scl:
        As in :func:`clear_fraction`.

    Returns
    -------
    xarray.Dataset
        Possibly with no time step left (check ``sizes["time"]``).
    """
    if not 0 <= float(min_clear) <= 1:
        raise StackError(f"min_clear is a fraction between 0 and 1, got {min_clear}")
    fraction = clear_fraction(ds, aoi, classes, snow=snow, saturated=saturated,
                              scl=scl).compute()
    values = fraction.fillna(0).values
    keep = np.flatnonzero(values >= float(min_clear))
    out = ds.isel(time=keep)
    return out.assign_coords(clear_fraction=("time", values[keep]))


def cloud_report(ds: xr.Dataset, *, max_cloud: float = 10, min_clear: float = 0.8,
                 aoi: Any = None, classes: Iterable[int] = DEFAULT_CLOUD_CLASSES,
                 snow: bool = False) -> pd.DataFrame:
    """Tile-level versus AOI-level cloud screening, one row per date.

    Parameters
    ----------
    ds:
        A stack with the ``scl`` band (and the ``eo:cloud_cover`` coordinate every stack has).
    max_cloud:
        Tile-level threshold: keep a date when ``eo:cloud_cover <= max_cloud`` (percent), as
        ``search(max_cloud=...)`` does.
    min_clear:
        AOI-level threshold: keep a date when its clear fraction is ``>= min_clear``.
    aoi, classes, snow:
        As in :func:`clear_fraction`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``time``; columns ``id``, ``tile_cloud_cover`` (percent),
        ``aoi_valid_fraction`` (SCL has data), ``aoi_clear_fraction``, ``keep_by_tile``,
        ``keep_by_aoi`` and ``verdict``: ``"agree"``, ``"tile rejects a clear AOI"``,
        ``"tile keeps a cloudy AOI"`` or ``"tile keeps a partly empty AOI"`` (the swath
        misses part of the AOI).
    """
    fraction = clear_fraction(ds, aoi, classes, snow=snow)
    valid = clear_fraction(ds, aoi, ())
    fraction, valid = dask.compute(fraction, valid)
    cover = ds["eo:cloud_cover"].values if "eo:cloud_cover" in ds.coords \
        else np.full(ds.sizes["time"], np.nan)
    ids = ds["id"].values if "id" in ds.coords else [""] * ds.sizes["time"]
    frame = pd.DataFrame({
        "id": [str(i) for i in ids],
        "tile_cloud_cover": np.asarray(cover, dtype=float),
        "aoi_valid_fraction": valid.values.astype(float),
        "aoi_clear_fraction": fraction.values.astype(float),
    }, index=pd.DatetimeIndex(ds["time"].values, name="time"))
    frame["keep_by_tile"] = frame["tile_cloud_cover"] <= float(max_cloud)
    frame["keep_by_aoi"] = frame["aoi_clear_fraction"].fillna(0) >= float(min_clear)
    empty = frame["aoi_valid_fraction"].fillna(0) < float(min_clear)
    frame["verdict"] = np.select(
        [frame["keep_by_tile"] == frame["keep_by_aoi"], frame["keep_by_aoi"], empty],
        ["agree", "tile rejects a clear AOI", "tile keeps a partly empty AOI"],
        "tile keeps a cloudy AOI")
    return frame
