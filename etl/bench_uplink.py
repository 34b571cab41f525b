"""Uplink memory benchmark: one large package through the 前置库 and the reference receivers.

``python -m etl.bench_uplink [--rows 1000000]`` makes a synthetic warehouse whose people mart
holds ``--rows`` people, and measures the first delivery of the ``people_basic`` resource of
the ``zibo`` exchange (every row an insert) step by step, each in a child process of its own,
whose peak is its own peak RSS (VmHWM, see ``etl.bench._own_peak_mb``):

- ``diff``: ``write_outgoing`` (the mart read, masked and typed) and ``write_changes`` (the
  diff against an empty accepted snapshot) into the change rows' Parquet file;
- ``build_parquet`` / ``build_csv``: ``build_package`` from those change rows, as the 前置库
  and the file package carry them;
- ``frontdb_send``: ``FrontDbTransport.send`` of the Parquet package into a 前置库 (a SQLite
  file in the work folder unless ``--frontdb`` names a database);
- ``frontdb_receive``: ``FrontDbReceiver.process``: the reference receiver reads the batch
  back, checks it and applies it to its store (SQLite) and writes the feedback;
- ``outbox_receive``: ``OutboxReceiver.process`` of the CSV package in an outbox folder.

The 前置库 steps use the resource with the contract's ``frontdb`` transport instead of its file
package. It prints rows, seconds and peak MB per step (and writes them as JSON with
``--json``). Nothing here touches the county's data root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SECRET = "bench-uplink-shared-secret-0123456789"
CREATED_AT = "2026-11-01T02:00:00+08:00"
FRONTDB_TABLE = "QZK_GQ_RKJCXX"


def _exchange():
    """The zibo exchange with ``people_basic`` alone, sent through the 前置库 transport."""
    from etl.contracts import find_exchange

    zibo = find_exchange("zibo")
    people = zibo.resource("people_basic")
    people = people.model_copy(update={"transport": "frontdb", "table": FRONTDB_TABLE})
    return zibo.model_copy(update={"resources": [people]}), people


def write_warehouse(path: Path, rows: int) -> None:
    """A warehouse file whose ``base.base_people`` holds ``rows`` people shaped like the mart
    the resource reads (made in DuckDB, so the parent stays small)."""
    import duckdb

    from etl.contracts import load_profile

    county = load_profile().code
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE SCHEMA base")
        con.execute(
            f"""
            CREATE TABLE base.base_people AS SELECT
                sha256(CAST(i AS VARCHAR)) AS person_key,
                '{county}********' || lpad(CAST(i % 10000 AS VARCHAR), 4, '0')
                    AS id_number_masked,
                '刘**' AS name_masked,
                CAST(i % 2 + 1 AS VARCHAR) AS sex,
                DATE '1940-01-01' + CAST(i * 37 % 30000 AS INTEGER) AS birth_date,
                '01' AS ethnicity,
                '{county}101' || lpad(CAST(i % 300 AS VARCHAR), 3, '0') AS village_code,
                '{county}101' AS town_code,
                '139****' || lpad(CAST(i % 10000 AS VARCHAR), 4, '0') AS phone_masked,
                '正常' AS register_status
            FROM range(1, {rows} + 1) t(i)
            """
        )
    finally:
        con.close()


# --------------------------------------------------------------------------- the children


def _clock(work) -> dict:
    """Run ``work()`` (returns the rows it handled); seconds and the peak before it started."""
    from etl.bench import _own_peak_mb

    baseline = _own_peak_mb()
    began = time.perf_counter()
    rows = work()
    return {"rows": rows, "seconds": time.perf_counter() - began, "baseline_mb": baseline}


def _diff(spec: dict) -> dict:
    import pyarrow as pa

    from etl.uplink.changes import write_changes, write_outgoing
    from etl.uplink.keys import pseudonym_key

    exchange, people = _exchange()
    outgoing = Path(spec["work"]) / "outgoing.parquet"
    nothing_accepted = pa.table(
        {"row_key": pa.array([], pa.string()), "digest": pa.array([], pa.string())}
    )

    def work() -> int:
        key = pseudonym_key(SECRET, exchange.exchange)
        columns = write_outgoing(Path(spec["warehouse"]), exchange, people, key, outgoing)
        changes = Path(spec["changes"])
        return write_changes(outgoing, columns, people.key, nothing_accepted, "bench", changes)

    return _clock(work)


def _build(spec: dict, file_format: str) -> dict:
    import pyarrow.parquet as pq

    from etl.contracts import load_profile
    from etl.uplink.masks import outgoing_columns
    from etl.uplink.package import build_package

    county = load_profile()
    exchange, people = _exchange()

    def work() -> int:
        build_package(
            Path(spec["work"]) / f"package-{file_format}",
            package_id=f"{people.code}-000001-{file_format}",
            exchange=exchange,
            resource=people,
            columns=outgoing_columns(exchange, people),
            rows=Path(spec["changes"]),
            sender={"code": county.code, "name": county.name, "client_id": exchange.client_id},
            file_format=file_format,
            created_at=CREATED_AT,
            secret=SECRET,
        )
        return pq.ParquetFile(spec["changes"]).metadata.num_rows

    return _clock(work)


def _frontdb_send(spec: dict) -> dict:
    from etl.uplink.masks import outgoing_columns
    from etl.uplink.package import Package
    from etl.uplink.transports import FrontDbTransport

    exchange, people = _exchange()
    package = Package(Path(spec["work"]) / "package-parquet")
    columns = outgoing_columns(exchange, people)
    transport = FrontDbTransport(exchange, people, columns, spec["frontdb"], SECRET)
    try:
        result = _clock(lambda: transport.send(package) and package.manifest["rows"])
    finally:
        transport.close()
    return result


def _receive(spec: dict, reader_kind: str) -> dict:
    from etl.uplink.receivers import FrontDbReceiver, OutboxReceiver, ReferenceReceiver

    exchange, _ = _exchange()
    store = f"sqlite:///{Path(spec['work']) / f'received-{reader_kind}.sqlite'}"
    receiver = ReferenceReceiver(exchange, SECRET, store)
    if reader_kind == "frontdb":
        reader = FrontDbReceiver(receiver, spec["frontdb"])
    else:
        reader = OutboxReceiver(receiver, str(Path(spec["work"]) / "outbox"))
    receipts: list[dict] = []

    def work() -> int:
        receipts.extend(reader.process())
        return sum(r["rows"] for r in receipts)

    try:
        result = _clock(work)
    finally:
        receiver.close()
    [receipt] = receipts
    return {**result, "receipt": receipt["status"], "accepted": receipt["rows_accepted"]}


CHILDREN = {
    "diff": _diff,
    "build_parquet": lambda spec: _build(spec, "parquet"),
    "build_csv": lambda spec: _build(spec, "csv"),
    "frontdb_send": _frontdb_send,
    "frontdb_receive": lambda spec: _receive(spec, "frontdb"),
    "outbox_receive": lambda spec: _receive(spec, "outbox"),
}


# --------------------------------------------------------------------------- the run


def _outbox(work: Path) -> None:
    """The CSV package as the file package transport leaves it in an outbox."""
    target = work / "outbox" / "packages" / "package-csv"
    shutil.copytree(work / "package-csv", target)


def bench(args: argparse.Namespace) -> dict:
    from etl.bench import run_child

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-uplink-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = {
        "work": str(work),
        "warehouse": str(work / "county.duckdb"),
        "changes": str(work / "changes.parquet"),
        "frontdb": args.frontdb or f"sqlite:///{work / 'frontdb.sqlite'}",
    }
    shutil.rmtree(work / "outbox", ignore_errors=True)  # a fresh outbox and stores each run
    for store in work.glob("received-*.sqlite"):
        store.unlink()
    write_warehouse(Path(spec["warehouse"]), args.rows)
    env = {**os.environ}
    results = {}
    for method in CHILDREN:
        if method == "frontdb_send" and not args.frontdb:
            (work / "frontdb.sqlite").unlink(missing_ok=True)
        if method == "outbox_receive":
            _outbox(work)
        results[method] = run_child(method, spec, work, env, module="etl.bench_uplink")
        r = results[method]
        print(
            f"{method:16} {r['rows']:>9} rows {r['seconds']:8.1f} s  "
            f"peak {r['peak_mb']:7.0f} MB (imports {r['baseline_mb']:.0f} MB)"
            + (f"  {r['receipt']} {r['accepted']}" if "receipt" in r else ""),
            flush=True,
        )
    return {"rows": args.rows, "work": str(work), "steps": results}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m etl.bench_uplink", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the package")
    parser.add_argument("--work", help="work folder (default: a new temporary folder)")
    parser.add_argument("--frontdb", help="SQLAlchemy URL of an empty 前置库 (default: SQLite)")
    parser.add_argument("--json", help="write the figures to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        from etl.bench import child_main

        return child_main(*argv[1:4], children=CHILDREN)
    args = parse_args(argv)
    report = bench(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
