"""Loads flow tables (CSV, CSV.gz, Parquet) in any known dialect, validates them, infers a schema.

The loader is the edge where bad input is caught: every error names the file,
and where it can the column and the line. Nothing is silently coerced; every
value that a policy drops or changes is counted in the validation report.
Zeek logs (`conn.log`, plain or gzipped) are read by `flowjax.zeek`.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import zlib
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowjax import dialects, relations, zeek
from flowjax.identities import pseudonymise, with_identities
from flowjax.schema import Schema, choose_label, infer_schema

# Strings that stand for a missing or non-finite number in flow tables.
_NONFINITE_TEXT = {
    "": np.nan, "nan": np.nan, "NaN": np.nan, "NAN": np.nan, "null": np.nan, "NULL": np.nan,
    "inf": np.inf, "Inf": np.inf, "INF": np.inf, "Infinity": np.inf, "infinity": np.inf,
    "+inf": np.inf, "+Infinity": np.inf,
    "-inf": -np.inf, "-Inf": -np.inf, "-INF": -np.inf, "-Infinity": -np.inf, "-infinity": -np.inf,
}  # fmt: skip
# The least value a count or duration can take; CICFlowMeter writes -1 for 'no TCP window seen'.
_LOWER_BOUNDS = {k: 0 for k in dialects.COUNT_KEYS + dialects.DURATION_KEYS} | {
    "init_fwd_win_byts": -1,
    "init_bwd_win_byts": -1,
}


@dataclasses.dataclass(frozen=True)
class BadValuePolicy:
    """What to do with NaN/Infinity in numeric columns and with unparseable cells.

    nonfinite: 'token' keeps NaN/+-Infinity (the tokenizer gives them special
      symbols), 'drop' drops the row, 'clip' replaces +-Infinity with the
      column's finite max/min and drops rows with NaN.
    invalid: 'error' raises on a non-numeric cell in a numeric column, 'drop'
      drops the row (counted in the report).
    """

    nonfinite: str = "token"
    invalid: str = "error"

    def __post_init__(self):
        if self.nonfinite not in ("token", "drop", "clip"):
            raise ValueError(
                f"nonfinite policy must be token, drop or clip, got {self.nonfinite!r}"
            )
        if self.invalid not in ("error", "drop"):
            raise ValueError(f"invalid policy must be error or drop, got {self.invalid!r}")


@dataclasses.dataclass
class ValidationReport:
    """What the loader saw and did: rows read and dropped (by reason), per-column issues."""

    path: str
    dialect: str = "unknown"
    rows_read: int = 0
    rows_kept: int = 0
    header_rows_removed: int = 0
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    nonfinite: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    clipped: dict[str, int] = dataclasses.field(default_factory=dict)
    duplicate_rows: int = 0
    excluded_columns: dict[str, str] = dataclasses.field(default_factory=dict)  # col -> how
    dependencies: list[str] = dataclasses.field(default_factory=list)
    renamed_columns: dict[str, str] = dataclasses.field(default_factory=dict)  # 'X.1' -> 'X'
    negative_values: dict[str, int] = dataclasses.field(default_factory=dict)  # col -> rows
    pseudonymised: list[str] = dataclasses.field(default_factory=list)  # Crypto-PAn columns

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.path}: dialect {self.dialect}, {self.rows_read} rows read, "
            f"{self.rows_kept} kept, {self.duplicate_rows} duplicate rows"
        ]
        if self.pseudonymised:
            lines.append(f"  addresses pseudonymised (Crypto-PAn): {', '.join(self.pseudonymised)}")
        if self.header_rows_removed:
            lines.append(f"  repeated header rows removed: {self.header_rows_removed}")
        for reason, n in self.dropped.items():
            lines.append(f"  dropped {n} rows: {reason}")
        for col, counts in self.nonfinite.items():
            lines.append(f"  {col}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for col, n in self.clipped.items():
            lines.append(f"  {col}: {n} infinite values clipped to the finite range")
        for col, first in self.renamed_columns.items():
            lines.append(f"  column {first!r} appears more than once with different values; "
                         f"a later one is read as {col!r}")  # fmt: skip
        for col, n in self.negative_values.items():
            lines.append(f"  {col}: {n} values below {_lower_bound(col)}, the least a "
                         "count or duration can be")  # fmt: skip
        groups: dict[str, list[str]] = {}
        for col, how in self.excluded_columns.items():
            kind = how.split(" ")[0].rstrip(":")  # computed, constant, row, missing
            why = how.removeprefix("missing from the output: ")
            groups.setdefault(kind, []).append(col if kind != "missing" else f"{col} ({why})")
        for kind, cols in groups.items():
            lines.append(f"  {kind} ({len(cols)}): {', '.join(cols)}")
        implications = [d for d in self.dependencies if " => " in d]
        lines += [f"  relation: {d}" for d in self.dependencies if " => " not in d]
        if implications:
            lines.append(f"  relation: {len(implications)} zero implications (x = 0 => y = 0)")
        return "\n".join(lines)


@dataclasses.dataclass
class Flows:
    """A loaded, validated flow table with its schema and validation report."""

    frame: pd.DataFrame
    schema: Schema
    report: ValidationReport


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq"))


def _read_parquet(path: Path) -> pd.DataFrame:
    """Reads a Parquet file; raises ValueError for repeated names and nested columns."""
    check_parquet_fields(path, pq.read_schema(path))
    return pd.read_parquet(path)


def check_parquet_fields(path: Path, fields: pa.Schema) -> None:
    """Raises ValueError naming the file for repeated column names and nested columns."""
    dupes = sorted({n for n in fields.names if fields.names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: column names repeat: {dupes}; give each column its own name")
    nested = [f.name for f in fields if pa.types.is_nested(f.type)]
    if nested:
        raise ValueError(f"{path}: columns {nested} are nested (list, struct or map): "
                         "flowjax needs flat columns; flatten or drop them")  # fmt: skip


def check_file(path: Path) -> None:
    """Raises ValueError naming the file when it is missing or empty."""
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")


def _read_table(path: Path) -> pd.DataFrame:
    """Reads CSV, CSV.gz, Parquet or a Zeek log; wraps low-level failures in a ValueError
    naming the file."""
    check_file(path)
    try:
        if _is_parquet(path):
            frame = _read_parquet(path)
        elif zeek.is_zeek(path):
            frame = zeek.read_zeek(path)[0]
        else:
            frame = pd.read_csv(path, low_memory=False, na_values=[], keep_default_na=False)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path}: the compressed file is truncated or corrupt ({e})") from e
    except pd.errors.EmptyDataError as e:
        raise ValueError(f"{path}: the file is empty (no header)") from e
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: cannot be read as a table ({e})") from e
    if frame.shape[1] == 0:
        raise ValueError(f"{path}: the file has no columns")
    if len(frame) == 0:
        raise ValueError(f"{path}: the file has a header but no data rows")
    return frame


def _normalise_names(frame: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Strips names (pandas' copies of a repeated name, ' Fwd Header Length.1', are kept)."""
    frame = frame.rename(columns=lambda c: str(c).strip())
    names = list(frame.columns)
    if len(set(names)) != len(names):
        dupes = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"{report.path}: column names repeat after stripping spaces: {dupes}")
    return frame


def _header_names(path: Path) -> list[str] | None:
    """A CSV's header fields as written, stripped; None for Parquet and Zeek logs."""
    if _is_parquet(path) or zeek.is_zeek(path):
        return None
    head = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    return [str(c).strip() for c in head.iloc[0]]


def _differing_copies(frame: pd.DataFrame, header: list[str] | None) -> dict[str, str]:
    """Columns pandas renamed ('X.1': the header repeats 'X') whose values differ from 'X'."""
    if header is None or len(header) != frame.shape[1]:
        return {}
    out = {}
    for i, name in enumerate(header):
        first = frame.iloc[:, header.index(name)]
        copy = frame.iloc[:, i]
        if not ((first == copy) | (first.isna() & copy.isna())).all():
            out[frame.columns[i]] = name
    return out


def _lower_bound(col: str) -> int | None:
    """The least value a count or duration column can take; None for other columns."""
    return _LOWER_BOUNDS.get(dialects.canonical_name(col))


def _count_negative(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per count or duration column with a value below the column's least value."""
    out = {}
    for col in frame.columns:
        bound = _lower_bound(col)
        if bound is not None and pd.api.types.is_numeric_dtype(frame[col]):
            n = int((frame[col].to_numpy(np.float64, na_value=np.nan) < bound).sum())
            if n:
                out[col] = n
    return out


def _remove_header_rows(frame: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Drops header lines repeated inside the file (CIC files concatenated by hand)."""
    text_cols = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if not text_cols:
        return frame
    hits = np.zeros(len(frame), dtype=np.int64)
    for col in text_cols:
        hits += (frame[col].astype(str).str.strip() == col).to_numpy()
    is_header = hits >= max(1, len(text_cols) // 2)
    report.header_rows_removed = int(is_header.sum())
    return frame.loc[~is_header]


def _parse_numeric(col: str, values: pd.Series, path: Path) -> tuple[pd.Series, pd.Series]:
    """Parses a text column as numbers; returns (numbers, mask of unparseable cells)."""
    text = values.astype(str).str.strip()
    mapped = text.map(_NONFINITE_TEXT)
    parsed = pd.to_numeric(text.where(mapped.isna() & ~text.isin(_NONFINITE_TEXT)), errors="coerce")
    numbers = parsed.where(~text.isin(_NONFINITE_TEXT), mapped).astype(np.float64)
    bad = numbers.isna() & ~text.isin(_NONFINITE_TEXT)
    return numbers, bad


def _is_numeric_text(col: str, values: pd.Series) -> bool:
    """True when a text column is numbers spoilt by a few bad cells, not a categorical column."""
    key = dialects.canonical_name(col)
    if key is not None and key not in dialects.PORT_KEYS:  # numeric unless a text field
        return key not in dialects.TEXT_KEYS
    text = values.astype(str).str.strip()
    text = text[~text.isin(_NONFINITE_TEXT)]
    if text.empty:
        return True
    parsed = pd.to_numeric(text, errors="coerce")
    # Argus writes ICMP type/code in the port columns as hex ('0x0303'): such a port column
    # stays text, with its values exactly as written.
    return parsed.notna().all() if key is not None else parsed.notna().mean() >= 0.99


def _parse_columns(
    frame: pd.DataFrame, policy: BadValuePolicy, report: ValidationReport, path: Path,
    numeric_text: Collection[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Parses numeric-looking text columns (or `numeric_text`); applies the invalid policy."""
    frame = frame.copy()
    drop = np.zeros(len(frame), dtype=bool)
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(
            frame[col]
        )
        wanted = _is_numeric_text(col, frame[col]) if numeric_text is None else col in numeric_text
        if numeric or not wanted:
            continue
        numbers, bad = _parse_numeric(col, frame[col], path)
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            line = int(frame.index[first]) + 2  # +1 for the header, +1 for 1-based lines
            if policy.invalid == "error":
                raise ValueError(
                    f"{path}: column {col!r}, line {line}: non-numeric value "
                    f"{frame[col].iloc[first]!r} in a numeric column "
                    f"({int(bad.sum())} such cells; policy invalid='drop' drops those rows)"
                )
            drop |= bad.to_numpy()
        frame[col] = numbers
    if drop.any():
        report.dropped["non-numeric value in a numeric column"] = int(drop.sum())
        frame = frame.loc[~drop]
    return frame


def _apply_nonfinite(
    frame: pd.DataFrame, policy: BadValuePolicy, report: ValidationReport
) -> pd.DataFrame:
    """Counts NaN/+-Infinity per numeric column and applies the nonfinite policy."""
    drop = np.zeros(len(frame), dtype=bool)
    for col in frame.columns:
        if not pd.api.types.is_float_dtype(frame[col]):
            continue
        v = frame[col].to_numpy()
        counts = {"NaN": int(np.isnan(v).sum()), "+Infinity": int(np.isposinf(v).sum()),
                  "-Infinity": int(np.isneginf(v).sum())}  # fmt: skip
        counts = {k: n for k, n in counts.items() if n}
        if not counts:
            continue
        report.nonfinite[col] = counts
        if policy.nonfinite == "drop":
            drop |= ~np.isfinite(v)
        elif policy.nonfinite == "clip":
            finite = v[np.isfinite(v)]
            if finite.size:
                frame[col] = np.clip(v, finite.min(), finite.max())
                report.clipped[col] = int(np.isinf(v).sum())
            drop |= np.isnan(v) | (np.isinf(v) & (finite.size == 0))
    if drop.any():
        reason = "NaN or Infinity" if policy.nonfinite == "drop" else "NaN (cannot be clipped)"
        report.dropped[reason] = int(drop.sum())
        frame = frame.loc[~drop]
    return frame


def _find_label(frame: pd.DataFrame, label: str | None, path: Path) -> str | None:
    if label is None:
        return choose_label(frame)
    stripped = label.strip()
    if stripped not in frame.columns:
        raise ValueError(
            f"{path}: label column {label!r} not found; columns are {list(frame.columns)}"
        )
    return stripped


def _read_override(schema: str | os.PathLike | Mapping | None) -> dict | None:
    if schema is None or isinstance(schema, Mapping):
        return None if schema is None else dict(schema)
    try:
        return json.loads(Path(schema).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{schema}: cannot read the schema override as JSON ({e})") from e


def load_flows(
    path_or_name: str | os.PathLike,
    *,
    label: str | None = None,
    schema: str | os.PathLike | Mapping | None = None,
    policy: BadValuePolicy | None = None,
    derive: bool = True,
    identities: bool = True,
    pseudonymise_key: bytes | None = None,
) -> Flows:
    """Loads, normalises and validates a flow table and infers its schema.

    Args:
      path_or_name: a CSV, CSV.gz, Parquet or Zeek log file, or the name of a dataset that
        flowjax ships (see `flowjax.datasets`).
      label: the label column; by default the column whose name means 'label'
        in its dialect (` Label`, `label`, `type`), if any.
      schema: an override for the inferred schema (a dict or a JSON file), see
        `flowjax.schema.infer_schema`.
      policy: what to do with NaN/Infinity and unparseable cells.
      derive: find the exact relations between columns (`flowjax.relations`) and leave
        the dependent columns out of the sentence (they are computed when decoding).
      identities: put addresses and timestamps in the sentence and rebuild a 5-tuple
        `Flow ID` (`flowjax.identities`); off, they are missing from generated tables.
      pseudonymise_key: a 32-byte Crypto-PAn key (`addresses.key_from_text`): every address
        column is replaced by its keyed prefix-preserving pseudonym before anything else
        sees the table, so no real address can reach a model or its output.

    Returns:
      The table with its schema and validation report.
    """
    from flowjax import datasets  # local: the registry is optional at import time

    path = datasets.resolve(str(path_or_name))
    policy = policy or BadValuePolicy()
    report = ValidationReport(path=str(path))
    frame = _read_table(path)
    report.rows_read = len(frame)
    frame = normalise_table(frame, path=path, policy=policy, report=report)
    frame, inferred = describe_table(frame, path=path, report=report, label=label, schema=schema,
                                     derive=derive, identities=identities,
                                     pseudonymise_key=pseudonymise_key)  # fmt: skip
    report.rows_kept = len(frame)
    report.duplicate_rows = int(frame.duplicated().sum())
    report.excluded_columns = _how_written(inferred)
    report.dependencies = inferred.relations.lines()
    report.renamed_columns = _differing_copies(frame, _header_names(path))
    report.negative_values = _count_negative(frame)
    return Flows(frame=frame, schema=inferred, report=report)


def normalise_table(
    frame: pd.DataFrame, *, path: Path, policy: BadValuePolicy, report: ValidationReport,
    numeric_text: Collection[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Names, dialect, repeated headers, numeric text, NaN/Infinity: a table's or a batch's checks.

    A streamed batch passes `numeric_text` (decided on a sample) so every batch is typed
    alike; its index holds its rows' places in the file, so errors name the right line.
    """
    frame = _normalise_names(frame, report)
    report.dialect = dialects.detect_dialect(frame.columns)
    frame = _remove_header_rows(frame, report)
    frame = _parse_columns(frame, policy, report, path, numeric_text)
    return _apply_nonfinite(frame, policy, report)


def describe_table(
    frame: pd.DataFrame, *, path: Path, report: ValidationReport, label: str | None = None,
    schema: str | os.PathLike | Mapping | None = None, derive: bool = True,
    identities: bool = True, pseudonymise_key: bytes | None = None,
) -> tuple[pd.DataFrame, Schema]:  # fmt: skip
    """A normalised table's schema (options: `load_flows`) and the table, reindexed and
    pseudonymised when a key is given."""
    if len(frame) == 0:
        raise ValueError(f"{path}: no rows left after validation ({report.dropped})")
    label_col = _find_label(frame, label, path)  # label values keep their exact text
    numeric = [
        c for c in frame.columns if c != label_col and pd.api.types.is_numeric_dtype(frame[c])
    ]
    if not numeric:
        raise ValueError(
            f"{path}: the table has no numeric columns; columns: {list(frame.columns)}"
        )
    frame = frame.reset_index(drop=True)
    inferred = infer_schema(
        frame, label=label_col, dialect=report.dialect, override=_read_override(schema)
    )
    if pseudonymise_key is not None:
        frame = pseudonymise(frame, inferred, pseudonymise_key)
        report.pseudonymised = [c for c, kind in inferred.kinds if kind == "ip"]
    if zeek.is_zeek(path):  # generated tables are written back as Zeek logs
        inferred = dataclasses.replace(
            inferred, source_format={"format": "zeek", **zeek.read_header(path)}
        )
    if identities:
        inferred = with_identities(frame, inferred)
    if derive:
        inferred = with_relations(frame, inferred)
    return frame, inferred


def with_relations(frame: pd.DataFrame, schema: Schema) -> Schema:
    """The schema with the relations found on `frame`; dependent columns leave the sentence."""
    categorical = [c for c in schema.categorical if schema.encoding(c) is None]
    found = relations.discover(
        frame, numeric=list(schema.numeric), categorical=categorical, label=schema.label
    )
    return apply_relations(schema, found)


def apply_relations(schema: Schema, found: relations.Relations) -> Schema:
    """The schema (without relations) with `found`; their dependent columns leave the sentence."""
    sentence = tuple(c for c in schema.sentence_columns if c not in found.targets)
    return dataclasses.replace(schema, sentence_columns=sentence, relations=found)


def _how_written(schema: Schema) -> dict[str, str]:
    """For each column outside the sentence: how generated tables get it."""
    out = {}
    derived = {d.target: d.describe() for d in schema.relations.derived}
    for col, fill in schema.fills:
        if fill["how"] == "constant":
            out[col] = f"constant {fill['value']!r}"
        elif fill["how"] == "index":
            out[col] = f"row index counted from {fill['start']}"
        elif fill["how"] == "flow_id":
            order = "" if fill["order"] == "forward" else ", reversed"
            out[col] = f"rebuilt from the 5-tuple {' - '.join(fill['columns'])}{order}"
        else:
            out[col] = f"missing from the output: {fill['reason']}"
    out.update({c: f"computed: {d}" for c, d in derived.items()})
    return {c: out[c] for c in schema.columns if c in out}
