"""Tests for flowjax.checkpoint: bit-exact round trip, keep-last-k, 8 -> 1 device restore,
falling back past broken steps, and the checkpoints folder as the path to load."""

import logging
import re
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

from flowjax import checkpoint, generate, models, parallel, train
from flowjax.configs import wavenet
from flowjax.models import model_config_from


def _trained_state(mesh):
    """A wavenet-tiny train state after two steps (non-zero optimizer moments, moved BN stats)."""
    config = wavenet.get_config("tiny")
    tcfg = train.TrainConfig.from_config(config)
    tx = train.make_optimizer(tcfg.optimizer, tcfg.num_steps)
    graphdef, state = train.init_state(
        model_config_from(config.model), tx, vocab_size=20, seq_len=9, seed=0,
        sharding=parallel.replicated(mesh),
    )  # fmt: skip
    step = train.make_train_step(graphdef, tx, mesh)
    batch = np.random.default_rng(0).integers(1, 20, (16, 9)).astype(np.int32)
    batch[:, 0] = 0
    for _ in range(2):
        state, _ = step(state, parallel.shard_batch(batch, mesh), None)
    return state


def test_round_trip_is_bit_exact(tmp_path):
    mesh = parallel.make_mesh()
    state = _trained_state(mesh)
    meta = {"config": {"a": [1, 2]}, "tokenizer": "{}", "vocab_size": 20}
    manager = checkpoint.make_manager(tmp_path, save_every=1, keep=2)
    checkpoint.save(manager, 2, state, meta)
    manager.wait_until_finished()
    restored, restored_meta = checkpoint.restore(
        manager, checkpoint.abstract_on(state, parallel.replicated(mesh))
    )
    manager.close()
    assert restored_meta == meta
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(restored["step"]) == 2


def test_keeps_the_last_k_and_skips_off_interval_steps(tmp_path):
    manager = checkpoint.make_manager(tmp_path, save_every=2, keep=2)
    state = {"w": jnp.arange(3.0)}
    for step in range(1, 9):
        checkpoint.save(manager, step, state, {"step": step})
    manager.wait_until_finished()
    assert list(manager.all_steps()) == [6, 8]
    manager.close()


@pytest.fixture(scope="module")
def eight_device_run(tmp_path_factory, shared_data):
    """A wavenet-tiny run trained and checkpointed on all 8 devices."""
    data = shared_data / "ugr16_netflow_sample1k.csv.gz"
    if not data.is_file():
        pytest.skip(f"real flow file not found at {data} (../shared/data is absent)")
    workdir = tmp_path_factory.mktemp("run8")
    config = wavenet.get_config("tiny")
    config.update(num_steps=10, checkpoint_every=10, eval_every=10)
    assert jax.device_count() == 8, "tests/conftest.py should give 8 CPU devices"
    metrics = train.train_and_evaluate(config, workdir, data=data, mesh=parallel.make_mesh())
    return workdir, metrics


def test_checkpoint_from_eight_devices_restores_on_one(eight_device_run):
    workdir, metrics = eight_device_run
    on8 = checkpoint.load_for_inference(workdir)
    on1 = checkpoint.load_for_inference(workdir, mesh=parallel.make_mesh(jax.devices()[:1]))
    leaves1 = jax.tree.leaves((on1.params, on1.rest))
    assert all(leaf.sharding.device_set == {jax.devices()[0]} for leaf in leaves1)
    for a, b in zip(jax.tree.leaves((on8.params, on8.rest)), leaves1, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The bundle alone rebuilds the model and its data edges.
    assert on1.step == 10 and on1.config.model.name == "wavenet"
    assert on1.tokenizer.vocab_size == metrics["vocab_size"]
    assert on1.tokenizer.seq_len == metrics["seq_len"]
    assert on1.schema.label == "type"
    model = nnx.merge(on1.graphdef, on1.params, on1.rest)
    tokens = jnp.zeros((2, metrics["seq_len"] - 1), jnp.int32)
    # The per-column head (the default) is rebuilt from the stored config and tokenizer.
    width = models.column_windows(on1.tokenizer.legal_mask()).width
    assert width < metrics["vocab_size"]
    assert model(tokens, train=False).shape == (2, metrics["seq_len"] - 1, width)
    assert model.head.kernel.shape[1] == metrics["vocab_size"]
    assert float(jnp.abs(jax.tree.leaves(on1.rest)[0]).sum()) > 0  # BatchNorm statistics came back


def test_load_for_inference_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoint.load_for_inference(tmp_path)


def write_flows(path: Path, n: int = 400) -> Path:
    """A synthetic CIC-style flow table of `n` rows (the first `n` of one fixed draw)."""
    rng = np.random.default_rng(0)
    m = 400
    frame = pd.DataFrame(
        {
            "Destination Port": rng.choice([80, 443, 53, 22, 8080], m),
            "Protocol": rng.choice([6, 17], m),
            "Flow Duration": np.where(rng.random(m) < 0.1, 0, rng.integers(1, 10**6, m)),
            "Total Fwd Packets": rng.integers(1, 50, m),
            "Flow Bytes/s": rng.lognormal(8, 2, m),
            "Label": rng.choice(["BENIGN", "DDoS", "PortScan"], m, p=[0.5, 0.3, 0.2]),
        }
    )
    frame.iloc[:n].to_csv(path, index=False)
    return path


def _config():
    config = wavenet.get_config("tiny")
    config.update(num_steps=4, checkpoint_every=2, eval_every=4, log_every=2)
    config.data.fraction = 1.0
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A wavenet-tiny run on one device, checkpoints at steps 2 and 4; returns (workdir, data)."""
    root = tmp_path_factory.mktemp("fallback")
    data = write_flows(root / "flows.csv")
    one = parallel.make_mesh(jax.devices()[:1])
    train.train_and_evaluate(_config(), root / "run", data=data, mesh=one)
    assert sorted(int(p.name) for p in (root / "run" / "checkpoints").iterdir()) == [2, 4]
    return root / "run", data


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _break_array(step: Path) -> None:
    """Truncates every array data file of the step (which one holds which array varies)."""
    arrays = [f for f in (step / "state").rglob("*") if f.is_file() and f.parent.name == "d"]
    assert arrays, f"no array files under {step / 'state'}"
    for f in arrays:
        _truncate(f)


BREAKS = {  # how a step folder gets broken, and the step expected to load afterwards
    "truncated array file": (lambda ckpt: _break_array(ckpt / "4"), 2),
    "truncated meta JSON": (lambda ckpt: _truncate(ckpt / "4" / "meta" / "metadata"), 2),
    "garbage meta JSON": (lambda ckpt: (ckpt / "4" / "meta" / "metadata").write_text("{oops"), 2),
    "truncated state _METADATA": (lambda ckpt: _truncate(ckpt / "4" / "state" / "_METADATA"), 2),
    "junk step folder": (lambda ckpt: (ckpt / "6" / "state").mkdir(parents=True), 4),
}


def _copy(run, tmp_path) -> Path:
    shutil.copytree(run[0], tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_load_for_inference_falls_back_past_a_broken_step(run, tmp_path, caplog, kind):
    workdir = _copy(run, tmp_path)
    breaks, expected = BREAKS[kind]
    breaks(workdir / "checkpoints")
    with caplog.at_level(logging.WARNING):
        bundle = checkpoint.load_for_inference(workdir, mesh=parallel.make_mesh(jax.devices()[:1]))
    assert bundle.step == expected
    bad = str(workdir.resolve() / "checkpoints" / str(expected + 2))
    assert any(bad in r.getMessage() and "delete" in r.getMessage() for r in caplog.records)


def test_resume_falls_back_past_a_truncated_array_file(run, tmp_path, caplog):
    workdir = _copy(run, tmp_path)
    _break_array(workdir / "checkpoints" / "4")
    one = parallel.make_mesh(jax.devices()[:1])
    config = _config()
    config.log_every = 1
    with caplog.at_level(logging.WARNING):
        metrics = train.train_and_evaluate(config, workdir, data=run[1], mesh=one)
    assert [h["step"] for h in metrics["history"]] == [3, 4]  # resumed from step 2
    bad = str(workdir.resolve() / "checkpoints" / "4")
    assert any(f"{bad} cannot be read" in r.getMessage() for r in caplog.records)
    # The broken step was set aside, so this run saved step 4 afresh; it loads.
    assert (workdir / "checkpoints" / "4.unreadable").is_dir()
    assert checkpoint.load_for_inference(workdir, mesh=one).step == 4


def test_no_readable_step_raises_naming_the_folder(run, tmp_path):
    workdir = _copy(run, tmp_path)
    for step in ("2", "4"):
        (workdir / "checkpoints" / step / "meta" / "metadata").write_text("")
    ckpt = re.escape(str(workdir.resolve() / "checkpoints"))
    with pytest.raises(ValueError, match=rf"{ckpt}: no checkpoint reads \(tried steps \[4, 2\]"):
        checkpoint.load_for_inference(workdir, mesh=parallel.make_mesh(jax.devices()[:1]))
    with pytest.raises(ValueError, match=r"tried steps \[4, 2\]"):
        train.train_and_evaluate(_config(), workdir, data=run[1])


def test_loads_from_the_checkpoints_folder_that_training_prints(run):
    workdir = run[0].resolve()
    bundle = checkpoint.load_for_inference(
        workdir / "checkpoints", mesh=parallel.make_mesh(jax.devices()[:1])
    )
    assert bundle.step == 4
    gen = generate.load_generator(workdir / "checkpoints", devices=jax.devices()[:1])
    assert gen.step == 4 and gen.workdir == str(workdir)


def test_keep_best_loads_the_step_of_lowest_validation_loss(tmp_path):
    data = write_flows(tmp_path / "flows.csv")
    config = _config()
    config.update(num_steps=12, eval_every=2, log_every=2, checkpoint_every=100)
    config.update(keep_checkpoints=1, keep_best=True)
    config.optimizer.update(learning_rate=0.3, warmup_steps=0)  # too high: val loss rises
    one = parallel.make_mesh(jax.devices()[:1])
    metrics = train.train_and_evaluate(config, tmp_path / "run", data=data, mesh=one)
    evaluated = [h for h in metrics["history"] if "val_loss" in h]
    assert [h["step"] for h in evaluated] == list(range(2, 13, 2))
    best = min(evaluated, key=lambda h: h["val_loss"])["step"]
    assert best != 12 and metrics["best_step"] == best
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert steps == [best, 12]  # the best beside the latest; the other evaluations are gone
    assert checkpoint.load_for_inference(tmp_path / "run", mesh=one).step == best
    assert checkpoint.load_for_inference(tmp_path / "run", step=12, mesh=one).step == 12
    assert generate.load_generator(tmp_path / "run", devices=jax.devices()[:1]).step == best
    # An unreadable best step falls back to the newest that reads.
    (tmp_path / "run" / "checkpoints" / str(best) / "meta" / "metadata").write_text("{oops")
    assert checkpoint.load_for_inference(tmp_path / "run", mesh=one).step == 12
