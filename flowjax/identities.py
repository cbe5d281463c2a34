"""Addresses, timestamps and flow identifiers in the schema: what joins the sentence, and how.

`with_identities` runs after schema inference: an IPv4 address column joins the sentence
as four octets (dotted quads or 32-bit integers, written back in the same form); any other
address column (IPv6, MAC, mixed) joins as a category whose rare values share an 'other'
token decoded to one of them; a timestamp in a format `flowjax.timefmt` knows joins as
binned seconds (gaps in trace mode) and is written back in its own format. A `Flow ID`
that equals the row's 5-tuple (`src-dst-sport-dport-proto`, either way round) on every
real row is rebuilt from the generated 5-tuple. Columns that cannot be modelled stay
missing from the output, with the reason in the sidecar.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from flowjax import addresses, dialects, timefmt
from flowjax.schema import Schema

FIVE_TUPLE = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")


def pseudonymise(frame: pd.DataFrame, schema: Schema, key: bytes) -> pd.DataFrame:
    """The table with every address column mapped by keyed, prefix-preserving Crypto-PAn
    (`addresses.pseudonymise`); a Flow ID that is the 5-tuple is rewritten to match."""
    columns = [c for c, kind in schema.kinds if kind == "ip"]
    out = addresses.pseudonymise(frame, columns, key)
    for col, kind in schema.kinds:
        fill = flow_id_fill(frame, col) if kind == "identifier" else None
        if fill is None:
            continue
        forward = frame[col].astype(str).to_numpy() == build_flow_id(frame, fill["columns"],
                                                                     reverse=False)  # fmt: skip
        out[col] = np.where(forward, build_flow_id(out, fill["columns"], reverse=False),
                            build_flow_id(out, fill["columns"], reverse=True))  # fmt: skip
    return out


def with_identities(frame: pd.DataFrame, schema: Schema) -> Schema:
    """The schema with address and timestamp columns in the sentence, and Flow ID rebuilt.

    Columns the user left out of the sentence by name (a schema override) stay out only if
    they are not addresses or timestamps; call this only when identities are wanted.
    """
    encodings, sentence, fills = {}, list(schema.sentence_columns), dict(schema.fills)
    for col, kind in schema.kinds:
        encoding = _encoding(frame[col], kind)
        if encoding is None:
            continue
        encodings[col] = encoding
        if col not in sentence:
            sentence.append(col)
        fills.pop(col, None)
    order = {c: i for i, c in enumerate(schema.columns)}
    sentence.sort(key=order.__getitem__)
    for col, kind in schema.kinds:
        rebuilt = flow_id_fill(frame, col) if kind == "identifier" and col in fills else None
        if rebuilt is not None:
            fills[col] = rebuilt
    return dataclasses.replace(
        schema,
        sentence_columns=tuple(sentence),
        fills=tuple((c, fills[c]) for c in schema.columns if c in fills),
        encodings=tuple(encodings.items()),
    )


def _encoding(values: pd.Series, kind: str) -> dict | None:
    """How an address or timestamp column is tokenized; None if it is neither or cannot be."""
    if values.isna().any():
        return None
    if kind == "ip":
        form = addresses.ip_form(values)
        return {"how": "ipv4", "form": form} if form else {"how": "category"}
    if kind == "timestamp":
        fmt = timefmt.detect(values)
        return {"how": "time", "format": fmt.to_dict()} if fmt else None
    return None


def flow_id_fill(frame: pd.DataFrame, column: str) -> dict | None:
    """{'how': 'flow_id', 'columns': 5-tuple, 'order': ...} when `column` is the 5-tuple joined
    by '-' on every row (forward, or reversed as CICFlowMeter writes some flows), else None."""
    if dialects.canonical_name(column) not in dialects.ID_KEYS:
        return None
    keys = dialects.canonical_columns(frame.columns)
    by_key = {k: c for c, k in keys.items()}
    if not all(k in by_key for k in FIVE_TUPLE):
        return None
    columns = [by_key[k] for k in FIVE_TUPLE]
    actual = frame[column].astype(str).to_numpy()
    forward = build_flow_id(frame, columns, reverse=False)
    backward = build_flow_id(frame, columns, reverse=True)
    if not np.all((actual == forward) | (actual == backward)):
        return None
    order = "forward" if np.mean(actual == forward) >= 0.5 else "reverse"
    return {"how": "flow_id", "columns": columns, "order": order}


def build_flow_id(frame: pd.DataFrame, columns: list[str], *, reverse: bool) -> np.ndarray:
    """`src-dst-sport-dport-proto` (or `dst-src-dport-sport-proto`) of every row, as text."""
    src, dst, sport, dport, proto = (_text(frame[c]) for c in columns)
    if reverse:
        src, dst, sport, dport = dst, src, dport, sport
    return (src + "-" + dst + "-" + sport + "-" + dport + "-" + proto).to_numpy(dtype=object)


def _text(values: pd.Series) -> pd.Series:
    """Values as a Flow ID writes them: whole numbers without '.0'."""
    if pd.api.types.is_float_dtype(values):
        v = values.to_numpy(np.float64)
        if np.all(np.isfinite(v) & (v == np.round(v))):
            return pd.Series(v.astype(np.int64).astype(str), index=values.index)
    return values.astype(str)
