"""Network: ports, sizes, heavy hitters, fan-out, timing and flow traces, against training.

Columns are found by canonical key (`flowjax.dialects`): IPs, ports, protocol,
timestamp, duration, bytes and packets (CICFlowMeter: forward plus backward
totals). A metric whose columns are not in all three tables is left out, and
the section is absent when none applies.

Timestamps are read with `flowjax.timefmt` (numbers it does not take for epoch
times are read as seconds). Value metrics (JSD, Wasserstein, heavy hitters) run
on the same number of rows per table, as in the detection section, because
their sampling noise grows as rows shrink. Time metrics (gaps, per-window
fan-out, flow traces) depend on the flow rate, and a random train/holdout split
thins a capture: a 10 % holdout has a tenth of the training rate. So they run
on tables thinned at random to the lowest density of the three (flows per
second when all have timestamps, else rows); the densities are in the notes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from flowjax import addresses, dialects, timefmt
from flowjax.eval.features import Tables, category_strings, signed_log1p, subsample
from flowjax.eval.report import Row, Section

WINDOW_S = 60.0  # fan-out window
TOP_K = 10  # heavy hitters
TRACE_K = 8  # flows per trace window
TOP_VALUES = 1000  # JSD: most frequent values kept, the rest pooled as 'other'
PREFIX_BITS = 24
FOLDS = 5
MIN_WINDOWS = 20  # per class, below which the trace classifier is not run
IDENTITY = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
AMOUNTS = ("bytes", "packets", "flow_duration")
# Keys summed when the total is missing: CICFlowMeter's forward + backward, Zeek's two sides.
SUMS = {
    "bytes": (("totlen_fwd_pkts", "totlen_bwd_pkts"), ("src_bytes", "dst_bytes")),
    "packets": (("tot_fwd_pkts", "tot_bwd_pkts"),),
}
# (metric name, group key, counted key): distinct values of the counted key per group and window.
FANS = (
    ("fan-out dst_port", "src_ip", "dst_port"),
    ("fan-out dst_ip", "src_ip", "dst_ip"),
    ("fan-in src_ip", "dst_ip", "src_ip"),
)

Metric = tuple[str, float, str]  # (name, value, note)


def seconds(values: pd.Series) -> np.ndarray | None:
    """float64 [N] epoch seconds of a timestamp column (other numbers: seconds); None if unread."""
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values, utc=True)
        return ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)
    fmt = timefmt.detect(values)
    if fmt is not None:
        return np.asarray(timefmt.parse(values, fmt), np.float64)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(np.float64)
    return None


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(np.float64)


def _amount(frame: pd.DataFrame, cols: dict[str, str], key: str) -> np.ndarray | None:
    """A size column by canonical key, or the sum of its parts (SUMS); None when absent."""
    if key in cols:
        return _numbers(frame[cols[key]])
    for parts in SUMS.get(key, ()):
        if all(p in cols for p in parts):
            return sum(_numbers(frame[cols[p]]) for p in parts)
    return None


def network_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The network columns of a table under canonical keys; 'time' in epoch seconds."""
    cols = {key: col for col, key in dialects.canonical_columns(frame.columns).items()}
    out = {k: frame[cols[k]].to_numpy() for k in IDENTITY if k in cols}
    amounts = {k: _amount(frame, cols, k) for k in AMOUNTS}
    out.update({k: v for k, v in amounts.items() if v is not None})
    stamp = next((cols[k] for k in ("timestamp", "timestamp_end") if k in cols), None)
    times = None if stamp is None else seconds(frame[stamp])
    if times is not None:
        out["time"] = times
    return pd.DataFrame(out)


def _time_sorted(view: pd.DataFrame) -> pd.DataFrame:
    """The rows with a finite time, in time order (ties in table order)."""
    view = view[np.isfinite(view["time"].to_numpy())]
    return view.sort_values("time", kind="stable").reset_index(drop=True)


def _aligned(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Views restricted to the keys all tables have, time-sorted when all have a time."""
    views = {name: network_view(f) for name, f in frames.items()}
    common = [k for k in views["train"].columns if all(k in v.columns for v in views.values())]
    if "time" not in common:
        return {name: v[common] for name, v in views.items()}
    return {name: _time_sorted(v[common]) for name, v in views.items()}


def density(view: pd.DataFrame) -> float:
    """Flows per second over the view's time span, or its row count without time."""
    if "time" not in view or len(view) < 2:
        return float(len(view))
    span = view["time"].iloc[-1] - view["time"].iloc[0]
    return len(view) / span if span > 0 else float(len(view))


def equalise(
    views: dict[str, pd.DataFrame], measure: Callable[[pd.DataFrame], float], tables: Tables
) -> dict[str, pd.DataFrame]:
    """Each view thinned at random (order kept) to the lowest `measure` (rows, density) of all."""
    low = min(measure(v) for v in views.values())
    return {
        name: subsample(v, round(len(v) * low / measure(v)), tables.rng("network", name))
        for name, v in views.items()
    }


def jsd(a: pd.Series, b: pd.Series, top: int = TOP_VALUES) -> float:
    """Jensen-Shannon divergence, base 2 (0 same, 1 disjoint), of two columns' value shares.

    Values outside the `top` most frequent of the pooled shares are counted as one 'other'.
    """
    pa = category_strings(a).value_counts(normalize=True)
    pb = category_strings(b).value_counts(normalize=True)
    p = pd.concat([pa, pb], axis=1).fillna(0.0).to_numpy()
    order = np.argsort(-p.sum(axis=1), kind="stable")
    p = np.vstack([p[order[:top]], p[order[top:]].sum(axis=0, keepdims=True)])
    m = p.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / m), 0.0)
    return float(np.clip(0.5 * terms.sum(), 0.0, 1.0))


def log_wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance of the finite values after a signed log1p; NaN if either is empty."""
    a, b = (signed_log1p(x[np.isfinite(x)]) for x in (a, b))
    return float(stats.wasserstein_distance(a, b)) if len(a) and len(b) else float("nan")


def gaps_ms(view: pd.DataFrame) -> np.ndarray:
    """float64 [N - 1] milliseconds between consecutive flows of a time-sorted view."""
    return np.diff(view["time"].to_numpy()) * 1e3


def top_values(values: pd.Series, k: int | None) -> pd.Series:
    """Counts of the k (None: all) most frequent values, ties broken by value, keyed by strings."""
    counts = category_strings(values.dropna()).value_counts()
    counts = counts.rename_axis("value").reset_index(name="n")
    return counts.sort_values(["n", "value"], ascending=[False, True]).set_index("value")["n"][:k]


def heavy_hitters(a: pd.Series, b: pd.Series, k: int = TOP_K) -> tuple[float, float]:
    """(shared share of the two top-k sets, Spearman correlation of counts over their union)."""
    top_a, top_b = top_values(a, k), top_values(b, k)
    size = max(len(top_a), len(top_b))
    overlap = len(top_a.index.intersection(top_b.index)) / size if size else float("nan")
    union = top_a.index.union(top_b.index)
    ca, cb = (top_values(v, None).reindex(union, fill_value=0).to_numpy() for v in (a, b))
    if len(union) < 2 or np.ptp(ca) == 0 or np.ptp(cb) == 0:
        return overlap, float("nan")
    return overlap, float(stats.spearmanr(ca, cb).statistic)


def fan_counts(view: pd.DataFrame, by: str, of: str, window_s: float = WINDOW_S) -> np.ndarray:
    """int64 [G] distinct `of` values per (`by` value, time window); one window without time."""
    keys = [view[by]]
    if "time" in view:
        keys.append(np.floor(view["time"] / window_s))
    return view.groupby(keys, sort=False)[of].nunique().to_numpy(np.int64)


def _distributions(train: pd.DataFrame, other: pd.DataFrame) -> list[Metric]:
    note = f"base 2, top {TOP_VALUES:,} values + other; 0 best, 1 disjoint"
    keys = ("src_port", "dst_port", "protocol")
    return [(f"JSD {k}", jsd(train[k], other[k]), note) for k in keys if k in train]


def _amounts(train: pd.DataFrame, other: pd.DataFrame) -> list[Metric]:
    note = "vs train, on log1p values; 0 best"
    out = []
    for key in (k for k in AMOUNTS if k in train):
        wd = log_wasserstein(train[key].to_numpy(), other[key].to_numpy())
        out.append((f"Wasserstein-1 log1p({key})", wd, note))
    return out


def _hitters(train: pd.DataFrame, other: pd.DataFrame, k: int) -> list[Metric]:

    pairs = []
    for key in (k for k in ("src_ip", "dst_ip") if k in train):
        pairs.append((key, train[key], other[key]))
        nets = [addresses.prefix(v[key], PREFIX_BITS) for v in (train, other)]
        pairs.append((f"{key} /{PREFIX_BITS}", *nets))
    out = []
    for name, a, b in pairs:
        overlap, rho = heavy_hitters(a, b, k)
        out.append((f"top-{k} overlap {name}", overlap, f"|shared| / {k}; 1 best"))
        out.append((f"top-{k} rank correlation {name}", rho, "Spearman of counts; 1 best"))
    return out


def _fans(train: pd.DataFrame, other: pd.DataFrame, window_s: float) -> list[Metric]:
    per = f"per ({{}}, {window_s:g} s window)" if "time" in train else "per {} (whole table)"
    out = []
    for name, by, of in FANS:
        if by not in train or of not in train:
            continue
        base, counts = (fan_counts(v, by, of, window_s) for v in (train, other))
        where = per.format(by)
        p99 = float(np.quantile(counts, 0.99, method="inverted_cdf"))
        out += [
            (f"{name} mean", float(counts.mean()), f"distinct {of} {where}"),
            (f"{name} p99", p99, where),
            (f"{name} Wasserstein-1 log1p", log_wasserstein(base, counts), "vs train; 0 best"),
        ]
    return out


def _distinct_per_row(codes: np.ndarray) -> np.ndarray:
    """int64 [W] number of distinct values in each row of codes [W, k]."""
    return (np.diff(np.sort(codes, axis=1), axis=1) != 0).sum(axis=1) + 1


def trace_features(view: pd.DataFrame, protocols: pd.Index, k: int = TRACE_K) -> np.ndarray:
    """float64 [W, D] per window of k flows: flattened per-flow features, distinct IPs, ports."""
    per_flow = [_numbers(view[c]) for c in ("src_port", "dst_port") if c in view]
    if "protocol" in view:
        per_flow.append(protocols.get_indexer(category_strings(view["protocol"])).astype(float))
    per_flow += [np.log1p(np.clip(view[c].to_numpy(), 0, None)) for c in AMOUNTS if c in view]
    if "time" in view:
        per_flow.append(np.log1p(np.clip(np.r_[np.nan, gaps_ms(view)], 0, None)))
    w = len(view) // k
    blocks = [np.column_stack(per_flow)[: w * k].reshape(w, -1)] if per_flow else []
    for c in ("src_ip", "dst_ip", "src_port", "dst_port"):
        if c in view:
            codes = pd.factorize(view[c].to_numpy()[: w * k])[0].reshape(w, k)
            blocks.append(_distinct_per_row(codes)[:, None].astype(float))
    return np.hstack(blocks) if blocks else np.zeros((w, 0))


def trace_auc(
    train: pd.DataFrame, other: pd.DataFrame, *, max_windows: int, seed: int, k: int = TRACE_K
) -> float | None:
    """Cross-validated ROC AUC of a classifier telling train windows from the other's (0.5 best).

    None when either table has fewer than MIN_WINDOWS windows.
    """
    protocols = pd.Index([])
    if "protocol" in train:
        protocols = pd.Index(pd.unique(category_strings(train["protocol"])))
    x_train, x_other = trace_features(train, protocols, k), trace_features(other, protocols, k)
    n = min(len(x_train), len(x_other), max_windows)
    if n < MIN_WINDOWS:
        return None
    rng = np.random.default_rng(seed)
    pick = [x[rng.permutation(len(x))[:n]] for x in (x_train, x_other)]
    y = np.r_[np.zeros(n), np.ones(n)]
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    model = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=seed)
    proba = cross_val_predict(model, np.vstack(pick), y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def _scores(
    same_n: tuple[pd.DataFrame, pd.DataFrame],
    same_rate: tuple[pd.DataFrame, pd.DataFrame],
    *,
    top_k: int,
    window_s: float,
    max_windows: int,
    seed: int,
) -> list[Metric]:
    """Every applicable metric of one scored view against the training view, both equalised."""
    out = _distributions(*same_n) + _amounts(*same_n) + _hitters(*same_n, top_k)
    train, other = same_rate
    if "time" in train:
        gap = log_wasserstein(gaps_ms(train), gaps_ms(other))
        out.append(("Wasserstein-1 log1p(inter-arrival ms)", gap, "vs train; 0 best"))
    out += _fans(train, other, window_s)
    auc = trace_auc(train, other, max_windows=max_windows, seed=seed)
    if auc is not None:
        order = "time order" if "time" in train else "table order"
        note = f"HistGB, {FOLDS}-fold, windows of {TRACE_K} flows in {order}; 0.5 best"
        out.append(("trace detection ROC AUC", auc, note))
    return out


def network(
    tables: Tables, *, max_windows: int, top_k: int = TOP_K, window_s: float = WINDOW_S
) -> Section | None:
    """Port/protocol JSD, log-scale Wasserstein, heavy hitters, fan-out and trace detection.

    Args:
      tables: the aligned tables (their rows in table order, all columns kept).
      max_windows: cap on the trace windows per class.
      top_k: size of the heavy-hitter lists.
      window_s: fan-out time window in seconds.

    Returns:
      The section, or None when no metric applies (no network column in all tables).
    """
    start = time.perf_counter()
    frames = {"train": tables.train, "synthetic": tables.synthetic, "reference": tables.holdout}
    views = _aligned(frames)
    if views["train"].shape[1] == 0:
        return None
    same_n = equalise(views, len, tables)
    same_rate = equalise(views, density, tables)
    scores = {
        which: _scores(
            (same_n["train"], same_n[which]),
            (same_rate["train"], same_rate[which]),
            top_k=top_k,
            window_s=window_s,
            max_windows=max_windows,
            seed=tables.seed,
        )
        for which, _ in tables.scored()
    }
    values = {which: {name: v for name, v, _ in metrics} for which, metrics in scores.items()}
    row_notes = {name: note for metrics in scores.values() for name, _, note in metrics}
    syn, ref = values["synthetic"], values["reference"]
    rows = [Row(name, syn.get(name), ref.get(name), note) for name, note in row_notes.items()]
    rates = {name: density(v) for name, v in views.items()}
    unit = "flows/s" if "time" in views["train"] else "rows"
    details = {
        "columns": list(views["train"].columns),
        "density": rates,
        "rows_same_n": len(same_n["train"]),
        "rows_same_rate": {name: len(v) for name, v in same_rate.items()},
    }
    notes = [
        f"value metrics on {len(same_n['train']):,} rows per table; time metrics at the lowest"
        f" density (train {rates['train']:,.3g} {unit}, synthetic {rates['synthetic']:,.3g},"
        f" holdout {rates['reference']:,.3g}), the denser tables thinned at random"
    ]
    return Section("network", rows, details, notes, time.perf_counter() - start)
