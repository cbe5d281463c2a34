"""End-to-end tests of the evaluation CLI, the baselines, and that flowjax.eval never loads JAX."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowjax.eval.baselines import independent_marginals, noisy_copies, split_holdout

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_import_flowjax_eval_does_not_load_jax():
    done = _run(
        "import sys, flowjax.eval, flowjax.eval.figures, flowjax.eval.baselines\n"
        "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'flax'))))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def flows(n: int, seed: int) -> pd.DataFrame:
    """A small CIC-style table: a duration, packet and byte counts, a protocol and a label."""
    rng = np.random.default_rng(seed)
    label = rng.choice(["BENIGN", "DoS"], n, p=[0.6, 0.4])
    packets = rng.integers(1, 20, n) + 20 * (label == "DoS")
    return pd.DataFrame(
        {
            "Flow Duration": rng.exponential(1e6, n).round(),
            "Total Fwd Packets": packets,
            "Total Length of Fwd Packets": packets * rng.integers(40, 1500, n),
            "Protocol": rng.choice([6, 17], n),
            "Label": label,
        }
    )


@pytest.mark.slow
def test_cli_writes_report_files_without_loading_jax(tmp_path):
    train, holdout = split_holdout(flows(600, 0), label="Label", seed=0)
    synthetic = independent_marginals(train, 300, seed=1)
    paths = {}
    for name, frame in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    out = tmp_path / "report"
    argv = ["evaluate"] + [f"--{k}={v}" for k, v in paths.items()] + [f"--out={out}", "--seed=1"]
    done = _run(
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "try:\n    runpy.run_module('experiments.evaluate', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'jax' not in sys.modules, 'the CLI imported jax'\n"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| metric | synthetic | real reference | note |" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["n_rows"] == {"train": 300, "holdout": 300, "synthetic": 300}
    assert report["columns"]["label"] == "Label"
    assert report["sampling"]["seed"] == 1
    for name in ("report.md", "marginals.png", "correlation_difference.png", "tstr_per_class.png"):
        assert (out / name).stat().st_size > 0


def test_baseline_generators_and_split():
    frame = flows(400, 0)
    train, holdout = split_holdout(frame, label="Label", seed=0)
    assert len(train) == len(holdout) == 200
    shares = [t["Label"].value_counts(normalize=True)["DoS"] for t in (train, holdout)]
    assert shares[0] == pytest.approx(shares[1], abs=0.01)
    marg = independent_marginals(train, 1000, seed=0)
    assert set(marg["Protocol"]) <= set(train["Protocol"])
    assert marg["Flow Duration"].isin(train["Flow Duration"]).all()
    cats = ["Protocol", "Label"]
    exact = noisy_copies(train, 1000, categorical=cats, noise=0.0, seed=0)
    noisy = noisy_copies(train, 1000, categorical=cats, noise=0.05, seed=0)
    merged = exact.merge(train.drop_duplicates(), how="left", indicator=True)
    assert merged["_merge"].eq("both").all()
    assert noisy[cats].equals(exact[cats])
    ratio = noisy["Total Fwd Packets"] / exact["Total Fwd Packets"]
    assert 0.02 < ratio.std() < 0.08 and abs(ratio.mean() - 1) < 0.01
