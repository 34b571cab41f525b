"""Through Airflow itself: one simulated day of two departments, run with dag.test, lands the
healthy department, reports the broken one without stopping, and emits the datasets' assets."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from airflow_probe import call

from etl.contracts import load_profile
from etl.simulate import simulate

pytestmark = pytest.mark.airflow


def test_one_day_through_airflow(home):
    simulate(home, scale=0.01, days=1, seed=1)
    # The emergency database loses its tables: its DAG fails, the health DAG still lands.
    (home / "sources" / "emergency.db").write_bytes(b"")
    day = date.fromisoformat(load_profile().simulation.start_date)

    out = call(["run", day.isoformat(), "health", "emergency"], home)

    by_group = {(r["system"], r["dataset"]): r for r in out["results"]}
    assert set(by_group) == {
        ("health", "consultation"),
        ("health", "referral"),
        ("emergency", "chemical_site"),
        ("emergency", "sensor_alarm"),
    }
    for (system, dataset), r in by_group.items():
        assert r["dag_id"] == f"ingest_{system}"
        assert (r["window_start"], r["window_end"]) == (
            f"{day}T00:00:00+08:00",
            f"{day + timedelta(days=1)}T00:00:00+08:00",
        )
        if system == "health":
            assert r["state"] == "success", r["error"]
            assert r["landed"]["system"] == "health" and r["landed"]["dataset"] == dataset
            assert r["error"] is None
        else:
            assert r["state"] in ("failed", "upstream_failed")
            assert r["failed_task"] == f"{dataset}.extract"
            assert "emergency.db" in r["error"] and r["traceback"]
            assert r["landed"] is None
    assert sum(by_group["health", d]["landed"]["rows_landed"] for d in ("consultation", "referral"))

    events = {e["name"]: e for e in out["asset_events"]}
    assert set(events) == {"countylake.raw.health.consultation", "countylake.raw.health.referral"}
    for name, event in events.items():
        dataset = name.rsplit(".", 1)[-1]
        assert event["dag_id"] == "ingest_health"
        assert event["uri"] == (home / "lake" / "raw" / "health" / dataset).as_uri()
        assert event["extra"]["rows_landed"] == by_group["health", dataset]["landed"]["rows_landed"]
