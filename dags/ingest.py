"""Airflow DAGs that pull each department system into the lake, one DAG per system.

Built from ``schemas/`` at parse time: a system's ``system.yaml`` gives the DAG (cron, retries,
owner, description) and each dataset file gives one task group ``<dataset>`` with two tasks,
``extract`` (stage one window) and ``commit`` (publish it; emits the dataset's Asset). A dataset
whose contract overrides the schedule gets a DAG of its own, ``ingest_<system>__<dataset>``.

Windows are the runs' data intervals, half-open [start, end) in the county's time zone: the
timetable is a ``CronDataIntervalTimetable`` because Airflow 3 turns a bare cron string into a
``CronTriggerTimetable`` whose interval is a single point.

Only airflow.sdk, pendulum (already loaded by the SDK) and the contract loader are imported
here; the pipeline (pandas, pyarrow, duckdb) is imported inside the tasks. A system whose
contract is broken is left out of this file and reported by ``contract_errors.py`` as that
file's import error, so the other departments keep running.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, get_current_context, task, task_group

from etl.contracts import DatasetContract, SystemContract, load_profile
from etl.dagspec import (
    RAW_ASSET_GROUP,
    load_systems_each,
    raw_asset_name,
    raw_asset_uri,
    schedule_start,
)

log = logging.getLogger(__name__)

RETRY_DELAY = timedelta(minutes=5)
MAX_RETRY_DELAY = timedelta(hours=2)


def raw_asset(system: str, dataset: str) -> Asset:
    return Asset(
        name=raw_asset_name(system, dataset),
        uri=raw_asset_uri(system, dataset),
        group=RAW_ASSET_GROUP,
    )


def dataset_group(system: SystemContract, dataset: DatasetContract, tz: str) -> None:
    """Task group ``<dataset>``: ``extract >> commit`` for the run's data interval."""
    name, asset = dataset.dataset, raw_asset(system.system, dataset.dataset)

    @task_group(group_id=name, tooltip=f"{dataset.title} ({dataset.title_en})")
    def group() -> None:
        @task(task_id="extract")
        def extract() -> dict:
            from zoneinfo import ZoneInfo

            from etl import pipeline

            ctx = get_current_context()
            county = ZoneInfo(tz)
            start = ctx["data_interval_start"].astimezone(county).isoformat()
            end = ctx["data_interval_end"].astimezone(county).isoformat()
            return pipeline.extract(system.system, name, start, end, ctx["run_id"])

        @task(task_id="commit", outlets=[asset])
        def commit(staged: dict) -> dict:
            from etl import pipeline

            landed = pipeline.commit(staged)
            # The asset event carries the counts, so consumers see what landed without a lookup.
            extra = {k: v for k, v in landed.items() if isinstance(v, str | int | float | bool)}
            get_current_context()["outlet_events"][asset].extra = extra
            return landed

        commit(extract())

    group()


def build_dag(
    system: SystemContract,
    datasets: list[DatasetContract],
    *,
    dag_id: str,
    schedule: str,
    tz: str,
) -> DAG:
    start = pendulum.datetime(*schedule_start().timetuple()[:3], tz=tz)
    lines = [f"**{system.department.name}** ({system.department.name_en})", "", system.description]
    lines += ["", "| dataset | 名称 | title |", "| --- | --- | --- |"]
    lines += [f"| `{d.dataset}` | {d.title} | {d.title_en} |" for d in datasets]
    with DAG(
        dag_id=dag_id,
        dag_display_name=f"{dag_id} · {system.department.name}",
        description=f"{system.department.name_en}: pull {system.system} into the lake",
        doc_md="\n".join(lines),
        schedule=CronDataIntervalTimetable(schedule, timezone=start.tz),
        start_date=start,
        catchup=False,
        # Watermarks advance in window order, so two windows of one system never overlap.
        max_active_runs=1,
        tags=[system.department.code, "ingest"],
        default_args={
            "owner": system.owner,
            "retries": system.retries,
            "retry_delay": RETRY_DELAY,
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": MAX_RETRY_DELAY,
        },
    ) as dag:
        for dataset in datasets:
            dataset_group(system, dataset, tz)
    return dag


def build_dags() -> dict[str, DAG]:
    """One DAG per system, plus one per dataset whose contract has a schedule of its own."""
    tz = load_profile().timezone
    systems, errors = load_systems_each()
    for error in errors:
        log.warning("contract skipped (see contract_errors.py): %s", error)
    dags: dict[str, DAG] = {}
    for system in systems:
        own = [d for d in system.datasets if d.schedule in (None, system.schedule)]
        if own:
            dags[system.dag_id] = build_dag(
                system, own, dag_id=system.dag_id, schedule=system.schedule, tz=tz
            )
        for d in system.datasets:
            if d not in own:
                dag_id = f"{system.dag_id}__{d.dataset}"
                dags[dag_id] = build_dag(system, [d], dag_id=dag_id, schedule=d.schedule, tz=tz)
    return dags


DAGS = build_dags()
