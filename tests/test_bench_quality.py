"""``python -m etl.bench_quality`` end to end on a small sample: the report's structure, and the
engine and Great Expectations agreeing rule by rule on the same rows (no timing assertions:
a benchmark reports rates, a test checks that the comparison is sound)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS, GX_ROWS = 200_000, 50_000


def _run(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COUNTYLAKE_HOME": str(home)}
    env.pop("COUNTYLAKE_SCHEMAS", None)
    return subprocess.run(
        [sys.executable, "-m", "etl.bench_quality", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bench_quality_reports_engine_and_gx_that_agree(tmp_path):
    done = _run(
        "--rows", str(ROWS), "--gx-rows", str(GX_ROWS), "--out", str(tmp_path),
        home=tmp_path / "home",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rows/s in check()" in done.stdout  # progress while it runs
    assert (tmp_path / "bench-quality.md").exists()
    report = json.loads((tmp_path / "bench-quality.json").read_text(encoding="utf-8"))

    rule_ids = [r["id"] for r in report["rules"]]
    assert "gb11643:id_number" in rule_ids and "gb11643_legacy:id_number" in rule_ids
    assert len(rule_ids) == 13
    measured = report["measurements"]
    assert set(measured) == {"engine", "gx"}
    assert measured["engine"]["rows"] == ROWS and measured["gx"]["rows"] == GX_ROWS
    for name, m in measured.items():
        assert m["seconds"] > 0 and m["rows_per_s"] > 0 and m["peak_mb"] > 0, name
        assert m["vs_gx"] > 0, name
    engine = measured["engine"]
    assert engine["rows_good"] + engine["rows_quarantined"] == ROWS
    assert 0 < engine["rows_quarantined"] < ROWS * 0.03  # ~1.3% blocking dirt
    assert engine["sample"]["rows"] == GX_ROWS

    agreement = report["agreement"]
    assert agreement["rows"] == GX_ROWS
    assert agreement["gb11643"]["engine"] == agreement["gb11643"]["gx"] > 0
    assert {r["rule_id"] for r in agreement["rules"]} == set(rule_ids)
    for r in agreement["rules"]:
        assert r["agree"], r
        assert r["engine"] == r["injected"], r  # every rule finds exactly the dirt injected
        if r["gx_sample"] is not None:
            assert r["gx_sample"] == r["engine_sample"], r
    assert agreement["all_agree"] and report["problems"] == []
    assert len(report["targets"]) == 3
    assert all(isinstance(t["met"], bool) for t in report["targets"])


def test_bench_quality_help_and_bad_arguments(tmp_path):
    shown = _run("--help", home=tmp_path)
    assert shown.returncode == 0 and "--gx-rows" in shown.stdout
    refused = _run("--rows", "1000", "--gx-rows", "5000", home=tmp_path)
    assert refused.returncode == 2
    assert "--gx-rows (5,000) must not exceed --rows (1,000)" in refused.stderr
