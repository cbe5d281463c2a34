"""Runs notebooks/colab_tpu.ipynb top to bottom on CPU with SMALL = True, as Colab would.

The notebook executes in an ipykernel kernel of this Python, in a temporary working
directory, with a cell injected after its `parameters` cell (what papermill does). The
kernel sees the same fake CPU devices as the test process (conftest.py's XLA_FLAGS), so
the notebook trains and samples data-parallel over 8 devices.
"""

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

_MISSING = (
    "{} is not installed; the notebook test needs the 'test' extra (pip install -e '.[test]')"
)
nbformat = pytest.importorskip("nbformat", reason=_MISSING.format("nbformat"))
nbclient = pytest.importorskip("nbclient", reason=_MISSING.format("nbclient"))
kernelspec = pytest.importorskip("ipykernel.kernelspec", reason=_MISSING.format("ipykernel"))
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (nbclient depends on it)
from jupyter_client.manager import KernelManager  # noqa: E402

import flowjax  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "colab_tpu.ipynb"
CELL_TIMEOUT_S = 120
# Appended cell: the values the assertions check, read from the kernel itself.
PROBE = """\
import json, sys, jax
print(json.dumps({"num_flows": NUM_FLOWS, "shard_rows": SHARD_ROWS, "workdir": WORKDIR,
                  "train_steps": TRAIN_STEPS, "step": metrics["step"],
                  "devices": jax.device_count(), "platform": jax.default_backend(),
                  "executable": sys.executable}))
"""


def _kernel_manager(tmp_path: Path) -> KernelManager:
    """A python3 ipykernel of this interpreter, on CPU, sharing the suite's compile cache."""
    env = {
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "JAX_COMPILATION_CACHE_DIR": os.environ.get(
            "FLOWJAX_JAX_CACHE", str(Path.home() / ".cache" / "flowjax" / "jax")
        ),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
    }
    kernels = tmp_path / "kernels"
    kernelspec.write_kernel_spec(kernels / "python3", overrides={"env": env})
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _outputs(nb, mime: str) -> list[str]:
    return [
        out["data"][mime]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if mime in out.get("data", {})
    ]


@pytest.mark.slow
def test_colab_notebook_runs_small_on_cpu(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["accelerator"] == "TPU"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "stored outputs"
    params = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "SMALL = False" in nb.cells[params[0]].source
    injected = nbformat.v4.new_code_cell("SMALL = True", metadata={"tags": ["injected"]})
    nb.cells.insert(params[0] + 1, injected)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    client = nbclient.NotebookClient(
        nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(run_dir)}},
    )  # fmt: skip
    client.execute(cleanup_kc=True)  # raises CellExecutionError naming the failing cell

    probe = json.loads(nb.cells[-1].outputs[-1]["text"])
    assert probe["executable"] == sys.executable
    assert probe["platform"] == "cpu" and probe["devices"] >= 1
    if "xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", ""):
        assert probe["devices"] == 8  # data-parallel over the suite's 8 CPU devices
    assert probe["step"] == probe["train_steps"]
    n = probe["num_flows"]
    assert 0 < n <= 10_000  # the SMALL sizes, not the TPU run's
    workdir = run_dir / probe["workdir"]

    shards = sorted((workdir / "flows").glob("part-*.parquet"))
    assert len(shards) == -(-n // probe["shard_rows"]) >= 2
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in shards) == n
    lab_columns = list(pd.read_csv(flowjax.datasets.resolve("lab"), nrows=1).columns)
    for shard in shards:
        assert pq.read_schema(shard).names == lab_columns
    manifest = json.loads((workdir / "flows" / "_manifest.json").read_text())
    assert manifest["num_flows"] == n

    report_dir = workdir / "report"
    assert (report_dir / "report.md").read_text().startswith("# Synthetic flows")
    pngs = sorted(report_dir.glob("*.png"))
    assert pngs and len(_outputs(nb, "image/png")) == len(pngs)
    tables = [md for md in _outputs(nb, "text/markdown") if "## Headline" in md]
    assert len(tables) == 1
    headline = tables[0].split("## Headline", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in headline.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| metric | synthetic | real reference")
    assert len(rows) > 5  # the header and the metric rows
