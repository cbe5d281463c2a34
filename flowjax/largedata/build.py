"""The out-of-core data path's entry point: a flow file -> token files -> a `data.Prepared`.

`prepare` makes four passes over the file, each holding one record batch: `reader.scan`
(rows and column types), `fit.collect_sample` (the bounded sample and its schema),
`fit.survey` (schema checks, vocabulary counts, split sizes, fingerprint), then the encode
pass that appends each batch's sentences to its split's token file. A complete token
directory made from the same file with the same settings is opened instead (no pass).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import pandas as pd
from absl import logging

import flowjax
from flowjax import data as fjdata
from flowjax import datasets, io, traces
from flowjax.largedata import fit, reader, rows, tokenfile
from flowjax.privacy import budget
from flowjax.schema import Schema
from flowjax.tokenizer import FlowTokenizer

MODES = ("auto", "on", "off")
DEFAULT_BYTES = 1_000_000_000  # 'auto': files larger than this are read out of core
DEFAULT_BATCH_ROWS = 16_384


@dataclasses.dataclass(frozen=True)
class LargePrepared(fjdata.Prepared):
    """A `data.Prepared` whose splits are memory-mapped token files.

    `splits.train`/`val`/`test` are read-only memmaps uint16 (or int32) [n, 1 + F];
    `splits.*_idx` are the sentences' global row indices (data rows of the file, from 0);
    `frame` is None: the bounded sample of real rows stays on disk until `sample()` reads
    it (training needs none of it), its row i the table's row `sample_rows[i]`.
    """

    fingerprint: dict = dataclasses.field(default_factory=dict)  # as data.data_fingerprint
    token_dir: str = ""
    sample_rows: np.ndarray | None = None
    sample_split: np.ndarray | None = None  # int8 [len(sample)]: 0 train, 1 val, 2 test

    def sample(self) -> pd.DataFrame:
        """The bounded sample of real rows (read from the token directory)."""
        return pd.read_parquet(Path(self.token_dir) / tokenfile.SAMPLE)


def enabled(config: ml_collections.ConfigDict, data: str | os.PathLike) -> bool:
    """Whether `data` takes the out-of-core path: `config.data.out_of_core` 'on', or 'auto'
    (the default) and the file is larger than `config.data.out_of_core_bytes`."""
    mode = config.data.get("out_of_core", "auto")
    if mode not in MODES:
        raise ValueError(f"config.data.out_of_core must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "on"
    path = datasets.resolve(str(data))
    limit = config.data.get("out_of_core_bytes", DEFAULT_BYTES)
    return path.is_file() and path.stat().st_size > limit


def prepare(
    config: ml_collections.ConfigDict,
    data: str | os.PathLike,
    *,
    token_dir: str | os.PathLike,
    tokenizer_json: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> LargePrepared:
    """Tokenizes `data` into `token_dir` batch by batch (or reopens it) and returns the run's data.

    Args:
      config: the run config (`data` and `tokenizer`). Differential privacy, trace mode and
        data.nonfinite='clip' are refused (ValueError).
      data: a CSV, CSV.gz or Parquet file, or a dataset name (`flowjax.datasets`).
      token_dir: where the token files go; reused when complete for the same file and settings.
      tokenizer_json: a fitted tokenizer to encode with (a resumed run) instead of fitting.
      batch_rows: rows per record batch (memory, not results, depends on it).

    Returns:
      The tokenizer, the schema, memmapped splits with global row indices, the sample and
      the fingerprint of the table.
    """
    _check_supported(config, data)
    path = datasets.resolve(str(data))
    io.check_file(path)
    token_dir = Path(token_dir)
    opts = fit.Options.from_config(config, batch_rows=batch_rows)
    expected = {"source": tokenfile.source_stamp(path), "settings": _settings(config, opts)}
    meta = tokenfile.read_complete(token_dir, **expected)
    if meta is not None and tokenizer_json not in (None, _read(token_dir, meta["tokenizer"])):
        meta = None
    if meta is not None:
        logging.info("%s: reusing the token files of %s", token_dir, path)
        return _open(token_dir, meta)
    start = time.perf_counter()
    source = reader.scan(path, batch_rows=batch_rows)
    logging.info("%s: %d rows, %d columns (scanned in %.1f s)", path, source.rows,
                 len(source.names), time.perf_counter() - start)  # fmt: skip
    sample = fit.collect_sample(source, opts)
    found = fit.survey(source, sample, opts, data=data, tokenizer=config.tokenizer)
    try:
        tok = fit.fit_tokenizer(config, sample, found, tokenizer_json=tokenizer_json)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    meta = {**expected, "data": str(data), "vocab_size": tok.vocab_size,
            "tokenizer": "tokenizer.json", "schema": "schema.json",
            "fingerprint": found.fingerprint, "report": found.report.to_dict(),
            "flowjax_version": flowjax.__version__}  # fmt: skip
    texts = {"tokenizer.json": tok.to_json(), "schema.json": found.schema.to_json()}
    writer = tokenfile.Writer(token_dir, seq_len=tok.seq_len,
                              counts=dict(zip(tokenfile.SPLITS, found.split_rows, strict=True)),
                              dtype=tokenfile.token_dtype(tok.vocab_size))  # fmt: skip
    try:
        _encode(source, sample, opts, tok, writer)
        writer.commit(meta, texts, sample.frame, sample.rows)
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - start
    logging.info("%s: tokenized %d rows into %s in %.1f s (%.0f rows/s)", path, source.rows,
                 token_dir, seconds, source.rows / max(seconds, 1e-9))  # fmt: skip
    return _open(token_dir, tokenfile.read_complete(token_dir, **expected))


def _encode(
    source: reader.Scan, sample: fit.Sample, opts: fit.Options, tok: FlowTokenizer,
    writer: tokenfile.Writer,
) -> None:  # fmt: skip
    """The encode pass: every kept row's sentence appended to its split's file."""
    report = io.ValidationReport(path=str(source.path))
    for frame in fit.batches(source, sample, opts, report, desc="tokenize"):
        idx = frame.index.to_numpy(np.int64)
        try:
            tokens = tok.encode(frame)
        except ValueError as e:  # a value the streamed vocabulary missed
            raise ValueError(f"{source.path}: lines {idx[0] + 2}..{idx[-1] + 2}: {e}") from e
        parts = rows.split_of(idx, fractions=opts.split, seed=opts.seed)
        for k, name in enumerate(tokenfile.SPLITS):
            writer.write(name, tokens[parts == k], idx[parts == k])


def _open(token_dir: Path, meta: dict[str, Any]) -> LargePrepared:
    """The prepared data of a complete token directory."""
    arrays = {}
    for name, split in meta["splits"].items():
        arrays[name] = tokenfile.open_array(token_dir / split["tokens"])
        arrays[f"{name}_idx"] = tokenfile.open_array(token_dir / split["index"])
    tok = FlowTokenizer.from_json(_read(token_dir, meta["tokenizer"]))
    schema = Schema.from_json(_read(token_dir, meta["schema"]))
    sample_rows = np.load(token_dir / meta["sample_rows"])
    settings = meta["settings"]
    parts = rows.split_of(sample_rows, fractions=tuple(settings["split"]),
                          seed=settings["split_seed"])  # fmt: skip
    return LargePrepared(tokenizer=tok, schema=schema, splits=fjdata.Splits(**arrays),
                         frame=None, fingerprint=meta["fingerprint"], token_dir=str(token_dir),
                         sample_rows=sample_rows, sample_split=parts)  # fmt: skip


def sample_part(prepared: LargePrepared, part: str) -> pd.DataFrame:
    """The rows of the bounded sample in split `part` ('train', 'val' or 'test'): the real
    rows evaluation compares with (the in-memory path uses `frame.iloc[splits.<part>_idx]`)."""
    keep = prepared.sample_split == tokenfile.SPLITS.index(part)
    return prepared.sample()[keep].reset_index(drop=True)


def _settings(config: ml_collections.ConfigDict, opts: fit.Options) -> dict[str, Any]:
    """Everything the token files depend on besides the source file (JSON-comparable)."""
    tc = config.tokenizer
    return json.loads(json.dumps({
        "label": opts.label, "fraction": opts.fraction, "split": list(opts.split),
        "split_seed": opts.seed, "nonfinite": opts.policy.nonfinite, "derive": opts.derive,
        "identities": opts.identities, "sample": opts.sample_rows,
        "pseudonymise_key": None if opts.key is None else _key_id(opts.key),
        "tokenizer": {k: tc.get(k) for k in ("mode", "n_bins", "exact_integers", "two_level",
                                             "port_ranges")},
    }))  # fmt: skip


def _key_id(key: bytes) -> str:
    """Which pseudonymisation key made the files, without the key (a hash of it)."""
    return hashlib.sha256(b"flowjax token dir" + key).hexdigest()[:16]


def _check_supported(config: ml_collections.ConfigDict, data) -> None:
    if budget.enabled(config):
        raise ValueError(f"{data}: differential privacy (config.dp) is not supported out of "
                         "core; set config.data.out_of_core='off'")  # fmt: skip
    if traces.settings(config) is not None:
        raise ValueError(f"{data}: trace mode (config.data.trace) is not supported out of "
                         "core; set config.data.out_of_core='off'")  # fmt: skip
    if config.data.nonfinite == "clip":
        raise ValueError(f"{data}: data.nonfinite='clip' is not supported out of core (it "
                         "needs every row's range first); use 'token' or 'drop'")  # fmt: skip


def _read(token_dir: Path, name: str) -> str:
    return (token_dir / name).read_text()
