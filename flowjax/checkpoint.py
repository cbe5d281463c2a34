"""Checkpoints: orbax V0 CheckpointManager with Composite(state=StandardSave, meta=JsonSave).

A checkpoint directory alone is enough to sample from: next to the train state
(params, optimizer state, BatchNorm statistics, step) it holds JSON metadata
with the config, the fitted tokenizer, the schema and the vocabulary size and
sentence length. Saves are asynchronous and committed atomically by orbax; the
last `keep` are kept. Arrays are restored onto whatever mesh the caller passes,
so a checkpoint written on 8 devices restores on 1.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from flowjax import parallel
from flowjax.models import build_model, model_config_from
from flowjax.schema import Schema
from flowjax.tokenizer import FlowTokenizer

SUBDIR = "checkpoints"


@dataclasses.dataclass(frozen=True)
class Bundle:
    """What inference needs: the model split into graphdef/params/rest, plus its data edges."""

    graphdef: nnx.GraphDef
    params: nnx.State
    rest: nnx.State  # BatchNorm running statistics (empty for models without BatchNorm)
    tokenizer: FlowTokenizer
    config: ml_collections.ConfigDict
    schema: Schema
    step: int


def checkpoint_dir(workdir: str | os.PathLike) -> Path:
    """Where the checkpoints of a run live: `<workdir>/checkpoints`."""
    return Path(workdir).resolve() / SUBDIR


def make_manager(
    workdir: str | os.PathLike, *, save_every: int = 1, keep: int = 3, read_only: bool = False
) -> ocp.CheckpointManager:
    """An orbax manager that saves every `save_every` steps and keeps the latest `keep`."""
    if save_every < 1 or keep < 1:
        raise ValueError(f"checkpoint_every={save_every} and keep={keep} must be >= 1")
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
        preservation_policy=ocp.checkpoint_managers.LatestN(keep),
        enable_async_checkpointing=True,
        create=not read_only,
        read_only=read_only,
    )
    # Naming the handlers lets a fresh manager read the stored tree's metadata.
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_handlers=handlers)


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: dict[str, Any],
    meta: dict[str, Any],
    *,
    force: bool = False,
) -> bool:
    """Starts an asynchronous save of `state` (a pytree of arrays) and `meta` (JSON); see orbax."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    return manager.save(step, args=args, force=force)


def abstract_on(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """The tree's shapes and dtypes as ShapeDtypeStructs on `sharding` (restore targets)."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def restore(
    manager: ocp.CheckpointManager, abstract_state: Any, *, step: int | None = None
) -> tuple[Any, dict[str, Any]]:
    """Restores (state, meta) at `step` (default: the latest) shaped like `abstract_state`.

    Args:
      manager: from `make_manager`.
      abstract_state: the train state's structure with ShapeDtypeStruct leaves
        carrying the target shardings (`abstract_on`).
      step: the step to restore.

    Returns:
      The restored state (same structure) and the metadata dict.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise ValueError(f"{manager.directory}: no checkpoint to restore")
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
    )
    restored = manager.restore(step, args=args)
    return restored.state, restored.meta


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """The JSON metadata saved with the checkpoint at `step`, without reading any array."""
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def load_for_inference(
    workdir: str | os.PathLike,
    *,
    step: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Bundle:
    """Rebuilds the model of a run from its checkpoint directory alone.

    The optimizer state is read as plain arrays and dropped, so this needs no
    optimizer config. Parameters are replicated over `mesh` (default: all devices).

    Args:
      workdir: the run directory given to training (holding `checkpoints/`).
      step: the step to load (default: the latest).
      mesh: the mesh to place the parameters on.

    Returns:
      The Bundle (graphdef, params, rest, tokenizer, config, schema, step).
    """
    path = checkpoint_dir(workdir)
    if not path.is_dir():
        raise ValueError(f"{workdir}: no checkpoint directory {path}")
    manager = make_manager(workdir, read_only=True)
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"{path}: holds no finished checkpoint")
        meta = read_meta(manager, step)
        config = ml_collections.ConfigDict(meta["config"])
        abstract_model = nnx.eval_shape(
            lambda: build_model(
                model_config_from(config.model),
                vocab_size=meta["vocab_size"],
                seq_len=meta["seq_len"],
                rngs=nnx.Rngs(0),
            )
        )
        graphdef, params, rest = nnx.split(abstract_model, nnx.Param, ...)
        sharding = parallel.replicated(mesh or parallel.make_mesh())
        # The stored optimizer state keeps its stored structure (read and dropped).
        target = dict(manager.item_metadata(step)["state"])
        target = abstract_on(target, sharding)
        target["params"] = abstract_on(params, sharding)
        target["rest"] = abstract_on(rest, sharding)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(target))
        state = manager.restore(step, args=args).state
    finally:
        manager.close()
    return Bundle(
        graphdef=graphdef,
        params=state["params"],
        rest=state["rest"],
        tokenizer=FlowTokenizer.from_json(meta["tokenizer"]),
        config=config,
        schema=Schema.from_json(meta["schema"]),
        step=int(step),
    )
