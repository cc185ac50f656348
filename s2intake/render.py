"""Render: byte-scaled RGBA with nodata as transparent, and animated GIFs with date captions.

GIF frames are built on the Dask workers (one task per date: compute the frame's pixels,
downscale, caption, quantise to a 256-colour palette), so only small paletted frames reach
the client and memory stays bounded by a few frames, not the whole stack.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image, ImageDraw, ImageFont

from .errors import RenderError
from .profiles import canonical_band

DEFAULT_CLAMP = (1, 1500)
_TRANSPARENT = 255


def _select_bands(obj: xr.Dataset | xr.DataArray, bands: Sequence[str]) -> xr.DataArray:
    """``(band, time, y, x)`` array of the requested bands from a Dataset or DataArray."""
    wanted = [canonical_band(b) for b in bands]
    if isinstance(obj, xr.Dataset):
        lookup = {canonical_band(v): v for v in obj.data_vars if _is_band(v)}
        missing = [b for b in wanted if b not in lookup]
        if missing:
            raise RenderError(f"dataset has no band {missing[0]!r}; it has "
                              f"{', '.join(map(str, obj.data_vars))}")
        return xr.concat([obj[lookup[b]] for b in wanted], dim="band",
                         coords="minimal", compat="override", join="override")\
            .assign_coords(band=wanted)
    if "band" not in obj.dims:
        raise RenderError("a DataArray needs a 'band' dimension to make RGB")
    lookup = {canonical_band(str(v)): v for v in obj["band"].values if _is_band(str(v))}
    missing = [b for b in wanted if b not in lookup]
    if missing:
        raise RenderError(f"array has no band {missing[0]!r}; it has "
                          f"{', '.join(map(str, obj['band'].values))}")
    return obj.sel(band=[lookup[b] for b in wanted]).assign_coords(band=wanted)\
        .transpose("band", ...)


def _is_band(name: str) -> bool:
    try:
        canonical_band(name)
    except Exception:  # noqa: BLE001 - not a band variable (e.g. a mask)
        return False
    return True


def to_rgb(obj: xr.Dataset | xr.DataArray, bands: Sequence[str] | None = None,
           clamp: tuple[float, float] | None = None) -> xr.DataArray:
    """Byte-scale three bands to RGBA, lazily.

    Parameters
    ----------
    obj:
        A stack (Dataset with band variables, or DataArray with a ``band`` dim).
    bands:
        Red, green and blue band names; default ``("red", "green", "blue")``.
    clamp:
        Values mapped to 0 and 255; default ``(1, 1500)`` for DNs and ``(0.0001, 0.15)``
        for float reflectance.

    Returns
    -------
    xarray.DataArray
        uint8, dims ``(time, y, x, band)`` (or ``(y, x, band)``), band ``r g b a``; alpha is 0
        where any of the three bands has no data (0 or NaN), and those pixels are black.
    """
    bands = tuple(bands or ("red", "green", "blue"))
    if len(bands) != 3:
        raise RenderError(f"to_rgb needs exactly 3 bands, got {list(bands)}")
    data = _select_bands(obj, bands)
    floating = np.issubdtype(data.dtype, np.floating)
    lo, hi = clamp if clamp is not None else ((0.0001, 0.15) if floating else DEFAULT_CLAMP)
    if not hi > lo:
        raise RenderError(f"clamp must be (low, high) with high > low, got {(lo, hi)}")
    valid = data.notnull().all("band") if floating else (data != 0).all("band")
    values = data.astype("float32")
    scaled = ((values.clip(lo, hi) - lo) * np.float32(255.0 / (hi - lo))).round()
    rgb = scaled.fillna(0).astype("uint8").where(valid, np.uint8(0))
    alpha = (valid.astype("uint8") * np.uint8(255)).expand_dims(band=["a"])
    rgba = xr.concat([rgb.assign_coords(band=["r", "g", "b"]), alpha], dim="band",
                     coords="minimal", compat="override")
    order = [d for d in rgba.dims if d != "band"] + ["band"]
    rgba = rgba.transpose(*order).astype("uint8").rename("rgba")
    rgba.attrs = {k: v for k, v in obj.attrs.items() if isinstance(v, str | int | float | tuple)}
    rgba.attrs["clamp"] = (float(lo), float(hi))
    return rgba


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf",
                 "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        with contextlib.suppress(OSError):
            return ImageFont.truetype(name, size)
    return ImageFont.load_default(size=size)


def encode_frame(rgba: np.ndarray, caption: str | None, max_size: int | None) -> Image.Image:
    """One RGBA frame -> a paletted GIF frame (index 255 transparent), captioned."""
    image = Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA")
    if max_size and max(image.size) > max_size:
        ratio = max_size / max(image.size)
        size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        image = image.resize(size, Image.Resampling.BOX)
    alpha = np.asarray(image.getchannel("A")) < 128
    if caption:
        draw = ImageDraw.Draw(image)
        font = _font(max(10, min(image.size) // 16))
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        pad = max(2, (bottom - top) // 4)
        draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad),
                       fill=(0, 0, 0, 255))
        draw.text((pad - left, pad - top), caption, font=font, fill=(255, 255, 255, 255))
        alpha = np.asarray(image.getchannel("A")) < 128
    paletted = image.convert("RGB").quantize(colors=255, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE)
    palette = (paletted.getpalette() or [])[: 255 * 3]
    palette += [0] * (256 * 3 - len(palette))
    indices = np.asarray(paletted).copy()
    indices[alpha] = _TRANSPARENT
    frame = Image.fromarray(indices, mode="P")
    frame.putpalette(palette)
    frame.info["transparency"] = _TRANSPARENT
    return frame


def gif_frames(rgba: xr.DataArray, *, date_format: str | None = "%Y-%m-%d",
               max_size: int | None = 1024) -> list[Any]:
    """Delayed paletted frames, one per time step, ready for :func:`dask.compute`."""
    if "time" not in rgba.dims:
        rgba = rgba.expand_dims("time")
    if rgba.dtype != np.uint8 or rgba.dims[-1] != "band" or rgba.sizes["band"] != 4:
        raise RenderError("gif frames need the uint8 (time, y, x, band=rgba) array from to_rgb")
    times = rgba["time"].values if "time" in rgba.coords else [None] * rgba.sizes["time"]
    frames = []
    for index, stamp in enumerate(times):
        caption = None
        if date_format and stamp is not None:
            caption = pd.Timestamp(stamp).strftime(date_format)
        data = rgba.isel(time=index).data
        frames.append(dask.delayed(encode_frame, pure=True)(data, caption, max_size))
    return frames


def to_gif(obj: xr.Dataset | xr.DataArray, path: str | os.PathLike | None = None, *,
           fps: float = 3, bands: Sequence[str] | None = None,
           clamp: tuple[float, float] | None = None, date_format: str | None = "%Y-%m-%d",
           max_size: int | None = 1024, loop: int = 0,
           progress: Callable[[int, int], None] | None = None) -> bytes | Path:
    """Write an animated GIF of a stack (or of an RGBA array from :func:`to_rgb`).

    Frames are computed in parallel on the current Dask scheduler (a ``distributed.Client``
    when one is active). The file is written atomically: to a temporary file beside it,
    then renamed, so an error never leaves a half-written GIF.

    Parameters
    ----------
    obj:
        A stack (clip it first with :func:`s2intake.clip.clip` for transparent outside
        pixels) or the output of :func:`to_rgb`.
    path:
        Output file; ``None`` returns the GIF's bytes.
    fps:
        Frames per second.
    bands, clamp:
        Passed to :func:`to_rgb` when ``obj`` is not RGBA already.
    date_format:
        ``strftime`` format of the caption on each frame, or ``None`` for no caption.
    max_size:
        Longest side of a frame in pixels; larger frames are downscaled.
    loop:
        GIF loop count (0 = forever).
    progress:
        Called with ``(done, total)`` frames as they are computed.

    Returns
    -------
    bytes or pathlib.Path
    """
    if fps <= 0:
        raise RenderError(f"fps must be positive, got {fps}")
    rgba = obj if _is_rgba(obj) else to_rgb(obj, bands=bands, clamp=clamp)
    if "time" in rgba.dims and rgba.sizes["time"] == 0:
        raise RenderError("no time step to animate (the stack is empty)")
    frames = gif_frames(rgba, date_format=date_format, max_size=max_size)
    images = _compute_frames(frames, progress)
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=loop, disposal=2,
                   transparency=_TRANSPARENT, optimize=False)
    payload = buffer.getvalue()
    if path is None:
        return payload
    return write_atomic(Path(path), payload)


def _is_rgba(obj: Any) -> bool:
    return (isinstance(obj, xr.DataArray) and obj.dtype == np.uint8 and "band" in obj.dims
            and list(map(str, obj["band"].values)) == ["r", "g", "b", "a"])


def _compute_frames(frames: list[Any], progress: Callable[[int, int], None] | None) -> list:
    """Compute the delayed frames on the active scheduler, reporting ``(done, total)``.

    With a ``distributed`` client (the default one, unless ``dask.config`` asks for a local
    scheduler) the frames run on its workers, a few at a time (about one per worker thread),
    gathered as they finish: see :func:`s2intake.cluster.compute_as_completed`.
    """
    from .cluster import active_client, compute_as_completed

    total = len(frames)
    client = active_client()
    if client is not None:
        return compute_as_completed(client, frames, progress)
    results = []
    # batches keep memory bounded to a few frames while both cores stay busy
    batch = max(2, os.cpu_count() or 2)
    for start in range(0, total, batch):
        results.extend(dask.compute(*frames[start:start + batch]))
        if progress:
            progress(len(results), total)
    return results


def write_atomic(path: Path, payload: bytes) -> Path:
    """Write bytes to ``path`` via a temporary file and a rename (never a partial file)."""
    path = Path(path).expanduser()
    if path.parent and not path.parent.exists():
        raise RenderError(f"output folder does not exist: {path.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
