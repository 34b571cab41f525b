"""National code lists: GB/T 2261.1 sex, GB/T 3304 ethnicity, GB/T 4754-2017 industry.

Reason codes, in the order they are tried:

- ``validate_sex``: ``unknown_code``;
- ``validate_ethnicity``: ``format`` (not two digits, e.g. "1" from a spreadsheet that dropped
  the zero), ``unknown_code``;
- ``validate_industry``: ``format`` (not a section letter and/or 2-4 digits), ``section``
  (letter outside A-T), ``division_section`` (the division's 2 digits are not in the section's
  range, or, for a bare code, in no section's).
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.standards import ArrayVerdict, bytes_between, first_failure, fixed_width, vectorised

SEXES = {"0": "未知的性别", "1": "男性", "2": "女性", "9": "未说明的性别"}

ETHNICITIES = {
    "01": "汉族",
    "02": "蒙古族",
    "03": "回族",
    "04": "藏族",
    "05": "维吾尔族",
    "06": "苗族",
    "07": "彝族",
    "08": "壮族",
    "09": "布依族",
    "10": "朝鲜族",
    "11": "满族",
    "12": "侗族",
    "13": "瑶族",
    "14": "白族",
    "15": "土家族",
    "16": "哈尼族",
    "17": "哈萨克族",
    "18": "傣族",
    "19": "黎族",
    "20": "傈僳族",
    "21": "佤族",
    "22": "畲族",
    "23": "高山族",
    "24": "拉祜族",
    "25": "水族",
    "26": "东乡族",
    "27": "纳西族",
    "28": "景颇族",
    "29": "柯尔克孜族",
    "30": "土族",
    "31": "达斡尔族",
    "32": "仫佬族",
    "33": "羌族",
    "34": "布朗族",
    "35": "撒拉族",
    "36": "毛南族",
    "37": "仡佬族",
    "38": "锡伯族",
    "39": "阿昌族",
    "40": "普米族",
    "41": "塔吉克族",
    "42": "怒族",
    "43": "乌孜别克族",
    "44": "俄罗斯族",
    "45": "鄂温克族",
    "46": "德昂族",
    "47": "保安族",
    "48": "裕固族",
    "49": "京族",
    "50": "塔塔尔族",
    "51": "独龙族",
    "52": "鄂伦春族",
    "53": "赫哲族",
    "54": "门巴族",
    "55": "珞巴族",
    "56": "基诺族",
}
# Codes for "other" and "foreign-born Chinese citizen" differ between systems (97/98 or 57/58):
# configurable per exchange.
DEFAULT_EXTRA_ETHNICITY = ("97", "98")

# GB/T 4754-2017 sections and the range of their 2-digit divisions.
SECTIONS = {
    "A": (1, 5),
    "B": (6, 12),
    "C": (13, 43),
    "D": (44, 46),
    "E": (47, 50),
    "F": (51, 52),
    "G": (53, 60),
    "H": (61, 62),
    "I": (63, 65),
    "J": (66, 69),
    "K": (70, 70),
    "L": (71, 72),
    "M": (73, 75),
    "N": (76, 79),
    "O": (80, 82),
    "P": (83, 83),
    "Q": (84, 85),
    "R": (86, 90),
    "S": (91, 96),
    "T": (97, 97),
}
INDUSTRY_FORMAT = r"^(?:[A-Z](?:\d{2,4})?|\d{2,4})$"  # "C", "C13", "C131", "C1311", "13", ...


def _industry_prefixes() -> pa.StringArray:
    """What an industry code may start with: a section letter alone, a section letter with one
    of its divisions ("C13"), or a bare division ("13")."""
    divisions = {letter: range(low, high + 1) for letter, (low, high) in SECTIONS.items()}
    lettered = [f"{letter}{d:02d}" for letter, span in divisions.items() for d in span]
    bare = [f"{d:02d}" for span in divisions.values() for d in span]
    return pa.array([*SECTIONS, *lettered, *bare], pa.string())


_INDUSTRY_PREFIXES = _industry_prefixes()


_SEX_BYTES = np.zeros(256, dtype=bool)
_SEX_BYTES[[ord(code) for code in SEXES]] = True


@vectorised
def validate_sex(values: pa.StringArray) -> ArrayVerdict:
    # The codes are single ASCII characters: a byte lookup, where is_in hashes every value.
    matrix, fits = fixed_width(values, 1)
    return first_failure(values, [("unknown_code", ~(fits & _SEX_BYTES[matrix[:, 0]]))])


@functools.cache
def _two_digit_codes(extra: tuple[str, ...]) -> np.ndarray:
    """Which numbers 0-99 are ethnicity codes (an extra code of another form matches no
    two-digit value)."""
    known = np.zeros(100, dtype=bool)
    codes = [*ETHNICITIES, *extra]
    known[[int(c) for c in codes if len(c) == 2 and c.isascii() and c.isdigit()]] = True
    return known


@vectorised
def validate_ethnicity(
    values: pa.StringArray, extra: tuple[str, ...] = DEFAULT_EXTRA_ETHNICITY
) -> ArrayVerdict:
    """Two ASCII digits (``^\\d\\d$`` as a byte test), then the code looked up by its number:
    both several times cheaper than a regular expression and is_in over every value."""
    matrix, fits = fixed_width(values, 2)
    two_digits = fits & bytes_between(matrix, "0", "9")
    digits = matrix.astype(np.int16) - ord("0")
    number = digits[:, 0] * 10 + digits[:, 1]
    known = two_digits & _two_digit_codes(extra)[np.where(two_digits, number, 0)]
    return first_failure(values, [("format", ~two_digits), ("unknown_code", ~known)])


@vectorised
def validate_industry(values: pa.StringArray) -> ArrayVerdict:
    lettered = pc.match_substring_regex(values, "^[A-Z]")
    prefix = pc.if_else(
        lettered, pc.utf8_slice_codeunits(values, 0, 3), pc.utf8_slice_codeunits(values, 0, 2)
    )
    sections = pa.array(list(SECTIONS), pa.string())
    return first_failure(
        values,
        [
            ("format", pc.invert(pc.match_substring_regex(values, INDUSTRY_FORMAT))),
            (
                "section",
                pc.and_(
                    lettered,
                    pc.invert(pc.is_in(pc.utf8_slice_codeunits(values, 0, 1), value_set=sections)),
                ),
            ),
            ("division_section", pc.invert(pc.is_in(prefix, value_set=_INDUSTRY_PREFIXES))),
        ],
    )
