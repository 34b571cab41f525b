"""The county simulator: reproducible, growing day by day, valid national codes outside the
recorded dirt, the export formats of the departments, the signed traffic-police API, and the
PostgreSQL / MariaDB targets."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import socket
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path

import fastexcel
import httpx
import pytest

from etl.connections import credentials
from etl.contracts import REPO_ROOT, load_profile, load_systems
from etl.signing import signed_headers
from etl.simulate import dirt_counts, read_state, simulate
from etl.simulate.api_server import ApiServer
from etl.standards import gb11643, gb32100

SCALE = 0.01
PROFILE = load_profile()
SYSTEMS = {s.system: s for s in load_systems()}
START = date.fromisoformat(PROFILE.simulation.start_date)
VILLAGES = {v.code for v in PROFILE.villages}


def digest(home: Path) -> str:
    """SHA-256 over every table (rows in key order) and every file of the simulated sources."""
    h = hashlib.sha256()
    for path in sorted((home / "sources").rglob("*")):
        if not path.is_file() or path.name.endswith(("-journal", ".part")):
            continue
        h.update(str(path.relative_to(home)).encode())
        if path.suffix == ".db":
            conn = sqlite3.connect(path)
            for (table,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
            ):
                h.update(table.encode())
                for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2, 3'):
                    h.update(repr(row).encode())
            conn.close()
        else:
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def county(tmp_path_factory) -> Path:
    """A small county after two days (read-only for the tests below)."""
    home = tmp_path_factory.mktemp("county")
    simulate(home, scale=0.03, days=2, seed=11)
    return home


def rows(home: Path, db: str, sql: str) -> list[tuple]:
    conn = sqlite3.connect(home / "sources" / db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def real_date(yyyymmdd: str) -> bool:
    try:
        return datetime.strptime(yyyymmdd, "%Y%m%d").date() <= START + timedelta(days=30)
    except ValueError:
        return False


def id_kind(value: str | None) -> str:
    """Classify one ID number as a validator would, by the dirt kind that explains it."""
    if value is None:
        return "null"
    if value != value.strip():
        return "blank_padded"
    if len(value) == 15:
        return "legacy_15"
    if value.endswith("x") and gb11643.check_char(value[:17]) == "X":
        return "lowercase_x"
    if not real_date(value[6:14]):
        return "bad_birth_date" if gb11643.check_char(value[:17]) == value[17] else "both"
    if gb11643.check_char(value[:17]) != value[17]:
        return "bad_id_check"
    return "clean"


def count_kinds(values) -> dict[str, int]:
    found: dict[str, int] = {}
    for v in values:
        k = id_kind(v)
        found[k] = found.get(k, 0) + 1
    return found


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    simulate(a, scale=SCALE, days=2, seed=5)
    simulate(b, scale=SCALE, days=2, seed=5)
    simulate(c, scale=SCALE, days=2, seed=6)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_data_does_not_depend_on_today():
    # every date comes from profile.simulation.start_date, never from the clock
    for path in (REPO_ROOT / "etl" / "simulate").glob("*.py"):
        if path.name == "api_server.py":  # signature freshness and nonce expiry only
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"date\.today|datetime\.now|\.utcnow|time\.time\(|localtime", text), (
            path.name
        )


def test_day_one_is_the_profile_start_date(county):
    state = read_state(county)
    assert state["dates"]["1"] == PROFILE.simulation.start_date
    ((low, high),) = rows(
        county, "health.db", "SELECT min(requested_at), max(requested_at) FROM consultation"
    )
    assert low >= f"{START} 00:00:00" and high < f"{START + timedelta(days=2)} 00:00:00"


# --------------------------------------------------------------------------- national codes


def test_id_numbers_valid_outside_the_recorded_dirt(county):
    found = rows(
        county,
        "public_security.db",
        "SELECT id_number, sex, birth_date, village_code FROM resident",
    )
    kinds = count_kinds(r[0] for r in found)
    recorded = dirt_counts(county, "public_security", "resident", scope="in_table")
    for kind in ("bad_id_check", "bad_birth_date", "lowercase_x"):
        assert kinds.get(kind, 0) == recorded.get(kind, 0), kind
    assert kinds.get("both", 0) == 0 and kinds.get("legacy_15", 0) == 0
    assert sum(recorded.values()) > 0
    for number, sex, birth, _ in found:
        assert sex == ("1" if int(number[16]) % 2 else "2")  # 17th digit odd = male
        if id_kind(number) == "clean":
            assert birth.replace("-", "") == number[6:14]
    prefixes = {r[0][:6] for r in found}
    assert PROFILE.code in prefixes
    assert {h.code for h in PROFILE.historical_codes} <= prefixes
    old = [r for r in found if r[0][:6] in {h.code for h in PROFILE.historical_codes}]
    assert all(int(r[2][:4]) < 1985 for r in old)
    unknown = sum(r[3] not in VILLAGES for r in found)
    assert unknown == recorded.get("unknown_village", 0)


def test_credit_codes_valid_and_kinds_present(county):
    found = rows(
        county, "market_regulation.db", "SELECT credit_code, entity_type, village_code FROM entity"
    )
    bad = [c for c, _, _ in found if gb32100.check_char(c[:17]) != c[17]]
    recorded = dirt_counts(county, "market_regulation", "entity", scope="in_table")
    assert len(bad) == recorded.get("bad_credit_check", 0)
    assert all(set(c) <= set(gb32100.CHARSET) and len(c) == 18 for c, _, _ in found)
    heads = {c[:2] for c, _, _ in found}
    assert {"91", "92", "93", "N2", "N3"} <= heads
    assert sum(c.startswith("92") for c, _, _ in found) > len(found) / 2
    collectives = [c for c, _, _ in found if c[0] == "N"]
    assert all(c[2:8] == PROFILE.code for c in collectives)
    assert any(c[2:8] == PROFILE.city.code for c, _, _ in found)
    unknown = sum(v is not None and v not in VILLAGES for _, _, v in found)
    assert unknown == recorded.get("unknown_village", 0)
    sites = rows(county, "emergency.db", "SELECT credit_code FROM chemical_site")
    codes = {c for c, _, _ in found}
    assert sites and all(s in codes and s.startswith("91") for (s,) in sites)


# --------------------------------------------------------------------------- growth


def test_growing_day_by_day_equals_one_go(tmp_path):
    grown, once = tmp_path / "grown", tmp_path / "once"
    first = simulate(grown, scale=SCALE, days=1, seed=3)
    assert first.day == 1 and first.regenerated
    day2 = START + timedelta(days=1)
    pattern = SYSTEMS["hotline"].datasets[0].files.pattern
    day2_file = (
        grown / "sources" / "hotline" / "exports" / pattern.replace("*", day2.strftime("%Y%m%d"))
    )
    assert not day2_file.exists()
    second = simulate(grown, scale=SCALE, days=2, seed=3)
    assert second.days_added == [2] and not second.regenerated
    assert day2_file.exists()
    simulate(once, scale=SCALE, days=2, seed=3)
    assert digest(grown) == digest(once)
    lo, hi = f"{day2} 00:00:00", f"{day2 + timedelta(days=1)} 00:00:00"
    for db, table, column in (
        ("public_security.db", "resident", "updated_at"),
        ("health.db", "referral", "updated_at"),
    ):
        late = rows(grown, db, f"SELECT {column} FROM {table} WHERE {column} >= '{lo}'")
        assert late and all(lo <= v < hi for (v,) in late), table
    # asking again for the same day adds nothing; another seed regenerates
    assert simulate(grown, scale=SCALE, days=2, seed=3).days_added == []
    assert simulate(grown, scale=SCALE, days=1, seed=4).regenerated
    assert not day2_file.exists()


# --------------------------------------------------------------------------- files


def export(home: Path, system: str, day: int) -> Path:
    d = SYSTEMS[system].datasets[0]
    stamp = (START + timedelta(days=day - 1)).strftime("%Y%m%d")
    return home / "sources" / system / "exports" / d.files.pattern.replace("*", stamp)


def test_export_file_encodings_and_headers(county):
    raw = export(county, "housing_fund", 1).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    header = raw.decode("gb18030").splitlines()[0].split(",")
    assert header == [c.at_source for c in SYSTEMS["housing_fund"].datasets[0].columns]
    hot = export(county, "hotline", 1).read_bytes()
    assert hot.startswith(b"\xef\xbb\xbf")
    for system in ("hrss", "civil_affairs"):
        reader = fastexcel.read_excel(export(county, system, 2))
        sheet = reader.load_sheet(0)
        assert [c.name for c in sheet.available_columns()] == [
            c.at_source for c in SYSTEMS[system].datasets[0].columns
        ]
        assert sheet.height > 0


def test_recorded_dirt_matches_the_files(county):
    for day in (1, 2):
        # hrss workbook: ID dirt by kind, and duplicated keys
        ds = SYSTEMS["hrss"].datasets[0]
        df = (
            fastexcel.read_excel(export(county, "hrss", day))
            .load_sheet(0, dtypes={c.at_source: "string" for c in ds.columns})
            .to_pandas()
        )
        ids = df["公民身份号码"].tolist()
        found = count_kinds(None if isinstance(v, float) else v for v in ids)
        recorded = dirt_counts(county, "hrss", "insured_person", day)
        for kind in ("bad_id_check", "bad_birth_date", "lowercase_x", "legacy_15", "blank_padded"):
            assert found.get(kind, 0) == recorded.get(kind, 0), (day, kind)
        assert df["险种"].isna().sum() == recorded["null_required"]
        dups = df.duplicated(keep="first").sum()
        assert dups == recorded["duplicate_row"]
        # hotline CSV: late tickets, unknown villages, nulls of a required column
        text = export(county, "hotline", day).read_bytes().decode("utf-8-sig")
        tickets = list(csv.DictReader(io.StringIO(text)))
        rec = dirt_counts(county, "hotline", "ticket", day)
        file_day = (START + timedelta(days=day - 1)).isoformat()
        unique = {t["工单编号"]: t for t in tickets}
        assert sum(t["来电时间"] < file_day for t in unique.values()) == rec["late_row"]
        assert sum(t["村居代码"] not in VILLAGES for t in unique.values()) == rec["unknown_village"]
        assert sum(t["诉求类别"] == "" for t in unique.values()) == rec["null_required"]
        assert len(tickets) - len(unique) == rec["duplicate_row"]
    total = dirt_counts(county, "hrss", "insured_person")
    assert sum(total.values()) > 0


# --------------------------------------------------------------------------- the API


def client_headers() -> dict[str, str]:
    client, secret = credentials(SYSTEMS["traffic_police"].embedded)
    return signed_headers(client, secret)


def test_api_pages_through_a_window(county):
    d = SYSTEMS["traffic_police"].datasets[0]
    start_p, end_p = d.api.window_params
    lo, hi = f"{START} 00:00:00", f"{START + timedelta(days=1)} 00:00:00"
    with ApiServer(county) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        got, page, total = [], 1, None
        while True:
            r = http.get(
                d.api.path,
                headers=client_headers(),
                params={"PAGE": page, "PAGENUM": 7, start_p: lo, end_p: hi},
            )
            assert r.status_code == 200
            body = r.json()
            assert body["code"] == 0 and body["PAGE"] == page and body["PAGENUM"] == 7
            total = body["total"]
            got += body[d.api.records_field]
            if not body[d.api.records_field]:
                break
            page += 1
    assert total and len(got) == total
    assert all(lo <= row["GXSJ"] < hi for row in got)
    assert [(r["GXSJ"], r["WFBH"]) for r in got] == sorted((r["GXSJ"], r["WFBH"]) for r in got)
    keys = [r["WFBH"] for r in got]
    dups = len(keys) - len(set(keys))
    assert dups == dirt_counts(county, "traffic_police", "violation", 1)["duplicate_row"]
    late = sum(r["WFSJ"] < lo for r in got)
    assert late == dirt_counts(county, "traffic_police", "violation", 1)["late_row"]


def test_api_rejects_bad_signatures_and_replays(county):
    d = SYSTEMS["traffic_police"].datasets[0]
    with ApiServer(county) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        headers = client_headers()
        assert http.get(d.api.path, headers=headers).status_code == 200
        replay = http.get(d.api.path, headers=headers)
        assert replay.status_code == 401 and "replay" in replay.json()["msg"]
        forged = {**client_headers(), "X-Signature": "AAAA"}
        r = http.get(d.api.path, headers=forged)
        assert r.status_code == 401 and r.json() == {"code": 401, "msg": "bad signature"}
        assert http.get(d.api.path).status_code == 401
    with ApiServer(county, clients={"other": "s3cret"}) as server:
        r = httpx.get(server.url + d.api.path, headers=signed_headers("other", "s3cret"))
        assert r.status_code == 200


def test_api_fault_modes(county):
    path = SYSTEMS["traffic_police"].datasets[0].api.path
    with ApiServer(county) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        server.fault = "500"
        assert http.get(path, headers=client_headers()).status_code == 500
        server.fault = "garbage"
        r = http.get(path, headers=client_headers())
        assert r.status_code == 200
        with pytest.raises(ValueError):
            json.loads(r.content)
        server.fault, server.timeout_sleep_s = "timeout", 3
        with pytest.raises(httpx.TimeoutException):
            http.get(path, headers=client_headers(), timeout=0.3)
        server.fault = None
        server.fail_next = 2
        assert [http.get(path, headers=client_headers()).status_code for _ in range(3)] == [
            503,
            503,
            200,
        ]


# --------------------------------------------------------------------------- server targets


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
@pytest.mark.parametrize(("target", "port"), [("postgres", 5432), ("mariadb", 3306)])
def test_server_targets_hold_the_same_rows(tmp_path, target, port):
    if not port_open(port):
        pytest.skip(f"{target} is not listening on 127.0.0.1:{port}")
    import connectorx as cx

    local, remote = tmp_path / "local", tmp_path / "remote"
    simulate(local, scale=0.005, days=1, seed=9)
    simulate(remote, scale=0.005, days=1, seed=9, target=target)
    urls = json.loads((remote / "connections.json").read_text(encoding="utf-8"))
    assert read_state(remote)["target"] == target
    for system in SYSTEMS.values():
        if system.kind != "sql":
            continue
        url = urls[system.connection]
        assert url.endswith(f"/county_{PROFILE.code}_{system.system}")
        for d in system.datasets:
            ((n_local,),) = rows(local, f"{system.system}.db", f"SELECT count(*) FROM {d.table}")
            table = cx.read_sql(url, f"SELECT count(*) AS n FROM {d.table}", return_type="arrow")
            assert table.column(0)[0].as_py() == n_local, (system.system, d.table)
    # typed columns come back typed
    ps = urls[SYSTEMS["public_security"].connection]
    t = cx.read_sql(ps, "SELECT birth_date, updated_at FROM resident", return_type="arrow")
    assert str(t.schema.field("birth_date").type) == "date32[day]"
    assert str(t.schema.field("updated_at").type).startswith("timestamp")
    # back to the embedded target: the deployment no longer points at the server
    simulate(remote, scale=0.005, days=1, seed=9)
    urls = json.loads((remote / "connections.json").read_text(encoding="utf-8"))
    assert not set(urls) & {s.connection for s in SYSTEMS.values()}
    assert (remote / "sources" / "public_security.db").exists()


def test_sqlite_sources_read_typed_with_connectorx(county):
    import connectorx as cx

    url = SYSTEMS["public_security"].embedded.format(home=county)
    t = cx.read_sql(url, "SELECT * FROM resident", return_type="arrow")
    assert str(t.schema.field("birth_date").type) == "date32[day]"
    assert str(t.schema.field("updated_at").type).startswith("timestamp")


def test_credit_codes_never_repeat_one_issued_before_or_in_the_batch():
    """Random organisation bodies collide a few dozen times among a scale-5 county's 150,000
    entities; a repeated code would break the register's key (and PostgreSQL's primary key)."""
    import numpy as np
    import pandas as pd

    from etl.simulate.county import County

    county = County(load_profile(), load_systems(), 7, 0.01)
    kinds = np.array(["92"] * 4)
    division = np.array(["370322"] * 4)
    bodies = np.array(["12345678", "12345678", "87654321", "11111111"])
    county.entities = pd.DataFrame({"credit_code": gb32100_codes(kinds[:1], ["11111111"])})
    codes = county._unique_credit_codes(kinds, division, bodies, day=3)
    assert len(set(codes)) == 4 and not set(codes) & set(county.entities["credit_code"])
    assert all(gb32100.validate(str(c)).valid for c in codes)
    assert codes[0] == gb32100_codes(kinds[:1], ["12345678"])[0]  # the first keeps its body


def gb32100_codes(kinds, bodies):
    from etl.simulate import codes

    return codes.credit_codes(kinds, ["370322"] * len(kinds), bodies)
