"""Intake integration: a v1 ``DataSource`` driver, an intake 2 reader and a safe catalog opener.

Three ways to reach the same search -> stack pipeline from an Intake catalog:

* :class:`Sentinel2Source` -- an ``intake.source.base.DataSource`` (driver ``sentinel2``,
  or ``driver: s2intake.intake_source.Sentinel2Source``) for v1-style YAML catalogs, which
  intake 2.x still reads through ``intake.open_catalog``.
* :class:`Sentinel2Reader` -- an ``intake.readers.BaseReader`` producing an
  ``xarray.Dataset``, for intake 2 (``version: 2``) catalogs and ``intake.entry.Catalog``.
* :func:`open_catalog` -- opens either kind of catalog after checking that its YAML can not
  run code (see below); ``s2intake.open_catalog`` and the ``s2intake catalog`` commands use it.

Supported intake versions: the v1 driver and :func:`open_catalog` work with intake 2.0
(tested with 2.0.9) and intake 0.7 (checked by hand with 0.7.0); the reader and
``version: 2`` catalogs need intake >= 2.0.

Why a safe opener? A v1 catalog is not plain data for intake: ``args`` strings are rendered
with a non-sandboxed Jinja2 environment (``{{ lipsum.__globals__.os.popen(...) }}`` runs a
command when the entry is accessed), a ``cls:`` key instantiates any importable class when
the catalog is opened, and ``shell(...)`` parameter defaults run commands when
``getshell=True``. :func:`open_catalog` reads the YAML with ``yaml.safe_load`` (so
``!!python/...`` tags fail), refuses ``cls``/``plugins`` keys, ``shell()`` defaults, drivers
other than s2intake's and nested YAML catalogs, and any template other than ``{{ name }}``
of a *declared* parameter (or ``CATALOG_DIR``) before intake sees the file; ``getshell`` is
always off. Intake 2 catalogs get the matching checks (readers must be s2intake's, no
``{import(...)}``/``{func(...)}``/``{pickle64(...)}`` templates, only intake's own
user-parameter classes).
"""

from __future__ import annotations

import ast
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pystac
import xarray as xr
import yaml
from intake.catalog import exceptions as intake_exceptions
from intake.catalog.local import (
    CatalogParser,
    LocalCatalogEntry,
    UserParameter,
    YAMLFileCatalog,
)
from intake.source.base import DataSource, Schema

from . import __version__ as _VERSION
from .aoi import AOI, read_aoi
from .errors import (
    AOIError,
    CatalogError,
    EmptySearchError,
    ProfileError,
    S2IntakeError,
    SearchError,
    SecurityError,
    StackError,
)
from .profiles import (
    EARTH_SEARCH_V0,
    V0,
    canonical_bands,
    default_stac_url,
    detect_profile,
    profile_for,
)

try:  # intake >= 2
    from intake.readers import BaseReader as _BaseReader
except ImportError:  # pragma: no cover - intake 0.7: only the v1 driver is available
    _BaseReader = None

__all__ = [
    "CatalogSecurityError", "SafeV2Catalog", "SafeYAMLFileCatalog", "Sentinel2Reader",
    "Sentinel2Source",
    "V0_URL_ENV", "check_catalog", "open_catalog",
]

#: Environment variable with the STAC API used for Earth Search v0 collections.
V0_URL_ENV = "S2INTAKE_STAC_URL_V0"
DEFAULT_BANDS = ("red", "green", "blue")

#: Arguments of :class:`Sentinel2Source` (what a catalog entry's ``args`` may set).
SOURCE_FIELDS = (
    "url", "collection", "aoi", "datetime", "start", "end", "bands", "max_cloud", "query",
    "filter", "resolution", "chunks", "scale", "harmonize", "mosaic", "items", "crs",
    "max_items", "base_dir", "allow_local_hrefs",
)


class CatalogSecurityError(CatalogError, SecurityError):
    """A catalog (or a value given to one) asked for something that could run code."""


# ============================================================================ v1 driver


class Sentinel2Source(DataSource):
    """Sentinel-2 L2A over an area and time range, as a lazy ``xarray.Dataset``.

    The Intake (v1 API) face of :func:`s2intake.search` + :func:`s2intake.stack`: nothing
    happens when the source is made (or its catalog opened); :meth:`discover` runs the
    search and builds the lazy graph without reading a pixel, :meth:`to_dask` returns the
    lazy dataset (with the ``ds.s2`` accessor), :meth:`read` computes it.

    Parameters
    ----------
    url:
        STAC API root or a local item file (FeatureCollection JSON). Empty: for a v0
        collection ``$S2INTAKE_STAC_URL_V0`` or Earth Search v0, otherwise
        ``$S2INTAKE_STAC_URL`` or Earth Search v1.
    collection:
        Collection id; default ``sentinel-2-l2a`` (``sentinel-s2-l2a-cogs`` for a /v0 URL).
    aoi:
        GeoJSON file path (relative paths are resolved against ``base_dir``, the catalog's
        folder), GeoJSON text, a GeoJSON dict, a shapely geometry or GeoDataFrame.
    datetime:
        ``"start/end"`` range (or a ``(start, end)`` pair); alternatively give ``start``
        and/or ``end``.
    start, end:
        Dates or datetimes (ISO strings); a day-only ``end`` includes that whole day.
    bands:
        Band names (``red``, ``nir``, ``swir22``, ``scl``... or ``B04``-style keys), a list
        or a comma-separated string.
    max_cloud:
        Largest ``eo:cloud_cover`` in percent, 0..100.
    query, filter:
        Extra STAC ``query`` terms (dict or ``["prop<op>value", ...]``) or a CQL2 filter.
    resolution, chunks, scale, harmonize, mosaic, crs:
        Passed to :func:`s2intake.stack`.
    items:
        Use these items instead of a search: a list of item dicts, a pystac
        ``ItemCollection``, a pystac-client ``ItemSearch``, a
        :class:`~s2intake.search.SearchResult`, an intake-stac catalog object, a
        FeatureCollection dict, or a path to an item file (relative to ``base_dir``).
        They are used as given; ``url``, ``collection``, the dates, ``max_cloud``,
        ``query`` and ``filter`` are then ignored (``aoi`` still sets the window).
    max_items:
        Stop the search after this many items.
    base_dir:
        Folder for relative paths; a catalog passes ``{{ CATALOG_DIR }}``. Default: the
        catalog's folder when made from a catalog, else the working directory.
    allow_local_hrefs:
        Read local-file asset hrefs (default: only for items from a local item file).
    metadata:
        Intake metadata (set by the catalog).

    Raises
    ------
    CatalogError
        On first use (or, through :func:`open_catalog`, when the entry is called) if a value
        is wrong; the message names the catalog entry and the field.
    """

    name = "sentinel2"
    version = _VERSION
    container = "xarray"
    partition_access = False

    def __init__(
        self,
        url: str | None = None,
        collection: str | None = None,
        aoi: Any = None,
        datetime: Any = None,
        start: Any = None,
        end: Any = None,
        bands: str | Sequence[str] | None = DEFAULT_BANDS,
        max_cloud: float | str | None = None,
        query: Any = None,
        filter: Any = None,  # noqa: A002 - the STAC name
        resolution: float | str = 10,
        chunks: int | str = 1024,
        scale: bool | str = False,
        harmonize: bool | str = True,
        mosaic: bool | str = "solar_day",
        items: Any = None,
        crs: Any = None,
        max_items: int | str | None = None,
        base_dir: str | os.PathLike | None = None,
        allow_local_hrefs: bool | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("storage_options", None)
        self._raw: dict[str, Any] = {
            "url": url, "collection": collection, "aoi": aoi, "datetime": datetime,
            "start": start, "end": end, "bands": bands, "max_cloud": max_cloud,
            "query": query, "filter": filter, "resolution": resolution, "chunks": chunks,
            "scale": scale, "harmonize": harmonize, "mosaic": mosaic, "items": items,
            "crs": crs, "max_items": max_items, "base_dir": base_dir,
            "allow_local_hrefs": allow_local_hrefs,
        }
        self._unknown = dict(kwargs)
        self._spec: dict[str, Any] | None = None
        self._result: Any = None
        self._dataset: xr.Dataset | None = None
        super().__init__(metadata=dict(metadata or {}))

    # ------------------------------------------------------------------ naming and errors
    @property
    def entry_name(self) -> str | None:
        """Name of the catalog entry this source came from (``None`` when made directly)."""
        name = getattr(self, "name", None)
        return name if name and name != type(self).name else None

    def _where(self) -> str:
        name = self.entry_name
        if name is None:
            return "Sentinel2Source"
        return _entry_where(name, getattr(self, "cat", None))

    def _error(self, field: str, message: str, cls: type[CatalogError] = CatalogError
               ) -> CatalogError:
        return cls(f"{self._where()}: field {field!r}: {message}")

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, Any]:
        """Check every argument (no network, no pixels) and return the normalised values.

        Returns
        -------
        dict
            The arguments as :func:`s2intake.search`/:func:`s2intake.stack` want them.

        Raises
        ------
        CatalogError
            Naming the entry and the field that is wrong.
        """
        if self._spec is None:
            self._spec = self._validate()
        return self._spec

    def _validate(self) -> dict[str, Any]:
        raw = self._raw
        if self._unknown:
            names = ", ".join(sorted(self._unknown))
            raise self._error(names, "unknown argument; Sentinel2Source takes "
                              + ", ".join(SOURCE_FIELDS))
        for field, value in raw.items():
            if isinstance(value, str) and _SHELL_CALL.search(value):
                raise self._error(field, f"{value!r}: shell() values are never executed",
                                  CatalogSecurityError)
        spec: dict[str, Any] = {}
        base = self._base_dir()
        spec["items"] = self._items(raw["items"], base)
        # with items there is no search: an unset or stale URL does not matter then
        spec["url"] = self._url(None if spec["items"] else raw["url"], raw["collection"])
        spec["collection"] = self._collection(raw["collection"], spec["url"])
        spec["aoi"] = self._aoi(raw["aoi"], base)
        spec["datetime"] = self._datetime(raw["datetime"], raw["start"], raw["end"])
        spec["bands"] = self._bands(raw["bands"])
        spec["max_cloud"] = self._number("max_cloud", raw["max_cloud"], minimum=0, maximum=100)
        spec["query"] = self._query(raw["query"])
        spec["filter"] = self._filter(raw["filter"])
        resolution = self._number("resolution", raw["resolution"])
        if resolution is None or resolution <= 0:
            raise self._error("resolution", f"must be a positive number of metres, got "
                              f"{raw['resolution']!r}")
        spec["resolution"] = resolution
        chunks = self._number("chunks", raw["chunks"], integer=True)
        if chunks is None or chunks < 16:
            raise self._error("chunks", f"must be an integer >= 16, got {raw['chunks']!r}")
        spec["chunks"] = int(chunks)
        spec["scale"] = self._flag("scale", raw["scale"], False)
        spec["harmonize"] = self._flag("harmonize", raw["harmonize"], True)
        spec["mosaic"] = self._mosaic(raw["mosaic"])
        max_items = self._number("max_items", raw["max_items"], integer=True, minimum=1)
        spec["max_items"] = int(max_items) if max_items is not None else None
        spec["crs"] = self._crs(raw["crs"])
        local = self._flag("allow_local_hrefs", raw["allow_local_hrefs"], None)
        spec["allow_local_hrefs"] = local
        return spec

    def _base_dir(self) -> Path | None:
        value = _blank(self._raw["base_dir"])
        if value is None:
            value = _blank((self.metadata or {}).get("catalog_dir"))
        if value is None:
            return None
        if not isinstance(value, str | os.PathLike):
            raise self._error("base_dir", f"expected a folder path, got {type(value).__name__}")
        text = str(value)
        if text.startswith("file://"):
            text = text[7:]
        if "://" in text:  # a remote catalog: relative local paths make no sense there
            return None
        return Path(text)

    def _path(self, value: str | os.PathLike, base: Path | None) -> Path:
        path = Path(value).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return path

    def _items(self, value: Any, base: Path | None) -> tuple[list[dict], str, Any] | None:
        """``(item dicts, mode, original)``, or None to search."""
        from .search import SearchResult, items_from, load_item_file

        value = _blank(value)
        if value is None:
            return None
        mode = "items"
        if isinstance(value, str | os.PathLike) and not str(value).lstrip().startswith(
                ("{", "[")):
            path = self._path(value, base)
            if not path.is_file():
                raise self._error("items", f"item file not found: {path}")
            try:
                dicts = load_item_file(path)
            except SearchError as exc:
                raise self._error("items", str(exc)) from None
            mode = "local"
        else:
            if isinstance(value, str):
                value = _parse_literal(value)
                if value is None:
                    raise self._error("items", "text is neither JSON nor a path")
            value = _unwrap_intake_stac(value)
            if isinstance(value, SearchResult):
                mode = value.mode if value.mode == "local" else "items"
            try:
                dicts = items_from(_plain_items(value))
            except SearchError as exc:
                raise self._error("items", str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - an ItemSearch may fail to run
                raise self._error("items", f"cannot read items from {type(value).__name__}: "
                                  f"{exc}") from None
        if not dicts:
            raise self._error("items", "no items given")
        for item in dicts:
            if not isinstance(item, Mapping) or "assets" not in item \
                    or "properties" not in item:
                raise self._error("items", "every item needs 'properties' and 'assets'")
        return [dict(i) for i in dicts], mode, value

    def _url(self, value: Any, collection: Any) -> str:
        value = _blank(value)
        if value is None:
            if isinstance(collection, str) and collection in V0.collections:
                return os.environ.get(V0_URL_ENV) or EARTH_SEARCH_V0
            return default_stac_url()
        if not isinstance(value, str | os.PathLike):
            raise self._error("url", f"expected a URL or item file path, got "
                              f"{type(value).__name__}")
        text = str(value).strip()
        if text.startswith(("http://", "https://")):
            return text
        path = Path(text[7:] if text.startswith("file://") else text).expanduser()
        if path.is_file() or (path.is_dir() and (path / "items.json").is_file()):
            return str(path)
        raise self._error("url", f"{text!r} is neither an http(s) STAC API URL nor an "
                          "existing item file")

    def _collection(self, value: Any, url: str) -> str:
        value = _blank(value)
        if value is not None and not isinstance(value, str):
            raise self._error("collection", f"expected a collection id, got "
                              f"{type(value).__name__}")
        local = not url.startswith(("http://", "https://"))
        try:
            profile = profile_for(value, None if local else url)
        except ProfileError as exc:
            raise self._error("collection", str(exc)) from None
        return value or profile.collection

    def _aoi(self, value: Any, base: Path | None) -> AOI | None:
        value = _blank(value)
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                parsed = _parse_literal(text)
                if parsed is None:
                    raise self._error("aoi", "inline GeoJSON is not valid JSON")
                value = parsed
            else:
                value = self._path(text, base)
        elif isinstance(value, os.PathLike):
            value = self._path(value, base)
        try:
            return read_aoi(value)
        except AOIError as exc:
            raise self._error("aoi", str(exc)) from None

    def _datetime(self, value: Any, start: Any, end: Any) -> str | None:
        from .search import parse_datetime

        value, start, end = _blank(value), _blank(start), _blank(end)
        if value is not None and (start is not None or end is not None):
            raise self._error("datetime", "give either datetime or start/end, not both")
        if value is None and start is None and end is None:
            return None
        if value is not None:
            if not isinstance(value, str | Sequence) or isinstance(value, bytes):
                value = str(value)
            try:
                return parse_datetime(value)
            except SearchError as exc:
                raise self._error("datetime", str(exc)) from None
        for field, part in (("start", start), ("end", end)):
            if part is not None and not _is_instant(part):
                raise self._error(field, f"expected a date such as '2020-09-08', got "
                                  f"{type(part).__name__}")
            if part is not None:
                try:
                    parse_datetime((part, None))
                except SearchError as exc:
                    raise self._error(field, str(exc)) from None
        try:
            return parse_datetime((start, end))
        except SearchError as exc:
            if "after" in str(exc):
                raise self._error("start", f"start {start!s} is after end {end!s}") from None
            raise self._error("start", str(exc)) from None

    def _bands(self, value: Any) -> list[str]:
        value = _blank(value)
        if value is None:
            return list(DEFAULT_BANDS)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                parsed = _parse_literal(text)
                if not isinstance(parsed, list):
                    raise self._error("bands", f"cannot read {value!r} as a list of bands")
                value = parsed
            else:
                value = [b.strip() for b in text.split(",") if b.strip()]
        if not isinstance(value, list | tuple):
            raise self._error("bands", f"expected a list of band names, got "
                              f"{type(value).__name__}")
        if not all(isinstance(b, str) for b in value):
            raise self._error("bands", f"expected band names (strings), got {list(value)!r}")
        if len(value) > 1 and all(len(b) == 1 for b in value) and "," in value:
            # intake v1's list coercion turned "red,nir" into characters; no band name has
            # one letter, so join them back
            value = [b for b in "".join(value).split(",") if b]
        try:
            names = canonical_bands(list(value))
        except ProfileError as exc:
            raise self._error("bands", str(exc)) from None
        if len(set(names)) != len(names):
            raise self._error("bands", f"bands repeat: {list(value)}")
        return names

    def _number(self, field: str, value: Any, *, integer: bool = False,
                minimum: float | None = None, maximum: float | None = None) -> float | None:
        value = _blank(value)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self._error(field, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self._error(field, f"expected a number, got {value!r}") from None
        if number != number:  # NaN
            raise self._error(field, "expected a number, got NaN")
        if integer and number != int(number):
            raise self._error(field, f"expected an integer, got {value!r}")
        if minimum is not None and number < minimum:
            raise self._error(field, f"{value!r} is below the minimum {minimum:g}")
        if maximum is not None and number > maximum:
            raise self._error(field, f"{value!r} is above the maximum {maximum:g}")
        return int(number) if integer else number

    def _flag(self, field: str, value: Any, default: bool | None) -> bool | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self._error(field, f"expected true or false, got {value!r}")

    def _mosaic(self, value: Any) -> bool | str:
        if isinstance(value, str) and value.strip().lower() == "solar_day":
            return "solar_day"
        try:
            flag = self._flag("mosaic", value, True)
        except CatalogError:
            raise self._error("mosaic", f"expected 'solar_day', true or false, got "
                              f"{value!r}") from None
        return "solar_day" if flag else False

    def _query(self, value: Any) -> Any:
        from .search import _normalise_query

        value = _blank(value)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().startswith(("{", "[")):
            parsed = _parse_literal(value)
            if parsed is None:
                raise self._error("query", f"cannot read {value!r} as JSON")
            value = parsed
        if not isinstance(value, str | Mapping | list | tuple):
            raise self._error("query", f"expected a dict or a list of 'prop<op>value' terms, "
                              f"got {type(value).__name__}")
        try:
            _normalise_query(value)
        except (SearchError, TypeError, AttributeError) as exc:
            raise self._error("query", str(exc)) from None
        return value

    def _filter(self, value: Any) -> Any:
        value = _blank(value)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().startswith("{"):
            parsed = _parse_literal(value)
            if not isinstance(parsed, dict):
                raise self._error("filter", "CQL2-JSON filter text is not valid JSON")
            return parsed
        if not isinstance(value, str | Mapping):
            raise self._error("filter", f"expected CQL2-JSON (dict) or CQL2 text, got "
                              f"{type(value).__name__}")
        return value

    def _crs(self, value: Any) -> Any:
        value = _blank(value)
        if value is None:
            return None
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(value)
        except CRSError as exc:
            raise self._error("crs", str(exc)) from None
        return value

    # ------------------------------------------------------------------ search and stack
    @property
    def search_result(self) -> Any:
        """The items this entry stacks, as a :class:`~s2intake.search.SearchResult`.

        Runs the search on first access (or wraps ``items``); cached afterwards.
        """
        if self._result is None:
            self._result = self._search()
        return self._result

    def _search(self) -> Any:
        from .search import SearchResult, search

        spec = self.validate()
        if spec["items"] is not None:
            dicts, mode, original = spec["items"]
            if isinstance(original, SearchResult) and spec["aoi"] is None:
                return original
            dicts = sorted(dicts, key=lambda i: (i["properties"].get("datetime") or "",
                                                 i.get("id", "")))
            return SearchResult(dicts, spec["aoi"], detect_profile(dicts[0]),
                                url="<items>" if mode == "items" else "<item file>",
                                matched=len(dicts), mode=mode)
        try:
            return search(spec["aoi"], spec["datetime"], max_cloud=spec["max_cloud"],
                          collection=spec["collection"], url=spec["url"],
                          query=spec["query"], filter=spec["filter"],
                          max_items=spec["max_items"])
        except EmptySearchError as exc:
            raise EmptySearchError(f"{self._where()}: {exc}") from None
        except ProfileError as exc:
            raise self._error("collection", str(exc)) from None
        except AOIError as exc:
            raise self._error("aoi", str(exc)) from None
        except SearchError as exc:
            raise self._error(_search_field(str(exc)), str(exc)) from None

    def items_table(self) -> Any:
        """The items as a GeoDataFrame (see :func:`s2intake.items_to_geodataframe`)."""
        from .items import items_to_geodataframe

        return items_to_geodataframe(self.search_result)

    def to_dask(self) -> xr.Dataset:
        """The lazy, Dask-backed dataset (``(time, y, x)`` per band; ``ds.s2`` ready).

        Returns
        -------
        xarray.Dataset
            Exactly what ``s2intake.stack(s2intake.search(...), bands, ...)`` returns.
        """
        if self._dataset is None:
            self._dataset = self._stack()
        return self._dataset.copy()

    def _stack(self) -> xr.Dataset:
        from .stack import stack

        spec = self.validate()
        result = self.search_result
        local = spec["allow_local_hrefs"]
        if local is None and spec["items"] is not None:
            local = result.mode == "local"
        try:
            return stack(result, spec["bands"], aoi=spec["aoi"],
                         resolution=spec["resolution"], crs=spec["crs"],
                         chunks=spec["chunks"], scale=spec["scale"],
                         harmonize=spec["harmonize"], mosaic=spec["mosaic"],
                         allow_local_hrefs=local)
        except StackError as exc:
            raise self._error(_stack_field(str(exc)), str(exc)) from None
        except ProfileError as exc:
            raise self._error("bands", str(exc)) from None
        except SecurityError as exc:
            raise self._error("allow_local_hrefs", str(exc), CatalogSecurityError) from None

    def read(self) -> xr.Dataset:
        """Compute the whole dataset into memory (``to_dask().compute()``, then the freed
        chunks' heap goes back to the OS: :func:`s2intake.memory.compute`)."""
        from .memory import compute

        return compute(self.to_dask())

    def _get_partition(self, i: int) -> xr.Dataset:
        return self.read()

    def _get_schema(self) -> Schema:
        ds = self.to_dask()
        result = self.search_result
        first = next(iter(ds.data_vars.values()))
        times = ds["time"].values
        extra = {
            "dims": dict(ds.sizes),
            "data_vars": list(ds.data_vars),
            "coords": list(ds.coords),
            "items": len(result),
            "time_range": [str(times[0])[:19], str(times[-1])[:19]] if len(times) else [],
            "crs": ds.attrs.get("crs"),
            "resolution": ds.attrs.get("resolution"),
            "collection": ds.attrs.get("collection"),
            "url": result.url,
            "chunks": {d: list(c) for d, c in zip(first.dims, first.data.chunks, strict=True)},
        }
        return Schema(
            datashape=None,
            dtype={name: str(var.dtype) for name, var in ds.data_vars.items()},
            shape=tuple(first.shape),
            npartitions=int(first.data.npartitions),
            extra_metadata=extra,
        )

    def discover(self) -> dict[str, Any]:
        """Search and describe the dataset without reading any pixel.

        Returns
        -------
        dict
            ``dtype`` (per band), ``shape`` (``(time, y, x)``), ``npartitions`` (chunks per
            band), ``dims``, ``data_vars``, ``items`` (item count) and ``metadata``.
        """
        self._load_metadata()
        extra = self._schema.extra_metadata
        return {
            "dtype": self.dtype,
            "shape": self.shape,
            "npartitions": self.npartitions,
            "dims": extra["dims"],
            "data_vars": extra["data_vars"],
            "items": extra["items"],
            "metadata": self.metadata,
        }

    def _close(self) -> None:
        self._dataset = None
        self._result = None
        self._schema = None

    def _yaml(self) -> dict[str, Any]:
        args = {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in self._raw.items() if v is not None}
        if "items" in args and not isinstance(args["items"], str):
            args["items"] = f"<{len(_items_list(args['items']))} items>"
        if "aoi" in args and not isinstance(args["aoi"], str | dict):
            args["aoi"] = f"<{type(args['aoi']).__name__}>"
        meta = {k: v for k, v in (self.metadata or {}).items() if _plain(v)}
        return {"sources": {self.entry_name or self.name: {
            "driver": "s2intake.intake_source.Sentinel2Source",
            "description": self.description or "",
            "metadata": meta,
            "args": {k: (v if _plain(v) else repr(v)) for k, v in args.items()},
        }}}

    def __repr__(self) -> str:
        state = "searched" if self._result is not None else "not searched yet"
        return f"<Sentinel2Source {self._where()} ({state})>"


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", "none"}
_SHELL_CALL = re.compile(r"^\s*(client_)?shell\s*\(")


def _entry_where(name: str, catalog: Any) -> str:
    """``catalog entry 'name' of file.yaml`` (the file when known)."""
    path = getattr(catalog, "path", None)
    where = f"catalog entry {name!r}"
    return f"{where} of {Path(str(path)).name}" if isinstance(path, str) and path else where


def _blank(value: Any) -> Any:
    """None for the ways a catalog says "not set" (None, '', 'None')."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip() in ("", "None", "null"):
        return None
    return value


def _is_instant(value: Any) -> bool:
    import datetime as dt

    import pandas as pd

    return isinstance(value, str | dt.date | pd.Timestamp)


def _parse_literal(text: str) -> Any:
    """JSON, or the Python-literal repr intake's templating makes of a dict/list."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _plain(value: Any) -> bool:
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _items_list(value: Any) -> list[Any]:
    """Best-effort list of items for display (never runs a search)."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, pystac.ItemCollection):
        return list(value.items)
    return list(getattr(value, "items", []) or [])


def _plain_items(value: Any) -> Any:
    """pystac / pystac-client objects -> item dicts without resolving any link.

    ``pystac.Item.to_dict()`` makes hrefs relative by default, which resolves the item's
    ``root`` link: an HTTP request to the STAC API (or a failure offline) for every item.
    """
    if hasattr(value, "item_collection_as_dict") and callable(value.item_collection_as_dict):
        return list(value.item_collection_as_dict().get("features", []))  # ItemSearch
    if isinstance(value, pystac.ItemCollection):
        value = value.items
    if isinstance(value, list | tuple) and any(isinstance(i, pystac.Item) for i in value):
        return [i.to_dict(transform_hrefs=False) if isinstance(i, pystac.Item) else i
                for i in value]
    return value


def _unwrap_intake_stac(value: Any) -> Any:
    """pystac objects out of intake-stac's catalogs (``StacItemCollection`` and friends).

    intake-stac (unmaintained since 2022) wraps a pystac object in ``._stac_obj``: an
    ``ItemCollection``, an ``Item`` or a ``Catalog``/``Collection`` (its items are
    collected recursively).
    """
    stac_obj = getattr(value, "_stac_obj", None)
    if stac_obj is None:
        return value
    if isinstance(stac_obj, pystac.Item):
        return [stac_obj]
    if isinstance(stac_obj, pystac.Catalog):
        return list(stac_obj.get_items(recursive=True))
    return stac_obj


def _search_field(message: str) -> str:
    lowered = message.lower()
    for key, field in (("datetime", "datetime"), ("max_cloud", "max_cloud"),
                       ("cql2", "filter"), ("filter", "filter"), ("query", "query"),
                       ("collection", "collection")):
        if key in lowered:
            return field
    return "url"


def _stack_field(message: str) -> str:
    lowered = message.lower()
    for key, field in (("resolution", "resolution"), ("chunks", "chunks"),
                       ("mosaic", "mosaic"), ("band", "bands"), ("asset", "bands"),
                       ("crs", "crs"), ("bounds", "aoi"), ("area", "aoi")):
        if key in lowered:
            return field
    return "items"


# ============================================================================ intake 2 reader

if _BaseReader is not None:

    class Sentinel2Reader(_BaseReader):
        """Intake 2 reader: Sentinel-2 search + lazy stack -> ``xarray.Dataset``.

        Takes the arguments of :class:`Sentinel2Source`, as keywords and/or in a ``params``
        dict (keywords win). ``read()`` returns the *lazy* dataset (call ``.compute()`` for
        pixels); ``discover()`` returns the same, nothing is read. In a ``version: 2``
        catalog the templated arguments go under ``params``, because intake 2 takes a
        top-level kwarg named like a user parameter as that parameter's value::

            entries:
              berry_creek:
                reader: s2intake.intake_source:Sentinel2Reader
                kwargs:
                  params: {aoi: "{aoi}", base_dir: "{CATALOG_DIR}", max_cloud: "{max_cloud}"}

        ``metadata["name"]``, when set, names the entry in error messages.
        """

        imports = {"xarray", "dask", "rasterio"}
        output_instance = "xarray:Dataset"
        func = "s2intake.intake_source:Sentinel2Source"

        def source(self, **kwargs: Any) -> Sentinel2Source:
            """The :class:`Sentinel2Source` for these arguments (search result, items table)."""
            kw = self.kwargs.copy()
            kw.update(kwargs)
            kw.pop("args", None)
            params = kw.pop("params", None) or {}
            if not isinstance(params, Mapping):
                raise CatalogError(f"Sentinel2Reader: field 'params': expected a mapping, got "
                                   f"{type(params).__name__}")
            merged = {**params, **kw}
            src = Sentinel2Source(metadata=dict(self.metadata or {}), **merged)
            name = (self.metadata or {}).get("name")
            if name:
                src.name = str(name)
            return src

        def _read(self, *args: Any, **kwargs: Any) -> xr.Dataset:
            if args:
                raise CatalogError("Sentinel2Reader takes keyword arguments only")
            return self.source(**kwargs).to_dask()

        def discover(self, **kwargs: Any) -> xr.Dataset:
            """The lazy dataset (building it reads no pixel)."""
            return self.read(**kwargs)

else:  # pragma: no cover
    Sentinel2Reader = None  # type: ignore[assignment,misc]


# ============================================================================ safe catalogs

_TEMPLATE_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TEMPLATE_ANY = re.compile(r"\{\{|\{%|\{#|%\}|#\}")
_SHELL_ANYWHERE = re.compile(r"(client_)?shell\s*\(")
_ENV_ANYWHERE = re.compile(r"(client_)?env\s*\(")
_ENV_DEFAULT = re.compile(r"^\s*(client_)?env\([A-Za-z_][A-Za-z0-9_]*\)\s*$")
_V2_CODE = re.compile(r"\b(import|func|pickle64)\s*\(")
_V2_FIELD_ACCESS = re.compile(r"\{[A-Za-z_]\w*\s*[.\[]")
_V2_PARAMETER_CLASSES = "intake.readers.user_parameters:"
_V2_DTYPES = {"str", "int", "float", "bool", "list", "tuple", "dict", "set", "object"}
_YAML_CATALOG_DRIVERS = {
    "yaml_file_cat", "intake.catalog.local.YAMLFileCatalog",
    "intake.catalog.local:YAMLFileCatalog", "s2intake.intake_source.SafeYAMLFileCatalog",
    "s2intake.intake_source:SafeYAMLFileCatalog",
}
_S2_DRIVERS = {"sentinel2", "s2intake.intake_source.Sentinel2Source",
               "s2intake.intake_source:Sentinel2Source"}


def _refuse(where: str, message: str) -> CatalogSecurityError:
    return CatalogSecurityError(f"{where}: {message}")


_YAML_MERGE = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader (~10x faster than PyYAML's) refusing duplicate mapping keys,
    as intake's own loader does (a repeated entry name would silently drop one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == _YAML_MERGE:
                continue  # "<<: *defaults": merged keys may be overridden, as YAML says
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Mapping | list):
                continue  # unhashable: the base constructor says so
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _UniqueKeyLoader.construct_yaml_map)


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` with errors that say what was refused.

    Raises
    ------
    CatalogSecurityError
        For ``!!python/...`` (or any other non-standard) tags.
    CatalogError
        For YAML syntax errors and duplicate keys.
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except yaml.constructor.ConstructorError as exc:
        if "duplicate key" in str(exc.problem):
            raise CatalogError(f"{where}: {exc.problem} {exc.problem_mark}".replace("\n", " ")
                               ) from None
        tag = getattr(exc, "problem", "") or str(exc)
        raise _refuse(where, f"YAML tag refused ({tag.strip()}, {exc.problem_mark}); "
                      "catalogs are data: python/object tags and other code-making tags "
                      "are never loaded") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{where}: not valid YAML: {exc}") from None


def check_catalog(data: Any, where: str, *, extra_drivers: Iterable[str] = ()) -> int:
    """Check a parsed catalog for anything that could run code; return its version (1 or 2).

    Parameters
    ----------
    data:
        The catalog as loaded by :func:`load_yaml`.
    where:
        How to name the catalog in messages (its path).
    extra_drivers:
        More v1 driver names (or v2 reader class names) to accept besides s2intake's and
        nested YAML catalogs.

    Raises
    ------
    CatalogSecurityError
        Naming the entry and the field that was refused.
    CatalogError
        If the catalog is not a mapping with ``sources`` (v1) or ``entries`` (v2).
    """
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: a catalog must be a YAML mapping, got "
                           f"{type(data).__name__}")
    version = data.get("version") or (data.get("metadata") or {}).get("version") or 1
    if version == 2:
        _check_v2(data, where, set(extra_drivers))
        return 2
    if version != 1:
        raise CatalogError(f"{where}: field 'version': unsupported catalog version "
                           f"{version!r}")
    _check_v1(data, where, set(extra_drivers))
    return 1


def _check_v1(data: dict, where: str, extra: set[str]) -> None:
    if "plugins" in data:
        raise _refuse(where, "field 'plugins': importing plugin modules from a catalog is "
                      "not allowed")
    sources = data.get("sources")
    if not isinstance(sources, dict):
        raise CatalogError(f"{where}: field 'sources': expected a mapping of entries")
    shared = (data.get("metadata") or {}).get("parameters") or {}
    if not isinstance(shared, dict):
        raise CatalogError(f"{where}: field 'metadata.parameters': expected a mapping")
    for pname, spec in shared.items():
        _check_parameter(spec, f"{where}: catalog parameter {pname!r}")
    for name, entry in sources.items():
        here = f"{where}: entry {name!r}"
        if not isinstance(entry, dict):
            raise CatalogError(f"{here}: expected a mapping")
        if "cls" in entry:
            raise _refuse(here, "field 'cls': instantiating classes named in a catalog is "
                          "not allowed")
        driver = entry.get("driver")
        if not isinstance(driver, str):
            raise _refuse(here, f"field 'driver': expected one driver name, got {driver!r}")
        if driver not in _S2_DRIVERS | _YAML_CATALOG_DRIVERS | extra:
            raise _refuse(here, f"field 'driver': {driver!r} is not allowed here; safe "
                          "catalogs use s2intake's sentinel2 driver or nested YAML catalogs "
                          "(open_catalog(..., extra_drivers=[...]) to allow others)")
        parameters = entry.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise CatalogError(f"{here}: field 'parameters': expected a mapping")
        for pname, spec in parameters.items():
            _check_parameter(spec, f"{here}: parameter {pname!r}")
        declared = set(parameters) | set(shared) | {"CATALOG_DIR"}
        _check_templates(entry.get("args") or {}, declared, here, "args")


def _check_parameter(spec: Any, here: str) -> None:
    if not isinstance(spec, dict):
        raise CatalogError(f"{here}: expected a mapping with description/type/default")
    for key in ("default", "min", "max", "allowed"):
        for text in _strings(spec.get(key)):
            if _SHELL_ANYWHERE.search(text):
                raise _refuse(here, f"field {key!r}: {text!r}: shell() defaults are never "
                              "executed by s2intake")
            if _ENV_ANYWHERE.search(text) and not _ENV_DEFAULT.match(text):
                raise _refuse(here, f"field {key!r}: {text!r}: only a whole 'env(NAME)' "
                              "default is allowed")
            if _TEMPLATE_ANY.search(text):
                raise _refuse(here, f"field {key!r}: {text!r}: templates are not allowed "
                              "in parameter defaults")


def _check_templates(value: Any, declared: set[str], here: str, path: str) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _check_templates(sub, declared, here, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, sub in enumerate(value):
            _check_templates(sub, declared, here, f"{path}[{i}]")
    elif isinstance(value, str):
        rest = _TEMPLATE_REF.sub("", value)
        if _TEMPLATE_ANY.search(rest):
            raise _refuse(here, f"field {path!r}: {value!r}: only '{{{{ name }}}}' references "
                          "to declared parameters are allowed (no expressions, filters, "
                          "calls or statements)")
        for name in _TEMPLATE_REF.findall(value):
            if name not in declared:
                raise _refuse(here, f"field {path!r}: template '{{{{ {name} }}}}' names no "
                              "declared parameter; only declared parameters (and "
                              "CATALOG_DIR) are templated")


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for sub in value.values():
            yield from _strings(sub)
    elif isinstance(value, list | tuple):
        for sub in value:
            yield from _strings(sub)


def _check_v2(data: dict, where: str, extra: set[str]) -> None:
    for key in ("entries", "data", "user_parameters", "aliases", "metadata"):
        if key in data and not isinstance(data[key], dict):
            raise CatalogError(f"{where}: field {key!r}: expected a mapping")
    for name, entry in (data.get("entries") or {}).items():
        here = f"{where}: entry {name!r}"
        if not isinstance(entry, dict):
            raise CatalogError(f"{here}: expected a mapping")
        reader = str(entry.get("reader", ""))
        if not (reader.startswith(("s2intake.", "s2intake:")) or reader in extra):
            raise _refuse(here, f"field 'reader': {reader!r} is not allowed; safe catalogs "
                          "use s2intake.intake_source:Sentinel2Reader")
        if entry.get("cls", "intake.readers.entry:ReaderDescription") != \
                "intake.readers.entry:ReaderDescription":
            raise _refuse(here, f"field 'cls': {entry.get('cls')!r} is not allowed")
        _check_v2_values(entry.get("kwargs") or {}, here, "kwargs")
        _check_v2_parameters(entry.get("user_parameters") or {}, here)
    for name, desc in (data.get("data") or {}).items():
        here = f"{where}: data {name!r}"
        datatype = str((desc or {}).get("datatype", ""))
        if not datatype.startswith("intake.readers.datatypes:"):
            raise _refuse(here, f"field 'datatype': {datatype!r} is not allowed")
        if desc.get("cls", "intake.readers.entry:DataDescription") != \
                "intake.readers.entry:DataDescription":
            raise _refuse(here, f"field 'cls': {desc.get('cls')!r} is not allowed")
        _check_v2_values(desc.get("kwargs") or {}, here, "kwargs")
        _check_v2_parameters(desc.get("user_parameters") or {}, here)
    _check_v2_parameters(data.get("user_parameters") or {}, f"{where}: catalog")


def _check_v2_parameters(params: Any, here: str) -> None:
    if not isinstance(params, dict):
        raise CatalogError(f"{here}: field 'user_parameters': expected a mapping")
    for pname, spec in params.items():
        where = f"{here}: parameter {pname!r}"
        if not isinstance(spec, dict):
            continue  # a plain value (e.g. CATALOG_DIR written back), inert
        cls = str(spec.get("cls", ""))
        if not cls.startswith(_V2_PARAMETER_CLASSES):
            raise _refuse(where, f"field 'cls': {cls!r} is not an intake user-parameter class")
        dtype = spec.get("dtype")
        if dtype is not None and dtype not in _V2_DTYPES:
            raise _refuse(where, f"field 'dtype': {dtype!r} is not a builtin type name")
        _check_v2_values({k: v for k, v in spec.items() if k != "cls"}, where, "")


def _check_v2_values(value: Any, here: str, path: str) -> None:
    for text in _strings(value):
        if _V2_CODE.search(text):
            raise _refuse(here, f"field {path or 'value'!r}: {text!r}: import/func/pickle64 "
                          "templates are not allowed")
        if _V2_FIELD_ACCESS.search(text):
            raise _refuse(here, f"field {path or 'value'!r}: {text!r}: only '{{name}}' "
                          "templates are allowed")


class _SafeEntry(LocalCatalogEntry):
    """A v1 entry whose values are checked, and whose errors name the entry and the field."""

    def get(self, **user_parameters: Any) -> Any:
        where = _entry_where(self.name, self._catalog)
        declared = {p.name: p for p in self._user_parameters}
        for key, value in list(user_parameters.items()):
            for text in _strings(value):
                if _TEMPLATE_ANY.search(text):
                    raise _refuse(where, f"field {key!r}: template markers ('{{{{', '{{%') "
                                  "are not allowed in values")
                if _SHELL_ANYWHERE.match(text.strip()):
                    raise _refuse(where, f"field {key!r}: shell() values are never executed")
            par = declared.get(key)
            if par is None:
                continue
            if par.type in ("list", "mlist") and isinstance(value, str) \
                    and not value.strip().startswith("["):
                value = [v.strip() for v in value.split(",") if v.strip()]
                user_parameters[key] = value
            try:
                par.validate(value)
            except (ValueError, TypeError, SyntaxError) as exc:
                raise CatalogError(f"{where}: field {key!r}: {exc}") from None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Shell command not executed")
            try:
                source = super().get(**user_parameters)
            except (ValueError, TypeError, SyntaxError) as exc:
                if isinstance(exc, S2IntakeError):
                    raise
                raise CatalogError(f"{where}: {exc}") from None
        if isinstance(source, Sentinel2Source):
            source.validate()  # eager: bad values fail here, not at the first to_dask()
        return source


class SafeYAMLFileCatalog(YAMLFileCatalog):
    """A v1 YAML file catalog checked by :func:`check_catalog` before intake parses it.

    Nested ``yaml_file_cat``/``YAMLFileCatalog`` entries are opened with this class too,
    ``getshell`` is always off, and entry errors name the entry and the field. Use it as a
    driver (``driver: s2intake.intake_source.SafeYAMLFileCatalog``) or through
    :func:`open_catalog`.
    """

    name = "s2intake_yaml_file_cat"

    def __init__(self, path: Any = None, *, extra_drivers: Iterable[str] = (),
                 **kwargs: Any) -> None:
        if kwargs.get("getshell"):
            raise CatalogSecurityError(f"catalog {path}: getshell=True is refused; s2intake "
                                       "never runs shell() from catalogs")
        kwargs["getshell"] = False
        self._extra_drivers = tuple(extra_drivers)
        super().__init__(path, **kwargs)

    def parse(self, text: str) -> None:
        """Check ``text`` (see :func:`check_catalog`), then let intake parse it."""
        where = f"catalog {self.path}"
        data = load_yaml(text, where)
        if data is None:
            raise CatalogError(f"{where}: the file is empty")
        if check_catalog(data, where, extra_drivers=self._extra_drivers) != 1:
            raise CatalogError(f"{where}: an intake 2 (version: 2) catalog; open it with "
                               "s2intake.open_catalog")
        self.getshell = False
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Shell command not executed")
            self._parse_data(text, data)
        for entry in self._entries.values():
            if isinstance(entry, LocalCatalogEntry) and not isinstance(entry, _SafeEntry):
                entry.__class__ = _SafeEntry
            plugins = getattr(entry, "_plugin", None)
            if isinstance(plugins, list):
                entry._plugin = [SafeYAMLFileCatalog if p is YAMLFileCatalog else p
                                 for p in plugins]
            entry.getshell = False

    def _parse_data(self, text: str, data: Mapping[str, Any]) -> None:
        """What intake's ``YAMLFileCatalog.parse`` does after loading the YAML, on the data
        already loaded (intake would parse the text again with PyYAML's pure-Python loader:
        ~20 ms per catalog)."""
        self.text = text
        result = CatalogParser(data, context={"root": self._dir}, getenv=self.getenv,
                               getshell=False)
        if result.errors:
            raise intake_exceptions.ValidationError(
                f"Catalog '{self.path}' has validation errors:\n\n" + "\n".join(result.errors),
                result.errors)
        cfg = result.data
        self._entries = {}
        shared = data.get("metadata", {}).get("parameters", {})
        self.user_parameters.update({name: UserParameter(name, **attrs)
                                     for name, attrs in shared.items()})
        for entry in cfg["data_sources"]:
            entry._catalog = self
            self._entries[entry.name] = entry
            entry._filesystem = self.filesystem
        self.metadata = {**self.metadata, **cfg.get("metadata", {})}
        self.name = self.name or cfg.get("name") or self.name_from_path
        self.description = self.description or cfg.get("description")


if _BaseReader is not None:
    from intake.readers.entry import Catalog as _V2Catalog
    from intake.readers.user_parameters import BaseUserParameter as _V2Parameter

    class SafeV2Catalog(_V2Catalog):
        """An intake 2 catalog whose parameter values are checked and whose errors name the
        entry and the field (what :func:`open_catalog` returns for ``version: 2`` files)."""

        def __getitem__(self, item: str) -> Any:
            where = f"catalog entry {item!r}"
            token = self.aliases.get(item, item)
            parameters = dict(self.user_parameters)
            if token in self.entries:
                parameters.update(self.entries[token].user_parameters)
            for key, value in self._up_overrides.items():
                for text in _strings(value):
                    if _V2_CODE.search(text) or _V2_FIELD_ACCESS.search(text):
                        raise _refuse(where, f"field {key!r}: {text!r}: templates are not "
                                      "allowed in values")
                par = parameters.get(key)
                if not isinstance(par, _V2Parameter):
                    continue
                try:
                    ok = par.validate(par.coerce(value))
                except (TypeError, ValueError) as exc:
                    raise CatalogError(f"{where}: field {key!r}: {exc}") from None
                if not ok:
                    raise CatalogError(f"{where}: field {key!r}: {value!r} is not a valid "
                                       f"value ({par.description or type(par).__name__})")
            try:
                reader = super().__getitem__(item)
            except KeyError:
                raise
            except (TypeError, ValueError) as exc:
                if isinstance(exc, S2IntakeError):
                    raise
                raise CatalogError(f"{where}: {exc}") from None
            if isinstance(reader, Sentinel2Reader):
                reader.metadata.setdefault("name", item)
                reader.source().validate()  # eager: bad values fail here
            return reader

        def __call__(self, **kwargs: Any) -> SafeV2Catalog:
            new = super().__call__(**kwargs)
            new.__class__ = SafeV2Catalog
            return new

else:  # pragma: no cover
    SafeV2Catalog = None  # type: ignore[assignment,misc]


def open_catalog(path: str | os.PathLike, *, getenv: bool = True,
                 extra_drivers: Iterable[str] = (), **kwargs: Any) -> Any:
    """Open an Intake YAML catalog (v1 or intake 2's ``version: 2``) that cannot run code.

    Parameters
    ----------
    path:
        Path or URL of the YAML file.
    getenv:
        Let ``env(NAME)`` parameter defaults read environment variables (default on;
        shipped catalogs take their STAC URL from ``$S2INTAKE_STAC_URL`` this way).
    extra_drivers:
        Other v1 driver names / v2 reader classes to accept (they are trusted code).
    **kwargs:
        Passed to :class:`SafeYAMLFileCatalog` (v1) or ``fsspec`` (v2). ``getshell=True``
        is refused.

    Returns
    -------
    intake.catalog.Catalog or intake.readers.entry.Catalog

    Raises
    ------
    CatalogSecurityError
        If the YAML holds python tags, ``cls``/``plugins`` keys, ``shell()`` defaults,
        foreign drivers/readers or templates other than declared parameters.
    CatalogError
        If the file is missing or is not a catalog.
    """
    import fsspec

    if kwargs.get("getshell"):
        raise CatalogSecurityError(f"catalog {path}: getshell=True is refused; s2intake "
                                   "never runs shell() from catalogs")
    kwargs.pop("getshell", None)
    text_path = os.fspath(path)
    where = f"catalog {text_path}"
    try:
        with fsspec.open(text_path, "rt", **kwargs.get("storage_options", {})) as f:
            text = f.read()
    except FileNotFoundError:
        raise CatalogError(f"{where}: file not found") from None
    except OSError as exc:
        raise CatalogError(f"{where}: cannot read: {exc}") from None
    data = load_yaml(text, where)
    if data is None:
        raise CatalogError(f"{where}: the file is empty")
    version = check_catalog(data, where, extra_drivers=extra_drivers)
    if version == 2:
        if SafeV2Catalog is None:  # pragma: no cover - intake < 2
            raise CatalogError(f"{where}: a version 2 catalog needs intake >= 2")
        try:
            cat = SafeV2Catalog.from_yaml_file(text_path, **kwargs.get("storage_options", {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CatalogError(f"{where}: not a valid intake 2 catalog: {exc}") from None
        cat.__class__ = SafeV2Catalog
        return cat
    try:
        return SafeYAMLFileCatalog(text_path, getenv=getenv, extra_drivers=extra_drivers,
                                   **kwargs)
    except S2IntakeError:
        raise
    except Exception as exc:  # intake's ValidationError and friends
        raise CatalogError(f"{where}: {exc}") from None
