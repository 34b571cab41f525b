"""Commit a staged extraction: publish its files into the lake atomically, write the manifest,
reconcile the counts, then advance the watermark in the ledger.

The lake layout is ``raw/<system>/<dataset>/load_date=<day>/window=<HHMM>/`` (Parquet, zstd)
with a ``_manifest.json`` per window, and the same under ``quarantine/`` for rejected rows and
unreadable files. Publishing a window replaces that window's folder whole, so a rerun gives the
same lake.

The lake's root is a local folder (the default) or an fsspec URL (``etl.lake``). Locally a
window is swapped in by renames (``publish``); an object store has no rename, so the window's
files are uploaded under their final names and the manifest is written last
(``publish_remote``, which says why that still gives one lake per rerun).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq

from etl import lake
from etl.contracts import find_dataset, load_profile
from etl.errors import ReconciliationError
from etl.extract import Staged
from etl.ledger import Ledger
from etl.settings import Paths, paths
from etl.snapshot import state_dir, state_name
from etl.validate import lake_schema


def window_key(zone: str, staged: Staged, tz: str) -> str:
    """``<zone>/<system>/<dataset>/load_date=<day>/window=<HHMM>``, relative to the lake root."""
    start = datetime.fromisoformat(staged.window_start).astimezone(ZoneInfo(tz))
    return f"{zone}/{staged.system}/{staged.dataset}/load_date={start:%Y-%m-%d}/window={start:%H%M}"


def partition(where: Paths, zone: str, staged: Staged, tz: str) -> Path:
    """The window's folder in the local lake."""
    return where.lake / window_key(zone, staged, tz)


def file_entry(path: Path, root: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    entry = {
        "path": str(path.relative_to(root)),
        "bytes": path.stat().st_size,
        "sha256": digest.hexdigest(),
    }
    if path.suffix == ".parquet":
        entry["rows"] = pq.ParquetFile(path).metadata.num_rows
    return entry


def publish(files: list[Path], target: Path, manifest: dict | None) -> list[dict]:
    """Move files into ``target`` replacing whatever it held: build the new folder beside it,
    then swap it in with two renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(target.name + ".incoming")
    old = target.with_name(target.name + ".replaced")
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    fresh.mkdir()
    for f in files:
        shutil.move(f, fresh / f.name)
    entries = [file_entry(p, fresh) for p in sorted(fresh.rglob("*")) if p.is_file()]
    if manifest is not None:
        manifest["files"] = entries
        (fresh / "_manifest.json").write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return entries


def publish_remote(files: list[Path], fs, target: str, manifest: dict | None) -> list[dict]:
    """Publish a window's staged files under ``target`` on an object store, replacing what it
    held, with the manifest as the commit marker.

    An object store has no rename and no folder to swap, so the local two-rename swap cannot be
    copied. What keeps the promises instead:

    1. the window's old ``_manifest.json`` is deleted first: from here until step 4 the window
       is visibly uncommitted (no manifest), and the ledger only records it as landed after
       step 4;
    2. every file is uploaded under its final key, one PUT each. Names are deterministic
       (``data-00000.parquet``, ``quarantine-00000.parquet``, ``bad_files/<name>``), and a
       rerun of a window reads exactly the range it landed with, so a rerun overwrites the same
       objects: nothing is doubled, and each object is read whole, old or new, never torn;
    3. objects under ``target`` that the new set does not hold (a part of an earlier attempt
       that produced more files) are deleted, so the window holds exactly its manifest's files;
    4. the manifest, listing every object with its size and SHA-256, is written last.

    A crash between 1 and 4 leaves a window without a manifest and a failed attempt in the
    ledger; the rerun (same window, same range, same names) completes it. The files are staged
    locally, so their checksums come from the local copies before upload."""
    pairs = lake.local_files(files)
    root = files[0].parent if files else None
    entries = []
    for local, name in pairs:
        entry = file_entry(local, root)
        entry["path"] = name
        entries.append(entry)
    marker = f"{target}/_manifest.json"
    if fs.exists(marker):
        fs.rm_file(marker)
    for local, name in pairs:
        lake.upload(fs, local, f"{target}/{name}")
    keep = {f"{target}/{name}" for _, name in pairs} | {marker}
    stale = [k for k in (fs.find(target) if fs.exists(target) else []) if k not in keep]
    if stale:
        fs.rm(stale)
    if manifest is not None:
        manifest["files"] = entries
        body = json.dumps(manifest, ensure_ascii=False, indent=2, default=str).encode("utf-8")
        fs.pipe_file(marker, body)
    return entries


def publish_window(
    where: Paths, key: str, files: list[Path], manifest: dict | None
) -> tuple[str, list[dict]]:
    """Publish ``files`` as the lake's ``key`` (a window folder); returns its location as
    readers name it and the manifest's file entries."""
    if not where.lake_remote:
        target = where.lake / key
        return str(target), publish(files, target, manifest)
    fs, root = lake.filesystem(where)
    return lake.location(where, key), publish_remote(files, fs, f"{root}/{key}", manifest)


def unpublish_window(where: Paths, key: str) -> None:
    """Remove a window folder (a rerun that no longer quarantines anything)."""
    if not where.lake_remote:
        shutil.rmtree(where.lake / key, ignore_errors=True)
        return
    fs, root = lake.filesystem(where)
    lake.remove_tree(fs, f"{root}/{key}")


def _newer(current: str | None, candidate: str | None, numeric: bool) -> str | None:
    """Watermarks never move back, even when an older window is rerun."""
    if candidate is None:
        return current
    if current is None:
        return candidate
    key = int if numeric else str
    return candidate if key(candidate) > key(current) else current


def commit(staged: Staged, where: Paths | None = None) -> dict:
    where = where or paths()
    system, dataset = find_dataset(staged.system, staged.dataset)
    tz = system.source_timezone or load_profile().timezone
    ledger = Ledger(where.ledger)
    accounted = staged.rows_landed + staged.rows_quarantined + staged.rows_unchanged
    try:
        if staged.rows_read != accounted:
            raise ReconciliationError(
                f"{staged.system}.{staged.dataset} attempt {staged.attempt_id}",
                f"rows read {staged.rows_read} != landed {staged.rows_landed} + quarantined "
                f"{staged.rows_quarantined} + unchanged {staged.rows_unchanged}",
            )
        schema = lake_schema(dataset)
        manifest = {
            "system": staged.system,
            "dataset": staged.dataset,
            "run_id": staged.run_id,
            "attempt_id": staged.attempt_id,
            "window": [staged.window_start, staged.window_end],
            "source": staged.source,
            "strategy": staged.strategy,
            "cursor": [staged.cursor_lower, staged.cursor_upper],
            "source_files": staged.source_files,
            "schema_fingerprint": hashlib.sha256(schema.to_string().encode()).hexdigest()[:16],
            "rows": {
                "read": staged.rows_read,
                "landed": staged.rows_landed,
                "quarantined": staged.rows_quarantined,
                "unchanged": staged.rows_unchanged,
                "deleted": staged.rows_deleted,
            },
            "extra_columns": staged.extra_columns,
            "drift": staged.drift,
            "quality": [r for r in staged.rule_results if r["failed"]],
            "committed_at": datetime.now(UTC).isoformat(),
        }
        raw, entries = publish_window(
            where,
            window_key("raw", staged, tz),
            sorted(staged.dir.glob("data-*.parquet")),
            manifest,
        )
        bad = sorted(staged.dir.glob("quarantine-*.parquet"))
        bad_files_dir = staged.dir / "bad_files"
        quarantined = bad + ([bad_files_dir] if bad_files_dir.exists() else [])
        quarantine_key = window_key("quarantine", staged, tz)
        if quarantined:
            publish_window(
                where, quarantine_key, quarantined, {**manifest, "bad_files": staged.bad_files}
            )
        else:
            unpublish_window(where, quarantine_key)
        state = staged.dir / "snapshot_state.parquet"
        if state.exists():
            target = state_dir(where, staged.system, staged.dataset)
            target.mkdir(parents=True, exist_ok=True)
            state.replace(target / state_name(staged.window_start))
        from etl.drift import remember
        from etl.quality import dataset_checks

        with ledger.session():  # one attachment for the watermark, the checks and the close
            numeric = staged.strategy == "append_id"
            current = ledger.watermark(staged.system, staged.dataset)
            mark = None
            if staged.strategy in ("watermark", "append_id"):
                mark = _newer(current, staged.cursor_upper, numeric)
            checks, newest = dataset_checks(ledger, staged, dataset, tz)
            data_files = [e for e in entries if e["path"].endswith(".parquet")]
            counts = {
                "rows_read": staged.rows_read,
                "rows_landed": staged.rows_landed,
                "rows_quarantined": staged.rows_quarantined,
                "rows_unchanged": staged.rows_unchanged,
                "rows_deleted": staged.rows_deleted,
                "files_read": len(staged.source_files),
                "files_quarantined": len(staged.bad_files),
                "files_written": len(data_files),
                "bytes": sum(e["bytes"] for e in data_files),
                "partition_path": str(raw),
                "error": "; ".join(f"{b['path']}: {b['error']}" for b in staged.bad_files) or None,
                "newest_data_at": newest,
                "verdict_of": staged.verdict_of,
            }
            ledger.land(
                staged.attempt_id,
                staged.system,
                staged.dataset,
                mark,
                datetime.fromisoformat(staged.window_start),
                datetime.fromisoformat(staged.window_end),
                [tuple(f) for f in staged.source_files],
                counts,
                staged.rule_results + checks,
                staged.drift,
            )
            if staged.source_signature.get("types"):
                remember(where, staged.system, staged.dataset, staged.source_signature)
    except Exception as exc:
        ledger.fail(staged.attempt_id, str(exc))
        raise
    finally:
        shutil.rmtree(staged.dir, ignore_errors=True)
    return {
        "system": staged.system,
        "dataset": staged.dataset,
        "attempt_id": staged.attempt_id,
        "window_start": staged.window_start,
        "seconds": staged.seconds,
        **{k: v for k, v in counts.items() if k.startswith(("rows", "files", "bytes"))},
        "partition": str(raw),
    }
