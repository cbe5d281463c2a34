"""Defaults shared by every model family's config, and the preset parser.

A config is an ml_collections `ConfigDict` with these fields (the model
families fill `model` and override the rest per preset):

- `model`: the family's hyperparameters (`name` picks the family); becomes a
  frozen dataclass through `flowjax.models.model_config_from`.
- `tokenizer`: `mode` ('per_column' or the study's pooled 'paper' alphabet), `n_bins`,
  `exact_integers` (integer columns with at most this many values get one token per
  value; 0: off), `two_level` (numeric columns with many distinct values get a second
  token: the interval inside their bin; off by default, see docs/results.md),
  `port_ranges` (numeric port columns: frequent ports exact, the rest as well-known /
  registered / ephemeral range tokens decoded inside the range; `flowjax.netcodecs`).
- `data`: `label` column (empty: auto), `fraction` of the flows used,
  `nonfinite` ('token', 'drop' or 'clip'; paper mode has no NaN/Infinity
  symbol), `derive` (compute the columns that are exact functions of others
  instead of modelling them; `flowjax.relations`), `identities` (addresses as octets
  and timestamps as binned seconds in the sentence, a 5-tuple Flow ID rebuilt;
  `flowjax.identities`), `pseudonymise_key_file` (a file holding a passphrase: every
  address is replaced by its keyed prefix-preserving Crypto-PAn pseudonym before
  training; the key stays with the user, only the path is in the config), `split`
  fractions and `split_seed`, `out_of_core` ('auto': on for files larger than
  `out_of_core_bytes`; 'on'; 'off'; `flowjax.largedata`: the table is read in record
  batches, the tokenizer fitted on a sample of `out_of_core_sample` rows with the whole
  table's vocabulary, rows split by a hash of their index, sentences kept in memory-mapped
  token files), and `trace`: `enabled`
  (trace mode, `flowjax.traces`: flows sorted by time, optionally grouped into sessions
  by the `group_by` column, modelled as a stream in windows of `window_flows` flows;
  timestamps become gaps; the Transformer attends to the previous `context_flows` flows
  through a ring-buffer KV cache, the WaveNet's receptive field spans them).
- `optimizer`: `name` ('adamw' or 'sgd'), peak `learning_rate`, linear
  `warmup_steps`, cosine decay to `min_lr_ratio` x peak, `weight_decay`,
  `b1`/`b2`, global-norm `clip_norm` (0: off).
- loop: global `batch_size` (split over every device; flows, so that in trace mode a
  batch holds batch_size / window_flows windows), `num_steps`,
  `eval_every`, `eval_batch_size`, `eval_max_rows` (evaluations score at most this
  many validation rows, a random subset; 0: all), `log_every`, `checkpoint_every`,
  `keep_checkpoints`, `seed` (init and data order), `mask_logits` (score only
  the tokens legal for each column), `column_head` (per-column tokenizer: compute
  at each position only the logits of that column's token window,
  `flowjax.models.heads`; the full-vocabulary head otherwise).
- stopping (on in the `default` preset: evaluate every 100 steps, stop after 5
  evaluations without improvement, generate from the best; off in `paper` and
  `tiny`): `early_stopping_patience` (stop when the validation loss has not
  improved for this many evaluations; 0: off), `keep_best` (also keep the
  checkpoint of lowest validation loss, beside the latest ones, and generate from
  it; every evaluation step is then saved), `time_budget_s` (stop after this many
  seconds of training-loop wall time, saving the step reached; 0: off, the
  default: a run's length should not depend on the machine's speed;
  `parse_duration` reads '300', '5m', '1h'; the main job passes `--time_budget`).
- `dp`: differential privacy (`flowjax.privacy`; off while `epsilon` is 0): the total
  `epsilon` and `delta` (0: 1/(10 N) rounded down to a power of ten, N the training
  rows) of the run, per-flow gradient `clip_norm`, the training `noise_multiplier` (0:
  calibrated to the budget left after the tokenizer), `tokenizer_share` (the part of
  epsilon and delta the DP tokenizer spends alone; training's noise barely grows with it,
  docs/privacy.md), the `accountant` ('rdp' or 'pld', from `dp-accounting`), `noise_seed`
  (-1: fresh from the operating system; fixed only for tests and reproductions: it is
  saved in the config) and `public_labels` (the label's classes, comma-separated, as the
  user declares them: every declared class keeps a token; empty: classes held by too few
  rows are suppressed), and `microbatch` (flows whose per-flow gradients are formed at
  once; 0: 8 on CPU, all on GPU/TPU; speed only).
- size (on in `default`): `size_by_data` applies the family's `small_model` values to
  `model` when the training split has fewer than `small_table_rows` rows
  (`flowjax.configs.sized_for_data`; the RNN: hidden 128 instead of 256).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

PRESETS = ("paper", "default", "tiny")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_preset(arg: str | None) -> str:
    """The preset named by the text after ':' in `--config=...py:<preset>` (default 'default')."""
    preset = (arg or "default").strip()
    if preset not in PRESETS:
        raise ValueError(f"unknown config preset {preset!r}; choose one of {PRESETS}")
    return preset


def parse_duration(text: str | None) -> float:
    """Seconds in '300', '300s', '5m', '1.5h' (a number, optionally with s/m/h); '' or None: 0."""
    text = (text or "").strip().lower()
    if not text:
        return 0.0
    number, scale = (text[:-1], _SECONDS[text[-1]]) if text[-1] in _SECONDS else (text, 1.0)
    try:
        seconds = float(number) * scale
    except ValueError:
        raise ValueError(
            f"expected a duration like '300', '300s', '5m' or '1h', got {text!r}"
        ) from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be finite and >= 0, got {text!r}")
    return seconds


def base_config() -> ml_collections.ConfigDict:
    """The shared defaults; `model` is left for the family to fill."""
    config = ml_collections.ConfigDict()
    config.model = ml_collections.ConfigDict()
    config.tokenizer = ml_collections.ConfigDict(
        {
            "mode": "per_column",
            "n_bins": 49,
            "exact_integers": 0,
            "two_level": False,
            "port_ranges": True,
        }
    )
    config.data = ml_collections.ConfigDict(
        {
            "label": config_dict.placeholder(str),
            "fraction": 1.0,
            "nonfinite": "token",
            "derive": True,
            "identities": True,
            "pseudonymise_key_file": "",
            "split": (0.8, 0.1, 0.1),
            "split_seed": 0,
            "out_of_core": "auto",
            "out_of_core_bytes": 1_000_000_000,
            "out_of_core_sample": 200_000,
            "trace": ml_collections.ConfigDict(
                {"enabled": False, "window_flows": 16, "context_flows": 8, "group_by": ""}
            ),
        }
    )
    config.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "learning_rate": 2e-3,
            "warmup_steps": 200,
            "min_lr_ratio": 0.05,
            "weight_decay": 0.01,
            "b1": 0.9,
            "b2": 0.99,
            "clip_norm": 1.0,
        }
    )
    config.batch_size = 128
    config.num_steps = 5000
    config.eval_every = 100
    config.eval_batch_size = 1024
    config.eval_max_rows = 8192
    config.log_every = 100
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3
    config.seed = 0
    config.mask_logits = True
    config.column_head = True
    config.early_stopping_patience = 5
    config.keep_best = True
    config.time_budget_s = 0.0
    config.size_by_data = True
    config.small_table_rows = 50_000
    config.small_model = ml_collections.ConfigDict()  # the family's values for small tables
    config.dp = ml_collections.ConfigDict(
        {
            "epsilon": 0.0,
            "delta": 0.0,
            "clip_norm": 1.0,
            "noise_multiplier": 0.0,
            "tokenizer_share": 0.25,
            "accountant": "rdp",
            "noise_seed": -1,
            "public_labels": "",
            "microbatch": 0,
        }
    )
    return config


def paper_settings(config: ml_collections.ConfigDict) -> None:
    """The study's data settings shared by every `paper` preset: pooled 49-bin alphabet."""
    config.tokenizer.mode = "paper"
    config.tokenizer.n_bins = 49
    config.data.nonfinite = "clip"
    config.data.derive = False  # the study modelled every numeric column
    config.data.identities = False  # and dropped addresses and timestamps
    config.tokenizer.port_ranges = False
    config.column_head = False  # the pooled alphabet has no per-column windows
    config.early_stopping_patience = 0  # the study trained a fixed number of steps
    config.keep_best = False
    config.model.dropout = 0.0  # the study used none
    config.size_by_data = False


def tiny_settings(config: ml_collections.ConfigDict) -> None:
    """Seconds-long runs for tests and smoke checks."""
    config.data.fraction = 0.2
    config.batch_size = 16
    config.eval_batch_size = 64
    config.num_steps = 30
    config.eval_every = 10
    config.log_every = 10
    config.checkpoint_every = 10
    config.keep_checkpoints = 2
    config.optimizer.warmup_steps = 5
    config.early_stopping_patience = 0
    config.keep_best = False
    config.model.dropout = 0.0
    config.size_by_data = False
