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
    return 0


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
        from etl.gx import write_data_docs
        from etl.quality import docs_runs

        index = write_data_docs(where.home, docs_runs(Ledger(where.ledger)))
        print(f"\nData Docs: {index}")
    return 0


def cmd_demo(args) -> int:
    from etl.demo import demo

    return demo(scale=args.scale, days=args.days, seed=args.seed)


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
        "print each invalid one with file, field and reason.",
    )
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
        "demo",
        help="simulate the county and ingest it day by day via Airflow",
        description="Simulate the county, then for each day grow the sources and "
        "run every department DAG through Airflow; print a summary.",
    )
    p.add_argument("--scale", type=float, default=0.05)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=cmd_demo)
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
