"""Trace mode: streams of flows through the models, the sampler and the data path."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

from flowjax import models, sampling
from flowjax.configs import rnn, transformer, wavenet

V, S = 24, 7  # vocabulary, sentence length (start symbol + 6 columns)
FLOWS, CONTEXT = 6, 2  # streams of 6 flows; the Transformer attends to 2 flows back


def _mask() -> np.ndarray:
    rng = np.random.default_rng(4)
    mask = rng.random((S, V)) < 0.4
    mask[:, 0] = False
    mask[np.arange(1, S), rng.integers(1, V, S - 1)] = True
    mask[0] = False
    mask[0, 0] = True
    return mask


def _stream_model(module, mask):
    config = models.model_config_from(module.get_config("tiny").model)
    windows = models.column_windows(mask)
    model = models.build_model(config, vocab_size=V, seq_len=S, rngs=nnx.Rngs(3),
                               windows=windows, context=CONTEXT * S)  # fmt: skip
    if getattr(model, "flow_bias", None) is not None:  # a non-zero bias, so that it counts
        bias = model.flow_bias
        bias[...] = jax.random.normal(jax.random.key(0), bias.shape)
    return model


@pytest.mark.parametrize("module", [rnn, wavenet, transformer], ids=lambda m: m.__name__)
def test_stream_sampler_matches_teacher_forcing_across_flows(module):
    """Streams of 6 flows: the scan's log-probabilities equal one teacher-forced pass over the
    whole stream, across flow boundaries (the Transformer's ring buffer of 2 flows wraps)."""
    mask = _mask()
    model = _stream_model(module, mask)
    if module is wavenet:
        assert model.receptive_field >= CONTEXT * S - 1
    g, p, r = nnx.split(model, nnx.Param, ...)
    tables = sampling.make_tables(mask)
    forced = sampling.local_forced(tables, np.full((8, FLOWS * S), -1, np.int32))
    rows = jnp.arange(8, dtype=jnp.int32)
    tokens, log_prob = sampling.make_sampler(g, strategy=sampling.Temperature())(
        p, r, jax.random.key(1), rows, tables, jnp.asarray(forced)
    )
    tokens = np.asarray(tokens)
    assert tokens.shape == (8, FLOWS * S)
    positions = np.arange(FLOWS * S) % S
    assert mask[positions, tokens].all(), "an illegal token was drawn"
    np.testing.assert_array_equal(tokens[:, ::S], 0)  # every flow opens with the start symbol
    expected = sampling.sequence_log_prob(model, jnp.asarray(tokens), mask)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-5)


def test_transformer_window_limits_attention():
    """With one block, a position sees only the last `context` positions: changing a token
    further back leaves its logits unchanged, changing one inside the window does not."""
    config = models.model_config_from(
        {**transformer.get_config("tiny").model.to_dict(), "num_layers": 1}
    )
    model = models.build_model(config, vocab_size=V, seq_len=S, rngs=nnx.Rngs(0),
                               context=CONTEXT * S)  # fmt: skip
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, V, (1, FLOWS * S)).astype(np.int32)
    last = FLOWS * S - 1
    base = model(jnp.asarray(tokens), train=False)[0, last]
    far, near = tokens.copy(), tokens.copy()
    far[0, last - CONTEXT * S] = (far[0, last - CONTEXT * S] % (V - 1)) + 1
    near[0, last - CONTEXT * S + 1] = (near[0, last - CONTEXT * S + 1] % (V - 1)) + 1
    np.testing.assert_allclose(model(jnp.asarray(far), train=False)[0, last], base, atol=1e-6)
    assert np.abs(model(jnp.asarray(near), train=False)[0, last] - base).max() > 1e-4


@pytest.fixture(scope="module")
def lab_trace_run(tmp_path_factory):
    """A tiny trace-mode GRU trained for a few steps on the lab capture."""
    from flowjax import configs, train

    config = configs.get_config("rnn", "tiny")
    config.data.trace.enabled = True
    config.update(num_steps=10, checkpoint_every=10, eval_every=10)
    workdir = tmp_path_factory.mktemp("trace")
    _, prepared = train.train_model(config, workdir, data="lab")
    return workdir, prepared


def test_trace_data_are_windows_of_the_stream_in_time_order(lab_trace_run):
    _, prepared = lab_trace_run
    tok, splits, frame = prepared.tokenizer, prepared.splits, prepared.frame
    assert splits.train.shape[1] == 16 * tok.seq_len  # window_flows sentences end to end
    times = pd.to_datetime(frame["timestamp"])
    assert times.is_monotonic_increasing
    n = sum(len(i) for i in (splits.train_idx, splits.val_idx, splits.test_idx))
    assert n == len(frame) // 16 * 16
    first = splits.train_idx[:16]  # the first training window, as its sentences
    np.testing.assert_array_equal(splits.train[0].reshape(16, -1)[:, 0], 0)
    codec = tok.codecs[tok.columns.index("timestamp")]
    assert codec.gaps and codec.starts == [codec.origin]
    gaps = np.diff(times.iloc[first].astype("int64").to_numpy() / 1e9)
    decoded = codec.decode(splits.train[0].reshape(16, -1)[1:, 1 + tok.columns.index("timestamp")],
                           np.full(15, 0.5), midpoint=True)  # fmt: skip
    assert ((decoded == 0) == (gaps == 0)).all()  # the zero-gap token is exact


def test_streams_honour_conditions_and_prompts(lab_trace_run, tmp_path):
    from flowjax import generate

    workdir, prepared = lab_trace_run
    gen = generate.load_generator(workdir)
    out = generate.generate(gen, 40, seed=1, flows_per_stream=20, batch_size=2,
                            condition={"label": "PortScan"})  # fmt: skip
    assert len(out) == 40 and (out["label"] == "PortScan").all()
    for stream in (out.iloc[:20], out.iloc[20:]):
        assert pd.to_datetime(stream["timestamp"]).is_monotonic_increasing
    prompt = prepared.frame.iloc[100:103]
    out = generate.generate(gen, 40, seed=1, flows_per_stream=20, batch_size=2, prompt=prompt)
    for stream in (out.iloc[:20], out.iloc[20:]):
        opened = stream.iloc[:3].reset_index(drop=True)
        for col in ("src_ip", "dst_ip", "protocol", "label"):  # exact tokens
            assert (opened[col].to_numpy() == prompt[col].to_numpy()).all(), col
        tok = gen.tokenizer  # every other column inside the prompt's bin or port range
        np.testing.assert_array_equal(tok.encode(opened), tok.encode(prompt.reset_index(drop=True)))
        assert opened["timestamp"].iloc[0] == prompt["timestamp"].iloc[0]
    path = generate.generate_to_files(gen, 30, tmp_path / "trace.csv", flows_per_stream=10,
                                      batch_size=2, progress=False)  # fmt: skip
    assert len(pd.read_csv(path)) == 30
    with pytest.raises(ValueError, match="one file"):
        generate.generate_to_files(gen, 30, tmp_path / "shards", progress=False)
    with pytest.raises(ValueError, match="class"):
        generate.generate(gen, 10, class_balance="uniform")


def test_sessions_by_source_address():
    """group_by: sessions in time order one after another; gaps never negative; a generated
    stream starts at a draw from the real sessions' start times."""
    from flowjax import configs, data

    config = configs.get_config("rnn", "tiny")
    config.data.trace.update(enabled=True, group_by="src_ip")
    prepared = data.prepare_data(config, "lab")
    frame, tok = prepared.frame, prepared.tokenizer
    assert (frame["src_ip"].to_numpy()[:-1] <= frame["src_ip"].to_numpy()[1:]).all()
    for _, session in frame.groupby("src_ip", sort=False):
        assert pd.to_datetime(session["timestamp"]).is_monotonic_increasing
    codec = tok.codecs[tok.columns.index("timestamp")]
    assert len(set(codec.starts)) > 1 and min(codec.starts) >= codec.origin
    assert codec.edges[0] >= 0 and "neginf" not in codec.specials
    starts = codec.draw_starts(np.linspace(0, 1, 5))
    assert (np.diff(starts) >= 0).all() and starts[0] == codec.starts[0]
