"""RNN configs: the study's tanh RNN (`paper`), a two-layer GRU (`default`), `tiny`.

COMMAND:
  python experiments/train.py --config=flowjax/configs/rnn.py:paper \
    --data=cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz --workdir=runs/rnn_paper

`paper`: one tanh layer, embedding 64, hidden 128, Adam lr 1e-3, batch 32, the
pooled 49-bin alphabet, trained on flow-aligned sentences (the study cut a
stream of flows into 10-symbol windows). `default`: GRU, 2 layers of 256 (128 for
tables under `small_table_rows` training rows), dropout 0.1, stops at its best step.
Measured results: docs/performance.md and the README.
"""

from __future__ import annotations

import ml_collections

from flowjax.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The RNN config for preset `arg` ('paper', 'default' or 'tiny')."""
    preset = common.parse_preset(arg)
    config = common.base_config()
    config.model = ml_collections.ConfigDict(
        {
            "name": "rnn",
            "cell": "gru",
            "embed_dim": 64,
            "hidden": 256,
            "num_layers": 2,
            "head_scale": 0.1,
            "dropout": 0.1,
            "bf16": False,
        }
    )
    config.small_model.hidden = 128  # under config.small_table_rows training rows
    if preset == "paper":
        common.paper_settings(config)
        config.model.update(cell="tanh", embed_dim=64, hidden=128, num_layers=1)
        config.optimizer.update(learning_rate=1e-3, warmup_steps=0, min_lr_ratio=1.0,
                                weight_decay=0.0, clip_norm=0.0)  # fmt: skip
        config.batch_size = 32
        config.num_steps = 20000
        config.eval_every = 2000
    elif preset == "tiny":
        common.tiny_settings(config)
        config.model.update(embed_dim=8, hidden=16)
    return config
