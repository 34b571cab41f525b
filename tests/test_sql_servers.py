"""The machine's real PostgreSQL and MariaDB as department systems: the same simulated county
lands the same rows whether its SQL systems live in SQLite or on a server."""

from __future__ import annotations

import pytest
from conftest import SIM_SCALE, SIM_SEED, require_server
from ingest_helpers import run_day

from etl.contracts import load_systems
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
def test_server_sources_land_like_sqlite(home, target, port, sqlite_counts):
    require_server(port, target)
    simulate(home, scale=SIM_SCALE, days=1, seed=SIM_SEED, target=target)
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
