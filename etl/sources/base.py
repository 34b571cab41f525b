"""What every source hands to the pipeline: record batches with where each row came from."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from etl.contracts import DatasetContract, SystemContract


@dataclass(frozen=True)
class Chunk:
    """Rows of one origin (a table, a file, an API page), columns named as at the source."""

    batch: pa.RecordBatch
    origin: str
    first_row: int = 1  # 1-based row number of batch row 0 within its origin (for messages)


@dataclass(frozen=True)
class ReadPlan:
    """What to read for one window. ``lower``/``upper`` bound the incremental column
    (lower exclusive for ids, inclusive for timestamps; upper inclusive for ids, exclusive for
    timestamps); ``files`` lists the export files (name, SHA-256) of new_files datasets."""

    lower: str | None = None
    upper: str | None = None
    files: tuple[tuple[str, str], ...] = ()  # (name, sha256) of the export files


@dataclass
class BadFile:
    """A whole file that could not be parsed: kept in quarantine with its error."""

    path: str
    error: str


@dataclass
class ReadReport:
    """Filled by a source while it streams: files it could not read, malformed lines, drift."""

    bad_files: list[BadFile] = field(default_factory=list)
    bad_lines: list[dict] = field(default_factory=list)
    extra_columns: set[str] = field(default_factory=set)
    missing_columns: set[str] = field(default_factory=set)
    source_types: dict[str, str] = field(default_factory=dict)  # column -> Arrow type at source
    encodings: dict[str, str] = field(default_factory=dict)  # file -> detected encoding


class Source(Protocol):
    system: SystemContract
    dataset: DatasetContract

    def describe(self) -> str:
        """Where the data comes from, without secrets (for messages and the manifest)."""

    def read(self, plan: ReadPlan, report: ReadReport) -> Iterator[Chunk]:
        """Stream the rows of the plan."""

    def probe(self, report: ReadReport) -> str:
        """Whether the next read would work, and what it would meet, in a few words; raises
        SourceError naming the problem."""


def missing_columns(dataset: DatasetContract, present: list[str]) -> list[str]:
    have = set(present)
    return [c.at_source for c in dataset.columns if c.at_source not in have]


def columns_to_read(
    dataset: DatasetContract, present: list[str], report: ReadReport
) -> tuple[list[str], str | None]:
    """Apply the contract's drift policy to the columns a source offers.

    Returns (columns to read, error). ``freeze`` accepts
    no added or removed column; ``discard_columns`` drops added columns (recorded in the
    report); ``evolve`` reads added columns too (they land in ``_extra``) and fills removed
    nullable columns with nulls. A removed required column is always an error.
    """
    policy = dataset.quality.drift
    wanted = [c.at_source for c in dataset.columns]
    added = [c for c in present if c not in set(wanted)]
    missing = missing_columns(dataset, present)
    required = {c.at_source for c in dataset.columns if not c.nullable}
    if policy == "freeze" and (added or missing):
        what = "; ".join(
            f"{label} {cols}" for label, cols in (("added", added), ("removed", missing)) if cols
        )
        return [], f"schema drift under policy freeze: {what}"
    if missing and (policy != "evolve" or set(missing) & required):
        return [], f"columns missing: {missing}"
    report.extra_columns.update(added)
    report.missing_columns.update(missing)
    keep = [c for c in wanted if c not in missing]
    return keep + (added if policy == "evolve" else []), None


_DONE = object()


def read_ahead(chunks: Iterator[Chunk], depth: int = 1) -> Iterator[Chunk]:
    """``chunks``, produced in a thread of their own while the caller works on the last one.

    The decoders (ADBC, connectorx, pyarrow's CSV reader) release the GIL, so on two cores the
    source decodes the next batch while this one is validated. At most ``depth`` chunks wait,
    which bounds memory; the source's error is raised here, where it would have been; closing
    this generator stops the reading thread and closes the source.
    """
    waiting: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not hand_over(chunk):
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over(exc)
            return
        finally:
            getattr(chunks, "close", lambda: None)()
        hand_over(_DONE)

    reader = threading.Thread(target=produce, name="source-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := waiting.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()
