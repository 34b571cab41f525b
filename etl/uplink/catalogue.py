"""The resource catalogue (政务信息资源目录, GB/T 21063) generated from the exchange contracts.

One entry per resource and exchange: code, name, provider department and its code, summary,
category, format, items (name, type, grade, and how each leaves for that exchange), share type
and condition, share method, open type, update cycle and publish date. Written as JSON, CSV
(UTF-8 with BOM, so spreadsheet programs show the Chinese) and a readable HTML page under
``<data root>/catalogue/``. Nothing here reads the warehouse: the catalogue is the contracts.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from etl.contracts import ExchangeContract, load_exchanges, load_profile, load_systems
from etl.settings import Paths, paths
from etl.uplink.masks import outgoing_columns

MASK_ZH = {
    "none": "原样",
    "name": "脱敏：保留姓氏",
    "id_number": "脱敏：保留前 6 位和后 4 位",
    "mobile": "脱敏：保留前 3 位和后 4 位",
    "landline": "脱敏：保留前 4 位和后 2 位",
    "bank_card": "脱敏：保留前 4 位和后 4 位",
    "credit_code": "脱敏：保留前 8 位",
    "address": "脱敏：截断到村居",
    "year": "脱敏：仅保留年份",
    "pseudonym": "假名化（本平台专用）",
    "drop": "不报送",
}
FORMAT_ZH = {"frontdb": "数据库表", "package": "文件", "http": "接口（JSON）"}
CSV_COLUMNS = [
    ("exchange", "交换平台"),
    ("code", "资源代码"),
    ("name", "资源名称"),
    ("provider", "提供方"),
    ("provider_code", "提供方代码"),
    ("category", "资源分类"),
    ("summary", "资源摘要"),
    ("format", "资源格式"),
    ("items", "信息项"),
    ("share_type", "共享类型"),
    ("share_condition", "共享条件"),
    ("share_method", "共享方式"),
    ("open_type", "开放类型"),
    ("update_cycle", "更新周期"),
    ("publish_date", "发布日期"),
    ("source", "数据来源"),
]


def entries(exchanges: list[ExchangeContract] | None = None) -> list[dict]:
    """The catalogue entries, one per resource and exchange."""
    profile = load_profile()
    systems = {s.system: s for s in load_systems()}
    exchanges = load_exchanges() if exchanges is None else exchanges
    out = []
    for exchange in exchanges:
        for resource in exchange.resources:
            dept = systems[resource.provider].department
            sent = {c.name: c.applied_mask for c in outgoing_columns(exchange, resource)}
            transport = exchange.transport_of(resource)
            file_format = getattr(transport, "format", None)
            out.append(
                {
                    "exchange": exchange.exchange,
                    "exchange_name": exchange.name,
                    "receiver": exchange.receiver.name,
                    "code": resource.code,
                    "name": resource.name,
                    "name_en": resource.name_en,
                    "provider": f"{profile.name}{dept.name.removeprefix('县')}"
                    if dept.name.startswith("县")
                    else dept.name,
                    "provider_code": f"{profile.code}-{dept.code}",
                    "category": resource.category,
                    "summary": resource.summary,
                    "format": FORMAT_ZH[transport.kind]
                    + (f"（{file_format.upper()}）" if file_format else ""),
                    "share_type": resource.share_type,
                    "share_condition": resource.share_condition,
                    "share_method": resource.share_method,
                    "open_type": resource.open_type,
                    "update_cycle": resource.update_cycle,
                    "publish_date": resource.publish_date or "",
                    "source": resource.source,
                    "items": [
                        {
                            "item": c.item,
                            "title": c.title,
                            "type": c.type,
                            "grade": c.grade,
                            "key": c.name in resource.key,
                            "sent_as": MASK_ZH[sent.get(c.name, "drop")],
                        }
                        for c in resource.columns
                    ],
                }
            )
    return out


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([zh for _, zh in CSV_COLUMNS])
    for r in rows:
        items = "；".join(
            f"{i['title']}({i['item']},{i['grade']},{i['sent_as']})" for i in r["items"]
        )
        writer.writerow([items if k == "items" else r[k] for k, _ in CSV_COLUMNS])
    return "\ufeff" + buffer.getvalue()


_STYLE = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:2px solid #b22}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3;white-space:nowrap}dl{display:grid;grid-template-columns:8em 1fr;gap:.2em}
dt{color:#666}.key{font-weight:bold}.masked{color:#a50}.drop{color:#999;text-decoration:line-through}
"""


def _html(rows: list[dict], county: str) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>{e(county)}政务信息资源目录</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(county)}政务信息资源目录</h1>",
        "<p>由交换契约（schemas/exchanges）生成；每个资源按报送的交换平台列出，信息项注明分级及报送方式。</p>",
        "<table><tr><th>交换平台</th><th>资源代码</th><th>资源名称</th><th>提供方</th>"
        "<th>共享类型</th><th>共享方式</th><th>更新周期</th></tr>",
    ]
    for r in rows:
        parts.append(
            f"<tr><td>{e(r['exchange_name'])}</td><td><a href='#{e(r['exchange'])}-{e(r['code'])}'>"
            f"{e(r['code'])}</a></td><td>{e(r['name'])}</td><td>{e(r['provider'])}</td>"
            f"<td>{e(r['share_type'])}</td><td>{e(r['share_method'])}</td>"
            f"<td>{e(r['update_cycle'])}</td></tr>"
        )
    parts.append("</table>")
    for r in rows:
        parts.append(
            f"<h2 id='{e(r['exchange'])}-{e(r['code'])}'>{e(r['name'])}（{e(r['code'])}）</h2>"
        )
        facts = [
            ("交换平台", f"{r['exchange_name']}（{r['receiver']}）"),
            ("资源摘要", r["summary"]),
            ("资源分类", r["category"]),
            ("提供方", f"{r['provider']}（{r['provider_code']}）"),
            ("资源格式", r["format"]),
            ("共享类型", r["share_type"]),
            ("共享条件", r["share_condition"] or "—"),
            ("共享方式", r["share_method"]),
            ("开放类型", r["open_type"]),
            ("更新周期", r["update_cycle"]),
            ("发布日期", r["publish_date"] or "—"),
            ("数据来源", r["source"]),
        ]
        parts.append(
            "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts) + "</dl>"
        )
        parts.append(
            "<table><tr><th>信息项</th><th>名称</th><th>类型</th><th>分级</th><th>报送方式</th></tr>"
        )
        for i in r["items"]:
            if i["sent_as"] == MASK_ZH["drop"]:
                cls = "drop"
            else:
                cls = "masked" if i["sent_as"] != MASK_ZH["none"] else ""
            key = " class='key'" if i["key"] else ""
            parts.append(
                f"<tr><td{key}>{e(i['item'])}</td><td>{e(i['title'])}</td><td>{e(i['type'])}</td>"
                f"<td>{e(i['grade'])}</td><td class='{cls}'>{e(i['sent_as'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_catalogue(where: Paths | str | Path | None = None) -> dict[str, Path]:
    """Write ``catalogue.json``, ``catalogue.csv`` and ``catalogue.html`` under the data root."""
    where = where if isinstance(where, Paths) else paths(where)
    profile = load_profile()
    rows = entries()
    folder = where.home / "catalogue"
    folder.mkdir(parents=True, exist_ok=True)
    county = profile.name
    out = {
        "json": folder / "catalogue.json",
        "csv": folder / "catalogue.csv",
        "html": folder / "catalogue.html",
    }
    document = {"county": {"code": profile.code, "name": county}, "resources": rows}
    out["json"].write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    out["csv"].write_text(_csv(rows), encoding="utf-8")
    out["html"].write_text(_html(rows, county), encoding="utf-8")
    return out
