"""Great Expectations, for real: the custom expectations on pandas, the suites generated from
the contracts (and that the exported ones are current), and Data Docs from engine results.

GX costs ~4.5 s to import, once per session; the docs are built once per module."""

from __future__ import annotations

import io
import json
import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import great_expectations as gx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl import gx as egx
from etl.contracts import REPO_ROOT, DatasetContract, load_profile, load_systems
from etl.rules import rules_for
from etl.standards import gb11643
from etl.validate import ARROW_TYPES

SUITES = REPO_ROOT / "quality" / "suites"
REGENERATE = "countylake quality --export-suites quality/suites"


def validate(frame: pd.DataFrame, expectation):
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("frame")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    return batch.validate(expectation)


def id_numbers() -> tuple[list[str], int]:
    """Ten ID numbers of the county: seven valid (one ends in a lowercase x, valid once
    normalised), three bad; and one missing value, which is not the standard's business."""
    county = load_profile().code
    good = [gb11643.make_id_number(county, f"198{i}0101", f"{i:03d}") for i in range(6)]
    with_x = next(
        n
        for n in (gb11643.make_id_number(county, "19900101", f"{s:03d}") for s in range(100))
        if n.endswith("X")
    )
    bad = [
        good[0][:-1] + ("1" if good[0][-1] != "1" else "2"),  # wrong check character
        good[1][:17],  # too short
        gb11643.make_id_number(county, "19901301", "001"),  # no 13th month
    ]
    return [*good, with_x.lower(), *bad, None], len(bad)


def test_citizen_id_expectation_counts_bad_numbers_on_pandas():
    values, bad = id_numbers()
    result = validate(
        pd.DataFrame({"id_number": values}),
        egx.ExpectColumnValuesToBeValidCitizenId(column="id_number"),
    )
    assert not result.success
    assert result.result["unexpected_count"] == bad
    assert result.result["element_count"] == len(values)
    assert result.result["missing_count"] == 1


def test_warning_tier_and_cross_column_expectations_run():
    county = load_profile().code
    legacy = f"{county}800101001"  # 15 digits: valid, but only after the upgrade
    current = gb11643.make_id_number(county, "19800101", "002")  # sequence 002: female
    frame = pd.DataFrame(
        {
            "id_number": [legacy, current, current],
            "sex": ["1", "2", "1"],
            "birth_date": pd.to_datetime(["1980-01-01", "1980-01-01", "1981-01-01"]),
        }
    )
    checks = {
        egx.ExpectColumnValuesToNotBeLegacyCitizenId(column="id_number"): 1,
        egx.ExpectColumnPairValuesToMatchIdSex(column_A="id_number", column_B="sex"): 1,
        egx.ExpectColumnPairValuesToMatchIdBirthDate(
            column_A="id_number", column_B="birth_date"
        ): 1,
    }
    for expectation, unexpected in checks.items():
        result = validate(frame, expectation)
        assert result.result["unexpected_count"] == unexpected, expectation.expectation_type


def test_type_expectations_accept_the_lake_as_pandas_reads_it():
    """The type rule's dtype names match a lake Parquet file read with nullable dtypes."""
    samples = {
        "int": [1, None],
        "float": [1.5, None],
        "bool": [True, None],
        "date": [date(2026, 11, 1), None],
        "timestamp": [datetime(2026, 11, 1, 8, 30), None],
        "decimal": [Decimal("12.50"), None],
    }
    assert set(samples) == set(ARROW_TYPES) - {"string"}
    buffer = io.BytesIO()
    pq.write_table(pa.table({t: pa.array(v, ARROW_TYPES[t]) for t, v in samples.items()}), buffer)
    frame = pd.read_parquet(buffer, dtype_backend="numpy_nullable")
    for name in samples:
        expectation = gx.expectations.ExpectColumnValuesToBeInTypeList(
            column=name, type_list=egx.TYPE_NAMES[name]
        )
        assert validate(frame, expectation).success, (name, frame[name].dtype)


def every_dataset() -> list[DatasetContract]:
    return [d for s in load_systems() for d in s.datasets]


def test_every_contract_has_one_expectation_per_rule():
    for dataset in every_dataset():
        suite = egx.suite_for(dataset)
        rules = rules_for(dataset)
        assert suite.name == f"{dataset.path.parent.name}.{dataset.dataset}"
        assert [e.meta for e in suite.expectations] == [
            {"rule_id": r.id, "severity": r.severity} for r in rules
        ]
        assert [e.severity.value for e in suite.expectations] == [
            "critical" if r.blocking else "warning" for r in rules
        ]


def test_rule_kinds_no_contract_uses_yet_get_their_expectations():
    base = every_dataset()[0]
    data = base.model_dump(exclude={"path"})
    data["columns"] += [
        {"name": "x_level", "type": "int", "min": 1, "max": 5},
        {"name": "x_status", "type": "string", "values": ["open", "closed"]},
        {"name": "x_plate", "type": "string", "pattern": r"^[A-Z]\d{5}$"},
        {"name": "x_holder_id", "type": "string", "standard": "gb11643"},
        {"name": "x_holder_sex", "type": "string", "standard": "gb2261"},
    ]
    data["quality"]["checks"] = [{"check": "id_sex", "columns": ["x_holder_id", "x_holder_sex"]}]
    dataset = DatasetContract.model_validate({**data, "path": base.path})
    kinds = {e.meta["rule_id"]: e.expectation_type for e in egx.suite_for(dataset).expectations}
    assert kinds["range:x_level"] == "expect_column_values_to_be_between"
    assert kinds["values:x_status"] == "expect_column_values_to_be_in_set"
    assert kinds["pattern:x_plate"] == "expect_column_values_to_match_regex"
    assert kinds["id_sex:x_holder_id,x_holder_sex"] == "expect_column_pair_values_to_match_id_sex"
    assert kinds["gb2261:x_holder_sex"] == "expect_column_values_to_be_valid_sex_code"


def test_exported_suites_are_current(tmp_path):
    written = egx.export_suites(tmp_path)
    assert len(written) == len(every_dataset())
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.json")}
    kept = {p.name: p.read_text(encoding="utf-8") for p in SUITES.glob("*.json")}
    stale = sorted(n for n in fresh.keys() | kept.keys() if fresh.get(n) != kept.get(n))
    assert not stale, f"quality/suites is out of date ({', '.join(stale)}); run `{REGENERATE}`"


# --------------------------------------------------------------------------- data docs


def engine_runs() -> list[dict]:
    """Two runs shaped like ``etl.quality.docs_runs``, with counts unlikely to occur by chance
    in a page (each failing rule gets its own)."""
    runs = []
    for n, dataset in enumerate(every_dataset()[:2]):
        results = []
        for i, rule in enumerate(rules_for(dataset)):
            level = rule.kind in ("volume", "freshness")
            failed = int(i == 1) if level else 7000 + 100 * n + i
            results.append(
                {
                    "rule_id": rule.id,
                    "severity": rule.severity,
                    "checked": 1 if level else 90000,
                    "failed": failed,
                    "reasons": {"length": failed} if failed else {},
                }
            )
        runs.append(
            {
                "system": dataset.path.parent.name,
                "dataset": dataset.dataset,
                # ledger ids are 16 hex digits; one of only decimal digits once broke GX
                "attempt_id": ("5964344764214215", "dd6b793119064514")[n],
                "window_start": "2026-11-01T00:00:00+08:00",
                "run_time": "2026-11-02T01:30:00+08:00",
                "rows": 90000,
                "results": results,
            }
        )
    return runs


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """Data Docs written twice from the same runs (built once for the module: ~1 s)."""
    home = tmp_path_factory.mktemp("home")
    runs = engine_runs()
    egx.write_data_docs(home, runs)
    return home, egx.write_data_docs(home, runs), runs


def run_pages(home: Path, run: dict) -> list[Path]:
    folder = home / "quality" / "docs" / "validations" / run["system"] / run["dataset"]
    return list((folder / egx.run_name(run["attempt_id"])).rglob("*.html"))


def test_data_docs_have_an_index_and_one_page_per_run(docs):
    home, index, runs = docs
    assert index == home / "quality" / "docs" / "index.html"
    listing = index.read_text(encoding="utf-8")
    for run in runs:
        (page,) = run_pages(home, run)  # written twice, one page
        assert page.relative_to(index.parent).as_posix() in listing
    stored = list((home / "quality" / "gx").rglob("validations/**/*.json"))
    assert len(stored) == len(runs)


def test_data_docs_show_the_engine_counts(docs):
    home, _, runs = docs
    for run in runs:
        (page,) = run_pages(home, run)
        html = page.read_text(encoding="utf-8")
        for result in run["results"]:
            if result["checked"] > 1 and result["failed"]:
                assert f"{result['failed']} unexpected values found" in html, result["rule_id"]


def test_stored_results_carry_counts_and_reasons(docs):
    home, _, runs = docs
    stored = {}
    for path in (home / "quality" / "gx").rglob("validations/**/*.json"):
        result = json.loads(path.read_text(encoding="utf-8"))
        stored[result["meta"]["batch_markers"]["attempt_id"]] = result
    for run in runs:
        results = {r["meta"]["rule_id"]: r["result"] for r in stored[run["attempt_id"]]["results"]}
        assert len(results) == len(run["results"])
        for given in run["results"]:
            got = results[given["rule_id"]]
            assert got["element_count"] == given["checked"]
            assert got["unexpected_count"] == given["failed"]
            assert got["details"]["reasons"] == given["reasons"]


def test_a_later_night_renders_only_its_new_run_and_the_index_keeps_every_run(tmp_path):
    runs = engine_runs()
    egx.write_data_docs(tmp_path, runs[:-1])
    stored = {p: p.stat().st_mtime_ns for p in (tmp_path / "quality" / "gx").rglob("*.json")}
    index = egx.write_data_docs(tmp_path, runs)  # the night after: one run more
    listing = index.read_text(encoding="utf-8")
    for run in runs:
        (page,) = run_pages(tmp_path, run)
        assert page.relative_to(index.parent).as_posix() in listing
    for path, written in stored.items():
        if "validations" in path.parts:
            assert path.stat().st_mtime_ns == written, f"{path} was written again"


def test_a_night_with_no_new_run_does_not_start_gx(tmp_path, monkeypatch):
    """The same runs again and the same contracts: the docs stay as they are, and no GX
    context is even opened; after the docs folder is lost, they are built again."""
    runs = engine_runs()
    index = egx.write_data_docs(tmp_path, runs)
    built = index.stat().st_mtime_ns

    def no_context(**_kwargs):
        raise AssertionError("GX started for nothing new")

    with monkeypatch.context() as patched:
        patched.setattr(egx.gx, "get_context", no_context)
        assert egx.write_data_docs(tmp_path, runs) == index
    assert index.stat().st_mtime_ns == built
    shutil.rmtree(index.parent)
    assert egx.write_data_docs(tmp_path, runs).exists()


def test_the_index_lists_the_newest_runs_only(tmp_path, monkeypatch):
    """The index lists the newest DOCS_RUNS runs (its builder reads every run it lists); the
    older runs keep their pages."""
    runs = [
        {**run, "run_time": f"2026-11-02T0{hour}:30:00+08:00"}
        for hour, run in enumerate(engine_runs(), start=1)
    ]
    newest = runs[-1]
    assert len(runs) > 1
    egx.write_data_docs(tmp_path, runs[:-1])  # the nights before
    monkeypatch.setitem(egx.DOCS_SITE_CONFIG["site_index_builder"], "validation_results_limit", 1)
    listing = egx.write_data_docs(tmp_path, runs).read_text(encoding="utf-8")
    for run in runs:
        (page,) = run_pages(tmp_path, run)
        listed = page.relative_to(tmp_path / "quality" / "docs").as_posix() in listing
        assert listed == (run is newest), run["dataset"]
