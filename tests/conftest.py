"""Shared fixtures: a private data root per test, and a small simulated county to copy from."""

from __future__ import annotations

import shutil
import socket
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
