"""The schema of a flow table: what kind each column is and which columns form the sentence.

A schema is inferred from the data and the column dialect (`flowjax.dialects`),
can be overridden by the user with a small JSON file or dict, and travels with
every checkpoint so that generated flows decode to the same columns.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from flowjax import dialects
from flowjax.relations import Relations

KINDS = (
    "continuous",  # real-valued measurement (durations, rates, means, std devs)
    "integer",  # non-negative or signed counts written as integers (or as floats like 17.0)
    "categorical",  # protocol, ports, flags, free-text columns
    "label",  # the class column
    "ip",  # addresses (dotted strings or 32-bit integers)
    "timestamp",  # flow start or end time
    "identifier",  # Flow ID and similar keys
    "constant",  # a single value everywhere: nothing to model
)
# Kinds that the sentence leaves out unless the user asks for them, as the paper does.
EXCLUDED_BY_DEFAULT = frozenset({"ip", "timestamp", "identifier", "constant"})
NUMERIC_KINDS = frozenset({"continuous", "integer"})


@dataclasses.dataclass(frozen=True)
class Schema:
    """Column kinds, the label column and the sentence columns of one flow table."""

    kinds: tuple[tuple[str, str], ...]  # (column, kind) in table order
    label: str | None
    sentence_columns: tuple[str, ...]
    dialect: str = "unknown"
    dtypes: tuple[tuple[str, str], ...] = ()  # (column, dtype of the input) in table order
    # How each column outside the sentence is written: {'how': 'constant', 'value': v},
    # {'how': 'index', 'start': 0 or 1} or {'how': 'missing', 'reason': text}; derived
    # columns are in `relations`.
    fills: tuple[tuple[str, dict], ...] = ()
    relations: Relations = Relations()
    # How an address or timestamp column in the sentence is tokenized (`flowjax.identities`):
    # {'how': 'ipv4', 'form': 'dotted' | 'integer'}, {'how': 'category'} or
    # {'how': 'time', 'format': TimeFormat.to_dict()}.
    encodings: tuple[tuple[str, dict], ...] = ()
    # The file format to write generated tables in, when it is not CSV (e.g. Zeek's header).
    source_format: dict | None = None

    def kind(self, column: str) -> str:
        """Returns the kind of a column; raises ValueError naming unknown columns."""
        for name, kind in self.kinds:
            if name == column:
                return kind
        raise ValueError(f"column {column!r} is not in the schema; columns: {self.columns}")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.kinds)

    @property
    def numeric(self) -> tuple[str, ...]:
        """Sentence columns modelled as numbers (binned by the tokenizer)."""
        return tuple(c for c in self.sentence_columns if self.kind(c) in NUMERIC_KINDS)

    @property
    def categorical(self) -> tuple[str, ...]:
        """Sentence columns modelled as exact categories, label included."""
        return tuple(c for c in self.sentence_columns if self.kind(c) not in NUMERIC_KINDS)

    @property
    def excluded(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.sentence_columns)

    def encoding(self, column: str) -> dict | None:
        """How an address or timestamp column is tokenized, or None (the kind decides)."""
        return dict(self.encodings).get(column)

    def dtype(self, column: str) -> str:
        """The input's dtype of a column ('string' for text), 'object' when unrecorded."""
        return dict(self.dtypes).get(column, "object")

    def to_dict(self) -> dict:
        return {
            "kinds": dict(self.kinds),
            "label": self.label,
            "sentence_columns": list(self.sentence_columns),
            "dialect": self.dialect,
            "dtypes": dict(self.dtypes),
            "fills": dict(self.fills),
            "relations": self.relations.to_dict(),
            "encodings": dict(self.encodings),
            "source_format": self.source_format,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: Mapping) -> Schema:
        return cls(
            kinds=tuple((str(k), str(v)) for k, v in d["kinds"].items()),
            label=d.get("label"),
            sentence_columns=tuple(d["sentence_columns"]),
            dialect=d.get("dialect", "unknown"),
            dtypes=tuple(d.get("dtypes", {}).items()),
            fills=tuple(d.get("fills", {}).items()),
            relations=Relations.from_dict(d["relations"]) if "relations" in d else Relations(),
            encodings=tuple(d.get("encodings", {}).items()),
            source_format=d.get("source_format"),
        )

    @classmethod
    def from_json(cls, text: str) -> Schema:
        return cls.from_dict(json.loads(text))


def _looks_like_ipv4(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    return len(sample) > 0 and bool(sample.str.fullmatch(r"\d{1,3}(\.\d{1,3}){3}").all())


def is_row_index(name: str, values: pd.Series) -> bool:
    """A row-number column ('id', 'Unnamed: 0', ...): distinct integers, or 0..n-1 / 1..n."""
    if not pd.api.types.is_integer_dtype(values) or values.isna().any() or len(values) < 2:
        return False
    folded = "".join(ch for ch in name.lower() if ch.isalnum())
    v = values.to_numpy()
    counting = bool(np.all(np.diff(v) == 1)) and v[0] in (0, 1)
    named = folded in dialects.INDEX_NAMES or (
        folded.startswith("unnamed") and folded[7:].isdigit()
    )
    return counting or (named and values.is_unique)


def infer_kind(name: str, values: pd.Series, *, is_label: bool) -> str:
    """Infers the kind of one column from its canonical name and its values."""
    if is_label:
        return "label"
    if is_row_index(name, values):
        return "identifier"
    key = dialects.canonical_name(name)
    if key in dialects.IP_KEYS:
        return "ip"
    if key in dialects.TIME_KEYS:
        return "timestamp"
    if key in dialects.ID_KEYS:
        return "identifier"
    if values.nunique(dropna=False) <= 1:
        return "constant"
    if key in dialects.CATEGORICAL_KEYS or pd.api.types.is_bool_dtype(values):
        return "categorical"
    if not pd.api.types.is_numeric_dtype(values):
        return "ip" if _looks_like_ipv4(values) else "categorical"
    finite = values.to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size and np.all(finite == np.round(finite)):
        return "integer"
    return "continuous"


def infer_schema(
    frame: pd.DataFrame, *, label: str | None, dialect: str, override: Mapping | None = None
) -> Schema:
    """Infers a schema, then applies a user override.

    Args:
      frame: the loaded table (numeric columns already parsed).
      label: the label column, or None.
      dialect: the name from `dialects.detect_dialect`.
      override: optional dict with any of `kinds` ({column: kind}), `include` and
        `exclude` (column lists added to or removed from the sentence), and
        `sentence_columns` (the full list, in order).

    Returns:
      The schema.
    """
    override = dict(override or {})
    unknown_keys = set(override) - {"kinds", "include", "exclude", "sentence_columns", "label"}
    if unknown_keys:
        raise ValueError(f"schema override has unknown keys {sorted(unknown_keys)}")
    kinds = {c: infer_kind(c, frame[c], is_label=(c == label)) for c in frame.columns}
    for col, kind in dict(override.get("kinds", {})).items():
        if col not in kinds:
            raise ValueError(f"schema override names column {col!r}, which the table lacks")
        if kind not in KINDS:
            raise ValueError(f"schema override gives column {col!r} unknown kind {kind!r}")
        if kind in NUMERIC_KINDS and not pd.api.types.is_numeric_dtype(frame[col]):
            raise ValueError(f"schema override makes non-numeric column {col!r} {kind}")
        kinds[col] = kind
    if "sentence_columns" in override:
        sentence = list(override["sentence_columns"])
    else:
        sentence = [c for c, k in kinds.items() if k not in EXCLUDED_BY_DEFAULT]
        sentence += [c for c in override.get("include", []) if c not in sentence]
        sentence = [c for c in sentence if c not in set(override.get("exclude", []))]
    for col in sentence:
        if col not in kinds:
            raise ValueError(f"schema override puts unknown column {col!r} in the sentence")
    return Schema(
        kinds=tuple(kinds.items()),
        label=label,
        sentence_columns=tuple(sentence),
        dialect=dialect,
        dtypes=tuple((c, dtype_name(frame[c])) for c in frame.columns),
        fills=tuple((c, _fill(frame[c], kinds[c])) for c in frame.columns if c not in sentence),
    )


def dtype_name(values: pd.Series) -> str:
    """The dtype a column is written back with: a numpy name, or 'string' for text."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return str(np.dtype(values.dtype))
    return "string"


def _fill(values: pd.Series, kind: str) -> dict:
    """How a column left out of the sentence is written in generated tables."""
    if kind == "constant":
        value = values.iloc[0]
        value = value.item() if isinstance(value, np.generic) else value
        return {"how": "constant", "value": None if pd.isna(value) else value}
    if kind == "identifier" and is_row_index(str(values.name), values):
        return {"how": "index", "start": 0 if values.min() == 0 else 1}
    reasons = {
        "ip": "addresses are modelled only with identities on (data.identities), with no "
        "missing values",
        "timestamp": "timestamps are modelled only with identities on (data.identities), in "
        "a format flowjax.timefmt reads, with no missing values",
        "identifier": "an identifier that is not the row's 5-tuple (or identities are off)",
    }
    return {"how": "missing", "reason": reasons.get(kind, "left out of the sentence by the schema")}


def choose_label(frame: pd.DataFrame) -> str | None:
    """The label among the columns named like one (Label, attack_cat, class, type, ...).

    With several, the one with the most classes: UNSW-NB15's `attack_cat` over its binary
    `label`, which then becomes a function of it.
    """
    candidates = [c for c in frame.columns if dialects.canonical_name(c) == "label"]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (frame[c].nunique(), -candidates.index(c)))
