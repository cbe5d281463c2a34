"""Times `flowjax.eval.evaluate` on a large synthetic table and prints rows/s per metric family.

Real rows come from a flow table (NaN/inf kept, so their handling is timed);
columns are padded with noisy copies of numeric columns up to --columns; the
synthetic table is --rows rows of independent marginals. Run it alone: on 2
cores a second busy process slows scikit-learn's threads many times over.

python -m experiments.bench_eval --rows=100000 --columns=80
"""

import time

import numpy as np
from absl import app, flags

from experiments import SHARED_DATA
from flowjax.eval import evaluate
from flowjax.eval.baselines import independent_marginals, noisy_copies, split_holdout
from flowjax.io import load_flows

flags.DEFINE_string(
    "data", str(SHARED_DATA / "cicids2017_mlcve_sample_grouped7.csv.gz"), "real flow table"
)
flags.DEFINE_integer("rows", 100_000, "synthetic rows")
flags.DEFINE_integer("columns", 80, "columns of every table, label included")
flags.DEFINE_integer("real_rows", 0, "resample train and holdout to this many rows (0: as is)")
flags.DEFINE_integer("threads", 1, "scikit-learn threads (0: all cores)")
flags.DEFINE_integer("seed", 0, "seed")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    flows = load_flows(FLAGS.data)
    frame = flows.frame[list(flows.schema.sentence_columns)].copy()
    numeric = [c for c in frame.columns if c not in flows.schema.categorical]
    rng = np.random.default_rng(FLAGS.seed)
    for i in range(max(0, FLAGS.columns - frame.shape[1])):
        source = frame[numeric[i % len(numeric)]].to_numpy(np.float64)
        frame[f"extra_{i}"] = source * rng.lognormal(0.0, 0.1, len(frame))
    train, holdout = split_holdout(frame, label=flows.schema.label, seed=FLAGS.seed)
    if FLAGS.real_rows:
        cats = flows.schema.categorical
        train = noisy_copies(train, FLAGS.real_rows, categorical=cats, seed=FLAGS.seed)
        holdout = noisy_copies(holdout, FLAGS.real_rows, categorical=cats, seed=FLAGS.seed + 1)
    synthetic = independent_marginals(train, FLAGS.rows, seed=FLAGS.seed)
    start = time.perf_counter()
    report = evaluate(
        train, holdout, synthetic, categorical=flows.schema.categorical,
        label=flows.schema.label, seed=FLAGS.seed, threads=FLAGS.threads or None,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    print(
        f"synthetic {len(synthetic):,} x {synthetic.shape[1]}, train {len(train):,},"
        f" holdout {len(holdout):,}: {seconds:.1f} s, {len(synthetic) / seconds:,.0f} rows/s"
    )
    for name, section in report.sections.items():
        print(f"  {name:10s} {section.seconds:7.1f} s")
    print(f"sampling: {report.sampling}")


if __name__ == "__main__":
    app.run(main)
