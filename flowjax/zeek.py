"""Zeek logs (`conn.log`): read them as flow tables and write tables back in Zeek's format.

A Zeek ASCII log is tab-separated text with `#` header lines that name the separators,
the unset (`-`) and empty-set (`(empty)`) markers, the fields and their Zeek types.
`read_zeek` returns the rows with numbers parsed by type and unset cells missing, plus
the header (`meta`; `read_header` reads it alone) that `write_zeek`, or a streaming writer
through `header_lines`, `format_rows` and `close_line`, needs to write a table back.
Labelled IoT-23 files join their last fields (`tunnel_parents   label   detailed-label`)
with three spaces, not a tab; `meta['spaced_tail']` records how many fields are joined
so, and writing keeps it. Values are kept as Zeek wrote them (its `\\x..` escapes
included). Pure pandas/numpy.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from flowjax.files import write_atomic

_FLOAT_TYPES = frozenset({"time", "interval", "double"})
_INT_TYPES = frozenset({"count", "int", "port"})
_SPACES = "   "  # what IoT-23 writes between its appended fields
_META_KEYS = ("separator", "set_separator", "empty_field", "unset_field", "path")


def _open(path: Path, mode: str):
    """Opens a log ('rb' or 'rt'), gunzipping it when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if mode == "rb":
        return gzip.open(path, "rb") if gz else open(path, "rb")
    return gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")


def is_zeek(path: str | os.PathLike) -> bool:
    """True when a file (plain or gzipped) starts like a Zeek ASCII log."""
    with _open(Path(path), "rb") as f:
        return f.readline(256).startswith((b"#separator", b"#fields"))


def _header_value(line: str, sep: str) -> tuple[str, str]:
    """Splits a `#key<sep>value` header line (`#separator` is followed by a space)."""
    if line.startswith("#separator "):
        escaped = line[len("#separator ") :]
        return "separator", escaped.encode("ascii").decode("unicode_escape")
    key, _, value = line[1:].partition(sep)
    return key, value


def _split_names(value: str, sep: str) -> tuple[list[str], int]:
    """The names of a `#fields`/`#types` line and how many share its last, space-joined cell."""
    cells = value.split(sep)
    tail = re.split(r" {2,}", cells[-1].strip())
    return cells[:-1] + tail, len(tail)


def _parse_header(lines: list[str], path: Path) -> dict:
    """Builds the meta dict from the `#` lines before the first row."""
    meta: dict = {"separator": "\t"}
    for line in lines:
        key, value = _header_value(line, meta["separator"])
        if key in ("fields", "types"):
            meta[key], tail = _split_names(value, meta["separator"])
            meta["spaced_tail"] = tail if tail > 1 else 0
        elif key in _META_KEYS:
            meta[key] = value
    if "fields" not in meta:
        raise ValueError(f"{path}: a Zeek log without a #fields line")
    meta.setdefault("types", ["string"] * len(meta["fields"]))
    if len(meta["types"]) != len(meta["fields"]):
        raise ValueError(f"{path}: #types names {len(meta['types'])} types for "
                         f"{len(meta['fields'])} #fields")  # fmt: skip
    meta.setdefault("set_separator", ",")
    meta.setdefault("empty_field", "(empty)")
    meta.setdefault("unset_field", "-")
    meta.setdefault("path", "conn")
    return meta


def _split_row(line: str, meta: dict, where: str) -> list[str]:
    """The cells of one row; raises ValueError naming file and line on a wrong count."""
    cells = line.split(meta["separator"])
    n = len(meta["fields"])
    if meta["spaced_tail"] and len(cells) < n:
        cells = cells[:-1] + cells[-1].split(_SPACES)
    if len(cells) != n:
        raise ValueError(f"{where}: {len(cells)} fields where #fields names {n}")
    return cells


def _column(cells: tuple[str, ...], kind: str, unset: str) -> tuple[pd.Series, int | None]:
    """Parses one column by its Zeek type (unset -> NaN or None); also the first bad cell."""
    text = pd.Series(cells, dtype=object)
    missing = text == unset
    if kind not in _FLOAT_TYPES | _INT_TYPES:
        return text.where(~missing, None), None
    numbers = pd.to_numeric(text.where(~missing), errors="coerce")
    bad = np.flatnonzero((numbers.isna() & ~missing).to_numpy())
    if kind in _INT_TYPES and not missing.any() and not bad.size:
        return numbers.astype(np.int64), None
    return numbers.astype(np.float64), (int(bad[0]) if bad.size else None)


def read_header(path: str | os.PathLike) -> dict:
    """The header meta of a Zeek log (what `write_zeek` needs), reading only its `#` lines."""
    path = Path(path)
    with _open(path, "rt") as f:
        lines = itertools.takewhile(lambda line: line.startswith("#"), f)
        return _parse_header([line.rstrip("\r\n") for line in lines], path)


def read_zeek(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Reads a Zeek log (plain or gzipped) into a frame and the header meta to write it back."""
    path = Path(path)
    with _open(path, "rt") as f:
        lines = f.read().splitlines()
    start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    meta = _parse_header(lines[:start], path)
    numbers = [i + 1 for i in range(start, len(lines)) if lines[i] and lines[i][0] != "#"]
    rows = [_split_row(lines[no - 1], meta, f"{path}, line {no}") for no in numbers]
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(meta["fields"])
    frame = {}
    for name, kind, cells in zip(meta["fields"], meta["types"], columns, strict=True):
        frame[name], bad = _column(cells, kind, meta["unset_field"])
        if bad is not None:
            raise ValueError(f"{path}, line {numbers[bad]}: column {name!r} holds "
                             f"{cells[bad]!r}, not a Zeek {kind}")  # fmt: skip
    return pd.DataFrame(frame), meta


def _now() -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S")


def _line(cells: list[str], meta: dict) -> str:
    """Joins one row's cells (or the names) with the separator; IoT-23's tail with spaces."""
    k = meta.get("spaced_tail", 0)
    if k:
        cells = [*cells[:-k], _SPACES.join(cells[-k:])]
    return meta["separator"].join(cells)


def _escape(text: str) -> str:
    return "".join(f"\\x{ord(c):02x}" for c in text)


def header_lines(meta: dict) -> str:
    """The header a log starts with, `#open` stamped with the current time."""
    sep = meta["separator"]
    lines = [f"#separator {_escape(sep)}"]
    lines += [f"#{key}{sep}{meta[key]}" for key in _META_KEYS[1:]]
    lines += [f"#open{sep}{_now()}", f"#fields{sep}{_line(list(meta['fields']), meta)}",
              f"#types{sep}{_line(list(meta['types']), meta)}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def close_line(meta: dict) -> str:
    """The `#close` line a log ends with, stamped with the current time."""
    return f"#close{meta['separator']}{_now()}\n"


def _cells(values: pd.Series | None, kind: str, meta: dict, n: int) -> list[str]:
    """One column as Zeek writes it: 6 decimals for times, integers for counts, `-` unset."""
    unset = meta["unset_field"]
    if values is None:
        return [unset] * n
    if pd.api.types.is_bool_dtype(values):
        return ["T" if v else "F" for v in values]
    if kind in _INT_TYPES and pd.api.types.is_integer_dtype(values):
        return values.astype(str).tolist()
    if kind in _FLOAT_TYPES | _INT_TYPES:
        fmt = "%.6f" if kind in _FLOAT_TYPES else "%.0f"
        return [
            unset if np.isnan(v) else fmt % v for v in values.to_numpy(np.float64, na_value=np.nan)
        ]
    sep = meta["separator"]
    text = values.astype(str).str.replace(sep, _escape(sep)).str.replace("\n", _escape("\n"))
    return text.where(values.notna(), unset).tolist()


def format_rows(frame: pd.DataFrame, meta: dict) -> str:
    """A chunk of rows as log lines; fields the frame lacks (not generated) are unset."""
    extra = sorted(set(frame.columns) - set(meta["fields"]))
    if extra:
        raise ValueError(f"columns {extra} are not fields of the Zeek log {meta['path']!r}")
    columns = [
        _cells(frame[name] if name in frame.columns else None, kind, meta, len(frame))
        for name, kind in zip(meta["fields"], meta["types"], strict=True)
    ]
    return "".join(_line(list(row), meta) + "\n" for row in zip(*columns, strict=True))


def write_zeek(frame: pd.DataFrame, path: str | os.PathLike, meta: dict) -> Path:
    """Writes a table as a Zeek log (gzipped for a .gz path), atomically; returns the path."""
    text = header_lines(meta) + format_rows(frame, meta) + close_line(meta)
    data = gzip.compress(text.encode()) if str(path).endswith(".gz") else text
    return write_atomic(path, data)
