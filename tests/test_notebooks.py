"""The analyst notebooks run, top to bottom in a real kernel, against the warehouse of the small
simulated county; what they print equals the marts, and every chart is drawn with Chinese glyphs."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from etl.contracts import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
FIGURE = re.compile(r"^(\w+) = (.+)$", re.M)


def test_there_are_at_least_four_notebooks_stored_without_outputs():
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        prose = "".join(c.source for c in book.cells if c.cell_type == "markdown")
        assert re.search(r"[\u4e00-\u9fff]", prose) and re.search(r"[A-Za-z]{4} [a-z]+", prose)
        assert "connect()" in "".join(c.source for c in book.cells)


@pytest.fixture(scope="module")
def executed(built, tmp_path_factory) -> dict[str, dict]:
    """Every notebook executed once: its figures (``name = value`` lines) and outputs."""
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COUNTYLAKE_HOME", str(built.home))  # the kernel inherits the environment
        for path in NOTEBOOKS:
            book = nbformat.read(path, as_version=4)
            NotebookClient(
                book,
                timeout=300,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
            nbformat.write(book, tmp_path_factory.mktemp("executed") / path.name)
            outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
            stdout = "".join(
                o.get("text", "")
                for o in outputs
                if o.output_type == "stream" and o.name == "stdout"
            )
            runs[path.stem] = {
                "figures": dict(FIGURE.findall(stdout)),
                "images": sum("image/png" in o.get("data", {}) for o in outputs),
                "stderr": "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr"),
                "errors": [o for o in outputs if o.output_type == "error"],
            }
    return runs


def test_every_notebook_runs_and_draws_charts_without_missing_glyphs(executed):
    assert set(executed) == {p.stem for p in NOTEBOOKS}
    for name, run in executed.items():
        assert run["errors"] == [], name
        assert run["images"] >= 2, name
        assert "Glyph" not in run["stderr"] and "missing from font" not in run["stderr"], name


def scalar(built, sql: str):
    with built.connect() as con:
        return con.execute(sql).fetchone()[0]


def test_population_notebook_equals_the_marts(built, executed):
    figures = executed["01_population_by_town"]["figures"]
    assert int(figures["residents_total"]) == scalar(
        built, "select sum(residents) from marts.mart_population__by_town"
    )
    assert int(figures["pyramid_total"]) == scalar(
        built,
        "select sum(residents) from marts.mart_population__by_town_sex_age "
        "where age_band_start is not null",
    )
    assert int(figures["towns"]) == 9


def test_entities_notebook_equals_the_marts(built, executed):
    figures = executed["02_entities_births_closures"]["figures"]
    events = "select coalesce(sum(events), 0) from marts.mart_entities__changes_daily"
    assert int(figures["births_total"]) == scalar(built, f"{events} where change_type = '设立'")
    assert int(figures["closures_total"]) == scalar(built, f"{events} where change_type = '注销'")
    assert int(figures["register_total"]) == scalar(
        built, "select sum(entities) from marts.mart_entities__by_town_industry"
    )


def test_health_and_hotline_notebook_equals_the_marts(built, executed):
    figures = executed["03_health_hotline_by_town"]["figures"]
    # per town: facts whose place is unknown stay on the county and are not in any town's row
    assert int(figures["consultations_total"]) == scalar(
        built,
        "select sum(consultations) from marts.mart_health__consultations_daily c "
        "join marts.mart_population__by_town using (division_code)",
    )
    assert int(figures["tickets_total"]) == scalar(
        built,
        "select sum(tickets) from marts.mart_governance__hotline_daily "
        "join marts.mart_population__by_town using (division_code)",
    )


def test_quality_notebook_equals_the_marts(built, executed):
    figures = executed["04_data_quality_trends"]["figures"]
    assert int(figures["departments"]) == scalar(
        built, "select count(distinct dept_code) from marts.mart_quality__scorecard"
    )
    assert int(figures["days"]) == scalar(
        built, "select count(distinct date_day) from marts.mart_quality__scorecard"
    )
    assert int(figures["failing_rules_latest"]) == scalar(
        built,
        "select coalesce(sum(len(failing_rules)), 0) from marts.mart_quality__scorecard "
        "where date_day = (select max(date_day) from marts.mart_quality__scorecard)",
    )
    worst = scalar(
        built,
        "select dept_name from marts.mart_quality__scorecard "
        "where date_day = (select max(date_day) from marts.mart_quality__scorecard) "
        "order by overall_score, dept_code limit 1",
    )
    assert figures["worst_department"].startswith(worst)


def test_notebooks_open_the_warehouse_read_only(built, tmp_path, monkeypatch):
    import duckdb

    from etl.report.notebook import connect

    monkeypatch.setenv("COUNTYLAKE_HOME", str(built.home))
    con = connect()
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("create table marts.scratch as select 1")
    con.close()
    monkeypatch.setenv("COUNTYLAKE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make demo"):
        connect()


def test_the_readme_tells_an_analyst_how_to_open_them():
    readme = (REPO_ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    assert "COUNTYLAKE_HOME" in readme and "jupyter" in readme.lower()
    for path in NOTEBOOKS:
        assert path.name in readme
