"""Generation in trace mode: each batch row is a stream of flows, decoded into a trace.

The jitted scan (`flowjax.sampling`) draws `flows_per_stream` sentences per row, one after
another, with the model's state running on from flow to flow (the Transformer's ring
buffer holds the last `context_flows` flows). A stream's timestamps start at a draw from
the real sessions' start times (the capture's start without sessions) and add the
sampled gaps. The output holds the streams one after another, each in time order.

Randomness: stream s's tokens depend only on (seed, s); its values inside each symbol's
interval on (seed, s, flow), as rows do in row mode.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np
import pandas as pd

from flowjax import parallel, sampling, table, timefmt
from flowjax.generate import Generator, _padded
from flowjax.netcodecs import TimeCodec
from flowjax.tokenizer import row_uniforms

DEFAULT_FLOWS_PER_STREAM = 512
_START_SALT = 0x2545F491  # keeps the start-time draw apart from the in-bin value draws


def stream_frames(
    gen: Generator,
    n: int,
    *,
    seed: int,
    batch_size: int,
    strategy: sampling.Strategy,
    condition: dict | None = None,
    flows_per_stream: int = DEFAULT_FLOWS_PER_STREAM,
    prompt: pd.DataFrame | None = None,
) -> Iterator[pd.DataFrame]:
    """Yields the output rows of n flows, a batch of streams at a time (the last cut to n).

    Args:
      gen: a Generator of a trace-mode checkpoint.
      n: flows in all.
      seed: the root seed.
      batch_size: streams per device batch (rounded up to a multiple of the device count).
      strategy: the sampling strategy.
      condition: {column: value} fixed in every flow of every stream (e.g. a label).
      flows_per_stream: the length of each stream.
      prompt: real flows (the input's columns, in time order) that open every stream: the
        model continues them, and the streams start at the prompt's first timestamp.
    """
    if flows_per_stream < 1:
        raise ValueError(f"flows_per_stream must be >= 1, got {flows_per_stream}")
    if prompt is not None and not 0 < len(prompt) <= flows_per_stream:
        raise ValueError(f"the prompt has {len(prompt)} flows; give 1 to flows_per_stream "
                         f"({flows_per_stream})")  # fmt: skip
    tok = gen.tokenizer
    host_tables = sampling.make_tables(tok.legal_mask())
    repl = parallel.replicated(gen.mesh)
    tables = jax.device_put(host_tables, repl)
    key = jax.device_put(jax.random.key(seed), repl)
    fn = gen.sampler(strategy)
    base = tok.condition_tokens(condition) if condition else np.full(tok.seq_len, -1, np.int32)
    forced = np.tile(base, flows_per_stream)
    gaps = next((c for c in tok.codecs if isinstance(c, TimeCodec) and c.gaps), None)
    if prompt is not None:  # the prompt's sentences open every stream (its first gap is 0)
        forced[: len(prompt) * tok.seq_len] = tok.encode(prompt.reset_index(drop=True)).ravel()
    n_streams = -(-n // flows_per_stream)
    batch_size = max(1, min(batch_size, n_streams))  # no padding streams beyond the n asked
    padded = _padded(batch_size, gen.mesh)
    # The same for every batch: each row's forced tokens, and a prompt's start time.
    forced = sampling.local_forced(host_tables, forced)
    forced = parallel.shard_batch(np.tile(forced, (padded, 1)), gen.mesh)
    if gaps is not None and prompt is not None:
        fmt = timefmt.TimeFormat.from_dict(gaps.fmt)
        prompt_start = timefmt.parse(prompt[gaps.name].iloc[:1], fmt)[0]
    for first in range(0, n_streams, batch_size):
        rows = first + np.arange(padded, dtype=np.int32)
        tokens, _ = fn(gen.params, gen.rest, key, parallel.shard_batch(rows, gen.mesh), tables,
                       forced)  # fmt: skip
        b = min(batch_size, n_streams - first)
        flows = np.asarray(jax.device_get(tokens))[:b].reshape(b * flows_per_stream, -1)
        starts = None
        if gaps is not None and prompt is not None:
            starts = np.full(b, prompt_start)
        elif gaps is not None:
            u = row_uniforms(seed ^ _START_SALT, first, (b, 1))[:, 0]
            starts = gaps.draw_starts(u)
        offset = first * flows_per_stream
        frame = tok.decode(flows, seed=seed, row_offset=offset, starts=starts)
        frame = table.complete(frame, tok.schema, row_offset=offset) if tok.schema else frame
        yield frame.iloc[: max(0, n - offset)]
