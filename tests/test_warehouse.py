"""The warehouse over a small simulated county: built day after day, incrementally and in full,
with the people and entity libraries reconciling with the lake and no raw identifier anywhere."""

from __future__ import annotations

import csv
import hashlib
import hmac
import itertools
import json
import math
import os
import re
import shutil
import stat
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from conftest import Built

from etl import warehouse
from etl.contracts import REPO_ROOT, load_profile
from etl.settings import paths
from etl.standards.codes import DEFAULT_EXTRA_ETHNICITY, ETHNICITIES, SECTIONS, SEXES
from etl.standards.gb32100 import CATEGORIES

SEEDS = REPO_ROOT / "warehouse" / "seeds"
# Written here independently of the dbt test macro: a raw 18-character citizen ID number and
# an 11-digit mobile number, standing alone: not inside a longer run of digits or letters, so
# the digits of a hex digest (a build's input fingerprints) do not count.
RAW_ID = (
    r"(^|[^0-9A-Za-z])[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])"
    r"[0-9]{3}[0-9Xx]([^0-9A-Za-z]|$)"
)
RAW_MOBILE = r"(^|[^0-9A-Za-z])1[3-9][0-9]{9}([^0-9A-Za-z]|$)"
HEX_DIGEST = r"[0-9a-f]{16}|[0-9a-f]{32}|[0-9a-f]{64}"  # digests and random tokens
NOT_REBUILDABLE = ("snapshots", "_meta")  # history accumulates per build; build log


def current_residents(b: Built) -> str:
    """The register's current state, computed from the lake independently of dbt."""
    return (
        f"select * from {b.lake('public_security/resident')} "
        'qualify row_number() over (partition by id_number order by load_date desc, "window" desc, '
        "updated_at desc) = 1"
    )


def tables(con, database: str = "county", skip: tuple = ()) -> list[tuple[str, str]]:
    """The tables and views a reader of the warehouse sees, by schema and name."""
    return con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_catalog = ? and not list_contains(?, table_schema) order by all",
        [database, list(skip)],
    ).fetchall()


def copy_home(source: Path, target: Path) -> None:
    """A copy of a data root. A build deletes the file it replaced on a thread
    (warehouse._swap_in), which may still be running: its link is not copied."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".replaced-*"))


# --------------------------------------------------------------------------- the builds


def test_builds_succeed_and_swap_in_a_complete_file(built):
    assert [built.first["mode"], built.second["mode"], built.full["mode"]] == [
        "first build",
        "incremental",
        "full refresh",
    ]
    for result in (built.first, built.second, built.full):
        assert set(result["nodes"]) <= {"success", "pass", "warn"}, result["nodes"]
        assert result["regenerated"] == []
    directory = built.home / "warehouse"
    assert not (directory / ".build").exists(), "a build left its work folder behind"
    assert not list(directory.glob("*.wal")), "the swapped file must be checkpointed"
    with built.connect() as con:
        builds = con.execute("select full_refresh, key_id from _meta.builds").fetchall()
        schemas = {s for s, _ in tables(con)}
    assert builds == [(False, built.first["key_id"])] * 2 + [(True, built.first["key_id"])]
    assert {"staging", "intermediate", "base", "snapshots", "reference"} <= schemas
    # dbt's own output stays under the data root; the last build's nodes are kept there
    results = json.loads(warehouse.build_results_path(built.home).read_text(encoding="utf-8"))
    assert results["build_id"] == built.full["build_id"]
    assert Counter(r["status"] for r in results["results"]) == built.full["nodes"]
    assert (directory / "dbt" / "logs").is_dir()


def test_a_reader_is_never_blocked_and_never_sees_half_a_build(built):
    with built.connect(built.day1) as con:
        day1_residents = con.execute(
            "select count(*) from staging.stg_public_security__resident"
        ).fetchall()[0][0]
    # the reader opened before the day-2 build kept reading day 1's complete file
    assert built.reader_saw == day1_residents


def test_a_new_key_needs_a_full_refresh(built, monkeypatch):
    before = built.current.stat().st_mtime_ns
    monkeypatch.setenv(warehouse.KEY_ENV, "another-key-" + "0" * 32)
    with pytest.raises(warehouse.WarehouseError, match="HMAC key differs"):
        warehouse.build(built.home, progress=None)
    assert built.current.stat().st_mtime_ns == before


def test_a_build_runs_only_what_is_downstream_of_what_changed(built):
    """Nothing new since the last build: the next one runs nothing and keeps the file. A new
    window selects its dataset's models and what is downstream; rewritten quality results
    nothing (the quality models are views of the files), a new quality file the models
    downstream of them. (The lake is put back as it was: other tests read it.)"""
    where = paths(built.home)
    assert warehouse.plan_build(where, built.current).selectors == []
    before = built.current.stat().st_mtime_ns
    summary = warehouse.build(built.home, progress=None)
    assert summary["mode"] == "unchanged" and summary["nodes"] == {}
    assert built.current.stat().st_mtime_ns == before

    resident = built.home / "lake" / "raw" / "public_security" / "resident"
    landed = sorted(resident.glob("load_date=*"))[-1]
    late = resident / "load_date=2099-01-01"
    scorecard = built.home / "lake" / "quality" / "scorecard.parquet"
    stamp = scorecard.stat()
    another = scorecard.with_name("another_result.parquet")
    # a window being swapped in, as etl.land.publish builds it beside the window it replaces
    window = next(sorted(resident.glob("load_date=*"))[0].glob("window=*"))  # the first load
    swapping = window.with_name(window.name + ".incoming")
    # a window that read no row: its manifest, no Parquet file for dbt to read
    empty = resident / "load_date=2099-01-02" / window.name
    try:
        shutil.copytree(window, swapping)
        empty.mkdir(parents=True)
        shutil.copy2(window / "_manifest.json", empty / "_manifest.json")
        assert warehouse.plan_build(where, built.current).selectors == []
        assert not [key for key in warehouse.lake_windows(where) if "2099" in key[2]]
        shutil.copytree(landed, late)
        plan = warehouse.plan_build(where, built.current)
        assert plan.selectors == ["source:public_security.resident+"], plan
        os.utime(scorecard, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
        plan = warehouse.plan_build(where, built.current)
        assert plan.selectors == ["source:public_security.resident+"]
        shutil.copy2(scorecard, another)
        plan = warehouse.plan_build(where, built.current)
        assert plan.selectors == ["source:public_security.resident+", "source:lake_quality+"]
    finally:
        shutil.rmtree(swapping, ignore_errors=True)
        shutil.rmtree(empty.parent, ignore_errors=True)
        shutil.rmtree(late, ignore_errors=True)
        another.unlink(missing_ok=True)
        os.utime(scorecard, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert warehouse.plan_build(where, built.current).selectors == []
    # dbt's on-run-start lists the lake's windows with the same folder pattern
    lake_sql = (warehouse.PROJECT_DIR / "macros" / "lake.sql").read_text(encoding="utf-8")
    assert f"load_date=*/{warehouse.WINDOW_FOLDER}/*.parquet" in lake_sql


def test_an_incremental_build_records_the_relations_it_wrote(built):
    """What each build wrote is in _meta.builds, so a reader (the uplinks) can tell the last
    build that changed a relation: the date dimension comes from the county's vars, not the
    lake, so day 2's incremental build left it as day 1's build wrote it."""
    with built.connect(built.incremental) as con:
        rows = con.execute("select relations from _meta.builds order by built_at").fetchall()
    first, second = [set(json.loads(r)) for (r,) in rows]
    assert {"base.dim_date", "base.base_people", "reference.code_sex"} <= first
    assert "base.base_people" in second and "base.dim_date" not in second
    assert second < first
    build_of = warehouse.build_of
    assert build_of(built.incremental, "base.dim_date") == built.first["build_id"]
    assert build_of(built.incremental, "base.base_people") == built.second["build_id"]
    assert build_of(built.current, "base.dim_date") == built.full["build_id"]


def test_an_incremental_build_keeps_the_comments_a_full_build_writes(built):
    """Tables and columns carry their descriptions as DuckDB comments (persist_docs). An
    incremental build leaves the comments a table already has (macros/persist_docs.sql): they
    are the ones the full refresh wrote afresh, on every table and every column."""
    layers = ("staging", "intermediate", "base", "marts")  # the models (dbt_project.yml)

    def comments(path: Path) -> dict:
        with built.connect(path) as con:
            return {
                (schema, table, column): comment
                for schema, table, column, comment in con.execute(
                    "select schema_name, table_name, null, comment from duckdb_tables() "
                    "where database_name = current_database() and list_contains(?, schema_name) "
                    "union all select schema_name, view_name, null, comment from duckdb_views() "
                    "where database_name = current_database() and list_contains(?, schema_name) "
                    "union all select schema_name, table_name, column_name, comment "
                    "from duckdb_columns() where database_name = current_database() "
                    "and list_contains(?, schema_name)",
                    [list(layers)] * 3,
                ).fetchall()
            }

    incremental, full = comments(built.incremental), comments(built.current)
    assert incremental == full
    assert {schema for schema, _, _ in full} == set(layers)
    tables = [key for key in full if key[2] is None]
    assert [key for key in tables if not full[key]] == []
    assert [key for key, comment in full.items() if not comment] == []


def test_an_incremental_model_whose_table_lost_a_column_fails_or_gets_it_back(
    built, tmp_path, capsys
):
    """The incremental models compare the columns they built with their table's
    (macros/schema.sql): a mart whose table lacks one fails (on_schema_change 'fail'), a
    staging model adds it back (append_new_columns); the same columns insert as before. dbt's
    error reaches stderr."""
    home = tmp_path / "home"
    copy_home(built.home, home)
    database = home / "warehouse" / warehouse.WAREHOUSE_FILE
    mart, staged = "mart_health__consultations_daily", "stg_civil_affairs__assistance"
    with duckdb.connect(str(database)) as con:
        con.execute(f"alter table marts.{mart} drop column consultations")
        con.execute(f"alter table staging.{staged} drop column status")
    result = warehouse.run_dbt(
        ["run", "--select", mart, staged, "mart_governance__hotline_daily"],
        home,
        database=database,
        build_id="build-under-test",
    )
    outcomes = {r.node.name: (str(r.status), r.message or "") for r in result.result.results}
    assert outcomes[mart][0] == "error" and "out of sync" in outcomes[mart][1], outcomes
    assert "out of sync" in capsys.readouterr().err
    assert outcomes[staged][0] == outcomes["mart_governance__hotline_daily"][0] == "success"
    with duckdb.connect(str(database), read_only=True) as con:
        columns = [c for (c,) in con.execute(
            "select column_name from duckdb_columns() where table_name = ?", [staged]
        ).fetchall()]  # fmt: skip
    assert "status" in columns


def test_new_quality_results_show_in_the_warehouse_without_a_build(built, tmp_path, monkeypatch):
    """The quality models are views of the files published from the ledger (on a local lake):
    results `countylake run` published show in the warehouse without a build, and a build
    that only republished them has nothing to run. The views are rebuilt when they would go
    wrong: a moved data root (they name the files where they lay) and a file with other
    columns (a release whose scorecard gains one)."""
    from etl import quality

    home = tmp_path / "home"
    copy_home(built.home, home)
    where, database = paths(home), home / "warehouse" / warehouse.WAREHOUSE_FILE
    scorecard = home / "lake" / "quality" / "scorecard.parquet"
    mart = "marts.mart_quality__scorecard"

    def publish(sql: str) -> None:  # as etl.quality does: a new file renamed over the old
        with duckdb.connect() as con:
            con.execute(f"copy ({sql}) to '{scorecard}.tmp' (format parquet)")
        os.replace(f"{scorecard}.tmp", scorecard)

    def differences(relation: str, file: Path) -> int:
        with duckdb.connect(str(database), read_only=True) as con:
            return con.execute(
                f"select count(*) from ((from {relation} except all from '{file}') union all "
                f"(from '{file}' except all from {relation}))"
            ).fetchone()[0]

    def newest() -> tuple:
        with duckdb.connect(str(database), read_only=True) as con:
            shown = con.execute(f"select max(date_day) from {mart}").fetchone()[0]
            return shown, con.execute(f"select max(day) from '{scorecard}'").fetchone()[0]

    moved = warehouse.plan_build(where, database)
    assert moved.selectors == [warehouse.QUALITY_SELECTOR], moved.reason
    summary = warehouse.build(home, progress=None)
    assert summary["mode"] == "incremental" and summary["nodes"].get("success"), summary
    built_day, _ = newest()

    # the next day's scorecard: every department's last day again, a day later
    publish(
        f"from '{scorecard}' union all select * replace (day + 1 as day) from '{scorecard}' "
        f"where day = (select max(day) from '{scorecard}')"
    )
    assert warehouse.plan_build(where, database).selectors == []
    shown, published = newest()
    assert shown == published and shown > built_day
    # the build publishes the ledger's results again (without the made-up day): nothing to run
    assert warehouse.build(home, progress=None)["mode"] == "unchanged"
    for relation, file in (
        ("staging.stg_quality__scorecard", scorecard),
        ("staging.stg_quality__rule_results", home / "lake" / "quality" / "rule_results.parquet"),
    ):
        assert differences(relation, file) == 0, relation
    assert newest() == (built_day, built_day)

    released = quality._scorecard()
    monkeypatch.setattr(
        quality, "_scorecard", lambda: f"select *, 'a new column' as note from ({released})"
    )
    summary = warehouse.build(home, progress=None)
    assert summary["mode"] == "incremental" and summary["nodes"].get("success"), summary
    assert "changed quality files" in summary["plan"], summary["plan"]
    with duckdb.connect(str(database), read_only=True) as con:
        notes = con.execute("select distinct note from staging.stg_quality__scorecard").fetchall()
    assert notes == [("a new column",)]


def test_build_of_a_relation_is_the_last_incremental_build_that_may_have_changed_it(tmp_path):
    """Unknown is never 'unchanged': a build that did not record what it wrote may have
    written anything, a view follows the latest build, and a relation no build wrote (or a
    file no build made) has no build."""
    from datetime import UTC, datetime, timedelta

    path = tmp_path / "county.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create schema s; create table s.t (x int); create table s.u (x int)")
        con.execute("create table s.w (x int); create view s.v as select * from s.t")
    assert warehouse.build_of(path, "s.t") is None
    start = datetime(2026, 11, 1, tzinfo=UTC)
    row = {"full_refresh": False, "select": "", "key_id": "k", "nodes": {}, "seconds": 1.0}
    for n, written in enumerate([None, ["s.t"], ["s.u"]], start=1):
        at = start + timedelta(days=n)
        warehouse._record_build(
            path, {**row, "built_at": at, "build_id": f"b{n}", "inputs": None}, written
        )
    of = {r: warehouse.build_of(path, r) for r in ("s.t", "S.U", "s.w", "s.v", "s.gone")}
    assert of == {"s.t": "b2", "S.U": "b3", "s.w": "b1", "s.v": "b3", "s.gone": None}
    with duckdb.connect(str(path)) as con:
        con.execute("delete from _meta.builds where build_id = 'b1'")
    assert warehouse.build_of(path, "s.w") is None


def row_groups(path: Path, table: str) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            f"select count(distinct row_group_id) from pragma_storage_info('{table}')"
        ).fetchone()[0]


@pytest.mark.parametrize(
    "deleted",
    [
        "x < 2 * {rg} and x % 2 = 0",  # half of two row groups: DuckDB would merge them
        "x % 10 < 4",  # 40% of every row group
    ],
)
def test_a_build_compacts_a_table_only_once_its_deleted_rows_pass_a_share(tmp_path, deleted):
    """Deleted rows stay in place (DuckDB rewrites at each checkpoint every table it can
    compact: the person tables whole, every night) until a table's deleted rows pass
    COMPACT_ABOVE; then the checkpoint that completes the build compacts it."""
    from datetime import UTC, datetime

    path, rg = tmp_path / "county.duckdb", warehouse.ROW_GROUP_ROWS
    with duckdb.connect(str(path), config={"max_vacuum_tasks": 0}) as con:
        con.execute(f"create schema s; create table s.t as select range as x from range({8 * rg})")
        con.execute("checkpoint")
        con.execute(f"delete from s.t where {deleted.format(rg=rg)}")
        live = con.execute("select count(*) from s.t").fetchone()[0]
    assert row_groups(path, "s.t") == 8
    row = {"full_refresh": False, "select": "", "key_id": "k", "nodes": {}, "seconds": 1.0}
    row |= {"built_at": datetime(2026, 11, 2, tzinfo=UTC), "build_id": "b", "inputs": None}
    compacted = warehouse._record_build(path, row, ["s.t"])
    due = 1 - live / (8 * rg) > warehouse.COMPACT_ABOVE
    assert compacted == (["s.t"] if due else [])
    compact = math.ceil(live / rg) <= row_groups(path, "s.t") < 8
    assert compact if due else row_groups(path, "s.t") == 8
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("select count(*) from s.t").fetchone()[0] == live


def test_a_full_refresh_keeps_the_history_in_a_file_without_the_replaced_blocks(built):
    """A full refresh starts from a new file holding the snapshots and the build log of the
    current one (the lake cannot give them back): every version the incremental builds
    recorded is still there, and the file holds little but live blocks (a copy of the whole
    file kept every replaced table's blocks free)."""
    con = duckdb.connect()
    con.execute(f"attach '{built.incremental}' as incremental (read_only)")
    con.execute(f"attach '{built.current}' as rebuilt (read_only)")
    history = tables(con, "incremental", ("staging", "intermediate", "base", "marts", "reference"))
    assert {s for s, _ in history} == set(warehouse.CARRIED_OVER)
    for schema, table in history:
        if schema != "snapshots":
            continue
        versions, lost = con.execute(
            f"select (select count(*) from incremental.{schema}.{table}), (select count(*) "
            f"from (select dbt_scd_id from incremental.{schema}.{table} "
            f"except select dbt_scd_id from rebuilt.{schema}.{table}))"
        ).fetchone()
        assert versions > 0 and lost == 0, (table, versions, lost)
    before = {b for (b,) in con.execute("select build_id from incremental._meta.builds").fetchall()}
    after = {b for (b,) in con.execute("select build_id from rebuilt._meta.builds").fetchall()}
    assert before < after
    (total, free) = con.execute(
        "select total_blocks, free_blocks from pragma_database_size() "
        "where database_name = 'rebuilt'"
    ).fetchone()
    assert free < 0.2 * total, (free, total)


def test_full_rebuild_equals_the_incremental_builds(built):
    con = duckdb.connect()
    con.execute(f"attach '{built.incremental}' as incremental (read_only)")
    con.execute(f"attach '{built.current}' as rebuilt (read_only)")
    compared = tables(con, "incremental", NOT_REBUILDABLE)
    assert tables(con, "rebuilt", NOT_REBUILDABLE) == compared
    # every mart too, incremental ones included (tests/test_marts.py checks that day 2 did
    # recompute some of day 1's partitions and kept the others)
    marts = sorted(
        p.stem for p in (REPO_ROOT / "warehouse" / "models" / "marts").rglob("mart_*.sql")
    )
    assert [t for s, t in compared if s == "marts"] == marts
    for schema, table in compared:
        columns = con.execute(
            "select column_name from duckdb_columns() where database_name = 'incremental' "
            "and schema_name = ? and table_name = ? and column_name <> '_staged_in' "
            "order by column_name",  # _staged_in names the build that wrote the row
            [schema, table],
        ).fetchall()
        cols = ", ".join(f'"{c}"' for (c,) in columns)
        for a, b in (("incremental", "rebuilt"), ("rebuilt", "incremental")):
            extra = con.execute(
                f"select count(*) from (select {cols} from {a}.{schema}.{table} "
                f"except all select {cols} from {b}.{schema}.{table})"
            ).fetchall()[0][0]
            assert extra == 0, f"{schema}.{table}: {extra} rows in {a} only"
    # the append-only staging tables did grow on day 2
    days = "select count(distinct _load_date) from incremental.staging.stg_hrss__insured_person"
    assert con.execute(days).fetchall()[0][0] == 2


def read_lake(home: Path, dataset: str) -> str:
    return (
        f"read_parquet('{home}/lake/raw/{dataset}/**/*.parquet', "
        "hive_partitioning = true, union_by_name = true)"
    )


def test_a_person_who_moves_town_moves_their_facts_from_the_month_of_the_move(built, tmp_path):
    """The monthly marts place a month's facts by the town the register gave the person in that
    month: a resident with contributions in two months and deposits moves to a village of
    another town in a new window, dated in the later month. The later month's figures change,
    the earlier month's do not, and the incremental build gives what a full rebuild gives."""
    home = tmp_path / "home"
    copy_home(built.home, home)
    lake = home / "lake" / "raw"
    con = duckdb.connect()
    moved_id, village, move_month = con.execute(
        f"""with register as (
                select * from {read_lake(home, "public_security/resident")}
                qualify row_number() over (partition by id_number
                                           order by load_date desc, "window" desc) = 1),
            months as (
                select id_number, max(contribution_month) as last_month
                from {read_lake(home, "hrss/insured_person")}
                where id_number in (select id_number
                                    from {read_lake(home, "housing_fund/deposit")})
                group by id_number
                having count(distinct contribution_month) > 1)
            select register.id_number, other.village_code, months.last_month
            from register
            join months using (id_number)
            join register as other
              on left(other.village_code, 9) <> left(register.village_code, 9)
            where register.village_code is not null
            order by register.id_number, other.village_code limit 1"""
    ).fetchone()
    window = lake / "public_security" / "resident" / "load_date=2026-12-31" / "window=0000"
    window.mkdir(parents=True)
    con.execute(
        f"""copy (select * exclude (load_date, "window")
                  replace (? as village_code,
                           cast(? || '-15 09:00:00' as timestamp) as updated_at)
                  from {read_lake(home, "public_security/resident")}
                  where id_number = ?
                  order by load_date desc, "window" desc limit 1)
            to '{window / "data-00000.parquet"}' (format parquet)""",
        [village, move_month, moved_id],
    )
    summary = warehouse.build(home, progress=None)
    assert summary["mode"] == "incremental", summary
    # the rebuild: a build after the county changed (here: its recorded fingerprint) is a
    # full refresh, since incremental models would keep what the old county computed
    rebuilt_home = tmp_path / "rebuilt"
    copy_home(home, rebuilt_home)
    with duckdb.connect(str(rebuilt_home / "warehouse" / warehouse.WAREHOUSE_FILE)) as stale:
        stale.execute(
            'update _meta.builds set inputs = json_merge_patch(inputs, \'{"reference": "old"}\')'
        )
    rebuilt = warehouse.build(rebuilt_home, progress=None)
    assert rebuilt["mode"] == "full refresh" and "reference changed" in rebuilt["plan"], rebuilt
    con.execute(f"attach '{home / 'warehouse' / warehouse.WAREHOUSE_FILE}' as incremental")
    con.execute(f"attach '{rebuilt_home / 'warehouse' / warehouse.WAREHOUSE_FILE}' as rebuilt")
    moved = con.execute("select key, since_month from incremental._meta.moved_people").fetchall()
    assert [since for _, since in moved] == [move_month]
    for mart in ("mart_social__insured_monthly", "mart_social__housing_fund_monthly"):
        for a, b in (("incremental", "rebuilt"), ("rebuilt", "incremental")):
            extra = con.execute(
                f"select count(*) from (select * from {a}.marts.{mart} "
                f"except all select * from {b}.marts.{mart})"
            ).fetchone()[0]
            assert extra == 0, f"{mart}: {extra} rows in {a} only"
    # against the warehouse before the move: the month of the move changed, the months
    # before it did not
    con.execute(f"attach '{built.current}' as before (read_only)")
    changed = dict(
        con.execute(
            "select contribution_month < ?, count(*) from (select * exclude (_fingerprint) "
            "from incremental.marts.mart_social__insured_monthly "
            "except select * exclude (_fingerprint) "
            "from before.marts.mart_social__insured_monthly) group by all",
            [move_month],
        ).fetchall()
    )
    assert changed.get(False, 0) > 0 and changed.get(True, 0) == 0, changed


# --------------------------------------------------------------------------- the libraries


def test_population_per_town_equals_the_residents_landed_in_its_villages(built):
    with built.connect() as con:
        expected = dict(
            con.execute(
                f"select left(village_code, 9), count(*) from ({current_residents(built)}) "
                "group by all"
            ).fetchall()
        )
        in_base = dict(
            con.execute(
                "select town_code, count(*) from base.base_people where in_register group by all"
            ).fetchall()
        )
        towns = {
            code: name
            for code, name in con.execute(
                "select town_code, division_name from base.dim_division "
                "where division_level = 'town'"
            ).fetchall()
        }
        villages = con.execute(
            "select count(*) from base.dim_division where division_level = 'village'"
        ).fetchall()[0][0]
    assert in_base == expected
    profile = load_profile()
    assert towns == {t.code: t.name for t in profile.towns}
    assert villages == len(profile.villages)


def test_register_reconciles_with_the_people_library(built):
    with built.connect() as con:
        lake = con.execute(
            f"select status, count(*) from ({current_residents(built)}) group by all"
        ).fetchall()
        base = con.execute(
            "select register_status, count(*) from base.base_people where in_register group by all"
        ).fetchall()
        others = con.execute(
            "select count(*), count(*) filter (where source_dataset_count > 0) "
            "from base.base_people where not in_register"
        ).fetchall()[0]
    assert sorted(base) == sorted(lake)
    assert others[0] == others[1] > 0  # people seen only by other departments are kept too


def test_no_orphan_keys(built):
    checks = {
        "history -> people": "select person_key from base.base_people_history "
        "except select person_key from base.base_people",
        "legal representative -> people": "select legal_rep_person_key from base.base_entities "
        "where legal_rep_person_key is not null except select person_key from base.base_people",
        "people -> division": "select village_code from base.base_people "
        "where village_code is not null except select division_code from base.dim_division",
        "entity -> division": "select village_code from base.base_entities "
        "where village_code is not null except select division_code from base.dim_division",
        "division -> parent": "select parent_code from base.dim_division "
        "where parent_code is not null except select division_code from base.dim_division",
        "sightings -> people": "select person_key from intermediate.int_person_sightings "
        "except select person_key from base.base_people",
        "employer -> entities": "select employer_credit_code from staging.stg_hrss__insured_person"
        " where employer_credit_code is not null except select credit_code from base.base_entities",
    }
    with built.connect() as con:
        for name, query in checks.items():
            assert con.execute(query).fetchall() == [], name


def test_every_scd2_key_has_exactly_one_current_row(built):
    with built.connect() as con:
        for table, key in (
            ("base_people_history", "person_key"),
            ("base_entities_history", "credit_code"),
        ):
            bad = con.execute(
                f"select {key} from base.{table} group by all "
                "having count(*) filter (where is_current) <> 1"
            ).fetchall()
            assert bad == [], table
        changed = con.execute(
            "select count(*) from (select person_key from base.base_people_history "
            "group by all having count(*) > 1)"
        ).fetchall()[0][0]
        current_status = con.execute(
            "select count(*) from base.base_people_history h join base.base_people p "
            "using (person_key) where h.is_current and h.status is distinct from p.register_status"
        ).fetchall()[0][0]
    assert changed > 0  # day 2 moved or changed the status of someone
    assert current_status == 0


# --------------------------------------------------------------------------- privacy


def test_pseudonyms_in_sql_equal_python_hmac(built):
    key = warehouse.hmac_key(built.home)
    with built.connect() as con:
        ids = con.execute(f"select id_number from ({current_residents(built)})").fetchall()
        keys = con.execute("select person_key from base.base_people where in_register").fetchall()
    assert {k for (k,) in keys} == {
        hmac.new(key, i.encode(), hashlib.sha256).hexdigest() for (i,) in ids
    }


def test_pseudonym_macro_normalises_and_takes_any_key_length(built, monkeypatch, tmp_path):
    long_key = "k" * 100  # longer than the SHA-256 block: HMAC hashes it first
    monkeypatch.setenv(warehouse.KEY_ENV, long_key)
    values = ["37032219891231123X", "37032219891231123x ", " 372331195611306746"]
    literals = ", ".join(f"{{{{ pseudonym(\"'{v}'\") }}}} as k{i}" for i, v in enumerate(values))
    result = warehouse.run_dbt(
        ["show", "--inline", f"select {literals}"], built.home, database=tmp_path / "show.duckdb"
    )
    assert result.success, result.exception
    got = list(result.result.results[0].agate_table.rows[0].values())
    expected = [
        hmac.new(long_key.encode(), v.strip().upper().encode(), hashlib.sha256).hexdigest()
        for v in values
    ]
    assert got == expected
    assert got[0] == got[1]  # the same person however the number was typed


def test_no_raw_id_number_or_mobile_in_any_table(built):
    with built.connect() as con:
        # the scan itself finds them where they are: in the lake
        lake_hits = con.execute(
            f"select count(*) from {built.lake('public_security/resident')} "
            "where regexp_matches(id_number, ?) or regexp_matches(phone, ?)",
            [RAW_ID, RAW_MOBILE],
        ).fetchall()[0][0]
        assert lake_hits > 0
        scanned = 0
        for schema, table in tables(con, skip=("reference",)):
            columns = con.execute(
                "select column_name from duckdb_columns() where schema_name = ? "
                "and table_name = ? and database_name = 'county'",
                [schema, table],
            ).fetchall()
            for (column,) in columns:
                hits = con.execute(
                    f'select cast("{column}" as varchar) as v from {schema}.{table} '
                    "where v is not null and not regexp_full_match(v, ?) "
                    "and (regexp_matches(v, ?) or regexp_matches(v, ?)) limit 3",
                    [HEX_DIGEST, RAW_ID, RAW_MOBILE],
                ).fetchall()
                assert hits == [], f"{schema}.{table}.{column}: {hits}"
                scanned += 1
    assert scanned > 200


def test_the_grain_required_columns_and_known_codes_tests_find_their_rows(built, tmp_path):
    """``grain`` fails on a repeated key and on a null key part (one node for unique and
    not_null); ``not_null_columns`` warns on every null cell of this build's rows and
    ``known_codes`` on every value outside its list or code table, and fails (the default
    error) on every unknown reference of a mart, one row per column."""
    home = tmp_path / "home"
    copy_home(built.home, home)
    database = home / "warehouse" / warehouse.WAREHOUSE_FILE
    mart, staged = (
        "marts.mart_health__consultations_by_level_daily",
        "staging.stg_civil_affairs__assistance",
    )
    with duckdb.connect(str(database)) as con:
        con.execute(f"insert into {mart} select * from {mart} limit 1")
        con.execute(f"insert into {mart} select * replace (null as care_level) from {mart} limit 1")
        con.execute(  # a day and a level of care that no dimension knows: a new grain key
            f"insert into {mart} select * replace (date '1899-12-31' as date_day, "
            f"99 as care_level) from {mart} limit 1"
        )
        con.execute(
            f"update {staged} set status = null, _staged_in = 'build-under-test' "
            f"where rowid in (select rowid from {staged} limit 2)"
        )
        con.execute(
            f"update {staged} set assistance_type = '不存在的类型', village_code = '999999999999', "
            f"_staged_in = 'build-under-test' "
            f"where rowid in (select rowid from {staged} order by rowid desc limit 1)"
        )
    result = warehouse.run_dbt(
        [
            "test",
            "--select",
            "mart_health__consultations_by_level_daily",
            "stg_civil_affairs__assistance",
        ],
        home,
        database=database,
        build_id="build-under-test",
    )
    outcomes = {
        (r.node.test_metadata.name, r.node.attached_node.split(".")[-1]): (
            str(r.status),
            r.failures,
        )
        for r in result.result.results
        if getattr(r.node, "test_metadata", None)
        and r.node.test_metadata.name in ("grain", "not_null_columns", "known_codes")
    }
    assert outcomes == {
        ("grain", "mart_health__consultations_by_level_daily"): ("fail", 2),
        ("known_codes", "mart_health__consultations_by_level_daily"): ("fail", 2),
        ("grain", "stg_civil_affairs__assistance"): ("pass", 0),
        ("not_null_columns", "stg_civil_affairs__assistance"): ("warn", 2),
        ("known_codes", "stg_civil_affairs__assistance"): ("warn", 2),
    }, outcomes


def test_the_privacy_scan_finds_a_raw_id_number_or_phone(built, tmp_path):
    """``no_raw_identifiers`` fails on a mobile number in a row this build staged (a number
    inside a longer run of digits is not one), and on a raw ID number in the profile of a
    person this build recomputed ('*': every person), not of one it left alone."""
    home = tmp_path / "home"
    copy_home(built.home, home)
    database = home / "warehouse" / warehouse.WAREHOUSE_FILE
    profile, staged = "marts.mart_profile__person", "staging.stg_civil_affairs__assistance"
    with duckdb.connect(str(database)) as con:
        planted, other = [k for (k,) in con.execute(
            f"select person_key from {profile} order by person_key limit 2"
        ).fetchall()]  # fmt: skip
        con.execute(
            f"update {profile} set name_masked = '张 370322199001011234' where person_key = ?",
            [planted],
        )
        for value, order in (("13912345678", "rowid"), ("9913912345678", "rowid desc")):
            con.execute(
                f"update {staged} set name_masked = ?, _staged_in = 'build-under-test' "
                f"where rowid in (select rowid from {staged} order by {order} limit 1)",
                [value],
            )
    result = warehouse.run_dbt(
        ["test", "--select", "mart_profile__person", "stg_civil_affairs__assistance"],
        home,
        database=database,
        build_id="build-under-test",
    )
    outcomes = {
        r.node.attached_node.split(".")[-1]: (str(r.status), r.failures)
        for r in result.result.results
        if getattr(r.node, "test_metadata", None)
        and r.node.test_metadata.name == "no_raw_identifiers"
    }
    # a test run outside a build recomputed no person: the profiles are not scanned
    assert outcomes == {
        "mart_profile__person": ("pass", 0),
        "stg_civil_affairs__assistance": ("fail", 1),
    }, outcomes

    def scan(touched: list[str]) -> int:
        """The profile's scan as dbt renders it with these keys touched (dbt compile runs no
        on-run-start hook, which would empty the table)."""
        with duckdb.connect(str(database)) as con:
            con.execute("create or replace table _meta.touched_people (key varchar)")
            con.executemany("insert into _meta.touched_people values (?)", [[k] for k in touched])
        compiled = warehouse.run_dbt(
            ["compile", "--select", "no_raw_identifiers_mart_profile__person_person_key__people"],
            home,
            database=database,
            build_id="build-under-test",
        )
        assert compiled.success, compiled.exception
        sql = compiled.result.results[0].node.compiled_code
        with duckdb.connect(str(database), read_only=True) as con:
            return len(con.execute(sql).fetchall())

    assert scan([planted]) == 1
    assert scan(["*"]) == 1  # every person touched: the whole profile is scanned
    assert scan([other]) == 0


def test_every_row_is_tested_when_the_warehouse_is_audited(built, tmp_path):
    """A build tests the rows it wrote and the keys it recomputed; ``test_every_row`` runs every
    test on every row: it finds a raw ID number in a profile and a mobile number in a staged
    row and a repeated key among the staged rows, all where no build touched them, which the
    same tests in a build never read; every other test passes on every row of the warehouse."""
    home = tmp_path / "home"
    copy_home(built.home, home)
    database = home / "warehouse" / warehouse.WAREHOUSE_FILE
    profile, staged = "marts.mart_profile__person", "staging.stg_civil_affairs__assistance"
    with duckdb.connect(str(database)) as con:  # as an earlier build left them: no key touched
        con.execute(f"insert into {staged} select * from {staged} order by rowid desc limit 1")
        con.execute(
            f"update {profile} set name_masked = '张 370322199001011234' "
            f"where person_key = (select min(person_key) from {profile})"
        )
        con.execute(
            f"update {staged} set name_masked = '13912345678' "
            f"where rowid = (select min(rowid) from {staged})"
        )
        con.execute("delete from _meta.touched_people")
    in_a_build = warehouse.run_dbt(
        ["test", "--select", "mart_profile__person", "stg_civil_affairs__assistance"],
        home,
        database=database,
        build_id="build-under-test",
    )
    assert in_a_build.success, [r.message for r in in_a_build.result.results if r.failures]

    audit = warehouse.test_every_row(home)
    failed = sorted(problem.split(":")[0] for problem in audit["problems"])
    assert failed == [
        "grain_stg_civil_affairs__assistance_person_key__assistance_type",
        "no_raw_identifiers_mart_profile__person_person_key__people",
        "no_raw_identifiers_stg_civil_affairs__assistance_",
    ], audit["problems"]
    assert audit["nodes"]["pass"] > 100 and audit["nodes"]["fail"] == 3, audit["nodes"]


def test_auditing_a_data_root_without_a_warehouse_says_to_build_one(tmp_path):
    with pytest.raises(warehouse.WarehouseError, match=r"no warehouse to test.*warehouse build"):
        warehouse.test_every_row(tmp_path)


@pytest.mark.parametrize("mode", ["incremental", "full refresh"])
def test_a_build_is_memory_bounded_and_retried_without_the_bound(
    built, tmp_path, monkeypatch, mode
):
    """A build runs under DuckDB's default limit for its mode (a full refresh one model at a
    time, so that the limit is one model's); one that runs out of memory there is built again
    without it, from the start its mode makes (a full refresh: the snapshots' history carried
    over), and the warehouse is swapped in all the same."""
    home = tmp_path / "home"
    copy_home(built.home, home)
    database = home / "warehouse" / warehouse.WAREHOUSE_FILE
    history = "select count(*), min(dbt_valid_from) from snapshots.snap_people_register"
    with duckdb.connect(str(database), read_only=True) as con:
        versions = con.execute(history).fetchone()
    monkeypatch.delenv(warehouse.MEMORY_ENV, raising=False)
    bound = "INCREMENTAL_MEMORY" if mode == "incremental" else "FULL_MEMORY"
    monkeypatch.setattr(warehouse, bound, "1MB")  # too little for any model
    said: list[str] = []
    if mode == "incremental":
        summary = warehouse.build(home, select="dim_division", progress=said.append)
    else:
        summary = warehouse.build(home, full_refresh=True, progress=said.append)
    assert any("out of memory under DuckDB's 1MB limit" in line for line in said), said
    assert summary["mode"] == mode and summary["nodes"].get("success", 0) >= 1
    with duckdb.connect(str(database), read_only=True) as con:
        builds = con.execute("select build_id from _meta.builds").fetchall()
        assert con.execute(history).fetchone() == versions
    assert builds[-1] == (summary["build_id"],)
    results = json.loads(warehouse.build_results_path(home).read_text())["results"]
    if mode == "full refresh":
        nodes = [r for r in results if not r["unique_id"].startswith("operation.")]  # hooks
        assert len({r["thread"] for r in nodes}) == 1, nodes


@pytest.fixture(scope="module")
def docs_index(built) -> Path:
    return warehouse.docs(built.home)


def test_the_key_never_reaches_compiled_sql_logs_docs_or_the_warehouse(built, docs_index):
    index = docs_index
    assert index.exists() and index.name == "static_index.html"
    manifest = json.loads((index.parent / "manifest.json").read_text(encoding="utf-8"))
    people = manifest["nodes"]["model.countylake.base_people"]
    assert "人口库" in people["description"]  # the static site embeds the manifest compressed
    key = warehouse.hmac_key(built.home)
    ipad, opad = warehouse.hmac_pads(key)
    needles = [key, ipad.encode(), opad.encode(), bytes.fromhex(ipad), bytes.fromhex(opad)]
    for path in (built.home / "warehouse").rglob("*"):
        if path.is_file() and path.suffix != ".lock":
            data = path.read_bytes()
            assert not any(n in data for n in needles), path


def test_key_file_is_created_private_and_outside_git(tmp_path, monkeypatch):
    monkeypatch.delenv(warehouse.KEY_ENV, raising=False)
    monkeypatch.delenv(warehouse.KEY_FILE_ENV, raising=False)
    key = warehouse.hmac_key(tmp_path)
    path = tmp_path / "secrets" / "hmac.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert warehouse.hmac_key(tmp_path) == key and len(key) >= 32
    monkeypatch.setenv(warehouse.KEY_ENV, "short")
    with pytest.raises(warehouse.WarehouseError, match="at least 16"):
        warehouse.hmac_key(tmp_path)
    monkeypatch.delenv(warehouse.KEY_ENV)
    with pytest.raises(warehouse.WarehouseError, match="inside the repository"):
        warehouse.hmac_key(REPO_ROOT / "warehouse")


def test_padded_keys_give_the_standard_hmac():
    key = b"a county secret of some length"
    ipad, opad = warehouse.hmac_pads(key)
    assert len(bytes.fromhex(ipad)) == len(bytes.fromhex(opad)) == 64
    message = b"370322198912311234"
    inner = hashlib.sha256(bytes.fromhex(ipad) + message).digest()
    outer = hashlib.sha256(bytes.fromhex(opad) + inner).hexdigest()
    assert outer == hmac.new(key, message, hashlib.sha256).hexdigest()
    assert warehouse.pseudonym(" 370322198912311234", key) == outer
    assert warehouse.pseudonym("  ", key) is None


# --------------------------------------------------------------------------- configuration


def test_generated_files_match_the_contracts():
    assert warehouse.generate(check=True) == [], "run etl.warehouse.generate() and commit"


def test_masks_come_from_the_contracts():
    from etl.contracts import load_systems

    for system in load_systems():
        for dataset in system.datasets:
            staged = {c.name for c in warehouse.staged_columns(dataset)}
            for column in dataset.columns:
                mask = warehouse.effective_mask(column)
                if mask in ("none", "credit_code"):
                    assert column.name in staged
                else:
                    assert column.name not in staged, f"{dataset.dataset}.{column.name} in clear"
                if column.standard == "gb11643":
                    assert warehouse.person_key_name(column.name) in staged


def read_seed(name: str) -> list[dict]:
    with open(SEEDS / f"{name}.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_code_seeds_match_the_national_code_tables():
    assert {r["code"]: r["name_zh"] for r in read_seed("code_sex")} == SEXES
    ethnicity = read_seed("code_ethnicity")
    assert {r["code"]: r["name_zh"] for r in ethnicity if r["is_standard"] == "true"} == ETHNICITIES
    assert [r["code"] for r in ethnicity if r["is_standard"] == "false"] == list(
        DEFAULT_EXTRA_ETHNICITY
    )
    sections = {
        r["section_code"]: (int(r["division_from"]), int(r["division_to"]))
        for r in read_seed("code_industry_section")
    }
    assert sections == SECTIONS
    registrations = read_seed("code_credit_registration")
    assert {r["department_code"]: r["categories"] for r in registrations} == CATEGORIES
    assert [int(r["level"]) for r in read_seed("code_care_level")] == [1, 2, 3, 4, 5]
    for name in ("code_sex", "code_ethnicity", "code_industry_section", "code_care_level"):
        assert all(r["name_en"] for r in read_seed(name)), name


def test_every_model_and_column_is_described_in_chinese_and_english(built, docs_index):
    manifest = json.loads((built.home / "warehouse" / "docs" / "manifest.json").read_text())
    catalog = json.loads((built.home / "warehouse" / "docs" / "catalog.json").read_text())
    cjk = re.compile(r"[\u4e00-\u9fff]")
    latin = re.compile(r"[A-Za-z]{2,}")
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] not in ("model", "seed"):
            continue
        assert cjk.search(node["description"]) and latin.search(node["description"]), uid
        columns = catalog["nodes"][uid]["columns"]
        for column in columns:
            text = node["columns"].get(column, {}).get("description", "")
            assert cjk.search(text) and latin.search(text), f"{uid}.{column}"


def test_the_lake_listing_reads_again_only_the_day_folders_a_window_was_published_into(tmp_path):
    """A quiet night's plan stats the day folders instead of reading them; what publishing a
    window changes (a rename into its day's folder) is seen, and so is a change too close to
    the last listing for the folder's time to tell."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from etl.land import publish

    raw, listing = tmp_path / "raw", tmp_path / "warehouse" / warehouse.LISTING_FILE
    day_folder = raw / "hotline" / "ticket" / "load_date={}"
    an_hour_ago = os.stat(tmp_path).st_mtime - 3600
    minutes = itertools.count()

    def land(day: str, window: str, name: str, recent: bool = False) -> Path:
        staged = tmp_path / "staged" / name
        staged.parent.mkdir(exist_ok=True)
        pq.write_table(pa.table({"ticket_id": ["1"]}), staged)
        folder = Path(str(day_folder).format(day))
        publish([staged], folder / f"window={window}", None)
        if not recent:  # published long before the listing, a minute after the one before
            published = an_hour_ago + 60 * next(minutes)
            os.utime(folder, (published, published))
        return folder

    def listed(staged=frozenset()) -> dict:
        return {k[2]: sorted(Path(f).name for f in v) for k, v in
                warehouse._local_windows(raw, set(staged), listing).items()}  # fmt: skip

    first = land("2026-11-01", "0000", "data-0.parquet")
    land("2026-11-02", "0000", "data-0.parquet")
    first_published = first.stat().st_mtime_ns
    assert listed() == {
        "2026-11-01/0000": ["data-0.parquet"],
        "2026-11-02/0000": ["data-0.parquet"],
    }
    # a file slipped into a window without publishing it is not seen: the day was not read
    (first / "window=0000" / "slipped.parquet").write_bytes(b"PAR1")
    os.utime(first, ns=(first_published, first_published))
    assert listed()["2026-11-01/0000"] == ["data-0.parquet"]
    # a window published into a day already listed, and a new day
    land("2026-11-01", "1200", "data-0.parquet")
    land("2026-11-03", "0000", "data-0.parquet")
    assert listed() == {
        "2026-11-01/0000": ["data-0.parquet", "slipped.parquet"],
        "2026-11-01/1200": ["data-0.parquet"],
        "2026-11-02/0000": ["data-0.parquet"],
        "2026-11-03/0000": ["data-0.parquet"],
    }
    # a window staged by the warehouse is listed without its files, and with them when needed
    model = warehouse.model_name("hotline", "ticket")
    assert listed({(model, "2026-11-02/0000")})["2026-11-02/0000"] == []
    assert listed()["2026-11-02/0000"] == ["data-0.parquet"]
    # published just now: the next listing reads that day again, whatever its time says
    recent = land("2026-11-04", "0000", "data-0.parquet", recent=True)
    listed()
    stamp = recent.stat().st_mtime_ns
    (recent / "window=0000" / "late.parquet").write_bytes(b"PAR1")
    os.utime(recent, ns=(stamp, stamp))
    assert listed()["2026-11-04/0000"] == ["data-0.parquet", "late.parquet"]
