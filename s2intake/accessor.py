"""``ds.s2`` / ``da.s2``: a thin facade over the clip, render and analysis functions."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from . import clip as _clip
from . import render as _render
from .errors import RenderError
from .masking import DEFAULT_CLOUD_CLASSES as _CLOUD_CLASSES


class _S2Accessor:
    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    @property
    def aoi(self):
        """The AOI that travelled with the data (an :class:`~s2intake.aoi.AOI`)."""
        return _clip.dataset_aoi(self._obj)

    def clip_aoi(self, aoi: Any = None, *, all_touched: bool | None = None,
                 crop: bool = True):
        """Clip to the AOI polygon (default: the one from the search). See :func:`clip.clip`."""
        return _clip.clip(self._obj, aoi, all_touched=all_touched, crop=crop)

    def compute(self, **compute_kwargs: Any) -> xr.Dataset | xr.DataArray:
        """Compute into memory, then return the freed chunks' heap to the OS.

        Like ``.compute()``, but the process keeps about the result's size instead of the
        result plus the decoded chunks glibc would hold on to. See :func:`memory.compute`.
        """
        from . import memory

        return memory.compute(self._obj, **compute_kwargs)

    def aoi_mask(self, aoi: Any = None) -> xr.DataArray:
        """Lazy boolean (y, x) mask of the AOI."""
        return _clip.aoi_mask(self._obj, aoi)

    def to_rgb(self, bands: Sequence[str] | None = None,
               clamp: tuple[float, float] | None = (1, 1500)) -> xr.DataArray:
        """uint8 RGBA (alpha 0 where no data). See :func:`render.to_rgb`."""
        return _render.to_rgb(self._obj, bands=bands, clamp=clamp)

    def to_gif(self, path: str | os.PathLike | None = None, *, fps: float = 3,
               bands: Sequence[str] | None = None,
               clamp: tuple[float, float] | None = None, **kwargs: Any):
        """Animated GIF with date captions; bytes when ``path`` is None. See :func:`render.to_gif`."""
        return _render.to_gif(self._obj, path, fps=fps, bands=bands, clamp=clamp, **kwargs)

    def to_png(self, path: str | os.PathLike | None = None, *, time: Any = None,
               bands: Sequence[str] | None = None, clamp: tuple[float, float] | None = None,
               max_size: int | None = None) -> Path | bytes:
        """One date as a true-colour PNG (nodata transparent): the static stand-in for
        :meth:`plot`.

        Parameters
        ----------
        path:
            Output file, written atomically; ``None`` returns the PNG bytes.
        time:
            The date: an index (``0``, ``-1``), or anything :class:`pandas.Timestamp` reads
            (``"2020-09-18"``), matched to the nearest time step within a day. Needed when
            there is more than one time step.
        bands, clamp:
            As in :func:`s2intake.render.to_rgb`.
        max_size:
            Longest side in pixels; larger pictures are downscaled.
        """
        rgba = self._obj if _render._is_rgba(self._obj) else \
            _render.to_rgb(self._obj, bands=bands, clamp=clamp)
        frame = _pick_time(rgba, time)
        image = _image(np.asarray(frame.values), max_size)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        if path is None:
            return buffer.getvalue()
        return _render.write_atomic(Path(path), buffer.getvalue())

    def plot(self, bands: Sequence[str] | None = None,
             clamp: tuple[float, float] | None = None, *, frame_width: int = 600,
             **kwargs: Any) -> Any:
        """Interactive true-colour RGB with a time slider (hvplot, the ``plot`` extra).

        As the Berry Creek blog did with ``hvplot.rgb(..., groupby="time")``. hvplot's RGB
        element keeps three bands, so nodata shows black (:meth:`to_png` keeps it
        transparent). Without hvplot installed this raises :class:`~s2intake.RenderError`
        saying how to install it; :meth:`to_png` is the static alternative.

        Parameters
        ----------
        bands, clamp:
            As in :func:`s2intake.render.to_rgb`.
        frame_width:
            Plot width in screen pixels.
        **kwargs:
            Passed to ``hvplot.rgb``.
        """
        _require_hvplot()
        rgba = self._obj if _render._is_rgba(self._obj) else \
            _render.to_rgb(self._obj, bands=bands, clamp=clamp)
        rgb = rgba.sel(band=["r", "g", "b"])  # hvplot.rgb would drop alpha silently anyway
        options: dict[str, Any] = {"x": "x", "y": "y", "bands": "band",
                                   "frame_width": frame_width, "data_aspect": 1}
        if "time" in rgb.dims:
            options["groupby"] = "time"
        options.update(kwargs)
        return rgb.hvplot.rgb(**options)


def _require_hvplot() -> None:
    try:
        import hvplot.xarray  # noqa: F401
    except ImportError:
        raise RenderError("ds.s2.plot() needs hvplot, an optional extra: pip install "
                          "'s2intake[plot]'; without it, ds.s2.to_png(path, time=...) writes a "
                          "static picture") from None


def _pick_time(rgba: xr.DataArray, time: Any) -> xr.DataArray:
    """The one time step asked for (index or date) of a ``(time, y, x, band)`` array."""
    if "time" not in rgba.dims:
        return rgba
    count = rgba.sizes["time"]
    if count == 0:
        raise RenderError("no time step to draw (the stack is empty)")
    if time is None:
        if count == 1:
            return rgba.isel(time=0)
        raise RenderError(f"this stack has {count} dates; pick one with time= (an index or "
                          "a date such as "
                          f"{pd.Timestamp(rgba['time'].values[0]).date().isoformat()!r})")
    if isinstance(time, int | np.integer):
        if not -count <= int(time) < count:
            raise RenderError(f"time index {time} is out of range for {count} dates")
        return rgba.isel(time=int(time))
    try:
        wanted = pd.Timestamp(time)
    except (TypeError, ValueError):
        raise RenderError(f"cannot read {time!r} as a date") from None
    if wanted.tzinfo is not None:
        wanted = wanted.tz_convert("UTC").tz_localize(None)
    times = pd.DatetimeIndex(rgba["time"].values)
    index = int(np.argmin(np.abs(times - wanted)))
    if abs(times[index] - wanted) > pd.Timedelta(days=1):
        raise RenderError(f"no date within a day of {wanted.date()}; the stack has "
                          + ", ".join(t.date().isoformat() for t in times))
    return rgba.isel(time=index)


def _image(rgba: np.ndarray, max_size: int | None) -> Any:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA")
    if max_size and max(image.size) > max_size:
        ratio = max_size / max(image.size)
        image = image.resize((max(1, round(image.width * ratio)),
                              max(1, round(image.height * ratio))), Image.Resampling.BOX)
    return image


@xr.register_dataset_accessor("s2")
class S2DatasetAccessor(_S2Accessor):
    """Sentinel-2 helpers on a Dataset from :func:`s2intake.stack`."""

    def to_dataarray(self, bands: Sequence[str] | None = None) -> xr.DataArray:
        """The ``(time, band, y, x)`` view of the band variables (one dtype, promoted)."""
        names = list(bands) if bands else list(self._obj.data_vars)
        return self._obj[names].to_dataarray(dim="band").transpose("time", "band", "y", "x")

    # ---------------------------------------------------------- clouds (s2intake.masking)

    def mask_clouds(self, classes: Iterable[int] = _CLOUD_CLASSES, *, snow: bool = False,
                    saturated: bool = False, nodata: bool = False) -> xr.Dataset:
        """Bands set to nodata where the SCL flags cloud, shadow or cirrus (lazy).

        See :func:`s2intake.masking.mask_clouds`.
        """
        from .masking import mask_clouds

        return mask_clouds(self._obj, classes, snow=snow, saturated=saturated, nodata=nodata)

    def clear_fraction(self, aoi: Any = None, classes: Iterable[int] = _CLOUD_CLASSES, *,
                       snow: bool = False, saturated: bool = False) -> xr.DataArray:
        """Per-date fraction of the AOI that is valid and clear (lazy).

        See :func:`s2intake.masking.clear_fraction`.
        """
        from .masking import clear_fraction

        return clear_fraction(self._obj, aoi, classes, snow=snow, saturated=saturated)

    def filter_clear(self, min_clear: float = 0.8, aoi: Any = None,
                     classes: Iterable[int] = _CLOUD_CLASSES, *, snow: bool = False,
                     saturated: bool = False) -> xr.Dataset:
        """Only the dates at least ``min_clear`` clear over the AOI.

        See :func:`s2intake.masking.filter_clear`.
        """
        from .masking import filter_clear

        return filter_clear(self._obj, min_clear, aoi, classes, snow=snow, saturated=saturated)

    def cloud_report(self, *, max_cloud: float = 10, min_clear: float = 0.8,
                     aoi: Any = None) -> pd.DataFrame:
        """Tile-level ``eo:cloud_cover`` versus AOI-level clear fraction, per date.

        See :func:`s2intake.masking.cloud_report`.
        """
        from .masking import cloud_report

        return cloud_report(self._obj, max_cloud=max_cloud, min_clear=min_clear, aoi=aoi)

    # ------------------------------------------------------------- burns (s2intake.burn)

    def nbr(self) -> xr.DataArray:
        """Normalized Burn Ratio, float32, NaN for nodata. See :func:`s2intake.burn.nbr`."""
        from .burn import nbr

        return nbr(self._obj)

    def composite(self, time_range: Any, min_clear: float | None = 0.5, *, aoi: Any = None,
                  bands: Sequence[str] | None = None) -> xr.Dataset:
        """Cloud-free median of a period. See :func:`s2intake.burn.composite`."""
        from .burn import composite

        return composite(self._obj, time_range, min_clear, aoi=aoi, bands=bands)

    def dnbr(self, before: Any, after: Any, *, min_clear: float | None = 0.5,
             aoi: Any = None) -> xr.DataArray:
        """Median NBR before minus median NBR after (lazy). See :func:`s2intake.burn.dnbr`."""
        from .burn import dnbr

        return dnbr(self._obj, before, after, min_clear=min_clear, aoi=aoi)

    def burn_gif(self, path: str | os.PathLike | None = None, *, before: Any, after: Any,
                 **kwargs: Any) -> Path | bytes:
        """Before / after / severity GIF. See :func:`s2intake.burn.burn_gif`."""
        from .burn import burn_gif

        return burn_gif(self._obj, path, before=before, after=after, **kwargs)


@xr.register_dataarray_accessor("s2")
class S2DataArrayAccessor(_S2Accessor):
    """Sentinel-2 helpers on a DataArray (a band variable or a (time, band, y, x) array)."""

    def severity(self) -> xr.DataArray:
        """USGS burn-severity class codes of a dNBR array. See :func:`s2intake.burn.classify`."""
        from .burn import classify

        return classify(self._obj)

    def severity_table(self, aoi: Any = None) -> pd.DataFrame:
        """Hectares per burn-severity class of a dNBR array inside the AOI.

        See :func:`s2intake.burn.severity_table`.
        """
        from .burn import severity_table

        return severity_table(self._obj, aoi)

    def severity_png(self, path: str | os.PathLike | None = None, **kwargs: Any
                     ) -> Path | bytes:
        """Burn-severity map of a dNBR array, with a legend, as PNG.

        See :func:`s2intake.burn.severity_png`.
        """
        from .burn import severity_png

        return severity_png(self._obj, path, **kwargs)
