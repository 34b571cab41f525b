"""Warehouse benchmark: a full build of the county warehouse and an incremental daily build.

``make bench`` (``python -m etl.bench_warehouse``) prepares a lake the size of a county's:

1. simulates the county at ``--scale`` (1.0: about 370,000 residents, 30,000 entities) for
   ``--days`` days and ingests each day with the pipeline the DAGs run (``etl.pipeline.run``);
2. gives the lake its history: the simulator makes about 16,000 activity rows a day at scale 1
   (alarms, contributions, deposits, tickets, consultations, ...), so 10 million would take some
   600 simulated and ingested days (hours). Instead, the last ingested day's windows of every
   activity dataset are copied into earlier days with DuckDB (dates shifted, single-column keys
   made unique) until the lake holds ``--activity-rows`` activity rows (or ``--history-days``
   copies). The registers (residents, households, entities) are what the simulation landed;
3. builds the warehouse once over that lake (the incremental builds' starting point), then
   simulates and ingests one more day;
4. measures the **full build**: ``etl.warehouse.build()`` from an empty warehouse over the
   lake with the new day (seeds, staging with pseudonyms and masks, snapshots, base, marts,
   every test), in rows of the lake per second, and the **incremental daily build**: the same
   ``build()`` on the first build's file (new lake windows only; marts recompute the changed
   partitions), against the target: at most 20% of the full build's time; then one more build
   with nothing new, what any build costs whatever landed.

The full and the incremental build each run ``--rounds`` times and report their fastest round:
on this machine the same build's time swings by a fifth from one minute to the next. The
rounds alternate (full from an empty warehouse over the lake with the new day, then
incremental from the first full build's file), so both sides sample the same moments of the
machine; the first full build, over the lake before the new day, is the incremental build's
starting point and is reported too.

The report (Markdown + JSON under ``<COUNTYLAKE_HOME>/reports/bench-warehouse.*``) gives the
times, rows/s, the ratio, node-seconds per layer and the slowest nodes of each build (from
the build's ``build_results.json``) and the machine's load. It exits 0 with a report (even
when the target is missed), 1 on errors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.bench import BenchError, log, report_paths, target_lines

DEFAULT_SCALE = 1.0
DEFAULT_DAYS = 2  # day 1 carries the initial loads; day 2 is a typical day to copy
DEFAULT_ACTIVITY_ROWS = 10_000_000
TARGET_RATIO = 0.20
KEY_STRIDE = 10_000_000  # numeric keys of copy k: key + k * stride (real ids stay below it)
PERSON_STEP = 104_729  # copy k moves each person k * step places along the register
SLOWEST = 12
DEFAULT_ROUNDS = 5  # alternating pairs: the fastest of each side is less at the mercy of drift


def is_person_register(dataset) -> bool:
    """A register keyed by the citizen ID number (public_security.resident)."""
    key = [c for c in dataset.columns if c.name in dataset.primary_key]
    return len(key) == 1 and key[0].standard == "gb11643"


def activity_datasets() -> list[tuple[str, object]]:
    """Datasets of events (append-only or time-stamped facts), not registers: every dataset
    whose strategy is not ``snapshot`` and whose key is not a citizen ID number."""
    from etl.contracts import load_systems

    return [
        (system.system, d)
        for system in load_systems()
        for d in system.datasets
        if d.incremental.strategy != "snapshot" and not is_person_register(d)
    ]


def person_register() -> tuple[str, str, str]:
    """(system, dataset, ID column) of the person register, whose people the copies visit."""
    from etl.contracts import load_systems

    for system in load_systems():
        for d in system.datasets:
            if is_person_register(d):
                return system.system, d.dataset, d.primary_key[0]
    raise BenchError("no dataset keyed by the citizen ID number (the person register)")


# --------------------------------------------------------------------------- preparing the lake


def count_rows(con, pattern: str) -> int:
    """Rows of the Parquet files matching ``pattern`` (0 when there is none)."""
    if not con.execute("select count(*) from glob(?)", [pattern]).fetchone()[0]:
        return 0
    return con.execute(f"select count(*) from read_parquet('{pattern}')").fetchone()[0]


def day_window(day: date) -> tuple[str, str]:
    from etl.contracts import load_profile

    zone = ZoneInfo(load_profile().timezone)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


def ingest_day(home: Path, day: date, port: int) -> dict:
    """Every dataset of the contracts for ``day``'s window, as the DAG tasks run it."""
    from etl.contracts import load_systems
    from etl.pipeline import run

    os.environ["COUNTYLAKE_CONN_TRAFFIC_POLICE_API"] = (
        f"http://demo-client:demo-secret@127.0.0.1:{port}"
    )
    start, end = day_window(day)
    landed = 0
    datasets = {}  # per dataset: its counts and seconds (etl.bench_county's profile)
    for system in load_systems():
        for d in system.datasets:
            clock = time.perf_counter()
            result = run(system.system, d.dataset, start, end, f"bench__{day}")
            landed += result["rows_landed"]
            datasets[f"{system.system}.{d.dataset}"] = {
                **{k: v for k, v in result.items() if k.startswith("rows_")},
                "seconds": round(time.perf_counter() - clock, 3),
            }
    return {"rows_landed": landed, "datasets": datasets}


def simulate_and_ingest(
    home: Path, scale: float, days: int, seed: int, first: int, target: str = "sqlite"
) -> dict:
    """Grow the simulated county day by day to ``days`` and ingest each day ``first``..``days``
    after it is simulated (an append-only source read later would hand over several days).
    ``target``: where the SQL departments live (``countylake simulate --target``)."""
    from etl.contracts import load_profile
    from etl.simulate import simulate
    from etl.simulate.api_server import ApiServer

    start = date.fromisoformat(load_profile().simulation.start_date)
    simulated = ingested = 0.0
    landed = 0
    for n in range(first, days + 1):
        clock = time.perf_counter()
        simulate(
            home, scale=scale, days=n, seed=seed, target=target, progress=lambda m: log("  " + m)
        )
        simulated += time.perf_counter() - clock
        clock = time.perf_counter()
        server = ApiServer(home, port=0).start()
        try:
            landed += ingest_day(home, start + timedelta(days=n - 1), server.port)["rows_landed"]
        finally:
            server.stop()
        ingested += time.perf_counter() - clock
        log(f"  day {n} ingested")
    return {"simulate_s": round(simulated, 2), "ingest_s": round(ingested, 2), "rows": landed}


def _copy_sql(
    lake: Path, system: str, dataset, source_day: date, copies: int, gap: int, people: int
) -> str:
    """SELECT the source day's landed rows ``copies`` times. Copy k lies ``gap + k`` days back
    (before the first landed day), its dates and ``*_month`` values moved with it; a
    single-column key gets a new value per copy; each ID number is another person of the
    register (table ``bench_people``) per copy, so the copies are other people's contributions,
    consultations or tickets, not the same ones again. Names stay as they were (masked later)."""
    import duckdb

    files = f"{lake}/raw/{system}/{dataset.dataset}/load_date={source_day}/*/*.parquet"
    source = f"read_parquet('{files}', hive_partitioning = true, union_by_name = true)"
    with duckdb.connect() as con:
        landed = [r[0] for r in con.execute(f"describe select * from {source}").fetchall()]
    back = f"cast(copies.k + {gap} as integer)"  # days back
    columns, joins = [], []
    for c in dataset.columns:
        name = f'src."{c.name}"'
        if c.type in ("date", "timestamp"):
            expr = f"cast({name} - to_days({back}) as {c.type})"
        elif c.type == "string" and c.name.endswith("_month"):  # YYYY-MM, moved with the day
            expr = (
                f"coalesce(strftime(try_strptime({name} || '-15', '%Y-%m-%d') "
                f"- to_days({back}), '%Y-%m'), {name})"
            )
        elif c.standard == "gb11643":
            alias = f"person_{len(joins)}"
            joins.append(
                f"left join bench_people as {alias} on {alias}.i = "
                f"(hash({name}) + copies.k * {PERSON_STEP}) % {people}"
            )
            expr = f"case when {name} is null then null else {alias}.id_number end"
        elif [c.name] == dataset.primary_key and c.type == "int":  # a surrogate id
            expr = f"{name} + copies.k * {KEY_STRIDE}"
        elif [c.name] == dataset.primary_key and c.type == "string":
            expr = f"'B' || copies.k || '-' || {name}"
        else:
            expr = name
        columns.append(f'{expr} as "{c.name}"')
    contract = {c.name for c in dataset.columns} | {"load_date", "window"}
    columns += [f'src."{n}"' for n in landed if n not in contract]  # _op, _origin, _extra
    columns += [f"cast(src.load_date - to_days({back}) as date) as load_date", 'src."window"']
    return (
        f"select {', '.join(columns)} from {source} as src "
        f"cross join range(1, {copies + 1}) as copies(k) " + " ".join(joins)
    )


def add_history(home: Path, source_day: date, first_day: date, target_rows: int) -> dict:
    """Copy ``source_day``'s activity windows into the days before ``first_day`` (the first
    landed day) until the lake's activity datasets hold ``target_rows``; returns the copies
    made and rows written."""
    import duckdb

    lake = home / "lake"
    datasets = activity_datasets()
    con = duckdb.connect()
    have = per_day = 0
    copied = []
    for system, d in datasets:
        have += count_rows(con, f"{lake}/raw/{system}/{d.dataset}/**/*.parquet")
        day = count_rows(con, f"{lake}/raw/{system}/{d.dataset}/load_date={source_day}/*/*.parquet")
        per_day += day
        if day:
            copied.append((system, d))
    if per_day == 0:
        raise BenchError(f"no activity landed on {source_day} to copy")
    copies = max(0, math.ceil((target_rows - have) / per_day))
    gap = (source_day - first_day).days
    written, clock = 0, time.perf_counter()
    if copies:
        log(f"adding {copies} days of history: {per_day:,} activity rows a day, {have:,} landed")
        system, dataset, column = person_register()
        con.execute(
            "create temp table bench_people as select row_number() over (order by id) - 1 as i, "
            f'id as id_number from (select distinct "{column}" as id from read_parquet('
            f"'{lake}/raw/{system}/{dataset}/**/*.parquet') where \"{column}\" is not null)"
        )
        people = con.execute("select count(*) from bench_people").fetchone()[0]
        for system, d in copied:
            target = lake / "raw" / system / d.dataset
            select = _copy_sql(lake, system, d, source_day, copies, gap, people)
            con.execute(
                f"copy ({select}) to '{target}' "
                '(format parquet, compression zstd, partition_by (load_date, "window"), '
                "filename_pattern 'history_{i}', overwrite_or_ignore true)"
            )
            n = count_rows(con, f"{target}/**/history_*.parquet")
            written += n
            log(f"  {system}.{d.dataset}: {n:,} rows over {copies} days")
    con.close()
    return {
        "history_days": copies,
        "rows_per_day": per_day,
        "rows_written": written,
        "seconds": round(time.perf_counter() - clock, 2),
    }


def lake_rows(home: Path) -> dict[str, int]:
    import duckdb

    out = {}
    with duckdb.connect() as con:
        for path in sorted((home / "lake" / "raw").glob("*/*")):
            out[f"{path.parent.name}.{path.name}"] = count_rows(con, f"{path}/**/*.parquet")
    return out


# --------------------------------------------------------------------------- measuring builds


LAYERS = (("stg_", "staging"), ("int_", "intermediate"), ("base_", "base"), ("dim_", "base"),
          ("mart_", "marts"), ("snap_", "snapshots"))  # fmt: skip


def node_layer(unique_id: str) -> tuple[str, str]:
    """(name, layer) of a dbt node of a build's results: a test counts under the layer it tests."""
    kind, _, name, *_ = unique_id.split(".")
    if kind in ("seed", "snapshot"):
        return name, kind + "s"
    layer = next((label for prefix, label in LAYERS if re.search(rf"(^|_){prefix}", name)), "other")
    return name, layer if kind == "model" else f"tests on {layer}"


def measure_build(home: Path, label: str) -> dict:
    """One ``etl.warehouse.build()``: seconds, node counts, node-seconds per layer (dbt runs
    nodes on several threads at once, so they add up to more than the wall time) and the
    slowest nodes."""
    from etl import warehouse

    log(f"{label} build")
    clock = time.perf_counter()
    summary = warehouse.build(home, progress=None)
    seconds = time.perf_counter() - clock
    # a build with nothing new (new quality results are views' reads) runs no dbt
    results = {"results": [], "elapsed": 0.0}
    if "dbt" in summary.get("steps", {}):
        path = warehouse.build_results_path(home)
        results = json.loads(path.read_text(encoding="utf-8"))
    timings, layers = [], {}
    for r in results["results"]:
        name, layer = node_layer(r["unique_id"])
        timings.append((name, r["seconds"]))
        layers[layer] = layers.get(layer, 0.0) + r["seconds"]
    timings.sort(key=lambda kv: -kv[1])
    size = (home / "warehouse" / warehouse.WAREHOUSE_FILE).stat().st_size
    log(f"  {summary['mode']}: {seconds:.1f} s, {summary['nodes']}, {size / 2**20:,.0f} MB")
    return {
        "mode": summary["mode"],
        "plan": summary.get("plan"),
        "steps": summary.get("steps", {}),
        "seconds": round(seconds, 2),
        "dbt_seconds": round(results["elapsed"] or 0.0, 2),
        "nodes": summary["nodes"],
        "file_mb": round(size / 2**20, 1),
        "layers": {k: round(v, 2) for k, v in sorted(layers.items(), key=lambda kv: -kv[1])},
        "slowest": [{"node": n, "seconds": round(s, 2)} for n, s in timings[:SLOWEST]],
    }


def fastest(builds: list[dict]) -> dict:
    """The fastest of a side's rounds, with the seconds of every round kept."""
    best = dict(min(builds, key=lambda b: b["seconds"]))
    best["rounds"] = [b["seconds"] for b in builds]
    return best


def alternate_builds(home: Path, rounds: int, built: Path) -> tuple[dict, dict]:
    """``rounds`` full builds (each from an empty warehouse) alternating with ``rounds``
    incremental builds (each from ``built``, the full build of the lake before the new day):
    this machine's speed drifts by a fifth within minutes, and alternating lets both sides
    meet the same drift. Returns the fastest of each."""
    from etl.warehouse import WAREHOUSE_FILE

    warehouse_file = home / "warehouse" / WAREHOUSE_FILE
    full, incremental = [], []
    for n in range(1, rounds + 1):
        warehouse_file.unlink(missing_ok=True)
        full.append(measure_build(home, f"full (round {n} of {rounds})"))
        shutil.copy2(built, warehouse_file)
        incremental.append(measure_build(home, f"incremental (round {n} of {rounds})"))
    return fastest(full), fastest(incremental)


def summarise(full: dict, incremental: dict) -> list[dict]:
    ratio = incremental["seconds"] / full["seconds"]
    return [
        {
            "target": f"incremental daily build <= {TARGET_RATIO:.0%} of the full build",
            "value": f"{ratio:.1%} ({incremental['seconds']:.1f} s / {full['seconds']:.1f} s)",
            "met": ratio <= TARGET_RATIO,
        }
    ]


def table_lines(report: dict) -> list[str]:
    full, inc = report["full"], report["incremental"]
    lines = [
        "| build | lake rows | new rows | seconds | lake rows/s | new rows/s | warehouse MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    builds = [("first build (before the new day)", report["first"]),
              ("full (from empty, with the new day)", full),
              ("incremental (one more day)", inc),
              ("incremental, nothing new", report["unchanged"])]  # fmt: skip
    for name, m in builds:
        lines.append(
            f"| {name} | {m['lake_rows']:,} | {m['new_rows']:,} | {m['seconds']:.1f} "
            f"| {m['lake_rows'] / m['seconds']:,.0f} | {m['new_rows'] / m['seconds']:,.0f} "
            f"| {m['file_mb']:,.0f} |"
        )
    return lines


def layer_lines(report: dict) -> list[str]:
    builds = [("full", report["full"]), ("incremental", report["incremental"]),
              ("nothing new", report["unchanged"])]  # fmt: skip
    names = list(dict.fromkeys(k for _, b in builds for k in b["layers"]))
    lines = [
        "| node-seconds | " + " | ".join(n for n, _ in builds) + " |",
        "| --- |" + " ---: |" * len(builds),
    ]
    for name in names:
        cells = " | ".join(f"{b['layers'].get(name, 0):.1f}" for _, b in builds)
        lines.append(f"| {name} | {cells} |")
    cells = " | ".join(f"{b['dbt_seconds']:.1f}" for _, b in builds)
    lines.append(f"| (dbt wall time) | {cells} |")
    for step in list(dict.fromkeys(k for _, b in builds for k in b.get("steps", {}))):
        cells = " | ".join(f"{b.get('steps', {}).get(step, 0):.1f}" for _, b in builds)
        lines.append(f"| (build(): {step}) | {cells} |")
    cells = " | ".join(f"{b['seconds']:.1f}" for _, b in builds)
    lines.append(f"| (build() wall time: copy, dbt, checkpoint, swap) | {cells} |")
    return lines


def rounds_text(build: dict) -> str:
    return ", ".join(f"{s:.1f}" for s in build["rounds"]) + " s"


def slowest_lines(build: dict) -> list[str]:
    lines = ["| node | seconds |", "| --- | ---: |"]
    lines += [f"| {s['node']} | {s['seconds']:.2f} |" for s in build["slowest"]]
    return lines


def markdown(report: dict) -> str:
    prep, full, inc = report["prepare"], report["full"], report["incremental"]
    history = prep["history"]
    out = [
        "# Warehouse benchmark (lake -> DuckDB marts, dbt-duckdb)",
        "",
        f"{report['generated_at']} on {report['host']['cpus']} CPUs, Python "
        f"{report['host']['python']}, DuckDB {report['host']['duckdb']}, dbt-duckdb "
        f"{report['host']['dbt_duckdb']}. Simulated county at scale {report['scale']} (seed "
        f"{report['seed']}): {report['residents']:,} registered residents; {report['days']} "
        f"days simulated and ingested by the pipeline, then {history['history_days']} earlier "
        f"days of history copied from day {report['days']} ({history['rows_per_day']:,} "
        f"activity rows a day, dates shifted, keys made unique). The lake holds "
        f"{full['lake_rows']:,} rows, {report['activity_rows']:,} of them activity.",
        "",
        *table_lines(report),
        "",
        "The first build is an `etl.warehouse.build()` from an empty warehouse (seeds, "
        f"snapshots, staging with keyed pseudonyms and masks, base, {report['marts']} marts, "
        "every test, checkpoint and atomic swap). Then one more simulated day landed "
        f"({inc['new_rows']:,} rows in {report['next_day']['ingest_s']:.1f} s by the "
        "pipeline), and full builds from an empty warehouse alternated with incremental builds "
        "on the first build's file. Seconds are wall time of `build()`, including the copy of "
        f"the current file it starts from, the fastest of {len(full['rounds'])} rounds each "
        f"(full: {rounds_text(full)}; incremental: {rounds_text(inc)}, in the order they ran, "
        "alternating). The machine's 1-minute load average was "
        f"{report['host']['load_average_1m']['before']:.2f} before and "
        f"{report['host']['load_average_1m']['after']:.2f} after: other work lowers every "
        "rate, so compare the ratio.",
        "",
        "## Target",
        "",
        *target_lines(report),
        "",
        "## Where the time goes",
        "",
        f"Node-seconds per layer (dbt runs {report['threads']} threads at once, so they add up to "
        "more than the wall time; a test counts under the layer it tests), for the full build, "
        "the incremental build and a third build right after it with nothing new landed:",
        "",
        *layer_lines(report),
        "",
        "## Slowest nodes of the full build",
        "",
        *slowest_lines(full),
        "",
        "## Slowest nodes of the incremental build",
        "",
        *slowest_lines(inc),
        "",
        "Preparation (not measured above): simulate "
        f"{prep['simulate_s']:.0f} s, ingest {prep['ingest_s']:.0f} s, history "
        f"{history['seconds']:.0f} s.",
    ]
    return "\n".join(out) + "\n"


def warehouse_report_paths(out: str | None) -> tuple[Path, Path]:
    """``bench-warehouse.{md,json}`` under ``--out`` (a directory or a file name), by default
    under ``<COUNTYLAKE_HOME>/reports``."""
    if out is None:
        from etl.settings import paths

        return report_paths(str(paths().reports / "bench-warehouse"))
    if Path(out).is_dir():
        return report_paths(str(Path(out) / "bench-warehouse"))
    return report_paths(out)


# --------------------------------------------------------------------------- main


def bench(args: argparse.Namespace, home: Path) -> dict:
    from importlib.metadata import version

    import duckdb
    import yaml

    from etl.contracts import REPO_ROOT, load_profile
    from etl.warehouse import WAREHOUSE_FILE

    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    os.environ["COUNTYLAKE_HOME"] = str(home)
    log(f"simulating scale {args.scale} for {args.days} days and ingesting them into {home}")
    prepare = simulate_and_ingest(home, args.scale, args.days, args.seed, first=1)
    start = date.fromisoformat(load_profile().simulation.start_date)
    last = start + timedelta(days=args.days - 1)
    if args.history_days is None:
        prepare["history"] = add_history(home, last, start, args.activity_rows)
    else:
        prepare["history"] = add_history_days(home, last, start, args.history_days)
    before = lake_rows(home)
    activity = {f"{s}.{d.dataset}" for s, d in activity_datasets()}
    warehouse_file = home / "warehouse" / WAREHOUSE_FILE
    first = measure_build(home, "first full build (the incremental rounds' starting point)")
    first["lake_rows"] = first["new_rows"] = sum(before.values())
    built = home / "bench" / "full.duckdb"  # where every incremental round starts from
    built.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(warehouse_file, built)

    log("one more day: simulating and ingesting it")
    next_day = simulate_and_ingest(home, args.scale, args.days + 1, args.seed, first=args.days + 1)
    after = lake_rows(home)
    full, incremental = alternate_builds(home, args.rounds, built)
    full["lake_rows"] = full["new_rows"] = sum(after.values())
    incremental["lake_rows"] = sum(after.values())
    incremental["new_rows"] = sum(after.values()) - sum(before.values())
    unchanged = measure_build(home, "nothing-new")  # what a build costs whatever landed
    unchanged["lake_rows"], unchanged["new_rows"] = incremental["lake_rows"], 0
    profile = yaml.safe_load((REPO_ROOT / "warehouse" / "profiles.yml").read_text("utf-8"))
    with duckdb.connect(str(warehouse_file), read_only=True) as con:
        residents = con.execute(
            "select count(*) from base.base_people where in_register"
        ).fetchone()[0]
        marts = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'marts'"
        ).fetchone()[0]
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "duckdb": duckdb.__version__,
            "dbt_duckdb": version("dbt-duckdb"),
            "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        },
        "scale": args.scale,
        "seed": args.seed,
        "days": args.days,
        "threads": profile["countylake"]["outputs"]["warehouse"]["threads"],
        "residents": residents,
        "marts": marts,
        "lake": after,
        "activity_rows": sum(n for k, n in before.items() if k in activity),
        "prepare": prepare,
        "next_day": next_day,
        "first": first,
        "full": full,
        "incremental": incremental,
        "unchanged": unchanged,
        "ratio": round(incremental["seconds"] / full["seconds"], 4),
    }
    report["targets"] = summarise(full, incremental)
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report


def add_history_days(home: Path, source_day: date, first_day: date, days: int) -> dict:
    """``--history-days``: exactly that many copies of the source day (0: none)."""
    if days == 0:
        return {"history_days": 0, "rows_per_day": 0, "rows_written": 0, "seconds": 0.0}
    import duckdb

    per_day = 0
    with duckdb.connect() as con:
        for system, d in activity_datasets():
            day = f"{home}/lake/raw/{system}/{d.dataset}/load_date={source_day}/*/*.parquet"
            per_day += count_rows(con, day)
    rows = lake_rows(home)
    total = sum(rows.get(f"{s}.{d.dataset}", 0) for s, d in activity_datasets())
    return add_history(home, source_day, first_day, total + days * per_day)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m etl.bench_warehouse",
        description=(
            "Benchmark the warehouse build (dbt-duckdb over the lake): a full build of a "
            "county-sized lake and the incremental build after one more day, against the "
            "target incremental <= 20% of full."
        ),
        epilog="Exit status: 0 with a report (even when the target is missed), 1 on errors.",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=DEFAULT_SCALE,
        help=f"simulated county size, 1.0 = ~370,000 residents (default {DEFAULT_SCALE})",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"days simulated and ingested before the full build (default {DEFAULT_DAYS}); the "
        "last one is copied into the history",
    )
    parser.add_argument(
        "--activity-rows",
        type=int,
        default=DEFAULT_ACTIVITY_ROWS,
        help=f"activity rows the lake holds before the full build, reached by copying the last "
        f"day into earlier days (default {DEFAULT_ACTIVITY_ROWS:,})",
    )
    parser.add_argument(
        "--history-days",
        type=int,
        help="copy the last day exactly this many times instead (0: no history)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="rounds of the full build (each from an empty warehouse) alternating with rounds "
        "of the incremental build (each from the first build's file); each side reports its "
        f"fastest (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--home",
        help="data root to prepare and keep (default: a temporary directory, removed after)",
    )
    parser.add_argument(
        "--out",
        help="report path: a directory, or a file name whose .md and .json siblings are written "
        "(default <COUNTYLAKE_HOME>/reports/bench-warehouse.{md,json})",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.days < 2 or args.activity_rows < 0 or args.rounds < 1:
        parser.error(
            "--scale must be > 0, --days at least 2 (day 1 is the initial load), --rounds >= 1"
        )
    if args.history_days is not None and args.history_days < 0:
        parser.error("--history-days must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    md_path, json_path = warehouse_report_paths(args.out)  # before COUNTYLAKE_HOME changes
    if args.home:
        home = Path(args.home).resolve()
        if home.exists() and any(home.iterdir()):
            print(f"etl.bench_warehouse: {home} is not empty", file=sys.stderr)
            return 1
        home.mkdir(parents=True, exist_ok=True)
    else:
        home = Path(tempfile.mkdtemp(prefix="countylake-bench-warehouse-")) / "data"
        home.mkdir()
    saved = os.environ.get("COUNTYLAKE_HOME")
    try:
        report = bench(args, home)
    except (BenchError, OSError) as exc:
        print(f"etl.bench_warehouse: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a failed build names its model and reason
        print(f"etl.bench_warehouse: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if saved is None:
            os.environ.pop("COUNTYLAKE_HOME", None)
        else:
            os.environ["COUNTYLAKE_HOME"] = saved
        if not args.home:
            shutil.rmtree(home.parent, ignore_errors=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown(report), encoding="utf-8")
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print()
    print("\n".join(table_lines(report)))
    print()
    print(f"incremental / full: {report['ratio']:.1%}")
    print("\n".join(target_lines(report)))
    print(f"\nreport: {md_path} and {json_path.name} ({report['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
