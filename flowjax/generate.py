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

Every output has the input's columns in the input's order and dtypes (`flowjax.table`):
dependent columns are computed from the generated row, constants and row indices filled
in; `<out>.schema.json` beside the files lists how each column was produced and the
columns that could not be (a timestamp in an unknown format, ...). The label's class shares are
`class_balance`: the training shares (default), uniform, or the user's, each exact through
the label's forced token (the label is the first column of the sentence).

Determinism: a row's tokens depend only on (seed, global row index); the values drawn
inside each symbol's interval depend only on (seed, global row index) as well.
Several processes (`parallel.initialize`) split a shard directory: process p samples on its
own devices and writes shards p, p + P, p + 2P, ...; process 0 writes the manifest before
(the arguments, which a rerun must repeat) and after a barrier (the shards, once all are
complete). Any other output is written by process 0 alone.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tqdm
from absl import logging

from flowjax import checkpoint, parallel, sampling, table, traces, zeek
from flowjax.privacy import budget
from flowjax.tokenizer import FlowTokenizer, row_uniforms

MANIFEST = "_manifest.json"  # "_" and "." prefixes: Parquet dataset readers skip them
_FORMAT = "flowjax-parquet-shards-v1"
_COMPLETE = "complete"  # the manifest's record of the finished shards (not an argument)
DEFAULT_STRATEGY = sampling.Temperature()
_ROW_GROUP = 1 << 16  # rows per Parquet row group (or CSV write)
ZEEK_SUFFIXES = (".log", ".log.gz")  # written as Zeek logs (a model trained on one)


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
      trace: the run's trace settings (None in row mode).
      privacy: the DP plan the model was trained under (None: not private).
    """

    graphdef: object
    params: object
    rest: object
    tokenizer: FlowTokenizer
    mesh: jax.sharding.Mesh
    step: int = 0
    workdir: str | None = None
    trace: traces.TraceSettings | None = None  # trace mode: each batch row is a stream
    privacy: dict | None = None
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
    """Loads `step`, else the kept best or latest readable checkpoint (`load_for_inference`),
    onto `devices` (default: this process's, so that each process samples on its own)."""
    mesh = parallel.make_mesh(jax.local_devices() if devices is None else devices)
    workdir = checkpoint.workdir_of(workdir)
    bundle = checkpoint.load_for_inference(workdir, step=step, mesh=mesh)
    return Generator(
        graphdef=bundle.graphdef,
        params=bundle.params,
        rest=bundle.rest,
        tokenizer=bundle.tokenizer,
        mesh=mesh,
        step=int(bundle.step),
        workdir=str(workdir),
        trace=traces.settings(bundle.config),
        privacy=bundle.privacy,
    )


def parse_condition(text: str | None) -> dict[str, str]:
    """Parses --condition 'Label=DDoS,protocol=6' into {'Label': 'DDoS', 'protocol': '6'}."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        col, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not col:
            raise ValueError(f"--condition: expected 'column=value' items, got {item!r}")
        if col in out:
            raise ValueError(f"--condition: column {col!r} is given twice "
                             f"({out[col]!r} and {value!r}); give each column once")  # fmt: skip
        out[col] = value
    return out


def _check_condition(tok: FlowTokenizer, condition: dict) -> None:
    fixed = sorted(tok.columns.index(c) for c in condition if c in tok.columns)
    if fixed != list(range(len(fixed))):
        logging.warning(
            "conditioned columns %s are not a prefix of the sentence order %s: earlier "
            "columns are drawn without seeing them (an intervention, not p(rest | condition))",
            list(condition), list(tok.columns[: max(fixed) + 1]),
        )  # fmt: skip


_CLASS_SALT = 0x5DEECE66D  # keeps the class draw apart from the in-bin value draws


@dataclasses.dataclass(frozen=True)
class ClassPlan:
    """Which label token each generated row is forced to take.

    Attributes:
      position: the label's position in the sentence.
      tokens: the label's class tokens.
      shares: each class's share of the rows.
      exact: assign exactly round(share * n) rows per class (a seeded shuffle of the
        rows), else draw each row's class independently from the shares (the training
        shares: a sample of the real class distribution).
    """

    position: int
    tokens: np.ndarray
    shares: np.ndarray
    exact: bool

    def counts(self, n: int) -> np.ndarray:
        """Rows per class for n rows: largest remainders, so they sum to n."""
        raw = self.shares * n
        counts = np.floor(raw).astype(np.int64)
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[: n - counts.sum()]] += 1
        return counts

    def assign(self, n: int, seed: int):
        """A function rows int64[b] -> label tokens int32[b] for a run of n rows."""
        if self.exact:
            per_row = np.repeat(self.tokens, self.counts(n))
            per_row = np.random.default_rng((seed, _CLASS_SALT)).permutation(per_row)
            return lambda rows: per_row[np.minimum(rows, max(n - 1, 0))].astype(np.int32)
        cdf = np.cumsum(self.shares)

        def draw(rows):
            u = row_uniforms(seed ^ _CLASS_SALT, int(rows[0]), (len(rows), 1))[:, 0]
            idx = np.minimum(np.searchsorted(cdf / cdf[-1], u, side="right"), len(cdf) - 1)
            return self.tokens[idx].astype(np.int32)

        return draw


def class_plan(
    tok: FlowTokenizer, class_balance: str | Mapping | None, condition: dict | None = None
) -> ClassPlan | None:
    """The label plan for `class_balance`: 'real' (training shares), 'uniform', or {class: share}.

    None when there is nothing to plan: no label in the sentence, or the label is fixed
    by `condition`.
    """
    label = tok.schema.label if tok.schema else None
    custom = class_balance not in (None, "real")
    if label not in tok.columns or (condition and label in condition):
        if custom:
            why = "is fixed by the condition" if label in tok.columns else "is not modelled"
            raise ValueError(f"--class_balance={class_balance}: the label {label!r} {why}")
        return None
    codec = tok.codecs[tok.columns.index(label)]
    values = list(codec.values)
    if class_balance in (None, "real"):
        shares = np.asarray(codec.counts, np.float64)
    elif class_balance == "uniform":
        shares = np.ones(len(values))
    else:
        shares = np.zeros(len(values))
        for name, share in dict(class_balance).items():
            key = next((v for v in values if str(v) == str(name)), None)
            if key is None:
                raise ValueError(f"--class_balance: {name!r} is not a class of {label!r}; "
                                 f"classes: {values}")  # fmt: skip
            if not float(share) >= 0:
                raise ValueError(f"--class_balance: the share of {name!r} must be >= 0")
            shares[values.index(key)] = float(share)
    if not shares.sum() > 0:
        raise ValueError(f"--class_balance={class_balance}: the shares sum to 0")
    return ClassPlan(
        position=tok.columns.index(label) + 1,
        tokens=codec.offset + np.arange(len(values)),
        shares=shares / shares.sum(),
        exact=custom,
    )


def parse_class_balance(text: str) -> str | dict:
    """--class_balance: 'real', 'uniform', or a JSON object {class: share}."""
    text = text.strip()
    if text in ("real", "uniform"):
        return text
    try:
        shares = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--class_balance: expected real, uniform or a JSON object of "
                         f"class: share, got {text!r} ({e})") from e  # fmt: skip
    if not isinstance(shares, dict) or not shares:
        raise ValueError(f"--class_balance: expected a JSON object of class: share, got {text!r}")
    return shares


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
    class_balance: str | Mapping | None = "real",
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yields (start, tokens int32[b, seq_len], log_prob float32[b]) for each chunk start.

    Chunk `start` holds global rows [start, min(start + batch_size, num_rows)). The device
    batch is `batch_size` rounded up to a multiple of the device count, so every chunk
    runs one compiled program; padding rows are computed and dropped. The next chunk is
    dispatched before the current one is fetched, so device work overlaps the caller's.
    """
    tok = gen.tokenizer
    fn = gen.sampler(strategy)
    host_tables = sampling.make_tables(tok.legal_mask())
    tables = jax.device_put(host_tables, parallel.replicated(gen.mesh))
    key = jax.device_put(jax.random.key(seed), parallel.replicated(gen.mesh))
    padded = _padded(batch_size, gen.mesh)
    base = tok.condition_tokens(condition) if condition else np.full(tok.seq_len, -1, np.int32)
    if condition:
        _check_condition(tok, condition)
    plan = class_plan(tok, class_balance, condition)
    labels = plan.assign(num_rows, seed) if plan else None

    def dispatch(start):
        rows = start + np.arange(padded, dtype=np.int64)
        if rows[-1] > np.iinfo(np.int32).max:
            raise ValueError(f"row index {rows[-1]} exceeds int32; use fewer rows")
        forced = np.tile(base, (padded, 1))
        if labels is not None:
            forced[:, plan.position] = labels(rows)
        forced = sampling.local_forced(host_tables, forced)
        rows = parallel.shard_batch(rows.astype(np.int32), gen.mesh)
        return fn(gen.params, gen.rest, key, rows, tables, parallel.shard_batch(forced, gen.mesh))

    pending = dispatch(starts[0]) if starts else None
    for i, start in enumerate(starts):
        current = pending
        pending = dispatch(starts[i + 1]) if i + 1 < len(starts) else None
        n = min(batch_size, num_rows - start)
        tokens, log_prob = jax.device_get(current)
        yield start, np.asarray(tokens[:n]), np.asarray(log_prob[:n])


def decode_rows(tok: FlowTokenizer, tokens: np.ndarray, *, seed: int, start: int) -> pd.DataFrame:
    """Sentences of global rows start, start + 1, ... -> rows of the output table."""
    sentence = tok.decode(tokens, seed=seed, row_offset=start)
    return table.complete(sentence, tok.schema, row_offset=start) if tok.schema else sentence


def _as_generator(source: Generator | str | os.PathLike) -> Generator:
    return source if isinstance(source, Generator) else load_generator(source)


def generate(
    source: Generator | str | os.PathLike,
    n: int,
    *,
    seed: int = 0,
    condition: dict | None = None,
    class_balance: str | Mapping | None = "real",
    batch_size: int = 4096,
    strategy: sampling.Strategy = DEFAULT_STRATEGY,
    flows_per_stream: int | None = None,
    prompt: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Generates n flows in memory.

    Args:
      source: a checkpoint directory or a `Generator` (reuse one to avoid reloading).
      n: number of flows.
      seed: the root seed; row r's symbols depend only on (seed, r).
      condition: {column: value} to fix, e.g. {'Label': 'DDoS'}; exact for a prefix of
        the sentence's column order (the label comes first by default).
      class_balance: 'real' (each row's class drawn from the training shares),
        'uniform' (exactly equal counts) or {class: share} (exact counts; classes left
        out get none).
      batch_size: rows per device chunk (rounded up to a multiple of the device count);
        in trace mode, streams per chunk.
      strategy: Greedy(), Temperature(t), TopK(k, t) or TopP(p, t).
      flows_per_stream: trace mode: flows per generated stream (`flowjax.streams`).
      prompt: trace mode: real flows (input columns, time order) that open every stream.

    Returns:
      A DataFrame with n rows and the input table's columns and dtypes, in row order
      (trace mode: stream after stream, each in time order).
    """
    gen = _as_generator(source)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _padded(batch_size, gen.mesh)  # checks batch_size before it divides anything
    tok = gen.tokenizer
    frames = []
    with tqdm.tqdm(total=n, unit="rows", unit_scale=True, desc="generate",
                   disable=None if parallel.is_main_process() else True) as bar:  # fmt: skip
        for frame in _frames(gen, n, seed=seed, condition=condition,
                             class_balance=class_balance, batch_size=batch_size,
                             strategy=strategy, flows_per_stream=flows_per_stream,
                             prompt=prompt):  # fmt: skip
            frames.append(frame)
            bar.update(len(frame))
    if not frames:
        return _empty(tok)
    return pd.concat(frames, ignore_index=True)


def _frames(
    gen: Generator,
    n: int,
    *,
    seed: int,
    condition: dict | None,
    class_balance: str | Mapping | None,
    batch_size: int,
    strategy: sampling.Strategy,
    flows_per_stream: int | None,
    starts: list[int] | None = None,
    prompt: pd.DataFrame | None = None,
) -> Iterator[pd.DataFrame]:
    """Output rows chunk by chunk: rows `starts` (default: all n), or streams in trace mode."""
    if gen.trace is None:
        if prompt is not None:
            raise ValueError("a prompt needs a trace-mode model (config.data.trace)")
        starts = list(range(0, n, batch_size)) if starts is None else starts
        chunks = token_chunks(gen, starts, num_rows=n, seed=seed, batch_size=batch_size,
                              strategy=strategy, condition=condition,
                              class_balance=class_balance)  # fmt: skip
        for start, tokens, _ in chunks:
            yield decode_rows(gen.tokenizer, tokens, seed=seed, start=start)
        return
    from flowjax import streams  # it builds on this module

    if class_balance not in (None, "real"):
        raise ValueError(f"class_balance={class_balance!r}: in trace mode the model draws each "
                         "flow's class in context; condition on the label to fix it")  # fmt: skip
    yield from streams.stream_frames(
        gen, n, seed=seed, batch_size=batch_size, strategy=strategy, condition=condition,
        flows_per_stream=flows_per_stream or streams.DEFAULT_FLOWS_PER_STREAM, prompt=prompt,
    )  # fmt: skip


def _empty(tok: FlowTokenizer) -> pd.DataFrame:
    if tok.schema is None:
        return tok.decode(np.zeros((0, tok.seq_len), np.int32))
    return table.empty(tok.schema)


# ------------------------------------------------------------------- to files


def _args_record(
    gen: Generator, n: int, *, seed, condition, class_balance, batch_size, strategy, shard_rows
):
    record = {
        "format": _FORMAT,
        "num_flows": n,
        "seed": seed,
        "batch_size": batch_size,
        "shard_rows": shard_rows,
        "strategy": {"name": type(strategy).__name__, **dataclasses.asdict(strategy)},
        "condition": {str(k): str(v) for k, v in (condition or {}).items()},
        "class_balance": class_balance,
        "checkpoint": {"workdir": gen.workdir, "step": gen.step},
        "columns": list(gen.tokenizer.columns),
        "privacy": gen.privacy,  # the DP plan the rows were generated under, or None
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
        old.pop(_COMPLETE, None)
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


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as a formula


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """CSV injection escaping (OWASP): text cells that start like a formula get a leading '.

    Off by default, because the escaped cells are no longer the values the model learnt;
    for tables that will be opened in a spreadsheet.
    """
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col]):
            text = frame[col]
            risky = text.str.startswith(_FORMULA_START, na=False)
            frame[col] = text.where(~risky, "'" + text.astype(str))
    return frame


def _arrow_type(dtype) -> pa.DataType:
    return pa.string() if dtype.kind == "O" else pa.from_numpy_dtype(dtype)


class _Sink:
    """One output file written through a temporary name: CSV (optionally gzipped) or Parquet.

    CSV goes through pandas, which writes floats so that `pd.read_csv` reads them back as
    floats (17.0, not 17) and strings exactly. Parquet chunks are buffered up to
    `_ROW_GROUP` rows so that row groups are not tiny.
    """

    def __init__(
        self,
        path: Path,
        empty: pd.DataFrame,
        *,
        tmp: Path,
        csv_safe: bool = False,
        zeek_meta: dict | None = None,
    ):
        self.path, self.empty, self.tmp, self.csv_safe = path, empty, tmp, csv_safe
        self.buffer: list[pa.Table] = []
        name = path.name.lower()
        self.zeek = zeek_meta if name.endswith(ZEEK_SUFFIXES) else None
        self.csv = name.endswith((".csv", ".csv.gz")) or self.zeek is not None
        if self.csv:
            opener = gzip.open if name.endswith(".gz") else open
            self.file = opener(self.tmp, "wt", newline="")
            self.header = True
        else:
            self.schema = pa.schema([(c, _arrow_type(empty[c].dtype)) for c in empty.columns])
            self.writer = pq.ParquetWriter(str(self.tmp), self.schema)

    def write(self, frame: pd.DataFrame) -> None:
        if self.zeek is not None:
            if self.header:
                self.file.write(zeek.header_lines(self.zeek))
            self.file.write(zeek.format_rows(frame, self.zeek))
            self.header = False
            return
        if self.csv:
            frame = escape_formulas(frame) if self.csv_safe else frame
            frame.to_csv(self.file, header=self.header, index=False)
            self.header = False
            return
        self.buffer.append(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        if sum(len(t) for t in self.buffer) >= _ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.concat_tables(self.buffer))
            self.buffer = []

    def _close(self) -> None:
        if self.csv:
            self.file.close()
        else:
            self.writer.close()

    def commit(self) -> None:
        if self.csv and self.header:  # no rows: the header alone
            self.write(self.empty)
        if not self.csv:
            self._flush()
        if self.zeek is not None:
            self.file.write(zeek.close_line(self.zeek))
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
    class_balance: str | Mapping | None = "real",
    batch_size: int = 4096,
    strategy: sampling.Strategy = DEFAULT_STRATEGY,
    shard_rows: int = 1 << 20,
    progress: bool = True,
    csv_safe: bool = False,
    flows_per_stream: int | None = None,
) -> Path:
    """Generates n flows into files, streaming: host memory stays flat for any n.

    `out` ending in .csv, .csv.gz or .parquet is one file (rewritten from the start by a
    rerun), as is .log or .log.gz for a model trained on a Zeek log (written as one, with
    its header); any other `out` is a directory of Parquet shards of `shard_rows` rows (rounded
    down to a multiple of `batch_size`) with a manifest. A rerun into that directory with
    the same arguments skips the complete shards and writes the missing ones, giving the
    same rows as an uninterrupted run; other arguments raise ValueError. Every file is
    written under a `.tmp` name and renamed when complete; `<out>.schema.json` says how
    each column was produced. With several processes each writes its own shards (module
    docstring) and all of them return once every shard is written.

    Args:
      source: a checkpoint directory or a `Generator`.
      n: number of flows.
      out: output file or directory.
      seed, condition, class_balance, batch_size, strategy: as for `generate`.
      shard_rows: rows per Parquet shard in directory mode.
      progress: show a tqdm progress bar.
      csv_safe: escape text cells that a spreadsheet would run as a formula (CSV only;
        `escape_formulas`).
      flows_per_stream: trace mode (one file only): flows per generated stream.

    Returns:
      The path written (file or directory).
    """
    gen = _as_generator(source)
    if gen.privacy:
        logging.info("the model was trained with differential privacy: %s",
                     budget.describe(budget.Plan(**gen.privacy)))  # fmt: skip
    out = Path(out)
    if n < 0:
        raise ValueError(f"--num_flows must be >= 0, got {n}")
    _padded(batch_size, gen.mesh)  # checks batch_size before it divides anything
    tok = gen.tokenizer
    empty = _empty(tok)
    single = out.name.lower().endswith((".csv", ".csv.gz", ".parquet") + ZEEK_SUFFIXES)
    meta = dict(tok.schema.source_format or {}) if tok.schema is not None else {}
    if out.name.lower().endswith(ZEEK_SUFFIXES) and meta.get("format") != "zeek":
        raise ValueError(f"{out}: Zeek output needs a model trained on a Zeek log")
    if gen.trace is not None and not single:
        raise ValueError(f"{out}: a trace-mode model writes one file (.csv, .csv.gz, "
                         ".parquet or a Zeek .log), not a directory of shards")  # fmt: skip
    if single:
        out.parent.mkdir(parents=True, exist_ok=True)
        plan = [(out, 0, n)] if parallel.is_main_process() else []
    else:
        shard_rows = max(1, shard_rows // batch_size) * batch_size
        record = _args_record(gen, n, seed=seed, condition=condition,
                              class_balance=class_balance, batch_size=batch_size,
                              strategy=strategy, shard_rows=shard_rows)  # fmt: skip
        if parallel.is_main_process():
            out.mkdir(parents=True, exist_ok=True)
            _open_manifest(out, record)
        parallel.barrier("generate_manifest")
        if not parallel.is_main_process():
            _open_manifest(out, record)  # the same check: process 0's manifest exists now
        plan = _own_shards(out, n, shard_rows)
    starts = [s for _, first, rows in plan for s in range(first, first + rows, batch_size)]
    todo = sum(rows for _, _, rows in plan)
    logging.info("generating %d of %d rows into %s (%d files)", todo, n, out, len(plan))
    frames = _frames(gen, n, seed=seed, condition=condition, class_balance=class_balance,
                     batch_size=batch_size, strategy=strategy,
                     flows_per_stream=flows_per_stream, starts=starts)  # fmt: skip
    if tok.schema is not None and parallel.is_main_process():
        table.write_sidecar(out, tok.schema, tok.token_kinds())
    started = time.perf_counter()
    bar = tqdm.tqdm(total=todo, unit="rows", unit_scale=True,
                    disable=not progress or not parallel.is_main_process())  # fmt: skip
    with bar:
        for path, _, rows in plan:
            # A shard's temporary name is hidden so that a reader of the directory skips it.
            tmp = path.with_name(("." if not single else "") + path.name + ".tmp")
            sink = _Sink(path, empty, tmp=tmp, csv_safe=csv_safe, zeek_meta=meta)
            try:
                # One file takes every chunk; a shard its rows' chunks.
                chunks = frames if single else itertools.islice(frames, -(-rows // batch_size))
                for frame in chunks:
                    sink.write(frame)
                    bar.update(len(frame))
            except BaseException:
                sink.abort()
                raise
            sink.commit()
    # The others take about as long as this process did; a dead one ends the run sooner.
    parallel.barrier("generate_done", timeout_s=600 + 2 * (time.perf_counter() - started))
    if not single and parallel.is_main_process():
        _close_manifest(out, n, shard_rows)
    return out


def _shards(n: int, shard_rows: int) -> list[tuple[int, int]]:
    """(first row, rows) of each shard of a directory of n rows."""
    return [(first, min(shard_rows, n - first)) for first in range(0, n, shard_rows)]


def _own_shards(out: Path, n: int, shard_rows: int) -> list[tuple[Path, int, int]]:
    """(path, first row, rows) of this process's missing shards: p, p + P, ... of P processes."""
    pid, count = jax.process_index(), jax.process_count()
    plan = []
    for i, (first, rows) in enumerate(_shards(n, shard_rows)):
        path = _shard_path(out, i)
        if i % count != pid:
            continue
        path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)  # a killed run's leftover
        if not _has_rows(path, rows):
            plan.append((path, first, rows))
    return plan


def _close_manifest(out: Path, n: int, shard_rows: int) -> None:
    """Adds the finished shards to the manifest (process 0, after every process wrote its own)."""
    shards = _shards(n, shard_rows)
    missing = [_shard_path(out, i).name for i, (_, rows) in enumerate(shards)
               if not _has_rows(_shard_path(out, i), rows)]  # fmt: skip
    if missing:
        raise RuntimeError(f"{out}: shards {missing} are incomplete after every process finished")
    path = out / MANIFEST
    record = json.loads(path.read_text())
    names = [_shard_path(out, i).name for i in range(len(shards))]
    record[_COMPLETE] = {"rows": n, "shards": names}
    _write_atomic(path, json.dumps(record, indent=2))
