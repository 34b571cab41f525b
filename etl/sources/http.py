"""Department HTTP APIs: paged JSON, every request signed (X-Client-Id, X-Timestamp, X-Nonce,
X-Signature), retried with exponential backoff on 5xx and network errors, and rate-limited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pyarrow as pa

from etl.connections import credentials, redact
from etl.contracts import DatasetContract, SystemContract
from etl.errors import SourceError
from etl.signing import signed_headers
from etl.sources.base import Chunk, ReadPlan, ReadReport, columns_to_read

RETRIES = 4
BACKOFF_S = 0.5
TIMEOUT_S = 10.0


class HttpApiSource:
    def __init__(
        self,
        system: SystemContract,
        dataset: DatasetContract,
        url: str,
        timeout_s: float | None = None,
        backoff_s: float | None = None,
    ):
        self.system, self.dataset, self.api = system, dataset, dataset.api
        parts = urlsplit(url)
        self.base = f"{parts.scheme}://{parts.hostname}:{parts.port or 80}"
        self.client_id, self.secret = credentials(url)
        self.timeout_s = TIMEOUT_S if timeout_s is None else timeout_s
        self.backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        self._last_request = 0.0

    def describe(self) -> str:
        return f"{redact(self.base)}{self.api.path}"

    def read(self, plan: ReadPlan, report: ReadReport) -> Iterator[Chunk]:
        start_name, end_name = self.api.window_params
        params = {}
        if plan.lower is not None:
            params[start_name] = plan.lower
        if plan.upper is not None:
            params[end_name] = plan.upper
        seen, page, row = 0, 1, 1
        with httpx.Client(base_url=self.base, timeout=self.timeout_s) as client:
            while True:
                paging = self._paging(page, seen, self.api.page_size)
                body = self._get(client, {**params, **paging}, page)
                records = body[self.api.records_field]
                if not records:
                    break
                names = self._fields(records, report, page)
                # JSON values arrive as numbers or text; keep them as text for etl.validate.
                columns = {
                    n: pa.array([_text(r.get(n)) for r in records], pa.string()) for n in names
                }
                yield Chunk(
                    pa.RecordBatch.from_pydict(columns), f"{self.api.path}?page={page}", row
                )
                seen += len(records)
                row += len(records)
                page += 1
                total = body.get("total")
                if isinstance(total, int) and seen >= total:
                    break

    def probe(self, report: ReadReport) -> str:
        """One record of the API, its fields checked against the contract: the signature, the
        paging and the answer's shape, as a read would meet them (``countylake check
        --sources``)."""
        with httpx.Client(base_url=self.base, timeout=self.timeout_s) as client:
            body = self._get(client, self._paging(1, 0, 1), 1)
        records = body[self.api.records_field]
        if not records:
            return "answers; no record yet"
        total = body.get("total")
        return f"{len(self._fields(records, report, 1))} fields" + (
            f"; {total:,} records" if isinstance(total, int) else ""
        )

    def _paging(self, page: int, seen: int, size: int) -> dict:
        if self.api.paging == "page":
            return {"PAGE": page, "PAGENUM": size}
        return {"STARTNUM": seen + 1, "PAGENUM": size}

    def _fields(self, records: list[dict], report: ReadReport, page: int) -> list[str]:
        """The answer's fields that a read takes, under the contract's drift policy."""
        names, error = columns_to_read(self.dataset, list(records[0].keys()), report)
        if error:
            raise SourceError(
                f"{self.describe()} page {page}",
                f"the response's fields changed: {error}",
                "update the contract (source_name, or quality.drift)",
            )
        return names

    def _get(self, client: httpx.Client, params: dict, page: int) -> dict:
        where = f"{self.describe()} page {page}"
        for attempt in range(RETRIES + 1):
            self._respect_rate_limit()
            try:
                response = client.get(
                    self.api.path,
                    params=params,
                    headers=signed_headers(self.client_id, self.secret),
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500:
                    return self._decode(response, where)
                problem = f"HTTP {response.status_code}"
            if attempt < RETRIES:
                time.sleep(self.backoff_s * 2**attempt)
        raise SourceError(
            where,
            f"{problem} after {RETRIES + 1} attempts",
            "the department API is down; the run can be retried later",
        )

    def _decode(self, response: httpx.Response, where: str) -> dict:
        if response.status_code != 200:
            raise SourceError(
                where,
                f"HTTP {response.status_code}: {response.text[:200]}",
                "check the client id and secret of the connection",
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise SourceError(where, f"answer is not JSON: {response.text[:80]!r}") from exc
        if not isinstance(body, dict) or not isinstance(body.get(self.api.records_field), list):
            raise SourceError(where, f"answer has no list field {self.api.records_field!r}")
        return body

    def _respect_rate_limit(self) -> None:
        gap = 1.0 / self.api.rate_limit_per_s
        wait = self._last_request + gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()


def _text(value) -> str | None:
    return None if value is None else str(value)
