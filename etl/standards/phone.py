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

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from etl.standards import (
    BLANK_CHARS,
    ArrayVerdict,
    bytes_between,
    digit_values,
    first_failure,
    fixed_width,
    normalise_parsed,
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


# The 5-digit prefixes a well-formed mobile number can have (1, then 3-9): the only ones the
# strict tier looks up, so the only ones worth judging.
_MOBILE_PREFIXES = range(13_000, 20_000)


@functools.cache
def _allocated_by_prefix() -> tuple[np.ndarray, np.ndarray]:
    """(allocated, undecided) per 5-digit prefix of an 11-digit number. libphonenumber's ranges
    are prefixes followed by any digits, so the lowest and highest numbers of a prefix decide it;
    a prefix where they disagree is left to the regular expression. Judged once a process for
    the well-formed prefixes only (a regular expression over 14,000 numbers, not 200,000)."""
    prefixes = pa.array(np.arange(_MOBILE_PREFIXES.start, _MOBILE_PREFIXES.stop).astype(str))
    low, high = (
        pc.match_substring_regex(
            pc.binary_join_element_wise(prefixes, tail, ""), strict_mobile_pattern()
        ).to_numpy(zero_copy_only=False)
        for tail in ("000000", "999999")
    )
    allocated, undecided = np.zeros(100_000, dtype=bool), np.zeros(100_000, dtype=bool)
    allocated[_MOBILE_PREFIXES.start : _MOBILE_PREFIXES.stop] = low & high
    undecided[_MOBILE_PREFIXES.start : _MOBILE_PREFIXES.stop] = low != high
    return allocated, undecided


def _normalise_rows(values: pa.StringArray) -> pa.StringArray:
    digits = pc.replace_substring_regex(values, f"[{BLANK_CHARS}\\-－–—]+", "")
    return pc.replace_substring_regex(digits, _COUNTRY_PREFIX, r"\1")


def _eleven_digits(values: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(byte matrix, mask of values of 11 ASCII digits)."""
    matrix, fits = fixed_width(values, 11)
    return matrix, fits & bytes_between(matrix, "0", "9")


@vectorised
def normalize_mobile(values: pa.StringArray) -> pa.StringArray:
    """The 11 digits: blanks and hyphens removed, +86 / 0086 / 86 prefixes dropped. Other
    values (landlines too) keep their digits and separators minus the blanks and hyphens."""
    return normalise_parsed(values, _eleven_digits, _normalise_rows)[0]


class Mobiles:
    """A column of mobile numbers normalised and parsed once: the rule engine judges it by the
    standard and by its allocated-range tier, which share the byte matrix and the format test."""

    def __init__(self, values: pa.StringArray):
        self.text, (self.matrix, digits), _ = normalise_parsed(
            values, _eleven_digits, _normalise_rows
        )
        # ``MOBILE`` as a byte test (a regular expression over every row costs several times more)
        first, second = self.matrix[:, 0], self.matrix[:, 1]
        self.well_formed = (
            digits & (first == ord("1")) & (second >= ord("3")) & (second <= ord("9"))
        )

    def verdict(self) -> ArrayVerdict:
        return first_failure(self.text, [("format", ~self.well_formed)])

    def strict_verdict(self) -> ArrayVerdict:
        allocated_prefix, undecided = _allocated_by_prefix()
        # other rows pass here: validate_mobile has them
        prefix = np.where(self.well_formed, digit_values(self.matrix[:, :5]), 0)
        allocated = allocated_prefix[prefix]
        unsure = np.flatnonzero(self.well_formed & undecided[prefix])
        if len(unsure):
            rows = pa.array(unsure)
            allocated[unsure] = pc.match_substring_regex(
                self.text.take(rows), strict_mobile_pattern()
            ).to_numpy(zero_copy_only=False)
        return first_failure(self.text, [("not_allocated", self.well_formed & ~allocated)])


@vectorised
def validate_mobile(values: pa.StringArray) -> ArrayVerdict:
    return Mobiles(values).verdict()


@vectorised
def validate_mobile_strict(values: pa.StringArray) -> ArrayVerdict:
    return Mobiles(values).strict_verdict()


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
