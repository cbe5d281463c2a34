"""Checkpoints: orbax V0 CheckpointManager with Composite(state=StandardSave, meta=JsonSave).

A checkpoint directory alone is enough to sample from: next to the train state
(params, optimizer state, BatchNorm statistics, step) it holds JSON metadata
with the config, the fitted tokenizer, the schema and the vocabulary size and
sentence length. Saves are asynchronous and committed atomically by orbax; the
last `keep` are kept, and with `keep_best` also the one of lowest validation
loss (orbax metrics `{"val_loss": ...}`), which inference then loads. Arrays are
restored onto whatever mesh the caller passes, so a checkpoint written on 8
devices restores on 1. A step that no longer reads
(a truncated file, a half-copied folder) is skipped for the newest one that does.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging as std_logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from flowjax import parallel, traces
from flowjax.models import build_model, head_windows, model_config_from
from flowjax.schema import Schema
from flowjax.tokenizer import FlowTokenizer

SUBDIR = "checkpoints"
ASIDE_SUFFIX = ".unreadable"  # not a step name, so orbax no longer lists a step set aside
T = TypeVar("T")


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
    privacy: dict | None = None  # a DP run's plan (flowjax.privacy.budget.Plan), else None


def checkpoint_dir(workdir: str | os.PathLike) -> Path:
    """Where the checkpoints of a run live: `<workdir>/checkpoints`."""
    return Path(workdir).resolve() / SUBDIR


def workdir_of(path: str | os.PathLike) -> Path:
    """The run directory of `path`: `path` itself, or its parent if `path` is its checkpoints."""
    path = Path(path).resolve()
    if path.name == SUBDIR and not (path / SUBDIR).is_dir():
        return path.parent
    return path


def _val_loss(metrics: dict[str, Any]) -> float:
    return metrics["val_loss"]


def _preservation(keep: int, keep_best: bool) -> ocp.checkpoint_managers.PreservationPolicy:
    """The latest `keep` steps, and with `keep_best` also the one of lowest val_loss."""
    latest = ocp.checkpoint_managers.LatestN(keep)
    if not keep_best:
        return latest
    # BestN keeps the last n after sorting; reverse=True sorts descending, so the lowest is last.
    best = ocp.checkpoint_managers.BestN(
        get_metric_fn=_val_loss, reverse=True, n=1, keep_checkpoints_without_metrics=False
    )
    return ocp.checkpoint_managers.AnyPreservationPolicy([latest, best])


def make_manager(
    workdir: str | os.PathLike,
    *,
    save_every: int = 1,
    keep: int = 3,
    keep_best: bool = False,
    read_only: bool = False,
) -> ocp.CheckpointManager:
    """An orbax manager that saves every `save_every` steps and keeps the latest `keep`.

    With `keep_best` it also writes the metrics given to `save` and keeps the step of
    lowest `val_loss` (`best_step`).
    """
    if save_every < 1 or keep < 1:
        raise ValueError(f"checkpoint_every={save_every} and keep={keep} must be >= 1")
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
        preservation_policy=_preservation(keep, keep_best),
        best_fn=_val_loss if keep_best else None,  # orbax writes metrics only when set
        best_mode="min",
        enable_async_checkpointing=True,
        create=not read_only,
        read_only=read_only,
        save_interval_steps=0 if read_only else 1,  # orbax warns of a read-only interval
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
    metrics: dict[str, float] | None = None,
    force: bool = False,
) -> bool:
    """Starts an asynchronous save of `state` (arrays), `meta` (JSON) and `metrics`; see orbax."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    return manager.save(step, args=args, metrics=metrics, force=force)


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


def read_stored(
    manager: ocp.CheckpointManager, step: int, *, sharding: jax.sharding.Sharding
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads every array (in its stored structure, onto `sharding`) and the metadata of `step`."""
    target = abstract_on(dict(manager.item_metadata(step)["state"]), sharding)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
    restored = manager.restore(step, args=args)
    return restored.state, restored.meta


def _describe(error: Exception) -> str:
    # TensorStore appends a long spec to its messages; the first sentence says what failed.
    text = str(error).strip().split(" See full TensorStore details")[0]
    return f"{type(error).__name__}: {(text.splitlines() or [''])[0][:200]}"


def newest_readable(
    manager: ocp.CheckpointManager,
    read: Callable[[int], T],
    *,
    steps: Sequence[int] | None = None,
) -> tuple[int, T]:
    """Returns `(step, read(step))` for the newest of `steps` (default: all) that reads.

    Each step that fails is logged as a warning naming its folder. A checkpoint
    can be half-written or damaged on disk (a copy cut short, a full disk), and
    an older one is better than none.

    Raises:
      ValueError: no step reads; names the checkpoints folder and the steps tried.
    """
    tried: list[int] = []
    error: Exception | None = None
    for step in sorted(manager.all_steps() if steps is None else steps, reverse=True):
        try:
            return step, read(step)
        except Exception as e:  # orbax and TensorStore raise many types (even bare Exception)
            tried.append(step)
            error = e
            logging.warning(
                "checkpoint %s cannot be read (%s); trying an older step. You may delete that "
                "folder.", Path(manager.directory) / str(step), _describe(e),
            )  # fmt: skip
    last = f"; last error {_describe(error)}" if error else ""
    raise ValueError(
        f"{manager.directory}: no checkpoint reads (tried steps {tried}{last}). "
        "Delete the unreadable step folders, or use another workdir."
    ) from error


def set_aside(manager: ocp.CheckpointManager, steps: Sequence[int]) -> None:
    """Renames step folders to `<step>.unreadable`, so that a resumed run can save those steps."""
    if not steps:
        return
    if parallel.is_main_process():  # the folders are shared; the others wait, then re-list
        for step in steps:
            folder = Path(manager.directory) / str(step)
            names = (f"{step}{ASIDE_SUFFIX}{i or ''}" for i in itertools.count())
            aside = next(folder.with_name(n) for n in names if not folder.with_name(n).exists())
            folder.rename(aside)
            logging.warning(
                "moved unreadable checkpoint %s to %s; you may delete it", folder, aside
            )
    ocp.multihost.sync_global_processes(f"flowjax_set_aside_{'_'.join(map(str, steps))}")
    manager.reload()


def resume_point(
    manager: ocp.CheckpointManager, sharding: jax.sharding.Sharding
) -> tuple[int | None, dict[str, Any] | None]:
    """The newest step that reads and its metadata, or (None, None) when there is none yet.

    Newer steps that do not read are set aside (`set_aside`): the resumed run saves them anew.
    """
    if not manager.all_steps():
        return None, None
    step, (_, meta) = newest_readable(
        manager, functools.partial(read_stored, manager, sharding=sharding)
    )
    set_aside(manager, [s for s in manager.all_steps() if s > step])
    return step, meta


def kept_best_step(manager: ocp.CheckpointManager) -> int | None:
    """The step of lowest val_loss if the run kept it (`keep_best` in its config), else None.

    The run's config is read from the newest step whose metadata reads; `manager`
    must come from `make_manager(..., keep_best=True)` to know the best step.
    """
    try:
        _, meta = newest_readable(manager, functools.partial(read_meta, manager))
    except ValueError:
        return None
    return manager.best_step() if meta["config"].get("keep_best") else None


def _read_bundle(manager: ocp.CheckpointManager, step: int, *, mesh: jax.sharding.Mesh) -> Bundle:
    """Reads the Bundle of `step`: the model rebuilt from its metadata, its parameters on `mesh`."""
    meta = read_meta(manager, step)
    config = ml_collections.ConfigDict(meta["config"])
    tokenizer = FlowTokenizer.from_json(meta["tokenizer"])
    abstract_model = nnx.eval_shape(
        lambda: build_model(
            model_config_from(config.model),
            vocab_size=meta["vocab_size"],
            seq_len=meta["seq_len"],
            rngs=nnx.Rngs(0),
            windows=head_windows(meta["config"], tokenizer.legal_mask()),
            context=traces.model_context(meta["config"], meta["seq_len"]),
        )
    )
    graphdef, params, rest = nnx.split(abstract_model, nnx.Param, ...)
    sharding = parallel.replicated(mesh)
    # The stored optimizer state keeps its stored structure (read and dropped).
    target = abstract_on(dict(manager.item_metadata(step)["state"]), sharding)
    target["params"] = abstract_on(params, sharding)
    target["rest"] = abstract_on(rest, sharding)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target))
    state = manager.restore(step, args=args).state
    return Bundle(
        graphdef=graphdef,
        params=state["params"],
        rest=state["rest"],
        tokenizer=tokenizer,
        config=config,
        schema=Schema.from_json(meta["schema"]),
        step=int(step),
        privacy=meta.get("privacy"),
    )


def load_for_inference(
    workdir: str | os.PathLike,
    *,
    step: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Bundle:
    """Rebuilds the model of a run from its checkpoint directory alone.

    The optimizer state is read as plain arrays and dropped, so this needs no
    optimizer config. Parameters are replicated over `mesh` (default: all devices).
    By default a run trained with `keep_best` loads its step of lowest validation
    loss, any other the latest step; a step that does not read is skipped for the
    newest that does (a warning).

    Args:
      workdir: the run directory given to training (holding `checkpoints/`), or
        that `checkpoints` folder itself.
      step: the step to load (default: the best kept, else the latest that reads).
      mesh: the mesh to place the parameters on.

    Returns:
      The Bundle (graphdef, params, rest, tokenizer, config, schema, step).
    """
    workdir = workdir_of(workdir)
    path = checkpoint_dir(workdir)
    if not path.is_dir():
        raise ValueError(f"{workdir}: no checkpoint directory {path}")
    manager = make_manager(workdir, keep_best=True, read_only=True)
    try:
        steps = manager.all_steps()
        if not steps:
            raise ValueError(f"{path}: holds no finished checkpoint")
        if step is not None and step not in steps:
            raise ValueError(f"{path}: no checkpoint at step {step} (steps: {list(steps)})")
        read = functools.partial(_read_bundle, manager, mesh=mesh or parallel.make_mesh())
        best = kept_best_step(manager) if step is None else None
        if best is not None:
            try:
                return read(best)
            except Exception as e:  # as in newest_readable: orbax raises many types
                logging.warning(
                    "best checkpoint %s cannot be read (%s); loading the newest that reads",
                    Path(manager.directory) / str(best), _describe(e),
                )  # fmt: skip
        return newest_readable(manager, read, steps=None if step is None else [step])[1]
    finally:
        manager.close()


def _no_orbax_info(record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_orbax_logs() -> None:
    """Drops orbax's INFO logs (each save, step by step, through absl); keeps its warnings."""
    logging.get_absl_logger().addFilter(_no_orbax_info)
