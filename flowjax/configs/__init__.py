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
