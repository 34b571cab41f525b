"""GB/T 2260 administrative division codes and NBS 12-digit statistical division codes.

The only data here is the national table of province-level codes; everything about the county
(its code, its city's units, historical codes, towns and villages) comes from the county
profile through ``DivisionIndex.from_profile``, so another county needs no code change.

Reason codes, in the order they are tried:

- ``validate_gb2260``: ``length`` (not 6 characters), ``charset`` (not 6 digits), ``province``
  (first two digits not a province-level code), ``unknown`` (inside the county's own city but
  neither a unit of the city nor a historical code);
- ``validate_nbs``: ``length`` (not 12 characters), ``charset`` (not 12 digits),
  ``outside_county`` (does not start with the county code), ``unknown`` (not a village, town
  or the county itself in the reference table);
- ``village_in_town``: ``wrong_town``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.standards import (
    ArrayVerdict,
    bytes_between,
    char_lengths,
    digit_values,
    first_failure,
    fixed_width,
    rows_start_with,
    to_array,
    vectorised,
)

if TYPE_CHECKING:
    from etl.contracts import CountyProfile

PROVINCES: dict[str, str] = {
    "11": "北京市",
    "12": "天津市",
    "13": "河北省",
    "14": "山西省",
    "15": "内蒙古自治区",
    "21": "辽宁省",
    "22": "吉林省",
    "23": "黑龙江省",
    "31": "上海市",
    "32": "江苏省",
    "33": "浙江省",
    "34": "安徽省",
    "35": "福建省",
    "36": "江西省",
    "37": "山东省",
    "41": "河南省",
    "42": "湖北省",
    "43": "湖南省",
    "44": "广东省",
    "45": "广西壮族自治区",
    "46": "海南省",
    "50": "重庆市",
    "51": "四川省",
    "52": "贵州省",
    "53": "云南省",
    "54": "西藏自治区",
    "61": "陕西省",
    "62": "甘肃省",
    "63": "青海省",
    "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
    "71": "台湾省",
    "81": "香港特别行政区",
    "82": "澳门特别行政区",
}
# Address codes of the residence permits of Hong Kong, Macao and Taiwan residents: ID-number
# addresses that are not GB/T 2260 units (830000 has no province of its own).
RESIDENCE_PERMITS = ("810000", "820000", "830000")
FOREIGN_RESIDENT_DIGIT = 9  # 2023 foreign permanent-residence ID: 9, issuing province, nationality


@dataclass(frozen=True)
class DivisionIndex:
    """The division codes a county's data may carry."""

    county: str  # 6 digits
    city: str  # 6 digits
    city_units: frozenset[str]  # county-level units of the city, the county included
    historical: frozenset[str]  # retired codes that ID numbers keep (e.g. 372331 before 1989)
    towns: frozenset[str]  # 9 digits
    villages: frozenset[str]  # 12 digits
    provinces: frozenset[str] = frozenset(PROVINCES)

    @classmethod
    def from_profile(cls, profile: CountyProfile) -> DivisionIndex:
        return cls(
            county=profile.code,
            city=profile.city.code,
            city_units=frozenset({profile.code, *(u.code for u in profile.city.units)}),
            historical=frozenset(h.code for h in profile.historical_codes),
            towns=frozenset(t.code for t in profile.towns),
            villages=frozenset(v.code for v in profile.villages),
        )

    @property
    def statistical_codes(self) -> frozenset[str]:
        """The 12-digit codes of the county: villages, towns and the county (zero-padded)."""
        padded_towns = {t + "000" for t in self.towns}
        return self.villages | padded_towns | {self.county + "000000"}


def address_checks(
    code6: np.ndarray, index: DivisionIndex | None, *, id_forms: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(province known, unit known) for 6-digit codes given as integers, looked up in tables
    of every code (``_address_tables``): one gather a batch instead of a dozen passes and set
    lookups. Values outside 0-999999 come from malformed codes, which fail a format check
    first; they get an answer, never an error."""
    province_ok, unit_ok = _address_tables(index, id_forms)
    code6 = np.clip(code6, 0, len(province_ok) - 1)
    return province_ok[code6], unit_ok[code6]


@functools.cache
def _address_tables(index: DivisionIndex | None, id_forms: bool) -> tuple[np.ndarray, np.ndarray]:
    """(province known, unit known) of each code 000000-999999.

    A historical code passes both, even where its prefecture no longer exists. Without an index
    only the province is checked; with one, a code inside the county's city must be a unit of
    the city. ``id_forms`` also accepts the ID-number addresses that are not GB/T 2260 units:
    the residence permits and the foreign permanent-residence ID, whose digits 2-3 are the
    issuing province.
    """
    known = np.zeros(100, dtype=bool)
    known[[int(p) for p in (index.provinces if index else PROVINCES)]] = True
    province_ok = np.repeat(known, 10_000)  # by the first two digits
    unit_ok = np.ones(len(province_ok), dtype=bool)
    if id_forms:
        foreign = FOREIGN_RESIDENT_DIGIT * 100_000
        province_ok[foreign : foreign + 100_000] = np.repeat(known, 1_000)  # digits 2-3
        province_ok[[int(c) for c in RESIDENCE_PERMITS]] = True
    if index is not None:
        city = int(index.city) // 100 * 100
        unit_ok[city : city + 100] = False
        unit_ok[[int(c) for c in index.city_units]] = True
        historical = [int(c) for c in index.historical]
        province_ok[historical] = unit_ok[historical] = True
    return province_ok, unit_ok


def _digit_codes(values: pa.StringArray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wrong length, not all digits, byte matrix) of codes of ``width`` digits."""
    matrix, fits = fixed_width(values, width)
    wrong_length = char_lengths(values) != width
    return wrong_length, ~(fits & bytes_between(matrix, "0", "9")), matrix


@vectorised
def validate_gb2260(values: pa.StringArray, index: DivisionIndex | None = None) -> ArrayVerdict:
    """6-digit county-level codes. Codes of other provinces only need a real province: no
    national county table is kept, as counties are created and merged every year."""
    wrong_length, wrong_chars, matrix = _digit_codes(values, 6)
    province_ok, unit_ok = address_checks(digit_values(matrix), index)
    return first_failure(
        values,
        [
            ("length", wrong_length),
            ("charset", wrong_chars),
            ("province", ~province_ok),
            ("unknown", ~unit_ok),
        ],
    )


@functools.cache
def _county_suffixes(index: DivisionIndex) -> np.ndarray:
    """Which 6 digits after the county's code make one of its 12-digit codes, as a table of
    every suffix: built once per index, read with one gather (is_in hashes every value)."""
    known = np.zeros(1_000_000, dtype=bool)
    codes = [c for c in index.statistical_codes if c.startswith(index.county) and c.isdigit()]
    known[[int(c[6:]) for c in codes if len(c) == 12]] = True
    return known


@vectorised
def validate_nbs(values: pa.StringArray, index: DivisionIndex) -> ArrayVerdict:
    """12-digit statistical codes of the county's villages and towns (or the county), checked
    against the reference table of the profile, by their bytes: the last two checks matter
    only for 12 digits."""
    if index is None:
        raise ValueError("NBS codes are checked against a DivisionIndex; none was given")
    wrong_length, wrong_chars, matrix = _digit_codes(values, 12)
    suffix = np.where(wrong_chars, 0, digit_values(matrix[:, 6:]))
    return first_failure(
        values,
        [
            ("length", wrong_length),
            ("charset", wrong_chars),
            ("outside_county", ~rows_start_with(matrix, index.county)),
            ("unknown", ~_county_suffixes(index)[suffix]),
        ],
    )


@vectorised
def town_of(values: pa.StringArray) -> pa.StringArray:
    """The 9-digit township code of 12-digit village codes."""
    return pc.utf8_slice_codeunits(values, 0, 9)


@vectorised
def village_in_town(village_values: pa.StringArray, town_values) -> ArrayVerdict:
    """Villages that lie in the declared town; towns may be 9-digit or zero-padded 12-digit.
    A null on either side passes (nullability is another rule)."""
    same = pc.equal(town_of(village_values), town_of(to_array(town_values)))
    return first_failure(village_values, [("wrong_town", pc.invert(same))])
