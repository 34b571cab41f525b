"""Run the ingest DAGs through Airflow itself, in this process, for ``make demo`` and tests.

``prepare_airflow`` points Airflow at an embedded home under the data root (SQLite metadata
database, the repo's ``dags/`` folder) and migrates it once; ``run_day`` runs each selected
department DAG with ``dag.test()`` for the windows of one day and returns, per task group, what
``commit`` returned. ``dag.test`` runs the tasks in this process one after another (no
scheduler, no executor), so Airflow and the pipeline's libraries are imported once for all DAGs
and days. Airflow is imported inside the functions: its configuration is read at import time,
so ``prepare_airflow`` must run first.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.contracts import REPO_ROOT, load_profile
from etl.settings import paths

DAGS_FOLDER = REPO_ROOT / "dags"
INGEST_TAG = "ingest"
# Loggers silenced while Airflow runs: a task's exception comes back in run_day's results.
_NOISY = ("airflow", "sqlalchemy", "alembic", "py.warnings", "asyncio", "httpx", "task")

log = logging.getLogger(__name__)


def airflow_env(home: str | Path | None = None) -> dict[str, str]:
    """The environment of the embedded Airflow: home under the data root, SQLite, our DAGs."""
    p = paths(home)
    return {
        "COUNTYLAKE_HOME": str(p.home),
        "AIRFLOW_HOME": str(p.airflow),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{p.airflow / 'airflow.db'}",
        # dag.test runs tasks in-process; the executor is only what a real scheduler would use.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # A failing task's traceback comes back in run_day's results instead of the console.
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "task=CRITICAL py.warnings=ERROR",
    }


def prepare_airflow(home: str | Path | None = None) -> Path:
    """Configure the embedded Airflow for this process and migrate its database once.

    Returns the Airflow home. Must run before anything imports ``airflow``.
    """
    env = airflow_env(home)
    af_home = Path(env["AIRFLOW_HOME"])
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != env["AIRFLOW_HOME"]:
        raise RuntimeError(
            f"airflow was imported before prepare_airflow({home!r}) with another home; "
            "call prepare_airflow first, in a fresh process"
        )
    af_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(env)

    import airflow
    from airflow.utils import db

    stamp = af_home / ".migrated"
    migrated = stamp.exists() and stamp.read_text() == airflow.__version__
    if migrated and (af_home / "airflow.db").exists():
        return af_home
    with _quiet():
        db.upgradedb()  # what `airflow db migrate` does, without a second interpreter (~5 s)
    stamp.write_text(airflow.__version__)
    return af_home


def day_windows(timetable, day: date, tz: str) -> list[tuple[datetime, datetime]]:
    """The data intervals of ``timetable`` that close during ``day``: end in (day, day + 1].

    For the daily midnight cron of every system this is the one window [day 00:00, day+1 00:00)
    in the county's time zone; an hourly dataset would get 24.
    """
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable

    core = coerce_to_core_timetable(timetable)
    first = pendulum.datetime(day.year, day.month, day.day, tz=tz)
    after = first.add(days=1)
    windows: list[tuple[datetime, datetime]] = []
    while True:
        interval = core.infer_manual_data_interval(run_after=after)
        if interval.end <= first:
            break
        windows.append((interval.start.in_timezone(tz), interval.end.in_timezone(tz)))
        after = interval.start
    return windows[::-1]


def load_dags(systems: list[str] | None = None) -> tuple[dict, dict[str, str]]:
    """The ingest DAGs of ``systems`` (all when None) and the dags folder's import errors."""
    from airflow.dag_processing.dagbag import DagBag

    with _quiet():
        bag = DagBag(dag_folder=str(DAGS_FOLDER))
    dags = {}
    for dag_id, dag in sorted(bag.dags.items()):
        if INGEST_TAG not in dag.tags:
            continue
        system = dag_id.removeprefix("ingest_").split("__")[0]
        if systems is None or system in systems:
            dags[dag_id] = dag
    return dags, dict(bag.import_errors)


def run_day(
    day: date,
    systems: list[str] | None = None,
    *,
    retries: int = 0,
    progress: Callable[[str], None] | None = print,
) -> list[dict]:
    """Run each selected ingest DAG once per window of ``day``; one result per task group.

    Each result names the DAG, run, dataset and window, the group's ``state`` (success, failed,
    upstream_failed, or import_error for a DAG file that did not load), the failing task's
    ``error`` (one line) and ``traceback`` if any, and ``landed``: the dict ``commit``
    returned. A failing DAG does not stop the others. ``retries`` replaces the contracts'
    retries, because dag.test would otherwise sit out the retry delay (minutes) first.
    """
    tz = load_profile().timezone
    dags, import_errors = load_dags(systems)
    say = progress or (lambda _line: None)
    results: list[dict] = []
    for file, error in sorted(import_errors.items()):
        line = error.strip().splitlines()[-1]
        say(f"import error in {file}: {line}")
        results.append(_result(state="import_error", error=line, traceback=error, file=file))
    for dag in dags.values():
        for task in dag.tasks:
            task.retries = retries
        for start, end in day_windows(dag.timetable, day, tz):
            results += _run_window(dag, start, end, tz, say)
    return results


def _run_window(dag, start: datetime, end: datetime, tz: str, say: Callable) -> list[dict]:
    """One dag.test for the window [start, end); collect each group's state and commit XCom."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    zone = ZoneInfo(tz)
    window = f"[{start.astimezone(zone):%Y-%m-%d %H:%M}, {end.astimezone(zone):%Y-%m-%d %H:%M})"
    errors: dict[str, str] = {}
    clock = time.perf_counter()
    with _quiet(), _capture_task_errors(errors):
        # dag.test derives the interval from the logical date as a manual run would: the last
        # complete interval before it, so passing the window's end gives exactly this window.
        dr = dag.test(logical_date=end)
    seconds = time.perf_counter() - clock

    with create_session() as session:
        states = {ti.task_id: ti.state for ti in dr.get_task_instances(session=session)}
        rows = session.scalars(
            XComModel.get_many(run_id=dr.run_id, dag_ids=dag.dag_id, key="return_value")
        ).all()
        values = {x.task_id: XComModel.deserialize_value(x) for x in rows}
        interval = (dr.data_interval_start, dr.data_interval_end)

    results = []
    for group_id in dag.task_group.children:
        extract, commit = f"{group_id}.extract", f"{group_id}.commit"
        state = str(states.get(commit) or "none")
        failed = next((t for t in (extract, commit) if str(states.get(t)) == "failed"), None)
        results.append(
            _result(
                dag_id=dag.dag_id,
                run_id=dr.run_id,
                system=dag.dag_id.removeprefix("ingest_").split("__")[0],
                dataset=group_id,
                window_start=interval[0].astimezone(zone).isoformat(),
                window_end=interval[1].astimezone(zone).isoformat(),
                state=state,
                error=errors[failed].splitlines()[-1] if failed in errors else None,
                traceback=errors.get(failed),
                failed_task=failed,
                landed=values.get(commit),
            )
        )
    ok = sum(r["state"] == "success" for r in results)
    say(f"{dag.dag_id} {window}: {ok}/{len(results)} datasets landed in {seconds:.1f} s")
    for r in results:
        if r["state"] != "success":
            say(f"  {r['dataset']}: {r['state']} at {r['failed_task']}: {r['error']}")
    return results


def _result(**fields) -> dict:
    keys = ("dag_id", "run_id", "system", "dataset", "window_start", "window_end", "state",
            "error", "failed_task", "landed", "file", "traceback")  # fmt: skip
    return {k: fields.get(k) for k in keys}


class _quiet:
    """Silence Airflow's, SQLAlchemy's and the tasks' loggers for the block (progress stays)."""

    def __enter__(self):
        self.saved = {n: logging.getLogger(n).level for n in _NOISY}
        for name in _NOISY:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc):
        for name, level in self.saved.items():
            logging.getLogger(name).setLevel(level)


class _capture_task_errors:
    """Record the exception of each task dag.test runs, keyed by task id.

    dag.test logs a task's exception but keeps only its state; wrapping its in-process runner
    (a private helper, so this degrades to "no message" if it moves) gives run_day the reason.
    """

    def __init__(self, errors: dict[str, str]):
        self.errors = errors

    def __enter__(self):
        from airflow.sdk.definitions import dag as dag_module

        self.module = dag_module
        self.original = getattr(dag_module, "_run_task", None)
        if self.original is None:
            return self
        original, errors = self.original, self.errors

        def run_task(*, ti, task, **kwargs):
            result = original(ti=ti, task=task, **kwargs)
            error = getattr(result, "error", None)
            if error is not None:
                errors[ti.task_id] = "".join(traceback.format_exception(error)).strip()
            return result

        dag_module._run_task = run_task
        return self

    def __exit__(self, *exc):
        if self.original is not None:
            self.module._run_task = self.original


# --------------------------------------------------------------------------- the warehouse DAG

WAREHOUSE_DAG_ID = "warehouse"


def run_once(dag_file: str, dag_id: str, logical_date: datetime) -> dict:
    """Run one DAG of ``dags/<dag_file>`` once with ``dag.test()``, retries off.

    Returns ``dag_id``, ``run_id``, ``state``, per task state (``tasks``), the first failing
    task (``failed_task``) with its ``error`` and ``traceback``, the last line of every failed
    task's error (``errors``), what each task returned (``values``), the Asset events the run
    emitted (``asset_events``: name, extra) and ``seconds``; ``state`` is "import_error" when
    the DAG did not load."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with _quiet():
        bag = DagBag(dag_folder=str(DAGS_FOLDER / dag_file))
    dag = bag.dags.get(dag_id)
    if dag is None:
        error = next(iter(bag.import_errors.values()), f"no DAG named {dag_id}")
        return {"dag_id": dag_id, "state": "import_error", "tasks": {}, "values": {},
                "error": error.strip().splitlines()[-1], "failed_task": None}  # fmt: skip
    for task in dag.tasks:
        task.retries = 0
    errors: dict[str, str] = {}
    clock = time.perf_counter()
    with _quiet(), _capture_task_errors(errors):
        dr = dag.test(logical_date=logical_date)
    seconds = time.perf_counter() - clock
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}
        rows = session.scalars(
            XComModel.get_many(run_id=dr.run_id, dag_ids=dag.dag_id, key="return_value")
        ).all()
        values = {x.task_id: XComModel.deserialize_value(x) for x in rows}
        events = session.execute(
            select(AssetModel.name, AssetEvent.extra)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == dr.run_id)
        ).all()
    failed = next((t for t, s in states.items() if s == "failed"), None)
    return {
        "dag_id": dag.dag_id,
        "run_id": dr.run_id,
        "state": str(dr.state),
        "tasks": states,
        "error": errors[failed].splitlines()[-1] if failed in errors else None,
        "traceback": errors.get(failed),
        "failed_task": failed,
        "errors": {task: error.splitlines()[-1] for task, error in errors.items()},
        "values": values,
        "asset_events": [{"name": n, "extra": x} for n, x in events],
        "seconds": round(seconds, 1),
    }


def run_warehouse(day: date, *, progress: Callable[[str], None] | None = print) -> dict:
    """Run the warehouse DAG (``dags/warehouse.py``) once with ``dag.test()`` after ``day``'s
    ingestion, as the scheduler would once the department assets have landed.

    Returns what ``run_once`` returns, with ``build`` (what ``dbt_build`` returned: mode,
    seconds, node counts, rows per mart), ``docs`` (the dbt docs index) and ``data_docs`` (the
    Data Docs index)."""
    import pendulum

    say = progress or (lambda _line: None)
    tz = load_profile().timezone
    after = pendulum.datetime(day.year, day.month, day.day, tz=tz).add(days=1)
    result = run_once("warehouse.py", WAREHOUSE_DAG_ID, after)
    if result["state"] == "import_error":
        say(f"warehouse DAG did not load: {result['error']}")
        return result
    values = result.pop("values")
    result.update(
        build=values.get("dbt_build"),
        docs=values.get("dbt_docs"),
        data_docs=values.get("quality_docs"),
    )
    failed, seconds = result["failed_task"], result["seconds"]
    build = result["build"] or {}
    say(
        f"{result['dag_id']}: {result['state']} in {seconds:.1f} s"
        + (f" ({build.get('mode')}, dbt {build.get('seconds')} s)" if build else "")
        + (f"; {failed}: {result['error']}" if failed else "")
    )
    return result
