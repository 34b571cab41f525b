"""The weekly leadership brief (每周数据简报): HTML, PDF and the numbers as JSON.

``reports/brief/<week>/`` holds ``brief.html`` (charts in ``charts/*.svg``), ``brief.pdf`` and
``brief.json`` (every number of the brief, as ``etl.report.data`` read it from the marts).
"""

from __future__ import annotations

import json
from pathlib import Path

from etl.report import charts, data
from etl.report.period import Week
from etl.report.render import write_page, write_pdf, write_text
from etl.settings import Paths

EXCHANGE_ZH_FALLBACK = {"zibo": "淄博市数据共享交换平台", "shandong": "山东省数据共享交换平台"}
TRANSPORT_ZH = {"frontdb": "前置库", "package": "文件包", "http": "接口推送"}
STATUS_ZH = {"receipted": "已回执", "sent": "已发送待回执", "built": "已打包", "failed": "失败"}


def folder(where: Paths, week: Week) -> Path:
    return where.reports / "brief" / week.label


def _uplink_names() -> tuple[dict, dict]:
    """Chinese names of the exchanges and their resources, from the exchange contracts."""
    exchanges, resources = dict(EXCHANGE_ZH_FALLBACK), {}
    try:
        from etl.contracts import load_exchanges

        for exchange in load_exchanges():
            exchanges[exchange.exchange] = exchange.name
            for resource in exchange.resources:
                resources[(exchange.exchange, resource.resource)] = resource.name
    except Exception:  # no exchange contracts: the codes are shown as they are
        pass
    return exchanges, resources


def write_brief(where: Paths, week: Week | None = None) -> dict[str, Path]:
    """Collect, draw and write the brief of ``week`` (default: the newest week with data)."""
    numbers = data.collect(where, week)
    week = Week.parse(numbers.week)
    target = folder(where, week)
    (target / "charts").mkdir(parents=True, exist_ok=True)
    for name, svg in charts.render_all(numbers).items():
        write_text(target / "charts" / f"{name}.svg", svg)
    exchange_zh, resource_zh = _uplink_names()
    html = write_page(
        where.reports,
        f"brief/{week.label}/brief.html",
        "brief.html",
        county=numbers.county,
        generated_at=numbers.generated_at,
        d=numbers,
        green=data.GREEN,
        amber=data.AMBER,
        dimensions=data.DIMENSIONS,
        rag_zh=data.RAG_ZH,
        exchange_zh=exchange_zh,
        resource_zh=resource_zh,
        transport_zh=TRANSPORT_ZH,
        status_zh=STATUS_ZH,
        sources=sorted({i.source for i in numbers.indicators} | {"mart_quality__scorecard"}),
    )
    numbers_file = target / "brief.json"
    write_text(
        numbers_file, json.dumps(numbers.to_json(), ensure_ascii=False, indent=1, default=str)
    )
    pdf = write_pdf(html, target / "brief.pdf")
    return {"brief": html, "brief_pdf": pdf, "brief_json": numbers_file}
