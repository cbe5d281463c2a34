"""Count-based baselines with the model surface: independent per-column marginals and a bigram.

The paper builds its intuition on an n-gram model; the marginals baseline is the
trivial generator every synthesizer must beat on joint structure. Both are fitted
by counting (`fit_counts`), not by gradient descent, and then go through the same
sampler, decoder and report as the neural models.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class Marginals(nnx.Module):
    """Each position's token drawn independently: logits[t] = log p(token at t + 1)."""

    def __init__(self, *, vocab_size: int, seq_len: int):
        self.table = nnx.Param(jnp.zeros((seq_len - 1, vocab_size), jnp.float32))

    def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
        b, t = tokens.shape
        return jnp.broadcast_to(self.table[...][:t], (b, t, self.table.shape[-1]))

    def init_decode_state(self, batch_size: int) -> dict:
        return {"pos": jnp.zeros((batch_size,), jnp.int32)}

    def decode_step(self, state: dict, token: jax.Array, t: jax.Array):
        logits = jnp.broadcast_to(self.table[...][t], (token.shape[0], self.table.shape[-1]))
        return logits, {"pos": state["pos"] + 1}

    def counts(self, sentences: np.ndarray) -> np.ndarray:
        """float64[T, V] counts of the token at each position t + 1."""
        t, v = self.table.shape
        out = np.zeros((t, v))
        np.add.at(out, (np.broadcast_to(np.arange(t), sentences[:, 1:].shape), sentences[:, 1:]), 1)
        return out


class Bigram(nnx.Module):
    """The next token depends only on the previous one: logits = log p(next | previous)."""

    def __init__(self, *, vocab_size: int, seq_len: int):
        del seq_len  # a bigram has no notion of position beyond the previous token
        self.table = nnx.Param(jnp.zeros((vocab_size, vocab_size), jnp.float32))

    def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
        return self.table[...][tokens]

    def init_decode_state(self, batch_size: int) -> dict:
        return {"pos": jnp.zeros((batch_size,), jnp.int32)}

    def decode_step(self, state: dict, token: jax.Array, t: jax.Array):
        return self.table[...][token], {"pos": state["pos"] + 1}

    def counts(self, sentences: np.ndarray) -> np.ndarray:
        """float64[V, V] counts of (previous, next) token pairs."""
        v = self.table.shape[0]
        out = np.zeros((v, v))
        np.add.at(out, (sentences[:, :-1].ravel(), sentences[:, 1:].ravel()), 1)
        return out


def fit_counts(model: Marginals | Bigram, sentences: np.ndarray, *, alpha: float = 0.01) -> None:
    """Sets the model's table to smoothed log-frequencies counted on training sentences.

    Args:
      model: a `Marginals` or `Bigram` module (updated in place).
      sentences: int32[N, seq_len] training sentences.
      alpha: add-alpha smoothing, so unseen (legal) continuations keep a small probability.
    """
    counts = model.counts(np.asarray(sentences)) + alpha
    model.table.value = jnp.asarray(np.log(counts / counts.sum(-1, keepdims=True)), jnp.float32)
