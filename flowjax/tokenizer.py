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

import numpy as np
import pandas as pd

from flowjax import addresses, dialects, timefmt
from flowjax.codecs import (
    FINE_SUFFIX,
    MAX_OTHER_VALUES,
    SKETCH_POINTS,
    SPECIALS,
    CategoricalCodec,
    FineCodec,
    NumericCodec,
    bin_sketch,
    edges_of,
    json_scalar,
    paper_edges,
    special_mask,
    to_column,
)
from flowjax.netcodecs import OctetCodec, PortCodec, TimeCodec, fit_octets, fit_port
from flowjax.schema import NUMERIC_KINDS, Schema

START = 0
Codec = NumericCodec | CategoricalCodec | FineCodec | OctetCodec | PortCodec
TWO_LEVEL_FACTOR = 4  # two-level columns have more distinct values than this x n_bins


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
      exact_integers: integer columns with at most this many distinct values in the
        whole table get one token per value, decoded exactly (0: off, the default).
      two_level: numeric columns (per_column mode) with more than `TWO_LEVEL_FACTOR` x
        n_bins distinct values get a second token after their bin: which of the bin's
        FINE_BINS sketch intervals the value is in (`two_level_columns` lists them).
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
        exact_integers: int = 0,
        two_level: bool = False,
        port_ranges: bool = False,
    ):
        if mode not in ("per_column", "paper"):
            raise ValueError(f"mode must be 'per_column' or 'paper', got {mode!r}")
        if decode_values not in ("sketch", "midpoint"):
            raise ValueError(f"decode_values must be 'sketch' or 'midpoint', got {decode_values!r}")
        if n_bins < 1 or max_categories < 1 or exact_integers < 0:
            raise ValueError("n_bins and max_categories must be >= 1, exact_integers >= 0")
        self.mode, self.n_bins, self.binning = mode, n_bins, binning
        self.max_categories, self.label_first = max_categories, label_first
        self.include_label, self.decode_values = include_label, decode_values
        self.exact_integers = exact_integers
        self.two_level, self.port_ranges = two_level, port_ranges
        self.codecs: list[Codec] = []
        self.schema: Schema | None = None

    # ----------------------------------------------------------------- fitting

    def _pooled(self, frame: pd.DataFrame, schema: Schema, col: str) -> bool:
        """Paper mode: does the column join the pooled alphabet? (numeric, not the label)"""
        return (
            self.mode == "paper"
            and col != schema.label
            and schema.encoding(col) is None
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
        self.schema = _modelling(schema, columns)
        pooled = [c for c in columns if self._pooled(frame, schema, c)]
        if pooled:
            _check_finite_for_paper(frame, pooled)
            shared = paper_edges(frame[pooled].to_numpy(np.float64).ravel(), self.n_bins)
        offset = 1 + (self.n_bins if pooled else 0)
        self.codecs = []
        for col in columns:
            if col in pooled:
                v = frame[col].to_numpy(np.float64)
                integer = bool(np.all(v == np.round(v)))
                self.codecs.append(NumericCodec(col, integer, shared, bin_sketch(v, shared), (), 1))
                continue
            encoding = schema.encoding(col) or {}
            if encoding.get("how") == "ipv4":
                self.codecs += fit_octets(col, vocabulary[col], encoding["form"], offset)
                offset = self.codecs[-1].offset + self.codecs[-1].size
                continue
            if encoding.get("how") == "time":
                codec = self._fit_time(col, frame[col], vocabulary[col], encoding, schema, offset)
            elif schema.kind(col) in NUMERIC_KINDS:
                codec = self._fit_numeric(
                    col,
                    frame[col].to_numpy(np.float64),
                    vocabulary[col].to_numpy(np.float64),
                    schema,
                    offset,
                )
            elif self._is_port(col, vocabulary[col]):
                codec = fit_port(col, frame[col], vocabulary[col], self.max_categories, offset)
            else:
                codec = self._fit_categorical(col, frame[col], vocabulary[col], schema, offset)
            offset += codec.size
            self.codecs.append(codec)
            if self._is_two_level(codec, vocabulary[col]):
                self.codecs.append(FineCodec(col + FINE_SUFFIX, col, offset))
                offset += self.codecs[-1].size
        return self

    def _is_port(self, col: str, whole: pd.Series) -> bool:
        return (
            self.port_ranges
            and dialects.canonical_name(col) in dialects.PORT_KEYS
            and pd.api.types.is_numeric_dtype(whole)
        )

    def _fit_time(
        self,
        col: str,
        series: pd.Series,
        whole: pd.Series,
        encoding: dict,
        schema: Schema,
        offset: int,
    ) -> TimeCodec:
        """Bins of a timestamp column: seconds from the table's first flow, or gaps (trace)."""
        fmt = encoding["format"]
        seconds = timefmt.parse(whole, timefmt.TimeFormat.from_dict(fmt))
        origin = float(np.min(seconds))
        codec = TimeCodec(col, False, np.zeros(2), np.zeros((1, SKETCH_POINTS)), (), offset,
                          fmt=fmt, origin=origin, gaps=bool(encoding.get("gaps", False)),
                          starts=[origin])  # fmt: skip
        numeric = self._fit_numeric(col, codec.numbers(series), codec.from_seconds(seconds),
                                    schema, offset)  # fmt: skip
        fields = {f.name: getattr(numeric, f.name) for f in dataclasses.fields(NumericCodec)}
        return dataclasses.replace(codec, **fields)

    def _is_two_level(self, codec, whole: pd.Series) -> bool:
        if not (self.two_level and isinstance(codec, NumericCodec)) or codec.exact:
            return False
        values = self._numbers(codec, whole)
        return np.unique(values[np.isfinite(values)]).size > TWO_LEVEL_FACTOR * self.n_bins

    def token_kinds(self) -> dict[str, str]:
        """How each sentence column is tokenized, in words (for the output's sidecar)."""
        kinds = {}
        for codec in self.codecs:
            if isinstance(codec, FineCodec):
                kinds[codec.parent] += f", then one of {codec.size} intervals inside the bin"
            elif isinstance(codec, OctetCodec):
                sizes = kinds.get(codec.parent, "IPv4 octets with")
                kinds[codec.parent] = f"{sizes} {codec.size}" + (" values" if codec.index == 3
                                                                   else ",")  # fmt: skip
            elif isinstance(codec, PortCodec):
                kinds[codec.name] = codec.describe()
            elif isinstance(codec, TimeCodec):
                what = "gaps from the previous flow" if codec.gaps else "seconds from the start"
                kinds[codec.name] = f"{what} in {len(codec.edges) - 1} bins"
            elif isinstance(codec, CategoricalCodec):
                kinds[codec.name] = f"{len(codec.values)} exact values" + (
                    " + 'other'" if codec.has_other else ""
                )
            elif codec.exact:
                kinds[codec.name] = f"{len(codec.edges) - 1} exact values"
            else:
                kinds[codec.name] = f"{len(codec.edges) - 1} bins"
        return kinds

    @staticmethod
    def _numbers(codec: NumericCodec, series: pd.Series) -> np.ndarray:
        """The numbers a numeric codec bins: the column's values, or a timestamp's seconds."""
        if isinstance(codec, TimeCodec):
            return codec.numbers(series)
        return pd.to_numeric(series, errors="coerce").to_numpy(np.float64)

    @property
    def two_level_columns(self) -> tuple[str, ...]:
        """The columns modelled as two tokens (a bin, then an interval inside it)."""
        return tuple(c.parent for c in self.codecs if isinstance(c, FineCodec))

    def _fit_numeric(
        self, col: str, v: np.ndarray, whole: np.ndarray, schema: Schema, offset: int
    ) -> NumericCodec:
        specials = tuple(s for s in SPECIALS if special_mask(s, whole).any())
        body = v[np.isfinite(v) & ((v != 0) if "zero" in specials else True)]
        regular = whole[np.isfinite(whole) & ((whole != 0) if "zero" in specials else True)]
        if body.size == 0:  # every regular value fell outside the training rows
            body = regular
        integer = schema.kind(col) == "integer"
        distinct = np.unique(regular)
        if integer and 0 < distinct.size <= self.exact_integers:  # one token per value
            edges = np.append(distinct, distinct[-1]).astype(np.float64)
            sketch = np.repeat(edges[:-1, None], SKETCH_POINTS, axis=1)
            return NumericCodec(col, integer, edges, sketch, specials, offset, exact=True)
        edges = edges_of(body, self.n_bins, self.binning)
        return NumericCodec(col, integer, edges, bin_sketch(body, edges), specials, offset)

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
            values=[json_scalar(x, numeric) for x in kept],
            numeric=numeric,
            counts=[int(train.get(x, 0)) for x in kept],
            other_values=[json_scalar(x, numeric) for x in rest.index],
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
        needed = dict.fromkeys(_source(c) for c in self.codecs)
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"the table lacks columns {missing} that the tokenizer was fitted on")
        out = np.empty((len(frame), self.seq_len), dtype=np.int32)
        out[:, 0] = START
        octets = {}
        for j, codec in enumerate(self.codecs):
            if isinstance(codec, FineCodec):
                v = self._numbers(self.codecs[j - 1], frame[codec.parent])
                out[:, j + 1] = codec.encode(self.codecs[j - 1], v)
            elif isinstance(codec, OctetCodec):
                if codec.parent not in octets:
                    octets[codec.parent] = addresses.to_octets(frame[codec.parent], codec.form)
                out[:, j + 1] = codec.encode(octets[codec.parent])
            elif isinstance(codec, NumericCodec):
                v = self._numbers(codec, frame[codec.name])
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
        starts: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Decodes sentences int32[N, 1 + F] (or [N, F] without the start symbol) into a table.

        A trace-mode timestamp (gaps from the previous flow) adds its gaps up along each
        stream: the rows are len(`starts`) streams of equal length, each starting at that
        epoch second (default: one stream from the table's first flow).

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
            if isinstance(codec, FineCodec) or isinstance(codec, OctetCodec) and codec.index:
                continue  # read with its parent column, or with the address's first octet
            if isinstance(codec, OctetCodec):
                octets = np.stack([c.decode(body[:, j + k]) for k, c in
                                   enumerate(self.codecs[j : j + 4])], axis=1)  # fmt: skip
                data[codec.parent] = addresses.from_octets(octets, codec.form)
                continue
            if isinstance(codec, PortCodec):
                values = codec.decode(body[:, j].astype(np.int64), u[:, j], midpoint=midpoint)
                data[codec.name] = values if np.isnan(values).any() else values.astype(np.int64)
                continue
            refined = j + 1 < len(self.codecs) and isinstance(self.codecs[j + 1], FineCodec)
            fine = body[:, j + 1] - self.codecs[j + 1].offset if refined else None
            kwargs = {"fine": fine} if refined else {}
            values = codec.decode(body[:, j].astype(np.int64), u[:, j], midpoint=midpoint,
                                  **kwargs)  # fmt: skip
            if isinstance(codec, TimeCodec):
                data[codec.name] = codec.times(values, starts)
                continue
            data[codec.name] = to_column(codec, values)
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
            octets = [j for j, c in enumerate(self.codecs)
                      if isinstance(c, OctetCodec) and c.parent == col]  # fmt: skip
            if octets:  # an IPv4 address fixes its four octets
                quad = addresses.to_octets(pd.Series([value]), self.codecs[octets[0]].form)
                for j in octets:
                    out[j + 1] = int(self.codecs[j].encode(quad)[0])
                continue
            codec = self.codecs[self.columns.index(col)] if col in self.columns else None
            if codec is None or isinstance(codec, FineCodec | OctetCodec | TimeCodec):
                known = list(dict.fromkeys(_source(c) for c in self.codecs
                                           if not isinstance(c, TimeCodec)))  # fmt: skip
                raise ValueError(f"cannot condition on {col!r}: not a sentence column "
                                 f"{known}")  # fmt: skip
            j = self.columns.index(col)
            if isinstance(codec, PortCodec):
                out[j + 1] = int(codec.encode(pd.Series([value]))[0])
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
            if isinstance(codec, CategoricalCodec):
                key = str(value) if not codec.numeric else number
                if key is None or json_scalar(key, codec.numeric) not in codec.values:
                    known = codec.values[:20]
                    raise ValueError(f"{col}={value!r} is not a value the model knows exactly; "
                                     f"known: {known}")  # fmt: skip
                out[j + 1] = int(codec.encode(pd.Series([value]))[0])
                continue
            if number is None:
                raise ValueError(f"{col}={value!r}: {col!r} is a numeric column and "
                                 f"{value!r} is not a number")  # fmt: skip
            lo, hi = float(codec.edges[0]), float(codec.edges[-1])
            special = any(special_mask(s, np.float64(number)) for s in codec.specials)
            if not (special or lo <= number <= hi):
                names = {"nan": "nan", "posinf": "inf", "neginf": "-inf", "zero": "0"}
                extra = "".join(f", or {names[s]}" for s in codec.specials)
                raise ValueError(f"{col}={value!r} is outside the column's range "
                                 f"[{lo:.10g}, {hi:.10g}]{extra}")  # fmt: skip
            out[j + 1] = int(codec.encode(np.asarray([number]))[0])
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
                "exact_integers": self.exact_integers, "two_level": self.two_level,
                "port_ranges": self.port_ranges,
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
                  include_label=d["include_label"], decode_values=d["decode_values"],
                  exact_integers=d.get("exact_integers", 0),
                  two_level=d.get("two_level", False),
                  port_ranges=d.get("port_ranges", False))  # fmt: skip
        tok.schema = Schema.from_dict(d["schema"]) if d["schema"] else None
        for c in d["codecs"]:
            if c["type"] == "numeric":
                tok.codecs.append(NumericCodec(c["name"], c["integer"], np.asarray(c["edges"]),
                                               np.asarray(c["sketch"]).reshape(-1, SKETCH_POINTS),
                                               tuple(c["specials"]), c["offset"],
                                               c.get("exact", False)))  # fmt: skip
            elif c["type"] == "fine":
                tok.codecs.append(FineCodec(c["name"], c["parent"], c["offset"]))
            elif c["type"] in ("octet", "port"):
                cls_ = OctetCodec if c["type"] == "octet" else PortCodec
                tok.codecs.append(cls_(**{k: v for k, v in c.items() if k != "type"}))
            elif c["type"] == "time":
                tok.codecs.append(TimeCodec(c["name"], c["integer"], np.asarray(c["edges"]),
                                            np.asarray(c["sketch"]).reshape(-1, SKETCH_POINTS),
                                            tuple(c["specials"]), c["offset"], c["exact"],
                                            fmt=c["fmt"], origin=c["origin"],
                                            gaps=c["gaps"], starts=c["starts"]))  # fmt: skip
            else:
                c = {k: v for k, v in c.items() if k != "type"}
                tok.codecs.append(CategoricalCodec(**c))
        return tok


def _source(codec: Codec) -> str:
    """The table column a codec reads (its parent for a fine token or an octet)."""
    return codec.parent if isinstance(codec, FineCodec | OctetCodec) else codec.name


def _modelling(schema: Schema, columns: list[str]) -> Schema:
    """The schema as the tokenizer models it: columns it leaves out (paper mode keeps only
    the numeric ones, as the study did) are missing from generated tables, with the reason."""
    dropped = [c for c in schema.sentence_columns if c not in columns]
    if not dropped:
        return schema
    reason = "paper mode models the numeric columns only, as the study did"
    return dataclasses.replace(
        schema,
        sentence_columns=tuple(c for c in schema.sentence_columns if c in columns),
        fills=schema.fills + tuple((c, {"how": "missing", "reason": reason}) for c in dropped),
    )


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
