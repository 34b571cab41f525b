"""What an exchange may receive: masks by share type and classification grade.

A column goes out as the warehouse holds it only when its grade is at or below the grade the
exchange is entitled to for the resource's share type (``ExchangeContract.ceiling``); above it,
the column's mask applies, or it is dropped. The display masks are the Python twins of
``warehouse/macros/privacy.sql`` (same characters kept, same null handling), so a value masked
in the warehouse and masked again here is unchanged. The uplinks apply them as DuckDB
expressions (``mask_sql``), vectorised; these Python functions define what they must give
(tests compare the two on every mask). ``pseudonym`` re-keys an identifier with
the exchange's own secret, so each exchange can follow a person across its deliveries but not
link them to another exchange's or the county's keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from etl.contracts import ExchangeColumn, ExchangeContract, ExchangeResource, grade_above
from etl.signing import hmac_pads

_VILLAGE_LEVEL = re.compile(r"^(.*?(村委会|居委会|社区|村))")


def _keep_ends(value, head: int, tail: int) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    if len(text) <= head + tail:
        return "*" * len(text)
    return text[:head] + "*" * (len(text) - head - tail) + (text[-tail:] if tail else "")


def mask_name(value) -> str | None:
    """Keep the surname: 张三丰 -> 张**."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    return text[0] + "*" * max(len(text) - 1, 1)


def mask_id_number(value) -> str | None:
    return _keep_ends(value, 6, 4)


def mask_mobile(value) -> str | None:
    return _keep_ends(value, 3, 4)


def mask_landline(value) -> str | None:
    return _keep_ends(value, 4, 2)


def mask_bank_card(value) -> str | None:
    return _keep_ends(value, 4, 4)


def mask_credit_code(value) -> str | None:
    """Keep the registering department, category and division (the first 8 characters)."""
    return _keep_ends(value, 8, 0)


def mask_address(value) -> str | None:
    """Truncate to the village: the text up to the first village-level word, else nothing."""
    if value is None or not str(value).strip():
        return None
    found = _VILLAGE_LEVEL.match(str(value))
    return found.group(1) if found and found.group(1) else None


def mask_year(value) -> str | None:
    """A date or time kept to its year."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return f"{value.year:04d}"
    text = str(value)
    return text[:4] if re.match(r"^\d{4}", text) else None


def pseudonymiser(key: bytes) -> Callable[[object], str | None]:
    """HMAC-SHA256 of the value under the exchange's key (hex)."""

    def mask_pseudonym(value) -> str | None:
        if value is None or str(value).strip() == "":
            return None
        return hmac.new(key, str(value).strip().encode("utf-8"), hashlib.sha256).hexdigest()

    return mask_pseudonym


# What str.strip() removes (the characters whose str.isspace() is true), for DuckDB's trim()
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The session variables holding the exchange's HMAC pads while its rows are read
_PAD_VARIABLES = {"ipad": "uplink_hmac_ipad", "opad": "uplink_hmac_opad"}
_KEEP_ENDS = {"id_number": (6, 4), "mobile": (3, 4), "landline": (4, 2), "bank_card": (4, 4),
              "credit_code": (8, 0)}  # fmt: skip


def mask_sql(mask: str, value: str) -> str:
    """The DuckDB expression of ``mask`` over the text expression ``value``: what the Python
    function of the same name gives, for a whole column at once. ``pseudonym`` reads the
    exchange's padded keys from session variables (``bind_pseudonym_key``), never SQL text."""
    ws = "'" + WHITESPACE.replace("'", "''") + "'"
    stripped = f"trim({value}, {ws})"
    if mask in _KEEP_ENDS:
        head, tail = _KEEP_ENDS[mask]
        right = f"right({value}, {tail})" if tail else "''"
        return (
            f"CASE WHEN {value} IS NULL OR {value} = '' THEN NULL "
            f"WHEN length({value}) <= {head + tail} THEN repeat('*', length({value})) "
            f"ELSE left({value}, {head}) || repeat('*', length({value}) - {head + tail}) "
            f"|| {right} END"
        )
    blank = f"{value} IS NULL OR {stripped} = ''"
    if mask == "name":
        return (
            f"CASE WHEN {blank} THEN NULL ELSE left({stripped}, 1) "
            f"|| repeat('*', greatest(length({stripped}) - 1, 1)) END"
        )
    if mask == "address":
        village = _VILLAGE_LEVEL.pattern.replace("'", "''")
        extract = f"nullif(regexp_extract({value}, '{village}', 1), '')"
        return f"CASE WHEN {blank} THEN NULL ELSE {extract} END"
    if mask == "year":
        return (
            f"CASE WHEN {value} IS NULL OR {value} = '' THEN NULL "
            f"WHEN regexp_matches({value}, '^\\p{{Nd}}{{4}}') THEN left({value}, 4) END"
        )
    if mask == "pseudonym":
        ipad, opad = (f"getvariable('{_PAD_VARIABLES[k]}')" for k in ("ipad", "opad"))
        return (
            f"CASE WHEN {blank} THEN NULL "
            f"ELSE sha256({opad} || unhex(sha256({ipad} || encode({stripped})))) END"
        )
    raise ValueError(f"no SQL for the mask {mask!r}")


def bind_pseudonym_key(con, key: bytes) -> None:
    """Give the DuckDB connection ``con`` the exchange's key for ``mask_sql('pseudonym', ...)``,
    as its HMAC padded keys in session variables."""
    for name, pad in zip(("ipad", "opad"), hmac_pads(key), strict=True):
        con.execute(f"SET VARIABLE {_PAD_VARIABLES[name]} = unhex(?)", [pad])


DISPLAY_MASKS: dict[str, Callable[[object], str | None]] = {
    "name": mask_name,
    "id_number": mask_id_number,
    "mobile": mask_mobile,
    "landline": mask_landline,
    "bank_card": mask_bank_card,
    "credit_code": mask_credit_code,
    "address": mask_address,
    "year": mask_year,
}


@dataclass(frozen=True)
class OutgoingColumn:
    """A column as it leaves for one exchange: the source column, the item name at the
    exchange, the type on the wire and the mask applied (``none`` when entitled)."""

    column: ExchangeColumn
    applied_mask: str

    @property
    def name(self) -> str:
        return self.column.name

    @property
    def item(self) -> str:
        return self.column.item

    @property
    def type(self) -> str:
        return self.column.type if self.applied_mask == "none" else "string"


def outgoing_columns(
    exchange: ExchangeContract, resource: ExchangeResource
) -> list[OutgoingColumn]:
    """The columns that leave for ``exchange``, in contract order, dropped ones left out."""
    ceiling = exchange.ceiling(resource)
    out = []
    for column in resource.columns:
        above = grade_above(column.grade, ceiling) or column.grade in ("important", "core")
        applied = column.mask if above else "none"
        if applied == "drop":
            continue
        out.append(OutgoingColumn(column, applied))
    return out
