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
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def maybe_initialize_distributed(enabled: bool) -> None:
    """Calls `jax.distributed.initialize()` (cluster settings from the environment) if enabled.

    Must run before anything touches the devices. Single-host runs leave it off.
    """
    if enabled:
        jax.distributed.initialize()
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


def shard_batch(x: np.ndarray, mesh: Mesh) -> jax.Array:
    """Places a global batch on the mesh, split along its first axis.

    Every process computes the same global batch (the data order is a function
    of seed and step), so each one passes only its own rows to
    `make_array_from_process_local_data`, which also works across hosts.

    Args:
      x: the global batch [global_batch, ...]; its first axis divides by the device count.
      mesh: the mesh from `make_mesh`.

    Returns:
      A jax.Array of the same shape with sharding `P('data')`.
    """
    check_batch_size(x.shape[0], mesh, flag="batch rows")
    n_proc, pid = jax.process_count(), jax.process_index()
    rows = x.shape[0] // n_proc
    local = x[pid * rows : (pid + 1) * rows]
    return jax.make_array_from_process_local_data(data_sharding(mesh), local, x.shape)


def is_main_process() -> bool:
    """True on process 0, the one that writes files and logs results."""
    return jax.process_index() == 0
