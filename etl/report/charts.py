"""The brief's charts: matplotlib figures (no pyplot, so no backend is touched) drawn with the
CJK font and written as SVG with the glyphs as paths, so they look the same in any browser and
in the PDF.

A chart whose text the font cannot draw is an error, not a page of boxes: matplotlib's
"Glyph ... missing" warnings are turned into ``FontError``.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable
from datetime import date

from etl.report.data import BriefData
from etl.report.fonts import FontError, use_in_matplotlib

THIS_WEEK, LAST_WEEK, GRID = "#c0392b", "#95a5a6", "#e5e5e5"
SERIES_ZH = {
    "hotline_tickets": "12345 热线诉求（件）",
    "consultations": "远程会诊（例）",
    "alarms": "危化品报警（次）",
    "violations": "交通违法（起）",
}
WEEKDAYS_ZH = "一二三四五六日"


def glyphs_checked(draw: Callable[..., str]) -> Callable[..., str]:
    """Run a chart function, turning matplotlib's missing-glyph warnings into ``FontError``."""

    @functools.wraps(draw)
    def checked(*args, **kwargs) -> str:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            svg = draw(*args, **kwargs)
        missing = sorted({str(w.message) for w in caught if "missing from font" in str(w.message)})
        for w in caught:
            if "missing from font" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if missing:
            raise FontError(f"chart {draw.__name__}", "; ".join(missing[:3]))
        return svg

    return checked


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


def _axes(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)


@glyphs_checked
def trend(data: BriefData) -> str:
    """Daily activity of this week against last week, one panel per service."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    use_in_matplotlib()
    fig = Figure(figsize=(8.6, 4.6))
    axes = fig.subplots(2, 2)
    for ax, (key, title) in zip(axes.flat, SERIES_ZH.items(), strict=True):
        series = data.daily[key]
        live = set(data.days) | set(data.previous_days)  # days before go-live are gaps, not 0
        last, this = (
            [v if d in live else None for d, v in part] for part in (series[:7], series[7:])
        )
        x = range(1, 8)
        ax.plot(x, last, color=LAST_WEEK, marker="o", ms=3, lw=1.5, label="上周")
        ax.plot(x, this, color=THIS_WEEK, marker="o", ms=4, lw=2, label="本周")
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xticks(list(x), [f"周{d}" for d in WEEKDAYS_ZH], fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _axes(ax)
    axes.flat[0].legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    return _svg(fig)


@glyphs_checked
def towns(data: BriefData) -> str:
    """Hotline demands per 10,000 residents by town, highest first."""
    from matplotlib.figure import Figure

    use_in_matplotlib()
    ranked = [t for t in data.towns if t.hotline_per_10k is not None][::-1]
    fig = Figure(figsize=(8.6, 0.32 * max(len(ranked), 3) + 0.8))
    ax = fig.subplots()
    values = [t.hotline_per_10k for t in ranked]
    bars = ax.barh([t.town_name for t in ranked], values, color=THIS_WEEK, height=0.6)
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8, padding=2)
    ax.set_xlabel("每万户籍人口 12345 诉求件数", fontsize=9)
    ax.tick_params(labelsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return _svg(fig)


@glyphs_checked
def topics(data: BriefData) -> str:
    """The hotline's hot topics this week against last week."""
    from matplotlib.figure import Figure

    use_in_matplotlib()
    shown = data.topics[::-1]
    fig = Figure(figsize=(8.6, 0.4 * max(len(shown), 3) + 0.8))
    ax = fig.subplots()
    y = range(len(shown))
    ax.barh([i + 0.2 for i in y], [t.tickets for t in shown], height=0.4, color=THIS_WEEK,
            label="本周")  # fmt: skip
    ax.barh([i - 0.2 for i in y], [t.previous for t in shown], height=0.4, color=LAST_WEEK,
            label="上周")  # fmt: skip
    ax.set_yticks(list(y), [t.category for t in shown], fontsize=9)
    ax.set_xlabel("诉求件数", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    fig.tight_layout()
    return _svg(fig)


@glyphs_checked
def quality_trend(days: list[date], scores: dict[str, list[float | None]], title: str) -> str:
    """A department's four quality dimensions over the last days (the scorecard drill-down)."""
    from matplotlib.figure import Figure

    from etl.report.data import DIMENSIONS

    use_in_matplotlib()
    fig = Figure(figsize=(8.6, 2.8))
    ax = fig.subplots()
    for dimension, name in DIMENSIONS.items():
        values = [None if v is None else 100 * v for v in scores[dimension]]
        ax.plot([f"{d.month}/{d.day}" for d in days], values, marker="o", ms=3, label=name)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel("%", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, frameon=False, ncol=4, loc="lower left")
    _axes(ax)
    fig.tight_layout()
    return _svg(fig)


CHARTS = {"trend": trend, "towns": towns, "topics": topics}


def render_all(data: BriefData) -> dict[str, str]:
    """Every chart of the brief as SVG text, by name."""
    return {name: draw(data) for name, draw in CHARTS.items()}
