"""Schema drift: what changed in a source since the last landed window, and what was done.

A window's *signature* is the Arrow type of each contract column as the source sent it and the
encodings of its files. Compared with the previous landed window's signature (kept under
``state/signatures/``) and with the contract, it yields drift records:

- ``added`` / ``removed`` columns: handled while reading by the contract's policy
  (``etl.sources.base.columns_to_read``): evolve keeps added columns in ``_extra`` and fills
  removed nullable ones with nulls, discard_columns drops added ones, freeze rejects both;
- ``type_changed`` / ``encoding_changed``: values are still cast to the contract's types and
  decoded; under freeze the window is rejected instead.

Every record lands in the ledger's ``drift`` table and the window's manifest, so nothing is
dropped without a trace.
"""

from __future__ import annotations

import json
from pathlib import Path

from etl.contracts import DatasetContract
from etl.errors import CountylakeError
from etl.settings import Paths
from etl.sources import ReadReport

ADDED_ACTION = {"evolve": "landed in _extra", "discard_columns": "discarded"}


def signature_path(where: Paths, system: str, dataset: str) -> Path:
    return where.state / "signatures" / system / f"{dataset}.json"


def signature(report: ReadReport) -> dict:
    return {"types": report.source_types, "encodings": sorted(set(report.encodings.values()))}


def detect(where: Paths, system: str, dataset: DatasetContract, report: ReadReport) -> list[dict]:
    """Drift records of a window; raises under policy freeze for a type or encoding change."""
    policy = dataset.quality.drift
    records = [
        {
            "change": "added",
            "column": c,
            "detail": "not in the contract",
            "action": ADDED_ACTION[policy],
        }
        for c in sorted(report.extra_columns)
    ] + [
        {
            "change": "removed",
            "column": c,
            "detail": "absent at the source",
            "action": "filled_null",
        }
        for c in sorted(report.missing_columns)
    ]
    path = signature_path(where, system, dataset.dataset)
    before = json.loads(path.read_text()) if path.exists() else None
    now = signature(report)
    if before:
        for column, kind in sorted(now["types"].items()):
            was = before["types"].get(column)
            if was and was != kind:
                records.append(
                    {
                        "change": "type_changed",
                        "column": column,
                        "detail": f"{was} -> {kind}",
                        "action": "cast to the contract type",
                    }
                )
        if now["encodings"] and before["encodings"] and now["encodings"] != before["encodings"]:
            records.append(
                {
                    "change": "encoding_changed",
                    "column": None,
                    "detail": f"{', '.join(before['encodings'])} -> {', '.join(now['encodings'])}",
                    "action": "decoded",
                }
            )
    changed = [r for r in records if r["change"] in ("type_changed", "encoding_changed")]
    if policy == "freeze" and changed:
        raise CountylakeError(
            f"{system}.{dataset.dataset}",
            "schema drift under policy freeze: "
            + "; ".join(f"{r['change']} {r['column'] or ''} {r['detail']}" for r in changed),
            "update the contract, or set quality.drift to evolve",
        )
    return records


def remember(where: Paths, system: str, dataset: str, staged_signature: dict) -> None:
    """Keep the committed window's signature for the next comparison."""
    path = signature_path(where, system, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(staged_signature, sort_keys=True))
