"""Burn severity: NBR, cloud-free composites, dNBR, USGS severity classes, areas and pictures.

The Normalized Burn Ratio contrasts near infrared (healthy vegetation reflects it) with
short-wave infrared (bare soil and char reflect it)::

    NBR  = (nir - swir22) / (nir + swir22)            Sentinel-2 B08 and B12
    dNBR = median NBR before the fire - median NBR after it

Severity classes follow the USGS FireMon table (Key & Benson 2006) as republished by
UN-SPIDER's burn-severity recommended practice, in unscaled dNBR units (USGS tables often
multiply by 1000). Each class includes its lower bound:

=========================  ================
class                      dNBR
=========================  ================
enhanced regrowth, high    < -0.25
enhanced regrowth, low     -0.25 .. -0.1
unburned                   -0.1 .. 0.1
low severity               0.1 .. 0.27
moderate-low severity      0.27 .. 0.44
moderate-high severity     0.44 .. 0.66
high severity              >= 0.66
=========================  ================

Values outside UN-SPIDER's plausible range (-0.5 .. 1.3) stay in the end classes.
Everything is lazy until a table, a PNG or a GIF is asked for.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import dask
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image, ImageDraw
from pyproj import CRS

from .clip import clip, grid_of
from .errors import RenderError, StackError
from .masking import (
    DEFAULT_CLOUD_CLASSES,
    _area_mask,
    _optional_aoi,
    as_dask,
    clear_fraction,
    filter_clear,
    mask_clouds,
)
from .render import _TRANSPARENT, _font, encode_frame, to_rgb, write_atomic
from .stack import AOI_ATTR


class SeverityClass(NamedTuple):
    """One USGS burn-severity class: ``lower <= dNBR < upper``."""

    code: int
    key: str
    label: str
    lower: float
    upper: float
    color: str


#: USGS / UN-SPIDER dNBR burn-severity classes, codes 1..7 (0 means no data).
SEVERITY_CLASSES: tuple[SeverityClass, ...] = (
    SeverityClass(1, "enhanced_regrowth_high", "Enhanced regrowth, high", -math.inf, -0.25,
                  "#7a8737"),
    SeverityClass(2, "enhanced_regrowth_low", "Enhanced regrowth, low", -0.25, -0.1, "#acbe4d"),
    SeverityClass(3, "unburned", "Unburned", -0.1, 0.1, "#0ae042"),
    SeverityClass(4, "low", "Low severity", 0.1, 0.27, "#fff70b"),
    SeverityClass(5, "moderate_low", "Moderate-low severity", 0.27, 0.44, "#ffaf38"),
    SeverityClass(6, "moderate_high", "Moderate-high severity", 0.44, 0.66, "#ff641b"),
    SeverityClass(7, "high", "High severity", 0.66, math.inf, "#a41fd6"),
)
#: Classes from this one up count as burned.
BURNED_FROM = "low"
NO_DATA_CODE = 0
LEGEND_TITLE = "dNBR burn severity (USGS)"
_EDGES = np.array([c.lower for c in SEVERITY_CLASSES[1:]], dtype=np.float32)


def _copy_attrs(src: xr.Dataset | xr.DataArray) -> dict[str, Any]:
    keep = ("crs", "transform", "resolution", "collection", "profile", "harmonized", AOI_ATTR)
    return {k: src.attrs[k] for k in keep if k in src.attrs}


def _band(ds: xr.Dataset, name: str, role: str) -> xr.DataArray:
    if name not in ds.data_vars:
        raise StackError(f"{role} needs the {name!r} band but the dataset has only "
                         f"{', '.join(map(str, ds.data_vars))}; stack it, e.g. "
                         "stack(found, ['nir', 'swir22', 'scl'])")
    return ds[name]


def _as_float(var: xr.DataArray) -> xr.DataArray:
    """float32 with NaN for nodata (0 for integer DNs)."""
    if np.issubdtype(var.dtype, np.floating):
        return var.astype(np.float32)
    return var.astype(np.float32).where(var != 0)


def nbr(ds: xr.Dataset, *, nir: str = "nir", swir: str = "swir22") -> xr.DataArray:
    """Normalized Burn Ratio ``(nir - swir22) / (nir + swir22)``, lazily.

    Parameters
    ----------
    ds:
        A stack with the ``nir`` (B08) and ``swir22`` (B12) bands, as DNs or reflectance.
        Use the default ``harmonize=True`` of :func:`s2intake.stack` so the +1000 DN offset of
        processing baseline 04.00 does not bias the ratio.
    nir, swir:
        Band variable names.

    Returns
    -------
    xarray.DataArray
        float32, same dims as the bands, NaN where either band has no data (0 or NaN, which
        includes pixels set to nodata by :func:`~s2intake.masking.mask_clouds`) or both are 0.
    """
    n = _as_float(_band(ds, nir, "NBR"))
    s = _as_float(_band(ds, swir, "NBR"))
    total = n + s
    out = ((n - s) / total.where(total != 0)).astype(np.float32)
    out.attrs = {**_copy_attrs(ds), "long_name": "Normalized Burn Ratio (nir - swir22) / "
                 "(nir + swir22)"}
    return out.rename("nbr")


def _time_slice(time_range: Any) -> slice:
    """``(start, end)`` or ``"start/end"`` -> a label slice; a day-only end covers its day."""
    if isinstance(time_range, slice):
        return time_range
    if isinstance(time_range, str):
        parts = time_range.split("/")
        if len(parts) != 2:
            raise StackError(f"time range {time_range!r}: expected 'start/end'")
    elif isinstance(time_range, Sequence) and len(time_range) == 2:
        parts = list(time_range)
    else:
        raise StackError(f"time range {time_range!r}: give (start, end) or 'start/end'")
    start, end = (_label(p) for p in parts)
    return slice(start, end)


def _label(value: Any) -> Any:
    """A slice bound: None for open, ``"YYYY-MM-DD"`` for a whole day (xarray then takes
    the whole day), else the value itself."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "..")):
        return None
    if isinstance(value, str):
        return value.strip()
    stamp = pd.Timestamp(value)
    return stamp.date().isoformat() if stamp == stamp.normalize() else stamp


def _period(ds: xr.Dataset, time_range: Any, min_clear: float | None, aoi: Any,
            mask: bool | None, classes: Sequence[int], what: str) -> xr.Dataset:
    """The dates of one period, screened per AOI and cloud-masked."""
    window = _time_slice(time_range)
    sub = ds.sel(time=window)
    if sub.sizes["time"] == 0:
        dates = ", ".join(str(t)[:10] for t in ds["time"].values)
        raise StackError(f"{what}: no date between {window.start} and {window.stop}; the "
                         f"dataset has {dates or 'no dates'}")
    has_scl = "scl" in ds.data_vars
    if min_clear and has_scl:  # without an SCL band there is nothing to screen with
        screened = filter_clear(sub, min_clear, aoi, classes)
        if screened.sizes["time"] == 0:
            fractions = _screened_fractions(sub, aoi, classes)
            raise StackError(f"{what}: no date between {window.start} and {window.stop} "
                             f"is at least {min_clear:.0%} clear over the AOI ({fractions}); "
                             "lower min_clear or widen the range")
        sub = screened
    if mask if mask is not None else has_scl:
        sub = mask_clouds(sub, classes)  # raises, naming the band, when scl is missing
    return sub


def _screened_fractions(sub: xr.Dataset, aoi: Any, classes: Sequence[int]) -> str:
    """``"2020-12-12 0.04, ..."``: each date's clear fraction, for error messages."""
    fractions = clear_fraction(sub, aoi, classes).compute()
    return ", ".join(f"{str(t)[:10]} {f:.2f}" for t, f in
                     zip(fractions["time"].values, fractions.values, strict=True))


def _nanmedian_last(block: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN; NaN (and no warning) where all are NaN."""
    out = np.full(block.shape[:-1], np.nan, dtype=np.float32)
    valid = ~np.isnan(block).all(axis=-1)
    if valid.any():
        out[valid] = np.nanmedian(block[valid], axis=-1)
    return out


def _median(var: xr.DataArray) -> xr.DataArray:
    var = var.chunk({"time": -1}) if var.chunks else var
    return xr.apply_ufunc(_nanmedian_last, var, input_core_dims=[["time"]],
                          dask="parallelized", output_dtypes=[np.float32])


def _dates(sub: xr.Dataset) -> list[str]:
    return [str(t)[:10] for t in sub["time"].values]


def composite(ds: xr.Dataset, time_range: Any, min_clear: float | None = 0.5, *,
              aoi: Any = None, bands: Sequence[str] | None = None, mask: bool | None = None,
              classes: Sequence[int] = DEFAULT_CLOUD_CLASSES) -> xr.Dataset:
    """Cloud-free per-pixel median of the dates in ``time_range``.

    Dates less than ``min_clear`` clear over the AOI are dropped first
    (:func:`~s2intake.masking.filter_clear`), then cloud, shadow and cirrus pixels of the
    rest are masked (:func:`~s2intake.masking.mask_clouds`), then each pixel takes the median
    of its remaining valid values.

    Parameters
    ----------
    ds:
        A stack; with its ``scl`` band for the screening and masking.
    time_range:
        ``(start, end)`` (dates are inclusive days) or ``"start/end"``.
    min_clear:
        Smallest AOI clear fraction of a date to use it (needs the ``scl`` band; without it
        no date is screened); ``None`` or 0 uses every date.
    aoi:
        Area for the clear fraction; default the AOI that travelled with the stack.
    bands:
        Bands to composite; default every band but ``scl``.
    mask:
        Mask with the SCL; default: when the dataset has an ``scl`` band.
    classes:
        SCL codes masked (see :mod:`s2intake.masking`).

    Returns
    -------
    xarray.Dataset
        Dims ``(y, x)``, same dtypes as the input (uint16 DNs with 0 where no clear value
        remained, or float with NaN). ``attrs["s2intake_composite_dates"]`` lists the dates
        used.
    """
    sub = _period(ds, time_range, min_clear, aoi, mask, classes, "composite")
    return _composite_of(sub, ds, bands)


def _composite_of(sub: xr.Dataset, ds: xr.Dataset, bands: Sequence[str] | None) -> xr.Dataset:
    """Median composite of an already screened and masked period."""
    names = list(bands) if bands else [v for v in sub.data_vars if v != "scl"]
    out = {}
    for name in names:
        var = _band(sub, name, "composite")
        median = _median(_as_float(var))
        if not np.issubdtype(var.dtype, np.floating):
            median = median.round().fillna(0).astype(var.dtype)
        median.attrs = dict(var.attrs)
        out[name] = median
    result = xr.Dataset(out, attrs={**_copy_attrs(ds),
                                    "s2intake_composite_dates": _dates(sub)})
    for coord in ("spatial_ref",):
        if coord in ds.coords:
            result = result.assign_coords({coord: ds.coords[coord]})
    return result


def nbr_median(ds: xr.Dataset, time_range: Any, min_clear: float | None = 0.5, *,
               aoi: Any = None, mask: bool | None = None,
               classes: Sequence[int] = DEFAULT_CLOUD_CLASSES) -> xr.DataArray:
    """Per-pixel median NBR of the cloud-masked, AOI-screened dates of one period (lazy)."""
    sub = _period(ds, time_range, min_clear, aoi, mask, classes, "NBR median")
    return _nbr_median_of(sub, ds)


def _nbr_median_of(sub: xr.Dataset, ds: xr.Dataset) -> xr.DataArray:
    out = _median(nbr(sub))
    out.attrs = {**_copy_attrs(ds), "s2intake_dates": _dates(sub)}
    return out.rename("nbr")


def dnbr(ds: xr.Dataset, before: Any, after: Any, *, min_clear: float | None = 0.5,
         aoi: Any = None, mask: bool | None = None,
         classes: Sequence[int] = DEFAULT_CLOUD_CLASSES) -> xr.DataArray:
    """Differenced NBR: median NBR before the fire minus median NBR after it.

    Parameters
    ----------
    ds:
        A stack with ``nir``, ``swir22`` and (for cloud masking) ``scl``.
    before, after:
        ``(start, end)`` date ranges (inclusive days) or ``"start/end"`` strings.
    min_clear:
        Dates less clear than this over the AOI (by the ``scl`` band, when stacked) are left
        out of the medians; ``None`` or 0 keeps every date.
    aoi:
        Area for the clear fraction; default the stack's AOI.
    mask:
        Mask SCL cloud classes first; default when ``scl`` is present.
    classes:
        SCL codes masked.

    Returns
    -------
    xarray.DataArray
        float32 ``(y, x)`` named ``dnbr``, lazy; positive where vegetation burned, NaN where
        either period had no clear value. ``attrs`` hold the dates used in each period
        (``before_dates``, ``after_dates``) and the grid/AOI of the stack.
    """
    pre = _period(ds, before, min_clear, aoi, mask, classes, "dNBR 'before'")
    post = _period(ds, after, min_clear, aoi, mask, classes, "dNBR 'after'")
    return _dnbr_of(pre, post, ds)


def _dnbr_of(pre_sub: xr.Dataset, post_sub: xr.Dataset, ds: xr.Dataset) -> xr.DataArray:
    pre = _nbr_median_of(pre_sub, ds)
    post = _nbr_median_of(post_sub, ds)
    out = (pre - post).astype(np.float32).rename("dnbr")
    out.attrs = {**_copy_attrs(ds), "long_name": "differenced Normalized Burn Ratio",
                 "before_dates": pre.attrs["s2intake_dates"],
                 "after_dates": post.attrs["s2intake_dates"]}
    if "spatial_ref" in ds.coords:
        out = out.assign_coords(spatial_ref=ds.coords["spatial_ref"])
    return out


def _classify_block(values: np.ndarray) -> np.ndarray:
    codes = (np.digitize(values, _EDGES) + 1).astype(np.uint8)
    codes[np.isnan(values)] = NO_DATA_CODE
    return codes


def classify(dnbr_array: xr.DataArray) -> xr.DataArray:
    """USGS severity class codes (1..7, 0 for no data) of a dNBR array, lazily (uint8)."""
    out = xr.apply_ufunc(_classify_block, dnbr_array.astype(np.float32),
                         dask="parallelized", output_dtypes=[np.uint8])
    out.attrs = {**_copy_attrs(dnbr_array),
                 "flag_values": [c.code for c in SEVERITY_CLASSES],
                 "flag_meanings": " ".join(c.key for c in SEVERITY_CLASSES)}
    return out.rename("severity")


def pixel_area_m2(obj: xr.Dataset | xr.DataArray) -> float:
    """Area of one pixel in square metres, from the grid (projected CRS required)."""
    crs_text, transform = grid_of(obj)
    crs = CRS.from_user_input(crs_text)
    if crs.is_geographic:
        raise StackError(f"pixel areas need a projected CRS, the data is in {crs.name}")
    factor = crs.axis_info[0].unit_conversion_factor or 1.0
    return abs(transform.a * transform.e - transform.b * transform.d) * factor * factor


def severity_table(dnbr_array: xr.DataArray, aoi: Any = None) -> pd.DataFrame:
    """Area of each burn-severity class inside the AOI, in hectares.

    Parameters
    ----------
    dnbr_array:
        From :func:`dnbr`.
    aoi:
        Area to count; default the AOI that travelled with the data, else the whole grid.

    Returns
    -------
    pandas.DataFrame
        One row per class (index: class key, in severity order) plus ``no_data`` (AOI pixels
        without a dNBR value); columns ``label``, ``dnbr_min``, ``dnbr_max``, ``pixels``,
        ``area_ha`` and ``percent`` (of the AOI area with data). ``attrs`` carry
        ``pixel_area_ha``, ``aoi_area_ha`` and ``burned_ha`` (classes low severity and up).
    """
    area = _optional_aoi(dnbr_array, dnbr_array, aoi)
    cropped, inside = _area_mask(dnbr_array, area)
    codes = classify(cropped)
    counts = _bincount(codes.data, None if inside is None else inside.data)
    pixel_ha = pixel_area_m2(dnbr_array) / 10_000
    valid = int(counts[1:].sum())
    rows = []
    for cls in SEVERITY_CLASSES:
        pixels = int(counts[cls.code])
        rows.append({"class": cls.key, "label": cls.label, "dnbr_min": cls.lower,
                     "dnbr_max": cls.upper, "pixels": pixels, "area_ha": pixels * pixel_ha,
                     "percent": 100.0 * pixels / valid if valid else np.nan})
    rows.append({"class": "no_data", "label": "No data", "dnbr_min": np.nan,
                 "dnbr_max": np.nan, "pixels": int(counts[0]),
                 "area_ha": int(counts[0]) * pixel_ha, "percent": np.nan})
    table = pd.DataFrame(rows).set_index("class")
    table.attrs["pixel_area_ha"] = pixel_ha
    table.attrs["aoi_area_ha"] = float(counts.sum()) * pixel_ha
    table.attrs["burned_ha"] = burned_area(table)
    return table


def _bincount(codes: Any, inside: Any = None) -> np.ndarray:
    if inside is not None:
        codes, inside = dask.compute(codes, inside)
        values = np.asarray(codes)[np.asarray(inside)]
    else:
        (codes,) = dask.compute(codes)
        values = np.asarray(codes).ravel()
    return np.bincount(values, minlength=len(SEVERITY_CLASSES) + 1)


def burned_area(table_or_dnbr: pd.DataFrame | xr.DataArray, aoi: Any = None,
                from_class: str = BURNED_FROM) -> float:
    """Hectares in ``from_class`` (default low severity) and the more severe classes."""
    table = table_or_dnbr if isinstance(table_or_dnbr, pd.DataFrame) \
        else severity_table(table_or_dnbr, aoi)
    keys = [c.key for c in SEVERITY_CLASSES]
    if from_class not in keys:
        raise StackError(f"unknown severity class {from_class!r}; classes: {', '.join(keys)}")
    burned = keys[keys.index(from_class):]
    return float(table.loc[burned, "area_ha"].sum())


# ---------------------------------------------------------------------------------- pictures


def _hex(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


_PALETTE = np.zeros((len(SEVERITY_CLASSES) + 1, 4), dtype=np.uint8)
for _cls in SEVERITY_CLASSES:
    _PALETTE[_cls.code] = (*_hex(_cls.color), 255)


def severity_rgba(dnbr_array: xr.DataArray, aoi: Any = None) -> np.ndarray:
    """``(y, x, 4)`` uint8 picture of the classes; transparent outside the AOI / no data."""
    data = dnbr_array
    area = _optional_aoi(dnbr_array, dnbr_array, aoi)
    if area is not None:
        data = clip(as_dask(dnbr_array), area)
    codes = np.asarray(classify(data).values)
    if codes.ndim != 2:
        raise RenderError(f"a severity map needs a 2-D (y, x) dNBR, got dims {data.dims}")
    return _PALETTE[codes]


def _legend(entries: list[tuple[str, tuple[int, int, int]]], height: int, font_size: int,
            title: str | None = None, bottom: bool = False) -> Image.Image:
    """A white legend panel (colour box + text per entry), at least ``height`` tall."""
    font = _font(font_size)
    pad = max(4, font_size // 2)
    box = font_size
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    texts = [text for text, _ in entries]
    width = max(probe.textbbox((0, 0), text, font=font)[2] for text in texts) + box + pad
    if title:
        width = max(width, probe.textbbox((0, 0), title, font=font)[2])
    width += 2 * pad
    rows = (len(entries) + (1 if title else 0)) * (box + pad) + pad
    panel = Image.new("RGBA", (width, max(height, rows)), (255, 255, 255, 255))
    draw = ImageDraw.Draw(panel)
    y = panel.height - rows + pad if bottom else pad
    if title:
        draw.text((pad, y), title, font=font, fill=(0, 0, 0, 255))
        y += box + pad
    for text, color in entries:
        draw.rectangle((pad, y, pad + box, y + box), fill=(*color, 255), outline=(0, 0, 0, 255))
        draw.text((2 * pad + box, y), text, font=font, fill=(0, 0, 0, 255))
        y += box + pad
    return panel


def _legend_entries(table: pd.DataFrame | None) -> list[tuple[str, tuple[int, int, int]]]:
    entries = []
    for cls in reversed(SEVERITY_CLASSES):
        text = cls.label
        if table is not None:
            text += f"  {table.loc[cls.key, 'area_ha']:,.0f} ha"
        entries.append((text, _hex(cls.color)))
    return entries


def _upscale(image: Image.Image, min_side: int) -> Image.Image:
    factor = math.ceil(min_side / max(1, min(image.size)))
    if factor <= 1:
        return image
    return image.resize((image.width * factor, image.height * factor),
                        Image.Resampling.NEAREST)


def _with_panel(image: Image.Image, panel: Image.Image | None) -> Image.Image:
    if panel is None:
        return image
    height = max(image.height, panel.height)
    canvas = Image.new("RGBA", (image.width + panel.width, height), (0, 0, 0, 0))
    canvas.paste(image, (0, 0))
    canvas.paste(panel, (image.width, 0))
    return canvas


def severity_png(dnbr_array: xr.DataArray, path: str | os.PathLike | None = None, *,
                 aoi: Any = None, legend: bool = True, areas: bool = True,
                 min_size: int = 256) -> Path | bytes:
    """Write a burn-severity class map as PNG, with a legend (and each class's hectares).

    Parameters
    ----------
    dnbr_array:
        From :func:`dnbr`.
    path:
        Output file (written atomically); ``None`` returns the PNG bytes.
    aoi:
        Area outside which pixels are transparent; default the AOI that travelled with it.
    legend:
        Draw the class legend to the right of the map.
    areas:
        Put each class's area (hectares inside the AOI) in the legend.
    min_size:
        Small maps are enlarged (nearest neighbour, whole factors) to at least this many
        pixels on their short side so the legend text stays readable.

    Returns
    -------
    pathlib.Path or bytes
    """
    dnbr_array = dnbr_array.compute()  # once, for both the map and the areas
    image = _upscale(Image.fromarray(severity_rgba(dnbr_array, aoi), mode="RGBA"), min_size)
    panel = None
    if legend:
        table = severity_table(dnbr_array, aoi) if areas else None
        panel = _legend(_legend_entries(table), image.height,
                        max(11, min(image.height // 18, 20)), title=LEGEND_TITLE)
    canvas = _with_panel(image, panel)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    if path is None:
        return buffer.getvalue()
    return write_atomic(Path(path), buffer.getvalue())


def burn_gif(ds: xr.Dataset, path: str | os.PathLike | None = None, *, before: Any,
             after: Any, min_clear: float | None = 0.5, aoi: Any = None,
             bands: Sequence[str] = ("red", "green", "blue"),
             clamp: tuple[float, float] | None = None, fps: float = 1,
             max_size: int | None = 1024, min_size: int = 256,
             dnbr_array: xr.DataArray | None = None) -> Path | bytes:
    """A three-frame GIF: cloud-free "before" RGB, "after" RGB, then the severity map.

    Parameters
    ----------
    ds:
        A stack with the RGB bands, ``nir``, ``swir22`` and ``scl``.
    path:
        Output GIF (atomic write); ``None`` returns the bytes.
    before, after:
        Date ranges as in :func:`dnbr`.
    min_clear, aoi:
        As in :func:`composite`. Outside the AOI is transparent.
    bands, clamp:
        RGB bands and their display range (default ``(1, 1500)`` DNs, or reflectance).
    fps:
        Frames per second.
    max_size:
        Longest side of a frame.
    min_size:
        Small AOIs are enlarged to at least this short side.
    dnbr_array:
        The dNBR of these periods if already computed (from :func:`dnbr` on ``ds``); by
        default it is computed here, together with the composites.

    Returns
    -------
    pathlib.Path or bytes
    """
    if fps <= 0:
        raise RenderError(f"fps must be positive, got {fps}")
    area = _optional_aoi(ds, ds, aoi)
    data = clip(ds, area) if area is not None else ds
    # each period is screened once; one compute then reads every chunk once
    pre_sub = _period(data, before, min_clear, area, None, DEFAULT_CLOUD_CLASSES, "before")
    post_sub = _period(data, after, min_clear, area, None, DEFAULT_CLOUD_CLASSES, "after")
    pre = _composite_of(pre_sub, data, list(bands))
    post = _composite_of(post_sub, data, list(bands))
    change = _dnbr_of(pre_sub, post_sub, data) if dnbr_array is None else dnbr_array
    rgb_pre, rgb_post, values = dask.compute(
        to_rgb(pre, bands=bands, clamp=clamp).data,
        to_rgb(post, bands=bands, clamp=clamp).data,
        change.data)
    change = change.copy(data=np.asarray(values))  # computed once, classified and counted
    severity = Image.fromarray(severity_rgba(change, area), mode="RGBA")
    areas = severity_table(change, area)
    pictures = [_upscale(Image.fromarray(np.asarray(rgb_pre), mode="RGBA"), min_size),
                _upscale(Image.fromarray(np.asarray(rgb_post), mode="RGBA"), min_size),
                _upscale(severity, min_size)]
    panel = _legend(_legend_entries(areas), pictures[0].height,
                    max(11, min(pictures[0].height // 18, 20)), title=LEGEND_TITLE, bottom=True)
    blank = Image.new("RGBA", panel.size, (0, 0, 0, 0))
    span = lambda dates: f"{dates[0]}..{dates[-1]}" if dates else "?"  # noqa: E731
    captions = [f"before {span(pre.attrs['s2intake_composite_dates'])}",
                f"after {span(post.attrs['s2intake_composite_dates'])}",
                f"dNBR severity, burned {areas.attrs['burned_ha']:,.0f} ha"]
    frames = []
    for index, picture in enumerate(pictures):
        canvas = _with_panel(picture, panel if index == 2 else blank)
        frames.append(encode_frame(np.asarray(canvas), captions[index], max_size))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=round(1000 / fps), loop=0, disposal=2,
                   transparency=_TRANSPARENT, optimize=False)
    payload = buffer.getvalue()
    if path is None:
        return payload
    return write_atomic(Path(path), payload)

