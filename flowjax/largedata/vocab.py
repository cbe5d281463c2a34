"""Streamed summaries of whole columns: what `FlowTokenizer.fit(vocabulary=...)` reads.

The fit reads the whole table only through a few summaries per column: each category's
row count (categories and ports: the kept values, 'other' and its rare values, the port
ranges' sketches), whether a number column has NaN, +-Infinity or zero, its distinct
values up to a small count (exact-integer and two-level columns) and, for a timestamp,
the earliest time; for an IPv4 column, the octet values at each position. A tracker keeps
one column's summary batch by batch, and `column()` returns a bounded Series of the
column's real values with the same summary, to pass as that column of `vocabulary`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from absl import logging

from flowjax import addresses, timefmt
from flowjax.codecs import SPECIALS, special_mask
from flowjax.schema import NUMERIC_KINDS, Schema
from flowjax.tokenizer import TWO_LEVEL_FACTOR

MAX_CATEGORIES = 200_000  # distinct values counted per column; later new ones are not
VOCAB_ROWS = 2_000_000  # rows of a count column's stand-in; past it, counts are scaled


class Counts:
    """Rows per value in order of first appearance, and rows with no value."""

    def __init__(self, name: str):
        self.name = name
        self.counts: dict = {}
        self.nan = 0
        self.uncounted = 0  # rows of values first seen after MAX_CATEGORIES distinct ones

    def update(self, values: pd.Series) -> None:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        self.nan += int((codes < 0).sum())
        for value, n in zip(np.asarray(uniques, dtype=object).tolist(), counts.tolist(),
                            strict=True):  # fmt: skip
            if value in self.counts:
                self.counts[value] += n
            elif len(self.counts) < MAX_CATEGORIES:
                self.counts[value] = n
            else:
                self.uncounted += n

    def column(self, dtype) -> pd.Series:
        """The values, each repeated its row count (scaled past VOCAB_ROWS), then one NaN."""
        counts = np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts))
        total = int(counts.sum())
        if total > VOCAB_ROWS:  # bounded memory; the ranking of near-equal counts may change
            counts = np.maximum(1, np.round(counts * (VOCAB_ROWS / total))).astype(np.int64)
            logging.info("column %r: %d rows' value counts scaled to %d", self.name, total,
                         int(counts.sum()))  # fmt: skip
        if self.uncounted:
            logging.warning("column %r has more than %d distinct values; %d rows of later "
                            "values are not counted", self.name, MAX_CATEGORIES,
                            self.uncounted)  # fmt: skip
        values = np.empty(len(self.counts) + 1, dtype=object)
        values[:-1] = list(self.counts)
        values[-1] = np.nan
        repeats = np.append(counts, int(self.nan > 0))
        return pd.Series(np.repeat(values, repeats), dtype=dtype, name=self.name)


class Extremes:
    """A number or timestamp column's special values (NaN, +-Infinity, zero), its least and
    greatest value and its first `max_distinct` + 1 distinct finite values, as real cells."""

    def __init__(self, name: str, max_distinct: int, time_format: dict | None = None):
        self.name, self.max_distinct = name, max_distinct
        self.fmt = None if time_format is None else timefmt.TimeFormat.from_dict(time_format)
        self.cells: dict[str, object] = {}  # 'nan', 'posinf', ..., 'min', 'max' -> a cell
        self.low, self.high = np.inf, -np.inf
        self.distinct: dict[float, object] = {}

    def update(self, cells: pd.Series) -> None:
        v = self.numbers(cells)
        for name in SPECIALS:
            hit = special_mask(name, v)
            if name not in self.cells and hit.any():
                self.cells[name] = cells.iloc[int(np.argmax(hit))]
        finite = np.flatnonzero(np.isfinite(v))
        if finite.size == 0:
            return
        lo, hi = finite[np.argmin(v[finite])], finite[np.argmax(v[finite])]
        if v[lo] < self.low:
            self.low, self.cells["min"] = v[lo], cells.iloc[lo]
        if v[hi] > self.high:
            self.high, self.cells["max"] = v[hi], cells.iloc[hi]
        if len(self.distinct) > self.max_distinct:
            return
        values, first = np.unique(v[finite], return_index=True)
        for x, i in zip(values.tolist(), finite[first].tolist(), strict=True):
            if x not in self.distinct:
                self.distinct[x] = cells.iloc[i]
                if len(self.distinct) > self.max_distinct:
                    return

    def numbers(self, cells: pd.Series) -> np.ndarray:
        """float64 [N]: the column's numbers (epoch seconds for a timestamp)."""
        if self.fmt is None:
            return cells.to_numpy(np.float64, na_value=np.nan)
        return timefmt.parse(cells, self.fmt)

    def column(self, dtype) -> pd.Series:
        cells = [*self.cells.values(), *self.distinct.values()]
        return pd.Series(np.asarray(cells, dtype=object), dtype=dtype, name=self.name)


class Octets:
    """An IPv4 column: for each position and octet value, the first address that has it."""

    def __init__(self, name: str, form: str):
        self.name, self.form = name, form
        self.first: dict[tuple[int, int], object] = {}

    def update(self, cells: pd.Series) -> None:
        octets = addresses.to_octets(cells, self.form)
        for k in range(4):
            values, first = np.unique(octets[:, k], return_index=True)
            for x, i in zip(values.tolist(), first.tolist(), strict=True):
                self.first.setdefault((k, x), cells.iloc[i])

    def column(self, dtype) -> pd.Series:
        cells = list(dict.fromkeys(self.first.values()))
        return pd.Series(np.asarray(cells, dtype=object), dtype=dtype, name=self.name)


Tracker = Counts | Extremes | Octets


def trackers_for(
    schema: Schema, frame: pd.DataFrame, *, n_bins: int, exact_integers: int
) -> dict[str, list[Tracker]]:
    """Trackers for every column the sentence has or may get back after the whole table is
    seen: the sentence's, and constant columns (both kinds: they may turn out to vary)."""
    distinct = max(exact_integers, TWO_LEVEL_FACTOR * n_bins) + 1
    out: dict[str, list[Tracker]] = {}
    for col, kind in schema.kinds:
        encoding = schema.encoding(col) or {}
        numeric = pd.api.types.is_numeric_dtype(frame[col])
        if encoding.get("how") == "ipv4" and col in schema.sentence_columns:
            out[col] = [Octets(col, encoding["form"])]
        elif encoding.get("how") == "time" and col in schema.sentence_columns:
            out[col] = [Extremes(col, distinct, encoding["format"])]
        elif kind == "constant":
            out[col] = [Counts(col)] + ([Extremes(col, distinct)] if numeric else [])
        elif col not in schema.sentence_columns:
            continue
        elif kind in NUMERIC_KINDS:
            out[col] = [Extremes(col, distinct)]
        else:
            out[col] = [Counts(col)]
    return out


def update_all(trackers: dict[str, list[Tracker]], frame: pd.DataFrame, path) -> None:
    """Feeds one batch to every tracker; ValueError names the file and column of a bad cell."""
    for col, kept in trackers.items():
        for tracker in kept:
            try:
                tracker.update(frame[col])
            except ValueError as e:  # a row the sample did not show: not an address or time
                raise ValueError(f"{path}: column {col!r}: {e} (the row index counts data "
                                 "rows from 0; line = row + 2)") from e  # fmt: skip


def vocabulary(
    trackers: dict[str, list[Tracker]], schema: Schema, dtypes: dict
) -> dict[str, pd.Series]:
    """`vocabulary=` for `FlowTokenizer.fit`: for each sentence column, the stand-in that
    its kind reads (counts for categories, extremes for numbers)."""
    out = {}
    for col in schema.sentence_columns:
        kept = trackers[col]
        how = (schema.encoding(col) or {}).get("how")
        numeric = schema.kind(col) in NUMERIC_KINDS or how in ("ipv4", "time")
        pick = [t for t in kept if isinstance(t, Counts) != numeric]
        out[col] = pick[0].column(dtypes[col])
    return out
