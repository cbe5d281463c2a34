"""Codecs of network identities and time: address octets, port ranges, timestamps.

- An IPv4 address is four sentence positions, one `OctetCodec` each (`src_ip·1` ...
  `src_ip·4`), every position with its own token range of the octet values the table
  has there: the model learns subnets as prefixes and the output writes the address in
  the input's form (dotted quad or 32-bit integer).
- A port (`PortCodec`) keeps its frequent values exactly; the others fall into the range
  they lie in (well-known 0-1023, registered 1024-49151, dynamic/ephemeral 49152+), one
  token per range, decoded inside the range from a quantile sketch of the table's rare
  ports there, so ephemeral source ports come out as ephemeral ports.
- A timestamp (`TimeCodec`) is a number binned like any other: seconds from the capture's
  start in row mode, or the gap from the previous flow of the stream in trace mode (the
  quantile bins are the same as bins in log space: quantiles do not change under a
  monotone map). It is parsed from and written back in the input's own format
  (`flowjax.timefmt`).

Pure numpy/pandas; state is plain JSON.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from flowjax import addresses, timefmt
from flowjax.codecs import SKETCH_POINTS, NumericCodec

OCTET_SUFFIXES = ("\u00b71", "\u00b72", "\u00b73", "\u00b74")  # src_ip·1 ... src_ip·4
PORT_RANGES = ((0, 1023, "well-known"), (1024, 49151, "registered"), (49152, 65535, "ephemeral"))


def octet_names(column: str) -> list[str]:
    """The sentence names of an IPv4 column's four octets."""
    return [column + s for s in OCTET_SUFFIXES]


@dataclasses.dataclass
class OctetCodec:
    """One octet of an IPv4 column: a token per octet value the table has at that position."""

    name: str  # parent + OCTET_SUFFIXES[index]
    parent: str
    index: int  # 0..3, most significant first
    form: str  # 'dotted' or 'integer', as the input writes the address
    values: list[int]  # the octet values seen at this position, ascending
    offset: int

    @property
    def size(self) -> int:
        return len(self.values)

    def encode(self, octets: np.ndarray) -> np.ndarray:
        """Tokens of int[N, 4] octets (this codec reads column `index`)."""
        v = octets[:, self.index]
        idx = np.searchsorted(self.values, v)
        idx = np.minimum(idx, len(self.values) - 1)
        bad = np.asarray(self.values)[idx] != v
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"column {self.parent!r}, row {row}: octet {int(v[row])} at "
                             f"position {self.index + 1} is not in the table the tokenizer "
                             "was fitted on")  # fmt: skip
        return self.offset + idx

    def decode(self, tok: np.ndarray) -> np.ndarray:
        """Octet values int64[N] of tokens."""
        return np.asarray(self.values, np.int64)[np.clip(tok - self.offset, 0, self.size - 1)]

    def to_dict(self) -> dict:
        return {"type": "octet", **dataclasses.asdict(self)}


def fit_octets(column: str, series: pd.Series, form: str, offset: int) -> list[OctetCodec]:
    """The four octet codecs of an IPv4 column (values from the whole table)."""
    octets = addresses.to_octets(series, form)
    codecs = []
    for k, name in enumerate(octet_names(column)):
        values = np.unique(octets[:, k]).tolist()
        codecs.append(OctetCodec(name, column, k, form, values, offset))
        offset += len(values)
    return codecs


@dataclasses.dataclass
class PortCodec:
    """Frequent ports exactly, then a token per port range holding rare ports, then NaN."""

    name: str
    values: list[int]  # the exact ports, most frequent first
    counts: list[int]  # training rows per exact port
    ranges: list[int]  # indices into PORT_RANGES that hold rare ports, ascending
    sketches: list[list[float]]  # per range: SKETCH_POINTS quantiles of its rare ports
    has_nan: bool
    offset: int

    @property
    def size(self) -> int:
        return len(self.values) + len(self.ranges) + int(self.has_nan)

    @property
    def nan(self) -> int:
        return self.offset + len(self.values) + len(self.ranges)

    def encode(self, series: pd.Series) -> np.ndarray:
        """Tokens of a port column (numbers; NaN where missing)."""
        v = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
        idx = pd.Index(np.asarray(self.values, np.float64)).get_indexer(v)
        which = port_range(v)
        slot = np.searchsorted(self.ranges, which)
        known = (slot < len(self.ranges)) & (
            np.asarray(self.ranges + [-1])[np.minimum(slot, len(self.ranges))] == which
        )
        tok = np.where(idx >= 0, self.offset + idx, self.offset + len(self.values) + slot)
        nan = np.isnan(v)
        tok = np.where(nan, self.nan, tok)
        bad = (idx < 0) & ~known & ~nan | (nan & (not self.has_nan))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"column {self.name!r}, row {row}: port {series.iloc[row]!r} is "
                             "in no range of the table the tokenizer was fitted on")  # fmt: skip
        return tok

    def decode(self, tok: np.ndarray, u: np.ndarray, *, midpoint: bool) -> np.ndarray:
        """Ports float64[N]: exact, or drawn inside their range from its sketch at `u`."""
        local = tok - self.offset
        exact = np.asarray(self.values + [0], np.float64)[np.clip(local, 0, len(self.values))]
        out = exact
        if self.ranges:
            r = np.clip(local - len(self.values), 0, len(self.ranges) - 1)
            sketch = np.asarray(self.sketches, np.float64)[r]  # [N, SKETCH_POINTS]
            pos = (np.full(len(tok), 0.5) if midpoint else u) * (SKETCH_POINTS - 1)
            i = np.minimum(pos.astype(np.int64), SKETCH_POINTS - 2)
            rows = np.arange(len(tok))
            lo, hi = sketch[rows, i], sketch[rows, i + 1]
            bounds = np.asarray([PORT_RANGES[k][:2] for k in self.ranges], np.float64)[r]
            drawn = np.clip(np.round(lo + (hi - lo) * (pos - i)), bounds[:, 0], bounds[:, 1])
            # A draw that hits an exact port would re-encode as that port: take the sketch
            # point below it, a rare port of the table.
            drawn = np.where(np.isin(drawn, self.values), lo, drawn)
            out = np.where(local >= len(self.values), drawn, out)
        if self.has_nan:
            out = np.where(tok == self.nan, np.nan, out)
        return out

    def describe(self) -> str:
        names = [PORT_RANGES[k][2] for k in self.ranges]
        return f"{len(self.values)} exact ports + ranges {names}"

    def to_dict(self) -> dict:
        return {"type": "port", **dataclasses.asdict(self)}


def port_range(v: np.ndarray) -> np.ndarray:
    """The index into PORT_RANGES of each port (values past 65535 count as ephemeral)."""
    return np.searchsorted([r[1] for r in PORT_RANGES[:-1]], v, side="left")


def fit_port(
    column: str, train: pd.Series, whole: pd.Series, max_exact: int, offset: int
) -> PortCodec:
    """Exact tokens for the `max_exact` most frequent ports of the table, ranges for the rest."""
    counts = whole.dropna().value_counts(sort=True)
    kept = [int(x) for x in counts.index[:max_exact]]
    rare = pd.to_numeric(whole.dropna(), errors="coerce").to_numpy(np.float64)
    rare = rare[~np.isin(rare, kept)]
    which = port_range(rare)
    ranges = sorted({int(k) for k in which})
    q = np.linspace(0.0, 1.0, SKETCH_POINTS)
    # Sketch points are rare ports of the table (inverted CDF), never an exact port.
    sketches = [np.quantile(rare[which == k], q, method="inverted_cdf").tolist() for k in ranges]
    train_counts = train.dropna().value_counts()
    return PortCodec(column, kept, [int(train_counts.get(x, 0)) for x in kept], ranges, sketches,
                     bool(whole.isna().any()), offset)  # fmt: skip


@dataclasses.dataclass
class TimeCodec(NumericCodec):
    """A timestamp column binned as seconds after `origin` (row mode) or as gaps (trace mode)."""

    fmt: dict = dataclasses.field(default_factory=dict)  # TimeFormat.to_dict()
    origin: float = 0.0  # epoch seconds of the table's first flow
    gaps: bool = False  # trace mode: the number is the gap from the previous flow
    # Trace mode: quantiles of the real streams' (sessions') start times, in epoch seconds;
    # a generated stream starts at a draw from them (one value: every stream starts there).
    starts: list[float] = dataclasses.field(default_factory=list)

    def numbers(self, series: pd.Series) -> np.ndarray:
        """The modelled numbers of a timestamp column (rows in stream order when `gaps`)."""
        return self.from_seconds(timefmt.parse(series, timefmt.TimeFormat.from_dict(self.fmt)))

    def from_seconds(self, seconds: np.ndarray) -> np.ndarray:
        """The modelled numbers of epoch seconds: after `origin`, or gaps."""
        if self.gaps:  # 0 where time steps back: the first flow of a session (`group_by`)
            return np.maximum(np.diff(seconds, prepend=seconds[:1]), 0.0)
        return seconds - self.origin

    def times(self, numbers: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """The written timestamps of decoded numbers.

        With `gaps`, the rows are len(starts) streams of equal length, one after another,
        and each stream's gaps add up from its start time (one stream from `origin`
        without `starts`); otherwise the numbers are seconds after `origin`.
        """
        if self.gaps:
            starts = np.asarray([self.origin] if starts is None else starts, np.float64)
            seconds = starts[:, None] + np.cumsum(numbers.reshape(len(starts), -1), axis=1)
            seconds = seconds.reshape(-1)
        else:
            seconds = self.origin + numbers
        return timefmt.format(seconds, timefmt.TimeFormat.from_dict(self.fmt))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "type": "time", "fmt": self.fmt, "origin": self.origin,
                "gaps": self.gaps, "starts": self.starts}  # fmt: skip

    def draw_starts(self, u: np.ndarray) -> np.ndarray:
        """Stream start times (epoch seconds) at uniforms `u`: the inverse CDF of `starts`."""
        points = np.asarray(self.starts or [self.origin], np.float64)
        return np.interp(u, np.linspace(0.0, 1.0, len(points)), points)
