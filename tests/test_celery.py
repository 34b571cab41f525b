"""Scale-out: the same DAGs on Airflow's CeleryExecutor with the machine's Redis as broker and
PostgreSQL as metadata database and result backend, two workers.

One deployment is started for the module (api-server, scheduler, dag-processor, two Celery
workers with one task slot each), a SQL department and a file-based one are triggered for the
first simulated day (and the ``warehouse`` DAG after them, once the dags folder has one), and
the tests check the runs, the lake, the ledger, the workers and that nothing is left running.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import uuid
from datetime import date

import pytest
from conftest import SIM_SCALE, SIM_SEED, require_server

from etl.contracts import load_profile, load_systems

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAGS = ["ingest_public_security", "ingest_hotline"]  # a SQL department, a CSV-export one


def _require_provider() -> None:
    try:
        importlib.metadata.version("apache-airflow-providers-celery")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("apache-airflow-providers-celery is not installed (make venv installs it)")
    if importlib.util.find_spec("celery") is None:
        pytest.skip("celery is not installed (make venv installs it)")


@pytest.fixture(scope="module")
def celery_day(tmp_path_factory):
    require_server(5432, "PostgreSQL")
    require_server(6379, "Redis")
    _require_provider()
    from etl.celery_stack import CeleryStack, run_day
    from etl.simulate import simulate

    home = tmp_path_factory.mktemp("celery") / "data"
    mp = pytest.MonkeyPatch()
    mp.setenv("COUNTYLAKE_HOME", str(home))
    for var in [v for v in os.environ if v.startswith("COUNTYLAKE_CONN_")]:
        mp.delenv(var)
    tag = uuid.uuid4().hex[:10]
    stack = None
    try:
        stack = CeleryStack(
            home,
            workers=2,
            concurrency=1,  # one slot each: parallel tasks have to spread over both workers
            database=f"countylake_airflow_test_{tag}",
            queue=f"countylake-test-{tag}",
            ephemeral=True,  # drop the database and purge the queue on the way out
        )
        simulate(home, scale=SIM_SCALE, days=1, seed=SIM_SEED)
        day = date.fromisoformat(load_profile().simulation.start_date)
        with stack:
            described = stack.describe_dags(day)
            runs = run_day(stack, day, DAGS, timeout=300)
            out = {
                "home": home,
                "day": day,
                "stack": stack,
                "runs": runs,
                "dags": described["dags"],
                "answering": stack.ping_workers(),
                "tasks_per_worker": stack.worker_stats(),
            }
        out["leftovers"] = stack.leftovers()
        yield out
    finally:
        if stack is not None:  # a no-op after the with block; else stops what had started
            stack.stop()
        mp.undo()


def test_department_dags_succeed_on_celery(celery_day):
    runs = {r.dag_id: r for r in celery_day["runs"]}
    for dag_id in DAGS:
        run = runs[dag_id]
        assert run.state == "success", (dag_id, run.tasks, run.failures)
        assert run.tasks and set(run.tasks.values()) == {"success"}
        assert run.start == f"{celery_day['day']}T00:00:00+08:00"


def test_warehouse_dag_runs_after_the_departments_when_present(celery_day):
    runs = [r.dag_id for r in celery_day["runs"]]
    if "warehouse" not in celery_day["dags"]:
        assert "warehouse" not in runs
        pytest.skip("the dags folder has no DAG 'warehouse' yet")
    assert runs[-1] == "warehouse" and set(runs[:-1]) == set(DAGS)
    run = celery_day["runs"][-1]
    assert run.state == "success", (run.tasks, run.failures)


def test_lake_and_ledger_hold_what_the_workers_landed(celery_day):
    import pyarrow.parquet as pq

    from etl.ledger import Ledger
    from etl.settings import paths

    where = paths(celery_day["home"])
    day = celery_day["day"]
    run_ids = {r.dag_id: r.run_id for r in celery_day["runs"]}
    systems = {s.system: s for s in load_systems()}
    ledger = {(r["system"], r["dataset"]): r for r in Ledger(where.ledger).latest()}
    for dag_id in DAGS:
        system = systems[dag_id.removeprefix("ingest_")]
        for dataset in system.datasets:
            landed = where.raw / system.system / dataset.dataset
            window = landed / f"load_date={day}" / "window=0000"
            manifest = json.loads((window / "_manifest.json").read_text(encoding="utf-8"))
            assert manifest["run_id"] == run_ids[dag_id]
            files = sorted(window.glob("*.parquet"))
            assert files, window
            rows = sum(pq.read_metadata(f).num_rows for f in files)
            assert rows == manifest["rows"]["landed"] > 0
            entry = ledger[system.system, dataset.dataset]
            assert entry["status"] == "landed", entry["error"]
            assert entry["run_id"] == run_ids[dag_id]
            assert entry["rows_landed"] == rows
            assert entry["rows_read"] == (
                entry["rows_landed"] + entry["rows_quarantined"] + entry["rows_unchanged"]
            )


def test_both_workers_registered_and_shared_the_tasks(celery_day):
    stack = celery_day["stack"]
    assert celery_day["answering"] == set(stack.worker_names)
    per_worker = celery_day["tasks_per_worker"]
    ran = sum(len(r.tasks) for r in celery_day["runs"])
    assert sum(per_worker.values()) >= ran, per_worker  # more only if a task retried
    assert all(n > 0 for n in per_worker.values()), per_worker


def test_stack_stops_without_leftovers(celery_day):
    import psycopg

    stack = celery_day["stack"]
    assert celery_day["leftovers"] == []
    assert all(c.process.poll() is not None for c in stack.components)
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as con:
        found = con.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [stack.database]
        ).fetchone()
    assert found is None
