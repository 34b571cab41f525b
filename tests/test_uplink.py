"""Uplinks: signed, exactly-once delivery to the city and province exchanges, with receipts.

A tiny warehouse is written here with the relations the exchange contracts read (the marts are
built elsewhere); the reference receivers play the exchanges. Every fault ends the same way:
each changed row is applied once by the exchange, and rows sent = accepted + rejected.
"""

from __future__ import annotations

import json
import socket
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pytest

from etl.contracts import (
    ContractError,
    check_all,
    find_exchange,
    grade_above,
    load_exchanges,
    load_profile,
)
from etl.settings import paths
from etl.uplink import deliver as uplink
from etl.uplink import masks as masks_module
from etl.uplink.masks import outgoing_columns
from etl.uplink.receivers import HttpReceiver, ReferenceReceiver
from etl.uplink.state import UplinkState

CANARY_PHONE = "13912345678"
CANARY_NAME = "王小明"
CANARY_ADDRESS = "青城镇东关村38号院"


def warehouse_file(home: Path) -> Path:
    return home / "warehouse" / "county.duckdb"


def build_warehouse(home: Path, entities: int = 20, people: int = 30) -> Path:
    """A warehouse file with the relations the shipped exchange contracts read."""
    from etl.simulate.codes import credit_codes

    path = warehouse_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rng = np.random.default_rng(3)
    codes = credit_codes(
        np.array(["91"] * entities),
        np.array(["370322"] * entities),
        np.array([f"{n:08d}" for n in rng.integers(10**7, 10**8 - 1, entities)]),
    )
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA base; CREATE SCHEMA marts")
    con.execute("""
        CREATE TABLE base.base_entities (
            credit_code VARCHAR, entity_name VARCHAR, entity_type VARCHAR, status VARCHAR,
            legal_rep_person_key VARCHAR, legal_rep_name_masked VARCHAR, industry_code VARCHAR,
            registered_capital DECIMAL(18,2), established_date DATE, village_code VARCHAR,
            town_code VARCHAR, address VARCHAR, phone_masked VARCHAR, in_register BOOLEAN)""")
    con.executemany(
        "INSERT INTO base.base_entities VALUES (?, ?, '企业', '存续', ?, ?, 'C1311', ?, ?, "
        "'370322101201', '370322101', ?, ?, true)",
        [
            [
                str(code),
                f"高青县第{n}农机合作社",
                f"pk{n:04d}",
                CANARY_NAME if n == 0 else "张**",
                Decimal(f"{100 + n}.50"),
                date(2010, 1, 1 + n % 28),
                CANARY_ADDRESS if n == 1 else f"青城镇东关村{n}号",
                "0533-6912345" if n == 2 else "0533******45",
            ]
            for n, code in enumerate(codes)
        ],
    )
    con.execute("""
        CREATE TABLE base.base_people (
            person_key VARCHAR, id_number_masked VARCHAR, name_masked VARCHAR, sex VARCHAR,
            birth_date DATE, ethnicity VARCHAR, village_code VARCHAR, town_code VARCHAR,
            address_masked VARCHAR, phone_masked VARCHAR, register_status VARCHAR,
            in_register BOOLEAN)""")
    con.executemany(
        "INSERT INTO base.base_people VALUES (?, ?, ?, ?, ?, '01', '370322101201', '370322101', "
        "'青城镇东关村', ?, '正常', true)",
        [
            [
                f"{n:064x}",
                "370322199001011234" if n == 0 else "370322********1234",
                "刘**",
                "1" if n % 2 else "2",
                date(1950 + n, 1 + n % 12, 1 + n % 28),
                CANARY_PHONE if n == 0 else "139****5678",
            ]
            for n in range(people)
        ],
    )
    con.execute("""
        CREATE TABLE base.dim_division AS SELECT * FROM (VALUES
            ('370322000000', 'county', '高青县', '山东省淄博市高青县', NULL),
            ('370322101000', 'town', '青城镇', '山东省淄博市高青县青城镇', '370322000000'),
            ('370322102000', 'town', '高城镇', '山东省淄博市高青县高城镇', '370322000000'),
            ('370322101201', 'village', '东关村', '山东省淄博市高青县青城镇东关村', '370322101000'),
            ('370322102201', 'village', '西关村', '山东省淄博市高青县高城镇西关村', '370322102000')
        ) AS t(division_code, division_level, division_name, full_name, parent_code)""")
    con.execute("""
        CREATE TABLE marts.mart_population__by_town AS SELECT * FROM (VALUES
            ('370322101', '青城镇', 20::BIGINT), ('370322102', '高城镇', 10::BIGINT)
        ) AS t(town_code, town_name, residents)""")
    con.execute("""
        CREATE TABLE marts.mart_health__consultations_by_level_daily AS
        SELECT DATE '2026-11-01' + d::INTEGER AS date_day, level::BIGINT AS care_level,
               (d * 5 + level)::BIGINT AS consultations
        FROM range(3) r(d), range(1, 6) l(level)""")
    con.close()
    return path


def change_warehouse(home: Path, *statements: str) -> None:
    con = duckdb.connect(str(warehouse_file(home)))
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()


def record_build(home: Path, build_id: str, relations: list[str] | None = None) -> None:
    """Record a warehouse build that wrote ``relations`` (None: not recorded, as in a build
    from before they were) as ``etl.warehouse.build`` does when it swaps a file in (the tiny
    warehouse here is written directly, so it records no build until told)."""
    from datetime import UTC, datetime

    from etl.warehouse import _record_build

    _record_build(
        warehouse_file(home),
        {"built_at": datetime.now(UTC), "full_refresh": False, "select": "", "key_id": "k",
         "nodes": {}, "seconds": 1.0, "build_id": build_id, "inputs": None},
        relations,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- fixtures


def no_sleep(_seconds: float) -> None:
    pass


@pytest.fixture
def county(home, monkeypatch) -> Path:
    """A data root with the tiny warehouse; the province gateway on a free loopback port."""
    build_warehouse(home)
    monkeypatch.setenv(
        "COUNTYLAKE_CONN_SHANDONG_GATEWAY", f"http://127.0.0.1:{free_port()}/shandong"
    )
    return home


@pytest.fixture
def batch_rows(request, monkeypatch) -> int:
    """Rows per Arrow record batch in the uplinks; a small number splits every package."""
    from etl.uplink import changes, package, receivers

    for module in (changes, package, receivers):
        monkeypatch.setattr(module, "BATCH_ROWS", request.param)
    return request.param


@contextmanager
def exchanges_side(home: Path):
    """The reference receivers of every enabled exchange (the city's and province's side)."""
    exchanges = [find_exchange(n) for n in load_profile().exchanges]
    with uplink.reference_receivers(exchanges, paths(home)) as sides:
        yield sides


def held(side, resource_code: str, deleted: bool = False) -> list[dict]:
    return side.receiver.current_rows(resource_code, include_deleted=deleted)


def source_rows(home: Path, relation: str, key: str) -> set:
    con = duckdb.connect(str(warehouse_file(home)), read_only=True)
    try:
        return {r[0] for r in con.execute(f"SELECT {key} FROM {relation}").fetchall()}
    finally:
        con.close()


def ledger(home: Path) -> UplinkState:
    return UplinkState(paths(home))


# --------------------------------------------------------------------------- contracts


def test_shipped_exchange_contracts_load_with_their_schedules():
    exchanges = {e.exchange: e for e in load_exchanges()}
    assert set(load_profile().exchanges) <= set(exchanges)
    zibo, shandong = exchanges["zibo"], exchanges["shandong"]
    assert (zibo.level, zibo.schedule, zibo.trigger) == ("city", "0 2 * * *", "cron_or_assets")
    assert (shandong.level, shandong.schedule) == ("province", "0 3 * * 1")
    kinds = {e.transport_of(r).kind for e in exchanges.values() for r in e.resources}
    assert kinds == {"frontdb", "package", "http"}
    for exchange in exchanges.values():
        for r in exchange.resources:
            assert r.code and r.provider and r.share_type != "不予共享" and r.columns


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (("code: SD370322SJ00001", "code: SD-1"), "resources.0.code", "does not match"),
        (
            ("grade: L3, mask: drop}", "grade: L4}"),
            "resources.0.columns.10.mask",
            "above what shandong may receive unmasked",
        ),
        (("share_method: 文件", "share_method: 接口"), "resources.1.share_method", "is 文件"),
        (("key: [division_code]", "key: [nope]"), "resources.1.key", "'nope' is not a column"),
        (("kind: http", "kind: ftp"), "transports.gateway", "expected tags"),
        (("provider: health", "provider: nowhere"), "resources.2.provider", "not a system"),
    ],
)
def test_invalid_exchange_contract_names_file_field_and_reason(schemas, edit, field, reason):
    path = schemas / "exchanges" / "shandong.yaml"
    text = path.read_text(encoding="utf-8")
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    [error] = check_all(schemas)
    assert isinstance(error, ContractError)
    assert error.path == str(path)
    assert error.field.startswith(field), error
    assert reason in error.reason, error


def test_an_enabled_exchange_needs_its_contract(schemas):
    (schemas / "exchanges" / "zibo.yaml").unlink()
    [error] = check_all(schemas)
    assert error.field == "exchanges" and "zibo" in error.reason


def test_check_command_fails_on_a_broken_exchange(schemas, capsys):
    from etl.cli import main

    path = schemas / "exchanges" / "zibo.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("level: city", "level: town"), "utf-8")
    assert main(["check"]) == 1
    assert f"{path}: level:" in capsys.readouterr().err


# --------------------------------------------------------------------------- masks


def test_masks_keep_what_the_warehouse_keeps_and_are_idempotent():
    from etl.uplink import masks

    assert masks.mask_name(" 张三丰 ") == "张**" and masks.mask_name("张") == "张*"
    assert masks.mask_id_number("370322199001011234") == "370322********1234"
    assert masks.mask_mobile("18012341999") == "180****1999"
    assert masks.mask_landline("05336912345") == "0533*****45"
    assert masks.mask_bank_card("6222020200112233") == "6222********2233"
    assert masks.mask_address(CANARY_ADDRESS) == "青城镇东关村"
    assert masks.mask_address("高青县芦湖街道某小区") is None  # nothing finer than a village
    assert masks.mask_year(date(1985, 6, 1)) == "1985"
    assert masks.mask_mobile("123") == "***"
    for fn in (masks.mask_name, masks.mask_mobile, masks.mask_id_number, masks.mask_address):
        assert fn(None) is None and fn("") is None
    for value in ("370322199001011234", "18012341999", "张三丰", CANARY_ADDRESS):
        for fn in masks.DISPLAY_MASKS.values():
            once = fn(value)
            assert fn(once) == once if once is not None else True


MASK_SAMPLES = [None, "", " ", "\u3000", "\x1c张\x1f", "张三丰", " 张三丰 ", "张", "é", "e\u0301x",
                "370322199001011234", "37032219900101123x", "18012341999", "123", "x'y",
                CANARY_ADDRESS, "高青县芦湖街道某小区", "青城镇\n东关村", "村", "1985-06-01",
                "１９８５年", "85", "0533-6912345", "91370322MA3C4XYZ12"]  # fmt: skip


@pytest.mark.parametrize("mask", ["pseudonym", *sorted(masks_module.DISPLAY_MASKS)])
def test_the_sql_of_every_mask_gives_what_its_python_reference_gives(mask):
    """The uplinks mask whole columns in DuckDB (``mask_sql``); on every kind of value (blanks
    of every sort, combining marks, full-width digits, quotes, line breaks) each mask gives
    exactly what its Python definition gives."""
    key = b"an exchange's pseudonym key"
    reference = (
        masks_module.pseudonymiser(key) if mask == "pseudonym" else masks_module.DISPLAY_MASKS[mask]
    )
    con = duckdb.connect()
    masks_module.bind_pseudonym_key(con, key)
    con.execute("CREATE TABLE v (i INTEGER, value VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(MASK_SAMPLES)))
    got = con.execute(f"SELECT {masks_module.mask_sql(mask, 'value')} FROM v ORDER BY i").fetchall()
    assert [g for (g,) in got] == [reference(v) for v in MASK_SAMPLES]
    assert "".join(c for c in map(chr, range(0x3001)) if c.isspace()) == masks_module.WHITESPACE


def test_no_column_above_its_grade_is_sent_unmasked_by_any_contract():
    for exchange in load_exchanges():
        for resource in exchange.resources:
            ceiling = exchange.ceiling(resource)
            sent = {c.name: c.applied_mask for c in outgoing_columns(exchange, resource)}
            for column in resource.columns:
                if grade_above(column.grade, ceiling):
                    assert sent.get(column.name, "drop") != "none", (exchange.exchange, column)
                else:
                    assert sent[column.name] == "none"


def _above_grade_values(home: Path) -> dict[str, set[str]]:
    """Per exchange, every value in the warehouse of a column the exchange may not receive
    unmasked that its mask would change (the raw canaries planted by build_warehouse among
    them; a value the warehouse already masked masks to itself and may pass)."""
    from etl.uplink.masks import DISPLAY_MASKS

    con = duckdb.connect(str(warehouse_file(home)), read_only=True)
    out: dict[str, set[str]] = {}
    try:
        for exchange in load_exchanges():
            values = out.setdefault(exchange.exchange, set())
            for resource in exchange.resources:
                ceiling = exchange.ceiling(resource)
                for column in resource.columns:
                    if not grade_above(column.grade, ceiling):
                        continue
                    rows = con.execute(f"SELECT DISTINCT {column.name} FROM {resource.source}")
                    mask = DISPLAY_MASKS.get(column.mask, lambda v: None)  # drop, pseudonym
                    values |= {
                        str(v) for (v,) in rows.fetchall() if v is not None and mask(v) != str(v)
                    }
    finally:
        con.close()
    return out


def test_no_field_above_its_allowed_grade_ever_leaves_unmasked(county):
    """Whatever the warehouse holds in a column above an exchange's entitlement (here raw
    canaries), none of it is in any byte the exchange received or the county sent it."""
    lines = uplink.deliver_all(county, progress=lambda m: None)
    assert all(line["receipt"] == "ACCEPTED" for line in lines), lines
    forbidden = _above_grade_values(county)
    assert CANARY_PHONE in forbidden["zibo"] and CANARY_NAME in forbidden["shandong"]
    assert "370322199001011234" in forbidden["zibo"]
    for exchange, values in forbidden.items():
        sent = [
            *(county / "outbox" / exchange).rglob("*"),
            *(county / "exchanges" / exchange).rglob("*"),  # 前置库 and receiver store
            *(county / "uplink" / "packages" / exchange).rglob("*"),
        ]
        blobs = [p.read_bytes() for p in sent if p.is_file()]
        assert blobs
        leaks = {v for v in values for blob in blobs if v.encode("utf-8") in blob}
        assert leaks == set(), exchange
    # and what is entitled goes out: Zibo receives the L3 name as the warehouse holds it
    assert CANARY_NAME.encode() in (county / "exchanges" / "zibo" / "frontdb.sqlite").read_bytes()


# --------------------------------------------------------------------------- delivery


@pytest.mark.parametrize("batch_rows", [50_000, 4], indirect=True)
def test_each_delivery_sends_only_what_changed_since_the_last_accepted_package(county, batch_rows):
    with exchanges_side(county) as sides:
        first = uplink.deliver_all(county, lambda m: None, sides)
        assert {(x["exchange"], x["resource"]): x["I"] for x in first} == {
            ("zibo", "entity_basic"): 20,
            ("zibo", "people_basic"): 30,
            ("zibo", "population_by_town"): 2,
            ("shandong", "entity_basic"): 20,
            ("shandong", "divisions"): 5,
            ("shandong", "consultations_daily"): 15,
        }
        change_warehouse(
            county,
            "UPDATE base.base_entities SET status = '注销' WHERE entity_name LIKE '%第3农机%'",
            "DELETE FROM base.base_people WHERE birth_date < DATE '1952-01-01'",
            "INSERT INTO base.base_people SELECT 'new' || person_key, id_number_masked, "
            "name_masked, sex, birth_date, ethnicity, village_code, town_code, address_masked, "
            "phone_masked, register_status, in_register FROM base.base_people LIMIT 1",
        )
        second = {
            (x["exchange"], x["resource"]): x for x in uplink.deliver_all(county, print, sides)
        }
        zibo_people = second[("zibo", "people_basic")]
        assert (zibo_people["I"], zibo_people["U"], zibo_people["D"]) == (1, 0, 2)
        assert zibo_people["receipt"] == "ACCEPTED"
        for ex in ("zibo", "shandong"):
            entity = second[(ex, "entity_basic")]
            assert (entity["I"], entity["U"], entity["D"], entity["receipt"]) == (
                0, 1, 0, "ACCEPTED"
            )  # fmt: skip
        assert second[("shandong", "divisions")]["status"] == "unchanged"

        people = sides["zibo"].receiver.expected["370322-GA-0001"]
        assert len(held(sides["zibo"], "370322-GA-0001")) == 29
        deleted = [r for r in held(sides["zibo"], "370322-GA-0001", True) if r["_deleted"]]
        assert len(deleted) == 2  # soft deletes: the rows stay, flagged
        assert people[2] == ["RYJM"]
        entities = {r["TYSHXYDM"]: r for r in held(sides["shandong"], "SD370322SJ00001")}
        assert set(entities) == source_rows(county, "base.base_entities", "credit_code")
        assert "FDDBRXM" in entities[next(iter(entities))] and not any(
            "LXDH" in r for r in entities.values()
        )

        third = uplink.deliver_all(county, lambda m: None, sides)
        assert {x["status"] for x in third} == {"unchanged"}
    packages = ledger(county).packages()
    assert len(packages) == 6 + 3  # the third delivery sent nothing
    for p in packages:  # rows sent = rows accepted + rows rejected, per package
        assert p["reconciled"] and p["rows_sent"] == p["rows_accepted"] + p["rows_rejected"]


def test_a_night_without_a_new_build_reads_no_mart(county):
    """The warehouse changes only by swapping in a build, which records the relations it
    wrote. Once the exchange holds the rows of the build that last wrote a resource's relation
    (nothing to send, or a package accepted whole), the next delivery reads no mart; a build
    that writes the relation again is read and its changes delivered."""
    record_build(county, "build-1")  # wrote everything, as far as anyone knows
    with exchanges_side(county) as sides:
        first = uplink.deliver_all(county, lambda m: None, sides)
        assert {x["receipt"] for x in first} == {"ACCEPTED"}
        # a change no build recorded: only a delivery that reads the mart would see it
        change_warehouse(
            county,
            "UPDATE base.base_entities SET status = '注销' WHERE entity_name LIKE '%第3农机%'",
        )
        quiet = uplink.deliver_all(county, lambda m: None, sides)
        assert {x["status"] for x in quiet} == {"unchanged"}
        assert len(ledger(county).packages()) == 6 and not any(x["mart_read"] for x in quiet)
        rows = uplink.status_rows(county)
        assert {r["pending"] for r in rows} == {"nothing"}

        record_build(county, "build-2", ["base.base_entities", "marts.mart_quality__scorecard"])
        second = {(x["exchange"], x["resource"]): x for x in uplink.deliver_all(
            county, lambda m: None, sides)}  # fmt: skip
        for ex in ("zibo", "shandong"):
            entity = second[(ex, "entity_basic")]
            assert (entity["U"], entity["receipt"]) == (1, "ACCEPTED")
        others = [x for key, x in second.items() if key[1] != "entity_basic"]
        assert {(x["status"], x["mart_read"]) for x in others} == {("unchanged", False)}

        third = uplink.deliver_all(county, lambda m: None, sides)
        assert {(x["status"], x["mart_read"]) for x in third} == {("unchanged", False)}
    assert len(ledger(county).packages()) == 8


def test_without_a_new_build_pending_receipts_and_rejected_rows_are_still_delivered(
    county, monkeypatch
):
    record_build(county, "build-1")
    zibo = find_exchange("zibo")
    people, entities = zibo.resource("people_basic"), zibo.resource("entity_basic")
    change_warehouse(
        county,
        "UPDATE base.base_entities SET credit_code = 'BAD' || substr(credit_code, 4) "
        "WHERE entity_name LIKE '%第5农机%'",
    )
    with exchanges_side(county) as sides:
        # a package waiting for its receipt is sent again, not skipped
        sent = uplink.deliver_resource(zibo, people, county, sleep=no_sleep)
        again = uplink.deliver_resource(zibo, people, county, sleep=no_sleep)
        assert again["package_id"] == sent["package_id"] and again["attempts"] == 2
        partial = uplink.deliver_resource(zibo, entities, county, sleep=no_sleep)
        sides["zibo"].process()
        uplink.collect_receipts(zibo, county)
        assert ledger(county).package(partial["package_id"])["receipt_status"] == "PARTIAL"

        # the rejected row is read and sent again although no build came
        resent = uplink.deliver_resource(zibo, entities, county, sleep=no_sleep)
        assert resent["rows_sent"] == 1 and resent["package_id"] != partial["package_id"]
        done = uplink.deliver_resource(zibo, people, county, sleep=no_sleep)
        assert (done["status"], done["mart_read"]) == ("unchanged", False)

        # another pseudonym key means other outgoing rows from the same build: read again
        monkeypatch.setenv("COUNTYLAKE_SECRET_ZIBO_EXCHANGE", "another-shared-secret-0123456789")
        rekeyed = uplink.deliver_resource(zibo, people, county, sleep=no_sleep)
        assert (rekeyed["I"], rekeyed["D"]) == (30, 30)


def test_status_shows_last_package_receipt_and_pending(county, capsys):
    from etl.cli import main

    uplink.deliver_all(county, progress=lambda m: None)
    change_warehouse(
        county,
        "DELETE FROM base.dim_division WHERE division_level = 'village'",
        "DELETE FROM marts.mart_health__consultations_by_level_daily "
        "WHERE date_day = DATE '2026-11-02'",
    )
    rows = {(r["exchange"], r["resource"]): r for r in uplink.status_rows(county)}
    assert rows[("shandong", "consultations_daily")]["pending"].endswith("(D 5)")
    assert rows[("zibo", "people_basic")]["receipt"] == "ACCEPTED"
    assert rows[("zibo", "people_basic")]["reconciled"] == "yes"
    assert rows[("zibo", "people_basic")]["pending"] == "nothing"
    assert rows[("shandong", "divisions")]["pending"] == "2 changed rows not yet sent (D 2)"
    assert main(["uplink", "status"]) == 0
    out = capsys.readouterr().out
    assert "370322-GA-0001" in out and "ACCEPTED" in out and "D 2" in out

    # soft deletes on a composite key (a date and a level) reach the province once
    lines = {x["resource"]: x for x in uplink.deliver_all(county, progress=lambda m: None)}
    line = lines["consultations_daily"]
    assert (line["D"], line["receipt"], line["accepted"]) == (5, "ACCEPTED", 5)
    store = ReferenceReceiver(
        find_exchange("shandong"),
        (county / "secrets" / "shandong_exchange.key").read_text().strip(),
        uplink.receiver_store_url(find_exchange("shandong"), paths(county)),
    )
    rows = store.current_rows("SD370322WJ00001", include_deleted=True)
    gone = {(str(r["TJRQ"]), r["YLCJ"]) for r in rows if r["_deleted"]}
    assert gone == {("2026-11-02", level) for level in range(1, 6)} and len(rows) == 15
    store.close()


def _http_setup(county):
    exchange = find_exchange("shandong")
    resource = exchange.resource("entity_basic")
    where = paths(county)
    secret = uplink.exchange_secret(exchange, resource, where)
    receiver = ReferenceReceiver(exchange, secret, uplink.receiver_store_url(exchange, where))
    return exchange, resource, where, receiver


def test_receiver_down_then_up_delivers_the_same_package_once(county, monkeypatch):
    exchange, resource, where, receiver = _http_setup(county)
    port = free_port()
    monkeypatch.setenv("COUNTYLAKE_CONN_SHANDONG_GATEWAY", f"http://127.0.0.1:{port}/shandong")
    down = uplink.deliver_resource(exchange, resource, where, sleep=no_sleep)
    assert down["status"] == "failed" and down["attempts"] == exchange.retry.attempts
    assert "not reachable" in down["error"]
    with HttpReceiver(receiver, port=port):
        up = uplink.deliver_resource(exchange, resource, where, sleep=no_sleep)
    assert up["package_id"] == down["package_id"]  # the same package, not a new one
    assert up["receipt"] == "ACCEPTED" and up["accepted"] == 20
    assert len(receiver.current_rows(resource.code)) == 20
    assert len(ledger(county).packages("shandong")) == 1


def test_timeout_after_the_receiver_committed_is_applied_once(county, monkeypatch):
    """The ambiguous case: the receiver applied the package, the sender timed out. The sender
    asks for the receipt by package id instead of building anything new; a resend of the same
    id is answered with the stored receipt and changes nothing."""
    from etl.uplink.package import Package
    from etl.uplink.transports import HttpTransport

    exchange, resource, where, receiver = _http_setup(county)
    with HttpReceiver(receiver) as server:
        url = server.url("/shandong")
        monkeypatch.setenv("COUNTYLAKE_CONN_SHANDONG_GATEWAY", url)
        server.fault, server.delay_s = "timeout_after_commit", 3.0
        secret = uplink.exchange_secret(exchange, resource, where)
        impatient = HttpTransport(exchange, resource, url, secret, timeout_s=0.5)
        line = uplink.deliver_resource(exchange, resource, where, transport=impatient)
        assert line["receipt"] == "ACCEPTED" and line["accepted"] == 20
        attempts = ledger(county).attempts(line["package_id"])
        assert [a["outcome"] for a in attempts] == ["ambiguous"]
        assert server.posts == 1

        server.fault = None  # a duplicate delivery of the same package id
        package = Package(Path(ledger(county).package(line["package_id"])["path"]))
        again = HttpTransport(exchange, resource, url, secret, timeout_s=5).send(package)
        assert again.outcome == "duplicate"
        assert again.receipt["package_id"] == line["package_id"]
    rows = receiver.current_rows(resource.code)
    assert len(rows) == 20 and {r["_package_id"] for r in rows} == {line["package_id"]}
    with receiver.engine.connect() as conn:
        from sqlalchemy import func, select

        assert conn.execute(select(func.count()).select_from(receiver.receipts)).scalar() == 1


def test_bad_signature_is_refused_and_nothing_is_applied(county, monkeypatch):
    exchange, resource, where, receiver = _http_setup(county)
    with HttpReceiver(receiver) as server:
        monkeypatch.setenv("COUNTYLAKE_CONN_SHANDONG_GATEWAY", server.url("/shandong"))
        monkeypatch.setenv("COUNTYLAKE_SECRET_SHANDONG_EXCHANGE", "not-the-shared-secret-at-all")
        refused = uplink.deliver_resource(exchange, resource, where, sleep=no_sleep)
        assert refused["status"] == "failed" and "401" in refused["error"]
        assert "bad signature" in refused["error"] and refused["attempts"] == 1
        assert receiver.current_rows(resource.code) == []
        monkeypatch.delenv("COUNTYLAKE_SECRET_SHANDONG_EXCHANGE")
        fixed = uplink.deliver_resource(exchange, resource, where, sleep=no_sleep)
    assert fixed["package_id"] == refused["package_id"] and fixed["receipt"] == "ACCEPTED"
    assert len(receiver.current_rows(resource.code)) == 20


def test_corrupted_package_is_rejected_and_its_rows_are_sent_again(county):
    exchange = find_exchange("zibo")
    resource = exchange.resource("people_basic")
    with exchanges_side(county) as sides:
        first = uplink.deliver_resource(exchange, resource, county, sleep=no_sleep)
        assert first["status"] == "delivered" and first["receipt"] is None
        data = county / "outbox" / "zibo" / "packages" / first["package_id"] / "data.csv"
        text = data.read_text(encoding="utf-8")
        data.write_text(text.replace("370322101201", "370322101202", 1), encoding="utf-8")
        [receipt] = sides["zibo"].process()
        assert receipt["status"] == "REJECTED" and "checksum mismatch" in receipt["reason"]
        assert uplink.collect_receipts(exchange, county) == []
        rejected = ledger(county).package(first["package_id"])
        assert rejected["receipt_status"] == "REJECTED" and rejected["reconciled"]
        assert rejected["rows_rejected"] == 30 and held(sides["zibo"], resource.code) == []

        again = uplink.deliver_resource(exchange, resource, county, sleep=no_sleep)
        assert again["package_id"] != first["package_id"] and again["I"] == 30
        sides["zibo"].process()
        uplink.collect_receipts(exchange, county)
        assert ledger(county).package(again["package_id"])["receipt_status"] == "ACCEPTED"
        assert len(held(sides["zibo"], resource.code)) == 30


@pytest.mark.parametrize("batch_rows", [7], indirect=True)
def test_rows_out_of_order_over_many_batches_are_checked_and_applied_once(county, batch_rows):
    """The rows checksum is over the rows in row-number order, wherever the file has them."""
    import hashlib

    from etl.uplink.package import sign

    exchange = find_exchange("zibo")
    resource = exchange.resource("people_basic")
    with exchanges_side(county) as sides:
        sent = uplink.deliver_resource(exchange, resource, county, sleep=no_sleep)
        folder = county / "outbox" / "zibo" / "packages" / sent["package_id"]
        header, *lines = (folder / "data.csv").read_bytes().splitlines(keepends=True)
        data = header + b"".join(reversed(lines))  # 30 rows, last first, in 5 batches
        (folder / "data.csv").write_bytes(data)
        manifest = json.loads((folder / "manifest.json").read_bytes())
        manifest["files"][0]["sha256"] = hashlib.sha256(data).hexdigest()
        text = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
        (folder / "manifest.json").write_bytes(text)
        secret = uplink.exchange_secret(exchange, resource, paths(county))
        (folder / "manifest.sig").write_text(sign(secret, text) + "\n", encoding="ascii")
        [receipt] = sides["zibo"].process()
        assert (receipt["status"], receipt["rows_accepted"]) == ("ACCEPTED", 30)
        uplink.collect_receipts(exchange, county)
        assert ledger(county).package(sent["package_id"])["reconciled"]
        assert len(held(sides["zibo"], resource.code)) == 30


def test_partial_acceptance_keeps_and_reports_rejected_rows(county):
    exchange = find_exchange("zibo")
    resource = exchange.resource("entity_basic")
    change_warehouse(
        county,
        "UPDATE base.base_entities SET credit_code = 'BAD' || substr(credit_code, 4) "
        "WHERE entity_name LIKE '%第5农机%'",
    )
    with exchanges_side(county) as sides:
        sent = uplink.deliver_resource(exchange, resource, county, sleep=no_sleep)
        [receipt] = sides["zibo"].process()
        assert receipt["status"] == "PARTIAL"
        assert (receipt["rows_accepted"], receipt["rows_rejected"]) == (19, 1)
        [error] = receipt["errors"]
        assert error["key"]["TYSHXYDM"].startswith("BAD") and "TYSHXYDM" in error["errors"][0]
        uplink.collect_receipts(exchange, county)
        [kept] = ledger(county).rejected_rows("zibo")
        assert kept["package_id"] == sent["package_id"] and kept["op"] == "I"
        status = {r["resource"]: r for r in uplink.status_rows(county) if r["exchange"] == "zibo"}
        assert status["entity_basic"]["receipt"] == "PARTIAL"
        assert "1 rejected rows to resend" in status["entity_basic"]["pending"]
        assert len(held(sides["zibo"], resource.code)) == 19

        # the bad row is sent again until it is fixed at the source; then it is accepted
        again = uplink.deliver_resource(exchange, resource, county, sleep=no_sleep)
        assert again["rows_sent"] == 1
        sides["zibo"].process()
        change_warehouse(
            county,
            "UPDATE base.base_entities SET credit_code = '913' || substr(credit_code, 4) "
            "WHERE credit_code LIKE 'BAD%'",
        )
        uplink.collect_receipts(exchange, county)
        fixed = uplink.deliver_resource(exchange, resource, county, sleep=no_sleep)
        assert (fixed["I"], fixed["D"]) == (1, 0)
        sides["zibo"].process()
        uplink.collect_receipts(exchange, county)
        assert ledger(county).package(fixed["package_id"])["receipt_status"] == "ACCEPTED"
        assert len(held(sides["zibo"], resource.code)) == 20


def test_frontdb_commit_unconfirmed_is_not_written_twice(county):
    """A 前置库 commit whose acknowledgement is lost: the resend finds its batch row and
    writes nothing; the receiver applies the batch once."""
    from sqlalchemy import create_engine, func, select

    from etl.uplink.transports import AmbiguousError, FrontDbTransport

    exchange = find_exchange("zibo")
    resource = exchange.resource("entity_basic")
    where = paths(county)

    class LostAck(FrontDbTransport):
        lost = 1

        def send(self, package):
            sent = super().send(package)
            if self.lost:
                self.lost -= 1
                raise AmbiguousError(self.where, "connection reset after COMMIT")
            return sent

    url = uplink.transport_url(exchange, resource, where)
    secret = uplink.exchange_secret(exchange, resource, where)
    transport = LostAck(exchange, resource, outgoing_columns(exchange, resource), url, secret)
    with exchanges_side(county) as sides:
        line = uplink.deliver_resource(exchange, resource, where, transport=transport)
        assert line["status"] == "delivered"
        outcomes = [a["outcome"] for a in ledger(county).attempts(line["package_id"])]
        assert outcomes == ["ambiguous", "duplicate"]
        engine = create_engine(url)
        with engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(transport.data)).scalar()
        assert count == 20
        sides["zibo"].process()
        uplink.collect_receipts(exchange, county)
        assert ledger(county).package(line["package_id"])["receipt_status"] == "ACCEPTED"
        assert len(held(sides["zibo"], resource.code)) == 20
        engine.dispose()
    transport.close()


def test_packages_are_signed_with_manifest_counts_schema_and_checksums(county):
    import hashlib

    from etl.uplink.package import verify_signature

    uplink.deliver_all(county, progress=lambda m: None)
    folder = next((county / "outbox" / "zibo" / "packages").iterdir())
    manifest_bytes = (folder / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    secret = (county / "secrets" / "zibo_exchange.key").read_text().strip()
    assert verify_signature(secret, manifest_bytes, (folder / "manifest.sig").read_text().strip())
    [entry] = manifest["files"]
    data = (folder / entry["name"]).read_bytes()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["format"] == "csv"
    assert data.decode("utf-8").splitlines()[0].startswith('"PCH","HH","CZBS","BGSJ","RYJM"')
    assert manifest["rows"] == 30 and manifest["ops"] == {"I": 30, "U": 0, "D": 0}
    assert manifest["resource"]["code"] == "370322-GA-0001" and manifest["key"] == ["RYJM"]
    assert [c["name"] for c in manifest["schema"]][4:] == [
        "RYJM", "SFZHM", "XM", "XB", "CSRQ", "MZ", "HJCJDM", "HJXZDM", "LXDH", "RKZT"
    ]  # fmt: skip
    receipts = list((county / "outbox" / "zibo" / "receipts").glob("*.json"))
    assert len(receipts) == 1 and json.loads(receipts[0].read_text())["status"] == "ACCEPTED"


def test_outbox_on_any_fsspec_path(county, monkeypatch):
    monkeypatch.setenv("COUNTYLAKE_CONN_ZIBO_OUTBOX", f"memory://uplink-{id(county)}/zibo")
    exchange = find_exchange("zibo")
    resource = exchange.resource("people_basic")
    with exchanges_side(county) as sides:
        line = uplink.deliver_resource(exchange, resource, county, sleep=no_sleep)
        [receipt] = sides["zibo"].process()
        assert receipt["status"] == "ACCEPTED"
        assert uplink.collect_receipts(exchange, county) == []
    assert ledger(county).package(line["package_id"])["receipt_status"] == "ACCEPTED"


def test_bench_uplink_measures_every_step_of_one_package(tmp_path):
    """``python -m etl.bench_uplink`` on a small package: each step in its own process, with
    its own peak, and every row accepted on both receiving sides."""
    from etl import bench_uplink

    out = tmp_path / "bench.json"
    assert bench_uplink.main(["--rows", "500", "--work", str(tmp_path), "--json", str(out)]) == 0
    steps = json.loads(out.read_text())["steps"]
    assert list(steps) == list(bench_uplink.CHILDREN)
    assert all(s["rows"] == 500 and s["peak_mb"] > 0 for s in steps.values())
    for side in ("frontdb_receive", "outbox_receive"):
        assert (steps[side]["receipt"], steps[side]["accepted"]) == ("ACCEPTED", 500)


# --------------------------------------------------------------------------- catalogue, DAGs


def test_catalogue_from_the_contracts(county, capsys):
    from etl.cli import main

    assert main(["uplink", "catalogue"]) == 0
    folder = county / "catalogue"
    document = json.loads((folder / "catalogue.json").read_text(encoding="utf-8"))
    codes = {r["code"] for r in document["resources"]}
    assert codes == {r.code for e in load_exchanges() for r in e.resources}
    entry = next(r for r in document["resources"] if r["code"] == "SD370322SJ00001")
    assert entry["share_type"] == "有条件共享" and entry["share_method"] == "接口"
    assert entry["provider_code"].endswith("-SJ") and entry["update_cycle"] == "每周"
    sent = {i["item"]: i["sent_as"] for i in entry["items"]}
    assert (
        sent["LXDH"] == "不报送" and sent["FDDBRXM"].startswith("脱敏") and sent["ZTMC"] == "原样"
    )
    csv_text = (folder / "catalogue.csv").read_text(encoding="utf-8-sig")
    assert csv_text.startswith("交换平台,资源代码,资源名称,提供方")
    page = (folder / "catalogue.html").read_text(encoding="utf-8")
    assert "政务信息资源目录" in page and entry["name"] in page and "不报送" in page


DAG_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    tt = dag.timetable
    inner = getattr(tt, "timetable", tt)
    sensor = dag.get_task("wait_for_receipts")
    cond = getattr(tt, "asset_condition", None)
    out["dags"][dag_id] = {
        "timetable": type(tt).__name__,
        "cron": inner.expression, "tz": str(getattr(inner.timezone, "name", inner.timezone)),
        "assets": sorted(a.name for a in getattr(cond, "objects", [])),
        "deliver": sorted(t.task_id for t in dag.tasks if t.task_id.startswith("deliver__")),
        "sensor_mode": sensor.mode, "sensor_upstream": sorted(sensor.upstream_task_ids),
        "tags": sorted(dag.tags), "max_active_runs": dag.max_active_runs,
    }
print(json.dumps(out))
"""


def test_one_dag_per_exchange_on_its_schedule_waiting_without_a_slot(tmp_path):
    import os
    import subprocess
    import sys

    from etl.contracts import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COUNTYLAKE_"))}
    env.update(COUNTYLAKE_HOME=str(tmp_path), AIRFLOW_HOME=str(tmp_path / "airflow"))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    done = subprocess.run(
        [sys.executable, "-c", DAG_PROBE, str(REPO_ROOT / "dags" / "uplink.py")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}
    dags = out["dags"]
    assert set(dags) == {f"uplink_{e}" for e in load_profile().exchanges}
    zibo, shandong = dags["uplink_zibo"], dags["uplink_shandong"]
    assert zibo["timetable"] == "AssetOrTimeSchedule"
    assert (zibo["cron"], zibo["tz"]) == ("0 2 * * *", "Asia/Shanghai")
    # the marts it reads, as the warehouse DAG names them; base libraries emit no Asset
    assert zibo["assets"] == ["countylake.mart.mart_population__by_town"]
    assert shandong["timetable"] == "CronTriggerTimetable" and shandong["cron"] == "0 3 * * 1"
    for name, dag in dags.items():
        exchange = find_exchange(name.removeprefix("uplink_"))
        expected = sorted(f"deliver__{r.resource}" for r in exchange.resources)
        assert dag["deliver"] == expected == dag["sensor_upstream"]
        assert dag["sensor_mode"] == "reschedule" and dag["max_active_runs"] == 1
        assert dag["tags"] == sorted([exchange.exchange, "uplink"])


def test_cli_delivers_through_the_reference_receivers(county, capsys):
    from etl.cli import main

    assert main(["uplink", "deliver", "--reference", "--exchange", "shandong"]) == 0
    out = capsys.readouterr().out
    assert "SD370322SJ00001" in out and "ACCEPTED" in out and "370322-SJ-0001" not in out
    assert main(["uplink", "deliver", "--reference"]) == 0
    out = capsys.readouterr().out
    assert "370322-SJ-0001-000001" in out and "SD370322SJ00001-000002" not in out
    assert "divisions (SD370322MZ00001, package): unchanged" in out


def test_check_asks_every_exchange_endpoint_and_sends_nothing(county, monkeypatch, capsys):
    """`countylake uplink check` before a first delivery: each resource's front-end database,
    outbox or signed receiver answers, or is named with why not; no package leaves."""
    from etl.cli import main

    kinds = {
        f"{name}.{r.resource}": find_exchange(name).transport_of(r).kind
        for name in load_profile().exchanges
        for r in find_exchange(name).resources
    }
    with monkeypatch.context() as before_the_city_is_ready:  # an empty 前置库
        fresh = f"sqlite:///{county / 'empty-frontdb.sqlite'}"
        before_the_city_is_ready.setenv("COUNTYLAKE_CONN_ZIBO_FRONTDB", fresh)
        assert main(["uplink", "check", "--exchange", "zibo"]) == 0
        assert "answers; the first delivery creates QZK_" in capsys.readouterr().out
    with exchanges_side(county):
        assert main(["uplink", "check"]) == 0
        out = capsys.readouterr().out
        assert f"{len(kinds)} of {len(kinds)} resources can be delivered" in out
        assert "answers; its tables are there" in out and "takes files" in out
        assert "answers a signed request" in out

        # the province's secret wrong, the city's 前置库 down, its outbox under a file
        monkeypatch.setenv("COUNTYLAKE_SECRET_SHANDONG_EXCHANGE", "not-the-shared-secret-at-all")
        frontdb = f"postgresql://127.0.0.1:{free_port()}/qzk"
        monkeypatch.setenv("COUNTYLAKE_CONN_ZIBO_FRONTDB", frontdb)
        blocked = county / "not-a-folder"
        blocked.write_text("a file where the outbox should be", encoding="utf-8")
        monkeypatch.setenv("COUNTYLAKE_CONN_ZIBO_OUTBOX", (blocked / "outbox").as_uri())
        assert main(["uplink", "check"]) == 1
    out, err = capsys.readouterr()
    failed = {line.split(":")[0][len("FAILED ") :] for line in err.splitlines() if "FAILED" in line}
    expected = {name for name, kind in kinds.items() if name.startswith("zibo.") or kind == "http"}
    assert failed == expected
    assert "HTTP 401" in err and "cannot connect" in err and "cannot write to the outbox" in err
    assert "COUNTYLAKE_CONN_ZIBO_FRONTDB" in out
    state = UplinkState(paths(county))
    assert not state.path.exists() or state.packages() == []
