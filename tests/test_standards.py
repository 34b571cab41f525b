"""Check characters of the national codes, on the standards' own published examples."""

from __future__ import annotations

from etl.standards import gb11643, gb32100


def test_citizen_id_check_character_matches_the_standard_example():
    assert gb11643.make_id_number("110105", "19491231", "002") == "11010519491231002X"
    assert gb11643.check_char("44052418800101001") == "4"


def test_legacy_fifteen_digit_number_is_upgraded():
    assert gb11643.upgrade_legacy("110105491231002") == "11010519491231002X"


def test_credit_code_check_characters():
    assert gb32100.make_credit_code("91", "350100", "M000100Y") == "91350100M000100Y43"
    assert gb32100.check_char("91110000600037341") == "L"  # 91110000600037341L
