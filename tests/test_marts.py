"""The thematic marts over the small simulated county (the session's built warehouse): every mart
built, described and tested; the figures reconcile with the lake, computed here with DuckDB
straight from the landed Parquet; no orphan keys; no raw identifier in any column; incremental
builds recompute only the partitions that changed."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from test_warehouse import HEX_DIGEST, RAW_ID, RAW_MOBILE

from etl import warehouse
from etl.contracts import REPO_ROOT, load_profile, load_systems

MARTS_DIR = REPO_ROOT / "warehouse" / "models" / "marts"
MART_NAMES = sorted(p.stem for p in MARTS_DIR.rglob("mart_*.sql"))
# The themes the county asked for, each with at least one mart.
THEMES = {"health", "social", "safety", "governance", "traffic", "population", "entities",
          "quality", "profile"}  # fmt: skip
# Keys a mart column of this name must find in the conformed layer.
REFERENCES = {
    "division_code": "select division_code from base.dim_division",
    "date_day": "select date_day from base.dim_date",
    "month_start": "select date_day from base.dim_date",
    "person_key": "select person_key from base.base_people",
    "legal_rep_person_key": "select person_key from base.base_people",
    "credit_code": "select credit_code from base.base_entities",
    "requesting_level": "select care_level from base.dim_care_level",
    "consulting_level": "select care_level from base.dim_care_level",
    "care_level": "select care_level from base.dim_care_level",
    "from_level": "select care_level from base.dim_care_level",
    "to_level": "select care_level from base.dim_care_level",
    "sex": "select sex_code from base.dim_sex",
}


def lake_current(built, dataset: str, key: str, newest: str | None = None) -> str:
    """A dataset's current rows from the lake, independently of dbt: the newest landed version
    of each key (newest window, then the watermark column), deletes dropped."""
    order = ['load_date desc', '"window" desc', *([f"{newest} desc"] if newest else []),
             "_origin desc"]  # fmt: skip
    return (
        f"select * from (select * from {built.lake(dataset)} qualify row_number() over "
        f"(partition by {key} order by {', '.join(order)}) = 1) where _op is distinct from 'D'"
    )


def town_of(column: str) -> str:
    """The town (9 digits) of a village, town or county code as the county profile knows its
    towns, or null: the marts put such facts on the county."""
    towns = ", ".join(f"'{t.code}'" for t in load_profile().towns)
    return f"case when left({column}, 9) in ({towns}) then left({column}, 9) end"


def checked_references(manifest: dict) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(model id, column) -> the (table, field) its codes are tested against: by a
    ``relationships`` test on the column, or by a ``known_codes`` test of the model whose
    ``references`` name the column."""
    checked: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test":
            continue
        name, kwargs = node["test_metadata"]["name"], node["test_metadata"]["kwargs"]
        if name == "relationships":
            table = re.fullmatch(r"ref\(['\"](\w+)['\"]\)", kwargs["to"]).group(1)
            pairs = {node["column_name"]: (table, kwargs["field"])}
        elif name == "known_codes":
            pairs = {c: (t["to"], t["field"]) for c, t in kwargs.get("references", {}).items()}
        else:
            continue
        for column, target in pairs.items():
            checked.setdefault((node["attached_node"], column), set()).add(target)
    return checked


def as_dict(rows) -> dict:
    return {tuple(r[:-1]) if len(r) > 2 else r[0]: r[-1] for r in rows}


# --------------------------------------------------------------------------- built and tested


def test_every_theme_has_marts_named_by_convention():
    themes = {p.parent.name for p in MARTS_DIR.rglob("mart_*.sql")}
    assert themes >= THEMES
    for path in MARTS_DIR.rglob("mart_*.sql"):
        assert path.stem.startswith(f"mart_{path.parent.name}__"), path
        assert "source(" not in path.read_text(encoding="utf-8"), f"{path.name}: ref() only"
        assert (path.parent / f"_{path.parent.name}__models.yml").exists(), path.parent


def test_every_mart_is_built_with_grain_and_privacy_tests(built):
    with built.connect() as con:
        tables = {
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        }
    assert sorted(tables) == MART_NAMES
    assert warehouse.run_dbt(["parse"], built.home).success  # builds skip writing the manifest
    manifest = json.loads(
        (built.home / "warehouse" / "dbt" / "target" / "manifest.json").read_text("utf-8")
    )
    tests: dict[str, set[str]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test":
            for parent in node["depends_on"]["nodes"]:
                tests.setdefault(parent, set()).add(node["test_metadata"]["name"])
    checked = checked_references(manifest)
    for name in MART_NAMES:
        node = manifest["nodes"][f"model.countylake.{name}"]
        # stored, except the scorecard: a view of the quality results file (on a local lake),
        # current without a build (macros/lake.sql, lake_file_materialization)
        stored = ("view",) if name == "mart_quality__scorecard" else ("table", "incremental")
        assert node["schema"] == "marts" and node["config"]["materialized"] in stored, name
        kinds = tests.get(node["unique_id"], set())
        assert "no_raw_identifiers" in kinds, name
        # the grain: the grain test (unique and not null together), or unique and not_null
        assert "grain" in kinds or {"unique", "not_null"} <= kinds, f"{name}: grain not tested"
        for column in node["columns"]:
            if column in REFERENCES and column not in ("sex",):
                field, table = re.fullmatch(
                    r"select (\w+) from base\.(\w+)", REFERENCES[column]
                ).groups()
                assert (table, field) in checked.get((node["unique_id"], column), set()), (
                    f"{name}.{column}: no relationships or known_codes test against {table}.{field}"
                )


def test_leadership_marts_hold_rows(built):
    with built.connect() as con:
        for name in MART_NAMES:
            rows = con.execute(f"select count(*) from marts.{name}").fetchone()[0]
            assert rows > 0, name


# --------------------------------------------------------------------------- reconciliation


def test_population_per_town_equals_the_residents_landed_in_its_villages(built):
    residents = lake_current(built, "public_security/resident", "id_number", "updated_at")
    households = lake_current(built, "public_security/household", "household_id")
    with built.connect() as con:
        lake = as_dict(
            con.execute(
                f"select {town_of('village_code')}, count(*) from ({residents}) "
                "where status = '正常' group by all"
            ).fetchall()
        )
        lake_households = as_dict(
            con.execute(
                f"select {town_of('village_code')}, count(*) from ({households}) group by all"
            ).fetchall()
        )
        by_town = con.execute(
            "select town_code, residents, male + female + "
            "coalesce((select sum(residents) from marts.mart_population__by_town_sex_age a "
            "where a.town_code = t.town_code and a.sex not in ('1', '2')), 0), "
            "aged_0_14 + aged_15_59 + aged_60_plus + age_unknown, households "
            "from marts.mart_population__by_town t"
        ).fetchall()
        by_sex_age = as_dict(
            con.execute(
                "select town_code, sum(residents) from marts.mart_population__by_town_sex_age "
                "group by all"
            ).fetchall()
        )
    assert None not in lake  # every resident lives in a village of one of the county's towns
    assert {t for t, *_ in by_town} == {t.code for t in load_profile().towns}
    assert {t: n for t, n, *_ in by_town if n} == lake
    for town, residents_n, by_sex, by_age, households_n in by_town:
        assert residents_n == by_sex == by_age == by_sex_age.get(town, 0), town
        assert households_n == lake_households.get(town, 0), town
    assert sum(lake.values()) > 0


def test_consultations_per_town_and_day_reconcile_with_the_lake(built):
    rows = lake_current(built, "health/consultation", "consultation_id")
    with built.connect() as con:
        lake = as_dict(
            con.execute(
                f"select cast(requested_at as date), {town_of('village_code')}, "
                f"requesting_level, count(*) from ({rows}) group by all"
            ).fetchall()
        )
        mart = as_dict(
            con.execute(
                "select date_day, town_code, requesting_level, sum(consultations) "
                "from marts.mart_health__consultations_daily group by all"
            ).fetchall()
        )
        by_level = as_dict(
            con.execute(
                "select date_day, care_level, consultations "
                "from marts.mart_health__consultations_by_level_daily where consultations > 0"
            ).fetchall()
        )
    assert mart == lake and sum(lake.values()) > 0
    per_level: dict = {}
    for (day, _town, level), n in lake.items():
        per_level[day, level] = per_level.get((day, level), 0) + n
    assert by_level == per_level


def test_hotline_tickets_reconcile_with_the_lake(built):
    rows = lake_current(built, "hotline/ticket", "ticket_no")
    with built.connect() as con:
        lake = con.execute(
            f"select cast(received_at as date), {town_of('village_code')}, category, "
            f"count(*), count(*) filter (where status = '已办结') from ({rows}) group by all"
        ).fetchall()
        mart = con.execute(
            "select date_day, town_code, category, sum(tickets), sum(resolved) "
            "from marts.mart_governance__hotline_daily group by all"
        ).fetchall()
    assert {tuple(r[:3]): r[3:] for r in mart} == {tuple(r[:3]): r[3:] for r in lake}
    assert sum(r[3] for r in lake) > 0


ACTIVITY = [
    # mart, measure, mart partition, lake dataset, key, newest (watermark), lake partition
    ("mart_safety__alarms_daily", "alarms", "date_day", "emergency/sensor_alarm", "alarm_id",
     None, "cast(alarm_at as date)"),
    ("mart_traffic__violations_daily", "violations", "date_day", "traffic_police/violation",
     "violation_no", "updated_at", "cast(violated_at as date)"),
    ("mart_health__referrals", "referrals", "date_day", "health/referral", "referral_id",
     "updated_at", "cast(referred_at as date)"),
    ("mart_social__insured_monthly", "insured_persons", "contribution_month",
     "hrss/insured_person", "id_number, insurance_type, contribution_month", None,
     "contribution_month"),
    ("mart_social__housing_fund_monthly", "deposits", "deposit_month", "housing_fund/deposit",
     "serial_no", None, "deposit_month"),
    ("mart_entities__changes_daily", "events", "date_day", "market_regulation/entity_change",
     "change_id", None, "cast(changed_at as date)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mart", "measure", "partition", "dataset", "key", "newest", "lake_partition"),
    ACTIVITY,
    ids=[a[0] for a in ACTIVITY],
)
def test_activity_marts_reconcile_with_the_lake(
    built, mart, measure, partition, dataset, key, newest, lake_partition
):
    rows = lake_current(built, dataset, key, newest)
    with built.connect() as con:
        lake = as_dict(
            con.execute(f"select {lake_partition}, count(*) from ({rows}) group by all").fetchall()
        )
        got = as_dict(
            con.execute(f"select {partition}, sum({measure}) from marts.{mart} group by all")
            .fetchall()
        )  # fmt: skip
    assert got == lake and sum(lake.values()) > 0


def test_amounts_reconcile_with_the_lake(built):
    deposits = lake_current(built, "housing_fund/deposit", "serial_no")
    with built.connect() as con:
        lake = con.execute(f"select sum(cast(amount as decimal(18, 2))) from ({deposits})")
        lake_total = lake.fetchone()[0]
        mart_total = con.execute(
            "select sum(amount_total) from marts.mart_social__housing_fund_monthly"
        ).fetchone()[0]
        scorecard = con.execute(
            f"select count(*), sum(rows_read) from read_parquet('{built.home}/lake/quality/"
            "scorecard.parquet')"
        ).fetchone()
        mart_scorecard = con.execute(
            "select count(*), sum(rows_read) from marts.mart_quality__scorecard"
        ).fetchone()
    assert mart_total == lake_total > 0
    assert mart_scorecard == scorecard


def test_profiles_name_the_departments_that_know_each_person_and_entity(built):
    consultations = lake_current(built, "health/consultation", "consultation_id")
    sites = lake_current(built, "emergency/chemical_site", "site_id")
    departments = {s.system: s.department.name for s in load_systems()}
    with built.connect() as con:
        patients = con.execute(
            f"select count(distinct upper(trim(patient_id_number))) from ({consultations})"
        ).fetchone()[0]
        known_to_health = con.execute(
            "select count(*) from marts.mart_profile__person "
            "where list_contains(datasets, 'health.consultation')"
        ).fetchone()[0]
        people = con.execute(
            "select (select count(*) from marts.mart_profile__person), "
            "(select count(*) from base.base_people)"
        ).fetchone()
        site_entities = con.execute(
            f"select count(distinct credit_code) from ({sites})"
        ).fetchone()[0]
        known_for_sites = con.execute(
            "select count(*), sum(chemical_sites) from marts.mart_profile__entity "
            "where list_contains(datasets, 'emergency.chemical_site')"
        ).fetchone()
        sites_n = con.execute(f"select count(*) from ({sites})").fetchone()[0]
        shapes = con.execute(
            "select datasets, departments, department_count, records, records_by_dataset "
            "from marts.mart_profile__person"
        ).fetchall()
    assert known_to_health == patients > 0
    assert people[0] == people[1]
    assert known_for_sites == (site_entities, sites_n)
    several = 0
    for datasets, names, count, records, by_dataset in shapes:
        expected = sorted({departments[d.split(".")[0]] for d in datasets})
        assert names == expected and count == len(expected)
        assert records == sum(by_dataset.values()) and sorted(by_dataset) == datasets
        several += count > 1
    assert several > 0  # people known to more than one department: the point of 一人一档


# --------------------------------------------------------------------------- keys and privacy


def mart_columns(con) -> list[tuple[str, str, str]]:
    return con.execute(
        "select table_name, column_name, data_type from duckdb_columns() "
        "where schema_name = 'marts' and database_name = 'county' order by all"
    ).fetchall()


def test_no_orphan_keys_in_the_marts(built):
    checked = 0
    with built.connect() as con:
        for table, column, _ in mart_columns(con):
            if column not in REFERENCES:
                continue
            orphans = con.execute(
                f'select distinct "{column}" from marts.{table} where "{column}" is not null '
                f"except {REFERENCES[column]}"
            ).fetchall()
            assert orphans == [], f"{table}.{column}: {orphans[:5]}"
            checked += 1
    assert checked >= 25


def test_no_raw_id_number_or_mobile_in_any_mart_column(built):
    """Every column of every mart, cast to text, against the raw ID-number (GB 11643: 17 digits
    and a check character, with a birth date) and mobile (1[3-9] and 9 digits) patterns."""
    scanned = set()
    with built.connect() as con:
        for table, column, _ in mart_columns(con):
            hits = con.execute(
                f'select cast("{column}" as varchar) as v from marts.{table} '
                "where v is not null and not regexp_full_match(v, ?) "
                "and (regexp_matches(v, ?) or regexp_matches(v, ?)) limit 3",
                [HEX_DIGEST, RAW_ID, RAW_MOBILE],
            ).fetchall()
            assert hits == [], f"marts.{table}.{column}: {hits}"
            scanned.add(table)
    assert sorted(scanned) == MART_NAMES


def test_marts_carry_no_column_a_contract_masks(built):
    """A mart shows *_masked display columns and keys only: no column named like a source
    column whose contract masks or pseudonymises it (an ID number, a name, a phone ...)."""
    from etl import warehouse

    masked = {
        c.name
        for s in load_systems()
        for d in s.datasets
        for c in d.columns
        if warehouse.effective_mask(c) not in ("none", "credit_code") or c.standard == "gb11643"
    }
    with built.connect() as con:
        columns = {column for _, column, _ in mart_columns(con)}
        ids = con.execute(
            "select count(*), count(*) filter (where regexp_full_match("
            "id_number_masked, '[0-9]{6}[*]{8}[0-9]{3}[0-9X]')) from marts.mart_profile__person "
            "where id_number_masked is not null"
        ).fetchone()
    assert "id_number" in masked and "caller_phone" in masked
    assert columns & masked == set()
    assert ids[0] == ids[1] > 0


# --------------------------------------------------------------------------- incremental builds


def test_incremental_build_recomputed_the_changed_days_and_kept_the_others(built):
    """Day 2's incremental build kept day-1 partitions whose input did not change and
    recomputed those that did (late rows, referrals progressing, people moving); the full
    rebuild equals it (tests/test_warehouse.py compares every mart row by row)."""
    incremental = [n for n in MART_NAMES if "_fingerprint" in mart_columns_of(built, n)]
    assert len(incremental) >= 8
    kept = recomputed = 0
    with built.connect() as con:
        con.execute(f"attach '{built.day1}' as day1 (read_only)")
        con.execute(f"attach '{built.incremental}' as day2 (read_only)")
        for name in incremental:
            partition = con.execute(
                "select column_name from duckdb_columns() where database_name = 'day2' and "
                "table_name = ? order by column_index limit 1",
                [name],
            ).fetchone()[0]
            rows = con.execute(
                f"select count(*) filter (where a._fingerprint = b._fingerprint), "
                f"count(*) filter (where a._fingerprint <> b._fingerprint) from "
                f"(select distinct {partition}, _fingerprint from day1.marts.{name}) a "
                f"join (select distinct {partition}, _fingerprint from day2.marts.{name}) b "
                f"using ({partition})"
            ).fetchone()
            kept, recomputed = kept + rows[0], recomputed + rows[1]
    assert kept > 0 and recomputed > 0, (kept, recomputed)


def mart_columns_of(built, name: str) -> set[str]:
    with built.connect() as con:
        return {
            c
            for (c,) in con.execute(
                "select column_name from duckdb_columns() where schema_name = 'marts' "
                "and table_name = ?",
                [name],
            ).fetchall()
        }


# --------------------------------------------------------------------------- command line


def test_warehouse_command_line():
    from etl.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["warehouse", "build", "--full-refresh", "--select", "marts"])
    assert args.full_refresh and args.select == "marts"
    assert parser.parse_args(["warehouse", "docs"]).func.__name__ == "cmd_warehouse_docs"
    assert parser.parse_args(["warehouse", "freshness"]).func.__name__ == "cmd_warehouse_freshness"
    with pytest.raises(SystemExit):
        parser.parse_args(["warehouse"])


# --------------------------------------------------------------------------- the benchmark's lake


def test_bench_history_copies_a_day_with_shifted_dates_and_unique_keys(built, tmp_path):
    """etl.bench_warehouse makes the lake county-sized by copying a landed day into earlier
    days: the copies must be new rows (unique keys), of other people of the register, on
    earlier days, with their dates moved along."""
    from datetime import timedelta

    from ingest_helpers import day

    from etl.bench_warehouse import activity_datasets, add_history_days, lake_rows

    home = tmp_path / "data"
    shutil.copytree(built.home / "lake", home / "lake")
    alarms = built.lake("emergency/sensor_alarm").replace(str(built.home), str(home))
    with built.connect() as con:
        days_before = con.execute(f"select count(distinct load_date) from {alarms}").fetchone()[0]
    before = lake_rows(home)
    copied = add_history_days(home, day(2), day(1), 3)
    after = lake_rows(home)
    names = {f"{s}.{d.dataset}" for s, d in activity_datasets()}
    assert "health.consultation" in names and "public_security.resident" not in names
    assert copied["history_days"] == 3 and copied["rows_written"] == 3 * copied["rows_per_day"]
    assert sum(after.values()) - sum(before.values()) == copied["rows_written"] > 0
    for name in set(after) - names:
        assert after[name] == before[name], name  # registers are never copied
    with built.connect() as con:
        keys, rows, days, early = con.execute(
            f"select count(distinct alarm_id), count(*), count(distinct load_date), "
            f"count(*) filter (where cast(alarm_at as date) < load_date - 3) from {alarms}"
        ).fetchone()
        first = con.execute(f"select min(load_date) from {alarms}").fetchone()[0]
        insured = built.lake("hrss/insured_person").replace(str(built.home), str(home))
        residents = built.lake("public_security/resident").replace(str(built.home), str(home))
        people, strangers = con.execute(
            f"select count(distinct id_number), count(*) filter (where load_date < ? and "
            f"id_number not in (select id_number from {residents})) from {insured}",
            [day(1)],
        ).fetchone()
        people_before = con.execute(
            f"select count(distinct id_number) from {built.lake('hrss/insured_person')}"
        ).fetchone()[0]
    assert keys == rows  # every copy has its own ids
    assert people > people_before and strangers == 0  # other people of the register
    assert days == days_before + 3 and first == day(1) - timedelta(days=3)
    assert early == 0  # dates moved with their day
