"""Bad input caught at the edge: odd Parquet columns, repeated CSV names, negative counts, flags."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowjax import generate
from flowjax.io import load_flows

ROOT = Path(__file__).resolve().parents[1]
FLAT = {
    "Flow Duration": [1000, 250, 4000],
    "Total Fwd Packets": [2, 1, 5],
    "Label": ["BENIGN", "DDoS", "BENIGN"],
}


def test_nested_parquet_columns_are_named(tmp_path):
    path = tmp_path / "nested.parquet"
    table = pa.table({**FLAT, "Sizes": [[60, 1500], [60], []], "Meta": [{"a": 1}] * 3})
    pq.write_table(table, path)
    with pytest.raises(ValueError, match=rf"{path}: columns \['Sizes', 'Meta'\] are nested"):
        load_flows(path)


def test_repeated_parquet_names_are_named(tmp_path):
    path = tmp_path / "dupes.parquet"
    arrays = [pa.array(v) for v in (*FLAT.values(), [1, 2, 3])]
    pq.write_table(pa.Table.from_arrays(arrays, names=[*FLAT, "Flow Duration"]), path)
    with pytest.raises(ValueError, match=rf"{path}: column names repeat: \['Flow Duration'\]"):
        load_flows(path)


def test_corrupt_parquet_names_the_file(tmp_path):
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"not a parquet file at all")
    with pytest.raises(ValueError, match=f"{path}: cannot be read as a table"):
        load_flows(path)


def test_repeated_csv_name_with_other_values_is_reported(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text(
        " Flow Duration, Total Fwd Packets, Total Fwd Packets, Fwd Header Length,"
        " Fwd Header Length, Label\n"
        "1000,2,3,40,40,BENIGN\n250,1,1,20,20,DDoS\n4000,5,5,NaN,NaN,BENIGN\n"
    )
    report = load_flows(path).report
    assert report.renamed_columns == {"Total Fwd Packets.1": "Total Fwd Packets"}
    assert (
        "column 'Total Fwd Packets' appears more than once with different values; "
        "a later one is read as 'Total Fwd Packets.1'"
    ) in report.summary()
    assert "Fwd Header Length" not in str(report.renamed_columns)  # an equal copy: a relation


def test_negative_counts_and_durations_are_reported(tmp_path):
    path = tmp_path / "negative.csv"
    path.write_text(
        "Flow Duration,Total Fwd Packets,Flow Bytes/s,Init_Win_bytes_forward,"
        "Init_Win_bytes_backward,Label\n"
        "-5,2,-3.5,-1,-2,BENIGN\n-1,-1,10,-1,-1,DDoS\n40,5,20,8192,-1,BENIGN\n"
    )
    report = load_flows(path).report
    assert report.negative_values == {
        "Flow Duration": 2,
        "Total Fwd Packets": 1,
        "Init_Win_bytes_backward": 1,  # -2; -1 means 'no window seen'
    }
    summary = report.summary()
    assert "Flow Duration: 2 values below 0, the least a count or duration can be" in summary
    assert "Init_Win_bytes_backward: 1 values below -1" in summary


def test_clean_table_has_no_new_notes(tmp_path):
    path = tmp_path / "clean.parquet"
    pq.write_table(pa.table(FLAT), path)
    report = load_flows(path).report
    assert report.renamed_columns == {} and report.negative_values == {}


def test_condition_given_twice_is_an_error():
    with pytest.raises(ValueError, match="column 'Label' is given twice \\('A' and 'B'\\)"):
        generate.parse_condition("Label=A, Label =B")


@pytest.mark.parametrize("batch_size", [0, -3])
def test_batch_size_below_one_is_an_error(batch_size):
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    with pytest.raises(ValueError, match=f"--batch_size must be >= 1, got {batch_size}"):
        generate._padded(batch_size, mesh)


@pytest.mark.slow  # a subprocess
def test_batch_size_flag_is_validated(tmp_path):
    args = ["experiments.generate", f"--workdir={tmp_path}", f"--out={tmp_path / 'o.csv'}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", *args, "--batch_size=0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != 0
    assert "flag --batch_size=0: --batch_size must be >= 1" in proc.stderr


def test_csv_formula_cells_are_escaped_only_when_asked():
    frame = pd.DataFrame({"service": ["=cmd|' /C calc'!A0", "http", "-", "@SUM(A1)", None],
                          "bytes": [-1, 2, 3, 4, 5]})  # fmt: skip
    safe = generate.escape_formulas(frame)
    assert list(safe["service"][:4]) == ["'=cmd|' /C calc'!A0", "http", "'-", "'@SUM(A1)"]
    assert safe["service"].isna().iloc[4] and list(safe["bytes"]) == [-1, 2, 3, 4, 5]
    assert frame["service"][0].startswith("=")  # the caller's table is left as it was
