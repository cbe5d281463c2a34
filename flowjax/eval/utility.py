"""Utility: train on synthetic, test on real (TSTR) against train on real, test on real (TRTR).

Two classifiers of the same kind (`HistGradientBoostingClassifier`) predict the
label from the other columns: one trained on the synthetic table, one on the
real training table; both are tested on the real held-out table. TRTR is the
reference: what fresh real data of the training table's size gives.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, f1_score

from flowjax.eval.features import Tables, category_strings, subsample
from flowjax.eval.report import Row, Section


def _fit_predict(
    tables: Tables, fit: pd.DataFrame, test_x: np.ndarray, cat_mask: np.ndarray
) -> np.ndarray:
    """Predicted labels (str [N]) of a classifier trained on `fit`."""
    y = category_strings(fit[tables.columns.label]).to_numpy()
    classes = np.unique(y)
    if len(classes) < 2:  # a collapsed generator: its classifier can only answer one class
        return np.full(len(test_x), classes[0] if len(classes) else "")
    x, _ = tables.encoder.tree_features(fit, label=False)
    model = HistGradientBoostingClassifier(
        max_iter=100,
        categorical_features=cat_mask if cat_mask.any() else None,
        early_stopping=False,
        random_state=tables.seed,
    )
    return model.fit(x, y).predict(test_x)


def utility(tables: Tables, *, max_rows: int) -> Section:
    """Macro-F1, accuracy and per-class F1 of TSTR and TRTR on the real held-out table.

    Args:
      tables: the aligned tables; `tables.columns.label` must be set.
      max_rows: cap on the rows each classifier is trained on.

    Returns:
      A section with macro-F1, accuracy and TSTR/TRTR rows; the details hold
      per-class F1 for the bar chart.
    """
    start = time.perf_counter()
    label = tables.columns.label
    if label is None:
        return Section("utility", [], {}, ["no label column: TSTR skipped"])
    test_x, cat_mask = tables.encoder.tree_features(tables.holdout, label=False)
    y_test = category_strings(tables.holdout[label]).to_numpy()
    classes = sorted(np.unique(y_test))
    results = {}
    fits = {"tstr": tables.synthetic, "trtr": tables.train}
    for name, fit in fits.items():
        pred = _fit_predict(
            tables, subsample(fit, max_rows, tables.rng("utility", name)), test_x, cat_mask
        )
        per_class = f1_score(y_test, pred, labels=classes, average=None, zero_division=0)
        results[name] = {
            "macro_f1": float(np.mean(per_class)),
            "accuracy": float(accuracy_score(y_test, pred)),
            "per_class_f1": dict(zip(classes, map(float, per_class), strict=True)),
            "train_rows": min(len(fit), max_rows),
        }
    t, r = results["tstr"], results["trtr"]
    ratio = t["macro_f1"] / r["macro_f1"] if r["macro_f1"] > 0 else float("nan")
    rows = [
        Row("TSTR macro-F1", t["macro_f1"], r["macro_f1"], "reference = TRTR (trained on train)"),
        Row("TSTR accuracy", t["accuracy"], r["accuracy"], "tested on holdout"),
        Row("TSTR / TRTR macro-F1", ratio, 1.0, "1 = as useful as real training data"),
    ]
    synth_classes = set(category_strings(tables.synthetic[label]))
    missing = [c for c in classes if c not in synth_classes]
    notes = [f"classes absent from synthetic: {', '.join(missing)}"] if missing else []
    if len(tables.synthetic) > max_rows:
        notes.append(f"TSTR classifier trained on {max_rows:,} sampled synthetic rows")
    return Section("utility", rows, results, notes, time.perf_counter() - start)
