"""Snapshot datasets: compare this window's full extract with the previous window's snapshot
and keep only the changes (I inserted, U updated, D deleted at the source).

The state of a snapshot is its keys and a row digest, one small Parquet file per landed window
under ``state/snapshots``; the base of a window is the newest state of an earlier window, so a
rerun of a window compares with the same base and gives the same changes.

Most nights a register does not change. Where the database can digest its table (PostgreSQL,
MySQL: ``SqlSource.fingerprint``), the state also keeps the digest taken before its read; a
window whose digest is its base's reads nothing (``unchanged_at_source``). It keeps the verdict
of the read that made its base (``base_verdict``): the same rows judged the same way fail the
same rules, so its quarantine and rule results are that read's, as a full read would find.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from etl.contracts import DatasetContract, judging_digest
from etl.duck import scratch
from etl.settings import Paths
from etl.validate import lake_schema


def state_dir(where: Paths, system: str, dataset: str) -> Path:
    return where.state / "snapshots" / system / dataset


STATE_TIME = "%Y%m%dT%H%M%SZ"  # a state file's name: its window's start in UTC


def state_name(window_start: str) -> str:
    moment = datetime.fromisoformat(window_start).astimezone(UTC)
    return moment.strftime(f"{STATE_TIME}.parquet")


def base_state(where: Paths, system: str, dataset: str, window_start: str) -> Path | None:
    mine = state_name(window_start)
    earlier = sorted(
        p for p in state_dir(where, system, dataset).glob("*.parquet") if p.name < mine
    )
    return earlier[-1] if earlier else None


# the key of the source's fingerprint in a state file's Parquet metadata
FINGERPRINT_KEY = "source_fingerprint"


def base_verdict(where: Paths, ledger, staged) -> dict | None:
    """What the read that made this window's base state found: the state file, and from the
    ledger that read's attempt and window (``window_start``), its rows quarantined and its
    row-level rule results (the volume and freshness of a window are its own). None without
    a base or its landed attempt."""
    from etl.rules import DATASET_KINDS

    base = base_state(where, staged.system, staged.dataset, staged.window_start)
    if base is None:
        return None
    start = datetime.strptime(base.stem, STATE_TIME).replace(tzinfo=UTC)
    landed = ledger.landed_attempt(staged.system, staged.dataset, start)
    if landed is None:
        return None
    results = ledger.rule_results(landed["attempt_id"])
    return {
        "state": base,
        "attempt_id": landed["attempt_id"],
        "window_start": start.isoformat(),
        "rows_quarantined": landed["rows_quarantined"],
        "rule_results": [r for r in results if r["rule_id"] not in DATASET_KINDS],
    }


def unchanged_at_source(
    where: Paths, staged, source, dataset: DatasetContract, verdict: dict | None, tz: str
) -> bool:
    """Take the source's fingerprint for this window into ``staged`` (before the read, so that
    a change during the read makes the next one differ); True when it is the one the base
    state was read at: nothing to read. The register's rows count as read, and its base's
    ``verdict`` stands: the rows that read quarantined are quarantined again (their files
    copied into this window) and the rest are unchanged.

    The fingerprint covers how the rows are judged too (``judging_digest``): another contract,
    county profile or release may judge the same rows differently, so it reads them again. So
    does a base whose verdict or quarantined rows cannot be found."""
    taken = getattr(source, "fingerprint", lambda: None)()  # files and APIs have none
    if taken is None:
        return False
    rows, digest = taken
    staged.source_fingerprint = f"{judging_digest(dataset, JUDGING_CODE)}:{rows}:{digest}"
    if verdict is None or _fingerprint_of(verdict["state"]) != staged.source_fingerprint:
        return False
    if not _copy_quarantine(where, staged, verdict, tz):
        return False
    staged.rows_read = rows
    staged.rows_quarantined = verdict["rows_quarantined"]
    staged.rows_unchanged = rows - staged.rows_quarantined
    staged.rule_results = verdict["rule_results"]
    staged.verdict_of = verdict["attempt_id"]
    return True


def _copy_quarantine(where: Paths, staged, verdict: dict, tz: str) -> bool:
    """The base window's quarantined rows into this window's staging (from the local lake or
    the object store); False when they are not all there."""
    import pyarrow.parquet as pq

    from etl import lake
    from etl.land import window_key

    if not verdict["rows_quarantined"]:
        return True
    fs, root = lake.filesystem(where)
    base = dataclasses.replace(staged, window_start=verdict["window_start"])
    found = sorted(fs.glob(f"{root}/{window_key('quarantine', base, tz)}/quarantine-*.parquet"))
    copied = [staged.dir / PurePosixPath(path).name for path in found]
    for path, local in zip(found, copied, strict=True):
        fs.get_file(path, str(local))
    if sum(pq.ParquetFile(f).metadata.num_rows for f in copied) == verdict["rows_quarantined"]:
        return True
    for local in copied:
        local.unlink()
    return False


# what judges a row besides its contract: the validator and the standards it applies
JUDGING_CODE = ("validate.py", "rules.py", "standards/*.py")


def _fingerprint_of(state: Path) -> str | None:
    import pyarrow.parquet as pq

    found = (pq.read_metadata(state).metadata or {}).get(FINGERPRINT_KEY.encode())
    return found.decode() if found else None


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
        fingerprint = (
            f", KV_METADATA {{{FINGERPRINT_KEY}: '{staged.source_fingerprint}'}}"
            if staged.source_fingerprint
            else ""
        )
        con.execute(
            f"COPY (SELECT {', '.join(keys)}, _digest FROM cur) TO "
            f"{_lit(staged.dir / 'snapshot_state.parquet')} (FORMAT parquet{fingerprint})"
        )
    finally:
        con.close()
    for path in full:
        path.unlink()
    changes.rename(staged.dir / "data-00000.parquet")
    staged.rows_landed, staged.rows_deleted = counts
    staged.rows_unchanged = staged.rows_good - staged.rows_landed
