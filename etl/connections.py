"""Resolve a contract's connection id to a URL.

Contracts name connections by id only; the URL and its credentials come, in this order, from
``COUNTYLAKE_CONN_<ID>``, Airflow's ``AIRFLOW_CONN_<ID>``, an Airflow connection (inside a task),
the deployment's ``<home>/connections.json`` (written by ``countylake simulate --target``, never
committed), and last the contract's embedded default for the demo.
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import unquote, urlsplit

from etl.contracts import SystemContract
from etl.settings import Paths, paths


def resolve(system: SystemContract, where: Paths | None = None) -> str:
    return resolve_with_origin(system, where)[0]


def resolve_with_origin(system: SystemContract, where: Paths | None = None) -> tuple[str, str]:
    """(URL, where it came from): the variable, "Airflow connection", the deployment's file or
    "contract default", so that an operator sees which of the places above won."""
    where = where or paths()
    key = system.connection.upper()
    for var in (f"COUNTYLAKE_CONN_{key}", f"AIRFLOW_CONN_{key}"):
        if os.environ.get(var):
            return os.environ[var], var
    if "airflow.sdk" in sys.modules:  # only inside Airflow: never import it here ourselves
        url = _airflow_connection(system.connection)
        if url:
            return url, "Airflow connection"
    deployment = where.home / "connections.json"
    if deployment.exists():
        known = json.loads(deployment.read_text(encoding="utf-8"))
        if system.connection in known:
            return known[system.connection], str(deployment)
    return system.embedded.format(home=where.home), "contract default"


def _airflow_connection(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook

    try:
        return from_airflow(BaseHook.get_connection(conn_id).get_uri())
    except Exception:  # an unknown id is not an error: fall through to the next source
        return None


def from_airflow(uri: str) -> str:
    """An Airflow connection's URI as the URL it was made from: Airflow percent-encodes the
    path (``sqlite:///%2Fdata%2Fhealth.db``, ``s3://outbox/county%2Fcity``), which would name
    another file, object prefix or endpoint."""
    parts = urlsplit(uri)  # (urlunsplit would read sqlite's "//" path as a host)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}{query}"


def record_deployment(where: Paths, urls: dict[str, str]) -> None:
    """Merge connection URLs into ``<home>/connections.json`` (used by simulate --target)."""
    target = where.home / "connections.json"
    known = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
    known.update(urls)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(known, indent=2, ensure_ascii=False), encoding="utf-8")


def redact(url: str) -> str:
    """The URL without its password, for messages and the ledger."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def credentials(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return unquote(parts.username or ""), unquote(parts.password or "")
