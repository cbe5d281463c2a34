"""The device mesh and shardings: pure data parallelism over one 'data' axis, single or multi-host.

Only this module knows the mesh. State is replicated (`P()`), batches are split
along their first axis (`P('data')`); jit inserts the collectives, so the loss
mean and the BatchNorm statistics cover the global batch with no pmean written
anywhere. The axis type is spelled out as Auto: the Explicit default of
`jax.make_mesh` rejects an embedding lookup on a sharded batch (docs/style.md 7.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
    timeout_s: int = 300,
    heartbeat_s: int = 60,
) -> None:
    """Joins a multi-process run through `jax.distributed.initialize`, before any device is used.

    With `coordinator_address`, `num_processes` and `process_id` (all three) it joins that
    run; with `auto` alone JAX finds the cluster by itself (TPU pods, Colab, SLURM); with
    neither it does nothing (one process). CPU processes exchange collectives through gloo.
    A process that cannot reach the others within `timeout_s` raises; one that stops
    answering for `heartbeat_s` ends the run of the others with an error rather than a hang.
    """
    given = (coordinator_address, num_processes, process_id)
    if all(x is None for x in given) and not auto:
        return
    if any(x is None for x in given) and not all(x is None for x in given):
        raise ValueError(
            "--coordinator_address, --num_processes and --process_id go together "
            f"(got {coordinator_address!r}, {num_processes!r}, {process_id!r})"
        )
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(
            f"--process_id={process_id} must be in [0, --num_processes={num_processes})"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address, num_processes, process_id,
        initialization_timeout=timeout_s, heartbeat_timeout_seconds=heartbeat_s,
    )  # fmt: skip
    logging.info(
        "distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh ('data', Auto) over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding for parameters, optimizer state and metrics: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding for batches: the first axis split over the 'data' axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, *, flag: str = "batch_size") -> None:
    """Raises ValueError unless the global batch divides evenly over the mesh's devices."""
    n = mesh.devices.size
    if batch_size < 1 or batch_size % n:
        raise ValueError(f"{flag}={batch_size} must be a positive multiple of the {n} devices")


def process_rows(global_rows: int, mesh: Mesh) -> slice:
    """The block of a global batch's rows that this process's devices hold on `mesh`."""
    index = data_sharding(mesh).addressable_devices_indices_map((global_rows,))
    blocks = sorted(idx[0].indices(global_rows)[:2] for idx in index.values())
    lo, hi = blocks[0][0], max(stop for _, stop in blocks)
    if sum(stop - start for start, stop in set(blocks)) != hi - lo:
        raise ValueError(f"this process's devices hold no contiguous block of the batch: {blocks}")
    return slice(lo, hi)


def shard_gather(source, rows: np.ndarray, mesh: Mesh, *, dtype=None) -> jax.Array:
    """Places the global batch `source[rows]` on the mesh, reading only this process's rows.

    Every process computes the same global row indices (the data order is a function of
    seed and step), gathers only the rows its devices hold, and passes them to
    `make_array_from_process_local_data`, which also works across hosts. `source` may
    be a memory-mapped token file: a process reads its share of each batch and no more.

    Args:
      source: an array (or memmap) of rows [N, ...].
      rows: int[global_batch] row indices into `source`; divides by the device count.
      mesh: the mesh from `make_mesh`.
      dtype: the dtype of the placed batch (default: `source`'s).

    Returns:
      A jax.Array [global_batch, ...] with sharding `P('data')`.
    """
    check_batch_size(len(rows), mesh, flag="batch rows")
    local = np.asarray(source[rows[process_rows(len(rows), mesh)]], dtype=dtype)
    shape = (len(rows),) + local.shape[1:]
    return jax.make_array_from_process_local_data(data_sharding(mesh), local, shape)


def shard_batch(x: np.ndarray, mesh: Mesh) -> jax.Array:
    """Places a global batch, the same on every process, on the mesh, split along its first axis."""
    return shard_gather(x, np.arange(len(x)), mesh)


def barrier(name: str, *, timeout_s: float = 600) -> None:
    """Waits until every process reaches `name` (a no-op for one process); bounded.

    Raises:
      RuntimeError: after `timeout_s`, naming the barrier: another process died or is stuck.
    """
    if jax.process_count() == 1:
        return
    try:
        ocp.multihost.get_barrier_sync_fn()(key=f"flowjax_{name}", timeout_ms=int(timeout_s * 1000))
    except Exception as e:  # jaxlib raises its own runtime error type
        raise RuntimeError(
            f"process {jax.process_index()} of {jax.process_count()}: the other processes did "
            f"not reach '{name}' within {timeout_s:.0f} s (one of them died or is stuck): {e}"
        ) from e


def from_process_zero(value: np.ndarray) -> np.ndarray:
    """Process 0's `value` on every process (a collective; the identity for one process)."""
    if jax.process_count() == 1:
        return value
    return np.asarray(multihost_utils.broadcast_one_to_all(value))


def agree(value: bool) -> bool:
    """Process 0's `value` on every process, so that all of them take the same branch."""
    return bool(from_process_zero(np.asarray(value)))


def is_main_process() -> bool:
    """True on process 0, the one that writes files and logs results."""
    return jax.process_index() == 0
