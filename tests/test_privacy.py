"""Tests for flowjax.privacy.budget and flowjax.privacy.dpsgd: the accountant, DP-SGD steps."""

import dataclasses
import json

import dp_accounting
import jax
import numpy as np
import pandas as pd
import pytest
from dp_accounting import rdp

from flowjax import checkpoint, configs, generate, io, parallel, pipeline, train
from flowjax.models import model_config_from
from flowjax.privacy import budget, dpsgd, tradeoff

VOCAB, SEQ_LEN, BATCH = 30, 12, 8


def _dp_config(family="rnn", epsilon=3.0, **dp):
    config = configs.get_config(family, "tiny")
    config.dp.update(epsilon=epsilon, **dp)
    return config


def test_default_delta_is_a_power_of_ten_below_one_over_ten_n():
    assert budget.default_delta(9000) == 1e-5
    assert budget.default_delta(10_000) == 1e-5
    assert budget.default_delta(10_001) == 1e-6


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epsilon_equals_dp_accountings_for_the_same_inputs(accountant):
    q, sigma, steps, delta = 0.01, 1.1, 1000, 1e-5
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    ours = budget.epsilon_of(
        budget.training_event(sampling_rate=q, noise_multiplier=sigma, steps=steps), delta,
        accountant,
    )  # fmt: skip
    theirs = budget.make_accountant(accountant).compose(event).get_epsilon(delta)
    assert ours == pytest.approx(theirs, rel=1e-9)
    if accountant == "rdp":  # and the RDP figure of docs/stack.md (1.71)
        assert rdp.RdpAccountant().compose(event).get_epsilon(delta) == pytest.approx(1.71, 0.01)


def test_calibrated_plan_meets_the_budget_and_spends_most_of_it():
    config = _dp_config(epsilon=3.0)
    plan = budget.plan(config, rows=9000, train_rows=8900, batch_size=128, steps=500)
    spent = plan.spent(plan.steps)
    assert spent["total"]["epsilon"] <= 3.0 + 1e-6
    assert spent["total"]["epsilon"] >= 0.98 * 3.0  # calibrated, not merely safe
    assert spent["total"]["delta"] == plan.delta == 1e-5
    # each part alone: the tokenizer spends its share, training the rest (composition <= sum)
    assert spent["tokenizer"]["epsilon"] == pytest.approx(0.25 * 3.0, rel=1e-3)
    assert spent["total"]["epsilon"] <= spent["tokenizer"]["epsilon"] + spent["training"]["epsilon"]
    assert plan.sampling_rate == pytest.approx(128 / 8900)
    # a larger noise multiplier spends less; the calibrated one is the smallest that fits
    more = dataclasses.replace(plan, noise_multiplier=plan.noise_multiplier * 0.95)
    assert more.spent(plan.steps)["total"]["epsilon"] > 3.0
    # fewer steps spend less
    assert plan.spent(100)["total"]["epsilon"] < spent["total"]["epsilon"]


def test_budgets_that_cannot_be_met_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot be met.*num_steps"):
        budget.plan(_dp_config(epsilon=0.5, tokenizer_share=0.5), rows=9000, train_rows=8900,
                    batch_size=512, steps=100_000)  # fmt: skip
    with pytest.raises(ValueError, match="cannot be met: the tokenizer.*tokenizer_share"):
        budget.plan(_dp_config(epsilon=0.05), rows=9000, train_rows=8900, batch_size=128,
                    steps=10)  # fmt: skip
    with pytest.raises(ValueError, match="noise multiplier 0.5 for 500 steps spends"):
        budget.plan(_dp_config(epsilon=1.0, noise_multiplier=0.5), rows=9000, train_rows=8900,
                    batch_size=128, steps=500)  # fmt: skip
    plan = budget.plan(_dp_config(), rows=9000, train_rows=8900, batch_size=128, steps=500)
    budget.write(tmp_path, plan, steps_done=200)
    budget.check_resume(tmp_path, plan)  # the same plan resumes
    longer = budget.plan(_dp_config(), rows=9000, train_rows=8900, batch_size=128, steps=900)
    with pytest.raises(ValueError, match="steps 500 -> 900"):
        budget.check_resume(tmp_path, longer)


def test_dp_config_turns_off_selection_by_validation_and_batch_norm():
    config = dpsgd.dp_config(_dp_config("wavenet"))
    assert config.model.batch_norm is False
    assert config.keep_best is False and config.early_stopping_patience == 0


def test_poisson_rows_sample_each_flow_with_the_rate():
    counts = [len(dpsgd.poisson_rows(10_000, rate=0.02, step=s, seed=7)) for s in range(50)]
    assert abs(np.mean(counts) - 200) < 10  # 50 draws: std of the mean is 2
    assert np.std(counts) > 5  # the batch size varies, as Poisson sampling does
    np.testing.assert_array_equal(dpsgd.poisson_rows(100, rate=0.3, step=3, seed=1),
                                  dpsgd.poisson_rows(100, rate=0.3, step=3, seed=1))  # fmt: skip


def _setup(mesh):
    """A tiny GRU under SGD at learning rate 1 (an update equals the gradient it applies)."""
    config = configs.get_config("rnn", "tiny")
    config.optimizer.update(name="sgd", learning_rate=1.0, warmup_steps=0, min_lr_ratio=1.0,
                            clip_norm=0.0)  # fmt: skip
    tcfg = train.TrainConfig.from_config(config)
    tx = train.make_optimizer(tcfg.optimizer, tcfg.num_steps)
    graphdef, state = train.init_state(model_config_from(config.model), tx, vocab_size=VOCAB,
                                       seq_len=SEQ_LEN, seed=0)  # fmt: skip
    return graphdef, tx, jax.device_put(state, parallel.replicated(mesh))


def _batch(seed=0):
    batch = np.random.default_rng(seed).integers(1, VOCAB, (BATCH, SEQ_LEN)).astype(np.int32)
    batch[:, 0] = 0
    return batch


def _dp_update(graphdef, tx, mesh, state, batch, weights, *, clip, noise_std, key=0):
    clipped = dpsgd.make_clipped_sum(graphdef, mesh, clip_norm=clip, dropout=False,
                                     loss_fn=train.flow_loss)  # fmt: skip
    update = dpsgd.make_noisy_update(tx, mesh, noise_std=noise_std, denominator=BATCH)
    grads, _ = clipped(state["params"], state["rest"], parallel.shard_batch(batch, mesh),
                       parallel.shard_batch(weights, mesh), None, jax.random.key(1))  # fmt: skip
    state = jax.tree.map(lambda x: x.copy(), state)  # update donates its state
    return jax.device_get(update(state, grads, jax.random.key(key))[0]["params"])


def _diff_norm(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return float(np.sqrt(sum(np.sum((np.asarray(x) - np.asarray(y)) ** 2) for x, y in pairs)))


def test_one_flow_moves_the_update_by_at_most_clip_over_batch():
    mesh = parallel.make_mesh(jax.devices()[:1])
    graphdef, tx, state = _setup(mesh)
    batch, clip = _batch(), 0.5
    scaled, removed = np.ones(BATCH, np.float32), np.ones(BATCH, np.float32)
    scaled[3], removed[3] = 1000.0, 0.0  # flow 3's gradient x1000, or flow 3 absent
    with_big = _dp_update(graphdef, tx, mesh, state, batch, scaled, clip=clip, noise_std=0.0)
    without = _dp_update(graphdef, tx, mesh, state, batch, removed, clip=clip, noise_std=0.0)
    moved = _diff_norm(with_big, without)  # SGD at learning rate 1: the update's change
    assert moved <= clip / BATCH * (1 + 1e-4)
    assert moved >= 0.5 * clip / BATCH  # the big gradient was clipped to the norm, not dropped


def test_without_noise_or_clipping_dp_sgd_is_the_ordinary_step():
    mesh = parallel.make_mesh(jax.devices()[:1])
    graphdef, tx, state = _setup(mesh)  # SGD: Adam's first step is lr x sign(g), noise-prone
    batch = _batch()
    dp = _dp_update(graphdef, tx, mesh, state, batch, np.ones(BATCH, np.float32), clip=1e9,
                    noise_std=0.0)  # fmt: skip
    step = train.make_train_step(graphdef, tx, mesh)
    plain = jax.device_get(step(state, parallel.shard_batch(batch, mesh), None)[0]["params"])
    for x, y in zip(jax.tree.leaves(dp), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("micro", [None, 4])
def test_eight_devices_match_one_under_dp_with_a_fixed_noise_seed(micro):
    plan = budget.plan(_dp_config(epsilon=3.0), rows=400, train_rows=400, batch_size=BATCH,
                       steps=3)  # fmt: skip
    tokens = np.concatenate([_batch(s) for s in range(50)])
    finals = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = parallel.make_mesh(devices)
        graphdef, tx, state = _setup(mesh)
        stepper = dpsgd.make_stepper(graphdef, tx, mesh, tokens, plan, seed=123, legal=None,
                                     dropout=False, loss_fn=train.flow_loss,
                                     microbatch_size=micro)  # fmt: skip
        for i in range(3):
            state, metrics = stepper(state, i)
        finals.append(jax.device_get(state["params"]))
    for x, y in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1]), strict=True):
        np.testing.assert_allclose(x, y, atol=5e-5, rtol=0)
    # and the noise is there: another seed gives other parameters
    mesh = parallel.make_mesh(jax.devices()[:1])
    graphdef, tx, state = _setup(mesh)
    stepper = dpsgd.make_stepper(graphdef, tx, mesh, tokens, plan, seed=124, legal=None,
                                 dropout=False, loss_fn=train.flow_loss)  # fmt: skip
    for i in range(3):
        state, _ = stepper(state, i)
    assert _diff_norm(jax.device_get(state["params"]), finals[0]) > 1e-3


@pytest.mark.slow
def test_dp_run_end_to_end_records_its_budget_and_refuses_to_overspend(tmp_path, caplog):
    config = _dp_config("rnn", epsilon=3.0, noise_seed=0)
    config.update(num_steps=20, batch_size=32)
    config.data.fraction = 1.0
    table = io.load_flows("lab", derive=False, identities=False).frame
    table.loc[7, "label"], table.loc[8, "flow_duration"] = "SENTINEL_51c0", 987654.321
    data = tmp_path / "lab_with_sentinels.csv"
    table.to_csv(data, index=False)
    mesh = parallel.make_mesh(jax.devices()[:1])
    metrics = train.train_and_evaluate(config, tmp_path, data=data, mesh=mesh)
    record = json.loads((tmp_path / budget.PRIVACY_FILE).read_text())
    assert record == metrics["privacy"]
    assert record["spent"]["steps"] == 20 and record["plan"]["steps"] == 20
    assert 2.9 <= record["spent"]["total"]["epsilon"] <= 3.0 + 1e-6
    assert record["plan"]["rows"] > record["plan"]["batch_size"]
    gen = generate.load_generator(tmp_path, devices=jax.devices()[:1])
    assert gen.privacy == record["plan"]  # the checkpoint carries the plan
    meta = checkpoint.read_meta(checkpoint.make_manager(tmp_path, save_every=10, keep=2), 20)
    assert meta["data"] is None  # the table's hash stays out of a DP checkpoint
    assert meta["config"]["dp"]["noise_seed"] == -1  # and so does a fixed noise seed
    text = json.dumps(meta)
    assert "SENTINEL_51c0" not in text and "987654.321" not in text  # one row's values
    with caplog.at_level("INFO"):
        frame = generate.generate_to_files(gen, 64, tmp_path / "out.csv", batch_size=32)
    assert "trained with differential privacy: epsilon 3" in caplog.text
    assert len(pd.read_csv(frame)) == 64
    config.num_steps = 40  # resuming for more steps would spend more than recorded
    with pytest.raises(ValueError, match="steps 20 -> 40"):
        train.train_and_evaluate(config, tmp_path, data=data, mesh=mesh)


def test_likelihood_attack_finds_members_only_where_the_model_knows_them(tmp_path):
    config = pipeline.model_config("bigram", "tiny")
    gen, prepared, _ = pipeline.fit(config, "lab", tmp_path)
    splits = prepared.splits
    copies = dataclasses.replace(splits, test=splits.train)  # "held-out" rows that are members
    assert tradeoff.likelihood_attack(gen, copies) == pytest.approx(0.5)
    assert tradeoff.likelihood_attack(gen, splits) > 0.5  # a bigram table favours its own rows
    shuffled = splits.test.copy()  # held-out flows whose symbols the model never saw in order
    np.random.default_rng(0).permuted(shuffled[:, 1:], axis=1, out=shuffled[:, 1:])
    strangers = dataclasses.replace(splits, test=shuffled)
    assert tradeoff.likelihood_attack(gen, strangers) > 0.95
