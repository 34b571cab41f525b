"""The delivery protocol: build once, send until a receipt, reconcile, advance.

For one exchange and resource:

1. **At most one package in flight.** If the uplink ledger holds a package without a receipt,
   that package is the one to deliver: first its receipt is asked for (an earlier attempt may
   have arrived although its sender never heard back), then the very same bytes are sent again
   under the same package id. Otherwise a new package is built from the rows that changed
   since the snapshot the exchange last accepted, and recorded (status ``built``) before the
   first byte leaves; unless the exchange holds exactly the outgoing rows of the warehouse's
   current build already (``source_version``: a delivery of that build found nothing to send,
   or its package was accepted whole), in which case the mart is not even read.
2. **Retries with backoff.** ``TransientError`` (nothing arrived) is retried after
   ``backoff_s``, doubling up to ``max_backoff_s``, ``attempts`` times; ``AmbiguousError`` (a
   timeout after sending) first asks for the receipt, then resends the same id, which the
   receiver recognises and answers with the stored receipt; ``RefusedError`` stops.
3. **Receipts reconcile.** Rows sent must equal rows accepted plus rows rejected, and the
   checksum must be the package's; then, in one transaction, the receipt is recorded, rejected
   rows are kept with their errors, and the accepted snapshot advances by the accepted rows
   only. Rejected rows, and every row of a REJECTED package, are sent again next time.

So a row reaches the exchange's store exactly once per change, whatever fails in between.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from etl.contracts import ExchangeContract, ExchangeResource, find_exchange, load_profile
from etl.errors import CountylakeError
from etl.settings import Paths, paths
from etl.uplink import keys
from etl.uplink.changes import UplinkError
from etl.uplink.state import UplinkState

WAREHOUSE_FILE = "county.duckdb"


def _where(where: Paths | str | Path | None) -> Paths:
    return where if isinstance(where, Paths) else paths(where)


def warehouse_path(where: Paths) -> Path:
    return where.warehouse / WAREHOUSE_FILE


def transport_url(exchange: ExchangeContract, resource: ExchangeResource, where: Paths) -> str:
    """The transport's URL: environment, Airflow, ``connections.json``, then the embedded demo
    default, exactly as a department system's connection is resolved."""
    from etl.connections import resolve

    return resolve(exchange.transport_of(resource), where)  # needs .connection and .embedded


def exchange_secret(exchange: ExchangeContract, resource: ExchangeResource, where: Paths) -> str:
    return keys.secret(exchange.transport_of(resource).signing_key, where)


def make_transport(exchange: ExchangeContract, resource: ExchangeResource, where: Paths):
    from etl.uplink import transports
    from etl.uplink.masks import outgoing_columns

    config = exchange.transport_of(resource)
    url = transport_url(exchange, resource, where)
    secret = exchange_secret(exchange, resource, where)
    if config.kind == "frontdb":
        columns = outgoing_columns(exchange, resource)
        return transports.FrontDbTransport(exchange, resource, columns, url, secret)
    if config.kind == "package":
        return transports.PackageTransport(exchange, resource, url, secret)
    return transports.HttpTransport(exchange, resource, url, secret, config.timeout_s)


def summary(exchange: ExchangeContract, resource: ExchangeResource, row: dict | None, **extra):
    """One line of a delivery report (the CLI, the demo and the DAG tasks show these)."""
    row = row or {}
    return {
        "exchange": exchange.exchange,
        "resource": resource.resource,
        "code": resource.code,
        "transport": exchange.transport_of(resource).kind,
        "package_id": row.get("package_id"),
        "status": row.get("status"),
        "rows_sent": row.get("rows_sent"),
        "I": row.get("rows_insert"),
        "U": row.get("rows_update"),
        "D": row.get("rows_delete"),
        "attempts": row.get("attempts"),
        "receipt": row.get("receipt_status"),
        "accepted": row.get("rows_accepted"),
        "rejected": row.get("rows_rejected"),
        "reconciled": row.get("reconciled"),
        "error": row.get("error"),
        **extra,
    }


def source_version(
    exchange: ExchangeContract, resource: ExchangeResource, where: Paths
) -> str | None:
    """What a resource's outgoing rows are made from: the warehouse build that last changed
    its relation (``etl.warehouse.build_of``), and a digest of how they are made of it (the
    contract's columns and masks, the exchange's pseudonym key, the code of ``masks`` and
    ``changes``). None when the warehouse cannot tell which build that is (a file not swapped
    in by ``etl.warehouse.build``): then the mart is always read."""
    import hashlib
    import json

    import duckdb

    from etl.uplink import changes, masks
    from etl.warehouse import build_of

    path = warehouse_path(where)
    try:
        build_id = build_of(path, resource.source) if path.exists() else None
    except duckdb.Error:  # not readable: read_outgoing will say why
        return None
    if not build_id:
        return None
    secret = exchange_secret(exchange, resource, where)
    how = {
        "source": resource.source,
        "key": resource.key,
        "columns": [
            {**c.column.model_dump(), "applied_mask": c.applied_mask}
            for c in masks.outgoing_columns(exchange, resource)
        ],
        "pseudonym_key": hashlib.sha256(keys.pseudonym_key(secret, exchange.exchange)).hexdigest(),
    }
    digest = hashlib.sha256(json.dumps(how, sort_keys=True, default=str).encode())
    for module in (masks, changes):
        digest.update(Path(module.__file__).read_bytes())
    return f"{build_id}/{digest.hexdigest()[:16]}"


def _delivered(exchange, resource, where: Paths, state: UplinkState) -> tuple[str | None, bool]:
    """The resource's source version, and whether the exchange holds exactly its rows (then
    its mart need not be read: nothing can have changed)."""
    version = source_version(exchange, resource, where)
    synced = version is not None and version == state.synced_version(
        exchange.exchange, resource.resource
    )
    return version, synced


@contextmanager
def _changes_file(
    exchange: ExchangeContract,
    resource: ExchangeResource,
    where: Paths,
    state: UplinkState,
    secret: str,
) -> Iterator[tuple[list, Path, int]]:
    """The resource's changes since the accepted snapshot, in a Parquet file of a work folder
    that is removed afterwards: (outgoing columns, the file, its rows). The outgoing rows and
    the diff stream through files there, so a whole county's people are never held in memory."""
    import tempfile

    from etl.uplink.changes import write_changes, write_outgoing

    pseudonym_key = keys.pseudonym_key(secret, exchange.exchange)
    work_root = where.home / "uplink" / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    prefix = f"{exchange.exchange}-{resource.resource}-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=work_root) as work:
        outgoing, changed = Path(work) / "outgoing.parquet", Path(work) / "changes.parquet"
        columns = write_outgoing(warehouse_path(where), exchange, resource, pseudonym_key, outgoing)
        accepted = state.accepted_digests(exchange.exchange, resource.resource)
        location = f"{resource.source} -> {exchange.exchange}"
        rows = write_changes(outgoing, columns, resource.key, accepted, location, changed)
        del accepted
        yield columns, changed, rows


def _build(
    exchange: ExchangeContract,
    resource: ExchangeResource,
    where: Paths,
    state: UplinkState,
    version: str | None,
) -> dict | None:
    """Build and record the next package of a resource, or None when nothing changed (then,
    the accepted snapshot being the outgoing rows at ``version``, it is marked in sync).
    ``version`` was taken before the mart is read: a build swapped in meanwhile makes the mark
    older than the rows read, so they are read again next time, never skipped wrongly."""
    from etl.uplink.package import build_package

    secret = exchange_secret(exchange, resource, where)
    with _changes_file(exchange, resource, where, state, secret) as (columns, changed, rows):
        if rows == 0:
            if version:
                state.mark_synced(exchange.exchange, resource.resource, version)
            return None
        profile = load_profile()
        now = datetime.now(ZoneInfo(profile.timezone)).replace(microsecond=0)
        seq = state.next_seq(exchange.exchange, resource.resource)
        package_id = f"{resource.code}-{seq:06d}-{now:%Y%m%d%H%M%S}"
        directory = where.home / "uplink" / "packages" / exchange.exchange / package_id
        config = exchange.transport_of(resource)
        package = build_package(
            directory,
            package_id=package_id,
            exchange=exchange,
            resource=resource,
            columns=columns,
            rows=changed,
            sender={"code": profile.code, "name": profile.name, "client_id": exchange.client_id},
            file_format=getattr(config, "format", "parquet"),
            created_at=now.isoformat(),
            secret=secret,
        )
    ops = package.manifest["ops"]
    state.record_built(
        {
            "package_id": package_id,
            "exchange": exchange.exchange,
            "resource": resource.resource,
            "resource_code": resource.code,
            "transport": config.kind,
            "seq": seq,
            "rows_sent": rows,
            "rows_insert": ops["I"],
            "rows_update": ops["U"],
            "rows_delete": ops["D"],
            "rows_sha256": package.manifest["rows_sha256"],
            "path": str(directory),
            "source_version": version,
        }
    )
    return state.package(package_id)


@contextmanager
def _resource_lock(where: Paths, exchange: str, resource: str) -> Iterator[None]:
    """One delivery of a resource at a time across processes (a CLI run beside a DAG run):
    the second waits, then finds the first one's package in flight or receipted."""
    folder = where.home / "uplink" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{exchange}__{resource}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ask_receipt(transport, state: UplinkState, row: dict) -> dict | None:
    """The package's receipt if the receiver has one; reconciled into the ledger."""
    from etl.uplink.transports import TransientError

    try:
        receipt = transport.receipt(row["package_id"])
    except TransientError:
        return None
    except UplinkError as exc:  # a receipt that does not verify is not a receipt
        state.attempt(row["package_id"], "receipt_unverified", str(exc))
        return None
    if receipt is None:
        return None
    return state.reconcile(row, receipt, Path(row["path"]) / "rows.parquet")


def deliver_resource(
    exchange: ExchangeContract,
    resource: ExchangeResource,
    where: Paths | str | Path | None = None,
    *,
    transport=None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Deliver one resource's pending package, or the changes since the last accepted one."""
    where = _where(where)
    with _resource_lock(where, exchange.exchange, resource.resource):
        return _deliver_locked(exchange, resource, where, transport, sleep)


def _deliver_locked(exchange, resource, where: Paths, transport, sleep) -> dict:
    from etl.uplink.package import Package
    from etl.uplink.transports import AmbiguousError, RefusedError, TransientError

    state = UplinkState(where)
    own = transport is None
    try:
        # the transport (an HTTP client's TLS context, 10-20 ms) only once there is something
        # to ask or send: most nights a resource's build is already delivered
        row = state.in_flight(exchange.exchange, resource.resource)
        if row and row["status"] != "built":
            transport = transport or make_transport(exchange, resource, where)
            done = _ask_receipt(transport, state, row)
            if done:
                return summary(exchange, resource, done)
        if row is None:
            version, delivered = _delivered(exchange, resource, where, state)
            if delivered:
                return _unchanged(exchange, resource, state, mart_read=False)
            row = _build(exchange, resource, where, state, version)
            if row is None:
                return _unchanged(exchange, resource, state, mart_read=True)
        transport = transport or make_transport(exchange, resource, where)
        package = Package(Path(row["path"]))
        policy = exchange.retry
        delay = policy.backoff_s
        for attempt in range(1, policy.attempts + 1):
            pid = row["package_id"]
            try:
                sent = transport.send(package)
            except AmbiguousError as exc:
                state.attempt(pid, "ambiguous", str(exc), status="unconfirmed")
                done = _ask_receipt(transport, state, state.package(pid))
                if done:
                    return summary(exchange, resource, done)
            except TransientError as exc:
                state.attempt(pid, "failed", str(exc), status="failed")
            except RefusedError as exc:
                state.attempt(pid, "refused", str(exc), status="failed")
                break
            else:
                state.attempt(pid, sent.outcome, status="delivered")
                row = state.package(pid)
                if sent.receipt is not None:
                    row = state.reconcile(row, sent.receipt, package.rows_file)
                return summary(exchange, resource, row)
            if attempt < policy.attempts:
                sleep(min(delay, policy.max_backoff_s))
                delay *= 2
        return summary(exchange, resource, state.package(row["package_id"]))
    finally:
        if own and transport is not None:
            transport.close()


def _unchanged(exchange, resource, state: UplinkState, mart_read: bool) -> dict:
    """The line of a resource with nothing to send: its last package, and whether its mart
    was read to find that out (not when the exchange holds the rows of its current build)."""
    last = [p for p in state.packages(exchange.exchange) if p["resource"] == resource.resource]
    quiet = {"rows_sent": None, "I": None, "U": None, "D": None, "attempts": None}
    return summary(
        exchange,
        resource,
        last[-1] if last else None,
        status="unchanged",
        mart_read=mart_read,
        **quiet,
    )


def collect_receipts(
    exchange: ExchangeContract, where: Paths | str | Path | None = None, transports=None
) -> list[dict]:
    """Ask for the receipt of every delivered package still without one; reconcile those that
    came. Returns the packages still waiting (what a receipt sensor waits for)."""
    where = _where(where)
    state = UplinkState(where)
    waiting = []
    for resource in exchange.resources:
        row = state.in_flight(exchange.exchange, resource.resource)
        if row is None or row["status"] in ("built", "failed"):
            continue
        given = (transports or {}).get(resource.resource)
        transport = given or make_transport(exchange, resource, where)
        try:
            if not _ask_receipt(transport, state, row):
                waiting.append(summary(exchange, resource, state.package(row["package_id"])))
        finally:
            if given is None:
                transport.close()
    return waiting


def deliver_exchange(
    exchange: ExchangeContract | str,
    where: Paths | str | Path | None = None,
    resources: list[str] | None = None,
) -> list[dict]:
    """Deliver every resource (or the named ones) of one exchange; a resource that fails does
    not stop the others (its error is in its line)."""
    if isinstance(exchange, str):
        exchange = find_exchange(exchange)
    lines = []
    for resource in exchange.resources:
        if resources and resource.resource not in resources:
            continue
        try:
            lines.append(deliver_resource(exchange, resource, where))
        except UplinkError as exc:
            lines.append(summary(exchange, resource, None, status="not built", error=str(exc)))
    return lines


def check_exchange(exchange: ExchangeContract, where: Paths | str | Path | None = None) -> list:
    """Per resource: where its transport's connection came from, and whether the exchange
    answers (the front-end database and its tables, the outbox, the signed receiver). Nothing
    is sent; a county runs it before its first delivery."""
    from etl.connections import redact, resolve_with_origin

    where = _where(where)
    rows = []
    for resource in exchange.resources:
        config = exchange.transport_of(resource)
        url, origin = resolve_with_origin(config, where)
        row = {
            "name": f"{exchange.exchange}.{resource.resource}",
            "exchange": exchange.exchange,
            "resource": resource.resource,
            "transport": config.kind,
            "connection": origin,
            "where": redact(url),
            "found": None,
            "error": None,
        }
        try:
            transport = make_transport(exchange, resource, where)
            try:
                row["where"], row["found"] = transport.where, transport.probe()
            finally:
                transport.close()
        except CountylakeError as exc:
            row["error"] = str(exc)
        except Exception as exc:  # a malformed URL, an unknown driver: this resource's row
            row["error"] = f"{row['where']}: {type(exc).__name__}: {exc}".splitlines()[0]
        rows.append(row)
    return rows


def status_rows(where: Paths | str | Path | None = None, pending_changes: bool = True) -> list:
    """Per exchange and resource: the last package, its receipt, and what is pending (a package
    waiting for its receipt, rows rejected by the last receipt, changes not yet packaged)."""
    from etl.contracts import load_exchanges

    where = _where(where)
    state = UplinkState(where)
    packages = state.packages() if state.path.exists() else []
    rows = []
    for exchange in load_exchanges():
        for resource in exchange.resources:
            mine = [
                p
                for p in packages
                if p["exchange"] == exchange.exchange and p["resource"] == resource.resource
            ]
            last = mine[-1] if mine else None
            in_flight = [p for p in mine if p["status"] != "receipted"]
            pending = []
            if in_flight:
                p = in_flight[0]
                pending.append(f"{p['package_id']} {p['status']} ({p['rows_sent']} rows)")
            if last and last.get("rows_rejected") and last["receipt_status"] != "REJECTED":
                pending.append(f"{last['rows_rejected']} rejected rows to resend")
            if last and last.get("receipt_status") == "REJECTED":
                pending.append(f"{last['rows_sent']} rows of a rejected package to resend")
            if pending_changes and not in_flight:
                pending.append(_pending_changes(exchange, resource, where, state))
            rows.append(
                {
                    "exchange": exchange.exchange,
                    "resource": resource.resource,
                    "code": resource.code,
                    "transport": exchange.transport_of(resource).kind,
                    "packages": len(mine),
                    "last_package": last["package_id"] if last else "",
                    "sent": last["rows_sent"] if last else None,
                    "status": last["status"] if last else "",
                    "receipt": (last or {}).get("receipt_status") or "",
                    "accepted": (last or {}).get("rows_accepted"),
                    "rejected": (last or {}).get("rows_rejected"),
                    "reconciled": ""
                    if not last or last["status"] != "receipted"
                    else ("yes" if last["reconciled"] else "NO"),
                    "pending": "; ".join(p for p in pending if p) or "nothing",
                    "error": ((last or {}).get("error") or "")[:80],
                }
            )
    return rows


def _pending_changes(exchange, resource, where: Paths, state: UplinkState) -> str:
    import pyarrow.parquet as pq

    from etl.uplink.package import op_counts

    try:
        if _delivered(exchange, resource, where, state)[1]:
            return ""
        secret = exchange_secret(exchange, resource, where)
        with _changes_file(exchange, resource, where, state, secret) as (_, changed, rows):
            ops = op_counts(pq.read_table(changed, columns=["_op"]).column("_op")) if rows else {}
    except UplinkError as exc:
        return f"source not readable: {exc.reason}"
    if not rows:
        return ""
    counts = ", ".join(f"{op} {n}" for op, n in ops.items() if n)
    return f"{rows} changed rows not yet sent ({counts})"


# --------------------------------------------------------------------------- reference receivers


def receiver_store_url(exchange: ExchangeContract, where: Paths) -> str:
    folder = where.home / "exchanges" / exchange.exchange
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'received.sqlite'}"


class ReferenceSide:
    """The reference receivers of one exchange, on the endpoints its transports resolve to:
    one store, an HTTP server per loopback HTTP endpoint, and the 前置库 and outbox readers."""

    def __init__(self, exchange: ExchangeContract, where: Paths, stack: ExitStack):
        from etl.uplink.receivers import (
            FrontDbReceiver,
            HttpReceiver,
            OutboxReceiver,
            ReferenceReceiver,
        )

        self.exchange = exchange
        first = exchange.resources[0]
        self.receiver = ReferenceReceiver(
            exchange, exchange_secret(exchange, first, where), receiver_store_url(exchange, where)
        )
        stack.callback(self.receiver.close)
        self.readers = []
        self.servers = []
        seen = set()
        for resource in exchange.resources:
            config = exchange.transport_of(resource)
            url = transport_url(exchange, resource, where)
            if url in seen:
                continue
            seen.add(url)
            if config.kind == "frontdb":
                reader = FrontDbReceiver(self.receiver, url)
                stack.callback(reader.close)
                self.readers.append(reader)
            elif config.kind == "package":
                self.readers.append(OutboxReceiver(self.receiver, url))
            else:
                parts = urlsplit(url)
                if parts.hostname not in ("127.0.0.1", "localhost"):
                    continue  # a real exchange: nothing to stand in for
                server = HttpReceiver(self.receiver, port=parts.port or 80).start()
                stack.callback(server.stop)
                self.servers.append(server)

    def process(self) -> list[dict]:
        receipts = []
        for reader in self.readers:
            receipts += reader.process()
        return receipts


@contextmanager
def reference_receivers(exchanges: list[ExchangeContract], where: Paths):
    with ExitStack() as stack:
        yield {e.exchange: ReferenceSide(e, where, stack) for e in exchanges}


def deliver_all(
    where: Paths | str | Path | None = None,
    progress=print,
    sides: dict | None = None,
    only: list[str] | None = None,
) -> list[dict]:
    """Deliver every exchange the county profile enables (or those in ``only``) through the
    reference receivers, and return one line per resource with its package and receipt (what
    ``make demo`` prints). ``sides``: receivers already running, else started here."""
    where = _where(where)
    names = [n for n in load_profile().exchanges if not only or n in only]
    exchanges = [find_exchange(name) for name in names]
    if sides is None:
        with reference_receivers(exchanges, where) as started:
            return deliver_all(where, progress, started, names)
    lines: list[dict] = []
    state = UplinkState(where)
    for exchange in exchanges:
        progress(
            f"uplink {exchange.exchange}: {exchange.name} ({len(exchange.resources)} resources)"
        )
        results = deliver_exchange(exchange, where)
        sides[exchange.exchange].process()  # the city's / province's side reads and answers
        collect_receipts(exchange, where)
        for line in results:
            if line.get("package_id") and line["status"] != "unchanged":
                resource = exchange.resource(line["resource"])
                line = summary(exchange, resource, state.package(line["package_id"]))
            lines.append(line)
            progress("  " + _report(line))
    return lines


def _report(line: dict) -> str:
    head = f"{line['resource']} ({line['code']}, {line['transport']}): "
    if line.get("package_id") and line["status"] != "unchanged":
        return head + (
            f"package {line['package_id']}, {line['rows_sent']} rows "
            f"(I {line['I']} U {line['U']} D {line['D']}) -> receipt "
            f"{line['receipt'] or 'pending'}, accepted {line['accepted']}, "
            f"rejected {line['rejected']}" + (f"; {line['error']}" if line["error"] else "")
        )
    skipped = " (its build is delivered: mart not read)" if line.get("mart_read") is False else ""
    return head + (line["status"] or "") + skipped + (f": {line['error']}" if line["error"] else "")
