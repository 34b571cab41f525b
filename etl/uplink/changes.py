"""The outgoing rows of a resource and what changed since the exchange's last accepted snapshot.

The rows are read from the warehouse file read-only (``duckdb.connect(..., read_only=True)``),
cast to the contract's types, masked for the exchange (``masks``), empty strings turned into
nulls (a CSV cannot tell them apart), and given a key (JSON of the key values) and a digest
(MD5 of the whole outgoing row). Compared with the accepted snapshot in the uplink ledger they
give the rows to send: I (new key), U (digest changed), D (key gone; sent as a soft delete).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from etl.contracts import ExchangeContract, ExchangeResource
from etl.errors import CountylakeError
from etl.uplink.masks import OutgoingColumn, mask_function, outgoing_columns
from etl.validate import ARROW_TYPES
from etl.validate import SQL_TYPES as DUCKDB_TYPES

# Rows per Arrow record batch wherever the uplinks turn rows into Python values (masks, the
# rows checksum, database inserts): Python objects exist for one batch at a time, never for a
# whole resource or package.
BATCH_ROWS = 50_000


class UplinkError(CountylakeError):
    """A resource cannot be delivered: its source, package, transport or receipt is wrong."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_outgoing(
    warehouse: Path,
    exchange: ExchangeContract,
    resource: ExchangeResource,
    pseudonym_key: bytes | None,
) -> tuple[pa.Table, list[OutgoingColumn]]:
    """The resource's rows as they leave for ``exchange``: masked, typed, empty text as null."""
    columns = outgoing_columns(exchange, resource)
    where = f"{warehouse}: {resource.source}"
    if not warehouse.exists():
        raise UplinkError(str(warehouse), "no warehouse file yet (build the warehouse first)")
    select = []
    for c in columns:
        # a masked column is read as text; an unmasked one is cast to its contract type
        typ = "VARCHAR" if c.applied_mask != "none" else DUCKDB_TYPES[c.column.type]
        select.append(f"CAST({_q(c.name)} AS {typ}) AS {_q(c.name)}")
    schema, table = resource.source.split(".")
    sql = f"SELECT {', '.join(select)} FROM {_q(schema)}.{_q(table)}"
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:
        raise UplinkError(str(warehouse), f"cannot open the warehouse: {exc}") from exc
    try:
        data = con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
        raise UplinkError(where, f"cannot read the source: {reason}") from exc
    finally:
        con.close()
    arrays = []
    for c in columns:
        values = data.column(c.name)
        if c.applied_mask != "none":
            values = _masked(values, mask_function(c.applied_mask, pseudonym_key))
        values = values.cast(ARROW_TYPES[c.type])
        if pa.types.is_string(values.type):
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        arrays.append(values)
    return pa.table(arrays, names=[c.name for c in columns]), columns


def _masked(values: pa.ChunkedArray, mask) -> pa.ChunkedArray:
    """A column through a Python mask function, ``BATCH_ROWS`` values at a time (the masks are
    Python; a whole column of Python strings would cost more than the column itself)."""
    pieces = [
        pa.array([mask(v) for v in chunk.slice(start, BATCH_ROWS).to_pylist()], pa.string())
        for chunk in values.chunks
        for start in range(0, len(chunk), BATCH_ROWS)
    ]
    return pa.chunked_array(pieces, pa.string())


def changes(
    outgoing: pa.Table,
    columns: list[OutgoingColumn],
    key: list[str],
    accepted: pa.Table,
    location: str,
) -> pa.Table:
    """Rows to send: every outgoing row whose key is new (I) or whose digest differs from the
    accepted one (U), and a soft delete (D) for every accepted key that is gone. Columns:
    ``_row_no, _op, _key, _digest`` and the outgoing columns (only the key on D rows)."""
    con = duckdb.connect()
    try:
        con.register("outgoing_src", outgoing)
        con.register("accepted", accepted)
        names = [c.name for c in columns]
        key_json = "to_json([" + ", ".join(f"CAST({_q(k)} AS VARCHAR)" for k in key) + "])"
        row_json = "to_json(struct_pack(" + ", ".join(f"{_q(n)} := {_q(n)}" for n in names) + "))"
        con.execute(
            f"CREATE TEMP TABLE outgoing AS SELECT *, CAST({key_json} AS VARCHAR) AS _key, "
            f"md5(CAST({row_json} AS VARCHAR)) AS _digest FROM outgoing_src"
        )
        nulls = con.execute(
            "SELECT count(*) FROM outgoing WHERE " + " OR ".join(f"{_q(k)} IS NULL" for k in key)
        ).fetchall()[0][0]
        if nulls:
            raise UplinkError(location, f"{nulls} rows have a null key {key}")
        dupes = con.execute(
            "SELECT count(*) FROM (SELECT _key FROM outgoing GROUP BY _key HAVING count(*) > 1)"
        ).fetchall()[0][0]
        if dupes:
            raise UplinkError(location, f"the key {key} is not unique ({dupes} keys repeat)")
        types = {c.name: DUCKDB_TYPES[c.type] for c in columns}
        gone = ", ".join(
            f"CAST(json_extract_string(a.row_key, '$[{i}]') AS {types[k]}) AS {_q(k)}"
            for i, k in enumerate(key)
        )
        cols = ", ".join(f"o.{_q(n)}" for n in names)
        return con.sql(
            f"""
            WITH diff AS (
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
            """
        ).to_arrow_table()
    finally:
        con.close()
