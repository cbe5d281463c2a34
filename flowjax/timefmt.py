"""Timestamps of flow logs: detected, parsed to epoch seconds, and written back in their own format.

A `TimeFormat` is 'epoch' (numbers in `unit` 's', 'ms', 'us' or 'ns' since 1970-01-01 UTC) or
'text'. A text `unit` is a pattern of strftime-like fields and literal characters:

    %Y  year, four digits           %M  minutes, two digits
    %m  month                       %S  seconds, two digits, then '.' and `decimals` digits
    %d  day of the month                when decimals > 0
    %H  hour, 0-23
    %I  hour on a 12-hour clock written without AM/PM, 1-12 (read as written: '1:00' is 01:00;
        written as (hour + 11) % 12 + 1)

A '-' after the '%' (`%-m`, `%-d`, `%-H`, `%-I`) means the field has no zero padding; any other
character is literal, such as the 'T' between date and time or a trailing 'Z'. Examples:
'%Y-%m-%d %H:%M:%S' (ISO 8601), '%Y/%m/%d %H:%M:%S' with decimals 6 (Argus, CTU-13),
'%-m/%-d/%Y %-I:%M' (CIC-IDS2017 TrafficLabelling), '%d/%m/%Y %H:%M:%S' (CIC-IDS2018).
Naive times are read as UTC. Parsing takes 0 to 9 fractional digits after the seconds; writing
gives exactly `decimals` of them, rounding to the format's `resolution`. Text round trips are
exact to the microsecond (float64 seconds hold about 0.2 us near 2020).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd

EPOCH_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}  # units per second
EPOCH_SECONDS = (4e8, 4.2e9)  # epoch values are accepted as times from 1982 to 2103
_SAMPLE = 1000  # values checked before a full pass over a column
_FIELD = re.compile(r"%(-?)([YmdHIMS])")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SHAPE = (
    r"^(?P<a>\d{1,4})(?P<s1>[-/])(?P<b>\d{1,2})(?P<s2>[-/])(?P<c>\d{1,4})(?P<t>[ T])"
    r"(?P<h>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<z>Z?)$"
)
_LIMITS = {"m": (1, 12), "d": (1, 31), "H": (0, 23), "I": (1, 12), "M": (0, 59), "S": (0, 59)}


@dataclasses.dataclass(frozen=True)
class TimeFormat:
    """How one column writes its timestamps (see the module docstring for `unit`)."""

    kind: str  # 'epoch' or 'text'
    unit: str  # epoch: 's', 'ms', 'us' or 'ns'; text: a pattern
    integer: bool  # epoch: written as integers, not floats
    decimals: int  # digits after the decimal point as written (text: of the seconds)

    def __post_init__(self) -> None:
        if (
            self.kind not in ("epoch", "text")
            or not self.unit.isascii()
            or (self.kind == "epoch" and self.unit not in EPOCH_SCALE)
        ):
            raise ValueError(f"not a time format: {self}")

    def to_dict(self) -> dict:
        """The format as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TimeFormat:
        """The format that `to_dict` wrote."""
        return cls(str(d["kind"]), str(d["unit"]), bool(d["integer"]), int(d["decimals"]))


def resolution(fmt: TimeFormat) -> float:
    """Seconds of the last digit the format writes."""
    if fmt.kind == "epoch":
        return 10.0**-fmt.decimals / EPOCH_SCALE[fmt.unit]
    if fmt.decimals:
        return 10.0**-fmt.decimals
    return 1.0 if "%S" in fmt.unit else 60.0


def detect(values: pd.Series) -> TimeFormat | None:
    """The format of a column of timestamps, or None when it holds anything else."""
    present = values.dropna()
    if present.empty or pd.api.types.is_bool_dtype(values):
        return None
    if pd.api.types.is_numeric_dtype(values):
        return _verified(present, _numeric_epoch(present))
    if pd.api.types.infer_dtype(present, skipna=True) != "string":
        return None
    text = _arrow_text(present)
    if text.iloc[:: max(1, len(text) // _SAMPLE)].str.fullmatch(_NUMBER).all():
        return _verified(present, _text_epoch(text))
    if not text.iloc[:: max(1, len(text) // _SAMPLE)].str.fullmatch(_SHAPE).all():
        return None
    for pattern, decimals in _candidates(text):
        fmt = _verified(present, TimeFormat("text", pattern, False, decimals))
        if fmt is not None:
            return fmt
    return None


def parse(values: pd.Series, fmt: TimeFormat) -> np.ndarray:
    """float64 seconds since the Unix epoch, NaN for missing cells; ValueError names a bad row."""
    if fmt.kind == "epoch":
        return _numbers(values) / EPOCH_SCALE[fmt.unit]
    return _parse_text(values, fmt.unit)


def format(seconds: np.ndarray, fmt: TimeFormat) -> np.ndarray:
    """Seconds written in `fmt`: strings (None where NaN) or epoch numbers, rounded."""
    seconds = np.asarray(seconds, dtype=np.float64)
    if fmt.kind == "epoch":
        numbers = np.round(seconds * EPOCH_SCALE[fmt.unit], fmt.decimals)
        if fmt.integer and np.isfinite(numbers).all():
            return numbers.astype(np.int64)
        return numbers
    ok = np.isfinite(seconds)
    out = np.full(seconds.shape, None, dtype=object)
    out[ok] = _render(fmt, *_whole_and_ticks(seconds[ok], fmt))
    return out


def _verified(present: pd.Series, fmt: TimeFormat | None) -> TimeFormat | None:
    """`fmt` if every present value parses with it (epochs: to a plausible time), else None."""
    if fmt is None:
        return None
    try:
        seconds = parse(present, fmt)
    except ValueError:
        return None
    if fmt.kind == "epoch" and not _plausible(seconds):
        return None
    return fmt


def _plausible(seconds: np.ndarray) -> bool:
    """Whether all seconds are finite and inside `EPOCH_SECONDS`."""
    return bool(np.all((seconds >= EPOCH_SECONDS[0]) & (seconds <= EPOCH_SECONDS[1])))


def _epoch_unit(numbers: np.ndarray) -> str | None:
    """The unit in which all numbers are plausible epoch times, if any."""
    for unit, scale in EPOCH_SCALE.items():
        if _plausible(numbers / scale):
            return unit
    return None


def _numeric_epoch(present: pd.Series) -> TimeFormat | None:
    """The epoch format of a numeric column, if its values are epoch times."""
    numbers = present.to_numpy(np.float64)
    unit = _epoch_unit(numbers)
    if unit is None:
        return None
    integer = pd.api.types.is_integer_dtype(present)
    return TimeFormat("epoch", unit, integer, 0 if integer else _float_decimals(numbers))


def _text_epoch(text: pd.Series) -> TimeFormat | None:
    """The epoch format of numbers written as text, if they are epoch times."""
    if not text.str.fullmatch(_NUMBER).all():
        return None
    numbers = _numbers(text)
    unit = _epoch_unit(numbers)
    if unit is None:
        return None
    if text.str.contains("[eE]").any():
        decimals = _float_decimals(numbers)
    else:
        decimals = int(text.str.extract(r"\.(\d*)", expand=False).str.len().fillna(0).max())
    return TimeFormat("epoch", unit, bool(text.str.fullmatch(r"[-+]?\d+").all()), decimals)


def _float_decimals(numbers: np.ndarray) -> int:
    """The fewest decimals (0-9) that write every float exactly."""
    for decimals in range(10):
        scaled = numbers * 10.0**decimals
        if np.all(np.abs(scaled - np.rint(scaled)) <= 4 * np.spacing(np.abs(scaled))):
            return decimals
    return 9


def _numbers(values: pd.Series) -> np.ndarray:
    """float64 of numbers or numeric text, NaN for missing; ValueError names the first bad row."""
    numbers = pd.to_numeric(values, errors="coerce")
    raise_at_first(values, numbers.isna() & values.notna(), "is not a number")
    return numbers.to_numpy(np.float64, na_value=np.nan)


def raise_at_first(values: pd.Series, bad: np.ndarray | pd.Series, what: str) -> None:
    """ValueError naming the first row where `bad` (aligned with `values`) holds."""
    rows = np.flatnonzero(np.asarray(bad, dtype=bool))
    if len(rows):
        label, value = values.index[rows[0]], values.iloc[rows[0] : rows[0] + 1].tolist()[0]
        raise ValueError(f"row {label}: {value!r} {what}")


def _candidates(text: pd.Series) -> list[tuple[str, int]]:
    """Patterns (with decimals) that may fit text timestamps, the likeliest first."""
    parts = text.str.extract(_SHAPE)
    seps, clock, zone = parts["s1"].unique(), parts["t"].unique(), parts["z"].unique()
    if len(seps) != 1 or not parts["s2"].eq(seps[0]).all() or len(clock) != 1 or len(zone) != 1:
        return []
    has_seconds = parts["S"].str.len().gt(0)  # Arrow leaves unmatched optional groups empty
    if has_seconds.any() and not has_seconds.all():
        return []
    seconds = ":%S" if has_seconds.all() else ""
    decimals = int(parts["f"].str.len().fillna(0).max())
    if parts["a"].str.len().eq(4).all():
        padded = _padding(parts, ["b", "c", "h"])
        date = f"%Y{seps[0]}{_f('m', padded['b'])}{seps[0]}{_f('d', padded['c'])}"
        return [(f"{date}{clock[0]}{_f('H', padded['h'])}:%M{seconds}{zone[0]}", decimals)]
    if not parts["c"].str.len().eq(4).all() or seps[0] != "/":
        return []
    padded = _padding(parts, ["a", "b", "h"])
    hours = parts["h"].astype(int)
    hour = "I" if not padded["h"] and hours.between(1, 12).all() else "H"
    time = f"{clock[0]}{_f(hour, padded['h'])}:%M{seconds}{zone[0]}"
    first, second = parts["a"].astype(int), parts["b"].astype(int)
    day_first = (first > 12).any() or (
        not (second > 12).any() and padded["a"] and padded["b"] and bool(seconds)
    )
    orders = [("d", "m"), ("m", "d")] if day_first else [("m", "d"), ("d", "m")]
    return [(f"{_f(x, padded['a'])}/{_f(y, padded['b'])}/%Y{time}", decimals) for x, y in orders]


def _padding(parts: pd.DataFrame, columns: list[str]) -> dict[str, bool]:
    """Whether each field is zero-padded: as written, else as the other fields are."""
    lead = {c: (parts[c].str.len().eq(2) & parts[c].str.startswith("0")).any() for c in columns}
    short = {c: parts[c].str.len().eq(1).any() for c in columns}
    default = any(lead.values()) or not any(short.values())
    return {c: bool(lead[c] or (default and not short[c])) for c in columns}


def _f(name: str, padded: bool) -> str:
    """One pattern field."""
    return f"%{'' if padded else '-'}{name}"


def _regex(pattern: str) -> str:
    """The regular expression that reads a pattern, one named group per field."""
    out, last = ["^"], 0
    for match in _FIELD.finditer(pattern):
        out.append(re.escape(pattern[last : match.start()]).replace("\\ ", " "))
        flag, name = match.groups()
        width = r"\d{4}" if name == "Y" else r"[1-9]?\d" if flag else r"\d{2}"
        out.append(f"(?P<{name}>{width})")
        out.append(r"(?:\.(?P<f>\d{1,9}))?" if name == "S" else "")
        last = match.end()
    out.append(re.escape(pattern[last:]).replace("\\ ", " ") + "$")
    return "".join(out)


def _parse_text(values: pd.Series, pattern: str) -> np.ndarray:
    """Seconds of text timestamps in `pattern`; ValueError names the first bad row."""
    present = values.notna()
    fields = _arrow_text(values[present]).str.extract(_regex(pattern))
    required = [c for c in fields.columns if c != "f"]
    raise_at_first(
        values[present], fields[required].isna().any(axis=1), f"does not match {pattern!r}"
    )
    numbers = {c: fields[c].astype(np.int64).to_numpy() for c in required}
    bad = np.zeros(len(fields), dtype=bool)
    for name, (low, high) in _LIMITS.items():
        if name in numbers:
            bad |= (numbers[name] < low) | (numbers[name] > high)
    months = (numbers["Y"] - 1970) * 12 + numbers["m"] - 1
    first_day = _days(months)
    bad |= numbers["d"] > _days(months + 1) - first_day
    raise_at_first(values[present], bad, f"is not a valid {pattern!r} time")
    hours = numbers.get("H", numbers.get("I"))
    whole = (first_day + numbers["d"] - 1) * 86400 + hours * 3600 + numbers["M"] * 60
    whole += numbers.get("S", 0)
    out = np.full(len(values), np.nan)
    out[present.to_numpy(bool)] = whole + _fraction(fields.get("f"))
    return out


def _arrow_text(values: pd.Series) -> pd.Series:
    """Values as Arrow-backed text, whose regex methods are about 5x faster than Python's."""
    return values.astype(str).astype("large_string[pyarrow]")


def _days(months: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of the first day of each month counted from 1970-01."""
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _fraction(digits: pd.Series | None) -> np.ndarray | float:
    """Fractions of a second written as up to 9 digits (none or missing: 0)."""
    if digits is None:
        return 0.0
    nanos = (digits.fillna("") + "0" * 9).str.slice(0, 9).astype(np.int64).to_numpy()
    return nanos / 1e9


def _whole_and_ticks(seconds: np.ndarray, fmt: TimeFormat) -> tuple[np.ndarray, np.ndarray]:
    """Seconds rounded to the format's resolution: whole seconds and decimal ticks."""
    step = resolution(fmt)
    if step >= 1:
        return (np.rint(seconds / step) * step).astype(np.int64), np.zeros(len(seconds), np.int64)
    whole = np.floor(seconds)
    ticks = np.rint((seconds - whole) * 10**fmt.decimals).astype(np.int64)
    carry = ticks == 10**fmt.decimals
    return whole.astype(np.int64) + carry, np.where(carry, 0, ticks)


def _render(fmt: TimeFormat, whole: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Whole seconds and ticks written in a text pattern, built as a matrix of ASCII codes."""
    fields, columns, last = _calendar(whole), [], 0
    for match in _FIELD.finditer(fmt.unit):
        columns += [np.full(len(whole), ord(c), np.uint8) for c in fmt.unit[last : match.start()]]
        flag, name = match.groups()
        columns += _digits(fields[name], 4 if name == "Y" else 2, bool(flag))
        if name == "S" and fmt.decimals:
            columns += [np.full(len(whole), ord("."), np.uint8)]
            columns += _digits(ticks, fmt.decimals, False)
        last = match.end()
    columns += [np.full(len(whole), ord(c), np.uint8) for c in fmt.unit[last:]]
    codes = np.stack(columns, axis=1)
    if not codes.all():  # unpadded fields left NUL codes: move them to the end, where they drop
        codes = np.take_along_axis(codes, np.argsort(codes == 0, axis=1, kind="stable"), axis=1)
    return codes.view(f"S{codes.shape[1]}").ravel().astype(str).astype(object)


def _calendar(whole: np.ndarray) -> dict[str, np.ndarray]:
    """Calendar fields (pattern names) of whole seconds since the epoch, UTC."""
    stamp = whole.astype("datetime64[s]")
    days, months = stamp.astype("datetime64[D]"), stamp.astype("datetime64[M]")
    years = stamp.astype("datetime64[Y]")
    of_day = whole - days.astype(np.int64) * 86400
    hours = of_day // 3600
    return {
        "Y": years.astype(np.int64) + 1970,
        "m": (months - years.astype("datetime64[M]")).astype(np.int64) + 1,
        "d": (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
        "H": hours,
        "I": (hours + 11) % 12 + 1,
        "M": of_day // 60 % 60,
        "S": of_day % 60,
    }


def _digits(numbers: np.ndarray, width: int, unpadded: bool) -> list[np.ndarray]:
    """ASCII codes of each decimal digit, NUL for a dropped leading zero of an unpadded field."""
    codes = [(numbers // 10 ** (width - 1 - k) % 10 + 48).astype(np.uint8) for k in range(width)]
    if unpadded:
        codes[0] = np.where(numbers < 10, 0, codes[0]).astype(np.uint8)
    return codes
