"""Pre-LayerNorm Transformer decoder over flow sentences, with an explicit preallocated KV cache.

The `paper` preset is the study's nanoGPT-style model: embedding 64, 4 blocks,
4 heads, no dropout. Positions are learned embeddings up to `seq_len`.
Decoding keeps, per block, keys and values [B, heads, seq_len, head_dim]
written at position t with `dynamic_update_slice`; the blocks are unrolled in
Python rather than scanned over, because a scan over stacked caches copies the
whole cache every step (see docs/stack.md).
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


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, allowed: jax.Array) -> jax.Array:
    """Softmax attention: q [B, Q, H, D], k/v [B, S, H, D], allowed bool [Q, S] -> [B, Q, H, D]."""
    weights = _softmax_weights(jnp.einsum("bqhd,bshd->bhqs", q, k), q.shape[-1], allowed, v.dtype)
    return jnp.einsum("bhqs,bshd->bqhd", weights, v)


def _softmax_weights(
    scores: jax.Array, head_dim: int, allowed: jax.Array, dtype: jnp.dtype
) -> jax.Array:
    """Attention weights: softmax over keys of scores / sqrt(head_dim), disallowed keys masked."""
    scores = scores.astype(jnp.float32) / head_dim**0.5
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

    def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        """Teacher-forced block: x [B, T, D] -> [B, T, D], causal."""
        q, k, v = self._heads(x)
        causal = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
        return self._finish(x, _attend(q, k, v, causal), dropout_key)

    def decode(self, x: jax.Array, cache: LayerCache, t: jax.Array) -> tuple[jax.Array, LayerCache]:
        """One position: x [B, D] at position t, cache -> (output [B, D], cache with t written).

        The cache is head-major, [B, H, S, Dh], so the step's two einsums read it in place;
        a [B, S, H, Dh] cache made XLA transpose every layer's whole cache at every step.
        """
        q, k, v = self._heads(x)  # [B, H, Dh]
        start = (0, 0, t, 0)
        cache = {
            "k": jax.lax.dynamic_update_slice(cache["k"], k[:, :, None], start),
            "v": jax.lax.dynamic_update_slice(cache["v"], v[:, :, None], start),
        }
        scores = jnp.einsum("bhd,bhsd->bhs", q, cache["k"])
        allowed = jnp.arange(cache["k"].shape[2]) <= t
        weights = _softmax_weights(scores, q.shape[-1], allowed, cache["v"].dtype)
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
    ):
        self.dtype = layers.compute_dtype(cfg.bf16)
        self.dropout = cfg.dropout
        self.seq_len = seq_len
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.num_heads = cfg.num_heads
        self.tok = layers.embedding(vocab_size, cfg.embed_dim, dtype=self.dtype, rngs=rngs)
        self.pos = layers.embedding(seq_len, cfg.embed_dim, dtype=self.dtype, rngs=rngs)
        self.blocks = nnx.List(
            [_Block(cfg, dtype=self.dtype, rngs=rngs) for _ in range(cfg.num_layers)]
        )
        self.ln_f = nnx.LayerNorm(cfg.embed_dim, dtype=self.dtype, rngs=rngs)
        self.head = heads.Head(
            cfg.embed_dim, vocab_size, scale=cfg.head_scale, windows=windows, dtype=self.dtype,
            rngs=rngs,
        )  # fmt: skip

    def __call__(
        self, tokens: jax.Array, *, train: bool, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Teacher-forced logits: tokens int32 [B, T] (T <= seq_len) -> float32 [B, T, width].

        Dropout (config.dropout; the paper uses none) applies only with `train` and a key.
        """
        if tokens.shape[1] > self.seq_len:
            raise ValueError(
                f"{tokens.shape[1]} positions exceed the model's seq_len {self.seq_len}"
            )
        keys = layers.dropout_keys(dropout_key if train else None, 1 + len(self.blocks))
        x = self.tok(tokens) + self.pos(jnp.arange(tokens.shape[1]))
        x = layers.dropout(x, self.dropout, keys[0])
        for block, key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, key)
        return self.head(self.ln_f(x))

    def init_decode_state(self, batch_size: int) -> tuple[LayerCache, ...]:
        """Empty K/V caches, one {'k', 'v'} of [B, heads, seq_len, head_dim] per block."""
        shape = (batch_size, self.num_heads, self.seq_len, self.head_dim)
        return tuple(
            {"k": jnp.zeros(shape, self.dtype), "v": jnp.zeros(shape, self.dtype)}
            for _ in self.blocks
        )

    def decode_step(
        self, state: tuple[LayerCache, ...], token: jax.Array, t: jax.Array
    ) -> tuple[jax.Array, tuple[LayerCache, ...]]:
        """Feeds token int32 [B] at t; returns (logits float32 [B, width] for t + 1, state)."""
        x = self.tok(token) + self.pos(t)
        caches = []
        for block, cache in zip(self.blocks, state, strict=True):
            x, cache = block.decode(x, cache, t)
            caches.append(cache)
        return self.head.step(self.ln_f(x), t), tuple(caches)
