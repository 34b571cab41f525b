"""GB 11643-1999 citizen ID numbers (公民身份号码): address(6) + birth date(8) + sequence(3) +
ISO 7064 MOD 11-2 check character.

``validate`` normalises first (``normalize``), then gives the first reason that applies:

- ``length``: not 15 or 18 characters;
- ``charset``: not 17 digits followed by a digit or X;
- ``address``: the first 6 digits are not a province-level code (residence permits
  810000/820000/830000 and the foreign permanent-residence ID, 9 + issuing province, included),
  or, with a ``DivisionIndex``, lie inside the county's city without being a unit of it or a
  historical code;
- ``birth_date``: not a calendar date, or before 1800;
- ``birth_future``: after ``today``;
- ``check``: wrong check character.

Arrays are judged as an (n, 18) byte matrix with numpy: one matrix product yields the check
sum, address and date fields of every number at once.
"""

from __future__ import annotations

import calendar
import functools
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.standards import (
    ArrayVerdict,
    as_mask,
    bytes_between,
    char_lengths,
    first_failure,
    fix_where,
    fixed_width,
    normalise_parsed,
    rows_all,
    strings_from_matrix,
    strip_blanks,
    vectorised,
    weighted_sums,
)
from etl.standards.divisions import DivisionIndex, address_checks

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
EARLIEST_BIRTH_YEAR = 1800

_CHECK_BYTES = np.frombuffer(CHECK_CHARS.encode(), dtype=np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _field_weights() -> np.ndarray:
    """Columns of the matrix product over the 18 bytes: check sum, address, year, month, day."""
    weights = np.zeros((18, 5), dtype=np.int64)
    weights[:17, 0] = WEIGHTS
    weights[0:6, 1] = 10 ** np.arange(5, -1, -1)
    weights[6:10, 2] = (1000, 100, 10, 1)
    weights[10:12, 3] = (10, 1)
    weights[12:14, 4] = (10, 1)
    return weights


_FIELDS = _field_weights()
# What the ASCII "0" bytes add to each field.
_ZERO_BYTES = (ord("0") * _FIELDS.sum(axis=0)).astype(np.int32)[:, None]
_LEAP_YEARS = np.array([calendar.isleap(year) for year in range(10000)])


def check_char(first17: str) -> str:
    """The 18th character for the 17 digits given."""
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def make_id_number(address6: str, birth_yyyymmdd: str, sequence3: str) -> str:
    """Build a valid 18-character number from its parts (the simulator uses this)."""
    body = f"{address6}{birth_yyyymmdd}{sequence3}"
    return body + check_char(body)


def upgrade_legacy(number15: str) -> str:
    """Convert a legacy 15-digit number (YYMMDD, no check) to its 18-character form."""
    body = number15[:6] + "19" + number15[6:]
    return body + check_char(body)


# --------------------------------------------------------------------------- arrays


def _well_formed(matrix: np.ndarray) -> np.ndarray:
    """Rows of 17 digits followed by a digit or X."""
    allowed = matrix - np.uint8(ord("0")) <= 9
    allowed[:, 17] |= matrix[:, 17] == ord("X")
    return rows_all(allowed)


def _legacy(values: pa.StringArray) -> np.ndarray:
    """Values of exactly 15 digits."""
    matrix, fits = fixed_width(values, 15)
    return fits & bytes_between(matrix, "0", "9")


def _upgrade(legacy: pa.StringArray) -> pa.StringArray:
    """15-digit numbers to 18: "19" inserted before the 2-digit year, check appended."""
    matrix, _ = fixed_width(legacy, 15)
    century = np.broadcast_to(np.frombuffer(b"19", dtype=np.uint8), (len(matrix), 2))
    body = np.hstack([matrix[:, :6], century, matrix[:, 6:]])
    total = weighted_sums(body, _FIELDS[:17, :1])[0] - _ZERO_BYTES[0]
    return strings_from_matrix(np.column_stack([body, _CHECK_BYTES[total % 11]]))


def _normalise_rows(values: pa.StringArray) -> pa.StringArray:
    text = pc.ascii_upper(strip_blanks(values))
    return fix_where(text, _legacy(text), _upgrade)


def _parse(values: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(byte matrix, mask of well-formed 18-character numbers)."""
    matrix, fits = fixed_width(values, 18)
    return matrix, fits & _well_formed(matrix)


def _normalised(values: pa.StringArray) -> tuple[pa.StringArray, np.ndarray, np.ndarray]:
    """(normalised values, their byte matrix, mask of well-formed 18-character numbers).
    Well-formed values are kept as they are without running the text functions over them."""
    text, (matrix, well_formed), _ = normalise_parsed(values, _parse, _normalise_rows)
    return text, matrix, well_formed


def _legacy_among(values: pa.StringArray, maybe: np.ndarray) -> pa.BooleanArray:
    """``is_legacy`` of the values, judging only the rows of ``maybe`` (the others are not)."""
    legacy = np.zeros(len(values), dtype=bool)
    legacy[maybe] = _legacy(strip_blanks(values.filter(pa.array(maybe))))
    return pa.array(legacy)


def _real_date(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Calendar dates (Gregorian leap years) from EARLIEST_BIRTH_YEAR on."""
    leap = _LEAP_YEARS[np.clip(year, 0, 9999)]
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + (leap & (month == 2))
    return month_ok & (day >= 1) & (day <= days) & (year >= EARLIEST_BIRTH_YEAR)


class IdNumbers:
    """A column of ID numbers normalised and parsed once: the rule engine judges it by several
    rules (the standard, birth date, sex), which share the byte matrix and the field sums."""

    def __init__(self, values: pa.StringArray):
        self.text, (self.matrix, self.well_formed), self._malformed = normalise_parsed(
            values, _parse, _normalise_rows
        )

    def legacy(self, sent: pa.StringArray) -> pa.BooleanArray:
        """``is_legacy`` of the values as sent, before trimming: a legacy number is never
        well-formed once trimmed either, so only the rows the parse found malformed are read."""
        return _legacy_among(sent, self._malformed)

    @functools.cached_property
    def fields(self) -> np.ndarray:
        """Check sum, address, year, month and day of each row (garbage for malformed rows)."""
        return weighted_sums(self.matrix, _FIELDS) - _ZERO_BYTES

    @functools.cached_property
    def _format_checks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(wrong length, not a date, birth as YYYYMMDD, wrong check character): the checks
        that do not depend on the index or the day, made once for both uses of the parse."""
        lengths = char_lengths(self.text)
        total, _, year, month, day = self.fields
        return (
            (lengths != 15) & (lengths != 18),
            ~_real_date(year, month, day),
            year * 10000 + month * 100 + day,
            self.matrix[:, 17] != _CHECK_BYTES[total % 11],
        )

    def failures(
        self, divisions: DivisionIndex | None = None, today: date | None = None
    ) -> list[tuple[str, np.ndarray]]:
        """The (reason, failure mask) checks of the module docstring, in order."""
        wrong_length, not_a_date, birth, wrong_check = self._format_checks
        province_ok, unit_ok = address_checks(self.fields[1], divisions, id_forms=True)
        today = today or date.today()
        return [
            ("length", wrong_length),
            ("charset", ~self.well_formed),
            ("address", ~(province_ok & unit_ok)),
            ("birth_date", not_a_date),
            ("birth_future", birth > today.year * 10000 + today.month * 100 + today.day),
            ("check", wrong_check),
        ]

    def verdict(
        self, divisions: DivisionIndex | None = None, today: date | None = None
    ) -> ArrayVerdict:
        return first_failure(self.text, self.failures(divisions, today))

    @functools.cached_property
    def valid(self) -> np.ndarray:
        """Valid numbers (without a ``DivisionIndex``): the ones birth date and sex come from."""
        failed = np.logical_or.reduce([mask for _, mask in self.failures()])
        return as_mask(self.text.is_valid()) & ~failed

    def birth_date(self) -> pa.Array:
        """The birth dates (date32) of valid numbers, null elsewhere."""
        _, _, year, month, day = self.fields
        year, month, day = (np.where(self.valid, field, 1) for field in (year, month, day))
        months = (year - 1970) * 12 + month - 1
        days = months.astype("datetime64[M]").astype("datetime64[D]") + (day - 1)
        return pa.array(days, pa.date32(), mask=~self.valid)

    def sex(self) -> pa.StringArray:
        """GB/T 2261.1 sex ("1" male, "2" female) from the 17th digit of valid numbers, null
        elsewhere."""
        odd = (self.matrix[:, 16] - np.uint8(ord("0"))) % 2 == 1
        return pc.take(pa.array(["2", "1"]), pa.array(odd.astype(np.int8), mask=~self.valid))


@vectorised
def normalize(values: pa.StringArray) -> pa.StringArray:
    """The spelling the lake stores: blanks removed (internal and full-width ones too), x
    upper-cased, legacy 15-digit numbers upgraded to 18."""
    return _normalised(values)[0]


@vectorised
def is_legacy(values: pa.StringArray) -> pa.BooleanArray:
    """Values that are legacy 15-digit numbers once blanks are removed (a warning: they are
    upgraded on landing)."""
    _, well_formed = _parse(values)
    return _legacy_among(values, ~well_formed & as_mask(values.is_valid()))


@vectorised
def validate(
    values: pa.StringArray, divisions: DivisionIndex | None = None, today: date | None = None
) -> ArrayVerdict:
    """Judge ID numbers (normalised first); see the module docstring for the reason codes."""
    return IdNumbers(values).verdict(divisions, today)


@vectorised
def birth_date(values: pa.StringArray) -> pa.Array:
    """The birth dates (date32) of valid numbers, null elsewhere."""
    return IdNumbers(values).birth_date()


@vectorised
def sex(values: pa.StringArray) -> pa.StringArray:
    """GB/T 2261.1 sex ("1" male, "2" female) of valid numbers, null elsewhere."""
    return IdNumbers(values).sex()
