"""``make demo``: a simulated county ingested day by day through Airflow itself.

For each simulated day the department systems grow by one day of activity, then every
department DAG runs for that day's window with ``dag.test()``. The summary shows, per dataset and
day, what was read, landed and quarantined, so incremental loads are visible. Then the
warehouse DAG builds the marts through Airflow too, the dbt docs and the Data Docs.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from urllib.parse import urlsplit


def demo(scale: float = 0.05, days: int = 3, seed: int = 42) -> int:
    from etl.cli import COUNT_COLUMNS, text_table
    from etl.connections import resolve
    from etl.contracts import SourceKind, check_all, load_profile, load_systems
    from etl.orchestrate import prepare_airflow, run_day
    from etl.settings import paths

    where = paths()
    errors = check_all()
    if errors:
        for error in errors:
            print(f"invalid contract: {error}")
        return 1
    profile, systems = load_profile(), load_systems()
    print(
        f"== {profile.name} {profile.name_en} ({profile.code}): {len(systems)} department "
        f"systems, {sum(len(s.datasets) for s in systems)} datasets; data root {where.home}"
    )
    began = time.perf_counter()
    print("== preparing the embedded Airflow (SQLite metadata under the data root)")
    prepare_airflow(where.home)
    from etl.simulate import simulate
    from etl.simulate.api_server import ApiServer

    api_systems = [s for s in systems if s.kind == SourceKind.HTTP]
    ports = {urlsplit(resolve(s, where)).port for s in api_systems}
    servers = [ApiServer(where.home, port=port).start() for port in sorted(ports)]
    first = date.fromisoformat(profile.simulation.start_date)
    rows, failures = [], 0
    try:
        for n in range(1, days + 1):
            day = first + timedelta(days=n - 1)
            print(f"== day {n}/{days} ({day}): growing the department systems (scale {scale})")
            simulate(where.home, scale=scale, days=n, seed=seed, progress=lambda m: print("  " + m))
            print(f"== day {n}/{days} ({day}): running the department DAGs through Airflow")
            for result in run_day(day, progress=lambda m: print("  " + m)):
                landed = result.get("landed") or {}
                if result["state"] != "success":
                    failures += 1
                rows.append(
                    {
                        "day": str(day),
                        "dataset": result.get("file")
                        if result["state"] == "import_error"
                        else f"{result['system']}.{result['dataset']}",
                        "state": result["state"],
                        "read": landed.get("rows_read"),
                        "landed": landed.get("rows_landed"),
                        "quarantined": landed.get("rows_quarantined"),
                        "unchanged": landed.get("rows_unchanged"),
                        "deleted": landed.get("rows_deleted"),
                        "files": landed.get("files_written"),
                        "seconds": landed.get("seconds"),
                    }
                )
    finally:
        for server in servers:
            server.stop()
    print("\n== summary: per dataset and day (rows read = landed + quarantined + unchanged)")
    print(text_table(rows, ["day", "dataset", "state", *COUNT_COLUMNS]))
    from etl.quality import SCORE_COLUMNS, scorecard_rows

    print("\n== department scorecard (share of rows or datasets passing; `countylake quality`)")
    card = [r for r in scorecard_rows(where) if r["day"] == str(day)]
    print(text_table(card, ["department", "day", "read", "quarantined", *SCORE_COLUMNS]))
    from etl.orchestrate import run_warehouse

    print(
        "\n== warehouse: the warehouse DAG through Airflow (dbt build into a new file swapped "
        "in whole, then dbt docs; and the Data Docs)"
    )
    built = run_warehouse(day, progress=lambda m: print("  " + m))
    if built["state"] != "success":
        failures += 1
    else:
        marts = (built["build"] or {}).get("marts", {})
        table = [{"mart": name, "rows": n} for name, n in marts.items()]
        print(text_table(table, ["mart", "rows"]))
        print(f"dbt docs (lineage, descriptions): {built['docs']}")
        print(f"Data Docs (Great Expectations): {built['data_docs']}")
        failures += _deliver_and_report(where)
    total = sum(r["read"] or 0 for r in rows)
    print(
        f"\n{len(rows)} dataset-days, {total:,} rows read, {failures} failed, "
        f"{time.perf_counter() - began:.0f} s. Lake: {where.lake_root}/raw  "
        "Ledger: `countylake status`\n"
        f"Warehouse (open it read-only): {where.warehouse / 'county.duckdb'}"
    )
    return 1 if failures else 0


def _deliver_and_report(where) -> int:
    """Uplinks to both exchanges through their reference receivers, then the brief and pages.
    Returns the number of failures."""
    from etl.report import write_reports
    from etl.uplink import deliver_all

    print("\n== uplinks: packages to the city and province exchanges (reference receivers)")
    failures = sum(
        1 for r in deliver_all(where, progress=lambda m: print("  " + m)) if r.get("error")
    )
    print("\n== reports: the weekly brief, the scorecard and catalogue pages")
    written = write_reports(where)
    for label, key in (
        ("weekly brief (HTML)", "brief"),
        ("weekly brief (PDF)", "brief_pdf"),
        ("department scorecard", "scorecard"),
        ("resource catalogue", "catalogue"),
    ):
        if key in written:
            print(f"  {label}: {written[key]}")
    return failures
