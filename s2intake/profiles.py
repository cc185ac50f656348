"""What differs between Earth Search v1 and v0: collection ids, band keys, properties, offsets.

A :class:`Profile` lets the rest of the library speak common band names (``red``, ``nir``,
``scl``...) and one set of search arguments whatever the endpoint version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ProfileError

#: The real Earth Search; overridden by the ``S2INTAKE_STAC_URL`` environment variable.
EARTH_SEARCH_V1 = "https://earth-search.aws.element84.com/v1"
EARTH_SEARCH_V0 = "https://earth-search.aws.element84.com/v0"
STAC_URL_ENV = "S2INTAKE_STAC_URL"

# common name -> (v1 asset key, v0 asset key, native resolution in metres)
BANDS: dict[str, tuple[str, str, int]] = {
    "coastal": ("coastal", "B01", 60),
    "blue": ("blue", "B02", 10),
    "green": ("green", "B03", 10),
    "red": ("red", "B04", 10),
    "rededge1": ("rededge1", "B05", 20),
    "rededge2": ("rededge2", "B06", 20),
    "rededge3": ("rededge3", "B07", 20),
    "nir": ("nir", "B08", 10),
    "nir08": ("nir08", "B8A", 20),
    "nir09": ("nir09", "B09", 60),
    "swir16": ("swir16", "B11", 20),
    "swir22": ("swir22", "B12", 20),
    "scl": ("scl", "SCL", 20),
    "aot": ("aot", "AOT", 20),
    "wvp": ("wvp", "WVP", 20),
}
_BY_V0 = {v0.lower(): common for common, (_, v0, _) in BANDS.items()}

#: Reflectance scale of L2A DNs (reflectance = DN * scale + offset).
REFLECTANCE_SCALE = 1e-4
#: DN offset that processing baseline >= 04.00 adds to L2A reflectance bands.
BASELINE_04_DN_OFFSET = 1000
_REFLECTANCE = {"coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir",
                "nir08", "nir09", "swir16", "swir22"}


@dataclass(frozen=True)
class Profile:
    """How one Earth Search version names things.

    Attributes
    ----------
    name:
        ``"v1"`` or ``"v0"``.
    collection:
        Default Sentinel-2 L2A COG collection id on that endpoint.
    collections:
        All collection ids this profile knows how to read.
    key_index:
        0 to use the v1 asset keys of :data:`BANDS`, 1 for the v0 keys.
    grid_square_property:
        Property holding the MGRS grid square (``"FJ"``).
    """

    name: str
    collection: str
    collections: tuple[str, ...]
    key_index: int
    grid_square_property: str
    baseline_property: str
    boa_applied_property: str
    data_coverage_property: str | None
    extra_query: Mapping[str, Any] = field(default_factory=dict)

    def asset_key(self, band: str) -> str:
        """Asset key of ``band`` (a common name, or either version's key) on this profile."""
        common = canonical_band(band)
        return BANDS[common][self.key_index]

    def cloud_query(self, max_cloud: float | None) -> dict[str, dict[str, Any]]:
        """The ``query`` extension dict for a cloud-cover limit (plus profile defaults)."""
        query: dict[str, dict[str, Any]] = {k: dict(v) for k, v in self.extra_query.items()}
        if max_cloud is not None:
            query["eo:cloud_cover"] = {"lte": float(max_cloud)}
        return query

    def dn_offset(self, item_properties: Mapping[str, Any], asset: Mapping[str, Any],
                  band: str) -> int:
        """DN offset to *add* so that this item's values compare with pre-04.00 ones.

        Baseline >= 04.00 stores ``reflectance * 10000 + 1000``; this returns ``-1000`` for
        such reflectance bands and ``0`` otherwise. Earth Search's ``boa_offset_applied`` flag
        is trusted first (the maintainers call it the truth), then the ``raster:bands``
        offset, then the processing baseline.
        """
        if canonical_band(band) not in _REFLECTANCE:
            return 0
        applied = item_properties.get(self.boa_applied_property)
        baseline = processing_baseline(item_properties)
        rb = (asset.get("raster:bands") or [{}])[0]
        offset = rb.get("offset")
        scale = rb.get("scale") or REFLECTANCE_SCALE
        if applied is True:
            if offset:
                return round(offset / scale)
            return -BASELINE_04_DN_OFFSET if baseline is None or baseline >= (4, 0) else 0
        if applied is False:
            return 0
        if offset:
            return round(offset / scale)
        if baseline is not None and baseline >= (4, 0):
            return -BASELINE_04_DN_OFFSET
        return 0


V1 = Profile(
    name="v1",
    collection="sentinel-2-l2a",
    collections=("sentinel-2-l2a", "sentinel-2-c1-l2a", "sentinel-2-pre-c1-l2a"),
    key_index=0,
    grid_square_property="mgrs:grid_square",
    baseline_property="s2:processing_baseline",
    boa_applied_property="earthsearch:boa_offset_applied",
    data_coverage_property=None,
)
V0 = Profile(
    name="v0",
    collection="sentinel-s2-l2a-cogs",
    collections=("sentinel-s2-l2a-cogs",),
    key_index=1,
    grid_square_property="sentinel:grid_square",
    baseline_property="sentinel:processing_baseline",
    boa_applied_property="sentinel:boa_offset_applied",
    data_coverage_property="sentinel:data_coverage",
    extra_query={"sentinel:valid_cloud_cover": {"eq": True}},
)
PROFILES: dict[str, Profile] = {"v1": V1, "v0": V0}


def canonical_band(band: str) -> str:
    """Common band name for ``band`` given as a common name or either version's asset key.

    Raises
    ------
    ProfileError
        If the band is unknown, naming the bands that exist.
    """
    key = band.strip().lower()
    if key in BANDS:
        return key
    if key in _BY_V0:
        return _BY_V0[key]
    if key == "b8a":
        return "nir08"
    raise ProfileError(
        f"unknown band {band!r}; known bands: {', '.join(BANDS)} (or B01..B12, B8A, SCL)"
    )


def canonical_bands(bands: str | Sequence[str]) -> list[str]:
    """:func:`canonical_band` for each band; a single comma-separated string is split."""
    if isinstance(bands, str):
        bands = [b for b in bands.split(",") if b.strip()]
    if not bands:
        raise ProfileError("no band given")
    return [canonical_band(b) for b in bands]


def profile_for(collection: str | None = None, url: str | None = None) -> Profile:
    """Pick the profile from a collection id, or else from the endpoint URL (``/v0``)."""
    if collection:
        for profile in PROFILES.values():
            if collection in profile.collections:
                return profile
        raise ProfileError(
            f"unknown collection {collection!r}; s2intake reads "
            + ", ".join(c for p in PROFILES.values() for c in p.collections)
        )
    if url and re.search(r"/v0/?$", url):
        return V0
    return V1


def default_stac_url() -> str:
    """The STAC API used when none is given: ``$S2INTAKE_STAC_URL`` or Earth Search v1."""
    return os.environ.get(STAC_URL_ENV) or EARTH_SEARCH_V1


def processing_baseline(properties: Mapping[str, Any]) -> tuple[int, int] | None:
    """Processing baseline of an item as ``(major, minor)``, from properties or product id."""
    for key in ("s2:processing_baseline", "sentinel:processing_baseline"):
        value = properties.get(key)
        if value:
            match = re.match(r"(\d+)\.(\d+)", str(value))
            if match:
                return int(match[1]), int(match[2])
    for key in ("s2:product_uri", "sentinel:product_id"):
        value = properties.get(key)
        if value:
            match = re.search(r"_N(\d{2})(\d{2})_", str(value))
            if match:
                return int(match[1]), int(match[2])
    return None


def detect_profile(item: Mapping[str, Any]) -> Profile:
    """Profile of one item dict, from its collection or its asset keys."""
    collection = item.get("collection")
    if collection:
        for profile in PROFILES.values():
            if collection in profile.collections:
                return profile
    assets = item.get("assets", {})
    if "B04" in assets or "B02" in assets:
        return V0
    return V1
