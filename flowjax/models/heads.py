"""The logits head shared by the three models: over the whole vocabulary, or per column.

In the per-column tokenizer column j owns a small contiguous token range, so the
symbol at position t + 1 can only be one of a few tokens. The column head computes
at position t only the logits of that position's window `[lo[t + 1], lo[t + 1] +
width)` (`width` = the widest column's range): the head's weight columns for the
window are gathered (a dynamic slice when decoding), so it holds the same weights
as the full head and its logits are the full head's logits on the window. On the
default presets that is 2-65 of 2,000-2,300 logits per position (see
docs/performance.md). The pooled `paper` alphabet keeps the full head. A trace-mode
stream of sentences repeats the windows every `seq_len` positions (`Windows.at`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flowjax.models import layers


@dataclasses.dataclass(frozen=True)
class Windows:
    """Per-position vocabulary windows (static: hashable, stored in the model's graph).

    Attributes:
      lo: first token of each position's window, one per position 0..seq_len-1 (position
        0, the start symbol, is never predicted).
      width: tokens per window, the same at every position.
    """

    lo: tuple[int, ...]
    width: int

    def at(self, positions: np.ndarray) -> np.ndarray:
        """The windows' first tokens at `positions`; a stream of sentences repeats them every
        len(lo) positions (trace mode)."""
        return np.asarray(self.lo, np.int32)[np.asarray(positions) % len(self.lo)]


def column_windows(legal_mask: np.ndarray) -> Windows:
    """The narrowest common windows that hold every position's legal tokens.

    Args:
      legal_mask: bool[seq_len, V] (`FlowTokenizer.legal_mask()`); every position after
        the first allows at least one token.

    Returns:
      Windows of width = the widest legal range of any position; a window that would run
      past the vocabulary is moved left to end at V.
    """
    legal_mask = np.asarray(legal_mask, dtype=bool)
    seq_len, vocab = legal_mask.shape
    empty = np.flatnonzero(~legal_mask[1:].any(axis=1))
    if empty.size:
        raise ValueError(f"legal mask: position {int(empty[0]) + 1} allows no token")
    any_legal = legal_mask.any(axis=1)
    first = np.where(any_legal, legal_mask.argmax(axis=1), 0)
    last = np.where(any_legal, vocab - 1 - legal_mask[:, ::-1].argmax(axis=1), 0)
    width = int((last - first).max()) + 1
    lo = np.minimum(first, vocab - width)
    return Windows(lo=tuple(int(x) for x in lo), width=width)


def windows_of(model: nnx.Module) -> Windows | None:
    """The windows of a model's per-column head, or None (full head, or a model without `head`)."""
    head = getattr(model, "head", None)
    return head.windows if isinstance(head, Head) else None


def localize(
    windows: Windows | None, targets: jax.Array, legal: jax.Array | None
) -> tuple[jax.Array, jax.Array | None]:
    """Puts tokens and the legal mask in the logit frame of a head with these windows.

    Args:
      windows: the head's windows (None: the full head, nothing changes).
      targets: int32 [B, T] tokens of positions 1..T.
      legal: bool [T, V] legal tokens of positions 1..T, or None.

    Returns:
      (targets as logit indices int32 [B, T], legal bool [T, width] or None).
    """
    if windows is None:
        return targets, legal
    lo = windows.at(np.arange(1, targets.shape[1] + 1))
    if legal is not None:
        legal = legal[np.arange(len(lo))[:, None], lo[:, None] + np.arange(windows.width)]
    return targets - lo, legal


class Head(nnx.Module):
    """Logits layer: weights and biases uniform in +-scale/sqrt(fan_in), full or per column.

    With `scale` = 0.1 this is the study's "output weights x 0.1" on top of the default
    uniform(+-1/sqrt(fan_in)) init, which keeps the first logits near zero. The
    parameters are named and drawn as an `nnx.Linear`'s (`kernel` [in, V], `bias` [V]).
    """

    def __init__(
        self,
        in_features: int,
        vocab_size: int,
        *,
        scale: float,
        windows: Windows | None,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
    ):
        init = layers.symmetric_uniform(scale / in_features**0.5)
        self.kernel = nnx.Param(init(rngs.params(), (in_features, vocab_size)))
        self.bias = nnx.Param(init(rngs.params(), (vocab_size,)))
        self.windows = windows
        self.dtype = dtype

    @property
    def width(self) -> int:
        """Logits per position: the window width, or V for the full head."""
        return self.windows.width if self.windows else self.kernel.shape[1]

    def __call__(self, x: jax.Array) -> jax.Array:
        """Features x [B, T, in] at positions 0..T-1 -> float32 logits [B, T, width] for 1..T."""
        kernel, bias = self.kernel[...].astype(self.dtype), self.bias[...].astype(self.dtype)
        x = x.astype(self.dtype)
        if self.windows is None:
            return layers.logits_f32(x @ kernel + bias)
        lo = self.windows.at(np.arange(1, x.shape[1] + 1))
        idx = lo[:, None] + np.arange(self.windows.width)  # [T, W], static
        logits = jnp.einsum("bth,htw->btw", x, kernel[:, idx]) + bias[idx]
        return layers.logits_f32(logits)

    def step(self, x: jax.Array, t: jax.Array) -> jax.Array:
        """Features x [B, in] at position t -> float32 logits [B, width] for position t + 1."""
        kernel, bias = self.kernel[...].astype(self.dtype), self.bias[...].astype(self.dtype)
        x = x.astype(self.dtype)
        if self.windows is None:
            return layers.logits_f32(x @ kernel + bias)
        lo = jnp.asarray(self.windows.lo, jnp.int32)[(t + 1) % len(self.windows.lo)]
        width = self.windows.width
        kernel = jax.lax.dynamic_slice_in_dim(kernel, lo, width, axis=1)
        bias = jax.lax.dynamic_slice_in_dim(bias, lo, width)
        return layers.logits_f32(x @ kernel + bias)
