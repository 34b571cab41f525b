"""The weekly leadership brief (每周数据简报): Mondays at 07:30 county time.

One task, ``write_reports``, calls ``etl.report.write_reports`` for the ISO week that ended the
Sunday before the run (a run on Monday 2026-11-23 writes 2026-W47): the brief as HTML, PDF and
JSON from the warehouse marts, then the department scorecard, the resource catalogue and the
index pages under ``<data root>/reports``. It reads the warehouse read-only, so it never blocks a
build; the nightly warehouse build has finished by 07:30 (its fallback is 06:00).

Parsing imports only the Airflow SDK, pendulum and the county profile; the report's libraries
(duckdb, matplotlib, WeasyPrint) are imported by the task when it runs.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.sdk import get_current_context, task

from etl.contracts import load_profile
from etl.dagspec import cron_dag

log = logging.getLogger(__name__)

DAG_ID = "report_weekly"
CRON = "30 7 * * 1"  # Mondays 07:30


def build_dag():
    tz = load_profile().timezone
    with cron_dag(
        DAG_ID,
        CRON,
        dag_display_name="report · 每周数据简报",
        description="The weekly leadership brief (HTML, PDF), scorecard and catalogue pages",
        doc_md=__doc__,
        tags=["report"],
        default_args={
            "owner": "data-center",
            "retries": 2,
            "retry_delay": timedelta(minutes=10),
        },
    ) as dag:

        @task(task_id="write_reports")
        def write_reports() -> dict:
            from etl.report import write_reports as write
            from etl.report.period import Week

            ran_for = get_current_context()["logical_date"].in_timezone(tz)
            week = Week.before(ran_for.date())
            log.info("writing the brief of %s", week)
            return {name: str(path) for name, path in write(week=week).items()}

        write_reports()
    return dag


DAG_OBJECT = build_dag()
