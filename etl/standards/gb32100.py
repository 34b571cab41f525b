"""GB 32100-2015 unified social credit codes (统一社会信用代码): registration department(1) +
category(1) + division(6) + GB 11714 organisation code(9) + check(1).

``validate`` normalises first (``normalize``), then gives the first reason that applies:

- ``length``: not 18 characters;
- ``charset``: a character outside 0-9 and A-Z without I, O, S, V, Z;
- ``department``: position 1 not a registration department (1-9, A, N, Y);
- ``category``: position 2 not a category of that department;
- ``division``: positions 3-8 not 6 digits starting with a province-level code, nor 100000
  (central registrations);
- ``check``: wrong check character.

``org_check`` judges the embedded GB 11714 check alone (reason ``org_check``): it fails for some
legitimate pilot-era codes, so it is a warning tier and never part of ``validate``.
(python-stdnum's ``cn.uscc`` rejects every N-, A- and Y- code: not used.)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.standards import (
    ArrayVerdict,
    byte_table,
    char_lengths,
    digit_values,
    first_failure,
    fixed_width,
    normalise_parsed,
    rows_all,
    strip_blanks,
    vectorised,
    weighted_sums,
)
from etl.standards.divisions import address_checks

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
ORG_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # GB 11714 values: 0-9, then A-Z = 10-35

# Categories (position 2) each registration department (position 1) may give.
CATEGORIES: dict[str, str] = {
    "1": "1239",  # 机构编制
    "2": "19",  # 外交
    "3": "123459",  # 司法行政
    "4": "19",  # 文化
    "5": "1239",  # 民政
    "6": "129",  # 旅游
    "7": "129",  # 宗教
    "8": "19",  # 工会
    "9": "123",  # 工商: 企业, 个体工商户, 农民专业合作社
    "A": "19",  # 军队改革和编制
    "N": "1239",  # 农业: 组级, 村级, 乡镇级集体经济组织, 其他
    "Y": "1",  # 其他
}
CENTRAL_DIVISION = 100000  # registrations of central authorities

_INDEX = byte_table(CHARSET)
_ORG_INDEX = byte_table(ORG_CHARSET)


def _category_table() -> np.ndarray:
    """A (256, 256) lookup: is (byte 1, byte 2) an allowed department and category?"""
    table = np.zeros((256, 256), dtype=bool)
    for department, categories in CATEGORIES.items():
        table[ord(department), np.frombuffer(categories.encode(), np.uint8)] = True
    return table


_CATEGORY_OK = _category_table()
_DEPARTMENT_OK = _CATEGORY_OK.any(axis=1)
_ORG_CHECK_BYTES = np.frombuffer(b"0X987654321", dtype=np.uint8)  # by S mod 11: 11 - S, 10 X


def check_char(first17: str) -> str:
    total = sum(CHARSET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def org_check_char(first8: str) -> str:
    """GB 11714 check over positions 9-16 of a credit code (a warning rule, never blocking)."""
    total = sum(
        (int(c) if c.isdigit() else ord(c) - 55) * w
        for c, w in zip(first8, ORG_WEIGHTS, strict=True)
    )
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def make_credit_code(dept_category: str, division6: str, org_body8: str) -> str:
    """Build a valid 18-character code: registration dept + category, division, organisation
    code (8 characters plus its own check), then the overall check character."""
    body = f"{dept_category}{division6}{org_body8}{org_check_char(org_body8)}"
    return body + check_char(body)


# --------------------------------------------------------------------------- arrays


_Parsed = tuple[np.ndarray, np.ndarray, np.ndarray]


def _parse(values: pa.StringArray) -> _Parsed:
    """(byte matrix, character values, mask of 18 characters all in the charset)."""
    matrix, fits = fixed_width(values, 18)
    index = _INDEX[matrix]
    return matrix, index, fits & rows_all(index >= 0)


def _normalise_rows(values: pa.StringArray) -> pa.StringArray:
    return pc.ascii_upper(strip_blanks(values))


def _normalised(values: pa.StringArray) -> tuple[pa.StringArray, *_Parsed]:
    """(normalised values, then ``_parse`` of them). Well-formed values are kept as they are
    without running the text functions over them."""
    text, parsed, _ = normalise_parsed(values, _parse, _normalise_rows)
    return text, *parsed


class CreditCodes:
    """A column of credit codes normalised and parsed once: the rule engine judges it by the
    standard and by the organisation-code tier, which share the parse."""

    def __init__(self, values: pa.StringArray):
        self.text, self.matrix, self.index, self.well_formed = _normalised(values)

    def verdict(self) -> ArrayVerdict:
        matrix, index = self.matrix, self.index
        division = digit_values(matrix[:, 2:8])
        province_ok, _ = address_checks(division, None)
        division_ok = rows_all(index[:, 2:8] <= 9) & (province_ok | (division == CENTRAL_DIVISION))
        total = weighted_sums(index[:, :17], np.array(WEIGHTS)[:, None])[0]
        return first_failure(
            self.text,
            [
                ("length", char_lengths(self.text) != 18),
                ("charset", ~self.well_formed),
                ("department", ~_DEPARTMENT_OK[matrix[:, 0]]),
                ("category", ~_CATEGORY_OK[matrix[:, 0], matrix[:, 1]]),
                ("division", ~division_ok),
                ("check", index[:, 17] != (31 - total % 31) % 31),
            ],
        )

    def org_check(self) -> ArrayVerdict:
        total = weighted_sums(_ORG_INDEX[self.matrix[:, 8:16]], np.array(ORG_WEIGHTS)[:, None])[0]
        wrong = self.matrix[:, 16] != _ORG_CHECK_BYTES[total % 11]
        return first_failure(self.text, [("org_check", self.well_formed & wrong)])


@vectorised
def normalize(values: pa.StringArray) -> pa.StringArray:
    """The spelling the lake stores: blanks removed, letters upper-cased."""
    return _normalised(values)[0]


@vectorised
def validate(values: pa.StringArray) -> ArrayVerdict:
    """Judge credit codes (normalised first); see the module docstring for the reason codes."""
    return CreditCodes(values).verdict()


@vectorised
def org_check(values: pa.StringArray) -> ArrayVerdict:
    """The embedded GB 11714 organisation-code check (positions 9-17), for codes of 18 charset
    characters; other values pass here, as ``validate`` already rejects them."""
    return CreditCodes(values).org_check()
