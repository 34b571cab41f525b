"""``simulate``: build or grow the simulated county's department systems under ``<home>``."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from etl.connections import record_deployment
from etl.contracts import SourceKind, SystemContract, load_profile, load_systems
from etl.settings import paths
from etl.simulate import sinks
from etl.simulate.county import County, DayOut

FORMAT = 1
TARGETS = ("sqlite", "postgres", "mariadb")


@dataclass
class SimulationSummary:
    day: int  # the last simulated day now present in the sources
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # rows written by this call
    target: str = "sqlite"
    regenerated: bool = False  # True when the sources were rebuilt from scratch
    days_added: list[int] = field(default_factory=list)
    seconds: float = 0.0


def state_path(home: Path) -> Path:
    return paths(home).sources / "simulation.json"


def read_state(home: Path) -> dict | None:
    path = state_path(home)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def dirt_counts(
    home: Path, system: str, dataset: str, day: int | None = None, scope: str = "written"
) -> dict[str, int]:
    """Counts of injected dirt by kind for one dataset, from ``simulation.json``.

    ``scope="written"`` counts dirty rows among the rows written on ``day`` (all days when
    None); ``scope="in_table"`` counts dirty rows held by a SQL table after ``day`` (the last
    day when None)."""
    state = read_state(home) or {}
    records = state.get("dirt" if scope == "written" else "dirt_in_table", [])
    if scope != "written" and day is None:
        day = state.get("day", 0)
    found: dict[str, int] = {}
    for r in records:
        if r["system"] == system and r["dataset"] == dataset and (day is None or r["day"] == day):
            found[r["kind"]] = found.get(r["kind"], 0) + r["count"]
    return found


def simulate(
    home: Path,
    *,
    scale: float = 1.0,
    days: int = 3,
    seed: int = 42,
    target: str = "sqlite",
    schemas_root: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> SimulationSummary:
    """Create (or grow to ``days``) the simulated department systems under ``home``."""
    began = time.perf_counter()
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if days < 0 or scale <= 0:
        raise ValueError("days must be >= 0 and scale > 0")
    say = progress or (lambda _msg: None)
    home = paths(home).home
    profile = load_profile(schemas_root)
    systems = load_systems(schemas_root)
    by_kind = {k: [s for s in systems if s.kind == k] for k in SourceKind}
    state = read_state(home)
    same = bool(
        state
        and state.get("format") == FORMAT
        and state.get("seed") == seed
        and float(state.get("scale")) == float(scale)
        and state.get("target") == target
        and state.get("county") == profile.code
        and state.get("contracts") == fingerprint(profile, systems)
        and _sources_present(home, by_kind, target)
    )
    done = int(state["day"]) if same else -1
    summary = SimulationSummary(day=max(done, 0), target=target, regenerated=not same)
    if same and days <= done:
        say(f"simulation already at day {done}; nothing to add")
        summary.seconds = time.perf_counter() - began
        return summary

    county = County(profile, systems, seed, scale)
    base = county.base()
    say(
        f"base county: {len(county.people):,} residents, {len(county.households):,} "
        f"households, {len(county.entities):,} entities, {len(county.sites):,} chemical sites"
    )
    if not same:
        state = {
            "format": FORMAT,
            "seed": seed,
            "scale": scale,
            "target": target,
            "county": profile.code,
            "start_date": profile.simulation.start_date,
            "contracts": fingerprint(profile, systems),
            "day": 0,
            "dates": {},
            "connections": {},
            "rows": [],
            "dirt": [],
            "dirt_in_table": [],
        }
        _forget_previous(home, by_kind[SourceKind.SQL], target)
        sql = _open_sql(by_kind[SourceKind.SQL], home, target, profile.code, fresh=True)
        for s in by_kind[SourceKind.SQL]:
            for d in s.datasets:
                sql[s.system].create(d)
        for s in by_kind[SourceKind.CSV] + by_kind[SourceKind.EXCEL]:
            sinks.reset_dir(sinks.export_dir(s, home))
        api = _open_api(by_kind[SourceKind.HTTP], home, fresh=True)
        _write_day(base, state, summary, sql, api, {}, home, county, say)
        for s in by_kind[SourceKind.SQL]:
            for d in s.datasets:
                sql[s.system].index(d)
            sql[s.system].conn.commit()
        start_day = 1
    else:
        for d in range(1, done + 1):  # replay the days already written, in memory only
            county.step(d, files=False)
        if done:
            say(f"replayed days 1-{done} in memory")
        sql = _open_sql(by_kind[SourceKind.SQL], home, target, profile.code, fresh=False)
        api = _open_api(by_kind[SourceKind.HTTP], home, fresh=False)
        start_day = done + 1
    files_of = {s.system: s for s in by_kind[SourceKind.CSV] + by_kind[SourceKind.EXCEL]}
    try:
        for d in range(start_day, days + 1):
            out = county.step(d, files=True)
            _write_day(out, state, summary, sql, api, files_of, home, county, say)
            summary.days_added.append(d)
            summary.day = d
            say(f"day {d} ({county.day_date(d).isoformat()}) written")
    finally:
        for sink in [*sql.values(), *api.values()]:
            sink.close()
    if target != "sqlite":
        urls = {
            s.connection: sql_url
            for s in by_kind[SourceKind.SQL]
            for sql_url in [sinks.SqlSink(target, s, home, profile.code).url]
        }
        record_deployment(paths(home), urls)
        state["connections"] = urls
    state["day"] = summary.day
    _save_state(home, state)
    summary.seconds = time.perf_counter() - began
    return summary


def fingerprint(profile, systems: list[SystemContract]) -> str:
    """What the simulated data depends on in the contracts: another fingerprint regenerates."""
    shape = {
        "profile": [
            profile.code,
            profile.city.code,
            profile.simulation.model_dump(),
            [h.model_dump() for h in profile.historical_codes],
            [v.code for v in profile.villages],
        ],
        "systems": [
            [
                s.system,
                s.kind,
                s.embedded,
                [
                    [
                        d.dataset,
                        d.table,
                        d.primary_key,
                        d.files.model_dump() if d.files else None,
                        [[c.name, c.at_source, c.type] for c in d.columns],
                    ]
                    for d in s.datasets
                ],
            ]
            for s in systems
        ],
    }
    text = json.dumps(shape, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _forget_previous(home: Path, systems: list[SystemContract], target: str) -> None:
    """Before a regeneration: no stale embedded databases beside a server target, and no
    deployment URLs of an earlier server target left pointing the pipeline elsewhere."""
    if target != "sqlite":
        for s in systems:
            stale = sinks.SqlSink("sqlite", s, home, "000000").path
            if stale.exists():
                stale.unlink()
    deployment = home / "connections.json"
    if deployment.exists():
        known = json.loads(deployment.read_text(encoding="utf-8"))
        kept = {k: v for k, v in known.items() if k not in {s.connection for s in systems}}
        if kept != known:
            deployment.write_text(json.dumps(kept, indent=2, ensure_ascii=False), encoding="utf-8")


def _sources_present(home: Path, by_kind: dict, target: str) -> bool:
    if target == "sqlite":
        for s in by_kind[SourceKind.SQL]:
            if not sinks.SqlSink(target, s, home, "000000").path.exists():
                return False
    return all(sinks.api_db_path(home, s).exists() for s in by_kind[SourceKind.HTTP])


def _open_sql(
    systems: list[SystemContract], home: Path, target: str, code: str, fresh: bool
) -> dict[str, sinks.SqlSink]:
    return {s.system: sinks.SqlSink(target, s, home, code).open(fresh) for s in systems}


def _open_api(systems: list[SystemContract], home: Path, fresh: bool) -> dict:
    stores = {}
    for s in systems:
        store = sinks.ApiStore(sinks.api_db_path(home, s), fresh)
        if fresh:
            for d in s.datasets:
                store.create(d, d.dataset)
        stores[s.system] = store
    return stores


def _write_day(
    out: DayOut,
    state: dict,
    summary: SimulationSummary,
    sql: dict,
    api: dict,
    files_of: dict[str, SystemContract],
    home: Path,
    county: County,
    say,
) -> None:
    day = out.day
    date = county.day_date(day).isoformat() if day else None
    if day:
        state["dates"][str(day)] = date

    def count(system: str, dataset: str, written: int, deleted: int) -> None:
        key = (system, dataset)
        summary.rows[key] = summary.rows.get(key, 0) + written
        state["rows"].append(
            {
                "system": system,
                "dataset": dataset,
                "day": day,
                "written": written,
                "deleted": deleted,
            }
        )

    for (system, dataset), delta in out.sql.items():
        contract = county.contract(system, dataset)
        n = sql[system].write(contract, delta.upsert, delta.delete, insert_only=day == 0)
        count(system, dataset, n, len(delta.delete or []))
        if day == 0 and n > 10_000:
            say(f"{system}: {n:,} {dataset} rows written")
    for sink in sql.values():
        sink.conn.commit()
    for (system, dataset), delta in out.api.items():
        contract = county.contract(system, dataset)
        n = api[system].write(contract, dataset, delta.upsert, delta.delete or [])
        count(system, dataset, n, 0)
    for store in api.values():
        store.conn.commit()
    ymd = (date or "").replace("-", "")
    for (system, dataset), frame in out.files.items():
        contract = county.contract(system, dataset)
        directory = sinks.export_dir(files_of[system], home)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / sinks.file_name(contract, ymd)
        if path.suffix.lower() == ".xlsx":
            sinks.write_xlsx(path, contract, frame, f"{date} 23:30:00")
        else:
            sinks.write_csv(path, contract, frame)
        count(system, dataset, len(frame), 0)
    for r in out.dirt:
        state["dirt"].append({**r, "date": date, "scope": "written"})
    for r in out.in_table:
        state["dirt_in_table"].append({**r, "date": date, "scope": "in_table"})
    state["day"] = day
    _save_state(home, state)


def _save_state(home: Path, state: dict) -> None:
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)
