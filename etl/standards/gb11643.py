"""GB 11643-1999 citizen ID numbers (公民身份号码): the ISO 7064 MOD 11-2 check character."""

from __future__ import annotations

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


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
