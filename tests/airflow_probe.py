"""Run in a fresh interpreter by the Airflow tests: Airflow reads its configuration at import,
so each probe gets its own AIRFLOW_HOME through the environment. Prints one JSON document.

``describe``: parse dags/ with Airflow's DagBag and describe every DAG (tasks, groups, assets,
windows), the import errors, the parse time and which heavy modules parsing imported.
``run <day> <system>...``: prepare the embedded Airflow, then ``run_day`` and the asset events.
``warehouse <day>``: prepare the embedded Airflow, then ``run_warehouse`` (the warehouse DAG).
``connections <health copy> <missing folder>``: connections kept in Airflow's database, then
the connection check DAG (twice).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date, datetime, timedelta

HEAVY = ("pandas", "pyarrow", "duckdb", "great_expectations", "polars", "connectorx")
PROBE = __file__


def call(command: list[str], home, schemas=None, timeout: float = 600) -> dict:
    """Run this file in a fresh interpreter with the data root (and Airflow home) under ``home``."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COUNTYLAKE_"))}
    env.update(COUNTYLAKE_HOME=str(home), AIRFLOW_HOME=str(home / "airflow"))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    if schemas is not None:
        env["COUNTYLAKE_SCHEMAS"] = str(schemas)
    done = subprocess.run([sys.executable, PROBE, *command], env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"probe {command} failed:\n{done.stderr[-4000:]}")
    # Airflow may print log lines on stdout too; the document is the last line.
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe() -> dict:
    import airflow.sdk  # noqa: F401 - loaded first, so the timing below is about our code
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.encoders import coerce_to_core_timetable

    from etl.orchestrate import DAGS_FOLDER, day_windows

    before = {m for m in HEAVY if m in sys.modules}
    began = time.perf_counter()
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    seconds = time.perf_counter() - began
    heavy = sorted({m for m in HEAVY if m in sys.modules} - before)

    dags, others = {}, {}
    for dag_id, dag in bag.dags.items():
        if "ingest" not in dag.tags:  # the warehouse DAG is scheduled on assets, not windows
            others[dag_id] = describe_other(dag)
            continue
        tz = str(dag.timezone.name)
        core = coerce_to_core_timetable(dag.timetable)
        groups = {}
        for group_id, group in dag.task_group.children.items():
            if not hasattr(group, "children"):  # a task outside any group (not an ingest DAG)
                continue
            tasks = {t.task_id.split(".")[-1]: t for t in group.children.values()}
            groups[group_id] = {
                "tasks": sorted(tasks),
                "commit_upstream": sorted(tasks["commit"].upstream_task_ids),
                "retries": sorted({t.retries for t in tasks.values()}),
                "backoff": sorted({t.retry_exponential_backoff for t in tasks.values()}),
                "owner": sorted({t.owner for t in tasks.values()}),
                "outlets": [{"name": a.name, "uri": a.uri} for a in tasks["commit"].outlets],
                "extract_outlets": len(tasks["extract"].outlets),
            }
        day = date(2026, 11, 1)
        dags[dag_id] = {
            "timezone": tz,
            "timetable": type(dag.timetable).__name__,
            "core_timetable": type(core).__name__,
            "catchup": dag.catchup,
            "start_date": dag.start_date.isoformat(),
            "tags": sorted(dag.tags),
            "doc_md": dag.doc_md,
            "groups": groups,
            "windows": [
                [s.isoformat(), e.isoformat()] for s, e in day_windows(dag.timetable, day, tz)
            ],
            "loose_tasks": sorted(t.task_id for t in dag.tasks if "." not in t.task_id),
        }
    return {
        "dags": dags,
        "other_dags": others,
        "import_errors": bag.import_errors,
        "parse_seconds": seconds,
        "heavy_imported_by_parse": heavy,
    }


def describe_other(dag) -> dict:
    """A DAG scheduled on assets (the warehouse): its tasks, outlets and schedule."""
    timetable = dag.timetable
    condition = getattr(timetable, "asset_condition", None)
    inner = getattr(timetable, "timetable", None)  # the time fallback of AssetOrTimeSchedule
    return {
        "timetable": type(timetable).__name__,
        "schedule_assets": sorted(a.name for a in getattr(condition, "objects", [])),
        "schedule_all": type(condition).__name__ if condition is not None else None,
        "fallback_cron": getattr(inner, "expression", None),
        "cron": getattr(timetable, "expression", None),
        "timezone": str(dag.timezone.name),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags),
        "doc_md": dag.doc_md,
        "tasks": {
            t.task_id: {
                "upstream": sorted(t.upstream_task_ids),
                "outlets": [{"name": a.name, "uri": a.uri, "group": a.group} for a in t.outlets],
                "retries": t.retries,
            }
            for t in dag.tasks
        },
    }


def run_warehouse(day: str) -> dict:
    """Prepare the embedded Airflow and run the warehouse DAG once with dag.test."""
    from etl.orchestrate import prepare_airflow

    prepare_airflow()
    from etl.orchestrate import run_warehouse as run_dag

    return run_dag(date.fromisoformat(day), progress=lambda m: print(m, file=sys.stderr))


def run(day: str, systems: list[str]) -> dict:
    from etl.orchestrate import prepare_airflow

    prepare_airflow()
    from etl.orchestrate import run_day

    began = time.perf_counter()
    results = run_day(
        date.fromisoformat(day), systems, progress=lambda m: print(m, file=sys.stderr)
    )
    seconds = time.perf_counter() - began

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(
                AssetModel.name, AssetModel.uri, AssetEvent.extra, AssetEvent.source_dag_id
            ).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
        ).all()
    events = [{"name": n, "uri": u, "extra": x, "dag_id": d} for n, u, x, d in rows]
    return {"results": results, "asset_events": events, "seconds": seconds}


def connections(copy_of_health: str, missing_exports: str) -> dict:
    """Prepare the embedded Airflow, keep the health database's connection in Airflow's
    database (pointing at a copy), run the connection check; then keep the hotline's export
    folder there too, pointing where nothing is, and run it again."""
    import os

    import pendulum

    from etl.orchestrate import prepare_airflow

    prepare_airflow()
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from etl.orchestrate import run_once
    from etl.settings import paths
    from etl.simulate.api_server import ApiServer

    server = ApiServer(paths().home, port=0).start()
    os.environ["COUNTYLAKE_CONN_TRAFFIC_POLICE_API"] = (
        f"http://demo-client:demo-secret@127.0.0.1:{server.port}"
    )
    runs = {}
    try:
        for name, conn_id, uri in (
            ("health kept in Airflow", "health_db", f"sqlite:///{copy_of_health}"),
            ("hotline kept in Airflow", "hotline_exports", f"file://{missing_exports}"),
        ):
            with create_session() as session:
                session.add(Connection(conn_id=conn_id, uri=uri))
            runs[name] = run_once("connection_check.py", "connection_check", pendulum.now("UTC"))
    finally:
        server.stop()
    return runs


def _json_default(value):
    if isinstance(value, datetime | date | timedelta):
        return str(value)
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "describe":
        out = describe()
    elif command == "warehouse":
        out = run_warehouse(args[0])
    elif command == "connections":
        out = connections(*args)
    else:
        out = run(args[0], args[1:])
    print(json.dumps(out, default=_json_default, ensure_ascii=False))
