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
