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
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from etl.contracts import ControlColumns, ExchangeContract, ExchangeResource
from etl.uplink.changes import ARROW_TYPES, BATCH_ROWS
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


_FIRST_DAY = date(1, 1, 1)  # Arrow reads year 0; Python's dates start at year 1


def typed_values(values: pa.Array, typ: str) -> tuple[pa.Array | list, bool]:
    """One column of a batch as ``parse_value`` types each of its values (None where one does
    not parse), and whether every value parsed. Vectorised where Arrow is known to agree with
    ``parse_value``: a column that already has the type (Parquet, a 前置库) and text Arrow
    casts to an int, a date or a time without error (it takes a subset of what Python takes,
    and reads it the same). Otherwise value by value, as a Python list of the batch's values."""
    target = ARROW_TYPES[typ]
    if values.type == target or pa.types.is_null(values.type):
        return values.cast(target), True
    if pa.types.is_string(values.type) and typ in ("int", "date", "timestamp"):
        cast = _cast_text(values, typ)
        if cast is not None:
            return cast, True
    parsed, every = [], True
    for value in values.to_pylist():
        try:
            parsed.append(parse_value(value, typ))
        except ValueError:
            parsed.append(None)
            every = False
    return parsed, every


def _cast_text(values: pa.Array, typ: str) -> pa.Array | None:
    """Text cast by Arrow (empty text as null), or None when Arrow refuses a value or reads a
    year 0, which Python's dates do not have."""
    target = ARROW_TYPES[typ]
    text = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    try:
        cast = pc.cast(text, target)
    except pa.ArrowInvalid:
        return None
    if typ == "int":
        return cast
    year_zero = pc.any(pc.less(cast, pa.scalar(_FIRST_DAY).cast(target))).as_py()
    return None if year_zero else cast


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


class RowsChecksum:
    """SHA-256 over the rows in row-number order: ``[row_no, op, *values]`` as compact JSON, one
    line each. Fed a batch at a time, so a package's rows never have to be held at once; the
    caller feeds them in row-number order."""

    def __init__(self, types: list[str]):
        self.types = types
        self.digest = hashlib.sha256()

    def add(self, row_nos: Iterable[int], ops: Iterable, columns: list[list]) -> None:
        """Rows given column by column: their numbers, operations and value columns."""
        for row_no, op, *values in zip(row_nos, ops, *columns, strict=True):
            line = [
                int(row_no),
                op,
                *(canonical(v, t) for v, t in zip(values, self.types, strict=True)),
            ]
            self.digest.update(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode())
            self.digest.update(b"\n")

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def op_counts(ops: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    """Rows per operation I/U/D (vectorised)."""
    return {op: pc.sum(pc.equal(ops, op)).as_py() or 0 for op in ("I", "U", "D")}


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

    @property
    def data_file(self) -> Path:
        [entry] = self.manifest["files"]
        return self.directory / entry["name"]

    def files(self) -> dict[str, bytes]:
        return {
            f["name"]: (self.directory / f["name"]).read_bytes() for f in self.manifest["files"]
        }

    def wire_batches(self) -> Iterator[pa.RecordBatch]:
        """The rows on the wire, typed, read back from the data file a batch at a time."""
        return data_batches(self.data_file.name, self.data_file, self.manifest)


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


CSV_BLOCK_BYTES = 8 << 20


def data_batches(name: str, data: bytes | Path, manifest: dict) -> Iterator[pa.RecordBatch]:
    """A data file of a package (its bytes or its path) as Arrow record batches of at most
    ``BATCH_ROWS`` rows. Parquet keeps its types; CSV cells are read as text (empty = null) and
    typed by the receiver, so a bad cell is that row's error, not the file's."""
    source = pa.BufferReader(data) if isinstance(data, bytes) else str(data)
    if name.endswith(".parquet"):
        yield from pq.ParquetFile(source).iter_batches(batch_size=BATCH_ROWS)
        return
    options = pacsv.ConvertOptions(
        column_types={c["name"]: pa.string() for c in manifest["schema"]},
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=True,
    )
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(encoding="utf8", block_size=CSV_BLOCK_BYTES),
        convert_options=options,
    )
    for batch in reader:  # blocks of text, cut to BATCH_ROWS (zero-copy)
        for start in range(0, batch.num_rows, BATCH_ROWS):
            yield batch.slice(start, BATCH_ROWS)


def _wire_writer(path: Path, file_format: str, schema: pa.Schema):
    """A writer of the package's data file, one record batch at a time."""
    if file_format == "csv":
        return pacsv.CSVWriter(str(path), schema)
    return pq.ParquetWriter(path, schema, compression="zstd")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def build_package(
    directory: Path,
    *,
    package_id: str,
    exchange: ExchangeContract,
    resource: ExchangeResource,
    columns: list[OutgoingColumn],
    rows: Path,
    sender: dict,
    file_format: str,
    created_at: str,
    secret: str,
) -> Package:
    """Write a package (see the module docstring) from the change rows ``changes`` wrote to the
    Parquet file ``rows`` in row-number order, ``BATCH_ROWS`` rows at a time."""
    control = exchange.control
    directory.mkdir(parents=True, exist_ok=True)
    changes = pq.ParquetFile(rows)
    n = changes.metadata.num_rows
    wire_arrow = pa.schema(
        [
            (control.batch_id, pa.string()),
            (control.row_no, pa.int64()),
            (control.op, pa.string()),
            (control.change_time, pa.string()),
            *((c.item, ARROW_TYPES[c.type]) for c in columns),
        ]
    )
    name = f"data.{file_format}"
    path = directory / name
    checksum = RowsChecksum([c.type for c in columns])
    ops = dict.fromkeys(("I", "U", "D"), 0)
    bookkeeping = ["_row_no", "_op", "_key", "_digest"]
    book_schema = pa.schema([changes.schema_arrow.field(c) for c in bookkeeping])
    with (
        pq.ParquetWriter(directory / "rows.parquet", book_schema) as book_writer,
        _wire_writer(path, file_format, wire_arrow) as wire_writer,
    ):
        for batch in changes.iter_batches(BATCH_ROWS):
            book_writer.write_batch(batch.select(bookkeeping))
            size = batch.num_rows
            wire = pa.record_batch(
                [
                    pa.repeat(pa.scalar(package_id, pa.string()), size),
                    batch.column("_row_no"),
                    batch.column("_op"),
                    pa.repeat(pa.scalar(created_at, pa.string()), size),
                    *(batch.column(c.name).cast(ARROW_TYPES[c.type]) for c in columns),
                ],
                schema=wire_arrow,
            )
            wire_writer.write_batch(wire)
            checksum.add(
                wire.column(control.row_no).to_pylist(),
                wire.column(control.op).to_pylist(),
                [wire.column(c.item).to_pylist() for c in columns],
            )
            for op, count in op_counts(batch.column("_op")).items():
                ops[op] += count
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
        "ops": ops,
        "rows_sha256": checksum.hexdigest(),
        "files": [
            {
                "name": name,
                "format": file_format,
                "encoding": "utf-8" if file_format == "csv" else None,
                "rows": n,
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
            }
        ],
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
    (directory / "manifest.json").write_bytes(text)
    (directory / "manifest.sig").write_text(sign(secret, text) + "\n", encoding="ascii")
    return Package(directory)
