"""Tests for flowjax.sampling: exactness of the scan sampler against teacher forcing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from flowjax import models, sampling
from flowjax.configs import rnn, transformer, wavenet

V, S = 24, 10  # vocabulary, sentence length (start symbol + 9 columns)


def _mask(seed: int = 0) -> np.ndarray:
    """A legal mask like the per-column tokenizer's: each column owns a random token subset."""
    rng = np.random.default_rng(seed)
    mask = rng.random((S, V)) < 0.4
    mask[:, 0] = False
    mask[np.arange(1, S), rng.integers(1, V, S - 1)] = True  # at least one legal token
    mask[0] = False
    mask[0, 0] = True
    return mask


class _Successor(nnx.Module):
    """Fake model (as flax lm1b's sampler test): token+1 is near certain, token+2 runner-up."""

    def __init__(self, vocab: int):
        self.vocab = vocab

    def init_decode_state(self, batch_size: int) -> jax.Array:
        return jnp.zeros((batch_size,), jnp.int32)

    def decode_step(self, state, token, t):
        del t
        logits = 1e4 * jax.nn.one_hot(token + 1, self.vocab) + 5e3 * jax.nn.one_hot(
            token + 2, self.vocab
        )
        return logits - 1e4, state + 1


def _split(model):
    return nnx.split(model, nnx.Param, ...)


def _free(batch: int) -> jax.Array:
    """No forced tokens for any row."""
    return jnp.full((batch, S), -1, jnp.int32)


def test_peaked_model_gives_exact_output_and_honours_mask_and_forcing():
    g, p, r = _split(_Successor(V))
    mask = np.ones((S, V), bool)
    mask[0, 1:] = False
    rows = jnp.arange(3, dtype=jnp.int32)
    for strategy in (sampling.Greedy(), sampling.Temperature(), sampling.TopK(2)):
        fn = sampling.make_sampler(g, strategy=strategy)
        tokens, log_prob = fn(p, r, jax.random.key(0), rows, sampling.make_tables(mask), _free(3))
        np.testing.assert_array_equal(tokens, np.tile(np.arange(S), (3, 1)))
        np.testing.assert_allclose(log_prob, 0.0, atol=1e-6)
    # token 4 is illegal at position 4: the runner-up (5) is taken and followed by 6, 7, ...
    masked = mask.copy()
    masked[4, 4] = False
    # Row 0: position 7 forced to token 12: the scan feeds it on, so 13, 14 follow.
    # Row 1: position 2 forced to token 8. Row 2: free.
    forced = np.full((3, S), -1, np.int32)
    forced[0, 7], forced[1, 2] = 12, 8
    tables = sampling.make_tables(masked)
    fn = sampling.make_sampler(g, strategy=sampling.Temperature())
    tokens, log_prob = fn(p, r, jax.random.key(0), rows, tables,
                          sampling.local_forced(tables, forced))  # fmt: skip
    np.testing.assert_array_equal(tokens[0], [0, 1, 2, 3, 5, 6, 7, 12, 13, 14])
    np.testing.assert_array_equal(tokens[1], [0, 1, 8, 9, 10, 11, 12, 13, 14, 15])
    np.testing.assert_array_equal(tokens[2], [0, 1, 2, 3, 5, 6, 7, 8, 9, 10])
    # log p(5) = 0 once the mask renormalises; each forced token scores -1e4
    np.testing.assert_allclose(log_prob, [-1e4, -1e4, 0.0], atol=1e-2)


@pytest.mark.parametrize("module", [rnn, wavenet, transformer], ids=lambda m: m.__name__)
def test_scan_log_prob_and_greedy_match_teacher_forcing(module):
    config = models.model_config_from(module.get_config("tiny").model)
    model = models.build_model(config, vocab_size=V, seq_len=S, rngs=nnx.Rngs(1))
    g, p, r = _split(model)
    mask = _mask()
    tables = sampling.make_tables(mask)
    rows = jnp.arange(32, dtype=jnp.int32)
    key = jax.random.key(3)

    tokens, log_prob = sampling.make_sampler(g, strategy=sampling.Temperature())(
        p, r, key, rows, tables, _free(32)
    )
    assert mask[np.arange(S), np.asarray(tokens)].all(), "an illegal token was drawn"
    assert len({tuple(t) for t in np.asarray(tokens)}) > 16, "rows should differ"
    np.testing.assert_allclose(log_prob, sampling.sequence_log_prob(model, tokens, mask),
                               rtol=1e-5)  # fmt: skip

    tokens, log_prob = sampling.make_sampler(g, strategy=sampling.Greedy())(
        p, r, key, rows[:4], tables, _free(4)
    )
    logits = model(tokens[:, :-1], train=False)
    argmax = jnp.argmax(jnp.where(mask[None, 1:], logits, -jnp.inf), axis=-1)
    np.testing.assert_array_equal(tokens[:, 1:], argmax)
    np.testing.assert_allclose(log_prob, sampling.sequence_log_prob(model, tokens, mask),
                               rtol=1e-5)  # fmt: skip

    cold = sampling.Temperature(0.7)
    tokens, log_prob = sampling.make_sampler(g, strategy=cold)(p, r, key, rows, tables, _free(32))
    expected = sampling.sequence_log_prob(model, tokens, mask, temperature=0.7)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)


@pytest.mark.parametrize("module", [rnn, wavenet, transformer], ids=lambda m: m.__name__)
def test_column_head_equals_the_masked_full_head(module):
    """Same weights (same init key), two heads: the same masked log-probabilities and draws."""
    config = models.model_config_from(module.get_config("tiny").model)
    mask = _mask(1)
    windows = models.column_windows(mask)
    assert windows.width < V
    full = models.build_model(config, vocab_size=V, seq_len=S, rngs=nnx.Rngs(2))
    column = models.build_model(config, vocab_size=V, seq_len=S, rngs=nnx.Rngs(2),
                                windows=windows)  # fmt: skip
    for a, b in zip(jax.tree.leaves(nnx.state(full)), jax.tree.leaves(nnx.state(column)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    tokens = np.zeros((16, S), np.int32)
    for j in range(1, S):
        tokens[:, j] = rng.choice(np.flatnonzero(mask[j]), 16)
    assert column(jnp.asarray(tokens[:, :-1]), train=False).shape == (16, S - 1, windows.width)
    expected = sampling.sequence_log_prob(full, tokens, mask)
    np.testing.assert_allclose(sampling.sequence_log_prob(column, tokens, mask), expected,
                               rtol=1e-5)  # fmt: skip

    tables = sampling.make_tables(mask)
    rows, key = jnp.arange(32, dtype=jnp.int32), jax.random.key(5)
    draws = {}
    for name, model in (("full", full), ("column", column)):
        g, p, r = _split(model)
        fn = sampling.make_sampler(g, strategy=sampling.Temperature())
        draws[name] = fn(p, r, key, rows, tables, _free(32))
    tokens, log_prob = draws["column"]
    assert mask[np.arange(S), np.asarray(tokens)].all(), "an illegal token was drawn"
    np.testing.assert_allclose(log_prob, sampling.sequence_log_prob(column, tokens, mask),
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_array_equal(tokens, draws["full"][0])


def _frequencies(strategy, logits: np.ndarray, n: int = 100_000) -> np.ndarray:
    scaled = jnp.broadcast_to(jnp.asarray(logits, jnp.float32), (n, logits.size))
    u = sampling.uniforms(jax.random.key(7), jnp.arange(n, dtype=jnp.int32), 1)[0]
    picks = jax.jit(strategy.select)(scaled, u)
    return np.bincount(np.asarray(picks), minlength=logits.size)


def _chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    keep = probs > 0
    assert counts[~keep].sum() == 0, "a token of probability zero was drawn"
    return stats.chisquare(counts[keep], counts.sum() * probs[keep] / probs[keep].sum()).pvalue


def test_inverse_cdf_frequencies_match_softmax():
    logits = np.array([-np.inf, 1.0, 0.2, -np.inf, 2.5, -1.0, 0.0, -3.0, -np.inf, 1.7])
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()

    assert _chi2_pvalue(_frequencies(sampling.Temperature(), logits), probs) > 1e-3

    top3 = np.where(np.isin(np.arange(10), [1, 4, 9]), probs, 0.0)
    assert _chi2_pvalue(_frequencies(sampling.TopK(3), logits), top3) > 1e-3

    # nucleus of 0.8: sorted masses 0.52, 0.25, 0.12, ... -> the first three are kept
    order = np.argsort(-probs)
    nucleus = np.zeros_like(probs)
    nucleus[order[:3]] = probs[order[:3]]
    assert probs[order[:2]].sum() < 0.8 <= probs[order[:3]].sum()
    assert _chi2_pvalue(_frequencies(sampling.TopP(0.8), logits), nucleus) > 1e-3

    # and the frequency test has power: a wrong distribution is rejected
    assert _chi2_pvalue(_frequencies(sampling.Temperature(), logits), top3 + probs) < 1e-6


def test_uniforms_depend_only_on_row_index():
    key = jax.random.key(11)
    rows = jnp.array([5, 900, 3, 77], jnp.int32)
    u = np.asarray(sampling.uniforms(key, rows, 6))
    assert u.shape == (6, 4) and (u >= 0).all() and (u < 1).all()
    np.testing.assert_array_equal(sampling.uniforms(key, rows[::-1], 6), u[:, ::-1])
    np.testing.assert_array_equal(sampling.uniforms(key, rows[1:2], 6), u[:, 1:2])
    assert not np.allclose(sampling.uniforms(jax.random.key(12), rows, 6), u)


def test_tables_window_and_validation():
    mask = np.zeros((4, 100), bool)
    mask[0, 0] = True
    mask[1, 10:20] = True
    mask[2, 30:33] = True
    mask[3, 95:100] = True
    tables = sampling.make_tables(mask)
    assert tables.legal.shape == (4, 10)  # the widest column, not the vocabulary
    lo = np.asarray(tables.lo)
    for p in range(4):  # the window keeps exactly the legal tokens
        np.testing.assert_array_equal(mask[p, lo[p] : lo[p] + 10], tables.legal[p])
        assert mask[p].sum() == np.asarray(tables.legal[p]).sum()
    local = sampling.local_forced(tables, np.array([0, 15, -1, -1], np.int32))
    assert lo[1] + local[1] == 15 and list(local[[0, 2, 3]]) == [-1, -1, -1]
    with pytest.raises(ValueError, match="not legal at position 2"):
        sampling.local_forced(tables, np.array([[0, -1, -1, -1], [0, -1, 40, -1]], np.int32))
    empty = mask.copy()
    empty[2] = False
    with pytest.raises(ValueError, match="position 2 allows no token"):
        sampling.make_tables(empty)


def test_strategy_validation():
    with pytest.raises(ValueError, match="temperature"):
        sampling.Temperature(0.0)
    with pytest.raises(ValueError, match="k must be"):
        sampling.TopK(0)
    with pytest.raises(ValueError, match="p must be"):
        sampling.TopP(1.5)
    assert sampling.strategy_from_flags("top_p", top_p=0.9, temperature=0.5) == sampling.TopP(
        0.9, 0.5
    )
    with pytest.raises(ValueError, match="--strategy"):
        sampling.strategy_from_flags("beam")
