"""The uplink ledger: packages, delivery attempts, receipts, rejected rows and, per exchange and
resource, the row digests of the snapshot the exchange last accepted, and the source version
(warehouse build) whose outgoing rows that snapshot is exactly, when known.

A DuckDB file of its own (``<data root>/state/uplink.duckdb``), so deliveries never wait on the
ingestion ledger's write lock. Each call opens the file briefly and retries while another
process holds it, as ``etl.ledger`` does. A receipt is reconciled in one transaction: the
package's receipt, its rejected rows and the accepted digests move together.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from etl.ledger import open_state_file
from etl.settings import Paths

SCHEMA = """
CREATE TABLE IF NOT EXISTS uplink_packages (
    package_id VARCHAR PRIMARY KEY,
    exchange VARCHAR, resource VARCHAR, resource_code VARCHAR, transport VARCHAR,
    seq INTEGER,
    status VARCHAR,          -- built | delivered | unconfirmed | failed | receipted
    created_at TIMESTAMPTZ, delivered_at TIMESTAMPTZ, last_attempt_at TIMESTAMPTZ,
    attempts INTEGER,
    rows_sent BIGINT, rows_insert BIGINT, rows_update BIGINT, rows_delete BIGINT,
    rows_sha256 VARCHAR, path VARCHAR,
    receipt_status VARCHAR,  -- ACCEPTED | PARTIAL | REJECTED
    rows_accepted BIGINT, rows_rejected BIGINT, receipt_at TIMESTAMPTZ, receipt VARCHAR,
    reconciled BOOLEAN,      -- rows sent = accepted + rejected, and the checksum matches
    error VARCHAR,
    source_version VARCHAR   -- the warehouse build and outgoing definition it was read from
);
ALTER TABLE uplink_packages ADD COLUMN IF NOT EXISTS source_version VARCHAR;
CREATE TABLE IF NOT EXISTS uplink_attempts (
    package_id VARCHAR, attempt INTEGER, attempted_at TIMESTAMPTZ,
    outcome VARCHAR,         -- delivered | duplicate | ambiguous | failed | refused
    detail VARCHAR
);
CREATE TABLE IF NOT EXISTS uplink_rejected_rows (
    package_id VARCHAR, exchange VARCHAR, resource VARCHAR, row_no BIGINT,
    row_key VARCHAR, op VARCHAR, errors VARCHAR,
    PRIMARY KEY (package_id, row_no)
);
CREATE TABLE IF NOT EXISTS uplink_accepted (
    exchange VARCHAR, resource VARCHAR, row_key VARCHAR, digest VARCHAR, package_id VARCHAR,
    PRIMARY KEY (exchange, resource, row_key)
);
-- the accepted snapshot of a resource is exactly its outgoing rows at this source version
CREATE TABLE IF NOT EXISTS uplink_synced (
    exchange VARCHAR, resource VARCHAR, source_version VARCHAR, package_id VARCHAR,
    synced_at TIMESTAMPTZ,
    PRIMARY KEY (exchange, resource)
);
"""
IN_FLIGHT = ("built", "delivered", "unconfirmed", "failed")


def _now() -> datetime:
    return datetime.now(UTC)


class UplinkState:
    def __init__(self, where: Paths | Path):
        self.path = where.state / "uplink.duckdb" if isinstance(where, Paths) else Path(where)

    def connect(self, read_only: bool = False):
        return open_state_file(self.path, SCHEMA, read_only)

    # ------------------------------------------------------------------ packages

    def record_built(self, row: dict) -> None:
        """Record a new package; the resource is no longer in sync until its receipt."""
        row = {**row, "status": "built", "created_at": _now(), "attempts": 0}
        cols = ", ".join(row)
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(
                f"INSERT INTO uplink_packages ({cols}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
            con.execute(
                "DELETE FROM uplink_synced WHERE exchange = ? AND resource = ?",
                [row["exchange"], row["resource"]],
            )
            con.execute("COMMIT")

    def next_seq(self, exchange: str, resource: str) -> int:
        with self.connect(read_only=True) as con:
            (n,) = con.execute(
                "SELECT coalesce(max(seq), 0) FROM uplink_packages WHERE exchange = ? "
                "AND resource = ?",
                [exchange, resource],
            ).fetchall()[0]
        return n + 1

    def in_flight(self, exchange: str, resource: str) -> dict | None:
        """The package of this resource still waiting for its receipt, if any (at most one)."""
        rows = self._packages(
            "exchange = ? AND resource = ? AND status IN ('built', 'delivered', 'unconfirmed', "
            "'failed') ORDER BY seq",
            [exchange, resource],
        )
        return rows[0] if rows else None

    def package(self, package_id: str) -> dict | None:
        rows = self._packages("package_id = ?", [package_id])
        return rows[0] if rows else None

    def packages(self, exchange: str | None = None) -> list[dict]:
        if exchange:
            return self._packages("exchange = ? ORDER BY resource, seq", [exchange])
        return self._packages("true ORDER BY exchange, resource, seq", [])

    def _packages(self, where: str, args: list) -> list[dict]:
        with self.connect(read_only=True) as con:
            cur = con.execute(f"SELECT * FROM uplink_packages WHERE {where}", args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def attempt(self, package_id: str, outcome: str, detail: str = "", status: str | None = None):
        """Record one delivery attempt and move the package to ``status``."""
        now = _now()
        with self.connect() as con:
            con.execute("BEGIN")
            (n,) = con.execute(
                "SELECT coalesce(attempts, 0) + 1 FROM uplink_packages WHERE package_id = ?",
                [package_id],
            ).fetchall()[0]
            con.execute(
                "INSERT INTO uplink_attempts VALUES (?, ?, ?, ?, ?)",
                [package_id, n, now, outcome, detail[:2000]],
            )
            delivered = outcome in ("delivered", "duplicate")
            con.execute(
                "UPDATE uplink_packages SET attempts = ?, last_attempt_at = ?, "
                "status = coalesce(?, status), error = ?, "
                "delivered_at = CASE WHEN ? THEN coalesce(delivered_at, ?) ELSE delivered_at END "
                "WHERE package_id = ? AND status <> 'receipted'",
                [n, now, status, None if delivered else detail[:2000], delivered, now, package_id],
            )
            con.execute("COMMIT")

    def attempts(self, package_id: str) -> list[dict]:
        with self.connect(read_only=True) as con:
            cur = con.execute(
                "SELECT * FROM uplink_attempts WHERE package_id = ? ORDER BY attempt", [package_id]
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # ------------------------------------------------------------------ receipts

    def reconcile(self, package: dict, receipt: dict, rows_file: Path) -> dict:
        """Record ``receipt`` for ``package`` and, when it reconciles, advance the accepted
        snapshot by the rows the exchange accepted, all in one transaction. Idempotent."""
        rejected = {int(e["row_no"]): e for e in receipt.get("errors", []) if e.get("row_no")}
        status = receipt["status"]
        accepted_n = int(receipt.get("rows_accepted") or 0)
        rejected_n = int(receipt.get("rows_rejected") or 0)
        sent = int(package["rows_sent"])
        problems = []
        if accepted_n + rejected_n != sent:
            problems.append(f"rows sent {sent} != accepted {accepted_n} + rejected {rejected_n}")
        if status != "REJECTED" and receipt.get("checksum") != package["rows_sha256"]:
            problems.append("receipt checksum differs from the package's")
        if status == "ACCEPTED" and (rejected or rejected_n):
            problems.append("ACCEPTED receipt lists rejected rows")
        if status == "PARTIAL" and len(rejected) != rejected_n:
            problems.append(f"PARTIAL receipt lists {len(rejected)} rows, counts {rejected_n}")
        reconciled = not problems
        with self.connect() as con:
            con.execute("BEGIN")
            (current,) = con.execute(
                "SELECT status FROM uplink_packages WHERE package_id = ?", [package["package_id"]]
            ).fetchall()[0]
            if current == "receipted":  # already reconciled: a second copy of the receipt
                con.execute("ROLLBACK")
                return self.package(package["package_id"])
            con.execute(
                "UPDATE uplink_packages SET status = 'receipted', receipt_status = ?, "
                "rows_accepted = ?, rows_rejected = ?, receipt_at = ?, receipt = ?, "
                "reconciled = ?, error = ? WHERE package_id = ?",
                [
                    status,
                    accepted_n,
                    rejected_n,
                    _now(),
                    json.dumps(receipt, ensure_ascii=False, default=str),
                    reconciled,
                    "; ".join(problems) or receipt.get("reason"),
                    package["package_id"],
                ],
            )
            self._note_rejected(con, package, rows_file, rejected)
            if reconciled and status in ("ACCEPTED", "PARTIAL"):
                self._advance(con, package, rows_file)
            if reconciled and status == "ACCEPTED" and package.get("source_version"):
                self._synced(con, package, package["source_version"])
            con.execute("COMMIT")
        return self.package(package["package_id"])

    @staticmethod
    def _note_rejected(con, package: dict, rows_file: Path, rejected: dict[int, dict]) -> None:
        """Keep the rejected rows with their key and operation, looked up in the package's own
        rows by a join (temp table ``_rejected``, which ``_advance`` reads too), not by loading
        every row of the package."""
        import pyarrow as pa

        errors = pa.table(
            {
                "row_no": pa.array(list(rejected), pa.int64()),
                "errors": [
                    json.dumps(e.get("errors", []), ensure_ascii=False) for e in rejected.values()
                ],
            }
        )
        con.register("_receipt_errors", errors)
        con.execute("CREATE OR REPLACE TEMP TABLE _rejected AS SELECT * FROM _receipt_errors")
        con.unregister("_receipt_errors")
        if rejected:
            con.execute(
                "INSERT OR REPLACE INTO uplink_rejected_rows SELECT ?, ?, ?, r.row_no, p._key, "
                "p._op, r.errors FROM _rejected r LEFT JOIN (SELECT _row_no, _key, _op FROM "
                "read_parquet(?)) p ON p._row_no = r.row_no",
                [package["package_id"], package["exchange"], package["resource"], str(rows_file)],
            )

    @staticmethod
    def _advance(con, package: dict, rows_file: Path) -> None:
        """The accepted snapshot moves by every row the exchange accepted (all but those in
        ``_rejected``): I/U rows take their new digest, D rows leave it. Rejected rows keep
        their last accepted state, so the next delivery sends them again."""
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _taken AS SELECT _key, _digest, _op "
            "FROM read_parquet(?) WHERE _row_no NOT IN (SELECT row_no FROM _rejected)",
            [str(rows_file)],
        )
        ex, res = package["exchange"], package["resource"]
        con.execute(
            "DELETE FROM uplink_accepted WHERE exchange = ? AND resource = ? "
            "AND row_key IN (SELECT _key FROM _taken)",
            [ex, res],
        )
        con.execute(
            "INSERT INTO uplink_accepted SELECT ?, ?, _key, _digest, ? FROM _taken "
            "WHERE _op <> 'D'",
            [ex, res, package["package_id"]],
        )

    # ------------------------------------------------------------------ in sync

    @staticmethod
    def _synced(con, package: dict, version: str) -> None:
        con.execute(
            "INSERT OR REPLACE INTO uplink_synced VALUES (?, ?, ?, ?, ?)",
            [package["exchange"], package["resource"], version, package.get("package_id"), _now()],
        )

    def mark_synced(self, exchange: str, resource: str, version: str) -> None:
        """The outgoing rows at ``version`` differ in nothing from the accepted snapshot."""
        with self.connect() as con:
            self._synced(con, {"exchange": exchange, "resource": resource}, version)

    def synced_version(self, exchange: str, resource: str) -> str | None:
        """The source version whose outgoing rows the exchange holds exactly, if known: set
        when a delivery found nothing to send, or a package's receipt accepted every row;
        cleared when a new package is built (a PARTIAL or REJECTED receipt leaves it clear)."""
        import duckdb

        with self.connect(read_only=True) as con:
            try:
                row = con.execute(
                    "SELECT source_version FROM uplink_synced WHERE exchange = ? AND resource = ?",
                    [exchange, resource],
                ).fetchone()
            except duckdb.CatalogException:  # a ledger from before uplink_synced
                return None
        return row[0] if row else None

    # ------------------------------------------------------------------ snapshots

    def accepted_digests(self, exchange: str, resource: str):
        """The accepted snapshot of a resource as an Arrow table (row_key, digest)."""
        with self.connect(read_only=True) as con:
            return con.sql(
                "SELECT row_key, digest FROM uplink_accepted WHERE exchange = ? AND resource = ?",
                params=[exchange, resource],
            ).to_arrow_table()

    def rejected_rows(self, exchange: str | None = None) -> list[dict]:
        with self.connect(read_only=True) as con:
            cur = con.execute(
                "SELECT * FROM uplink_rejected_rows WHERE ? IS NULL OR exchange = ? "
                "ORDER BY package_id, row_no",
                [exchange, exchange],
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
