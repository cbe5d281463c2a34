"""The data path up to the model: load -> split -> tokenize -> encode -> batches.

`prepare_data` (or `load_table` then `encode_table`) turns a flow file into a `Prepared`
run: the table, its schema, the fitted tokenizer and the train/val/test sentences, split
by a seeded stratified split. Batches are a pure function of the seed and the step, so
a run resumed from a checkpoint at step s sees exactly the batches an uninterrupted run
would. `data_fingerprint` says which table a run trained on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import pandas as pd
from absl import logging

from flowjax import addresses, traces
from flowjax.io import BadValuePolicy, load_flows
from flowjax.privacy import budget
from flowjax.privacy import tokenizer as private_tokenizer
from flowjax.schema import Schema
from flowjax.tokenizer import FlowTokenizer


@dataclasses.dataclass(frozen=True)
class Splits:
    """Train/validation/test sentences, each int32[n, 1 + F], and the row indices they came from.

    In trace mode a row is a window of consecutive flows, int32[n, window_flows * (1 + F)],
    and the indices are those of the flows of a split's windows.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray


def split_indices(
    n: int,
    labels: np.ndarray | None = None,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits row indices 0..n-1 into train/val/test, stratified by `labels` when given.

    Every class with at least three rows gets at least one row in each part
    whose fraction is non-zero, so rare attack classes appear in every split.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1: {fractions}")
    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    rng = np.random.default_rng(seed)
    if labels is not None and pd.isna(labels).any():  # a missing label (Zeek's "-"): a stratum
        labels = np.asarray([str(x) for x in labels], dtype=object)
    groups = [np.arange(n)] if labels is None else [
        np.flatnonzero(labels == c) for c in np.unique(labels)
    ]  # fmt: skip
    parts: list[list[np.ndarray]] = [[], [], []]
    for rows in groups:
        rows = rng.permutation(rows)
        n_val = int(round(fractions[1] * len(rows)))
        n_test = int(round(fractions[2] * len(rows)))
        if len(rows) >= 3:
            n_val = max(n_val, int(fractions[1] > 0))
            n_test = max(n_test, int(fractions[2] > 0))
        n_train = len(rows) - n_val - n_test
        parts[0].append(rows[:n_train])
        parts[1].append(rows[n_train : n_train + n_val])
        parts[2].append(rows[n_train + n_val :])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)


def split_tokens(
    tokens: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Splits:
    """Splits sentences int32[N, 1 + F] into train/val/test (stratified by labels if given)."""
    if labels is not None and len(labels) != len(tokens):
        raise ValueError(f"{len(labels)} labels for {len(tokens)} sentences")
    tr, va, te = split_indices(len(tokens), labels, fractions=fractions, seed=seed)
    return Splits(tokens[tr], tokens[va], tokens[te], tr, va, te)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng((seed, epoch)).permutation(n)


def batch_indices(n: int, *, step: int, batch_size: int, seed: int) -> np.ndarray:
    """The training rows of step `step`: positions `step * batch_size ...` of the epoch order.

    Args:
      n: the number of training sentences.
      step: the global training step (0-based).
      batch_size: the global batch size.
      seed: the data seed; epoch e is shuffled by the generator seeded (seed, e).

    Returns:
      int64[batch_size] row indices into the training sentences.
    """
    if n == 0:
        raise ValueError("no training sentences")
    flat = step * batch_size + np.arange(batch_size)
    epochs, pos = np.divmod(flat, n)
    rows = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        rows[sel] = _epoch_permutation(seed, int(e), n)[pos[sel]]
    return rows


def get_batch(tokens: np.ndarray, *, step: int, batch_size: int, seed: int) -> np.ndarray:
    """The batch of training step `step` (`batch_indices`): int32[batch_size, 1 + F].

    `tokens` is int32[N, 1 + F] (or a memory-mapped token file, read row by row).
    """
    rows = batch_indices(len(tokens), step=step, batch_size=batch_size, seed=seed)
    return np.asarray(tokens[rows], dtype=np.int32)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The tokenized data of a run, and the loaded table its rows come from."""

    tokenizer: FlowTokenizer
    schema: Schema
    splits: Splits
    frame: pd.DataFrame  # row i of the table is sentence i; the splits index into it
    private_rows: int = 0  # DP: training rows before those the DP tokenizer cannot encode


def load_table(
    config: ml_collections.ConfigDict, data: str | os.PathLike
) -> tuple[pd.DataFrame, Schema]:
    """Loads the flows of `data` and subsamples `config.data.fraction` of them (the run's table)."""
    dc = config.data
    if not 0 < dc.fraction <= 1:
        raise ValueError(f"config.data.fraction must be in (0, 1], got {dc.fraction}")
    flows = load_flows(data, label=dc.label or None, policy=BadValuePolicy(nonfinite=dc.nonfinite),
                       derive=dc.derive, identities=dc.get("identities", False),
                       pseudonymise_key=pseudonymisation_key(config))  # fmt: skip
    frame = flows.frame
    if dc.fraction < 1:
        frame = frame.sample(frac=dc.fraction, random_state=dc.split_seed).reset_index(drop=True)
    return frame, flows.schema


def pseudonymisation_key(config: ml_collections.ConfigDict) -> bytes | None:
    """The Crypto-PAn key read from `config.data.pseudonymise_key_file` (None: no file set).

    The file holds a passphrase (its SHA-256 is the key); only its path is in the config,
    so checkpoints never hold the key.
    """
    path = config.data.get("pseudonymise_key_file") or ""
    if not path:
        return None
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the pseudonymisation key file ({e})") from e
    if not text:
        raise ValueError(f"{path}: the pseudonymisation key file is empty")
    return addresses.key_from_text(text)


def encode_table(
    config: ml_collections.ConfigDict,
    frame: pd.DataFrame,
    schema: Schema,
    *,
    source: str | os.PathLike,
    tokenizer_json: str | None = None,
    schema_json: str | None = None,
) -> Prepared:
    """Splits the table, fits the tokenizer (or reuses `tokenizer_json`), encodes every split.

    Under differential privacy (`config.dp`) the tokenizer and schema come from
    `flowjax.privacy.tokenizer.fit_private` (a resumed run reuses `tokenizer_json` and the
    stored `schema_json`, else the tokenizer's own schema), and rows the DP tokenizer cannot
    encode are dropped from every split. A ValueError (too few rows, a value the reused
    tokenizer never saw, DP in trace mode) names `source`.
    """
    dc = config.data
    trace = traces.settings(config)
    private = budget.enabled(config)
    if private and trace is not None:
        raise ValueError(f"{source}: differential privacy (config.dp) does not support trace "
                         "mode (config.data.trace) yet")  # fmt: skip
    if trace is not None:
        return _encode_stream(config, trace, frame, schema, source=source,
                              tokenizer_json=tokenizer_json)  # fmt: skip
    labels = frame[schema.label].to_numpy() if schema.label else None
    private_rows = 0
    try:
        tr, va, te = split_indices(len(frame), labels, fractions=tuple(dc.split),
                                   seed=dc.split_seed)  # fmt: skip
        if private and tokenizer_json is None:
            nm, dthr = budget.tokenizer_mechanism(config, n_rows=len(tr))
            tok, schema = private_tokenizer.fit_private(
                config, frame.iloc[tr], schema, noise_multiplier=nm, delta_threshold=dthr,
                seed=budget.noise_seed(config),
            )  # fmt: skip
        elif private:  # a resumed DP run: the stored schema, never the table's own
            tok = FlowTokenizer.from_json(tokenizer_json)
            schema = Schema.from_json(schema_json) if schema_json is not None else tok.schema
        else:
            tok = _tokenizer(config, frame.iloc[tr], schema, frame, tokenizer_json)
        if private:  # rows with a value the DP vocabulary lacks leave every split
            keep = private_tokenizer.encodable(tok, frame)
            logging.info("DP tokenizer: dropped %s of %s train/val/test rows it cannot encode",
                         [int((~keep[p]).sum()) for p in (tr, va, te)],
                         [len(p) for p in (tr, va, te)])  # fmt: skip
            private_rows = len(tr)  # what the guarantee covers, before the filter
            tr, va, te = (p[keep[p]] for p in (tr, va, te))
            tokens = np.zeros((len(frame), tok.seq_len), dtype=np.int32)
            tokens[keep] = tok.encode(frame[keep])
        else:
            tokens = tok.encode(frame)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e
    splits = Splits(tokens[tr], tokens[va], tokens[te], tr, va, te)
    return Prepared(tok, schema, splits, frame, private_rows=private_rows)


def _tokenizer(
    config: ml_collections.ConfigDict,
    train: pd.DataFrame,
    schema: Schema,
    whole: pd.DataFrame,
    tokenizer_json: str | None,
) -> FlowTokenizer:
    """The tokenizer fitted on the training rows (vocabulary: the whole table), or restored."""
    if tokenizer_json is not None:
        return FlowTokenizer.from_json(tokenizer_json)
    tc = config.tokenizer
    tok = FlowTokenizer(mode=tc.mode, n_bins=tc.n_bins, exact_integers=tc.exact_integers,
                        two_level=tc.get("two_level", False),
                        port_ranges=tc.get("port_ranges", False))  # fmt: skip
    return tok.fit(train, schema, vocabulary=whole)


def _encode_stream(
    config: ml_collections.ConfigDict,
    trace: traces.TraceSettings,
    frame: pd.DataFrame,
    schema: Schema,
    *,
    source: str | os.PathLike,
    tokenizer_json: str | None,
) -> Prepared:
    """Trace mode: the table in stream order, cut into windows; the windows are split."""
    dc = config.data
    schema = traces.with_gaps(schema)
    frame = frame.iloc[traces.stream_order(frame, schema, trace.group_by)].reset_index(drop=True)
    try:
        n_windows = traces.window_count(len(frame), trace.window_flows)
        parts = split_indices(n_windows, fractions=tuple(dc.split), seed=dc.split_seed)
        flows = np.arange(n_windows * trace.window_flows).reshape(n_windows, -1)
        tr, va, te = (np.sort(flows[p].ravel()) for p in parts)
        tok = _tokenizer(config, frame.iloc[tr], schema, frame, tokenizer_json)
        if tokenizer_json is None:
            traces.fit_starts(tok, frame, trace.group_by)
        rows = traces.windows(traces.encode_stream(tok, frame, trace.group_by), n_windows)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e
    splits = Splits(rows[parts[0]], rows[parts[1]], rows[parts[2]], tr, va, te)
    return Prepared(tok, schema, splits, frame)


def prepare_data(
    config: ml_collections.ConfigDict, data: str | os.PathLike, *, tokenizer_json: str | None = None
) -> Prepared:
    """Loads flows, subsamples `config.data.fraction`, splits, fits the tokenizer, encodes.

    The tokenizer's bins come from the training split, its vocabulary (categories, NaN
    and Infinity tokens) from the whole table, so every split encodes.

    Args:
      config: the run config (uses `data` and `tokenizer`).
      data: a flow file or a dataset name (`flowjax.io.load_flows`).
      tokenizer_json: a fitted tokenizer to reuse (a resumed run), instead of fitting.

    Returns:
      The tokenizer, schema, train/val/test sentences int32[n, 1 + F] and the table.
    """
    frame, schema = load_table(config, data)
    return encode_table(config, frame, schema, source=data, tokenizer_json=tokenizer_json)


class Fingerprinter:
    """`data_fingerprint` of a table given batch by batch, in row order (the out-of-core path)."""

    def __init__(self, columns) -> None:
        self.columns = [str(c) for c in columns]
        self.rows = 0
        self._digest = hashlib.sha256(json.dumps(self.columns).encode())

    def update(self, frame: pd.DataFrame) -> None:
        """Adds the next rows of the table."""
        self._digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        self.rows += len(frame)

    def result(self, source: str | os.PathLike) -> dict[str, Any]:
        """The fingerprint of the rows added so far."""
        return {"rows": self.rows, "columns": self.columns, "sha256": self._digest.hexdigest(),
                "source": str(source)}  # fmt: skip


def data_fingerprint(frame: pd.DataFrame, source: str | os.PathLike) -> dict[str, Any]:
    """What a run trained on: row count, columns, a SHA-256 of the table's contents, the source."""
    fingerprinter = Fingerprinter(frame.columns)
    fingerprinter.update(frame)
    return fingerprinter.result(source)
