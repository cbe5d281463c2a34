"""Training: flows -> sentences -> a data-parallel, checkpointed language-model training loop.

The loss is the paper's: cross-entropy summed over the symbols of a flow,
averaged over flows, on flow-aligned sentences (start symbol + one symbol per
column). One jitted, donated train step runs on a one-axis 'data' mesh: the
state is replicated, the global batch is split over every device. Batches are a
pure function of (seed, step) (`flowjax.data.batch_indices`), so a run started
again on the same workdir resumes from the latest checkpoint that reads and
continues the same loss curve. Each checkpoint records a fingerprint of the table
it was trained on; resuming on another table needs `allow_new_data`. Training can
stop early (`early_stopping_patience`, `time_budget_s`, each saving the step
reached) and keep its best checkpoint for inference (`keep_best`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from flax import nnx

import flowjax
from flowjax import checkpoint, largedata, parallel, traces
from flowjax.configs import sized_for_data
from flowjax.data import Prepared, batch_indices, data_fingerprint, encode_table, load_table
from flowjax.models import ModelConfig, Windows, build_model, head_windows, heads, model_config_from
from flowjax.privacy import budget, dpsgd
from flowjax.tokenizer import START

TrainState = dict[str, Any]  # {'params', 'rest', 'opt_state', 'step'}


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """Optimizer settings (see flowjax/configs/common.py)."""

    name: str
    learning_rate: float
    warmup_steps: int
    min_lr_ratio: float
    weight_decay: float
    b1: float
    b2: float
    clip_norm: float

    def __post_init__(self):
        if self.name not in ("adamw", "sgd"):
            raise ValueError(f"config.optimizer.name must be 'adamw' or 'sgd', got {self.name!r}")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.clip_norm < 0:
            raise ValueError(f"config.optimizer has a negative or zero setting: {self}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The loop settings of a config, checked once and frozen."""

    batch_size: int
    num_steps: int
    eval_every: int
    eval_batch_size: int
    eval_max_rows: int
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    seed: int
    mask_logits: bool
    early_stopping_patience: int
    keep_best: bool
    time_budget_s: float
    optimizer: OptimizerConfig

    def __post_init__(self):
        for name in ("batch_size", "num_steps", "eval_every", "eval_batch_size", "log_every",
                     "checkpoint_every", "keep_checkpoints"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"config.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_max_rows < 0:
            raise ValueError(f"config.eval_max_rows must be >= 0 (0: all), "
                             f"got {self.eval_max_rows}")  # fmt: skip
        if self.early_stopping_patience < 0:
            raise ValueError(
                f"config.early_stopping_patience must be >= 0 (0: off), "
                f"got {self.early_stopping_patience}"
            )
        if not 0 <= self.time_budget_s < math.inf:
            raise ValueError(
                f"config.time_budget_s must be finite and >= 0 (0: off), got {self.time_budget_s}"
            )

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)} - {"optimizer"}
        return cls(
            **{k: config[k] for k in fields},
            optimizer=OptimizerConfig(**config.optimizer.to_dict()),
        )


def _describe_data(fingerprint: dict[str, Any]) -> str:
    return (f"{fingerprint['rows']} rows, {len(fingerprint['columns'])} columns, hash "
            f"{fingerprint['sha256'][:12]} ({fingerprint['source']})")  # fmt: skip


def check_same_data(
    saved: dict[str, Any] | None, current: dict[str, Any], *, where: str, allow_new_data: bool
) -> None:
    """Refuses to resume a checkpoint on other data than it was trained on, unless allowed.

    Checkpoints written before fingerprints were recorded (`saved` is None) pass.
    """
    keys = ("rows", "columns", "sha256")
    if saved is None or all(saved[k] == current[k] for k in keys):
        return
    message = (f"{where} was trained on other data: {_describe_data(saved)}; the data given now "
               f"is {_describe_data(current)}")  # fmt: skip
    if not allow_new_data:
        raise ValueError(
            f"{message}. Use a new workdir to train on this data, or pass --allow_new_data "
            "(allow_new_data=True) to continue training this checkpoint on it."
        )
    logging.warning("%s; continuing on the new data (allow_new_data)", message)


def learning_rate_schedule(opt: OptimizerConfig, num_steps: int) -> optax.Schedule:
    """Linear warm-up to the peak, then cosine decay to `min_lr_ratio` x peak at `num_steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if opt.warmup_steps else opt.learning_rate,
        peak_value=opt.learning_rate,
        warmup_steps=opt.warmup_steps,
        decay_steps=max(num_steps, opt.warmup_steps + 1),
        end_value=opt.learning_rate * opt.min_lr_ratio,
    )


def make_optimizer(opt: OptimizerConfig, num_steps: int) -> optax.GradientTransformation:
    """AdamW (or plain SGD, the study's WaveNet) on the schedule, after global-norm clipping."""
    lr = learning_rate_schedule(opt, num_steps)
    if opt.name == "sgd":
        tx = optax.sgd(lr)
    else:
        tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
    return optax.chain(optax.clip_by_global_norm(opt.clip_norm), tx) if opt.clip_norm else tx


def sequence_loss(
    logits: jax.Array, targets: jax.Array, legal: jax.Array | None = None
) -> jax.Array:
    """Cross-entropy summed over the symbols of each flow.

    Args:
      logits: float32 [B, T, V] (position t predicts symbol t + 1).
      targets: int32 [B, T], the sentences without their start symbol.
      legal: optional bool [T, V]; illegal tokens get no probability.

    Returns:
      float32 [B], nats per flow.
    """
    if legal is not None:
        logits = jnp.where(legal, logits, -1e9)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).sum(axis=-1)


def model_loss(
    model: nnx.Module,
    batch: jax.Array,
    legal: jax.Array | None,
    *,
    train: bool,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """Teacher-forced nats per flow, float32 [B], of sentences int32 [B, 1+F] (either head),
    or of trace-mode windows of sentences (the sum over the window / its flows)."""
    kwargs = {} if dropout_key is None else {"dropout_key": dropout_key}
    logits = model(batch[:, :-1], train=train, **kwargs)
    nats = sequence_loss(logits, *heads.localize(heads.windows_of(model), batch[:, 1:], legal))
    return nats / jnp.sum(batch == START, axis=1)  # START begins each flow and is no other token


def init_state(
    model_cfg: ModelConfig,
    tx: optax.GradientTransformation,
    *,
    vocab_size: int,
    seq_len: int,
    seed: int,
    sharding: jax.sharding.Sharding | None = None,
    windows: Windows | None = None,
    context: int = 0,
) -> tuple[nnx.GraphDef, TrainState]:
    """Builds the model (with the per-column head over `windows` if given); returns its
    graphdef and the initial train state.

    The state is created by one jitted function (one compilation rather than one
    per initialiser), directly with `sharding` when given.
    """

    def create():
        model = build_model(model_cfg, vocab_size=vocab_size, seq_len=seq_len,
                            rngs=nnx.Rngs(seed), windows=windows, context=context)  # fmt: skip
        return nnx.split(model, nnx.Param, ...)

    graphdef = nnx.eval_shape(create)[0]

    def create_state():
        _, params, rest = create()
        return {"params": params, "rest": rest, "opt_state": tx.init(params), "step": jnp.int32(0)}

    return graphdef, jax.jit(create_state, out_shardings=sharding)()


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    *,
    seed: int = 0,
    dropout: bool = False,
):
    """The jitted, donated step `(state, batch int32[B, 1+F], legal) -> (state, metrics)`.

    With `dropout` the model gets the key fold_in(key(seed), step) (a function of the
    seed and step only, so a resumed run draws the same masks).
    """

    def train_step(state: TrainState, batch: jax.Array, legal: jax.Array | None):
        key = jax.random.fold_in(jax.random.key(seed), state["step"]) if dropout else None

        def loss_fn(params):
            # copy=True: BatchNorm updates its statistics on a fresh module inside this trace.
            model = nnx.merge(graphdef, params, state["rest"], copy=True)
            loss = model_loss(model, batch, legal, train=True, dropout_key=key).mean()
            return loss, nnx.split(model, nnx.Param, ...)[2]

        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {
            "params": optax.apply_updates(state["params"], updates),
            "rest": rest,
            "opt_state": opt_state,
            "step": state["step"] + 1,
        }
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
    return jax.jit(
        train_step,
        in_shardings=(repl, data, repl),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )


def make_row_loss_fn(graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh, *, batch_size: int):
    """Returns `row_losses(params, rest, tokens int32[n, 1+F], legal) -> float32 [n]`, each
    row's nats per flow in evaluation mode.

    The last chunk is padded to `batch_size` with copies of its first row (dropped from the
    result), so one shape compiles.
    """
    repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)

    def losses(params, rest, batch, legal):
        model = nnx.merge(graphdef, params, rest, copy=True)
        return model_loss(model, batch, legal, train=False)

    p_losses = jax.jit(losses, in_shardings=(repl, repl, data, repl), out_shardings=repl)

    def row_losses(params, rest, tokens: np.ndarray, legal: jax.Array | None) -> np.ndarray:
        out = []
        for start in range(0, len(tokens), batch_size):
            chunk = np.asarray(tokens[start : start + batch_size], dtype=np.int32)
            padded = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - len(chunk), 0)])
            nats = p_losses(params, rest, parallel.shard_batch(padded, mesh), legal)
            out.append(np.asarray(jax.device_get(nats))[: len(chunk)])
        return np.concatenate(out)

    return row_losses


def make_eval_fn(graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh, *, batch_size: int):
    """Returns `evaluate(state, tokens int32[n, 1+F], legal) -> mean nats per flow`."""
    row_losses = make_row_loss_fn(graphdef, mesh, batch_size=batch_size)

    def evaluate(state: TrainState, tokens: np.ndarray, legal: jax.Array | None) -> float:
        nats = row_losses(state["params"], state["rest"], tokens, legal)
        return float(np.mean(nats, dtype=np.float64))

    return evaluate


def _public_config(config: ml_collections.ConfigDict) -> dict:
    """The config a checkpoint carries; a DP run's noise seed is kept out (it would void the
    guarantee for anyone holding the checkpoint)."""
    out = config.to_dict()
    if budget.enabled(config):
        out["dp"]["noise_seed"] = -1
    return out


def flow_loss(model: nnx.Module, rows: jax.Array, legal, dropout_key) -> jax.Array:
    """Training-mode nats per flow of `rows` (the DP step's per-flow loss)."""
    return model_loss(model, rows, legal, train=True, dropout_key=dropout_key)


def _plain_stepper(p_train, tokens: np.ndarray, batch_rows: int, seed: int, mesh, legal):
    """The ordinary step as `(state, index) -> (state, metrics)`: the batch of (seed, index),
    of which each process reads only the rows its devices hold."""

    def run_step(state: TrainState, index: int):
        rows = batch_indices(len(tokens), step=index, batch_size=batch_rows, seed=seed)
        return p_train(state, parallel.shard_gather(tokens, rows, mesh, dtype=np.int32), legal)

    return run_step


def _token_files(config: ml_collections.ConfigDict, data, token_dir: Path, tokenizer_json):
    """The run's data from memory-mapped token files (`flowjax.largedata`, for tables larger
    than memory): process 0 writes them, or finds them complete; the others then reopen them."""
    if not parallel.is_main_process():
        parallel.barrier("token_files", timeout_s=_TOKENIZE_WAIT_S)
    prep = largedata.prepare(config, data, token_dir=token_dir, tokenizer_json=tokenizer_json)
    if parallel.is_main_process():
        parallel.barrier("token_files", timeout_s=_TOKENIZE_WAIT_S)
    return prep


def _write_privacy(workdir: str, plan: budget.Plan, *, steps_done: int) -> dict[str, Any]:
    """The privacy record after `steps_done` steps, written to the workdir by process 0."""
    if parallel.is_main_process():
        return budget.write(workdir, plan, steps_done=steps_done)
    return budget.record(plan, steps_done=steps_done)


def _check_finite(losses: list[float], first_step: int, workdir: str) -> None:
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(
            f"{workdir}: the training loss became non-finite within steps "
            f"[{first_step}, {first_step + len(losses) - 1}]"
        )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    data: str | os.PathLike,
    mesh: jax.sharding.Mesh | None = None,
    allow_new_data: bool = False,
) -> dict[str, Any]:
    """Trains the configured model on `data` and returns its final metrics (see `train_model`)."""
    return train_model(config, workdir, data=data, mesh=mesh, allow_new_data=allow_new_data)[0]


def train_model(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    data: str | os.PathLike,
    mesh: jax.sharding.Mesh | None = None,
    allow_new_data: bool = False,
) -> tuple[dict[str, Any], Prepared]:
    """Trains the configured model on `data`, checkpointing to `workdir`; resumes if possible.

    A resumed run starts from the newest checkpoint that reads, and only on the
    data that checkpoint was trained on (its fingerprint), unless `allow_new_data`.

    Args:
      config: a config from `flowjax/configs/<family>.py` (a ConfigDict).
      workdir: the run directory; checkpoints go to `<workdir>/checkpoints`.
      data: a flow file or a dataset name.
      mesh: the device mesh (default: a 'data' axis over every device).
      allow_new_data: resume a checkpoint on other data than it was trained on (a warning).

    Returns:
      Final metrics: step, train_loss and val_loss (nats per flow),
      val_bits_per_column, tokens_per_second, num_params, vocab_size, seq_len,
      checkpoint_dir, history (one {step, train_loss[, val_loss]} per log point
      of this call; train_loss is the mean since the previous one), stopped (why
      the loop ended: 'num_steps', 'early_stopping' or 'time_budget') and
      best_step (the kept best checkpoint with keep_best, else the evaluated step
      of this call with the lowest val_loss; None without one); and the prepared
      data the run trained on (its table, tokenizer and splits).
    """
    workdir = str(workdir)
    if budget.enabled(config):
        config = dpsgd.dp_config(config)
    tcfg = TrainConfig.from_config(config)
    model_config_from(config.model)  # a bad model config fails before any data is read
    mesh = mesh or parallel.make_mesh()
    parallel.check_batch_size(tcfg.batch_size, mesh)
    manager = checkpoint.make_manager(
        workdir, save_every=tcfg.checkpoint_every, keep=tcfg.keep_checkpoints,
        keep_best=tcfg.keep_best,
    )  # fmt: skip
    try:
        return _train(config, tcfg, workdir, data, mesh, manager, allow_new_data)
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        raise RuntimeError(
            f"process {jax.process_index()} of {jax.process_count()}: a collective with the "
            f"other processes failed; one of them died or lost its connection ({e})"
        ) from e
    finally:  # a failing run still finishes the saves it started
        manager.wait_until_finished()
        manager.close()


def _train(
    config, tcfg, workdir, data, mesh, manager, allow_new_data
) -> tuple[dict[str, Any], Prepared]:
    """The body of `train_model`: set-up, optional resume, the loop, final metrics."""
    repl = parallel.replicated(mesh)
    latest, saved_meta = checkpoint.resume_point(manager, repl)
    private = budget.enabled(config)

    def check_data(fingerprint: dict[str, Any]) -> None:  # a resumed run: the same table
        if saved_meta:
            where = f"the checkpoint {checkpoint.checkpoint_dir(workdir) / str(latest)}"
            saved_data = budget.read_fingerprint(workdir) if private else saved_meta.get("data")
            check_same_data(saved_data, fingerprint, where=where, allow_new_data=allow_new_data)

    tokenizer_json = saved_meta and saved_meta["tokenizer"]
    if largedata.enabled(config, data):
        prep = _token_files(config, data, Path(workdir) / "tokens", tokenizer_json)
        fingerprint = prep.fingerprint
        check_data(fingerprint)
    else:
        frame, schema = load_table(config, data)
        fingerprint = data_fingerprint(frame, data)
        check_data(fingerprint)
        prep = encode_table(config, frame, schema, source=data, tokenizer_json=tokenizer_json,
                            schema_json=saved_meta and saved_meta["schema"])  # fmt: skip
    tok, splits = prep.tokenizer, prep.splits
    config = sized_for_data(config, len(splits.train_idx))  # stored in the checkpoint as resolved
    model_cfg = model_config_from(config.model)
    if saved_meta and model_config_from(saved_meta["config"]["model"]) != model_cfg:
        raise ValueError(f"{workdir}: its checkpoint has another model config; use a new workdir")
    vocab, seq_len = tok.vocab_size, tok.seq_len
    tx = make_optimizer(tcfg.optimizer, tcfg.num_steps)
    windows = head_windows(config, tok.legal_mask())
    graphdef, state = init_state(model_cfg, tx, vocab_size=vocab, seq_len=seq_len,
                                 seed=tcfg.seed, sharding=repl, windows=windows,
                                 context=traces.model_context(config, seq_len))  # fmt: skip
    num_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    if latest is not None:
        state, _ = checkpoint.restore(manager, checkpoint.abstract_on(state, repl), step=latest)
        logging.info("resumed from %s at step %d", checkpoint.checkpoint_dir(workdir), latest)
    meta = {
        "config": _public_config(config),
        "tokenizer": tok.to_json(),
        "schema": prep.schema.to_json(),
        "vocab_size": vocab,
        "seq_len": seq_len,
        "columns": list(tok.columns),
        # Under DP the table's hash stays in the workdir, out of the checkpoint.
        "data": None if private else fingerprint,
        "flowjax_version": flowjax.__version__,
    }
    logging.info(
        "%s: %d params, vocab %d, sentence length %d, %d/%d/%d train/val/test flows, %d devices",
        model_cfg.name, num_params, vocab, seq_len, len(splits.train), len(splits.val),
        len(splits.test), mesh.devices.size,
    )  # fmt: skip
    row_len = splits.train.shape[1]  # 1 + F, or a trace-mode window of sentences
    legal_mask = traces.stream_legal(tok.legal_mask(), row_len // seq_len)
    legal = jax.device_put(legal_mask[1:], repl) if tcfg.mask_logits else None
    dropout = getattr(model_cfg, "dropout", 0.0) > 0
    n_dev = mesh.devices.size
    flows_per_row = row_len // seq_len  # trace mode: batch sizes count flows, rows are windows
    batch_rows = _rows(tcfg.batch_size, flows_per_row, n_dev)
    start = int(state["step"])
    if private:
        plan = budget.plan(config, rows=prep.private_rows, train_rows=len(splits.train),
                           batch_size=batch_rows, steps=tcfg.num_steps)  # fmt: skip
        budget.check_resume(workdir, plan)
        meta["privacy"] = plan.to_dict()
        privacy = _write_privacy(workdir, plan, steps_done=start)
        if parallel.is_main_process():
            budget.write_fingerprint(workdir, fingerprint)
        micro = dpsgd.microbatch(config.dp.microbatch)
        run_step = dpsgd.make_stepper(graphdef, tx, mesh, splits.train, plan, legal=legal,
                                      seed=budget.noise_seed(config), dropout=dropout,
                                      loss_fn=flow_loss, microbatch_size=micro)  # fmt: skip
        logging.info("differential privacy: %s", budget.describe(plan))
    else:
        run_step = _plain_stepper(make_train_step(graphdef, tx, mesh, seed=tcfg.seed,
                                                  dropout=dropout),
                                  splits.train, batch_rows, tcfg.seed, mesh, legal)  # fmt: skip
    most = max(1, tcfg.eval_max_rows // flows_per_row) if tcfg.eval_max_rows else 0
    val = _spread(splits.val, most)
    eval_bs = min(_rows(tcfg.eval_batch_size, flows_per_row, n_dev), -(-len(val) // n_dev) * n_dev)
    parallel.check_batch_size(eval_bs, mesh, flag="eval_batch_size")
    evaluate = make_eval_fn(graphdef, mesh, batch_size=eval_bs)
    schedule = learning_rate_schedule(tcfg.optimizer, tcfg.num_steps)
    tokens_per_step = batch_rows * (row_len - 1)
    step = start
    pending: list[dict[str, jax.Array]] = []
    history: list[dict[str, float]] = []
    rates: list[float] = []
    stopped = "num_steps"
    clock = loop_start = time.perf_counter()
    # A bar on the main process's console only (None: off when stderr is not a terminal).
    bar = tqdm.tqdm(total=tcfg.num_steps, initial=start, unit="step", desc=model_cfg.name,
                    disable=None if parallel.is_main_process() else True)  # fmt: skip
    with jax.set_mesh(mesh), bar:
        for step in range(start + 1, tcfg.num_steps + 1):
            state, metrics = run_step(state, step - 1)
            pending.append(metrics)
            bar.update()
            stop = _stop_reason(step, tcfg, _time_is_up(tcfg, step, loop_start))
            due_eval = step % tcfg.eval_every == 0 or stop is not None
            due_save = (
                manager.should_save(step) or stop is not None or (tcfg.keep_best and due_eval)
            )
            if not (step % tcfg.log_every == 0 or due_eval or due_save):
                continue
            # Fetch the metrics of the steps since the last log point (checked before any save).
            fetched = jax.device_get(pending)
            pending = []
            losses = [float(m["loss"]) for m in fetched]
            _check_finite(losses, step - len(losses) + 1, workdir)
            rate = tokens_per_step * len(losses) / (time.perf_counter() - clock)
            if step - len(losses) > start:  # the first interval includes compilation
                rates.append(rate)
            history.append({"step": step, "train_loss": float(np.mean(losses))})
            bar.set_postfix({"loss": f"{history[-1]['train_loss']:.3f}",
                             "tokens/s": f"{rate:.0f}"}, refresh=False)  # fmt: skip
            _log_above_bar(
                "step %d/%d: train loss %.3f nats/flow, grad norm %.3g, lr %.3g, %.0f tokens/s",
                step, tcfg.num_steps, history[-1]["train_loss"], float(fetched[-1]["grad_norm"]),
                float(schedule(step - 1)), rate,
            )  # fmt: skip
            tracked = None  # the orbax metrics of this step's checkpoint
            if due_eval:
                history[-1]["val_loss"] = evaluate(state, val, legal)
                tracked = {"val_loss": history[-1]["val_loss"]}
                _log_above_bar(
                    "step %d: val loss %.3f nats/flow, %.4f bits/column", step,
                    history[-1]["val_loss"], _bits_per_column(history[-1]["val_loss"], seq_len),
                )  # fmt: skip
                if stop is None and _patience_ran_out(history, tcfg.early_stopping_patience):
                    stop = "early_stopping"
            if due_save or stop is not None:
                checkpoint.save(manager, step, state, meta, metrics=tracked, force=True)
                if private:
                    privacy = _write_privacy(workdir, plan, steps_done=step)
            clock = time.perf_counter()
            if stop is not None:
                stopped = stop
                if stop != "num_steps":
                    _log_above_bar("stopping at step %d/%d: %s", step, tcfg.num_steps,
                                   _STOP_REASONS[stop])  # fmt: skip
                break
    val_loss = history[-1]["val_loss"] if history else evaluate(state, val, legal)
    metrics = {
        "step": int(step),
        "train_loss": history[-1]["train_loss"] if history else float("nan"),
        "val_loss": val_loss,
        "val_bits_per_column": _bits_per_column(val_loss, seq_len),
        "tokens_per_second": float(np.mean(rates)) if rates else float("nan"),
        "num_params": num_params,
        "vocab_size": vocab,
        "seq_len": seq_len,
        "checkpoint_dir": str(checkpoint.checkpoint_dir(workdir)),
        "history": history,
        "stopped": stopped,
        "best_step": manager.best_step() if tcfg.keep_best else _best_evaluated_step(history),
    }
    if private:
        metrics["privacy"] = privacy  # written at the last save: every run ends on one
    return metrics, prep


_TOKENIZE_WAIT_S = 6 * 3600  # the other processes wait this long for process 0's token files

_STOP_REASONS = {
    "early_stopping": "the validation loss stopped improving (early_stopping_patience)",
    "time_budget": "the time budget is spent (time_budget_s)",
}


def _stop_reason(step: int, tcfg: TrainConfig, time_is_up: bool) -> str | None:
    """Why the loop ends after `step` ('num_steps' or 'time_budget'), or None to go on."""
    if step >= tcfg.num_steps:
        return "num_steps"
    if time_is_up:
        return "time_budget"
    return None


def _time_is_up(tcfg: TrainConfig, step: int, loop_start: float) -> bool:
    """Whether `time_budget_s` is spent. With several processes, process 0's clock decides,
    read at log points only (one collective each), so that every process stops at one step."""
    if not tcfg.time_budget_s:
        return False
    spent = time.perf_counter() - loop_start >= tcfg.time_budget_s
    if jax.process_count() == 1:
        return spent
    return step % tcfg.log_every == 0 and parallel.agree(spent)


def _patience_ran_out(history: list[dict[str, float]], patience: int) -> bool:
    """Whether the last `patience` evaluations (0: off) all failed to beat the best before them."""
    val_losses = [h["val_loss"] for h in history if "val_loss" in h]
    return bool(patience) and len(val_losses) - 1 - int(np.argmin(val_losses)) >= patience


def _best_evaluated_step(history: list[dict[str, float]]) -> int | None:
    """The step of the lowest val_loss in `history`, or None when nothing was evaluated."""
    evaluated = [h for h in history if "val_loss" in h]
    return min(evaluated, key=lambda h: h["val_loss"])["step"] if evaluated else None


def _log_above_bar(message: str, *args: Any) -> None:
    """Logs at INFO with any progress bar cleared first and redrawn after."""
    with tqdm.tqdm.external_write_mode(file=sys.stderr):
        logging.info(message, *args, stacklevel=2)  # reports the caller's line


def _spread(rows: np.ndarray, most: int) -> np.ndarray:
    """At most `most` rows (0: all), evenly spaced: the splits are in table (or stream) order."""
    if not most or len(rows) <= most:
        return rows
    return rows[np.linspace(0, len(rows) - 1, most).astype(np.int64)]


def _rows(flows: int, flows_per_row: int, n_dev: int) -> int:
    """Rows of a batch of `flows` flows: trace-mode windows of `flows_per_row` (at least one
    per device, a multiple of the device count); sentences in row mode."""
    if flows_per_row == 1:
        return flows
    return max(1, flows // flows_per_row // n_dev) * n_dev


def _bits_per_column(nats_per_flow: float, seq_len: int) -> float:
    return nats_per_flow / (seq_len - 1) / math.log(2)
