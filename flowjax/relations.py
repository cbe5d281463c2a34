"""Exact relations between the columns of a flow table: found at fit time, enforced when decoding.

Flow meters write many columns that are functions of others (CICFlowMeter's subflow
counts equal the totals, a mean length is total length / packets, rates are totals /
duration), and orderings that hold on every record (min <= mean <= max <= total). A
sequence model that draws each column inside its own bin breaks them. Here they are
discovered on the real table, kept only where they hold on all rows but at most
`1 - MIN_SUPPORT` of them, and then:

- dependent columns (`Copy`, `Formula`, `Lookup`) leave the sentence and are computed
  from the generated row;
- row repairs (`ZeroImplies`, `Chain`) move the fewest free values needed so that the
  orderings and "no packets, no bytes" hold on every synthetic row.

Formulas are not guessed: the candidates are the ones the CICFlowMeter and NetFlow
dialects define (`FORMULAS`, by canonical key), each checked on the data with its unit
scale and its value where the denominator is zero. Equal columns and zero implications
are found among all columns; a second label column that is a function of the label
(UNSW-NB15's `label` of `attack_cat`) becomes a lookup table. Pure numpy/pandas.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from flowjax import dialects

MIN_SUPPORT = 0.999  # a relation is used when it holds on at least this share of the rows
REL_TOL = 5e-3  # CIC's Java meter writes values >= 1e7 with three significant digits
MIN_ZEROS = 0.01  # a zero implication needs its cause to be zero in >= 1 % of the rows
_CHUNK_ROWS = 1 << 18


@dataclasses.dataclass(frozen=True)
class Formula:
    """target = scale * sum(numerator) / (sum(denominator) + offset), with `op` applied.

    `op` is 'div', 'floor' (the Java meter's integer Down/Up ratio) or 'square' (variance
    from std: numerator is the std, no denominator). Where the denominator is zero the
    target takes `at_zero`: a number, or 'ieee' for x/0 = +-inf and 0/0 = `zero_by_zero`
    ('nan' where the column has NaN, else the column's own value for x/0, so that a
    computed column never holds a NaN the real one did not have).
    """

    target: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...] = ()
    offset: float = 0.0
    scale: float = 1.0
    op: str = "div"
    at_zero: float | str = 0.0
    zero_by_zero: str = "nan"

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.numerator + self.denominator

    def compute(self, frame: pd.DataFrame) -> np.ndarray:
        """float64 [N]: the target's value for every row of `frame`."""
        num = sum(frame[c].to_numpy(np.float64) for c in self.numerator)
        if self.op == "square":
            return num * num
        den = sum(frame[c].to_numpy(np.float64) for c in self.denominator) + self.offset
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.scale * num / den
        if self.op == "floor":
            out = np.floor(out)
        if self.at_zero != "ieee":
            return np.where(den == 0, float(self.at_zero), out)
        return np.where((den == 0) & (num == 0), float(self.zero_by_zero), out)

    def describe(self) -> str:
        num = " + ".join(self.numerator)
        if self.op == "square":
            return f"{self.target} = {num}^2"
        den = " + ".join(self.denominator) + (f" {self.offset:+g}" if self.offset else "")
        scale = f"{self.scale:g} * " if self.scale != 1 else ""
        body = f"{scale}({num}) / ({den})"
        return f"{self.target} = {'floor(' + body + ')' if self.op == 'floor' else body}" + (
            "" if self.at_zero == "ieee" else f", {self.at_zero:g} where the denominator is 0"
        )


@dataclasses.dataclass(frozen=True)
class Copy:
    """target == source on every row."""

    target: str
    source: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.source,)

    def compute(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.source].to_numpy()

    def describe(self) -> str:
        return f"{self.target} = {self.source}"


@dataclasses.dataclass(frozen=True)
class Lookup:
    """target = table[source]: a categorical column that is a function of another."""

    target: str
    source: str
    keys: tuple
    values: tuple

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.source,)

    def compute(self, frame: pd.DataFrame) -> np.ndarray:
        idx = pd.Index(list(self.keys)).get_indexer(frame[self.source].to_numpy())
        if (idx < 0).any():
            raise ValueError(f"{self.describe()}: value {frame[self.source].iloc[idx.argmin()]!r} "
                             "has no entry")  # fmt: skip
        return np.asarray(self.values, dtype=object)[idx]

    def describe(self) -> str:
        return f"{self.target} is a function of {self.source} ({len(self.keys)} values)"


@dataclasses.dataclass(frozen=True)
class ZeroImplies:
    """Where `cause` is 0, `effect` is 0 (no backward packets: no backward bytes)."""

    cause: str
    effect: str

    def describe(self) -> str:
        return f"{self.cause} = 0 => {self.effect} = 0"


@dataclasses.dataclass(frozen=True)
class Chain:
    """columns[0] <= columns[1] <= ... on every row (min <= mean <= max <= total)."""

    columns: tuple[str, ...]

    def describe(self) -> str:
        return " <= ".join(self.columns)


@dataclasses.dataclass(frozen=True)
class Bound:
    """low * per <= target <= high * per where per > 0 (NetFlow bytes per packet)."""

    target: str
    per: str
    low: float
    high: float

    def describe(self) -> str:
        return f"{self.low:g} <= {self.target} / {self.per} <= {self.high:g}"


Derived = Formula | Copy | Lookup


@dataclasses.dataclass(frozen=True)
class Relations:
    """What holds on the real table, each with the number of rows it holds on."""

    derived: tuple[Derived, ...] = ()
    zero_implies: tuple[ZeroImplies, ...] = ()
    chains: tuple[Chain, ...] = ()
    bounds: tuple[Bound, ...] = ()
    support: tuple[tuple[str, int], ...] = ()  # describe() -> rows it holds on
    rows: int = 0
    integer: tuple[str, ...] = ()  # columns whose values are whole numbers

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(d.target for d in self.derived)

    def lines(self) -> list[str]:
        """One line per relation: what it says and on how many real rows it holds."""
        held = dict(self.support)
        items = [*self.derived, *self.zero_implies, *self.chains, *self.bounds]
        return [f"{r.describe()} (holds on {held[r.describe()]} of {self.rows} rows)"
                for r in items]  # fmt: skip

    def complete(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Repairs the free columns of generated rows and adds every dependent column."""
        frame = frame.copy()
        for z in self.zero_implies:
            zero = frame[z.cause].to_numpy(np.float64) == 0
            frame[z.effect] = frame[z.effect].where(~zero, 0)
        for b in self.bounds:
            _repair_bound(frame, b, integer=b.target in self.integer)
        targets = set(self.targets)
        for chain in self.chains:  # free columns first, so formulas see ordered inputs
            cols = [c for c in chain.columns if c not in targets]
            _repair_chain(frame, cols, fixed=set(), integer=self.integer)
        for d in _dependency_order(self.derived):
            frame[d.target] = d.compute(frame)
        fixed = targets | {c for d in self.derived for c in d.inputs}  # computed and inputs
        for chain in self.chains:  # then around the computed ones, moving only leaves
            _repair_chain(frame, list(chain.columns), fixed=fixed, integer=self.integer)
        return frame

    def to_dict(self) -> dict:
        def enc(r):
            return {"type": type(r).__name__, **dataclasses.asdict(r)}

        return {
            "derived": [enc(r) for r in self.derived],
            "zero_implies": [dataclasses.asdict(z) for z in self.zero_implies],
            "chains": [list(c.columns) for c in self.chains],
            "bounds": [dataclasses.asdict(b) for b in self.bounds],
            "support": [list(s) for s in self.support],
            "rows": self.rows,
            "integer": list(self.integer),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Relations:
        types = {"Formula": Formula, "Copy": Copy, "Lookup": Lookup}

        def dec(r):
            r = dict(r)
            kind = types[r.pop("type")]
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in r.items()})

        return cls(
            derived=tuple(dec(r) for r in d["derived"]),
            zero_implies=tuple(ZeroImplies(**z) for z in d["zero_implies"]),
            chains=tuple(Chain(tuple(c)) for c in d["chains"]),
            bounds=tuple(Bound(**b) for b in d["bounds"]),
            support=tuple((str(k), int(n)) for k, n in d["support"]),
            rows=int(d["rows"]),
            integer=tuple(d["integer"]),
        )


def _dependency_order(derived: tuple[Derived, ...]) -> list[Derived]:
    """Derived columns ordered so that each is computed after the derived columns it reads."""
    pending, done, out = list(derived), set(), []
    targets = {d.target for d in derived}
    while pending:
        ready = [d for d in pending if all(c not in targets or c in done for c in d.inputs)]
        if not ready:
            raise ValueError(f"derived columns depend on each other in a cycle: {pending}")
        for d in ready:
            out.append(d)
            done.add(d.target)
            pending.remove(d)
    return out


def _repair_chain(frame: pd.DataFrame, cols: list[str], *, fixed: set[str], integer) -> None:
    """Makes cols[0] <= cols[1] <= ... by moving the columns not in `fixed`, in place.

    Each movable value is clipped between the largest fixed value before it and the
    smallest fixed value after it, then lowered to the next movable value above it
    (a running minimum from the top), so totals and computed means stay as they are.
    """
    if len(cols) < 2:
        return
    x = np.stack([frame[c].to_numpy(np.float64) for c in cols], axis=1)
    is_fixed = np.array([c in fixed for c in cols])
    k = len(cols)
    fixed_vals = np.where(is_fixed[None, :], x, np.nan)
    lower = np.fmax.accumulate(np.where(np.isnan(fixed_vals), -np.inf, fixed_vals), axis=1)
    upper = np.fmin.accumulate(np.where(np.isnan(fixed_vals), np.inf, fixed_vals)[:, ::-1], axis=1)[
        :, ::-1
    ]
    for j in range(k - 1, -1, -1):
        if is_fixed[j]:
            continue
        hi = upper[:, j] if j == k - 1 else np.fmin(upper[:, j], x[:, j + 1])
        lo = lower[:, j]
        if cols[j] in integer:
            hi, lo = np.floor(hi), np.ceil(lo)
        x[:, j] = np.fmin(np.fmax(x[:, j], lo), hi)
    for j, c in enumerate(cols):
        if not is_fixed[j]:
            frame[c] = x[:, j].astype(frame[c].dtype, copy=False)


def _repair_bound(frame: pd.DataFrame, b: Bound, *, integer: bool) -> None:
    """Clips `b.target` into [low, high] x `b.per` on the rows where `b.per` > 0, in place."""
    per = frame[b.per].to_numpy(np.float64)
    lo, hi = b.low * per, b.high * per
    if integer:
        lo, hi = np.ceil(lo), np.floor(hi)
    x = frame[b.target].to_numpy(np.float64)
    x = np.where(per > 0, np.fmin(np.fmax(x, lo), np.maximum(hi, lo)), x)
    frame[b.target] = x.astype(frame[b.target].dtype, copy=False)


# ------------------------------------------------------------------ discovery

# Candidate formulas by canonical key: (target, numerator, denominator, offset, op).
# Rates get a unit scale (durations in microseconds or seconds) chosen on the data.
FORMULAS = (
    ("flow_byts_s", ("totlen_fwd_pkts", "totlen_bwd_pkts"), ("flow_duration",), 0, "rate"),
    ("flow_pkts_s", ("tot_fwd_pkts", "tot_bwd_pkts"), ("flow_duration",), 0, "rate"),
    ("fwd_pkts_s", ("tot_fwd_pkts",), ("flow_duration",), 0, "rate"),
    ("bwd_pkts_s", ("tot_bwd_pkts",), ("flow_duration",), 0, "rate"),
    ("fwd_pkt_len_mean", ("totlen_fwd_pkts",), ("tot_fwd_pkts",), 0, "div"),
    ("bwd_pkt_len_mean", ("totlen_bwd_pkts",), ("tot_bwd_pkts",), 0, "div"),
    ("pkt_len_mean", ("totlen_fwd_pkts", "totlen_bwd_pkts"), ("tot_fwd_pkts", "tot_bwd_pkts"),
     0, "div"),
    ("pkt_size_avg", ("totlen_fwd_pkts", "totlen_bwd_pkts"), ("tot_fwd_pkts", "tot_bwd_pkts"),
     0, "div"),
    ("down_up_ratio", ("tot_bwd_pkts",), ("tot_fwd_pkts",), 0, "div"),
    ("down_up_ratio", ("tot_bwd_pkts",), ("tot_fwd_pkts",), 0, "floor"),
    ("flow_iat_mean", ("flow_duration",), ("tot_fwd_pkts", "tot_bwd_pkts"), -1, "div"),
    ("fwd_iat_mean", ("fwd_iat_tot",), ("tot_fwd_pkts",), -1, "div"),
    ("bwd_iat_mean", ("bwd_iat_tot",), ("tot_bwd_pkts",), -1, "div"),
    ("pkt_len_var", ("pkt_len_std",), (), 0, "square"),
)  # fmt: skip
RATE_SCALES = (1e6, 1.0)  # per second from microseconds (CIC Java) or seconds (Python meter)

# Candidate orderings by canonical key; each is cut where a link fails on the data.
CHAINS = (
    *[(f"{d}_pkt_len_min", f"{d}_pkt_len_mean", f"{d}_pkt_len_max", f"totlen_{d}_pkts")
      for d in ("fwd", "bwd")],
    ("pkt_len_min", "pkt_len_mean", "pkt_len_max"),
    ("flow_iat_min", "flow_iat_mean", "flow_iat_max", "flow_duration"),
    *[(f"{d}_iat_min", f"{d}_iat_mean", f"{d}_iat_max", f"{d}_iat_tot") for d in ("fwd", "bwd")],
    *[(f"{f}_min", f"{f}_mean", f"{f}_max") for f in ("active", "idle")],
    *[(f"subflow_{d}_{u}", f"{t}_{d}_pkts") for d in ("fwd", "bwd")
      for u, t in (("pkts", "tot"), ("byts", "totlen"))],
    ("fwd_act_data_pkts", "tot_fwd_pkts"),
    ("src_bytes", "bytes"),  # Argus: the source's bytes are part of the flow's
)  # fmt: skip
# Zero implications the dialects define (no packets in a direction: no bytes, lengths or gaps
# there), used whenever the data has such rows, however few; others need MIN_ZEROS.
ZERO_CAUSES = {
    **{f"tot_{d}_pkts": (f"totlen_{d}_pkts", f"{d}_pkt_len_max", f"{d}_pkt_len_min",
                         f"{d}_pkt_len_std", f"{d}_iat_tot", f"{d}_iat_max", f"{d}_iat_min",
                         f"{d}_iat_std") for d in ("fwd", "bwd")},
    "packets": ("bytes",),
}  # fmt: skip
# Candidate per-unit bounds by canonical key: (total, count); the range is read off the data.
BOUNDS = (("bytes", "packets"), ("totlen_fwd_pkts", "tot_fwd_pkts"),
          ("totlen_bwd_pkts", "tot_bwd_pkts"))  # fmt: skip


def _holds(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        close = np.abs(actual - expected) <= REL_TOL * np.abs(expected) + 1e-9
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    return close | same


def _at_zero(actual: np.ndarray, zero_den: np.ndarray, ieee: np.ndarray) -> float | str | None:
    """The target's value where the denominator is 0: one constant, IEEE x/0, or None."""
    values = actual[zero_den]
    if values.size == 0:
        return 0.0  # never seen: a mean or rate of nothing is written as 0 by both meters
    if np.all(values == values[0]) and np.isfinite(values[0]):
        return float(values[0])
    return "ieee" if _holds(values, ieee[zero_den]).all() else None


Found = list[tuple[object, int]]  # (relation, rows it holds on)


def _find_formulas(frame: pd.DataFrame, keys: dict[str, str], free: set[str]) -> Found:
    """The dialect formulas whose columns are all free and that hold on the data."""
    by_key = {k: c for c, k in keys.items() if c in free}
    found: dict[str, tuple[Formula, int]] = {}
    for target, num, den, offset, op in FORMULAS:
        names = [by_key.get(k) for k in (target, *num, *den)]
        if any(c is None for c in names) or names[0] in found:
            continue
        t, num_c, den_c = names[0], tuple(names[1 : 1 + len(num)]), tuple(names[1 + len(num) :])
        actual = frame[t].to_numpy(np.float64)
        for scale in RATE_SCALES if op == "rate" else (1.0,):
            f = Formula(t, num_c, den_c, float(offset), scale, "div" if op == "rate" else op)
            ieee = dataclasses.replace(f, at_zero="ieee").compute(frame)
            if op != "square":
                zero_den = sum(frame[c].to_numpy(np.float64) for c in den_c) + offset == 0
                at_zero = _at_zero(actual, zero_den, ieee)
                if at_zero is None:
                    continue
                f = dataclasses.replace(f, at_zero=at_zero)
                if at_zero == "ieee" and not np.isnan(actual).any():
                    f = dataclasses.replace(f, zero_by_zero=str(actual[zero_den][0]))
            ok = _holds(actual, f.compute(frame))
            if ok.mean() >= MIN_SUPPORT:
                found[t] = (f, int(ok.sum()))
                break
    return list(found.values())


def _find_copies(frame: pd.DataFrame, columns: list[str]) -> Found:
    """Columns equal to an earlier column on every row (hashed first, then compared)."""
    groups: dict[int, list[str]] = {}
    for c in columns:
        groups.setdefault(int(pd.util.hash_pandas_object(frame[c], index=False).sum()), []).append(
            c
        )
    return [
        (Copy(c, group[0]), len(frame))
        for group in groups.values()
        for c in group[1:]
        if frame[c].equals(frame[group[0]])
    ]


def _find_lookups(frame: pd.DataFrame, label: str | None, categorical: list[str]) -> Found:
    """Other label columns that are a function of the label (one value per class).

    Only columns named like a label (UNSW-NB15's binary `label` beside `attack_cat`):
    on a small table, any column can look like a function of the class by chance.
    """
    if label is None:
        return []
    out = []
    groups = frame.groupby(label, sort=True, dropna=False)
    for c in categorical:
        if c == label or dialects.canonical_name(c) != "label" or frame[c].nunique() < 2:
            continue
        if (groups[c].nunique(dropna=False) == 1).all():
            table = groups[c].first()
            keys = tuple(_py(k) for k in table.index)
            out.append((Lookup(c, label, keys, tuple(_py(v) for v in table.to_numpy())),
                        len(frame)))  # fmt: skip
    return out


def _find_zero_implications(frame: pd.DataFrame, numeric: list[str]) -> Found:
    """Pairs where every row with cause == 0 also has effect == 0 (and the effect varies).

    A cause needs MIN_ZEROS of the rows at zero, unless the dialect declares the pair
    (`ZERO_CAUSES`): then one such row is enough.
    """
    if not numeric:
        return []
    both = np.zeros((len(numeric), len(numeric)))  # [a, b]: rows where a and b are both zero
    for start in range(0, len(frame), _CHUNK_ROWS):  # bounded memory on millions of rows
        chunk = frame[numeric].iloc[start : start + _CHUNK_ROWS].to_numpy(np.float64)
        z = (chunk == 0).astype(np.float32)
        both += z.T @ z
    zeros = np.diag(both)
    keys = [dialects.canonical_name(c) for c in numeric]

    def declared(i: int, j: int) -> bool:
        return keys[j] is not None and keys[j] in ZERO_CAUSES.get(keys[i], ())

    return [
        (ZeroImplies(a, b), len(frame))
        for i, a in enumerate(numeric)
        if 0 < zeros[i] < len(frame)
        for j, b in enumerate(numeric)
        if i != j
        and both[i, j] == zeros[i]
        and zeros[j] < len(frame)
        and (zeros[i] >= MIN_ZEROS * len(frame) or declared(i, j))
    ]


def _find_chains(frame: pd.DataFrame, keys: dict[str, str]) -> Found:
    """The dialect orderings, each cut into the runs of links that hold on the data."""
    by_key = {k: c for c, k in keys.items()}
    out = []
    for candidate in CHAINS:
        cols = [by_key[k] for k in candidate if k in by_key]
        run, held = cols[:1], len(frame)
        for a, b in zip(cols[:-1], cols[1:], strict=False):
            with np.errstate(invalid="ignore"):
                ok = ~(frame[a].to_numpy(np.float64) > frame[b].to_numpy(np.float64))
            if ok.mean() >= MIN_SUPPORT:
                run, held = [*run, b], min(held, int(ok.sum()))
                continue
            if len(run) > 1:
                out.append((Chain(tuple(run)), held))
            run, held = [b], len(frame)
        if len(run) > 1:
            out.append((Chain(tuple(run)), held))
    return out


def _find_bounds(frame: pd.DataFrame, keys: dict[str, str]) -> Found:
    """For each (total, count) pair: the range of total / count over the rows with count > 0."""
    by_key = {k: c for c, k in keys.items()}
    out = []
    for total, count in BOUNDS:
        if total not in by_key or count not in by_key:
            continue
        t, n = (frame[by_key[k]].to_numpy(np.float64) for k in (total, count))
        ratio = t[n > 0] / n[n > 0]
        if ratio.size and np.isfinite(ratio).all():
            bound = Bound(by_key[total], by_key[count], float(ratio.min()), float(ratio.max()))
            out.append((bound, int(ratio.size)))
    return out


def discover(
    frame: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    label: str | None,
) -> Relations:
    """Finds the relations that hold on `frame` among the columns to model.

    Args:
      frame: the whole real table.
      numeric: the columns modelled as numbers, in table order.
      categorical: the columns modelled as categories (label included), in table order.
      label: the label column, or None.

    Returns:
      The relations; their `targets` leave the sentence and are computed when decoding.
    """
    columns = [c for c in frame.columns if c in set(numeric) | set(categorical)]
    copies = _find_copies(frame, columns)
    free = [c for c in columns if c not in {r.target for r, _ in copies}]
    keys = {c: k for c, k in dialects.canonical_columns(free).items()}
    formulas = _find_formulas(frame, keys, set(numeric))
    lookups = _find_lookups(frame, label, [c for c in free if c in set(categorical)])
    derived = [*copies, *formulas, *lookups]
    targets = {r.target for r, _ in derived}
    modelled = [c for c in free if c in set(numeric) and c not in targets]
    zero = _find_zero_implications(frame, modelled)
    chains = _find_chains(frame, {c: k for c, k in keys.items() if c in set(numeric)})
    bounds = _find_bounds(frame, {c: k for c, k in keys.items() if c in set(modelled)})
    found = [*derived, *zero, *chains, *bounds]
    integer = [c for c in numeric if _whole(frame[c].to_numpy(np.float64))]
    return Relations(
        derived=tuple(r for r, _ in derived),
        zero_implies=tuple(r for r, _ in zero),
        chains=tuple(r for r, _ in chains),
        bounds=tuple(r for r, _ in bounds),
        support=tuple((r.describe(), n) for r, n in found),
        rows=len(frame),
        integer=tuple(integer),
    )


def _whole(v: np.ndarray) -> bool:
    v = v[np.isfinite(v)]
    return bool(np.all(v == np.round(v)))


def _py(x):
    """A JSON-safe Python scalar."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else x
    return x
