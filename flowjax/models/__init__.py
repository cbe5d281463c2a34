"""The model registry: config dicts -> frozen model configs -> NNX modules with one surface.

Every model offers `__call__(tokens, *, train) -> logits [B, T, W]` (teacher
forced), `init_decode_state(batch_size)` and `decode_step(state, token, t) ->
(logits [B, W], state)`; the trainer and the sampler never branch on the family.
W is the vocabulary size V with the full head, or the column window's width with
the per-column head (`heads.Windows`; logit i at position t is token lo[t + 1] + i).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
from flax import nnx

from flowjax.models.heads import Windows, column_windows
from flowjax.models.rnn import RNN, RNNConfig
from flowjax.models.transformer import Transformer, TransformerConfig
from flowjax.models.wavenet import WaveNet, WaveNetConfig

ModelConfig = WaveNetConfig | RNNConfig | TransformerConfig

MODELS: dict[str, tuple[type, type[nnx.Module]]] = {
    "wavenet": (WaveNetConfig, WaveNet),
    "rnn": (RNNConfig, RNN),
    "transformer": (TransformerConfig, Transformer),
}

__all__ = [
    "MODELS",
    "ModelConfig",
    "Windows",
    "build_model",
    "column_windows",
    "count_params",
    "head_windows",
    "model_config_from",
]


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


def head_windows(config: Mapping, legal_mask) -> Windows | None:
    """The per-column head's windows if `config.column_head` and the tokenizer is per-column.

    Args:
      config: the run's whole config (a checkpoint's config without `column_head`, from
        before the key existed, gets the full head it was trained with).
      legal_mask: bool[seq_len, V] from `FlowTokenizer.legal_mask()`.
    """
    if not config.get("column_head", False) or config["tokenizer"]["mode"] != "per_column":
        return None
    return column_windows(legal_mask)


def build_model(
    model_config: ModelConfig,
    *,
    vocab_size: int,
    seq_len: int,
    rngs: nnx.Rngs,
    windows: Windows | None = None,
    context: int = 0,
) -> nnx.Module:
    """Instantiates the model of `model_config.name` for a vocabulary and sentence length.

    Args:
      model_config: a frozen config from `model_config_from`.
      vocab_size: V, the number of symbols (the start symbol 0 included).
      seq_len: 1 + F, the sentence length (start symbol + one symbol per column).
      rngs: initialisation randomness (used only here, never in the forward pass).
      windows: per-position vocabulary windows for the per-column head (`column_windows`
        of the tokenizer's legal mask), or None for the head over the whole vocabulary.
      context: trace mode: the positions (previous flows' symbols included) the model
        must see back; the Transformer's attention window, the WaveNet's receptive
        field (0: one sentence, row mode).

    Returns:
      The NNX module.
    """
    if vocab_size < 2 or seq_len < 2:
        raise ValueError(f"need vocab_size >= 2 and seq_len >= 2, got {vocab_size}, {seq_len}")
    if windows is not None and len(windows.lo) != seq_len:
        raise ValueError(f"windows for {len(windows.lo)} positions, sentences of {seq_len}")
    return MODELS[model_config.name][1](
        model_config, vocab_size=vocab_size, seq_len=seq_len, rngs=rngs, windows=windows,
        context=context,
    )  # fmt: skip


def count_params(model: nnx.Module) -> int:
    """The number of trainable parameters (BatchNorm running statistics excluded)."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
