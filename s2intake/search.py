"""STAC search: Earth Search v1/v0 (or any STAC API, or a local item file) -> items.

The ``query`` extension or a CQL2 ``filter`` is chosen from the API's conformance classes;
paging is followed to the end, transient HTTP failures are retried with backoff, and an
interrupted search raises instead of handing back a partial list.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pystac
import requests
import shapely.geometry
from pystac import Link
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from requests import Request

from .aoi import AOI, read_aoi
from .errors import EmptySearchError, ProfileError, SearchError
from .gdal_env import is_secret, redact_url, redact_urls, scrub, secret_values
from .profiles import Profile, default_stac_url, profile_for
from .rangeio import MAX_RETRY_AFTER
from .rangeio import retry_after_seconds as _retry_after

log = logging.getLogger(__name__)

#: HTTP statuses worth another try (throttling and gateway hiccups).
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class SearchResult:
    """What a search found, with what is needed to stack it.

    Attributes
    ----------
    items:
        The matched items as dicts, sorted by datetime then id.
    aoi:
        The area searched (travels on into the stack's attrs), or ``None``.
    profile:
        Earth Search profile (v1 or v0) the items follow.
    url:
        Where they came from (STAC API URL or local file).
    matched:
        ``numberMatched`` reported by the API, when it reports one.
    mode:
        ``"query"``, ``"filter"`` or ``"local"``: how the property filter was sent.
    """

    items: list[dict[str, Any]]
    aoi: AOI | None
    profile: Profile
    url: str
    matched: int | None = None
    mode: str = "query"
    parameters: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def item_collection(self) -> pystac.ItemCollection:
        """The items as a pystac ``ItemCollection``."""
        return pystac.ItemCollection([pystac.Item.from_dict(i) for i in self.items])

    def to_geodataframe(self):
        """Items table (GeoDataFrame indexed by acquisition datetime)."""
        from .items import items_to_geodataframe

        return items_to_geodataframe(self.items)

    def __repr__(self) -> str:
        span = ""
        if self.items:
            span = f", {self.items[0]['properties']['datetime'][:10]}.." \
                   f"{self.items[-1]['properties']['datetime'][:10]}"
        return f"<SearchResult {len(self.items)} items from {self.url} ({self.mode}{span})>"


def parse_datetime(value: Any) -> str | None:
    """Normalise a datetime range to the STAC ``start/end`` string (``..`` for open ends).

    Accepts ``"2020-01-01/2021-06-30"``, ``"2020-09-08"``, a ``(start, end)`` pair of strings,
    dates or datetimes (``None`` for an open end), or ``None`` for no limit.

    Raises
    ------
    SearchError
        If a part cannot be parsed or the start is after the end.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = value.split("/")
        if len(parts) > 2:
            raise SearchError(f"datetime {value!r}: expected 'start/end'")
        if len(parts) == 1:
            start = _parse_instant(parts[0], value)
            if start is None:
                return None
            day_only = re.fullmatch(r"\d{4}-\d{2}-\d{2}", parts[0].strip())
            end = start + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1) \
                if day_only else start
            return f"{_fmt(start)}/{_fmt(end)}"
        start_raw, end_raw = parts
    elif isinstance(value, Sequence) and len(value) == 2:
        start_raw, end_raw = value
    else:
        raise SearchError(f"datetime {value!r}: give 'start/end', a (start, end) pair or None")
    start = _parse_instant(start_raw, value)
    end = _parse_instant(end_raw, value, end=True)
    if start is not None and end is not None and start > end:
        raise SearchError(f"datetime {value!r}: start {_fmt(start)} is after end {_fmt(end)}")
    return f"{_fmt(start)}/{_fmt(end)}"


def _parse_instant(raw: Any, whole: Any, end: bool = False) -> pd.Timestamp | None:
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "..")):
        return None
    try:
        stamp = pd.Timestamp(raw)
    except (ValueError, TypeError):
        raise SearchError(f"datetime {whole!r}: cannot parse {raw!r}") from None
    if pd.isna(stamp):
        raise SearchError(f"datetime {whole!r}: cannot parse {raw!r}")
    stamp = stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")
    is_day = isinstance(raw, dt.date) and not isinstance(raw, dt.datetime)
    is_day = is_day or (isinstance(raw, str) and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", raw))
    if end and is_day:
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return stamp


def _fmt(stamp: pd.Timestamp | None) -> str:
    if stamp is None:
        return ".."
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


#: Default bound on the time spent on one request, retries included, in seconds.
DEFAULT_DEADLINE = 120.0


class RequestFailed(APIError):
    """A STAC API request failed (after its retries, or at once for a permanent error).

    Attributes
    ----------
    status_code:
        The last HTTP status received, ``None`` for connection errors, timeouts and
        truncated or undecodable bodies.
    url, method:
        What was requested (URL credentials masked).
    attempts:
        How many times it was sent.
    """

    def __init__(self, message: str, *, status_code: int | None = None, url: str = "",
                 method: str = "GET", attempts: int = 1) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url
        self.method = method
        self.attempts = attempts


class _Transient(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, reason: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


class RetryingStacApiIO(StacApiIO):
    """pystac-client I/O that retries every STAC API request, and never logs headers.

    A request is retried on HTTP 429/500/502/503/504, connection errors (refused, reset),
    timeouts (``timeout`` seconds without a byte), truncated bodies and bodies that are not
    UTF-8 JSON objects. Waits grow as ``backoff * 2**n`` (with jitter, at most
    ``max_backoff``), or follow ``Retry-After`` (at most :data:`MAX_RETRY_AFTER`) when the
    server sends one. A request is sent at most ``retries + 1`` times and no new attempt
    starts after ``deadline`` seconds; then :class:`RequestFailed` is raised with the URL,
    the number of attempts and the last HTTP status. Other statuses (400, 404...) fail at
    once. Every retry is logged at INFO on ``s2intake.search`` (URL, reason, wait) and
    counted in :attr:`retried`.

    Parameters
    ----------
    headers:
        Sent with every request (values never logged nor shown in errors).
    timeout:
        Per-request socket timeout, seconds.
    retries, backoff, max_backoff, deadline:
        Retry policy, see above.
    """

    def __init__(self, headers: Mapping[str, str] | None = None, *, timeout: float = 30,
                 retries: int = 5, backoff: float = 0.5, max_backoff: float = 8.0,
                 deadline: float = DEFAULT_DEADLINE) -> None:
        super().__init__(headers=dict(headers or {}), timeout=timeout, max_retries=None)
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.deadline = deadline
        self._secrets = secret_values({f"HEADER_{k}": v for k, v in (headers or {}).items()
                                       if is_secret(k) or k.lower() in _SECRET_HEADERS})
        self.retried: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _clean(self, text: str) -> str:
        return scrub(redact_urls(text), self._secrets)

    def request(self, href: str, method: str | None = None,
                headers: dict[str, str] | None = None,
                parameters: dict[str, Any] | None = None) -> str:
        """Send one request (no retry here); raise :class:`_Transient` or ``APIError``."""
        method = (method or "GET").upper()
        if method in ("POST", "PUT", "PATCH"):
            request = Request(method=method, url=href, headers=headers, json=parameters)
        else:
            request = Request(method=method, url=href, headers=headers,
                              params=dict(parameters or {}))
        modified = self._req_modifier(request) if self._req_modifier else None
        prepped = self.session.prepare_request(modified or request)
        log.debug("%s %s", prepped.method, redact_url(str(prepped.url)))
        settings = self.session.merge_environment_settings(
            prepped.url, proxies={}, stream=None, verify=True, cert=None)
        try:
            resp = self.session.send(prepped, timeout=self.timeout, **settings)
            body = resp.content  # a truncated body raises here (ChunkedEncodingError)
        except requests.Timeout:
            raise _Transient(f"no answer within {self.timeout} s") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            raise _Transient(self._clean(_short(exc, 200))) from None
        if resp.status_code in RETRY_STATUSES:
            raise _Transient(f"HTTP {resp.status_code} {resp.reason or ''}".strip(),
                             resp.status_code, _retry_after(resp.headers.get("Retry-After")))
        if not 200 <= resp.status_code < 300:
            raise RequestFailed(
                f"{method} {redact_url(href)} answered HTTP {resp.status_code} "
                f"{resp.reason or ''}: {self._clean(_short(Exception(resp.text), 200))}",
                status_code=resp.status_code, url=redact_url(href), method=method)
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Transient("the answer is not UTF-8 (garbled body)",
                             resp.status_code) from None

    def read_json(self, source: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Read a JSON object from ``source`` (URL or Link), retrying as described above."""
        if isinstance(source, Link):
            link = source.to_dict()
            method, url = str(link.get("method", "GET")).upper(), str(link["href"])
        else:
            method = str(kwargs.get("method") or (args[0] if args else None) or "GET").upper()
            url = str(source)
        started = time.monotonic()
        delay = self.backoff
        last: _Transient | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                text = self.read_text(source, *args, **kwargs)
                try:
                    data = json.loads(text)
                except json.JSONDecodeError:
                    raise _Transient("the answer is not valid JSON (truncated or garbled "
                                     "body)") from None
                if not isinstance(data, dict):
                    raise _Transient("the answer is not a JSON object")
                return data
            except _Transient as exc:
                last = exc
            elapsed = time.monotonic() - started
            wait = min(delay, self.max_backoff) * random.uniform(0.5, 1.0)
            if last.retry_after is not None:
                wait = max(wait, min(last.retry_after, MAX_RETRY_AFTER))
            if attempt > self.retries or elapsed + wait > self.deadline:
                break
            with self._lock:
                self.retried[str(last.status or last)] += 1
            log.info("retrying %s %s in %.1f s (attempt %d of %d): %s", method,
                     redact_url(url), wait, attempt + 1, self.retries + 1, last)
            time.sleep(wait)
            delay *= 2
        status = f"last HTTP status {last.status}" if last.status else "no HTTP status"
        raise RequestFailed(
            f"{method} {redact_url(url)} failed after {attempt} attempt"
            f"{'s' if attempt > 1 else ''} in {time.monotonic() - started:.1f} s "
            f"({status}): {last}", status_code=last.status, url=redact_url(url),
            method=method, attempts=attempt)


#: Header names whose values are credentials even when the name does not say so.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key",
                             "api-key", "apikey", "ocp-apim-subscription-key"})


def open_client(url: str, *, retries: int = 5, timeout: float = 30,
                headers: Mapping[str, str] | None = None,
                deadline: float = DEFAULT_DEADLINE):
    """Open a pystac-client ``Client`` with retries, a timeout and v0's missing conformance.

    Every request of the client (landing page, collections, search pages) goes through
    :class:`RetryingStacApiIO`.

    Raises
    ------
    SearchError
        If the API cannot be reached or does not answer like a STAC API.
    """
    from pystac_client import Client

    stac_io = RetryingStacApiIO(headers, timeout=timeout, retries=retries, deadline=deadline)
    where = redact_url(url)
    try:
        client = Client.open(url, stac_io=stac_io, timeout=timeout)
    except RequestFailed as exc:
        raise SearchError(f"cannot open the STAC API at {where}: {exc}") from None
    except Exception as exc:  # pystac-client wraps HTTP errors in APIError, JSON in others
        raise SearchError(f"cannot open STAC API at {where}: "
                          f"{stac_io._clean(_short(exc))}") from None
    if not client.get_conforms_to():
        # Earth Search v0 declares no conformance at all but does speak item-search/query.
        client.add_conforms_to("ITEM_SEARCH")
        client.add_conforms_to("QUERY")
    return client


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def search(
    aoi: Any = None,
    datetime: Any = None,
    *,
    max_cloud: float | None = None,
    collection: str | None = None,
    url: str | None = None,
    query: Mapping[str, Any] | Sequence[str] | None = None,
    filter: Mapping[str, Any] | str | None = None,  # noqa: A002 - the STAC name
    ids: Sequence[str] | None = None,
    limit: int = 100,
    max_items: int | None = None,
    retries: int = 5,
    timeout: float = 30,
    headers: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    allow_empty: bool = False,
) -> SearchResult:
    """Search Earth Search (or any STAC API) for Sentinel-2 L2A items over an AOI.

    Parameters
    ----------
    aoi:
        Anything :func:`s2intake.aoi.read_aoi` accepts; sent as ``intersects``.
    datetime:
        A range, see :func:`parse_datetime`.
    max_cloud:
        Largest ``eo:cloud_cover`` (percent) to keep.
    collection:
        Collection id; defaults to the profile's (``sentinel-2-l2a`` on v1,
        ``sentinel-s2-l2a-cogs`` on v0, picked from the URL).
    url:
        STAC API root; default ``$S2INTAKE_STAC_URL`` or Earth Search v1. A path to a local
        JSON FeatureCollection/ItemCollection searches that file instead (used for the
        embedded sample and frozen snapshots).
    query:
        Extra ``query`` extension terms, dict form or Earth Search v0's list-of-strings form.
    filter:
        A CQL2-JSON (dict) or CQL2-text filter. Refused when the API does not declare the
        filter extension, since such APIs (Earth Search v1) silently ignore it.
    limit, max_items:
        Page size and an optional cap on the number of items.
    retries, timeout:
        HTTP retries with exponential backoff (429/5xx, resets) and per-request timeout.
    progress:
        Called with the running item count after each page.
    allow_empty:
        Return an empty result instead of raising :class:`EmptySearchError`.

    Returns
    -------
    SearchResult
    """
    url = url or default_stac_url()
    area = read_aoi(aoi) if aoi is not None else None
    when = parse_datetime(datetime)
    if limit < 1:
        raise SearchError(f"limit must be >= 1, got {limit}")
    if max_cloud is not None and not 0 <= float(max_cloud) <= 100:
        raise SearchError(f"max_cloud must be between 0 and 100, got {max_cloud}")
    local = _local_source(url)
    profile = profile_for(collection, None if local else url)
    collection = collection or profile.collection
    parameters = {"collection": collection, "datetime": when, "max_cloud": max_cloud,
                  "query": query, "filter": filter, "ids": ids}
    if local is not None:
        items = _search_local(local, area, when, collection, profile, max_cloud, query, filter,
                              ids)
        matched, mode = len(items), "local"
        if max_items is not None:
            items = items[:max_items]
    else:
        items, matched, mode = _search_api(url, area, when, collection, profile, max_cloud,
                                           query, filter, ids, limit, max_items, retries,
                                           timeout, headers, progress)
    items.sort(key=lambda i: (i["properties"].get("datetime") or "", i["id"]))
    if not items and not allow_empty:
        raise EmptySearchError(
            f"no {collection} item at {url} matched"
            + "".join(f" {k}={v!r}" for k, v in parameters.items() if v not in (None, {}, []))
            + (f" over AOI bounds {tuple(round(b, 4) for b in area.bounds)}" if area else "")
        )
    log.info("%d items matched at %s", len(items), url)
    return SearchResult(items, area, profile, url, matched, mode, parameters)


def _search_api(url, area, when, collection, profile, max_cloud, query, filter, ids, limit,
                max_items, retries, timeout, headers, progress):
    client = open_client(url, retries=retries, timeout=timeout, headers=headers)
    _check_collection(client, url, collection)
    user_query = _normalise_query(query)
    mode = "query"
    kwargs: dict[str, Any] = {}
    if filter is not None:
        if not client.conforms_to("FILTER"):
            raise SearchError(
                f"the STAC API at {url} does not declare the CQL2 filter extension, so it "
                "would ignore filter= and return unfiltered items (Earth Search v1 does "
                "exactly that); use query= (or max_cloud=) instead"
            )
        kwargs["filter"] = filter
        kwargs["filter_lang"] = "cql2-text" if isinstance(filter, str) else "cql2-json"
        mode = "filter"
    cloud_query = profile.cloud_query(max_cloud)
    if client.conforms_to("QUERY") or not client.conforms_to("FILTER"):
        merged = {**cloud_query, **user_query}
        if merged:
            kwargs["query"] = merged
    else:
        # A filter-only API: express the cloud limit in CQL2 and AND it with the user's.
        terms = [{"op": "<=", "args": [{"property": "eo:cloud_cover"}, float(max_cloud)]}] \
            if max_cloud is not None else []
        if user_query:
            raise SearchError(f"the STAC API at {url} does not support the query extension; "
                              "give a CQL2 filter= instead of query=")
        if terms:
            if filter is not None and not isinstance(filter, str):
                terms.append(dict(filter))
            elif filter is not None:
                raise SearchError("combine max_cloud with a CQL2-JSON filter, not CQL2 text, "
                                  f"on {url}")
            kwargs["filter"] = terms[0] if len(terms) == 1 else {"op": "and", "args": terms}
            kwargs["filter_lang"] = "cql2-json"
            mode = "filter"
    search = client.search(collections=[collection], intersects=area.geojson if area else None,
                           datetime=when, ids=list(ids) if ids else None, limit=limit,
                           max_items=max_items, **kwargs)
    items: list[dict[str, Any]] = []
    pages = 0
    matched: int | None = None
    try:
        for page in search.pages_as_dicts():
            pages += 1
            if pages == 1:  # the count comes with the first page: no extra request
                matched = _page_matched(page)
            items.extend(page.get("features", []))
            if progress is not None:
                progress(len(items))
            if max_items is not None and len(items) >= max_items:
                items = items[:max_items]
                break
    except (APIError, requests.RequestException, json.JSONDecodeError, ValueError) as exc:
        status = getattr(exc, "status_code", None)
        clean = getattr(client._stac_io, "_clean", str)
        raise SearchError(
            f"search at {redact_url(url)} was interrupted on page {pages + 1} after "
            f"{len(items)} items (not returning a partial list"
            + (f"; HTTP status {status}" if status else "") + f"): {clean(_short(exc))}"
        ) from None
    if matched is not None and max_items is None and len(items) < matched:
        raise SearchError(f"search at {url} returned {len(items)} items but the API reported "
                          f"{matched} matches; the paging stopped early")
    seen: set[str] = set()
    unique = []
    for item in items:
        if item["id"] not in seen:
            seen.add(item["id"])
            unique.append(item)
    return unique, matched, mode


class _CollectionMissing(LookupError):
    pass


def _page_matched(page: Mapping[str, Any]) -> int | None:
    """``numberMatched`` (or v0's ``context.matched``) of a search page, if reported."""
    value = page.get("numberMatched")
    if value is None and isinstance(page.get("context"), Mapping):
        value = page["context"].get("matched")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _check_collection(client: Any, url: str, collection: str) -> None:
    try:
        found = client.get_collection(collection)
        if found is None:  # pystac-client answers a 404 with None on some APIs
            raise _CollectionMissing(collection)
    except Exception as exc:  # noqa: BLE001 - 404 arrives as APIError or NotFoundError
        text = str(exc)
        status = getattr(exc, "status_code", None)
        # the status, not "404" in the text: a retried 503 on port 40404 is no 404
        missing = status == 404 or isinstance(exc, _CollectionMissing) or (
            "NotFound" in type(exc).__name__) or (
            status is None and not isinstance(exc, RequestFailed) and (
                "404" in text or "not found" in text.lower()))
        if missing:
            try:
                known = sorted(c.id for c in client.get_collections())
            except Exception:  # noqa: BLE001
                known = []
            raise ProfileError(
                f"collection {collection!r} not found at {url}"
                + (f"; it has {', '.join(known)}" if known else "")
            ) from None
        clean = getattr(client._stac_io, "_clean", str)
        raise SearchError(f"cannot read collection {collection!r} at {redact_url(url)}: "
                          f"{clean(_short(exc))}") from None


def _normalise_query(query: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """Dict-form query from the dict or Earth Search v0 list-of-strings form."""
    if query is None:
        return {}
    if isinstance(query, Mapping):
        return {k: dict(v) if isinstance(v, Mapping) else {"eq": v} for k, v in query.items()}
    if isinstance(query, str):
        query = [query]
    out: dict[str, dict[str, Any]] = {}
    ops = {"<=": "lte", ">=": "gte", "<>": "neq", "!=": "neq", "<": "lt", ">": "gt", "=": "eq"}
    for term in query:
        match = re.fullmatch(r"\s*([\w:.\-]+)\s*(<=|>=|<>|!=|<|>|=)\s*(.+?)\s*", term)
        if not match:
            raise SearchError(f"query term {term!r}: expected 'property<op>value' "
                              "with op one of = < <= > >= <>")
        prop, op, raw = match.groups()
        out.setdefault(prop, {})[ops[op]] = _coerce(raw)
    return out


def _coerce(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw.strip("'\"")


# ---------------------------------------------------------------- local item files


def _local_source(url: str) -> Path | None:
    if url.startswith(("http://", "https://")):
        return None
    path = Path(url[7:] if url.startswith("file://") else url).expanduser()
    if path.is_dir():
        path = path / "items.json"
    if not path.exists():
        raise SearchError(f"{url} is neither an http(s) STAC API nor an existing item file")
    return path


def load_item_file(path: Path) -> list[dict[str, Any]]:
    """Items from a local FeatureCollection/ItemCollection (or JSON list) file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SearchError(f"cannot read item file {path}: {exc}") from None
    features = data.get("features") if isinstance(data, dict) else data
    if not isinstance(features, list):
        raise SearchError(f"{path} holds no 'features' list")
    return features


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
}


def _search_local(path, area, when, collection, profile, max_cloud, query, filter, ids):
    if filter is not None:
        raise SearchError("CQL2 filter= is only supported against a STAC API; use query= on "
                          f"the local item file {path}")
    terms = {**profile.cloud_query(max_cloud), **_normalise_query(query)}
    start = end = None
    if when:
        first, last = when.split("/")
        start = None if first == ".." else pd.Timestamp(first)
        end = None if last == ".." else pd.Timestamp(last)
    geom = area.geometry if area else None
    out = []
    for item in load_item_file(path):
        props = item.get("properties", {})
        if item.get("collection", collection) != collection:
            continue
        if ids and item["id"] not in ids:
            continue
        stamp = pd.Timestamp(props["datetime"])
        if (start is not None and stamp < start) or (end is not None and stamp > end):
            continue
        if geom is not None and not shapely.geometry.shape(item["geometry"]).intersects(geom):
            continue
        if not _matches(props, terms):
            continue
        out.append(item)
    return out


def _matches(props: Mapping[str, Any], terms: Mapping[str, Mapping[str, Any]]) -> bool:
    for prop, ops in terms.items():
        if prop not in props:
            return False
        for op, value in ops.items():
            if op not in _OPS:
                raise SearchError(f"query operator {op!r} on {prop!r} is not supported")
            try:
                if not _OPS[op](props[prop], value):
                    return False
            except TypeError:
                return False
    return True


def items_from(source: Any) -> list[dict[str, Any]]:
    """Item dicts from a SearchResult, pystac ItemCollection/ItemSearch/Items, or dicts."""
    if isinstance(source, SearchResult):
        return source.items
    if hasattr(source, "item_collection") and callable(source.item_collection):
        source = source.item_collection()  # pystac-client ItemSearch
    if isinstance(source, pystac.ItemCollection):
        return [i.to_dict(transform_hrefs=False) for i in source.items]
    if isinstance(source, Mapping) and source.get("type") == "FeatureCollection":
        return list(source["features"])
    if isinstance(source, Iterable) and not isinstance(source, str | bytes | Mapping):
        out = []
        for item in source:
            if isinstance(item, pystac.Item):
                out.append(item.to_dict(transform_hrefs=False))
            elif isinstance(item, Mapping) and item.get("type") == "Feature":
                out.append(dict(item))
            else:
                raise SearchError(f"cannot use {type(item).__name__} as a STAC item")
        return out
    raise SearchError(f"cannot read STAC items from {type(source).__name__}")
