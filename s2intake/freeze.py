"""Reproducible catalogs: freeze a search into a pinned, offline item snapshot.

A STAC API answers differently over time: items are reprocessed (Earth Search v0 -> v1,
collection 1 reprocessing), ``eo:cloud_cover`` is recomputed, hrefs move. A notebook that
searches at run time cannot promise the same stack next year. :func:`freeze` writes what a
search found, in full, to one GeoJSON FeatureCollection::

    {"type": "FeatureCollection",
     "s2intake:snapshot": {"format": 1, "frozen_at": "...Z", "source": "<STAC API URL>",
                           "profile": "v1", "collection": "sentinel-2-l2a",
                           "parameters": {"datetime": ..., "max_cloud": ..., "query": ...},
                           "aoi": {GeoJSON geometry}, "count": 25, "ids": [...],
                           "features_sha256": "..."},
     "features": [<the items, untouched: ids, properties, asset hrefs>]}

Any FeatureCollection reader (pystac, geopandas, the ``url=`` of :func:`s2intake.search`) reads
it; the header says where and how it was made. :func:`open_snapshot` reads it back as the
:class:`~s2intake.search.SearchResult` it was frozen from, without any network, so
``stack(open_snapshot(path))`` is the dataset ``stack(search(...))`` gave on the day it was
frozen. In an Intake catalog, point an entry's ``url`` at the file, next to the catalog::

    sources:
      berry_creek_frozen:
        driver: sentinel2
        args:
          url: "{{ CATALOG_DIR }}/berry_creek.snapshot.json"
          ...

The snapshot pins metadata; the pixels still come from the asset hrefs it records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .aoi import read_aoi
from .errors import SearchError
from .profiles import PROFILES, detect_profile, profile_for
from .render import write_atomic

#: Key of the snapshot header in the FeatureCollection.
HEADER_KEY = "s2intake:snapshot"
SNAPSHOT_FORMAT = 1


def _features_digest(features: list[dict[str, Any]]) -> str:
    text = json.dumps(features, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _jsonable(value: Any) -> Any:
    """Search parameters as plain JSON (tuples to lists, AOIs to GeoJSON, others to text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if hasattr(value, "geojson"):
        return value.geojson
    return str(value)


def freeze(found: Any, path: str | os.PathLike, *, aoi: Any = None,
           parameters: Mapping[str, Any] | None = None, source: str | None = None,
           indent: int | None = 1) -> Path:
    """Write a pinned snapshot of a search's items (atomically) and return its path.

    Parameters
    ----------
    found:
        A :class:`~s2intake.search.SearchResult` (its AOI, URL and search parameters go into
        the header), or items (pystac ``ItemCollection``, item dicts, a FeatureCollection).
    path:
        Output file, e.g. ``catalogs/berry_creek.snapshot.json``. Written to a temporary
        file first and renamed, so a failure never leaves half a snapshot.
    aoi:
        AOI to record when ``found`` carries none.
    parameters:
        Search parameters to record (merged over those of a SearchResult).
    source:
        Where the items came from (default: the SearchResult's URL).
    indent:
        JSON indentation (``None`` for the most compact file).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    SearchError
        If there is no item to freeze or two items share an id.
    """
    from .search import SearchResult, items_from

    items = [dict(i) for i in items_from(found)]
    if not items:
        raise SearchError("nothing to freeze: the search found no item")
    items.sort(key=lambda i: (i.get("properties", {}).get("datetime") or "", i["id"]))
    ids = [i["id"] for i in items]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})
        raise SearchError(f"cannot freeze: item ids repeat ({', '.join(dupes)})")
    params: dict[str, Any] = {}
    area = read_aoi(aoi) if aoi is not None else None
    profile = detect_profile(items[0])
    if isinstance(found, SearchResult):
        params.update(found.parameters)
        area = area or found.aoi
        source = source or found.url
        profile = found.profile
        matched = found.matched
    else:
        matched = None
    params.update(parameters or {})
    collection = params.get("collection") or items[0].get("collection") or profile.collection
    header = {
        "format": SNAPSHOT_FORMAT,
        "frozen_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source,
        "profile": profile.name,
        "collection": collection,
        "parameters": _jsonable({k: v for k, v in params.items() if k != "collection"}),
        "matched": matched,
        "aoi": area.geojson if area is not None else None,
        "count": len(items),
        "ids": ids,
        "features_sha256": _features_digest(items),
        "generator": _generator(),
    }
    document = {"type": "FeatureCollection", HEADER_KEY: header, "features": items}
    payload = (json.dumps(document, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")
    return write_atomic(Path(path), payload)


def _generator() -> str:
    try:
        from importlib.metadata import version

        return f"s2intake {version('s2intake')}"
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        return "s2intake"


def read_snapshot(path: str | os.PathLike, *, verify: bool = True
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and items of a snapshot file.

    Parameters
    ----------
    path:
        A file written by :func:`freeze`.
    verify:
        Check the items against the header's ``features_sha256`` (a hand-edited or truncated
        snapshot is refused).

    Raises
    ------
    SearchError
        If the file is unreadable, is not a snapshot, or its items changed since it was frozen.
    """
    path = Path(path).expanduser()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SearchError(f"cannot read snapshot {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("features"), list):
        raise SearchError(f"{path} is not a FeatureCollection of items")
    header = document.get(HEADER_KEY)
    if not isinstance(header, dict):
        raise SearchError(f"{path} has no {HEADER_KEY!r} header: it was not written by "
                          "s2intake.freeze (search(url=...) still reads it as an item file)")
    if header.get("format") != SNAPSHOT_FORMAT:
        raise SearchError(f"{path}: snapshot format {header.get('format')!r} is not supported "
                          f"(this s2intake reads format {SNAPSHOT_FORMAT})")
    features = document["features"]
    if verify:
        digest = _features_digest(features)
        if digest != header.get("features_sha256"):
            raise SearchError(f"{path}: the items differ from those frozen on "
                              f"{header.get('frozen_at')} (sha256 mismatch); refreeze it or "
                              "pass verify=False")
        if [f.get("id") for f in features] != header.get("ids"):
            raise SearchError(f"{path}: the item ids differ from the header's list")
    return header, features


def open_snapshot(path: str | os.PathLike, *, verify: bool = True) -> Any:
    """Read a snapshot back as the :class:`~s2intake.search.SearchResult` it was frozen from.

    No network is used: the items, AOI, profile and search parameters all come from the file.
    ``stack(open_snapshot(path), bands)`` gives the same dataset as stacking the original
    search. To search *within* a snapshot instead (another date range or cloud limit), pass
    it as ``url`` to :func:`s2intake.search` together with ``collection=`` (the header's).

    Parameters
    ----------
    path:
        A file written by :func:`freeze`.
    verify:
        See :func:`read_snapshot`.

    Returns
    -------
    SearchResult
        ``url`` is the snapshot's path; ``parameters`` include the original ``source`` and
        ``frozen_at``. ``mode`` is ``"local"``, as for any local item file: the snapshot is a
        file you chose to trust, so local asset hrefs in it may be read.
    """
    from .search import SearchResult

    header, features = read_snapshot(path, verify=verify)
    area = read_aoi(header["aoi"]) if header.get("aoi") else None
    profile = PROFILES.get(str(header.get("profile")))
    if profile is None:
        profile = profile_for(header.get("collection"))
    parameters = dict(header.get("parameters") or {})
    parameters.update(collection=header.get("collection"), source=header.get("source"),
                      frozen_at=header.get("frozen_at"))
    return SearchResult(items=list(features), aoi=area, profile=profile,
                        url=str(Path(path).expanduser()), matched=header.get("matched"),
                        mode="local", parameters=parameters)
