"""Vectorised national codes (GB 11643 ID numbers, GB 32100 credit codes), timestamps, and the
deterministic dirt mutators.

The scalar reference implementations live in :mod:`etl.standards`; the functions here compute
the same check characters over numpy arrays so that 370,000 numbers cost milliseconds.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from etl.standards import gb11643, gb32100

_ID_WEIGHTS = np.array(gb11643.WEIGHTS, dtype=np.int64)
_ID_CHECK = np.array(list(gb11643.CHECK_CHARS))
_CC_WEIGHTS = np.array(gb32100.WEIGHTS, dtype=np.int64)
_CC_CHARSET = np.array(list(gb32100.CHARSET))
_CC_INDEX = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(gb32100.CHARSET):
    _CC_INDEX[ord(_c)] = _i
_ORG_VALUE = np.zeros(256, dtype=np.int64)
for _c in "0123456789":
    _ORG_VALUE[ord(_c)] = int(_c)
for _c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _ORG_VALUE[ord(_c)] = ord(_c) - 55
_ORG_WEIGHTS = np.array(gb32100.ORG_WEIGHTS, dtype=np.int64)


def _byte_matrix(strings: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8 matrix of the ASCII bytes of equal-length strings."""
    raw = np.asarray(strings).astype(f"S{width}")
    return np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(-1, width)


def id_check_chars(body17: np.ndarray) -> np.ndarray:
    if len(body17) == 0:
        return np.array([], dtype="<U1")
    digits = _byte_matrix(body17, 17).astype(np.int64) - 48
    return _ID_CHECK[(digits @ _ID_WEIGHTS) % 11]


def id_numbers(body17: np.ndarray) -> np.ndarray:
    body17 = np.asarray(body17, dtype="<U17")
    return np.char.add(body17, id_check_chars(body17))


def id_bodies(addr6: np.ndarray, birth: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """17-character bodies from address codes, birth dates (datetime64[D]) and sequences."""
    ymd = replace(np.datetime_as_string(birth.astype("datetime64[D]"), unit="D"), "-", "")
    return np.char.add(np.char.add(np.asarray(addr6, dtype="<U6"), ymd), zfill(seq, 3))


def replace(values: np.ndarray, old: str, new: str) -> np.ndarray:
    """np.char.replace that also accepts empty arrays."""
    values = np.asarray(values)
    return np.char.replace(values, old, new) if len(values) else values.astype(str)


def zfill(values: np.ndarray, width: int) -> np.ndarray:
    text = np.asarray(values).astype(np.int64).astype(f"<U{width}")
    return np.char.zfill(text, width) if len(text) else text


def credit_codes(dept_cat: np.ndarray, division6: np.ndarray, org8: np.ndarray) -> np.ndarray:
    """Valid GB 32100 codes: dept+category(2), division(6), organisation body(8) with its GB 11714
    check, overall check."""
    org8 = np.asarray(org8, dtype="<U8")
    if len(org8) == 0:
        return np.array([], dtype="<U18")
    org_vals = _ORG_VALUE[_byte_matrix(org8, 8)]
    org_c = 11 - (org_vals @ _ORG_WEIGHTS) % 11
    org_check = np.where(org_c == 10, "X", np.where(org_c == 11, "0", org_c.astype("<U2")))
    body = np.char.add(
        np.char.add(
            np.char.add(np.asarray(dept_cat, dtype="<U2"), np.asarray(division6, dtype="<U6")), org8
        ),
        org_check,
    )
    vals = _CC_INDEX[_byte_matrix(body, 17)]
    check = _CC_CHARSET[(31 - (vals @ _CC_WEIGHTS) % 31) % 31]
    return np.char.add(body, check)


def random_org_bodies(rng: np.random.Generator, n: int) -> np.ndarray:
    """Organisation-code bodies: 8 characters of the credit-code charset, mostly digits."""
    digits = rng.integers(0, 10, size=(n, 8))
    letters = rng.integers(10, 31, size=(n, 8))
    use_letter = rng.random((n, 8)) < 0.12
    idx = np.where(use_letter, letters, digits)
    chars = np.frombuffer(gb32100.CHARSET.encode(), dtype=np.uint8)[idx]
    return np.frombuffer(chars.astype(np.uint8).tobytes(), dtype="S8").astype("<U8")


def random_digits(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    chars = (rng.integers(0, 10, size=(n, width)) + 48).astype(np.uint8)
    return np.frombuffer(chars.tobytes(), dtype=f"S{width}").astype(f"<U{width}")


# --------------------------------------------------------------------------- time


def day_start(start: date, day: int) -> np.datetime64:
    """Midnight of simulated day ``day`` (1 = the profile's start date)."""
    return np.datetime64(start, "s") + np.timedelta64((day - 1) * 86400, "s")


# Hour-of-day weights: office work (registrations, referrals) and round-the-clock activity.
OFFICE_HOURS = np.array(
    [0, 0, 0, 0, 0, 0, 0, 1, 6, 10, 10, 8, 3, 5, 9, 10, 9, 6, 2, 1, 0, 0, 0, 0], dtype=float
)
ALL_DAY = np.array(
    [1, 0.6, 0.4, 0.4, 0.5, 1, 2, 4, 6, 6, 6, 6, 5, 5, 6, 6, 6, 6, 5, 4, 3, 2.5, 2, 1.5],
    dtype=float,
)


def seconds_in_day(
    rng: np.random.Generator, n: int, hours: np.ndarray = OFFICE_HOURS
) -> np.ndarray:
    hour = rng.choice(24, size=n, p=hours / hours.sum())
    return hour * 3600 + rng.integers(0, 3600, size=n)


def fmt_ts(values: np.ndarray) -> np.ndarray:
    """datetime64 -> 'YYYY-MM-DD HH:MM:SS' strings (naive local wall-clock time)."""
    if len(values) == 0:
        return np.array([], dtype="<U19")
    return np.char.replace(
        np.datetime_as_string(values.astype("datetime64[s]"), unit="s"), "T", " "
    )


def fmt_date(values: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return np.array([], dtype="<U10")
    return np.datetime_as_string(values.astype("datetime64[D]"), unit="D")


# --------------------------------------------------------------------------- dirt mutators
# Each mutator is a pure function of the clean value, so re-emitting a dirty row (an update of a
# resident whose stored number is bad) writes the same dirty value again.


def bad_id_check(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype="<U18")
    body = np.char.ljust(ids, 17).astype("<U17")
    digits = _byte_matrix(body, 17).astype(np.int64) - 48
    wrong = _ID_CHECK[((digits @ _ID_WEIGHTS) + 1) % 11]
    return np.char.add(body, wrong)


def bad_birth_date(ids: np.ndarray) -> np.ndarray:
    """Month + 12 (13-24): an impossible date, with a check character valid for the body."""
    body = [s[:10] + f"{int(s[10:12]) + 12:02d}" + s[12:17] for s in ids]
    body = np.array(body, dtype="<U17")
    return id_numbers(body)


def lowercase_x(ids: np.ndarray) -> np.ndarray:
    return np.char.lower(np.asarray(ids, dtype="<U18"))


def legacy_15(ids: np.ndarray) -> np.ndarray:
    return np.array([s[:6] + s[8:17] for s in ids], dtype="<U15")


def blank_padded(values: np.ndarray) -> np.ndarray:
    return np.char.add(np.char.add(" ", np.asarray(values).astype(str)), "  ")


def bad_credit_check(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes, dtype="<U18")
    idx = _CC_INDEX[_byte_matrix(codes, 18)[:, 17]]
    body = np.array([c[:17] for c in codes], dtype="<U17")
    return np.char.add(body, _CC_CHARSET[(idx + 1) % 31])


def wrong_town(codes: np.ndarray) -> np.ndarray:
    """The next township segment (a neighbouring town, or one that does not exist)."""
    segment = np.char.mod("%03d", np.array([int(c[6:9]) + 1 for c in codes]))
    return np.char.add(np.array([c[:6] for c in codes], dtype="<U6"), segment)


def unknown_village(codes: np.ndarray) -> np.ndarray:
    """Village segment 9xx: never used by NBS (001-199 居委会, 200-399 村委会)."""
    return np.array([c[:9] + "9" + c[10:12] for c in codes], dtype="<U12")
