"""Benchmark: generation rows/s of the scan sampler against the study's way and the FLOP floor.

python -m experiments.bench_generate
python -m experiments.bench_generate --families=rnn --presets=paper --batch_sizes=1024,4096
python -m experiments.bench_generate --bf16  # bfloat16 compute (model.bf16) for every preset

For each model family, preset and output head (fresh weights at the preset's size:
speed does not depend on the weight values, and every method below uses the same
weights; the per-column head exists for the per-column tokenizer only, and its row
also gives its best rows/s over the full head's, measured in the same run):
- ours: `flowjax.sampling` (one jitted scan, inverse-CDF draws, masks), rows/s at each
  batch size, the median of --repeats warm runs;
- study: the study's way, a Python loop over rows and tokens calling the jitted
  `decode_step` of the full head with batch 1 and drawing with numpy from the softmax
  (timed on --study_rows rows and extrapolated);
- floor: XLA's FLOP count of `decode_step` per row times the sentence length, divided
  by the FLOP rate of a large matmul in the compute dtype (float32, or bfloat16 with
  --bf16) measured in the same run.
Everything runs on the default device (one, whatever the machine has). The output starts
with its platform, kind and the bf16 setting, and every row and JSON record carries them.
"""

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from experiments import SHARED_DATA
from flowjax import configs, data, models, sampling

_DDOS = SHARED_DATA / "cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz"
flags.DEFINE_string("data", str(_DDOS), "flow table the tokenizer is fitted on (sets V, length)")
flags.DEFINE_list("families", list(configs.FAMILIES), "model families")
flags.DEFINE_list("presets", ["paper", "default"], "config presets")
flags.DEFINE_list("heads", ["full", "column"], "output heads (column: per-column tokenizer only)")
flags.DEFINE_list("batch_sizes", ["64", "256", "1024", "4096"], "sampler batch sizes")
flags.DEFINE_integer("repeats", 3, "timed runs per batch size (median)")
flags.DEFINE_integer("study_rows", 3, "rows generated the study's way")
flags.DEFINE_string("json_out", "", "also write the results here as JSON")
flags.DEFINE_bool("draws", True, "also time the per-step draw alone, on random logits")
flags.DEFINE_bool("bf16", False, "sets model.bf16 (bfloat16 compute) for every preset timed")
FLAGS = flags.FLAGS


def device_info() -> dict:
    """The platform ('cpu', 'gpu', 'tpu'), kind and count of the devices the run uses (the
    default device), and how many the machine has."""
    device = jax.devices()[0]
    return {"platform": device.platform, "device_kind": device.device_kind, "devices": 1,
            "devices_available": jax.device_count()}  # fmt: skip


def matmul_flops_per_s(dtype: jnp.dtype) -> float:
    """The best FLOP rate of square matmuls in `dtype` on the default device: 1024 and 2048
    on CPU, 4096 and 8192 on GPU/TPU; each timed over 10 queued calls (one call alone
    would time an accelerator's dispatch), best of 5."""
    sizes = (1024, 2048) if jax.default_backend() == "cpu" else (4096, 8192)
    best = 0.0
    for n in sizes:
        a = jnp.ones((n, n), dtype)
        f = jax.jit(lambda x: x @ x)
        f(a).block_until_ready()
        for _ in range(5):
            start = time.perf_counter()
            jax.block_until_ready([f(a) for _ in range(10)])
            best = max(best, 10 * 2 * n**3 / (time.perf_counter() - start))
    return best


def decode_flops_per_row(graphdef, params, rest, steps: int, batch: int = 1024) -> float:
    """XLA's FLOP count of one `decode_step` at `batch` rows, per row, times `steps`."""

    def step(params, rest, state, token):
        model = nnx.merge(graphdef, params, rest, copy=True)
        return model.decode_step(state, token, jnp.int32(steps // 2))

    state = nnx.merge(graphdef, params, rest).init_decode_state(batch)
    token = jnp.zeros((batch,), jnp.int32)
    cost = jax.jit(step).lower(params, rest, state, token).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost.get("flops", float("nan")) / batch * steps  # nan where a backend has no count


def study_rows_per_s(graphdef, params, rest, seq_len: int, vocab: int, rows: int) -> float:
    """The study's way: one row at a time, one token at a time, numpy draws from the softmax."""

    @jax.jit
    def step(params, rest, state, token, t):
        return nnx.merge(graphdef, params, rest, copy=True).decode_step(state, token, t)

    rng = np.random.default_rng(0)
    init = nnx.merge(graphdef, params, rest).init_decode_state(1)
    step(params, rest, init, jnp.zeros((1,), jnp.int32), 0)  # compile outside the timing
    start = time.perf_counter()
    for _ in range(rows):
        state, token = init, np.zeros((1,), np.int32)
        for t in range(seq_len - 1):
            logits, state = step(params, rest, state, token, t)
            logits = np.asarray(logits[0], np.float64)
            probs = np.exp(logits - logits.max())
            token = np.array([rng.choice(vocab, p=probs / probs.sum())], np.int32)
    return rows / (time.perf_counter() - start)


def ours_rows_per_s(graphdef, params, rest, tables, batch: int, repeats: int) -> float:
    """Rows/s of the scan sampler at `batch` rows (median of `repeats` warm runs)."""
    fn = sampling.make_sampler(graphdef, strategy=sampling.Temperature())
    key = jax.random.key(0)
    free = jnp.full((batch, tables.legal.shape[0]), -1, jnp.int32)  # nothing forced
    times = []
    for i in range(repeats + 1):
        rows = jnp.arange(i * batch, (i + 1) * batch, dtype=jnp.int32)
        start = time.perf_counter()
        jax.block_until_ready(fn(params, rest, key, rows, tables, free))
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times[1:]))


def _old_inverse_cdf(scaled, u):
    weights = jnp.exp(scaled - scaled.max(-1, keepdims=True))
    cdf = jnp.cumsum(weights, -1)
    return jnp.sum(cdf <= u[:, None] * cdf[:, -1:], -1, dtype=jnp.int32)


def draw_ms(batch: int = 4096, width: int = 49, steps: int = 67) -> dict[str, float]:
    """Milliseconds for `steps` draws from random logits [batch, width] in a scan (best of 7)."""
    variants = {
        "jax.random.categorical": lambda s, u: jax.random.categorical(jax.random.key(0), s),
        "inverse CDF with jnp.cumsum": _old_inverse_cdf,
        "inverse CDF as used": sampling.Temperature().select,
        "jnp.argmax": lambda s, u: jnp.argmax(s, -1),
        "greedy as used": sampling.Greedy().select,
    }
    x = jax.random.normal(jax.random.key(0), (steps, batch, width))
    u = jax.random.uniform(jax.random.key(1), (steps, batch))
    out = {}
    for name, draw in variants.items():

        def body(c, xs, draw=draw):  # c feeds back so the draws stay inside the loop
            return c + draw(xs[0] + c[:, None].astype(jnp.float32) * 0, xs[1]), None

        f = jax.jit(lambda x, u, body=body: jax.lax.scan(body, jnp.zeros(batch, jnp.int32), (x, u)))
        jax.block_until_ready(f(x, u))
        best = float("inf")
        for _ in range(7):
            start = time.perf_counter()
            jax.block_until_ready(f(x, u))
            best = min(best, time.perf_counter() - start)
        out[name] = best * 1e3
    return out


def _model(config, tok, windows):  # config.model.bf16 is set by main
    """The preset's model with fresh weights (seed 0), full head or column head over `windows`."""
    return models.build_model(models.model_config_from(config.model), vocab_size=tok.vocab_size,
                              seq_len=tok.seq_len, rngs=nnx.Rngs(0), windows=windows)  # fmt: skip


def main(argv):
    del argv
    info = device_info()
    device = f"{info['platform']} {info['device_kind']} x{info['devices']}"
    dtype = jnp.bfloat16 if FLAGS.bf16 else jnp.float32
    print(f"device: platform {info['platform']}, kind {info['device_kind']}, count "
          f"{info['devices']} (of {info['devices_available']}); bf16 {FLAGS.bf16}")  # fmt: skip
    rate = matmul_flops_per_s(dtype)
    print(f"jax {jax.__version__}, {jax.devices()}, {jnp.dtype(dtype).name} matmul "
          f"{rate / 1e9:.0f} GFLOP/s")  # fmt: skip
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    tokenizers = {}
    results = []
    for family in FLAGS.families:
        for preset in FLAGS.presets:
            config = configs.get_config(family, preset)
            config.model.bf16 = FLAGS.bf16
            mode = config.tokenizer.mode
            if mode not in tokenizers:
                tokenizers[mode] = data.prepare_data(config, FLAGS.data).tokenizer
            tok = tokenizers[mode]
            tables = sampling.make_tables(tok.legal_mask())
            heads = [h for h in FLAGS.heads if h == "full" or mode == "per_column"]
            study = study_rows_per_s(*nnx.split(_model(config, tok, None), nnx.Param, ...),
                                     tok.seq_len, tok.vocab_size, FLAGS.study_rows)  # fmt: skip
            full_best = None
            for head in heads:
                windows = models.column_windows(tok.legal_mask()) if head == "column" else None
                model = _model(config, tok, windows)
                g, p, r = nnx.split(model, nnx.Param, ...)
                flops = decode_flops_per_row(g, p, r, tok.seq_len - 1)
                row = {
                    **info, "bf16": FLAGS.bf16,
                    "family": family, "preset": preset, "head": head, "vocab": tok.vocab_size,
                    "seq_len": tok.seq_len, "window": int(tables.legal.shape[1]),
                    "params": models.count_params(model), "mflop_per_row": flops / 1e6,
                    "floor": rate / flops, "study": study,
                    "ours": {b: ours_rows_per_s(g, p, r, tables, b, FLAGS.repeats)
                             for b in batch_sizes},
                }  # fmt: skip
                best = max(row["ours"].values())
                row["x_study"], row["floor_over_ours"] = best / study, row["floor"] / best
                full_best = best if head == "full" else full_best
                row["x_full"] = best / full_best if full_best else None
                results.append(row)
                print(json.dumps(row), flush=True)
    sizes = " | ".join(f"B={b}" for b in batch_sizes)
    cols = f"MFLOP/row | study | floor | {sizes} | x study | floor/ours | column/full"
    print(f"\n| device | bf16 | model | preset | head | V | len | {cols} |")
    print("|" + "---|" * (13 + len(batch_sizes)))
    for r in results:
        ours = " | ".join(f"{r['ours'][b]:,.0f}" for b in batch_sizes)
        x_full = f"{r['x_full']:.2f}" if r["x_full"] and r["head"] == "column" else "–"
        print(f"| {device} | {r['bf16']} | {r['family']} | {r['preset']} | {r['head']} | "
              f"{r['vocab']} | {r['seq_len']} | "
              f"{r['mflop_per_row']:.1f} | {r['study']:,.0f} | {r['floor']:,.0f} | {ours} | "
              f"{r['x_study']:,.0f} | {r['floor_over_ours']:.2f} | {x_full} |")  # fmt: skip
    if FLAGS.draws:
        shapes = [(4096, 49), (1024, 65), (1024, 2258)]  # paper window; per-column window, V
        table = {shape: draw_ms(*shape) for shape in shapes}
        print(
            "\n| per-step draw, ms per 67 steps | "
            + " | ".join(f"B={b}, W={w}" for b, w in shapes)
            + " |\n|---|"
            + "---:|" * len(shapes)
        )
        for name in table[shapes[0]]:
            print(f"| {name} | " + " | ".join(f"{table[s][name]:.1f}" for s in shapes) + " |")
    if FLAGS.json_out:
        Path(FLAGS.json_out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    app.run(main)
