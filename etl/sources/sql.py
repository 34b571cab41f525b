"""SQL department systems (SQLite, PostgreSQL, MariaDB/MySQL and the domestic databases that
speak their protocols), streamed as Arrow record batches: no row cursors.

PostgreSQL is read through ADBC's libpq driver (the wheel's, or the build that
``COUNTYLAKE_ADBC_POSTGRESQL_DRIVER`` names), which asks for binary ``COPY`` and decodes it
into Arrow in C; on the county's tables it needs about a third less CPU than connectorx, and
CPU is what a two-core county server runs out of. MySQL/MariaDB and SQLite go through
connectorx."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import connectorx as cx
import pyarrow as pa

from etl.connections import redact
from etl.contracts import DatasetContract, SystemContract
from etl.errors import SourceError
from etl.sources.base import Chunk, ReadPlan, ReadReport, columns_to_read

BATCH_ROWS = 131_072
# ADBC sizes its batches in bytes (16 MB by default); 8 MB keeps the batches in flight (read
# ahead, validated, queued for Parquet) within the extraction's memory budget.
BATCH_BYTES = str(8 << 20)
_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}


def database_url(url: str) -> str:
    """Accept SQLAlchemy-style URLs (postgresql+psycopg://, mariadb+pymysql://) too."""
    scheme, _, rest = url.partition("://")
    base = _SCHEMES.get(scheme.split("+")[0])
    if base is None:
        raise SourceError(
            redact(url),
            f"unsupported database scheme {scheme!r}",
            "use postgresql://, mysql:// or sqlite:///",
        )
    return f"{base}://{rest}"


def quote(name: str, url: str) -> str:
    return f"`{name}`" if url.startswith("mysql") else f'"{name}"'


def stream_query(url: str, query: str, batch_rows: int = BATCH_ROWS) -> pa.RecordBatchReader:
    """A pyarrow RecordBatchReader over the query's result (``url`` as ``database_url``
    gives it)."""
    if url.startswith("postgresql://"):
        return _postgres_stream(url, query)
    return cx.read_sql(url, query, return_type="arrow_stream", batch_size=batch_rows)


# ADBC databases by (process, URL, type resolver): opening one connects to read the server's
# version, and a connection from one is a plain libpq connect. A process that extracts several
# tables of a system (``countylake run``, a Celery worker) opens each once.
_DATABASES: dict[tuple[int, str, str], object] = {}
# How ADBC maps PostgreSQL's type OIDs to Arrow. "builtin": from a table built into the driver,
# which knows PostgreSQL's own types. "server": from the server's catalogue, read when the
# database opens (~40 ms, most of a small table's read, once per database and process). A
# column of a type the table does not know (an enum, a composite or an extension's type)
# arrives as opaque bytes; its query is run again on a database that asked the server, and
# so is every later query to that URL in the process.
_SERVER_TYPES: set[str] = set()
RESOLVER_OPTION = "adbc.postgresql.type_resolver_mode"


DRIVER_ENV = "COUNTYLAKE_ADBC_POSTGRESQL_DRIVER"


def postgres_driver() -> str:
    """The ADBC PostgreSQL driver to load: ``$COUNTYLAKE_ADBC_POSTGRESQL_DRIVER`` (a shared
    library's path, or a driver manifest's path or name, which ADBC's driver manager looks for
    in its manifest folders), else the library in the adbc-driver-postgresql wheel.

    A deployment chooses its own build: its distribution's package, linked to the system's
    libpq and OpenSSL and patched with them, or an optimised one (PyPI's wheels since 1.9.0
    are built without optimisation and decode on about twice the CPU; see the README)."""
    import adbc_driver_postgresql

    return os.environ.get(DRIVER_ENV) or adbc_driver_postgresql._driver_path()


def _adbc_database(url: str, resolver: str):
    key = (os.getpid(), url, resolver)  # a forked child opens its own
    if key not in _DATABASES:
        if not _DATABASES:
            atexit.register(_close_databases)
        _DATABASES[key] = _open_database(url, resolver)
    return _DATABASES[key]


def _open_database(url: str, resolver: str):
    import adbc_driver_manager as adbc

    driver, configured = postgres_driver(), os.environ.get(DRIVER_ENV)
    try:
        try:
            return adbc.AdbcDatabase(driver=driver, uri=url, **{RESOLVER_OPTION: resolver})
        except adbc.NotSupportedError:
            # A driver older than the option (1.8.0 and before) maps every type from the
            # server's catalogue, as "server" does.
            return adbc.AdbcDatabase(driver=driver, uri=url)
    except adbc.ProgrammingError as exc:
        if exc.status_code != adbc.AdbcStatusCode.NOT_FOUND:
            raise
        raise SourceError(
            f"{DRIVER_ENV}={configured}" if configured else driver,
            f"the ADBC PostgreSQL driver cannot be loaded: {_first_line(exc)}",
            f"point {DRIVER_ENV} at a libadbc_driver_postgresql.so or a driver manifest, "
            "or unset it to use the driver installed with adbc-driver-postgresql",
        ) from exc


# Idle connections by the same key: the queries of a run (the probes, the digest, the read)
# share a session per database instead of connecting for each (2-6 ms: the server starts a
# process for every session). A connection is given back only when its stream has ended; one
# left mid-stream is closed.
_IDLE: dict[tuple[int, str, str], list] = {}
_IDLE_LOCK = threading.Lock()


def _connection(url: str, resolver: str) -> tuple[object, bool]:
    """An idle connection to ``url`` (True) or a new one (False)."""
    import adbc_driver_manager

    with _IDLE_LOCK:
        idle = _IDLE.get((os.getpid(), url, resolver))
        if idle:
            return idle.pop(), True
    return adbc_driver_manager.AdbcConnection(_adbc_database(url, resolver)), False


def _give_back(url: str, resolver: str, connection) -> None:
    with _IDLE_LOCK:
        _IDLE.setdefault((os.getpid(), url, resolver), []).append(connection)


def _close_databases() -> None:
    """At exit: this process's idle connections, then its databases (ADBC refuses to release
    a database with a connection open)."""
    with _IDLE_LOCK:
        for (pid, *_), idle in list(_IDLE.items()):
            if pid == os.getpid():
                _close(idle)
        _IDLE.clear()
    for (pid, *_), database in list(_DATABASES.items()):
        if pid == os.getpid():
            database.close()
    _DATABASES.clear()


def _postgres_stream(url: str, query: str) -> pa.RecordBatchReader:
    """ADBC's stream of ``query``. Its connection is given back for the next query when the
    stream ends, and closed when it is dropped before.

    Through the driver manager's own objects rather than its DB-API module, which imports
    pyarrow.dataset and pandas (most of a second on every first extraction in a process)."""
    resolver = "server" if url in _SERVER_TYPES else "builtin"
    reader, opened = _execute(url, query, resolver)
    if resolver == "builtin" and _unknown_types(reader.schema):
        reader.close()
        _close(opened)
        _SERVER_TYPES.add(url)
        resolver = "server"
        reader, opened = _execute(url, query, resolver)
    schema = pa.schema([_storage_field(f) for f in reader.schema])

    def batches():
        ended = False
        try:
            for batch in reader:
                yield pa.RecordBatch.from_arrays(
                    [_storage(column) for column in batch.columns], schema=schema
                )
            ended = True
        finally:
            reader.close()
            if ended:
                _close(opened[1:])
                _give_back(url, resolver, opened[0])
            else:
                _close(opened)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _execute(url: str, query: str, resolver: str) -> tuple[pa.RecordBatchReader, list]:
    """The query's stream and what it holds open: [connection, statement]."""
    import adbc_driver_manager

    connection, idle = _connection(url, resolver)
    opened = [connection]
    try:
        opened.append(adbc_driver_manager.AdbcStatement(connection))
        statement = opened[-1]
        statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": BATCH_BYTES})
        statement.set_sql_query(query)
        stream, _ = statement.execute_query()
        return pa.RecordBatchReader._import_from_c(stream.address), opened
    except BaseException:
        _close(opened)
        if idle:  # the server may have ended a session left idle: once more, on a new one
            return _execute(url, query, resolver)
        raise


def _unknown_types(schema: pa.Schema) -> bool:
    """Whether a column (or a list's items) is of a type the builtin resolver did not know:
    ADBC names it ``unnamed<oid:N>``."""
    fields = [*schema, *(f.type.value_field for f in schema if pa.types.is_list(f.type))]
    return any(
        (f.metadata or {}).get(b"ADBC:postgresql:typname", b"").startswith(b"unnamed<")
        for f in fields
    )


def _close(opened: list) -> None:
    """Close ADBC's statement and connection, the last opened first."""
    for handle in reversed(opened):
        handle.close()


def _storage_field(f: pa.Field) -> pa.Field:
    """ADBC wraps NUMERIC and JSON text in extension types; the validator types plain text."""
    kind = f.type.storage_type if isinstance(f.type, pa.BaseExtensionType) else f.type
    return pa.field(f.name, kind, f.nullable)


def _storage(column: pa.Array) -> pa.Array:
    return column.storage if isinstance(column.type, pa.BaseExtensionType) else column


class SqlSource:
    def __init__(self, system: SystemContract, dataset: DatasetContract, url: str):
        self.system, self.dataset = system, dataset
        self.url = database_url(url)
        self.table = dataset.table

    def describe(self) -> str:
        return f"{redact(self.url)} table {self.table}"

    def _q(self, name: str) -> str:
        return quote(name, self.url)

    def _run(self, query: str, what: str):
        if self.url.startswith("sqlite://"):
            # a URL's path is percent-encoded (a space as %20); connectorx opens it unquoted
            path = Path(unquote(urlsplit(self.url).path))
            if not path.exists():
                raise SourceError(
                    self.describe(),
                    f"database file {path} does not exist",
                    "run `countylake simulate` or fix the connection",
                )
            with open(path, "rb") as f:  # connectorx would retry a non-database for a minute
                if f.read(16) != b"SQLite format 3\x00":
                    raise SourceError(
                        self.describe(),
                        f"{path} is not a SQLite database",
                        "the file is damaged or was replaced; restore it",
                    )
        try:
            return stream_query(self.url, query).read_all()
        except (SourceError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # connectorx raises RuntimeError or panics; ADBC its Error
            raise SourceError(
                self.describe(),
                f"{what} failed: {_first_line(exc)}",
                "check that the system is up and the connection is right",
            ) from exc

    def source_columns(self) -> list[str]:
        probe = self._run(f"SELECT * FROM {self._q(self.table)} WHERE 1 = 0", "probe")
        return probe.column_names

    def max_value(self, column: str) -> str | None:
        result = self._run(
            f"SELECT MAX({self._q(column)}) AS m FROM {self._q(self.table)}",
            "reading the high-water mark",
        )
        value = result.column(0)[0].as_py()
        return None if value is None else str(value)

    def fingerprint(self) -> tuple[int, str] | None:
        """(rows, digest) of the table's content, computed by the database without sending
        it: the sum of a 64-bit hash of every row's columns (those ``read`` reads, each quoted,
        so that NULL and 'NULL' differ). 60 ms for the county's 130,000 households against
        0.5 s to read and compare them (etl.snapshot.unchanged_at_source). None where the
        database has no hash function (SQLite) or the columns break the contract (the read
        says why)."""
        if self.url.startswith("sqlite"):
            return None
        columns, error = columns_to_read(self.dataset, self.source_columns(), ReadReport())
        if error:
            return None
        if self.url.startswith("postgresql"):
            row = ", ".join(f"quote_nullable({self._q(c)})" for c in columns)
            digest = f"cast(sum(hashtextextended(concat_ws(',', {row}), 0)) as text)"
        else:  # MySQL and MariaDB: QUOTE gives NULL unquoted
            row = ", ".join(f"quote({self._q(c)})" for c in columns)
            digest = (  # as text: connectorx cannot take the sum's decimal scale
                "cast(sum(cast(conv(left(md5(concat_ws(',', "
                + row
                + ")), 16), 16, 10) as unsigned)) as char)"
            )
        result = self._run(
            f"SELECT count(*) AS n, {digest} AS h FROM {self._q(self.table)}", "digesting the table"
        )
        rows, total = (result.column(i)[0].as_py() for i in range(2))
        return int(rows), str(total)

    def query(self, plan: ReadPlan, columns: list[str]) -> str:
        """The SELECT that reads ``plan``'s range of ``columns`` (the benchmark reuses it)."""
        q = self._q
        if self.url.startswith("sqlite"):
            # SQLite keeps whatever it is given: read text and let etl.validate type each cell,
            # so one bad date costs one row instead of the run. connectorx infers an expression's
            # type from its first value, so NULL is read as '' (etl.validate reads '' as NULL).
            select = ", ".join(f"COALESCE(CAST({q(c)} AS TEXT), '') AS {q(c)}" for c in columns)
        else:
            select = ", ".join(q(c) for c in columns)
        query = f"SELECT {select} FROM {q(self.table)}"
        where = []
        inc = self.dataset.incremental
        if inc.column:
            col = q(self.dataset.columns[self.dataset.column_names.index(inc.column)].at_source)
            if inc.strategy == "append_id":
                if plan.lower is not None:
                    where.append(f"{col} > {int(plan.lower)}")
                if plan.upper is not None:
                    where.append(f"{col} <= {int(plan.upper)}")
            else:
                if plan.lower is not None:
                    where.append(f"{col} >= '{plan.lower}'")
                if plan.upper is not None:
                    where.append(f"{col} < '{plan.upper}'")
        if where:
            query += " WHERE " + " AND ".join(where)
        return query

    def probe(self, report: ReadReport) -> str:
        """What the next read would take, without reading a row (``countylake check
        --sources``)."""
        return f"{len(self._columns(report))} columns"

    def _columns(self, report: ReadReport) -> list[str]:
        """The table's columns that a read takes, under the contract's drift policy."""
        columns, error = columns_to_read(self.dataset, self.source_columns(), report)
        if error:
            raise SourceError(
                self.describe(),
                error,
                "the department changed its schema; update the contract (or quality.drift)",
            )
        return columns

    def read(self, plan: ReadPlan, report: ReadReport) -> Iterator[Chunk]:
        query = self.query(plan, self._columns(report))
        try:
            reader = stream_query(self.url, query)
            row = 1
            for batch in reader:
                if batch.num_rows:
                    yield Chunk(batch, self.table, row)
                    row += batch.num_rows
        except SourceError:
            raise
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # connectorx panics surface as pyo3 PanicException; ADBC Error
            raise SourceError(self.describe(), f"reading failed: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
