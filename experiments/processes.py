"""The multi-process flags of every entry point, and the call that joins the run.

On one host none is needed. Several processes on CPUs or GPUs each get the same
--coordinator_address (host:port of process 0), --num_processes and their own
--process_id; on a TPU pod or a managed cluster --distributed lets JAX find them.
"""

from absl import flags

from flowjax import parallel

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port where process 0 runs the coordinator (multi-process)"
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes in the run")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index, 0 .. num_processes-1")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "call jax.distributed.initialize() with the cluster it detects (TPU pods)"
)
_TIMEOUT = flags.DEFINE_integer(
    "process_timeout", 300, "seconds to wait for the other processes to connect"
)


def initialize() -> None:
    """Joins the run the flags describe (before anything touches a device); one process: no-op."""
    parallel.initialize(
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
        auto=_DISTRIBUTED.value,
        timeout_s=_TIMEOUT.value,
    )
