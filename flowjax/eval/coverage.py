"""Coverage: k-nearest-neighbour precision/recall and density/coverage, so mode collapse shows.

Precision and recall follow Kynkäänniemi et al. 2019 ("Improved precision and
recall metric for assessing generative models"): the real manifold is the
union of balls around real rows with radius the distance to their k-th
nearest real neighbour; precision is the share of scored rows inside it, and
recall the share of real rows inside the scored table's own manifold. Density
and coverage follow Naeem et al. 2020 ("Reliable fidelity and diversity
metrics for generative models"). A generator that emits only typical flows has
high precision but low recall and coverage.

Rows are encoded as scaled numerics and one-hot categoricals (label included).
The cost is quadratic in rows, so the real and the scored tables are drawn at
the same size n <= max_quadratic, equal for synthetic and reference.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.neighbors import NearestNeighbors

from flowjax.eval.features import Tables, subsample
from flowjax.eval.report import Row, Section

K = 5
# Distances computed through the dot-product identity carry float error of about
# this size; identical rows must still count as inside a radius-0 ball.
_TOL = 1e-6
_CHUNK = 1024


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """float64 [N] distance from each row of x [N, D] to its k-th nearest other row."""
    dist, _ = NearestNeighbors(n_neighbors=min(k + 1, len(x))).fit(x).kneighbors(x)
    return dist[:, -1]


def manifold_scores(real: np.ndarray, fake: np.ndarray, *, k: int = K) -> dict[str, float]:
    """Precision, recall, density and coverage of fake [M, D] against real [N, D].

    Returns:
      {'precision', 'recall', 'density', 'coverage'}, each in [0, 1] (density can
      exceed 1).
    """
    r_real = knn_radii(real, k) + _TOL
    r_fake = knn_radii(fake, k) + _TOL
    inside_real = np.zeros(len(fake), bool)
    density_count = 0
    min_to_fake = np.full(len(real), np.inf)
    recalled = np.zeros(len(real), bool)
    for lo in range(0, len(fake), _CHUNK):
        d = euclidean_distances(fake[lo : lo + _CHUNK], real)  # [chunk, N]
        within = d <= r_real[None, :]
        inside_real[lo : lo + _CHUNK] = within.any(axis=1)
        density_count += int(within.sum())
        min_to_fake = np.minimum(min_to_fake, d.min(axis=0))
        recalled |= (d <= r_fake[lo : lo + _CHUNK, None]).any(axis=0)
    return {
        "precision": float(inside_real.mean()),
        "recall": float(recalled.mean()),
        "density": density_count / (k * len(fake)),
        "coverage": float(np.mean(min_to_fake <= r_real)),
    }


def coverage(tables: Tables) -> Section:
    """k-NN precision, recall, density and coverage for synthetic and for the reference."""
    start = time.perf_counter()
    n = min(len(tables.train), len(tables.holdout), len(tables.synthetic), tables.max_quadratic)
    enc = tables.encoder
    real = enc.mixed(subsample(tables.train, n, tables.rng("coverage", "train")), label=True)
    scores = {
        which: manifold_scores(
            real, enc.mixed(subsample(frame, n, tables.rng("coverage", which)), label=True)
        )
        for which, frame in tables.scored()
    }
    s, r = scores["synthetic"], scores["reference"]
    rows = [
        Row("k-NN precision", s["precision"], r["precision"], f"k={K}; share inside real manifold"),
        Row("k-NN recall", s["recall"], r["recall"], "share of real rows covered; low = collapse"),
        Row("density", s["density"], r["density"], "Naeem et al. 2020; 1 expected"),
        Row("coverage", s["coverage"], r["coverage"], "Naeem et al. 2020"),
    ]
    notes = []
    if n < max(len(tables.train), len(tables.synthetic)):
        notes.append(f"subsampled to {n:,} rows per table (quadratic cost)")
    return Section("coverage", rows, {"rows": n, **scores}, notes, time.perf_counter() - start)
