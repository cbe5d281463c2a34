"""Tests for flowjax.checkpoint: bit-exact round trip, keep-last-k, 8 -> 1 device restore."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flowjax import checkpoint, parallel, train
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
    assert model(tokens, train=False).shape == (2, metrics["seq_len"] - 1, metrics["vocab_size"])
    assert float(jnp.abs(jax.tree.leaves(on1.rest)[0]).sum()) > 0  # BatchNorm statistics came back


def test_load_for_inference_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoint.load_for_inference(tmp_path)
