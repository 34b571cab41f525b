"""The outgoing rows of a resource and what changed since the exchange's last accepted snapshot.

The rows are read from the warehouse file read-only (``duckdb.connect(..., read_only=True)``),
cast to the contract's types, masked for the exchange (``masks``), empty strings turned into
nulls (a CSV cannot tell them apart), and given a key (JSON of the key values) and a digest
(MD5 of the whole outgoing row). Compared with the accepted snapshot in the uplink ledger they
give the rows to send: I (new key), U (digest changed), D (key gone; sent as a soft delete).

Both steps go through Parquet files (``write_outgoing``, then ``write_changes``), a record batch
at a time and DuckDB's diff under a memory limit, so a first delivery of a whole county's
people costs the same memory as a daily one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.contracts import ExchangeContract, ExchangeResource
from etl.errors import CountylakeError
from etl.uplink.masks import OutgoingColumn, bind_pseudonym_key, mask_sql, outgoing_columns
from etl.validate import ARROW_TYPES
from etl.validate import SQL_TYPES as DUCKDB_TYPES

# Rows per Arrow record batch wherever the uplinks stream rows (the masked mart, the package
# files) or turn them into Python values (the rows checksum, database inserts): Python objects
# exist for one batch at a time, never for a whole resource or package.
BATCH_ROWS = 50_000
# DuckDB's memory while diffing a resource against its accepted snapshot; beyond it, it spills
CHANGES_MEMORY = "1GB"


class UplinkError(CountylakeError):
    """A resource cannot be delivered: its source, package, transport or receipt is wrong."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_outgoing(
    warehouse: Path,
    exchange: ExchangeContract,
    resource: ExchangeResource,
    pseudonym_key: bytes | None,
    path: Path,
) -> list[OutgoingColumn]:
    """Write the resource's rows as they leave for ``exchange`` (masked by DuckDB, typed, empty
    text as null) to the Parquet file ``path``, ``BATCH_ROWS`` at a time: a resource of
    millions of people is never held whole, nor turned into Python values."""
    columns = outgoing_columns(exchange, resource)
    where = f"{warehouse}: {resource.source}"
    if not warehouse.exists():
        raise UplinkError(str(warehouse), "no warehouse file yet (build the warehouse first)")
    if not pseudonym_key and any(c.applied_mask == "pseudonym" for c in columns):
        raise ValueError("the pseudonym mask needs the exchange's key")
    select = []
    for c in columns:
        # a masked column is masked by DuckDB as text; an unmasked one is cast to its type
        if c.applied_mask == "none":
            value = f"CAST({_q(c.name)} AS {DUCKDB_TYPES[c.column.type]})"
        else:
            value = mask_sql(c.applied_mask, f"CAST({_q(c.name)} AS VARCHAR)")
        select.append(f"{value} AS {_q(c.name)}")
    schema, table = resource.source.split(".")
    sql = f"SELECT {', '.join(select)} FROM {_q(schema)}.{_q(table)}"
    arrow_schema = pa.schema([(c.name, ARROW_TYPES[c.type]) for c in columns])
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:
        raise UplinkError(str(warehouse), f"cannot open the warehouse: {exc}") from exc
    try:
        if pseudonym_key:
            bind_pseudonym_key(con, pseudonym_key)
        with pq.ParquetWriter(path, arrow_schema) as writer:
            for batch in con.sql(sql).to_arrow_reader(BATCH_ROWS):
                writer.write_batch(_outgoing_batch(batch, arrow_schema))
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
        raise UplinkError(where, f"cannot read the source: {reason}") from exc
    finally:
        con.close()
    return columns


def _outgoing_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """One batch of masked rows as they leave: each column in its contract type, empty text as
    null (a CSV cannot tell them apart)."""
    arrays = []
    for field in schema:
        values = batch.column(field.name).cast(field.type)
        if pa.types.is_string(field.type):
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        arrays.append(values)
    return pa.record_batch(arrays, schema=schema)


def write_changes(
    outgoing: Path,
    columns: list[OutgoingColumn],
    key: list[str],
    accepted: pa.Table,
    location: str,
    path: Path,
) -> int:
    """Write the rows to send to the Parquet file ``path`` and return how many there are:
    every outgoing row whose key is new (I) or whose digest differs from the accepted one (U),
    and a soft delete (D) for every accepted key that is gone, in row-number order. Columns:
    ``_row_no, _op, _key, _digest`` and the outgoing columns (only the key on D rows).

    DuckDB works under ``CHANGES_MEMORY`` and spills beside ``path`` beyond it, so a first
    delivery of a whole county is diffed in bounded memory."""
    spill = path.parent / f"{path.name}.spill"
    con = duckdb.connect(config={"memory_limit": CHANGES_MEMORY, "temp_directory": str(spill)})
    try:
        con.register("accepted", accepted)
        source = f"read_parquet('{_literal(outgoing)}')"
        nulls = con.execute(
            f"SELECT count(*) FROM {source} WHERE " + " OR ".join(f"{_q(k)} IS NULL" for k in key)
        ).fetchall()[0][0]
        if nulls:
            raise UplinkError(location, f"{nulls} rows have a null key {key}")
        keys = ", ".join(_q(k) for k in key)
        dupes = con.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source} GROUP BY {keys} HAVING count(*) > 1)"
        ).fetchall()[0][0]
        if dupes:
            raise UplinkError(location, f"the key {key} is not unique ({dupes} keys repeat)")
        names = [c.name for c in columns]
        key_json = "to_json([" + ", ".join(f"CAST({_q(k)} AS VARCHAR)" for k in key) + "])"
        row_json = "to_json(struct_pack(" + ", ".join(f"{_q(n)} := {_q(n)}" for n in names) + "))"
        types = {c.name: DUCKDB_TYPES[c.type] for c in columns}
        gone = ", ".join(
            f"CAST(json_extract_string(a.row_key, '$[{i}]') AS {types[k]}) AS {_q(k)}"
            for i, k in enumerate(key)
        )
        cols = ", ".join(f"o.{_q(n)}" for n in names)
        return con.execute(
            f"""
            COPY (
                WITH outgoing AS (
                    SELECT *, CAST({key_json} AS VARCHAR) AS _key,
                           md5(CAST({row_json} AS VARCHAR)) AS _digest
                    FROM {source}
                ),
                diff AS (
                    SELECT CASE WHEN a.row_key IS NULL THEN 'I' ELSE 'U' END AS _op,
                           o._key, o._digest, {cols}
                    FROM outgoing o LEFT JOIN accepted a ON a.row_key = o._key
                    WHERE a.digest IS DISTINCT FROM o._digest
                    UNION ALL BY NAME
                    SELECT 'D' AS _op, a.row_key AS _key, CAST(NULL AS VARCHAR) AS _digest, {gone}
                    FROM accepted a ANTI JOIN outgoing o ON o._key = a.row_key
                )
                SELECT CAST(row_number() OVER (ORDER BY _key) AS BIGINT) AS _row_no,
                       _op, _key, _digest, {", ".join(_q(n) for n in names)}
                FROM diff ORDER BY _row_no
            ) TO '{_literal(path)}' (FORMAT parquet)
            """
        ).fetchall()[0][0]
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")
