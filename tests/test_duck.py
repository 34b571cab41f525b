"""The process's shared DuckDB instance: state files attached for a block must behave like the
short-lived connections they replaced (locks released, nesting, forked workers, new files)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest

from etl.duck import attached, scratch
from etl.ledger import Ledger


def _other_process_writes(path) -> subprocess.CompletedProcess:
    code = f"import duckdb; duckdb.connect({str(path)!r}).execute('CREATE TABLE t2 AS SELECT 1')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_the_file_lock_is_held_inside_the_block_and_released_after(tmp_path):
    path = tmp_path / "state.duckdb"
    with attached(path) as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS v")
        assert "lock" in _other_process_writes(path).stderr.lower()
    assert _other_process_writes(path).returncode == 0
    with attached(path, read_only=True) as con:
        assert con.execute("SELECT v FROM t").fetchall() == [(42,)]


def test_nested_blocks_share_one_attachment(tmp_path):
    path = tmp_path / "state.duckdb"
    with attached(path) as outer:
        outer.execute("CREATE TABLE t (v INTEGER)")
        with attached(path) as inner:
            inner.execute("INSERT INTO t VALUES (1)")
        outer.execute("INSERT INTO t VALUES (2)")
        assert outer.execute("SELECT sum(v) FROM t").fetchone() == (3,)
    with (
        attached(path, read_only=True),
        pytest.raises(RuntimeError, match="read-only"),
        attached(path),
    ):
        pass


def _write_in_child(path, queue) -> None:
    try:
        with attached(path) as con:
            con.execute("INSERT INTO t VALUES (7)")
        queue.put("ok")
    except BaseException as exc:  # reported to the parent
        queue.put(repr(exc))


def test_a_forked_worker_gets_an_instance_of_its_own(tmp_path):
    path = tmp_path / "state.duckdb"
    with attached(path) as con:
        con.execute("CREATE TABLE t (v INTEGER)")
    scratch().close()  # the parent's instance exists before the fork, as in Airflow's workers
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_write_in_child, args=(path, queue))
    child.start()
    child.join(60)
    assert queue.get(timeout=5) == "ok"
    with attached(path, read_only=True) as con:
        assert con.execute("SELECT v FROM t").fetchall() == [(7,)]


def test_a_ledger_file_removed_and_recreated_gets_its_schema_again(tmp_path):
    path = tmp_path / "ledger.duckdb"
    ledger = Ledger(path)
    assert ledger.watermark("s", "d") is None
    path.unlink()
    assert ledger.watermark("s", "d") is None  # no "table watermarks does not exist"
