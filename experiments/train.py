"""Trains a flow language model: a thin absl entry point around `flowjax.train.train_and_evaluate`.

Usage:
  python experiments/train.py --config=flowjax/configs/rnn.py:paper \
    --data=cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz --workdir=runs/rnn_paper \
    [--config.num_steps=2000] [--time_budget=1h] [--verbose]
  several processes: add --coordinator_address=host:port --num_processes=N --process_id=i
  to each (or --distributed on a TPU pod)

Running it again with the same --workdir resumes from the latest checkpoint that
reads, on the same data (--allow_new_data continues it on other data).
"""

from __future__ import annotations

import json

import flax
import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import processes
from flowjax import checkpoint, parallel, train
from flowjax.configs import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file and preset, e.g. flowjax/configs/rnn.py:paper.", lock_config=True
)
_DATA = flags.DEFINE_string("data", None, "Flow file (CSV, CSV.gz, Parquet) or dataset name.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, resume).")
_ALLOW_NEW_DATA = flags.DEFINE_bool(
    "allow_new_data", False, "Resume the workdir's checkpoint on other data than it was trained on."
)
_TIME_BUDGET = flags.DEFINE_string(
    "time_budget",
    "",
    "Stop training after this wall time ('300', '300s', '5m', '1h'; 0: off); "
    "sets config.time_budget_s.",
)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Also show orbax's INFO logs (each save's steps).")
flags.mark_flags_as_required(["config", "data", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _VERBOSE.value:
        checkpoint.quiet_orbax_logs()
    processes.initialize()
    logging.info("jax %s, flax %s", jax.__version__, flax.__version__)
    logging.info(
        "process %d of %d; devices: %s", jax.process_index(), jax.process_count(), jax.devices()
    )
    if _TIME_BUDGET.value:
        _CONFIG.value.time_budget_s = common.parse_duration(_TIME_BUDGET.value)
    logging.info("config:\n%s", _CONFIG.value)
    metrics = train.train_and_evaluate(
        _CONFIG.value, _WORKDIR.value, data=_DATA.value, allow_new_data=_ALLOW_NEW_DATA.value
    )
    if parallel.is_main_process():
        summary = {k: v for k, v in metrics.items() if k != "history"}
        print(json.dumps(summary, indent=1))
        print(f"checkpoint: {metrics['checkpoint_dir']}")


if __name__ == "__main__":
    jax.config.config_with_absl()
    app.run(main)
