"""What ``dags/uplink.py`` reads at parse time: the exchange contracts that load, the ones that
do not, and the names of the warehouse assets a resource waits for.

Only the contract loader is imported (pydantic and yaml), never duckdb, pyarrow or Airflow.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from etl.contracts import (
    ContractError,
    ExchangeContract,
    _system_names,
    load_exchange,
    load_profile,
    schemas_root,
)

MART_ASSET_PREFIX = "countylake.mart"


def mart_asset_name(relation: str) -> str | None:
    """The Asset the warehouse DAG emits for a mart (``countylake.mart.<model>``, see
    ``dags/warehouse.py``); None for a relation outside ``marts`` (base libraries are rebuilt
    by the same build but emit no Asset of their own)."""
    schema, _, table = relation.partition(".")
    return f"{MART_ASSET_PREFIX}.{table}" if schema == "marts" else None


def load_exchanges_each(
    root: Path | None = None,
) -> tuple[list[ExchangeContract], list[ContractError]]:
    """The enabled exchanges whose contracts load, and the errors of those that do not."""
    root = root or schemas_root()
    folder = root / "exchanges"
    files = sorted(folder.glob("*.yaml")) if folder.exists() else []
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    loaded, errors = _load(root, stamp)
    return list(loaded), list(errors)


@lru_cache(maxsize=4)
def _load(root: Path, stamp: tuple) -> tuple[tuple, tuple]:
    try:
        enabled = set(load_profile(root).exchanges)
    except ContractError as exc:
        return (), (exc,)
    systems = _system_names(root)
    loaded, errors = [], []
    for path, _, _ in stamp:
        if Path(path).stem not in enabled:
            continue
        try:
            loaded.append(load_exchange(Path(path), systems))
        except ContractError as exc:
            errors.append(exc)
    return tuple(loaded), tuple(errors)
