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
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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

    @cached_property
    def villages(self) -> list[Village]:
        """The village-level units, read from the reference table named by the profile."""
        table = (self.path.parent if self.path else REPO_ROOT / "schemas") / self.villages_table
        towns = {t.code for t in self.towns}
        with open(table, encoding="utf-8") as f:
            rows = [
                Village(
                    code=r["code12"],
                    name=r["name"],
                    town_code=r["town_code9"],
                    town_name=r["town_name"],
                )
                for r in csv.DictReader(f)
            ]
        for line, v in enumerate(rows, start=2):
            if v.town_code not in towns:
                raise ContractError(
                    table,
                    f"line {line}: town_code9",
                    f"{v.town_code} is not a town of the county profile",
                )
        return rows


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
    pattern: str | None = Field(None, description="a regular expression the text must match")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        import re

        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from exc
        return value

    @property
    def at_source(self) -> str:
        return self.source_name or self.name


class Incremental(Strict):
    """How the changes of one window are found.

    - ``snapshot``: read the whole table, compare with the previous snapshot (finds deletes);
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


# --------------------------------------------------------------------------- loading


def schemas_root() -> Path:
    return Path(os.environ.get("COUNTYLAKE_SCHEMAS", REPO_ROOT / "schemas"))


def _read_yaml(path: Path) -> dict:
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


def load_system(directory: Path) -> SystemContract:
    """Load one system folder: ``system.yaml`` plus one file per dataset."""
    datasets = [
        _parse(DatasetContract, p, _read_yaml(p))
        for p in sorted(directory.glob("*.yaml"))
        if p.name != "system.yaml"
    ]
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
    return errors
