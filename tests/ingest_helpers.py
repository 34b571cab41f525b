"""Helpers of the ingestion tests: run a day for every dataset, read the lake back."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from etl.contracts import load_profile, load_systems
from etl.errors import CountylakeError
from etl.pipeline import run


def day(n: int) -> date:
    return date.fromisoformat(load_profile().simulation.start_date) + timedelta(days=n - 1)


def window(n: int) -> tuple[str, str]:
    zone = ZoneInfo(load_profile().timezone)
    d = day(n)
    start = datetime(d.year, d.month, d.day, tzinfo=zone)
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


def run_day(n: int, only: set[str] | None = None) -> tuple[dict, dict]:
    """Run every dataset (or ``only`` 'system.dataset' names) for day n: (results, errors)."""
    results, errors = {}, {}
    start, end = window(n)
    for system in load_systems():
        for dataset in system.datasets:
            name = f"{system.system}.{dataset.dataset}"
            if only and name not in only:
                continue
            try:
                results[name] = run(system.system, dataset.dataset, start, end, f"test__{n}")
            except CountylakeError as exc:
                errors[name] = exc
    return results, errors


@contextmanager
def api_server(home: Path, monkeypatch):
    """The simulated traffic-police API on a free port, with the connection pointed at it."""
    from etl.simulate.api_server import ApiServer

    server = ApiServer(home, port=0).start()
    monkeypatch.setenv(
        "COUNTYLAKE_CONN_TRAFFIC_POLICE_API",
        f"http://demo-client:demo-secret@127.0.0.1:{server.port}",
    )
    try:
        yield server
    finally:
        server.stop()


def lake_rows(home: Path, zone: str, system: str, dataset: str) -> int:
    files = list((home / "lake" / zone / system / dataset).rglob("*.parquet"))
    if not files:
        return 0
    return duckdb.execute(
        f"SELECT count(*) FROM read_parquet({[str(f) for f in files]})"
    ).fetchone()[0]


def lake_digest(home: Path) -> dict[str, str]:
    """Per data file: an order-independent digest of its rows (what a reader would see)."""
    digests = {}
    for zone in ("raw", "quarantine"):
        for path in sorted((home / "lake" / zone).rglob("*.parquet")):
            digests[str(path.relative_to(home))] = duckdb.execute(
                f"SELECT count(*), bit_xor(hash(t)) FROM read_parquet('{path}') t"
            ).fetchone()
    return digests
