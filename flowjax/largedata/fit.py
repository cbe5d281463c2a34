"""The out-of-core fit: a bounded sample for the schema and the bins, streamed counts for
the vocabulary, then the ordinary `FlowTokenizer.fit`.

`collect_sample` keeps the rows of least sample key (`rows.sample_hash`, a pure function of
the seed and the row index, so the sample does not depend on the batch size) and infers
the schema on them as `load_flows` infers it on a whole table. `survey` streams every
batch: it checks the sample's schema and relations on it (`checks`), counts what the
vocabulary needs (`vocab`), counts the rows of each split and hashes the table's contents
as `data.data_fingerprint` does. `fit_tokenizer` fits on the sample's training rows with
the streamed vocabulary.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator

import ml_collections
import numpy as np
import pandas as pd
import tqdm
from absl import logging

from flowjax import data as fjdata
from flowjax import io
from flowjax.identities import pseudonymise, with_identities
from flowjax.largedata import checks, reader, rows, vocab
from flowjax.schema import Schema
from flowjax.tokenizer import FlowTokenizer


@dataclasses.dataclass(frozen=True)
class Options:
    """What the out-of-core path reads from the run config (`config.data`)."""

    label: str | None
    fraction: float
    split: tuple[float, float, float]
    seed: int
    policy: io.BadValuePolicy
    derive: bool
    identities: bool
    key: bytes | None
    sample_rows: int
    batch_rows: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, *, batch_rows: int) -> Options:
        dc = config.data
        return cls(label=dc.label or None, fraction=float(dc.fraction),
                   split=rows.check_fractions(tuple(dc.split)), seed=int(dc.split_seed),
                   policy=io.BadValuePolicy(nonfinite=dc.nonfinite), derive=bool(dc.derive),
                   identities=bool(dc.get("identities", False)),
                   key=fjdata.pseudonymisation_key(config),
                   sample_rows=int(dc.get("out_of_core_sample", 200_000)),
                   batch_rows=int(batch_rows))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Sample:
    """The bounded sample: its rows (normalised, pseudonymised) and the schemas inferred on it."""

    frame: pd.DataFrame  # fresh index; row i is the table's row `rows[i]`
    rows: np.ndarray  # int64 [n] global row indices, ascending
    numeric_text: tuple[str, ...]  # text columns read as numbers in every batch
    plain: Schema  # before identities
    base: Schema  # with identities, before relations
    candidate: Schema  # with the relations the sample shows


@dataclasses.dataclass(frozen=True)
class Survey:
    """What a pass over every row found."""

    schema: Schema  # the sample's, corrected by the whole table
    vocabulary: dict[str, pd.Series]  # FlowTokenizer.fit's `vocabulary=`, one stand-in a column
    split_rows: tuple[int, int, int]  # rows per split after validation
    fingerprint: dict
    report: io.ValidationReport


def collect_sample(source: reader.Scan, opts: Options) -> Sample:
    """Reads the sample's rows, checks them as `load_flows` does and infers the schema."""
    start = time.perf_counter()
    top = rows.sample_threshold(source.rows, size=opts.sample_rows, fraction=opts.fraction,
                                seed=opts.seed)  # fmt: skip
    parts = []
    for raw in reader.raw_batches(source, batch_rows=opts.batch_rows):
        idx = raw.index.to_numpy()
        take = rows.kept(idx, fraction=opts.fraction, seed=opts.seed)
        take &= rows.sample_hash(idx, seed=opts.seed) <= top
        parts.append(raw[take])
    raw = pd.concat(parts)
    del parts
    frame, report = reader.normalise(raw, source, policy=opts.policy, numeric_text=None)
    numeric_text = tuple(
        str(c).strip() for c in raw.columns
        if not pd.api.types.is_numeric_dtype(raw[c])
        and str(c).strip() in frame and pd.api.types.is_numeric_dtype(frame[str(c).strip()])
    )  # fmt: skip
    del raw
    sample_rows = frame.index.to_numpy(np.int64)
    frame, plain = io.describe_table(frame, path=source.path, report=report, label=opts.label,
                                     derive=False, identities=False,
                                     pseudonymise_key=opts.key)  # fmt: skip
    base = with_identities(frame, plain) if opts.identities else plain
    candidate = io.with_relations(frame, base) if opts.derive else base
    logging.info("%s: sample of %d rows read and described in %.1f s", source.path, len(frame),
                 time.perf_counter() - start)  # fmt: skip
    return Sample(frame, sample_rows, numeric_text, plain, base, candidate)


def batches(
    source: reader.Scan, sample: Sample, opts: Options, report: io.ValidationReport, *, desc: str
) -> Iterator[pd.DataFrame]:
    """Every kept row, checked and pseudonymised as the sample was, in batches indexed by
    file row; a progress bar counts the file's rows."""
    bar = tqdm.tqdm(total=source.rows, unit="row", unit_scale=True, desc=desc, disable=None)
    with bar:
        for raw in reader.raw_batches(source, batch_rows=opts.batch_rows):
            bar.update(len(raw))
            frame, part = reader.normalise(raw, source, policy=opts.policy,
                                           numeric_text=sample.numeric_text)  # fmt: skip
            reader.merge_reports(report, part)
            frame = frame[rows.kept(frame.index.to_numpy(), fraction=opts.fraction,
                                    seed=opts.seed)]  # fmt: skip
            if len(frame) and opts.key is not None:
                frame = pseudonymise(frame, sample.plain, opts.key)
            if len(frame):
                yield frame


def survey(
    source: reader.Scan,
    sample: Sample,
    opts: Options,
    *,
    data: str | os.PathLike,
    tokenizer: ml_collections.ConfigDict,
) -> Survey:
    """One pass over every row: schema checks, vocabulary counts, split sizes, fingerprint.

    Args:
      source: the scanned file.
      sample: the sample and its schemas.
      opts: the run's data options.
      data: the table as the run names it (the fingerprint's `source`).
      tokenizer: `config.tokenizer` (how many distinct values a number column needs).
    """
    start = time.perf_counter()
    tally = checks.SchemaTally(sample.base, sample.plain, sample.candidate.relations)
    trackers = vocab.trackers_for(sample.base, sample.frame, n_bins=tokenizer.n_bins,
                                  exact_integers=tokenizer.exact_integers)  # fmt: skip
    columns = [str(c) for c in sample.frame.columns]
    fingerprinter = fjdata.Fingerprinter(columns)
    split_rows = np.zeros(3, dtype=np.int64)
    report = io.ValidationReport(path=str(source.path))
    for frame in batches(source, sample, opts, report, desc="survey"):
        if list(frame.columns) != columns:
            raise ValueError(f"{source.path}: a batch has columns {list(frame.columns)}, the "
                             f"sample {columns}")  # fmt: skip
        tally.update(frame, source.path)
        vocab.update_all(trackers, frame, source.path)
        fingerprinter.update(frame)
        parts = rows.split_of(frame.index.to_numpy(), fractions=opts.split, seed=opts.seed)
        split_rows += np.bincount(parts, minlength=3)
    if report.rows_kept == 0:
        raise ValueError(f"{source.path}: no rows left after validation ({report.dropped})")
    schema = tally.final_schema(sample.frame, derive=opts.derive)
    dtypes = {c: sample.frame[c].dtype for c in columns}
    fingerprint = fingerprinter.result(data)
    seconds = time.perf_counter() - start
    logging.info("%s: surveyed %d rows in %.1f s (%.0f rows/s); relations kept %d of %d",
                 source.path, source.rows, seconds, source.rows / max(seconds, 1e-9),
                 len(schema.relations.lines()),
                 len(sample.candidate.relations.lines()))  # fmt: skip
    return Survey(schema, vocab.vocabulary(trackers, schema, dtypes),
                  tuple(int(n) for n in split_rows), fingerprint, report)  # fmt: skip


def fit_tokenizer(
    config: ml_collections.ConfigDict,
    sample: Sample,
    found: Survey,
    *,
    tokenizer_json: str | None = None,
) -> FlowTokenizer:
    """The tokenizer fitted on the sample's training rows, its vocabulary the whole table's
    (or restored from `tokenizer_json`)."""
    parts = rows.split_of(sample.rows, fractions=tuple(config.data.split),
                          seed=config.data.split_seed)  # fmt: skip
    train = sample.frame[parts == rows.TRAIN]
    if len(train) == 0:
        raise ValueError(f"the sample of {len(sample.frame)} rows has no training row; raise "
                         "config.data.out_of_core_sample or the train fraction")  # fmt: skip
    return fjdata._tokenizer(config, train, found.schema, found.vocabulary, tokenizer_json)
