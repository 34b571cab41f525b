"""The quality rules of a dataset, generated from its contract.

Nobody writes a suite per dataset: every column yields its rules (type, not null, code
standard, value list, range, pattern), the key yields uniqueness, the quality policy adds
cross-column checks, and every dataset gets a volume and a freshness check. Each rule has a
stable id (``<kind>:<columns>``) used in quarantine records, results, the scorecard and the
Great Expectations suites, and a severity: blocking rules send the row to quarantine, warning
rules only report. Severities are overridden by id in the contract's ``quality.severity``.

Only declarations live here (no pyarrow): contracts import this module to check overrides.
"""

from __future__ import annotations

from dataclasses import dataclass

from etl.contracts import DatasetContract

STANDARD_TITLES = {
    "gb11643": "a GB 11643 citizen ID number",
    "gb32100": "a GB 32100 unified social credit code",
    "gb2260": "a GB/T 2260 division code",
    "nbs_division": "a village or town code of this county (NBS table)",
    "gb2261": "a GB/T 2261.1 sex code",
    "gb3304": "a GB/T 3304 ethnicity code",
    "gb4754": "a GB/T 4754-2017 industry code",
    "mobile": "a mainland mobile number",
    "landline": "a landline number of the county's area code",
    "phone": "a mobile or landline number",
}
# Second, stricter tiers of a standard that only warn (STANDARDS.md: the embedded organisation
# code check fails for some legitimate codes; libphonenumber's allocation ranges lag reality).
WARNING_TIERS = {
    "gb11643": ("gb11643_legacy", "is a legacy 15-digit number (upgraded to 18 on landing)"),
    "gb32100": ("gb32100_org", "fails the embedded GB 11714 organisation-code check"),
    "mobile": ("mobile_strict", "is outside the allocated mobile ranges (libphonenumber)"),
}
CROSS_TITLES = {
    "id_birth_date": "{1} differs from the birth date in {0}",
    "id_sex": "{1} differs from the sex encoded in {0}",
    "village_in_town": "{0} does not lie in the town {1}",
}
ROW_KINDS = (
    {"type", "not_null", "values", "range", "pattern", "unique"}
    | set(STANDARD_TITLES)
    | {tier for tier, _ in WARNING_TIERS.values()}
    | set(CROSS_TITLES)
)
DATASET_KINDS = {"volume", "freshness"}


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    columns: tuple[str, ...]
    severity: str  # blocking | warning
    message: str  # what a failure means, for quarantine records and reports

    @property
    def blocking(self) -> bool:
        return self.severity == "blocking"

    @property
    def row_level(self) -> bool:
        return self.kind in ROW_KINDS


def rules_for(dataset: DatasetContract) -> list[Rule]:
    """Every rule of a dataset, in a fixed order (the order of reasons in quarantine)."""
    overrides = dataset.quality.severity
    rules: list[Rule] = []

    def add(kind: str, columns: tuple[str, ...], message: str, severity: str = "blocking"):
        rule_id = f"{kind}:{','.join(columns)}" if columns else kind
        rules.append(Rule(rule_id, kind, columns, overrides.get(rule_id, severity), message))

    for c in dataset.columns:
        col = (c.name,)
        if c.type != "string":  # any source value reads as text
            add("type", col, f"{c.name} is not a valid {c.type}")
        if not c.nullable:
            add("not_null", col, f"{c.name} is required but empty")
        if c.standard:
            add(c.standard, col, f"{c.name} is not {STANDARD_TITLES[c.standard]}")
            if c.standard in WARNING_TIERS:
                tier, text = WARNING_TIERS[c.standard]
                add(tier, col, f"{c.name} {text}", "warning")
        if c.values is not None:
            add("values", col, f"{c.name} is not one of {', '.join(c.values)}")
        if c.min is not None or c.max is not None:
            add("range", col, f"{c.name} is outside [{c.min}, {c.max}]")
        if c.pattern is not None:
            add("pattern", col, f"{c.name} does not match {c.pattern}")
    for check in dataset.quality.checks:
        message = CROSS_TITLES[check.check].format(*check.columns)
        add(check.check, check.columns, message, check.severity)
    key = tuple(dataset.primary_key)
    add("unique", key, f"the key ({', '.join(key)}) repeats one already read in this window")
    add("volume", (), "the window's row count is far from recent windows", "warning")
    add(
        "freshness",
        (),
        f"landed more than {dataset.freshness_sla_hours} h after the window",
        "warning",
    )
    return rules
