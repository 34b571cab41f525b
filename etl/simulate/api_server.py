"""The traffic police's signed, paged JSON API, served from ``<home>/sources/<system>/api.db``.

Requests carry X-Client-Id / X-Timestamp / X-Nonce / X-Signature (:mod:`etl.signing`); a nonce
is accepted once. Paging and window parameters come from the dataset contract (``api``).
Faults can be switched on at run time for tests: ``fault`` in (None, "500", "garbage",
"timeout") and ``fail_next`` = number of next requests answered 503.
"""

from __future__ import annotations

import json
import sqlite3
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from etl.connections import credentials
from etl.contracts import DatasetContract, SourceKind, SystemContract, load_systems
from etl.signed_server import SignedServer
from etl.simulate.sinks import api_db_path

TIMEOUT_SLEEP_S = 30.0


class ApiServer(SignedServer):
    thread_name = "api-server"

    def __init__(
        self,
        home: Path,
        port: int = 0,
        clients: dict[str, str] | None = None,
        schemas_root: Path | None = None,
        host: str = "127.0.0.1",
    ):
        self.home = Path(home)
        self.routes: dict[str, tuple[SystemContract, DatasetContract]] = {}
        default_clients: dict[str, str] = {}
        for system in load_systems(schemas_root):
            if system.kind != SourceKind.HTTP:
                continue
            client, secret = credentials(system.embedded)
            if client:
                default_clients[client] = secret
            for d in system.datasets:
                self.routes[d.api.path] = (system, d)
        super().__init__(
            self._handler(), dict(clients) if clients is not None else default_clients, host, port
        )
        self.fault: str | None = None
        self.fail_next = 0
        self.timeout_sleep_s = TIMEOUT_SLEEP_S
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ logic

    def query(self, path: str, params: dict[str, str]) -> tuple[int, dict]:
        if path not in self.routes:
            return 404, {"code": 404, "msg": f"no such resource {path}"}
        system, d = self.routes[path]
        api = d.api
        src = {c.name: c.at_source for c in d.columns}
        start_p, end_p = api.window_params
        try:
            size = int(params.get("PAGENUM", api.page_size))
            if api.paging == "page":
                page = int(params.get("PAGE", 1))
                offset = (page - 1) * size
            else:
                offset = int(params.get("STARTNUM", 1)) - 1
                page = offset // size + 1 if size else 1
            if size <= 0 or offset < 0:
                raise ValueError
        except ValueError:
            return 400, {"code": 400, "msg": "bad paging parameters"}
        where, args = [], []
        watermark = src[d.incremental.column] if d.incremental.column else None
        if watermark and params.get(start_p):
            where.append(f'"{watermark}" >= ?')
            args.append(params[start_p])
        if watermark and params.get(end_p):
            where.append(f'"{watermark}" < ?')
            args.append(params[end_p])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        key = src[d.primary_key[0]]
        order = f' ORDER BY "{watermark}", "{key}", rowid' if watermark else f' ORDER BY "{key}"'
        db = api_db_path(self.home, system)
        if not db.exists():
            return 503, {"code": 503, "msg": "data not available"}
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            conn.row_factory = sqlite3.Row
            table = d.dataset
            total = conn.execute(f'SELECT COUNT(*) FROM "{table}"{clause}', args).fetchone()[0]
            rows = conn.execute(
                f'SELECT * FROM "{table}"{clause}{order} LIMIT ? OFFSET ?', [*args, size, offset]
            ).fetchall()
        finally:
            conn.close()
        body = {
            "code": 0,
            "msg": "成功",
            "total": total,
            "PAGE" if api.paging == "page" else "STARTNUM": page
            if api.paging == "page"
            else offset + 1,
            "PAGENUM": size,
            api.records_field: [dict(r) for r in rows],
        }
        return 200, body

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, payload: dict) -> None:
                self._send(
                    status,
                    json.dumps(payload, ensure_ascii=False).encode(),
                    "application/json; charset=utf-8",
                )

            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                    failing = server.fail_next > 0
                    if failing:
                        server.fail_next -= 1
                fault = server.fault
                if failing:
                    return self._json(503, {"code": 503, "msg": "服务暂不可用"})
                if fault == "500":
                    return self._json(500, {"code": 500, "msg": "系统内部错误"})
                if fault == "timeout":
                    time.sleep(server.timeout_sleep_s)
                    return self._json(504, {"code": 504, "msg": "timeout"})
                if fault == "garbage":
                    return self._send(
                        200,
                        b"<html><body>502 Bad Gateway</body></html>\x00\xff",
                        "application/json",
                    )
                headers = {
                    k: self.headers.get(k, "")
                    for k in ("X-Client-Id", "X-Timestamp", "X-Nonce", "X-Signature")
                }
                reason = server.authenticate(headers)
                if reason:
                    return self._json(401, {"code": 401, "msg": reason})
                parts = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                status, payload = server.query(parts.path, params)
                return self._json(status, payload)

        return Handler
