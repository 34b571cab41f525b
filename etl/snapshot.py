"""Snapshot datasets: compare this window's full extract with the previous window's snapshot
and keep only the changes (I inserted, U updated, D deleted at the source).

The state of a snapshot is its keys and a row digest, one small Parquet file per landed window
under ``state/snapshots``; the base of a window is the newest state of an earlier window, so a
rerun of a window compares with the same base and gives the same changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from etl.contracts import DatasetContract
from etl.duck import scratch
from etl.settings import Paths
from etl.validate import lake_schema


def state_dir(where: Paths, system: str, dataset: str) -> Path:
    return where.state / "snapshots" / system / dataset


def state_name(window_start: str) -> str:
    moment = datetime.fromisoformat(window_start).astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ.parquet")


def base_state(where: Paths, system: str, dataset: str, window_start: str) -> Path | None:
    mine = state_name(window_start)
    earlier = sorted(
        p for p in state_dir(where, system, dataset).glob("*.parquet") if p.name < mine
    )
    return earlier[-1] if earlier else None


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def diff_with_previous(where: Paths, staged, dataset: DatasetContract) -> None:
    """Replace the staged full snapshot by its changes; stage the new state beside them."""
    full = sorted(staged.dir.glob("data-*.parquet"))
    keys = [f'"{k}"' for k in dataset.primary_key]
    cols = [f'"{c}"' for c in dataset.column_names]
    digest = (
        "md5(concat_ws('\x1f', "
        + ", ".join(f"coalesce(CAST({c} AS VARCHAR), '\x00')" for c in cols)
        + "))"
    )
    on = " AND ".join(f"cur.{k} = base.{k}" for k in keys)
    con = scratch()
    try:
        con.register("nothing", lake_schema(dataset).empty_table())
        files = "[" + ", ".join(_lit(p) for p in full) + "]"
        current = f"read_parquet({files})" if full else "nothing"
        con.execute(f"CREATE TEMP TABLE cur AS SELECT *, {digest} AS _digest FROM {current}")
        base = base_state(where, staged.system, staged.dataset, staged.window_start)
        previous = (
            f"read_parquet({_lit(base)})"
            if base
            else f"(SELECT {', '.join(keys)}, _digest FROM cur WHERE false)"
        )
        con.execute(f"CREATE TEMP TABLE base AS SELECT * FROM {previous}")
        others = ", ".join(f"NULL AS {c}" if c not in keys else f"base.{c}" for c in cols)
        changes = staged.dir / "changes.parquet"
        con.execute(f"""
            COPY (
                SELECT {", ".join(f"cur.{c}" for c in cols)},
                       CASE WHEN base._digest IS NULL THEN 'I' ELSE 'U' END AS _op, cur._origin
                FROM cur LEFT JOIN base ON {on}
                WHERE base._digest IS DISTINCT FROM cur._digest
                UNION ALL
                SELECT {others}, 'D' AS _op, 'snapshot-compare' AS _origin
                FROM base ANTI JOIN cur ON {on}
            ) TO {_lit(changes)} (FORMAT parquet, COMPRESSION zstd)""")
        counts = con.execute(
            f"SELECT count(*) FILTER (WHERE _op <> 'D'), "
            f"count(*) FILTER (WHERE _op = 'D') "
            f"FROM read_parquet({_lit(changes)})"
        ).fetchone()
        con.execute(
            f"COPY (SELECT {', '.join(keys)}, _digest FROM cur) TO "
            f"{_lit(staged.dir / 'snapshot_state.parquet')} (FORMAT parquet)"
        )
    finally:
        con.close()
    for path in full:
        path.unlink()
    changes.rename(staged.dir / "data-00000.parquet")
    staged.rows_landed, staged.rows_deleted = counts
    staged.rows_unchanged = staged.rows_good - staged.rows_landed
