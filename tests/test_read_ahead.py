"""The pipeline reads a source one batch ahead in a thread, and writes the landed rows in worker
threads: order, errors and closing must be as if it did both in the caller's thread."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from etl.sources.base import Chunk, read_ahead


def _chunks(n: int, log: list, fail_at: int | None = None):
    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"page {i} is garbage")
            log.append(("made", i, threading.current_thread().name))
            yield Chunk(pa.record_batch({"i": [i]}), "t", i + 1)
    finally:
        log.append(("closed",))


def test_chunks_arrive_in_order_from_another_thread():
    log: list = []
    got = [c.batch["i"][0].as_py() for c in read_ahead(_chunks(20, log))]
    assert got == list(range(20))
    assert {entry[2] for entry in log if entry[0] == "made"} == {"source-read-ahead"}
    assert log[-1] == ("closed",)


def test_the_source_error_is_raised_in_the_caller_after_the_good_chunks():
    log: list = []
    got = []
    with pytest.raises(ValueError, match="page 3 is garbage"):
        for chunk in read_ahead(_chunks(10, log, fail_at=3)):
            got.append(chunk.first_row)
    assert got == [1, 2, 3]
    assert log[-1] == ("closed",)


def test_stopping_early_closes_the_source_and_reads_at_most_depth_ahead():
    log: list = []
    ahead = read_ahead(_chunks(1000, log), depth=2)
    assert next(ahead).first_row == 1
    ahead.close()
    made = [entry for entry in log if entry[0] == "made"]
    assert len(made) <= 1 + 2 + 1  # the one taken, the queue, and one waiting to be queued
    assert log[-1] == ("closed",)


def test_a_window_lands_in_one_file_per_lane_every_row_once(tmp_path, monkeypatch):
    """Batches take turns between the lanes' files, each file rotating at ROWS_PER_FILE; a
    window of one batch is one file."""
    import pyarrow.parquet as pq

    from etl import extract

    schema = pa.schema([("i", pa.int64())])
    one = tmp_path / "one"
    one.mkdir()
    files = extract.LakeFiles(one, schema)
    files.write(pa.record_batch({"i": [0, 1]}, schema=schema))
    files.close()
    assert [p.name for p in one.iterdir()] == ["data-00000.parquet"]

    monkeypatch.setattr(extract, "ROWS_PER_FILE", 30)
    many = tmp_path / "many"
    many.mkdir()
    files = extract.LakeFiles(many, schema)
    for start in range(0, 100, 10):
        files.write(pa.record_batch({"i": list(range(start, start + 10))}, schema=schema))
    files.close()
    landed = {p.name: pq.read_table(p)["i"].to_pylist() for p in sorted(many.iterdir())}
    # lanes take batches 0, 2, 4, ... and 1, 3, 5, ...; each file holds at most 30 rows
    assert len(landed) == 4 and all(len(rows) <= 30 for rows in landed.values()), landed
    assert sorted(i for rows in landed.values() for i in rows) == list(range(100))
    assert files.rows == 100
