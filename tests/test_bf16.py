"""Tests for `model.bf16`: bfloat16 compute with float32 params and logits, in every family.

bfloat16 keeps 8 significant bits, so one rounding moves a value by at most U = 2**-8
(~3.9e-3) of itself, and the gap between neighbouring values (an ulp) is at most 2U of
the value. The tolerances below are multiples of U times the largest logit, not proven
bounds: each says what was measured on this project's CPU (tiny presets at these sizes)
and how much room it leaves. A real bug (a decode cache written at the wrong slot, a
carry or layer cut to the wrong dtype) moves the logits by about their spread (std
0.4-0.9 here), 10 times the decode tolerance and 5 times the float32 one at the largest
logit. Each test also checks that bfloat16 is really in use, so it fails if `bf16` were
silently ignored (checked: forcing float32 compute fails all twelve).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flowjax import configs, parallel, sampling, train
from flowjax.models import build_model, model_config_from

U = 2.0**-8  # bfloat16 unit roundoff
# Decode vs teacher forcing, both in bf16: the same rounded ops on the same values, only
# fused and summed in another order. Measured: bit-identical for the RNN and the WaveNet,
# 2.6 U x the largest logit for the Transformer (about 2 ulps). Allowed: 8 U (4 ulps).
DECODE_TOL = 8 * U
# bf16 vs float32 with the same params and statistics: every rounding of the bf16 pass
# counts (about a dozen chained ops per layer). Measured: 2.1-3.6 U x the largest logit.
# Allowed: 16 U.
F32_TOL = 16 * U
V, S = 24, 10  # vocabulary, sentence length (start symbol + 9 columns)


def _model(family: str, *, bf16: bool, seed: int = 2) -> nnx.Module:
    """The tiny preset's model; params are drawn in float32 whatever `bf16`, so a seed
    gives the same params with and without it."""
    config = configs.get_config(family, "tiny")
    config.model.bf16 = bf16
    return build_model(model_config_from(config.model), vocab_size=V, seq_len=S,
                       rngs=nnx.Rngs(seed))  # fmt: skip


def _sentences(batch: int, seed: int = 2) -> jax.Array:
    tokens = np.random.default_rng(seed).integers(1, V, (batch, S)).astype(np.int32)
    tokens[:, 0] = 0  # the start symbol
    return jnp.asarray(tokens)


def _spread_head(model: nnx.Module) -> None:
    """A larger head makes the logits O(1) (the init's are ~0.01), so tolerances bite."""
    head = model.head.kernel
    head[...] = jax.random.normal(jax.random.key(0), head.shape) / head.shape[0] ** 0.5


def _forward(model: nnx.Module, tokens: jax.Array) -> jax.Array:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    fn = jax.jit(lambda p, r, x: nnx.merge(graphdef, p, r, copy=True)(x, train=False))
    return fn(params, rest, tokens)


def _decode_all(model: nnx.Module, tokens: jax.Array) -> jax.Array:
    """decode_step over positions 0..T-1 in one jitted scan; logits [B, T, W]."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def run(params, rest, tokens):
        m = nnx.merge(graphdef, params, rest, copy=True)

        def body(state, xs):
            logits, state = m.decode_step(state, *xs)
            return state, logits

        positions = jnp.arange(tokens.shape[1], dtype=jnp.int32)
        _, logits = jax.lax.scan(body, m.init_decode_state(tokens.shape[0]), (tokens.T, positions))
        return jnp.swapaxes(logits, 0, 1)

    return run(params, rest, tokens)


def _dot_dtypes(closed_jaxpr) -> list[tuple[str, ...]]:
    """(lhs, rhs, out) dtypes of every dot_general in a jaxpr, inner jaxprs (jit, scan,
    custom_vjp, cond) included."""
    found = []

    def walk(jaxpr):
        for eqn in getattr(jaxpr, "jaxpr", jaxpr).eqns:
            if eqn.primitive.name == "dot_general":
                found.append(tuple(str(v.aval.dtype) for v in [*eqn.invars, *eqn.outvars]))
            for value in eqn.params.values():
                for inner in value if isinstance(value, (tuple, list)) else (value,):
                    if hasattr(inner, "eqns") or hasattr(inner, "jaxpr"):
                        walk(inner)

    walk(closed_jaxpr)
    return found


def _dtypes(tree) -> set[str]:
    return {str(x.dtype) for x in jax.tree.leaves(tree)}


@pytest.mark.parametrize("family", configs.FAMILIES)
def test_bf16_decode_matches_teacher_forcing_and_float32(family):
    tokens = _sentences(4)
    model32 = _model(family, bf16=False)
    model32(tokens, train=True)  # moves BatchNorm's running statistics (the WaveNet)
    _spread_head(model32)
    model = _model(family, bf16=True, seed=7)
    nnx.update(model, nnx.state(model32))  # the same params and statistics, in float32
    teacher32 = np.asarray(_forward(model32, tokens))
    teacher, decoded = np.asarray(_forward(model, tokens)), np.asarray(_decode_all(model, tokens))
    scale = float(np.abs(teacher32).max())
    assert float(teacher32.std()) > 0.3 and scale > 1.0  # O(1) logits: the tolerances bite
    np.testing.assert_allclose(decoded, teacher, atol=DECODE_TOL * scale, rtol=0)
    for bf16_logits in (teacher, decoded):
        np.testing.assert_allclose(bf16_logits, teacher32, atol=F32_TOL * scale, rtol=0)
        # bf16 is in use: its rounding shows, at least half a rounding at the largest logit
        assert float(np.abs(bf16_logits - teacher32).max()) > 0.5 * U * scale


@pytest.mark.parametrize("family", configs.FAMILIES)
def test_bf16_computes_in_bfloat16_with_float32_params_and_logits(family):
    model = _model(family, bf16=True)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tokens = jax.ShapeDtypeStruct((4, S - 1), jnp.int32)

    def forward(params, rest, tokens):
        return nnx.merge(graphdef, params, rest, copy=True)(tokens, train=True)

    def step(params, rest, tokens):
        m = nnx.merge(graphdef, params, rest, copy=True)
        state = m.init_decode_state(tokens.shape[0])
        logits, new_state = m.decode_step(state, tokens[:, 0], jnp.int32(3))
        return logits, state, new_state

    assert _dtypes(params) == {"float32"}
    assert _dtypes(rest) <= {"float32"}  # BatchNorm statistics (the WaveNet), else none
    assert jax.eval_shape(forward, params, rest, tokens).dtype == jnp.float32
    logits, state, new_state = jax.eval_shape(step, params, rest, tokens)
    assert logits.dtype == jnp.float32
    assert _dtypes(state) == _dtypes(new_state) == {"bfloat16"}  # RNN carry, KV cache, queues
    # Every matmul runs in bf16: none of the model's layers was left in float32.
    for fn in (forward, step):
        dots = _dot_dtypes(jax.make_jaxpr(fn)(params, rest, tokens))
        assert dots and set(dots) == {("bfloat16",) * 3}, (fn.__name__, set(dots))


def _train(family: str, *, bf16: bool, batches: np.ndarray):
    """Runs the project's train step over `batches` on one device; returns (losses, grad
    norms, final state, the step's matmul dtypes)."""
    config = configs.get_config(family, "tiny")
    config.model.bf16 = bf16
    config.optimizer.update(learning_rate=1e-2, warmup_steps=0)
    tcfg = train.TrainConfig.from_config(config)
    tx = train.make_optimizer(tcfg.optimizer, tcfg.num_steps)
    mesh = parallel.make_mesh(jax.devices()[:1])
    graphdef, state = train.init_state(model_config_from(config.model), tx, vocab_size=V,
                                       seq_len=S, seed=0,
                                       sharding=parallel.replicated(mesh))  # fmt: skip
    step = train.make_train_step(graphdef, tx, mesh)
    first = parallel.shard_batch(batches[0], mesh)
    dots = _dot_dtypes(jax.make_jaxpr(step)(state, first, None))
    losses, norms = [], []
    for batch in batches:
        state, metrics = step(state, parallel.shard_batch(batch, mesh), None)
        losses.append(float(metrics["loss"]))
        norms.append(float(metrics["grad_norm"]))
    return np.array(losses), np.array(norms), state, dots


@pytest.mark.parametrize("family", configs.FAMILIES)
def test_bf16_training_steps_lower_the_loss(family):
    # Each column draws from two tokens: learnable in a few steps (from ~log 24 to log 2
    # nats a symbol), with a fresh batch every step.
    rng = np.random.default_rng(0)
    choices = rng.integers(1, V, (S, 2))
    picks = rng.integers(0, 2, (12, 16, S))
    batches = choices[np.arange(S), picks].astype(np.int32)
    batches[:, :, 0] = 0
    losses, norms, state, dots = _train(family, bf16=True, batches=batches)
    losses32, _, state32, _ = _train(family, bf16=False, batches=batches)
    assert np.isfinite(losses).all() and np.isfinite(norms).all()
    assert losses[-3:].mean() < 0.9 * losses[:3].mean(), losses
    # The bf16 curve follows the float32 one: measured within 0.09 %, allowed 1 % (2.5 U).
    np.testing.assert_allclose(losses, losses32, rtol=0.01)
    assert not np.array_equal(losses, losses32)  # and is not the float32 run itself
    assert ("bfloat16",) * 3 in dots  # the forward and backward matmuls run in bf16
    for part in ("params", "opt_state", "rest"):  # optimizer and statistics stay float32
        assert jax.tree.map(lambda x: x.dtype, state[part]) == jax.tree.map(
            lambda x: x.dtype, state32[part]
        ), part


@pytest.mark.parametrize("family", configs.FAMILIES)
def test_bf16_scan_sampler_draws_legal_tokens(family):
    rng = np.random.default_rng(0)
    mask = rng.random((S, V)) < 0.4
    mask[:, 0] = False
    mask[np.arange(1, S), rng.integers(1, V, S - 1)] = True  # at least one legal token
    mask[0] = False
    mask[0, 0] = True
    model = _model(family, bf16=True, seed=1)
    _spread_head(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tables = sampling.make_tables(mask)
    rows = jnp.arange(32, dtype=jnp.int32)
    free = jnp.full((32, S), -1, jnp.int32)
    fn = sampling.make_sampler(graphdef, strategy=sampling.Temperature())
    args = (params, rest, jax.random.key(3), rows, tables, free)
    assert ("bfloat16",) * 3 in _dot_dtypes(jax.make_jaxpr(fn)(*args))
    tokens, log_prob = fn(*args)
    tokens = np.asarray(tokens)
    assert tokens.dtype == np.int32 and log_prob.dtype == jnp.float32
    assert (tokens[:, 0] == 0).all() and mask[np.arange(S), tokens].all(), "an illegal token"
    assert len({tuple(t) for t in tokens}) > 16, "rows should differ"
    assert np.isfinite(log_prob).all()
    # The scan's log-probability is the teacher-forced one up to bf16 rounding. A position's
    # log-softmax moves by at most twice its logits' error, so one position at DECODE_TOL
    # moves it by 2 DECODE_TOL x scale (0.23 nats for the Transformer); the row sums 9 of
    # them, but their errors are small and of both signs: measured at most 0.05 nats.
    teacher = sampling.sequence_log_prob(model, jnp.asarray(tokens), mask)
    scale = float(np.abs(np.asarray(_forward(model, jnp.asarray(tokens[:, :-1])))).max())
    np.testing.assert_allclose(log_prob, teacher, atol=2 * DECODE_TOL * scale, rtol=0)
