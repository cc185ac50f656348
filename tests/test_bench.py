"""The benchmark harness runs end to end on a tiny configuration (no timing is checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("psutil")  # the bench extra; the harness itself needs only s2intake here


def test_quick_run_writes_results(sample: Any, tmp_path: Path) -> None:
    """``python -m bench.run --quick`` on the sparse sample: two contenders, one cell."""
    out = tmp_path / "out"
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the served folder of links goes here
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--data-root", str(sample.root),
         "--contenders", "window,s2intake", "--out", str(out), "--wait-load", "0",
         "--timeout", "50"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["contender"] for r in rows} == {"window", "s2intake"}
    for row in rows:
        assert row["ok"], row.get("error")
        assert row["requests"] > 0 and row["bytes"] > 0  # counted from nginx's access log
        assert row["tile_bytes"] > 0 and row["peak_rss"] > 0
        assert row["output"]["shape"][-1] == 4  # an RGBA array
    report = (out / "RESULTS.md").read_text()
    assert "| 1km | 2 | window |" in report and "| 1km | 2 | s2intake |" in report
    assert "s2intake targets per cell" in report
