"""flowjax's models scored with the peers' protocol (../shared/docs/peers.md), beside the peers.

  python -m experiments.compare_peers --models=rnn,transformer,wavenet \
      --overrides=time_budget_s=200,keep_best=True
  python -m experiments.compare_peers --models= --big_n=0 --out_dir=/tmp/peers  # reference
  python -m experiments.compare_peers --data=lab --label=label
  python -m experiments.compare_peers --data=../shared/data/ugr16_netflow_onehost_24h.csv.gz

The protocol, as peers.md describes and measures it:

- Data: rows with +-inf in a numeric column and constant columns are dropped (on the
  grouped7 file: 10 rows, 12 columns; 65 numeric columns + `Label` remain), then the
  rows are split 50/50, stratified by the label, seed 0, into TRAIN and HOLDOUT.
  Columns that are neither numeric nor the label (IPs, timestamps, protocol or flag
  strings) stay in the table the synthesizers fit, but scoring uses only the numeric
  columns and the label. Without a label column TSTR and TRTR are skipped (–).
- Systems: REFERENCE (HOLDOUT used as the synthetic table: what a perfect generator
  scores), flowjax's 'marginals' count baseline (binned per-column token counts,
  FlowSynthesizer), the value-resampling independent marginals of peers.md's row a
  (`flowjax.eval.baselines.independent_marginals`, a check of this harness), and each
  `--models` family, fitted on TRAIN with `flowjax.FlowSynthesizer`; each samples
  len(TRAIN) rows.
- Metrics (scikit-learn, scipy and pandas here, independent of `flowjax.eval`): shape
  (1-KS per numeric column, 1-TVD for the label) and detection AUC against TRAIN;
  TSTR on HOLDOUT (the reference, trained on HOLDOUT, is tested on TRAIN); TRTR;
  OneClassSVMs fitted on TRAIN; exact copies of TRAIN rows. `score` has the details.
  peers.md's reference row (0.988, 0.491, 0.973, 0.958, 41.7/41.7, 79.5/79.5, 17.71)
  comes out only with shape and detection measured against TRAIN and the reference's
  TSTR tested on TRAIN (against HOLDOUT they are trivially 1.0, 0.10 and 1.0), so this
  script does the same; `shape_vs_holdout` is kept in the JSON.
- Speed: fit seconds; rows/s of sampling len(TRAIN) rows (the first call, compilation
  included, as a user meets it) and of `--big_n` rows.

Writes <out_dir>/compare_peers_<data stem>.md and .json.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from absl import app, flags, logging
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from experiments import SHARED_DATA
from flowjax import datasets, dialects, files

GROUPED7 = "cicids2017_mlcve_sample_grouped7.csv.gz"

flags.DEFINE_string("data", str(SHARED_DATA / GROUPED7),
                    "flow table (CSV, CSV.gz, Parquet) or a shipped name ('lab')")  # fmt: skip
flags.DEFINE_string("label", "", "label column (default: the first column named like a label)")
flags.DEFINE_list("models", ["rnn", "transformer", "wavenet"], "flowjax model families")
flags.DEFINE_enum("preset", "default", ["default", "paper", "tiny"], "config preset")
flags.DEFINE_integer("steps", None, "training steps (default: the preset's)")
flags.DEFINE_list("overrides", [], "dotted config values, e.g. time_budget_s=200,keep_best=True")
flags.DEFINE_list("baselines", ["marginals", "independent"],
                  "'marginals': flowjax's count baseline (FlowSynthesizer); 'independent': "
                  "flowjax.eval.baselines.independent_marginals (peers.md's row a)")  # fmt: skip
flags.DEFINE_integer("big_n", 100_000, "rows of the timed large sample (0: skip)")
flags.DEFINE_integer("ocsvm_rows", 5000, "fit the OneClassSVMs on at most this many TRAIN rows")
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_string("out_dir", "runs/compare_peers", "where the .md and .json go")
flags.DEFINE_bool("with_peers", None, "append peers.md's rows (default: on the grouped7 file)")
FLAGS = flags.FLAGS

SEED = 0  # peers.md: split, classifiers, CV folds and OCSVM subsample all use seed 0
BIG = float(np.finfo(np.float32).max)  # +-inf becomes this for the classifiers
NU = 0.2

# Copied from ../shared/docs/peers.md ("Results"; measured 2026-11-22 on a 2-core CPU,
# sdv 2.0.0, ctgan 0.12.1, mostlyai-engine 2.7.3, scikit-learn 1.9.1) on the grouped7 file.
PEERS = {
    "REFERENCE (synthetic = HOLDOUT)":
        ["0.988", "0.491", "0.973", "0.958", "1.02", "41.7 / 41.7", "79.5 / 79.5", "17.71",
         "–", "–", "–"],
    "a) independent marginals":
        ["0.989", "1.000", "0.132", "0.958", "0.14", "41.7 / 41.6", "79.5 / 11.8", "0.00",
         "0.0", "491199", "381549"],
    "b) SDV GaussianCopula":
        ["0.569", "1.000", "0.064", "0.958", "0.07", "41.7 / 39.5", "79.5 / 0.0", "0.00",
         "3.8", "8120", "11782"],
    "c') SDV CTGAN, 20 epochs":
        ["0.545", "1.000", "0.186", "0.958", "0.19", "41.7 / 65.5", "79.5 / 2.7", "0.00",
         "33.8", "7718", "11975"],
    "c) SDV CTGAN, 100 epochs":
        ["0.630", "1.000", "0.082", "0.958", "0.09", "41.7 / 66.2", "79.5 / 5.5", "0.00",
         "77.0", "6997", "13860"],
    "d) mostlyai-engine TabularARGN (4.0 min cap)":
        ["0.900", "1.000", "0.814", "0.958", "0.85", "41.7 / 30.7", "79.5 / 58.4", "0.00",
         "213.9", "1674", "2213"],
}  # fmt: skip

# The training figures of FlowSynthesizer.metrics worth a line (pipeline.fit / train.train_model).
TRAINING_KEYS = ("step", "stopped", "best_step", "train_loss", "val_loss",
                 "val_bits_per_column", "num_params", "tokens_per_second")  # fmt: skip


# ----------------------------------------------------------------------------------------
# Data.


def load(data: str) -> pd.DataFrame:
    """The raw table as pandas reads it (column names untouched, as peers.md read it)."""
    path = datasets.resolve(data)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, low_memory=False)


def find_label(frame: pd.DataFrame, label: str = "") -> str | None:
    """`label` if given, else the first column whose name is a label in a known dialect."""
    if label:
        if label not in frame.columns:
            raise ValueError(f"label column {label!r} not in {list(frame.columns)}")
        return label
    return next((c for c in frame.columns if dialects.canonical_name(str(c)) == "label"), None)


def numeric_columns(frame: pd.DataFrame, label: str | None) -> list[str]:
    """The scored feature columns: every column of a numeric dtype but the label."""
    return [c for c in frame.columns if c != label and pd.api.types.is_numeric_dtype(frame[c])]


def prepare(frame: pd.DataFrame, label: str | None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """peers.md's preprocessing and split.

    Drops the rows with +-inf in a numeric column, then the constant columns (the
    label is kept), and splits 50/50 stratified by the label with seed 0 (unstratified
    when a class has a single row, or without a label).

    Returns:
      (TRAIN, HOLDOUT, info); info counts what was dropped and names the scored
      columns, the columns kept but not scored, and the label (None when the file
      has none or it is constant).
    """
    numeric = numeric_columns(frame, label)
    values = frame[numeric].to_numpy(dtype=float, na_value=np.nan)
    inf_rows = np.isinf(values).any(axis=1)
    kept = frame.loc[~inf_rows]
    constant = [c for c in kept.columns if c != label and kept[c].nunique(dropna=False) <= 1]
    kept = kept.drop(columns=constant)
    notes = []
    if label is not None and kept[label].nunique() < 2:
        notes.append(f"label {label!r} has one class: TSTR/TRTR skipped")
        label = None
    stratify = None
    if label is not None:
        counts = kept[label].value_counts()
        if counts.min() >= 2:
            stratify = kept[label]
        else:
            notes.append(f"classes with one row ({', '.join(map(str, counts[counts < 2].index))})"
                         ": split unstratified")  # fmt: skip
    train, holdout = train_test_split(kept, test_size=0.5, stratify=stratify, random_state=SEED)
    numeric = numeric_columns(kept, label)
    info = {
        "rows_read": len(frame),
        "columns_read": frame.shape[1],
        "rows_dropped_inf": int(inf_rows.sum()),
        "constant_columns_dropped": constant,
        "label": label,
        "classes": int(kept[label].nunique()) if label else None,
        "scored_numeric_columns": numeric,
        "kept_not_scored": [c for c in kept.columns if c != label and c not in numeric],
        "stratified": stratify is not None,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "notes": notes,
    }
    return train.reset_index(drop=True), holdout.reset_index(drop=True), info


# ----------------------------------------------------------------------------------------
# Metrics.


def _numeric(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns].apply(pd.to_numeric, errors="coerce").astype(float)


def _finite_for_trees(x: pd.DataFrame) -> np.ndarray:
    """+-inf as +-float32 max (the trees split on them as on large values); NaN stays NaN."""
    return np.nan_to_num(x.to_numpy(dtype=float), nan=np.nan, posinf=BIG, neginf=-BIG)


def _shape(real: pd.DataFrame, synthetic: pd.DataFrame, numeric: list[str], label: str | None):
    per_column = {}
    for c in numeric:
        a, b = real[c].dropna().to_numpy(), synthetic[c].dropna().to_numpy()
        ks = stats.ks_2samp(a, b, method="asymp").statistic if len(a) and len(b) else 1.0
        per_column[c] = 1.0 - float(ks)  # the statistic does not depend on `method`
    if label is not None:
        p = real[label].value_counts(normalize=True)
        q = synthetic[label].value_counts(normalize=True)
        per_column[label] = 1.0 - 0.5 * float(p.sub(q, fill_value=0.0).abs().sum())
    return float(np.mean(list(per_column.values()))), per_column


def _detection_auc(real: pd.DataFrame, synthetic: pd.DataFrame, numeric, label) -> float:
    """HGB real-vs-synthetic, 5-fold stratified CV ROC AUC (shuffled, seed 0).

    The label joins as its integer code (sorted classes), a plain numeric feature: that
    reproduces peers.md's 0.491 for the reference (as a categorical feature: 0.492).
    """
    x = _finite_for_trees(pd.concat([real[numeric], synthetic[numeric]], ignore_index=True))
    if label is not None:
        classes = pd.concat([real[label], synthetic[label]], ignore_index=True)
        x = np.column_stack([x, pd.Categorical(classes).codes.astype(float)])
    y = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    clf = HistGradientBoostingClassifier(random_state=SEED)
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    return float(cross_val_score(clf, x, y, cv=cv, scoring="roc_auc").mean())


def _macro_f1(fit: pd.DataFrame, test: pd.DataFrame, numeric, label) -> float:
    """HGB trained on `fit`'s numeric columns -> label, macro-F1 on `test`."""
    y = fit[label].astype(str).to_numpy()
    if len(set(y)) < 2:  # one class: the classifier can only predict it
        pred = np.full(len(test), y[0] if len(y) else "")
    else:
        clf = HistGradientBoostingClassifier(random_state=SEED)
        pred = clf.fit(_finite_for_trees(fit[numeric]), y).predict(_finite_for_trees(test[numeric]))
    return float(f1_score(test[label].astype(str), pred, average="macro"))


def _fill_nonfinite(x: pd.DataFrame, ref: pd.DataFrame) -> tuple[np.ndarray, int]:
    """NaN -> TRAIN median, +inf -> TRAIN max, -inf -> TRAIN min, per column (for the SVMs)."""
    values = x.to_numpy(dtype=float).copy()
    bad = ~np.isfinite(values)
    if bad.any():
        r = ref.to_numpy(dtype=float)
        r = np.where(np.isfinite(r), r, np.nan)
        fill = {
            "nan": np.nan_to_num(np.nanmedian(r, axis=0)),
            "pos": np.nan_to_num(np.nanmax(r, axis=0)),
            "neg": np.nan_to_num(np.nanmin(r, axis=0)),
        }
        for key, mask in (("nan", np.isnan(values)), ("pos", values == np.inf),
                          ("neg", values == -np.inf)):  # fmt: skip
            values = np.where(mask, fill[key][None, :], values)
    return values, int(bad.sum())


def _ocsvm(train: pd.DataFrame, holdout, synthetic, numeric, max_rows: int) -> dict:
    """peers.md's two one-class SVMs, fitted on TRAIN (at most max_rows rows, seed 0).

    poly raw: OneClassSVM(kernel='poly', degree=2, nu=0.2) on raw values, gamma
    sklearn's default ('scale'; peers.md names none, and 'scale' reproduces its
    41.7 %). RBF scaled: StandardScaler fitted on TRAIN, then
    OneClassSVM(kernel='rbf', nu=0.2, gamma='scale'). Non-finite cells (only in
    synthetic or real rows that carry them) are replaced by TRAIN's column median
    (NaN), max (+inf) or min (-inf) and counted.
    """
    fit_rows = train[numeric]
    if len(fit_rows) > max_rows:
        fit_rows = fit_rows.sample(n=max_rows, random_state=SEED)
    fit_x, n_fit = _fill_nonfinite(fit_rows, train[numeric])
    hold_x, n_hold = _fill_nonfinite(holdout[numeric], train[numeric])
    syn_x, n_syn = _fill_nonfinite(synthetic[numeric], train[numeric])
    inliers = lambda model, x: float((model.predict(x) == 1).mean() * 100)
    out = {"ocsvm_fit_rows": len(fit_x), "ocsvm_nonfinite_cells_filled": n_fit + n_hold + n_syn}
    poly = OneClassSVM(kernel="poly", degree=2, nu=NU).fit(fit_x)
    out |= {"ocsvm_poly_fit": inliers(poly, fit_x), "ocsvm_poly_holdout": inliers(poly, hold_x),
            "ocsvm_poly_synth": inliers(poly, syn_x)}  # fmt: skip
    scaler = StandardScaler().fit(_fill_nonfinite(train[numeric], train[numeric])[0])
    rbf = OneClassSVM(kernel="rbf", nu=NU, gamma="scale").fit(scaler.transform(fit_x))
    out |= {"ocsvm_rbf_fit": inliers(rbf, scaler.transform(fit_x)),
            "ocsvm_rbf_holdout": inliers(rbf, scaler.transform(hold_x)),
            "ocsvm_rbf_synth": inliers(rbf, scaler.transform(syn_x))}  # fmt: skip
    return out


def _row_hashes(frame: pd.DataFrame, numeric, label) -> pd.Series:
    """One hash per row of the scored columns: floats rounded to 6 decimals, -0.0 as 0.0."""
    scored = frame[numeric].round(6) + 0.0
    if label is not None:
        scored = scored.assign(**{label: frame[label].astype(str).to_numpy()})
    return pd.util.hash_pandas_object(scored, index=False)


def score(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    label: str | None,
    *,
    reference: bool = False,
    ocsvm_rows: int = 5000,
) -> dict:
    """Scores synthetic rows with peers.md's protocol on TRAIN's numeric columns + label.

    Args:
      train, holdout: the real halves (from `prepare`).
      synthetic: rows with at least TRAIN's numeric columns and the label.
      label: the label column, or None (TSTR and TRTR are then None).
      reference: `synthetic` is HOLDOUT itself: TSTR is then tested on TRAIN (the
        other real half), as peers.md's reference row was.
      ocsvm_rows: fit the one-class SVMs on at most this many TRAIN rows.

    Returns:
      shape (mean 1-KS / 1-TVD vs TRAIN), shape_vs_holdout, column_shape (per
      column, vs TRAIN), detection_auc (TRAIN vs synthetic), tstr, trtr,
      tstr_trtr, the OCSVM inlier % (fit set, HOLDOUT, synthetic), copies_pct
      (synthetic rows equal to some TRAIN row), synthetic_label_classes, n_synthetic.
    """
    numeric = numeric_columns(train, label)
    missing = [c for c in [*numeric, *([label] if label else [])] if c not in synthetic.columns]
    if missing:
        raise ValueError(f"synthetic rows lack scored columns {missing}")
    real, hold, syn = (_numeric(f, numeric) for f in (train, holdout, synthetic))
    if label is not None:
        real[label], hold[label], syn[label] = (f[label].astype(str).to_numpy()
                                                for f in (train, holdout, synthetic))  # fmt: skip
    shape, per_column = _shape(real, syn, numeric, label)
    out = {
        "n_synthetic": len(syn),
        "shape": shape,
        "shape_vs_holdout": _shape(hold, syn, numeric, label)[0],
        "column_shape": per_column,
        "detection_auc": _detection_auc(real, syn, numeric, label),
        "tstr": None,
        "trtr": None,
        "tstr_trtr": None,
        "synthetic_label_classes": int(syn[label].nunique()) if label else None,
    }
    if label is not None:
        out["tstr"] = _macro_f1(syn, real if reference else hold, numeric, label)
        out["trtr"] = _macro_f1(real, hold, numeric, label)
        out["tstr_trtr"] = out["tstr"] / out["trtr"] if out["trtr"] else None
    out |= _ocsvm(real, hold, syn, numeric, ocsvm_rows)
    train_hashes = set(_row_hashes(real, numeric, label))
    out["copies_pct"] = float(_row_hashes(syn, numeric, label).isin(train_hashes).mean() * 100)
    return out


def worst_columns(result: dict, k: int = 5) -> list[tuple[str, float]]:
    """The k columns of lowest shape score, worst first."""
    return sorted(result["column_shape"].items(), key=lambda kv: kv[1])[:k]


# ----------------------------------------------------------------------------------------
# Systems.


def parse_overrides(items: list[str]) -> dict:
    """['time_budget_s=200', 'keep_best=True'] -> {'time_budget_s': 200, 'keep_best': True}."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--overrides: expected key=value, got {item!r}")
        text = text.strip()
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            value = text
            for cast in (int, float):
                try:
                    value = cast(text)
                    break
                except ValueError:
                    pass
        out[key.strip()] = value
    return out


def fit_and_sample(
    model: str,
    train: pd.DataFrame,
    label: str | None,
    n: int,
    big_n: int,
    *,
    preset: str,
    steps: int | None,
    overrides: dict,
    seed: int,
) -> dict:
    """Fits one FlowSynthesizer on TRAIN in a throwaway workdir; times fit and sampling."""
    from flowjax import checkpoint  # imports JAX
    from flowjax.synthesizer import FlowSynthesizer

    checkpoint.quiet_orbax_logs()
    workdir = Path(tempfile.mkdtemp(prefix=f"compare_peers_{model}_"))
    try:
        synth = FlowSynthesizer(model, preset, steps=steps, workdir=workdir, overrides=overrides)
        optimizer = synth.config.get("optimizer")
        if steps is not None and optimizer is not None and optimizer.warmup_steps >= steps:
            optimizer.warmup_steps = max(0, steps // 10)  # as paper_table2 does
        t0 = time.perf_counter()
        synth.fit(train, label=label)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        synthetic = synth.sample(n, seed=seed)
        sample_s = time.perf_counter() - t0
        big_rate = None
        if big_n:
            t0 = time.perf_counter()
            big = synth.sample(big_n, seed=seed + 1)
            big_rate = len(big) / (time.perf_counter() - t0)
            del big
        training = {k: synth.metrics[k] for k in TRAINING_KEYS if k in synth.metrics}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"synthetic": synthetic, "fit_s": fit_s, "sample_n_rows_per_s": n / sample_s,
            "sample_big_rows_per_s": big_rate, "training": training}  # fmt: skip


def independent(train: pd.DataFrame, n: int, big_n: int, seed: int) -> dict:
    """flowjax.eval.baselines.independent_marginals, timed like a synthesizer."""
    from flowjax.eval.baselines import independent_marginals

    t0 = time.perf_counter()
    synthetic = independent_marginals(train, n, seed=seed)
    rate = n / (time.perf_counter() - t0)
    big_rate = None
    if big_n:
        t0 = time.perf_counter()
        independent_marginals(train, big_n, seed=seed + 1)
        big_rate = big_n / (time.perf_counter() - t0)
    return {"synthetic": synthetic, "fit_s": 0.0, "sample_n_rows_per_s": rate,
            "sample_big_rows_per_s": big_rate, "training": {}}  # fmt: skip


# ----------------------------------------------------------------------------------------
# Output.


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def table_row(name: str, r: dict) -> list[str]:
    """One line of peers.md's table (after the name)."""
    return [
        _fmt(r["shape"], 3), _fmt(r["detection_auc"], 3), _fmt(r["tstr"], 3),
        _fmt(r["trtr"], 3), _fmt(r["tstr_trtr"], 2),
        f"{_fmt(r['ocsvm_poly_holdout'], 1)} / {_fmt(r['ocsvm_poly_synth'], 1)}",
        f"{_fmt(r['ocsvm_rbf_holdout'], 1)} / {_fmt(r['ocsvm_rbf_synth'], 1)}",
        _fmt(r["copies_pct"], 2), _fmt(r.get("fit_s"), 1),
        _fmt(r.get("sample_n_rows_per_s"), 0), _fmt(r.get("sample_big_rows_per_s"), 0),
    ]  # fmt: skip


def markdown_table(rows: list[tuple[str, list[str]]], big_n: int) -> str:
    big = "100k" if big_n in (0, 100_000) else f"{big_n:,}"  # 0: skipped, shown as –
    header = ["synthesizer", "shape (1-KS/1-TVD) ↑", "detection AUC (0.5 best)", "TSTR macro-F1",
              "TRTR macro-F1", "TSTR/TRTR", "OCSVM-poly raw: inlier % HOLDOUT / synth",
              "OCSVM-RBF scaled: inlier % HOLDOUT / synth", "exact copies of TRAIN %", "fit s",
              "sample n: rows/s", f"sample {big}: rows/s"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([name, *cells]) + " |" for name, cells in rows]
    return "\n".join(lines) + "\n"


def detail_line(name: str, r: dict) -> str:
    """peers.md's per-system line: worst columns, OCSVM fit-set inliers, label classes."""
    worst = ", ".join(f"{c} {v:.2f}" for c, v in worst_columns(r))
    line = (f"- {name}: worst columns {worst}; OCSVM fit-set inlier % poly "
            f"{r['ocsvm_poly_fit']:.1f}, rbf {r['ocsvm_rbf_fit']:.1f}")  # fmt: skip
    if r["synthetic_label_classes"] is not None:
        line += f"; synthetic label classes {r['synthetic_label_classes']}"
    if r.get("training"):
        line += "; training " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r["training"].items()
        )
    return line + "\n"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    frame = load(FLAGS.data)
    stem = FLAGS.data if FLAGS.data in datasets.DATASETS else Path(FLAGS.data).name.split(".")[0]
    label = find_label(frame, FLAGS.label)
    train, holdout, info = prepare(frame, label)
    label = info["label"]
    overrides = parse_overrides(FLAGS.overrides)
    n = len(train)
    start = time.perf_counter()
    classes = info["classes"]
    data_line = (
        f"Data: `{FLAGS.data}`: {info['rows_read']:,} rows x {info['columns_read']} columns read; "
        f"{info['rows_dropped_inf']:,} rows with +-inf dropped; "
        f"{len(info['constant_columns_dropped'])} constant columns dropped; scored: "
        f"{len(info['scored_numeric_columns'])} numeric columns + "
        f"{f'label `{label}` ({classes} classes)' if label else 'no label'}"
        f"; kept for the synthesizers but not scored: {info['kept_not_scored'] or 'none'}. "
        f"Split 50/50 {'stratified' if info['stratified'] else 'unstratified'} (seed 0): "
        f"TRAIN {len(train):,}, HOLDOUT {len(holdout):,}."
        + "".join(f" {note}." for note in info["notes"])
    )
    print(data_line, flush=True)

    systems = [("REFERENCE (synthetic = HOLDOUT)", None)]
    baselines = {"marginals": "marginals (flowjax count baseline)",
                 "independent": "independent marginals (value resampling)"}  # fmt: skip
    for b in FLAGS.baselines:
        if b not in baselines:
            raise app.UsageError(f"--baselines: unknown {b!r}; known: {', '.join(baselines)}")
        systems.append((baselines[b], b))
    systems += [(f"flowjax {m} ({FLAGS.preset})", m) for m in FLAGS.models]
    results = []
    for i, (name, model) in enumerate(systems):
        print(f"[{i + 1}/{len(systems)}] {name}", flush=True)
        if model is None:
            run = {"synthetic": holdout, "fit_s": None, "sample_n_rows_per_s": None,
                   "sample_big_rows_per_s": None, "training": {}}  # fmt: skip
        elif model == "independent":
            run = independent(train, n, FLAGS.big_n, FLAGS.seed)
        elif model == "marginals":
            try:  # the data settings apply to the baseline too; model and loop settings do not
                kept = {k: v for k, v in overrides.items() if k.startswith(("data.", "tokenizer."))}
                run = fit_and_sample(model, train, label, n, FLAGS.big_n, preset=FLAGS.preset,
                                     steps=None, overrides=kept, seed=FLAGS.seed)  # fmt: skip
            except Exception as err:  # noqa: BLE001  (any failure: use the plain baseline)
                logging.warning("FlowSynthesizer('marginals') failed (%s); using "
                                "flowjax.eval.baselines.independent_marginals", err)  # fmt: skip
                name = "marginals (independent_marginals, fallback)"
                run = independent(train, n, FLAGS.big_n, FLAGS.seed)
        else:
            run = fit_and_sample(model, train, label, n, FLAGS.big_n, preset=FLAGS.preset,
                                 steps=FLAGS.steps, overrides=overrides,
                                 seed=FLAGS.seed)  # fmt: skip
        t0 = time.perf_counter()
        result = score(train, holdout, run.pop("synthetic"), label, reference=model is None,
                       ocsvm_rows=FLAGS.ocsvm_rows)  # fmt: skip
        result |= run | {"name": name, "model": model, "score_s": time.perf_counter() - t0}
        results.append(result)
        print("| " + " | ".join([name, *table_row(name, result)]) + " |", flush=True)

    table = markdown_table([(r["name"], table_row(r["name"], r)) for r in results], FLAGS.big_n)
    header = (
        f"# flowjax vs peers, peers.md protocol\n\n{data_line}\n\n"
        f"Preset {FLAGS.preset}; steps {FLAGS.steps or 'preset'}; overrides {overrides or 'none'}; "
        f"sample n = {n:,} (rows/s of the first call, compilation included); "
        f"OCSVMs fitted on at most {FLAGS.ocsvm_rows:,} TRAIN rows; "
        f"total {time.perf_counter() - start:.0f} s.\n\n"
    )
    details = "".join(detail_line(r["name"], r) for r in results)
    text = header + table + "\n" + details
    with_peers = FLAGS.with_peers
    if with_peers is None:
        with_peers = Path(FLAGS.data).name == GROUPED7
    if with_peers:
        text += ("\n## Peers (copied from ../shared/docs/peers.md, measured 2026-11-22)\n\n"
                 + markdown_table(list(PEERS.items()), 100_000))  # fmt: skip
    out_dir = Path(FLAGS.out_dir)
    md = files.write_atomic(out_dir / f"compare_peers_{stem}.md", text)
    payload = {
        "data": FLAGS.data,
        "info": info,
        "preset": FLAGS.preset,
        "steps": FLAGS.steps,
        "overrides": overrides,
        "big_n": FLAGS.big_n,
        "seed": FLAGS.seed,
        "systems": results,
        "peers": PEERS if with_peers else None,
    }
    files.write_atomic(md.with_suffix(".json"), json.dumps(_jsonable(payload), indent=1))
    print("\n" + text)
    print(f"wrote {md} and {md.with_suffix('.json')}")


if __name__ == "__main__":
    app.run(main)
