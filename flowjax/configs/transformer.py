"""Transformer configs: the study's nanoGPT-style decoder (`paper`), a wider `default`, `tiny`.

COMMAND:
  python experiments/train.py --config=flowjax/configs/transformer.py:paper \
    --data=cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz --workdir=runs/transformer_paper

`paper`: embedding 64, 4 pre-LN blocks, 4 heads, no dropout, Adam lr 1e-3,
batch 16, the pooled 49-bin alphabet, flow-aligned sentences (the study used a
79-symbol window over a stream of flows). `default`: embedding 128, 4 blocks,
4 heads, AdamW with warm-up and cosine decay.
Measured results: docs/performance.md and the README.
"""

from __future__ import annotations

import ml_collections

from flowjax.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The Transformer config for preset `arg` ('paper', 'default' or 'tiny')."""
    preset = common.parse_preset(arg)
    config = common.base_config()
    config.model = ml_collections.ConfigDict(
        {
            "name": "transformer",
            "embed_dim": 128,
            "num_layers": 4,
            "num_heads": 4,
            "mlp_ratio": 4,
            "head_scale": 0.1,
            "dropout": 0.1,
            "bf16": False,
        }
    )
    config.optimizer.learning_rate = 1e-3
    if preset == "paper":
        common.paper_settings(config)
        config.model.update(embed_dim=64, num_layers=4, num_heads=4)
        config.optimizer.update(learning_rate=1e-3, warmup_steps=0, min_lr_ratio=1.0,
                                weight_decay=0.0, clip_norm=0.0)  # fmt: skip
        config.batch_size = 16
        config.num_steps = 20000
        config.eval_every = 2000
    elif preset == "tiny":
        common.tiny_settings(config)
        config.model.update(embed_dim=16, num_layers=2, num_heads=2)
    return config
