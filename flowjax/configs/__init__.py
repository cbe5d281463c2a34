"""Training configurations: one module per model family, each with `get_config(preset)`."""

from __future__ import annotations

import importlib

import ml_collections

FAMILIES = ("rnn", "transformer", "wavenet")


def get_config(family: str, preset: str = "default") -> ml_collections.ConfigDict:
    """The config of a model family ('rnn', 'transformer', 'wavenet') at a preset."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return importlib.import_module(f"flowjax.configs.{family}").get_config(preset)


def with_steps(config: ml_collections.ConfigDict, steps: int) -> ml_collections.ConfigDict:
    """Sets the training length and derives the cadences: 5 evaluations, 3 checkpoints."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    config.num_steps = steps
    config.eval_every = max(1, steps // 5)
    config.checkpoint_every = max(1, steps // 3)
    config.log_every = min(config.log_every, config.eval_every)
    return config


def sized_for_data(config: ml_collections.ConfigDict, train_rows: int) -> ml_collections.ConfigDict:
    """The config whose model follows the data: `config.small_model` applied below a size.

    With `config.size_by_data`, a training split of fewer than `config.small_table_rows`
    rows gets the model values in `config.small_model` (the `default` RNN: hidden 128
    instead of 256; measured in docs/results.md); anything else is returned unchanged.
    Applying it twice gives the same config, so a resumed run resolves to the same model.
    """
    if not config.get("size_by_data", False) or train_rows >= config.small_table_rows:
        return config
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.update(config.small_model.to_dict())
    return config
