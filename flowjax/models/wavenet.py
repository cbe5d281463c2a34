"""WaveNet over flow sentences: kernel-2 dilated causal convolutions, with fast queued decoding.

Two shapes from one class:
- the study's NPLM (`residual=False`, the `paper` preset): levels of
  Linear(no bias) -> BatchNorm -> tanh, each merging a position with the one
  `dilation` steps back; dilations (1, 2, 4) give a context of 8 symbols;
- a WaveNet proper (`residual=True`): an input projection, the same dilated
  levels with residual and skip connections (optionally gated units), and a
  readout from the summed skips; by default the dilations double until the
  receptive field covers the whole sentence.

Positions before the sentence hold the start symbol 0 (the study's left
padding). Every such position has the same activations at each level, so one
extra column at index 0 carries them in the teacher-forced pass, and the
decode state starts from them: per level, a ring buffer of the last `dilation`
inputs (fast WaveNet generation, one column of work per step).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from flowjax.models import heads, layers


@dataclasses.dataclass(frozen=True, kw_only=True)
class WaveNetConfig:
    """Hyperparameters of the WaveNet family (hashable; built by `model_config_from`)."""

    name: str = "wavenet"
    embed_dim: int = 24
    hidden: int = 128
    # Dilation of each level; empty: 1, 2, 4, ... until the receptive field covers the sentence.
    dilations: tuple[int, ...] = (1, 2, 4)
    residual: bool = False  # residual + skip connections (WaveNet) rather than a plain stack
    gated: bool = False  # tanh(a) * sigmoid(b) units instead of tanh
    batch_norm: bool = True
    head_scale: float = 0.1  # output weights and biases uniform in +-head_scale/sqrt(fan_in)
    dropout: float = 0.0  # on the embeddings and the head's input, in training only
    bf16: bool = False

    def __post_init__(self):
        layers.check_dropout(self.dropout)
        if self.name != "wavenet":
            raise ValueError(f"WaveNetConfig.name must be 'wavenet', got {self.name!r}")
        if min(self.embed_dim, self.hidden) < 1:
            raise ValueError(f"model.embed_dim and model.hidden must be >= 1: {self}")
        if any(int(d) != d or d < 1 for d in self.dilations):
            raise ValueError(f"model.dilations must be positive integers, got {self.dilations}")


def resolve_dilations(dilations: tuple[int, ...], seq_len: int) -> tuple[int, ...]:
    """The configured dilations, or powers of two until 1 + sum(dilations) >= seq_len - 1."""
    if dilations:
        return tuple(int(d) for d in dilations)
    out = [1]
    while 1 + sum(out) < seq_len - 1:
        out.append(2 * out[-1])
    return tuple(out)


def _shift(x: jax.Array, d: int) -> jax.Array:
    """past[:, i] = x[:, max(i - d, 0)] for x [B, L, C]: column 0 stands for every earlier one."""
    length = x.shape[1]
    n_pad = min(d + 1, length)
    pad = jnp.broadcast_to(x[:, :1], (x.shape[0], n_pad, x.shape[2]))
    return jnp.concatenate([pad, x[:, 1 : max(length - d, 1)]], axis=1)


class _CausalLevel(nnx.Module):
    """One kernel-2 dilated causal convolution: f([x[t - dilation], x[t]]) for every t."""

    def __init__(
        self,
        in_dim: int,
        cfg: WaveNetConfig,
        dilation: int,
        *,
        last: bool,
        rngs: nnx.Rngs,
        dtype: jnp.dtype,
    ):
        self.dilation = dilation
        self.gated = cfg.gated
        width = 2 * cfg.hidden if cfg.gated else cfg.hidden
        self.conv = layers.dense(
            2 * in_dim, width, use_bias=not cfg.batch_norm, dtype=dtype, rngs=rngs
        )
        self.norm = layers.batch_norm(width, dtype=dtype, rngs=rngs) if cfg.batch_norm else None
        # A bias that only reaches the next level's BatchNorm would get a zero gradient (and
        # Adam would turn its round-off into steps), so the residual projection has none; the
        # last level's residual output is never read, so it has no projection at all.
        proj = functools.partial(layers.dense, cfg.hidden, cfg.hidden, gain=1.0, dtype=dtype)
        self.res = (
            proj(use_bias=not cfg.batch_norm, rngs=rngs) if cfg.residual and not last else None
        )
        self.skip = proj(rngs=rngs) if cfg.residual else None

    def __call__(
        self,
        past: jax.Array,
        now: jax.Array,
        *,
        train: bool,
        mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Applies the level to inputs `past` = x[t - dilation] and `now` = x[t].

        Args:
          past, now: [..., in_dim] level inputs.
          train: BatchNorm uses batch statistics (and updates its running ones) if True.
          mask: bool, broadcastable to the pre-activations: the positions whose
            batch statistics count.

        Returns:
          (the next level's input [..., hidden], the skip contribution or None). A
          residual stack's last level returns z itself, which nothing reads.
        """
        h = self.conv(jnp.concatenate([past, now], axis=-1))
        if self.norm is not None:
            h = self.norm(h, use_running_average=not train, mask=mask)
        if self.gated:
            a, b = jnp.split(h, 2, axis=-1)
            z = jnp.tanh(a) * jax.nn.sigmoid(b)
        else:
            z = jnp.tanh(h)
        skip = None if self.skip is None else self.skip(z)
        return (z if self.res is None else now + self.res(z)), skip


class WaveNet(nnx.Module):
    """Dilated causal language model over sentences of `seq_len` symbols."""

    def __init__(
        self,
        cfg: WaveNetConfig,
        *,
        vocab_size: int,
        seq_len: int,
        rngs: nnx.Rngs,
        windows: heads.Windows | None = None,
        context: int = 0,
    ):
        dtype = layers.compute_dtype(cfg.bf16)
        self.residual = cfg.residual
        self.dropout = cfg.dropout
        # Trace mode: the receptive field spans `context` positions (previous flows).
        dilations = resolve_dilations(cfg.dilations, max(seq_len, context))
        self.embed = layers.embedding(vocab_size, cfg.embed_dim, dtype=dtype, rngs=rngs)
        in_proj = functools.partial(layers.dense, cfg.embed_dim, cfg.hidden, gain=1.0)
        self.in_proj = (
            in_proj(use_bias=not cfg.batch_norm, dtype=dtype, rngs=rngs) if cfg.residual else None
        )
        in_dim = cfg.hidden if cfg.residual else cfg.embed_dim
        levels = []
        for i, d in enumerate(dilations):
            last = i == len(dilations) - 1
            levels.append(_CausalLevel(in_dim, cfg, d, last=last, dtype=dtype, rngs=rngs))
            in_dim = cfg.hidden
        self.levels = nnx.List(levels)
        self.head = heads.Head(
            cfg.hidden, vocab_size, scale=cfg.head_scale, windows=windows, dtype=dtype, rngs=rngs
        )

    @property
    def receptive_field(self) -> int:
        """How many symbols (the current one included) each prediction sees."""
        return 1 + sum(level.dilation for level in self.levels)

    def _input(self, tokens: jax.Array) -> jax.Array:
        x = self.embed(tokens)
        return x if self.in_proj is None else self.in_proj(x)

    def _features(self, x: jax.Array, skip: jax.Array | float) -> jax.Array:
        return jnp.tanh(skip) if self.residual else x

    def __call__(
        self, tokens: jax.Array, *, train: bool, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Teacher-forced logits.

        Args:
          tokens: int32 [B, T]; tokens[:, 0] is the start symbol.
          train: BatchNorm in training mode (batch statistics over real positions).
          dropout_key: with `train`, drops out (config.dropout) the embeddings and the
            head's input.

        Returns:
          float32 [B, T, head width]; position t predicts token t + 1.
        """
        length = tokens.shape[1] + 1
        # Column 0 stands for every position before the sentence (see the module docstring).
        keys = layers.dropout_keys(dropout_key if train else None, 2)
        x = self._input(jnp.pad(tokens, ((0, 0), (1, 0))))  # [B, 1 + T, C]
        x = layers.dropout(x, self.dropout, keys[0])
        real = (jnp.arange(length) > 0)[None, :, None]
        skip = 0.0
        for level in self.levels:
            past = _shift(x, level.dilation)
            x, s = level(past, x, train=train, mask=real)
            if s is not None:
                skip = skip + s
        if self.residual:
            skip = skip[:, 1:]
        return self.head(layers.dropout(self._features(x[:, 1:], skip), self.dropout, keys[1]))

    def init_decode_state(self, batch_size: int) -> tuple[jax.Array, ...]:
        """Per level, a ring buffer [B, dilation, C_in] filled with the padding activations."""
        x = self._input(jnp.zeros((batch_size,), jnp.int32))
        queues = []
        for level in self.levels:
            queues.append(jnp.repeat(x[:, None], level.dilation, axis=1))
            x, _ = level(x, x, train=False)
        return tuple(queues)

    def decode_step(
        self, state: tuple[jax.Array, ...], token: jax.Array, t: jax.Array
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Feeds token int32 [B] at t; returns (logits float32 [B, width] for t + 1, state).

        Slot t % dilation of a level's buffer holds its input from t - dilation;
        it is read, then overwritten with the input at t.
        """
        x = self._input(token)  # [B, C]
        skip = 0.0
        new_state = []
        for level, queue in zip(self.levels, state, strict=True):
            slot = t % level.dilation
            past = jax.lax.dynamic_index_in_dim(queue, slot, axis=1, keepdims=False)
            new_state.append(jax.lax.dynamic_update_index_in_dim(queue, x, slot, axis=1))
            x, s = level(past, x, train=False)
            if s is not None:
                skip = skip + s
        return self.head.step(self._features(x, skip), t), tuple(new_state)
