"""``countylake``: the command line of the county data platform.

Every subcommand has ``--help``. Errors print as one line naming where and why, with what to do
next, and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from etl.errors import CountylakeError

COUNT_COLUMNS = ["read", "landed", "quarantined", "unchanged", "deleted", "files", "seconds"]


def text_table(rows: list[dict], columns: list[str]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    if not rows:
        return "(nothing yet)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(_width(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(r.get(c), int | float) or r.get(c) is None for r in rows) for c in columns
    ]

    def line(values):
        return "  ".join(
            _pad(v, w, right) for v, w, right in zip(values, widths, numeric, strict=True)
        )

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - _width(text))
    return gap + text if right else text + gap


# --------------------------------------------------------------------------- commands


def cmd_check(args) -> int:
    from etl.contracts import check_all, load_profile, load_systems

    errors = check_all()
    for error in errors:
        print(f"invalid contract: {error}", file=sys.stderr)
    if errors:
        return 1
    profile, systems = load_profile(), load_systems()
    datasets = sum(len(s.datasets) for s in systems)
    print(
        f"{profile.name} ({profile.code}): {len(profile.towns)} towns, "
        f"{len(profile.villages)} villages; {len(systems)} systems, {datasets} datasets: OK"
    )
    if not (args.sources or args.system):
        return 0
    chosen = [s for s in systems if args.system in (None, s.system)]
    if not chosen:
        known = ", ".join(s.system for s in systems)
        print(f"no system {args.system!r} (there are: {known})", file=sys.stderr)
        return 2
    return _check_sources(chosen)


def _check_sources(systems) -> int:
    """Ask every dataset's source whether its next read would work; one line each."""
    from etl.settings import paths
    from etl.sources import probe_sources

    rows = []
    for system in systems:
        print(f"asking {system.system} ...", file=sys.stderr)
        rows += probe_sources([system], paths())
    if any(r["source"].startswith("postgresql://") for r in rows):
        from etl.sources.sql import postgres_driver

        print(f"PostgreSQL is read by ADBC's driver {postgres_driver()}")
    columns = ["dataset", "connection", "source"]
    return _report_checks(rows, columns, "datasets answer as their contracts expect")


def _report_checks(rows: list[dict], columns: list[str], verdict: str) -> int:
    """The table of a connection check (``columns[0]`` names a row), each failure in full,
    how to set a connection that fell back to its contract's demo default, and the count;
    1 if one failed."""
    for row in rows:
        row["result"] = row["found"] if row["error"] is None else "FAILED (below)"
    print(text_table(rows, [*columns, "result"]))
    failed = [r for r in rows if r["error"]]
    for row in failed:
        print(f"FAILED {row[columns[0]]}: {row['error']}", file=sys.stderr)
    if any(r["connection"] == "contract default" for r in rows):
        print(
            "(a contract default is the demo's connection: set COUNTYLAKE_CONN_<ID> or "
            "connections.json; connections kept in Airflow's database are seen inside tasks "
            "only: trigger the connection_check DAG)"
        )
    print(f"{len(rows) - len(failed)} of {len(rows)} {verdict}")
    return 1 if failed else 0


def cmd_simulate(args) -> int:
    from etl.settings import paths
    from etl.simulate import simulate

    summary = simulate(
        paths().home,
        scale=args.scale,
        days=args.days,
        seed=args.seed,
        target=args.target,
        progress=print,
    )
    print(f"simulated county at day {summary.day} ({summary.target})")
    return 0


def _day_window(day: date) -> tuple[str, str]:
    from etl.contracts import load_profile

    zone = ZoneInfo(load_profile().timezone)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


def cmd_run(args) -> int:
    """Run datasets for one day without Airflow (same functions the tasks call)."""
    from etl.contracts import load_systems
    from etl.pipeline import run

    start, end = _day_window(args.date)
    failed = 0
    results = []
    for system in load_systems():
        if args.system and system.system != args.system:
            continue
        for dataset in system.datasets:
            if args.dataset and dataset.dataset != args.dataset:
                continue
            run_id = f"cli__{args.date.isoformat()}__{int(time.time())}"
            try:
                results.append(run(system.system, dataset.dataset, start, end, run_id))
            except CountylakeError as exc:
                failed += 1
                print(f"FAILED {system.system}.{dataset.dataset}: {exc}", file=sys.stderr)
    if results:  # once for the batch, as the warehouse build does
        from etl.quality import publish_quality
        from etl.settings import paths

        publish_quality(paths())
    print(
        text_table(
            results,
            [
                "system",
                "dataset",
                "rows_read",
                "rows_landed",
                "rows_quarantined",
                "rows_unchanged",
                "rows_deleted",
                "files_written",
                "seconds",
            ],
        )
    )
    return 1 if failed else 0


def cmd_status(args) -> int:
    from etl.contracts import load_profile
    from etl.ledger import Ledger
    from etl.settings import paths

    where = paths()
    if not where.ledger.exists():
        print(f"no runs yet: the ledger {where.ledger} does not exist (run `make demo`)")
        return 0
    zone = ZoneInfo(load_profile().timezone)
    rows = []
    for r in Ledger(where.ledger).latest():
        if args.system and r["system"] != args.system:
            continue
        read = r["rows_read"]
        accounted = sum(r[k] or 0 for k in ("rows_landed", "rows_quarantined", "rows_unchanged"))
        rows.append(
            {
                "day": f"{r['window_start'].astimezone(zone):%Y-%m-%d}",
                "dataset": f"{r['system']}.{r['dataset']}",
                "status": r["status"],
                "read": read,
                "landed": r["rows_landed"],
                "quarantined": r["rows_quarantined"],
                "unchanged": r["rows_unchanged"],
                "deleted": r["rows_deleted"],
                "files": r["files_written"],
                "seconds": (r["finished_at"] - r["started_at"]).total_seconds()
                if r["finished_at"]
                else None,
                "reconciled": ""
                if read is None or r["status"] != "landed"
                else ("yes" if read == accounted else "NO"),
                "error": (r["error"] or "")[:70],
            }
        )
    rows = rows[: args.limit]
    print(text_table(rows, ["day", "dataset", "status", *COUNT_COLUMNS, "reconciled", "error"]))
    return 0


def cmd_serve_api(args) -> int:
    from etl.settings import paths
    from etl.simulate.api_server import ApiServer

    server = ApiServer(paths().home, port=args.port)
    print(f"department API (traffic police) on http://127.0.0.1:{args.port}; Ctrl-C to stop")
    server.serve_forever()
    return 0


def cmd_quality(args) -> int:
    import json

    from etl.contracts import load_profile
    from etl.ledger import Ledger
    from etl.settings import paths

    where = paths()
    if args.export_suites:
        from etl.gx import export_suites

        for path in export_suites(args.export_suites):
            print(path)
        return 0
    if not where.ledger.exists():
        print(f"no results yet: the ledger {where.ledger} does not exist (run `make demo`)")
        return 0
    from etl.quality import SCORE_COLUMNS, latest_results, scorecard_rows

    if args.scorecard:
        columns = ["department", "day", "datasets", "read", "quarantined", *SCORE_COLUMNS]
        print(text_table(scorecard_rows(where), [*columns, "failing_rules"]))
        return 0

    zone = ZoneInfo(load_profile().timezone)
    rows = []
    for r in latest_results(Ledger(where.ledger), args.dept):
        reasons = json.loads(r["reasons"]) if r["reasons"] else {}
        rows.append(
            {
                "department": r["dept_name"],
                "dataset": f"{r['system']}.{r['dataset']}",
                "day": f"{r['window_start'].astimezone(zone):%Y-%m-%d}",
                "read": r["rows_read"],
                "quarantined": r["rows_quarantined"],
                "rule": r["rule_id"] or "(all rules pass)",
                "severity": r["severity"] or "",
                "failed": r["failed"],
                "checked": r["checked"],
                "reasons": ", ".join(f"{k} {v}" for k, v in reasons.items()),
            }
        )
    if not rows and args.dept:
        raise CountylakeError(
            f"--dept {args.dept}", "no department, code or system by that name has results"
        )
    columns = ["department", "dataset", "day", "read", "quarantined", "rule", "severity"]
    print(text_table(rows, [*columns, "failed", "checked", "reasons"]))
    if args.docs:
        from etl.quality import write_quality_docs

        print(f"\nData Docs: {write_quality_docs(where)}")
    return 0


def cmd_warehouse_build(args) -> int:
    from etl import warehouse

    summary = warehouse.build(full_refresh=args.full_refresh, select=args.select, progress=print)
    print(
        f"{summary['mode']}: {summary['nodes']} in {summary['seconds']} s -> {summary['warehouse']}"
    )
    return 0


def cmd_warehouse_docs(args) -> int:
    from etl import warehouse

    print(f"dbt docs (lineage, descriptions): {warehouse.docs()}")
    return 0


def cmd_warehouse_test(args) -> int:
    from etl import warehouse

    print("== warehouse: every test on every row of the current warehouse (a copy of it)")
    checked = warehouse.test_every_row(progress=print)
    print(f"{checked['nodes']} -> {checked['warehouse']}")
    for problem in checked["problems"]:
        print(f"  {problem}", file=sys.stderr)
    return 1 if checked["problems"] else 0


def cmd_warehouse_freshness(args) -> int:
    from etl import warehouse

    rows = warehouse.freshness()
    print(text_table(rows, ["source", "status", "max_loaded_at", "age_hours"]))
    return 1 if any(r["status"] in ("error", "runtime error") for r in rows) else 0


def cmd_report(args) -> int:
    from etl.report import write_reports
    from etl.settings import paths

    written = write_reports(paths(), week=args.week)
    labels = {
        "brief": "weekly brief (每周数据简报), HTML",
        "brief_pdf": "weekly brief, PDF",
        "brief_json": "the brief's numbers, JSON",
        "scorecard": "department scorecard (with drill-down)",
        "catalogue": "resource catalogue",
        "index": "index of the reports",
    }
    for name, path in written.items():
        print(f"{labels.get(name, name)}: {path}")
    if args.screenshots:
        from etl.report.shots import screenshots

        folder = paths().reports / "screenshots"
        for name, png in screenshots(written, folder).items():
            print(f"screenshot of {name}: {png}")
    return 0


def cmd_demo(args) -> int:
    from etl.demo import demo

    return demo(scale=args.scale, days=args.days, seed=args.seed)


def cmd_uplink_deliver(args) -> int:
    """Deliver the enabled exchanges (or one) to their configured endpoints."""
    from etl.contracts import find_exchange, load_profile
    from etl.uplink.deliver import deliver_exchange

    names = [args.exchange] if args.exchange else load_profile().exchanges
    lines = []
    if args.reference:
        from etl.uplink.deliver import deliver_all

        lines = deliver_all(progress=print, only=names)
    for name in [] if args.reference else names:
        lines += deliver_exchange(find_exchange(name), resources=args.resource or None)
    columns = ["exchange", "resource", "package_id", "status", "rows_sent", "I", "U", "D"]
    print(text_table(lines, [*columns, "receipt", "accepted", "rejected", "error"]))
    failed = [x for x in lines if x["error"] and x["status"] != "receipted"]
    return 1 if failed else 0


def cmd_uplink_status(args) -> int:
    from etl.uplink.deliver import status_rows

    rows = status_rows(pending_changes=not args.no_changes)
    if args.exchange:
        rows = [r for r in rows if r["exchange"] == args.exchange]
    columns = ["exchange", "resource", "code", "transport", "packages", "last_package", "sent"]
    print(
        text_table(
            rows, [*columns, "status", "receipt", "accepted", "rejected", "reconciled", "pending"]
        )
    )
    errors = [r for r in rows if r["error"]]
    for r in errors:
        print(f"{r['exchange']}.{r['resource']}: {r['error']}")
    return 0


def cmd_uplink_check(args) -> int:
    """Ask every resource's exchange endpoint whether a delivery would get through."""
    from etl.contracts import find_exchange, load_profile
    from etl.uplink.deliver import check_exchange

    rows = []
    for name in [args.exchange] if args.exchange else load_profile().exchanges:
        print(f"asking {name} ...", file=sys.stderr)
        rows += check_exchange(find_exchange(name))
    columns = ["name", "transport", "connection", "where"]
    return _report_checks(rows, columns, "resources can be delivered")


def cmd_uplink_catalogue(args) -> int:
    from etl.uplink.catalogue import write_catalogue

    for kind, path in write_catalogue().items():
        print(f"{kind}: {path}")
    return 0


# --------------------------------------------------------------------------- parser


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-01") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="countylake",
        description="County big-data center (县大数据中心): contracts, ingestion, lake, ledger. "
        "Data lives under COUNTYLAKE_HOME (default ./data).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "check",
        help="validate every contract under schemas/",
        description="Validate the county profile and every department contract; "
        "print each invalid one with file, field and reason. With --sources, also ask every "
        "dataset's source (database table, export folder, API) whether the next read would "
        "work: reachable, and the columns its contract expects. Nothing is landed.",
    )
    p.add_argument(
        "--sources",
        action="store_true",
        help="also connect to every department system (exit 1 if one fails)",
    )
    p.add_argument("--system", help="ask only this system's sources (implies --sources)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "simulate",
        help="generate (or grow) the simulated county's systems",
        description="Write the department systems of a simulated county: SQL "
        "databases, CSV/Excel exports and the signed HTTP API data. "
        "Growing to more --days keeps earlier days unchanged.",
    )
    p.add_argument("--scale", type=float, default=0.05, help="1.0 = ~370,000 residents")
    p.add_argument("--days", type=int, default=3, help="days of activity from the start date")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--target",
        choices=["sqlite", "postgres", "mariadb"],
        default="sqlite",
        help="where SQL systems go (postgres/mariadb: the local servers)",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "run",
        help="ingest one day directly, without Airflow",
        description="Run extract+commit for each selected dataset for the day's "
        "window, exactly as the Airflow tasks do.",
    )
    p.add_argument("--date", type=_iso_date, required=True, help="the day, e.g. 2026-11-01")
    p.add_argument("--system", help="only this system (folder name under schemas/systems)")
    p.add_argument("--dataset", help="only this dataset")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "status",
        help="show the run ledger with its reconciliation",
        description="Latest attempt per dataset and window: rows read, landed, "
        "quarantined, unchanged, deleted, and whether they add up.",
    )
    p.add_argument("--system", help="only this system")
    p.add_argument("--limit", type=int, default=60, help="rows to show")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "quality",
        help="latest quality results per department and dataset",
        description="Per department and dataset, the newest landed window and every rule "
        "that failed in it (blocking rules quarantine rows, warnings only report), with "
        "counts and reason codes.",
    )
    p.add_argument("--dept", help="only this department (code, name or system)")
    p.add_argument("--docs", action="store_true", help="also build Great Expectations Data Docs")
    p.add_argument(
        "--scorecard",
        action="store_true",
        help="print the department scorecard (timeliness, completeness, validity, uniqueness "
        "per department and day) instead",
    )
    p.add_argument(
        "--export-suites",
        metavar="DIR",
        help="write the Great Expectations suites generated from the contracts into DIR "
        "(the repository keeps them in quality/suites) and stop",
    )
    p.set_defaults(func=cmd_quality)

    p = sub.add_parser(
        "serve-api",
        help="serve the simulated traffic-police HTTP API",
        description="Serve the signed, paged department API of the simulation.",
    )
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(func=cmd_serve_api)

    p = sub.add_parser(
        "warehouse",
        help="build the DuckDB warehouse (dbt), its docs, or check source freshness",
        description="The county warehouse: a dbt-duckdb project over the lake (staging -> base "
        "-> marts), built into a new file under <data root>/warehouse and swapped in whole.",
    )
    wsub = p.add_subparsers(dest="warehouse_command", required=True, metavar="ACTION")
    w = wsub.add_parser(
        "build",
        help="one dbt build (seeds, snapshots, models, tests) and an atomic swap",
        description="Build the warehouse: incremental by default (new lake windows only, marts "
        "recompute the days that changed), into a copy of the current file that replaces it "
        "only if every model and error-level test passed. Readers are never blocked.",
    )
    w.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every model from the lake (snapshot history is kept)",
    )
    w.add_argument("--select", help="dbt node selection, e.g. 'marts' or 'base_people+'")
    w.set_defaults(func=cmd_warehouse_build)
    w = wsub.add_parser(
        "docs",
        help="generate the dbt docs (lineage, descriptions) under the data root",
        description="Write <data root>/warehouse/docs/static_index.html: the models, their "
        "columns in Chinese and English, tests and lineage, readable without a server.",
    )
    w.set_defaults(func=cmd_warehouse_docs)
    w = wsub.add_parser(
        "test",
        help="every dbt test on every row of the current warehouse (an audit)",
        description="Run every test of the dbt project on every row of a copy of the current "
        "warehouse. A build tests only the rows it wrote and the keys it recomputed, so a test "
        "added or tightened since has not seen the older rows: this does. Exits 1 when a test "
        "fails or errors; warnings are printed.",
    )
    w.set_defaults(func=cmd_warehouse_test)
    w = wsub.add_parser(
        "freshness",
        help="dbt source freshness of every landed dataset against its SLA",
        description="Per dataset: the end of its newest lake window, its age in hours and "
        "pass / warn / error against the contract's freshness SLA (error at twice the SLA). "
        "Exits 1 when a dataset is in error.",
    )
    w.set_defaults(func=cmd_warehouse_freshness)

    p = sub.add_parser(
        "report",
        help="write the weekly brief (HTML, PDF), the scorecard and catalogue pages",
        description="Write the weekly leadership brief (每周数据简报) of an ISO week from the "
        "warehouse marts, as HTML and PDF with its numbers as JSON, and the department "
        "scorecard, resource catalogue and index pages, under <data root>/reports.",
    )
    p.add_argument(
        "--week",
        help="ISO week, e.g. 2026-W47 (default: the week of the newest data in the marts)",
    )
    p.add_argument(
        "--screenshots",
        action="store_true",
        help="also render each page in headless Chromium to reports/screenshots/*.png",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "demo",
        help="simulate the county and ingest it day by day via Airflow",
        description="Simulate the county, then for each day grow the sources and "
        "run every department DAG through Airflow; print a summary.",
    )
    p.add_argument("--scale", type=float, default=0.05)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "uplink",
        help="deliver to the city and province exchanges; receipts; the resource catalogue",
        description="Uplinks to the data-sharing exchanges described in schemas/exchanges/: "
        "signed, exactly-once packages with receipts.",
    )
    uplink = p.add_subparsers(dest="uplink_command", required=True, metavar="UPLINK_COMMAND")
    u = uplink.add_parser(
        "deliver",
        help="send what changed since the last accepted package",
        description="For each resource of the exchange(s): resend the package still waiting "
        "for its receipt, else build one from the rows changed since the last accepted "
        "package; retry with backoff; reconcile the receipts.",
    )
    u.add_argument("--exchange", help="only this exchange (default: those the profile enables)")
    u.add_argument("--resource", action="append", help="only this resource (repeatable)")
    u.add_argument(
        "--reference",
        action="store_true",
        help="run the reference receivers (the city's and province's side) on the loopback "
        "endpoints and let them answer: the demo, or a conformance check before going live",
    )
    u.set_defaults(func=cmd_uplink_deliver)
    u = uplink.add_parser(
        "status",
        help="per exchange and resource: last package, its receipt, what is pending",
        description="The uplink ledger per exchange and resource: the last package, its "
        "receipt and reconciliation (rows sent = accepted + rejected), and what is pending.",
    )
    u.add_argument("--exchange", help="only this exchange")
    u.add_argument(
        "--no-changes",
        action="store_true",
        help="do not read the warehouse to count changes not yet packaged",
    )
    u.set_defaults(func=cmd_uplink_status)
    u = uplink.add_parser(
        "check",
        help="ask every exchange endpoint whether a delivery would get through",
        description="For each resource of the exchange(s): where its transport's connection "
        "came from, and whether the endpoint answers: the front-end database (and which of "
        "the resource's tables it lacks), the outbox (a file written and removed), the "
        "signed HTTP receiver (a signed ask for a receipt). Nothing is sent; exit 1 if one "
        "fails.",
    )
    u.add_argument("--exchange", help="only this exchange (default: those the profile enables)")
    u.set_defaults(func=cmd_uplink_check)
    u = uplink.add_parser(
        "catalogue",
        help="write the resource catalogue (政务信息资源目录) as JSON, CSV and HTML",
        description="Generate the resource catalogue from the exchange contracts into "
        "<data root>/catalogue/.",
    )
    u.set_defaults(func=cmd_uplink_catalogue)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CountylakeError as exc:
        print(f"countylake {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
