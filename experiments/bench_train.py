"""Benchmark: training tokens/s of each model's `paper` and `default` preset, and a rough MFU.

Usage:
  python -m experiments.bench_train [--batch_size=128] [--seconds=10] [--families=rnn,wavenet]
  python -m experiments.bench_train --bf16  # bfloat16 compute (model.bf16) for every preset

Each preset trains on sentences of the CIC-IDS2017 DDoS file (the tokenizer of the
preset fitted on it), through the library's jitted train step with the legal-token
mask on every device (one 'data' mesh); per-column presets are timed with the full-vocabulary
head and with the per-column head (`--heads`), and the column row gives its tokens/s
over the full head's, measured in the same run. Throughput counts predicted symbols
(batch x columns) per second, compilation excluded. Model FLOPs per symbol are 6 x
(weights of the matmul layers, the head counted over the logits it computes) plus
12 x layers x width x context for attention (the PaLM/nanoGPT convention); the
reference FLOP rate is a large matmul in the compute dtype (float32, or bfloat16 with
--bf16) timed on one device in the same run, so MFU is model FLOP/s over matmul FLOP/s
times the device count, on the same machine at the same moment. The output starts with
the platform, device kind and count and the bf16 setting, and every row repeats them.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx

from experiments import SHARED_DATA
from flowjax import configs, data, models, parallel, train
from flowjax.models import model_config_from

_DDOS = SHARED_DATA / "cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz"

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 128, "Global batch (sentences per step) for every preset.")
flags.DEFINE_float("seconds", 10.0, "Timed seconds per preset (after compilation).")
flags.DEFINE_list("families", list(configs.FAMILIES), "Model families to time.")
flags.DEFINE_list("presets", ["paper", "default"], "Presets to time.")
flags.DEFINE_list("heads", ["full", "column"], "Output heads (column: per-column presets only).")
flags.DEFINE_integer(
    "matmul_size", 0, "Side of the square reference matmul (0: 2048 on CPU, 8192 on GPU/TPU)."
)
flags.DEFINE_string("data", str(_DDOS), "Flow table the tokenizer is fitted on.")
flags.DEFINE_bool("bf16", False, "Sets model.bf16 (bfloat16 compute) for every preset timed.")


def device_info(devices: list[jax.Device]) -> dict:
    """The platform ('cpu', 'gpu', 'tpu'), device kind and count of the devices timed."""
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "devices": len(devices)}  # fmt: skip


def matmul_flops_per_second(n: int, dtype: jnp.dtype, *, seconds: float = 3.0) -> float:
    """FLOP/s of a jitted n x n x n matmul in `dtype` on the first device.

    Calls are queued without waiting for each (a sync per call would time the dispatch
    on an accelerator, where one matmul takes microseconds) and drained every 10.
    """
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        out = f(a, b)
        reps += 1
        if reps % 10 == 0:
            out.block_until_ready()
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def model_flops_per_symbol(graphdef, state, *, seq_len: int, attention_layers: int) -> float:
    """6 x matmul weights (Linear kernels) + 12 x layers x width x context for attention."""
    model = nnx.merge(graphdef, state["params"], state["rest"])
    weights = sum(m.kernel.size for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Linear))
    width = model.head.kernel.shape[0]
    weights += width * model.head.width  # the head's logits actually computed
    return 6.0 * weights + 12.0 * attention_layers * width * (seq_len - 1)


def bench_preset(family: str, preset: str, head: str, prepared, mesh) -> dict:
    """Times the train step of one preset with one output head; returns its figures."""
    config = configs.get_config(family, preset)
    config.model.bf16 = FLAGS.bf16
    tok = prepared.tokenizer
    vocab, seq_len = tok.vocab_size, tok.seq_len
    model_cfg = model_config_from(config.model)
    tcfg = train.TrainConfig.from_config(config)
    tx = train.make_optimizer(tcfg.optimizer, tcfg.num_steps)
    windows = models.column_windows(tok.legal_mask()) if head == "column" else None
    graphdef, state = train.init_state(model_cfg, tx, vocab_size=vocab, seq_len=seq_len, seed=0,
                                       sharding=parallel.replicated(mesh),
                                       windows=windows)  # fmt: skip
    legal = jax.device_put(tok.legal_mask()[1:], parallel.replicated(mesh))
    tokens = data.get_batch(prepared.splits.train, step=0, batch_size=FLAGS.batch_size, seed=0)
    batch = parallel.shard_batch(tokens, mesh)
    step = train.make_train_step(graphdef, tx, mesh)
    start = time.perf_counter()
    state, metrics = step(state, batch, legal)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < FLAGS.seconds:
        state, metrics = step(state, batch, legal)
        steps += 1
        if steps % 10 == 0:
            jax.block_until_ready(metrics)
    jax.block_until_ready(metrics)
    elapsed = time.perf_counter() - start
    symbols = FLAGS.batch_size * (seq_len - 1) * steps / elapsed
    layers = getattr(model_cfg, "num_layers", 0) if family == "transformer" else 0
    per_symbol = model_flops_per_symbol(graphdef, state, seq_len=seq_len, attention_layers=layers)
    return {
        "family": family,
        "preset": preset,
        "head": head,
        "params": sum(x.size for x in jax.tree.leaves(state["params"])),
        "vocab": vocab,
        "steps_per_s": steps / elapsed,
        "tokens_per_s": symbols,
        "gflops_per_s": symbols * per_symbol / 1e9,
        "compile_s": compile_s,
    }


def main(argv: list[str]) -> None:
    del argv
    mesh = parallel.make_mesh()
    info = device_info(list(mesh.devices.flat))
    device = f"{info['platform']} {info['device_kind']} x{info['devices']}"
    dtype = jnp.bfloat16 if FLAGS.bf16 else jnp.float32
    print(f"device: platform {info['platform']}, kind {info['device_kind']}, "
          f"count {info['devices']}; bf16 {FLAGS.bf16}")  # fmt: skip
    print(f"jax {jax.__version__}; devices: {jax.devices()}; batch {FLAGS.batch_size}")
    size = FLAGS.matmul_size or (2048 if info["platform"] == "cpu" else 8192)
    peak = matmul_flops_per_second(size, dtype)
    print(f"reference: {size}^3 {jnp.dtype(dtype).name} matmul at {peak / 1e9:.1f} GFLOP/s "
          f"per device; MFU is over {info['devices']} x that\n")  # fmt: skip
    peak *= info["devices"]
    print(
        "| device | bf16 | model | preset | head | params | vocab | steps/s | tokens/s "
        "| model GFLOP/s | MFU | compile s | column/full |"
    )
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    prepared = {}
    for family in FLAGS.families:
        for preset in FLAGS.presets:
            config = configs.get_config(family, preset)
            mode = config.tokenizer.mode
            if mode not in prepared:
                prepared[mode] = data.prepare_data(config, FLAGS.data)
            full = None
            for head in FLAGS.heads:
                if head == "column" and mode != "per_column":
                    continue
                r = bench_preset(family, preset, head, prepared[mode], mesh)
                full = r["tokens_per_s"] if head == "full" else full
                ratio = f"{r['tokens_per_s'] / full:.2f}" if head == "column" and full else "–"
                print(
                    f"| {device} | {FLAGS.bf16} | {family} | {preset} | {head} | "
                    f"{r['params']:,} | {r['vocab']} | "
                    f"{r['steps_per_s']:.2f} | {r['tokens_per_s']:,.0f} | "
                    f"{r['gflops_per_s']:.1f} | {r['gflops_per_s'] * 1e9 / peak:.0%} | "
                    f"{r['compile_s']:.1f} | {ratio} |",
                    flush=True,
                )


if __name__ == "__main__":
    app.run(main)
