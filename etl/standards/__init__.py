"""National code standards (GB 11643, GB 32100, GB/T 2260, ...) as vectorised validators.

Every validator takes one ``str`` (or None) or a pyarrow string ``Array``/``ChunkedArray``.
A single value gets a ``Verdict``; an array gets an ``ArrayVerdict`` of the same length. The
single-value form runs the array code on a one-element array, so each rule exists once.

A value gets the first reason code that applies, in the order listed in each module's
docstring; codes are short stable snake_case strings that land in quality results. A null
value is valid: whether a column may be null is a rule of its own. Bad values never raise.

``VALIDATORS`` and ``NORMALIZERS`` map the contract's standard names to uniform callables for
the rule engine; ``PARSERS`` give the parse its rules share.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from etl.contracts import CountyProfile


class Verdict(NamedTuple):
    valid: bool
    reason: str | None  # None when valid


class ArrayVerdict(NamedTuple):
    valid: pa.BooleanArray
    reason: pa.StringArray  # null where valid


Values = str | None | pa.Array | pa.ChunkedArray
Mask = np.ndarray | pa.Array | pa.ChunkedArray

# Blanks people type or paste: ASCII white space, Unicode separators (U+3000 ideographic space,
# no-break space, ...), and the invisible zero-width space and byte-order mark.
BLANK_CHARS = r"\s\p{Z}\x{200B}\x{FEFF}"
# Rows per float32 matrix product: small enough to stay in cache and to keep OpenBLAS on one
# thread (its spinning threads halve throughput when the other core is busy).
_BLOCK_ROWS = 1 << 11


# --------------------------------------------------------------------------- single value or array


def to_array(values: Values) -> pa.StringArray:
    """A string array from a str, None, Array or ChunkedArray (other types cast to text)."""
    if values is None or isinstance(values, str):
        return pa.array([values], pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if values.type == pa.string() else values.cast(pa.string())


def vectorised(func: Callable) -> Callable:
    """Let a function over a string array also take a single str (or None): it then runs on a
    one-element array and answers with a ``Verdict`` or a plain Python value."""

    @functools.wraps(func)
    def wrapper(values: Values, *args, **kwargs):
        result = func(to_array(values), *args, **kwargs)
        if values is not None and not isinstance(values, str):
            return result
        if isinstance(result, ArrayVerdict):
            return Verdict(result.valid[0].as_py(), result.reason[0].as_py())
        return result[0].as_py()

    return wrapper


# --------------------------------------------------------------------------- verdicts


def as_mask(mask: Mask) -> np.ndarray:
    """A numpy bool array from a numpy or Arrow mask (Arrow nulls count as False)."""
    if isinstance(mask, pa.Array | pa.ChunkedArray):
        return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    return np.asarray(mask, dtype=bool)


def first_failure(values: pa.Array, checks: Sequence[tuple[str, Mask]]) -> ArrayVerdict:
    """Verdicts naming, per value, the first check (reason, failure mask) that fails; null values
    pass whatever the masks say. Most values pass every check: the reasons of a batch that
    passes are all null without a take."""
    which = np.full(len(values), -1, dtype=np.int8)
    for at in range(len(checks) - 1, -1, -1):  # the first failing check is written last
        np.copyto(which, np.int8(at), where=as_mask(checks[at][1]))
    if values.null_count:
        np.copyto(which, np.int8(-1), where=~as_mask(values.is_valid()))
    valid = which < 0
    if valid.all():
        return ArrayVerdict(pa.array(valid), pa.nulls(len(values), pa.string()))
    return ArrayVerdict(pa.array(valid), _names_at([name for name, _ in checks], which, ~valid))


def _names_at(names: list[str], which: np.ndarray, failed: np.ndarray) -> pa.StringArray:
    """``names[which]`` where ``failed``, null elsewhere, written from the failing rows alone:
    most rows pass, and a take over the whole batch costs three times as much."""
    encoded = [name.encode() for name in names]
    sizes = np.array([len(name) for name in encoded], dtype=np.int32)
    starts = np.cumsum(sizes) - sizes
    rows = np.flatnonzero(failed)
    lengths = np.zeros(len(which), dtype=np.int32)
    lengths[rows] = sizes[which[rows]]
    offsets = np.zeros(len(which) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    # Each failing row's bytes: its name's start in the joined names, then consecutive bytes.
    at = np.repeat(starts[which[rows]] - offsets[rows], lengths[rows]) + np.arange(offsets[-1])
    data = np.frombuffer(b"".join(encoded), np.uint8)[at]
    buffers = [np.packbits(failed, bitorder="little"), offsets, data]
    return pa.Array.from_buffers(
        pa.string(),
        len(which),
        [pa.py_buffer(b) for b in buffers],
        null_count=len(which) - len(rows),
    )


# --------------------------------------------------------------------------- text as bytes


def char_lengths(values: pa.StringArray) -> np.ndarray:
    """Length in characters (not bytes: 18 full-width digits are the right length, wrong
    characters); 0 for nulls. Code columns are mostly ASCII text, whose lengths the offsets
    give without decoding."""
    n = len(values)
    if n and values.buffers()[2] is not None:
        offsets = np.frombuffer(values.buffers()[1], np.int32, n + 1, values.offset * 4)
        text = np.frombuffer(values.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
        if not len(text) or text.max() < 0x80:
            return np.diff(offsets) * as_mask(values.is_valid())
    return pc.fill_null(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False)


def fixed_width(values: pa.StringArray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of the values as an (n, width) uint8 matrix, and the mask of values that
    are exactly ``width`` bytes long; other rows (and nulls) hold "0" bytes. Zero-copy when every
    value already has the width: the matrix is a view of the array's data buffer. The lengths
    come from the offsets: every standard builds the matrix, some several times a column."""
    n = len(values)
    if n == 0:
        return np.zeros((0, width), np.uint8), np.zeros(0, bool)
    fits = np.diff(np.frombuffer(values.buffers()[1], np.int32, n + 1, values.offset * 4)) == width
    if values.null_count:
        fits &= as_mask(values.is_valid())
    if not fits.all():
        values = pc.if_else(pa.array(fits), values, "0" * width)
    # All n values are now `width` bytes long and adjacent in the data buffer; a sliced array
    # starts at its own first offset.
    offsets, data = values.buffers()[1:3]
    start = int(np.frombuffer(offsets, np.int32, count=1, offset=values.offset * 4)[0])
    matrix = np.frombuffer(data, np.uint8, count=n * width, offset=start).reshape(n, width)
    return matrix, fits


def strings_from_matrix(matrix: np.ndarray) -> pa.StringArray:
    """The inverse of ``fixed_width``: one ASCII string per row of a uint8 matrix."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def rows_all(flags: np.ndarray) -> np.ndarray:
    """Rows of a boolean matrix that are all True. numpy reduces short rows slowly, so this ORs
    the failure flags column by column, several bytes per word when the width allows."""
    failures = np.ascontiguousarray(~flags)
    width = failures.shape[1]
    word = next(size for size in (8, 4, 2, 1) if width % size == 0)
    columns = failures.view(f"u{word}").T
    failed = columns[0].copy()
    for column in columns[1:]:
        failed |= column
    return failed == 0


def rows_start_with(matrix: np.ndarray, prefix: str) -> np.ndarray:
    """Rows whose first bytes are the ASCII ``prefix`` (no longer than the rows), compared a
    column at a time (an (n, k) comparison then ``rows_all`` costs several times more)."""
    found = np.ones(len(matrix), dtype=bool)
    for column, byte in zip(matrix.T, prefix.encode("ascii"), strict=False):
        found &= column == byte
    return found


def bytes_between(matrix: np.ndarray, low: str, high: str) -> np.ndarray:
    """Rows whose bytes all lie in [low, high], e.g. all ASCII digits."""
    base, span = np.uint8(ord(low)), np.uint8(ord(high) - ord(low))
    return rows_all(matrix - base <= span)  # uint8 wraps below `low`: one test for both ends


def byte_table(chars: str) -> np.ndarray:
    """A 256-entry lookup giving each ASCII character its index in ``chars``, -1 elsewhere."""
    table = np.full(256, -1, dtype=np.int16)
    table[np.frombuffer(chars.encode("ascii"), np.uint8)] = np.arange(len(chars))
    return table


def weighted_sums(matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(matrix @ weights).T`` as int32 for small-integer matrices: one contiguous row per
    column of weights. Runs on float32 BLAS in blocks of rows, exact as long as every sum stays
    below 2**24 (the callers' fields do)."""
    weights = np.asarray(weights, dtype=np.float32)
    out = np.empty((len(matrix), weights.shape[1]), dtype=np.float32)
    for start in range(0, len(matrix), _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        np.matmul(matrix[block].astype(np.float32), weights, out=out[block])
    return np.ascontiguousarray(out.T, dtype=np.int32)


def digit_values(matrix: np.ndarray) -> np.ndarray:
    """The number written by each row of up to 9 ASCII digits (rows of other bytes give
    garbage), column by column in int32: a matrix product costs twice as much for so few."""
    value = matrix[:, 0].astype(np.int32)
    for column in matrix.T[1:]:
        value *= 10
        value += column
    return value - ord("0") * int("1" * matrix.shape[1])


# --------------------------------------------------------------------------- normalising


def strip_blanks(values: pa.StringArray) -> pa.StringArray:
    return pc.replace_substring_regex(values, f"[{BLANK_CHARS}]+", "")


def fix_where(
    values: pa.StringArray, where: np.ndarray, fix: Callable[[pa.StringArray], pa.StringArray]
) -> pa.StringArray:
    """``values`` with ``fix`` applied to the rows of ``where`` only: most values are already
    in canonical form, and regular expressions over every row cost far more than a byte test.
    ``values`` itself when the fix changes nothing (values already normalised, judged again),
    as replacing rows copies the whole array. The rows are replaced by a take from the values
    followed by the fixed rows (replace_with_mask takes three times as long over text)."""
    if where.any() and values.null_count:
        where = where & as_mask(values.is_valid())
    if not where.any():
        return values
    rows = values.filter(pa.array(where))
    fixed = fix(rows)
    if fixed.equals(rows):
        return values
    source = np.arange(len(values))
    source[where] = len(values) + np.arange(len(fixed))
    return pa.concat_arrays([values, fixed]).take(pa.array(source))


def normalise_parsed(
    values: pa.StringArray,
    parse: Callable[[pa.StringArray], tuple[np.ndarray, ...]],
    fix: Callable[[pa.StringArray], pa.StringArray],
) -> tuple[pa.StringArray, tuple[np.ndarray, ...], np.ndarray]:
    """(``values`` with ``fix`` applied to the rows ``parse`` finds malformed, ``parse`` of the
    result, mask of those malformed rows). ``parse`` gives arrays with a row per value, the
    last the mask of well-formed values; only the rows the fix rewrote are parsed again, as
    most values are canonical."""
    parsed = parse(values)
    malformed = ~parsed[-1] & as_mask(values.is_valid())
    text = fix_where(values, malformed, fix)
    if text is values:
        return values, parsed, malformed
    rows = np.flatnonzero(malformed)
    again = parse(text.take(pa.array(rows)))
    merged = []
    for whole, part in zip(parsed, again, strict=True):
        whole = whole.copy()  # the matrix may be a read-only view of the values
        whole[rows] = part
        merged.append(whole)
    return text, tuple(merged), malformed


# --------------------------------------------------------------------------- registries

# Imported last: the standard modules use the helpers above.
from etl.standards import codes, gb11643, gb32100, phone  # noqa: E402
from etl.standards.divisions import DivisionIndex, validate_gb2260, validate_nbs  # noqa: E402


@dataclass(frozen=True)
class StandardContext:
    """What validators need to know about the county, built once per run from its profile."""

    divisions: DivisionIndex | None = None
    area_codes: tuple[str, ...] = phone.DEFAULT_AREA_CODES
    extra_ethnicity: tuple[str, ...] = codes.DEFAULT_EXTRA_ETHNICITY
    today: date | None = None

    @classmethod
    def from_profile(cls, profile: CountyProfile) -> StandardContext:
        return cls(
            divisions=DivisionIndex.from_profile(profile), area_codes=tuple(profile.area_codes)
        )


StandardValidator = Callable[[pa.Array, StandardContext], ArrayVerdict]

VALIDATORS: dict[str, StandardValidator] = {
    "gb11643": lambda v, ctx: gb11643.validate(v, ctx.divisions, ctx.today),
    "gb32100": lambda v, ctx: gb32100.validate(v),
    "gb2260": lambda v, ctx: validate_gb2260(v, ctx.divisions),
    "nbs_division": lambda v, ctx: validate_nbs(v, ctx.divisions),
    "gb2261": lambda v, ctx: codes.validate_sex(v),
    "gb3304": lambda v, ctx: codes.validate_ethnicity(v, ctx.extra_ethnicity),
    "gb4754": lambda v, ctx: codes.validate_industry(v),
    "mobile": lambda v, ctx: phone.validate_mobile(v),
    "landline": lambda v, ctx: phone.validate_landline(v, ctx.area_codes),
    "phone": lambda v, ctx: phone.validate_phone(v, ctx.area_codes),
}

# The spelling the lake stores for code columns.
NORMALIZERS: dict[str, Callable[[pa.Array], pa.Array]] = {
    "gb11643": gb11643.normalize,
    "gb32100": gb32100.normalize,
    "mobile": phone.normalize_mobile,
}

# The same columns normalised and parsed in one go (``PARSERS[s](v).text`` is
# ``NORMALIZERS[s](v)``): the rule engine parses such a column once per batch and judges the
# parse by every rule on it, instead of normalising and parsing it again for each.
Parsed = gb11643.IdNumbers | gb32100.CreditCodes | phone.Mobiles
PARSERS: dict[str, Callable[[pa.StringArray], Parsed]] = {
    "gb11643": gb11643.IdNumbers,
    "gb32100": gb32100.CreditCodes,
    "mobile": phone.Mobiles,
}
