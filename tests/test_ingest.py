"""End to end without Airflow: a simulated county, day after day, lands in the lake with nothing
lost and nothing doubled."""

from __future__ import annotations

import json

import duckdb
import pytest
from conftest import copy_sources
from ingest_helpers import api_server, lake_digest, lake_rows, run_day, window

from etl.contracts import load_systems
from etl.ledger import Ledger


@pytest.fixture
def day1(home, simulated_days, monkeypatch):
    copy_sources(simulated_days, 1, home)
    with api_server(home, monkeypatch):
        results, errors = run_day(1)
    assert errors == {}
    return results


def test_first_day_lands_every_dataset_and_reconciles(home, day1):
    datasets = {f"{s.system}.{d.dataset}" for s in load_systems() for d in s.datasets}
    assert set(day1) == datasets
    for name, result in day1.items():
        system, dataset = name.split(".")
        assert result["rows_read"] > 0, name
        assert result["rows_read"] == (
            result["rows_landed"] + result["rows_quarantined"] + result["rows_unchanged"]
        ), name
        assert lake_rows(home, "raw", system, dataset) == result["rows_landed"], name
        assert lake_rows(home, "quarantine", system, dataset) == result["rows_quarantined"], name
    # the simulated dirt is caught: some rows of the register fail their contract
    assert sum(r["rows_quarantined"] for r in day1.values()) > 0
    ledger = Ledger(home / "state" / "ledger.duckdb").latest()
    assert {r["status"] for r in ledger} == {"landed"}


def test_manifest_describes_every_landed_file(home, day1):
    manifests = list((home / "lake" / "raw").rglob("_manifest.json"))
    assert len(manifests) == len(day1)
    for path in manifests:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        assert manifest["window"] == list(window(1))
        assert len(manifest["schema_fingerprint"]) == 16
        for entry in manifest["files"]:
            data = path.parent / entry["path"]
            assert data.stat().st_size == entry["bytes"]
            import hashlib

            assert hashlib.sha256(data.read_bytes()).hexdigest() == entry["sha256"]
        assert sum(e.get("rows", 0) for e in manifest["files"]) == manifest["rows"]["landed"]


def test_rerunning_a_day_gives_the_same_lake(home, day1, monkeypatch):
    before = lake_digest(home)
    with api_server(home, monkeypatch):
        again, errors = run_day(1)
    assert errors == {}
    assert lake_digest(home) == before
    assert {k: v["rows_landed"] for k, v in again.items()} == {
        k: v["rows_landed"] for k, v in day1.items()
    }


def test_rerunning_a_night_that_found_nothing_new_reads_nothing_again(home, day1, monkeypatch):
    """The night after day 1 with the sources as they were: every dataset lands an empty
    window (or, for a register, counts its rows unchanged). Running that night again gives the
    same lake: an id-based dataset that found no new id does not read its whole table."""
    with api_server(home, monkeypatch):
        quiet, errors = run_day(2)
        assert errors == {}
        before = lake_digest(home)
        again, errors = run_day(2)
    assert errors == {}
    assert lake_digest(home) == before
    landed = {k: v["rows_landed"] for k, v in again.items()}
    assert landed == {k: v["rows_landed"] for k, v in quiet.items()}
    strategies = {f"{s.system}.{d.dataset}": d.incremental.strategy
                  for s in load_systems() for d in s.datasets}  # fmt: skip
    ids = [name for name, strategy in strategies.items() if strategy == "append_id"]
    assert ids and all(again[name]["rows_read"] == 0 for name in ids), again


def test_second_day_reads_only_what_changed(home, day1, simulated_days, monkeypatch):
    copy_sources(simulated_days, 2, home)
    with api_server(home, monkeypatch):
        day2, errors = run_day(2)
    assert errors == {}
    start, end = window(2)
    local = (start[:10], end[:10])
    # watermark: only rows updated during day 2
    resident = home / "lake" / "raw" / "public_security" / "resident" / f"load_date={local[0]}"
    stamps = duckdb.execute(
        f"SELECT min(updated_at)::VARCHAR, max(updated_at)::VARCHAR "
        f"FROM read_parquet('{resident}/**/*.parquet')"
    ).fetchone()
    assert local[0] <= stamps[0][:10] and stamps[1][:10] < local[1]
    assert (
        day2["public_security.resident"]["rows_read"]
        < day1["public_security.resident"]["rows_read"]
    )
    # append_id: ids continue above day 1's
    alarms = home / "lake" / "raw" / "emergency" / "sensor_alarm"
    first, second = duckdb.execute(
        f"SELECT max(alarm_id) FILTER (WHERE load_date = '{window(1)[0][:10]}'), "
        f"min(alarm_id) FILTER (WHERE load_date = '{local[0]}') "
        f"FROM read_parquet('{alarms}/**/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert second > first
    # new_files: day 2 reads only the file dropped on day 2
    assert day2["hotline.ticket"]["files_read"] == 1
    # snapshot: unchanged rows are not landed again; source deletes arrive as D markers
    entity = day2["market_regulation.entity"]
    assert entity["rows_unchanged"] > entity["rows_landed"]
    household = home / "lake" / "raw" / "public_security" / "household"
    ops = dict(
        duckdb.execute(
            f"SELECT _op, count(*) FROM read_parquet('{household}/load_date="
            f"{local[0]}/**/*.parquet') GROUP BY ALL"
        ).fetchall()
    )
    assert ops.get("D", 0) == day2["public_security.household"]["rows_deleted"]
    assert sum(ops.values()) == day2["public_security.household"]["rows_landed"] + ops.get("D", 0)
    for result in day2.values():
        assert result["rows_read"] == (
            result["rows_landed"] + result["rows_quarantined"] + result["rows_unchanged"]
        )


def test_a_missed_day_is_caught_up_once(home, day1, simulated_days, monkeypatch):
    """Day 2's run never happened; day 3's run catches its rows up, and when day 2 is finally
    run it lands nothing more: every row exactly once."""
    copy_sources(simulated_days, 2, home)
    only = {"health.consultation", "public_security.resident", "hotline.ticket"}
    day3, errors = run_day(3, only)
    assert errors == {}
    late, errors = run_day(2, only)
    assert errors == {}
    assert all(result["rows_read"] == 0 for result in late.values())
    assert day3["hotline.ticket"]["files_read"] == 1
    consultations = home / "lake" / "raw" / "health" / "consultation"
    total, distinct = duckdb.execute(
        f"SELECT count(*), count(DISTINCT consultation_id) "
        f"FROM read_parquet('{consultations}/**/*.parquet')"
    ).fetchone()
    assert (
        total
        == distinct
        == (day1["health.consultation"]["rows_landed"] + day3["health.consultation"]["rows_landed"])
    )
