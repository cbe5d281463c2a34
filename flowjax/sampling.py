"""The sampler: one jitted `lax.scan` that draws whole sentences from a trained model.

A sentence is `[start, s_1, ..., s_F]` of fixed length `seq_len = 1 + F`, so generation
is a scan over positions t = 0..F-1: feed the token at t to the model's `decode_step`,
get the logits for t+1, mask the tokens that are illegal for that column, and draw one.
In trace mode (`flowjax.traces`) the scan runs on over a stream of n sentences, positions
0..n * seq_len - 1, the tables read at t % seq_len, the model's state carried throughout.

Decisions (see docs/performance.md for the measurements behind them):
- Exact inverse-CDF sampling with one uniform per row and step (softmax, cumulative
  sum, count of `cdf <= u * total`) instead of `jax.random.categorical`, which draws a
  Gumbel for every logit and cost about 70 % of a GRU sampler here.
- Only a window of the vocabulary is touched per step: in the per-column tokenizer each
  column owns a small contiguous token range, so masking, softmax and the CDF run over
  the widest column's range, not the whole vocabulary. A model with the per-column
  head (`models.heads`) computes only that window's logits; with the full head the
  window is a dynamic slice of the logits.
- Randomness is a function of (seed, global row index, position): the row key is
  `fold_in(key(seed), row)` and the step key `fold_in(row_key, t)`, so a row does not
  depend on the batch size, the chunking or the number of devices.
- Forced tokens (conditional generation) replace the draw at their position inside the
  scan, so later columns see them: exact conditioning on any prefix, no rejection loop.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from flowjax import parallel
from flowjax.models import column_windows, heads

_TRACES = [0]  # how often the sampler was traced (compiled): tests assert it stays at one


def trace_count() -> int:
    """Number of times the scan sampler has been traced in this process (a compile counter)."""
    return _TRACES[0]


# ------------------------------------------------------------------ strategies


_MATMUL_CDF_MAX_WIDTH = 512  # up to this window a triangular matmul beats XLA's CPU cumsum


def _cumsum(x: jax.Array) -> jax.Array:
    """Inclusive prefix sums along the last axis of float32[B, W].

    For small W a matmul with an upper-triangular ones matrix is about 2x faster than
    XLA's reduce-window cumsum on CPU. Either way every output column accumulates the
    same terms in the same order plus exact zeros, so the sums never decrease.
    """
    width = x.shape[-1]
    if width > _MATMUL_CDF_MAX_WIDTH:
        return jnp.cumsum(x, axis=-1)
    return x @ jnp.triu(jnp.ones((width, width), x.dtype))


def _first(where: jax.Array) -> jax.Array:
    """int32[B]: index of the first True along the last axis (a min, cheaper than argmax on CPU)."""
    iota = jax.lax.broadcasted_iota(jnp.int32, where.shape, where.ndim - 1)
    return jnp.min(jnp.where(where, iota, where.shape[-1] - 1), axis=-1)


def _shifted_exp(scaled: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(max float32[B, 1], exp(scaled - max) float32[B, W]): the unnormalised softmax.

    The step's log-probability and the strategies both call this on the same logits,
    so XLA computes it once (common subexpressions are merged).
    """
    m = jnp.max(scaled, axis=-1, keepdims=True)
    return m, jnp.exp(scaled - m)


def _inverse_cdf(weights: jax.Array, keep: jax.Array, u: jax.Array) -> jax.Array:
    """Draws index i with probability weights[i] / sum(weights); one uniform per row.

    Args:
      weights: float32[B, W] non-negative, zero wherever `keep` is False.
      keep: bool[B, W] tokens that may be drawn (at least one per row with positive weight).
      u: float32[B] uniforms in [0, 1).

    Returns:
      int32[B] indices: the count of CDF entries `<= u * total` (with `u * total < total`),
      which lands on an entry of positive mass because the CDF never decreases. Should
      float rounding ever break that, the first kept index is taken instead of a token
      that may not be drawn.
    """
    cdf = _cumsum(weights)
    total = cdf[:, -1:]
    x = jnp.minimum(u[:, None] * total, jnp.nextafter(total, 0.0))
    idx = jnp.minimum(jnp.sum(cdf <= x, axis=-1, dtype=jnp.int32), weights.shape[-1] - 1)
    ok = jnp.take_along_axis(keep, idx[:, None], axis=-1)[:, 0]
    return jnp.where(ok, idx, _first(keep))


@dataclasses.dataclass(frozen=True)
class Greedy:
    """Always the most likely legal token (ties: the lowest token id)."""

    temperature: float = dataclasses.field(default=1.0, init=False)
    needs_uniform = False

    def select(self, scaled: jax.Array, u: jax.Array) -> jax.Array:
        """Picks int32[B] tokens from masked logits float32[B, W]; `u` is unused."""
        del u
        return _first(scaled == jnp.max(scaled, axis=-1, keepdims=True))


@dataclasses.dataclass(frozen=True)
class Temperature:
    """Ancestral sampling from softmax(logits / temperature) over the legal tokens."""

    temperature: float = 1.0
    needs_uniform = True

    def __post_init__(self):
        _check_temperature(self.temperature)

    def select(self, scaled: jax.Array, u: jax.Array) -> jax.Array:
        """Draws int32[B] tokens from masked, temperature-scaled logits float32[B, W]."""
        return _inverse_cdf(_shifted_exp(scaled)[1], jnp.isfinite(scaled), u)


@dataclasses.dataclass(frozen=True)
class TopK:
    """Samples among the k most likely legal tokens (ties at the k-th value are all kept)."""

    k: int
    temperature: float = 1.0
    needs_uniform = True

    def __post_init__(self):
        _check_temperature(self.temperature)
        if self.k < 1:
            raise ValueError(f"TopK: k must be >= 1, got {self.k}")

    def select(self, scaled: jax.Array, u: jax.Array) -> jax.Array:
        """Draws int32[B] tokens from masked logits float32[B, W] truncated to the top k."""
        k = min(self.k, scaled.shape[-1])
        kth = jax.lax.top_k(scaled, k)[0][:, -1:]
        keep = jnp.isfinite(scaled) & (scaled >= kth)
        return _inverse_cdf(jnp.where(keep, _shifted_exp(scaled)[1], 0.0), keep, u)


@dataclasses.dataclass(frozen=True)
class TopP:
    """Nucleus sampling: the smallest set of most likely tokens whose mass reaches p."""

    p: float
    temperature: float = 1.0
    needs_uniform = True

    def __post_init__(self):
        _check_temperature(self.temperature)
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"TopP: p must be in (0, 1], got {self.p}")

    def select(self, scaled: jax.Array, u: jax.Array) -> jax.Array:
        """Draws int32[B] tokens from masked logits float32[B, W] truncated to the nucleus."""
        weights = _shifted_exp(scaled)[1]
        probs = weights / jnp.sum(weights, axis=-1, keepdims=True)
        desc = -jnp.sort(-probs, axis=-1)
        before = jnp.cumsum(desc, axis=-1) - desc  # mass strictly above each sorted entry
        cutoff = jnp.min(jnp.where(before < self.p, desc, jnp.inf), axis=-1, keepdims=True)
        keep = jnp.isfinite(scaled) & (probs >= cutoff)
        return _inverse_cdf(jnp.where(keep, weights, 0.0), keep, u)


Strategy = Greedy | Temperature | TopK | TopP


def _check_temperature(temperature: float) -> None:
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def strategy_from_flags(
    name: str, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> Strategy:
    """Builds a strategy from its name ('greedy', 'temperature', 'top_k', 'top_p') and knobs."""
    if name == "greedy":
        return Greedy()
    if name == "temperature":
        return Temperature(temperature)
    if name == "top_k":
        return TopK(top_k, temperature)
    if name == "top_p":
        return TopP(top_p, temperature)
    raise ValueError(f"--strategy must be greedy, temperature, top_k or top_p; got {name!r}")


# ---------------------------------------------------------------------- tables


@flax.struct.dataclass
class Tables:
    """Per-position tables the scan reads (host-built, replicated on every device).

    Attributes:
      lo: int32[seq_len] first token of each position's vocabulary window.
      legal: bool[seq_len, W] which tokens of the window are legal at that position.
    """

    lo: jax.Array
    legal: jax.Array


def make_tables(legal_mask: np.ndarray) -> Tables:
    """Turns the tokenizer's legal mask into the scan's tables.

    Args:
      legal_mask: bool[seq_len, V] from `FlowTokenizer.legal_mask()`.

    Returns:
      Tables whose window width W is the widest legal range of any column (<= V); the
      same windows as a per-column head's (`models.column_windows`).
    """
    legal_mask = np.asarray(legal_mask, dtype=bool)
    windows = column_windows(legal_mask)
    lo, width = np.asarray(windows.lo), windows.width
    window = np.stack([legal_mask[p, lo[p] : lo[p] + width] for p in range(len(lo))])
    return Tables(lo=jnp.asarray(lo, jnp.int32), legal=jnp.asarray(window))


def local_forced(tables: Tables, forced: np.ndarray) -> np.ndarray:
    """Checks forced tokens and makes them window-local for the scan.

    Args:
      tables: from `make_tables`.
      forced: int[B, n * seq_len] (or int[n * seq_len] for every row; n = 1 but in trace
        mode) vocabulary tokens to force, -1 where free (`FlowTokenizer.condition_tokens()`).

    Returns:
      int32 window-local tokens of the same shape, -1 where free.
    """
    forced = np.asarray(forced)
    lo, legal = np.asarray(tables.lo), np.asarray(tables.legal)
    seq_len, width = legal.shape
    if forced.shape[-1] % seq_len or not forced.shape[-1]:
        raise ValueError(f"forced tokens must have a multiple of {seq_len} positions, got "
                         f"shape {forced.shape}")  # fmt: skip
    lo = np.tile(lo, forced.shape[-1] // seq_len)  # a stream repeats the sentence's positions
    legal = np.tile(legal, (forced.shape[-1] // seq_len, 1))
    local = np.where(forced >= 0, forced - lo, -1)
    local[..., 0] = -1  # the stream's first start symbol is fed, never drawn
    pos = np.broadcast_to(np.arange(forced.shape[-1]), local.shape)
    inside = (local >= 0) & (local < width)
    ok = (local < 0) & ((forced < 0) | (pos == 0)) | inside & legal[
        pos, np.clip(local, 0, width - 1)
    ]
    if not ok.all():
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise ValueError(f"forced token {int(forced[where])} is not legal at position {where[-1]}")
    return local.astype(np.int32)


# --------------------------------------------------------------------- sampler


@flax.struct.dataclass
class _Carry:
    decode_state: Any  # the model's pytree (RNN carry, KV cache, WaveNet queues)
    tokens: jax.Array  # int32[B, seq_len]; column 0 is the start symbol 0
    log_prob: jax.Array  # float32[B] running sum over the positions drawn so far


def uniforms(key: jax.Array, rows: jax.Array, steps: int) -> jax.Array:
    """Per-row, per-step uniforms that depend only on (key, global row index, step).

    Args:
      key: the root key, `jax.random.key(seed)`.
      rows: int32[B] global row indices.
      steps: number of positions drawn (seq_len - 1).

    Returns:
      float32[steps, B] with entry [t, b] = uniform(fold_in(fold_in(key, rows[b]), t)).
    """

    def one(row):
        row_key = jax.random.fold_in(key, row)
        return jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(row_key, t)))(
            jnp.arange(steps)
        )

    return jax.vmap(one, out_axes=1)(rows)


def _sample(
    graphdef: nnx.GraphDef,
    strategy: Strategy,
    params: nnx.State,
    rest: nnx.State,
    key: jax.Array,
    rows: jax.Array,
    tables: Tables,
    forced: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    _TRACES[0] += 1
    logging.info("tracing the sampler: batch %d, strategy %s", rows.shape[0], strategy)
    model = nnx.merge(graphdef, params, rest, copy=True)
    batch = rows.shape[0]
    seq_len, width = tables.legal.shape
    windows = heads.windows_of(model)
    column_head = windows is not None
    if column_head and windows.width != width:
        raise ValueError(f"the model's column head is {windows.width} wide, the tables {width}")
    steps = forced.shape[1] - 1  # one sentence, or a stream of them (trace mode)
    if strategy.needs_uniform:
        u = uniforms(key, rows, steps)
    else:
        u = jnp.zeros((steps, batch), jnp.float32)

    def step(carry: _Carry, xs):
        t, u_t = xs
        token = jax.lax.dynamic_index_in_dim(carry.tokens, t, axis=1, keepdims=False)
        logits, state = model.decode_step(carry.decode_state, token, t)  # [B, V] or [B, W]
        column = (t + 1) % seq_len  # a stream repeats the sentence's positions
        lo = tables.lo[column]
        if not column_head:  # the full head's logits: slice the column's window
            logits = jax.lax.dynamic_slice_in_dim(logits, lo, width, axis=1)  # [B, W]
        scaled = jnp.where(tables.legal[column], logits / strategy.temperature, -jnp.inf)
        fixed = forced[:, t + 1]  # [B], window-local, -1 where free
        local = jnp.where(fixed >= 0, fixed, strategy.select(scaled, u_t))  # [B]
        m, weights = _shifted_exp(scaled)
        picked = jnp.take_along_axis(scaled - m, local[:, None], axis=-1)[:, 0]
        lse = jnp.log(jnp.sum(weights, axis=-1))
        tokens = jax.lax.dynamic_update_index_in_dim(carry.tokens, lo + local, t + 1, axis=1)
        return _Carry(state, tokens, carry.log_prob + (picked - lse)), None

    init = _Carry(
        decode_state=model.init_decode_state(batch),
        tokens=jnp.zeros((batch, steps + 1), jnp.int32),
        log_prob=jnp.zeros((batch,), jnp.float32),
    )
    final, _ = jax.lax.scan(step, init, (jnp.arange(steps, dtype=jnp.int32), u))
    return final.tokens, final.log_prob


def make_sampler(
    graphdef: nnx.GraphDef,
    *,
    strategy: Strategy,
    mesh: jax.sharding.Mesh | None = None,
):
    """Returns the jitted sampler `(params, rest, key, rows, tables, forced) -> (tokens, log_prob)`.

    It draws one sentence per entry of `rows` (global row indices, int32[B]), taking the
    tokens of `forced` (int32[B, seq_len] window-local, from `local_forced`; -1 where
    free) where given; with forced int32[B, n * seq_len] it draws a stream of n sentences
    per row (trace mode: the model's state runs on from flow to flow). It returns
    tokens int32[B, seq_len] (column 0 = start symbol 0, every token legal for its column,
    forced positions as requested) and log_prob float32[B]: the row's log-probability
    under the model with illegal tokens masked out and logits divided by the strategy's
    temperature (1 for Greedy), summed over positions 1..F including forced ones; top-k
    and top-p truncation is not part of the score. With a mesh, rows and outputs are
    sharded on its 'data' axis (B a multiple of the device count) and parameters
    replicated; each device runs the scan on its rows with no communication.

    Args:
      graphdef: the model's static graph from `nnx.split(model, nnx.Param, ...)`.
      strategy: a Greedy, Temperature, TopK or TopP instance (static).
      mesh: a one-axis 'data' mesh, or None for the default device.
    """
    fn = functools.partial(_sample, graphdef, strategy)
    if mesh is None:
        return jax.jit(fn)
    repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
    return jax.jit(
        fn, in_shardings=(repl, repl, repl, data, repl, data), out_shardings=(data, data)
    )


def sequence_log_prob(
    model: nnx.Module, tokens: jax.Array, legal_mask: jax.Array, *, temperature: float = 1.0
) -> jax.Array:
    """Teacher-forced log-probability of whole sentences under the masked model.

    The same quantity as the sampler's `log_prob`, computed from one `__call__` over the
    full sentence; used to check the sampler and to score real flows.

    Args:
      model: a flowjax model.
      tokens: int32[B, seq_len] sentences (column 0 = start symbol), or streams of them
        int32[B, n * seq_len] (trace mode).
      legal_mask: bool[seq_len, V] from the tokenizer.
      temperature: logits are divided by it before the softmax.

    Returns:
      float32[B] sum over positions 1..F of log p(token_t | tokens_<t).
    """
    logits = model(tokens[:, :-1], train=False) / temperature  # [B, F, V] or [B, F, W]
    legal_mask = np.asarray(legal_mask)  # a stream repeats the sentence's positions
    legal_mask = legal_mask[np.arange(tokens.shape[1]) % len(legal_mask)]
    targets, legal = heads.localize(
        heads.windows_of(model), tokens[:, 1:], jnp.asarray(legal_mask)[1:]
    )
    logp = jax.nn.log_softmax(jnp.where(legal[None], logits, -jnp.inf), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0].sum(axis=-1)
