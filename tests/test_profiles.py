"""Earth Search v1/v0 profiles, band aliasing, baseline offsets and datetime parsing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2intake import ProfileError, SearchError
from s2intake.profiles import BANDS, V0, V1, canonical_band, detect_profile, profile_for
from s2intake.search import _normalise_query, parse_datetime

SAMPLES = Path("/work/shared/earth-search-samples")
if not SAMPLES.exists():  # CI lays shared/ beside the clone
    SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "earth-search-samples"


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(BANDS)), st.sampled_from([str.lower, str.upper, str.title]))
def test_band_names_alias_between_v0_and_v1(common, case):
    v1_key, v0_key = V1.asset_key(common), V0.asset_key(common)
    assert canonical_band(case(v0_key)) == common
    assert V1.asset_key(v0_key) == v1_key and V0.asset_key(v1_key) == v0_key


def test_unknown_band_and_collection_are_named():
    with pytest.raises(ProfileError, match="unknown band 'B99'"):
        canonical_band("B99")
    with pytest.raises(ProfileError, match="unknown collection 'landsat-c2-l2'"):
        profile_for("landsat-c2-l2")
    assert profile_for(None, "https://earth-search.aws.element84.com/v0") is V0
    assert profile_for(None, "https://earth-search.aws.element84.com/v1") is V1


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared Earth Search samples not laid out")
def test_real_items_map_every_band_to_an_asset():
    for version, profile in (("v1", V1), ("v0", V0)):
        for path in sorted((SAMPLES / version).glob("S2*.json")):
            item = json.loads(path.read_text())
            assert detect_profile(item) is profile, path.name
            for band in ("red", "green", "blue", "nir", "swir16", "swir22", "scl"):
                assert profile.asset_key(band) in item["assets"], (path.name, band)


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared Earth Search samples not laid out")
def test_real_v1_items_with_applied_offset_are_shifted_back():
    item = json.loads((SAMPLES / "v1" / "S2B_30VXR_20250717_0_L2A.json").read_text())
    assert V1.dn_offset(item["properties"], item["assets"]["red"], "red") == -1000
    assert V1.dn_offset(item["properties"], item["assets"]["scl"], "scl") == 0


def test_baseline_offset_rules():
    old = {"sentinel:product_id": "S2B_MSIL2A_20200806T073619_N0214_R092_T36MYB_2020"}
    new = {"sentinel:processing_baseline": "04.00", "sentinel:boa_offset_applied": True}
    not_applied = {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": False}
    assert V0.dn_offset(old, {}, "B04") == 0
    assert V0.dn_offset(new, {}, "B04") == -1000
    assert V1.dn_offset(not_applied, {"raster:bands": [{"offset": -0.1, "scale": 1e-4}]},
                        "red") == 0


def test_query_list_form_is_normalised():
    assert _normalise_query(["eo:cloud_cover<=10", "sentinel:valid_cloud_cover=true",
                             "sentinel:grid_square=FJ"]) == {
        "eo:cloud_cover": {"lte": 10}, "sentinel:valid_cloud_cover": {"eq": True},
        "sentinel:grid_square": {"eq": "FJ"}}
    with pytest.raises(SearchError, match="expected 'property<op>value'"):
        _normalise_query(["cloud cover is low"])


@pytest.mark.parametrize("value, expected", [
    (None, None),
    ("2020-01-01/2021-06-30", "2020-01-01T00:00:00Z/2021-06-30T23:59:59.999999Z"),
    ("2020-09-08", "2020-09-08T00:00:00Z/2020-09-08T23:59:59.999999Z"),
    (("2020-01-01", None), "2020-01-01T00:00:00Z/.."),
    ("../2020-01-01", "../2020-01-01T23:59:59.999999Z"),
    ((dt.date(2020, 1, 1), dt.date(2020, 1, 2)),
     "2020-01-01T00:00:00Z/2020-01-02T23:59:59.999999Z"),
])
def test_datetime_ranges(value, expected):
    assert parse_datetime(value) == expected


@pytest.mark.parametrize("bad, message", [
    ("2021-01-01/2020-01-01", "is after end"),
    ("yesterday/2020-01-01", "cannot parse 'yesterday'"),
    ("a/b/c", "expected 'start/end'"),
])
def test_bad_datetime_ranges(bad, message):
    with pytest.raises(SearchError, match=message):
        parse_datetime(bad)


@settings(max_examples=100, deadline=None)
@given(st.dates(dt.date(2015, 6, 23), dt.date(2030, 1, 1)),
       st.dates(dt.date(2015, 6, 23), dt.date(2030, 1, 1)))
def test_datetime_range_order_is_checked(a, b):
    text = f"{a.isoformat()}/{b.isoformat()}"
    if a > b:
        with pytest.raises(SearchError):
            parse_datetime(text)
    else:
        start, end = parse_datetime(text).split("/")
        assert pd.Timestamp(start) <= pd.Timestamp(end)
        assert pd.Timestamp(end) - pd.Timestamp(start) < pd.Timedelta(days=(b - a).days + 1)
