"""Conform source batches to their contract and judge every row by the contract's rules.

Per record batch, all vectorised:

1. **conform**: trim text, turn blanks into nulls and cast each column to its contract type with
   pyarrow; a column whose cast fails is cast again with DuckDB's ``TRY_CAST``, so one bad cell
   costs one row, never the batch. Code columns are normalised (ID numbers upper-cased and
   upgraded from 15 digits, credit codes, mobile numbers) so the lake holds one spelling;
2. **judge**: every row-level rule of ``etl.rules`` gives a failure mask and, for the national
   standards, a reason code per failing value (``etl.standards``);
3. **split**: rows failing a blocking rule, or repeating a key already read in this window, go
   to quarantine with their original values, the rule ids and readable messages; the rest land.

Every rule's checked and failed counts (with reason codes) are tallied for the results and the
scorecard; warning rules only count.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl import standards
from etl.contracts import Column, DatasetContract
from etl.duck import scratch
from etl.rules import Rule, rules_for
from etl.sources.base import Chunk
from etl.standards import ArrayVerdict, Parsed, StandardContext
from etl.standards.divisions import village_in_town

ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "decimal": pa.decimal128(18, 2),
}
SQL_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "decimal": "DECIMAL(18,2)",
}
# _extra: columns the source added that the contract does not know yet (drift policy evolve),
# as a JSON object per row, so nothing the department sends is dropped.
META_FIELDS = [
    pa.field("_op", pa.string()),
    pa.field("_origin", pa.string()),
    pa.field("_extra", pa.string()),
]


def lake_schema(dataset: DatasetContract) -> pa.Schema:
    """The Parquet schema of a landed dataset: contract columns plus change flag and origin."""
    # All nullable: a delete marker carries only its key (non-null rules are checked, not typed).
    fields = [pa.field(c.name, ARROW_TYPES[c.type]) for c in dataset.columns]
    return pa.schema(fields + META_FIELDS)


def quarantine_schema(dataset: DatasetContract) -> pa.Schema:
    """Quarantined rows keep every source value as text, with the rules they broke."""
    fields = [pa.field(c.at_source, pa.string()) for c in dataset.columns]
    extra = [
        pa.field("_reasons", pa.list_(pa.string())),
        pa.field("_messages", pa.list_(pa.string())),
        pa.field("_origin", pa.string()),
        pa.field("_row", pa.int64()),
        pa.field("_raw", pa.string()),
        pa.field("_extra", pa.string()),
    ]
    return pa.schema([*fields, *extra])


@dataclass
class Checked:
    good: pa.RecordBatch  # lake schema without _op
    bad: pa.RecordBatch | None  # quarantine schema


@dataclass
class Tally:
    """Checked and failed counts per rule over a window, with reason codes."""

    checked: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    reasons: dict[str, Counter] = field(default_factory=dict)

    def add(self, rule: Rule, checked: int, fail: pa.Array, reason: pa.Array | None) -> None:
        self.checked[rule.id] += checked
        failed = pc.sum(fail).as_py() or 0
        self.failed[rule.id] += failed
        if failed:
            codes = Counter(self.reasons.get(rule.id, {}))
            if reason is None:
                codes[rule.kind] += failed
            else:
                counts = pc.value_counts(pc.fill_null(reason.filter(fail), rule.kind))
                for item in counts.to_pylist():  # one entry per distinct reason code
                    codes[item["values"]] += item["counts"]
            self.reasons[rule.id] = codes

    def as_results(self, rules: list[Rule]) -> list[dict]:
        return [
            {
                "rule_id": r.id,
                "severity": r.severity,
                "checked": self.checked[r.id],
                "failed": self.failed[r.id],
                "reasons": dict(self.reasons.get(r.id, {})),
            }
            for r in rules
            if r.row_level
        ]


class SeenKeys:
    """64-bit hashes of the keys landed so far in a window, kept as sorted numpy runs merged
    like a base-8 counter (each batch a run, eight runs of a level sorted into one of the
    next): memory 8 bytes a key, each key re-sorted log8 (not log2) times, at most 7 runs a
    level to search for the few keys the filter lets through.

    A Bloom filter of one byte a slot and two slots a key (by the hash's top bits, and its low
    bits within the same 64-byte block) answers "never seen" for all but about 1% of new keys
    without the runs, whose binary searches miss the cache at every step. It is sized to 16
    slots a key, with room for 4 times more keys once the window grows (rebuilt from the runs
    past that), up to 64 MB: a small window clears a small one."""

    MIN_FILTER_BITS = 16  # log2 of the filter's slots
    MAX_FILTER_BITS = 26
    SLOTS_PER_KEY = 16
    FANOUT = 8

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []
        self.levels: list[int] = []  # of the runs, non-increasing
        self.filter_bits = 0
        self.filter = np.zeros(0, dtype=bool)

    def _slots(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A key's two slots, in the same 64-byte block: sorted hashes then read and write
        the filter in order, one cache line a key (two random slots cost twice the time)."""
        first = (hashes >> np.uint64(64 - self.filter_bits)).astype(np.int64)
        second = first & ~63 | (hashes & np.uint64(63)).astype(np.int64)
        return first, second

    def _fit_filter(self, keys: int) -> None:
        """Rebuild the filter from the runs when ``keys`` keys would crowd it."""
        needed = (keys * self.SLOTS_PER_KEY).bit_length()
        if min(needed, self.MAX_FILTER_BITS) > self.filter_bits:
            # A window's first batch sizes it to its keys (most windows are one batch); a
            # growing window gets room for 4 times its keys.
            needed += 2 if self.runs else 0
            self.filter_bits = min(max(needed, self.MIN_FILTER_BITS), self.MAX_FILTER_BITS)
            self.filter = np.zeros(1 << self.filter_bits, dtype=bool)
            for run in self.runs:
                for slots in self._slots(run):
                    self.filter[slots] = True

    def repeats(self, hashes: np.ndarray) -> np.ndarray:
        """Mask of hashes seen before or earlier in the same batch; remembers the rest."""
        # Sorted needles keep the probes local. The batch's order is needed (an argsort, several
        # times a sort's cost) only when some hash repeats; a stable one only when a hash repeats
        # within the batch: then the copy first in batch order must be the one remembered.
        ordered = np.sort(hashes)
        repeat = np.zeros(len(hashes), dtype=bool)
        repeat[1:] = ordered[1:] == ordered[:-1]  # later copies within the batch
        within = repeat.any()
        self._fit_filter(sum(map(len, self.runs)) + len(hashes))
        first, second = self._slots(ordered)
        maybe = np.flatnonzero(self.filter[first] & self.filter[second])
        if len(maybe):
            candidates = ordered[maybe]
            for run in self.runs:
                at = np.minimum(np.searchsorted(run, candidates), len(run) - 1)
                repeat[maybe] |= run[at] == candidates
        run = ordered[~repeat]
        self.filter[first] = self.filter[second] = True
        if len(run):
            self.runs.append(run)
            self.levels.append(0)
        tail = self.levels[-self.FANOUT :]
        while len(tail) == self.FANOUT and min(tail) == max(tail):
            merged = np.sort(np.concatenate(self.runs[-self.FANOUT :]))
            del self.runs[-self.FANOUT :], self.levels[-self.FANOUT :]
            self.runs.append(merged)
            self.levels.append(tail[0] + 1)
            tail = self.levels[-self.FANOUT :]
        if not repeat.any():
            return repeat
        found = np.empty_like(repeat)
        found[np.argsort(hashes, kind="stable" if within else None)] = repeat
        return found


# Whitespace that may surround a value, as str.strip() and pyarrow's utf8_trim_whitespace see
# it: ASCII blanks (the separators U+001C-U+001F too) and the Unicode spaces (NBSP, NEL,
# U+1680, U+2000-U+200A, U+2028/9, U+202F, U+205F, U+3000), told apart by their leading byte
# and by their whole encoding at the end of a value. Byte ranges, not lookup tables: a few
# comparisons over a column cost less than one gather.
_ASCII_BLANKS = ((0x09, 0x0D), (0x1C, 0x20))
_STARTS_BLANK = (*_ASCII_BLANKS, (0xC2, 0xC2), (0xE1, 0xE3))
_ENDS_BLANK_2 = np.array([0xC2A0, 0xC285])
_ENDS_BLANK_3 = np.array(
    [0xE19A80, *range(0xE28080, 0xE2808B), 0xE280A8, 0xE280A9, 0xE280AF, 0xE2819F, 0xE38080]
)
# The last bytes of those multi-byte encodings: only values ending in one need a closer look.
_ENDS_MULTI = ((0x80, 0x8A), (0x9F, 0xA0), (0xA8, 0xA9), (0xAF, 0xAF))
_LEADS_3 = ((0xE1, 0xE3),)


def _in_ranges(values: np.ndarray, ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Bytes within any of the inclusive ranges (uint8 wraps below a range's start)."""
    found = np.zeros(len(values), dtype=bool)
    for low, high in ranges:
        found |= values - np.uint8(low) <= np.uint8(high - low)
    return found


def _maybe_padded(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Values of ``data`` between ``offsets`` that may begin or end with whitespace. An empty
    value reads a neighbour's byte, which is judged anyway: at worst a needless trim."""
    first = np.take(data, offsets[:-1], mode="clip")
    last = np.take(data, offsets[1:] - 1, mode="clip")
    padded = _in_ranges(first, _STARTS_BLANK) | _in_ranges(last, _ASCII_BLANKS)
    maybe = np.flatnonzero(_in_ranges(last, _ENDS_MULTI))  # a mask indexes these slowly
    if not len(maybe):  # code columns: ASCII
        return padded
    starts, ends = offsets[maybe], offsets[maybe + 1]
    # Chinese text often ends in those bytes too, but its characters lead with E4-E9: only
    # values whose encoding leads with C2 or E1-E3 are worth assembling.
    two = maybe[(ends - starts >= 2) & (data[np.maximum(ends - 2, 0)] == 0xC2)]
    three = maybe[(ends - starts >= 3) & _in_ranges(data[np.maximum(ends - 3, 0)], _LEADS_3)]
    end2, end3 = offsets[two + 1], offsets[three + 1]
    last2 = data[end2 - 2].astype(np.int32) << 8 | data[end2 - 1]
    last3 = (data[end3 - 3].astype(np.int32) << 16) | (data[end3 - 2].astype(np.int32) << 8)
    last3 |= data[end3 - 1]
    padded[two[np.isin(last2, _ENDS_BLANK_2)]] = True
    padded[three[np.isin(last3, _ENDS_BLANK_3)]] = True
    return padded


def _offsets(values: pa.StringArray) -> np.ndarray:
    return np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, values.offset * 4)


def _blank_to_null(values: pa.Array) -> pa.Array:
    """Text with surrounding whitespace trimmed and empty values as nulls. Trimming copies
    every value, so it runs only on the values that may start or end with whitespace."""
    if values.type == pa.string() and len(values) and values.buffers()[2] is not None:
        data = np.frombuffer(values.buffers()[2], np.uint8)
        if len(data):
            padded = _maybe_padded(data, _offsets(values))
            values = standards.fix_where(values, padded, pc.utf8_trim_whitespace)
            empty = np.diff(_offsets(values)) == 0  # nulls too: the presence mask only if any
            if empty.any() and values.null_count:
                empty &= standards.as_mask(values.is_valid())
            return pc.if_else(pa.array(empty), None, values) if empty.any() else values
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), None, trimmed)


def _source_column(batch: pa.RecordBatch, name: str) -> pa.Array:
    """A contract column as the source sent it; all nulls when the source dropped it (drift
    policy evolve fills removed nullable columns)."""
    index = batch.schema.get_field_index(name)
    return batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, pa.string())


def extra_json(batch: pa.RecordBatch, known: set[str]) -> pa.Array:
    """The columns of ``batch`` outside the contract as one JSON object per row (null when
    there are none), built column-wise."""
    extras = [name for name in batch.schema.names if name not in known]
    if not extras:
        return pa.nulls(batch.num_rows, pa.string())
    parts: list = ["{"]
    for i, name in enumerate(extras):
        text = pc.cast(batch.column(name), pa.string())
        for char, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n")):
            text = pc.replace_substring(text, char, escaped)
        quoted = pc.binary_join_element_wise('"', text, '"', "")
        parts += [("," if i else "") + json.dumps(name, ensure_ascii=False) + ":"]
        parts.append(pc.fill_null(quoted, "null"))
    parts.append("}")
    n = batch.num_rows
    arrays = [
        p if isinstance(p, pa.Array) else pa.nulls(n, pa.string()).fill_null(p) for p in parts
    ]
    return pc.binary_join_element_wise(*arrays, "")


def event_time_column(dataset: DatasetContract) -> str | None:
    """The column that says how recent a row is: the watermark column when it is a timestamp,
    else the first timestamp column; None for datasets without one (snapshots, exports)."""
    stamps = [c.name for c in dataset.columns if c.type == "timestamp"]
    if dataset.incremental.column in stamps:
        return dataset.incremental.column
    return stamps[0] if stamps else None


# Rules judged on the parse of their column (``standards.PARSERS``), by kind: the standard
# parsed and the verdict drawn from the parse.
PARSED_VERDICTS: dict[str, tuple[str, Callable[[Parsed, StandardContext], ArrayVerdict]]] = {
    "gb11643": ("gb11643", lambda ids, ctx: ids.verdict(ctx.divisions, ctx.today)),
    "gb32100": ("gb32100", lambda codes, ctx: codes.verdict()),
    "gb32100_org": ("gb32100", lambda codes, ctx: codes.org_check()),
    "mobile": ("mobile", lambda mobiles, ctx: mobiles.verdict()),
    "mobile_strict": ("mobile", lambda mobiles, ctx: mobiles.strict_verdict()),
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _parse(parses: dict, name: str, standard: str, values: pa.Array) -> Parsed:
    """The batch's parse of column ``name`` by ``standard``, made on first use."""
    key = (name, standard)
    if key not in parses:
        parses[key] = standards.PARSERS[standard](standards.to_array(values))
    return parses[key]


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


class Validator:
    """Judges the chunks of one dataset's window; keeps its counts and seen keys for the run."""

    def __init__(self, dataset: DatasetContract, context: StandardContext | None = None):
        from etl.contracts import load_profile

        self.dataset = dataset
        self.context = context or StandardContext.from_profile(load_profile())
        self.schema = lake_schema(dataset)
        self._landed_schema = self.schema.remove(self.schema.get_field_index("_op"))
        self.quarantine_schema = quarantine_schema(dataset)
        self.rules = rules_for(dataset)
        self.unique = next(r for r in self.rules if r.kind == "unique")
        self.tally = Tally()
        self._seen = SeenKeys()
        self._con = scratch()
        self._columns = {c.name: c for c in dataset.columns}
        self._known = {c.at_source for c in dataset.columns}
        self.time_column = event_time_column(dataset)
        self.newest: object = None  # the newest event time landed, for freshness

    # ------------------------------------------------------------------ conform

    def _conform(self, column: Column, values: pa.Array, parses: dict) -> tuple[pa.Array, pa.Array]:
        """(typed values, present-at-source mask) for one column; the parse of a code column
        goes to ``parses`` for its rules."""
        if _is_text(values.type):
            values = _blank_to_null(values)
        present = pc.is_valid(values)
        target = ARROW_TYPES[column.type]
        if values.type != target:
            try:
                values = pc.cast(values, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values = self._try_cast(column, values)
        if column.standard in standards.PARSERS:
            values = _parse(parses, column.name, column.standard, values).text
        return values, present

    def _try_cast(self, column: Column, values: pa.Array) -> pa.Array:
        """DuckDB's TRY_CAST for a column pyarrow could not cast whole: bad cells become null."""
        expr = f"TRY_CAST(v AS {SQL_TYPES[column.type]})"
        if column.type == "date":  # dates written as timestamps are still dates
            expr = f"COALESCE({expr}, CAST(TRY_CAST(v AS TIMESTAMP) AS DATE))"
        self._con.register("col", pa.table({"v": values}))
        try:
            typed = self._con.sql(f"SELECT {expr} AS v FROM col").to_arrow_table()["v"]
        finally:
            self._con.unregister("col")
        return pc.cast(typed.combine_chunks(), ARROW_TYPES[column.type])

    # ------------------------------------------------------------------ judge

    def _judge(
        self,
        rule: Rule,
        typed: dict[str, pa.Array],
        present: dict[str, pa.Array],
        source: dict[str, pa.Array],
        parses: dict,
    ) -> tuple[pa.Array, pa.Array | None, int]:
        """(failure mask, reason codes or None, values checked) of one row-level rule."""
        name = rule.columns[0]
        values = typed[name]
        checked = len(values) - values.null_count
        column = self._columns[name]
        kind = rule.kind
        if kind == "type":
            return pc.and_(present[name], pc.is_null(values)), None, present[name].true_count
        if kind == "not_null":
            return pc.invert(present[name]), None, len(values)
        if kind in PARSED_VERDICTS:
            standard, judge = PARSED_VERDICTS[kind]
            verdict = judge(_parse(parses, name, standard, values), self.context)
            return pc.invert(verdict.valid), verdict.reason, checked
        if kind in standards.VALIDATORS:
            verdict = standards.VALIDATORS[kind](values, self.context)
            return pc.invert(verdict.valid), verdict.reason, checked
        if kind == "gb11643_legacy":  # judged as sent: normalising upgrades 15 digits to 18
            ids = _parse(parses, name, "gb11643", values)
            return ids.legacy(standards.to_array(source[name])), None, checked
        if kind == "values":
            allowed = pa.array(column.values, pa.string())
            known = pc.is_in(pc.cast(values, pa.string()), value_set=allowed)
            fail = pc.and_(pc.is_valid(values), pc.invert(known))
        elif kind == "range":
            fail = pa.nulls(len(values), pa.bool_())
            if column.min is not None:
                fail = pc.or_kleene(fail, pc.less(values, column.min))
            if column.max is not None:
                fail = pc.or_kleene(fail, pc.greater(values, column.max))
        elif kind == "pattern":
            fail = pc.invert(pc.match_substring_regex(values, column.pattern))
        elif kind in ("id_birth_date", "id_sex"):
            ids = _parse(parses, name, "gb11643", values)
            derived = ids.birth_date() if kind == "id_birth_date" else ids.sex()
            fail = pc.not_equal(derived, pc.cast(typed[rule.columns[1]], derived.type))
        elif kind == "village_in_town":
            verdict = village_in_town(values, typed[rule.columns[1]])
            return pc.invert(verdict.valid), verdict.reason, checked
        else:
            raise ValueError(f"no evaluation for rule kind {kind}")
        return pc.fill_null(fail, False), None, checked

    def check(self, chunk: Chunk) -> Checked:
        batch = chunk.batch
        source, typed, present, parses = {}, {}, {}, {}
        for column in self.dataset.columns:
            source[column.name] = _source_column(batch, column.at_source)
            typed[column.name], present[column.name] = self._conform(
                column, source[column.name], parses
            )
        blocking: list[tuple[Rule, pa.Array, pa.Array | None]] = []
        for rule in self.rules:
            if not rule.row_level or rule.kind == "unique":
                continue
            fail, reason, checked = self._judge(rule, typed, present, source, parses)
            self.tally.add(rule, checked, fail, reason)
            if rule.blocking and fail.true_count:
                blocking.append((rule, fail, reason))
        n = batch.num_rows
        bad = np.zeros(n, dtype=bool)
        for _, fail, _ in blocking:
            bad |= fail.to_numpy(zero_copy_only=False)
        repeat = self._repeated_keys(typed, bad)
        self.tally.add(self.unique, int(n - bad.sum()), pa.array(repeat), None)
        if self.unique.blocking and repeat.any():
            blocking.append((self.unique, pa.array(repeat), None))
            bad |= repeat
        columns = [typed[c.name] for c in self.dataset.columns]
        columns.append(extra_json(batch, self._known))
        at = self._landed_schema.get_field_index("_origin")
        good = pa.RecordBatch.from_arrays(columns, schema=self._landed_schema.remove(at))
        if bad.any():
            good = good.filter(pa.array(~bad))
        # The same origin on every row: made at the landed length rather than filtered.
        origin = pa.nulls(good.num_rows, pa.string()).fill_null(chunk.origin)
        good = good.add_column(at, self._landed_schema.field(at), origin)
        if self.time_column and good.num_rows:
            newest = pc.max(good.column(self.time_column)).as_py()
            if newest is not None and (self.newest is None or newest > self.newest):
                self.newest = newest
        if not bad.any():
            return Checked(good, None)
        return Checked(good, self._quarantine_rows(chunk, np.flatnonzero(bad), blocking))

    def _repeated_keys(self, typed: dict[str, pa.Array], bad: np.ndarray) -> np.ndarray:
        """Rows (among those not already bad) whose key was already read in this window."""
        key = pa.table({c: typed[c] for c in self.dataset.primary_key})
        # A relation over the Arrow table, read back as Arrow: registering a view, parsing SQL
        # and fetchnumpy cost 1 ms a batch more, most of a small dataset's check.
        hashed = (
            self._con.from_arrow(key)
            .project(f"hash({', '.join(_q(c) for c in key.column_names)})")
            .to_arrow_table()
        )
        hashes = hashed.column(0).to_numpy()
        repeat = np.zeros(len(bad), dtype=bool)
        keep = np.flatnonzero(~bad)
        repeat[keep] = self._seen.repeats(hashes[keep])
        return repeat

    # ------------------------------------------------------------------ quarantine

    def _quarantine_rows(
        self,
        chunk: Chunk,
        bad_rows: np.ndarray,
        blocking: list[tuple[Rule, pa.Array, pa.Array | None]],
    ) -> pa.RecordBatch:
        """Original values of the bad rows with, per row, the ids and messages of the blocking
        rules it broke (in rule order), built column-wise."""
        rows, ids, messages = [], [], []
        for rule, fail, reason in blocking:
            hit = np.flatnonzero(fail.to_numpy(zero_copy_only=False))
            rows.append(hit)
            ids.append(pa.nulls(len(hit), pa.string()).fill_null(rule.id))
            text = pa.nulls(len(hit), pa.string()).fill_null(rule.message)
            if reason is not None:
                codes = pc.fill_null(reason.take(pa.array(hit)), rule.kind)
                text = pc.binary_join_element_wise(text, " (", codes, ")", "")
            messages.append(text)
        row = np.concatenate(rows)
        order = np.argsort(row, kind="stable")  # rule order kept within a row
        per_row = np.bincount(np.searchsorted(bad_rows, row), minlength=len(bad_rows))
        offsets = pa.array(np.concatenate([[0], np.cumsum(per_row)]), pa.int32())
        taken = chunk.batch.take(pa.array(bad_rows))
        n = len(bad_rows)
        columns = {
            c.at_source: pc.cast(_source_column(taken, c.at_source), pa.string())
            for c in self.dataset.columns
        }
        columns["_reasons"] = pa.ListArray.from_arrays(offsets, pa.concat_arrays(ids).take(order))
        columns["_messages"] = pa.ListArray.from_arrays(
            offsets, pa.concat_arrays(messages).take(order)
        )
        columns["_origin"] = pa.nulls(n, pa.string()).fill_null(chunk.origin)
        columns["_row"] = pa.array(bad_rows + chunk.first_row, pa.int64())
        columns["_raw"] = pa.nulls(n, pa.string())
        columns["_extra"] = extra_json(taken, self._known)
        return pa.RecordBatch.from_pydict(columns, schema=self.quarantine_schema)

    def malformed_lines(self, lines: list[dict]) -> pa.RecordBatch:
        """Lines a CSV parser could not split into the declared fields."""
        n = len(lines)
        columns = {c.at_source: pa.nulls(n, pa.string()) for c in self.dataset.columns}
        columns["_reasons"] = pa.array([[line["reason"]] for line in lines], pa.list_(pa.string()))
        columns["_messages"] = pa.array([[line["detail"]] for line in lines], pa.list_(pa.string()))
        columns["_origin"] = pa.array([line["_origin"] for line in lines], pa.string())
        columns["_row"] = pa.array([line["_row"] for line in lines], pa.int64())
        columns["_raw"] = pa.array([line["_raw"] for line in lines], pa.string())
        columns["_extra"] = pa.nulls(n, pa.string())
        return pa.RecordBatch.from_pydict(columns, schema=self.quarantine_schema)

    def close(self) -> None:
        self._con.close()
