"""Connectors to department systems. ``open_source`` picks one from the system's kind."""

from __future__ import annotations

from etl.connections import resolve
from etl.contracts import DatasetContract, SourceKind, SystemContract
from etl.settings import Paths
from etl.sources.base import Chunk, ReadPlan, ReadReport, Source


def open_source(system: SystemContract, dataset: DatasetContract, where: Paths) -> Source:
    url = resolve(system, where)
    if system.kind == SourceKind.SQL:
        from etl.sources.sql import SqlSource

        return SqlSource(system, dataset, url)
    if system.kind == SourceKind.HTTP:
        from etl.sources.http import HttpApiSource

        return HttpApiSource(system, dataset, url)
    from etl.sources.files import FileDropSource

    return FileDropSource(system, dataset, url)


__all__ = ["Chunk", "ReadPlan", "ReadReport", "Source", "open_source"]
