"""Generates synthetic flows from a training checkpoint into CSV, Parquet or Parquet shards.

python -m experiments.generate --workdir=runs/rnn_paper --num_flows=10000000 --out=out/rnn_10m
python -m experiments.generate --workdir=runs/rnn --num_flows=10000 --out=ddos.csv \
    --condition="Label=DDoS" --strategy=top_p --top_p=0.95
python -m experiments.generate --workdir=runs/rnn --num_flows=50000 --out=infiltration.csv \
    --class_balance='{"Infiltration": 1}'

Every output has the input's columns, order and dtypes; <out>.schema.json says how each
column was produced (modelled, computed from a relation, constant, row index) and which
could not be (IP addresses, timestamps).

An --out ending in .csv, .csv.gz or .parquet is one file; anything else is a directory
of Parquet shards that a rerun with the same flags resumes.
"""

import jax
from absl import app, flags, logging

from experiments import processes
from flowjax import checkpoint, generate, sampling

flags.DEFINE_string("workdir", None, "training run directory (holding checkpoints/)")
flags.DEFINE_integer("num_flows", 10_000, "number of flows to generate")
flags.DEFINE_integer("batch_size", 4096, "rows per device chunk (all devices together)")
flags.DEFINE_string("out", None, "output .csv/.csv.gz/.parquet file, or a shard directory")
flags.DEFINE_integer("seed", 0, "root seed; row r's symbols depend only on (seed, r)")
flags.DEFINE_string("condition", "", "fixed columns, e.g. 'Label=DDoS,Protocol=6'")
flags.DEFINE_string("class_balance", "real",
                    "label shares: 'real' (training shares), 'uniform' (exact), or a JSON object "
                    "of class: share, e.g. '{\"Infiltration\": 1}' (exact)")  # fmt: skip
flags.DEFINE_enum("strategy", "temperature", ["greedy", "temperature", "top_k", "top_p"],
                  "sampling strategy")  # fmt: skip
flags.DEFINE_float("temperature", 1.0, "softmax temperature")
flags.DEFINE_integer("top_k", 40, "k for --strategy=top_k")
flags.DEFINE_float("top_p", 0.95, "p for --strategy=top_p")
flags.DEFINE_integer("shard_rows", 1 << 20, "rows per Parquet shard in directory mode")
flags.DEFINE_bool(
    "csv_safe", False,
    "CSV only: prefix text cells that start with = + - @ with ' so that a spreadsheet shows "
    "them instead of running them (OWASP CSV injection)",
)  # fmt: skip
flags.DEFINE_integer("flows_per_stream", None, "trace-mode models: flows per generated "
                     "stream (default 512); --batch_size counts streams")  # fmt: skip
flags.DEFINE_bool("verbose", False, "also show orbax's INFO logs")
flags.mark_flags_as_required(["workdir", "out"])
flags.register_validator("batch_size", lambda n: n >= 1, "--batch_size must be >= 1")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.verbose:
        checkpoint.quiet_orbax_logs()
    processes.initialize()
    logging.info("jax %s, devices %s, process %d", jax.__version__, jax.devices(),
                 jax.process_index())  # fmt: skip
    strategy = sampling.strategy_from_flags(FLAGS.strategy, temperature=FLAGS.temperature,
                                            top_k=FLAGS.top_k, top_p=FLAGS.top_p)  # fmt: skip
    path = generate.generate_to_files(
        FLAGS.workdir,
        FLAGS.num_flows,
        FLAGS.out,
        seed=FLAGS.seed,
        condition=generate.parse_condition(FLAGS.condition),
        class_balance=generate.parse_class_balance(FLAGS.class_balance),
        batch_size=FLAGS.batch_size,
        strategy=strategy,
        shard_rows=FLAGS.shard_rows,
        csv_safe=FLAGS.csv_safe,
        flows_per_stream=FLAGS.flows_per_stream,
    )
    logging.info("wrote %d flows to %s", FLAGS.num_flows, path)


if __name__ == "__main__":
    app.run(main)
