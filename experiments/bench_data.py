"""Benchmark: the out-of-core data path (flowjax.largedata) on a CIC-shaped Parquet file.

python -m experiments.bench_data --rows=5000000

Builds (once; kept at --parquet) a Parquet file of --rows rows resampled from a real
CIC-IDS2017 file, with multiplicative log-normal noise on its measured columns, written
row group by row group so building it is bounded in memory too. Then times, each phase in
its own subprocess whose peak RSS comes from os.wait4 (split into anonymous memory and the
file-backed pages of the memory maps, sampled every 20 ms): `tokenize` (largedata.prepare into
a fresh token directory: rows/s) and `train` (train.train_model, --steps steps of the tiny
RNN at --batch_size, reopening those token files). Target: peak RSS under 1.5 GB at 5M rows,
flat in the row count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from experiments import SHARED_DATA

flags.DEFINE_string("source", str(SHARED_DATA / "cicids2017_mlcve_sample_grouped7.csv.gz"),
                    "real CIC-IDS2017 flow file to resample")  # fmt: skip
flags.DEFINE_integer("rows", 5_000_000, "rows of the synthetic table")
flags.DEFINE_string("parquet", "", "the table (default /tmp/flowjax_bench_<rows>.parquet)")
flags.DEFINE_string("workdir", "", "training run directory (default: beside --parquet)")
flags.DEFINE_integer("batch_rows", 16_384, "rows per record batch")
flags.DEFINE_integer("row_group", 100_000, "rows per Parquet row group when building")
flags.DEFINE_float("noise", 0.05, "sigma of the log-normal noise on measured columns")
flags.DEFINE_integer("steps", 200, "training steps on the token files")
flags.DEFINE_integer("batch_size", 128, "rows per batch")
flags.DEFINE_enum("phase", "all", ["all", "build", "tokenize", "train"], "run one phase only")
FLAGS = flags.FLAGS
_EXACT = 64  # integer columns with at most this many distinct values (flags, ports) keep theirs


def _paths() -> tuple[Path, Path]:
    """The table and the training run's workdir (its token files in `<workdir>/tokens`)."""
    parquet = Path(FLAGS.parquet or f"/tmp/flowjax_bench_{FLAGS.rows}.parquet")
    return parquet, Path(FLAGS.workdir or f"{parquet}.run")


def build(parquet: Path) -> dict:
    """Writes the resampled, noised table in row groups; returns its size."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    real = pd.read_csv(FLAGS.source, low_memory=False)
    measured = lambda c: (
        pd.api.types.is_float_dtype(real[c])
        or (pd.api.types.is_integer_dtype(real[c]) and real[c].nunique() > _EXACT)
    )
    noisy = [c for c in real.columns if measured(c)]
    rng = np.random.default_rng(0)
    tmp = parquet.with_name(parquet.name + ".tmp")
    writer = None
    for start in range(0, FLAGS.rows, FLAGS.row_group):
        part = real.sample(min(FLAGS.row_group, FLAGS.rows - start), replace=True,
                           random_state=rng).reset_index(drop=True)  # fmt: skip
        for c in noisy:
            scaled = part[c].to_numpy(np.float64) * rng.lognormal(0, FLAGS.noise, len(part))
            integer = pd.api.types.is_integer_dtype(real[c])
            part[c] = np.round(scaled).astype(real[c].dtype) if integer else scaled
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    os.replace(tmp, parquet)
    return {"rows": FLAGS.rows, "bytes": parquet.stat().st_size}


def tokenize(parquet: Path, token_dir: Path) -> dict:
    """largedata.prepare into a fresh token directory (the one train_model then reopens)."""
    from flowjax import largedata

    shutil.rmtree(token_dir.parent, ignore_errors=True)
    start = time.perf_counter()
    prep = largedata.prepare(_config(), parquet, token_dir=token_dir, batch_rows=FLAGS.batch_rows)
    seconds = time.perf_counter() - start
    splits = prep.splits
    return {"rows": FLAGS.rows, "seconds": round(seconds, 1),
            "rows_per_s": round(FLAGS.rows / seconds), "vocab_size": prep.tokenizer.vocab_size,
            "seq_len": prep.tokenizer.seq_len, "dtype": str(splits.train.dtype),
            "splits": [len(splits.train), len(splits.val), len(splits.test)]}  # fmt: skip


def _config():
    """The default RNN's data and tokenizer settings, out of core; the tiny model (memory
    here is the data path's, not the model's)."""
    from flowjax import configs

    config = configs.get_config("rnn", "default")
    config.model = configs.get_config("rnn", "tiny").model
    config.data.out_of_core = "on"
    config.update(num_steps=FLAGS.steps, batch_size=FLAGS.batch_size, eval_every=FLAGS.steps,
                  log_every=max(1, FLAGS.steps // 10), checkpoint_every=FLAGS.steps,
                  time_budget_s=0)  # fmt: skip
    return config


def train(workdir: Path) -> dict:
    """train.train_model for --steps steps on the token files the tokenize phase wrote."""
    from flowjax import largedata, train

    start = time.perf_counter()
    metrics, prep = train.train_model(_config(), workdir, data=_paths()[0])
    seconds = time.perf_counter() - start
    assert isinstance(prep, largedata.LargePrepared), "the run did not take the out-of-core path"
    return {"steps": metrics["step"], "batch": FLAGS.batch_size,
            "dtype": str(prep.splits.train.dtype), "seconds": round(seconds, 1),
            "tokens_per_s": round(metrics["tokens_per_second"]),
            "val_loss": round(metrics["val_loss"], 3)}  # fmt: skip


def _watch_memory(peaks: dict) -> None:
    """Keeps the peak anonymous memory and the peak file-backed pages (the memory maps, which
    the kernel may drop at will) of this process in `peaks`, MB, every 20 ms."""

    def watch():
        while True:
            with open("/proc/self/status") as f:
                status = dict(line.split(":", 1) for line in f if line.startswith("Rss"))
            for key, name in (("RssAnon", "peak_anon_mb"), ("RssFile", "peak_file_mb")):
                peaks[name] = max(peaks.get(name, 0), int(status[key].split()[0]) // 1024)
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()


def _run_phase(phase: str) -> dict:
    """Runs one phase in a subprocess; its result plus that process's peak RSS (MB)."""
    args = [a for a in sys.argv[1:] if not a.startswith("--phase")]
    proc = subprocess.Popen([sys.executable, "-m", "experiments.bench_data", f"--phase={phase}",
                             *args], stdout=subprocess.PIPE, text=True)  # fmt: skip
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"phase {phase} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    return {"phase": phase, **result, "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def main(argv):
    del argv
    parquet, workdir = _paths()
    if FLAGS.phase != "all":
        phases = {"build": lambda: build(parquet),
                  "tokenize": lambda: tokenize(parquet, workdir / "tokens"),
                  "train": lambda: train(workdir)}  # fmt: skip
        peaks = {}
        if Path("/proc/self/status").exists():
            _watch_memory(peaks)
        print(json.dumps({**phases[FLAGS.phase](), **peaks}))
        return
    if not parquet.exists():
        print(json.dumps(_run_phase("build")))
    for phase in ("tokenize", "train"):
        print(json.dumps(_run_phase(phase)))


if __name__ == "__main__":
    app.run(main)
