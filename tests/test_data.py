"""Data: stratified seeded splits and batches that depend only on (seed, step)."""

import numpy as np
import pandas as pd
import pytest

from flowjax.data import get_batch, split_indices, split_tokens


def test_split_is_stratified_seeded_and_disjoint():
    labels = np.array(["a"] * 900 + ["b"] * 90 + ["c"] * 10)
    tokens = np.arange(1000, dtype=np.int32)[:, None].repeat(3, axis=1)
    s = split_tokens(tokens, labels, seed=1)
    idx = np.concatenate([s.train_idx, s.val_idx, s.test_idx])
    assert sorted(idx.tolist()) == list(range(1000))  # a partition
    for part in (s.val_idx, s.test_idx):
        assert set(labels[part]) == {"a", "b", "c"}  # rare class in every split
        assert (labels[part] == "b").sum() == 9
    np.testing.assert_array_equal(s.train[:, 0], s.train_idx)
    again = split_tokens(tokens, labels, seed=1)
    np.testing.assert_array_equal(again.val_idx, s.val_idx)
    assert not np.array_equal(split_tokens(tokens, labels, seed=2).val_idx, s.val_idx)


def test_batches_are_a_function_of_seed_and_step():
    tokens = np.arange(10, dtype=np.int32)[:, None]
    epoch = np.concatenate([get_batch(tokens, step=s, batch_size=5, seed=0) for s in range(2)])
    assert sorted(epoch[:, 0].tolist()) == list(range(10))  # one epoch covers every row once
    straddle = get_batch(tokens, step=1, batch_size=7, seed=0)  # rows 7..13: crosses an epoch
    assert straddle.shape == (7, 1)
    np.testing.assert_array_equal(straddle, get_batch(tokens, step=1, batch_size=7, seed=0))
    assert not np.array_equal(
        get_batch(tokens, step=0, batch_size=5, seed=0),
        get_batch(tokens, step=0, batch_size=5, seed=1),
    )


def test_bad_split_arguments():
    with pytest.raises(ValueError, match="fractions"):
        split_tokens(np.zeros((10, 2), np.int32), fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="3 labels for 10 sentences"):
        split_tokens(np.zeros((10, 2), np.int32), np.array([1, 2, 3]))


def test_split_treats_a_missing_label_as_a_class():
    labels = np.array(["a", None, "b", None, "a", np.nan] * 10, dtype=object)
    tr, va, te = split_indices(len(labels), labels, seed=0)
    for part in (tr, va, te):
        assert pd.isna(labels[part]).any()  # the 30 unlabelled rows are a stratum of their own
