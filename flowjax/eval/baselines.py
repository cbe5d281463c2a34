"""Trivial generators that any real generator must beat, and the train/holdout split they use.

`independent_marginals` keeps every column's distribution and breaks every
relation between columns; `noisy_copies` keeps every relation by copying real
training rows and only blurs numeric values, which a privacy audit must catch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split


def split_holdout(
    frame: pd.DataFrame, *, label: str | None, seed: int = 0, holdout: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Splits real rows into (train, holdout), stratified by the label when there is one.

    Classes with a single row cannot be stratified; they go to the training side.
    """
    if label is None:
        train, test = train_test_split(frame, test_size=holdout, random_state=seed)
        return train.reset_index(drop=True), test.reset_index(drop=True)
    single = frame[label].map(frame[label].value_counts()) < 2
    rest = frame[~single]
    train, test = train_test_split(rest, test_size=holdout, random_state=seed, stratify=rest[label])
    train = pd.concat([train, frame[single]])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def independent_marginals(train: pd.DataFrame, n: int, *, seed: int = 0) -> pd.DataFrame:
    """n rows whose columns are drawn independently from the training columns' values."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {c: train[c].to_numpy()[rng.integers(0, len(train), n)] for c in train.columns}
    )


def noisy_copies(
    train: pd.DataFrame,
    n: int,
    *,
    categorical: Sequence[str] = (),
    noise: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """n training rows drawn with replacement, numeric cells times (1 + noise * N(0, 1)).

    Categorical columns (and non-numeric ones) are copied unchanged; values
    that are 0 stay 0, as multiplicative noise leaves them.
    """
    rng = np.random.default_rng(seed)
    out = train.iloc[rng.integers(0, len(train), n)].reset_index(drop=True)
    for c in out.columns:
        if c in categorical or not pd.api.types.is_numeric_dtype(out[c]):
            continue
        values = out[c].to_numpy(np.float64)
        out[c] = values * (1.0 + noise * rng.standard_normal(n))
    return out
