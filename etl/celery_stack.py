"""The same DAGs on Airflow's CeleryExecutor: Redis as broker, PostgreSQL as metadata database
and result backend, two Celery workers (``make demo-celery`` and ``tests/test_celery.py``).

:class:`CeleryStack` runs one deployment as subprocesses of the caller: ``airflow api-server``
(UI, REST API and the Execution API the workers' tasks talk to), ``airflow scheduler``,
``airflow dag-processor`` and N ``airflow celery worker`` with distinct Celery hostnames. Its
Airflow home is ``<data root>/airflow/celery`` (beside the embedded SQLite home of
``make demo``), its metadata database a dedicated PostgreSQL database created when missing, and
each process logs to ``<Airflow home>/logs/stack/<name>.log``. Leaving the ``with`` block (also
on an exception or Ctrl-C) stops every process group and anything they spawned.

:func:`run_day` triggers DAG runs for the windows of one day through the REST API and waits for
them, printing progress and, for a failed task, the tail of its log; the warehouse DAG, when
the dags folder has one, runs after the department DAGs.

The environment reuses :func:`etl.orchestrate.airflow_env` (data root, dags folder) and changes
what a distributed deployment needs; nothing here imports Airflow itself: it is configured by
environment at import time, so anything that needs a DagBag runs in a child interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from etl.settings import paths

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/1"
DEFAULT_DATABASE = "countylake_airflow"
DEFAULT_QUEUE = "countylake"
# Where the deployment's servers are, when not the machine's own (no credentials in git).
POSTGRES_ENV, REDIS_ENV = "COUNTYLAKE_CELERY_POSTGRES", "COUNTYLAKE_CELERY_REDIS"
WAREHOUSE_DAG = "warehouse"
INGEST_TAG = "ingest"
ADMIN = "admin"
TERMINAL = {"success", "failed"}
# Task states after which a task will not run again in this run.
DONE_TASK = {"success", "failed", "upstream_failed", "skipped", "removed"}

Say = Callable[[str], None]


def _mute(_line: str) -> None:
    return None


# --------------------------------------------------------------------------- environment


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def database_url(server: str, database: str, driver: str = "psycopg") -> str:
    """``postgresql://user@host:port`` and a database name as a SQLAlchemy URL."""
    parts = urlsplit(server)
    scheme = "postgresql" + (f"+{driver}" if driver else "")
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def stack_secrets(af_home: Path) -> dict[str, str]:
    """The secrets every component must share (JWT signing, API session key) and the UI admin's
    password: generated once per Airflow home into ``secrets.json`` (0600), never committed."""
    target = af_home / "secrets.json"
    known = json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}
    wanted = ("jwt_secret", "secret_key", "admin_password")
    if not all(known.get(k) for k in wanted):
        for key in wanted:
            if not known.get(key):
                known[key] = secrets.token_urlsafe(24 if key == "admin_password" else 48)
        af_home.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(known, f)
    return known


def celery_env(
    home: str | Path | None = None,
    *,
    database: str = DEFAULT_DATABASE,
    postgres: str | None = None,
    redis: str | None = None,
    queue: str = DEFAULT_QUEUE,
    api_host: str = "127.0.0.1",
    api_port: int = 8080,
    log_port: int = 8793,
    concurrency: int = 2,
    schedule: bool = False,
) -> dict[str, str]:
    """The environment shared by every process of one Celery deployment.

    Built on the embedded :func:`~etl.orchestrate.airflow_env` (data root, dags folder, no
    examples), with its own Airflow home, PostgreSQL for metadata and Celery results, Redis as
    broker, the Execution API on the API server, shared secrets, a UI user ``admin`` whose
    password is in ``secrets.json``, and the simulated county's connections as
    ``AIRFLOW_CONN_<ID>``. ``schedule=False`` (the demo and tests) makes the scheduler run only
    triggered runs, so unpausing a DAG does not also start a run for the real yesterday.
    """
    from etl.orchestrate import airflow_env

    where = paths(home)
    base = airflow_env(where.home)
    af_home = where.airflow / "celery"
    postgres = postgres or os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES
    redis = redis or os.environ.get(REDIS_ENV) or DEFAULT_REDIS
    metadata = database_url(postgres, database)
    keys = stack_secrets(af_home)
    api = f"http://{api_host}:{api_port}"
    env = {k: v for k, v in base.items() if k != "AIRFLOW__LOGGING__NAMESPACE_LEVELS"}
    env.update(
        {
            "AIRFLOW_HOME": str(af_home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
            # Airflow 3 also opens an async engine; without this it wants asyncpg.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata,
            "AIRFLOW__CELERY__BROKER_URL": redis,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
            # Said explicitly (it is the provider's default) so workers do not warn at start.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__API__HOST": api_host,
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(af_home / "passwords.json"),
            # One worker serves the shared log folder; the API server reads finished logs there.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedule),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        }
    )
    env.update(county_connections(where.home))
    return env


def county_connections(home: Path) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` for each department system, as :func:`etl.connections.resolve`
    resolves it here (environment, ``connections.json``, then the contract's demo default)."""
    from etl.connections import resolve
    from etl.contracts import load_systems

    where = paths(home)
    return {f"AIRFLOW_CONN_{s.connection.upper()}": resolve(s, where) for s in load_systems()}


def ensure_database(server: str, database: str) -> bool:
    """Create ``database`` on the PostgreSQL ``server`` if missing; True when it was created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url(server, "postgres", driver=""), autocommit=True) as con:
        found = con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if found:
            return False
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        return True


def drop_database(server: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url(server, "postgres", driver=""), autocommit=True) as con:
        con.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the parent dies (Linux), so even a killed test
    run leaves no Airflow behind."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None
    seen: dict = field(default_factory=dict)  # pid -> psutil.Process, every descendant met

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def remember_descendants(self) -> None:
        import psutil

        if not self.alive():
            return
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.Error:
            pass


class StackError(RuntimeError):
    pass


class CeleryStack:
    """One Celery deployment of Airflow, run as subprocesses; a context manager.

    ``ephemeral=True`` (tests) drops the metadata database and purges the Celery queue on
    stop. The REST API is reached as the ``admin`` user (:meth:`api`).
    """

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        workers: int = 2,
        concurrency: int = 2,
        database: str = DEFAULT_DATABASE,
        postgres: str | None = None,
        redis: str | None = None,
        queue: str = DEFAULT_QUEUE,
        host: str = "127.0.0.1",
        port: int = 0,
        ephemeral: bool = False,
        schedule: bool = False,
        dags_folder: str | Path | None = None,
        progress: Say | None = print,
    ):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.where = paths(home)
        self.database = database
        self.postgres = postgres or os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES
        self.redis = redis or os.environ.get(REDIS_ENV) or DEFAULT_REDIS
        self.queue = queue
        self.host = host
        self.port = port or free_port(host)
        self.ephemeral = ephemeral
        self.say = progress or _mute
        self.worker_names = [f"{queue}-w{i}@{socket.gethostname()}" for i in range(1, workers + 1)]
        self.env = celery_env(
            self.where.home,
            database=database,
            postgres=self.postgres,
            redis=self.redis,
            queue=queue,
            api_host=host,
            api_port=self.port,
            log_port=free_port(host),
            concurrency=concurrency,
            schedule=schedule,
        )
        if dags_folder is not None:  # tests: the repo's DAGs plus one of their own
            self.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(dags_folder).resolve())
        self.af_home = Path(self.env["AIRFLOW_HOME"])
        self.logs = self.af_home / "logs" / "stack"
        self.components: list[Component] = []
        self._token: str | None = None
        self._http = None
        self._celery = None
        self._described: dict[str, dict] = {}
        self._stopped = False
        self.started_at: float | None = None

    # ------------------------------------------------------------------ facts

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_password(self) -> str:
        return stack_secrets(self.af_home)["admin_password"]

    def child_env(self) -> dict[str, str]:
        """The caller's environment without its own Airflow settings, plus the deployment's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(self.env)
        return env

    def _airflow(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "airflow", *args]

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> CeleryStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def prepare(self) -> None:
        """Check the servers, create the database, migrate it, write the UI password file."""
        for url, port, name in ((self.postgres, 5432, "PostgreSQL"), (self.redis, 6379, "Redis")):
            if not reachable(url, port):
                raise StackError(f"{name} is not answering at {url} (shared/services.sh starts it)")
        self.af_home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        passwords = Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({ADMIN: self.admin_password}, f)
        if ensure_database(self.postgres, self.database):
            self.say(f"created PostgreSQL database {self.database}")
        clock = time.perf_counter()
        done = subprocess.run(
            self._airflow("db", "migrate"),
            env=self.child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        (self.logs / "db-migrate.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise StackError(f"airflow db migrate failed:\n{tail}")
        self.say(
            f"metadata database {self.database} migrated ({time.perf_counter() - clock:.1f} s)"
        )

    def start(self, timeout: float = 300) -> None:
        """Start every component and wait until the API server reports a healthy scheduler and
        DAG processor and every worker answers a Celery ping."""
        self.started_at = time.perf_counter()
        self.prepare()
        specs = [
            ("api-server", self._airflow("api-server", "--host", self.host, "--port",
                                         str(self.port), "--workers", "1")),
            ("scheduler", self._airflow("scheduler")),
            ("dag-processor", self._airflow("dag-processor")),
        ]  # fmt: skip
        for i, name in enumerate(self.worker_names):
            argv = self._airflow(
                "celery", "worker", "--celery-hostname", name, "--queues", self.queue,
                "--without-mingle", "--without-gossip",
            )  # fmt: skip
            if i:  # they share a machine: one log server on the shared log folder is enough
                argv.append("--skip-serve-logs")
            specs.append((f"worker-{i + 1}", argv))
        env = self.child_env()
        for name, argv in specs:
            log = self.logs / f"{name}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as a whole
                    preexec_fn=_die_with_parent,  # runs before exec; nothing else is forking here
                )
            self.components.append(Component(name, argv, log, process))
        self.say(f"started {', '.join(c.name for c in self.components)}; logs in {self.logs}")
        self.wait_healthy(timeout)
        self.say(f"stack up in {time.perf_counter() - self.started_at:.0f} s: {self.url}")

    def check_alive(self) -> None:
        for c in self.components:
            c.remember_descendants()
            if not c.alive():
                code = c.process.returncode if c.process else None
                raise StackError(f"{c.name} exited ({code}); its log ends:\n{c.tail()}")

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health: dict = {}
        pong: set[str] = set()
        while time.monotonic() < deadline:
            self.check_alive()
            health = self.health()
            ok = all(
                (health.get(k) or {}).get("status") == "healthy"
                for k in ("metadatabase", "scheduler", "dag_processor")
            )
            if ok:
                pong = self.ping_workers()
                if pong >= set(self.worker_names):
                    return
            time.sleep(1)
        raise StackError(
            f"not healthy after {timeout:.0f} s: health {health}, workers answering "
            f"{sorted(pong)} of {self.worker_names}; logs in {self.logs}"
        )

    def stop(self, grace: float = 20) -> None:
        """SIGTERM each component (workers and scheduler first), SIGKILL what is left after
        ``grace`` seconds: the process groups and every descendant seen on the way."""
        if self._stopped:
            return
        self._stopped = True
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            self._stop(grace)
        finally:
            if main_thread and previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _stop(self, grace: float) -> None:
        import psutil

        if not self.components:
            self._cleanup()
            return
        order = sorted(self.components, key=lambda c: c.name in ("api-server", "dag-processor"))
        for c in order:
            c.remember_descendants()
            if c.alive():
                with contextlib.suppress(ProcessLookupError):
                    c.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.alive() for c in order):
            for c in order:
                c.remember_descendants()
            time.sleep(0.2)
        for c in order:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.process.pid, signal.SIGKILL)
            for proc in c.seen.values():
                with contextlib.suppress(psutil.Error):
                    if proc.is_running():
                        proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.process.wait(timeout=10)
        stopped = ", ".join(f"{c.name} ({c.process.returncode})" for c in order)
        self.say(f"stopped {stopped}")
        self._cleanup()

    def leftovers(self) -> list[int]:
        """Pids of this stack's processes still running (none after :meth:`stop`)."""
        import psutil

        left = []
        for c in self.components:
            procs = [*c.seen.values()]
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(c.process.pid))
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                        left.append(proc.pid)
        return sorted(set(left))

    def _cleanup(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._celery is not None:
            self._celery.close()
            self._celery = None
        if not self.ephemeral:
            return
        with contextlib.suppress(Exception):
            self.purge_queue()
        try:
            drop_database(self.postgres, self.database)
        except Exception as exc:  # reported, never hiding the test's own failure
            self.say(f"could not drop database {self.database}: {exc}")

    # ------------------------------------------------------------------ Celery

    def celery(self):
        """A bare Celery app on the deployment's broker (remote control only: no Airflow)."""
        if self._celery is None:
            from celery import Celery

            self._celery = Celery("countylake-control", broker=self.redis)
        return self._celery

    def ping_workers(self, timeout: float = 1.0) -> set[str]:
        try:
            replies = self.celery().control.ping(timeout=timeout) or []
        except Exception:
            return set()
        names = {name for reply in replies for name in reply}
        return names & set(self.worker_names)

    def worker_stats(self, timeout: float = 2.0) -> dict[str, int]:
        """Tasks each of this stack's workers has run since it started (Celery's own count)."""
        stats = self.celery().control.inspect(destination=self.worker_names, timeout=timeout)
        replies = stats.stats() or {}
        return {
            name: sum((replies.get(name) or {}).get("total", {}).values())
            for name in self.worker_names
        }

    def purge_queue(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis)
        try:
            keys = [*client.scan_iter(match=f"{self.queue}*"), f"_kombu.binding.{self.queue}"]
            client.delete(*keys)
        finally:
            client.close()

    # ------------------------------------------------------------------ REST API

    def health(self) -> dict:
        import httpx

        try:
            r = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5)
            return r.json() if r.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}

    def api(self, method: str, path: str, **kwargs):
        """A call to the REST API v2 as ``admin``; the token is fetched once and renewed on 401."""
        import httpx

        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=30)
        for attempt in range(2):
            if self._token is None:
                r = self._http.post(
                    "/auth/token", json={"username": ADMIN, "password": self.admin_password}
                )
                r.raise_for_status()
                self._token = r.json()["access_token"]
            headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
            r = self._http.request(method, f"/api/v2{path}", headers=headers, **kwargs)
            if r.status_code == 401 and attempt == 0:
                self._token = None
                continue
            return r
        return r

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        """Wait until the DAG processor has stored each DAG (the API knows it)."""
        missing = list(dag_ids)
        deadline = time.monotonic() + timeout
        while missing:
            self.check_alive()
            missing = [d for d in missing if self.api("GET", f"/dags/{d}").status_code != 200]
            if not missing:
                return
            if time.monotonic() > deadline:
                errors = self.api("GET", "/importErrors").json().get("import_errors", [])
                raise StackError(f"DAGs not parsed after {timeout:.0f} s: {missing}; {errors}")
            time.sleep(1)

    def describe_dags(self, day: date) -> dict:
        """Parse the dags folder as the deployment would (in a child interpreter): per DAG its
        tags and the windows of ``day`` it covers, and the import errors."""
        if str(day) in self._described:
            return self._described[str(day)]
        done = subprocess.run(
            [sys.executable, "-c", f"import etl.celery_stack as m; m._describe('{day}')"],
            env=self.child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise StackError(f"parsing the dags folder failed:\n{done.stderr[-3000:]}")
        self._described[str(day)] = json.loads(done.stdout.strip().splitlines()[-1])
        return self._described[str(day)]


# --------------------------------------------------------------------------- DAG runs


@dataclass
class Run:
    dag_id: str
    start: str
    end: str
    run_id: str = ""
    state: str = "queued"
    tasks: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # task id -> log tail
    began: float = field(default_factory=time.perf_counter)

    def label(self, tz: str | None = None) -> str:
        zone = ZoneInfo(tz) if tz else None
        s, e = datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)
        if zone:
            s, e = s.astimezone(zone), e.astimezone(zone)
        return f"{self.dag_id} [{s:%Y-%m-%d %H:%M}, {e:%Y-%m-%d %H:%M})"

    def as_dict(self) -> dict:
        keys = ("dag_id", "run_id", "start", "end", "state", "tasks", "seconds", "failures")
        return {k: getattr(self, k) for k in keys}


def trigger(stack: CeleryStack, dag_id: str, start: str, end: str, say: Say = print) -> Run:
    """Unpause ``dag_id`` and trigger one run for the data interval [start, end) (ISO times with
    offset; the logical date is the start, as for a scheduled run). A run already recorded for
    that logical date (an earlier demo) is deleted and triggered anew."""
    run = Run(dag_id, start, end)
    r = stack.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    if r.status_code != 200:
        raise StackError(f"unpausing {dag_id}: {r.status_code} {r.text[:300]}")
    body = {
        "logical_date": start,
        "data_interval_start": start,
        "data_interval_end": end,
        "conf": {},
        "note": "triggered by etl.celery_stack",
    }
    for attempt in range(2):
        r = stack.api("POST", f"/dags/{dag_id}/dagRuns", json=body)
        if r.status_code == 409 and attempt == 0:
            old = stack.api(
                "GET",
                f"/dags/{dag_id}/dagRuns",
                params={"logical_date_gte": start, "logical_date_lte": start},
            ).json()
            for dr in old.get("dag_runs", []):
                say(f"  {dag_id}: replacing the earlier run {dr['dag_run_id']} ({dr['state']})")
                stack.api("DELETE", f"/dags/{dag_id}/dagRuns/{dr['dag_run_id']}")
            continue
        break
    if r.status_code not in (200, 201):
        raise StackError(f"triggering {dag_id}: {r.status_code} {r.text[:500]}")
    run.run_id = r.json()["dag_run_id"]
    run.began = time.perf_counter()
    return run


def wait(
    stack: CeleryStack,
    runs: list[Run],
    *,
    timeout: float = 900,
    tz: str | None = None,
    say: Say = print,
    poll: float = 2.0,
) -> list[Run]:
    """Poll the runs until each succeeds or fails (or ``timeout``), printing each change of
    state and task count; a failed run gets the log tail of its failed tasks."""
    deadline = time.monotonic() + timeout
    shown: dict[str, tuple] = {}
    pending = [r for r in runs if r.state not in TERMINAL]
    while pending:
        stack.check_alive()
        for run in pending:
            base = f"/dags/{run.dag_id}/dagRuns/{run.run_id}"
            dr = stack.api("GET", base)
            if dr.status_code == 200:
                run.state = dr.json()["state"]
            tis = stack.api("GET", f"{base}/taskInstances", params={"limit": 1000})
            if tis.status_code == 200:
                run.tasks = {
                    t["task_id"]: str(t["state"]) for t in tis.json().get("task_instances", [])
                }
            run.seconds = time.perf_counter() - run.began
            done = sum(s in DONE_TASK for s in run.tasks.values())
            failed = sum(s in ("failed", "upstream_failed") for s in run.tasks.values())
            retrying = sum(s == "up_for_retry" for s in run.tasks.values())
            key = (run.state, done, failed, retrying)
            if shown.get(run.run_id) != key:
                shown[run.run_id] = key
                extra = f", {failed} failed" if failed else ""
                extra += f", {retrying} waiting to retry" if retrying else ""
                say(
                    f"  {run.label(tz)}: {run.state}, {done}/{len(run.tasks)} tasks done"
                    f"{extra} ({run.seconds:.0f} s)"
                )
            if run.state == "failed":
                run.failures = failure_logs(stack, run)
                for task_id, tail in run.failures.items():
                    say(f"  -- {run.dag_id}.{task_id} failed; its log ends:")
                    say("\n".join("     " + line for line in tail.splitlines()))
        pending = [r for r in pending if r.state not in TERMINAL]
        if pending and time.monotonic() > deadline:
            for run in pending:
                run.state = f"timeout ({run.state})"
            say(f"  gave up after {timeout:.0f} s: {', '.join(r.dag_id for r in pending)}")
            break
        if pending:
            time.sleep(poll)
    return runs


def failure_logs(stack: CeleryStack, run: Run, lines: int = 40) -> dict[str, str]:
    """The last ``lines`` of the log of each failed task of ``run`` (upstream_failed ones have
    none: they never ran)."""
    base = f"/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances"
    tis = stack.api("GET", base, params={"limit": 1000}).json().get("task_instances", [])
    out: dict[str, str] = {}
    for ti in tis:
        if ti["state"] != "failed":
            continue
        try_number = max(int(ti.get("try_number") or 1), 1)
        r = stack.api(
            "GET",
            f"{base}/{ti['task_id']}/logs/{try_number}",
            params={"full_content": "true", "map_index": ti.get("map_index", -1)},
            headers={"Accept": "application/json"},
        )
        text = _log_text(r.json().get("content")) if r.status_code == 200 else r.text
        out[ti["task_id"]] = "\n".join(text.splitlines()[-lines:])
    return out


def _log_text(content) -> str:
    """Airflow 3's structured log records as plain lines (level, message, exception)."""
    if isinstance(content, str):
        return content
    lines = []
    for item in content or []:
        if not isinstance(item, dict):
            lines.append(str(item))
            continue
        for source in item.get("sources") or []:
            lines.append(f"log file: {source}")
        event = str(item.get("event", ""))
        if event.startswith(("::group::", "::endgroup::")):
            continue
        level = str(item.get("level") or "").upper()
        lines.append(f"{level:7} {event}".rstrip())
        for detail in item.get("error_detail") or []:
            if isinstance(detail, dict):
                lines.append(f"        {detail.get('exc_type')}: {detail.get('exc_value')}")
    return "\n".join(lines)


def run_day(
    stack: CeleryStack,
    day: date,
    dag_ids: Iterable[str] | None = None,
    *,
    include_warehouse: bool = True,
    timeout: float = 900,
    say: Say = print,
) -> list[Run]:
    """Trigger ``dag_ids`` (default: every department DAG) for each of their windows of
    ``day`` and wait; then the ``warehouse`` DAG for the day if the dags folder has one."""
    from etl.contracts import load_profile

    tz = load_profile().timezone
    described = stack.describe_dags(day)
    dags = described["dags"]
    for file, error in sorted(described["import_errors"].items()):
        say(f"import error in {file}: {error.strip().splitlines()[-1]}")
    if dag_ids is None:
        wanted = [d for d, info in dags.items() if INGEST_TAG in info["tags"]]
    else:
        wanted = list(dag_ids)
        unknown = [d for d in wanted if d not in dags]
        if unknown:
            raise StackError(f"no such DAG in the dags folder: {', '.join(unknown)}")
    stages = [wanted]
    if include_warehouse and WAREHOUSE_DAG not in wanted:
        if WAREHOUSE_DAG in dags:
            stages.append([WAREHOUSE_DAG])
        else:
            say(f"note: no DAG {WAREHOUSE_DAG!r} in the dags folder yet; skipping the warehouse")
    results: list[Run] = []
    for stage in stages:
        stack.wait_for_dags(stage)
        runs = [
            trigger(stack, dag_id, start, end, say)
            for dag_id in stage
            for start, end in dags[dag_id]["windows"]
        ]
        say(f"triggered {len(runs)} run(s): {', '.join(sorted({r.dag_id for r in runs}))}")
        results += wait(stack, runs, timeout=timeout, tz=tz, say=say)
        if any(r.state != "success" for r in runs):
            if len(stages) > 1 and stage is not stages[-1]:
                say(f"not running {', '.join(stages[-1])}: a department DAG failed")
            break
    return results


def _describe(day: str) -> None:
    """Child interpreter of :meth:`CeleryStack.describe_dags`: prints one JSON document."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

    from etl.contracts import load_profile
    from etl.orchestrate import _quiet, day_windows

    tz = load_profile().timezone
    the_day = date.fromisoformat(day)
    zone = ZoneInfo(tz)
    whole_day = [
        datetime(the_day.year, the_day.month, the_day.day, tzinfo=zone).isoformat(),
        (datetime(the_day.year, the_day.month, the_day.day, tzinfo=zone) + timedelta(days=1))
        .isoformat(),
    ]  # fmt: skip
    with _quiet():
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags = {}
    for dag_id, dag in sorted(bag.dags.items()):
        core = coerce_to_core_timetable(dag.timetable)
        if isinstance(core, CronDataIntervalTimetable | DeltaDataIntervalTimetable):
            windows = [[s.isoformat(), e.isoformat()] for s, e in day_windows(core, the_day, tz)]
        else:  # asset-triggered or point-in-time schedules: the day as a whole
            windows = [whole_day]
        dags[dag_id] = {"tags": sorted(dag.tags), "windows": windows}
    print(json.dumps({"dags": dags, "import_errors": dict(bag.import_errors)}))


# --------------------------------------------------------------------------- make demo-celery


def _summary(runs: list[Run], tz: str) -> str:
    from etl.cli import text_table

    rows = [
        {
            "run": run.label(tz),
            "state": run.state,
            "tasks": f"{sum(s == 'success' for s in run.tasks.values())}/{len(run.tasks)} ok",
            "seconds": round(run.seconds),
        }
        for run in runs
    ]
    return text_table(rows, ["run", "state", "tasks", "seconds"])


def _demo_runs(stack: CeleryStack, args: argparse.Namespace, day: date, began: float) -> bool:
    """The demo's runs for ``day`` and their summary; True when any failed."""
    from etl.contracts import load_profile

    print(f"\n   Airflow UI: {stack.url}   login: {ADMIN} / {stack.admin_password}")
    print(f"   (the password is kept in {stack.af_home / 'secrets.json'})\n")
    dag_ids = args.dags.split(",") if args.dags else None
    print(f"== running the DAGs for {day} on the Celery workers")
    runs = run_day(
        stack,
        day,
        dag_ids,
        include_warehouse=not args.no_warehouse,
        timeout=args.timeout,
        say=lambda m: print(m if m.startswith("  ") else "  " + m),
    )
    print("\n== runs")
    print(_summary(runs, load_profile().timezone))
    stats = stack.worker_stats()
    print("tasks per worker: " + ", ".join(f"{n} {c}" for n, c in stats.items()))
    print(
        f"{len(runs)} runs, {sum(r.state == 'success' for r in runs)} succeeded, "
        f"{time.perf_counter() - began:.0f} s. Lake: {stack.where.lake_root}/raw"
    )
    return any(r.state != "success" for r in runs) or not runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etl.celery_stack",
        description=(
            "make demo-celery: simulate the county, start Airflow on the CeleryExecutor (Redis "
            "broker, PostgreSQL metadata and results, two workers), run every department DAG "
            "for the first simulated day (then the warehouse DAG if there is one) and keep the "
            "UI up until Ctrl-C."
        ),
    )
    parser.add_argument("--scale", type=float, default=0.05, help="simulated county size")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dags", help="comma-separated DAG ids (default: every department)")
    parser.add_argument("--no-warehouse", action="store_true", help="skip the warehouse DAG")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per worker")
    parser.add_argument("--host", default="127.0.0.1", help="where the UI listens")
    parser.add_argument("--port", type=int, default=8080, help="UI port (another if taken)")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="PostgreSQL database")
    parser.add_argument("--postgres", help=f"PostgreSQL server URL (${POSTGRES_ENV})")
    parser.add_argument("--redis", help=f"Redis broker URL (${REDIS_ENV})")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for runs")
    parser.add_argument("--exit", action="store_true", help="stop after the runs")
    args = parser.parse_args(argv)

    from urllib.parse import urlsplit as split

    from etl.connections import resolve
    from etl.contracts import SourceKind, check_all, load_profile, load_systems
    from etl.simulate import simulate
    from etl.simulate.api_server import ApiServer

    where = paths()
    errors = check_all()
    if errors:
        for error in errors:
            print(f"invalid contract: {error}")
        return 1
    profile, systems = load_profile(), load_systems()
    day = date.fromisoformat(profile.simulation.start_date)
    began = time.perf_counter()
    print(f"== {profile.name} {profile.name_en}: simulating day 1 ({day}) under {where.home}")
    simulate(
        where.home, scale=args.scale, days=1, seed=args.seed, progress=lambda m: print("  " + m)
    )
    port = args.port if args.port and port_free(args.port, args.host) else 0
    if args.port and not port:
        print(f"port {args.port} is taken; using a free one")
    http = [s for s in systems if s.kind == SourceKind.HTTP]
    api_ports = sorted({split(resolve(s, where)).port for s in http})
    servers = [ApiServer(where.home, port=p).start() for p in api_ports]
    stack = CeleryStack(
        where.home,
        workers=args.workers,
        concurrency=args.concurrency,
        database=args.database,
        postgres=args.postgres,
        redis=args.redis,
        host=args.host,
        port=port,
        progress=lambda m: print("  " + m),
    )
    print(
        f"== starting Airflow on Celery: api-server, scheduler, dag-processor, {args.workers} "
        f"workers (broker {stack.redis}, metadata {stack.postgres}/{args.database})"
    )
    failed = True

    def interrupted(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # `kill` stops the stack as Ctrl-C does
    try:
        with stack:
            try:
                failed = _demo_runs(stack, args, day, began)
                if not args.exit:
                    print(f"\nAirflow stays up at {stack.url} ({ADMIN} / {stack.admin_password}).")
                    print("Trigger more runs from the UI; Ctrl-C stops everything.")
                    while True:
                        stack.check_alive()
                        time.sleep(2)
            except KeyboardInterrupt:
                print("\nstopping Airflow")
    except KeyboardInterrupt:  # while it was starting: the with block has stopped it
        print("\nstopped")
    except StackError as exc:
        print(f"error: {exc}")
        failed = True
    finally:
        for server in servers:
            server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
