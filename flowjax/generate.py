"""Generation from a checkpoint: n flows as a DataFrame, or streamed to CSV/Parquet files.

The host driver around `flowjax.sampling`: it compiles one sampler per (strategy, batch
size), cuts the requested rows into equal chunks (the last one padded), shards every
chunk over all devices on the mesh's 'data' axis, and decodes chunk i on the host while
the devices already run chunk i+1 (JAX's async dispatch: the next chunk is dispatched
before the current one is fetched). Large runs go to a directory of Parquet shards
`part-00000.parquet`, ... with a `_manifest.json` of the arguments; each shard is written
to a hidden temporary name and renamed, so a rerun with the same arguments skips the
complete shards and regenerates exactly the missing ones. Host memory holds two chunks
and one Parquet row group at most, however many rows are asked for.

Determinism: a row's tokens depend only on (seed, global row index); the values drawn
inside each symbol's interval depend only on (seed, global row index) as well.
Generation runs in one process (all its local devices); files are written by it alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import tqdm
from absl import logging

from flowjax import checkpoint, parallel, sampling
from flowjax.tokenizer import FlowTokenizer

MANIFEST = "_manifest.json"  # "_" and "." prefixes: Parquet dataset readers skip them
_FORMAT = "flowjax-parquet-shards-v1"
DEFAULT_STRATEGY = sampling.Temperature()
_ROW_GROUP = 1 << 16  # rows per Parquet row group (or CSV write)


@dataclasses.dataclass
class Generator:
    """A trained model placed on a mesh, ready to sample (build it with `load_generator`).

    Attributes:
      graphdef, params, rest: the model split as `nnx.split(model, nnx.Param, ...)`;
        params and rest replicated on the mesh.
      tokenizer: the fitted tokenizer of the checkpoint.
      mesh: the one-axis 'data' mesh the chunks are sharded over.
      step: the checkpoint's training step.
      workdir: the checkpoint directory (None when built in memory).
    """

    graphdef: object
    params: object
    rest: object
    tokenizer: FlowTokenizer
    mesh: jax.sharding.Mesh
    step: int = 0
    workdir: str | None = None
    _samplers: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        repl = parallel.replicated(self.mesh)
        self.params = jax.device_put(self.params, repl)
        self.rest = jax.device_put(self.rest, repl)

    def sampler(self, strategy: sampling.Strategy):
        """The jitted sampler for `strategy` on this mesh (built once, then reused)."""
        if strategy not in self._samplers:
            self._samplers[strategy] = sampling.make_sampler(
                self.graphdef, strategy=strategy, mesh=self.mesh
            )
        return self._samplers[strategy]


def load_generator(
    workdir: str | os.PathLike, *, step: int | None = None, devices=None
) -> Generator:
    """Loads a checkpoint of `workdir` (default: the latest) onto a mesh over `devices` (all)."""
    mesh = parallel.make_mesh(devices)
    bundle = checkpoint.load_for_inference(workdir, step=step, mesh=mesh)
    return Generator(
        graphdef=bundle.graphdef,
        params=bundle.params,
        rest=bundle.rest,
        tokenizer=bundle.tokenizer,
        mesh=mesh,
        step=int(bundle.step),
        workdir=str(Path(workdir).resolve()),
    )


def parse_condition(text: str | None) -> dict[str, str]:
    """Parses --condition 'Label=DDoS,protocol=6' into {'Label': 'DDoS', 'protocol': '6'}."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        col, sep, value = item.partition("=")
        if not sep or not col.strip():
            raise ValueError(f"--condition: expected 'column=value' items, got {item!r}")
        out[col.strip()] = value.strip()
    return out


def _tables(gen: Generator, condition: dict | None) -> sampling.Tables:
    tok = gen.tokenizer
    forced = tok.condition_tokens(condition) if condition else None
    if condition:
        fixed = sorted(tok.columns.index(c) for c in condition)
        if fixed != list(range(len(fixed))):
            logging.warning(
                "conditioned columns %s are not a prefix of the sentence order %s: earlier "
                "columns are drawn without seeing them (an intervention, not p(rest | condition))",
                list(condition), list(tok.columns[: max(fixed) + 1]),
            )  # fmt: skip
    return jax.device_put(
        sampling.make_tables(tok.legal_mask(), forced), parallel.replicated(gen.mesh)
    )


def _padded(batch_size: int, mesh: jax.sharding.Mesh) -> int:
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    n = mesh.devices.size
    return -(-batch_size // n) * n


def token_chunks(
    gen: Generator,
    starts: list[int],
    *,
    num_rows: int,
    seed: int,
    batch_size: int,
    strategy: sampling.Strategy,
    condition: dict | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yields (start, tokens int32[b, seq_len], log_prob float32[b]) for each chunk start.

    Chunk `start` holds global rows [start, min(start + batch_size, num_rows)). The device
    batch is `batch_size` rounded up to a multiple of the device count, so every chunk
    runs one compiled program; padding rows are computed and dropped. The next chunk is
    dispatched before the current one is fetched, so device work overlaps the caller's.
    """
    fn = gen.sampler(strategy)
    tables = _tables(gen, condition)
    key = jax.device_put(jax.random.key(seed), parallel.replicated(gen.mesh))
    padded = _padded(batch_size, gen.mesh)

    def dispatch(start):
        rows = start + np.arange(padded, dtype=np.int64)
        if rows[-1] > np.iinfo(np.int32).max:
            raise ValueError(f"row index {rows[-1]} exceeds int32; use fewer rows")
        rows = parallel.shard_batch(rows.astype(np.int32), gen.mesh)
        return fn(gen.params, gen.rest, key, rows, tables)

    pending = dispatch(starts[0]) if starts else None
    for i, start in enumerate(starts):
        current = pending
        pending = dispatch(starts[i + 1]) if i + 1 < len(starts) else None
        n = min(batch_size, num_rows - start)
        tokens, log_prob = jax.device_get(current)
        yield start, np.asarray(tokens[:n]), np.asarray(log_prob[:n])


def _decode(tok: FlowTokenizer, tokens: np.ndarray, *, seed: int, start: int) -> pd.DataFrame:
    return tok.decode(tokens, seed=seed, row_offset=start)


def _output_dtypes(tok: FlowTokenizer) -> pd.Series:
    """Column dtypes that hold every decodable value (one fixed schema for all chunks).

    A chunk with no NaN decodes an integer column as int64 and one with NaN as float64;
    decoding a probe that contains every legal token of every column gives the widest.
    """
    legal = tok.legal_mask()[1:]
    width = int(legal.sum(axis=1).max())
    probe = np.stack([np.resize(np.flatnonzero(row), width) for row in legal], axis=1)
    return tok.decode(probe.astype(np.int32), seed=0).dtypes


def _as_dtypes(frame: pd.DataFrame, dtypes: pd.Series) -> pd.DataFrame:
    return frame.astype(dtypes.to_dict())


def _as_generator(source: Generator | str | os.PathLike) -> Generator:
    return source if isinstance(source, Generator) else load_generator(source)


def generate(
    source: Generator | str | os.PathLike,
    n: int,
    *,
    seed: int = 0,
    condition: dict | None = None,
    batch_size: int = 4096,
    strategy: sampling.Strategy = DEFAULT_STRATEGY,
) -> pd.DataFrame:
    """Generates n flows in memory.

    Args:
      source: a checkpoint directory or a `Generator` (reuse one to avoid reloading).
      n: number of flows.
      seed: the root seed; row r's symbols depend only on (seed, r).
      condition: {column: value} to fix, e.g. {'Label': 'DDoS'}; exact for a prefix of
        the sentence's column order (the label comes first by default).
      batch_size: rows per device chunk (rounded up to a multiple of the device count).
      strategy: Greedy(), Temperature(t), TopK(k, t) or TopP(p, t).

    Returns:
      A DataFrame with n rows and the tokenizer's columns, in row order.
    """
    gen = _as_generator(source)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    dtypes = _output_dtypes(gen.tokenizer)
    starts = list(range(0, n, batch_size))
    chunks = token_chunks(gen, starts, num_rows=n, seed=seed, batch_size=batch_size,
                          strategy=strategy, condition=condition)  # fmt: skip
    frames = [
        _as_dtypes(_decode(gen.tokenizer, t, seed=seed, start=s), dtypes) for s, t, _ in chunks
    ]
    if not frames:
        return _as_dtypes(pd.DataFrame({c: [] for c in gen.tokenizer.columns}), dtypes)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------- to files


def _args_record(gen: Generator, n: int, *, seed, condition, batch_size, strategy, shard_rows):
    record = {
        "format": _FORMAT,
        "num_flows": n,
        "seed": seed,
        "batch_size": batch_size,
        "shard_rows": shard_rows,
        "strategy": {"name": type(strategy).__name__, **dataclasses.asdict(strategy)},
        "condition": {str(k): str(v) for k, v in (condition or {}).items()},
        "checkpoint": {"workdir": gen.workdir, "step": gen.step},
        "columns": list(gen.tokenizer.columns),
    }
    return json.loads(json.dumps(record))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _shard_path(out: Path, index: int) -> Path:
    return out / f"part-{index:05d}.parquet"


def _has_rows(path: Path, rows: int) -> bool:
    try:
        return pq.ParquetFile(path).metadata.num_rows == rows
    except (OSError, pa.ArrowInvalid):
        return False


def _open_manifest(out: Path, record: dict) -> None:
    """Writes the manifest, or checks that an existing one has the same arguments."""
    path = out / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if changed:
            diff = "; ".join(f"{k}: was {old.get(k)!r}, now {record.get(k)!r}" for k in changed)
            raise ValueError(
                f"{path} was written by a generation with other arguments ({diff}); "
                "rerun with the same arguments to resume, or choose a new --out"
            )
        return
    if any(out.glob("part-*.parquet")):
        raise ValueError(f"{out} holds Parquet shards but no {MANIFEST}; choose a new --out")
    _write_atomic(path, json.dumps(record, indent=2))


class _Sink:
    """One output file written through a temporary name: CSV (optionally gzipped) or Parquet.

    Chunks are buffered up to `_ROW_GROUP` rows so that Parquet row groups are not tiny.
    """

    def __init__(self, path: Path, schema: pa.Schema, *, tmp: Path):
        self.path, self.schema, self.tmp = path, schema, tmp
        self.buffer: list[pa.Table] = []
        name = path.name.lower()
        if name.endswith((".csv", ".csv.gz")):
            compression = "gzip" if name.endswith(".gz") else None
            self.file = pa.output_stream(str(self.tmp), compression=compression)
            self.writer = pyarrow.csv.CSVWriter(self.file, schema)
        else:
            self.file = None
            self.writer = pq.ParquetWriter(str(self.tmp), schema)

    def write(self, frame: pd.DataFrame) -> None:
        self.buffer.append(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        if sum(len(t) for t in self.buffer) >= _ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.concat_tables(self.buffer))
            self.buffer = []

    def _close(self) -> None:
        self.writer.close()
        if self.file is not None:
            self.file.close()

    def commit(self) -> None:
        self._flush()
        self._close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._close()
        self.tmp.unlink(missing_ok=True)


def generate_to_files(
    source: Generator | str | os.PathLike,
    n: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    condition: dict | None = None,
    batch_size: int = 4096,
    strategy: sampling.Strategy = DEFAULT_STRATEGY,
    shard_rows: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Generates n flows into files, streaming: host memory stays flat for any n.

    `out` ending in .csv, .csv.gz or .parquet is one file (rewritten from the start by a
    rerun); any other `out` is a directory of Parquet shards of `shard_rows` rows (rounded
    down to a multiple of `batch_size`) with a manifest. A rerun into that directory with
    the same arguments skips the complete shards and writes the missing ones, giving the
    same rows as an uninterrupted run; other arguments raise ValueError. Every file is
    written under a `.tmp` name and renamed when complete.

    Args:
      source: a checkpoint directory or a `Generator`.
      n: number of flows.
      out: output file or directory.
      seed, condition, batch_size, strategy: as for `generate`.
      shard_rows: rows per Parquet shard in directory mode.
      progress: show a tqdm progress bar.

    Returns:
      The path written (file or directory).
    """
    gen = _as_generator(source)
    out = Path(out)
    if n < 0:
        raise ValueError(f"--num_flows must be >= 0, got {n}")
    dtypes = _output_dtypes(gen.tokenizer)
    schema = pa.Schema.from_pandas(_as_dtypes(
        gen.tokenizer.decode(np.zeros((0, gen.tokenizer.seq_len), np.int32)), dtypes),
        preserve_index=False)  # fmt: skip
    single = out.name.lower().endswith((".csv", ".csv.gz", ".parquet"))
    if single:
        out.parent.mkdir(parents=True, exist_ok=True)
        plan = [(out, 0, n)]
    else:
        shard_rows = max(1, shard_rows // batch_size) * batch_size
        out.mkdir(parents=True, exist_ok=True)
        _open_manifest(out, _args_record(gen, n, seed=seed, condition=condition,
                                         batch_size=batch_size, strategy=strategy,
                                         shard_rows=shard_rows))  # fmt: skip
        for stale in out.glob(".part-*.parquet.tmp"):
            stale.unlink()
        plan = []
        for i, first in enumerate(range(0, n, shard_rows)):
            rows = min(shard_rows, n - first)
            if not _has_rows(_shard_path(out, i), rows):
                plan.append((_shard_path(out, i), first, rows))
    starts = [s for _, first, rows in plan for s in range(first, first + rows, batch_size)]
    todo = sum(rows for _, _, rows in plan)
    logging.info("generating %d of %d rows into %s (%d files)", todo, n, out, len(plan))
    chunks = token_chunks(gen, starts, num_rows=n, seed=seed, batch_size=batch_size,
                          strategy=strategy, condition=condition)  # fmt: skip
    bar = tqdm.tqdm(total=n, initial=n - todo, unit="rows", unit_scale=True,
                    disable=not progress or not parallel.is_main_process())  # fmt: skip
    with bar:
        for path, first, rows in plan:
            # A shard's temporary name is hidden so that a reader of the directory skips it.
            tmp = path.with_name(("." if not single else "") + path.name + ".tmp")
            sink = _Sink(path, schema, tmp=tmp)
            try:
                for _ in range(first, first + rows, batch_size):
                    start, tokens, _ = next(chunks)
                    frame = _as_dtypes(_decode(gen.tokenizer, tokens, seed=seed, start=start),
                                       dtypes)  # fmt: skip
                    sink.write(frame)
                    bar.update(len(frame))
            except BaseException:
                sink.abort()
                raise
            sink.commit()
    return out
