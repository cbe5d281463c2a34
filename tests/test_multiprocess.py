"""Two real JAX processes on localhost (gloo collectives) against one: train, generate, die.

Each process has 2 CPU devices, so the two-process run's mesh has 4 devices and the same
global batch as the one-process reference on 4 of this process's devices.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import multiprocess_worker as worker
import numpy as np
import pandas as pd
import pytest

from flowjax import generate, parallel, train

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 300  # the most any process of these tests may take


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))  # fmt: skip
    env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir or ""
    return env


def _run_two(args_of, tmp_path: Path) -> list[subprocess.CompletedProcess]:
    """Starts process 0 and 1 with `args_of(port, pid)`; waits at most WAIT_S for both."""
    port = _free_port()
    procs = []
    for pid in range(2):
        log = open(tmp_path / f"process{pid}.log", "w+")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(args_of(port, pid), cwd=REPO, env=_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        procs.append((proc, log))
    done = []
    for proc, log in procs:
        try:
            proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            for p, _ in procs:
                os.killpg(p.pid, signal.SIGKILL)
            pytest.fail(f"a process still ran after {WAIT_S} s: the run hangs")
        log.seek(0)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, log.read()))
        log.close()
    return done


def _check_ok(results) -> None:
    for pid, r in enumerate(results):
        assert r.returncode == 0, f"process {pid} failed:\n{r.stdout[-4000:]}"


def _worker(mode: str, workdir: Path, out: Path):
    def args_of(port, pid):
        return [sys.executable, str(REPO / "tests" / "multiprocess_worker.py"), mode, str(port),
                "2", str(pid), str(workdir), f"{out}{pid}.json"]  # fmt: skip

    return args_of


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """The tiny WaveNet trained by two processes: (workdir, the record of each process)."""
    tmp = tmp_path_factory.mktemp("two_processes")
    _check_ok(_run_two(_worker("train", tmp / "run", tmp / "process"), tmp))
    return tmp / "run", [json.loads((tmp / f"process{p}.json").read_text()) for p in range(2)], tmp


def test_two_processes_train_as_one_does(two_process_run, tmp_path, monkeypatch):
    _, records, tmp = two_process_run
    assert [(r["processes"], r["devices"]) for r in records] == [(2, 4), (2, 4)]
    assert records[0]["saves"] == records[1]["saves"]  # bit-identical parameters at every save
    saved = []
    monkeypatch.setattr(train.checkpoint, "save", _spy(saved))
    one = train.train_and_evaluate(worker.config(), tmp_path / "one", data="lab",
                                   mesh=parallel.make_mesh(jax.devices()[:4]))  # fmt: skip
    two = records[0]["history"]
    assert [h["step"] for h in two] == [h["step"] for h in one["history"]] == list(range(1, 9))
    for key in ("train_loss", "val_loss"):
        ours = [h[key] for h in one["history"] if key in h]
        np.testing.assert_allclose([h[key] for h in two if key in h], ours, rtol=1e-5)
    assert two[-1]["train_loss"] < two[0]["train_loss"]  # it learnt, not only agreed
    final = np.load(tmp / "process0.json.npz")
    assert len(final.files) == len(saved[-1])
    for i, leaf in enumerate(saved[-1]):
        np.testing.assert_allclose(final[f"arr_{i}"], leaf, rtol=1e-4, atol=1e-6)


def _spy(saved: list):
    real = train.checkpoint.save

    def save(manager, step, state, meta, **kwargs):
        saved.append([np.asarray(x) for x in jax.tree.leaves(jax.device_get(state["params"]))])
        return real(manager, step, state, meta, **kwargs)

    return save


def test_two_processes_generate_the_one_process_rows(two_process_run, tmp_path):
    workdir, _, _ = two_process_run
    out = tmp_path / "two"

    def args_of(port, pid):
        return [sys.executable, "-m", "experiments.generate", f"--workdir={workdir}",
                "--num_flows=3000", f"--out={out}", "--batch_size=256", "--shard_rows=512",
                f"--coordinator_address=localhost:{port}", "--num_processes=2",
                f"--process_id={pid}", "--process_timeout=60"]  # fmt: skip

    _check_ok(_run_two(args_of, tmp_path))
    one = generate.generate_to_files(workdir, 3000, tmp_path / "one", batch_size=256,
                                     shard_rows=512, progress=False)  # fmt: skip
    shards = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in shards] == [p.name for p in sorted(one.glob("part-*.parquet"))]
    assert len(shards) == 6  # 3000 rows in shards of 512: three for each process
    manifest = json.loads((out / generate.MANIFEST).read_text())
    assert manifest["complete"] == {"rows": 3000, "shards": [p.name for p in shards]}
    pd.testing.assert_frame_equal(pd.concat(map(pd.read_parquet, shards), ignore_index=True),
                                  generate.generate(workdir, 3000, batch_size=256))  # fmt: skip


def test_a_dead_process_ends_the_other_with_an_error(tmp_path):
    results = _run_two(_worker("die", tmp_path / "run", tmp_path / "process"), tmp_path)
    assert results[1].returncode == 3  # it died at step 3, as told
    assert results[0].returncode != 0
    assert "died or lost its connection" in results[0].stdout, results[0].stdout[-3000:]
