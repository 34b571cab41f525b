"""Reports for leadership and department heads, written under ``<data root>/reports/``.

- ``brief``: the weekly leadership brief (每周数据简报) in Chinese, HTML and PDF, from the marts;
- ``pages``: the department data-quality scorecard with a drill-down page per department, the
  resource catalogue, and an index linking everything;
- ``data`` (what the brief says, queried read-only from the warehouse), ``charts``
  (matplotlib), ``render`` (Jinja2 templates, WeasyPrint), ``fonts`` (the CJK font),
  ``period`` (ISO weeks), ``shots`` (headless Chromium screenshots).

Only ``write_reports`` is exported here; heavy libraries are imported where they are used, so
the report DAG parses without them.
"""

from __future__ import annotations

from pathlib import Path


def write_reports(where=None, week=None) -> dict[str, Path]:
    """Write the brief of ``week`` (``Week``, ``"2026-W47"`` or None for the newest week with
    data), the scorecard pages, the catalogue page and the index. Returns their paths by name:
    ``brief``, ``brief_pdf``, ``brief_json``, ``scorecard``, ``catalogue``, ``index``."""
    from etl.report.brief import write_brief
    from etl.report.pages import write_pages
    from etl.report.period import Week
    from etl.settings import Paths, paths

    where = where if isinstance(where, Paths) else paths(where)
    if isinstance(week, str):
        week = Week.parse(week)
    written = write_brief(where, week)
    written.update(write_pages(where, brief=written["brief"]))
    return written
