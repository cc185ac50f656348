"""The Berry Creek catalog's burn-severity entry gives the sample's known burned area."""

from __future__ import annotations

from pathlib import Path

import s2intake
from s2intake.burn import burned_area

CATALOG = Path(__file__).resolve().parents[1] / "catalogs" / "berry_creek.yaml"


def test_burn_severity_entry_matches_the_synthetic_scar(stac_url, sample, cog_server):
    cat = s2intake.open_catalog(CATALOG)
    entry = cat.burn_severity(url=stac_url)
    meta = entry.describe()["metadata"]
    mark = cog_server.mark()
    ds = entry.to_dask()
    assert cog_server.entries_since(mark) == []  # lazy until the dNBR is computed
    assert set(ds.data_vars) == {"nir", "swir22", "scl"}
    dnbr = ds.s2.dnbr(before=tuple(meta["before"]), after=tuple(meta["after"]),
                      min_clear=meta["min_clear"])
    hectares = burned_area(dnbr.compute(), aoi=ds.s2.aoi)
    truth = sample.truth()
    final = max(a["burn_area_m2"] for a in truth["acquisitions"]) / 1e4
    assert abs(hectares - final) / final < 0.05, (hectares, final)
