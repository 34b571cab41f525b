"""Packages: what one delivery of one resource carries, built once and sent as often as needed.

A package lives under ``<data root>/uplink/packages/<exchange>/<package_id>/``:

- ``rows.parquet``: the sender's own bookkeeping (row number, op, key, digest) for reconciling;
- ``data.parquet`` or ``data.csv`` (UTF-8): the rows on the wire, items named as the exchange
  names them, with the control columns (op flag I/U/D, change time, batch id, row number);
- ``manifest.json``: package id, exchange, sender, resource code, row counts per operation,
  schema, key, the SHA-256 of each file and of the canonical rows;
- ``manifest.sig``: Base64(HMAC-SHA256(shared secret, manifest bytes)).

Because the bytes are fixed at build time, a retry sends exactly the same package under the same
id, and the receiver can recognise it. The checksum of the canonical rows does not depend on the
file format or the database a 前置库 row went through, so a receiver checks it wherever the rows
came from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from etl.contracts import ControlColumns, ExchangeContract, ExchangeResource
from etl.uplink.changes import ARROW_TYPES
from etl.uplink.masks import OutgoingColumn

FORMAT_VERSION = 1


# --------------------------------------------------------------------------- canonical rows


def parse_value(value, typ: str):
    """A wire value (native, or text from a CSV or a database) as the Python value of ``typ``;
    raises ValueError with the reason."""
    if value is None:
        return None
    if isinstance(value, str) and value == "" and typ != "string":
        return None
    try:
        if typ == "string":
            return value if isinstance(value, str) else str(value)
        if typ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ == "float":
            return float(value)
        if typ == "bool":
            if isinstance(value, bool | int):
                return bool(value)
            text = str(value).strip().lower()
            if text not in ("true", "false", "1", "0"):
                raise ValueError
            return text in ("true", "1")
        if typ == "date":
            if isinstance(value, datetime):
                return value.date()
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        if typ == "timestamp":
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            return moment.replace(tzinfo=None)
        if typ == "decimal":
            number = Decimal(str(value))
            if not number.is_finite():
                raise ValueError
            return number
    except (ValueError, TypeError, InvalidOperation):
        raise ValueError(f"not a {typ}: {str(value)[:40]!r}") from None
    raise ValueError(f"unknown type {typ}")


def canonical(value, typ: str):
    """The JSON form a value takes in the rows checksum (same whatever carried it)."""
    if value is None:
        return None
    if typ == "decimal":
        return format(Decimal(str(value)).normalize(), "f")
    if typ == "timestamp":
        return value.isoformat(timespec="microseconds")
    if typ == "date":
        return value.isoformat()
    if typ == "float":
        return float(value)
    return value


def rows_checksum(rows: list[tuple[int, str, list]], types: list[str]) -> str:
    """SHA-256 over the rows in row-number order: ``[row_no, op, *values]`` as compact JSON."""
    digest = hashlib.sha256()
    for row_no, op, values in sorted(rows, key=lambda r: r[0]):
        line = [int(row_no), op, *(canonical(v, t) for v, t in zip(values, types, strict=True))]
        digest.update(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def sign(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


def verify_signature(secret: str, data: bytes, given: str) -> bool:
    return hmac.compare_digest(sign(secret, data), given or "")


def sign_receipt(secret: str, receipt: dict) -> dict:
    """A receipt with its ``signature`` (HMAC over the receipt's canonical JSON without it)."""
    body = {k: v for k, v in receipt.items() if k != "signature"}
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, default=str).encode()
    return {**body, "signature": sign(secret, text)}


def receipt_is_authentic(secret: str, receipt: dict) -> bool:
    return sign_receipt(secret, receipt)["signature"] == receipt.get("signature")


# --------------------------------------------------------------------------- the package


@dataclass(frozen=True)
class Package:
    directory: Path

    @property
    def manifest_bytes(self) -> bytes:
        return (self.directory / "manifest.json").read_bytes()

    @property
    def manifest(self) -> dict:
        return json.loads(self.manifest_bytes)

    @property
    def signature(self) -> str:
        return (self.directory / "manifest.sig").read_text(encoding="ascii").strip()

    @property
    def package_id(self) -> str:
        return self.manifest["package_id"]

    @property
    def rows_file(self) -> Path:
        return self.directory / "rows.parquet"

    def files(self) -> dict[str, bytes]:
        return {
            f["name"]: (self.directory / f["name"]).read_bytes() for f in self.manifest["files"]
        }

    def wire_rows(self) -> pa.Table:
        """The rows on the wire, typed (read back from the data file)."""
        manifest = self.manifest
        [entry] = manifest["files"]
        data = (self.directory / entry["name"]).read_bytes()
        return read_data_file(entry["name"], data, manifest)


def wire_schema(columns: list[OutgoingColumn], control: ControlColumns) -> list[dict]:
    return [
        {"name": control.batch_id, "type": "string", "nullable": False, "control": True},
        {"name": control.row_no, "type": "int", "nullable": False, "control": True},
        {"name": control.op, "type": "string", "nullable": False, "control": True},
        {"name": control.change_time, "type": "string", "nullable": False, "control": True},
        *(
            {"name": c.item, "type": c.type, "nullable": c.column.nullable, "title": c.column.title}
            for c in columns
        ),
    ]


def read_data_file(name: str, data: bytes, manifest: dict) -> pa.Table:
    """A data file of a package as an Arrow table. Parquet keeps its types; CSV cells are read
    as text (empty = null) and typed by the receiver row by row, so a bad cell is that row's
    error, not the file's."""
    schema = manifest["schema"]
    if name.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data))
    options = pacsv.ConvertOptions(
        column_types={c["name"]: pa.string() for c in schema},
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=True,
    )
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(encoding="utf8"),
        convert_options=options,
    )


def build_package(
    directory: Path,
    *,
    package_id: str,
    exchange: ExchangeContract,
    resource: ExchangeResource,
    columns: list[OutgoingColumn],
    rows: pa.Table,
    sender: dict,
    file_format: str,
    created_at: str,
    secret: str,
) -> Package:
    """Write a package (see the module docstring) from the change rows of ``changes``."""
    control = exchange.control
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows.select(["_row_no", "_op", "_key", "_digest"]), directory / "rows.parquet")
    n = rows.num_rows
    wire = pa.table(
        [
            pa.array([package_id] * n, pa.string()),
            rows.column("_row_no"),
            rows.column("_op"),
            pa.array([created_at] * n, pa.string()),
            *(rows.column(c.name).cast(ARROW_TYPES[c.type]) for c in columns),
        ],
        names=[control.batch_id, control.row_no, control.op, control.change_time]
        + [c.item for c in columns],
    )
    name = f"data.{file_format}"
    buffer = io.BytesIO()
    if file_format == "csv":
        pacsv.write_csv(wire, buffer)
    else:
        pq.write_table(wire, buffer, compression="zstd")
    data = buffer.getvalue()
    (directory / name).write_bytes(data)
    types = [c.type for c in columns]
    ops = rows.column("_op").to_pylist()
    checksum = rows_checksum(
        [
            (r[control.row_no], r[control.op], [r[c.item] for c in columns])
            for r in wire.to_pylist()
        ],
        types,
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "package_id": package_id,
        "exchange": exchange.exchange,
        "receiver": exchange.receiver.model_dump(),
        "sender": sender,
        "created_at": created_at,
        "resource": {
            "resource": resource.resource,
            "code": resource.code,
            "name": resource.name,
            "table": resource.table,
        },
        "key": [resource.column(k).item for k in resource.key],
        "control": control.model_dump(),
        "schema": wire_schema(columns, control),
        "rows": n,
        "ops": {op: ops.count(op) for op in ("I", "U", "D")},
        "rows_sha256": checksum,
        "files": [
            {
                "name": name,
                "format": file_format,
                "encoding": "utf-8" if file_format == "csv" else None,
                "rows": n,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        ],
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
    (directory / "manifest.json").write_bytes(text)
    (directory / "manifest.sig").write_text(sign(secret, text) + "\n", encoding="ascii")
    return Package(directory)
