"""The weekly warehouse audit (数仓全量校验): Sundays at 03:00 county time.

One task, ``test_every_row``, calls ``etl.warehouse.test_every_row``: every dbt test on every
row of a copy of the current warehouse. The nightly build tests only the rows it wrote and the
keys it recomputed, so a test added or tightened since, or a row changed behind dbt's back, is
seen here. The task fails, naming the tests, when one fails or errors, and is not retried: the
same rows would fail again. It holds the build lock while it runs (about a minute at scale 1),
after the night's build and before Monday's brief; if a build holds the lock, it tries again
in 15 minutes (twice).

Parsing imports only the Airflow SDK, pendulum and the county profile (``etl.dagspec.cron_dag``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.sdk import task

from etl.dagspec import cron_dag

log = logging.getLogger(__name__)

DAG_ID = "warehouse_audit"
CRON = "0 3 * * 0"  # Sundays 03:00


def build_dag():
    with cron_dag(
        DAG_ID,
        CRON,
        dag_display_name="warehouse audit · 数仓全量校验",
        description="Every dbt test on every row of the current warehouse, weekly",
        doc_md=__doc__,
        tags=["warehouse"],
        default_args={
            "owner": "data-center",
            "retries": 2,  # a build held the lock; a failed test fails at once (below)
            "retry_delay": timedelta(minutes=15),
        },
    ) as dag:

        @task(task_id="test_every_row")
        def test_every_row() -> dict:
            from etl import warehouse
            from etl.settings import paths

            if not (paths().warehouse / warehouse.WAREHOUSE_FILE).exists():
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException("no warehouse built yet")
            checked = warehouse.test_every_row(progress=log.info)
            if checked["problems"]:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(
                    f"{len(checked['problems'])} test(s) failed on every row of "
                    f"{checked['warehouse']}: " + "; ".join(checked["problems"][:10])
                )
            return checked

        test_every_row()
    return dag


DAG_OBJECT = build_dag()
