"""Airflow DAGs that deliver the county's shared resources to each exchange it feeds.

One DAG per exchange the county profile enables, built from ``schemas/exchanges/<exchange>.yaml``:
a ``deliver__<resource>`` task per resource (resend the package still waiting for its receipt,
else send what changed since the last accepted package; retries with backoff inside, Airflow's
retries around it), then ``wait_for_receipts``, a sensor in reschedule mode: between pokes it
gives its worker slot back, so waiting hours for a city's feedback table costs nothing.

The schedule is the contract's cron in the county's time zone; with ``trigger: cron_or_assets``
the DAG also runs when every mart it reads has been rebuilt (the warehouse DAG's Assets
``countylake.mart.<model>``; the base libraries come with the same build). Extra runs are
harmless: a delivery with nothing changed sends nothing. A resource with a schedule of its own
gets a DAG of its own, ``uplink_<exchange>__<resource>``.

Only airflow.sdk, pendulum and the contract loader are imported here.
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
    PokeReturnValue,
    task,
)

from etl.contracts import ExchangeContract, ExchangeResource, load_profile
from etl.dagspec import schedule_start
from etl.uplink.dagspec import load_exchanges_each, mart_asset_name

log = logging.getLogger(__name__)

RETRY_DELAY = timedelta(minutes=10)
MAX_RETRY_DELAY = timedelta(hours=3)
RECEIPT_POKE = timedelta(minutes=5)
RECEIPT_TIMEOUT = timedelta(hours=20)


def schedule_for(exchange: ExchangeContract, resources: list[ExchangeResource], cron: str, tz):
    timetable = CronTriggerTimetable(cron, timezone=tz)
    names = sorted({n for r in resources if (n := mart_asset_name(r.source))})
    if exchange.trigger == "cron" or not names:
        return timetable
    assets = [Asset.ref(name=n) for n in names]
    return AssetOrTimeSchedule(timetable=timetable, assets=AssetAll(*assets))


def deliver_task(exchange_name: str, resource: ExchangeResource):
    @task(task_id=f"deliver__{resource.resource}", task_display_name=f"{resource.name}")
    def deliver() -> dict:
        from etl.contracts import find_exchange
        from etl.uplink.changes import UplinkError
        from etl.uplink.deliver import deliver_resource

        exchange = find_exchange(exchange_name)
        line = deliver_resource(exchange, exchange.resource(resource.resource))
        if line["status"] in ("failed", "unconfirmed", "built"):
            raise UplinkError(f"{exchange_name}.{resource.resource}", line["error"] or "not sent")
        return {k: v for k, v in line.items() if isinstance(v, str | int | float | bool)}

    return deliver()


def receipt_sensor(exchange_name: str, resources: list[str]):
    @task.sensor(
        task_id="wait_for_receipts",
        mode="reschedule",
        poke_interval=RECEIPT_POKE.total_seconds(),
        timeout=RECEIPT_TIMEOUT.total_seconds(),
        exponential_backoff=True,
        max_wait=timedelta(minutes=30),
    )
    def wait_for_receipts() -> PokeReturnValue:
        from etl.contracts import find_exchange
        from etl.uplink.deliver import collect_receipts

        waiting = [
            w for w in collect_receipts(find_exchange(exchange_name)) if w["resource"] in resources
        ]
        return PokeReturnValue(
            is_done=not waiting, xcom_value=[w["package_id"] for w in waiting] or None
        )

    return wait_for_receipts()


def build_dag(exchange: ExchangeContract, resources: list[ExchangeResource], dag_id: str, cron):
    tz = load_profile().timezone
    start = pendulum.datetime(*schedule_start().timetuple()[:3], tz=tz)
    lines = [f"**{exchange.name}** ({exchange.name_en}), 接收方 {exchange.receiver.name}", ""]
    lines += [
        "| resource | 资源代码 | 名称 | 来源 | transport |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{r.resource}` | {r.code} | {r.name} | `{r.source}` | {exchange.transport_of(r).kind} |"
        for r in resources
    ]
    with DAG(
        dag_id=dag_id,
        dag_display_name=f"{dag_id} · {exchange.name}",
        description=f"{exchange.name_en}: signed, exactly-once uplink with receipts",
        doc_md="\n".join(lines),
        schedule=schedule_for(exchange, resources, cron, start.tz),
        start_date=start,
        catchup=False,
        # one package per resource in flight: runs of one exchange never overlap
        max_active_runs=1,
        tags=[exchange.exchange, "uplink"],
        default_args={
            "owner": exchange.owner,
            "retries": 3,
            "retry_delay": RETRY_DELAY,
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": MAX_RETRY_DELAY,
        },
    ) as dag:
        delivered = [deliver_task(exchange.exchange, r) for r in resources]
        waiting = receipt_sensor(exchange.exchange, [r.resource for r in resources])
        delivered >> waiting
    return dag


def build_dags() -> dict[str, DAG]:
    exchanges, errors = load_exchanges_each()
    for error in errors:
        log.warning("exchange contract skipped (run `countylake check`): %s", error)
    dags: dict[str, DAG] = {}
    for exchange in exchanges:
        own = [r for r in exchange.resources if r.schedule in (None, exchange.schedule)]
        if own:
            dags[exchange.dag_id] = build_dag(exchange, own, exchange.dag_id, exchange.schedule)
        for r in exchange.resources:
            if r not in own:
                dag_id = f"{exchange.dag_id}__{r.resource}"
                dags[dag_id] = build_dag(exchange, [r], dag_id, r.schedule)
    return dags


DAGS = build_dags()
