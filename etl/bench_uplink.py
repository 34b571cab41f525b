"""Uplink memory benchmark: one large package through the 前置库 and the reference receivers.

``python -m etl.bench_uplink [--rows 1000000]`` builds a synthetic first delivery of the
``people_basic`` resource of the ``zibo`` exchange (every row an insert, shaped like the masked
people the county sends) and measures each step in a child process of its own, whose peak is
its own peak RSS (VmHWM, see ``etl.bench._own_peak_mb``):

- ``build_parquet`` / ``build_csv``: ``build_package`` from the change rows (read from Parquet,
  as ``changes`` would hand them over), as the 前置库 and the file package carry them;
- ``frontdb_send``: ``FrontDbTransport.send`` of the Parquet package into a 前置库 (a SQLite
  file in the work folder unless ``--frontdb`` names a database);
- ``frontdb_receive``: ``FrontDbReceiver.process``: the reference receiver reads the batch
  back, checks it and applies it to its store (SQLite) and writes the feedback;
- ``outbox_receive``: ``OutboxReceiver.process`` of the CSV package in an outbox folder.

The 前置库 steps use the resource with the contract's ``frontdb`` transport instead of its file
package. It prints rows, seconds and peak MB per step (and writes them as JSON with
``--json``); it only reads the public uplink functions, so the same file measures an older
tree too. Nothing here touches the county's data root.
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


def write_changes(path: Path, rows: int) -> None:
    """Change rows as ``changes`` returns them for a first delivery (all I), made in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from etl.uplink.masks import outgoing_columns

    def joined(*parts):
        return pc.binary_join_element_wise(*parts, "")

    from etl.contracts import load_profile

    county = load_profile().code
    exchange, people = _exchange()
    n = pa.array(range(1, rows + 1), pa.int64())
    text = pc.cast(n, pa.string())
    key = joined("p", pc.utf8_lpad(text, 63, "0"))
    village = pc.utf8_lpad(pc.cast(pc.remainder(n, 300), pa.string()), 3, "0")
    values = {
        "person_key": key,
        "id_number_masked": joined(f"{county}********", pc.utf8_lpad(text, 4, "0")),
        "name_masked": pa.repeat(pa.scalar("刘**"), rows),
        "sex": pc.cast(pc.add(pc.remainder(n, 2), 1), pa.string()),
        "birth_date": pc.cast(
            pc.cast(pc.remainder(pc.multiply(n, 37), 30000), pa.int32()), pa.date32()
        ),
        "ethnicity": pa.repeat(pa.scalar("01"), rows),
        "village_code": joined(f"{county}101", village),
        "town_code": pa.repeat(pa.scalar(f"{county}101"), rows),
        "phone_masked": pa.repeat(pa.scalar("139****5678"), rows),
        "register_status": pa.repeat(pa.scalar("正常"), rows),
    }
    columns = outgoing_columns(exchange, people)
    table = pa.table(
        {
            "_row_no": n,
            "_op": pa.repeat(pa.scalar("I"), rows),
            "_key": joined('["', key, '"]'),
            "_digest": pc.utf8_slice_codeunits(key, 0, 32),
            **{c.name: values[c.name] for c in columns},
        }
    )
    pq.write_table(table, path)


# --------------------------------------------------------------------------- the children


def _clock(work) -> dict:
    """Run ``work()`` (returns the rows it handled); seconds and the peak before it started."""
    from etl.bench import _own_peak_mb

    baseline = _own_peak_mb()
    began = time.perf_counter()
    rows = work()
    return {"rows": rows, "seconds": time.perf_counter() - began, "baseline_mb": baseline}


def _build(spec: dict, file_format: str) -> dict:
    import pyarrow.parquet as pq

    from etl.contracts import load_profile
    from etl.uplink.masks import outgoing_columns
    from etl.uplink.package import build_package

    county = load_profile()
    exchange, people = _exchange()

    def work() -> int:
        rows = pq.read_table(spec["changes"])
        build_package(
            Path(spec["work"]) / f"package-{file_format}",
            package_id=f"{people.code}-000001-{file_format}",
            exchange=exchange,
            resource=people,
            columns=outgoing_columns(exchange, people),
            rows=rows,
            sender={"code": county.code, "name": county.name, "client_id": exchange.client_id},
            file_format=file_format,
            created_at=CREATED_AT,
            secret=SECRET,
        )
        return rows.num_rows

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
        "changes": str(work / "changes.parquet"),
        "frontdb": args.frontdb or f"sqlite:///{work / 'frontdb.sqlite'}",
    }
    shutil.rmtree(work / "outbox", ignore_errors=True)  # a fresh outbox and stores each run
    for store in work.glob("received-*.sqlite"):
        store.unlink()
    write_changes(Path(spec["changes"]), args.rows)
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
