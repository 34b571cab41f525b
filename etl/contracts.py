"""Contracts: the county described as data.

Everything the platform does is driven by the YAML files under ``schemas/``:

- ``schemas/county.yaml``: the county profile (codes, towns, time zone, reference tables);
- ``schemas/systems/<system>/system.yaml``: one department system (department, source kind,
  connection id, schedule);
- ``schemas/systems/<system>/<dataset>.yaml``: one dataset of that system (key, incremental
  strategy, columns with type, code standard, grade and mask, freshness SLA).

This module loads them into pydantic models. Only pydantic and yaml are imported here because
DAG files import it at parse time.
"""

from __future__ import annotations

import csv
import os
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
# libyaml when present: contracts are parsed on every DAG-file parse.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ContractError(ValueError):
    """A contract file is invalid; the message names the file, the field and the reason."""

    def __init__(self, path: Path | str, field: str, reason: str):
        self.path, self.field, self.reason = str(path), field, reason
        super().__init__(f"{path}: {field}: {reason}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- county profile


class Division(Strict):
    code: str
    name: str


class HistoricalCode(Strict):
    """A division code no longer in use that still appears in ID numbers (e.g. 372331)."""

    code: Annotated[str, Field(pattern=r"^\d{6}$")]
    name: str
    until_year: int


class Town(Strict):
    code: Annotated[str, Field(pattern=r"^\d{9}$")]
    name: str


class Village(Strict):
    code: str
    name: str
    town_code: str
    town_name: str


class SimulationProfile(Strict):
    """Sizes of the simulated county at scale 1 and the first simulated day (fixed, so a seed
    gives the same county whatever today's date is)."""

    residents: int = 370_000
    entities: int = 30_000
    start_date: str = "2026-11-01"


class City(Division):
    """The prefecture the county belongs to, with its county-level units (GB/T 2260), so that
    ID numbers issued elsewhere in the city can be told from invented codes."""

    units: list[Division] = []


class CountyProfile(Strict):
    code: Annotated[str, Field(pattern=r"^\d{6}$")]
    name: str
    name_en: str
    city: City
    province: Division
    timezone: str = "Asia/Shanghai"
    area_codes: list[Annotated[str, Field(pattern=r"^0\d{2,3}$")]] = Field(
        ["0533"], description="telephone area codes of the county's landlines"
    )
    historical_codes: list[HistoricalCode] = []
    towns: list[Town]
    villages_table: str
    exchanges: list[str] = []
    simulation: SimulationProfile = SimulationProfile()
    path: Path | None = None

    @model_validator(mode="after")
    def _towns_in_county(self) -> CountyProfile:
        for i, town in enumerate(self.towns):
            if not town.code.startswith(self.code):
                raise ValueError(f"towns[{i}].code {town.code} is not inside county {self.code}")
        return self

    @property
    def villages_path(self) -> Path:
        """The village table the profile names, beside the profile."""
        return (self.path.parent if self.path else REPO_ROOT / "schemas") / self.villages_table

    @cached_property
    def villages(self) -> list[Village]:
        """The village-level units, read from the reference table named by the profile."""
        table = self.villages_path
        towns = {t.code for t in self.towns}
        stat = table.stat()
        rows = list(_read_villages(table, stat.st_mtime_ns, stat.st_size))
        for line, v in enumerate(rows, start=2):
            if v.town_code not in towns:
                raise ContractError(
                    table,
                    f"line {line}: town_code9",
                    f"{v.town_code} is not a town of the county profile",
                )
        return rows


@lru_cache(maxsize=8)
def _read_villages(table: Path, _mtime_ns: int, _size: int) -> tuple[Village, ...]:
    """A village table's rows, once per process and version of the file: every validator
    needs them, and parsing them took 15 ms (most of a window's work on a quiet night)."""
    with open(table, encoding="utf-8") as f:
        return tuple(
            Village(
                code=r["code12"],
                name=r["name"],
                town_code=r["town_code9"],
                town_name=r["town_name"],
            )
            for r in csv.DictReader(f)
        )


def judging_digest(dataset: DatasetContract, code: tuple[str, ...], *extra: str) -> str:
    """A digest of what judges the rows of ``dataset``: its contract, the county profile and
    its village table (not where the files lie: another checkout judges alike), the modules of
    this package that ``code`` names (glob patterns) and ``extra``. A register is read again
    (etl.snapshot) and a suite rendered again (etl.gx) when it changes."""
    import hashlib

    profile = load_profile()
    table = profile.villages_path
    parts = [
        dataset.model_dump_json(exclude={"path"}),
        profile.model_dump_json(exclude={"path"}),
        *_judging_files(table, table.stat().st_mtime_ns, code),
        *extra,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@lru_cache(maxsize=8)
def _judging_files(table: Path, _mtime_ns: int, code: tuple[str, ...]) -> tuple[str, ...]:
    """The code's files and the village table, read once per process (and table version)."""
    package = Path(__file__).parent
    found = sorted(f for pattern in code for f in package.glob(pattern))
    return tuple(f.read_text(encoding="utf-8") for f in [*found, table])


# --------------------------------------------------------------------------- department systems


class SourceKind(StrEnum):
    SQL = "sql"
    CSV = "csv"
    EXCEL = "excel"
    HTTP = "http"


class Department(Strict):
    code: str
    name: str
    name_en: str


class SystemContract(Strict):
    """One department's system: where its data lives and when it is pulled."""

    system: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    department: Department
    description: str
    kind: SourceKind
    connection: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    embedded: str = Field(
        description="connection used when nothing else is configured; {home} is the data root"
    )
    schedule: str = "0 0 * * *"
    source_timezone: str | None = None
    retries: int = 2
    owner: str = "county-data-center"
    datasets: list[DatasetContract] = []
    path: Path | None = None

    @property
    def dag_id(self) -> str:
        return f"ingest_{self.system}"

    def dataset(self, name: str) -> DatasetContract:
        for d in self.datasets:
            if d.dataset == name:
                return d
        raise KeyError(f"system {self.system} has no dataset {name!r}")


ColumnType = Literal["string", "int", "float", "bool", "date", "timestamp", "decimal"]
Grade = Literal["public", "L1", "L2", "L3", "L4", "important", "core"]
Mask = Literal[
    "none",
    "name",
    "id_number",
    "mobile",
    "landline",
    "address",
    "bank_card",
    "credit_code",
    "pseudonym",
    "drop",
]
Standard = Literal[
    "gb11643",
    "gb32100",
    "gb2260",
    "nbs_division",
    "gb2261",
    "gb3304",
    "gb4754",
    "mobile",
    "landline",
    "phone",
]


def _compiles(value: str) -> str:
    import re

    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"pattern does not compile: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_compiles)]  # a regular expression that compiles


class Column(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    type: ColumnType
    source_name: str | None = Field(
        None,
        description="name at the source when it differs (Chinese CSV headers, pinyin API fields)",
    )
    nullable: bool = True
    standard: Standard | None = None
    grade: Grade = "L2"
    mask: Mask = "none"
    description: str = ""
    values: list[str] | None = Field(None, description="the allowed values (a local code list)")
    min: float | None = None
    max: float | None = None
    pattern: Regex | None = Field(None, description="a regular expression the text must match")

    @property
    def at_source(self) -> str:
        return self.source_name or self.name


class Incremental(Strict):
    """How the changes of one window are found.

    - ``snapshot``: read the whole table, compare with the previous snapshot (finds deletes),
      unless the database's digest of it is the previous read's (``etl.snapshot``);
    - ``watermark``: rows whose ``column`` lies in the window (an update timestamp);
    - ``append_id``: rows whose integer ``column`` is above the last committed id;
    - ``new_files``: export files not seen before, recognised by name and SHA-256.
    """

    strategy: Literal["snapshot", "watermark", "append_id", "new_files"]
    column: str | None = None

    @model_validator(mode="after")
    def _column_when_needed(self) -> Incremental:
        if self.strategy in ("watermark", "append_id") and not self.column:
            raise ValueError(f"strategy {self.strategy} needs a column")
        if self.strategy in ("snapshot", "new_files") and self.column:
            raise ValueError(f"strategy {self.strategy} takes no column")
        return self


class FileSource(Strict):
    """Export files dropped by the department (CSV or Excel)."""

    pattern: str
    encodings: list[str] = ["utf-8"]
    delimiter: str = ","
    sheet: str | int = 0

    @field_validator("encodings")
    @classmethod
    def _known_encodings(cls, value: list[str]) -> list[str]:
        import codecs

        for name in value:
            try:
                codecs.lookup(name)
            except LookupError as exc:
                raise ValueError(f"unknown encoding {name!r}") from exc
        return value


class HttpSource(Strict):
    """A paged JSON API signed with X-Client-Id / X-Timestamp / X-Nonce / X-Signature."""

    path: str
    records_field: str = "data"
    paging: Literal["page", "startnum"] = "page"
    page_size: int = 500
    window_params: tuple[str, str] = ("start", "end")
    rate_limit_per_s: float = 20.0


Severity = Literal["blocking", "warning"]


class CrossCheck(Strict):
    """A rule over two columns of the same row.

    - ``id_birth_date``: the birth date encoded in an ID number equals the date column;
    - ``id_sex``: the sex encoded in an ID number equals the GB/T 2261.1 sex column;
    - ``village_in_town``: a village code lies in the declared town.
    """

    check: Literal["id_birth_date", "id_sex", "village_in_town"]
    columns: tuple[str, str]
    severity: Severity = "blocking"


class VolumePolicy(Strict):
    """Warn when a window's row count leaves the band around the median of recent windows."""

    lookback_windows: int = 7
    min_ratio: float = 0.2
    max_ratio: float = 5.0


class QualityPolicy(Strict):
    """How a dataset is judged: schema-drift policy, cross-column checks, volume band, and
    severity overrides by rule id (every rule is blocking unless said otherwise)."""

    drift: Literal["evolve", "freeze", "discard_columns"] = "evolve"
    checks: list[CrossCheck] = []
    volume: VolumePolicy = VolumePolicy()
    severity: dict[str, Severity] = {}


class DatasetContract(Strict):
    dataset: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    title: str
    title_en: str
    table: str | None = None
    files: FileSource | None = None
    api: HttpSource | None = None
    primary_key: list[str]
    incremental: Incremental
    freshness_sla_hours: int = 26
    schedule: str | None = None
    columns: list[Column]
    quality: QualityPolicy = QualityPolicy()
    path: Path | None = None

    @cached_property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @model_validator(mode="after")
    def _consistent(self) -> DatasetContract:
        names = self.column_names
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate columns {sorted(dupes)}")
        for key in self.primary_key:
            if key not in names:
                raise ValueError(f"primary_key {key!r} is not a column")
        column = self.incremental.column
        if column and column not in names:
            raise ValueError(f"incremental.column {column!r} is not a column")
        if sum(x is not None for x in (self.table, self.files, self.api)) != 1:
            raise ValueError("exactly one of table, files, api must be given")
        if (self.incremental.strategy == "new_files") != (self.files is not None):
            raise ValueError("new_files goes with files, and files with new_files")
        for i, check in enumerate(self.quality.checks):
            for name in check.columns:
                if name not in names:
                    raise ValueError(f"quality.checks[{i}] names {name!r}, which is not a column")
        from etl.rules import rules_for  # the rule ids overrides may name

        known = {rule.id for rule in rules_for(self)}
        unknown = sorted(set(self.quality.severity) - known)
        if unknown:
            raise ValueError(
                f"quality.severity names unknown rules {unknown}; known: {sorted(known)}"
            )
        return self


SystemContract.model_rebuild()


# --------------------------------------------------------------------------- exchanges (uplinks)
#
# ``schemas/exchanges/<exchange>.yaml``: one file per upstream data-sharing exchange (the city's,
# the province's), listing the resources the county shares with it, each with its catalogue
# metadata (政务信息资源目录, GB/T 21063), the warehouse relation it is read from, its items
# with classification grade and mask, its key, schedule and transport.

ShareType = Literal["无条件共享", "有条件共享", "不予共享"]
OpenType = Literal["无条件开放", "有条件开放", "不予开放"]
ShareMethod = Literal["库表", "接口", "文件"]
UpdateCycle = Literal["实时", "每日", "每周", "每月", "每季度", "每年", "不定期"]
UplinkMask = Literal[Mask, "year"]  # an exchange may get a birth date as its year only
GRADE_ORDER: tuple[str, ...] = get_args(Grade)  # lowest to highest
# the share method a transport implements (GB/T 21063: 库表 / 接口 / 文件)
TRANSPORT_METHOD = {"frontdb": "库表", "http": "接口", "package": "文件"}
_ITEM = r"^[A-Za-z][A-Za-z0-9_]*$"
_ID = r"^[a-z][a-z0-9_]*$"


def grade_above(grade: str, ceiling: str) -> bool:
    """Whether ``grade`` is more sensitive than ``ceiling`` (public < L1..L4 < important < core)."""
    return GRADE_ORDER.index(grade) > GRADE_ORDER.index(ceiling)


class ControlColumns(Strict):
    """Names of the exchange's control columns on every row (front-end tables and data files):
    operation flag I/U/D, change time, batch (package) id, row number and row status."""

    op: Annotated[str, Field(pattern=_ITEM)] = "op_flag"
    change_time: Annotated[str, Field(pattern=_ITEM)] = "change_time"
    batch_id: Annotated[str, Field(pattern=_ITEM)] = "batch_id"
    row_no: Annotated[str, Field(pattern=_ITEM)] = "row_no"
    status: Annotated[str, Field(pattern=_ITEM)] = "status"


class _TransportBase(Strict):
    connection: Annotated[str, Field(pattern=_ID)] = Field(
        description="connection id, resolved like a department system's (environment first)"
    )
    embedded: str = Field(description="the demo default; {home} is the data root")
    signing_key: Annotated[str, Field(pattern=_ID)] = Field(
        description="id of the shared HMAC secret (COUNTYLAKE_SECRET_<ID> or <home>/secrets/)"
    )
    timeout_s: float = 30.0


class FrontDbTransport(_TransportBase):
    """前置库: rows written into agreed tables of a front-end database (SQLAlchemy URL) with a
    batch table as commit marker; the receiver writes back a feedback table."""

    kind: Literal["frontdb"]
    batch_table: Annotated[str, Field(pattern=_ITEM)] = "exch_batch"
    feedback_table: Annotated[str, Field(pattern=_ITEM)] = "exch_feedback"
    feedback_errors_table: Annotated[str, Field(pattern=_ITEM)] = "exch_feedback_error"


class PackageTransport(_TransportBase):
    """File package: data files plus a manifest and its HMAC signature, written atomically into
    an outbox (a local path or any fsspec URL); receipts come back as files beside it."""

    kind: Literal["package"]
    format: Literal["parquet", "csv"] = "parquet"


class HttpTransport(_TransportBase):
    """Signed HTTP push (X-Client-Id, X-Timestamp, X-Nonce, X-Signature); the receipt is the
    answer, or is fetched later by package id."""

    kind: Literal["http"]


Transport = Annotated[
    FrontDbTransport | PackageTransport | HttpTransport, Field(discriminator="kind")
]


class RetryPolicy(Strict):
    attempts: Annotated[int, Field(ge=1, le=20)] = 4
    backoff_s: Annotated[float, Field(ge=0)] = 2.0
    max_backoff_s: Annotated[float, Field(ge=0)] = 120.0


class ExchangeColumn(Strict):
    """One item of a shared resource: the source column, the exchange's item name (often a
    pinyin abbreviation), its grade, and the mask applied when the exchange is not entitled to
    that grade unmasked."""

    name: Annotated[str, Field(pattern=_ID)]
    item: Annotated[str, Field(pattern=_ITEM)]
    title: str
    type: ColumnType
    grade: Grade
    mask: UplinkMask = "none"
    nullable: bool = True
    pattern: Regex | None = Field(None, description="a regular expression the receiver checks")
    description: str = ""


class ExchangeResource(Strict):
    """A resource of the catalogue shared with one exchange."""

    resource: Annotated[str, Field(pattern=_ID)]
    code: str = Field(description="catalogue resource code, checked by the exchange's pattern")
    name: str
    name_en: str = ""
    summary: str
    category: str = Field(description="catalogue category, e.g. 基础/法人单位 or 主题/健康保障")
    provider: Annotated[str, Field(pattern=_ID)] = Field(
        description="the providing department: a system folder under schemas/systems"
    )
    share_type: ShareType
    share_condition: str = ""
    share_method: ShareMethod
    open_type: OpenType = "不予开放"
    update_cycle: UpdateCycle
    publish_date: str | None = None
    source: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")] = Field(
        description="the warehouse relation schema.table the rows come from"
    )
    key: list[str] = Field(min_length=1)
    columns: list[ExchangeColumn] = Field(min_length=1)
    table: Annotated[str, Field(pattern=_ITEM)] | None = Field(
        None, description="the agreed table at a front-end database (前置库)"
    )
    transport: str | None = None
    schedule: str | None = None

    def column(self, name: str) -> ExchangeColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


class ExchangeContract(Strict):
    """One upstream exchange (the city's or the province's data-sharing platform)."""

    exchange: Annotated[str, Field(pattern=_ID)]
    name: str
    name_en: str
    level: Literal["city", "province"]
    receiver: Division
    client_id: str = Field(description="the county's id at this exchange (X-Client-Id)")
    schedule: str
    trigger: Literal["cron", "cron_or_assets"] = "cron_or_assets"
    entitlement: dict[ShareType, Grade] = Field(
        description="per share type, the highest grade the exchange may receive unmasked"
    )
    resource_code_pattern: str
    transports: dict[Annotated[str, Field(pattern=_ID)], Transport]
    default_transport: str
    control: ControlColumns = ControlColumns()
    retry: RetryPolicy = RetryPolicy()
    owner: str = "county-data-center"
    resources: list[ExchangeResource] = Field(min_length=1)
    path: Path | None = None

    @property
    def dag_id(self) -> str:
        return f"uplink_{self.exchange}"

    def resource(self, name: str) -> ExchangeResource:
        for r in self.resources:
            if r.resource == name:
                return r
        raise KeyError(f"exchange {self.exchange} has no resource {name!r}")

    def transport_of(self, resource: ExchangeResource):
        return self.transports[resource.transport or self.default_transport]

    def ceiling(self, resource: ExchangeResource) -> str:
        """The highest grade this exchange may receive unmasked for the resource's share type."""
        return self.entitlement.get(resource.share_type, "public")


# --------------------------------------------------------------------------- loading


def schemas_root() -> Path:
    return Path(os.environ.get("COUNTYLAKE_SCHEMAS", REPO_ROOT / "schemas"))


_PARSED_YAML: dict[tuple[str, int, int], dict] = {}


def _read_yaml(path: Path) -> dict:
    """The file's mapping, parsed once per version of the file: a pipeline step reads the
    contracts several times, and YAML parsing was most of a quiet dataset run's own work.
    Callers must not change the mapping."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _PARSED_YAML:
        _PARSED_YAML[key] = _parse_yaml(path)
    return _PARSED_YAML[key]


def _parse_yaml(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ContractError(path, where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ContractError(path, "(file)", "expected a mapping at the top level")
    return data


def _parse(model: type[Strict], path: Path, data: dict, **extra):
    try:
        return model.model_validate({**data, **extra, "path": path})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(contract)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ContractError(path, field, err["msg"] + more) from exc


def load_profile(root: Path | None = None) -> CountyProfile:
    path = (root or schemas_root()) / "county.yaml"
    return _parse(CountyProfile, path, _read_yaml(path))


_LOADED_SYSTEMS: dict[tuple, SystemContract] = {}


def load_system(directory: Path) -> SystemContract:
    """Load one system folder: ``system.yaml`` plus one file per dataset. Once per process
    and version of its files: a dataset's run loads its contracts a dozen times, and
    validating them was 6 ms each time. The contracts are frozen; callers must not change
    their lists."""
    files = sorted(directory.glob("*.yaml"))
    stamps = ((f.name, st.st_mtime_ns, st.st_size) for f in files for st in [f.stat()])
    key = (str(directory), *stamps)
    if key not in _LOADED_SYSTEMS:
        _LOADED_SYSTEMS[key] = _load_system(directory, files)
    return _LOADED_SYSTEMS[key]


def _load_system(directory: Path, files: list[Path]) -> SystemContract:
    datasets = [_parse(DatasetContract, p, _read_yaml(p)) for p in files if p.name != "system.yaml"]
    path = directory / "system.yaml"
    system = _parse(SystemContract, path, _read_yaml(path), datasets=datasets)
    if system.system != directory.name:
        raise ContractError(path, "system", f"{system.system!r} differs from its folder name")
    if not datasets:
        raise ContractError(directory, "(datasets)", "a system needs at least one dataset file")
    for d in datasets:
        if system.kind == SourceKind.SQL and d.table is None:
            raise ContractError(d.path, "table", f"system kind {system.kind} needs a table")
        if system.kind in (SourceKind.CSV, SourceKind.EXCEL) and d.files is None:
            raise ContractError(d.path, "files", f"system kind {system.kind} needs files")
        if system.kind == SourceKind.HTTP and d.api is None:
            raise ContractError(d.path, "api", "system kind http needs api")
    return system


def load_systems(root: Path | None = None) -> list[SystemContract]:
    base = (root or schemas_root()) / "systems"
    return [load_system(d) for d in sorted(base.iterdir()) if (d / "system.yaml").exists()]


def find_dataset(
    system: str, dataset: str, root: Path | None = None
) -> tuple[SystemContract, DatasetContract]:
    sys_contract = load_system((root or schemas_root()) / "systems" / system)
    return sys_contract, sys_contract.dataset(dataset)


def check_all(root: Path | None = None) -> list[ContractError]:
    """Validate every contract; return the errors instead of stopping at the first."""
    root = root or schemas_root()
    errors: list[ContractError] = []
    try:
        profile = load_profile(root)
        profile.villages  # noqa: B018 - reading the table validates it
    except ContractError as exc:
        errors.append(exc)
    for d in sorted((root / "systems").iterdir()):
        if d.is_dir():
            try:
                load_system(d)
            except ContractError as exc:
                errors.append(exc)
    try:
        enabled = load_profile(root).exchanges
    except ContractError:  # already reported above
        enabled = []
    errors += check_exchanges(root, enabled)
    return errors


def _exchange_problems(ex: ExchangeContract, systems: set[str] | None) -> list[tuple[str, str]]:
    """Rules across fields of an exchange contract, as (field, reason) pairs."""
    import re

    problems: list[tuple[str, str]] = []
    try:
        code_re = re.compile(ex.resource_code_pattern)
    except re.error as exc:
        return [("resource_code_pattern", f"does not compile: {exc}")]
    if ex.default_transport not in ex.transports:
        problems.append(("default_transport", f"{ex.default_transport!r} is not in transports"))
    for share, grade in ex.entitlement.items():
        if share == "不予共享":
            problems.append((f"entitlement.{share}", "a 不予共享 resource is never shared"))
        elif grade in ("important", "core"):
            problems.append((f"entitlement.{share}", f"{grade} data never leaves unmasked"))
    seen_codes: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    for i, r in enumerate(ex.resources):
        at = f"resources.{i}"
        if not code_re.fullmatch(r.code):
            problems.append((f"{at}.code", f"{r.code!r} does not match {ex.resource_code_pattern}"))
        if r.code in seen_codes:
            problems.append((f"{at}.code", f"{r.code} repeats resources.{seen_codes[r.code]}"))
        if r.resource in seen_ids:
            problems.append(
                (f"{at}.resource", f"{r.resource} repeats resources.{seen_ids[r.resource]}")
            )
        seen_codes.setdefault(r.code, i)
        seen_ids.setdefault(r.resource, i)
        if systems is not None and r.provider not in systems:
            problems.append((f"{at}.provider", f"{r.provider!r} is not a system under systems/"))
        if r.share_type == "不予共享":
            problems.append(
                (f"{at}.share_type", "a 不予共享 resource cannot be sent to an exchange")
            )
        if r.share_type == "有条件共享" and not r.share_condition:
            problems.append((f"{at}.share_condition", "有条件共享 needs its condition"))
        name = r.transport or ex.default_transport
        transport = ex.transports.get(name)
        if transport is None:
            problems.append((f"{at}.transport", f"{name!r} is not in transports"))
        else:
            method = TRANSPORT_METHOD[transport.kind]
            if r.share_method != method:
                problems.append(
                    (f"{at}.share_method", f"{r.share_method} but transport {name!r} is {method}")
                )
            if transport.kind == "frontdb" and not r.table:
                problems.append((f"{at}.table", "a 前置库 (frontdb) resource needs its table"))
        names = [c.name for c in r.columns]
        items = [c.item.lower() for c in r.columns]
        controls = {v.lower() for v in ex.control.model_dump().values()}
        ceiling = ex.ceiling(r)
        for j, c in enumerate(r.columns):
            cat = f"{at}.columns.{j}"
            if names.count(c.name) > 1:
                problems.append((f"{cat}.name", f"column {c.name} is listed twice"))
            if items.count(c.item.lower()) > 1:
                problems.append((f"{cat}.item", f"item {c.item} is listed twice"))
            if c.item.lower() in controls:
                problems.append((f"{cat}.item", f"{c.item} is a control column name"))
            above = grade_above(c.grade, ceiling)
            if c.grade in ("important", "core") and c.mask != "drop":
                problems.append((f"{cat}.mask", f"{c.grade} data must be dropped (mask: drop)"))
            elif above and c.mask == "none":
                problems.append(
                    (
                        f"{cat}.mask",
                        f"grade {c.grade} is above what {ex.exchange} may receive unmasked for "
                        f"{r.share_type} ({ceiling}): declare a mask or drop",
                    )
                )
            if c.name in r.key:
                if above and c.mask not in ("none", "pseudonym"):
                    problems.append(
                        (f"{cat}.mask", f"key column {c.name} may only be masked as a pseudonym")
                    )
                if c.nullable:
                    problems.append((f"{cat}.nullable", f"key column {c.name} cannot be nullable"))
        for key in r.key:
            if key not in names:
                problems.append((f"{at}.key", f"key {key!r} is not a column"))
    return problems


def load_exchange(path: Path, systems: set[str] | None = None) -> ExchangeContract:
    """Load and check one ``schemas/exchanges/<exchange>.yaml``."""
    contract = _parse(ExchangeContract, path, _read_yaml(path))
    if contract.exchange != path.stem:
        raise ContractError(path, "exchange", f"{contract.exchange!r} differs from the file name")
    problems = _exchange_problems(contract, systems)
    if problems:
        field, reason = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ContractError(path, field, reason + more)
    return contract


def _system_names(root: Path) -> set[str]:
    base = root / "systems"
    return (
        {d.name for d in base.iterdir() if (d / "system.yaml").exists()} if base.exists() else set()
    )


def load_exchanges(root: Path | None = None) -> list[ExchangeContract]:
    """Every exchange contract under ``schemas/exchanges/`` (all of them, enabled or not)."""
    root = root or schemas_root()
    folder = root / "exchanges"
    if not folder.exists():
        return []
    systems = _system_names(root)
    return [load_exchange(p, systems) for p in sorted(folder.glob("*.yaml"))]


def find_exchange(name: str, root: Path | None = None) -> ExchangeContract:
    root = root or schemas_root()
    path = root / "exchanges" / f"{name}.yaml"
    if not path.exists():
        raise ContractError(path, "(file)", f"no exchange contract named {name!r}")
    return load_exchange(path, _system_names(root))


def check_exchanges(root: Path | None = None, enabled: list[str] = ()) -> list[ContractError]:
    """Validate every exchange contract, and that each exchange the profile enables has one."""
    root = root or schemas_root()
    folder = root / "exchanges"
    errors: list[ContractError] = []
    systems = _system_names(root)
    found = set()
    for path in sorted(folder.glob("*.yaml")) if folder.exists() else []:
        found.add(path.stem)
        try:
            load_exchange(path, systems)
        except ContractError as exc:
            errors.append(exc)
    for name in enabled:
        if name not in found:
            errors.append(
                ContractError(
                    root / "county.yaml", "exchanges", f"no contract exchanges/{name}.yaml"
                )
            )
    return errors
