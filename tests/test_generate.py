"""Tests for flowjax.generate: checkpoint -> flows, determinism, sharding, files and resume."""

import json
import os

import jax
import numpy as np
import pandas as pd
import pytest

from flowjax import generate, parallel, sampling, train
from flowjax.configs import rnn


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny GRU trained for a few steps on a synthetic CIC-style flow table."""
    root = tmp_path_factory.mktemp("gen")
    rng = np.random.default_rng(0)
    n = 400
    label = rng.choice(["BENIGN", "DDoS", "PortScan"], n, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame(
        {
            "Destination Port": rng.choice([80, 443, 53, 22, 8080], n),
            "Protocol": rng.choice([6, 17], n),
            "Flow Duration": np.where(rng.random(n) < 0.1, 0, rng.integers(1, 10**6, n)),
            "Total Fwd Packets": rng.integers(1, 50, n),
            "Flow Bytes/s": rng.lognormal(8, 2, n),
            "Label": label,
        }
    )
    frame.to_csv(root / "flows.csv", index=False)
    config = rnn.get_config("tiny")
    config.data.fraction = 1.0
    config.num_steps = 4
    config.eval_every = 4
    config.checkpoint_every = 4
    # One device: the RNN's all-reduce can deadlock with 8 fake devices on 2 cores (XLA CPU).
    one = parallel.make_mesh(jax.devices()[:1])
    train.train_and_evaluate(config, root / "run", data=root / "flows.csv", mesh=one)
    return root / "run"


@pytest.fixture(scope="module")
def gens(workdir):
    """The checkpoint loaded on one device and on all eight."""
    return {n: generate.load_generator(workdir, devices=jax.devices()[:n]) for n in (1, 8)}


def _tokens(gen, n, *, batch_size, seed=0, condition=None, strategy=generate.DEFAULT_STRATEGY):
    starts = list(range(0, n, batch_size))
    chunks = generate.token_chunks(gen, starts, num_rows=n, seed=seed, batch_size=batch_size,
                                   strategy=strategy, condition=condition)  # fmt: skip
    return np.concatenate([t for _, t, _ in chunks])


def test_generate_from_checkpoint_is_legal_and_conditioned(workdir, gens):
    df = generate.generate(workdir, 60, seed=3, condition={"Label": "DDoS"}, batch_size=16)
    tok = gens[1].tokenizer
    assert tok.columns[0] == "Label"  # the sentence starts with the label ...
    real = pd.read_csv(workdir.parent / "flows.csv")
    assert list(df.columns) == list(real.columns)  # ... the output has the input's order
    assert (df.dtypes == real.dtypes).all()
    assert len(df) == 60 and (df["Label"] == "DDoS").all()
    assert df["Protocol"].isin([6, 17]).all()  # categories the column had, nothing else

    cond = {"Label": "PortScan", "Destination Port": "443"}
    tokens = _tokens(gens[8], 50, batch_size=16, condition=cond)
    legal = tok.legal_mask()
    assert legal[np.arange(tok.seq_len), tokens].all(), "an illegal token was drawn"
    forced = tok.condition_tokens(cond)
    fixed = forced >= 0
    assert (tokens[:, fixed] == forced[fixed]).all()
    assert len(np.unique(tokens[:, ~fixed], axis=0)) > 40, "free columns should vary"


def test_same_rows_for_any_batch_size_and_device_count(gens):
    ref = _tokens(gens[1], 100, batch_size=64)
    for n_dev in (1, 8):
        for batch_size in (7, 64):
            got = _tokens(gens[n_dev], 100, batch_size=batch_size)
            np.testing.assert_array_equal(got, ref, err_msg=f"{n_dev} devices, batch {batch_size}")
    assert not np.array_equal(_tokens(gens[1], 100, batch_size=64, seed=1), ref)
    # decoded values are seeded per chunk: equal for equal batch sizes on any devices
    pd.testing.assert_frame_equal(
        generate.generate(gens[1], 30, batch_size=7), generate.generate(gens[8], 30, batch_size=7)
    )


def test_chunks_reuse_one_compiled_sampler(gens):
    strategy = sampling.TopK(3)  # a strategy no other test compiles
    before = sampling.trace_count()
    generate.generate(gens[8], 5 * 16 + 3, batch_size=16, strategy=strategy)
    generate.generate(gens[8], 20, batch_size=16, strategy=strategy, seed=5)
    assert sampling.trace_count() - before == 1


def _read_dir(path) -> pd.DataFrame:
    return pd.read_parquet(path)


def test_shards_resume_to_identical_output_and_never_leave_partial_files(
    gens, tmp_path, monkeypatch
):
    gen = gens[8]
    args = dict(seed=2, batch_size=16, shard_rows=32, progress=False)
    full = generate.generate_to_files(gen, 150, tmp_path / "full", **args)
    shards = sorted(p.name for p in full.glob("part-*.parquet"))
    assert shards == [f"part-{i:05d}.parquet" for i in range(5)]
    expected = _read_dir(full)
    assert len(expected) == 150
    pd.testing.assert_frame_equal(expected, generate.generate(gen, 150, seed=2, batch_size=16))

    # Interrupt in the middle of the third shard: two shards are final, nothing else.
    out = tmp_path / "resumed"
    real_decode = generate.decode_rows
    calls = []

    def failing_decode(tok, tokens, *, seed, start):
        calls.append(start)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_decode(tok, tokens, seed=seed, start=start)

    monkeypatch.setattr(generate, "decode_rows", failing_decode)
    with pytest.raises(KeyboardInterrupt):
        generate.generate_to_files(gen, 150, out, **args)
    monkeypatch.setattr(generate, "decode_rows", real_decode)
    assert sorted(os.listdir(out)) == ["_manifest.json", "part-00000.parquet", "part-00001.parquet"]

    # A crash that left a temporary file behind, and a shard lost afterwards.
    (out / ".part-00002.parquet.tmp").write_bytes(b"half a shard")
    generate.generate_to_files(gen, 150, out, **args)
    pd.testing.assert_frame_equal(_read_dir(out), expected)
    (out / "part-00001.parquet").unlink()
    first = (out / "part-00000.parquet").stat().st_mtime_ns
    generate.generate_to_files(gen, 150, out, **args)
    assert (out / "part-00000.parquet").stat().st_mtime_ns == first, "a complete shard was redone"
    pd.testing.assert_frame_equal(_read_dir(out), expected)
    assert sorted(os.listdir(out)) == ["_manifest.json", *shards]

    with pytest.raises(ValueError, match="seed: was 2, now 3"):
        generate.generate_to_files(gen, 150, out, **{**args, "seed": 3})
    manifest = json.loads((out / generate.MANIFEST).read_text())
    assert manifest["num_flows"] == 150 and manifest["shard_rows"] == 32


def test_single_files_match_generate(gens, tmp_path):
    gen = gens[1]
    expected = generate.generate(gen, 40, seed=1, batch_size=16)
    for name in ("flows.csv", "flows.csv.gz", "flows.parquet"):
        path = generate.generate_to_files(gen, 40, tmp_path / name, seed=1, batch_size=16,
                                          progress=False)  # fmt: skip
        got = pd.read_parquet(path) if name.endswith("parquet") else pd.read_csv(path)
        pd.testing.assert_frame_equal(got, expected)  # CSV too reads back in the same dtypes
        sidecar = json.loads((tmp_path / f"{name}.schema.json").read_text())
        assert [c["name"] for c in sidecar["columns"]] == list(expected.columns)
    assert len(os.listdir(tmp_path)) == 6  # three files, three sidecars, nothing half-written


def test_class_balance_is_exact_or_real(gens):
    gen = gens[1]
    uniform = generate.generate(gen, 301, class_balance="uniform", batch_size=64)
    assert sorted(uniform["Label"].value_counts()) == [100, 100, 101]
    custom = generate.generate(gen, 200, class_balance={"PortScan": 3, "BENIGN": 1}, batch_size=64)
    assert custom["Label"].value_counts().to_dict() == {"PortScan": 150, "BENIGN": 50}
    with pytest.raises(ValueError, match="'Heartbleed' is not a class"):
        generate.generate(gen, 10, class_balance={"Heartbleed": 1})
    with pytest.raises(ValueError, match="fixed by the condition"):
        generate.generate(gen, 10, class_balance="uniform", condition={"Label": "DDoS"})
    # 'real': each row's class drawn from the training shares (its forced label token).
    plan = generate.class_plan(gen.tokenizer, "real")
    real = generate.generate(gen, 500, batch_size=64, seed=4)
    labels = plan.assign(500, 4)(np.arange(500))
    codec = gen.tokenizer.codecs[0]
    assert list(real["Label"]) == [codec.values[t - codec.offset] for t in labels]
    n = 100_000
    drawn = plan.assign(n, 0)(np.arange(n))
    for token, share in zip(plan.tokens, plan.shares, strict=True):
        assert abs((drawn == token).mean() - share) < 3 * np.sqrt(share * (1 - share) / n)


def test_parse_class_balance():
    assert generate.parse_class_balance("uniform") == "uniform"
    assert generate.parse_class_balance('{"DDoS": 0.5, "BENIGN": 0.5}') == {
        "DDoS": 0.5,
        "BENIGN": 0.5,
    }
    with pytest.raises(ValueError, match="JSON object"):
        generate.parse_class_balance("DDoS")


def test_parse_condition():
    assert generate.parse_condition("Label=DDoS, Protocol=6") == {"Label": "DDoS", "Protocol": "6"}
    assert generate.parse_condition("") == {}
    with pytest.raises(ValueError, match="column=value"):
        generate.parse_condition("Label")
