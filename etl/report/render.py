"""HTML from the report templates (Jinja2), the shared font asset, and PDF (WeasyPrint).

Pages live under ``<data root>/reports/`` and load the CJK font from ``reports/assets/`` by a
relative URL, so the folder can be copied or served as it is. WeasyPrint embeds the subset of
the font the PDF uses.
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

from etl.report.fonts import font_path

TEMPLATES = Path(__file__).parent / "templates"


def _num(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    if digits == 0 and float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def _pct(value, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _show(value, kind: str) -> str:
    if kind == "share":
        return _pct(value)
    if kind == "minutes":
        return _num(value, 1)
    return _num(value)


def _delta(indicator) -> str:
    """环比 text of a headline indicator."""
    if indicator.kind == "stock":
        return ""
    if indicator.previous is None or indicator.value is None:
        return "上周无可比数据"
    change = indicator.change
    if indicator.kind == "share":
        return f"较上周 {100 * change:+.1f} 个百分点"
    if not indicator.previous:
        return f"上周为 0（本周 {_show(indicator.value, indicator.kind)}）"
    arrow = "▲" if change > 0 else "▼"
    amount = _num(abs(change), 1 if indicator.kind == "minutes" else 0)
    if not change:
        return "环比持平"
    sign = "+" if change > 0 else "-"
    return f"环比 {arrow} {abs(indicator.change_ratio) * 100:.1f}%（{sign}{amount}）"


def _trend(indicator) -> str:
    """``good``, ``bad`` or ``neutral``: whether the change goes the way the county wants."""
    change = indicator.change
    if not change or not indicator.better:
        return "neutral"
    return "good" if (change > 0) == (indicator.better == "up") else "bad"


@lru_cache(maxsize=1)
def environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, pct=_pct, show=_show, delta=_delta, trend=_trend)
    return env


def font_asset(reports: Path) -> str:
    """Copy the CJK font into ``reports/assets`` (once); returns its file name."""
    source = font_path()
    target = reports / "assets" / source.name
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    return source.name


def write_page(reports: Path, relative: str, template: str, **context) -> Path:
    """Render ``template`` to ``reports/relative`` (written whole, then renamed into place)."""
    target = reports / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    depth = len(Path(relative).parts) - 1
    html = (
        environment()
        .get_template(template)
        .render(root="../" * depth, font_file=font_asset(reports), **context)
    )
    write_text(target, html)
    return target


def write_text(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


def write_pdf(html: Path, pdf: Path) -> Path:
    """The page printed to PDF by WeasyPrint, with the CJK font embedded (subset)."""
    import logging

    from weasyprint import HTML

    logging.getLogger("fontTools").setLevel(logging.WARNING)
    tmp = pdf.with_name(f".{pdf.name}.tmp")
    HTML(filename=str(html), base_url=str(html.parent)).write_pdf(str(tmp))
    tmp.replace(pdf)
    return pdf
