"""The machine's real PostgreSQL and MariaDB as department systems: the same simulated county
lands the same rows whether its SQL systems live in SQLite or on a server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import SIM_SCALE, SIM_SEED, require_server
from ingest_helpers import day, run_day

from etl.contracts import load_systems
from etl.errors import SourceError
from etl.simulate import simulate

SQL_DATASETS = {
    f"{s.system}.{d.dataset}" for s in load_systems() if s.kind == "sql" for d in s.datasets
}


@pytest.fixture(scope="module")
def sqlite_counts(tmp_path_factory):
    home = tmp_path_factory.mktemp("sqlite_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("COUNTYLAKE_HOME", str(home))
    try:
        simulate(home, scale=SIM_SCALE, days=1, seed=SIM_SEED)
        results, errors = run_day(1, SQL_DATASETS)
    finally:
        mp.undo()
    assert errors == {}
    return {
        k: (v["rows_read"], v["rows_landed"], v["rows_quarantined"]) for k, v in results.items()
    }


@pytest.mark.integration
@pytest.mark.parametrize(("target", "port"), [("postgres", 5432), ("mariadb", 3306)])
def test_server_sources_land_like_sqlite(home, target, port, sqlite_counts, capsys):
    require_server(port, target)
    simulate(home, scale=SIM_SCALE, days=1, seed=SIM_SEED, target=target)
    from etl.cli import main

    assert main(["check", "--system", "public_security"]) == 0
    checked = capsys.readouterr().out
    registers = len(next(s for s in load_systems() if s.system == "public_security").datasets)
    assert "connections.json" in checked and f"{registers} of {registers} datasets" in checked
    assert ("PostgreSQL is read by ADBC's driver" in checked) == (target == "postgres")
    assert "demo's connection" not in checked  # the server's, from connections.json
    results, errors = run_day(1, SQL_DATASETS)
    assert errors == {}
    got = {k: (v["rows_read"], v["rows_landed"], v["rows_quarantined"]) for k, v in results.items()}
    assert got == sqlite_counts
    scheme = "postgresql://" if target == "postgres" else "mysql://"
    from etl.ledger import Ledger

    for row in Ledger(home / "state" / "ledger.duckdb").latest():
        assert row["source"].startswith(scheme), row["source"]


@pytest.mark.integration
def test_postgres_numeric_and_json_arrive_as_plain_text():
    """ADBC wraps NUMERIC and JSONB in extension types; the validator must see text it can cast."""
    require_server(5432, "postgres")
    import pyarrow as pa

    from etl.sources.sql import stream_query

    table = stream_query(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "SELECT 1234.50::numeric(18,2) AS amount, '{\"a\": 1}'::jsonb AS detail, "
        "'高青'::text AS town",
    ).read_all()
    assert table.schema.types == [pa.string(), pa.string(), pa.string()]
    assert table.to_pylist() == [{"amount": "1234.50", "detail": '{"a": 1}', "town": "高青"}]


@pytest.mark.integration
def test_postgres_type_catalogue_is_read_once_per_process_and_url():
    """ADBC's database is opened once per URL and process, the next query reuses the session
    the last one ended, and a forked child opens its own database."""
    require_server(5432, "postgres")
    import os
    import signal

    from etl.sources import sql

    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    first = sql.stream_query(url, "SELECT 1 AS n").read_all()
    database = sql._DATABASES[(os.getpid(), url, "builtin")]
    second = sql.stream_query(url, "SELECT pg_backend_pid() AS pid").read_all()
    third = sql.stream_query(url, "SELECT pg_backend_pid() AS pid").read_all()
    assert first.to_pylist() == [{"n": 1}]
    assert sql._DATABASES[(os.getpid(), url, "builtin")] is database
    assert second.column("pid")[0] == third.column("pid")[0]  # one session, given back
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child must not use its parent's database
        signal.alarm(30)  # a child stuck on a lock inherited through fork dies, never hangs
        rows = sql.stream_query(url, "SELECT 2 AS n").read_all().to_pylist()
        mine = sql._DATABASES.get((os.getpid(), url, "builtin")) is not None
        os.write(write, b"ok" if rows == [{"n": 2}] and mine else b"no")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 2) == b"ok"


@pytest.mark.integration
def test_a_postgres_session_ended_by_the_server_or_left_mid_stream_is_not_used_again():
    """An idle session the server ended (a restart, an idle timeout) costs the next query
    nothing but a new session; a stream dropped before its end closes its session."""
    require_server(5432, "postgres")
    import psycopg

    from etl.sources import sql

    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    pid = "SELECT pg_backend_pid() AS pid"
    ended = sql.stream_query(url, pid).read_all().column("pid")[0].as_py()
    with psycopg.connect(url, autocommit=True) as con:
        # kept, but in no transaction: it would hold back the department database's vacuum
        state = "SELECT state FROM pg_stat_activity WHERE pid = %s"
        assert con.execute(state, [ended]).fetchone() == ("idle",)
        con.execute("SELECT pg_terminate_backend(%s)", [ended])
    after = sql.stream_query(url, pid).read_all().column("pid")[0].as_py()
    assert after != ended
    rows = (  # 20 MB: several batches
        "SELECT g AS n, repeat('x', 100) AS filler, pg_backend_pid() AS pid "
        "FROM generate_series(1, 200000) AS g"
    )
    stream = sql.stream_query(url, rows)
    first = stream.read_next_batch()  # then dropped, its rows still coming
    left = first.column("pid")[0].as_py()
    assert left == after and first.num_rows < 200000
    stream.close()
    del stream
    assert sql.stream_query(url, pid).read_all().column("pid")[0].as_py() != left
    assert sql.stream_query(url, "SELECT 5 AS n").read_all().to_pylist() == [{"n": 5}]


@pytest.mark.integration
def test_a_postgres_type_the_driver_does_not_know_is_read_through_the_server_catalogue():
    """ADBC maps PostgreSQL's own types from a table built into the driver, without reading
    the server's catalogue. A department's enum is not in it: the query runs again with the
    catalogue, and the enum arrives as its labels, as text."""
    require_server(5432, "postgres")
    from etl.sources import sql

    url = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        with table_with_an_enum(url, "tags int[], n int", "'{1,2}', 7") as name:
            plain = sql.stream_query(url, f"SELECT n FROM {name}").read_all()
            assert plain.to_pylist() == [{"n": 7}] and url not in sql._SERVER_TYPES
            table = sql.stream_query(url, f"SELECT * FROM {name}").read_all()
            assert table.to_pylist() == [{"state": "注销", "tags": [1, 2], "n": 7}]
            assert url in sql._SERVER_TYPES
    finally:
        sql._SERVER_TYPES.discard(url)


@contextmanager
def table_with_an_enum(url: str, columns: str, values: str):
    """A department table whose first column, ``state``, is an enum (in a fresh name) that
    holds '注销'; dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE TYPE {name}_state AS ENUM ('在业', '注销')")
        con.execute(f"CREATE TABLE {name} (state {name}_state, {columns})")
        con.execute(f"INSERT INTO {name} VALUES ('注销', {values})")
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"DROP TABLE {name}")
            con.execute(f"DROP TYPE {name}_state")


def _loaded_libraries() -> str:
    return Path("/proc/self/maps").read_text()


@pytest.mark.integration
def test_a_deployment_loads_the_adbc_driver_it_names(tmp_path, monkeypatch):
    """COUNTYLAKE_ADBC_POSTGRESQL_DRIVER names the driver's library (here a copy of the
    wheel's, as a system package would put one elsewhere); one that cannot be loaded is an
    error naming the setting, not a failed read of the department."""
    require_server(5432, "postgres")
    from etl.sources import sql
    from etl.sources.sql import SqlSource

    own = tmp_path / "county-driver" / "libadbc_driver_postgresql.so"
    own.parent.mkdir()
    shutil.copy(sql.postgres_driver(), own)
    assert str(own) not in _loaded_libraries()
    monkeypatch.setenv(sql.DRIVER_ENV, str(own))
    url = "postgresql://postgres@127.0.0.1:5432/postgres?application_name=countylake-own-driver"
    rows = sql.stream_query(url, "SELECT '高青' AS county").read_all().to_pylist()
    assert rows == [{"county": "高青"}]
    assert str(own) in _loaded_libraries()

    # by a driver manifest's name, as `dbc install` or a system package leaves one
    manifest = tmp_path / "manifests" / "county-postgresql.toml"
    manifest.parent.mkdir()
    manifest.write_text(f'manifest_version = 1\n[Driver]\nshared = "{own}"\n', encoding="utf-8")
    monkeypatch.setenv("ADBC_DRIVER_PATH", str(manifest.parent))
    monkeypatch.setenv(sql.DRIVER_ENV, "county-postgresql")
    by_name = url.replace("own-driver", "manifest-driver")
    assert sql.stream_query(by_name, "SELECT 1 AS n").read_all().to_pylist() == [{"n": 1}]

    monkeypatch.setenv(sql.DRIVER_ENV, str(tmp_path / "missing.so"))
    system = next(s for s in load_systems() if s.kind == "sql")
    missing = url.replace("own-driver", "missing-driver")
    source = SqlSource(system, system.datasets[0], missing)
    with pytest.raises(SourceError) as raised:
        source.source_columns()
    assert raised.value.location == f"{sql.DRIVER_ENV}={tmp_path / 'missing.so'}"
    assert "cannot be loaded" in raised.value.reason and "missing.so" in raised.value.reason
    assert "unset it" in raised.value.hint


@pytest.fixture(scope="module")
def adbc_driver_1_8(tmp_path_factory) -> Path:
    """ADBC's PostgreSQL driver 1.8.0 from PyPI: the last release built with optimisation,
    and older than the builtin type table's option."""
    folder = tmp_path_factory.mktemp("adbc-1.8.0")
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    platform = f"manylinux2014_{os.uname().machine}"
    done = subprocess.run(
        [*pip, "--platform", platform, "--python-version", "3.11", "-d", str(folder),
         "adbc-driver-postgresql==1.8.0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode:
        pytest.skip(f"adbc-driver-postgresql 1.8.0 cannot be downloaded: {done.stderr[-300:]}")
    (wheel,) = folder.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract("adbc_driver_postgresql/libadbc_driver_postgresql.so", folder)
    return folder / "adbc_driver_postgresql" / "libadbc_driver_postgresql.so"


@pytest.mark.integration
def test_a_driver_older_than_the_builtin_type_table_reads_types_from_the_server(
    adbc_driver_1_8, monkeypatch
):
    """ADBC 1.8.0 does not know the type-resolver option: the database opens without it and
    the driver maps types from the server's catalogue, enums included."""
    require_server(5432, "postgres")
    from etl.sources import sql

    monkeypatch.setenv(sql.DRIVER_ENV, str(adbc_driver_1_8))
    url = "postgresql://postgres@127.0.0.1:5432/postgres?application_name=countylake-adbc-1.8"
    with table_with_an_enum(url, "capital numeric(18,2)", "500000.00") as name:
        table = sql.stream_query(url, f"SELECT * FROM {name}").read_all()
    assert table.to_pylist() == [{"state": "注销", "capital": "500000.00"}]
    assert url not in sql._SERVER_TYPES  # known at once: no second query
    assert str(adbc_driver_1_8) in _loaded_libraries()


@pytest.mark.integration
@pytest.mark.parametrize(("target", "port"), [("postgres", 5432), ("mariadb", 3306)])
def test_a_register_the_database_digests_as_unchanged_is_not_read_again(
    home, schemas, target, port
):
    """The household register on a server: the first window reads it whole; the next, with
    the table as it was, takes the database's digest of it, finds it equal to the one taken
    before that read and reads nothing. Its rows count as read; those the first read
    quarantined are quarantined again, the same rows in its own quarantine folder, with the
    same rule results, and the rest are unchanged: a register whose bad rows are still at the
    source does not look mended on a quiet night. Another contract reads it whole again, since
    it may judge the rows otherwise, and the next quiet night keeps that read's verdict. A
    changed row, even one whose address becomes NULL, changes the digest: the next window
    lands that row."""
    require_server(port, target)
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy

    from etl.contracts import find_dataset
    from etl.ledger import Ledger
    from etl.quality import docs_runs
    from etl.settings import paths
    from etl.sources import open_source
    from etl.sources.sql import database_url

    simulate(home, scale=SIM_SCALE, days=1, seed=SIM_SEED, target=target)
    only = {"public_security.household"}

    def window(n: int) -> dict:
        results, errors = run_day(n, only)
        assert errors == {}
        return results["public_security.household"]

    def quarantined(n: int) -> list[dict]:
        """Day n's quarantined households, as rows sorted by their place in the read."""
        folder = home / "lake" / "quarantine" / "public_security" / "household"
        (files,) = [sorted(w.glob("*.parquet")) for w in folder.glob(f"load_date={day(n)}/*")]
        rows = pa.concat_tables(pq.read_table(f) for f in files).to_pylist()
        return sorted(rows, key=lambda r: r["_row"])

    def row_verdict(landed: dict) -> dict[str, int]:
        """The failures of each row-level rule the ledger holds for a landed window."""
        results = Ledger(home / "state" / "ledger.duckdb").rule_results(landed["attempt_id"])
        return {
            r["rule_id"]: r["failed"]
            for r in results
            if r["rule_id"].split(":")[0] not in ("volume", "freshness")
        }

    first = window(1)
    total, bad = first["rows_read"], first["rows_quarantined"]
    assert total > bad > 0
    skipped = window(2)
    assert skipped["rows_read"] == total and skipped["rows_landed"] == 0
    assert (skipped["rows_quarantined"], skipped["rows_unchanged"]) == (bad, total - bad)
    assert quarantined(2) == quarantined(1) and len(quarantined(2)) == bad
    assert row_verdict(skipped) == row_verdict(first) and any(row_verdict(first).values())
    # its Data Docs page would be the first read's: only that one is rendered
    shown = {r["attempt_id"] for r in docs_runs(Ledger(home / "state" / "ledger.duckdb"))}
    assert first["attempt_id"] in shown and skipped["attempt_id"] not in shown

    contract = schemas / "systems" / "public_security" / "household.yaml"
    text = contract.read_text(encoding="utf-8")
    allowed = "values: [家庭户, 集体户]"
    contract.write_text(text.replace(allowed, allowed.replace("]", ", 寄住户]")))
    reread = window(3)
    assert reread["rows_read"] == total and reread["rows_quarantined"] > 0, reread
    quiet = window(4)
    assert (quiet["rows_quarantined"], quiet["rows_landed"]) == (reread["rows_quarantined"], 0)
    assert quarantined(4) == quarantined(3) and row_verdict(quiet) == row_verdict(reread)

    system, dataset = find_dataset("public_security", "household")
    source = open_source(system, dataset, paths(home))
    digest = source.fingerprint()
    assert digest[0] == total and source.fingerprint() == digest
    url = database_url(source.url).replace("postgresql://", "postgresql+psycopg://")
    engine = sqlalchemy.create_engine(url.replace("mysql://", "mysql+pymysql://"))
    with engine.begin() as con:
        changed = con.execute(sqlalchemy.text(
            "UPDATE household SET address = NULL WHERE household_id = "
            "(SELECT min(household_id) FROM (SELECT household_id FROM household "
            "WHERE address IS NOT NULL) AS h)"
        ))  # fmt: skip
        assert changed.rowcount == 1
    engine.dispose()
    assert source.fingerprint()[0] == total and source.fingerprint() != digest

    landed = window(5)
    assert landed["rows_read"] == total and landed["rows_landed"] == 1, landed

    # the rows that read quarantined are gone from the lake: the next window cannot keep its
    # verdict, so it reads the register whole again (a full read leaves a state of its own)
    from etl.snapshot import state_dir, state_name

    for folder in (home / "lake" / "quarantine").glob(f"*/household/load_date={day(5)}"):
        shutil.rmtree(folder)
    again = window(6)
    assert (again["rows_read"], again["rows_landed"]) == (total, 0)
    assert again["rows_quarantined"] == len(quarantined(6)) > 0
    states = state_dir(paths(home), "public_security", "household")
    assert (states / state_name(again["window_start"])).exists()
    assert not (states / state_name(quiet["window_start"])).exists()  # a kept verdict: none
