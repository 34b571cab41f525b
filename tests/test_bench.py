"""``python -m etl.bench`` end to end on a small table (needs the machine's PostgreSQL)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = 20_000


def _postgres_listening(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.integration
def test_bench_reports_the_four_measurements(tmp_path):
    if not _postgres_listening():
        pytest.skip("PostgreSQL is not listening on 127.0.0.1:5432 (etl.bench needs it)")
    env = {**os.environ, "COUNTYLAKE_HOME": str(tmp_path / "home")}
    env.pop("COUNTYLAKE_SCHEMAS", None)
    done = subprocess.run(
        [sys.executable, "-m", "etl.bench", "--rows", str(ROWS), "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    report = json.loads((tmp_path / "bench-extract.json").read_text(encoding="utf-8"))
    assert (tmp_path / "bench-extract.md").exists()
    measured = report["measurements"]
    assert set(measured) == {"copy_binary", "read_sql", "connector", "project"}
    for name, m in measured.items():
        assert m["rows"] > 0 and m["seconds"] > 0, name
        assert m["rows_per_s"] > 0 and m["peak_mb"] > 0, name
    assert measured["project"]["rows_landed"] == ROWS
    assert measured["project"]["rows_quarantined"] == 0
    assert measured["connector"]["rows"] == ROWS
    assert len(report["targets"]) == 3
    assert all(isinstance(t["met"], bool) for t in report["targets"])
