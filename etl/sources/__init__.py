"""Connectors to department systems. ``open_source`` picks one from the system's kind;
``probe_sources`` asks every one whether its next read would work."""

from __future__ import annotations

from etl.connections import redact, resolve, resolve_with_origin
from etl.contracts import DatasetContract, SourceKind, SystemContract
from etl.errors import CountylakeError
from etl.settings import Paths
from etl.sources.base import Chunk, ReadPlan, ReadReport, Source


def open_source(system: SystemContract, dataset: DatasetContract, where: Paths) -> Source:
    return _source(system, dataset, resolve(system, where))


def _source(system: SystemContract, dataset: DatasetContract, url: str) -> Source:
    if system.kind == SourceKind.SQL:
        from etl.sources.sql import SqlSource

        return SqlSource(system, dataset, url)
    if system.kind == SourceKind.HTTP:
        from etl.sources.http import HttpApiSource

        return HttpApiSource(system, dataset, url)
    from etl.sources.files import FileDropSource

    return FileDropSource(system, dataset, url)


def probe_sources(systems: list[SystemContract], where: Paths) -> list[dict]:
    """For every dataset: where its connection came from, and whether its source answers with
    what its contract expects (the columns under its drift policy), without landing anything.
    A county runs it after writing its contracts and connections, before the first night."""
    found = []
    for system in systems:
        url, origin = resolve_with_origin(system, where)
        for dataset in system.datasets:
            row = {
                "dataset": f"{system.system}.{dataset.dataset}",
                "connection": origin,
                "source": redact(url),
                "found": None,
                "error": None,
            }
            report = ReadReport()
            try:
                source = _source(system, dataset, url)
                row["source"] = source.describe()
                row["found"] = source.probe(report)
            except CountylakeError as exc:
                row["error"] = str(exc)
            except Exception as exc:  # an unforeseen failure of one source is its row, not the end
                row["error"] = f"{redact(url)}: {type(exc).__name__}: {exc}".splitlines()[0]
            if row["found"] and report.extra_columns:
                row["found"] += f"; new at the source: {sorted(report.extra_columns)}"
            if row["found"] and report.missing_columns:
                gone = sorted(report.missing_columns)
                row["found"] += f"; gone at the source (read as empty): {gone}"
            found.append(row)
    return found


__all__ = ["Chunk", "ReadPlan", "ReadReport", "Source", "open_source", "probe_sources"]
