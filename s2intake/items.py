"""Items table: STAC items -> GeoDataFrame indexed by acquisition datetime, and its plots."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely.geometry

from .errors import S2IntakeError

_TIME_COLUMNS = ("properties.datetime", "properties.created", "properties.updated")


def items_to_geodataframe(items: Any) -> gpd.GeoDataFrame:
    """Flatten STAC items into a GeoDataFrame, as the Berry Creek blog's helper did.

    Nested fields become dotted columns (``properties.eo:cloud_cover``,
    ``assets.red.href``...); ``datetime``, ``created`` and ``updated`` are parsed to UTC
    timestamps and the frame is indexed by acquisition datetime, sorted. The CRS is EPSG:4326.

    Parameters
    ----------
    items:
        A :class:`~s2intake.search.SearchResult`, a pystac ``ItemCollection``, or item dicts.
    """
    from .search import items_from

    dicts = items_from(items)
    if not dicts:
        raise S2IntakeError("no items to tabulate")
    rows = []
    for item in dicts:
        row = copy.deepcopy(item)
        row["geometry"] = shapely.geometry.shape(row["geometry"]) if row.get("geometry") \
            else None
        rows.append(row)
    frame = pd.json_normalize(rows, max_level=None)
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
    for column in _TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame = frame.set_index("properties.datetime").sort_index()
    frame.index.name = "datetime"
    return frame


def _hvplot() -> Any:
    try:
        import hvplot.pandas  # noqa: F401
    except ImportError:
        raise S2IntakeError("interactive plots need the plot extra: "
                            "pip install 's2intake[plot]'") from None
    return hvplot


def plot_footprints(items: Any, aoi: Any = None, **kwargs: Any) -> Any:
    """Item footprints (blue) and the AOI (red) on a map, with hvplot."""
    from .aoi import read_aoi

    _hvplot()
    table = items if isinstance(items, gpd.GeoDataFrame) else items_to_geodataframe(items)
    opts = dict(geo=True, tiles="OSM", xaxis=None, yaxis=None, frame_width=600,
                frame_height=600, line_width=2)
    opts.update(kwargs)
    plot = table[["geometry"]].reset_index(drop=True).hvplot.paths(**opts)
    if aoi is not None or getattr(items, "aoi", None) is not None:
        area = read_aoi(aoi if aoi is not None else items.aoi)
        frame = gpd.GeoDataFrame(geometry=[area.geometry], crs="EPSG:4326")
        plot = plot * frame.hvplot.paths(geo=True, line_width=3, line_color="red")
    return plot


def plot_cloud_cover(items: Any, fields: Iterable[str] = ("eo:cloud_cover",
                                                          "sentinel:data_coverage"),
                     **kwargs: Any) -> Any:
    """Cloud cover (and data coverage where present) over time, with hvplot."""
    _hvplot()
    table = items if isinstance(items, gpd.GeoDataFrame) else items_to_geodataframe(items)
    frame = pd.DataFrame(table.drop(columns="geometry"))
    plot = None
    for name in fields:
        column = f"properties.{name}"
        if column not in frame:
            continue
        layer = frame.hvplot(y=column, label=name, frame_height=400, frame_width=700, **kwargs)
        plot = layer if plot is None else plot * layer
    if plot is None:
        raise S2IntakeError(f"none of {list(fields)} is in the items' properties")
    return plot.opts(ylabel="percent")
