"""Conform source batches to their contract and split good rows from bad ones.

Each chunk is typed with DuckDB (``TRY_CAST``, so one bad cell costs one row, never the file)
and checked against the contract's blocking rules in the same vectorised query. Rows that fail
keep their original values and the ids of the rules they broke, for quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from etl.contracts import Column, DatasetContract
from etl.sources.base import Chunk

ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "decimal": pa.decimal128(18, 2),
}
SQL_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "decimal": "DECIMAL(18,2)",
}
META_FIELDS = [pa.field("_op", pa.string()), pa.field("_origin", pa.string())]


def lake_schema(dataset: DatasetContract) -> pa.Schema:
    """The Parquet schema of a landed dataset: contract columns plus change flag and origin."""
    # All nullable: a delete marker carries only its key (non-null rules are checked, not typed).
    fields = [pa.field(c.name, ARROW_TYPES[c.type]) for c in dataset.columns]
    return pa.schema(fields + META_FIELDS)


def quarantine_schema(dataset: DatasetContract) -> pa.Schema:
    """Quarantined rows keep every source value as text, with the rules they broke."""
    fields = [pa.field(c.at_source, pa.string()) for c in dataset.columns]
    extra = [
        pa.field("_reasons", pa.list_(pa.string())),
        pa.field("_origin", pa.string()),
        pa.field("_row", pa.int64()),
        pa.field("_raw", pa.string()),
    ]
    return pa.schema([*fields, *extra])


@dataclass
class Checked:
    good: pa.RecordBatch  # lake schema without _op
    bad: pa.RecordBatch | None  # quarantine schema


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_sql(column: Column, source_type: pa.DataType) -> tuple[str, str]:
    """(typed expression, 'present at source' expression) for one column."""
    src = _q(column.at_source)
    is_text = pa.types.is_string(source_type) or pa.types.is_large_string(source_type)
    present = f"NULLIF(TRIM({src}), '') IS NOT NULL" if is_text else f"{src} IS NOT NULL"
    cleaned = f"NULLIF(TRIM({src}), '')" if is_text else src
    target = SQL_TYPES[column.type]
    if column.type == "string":
        typed = cleaned if is_text else f"CAST({src} AS VARCHAR)"
    elif source_type == ARROW_TYPES[column.type]:
        typed = src
    elif column.type == "date" and is_text:
        typed = (
            f"COALESCE(TRY_CAST({cleaned} AS DATE), CAST(TRY_CAST({cleaned} AS TIMESTAMP) AS DATE))"
        )
    else:
        typed = f"TRY_CAST({cleaned} AS {target})"
    return typed, present


def _check_sql(dataset: DatasetContract, schema: pa.Schema) -> str:
    selects, reasons = [], []
    for column in dataset.columns:
        typed, present = _column_sql(column, schema.field(column.at_source).type)
        selects.append(f"{typed} AS {_q(column.name)}")
        reasons.append(f"CASE WHEN ({present}) AND ({typed}) IS NULL THEN 'type:{column.name}' END")
        if not column.nullable:
            reasons.append(f"CASE WHEN NOT ({present}) THEN 'not_null:{column.name}' END")
    rules = ", ".join(reasons)
    return (
        f"SELECT {', '.join(selects)}, "
        f"CAST(? AS VARCHAR) AS _origin, "
        f"list_filter([{rules}], lambda r: r IS NOT NULL) AS _reasons FROM chunk"
    )


class Validator:
    """Checks chunks of one dataset; keeps one in-memory DuckDB connection for the run."""

    def __init__(self, dataset: DatasetContract):
        self.dataset = dataset
        self.schema = lake_schema(dataset)
        self.quarantine_schema = quarantine_schema(dataset)
        self._con = duckdb.connect(config={"threads": 2})
        self._sql_by_schema: dict[pa.Schema, str] = {}

    def check(self, chunk: Chunk) -> Checked:
        batch = chunk.batch
        sql = self._sql_by_schema.get(batch.schema)
        if sql is None:
            sql = self._sql_by_schema[batch.schema] = _check_sql(self.dataset, batch.schema)
        self._con.register("chunk", batch)
        result = self._con.sql(sql, params=[chunk.origin]).to_arrow_table()
        self._con.unregister("chunk")
        ok = pc.equal(pc.list_value_length(result["_reasons"]), 0)
        good = result.filter(ok).drop_columns(["_reasons"])
        good = good.cast(self.schema.remove(self.schema.get_field_index("_op")))
        bad = None
        if good.num_rows < batch.num_rows:
            bad_index = pc.indices_nonzero(pc.invert(ok))
            bad = self._quarantine_rows(chunk, bad_index, result["_reasons"].take(bad_index))
        return Checked(_one_batch(good), bad)

    def _quarantine_rows(
        self, chunk: Chunk, index: pa.Array, reasons: pa.ChunkedArray
    ) -> pa.RecordBatch:
        taken = chunk.batch.take(index)
        n = len(index)
        columns = {
            c.at_source: pc.cast(taken.column(c.at_source), pa.string())
            for c in self.dataset.columns
        }
        columns["_reasons"] = reasons.combine_chunks()
        columns["_origin"] = pc.fill_null(pa.nulls(n, pa.string()), chunk.origin)
        columns["_row"] = pc.add(index.cast(pa.int64()), chunk.first_row)
        columns["_raw"] = pa.nulls(n, pa.string())
        return pa.RecordBatch.from_pydict(columns, schema=self.quarantine_schema)

    def malformed_lines(self, lines: list[dict]) -> pa.RecordBatch:
        """Lines a CSV parser could not split into the declared fields."""
        n = len(lines)
        columns = {c.at_source: pa.nulls(n, pa.string()) for c in self.dataset.columns}
        columns["_reasons"] = pa.array([[line["reason"]] for line in lines], pa.list_(pa.string()))
        columns["_origin"] = pa.array([line["_origin"] for line in lines], pa.string())
        columns["_row"] = pa.array([line["_row"] for line in lines], pa.int64())
        columns["_raw"] = pa.array([line["_raw"] for line in lines], pa.string())
        return pa.RecordBatch.from_pydict(columns, schema=self.quarantine_schema)

    def close(self) -> None:
        self._con.close()


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
