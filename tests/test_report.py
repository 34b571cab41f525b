"""The weekly brief and the pages, over the warehouse built from the small simulated county:
its numbers equal the marts, Chinese renders in the charts and the PDF, the scorecard drills
down to the failing rules, and a real browser lays the pages out."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import warnings
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest

from etl.contracts import REPO_ROOT, load_profile, load_systems
from etl.errors import CountylakeError
from etl.report import charts, data, fonts, write_reports
from etl.report.period import Week
from etl.report.shots import browser, screenshot
from etl.settings import paths

WEEK = Week.parse("2026-W45")  # the simulated county's day 2 (Monday 2 Nov); W44 holds day 1
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


class Text(HTMLParser):
    """The visible text of a page (no <style>, <script>)."""

    def __init__(self, skip: tuple[str, ...]) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip, self._skipped = 0, skip

    def handle_starttag(self, tag, attrs):
        self._skip += tag in self._skipped

    def handle_endtag(self, tag):
        self._skip -= tag in self._skipped

    def handle_data(self, text):
        if not self._skip:
            self.parts.append(text)


def visible_text(path: Path, skip: tuple[str, ...] = ("style", "script", "title")) -> str:
    parser = Text(skip)
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join(" ".join(parser.parts).split())


@pytest.fixture(scope="module")
def reports(built) -> dict[str, Path]:
    return write_reports(built.home, week=WEEK.label)


@pytest.fixture(scope="module")
def brief(reports) -> dict:
    return json.loads(reports["brief_json"].read_text(encoding="utf-8"))


def one(con, sql: str, params=()) -> tuple:
    return con.execute(sql, list(params)).fetchone()


# --------------------------------------------------------------------------- weeks


def test_iso_weeks():
    w = Week.parse("2026-W47")
    assert (w.start, w.end, w.previous.label) == (
        date(2026, 11, 16),
        date(2026, 11, 22),
        "2026-W46",
    )
    assert w.title_zh == "2026年第47周（11月16日—11月22日）"
    assert Week.before(date(2026, 11, 23)) == w  # the Monday run reports the week just ended
    assert Week.parse("2027-W01").previous == Week.parse("2026-W53")
    for bad in ("2026-47", "2026-W54", "W47"):
        with pytest.raises(CountylakeError, match=r"ISO week|weeks 1 to"):
            Week.parse(bad)


# --------------------------------------------------------------------------- the numbers


def test_every_section_is_written(reports, brief):
    for name in ("brief", "brief_pdf", "brief_json", "scorecard", "catalogue", "index"):
        assert reports[name].is_file() and reports[name].stat().st_size > 500, name
    assert (
        reports["brief"].parent == paths(reports["brief"].parents[3]).reports / "brief" / "2026-W45"
    )
    assert brief["week"] == "2026-W45" and brief["previous_week"] == "2026-W44"
    assert brief["days"] == ["2026-11-02"] and "2026-11-01" in brief["previous_days"]
    assert brief["towns"] and brief["scorecard"] and brief["topics"]
    for chart in charts.CHARTS:
        assert (reports["brief"].parent / "charts" / f"{chart}.svg").stat().st_size > 5000


def test_headline_numbers_equal_the_marts(built, brief):
    got = {i["key"]: i for i in brief["indicators"]}
    with built.connect() as con:
        for this, week in ((True, WEEK), (False, WEEK.previous)):
            field = "value" if this else "previous"
            span = [week.start, week.end]
            tickets, resolved, satisfied, rated = one(
                con,
                "select sum(tickets), sum(resolved), sum(satisfied + fairly_satisfied), "
                "sum(satisfied + fairly_satisfied + dissatisfied) "
                "from marts.mart_governance__hotline_daily where date_day between ? and ?",
                span,
            )
            assert got["hotline_tickets"][field] == (tickets or 0)
            assert got["hotline_resolved_share"][field] == pytest.approx(
                round(resolved / tickets, 4) if tickets else None
            )
            assert got["hotline_satisfaction"][field] == pytest.approx(
                round(satisfied / rated, 4) if rated else None
            )
            consultations, _ = one(
                con,
                "select sum(consultations), sum(completed) from "
                "marts.mart_health__consultations_daily where date_day between ? and ?",
                span,
            )
            assert got["consultations"][field] == (consultations or 0)
            for key, sql in {
                "referrals": "select sum(referrals) from marts.mart_health__referrals",
                "alarms": "select sum(alarms) from marts.mart_safety__alarms_daily",
                "alarms_severe": "select sum(alarms) from marts.mart_safety__alarms_daily "
                "where alarm_level = 1 and",
                "violations": "select sum(violations) from marts.mart_traffic__violations_daily",
                "violation_fines": "select sum(fines_total) from "
                "marts.mart_traffic__violations_daily",
                "entities_established": "select sum(events) from "
                "marts.mart_entities__changes_daily where change_type = '设立' and",
                "entities_cancelled": "select sum(events) from "
                "marts.mart_entities__changes_daily where change_type = '注销' and",
            }.items():
                glue = "" if sql.endswith(" and") else " where"
                (expected,) = one(con, f"{sql}{glue} date_day between ? and ?", span)
                assert got[key][field] == (expected or 0), (key, field)
        (residents,) = one(con, "select sum(residents) from marts.mart_population__by_town")
    assert got["residents"]["value"] == residents
    assert (
        got["hotline_tickets"]["change"]
        == got["hotline_tickets"]["value"] - (got["hotline_tickets"]["previous"])
    )


def test_town_rankings_equal_the_marts(built, brief):
    with built.connect() as con:
        pop = dict(
            con.execute(
                "select town_code, residents from marts.mart_population__by_town"
            ).fetchall()
        )
        tickets = dict(
            con.execute(
                "select town_code, sum(tickets) from marts.mart_governance__hotline_daily "
                "where date_day between ? and ? and town_code is not null group by 1",
                [WEEK.start, WEEK.end],
            ).fetchall()
        )
        violations = dict(
            con.execute(
                "select town_code, sum(violations) from marts.mart_traffic__violations_daily "
                "where date_day between ? and ? and town_code is not null group by 1",
                [WEEK.start, WEEK.end],
            ).fetchall()
        )
    towns = brief["towns"]
    assert {t["town_code"] for t in towns} == set(pop) == {t.code for t in load_profile().towns}
    for t in towns:
        assert t["residents"] == pop[t["town_code"]]
        assert t["hotline_tickets"] == tickets.get(t["town_code"], 0)
        assert t["violations"] == violations.get(t["town_code"], 0)
    per_10k = [t["hotline_per_10k"] for t in towns]
    assert per_10k == sorted(per_10k, reverse=True)
    assert [t["rank"] for t in towns] == list(range(1, len(towns) + 1))


def test_hot_topics_alarms_and_scorecard_equal_the_marts(built, brief):
    with built.connect() as con:
        topics = con.execute(
            "select category, sum(tickets) from marts.mart_governance__hotline_daily "
            "where date_day between ? and ? group by 1 order by 2 desc, 1",
            [WEEK.start, WEEK.end],
        ).fetchall()
        alarms = dict(
            con.execute(
                "select alarm_type || '/' || alarm_level, sum(alarms) "
                "from marts.mart_safety__alarms_daily where date_day between ? and ? group by 1",
                [WEEK.start, WEEK.end],
            ).fetchall()
        )
        scores = {
            code: (timeliness, validity)
            for code, timeliness, validity in con.execute(
                "select dept_code, avg(timeliness), avg(validity) "
                "from marts.mart_quality__scorecard where date_day between ? and ? group by 1",
                [WEEK.start, WEEK.end],
            ).fetchall()
        }
    counts = dict(topics)
    assert all(counts[t["category"]] == t["tickets"] for t in brief["topics"])
    assert [t["tickets"] for t in brief["topics"]] == [n for _, n in topics[:8]]
    assert {f"{a['alarm_type']}/{a['level']}": a["alarms"] for a in brief["alarms"]} == alarms
    assert {s["dept_code"] for s in brief["scorecard"]} == set(scores)
    for s in brief["scorecard"]:
        assert s["timeliness"] == pytest.approx(scores[s["dept_code"]][0], abs=1e-4)
        assert s["validity"] == pytest.approx(scores[s["dept_code"]][1], abs=1e-4)
        worst = min(s[d] for d in data.DIMENSIONS)
        assert s["rag"] == data.rag(worst)


def test_the_page_shows_the_numbers(reports, brief):
    text = visible_text(reports["brief"])
    assert "高青县每周数据简报" in text and "2026年第45周（11月2日—11月8日）" in text
    for section in ("核心指标", "每日走势", "乡镇（街道）排名", "热点诉求", "危化品监测报警",
                    "部门数据质量", "上行交换"):  # fmt: skip
        assert section in text
    tickets = next(i for i in brief["indicators"] if i["key"] == "hotline_tickets")
    assert f"12345 热线诉求 {tickets['value']:,} 件" in text
    for town in brief["towns"]:
        assert f"{town['rank']} {town['town_name']} {town['residents']:,}" in text
    for dept in brief["scorecard"]:
        assert dept["dept_name"] in text
    assert brief["uplink"] is None or all(u["code"] in text for u in brief["uplink"])


# --------------------------------------------------------------------------- Chinese renders


def test_charts_draw_chinese_with_the_cjk_font_and_no_missing_glyphs(built):
    from matplotlib import font_manager, rcParams

    numbers = data.collect(paths(built.home), WEEK)
    family = fonts.use_in_matplotlib()
    drawn = font_manager.findfont(font_manager.FontProperties(family=rcParams["font.family"]))
    assert Path(drawn).resolve() == fonts.font_path().resolve(), family
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "Glyph ... missing from font" warning fails here
        svgs = charts.render_all(numbers)
    labels = "".join(
        [*charts.SERIES_ZH.values(), charts.WEEKDAYS_ZH, "上周本周每万户籍人口诉求件数"]
        + [t.town_name for t in numbers.towns]
        + [t.category for t in numbers.topics]
    )
    assert CJK.search(labels) and fonts.missing_glyphs(labels) == []
    assert all(s.count("<path") > 50 for s in svgs.values())  # text drawn as glyph outlines


def test_a_font_without_the_glyphs_is_refused_not_drawn_as_boxes(built):
    from matplotlib import rc_context

    numbers = data.collect(paths(built.home), WEEK)
    fonts.use_in_matplotlib()
    with (
        rc_context({"font.sans-serif": ["DejaVu Sans"]}),
        pytest.raises(fonts.FontError, match="missing"),
    ):
        charts.towns(numbers)


def _cmap(stream: bytes) -> dict[int, str]:
    """cid -> text of a ToUnicode CMap (bfchar and bfrange entries)."""
    text, out = stream.decode("latin-1"), {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", text, re.S):
        for cid, uni in re.findall(r"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", block):
            out[int(cid, 16)] = bytes.fromhex(uni).decode("utf-16-be")
    for block in re.findall(r"beginbfrange(.*?)endbfrange", text, re.S):
        for lo, hi, uni in re.findall(
            r"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", block
        ):
            for n, cid in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                out[cid] = chr(int(uni, 16) + n)
    return out


def test_pdf_embeds_the_cjk_font_with_every_glyph_the_brief_uses(reports):
    from fontTools.pens.boundsPen import BoundsPen
    from fontTools.ttLib import TTFont
    from pypdf import PdfReader

    printed = visible_text(reports["brief"], skip=("style", "script", "title", "nav"))
    used = set(CJK.findall(printed))  # the links bar (nav) is not printed
    assert len(used) > 150  # a Chinese document, not a few labels
    assert fonts.missing_glyphs("".join(used)) == []

    pdf = PdfReader(reports["brief_pdf"])
    assert len(pdf.pages) >= 2
    drawable: set[str] = set()
    for page in pdf.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            assert "CountyCJK" in font["/BaseFont"], font["/BaseFont"]  # no fallback font
            [descendant] = [d.get_object() for d in font["/DescendantFonts"]]
            descriptor = descendant["/FontDescriptor"].get_object()
            program = descriptor.get("/FontFile3") or descriptor.get("/FontFile2")
            assert program is not None, f"{font['/BaseFont']} is not embedded"
            embedded = TTFont(io.BytesIO(program.get_object().get_data()))
            order, glyphs = embedded.getGlyphOrder(), embedded.getGlyphSet()
            for cid, char in _cmap(font["/ToUnicode"].get_object().get_data()).items():
                if not CJK.match(char) or not 0 < cid < len(order):  # Identity: cid = glyph id
                    continue
                pen = BoundsPen(glyphs)
                glyphs[order[cid]].draw(pen)
                if pen.bounds is not None:  # an outline, not an empty box
                    drawable.add(char)
    assert used <= drawable, sorted(used - drawable)[:20]
    extracted = "".join(page.extract_text() for page in pdf.pages)
    assert "高青县每周数据简报" in extracted.replace(" ", "")


# --------------------------------------------------------------------------- pages


def test_scorecard_drills_down_to_the_failing_rules(built, reports):
    index = visible_text(reports["scorecard"])
    html = reports["scorecard"].read_text(encoding="utf-8")
    with built.connect() as con:
        (day,) = one(con, "select max(date_day) from marts.mart_quality__scorecard")
        rows = con.execute(
            "select dept_code, dept_name, failing_rules from marts.mart_quality__scorecard "
            "where date_day = ?",
            [day],
        ).fetchall()
    assert str(day) in index
    failing_somewhere = 0
    for code, name, failing in rows:
        assert name in index and f'href="{code}.html"' in html
        page = reports["scorecard"].parent / f"{code}.html"
        text = visible_text(page)
        assert name in text
        # the mart lists "system.dataset rule_id failed" per dataset and window: the page shows
        # each rule once per dataset with the failed rows added up
        expected: dict[tuple[str, str], int] = {}
        for item in failing or []:
            dataset, rule, count = item.rsplit(" ", 2)
            expected[(dataset, rule)] = expected.get((dataset, rule), 0) + int(count)
        for (dataset, rule), count in expected.items():
            assert f"{dataset} {rule}" in text and f"{count:,}" in text, (code, dataset, rule)
        if not expected:
            assert "当日全部规则通过" in text
        failing_somewhere += bool(expected)
    assert failing_somewhere  # the simulation's dirt fails some rule somewhere


def test_catalogue_lists_the_shared_resources_and_every_dataset(reports):
    text = visible_text(reports["catalogue"])
    for system in load_systems():
        for dataset in system.datasets:
            assert dataset.title in text, dataset.dataset
    try:
        from etl.uplink.catalogue import entries
    except ImportError:
        pytest.skip("no uplink catalogue in this tree")
    for entry in entries():
        assert entry["code"] in text and entry["name"] in text


def test_index_links_the_brief_scorecard_and_catalogue(reports):
    html = reports["index"].read_text(encoding="utf-8")
    for href in ("brief/2026-W45/brief.html", "brief/2026-W45/brief.pdf", "scorecard/index.html",
                 "catalogue.html"):  # fmt: skip
        assert f'href="{href}"' in html
        assert (reports["index"].parent / href).is_file()


@pytest.mark.skipif(browser() is None, reason="no chromium on PATH: `make test` installs it")
@pytest.mark.parametrize("page", ["brief", "scorecard", "catalogue", "department"])
def test_screenshots_are_laid_out(reports, built, tmp_path, page):
    from PIL import Image

    path = reports.get(page) or next((reports["scorecard"].parent).glob("[A-Z]*.html"))
    png = screenshot(path, tmp_path / f"{page}.png", width=1200, height=1400)
    image = Image.open(png).convert("RGB")
    assert image.size == (1200, 1400)
    small = image.resize((120, 140))
    pixels = list(small.get_flattened_data())
    ink = [i for i, p in enumerate(pixels) if sum(p) < 600]  # not white / near-white
    assert len(set(pixels)) > 20  # text, rules, colours: not a blank or one-colour page
    rows = {i // 120 for i in ink}
    cols = {i % 120 for i in ink}
    assert min(rows) < 15 and len(rows) > 15  # a header at the top, lines of content below
    assert max(cols) - min(cols) > 60  # laid out across the page, not a narrow strip
    reds = [p for p in pixels if p[0] > 150 and p[1] < 80 and p[2] < 80]
    assert reds  # the red title and header rule of the county style


# --------------------------------------------------------------------------- entry points


def test_cli_writes_the_newest_week_by_default(built, capsys, monkeypatch):
    from etl.cli import main

    monkeypatch.setenv("COUNTYLAKE_HOME", str(built.home))
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "2026-W45/brief.pdf" in out and "scorecard/index.html" in out and "catalogue.html" in out
    assert main(["report", "--week", "2026-W99"]) == 1
    assert "2026 has weeks 1 to 53" in capsys.readouterr().err


def test_report_dag_runs_mondays_0730_and_parses_light(tmp_path):
    probe = """
import json, runpy, sys
dag = runpy.run_path(sys.argv[1])["DAG_OBJECT"]
heavy = ("duckdb", "pandas", "pyarrow", "matplotlib", "weasyprint", "etl.report.data")
print(json.dumps({
    "dag_id": dag.dag_id, "tags": sorted(dag.tags), "tasks": [t.task_id for t in dag.tasks],
    "timetable": type(dag.timetable).__name__, "cron": dag.timetable.expression,
    "timezone": str(dag.timezone.name), "catchup": dag.catchup,
    "heavy": [m for m in heavy if m in sys.modules],
}))
"""
    env = {"AIRFLOW_HOME": str(tmp_path / "airflow"), "COUNTYLAKE_HOME": str(tmp_path / "data"),
           "PATH": "/usr/bin:/bin", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", probe, str(REPO_ROOT / "dags" / "report.py")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    dag = json.loads(done.stdout.strip().splitlines()[-1])
    assert dag["dag_id"] == "report_weekly" and dag["tasks"] == ["write_reports"]
    assert dag["timetable"] == "CronTriggerTimetable" and dag["cron"] == "30 7 * * 1"
    assert dag["timezone"] == "Asia/Shanghai" and dag["catchup"] is False
    assert dag["heavy"] == []


@pytest.mark.airflow
def test_the_monday_run_of_the_dag_writes_last_weeks_brief(built, reports):
    """Airflow runs ``report_weekly`` for Monday 2026-11-09 07:30: it writes 2026-W45."""
    script = """
import sys
import pendulum
from etl.orchestrate import prepare_airflow
prepare_airflow()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
run = bag.dags["report_weekly"].test(
    logical_date=pendulum.datetime(2026, 11, 9, 7, 30, tz="Asia/Shanghai"))
print("STATE", run.state)
"""
    pdf = reports["brief_pdf"]
    pdf.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COUNTYLAKE_"))}
    env.update(COUNTYLAKE_HOME=str(built.home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO_ROOT / "dags")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and "STATE success" in done.stdout, done.stderr[-3000:]
    assert pdf.is_file() and pdf.stat().st_size > 10_000
