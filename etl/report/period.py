"""ISO weeks (Monday to Sunday, ``2026-W47``), the period of the weekly brief."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from etl.errors import CountylakeError

WEEK_PATTERN = re.compile(r"^(\d{4})-?W(\d{2})$")


@dataclass(frozen=True, order=True)
class Week:
    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> Week:
        """``2026-W47`` (or ``2026W47``) -> Week; an invalid week raises."""
        match = WEEK_PATTERN.match(text.strip().upper())
        if not match:
            raise CountylakeError(f"week {text!r}", "expected an ISO week like 2026-W47")
        year, week = int(match[1]), int(match[2])
        last = date(year, 12, 28).isocalendar().week  # 28 December is always in the last week
        if not 1 <= week <= last:
            raise CountylakeError(f"week {text!r}", f"{year} has weeks 1 to {last}")
        return cls(year, week)

    @classmethod
    def of(cls, day: date) -> Week:
        iso = day.isocalendar()
        return cls(iso.year, iso.week)

    @classmethod
    def before(cls, day: date) -> Week:
        """The last whole week that ended before ``day`` (what a Monday run reports)."""
        return cls.of(day - timedelta(days=day.isoweekday()))

    @property
    def start(self) -> date:
        return date.fromisocalendar(self.year, self.week, 1)

    @property
    def end(self) -> date:
        """The Sunday (inclusive)."""
        return self.start + timedelta(days=6)

    @property
    def previous(self) -> Week:
        return Week.of(self.start - timedelta(days=7))

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def title_zh(self) -> str:
        """``2026年第47周（11月16日—11月22日）``."""
        s, e = self.start, self.end
        return f"{self.year}年第{self.week}周（{s.month}月{s.day}日—{e.month}月{e.day}日）"

    def __str__(self) -> str:
        return self.label
