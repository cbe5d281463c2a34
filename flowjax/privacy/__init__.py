"""Differential privacy for a flowjax run: the budget and accountant, the DP tokenizer, DP-SGD.

`budget` plans one (epsilon, delta) budget over the tokenizer fit and training with one
`dp-accounting` accountant and writes `<workdir>/privacy.json`; `tokenizer` fits the
tokenizer from noisy histograms only; `dpsgd` clips each flow's gradient and adds noise
once per step on Poisson-sampled batches; `tradeoff` measures quality and membership
attacks against epsilon. `data.py` and `train.py` switch them on with `config.dp`
(docs/privacy.md).
"""
