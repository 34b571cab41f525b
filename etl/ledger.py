"""The run ledger: every attempt of every dataset, the watermarks and the files already taken.

A DuckDB file under the data root. DuckDB lets one process write at a time, so each call opens
the file briefly and retries while another task holds it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from etl.duck import attached, insert_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    attempt_id VARCHAR PRIMARY KEY,
    run_id VARCHAR, system VARCHAR, dataset VARCHAR,
    window_start TIMESTAMPTZ, window_end TIMESTAMPTZ,
    status VARCHAR,                  -- running | staged | landed | failed
    started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    rows_read BIGINT, rows_landed BIGINT, rows_quarantined BIGINT,
    rows_unchanged BIGINT, rows_deleted BIGINT,
    files_read INTEGER, files_quarantined INTEGER, files_written INTEGER, bytes BIGINT,
    cursor_lower VARCHAR, cursor_upper VARCHAR, source_files VARCHAR,
    source VARCHAR, partition_path VARCHAR, error VARCHAR,
    newest_data_at TIMESTAMPTZ,      -- the newest record's time, for freshness
    verdict_of VARCHAR               -- an unchanged register: the attempt whose verdict it kept
);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS newest_data_at TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS verdict_of VARCHAR;
CREATE TABLE IF NOT EXISTS rule_results (
    attempt_id VARCHAR, system VARCHAR, dataset VARCHAR, window_start TIMESTAMPTZ,
    rule_id VARCHAR, severity VARCHAR, checked BIGINT, failed BIGINT,
    reasons VARCHAR,                 -- JSON {reason code: count}
    PRIMARY KEY (attempt_id, rule_id)
);
CREATE TABLE IF NOT EXISTS drift (
    attempt_id VARCHAR, system VARCHAR, dataset VARCHAR, window_start TIMESTAMPTZ,
    change VARCHAR,                  -- added | removed | type_changed | encoding_changed
    column_name VARCHAR, detail VARCHAR,
    action VARCHAR                   -- landed | discarded | filled_null | rejected | reported
);
CREATE TABLE IF NOT EXISTS watermarks (
    system VARCHAR, dataset VARCHAR, value VARCHAR, window_end TIMESTAMPTZ,
    attempt_id VARCHAR, updated_at TIMESTAMPTZ, PRIMARY KEY (system, dataset)
);
CREATE TABLE IF NOT EXISTS seen_files (
    system VARCHAR, dataset VARCHAR, name VARCHAR, sha256 VARCHAR,
    window_start TIMESTAMPTZ, attempt_id VARCHAR, PRIMARY KEY (system, dataset, name, sha256)
);
"""


def _now() -> datetime:
    return datetime.now(UTC)


_SCHEMA_APPLIED: set[tuple[str, str]] = set()  # (file, schema) this process has set up


@contextmanager
def open_state_file(
    path: Path, schema: str, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection to a DuckDB state file, waiting while another process holds
    its write lock, with ``schema`` applied the first time this process writes to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_only and not path.exists():
        read_only = False
    key = (str(path.resolve()), schema)
    if not path.exists():
        _SCHEMA_APPLIED.discard(key)
    with ExitStack() as stack:
        for attempt in range(60):
            try:
                con = stack.enter_context(attached(path, read_only=read_only))
                break
            except duckdb.IOException as exc:  # another process holds the write lock
                if "lock" not in str(exc).lower() or attempt == 59:
                    raise
                time.sleep(0.1 + random.random() * 0.4)
        if not read_only and key not in _SCHEMA_APPLIED:
            con.execute(schema)
            _SCHEMA_APPLIED.add(key)
        yield con


class Ledger:
    def __init__(self, path: Path):
        self.path = path

    def connect(self, read_only: bool = False):
        return open_state_file(self.path, SCHEMA, read_only)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep the file attached, and its write lock held, across the calls in the block. Each
        call apart attaches and detaches it, and after an attach DuckDB reads afresh whatever
        a query needs: a window's commit cost 40 ms more that way. For short blocks only:
        other processes wait for the lock."""
        with self.connect():
            yield

    # ------------------------------------------------------------------ attempts

    def start(
        self,
        attempt_id: str,
        run_id: str,
        system: str,
        dataset: str,
        window_start: datetime,
        window_end: datetime,
        source: str,
    ) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT INTO runs (attempt_id, run_id, system, dataset, window_start, window_end,"
                " status, started_at, source) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                [attempt_id, run_id, system, dataset, window_start, window_end, _now(), source],
            )

    def update(self, attempt_id: str, **fields) -> None:
        if "source_files" in fields and not isinstance(fields["source_files"], str | None):
            fields["source_files"] = json.dumps(fields["source_files"], ensure_ascii=False)
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.connect() as con:
            con.execute(
                f"UPDATE runs SET {sets} WHERE attempt_id = ?", [*fields.values(), attempt_id]
            )

    def fail(self, attempt_id: str, error: str) -> None:
        self.update(attempt_id, status="failed", finished_at=_now(), error=error)

    def land(
        self,
        attempt_id: str,
        system: str,
        dataset: str,
        watermark: str | None,
        window_start: datetime,
        window_end: datetime,
        files: list[tuple[str, str]],
        counts: dict,
        rule_results: list[dict] = (),
        drift: list[dict] = (),
    ) -> None:
        """Close a landed attempt, record its rule results and drift, and advance the watermark,
        in one transaction."""
        with self.connect() as con:
            con.execute("BEGIN")
            sets = ", ".join(f"{k} = ?" for k in counts)
            con.execute(
                f"UPDATE runs SET status = 'landed', finished_at = ?, {sets} WHERE attempt_id = ?",
                [_now(), *counts.values(), attempt_id],
            )
            if watermark is not None:
                con.execute(
                    "INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?, ?, ?, ?)",
                    [system, dataset, watermark, window_end, attempt_id, _now()],
                )
            insert_rows(con, "INSERT OR REPLACE INTO seen_files", [
                {"system": system, "dataset": dataset, "name": name, "sha256": sha,
                 "window_start": window_start, "attempt_id": attempt_id}
                for name, sha in files
            ])  # fmt: skip
            head = {"attempt_id": attempt_id, "system": system, "dataset": dataset,
                    "window_start": window_start}  # fmt: skip
            insert_rows(con, "INSERT OR REPLACE INTO rule_results", [
                {**head, "rule_id": r["rule_id"], "severity": r["severity"],
                 "checked": r["checked"], "failed": r["failed"],
                 "reasons": json.dumps(r["reasons"], ensure_ascii=False)}
                for r in rule_results
            ])  # fmt: skip
            insert_rows(con, "INSERT INTO drift", [
                {**head, "change": d["change"], "column_name": d["column"],
                 "detail": d["detail"], "action": d["action"]}
                for d in drift
            ])  # fmt: skip
            con.execute("COMMIT")

    # ------------------------------------------------------------------ reading

    def watermark(self, system: str, dataset: str) -> str | None:
        with self.connect(read_only=True) as con:
            row = con.execute(
                "SELECT value FROM watermarks WHERE system = ? AND dataset = ?", [system, dataset]
            ).fetchone()
        return row[0] if row else None

    def landed_attempt(self, system: str, dataset: str, window_start: datetime) -> dict | None:
        """The last landed attempt of this exact window, so a rerun reads the same range (and
        a register found unchanged keeps what it quarantined)."""
        with self.connect(read_only=True) as con:
            cur = con.execute(
                "SELECT attempt_id, cursor_lower, cursor_upper, source_files, rows_quarantined "
                "FROM runs WHERE system = ? AND dataset = ? AND window_start = ? "
                "AND status = 'landed' ORDER BY finished_at DESC LIMIT 1",
                [system, dataset, window_start],
            )
            row = cur.fetchone()
        if not row:
            return None
        files = json.loads(row[3]) if row[3] else []
        return {"attempt_id": row[0], "lower": row[1], "upper": row[2], "files": files,
                "rows_quarantined": row[4] or 0}  # fmt: skip

    def rule_results(self, attempt_id: str) -> list[dict]:
        """An attempt's rule results as the validator tallied them."""
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT rule_id, severity, checked, failed, reasons FROM rule_results "
                "WHERE attempt_id = ? ORDER BY rule_id",
                [attempt_id],
            ).fetchall()
        return [
            {"rule_id": rule, "severity": severity, "checked": checked, "failed": failed,
             "reasons": json.loads(reasons or "{}")}
            for rule, severity, checked, failed, reasons in rows
        ]  # fmt: skip

    def history(self, system: str, dataset: str, before: datetime, limit: int) -> list[dict]:
        """The latest landed attempt of each of the ``limit`` windows before ``before``."""
        with self.connect(read_only=True) as con:
            cur = con.execute(
                "SELECT window_start, rows_read, newest_data_at FROM runs "
                "WHERE system = ? AND dataset = ? AND status = 'landed' AND window_start < ? "
                "QUALIFY row_number() OVER (PARTITION BY window_start ORDER BY finished_at DESC)"
                " = 1 ORDER BY window_start DESC LIMIT ?",
                [system, dataset, before, limit],
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def seen_files(self, system: str, dataset: str) -> set[tuple[str, str]]:
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT name, sha256 FROM seen_files WHERE system = ? AND dataset = ?",
                [system, dataset],
            ).fetchall()
        return {(n, s) for n, s in rows}

    def latest(self) -> list[dict]:
        """The newest attempt per dataset and window, newest windows first."""
        with self.connect(read_only=True) as con:
            cur = con.execute("""
                SELECT * FROM runs
                QUALIFY row_number() OVER (PARTITION BY system, dataset, window_start
                                           ORDER BY started_at DESC) = 1
                ORDER BY window_start DESC, system, dataset""")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
