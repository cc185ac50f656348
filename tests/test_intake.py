"""Intake integration: the sentinel2 driver, the intake 2 reader, shipped catalogs, safety, CLI.

Loads run against the local Earth Search replica (``stac_url``); every expected dataset is
built here with ``s2intake.stack(s2intake.search(...))`` and compared exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import intake
import numpy as np
import pystac
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner
from PIL import Image

import s2intake
from s2intake.cli import main as cli_main
from s2intake.errors import CatalogError, SecurityError
from s2intake.intake_source import (
    CatalogSecurityError,
    SafeV2Catalog,
    SafeYAMLFileCatalog,
    Sentinel2Reader,
    Sentinel2Source,
)
from s2intake.profiles import EARTH_SEARCH_V0, EARTH_SEARCH_V1

REPO = Path(__file__).resolve().parents[1]
CATALOGS = REPO / "catalogs"
AOI_PATH = CATALOGS / "berry_creek.geojson"
SHIPPED = ["berry_creek.yaml", "earth_search.yaml", "index.yaml", "berry_creek_v2.yaml"]
V1 = "sentinel-2-l2a"
V0 = "sentinel-s2-l2a-cogs"
#: (entry, datetime range, bands) of berry_creek.yaml, as the issue asks for them
BERRY_ENTRIES = {
    "berry_creek": ("2020-01-01/2021-06-30", ["red", "green", "blue"]),
    "before_fire": ("2020-06-01/2020-09-05", ["red", "green", "blue", "nir", "swir22"]),
    "after_fire": ("2020-09-08/2020-11-30", ["red", "green", "blue", "nir", "swir22"]),
}
#: every entry of berry_creek.yaml (burn_severity is tested in tests/test_burn_catalog.py)
BERRY_V1_NAMES = [*BERRY_ENTRIES, "burn_severity"]
UNREACHABLE = "http://127.0.0.1:9/stac"  # discard port: nothing ever answers


# ------------------------------------------------------------------------------ helpers
def _window(ds: xr.Dataset, t: int = 0, size: int = 64) -> xr.Dataset:
    """A small computed window in the middle of the AOI (where the sparse sample has data)."""
    y0 = ds.sizes["y"] // 2 - size // 2
    x0 = ds.sizes["x"] // 2 - size // 2
    return ds.isel(time=t, y=slice(y0, y0 + size), x=slice(x0, x0 + size)).compute()


def _reference(stac_url: str, entry: str, max_cloud: float = 10, **stack_kwargs: Any
               ) -> xr.Dataset:
    datetime, bands = BERRY_ENTRIES[entry]
    found = s2intake.search(AOI_PATH, datetime, max_cloud=max_cloud, url=stac_url)
    return s2intake.stack(found, bands, **stack_kwargs)


def _assert_same(ds: xr.Dataset, ref: xr.Dataset, t: int = 0) -> None:
    xr.testing.assert_identical(ds, ref)  # coords, attrs, dtypes, shapes: lazily
    got, want = _window(ds, t), _window(ref, t)
    xr.testing.assert_identical(got, want)
    band = next(iter(got.data_vars))
    assert int((got[band] > 0).sum()) > 0, "the compared window holds no data at all"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _entry_catalog(tmp_path: Path, args: str, parameters: str = "", name: str = "scene"
                   ) -> Path:
    """A one-entry v1 catalog using the sentinel2 driver, AOI copied beside it."""
    shutil.copy(AOI_PATH, tmp_path / "aoi.geojson")
    text = f"""
sources:
  {name}:
    description: test entry
    driver: sentinel2
"""
    if parameters:
        text += "    parameters:\n" + _indent(parameters, 6)
    text += "    args:\n" + _indent(args, 6)
    return _write(tmp_path / "cat.yaml", text)


def _indent(block: str, n: int) -> str:
    lines = [line for line in block.strip("\n").splitlines()]
    pad = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "".join(" " * n + line[pad:] + "\n" for line in lines)


@pytest.fixture
def replica_env(monkeypatch: pytest.MonkeyPatch, stac_url: str) -> str:
    """Shipped catalogs pointed at the replica through their env() defaults."""
    monkeypatch.setenv("S2INTAKE_STAC_URL", stac_url)
    monkeypatch.setenv("S2INTAKE_STAC_URL_V0", stac_url)
    return stac_url


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S2INTAKE_STAC_URL", raising=False)
    monkeypatch.delenv("S2INTAKE_STAC_URL_V0", raising=False)


@pytest.fixture(scope="module")
def local_items(sample: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's v1 items with hrefs on the local COG files (a local item file)."""
    return sample.write_local_items("v1", tmp_path_factory.mktemp("local") / "items.json")


# ------------------------------------------------------------------ shipped catalogs
@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("opener", ["intake", "s2intake"])
def test_shipped_catalogs_open_list_describe(name: str, opener: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may run when a catalog is opened, listed or described: an unreachable API
    # must not matter until an entry is loaded.
    monkeypatch.setenv("S2INTAKE_STAC_URL", UNREACHABLE)
    monkeypatch.setenv("S2INTAKE_STAC_URL_V0", UNREACHABLE)
    path = CATALOGS / name
    cat = intake.open_catalog(str(path)) if opener == "intake" else s2intake.open_catalog(path)
    names = list(cat)
    assert names, f"{name} lists no entry"
    if name.endswith("_v2.yaml"):
        assert isinstance(cat, intake.readers.entry.Catalog)
        for entry in names:
            desc = cat.entries[cat.aliases[entry]]
            assert desc.reader == "s2intake.intake_source:Sentinel2Reader"
            assert desc.metadata["description"]
        return
    for entry in names:
        described = cat._entries[entry].describe()
        assert described["description"], f"{name}:{entry} has no description"
        if described["container"] == "catalog":
            sub = getattr(cat, entry)
            assert list(sub), f"nested catalog {entry} is empty"
            continue
        assert described["container"] == "xarray"
        params = {p["name"]: p for p in described["user_parameters"]}
        assert {"aoi", "start", "end", "max_cloud", "bands", "url"} <= set(params)
        for p in params.values():
            assert p["description"] and p["type"] != "unknown", p
        source = getattr(cat, entry)  # makes the source: still no search
        assert isinstance(source, Sentinel2Source)
        assert source._result is None and source._dataset is None


def test_berry_creek_catalog_defaults(no_env: None) -> None:
    cat = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    assert list(cat) == BERRY_V1_NAMES
    for entry, (datetime, bands) in BERRY_ENTRIES.items():
        params = {p["name"]: p for p in cat._entries[entry].describe()["user_parameters"]}
        assert params["max_cloud"]["default"] == 10
        assert params["bands"]["default"] == bands
        assert params["url"]["default"] == "env(S2INTAKE_STAC_URL)"
        spec = getattr(cat, entry).validate()
        assert spec["url"] == EARTH_SEARCH_V1  # env var unset -> Earth Search v1
        assert spec["bands"] == bands
        assert spec["max_cloud"] == 10
        start, end = datetime.split("/")
        assert spec["datetime"] == f"{start}T00:00:00Z/{end}T23:59:59.999999Z"
        assert spec["aoi"].geometry.equals(s2intake.read_aoi(AOI_PATH).geometry)


def test_stac_url_from_environment(monkeypatch: pytest.MonkeyPatch, no_env: None,
                                   local_items: Path) -> None:
    cat = s2intake.open_catalog(CATALOGS / "earth_search.yaml")
    assert cat.sentinel_2_l2a().validate()["url"] == EARTH_SEARCH_V1
    assert cat.sentinel_s2_l2a_cogs().validate()["url"] == EARTH_SEARCH_V0
    monkeypatch.setenv("S2INTAKE_STAC_URL", str(local_items))
    monkeypatch.setenv("S2INTAKE_STAC_URL_V0", "http://127.0.0.1:1/v0")
    cat = s2intake.open_catalog(CATALOGS / "earth_search.yaml")
    assert cat.sentinel_2_l2a().validate()["url"] == str(local_items)
    assert cat.sentinel_s2_l2a_cogs().validate()["url"] == "http://127.0.0.1:1/v0"
    assert cat.sentinel_s2_l2a_cogs().validate()["collection"] == V0
    # the url parameter wins over the environment
    assert cat.sentinel_2_l2a(url=EARTH_SEARCH_V1).validate()["url"] == EARTH_SEARCH_V1


# ------------------------------------------------------------------ loading (replica)
@pytest.mark.parametrize("entry", list(BERRY_ENTRIES))
def test_berry_creek_entries_match_search_and_stack(entry: str, replica_env: str) -> None:
    cat = intake.open_catalog(str(CATALOGS / "berry_creek.yaml"))
    source = getattr(cat, entry)(max_cloud=10)
    ds = source.to_dask()
    assert all(v.chunks is not None for v in ds.data_vars.values()), "not lazy"
    assert list(ds.data_vars) == BERRY_ENTRIES[entry][1]
    _assert_same(ds, _reference(replica_env, entry))
    clipped = ds.s2.clip_aoi()  # the accessor is ready on what the catalog returns
    assert clipped.sizes["time"] == ds.sizes["time"]


def test_issue_example(replica_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    cat = intake.open_catalog("catalogs/berry_creek.yaml")
    ds = cat.berry_creek(max_cloud=10).to_dask()
    ref = _reference(replica_env, "berry_creek")
    assert ds.sizes == ref.sizes and ds.sizes["time"] > 1
    last = ds.sizes["time"] - 1
    _assert_same(ds, ref, t=last)


def test_parameters_change_the_search(replica_env: str) -> None:
    cat = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    source = cat.berry_creek(max_cloud=50, start="2020-09-01", end="2020-10-31",
                             bands=["nir", "swir22"], resolution=20)
    found = s2intake.search(AOI_PATH, "2020-09-01/2020-10-31", max_cloud=50, url=replica_env)
    ref = s2intake.stack(found, ["nir", "swir22"], resolution=20)
    _assert_same(source.to_dask(), ref)
    assert len(source.search_result) == len(found)


def test_discover_reads_no_pixel(replica_env: str, cog_server: Any) -> None:
    cat = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    source = cat.after_fire()
    mark = cog_server.mark()
    schema = source.discover()
    assert cog_server.entries_since(mark) == [], "discover() touched the COG server"
    ref = _reference(replica_env, "after_fire")
    assert schema["shape"] == (ref.sizes["time"], ref.sizes["y"], ref.sizes["x"])
    assert schema["dims"] == dict(ref.sizes)
    assert schema["dtype"] == {b: "uint16" for b in BERRY_ENTRIES["after_fire"][1]}
    found = s2intake.search(AOI_PATH, "2020-09-08/2020-11-30", max_cloud=10, url=replica_env)
    assert schema["items"] == len(found) > 0
    assert schema["npartitions"] == ref["red"].data.npartitions
    source.to_dask()
    assert cog_server.entries_since(mark) == [], "to_dask() touched the COG server"
    # the same items with assets nobody serves: describing and building still work, so
    # neither opened a file (GDAL would fail at once on a refused connection)
    items = json.loads(json.dumps(source.search_result.items))
    for item in items:
        for asset in item["assets"].values():
            asset["href"] = UNREACHABLE + "/" + asset["href"].rsplit("/", 1)[-1]
    broken = Sentinel2Source(items=items, aoi=AOI_PATH, bands=["red", "nir"])
    assert broken.discover()["shape"] == schema["shape"]
    assert broken.to_dask().sizes == ref.sizes


def test_read_and_items_table(replica_env: str) -> None:
    cat = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    source = cat.after_fire(bands=["red"], resolution=320)
    loaded = source.read()
    assert all(v.chunks is None for v in loaded.data_vars.values()), "read() stayed lazy"
    ref = _reference(replica_env, "after_fire", resolution=320)[["red"]].compute()
    xr.testing.assert_identical(loaded, ref)
    table = source.items_table()
    assert isinstance(table, gpd.GeoDataFrame)
    assert sorted(table["id"]) == sorted(i["id"] for i in source.search_result.items)


def test_v0_and_v1_entries(replica_env: str) -> None:
    cat = s2intake.open_catalog(CATALOGS / "earth_search.yaml")
    v1 = cat.sentinel_2_l2a(max_cloud=10)
    v0 = cat.sentinel_s2_l2a_cogs(max_cloud=10)
    for source, collection in ((v1, V1), (v0, V0)):
        found = s2intake.search(AOI_PATH, "2020-09-08/2020-10-31", max_cloud=10,
                                collection=collection, url=replica_env)
        _assert_same(source.to_dask(), s2intake.stack(found, ["red", "green", "blue"]))
        assert {i["collection"] for i in source.search_result.items} == {collection}


def test_unknown_collection_at_the_api(replica_env: str) -> None:
    cat = s2intake.open_catalog(CATALOGS / "earth_search.yaml")
    source = cat.sentinel_2_l2a(collection="sentinel-2-c1-l2a")  # s2intake knows it...
    with pytest.raises(CatalogError, match=r"'sentinel_2_l2a'.*field 'collection'"):
        source.to_dask()  # ...the replica does not serve it


# ------------------------------------------------------------------ nested and relative
@pytest.mark.parametrize("opener", ["intake", "s2intake"])
def test_nested_catalog(opener: str, replica_env: str) -> None:
    path = CATALOGS / "index.yaml"
    cat = intake.open_catalog(str(path)) if opener == "intake" else s2intake.open_catalog(path)
    assert set(cat) == {"berry_creek", "earth_search"}
    sub = cat.berry_creek
    if opener == "s2intake":
        assert isinstance(sub, SafeYAMLFileCatalog), "nested catalogs must be checked too"
    assert list(sub) == BERRY_V1_NAMES
    assert set(cat.earth_search) == {"sentinel_2_l2a", "sentinel_s2_l2a_cogs"}
    ds = cat.berry_creek.after_fire(max_cloud=10).to_dask()
    _assert_same(ds, _reference(replica_env, "after_fire"))
    dotted = cat["berry_creek.before_fire"]
    xr.testing.assert_identical(dotted.to_dask(), _reference(replica_env, "before_fire"))


def test_copied_catalog_uses_its_own_relative_aoi(tmp_path: Path, replica_env: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere" / "cats"
    target.mkdir(parents=True)
    shutil.copy(CATALOGS / "berry_creek.yaml", target)
    # a smaller AOI (the northern half) under the same name: the copy must use it
    aoi = json.loads(AOI_PATH.read_text())
    ring = aoi["geometry"]["coordinates"][0]
    mid = (min(p[1] for p in ring) + max(p[1] for p in ring)) / 2
    west, east = min(p[0] for p in ring), max(p[0] for p in ring)
    north = max(p[1] for p in ring)
    aoi["geometry"]["coordinates"] = [[[west, mid], [east, mid], [east, north],
                                       [west, north], [west, mid]]]
    (target / "berry_creek.geojson").write_text(json.dumps(aoi))
    monkeypatch.chdir(tmp_path)  # neither the repo nor the catalog folder
    for cat in (intake.open_catalog(str(target / "berry_creek.yaml")),
                s2intake.open_catalog(Path("elsewhere/cats/berry_creek.yaml"))):
        ds = cat.after_fire().to_dask()
        found = s2intake.search(target / "berry_creek.geojson", "2020-09-08/2020-11-30",
                                max_cloud=10, url=replica_env)
        ref = s2intake.stack(found, BERRY_ENTRIES["after_fire"][1])
        _assert_same(ds, ref)
        assert ds.sizes["y"] < _reference(replica_env, "after_fire").sizes["y"]
    # a relative path given as a parameter is resolved against the catalog's folder too
    shutil.copy(AOI_PATH, target / "full.geojson")
    source = s2intake.open_catalog(target / "berry_creek.yaml").after_fire(aoi="full.geojson")
    assert source.to_dask().sizes == _reference(replica_env, "after_fire").sizes


# ------------------------------------------------------------------ bad values
BAD_VALUES = [
    ({"bands": ["red", "foo"]}, "bands", "unknown band 'foo'"),
    ({"bands": "red,ultraviolet"}, "bands", "unknown band"),
    ({"start": "2021-01-01", "end": "2020-01-01"}, "start", "after"),
    ({"start": "not-a-date"}, "start", "cannot parse"),
    ({"aoi": "missing.geojson"}, "aoi", "not found"),
    ({"aoi": '{"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}'}, "aoi", "aoi"),
    ({"collection": "landsat-c2-l2"}, "collection", "unknown collection"),
    ({"resolution": "ten"}, "resolution", "number"),
    ({"resolution": -10}, "resolution", "positive"),
    ({"chunks": 3}, "chunks", ">= 16"),
    ({"mosaic": "monthly"}, "mosaic", "solar_day"),
    ({"max_clouds": 5}, "max_clouds", "unknown argument"),
    ({"url": "/no/such/items.json"}, "url", "neither"),
    ({"query": ["eo:cloud_cover~5"]}, "query", "query term"),
    ({"scale": "maybe"}, "scale", "true or false"),
]


@pytest.mark.parametrize(("values", "field", "text"), BAD_VALUES,
                         ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD_VALUES)])
def test_bad_values_name_entry_and_field(values: dict, field: str, text: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2INTAKE_STAC_URL", UNREACHABLE)  # never gets that far
    pattern = rf"catalog entry 'after_fire'.*field '{field}'"
    # through s2intake.open_catalog: raised when the entry is called
    cat = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    with pytest.raises(CatalogError, match=pattern) as info:
        cat.after_fire(**values)
    assert text in str(info.value)
    # through plain intake: raised on first use (intake makes sources without checking)
    plain = intake.open_catalog(str(CATALOGS / "berry_creek.yaml"))
    source = plain.after_fire(**values)
    with pytest.raises(CatalogError, match=pattern):
        source.discover()


@pytest.mark.parametrize(("values", "field"), [
    ({"max_cloud": "abc"}, "max_cloud"),
    ({"max_cloud": 150}, "max_cloud"),
    ({"max_cloud": -1}, "max_cloud"),
    ({"bands": 5}, "bands"),
])
def test_values_intake_itself_rejects(values: dict, field: str) -> None:
    # intake validates typed parameters before the driver sees them; s2intake.open_catalog
    # turns its ValueError/TypeError into a CatalogError naming entry and field
    cat = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    with pytest.raises(CatalogError, match=rf"'berry_creek'.*field '{field}'"):
        cat.berry_creek(**values)


def test_direct_source_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"Sentinel2Source: field 'max_cloud'"):
        Sentinel2Source(aoi=AOI_PATH, max_cloud=101).validate()
    with pytest.raises(CatalogError, match=r"field 'datetime': give either"):
        Sentinel2Source(datetime="2020-01-01/2020-02-01", start="2020-01-01").validate()
    with pytest.raises(CatalogError, match=r"field 'items': no items"):
        Sentinel2Source(items=[]).validate()
    with pytest.raises(CatalogError, match=r"field 'items': item file not found"):
        Sentinel2Source(items="nothing.json", base_dir=tmp_path).validate()


def test_bad_catalog_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2INTAKE_STAC_URL", UNREACHABLE)
    with pytest.raises(CatalogError, match="file not found"):
        s2intake.open_catalog(tmp_path / "missing.yaml")
    bad = _write(tmp_path / "syntax.yaml", "sources:\n  a: [unclosed\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        s2intake.open_catalog(bad)
    nosources = _write(tmp_path / "nosources.yaml", "metadata: {version: 1}\n")
    with pytest.raises(CatalogError, match="field 'sources'"):
        s2intake.open_catalog(nosources)
    # a wrongly typed argument written in the catalog itself
    path = _entry_catalog(tmp_path, "aoi: aoi.geojson\nbands: 5\nmax_cloud: [1, 2]\n")
    with pytest.raises(CatalogError, match=r"'scene'.*field 'bands'.*expected a list"):
        s2intake.open_catalog(path).scene  # noqa: B018 - access builds and checks
    source = intake.open_catalog(str(path)).scene  # plain intake: checked on first use
    with pytest.raises(CatalogError, match=r"'scene'.*field 'bands'"):
        source.discover()
    path = _entry_catalog(tmp_path, "aoi: aoi.geojson\nmax_cloud: [1, 2]\n")
    with pytest.raises(CatalogError, match=r"'scene'.*field 'max_cloud'.*number"):
        s2intake.open_catalog(path).scene  # noqa: B018
    # a repeated entry name or field would silently drop one: refused, with its line
    twice = _write(tmp_path / "twice.yaml", "sources:\n  a:\n    driver: x\n  a:\n"
                   "    driver: y\n")
    with pytest.raises(CatalogError, match=r"duplicate key 'a'.*line 4"):
        s2intake.open_catalog(twice)
    # intake's own schema check still runs on the data s2intake parsed
    invalid = _write(tmp_path / "invalid.yaml", "sources:\n  a:\n    driver: sentinel2\n"
                     "    metadata: 5\n")
    with pytest.raises(CatalogError, match=r"(?s)validation errors.*'5' is not expected type"):
        s2intake.open_catalog(invalid)


def test_entries_may_share_defaults_through_yaml_merge_keys(tmp_path: Path) -> None:
    """``<<: *defaults`` works (intake's own loader refuses it) and an entry's own keys win
    over the merged ones; a key repeated inside one entry is still refused."""
    shutil.copy(AOI_PATH, tmp_path / "aoi.geojson")
    text = """
metadata:
  version: 1
  defaults: &defaults
    driver: sentinel2
    args: {aoi: aoi.geojson, max_cloud: 10}
sources:
  loose:
    <<: *defaults
    description: default cloud cover
  strict:
    <<: *defaults
    description: stricter
    args: {aoi: aoi.geojson, max_cloud: 2}
"""
    cat = s2intake.open_catalog(_write(tmp_path / "merge.yaml", text))
    assert sorted(cat) == ["loose", "strict"]
    assert cat.loose._raw["max_cloud"] == 10
    assert cat.strict._raw["max_cloud"] == 2
    assert cat.strict.description == "stricter"
    twice = text.replace("    description: stricter\n", "    description: stricter\n"
                         "    description: again\n")
    with pytest.raises(CatalogError, match="duplicate key 'description'"):
        s2intake.open_catalog(_write(tmp_path / "twice.yaml", twice))


def test_catalog_error_is_not_swallowed_as_empty_search(replica_env: str) -> None:
    cat = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    source = cat.berry_creek(start="2019-01-01", end="2019-01-31")  # nothing then
    with pytest.raises(s2intake.EmptySearchError, match="'berry_creek'"):
        source.to_dask()


# ------------------------------------------------------------------ security
def test_shell_default_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "shell-ran"
    path = _entry_catalog(
        tmp_path, 'url: "{{ url }}"\naoi: aoi.geojson\n',
        f"url:\n  description: x\n  type: str\n  default: shell(touch {marker})\n")
    with pytest.raises(CatalogSecurityError, match=r"'scene'.*parameter 'url'.*shell"):
        s2intake.open_catalog(path)
    with pytest.raises(CatalogSecurityError, match="getshell=True is refused"):
        s2intake.open_catalog(path, getshell=True)
    with pytest.raises(CatalogSecurityError, match="getshell=True is refused"):
        SafeYAMLFileCatalog(str(path), getshell=True)
    # plain intake (getshell defaults to False) passes "shell(...)" through as text, and the
    # driver refuses it instead of treating it as a URL
    with pytest.warns(UserWarning, match="Shell command not executed"):
        source = intake.open_catalog(str(path)).scene
    with pytest.raises(CatalogSecurityError, match=r"'scene'.*field 'url'.*never executed"):
        source.discover()
    assert not marker.exists(), "a shell() default was executed"


def test_python_yaml_tag_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "tag-ran"
    path = _write(tmp_path / "tag.yaml", f"""
sources:
  scene:
    driver: sentinel2
    args:
      aoi: !!python/object/apply:os.system ["touch {marker}"]
""")
    with pytest.raises(CatalogSecurityError, match=r"YAML tag refused.*python/object"):
        s2intake.open_catalog(path)
    with pytest.raises(yaml.YAMLError):  # intake's own loader is safe_load as well
        list(intake.open_catalog(str(path)))
    runner = CliRunner()
    result = runner.invoke(cli_main, ["catalog", "list", str(path)])
    assert result.exit_code == 1 and "YAML tag refused" in result.output
    result = runner.invoke(cli_main, [
        "catalog", "show", str(CATALOGS / "berry_creek.yaml"), "berry_creek", "--no-discover",
        "-p", f"aoi=!!python/object/apply:os.system [touch {marker}]"])
    assert result.exit_code == 2 and "YAML tags are not allowed" in result.output
    assert not marker.exists()


@pytest.mark.parametrize(("name", "body", "message"), [
    ("jinja-expression", 'url: "{{ lipsum.__globals__.os.popen(\'touch MARKER\').read() }}"',
     "only '{{ name }}' references"),
    ("jinja-statement", 'url: "{% for x in range(1) %}{{ x }}{% endfor %}"',
     "only '{{ name }}' references"),
    ("undeclared-parameter", 'url: "{{ secret_token }}"', "names no declared parameter"),
    ("env-in-template", 'url: "{{ env(\'HOME\') }}"', "only '{{ name }}' references"),
])
def test_templates_other_than_declared_parameters_are_refused(
        tmp_path: Path, name: str, body: str, message: str) -> None:
    marker = tmp_path / "ran"
    path = _entry_catalog(tmp_path, body.replace("MARKER", str(marker)) + "\naoi: aoi.geojson")
    with pytest.raises(CatalogSecurityError, match=re.escape(message)) as info:
        s2intake.open_catalog(path)
    assert "entry 'scene'" in str(info.value) and "args.url" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(("name", "text", "message"), [
    ("cls", "sources:\n  x:\n    cls: subprocess.Popen\n    args: [[touch, MARKER]]\n",
     "field 'cls'"),
    ("plugins", "plugins:\n  source:\n    - module: antigravity\nsources: {}\n",
     "field 'plugins'"),
    ("foreign-driver", "sources:\n  x:\n    driver: subprocess.Popen\n    args: {}\n",
     "field 'driver'"),
    ("env-expression", "sources:\n  x:\n    driver: sentinel2\n    parameters:\n"
     "      url: {description: u, type: str, default: 'env(A) + env(B)'}\n    args: {}\n",
     "only a whole 'env(NAME)'"),
])
def test_code_paths_in_v1_catalogs_are_refused(tmp_path: Path, name: str, text: str,
                                               message: str) -> None:
    marker = tmp_path / "ran"
    path = _write(tmp_path / f"{name}.yaml", text.replace("MARKER", str(marker)))
    with pytest.raises(CatalogSecurityError, match=re.escape(message)):
        s2intake.open_catalog(path)
    assert isinstance(CatalogSecurityError("x"), SecurityError)
    assert not marker.exists()


def test_extra_drivers_can_be_allowed(tmp_path: Path) -> None:
    path = _write(tmp_path / "csv.yaml",
                  "sources:\n  t:\n    driver: csv\n    args: {urlpath: a.csv}\n")
    with pytest.raises(CatalogSecurityError, match="field 'driver'"):
        s2intake.open_catalog(path)
    assert list(s2intake.open_catalog(path, extra_drivers=["csv"])) == ["t"]


def test_values_with_templates_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cat = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    evil = "{{ lipsum.__globals__.os.popen('touch " + str(marker) + "').read() }}"
    with pytest.raises(CatalogSecurityError, match=r"field 'aoi'.*template markers"):
        cat.berry_creek(aoi=evil)
    with pytest.raises(CatalogSecurityError, match=r"field 'url'.*never executed"):
        cat.berry_creek(url=f"shell(touch {marker})")
    assert not marker.exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["entries"]["berry_creek"].update(reader="intake.readers.readers:PandasCSV"),
     "field 'reader'"),
    (lambda d: d["entries"]["berry_creek"]["kwargs"].update(url="{import(os:system)}"),
     "import/func/pickle64"),
    (lambda d: d["user_parameters"]["aoi"].update(cls="subprocess:Popen"),
     "not an intake user-parameter class"),
    (lambda d: d["user_parameters"]["aoi"].update(dtype="eval"), "builtin type name"),
    (lambda d: d["entries"]["berry_creek"]["kwargs"]["params"].update(
        url="{CATALOG_DIR.__class__}"), "only '{name}' templates"),
])
def test_code_paths_in_v2_catalogs_are_refused(tmp_path: Path, edit: Any, message: str
                                               ) -> None:
    data = yaml.safe_load((CATALOGS / "berry_creek_v2.yaml").read_text())
    edit(data)
    path = _write(tmp_path / "v2.yaml", yaml.safe_dump(data))
    with pytest.raises(CatalogSecurityError, match=re.escape(message)):
        s2intake.open_catalog(path)


# ------------------------------------------------------------------ interop
def test_items_from_other_libraries(replica_env: str) -> None:
    import pystac_client

    datetime, bands = BERRY_ENTRIES["after_fire"]
    found = s2intake.search(AOI_PATH, datetime, max_cloud=10, url=replica_env)
    ref = s2intake.stack(found, bands)
    aoi = s2intake.read_aoi(AOI_PATH)
    item_search = pystac_client.Client.open(replica_env).search(
        collections=[V1], intersects=aoi.geojson, datetime=datetime,
        query={"eo:cloud_cover": {"lte": 10}})

    class IntakeStacLike:  # what intake-stac's StacItemCollection holds
        def __init__(self, obj: pystac.ItemCollection) -> None:
            self._stac_obj = obj

    sources = {
        "ItemCollection": found.item_collection(),
        "ItemSearch": item_search,
        "dicts": [dict(i) for i in found.items],
        "FeatureCollection": {"type": "FeatureCollection", "features": found.items},
        "intake-stac-like": IntakeStacLike(found.item_collection()),
    }
    for label, items in sources.items():
        ds = Sentinel2Source(items=items, aoi=AOI_PATH, bands=bands).to_dask()
        assert ds.identical(ref), label
        if label != "intake-stac-like":  # stack() itself takes the first four directly
            assert s2intake.stack(items, bands, aoi=AOI_PATH).identical(ref), label
    _assert_same(Sentinel2Source(items=found.item_collection(), aoi=AOI_PATH,
                                 bands=bands).to_dask(), ref)


def test_real_intake_stac_objects(replica_env: str) -> None:
    intake_stac = pytest.importorskip("intake_stac")  # not a dependency (unmaintained)
    found = s2intake.search(AOI_PATH, "2020-09-08/2020-11-30", max_cloud=10, url=replica_env)
    wrapped = intake_stac.StacItemCollection(found.item_collection())
    ds = Sentinel2Source(items=wrapped, aoi=AOI_PATH).to_dask()
    xr.testing.assert_identical(ds, s2intake.stack(found, ["red", "green", "blue"]))


def test_items_in_a_catalog_entry(tmp_path: Path, local_items: Path, replica_env: str
                                  ) -> None:
    shutil.copy(local_items, tmp_path / "items.json")
    path = _entry_catalog(tmp_path, """
aoi: aoi.geojson
items: "{{ CATALOG_DIR }}/items.json"
bands: [red, nir]
""")
    source = s2intake.open_catalog(path).scene
    ds = source.to_dask()
    assert source.search_result.mode == "local"  # a local item file may use local hrefs
    assert len(source.search_result) == len(json.loads(local_items.read_text())["features"])
    # same pixels as the replica serves for the same items
    everything = s2intake.search(AOI_PATH, None, url=replica_env)
    sample_ids = {i["id"] for i in source.search_result.items}
    same = [i for i in everything.items if i["id"] in sample_ids]
    ref = s2intake.stack(same, ["red", "nir"], aoi=AOI_PATH)
    assert list(ds["id"].values) == list(ref["id"].values)
    t = int(np.argmax(ds["eo:cloud_cover"].values < 5))
    xr.testing.assert_equal(_window(ds, t).drop_vars("spatial_ref"),
                            _window(ref, t).drop_vars("spatial_ref"))


def test_local_hrefs_need_permission(local_items: Path) -> None:
    items = json.loads(local_items.read_text())["features"][:2]
    with pytest.raises(CatalogSecurityError, match="field 'allow_local_hrefs'"):
        Sentinel2Source(items=items, aoi=AOI_PATH).to_dask()
    ds = Sentinel2Source(items=items, aoi=AOI_PATH, allow_local_hrefs=True).to_dask()
    assert ds.sizes["time"] >= 1


def test_pystac_items_are_not_resolved_online(local_items: Path) -> None:
    # the sample items' root links point at the real Earth Search; pystac's default
    # to_dict() would resolve them (a request per item, a failure offline)
    dicts = json.loads(local_items.read_text())["features"][:3]
    assert any(link["rel"] == "root" and link["href"].startswith("https://")
               for link in dicts[0]["links"])
    collection = pystac.ItemCollection([pystac.Item.from_dict(d) for d in dicts])
    ref = Sentinel2Source(items=dicts, aoi=AOI_PATH, allow_local_hrefs=True).to_dask()
    for items in (collection, list(collection.items)):
        ds = Sentinel2Source(items=items, aoi=AOI_PATH, allow_local_hrefs=True).to_dask()
        xr.testing.assert_identical(ds, ref)


# ------------------------------------------------------------------ intake 2 reader
@pytest.mark.parametrize("opener", ["intake", "s2intake"])
def test_v2_catalog_matches_v1(opener: str, replica_env: str) -> None:
    path = CATALOGS / "berry_creek_v2.yaml"
    cat = intake.open_catalog(str(path)) if opener == "intake" else s2intake.open_catalog(path)
    assert isinstance(cat, intake.readers.entry.Catalog)
    if opener == "s2intake":
        assert isinstance(cat, SafeV2Catalog)
    v1 = s2intake.open_catalog(CATALOGS / "berry_creek.yaml")
    for entry in BERRY_ENTRIES:
        reader = cat(max_cloud=10)[entry]
        assert isinstance(reader, Sentinel2Reader)
        ds = reader.read()
        xr.testing.assert_identical(ds, getattr(v1, entry)(max_cloud=10).to_dask())
    ds = cat(max_cloud=50, resolution=20)["after_fire"].read()
    found = s2intake.search(AOI_PATH, "2020-09-08/2020-11-30", max_cloud=50, url=replica_env)
    _assert_same(ds, s2intake.stack(found, BERRY_ENTRIES["after_fire"][1], resolution=20))


def test_v2_errors_name_entry_and_field(replica_env: str) -> None:
    cat = s2intake.open_catalog(CATALOGS / "berry_creek_v2.yaml")
    with pytest.raises(CatalogError, match=r"'berry_creek'.*field 'max_cloud'"):
        cat(max_cloud="abc")["berry_creek"]
    with pytest.raises(CatalogError, match=r"'after_fire'.*field 'start'.*after"):
        cat(start="2021-01-01")["after_fire"]
    with pytest.raises(CatalogError, match=r"'before_fire'.*field 'bands'"):
        cat(bands=["red", "nope"])["before_fire"]
    plain = intake.open_catalog(str(CATALOGS / "berry_creek_v2.yaml"))
    with pytest.raises(CatalogError, match=r"'after_fire'.*field 'aoi'"):
        plain(aoi="nowhere.geojson")["after_fire"].read()


def test_reader_in_a_programmatic_intake2_catalog(tmp_path: Path, replica_env: str) -> None:
    shutil.copy(AOI_PATH, tmp_path / "aoi.geojson")
    reader = Sentinel2Reader(url=replica_env, aoi=str(tmp_path / "aoi.geojson"),
                             start="2020-09-08", end="2020-11-30", max_cloud=10,
                             bands=BERRY_ENTRIES["after_fire"][1])
    cat = intake.entry.Catalog()
    cat["after"] = reader
    cat.to_yaml_file(str(tmp_path / "made.yaml"))
    again = s2intake.open_catalog(tmp_path / "made.yaml")
    ds = again["after"].read()
    _assert_same(ds, _reference(replica_env, "after_fire"))
    source = again["after"].source()
    assert len(source.search_result) == source.discover()["items"]


# ------------------------------------------------------------------ CLI
def test_cli_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2INTAKE_STAC_URL", UNREACHABLE)
    runner = CliRunner()
    result = runner.invoke(cli_main, ["catalog", "list", str(CATALOGS / "index.yaml")])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == ["berry_creek", "berry_creek.berry_creek", "berry_creek.before_fire",
                     "berry_creek.after_fire", "berry_creek.burn_severity", "earth_search", "earth_search.sentinel_2_l2a",
                     "earth_search.sentinel_s2_l2a_cogs"]
    result = runner.invoke(cli_main, ["catalog", "list", "--format", "json",
                                               str(CATALOGS / "berry_creek_v2.yaml")])
    assert [r["name"] for r in json.loads(result.output)] == list(BERRY_ENTRIES)


def test_cli_show(replica_env: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_main, [
        "catalog", "show", str(CATALOGS / "index.yaml"), "berry_creek.after_fire",
        "-p", "max_cloud=50", "-p", "bands=red,nir", "--format", "json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    found = s2intake.search(AOI_PATH, "2020-09-08/2020-11-30", max_cloud=50, url=replica_env)
    ref = s2intake.stack(found, ["red", "nir"])
    assert shown["schema"]["items"] == len(found)
    assert shown["schema"]["dims"] == dict(ref.sizes)
    assert shown["schema"]["dtype"] == {"red": "uint16", "nir": "uint16"}
    params = {p["name"]: p for p in shown["parameters"]}
    assert params["start"]["default"] == "2020-09-08" and params["max_cloud"]["type"] == "float"
    text = runner.invoke(cli_main, [
        "catalog", "show", str(CATALOGS / "berry_creek.yaml"), "before_fire"])
    assert text.exit_code == 0, text.output
    assert "max_cloud (float, default 10.0" in text.output and "schema:" in text.output


def test_cli_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2INTAKE_STAC_URL", UNREACHABLE)
    runner = CliRunner()
    result = runner.invoke(cli_main, [
        "catalog", "show", str(CATALOGS / "berry_creek.yaml"), "after_fire",
        "-p", "start=2021-01-01"])
    assert result.exit_code == 1
    assert "catalog entry 'after_fire'" in result.output and "field 'start'" in result.output
    result = runner.invoke(cli_main, [
        "catalog", "show", str(CATALOGS / "berry_creek.yaml"), "nope"])
    assert result.exit_code == 1 and "no entry 'nope'" in result.output
    result = runner.invoke(cli_main, [
        "catalog", "gif", str(CATALOGS / "berry_creek.yaml"), "berry_creek", "x.gif",
        "-p", "oops"])
    assert result.exit_code == 2 and "key=value" in result.output


def test_cli_gif(tmp_path: Path, replica_env: str) -> None:
    out = tmp_path / "fire.gif"
    result = CliRunner().invoke(cli_main, [
        "catalog", "gif", str(CATALOGS / "berry_creek.yaml"), "after_fire", str(out),
        "-p", "resolution=160", "-p", "max_cloud=20", "--no-progress", "--fps", "2"])
    assert result.exit_code == 0, result.output
    found = s2intake.search(AOI_PATH, "2020-09-08/2020-11-30", max_cloud=20, url=replica_env)
    ref = s2intake.stack(found, ["red", "green", "blue"], resolution=160).s2.clip_aoi()
    with Image.open(out) as gif:
        assert gif.n_frames == ref.sizes["time"]
        assert gif.size == (ref.sizes["x"], ref.sizes["y"])


# ------------------------------------------------------------------ docs
def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_docs_catalogs_page_runs(tmp_path: Path, replica_env: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    page = (REPO / "docs" / "catalogs.md").read_text()
    blocks = _python_blocks(page)
    assert len(blocks) >= 5, "docs/catalogs.md lost its code blocks"
    shutil.copytree(CATALOGS, tmp_path / "catalogs")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "docs_catalogs"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/catalogs.md[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"docs/catalogs.md block {i} failed:\n{block}") from exc
    gifs = list(tmp_path.glob("*.gif"))
    assert gifs and all(p.stat().st_size > 0 for p in gifs), "the page wrote no GIF"
    assert isinstance(namespace.get("ds"), xr.Dataset)


def test_supported_versions_are_documented() -> None:
    page = (REPO / "docs" / "catalogs.md").read_text()
    assert re.search(r"intake\s*2\.0", page) and "0.7" in page
    assert os.path.exists(CATALOGS / "berry_creek.geojson")
