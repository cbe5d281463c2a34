"""Detection: how well a gradient-boosted classifier tells real training rows from a table.

The classifier (`HistGradientBoostingClassifier`, categorical columns as
categories, label included as a feature) is cross-validated on a balanced set:
n training rows against n rows of the scored table, with the same n for the
synthetic table and for the real reference so that the two are comparable.
ROC AUC 0.5 means indistinguishable. Because the AUC saturates at 1.0 for every
imperfect generator on flow data, the detector's log-loss (ln 2 = 0.693 when
indistinguishable) and per-column AUCs are reported as softer readouts.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from flowjax.eval.features import Tables, subsample
from flowjax.eval.report import Row, Section

FOLDS = 5


def _classifier(categorical: np.ndarray, seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.1,
        categorical_features=categorical if categorical.any() else None,
        early_stopping=False,
        random_state=seed,
    )


def _column_aucs(real: np.ndarray, other: np.ndarray, names) -> dict[str, float]:
    """Univariate AUC per numeric column, folded so that 0.5 is best and 1.0 worst."""
    y = np.r_[np.zeros(len(real)), np.ones(len(other))]
    out = {}
    for j, name in enumerate(names):
        x = np.r_[real[:, j], other[:, j]]
        auc = roc_auc_score(y, x) if np.ptp(x) > 0 else 0.5
        out[name] = float(max(auc, 1.0 - auc))
    return out


def detection(tables: Tables, *, max_rows: int) -> Section:
    """Cross-validated real-vs-table ROC AUC and log-loss for synthetic and for the reference.

    Args:
      tables: the aligned tables.
      max_rows: cap on the rows per class.

    Returns:
      A section with AUC and log-loss rows; details hold the worst per-column AUCs.
    """
    start = time.perf_counter()
    enc = tables.encoder
    n = min(len(tables.train), len(tables.holdout), len(tables.synthetic), max_rows)
    rows_out, details, summary = [], {"rows_per_class": n}, {}
    real = subsample(tables.train, n, tables.rng("detection", "train"))
    x_real, cat_mask = enc.tree_features(real, label=True)
    names = list(tables.columns.numeric)
    for which, frame in tables.scored():
        other = subsample(frame, n, tables.rng("detection", which))
        x_other, _ = enc.tree_features(other, label=True)
        x = np.vstack([x_real, x_other])
        y = np.r_[np.zeros(n), np.ones(n)]
        folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=tables.seed)
        proba = cross_val_predict(
            _classifier(cat_mask, tables.seed), x, y, cv=folds, method="predict_proba"
        )[:, 1]
        col_aucs = _column_aucs(x_real[:, : len(names)], x_other[:, : len(names)], names)
        worst = sorted(col_aucs.items(), key=lambda kv: -kv[1])[:5]
        details[which] = {"worst_column_auc": dict(worst)}
        summary[which] = (
            float(roc_auc_score(y, proba)),
            float(log_loss(y, np.clip(proba, 1e-6, 1 - 1e-6))),
            float(np.mean(list(col_aucs.values()))) if col_aucs else float("nan"),
        )
    s, r = summary["synthetic"], summary["reference"]
    rows_out = [
        Row("detection ROC AUC", s[0], r[0], f"HistGB, {FOLDS}-fold, {n:,} rows/class; 0.5 best"),
        Row("detection log-loss", s[1], r[1], "ln 2 = 0.693 when indistinguishable"),
        Row("mean per-column AUC", s[2], r[2], "univariate, folded to >= 0.5; 0.5 best"),
    ]
    notes = []
    if n < max(len(tables.synthetic), len(tables.train)):
        notes.append(f"balanced subsample: {n:,} rows per class for synthetic and reference")
    return Section("detection", rows_out, details, notes, time.perf_counter() - start)
