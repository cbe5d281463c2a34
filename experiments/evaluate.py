"""Evaluates a synthetic flow table against real training and held-out tables.

Writes report.json, report.md (headline: metric, synthetic, real reference)
and PNG figures into --out. The schema (categorical columns, label) is the one
`flowjax.io.load_flows` infers from the training table.

python -m experiments.evaluate --train=train.csv --holdout=holdout.csv \
  --synthetic=synthetic.csv --out=/tmp/eval
"""

from absl import app, flags, logging

from flowjax.eval import evaluate, write_report
from flowjax.io import load_flows

flags.DEFINE_string("train", None, "real training table (CSV, CSV.gz, Parquet)", required=True)
flags.DEFINE_string("holdout", None, "real held-out table, never seen by the generator",
                    required=True)  # fmt: skip
flags.DEFINE_string("synthetic", None, "generated table", required=True)
flags.DEFINE_string("out", None, "output directory", required=True)
flags.DEFINE_string("label", None, "label column (default: inferred from the dialect)")
flags.DEFINE_integer("seed", 0, "seed of every subsample and classifier")
flags.DEFINE_integer("threads", 1, "scikit-learn threads (0: all cores)")
flags.DEFINE_integer("max_rows", 100_000, "rows per table above which tables are subsampled")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    train = load_flows(FLAGS.train, label=FLAGS.label)
    holdout = load_flows(FLAGS.holdout, label=FLAGS.label)
    synthetic = load_flows(FLAGS.synthetic, label=FLAGS.label)
    schema = train.schema
    shared = set(holdout.frame.columns) & set(synthetic.frame.columns)
    report = evaluate(
        train.frame, holdout.frame, synthetic.frame,
        categorical=[c for c in schema.categorical if c in shared],
        label=schema.label, seed=FLAGS.seed, max_rows=FLAGS.max_rows, threads=FLAGS.threads or None,
    )  # fmt: skip
    write_report(
        report, FLAGS.out, train=train.frame, holdout=holdout.frame, synthetic=synthetic.frame
    )
    for flag in report.flags:
        logging.warning("%s", flag)
    print(report.to_markdown())


if __name__ == "__main__":
    app.run(main)
