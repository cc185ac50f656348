"""Security defaults: nothing local is read from a remote catalog, no credential leaks.

* Asset hrefs from a STAC API may only be ``http(s)`` or ``s3`` unless
  ``allow_local_hrefs=True``; :func:`s2intake.stack` refuses others before any read, and
  assets are opened with the GTiff driver only (a VRT could point at local files).
* Credentials given as GDAL options or search headers are used (they reach the server) but
  never appear in logs, error messages, warnings, attrs, or the repr/str of the dataset, its
  Dask graph and tasks, or :class:`s2intake.gdal_env.ReadOptions`.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from faultproxy import Rule, replica_proxies
from rasterio.transform import from_origin

import s2intake
from s2intake import ReadError, SearchError, SecurityError
from s2intake.gdal_env import ReadOptions, redact_url
from s2intake.reader import ReadFailure, compute_with_failures, gdal_path
from s2intake.replica import CogServer

AOI = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.geojson"
WHEN = "2020-01-01/2021-06-30"
SMALL = (625000.0, 4410000.0, 627000.0, 4412000.0)
FAIL_GDAL = {"GDAL_HTTP_MAX_RETRY": "1", "GDAL_HTTP_RETRY_DELAY": "0.05",
             "GDAL_HTTP_TIMEOUT": "5"}

#: Credentials as a user would pass them; none of these strings may leak anywhere.
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAS2INTAKETESTKEY01",
    "AWS_SECRET_ACCESS_KEY": "s2intakeSecretAccessKey/0123456789+abc",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzS2IntakeSessionToken0123",
    "GDAL_HTTP_HEADERS": "Authorization: Bearer s2i-bearer-token-0123456789",
    "GDAL_HTTP_USERPWD": "reader:s2i-password-0123",
}
LEAKS = ("AKIAS2INTAKETESTKEY01", "s2intakeSecretAccessKey", "S2IntakeSessionToken",
         "s2i-bearer-token", "s2i-password")


def _assert_clean(text: str, what: str) -> None:
    found = [secret for secret in LEAKS if secret.lower() in text.lower()]
    assert not found, f"{what} shows {found}"


@pytest.fixture(scope="module")
def found(replica: Any) -> s2intake.SearchResult:
    """A search of the replica's STAC API (a remote API: local hrefs not allowed)."""
    result = s2intake.search(AOI, WHEN, max_cloud=10, url=replica.stac_url)
    assert result.mode != "local"
    return result


def _with_href(found: s2intake.SearchResult, href: str) -> s2intake.SearchResult:
    items = [dict(i) for i in found.items]
    first = dict(items[0])
    first["assets"] = {**first["assets"], "red": {**first["assets"]["red"], "href": href}}
    items[0] = first
    return dataclasses.replace(found, items=items)


# ---------------------------------------------------------------------------- local hrefs

REFUSED = [
    "file:///etc/passwd",
    "/etc/passwd",
    "../../../etc/passwd",
    "B04.tif",
    "/vsicurl/http://127.0.0.1:9/x.tif",
    "/vsimem/x.tif",
    "/vsizip//tmp/x.zip/x.tif",
    "C:\\Windows\\win.ini",
    "vrt:///etc/passwd?bands=1",
    'HDF5:"/etc/x.h5"://data',
    "ftp://example.org/x.tif",
    "gs://bucket/x.tif",
    "http:///no-host.tif",
    "https://example.org/x.tif\r\nHost: evil",
    "",
]


@pytest.mark.parametrize("href", REFUSED)
def test_stack_refuses_non_remote_hrefs_before_any_read(
        href: str, found: s2intake.SearchResult, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Any] = []
    monkeypatch.setattr(rasterio, "open", lambda *a, **k: opened.append(a))
    with pytest.raises(SecurityError) as info:
        s2intake.stack(_with_href(found, href), ["red", "green"])
    assert opened == []
    if href.startswith(("file:", "/", "..", "B04", "C:")):
        assert "allow_local_hrefs=True" in str(info.value)


@pytest.mark.parametrize("href", ["https://example.org/B04.tif", "s3://sentinel-cogs/x/B04.tif"])
def test_remote_hrefs_are_accepted(href: str, found: s2intake.SearchResult) -> None:
    ds = s2intake.stack(_with_href(found, href), ["red"])  # builds the graph, reads nothing
    assert ds.red.shape[0] >= 1
    assert gdal_path(href).startswith(("https://", "/vsis3/sentinel-cogs/"))


def test_a_remote_api_serving_local_hrefs_is_refused_unless_allowed(
        replica: Any, cog_root: Path) -> None:
    """End to end: the STAC API itself hands out ``file://`` hrefs to the COG files."""
    with replica_proxies(replica, cog_rewrite_to=f"file://{cog_root}") as (stac, cog):
        evil = s2intake.search(AOI, WHEN, max_cloud=10, url=stac.url)
        assert evil.items[0]["assets"]["red"]["href"].startswith("file://")
        with pytest.raises(SecurityError, match="allow_local_hrefs"):
            s2intake.stack(evil, ["red"], bounds=SMALL)
        allowed = s2intake.stack(evil, ["red"], bounds=SMALL, allow_local_hrefs=True)
        local = allowed.red.isel(time=0).values
        assert cog.stats.requests == 0  # nothing went to a server: the files were local
    path = evil.items[0]["assets"]["red"]["href"][len("file://"):]
    with rasterio.open(path) as src:
        window = rasterio.windows.from_bounds(*SMALL, transform=src.transform)
        np.testing.assert_array_equal(local, src.read(1, window=window))


def test_items_handed_over_as_dicts_get_no_local_access_by_default(
        tmp_path: Path, found: s2intake.SearchResult) -> None:
    local = _with_href(found, str(tmp_path / "B04.tif"))
    with pytest.raises(SecurityError):
        s2intake.stack(local.items, ["red"])  # plain dicts: not known to be local
    s2intake.stack(local.items, ["red"], allow_local_hrefs=True)  # explicit opt-in


def _write_secret(path: Path) -> None:
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "uint16",
               "crs": "EPSG:32610", "transform": from_origin(SMALL[0], SMALL[3], 10, 10)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, 64, 64), 4242, dtype="uint16"))


def test_a_vrt_disguised_as_a_tif_cannot_make_gdal_read_local_files(
        tmp_path: Path, found: s2intake.SearchResult) -> None:
    secret = tmp_path / "secret.tif"
    _write_secret(secret)
    served = tmp_path / "www"
    served.mkdir()
    vrt = (f'<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>EPSG:32610</SRS>'
           f'<GeoTransform>{SMALL[0]}, 10, 0, {SMALL[3]}, 0, -10</GeoTransform>'
           f'<VRTRasterBand dataType="UInt16" band="1"><SimpleSource>'
           f'<SourceFilename relativeToVRT="0">{secret}</SourceFilename>'
           f'<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    (served / "B04.tif").write_text(vrt)
    with CogServer(served, tmp_path / "nginx") as server:
        href = server.url + "/B04.tif"
        with rasterio.open(href) as plain:  # what GDAL alone would do with it
            assert plain.driver == "VRT" and (plain.read(1) == 4242).all()
        ds = s2intake.stack(_with_href(found, href).items[:1], ["red"], bounds=SMALL,
                            retries=0, gdal_options=FAIL_GDAL)
        with pytest.raises(ReadError) as info:
            ds.red.compute()
    assert "4242" not in str(info.value) and href in str(info.value)


# ---------------------------------------------------------------------------- credentials


def test_read_options_never_show_credentials() -> None:
    options = ReadOptions.make(SECRETS)
    for text in (repr(options), str(options), repr([options]), f"{options}"):
        _assert_clean(text, "ReadOptions repr")
    assert options.env()["AWS_SECRET_ACCESS_KEY"] == SECRETS["AWS_SECRET_ACCESS_KEY"]
    assert options.env()["AWS_NO_SIGN_REQUEST"] == "NO"  # keys given: sign requests
    assert pickle.loads(pickle.dumps(options)) == options  # travels to workers intact
    message = "failed with Authorization: Bearer s2i-bearer-token-0123456789 and " \
              "s2intakeSecretAccessKey/0123456789+abc"
    _assert_clean(options.scrub(message), "scrubbed text")


def test_credentials_are_used_but_never_shown(
        replica: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with replica_proxies(replica, record_headers=True) as (stac, cog):
        found = s2intake.search(AOI, WHEN, max_cloud=10, url=stac.url)
        ds = s2intake.stack(found.items[:3], ["red"], bounds=SMALL, mosaic=False, retries=1,
                            gdal_options={**SECRETS, **FAIL_GDAL})
        cog.configure(rules=[Rule("503", headers={"Range": "^bytes=[1-9]"})])
        with pytest.raises(ReadError) as info:
            ds.red.compute()
        sent = [dict(r.headers).get("Authorization", "") for r in cog.records]
        nodata = s2intake.stack(found.items[:3], ["red"], bounds=SMALL, mosaic=False,
                                retries=0, on_error="nodata",
                                gdal_options={**SECRETS, **FAIL_GDAL})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = compute_with_failures(nodata)
    # the credentials were used: GDAL sent the header to the server
    assert "Bearer s2i-bearer-token-0123456789" in sent
    graph = ds.red.data.dask
    texts = {
        "exception": f"{info.value!s} {info.value!r} {info.value.__cause__!r}",
        "repr(ds)": repr(ds), "str(ds)": str(ds), "html": ds._repr_html_(),
        "attrs": repr(ds.attrs) + repr(ds.red.attrs) + repr(out.attrs),
        "str(graph)": str(graph), "repr(graph)": repr(graph),
        "layers": repr(graph.layers) + "".join(repr(v) for v in graph.layers.values()),
        "tasks": "".join(repr(task) for task in dict(graph).values()),
        "warnings": "".join(str(w.message) + repr(w.message.failure) for w in caught
                            if isinstance(w.message, ReadFailure)),
        "logs": caplog.text + "".join(repr(r.args) for r in caplog.records),
    }
    assert texts["warnings"] and out.attrs["s2intake_failed_reads"]
    for what, text in texts.items():
        _assert_clean(text, what)


def test_search_headers_are_sent_but_never_shown(
        replica: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": "Bearer s2i-bearer-token-0123456789",
               "X-Api-Key": "s2i-password-0123"}
    with replica_proxies(replica, record_headers=True) as (stac, _cog):
        ok = s2intake.search(AOI, WHEN, max_cloud=10, url=stac.url, headers=headers)
        stac.configure(rules=[Rule("503", method="POST")])
        with pytest.raises(SearchError) as info:
            s2intake.search(AOI, WHEN, max_cloud=10, url=stac.url, headers=headers, retries=1)
        sent = {dict(r.headers).get("Authorization") for r in stac.records}
    assert len(ok) > 0 and headers["Authorization"] in sent
    _assert_clean(f"{info.value!s} {info.value!r}", "SearchError")
    _assert_clean(caplog.text + "".join(repr(r.args) for r in caplog.records), "logs")
    _assert_clean(repr(ok), "SearchResult")


def test_credentials_in_urls_are_masked_in_errors_and_logs(
        replica: Any, found: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with replica_proxies(replica) as (_stac, cog):
        path = found.items[0]["assets"]["red"]["href"][len(replica.cog_url):]
        href = (cog.url.replace("http://", "http://reader:s2i-password-0123@") + path
                + "?X-Amz-Signature=s2i-bearer-token-99&x=1")
        cog.configure(rules=[Rule("503")])
        ds = s2intake.stack(_with_href(found, href).items[:1], ["red"], bounds=SMALL,
                            retries=0, gdal_options=FAIL_GDAL)
        with pytest.raises(ReadError) as info:
            ds.red.compute()
    _assert_clean(str(info.value), "ReadError")
    assert "Retrying again" in caplog.text  # GDAL did log its retries, with the URL
    _assert_clean(caplog.text, "logs")
    assert "reader:***@" in str(info.value) and "X-Amz-Signature=***" in str(info.value)
    assert redact_url("https://h/x.tif?sig=abc&se=2030&sp=r") == \
        "https://h/x.tif?sig=***&se=***&sp=***"
