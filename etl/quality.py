"""Quality results people read: dataset-level checks at commit, the latest results per dataset,
and the department scorecard.

Row-level rules are counted by ``etl.validate`` while a window streams; the two dataset-level
rules are judged here when the window commits:

- ``volume``: the rows read leave the band [min_ratio, max_ratio] x the median of the dataset's
  recent windows (needs three windows of history);
- ``freshness``: the newest data is older than the SLA at the window's end. The newest data is
  the largest event time landed (see ``etl.validate.event_time_column``); a window without
  event times is as new as its end when a live system (SQL, API) answered or an export arrived,
  else as new as the last delivery. So a quiet change log is not stale, a department whose
  export stops coming is, and replayed or caught-up windows are judged on the data, not on the
  clock.

The scorecard (per department and day: timeliness, completeness, validity, uniqueness and the
failing rules) and the rule results are computed from the ledger, and published as Parquet under
``<lake>/quality/`` (a local folder or the object store, see ``etl.lake``) for the warehouse and
the reports once for a batch of windows (``publish_quality``).
"""

from __future__ import annotations

import statistics
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.contracts import DatasetContract, load_profile, load_systems
from etl.duck import insert_rows
from etl.ledger import Ledger
from etl.rules import DATASET_KINDS, rules_for
from etl.settings import Paths

VALUE_KINDS_EXCLUDED = ("not_null", "unique", "volume", "freshness")


def dataset_checks(
    ledger: Ledger, staged, dataset: DatasetContract, tz: str
) -> tuple[list[dict], datetime | None]:
    """(results of the volume and freshness rules, newest data time) for a window at commit."""
    rules = {r.kind: r for r in rules_for(dataset)}
    start = datetime.fromisoformat(staged.window_start)
    end = datetime.fromisoformat(staged.window_end)
    history = ledger.history(
        staged.system, staged.dataset, start, dataset.quality.volume.lookback_windows
    )

    volume = dataset.quality.volume
    past = [h["rows_read"] for h in history if h["rows_read"] is not None]
    verdict = None
    if len(past) >= 3:
        median = statistics.median(past)
        if staged.rows_read < volume.min_ratio * median:
            verdict = "low"
        elif staged.rows_read > volume.max_ratio * median:
            verdict = "high"

    if staged.newest_data_at:
        newest = datetime.fromisoformat(staged.newest_data_at)
        newest = newest if newest.tzinfo else newest.replace(tzinfo=ZoneInfo(tz))
    elif staged.rows_read or staged.strategy != "new_files":
        newest = end
    else:
        newest = None
    known = [h["newest_data_at"] for h in history if h["newest_data_at"] is not None]
    newest = max([t for t in (newest, *known) if t is not None], default=None)
    stale = newest is None or (end - newest).total_seconds() > dataset.freshness_sla_hours * 3600

    def result(kind: str, failure: str | None) -> dict:
        rule = rules[kind]
        return {
            "rule_id": rule.id,
            "severity": rule.severity,
            "checked": 1,
            "failed": int(failure is not None),
            "reasons": {failure: 1} if failure else {},
        }

    return [result("volume", verdict), result("freshness", "stale" if stale else None)], newest


# --------------------------------------------------------------------------- reading results


def _departments(con) -> None:
    """A small table system -> department, from the contracts."""
    rows = [
        {"system": s.system, "dept_code": s.department.code, "dept_name": s.department.name}
        for s in load_systems()
    ]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE departments "
        "(system VARCHAR, dept_code VARCHAR, dept_name VARCHAR)"
    )
    insert_rows(con, "INSERT INTO departments", rows)


LATEST_LANDED = """
    SELECT * FROM runs WHERE status = 'landed'
    QUALIFY row_number() OVER (PARTITION BY system, dataset, window_start
                               ORDER BY finished_at DESC) = 1
"""


def latest_results(ledger: Ledger, department: str | None = None) -> list[dict]:
    """Per dataset, its newest landed window with the rules that failed (counts and reasons)."""
    with ledger.connect() as con:
        _departments(con)
        cur = con.execute(
            f"""
            WITH landed AS ({LATEST_LANDED}),
            latest AS (SELECT * FROM landed
                QUALIFY row_number() OVER (PARTITION BY system, dataset
                                           ORDER BY window_start DESC) = 1)
            SELECT d.dept_code, d.dept_name, l.system, l.dataset, l.window_start, l.rows_read,
                   l.rows_landed, l.rows_quarantined, r.rule_id, r.severity, r.checked,
                   r.failed, r.reasons
            FROM latest l JOIN departments d USING (system)
            LEFT JOIN rule_results r ON r.attempt_id = l.attempt_id AND r.failed > 0
            WHERE ? IS NULL OR d.dept_code = ? OR d.dept_name = ? OR l.system = ?
            ORDER BY d.dept_code, l.system, l.dataset, r.severity, r.failed DESC""",
            [department] * 4,
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


SCORECARD = """
WITH latest AS ({latest}),
per_run AS (
    SELECT l.system, l.dataset, l.attempt_id, l.rows_read, l.rows_landed, l.rows_quarantined,
           CAST(timezone(?, l.window_start) AS DATE) AS day,
           sum(r.failed) FILTER (r.rule_id LIKE 'not_null:%') AS null_failed,
           sum(r.checked) FILTER (r.rule_id LIKE 'not_null:%') AS null_checked,
           sum(r.failed) FILTER (split_part(r.rule_id, ':', 1) NOT IN {excluded}
                                 AND r.severity = 'blocking') AS invalid,
           sum(r.checked) FILTER (split_part(r.rule_id, ':', 1) NOT IN {excluded}
                                  AND r.severity = 'blocking') AS values_checked,
           sum(r.failed) FILTER (r.rule_id LIKE 'unique:%') AS repeated,
           sum(r.checked) FILTER (r.rule_id LIKE 'unique:%') AS keys_checked,
           bool_or(r.rule_id = 'freshness' AND r.failed = 0) AS fresh,
           list(l.system || '.' || l.dataset || ' ' || r.rule_id || ' ' || r.failed
                ORDER BY r.failed DESC) FILTER (r.failed > 0) AS failing
    FROM latest l LEFT JOIN rule_results r USING (attempt_id)
    GROUP BY ALL
)
SELECT d.dept_code, d.dept_name, p.day,
       count(*) AS datasets,
       sum(p.rows_read) AS rows_read, sum(p.rows_landed) AS rows_landed,
       sum(p.rows_quarantined) AS rows_quarantined,
       round(avg(CASE WHEN p.fresh THEN 1.0 ELSE 0.0 END), 4) AS timeliness,
       round(1 - coalesce(sum(p.null_failed) / nullif(sum(p.null_checked), 0), 0), 4)
           AS completeness,
       round(1 - coalesce(sum(p.invalid) / nullif(sum(p.values_checked), 0), 0), 4) AS validity,
       round(1 - coalesce(sum(p.repeated) / nullif(sum(p.keys_checked), 0), 0), 4) AS uniqueness,
       flatten(list(coalesce(p.failing, []))) AS failing_rules
FROM per_run p JOIN departments d USING (system)
GROUP BY ALL ORDER BY p.day, d.dept_code
"""


def publish_quality(where: Paths) -> str:
    """Rewrite ``<lake>/quality/scorecard.parquet`` and ``rule_results.parquet`` from the
    ledger, days in the county's time zone. Once for a batch of windows, not at every window's
    commit (15-20 ms each, a fifth of a quiet night): the warehouse build publishes them before
    its plan, as its quality models read them, and ``countylake run`` after its datasets.
    Readers never see half a file: swapped in by rename in a local lake, written in the local
    staging area and uploaded whole (one PUT each) to an object store. Returns the folder as
    readers name it."""
    ledger, tz = Ledger(where.ledger), load_profile().timezone
    if not where.lake_remote:
        target = where.lake / "quality"
        _write_quality(target, ledger, tz)
        return str(target)
    import tempfile

    from etl import lake

    fs, root = lake.filesystem(where)
    where.staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quality-", dir=where.staging) as tmp:
        for path in _write_quality(Path(tmp), ledger, tz):
            lake.upload(fs, path, f"{root}/quality/{path.name}")
    return lake.location(where, "quality")


def _scorecard() -> str:
    excluded = "(" + ", ".join(f"'{k}'" for k in VALUE_KINDS_EXCLUDED) + ")"
    return SCORECARD.format(latest=LATEST_LANDED, excluded=excluded)


def _write_quality(target: Path, ledger: Ledger, tz: str) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    with ledger.connect() as con:
        _departments(con)
        queries = {
            "scorecard": (_scorecard(), [tz]),
            "rule_results": (
                f"SELECT r.*, d.dept_code, d.dept_name FROM ({LATEST_LANDED}) l "
                "JOIN rule_results r USING (attempt_id) JOIN departments d ON d.system = r.system",
                [],
            ),
        }
        for name, (sql, params) in queries.items():
            tmp = target / f".{name}.parquet.tmp"
            con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT parquet)", params)
            tmp.replace(target / f"{name}.parquet")
            written.append(target / f"{name}.parquet")
    return written


SCORE_COLUMNS = ["timeliness", "completeness", "validity", "uniqueness"]


def scorecard_rows(where: Paths) -> list[dict]:
    """The scorecard as the ledger has it now, newest day first, for printing (the published
    file is as of the last warehouse build or ``countylake run``)."""
    if not where.ledger.exists():
        return []
    with Ledger(where.ledger).connect() as con:
        _departments(con)
        cur = con.execute(
            "SELECT dept_name AS department, CAST(day AS VARCHAR) AS day, datasets, "
            "CAST(rows_read AS BIGINT) AS read, CAST(rows_quarantined AS BIGINT) AS quarantined, "
            + ", ".join(f"printf('%.2f%%', 100 * {c}) AS {c}" for c in SCORE_COLUMNS)
            + f", len(failing_rules) AS failing_rules FROM ({_scorecard()}) "
            "ORDER BY day DESC, dept_code",
            [load_profile().timezone],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# Data Docs show the newest runs: docs_runs hands over these, and the index lists as many
DOCS_RUNS = 200


def write_quality_docs(where: Paths) -> Path:
    """The Great Expectations Data Docs of the ledger's newest windows (``etl.gx``), under
    ``<home>/quality/docs``: what ``countylake quality --docs``, the warehouse DAG and the
    bench render. Returns the index page."""
    from etl.gx import write_data_docs

    return write_data_docs(where.home, docs_runs(Ledger(where.ledger)))


def docs_runs(ledger: Ledger, limit: int = DOCS_RUNS) -> list[dict]:
    """The newest landed windows with their rule results, shaped for ``etl.gx.write_data_docs``.
    A window whose page would say nothing new is left out (the ledger and the scorecard still
    count it): one that landed and quarantined no row and failed no rule, and one of a register
    that kept the verdict of its last read (its page would be that read's) unless the window's
    own volume or freshness failed. A quiet night lands one for every dataset. One that failed
    a rule (a stale source, too few rows) is kept."""
    import json

    own = "(" + ", ".join(f"'{kind}'" for kind in sorted(DATASET_KINDS)) + ")"
    with ledger.connect() as con:
        cur = con.execute(
            f"""SELECT l.system, l.dataset, l.attempt_id, l.window_start, l.finished_at,
                       l.rows_read, list({{'rule_id': r.rule_id, 'severity': r.severity,
                       'checked': r.checked, 'failed': r.failed, 'reasons': r.reasons}})
                FROM ({LATEST_LANDED}) l JOIN rule_results r USING (attempt_id)
                GROUP BY ALL HAVING bool_or(r.failed > 0 AND r.rule_id IN {own})
                    OR (l.verdict_of IS NULL
                        AND (l.rows_landed + l.rows_quarantined > 0 OR bool_or(r.failed > 0)))
                ORDER BY l.window_start DESC, l.system, l.dataset LIMIT ?""",
            [limit],
        )
        rows = cur.fetchall()
    return [
        {
            "system": system,
            "dataset": dataset,
            "attempt_id": attempt,
            "window_start": start.isoformat(),
            "run_time": finished.isoformat(),
            "rows": read,
            "results": [{**r, "reasons": json.loads(r["reasons"] or "{}")} for r in results],
        }
        for system, dataset, attempt, start, finished, read, results in rows
    ]
