"""Privacy: distances to the closest training record, exact copies and membership inference.

The held-out table is split in two halves. H2 plays the role of unseen real
data next to an equally large training sample T; H1 plays the role of
synthetic data for the reference. For each scored row (synthetic, or H1):
the distance to the closest record (DCR) in T and in H2. A generator that does
not memorise is as close to H2 as to T, so the share of rows closer to T is
near 0.5; the reference measures it on H1. The membership-inference attack
scores each row of T (members) and H2 (non-members) by its distance to the
nearest scored row; its ROC AUC is 0.5 when the scored table leaks nothing.
Exact copies are counted on all evaluated rows: real flows repeat, so the
synthetic copy rate is read against the holdout's copy rate. Where the tables
have address columns, the share of the synthetic table's distinct addresses that
are real ones is counted (against the original addresses when the training data
was pseudonymised; the holdout's overlap with train is the reference).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from flowjax import dialects
from flowjax.eval.features import Tables, category_strings, numeric_values, subsample
from flowjax.eval.report import Row, Section

# Distances this small count as ties (float error of the dot-product identity).
_TIE = 1e-6


def row_hashes(frame: pd.DataFrame, tables: Tables) -> np.ndarray:
    """uint64 [N] hash of each row's compared values, equal for equal rows across tables."""
    cols = tables.columns
    normalised = pd.DataFrame(numeric_values(frame, cols.numeric), columns=list(cols.numeric))
    for c in cols.categorical:
        normalised[c] = category_strings(frame[c]).to_numpy()
    return pd.util.hash_pandas_object(normalised, index=False).to_numpy()


def exact_copy_share(frame: pd.DataFrame, train_hashes: np.ndarray, tables: Tables) -> float:
    """Share of rows of frame that are identical to some training row (compared columns)."""
    return float(np.isin(row_hashes(frame, tables), train_hashes).mean()) if len(frame) else 0.0


def _nearest(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    dist, _ = NearestNeighbors(n_neighbors=1).fit(reference).kneighbors(queries)
    return dist[:, 0]


def addresses_of(frame: pd.DataFrame) -> set[str]:
    """The distinct values of a table's source and destination address columns, as text."""
    keys = dialects.canonical_columns(frame.columns)
    cols = [c for c, k in keys.items() if k in dialects.IP_KEYS]
    return set(category_strings(pd.concat([frame[c] for c in cols]))) if cols else set()


def _address_row(tables: Tables, real_addresses: set[str] | None) -> Row | None:
    """Share of the synthetic table's distinct addresses that are real, vs the holdout's."""
    synthetic = addresses_of(tables.synthetic)
    if not synthetic:
        return None
    train = addresses_of(tables.train)
    real = real_addresses if real_addresses is not None else train | addresses_of(tables.holdout)
    holdout = addresses_of(tables.holdout)
    return Row(
        "real addresses in the output %",
        100 * len(synthetic & real) / len(synthetic),
        100 * len(holdout & train) / max(len(holdout), 1),
        "distinct addresses; reference: holdout's in train"
        + ("; against the original (pseudonymised run)" if real_addresses is not None else ""),
    )


def privacy(tables: Tables, real_addresses: set[str] | None = None) -> Section:
    """DCR, share closer to training than to holdout, exact copies, membership-inference AUC,
    and the share of synthetic addresses that are real (`real_addresses`: the original ones
    of a pseudonymised run; default, those of train and holdout).

    Returns:
      A section with headline rows; details hold DCR quantiles and sample sizes.
    """
    start = time.perf_counter()
    cap = tables.max_quadratic
    enc = tables.encoder
    perm = tables.rng("privacy", "split").permutation(len(tables.holdout))
    n_h2 = min(len(tables.holdout) // 2, cap)
    h2 = tables.holdout.iloc[np.sort(perm[:n_h2])]
    h1 = subsample(tables.holdout.iloc[np.sort(perm[n_h2:])], cap, tables.rng("privacy", "h1"))
    t = subsample(tables.train, n_h2, tables.rng("privacy", "train"))
    t_dcr = subsample(tables.train, cap, tables.rng("privacy", "train_dcr"))
    x_t, x_h2 = enc.mixed(t, label=True), enc.mixed(h2, label=True)
    x_dcr = enc.mixed(t_dcr, label=True)
    train_hashes = row_hashes(tables.train, tables)
    queries = {
        "synthetic": subsample(tables.synthetic, cap, tables.rng("privacy", "synthetic")),
        "reference": h1,
    }
    out = {}
    for which, frame in queries.items():
        x_q = enc.mixed(frame, label=True)
        dcr = _nearest(x_dcr, x_q)
        d_t, d_h = _nearest(x_t, x_q), _nearest(x_h2, x_q)
        tie = np.abs(d_t - d_h) <= _TIE
        closer = np.where(tie, 0.5, (d_t < d_h).astype(float))
        # Membership inference: members (T) should be nearer to the scored rows.
        member_score = -np.r_[_nearest(x_q, x_t), _nearest(x_q, x_h2)]
        membership = np.r_[np.ones(len(x_t)), np.zeros(len(x_h2))]
        full = tables.synthetic if which == "synthetic" else tables.holdout
        out[which] = {
            "dcr_median": float(np.median(dcr)),
            "dcr_quantiles": dict(
                zip(("p5", "p25", "p50"), np.quantile(dcr, [0.05, 0.25, 0.5]), strict=True)
            ),
            "dcr_zero_share": float(np.mean(dcr <= _TIE)),
            "closer_to_train": float(closer.mean()),
            "exact_copies": exact_copy_share(full, train_hashes, tables),
            "mia_auc": float(roc_auc_score(membership, member_score)),
            "rows": len(frame),
        }
    s, r = out["synthetic"], out["reference"]
    rows = [
        Row(
            "DCR median (scaled)", s["dcr_median"], r["dcr_median"], "distance to closest train row"
        ),
        Row(
            "share closer to train than holdout",
            s["closer_to_train"],
            r["closer_to_train"],
            "0.5 = no memorisation",
        ),
        Row(
            "exact copies of train rows %",
            100 * s["exact_copies"],
            100 * r["exact_copies"],
            "all evaluated rows; real flows repeat",
        ),
        Row("membership-inference AUC", s["mia_auc"], r["mia_auc"], "distance attack; 0.5 best"),
    ]
    address_row = _address_row(tables, real_addresses)
    if address_row is not None:
        rows.append(address_row)
    details = {
        **out,
        "rows": {"train_dcr": len(t_dcr), "train_vs_holdout": len(t), "holdout_half": len(h2)},
    }
    notes = [
        f"DCR to {len(t_dcr):,} train rows; closer-share and membership on {len(t):,} train"
        f" vs {len(h2):,} holdout rows (half of the holdout); {s['rows']:,} synthetic and"
        f" {r['rows']:,} holdout query rows; exact copies on all evaluated rows"
    ]
    return Section("privacy", rows, details, notes, time.perf_counter() - start)
