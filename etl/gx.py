"""Great Expectations view of the quality rules: suites, custom expectations and Data Docs.

The platform judges data with its own streaming Arrow engine (``etl.validate``); GX is how the
rules are published and read:

- **custom expectations** for the national code standards, one family generated from a small
  table, so analysts can check a pandas frame in a notebook with the same vectorised validators
  the engine uses (``etl.standards``), never a Python function per row;
- **suites** generated from the contracts (``suite_for``), exported as reviewable JSON under
  ``quality/suites/`` (``export_suites``; regenerate with
  ``countylake quality --export-suites quality/suites``);
- **Data Docs** from the engine's own counts (``write_data_docs``): results are turned into GX
  validation results and stored, never re-validated.

``import great_expectations`` costs seconds: only import this module where GX is wanted, never
from code a DAG file imports at parse time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import ClassVar, Literal

import great_expectations as gx
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import (
    ColumnMapExpectation,
    ColumnPairMapExpectation,
)
from great_expectations.expectations.metadata_types import FailureSeverity
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    ColumnPairMapMetricProvider,
    column_condition_partial,
    column_pair_condition_partial,
)
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer

from etl import standards
from etl.contracts import DatasetContract, judging_digest, load_profile, load_systems
from etl.quality import DOCS_RUNS
from etl.rules import CROSS_TITLES, STANDARD_TITLES, WARNING_TIERS, Rule, rules_for
from etl.standards import StandardContext, divisions, gb11643, gb32100, phone
from etl.validate import event_time_column

# --------------------------------------------------------------------------- custom expectations

# The expectation of every code standard and warning tier, by rule kind.
CODE_EXPECTATIONS = {
    "gb11643": "ExpectColumnValuesToBeValidCitizenId",
    "gb32100": "ExpectColumnValuesToBeValidCreditCode",
    "gb2260": "ExpectColumnValuesToBeValidDivisionCode",
    "nbs_division": "ExpectColumnValuesToBeValidVillageCode",
    "gb2261": "ExpectColumnValuesToBeValidSexCode",
    "gb3304": "ExpectColumnValuesToBeValidEthnicityCode",
    "gb4754": "ExpectColumnValuesToBeValidIndustryCode",
    "mobile": "ExpectColumnValuesToBeValidMobile",
    "landline": "ExpectColumnValuesToBeValidLandline",
    "phone": "ExpectColumnValuesToBeValidPhone",
    "gb11643_legacy": "ExpectColumnValuesToNotBeLegacyCitizenId",
    "gb32100_org": "ExpectColumnValuesToPassCreditCodeOrgCheck",
    "mobile_strict": "ExpectColumnValuesToBeAllocatedMobile",
}
# Cross-column rules: column_A is the ID number (or village code), column_B the other column.
PAIR_EXPECTATIONS = {
    "id_birth_date": "ExpectColumnPairValuesToMatchIdBirthDate",
    "id_sex": "ExpectColumnPairValuesToMatchIdSex",
    "village_in_town": "ExpectColumnPairValuesToBeVillageInTown",
}
TIER_OF = {tier: base for base, (tier, _) in WARNING_TIERS.items()}
TIER_CHECKS: dict[str, Callable[[pa.Array], standards.ArrayVerdict]] = {
    "gb32100_org": gb32100.org_check,
    "mobile_strict": phone.validate_mobile_strict,
}


@cache
def _context() -> StandardContext:
    """The county the division and landline standards are judged against."""
    return StandardContext.from_profile(load_profile())


def _text(column: pd.Series) -> pa.Array:
    """A pandas column as the engine sees a source value: trimmed text, blanks as nulls."""
    values = pa.array(column.astype("string[pyarrow]")).cast(pa.string())
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), None, trimmed)


def _normalised(standard: str, values: pa.Array) -> pa.Array:
    normalise = standards.NORMALIZERS.get(standard)
    return normalise(values) if normalise else values


def code_valid(kind: str, values: pa.Array) -> pa.Array:
    """Per value, whether it passes the standard or warning tier ``kind``, judged as the engine
    judges it (normalised first; nulls pass: emptiness is the not-null rule's business)."""
    if kind == "gb11643_legacy":  # judged as written: normalising upgrades 15 digits to 18
        return pc.invert(pc.fill_null(gb11643.is_legacy(values), False))
    values = _normalised(TIER_OF.get(kind, kind), values)
    if kind in TIER_CHECKS:
        return pc.fill_null(TIER_CHECKS[kind](values).valid, True)
    return pc.fill_null(standards.VALIDATORS[kind](values, _context()).valid, True)


def pair_valid(kind: str, first: pa.Array, second: pa.Array) -> pa.Array:
    """Per row, whether a cross-column rule holds (rows with a null on either side pass)."""
    if kind == "village_in_town":
        return pc.fill_null(divisions.village_in_town(first, second).valid, True)
    derive = gb11643.birth_date if kind == "id_birth_date" else gb11643.sex
    derived = derive(_normalised("gb11643", first))
    return pc.fill_null(pc.equal(derived, pc.cast(second, derived.type)), True)


def _mask(valid: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(valid.to_numpy(zero_copy_only=False), index=index, dtype=bool)


class _CodeValues(ColumnMapMetricProvider):
    """Map metric of one code standard: the whole column through its Arrow validator."""

    kind: ClassVar[str]

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs) -> pd.Series:
        return _mask(code_valid(cls.kind, _text(column)), column.index)


class _PairValues(ColumnPairMapMetricProvider):
    """Map metric of one cross-column rule over two whole columns."""

    kind: ClassVar[str]

    @column_pair_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column_A: pd.Series, column_B: pd.Series, **kwargs) -> pd.Series:
        # the second column is typed (a date, a sex code): Arrow infers it from pandas
        second = pa.array(column_B, from_pandas=True)
        if pa.types.is_timestamp(second.type):
            second = pc.cast(second, pa.date32())
        return _mask(pair_valid(cls.kind, _text(column_A), second), column_A.index)


class _Described:
    """Data Docs text of a family member, from ``TEMPLATES`` (GX's default for a custom
    expectation prints its class name and kwargs)."""

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    def _prescriptive_renderer(cls, configuration=None, result=None, runtime_configuration=None):
        config = configuration or (result.expectation_config if result else None)
        return [
            RenderedStringTemplateContent(
                content_block_type="string_template",
                string_template={
                    "template": TEMPLATES[cls.kind],
                    "params": dict(config.kwargs) if config else {},
                    "styling": (runtime_configuration or {}).get("styling"),
                },
            )
        ]


class CodeExpectation(_Described, ColumnMapExpectation):
    """Base of the code-standard expectations: each subclass names one rule kind."""

    kind: ClassVar[str]


class PairExpectation(_Described, ColumnPairMapExpectation):
    """Base of the cross-column expectations (column_A: ID number or village, column_B: the
    column it must agree with). Rows missing either value are left to the not-null rules."""

    kind: ClassVar[str]
    ignore_row_if: Literal["both_values_are_missing", "either_value_is_missing", "neither"] = (
        "either_value_is_missing"
    )
    # GX reads the metric's ignore_row_if from here; left out, the metric gets None and fails
    success_keys: ClassVar[tuple[str, ...]] = ("ignore_row_if", "mostly")


def _code_template(kind: str) -> str:
    if kind in STANDARD_TITLES:
        return f"values must be {STANDARD_TITLES[kind]}."
    return f"flags a value that {dict(WARNING_TIERS.values())[kind]}."


def _pair_template(kind: str) -> str:
    return f"flags rows where {CROSS_TITLES[kind].format('$column_A', '$column_B')}."


def _family(
    names: dict[str, str], metric_base: type, base: type, template: Callable[[str], str]
) -> dict[str, type]:
    """One metric provider and one expectation class per rule kind (GX registers both when
    the class is created), so the family is a table, not a dozen copied classes."""
    made = {}
    for kind, name in names.items():
        metric = f"countylake.{kind}"
        type(f"{name}Metric", (metric_base,), {"condition_metric_name": metric, "kind": kind})
        TEMPLATES[kind] = template(kind)
        doc = f"Rule kind ``{kind}``: {TEMPLATES[kind].replace('$', '')}"
        attrs = {"kind": kind, "map_metric": metric, "__doc__": doc, "__module__": __name__}
        made[kind] = type(name, (base,), attrs)
    return made


TEMPLATES: dict[str, str] = {}  # kind -> what the rule requires, for Data Docs
CODE_CLASSES = _family(CODE_EXPECTATIONS, _CodeValues, CodeExpectation, _code_template)
PAIR_CLASSES = _family(PAIR_EXPECTATIONS, _PairValues, PairExpectation, _pair_template)
# Importable by name, as analysts expect: from etl.gx import ExpectColumnValuesToBeValidCitizenId
globals().update({cls.__name__: cls for cls in (*CODE_CLASSES.values(), *PAIR_CLASSES.values())})

# --------------------------------------------------------------------------- suites

SEVERITY = {"blocking": FailureSeverity.CRITICAL, "warning": FailureSeverity.WARNING}
# The pandas dtypes (numpy, nullable, and Python types in object columns) of a lake column of each
# contract type read with pd.read_parquet(..., dtype_backend="numpy_nullable"); the default
# backend reads an int column with nulls as float64. Text columns carry no type rule.
TYPE_NAMES = {
    "int": ["int64", "Int64Dtype", "int"],
    "float": ["float64", "Float64Dtype", "float"],
    "bool": ["bool", "BooleanDtype"],
    "date": ["date", "datetime64[ms]", "datetime64[us]", "datetime64[ns]"],
    "timestamp": ["datetime64[us]", "datetime64[ns]", "datetime64[ms]", "Timestamp"],
    "decimal": ["Decimal"],
}


def _expectation(rule: Rule, dataset: DatasetContract):
    """The GX expectation of one rule: a built-in where one fits, else our family."""
    kind = rule.kind
    col = {c.name: c for c in dataset.columns}.get(rule.columns[0]) if rule.columns else None
    if kind in CODE_CLASSES:
        return CODE_CLASSES[kind](column=col.name)
    if kind in PAIR_CLASSES:
        return PAIR_CLASSES[kind](column_A=rule.columns[0], column_B=rule.columns[1])
    if kind == "type":
        return gx.expectations.ExpectColumnValuesToBeInTypeList(
            column=col.name, type_list=TYPE_NAMES[col.type]
        )
    if kind == "not_null":
        return gx.expectations.ExpectColumnValuesToNotBeNull(column=col.name)
    if kind == "values":
        return gx.expectations.ExpectColumnValuesToBeInSet(column=col.name, value_set=col.values)
    if kind == "range":
        return gx.expectations.ExpectColumnValuesToBeBetween(
            column=col.name, min_value=col.min, max_value=col.max
        )
    if kind == "pattern":
        return gx.expectations.ExpectColumnValuesToMatchRegex(column=col.name, regex=col.pattern)
    if kind == "unique":
        if len(rule.columns) == 1:
            return gx.expectations.ExpectColumnValuesToBeUnique(column=col.name)
        return gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=list(rule.columns))
    if kind == "volume":
        band = dataset.quality.volume
        return gx.expectations.ExpectTableRowCountToBeBetween(
            notes=f"Bounds left open here: the platform warns when a window's rows leave "
            f"[{band.min_ratio}, {band.max_ratio}] x the median of the last "
            f"{band.lookback_windows} windows (given three windows of history)."
        )
    if kind == "freshness":
        hours = dataset.freshness_sla_hours
        stamp = event_time_column(dataset)
        if stamp is None:
            return gx.expectations.ExpectTableRowCountToBeBetween(
                min_value=1,
                notes=f"No event-time column: a window is fresh when it read rows (SLA {hours} h).",
            )
        return gx.expectations.ExpectColumnMaxToBeBetween(
            column=stamp,
            min_value={"$PARAMETER": f"now() - timedelta(hours={hours})"},
            notes=f"The newest {stamp} is at most {hours} h old.",
        )
    raise ValueError(f"no expectation for rule kind {kind}")


def suite_name(dataset: DatasetContract) -> str:
    """``<system>.<dataset>``: a contract's system is the folder it lives in."""
    if dataset.path is None:
        raise ValueError(f"dataset {dataset.dataset} was not loaded from a contract file")
    return f"{dataset.path.parent.name}.{dataset.dataset}"


def suite_for(dataset: DatasetContract, rules: list[Rule] | None = None) -> gx.ExpectationSuite:
    """The suite of a dataset: one expectation per rule, in rule order, each carrying its rule
    id and the platform's severity in ``meta`` and GX's own severity."""
    expectations = []
    for rule in rules if rules is not None else rules_for(dataset):
        expectation = _expectation(rule, dataset)
        expectation.meta = {"rule_id": rule.id, "severity": rule.severity}
        expectation.severity = SEVERITY[rule.severity]
        expectations.append(expectation)
    return gx.ExpectationSuite(name=suite_name(dataset), expectations=expectations)


def export_suites(target_dir: Path | str) -> list[Path]:
    """Write every dataset's suite as ``<system>.<dataset>.json`` (sorted keys, no ids or
    times, so a diff shows rule changes only) and remove suites of datasets that are gone."""
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for system in load_systems():
        for dataset in system.datasets:
            path = target / f"{suite_name(dataset)}.json"
            suite = suite_for(dataset).to_json_dict()
            text = json.dumps(suite, indent=2, sort_keys=True, ensure_ascii=False)
            path.write_text(text + "\n", encoding="utf-8")
            written.append(path)
    for stale in set(target.glob("*.json")) - set(written):
        stale.unlink()
    return written


# --------------------------------------------------------------------------- data docs

DOCS_SITE = "countylake"
# Relative to the context root (<home>/quality/gx): the HTML lands in <home>/quality/docs.
DOCS_SITE_CONFIG = {
    "class_name": "SiteBuilder",
    "show_how_to_buttons": False,
    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": "../docs/"},
    # the newest runs only: the index builder reads every result it lists, and a county
    # stores a dozen a night
    "site_index_builder": {
        "class_name": "DefaultSiteIndexBuilder",
        "validation_results_limit": DOCS_RUNS,
    },
}


def _expectation_result(config, result: dict, rows: int) -> ExpectationValidationResult:
    """One rule's counts from the engine as a GX result. Reason codes go in ``details`` and in
    ``partial_unexpected_counts``, which the docs show as a table: the values themselves are
    never published (many columns are personal data)."""
    checked, failed = result["checked"], result["failed"]
    reasons = dict(sorted(result["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    counts = {
        "element_count": checked,
        "unexpected_count": failed,
        "unexpected_percent": 100 * failed / checked if checked else 0.0,
        "partial_unexpected_counts": [{"value": k, "count": n} for k, n in reasons.items()],
        "details": {"reasons": reasons},
    }
    if config.type == "expect_table_row_count_to_be_between":
        counts["observed_value"] = rows
    return ExpectationValidationResult(
        success=failed == 0,
        expectation_config=config,
        result=counts,
        meta={"rule_id": result["rule_id"]},
    )


def run_name(attempt_id: str) -> str:
    """The GX run name of an attempt. Not the bare id: GX tries each run name as a date
    (dateutil) and catches only ValueError, so an id of hex digits that are all decimal (one
    attempt in 800) overflowed and its page was left unrendered."""
    return f"attempt-{attempt_id}"


def _validation_result(
    suite: gx.ExpectationSuite, run: dict, run_id: RunIdentifier
) -> ExpectationSuiteValidationResult:
    """A run of the engine as a suite validation result (rules no longer in the contract are
    left out: there is no expectation to show them against)."""
    configs = {e.meta["rule_id"]: e.configuration for e in suite.expectations}
    results = [
        _expectation_result(configs[r["rule_id"]], r, run["rows"])
        for r in run["results"]
        if r["rule_id"] in configs
    ]
    passed = sum(r.success for r in results)
    return ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100 * passed / len(results) if results else 100.0,
        },
        meta={
            "great_expectations_version": gx.__version__,
            "run_id": run_id.to_json_dict(),
            "validation_time": run_id.run_time.isoformat(),
            "active_batch_definition": {
                "datasource_name": "countylake",
                "data_connector_name": "engine",
                "data_asset_name": suite.name,
                "batch_identifiers": {"window_start": run["window_start"]},
            },
            # what the page header shows as the data asset and the batch
            "batch_spec": {
                "data_asset_name": suite.name,
                "window_start": run["window_start"],
                "rows": run["rows"],
            },
            "batch_markers": {"attempt_id": run["attempt_id"]},
        },
    )


SUITE_CODE = ("gx.py", "rules.py")  # what turns a contract's rules into a suite


def write_data_docs(home: Path | str, runs: list[dict]) -> Path:
    """Data Docs of runs the engine already judged (shaped as ``etl.quality.docs_runs`` gives
    them): each run is stored as a validation result of its dataset's suite in a file context
    under ``<home>/quality/gx`` and rendered under ``<home>/quality/docs``. A landed attempt's
    results never change, so only runs not yet stored, suites whose rules changed and the
    index are rendered; with neither, nothing is, and GX is not even started (``rendered.json``
    keeps what the docs were last built from). Runs of datasets no longer in the contracts
    are skipped. Returns the index page."""
    root = Path(home) / "quality"
    index = root / "docs" / "index.html"
    datasets = {suite_name(d): d for s in load_systems() for d in s.datasets}
    rendered = root / "gx" / "rendered.json"  # per suite what made it; the runs stored
    before = json.loads(rendered.read_text()) if rendered.exists() and index.exists() else {}
    # a suite is made of its contract, the county and the code turning rules into
    # expectations (building and serialising the suites to compare them took 0.2 s)
    now = {name: judging_digest(d, SUITE_CODE, gx.__version__) for name, d in datasets.items()}
    shown = [r for r in runs if f"{r['system']}.{r['dataset']}" in datasets]
    stored = set(before.get("runs", []))
    new_runs = [r for r in shown if r["attempt_id"] not in stored]
    new_suites = [name for name in now if before.get("suites", {}).get(name) != now[name]]
    if new_runs or new_suites:
        _render(root, {name: datasets[name] for name in new_suites}, datasets, new_runs)
    rendered.parent.mkdir(parents=True, exist_ok=True)
    runs_now = sorted(r["attempt_id"] for r in shown)
    rendered.write_text(json.dumps({"suites": now, "runs": runs_now}))
    return index


def _render(
    root: Path,
    changed_suites: dict[str, DatasetContract],
    datasets: dict[str, DatasetContract],
    runs: list[dict],
) -> None:
    """Store the changed suites and the new runs in the file context, and build their pages
    and the index."""
    context = gx.get_context(mode="file", project_root_dir=root)
    sites = context.list_data_docs_sites()
    for name in set(sites) - {DOCS_SITE}:
        context.delete_data_docs_site(name)
    if DOCS_SITE in sites:
        context.update_data_docs_site(DOCS_SITE, DOCS_SITE_CONFIG)
    else:
        context.add_data_docs_site(DOCS_SITE, DOCS_SITE_CONFIG)
    changed: list = []
    for dataset in changed_suites.values():
        suite = suite_for(dataset)
        context.suites.add_or_update(suite)
        changed.append(ExpectationSuiteIdentifier(name=suite.name))
    store = context.validation_results_store
    suites: dict[str, gx.ExpectationSuite] = {}
    for run in runs:
        name = f"{run['system']}.{run['dataset']}"
        if name not in suites:
            suites[name] = suite_for(datasets[name])
        suite = suites[name]
        run_id = RunIdentifier(
            run_name=run_name(run["attempt_id"]), run_time=datetime.fromisoformat(run["run_time"])
        )
        window = datetime.fromisoformat(run["window_start"]).astimezone(UTC)
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
            run_id=run_id,
            batch_identifier=window.strftime("window-%Y%m%dT%H%M%SZ"),  # no "+": it is a URL
        )
        store.set(key, _validation_result(suite, run, run_id))
        changed.append(key)
    context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=changed)
