"""PNG figures of an evaluation report: marginals, correlation differences, per-class TSTR.

Figures are drawn on matplotlib's Agg canvas through `matplotlib.figure.Figure`,
without pyplot, so the caller's backend and global state are left alone.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowjax.eval.features import category_strings, numeric_values
from flowjax.eval.report import EvalReport

MAX_MARGINALS = 9
_COLOURS = {"train": "tab:blue", "holdout": "tab:green", "synthetic": "tab:red"}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _plot_numeric(ax, tables: dict[str, pd.DataFrame], column: str) -> None:
    values = {k: numeric_values(v, [column])[:, 0] for k, v in tables.items()}
    values = {k: v[np.isfinite(v)] for k, v in values.items()}
    magnitude = np.abs(values["train"])
    # Flow columns span many decades: a signed log1p axis shows them where a linear one cannot.
    logged = magnitude.size > 0 and magnitude.max() > 100 * (np.median(magnitude) + 1)
    if logged:
        values = {k: np.sign(v) * np.log1p(np.abs(v)) for k, v in values.items()}
    pooled = np.concatenate([v for v in values.values() if v.size] or [np.zeros(1)])
    bins = np.histogram_bin_edges(pooled, bins=40)
    for name, v in values.items():
        if v.size:
            ax.hist(v, bins=bins, density=True, histtype="step", color=_COLOURS[name], label=name)
    ax.set_xlabel(f"signed log1p({column})" if logged else column, fontsize=7)


def _plot_categorical(ax, tables: dict[str, pd.DataFrame], column: str) -> None:
    freqs = {k: category_strings(v[column]).value_counts(normalize=True) for k, v in tables.items()}
    cats = list(freqs["train"].index[:12])
    x = np.arange(len(cats))
    for i, (name, f) in enumerate(freqs.items()):
        ax.bar(x + (i - 1) * 0.27, f.reindex(cats, fill_value=0.0), 0.27, color=_COLOURS[name])
    ax.set_xticks(x, cats, rotation=60, fontsize=6)
    ax.set_xlabel(column, fontsize=7)


def marginals(report: EvalReport, tables: dict[str, pd.DataFrame]) -> bytes | None:
    """Histograms of train, holdout and synthetic for the columns with the worst shape."""
    fid = report.sections.get("fidelity")
    if fid is None:
        return None
    per_column = fid.details["columns"]
    order = sorted(per_column, key=lambda c: per_column[c]["synthetic"]["shape"])
    columns = order[:MAX_MARGINALS]
    if not columns:
        return None
    ncols = 3
    nrows = -(-len(columns) // ncols)
    fig = Figure(figsize=(4 * ncols, 2.8 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    categorical = set(report.columns["categorical"])
    for ax, col in zip(axes, columns, strict=False):
        (_plot_categorical if col in categorical else _plot_numeric)(ax, tables, col)
        ax.set_title(f"shape {per_column[col]['synthetic']['shape']:.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6)
    fig.suptitle("Marginals of the worst-matched columns (real train / holdout / synthetic)")
    fig.tight_layout()
    return _png(fig)


def correlation_difference(report: EvalReport) -> bytes | None:
    """Heatmaps of Spearman(table) - Spearman(train) for synthetic and for the holdout."""
    fid = report.sections.get("fidelity")
    if fid is None or not fid.details["correlation_columns"]:
        return None
    names = fid.details["correlation_columns"]
    fig = Figure(figsize=(14, 6.5))
    axes = fig.subplots(1, 2)
    image = None
    for ax, which in zip(axes, ("synthetic", "reference"), strict=True):
        diff = np.asarray(fid.details[which]["correlation_difference"], float)
        image = ax.imshow(diff, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(f"{'synthetic' if which == 'synthetic' else 'holdout (reference)'} - train")
        ticks = np.arange(len(names))
        size = max(3, min(7, 400 // max(len(names), 1)))
        ax.set_xticks(ticks, names, rotation=90, fontsize=size)
        ax.set_yticks(ticks, names if which == "synthetic" else [], fontsize=size)
    fig.colorbar(image, ax=axes, shrink=0.7, label="difference of Spearman correlation")
    return _png(fig)


def tstr_bars(report: EvalReport) -> bytes | None:
    """Per-class F1 of the classifier trained on synthetic (TSTR) and on real rows (TRTR)."""
    util = report.sections.get("utility")
    if util is None or "tstr" not in util.details:
        return None
    tstr, trtr = util.details["tstr"]["per_class_f1"], util.details["trtr"]["per_class_f1"]
    classes = list(trtr)
    x = np.arange(len(classes))
    fig = Figure(figsize=(max(5, 0.9 * len(classes) + 2), 3.5))
    ax = fig.subplots()
    ax.bar(x - 0.2, [trtr[c] for c in classes], 0.4, label="TRTR (real train)", color="tab:blue")
    ax.bar(x + 0.2, [tstr[c] for c in classes], 0.4, label="TSTR (synthetic)", color="tab:red")
    ax.set_xticks(x, classes, rotation=30, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 on holdout")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def render_all(
    report: EvalReport, *, train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame
) -> dict[str, bytes]:
    """{file name: PNG bytes} for every figure the report's sections allow."""
    tables = {"train": train, "holdout": holdout, "synthetic": synthetic}
    figures = {
        "marginals.png": marginals(report, tables),
        "correlation_difference.png": correlation_difference(report),
        "tstr_per_class.png": tstr_bars(report),
    }
    return {name: png for name, png in figures.items() if png is not None}
