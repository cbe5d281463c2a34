"""Benchmark: the training-speed cost of DP-SGD, tokens/s with and without DP in the same run.

Usage:
  python -m experiments.bench_dp [--batch_size=128] [--seconds=10] [--families=rnn,transformer]

Each family's `default` preset trains on the sentences of --data (its own tokenizer,
per-column head, legal-token mask) through the ordinary jitted train step and through
the DP-SGD step (`flowjax.privacy.dpsgd`: per-flow gradients clipped by jax-privacy,
summed, Gaussian noise, the same optimizer) on the same fixed batch. The DP row's ratio
is its tokens/s over the ordinary step's, measured in the same process; the DP figure
excludes Poisson sampling on the host (a fixed batch), so it is the step's own cost.
`--microbatch` sets how many flows get their per-flow gradients at once (0: 8 on CPU,
all on GPU/TPU).
"""

from __future__ import annotations

import time

import jax
from absl import app, flags

from flowjax import configs, data, models, parallel, train
from flowjax.models import model_config_from
from flowjax.privacy import dpsgd

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 128, "Global batch (flows per step).")
flags.DEFINE_float("seconds", 10.0, "Timed seconds per step kind (after compilation).")
flags.DEFINE_list("families", list(configs.FAMILIES), "Model families to time.")
flags.DEFINE_string("data", "lab", "Flow table or dataset the tokenizer is fitted on.")
flags.DEFINE_integer("microbatch", 0, "DP: flows per per-flow-gradient microbatch (0: by "
                     "platform, flowjax.privacy.dpsgd.microbatch).")  # fmt: skip


def _timed(step_once) -> tuple[float, float]:
    """(compile seconds, steps per second) of `step_once()`, which returns arrays to wait on."""
    start = time.perf_counter()
    jax.block_until_ready(step_once())
    compile_s = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < FLAGS.seconds:
        out = step_once()
        steps += 1
    jax.block_until_ready(out)
    return compile_s, steps / (time.perf_counter() - start)


def bench_family(family: str, prepared, mesh) -> list[dict]:
    """Times the ordinary and the DP step of one family's default preset."""
    config = dpsgd.dp_config(configs.get_config(family, "default"))  # no BatchNorm in either
    tok = prepared.tokenizer
    tcfg = train.TrainConfig.from_config(config)
    tx = train.make_optimizer(tcfg.optimizer, tcfg.num_steps)
    repl = parallel.replicated(mesh)
    graphdef, state = train.init_state(
        model_config_from(config.model), tx, vocab_size=tok.vocab_size, seq_len=tok.seq_len,
        seed=0, sharding=repl, windows=models.column_windows(tok.legal_mask()),
    )  # fmt: skip
    legal = jax.device_put(tok.legal_mask()[1:], repl)
    tokens = data.get_batch(prepared.splits.train, step=0, batch_size=FLAGS.batch_size, seed=0)
    batch = parallel.shard_batch(tokens, mesh)
    weights = parallel.shard_batch(tokens[:, 0] * 0 + 1.0, mesh)
    dropout = config.model.get("dropout", 0.0) > 0
    plain = train.make_train_step(graphdef, tx, mesh, dropout=dropout)
    micro = dpsgd.microbatch(FLAGS.microbatch)
    clipped = dpsgd.make_clipped_sum(graphdef, mesh, clip_norm=1.0, dropout=dropout,
                                     loss_fn=train.flow_loss, microbatch_size=micro)  # fmt: skip
    update = dpsgd.make_noisy_update(tx, mesh, noise_std=1.0, denominator=FLAGS.batch_size)
    key = jax.random.key(0)
    holder = {"state": state}

    def plain_once():
        holder["state"], metrics = plain(holder["state"], batch, legal)
        return metrics

    def dp_once():
        grads, loss = clipped(holder["state"]["params"], holder["state"]["rest"], batch, weights,
                              legal, key)  # fmt: skip
        holder["state"], norm = update(holder["state"], grads, key)
        return norm, loss

    symbols = FLAGS.batch_size * (tok.seq_len - 1)
    rows = []
    for kind, once in (("ordinary", plain_once), ("DP-SGD", dp_once)):
        compile_s, rate = _timed(once)
        rows.append({"family": family, "step": kind, "steps_per_s": rate,
                     "tokens_per_s": rate * symbols, "compile_s": compile_s})  # fmt: skip
    return rows


def main(argv: list[str]) -> None:
    del argv
    mesh = parallel.make_mesh()
    print(f"jax {jax.__version__}; devices: {jax.devices()}; batch {FLAGS.batch_size}; "
          f"data {FLAGS.data}")  # fmt: skip
    print("| model | step | steps/s | tokens/s | DP / ordinary | compile s |")
    print("|---|---|---:|---:|---:|---:|")
    for family in FLAGS.families:
        prepared = data.prepare_data(configs.get_config(family, "default"), FLAGS.data)
        plain, dp = bench_family(family, prepared, mesh)
        for row in (plain, dp):
            ratio = row["tokens_per_s"] / plain["tokens_per_s"]
            print(f"| {family} | {row['step']} | {row['steps_per_s']:.2f} | "
                  f"{row['tokens_per_s']:,.0f} | {ratio:.3f} | "
                  f"{row['compile_s']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    app.run(main)
