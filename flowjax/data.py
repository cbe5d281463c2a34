"""Sentences into training arrays: a seeded stratified split and batches fixed by (seed, step).

Batches are a pure function of the seed and the step, so a run resumed from a
checkpoint at step s sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True)
class Splits:
    """Train/validation/test sentences, each int32[n, 1 + F], and the row indices they came from."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray


def split_indices(
    n: int,
    labels: np.ndarray | None = None,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits row indices 0..n-1 into train/val/test, stratified by `labels` when given.

    Every class with at least three rows gets at least one row in each part
    whose fraction is non-zero, so rare attack classes appear in every split.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1: {fractions}")
    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [
        np.flatnonzero(labels == c) for c in np.unique(labels)
    ]  # fmt: skip
    parts: list[list[np.ndarray]] = [[], [], []]
    for rows in groups:
        rows = rng.permutation(rows)
        n_val = int(round(fractions[1] * len(rows)))
        n_test = int(round(fractions[2] * len(rows)))
        if len(rows) >= 3:
            n_val = max(n_val, int(fractions[1] > 0))
            n_test = max(n_test, int(fractions[2] > 0))
        n_train = len(rows) - n_val - n_test
        parts[0].append(rows[:n_train])
        parts[1].append(rows[n_train : n_train + n_val])
        parts[2].append(rows[n_train + n_val :])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)


def split_tokens(
    tokens: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Splits:
    """Splits sentences int32[N, 1 + F] into train/val/test (stratified by labels if given)."""
    if labels is not None and len(labels) != len(tokens):
        raise ValueError(f"{len(labels)} labels for {len(tokens)} sentences")
    tr, va, te = split_indices(len(tokens), labels, fractions=fractions, seed=seed)
    return Splits(tokens[tr], tokens[va], tokens[te], tr, va, te)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng((seed, epoch)).permutation(n)


def get_batch(tokens: np.ndarray, *, step: int, batch_size: int, seed: int) -> np.ndarray:
    """The batch of training step `step`: rows `step * batch_size ...` of the seeded epoch order.

    Args:
      tokens: int32[N, 1 + F] training sentences.
      step: the global training step (0-based).
      batch_size: the global batch size.
      seed: the data seed; epoch e is shuffled by the generator seeded (seed, e).

    Returns:
      int32[batch_size, 1 + F].
    """
    n = len(tokens)
    if n == 0:
        raise ValueError("no training sentences")
    flat = step * batch_size + np.arange(batch_size)
    epochs, pos = np.divmod(flat, n)
    rows = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        rows[sel] = _epoch_permutation(seed, int(e), n)[pos[sel]]
    return tokens[rows]
