"""National code standards: the standards' own examples, known-bad values with their reason
codes, property-based check-character tests, and the registries the rule engine calls."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import get_args

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl.contracts import REPO_ROOT, Standard, load_profile
from etl.standards import (
    NORMALIZERS,
    VALIDATORS,
    ArrayVerdict,
    StandardContext,
    Verdict,
    codes,
    divisions,
    first_failure,
    gb11643,
    gb32100,
    phone,
)

VALID = Verdict(True, None)


def invalid(reason: str) -> Verdict:
    return Verdict(False, reason)


@pytest.fixture(scope="module")
def profile():
    return load_profile(REPO_ROOT / "schemas")


@pytest.fixture(scope="module")
def index(profile) -> divisions.DivisionIndex:
    return divisions.DivisionIndex.from_profile(profile)


@pytest.fixture(scope="module")
def context(profile) -> StandardContext:
    return StandardContext.from_profile(profile)


def agree(validate, values: list[str | None], *args) -> list[Verdict]:
    """The verdicts of the single-value form, checked against the array form."""
    singles = [validate(v, *args) for v in values]
    verdict = validate(pa.array(values, pa.string()), *args)
    assert isinstance(verdict, ArrayVerdict)
    assert list(zip(verdict.valid.to_pylist(), verdict.reason.to_pylist(), strict=True)) == [
        tuple(s) for s in singles
    ]
    return singles


# --------------------------------------------------------------------------- check characters


def test_citizen_id_check_character_matches_the_standard_example():
    assert gb11643.make_id_number("110105", "19491231", "002") == "11010519491231002X"
    assert gb11643.check_char("44052418800101001") == "4"


def test_legacy_fifteen_digit_number_is_upgraded():
    assert gb11643.upgrade_legacy("110105491231002") == "11010519491231002X"


def test_credit_code_check_characters():
    assert gb32100.make_credit_code("91", "350100", "M000100Y") == "91350100M000100Y43"
    assert gb32100.check_char("91110000600037341") == "L"  # 91110000600037341L


# --------------------------------------------------------------------------- GB 11643


def test_id_numbers_known_good(index):
    good = [
        "11010519491231002X",
        "11010519491231002x",  # lower-case x
        " 110105 19491231 002X\u3000",  # blanks, internal and full-width
        "110105491231002",  # legacy 15 digits
        gb11643.make_id_number("372331", "19800101", "003"),  # Gaoqing before 1989
        gb11643.make_id_number("370302", "19900101", "004"),  # another unit of Zibo
        gb11643.make_id_number("440524", "18800101", "001"),
        gb11643.make_id_number("810000", "19900101", "001"),  # residence permits
        gb11643.make_id_number("830000", "19900101", "001"),
        gb11643.make_id_number("937156", "19900101", "001"),  # foreign permanent residence
        gb11643.make_id_number("370322", "19840229", "001"),  # leap days
        gb11643.make_id_number("370322", "20000229", "001"),
        None,
    ]
    assert agree(gb11643.validate, good, index) == [VALID] * len(good)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("", "length"),
        ("高青县", "length"),
        ("1101051949123100", "length"),
        ("11010519491231002XX", "length"),
        ("１１０１０５１９４９１２３１００２Ｘ", "charset"),  # full-width
        ("1101051949123100２X", "charset"),
        ("X10105194912310020", "charset"),
        ("11010519491231A02X", "charset"),
        ("11010549123100A", "charset"),  # 15 characters, not a legacy number
        (gb11643.make_id_number("000000", "19491231", "002"), "address"),
        (gb11643.make_id_number("990101", "19491231", "002"), "address"),
        (gb11643.make_id_number("370399", "19491231", "002"), "address"),  # in Zibo, no unit
        (gb11643.make_id_number("840000", "19491231", "002"), "address"),
        (gb11643.make_id_number("370322", "19850229", "001"), "birth_date"),
        (gb11643.make_id_number("370322", "19000229", "001"), "birth_date"),
        (gb11643.make_id_number("370322", "19841301", "001"), "birth_date"),
        (gb11643.make_id_number("370322", "19840431", "001"), "birth_date"),
        (gb11643.make_id_number("370322", "19840100", "001"), "birth_date"),
        (gb11643.make_id_number("370322", "17991231", "001"), "birth_date"),
        (gb11643.make_id_number("370322", "29990101", "001"), "birth_future"),
        ("110105491331002", "birth_date"),  # legacy number with month 13
        ("110105194912310021", "check"),
    ],
)
def test_id_numbers_known_bad(index, number, reason):
    assert agree(gb11643.validate, [number], index) == [invalid(reason)]


def test_id_address_rules_depend_on_the_division_index(index):
    inside_city = gb11643.make_id_number("370399", "19491231", "002")
    assert gb11643.validate(inside_city) == VALID  # without an index only the province counts
    assert gb11643.validate(inside_city, index) == invalid("address")
    newer = dataclasses.replace(index, city_units=index.city_units | {"370399"})
    assert gb11643.validate(inside_city, newer) == VALID


def test_id_birth_future_is_relative_to_today():
    number = gb11643.make_id_number("370322", "20260601", "001")
    assert gb11643.validate(number, today=date(2026, 6, 1)) == VALID
    assert gb11643.validate(number, today=date(2026, 5, 31)) == invalid("birth_future")


def test_id_normalize_and_legacy_warning():
    raw = pa.array(["110105491231002", " 11010519491231002x", "11010519491231002X", "abc", None])
    assert gb11643.normalize(raw).to_pylist() == [
        "11010519491231002X",
        "11010519491231002X",
        "11010519491231002X",
        "ABC",
        None,
    ]
    assert gb11643.is_legacy(raw).to_pylist() == [True, False, False, False, False]
    assert gb11643.is_legacy(" 110105 491231002 ") is True


def test_id_birth_date_and_sex_of_valid_numbers_only():
    values = [
        "11010519491231002X",
        "110105491231002",
        gb11643.make_id_number("370322", "20000229", "013"),
        "110105194912310021",  # wrong check
        None,
    ]
    assert gb11643.birth_date(pa.array(values)).to_pylist() == [
        date(1949, 12, 31),
        date(1949, 12, 31),
        date(2000, 2, 29),
        None,
        None,
    ]
    assert gb11643.sex(pa.array(values)).to_pylist() == ["2", "2", "1", None, None]
    assert gb11643.birth_date("11010519491231002X") == date(1949, 12, 31)
    assert gb11643.sex("11010519491231002X") == "2"


def test_sliced_and_chunked_arrays_are_judged_by_their_own_values(index):
    values = ["", "11010519491231002X", "11010519491231002", None, "110105194912310021"]
    whole = gb11643.validate(pa.array(values), index)
    sliced = gb11643.validate(pa.array(values).slice(1, 3), index)
    assert sliced.reason.to_pylist() == whole.reason.to_pylist()[1:4]
    chunked = gb11643.validate(pa.chunked_array([values[:2], values[2:]]), index)
    assert chunked.reason.to_pylist() == whole.reason.to_pylist()
    assert gb11643.validate(pa.array([], pa.string())).valid.to_pylist() == []


@st.composite
def id_numbers(draw) -> str:
    province = draw(st.sampled_from(sorted(divisions.PROVINCES)))
    rest = draw(st.text("0123456789", min_size=4, max_size=4))
    born = draw(st.dates(min_value=date(1800, 1, 1), max_value=date.today()))
    sequence = draw(st.integers(0, 999))
    return gb11643.make_id_number(province + rest, born.strftime("%Y%m%d"), f"{sequence:03d}")


@given(st.lists(id_numbers(), min_size=1, max_size=50))
def test_generated_id_numbers_pass(numbers):
    assert gb11643.validate(pa.array(numbers)).valid.false_count == 0


@given(id_numbers(), st.integers(0, 17), st.data())
def test_any_single_substitution_invalidates_an_id_number(number, position, data):
    charset = "0123456789X" if position == 17 else "0123456789"
    char = data.draw(st.sampled_from([c for c in charset if c != number[position]]))
    changed = number[:position] + char + number[position + 1 :]
    assert not gb11643.validate(changed).valid


# --------------------------------------------------------------------------- GB 32100


def test_credit_codes_known_good():
    good = [
        "91350100M000100Y43",
        "91110000600037341L",
        " 91350100m000100y43 ",  # blanks and lower case are normalised
        gb32100.make_credit_code("N2", "370322", "MA3C4D5E"),  # 村级集体经济组织
        gb32100.make_credit_code("N3", "370322", "12345678"),  # 乡镇级
        gb32100.make_credit_code("A1", "370300", "12345678"),
        gb32100.make_credit_code("Y1", "370000", "12345678"),
        gb32100.make_credit_code("11", "100000", "12345678"),  # central registration
        gb32100.make_credit_code("35", "370322", "12345678"),
        None,
    ]
    assert agree(gb32100.validate, good) == [VALID] * len(good)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("", "length"),
        ("91350100M000100Y4", "length"),
        ("统一社会信用代码", "length"),
        ("9135010OM000100Y43", "charset"),  # letter O
        ("91350100M000100Y4Z", "charset"),
        ("９１３５０１００Ｍ０００１００Ｙ４３", "charset"),
        (gb32100.make_credit_code("B1", "350100", "M000100Y"), "department"),
        (gb32100.make_credit_code("94", "350100", "M000100Y"), "category"),
        (gb32100.make_credit_code("N4", "370322", "12345678"), "category"),
        (gb32100.make_credit_code("Y2", "370322", "12345678"), "category"),
        (gb32100.make_credit_code("91", "990100", "M000100Y"), "division"),
        (gb32100.make_credit_code("91", "37A100", "M000100Y"), "division"),
        ("91350100M000100Y44", "check"),
    ],
)
def test_credit_codes_known_bad(code, reason):
    assert agree(gb32100.validate, [code]) == [invalid(reason)]


def test_organisation_code_check_is_a_separate_warning():
    body = "91350100M000100Y" + "0"  # the GB 11714 check of M000100Y is 4
    code = body + gb32100.check_char(body)
    assert gb32100.validate(code) == VALID
    assert agree(gb32100.org_check, [code, "91350100M000100Y43", "bad", None]) == [
        invalid("org_check"),
        VALID,
        VALID,  # malformed codes are validate's business
        VALID,
    ]


@st.composite
def credit_codes(draw) -> str:
    department = draw(st.sampled_from(sorted(gb32100.CATEGORIES)))
    category = draw(st.sampled_from(gb32100.CATEGORIES[department]))
    province = draw(st.sampled_from(sorted(divisions.PROVINCES)))
    county = draw(st.text("0123456789", min_size=4, max_size=4))
    division = draw(st.sampled_from(["100000", province + county]))
    organisation = draw(st.text(gb32100.CHARSET, min_size=8, max_size=8))
    return gb32100.make_credit_code(department + category, division, organisation)


@given(st.lists(credit_codes(), min_size=1, max_size=50))
def test_generated_credit_codes_pass(values):
    assert gb32100.validate(pa.array(values)).valid.false_count == 0
    assert gb32100.org_check(pa.array(values)).valid.false_count == 0


@given(credit_codes(), st.integers(0, 17), st.data())
def test_any_single_substitution_invalidates_a_credit_code(code, position, data):
    char = data.draw(st.sampled_from([c for c in gb32100.CHARSET if c != code[position]]))
    changed = code[:position] + char + code[position + 1 :]
    assert not gb32100.validate(changed).valid


# --------------------------------------------------------------------------- divisions


def test_first_failure_names_the_first_failing_check_of_each_present_value():
    rng = np.random.default_rng(11)
    values = pa.array([None if rng.random() < 0.1 else "v" for _ in range(5_000)], pa.string())
    masks = [rng.random(len(values)) < rate for rate in (0.01, 0.3, 0.02)]
    names = ["length", "x", "birth_future"]
    checks = list(zip(names, masks, strict=True))
    verdict = first_failure(values, checks)
    expected = [
        None if value is None else next((n for n, m in checks if m[i]), None)
        for i, value in enumerate(values.to_pylist())
    ]
    assert verdict.reason.to_pylist() == expected
    assert verdict.valid.to_pylist() == [reason is None for reason in expected]


def test_address_checks_answer_codes_out_of_range(index):
    # Sums over malformed rows' bytes can leave 0-999999; they fail a format check first.
    province_ok, unit_ok = divisions.address_checks(np.array([-7, 370322, 2_000_000]), index)
    assert province_ok.tolist() == [False, True, False]
    assert len(unit_ok) == 3


def test_gb2260_codes(index):
    values = ["370322", "370302", "372331", "110105", "370399", "990000", "37032", "37032a", None]
    assert agree(divisions.validate_gb2260, values, index) == [
        VALID,
        VALID,
        VALID,  # historical
        VALID,  # another province: a real province suffices
        invalid("unknown"),
        invalid("province"),
        invalid("length"),
        invalid("charset"),
        VALID,
    ]


def test_nbs_codes_against_the_real_village_table(profile, index):
    village = profile.villages[0].code
    values = [
        village,
        "370322101000",  # a town, padded
        "370322000000",  # the county, padded
        "370322101999",  # unknown village segment
        "370322107000",  # there is no town 107
        "370321001001",
        "37032210120",
        "37032210120X",
        None,
    ]
    assert agree(divisions.validate_nbs, values, index) == [
        VALID,
        VALID,
        VALID,
        invalid("unknown"),
        invalid("unknown"),
        invalid("outside_county"),
        invalid("length"),
        invalid("charset"),
        VALID,
    ]
    assert len(index.villages) == len(profile.villages) == 318
    newer = dataclasses.replace(index, villages=index.villages | {"370322101999"})
    assert divisions.validate_nbs("370322101999", newer) == VALID  # a newer table, no code


def test_village_in_town(profile):
    first = profile.villages[0]
    other = next(v for v in profile.villages if v.town_code != first.town_code)
    villages = [first.code, first.code, first.code, None, first.code]
    towns = [first.town_code, first.town_code + "000", other.town_code, first.town_code, None]
    verdict = divisions.village_in_town(pa.array(villages), pa.array(towns))
    assert verdict.reason.to_pylist() == [None, None, "wrong_town", None, None]
    assert divisions.village_in_town(first.code, other.town_code) == invalid("wrong_town")
    assert divisions.town_of(first.code) == first.town_code


# --------------------------------------------------------------------------- code lists


def test_sex_codes():
    assert agree(codes.validate_sex, ["0", "1", "2", "9", "3", "男", "", None]) == [
        VALID,
        VALID,
        VALID,
        VALID,
        invalid("unknown_code"),
        invalid("unknown_code"),
        invalid("unknown_code"),
        VALID,
    ]


def test_ethnicity_codes():
    assert len(codes.ETHNICITIES) == 56 and codes.ETHNICITIES["56"] == "基诺族"
    values = ["01", "56", "97", "98", "57", "1", "汉族", None]
    assert agree(codes.validate_ethnicity, values) == [
        VALID,
        VALID,
        VALID,
        VALID,
        invalid("unknown_code"),
        invalid("format"),
        invalid("format"),
        VALID,
    ]
    other = ("57", "58")
    assert agree(codes.validate_ethnicity, ["57", "97"], other) == [VALID, invalid("unknown_code")]


def test_industry_codes():
    values = ["C", "C13", "C131", "C1311", "13", "1311", "A01", "T97", "K70"]
    assert agree(codes.validate_industry, values) == [VALID] * len(values)
    bad = {
        "c13": "format",
        "C1": "format",
        "C13111": "format",
        "": "format",
        "U13": "section",
        "Z": "section",
        "A13": "division_section",
        "C44": "division_section",
        "99": "division_section",
        "00": "division_section",
    }
    assert agree(codes.validate_industry, list(bad)) == [invalid(r) for r in bad.values()]


# --------------------------------------------------------------------------- telephones


def test_mobile_normalisation_and_error_tier():
    assert phone.normalize_mobile("+86 138-0013-8000") == "13800138000"
    values = ["+86 138-0013-8000", "0086 13800138000", "8613800138000", "12345678901", "1380013800"]
    assert agree(phone.validate_mobile, values) == [VALID] * 3 + [invalid("format")] * 2


def _unallocated_mobile() -> str:
    """A number of the error tier's shape that libphonenumber does not take as a CN mobile."""
    for prefix in ("140", "141", "144", "154", "174", "194", "195", "192"):
        number = prefix + "12345678"
        parsed = phonenumbers.parse(number, "CN")
        if phonenumbers.number_type(parsed) != phonenumbers.PhoneNumberType.MOBILE:
            return number
    raise AssertionError("every candidate is allocated now: pick new ones")


def test_mobile_strict_tier_follows_libphonenumber():
    number = _unallocated_mobile()
    assert phone.validate_mobile(number) == VALID
    assert agree(phone.validate_mobile_strict, [number, "13800138000", "12345678901", None]) == [
        invalid("not_allocated"),
        VALID,
        VALID,  # the error tier reports it
        VALID,
    ]


@given(st.text("0123456789", min_size=9, max_size=9), st.sampled_from("3456789"))
def test_strict_mobile_pattern_agrees_with_phonenumbers(rest, second):
    number = "1" + second + rest
    is_mobile = phonenumbers.number_type(phonenumbers.parse(number, "CN")) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )
    assert phone.validate_mobile_strict(number).valid == is_mobile


def test_landlines_and_phones():
    good = ["0533-1234567", "05331234567", "(0533)1234567", "0533 123 4567", "（0533）1234567"]
    bad = {"0531-1234567": "area_code", "1234567": "format", "13800138000": "format"}
    assert agree(phone.validate_landline, good) == [VALID] * len(good)
    assert agree(phone.validate_landline, list(bad)) == [invalid(r) for r in bad.values()]
    assert phone.validate_landline("0531-1234567", ("0531", "0533")) == VALID
    values = ["0533-1234567", "+86 13800138000", "0531-1234567", "123"]
    assert agree(phone.validate_phone, values) == [
        VALID,
        VALID,
        invalid("area_code"),
        invalid("format"),
    ]


# --------------------------------------------------------------------------- registries


def test_validators_cover_every_standard_of_the_contracts():
    assert set(VALIDATORS) == set(get_args(Standard))
    assert set(NORMALIZERS) <= set(VALIDATORS)


@given(st.lists(st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cs",))))))
def test_no_validator_raises_on_any_text(context, values):
    array = pa.array(values, pa.string())
    for name, validate in VALIDATORS.items():
        verdict = validate(array, context)
        assert len(verdict.valid) == len(verdict.reason) == len(values), name
        assert verdict.valid.null_count == 0, name
    for normalize in NORMALIZERS.values():
        assert len(normalize(array)) == len(values)


def test_registry_callables_use_the_context(context):
    number = gb11643.make_id_number("370399", "19491231", "002")
    verdict = VALIDATORS["gb11643"](pa.array([number]), context)
    assert verdict.reason.to_pylist() == ["address"]
    landline = VALIDATORS["landline"](pa.array(["0533-1234567"]), context)
    assert landline.valid.to_pylist() == [True]
    assert NORMALIZERS["gb11643"](pa.array(["110105491231002"])).to_pylist() == [
        "11010519491231002X"
    ]


def test_strict_mobile_tier_equals_libphonenumbers_pattern_on_random_numbers():
    """The prefix table behind the strict tier decides exactly as the regular expression."""
    rng = np.random.default_rng(11)
    second = rng.integers(3, 10, 200_000).astype(str)
    rest = np.char.zfill(rng.integers(0, 10**9, 200_000).astype(str), 9)
    numbers = pa.array(np.char.add(np.char.add("1", second), rest))
    expected = pc.match_substring_regex(numbers, phone.strict_mobile_pattern())
    assert phone.validate_mobile_strict(numbers).valid.equals(expected)
