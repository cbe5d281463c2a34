"""Which split a row is in, and whether it is sampled: pure functions of (seed, row index).

A row's global index is its data row in the file (0-based, header excluded), so any
process can place any row without reading the rest of the table. Hashes are the
splitmix64 finaliser of the index plus a seeded, per-purpose offset: a bijection of the
index, so two rows never share a sample hash.
"""

from __future__ import annotations

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")
_SPLIT, _KEEP, _SAMPLE = 1, 2, 3  # one hash stream per purpose
_GOLDEN = 0x9E3779B97F4A7C15
_STREAM = 0xD1B54A32D192ED03
_MASK = (1 << 64) - 1
_CHUNK = 1 << 20  # rows hashed at once when scanning an index range


def row_hash(rows: np.ndarray, *, seed: int, stream: int) -> np.ndarray:
    """uint64 [N]: splitmix64 of each row index, offset by the seed and the stream."""
    offset = np.uint64((seed * _GOLDEN + stream * _STREAM) & _MASK)
    with np.errstate(over="ignore"):
        x = np.asarray(rows, dtype=np.uint64) + offset
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_uniform(rows: np.ndarray, *, seed: int, stream: int) -> np.ndarray:
    """float64 [N] in [0, 1): the top 53 bits of `row_hash`."""
    return (row_hash(rows, seed=seed, stream=stream) >> np.uint64(11)) * (1.0 / (1 << 53))


def check_fractions(fractions: tuple[float, ...]) -> tuple[float, float, float]:
    """The train/val/test fractions; ValueError unless three non-negative numbers summing to 1."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"config.data.split must be three non-negative numbers summing to 1: "
                         f"{tuple(fractions)}")  # fmt: skip
    return tuple(float(f) for f in fractions)


def split_of(rows: np.ndarray, *, fractions: tuple[float, ...], seed: int) -> np.ndarray:
    """int8 [N]: TRAIN, VAL or TEST for each global row index (not stratified by label)."""
    train, val, _ = check_fractions(fractions)
    u = row_uniform(rows, seed=seed, stream=_SPLIT)
    return np.where(u < train, TRAIN, np.where(u < train + val, VAL, TEST)).astype(np.int8)


def kept(rows: np.ndarray, *, fraction: float, seed: int) -> np.ndarray:
    """bool [N]: the rows in the run's `config.data.fraction` of the table."""
    if not 0 < fraction <= 1:
        raise ValueError(f"config.data.fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.ones(len(rows), dtype=bool)
    return row_uniform(rows, seed=seed, stream=_KEEP) < fraction


def sample_hash(rows: np.ndarray, *, seed: int) -> np.ndarray:
    """uint64 [N]: the key of the bounded sample; it holds the kept rows of least key."""
    return row_hash(rows, seed=seed, stream=_SAMPLE)


def sample_threshold(n_rows: int, *, size: int, fraction: float, seed: int) -> np.uint64:
    """The greatest sample key of the sample: the `size`-th least key among the kept rows of
    0..n_rows-1 (every kept row is sampled when there are at most `size`)."""
    if size < 1:
        raise ValueError(f"the sample needs at least one row, got size {size}")
    best = np.empty(0, dtype=np.uint64)
    for start in range(0, n_rows, _CHUNK):
        rows = np.arange(start, min(n_rows, start + _CHUNK), dtype=np.int64)
        keys = sample_hash(rows[kept(rows, fraction=fraction, seed=seed)], seed=seed)
        best = np.concatenate([best, keys])
        if len(best) > size:
            best = np.partition(best, size - 1)[:size]
    return np.uint64(np.iinfo(np.uint64).max) if len(best) < size else best.max()
