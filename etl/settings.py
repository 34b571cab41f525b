"""One data root for everything the platform writes at run time.

``COUNTYLAKE_HOME`` (default ``./data``) holds the simulated sources, the lake, the ledger, the
Airflow home, and later the warehouse, outbox and reports. Nothing under it is tracked by git.

The lake alone may live elsewhere: ``COUNTYLAKE_LAKE_URL`` names its root as a path or an fsspec
URL (``s3://bucket/prefix`` on any S3-compatible store; see ``etl.lake``). Unset, it is the
local ``<data root>/lake``. Everything else stays on the local data root whatever the lake: the
ledger and the snapshot and drift state (``state/``), the staging area of extractions, the
Airflow home, the warehouse's DuckDB file and dbt's target/.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LAKE_URL_ENV = "COUNTYLAKE_LAKE_URL"


@dataclass(frozen=True)
class Paths:
    home: Path
    lake_url: str | None = None  # an fsspec URL or a path; None: <home>/lake

    @property
    def sources(self) -> Path:
        """Simulated department systems (SQLite files, export drops)."""
        return self.home / "sources"

    @property
    def lake_remote(self) -> bool:
        """True when the lake is on an object store (any fsspec protocol but the local one)."""
        if not self.lake_url or "://" not in self.lake_url:
            return False
        return self.lake_url.split("://", 1)[0] not in ("file", "local")

    @property
    def lake_root(self) -> str:
        """The lake's root as readers name it: a local path, or the URL of a remote lake."""
        return self.lake_url.rstrip("/") if self.lake_remote else str(self.lake)

    @property
    def lake(self) -> Path:
        """The local lake folder. With a remote lake only the staging area lives here; the
        lake itself is ``lake_root`` (use ``etl.lake`` to read and write it)."""
        if self.lake_url and not self.lake_remote:
            local = self.lake_url.split("://", 1)[1] if "://" in self.lake_url else self.lake_url
            return Path(local).resolve()
        return self.home / "lake"

    @property
    def raw(self) -> Path:
        return self.lake / "raw"

    @property
    def quarantine(self) -> Path:
        return self.lake / "quarantine"

    @property
    def staging(self) -> Path:
        """Files written by an extraction and not yet committed to the lake (always local;
        beside a local lake, so publishing a window is a rename on one filesystem)."""
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
    return Paths(Path(root).resolve(), os.environ.get(LAKE_URL_ENV) or None)
