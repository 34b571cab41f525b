"""Mobile and landline telephone numbers (mainland China).

Reason codes, in the order they are tried:

- ``validate_mobile``: ``format`` (not 1, then 3-9, then 9 digits, once normalised);
- ``validate_mobile_strict``: ``not_allocated`` (well-formed but outside libphonenumber's
  allocated mobile ranges; a warning tier, as those ranges lag new allocations). Numbers failing
  ``validate_mobile`` pass here: each bad number is reported once;
- ``validate_landline``: ``format`` (not "0533-1234567", "05331234567" or "(0533)1234567"),
  ``area_code`` (area code not among those given);
- ``validate_phone``: a mobile or a landline; else the landline's reason.
"""

from __future__ import annotations

import functools

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from etl.standards import (
    BLANK_CHARS,
    ArrayVerdict,
    bytes_between,
    first_failure,
    fix_where,
    fixed_width,
    strip_blanks,
    vectorised,
)

MOBILE = r"^1[3-9]\d{9}$"
LANDLINE = r"^(?:[(（]0\d{2,3}[)）]|0\d{2,3}-?)\d{7,8}$"
DEFAULT_AREA_CODES = ("0533",)  # Zibo
_COUNTRY_PREFIX = r"^(?:\+86|0086|86)(1\d{10})$"


@functools.cache
def strict_mobile_pattern() -> str:
    """libphonenumber's pattern of allocated CN mobile numbers, read once from its metadata."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    return f"^(?:{metadata.mobile.national_number_pattern})$"


def _normalise_rows(values: pa.StringArray) -> pa.StringArray:
    digits = pc.replace_substring_regex(values, f"[{BLANK_CHARS}\\-－–—]+", "")
    return pc.replace_substring_regex(digits, _COUNTRY_PREFIX, r"\1")


@vectorised
def normalize_mobile(values: pa.StringArray) -> pa.StringArray:
    """The 11 digits: blanks and hyphens removed, +86 / 0086 / 86 prefixes dropped. Other
    values (landlines too) keep their digits and separators minus the blanks and hyphens."""
    matrix, fits = fixed_width(values, 11)
    return fix_where(values, ~(fits & bytes_between(matrix, "0", "9")), _normalise_rows)


def _mobile_ok(text: pa.StringArray) -> pa.BooleanArray:
    """``MOBILE`` as a byte test (a regular expression over every row costs several times more)."""
    matrix, fits = fixed_width(text, 11)
    ok = fits & bytes_between(matrix, "0", "9") & (matrix[:, 0] == ord("1"))
    ok &= (matrix[:, 1] >= ord("3")) & (matrix[:, 1] <= ord("9"))
    return pa.array(ok)


@vectorised
def validate_mobile(values: pa.StringArray) -> ArrayVerdict:
    text = normalize_mobile(values)
    return first_failure(text, [("format", pc.invert(_mobile_ok(text)))])


@vectorised
def validate_mobile_strict(values: pa.StringArray) -> ArrayVerdict:
    text = normalize_mobile(values)
    allocated = pc.match_substring_regex(text, strict_mobile_pattern())
    return first_failure(text, [("not_allocated", pc.and_(_mobile_ok(text), pc.invert(allocated)))])


@vectorised
def validate_landline(
    values: pa.StringArray, area_codes: tuple[str, ...] = DEFAULT_AREA_CODES
) -> ArrayVerdict:
    """Landlines with their area code; an empty ``area_codes`` accepts any area code."""
    text = strip_blanks(values)
    digits = pc.replace_substring_regex(text, r"[()（）\-]", "")
    local = f"^(?:{'|'.join(area_codes)})\\d{{7,8}}$" if area_codes else r"^\d+$"
    return first_failure(
        text,
        [
            ("format", pc.invert(pc.match_substring_regex(text, LANDLINE))),
            ("area_code", pc.invert(pc.match_substring_regex(digits, local))),
        ],
    )


@vectorised
def validate_phone(
    values: pa.StringArray, area_codes: tuple[str, ...] = DEFAULT_AREA_CODES
) -> ArrayVerdict:
    mobile = validate_mobile(values)
    landline = validate_landline(values, area_codes)
    valid = pc.or_(mobile.valid, landline.valid)
    return ArrayVerdict(valid, pc.if_else(valid, pa.scalar(None, pa.string()), landline.reason))
