"""Render: byte-scaled RGBA with nodata as transparent, and animated GIFs with date captions.

Integer bands (uint8/uint16, int8/int16) are byte-scaled through a lookup table in one fused
task per chunk (:func:`_rgba_lut_block`); the table is the generic formula run on every
possible value (:func:`_byte_scale`), so both paths give the same bytes.

GIF frames are built on the Dask workers (one task per date: compute the frame's pixels,
downscale, caption, quantise to a 256-colour palette), so only small paletted frames reach
the client and memory stays bounded by a few frames, not the whole stack.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
import threading
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from PIL import Image, ImageDraw, ImageFont

from .errors import RenderError
from .profiles import canonical_band

DEFAULT_CLAMP = (1, 1500)
_TRANSPARENT = 255
#: Band dtypes scaled through a lookup table: at most 65536 entries, built once per process.
_LUT_DTYPES = frozenset(np.dtype(t).str[1:] for t in ("uint8", "uint16", "int8", "int16"))
_LUT_LOCK = threading.Lock()


def _band_keys(obj: xr.Dataset | xr.DataArray, wanted: Sequence[str]) -> list[Hashable]:
    """Variable names (Dataset) or ``band`` labels (DataArray) of the canonical ``wanted`` bands."""
    if isinstance(obj, xr.Dataset):
        lookup = {canonical_band(v): v for v in obj.data_vars if _is_band(v)}
        missing = [b for b in wanted if b not in lookup]
        if missing:
            raise RenderError(f"dataset has no band {missing[0]!r}; it has "
                              f"{', '.join(map(str, obj.data_vars))}")
        return [lookup[b] for b in wanted]
    if "band" not in obj.dims:
        raise RenderError("a DataArray needs a 'band' dimension to make RGB")
    lookup = {canonical_band(str(v)): v for v in obj["band"].values if _is_band(str(v))}
    missing = [b for b in wanted if b not in lookup]
    if missing:
        raise RenderError(f"array has no band {missing[0]!r}; it has "
                          f"{', '.join(map(str, obj['band'].values))}")
    return [lookup[b] for b in wanted]


def _per_band_coords(obj: xr.DataArray) -> list[Hashable]:
    """Coordinates along ``band`` other than ``band`` itself (e.g. stackstac's ``common_name``).

    They cannot follow the bands into RGBA, so both paths drop them.
    """
    return [c for c in obj.coords if c != "band" and "band" in obj[c].dims]


def _select_bands(obj: xr.Dataset | xr.DataArray, bands: Sequence[str]) -> xr.DataArray:
    """``(band, time, y, x)`` array of the requested bands from a Dataset or DataArray."""
    wanted = [canonical_band(b) for b in bands]
    keys = _band_keys(obj, wanted)
    if isinstance(obj, xr.Dataset):
        return xr.concat([obj[k] for k in keys], dim="band",
                         coords="minimal", compat="override", join="override")\
            .assign_coords(band=wanted)
    return obj.drop_vars(_per_band_coords(obj)).sel(band=list(keys))\
        .assign_coords(band=wanted).transpose("band", ...)


def _is_band(name: str) -> bool:
    try:
        canonical_band(name)
    except Exception:  # noqa: BLE001 - not a band variable (e.g. a mask)
        return False
    return True


def _byte_scale(values: Any, lo: float, hi: float) -> Any:
    """Float32 ``values`` clamped to ``[lo, hi]`` and scaled to 0..255, rounded half to even.

    The one formula of both paths: :func:`to_rgb` runs it on the bands (an xarray object),
    :func:`_lut` on every integer value (a numpy array), so they cannot disagree.
    """
    return ((values.clip(lo, hi) - lo) * np.float32(255.0 / (hi - lo))).round()


# typed: np.float64 bounds make the formula run in float64 (NEP 50), so 1.0 and
# np.float64(1.0) need tables of their own
@functools.lru_cache(maxsize=32, typed=True)
def _lut(lo: float, hi: float, code: str) -> np.ndarray:
    """uint8 lookup table of :func:`_byte_scale` for every value of integer dtype ``code``.

    Parameters
    ----------
    lo, hi:
        The clamp, as given to :func:`to_rgb`.
    code:
        Kind and size of the band dtype, e.g. ``"u2"`` or ``"i2"``.

    Returns
    -------
    numpy.ndarray
        Read-only uint8 table of ``2 ** bits`` entries, indexed by the value's unsigned bit
        pattern (for signed dtypes: -1 is entry ``2 ** bits - 1``).
    """
    size = np.dtype(code).itemsize
    patterns = np.arange(2 ** (8 * size), dtype=f"u{size}")
    values = patterns.view(code).astype(np.float32)
    scaled = _byte_scale(values, lo, hi)
    table = np.where(np.isnan(scaled), 0, scaled).astype(np.uint8)  # as fillna(0) does
    table.flags.writeable = False
    return table


def _cached_lut(lo: float, hi: float, code: str) -> np.ndarray:
    """:func:`_lut`, locked: a thread waits for a table another is building (no double build)."""
    with _LUT_LOCK:
        return _lut(lo, hi, code)


def _rgba_lut_block(r: np.ndarray, g: np.ndarray, b: np.ndarray, lo: float,
                    hi: float) -> np.ndarray:
    """``(..., 4)`` uint8 RGBA of three integer blocks of the same shape (nodata 0).

    Module-level so distributed workers can unpickle it; each process builds its table once
    (:func:`_cached_lut`) instead of the graph carrying 64 KiB per task.
    """
    valid = r != 0
    valid &= g != 0
    valid &= b != 0
    alpha = valid.view(np.uint8) * np.uint8(255)
    out = np.empty((*r.shape, 4), dtype=np.uint8)
    plane = np.empty(r.shape, dtype=np.uint8)
    for i, x in enumerate((r, g, b)):
        code = x.dtype.str[1:]
        if x.dtype.kind == "i":  # index the table by the bit pattern
            x = x.view(x.dtype.str.replace("i", "u"))
        # mode="clip": the table covers every value, and "raise" would buffer the output
        np.take(_cached_lut(lo, hi, code), x, out=plane, mode="clip")
        plane &= alpha  # black where any band has no data
        out[..., i] = plane
    out[..., 3] = alpha
    return out


def _integer_planes(obj: xr.Dataset | xr.DataArray, keys: Sequence[Hashable]
                    ) -> tuple[xr.DataArray, list[Any]] | None:
    """A template and the three band arrays for the lookup-table path, or None.

    None (use the generic path) unless every band is a table dtype, all numpy or all Dask with
    numpy chunks, and the bands have the same dims and shape.

    Returns
    -------
    tuple or None
        A band-less DataArray whose dims, coords and shape the RGBA takes (plus ``band``),
        and the three arrays (numpy, or Dask arrays for :func:`dask.array.map_blocks`).
    """
    if isinstance(obj, xr.Dataset):
        planes = [obj[k] for k in keys]
    else:  # one label each: a view (numpy) or one getitem per chunk (Dask), no fancy index
        bare = obj.drop_vars(_per_band_coords(obj))
        planes = [bare.sel(band=k, drop=True) for k in keys]
    template = planes[0]
    if any(p.dims != template.dims or p.shape != template.shape or "band" in p.dims
           or p.dtype.str[1:] not in _LUT_DTYPES for p in planes):
        return None
    arrays = [p.data for p in planes]
    # exact types: masked, cupy or sparse chunks keep the generic path's semantics
    if all(type(a) is np.ndarray for a in arrays):
        return template, arrays
    if all(isinstance(a, da.Array) and type(a._meta) is np.ndarray for a in arrays):
        # map_blocks would align differing chunks, then the declared output chunks are wrong
        return template, [a.rechunk(arrays[0].chunks) for a in arrays]
    return None


def _rgba_lut(template: xr.DataArray, arrays: Sequence[Any], lo: float,
              hi: float) -> xr.DataArray:
    """RGBA of three integer bands through :func:`_rgba_lut_block` (one task per chunk)."""
    if isinstance(arrays[0], da.Array):
        # meta given: dask would otherwise call the block on empty arrays to find it
        meta = np.empty((0,) * (template.ndim + 1), dtype=np.uint8)
        data = da.map_blocks(_rgba_lut_block, *arrays, lo, hi, dtype=np.uint8, meta=meta,
                             new_axis=template.ndim, chunks=(*arrays[0].chunks, (4,)),
                             token="rgba")
    else:
        data = _rgba_lut_block(*arrays, lo, hi)
    rgba = xr.DataArray(data, coords=template.coords, dims=(*template.dims, "band"))
    # object labels, as the generic path's concat makes them
    return rgba.assign_coords(band=np.array(["r", "g", "b", "a"], dtype=object))


def _rgba_generic(data: xr.DataArray, lo: float, hi: float, floating: bool) -> xr.DataArray:
    """RGBA of a ``(band, ...)`` array with xarray operations (float bands, other dtypes)."""
    valid = data.notnull().all("band") if floating else (data != 0).all("band")
    scaled = _byte_scale(data.astype("float32"), lo, hi)
    rgb = scaled.fillna(0).astype("uint8").where(valid, np.uint8(0))
    alpha = (valid.astype("uint8") * np.uint8(255)).expand_dims(band=["a"])
    rgba = xr.concat([rgb.assign_coords(band=["r", "g", "b"]), alpha], dim="band",
                     coords="minimal", compat="override")
    order = [d for d in rgba.dims if d != "band"] + ["band"]
    return rgba.transpose(*order).astype("uint8")


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _check_clamp(clamp: tuple[float, float] | None, floating: bool) -> tuple[float, float]:
    lo, hi = clamp if clamp is not None else ((0.0001, 0.15) if floating else DEFAULT_CLAMP)
    if not hi > lo:
        raise RenderError(f"clamp must be (low, high) with high > low, got {(lo, hi)}")
    return lo, hi


def to_rgb(obj: xr.Dataset | xr.DataArray, bands: Sequence[str] | None = None,
           clamp: tuple[float, float] | None = None) -> xr.DataArray:
    """Byte-scale three bands to RGBA, lazily.

    Integer bands of at most 16 bits go through a lookup table in one task per chunk; other
    dtypes (float reflectance) through xarray operations. Both give the same bytes.

    Parameters
    ----------
    obj:
        A stack (Dataset with band variables, or DataArray with a ``band`` dim), Dask- or
        numpy-backed.
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
    return _to_rgb(obj, bands, clamp, lut=True)


def _to_rgb(obj: xr.Dataset | xr.DataArray, bands: Sequence[str] | None,
            clamp: tuple[float, float] | None, *, lut: bool) -> xr.DataArray:
    """:func:`to_rgb`; ``lut=False`` forces the generic path (for tests and timings)."""
    bands = tuple(bands or ("red", "green", "blue"))
    if len(bands) != 3:
        raise RenderError(f"to_rgb needs exactly 3 bands, got {list(bands)}")
    keys = _band_keys(obj, [canonical_band(b) for b in bands])
    rgba = None
    if lut and (planes := _integer_planes(obj, keys)) is not None:
        lo, hi = _check_clamp(clamp, floating=False)
        if _hashable((lo, hi)):  # tables are cached by bounds; 0-d array bounds are not
            rgba = _rgba_lut(*planes, lo, hi)
    if rgba is None:
        data = _select_bands(obj, bands)
        floating = bool(np.issubdtype(data.dtype, np.floating))
        lo, hi = _check_clamp(clamp, floating)
        rgba = _rgba_generic(data, lo, hi, floating)
    rgba = rgba.rename("rgba")
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
