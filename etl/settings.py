"""One data root for everything the platform writes at run time.

``COUNTYLAKE_HOME`` (default ``./data``) holds the simulated sources, the lake, the ledger, the
Airflow home, and later the warehouse, outbox and reports. Nothing under it is tracked by git.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def sources(self) -> Path:
        """Simulated department systems (SQLite files, export drops)."""
        return self.home / "sources"

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def raw(self) -> Path:
        return self.lake / "raw"

    @property
    def quarantine(self) -> Path:
        return self.lake / "quarantine"

    @property
    def staging(self) -> Path:
        """Files written by an extraction and not yet committed to the lake."""
        return self.lake / "_staging"

    @property
    def state(self) -> Path:
        return self.home / "state"

    @property
    def ledger(self) -> Path:
        return self.state / "ledger.duckdb"

    @property
    def airflow(self) -> Path:
        return self.home / "airflow"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def reports(self) -> Path:
        return self.home / "reports"


def paths(home: str | Path | None = None) -> Paths:
    root = home or os.environ.get("COUNTYLAKE_HOME") or "data"
    return Paths(Path(root).resolve())
