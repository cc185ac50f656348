"""s2intake: Sentinel-2 L2A from Earth Search as lazy xarray datasets, clipped, rendered, animated.

The data's way through, one function per stage::

    aoi = read_aoi("catalogs/berry_creek.geojson")
    found = search(aoi, "2020-01-01/2021-06-30", max_cloud=10)      # STAC API -> items
    table = items_to_geodataframe(found)                             # items table
    ds = stack(found, ["red", "green", "blue"])                      # lazy (time, y, x)
    ds.s2.clip_aoi().s2.to_gif("fire.gif")                           # clip -> render

Importing the package registers the ``ds.s2`` / ``da.s2`` accessors.
"""

from __future__ import annotations

from . import accessor as _accessor  # noqa: F401  (registers ds.s2 / da.s2)
from .aoi import AOI, read_aoi
from .burn import dnbr, nbr, severity_table
from .clip import clip
from .errors import (
    AOIError,
    CatalogError,
    EmptySearchError,
    ProfileError,
    ReadError,
    RenderError,
    S2IntakeError,
    SearchError,
    SecurityError,
    StackError,
)
from .freeze import freeze, open_snapshot
from .items import items_to_geodataframe
from .masking import clear_fraction, filter_clear, mask_clouds
from .memory import compute, trim_memory
from .render import to_gif, to_rgb
from .search import SearchResult, search
from .stack import stack

__version__ = "0.1.0"

__all__ = [
    "AOI", "AOIError", "CatalogError", "EmptySearchError", "ProfileError", "ReadError",
    "RenderError", "S2IntakeError", "SearchError", "SearchResult", "SecurityError",
    "StackError", "clear_fraction", "clip", "compute", "dnbr", "filter_clear", "freeze",
    "items_to_geodataframe", "load", "mask_clouds", "nbr", "open_catalog", "open_snapshot",
    "read_aoi", "search", "severity_table", "stack", "to_gif", "to_rgb", "trim_memory",
]


def load(aoi=None, datetime=None, *, bands=("red", "green", "blue"), max_cloud=None,
         collection=None, url=None, query=None, filter=None, **stack_kwargs):
    """Search and stack in one call; returns the lazy Dataset (see :func:`stack`)."""
    found = search(aoi, datetime, max_cloud=max_cloud, collection=collection, url=url,
                   query=query, filter=filter)
    return stack(found, bands, **stack_kwargs)


def open_catalog(path, **kwargs):
    """Open an Intake catalog (v1 or intake 2 YAML) that cannot run code.

    See :func:`s2intake.intake_source.open_catalog`: ``yaml.safe_load``, no ``shell()``,
    no ``cls``/``plugins``, only declared parameters templated. Intake is imported here,
    on first use, not when s2intake is.
    """
    from .intake_source import open_catalog as _open_catalog

    return _open_catalog(path, **kwargs)
