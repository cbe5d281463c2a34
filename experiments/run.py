"""The main job: train the default model, generate flows, evaluate them, write a report.

  python -m experiments.run                      # on the lab capture that flowjax ships
  python -m experiments.run --data=flows.csv     # on your own flow table

With several processes (--coordinator_address, --num_processes, --process_id) all of them
train; process 0 alone then generates, evaluates and writes.

Writes <workdir>/synthetic.csv (the input's columns, order and dtypes; how each column was
produced in synthetic.csv.schema.json), <workdir>/report/{report.md,report.json,*.png} and the
checkpoints under <workdir>/model; prints the headline table. Training stops at the first of:
the 3-minute budget (`--time_budget`), 5 evaluations without improvement, or the preset's
step count; generation uses the step of lowest validation loss. About 3-4 minutes on a 2-core
CPU with the defaults.
"""

from pathlib import Path

import jax
from absl import app, flags, logging

from experiments import processes
from flowjax import checkpoint, configs, files, parallel, pipeline, table
from flowjax.configs import common

flags.DEFINE_string("data", "lab", "flow table (CSV, CSV.gz, Parquet) or a shipped dataset name")
flags.DEFINE_string("workdir", "runs/main", "output directory (checkpoints, flows, report)")
flags.DEFINE_enum("model", "rnn", ["rnn", "transformer", "wavenet"], "model family")
flags.DEFINE_enum("preset", "default", ["default", "paper", "tiny"], "config preset")
flags.DEFINE_integer("steps", None, "most training steps (default: the preset's)")
flags.DEFINE_string("time_budget", "3m", "stop training after this wall time ('300', '5m', '1h'; "
                    "'0': no budget)")  # fmt: skip
flags.DEFINE_bool("keep_best", None, "generate from the checkpoint of lowest validation loss "
                  "(default: the preset's)")  # fmt: skip
flags.DEFINE_integer("patience", None, "stop after this many evaluations without improvement "
                     "(0: off; default: the preset's)")  # fmt: skip
flags.DEFINE_integer("num_flows", 10_000, "synthetic flows to generate and evaluate")
flags.DEFINE_integer("seed", 0, "generation and evaluation seed")
flags.DEFINE_bool("trace", False, "trace mode: model the flows as a stream in time order "
                  "(config.data.trace; flowjax.traces)")  # fmt: skip
flags.DEFINE_string("pseudonymise_key_file", "", "a file holding a passphrase: addresses are "
                    "replaced by keyed prefix-preserving Crypto-PAn pseudonyms before training "
                    "(config.data.pseudonymise_key_file)")  # fmt: skip
flags.DEFINE_float("epsilon", 0.0, "train with differential privacy at this total epsilon "
                   "(config.dp.epsilon; 0: off; flowjax.privacy, docs/privacy.md)")  # fmt: skip
flags.DEFINE_list("public_labels", [], "with --epsilon: the label's classes as you declare them "
                  "(config.dp.public_labels); every declared class keeps a token, while an "
                  "undeclared class held by few flows is suppressed")  # fmt: skip
flags.DEFINE_bool("verbose", False, "also show orbax's INFO logs (each checkpoint save's steps)")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    if not FLAGS.verbose:
        checkpoint.quiet_orbax_logs()
    processes.initialize()
    logging.info("jax %s on %s", jax.__version__, jax.devices())
    config = pipeline.model_config(FLAGS.model, FLAGS.preset)
    if FLAGS.steps is not None:
        configs.with_steps(config, FLAGS.steps)
    config.time_budget_s = common.parse_duration(FLAGS.time_budget)
    if FLAGS.keep_best is not None:
        config.keep_best = FLAGS.keep_best
    if FLAGS.patience is not None:
        config.early_stopping_patience = FLAGS.patience
    config.data.trace.enabled = FLAGS.trace
    config.data.pseudonymise_key_file = FLAGS.pseudonymise_key_file
    config.dp.epsilon = FLAGS.epsilon
    config.dp.public_labels = ",".join(FLAGS.public_labels)
    workdir = Path(FLAGS.workdir)
    if not parallel.is_main_process():  # trains beside process 0, which samples and reports
        pipeline.fit(config, FLAGS.data, workdir / "model")
        parallel.barrier("run_done", timeout_s=3600)
        return
    result = pipeline.run_model(
        config, data=FLAGS.data, workdir=workdir / "model", num_flows=(FLAGS.num_flows,),
        seed=FLAGS.seed, report_dir=workdir / "report",
    )  # fmt: skip
    files.write_atomic(workdir / "synthetic.csv", result.synthetic.to_csv(index=False))
    table.write_sidecar(workdir / "synthetic.csv", result.schema, result.tokens)
    report = result.reports[FLAGS.num_flows]
    print(report.to_markdown())
    print(pipeline.markdown_table([pipeline.summary_row(result)]))
    if "privacy" in result.train_metrics:
        spent = result.train_metrics["privacy"]["spent"]["total"]
        print(f"differential privacy: epsilon {spent['epsilon']:.3f}, delta {spent['delta']:.1e} "
              f"spent ({workdir / 'model' / 'privacy.json'})")  # fmt: skip
    print(f"checkpoints: {workdir / 'model'}\nsynthetic flows: {workdir / 'synthetic.csv'}\n"
          f"report: {workdir / 'report' / 'report.md'}")  # fmt: skip
    parallel.barrier("run_done", timeout_s=3600)


def cli():
    """Console-script entry point (`flowjax` after `pip install`)."""
    app.run(main)


if __name__ == "__main__":
    cli()
