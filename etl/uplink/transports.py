"""The three ways a package reaches an exchange.

Each transport sends a built package under its package id and reads its receipt back:

- ``FrontDbTransport`` (前置库): the rows go into the resource's agreed table of a front-end
  database (PostgreSQL, MariaDB or, for the demo, SQLite, through SQLAlchemy) with their
  operation flag, change time, batch id and status ``N``; the batch row, written last in the
  same transaction, is the commit marker; the receiver answers in its feedback table;
- ``PackageTransport``: the data file, manifest and signature go into
  ``<outbox>/packages/<package_id>/`` (a local folder renamed into place, or any fsspec URL with
  the manifest written last); the receipt comes back as ``<outbox>/receipts/<package_id>.json``;
- ``HttpTransport``: ``POST <url>/packages/<package_id>`` signed with X-Client-Id, X-Timestamp,
  X-Nonce and X-Signature; the answer is the receipt, also at ``GET <url>/receipts/<id>``.

Failures are typed for the delivery protocol: ``TransientError`` (nothing was delivered; retry),
``AmbiguousError`` (the package may have arrived: ask for its receipt, then resend the same id)
and ``RefusedError`` (the receiver refused the request; retrying now will not help).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets as _secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from etl.contracts import ExchangeContract, ExchangeResource
from etl.uplink.changes import UplinkError
from etl.uplink.package import Package, receipt_is_authentic, sign


class TransientError(UplinkError):
    """Nothing was delivered (receiver down, refused connection, server error): retry."""


class AmbiguousError(UplinkError):
    """The package may have been applied (a timeout after sending): ask, then resend the id."""


class RefusedError(UplinkError):
    """The receiver refused the request (bad signature, unknown client): fix, then resend."""


@dataclass
class Sent:
    outcome: str  # delivered | duplicate
    receipt: dict | None = None


def _check_receipt(secret: str, receipt: dict, location: str) -> dict:
    if not receipt_is_authentic(secret, receipt):
        raise UplinkError(
            location, "the receipt's signature does not verify (wrong shared secret?)"
        )
    return receipt


# --------------------------------------------------------------------------- 前置库


def sqlalchemy_url(url: str) -> str:
    """Our URL forms to SQLAlchemy's drivers: psycopg 3 for PostgreSQL, PyMySQL for MariaDB."""
    for prefix, driver in (
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
        ("mysql://", "mysql+pymysql://"),
        ("mariadb://", "mysql+pymysql://"),
    ):
        if url.startswith(prefix):
            return driver + url[len(prefix) :]
    return url


def frontdb_tables(metadata, exchange: ExchangeContract, resource: ExchangeResource, columns):
    """The agreed tables of the 前置库: the resource's data table, the batch table (commit
    marker), the feedback table and its per-row errors (the receiver's)."""
    from sqlalchemy import BigInteger, Column, String, Table, Text

    from etl.uplink.receivers import sql_type

    c = exchange.control
    transport = exchange.transport_of(resource)

    def table(name, *cols):
        return metadata.tables[name] if name in metadata.tables else Table(name, metadata, *cols)

    data = table(
        resource.table,
        Column(c.batch_id, String(128), primary_key=True),
        Column(c.row_no, BigInteger, primary_key=True, autoincrement=False),
        Column(c.op, String(1), nullable=False),
        Column(c.change_time, String(40), nullable=False),
        Column(c.status, String(1), nullable=False),
        *(Column(col.item, sql_type(col.type, key=False)) for col in columns),
    )
    batch = table(
        transport.batch_table,
        Column("batch_id", String(128), primary_key=True),
        Column("resource_code", String(64), nullable=False),
        Column("data_table", String(64), nullable=False),
        Column("rows", BigInteger, nullable=False),
        Column("rows_sha256", String(64), nullable=False),
        Column("manifest", Text, nullable=False),
        Column("signature", String(100), nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("status", String(16), nullable=False),
    )
    feedback = table(
        transport.feedback_table,
        Column("batch_id", String(128), primary_key=True),
        Column("status", String(16), nullable=False),
        Column("rows", BigInteger),
        Column("rows_accepted", BigInteger),
        Column("rows_rejected", BigInteger),
        Column("reason", Text),
        Column("receipt", Text, nullable=False),
        Column("received_at", String(40)),
    )
    errors = table(
        transport.feedback_errors_table,
        Column("batch_id", String(128), primary_key=True),
        Column("row_no", BigInteger, primary_key=True, autoincrement=False),
        Column("row_key", Text),
        Column("errors", Text),
    )
    return data, batch, feedback, errors


class FrontDbTransport:
    def __init__(self, exchange, resource, columns, url: str, secret: str):
        from sqlalchemy import MetaData, create_engine

        self.exchange, self.resource, self.secret = exchange, resource, secret
        self.location = url
        self.engine = create_engine(sqlalchemy_url(url), pool_pre_ping=True)
        self.metadata = MetaData()
        self.data, self.batch, self.feedback, self.errors = frontdb_tables(
            self.metadata, exchange, resource, columns
        )
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            self.metadata.create_all(self.engine, checkfirst=True)
            self._ready = True

    def send(self, package: Package) -> Sent:
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError, IntegrityError

        manifest, pid = package.manifest, package.package_id
        try:
            self._ensure()
            with self.engine.connect() as conn:
                trans = conn.begin()
                known = conn.execute(
                    select(self.batch.c.rows_sha256).where(self.batch.c.batch_id == pid)
                ).first()
                if known:
                    trans.rollback()
                    return self._duplicate(known[0], manifest)
                self._insert_rows(conn, package)
                conn.execute(
                    self.batch.insert(),
                    {
                        "batch_id": pid,
                        "resource_code": self.resource.code,
                        "data_table": self.resource.table,
                        "rows": manifest["rows"],
                        "rows_sha256": manifest["rows_sha256"],
                        "manifest": package.manifest_bytes.decode("utf-8"),
                        "signature": sign(self.secret, package.manifest_bytes),
                        "created_at": manifest["created_at"],
                        "status": "READY",
                    },
                )
                try:
                    trans.commit()
                except IntegrityError:
                    raise
                except DBAPIError as exc:  # the commit may or may not have happened
                    raise AmbiguousError(self.where, f"commit unconfirmed: {exc.orig}") from exc
        except IntegrityError:  # another attempt of the same package committed meanwhile
            with self.engine.connect() as conn:
                known = conn.execute(
                    select(self.batch.c.rows_sha256).where(self.batch.c.batch_id == pid)
                ).first()
            if known:
                return self._duplicate(known[0], manifest)
            raise
        except (AmbiguousError, RefusedError):
            raise
        except DBAPIError as exc:
            raise TransientError(self.where, f"front-end database: {exc.orig}") from exc
        return Sent("delivered")

    def _insert_rows(self, conn, package: Package) -> None:
        """The package's rows with status ``N``, one executemany per record batch (inside the
        caller's transaction), so only one batch at a time exists as Python rows."""
        status = self.exchange.control.status
        for batch in package.wire_batches():
            flagged = batch.append_column(status, pa.repeat(pa.scalar("N"), batch.num_rows))
            if flagged.num_rows:
                conn.execute(self.data.insert(), flagged.to_pylist())

    def _duplicate(self, checksum: str, manifest: dict) -> Sent:
        if checksum != manifest["rows_sha256"]:
            raise RefusedError(self.where, f"batch {manifest['package_id']} exists with other rows")
        return Sent("duplicate", self.receipt(manifest["package_id"]))

    @property
    def where(self) -> str:
        from etl.connections import redact

        return f"{redact(self.location)} {self.resource.table}"

    def probe(self) -> str:
        """Whether the front-end database answers, and which of the resource's tables it
        lacks (the first delivery creates them). Nothing is written."""
        from sqlalchemy import inspect
        from sqlalchemy.exc import DBAPIError

        tables = (self.data, self.batch, self.feedback, self.errors)
        try:
            with self.engine.connect() as conn:
                have = inspect(conn)
                missing = [t.name for t in tables if not have.has_table(t.name, schema=t.schema)]
        except DBAPIError as exc:
            raise TransientError(self.where, f"cannot connect: {exc.orig}") from exc
        if missing:
            return f"answers; the first delivery creates {', '.join(missing)}"
        return "answers; its tables are there"

    def receipt(self, package_id: str) -> dict | None:
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError

        try:
            self._ensure()
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(self.feedback.c.receipt).where(self.feedback.c.batch_id == package_id)
                ).first()
        except DBAPIError as exc:
            raise TransientError(self.where, f"cannot read the feedback: {exc.orig}") from exc
        if not row:
            return None
        return _check_receipt(self.secret, json.loads(row[0]), self.where)

    def close(self) -> None:
        self.engine.dispose()


# --------------------------------------------------------------------------- file package


def outbox_fs(url: str):
    """An fsspec filesystem and root path for the outbox URL (``file://``, a plain path, or any
    protocol fsspec knows)."""
    import fsspec

    if "://" not in url:
        url = Path(url).resolve().as_uri()
    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def write_atomically(fs, path: str, data: bytes) -> None:
    """One file, whole or not at all: a temporary name, then a rename (local) or a single put."""
    if _is_local(fs):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.tmp-{_secrets.token_hex(4)}"
        Path(tmp).write_bytes(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


class PackageTransport:
    def __init__(self, exchange, resource, url: str, secret: str):
        self.exchange, self.resource, self.secret, self.url = exchange, resource, secret, url
        self.fs, self.root = outbox_fs(url)

    @property
    def where(self) -> str:
        return self.url

    def send(self, package: Package) -> Sent:
        pid = package.package_id
        target = f"{self.root}/packages/{pid}"
        manifest = package.manifest_bytes
        signature = sign(self.secret, manifest) + "\n"
        try:
            if self.fs.exists(f"{target}/manifest.json"):
                there = self.fs.cat_file(f"{target}/manifest.json")
                if hashlib.sha256(there).digest() != hashlib.sha256(manifest).digest():
                    raise RefusedError(self.where, f"package {pid} exists with another manifest")
                return Sent("duplicate", self.receipt(pid))
            # the data files are copied, not read into memory
            names = [f["name"] for f in package.manifest["files"]]
            if _is_local(self.fs):
                tmp = Path(f"{self.root}/.tmp/{pid}-{_secrets.token_hex(4)}")
                tmp.mkdir(parents=True)
                for name in names:
                    shutil.copyfile(package.directory / name, tmp / name)
                (tmp / "manifest.sig").write_text(signature, encoding="ascii")
                (tmp / "manifest.json").write_bytes(manifest)  # last: the package is complete
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                if Path(target).exists():  # a half-written earlier attempt (no manifest)
                    shutil.rmtree(target)
                os.replace(tmp, target)
            else:
                for name in names:
                    self.fs.put_file(str(package.directory / name), f"{target}/{name}")
                self.fs.pipe_file(f"{target}/manifest.sig", signature.encode())
                self.fs.pipe_file(f"{target}/manifest.json", manifest)  # the commit marker
        except (RefusedError, UplinkError):
            raise
        except OSError as exc:
            raise TransientError(self.where, f"cannot write the package: {exc}") from exc
        return Sent("delivered")

    def probe(self) -> str:
        """Whether the outbox takes a file: an empty one is written and removed."""
        probe = f"{self.root}/.countylake-check-{_secrets.token_hex(4)}"
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except OSError as exc:
            raise TransientError(self.where, f"cannot write to the outbox: {exc}") from exc
        return "takes files"

    def receipt(self, package_id: str) -> dict | None:
        path = f"{self.root}/receipts/{package_id}.json"
        try:
            if not self.fs.exists(path):
                return None
            receipt = json.loads(self.fs.cat_file(path))
        except OSError as exc:
            raise TransientError(self.where, f"cannot read the receipt: {exc}") from exc
        return _check_receipt(self.secret, receipt, self.where)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- signed HTTP push


def http_body(package: Package, secret: str) -> bytes:
    body = {
        "manifest": package.manifest_bytes.decode("utf-8"),
        "signature": sign(secret, package.manifest_bytes),
        "files": {n: base64.b64encode(d).decode("ascii") for n, d in package.files().items()},
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class HttpTransport:
    def __init__(self, exchange, resource, url: str, secret: str, timeout_s: float):
        import httpx

        self.exchange, self.resource, self.secret = exchange, resource, secret
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout_s)

    @property
    def where(self) -> str:
        return self.url

    def _headers(self) -> dict[str, str]:
        from etl.signing import signed_headers

        return signed_headers(self.exchange.client_id, self.secret)

    def send(self, package: Package) -> Sent:
        import httpx

        pid = package.package_id
        body = http_body(package, self.secret)
        headers = {
            **self._headers(),
            "Content-Type": "application/json; charset=utf-8",
            "X-Content-SHA256": hashlib.sha256(body).hexdigest(),
        }
        try:
            answer = self.client.post(f"{self.url}/packages/{pid}", content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransientError(self.where, f"receiver not reachable: {exc}") from exc
        except httpx.TransportError as exc:  # sent, but no answer: it may have been applied
            raise AmbiguousError(self.where, f"no answer ({type(exc).__name__})") from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise TransientError(self.where, f"HTTP {answer.status_code}: {answer.text[:200]}")
        if answer.status_code >= 400:
            raise RefusedError(self.where, f"HTTP {answer.status_code}: {answer.text[:200]}")
        try:
            receipt = answer.json()
        except ValueError as exc:
            raise AmbiguousError(self.where, "the answer is not a JSON receipt") from exc
        outcome = "duplicate" if receipt.pop("duplicate", False) else "delivered"
        return Sent(outcome, _check_receipt(self.secret, receipt, self.where))

    def probe(self) -> str:
        """A signed ask for the receipt of a package that was never sent: the receiver
        answers, and refuses a wrong secret (401). Nothing is sent."""
        self.receipt(f"countylake-check-{_secrets.token_hex(4)}")
        return "answers a signed request"

    def receipt(self, package_id: str) -> dict | None:
        import httpx

        try:
            answer = self.client.get(f"{self.url}/receipts/{package_id}", headers=self._headers())
        except httpx.TransportError as exc:
            raise TransientError(self.where, f"cannot ask for the receipt: {exc}") from exc
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise TransientError(self.where, f"HTTP {answer.status_code}: {answer.text[:200]}")
        receipt = answer.json()
        receipt.pop("duplicate", None)
        return _check_receipt(self.secret, receipt, self.where)

    def close(self) -> None:
        self.client.close()
