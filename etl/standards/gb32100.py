"""GB 32100-2015 unified social credit codes (统一社会信用代码) and the embedded GB 11714
organisation code: check characters."""

from __future__ import annotations

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


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
