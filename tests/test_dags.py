"""DAG integrity: Airflow itself parses dags/ into one ingest DAG per department system, built
from the contracts, and the warehouse DAG scheduled on their assets, quickly, without heavy
imports; a broken contract costs only its own DAG.

Each check parses in a fresh interpreter (tests/airflow_probe.py) with its own Airflow home,
because Airflow reads its configuration when it is first imported.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from airflow_probe import call
from ingest_helpers import day

from etl.contracts import REPO_ROOT, load_systems
from etl.dagspec import raw_asset_name

DAY_START, DAY_END = "2026-11-01T00:00:00+08:00", "2026-11-02T00:00:00+08:00"


@pytest.fixture(scope="module")
def described(tmp_path_factory) -> dict:
    return call(["describe"], tmp_path_factory.mktemp("dags"))


def ingest_only(out: dict) -> dict:
    """The ingest DAGs of a description (dags/ also holds other DAG files, e.g. uplinks)."""
    dags = {k: v for k, v in out["dags"].items() if "ingest" in v["tags"]}
    return {**out, "dags": dags}


@pytest.fixture(scope="module")
def parsed(described) -> dict:
    return ingest_only(described)


def test_dags_folder_imports_cleanly(described):
    assert described["import_errors"] == {}


def test_one_dag_per_system_with_a_group_per_dataset(parsed):
    systems = load_systems()
    assert set(parsed["dags"]) == {s.dag_id for s in systems}
    for system in systems:
        dag = parsed["dags"][system.dag_id]
        assert set(dag["groups"]) == {d.dataset for d in system.datasets}
        assert dag["loose_tasks"] == []  # every task belongs to a dataset's group
        assert dag["tags"] == sorted([system.department.code, "ingest"])
        assert system.description in dag["doc_md"]
        for name, group in dag["groups"].items():
            assert group["tasks"] == ["commit", "extract"]
            assert group["commit_upstream"] == [f"{name}.extract"]  # extract >> commit
            assert group["retries"] == [system.retries] and group["backoff"] == [2.0]
            assert group["owner"] == [system.owner]


def test_each_commit_emits_its_dataset_asset(parsed, tmp_path_factory):
    names = []
    for dag_id, dag in parsed["dags"].items():
        system = dag_id.removeprefix("ingest_")
        for name, group in dag["groups"].items():
            assert group["extract_outlets"] == 0
            [asset] = group["outlets"]
            assert asset["name"] == f"countylake.raw.{system}.{name}"
            assert asset["uri"].startswith("file:///")
            assert asset["uri"].endswith(f"/lake/raw/{system}/{name}")
            names.append(asset["name"])
    assert len(names) == len(set(names)) == sum(len(s.datasets) for s in load_systems())


def test_schedule_is_daily_half_open_windows_in_county_time(parsed):
    for dag in parsed["dags"].values():
        assert dag["timezone"] == "Asia/Shanghai"
        assert dag["timetable"] == dag["core_timetable"] == "CronDataIntervalTimetable"
        assert dag["catchup"] is False
        assert dag["start_date"] == "2026-10-31T16:00:00+00:00"  # 2026-11-01 00:00 Shanghai
        assert dag["windows"] == [[DAY_START, DAY_END]]


def test_parsing_is_fast_and_imports_nothing_heavy(described):
    assert described["heavy_imported_by_parse"] == []
    assert described["parse_seconds"] < 5, described["parse_seconds"]


def _break(schemas, relative: str, old: str, new: str) -> None:
    path = schemas / "systems" / relative
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("relative", "old", "new", "field"),
    [
        ("hotline/system.yaml", "kind: csv", "kind: fax", "kind"),
        ("health/referral.yaml", "primary_key:", "primary_key: [\n  oops", "line"),
    ],
    ids=["bad-field", "bad-yaml"],
)
def test_broken_contract_costs_only_its_own_dag(tmp_path, schemas, relative, old, new, field):
    _break(schemas, relative, old, new)
    broken = relative.split("/")[0]
    out = ingest_only(call(["describe"], tmp_path / "data", schemas=schemas))

    expected = {s.dag_id for s in load_systems(REPO_ROOT / "schemas")} - {f"ingest_{broken}"}
    assert set(out["dags"]) == expected
    [(file, message)] = out["import_errors"].items()
    assert file.endswith("dags/contract_errors.py")
    assert str(schemas / "systems" / relative) in message
    assert f": {field}" in message
    # the warehouse still builds on the departments whose contracts load
    inputs = out["other_dags"]["warehouse"]["schedule_assets"]
    assert inputs and not any(a.startswith(f"countylake.raw.{broken}.") for a in inputs)


def test_dataset_with_its_own_schedule_gets_its_own_dag(tmp_path, schemas):
    path = schemas / "systems" / "health" / "referral.yaml"
    path.write_text(path.read_text(encoding="utf-8") + '\nschedule: "0 * * * *"\n', "utf-8")
    out = call(["describe"], tmp_path / "data", schemas=schemas)

    assert out["import_errors"] == {}
    assert set(out["dags"]["ingest_health"]["groups"]) == {"consultation"}
    hourly = out["dags"]["ingest_health__referral"]
    assert set(hourly["groups"]) == {"referral"}
    assert len(hourly["windows"]) == 24
    assert hourly["windows"][0][0] == DAY_START and hourly["windows"][-1][1] == DAY_END


# --------------------------------------------------------------------------- the warehouse DAG

MARTS = sorted(p.stem for p in (REPO_ROOT / "warehouse" / "models" / "marts").rglob("mart_*.sql"))


def test_warehouse_dag_is_scheduled_on_every_dataset_asset(parsed):
    dag = parsed["other_dags"]["warehouse"]
    expected = sorted(
        raw_asset_name(s.system, d.dataset) for s in load_systems() for d in s.datasets
    )
    ingest_outlets = sorted(
        a["name"] for g in parsed["dags"].values() for grp in g["groups"].values()
        for a in grp["outlets"]
    )  # fmt: skip
    assert dag["schedule_assets"] == expected == ingest_outlets
    assert dag["schedule_all"] == "AssetAll"  # once every department has landed
    assert dag["timetable"] == "AssetOrTimeSchedule" and dag["fallback_cron"] == "0 6 * * *"
    assert dag["timezone"] == "Asia/Shanghai"
    assert dag["catchup"] is False and dag["max_active_runs"] == 1


def test_warehouse_dag_builds_then_documents_and_emits_one_asset_per_mart(parsed):
    tasks = parsed["other_dags"]["warehouse"]["tasks"]
    assert set(tasks) == {"dbt_build", "dbt_docs", "quality_docs"}
    assert tasks["dbt_docs"]["upstream"] == ["dbt_build"] and tasks["dbt_docs"]["outlets"] == []
    # the Data Docs are rendered whether or not a build ran (a skipped build skips dbt_docs)
    assert tasks["quality_docs"]["upstream"] == [] and tasks["quality_docs"]["outlets"] == []
    outlets = tasks["dbt_build"]["outlets"]
    assert len(MARTS) >= 13
    assert [o["name"] for o in outlets] == [f"countylake.mart.{m}" for m in MARTS]
    for outlet, mart in zip(outlets, MARTS, strict=True):
        assert outlet["group"] == "countylake.mart"
        assert outlet["uri"].endswith(f"/warehouse/county.duckdb?table=marts.{mart}")


def test_the_warehouse_is_audited_weekly_on_every_row(parsed):
    dag = parsed["other_dags"]["warehouse_audit"]
    assert dag["cron"] == "0 3 * * 0" and dag["timezone"] == "Asia/Shanghai"
    assert dag["catchup"] is False and dag["max_active_runs"] == 1
    assert list(dag["tasks"]) == ["test_every_row"]
    # retried when a build holds the lock; a failed test fails at once (AirflowFailException)
    assert dag["tasks"]["test_every_row"]["retries"] == 2


@pytest.mark.airflow
def test_warehouse_dag_runs_through_airflow(built, tmp_path):
    """The built county's lake, ledger and warehouse, copied: the DAG publishes the ledger's
    quality results, builds (nothing new landed, but the quality views must read the files
    where they now lie), swaps in, writes the dbt docs and the Data Docs, and emits every
    mart's asset with its row count (the scorecard's view too). A night with nothing new
    skips the build and its docs, and renders no Data Docs page again."""
    home = tmp_path / "data"
    home.mkdir()
    for folder in ("lake", "secrets", "state"):  # secrets: the same pseudonym key
        shutil.copytree(built.home / folder, home / folder)
    (home / "lake" / "quality").rename(home / "quality.before")  # the build publishes them
    (home / "warehouse").mkdir()
    shutil.copy2(built.current, home / "warehouse" / built.current.name)

    out = call(["warehouse", day(2).isoformat()], home)

    assert out["state"] == "success", out["traceback"]
    tasks = {"dbt_build": "success", "dbt_docs": "success", "quality_docs": "success"}
    assert out["tasks"] == tasks
    assert out["build"]["mode"] == "incremental"
    assert out["build"]["plan"] == "0 dataset(s) with new windows, changed quality files"
    assert Path(out["docs"]) == home / "warehouse" / "docs" / "static_index.html"
    assert Path(out["docs"]).exists()
    assert Path(out["data_docs"]) == home / "quality" / "docs" / "index.html"
    data_docs = home / "quality" / "docs"
    pages = list((data_docs / "validations").rglob("*.html"))
    listing = Path(out["data_docs"]).read_text(encoding="utf-8")
    assert pages and all(p.relative_to(data_docs).as_posix() in listing for p in pages)
    events = {e["name"]: e["extra"] for e in out["asset_events"]}
    assert sorted(events) == [f"countylake.mart.{m}" for m in MARTS]
    for mart in MARTS:
        assert events[f"countylake.mart.{mart}"]["rows"] == out["build"]["marts"][mart] > 0
    scorecard = home / "lake" / "quality" / "scorecard.parquet"
    with duckdb.connect() as con:
        before, after = (
            con.execute(f"select count(*), sum(rows_read) from '{f}'").fetchone()
            for f in (home / "quality.before" / "scorecard.parquet", scorecard)
        )
    assert after == before

    # the next night brings nothing new: nothing to build or document, no page rendered again
    docs = Path(out["docs"]).stat().st_mtime_ns
    rendered = {page: page.stat().st_mtime_ns for page in [Path(out["data_docs"]), *pages]}
    out = call(["warehouse", day(3).isoformat()], home)
    assert out["state"] == "success", out["traceback"]
    assert out["tasks"] == {**tasks, "dbt_build": "skipped", "dbt_docs": "skipped"}
    assert Path(home / "warehouse" / "docs" / "static_index.html").stat().st_mtime_ns == docs
    assert {page: page.stat().st_mtime_ns for page in rendered} == rendered
    database = home / "warehouse" / built.current.name
    with duckdb.connect(str(database), read_only=True) as con:
        shown = con.execute("select max(date_day) from marts.mart_quality__scorecard").fetchone()
        published = con.execute(f"select max(day) from '{scorecard}'").fetchone()
    assert shown == published and shown[0] is not None


def test_the_connection_check_reads_connections_kept_in_airflow(tmp_path, simulated_days):
    """The connection check DAG asks every source from inside Airflow, where connections kept
    in Airflow's database are seen: the health database's, pointing at a copy, is the one
    read (its path as it was stored, not as Airflow spells it). A hotline folder kept there
    that does not exist fails the sources task, naming the dataset, the connection and why."""
    from conftest import copy_sources

    home = tmp_path / "data"
    home.mkdir()
    copy_sources(simulated_days, 1, home)
    copy = tmp_path / "elsewhere" / "health copy.db"
    copy.parent.mkdir()
    shutil.copy2(home / "sources" / "health.db", copy)
    missing = tmp_path / "no such folder"

    runs = call(["connections", str(copy), str(missing)], home)

    first = runs["health kept in Airflow"]
    assert first["tasks"]["sources"] == "success", first["traceback"]
    health = [r for r in first["values"]["sources"] if r["dataset"].startswith("health.")]
    assert health and all(r["connection"] == "Airflow connection" for r in health)
    assert all(str(copy) in r["source"] and r["error"] is None for r in health)
    others = [r for r in first["values"]["sources"] if not r["dataset"].startswith("health.")]
    assert all(r["connection"] != "Airflow connection" and r["error"] is None for r in others)

    second = runs["hotline kept in Airflow"]
    assert second["tasks"]["sources"] == "failed"
    failed = second["errors"]["sources"]
    assert f"1 of {len(first['values']['sources'])} datasets would not get through" in failed
    assert f"hotline.ticket (Airflow connection): {missing}: export folder does not exist" in failed
    # no reference receivers run here: the exchanges are named as unreachable, nothing is sent
    assert second["tasks"]["exchanges"] == "failed"
    assert "resources would not get through" in second["errors"]["exchanges"]
