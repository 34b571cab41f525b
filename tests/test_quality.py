"""Data quality end to end: the dirt the simulator injects is found exactly, row by row, with the
right rule and reason; warnings only report; results, scorecard and the quality command read
back what the ledger holds."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from conftest import copy_sources
from ingest_helpers import api_server, run_day

from etl.cli import main
from etl.contracts import DatasetContract, load_profile, load_systems
from etl.ledger import Ledger
from etl.quality import scorecard_rows
from etl.settings import paths
from etl.simulate import dirt_counts
from etl.simulate.county import PLANS
from etl.sources.base import Chunk
from etl.standards import StandardContext
from etl.standards.gb11643 import make_id_number
from etl.validate import SeenKeys, Validator

# The simulator's dirt kinds and the blocking rule kind that must catch each one.
CAUGHT_BY = {
    "bad_id_check": "gb11643",
    "bad_birth_date": "gb11643",
    "bad_credit_check": "gb32100",
    "unknown_village": "nbs_division",
    "null_required": "not_null",
    "wrong_town": "village_in_town",
}
REASON_OF = {"bad_id_check": "check", "bad_birth_date": "birth_date"}
LANDED_CLEAN = {"lowercase_x", "blank_padded", "legacy_15", "late_row"}  # normalised, not bad


@pytest.fixture
def day1(home, simulated_days, monkeypatch):
    copy_sources(simulated_days, 1, home)
    with api_server(home, monkeypatch):
        results, errors = run_day(1)
    assert errors == {}
    return results


def _quarantined_by_rule(home, system: str, dataset: str) -> dict[str, int]:
    files = list((home / "lake" / "quarantine" / system / dataset).rglob("quarantine-*.parquet"))
    if not files:
        return {}
    rows = (
        duckdb.connect()
        .sql(
            "SELECT r, count(*) FROM (SELECT unnest(_reasons) AS r "
            f"FROM read_parquet({[str(f) for f in files]})) GROUP BY r"
        )
        .fetchall()
    )
    return dict(rows)


def test_injected_dirt_is_quarantined_exactly_with_rule_and_reason(home, day1, simulated_days):
    ledger = Ledger(home / "state" / "ledger.duckdb")
    state_home = simulated_days[1].parent
    for system in load_systems():
        for dataset in system.datasets:
            name = f"{system.system}.{dataset.dataset}"
            dirt = dirt_counts(state_home, system.system, dataset.dataset, 1)
            if system.kind == "sql":  # the first read takes whole tables: all rows ever written
                dirt = dirt_counts(
                    state_home, system.system, dataset.dataset, 1, "in_table"
                ) or dirt_counts(state_home, system.system, dataset.dataset)
            plan = {
                kind: column for kind, column, _ in PLANS.get((system.system, dataset.dataset), [])
            }
            expected: dict[str, int] = {}
            for kind, count in dirt.items():
                if kind in LANDED_CLEAN or not count:
                    continue
                if kind == "duplicate_row":
                    rule = "unique:" + ",".join(dataset.primary_key)
                else:
                    # dirt carried over from another dataset (a bad credit code of the
                    # register, repeated in its change log) hits the column of that standard
                    column = plan.get(kind) or next(
                        c.name for c in dataset.columns if c.standard == CAUGHT_BY[kind]
                    )
                    rule = f"{CAUGHT_BY[kind]}:{column}"
                    if kind == "wrong_town":  # a pair rule is named after both columns
                        rule = f"{CAUGHT_BY[kind]}:village_code,{column}"
                expected[rule] = expected.get(rule, 0) + count
            assert _quarantined_by_rule(home, system.system, dataset.dataset) == expected, name
            assert day1[name]["rows_quarantined"] == sum(expected.values()), name
            with ledger.connect(read_only=True) as con:
                results = {
                    rule: (failed, json.loads(reasons))
                    for rule, failed, reasons in con.execute(
                        "SELECT rule_id, failed, reasons FROM rule_results WHERE system = ? "
                        "AND dataset = ?",
                        [system.system, dataset.dataset],
                    ).fetchall()
                }
            for kind, reason in REASON_OF.items():
                if dirt.get(kind):
                    rule = f"gb11643:{plan[kind]}"
                    assert results[rule][1][reason] == dirt[kind], (name, kind)
            if dirt.get("legacy_15"):  # a warning: counted, landed upgraded to 18 characters
                assert results[f"gb11643_legacy:{plan['legacy_15']}"][0] == dirt["legacy_15"]


def _contract(**quality) -> DatasetContract:
    return DatasetContract.model_validate(
        {
            "dataset": "people",
            "title": "测试",
            "title_en": "test",
            "table": "people",
            "primary_key": ["id_number"],
            "incremental": {"strategy": "snapshot"},
            "columns": [
                {"name": "id_number", "type": "string", "nullable": False, "standard": "gb11643"},
                {"name": "sex", "type": "string", "standard": "gb2261"},
                {"name": "birth_date", "type": "date"},
                {"name": "status", "type": "string", "values": ["正常", "迁出"]},
                {"name": "amount", "type": "decimal", "min": 0, "max": 100},
                {"name": "plate", "type": "string", "pattern": "^鲁C"},
            ],
            "quality": quality,
        }
    )


def _batch(rows: list[dict]) -> Chunk:
    names = ["id_number", "sex", "birth_date", "status", "amount", "plate"]
    table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
    return Chunk(table.to_batches()[0], "people.csv", 2)


def test_every_rule_kind_judges_rows_and_explains_itself():
    good_id = make_id_number("370322", "19800101", "001")  # a man born 1980-01-01
    dataset = _contract(
        checks=[
            {"check": "id_birth_date", "columns": ["id_number", "birth_date"]},
            {"check": "id_sex", "columns": ["id_number", "sex"], "severity": "warning"},
        ]
    )
    base = {"sex": "1", "status": "正常", "amount": "5", "plate": "鲁C1"}

    def person(year: int, sequence: str, **changes) -> dict:
        number = make_id_number("370322", f"{year}0101", sequence)
        return {**base, "id_number": number, "birth_date": f"{year}-01-01", **changes}

    rows = [
        {**base, "id_number": good_id, "birth_date": "1980-01-01"},  # clean
        {**base, "id_number": good_id[:-1] + "0", "birth_date": "1980-01-01"},  # check wrong
        person(1981, "003", status="死亡", birth_date="1981-02-02"),
        person(1982, "005", amount="101"),
        person(1983, "007", plate="京A1"),
        person(1984, "009", sex="2"),
        {**base, "id_number": " " + good_id.lower() + " ", "birth_date": "1980-01-01"},
        person(1985, "011", amount="x"),
    ]
    validator = Validator(dataset, StandardContext.from_profile(load_profile()))
    checked = validator.check(_batch(rows))
    bad = checked.bad.to_pylist()
    by_row = {r["_row"]: r for r in bad}
    # rows are numbered from the chunk's first row (2: under the header)
    assert by_row[3]["_reasons"] == ["gb11643:id_number"]
    assert by_row[3]["_messages"] == ["id_number is not a GB 11643 citizen ID number (check)"]
    assert by_row[4]["_reasons"] == ["values:status", "id_birth_date:id_number,birth_date"]
    assert by_row[5]["_reasons"][0] == "range:amount"
    assert by_row[6]["_reasons"][0] == "pattern:plate"
    assert by_row[8]["_reasons"] == ["unique:id_number"]
    assert by_row[9]["_reasons"][0] == "type:amount"
    assert 7 not in by_row  # the sex mismatch is a warning: the row lands
    assert checked.good.num_rows == 2
    assert by_row[8]["id_number"] == " " + good_id.lower() + " "  # the original value is kept
    assert validator.tally.failed["id_sex:id_number,sex"] == 1


def test_values_are_trimmed_as_str_strip_does_whatever_else_is_in_the_batch():
    # Trimming is skipped for batches without blanks at an edge: the test for one must know
    # every character str.strip() removes, the separators U+001C-U+001F included.
    blanks = [chr(c) for c in range(0x10000) if chr(c).strip() == ""]
    assert {"\x1c", "\x1f", "\xa0", "\u3000"} <= set(blanks)
    context = StandardContext.from_profile(load_profile())
    for n, blank in enumerate(blanks):
        plates = [f"{blank}鲁C1{blank}", f"鲁C2{blank}", blank]
        ids = [make_id_number("370322", f"198{k}0101", f"{n:03d}") for k in range(3)]
        rows = [{"id_number": i, "plate": p} for i, p in zip(ids, plates, strict=True)]
        good = Validator(_contract(), context).check(_batch(rows)).good
        assert good.column("plate").to_pylist() == [p.strip() or None for p in plates], hex(
            ord(blank)
        )


def test_seen_keys_flag_exactly_the_repeats_as_the_filter_grows():
    # Small hash values share filter slots; batches repeat keys within and across themselves.
    rng = np.random.default_rng(7)
    seen, keys = set(), SeenKeys()
    for size in (3, 1, 500, 20_000, 70_000, 5):
        hashes = rng.integers(0, 60_000, size, dtype=np.uint64) << np.uint64(40)
        expected = []
        for h in hashes.tolist():
            expected.append(h in seen)
            seen.add(h)
        assert keys.repeats(hashes).tolist() == expected
    assert keys.filter_bits > keys.MIN_FILTER_BITS


def test_severity_overrides_must_name_real_rules():
    with pytest.raises(ValueError, match="unknown rules"):
        _contract(severity={"gb11643:nope": "warning"})
    assert _contract(severity={"pattern:plate": "warning"}).quality.severity


def test_results_scorecard_and_quality_command(home, day1, capsys):
    # the windows' commits leave the quality files to one publish for the batch: here
    # `countylake run`'s, after its datasets (a rerun of day 1 reads what day 1 read)
    folder = home / "lake" / "quality"
    assert not folder.exists()
    assert main(["run", "--date", "2026-11-01", "--system", "health"]) == 0
    capsys.readouterr()
    scorecard = duckdb.connect().sql(f"SELECT * FROM '{folder / 'scorecard.parquet'}'")
    scorecard = scorecard.to_arrow_table()
    departments = {s.department.code for s in load_systems()}
    assert set(scorecard["dept_code"].to_pylist()) == departments
    for row in scorecard.to_pylist():
        for measure in ("timeliness", "completeness", "validity", "uniqueness"):
            assert 0 <= row[measure] <= 1, row
    read = (
        duckdb.connect()
        .sql(f"SELECT sum(rows_read) FROM '{home / 'lake' / 'quality' / 'scorecard.parquet'}'")
        .fetchall()[0][0]
    )
    assert read == sum(r["rows_read"] for r in day1.values())
    # a department with quarantined rows lists the failing rule and its count
    civil = next(r for r in scorecard.to_pylist() if r["rows_quarantined"])
    assert civil["validity"] < 1 or civil["completeness"] < 1 or civil["uniqueness"] < 1
    assert civil["failing_rules"]
    # the scorecard command reads the ledger itself, not the file (a build behind in Airflow)
    (folder / "scorecard.parquet").unlink()
    published = sorted(scorecard.to_pylist(), key=lambda r: r["dept_code"])
    assert [r["read"] for r in scorecard_rows(paths())] == [r["rows_read"] for r in published]
    assert main(["quality", "--scorecard"]) == 0
    printed = capsys.readouterr().out
    assert all(r["dept_name"] in printed for r in published)

    assert main(["quality", "--dept", "public_security"]) == 0
    out = capsys.readouterr().out
    assert "public_security.resident" in out and "gb11643:id_number" in out
    assert "market_regulation" not in out
    assert main(["quality", "--dept", "no_such_department"]) == 1


def _landed_window(ledger: Ledger, day: int, rows: int, newest) -> None:
    """A landed attempt of health.consultation for 2026-11-<day> in the ledger."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    start = datetime(2026, 11, day, tzinfo=ZoneInfo("Asia/Shanghai"))
    attempt = f"history{day}"
    ledger.start(attempt, "r", "health", "consultation", start, start + timedelta(days=1), "t")
    counts = {"rows_read": rows, "newest_data_at": newest}
    ledger.land(
        attempt, "health", "consultation", None, start, start + timedelta(days=1), [], counts
    )


def test_volume_and_freshness_are_judged_against_the_datasets_history(home):
    from datetime import datetime
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    from etl.contracts import find_dataset
    from etl.quality import dataset_checks

    zone = ZoneInfo("Asia/Shanghai")
    ledger = Ledger(home / "state" / "ledger.duckdb")
    _, consultation = find_dataset("health", "consultation")
    for day in (1, 2, 3):
        _landed_window(ledger, day, 1000, datetime(2026, 11, day, 20, tzinfo=zone))

    def judge(rows: int, newest: str | None, day: int = 4) -> dict[str, dict]:
        staged = SimpleNamespace(
            system="health",
            dataset="consultation",
            window_start=f"2026-11-{day:02d}T00:00:00+08:00",
            window_end=f"2026-11-{day + 1:02d}T00:00:00+08:00",
            rows_read=rows,
            newest_data_at=newest,
            strategy="append_id",
        )
        results, _ = dataset_checks(ledger, staged, consultation, "Asia/Shanghai")
        return {r["rule_id"]: r for r in results}

    usual = judge(900, "2026-11-04 21:00:00")
    assert usual["volume"]["failed"] == 0 and usual["freshness"]["failed"] == 0
    assert judge(50, "2026-11-04 21:00:00")["volume"]["reasons"] == {"low": 1}
    assert judge(20_000, "2026-11-04 21:00:00")["volume"]["reasons"] == {"high": 1}
    # newest consultation two days before the window's end: older than the 26 h SLA
    assert judge(900, "2026-11-03 08:00:00")["freshness"]["reasons"] == {"stale": 1}
    # a quiet day of a live system is not stale: the source answered at the window's end
    assert judge(0, None)["freshness"]["failed"] == 0


def test_quality_command_builds_data_docs(home, day1, capsys):
    assert main(["quality", "--docs"]) == 0
    index = home / "quality" / "docs" / "index.html"
    assert index.exists() and str(index) in capsys.readouterr().out
    assert "public_security.resident" in index.read_text(encoding="utf-8")


def test_data_docs_leave_out_windows_that_kept_no_row_and_failed_no_rule(home, day1, monkeypatch):
    """The night after day 1 with nothing new at the sources: its windows that landed and
    quarantined no row and failed no rule get no Data Docs page; the rest (a register read
    whole that quarantines its bad rows again, a stale source) do."""
    from etl.quality import docs_runs
    from etl.settings import paths

    with api_server(home, monkeypatch):
        night, errors = run_day(2)  # the sources still hold day 1 only
    assert errors == {}
    ledger = Ledger(paths(home).ledger)
    with ledger.connect() as con:
        failed = {name for (name,) in con.execute(
            "select distinct system || '.' || dataset from rule_results where failed > 0 "
            "and attempt_id in (select unnest(?))",
            [[r["attempt_id"] for r in night.values()]],
        ).fetchall()}  # fmt: skip
    quiet = {
        name
        for name, r in night.items()
        if r["rows_landed"] + r["rows_quarantined"] == 0 and name not in failed
    }
    assert quiet and len(quiet) < len(night), (quiet, night)
    shown = {f"{r['system']}.{r['dataset']}" for r in docs_runs(ledger)
             if r["attempt_id"] in {n["attempt_id"] for n in night.values()}}  # fmt: skip
    assert shown == set(night) - quiet
