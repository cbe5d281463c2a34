"""Checks, batch by batch, that what the sample's schema says holds on the whole table.

The schema and its relations are inferred on a bounded sample. Every streamed batch is
then checked: each relation is re-counted and kept only if it holds on the whole table
as `flowjax.relations.discover` requires of the table it reads (exact relations on every
row, formulas and orderings on MIN_SUPPORT of the rows; an ordering is cut at a failing
link); per-unit bounds and whole-number columns are re-read; a column constant in the
sample but not in the table rejoins the sentence with the kind its values give; an
integer column with a fraction becomes continuous; a Flow ID rebuilt from the 5-tuple
stays so only if every row agrees. `final_schema` applies what the batches showed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from flowjax import identities, io, relations
from flowjax.relations import MIN_SUPPORT, Bound, Chain, Copy, Formula, Relations
from flowjax.schema import EXCLUDED_BY_DEFAULT, Schema, infer_kind

_KEEP_VALUES = 100  # values kept of a column that is constant in the sample only


class SchemaTally:
    """Counts, over every batch, the rows each sampled relation and schema fact holds on.

    Args:
      base: the sample's schema after identities, before relations.
      plain: the sample's schema before identities (the fills to fall back on).
      candidates: the relations found on the sample.
    """

    def __init__(self, base: Schema, plain: Schema, candidates: Relations):
        self.base, self.plain, self.candidates = base, plain, candidates
        self.fills = dict(base.fills)
        self.rows = 0
        self.held: dict[str, int] = {}  # derived and zero implications: describe() -> rows
        self.failed: set[str] = set()
        self.links = [np.zeros(len(c.columns) - 1, dtype=np.int64) for c in candidates.chains]
        self.bounds = [[np.inf, -np.inf, 0, True] for _ in candidates.bounds]  # lo, hi, n, ok
        self.whole = dict.fromkeys(candidates.integer, True)
        self.fractional: set[str] = set()  # integer columns with a fraction somewhere
        self.varies: dict[str, list] = {}  # constant in the sample: other values seen
        self.no_flow_id: set[str] = set()  # Flow IDs that some row does not rebuild

    def update(self, frame: pd.DataFrame, path) -> None:
        """Counts one normalised batch (rows indexed by their place in the file)."""
        self.rows += len(frame)
        num = _numbers(frame)
        for d in self.candidates.derived:
            key = d.describe()
            held = None if key in self.failed else _derived_held(d, frame, num)
            if held is None:
                self.failed.add(key)
            else:
                self.held[key] = self.held.get(key, 0) + held
        for z in self.candidates.zero_implies:
            bad = (num(z.cause) == 0) & ~(num(z.effect) == 0)
            self.held[z.describe()] = self.held.get(z.describe(), 0) + len(frame) - int(bad.sum())
        for chain, links in zip(self.candidates.chains, self.links, strict=True):
            for i, (a, b) in enumerate(zip(chain.columns[:-1], chain.columns[1:], strict=True)):
                with np.errstate(invalid="ignore"):
                    links[i] += int((~(num(a) > num(b))).sum())
        for bound, tally in zip(self.candidates.bounds, self.bounds, strict=True):
            _tally_bound(bound, tally, num)
        for col in [c for c, whole in self.whole.items() if whole]:
            self.whole[col] = relations._whole(num(col))
        self._check_schema(frame, num, path)

    def _check_schema(self, frame: pd.DataFrame, num, path) -> None:
        for col, kind in self.base.kinds:
            if kind == "integer" and not relations._whole(num(col)):
                self.fractional.add(col)
            fill = self.fills.get(col, {})
            if fill.get("how") == "constant":
                other = _not_constant(frame[col], fill["value"])
                if other.any():
                    kept = self.varies.setdefault(col, [])
                    kept += frame[col][other].head(_KEEP_VALUES - len(kept)).tolist()
            if fill.get("how") == "flow_id" and identities.flow_id_fill(frame, col) is None:
                self.no_flow_id.add(col)
            if self.base.encoding(col) is not None and frame[col].isna().any():
                row = int(frame.index[np.argmax(frame[col].isna().to_numpy())])
                raise ValueError(f"{path}: column {col!r}, line {row + 2}: a missing value; the "
                                 "sample had none, so the column was put in the sentence as "
                                 "an address or time (data.identities); set "
                                 "data.identities=False or data.out_of_core='off'")  # fmt: skip

    def relations(self) -> Relations:
        """The candidate relations that hold on the whole table, with whole-table support."""
        c, rows = self.candidates, self.rows
        share = lambda key: self.held.get(key, 0) / rows if rows else 0.0
        derived = [d for d in c.derived if d.describe() not in self.failed and (
            share(d.describe()) >= MIN_SUPPORT if isinstance(d, Formula)
            else self.held.get(d.describe()) == rows)]  # fmt: skip
        zero = [z for z in c.zero_implies if self.held.get(z.describe()) == rows]
        chains = []
        for chain, links in zip(c.chains, self.links, strict=True):
            chains += _cut(chain, links, rows)
        bounds = [(dataclasses.replace(b, low=float(lo), high=float(hi)), n)
                  for b, (lo, hi, n, ok) in zip(c.bounds, self.bounds, strict=True)
                  if ok and n]  # fmt: skip
        found = [(r, self.held[r.describe()]) for r in [*derived, *zero]] + chains + bounds
        return Relations(
            derived=tuple(derived),
            zero_implies=tuple(zero),
            chains=tuple(r for r, _ in chains),
            bounds=tuple(r for r, _ in bounds),
            support=tuple((r.describe(), int(n)) for r, n in found),
            rows=rows,
            integer=tuple(col for col, whole in self.whole.items() if whole),
        )

    def final_schema(self, sample: pd.DataFrame, *, derive: bool) -> Schema:
        """The base schema corrected by what the batches showed, with the verified relations."""
        kinds, fills = dict(self.base.kinds), dict(self.base.fills)
        sentence = set(self.base.sentence_columns)
        plain_fills = dict(self.plain.fills)
        for col in self.no_flow_id:
            fills[col] = plain_fills[col]
        for col, values in self.varies.items():
            values = pd.concat([sample[col], pd.Series(values, dtype=sample[col].dtype)])
            kinds[col] = infer_kind(col, values, is_label=False)
            if kinds[col] not in EXCLUDED_BY_DEFAULT:
                sentence.add(col)
                fills.pop(col)
        for col in self.fractional:
            kinds[col] = "continuous"
        columns = self.base.columns
        schema = dataclasses.replace(
            self.base,
            kinds=tuple((col, kinds[col]) for col in columns),
            sentence_columns=tuple(col for col in columns if col in sentence),
            fills=tuple((col, fills[col]) for col in columns if col in fills),
        )
        return io.apply_relations(schema, self.relations()) if derive else schema


def _numbers(frame: pd.DataFrame):
    """`num(col)`: a column of `frame` as float64 [N], converted once."""
    cache: dict[str, np.ndarray] = {}

    def num(col: str) -> np.ndarray:
        if col not in cache:
            cache[col] = frame[col].to_numpy(np.float64, na_value=np.nan)
        return cache[col]

    return num


def _derived_held(d: relations.Derived, frame: pd.DataFrame, num) -> int | None:
    """Rows of `frame` a derived column's relation holds on; None when it cannot be computed."""
    if isinstance(d, Formula):
        return int(relations._holds(num(d.target), d.compute(frame)).sum())
    if isinstance(d, Copy):
        a, b = frame[d.target], frame[d.source]
        return int((a.eq(b) | (a.isna() & b.isna())).sum())
    try:  # a Lookup
        computed = d.compute(frame)
    except ValueError:  # a class the sample did not have
        return None
    actual = frame[d.target].to_numpy(dtype=object)
    return int(((computed == actual) | (pd.isna(computed) & pd.isna(actual))).sum())


def _tally_bound(bound: Bound, tally: list, num) -> None:
    """Adds a batch's range of total / count over its rows with count > 0 to `tally`."""
    per = num(bound.per)
    ratio = num(bound.target)[per > 0] / per[per > 0]
    if ratio.size:
        tally[0], tally[1] = min(tally[0], ratio.min()), max(tally[1], ratio.max())
        tally[2] += ratio.size
        tally[3] = tally[3] and bool(np.isfinite(ratio).all())


def _cut(chain: Chain, links: np.ndarray, rows: int) -> list[tuple[Chain, int]]:
    """The runs of a chain's links that hold on MIN_SUPPORT of the rows, with their support."""
    out, run, held = [], list(chain.columns[:1]), rows
    for b, n in zip(chain.columns[1:], links.tolist(), strict=True):
        if rows and n / rows >= MIN_SUPPORT:
            run, held = [*run, b], min(held, n)
            continue
        if len(run) > 1:
            out.append((Chain(tuple(run)), held))
        run, held = [b], rows
    if len(run) > 1:
        out.append((Chain(tuple(run)), held))
    return out


def _not_constant(values: pd.Series, constant) -> np.ndarray:
    """bool [N]: cells other than the constant (None: NaN)."""
    if constant is None:
        return values.notna().to_numpy()
    return (values.isna() | (values != constant)).to_numpy()
