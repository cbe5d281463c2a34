"""End to end in subprocesses: the main job and the Table 2 script on tiny configs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(args, tmp_path):
    # One device: the RNN's all-reduce can deadlock with fake CPU devices on 2 cores.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_main_job_end_to_end(tmp_path):
    out = run(["experiments.run", "--preset=tiny", "--steps=20", "--num_flows=300",
               f"--workdir={tmp_path}"], tmp_path)  # fmt: skip
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["n_rows"]["synthetic"] == 300
    assert (tmp_path / "report" / "report.md").read_text().startswith("# Synthetic flows")
    assert len((tmp_path / "synthetic.csv").read_text().splitlines()) == 301
    assert list((tmp_path / "report").glob("*.png"))
    assert "| rnn |" in out


@pytest.mark.slow
def test_paper_table2_end_to_end(tmp_path):
    run(["experiments.paper_table2", "--data=lab", "--models=rnn,transformer,wavenet",
         "--presets=tiny", "--baselines=bigram,marginals", "--num_flows=100,300", "--steps=10",
         f"--workdir={tmp_path}"], tmp_path)  # fmt: skip
    rows = json.loads((tmp_path / "table2.json").read_text())
    names = [r["model"] for r in rows]
    assert names == ["real held-out (tiny columns)", "rnn (tiny)", "transformer (tiny)",
                     "wavenet (tiny)", "bigram (tiny)", "marginals (tiny)"]  # fmt: skip
    for row in rows[1:]:
        missing = [k for k, v in row.items() if v is None and k != "paper inlier %"]
        assert not missing, (row["model"], missing)
        assert 0 <= row["inlier % poly (300)"] <= 100 and 0 <= row["detection AUC"] <= 1
    table = (tmp_path / "table2.md").read_text()
    assert table.count("\n|") == len(rows) + 2  # header, separator, one line per row


# ----------------------------------------------------------------------------------------
# experiments/compare_peers.py: the peers.md scoring harness.


def _dependent_frame(n=400, seed=0):
    """Three classes that two numeric columns separate; one constant column, one +inf row."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    label = rng.choice(["a", "b", "c"], n)
    centre = pd.Series(label).map({"a": 0.0, "b": 5.0, "c": 10.0}).to_numpy()
    frame = pd.DataFrame({
        "x": centre + rng.normal(0, 1, n),
        "y": -2 * centre + rng.normal(0, 1, n),
        "count": rng.integers(0, 4, n) + (centre > 4),
        "const": 7,
        "src_ip": [f"10.0.0.{i % 5}" for i in range(n)],
        "Label": label,
    })  # fmt: skip
    frame.loc[3, "x"] = np.inf
    return frame


def test_compare_peers_score_known_answers():
    from experiments import compare_peers as cp

    train, holdout, info = cp.prepare(_dependent_frame(), "Label")
    assert info["rows_dropped_inf"] == 1 and info["constant_columns_dropped"] == ["const"]
    assert info["scored_numeric_columns"] == ["x", "y", "count"]
    assert info["kept_not_scored"] == ["src_ip"] and len(train) + len(holdout) == 399
    assert train["Label"].value_counts().sub(holdout["Label"].value_counts()).abs().max() <= 1

    ref = cp.score(train, holdout, holdout, "Label", reference=True, ocsvm_rows=150)
    assert ref["detection_auc"] < 0.65 and ref["shape"] > 0.9
    assert ref["trtr"] > 0.9 and ref["tstr"] > 0.9 and ref["ocsvm_fit_rows"] == 150

    shuffled = train.copy()
    for i, column in enumerate(shuffled.columns):  # each column permuted on its own
        shuffled[column] = train[column].sample(frac=1, random_state=i).to_numpy()
    marg = cp.score(train, holdout, shuffled, "Label", ocsvm_rows=150)
    assert marg["shape"] > 0.99  # the marginals are TRAIN's own
    assert marg["tstr"] < 0.6 < 0.9 < marg["trtr"]
    assert marg["detection_auc"] > 0.8

    copies = cp.score(train, holdout, train, "Label", ocsvm_rows=150)
    assert copies["copies_pct"] == 100.0 and ref["copies_pct"] < 100.0
    assert cp.parse_overrides(["time_budget_s=200", "keep_best=True", "optimizer.name=sgd",
                               "data.fraction=0.5"]) == {
        "time_budget_s": 200, "keep_best": True, "optimizer.name": "sgd", "data.fraction": 0.5,
    }  # fmt: skip


@pytest.mark.slow
def test_compare_peers_smoke(tmp_path):
    data = tmp_path / "flows.csv"
    _dependent_frame().to_csv(data, index=False)
    out = run(["experiments.compare_peers", f"--data={data}", "--models=", "--big_n=0",
               "--baselines=independent", "--ocsvm_rows=150", f"--out_dir={tmp_path}"],
              tmp_path)  # fmt: skip
    assert "1 rows with +-inf dropped; 1 constant columns dropped" in out
    table = (tmp_path / "compare_peers_flows.md").read_text()
    assert "| synthesizer | shape (1-KS/1-TVD) ↑ | detection AUC (0.5 best) |" in table
    assert "## Peers" not in table  # only beside the grouped7 file
    result = json.loads((tmp_path / "compare_peers_flows.json").read_text())
    names = [s["name"] for s in result["systems"]]
    assert names == ["REFERENCE (synthetic = HOLDOUT)", "independent marginals (value resampling)"]
    assert result["systems"][1]["copies_pct"] < 5 and result["systems"][1]["tstr"] < 0.6


@pytest.mark.slow
def test_compare_peers_reference_matches_peers_md(shared_data):
    """peers.md's REFERENCE row on the grouped7 file, to its printed precision."""
    import pandas as pd

    from experiments import compare_peers as cp

    path = shared_data / cp.GROUPED7
    if not path.is_file():
        pytest.skip(f"{path} not found")
    train, holdout, info = cp.prepare(pd.read_csv(path), "Label")
    assert (len(train), len(holdout), info["rows_dropped_inf"]) == (3150, 3151, 10)
    assert len(info["constant_columns_dropped"]) == 12
    assert len(info["scored_numeric_columns"]) == 65
    r = cp.score(train, holdout, holdout, "Label", reference=True)
    got = [round(r[k], 3) for k in ("shape", "detection_auc", "tstr", "trtr")]
    got += [round(r[k], 1) for k in ("ocsvm_poly_holdout", "ocsvm_rbf_holdout")]
    assert got == [0.988, 0.491, 0.973, 0.958, 41.7, 79.5]
    assert round(r["copies_pct"], 2) == 17.71
