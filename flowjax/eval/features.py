"""Column alignment, schema inference and the numeric encodings shared by the evaluation metrics.

Every metric compares a table X (synthetic, or the real held-out table as the
reference) with the real training table, so all encodings are fitted on the
training table only. Non-finite cells (CICFlowMeter rate columns hold Infinity
when a flow lasts 0 microseconds) are counted here and replaced by finite
stand-ins from the training table: +inf by the finite max, -inf by the finite
min, NaN by the median.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from flowjax import dialects

# A column whose canonical key is categorical (ports, flags, protocol) is treated
# as categorical only when the training table has at most this many values.
MAX_CATEGORIES = 64
# One-hot and ordinal encodings keep the most frequent training categories; the
# rest share one 'other' slot.
TOP_CATEGORIES = 20
# Skewness above which a non-negative column is log1p-transformed before scaling.
HEAVY_TAIL_SKEW = 2.0
_IDENTIFIER_KEYS = dialects.IP_KEYS | dialects.TIME_KEYS | dialects.ID_KEYS


@dataclasses.dataclass(frozen=True)
class Columns:
    """The columns that the metrics compare, and the ones left out with the reason why."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]  # label included
    label: str | None
    dropped: dict[str, str]

    @property
    def features(self) -> tuple[str, ...]:
        """Every compared column except the label."""
        return tuple(c for c in self.numeric + self.categorical if c != self.label)


def _is_number_like(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _numeric_valued(series: pd.Series) -> bool:
    """True for a categorical column whose values are all numbers (ports, protocol numbers)."""
    if pd.api.types.is_bool_dtype(series):
        return False
    return bool(pd.to_numeric(series, errors="coerce").notna().all())


def infer_columns(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    categorical: Sequence[str] | None = None,
    label: str | None = None,
) -> Columns:
    """Chooses the compared columns and splits them into numeric and categorical.

    Only columns present in all three tables are compared. Identifiers (IPs,
    timestamps, flow ids) and columns constant in the training table are left
    out. The label and non-numeric columns are categorical; other columns are
    categorical when listed in `categorical` or, without that list, when their
    canonical key is a port/flag/protocol key and the training table holds at
    most MAX_CATEGORIES values in them.

    Raises:
      ValueError: naming a `categorical` or `label` column that is not in all tables.
    """
    tables = {"train": train, "holdout": holdout, "synthetic": synthetic}
    common = [c for c in train.columns if c in holdout.columns and c in synthetic.columns]
    dropped = {
        c: "missing from " + ", ".join(n for n, t in tables.items() if c not in t.columns)
        for c in dict.fromkeys([*train.columns, *holdout.columns, *synthetic.columns])
        if c not in common
    }
    keys = dialects.canonical_columns(common)
    for name in [c for c in (label, *(categorical or ())) if c is not None]:
        if name not in common:
            raise ValueError(f"column {name!r} is not in all three tables; common: {common}")
    if label is None:
        label = next((c for c in common if keys.get(c) == "label"), None)
    numeric, cats = [], []
    for col in common:
        values = train[col]
        if keys.get(col) in _IDENTIFIER_KEYS:
            dropped[col] = "identifier (IP, timestamp or flow id)"
        elif col != label and values.nunique(dropna=False) <= 1:
            varies = synthetic[col].nunique(dropna=False) > 1
            dropped[col] = "constant in train" + (" (synthetic varies)" if varies else "")
        elif col == label or not _is_number_like(values):
            cats.append(col)
        elif categorical is not None:
            (cats if col in categorical else numeric).append(col)
        elif keys.get(col) in dialects.CATEGORICAL_KEYS and values.nunique() <= MAX_CATEGORIES:
            cats.append(col)
        else:
            numeric.append(col)
    return Columns(tuple(numeric), tuple(cats), label, dropped)


def category_strings(series: pd.Series) -> pd.Series:
    """Category values as strings that compare equal across tables (6, 6.0, '6' -> '6')."""
    as_num = pd.to_numeric(series, errors="coerce")
    if as_num.notna().sum() != series.notna().sum():
        return series.astype(object).where(series.notna(), "nan").astype(str)
    uniq, inverse = np.unique(as_num.to_numpy(np.float64), return_inverse=True)
    names = np.array(["nan" if np.isnan(u) else f"{u:.15g}" for u in uniq], dtype=object)
    return pd.Series(names[inverse.ravel()], index=series.index)


def numeric_values(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """float64 [N, len(columns)], cells that do not parse as numbers become NaN."""
    if not columns:
        return np.zeros((len(frame), 0))
    return np.column_stack(
        [pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in columns]
    )


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|): heavy tails compressed, sign and zero kept."""
    return np.sign(x) * np.log1p(np.abs(x))


@dataclasses.dataclass
class Encoder:
    """Encodings fitted on the training table: raw finite values, scaled values, categories."""

    columns: Columns
    raw_columns: tuple[str, ...]  # numeric + numeric-valued categoricals, label excluded
    lo: np.ndarray  # [R] finite min of each raw column
    hi: np.ndarray  # [R] finite max
    median: np.ndarray  # [R]
    log_mask: np.ndarray  # [F] numeric columns that get a signed log1p before scaling
    mean: np.ndarray  # [F] after the log
    std: np.ndarray  # [F]
    categories: dict[str, tuple[str, ...]]  # top training categories per categorical column

    @classmethod
    def fit(cls, train: pd.DataFrame, columns: Columns) -> Encoder:
        """Fits the encodings on the training table."""
        raw_cols = tuple(columns.numeric) + tuple(
            c for c in columns.categorical if c != columns.label and _numeric_valued(train[c])
        )
        values = numeric_values(train, raw_cols)
        finite = np.where(np.isfinite(values), values, np.nan)
        with np.errstate(all="ignore"):
            lo = np.nan_to_num(np.nanmin(finite, axis=0, initial=np.inf), posinf=0.0)
            hi = np.nan_to_num(np.nanmax(finite, axis=0, initial=-np.inf), neginf=0.0)
            median = np.nan_to_num(np.nanmedian(finite, axis=0)) if len(train) else lo
        num = cls._finite(values, lo, hi, median)[:, : len(columns.numeric)]
        skew = np.nan_to_num(stats.skew(num, axis=0)) if len(num) > 2 else np.zeros(num.shape[1])
        log_mask = (num.min(axis=0, initial=0.0) >= 0) & (skew > HEAVY_TAIL_SKEW)
        logged = np.where(log_mask, signed_log1p(num), num)
        std = logged.std(axis=0)
        categories = {
            c: tuple(category_strings(train[c]).value_counts().index[:TOP_CATEGORIES])
            for c in columns.categorical
        }
        return cls(
            columns, raw_cols, lo, hi, median, log_mask, logged.mean(axis=0),
            np.where(std > 0, std, 1.0), categories,
        )  # fmt: skip

    @staticmethod
    def _finite(values: np.ndarray, lo, hi, median) -> np.ndarray:
        out = np.where(np.isposinf(values), hi, values)
        out = np.where(np.isneginf(out), lo, out)
        return np.where(np.isnan(out), median, out)

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """float64 [N, R] raw values of `raw_columns`, non-finite cells replaced."""
        return self._finite(numeric_values(frame, self.raw_columns), self.lo, self.hi, self.median)

    def scaled(self, frame: pd.DataFrame) -> np.ndarray:
        """float64 [N, F] numeric columns: log1p where heavy-tailed, then standardised."""
        num = self.raw(frame)[:, : len(self.columns.numeric)]
        return (np.where(self.log_mask, signed_log1p(num), num) - self.mean) / self.std

    def codes(self, frame: pd.DataFrame, column: str) -> np.ndarray:
        """int64 [N] index into the column's top categories; len(categories) = 'other'."""
        cats = self.categories[column]
        codes = pd.Index(cats).get_indexer(np.asarray(category_strings(frame[column]), object))
        return np.where(codes < 0, len(cats), codes).astype(np.int64)

    def one_hot(self, frame: pd.DataFrame, *, label: bool) -> np.ndarray:
        """float64 [N, sum(K_c + 1)] one-hot categories (label included only when asked)."""
        blocks = [
            np.eye(len(self.categories[c]) + 1)[self.codes(frame, c)]
            for c in self.columns.categorical
            if label or c != self.columns.label
        ]
        return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))

    def mixed(self, frame: pd.DataFrame, *, label: bool) -> np.ndarray:
        """float64 [N, D] scaled numerics next to one-hot categoricals, for distances."""
        return np.hstack([self.scaled(frame), self.one_hot(frame, label=label)])

    def tree_features(self, frame: pd.DataFrame, *, label: bool) -> tuple[np.ndarray, np.ndarray]:
        """Inputs for gradient-boosted trees: raw numerics and category codes.

        Returns:
          X: float64 [N, F + C], and a bool [F + C] mask of the categorical columns.
        """
        cats = [c for c in self.columns.categorical if label or c != self.columns.label]
        num = self.raw(frame)[:, : len(self.columns.numeric)]
        codes = [self.codes(frame, c) for c in cats]
        x = np.column_stack([num, *codes]) if codes else num
        return x, np.r_[np.zeros(num.shape[1], bool), np.ones(len(cats), bool)]


def nonfinite_counts(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, int]:
    """Number of NaN/+-inf (or unparseable) cells per column, only columns that have any."""
    values = numeric_values(frame, columns)
    counts = (~np.isfinite(values)).sum(axis=0)
    return {c: int(n) for c, n in zip(columns, counts, strict=True) if n}


def subsample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most n rows drawn without replacement (the frame itself when it is small enough)."""
    if len(frame) <= n:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), size=n, replace=False))]


@dataclasses.dataclass
class Tables:
    """The three aligned tables with the training-fitted encoder, as every metric receives them.

    `synthetic` and `holdout` are the two tables scored against `train`: the
    holdout's score is the reference a perfect generator would reach.
    """

    train: pd.DataFrame
    holdout: pd.DataFrame
    synthetic: pd.DataFrame
    columns: Columns
    encoder: Encoder
    seed: int
    max_quadratic: int  # row cap for the metrics whose cost grows with rows squared

    def scored(self) -> tuple[tuple[str, pd.DataFrame], tuple[str, pd.DataFrame]]:
        """(('synthetic', synthetic), ('reference', holdout)): the two tables under test."""
        return ("synthetic", self.synthetic), ("reference", self.holdout)

    def rng(self, *salt: int | str) -> np.random.Generator:
        """A generator that depends on the seed and the salt only, not on call order.

        Metrics salt with their own name and the scored table's name, so that the
        reference's samples do not depend on the synthetic table.
        """
        words = [s if isinstance(s, int) else zlib.crc32(s.encode()) for s in salt]
        return np.random.default_rng([self.seed, *words])
