"""What the weekly brief says, read from the warehouse marts (read-only DuckDB).

Every number of the brief is computed here, from ``marts.*`` only, and kept in a ``BriefData``
that is rendered to HTML and PDF and written beside them as ``brief.json``: the tests compare it
with their own queries of the marts. Sums are exact; a time "中位数" over a week is the median of
the daily medians of the mart's groups weighted by their counts (the marts keep daily medians,
not the rows), and the brief says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.errors import CountylakeError
from etl.report.period import Week
from etl.settings import Paths

# A quality dimension is green from GREEN up, amber from AMBER up, red below; a department
# takes the colour of its worst dimension.
GREEN, AMBER = 0.995, 0.95
RAG_ZH = {"green": "绿", "amber": "黄", "red": "红", "none": "无数据"}
DIMENSIONS = {
    "timeliness": "及时性",
    "completeness": "完整性",
    "validity": "有效性",
    "uniqueness": "唯一性",
}
ESTABLISHED, CANCELLED = "设立", "注销"
SEVERE_ALARM_LEVEL = 1  # 高高报


class ReportError(CountylakeError):
    """The warehouse cannot give what a report needs."""


@contextmanager
def connect(where: Paths) -> Iterator:
    """The warehouse, read-only (readers never block a build, which swaps the file in)."""
    import duckdb

    path = where.warehouse / "county.duckdb"
    if not path.exists():
        raise ReportError(str(path), "no warehouse yet: ingest and build it first (`make demo`)")
    con = duckdb.connect(str(path), read_only=True)
    try:
        yield con
    except duckdb.CatalogException as exc:  # an older warehouse, built before the marts
        raise ReportError(str(path), f"{str(exc).splitlines()[0]}; rebuild the warehouse") from exc
    finally:
        con.close()


def rows(con, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _number(value):
    """DuckDB decimals as plain numbers (JSON, arithmetic); anything else as it is."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _share(part, whole) -> float | None:
    return round(part / whole, 4) if whole else None


# --------------------------------------------------------------------------- model


@dataclass
class Indicator:
    key: str
    name: str  # 中文
    unit: str
    value: float | int | None
    previous: float | int | None = None
    kind: str = "count"  # count | share | minutes | stock
    source: str = ""  # the mart it comes from
    note: str = ""
    better: str = ""  # "up", "down" or "" (neither is good or bad in itself)

    @property
    def change(self) -> float | int | None:
        """This week minus last week (a share: in percentage points x 0.01)."""
        if self.value is None or self.previous is None:
            return None
        return round(self.value - self.previous, 4)

    @property
    def change_ratio(self) -> float | None:
        """Relative week-on-week change (环比) of a count."""
        if self.kind == "share" or not self.previous or self.value is None:
            return None
        return round((self.value - self.previous) / self.previous, 4)


@dataclass
class TownRow:
    town_code: str
    town_name: str
    residents: int
    hotline_tickets: int
    hotline_per_10k: float | None
    hotline_resolved_share: float | None
    hotline_satisfaction: float | None
    consultations: int
    violations: int
    alarms: int
    rank: int = 0


@dataclass
class Topic:
    category: str
    tickets: int
    previous: int
    share: float | None
    resolved_share: float | None


@dataclass
class Responder:
    department: str
    tickets: int
    responded_share: float | None
    respond_minutes: float | None
    resolve_hours: float | None
    resolved_share: float | None
    satisfaction: float | None


@dataclass
class AlarmRow:
    alarm_type: str
    level: int
    level_name: str
    alarms: int
    acknowledged: int
    resolved: int
    unresolved: int
    acknowledge_minutes: float | None


@dataclass
class SiteRow:
    site_name: str
    town_name: str | None
    hazard_class: str | None
    alarms: int
    severe_alarms: int
    unresolved_alarms: int


@dataclass
class DeptScore:
    dept_code: str
    dept_name: str
    days: int
    timeliness: float | None
    completeness: float | None
    validity: float | None
    uniqueness: float | None
    failing_rules: int  # on the newest day of the week
    rag: str = "none"
    rag_of: dict = field(default_factory=dict)


@dataclass
class UplinkRow:
    exchange: str
    resource: str
    code: str
    transport: str
    packages: int
    status: str
    receipt: str
    accepted: int | None
    rejected: int | None
    reconciled: str


@dataclass
class BriefData:
    county: str
    county_code: str
    week: str
    week_title: str
    previous_week: str
    days: list[str]  # the days of the week with data
    previous_days: list[str]  # and of last week: fewer than 7 make the comparison indicative
    as_of: str | None  # newest day any mart has
    partial: bool
    generated_at: str
    indicators: list[Indicator]
    daily: dict[str, list[tuple[str, int]]]  # series over the two weeks, for the charts
    towns: list[TownRow]
    topics: list[Topic]
    responders: list[Responder]
    alarms: list[AlarmRow]
    alarm_sites: list[SiteRow]
    scorecard: list[DeptScore]
    uplink: list[UplinkRow] | None  # None: no exchange configured
    uplink_note: str = ""

    def indicator(self, key: str) -> Indicator:
        return next(i for i in self.indicators if i.key == key)

    def to_json(self) -> dict:
        from dataclasses import asdict

        out = asdict(self)
        for item, raw in zip(out["indicators"], self.indicators, strict=True):
            item["change"] = raw.change
            item["change_ratio"] = raw.change_ratio
        return out


# --------------------------------------------------------------------------- queries


def days_with_data(con, week: Week) -> list[date]:
    """The days of ``week`` on which any daily mart has activity."""
    union = " union ".join(
        f"select date_day from marts.{m} where date_day between $1 and $2"
        for key, m in DAILY_MARTS.items()
        if key != "entities"  # registration events carry their historical approval dates
    )
    return [d for (d,) in con.execute(f"{union} order by 1", [week.start, week.end]).fetchall()]


def newest_day(con) -> date | None:
    """The newest day of activity in the daily marts."""
    days = [
        con.execute(f"select max(date_day) from marts.{m}").fetchone()[0]
        for m in DAILY_MARTS.values()
    ]
    days = [d for d in days if d is not None]
    return max(days) if days else None


DAILY_MARTS = {
    "hotline": "mart_governance__hotline_daily",
    "consultations": "mart_health__consultations_daily",
    "referrals": "mart_health__referrals",
    "alarms": "mart_safety__alarms_daily",
    "violations": "mart_traffic__violations_daily",
    "entities": "mart_entities__changes_daily",
}


def _two_weeks(con, mart: str, columns: str, week: Week, where: str = "true") -> dict:
    """``{True: this week's row, False: last week's}`` of aggregate ``columns`` over a mart."""
    sql = f"""
        select date_day >= ? as this_week, {columns}
        from marts.{mart}
        where date_day between ? and ? and ({where})
        group by 1"""
    found = {r["this_week"]: r for r in rows(con, sql, [week.start, week.previous.start, week.end])}
    names = [d[0] for d in con.execute(f"select {columns} from marts.{mart} limit 0").description]
    empty = dict.fromkeys(names)
    return {
        flag: {k: _number(v) for k, v in found.get(flag, empty).items() if k != "this_week"}
        for flag in (True, False)
    }


HOTLINE_SUMS = """
    sum(tickets) as tickets, sum(responded) as responded, sum(resolved) as resolved,
    sum(satisfied + fairly_satisfied) as satisfied,
    sum(satisfied + fairly_satisfied + dissatisfied) as rated,
    sum(median_respond_minutes * responded) filter (median_respond_minutes is not null)
        / sum(responded) filter (median_respond_minutes is not null) as respond_minutes,
    sum(median_resolve_hours * resolved) filter (median_resolve_hours is not null)
        / sum(resolved) filter (median_resolve_hours is not null) as resolve_hours"""


def indicators(con, week: Week) -> list[Indicator]:
    """The headline indicators with last week's values."""
    out: list[Indicator] = []
    residents, as_of = con.execute(
        "select sum(residents), max(as_of_date) from marts.mart_population__by_town"
    ).fetchone()
    out.append(
        Indicator(
            "residents",
            "户籍人口",
            "人",
            _number(residents),
            kind="stock",
            source="mart_population__by_town",
            note=f"截至 {as_of}" if as_of else "",
        )
    )

    h = _two_weeks(con, DAILY_MARTS["hotline"], HOTLINE_SUMS, week)
    src = DAILY_MARTS["hotline"]
    out += [
        Indicator("hotline_tickets", "12345 热线诉求", "件", h[True]["tickets"] or 0,
                  h[False]["tickets"] or 0, source=src),
        Indicator("hotline_resolved_share", "热线办结率", "%",
                  _share(h[True]["resolved"], h[True]["tickets"]),
                  _share(h[False]["resolved"], h[False]["tickets"]), kind="share", better="up",
                  source=src),
        Indicator("hotline_satisfaction", "热线满意率", "%",
                  _share(h[True]["satisfied"], h[True]["rated"]),
                  _share(h[False]["satisfied"], h[False]["rated"]), kind="share", better="up",
                  source=src, note="满意与基本满意占已评价工单"),
        Indicator("hotline_respond_minutes", "热线响应时长（中位）", "分钟",
                  _round(h[True]["respond_minutes"], 1), _round(h[False]["respond_minutes"], 1),
                  kind="minutes", better="down", source=src, note="各日各组中位数按响应件数加权"),
    ]  # fmt: skip

    c = _two_weeks(
        con,
        DAILY_MARTS["consultations"],
        "sum(consultations) as consultations, sum(completed) as completed",
        week,
    )
    r = _two_weeks(con, DAILY_MARTS["referrals"], "sum(referrals) as referrals", week)
    src = DAILY_MARTS["consultations"]
    out += [
        Indicator("consultations", "远程会诊", "例", c[True]["consultations"] or 0,
                  c[False]["consultations"] or 0, source=src),
        Indicator("consultations_completed_share", "会诊完成率", "%",
                  _share(c[True]["completed"], c[True]["consultations"]),
                  _share(c[False]["completed"], c[False]["consultations"]), kind="share",
                  better="up", source=src),
        Indicator("referrals", "双向转诊", "例", r[True]["referrals"] or 0,
                  r[False]["referrals"] or 0, source=DAILY_MARTS["referrals"]),
    ]  # fmt: skip

    e = _two_weeks(
        con,
        DAILY_MARTS["entities"],
        f"sum(events) filter (change_type = '{ESTABLISHED}') as established, "
        f"sum(events) filter (change_type = '{CANCELLED}') as cancelled",
        week,
    )
    src = DAILY_MARTS["entities"]
    out += [
        Indicator("entities_established", "新设市场主体", "户", e[True]["established"] or 0,
                  e[False]["established"] or 0, source=src),
        Indicator("entities_cancelled", "注销市场主体", "户", e[True]["cancelled"] or 0,
                  e[False]["cancelled"] or 0, source=src),
    ]  # fmt: skip

    a = _two_weeks(
        con,
        DAILY_MARTS["alarms"],
        f"sum(alarms) as alarms, sum(alarms) filter (alarm_level = {SEVERE_ALARM_LEVEL}) "
        "as severe, sum(unresolved) as unresolved",
        week,
    )
    src = DAILY_MARTS["alarms"]
    out += [
        Indicator("alarms", "危化品监测报警", "次", a[True]["alarms"] or 0,
                  a[False]["alarms"] or 0, better="down", source=src),
        Indicator("alarms_severe", "其中高高报", "次", a[True]["severe"] or 0,
                  a[False]["severe"] or 0, better="down", source=src),
    ]  # fmt: skip

    v = _two_weeks(
        con,
        DAILY_MARTS["violations"],
        "sum(violations) as violations, sum(fines_total) as fines",
        week,
    )
    src = DAILY_MARTS["violations"]
    out += [
        Indicator("violations", "交通违法", "起", v[True]["violations"] or 0,
                  v[False]["violations"] or 0, better="down", source=src),
        Indicator("violation_fines", "罚款金额", "元", v[True]["fines"] or 0,
                  v[False]["fines"] or 0, source=src),
    ]  # fmt: skip
    return out


def _round(value, digits: int):
    return None if value is None else round(value, digits)


def daily_series(con, week: Week) -> dict[str, list[tuple[str, int]]]:
    """Per day of this week and last: hotline tickets, consultations, alarms, violations."""
    series = {}
    for key, (mart, column) in {
        "hotline_tickets": (DAILY_MARTS["hotline"], "tickets"),
        "consultations": (DAILY_MARTS["consultations"], "consultations"),
        "alarms": (DAILY_MARTS["alarms"], "alarms"),
        "violations": (DAILY_MARTS["violations"], "violations"),
    }.items():
        found = dict(
            con.execute(
                f"select date_day, sum({column}) from marts.{mart} "
                "where date_day between ? and ? group by 1",
                [week.previous.start, week.end],
            ).fetchall()
        )
        day, out = week.previous.start, []
        while day <= week.end:
            out.append((day.isoformat(), _number(found.get(day, 0))))
            day += timedelta(days=1)
        series[key] = out
    return series


def towns(con, week: Week) -> list[TownRow]:
    """Every town of the county with its week, ranked by hotline demands per 10,000 residents."""
    found = rows(
        con,
        f"""
        with pop as (
            select town_code, town_name, division_code, residents
            from marts.mart_population__by_town
        ),
        hotline as (
            select division_code, {HOTLINE_SUMS}
            from marts.{DAILY_MARTS["hotline"]} where date_day between $1 and $2 group by 1
        ),
        consult as (
            select division_code, sum(consultations) as consultations
            from marts.{DAILY_MARTS["consultations"]} where date_day between $1 and $2 group by 1
        ),
        violations as (
            select division_code, sum(violations) as violations
            from marts.{DAILY_MARTS["violations"]} where date_day between $1 and $2 group by 1
        ),
        alarms as (
            select division_code, sum(alarms) as alarms
            from marts.{DAILY_MARTS["alarms"]} where date_day between $1 and $2 group by 1
        )
        select pop.town_code, pop.town_name, pop.residents,
               coalesce(hotline.tickets, 0) as tickets, hotline.resolved, hotline.satisfied,
               hotline.rated, coalesce(consult.consultations, 0) as consultations,
               coalesce(violations.violations, 0) as violations,
               coalesce(alarms.alarms, 0) as alarms
        from pop
        left join hotline using (division_code)
        left join consult using (division_code)
        left join violations using (division_code)
        left join alarms using (division_code)
        order by pop.town_code""",
        [week.start, week.end],
    )
    out = []
    for r in found:
        r = {k: _number(v) for k, v in r.items()}
        out.append(
            TownRow(
                town_code=r["town_code"],
                town_name=r["town_name"],
                residents=r["residents"],
                hotline_tickets=r["tickets"],
                hotline_per_10k=round(r["tickets"] * 10000 / r["residents"], 1)
                if r["residents"]
                else None,
                hotline_resolved_share=_share(r["resolved"], r["tickets"]),
                hotline_satisfaction=_share(r["satisfied"], r["rated"]),
                consultations=r["consultations"],
                violations=r["violations"],
                alarms=r["alarms"],
            )
        )
    out.sort(key=lambda t: (-(t.hotline_per_10k or 0), t.town_code))
    for n, town in enumerate(out, 1):
        town.rank = n
    return out


def topics(con, week: Week, limit: int = 8) -> list[Topic]:
    """The hotline's most frequent categories this week, with last week's count."""
    found = rows(
        con,
        f"""
        select category,
               coalesce(sum(tickets) filter (date_day >= $1), 0) as tickets,
               coalesce(sum(tickets) filter (date_day < $1), 0) as previous,
               sum(resolved) filter (date_day >= $1) as resolved
        from marts.{DAILY_MARTS["hotline"]}
        where date_day between $2 and $3
        group by 1
        order by tickets desc, previous desc, category""",
        [week.start, week.previous.start, week.end],
    )
    total = sum(_number(r["tickets"]) for r in found)
    return [
        Topic(
            r["category"],
            _number(r["tickets"]),
            _number(r["previous"]),
            _share(_number(r["tickets"]), total),
            _share(_number(r["resolved"]), _number(r["tickets"])),
        )
        for r in found[:limit]
        if r["tickets"]
    ]


def responders(con, week: Week) -> list[Responder]:
    """Per handling department this week: volume, response and resolution, satisfaction."""
    found = rows(
        con,
        f"""
        select handling_department, {HOTLINE_SUMS}
        from marts.{DAILY_MARTS["hotline"]} where date_day between ? and ?
        group by 1 order by tickets desc, handling_department""",
        [week.start, week.end],
    )
    out = []
    for r in found:
        r = {k: _number(v) for k, v in r.items()}
        out.append(
            Responder(
                r["handling_department"],
                r["tickets"],
                _share(r["responded"], r["tickets"]),
                _round(r["respond_minutes"], 1),
                _round(r["resolve_hours"], 1),
                _share(r["resolved"], r["tickets"]),
                _share(r["satisfied"], r["rated"]),
            )
        )
    return out


def alarms(con, week: Week) -> tuple[list[AlarmRow], list[SiteRow]]:
    """This week's alarms per type and level, and the sites with alarms still unresolved."""
    found = rows(
        con,
        f"""
        select alarm_type, alarm_level, any_value(alarm_level_name) as level_name,
               sum(alarms) as alarms, sum(acknowledged) as acknowledged,
               sum(resolved) as resolved, sum(unresolved) as unresolved,
               sum(median_acknowledge_minutes * acknowledged)
                   filter (median_acknowledge_minutes is not null)
                 / sum(acknowledged) filter (median_acknowledge_minutes is not null)
                   as acknowledge_minutes
        from marts.{DAILY_MARTS["alarms"]} where date_day between ? and ?
        group by 1, 2 order by alarm_level, alarms desc, alarm_type""",
        [week.start, week.end],
    )
    by_type = [
        AlarmRow(
            r["alarm_type"],
            r["alarm_level"],
            r["level_name"] or "",
            _number(r["alarms"]),
            _number(r["acknowledged"]),
            _number(r["resolved"]),
            _number(r["unresolved"]),
            _round(_number(r["acknowledge_minutes"]), 1),
        )
        for r in found
    ]
    sites = [
        SiteRow(**{k: _number(v) for k, v in r.items()})
        for r in rows(
            con,
            """
            select site_name, town_name, hazard_class, alarms, severe_alarms, unresolved_alarms
            from marts.mart_safety__sites
            where unresolved_alarms > 0
            order by unresolved_alarms desc, severe_alarms desc, site_name limit 8""",
        )
    ]
    return by_type, sites


def rag(score: float | None) -> str:
    if score is None:
        return "none"
    return "green" if score >= GREEN else "amber" if score >= AMBER else "red"


def worst(colours) -> str:
    order = ["red", "amber", "green"]
    present = [c for c in colours if c in order]
    return min(present, key=order.index) if present else "none"


def scorecard(con, days: tuple[date, date]) -> list[DeptScore]:
    """Per department over ``days`` (inclusive): the mean of each dimension and the colours."""
    found = rows(
        con,
        """
        select dept_code, any_value(dept_name) as dept_name, count(*) as days,
               avg(timeliness) as timeliness, avg(completeness) as completeness,
               avg(validity) as validity, avg(uniqueness) as uniqueness,
               arg_max(failing_rule_count, date_day) as failing_rules
        from marts.mart_quality__scorecard
        where date_day between ? and ?
        group by dept_code order by dept_code""",
        list(days),
    )
    out = []
    for r in found:
        r = {k: _number(v) for k, v in r.items()}
        score = DeptScore(**{k: _round(v, 4) if k in DIMENSIONS else v for k, v in r.items()})
        score.rag_of = {d: rag(getattr(score, d)) for d in DIMENSIONS}
        score.rag = worst(score.rag_of.values())
        out.append(score)
    return out


def uplink_status(where: Paths) -> tuple[list[UplinkRow] | None, str]:
    """The exchanges' delivery status, or None with the reason when uplinks are not set up."""
    try:
        from etl.uplink.deliver import status_rows

        found = status_rows(where, pending_changes=False)
    except ImportError:
        return None, "尚未配置上行交换"
    except Exception as exc:  # the brief still goes out; the section says why it is empty
        return None, f"上行交换状态暂不可读：{str(exc)[:120]}"
    if not found:
        return None, "尚未配置上行交换"
    return [
        UplinkRow(
            exchange=r["exchange"],
            resource=r["resource"],
            code=r.get("code") or "",
            transport=r.get("transport") or "",
            packages=r.get("packages") or 0,
            status=r.get("status") or "",
            receipt=r.get("receipt") or "",
            accepted=r.get("accepted"),
            rejected=r.get("rejected"),
            reconciled=r.get("reconciled") or "",
        )
        for r in found
    ], ""


def collect(where: Paths, week: Week | None = None) -> BriefData:
    """Everything the brief of ``week`` says (default: the week of the newest data)."""
    from etl.contracts import load_profile

    profile = load_profile()
    with connect(where) as con:
        newest = newest_day(con)
        if week is None:
            if newest is None:
                raise ReportError("warehouse", "the marts hold no activity yet")
            week = Week.of(newest)
        days = days_with_data(con, week)
        previous_days = days_with_data(con, week.previous)
        by_type, sites = alarms(con, week)
        data = BriefData(
            county=profile.name,
            county_code=profile.code,
            week=week.label,
            week_title=week.title_zh,
            previous_week=week.previous.label,
            days=[d.isoformat() for d in days],
            previous_days=[d.isoformat() for d in previous_days],
            as_of=newest.isoformat() if newest else None,
            partial=newest is None or newest < week.end,
            generated_at=datetime.now(ZoneInfo(profile.timezone)).isoformat(timespec="seconds"),
            indicators=indicators(con, week),
            daily=daily_series(con, week),
            towns=towns(con, week),
            topics=topics(con, week),
            responders=responders(con, week),
            alarms=by_type,
            alarm_sites=sites,
            scorecard=scorecard(con, (week.start, week.end)),
            uplink=None,
        )
    data.uplink, data.uplink_note = uplink_status(where)
    return data


def warehouse_file(where: Paths) -> Path:
    return where.warehouse / "county.duckdb"
