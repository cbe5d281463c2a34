"""Trace mode: a capture is a document and a flow a sentence in it.

With `config.data.trace.enabled` the flows are sorted by start time (grouped into
sessions by the `group_by` column first, if given), the timestamp becomes the gap from
the previous flow of the stream (0 at a session's first flow), and the stream is cut
into windows of `window_flows` consecutive flows: a training row is a window's
sentences laid end to end, int32[window_flows * seq_len]. The windows, not the flows,
are split into train/validation/test (seeded, as in row mode), so every split holds
whole stretches of the capture from all of its time. The models read the stream: the
GRU carries its state from flow to flow, the Transformer attends to the previous
`context_flows` flows (`models.build_model(context=...)`), the WaveNet's receptive
field spans them; the sampler draws a stream of any length per batch row.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np
import pandas as pd

from flowjax import timefmt
from flowjax.codecs import SKETCH_POINTS
from flowjax.netcodecs import TimeCodec
from flowjax.schema import Schema
from flowjax.tokenizer import FlowTokenizer


@dataclasses.dataclass(frozen=True)
class TraceSettings:
    """`config.data.trace`, checked."""

    window_flows: int
    context_flows: int
    group_by: str

    def __post_init__(self):
        if self.window_flows < 2 or self.context_flows < 1:
            raise ValueError(f"config.data.trace: window_flows must be >= 2 and context_flows "
                             f">= 1, got {self.window_flows}, {self.context_flows}")  # fmt: skip


def settings(config: ml_collections.ConfigDict | dict) -> TraceSettings | None:
    """The run's trace settings, or None in row mode."""
    trace = dict(config["data"].get("trace") or {})
    if not trace.get("enabled", False):
        return None
    return TraceSettings(int(trace["window_flows"]), int(trace["context_flows"]),
                         str(trace.get("group_by") or ""))  # fmt: skip


def model_context(config: ml_collections.ConfigDict | dict, seq_len: int) -> int:
    """Positions a trace-mode model sees back (`context_flows` sentences); 0 in row mode."""
    trace = settings(config)
    return trace.context_flows * seq_len if trace else 0


def with_gaps(schema: Schema) -> Schema:
    """The schema with its timestamp columns modelled as gaps between consecutive flows."""
    encodings = tuple(
        (c, {**e, "gaps": True} if e.get("how") == "time" else e) for c, e in schema.encodings
    )
    return dataclasses.replace(schema, encodings=encodings)


def time_column(schema: Schema) -> str | None:
    """The first timestamp column the schema models, or None."""
    return next((c for c, e in schema.encodings if e.get("how") == "time"), None)


def stream_order(frame: pd.DataFrame, schema: Schema, group_by: str = "") -> np.ndarray:
    """Row indices in stream order: by start time (within sessions of `group_by`), stably."""
    if group_by and group_by not in frame.columns:
        raise ValueError(f"config.data.trace.group_by: no column {group_by!r}; columns: "
                         f"{list(frame.columns)}")  # fmt: skip
    keys = []
    col = time_column(schema)
    if col is not None:
        fmt = timefmt.TimeFormat.from_dict(schema.encoding(col)["format"])
        keys.append(timefmt.parse(frame[col], fmt))
    if group_by:
        keys.append(pd.factorize(frame[group_by].astype(str), sort=True)[0])
    if not keys:
        return np.arange(len(frame))
    return np.lexsort(keys)  # the last key (the session) sorts first


def session_starts(frame: pd.DataFrame, group_by: str) -> np.ndarray:
    """bool[N]: the first flow of each session of a stream-ordered table (row 0 always)."""
    first = np.zeros(len(frame), bool)
    first[:1] = True
    if group_by:
        key = frame[group_by].astype(str).to_numpy()
        first[1:] = key[1:] != key[:-1]
    return first


def encode_stream(tok: FlowTokenizer, frame: pd.DataFrame, group_by: str) -> np.ndarray:
    """Sentences int32[N, 1 + F] of a stream-ordered table; a session's first gap is 0."""
    tokens = tok.encode(frame)
    first = session_starts(frame, group_by)
    for j, codec in enumerate(tok.codecs):
        if isinstance(codec, TimeCodec) and codec.gaps:
            tokens[first, j + 1] = codec.encode(np.zeros(int(first.sum())))
    return tokens


def fit_starts(tok: FlowTokenizer, frame: pd.DataFrame, group_by: str) -> None:
    """Gives each gap codec the quantiles of the sessions' start times (generated streams
    start at draws from them; without sessions, every stream starts at the capture's start)."""
    first = session_starts(frame, group_by)
    q = np.linspace(0.0, 1.0, 4 * SKETCH_POINTS - 3)
    for codec in tok.codecs:
        if isinstance(codec, TimeCodec) and codec.gaps:
            fmt = timefmt.TimeFormat.from_dict(codec.fmt)
            seconds = timefmt.parse(frame[codec.name][first], fmt)
            codec.starts = np.quantile(seconds, q).tolist() if group_by else [codec.origin]


def window_count(n_flows: int, window_flows: int) -> int:
    """Windows of `window_flows` flows in a stream of `n_flows` (the last flows that fill no
    window are left out); at least 3, one per split."""
    n = n_flows // window_flows
    if n < 3:
        raise ValueError(f"trace mode needs at least 3 windows of {window_flows} flows; the "
                         f"table has {n_flows} flows (lower data.trace.window_flows)")  # fmt: skip
    return n


def windows(tokens: np.ndarray, n_windows: int) -> np.ndarray:
    """The first n_windows windows of a stream's sentences int32[N, 1 + F], each row the
    window's sentences end to end: int32[n_windows, N // n_windows * (1 + F)]."""
    flows = len(tokens) // n_windows
    return tokens[: n_windows * flows].reshape(n_windows, -1)


def stream_legal(legal_mask: np.ndarray, flows: int) -> np.ndarray:
    """The legal mask of a stream of `flows` sentences: bool[flows * (1 + F), V]."""
    return np.tile(legal_mask, (flows, 1))
