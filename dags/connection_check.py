"""The connection check (连通性检查), on demand: trigger it after adding or changing a
connection, before the nights and deliveries that use it.

Two tasks ask what ``countylake check --sources`` and ``countylake uplink check`` ask, from
inside Airflow, where the connections kept in Airflow's database are seen (a shell sees only
the environment and ``connections.json``):

- ``sources``: every department dataset's source (``etl.sources.probe_sources``): the table's
  columns under its drift policy, the export folder and its last file, one signed API record.
- ``exchanges``: every resource of the enabled exchanges (``etl.uplink.deliver.check_exchange``):
  the 前置库, the outbox, the signed receiver.

Nothing is landed or sent. A task fails naming each dataset or resource that would not get
through, and why; what each answered is in its log and its return value. Not retried: a
refused credential is refused again. Parsing imports only the Airflow SDK and the profile.
"""

from __future__ import annotations

import logging

from airflow.sdk import DAG, task

from etl.dagspec import schedule_start

log = logging.getLogger(__name__)

DAG_ID = "connection_check"


def verdict(rows: list[dict], what: str) -> list[dict]:
    """Log every row; fail naming the rows that would not get through."""
    for row in rows:
        log.info("%s (%s, %s): %s", row["name"], row["connection"], row["where"],
                 row["found"] or f"FAILED: {row['error']}")  # fmt: skip
    failed = [f"{r['name']} ({r['connection']}): {r['error']}" for r in rows if r["error"]]
    if failed:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            f"{len(failed)} of {len(rows)} {what} would not get through: " + "; ".join(failed)
        )
    return rows


def build_dag():
    import pendulum

    with DAG(
        dag_id=DAG_ID,
        dag_display_name="connection check · 连通性检查",
        description="Every department source and exchange endpoint asked, nothing moved",
        doc_md=__doc__,
        schedule=None,
        start_date=pendulum.datetime(*schedule_start().timetuple()[:3]),
        catchup=False,
        tags=["operations"],
        default_args={"owner": "data-center", "retries": 0},
    ) as dag:

        @task(task_id="sources")
        def sources() -> list[dict]:
            from etl.contracts import load_systems
            from etl.settings import paths
            from etl.sources import probe_sources

            rows = probe_sources(load_systems(), paths())
            return verdict([{**r, "name": r["dataset"], "where": r["source"]} for r in rows],
                           "datasets")  # fmt: skip

        @task(task_id="exchanges")
        def exchanges() -> list[dict]:
            from etl.contracts import find_exchange, load_profile
            from etl.uplink.deliver import check_exchange

            rows = [r for n in load_profile().exchanges for r in check_exchange(find_exchange(n))]
            return verdict(rows, "resources")

        sources()
        exchanges()
    return dag


DAG_OBJECT = build_dag()
