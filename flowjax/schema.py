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

    def to_dict(self) -> dict:
        return {
            "kinds": dict(self.kinds),
            "label": self.label,
            "sentence_columns": list(self.sentence_columns),
            "dialect": self.dialect,
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
        )

    @classmethod
    def from_json(cls, text: str) -> Schema:
        return cls.from_dict(json.loads(text))


def _looks_like_ipv4(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    return len(sample) > 0 and bool(sample.str.fullmatch(r"\d{1,3}(\.\d{1,3}){3}").all())


def infer_kind(name: str, values: pd.Series, *, is_label: bool) -> str:
    """Infers the kind of one column from its canonical name and its values."""
    if is_label:
        return "label"
    key = dialects.canonical_name(name)
    if key in dialects.IP_KEYS:
        return "ip"
    if key in dialects.TIME_KEYS:
        return "timestamp"
    if key in dialects.ID_KEYS:
        return "identifier"
    if values.nunique(dropna=False) <= 1:
        return "constant"
    if key in dialects.CATEGORICAL_KEYS:
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
        kinds=tuple(kinds.items()), label=label, sentence_columns=tuple(sentence), dialect=dialect
    )
