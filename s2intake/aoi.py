"""Area of interest: any GeoJSON / shapely / GeoDataFrame input -> one validated lon/lat geometry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.geometry
import shapely.validation
from pyproj import CRS, Transformer

from .errors import AOIError

_GEOMETRY_TYPES = {"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString",
                   "MultiPolygon", "GeometryCollection"}


@dataclass(frozen=True)
class AOI:
    """A validated area of interest in lon/lat (EPSG:4326).

    Attributes
    ----------
    geometry:
        One shapely geometry (collections are dissolved into a single geometry).
    source:
        Short description of where it came from, used in error messages.
    """

    geometry: shapely.Geometry
    source: str = "<aoi>"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` in degrees."""
        return tuple(self.geometry.bounds)  # type: ignore[return-value]

    @property
    def geojson(self) -> dict[str, Any]:
        """The geometry as a GeoJSON dict (what a STAC ``intersects`` wants)."""
        return shapely.geometry.mapping(self.geometry)

    def to_json(self) -> str:
        """Compact GeoJSON text, small enough to travel in ``Dataset.attrs``."""
        return json.dumps(self.geojson, separators=(",", ":"))

    def to_crs(self, crs: Any, densify_deg: float = 0.01) -> shapely.Geometry:
        """The geometry in another CRS, densified first so edges stay correct after projection."""
        target = CRS.from_user_input(crs)
        if target.equals(CRS.from_epsg(4326)):
            return self.geometry
        transformer = Transformer.from_crs(4326, target, always_xy=True)
        dense = shapely.segmentize(self.geometry, densify_deg)
        return _transform(dense, transformer)


def _transform(geometry: shapely.Geometry, transformer: Transformer) -> shapely.Geometry:
    """Apply a pyproj transformer to every coordinate (vectorised)."""

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, apply)


def read_aoi(aoi: Any, crs: Any | None = None) -> AOI:
    """Read an area of interest from whatever a user has at hand.

    Parameters
    ----------
    aoi:
        A path to a GeoJSON file, GeoJSON text, a GeoJSON dict (Geometry, Feature,
        FeatureCollection or GeometryCollection), a shapely geometry, a GeoDataFrame or
        GeoSeries, or an :class:`AOI` (returned as is).
    crs:
        CRS of a shapely geometry or of GeoJSON that is not lon/lat. GeoDataFrames use their own.

    Returns
    -------
    AOI
        A single valid, non-empty geometry in lon/lat.

    Raises
    ------
    AOIError
        Naming what is wrong: unreadable file, malformed JSON, unknown type, empty,
        invalid (with the reason), out of range or apparently swapped coordinates.
    """
    if isinstance(aoi, AOI):
        return aoi
    geometry, source, input_crs = _to_geometry(aoi)
    input_crs = crs if crs is not None else input_crs
    if input_crs is not None and not CRS.from_user_input(input_crs).equals(CRS.from_epsg(4326)):
        try:
            transformer = Transformer.from_crs(CRS.from_user_input(input_crs), 4326,
                                               always_xy=True)
            geometry = _transform(geometry, transformer)
        except Exception as exc:  # pyproj raises several types
            raise AOIError(f"{source}: cannot reproject from {input_crs!r}: {exc}") from None
    return AOI(_validate(geometry, source), source)


def _to_geometry(aoi: Any) -> tuple[shapely.Geometry, str, Any]:
    """Any supported input -> (shapely geometry, description, crs or None)."""
    if isinstance(aoi, shapely.Geometry):
        return aoi, f"<{aoi.geom_type}>", None
    if hasattr(aoi, "geometry") and hasattr(aoi, "crs") and hasattr(aoi, "to_crs"):
        frame = aoi
        if len(frame) == 0:
            raise AOIError("the GeoDataFrame given as AOI has no rows")
        if frame.crs is not None:
            frame = frame.to_crs(4326)
        geoms = list(frame.geometry) if hasattr(frame, "geometry") else list(frame)
        return _dissolve(geoms, "GeoDataFrame"), "GeoDataFrame", None
    if isinstance(aoi, Path) or (isinstance(aoi, str) and not aoi.lstrip().startswith(("{", "["))):
        path = Path(aoi).expanduser()
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise AOIError(f"AOI file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AOIError(f"cannot read AOI file {path}: {exc}") from None
        return _from_geojson(_parse_json(text, str(path)), str(path)), str(path), None
    if isinstance(aoi, str):
        return _from_geojson(_parse_json(aoi, "GeoJSON text"), "GeoJSON text"), "GeoJSON text", None
    if isinstance(aoi, dict):
        return _from_geojson(aoi, "GeoJSON dict"), "GeoJSON dict", None
    if hasattr(aoi, "__geo_interface__"):
        return _from_geojson(aoi.__geo_interface__, type(aoi).__name__), type(aoi).__name__, None
    raise AOIError(
        f"cannot use {type(aoi).__name__} as an AOI; give a GeoJSON path, text or dict, "
        "a shapely geometry or a GeoDataFrame"
    )


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AOIError(f"{source}: malformed GeoJSON ({exc.msg} at line {exc.lineno}, "
                       f"column {exc.colno})") from None


def _from_geojson(obj: Any, source: str) -> shapely.Geometry:
    if not isinstance(obj, dict):
        raise AOIError(f"{source}: GeoJSON must be an object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list) or not features:
            raise AOIError(f"{source}: FeatureCollection has no features")
        return _dissolve([_from_geojson(f, f"{source} feature {i}")
                          for i, f in enumerate(features)], source)
    if kind == "Feature":
        if not obj.get("geometry"):
            raise AOIError(f"{source}: Feature has no geometry")
        return _from_geojson(obj["geometry"], source)
    if kind == "GeometryCollection":
        members = obj.get("geometries") or []
        if not members:
            raise AOIError(f"{source}: GeometryCollection is empty")
        return _dissolve([_from_geojson(g, source) for g in members], source)
    if kind not in _GEOMETRY_TYPES:
        raise AOIError(f"{source}: unsupported GeoJSON type {kind!r}; expected a Geometry, "
                       "Feature, FeatureCollection or GeometryCollection")
    if "coordinates" not in obj:
        raise AOIError(f"{source}: {kind} has no 'coordinates'")
    try:
        return shapely.geometry.shape(obj)
    except Exception as exc:  # shapely raises assorted errors on bad coordinates
        raise AOIError(f"{source}: bad {kind} coordinates: {exc}") from None


def _dissolve(geoms: list[shapely.Geometry], source: str) -> shapely.Geometry:
    """Union of several geometries; mixed dimensions keep the polygons and add the rest."""
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms:
        raise AOIError(f"{source}: every geometry is empty")
    if len(geoms) == 1:
        return geoms[0]
    fixed = [g if g.is_valid else shapely.make_valid(g) for g in geoms]
    return shapely.unary_union(fixed)


def _validate(geometry: shapely.Geometry, source: str) -> shapely.Geometry:
    if geometry.is_empty:
        raise AOIError(f"{source}: geometry is empty")
    coords = shapely.get_coordinates(geometry)
    if not np.isfinite(coords).all():
        raise AOIError(f"{source}: geometry has NaN or infinite coordinates")
    xs, ys = coords[:, 0], coords[:, 1]
    if (np.abs(xs) > 180).any() or (np.abs(ys) > 90).any():
        if (np.abs(xs) <= 90).all() and (np.abs(ys) <= 180).all():
            raise AOIError(f"{source}: coordinates look like (lat, lon); GeoJSON wants "
                           "(lon, lat) order")
        raise AOIError(f"{source}: coordinates are outside lon -180..180 / lat -90..90; "
                       "projected coordinates need crs=...")
    if not geometry.geom_type.startswith(("Multi", "Geometry")) and xs.max() - xs.min() > 180:
        raise AOIError(f"{source}: geometry spans more than 180 degrees of longitude; split "
                       "it at the antimeridian into a MultiPolygon")
    if not geometry.is_valid:
        reason = shapely.validation.explain_validity(geometry)
        raise AOIError(f"{source}: invalid geometry ({reason}); fix it or pass "
                       "shapely.make_valid(geometry)")
    return geometry
