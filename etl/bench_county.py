"""County-scale benchmark: every stage of a night's work on a simulated county, beside anchors.

``make bench`` (``python -m etl.bench_county``) runs, for each scale in ``--scales`` (default
1 and 5; 1.0 is about 370,000 residents):

1. **The county.** The simulator writes the departments' systems with the SQL departments in
   PostgreSQL (databases ``bench_county_<code>_<system>``, so the demo's and the tests' are
   left alone); two days are ingested with the pipeline and the lake gets its history the way
   ``etl.bench_warehouse`` gives it (the last day copied into earlier days) until it holds
   ``--activity-rows`` x scale activity rows (10 million at scale 1).
2. **The stages**, each measurement in its own child process with its own peak RSS
   (``etl.bench.run_child``), all on the same data in the same run:

   - *extraction*: the project's connector (``etl.sources.sql.stream_query`` on the query
     ``SqlSource`` issues) over every SQL department table, against psycopg ``COPY ... TO
     STDOUT (FORMAT binary)`` of the same queries (the anchor), ``pandas.read_sql`` (the
     naive baseline, on a subset) and the same ``COPY`` by the server alone into /dev/null
     (the least any reader can take; when the role may write server files):
     ``etl.bench``'s measurement functions;
   - *landing*: the lake's rows (every raw dataset, in chunks of ``--landing-chunk`` rows held
     as Arrow) written the project's way (``etl.extract.LakeFiles``: zstd Parquet in a worker
     thread, then ``etl.land.publish``: SHA-256, manifest, swap) against DuckDB ``COPY (select
     * from <the same Arrow chunk>) TO '...parquet' (FORMAT parquet, COMPRESSION zstd)``;
   - *validation*: the rule engine (``etl.validate.Validator``) on every SQL department table
     as its source streams it, against a plain Great Expectations run of the same rules on the
     same rows (``etl.bench_quality.gx_validate``; at most ``--gx-rows`` rows a dataset, as GX
     holds a whole pandas frame);
   - *daily run*: one new simulated day ingested for all departments (``etl.pipeline``, as
     ``etl.bench_warehouse.ingest_day`` runs it), quality (Great Expectations Data Docs from the
     engine's results), ``etl.warehouse.build()`` on the warehouse built the night before, and
     the uplinks to the city and province through the reference receivers (``etl.uplink``), as
     ``make demo`` chains them;
   - *nothing changed*: the same the next night with no new data at the sources.

3. **The report**: ``<COUNTYLAKE_HOME>/reports/bench-county.{md,json}``, per stage and scale:
   rows, seconds, rows/s, peak MB, anchor, ratio and the targets (extraction >= 85% of COPY,
   landing >= 80% of DuckDB's COPY, validation >= 1M rows/s, the daily run at scale 1 <= 3
   minutes, nothing changed <= 10% of the daily run, peak memory < 2 GB at scale 5); for each
   missed target, where the time goes (per dataset; for extraction also the CPU time of the
   reading processes beside the server alone). It exits 0 with a report (even when a target is
   missed), 1 on errors and 2 when PostgreSQL cannot be reached.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from etl.bench import (
    DEFAULT_DSN,
    BenchError,
    _baseline_mb,
    _Clock,
    _measure_connector,
    _measure_copy,
    _measure_read_sql,
    _measure_server_copy,
    child_main,
    connect_admin,
    log,
    postgres_unreachable,
    report_paths,
    run_child,
    target_lines,
)

DB_PREFIX = "bench_county"
DEFAULT_SCALES = [1.0, 5.0]
DAYS = 2  # day 1 carries the initial loads; day 2 is a typical day, copied into the history
ACTIVITY_ROWS = 10_000_000  # per unit of scale
READ_SQL_ROWS = 500_000
ROUNDS = 5  # the department tables read and validate in about half a second: a median of a few
ROUNDED_STAGES = ("extraction", "validation")
GX_ROWS = 1_000_000
LANDING_CHUNK = 2_000_000
SLOWEST = 8

TARGET_EXTRACT = 0.85
TARGET_LAND = 0.80
TARGET_VALIDATE = 1_000_000
TARGET_DAILY_S = 180.0
TARGET_DAILY_SCALE = 1.0
TARGET_UNCHANGED = 0.10
TARGET_PEAK_MB = 2048.0
TARGET_PEAK_SCALE = 5.0

ONCE = {"baseline", "server"}  # roles measured in the first round only
# stage -> (method key, label) of the project's own measurement and of its anchor (and baseline)
STAGES = {
    "extraction": {
        "project": ("connector", "ADBC Arrow stream of SqlSource's query (etl.sources.sql)"),
        "anchor": ("copy_binary", "psycopg COPY binary of the same queries, bytes only"),
        "baseline": ("read_sql", "pandas.read_sql, SQLAlchemy + psycopg (on a subset)"),
        "server": ("server_copy", "the same COPY by the server alone, to /dev/null"),
    },
    "landing": {
        "project": ("lake_files", "etl.extract.LakeFiles + etl.land.publish (zstd, SHA-256)"),
        "anchor": ("duckdb_copy", "DuckDB COPY (select * from the Arrow chunk) TO parquet zstd"),
    },
    "validation": {
        "project": ("engine", "etl.validate.Validator.check as the source streams"),
        "anchor": ("gx", "Great Expectations on pandas, the same rules and rows"),
    },
    "daily": {
        "project": ("daily", "one new day: ingest all departments, quality, warehouse, uplinks"),
    },
    "unchanged": {
        "project": ("unchanged", "the next night with nothing new at the sources"),
    },
}


# --------------------------------------------------------------------------- children
# Each runs in a child process (``--child``) and returns its figures as a dict.


def _over_tables(measure, spec: dict) -> dict:
    """One of ``etl.bench``'s measurements over every department table; per-table figures."""
    baseline = _baseline_mb()
    total = {"rows": 0, "seconds": 0.0, "cpu_s": 0.0}
    per = {}
    for table in spec["tables"]:
        m = measure(table)
        per[table["name"]] = {k: round(m[k], 4) for k in total}
        for key in total:
            total[key] += m[key]
    return {**total, "baseline_mb": baseline, "per_dataset": per}


def _lake_chunks(home: Path, chunk_rows: int):
    """(dataset name, contract, Arrow table) for every raw dataset of the lake, at most
    ``chunk_rows`` rows each, read in the lake schema (reading is not timed)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from etl.contracts import load_systems
    from etl.sources.sql import BATCH_ROWS
    from etl.validate import lake_schema

    for system in load_systems():
        for d in system.datasets:
            files = sorted((home / "lake" / "raw" / system.system / d.dataset).rglob("*.parquet"))
            if not files:
                continue
            schema = lake_schema(d)
            scanner = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
            batches, rows = [], 0
            for batch in scanner.to_batches(batch_size=BATCH_ROWS):
                batches.append(batch)
                rows += batch.num_rows
                if rows >= chunk_rows:
                    yield f"{system.system}.{d.dataset}", d, pa.Table.from_batches(batches, schema)
                    batches, rows = [], 0
            if batches:
                yield f"{system.system}.{d.dataset}", d, pa.Table.from_batches(batches, schema)


def _measure_landing(spec: dict, write) -> dict:
    """Time ``write(table, folder)`` on every chunk of the lake; returns the totals, per
    dataset, and the seconds of each step ``write`` reports."""
    home, out = Path(spec["home"]), Path(spec["work"])
    baseline = _baseline_mb()
    seconds = cpu = 0.0
    rows = chunks = written = 0
    per: dict[str, dict] = {}
    steps: dict[str, float] = {}
    for name, dataset, table in _lake_chunks(home, spec["chunk_rows"]):
        folder = out / f"chunk-{chunks:05d}"
        folder.mkdir(parents=True)
        clock = _Clock()
        timed = write(table, dataset, folder)
        cpu += clock.stop()["cpu_s"]
        for step, s in timed.items():
            steps[step] = steps.get(step, 0.0) + s
        wall = sum(timed.values())  # the steps only: not opening DuckDB or making folders
        seconds += wall
        written += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder)  # the disk holds one chunk at a time
        rows += table.num_rows
        chunks += 1
        entry = per.setdefault(name, {"rows": 0, "seconds": 0.0})
        entry["rows"] += table.num_rows
        entry["seconds"] = round(entry["seconds"] + wall, 4)
        del table
        log(f"  {name}: {entry['rows']:,} rows, {rows:,} in all ({rows / seconds:,.0f} rows/s)")
    return {
        "rows": rows,
        "seconds": seconds,
        "cpu_s": cpu,
        "chunks": chunks,
        "parquet_bytes": written,
        "steps": {k: round(v, 3) for k, v in steps.items()},
        "per_dataset": per,
        "baseline_mb": baseline,
    }


def _land_project(table, dataset, folder: Path) -> dict:
    """The pipeline's own landing: ``LakeFiles`` (as ``etl.extract`` stages a window) then
    ``etl.land.publish`` (move, SHA-256 per file, manifest, swap the window folder in)."""
    from etl.extract import LakeFiles
    from etl.land import publish
    from etl.sources.sql import BATCH_ROWS

    began = time.perf_counter()
    staging = folder / "staging"
    staging.mkdir()
    files = LakeFiles(staging, table.schema)
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        files.write(batch)
    files.close()
    wrote = time.perf_counter()
    manifest = {"dataset": dataset.dataset, "rows": {"landed": table.num_rows}}
    publish(sorted(staging.glob("data-*.parquet")), folder / "window=0000", manifest)
    return {
        "Parquet write (LakeFiles)": wrote - began,
        "publish (SHA-256, manifest, swap)": time.perf_counter() - wrote,
    }


def _land_duckdb(table, dataset, folder: Path) -> dict:
    import duckdb

    with duckdb.connect() as con:
        con.register("chunk", table)
        began = time.perf_counter()
        con.execute(
            f"COPY (select * from chunk) TO '{folder / 'data.parquet'}' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        return {"DuckDB COPY": time.perf_counter() - began}


def _source_batches(home: Path, name: str, limit: int | None = None):
    """The record batches a SQL department table's source streams for a full read."""
    from etl.contracts import find_dataset
    from etl.settings import paths
    from etl.sources import open_source
    from etl.sources.base import ReadPlan, ReadReport

    system, dataset = find_dataset(*name.split("."))
    rows = 0
    for chunk in open_source(system, dataset, paths(home)).read(ReadPlan(), ReadReport()):
        if limit is not None and rows >= limit:
            break
        yield dataset, chunk
        rows += chunk.batch.num_rows


def _measure_engine(spec: dict) -> dict:
    from etl.validate import Validator

    home = Path(spec["home"])
    baseline = _baseline_mb()
    seconds = cpu = 0.0
    rows = good = bad = 0
    per = {}
    for table in spec["tables"]:
        name = table["name"]
        validator = None
        wall = 0.0
        for dataset, chunk in _source_batches(home, name):
            validator = validator or Validator(dataset)
            clock = _Clock()
            checked = validator.check(chunk)
            timing = clock.stop()
            wall += timing["seconds"]
            cpu += timing["cpu_s"]
            rows += chunk.batch.num_rows
            good += checked.good.num_rows
            bad += 0 if checked.bad is None else checked.bad.num_rows
        if validator is not None:
            validator.close()
        seconds += wall
        per[name] = {"rows": table["rows"], "seconds": round(wall, 4)}
        log(f"  engine: {name} {table['rows']:,} rows in {wall:.2f} s")
    return {
        "rows": rows,
        "seconds": seconds,
        "cpu_s": cpu,
        "rows_landed": good,
        "rows_quarantined": bad,
        "per_dataset": per,
        "baseline_mb": baseline,
    }


def _measure_gx(spec: dict) -> dict:
    import pyarrow as pa

    from etl.bench_quality import gx_validate, row_rules
    from etl.gx import suite_for

    home = Path(spec["home"])
    baseline = _baseline_mb()
    seconds = cpu = 0.0
    rows = 0
    per = {}
    for table in spec["tables"]:
        name = table["name"]
        got = list(_source_batches(home, name, spec["gx_rows"]))
        if not got:
            continue
        dataset = got[0][0]
        frame = pa.Table.from_batches([c.batch for _, c in got])
        frame = frame.slice(0, spec["gx_rows"]).to_pandas(date_as_object=False)
        del got
        suite = suite_for(dataset, row_rules(dataset))
        wall, used, failed, _success = gx_validate(suite, frame)
        seconds += wall
        cpu += used
        rows += len(frame)
        per[name] = {"rows": len(frame), "seconds": round(wall, 4), "failed": failed}
        log(f"  gx: {name} {len(frame):,} rows in {wall:.2f} s")
        del frame
    return {
        "rows": rows,
        "seconds": seconds,
        "cpu_s": cpu,
        "per_dataset": per,
        "baseline_mb": baseline,
    }


def _measure_night(spec: dict) -> dict:
    """One night: ingest ``spec['day']`` (none: only the rest), quality, warehouse, uplinks."""
    from etl.bench import _own_peak_mb
    from etl.bench_warehouse import ingest_day, measure_build
    from etl.quality import write_quality_docs
    from etl.settings import paths
    from etl.simulate.api_server import ApiServer
    from etl.uplink import deliver_all

    # Every step's modules, as those above: a night's clock covers its work, not importing
    # it, as in a worker that runs night after night. Some are otherwise imported at first
    # use: the warehouse's, ADBC's driver (by etl.sources.sql) and httpx's transport.
    for module in ("etl.extract", "etl.gx", "etl.land", "etl.pipeline", "etl.sources.sql",
                   "etl.sources.http", "etl.sources.files", "etl.warehouse",
                   "adbc_driver_postgresql", "adbc_driver_manager", "httpcore"):  # fmt: skip
        importlib.import_module(module)
    # Those imports leave millions of objects (GX alone most of them) that every full
    # collection of the cyclic GC walks again: 0.1-0.2 s each, which fell into some quiet
    # nights of 1-2 s and not into others. They live as long as the process, so a worker
    # running night after night can freeze them once (gc.freeze); this child does.
    gc.collect()
    gc.freeze()
    home = Path(spec["home"])
    where = paths(home)
    baseline = _baseline_mb()
    # A county's nights are a day apart; here they follow each other within seconds. Without
    # this, the first fsync of a night (the warehouse build's) waited for the disk writes of
    # the night before (a 650 MB warehouse file): 3-4 s charged to a night that wrote little.
    os.sync()
    clock = _Clock()
    steps: dict[str, float] = {}
    peaks: dict[str, float | None] = {}  # the child's high-water mark after each step

    @contextmanager
    def step(name: str):
        began = time.perf_counter()
        yield
        steps[name] = time.perf_counter() - began
        peaks[name] = _own_peak_mb()

    ingest: dict = {"datasets": {}}
    if spec.get("day"):
        with step("ingest (etl.pipeline, all datasets)"):
            server = ApiServer(home, port=0).start()
            try:
                ingest = ingest_day(home, date.fromisoformat(spec["day"]), server.port)
            finally:
                server.stop()
        log(f"  ingested {spec['day']}: {ingest['rows_landed']:,} rows landed")
    with step("quality (Data Docs)"):
        write_quality_docs(where)
    build, lines = None, []
    if spec.get("warehouse", True):
        with step("warehouse (etl.warehouse.build)"):
            build = measure_build(home, spec["label"])
        with step("uplinks (etl.uplink, reference receivers)"):
            lines = deliver_all(where, progress=lambda _m: None)
    timing = clock.stop()
    gc.unfreeze()  # frozen objects outlive the interpreter's teardown: nanobind reports leaks
    errors = [f"{line['resource']}: {line['error']}" for line in lines if line.get("error")]
    if errors:
        raise BenchError("uplink delivery failed: " + "; ".join(errors))
    counts = ingest["datasets"].values()
    return {
        "rows": sum(c.get("rows_read", 0) for c in counts),
        **{k: sum(c.get(k, 0) for c in counts) for k in
           ("rows_read", "rows_landed", "rows_quarantined", "rows_unchanged")},
        **timing,
        "steps": {k: round(v, 3) for k, v in steps.items()},
        "step_peaks_mb": peaks,
        "per_dataset": ingest["datasets"],
        "build": build,
        "uplink_rows_sent": sum(line.get("rows_sent") or 0 for line in lines),
        "uplink_packages": sum(1 for line in lines if line.get("status") != "unchanged"),
        "baseline_mb": baseline,
    }  # fmt: skip


CHILDREN = {
    "connector": lambda spec: _over_tables(_measure_connector, spec),
    "copy_binary": lambda spec: _over_tables(_measure_copy, spec),
    "read_sql": lambda spec: _over_tables(_measure_read_sql, spec),
    "server_copy": lambda spec: _over_tables(_measure_server_copy, spec),
    "lake_files": lambda spec: _measure_landing(spec, _land_project),
    "duckdb_copy": lambda spec: _measure_landing(spec, _land_duckdb),
    "engine": _measure_engine,
    "gx": _measure_gx,
    "night": _measure_night,
}


# --------------------------------------------------------------------------- one scale


def department_tables(home: Path, dsn: str, read_sql_rows: int) -> list[dict]:
    """Every SQL department table as its source reads it in full: name, URL, the query
    ``SqlSource`` issues, rows, and the LIMIT and order of read_sql's share of the subset."""
    import psycopg

    from etl.contracts import SourceKind, load_systems
    from etl.settings import paths
    from etl.sources import open_source
    from etl.sources.base import ReadPlan, ReadReport, columns_to_read
    from etl.sources.sql import quote

    tables = []
    for system in load_systems():
        if system.kind != SourceKind.SQL:
            continue
        for d in system.datasets:
            source = open_source(system, d, paths(home))
            if not source.url.startswith(dsn.split("://")[0]):
                raise BenchError(f"{system.system} is not in PostgreSQL ({source.describe()})")
            columns, _ = columns_to_read(d, source.source_columns(), ReadReport())
            query = source.query(ReadPlan(), columns)
            with psycopg.connect(source.url) as con:
                rows = con.execute(f"SELECT count(*) FROM ({query}) AS t").fetchone()[0]
            key = [c.at_source for c in d.columns if c.name in d.primary_key]
            tables.append(
                {
                    "name": f"{system.system}.{d.dataset}",
                    "url": source.url,
                    "select": query,
                    "rows": rows,
                    "order_by": ", ".join(quote(k, source.url) for k in key),
                }
            )
    total = sum(t["rows"] for t in tables) or 1
    for t in tables:
        t["subset"] = max(1, min(t["rows"], math.ceil(read_sql_rows * t["rows"] / total)))
    return tables


def can_copy_on_server(dsn: str) -> bool:
    """Whether the DSN's role may write a server file (superuser or pg_write_server_files),
    as the server-alone COPY does."""
    with connect_admin(dsn) as admin:
        query = "select rolsuper or pg_has_role(oid, 'pg_write_server_files', 'member') "
        return admin.execute(query + "from pg_roles where rolname = current_user").fetchone()[0]


def drop_databases(dsn: str) -> None:
    from etl.contracts import SourceKind, load_profile, load_systems
    from etl.simulate.sinks import db_name

    code = load_profile().code
    with connect_admin(dsn) as admin:
        for system in load_systems():
            if system.kind == SourceKind.SQL:
                admin.execute(
                    f'DROP DATABASE IF EXISTS "{db_name(code, system.system)}" WITH (FORCE)'
                )


def measure(method: str, spec: dict, work: Path, env: dict, label: str) -> dict:
    log(f"measuring {method}: {label}")
    m = {"label": label, **run_child(method, spec, work, env, module="etl.bench_county")}
    log(f"  {m['rows']:,} rows in {m['seconds']:.2f} s = {m['rows_per_s']:,.0f} rows/s, "
        f"CPU {m['cpu_s']:.1f} s, peak {m['peak_mb']:.0f} MB")  # fmt: skip
    return m


def bench_scale(args: argparse.Namespace, scale: float, root: Path) -> dict:
    from etl.bench_warehouse import add_history, add_history_days, lake_rows, simulate_and_ingest
    from etl.contracts import load_profile
    from etl.simulate import simulate

    began = time.perf_counter()
    home = root / f"scale-{scale:g}"
    home.mkdir(parents=True)
    work = root / f"work-{scale:g}"
    work.mkdir()
    os.environ["COUNTYLAKE_HOME"] = str(home)

    log(f"scale {scale:g}: simulating {DAYS} days into PostgreSQL and ingesting them ({home})")
    prepare = simulate_and_ingest(home, scale, DAYS, args.seed, first=1, target="postgres")
    start = date.fromisoformat(load_profile().simulation.start_date)
    last = start + timedelta(days=DAYS - 1)
    if args.history_days is None:
        history = add_history(home, last, start, round(args.activity_rows * scale))
    else:
        history = add_history_days(home, last, start, args.history_days)
    prepare["history"] = history
    lake = lake_rows(home)
    tables = department_tables(home, args.dsn, args.read_sql_rows)
    log(f"lake: {sum(lake.values()):,} rows; PostgreSQL: {sum(t['rows'] for t in tables):,} rows "
        f"in {len(tables)} department tables")  # fmt: skip
    env = {
        **os.environ,
        "COUNTYLAKE_HOME": str(home),
        "GX_ANALYTICS_ENABLED": "false",  # no network calls while timing
        # the province gateway's reference receiver on a free port, not the demo's 8766
        "COUNTYLAKE_CONN_SHANDONG_GATEWAY": f"http://127.0.0.1:{free_port()}/shandong",
    }
    table_spec = {"tables": tables, "home": str(home), "gx_rows": args.gx_rows}
    land_spec = {"home": str(home), "work": str(work / "landing"), "chunk_rows": args.landing_chunk}
    specs = {"extraction": table_spec, "validation": table_spec, "landing": land_spec}
    skipped = set() if can_copy_on_server(args.dsn) else {"server"}
    if skipped:
        log("the DSN's role may not COPY to a server file: no server-alone extraction figure")
    stages: dict[str, dict] = {}
    for stage in ("extraction", "validation", "landing"):
        # The project and its anchor get the same number of rounds, taken in turns so that a
        # slow minute of the machine falls on both. The baseline and the server alone are
        # context, measured once.
        rounds = args.rounds if stage in ROUNDED_STAGES else 1
        runs: dict[str, list[dict]] = {}
        for n in range(rounds):
            for role, (method, label) in STAGES[stage].items():
                if role in skipped or (role in ONCE and n):
                    continue
                runs.setdefault(role, []).append(measure(method, specs[stage], work, env, label))
        stages[stage] = {role: median_round(measured) for role, measured in runs.items()}
    night = {"home": str(home), "warehouse": not args.no_warehouse}
    first = None
    if not args.no_warehouse:
        log("first full warehouse build and uplinks (the night before; not a stage)")
        first = measure("night", {**night, "label": "full"}, work, env, "first build + uplinks")
    log(f"simulating day {DAYS + 1}")
    simulate(home, scale=scale, days=DAYS + 1, seed=args.seed, target="postgres",
             progress=lambda m: log("  " + m))  # fmt: skip
    daily_day, quiet_day = start + timedelta(days=DAYS), start + timedelta(days=DAYS + 1)
    for stage, day in (("daily", daily_day), ("unchanged", quiet_day)):
        method, label = STAGES[stage]["project"]
        spec = {**night, "day": day.isoformat(), "label": method}
        stages[stage] = {"project": measure("night", spec, work, env, label)}
    if not args.keep_databases:
        drop_databases(args.dsn)
    return {
        "scale": scale,
        "residents": lake.get("public_security.resident", 0),
        "lake_rows": sum(lake.values()),
        "lake": lake,
        "activity_rows": activity_rows(lake),
        "department_tables": [{k: t[k] for k in ("name", "rows", "subset")} for t in tables],
        "prepare": prepare,
        "first_build": first,
        "stages": stages,
        "warehouse": not args.no_warehouse,
        "seconds": round(time.perf_counter() - began, 1),
    }


def median_round(measured: list[dict]) -> dict:
    """The round a role scores with: its median by seconds (of an even number, the faster of
    the two middle ones), with every round's seconds and the best beside it. A typical round,
    not the luckiest: the best of each would score the one reader's luckiest scheduling
    against the other's, and the two readers at about the same rate swap places by chance."""
    chosen = sorted(measured, key=lambda m: m["seconds"])[(len(measured) - 1) // 2]
    return {
        **chosen,
        "rounds": len(measured),
        "round_seconds": [round(m["seconds"], 3) for m in measured],
        "best_seconds": min(m["seconds"] for m in measured),
    }


def activity_rows(lake: dict[str, int]) -> int:
    from etl.bench_warehouse import activity_datasets

    names = {f"{s}.{d.dataset}" for s, d in activity_datasets()}
    return sum(n for k, n in lake.items() if k in names)


def free_port() -> int:
    from etl.celery_stack import free_port as pick

    return pick()


# --------------------------------------------------------------------------- the report


def ratios(result: dict) -> None:
    """Each stage's project figure against its anchor: rates for the throughput stages, seconds
    against the budget or the daily run for the nights."""
    for r in result["scales"]:
        s = r["stages"]
        for stage in ("extraction", "landing", "validation"):
            project, anchor = s[stage]["project"], s[stage]["anchor"]
            project["anchor"] = anchor["label"]
            project["ratio"] = project["rows_per_s"] / anchor["rows_per_s"]
            if "round_seconds" in project:  # the rounds in turns, each against its own turn
                per_row = anchor["rows"] / project["rows"]
                project["round_ratios"] = [
                    a / (p * per_row)
                    for p, a in zip(project["round_seconds"], anchor["round_seconds"], strict=True)
                ]
                project["best_ratio"] = anchor["best_seconds"] / (project["best_seconds"] * per_row)
        baseline = s["extraction"]["baseline"]
        s["extraction"]["project"]["vs_read_sql"] = (
            s["extraction"]["project"]["rows_per_s"] / baseline["rows_per_s"]
        )
        daily, quiet = s["daily"]["project"], s["unchanged"]["project"]
        daily["anchor"] = f"the {TARGET_DAILY_S:.0f} s budget"
        daily["ratio"] = daily["seconds"] / TARGET_DAILY_S
        quiet["anchor"] = "the daily run"
        quiet["ratio"] = quiet["seconds"] / daily["seconds"]
        r["peak_mb"] = max(m["project"]["peak_mb"] for m in s.values())


def targets(result: dict) -> list[dict]:
    out = []
    scales = [r["scale"] for r in result["scales"]]
    peak_scale = TARGET_PEAK_SCALE if TARGET_PEAK_SCALE in scales else max(scales)
    for r in result["scales"]:
        s, sc = r["stages"], f"scale {r['scale']:g}"

        def add(stage, target, value, met, scale=r["scale"]):
            out.append(
                {"scale": scale, "stage": stage, "target": target, "value": value, "met": met}
            )

        e, la, v = (s[k]["project"] for k in ("extraction", "landing", "validation"))
        add(
            "extraction",
            f"{sc}: extraction >= {TARGET_EXTRACT:.0%} of the COPY rate",
            f"{e['ratio']:.1%}{spread(e)}",
            e["ratio"] >= TARGET_EXTRACT,
        )
        add(
            "landing",
            f"{sc}: landing >= {TARGET_LAND:.0%} of DuckDB's COPY",
            f"{la['ratio']:.1%}",
            la["ratio"] >= TARGET_LAND,
        )
        add(
            "validation",
            f"{sc}: validation >= {TARGET_VALIDATE:,} rows/s",
            f"{v['rows_per_s']:,.0f} rows/s (the rounds {rounds_rates(v)})",
            v["rows_per_s"] >= TARGET_VALIDATE,
        )
        d, q = s["daily"]["project"], s["unchanged"]["project"]
        if not r["warehouse"]:
            sc += " (--no-warehouse: nights without warehouse and uplinks)"
        if r["scale"] == TARGET_DAILY_SCALE:
            add(
                "daily",
                f"{sc}: full daily run <= {TARGET_DAILY_S:.0f} s",
                f"{d['seconds']:.1f} s",
                d["seconds"] <= TARGET_DAILY_S,
            )
        add(
            "unchanged",
            f"{sc}: nothing-changed run <= {TARGET_UNCHANGED:.0%} of the daily run",
            f"{q['ratio']:.1%} ({q['seconds']:.1f} s / {d['seconds']:.1f} s)",
            q["ratio"] <= TARGET_UNCHANGED,
        )
        if r["scale"] == peak_scale:
            worst = max(s, key=lambda k: s[k]["project"]["peak_mb"])
            note = (
                "" if peak_scale == TARGET_PEAK_SCALE else f" (scale {TARGET_PEAK_SCALE:g} not run)"
            )
            add(
                "memory",
                f"{sc}: peak memory < {TARGET_PEAK_MB:,.0f} MB{note}",
                f"{r['peak_mb']:,.0f} MB ({worst})",
                r["peak_mb"] < TARGET_PEAK_MB,
            )
    return out  # fmt: skip


def spread(project: dict) -> str:
    """The rounds behind a median ratio: each round's ratio to the anchor's round in its turn,
    and the ratio of the two best rounds."""
    if len(project.get("round_ratios", [])) < 2:
        return ""
    each = ", ".join(f"{r:.0%}" for r in project["round_ratios"])
    return f" (the rounds {each}; the best of each {project['best_ratio']:.1%})"


def rounds_rates(project: dict) -> str:
    return ", ".join(f"{project['rows'] / s:,.0f}" for s in project["round_seconds"])


def stage_table(result: dict) -> list[str]:
    lines = [
        "| scale | stage | measurement | rows | seconds | rows/s | peak MB | anchor | ratio |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in result["scales"]:
        for stage, roles in r["stages"].items():
            for role, m in roles.items():
                ratio = f"{m['ratio']:.2f}" if "ratio" in m else ""
                lines.append(
                    f"| {r['scale']:g} | {stage} | {role}: {m['label']} | {m['rows']:,} "
                    f"| {m['seconds']:.2f} | {m['rows_per_s']:,.0f} | {m['peak_mb']:,.0f} "
                    f"| {m.get('anchor', '')} | {ratio} |"
                )
    return lines


def per_dataset_lines(roles: dict[str, dict]) -> list[str]:
    names = list(dict.fromkeys(n for m in roles.values() for n in m.get("per_dataset", {})))
    head = " | ".join(f"{role} s | {role} rows/s" for role in roles)
    lines = [f"| dataset | rows | {head} |", "| --- | ---: |" + " ---: | ---: |" * len(roles)]
    for name in names:
        cells, rows = [], 0
        for m in roles.values():
            p = m.get("per_dataset", {}).get(name)
            if p is None:
                cells.append(" | ")
                continue
            rows = max(rows, p["rows"])
            rate = p["rows"] / p["seconds"] if p["seconds"] else 0.0
            cells.append(f"{p['seconds']:.2f} | {rate:,.0f}")
        lines.append(f"| {name} | {rows:,} | {' | '.join(cells)} |")
    return lines


def extraction_cpu_line(roles: dict[str, dict]) -> str:
    """Who waits for whom: a reader whose CPU time nearly equals its time is bound by its own
    decoding; the server alone is the least time any reader can take."""
    project, anchor = roles["project"], roles["anchor"]
    line = (
        f"CPU of the reading process: the project's {project['cpu_s']:.2f} s in its "
        f"{project['seconds']:.2f} s, the anchor's {anchor['cpu_s']:.2f} s in "
        f"{anchor['seconds']:.2f} s"
    )
    server = roles.get("server")
    if server:
        line += f"; the server alone took {server['seconds']:.2f} s"
    return line + ". A reader busy for nearly all of its time is bound by its own decoding."


def night_lines(r: dict) -> list[str]:
    from etl.bench_warehouse import layer_lines

    daily, quiet = r["stages"]["daily"]["project"], r["stages"]["unchanged"]["project"]
    steps = list(dict.fromkeys([*daily["steps"], *quiet["steps"]]))
    lines = [
        "| step | daily run s | nothing changed s | daily run peak MB after it |",
        "| --- | ---: | ---: | ---: |",
    ]
    for step in steps:
        peak = daily.get("step_peaks_mb", {}).get(step)
        lines.append(
            f"| {step} | {daily['steps'].get(step, 0):.2f} | {quiet['steps'].get(step, 0):.2f} "
            f"| {'' if peak is None else f'{peak:,.0f}'} |"
        )
    slow = sorted(quiet["per_dataset"].items(), key=lambda kv: -kv[1]["seconds"])[:SLOWEST]
    lines += [
        "",
        "Slowest datasets of the nothing-changed ingest (rows read, unchanged, seconds; the "
        "daily run's seconds beside them):",
        "",
        "| dataset | read | unchanged | seconds | daily run s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, p in slow:
        other = daily["per_dataset"].get(name, {}).get("seconds", 0.0)
        lines.append(
            f"| {name} | {p.get('rows_read', 0):,} | {p.get('rows_unchanged', 0):,} "
            f"| {p['seconds']:.2f} | {other:.2f} |"
        )
    if not r["warehouse"]:
        return lines
    builds = {"full": r["first_build"]["build"], "incremental": daily["build"],
              "unchanged": quiet["build"]}  # fmt: skip
    lines += [
        "",
        "Warehouse node-seconds per layer (the night before's full build, the daily run's and "
        "the nothing-changed run's; `etl.bench_warehouse`):",
        "",
        *layer_lines(builds),
    ]
    return lines


def profile_lines(result: dict) -> list[str]:
    """Where the time goes, for each stage whose target was missed."""
    out = []
    missed = {(t["scale"], t["stage"]) for t in result["targets"] if not t["met"]}
    for r in result["scales"]:
        s, sc = r["stages"], r["scale"]
        for stage in ("extraction", "landing", "validation"):
            if (sc, stage) not in missed:
                continue
            out += [f"### Scale {sc:g}, {stage}", "", *per_dataset_lines(s[stage]), ""]
            if stage == "extraction":
                out += [extraction_cpu_line(s[stage]), ""]
            steps = s[stage]["project"].get("steps")
            if steps:
                out += ["Steps of the project's landing (seconds): " + ", ".join(
                    f"{k} {v:.2f}" for k, v in steps.items()) + "; DuckDB COPY "
                    f"{s[stage]['anchor']['seconds']:.2f}.", ""]  # fmt: skip
        if (sc, "daily") in missed or (sc, "unchanged") in missed:
            out += [f"### Scale {sc:g}, the nights", "", *night_lines(r), ""]
        if (sc, "memory") in missed:
            out += [f"### Scale {sc:g}, memory", "", "| stage | project peak MB | baseline MB |",
                    "| --- | ---: | ---: |"]  # fmt: skip
            for stage, roles in s.items():
                m = roles["project"]
                out.append(f"| {stage} | {m['peak_mb']:,.0f} | {m['baseline_mb']:,.0f} |")
            out.append("")
    return out


def markdown(result: dict) -> str:
    host = result["host"]
    out = [
        "# County benchmark (every stage of a night, beside its anchor)",
        "",
        f"{result['generated_at']} on {host['cpus']} CPUs, Python {host['python']}, "
        f"PostgreSQL {host['postgres']}, ADBC's driver `{host['adbc_postgresql_driver']}`. "
        f"Seed {result['seed']}.",
        "",
    ]
    for r in result["scales"]:
        prep, hist = r["prepare"], r["prepare"]["history"]
        out.append(
            f"- **Scale {r['scale']:g}**: {r['residents']:,} residents landed; the lake holds "
            f"{r['lake_rows']:,} rows, {r['activity_rows']:,} of them activity "
            f"({hist['history_days']} day(s) of history copied from day {DAYS}); "
            f"{sum(t['rows'] for t in r['department_tables']):,} rows in "
            f"{len(r['department_tables'])} PostgreSQL department tables. Preparation: "
            f"simulate {prep['simulate_s']:.0f} s, ingest {prep['ingest_s']:.0f} s, history "
            f"{hist['seconds']:.0f} s; "
            + (
                f"the night before's full build and uplinks {r['first_build']['seconds']:.0f} s. "
                if r["warehouse"]
                else "warehouse and uplinks skipped (--no-warehouse). "
            )
            + f"{r['seconds']:.0f} s for the scale in all."
        )
    out += [
        "",
        *stage_table(result),
        "",
        "Every row ran in its own child process; peak MB is that process's peak RSS "
        "(interpreter and imports included), seconds cover the measured work only; the "
        "extraction and validation (project and anchor) are each the median of "
        f"{result['scales'][0]['stages']['extraction']['project'].get('rounds', 1)} rounds, "
        "taken in turns. "
        "Ratios: "
        "rows/s against the anchor's rows/s for extraction, landing and validation (read_sql "
        "is the naive baseline, on a subset); seconds against the 3-minute budget for the "
        "daily run and against the daily run for the nothing-changed run. The memory target "
        "takes the largest project child of the scale. The 1-minute load average was "
        f"{host['load_average_1m']['before']:.2f} before and "
        f"{host['load_average_1m']['after']:.2f} after: other work lowers every rate, so "
        "compare the ratios.",
        "",
        "## Targets",
        "",
        *target_lines(result),
    ]
    profile = profile_lines(result)
    if profile:
        out += ["", "## Where the time goes (missed targets)", "", *profile]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def bench(args: argparse.Namespace, root: Path) -> dict:
    from etl.sources.sql import postgres_driver

    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    scales = [bench_scale(args, scale, root) for scale in args.scales]
    with connect_admin(args.dsn) as admin:
        pg_version = admin.execute("SHOW server_version").fetchone()[0]
    result = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgres": pg_version,
            "adbc_postgresql_driver": postgres_driver(),
            "machine": platform.machine(),
            "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        },
        "seed": args.seed,
        "scales": scales,
    }
    ratios(result)
    result["targets"] = targets(result)
    result["seconds"] = round(time.perf_counter() - began, 1)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m etl.bench_county",
        description=(
            "Benchmark a night's work on a simulated county: extraction from PostgreSQL, "
            "landing, validation, the full daily run (ingest, quality, warehouse, uplinks) and "
            "a run where nothing changed, each beside its anchor measured in the same run."
        ),
        epilog="Exit status: 0 with a report (even when a target is missed), 1 on errors, "
        "2 when PostgreSQL cannot be reached.",
    )
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=DEFAULT_SCALES,
        help="simulated county sizes, 1.0 = ~370,000 residents (default 1 5)",
    )
    parser.add_argument(
        "--activity-rows",
        type=int,
        default=ACTIVITY_ROWS,
        help=f"activity rows the lake holds per unit of scale, reached by copying day {DAYS} "
        f"into earlier days (default {ACTIVITY_ROWS:,}: 10 million at scale 1)",
    )
    parser.add_argument(
        "--history-days", type=int, help="copy the last day exactly this many times instead"
    )
    parser.add_argument(
        "--read-sql-rows",
        type=int,
        default=READ_SQL_ROWS,
        help=f"rows pandas.read_sql reads, shared among the tables (default {READ_SQL_ROWS:,})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="rounds of extraction and validation, the project and its anchor each in turns, "
        f"the median scored (default {ROUNDS}; read_sql and the server alone run once)",
    )
    parser.add_argument(
        "--gx-rows",
        type=int,
        default=GX_ROWS,
        help=f"at most this many rows a table for Great Expectations (default {GX_ROWS:,})",
    )
    parser.add_argument(
        "--landing-chunk",
        type=int,
        default=LANDING_CHUNK,
        help=f"rows held as Arrow per landing measurement (default {LANDING_CHUNK:,})",
    )
    parser.add_argument(
        "--no-warehouse",
        action="store_true",
        help="nights without the warehouse build and uplinks (a quick check, not the targets)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("COUNTYLAKE_BENCH_DSN", DEFAULT_DSN),
        help=f"PostgreSQL server for the department databases (default {DEFAULT_DSN})",
    )
    parser.add_argument(
        "--home", help="data root to prepare and keep (default: a temporary directory)"
    )
    parser.add_argument(
        "--keep-databases",
        action="store_true",
        help=f"keep the {DB_PREFIX}_* department databases (default: dropped after each scale)",
    )
    parser.add_argument(
        "--out",
        help="report path: a directory, or a file name whose .md and .json siblings are written "
        "(default <COUNTYLAKE_HOME>/reports/bench-county.{md,json})",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return args
    if min(args.scales) <= 0 or args.activity_rows < 0:
        parser.error("--scales must be > 0 and --activity-rows >= 0")
    if args.history_days is not None and args.history_days < 0:
        parser.error("--history-days must be >= 0")
    if min(args.read_sql_rows, args.gx_rows, args.landing_chunk, args.rounds) < 1:
        parser.error("--read-sql-rows, --gx-rows, --landing-chunk and --rounds must be at least 1")
    args.dsn = args.dsn.rstrip("/")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(*args.child, children=CHILDREN)
    if postgres_unreachable(args.dsn, "etl.bench_county"):
        return 2
    md_path, json_path = report_paths(args.out, "bench-county")  # before COUNTYLAKE_HOME changes
    if args.home:
        root = Path(args.home).resolve()
        if root.exists() and any(root.iterdir()):
            print(f"etl.bench_county: {root} is not empty", file=sys.stderr)
            return 1
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="countylake-bench-county-"))
    saved = {k: os.environ.get(k) for k in
             ("COUNTYLAKE_HOME", "COUNTYLAKE_SIM_DB_PREFIX", "COUNTYLAKE_SIM_PG_URL")}  # fmt: skip
    os.environ["COUNTYLAKE_SIM_DB_PREFIX"] = DB_PREFIX
    os.environ["COUNTYLAKE_SIM_PG_URL"] = args.dsn
    try:
        result = bench(args, root)
    except Exception as exc:  # a failed step names its dataset, model or resource
        print(f"etl.bench_county: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not args.home:
            shutil.rmtree(root, ignore_errors=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(result), encoding="utf-8")
    json_path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print()
    print("\n".join(stage_table(result)))
    print()
    print("\n".join(target_lines(result)))
    print(f"\nreport: {md_path} and {json_path.name} ({result['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
