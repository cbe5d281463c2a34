"""Recurrent language model over flow sentences: GRU (one or several layers) or the plain tanh cell.

The `paper` preset is the study's one-layer tanh RNN (embedding 64, hidden 128);
the default is a stacked GRU. Each layer first projects its whole input
sequence at once (one matmul), then runs only the recurrence in `lax.scan`; a
decode step runs the same two functions on one position, so teacher forcing
and decoding compute the same numbers. The decode state is the carry.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from flowjax.models import heads, layers

_CELLS = ("gru", "tanh")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RNNConfig:
    """Hyperparameters of the RNN family (hashable; built by `model_config_from`)."""

    name: str = "rnn"
    cell: str = "gru"  # 'gru' or 'tanh' (the study's plain RNN)
    embed_dim: int = 64
    hidden: int = 128
    num_layers: int = 1
    head_scale: float = 0.1  # output weights and biases uniform in +-head_scale/sqrt(fan_in)
    dropout: float = 0.0  # on the embeddings and each layer's outputs, in training only
    bf16: bool = False

    def __post_init__(self):
        layers.check_dropout(self.dropout)
        if self.name != "rnn":
            raise ValueError(f"RNNConfig.name must be 'rnn', got {self.name!r}")
        if self.cell not in _CELLS:
            raise ValueError(f"model.cell must be one of {_CELLS}, got {self.cell!r}")
        if min(self.embed_dim, self.hidden, self.num_layers) < 1:
            raise ValueError(f"model.embed_dim, hidden and num_layers must be >= 1: {self}")


def _cell(kind: str, h: jax.Array, gx: jax.Array, gh: jax.Array) -> jax.Array:
    """One step from carry h [B, H], input gates gx and recurrent gates gh [B, G*H]."""
    if kind == "tanh":
        return jnp.tanh(gx + gh)
    xr, xz, xn = jnp.split(gx, 3, axis=-1)
    hr, hz, hn = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _recurrence(kind: str, w: jax.Array, b: jax.Array, h0: jax.Array, gx: jax.Array) -> jax.Array:
    """Carries h_t = cell(h_{t-1}, gx_t, h_{t-1} @ w + b) over gx [T, B, G*H]; returns [T, B, H].

    The custom backward pass forms the gradient of (w, b) after the time loop,
    in one matmul over all positions. Plain autodiff would accumulate it inside
    the loop, which under data parallelism puts one all-reduce in every
    iteration (and on 8 CPU devices sharing two cores, can stall them).
    """

    def body(h, g):
        h = _cell(kind, h, g, h @ w + b)
        return h, h

    return jax.lax.scan(body, h0, gx)[1]


def _recurrence_fwd(kind, w, b, h0, gx):
    hs = _recurrence(kind, w, b, h0, gx)
    return hs, (w, b, h0, gx, hs)


def _recurrence_bwd(kind, res, d_hs):
    w, b, h0, gx, hs = res
    h_prev = jnp.concatenate([h0[None], hs[:-1]])  # [T, B, H]: the carry entering each step

    def body(dh_later, xs):
        h, g, dh_out = xs
        _, vjp = jax.vjp(functools.partial(_cell, kind), h, g, h @ w + b)
        dh, dg, dgh = vjp(dh_out + dh_later)
        return dh + dgh @ w.T, (dg, dgh)

    dh0, (dgx, dgh) = jax.lax.scan(body, jnp.zeros_like(h0), (h_prev, gx, d_hs), reverse=True)
    dw = jnp.einsum("tbh,tbg->hg", h_prev, dgh)
    return dw, dgh.sum(axis=(0, 1)), dh0, dgx


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


class _RecurrentLayer(nnx.Module):
    """One recurrent layer: input gates for all positions at once, then the recurrence."""

    def __init__(self, in_dim: int, hidden: int, cell: str, *, rngs: nnx.Rngs, dtype: jnp.dtype):
        gates = 3 if cell == "gru" else 1
        self.cell = cell
        self.hidden = hidden
        self.dtype = dtype
        self.inp = layers.dense(in_dim, gates * hidden, dtype=dtype, rngs=rngs)
        # Orthogonal recurrent weights keep the carry's scale over ~80 steps (Kaiming's
        # gain 5/3 would grow it); the input weights keep the paper's Kaiming init.
        self.rec = nnx.Linear(
            hidden,
            gates * hidden,
            kernel_init=jax.nn.initializers.orthogonal(column_axis=-1),
            dtype=dtype,
            rngs=rngs,
        )

    def _rec_weights(self) -> tuple[jax.Array, jax.Array]:
        return self.rec.kernel[...].astype(self.dtype), self.rec.bias[...].astype(self.dtype)

    def step(self, h: jax.Array, x: jax.Array) -> jax.Array:
        """One position: carry h [B, H] and layer input x [B, in] -> new carry [B, H]."""
        w, b = self._rec_weights()
        return _cell(self.cell, h, self.inp(x), h @ w + b)

    def run(self, h0: jax.Array, x: jax.Array) -> jax.Array:
        """The layer over a sequence: x [B, T, in] from carry h0 [B, H] -> outputs [B, T, H]."""
        gx = jnp.swapaxes(self.inp(x), 0, 1)  # [T, B, G*H], one matmul for all positions
        w, b = self._rec_weights()
        return jnp.swapaxes(_recurrence(self.cell, w, b, h0, gx), 0, 1)


class RNN(nnx.Module):
    """Embedding -> stacked recurrent layers -> logits head."""

    def __init__(
        self,
        cfg: RNNConfig,
        *,
        vocab_size: int,
        seq_len: int,
        rngs: nnx.Rngs,
        windows: heads.Windows | None = None,
        context: int = 0,
    ):
        del seq_len, context  # the recurrence has no length limit; it carries every flow
        self.dtype = layers.compute_dtype(cfg.bf16)
        self.dropout = cfg.dropout
        self.embed = layers.embedding(vocab_size, cfg.embed_dim, dtype=self.dtype, rngs=rngs)
        dims = [cfg.embed_dim] + [cfg.hidden] * (cfg.num_layers - 1)
        self.cells = nnx.List(
            [_RecurrentLayer(d, cfg.hidden, cfg.cell, dtype=self.dtype, rngs=rngs) for d in dims]
        )
        self.head = heads.Head(
            cfg.hidden, vocab_size, scale=cfg.head_scale, windows=windows, dtype=self.dtype,
            rngs=rngs,
        )  # fmt: skip

    def __call__(
        self, tokens: jax.Array, *, train: bool, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Teacher-forced logits: int32 [B, T] -> float32 [B, T, width] (t predicts t + 1).

        Dropout (config.dropout) applies only with `train` and a `dropout_key`.
        """
        keys = layers.dropout_keys(dropout_key if train else None, 1 + len(self.cells))
        x = layers.dropout(self.embed(tokens), self.dropout, keys[0])
        h0s = self.init_decode_state(tokens.shape[0])
        for layer, h0, key in zip(self.cells, h0s, keys[1:], strict=True):
            x = layers.dropout(layer.run(h0, x), self.dropout, key)
        return self.head(x)

    def init_decode_state(self, batch_size: int) -> tuple[jax.Array, ...]:
        """Zero carries, one [B, hidden] per layer."""
        return tuple(jnp.zeros((batch_size, layer.hidden), self.dtype) for layer in self.cells)

    def decode_step(
        self, state: tuple[jax.Array, ...], token: jax.Array, t: jax.Array
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Feeds token int32 [B] at t; returns (logits float32 [B, width] for t + 1, state)."""
        x = self.embed(token)
        new_state = []
        for layer, h in zip(self.cells, state, strict=True):
            x = layer.step(h, x)
            new_state.append(x)
        return self.head.step(x, t), tuple(new_state)
