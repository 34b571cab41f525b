"""Contracts: the shipped county loads, and a broken contract names its file, field and reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

from etl.contracts import ContractError, check_all, load_profile, load_systems


def test_shipped_county_is_complete():
    profile = load_profile()
    systems = load_systems()
    assert profile.code == "370322" and profile.timezone == "Asia/Shanghai"
    assert len(profile.towns) == 9
    villages = profile.villages
    assert len(villages) == 318
    assert {v.town_code for v in villages} == {t.code for t in profile.towns}
    assert len(systems) >= 6
    assert sum(len(s.datasets) for s in systems) >= 12
    kinds = {s.kind for s in systems}
    assert kinds == {"sql", "csv", "excel", "http"}
    strategies = {d.incremental.strategy for s in systems for d in s.datasets}
    assert strategies == {"snapshot", "watermark", "append_id", "new_files"}
    for system in systems:
        for dataset in system.datasets:
            assert dataset.freshness_sla_hours > 0
            assert all(c.grade for c in dataset.columns)


def test_no_county_specifics_in_code():
    """Gaoqing's codes and names live only in schemas/, never in Python, DAGs or SQL."""
    from etl.contracts import REPO_ROOT

    needles = [load_profile().code, load_profile().name, *(t.name for t in load_profile().towns)]
    offenders = []
    for folder in ("etl", "dags"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            offenders += [f"{path.name}: {n}" for n in needles if n in text]
    assert offenders == []


@pytest.mark.parametrize(
    ("file", "edit", "field", "reason"),
    [
        (
            "systems/health/consultation.yaml",
            ("primary_key: [consultation_id]", "primary_key: [nope]"),
            "(contract)",
            "primary_key 'nope' is not a column",
        ),
        (
            "systems/health/consultation.yaml",
            ("mask: id_number", "mask: blur"),
            "columns.1.mask",
            "Input should be",
        ),
        (
            "systems/hotline/ticket.yaml",
            ("strategy: new_files", "strategy: watermark"),
            "incremental",
            "needs a column",
        ),
        (
            "systems/housing_fund/deposit.yaml",
            ("encodings: [gb18030]", "encodings: [gbk-x]"),
            "files.encodings",
            "unknown encoding 'gbk-x'",
        ),
        ("systems/emergency/system.yaml", ("kind: sql", "kind: oracle"), "kind", "Input should be"),
        ("county.yaml", ('code: "370322"', 'code: "37032"'), "code", "should match pattern"),
        ("systems/health/referral.yaml", ("columns:", "columns: [\n"), "line", "not valid YAML"),
    ],
)
def test_invalid_contract_names_file_field_and_reason(schemas, file, edit, field, reason):
    path = schemas / file
    text = path.read_text(encoding="utf-8")
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    errors = check_all(schemas)
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, ContractError)
    assert error.path == str(path)
    assert error.field.startswith(field)
    assert reason in error.reason


def test_unknown_town_in_village_table_is_reported(schemas):
    table = schemas / "reference" / "gaoqing_370322_villages_stats2020.csv"
    lines = table.read_text(encoding="utf-8").splitlines()
    lines[5] = lines[5].replace(",370322001,", ",370322999,")
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (error,) = check_all(schemas)
    assert error.field == "line 6: town_code9" and "not a town" in error.reason


def test_check_command_fails_with_one_line_per_error(schemas):
    path = schemas / "systems" / "hrss" / "insured_person.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("type: decimal", "type: money", 1),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "etl.cli", "check"], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.count("invalid contract:") == 1
    assert str(path) in done.stderr and "type" in done.stderr


def test_another_county_needs_only_configuration(schemas):
    """A different county: new profile and village table, no code change."""
    profile = schemas / "county.yaml"
    text = profile.read_text(encoding="utf-8")
    text = text.replace('code: "370322"', 'code: "370321"').replace("高青县", "桓台县")
    towns = '  - {code: "370321001", name: 索镇街道}\n  - {code: "370321100", name: 起凤镇}\n'
    start = text.index("towns:\n") + len("towns:\n")
    end = text.index("# NBS")
    text = text[:start] + towns + text[end:]
    text = text.replace("reference/gaoqing_370322_villages_stats2020.csv", "reference/ht.csv")
    profile.write_text(text, encoding="utf-8")
    (schemas / "reference" / "ht.csv").write_text(
        "code12,name,town_code9,town_name\n370321001001,甲社区居委会,370321001,索镇街道\n"
        "370321100201,乙村委会,370321100,起凤镇\n",
        encoding="utf-8",
    )
    assert check_all(schemas) == []
    loaded = load_profile(schemas)
    assert loaded.code == "370321" and [v.code for v in loaded.villages] == [
        "370321001001",
        "370321100201",
    ]
