"""The per-dataset pipeline as two plain functions that Airflow tasks (or the CLI) call.

``extract`` reads one window of one dataset from its source, conforms and checks it, and stages
Parquet files; ``commit`` publishes the staged files into the lake (a folder swap in a local
lake, the manifest written last on an object store), advances the watermark and closes the
ledger entry. Both take and return small
JSON-serialisable dicts (paths, ids, counts), never data, so any executor can run them.
"""

from __future__ import annotations

from dataclasses import asdict


def extract(system: str, dataset: str, window_start: str, window_end: str, run_id: str) -> dict:
    """Stage one window of a dataset. Windows are aware ISO timestamps, half-open [start, end)."""
    from etl.extract import extract as stage

    return asdict(stage(system, dataset, window_start, window_end, run_id))


def commit(staged: dict) -> dict:
    """Publish what ``extract`` staged; returns the landed summary (rows, files, bytes, ...)."""
    from etl.extract import Staged
    from etl.land import commit as publish

    return publish(Staged(**staged))


def run(system: str, dataset: str, window_start: str, window_end: str, run_id: str) -> dict:
    """Both steps in one call, for the CLI and tests."""
    return commit(extract(system, dataset, window_start, window_end, run_id))
