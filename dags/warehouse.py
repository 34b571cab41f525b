"""The county warehouse DAG: one ``dbt build`` of the warehouse once the departments' data landed.

Data-aware: scheduled on the raw Asset of every dataset (``countylake.raw.<system>.<dataset>``,
emitted by the ingest DAGs' ``commit`` tasks, names built from the contracts exactly as
``ingest.py`` builds them). The DAG runs when all of them have been updated since its last run,
or at 06:00 county time if some department has not delivered by then, so one source being down
does not leave the whole county's marts stale.

Three tasks: ``dbt_build`` calls ``etl.warehouse.build()``, one ``dbt build`` (seeds, snapshots,
models, tests) into a new warehouse file swapped in atomically, and emits one Asset per mart
(``countylake.mart.<model>``, with its row count) for the uplinks and reports to schedule on;
then ``dbt_docs`` regenerates the dbt docs under the data root. Beside them ``quality_docs``
renders the Great Expectations Data Docs of the windows landed since (``etl.gx``), as
``countylake quality --docs`` does: every night, a build or not. Why one dbt task and not a task
per model (astronomer-cosmos): see warehouse/README.md.

The mart list comes from the dbt project's files (``warehouse/models/marts/**/mart_*.sql``), so
parsing imports neither dbt nor duckdb; the tasks import ``etl.warehouse`` when they run.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import (
    DAG,
    Asset,
    AssetAll,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    get_current_context,
    task,
)

from etl.contracts import REPO_ROOT, load_profile
from etl.dagspec import (
    RAW_ASSET_GROUP,
    load_systems_each,
    raw_asset_name,
    raw_asset_uri,
    schedule_start,
)
from etl.settings import paths

log = logging.getLogger(__name__)

DAG_ID = "warehouse"
MARTS_DIR = REPO_ROOT / "warehouse" / "models" / "marts"
MART_ASSET_GROUP = "countylake.mart"
FALLBACK_CRON = "0 6 * * *"  # build with whatever landed if a department is late


def mart_names() -> list[str]:
    """Every mart model of the dbt project, from its SQL files (no dbt import)."""
    return sorted(p.stem for p in MARTS_DIR.rglob("mart_*.sql"))


def mart_asset(name: str) -> Asset:
    where = (paths().warehouse / "county.duckdb").as_uri()
    return Asset(
        name=f"countylake.mart.{name}", uri=f"{where}?table=marts.{name}", group=MART_ASSET_GROUP
    )


def raw_assets() -> list[Asset]:
    systems, _ = load_systems_each()  # a broken contract is reported by contract_errors.py
    return [
        Asset(
            name=raw_asset_name(s.system, d.dataset),
            uri=raw_asset_uri(s.system, d.dataset),
            group=RAW_ASSET_GROUP,
        )
        for s in systems
        for d in s.datasets
    ]


def build_dag() -> DAG:
    tz = load_profile().timezone
    start = pendulum.datetime(*schedule_start().timetuple()[:3], tz=tz)
    marts = {name: mart_asset(name) for name in mart_names()}
    inputs = raw_assets()
    doc = [
        "**县大数据中心数仓** — the county warehouse (dbt-duckdb): staging → base → marts.",
        "",
        f"Runs when all {len(inputs)} department datasets have landed since the last run, or at "
        f"`{FALLBACK_CRON}` ({tz}) with whatever landed. `dbt_build` builds into a new file and "
        "swaps it in (readers are never blocked); `dbt_docs` refreshes the dbt docs; "
        "`quality_docs` renders the Great Expectations Data Docs of the windows landed since.",
        "",
        f"Emits {len(marts)} mart assets: " + ", ".join(f"`{n}`" for n in marts),
    ]
    with DAG(
        dag_id=DAG_ID,
        dag_display_name="warehouse · 数仓",
        description="Build the county warehouse (dbt build) and its docs after ingestion",
        doc_md="\n".join(doc),
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(FALLBACK_CRON, timezone=start.tz),
            assets=AssetAll(*inputs),
        ),
        start_date=start,
        catchup=False,
        max_active_runs=1,  # builds take a lock anyway; queue instead of failing
        tags=["warehouse"],
        default_args={
            "owner": "data-center",
            "retries": 2,  # a failed build leaves the current warehouse untouched
            "retry_delay": timedelta(minutes=5),
        },
    ) as dag:

        @task(task_id="dbt_build", outlets=list(marts.values()))
        def dbt_build() -> dict:
            from etl import warehouse

            summary = warehouse.build(progress=log.info)
            if summary["mode"] == "unchanged":  # no mart changed: no Asset event, no docs
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException("nothing new in the lake since the last build")
            rows = _mart_rows(summary["warehouse"], list(marts))
            events = get_current_context()["outlet_events"]
            for name, asset in marts.items():
                events[asset].extra = {
                    "rows": rows.get(name),
                    "mode": summary["mode"],
                    "built_at": summary["built_at"],
                }
            return {**summary, "marts": rows}

        @task(task_id="dbt_docs")
        def dbt_docs() -> str:
            from etl import warehouse

            return str(warehouse.docs())

        @task(task_id="quality_docs")
        def quality_docs() -> str:
            from etl.quality import write_quality_docs

            where = paths()
            if not where.ledger.exists():
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(f"no run ledger at {where.ledger}: nothing landed yet")
            return str(write_quality_docs(where))

        dbt_build() >> dbt_docs()
        quality_docs()
    return dag


def _mart_rows(database: str, names: list[str]) -> dict[str, int]:
    """Rows per mart in the swapped-in warehouse (read-only: analysts may be reading it)."""
    import duckdb

    with duckdb.connect(database, read_only=True) as con:
        found = {
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        }
        count = 'select count(*) from marts."{}"'
        return {n: con.execute(count.format(n)).fetchone()[0] for n in names if n in found}


DAG_OBJECT = build_dag()
