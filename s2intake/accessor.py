"""``ds.s2`` / ``da.s2``: a thin facade over the clip, render and analysis functions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import xarray as xr

from . import clip as _clip
from . import render as _render


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


@xr.register_dataset_accessor("s2")
class S2DatasetAccessor(_S2Accessor):
    """Sentinel-2 helpers on a Dataset from :func:`s2intake.stack`."""

    def to_dataarray(self, bands: Sequence[str] | None = None) -> xr.DataArray:
        """The ``(time, band, y, x)`` view of the band variables (one dtype, promoted)."""
        names = list(bands) if bands else list(self._obj.data_vars)
        return self._obj[names].to_dataarray(dim="band").transpose("time", "band", "y", "x")


@xr.register_dataarray_accessor("s2")
class S2DataArrayAccessor(_S2Accessor):
    """Sentinel-2 helpers on a DataArray (a band variable or a (time, band, y, x) array)."""
