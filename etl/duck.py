"""One in-memory DuckDB instance per process, shared by everything that needs DuckDB.

Starting a DuckDB instance costs 20-35 ms, and every ``duckdb.connect()`` starts one: the ledger
alone opened its file fourteen times per dataset run, which made a night with nothing new cost
seconds of fixed work. A connection on a shared instance costs nothing, and attaching a state
file to it about 2 ms; DETACH releases the file's lock for other processes as closing did.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

_guard = threading.RLock()
_instance: tuple[int, duckdb.DuckDBPyConnection] | None = None
_attached: dict[str, dict] = {}  # resolved path -> {"alias", "read_only", "users"}
_aliases = itertools.count()
_inherited: list[duckdb.DuckDBPyConnection] = []  # a forked parent's: never closed, see scratch


def scratch() -> duckdb.DuckDBPyConnection:
    """A new connection on this process's in-memory instance; close it when done.

    A forked child (Airflow's and Celery's workers) gets an instance of its own: DuckDB's
    threads do not survive a fork. The parent's is kept, not closed: closing it would wait for
    threads that exist only in the parent."""
    global _instance
    with _guard:
        if _instance is None or _instance[0] != os.getpid():
            if _instance is not None:
                _inherited.append(_instance[1])
            _instance = (os.getpid(), duckdb.connect())
            _attached.clear()
        return _instance[1].cursor()


@contextmanager
def attached(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection whose default database is the DuckDB file at ``path`` for the block.

    Raises ``duckdb.IOException`` when another process holds the file's write lock. Nested
    blocks on the same file share one attachment; it is detached when the outermost ends."""
    key = str(Path(path).resolve())
    con = scratch()
    with _guard:
        entry = _attached.get(key)
        if entry is None:
            alias = f"state_{next(_aliases)}"
            mode = " (READ_ONLY)" if read_only else ""
            try:
                con.execute(f"ATTACH '{_literal(key)}' AS {alias}{mode}")
            except BaseException:
                con.close()
                raise
            entry = _attached[key] = {"alias": alias, "read_only": read_only, "users": 0}
        elif entry["read_only"] and not read_only:
            con.close()
            raise RuntimeError(f"{key} is attached read-only by an enclosing block")
        entry["users"] += 1
    try:
        con.execute(f"USE {entry['alias']}")
        yield con
    finally:
        con.close()
        with _guard:
            entry["users"] -= 1
            if entry["users"] == 0:
                del _attached[key]
                with scratch() as detacher:
                    detacher.execute(f"DETACH {entry['alias']}")


def insert_rows(con: duckdb.DuckDBPyConnection, insert: str, rows: list[dict]) -> None:
    """``insert`` (``INSERT [OR REPLACE] INTO <table>``) the rows, named by column, as one
    Arrow relation: DuckDB's executemany runs a statement per row, about a millisecond each
    (most of a window's commit when it has dozens of rule results)."""
    if not rows:
        return
    import pyarrow as pa

    columns = ", ".join(rows[0])
    con.register("incoming_rows", pa.Table.from_pylist(rows))
    try:
        con.execute(f"{insert} ({columns}) SELECT {columns} FROM incoming_rows")
    finally:
        con.unregister("incoming_rows")


def _literal(text: str) -> str:
    return text.replace("'", "''")
