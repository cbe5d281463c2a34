"""Column codecs: one column's values <-> its tokens (numeric bins or exact categories).

`NumericCodec` bins a number (quantile or equal-width edges, special tokens for NaN,
+-Infinity and zero) and decodes a token inside its bin from a small per-bin quantile
sketch; a two-level number adds a `FineCodec` token right after it (which of the bin's
sketch intervals the value is in, so the model, not a row-blind draw, chooses where in
the bin it lies); `CategoricalCodec` keeps the frequent values exactly and lumps the rare ones into
an 'other' token that decodes to one of them. `flowjax.tokenizer` lays the codecs of a
table side by side into one vocabulary. Pure numpy/pandas; state is plain JSON.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

SKETCH_POINTS = 9  # quantiles stored per bin: 0, 1/8, ..., 1
FINE_BINS = SKETCH_POINTS - 1  # a two-level number's second token: one of its bin's 8 intervals
FINE_SUFFIX = "\u00b7fine"  # the sentence name of a two-level column's second token
MAX_OTHER_VALUES = 1024  # rare values kept behind a column's 'other' token
SPECIALS = ("nan", "posinf", "neginf", "zero")


@dataclasses.dataclass
class NumericCodec:
    """Bins of one numeric column: token = offset + special index, or offset + n_special + bin."""

    name: str
    integer: bool
    edges: np.ndarray  # float64[K + 1]; bin k = [e_k, e_k+1), the last bin closed
    sketch: np.ndarray  # float64[K, SKETCH_POINTS] quantiles of the training values in each bin
    specials: tuple[str, ...]  # subset of SPECIALS, in that order
    offset: int
    exact: bool = False  # one bin per value (edges are the values): decodes to the value

    @property
    def size(self) -> int:
        return len(self.specials) + len(self.edges) - 1

    def encode(self, v: np.ndarray) -> np.ndarray:
        tok = self.offset + len(self.specials) + self.bins(v)  # NaN sorts last; fixed below
        for i, special in enumerate(self.specials):
            tok = np.where(special_mask(special, v), self.offset + i, tok)
        for special, name in (("nan", "NaN"), ("posinf", "+Infinity"), ("neginf", "-Infinity")):
            if special not in self.specials and special_mask(special, v).any():
                raise ValueError(f"column {self.name!r}: {name}, and the table the tokenizer "
                                 "was fitted on had none")  # fmt: skip
        return tok

    def bins(self, v: np.ndarray) -> np.ndarray:
        """The bin index of each value (specials: whatever bin they sort into)."""
        k = len(self.edges) - 1
        return np.clip(np.searchsorted(self.edges[1:k], v, side="right"), 0, k - 1)

    def decode(
        self, tok: np.ndarray, u: np.ndarray, *, midpoint: bool, fine: np.ndarray | None = None
    ) -> np.ndarray:
        """Values of tokens: inside the bin by the sketch at `u`, or within the sketch
        interval `fine` (int, 0..FINE_BINS-1, a two-level column's second token) at `u`."""
        local = tok - self.offset - len(self.specials)
        k = len(self.edges) - 1
        b = np.clip(local, 0, k - 1)
        lo, hi = self.edges[b], self.edges[b + 1]
        if self.exact:
            v = lo
        elif midpoint:
            v = (lo + hi) / 2
        else:  # piecewise-linear inverse CDF through the bin's sketch
            pos = u * (SKETCH_POINTS - 1) if fine is None else np.clip(fine, 0, FINE_BINS - 1) + u
            i = np.minimum(pos.astype(np.int64), SKETCH_POINTS - 2)
            frac = pos - i
            v = self.sketch[b, i] + (self.sketch[b, i + 1] - self.sketch[b, i]) * frac
        # Keep float rounding from pushing a value over the bin's open upper edge.
        v = np.clip(v, lo, np.where(b == k - 1, hi, np.maximum(np.nextafter(hi, -np.inf), lo)))
        if self.integer:
            top = np.where(b == k - 1, np.floor(hi), np.ceil(hi) - 1)
            v = np.clip(np.round(v), np.ceil(lo), np.maximum(top, np.ceil(lo)))
        if "zero" in self.specials:  # zero has its own token; edges are real non-zero values
            v = np.where(v == 0, lo, v)
        out = v.astype(np.float64)
        specials = {"nan": np.nan, "posinf": np.inf, "neginf": -np.inf, "zero": 0.0}
        for i, special in enumerate(self.specials):
            out = np.where(tok == self.offset + i, specials[special], out)
        return out

    def to_dict(self) -> dict:
        return {
            "type": "numeric", "name": self.name, "integer": self.integer,
            "edges": self.edges.tolist(), "sketch": self.sketch.tolist(),
            "specials": list(self.specials), "offset": self.offset, "exact": self.exact,
        }  # fmt: skip


@dataclasses.dataclass
class FineCodec:
    """The second token of a two-level number: which of its coarse bin's FINE_BINS sketch
    intervals (equal shares of the bin's training values) the value lies in."""

    name: str  # parent + FINE_SUFFIX
    parent: str  # the numeric column it refines (the codec just before it)
    offset: int

    @property
    def size(self) -> int:
        return FINE_BINS

    def encode(self, parent: NumericCodec, v: np.ndarray) -> np.ndarray:
        """Tokens for values `v` of the parent column (0 for special values and exact bins)."""
        b = parent.bins(v)
        inner = parent.sketch[b, 1:-1]  # [N, FINE_BINS - 1] interior interval edges
        with np.errstate(invalid="ignore"):
            f = np.sum(inner <= v[:, None], axis=1)
        special = np.zeros(v.shape, bool)
        for name in parent.specials:
            special |= special_mask(name, v)
        return self.offset + np.where(special | ~np.isfinite(v), 0, f)

    def to_dict(self) -> dict:
        return {"type": "fine", **dataclasses.asdict(self)}


@dataclasses.dataclass
class CategoricalCodec:
    """Exact tokens for the most frequent values, then 'other' (only if the column has more
    values than that), then NaN (only if the column has NaN).

    'other' decodes to one of the rare real values it stands for, drawn by their frequency,
    so a decoded column never holds a value (or a NaN) that the real column did not have.
    """

    name: str
    values: list  # JSON scalars, most frequent first
    numeric: bool  # values are numbers (ports, protocol numbers, flags)
    counts: list[int]  # training rows per value (the label's class shares)
    other_values: list  # the rare values behind 'other' (the most frequent of them)
    other_counts: list[int]
    has_nan: bool
    offset: int

    @property
    def has_other(self) -> bool:
        return bool(self.other_values)

    @property
    def size(self) -> int:
        return len(self.values) + int(self.has_other) + int(self.has_nan)

    @property
    def other(self) -> int:
        """The 'other' token (meaningful only when `has_other`)."""
        return self.offset + len(self.values)

    @property
    def nan(self) -> int:
        """The NaN token (meaningful only when `has_nan`)."""
        return self.offset + len(self.values) + int(self.has_other)

    def _index(self, values: list, series: pd.Series) -> np.ndarray:
        if self.numeric:
            return pd.Index(np.asarray(values, np.float64)).get_indexer(
                pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
            )
        return pd.Index(values, dtype=object).get_indexer(series.astype(str).to_numpy())

    def encode(self, series: pd.Series) -> np.ndarray:
        idx = self._index(self.values, series)
        tok = np.where(idx >= 0, self.offset + idx, self.other)
        nan = series.isna().to_numpy()
        tok = np.where(nan, self.nan, tok)
        unknown = (idx < 0) & ~nan & (not self.has_other)  # rare values share 'other'
        if unknown.any() or (nan.any() and not self.has_nan):
            row = int(np.flatnonzero(unknown | (nan & ~self.has_nan))[0])
            raise ValueError(
                f"column {self.name!r}, row {row}: value {series.iloc[row]!r} is not "
                "in the table the tokenizer was fitted on"
            )
        return tok

    def decode(self, tok: np.ndarray, u: np.ndarray, *, midpoint: bool) -> np.ndarray:
        local = np.clip(tok - self.offset, 0, len(self.values) - 1)
        dtype = np.float64 if self.numeric else object
        out = np.asarray(self.values, dtype=dtype)[local]
        if self.has_other:
            cdf = np.cumsum(self.other_counts) / np.sum(self.other_counts)
            pick = np.searchsorted(cdf, np.full(len(tok), 0.5) if midpoint else u, side="right")
            rare = np.asarray(self.other_values, dtype=dtype)[np.minimum(pick, len(cdf) - 1)]
            out = np.where(tok == self.other, rare, out)
        if self.has_nan:
            out = np.where(tok == self.nan, np.nan if self.numeric else None, out)
        return out

    def to_dict(self) -> dict:
        return {"type": "categorical", **dataclasses.asdict(self)}


def special_mask(special: str, v: np.ndarray) -> np.ndarray:
    return {"nan": np.isnan, "posinf": np.isposinf, "neginf": np.isneginf,
            "zero": lambda x: x == 0}[special](v)  # fmt: skip


def bin_sketch(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-bin quantile sketch, vectorised: sorted values fall into bins as contiguous runs."""
    k = len(edges) - 1
    q = np.linspace(0.0, 1.0, SKETCH_POINTS)
    top = np.where(np.arange(k) == k - 1, edges[1:], np.nextafter(edges[1:], -np.inf))
    # Bins no training value fell in are spread over the bin itself.
    sketch = edges[:-1, None] + q[None, :] * (np.maximum(top, edges[:-1]) - edges[:-1])[:, None]
    if values.size == 0:
        return sketch
    values = np.sort(values)
    bins = np.clip(np.searchsorted(edges[1:k], values, side="right"), 0, k - 1)
    starts = np.searchsorted(bins, np.arange(k), side="left")
    counts = np.searchsorted(bins, np.arange(k), side="right") - starts
    pos = starts[:, None] + q[None, :] * np.maximum(counts - 1, 0)[:, None]
    lo = np.floor(pos).astype(np.int64).clip(0, values.size - 1)
    hi = np.minimum(lo + 1, (starts + counts - 1)[:, None]).clip(0, values.size - 1)
    frac = pos - np.floor(pos)
    filled = values[lo] + (values[hi] - values[lo]) * frac
    return np.where((counts > 0)[:, None], filled, sketch)


def edges_of(values: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
    """Bin edges for one column (or the pooled values in paper mode); at least one bin."""
    if values.size == 0:
        return np.array([0.0, 0.0])
    lo, hi = float(values.min()), float(values.max())
    distinct = np.unique(values)
    if binning == "quantile" and distinct.size <= n_bins:  # few values: one bin per value
        return np.append(distinct, distinct[-1]).astype(np.float64)
    if binning == "quantile":
        edges = np.unique(
            np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1), method="inverted_cdf")
        )
    elif binning == "equal_width":
        edges = np.linspace(lo, hi, n_bins + 1)
    else:
        raise ValueError(f"binning must be 'quantile' or 'equal_width', got {binning!r}")
    return edges if edges.size >= 2 else np.array([lo, hi])


def paper_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """The study's edges: n_bins + 1 percentiles of the pooled values, ties kept."""
    return np.percentile(values, np.linspace(0.0, 100.0, n_bins + 1)).astype(np.float64)


def json_scalar(x, numeric: bool):
    if not numeric:
        return str(x)
    x = float(x)
    return int(x) if x.is_integer() and math.isfinite(x) else x


def to_column(codec, values: np.ndarray):
    """Gives a codec's decoded values the dtype their column should have."""
    if isinstance(codec, NumericCodec):
        if codec.integer and not np.isnan(values).any():
            return values.astype(np.int64)
        return values
    if codec.numeric:
        if not np.isnan(values).any() and all(isinstance(v, int) for v in codec.values):
            return values.astype(np.int64)
        return values
    return values.astype(object)
