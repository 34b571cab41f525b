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
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

from etl.contracts import ExchangeContract
from etl.signed_server import SignedServer
from etl.uplink.masks import OutgoingColumn, outgoing_columns
from etl.uplink.package import (
    canonical,
    parse_value,
    read_data_file,
    rows_checksum,
    sign_receipt,
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
        rows: list[dict] | None = None,
    ) -> tuple[dict, bool]:
        """Check and apply one package; return its receipt and whether it was a duplicate.

        ``files`` are the package's data files (file package, HTTP); ``rows`` are the rows read
        from a 前置库 table instead. A package with a bad signature gets a REJECTED receipt that
        is not stored (it proves nothing about who sent it)."""
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
        reason, wire = self._check_package(manifest, files, rows)
        if reason:
            return self._store(manifest, self._receipt(manifest, "REJECTED", reason=reason), [])
        _, columns, keys, _ = self.expected[manifest["resource"]["code"]]
        good, errors = self._check_rows(manifest, columns, keys, wire)
        accepted = len(good)
        status = "ACCEPTED" if not errors else ("PARTIAL" if accepted else "REJECTED")
        receipt = self._receipt(
            manifest,
            status,
            rows_accepted=accepted,
            rows_rejected=len(errors),
            errors=errors,
            reason=None if not errors else f"{len(errors)} rows rejected",
        )
        return self._store(manifest, receipt, good)

    def _check_package(self, manifest: dict, files, rows) -> tuple[str | None, list[dict]]:
        code = (manifest.get("resource") or {}).get("code")
        if code not in self.expected:
            return f"unknown resource code {code!r}", []
        if manifest.get("exchange") != self.exchange.exchange:
            return f"package for exchange {manifest.get('exchange')!r}", []
        columns = self.expected[code][1]
        expected = [(c["name"], c["type"]) for c in _wire_schema(columns, self.exchange.control)]
        given = [(c.get("name"), c.get("type")) for c in manifest.get("schema", [])]
        if given != expected:
            missing = sorted(set(expected) - set(given))
            extra = sorted(set(given) - set(expected))
            return f"schema differs from the contract: missing {missing}, unexpected {extra}", []
        if files is not None:
            listed = manifest.get("files") or []
            if len(listed) != 1:
                return "a package carries exactly one data file", []
            entry = listed[0]
            data = files.get(entry["name"])
            if data is None:
                return f"data file {entry['name']} is missing", []
            if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                return f"checksum mismatch: {entry['name']} is not the file the manifest lists", []
            try:
                rows = read_data_file(entry["name"], data, manifest).to_pylist()
            except Exception as exc:  # a file that passed its checksum but does not parse
                return f"data file {entry['name']} cannot be read: {exc}", []
        rows = rows or []
        c = self.exchange.control
        if len(rows) != manifest.get("rows"):
            return f"{len(rows)} rows, the manifest says {manifest.get('rows')}", []
        ops = {op: sum(1 for r in rows if r.get(c.op) == op) for op in ("I", "U", "D")}
        if ops != manifest.get("ops"):
            return f"rows per operation {ops}, the manifest says {manifest.get('ops')}", []
        if any(r.get(c.batch_id) != manifest["package_id"] for r in rows):
            return "rows of another batch id", []
        types = [col.type for col in columns]
        lines = []
        for r in rows:
            values = []
            for col in columns:
                try:
                    values.append(parse_value(r.get(col.item), col.type))
                except ValueError:
                    values.append(r.get(col.item))
            lines.append((int(r.get(c.row_no) or 0), r.get(c.op), values))
        try:
            checksum = rows_checksum(lines, types)
        except (ValueError, TypeError, AttributeError):
            checksum = None
        if checksum != manifest.get("rows_sha256"):
            return "rows checksum mismatch: the rows are not the ones the manifest signs", []
        return None, rows

    def _check_rows(self, manifest, columns: list[OutgoingColumn], keys: list[str], rows):
        """Per-row checks; returns the rows to apply (typed) and the errors of the others."""
        from sqlalchemy import select

        c = self.exchange.control
        _, _, _, table = self.expected[manifest["resource"]["code"]]
        patterns = {
            col.item: re.compile(col.column.pattern) for col in columns if col.column.pattern
        }
        good, errors = [], []
        parsed_rows = []
        for r in rows:
            problems, values = [], {}
            op = r.get(c.op)
            if op not in ("I", "U", "D"):
                problems.append(f"{c.op}: operation flag {op!r} is not I, U or D")
            for col in columns:
                try:
                    value = parse_value(r.get(col.item), col.type)
                except ValueError as exc:
                    problems.append(f"{col.item}: {exc}")
                    continue
                values[col.item] = value
                if value is None and (col.item in keys or (op != "D" and not col.column.nullable)):
                    problems.append(f"{col.item}: required, but empty")
                elif (
                    value is not None
                    and col.item in patterns
                    and op != "D"
                    and not patterns[col.item].fullmatch(str(value))
                ):
                    problems.append(f"{col.item}: {str(value)[:40]!r} does not match the code")
            parsed_rows.append((r, op, values, problems))
        deletes = [tuple(v.get(k) for k in keys) for _, op, v, p in parsed_rows if op == "D"]
        known = set()
        if deletes:
            with self.engine.connect() as conn:
                for found in conn.execute(
                    select(*(table.c[k] for k in keys)).where(table.c._deleted.is_(False))
                ):
                    known.add(tuple(found))
        for r, op, values, problems in parsed_rows:
            key = {k: canonical(values.get(k), "string") for k in keys}
            if op == "D" and not problems and tuple(values.get(k) for k in keys) not in known:
                problems.append("delete of a key the exchange does not hold")
            if problems:
                errors.append(
                    {"row_no": int(r.get(c.row_no) or 0), "op": op, "key": key, "errors": problems}
                )
            else:
                good.append((op, values, r.get(c.change_time)))
        return good, errors

    def _store(self, manifest: dict, receipt: dict, good: list) -> tuple[dict, bool]:
        """Apply the good rows and store the receipt in one transaction (once per package id)."""
        from sqlalchemy import update
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
                if good:
                    _, _, keys, table = self.expected[manifest["resource"]["code"]]
                    upserts = [
                        {**v, "_deleted": False, "_package_id": pid, "_change_time": t}
                        for op, v, t in good
                        if op != "D"
                    ]
                    if upserts:
                        conn.execute(self._upsert(table, keys), upserts)
                    for op, v, t in good:
                        if op == "D":
                            conn.execute(
                                update(table)
                                .where(*(table.c[k] == v[k] for k in keys))
                                .values(_deleted=True, _package_id=pid, _change_time=t)
                            )
        except IntegrityError:  # the same package applied meanwhile by another request
            stored = self.stored_receipt(pid)
            if stored:
                return stored, True
            raise
        return receipt, False

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
                with self.engine.connect() as conn:
                    rows = [
                        dict(r._mapping)
                        for r in conn.execute(
                            select(data)
                            .where(data.c[control.batch_id] == b.batch_id)
                            .order_by(data.c[control.row_no])
                        )
                    ]
                receipt, _ = self.receiver.receive(
                    b.manifest.encode("utf-8"), b.signature, files=None, rows=rows
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
                    if bad:
                        conn.execute(
                            update(data)
                            .where(
                                data.c[control.batch_id] == b.batch_id,
                                data.c[control.row_no].in_(sorted(bad)),
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

    def close(self) -> None:
        self.engine.dispose()


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
