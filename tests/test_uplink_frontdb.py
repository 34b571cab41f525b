"""The 前置库 on the machine's real PostgreSQL and MariaDB: rows with their operation flag,
change time, batch id and status in the agreed tables, the batch row as commit marker, the
receiver's feedback read back; a lost commit acknowledgement, a receiver database that is down
and a partial acceptance, each ending with every row applied exactly once."""

from __future__ import annotations

import os

import pytest
from conftest import require_server
from sqlalchemy import column, create_engine, func, select, table, text
from test_uplink import build_warehouse, change_warehouse, free_port, ledger, no_sleep

from etl.contracts import find_exchange, load_profile
from etl.settings import paths
from etl.uplink import deliver as uplink
from etl.uplink.masks import outgoing_columns
from etl.uplink.transports import AmbiguousError, FrontDbTransport, sqlalchemy_url

SERVERS = {
    "postgres": (5432, "postgresql://postgres@127.0.0.1:5432"),
    "mariadb": (3306, "mysql://root@127.0.0.1:3306"),
}


@pytest.fixture(params=sorted(SERVERS))
def frontdb(request, home, monkeypatch):
    """A fresh database on the server as the city's 前置库 (dropped afterwards)."""
    port, base = SERVERS[request.param]
    require_server(port, request.param)
    name = f"uplink_frontdb_{os.getpid()}_{request.param}"
    admin_url = base + ("/postgres" if request.param == "postgres" else "/")
    admin = create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
    quote = '"' if request.param == "postgres" else "`"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}"))
        conn.execute(text(f"CREATE DATABASE {quote}{name}{quote}"))
    url = f"{base}/{name}"
    monkeypatch.setenv("COUNTYLAKE_CONN_ZIBO_FRONTDB", url)
    monkeypatch.setenv(
        "COUNTYLAKE_CONN_SHANDONG_GATEWAY", f"http://127.0.0.1:{free_port()}/shandong"
    )
    build_warehouse(home)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}"))
    admin.dispose()


def _count(url: str, name: str, **equal) -> int:
    """Rows of a 前置库 table (names quoted as SQLAlchemy created them), optionally filtered."""
    query = select(func.count()).select_from(table(name))
    for col, value in equal.items():
        query = query.where(column(col) == value)
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar()
    finally:
        engine.dispose()


@pytest.mark.integration
def test_frontdb_on_a_real_server_delivers_changes_once_with_feedback(frontdb, home):
    exchanges = [find_exchange(n) for n in load_profile().exchanges]
    zibo = find_exchange("zibo")
    entities = zibo.resource("entity_basic")

    def frontdb_checks() -> set[str]:
        rows = uplink.check_exchange(zibo, paths(home))
        return {r["found"] or r["error"] for r in rows if r["transport"] == "frontdb"}

    empty = frontdb_checks()  # the server's database as the city hands it over
    assert all(c.startswith("answers; the first delivery creates") for c in empty)
    frontdb_resources = [r for r in zibo.resources if zibo.transport_of(r).kind == "frontdb"]
    assert all("QZK_PC" in c for c in empty)
    assert len(empty) == len(frontdb_resources)  # each resource names its own table
    with uplink.reference_receivers(exchanges, paths(home)) as sides:
        first = {x["resource"]: x for x in uplink.deliver_all(home, lambda m: None, sides)}
        assert frontdb_checks() == {"answers; its tables are there"}
        assert first["entity_basic"]["receipt"] == "ACCEPTED"
        assert first["population_by_town"]["receipt"] == "ACCEPTED"
        assert _count(frontdb, "QZK_GQ_FRJCXX", ZT="Y") == 20
        assert _count(frontdb, "QZK_PC", status="ACCEPTED") == 2
        assert _count(frontdb, "QZK_FK") == 2
        # decimals and dates went through the server and still match the signed checksum
        held = sides["zibo"].receiver.current_rows(entities.code)
        assert {str(r["ZCZB"]) for r in held} >= {"100.50", "119.50"}

        change_warehouse(
            home,
            "UPDATE base.base_entities SET status = '吊销' WHERE entity_name LIKE '%第7农机%'",
            "UPDATE base.base_entities SET credit_code = 'BAD' || substr(credit_code, 4) "
            "WHERE entity_name LIKE '%第8农机%'",
        )
        second = {x["resource"]: x for x in uplink.deliver_all(home, lambda m: None, sides)}
        line = second["entity_basic"]
        # the bad code is a new key (I, rejected) and its old key is gone (D, accepted)
        assert (line["I"], line["U"], line["D"]) == (1, 1, 1)
        assert (line["receipt"], line["accepted"], line["rejected"]) == ("PARTIAL", 2, 1)
        assert _count(frontdb, "QZK_FK_MX") == 1
        assert _count(frontdb, "QZK_GQ_FRJCXX", ZT="E") == 1
        [kept] = ledger(home).rejected_rows("zibo")
        assert "TYSHXYDM" in kept["errors"]
        assert len(sides["zibo"].receiver.current_rows(entities.code)) == 19

    for p in ledger(home).packages("zibo"):
        assert p["reconciled"] and p["rows_sent"] == p["rows_accepted"] + p["rows_rejected"]


@pytest.mark.integration
def test_frontdb_lost_ack_and_down_server_still_apply_once(frontdb, home, monkeypatch):
    zibo = find_exchange("zibo")
    resource = zibo.resource("entity_basic")
    where = paths(home)

    # the 前置库 is down: nothing is written, the package waits under its id
    monkeypatch.setenv("COUNTYLAKE_CONN_ZIBO_FRONTDB", frontdb.replace(
        frontdb.split("@")[1].split("/")[0], f"127.0.0.1:{free_port()}"))  # fmt: skip
    down = uplink.deliver_resource(zibo, resource, where, sleep=no_sleep)
    assert down["status"] == "failed" and down["attempts"] == zibo.retry.attempts
    monkeypatch.setenv("COUNTYLAKE_CONN_ZIBO_FRONTDB", frontdb)

    class LostAck(FrontDbTransport):
        lost = 1

        def send(self, package):
            sent = super().send(package)
            if self.lost:
                self.lost -= 1
                raise AmbiguousError(self.where, "connection reset after COMMIT")
            return sent

    secret = uplink.exchange_secret(zibo, resource, where)
    columns = outgoing_columns(zibo, resource)
    transport = LostAck(zibo, resource, columns, frontdb, secret)
    exchanges = [find_exchange(n) for n in load_profile().exchanges]
    with uplink.reference_receivers(exchanges, where) as sides:
        line = uplink.deliver_resource(zibo, resource, where, transport=transport)
        assert line["package_id"] == down["package_id"] and line["status"] == "delivered"
        outcomes = [a["outcome"] for a in ledger(home).attempts(line["package_id"])]
        assert outcomes[-2:] == ["ambiguous", "duplicate"]
        with transport.engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(transport.data)).scalar()
            batches = conn.execute(select(func.count()).select_from(transport.batch)).scalar()
        assert (rows, batches) == (20, 1)
        sides["zibo"].process()
        assert uplink.collect_receipts(zibo, where) == []
        assert ledger(home).package(line["package_id"])["receipt_status"] == "ACCEPTED"
        assert len(sides["zibo"].receiver.current_rows(resource.code)) == 20
        assert sides["zibo"].process() == []  # nothing left to apply twice
    transport.close()
