"""Per-dataset validity and schema-fidelity table: real table vs synthetic flows.

For each data file: train a short run, generate flows, then compare the synthetic table
with the real one (domain-rule pass rates, columns, order, dtypes, NaN, "<other>",
categorical values never seen in the real column). Uses only flowjax's high-level APIs.

  python -m experiments.validity_table --out=/tmp/validity.json
  python -m experiments.validity_table --data=lab --steps=50 --num_flows=500 --out=v.json
"""

from __future__ import annotations

import json
import shutil
import traceback
from pathlib import Path
from typing import Any

import pandas as pd
from absl import app, flags

import flowjax.checkpoint
import flowjax.configs
import flowjax.generate
import flowjax.io
import flowjax.pipeline
import flowjax.train
from experiments import SHARED_DATA
from flowjax.eval.validity import check_rows

flags.DEFINE_list("data", [str(p) for p in sorted(SHARED_DATA.glob("*.csv.gz"))] + ["lab"],
                  "flow tables (paths or shipped dataset names), comma-separated")  # fmt: skip
flags.DEFINE_integer("steps", 300, "training steps per dataset")
flags.DEFINE_integer("num_flows", 5000, "synthetic flows per dataset")
flags.DEFINE_string("model", "rnn", "model family")
flags.DEFINE_string("preset", "default", "config preset")
flags.DEFINE_string("out", None, "JSON output path", required=True)
flags.DEFINE_string("workdir_root", "runs/validity", "where the per-dataset runs go")
flags.DEFINE_bool("rescore", False, "score the synthetic.csv each run left, without training")
FLAGS = flags.FLAGS

# A numeric column with at most this many real values is counted as categorical here. Columns
# with 50-64 values are binned (49 bins), so this also counts values drawn inside a bin.
MAX_CATEGORICAL_NUMERIC = 64


def _rates(checks: pd.DataFrame, rules: list[str]) -> tuple[dict[str, float], float]:
    """Per-rule pass rates and the all-rules pass rate over `rules`."""
    table = checks[rules]
    all_rules = float(table.all(axis=1).mean()) if rules else 1.0
    return {r: float(table[r].mean()) for r in rules}, all_rules


def _unseen(real: pd.Series, synth: pd.Series) -> dict[str, int] | None:
    """Synthetic cells / distinct values of a categorical column never seen in the real one.

    None when the column is not categorical (numeric with more than 64 distinct values).
    """
    numeric = pd.api.types.is_numeric_dtype(real)
    if numeric and real.nunique(dropna=True) > MAX_CATEGORICAL_NUMERIC:
        return None
    if numeric:
        seen, values = set(real.dropna().astype(float)), pd.to_numeric(synth, errors="coerce")
        values = values.where(values.notna(), synth)  # keep unparseable text as text
    else:
        seen, values = set(real.dropna().astype(str)), synth.dropna().astype(str)
    values = values.dropna()
    new = values[~values.isin(list(seen))]
    return {"cells": int(len(new)), "distinct": int(new.nunique())}


def compare(real: pd.DataFrame, synth: pd.DataFrame) -> dict[str, Any]:
    """Validity pass rates and schema-fidelity counts of a synthetic table against a real one."""
    real_checks, synth_checks = check_rows(real), check_rows(synth)
    rules = [r for r in synth_checks.columns if r in real_checks.columns]
    real_rates, real_all = _rates(real_checks, rules)
    synth_rates, synth_all = _rates(synth_checks, rules)
    common = [c for c in real.columns if c in synth.columns]
    unseen = {c: u for c in common if (u := _unseen(real[c], synth[c])) and u["cells"]}
    nan_cells = {
        c: int(synth[c].isna().sum())
        for c in common
        if not real[c].isna().any() and synth[c].isna().any()
    }
    other = sum(int((synth[c].astype(str) == "<other>").sum())
                for c in synth.columns if not pd.api.types.is_numeric_dtype(synth[c]))  # fmt: skip
    return {
        "rules": {r: {"real": real_rates[r], "synthetic": synth_rates[r]} for r in rules},
        "all_rules": {"real": real_all, "synthetic": synth_all},
        "rows": {"real": len(real), "synthetic": len(synth)},
        "num_input_columns": real.shape[1],
        "num_synthetic_columns": synth.shape[1],
        "missing_columns": [c for c in real.columns if c not in synth.columns],
        "extra_columns": [c for c in synth.columns if c not in real.columns],
        "same_order": common == [c for c in synth.columns if c in real.columns],
        "dtype_mismatches": {
            c: [str(real[c].dtype), str(synth[c].dtype)]
            for c in common
            if real[c].dtype != synth[c].dtype
        },
        "nan_cells_where_real_has_none": sum(nan_cells.values()),
        "nan_cells_by_column": nan_cells,
        "other_strings": other,
        "unseen_categorical_cells": sum(u["cells"] for u in unseen.values()),
        "unseen_categorical_distinct": sum(u["distinct"] for u in unseen.values()),
        "unseen_by_column": unseen,
    }


def run_one(data: str) -> dict[str, Any]:
    """Trains, generates (keeping `<workdir>/synthetic.csv`) and compares on one data file."""
    workdir = Path(FLAGS.workdir_root) / Path(data).name.split(".")[0]
    real = flowjax.io.load_flows(data).frame
    if FLAGS.rescore:
        return compare(real, pd.read_csv(workdir / "synthetic.csv", keep_default_na=False,
                                         na_values=[""]))  # fmt: skip
    config = flowjax.configs.with_steps(
        flowjax.pipeline.model_config(FLAGS.model, FLAGS.preset), FLAGS.steps
    )
    shutil.rmtree(workdir, ignore_errors=True)
    metrics = flowjax.train.train_and_evaluate(config, workdir, data=data)
    synth = flowjax.generate.generate(workdir, FLAGS.num_flows, seed=0)
    synth.to_csv(workdir / "synthetic.csv", index=False)
    result = compare(real, synth)
    result["val_bits_per_column"] = metrics.get("val_bits_per_column")
    return result


def markdown(data: str, r: dict[str, Any]) -> str:
    """One file's result as a Markdown section."""
    lines = [f"### {Path(data).name}", ""]
    if "error" in r:
        return "\n".join(lines + ["ERROR: " + r["error"].strip().splitlines()[-1], ""])
    lines += ["| rule | real % | synthetic % |", "|---|---:|---:|"]
    for rule, v in r["rules"].items():
        lines.append(f"| {rule} | {100 * v['real']:.1f} | {100 * v['synthetic']:.1f} |")
    a = r["all_rules"]
    lines.append(f"| **all rules** | {100 * a['real']:.1f} | {100 * a['synthetic']:.1f} |")
    lines += [
        "",
        f"- columns: input {r['num_input_columns']}, synthetic {r['num_synthetic_columns']}; "
        f"missing {len(r['missing_columns'])}: {r['missing_columns']}",
        f"- same column order: {r['same_order']}; dtype mismatches "
        f"({len(r['dtype_mismatches'])}): {r['dtype_mismatches']}",
        f"- NaN cells where real has none: {r['nan_cells_where_real_has_none']} "
        f"{r['nan_cells_by_column']}",
        f"- '<other>' strings: {r['other_strings']}",
        f"- unseen categorical values: {r['unseen_categorical_cells']} cells, "
        f"{r['unseen_categorical_distinct']} distinct {r['unseen_by_column']}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    flowjax.checkpoint.quiet_orbax_logs()
    results: dict[str, dict[str, Any]] = {}
    for data in FLAGS.data:
        try:
            results[data] = run_one(data)
        except Exception:  # record and go on with the next file
            results[data] = {"error": traceback.format_exc()}
        Path(FLAGS.out).write_text(json.dumps(results, indent=2, default=str))
        print(markdown(data, results[data]), flush=True)


if __name__ == "__main__":
    app.run(main)
