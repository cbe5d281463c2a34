"""Fidelity: per-column distances, correlation differences and pairwise trends against training.

Column shape is 1 - KS statistic for numeric columns and 1 - total variation
distance for categorical ones (label included), averaged over columns. The
Wasserstein distance is measured on the scaled values (signed log1p where the
training column is heavy-tailed, then standardised with the training mean and
standard deviation), so it reads in training standard deviations. Correlations
are Spearman's (rank) correlations, robust to the heavy tails of flow columns.
Pairwise trends compare the joint distribution of every column pair, numeric
columns binned at training deciles, by 1 - total variation distance.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
from scipy import stats

from flowjax.eval.features import Tables, category_strings
from flowjax.eval.report import Row, Section

PAIR_BINS = 10


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max |ECDF_a - ECDF_b| over all values."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def tvd(a: pd.Series, b: pd.Series) -> float:
    """Total variation distance between the category frequencies of two columns."""
    pa = category_strings(a).value_counts(normalize=True)
    pb = category_strings(b).value_counts(normalize=True)
    return float(0.5 * pa.sub(pb, fill_value=0.0).abs().sum())


def spearman(x: np.ndarray) -> np.ndarray:
    """float64 [C, C] rank correlations of the columns of x [N, C]; constant columns give 0."""
    ranks = stats.rankdata(x, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(ranks, rowvar=False) if len(x) > 1 else np.eye(x.shape[1])
    corr = np.atleast_2d(np.nan_to_num(corr))
    np.fill_diagonal(corr, 1.0)
    return corr


def _pair_codes(tables: Tables, frame: pd.DataFrame, edges: list[np.ndarray]) -> np.ndarray:
    """int64 [N, C] bin index of every compared column (numeric binned, categorical coded)."""
    enc, cols = tables.encoder, tables.columns
    num = enc.raw(frame)[:, : len(cols.numeric)]
    binned = [np.searchsorted(e, num[:, j], side="right") for j, e in enumerate(edges)]
    return np.column_stack(binned + [enc.codes(frame, c) for c in cols.categorical])


def _pairwise(tables: Tables, frame: pd.DataFrame, base: dict) -> tuple[float, list]:
    codes = _pair_codes(tables, frame, base["edges"])
    sims = []
    for (i, j), (p_train, nj) in zip(base["pairs"], base["joints"], strict=True):
        p = np.bincount(codes[:, i] * nj + codes[:, j], minlength=len(p_train)) / len(frame)
        sims.append(1.0 - 0.5 * np.abs(p - p_train).sum())
    return (float(np.mean(sims)) if sims else float("nan")), sims


def _pair_base(tables: Tables) -> dict:
    """Training-side bins and joint frequencies for every column pair."""
    enc, cols = tables.encoder, tables.columns
    num = enc.raw(tables.train)[:, : len(cols.numeric)]
    qs = np.linspace(0, 1, PAIR_BINS + 1)[1:-1]
    edges = [np.unique(np.quantile(num[:, j], qs)) for j in range(num.shape[1])]
    codes = _pair_codes(tables, tables.train, edges)
    sizes = [len(e) + 1 for e in edges] + [len(enc.categories[c]) + 1 for c in cols.categorical]
    pairs = list(itertools.combinations(range(codes.shape[1]), 2))
    joints = []
    for i, j in pairs:
        counts = np.bincount(codes[:, i] * sizes[j] + codes[:, j], minlength=sizes[i] * sizes[j])
        joints.append((counts / len(codes), sizes[j]))
    return {"edges": edges, "pairs": pairs, "joints": joints}


def fidelity(tables: Tables) -> Section:
    """Column shapes, scaled Wasserstein, correlation difference and pairwise trends.

    Returns:
      A section with headline rows and details: per-column scores, the worst
      columns, the correlation matrices' differences (for the heatmap) and the
      worst column pairs.
    """
    start = time.perf_counter()
    enc, cols = tables.encoder, tables.columns
    train_raw = enc.raw(tables.train)
    train_scaled = enc.scaled(tables.train)
    corr_cols = list(enc.raw_columns)
    train_corr = spearman(train_raw)
    base = _pair_base(tables)
    names = list(cols.numeric) + list(cols.categorical)
    pair_names = [(names[i], names[j]) for i, j in base["pairs"]]
    per_column = {c: {} for c in names}
    rows, details = [], {"columns": per_column, "correlation_columns": corr_cols}
    summary = {}
    for which, frame in tables.scored():
        raw, scaled = enc.raw(frame), enc.scaled(frame)
        shapes, wds = [], []
        for j, c in enumerate(cols.numeric):
            ks = ks_statistic(train_raw[:, j], raw[:, j])
            wd = stats.wasserstein_distance(train_scaled[:, j], scaled[:, j])
            per_column[c][which] = {"ks": ks, "wasserstein_scaled": wd, "shape": 1 - ks}
            shapes.append(1 - ks)
            wds.append(wd)
        for c in cols.categorical:
            d = tvd(tables.train[c], frame[c])
            per_column[c][which] = {"tvd": d, "shape": 1 - d}
            shapes.append(1 - d)
        diff = spearman(raw) - train_corr
        upper = np.abs(diff[np.triu_indices_from(diff, k=1)])
        pair_mean, pair_sims = _pairwise(tables, frame, base)
        worst = np.argsort(shapes)[:5]
        worst_pairs = np.argsort(pair_sims)[:5]
        details[which] = {
            "worst_columns": {names[k]: shapes[k] for k in worst},
            "correlation_difference": diff,
            "worst_pairs": {" x ".join(pair_names[k]): pair_sims[k] for k in worst_pairs},
        }
        summary[which] = {
            "shape": float(np.mean(shapes)) if shapes else float("nan"),
            "wd": float(np.mean(wds)) if wds else float("nan"),
            "corr": float(upper.mean()) if upper.size else 0.0,
            "pairs": pair_mean,
        }
    s, r = summary["synthetic"], summary["reference"]
    rows = [
        Row("column shape (1-KS / 1-TVD)", s["shape"], r["shape"], "mean over columns; 1 best"),
        Row("Wasserstein, scaled", s["wd"], r["wd"], "mean, in training std after log1p"),
        Row(
            "correlation difference (mean abs Δρ)",
            s["corr"],
            r["corr"],
            "mean abs Spearman difference over pairs; 0 best",
        ),
        Row(
            "pairwise trends (1-TVD)",
            s["pairs"],
            r["pairs"],
            f"joint of {len(pair_names)} column pairs, decile bins",
        ),
    ]
    worst = ", ".join(f"{k} {v:.2f}" for k, v in details["synthetic"]["worst_columns"].items())
    notes = [f"worst columns (synthetic shape): {worst}"] if worst else []
    return Section("fidelity", rows, details, notes, time.perf_counter() - start)
