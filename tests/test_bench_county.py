"""``python -m etl.bench_county`` end to end on a tiny county (needs the machine's PostgreSQL).

It checks the report's shape and that its counts agree, never a speed: speeds are what the
benchmark reports, at scale 1 and 5, not what a test on a busy machine may assert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_bench_county_reports_every_stage_beside_its_anchor(tmp_path):
    require_server(5432, "PostgreSQL (etl.bench_county's department databases)")
    env = {**os.environ, "COUNTYLAKE_HOME": str(tmp_path / "home")}
    env.pop("COUNTYLAKE_SCHEMAS", None)
    command = [sys.executable, "-m", "etl.bench_county", "--scales", "0.01", "--history-days",
               "1", "--no-warehouse", "--read-sql-rows", "2000", "--gx-rows", "2000",
               "--rounds", "3",
               "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "bench-county.json").read_text(encoding="utf-8"))
    assert (tmp_path / "bench-county.md").read_text(encoding="utf-8").startswith("# County")

    (scale,) = report["scales"]
    stages = scale["stages"]
    assert list(stages) == ["extraction", "validation", "landing", "daily", "unchanged"]
    for name, roles in stages.items():
        project = roles["project"]
        assert project["ratio"] > 0, name
        assert project["anchor"], name
        assert project["seconds"] > 0 and project["peak_mb"] > 0, name
        # the child's own memory before its work, not the bench's (the parent's) peak
        assert 0 < project["baseline_mb"] <= project["peak_mb"], name
    extraction, validation, landing = (stages[k] for k in ("extraction", "validation", "landing"))
    tables = sum(t["rows"] for t in scale["department_tables"])
    assert tables > 0
    assert extraction["project"]["rows"] == extraction["anchor"]["rows"] == tables
    assert 0 < extraction["baseline"]["rows"] <= tables
    for stage in (extraction, validation):
        for role in ("project", "anchor"):  # scored by its median round, the best beside it
            m = stage[role]
            assert m["rounds"] == len(m["round_seconds"]) == 3
            assert round(m["seconds"], 3) == sorted(m["round_seconds"])[1]
            assert m["best_seconds"] == pytest.approx(min(m["round_seconds"]), abs=1e-3)
        assert len(stage["project"]["round_ratios"]) == 3
        assert min(stage["project"]["round_ratios"]) > 0
    assert extraction["baseline"]["rounds"] == extraction["server"]["rounds"] == 1
    assert extraction["server"]["rows"] == tables  # the machine's postgres is a superuser
    per_table = extraction["project"]["per_dataset"]
    assert sum(t["rows"] for t in per_table.values()) == tables
    assert all(t["cpu_s"] > 0 for t in per_table.values())
    engine = validation["project"]
    assert engine["rows"] == tables == engine["rows_landed"] + engine["rows_quarantined"]
    assert 0 < validation["anchor"]["rows"] <= tables
    assert landing["project"]["rows"] == landing["anchor"]["rows"] == scale["lake_rows"] > 0
    for night in ("daily", "unchanged"):
        n = stages[night]["project"]
        assert n["rows_read"] == n["rows_landed"] + n["rows_quarantined"] + n["rows_unchanged"]
    assert stages["daily"]["project"]["rows_landed"] > 0
    assert stages["unchanged"]["project"]["rows_landed"] == 0  # nothing new at the sources
    assert scale["activity_rows"] > 0 and scale["prepare"]["history"]["history_days"] == 1
    met = {t["stage"] for t in report["targets"]}
    assert {"extraction", "landing", "validation", "unchanged", "memory"} <= met
