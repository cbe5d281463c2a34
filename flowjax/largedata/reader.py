"""Reads a flow table (CSV, CSV.gz, Parquet) in record batches of bounded size.

The batches come from `pyarrow.dataset` and become pandas frames typed as `load_flows`
would type the whole table: a first pass (`scan`) counts the rows and decides each
column's type over every cell (pandas' CSV rules: int64 if every cell is an integer,
float64 if every cell is a number or an Infinity word, bool, else text; Parquet: ints and
bools with a null anywhere become float64 and object). Each batch is then checked by
`flowjax.io.normalise_table`, the loader's own code, with the batch's rows indexed by
their place in the file, so an error names the file, the column and the line.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io as pyio
import zlib
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from flowjax import io, zeek

_BLOCK_BYTES = 1 << 20  # CSV bytes parsed at once (larger blocks cost memory, not time)
_TRUE, _FALSE = ("True", "TRUE", "true"), ("False", "FALSE", "false")  # pandas' bool words
# Cells that pandas reads as infinite floats: Infinity words (unpadded only), huge numbers.
_INFINITY_OR_NUMBER = r"^([+-]?(?i:inf|infinity)|\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*)$"


@dataclasses.dataclass(frozen=True)
class Scan:
    """What a first pass learnt: the columns as pandas names them, their types, the row count."""

    path: Path
    names: tuple[str, ...]
    # CSV: 'int', 'float', 'bool', 'text'; Parquet: 'int?' / 'bool?' (holds a null), or ''
    types: tuple[str, ...]
    rows: int
    parquet: bool


def scan(path: Path, *, batch_rows: int) -> Scan:
    """Counts the rows of `path` and decides its column types (reads a CSV once, a Parquet
    file's metadata); ValueError names the file for what `load_flows` refuses too."""
    io.check_file(path)
    if zeek.is_zeek(path):
        raise ValueError(f"{path}: Zeek logs are read in memory only (data.out_of_core='off')")
    if _is_parquet(path):
        return _scan_parquet(path)
    names = _csv_names(path)
    types: list[str | None] = [None] * len(names)
    rows = 0
    for batch in _arrow_batches(path, names, batch_rows=batch_rows):
        rows += batch.num_rows
        types = [_merge(t, _csv_type(batch.column(i), t)) for i, t in enumerate(types)]
    if rows == 0:
        raise ValueError(f"{path}: the file has a header but no data rows")
    return Scan(path, tuple(names), tuple(types), rows, parquet=False)


def raw_batches(
    source: Scan, *, batch_rows: int, columns: Collection[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Typed, not yet checked frames of at most `batch_rows` rows, indexed by file row.

    Args:
      source: the scan of the file.
      batch_rows: the most rows per frame.
      columns: read only these (pandas names); default all.
    """
    start = 0
    for batch in _arrow_batches(source.path, source.names, batch_rows=batch_rows,
                                parquet=source.parquet, columns=columns):  # fmt: skip
        frame = _to_pandas(batch, source)
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def normalise(
    frame: pd.DataFrame,
    source: Scan,
    *,
    policy: io.BadValuePolicy,
    numeric_text: Collection[str] | None,
) -> tuple[pd.DataFrame, io.ValidationReport]:
    """A raw batch checked as `load_flows` checks a table, and what the checks counted."""
    if policy.nonfinite == "clip":  # clipping needs every row's range before the first batch
        raise ValueError(f"{source.path}: data.nonfinite='clip' is not supported out of core; "
                         "use 'token' or 'drop', or data.out_of_core='off'")  # fmt: skip
    report = io.ValidationReport(path=str(source.path), rows_read=len(frame))
    frame = io.normalise_table(frame, path=source.path, policy=policy, report=report,
                               numeric_text=numeric_text)  # fmt: skip
    report.rows_kept = len(frame)
    return frame, report


def merge_reports(total: io.ValidationReport, part: io.ValidationReport) -> None:
    """Adds the counts of one batch's report to `total`, in place."""
    total.dialect = part.dialect
    total.rows_read += part.rows_read
    total.rows_kept += part.rows_kept
    total.header_rows_removed += part.header_rows_removed
    for reason, n in part.dropped.items():
        total.dropped[reason] = total.dropped.get(reason, 0) + n
    for col, counts in part.nonfinite.items():
        mine = total.nonfinite.setdefault(col, {})
        for key, n in counts.items():
            mine[key] = mine.get(key, 0) + n


# ------------------------------------------------------------------ CSV


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq"))


def _csv_names(path: Path) -> list[str]:
    """The header as pandas names it: fields as written, repeats renamed 'X.1', 'X.2', ..."""
    try:
        with pa.input_stream(str(path), compression="detect") as f:
            head = b""
            while b"\n" not in head and (chunk := f.read(1 << 16)):
                head += chunk
        line = head.split(b"\n", 1)[0].decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot read the header ({e})") from e
    header = next(csv.reader(pyio.StringIO(line)), [])
    if not header or header == [""]:
        raise ValueError(f"{path}: the file is empty (no header)")
    names, counts = [], {}
    for name in header:  # pandas' rule for repeated names
        cur = counts.get(name, 0)
        while cur > 0:
            counts[name] = cur + 1
            name, cur = f"{name}.{cur}", counts.get(f"{name}.{cur}", 0)
        names.append(name)
        counts[name] = cur + 1
    return names


def _csv_type(column: pa.ChunkedArray, known: str | None) -> str:
    """The pandas type of one batch of a text column, given the type of the batches before.

    Casts decide (regular expressions are slow and hungry on millions of cells); where
    arrow's parser is laxer than pandas' (hex integers, 'nan', padded Infinity), the few
    cells concerned are looked at.
    """
    if known == "text":
        return "text"
    trimmed = pc.utf8_trim_whitespace(column)
    if known in (None, "int") and _integers(trimmed) is not None:
        return "int"
    if known in (None, "int", "float") and _floats(column, trimmed) is not None:
        return "float"
    if known in (None, "bool") and pc.all(pc.is_in(column, pa.array(_TRUE + _FALSE))).as_py():
        return "bool"
    return "text"


def _cast(values, kind: pa.DataType):
    try:
        return pc.cast(values, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _integers(trimmed):
    """int64 of trimmed cells if pandas reads every one as an integer, else None."""
    if any(pc.any(pc.match_substring(trimmed, x)).as_py() for x in "xX"):  # arrow reads hex
        return None
    if pc.any(pc.starts_with(trimmed, "+")).as_py():  # arrow refuses a leading '+'
        trimmed = pc.replace_substring_regex(trimmed, r"^\+", "")
    return _cast(trimmed, pa.int64())


def _floats(column, trimmed):
    """float64 of the cells if pandas reads every one as a float, else None: 'nan' is text
    to pandas, and Infinity words are floats only unpadded."""
    values = _cast(trimmed, pa.float64())
    if values is None or pc.any(pc.is_nan(values)).as_py():
        return None
    infinite = pc.is_inf(values)
    if pc.any(infinite).as_py():
        words = pc.filter(column, infinite)
        if not pc.all(pc.match_substring_regex(words, _INFINITY_OR_NUMBER)).as_py():
            return None
    return values


def _merge(a: str | None, b: str) -> str:
    if a is None or a == b:
        return b
    return "float" if {a, b} == {"int", "float"} else "text"


def _csv_column(column, kind: str) -> pa.Array | pa.ChunkedArray:
    if kind == "int":
        return _integers(pc.utf8_trim_whitespace(column))
    if kind == "float":
        return _floats(column, pc.utf8_trim_whitespace(column))
    if kind == "bool":
        return pc.is_in(column, pa.array(_TRUE))
    return column


# ------------------------------------------------------------------ Parquet


def _scan_parquet(path: Path) -> Scan:
    """Names, row count and which int/bool columns hold a null (row-group statistics, else
    a pass over those columns)."""
    try:
        meta = pq.ParquetFile(path).metadata
        fields = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: cannot be read as a table ({e})") from e
    io.check_parquet_fields(path, fields)
    if meta.num_rows == 0:
        raise ValueError(f"{path}: the file has a header but no data rows")
    nullable = []
    for i, field in enumerate(fields):
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if not (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            nullable.append("")
            continue
        stats = [meta.row_group(g).column(i).statistics for g in range(meta.num_row_groups)]
        if all(s is not None and s.has_null_count for s in stats):
            nulls = sum(s.null_count for s in stats)
        else:
            nulls = pq.read_table(path, columns=[field.name]).column(0).null_count
        nullable.append(("int?" if pa.types.is_integer(kind) else "bool?") if nulls else "")
    return Scan(path, tuple(fields.names), tuple(nullable), meta.num_rows, parquet=True)


def _to_pandas(table: pa.Table, source: Scan) -> pd.DataFrame:
    """A batch as pandas, typed as the whole file would be."""
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = source.types[source.names.index(name)]
        if not source.parquet:
            columns.append(_csv_column(column, kind))
        elif pa.types.is_dictionary(column.type):  # decoded: batches have their own dictionaries
            columns.append(pc.cast(column, column.type.value_type))
        else:
            columns.append(column)
    # The schema's pandas metadata (if pandas wrote the file) restores its dtypes, as
    # pd.read_parquet does; plain ints and bools with a null somewhere in the file are cast.
    frame = pa.table(columns, names=table.column_names,
                     metadata=table.schema.metadata).to_pandas()  # fmt: skip
    for name, kind in zip(source.names, source.types, strict=True):
        if source.parquet and kind and name in frame and isinstance(frame[name].dtype, np.dtype):
            frame[name] = frame[name].astype(np.float64 if kind == "int?" else object)
    return frame


# ------------------------------------------------------------------ both


def _arrow_batches(
    path: Path,
    names,
    *,
    batch_rows: int,
    parquet: bool = False,
    columns: Collection[str] | None = None,
) -> Iterator[pa.Table]:
    """Arrow tables of exactly `batch_rows` rows (the last may be shorter), in file order."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    if parquet:  # no pre-buffering: it holds whole row groups' pages at once
        options = ds.ParquetFragmentScanOptions(pre_buffer=False)
        dataset = ds.dataset(str(path), format=ds.ParquetFileFormat(
            default_fragment_scan_options=options))  # fmt: skip
    else:
        read = pcsv.ReadOptions(column_names=list(names), skip_rows=1, block_size=_BLOCK_BYTES)
        convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                      strings_can_be_null=False, null_values=[],
                                      quoted_strings_can_be_null=False)  # fmt: skip
        dataset = ds.dataset(
            str(path), format=ds.CsvFileFormat(read_options=read, convert_options=convert)
        )
    pending: list[pa.RecordBatch] = []
    held = 0
    try:
        for batch in dataset.to_batches(columns=list(columns) if columns else None,
                                        batch_size=batch_rows, batch_readahead=1,
                                        fragment_readahead=1):  # fmt: skip
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, batch_rows)
                rest = table.slice(batch_rows)
                pending, held = rest.to_batches(), rest.num_rows
                del table, rest
                pa.default_memory_pool().release_unused()  # else the pool keeps freed batches
    except (pa.ArrowException, OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot be read as a table ({e})") from e
    if held:
        yield pa.Table.from_batches(pending)
