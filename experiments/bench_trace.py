"""Benchmark: trace mode's training and generation flows/s, next to row mode's, same run.

Usage:
  python -m experiments.bench_trace [--data=lab] [--families=rnn,transformer,wavenet]

Each family's `default` model (untrained weights: speed does not depend on them) is
timed on the same table in row mode (a batch of `--batch_flows` single flows) and in
trace mode (the same flows as `--batch_flows / window_flows` windows of consecutive
flows, the Transformer attending over `context_flows` flows, the WaveNet's receptive
field spanning them). Training: the library's jitted train step, compilation excluded.
Generation: `flowjax.generate.generate` end to end (sampling and decoding to the output
table), the second call of the same size, so compilation is excluded: row mode draws
`--gen_flows` rows in chunks of `--gen_batch`, trace mode the same number of flows as
`--gen_streams` streams. The trace/row column is the ratio of flows/s in this run.
"""

from __future__ import annotations

import time

import jax
from absl import app, flags

from flowjax import configs, data, generate, models, parallel, traces, train
from flowjax.models import model_config_from

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "lab", "flow table with addresses and timestamps")
flags.DEFINE_list("families", list(configs.FAMILIES), "model families to time")
flags.DEFINE_integer("batch_flows", 512, "flows per training step in both modes (the "
                     "Transformer's trace-mode attention takes memory ~ batch_flows x "
                     "window_flows x sentence^2: 2,048 flows ran out of 24 GiB)")  # fmt: skip
flags.DEFINE_float("seconds", 10.0, "timed seconds of training per mode")
flags.DEFINE_integer("gen_flows", 8192, "flows generated per timed call")
flags.DEFINE_integer("gen_batch", 4096, "row mode: rows per device chunk")
flags.DEFINE_integer("gen_streams", 32, "trace mode: streams (batch rows) per call")


def train_flows_per_s(config, prepared, mesh) -> tuple[float, float, tuple]:
    """(flows/s, tokens/s, (graphdef, state)) of the train step on `prepared`'s rows."""
    tok = prepared.tokenizer
    model_cfg = model_config_from(config.model)
    tcfg = train.TrainConfig.from_config(config)
    tx = train.make_optimizer(tcfg.optimizer, tcfg.num_steps)
    row_len = prepared.splits.train.shape[1]
    flows_per_row = row_len // tok.seq_len
    graphdef, state = train.init_state(
        model_cfg, tx, vocab_size=tok.vocab_size, seq_len=tok.seq_len, seed=0,
        sharding=parallel.replicated(mesh), windows=models.column_windows(tok.legal_mask()),
        context=traces.model_context(config, tok.seq_len),
    )  # fmt: skip
    legal_mask = traces.stream_legal(tok.legal_mask(), flows_per_row)[1:]
    legal = jax.device_put(legal_mask, parallel.replicated(mesh))
    rows = FLAGS.batch_flows // flows_per_row
    batch = parallel.shard_batch(
        data.get_batch(prepared.splits.train, step=0, batch_size=rows, seed=0), mesh
    )
    step = train.make_train_step(graphdef, tx, mesh)
    state, metrics = step(state, batch, legal)
    jax.block_until_ready(metrics)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < FLAGS.seconds:
        state, metrics = step(state, batch, legal)
        steps += 1
    jax.block_until_ready(metrics)
    elapsed = time.perf_counter() - start
    flows_s = rows * flows_per_row * steps / elapsed
    return flows_s, rows * (row_len - 1) * steps / elapsed, (graphdef, state)


def generate_flows_per_s(gen: generate.Generator, trace: bool) -> float:
    """Flows/s of `generate.generate` (second call: compilation excluded)."""
    n = FLAGS.gen_flows
    kwargs = ({"flows_per_stream": n // FLAGS.gen_streams, "batch_size": FLAGS.gen_streams}
              if trace else {"batch_size": FLAGS.gen_batch})  # fmt: skip
    generate.generate(gen, n, seed=0, **kwargs)
    start = time.perf_counter()
    out = generate.generate(gen, n, seed=1, **kwargs)
    assert len(out) == n
    return n / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    del argv
    mesh = parallel.make_mesh()
    print(f"jax {jax.__version__}; devices: {jax.devices()}; data {FLAGS.data}; "
          f"{FLAGS.batch_flows} flows per training step\n")  # fmt: skip
    print("| model | mode | sentence | train flows/s | train tokens/s | generate flows/s "
          "| train trace/row | generate trace/row |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for family in FLAGS.families:
        figures = {}
        for trace in (False, True):
            config = configs.get_config(family, "default")
            config.data.trace.enabled = trace
            prepared = data.prepare_data(config, FLAGS.data)
            flows_s, tokens_s, (graphdef, state) = train_flows_per_s(config, prepared, mesh)
            gen = generate.Generator(graphdef, state["params"], state["rest"],
                                     tokenizer=prepared.tokenizer, mesh=mesh,
                                     trace=traces.settings(config))  # fmt: skip
            figures[trace] = (flows_s, tokens_s, generate_flows_per_s(gen, trace))
            ratio = (
                ("–", "–")
                if not trace
                else tuple(f"{figures[True][i] / figures[False][i]:.2f}" for i in (0, 2))
            )
            print(f"| {family} | {'trace' if trace else 'row'} | {prepared.tokenizer.seq_len} | "
                  f"{flows_s:,.0f} | {tokens_s:,.0f} | {figures[trace][2]:,.0f} | "
                  f"{ratio[0]} | {ratio[1]} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    app.run(main)
