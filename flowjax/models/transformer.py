"""Pre-LayerNorm Transformer decoder over flow sentences, with an explicit preallocated KV cache.

The `paper` preset is the study's nanoGPT-style model: embedding 64, 4 blocks,
4 heads, no dropout. Positions are learned embeddings of the position inside the
sentence (`seq_len` of them). Decoding keeps, per block, keys and values [B, heads,
S, head_dim] written at slot t % S with `dynamic_update_slice`; the blocks are
unrolled in Python rather than scanned over, because a scan over stacked caches
copies the whole cache every step (see docs/stack.md).

Trace mode (`context` > `seq_len`): the model reads a stream of sentences. Each
position attends to the previous `context` positions (a banded causal mask; in
decoding a ring buffer of S = `context` slots, so a stream of any length runs in
bounded memory), the position embedding is that of the position inside its
sentence, and each head adds a learned bias per flow distance (0 for the same
flow, 1 for the previous one, ...): a relative position, so the ring buffer's
slots need no absolute positions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from flowjax.models import heads, layers

LayerCache = dict[str, jax.Array]  # {'k', 'v'}: [B, heads, seq_len, head_dim]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Hyperparameters of the Transformer family (hashable; built by `model_config_from`)."""

    name: str = "transformer"
    embed_dim: int = 64
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    head_scale: float = 0.1  # output weights and biases uniform in +-head_scale/sqrt(fan_in)
    dropout: float = 0.0  # on the embeddings and each residual branch, in training only
    bf16: bool = False

    def __post_init__(self):
        layers.check_dropout(self.dropout)
        if self.name != "transformer":
            raise ValueError(f"TransformerConfig.name must be 'transformer', got {self.name!r}")
        if min(self.embed_dim, self.num_layers, self.num_heads, self.mlp_ratio) < 1:
            raise ValueError(f"model sizes must be >= 1: {self}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"model.embed_dim {self.embed_dim} is not divisible by model.num_heads "
                f"{self.num_heads}"
            )


def _attend(
    q: jax.Array, k: jax.Array, v: jax.Array, allowed: jax.Array, bias: jax.Array | None = None
) -> jax.Array:
    """Softmax attention: q [B, Q, H, D], k/v [B, S, H, D], allowed bool [Q, S], optional
    bias [H, Q, S] -> [B, Q, H, D]."""
    scores = jnp.einsum("bqhd,bshd->bhqs", q, k)
    weights = _softmax_weights(scores, q.shape[-1], allowed, v.dtype, bias)
    return jnp.einsum("bhqs,bshd->bqhd", weights, v)


def _softmax_weights(
    scores: jax.Array,
    head_dim: int,
    allowed: jax.Array,
    dtype: jnp.dtype,
    bias: jax.Array | None = None,
) -> jax.Array:
    """Attention weights: softmax over keys of scores / sqrt(head_dim) (+ bias), disallowed
    keys masked."""
    scores = scores.astype(jnp.float32) / head_dim**0.5
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(scores, axis=-1).astype(dtype)


class _Block(nnx.Module):
    """x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs, dtype: jnp.dtype):
        dim = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.dropout = cfg.dropout
        self.ln1 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.qkv = layers.dense(dim, 3 * dim, gain=1.0, dtype=dtype, rngs=rngs)
        self.proj = layers.dense(dim, dim, gain=1.0, dtype=dtype, rngs=rngs)
        self.ln2 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.fc1 = layers.dense(dim, cfg.mlp_ratio * dim, gain=1.0, dtype=dtype, rngs=rngs)
        self.fc2 = layers.dense(cfg.mlp_ratio * dim, dim, gain=1.0, dtype=dtype, rngs=rngs)

    def _heads(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x [..., D] -> q, k, v each [..., H, D / H]."""
        qkv = self.qkv(self.ln1(x))
        return tuple(a.reshape(*a.shape[:-1], self.num_heads, -1) for a in jnp.split(qkv, 3, -1))

    def _finish(self, x: jax.Array, attended: jax.Array, key: jax.Array | None = None) -> jax.Array:
        keys = layers.dropout_keys(key, 2)
        x = x + layers.dropout(self.proj(attended.reshape(*x.shape)), self.dropout, keys[0])
        return x + layers.dropout(self.fc2(jax.nn.gelu(self.fc1(self.ln2(x)))), self.dropout,
                                  keys[1])  # fmt: skip

    def __call__(
        self,
        x: jax.Array,
        allowed: jax.Array,
        bias: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """Teacher-forced block: x [B, T, D], allowed bool [T, T], bias [H, T, T] -> [B, T, D]."""
        q, k, v = self._heads(x)
        return self._finish(x, _attend(q, k, v, allowed, bias), dropout_key)

    def decode(
        self,
        x: jax.Array,
        cache: LayerCache,
        t: jax.Array,
        allowed: jax.Array,
        bias: jax.Array | None = None,
    ) -> tuple[jax.Array, LayerCache]:
        """One position: x [B, D] at position t, cache -> (output [B, D], cache with t written
        at slot t % S); `allowed` bool [S] and `bias` [H, S] describe the slots after the write.

        The cache is head-major, [B, H, S, Dh], so the step's two einsums read it in place;
        a [B, S, H, Dh] cache made XLA transpose every layer's whole cache at every step.
        """
        q, k, v = self._heads(x)  # [B, H, Dh]
        start = (0, 0, t % cache["k"].shape[2], 0)
        cache = {
            "k": jax.lax.dynamic_update_slice(cache["k"], k[:, :, None], start),
            "v": jax.lax.dynamic_update_slice(cache["v"], v[:, :, None], start),
        }
        scores = jnp.einsum("bhd,bhsd->bhs", q, cache["k"])
        weights = _softmax_weights(scores, q.shape[-1], allowed, cache["v"].dtype, bias)
        out = jnp.einsum("bhs,bhsd->bhd", weights, cache["v"])
        return self._finish(x, out), cache


class Transformer(nnx.Module):
    """Token + position embedding -> pre-LN blocks -> final LayerNorm -> logits head."""

    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        vocab_size: int,
        seq_len: int,
        rngs: nnx.Rngs,
        windows: heads.Windows | None = None,
        context: int = 0,
    ):
        self.dtype = layers.compute_dtype(cfg.bf16)
        self.dropout = cfg.dropout
        self.seq_len = seq_len
        self.window = max(context, seq_len)  # positions each position attends to (S)
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.num_heads = cfg.num_heads
        self.tok = layers.embedding(vocab_size, cfg.embed_dim, dtype=self.dtype, rngs=rngs)
        self.pos = layers.embedding(seq_len, cfg.embed_dim, dtype=self.dtype, rngs=rngs)
        self.blocks = nnx.List(
            [_Block(cfg, dtype=self.dtype, rngs=rngs) for _ in range(cfg.num_layers)]
        )
        self.ln_f = nnx.LayerNorm(cfg.embed_dim, dtype=self.dtype, rngs=rngs)
        # Trace mode: a learned bias per head and flow distance 0 .. ceil(S / seq_len).
        self.flow_bias = (
            nnx.Param(jnp.zeros((cfg.num_heads, 2 + self.window // seq_len), jnp.float32))
            if self.window > seq_len
            else None
        )
        self.head = heads.Head(
            cfg.embed_dim, vocab_size, scale=cfg.head_scale, windows=windows, dtype=self.dtype,
            rngs=rngs,
        )  # fmt: skip

    def __call__(
        self, tokens: jax.Array, *, train: bool, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Teacher-forced logits: tokens int32 [B, T] -> float32 [B, T, width].

        T is at most seq_len, or any length in trace mode (a stream of sentences).
        Dropout (config.dropout; the paper uses none) applies only with `train` and a key.
        """
        length = tokens.shape[1]
        if length > self.seq_len and self.flow_bias is None:
            raise ValueError(f"{length} positions exceed the model's seq_len {self.seq_len}")
        keys = layers.dropout_keys(dropout_key if train else None, 1 + len(self.blocks))
        x = self.tok(tokens) + self.pos(jnp.arange(length) % self.seq_len)
        x = layers.dropout(x, self.dropout, keys[0])
        t = jnp.arange(length)
        allowed = (t[None, :] <= t[:, None]) & (t[:, None] - t[None, :] < self.window)
        bias = self._bias(t[:, None] // self.seq_len - t[None, :] // self.seq_len)
        for block, key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, allowed, bias, key)
        return self.head(self.ln_f(x))

    def _bias(self, flows_back: jax.Array) -> jax.Array | None:
        """The flow-distance bias [H, ...] for distances `flows_back` (None in row mode)."""
        if self.flow_bias is None:
            return None
        table = self.flow_bias[...]
        return table[:, jnp.clip(flows_back, 0, table.shape[1] - 1)]

    def init_decode_state(self, batch_size: int) -> tuple[LayerCache, ...]:
        """Empty K/V caches, one {'k', 'v'} of [B, heads, S, head_dim] per block."""
        shape = (batch_size, self.num_heads, self.window, self.head_dim)
        return tuple(
            {"k": jnp.zeros(shape, self.dtype), "v": jnp.zeros(shape, self.dtype)}
            for _ in self.blocks
        )

    def decode_step(
        self, state: tuple[LayerCache, ...], token: jax.Array, t: jax.Array
    ) -> tuple[jax.Array, tuple[LayerCache, ...]]:
        """Feeds token int32 [B] at t; returns (logits float32 [B, width] for t + 1, state)."""
        x = self.tok(token) + self.pos(t % self.seq_len)
        # Slot s holds position t - (t - s) mod S once t is written; negative: not yet written.
        slot = jnp.arange(self.window)
        held = t - (t - slot) % self.window
        allowed = held >= 0
        bias = self._bias(t // self.seq_len - jnp.maximum(held, 0) // self.seq_len)
        caches = []
        for block, cache in zip(self.blocks, state, strict=True):
            x, cache = block.decode(x, cache, t, allowed, bias)
            caches.append(cache)
        return self.head.step(self.ln_f(x), t), tuple(caches)
