"""Extract one window of one dataset: plan what to read, stream it through validation, and
stage Parquet files (good rows and quarantined rows) for ``etl.land`` to commit.

How a window's range is chosen, so that reruns and catch-ups neither double nor lose rows:

- a window that already landed is read again with the range it landed with;
- otherwise ``watermark`` reads [last committed watermark, window end), the whole table the
  first time; ``append_id`` reads ids above the last committed id up to the current maximum;
  ``new_files`` reads files whose (name, SHA-256) was never landed; ``snapshot`` reads the whole
  table and compares it with the snapshot of the previous window to find inserts, updates and
  deletes, unless the database's digest of the table says it did not change (etl.snapshot).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from etl.contracts import DatasetContract, find_dataset, load_profile
from etl.errors import CountylakeError
from etl.ledger import Ledger
from etl.settings import Paths, paths
from etl.sources import ReadPlan, ReadReport, open_source
from etl.sources.base import read_ahead
from etl.validate import Validator, lake_schema

OP_BY_STRATEGY = {"watermark": "U", "append_id": "I", "new_files": "I", "snapshot": None}
ROWS_PER_FILE = 8_000_000


@dataclass
class Staged:
    """What an extraction staged; passed (as a dict) from the extract task to the commit task."""

    system: str
    dataset: str
    run_id: str
    attempt_id: str
    window_start: str
    window_end: str
    staging_dir: str
    source: str
    strategy: str
    cursor_lower: str | None
    cursor_upper: str | None
    source_files: list[tuple[str, str]] = field(default_factory=list)
    bad_files: list[dict] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    rule_results: list[dict] = field(default_factory=list)
    newest_data_at: str | None = None
    drift: list[dict] = field(default_factory=list)
    source_signature: dict = field(default_factory=dict)
    source_fingerprint: str | None = None  # a snapshot's source digest (etl.snapshot)
    verdict_of: str | None = None  # the attempt whose verdict an unchanged register kept
    rows_read: int = 0
    rows_good: int = 0
    rows_quarantined: int = 0
    rows_landed: int = 0
    rows_unchanged: int = 0
    rows_deleted: int = 0
    seconds: float = 0.0

    @property
    def dir(self) -> Path:
        return Path(self.staging_dir)


def local_text(moment: datetime, tz: str) -> str:
    """A window bound as the naive local wall-clock text department databases compare with."""
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class LedgerView:
    """What the ledger knows of a dataset when a window is planned: the attempt that already
    landed this window (a rerun), the committed watermark and the export files already taken."""

    prior: dict | None
    mark: str | None
    seen: set

    @classmethod
    def read(cls, ledger: Ledger, system: str, dataset: DatasetContract, start: datetime):
        files = dataset.incremental.strategy == "new_files"
        return cls(
            ledger.landed_attempt(system, dataset.dataset, start),
            ledger.watermark(system, dataset.dataset),
            ledger.seen_files(system, dataset.dataset) if files else set(),
        )


def plan_window(
    dataset: DatasetContract, source, known: LedgerView, end: datetime, tz: str
) -> ReadPlan | None:
    """The range to read for this window; None when there is nothing to read."""
    strategy = dataset.incremental.strategy
    prior, mark, seen = known.prior, known.mark, known.seen
    if prior is not None:  # a rerun reads exactly what the landed attempt read
        if strategy == "append_id" and prior["upper"] is None:
            return None  # it found no new id: an unbounded range would be the whole table
        files = tuple((name, sha) for name, sha in prior["files"])
        return ReadPlan(prior["lower"], prior["upper"], files)
    if strategy == "watermark":
        upper = local_text(end, tz)
        return ReadPlan(mark, upper) if mark is None or mark < upper else None
    if strategy == "append_id":
        top = source.max_value(dataset.incremental.column)
        if top is None or (mark is not None and int(top) <= int(mark)):
            return None
        return ReadPlan(mark, top)
    if strategy == "new_files":
        new = [(n, s) for n, s in source.list_files() if (n, s) not in seen]
        return ReadPlan(files=tuple(new)) if new else None
    return ReadPlan()


def extract(
    system_name: str,
    dataset_name: str,
    window_start: str,
    window_end: str,
    run_id: str,
    where: Paths | None = None,
) -> Staged:
    where = where or paths()
    system, dataset = find_dataset(system_name, dataset_name)
    tz = system.source_timezone or load_profile().timezone
    start, end = datetime.fromisoformat(window_start), datetime.fromisoformat(window_end)
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise CountylakeError(
            f"{system_name}.{dataset_name}",
            f"window [{window_start}, {window_end}) must be aware and non-empty",
        )
    ledger = Ledger(where.ledger)
    attempt_id = uuid.uuid4().hex[:16]
    source = open_source(system, dataset, where)
    described = source.describe()
    staging = where.staging / system.system / dataset.dataset / attempt_id
    staged = Staged(
        system.system,
        dataset.dataset,
        run_id,
        attempt_id,
        window_start,
        window_end,
        str(staging),
        described,
        dataset.incremental.strategy,
        None,
        None,
    )
    snapshot = dataset.incremental.strategy == "snapshot"
    if snapshot:
        from etl.snapshot import base_verdict, diff_with_previous, unchanged_at_source
    # One attachment of the ledger for the attempt's start and what the planning needs from
    # it, before the source is asked anything (each attachment reads the file afresh).
    with ledger.session():
        ledger.start(attempt_id, run_id, system.system, dataset.dataset, start, end, described)
        try:
            known = LedgerView.read(ledger, system.system, dataset, start)
            verdict = base_verdict(where, ledger, staged) if snapshot else None
        except Exception as exc:
            ledger.fail(attempt_id, str(exc))
            raise
    began = time.perf_counter()
    try:
        staging.mkdir(parents=True, exist_ok=True)
        plan = plan_window(dataset, source, known, end, tz)
        unchanged = (
            plan is not None
            and snapshot
            and unchanged_at_source(where, staged, source, dataset, verdict, tz)
        )
        if unchanged:
            plan = None
        if plan is not None:
            staged.cursor_lower, staged.cursor_upper = plan.lower, plan.upper
            staged.source_files = list(plan.files)
            _stream(source, dataset, plan, staged, where)
            if snapshot:
                diff_with_previous(where, staged, dataset)
            else:
                staged.rows_landed = staged.rows_good
        staged.seconds = round(time.perf_counter() - began, 3)
        (staging / "staged.json").write_text(json.dumps(asdict(staged), ensure_ascii=False))
        ledger.update(
            attempt_id,
            status="staged",
            rows_read=staged.rows_read,
            cursor_lower=staged.cursor_lower,
            cursor_upper=staged.cursor_upper,
            source_files=staged.source_files,
        )
    except Exception as exc:
        ledger.fail(attempt_id, str(exc))
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staged


def _stream(source, dataset: DatasetContract, plan: ReadPlan, staged: Staged, where: Paths) -> None:
    """Source -> validation -> staged Parquet, one record batch at a time."""
    report = ReadReport()
    validator = Validator(dataset)
    schema = lake_schema(dataset)
    op = OP_BY_STRATEGY[dataset.incremental.strategy]
    bad_writer = None
    landed = LakeFiles(staged.dir, schema)
    try:
        for chunk in read_ahead(source.read(plan, report)):
            staged.rows_read += chunk.batch.num_rows
            for f in chunk.batch.schema:
                report.source_types.setdefault(f.name, str(f.type))
            checked = validator.check(chunk)
            if checked.good.num_rows:
                landed.write(_with_op(checked.good, schema, op))
                staged.rows_good += checked.good.num_rows
            if checked.bad is not None:
                bad_writer = bad_writer or _quarantine_writer(staged, validator)
                bad_writer.write_batch(checked.bad)
                staged.rows_quarantined += checked.bad.num_rows
        if report.bad_lines:
            bad_writer = bad_writer or _quarantine_writer(staged, validator)
            bad_writer.write_batch(validator.malformed_lines(report.bad_lines))
            staged.rows_read += len(report.bad_lines)
            staged.rows_quarantined += len(report.bad_lines)
    finally:
        try:
            landed.close()
        finally:
            if bad_writer:
                bad_writer.close()
            validator.close()
    staged.rule_results = validator.tally.as_results(validator.rules)
    if validator.newest is not None:
        staged.newest_data_at = validator.newest.isoformat()
    if report.bad_files:
        keep = staged.dir / "bad_files"
        keep.mkdir()
        for bad in report.bad_files:
            shutil.copy2(bad.path, keep / Path(bad.path).name)
            (keep / f"{Path(bad.path).name}.error.txt").write_text(bad.error + "\n")
        staged.bad_files = [{"path": b.path, "error": b.error} for b in report.bad_files]
    staged.extra_columns = sorted(report.extra_columns)
    from etl.drift import detect, signature

    staged.drift = detect(where, staged.system, dataset, report)
    staged.source_signature = signature(report)


class BackgroundWrites:
    """Parquet encoding and compression release the GIL, so the landed rows of one batch are
    written in a worker thread while the next batch is validated. At most ``depth`` writes
    wait, which bounds memory; the first error is raised in the caller."""

    def __init__(self, depth: int = 2):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet-writer")
        self._pending: deque[Future] = deque()
        self.depth = depth

    def submit(self, fn, *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > self.depth:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(cancel_futures=True)


class LakeFiles:
    """The landed rows of one window as zstd Parquet files ``data-NNNNN.parquet`` of at most
    ``ROWS_PER_FILE`` rows. Batches take turns between ``LANES`` files written at once, each in
    a worker thread of its own (``BackgroundWrites``): one pyarrow writer encodes and compresses
    on one CPU, so a large window lands on all of them (a window of one batch is one file)."""

    LANES = 2

    def __init__(self, directory: Path, schema: pa.Schema):
        self.directory, self.schema = directory, schema
        self.rows = 0
        self._files = 0
        self._turn = 0
        # per lane: [writer, rows in its file, its worker]
        self._lanes: list[list] = [[None, 0, BackgroundWrites(depth=1)] for _ in range(self.LANES)]

    def write(self, batch: pa.RecordBatch) -> None:
        lane = self._lanes[self._turn]
        self._turn = (self._turn + 1) % self.LANES
        writer, rows, writes = lane
        if writer is None or rows >= ROWS_PER_FILE:
            if writer:
                writes.submit(writer.close)
            # Dictionary pages cost half the write time and zstd already folds repeats; keep
            # them only for the constant metadata columns.
            writer = pq.ParquetWriter(
                self.directory / f"data-{self._files:05d}.parquet",
                self.schema,
                compression="zstd",
                use_dictionary=["_op", "_origin"],
            )
            self._files += 1
            lane[0], lane[1] = writer, 0
        writes.submit(writer.write_batch, batch)
        lane[1] += batch.num_rows
        self.rows += batch.num_rows

    def close(self) -> None:
        with ExitStack() as stack:  # every lane drained and closed, whatever fails first
            for writer, _rows, writes in self._lanes:
                if writer:
                    stack.callback(writer.close)
                stack.callback(writes.close)  # callbacks run last-in first: drained, then closed


def _quarantine_writer(staged: Staged, validator: Validator) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        staged.dir / "quarantine-00000.parquet", validator.quarantine_schema, compression="zstd"
    )


def _with_op(good: pa.RecordBatch, schema: pa.Schema, op: str | None) -> pa.RecordBatch:
    columns = list(good.columns)
    op_array = pa.nulls(good.num_rows, pa.string())
    if op:
        op_array = op_array.fill_null(op)
    columns.insert(schema.get_field_index("_op"), op_array)
    return pa.RecordBatch.from_arrays(columns, schema=schema)
