"""One process of the two-process tests (tests/test_multiprocess.py): train, or die on cue.

python tests/multiprocess_worker.py MODE PORT NUM_PROCESSES PROCESS_ID WORKDIR OUT_JSON
MODE: 'train' trains the tiny WaveNet on the shipped lab table and writes, for this process,
the loss history and a digest of the parameters it held at every checkpoint save; 'die'
does the same but process 1 exits abruptly at step 3.
"""

import hashlib
import json
import os
import sys

import jax
import numpy as np

from flowjax import checkpoint, configs, parallel, train


def config():
    """The tiny WaveNet both the two-process run and its one-process reference train."""
    cfg = configs.get_config("wavenet", "tiny")
    cfg.update(num_steps=8, batch_size=32, log_every=1, eval_every=4, checkpoint_every=4)
    cfg.data.fraction = 0.5
    return cfg


def digest(tree) -> str:
    """SHA-256 of this process's copy of a replicated pytree (all its devices must agree)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        copies = [np.asarray(s.data) for s in leaf.addressable_shards]
        if any(not np.array_equal(c, copies[0]) for c in copies):
            raise AssertionError("the devices of one process hold different parameters")
        h.update(copies[0].tobytes())
    return h.hexdigest()


def spy_on_saves(saved: list) -> None:
    """Records (step, digest, params) of every state handed to checkpoint.save."""
    real = checkpoint.save

    def save(manager, step, state, meta, **kwargs):
        leaves = [
            np.asarray(x.addressable_shards[0].data) for x in jax.tree.leaves(state["params"])
        ]
        saved.append((int(step), digest(state["params"]), leaves))
        return real(manager, step, state, meta, **kwargs)

    train.checkpoint.save = save


def die_at(step_to_die: int) -> None:
    """Makes this process exit abruptly when it reaches `step_to_die`."""
    real = train.batch_indices

    def batch_indices(n, *, step, batch_size, seed):
        if step == step_to_die:
            os._exit(3)
        return real(n, step=step, batch_size=batch_size, seed=seed)

    train.batch_indices = batch_indices


def main(mode, port, num_processes, process_id, workdir, out):
    parallel.initialize(coordinator_address=f"localhost:{port}", num_processes=int(num_processes),
                        process_id=int(process_id), timeout_s=60, heartbeat_s=10)  # fmt: skip
    if mode == "die" and jax.process_index() == 1:
        die_at(3)
    saved = []
    spy_on_saves(saved)
    metrics = train.train_and_evaluate(config(), workdir, data="lab")
    record = {"history": metrics["history"], "saves": [(s, d) for s, d, _ in saved],
              "devices": jax.device_count(), "processes": jax.process_count()}  # fmt: skip
    with open(out, "w") as f:
        json.dump(record, f)
    np.savez(out + ".npz", *saved[-1][2])


if __name__ == "__main__":
    main(*sys.argv[1:])
