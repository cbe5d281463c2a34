"""The whole path as library code: load -> train -> generate -> evaluate -> report, per model.

`experiments/run.py` (the main job) and `experiments/paper_table2.py` (the
paper's experiment with baselines) are thin shells over `run_model`. Neural
models train through `flowjax.train`; the count baselines (marginals, bigram)
are fitted in memory; all of them then go through the same tokenizer, sampler,
decoder and evaluation report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import ml_collections
import pandas as pd
from absl import logging
from flax import nnx

from flowjax import configs, generate, largedata, parallel, table, traces, train
from flowjax import data as fjdata
from flowjax import eval as fjeval
from flowjax.eval.privacy import addresses_of
from flowjax.io import load_flows
from flowjax.models import ngram
from flowjax.tokenizer import FlowTokenizer

BASELINES = {"marginals": ngram.Marginals, "bigram": ngram.Bigram}


@dataclasses.dataclass
class RealTables:
    """The real rows a run trains on and the held-out rows it never sees, as decoded columns."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    label: str | None
    categorical: tuple[str, ...]


@dataclasses.dataclass
class ModelResult:
    """What `run_model` measured for one model: training metrics, timings and the reports."""

    name: str
    train_metrics: dict
    seconds: dict
    reports: dict  # number of synthetic flows -> EvalReport
    synthetic: pd.DataFrame  # the generated table, every output column
    schema: object = None  # the tokenizer's schema (flowjax.schema.Schema)
    tokens: dict | None = None  # how each modelled column is tokenized (`token_kinds`)
    prepared: fjdata.Prepared | None = None  # the data the model trained on (its splits)


def scored_columns(tok: FlowTokenizer) -> tuple[list[str], tuple[str, ...], str | None]:
    """(columns, categorical columns, label) that evaluation compares for a tokenizer's tables.

    The columns generated tables have, but row-index columns: they count rows, and say
    nothing about flows.
    """
    schema = tok.schema
    fills = dict(schema.fills)
    columns = [c for c in table.output_columns(schema) if fills.get(c, {}).get("how") != "index"]
    categorical = tuple(
        c
        for c in columns
        if schema.kind(c) in ("categorical", "label") or schema.dtype(c) == "string"
    )
    if tok.mode == "paper":  # the pooled alphabet treats ports and flags as numbers
        categorical = tuple(c for c in categorical if c == schema.label)
    return columns, categorical, schema.label if schema.label in tok.columns else None


def real_tables(prepared: fjdata.Prepared) -> RealTables:
    """The real training and held-out (test split) rows, in the columns evaluation compares."""
    columns, categorical, label = scored_columns(prepared.tokenizer)
    if isinstance(prepared, largedata.LargePrepared):  # the bounded sample's rows of each split
        train, holdout = (largedata.sample_part(prepared, p)[columns] for p in ("train", "test"))
        return RealTables(train=train, holdout=holdout, label=label, categorical=categorical)
    frame = prepared.frame[columns]
    splits = prepared.splits
    return RealTables(
        train=frame.iloc[splits.train_idx].reset_index(drop=True),
        holdout=frame.iloc[splits.test_idx].reset_index(drop=True),
        label=label,
        categorical=categorical,
    )


def model_config(family: str, preset: str) -> ml_collections.ConfigDict:
    """The config of a model family's preset; a count baseline takes the RNN preset's data settings.

    Baselines share the data, split and tokenizer settings of the neural preset they are
    compared with, so every row of a table is scored against the same real held-out rows.
    """
    if family not in (*configs.FAMILIES, *BASELINES):
        raise ValueError(f"unknown model family {family!r}; known: "
                         f"{', '.join((*configs.FAMILIES, *BASELINES))}")  # fmt: skip
    config = configs.get_config("rnn" if family in BASELINES else family, preset)
    if family in BASELINES:
        config.model = ml_collections.ConfigDict({"name": family})
    return config


def fit(
    config: ml_collections.ConfigDict, data: str | os.PathLike, workdir: str | os.PathLike
) -> tuple[generate.Generator, fjdata.Prepared, dict]:
    """Trains (or, for a baseline, counts) the configured model and returns a generator for it."""
    mesh = parallel.make_mesh()
    name = config.model.name
    if name in BASELINES:
        if traces.settings(config) is not None:
            raise ValueError(f"the {name} baseline models single flows; trace mode (config."
                             "data.trace) is for the rnn, transformer and wavenet")  # fmt: skip
        prepared = fjdata.prepare_data(config, data)
        tok = prepared.tokenizer
        model = BASELINES[name](vocab_size=tok.vocab_size, seq_len=tok.seq_len)
        ngram.fit_counts(model, prepared.splits.train)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        local = parallel.make_mesh(jax.local_devices())  # each process samples on its own
        gen = generate.Generator(graphdef, params, rest, tokenizer=tok, mesh=local)
        val = prepared.splits.val
        nats = float(train.sequence_loss(model(val[:, :-1]), val[:, 1:]).mean())
        return (
            gen,
            prepared,
            {
                "model": name,
                "num_params": int(model.table.size),
                "val_loss": nats,
                "val_bits_per_column": nats / (tok.seq_len - 1) / math.log(2),
            },
        )
    metrics, prepared = train.train_model(config, workdir, data=data, mesh=mesh)
    return generate.load_generator(workdir), prepared, metrics


def original_addresses(config: ml_collections.ConfigDict, data: str | os.PathLike) -> set | None:
    """The real addresses of a pseudonymised run's table (for the privacy count), else None."""
    if not config.data.get("pseudonymise_key_file"):
        return None
    flows = load_flows(data, label=config.data.label or None, derive=False, identities=False)
    return addresses_of(flows.frame)


def run_model(
    config: ml_collections.ConfigDict,
    *,
    data: str | os.PathLike,
    workdir: str | os.PathLike,
    num_flows: tuple[int, ...] = (1_000, 100_000),
    seed: int = 0,
    eval_kwargs: dict | None = None,
    report_dir: str | os.PathLike | None = None,
) -> ModelResult:
    """Fits one model, generates each size in `num_flows`, evaluates every sample.

    The smaller samples get the paper's inlier test only (the study scored 1,000
    flows); the largest gets the full report, written to `report_dir` if given.
    """
    t0 = time.perf_counter()
    gen, prepared, metrics = fit(config, data, workdir)
    t1 = time.perf_counter()
    real = real_tables(prepared)
    largest = max(num_flows)
    synthetic = generate.generate(gen, largest, seed=seed)
    scored = synthetic[list(real.train.columns)]
    t2 = time.perf_counter()
    reports = {}
    leaks = original_addresses(config, data)
    common = dict(categorical=real.categorical, label=real.label, seed=seed,
                  real_addresses=leaks, **(eval_kwargs or {}))  # fmt: skip
    for n in sorted(num_flows):
        sample = scored.iloc[:n]
        if n == largest:
            reports[n] = fjeval.evaluate(real.train, real.holdout, sample, **common)
        else:
            reports[n] = fjeval.evaluate(real.train, real.holdout, sample, sections=("inliers",),
                                         ocsvm_protocols=("paper_poly",), **common)  # fmt: skip
    t3 = time.perf_counter()
    if report_dir is not None:
        fjeval.write_report(reports[largest], report_dir, train=real.train,
                            holdout=real.holdout, synthetic=scored)  # fmt: skip
    seconds = {"train": t1 - t0, "generate": t2 - t1, "evaluate": t3 - t2}
    logging.info("%s: train %.1f s, generate %.1f s, evaluate %.1f s",
                 config.model.name, *seconds.values())  # fmt: skip
    return ModelResult(config.model.name, metrics, seconds, reports, synthetic,
                       gen.tokenizer.schema, gen.tokenizer.token_kinds(), prepared)  # fmt: skip


def summary_row(result: ModelResult) -> dict:
    """The headline numbers of one model for a comparison table."""
    sizes = sorted(result.reports)
    full = result.reports[sizes[-1]]

    def get(section, metric, which="synthetic"):
        try:
            return full.value(section, metric, which)
        except ValueError:
            return None

    poly = "OCSVM inlier % (paper code: poly-2, raw)"
    row = {
        "model": result.name,
        "val bits/column": result.train_metrics.get("val_bits_per_column"),
        **{f"inlier % poly ({n:,})": result.reports[n].value("inliers", poly) for n in sizes},
        "inlier % poly (real holdout)": full.value("inliers", poly, "reference"),
        "inlier % RBF": get("inliers", "OCSVM inlier % (robust: log1p+scaled, RBF)"),
        "detection AUC": get("detection", "detection ROC AUC"),
        "column shape": get("fidelity", "column shape (1-KS / 1-TVD)"),
        "k-NN recall": get("coverage", "k-NN recall"),
        "TSTR macro-F1": get("utility", "TSTR macro-F1"),
        "TSTR/TRTR": get("utility", "TSTR / TRTR macro-F1"),
        "train s": result.seconds["train"],
        "generate s": result.seconds["generate"],
        "evaluate s": result.seconds["evaluate"],
    }
    return row


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table of dict rows (same keys), numbers to 3 significant places."""
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [_cell(row[k]) for k in keys]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=1, default=float)
