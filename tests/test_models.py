"""Tests for flowjax.models: shapes, causality, initial loss, decode == teacher forcing, presets."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flowjax import configs
from flowjax.models import build_model, count_params, model_config_from

CASES = [(f, p) for f in configs.FAMILIES for p in ("tiny", "paper", "default")]


def _model(family, preset, *, vocab, seq_len, seed=0):
    cfg = model_config_from(configs.get_config(family, preset).model)
    return build_model(cfg, vocab_size=vocab, seq_len=seq_len, rngs=nnx.Rngs(seed))


def _sentences(batch, seq_len, vocab, seed=0):
    tokens = np.random.default_rng(seed).integers(1, vocab, (batch, seq_len)).astype(np.int32)
    tokens[:, 0] = 0  # the start symbol
    return jnp.asarray(tokens)


def _forward(model, tokens, *, train):
    """The teacher-forced logits, jitted the functional way (merge with copy=True)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    fn = jax.jit(lambda p, r, x: nnx.merge(graphdef, p, r, copy=True)(x, train=train))
    return fn(params, rest, tokens)


def _decode_all(model, tokens):
    """Runs decode_step over positions 0..T-1 in one jitted scan; returns logits [B, T, V]."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def run(params, rest, tokens):
        m = nnx.merge(graphdef, params, rest, copy=True)

        def body(state, xs):
            tok, t = xs
            logits, state = m.decode_step(state, tok, t)
            return state, logits

        positions = jnp.arange(tokens.shape[1], dtype=jnp.int32)
        _, logits = jax.lax.scan(body, m.init_decode_state(tokens.shape[0]), (tokens.T, positions))
        return jnp.swapaxes(logits, 0, 1)

    return run(params, rest, tokens)


@pytest.mark.parametrize("family,preset", [c for c in CASES if c[1] != "tiny"])
def test_shapes_with_eval_shape(family, preset):
    vocab, seq_len, batch = 2000, 80, 8
    abstract = nnx.eval_shape(lambda: _model(family, preset, vocab=vocab, seq_len=seq_len))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)

    def forward(params, rest, tokens):
        return nnx.merge(graphdef, params, rest).__call__(tokens, train=False)

    def step(params, rest, tokens):
        m = nnx.merge(graphdef, params, rest)
        state = m.init_decode_state(batch)
        logits, new_state = m.decode_step(state, tokens[:, 0], jnp.int32(3))
        return logits, state, new_state

    tokens = jax.ShapeDtypeStruct((batch, seq_len - 1), jnp.int32)
    out = jax.eval_shape(forward, params, rest, tokens)
    assert (out.shape, out.dtype) == ((batch, seq_len - 1, vocab), jnp.float32)
    logits, state, new_state = jax.eval_shape(step, params, rest, tokens)
    assert (logits.shape, logits.dtype) == ((batch, vocab), jnp.float32)
    assert jax.tree.structure(state) == jax.tree.structure(new_state)
    assert [(a.shape, a.dtype) for a in jax.tree.leaves(state)] == [
        (a.shape, a.dtype) for a in jax.tree.leaves(new_state)
    ]


@pytest.mark.parametrize("family,preset", [c for c in CASES if c[1] != "default"])
def test_causal(family, preset):
    vocab, seq_len, k = 40, 16, 7
    model = _model(family, preset, vocab=vocab, seq_len=seq_len)
    tokens = _sentences(4, seq_len - 1, vocab)
    changed = tokens.at[:, k].set((tokens[:, k] % (vocab - 1)) + 1)
    a, b = _forward(model, tokens, train=False), _forward(model, changed, train=False)
    np.testing.assert_array_equal(a[:, :k], b[:, :k])  # positions before k never see token k
    assert float(jnp.abs(a[:, k] - b[:, k]).max()) > 1e-4  # position k does


@pytest.mark.parametrize("family,preset", [c for c in CASES if c[1] != "tiny"])
def test_initial_loss_is_log_vocab(family, preset):
    vocab = 50 if preset == "paper" else 2000  # the pooled alphabet / a per-column vocabulary
    seq_len = 40
    model = _model(family, preset, vocab=vocab, seq_len=seq_len, seed=1)
    tokens = _sentences(32, seq_len, vocab, seed=1)
    logits = _forward(model, tokens[:, :-1], train=True)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], -1)
    assert abs(float(nll.mean()) - math.log(vocab)) < 0.1


@pytest.mark.parametrize("family,preset", CASES)
def test_decode_step_reproduces_teacher_forcing(family, preset):
    vocab, seq_len = 60, 20
    model = _model(family, preset, vocab=vocab, seq_len=seq_len, seed=2)
    tokens = _sentences(4, seq_len - 1, vocab, seed=2)
    model(tokens, train=True)  # moves the BatchNorm running statistics off their initial values
    # A larger head makes the logits O(1), so 1e-5 is a strict tolerance.
    head = model.head.kernel
    head[...] = jax.random.normal(jax.random.key(0), head.shape) / head.shape[0] ** 0.5
    teacher = _forward(model, tokens, train=False)
    assert float(teacher.std()) > 0.3
    decoded = _decode_all(model, tokens)
    np.testing.assert_allclose(decoded, teacher, atol=1e-5, rtol=0)


def test_wavenet_paper_preset_is_the_study_network():
    model = _model("wavenet", "paper", vocab=50, seq_len=80)
    assert model.receptive_field == 8
    assert 79_000 < count_params(model) < 81_000  # the study's 80k parameters
    assert [level.dilation for level in model.levels] == [1, 2, 4]


def test_wavenet_default_covers_the_sentence():
    for seq_len in (8, 69, 80):
        model = _model("wavenet", "default", vocab=50, seq_len=seq_len)
        assert model.receptive_field >= seq_len - 1


def test_model_config_from_rejects_unknown_keys_and_families():
    cfg = configs.get_config("wavenet", "tiny").model.to_dict()
    with pytest.raises(ValueError, match="bogus"):
        model_config_from({**cfg, "bogus": 1})
    with pytest.raises(ValueError, match="lstm"):
        model_config_from({**cfg, "name": "lstm"})
    with pytest.raises(ValueError, match="divisible"):
        model_config_from({**configs.get_config("transformer", "tiny").model.to_dict(),
                           "num_heads": 3})  # fmt: skip


def test_presets_follow_the_paper():
    for family in configs.FAMILIES:
        assert configs.get_config(family, "paper").tokenizer.mode == "paper"
        assert configs.get_config(family, "default").tokenizer.mode == "per_column"
    with pytest.raises(ValueError, match="preset"):
        configs.get_config("rnn", "huge")
    with pytest.raises(ValueError, match="unknown model family"):
        configs.get_config("lstm")
    assert model_config_from(configs.get_config("rnn", "paper").model).cell == "tanh"
    config = configs.with_steps(configs.get_config("rnn", "tiny"), 600)
    assert (config.num_steps, config.eval_every, config.checkpoint_every) == (600, 120, 200)


@pytest.mark.parametrize("kind", ["gru", "tanh"])
def test_rnn_recurrence_gradient_matches_autodiff(kind):
    from flowjax.models.rnn import _cell, _recurrence

    hidden, gates = 8, 3 if kind == "gru" else 1
    keys = jax.random.split(jax.random.key(0), 5)
    w = jax.random.normal(keys[0], (hidden, gates * hidden)) / hidden**0.5
    b = jax.random.normal(keys[1], (gates * hidden,))
    h0 = jax.random.normal(keys[2], (4, hidden))
    gx = jax.random.normal(keys[3], (6, 4, gates * hidden))
    probe = jax.random.normal(keys[4], (6, 4, hidden))

    def reference(w, b, h0, gx):
        def body(h, g):
            h = _cell(kind, h, g, h @ w + b)
            return h, h

        return jax.lax.scan(body, h0, gx)[1]

    def loss(fn):
        return lambda *args: jnp.sum(jnp.sin(fn(*args)) * probe)

    custom = jax.grad(loss(functools.partial(_recurrence, kind)), argnums=(0, 1, 2, 3))
    expected = jax.grad(loss(reference), argnums=(0, 1, 2, 3))(w, b, h0, gx)
    for got, want in zip(custom(w, b, h0, gx), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", configs.FAMILIES)
def test_dropout_acts_only_in_training_with_a_key(family):
    vocab, seq_len = 60, 20
    config = configs.get_config(family, "tiny")
    config.model.dropout = 0.5
    cfg = model_config_from(config.model)
    plain = build_model(model_config_from(configs.get_config(family, "tiny").model),
                        vocab_size=vocab, seq_len=seq_len, rngs=nnx.Rngs(3))  # fmt: skip
    dropped = build_model(cfg, vocab_size=vocab, seq_len=seq_len, rngs=nnx.Rngs(3))
    tokens = _sentences(4, seq_len - 1, vocab, seed=3)
    key = jax.random.key(0)
    # Evaluation (train=False) ignores the key: the same function as without dropout.
    np.testing.assert_array_equal(dropped(tokens, train=False, dropout_key=key),
                                  plain(tokens, train=False))  # fmt: skip
    if family == "wavenet":  # BatchNorm statistics differ in training mode; compare eval only
        return
    a = dropped(tokens, train=True, dropout_key=key)
    b = dropped(tokens, train=True, dropout_key=jax.random.key(1))
    assert float(jnp.abs(a - b).max()) > 1e-3  # masks differ by key
    np.testing.assert_array_equal(a, dropped(tokens, train=True, dropout_key=key))
    np.testing.assert_array_equal(dropped(tokens, train=True), plain(tokens, train=True))
    with pytest.raises(ValueError, match="dropout"):
        config.model.dropout = 1.0
        model_config_from(config.model)
