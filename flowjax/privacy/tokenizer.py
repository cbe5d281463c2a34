"""The DP tokenizer fit: a tokenizer and schema built only from one Gaussian release of histograms.

Public (declared by the user): column names and order, kinds, dtypes, the label's name, the
dialect, and the timestamp formats and address forms of `schema.encodings`; every value is
private. `fit_private` counts the training rows in K histograms, each row adding 1 to one cell
of each (L2 sensitivity sqrt(K) when a row is added or removed), and adds Gaussian noise of std
`noise_multiplier * sqrt(K)` to every cell: one Gaussian mechanism. K = 1 (the row count) + one
per modelled column and per 'constant' fill + 3 per IPv4 column (one histogram per octet).

- Public domains, fixed in advance: numbers on a zero cell (integer kinds and integer-dtype
  categories such as flags: exact cells -255..255) between signed log cells, 16 per decade over
  1e-6..1e15 (values beyond in the end cells), with NaN and +-inf cells for float dtypes when
  `data.nonfinite` keeps them; timestamps in 2**20 equal cells of 1990..2040 (clipped); octets
  0..255; ports 0..65535. A cell is released with its noisy count if that clears z std, else
  with the mean of the smallest aligned dyadic block of unreleased cells whose noisy sum clears
  z std sqrt(cells); z >= 3 allows 0.01 noise-only releases per histogram. The rows no cell
  holds (the noisy row count minus the released mass, if above 3 std of its noise) spread over
  the unreleased ports and octets, or integer categories near the released ones, so that
  unresolved values keep a token (a port range, 'other').
- Unknown domains (strings, the label, other categories, 'constant' fills): a value present is
  kept if its noisy count exceeds tau = 1 + std * Phi^-1(1 - delta_threshold / C), C such
  columns, so a value that one row holds survives in any column with probability at most
  `delta_threshold` in all. The i.i.d. noise goes to values in order of count.

A column with nothing released leaves the sentence, 'missing' with the reason; a 'constant' fill
takes its top released value or is 'missing'. A proxy table of n rows (the noisy row count in
2,000..200,000) is drawn from the releases alone, each column on its own (cells by systematic
sampling, values uniform, log-uniform in log cells), in the input's dtypes, formats and address
forms, and the ordinary tokenizer is fitted on it: every stored edge, sketch and category comes
from the release. The DP schema is never checked on the data: its relations are the dialect's
`FORMULAS` over modelled columns (rates in the dialect's declared unit: seconds for the Python
meter, else microseconds; 0 where the denominator is 0) and `CHAINS`, with no support counts
('holds on 0 of 0 rows'), none with `data.derive` off; other former targets rejoin the sentence.
A row index counts from 0, a rebuilt Flow ID is 'forward', a Zeek header keeps its structure.
Rows with a value the DP tokenizer lacks (`encodable`) are dropped: a filter by the release.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import ml_collections
import numpy as np
import pandas as pd

from flowjax import addresses, dialects, relations, timefmt
from flowjax.codecs import CategoricalCodec, FineCodec, NumericCodec, special_mask
from flowjax.netcodecs import OctetCodec, PortCodec, TimeCodec, port_range
from flowjax.schema import NUMERIC_KINDS, Schema
from flowjax.tokenizer import FlowTokenizer

_PROXY_ROWS = (2_000, 200_000)
_SPURIOUS = 0.01  # expected noise-only releases per public-domain histogram
_LOG_EDGES = 10.0 ** (np.arange(-6 * 16, 15 * 16 + 1) / 16)  # 16 cells per decade, 1e-6..1e15
_RATE_SCALE = {"cic-java": 1e6, "cicflowmeter-python": 1.0}  # duration units per second
_ZEEK_STRUCTURE = ("format", "separator", "set_separator", "empty_field", "unset_field",
                   "path", "fields", "types", "spaced_tail")  # fmt: skip
_NO_RELEASE = "no value passed the differential-privacy release threshold"


@dataclasses.dataclass(frozen=True)
class _Grid:
    """A public ordered domain: exact points between negative and positive log cells."""

    points: np.ndarray  # exact values, ascending
    log_edges: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    whole: bool = True  # values are rounded to integers

    @property
    def n_log(self) -> int:
        return max(len(self.log_edges) - 1, 0)

    @property
    def size(self) -> int:
        return len(self.points) + 2 * self.n_log

    def cells(self, v: np.ndarray) -> np.ndarray:
        """Cell index of finite values: negative log cells, points, positive log cells."""
        r = np.rint(v) if self.whole else v
        i = np.clip(np.searchsorted(self.points, r), 0, len(self.points) - 1)
        if not self.n_log:
            return i
        k = np.clip(np.searchsorted(self.log_edges, np.abs(v), side="right") - 1, 0,
                    self.n_log - 1)  # fmt: skip
        logs = np.where(v > 0, self.n_log + len(self.points) + k, self.n_log - 1 - k)
        return np.where(self.points[i] == r, self.n_log + i, logs)

    def draw(self, cells: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A value inside each cell: the point, or log-uniform at `u` in a log cell."""
        pos = cells - self.n_log
        out = self.points[np.clip(pos, 0, len(self.points) - 1)].astype(np.float64)
        if self.n_log:
            up = pos >= len(self.points)
            k = np.clip(np.where(up, pos - len(self.points), -1 - pos), 0, self.n_log - 1)
            lo, hi = np.log(self.log_edges[k]), np.log(self.log_edges[k + 1])
            mag = np.exp(lo + u * (hi - lo)) * np.where(up, 1.0, -1.0)
            out = np.where((pos < 0) | up, mag, out)
        return np.rint(out) if self.whole else out


@dataclasses.dataclass(frozen=True)
class _Linear:
    """A public linear domain of `size` equal cells over [lo, hi); values beyond are clipped."""

    lo: float
    hi: float
    size: int

    def cells(self, v: np.ndarray) -> np.ndarray:
        cell = np.floor((v - self.lo) / (self.hi - self.lo) * self.size)
        return np.clip(cell, 0, self.size - 1).astype(np.int64)

    def draw(self, cells: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.lo + (cells + u) * (self.hi - self.lo) / self.size


_CONTINUOUS = _Grid(np.zeros(1), _LOG_EDGES, whole=False)
_INTEGERS = _Grid(np.arange(-255.0, 256.0), np.append(255.5, _LOG_EDGES[_LOG_EDGES > 255.5]))
_PORTS = _Grid(np.arange(65536.0))
_OCTETS = _Grid(np.arange(256.0))
_TIMES = _Linear(631152000.0, 2208988800.0, 1 << 20)  # epoch seconds of 1990..2040 UTC


@dataclasses.dataclass(frozen=True)
class _Plan:
    """One histogram: a column (an IPv4 column's octet `part`) over a public grid or its values."""

    column: str
    grid: _Grid | _Linear | None  # None: an unknown domain, thresholded
    specials: bool = False  # NaN, +inf and -inf cells after the grid's
    part: int = 0
    rest: str = ""  # where unplaced rows go (`_with_rest`): '', 'domain' or 'above'
    public: tuple[str, ...] = ()  # the declared values of a column (`config.dp.public_labels`)


@dataclasses.dataclass(frozen=True)
class _Release:
    """Released weights: per grid cell (specials last), or per kept value of an unknown domain."""

    weights: np.ndarray
    values: list | None = None


def fit_private(
    config: ml_collections.ConfigDict,
    train: pd.DataFrame,
    schema: Schema,
    *,
    noise_multiplier: float,
    delta_threshold: float,
    seed: int,
) -> tuple[FlowTokenizer, Schema]:
    """The DP tokenizer and DP schema of the private training rows (see the module docstring).

    Args:
      config: the run config (`tokenizer` settings, as `flowjax.data` fits them).
      train: the private training rows.
      schema: the loaded table's schema (its names, kinds, dtypes and encodings are public).
      noise_multiplier: noise std / L2 sensitivity of the one Gaussian release.
      delta_threshold: the total chance that a value held by one row is released.
      seed: seeds the noise and the proxy draws.

    Returns:
      The tokenizer fitted on the proxy table, and the schema it was fitted with.
    """
    if noise_multiplier <= 0 or not 0 < delta_threshold < 1 or len(train) == 0:
        raise ValueError(f"DP tokenizer: need noise_multiplier > 0, delta_threshold in (0, 1) "
                         f"and rows; got {noise_multiplier}, {delta_threshold}, "
                         f"{len(train)}")  # fmt: skip
    tc = config.tokenizer  # the arguments `flowjax.data` fits the ordinary tokenizer with
    tok = FlowTokenizer(mode=tc.mode, n_bins=tc.n_bins, exact_integers=tc.exact_integers,
                        two_level=tc.get("two_level", False),
                        port_ranges=tc.get("port_ranges", False))  # fmt: skip
    derive = bool(config.data.get("derive", True))  # off: no relations, as without DP
    base, formulas = _public_schema(schema, derive=derive)
    labels = tuple(v.strip() for v in config.dp.get("public_labels", "").split(",") if v.strip())
    plans = _plans(base, nonfinite=config.data.get("nonfinite", "token") == "token",
                   labels=labels)  # fmt: skip
    std = noise_multiplier * math.sqrt(1 + len(plans))
    streams = np.random.default_rng(seed).spawn(1 + 2 * len(plans))
    rows = len(train) + std * streams[0].standard_normal()
    n_open = sum(p.grid is None for p in plans)
    tau = 1.0 - std * NormalDist().inv_cdf(delta_threshold / max(n_open, 1))
    releases = [_with_rest(_release(p, base, train, std, tau, rng), p, rows, std,
                           min_cells=tok.max_categories + 1)
                for p, rng in zip(plans, streams[1::2], strict=True)]  # fmt: skip
    dp_schema = _released_schema(base, formulas, plans, releases, derive=derive)
    n = int(np.clip(round(rows), *_PROXY_ROWS))
    draws: dict[str, list[np.ndarray]] = {}
    for plan, release, rng in zip(plans, releases, streams[2::2], strict=True):
        if plan.column in dp_schema.sentence_columns:
            draws.setdefault(plan.column, []).append(_draw(plan, release, n, rng))
    proxy = pd.DataFrame({c: _column(dp_schema, c, d) for c, d in draws.items()})
    return tok.fit(proxy, dp_schema, vocabulary=proxy), dp_schema


def encodable(tok: FlowTokenizer, frame: pd.DataFrame) -> np.ndarray:
    """bool [rows]: the rows whose every sentence value `tok.encode` accepts.

    Numbers always encode (values beyond the edges fall in the end bins) unless they are
    NaN or +-inf without a token; categories, ports and octets must be ones it kept.
    """
    ok = np.ones(len(frame), dtype=bool)
    octets: dict[str, np.ndarray] = {}
    for codec in tok.codecs:
        if isinstance(codec, FineCodec):
            continue
        if isinstance(codec, OctetCodec):
            if codec.parent not in octets:
                octets[codec.parent] = addresses.to_octets(frame[codec.parent], codec.form)
            ok &= np.isin(octets[codec.parent][:, codec.index], codec.values)
            continue
        series = frame[codec.name]
        if isinstance(codec, NumericCodec):
            v = codec.numbers(series) if isinstance(codec, TimeCodec) else _numbers(series)
            ok &= np.isfinite(v) | np.any([special_mask(s, v) for s in codec.specials], axis=0)
        elif isinstance(codec, PortCodec):
            v = _numbers(series)
            known = np.isin(v, codec.values) | np.isin(port_range(v), codec.ranges)
            ok &= np.where(np.isnan(v), codec.has_nan, known)
        elif isinstance(codec, CategoricalCodec):  # as `CategoricalCodec.encode` looks values up
            keys = pd.Index(np.asarray(codec.values, np.float64 if codec.numeric else object))
            found = keys.get_indexer(_numbers(series) if codec.numeric else series.astype(str))
            ok &= np.where(series.isna().to_numpy(), codec.has_nan, (found >= 0) | codec.has_other)
        else:
            raise TypeError(f"column {codec.name!r}: no encodability rule for {type(codec)}")
    return ok


def _numbers(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(np.float64)


# ------------------------------------------------------------------------ the DP schema


def _public_schema(schema: Schema, *, derive: bool) -> tuple[Schema, list[relations.Formula]]:
    """The schema with the declared formulas, no data-found relations, and public-only fills.

    'constant' fills keep their private value here; `_released_schema` replaces it.
    """
    modelled = [c for c in schema.columns
                if c in schema.sentence_columns or c in schema.relations.targets]  # fmt: skip
    numeric = [c for c in modelled if schema.kind(c) in NUMERIC_KINDS]
    formulas = _formulas(numeric, schema.dialect) if derive else []
    targets = {f.target for f in formulas}
    fills = {c: _public_fill(f) for c, f in schema.fills if c not in modelled}
    fmt = schema.source_format
    return dataclasses.replace(
        schema,
        sentence_columns=tuple(c for c in modelled if c not in targets),
        fills=tuple((c, fills[c]) for c in schema.columns if c in fills),
        relations=relations.Relations(),
        source_format=None if fmt is None else {k: fmt[k] for k in _ZEEK_STRUCTURE if k in fmt},
    ), formulas


def _public_fill(fill: dict) -> dict:
    """A fill without values from the data (a row index counts from 0, a Flow ID forward)."""
    if fill["how"] == "index":
        return {"how": "index", "start": 0}
    if fill["how"] == "flow_id":
        return {**fill, "order": "forward"}
    if fill["how"] in ("constant", "missing"):
        return dict(fill)
    return {"how": "missing", "reason": f"a {fill['how']!r} fill is not differentially private"}


def _formulas(numeric: list[str], dialect: str) -> list[relations.Formula]:
    """The dialect's `FORMULAS` among `numeric` columns, unchecked, 0 where the denominator is 0."""
    by_key = {k: c for c, k in dialects.canonical_columns(numeric).items()}
    found: dict[str, relations.Formula] = {}
    for target, num, den, offset, op in relations.FORMULAS:
        names = [by_key.get(k) for k in (target, *num, *den)]
        if None in names or names[0] in found:
            continue
        scale = _RATE_SCALE.get(dialect, relations.RATE_SCALES[0]) if op == "rate" else 1.0
        found[names[0]] = relations.Formula(
            names[0], tuple(names[1 : 1 + len(num)]), tuple(names[1 + len(num) :]),
            float(offset), scale, "div" if op == "rate" else op, at_zero=0.0,
        )  # fmt: skip
    return list(found.values())


def _released_schema(base: Schema, formulas: list[relations.Formula], plans: list[_Plan],
                     releases: list[_Release], *, derive: bool) -> Schema:  # fmt: skip
    """The DP schema: unreleased columns missing, constants released, relations re-derived."""
    empty = {p.column for p, r in zip(plans, releases, strict=True) if not (r.weights > 0).any()}
    sentence = [c for c in base.sentence_columns if c not in empty]
    fills = dict(base.fills) | {c: {"how": "missing", "reason": _NO_RELEASE} for c in empty}
    for plan, release in zip(plans, releases, strict=True):
        if fills.get(plan.column, {}).get("how") == "constant":
            value = release.values[int(np.argmax(release.weights))]
            value = value.item() if isinstance(value, np.generic) else value
            fills[plan.column] = {"how": "constant", "value": None if pd.isna(value) else value}
    kept = [f for f in formulas if set(f.inputs) <= set(sentence)]
    lost = {"how": "missing", "reason": "its formula's inputs are missing: " + _NO_RELEASE}
    fills |= {f.target: lost for f in formulas if f not in kept}
    present = set(sentence) | {f.target for f in kept}
    numeric = [c for c in base.columns if c in present and base.kind(c) in NUMERIC_KINDS]
    by_key = {k: c for c, k in dialects.canonical_columns(numeric).items()}
    declared = relations.CHAINS if derive else ()
    runs = [tuple(by_key[k] for k in chain if k in by_key) for chain in declared]
    chains = [relations.Chain(run) for run in runs if len(run) >= 2]  # unchecked, as declared
    return dataclasses.replace(
        base,
        sentence_columns=tuple(sentence),
        fills=tuple((c, fills[c]) for c in base.columns if c in fills),
        relations=relations.Relations(
            derived=tuple(kept), chains=tuple(chains),
            support=tuple((r.describe(), 0) for r in [*kept, *chains]),
            integer=tuple(c for c in numeric if base.kind(c) == "integer"),
        ),
    )  # fmt: skip


# ---------------------------------------------------------------------- the histograms


def _plans(schema: Schema, *, nonfinite: bool, labels: tuple[str, ...]) -> list[_Plan]:
    """The histograms of the release: the sentence columns', then the constant fills'.

    The label's histogram is over `labels` when the user declares them (a public domain:
    every declared class keeps a token, whatever its count), else an unknown domain.
    """
    plans = []
    for col in schema.sentence_columns:
        how = (schema.encoding(col) or {}).get("how")
        dtype = np.dtype(schema.dtype(col)) if schema.dtype(col) != "string" else None
        numeric = dtype is not None and dtype.kind in "iuf"
        specials = numeric and dtype.kind == "f" and nonfinite  # else ruled out by dtype or load
        if how == "ipv4":
            plans += [_Plan(col, _OCTETS, part=k, rest="domain") for k in range(4)]
        elif how == "time":
            plans.append(_Plan(col, _TIMES))
        elif schema.kind(col) in NUMERIC_KINDS:
            grid = _INTEGERS if schema.kind(col) == "integer" else _CONTINUOUS
            plans.append(_Plan(col, grid, specials=specials))
        elif numeric and dialects.canonical_name(col) in dialects.PORT_KEYS:
            plans.append(_Plan(col, _PORTS, specials=specials, rest="domain"))
        elif numeric and dtype.kind != "f" and col != schema.label:  # flags, protocol numbers
            plans.append(_Plan(col, _INTEGERS, rest="above"))
        elif col == schema.label and labels:
            plans.append(_Plan(col, None, public=labels))
        else:
            plans.append(_Plan(col, None))
    return plans + [_Plan(c, None) for c, f in schema.fills if f["how"] == "constant"]


def _release(plan: _Plan, schema: Schema, frame: pd.DataFrame, std: float, tau: float,
             rng: np.random.Generator) -> _Release:  # fmt: skip
    """The noisy histogram of one plan, post-processed (floor and dyadic blocks, or tau)."""
    series = frame[plan.column]
    if plan.public:  # rows of an undeclared class count nowhere; `encodable` drops them
        counts = series.astype(str).value_counts()
        noisy = counts.reindex(list(plan.public), fill_value=0).to_numpy(np.float64)
        noisy += std * rng.standard_normal(len(plan.public))
        return _Release(np.maximum(noisy, 0.0), list(plan.public))
    if plan.grid is None:
        counts = series.value_counts(dropna=False)
        order = np.lexsort((counts.index.astype(str).to_numpy(), -counts.to_numpy()))
        noisy = counts.to_numpy()[order] + std * rng.standard_normal(len(order))
        return _Release(noisy[noisy > tau], [counts.index[i] for i in order[noisy > tau]])
    encoding = schema.encoding(plan.column) or {}
    if encoding.get("how") == "ipv4":
        v = addresses.to_octets(series, encoding["form"])[:, plan.part].astype(np.float64)
    elif encoding.get("how") == "time":
        v = timefmt.parse(series, timefmt.TimeFormat.from_dict(encoding["format"]))
    else:
        v = _numbers(series)
    cells = np.zeros(len(v), dtype=np.int64)
    cells[np.isfinite(v)] = plan.grid.cells(v[np.isfinite(v)])
    if plan.specials:  # NaN, +inf, -inf
        for k, mask in enumerate((np.isnan(v), np.isposinf(v), np.isneginf(v))):
            cells[mask] = plan.grid.size + k
    size = plan.grid.size + 3 * plan.specials
    noisy = np.bincount(cells, minlength=size) + std * rng.standard_normal(size)
    tail, floor = noisy[plan.grid.size :], _floor(plan, std)
    return _Release(np.append(_dyadic(noisy[: plan.grid.size], floor), tail * (tail > floor)))


def _floor(plan: _Plan, std: float) -> float:
    """z std, with z >= 3 such that a histogram has 0.01 noise-only releases expected."""
    tests = 2 * (plan.grid.size + 3 * plan.specials)  # cells and dyadic blocks
    return std * max(3.0, -NormalDist().inv_cdf(_SPURIOUS / tests))


def _dyadic(noisy: np.ndarray, floor: float) -> np.ndarray:
    """Mass per ordered cell: a cell's noisy count if it clears `floor`, else the mean of the
    smallest aligned block of 2**j unreleased cells whose noisy sum clears floor * sqrt(cells)."""
    n = len(noisy)
    total = 1 << max(n - 1, 0).bit_length()
    counts, mass = np.zeros(total), np.zeros(total)
    counts[:n] = noisy
    free = np.arange(total) < n
    width = 1
    while width <= total:
        f = free.reshape(-1, width)
        m = f.sum(axis=1)
        s = np.where(f, counts.reshape(-1, width), 0.0).sum(axis=1)
        take = (f & ((m > 0) & (s > floor * np.sqrt(m)))[:, None]).ravel()
        mass[take] = np.repeat(s / np.maximum(m, 1), width)[take]
        free &= ~take
        width *= 2
    return mass[:n]


def _with_rest(
    release: _Release, plan: _Plan, rows: float, std: float, *, min_cells: int
) -> _Release:
    """The release with the rows no released cell holds spread evenly over unreleased cells.

    Every row has one value per column: the rest is the noisy row count minus the released
    mass, used if it clears 3 std of its noise. Ports and octets spread it over the whole
    domain; integer categories over the unreleased cells between the lowest and the highest
    released one, and at least `min_cells`, so the tokenizer has an 'other' token for them.
    """
    used = np.flatnonzero(release.weights > 0)
    rest = rows - release.weights.sum()
    above = plan.rest == "above"
    if not plan.rest or rest <= 3 * std * math.sqrt(1 + len(used)) or (above and not used.size):
        return release
    free = np.flatnonzero(release.weights[: plan.grid.size] == 0)
    if above:
        free = free[free > used[0]]
        free = free[(free < used[-1]) | (np.arange(len(free)) < min_cells)]
    weights = release.weights.copy()
    weights[free] = rest / max(len(free), 1)
    return _Release(weights)


# --------------------------------------------------------------------------- the proxy


def _draw(plan: _Plan, release: _Release, n: int, rng: np.random.Generator) -> np.ndarray:
    """n values of one histogram: each cell gets its share of n rounded down or up (systematic
    sampling), the rows are shuffled, and each value is drawn inside its cell."""
    w = np.maximum(release.weights, 0.0)
    if plan.public:  # each declared value in the proxy at least once, so it keeps its token
        w = np.maximum(w, 2 * max(w.sum(), 1.0) / n)
    cum = np.cumsum(w / w.sum() * n)
    cum[-1] = n
    counts = np.diff(np.floor(np.concatenate([[0.0], cum]) + rng.random())).astype(np.int64)
    cells = rng.permutation(np.repeat(np.arange(len(w)), counts))
    if plan.grid is None:
        values = np.empty(len(release.values), dtype=object)
        values[:] = release.values
        return values[cells]
    out = plan.grid.draw(np.minimum(cells, plan.grid.size - 1), rng.random(n))
    specials = np.asarray([np.nan, np.inf, -np.inf])[np.clip(cells - plan.grid.size, 0, 2)]
    return np.where(cells >= plan.grid.size, specials, out)


def _column(schema: Schema, col: str, draws: list[np.ndarray]) -> pd.Series:
    """A proxy column in the input's dtype, address form or timestamp format."""
    encoding = schema.encoding(col) or {}
    values = draws[0]
    if encoding.get("how") == "ipv4":
        values = addresses.from_octets(np.stack(draws, axis=1), encoding["form"])
    elif encoding.get("how") == "time":
        values = timefmt.format(values, timefmt.TimeFormat.from_dict(encoding["format"]))
    if schema.dtype(col) in ("string", "object"):
        return pd.Series(np.asarray(values, dtype=object), name=col)
    return pd.Series(np.asarray(values), name=col).astype(schema.dtype(col))
