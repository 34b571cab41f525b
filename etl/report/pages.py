"""Static pages under ``<data root>/reports/``: the department scorecard with a drill-down page
per department (the rules that failed, with counts and reasons), the resource catalogue, and an
index linking them and every brief.

The scorecard comes from ``marts.mart_quality__scorecard``; the drill-down adds, from
``staging.stg_quality__rule_results``, how many rows each failing rule checked and the reason
codes, for the same department and day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.report import charts, data
from etl.report.render import write_page, write_text
from etl.settings import Paths

HISTORY_DAYS = 14


@dataclass
class FailingRule:
    dataset: str  # system.dataset
    rule_id: str
    severity: str
    failed: int
    checked: int
    reasons: str

    @property
    def share(self) -> float | None:
        return self.failed / self.checked if self.checked else None


def _rag_row(row: dict) -> dict:
    row = {k: data._number(v) for k, v in row.items()}
    row["rag_of"] = {d: data.rag(row[d]) for d in data.DIMENSIONS}
    row["rag"] = data.worst(row["rag_of"].values())
    return row


def scorecard_rows(con, day: date) -> list[dict]:
    """The scorecard of one day, one row per department, with the colours."""
    found = data.rows(
        con,
        """
        select dept_code, dept_name, date_day, datasets, rows_read, rows_quarantined,
               timeliness, completeness, validity, uniqueness, overall_score,
               failing_rule_count, failing_rules
        from marts.mart_quality__scorecard where date_day = ? order by dept_code""",
        [day],
    )
    return [_rag_row(r) for r in found]


def failing_rules(con, dept_code: str, day: date, tz: str) -> list[FailingRule]:
    """The rules that failed in the department's windows of ``day``, worst first."""
    found = data.rows(
        con,
        """
        select system || '.' || dataset as dataset, rule_id, severity,
               sum(failed) as failed, sum(checked) as checked,
               list(reasons) as reasons
        from staging.stg_quality__rule_results
        where dept_code = ? and failed > 0
          and cast(timezone(?, window_start) as date) = ?
        group by all
        order by severity, failed desc, dataset, rule_id""",
        [dept_code, tz, day],
    )
    out = []
    for r in found:
        counts: dict[str, int] = {}
        for text in r["reasons"]:
            for reason, n in (json.loads(text) if text else {}).items():
                counts[reason] = counts.get(reason, 0) + n
        out.append(
            FailingRule(
                r["dataset"],
                r["rule_id"],
                r["severity"],
                data._number(r["failed"]),
                data._number(r["checked"]),
                "，".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])),
            )
        )
    return out


def history(con, dept_code: str, last: date) -> list[dict]:
    found = data.rows(
        con,
        """
        select date_day, timeliness, completeness, validity, uniqueness, overall_score,
               failing_rule_count, rows_read, rows_quarantined
        from marts.mart_quality__scorecard
        where dept_code = ? and date_day between ? and ? order by date_day""",
        [dept_code, last - timedelta(days=HISTORY_DAYS - 1), last],
    )
    return [_rag_row(r) for r in found]


def write_scorecard(where: Paths, context: dict) -> Path:
    """``scorecard/index.html`` and one ``scorecard/<dept_code>.html`` per department."""
    from etl.contracts import load_profile

    tz = load_profile().timezone
    with data.connect(where) as con:
        day = con.execute("select max(date_day) from marts.mart_quality__scorecard").fetchone()[0]
        departments = scorecard_rows(con, day) if day else []
        for dept in departments:
            past = history(con, dept["dept_code"], day)
            chart = charts.quality_trend(
                [h["date_day"] for h in past],
                {d: [h[d] for h in past] for d in data.DIMENSIONS},
                f"{dept['dept_name']} 近 {HISTORY_DAYS} 天数据质量",
            )
            write_text(where.reports / "scorecard" / f"{dept['dept_code']}.svg", chart)
            write_page(
                where.reports,
                f"scorecard/{dept['dept_code']}.html",
                "department.html",
                dept=dept,
                day=day,
                rules=failing_rules(con, dept["dept_code"], day, tz),
                history=past,
                **context,
            )
    return write_page(
        where.reports,
        "scorecard/index.html",
        "scorecard.html",
        day=day,
        departments=departments,
        **context,
    )


def catalogue_entries() -> tuple[list[dict], str]:
    """The exchanges' resource catalogue (``etl.uplink.catalogue``), or why it is empty."""
    try:
        from etl.uplink.catalogue import entries

        return entries(), ""
    except ImportError:
        return [], "尚未配置上行交换资源目录"
    except Exception as exc:  # the page still lists the department datasets
        return [], f"资源目录暂不可读：{str(exc)[:120]}"


def write_catalogue(where: Paths, context: dict) -> Path:
    """``catalogue.html``: the shared resources (from the exchange contracts) and every
    department dataset the platform ingests (from the department contracts)."""
    from etl.contracts import load_systems

    entries, note = catalogue_entries()
    files = {
        kind: where.home / "catalogue" / f"catalogue.{kind}" for kind in ("html", "json", "csv")
    }
    links = {k: "../catalogue/" + p.name for k, p in files.items() if p.exists()}
    systems = load_systems()
    return write_page(
        where.reports,
        "catalogue.html",
        "catalogue.html",
        entries=entries,
        note=note,
        links=links,
        systems=systems,
        datasets=sum(len(s.datasets) for s in systems),
        **context,
    )


def briefs(where: Paths) -> list[str]:
    """The weeks whose brief is written, newest first."""
    folder = where.reports / "brief"
    if not folder.exists():
        return []
    return sorted((p.parent.name for p in folder.glob("*/brief.html")), reverse=True)


def write_pages(where: Paths, brief: Path | None = None) -> dict[str, Path]:
    """The scorecard, catalogue and index pages; returns their paths by name."""
    from etl.contracts import load_profile

    profile = load_profile()
    context = {
        "county": profile.name,
        "generated_at": datetime.now(ZoneInfo(profile.timezone)).isoformat(timespec="seconds"),
        "green": data.GREEN,
        "amber": data.AMBER,
        "dimensions": data.DIMENSIONS,
        "rag_zh": data.RAG_ZH,
    }
    scorecard = write_scorecard(where, context)
    catalogue = write_catalogue(where, context)
    index = write_page(
        where.reports,
        "index.html",
        "index.html",
        weeks=briefs(where),
        latest=brief.parent.name if brief else None,
        **context,
    )
    return {"scorecard": scorecard, "catalogue": catalogue, "index": index}
