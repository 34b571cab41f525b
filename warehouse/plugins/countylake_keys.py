"""dbt-duckdb plugin: hand the HMAC pads and the build id to every DuckDB cursor as session
variables.

``etl.warehouse`` derives the inner and outer padded keys (K xor ipad, K xor opad) from the
deployment's secret and exports them as ``COUNTYLAKE_HMAC_IPAD`` / ``COUNTYLAKE_HMAC_OPAD``
(hex). Setting them here, as bound parameters of ``SET VARIABLE``, keeps them out of every
SQL text dbt renders: compiled models, ``target/``, the logs, the manifest and the docs only
ever show ``getvariable('countylake_hmac_ipad')``. DuckDB variables live in the connection,
never in the database file.
"""

from __future__ import annotations

import os

from dbt.adapters.duckdb.plugins import BasePlugin

PADS = {"ipad": "COUNTYLAKE_HMAC_IPAD", "opad": "COUNTYLAKE_HMAC_OPAD"}
BUILD = "COUNTYLAKE_BUILD_ID"  # rows carry the build that wrote them; its tests read those
# DuckDB's memory limit for the build (etl.warehouse sets it: see MEMORY_ENV there); DuckDB
# takes up to 80% of the machine without one and spills beyond one
MEMORY = "COUNTYLAKE_DUCKDB_MEMORY"
# DuckDB checkpoints the file at the commit that takes its write-ahead log past 16 MB, and both
# dbt threads wait meanwhile (2.5 s in an incremental build here). The build's file is private
# until it is swapped in: checkpoint it once, when dbt closes it, without the dbt_tmp tables
# dropped before then.
CHECKPOINT_THRESHOLD = "8GB"
# DuckDB's checkpoint compacts every changed table whose rows fit in fewer row groups once the
# deleted ones are gone: an incremental build replaces 3.5% of base_people and
# mart_profile__person, and the checkpoint rewrote both whole (1-1.5 s each) every night.
# etl.warehouse's checkpoint that completes a build compacts when deleted rows pass a share.
MAX_VACUUM_TASKS = 0


class Plugin(BasePlugin):
    def configure_connection(self, conn) -> None:
        # settings of the database instance, shared by every cursor
        memory = os.environ.get(MEMORY)
        if memory:
            conn.execute("SET memory_limit = ?", [memory])
        conn.execute("SET checkpoint_threshold = ?", [CHECKPOINT_THRESHOLD])
        conn.execute("SET max_vacuum_tasks = ?", [MAX_VACUUM_TASKS])
        self._set_variables(conn)

    def configure_cursor(self, cursor) -> None:
        # variables belong to one connection; dbt-duckdb gives every thread its own cursor
        self._set_variables(cursor)

    @staticmethod
    def _set_variables(conn) -> None:
        for name, env in PADS.items():
            value = os.environ.get(env)
            if value:
                conn.execute(f"SET VARIABLE countylake_hmac_{name} = unhex(?)", [value])
        build = os.environ.get(BUILD)
        if build:
            conn.execute("SET VARIABLE countylake_build = ?", [build])
