"""Evaluates two trivial generators on a real flow table, next to the real reference.

The rows with +-inf are dropped and the table is split 50/50, stratified by
the label (seed 0), as in the peers' benchmark (shared/docs/peers.md). The
generators draw as many rows as the training half holds.

python -m experiments.eval_trivial_baselines \
  --data=../shared/data/cicids2017_mlcve_sample_grouped7.csv.gz --out=/tmp/eval_baselines
"""

import os

import numpy as np
from absl import app, flags, logging

from experiments import SHARED_DATA
from flowjax.eval import evaluate, write_report
from flowjax.eval.baselines import independent_marginals, noisy_copies, split_holdout
from flowjax.io import load_flows

flags.DEFINE_string(
    "data", str(SHARED_DATA / "cicids2017_mlcve_sample_grouped7.csv.gz"), "real flow table"
)
flags.DEFINE_string("out", None, "directory for one report folder per generator", required=True)
flags.DEFINE_integer("seed", 0, "split, generator and evaluation seed")
flags.DEFINE_float("noise", 0.05, "relative noise of the noisy-copies generator")
flags.DEFINE_integer("threads", 1, "scikit-learn threads (0: all cores)")
flags.DEFINE_integer("max_rows", 100_000, "rows per table above which tables are subsampled")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    flows = load_flows(FLAGS.data)
    schema = flows.schema
    frame = flows.frame[list(schema.sentence_columns)]
    numeric = frame.select_dtypes("number")
    frame = frame[np.isfinite(numeric.to_numpy(np.float64)).all(axis=1)].reset_index(drop=True)
    train, holdout = split_holdout(frame, label=schema.label, seed=FLAGS.seed)
    logging.info(
        "train %d rows, holdout %d rows, %d columns", len(train), len(holdout), frame.shape[1]
    )
    generators = {
        "marginals": independent_marginals(train, len(train), seed=FLAGS.seed),
        "noisy_copies": noisy_copies(
            train, len(train), categorical=schema.categorical, noise=FLAGS.noise, seed=FLAGS.seed
        ),
    }
    headlines = {}
    for name, synthetic in generators.items():
        report = evaluate(
            train, holdout, synthetic, categorical=schema.categorical, label=schema.label,
            seed=FLAGS.seed, max_rows=FLAGS.max_rows, threads=FLAGS.threads or None,
        )  # fmt: skip
        write_report(
            report, os.path.join(FLAGS.out, name), train=train, holdout=holdout, synthetic=synthetic
        )
        headlines[name] = report.headline()
        print(f"## {name}\n\n{report.to_markdown()}")
    rows = zip(*headlines.values(), strict=True)
    print("| metric | " + " | ".join(headlines) + " | real reference |")
    print("|---|" + "---|" * (len(headlines) + 1))
    for row in rows:
        cells = " | ".join(_cell(r["synthetic"]) for r in row)
        print(f"| {row[0]['metric']} | {cells} | {_cell(row[0]['reference'])} |")


def _cell(value) -> str:
    return "–" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    app.run(main)
