"""DP-SGD for the three models: Poisson-sampled batches, per-flow clipping, noise once per step.

Each step samples every training flow independently with the plan's sampling rate
(Poisson sampling, what the accountant's `PoissonSampledDpEvent` assumes; the sampling
and the noise draw from a secret seed, fresh from the operating system unless
`config.dp.noise_seed` fixes it). The sampled flows are cut into padded chunks of one
fixed physical size, so one shape compiles; per chunk, `jax_privacy.clipped_grad` clips
each flow's gradient to `clip_norm` and sums them on every device before jit's
cross-device sum. Once per step, Gaussian noise of std noise_multiplier x clip_norm is
added to the summed gradients (replicated: the same noise on every device), the sum is
divided by the expected batch size and handed to the run's optimizer. Under DP the
WaveNet's BatchNorm, whose batch statistics mix flows, is replaced by a bias
(`model.batch_norm = False`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax_privacy
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from flowjax import parallel
from flowjax.privacy.budget import Plan

TrainState = dict[str, Any]


def dp_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config a DP run trains with: nothing chosen by private validation data, no BatchNorm.

    Early stopping and the best checkpoint select a step by the validation loss, a release
    the accountant does not cover; they are turned off (a log line names each change).
    """
    changes = {"early_stopping_patience": 0, "keep_best": False}
    if config.model.get("batch_norm", False):
        changes["model.batch_norm"] = False
    config = config.copy_and_resolve_references()
    for name, value in changes.items():
        *parents, leaf = name.split(".")
        node = config
        for p in parents:
            node = node[p]
        if node[leaf] != value:
            logging.info("differential privacy: config.%s=%s (was %s)", name, value, node[leaf])
            node[leaf] = value
    return config


def noise_key(seed: int) -> jax.Array:
    """A JAX key holding all 64 bits of `seed` (jax.random.key keeps 32)."""
    return jax.random.wrap_key_data(np.array([seed >> 32, seed & 0xFFFFFFFF], np.uint32))


def poisson_rows(n: int, *, rate: float, step: int, seed: int) -> np.ndarray:
    """Indices of the flows sampled at `step`: each of `n` independently with probability `rate`."""
    return np.flatnonzero(np.random.default_rng((seed, step)).random(n) < rate)


def microbatch(setting: int) -> int | None:
    """Flows whose per-flow gradients are formed at once (`config.dp.microbatch`; None: all).

    0 picks by platform: 8 on CPU, where writing every flow's gradient at once is bound by
    memory traffic (8 measured 2 to 3 times faster than 128 on a 2-core CPU,
    docs/privacy.md), the whole chunk on GPU and TPU.
    """
    if setting:
        return setting
    return 8 if jax.default_backend() == "cpu" else None


def physical_batch(expected: float, n_dev: int, multiple: int = 1) -> int:
    """Rows of one compiled chunk: the expected batch plus two standard deviations, rounded
    up to a multiple of the devices x `multiple`.

    About 2 % of steps then need a second chunk; a larger chunk would pad every step.
    """
    rows = expected + 2 * math.sqrt(expected) + 1
    return int(math.ceil(rows / (n_dev * multiple))) * n_dev * multiple


def chunks(tokens: np.ndarray, rows: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sampled rows in chunks of `size`, the last padded with weight-0 copies of row 0.

    Returns:
      At least one (batch int32[size, L], weights float32[size]) pair.
    """
    out = []
    for start in range(0, max(len(rows), 1), size):
        part = rows[start : start + size]
        weights = np.zeros(size, np.float32)
        weights[: len(part)] = 1.0
        padded = np.concatenate([part, np.zeros(size - len(part), np.int64)])
        out.append((tokens[padded], weights))
    return out


def make_clipped_sum(
    graphdef: nnx.GraphDef,
    mesh: jax.sharding.Mesh,
    *,
    clip_norm: float,
    dropout: bool,
    loss_fn,
    microbatch_size: int | None = None,
):
    """The jitted `(params, rest, batch, weights, legal, key) -> (sum of clipped grads, loss sum)`.

    `loss_fn(model, rows int32[1, L], legal, dropout_key)` gives one flow's loss, float32 [1];
    `microbatch_size` flows get their gradients at once (None: the whole batch).
    """

    def clipped_sum(params, rest, batch, weights, legal, key):
        def one(params, row, weight, *key_arg):
            model = nnx.merge(graphdef, params, rest, copy=True)
            return weight[0] * loss_fn(model, row, legal, key_arg[0] if key_arg else None)[0]

        grad_fn = jax_privacy.clipped_grad(
            one, l2_clip_norm=clip_norm, batch_argnums=(1, 2), keep_batch_dim=True,
            return_values=True, prng_argnum=3 if dropout else None,
            microbatch_size=microbatch_size,
        )  # fmt: skip
        args = (params, batch, weights, key) if dropout else (params, batch, weights)
        grads, aux = grad_fn(*args)
        return grads, jnp.sum(aux.values)

    repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
    return jax.jit(clipped_sum, in_shardings=(repl, repl, data, data, repl, repl),
                   out_shardings=(repl, repl))  # fmt: skip


def make_noisy_update(
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    *,
    noise_std: float,
    denominator: float,
):
    """The jitted, donated `(state, grad_sum, key) -> (state, grad norm)`: noise, mean, update."""

    def update(state: TrainState, grad_sum, key):
        treedef = jax.tree.structure(grad_sum)
        keys = jax.tree.unflatten(treedef, list(jax.random.split(key, treedef.num_leaves)))
        grads = jax.tree.map(
            lambda g, k: (g + noise_std * jax.random.normal(k, g.shape, g.dtype)) / denominator,
            grad_sum, keys,
        )  # fmt: skip
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "params": optax.apply_updates(state["params"], updates),
            "rest": state["rest"],
            "opt_state": opt_state,
            "step": state["step"] + 1,
        }
        return new_state, optax.tree.norm(grads)

    repl = parallel.replicated(mesh)
    return jax.jit(update, in_shardings=(repl, repl, repl), out_shardings=(repl, repl),
                   donate_argnums=0)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Stepper:
    """One DP-SGD step at a time: `step(state, index) -> (state, metrics)`; index is 0-based."""

    tokens: np.ndarray  # int32 [N, L], the training sentences
    plan: Plan
    seed: int
    size: int
    mesh: jax.sharding.Mesh
    legal: jax.Array | None
    clipped_sum: Callable
    update: Callable

    def __call__(self, state: TrainState, index: int) -> tuple[TrainState, dict[str, Any]]:
        rows = poisson_rows(len(self.tokens), rate=self.plan.sampling_rate, step=index,
                            seed=self.seed)  # fmt: skip
        key = jax.random.fold_in(noise_key(self.seed), index)
        grad_sum = loss_sum = None
        for i, (batch, weights) in enumerate(chunks(self.tokens, rows, self.size)):
            g, loss = self.clipped_sum(
                state["params"], state["rest"], parallel.shard_batch(batch, self.mesh),
                parallel.shard_batch(weights, self.mesh), self.legal,
                jax.random.fold_in(key, i + 1),
            )  # fmt: skip
            grad_sum = g if grad_sum is None else jax.tree.map(jnp.add, grad_sum, g)
            loss_sum = loss if loss_sum is None else loss_sum + loss
        state, grad_norm = self.update(state, grad_sum, jax.random.fold_in(key, 0))
        return state, {"loss": loss_sum / max(len(rows), 1), "grad_norm": grad_norm}


def make_stepper(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    tokens: np.ndarray,
    plan: Plan,
    *,
    seed: int,
    legal: jax.Array | None,
    dropout: bool,
    loss_fn,
    microbatch_size: int | None = None,
) -> Stepper:
    """The DP-SGD step of a run over the training sentences `tokens` int32 [N, L]."""
    size = physical_batch(plan.sampling_rate * len(tokens), mesh.devices.size,
                          microbatch_size or 1)  # fmt: skip
    clipped = make_clipped_sum(graphdef, mesh, clip_norm=plan.clip_norm, dropout=dropout,
                               loss_fn=loss_fn, microbatch_size=microbatch_size)  # fmt: skip
    update = make_noisy_update(tx, mesh, noise_std=plan.noise_multiplier * plan.clip_norm,
                               denominator=plan.batch_size)  # fmt: skip
    return Stepper(tokens, plan, seed, size, mesh, legal, clipped, update)
