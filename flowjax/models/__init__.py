"""The model registry: config dicts -> frozen model configs -> NNX modules with one surface.

Every model offers `__call__(tokens, *, train) -> logits [B, T, V]` (teacher
forced), `init_decode_state(batch_size)` and `decode_step(state, token, t) ->
(logits [B, V], state)`; the trainer and the sampler never branch on the family.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
from flax import nnx

from flowjax.models.rnn import RNN, RNNConfig
from flowjax.models.transformer import Transformer, TransformerConfig
from flowjax.models.wavenet import WaveNet, WaveNetConfig

ModelConfig = WaveNetConfig | RNNConfig | TransformerConfig

MODELS: dict[str, tuple[type, type[nnx.Module]]] = {
    "wavenet": (WaveNetConfig, WaveNet),
    "rnn": (RNNConfig, RNN),
    "transformer": (TransformerConfig, Transformer),
}

__all__ = ["MODELS", "ModelConfig", "build_model", "count_params", "model_config_from"]


def model_config_from(config: Mapping) -> ModelConfig:
    """Builds the frozen model config from `config.model` (a ConfigDict or dict).

    Raises:
      ValueError: naming the unknown family or the unknown/mistyped keys.
    """
    values = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    name = values.get("name")
    if name not in MODELS:
        raise ValueError(f"config.model.name must be one of {sorted(MODELS)}, got {name!r}")
    cls = MODELS[name][0]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"config.model has keys {unknown} that a {name} model does not take")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


def build_model(
    model_config: ModelConfig, *, vocab_size: int, seq_len: int, rngs: nnx.Rngs
) -> nnx.Module:
    """Instantiates the model of `model_config.name` for a vocabulary and sentence length.

    Args:
      model_config: a frozen config from `model_config_from`.
      vocab_size: V, the number of symbols (the start symbol 0 included).
      seq_len: 1 + F, the sentence length (start symbol + one symbol per column).
      rngs: initialisation randomness (used only here, never in the forward pass).

    Returns:
      The NNX module.
    """
    if vocab_size < 2 or seq_len < 2:
        raise ValueError(f"need vocab_size >= 2 and seq_len >= 2, got {vocab_size}, {seq_len}")
    return MODELS[model_config.name][1](
        model_config, vocab_size=vocab_size, seq_len=seq_len, rngs=rngs
    )


def count_params(model: nnx.Module) -> int:
    """The number of trainable parameters (BatchNorm running statistics excluded)."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
