"""Generated sentences -> the user's table: every input column, in input order, in input dtypes.

The sentence holds only the modelled columns. This module writes the rest as the schema
says: dependent columns computed from the row (`flowjax.relations`), constant columns at
their constant, a row-index column counted afresh, a 5-tuple `Flow ID` rebuilt from the
generated 5-tuple (`flowjax.identities`), and nothing for the columns that cannot be
produced (a timestamp in an unknown format, a label-encoded Flow ID), which the sidecar
`<out>.schema.json` lists with the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from flowjax import identities
from flowjax.files import write_atomic
from flowjax.schema import Schema


def output_columns(schema: Schema) -> list[str]:
    """The columns a generated table has, in input order (all but the missing ones)."""
    missing = {c for c, fill in schema.fills if fill["how"] == "missing"}
    return [c for c in schema.columns if c not in missing]


def complete(frame: pd.DataFrame, schema: Schema, *, row_offset: int = 0) -> pd.DataFrame:
    """Turns decoded sentence columns into the full output table.

    Args:
      frame: the tokenizer's decoded columns for rows row_offset, row_offset + 1, ...
      schema: the schema the tokenizer was fitted with.
      row_offset: the global index of the first row (for row-index columns).

    Returns:
      The output columns of `output_columns(schema)` in the input's dtypes.
    """
    full = schema.relations.complete(frame)
    fills = dict(schema.fills)
    n = len(frame)
    data = {}
    columns = output_columns(schema)
    rebuilt = [c for c in columns if fills.get(c, {}).get("how") == "flow_id"]
    for col in [c for c in columns if c not in rebuilt] + rebuilt:  # Flow IDs from the rest
        fill = fills.get(col, {"how": "model"})
        if col in full.columns:
            values = full[col].to_numpy()
        elif fill["how"] == "constant":
            values = np.full(n, fill["value"], dtype=object)
        elif fill["how"] == "index":
            values = np.arange(row_offset, row_offset + n, dtype=np.int64) + fill["start"]
        elif fill["how"] == "flow_id":
            values = identities.build_flow_id(pd.DataFrame(data), fill["columns"],
                                              reverse=fill["order"] == "reverse")  # fmt: skip
        else:
            raise ValueError(f"column {col!r}: the generated rows do not hold it ({fill})")
        data[col] = as_dtype(col, values, schema.dtype(col))
    return pd.DataFrame({c: data[c] for c in columns}, index=pd.RangeIndex(n))


def as_dtype(col: str, values: np.ndarray, dtype: str) -> np.ndarray:
    """Casts generated values to the input's dtype; whole numbers only into integer columns."""
    if dtype == "string":
        return np.asarray([v if v is None or isinstance(v, str) else str(v) for v in values],
                          dtype=object)  # fmt: skip
    target = np.dtype(dtype)
    if target.kind in "iub":
        v = np.asarray(values, dtype=np.float64)
        if not np.isfinite(v).all():
            raise ValueError(f"column {col!r} ({dtype}): a generated value is NaN or infinite")
        return np.round(v).astype(target)
    return np.asarray(values, dtype=np.float64).astype(target)


def empty(schema: Schema) -> pd.DataFrame:
    """A zero-row table with the output columns and dtypes."""
    return pd.DataFrame({
        c: pd.Series([], dtype=object if schema.dtype(c) == "string" else schema.dtype(c))
        for c in output_columns(schema)
    })  # fmt: skip


def describe(schema: Schema, tokens: Mapping[str, str] | None = None) -> dict:
    """The sidecar: how each input column is produced (and, given the tokenizer's
    `token_kinds`, how each modelled column is tokenized), and the relations."""
    fills = dict(schema.fills)
    derived = {d.target: d.describe() for d in schema.relations.derived}
    columns = []
    for col in schema.columns:
        entry = {"name": col, "dtype": schema.dtype(col), "kind": schema.kind(col)}
        if col in derived:
            entry.update(how="computed", relation=derived[col])
        elif col in schema.sentence_columns:
            entry.update(how="modelled")
            if tokens and col in tokens:
                entry.update(tokens=tokens[col])
        else:
            entry.update(fills[col])
        columns.append(entry)
    return {
        "columns": columns,
        "missing": {c: f["reason"] for c, f in fills.items() if f["how"] == "missing"},
        "relations": schema.relations.lines(),
    }


def sidecar_path(out: str | os.PathLike) -> Path:
    """`<out>.schema.json` beside an output file or shard directory."""
    out = Path(out)
    return out.with_name(out.name + ".schema.json")


def write_sidecar(
    out: str | os.PathLike, schema: Schema, tokens: Mapping[str, str] | None = None
) -> Path:
    """Writes `<out>.schema.json` atomically; returns its path."""
    text = json.dumps(describe(schema, tokens), indent=1, default=str)
    return write_atomic(sidecar_path(out), text)
