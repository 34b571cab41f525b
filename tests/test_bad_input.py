"""Bad input fails only its own dataset, with a message naming the source, the place and the
reason; nothing already landed is damaged; every failure is in the ledger; bad rows and files
are kept in quarantine."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import copy_sources
from ingest_helpers import api_server, lake_digest, lake_rows, run_day

import etl.sources.http as http_source
from etl.errors import SourceError
from etl.ledger import Ledger


@pytest.fixture
def sources(home, simulated_days):
    copy_sources(simulated_days, 1, home)
    return home / "sources"


def failed_attempts(home) -> dict[str, str]:
    return {
        f"{r['system']}.{r['dataset']}": r["error"]
        for r in Ledger(home / "state" / "ledger.duckdb").latest()
        if r["status"] == "failed"
    }


def test_a_source_that_is_down_fails_only_its_datasets(home, sources):
    (sources / "health.db").unlink()
    results, errors = run_day(
        1, {"health.consultation", "health.referral", "public_security.resident"}
    )
    assert set(errors) == {"health.consultation", "health.referral"}
    assert isinstance(errors["health.consultation"], SourceError)
    assert "health.db" in str(errors["health.consultation"])
    assert "does not exist" in str(errors["health.consultation"])
    assert results["public_security.resident"]["rows_landed"] > 0
    assert set(failed_attempts(home)) == {"health.consultation", "health.referral"}


def test_a_column_missing_at_the_source_is_named(home, sources):
    with sqlite3.connect(sources / "public_security.db") as con:
        con.execute("ALTER TABLE resident DROP COLUMN phone")
    _, errors = run_day(1, {"public_security.resident"})
    message = str(errors["public_security.resident"])
    # the register's contract freezes its schema: any added or removed column stops the window
    assert "table resident" in message and "policy freeze: removed ['phone']" in message
    assert "update the contract" in message


def test_a_failure_later_leaves_what_landed_untouched(home, sources, simulated_days):
    only = {"health.consultation"}
    run_day(1, only)
    before = lake_digest(home)
    copy_sources(simulated_days, 2, home)
    (home / "sources" / "health.db").write_bytes(b"this is not a database")
    _, errors = run_day(2, only)
    assert "health.consultation" in errors
    assert lake_digest(home) == before
    assert "health.consultation" in failed_attempts(home)


def _export(sources, system: str, suffix: str):
    (path,) = sorted((sources / system / "exports").glob(f"*{suffix}"))
    return path


def test_a_truncated_csv_keeps_its_broken_line_in_quarantine(home, sources):
    path = _export(sources, "hotline", ".csv")
    data = path.read_bytes()
    cut = data.rstrip(b"\r\n").rfind(b",")  # inside the last line: too few fields
    path.write_bytes(data[:cut])
    results, errors = run_day(1, {"hotline.ticket"})
    assert errors == {}
    ticket = results["hotline.ticket"]
    assert ticket["rows_quarantined"] >= 1
    import duckdb

    rows = duckdb.execute(
        f"SELECT _origin, _row, _reasons, _raw FROM read_parquet("
        f"'{home}/lake/quarantine/hotline/ticket/**/*.parquet') "
        f"WHERE list_contains(_reasons, 'parse:columns')"
    ).fetchall()
    assert len(rows) == 1
    origin, row, _reasons, raw = rows[0]
    assert origin == path.name and row > 1 and raw


def test_a_file_in_an_undeclared_encoding_is_kept_whole(home, sources):
    path = _export(sources, "housing_fund", ".csv")
    path.write_bytes(path.read_bytes().decode("gb18030").encode("utf-8"))
    results, errors = run_day(1, {"housing_fund.deposit"})
    assert errors == {}
    deposit = results["housing_fund.deposit"]
    assert deposit["files_quarantined"] == 1 and deposit["rows_landed"] == 0
    kept = list((home / "lake" / "quarantine" / "housing_fund").rglob(path.name))
    assert len(kept) == 1 and kept[0].read_bytes() == path.read_bytes()
    error = kept[0].with_name(path.name + ".error.txt").read_text()
    assert "UTF-8" in error and "gb18030" in error


def test_an_unreadable_workbook_is_kept_whole(home, sources):
    path = _export(sources, "hrss", ".xlsx")
    path.write_bytes(path.read_bytes()[:500])  # a truncated download
    results, errors = run_day(1, {"hrss.insured_person"})
    assert errors == {}
    assert results["hrss.insured_person"]["files_quarantined"] == 1
    assert lake_rows(home, "raw", "hrss", "insured_person") == 0
    errors_kept = list((home / "lake" / "quarantine" / "hrss").rglob("*.error.txt"))
    assert "not a readable Excel workbook" in errors_kept[0].read_text()


@pytest.mark.parametrize(
    ("fault", "expected"), [("500", "HTTP 500 after 5 attempts"), ("garbage", "answer is not JSON")]
)
def test_an_api_answering_badly_fails_with_where_and_why(
    home, sources, monkeypatch, fault, expected
):
    monkeypatch.setattr(http_source, "BACKOFF_S", 0.01)
    with api_server(home, monkeypatch) as server:
        server.fault = fault
        _, errors = run_day(1, {"traffic_police.violation"})
    message = str(errors["traffic_police.violation"])
    assert expected in message and "/api/v1/violations page 1" in message
    assert "traffic_police.violation" in failed_attempts(home)


def test_an_api_recovers_within_its_retries(home, sources, monkeypatch):
    monkeypatch.setattr(http_source, "BACKOFF_S", 0.01)
    with api_server(home, monkeypatch) as server:
        server.fail_next = 2
        results, errors = run_day(1, {"traffic_police.violation"})
    assert errors == {} and results["traffic_police.violation"]["rows_landed"] > 0


def test_check_sources_names_what_the_next_night_would_fail_on(home, sources, monkeypatch, capsys):
    """`countylake check --sources` asks every source before a night runs: the database
    table's columns under the drift policy, the export folder and its last file, one record
    of the API with its signature. Each failure is named with its reason; nothing lands."""
    from etl.cli import main
    from etl.contracts import load_systems

    datasets = sum(len(s.datasets) for s in load_systems())
    with api_server(home, monkeypatch):
        assert main(["check", "--sources"]) == 0
    out = capsys.readouterr().out
    assert f"{datasets} of {datasets} datasets answer" in out
    assert "contract default" in out and "COUNTYLAKE_CONN_TRAFFIC_POLICE_API" in out
    assert "the demo's connection: set COUNTYLAKE_CONN_<ID>" in out

    with sqlite3.connect(sources / "public_security.db") as con:
        con.execute("ALTER TABLE resident DROP COLUMN phone")  # frozen: an error
    with sqlite3.connect(sources / "health.db") as con:
        con.execute("ALTER TABLE consultation ADD COLUMN ward TEXT")  # evolves: a note
    for export in (sources / "hotline" / "exports").iterdir():
        export.write_bytes(b"\xff\xfe not an export")
    with api_server(home, monkeypatch) as server:
        monkeypatch.setenv(
            "COUNTYLAKE_CONN_TRAFFIC_POLICE_API",
            f"http://demo-client:wrong-secret@127.0.0.1:{server.port}",
        )
        assert main(["check", "--sources"]) == 1
    out, err = capsys.readouterr()
    failed = {line.split(":")[0] for line in err.splitlines() if line.startswith("FAILED")}
    assert failed == {
        "FAILED public_security.resident",
        "FAILED hotline.ticket",
        "FAILED traffic_police.violation",
    }
    assert "policy freeze: removed ['phone']" in err
    assert "12345工单_" in err and "update the contract" in err
    assert "HTTP 401" in err and "client id and secret" in err
    assert "new at the source: ['ward']" in out
    assert f"{datasets - 3} of {datasets} datasets answer" in out
    assert not (home / "lake").exists() and not (home / "state").exists()


def test_connections_spelled_as_airflow_gives_them_back_are_read(home, sources, monkeypatch):
    """A connection kept in Airflow comes back in Airflow's own spelling: a SQLite file's and
    an export folder's path percent-encoded. The night reads them as the plain URLs."""
    from airflow.sdk.definitions.connection import Connection

    from etl.contracts import load_systems

    for system in (s for s in load_systems() if s.system in ("health", "hotline")):
        plain = system.embedded.format(home=home)
        spelled = Connection.from_uri(plain, conn_id=system.connection).get_uri()
        assert "%2F" in spelled and spelled != plain
        monkeypatch.setenv(f"COUNTYLAKE_CONN_{system.connection.upper()}", spelled)
    results, errors = run_day(1, {"health.consultation", "hotline.ticket"})
    assert errors == {}
    assert results["health.consultation"]["rows_landed"] > 0
    assert results["hotline.ticket"]["rows_landed"] > 0


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////srv/depts/health.db",
        "file:///mnt/exchange/12345",
        "s3://zibo-outbox/370322/zibo",
        "https://gw.sd.gov.cn/api/v2/county",
        "http://client:secret@10.1.2.5:8080",
        "mysql://reader:s%40cret@10.1.2.4:3306/scjg",
        "postgresql://reader:secret@10.1.2.3:5432/hukou?sslmode=require",
    ],
)
def test_a_connection_kept_in_airflow_names_the_place_it_was_made_for(url):
    """Airflow gives a connection back with its path percent-encoded (a SQLite file, an
    outbox folder or prefix, an endpoint's path) and PostgreSQL as postgres://; resolved, it
    names the same file, prefix or endpoint."""
    from airflow.sdk.definitions.connection import Connection

    from etl.connections import from_airflow
    from etl.sources.sql import database_url

    spelled = Connection.from_uri(url, conn_id="x").get_uri()
    resolved = from_airflow(spelled)
    if url.startswith("postgresql"):
        assert spelled.startswith("postgres://") and database_url(resolved) == url
    else:
        assert resolved == url
