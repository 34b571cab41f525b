"""Surfaces broken department contracts as an Airflow import error (this file defines no DAG).

Airflow records import errors per DAG file and drops every DAG of a file that raises. So
``ingest.py`` builds the DAGs of the systems whose contracts load and skips the others, and
this file raises when any system contract is invalid: the UI then shows one import error here
naming each broken file, field and reason, while the valid departments keep their DAGs.
"""

from __future__ import annotations

from etl.contracts import ContractError
from etl.dagspec import load_systems_each


class BrokenContracts(ValueError):
    """One or more system contracts are invalid; the message lists each file, field and reason."""

    def __init__(self, errors: list[ContractError]):
        self.errors = errors
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{len(errors)} broken contract(s), DAGs not built:\n{lines}")


_, _errors = load_systems_each()
if _errors:
    raise BrokenContracts(_errors)
