"""Shared fixtures: a private data root per test, a small simulated county to copy from, and
the warehouse built over it day after day (shared by the warehouse and marts tests)."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from etl.contracts import REPO_ROOT

SIM_SCALE = 0.03
SIM_SEED = 7


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def require_server(port: int, name: str) -> None:
    if not port_open(port):
        pytest.skip(
            f"{name} is not answering on 127.0.0.1:{port}; start it with "
            "shared/services.sh to run this integration test"
        )


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty data root, used by every function that calls etl.settings.paths()."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("COUNTYLAKE_HOME", str(root))
    monkeypatch.delenv("COUNTYLAKE_LAKE_URL", raising=False)  # the lake under this root
    for var in [v for v in __import__("os").environ if v.startswith("COUNTYLAKE_CONN_")]:
        monkeypatch.delenv(var)
    return root


@pytest.fixture
def schemas(tmp_path, monkeypatch) -> Path:
    """A private copy of schemas/ that a test may break."""
    root = tmp_path / "schemas"
    shutil.copytree(REPO_ROOT / "schemas", root)
    monkeypatch.setenv("COUNTYLAKE_SCHEMAS", str(root))
    return root


@pytest.fixture(scope="session")
def simulated_days(tmp_path_factory):
    """Sources of a small simulated county after day 1 and after day 2 (built once)."""
    from etl.simulate import simulate

    built = {}
    base = tmp_path_factory.mktemp("simulated")
    for day in (1, 2):
        simulate(base, scale=SIM_SCALE, days=day, seed=SIM_SEED)
        shutil.copytree(base / "sources", base / f"day{day}" / "sources")
        built[day] = base / f"day{day}" / "sources"
    return built


def copy_sources(simulated_days, day: int, home: Path) -> None:
    """Put the simulated systems as they were after ``day`` into ``home``."""
    target = home / "sources"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(simulated_days[day], target)


@dataclass
class Built:
    home: Path
    first: dict
    second: dict
    full: dict
    day1: Path  # the warehouse after day 1
    incremental: Path  # after day 2, built incrementally on day 1's
    reader_saw: int  # residents a reader holding day 1's file saw during the day-2 build

    @property
    def current(self) -> Path:
        from etl import warehouse

        return self.home / "warehouse" / warehouse.WAREHOUSE_FILE

    def connect(self, path: Path | None = None):
        import duckdb

        return duckdb.connect(str(path or self.current), read_only=True)

    def lake(self, dataset: str) -> str:
        return (
            f"read_parquet('{self.home}/lake/raw/{dataset}/**/*.parquet', "
            "hive_partitioning = true, union_by_name = true)"
        )


@pytest.fixture(scope="session")
def built(tmp_path_factory, simulated_days) -> Built:
    """Day 1 landed and built; day 2 landed and built incrementally (a reader holding day 1's
    file meanwhile); then a full refresh of the same lake. Built once per session: the
    warehouse tests and the marts tests read the same files."""
    import duckdb
    from ingest_helpers import api_server, run_day

    from etl import warehouse

    home = tmp_path_factory.mktemp("warehouse") / "data"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COUNTYLAKE_HOME", str(home))
        mp.delenv("COUNTYLAKE_LAKE_URL", raising=False)
        for var in [v for v in os.environ if v.startswith("COUNTYLAKE_CONN_")]:
            mp.delenv(var)
        mp.delenv(warehouse.KEY_ENV, raising=False)
        mp.delenv(warehouse.KEY_FILE_ENV, raising=False)

        copy_sources(simulated_days, 1, home)
        with api_server(home, mp):
            assert run_day(1)[1] == {}
        first = warehouse.build(home, progress=None)
        current = Path(first["warehouse"])
        day1 = home / "day1.duckdb"
        shutil.copy2(current, day1)

        copy_sources(simulated_days, 2, home)
        with api_server(home, mp):
            assert run_day(2)[1] == {}
        reader = duckdb.connect(str(current), read_only=True)  # an analyst's notebook
        second = warehouse.build(home, progress=None)
        reader_saw = reader.execute(
            "select count(*) from staging.stg_public_security__resident"
        ).fetchall()[0][0]
        reader.close()
        incremental = home / "incremental.duckdb"
        shutil.copy2(current, incremental)

        full = warehouse.build(home, full_refresh=True, progress=None)
        yield Built(home, first, second, full, day1, incremental, reader_saw)
