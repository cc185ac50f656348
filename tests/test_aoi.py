"""AOI parsing: every accepted input form, and a clear error for each bad one."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from s2intake import AOIError, read_aoi

CATALOG_AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
SQUARE = {"type": "Polygon", "coordinates": [[[-121.5, 39.7], [-121.3, 39.7], [-121.3, 39.8],
                                              [-121.5, 39.8], [-121.5, 39.7]]]}


def test_reads_the_catalog_feature_file():
    aoi = read_aoi(CATALOG_AOI)
    assert aoi.geometry.geom_type == "Polygon"
    west, south, east, north = aoi.bounds
    assert -121.51 < west < east < -121.32 and 39.68 < south < north < 39.82


@pytest.mark.parametrize("wrap", [
    lambda g: g,
    lambda g: {"type": "Feature", "properties": {}, "geometry": g},
    lambda g: {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                                           "geometry": g}]},
    lambda g: json.dumps(g),
    lambda g: shapely.geometry.shape(g),
    lambda g: gpd.GeoDataFrame(geometry=[shapely.geometry.shape(g)], crs="EPSG:4326"),
])
def test_every_input_form_gives_the_same_geometry(wrap):
    assert read_aoi(wrap(SQUARE)).geometry.equals(shapely.geometry.shape(SQUARE))


def test_geometry_collection_and_feature_collection_are_dissolved():
    other = {"type": "Polygon", "coordinates": [[[-121.3, 39.7], [-121.2, 39.7], [-121.2, 39.8],
                                                 [-121.3, 39.8], [-121.3, 39.7]]]}
    aoi = read_aoi({"type": "GeometryCollection", "geometries": [SQUARE, other]})
    assert aoi.geometry.geom_type == "Polygon"  # the two touching squares merge
    assert aoi.geometry.area == pytest.approx(0.03)


@pytest.mark.parametrize("geom", [
    {"type": "Point", "coordinates": [-121.4, 39.75]},
    {"type": "LineString", "coordinates": [[-121.4, 39.75], [-121.3, 39.76]]},
    {"type": "MultiPoint", "coordinates": [[-121.4, 39.75], [-121.3, 39.76]]},
    {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]},
])
def test_other_geometry_types_are_accepted(geom):
    assert read_aoi(geom).geometry.geom_type == geom["type"]


def test_projected_geodataframe_is_reprojected():
    frame = gpd.GeoDataFrame(geometry=[shapely.geometry.shape(SQUARE)], crs="EPSG:4326")
    aoi = read_aoi(frame.to_crs(32610))
    assert aoi.geometry.bounds == pytest.approx(shapely.geometry.shape(SQUARE).bounds, abs=1e-6)


@pytest.mark.parametrize("bad, message", [
    ("{not json", "malformed GeoJSON"),
    ({"type": "Polygon"}, "has no 'coordinates'"),
    ({"type": "Circle", "coordinates": [0, 0]}, "unsupported GeoJSON type 'Circle'"),
    ({"type": "FeatureCollection", "features": []}, "has no features"),
    ({"type": "Feature", "geometry": None}, "Feature has no geometry"),
    ({"type": "Polygon", "coordinates": []}, "empty"),
    ({"type": "Point", "coordinates": [39.75, -121.4]}, "look like (lat, lon)"),
    ({"type": "Point", "coordinates": [628000, 4400000]}, "projected coordinates need crs"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
     "invalid geometry (Self-intersection"),
    ({"type": "LineString", "coordinates": [[-179, 0], [179, 1]]}, "antimeridian"),
    (42, "cannot use int as an AOI"),
])
def test_bad_input_names_the_problem(bad, message):
    with pytest.raises(AOIError) as err:
        read_aoi(bad)
    assert message in str(err.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(AOIError, match="AOI file not found"):
        read_aoi(tmp_path / "nope.geojson")
    binary = tmp_path / "bin.geojson"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AOIError, match=str(binary)):
        read_aoi(binary)


lon = st.floats(-179, 179, allow_nan=False)
lat = st.floats(-85, 85, allow_nan=False)
size = st.floats(1e-5, 5, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(lon, lat, size, size)
def test_any_valid_box_round_trips_through_geojson(x, y, w, h):
    box = shapely.box(x, y, min(x + w, 180), min(y + h, 90))
    aoi = read_aoi(json.dumps(shapely.geometry.mapping(box)))
    assert aoi.geometry.equals(box)
    again = read_aoi(aoi.to_json())
    assert again.geometry.equals(box)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(lon, lat), min_size=4, max_size=12))
def test_arbitrary_rings_are_read_or_refused_with_aoierror(points):
    ring = [list(p) for p in points] + [list(points[0])]
    geom = {"type": "Polygon", "coordinates": [ring]}
    try:
        aoi = read_aoi(geom)
    except AOIError as exc:
        assert str(exc)  # a named reason, never a crash from shapely
    else:
        assert aoi.geometry.is_valid and not aoi.geometry.is_empty
