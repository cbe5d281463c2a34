"""WaveNet configs: the study's NPLM (`paper`), a residual gated WaveNet (`default`), `tiny`.

COMMAND:
  python experiments/train.py --config=flowjax/configs/wavenet.py:paper \
    --data=cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz --workdir=runs/wavenet_paper

`paper`: context 8, embedding 24, three levels of 128 (Linear no bias ->
BatchNorm -> tanh), output weights x0.1, about 80k parameters, plain SGD
(the study's lr 0.1 per symbol, divided by the ~67 symbols this flow-summed
loss adds up), batch 32, the pooled 49-bin alphabet. `default`: dilations doubling
until the sentence is covered, residual + skip connections, gated units.
Measured results: docs/performance.md and the README.
"""

from __future__ import annotations

import ml_collections

from flowjax.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The WaveNet config for preset `arg` ('paper', 'default' or 'tiny')."""
    preset = common.parse_preset(arg)
    config = common.base_config()
    config.model = ml_collections.ConfigDict(
        {
            "name": "wavenet",
            "embed_dim": 32,
            "hidden": 128,
            "dilations": (),  # () = 1, 2, 4, ... until the receptive field covers the sentence
            "residual": True,
            "gated": True,
            "batch_norm": True,
            "head_scale": 0.1,
            "dropout": 0.1,
            "bf16": False,
        }
    )
    if preset == "paper":
        common.paper_settings(config)
        config.model.update(embed_dim=24, hidden=128, dilations=(1, 2, 4), residual=False,
                            gated=False)  # fmt: skip
        # The study's SGD lr 0.1 was for a per-symbol mean; this loss sums ~67 symbols a flow.
        config.optimizer.update(name="sgd", learning_rate=0.1 / 67, warmup_steps=0,
                                min_lr_ratio=0.1, weight_decay=0.0, clip_norm=0.0)  # fmt: skip
        config.batch_size = 32
        config.num_steps = 20000
        config.eval_every = 2000
    elif preset == "tiny":
        common.tiny_settings(config)
        config.model.update(embed_dim=8, hidden=16)
    return config
