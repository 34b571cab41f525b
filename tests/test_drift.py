"""Schema drift: added and removed columns, type and encoding changes are detected, handled by
each contract's policy, and recorded; nothing is dropped without a trace."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import duckdb
import pytest
import yaml
from conftest import copy_sources
from ingest_helpers import run_day

from etl.ledger import Ledger


@pytest.fixture
def sources(home, schemas, simulated_days):
    copy_sources(simulated_days, 1, home)
    return home / "sources"


def drift_records(home) -> list[tuple]:
    with Ledger(home / "state" / "ledger.duckdb").connect(read_only=True) as con:
        return con.execute(
            "SELECT system || '.' || dataset, change, column_name, action FROM drift ORDER BY ALL"
        ).fetchall()


def rewrite_csv(path, encoding: str, change) -> int:
    """Rewrite an export through ``change(header, rows)``; returns the number of data rows."""
    text = path.read_bytes().decode("utf-8-sig" if encoding == "utf-8-sig" else encoding)
    rows = list(csv.reader(io.StringIO(text)))
    header, body = change(rows[0], rows[1:])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    path.write_bytes(out.getvalue().encode(encoding))
    return len(body)


def set_policy(schemas, system: str, dataset: str, policy: str) -> None:
    path = schemas / "systems" / system / f"{dataset}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("quality", {})["drift"] = policy
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def raw_rows(home, system: str, dataset: str, select: str) -> list[tuple]:
    files = [str(p) for p in (home / "lake" / "raw" / system / dataset).rglob("*.parquet")]
    return duckdb.connect().sql(f"SELECT {select} FROM read_parquet({files})").fetchall()


def test_evolve_lands_an_added_column_in_extra_and_records_it(home, sources):
    export = next((sources / "hotline" / "exports").glob("*.csv"))
    encoding = "gb18030" if not export.read_bytes().startswith(b"\xef\xbb\xbf") else "utf-8-sig"
    n = rewrite_csv(
        export,
        encoding,
        lambda h, rows: ([*h, "备注"], [[*r, f'第{i}条 "引号"'] for i, r in enumerate(rows)]),
    )
    results, errors = run_day(1, {"hotline.ticket"})
    assert errors == {}
    assert drift_records(home) == [("hotline.ticket", "added", "备注", "landed in _extra")]
    extras = [json.loads(e) for (e,) in raw_rows(home, "hotline", "ticket", "_extra")]
    landed = results["hotline.ticket"]["rows_landed"]
    assert len(extras) == landed and landed <= n
    assert all(set(e) == {"备注"} and e["备注"].endswith('"引号"') for e in extras)
    manifest = next((home / "lake" / "raw" / "hotline").rglob("_manifest.json"))
    assert json.loads(manifest.read_text())["drift"][0]["column"] == "备注"


def test_evolve_fills_a_removed_optional_column_with_nulls(home, sources):
    export = next((sources / "hotline" / "exports").glob("*.csv"))
    encoding = "gb18030" if not export.read_bytes().startswith(b"\xef\xbb\xbf") else "utf-8-sig"

    def drop(header, rows):
        i = header.index("满意度")
        return header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows]

    rewrite_csv(export, encoding, drop)
    _, errors = run_day(1, {"hotline.ticket"})
    assert errors == {}
    assert drift_records(home) == [("hotline.ticket", "removed", "满意度", "filled_null")]
    assert raw_rows(home, "hotline", "ticket", "count(satisfaction)") == [(0,)]


def test_discard_columns_drops_an_added_column_with_a_record(home, schemas, sources):
    set_policy(schemas, "housing_fund", "deposit", "discard_columns")
    export = next((sources / "housing_fund" / "exports").glob("*.csv"))
    rewrite_csv(export, "gb18030", lambda h, rows: ([*h, "经办人"], [[*r, "张三"] for r in rows]))
    _, errors = run_day(1, {"housing_fund.deposit"})
    assert errors == {}
    assert drift_records(home) == [("housing_fund.deposit", "added", "经办人", "discarded")]
    assert raw_rows(home, "housing_fund", "deposit", "count(_extra)") == [(0,)]


def test_freeze_rejects_an_added_column(home, sources):
    with sqlite3.connect(sources / "public_security.db") as con:
        con.execute("ALTER TABLE resident ADD COLUMN email TEXT")
    _, errors = run_day(1, {"public_security.resident"})
    assert "policy freeze: added ['email']" in str(errors["public_security.resident"])
    assert not (home / "lake" / "raw" / "public_security" / "resident").exists()


def test_an_encoding_change_is_recorded(home, sources, simulated_days):
    run_day(1, {"hotline.ticket"})
    copy_sources(simulated_days, 2, home)
    day2 = sorted((sources / "hotline" / "exports").glob("*.csv"))[-1]
    raw = day2.read_bytes()
    utf8 = raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig" if utf8 else "gb18030")
    day2.write_bytes(text.encode("gb18030") if utf8 else b"\xef\xbb\xbf" + text.encode("utf-8"))
    _, errors = run_day(2, {"hotline.ticket"})
    assert errors == {}
    assert [(n, c) for n, c, _, _ in drift_records(home)] == [
        ("hotline.ticket", "encoding_changed")
    ]


def test_a_type_change_is_recorded_or_under_freeze_rejected(home, schemas):
    from etl.contracts import find_dataset
    from etl.drift import detect, remember, signature
    from etl.errors import CountylakeError
    from etl.settings import paths
    from etl.sources import ReadReport

    where = paths()
    before = ReadReport(source_types={"requesting_level": "int64"})
    remember(where, "health", "consultation", signature(before))
    after = ReadReport(source_types={"requesting_level": "string"})
    _, consultation = find_dataset("health", "consultation")
    (record,) = detect(where, "health", consultation, after)
    assert record["change"] == "type_changed" and record["detail"] == "int64 -> string"
    set_policy(schemas, "health", "consultation", "freeze")
    _, frozen = find_dataset("health", "consultation")
    with pytest.raises(CountylakeError, match="type_changed requesting_level"):
        detect(where, "health", frozen, after)
