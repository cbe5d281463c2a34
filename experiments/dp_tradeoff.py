"""The privacy/quality trade-off of DP training (issue 16): quality and attacks against epsilon.

COMMAND (docs/privacy.md):
  python experiments/dp_tradeoff.py --workdir=runs/dp --steps=300 \
    --data=../shared/data/cicids2017_mlcve_sample_grouped7.csv.gz,lab \
    --public_labels=lab=BENIGN,PortScan,SYNFlood,BruteForce-SSH,BruteForce-FTP,SlowHTTP \
    --public_labels=../shared/data/cicids2017_mlcve_sample_grouped7.csv.gz=BENIGN,Bot,\
BruteForce,DoS,Infiltration,PortScan,WebAttack

Trains the default GRU and Transformer at each epsilon (inf: no DP) for the same steps,
generates, evaluates, and scores the distance and likelihood membership attacks; writes
dp_tradeoff.json / .md / .png to --out (a rerun skips the rows already there).
"""

from absl import app, flags, logging

from flowjax import checkpoint
from flowjax.privacy import tradeoff

flags.DEFINE_list("data", ["lab"], "flow files or dataset names")
flags.DEFINE_list("models", ["rnn", "transformer"], "model families")
flags.DEFINE_list("epsilons", ["1", "3", "10", "inf"], "total epsilons (inf: no DP)")
flags.DEFINE_integer("steps", 1000, "training steps of every run (the budget covers them)")
flags.DEFINE_integer("num_flows", 4000, "synthetic flows scored per run")
flags.DEFINE_integer("noise_seed", -1, "DP noise and sampling seed (-1: fresh, secret)")
flags.DEFINE_multi_string("public_labels", [], "DATA=CLASS,CLASS,...: the classes of DATA's "
                          "label as the user declares them (config.dp.public_labels)")  # fmt: skip
flags.DEFINE_bool("rescore_likelihood", False, "only score the likelihood attack again on the "
                  "runs already in --out's JSON (their checkpoints in --workdir)")  # fmt: skip
flags.DEFINE_string("workdir", None, "where the runs' checkpoints go")
flags.DEFINE_string("out", "docs/privacy", "where the table, JSON and plot go")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    checkpoint.quiet_orbax_logs()
    if FLAGS.rescore_likelihood:
        rows = tradeoff.rescore_likelihood(FLAGS.data, workdir=FLAGS.workdir, out_dir=FLAGS.out)
        logging.info("rescored %d runs; table in %s/dp_tradeoff.md", len(rows), FLAGS.out)
        return
    labels = dict(x.split("=", 1) for x in FLAGS.public_labels)
    rows = tradeoff.run_grid(FLAGS.data, FLAGS.models, [float(e) for e in FLAGS.epsilons],
                             workdir=FLAGS.workdir, out_dir=FLAGS.out, steps=FLAGS.steps,
                             num_flows=FLAGS.num_flows, noise_seed=FLAGS.noise_seed,
                             public_labels=labels)  # fmt: skip
    logging.info("%d runs; table in %s/dp_tradeoff.md", len(rows), FLAGS.out)


if __name__ == "__main__":
    app.run(main)
