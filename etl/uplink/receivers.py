"""Reference receivers: the city's or the province's side of each transport.

Used by the demo and the tests, and usable by a county as a conformance check before going
live: a ``ReferenceReceiver`` knows, from the same exchange contract, which resources it expects
and with which items and types. For every package it

1. reads the manifest and checks its HMAC signature with the shared secret;
2. checks the resource code and the schema against what it expects;
3. checks each data file's size and SHA-256, the row count, the counts per operation and the
   checksum of the canonical rows;
4. checks each row (operation flag, key present, required items, types, patterns, deletes of
   known keys) and applies the good ones to its store: I/U upsert by key, D a soft delete;
5. writes a signed receipt ACCEPTED / PARTIAL / REJECTED with the per-row errors.

Steps 3 and 4 read the rows as Arrow record batches of ``BATCH_ROWS``, twice (checks, then the
good rows applied), so a package of millions of rows is never held as Python rows: counts and
checks are vectorised, the rows checksum's JSON lines and the store's records are built for one
batch at a time, and error lines only for the rows that fail.

A package id is applied once: its receipt is stored in the same transaction as its rows, and a
package that arrives again gets the stored receipt back. The transports around it:
``FrontDbReceiver`` (reads READY batches, writes the feedback table), ``OutboxReceiver`` (reads
the outbox, writes receipt files) and ``HttpReceiver`` (a small threaded HTTP server).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.contracts import ExchangeContract
from etl.signed_server import SignedServer
from etl.uplink.changes import ARROW_TYPES, BATCH_ROWS
from etl.uplink.masks import OutgoingColumn, outgoing_columns
from etl.uplink.package import (
    RowsChecksum,
    canonical,
    data_batches,
    op_counts,
    sign_receipt,
    typed_values,
    verify_signature,
)
from etl.uplink.package import wire_schema as _wire_schema


def sql_type(typ: str, key: bool):
    from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Numeric, String, Text

    return {
        "string": String(255) if key else Text(),
        "int": BigInteger(),
        "float": Float(precision=53),
        "bool": Boolean(),
        "date": Date(),
        "timestamp": DateTime(),
        "decimal": Numeric(18, 2),
    }[typ]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def store_table_name(code: str) -> str:
    return "recv_" + re.sub(r"[^a-z0-9]+", "_", code.lower()).strip("_")


def _no_rows() -> Iterator[pa.RecordBatch]:
    return iter(())


class _Unreadable(Exception):
    """A data file that passed its checksum but cannot be read (the receipt's reason)."""


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    """A column of a batch by name; all null when the batch lacks it."""
    at = batch.schema.get_field_index(name)
    return batch.column(at) if at >= 0 else pa.nulls(batch.num_rows)


def row_numbers(values: pa.Array) -> pa.Array | None:
    """Row numbers as integers (null as 0, as ``int(value or 0)`` reads them); None when one is
    not a number."""
    try:
        return pc.fill_null(pc.cast(values, pa.int64()), 0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        try:
            return pa.array([int(v or 0) for v in values.to_pylist()], pa.int64())
        except (ValueError, TypeError, OverflowError):
            return None


# Typed items of one batch are Arrow arrays, or Python lists where they were typed cell by cell
# (``typed_values``); these helpers read either.
def pylist(values: pa.Array | list) -> list:
    return values.to_pylist() if isinstance(values, pa.Array) else values


def take(values: pa.Array | list, indices: pa.Array) -> list:
    if isinstance(values, pa.Array):
        return values.take(indices).to_pylist()
    return [values[i] for i in indices.to_pylist()]


def value_at(values: pa.Array | list, i: int):
    return values[i].as_py() if isinstance(values, pa.Array) else values[i]


def is_null(values: pa.Array | list) -> pa.Array:
    if isinstance(values, pa.Array):
        return pc.is_null(values)
    return pa.array([v is None for v in values], pa.bool_())


def misses(values: pa.Array | list, pattern: re.Pattern) -> pa.Array:
    """Which values (not null) ``pattern`` does not match in full, as ``re.fullmatch`` decides.
    Arrow's RE2 checks a text column at once; its ``\\d``, ``\\w`` and ``\\s`` know only ASCII
    where Python's know Unicode, so the values RE2 refuses are asked again in Python."""
    if isinstance(values, pa.Array) and pa.types.is_string(values.type):
        try:
            refused = pc.invert(pc.match_substring_regex(values, f"^(?:{pattern.pattern})$"))
        except pa.ArrowInvalid:  # a pattern RE2 cannot read: Python checks every value
            refused = pc.is_valid(values)
        asked = pc.indices_nonzero(pc.fill_null(refused, False))
        missed = np.zeros(len(values), dtype=bool)
        texts = values.take(asked).to_pylist()
        missed[asked.to_numpy()[[not pattern.fullmatch(t) for t in texts]]] = True
        return pa.array(missed)
    return pa.array(
        [v is not None and not pattern.fullmatch(str(v)) for v in pylist(values)], pa.bool_()
    )


@dataclass
class _Rows:
    """One record batch of a package as the receiver reads it: control columns as text, row
    numbers as integers, items typed (``typed_values``)."""

    size: int
    batch_id: pa.Array
    row_no: pa.Array | None
    op: pa.Array
    change_time: pa.Array
    values: dict[str, pa.Array | list]
    parsed: bool  # every item of every row parsed

    def lines(self, columns: list[OutgoingColumn]) -> tuple[list, list, list[list]]:
        """Row numbers, operations and item columns as Python values (``RowsChecksum.add``)."""
        values = [pylist(self.values[c.item]) for c in columns]
        return self.row_no.to_pylist(), self.op.to_pylist(), values

    def records(self, columns: list[OutgoingColumn], indices: pa.Array, pid: str) -> list[dict]:
        """The rows at ``indices`` as the store's records."""
        items = [c.item for c in columns]
        values = [take(self.values[item], indices) for item in items]
        changed = take(self.change_time, indices)
        fixed = {"_deleted": False, "_package_id": pid}
        return [
            {**dict(zip(items, row, strict=True)), **fixed, "_change_time": t}
            for t, *row in zip(changed, *values, strict=True)
        ]


@dataclass
class _Seen:
    """What the first pass over a package's rows found."""

    checksum: RowsChecksum
    rows: int = 0
    ops: dict = field(default_factory=lambda: dict.fromkeys(("I", "U", "D"), 0))
    other_batch: bool = False
    intact: bool = True  # every value parsed and every row number is a number
    ordered: bool = True  # rows in row-number order
    errors: list[dict] = field(default_factory=list)
    good: list[pa.Array] = field(default_factory=list)  # per batch, the rows to apply

    def problem(self, manifest: dict) -> str | None:
        """Why the package is rejected whole, if it is (checked in this order)."""
        if self.rows != manifest.get("rows"):
            return f"{self.rows} rows, the manifest says {manifest.get('rows')}"
        if self.ops != manifest.get("ops"):
            return f"rows per operation {self.ops}, the manifest says {manifest.get('ops')}"
        if self.other_batch:
            return "rows of another batch id"
        if not self.intact or self.checksum.hexdigest() != manifest.get("rows_sha256"):
            return "rows checksum mismatch: the rows are not the ones the manifest signs"
        return None


def _sorted(batches: Iterable[pa.RecordBatch], row_no: str) -> Iterator[pa.RecordBatch]:
    """All the rows sorted by row number (stable), held in Arrow: only for a package whose
    rows come out of order (the sender writes them in order)."""
    tables = [
        pa.Table.from_batches([b]).append_column("_order", row_numbers(_column(b, row_no)))
        for b in batches
    ]
    if not tables:
        return
    table = pa.concat_tables(tables, promote_options="permissive").sort_by("_order")
    yield from table.drop_columns(["_order"]).to_batches(BATCH_ROWS)


class ReferenceReceiver:
    """The exchange's checks and store for one exchange contract (see the module docstring)."""

    def __init__(self, exchange: ExchangeContract, secret: str, store_url: str):
        from sqlalchemy import Boolean, Column, MetaData, String, Table, Text, create_engine

        from etl.uplink.transports import sqlalchemy_url

        self.exchange, self.secret = exchange, secret
        self.engine = create_engine(sqlalchemy_url(store_url))
        self.metadata = MetaData()
        self.receipts = Table(
            "recv_receipts",
            self.metadata,
            Column("package_id", String(128), primary_key=True),
            Column("resource_code", String(64)),
            Column("status", String(16)),
            Column("receipt", Text, nullable=False),
            Column("received_at", String(40)),
        )
        self.expected: dict[str, tuple] = {}
        for resource in exchange.resources:
            columns = outgoing_columns(exchange, resource)
            keys = [resource.column(k).item for k in resource.key]
            table = Table(
                store_table_name(resource.code),
                self.metadata,
                *(
                    Column(c.item, sql_type(c.type, c.item in keys), primary_key=c.item in keys)
                    for c in columns
                ),
                Column("_deleted", Boolean, nullable=False),
                Column("_package_id", String(128)),
                Column("_change_time", String(40)),
            )
            self.expected[resource.code] = (resource, columns, keys, table)
        self.metadata.create_all(self.engine, checkfirst=True)

    # ------------------------------------------------------------------ receiving

    def stored_receipt(self, package_id: str) -> dict | None:
        from sqlalchemy import select

        with self.engine.connect() as conn:
            row = conn.execute(
                select(self.receipts.c.receipt).where(self.receipts.c.package_id == package_id)
            ).first()
        return json.loads(row[0]) if row else None

    def _receipt(self, manifest: dict, status: str, **fields) -> dict:
        rows = int(manifest.get("rows") or 0)
        receipt = {
            "package_id": manifest.get("package_id"),
            "exchange": self.exchange.exchange,
            "receiver": self.exchange.receiver.name,
            "resource_code": (manifest.get("resource") or {}).get("code"),
            "status": status,
            "rows": rows,
            "rows_accepted": 0,
            "rows_rejected": rows,
            "checksum": manifest.get("rows_sha256"),
            "errors": [],
            "reason": None,
            "received_at": _now(),
        }
        receipt.update(fields)
        return sign_receipt(self.secret, receipt)

    def receive(
        self,
        manifest_bytes: bytes,
        signature: str,
        files: dict[str, bytes] | None = None,
        rows: Callable[[], Iterator[pa.RecordBatch]] | None = None,
    ) -> tuple[dict, bool]:
        """Check and apply one package; return its receipt and whether it was a duplicate.

        ``files`` are the package's data files (file package, HTTP); ``rows`` gives the rows
        read from a 前置库 table instead: each call a new pass over them, as Arrow record
        batches in row-number order. The rows are read twice, a batch at a time (checks, then
        apply), so a package is never held as Python rows. A package with a bad signature gets
        a REJECTED receipt that is not stored (it proves nothing about who sent it)."""
        try:
            manifest = json.loads(manifest_bytes)
            package_id = str(manifest["package_id"])
        except (ValueError, KeyError, TypeError):
            return self._receipt({}, "REJECTED", reason="the manifest is not readable"), False
        known = self.stored_receipt(package_id)
        if known:
            return known, True
        if not verify_signature(self.secret, manifest_bytes, signature):
            return self._receipt(manifest, "REJECTED", reason="bad manifest signature"), False
        reason = self._check_package(manifest, files)
        if not reason:
            source = self._source(manifest, files, rows)
            try:
                seen = self._inspect(manifest, source)
            except _Unreadable as exc:
                reason = str(exc)
            else:
                reason = seen.problem(manifest)
        if reason:
            return self._store(manifest, self._receipt(manifest, "REJECTED", reason=reason))
        errors = seen.errors
        accepted = seen.rows - len(errors)
        status = "ACCEPTED" if not errors else ("PARTIAL" if accepted else "REJECTED")
        receipt = self._receipt(
            manifest,
            status,
            rows_accepted=accepted,
            rows_rejected=len(errors),
            errors=errors,
            reason=None if not errors else f"{len(errors)} rows rejected",
        )
        return self._store(manifest, receipt, source, seen.good)

    def _check_package(self, manifest: dict, files) -> str | None:
        """What is wrong with the package as a whole before its rows are read, if anything."""
        code = (manifest.get("resource") or {}).get("code")
        if code not in self.expected:
            return f"unknown resource code {code!r}"
        if manifest.get("exchange") != self.exchange.exchange:
            return f"package for exchange {manifest.get('exchange')!r}"
        columns = self.expected[code][1]
        expected = [(c["name"], c["type"]) for c in _wire_schema(columns, self.exchange.control)]
        given = [(c.get("name"), c.get("type")) for c in manifest.get("schema", [])]
        if given != expected:
            missing = sorted(set(expected) - set(given))
            extra = sorted(set(given) - set(expected))
            return f"schema differs from the contract: missing {missing}, unexpected {extra}"
        if files is None:
            return None
        listed = manifest.get("files") or []
        if len(listed) != 1:
            return "a package carries exactly one data file"
        entry = listed[0]
        data = files.get(entry["name"])
        if data is None:
            return f"data file {entry['name']} is missing"
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            return f"checksum mismatch: {entry['name']} is not the file the manifest lists"
        return None

    @staticmethod
    def _source(manifest: dict, files, rows) -> Callable[[], Iterator[pa.RecordBatch]]:
        """The package's rows, a new pass over them at each call: its data file, or the rows
        of a 前置库."""
        if files is None:
            return rows or _no_rows
        name = manifest["files"][0]["name"]

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from data_batches(name, files[name], manifest)
            except Exception as exc:  # a file that passed its checksum but does not parse
                raise _Unreadable(f"data file {name} cannot be read: {exc}") from exc

        return batches

    def _read(self, code: str, batch: pa.RecordBatch) -> _Rows:
        """One record batch as the receiver reads it: the wire columns by name (a missing one
        is all null) and the items typed."""
        columns = self.expected[code][1]
        c = self.exchange.control

        def text(name: str) -> pa.Array:
            return _column(batch, name).cast(pa.string())

        typed = {col.item: typed_values(_column(batch, col.item), col.type) for col in columns}
        return _Rows(
            size=batch.num_rows,
            batch_id=text(c.batch_id),
            row_no=row_numbers(_column(batch, c.row_no)),
            op=text(c.op),
            change_time=text(c.change_time),
            values={item: values for item, (values, _) in typed.items()},
            parsed=all(ok for _, ok in typed.values()),
        )

    def _inspect(self, manifest: dict, source: Callable) -> _Seen:
        """The first pass over the rows: counts, operations, batch ids and the rows checksum
        (a batch at a time, vectorised but for the checksum's JSON lines), and the per-row
        checks (``_row_errors``). A value that does not parse cannot give back the signed
        checksum, so such a package is rejected whole before its rows are checked."""
        code = manifest["resource"]["code"]
        columns = self.expected[code][1]
        seen = _Seen(checksum=RowsChecksum([col.type for col in columns]))
        last = None
        for batch in source():
            rows = self._read(code, batch)
            seen.rows += rows.size
            for op, n in op_counts(rows.op).items():
                seen.ops[op] += n
            equal = pc.fill_null(pc.equal(rows.batch_id, manifest["package_id"]), False)
            seen.other_batch |= not pc.all(equal, min_count=0).as_py()
            seen.intact &= rows.parsed and rows.row_no is not None
            if not seen.intact:
                continue
            numbers = rows.row_no
            if rows.size:
                in_order = pc.all(pc.less_equal(numbers[:-1], numbers[1:]), min_count=0).as_py()
                seen.ordered &= in_order and (last is None or last <= numbers[0].as_py())
                last = numbers[-1].as_py()
            seen.checksum.add(*rows.lines(columns))
            errors, good = self._row_errors(code, rows)
            seen.errors += errors
            seen.good.append(good)
        if seen.intact and not seen.ordered:  # rows out of order: the checksum takes them sorted
            seen.checksum = RowsChecksum([col.type for col in columns])
            for batch in _sorted(source(), self.exchange.control.row_no):
                seen.checksum.add(*self._read(code, batch).lines(columns))
        return seen

    def _row_errors(self, code: str, rows: _Rows) -> tuple[list[dict], pa.Array]:
        """The per-row checks of one batch (operation flag, key present, required items,
        patterns, deletes of known keys), vectorised; error lines are built for the failing
        rows only. Returns the errors and which rows are good."""
        _, columns, keys, table = self.expected[code]
        c = self.exchange.control
        not_delete = pc.fill_null(pc.not_equal(rows.op, "D"), True)
        bad_op = pc.invert(pc.is_in(rows.op, value_set=pa.array(["I", "U", "D"])))
        problems: list[tuple[pa.Array, Callable]] = [
            (bad_op, lambda i: f"{c.op}: operation flag {rows.op[i].as_py()!r} is not I, U or D")
        ]
        for col in columns:
            values = rows.values[col.item]
            empty = is_null(values)
            if col.item not in keys:
                empty = pc.and_(empty, not_delete) if not col.column.nullable else None
            if empty is not None:
                problems.append((empty, lambda i, item=col.item: f"{item}: required, but empty"))
            if col.column.pattern:
                missed = pc.and_(misses(values, re.compile(col.column.pattern)), not_delete)
                problems.append(
                    (
                        missed,
                        lambda i, item=col.item, v=values: (
                            f"{item}: {str(value_at(v, i))[:40]!r} does not match the code"
                        ),
                    )
                )
        failing = bad_op
        for mask, _ in problems[1:]:
            failing = pc.or_(failing, mask)
        deletes = pc.indices_nonzero(pc.and_(pc.invert(not_delete), pc.invert(failing)))
        if len(deletes):
            wanted = list(zip(*(take(rows.values[k], deletes) for k in keys), strict=True))
            held = self._held(table, keys, wanted)
            unknown = np.zeros(rows.size, dtype=bool)
            unknown[deletes.to_numpy()[[key not in held for key in wanted]]] = True
            unknown = pa.array(unknown)
            problems.append((unknown, lambda i: "delete of a key the exchange does not hold"))
            failing = pc.or_(failing, unknown)
        errors = []
        for i in pc.indices_nonzero(failing).to_pylist():
            errors.append(
                {
                    "row_no": rows.row_no[i].as_py(),
                    "op": rows.op[i].as_py(),
                    "key": {k: canonical(value_at(rows.values[k], i), "string") for k in keys},
                    "errors": [say(i) for mask, say in problems if mask[i].as_py()],
                }
            )
        return errors, pc.invert(failing)

    def _held(self, table, keys: list[str], wanted: list[tuple]) -> set[tuple]:
        """Which of these keys the exchange holds (not deleted), asked a chunk at a time and
        compared in Python, as exactly as before (a database may compare text loosely)."""
        from sqlalchemy import select, tuple_

        columns = [table.c[k] for k in keys]
        held = set()
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                among = (
                    columns[0].in_([w[0] for w in chunk])
                    if len(columns) == 1
                    else tuple_(*columns).in_(chunk)
                )
                query = select(*columns).where(among, table.c._deleted.is_(False))
                held.update(tuple(found) for found in conn.execute(query))
        return held

    def _store(
        self, manifest: dict, receipt: dict, source: Callable | None = None, good=None
    ) -> tuple[dict, bool]:
        """Store the receipt and apply the good rows in one transaction (once per package id)."""
        from sqlalchemy.exc import IntegrityError

        pid = manifest["package_id"]
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    self.receipts.insert(),
                    {
                        "package_id": pid,
                        "resource_code": receipt["resource_code"],
                        "status": receipt["status"],
                        "receipt": json.dumps(receipt, ensure_ascii=False),
                        "received_at": receipt["received_at"],
                    },
                )
                if source is not None and receipt["rows_accepted"]:
                    self._apply(conn, manifest, source, good)
        except IntegrityError:  # the same package applied meanwhile by another request
            stored = self.stored_receipt(pid)
            if stored:
                return stored, True
            raise
        return receipt, False

    def _apply(self, conn, manifest: dict, source: Callable, good: list[pa.Array]) -> None:
        """The second pass: the good rows, I/U upserted by key a batch at a time (executemany),
        then the good deletes (a soft delete: the row stays, flagged)."""
        from sqlalchemy import bindparam, update

        code = manifest["resource"]["code"]
        _, columns, keys, table = self.expected[code]
        pid = manifest["package_id"]
        upsert = self._upsert(table, keys)
        deletes = []
        for batch, ok in zip(source(), good, strict=True):
            rows = self._read(code, batch)
            is_delete = pc.fill_null(pc.equal(rows.op, "D"), False)
            upserts = pc.indices_nonzero(pc.and_(ok, pc.invert(is_delete)))
            if len(upserts):
                conn.execute(upsert, rows.records(columns, upserts, pid))
            gone = pc.and_(ok, is_delete)
            if pc.any(gone).as_py():
                deletes.append(batch.filter(gone))  # kept as Arrow until the upserts are done
        delete = (
            update(table)
            .where(*(table.c[k] == bindparam(f"key_{n}") for n, k in enumerate(keys)))
            .values(_deleted=True, _package_id=pid, _change_time=bindparam("change_time"))
        )
        for batch in deletes:
            rows = self._read(code, batch)
            values = [pylist(rows.values[k]) for k in keys]
            conn.execute(
                delete,
                [
                    {"change_time": t, **{f"key_{n}": v for n, v in enumerate(key)}}
                    for t, *key in zip(rows.change_time.to_pylist(), *values, strict=True)
                ],
            )

    def _upsert(self, table, keys: list[str]):
        dialect = self.engine.dialect.name
        others = [c.name for c in table.columns if c.name not in keys]
        if dialect == "mysql":
            from sqlalchemy.dialects.mysql import insert

            stmt = insert(table)
            return stmt.on_duplicate_key_update({n: stmt.inserted[n] for n in others})
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={n: stmt.excluded[n] for n in others}
        )

    def current_rows(self, resource_code: str, include_deleted: bool = False) -> list[dict]:
        """What the exchange holds for a resource (for tests and conformance checks)."""
        from sqlalchemy import select

        table = self.expected[resource_code][3]
        query = select(table)
        if not include_deleted:
            query = query.where(table.c._deleted.is_(False))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()


# --------------------------------------------------------------------------- 前置库


class FrontDbReceiver:
    """Reads the READY batches of a 前置库 and writes their feedback (one transaction each)."""

    def __init__(self, receiver: ReferenceReceiver, url: str):
        from sqlalchemy import MetaData, create_engine

        from etl.uplink.transports import frontdb_tables, sqlalchemy_url

        self.receiver = receiver
        self.engine = create_engine(sqlalchemy_url(url))
        self.metadata = MetaData()
        self.tables = {}
        exchange = receiver.exchange
        for code, (resource, columns, _, _) in receiver.expected.items():
            if exchange.transport_of(resource).kind == "frontdb":
                self.tables[code] = frontdb_tables(self.metadata, exchange, resource, columns)
        self.metadata.create_all(self.engine, checkfirst=True)

    def process(self) -> list[dict]:
        from sqlalchemy import select, update

        receipts = []
        batches = {}
        for code, (_, batch, feedback, _) in self.tables.items():
            with self.engine.connect() as conn:
                pending = conn.execute(
                    select(batch).where(
                        batch.c.status == "READY",
                        batch.c.resource_code == code,
                        batch.c.batch_id.not_in(select(feedback.c.batch_id)),
                    )
                ).all()
            batches[code] = pending
        control = self.receiver.exchange.control
        for code, pending in batches.items():
            data, batch, feedback, errors = self.tables[code]
            for b in pending:
                receipt, _ = self.receiver.receive(
                    b.manifest.encode("utf-8"),
                    b.signature,
                    rows=lambda code=code, batch_id=b.batch_id: self._rows(code, batch_id),
                )
                bad = {e["row_no"] for e in receipt.get("errors", [])}
                with self.engine.begin() as conn:
                    conn.execute(
                        feedback.insert(),
                        {
                            "batch_id": b.batch_id,
                            "status": receipt["status"],
                            "rows": receipt["rows"],
                            "rows_accepted": receipt["rows_accepted"],
                            "rows_rejected": receipt["rows_rejected"],
                            "reason": receipt.get("reason"),
                            "receipt": json.dumps(receipt, ensure_ascii=False),
                            "received_at": receipt["received_at"],
                        },
                    )
                    if receipt.get("errors"):
                        conn.execute(
                            errors.insert(),
                            [
                                {
                                    "batch_id": b.batch_id,
                                    "row_no": e["row_no"],
                                    "row_key": json.dumps(e["key"], ensure_ascii=False),
                                    "errors": json.dumps(e["errors"], ensure_ascii=False),
                                }
                                for e in receipt["errors"]
                            ],
                        )
                    ok = receipt["status"] != "REJECTED" or bool(bad)
                    conn.execute(
                        update(data)
                        .where(data.c[control.batch_id] == b.batch_id)
                        .values({control.status: "Y" if ok else "E"})
                    )
                    bad = sorted(bad)
                    for start in range(0, len(bad), 500):
                        conn.execute(
                            update(data)
                            .where(
                                data.c[control.batch_id] == b.batch_id,
                                data.c[control.row_no].in_(bad[start : start + 500]),
                            )
                            .values({control.status: "E"})
                        )
                    conn.execute(
                        update(batch)
                        .where(batch.c.batch_id == b.batch_id)
                        .values(status=receipt["status"])
                    )
                receipts.append(receipt)
        return receipts

    def _rows(self, code: str, batch_id: str) -> Iterator[pa.RecordBatch]:
        """The rows of one batch in row-number order as Arrow record batches, fetched
        ``BATCH_ROWS`` at a time (a server-side cursor where the driver has one)."""
        from sqlalchemy import select

        control = self.receiver.exchange.control
        data = self.tables[code][0]
        columns = self.receiver.expected[code][1]
        types = {c["name"]: ARROW_TYPES[c["type"]] for c in _wire_schema(columns, control)}
        wire = [c for c in data.columns if c.name in types]
        query = (
            select(*wire)
            .where(data.c[control.batch_id] == batch_id)
            .order_by(data.c[control.row_no])
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=BATCH_ROWS).execute(query)
            for part in result.partitions():
                columns = zip(*part, strict=True)  # the rows' values, column by column
                yield pa.RecordBatch.from_arrays(
                    [
                        _array(values, types[c.name])
                        for values, c in zip(columns, wire, strict=True)
                    ],
                    names=[c.name for c in wire],
                )

    def close(self) -> None:
        self.engine.dispose()


def _array(values: tuple, typ: pa.DataType) -> pa.Array:
    """A column fetched from a 前置库 as its wire type; a value that does not fit (SQLite keeps
    whatever it is given) passes the column on as text, for the receiver to type."""
    try:
        return pa.array(values, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


# --------------------------------------------------------------------------- file packages


class OutboxReceiver:
    """Reads the packages of an outbox that have no receipt yet and writes their receipts."""

    def __init__(self, receiver: ReferenceReceiver, url: str):
        from etl.uplink.transports import outbox_fs

        self.receiver = receiver
        self.fs, self.root = outbox_fs(url)

    def process(self) -> list[dict]:
        from etl.uplink.transports import write_atomically

        receipts = []
        base = f"{self.root}/packages"
        if not self.fs.exists(base):
            return receipts
        for folder in sorted(self.fs.ls(base, detail=False)):
            pid = folder.rstrip("/").rsplit("/", 1)[-1]
            target = f"{self.root}/receipts/{pid}.json"
            if self.fs.exists(target) or not self.fs.exists(f"{folder}/manifest.json"):
                continue  # done, or not complete yet (the manifest is written last)
            manifest_bytes = self.fs.cat_file(f"{folder}/manifest.json")
            try:
                signature = self.fs.cat_file(f"{folder}/manifest.sig").decode().strip()
            except FileNotFoundError:
                signature = ""
            files = {}
            try:
                for entry in json.loads(manifest_bytes).get("files", []):
                    path = f"{folder}/{entry['name']}"
                    if self.fs.exists(path):
                        files[entry["name"]] = self.fs.cat_file(path)
            except (ValueError, KeyError, TypeError):
                pass  # the receiver reports an unreadable manifest
            receipt, _ = self.receiver.receive(manifest_bytes, signature, files=files)
            body = json.dumps(receipt, ensure_ascii=False, indent=2).encode("utf-8")
            write_atomically(self.fs, target, body)
            receipts.append(receipt)
        return receipts


# --------------------------------------------------------------------------- signed HTTP


class HttpReceiver(SignedServer):
    """The exchange's signed HTTP endpoint: ``POST .../packages/<id>`` applies a package and
    answers its receipt; ``GET .../receipts/<id>`` returns a stored one.

    Faults for tests: ``fault`` = ``"500"`` (answer 503 without reading), or
    ``"timeout_after_commit"`` (apply and store, then answer only after ``delay_s``)."""

    thread_name = "uplink-receiver"

    def __init__(self, receiver: ReferenceReceiver, port: int = 0, host: str = "127.0.0.1"):
        self.receiver = receiver
        self.fault: str | None = None
        self.delay_s = 5.0
        self.posts = 0
        super().__init__(
            self._handler(), {receiver.exchange.client_id: receiver.secret}, host, port
        )

    def url(self, prefix: str = "") -> str:
        return f"http://{self.host}:{self.port}{prefix}"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _json(self, status: int, payload: dict) -> None:
                body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _auth(self) -> bool:
                names = ("X-Client-Id", "X-Timestamp", "X-Nonce", "X-Signature")
                reason = server.authenticate({k: self.headers.get(k, "") for k in names})
                if reason:
                    self._json(401, {"code": 401, "msg": reason})
                    return False
                return True

            def do_GET(self) -> None:
                parts = self.path.rstrip("/").split("/")
                if len(parts) < 2 or parts[-2] != "receipts":
                    return self._json(404, {"code": 404, "msg": "not found"})
                if not self._auth():
                    return None
                receipt = server.receiver.stored_receipt(parts[-1])
                if receipt is None:
                    return self._json(404, {"code": 404, "msg": "no receipt for this package"})
                return self._json(200, receipt)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with server._lock:
                    server.posts += 1
                if server.fault == "500":
                    return self._json(503, {"code": 503, "msg": "服务暂不可用"})
                parts = self.path.rstrip("/").split("/")
                if len(parts) < 2 or parts[-2] != "packages":
                    return self._json(404, {"code": 404, "msg": "not found"})
                if not self._auth():
                    return None
                if hashlib.sha256(body).hexdigest() != self.headers.get("X-Content-SHA256"):
                    return self._json(400, {"code": 400, "msg": "body digest mismatch"})
                try:
                    payload = json.loads(body)
                    manifest = payload["manifest"].encode("utf-8")
                    files = {n: base64.b64decode(d) for n, d in payload["files"].items()}
                    signature = payload.get("signature", "")
                except (ValueError, KeyError, TypeError, AttributeError):
                    return self._json(400, {"code": 400, "msg": "body is not a package"})
                if json.loads(manifest).get("package_id") != parts[-1]:
                    return self._json(400, {"code": 400, "msg": "package id differs from the URL"})
                receipt, duplicate = server.receiver.receive(manifest, signature, files=files)
                if server.fault == "timeout_after_commit":
                    time.sleep(server.delay_s)  # committed; the sender gives up before this
                return self._json(200, {**receipt, "duplicate": duplicate})

        return Handler
