"""The symbolic tokenizer: flows <-> sentences of symbols (a start symbol, then one per column).

Two modes:
- `paper` reproduces the study: 49 intervals from percentiles of all numeric
  columns pooled together, one alphabet shared by every column, start symbol 0,
  vocabulary 50.
- `per_column` (default): each column has its own token range (so the sampler
  can mask illegal tokens per position): quantile or equal-width bins for
  numbers, exact tokens for categories (with an 'other' token), and special
  tokens for NaN, +-Infinity and zero where the column has them.

Decoding picks a value inside the symbol's bin, either from a small per-bin
quantile sketch of the training values (not the values themselves) or the bin
midpoint. Everything is vectorised numpy; state is saved as JSON, never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd

from flowjax.schema import NUMERIC_KINDS, Schema

START = 0
SKETCH_POINTS = 9  # quantiles stored per bin: 0, 1/8, ..., 1
MAX_OTHER_VALUES = 1024  # rare values kept behind a column's 'other' token
_SPECIALS = ("nan", "posinf", "neginf", "zero")


@dataclasses.dataclass
class NumericCodec:
    """Bins of one numeric column: token = offset + special index, or offset + n_special + bin."""

    name: str
    integer: bool
    edges: np.ndarray  # float64[K + 1]; bin k = [e_k, e_k+1), the last bin closed
    sketch: np.ndarray  # float64[K, SKETCH_POINTS] quantiles of the training values in each bin
    specials: tuple[str, ...]  # subset of _SPECIALS, in that order
    offset: int

    @property
    def size(self) -> int:
        return len(self.specials) + len(self.edges) - 1

    def encode(self, v: np.ndarray) -> np.ndarray:
        k = len(self.edges) - 1
        bins = np.searchsorted(self.edges[1:k], v, side="right")  # NaN sorts last; fixed below
        tok = self.offset + len(self.specials) + np.clip(bins, 0, k - 1)
        for i, special in enumerate(self.specials):
            tok = np.where(_special_mask(special, v), self.offset + i, tok)
        for special, name in (("nan", "NaN"), ("posinf", "+Infinity"), ("neginf", "-Infinity")):
            if special not in self.specials and _special_mask(special, v).any():
                raise ValueError(f"column {self.name!r}: {name}, and the table the tokenizer "
                                 "was fitted on had none")  # fmt: skip
        return tok

    def decode(self, tok: np.ndarray, u: np.ndarray, *, midpoint: bool) -> np.ndarray:
        local = tok - self.offset - len(self.specials)
        k = len(self.edges) - 1
        b = np.clip(local, 0, k - 1)
        lo, hi = self.edges[b], self.edges[b + 1]
        if midpoint:
            v = (lo + hi) / 2
        else:  # piecewise-linear inverse CDF through the bin's sketch
            pos = u * (SKETCH_POINTS - 1)
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
            "specials": list(self.specials), "offset": self.offset,
        }  # fmt: skip


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


def _special_mask(special: str, v: np.ndarray) -> np.ndarray:
    return {"nan": np.isnan, "posinf": np.isposinf, "neginf": np.isneginf,
            "zero": lambda x: x == 0}[special](v)  # fmt: skip


def _bin_sketch(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
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


def _edges(values: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
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


def _paper_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """The study's edges: n_bins + 1 percentiles of the pooled values, ties kept."""
    return np.percentile(values, np.linspace(0.0, 100.0, n_bins + 1)).astype(np.float64)


class FlowTokenizer:
    """Turns flow tables into int32 sentences `[start, s_1, ..., s_F]` and back.

    Args:
      mode: 'per_column' (default) or 'paper'.
      n_bins: intervals per numeric column (paper: 49, shared).
      binning: 'quantile' (default) or 'equal_width' (the paper's Algorithm 1); per_column only.
      max_categories: exact tokens kept per categorical column; the rest share 'other'.
      label_first: put the label column first in the sentence so generation can
        be conditioned on the class.
      include_label: paper mode only: append the label as exact tokens after the
        shared alphabet (the study modelled numeric columns only).
      decode_values: 'sketch' (a draw inside the bin from the training values'
        quantiles) or 'midpoint'.
    """

    def __init__(
        self,
        *,
        mode: str = "per_column",
        n_bins: int = 49,
        binning: str = "quantile",
        max_categories: int = 64,
        label_first: bool = True,
        include_label: bool = False,
        decode_values: str = "sketch",
    ):
        if mode not in ("per_column", "paper"):
            raise ValueError(f"mode must be 'per_column' or 'paper', got {mode!r}")
        if decode_values not in ("sketch", "midpoint"):
            raise ValueError(f"decode_values must be 'sketch' or 'midpoint', got {decode_values!r}")
        if n_bins < 1 or max_categories < 1:
            raise ValueError("n_bins and max_categories must be >= 1")
        self.mode, self.n_bins, self.binning = mode, n_bins, binning
        self.max_categories, self.label_first = max_categories, label_first
        self.include_label, self.decode_values = include_label, decode_values
        self.codecs: list[NumericCodec | CategoricalCodec] = []
        self.schema: Schema | None = None

    # ----------------------------------------------------------------- fitting

    def _pooled(self, frame: pd.DataFrame, schema: Schema, col: str) -> bool:
        """Paper mode: does the column join the pooled alphabet? (numeric, not the label)"""
        return (
            self.mode == "paper"
            and col != schema.label
            and pd.api.types.is_numeric_dtype(frame[col])
        )

    def _sentence_columns(self, frame: pd.DataFrame, schema: Schema) -> list[str]:
        cols = list(schema.sentence_columns)
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"columns {missing} of the schema are not in the table")
        if self.mode == "paper":  # the study modelled numeric columns, ports and flags included
            cols = [c for c in cols if self._pooled(frame, schema, c)]
            if self.include_label and schema.label in schema.sentence_columns:
                cols.append(schema.label)
        if self.label_first and schema.label in cols:
            cols.remove(schema.label)
            cols.insert(0, schema.label)
        return cols

    def fit(
        self, frame: pd.DataFrame, schema: Schema, *, vocabulary: pd.DataFrame | None = None
    ) -> FlowTokenizer:
        """Fits bins on a training table and the vocabulary on the whole table; returns self.

        Args:
          frame: the training rows (bin edges, in-bin sketches, class counts).
          schema: the table's schema.
          vocabulary: the whole table (default: `frame`): which categories and which
            special numbers (NaN, +-Infinity, zero) each column has. Deciding these on
            the whole table means no split can leave a column without a token it needs.
        """
        vocabulary = frame if vocabulary is None else vocabulary
        columns = self._sentence_columns(frame, schema)
        if not columns:
            raise ValueError("the schema leaves no column in the sentence")
        self.schema = schema
        pooled = [c for c in columns if self._pooled(frame, schema, c)]
        if pooled:
            _check_finite_for_paper(frame, pooled)
            shared = _paper_edges(frame[pooled].to_numpy(np.float64).ravel(), self.n_bins)
        offset = 1 + (self.n_bins if pooled else 0)
        self.codecs = []
        for col in columns:
            if col in pooled:
                v = frame[col].to_numpy(np.float64)
                integer = bool(np.all(v == np.round(v)))
                self.codecs.append(
                    NumericCodec(col, integer, shared, _bin_sketch(v, shared), (), 1)
                )
                continue
            if schema.kind(col) in NUMERIC_KINDS:
                codec = self._fit_numeric(
                    col,
                    frame[col].to_numpy(np.float64),
                    vocabulary[col].to_numpy(np.float64),
                    schema,
                    offset,
                )
            else:
                codec = self._fit_categorical(col, frame[col], vocabulary[col], schema, offset)
            offset += codec.size
            self.codecs.append(codec)
        return self

    def _fit_numeric(
        self, col: str, v: np.ndarray, whole: np.ndarray, schema: Schema, offset: int
    ) -> NumericCodec:
        specials = tuple(s for s in _SPECIALS if _special_mask(s, whole).any())
        body = v[np.isfinite(v) & ((v != 0) if "zero" in specials else True)]
        if body.size == 0:  # every regular value fell outside the training rows
            body = whole[np.isfinite(whole) & ((whole != 0) if "zero" in specials else True)]
        edges = _edges(body, self.n_bins, self.binning)
        return NumericCodec(col, schema.kind(col) == "integer", edges, _bin_sketch(body, edges),
                            specials, offset)  # fmt: skip

    def _fit_categorical(
        self, col: str, series: pd.Series, whole: pd.Series, schema: Schema, offset: int
    ) -> CategoricalCodec:
        numeric = pd.api.types.is_numeric_dtype(whole) or pd.api.types.is_bool_dtype(whole)
        counts = whole.dropna().value_counts(sort=True)
        limit = len(counts) if col == schema.label else self.max_categories
        kept, rest = counts.index[:limit], counts.iloc[limit:].iloc[:MAX_OTHER_VALUES]
        train = series.dropna().value_counts()
        return CategoricalCodec(
            col,
            values=[_json_scalar(x, numeric) for x in kept],
            numeric=numeric,
            counts=[int(train.get(x, 0)) for x in kept],
            other_values=[_json_scalar(x, numeric) for x in rest.index],
            other_counts=[int(n) for n in rest],
            has_nan=bool(whole.isna().any()),
            offset=offset,
        )

    # ---------------------------------------------------------------- encoding

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.codecs)

    @property
    def seq_len(self) -> int:
        return 1 + len(self.codecs)

    @property
    def vocab_size(self) -> int:
        self._check_fitted()
        if self.mode == "paper" and all(isinstance(c, NumericCodec) for c in self.codecs):
            return 1 + self.n_bins
        return max(c.offset + c.size for c in self.codecs)

    def _check_fitted(self):
        if not self.codecs:
            raise ValueError("the tokenizer is not fitted; call fit() or from_json() first")

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Encodes a table into sentences int32[N, 1 + F] (column 0 is the start symbol)."""
        self._check_fitted()
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the table lacks columns {missing} that the tokenizer was fitted on")
        out = np.empty((len(frame), self.seq_len), dtype=np.int32)
        out[:, 0] = START
        for j, codec in enumerate(self.codecs):
            if isinstance(codec, NumericCodec):
                v = pd.to_numeric(frame[codec.name], errors="coerce").to_numpy(np.float64)
                if self.mode == "paper" and not np.isfinite(v).all():
                    _check_finite_for_paper(frame, [codec.name])
                out[:, j + 1] = codec.encode(v)
            else:
                out[:, j + 1] = codec.encode(frame[codec.name])
        return out

    def decode(
        self,
        tokens: np.ndarray,
        *,
        seed: int = 0,
        row_offset: int = 0,
        decode_values: str | None = None,
    ) -> pd.DataFrame:
        """Decodes sentences int32[N, 1 + F] (or [N, F] without the start symbol) into a table.

        Categoricals come back exactly, integer columns as integers, numbers inside
        their bin (drawn from the bin's sketch, or the midpoint). The draw for row i is
        a function of (seed, row_offset + i) only, so chunked decoding gives the same
        values as decoding everything at once.
        """
        self._check_fitted()
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] not in (self.seq_len, self.seq_len - 1):
            raise ValueError(f"tokens must be [N, {self.seq_len}] or [N, {self.seq_len - 1}], "
                             f"got shape {tokens.shape}")  # fmt: skip
        body = tokens[:, 1:] if tokens.shape[1] == self.seq_len else tokens
        legal = self.legal_mask()
        cols = np.arange(1, self.seq_len)[None, :]
        if not legal[cols, body].all():
            bad_row, bad_col = np.argwhere(~legal[cols, body])[0]
            raise ValueError(f"token {body[bad_row, bad_col]} at row {bad_row} is not legal "
                             f"for column {self.columns[bad_col]!r}")  # fmt: skip
        midpoint = (decode_values or self.decode_values) == "midpoint"
        u = row_uniforms(seed, row_offset, body.shape)
        data = {}
        for j, codec in enumerate(self.codecs):
            values = codec.decode(body[:, j].astype(np.int64), u[:, j], midpoint=midpoint)
            data[codec.name] = _to_column(codec, values)
        return pd.DataFrame(data)

    # ------------------------------------------------------- masks, conditions

    def legal_mask(self) -> np.ndarray:
        """bool[1 + F, V]: row 0 allows only the start symbol, row j the tokens of column j - 1."""
        self._check_fitted()
        mask = np.zeros((self.seq_len, self.vocab_size), dtype=bool)
        mask[0, START] = True
        for j, codec in enumerate(self.codecs):
            mask[j + 1, codec.offset : codec.offset + codec.size] = True
        return mask

    def condition_tokens(self, conditions: dict) -> np.ndarray:
        """int32[1 + F]: the token each conditioned column must take, -1 where free."""
        self._check_fitted()
        out = np.full(self.seq_len, -1, dtype=np.int32)
        out[0] = START
        for col, value in conditions.items():
            if col not in self.columns:
                raise ValueError(f"cannot condition on {col!r}: not a sentence column "
                                 f"{list(self.columns)}")  # fmt: skip
            j = self.columns.index(col)
            codec = self.codecs[j]
            if isinstance(codec, CategoricalCodec):
                if _json_scalar(value, codec.numeric) not in codec.values:
                    known = codec.values[:20]
                    raise ValueError(f"{col}={value!r} is not a value the model knows exactly; "
                                     f"known: {known}")  # fmt: skip
                tok = int(codec.encode(pd.Series([value]))[0])
            else:
                tok = int(codec.encode(np.asarray([float(value)]))[0])
            out[j + 1] = tok
        return out

    # ------------------------------------------------------------ persistence

    def to_json(self) -> str:
        """Serialises the fitted tokenizer (and its schema) to JSON."""
        self._check_fitted()
        return json.dumps(
            {
                "mode": self.mode, "n_bins": self.n_bins, "binning": self.binning,
                "max_categories": self.max_categories, "label_first": self.label_first,
                "include_label": self.include_label, "decode_values": self.decode_values,
                "schema": self.schema.to_dict() if self.schema else None,
                "codecs": [c.to_dict() for c in self.codecs],
            },
            allow_nan=False,
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> FlowTokenizer:
        """Restores a tokenizer saved by `to_json`."""
        d = json.loads(text)
        tok = cls(mode=d["mode"], n_bins=d["n_bins"], binning=d["binning"],
                  max_categories=d["max_categories"], label_first=d["label_first"],
                  include_label=d["include_label"], decode_values=d["decode_values"])  # fmt: skip
        tok.schema = Schema.from_dict(d["schema"]) if d["schema"] else None
        for c in d["codecs"]:
            if c["type"] == "numeric":
                tok.codecs.append(NumericCodec(c["name"], c["integer"], np.asarray(c["edges"]),
                                               np.asarray(c["sketch"]).reshape(-1, SKETCH_POINTS),
                                               tuple(c["specials"]), c["offset"]))  # fmt: skip
            else:
                c = {k: v for k, v in c.items() if k != "type"}
                tok.codecs.append(CategoricalCodec(**c))
        return tok


def row_uniforms(seed: int, row_offset: int, shape: tuple[int, int]) -> np.ndarray:
    """float64[N, F] uniforms in [0, 1) from a counter hash (splitmix64) of (seed, row, column)."""
    n, f = shape
    with np.errstate(over="ignore"):
        rows = np.arange(row_offset, row_offset + n, dtype=np.uint64)[:, None]
        x = rows * np.uint64(f) + np.arange(f, dtype=np.uint64)[None, :]
        x = x + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _check_finite_for_paper(frame: pd.DataFrame, cols: list[str]) -> None:
    for col in cols:
        v = frame[col].to_numpy(np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            raise ValueError(
                f"paper mode has no symbol for NaN/Infinity: column {col!r}, row "
                f"{int(np.flatnonzero(bad)[0])}; load with BadValuePolicy(nonfinite='drop'/'clip')"
            )


def _json_scalar(x, numeric: bool):
    if not numeric:
        return str(x)
    x = float(x)
    return int(x) if x.is_integer() and math.isfinite(x) else x


def _to_column(codec, values: np.ndarray):
    """Gives decoded values the dtype their column should have."""
    if isinstance(codec, NumericCodec):
        if codec.integer and not np.isnan(values).any():
            return values.astype(np.int64)
        return values
    if codec.numeric:
        if not np.isnan(values).any() and all(isinstance(v, int) for v in codec.values):
            return values.astype(np.int64)
        return values
    return values.astype(object)
