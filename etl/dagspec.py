"""What the DAG files read at parse time: the contracts that load, the ones that do not, the
names of the assets they produce and the date schedules start from.

Airflow re-parses DAG files every few seconds, so this module imports only the contract loader
and the settings (pydantic and yaml), never pandas, pyarrow or duckdb; Airflow's SDK only inside
``cron_dag``, which only DAG files call.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path

from etl.contracts import ContractError, SystemContract, load_profile, load_system, schemas_root
from etl.settings import paths

DEFAULT_START_DATE = "2026-11-01"


def schedule_start() -> date:
    """First day DAG schedules cover (``COUNTYLAKE_START_DATE``, ISO date).

    A fixed setting rather than the simulation profile's start date: a real county goes live on
    a day of its own choosing, and catchup is off, so this only bounds the earliest window.
    """
    value = os.environ.get("COUNTYLAKE_START_DATE", DEFAULT_START_DATE)
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"COUNTYLAKE_START_DATE: {value!r} is not an ISO date") from exc


def cron_dag(dag_id: str, cron: str, **fields):
    """A DAG on ``cron`` in the county's time zone from ``schedule_start()``, one run at a time
    and no catchup: the weekly DAGs (the brief, the warehouse audit). ``fields``: the rest of
    ``airflow.sdk.DAG``'s arguments."""
    import pendulum
    from airflow.sdk import DAG, CronTriggerTimetable

    tz = load_profile().timezone
    start = pendulum.datetime(*schedule_start().timetuple()[:3], tz=tz)
    return DAG(
        dag_id=dag_id,
        schedule=CronTriggerTimetable(cron, timezone=start.tz),
        start_date=start,
        catchup=False,
        max_active_runs=1,
        **fields,
    )


def load_systems_each(root: Path | None = None) -> tuple[list[SystemContract], list[ContractError]]:
    """Load every system folder on its own, so one broken contract does not hide the others.

    Cached per process while no contract file changes: ``ingest.py`` and ``contract_errors.py``
    both read them, and ``dag.test`` re-parses the dags folder on every call.
    """
    base = (root or schemas_root()) / "systems"
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(base.rglob("*")))
    systems, errors = _load_systems_each(base, stamp)
    return list(systems), list(errors)


@lru_cache(maxsize=4)
def _load_systems_each(base: Path, stamp: tuple) -> tuple[tuple, tuple]:
    systems: list[SystemContract] = []
    errors: list[ContractError] = []
    for directory in sorted(base.iterdir()):
        if not (directory / "system.yaml").exists():
            continue
        try:
            systems.append(load_system(directory))
        except ContractError as exc:
            errors.append(exc)
    return tuple(systems), tuple(errors)


def raw_asset_name(system: str, dataset: str) -> str:
    """Stable name of a landed raw dataset; downstream DAGs schedule on ``Asset.ref(name=...)``."""
    return f"countylake.raw.{system}.{dataset}"


def raw_asset_uri(system: str, dataset: str, home: str | Path | None = None) -> str:
    """Where the dataset lands: ``file://<data root>/lake/raw/<system>/<dataset>``, or
    ``<COUNTYLAKE_LAKE_URL>/raw/<system>/<dataset>`` for a lake on an object store."""
    where = paths(home)
    if where.lake_remote:
        return f"{where.lake_root}/raw/{system}/{dataset}"
    return (where.raw / system / dataset).as_uri()


RAW_ASSET_GROUP = "countylake.raw"
