"""Building blocks shared by the three sequence models: initialisers, embedding, head, BatchNorm.

The initialisers follow the paper's training practice: hidden layers get Kaiming
normal weights with the tanh gain (std = 5/3 / sqrt(fan_in)), and the output
head is drawn uniformly in +-epsilon (weights and biases) so the untrained model
predicts nearly uniform symbols and the first loss is close to log(V) (the head
itself is `flowjax.models.heads.Head`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

TANH_GAIN = 5.0 / 3.0
# torch BatchNorm1d momentum 0.1 (the study's) is flax momentum 0.9.
BATCH_NORM_MOMENTUM = 0.9


def compute_dtype(bf16: bool) -> jnp.dtype:
    """The activation dtype: bfloat16 on request (accelerators), else float32; params stay f32."""
    return jnp.bfloat16 if bf16 else jnp.float32


def kaiming(gain: float = TANH_GAIN) -> jax.nn.initializers.Initializer:
    """Normal initialiser with std = gain / sqrt(fan_in)."""
    return jax.nn.initializers.variance_scaling(gain**2, "fan_in", "normal")


def symmetric_uniform(limit: float) -> jax.nn.initializers.Initializer:
    """Uniform initialiser on [-limit, limit)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init


def dense(
    in_features: int,
    out_features: int,
    *,
    rngs: nnx.Rngs,
    use_bias: bool = True,
    gain: float = TANH_GAIN,
    dtype: jnp.dtype = jnp.float32,
) -> nnx.Linear:
    """A Linear layer with Kaiming(gain) weights and zero bias."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=kaiming(gain),
        dtype=dtype,
        rngs=rngs,
    )


def embedding(
    num_embeddings: int, features: int, *, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32
) -> nnx.Embed:
    """A lookup table with standard-normal rows (the study's `C = randn(V, E)`)."""
    return nnx.Embed(
        num_embeddings,
        features,
        embedding_init=jax.nn.initializers.normal(1.0),
        dtype=dtype,
        rngs=rngs,
    )


def batch_norm(features: int, *, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32) -> nnx.BatchNorm:
    """BatchNorm over every leading axis (batch and positions), torch momentum 0.1."""
    return nnx.BatchNorm(features, momentum=BATCH_NORM_MOMENTUM, dtype=dtype, rngs=rngs)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zeroes each entry with probability `rate`, scales the rest by 1/(1-rate).

    The identity when `key` is None (evaluation, decoding) or `rate` is 0.
    """
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def dropout_keys(key: jax.Array | None, count: int) -> list[jax.Array | None]:
    """`count` independent keys from `key` (all None when `key` is None)."""
    return [None] * count if key is None else list(jax.random.split(key, count))


def check_dropout(rate: float) -> None:
    """Raises ValueError unless 0 <= rate < 1."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {rate}")


def logits_f32(logits: jax.Array) -> jax.Array:
    """Logits leave every model in float32, whatever the compute dtype."""
    return logits.astype(jnp.float32)
