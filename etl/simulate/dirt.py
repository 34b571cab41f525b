"""Realistic dirt, injected deterministically and recorded exactly.

A :class:`Plan` lists, for one dataset, the kinds of dirt with the column they hit and their
rate. Each row gets at most one kind (kinds are disjoint), so the record of counts by kind is
exactly what a validator finds. Mutators are pure functions of the clean value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from etl.simulate import codes

MUTATORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "bad_id_check": codes.bad_id_check,
    "bad_birth_date": codes.bad_birth_date,
    "lowercase_x": codes.lowercase_x,
    "legacy_15": codes.legacy_15,
    "blank_padded": codes.blank_padded,
    "bad_credit_check": codes.bad_credit_check,
    "unknown_village": codes.unknown_village,
    "wrong_town": codes.wrong_town,
}
# kinds that do not mutate one value: nulls, duplicates, late arrivals
OTHER_KINDS = ("null_required", "duplicate_row", "late_row")


class Plan:
    def __init__(self, entries: list[tuple[str, str, float]]):
        for kind, _, _ in entries:
            if kind not in MUTATORS and kind != "null_required":
                raise ValueError(f"unknown dirt kind {kind}")
        self.entries = entries

    def assign(self, rng: np.random.Generator, df: pd.DataFrame) -> np.ndarray:
        """One kind per row (index into entries + 1; 0 = clean), eligible rows only."""
        n = len(df)
        u = rng.random(n)
        if not self.entries:
            return np.zeros(n, dtype=np.int8)
        edges = np.cumsum([rate for _, _, rate in self.entries])
        kinds = np.where(u < edges[-1], np.searchsorted(edges, u, side="right") + 1, 0)
        kinds = kinds.astype(np.int8)
        for j, (kind, column, _) in enumerate(self.entries, start=1):
            hit = kinds == j
            if not hit.any():
                continue
            rows = np.flatnonzero(hit)
            values = df[column].to_numpy(dtype=object)[rows]
            if kind == "lowercase_x":
                ok = [isinstance(v, str) and v.endswith("X") for v in values]
            elif kind == "legacy_15":
                ok = [isinstance(v, str) and len(v) == 18 and v[6:8] == "19" for v in values]
            elif kind == "null_required":
                ok = [True] * len(values)
            else:
                ok = [v is not None and v == v for v in values]  # not null / NaN
            kinds[rows[~np.array(ok, dtype=bool)]] = 0
        return kinds

    def apply(self, df: pd.DataFrame, kinds: np.ndarray) -> pd.DataFrame:
        """A copy of ``df`` with each row's dirt applied."""
        if not (kinds > 0).any():
            return df
        df = df.copy()
        for j, (kind, column, _) in enumerate(self.entries, start=1):
            hit = kinds == j
            if not hit.any():
                continue
            values = df.loc[hit, column].to_numpy(dtype=object)
            col = df[column].astype(object)
            col[hit] = None if kind == "null_required" else list(MUTATORS[kind](values))
            df[column] = col
        return df

    def counts(self, kinds: np.ndarray) -> list[tuple[str, str, int]]:
        found = np.bincount(kinds.astype(np.int64), minlength=len(self.entries) + 1)
        return [
            (kind, column, int(found[j]))
            for j, (kind, column, _) in enumerate(self.entries, start=1)
        ]


def duplicate(
    rng: np.random.Generator, df: pd.DataFrame, kinds: np.ndarray, rate: float
) -> tuple[pd.DataFrame, int]:
    """Repeat some clean rows right after themselves (same key twice)."""
    dup = (rng.random(len(df)) < rate) & (kinds == 0)
    if not dup.any():
        return df, 0
    idx = np.repeat(np.arange(len(df)), 1 + dup.astype(np.int64))
    return df.iloc[idx].reset_index(drop=True), int(dup.sum())
