"""Row mode vs trace mode vs the real reference, on network realism (issue 14).

  python -m experiments.compare_traces                       # lab, CTU-13, UGR'16 onehost
  python -m experiments.compare_traces --data=lab-trace --time_budget=5m

For each flow file and each mode (row: independent flows; trace: `config.data.trace`,
flows as a stream in time order) one model of `--model` (the `default` preset) trains
for `--time_budget` of wall time, then generates as many flows as the training split
holds (trace mode: one stream, so that the synthetic capture spans about the real
capture's time; the generation time includes compilation, as a user meets it), and
`flowjax.eval` scores the network section (and detection and fidelity) against the
training split, next to the real held-out reference. Trace mode splits windows of
flows, row mode single flows, so each mode's holdout is its own; both come from the
same file. Train tokens/s and generation flows/s are recorded.

Writes <out_dir>/compare_traces_<data stem>.md and .json. Alone on the machine: the
training runs are time-budgeted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from absl import app, flags, logging

from experiments import SHARED_DATA
from flowjax import checkpoint, files, generate, pipeline
from flowjax import eval as fjeval
from flowjax.configs import common

DEFAULT_DATA = ["lab", str(SHARED_DATA / "ctu13_scenario6_binetflow_5min.csv.gz"),
                str(SHARED_DATA / "ugr16_netflow_onehost_24h.csv.gz")]  # fmt: skip
flags.DEFINE_list("data", DEFAULT_DATA, "flow tables with addresses and timestamps")
flags.DEFINE_enum("model", "rnn", ["rnn", "transformer", "wavenet"], "model family")
flags.DEFINE_string("time_budget", "3m", "training wall time per mode ('300', '5m')")
flags.DEFINE_integer("max_flows", 20_000, "generate at most this many flows")
flags.DEFINE_integer("seed", 0, "generation and evaluation seed")
flags.DEFINE_string("workdir", "runs/compare_traces", "checkpoints")
flags.DEFINE_string("out_dir", "docs/traces", "where the .md and .json go")
FLAGS = flags.FLAGS

SECTIONS = ("network", "detection", "fidelity")
HEADLINE = ("detection ROC AUC", "column shape (1-KS / 1-TVD)")


def run_mode(data: str, trace: bool, workdir: Path) -> dict:
    """Trains one mode on `data`, generates, evaluates; returns rows of the report + speeds."""
    config = pipeline.model_config(FLAGS.model, "default")
    config.time_budget_s = common.parse_duration(FLAGS.time_budget)
    config.data.trace.enabled = trace
    t0 = time.perf_counter()
    gen, prepared, metrics = pipeline.fit(config, data, workdir)
    t1 = time.perf_counter()
    real = pipeline.real_tables(prepared)
    n = min(len(real.train), FLAGS.max_flows)
    # Trace mode: one stream, so the synthetic capture spans about the real one's time.
    kwargs = {"flows_per_stream": n, "batch_size": 1} if trace else {}
    synthetic = generate.generate(gen, n, seed=FLAGS.seed, **kwargs)
    t2 = time.perf_counter()
    report = fjeval.evaluate(real.train, real.holdout, synthetic[list(real.train.columns)],
                             categorical=real.categorical, label=real.label, seed=FLAGS.seed,
                             sections=SECTIONS)  # fmt: skip
    rows = {}
    for name in SECTIONS:
        if name not in report.sections:
            continue
        for row in report.sections[name].rows:
            if name == "network" or row.metric in HEADLINE:
                rows[row.metric] = {"synthetic": row.synthetic, "reference": row.reference}
    return {
        "rows": rows,
        "flows": n,
        "steps": metrics["step"],
        "stopped": metrics["stopped"],
        "val_loss_nats_per_flow": metrics["val_loss"],
        "train_s": t1 - t0,
        "train_tokens_per_s": metrics["tokens_per_second"],
        "generate_s": t2 - t1,  # compilation included, as a user meets it
    }


def markdown(name: str, results: dict) -> str:
    """One table: metric, real reference (row mode's holdout), row mode, trace mode."""
    row, trace = results["row"], results["trace"]
    lines = [
        f"## {name}", "",
        f"{FLAGS.model}, `default` preset, {FLAGS.time_budget} of training per mode; "
        f"{row['flows']:,} flows generated (trace: one stream).", "",
        "| metric | real (holdout) | row mode | trace mode | real (trace holdout) |",
        "|---|---:|---:|---:|---:|",
    ]  # fmt: skip
    for metric, r in row["rows"].items():
        t = trace["rows"].get(metric, {})
        lines.append(f"| {metric} | {_cell(r['reference'])} | {_cell(r['synthetic'])} | "
                     f"{_cell(t.get('synthetic'))} | {_cell(t.get('reference'))} |")  # fmt: skip
    lines += ["", "| mode | steps | stopped | val nats/flow | train tokens/s | generate s |",
              "|---|---:|---|---:|---:|---:|"]  # fmt: skip
    for mode, r in results.items():
        lines.append(f"| {mode} | {r['steps']} | {r['stopped']} | "
                     f"{r['val_loss_nats_per_flow']:.2f} | {r['train_tokens_per_s']:,.0f} | "
                     f"{r['generate_s']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _cell(x) -> str:
    if x is None or x != x:
        return "–"
    return f"{x:.3f}" if abs(x) < 1000 else f"{x:,.0f}"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    checkpoint.quiet_orbax_logs()
    out_dir = Path(FLAGS.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for data in FLAGS.data:
        stem = Path(data).name.split(".")[0]
        results = {}
        for mode in ("row", "trace"):
            workdir = Path(FLAGS.workdir) / stem / mode
            results[mode] = run_mode(data, mode == "trace", workdir)
        files.write_atomic(out_dir / f"compare_traces_{stem}.json", json.dumps(results, indent=1))
        text = markdown(stem, results)
        files.write_atomic(out_dir / f"compare_traces_{stem}.md", text)
        print(text)


if __name__ == "__main__":
    app.run(main)
