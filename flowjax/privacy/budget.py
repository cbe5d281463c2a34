"""The privacy budget of a run: one (epsilon, delta), one accountant, the split rule, privacy.json.

A DP run releases two things computed from the private training rows: the tokenizer (one
Gaussian mechanism over noisy histograms, `flowjax.privacy.tokenizer`, plus a threshold
that hides categories held by few rows) and the model (DP-SGD: Poisson-sampled batches,
per-flow clipping, Gaussian noise; `flowjax.privacy.dpsgd`). The split rule:

- the tokenizer gets `tokenizer_share` of epsilon and of delta; half of its delta is the
  threshold's (the chance that a value held by one row survives it), and its noise
  multiplier is the smallest that makes its Gaussian alone (share x epsilon,
  share x delta / 2)-DP;
- training gets the rest: its noise multiplier is the smallest that makes the
  composition of both Gaussian mechanisms (one accountant over both events, RDP or PLD
  from `dp-accounting`) (epsilon, delta - threshold delta)-DP after `num_steps` steps.

Neighbouring tables differ by adding or removing one flow (`dp-accounting`'s default
relation). `plan` refuses a budget that cannot be met; `check_resume` refuses a resume
whose plan differs from the one recorded in `<workdir>/privacy.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

import dp_accounting
import ml_collections
import numpy as np
from dp_accounting import pld, rdp

from flowjax import files, parallel

ACCOUNTANTS = ("rdp", "pld")
# Above this noise multiplier a model learns next to nothing: the budget counts as unmet.
MAX_NOISE_MULTIPLIER = 50.0
# Calibration looks no lower (a budget met below it is under-spent; PLD needs a floor).
MIN_NOISE_MULTIPLIER = 0.3
PRIVACY_FILE = "privacy.json"
FINGERPRINT_FILE = "data_fingerprint.json"  # the table's hash: beside, not in, the checkpoint


@dataclasses.dataclass(frozen=True, kw_only=True)
class DPConfig:
    """The `config.dp` block, checked once and frozen (see flowjax/configs/common.py)."""

    epsilon: float
    delta: float
    clip_norm: float
    noise_multiplier: float
    tokenizer_share: float
    accountant: str
    noise_seed: int
    public_labels: str = ""
    microbatch: int = 0

    def __post_init__(self):
        if not 0 <= self.epsilon < math.inf:
            raise ValueError(f"config.dp.epsilon must be finite and >= 0 (0: off), "
                             f"got {self.epsilon}")  # fmt: skip
        if not 0 <= self.delta < 1:
            raise ValueError(f"config.dp.delta must be in [0, 1) (0: 1/(10 N)), got {self.delta}")
        if not 0 < self.clip_norm < math.inf:
            raise ValueError(f"config.dp.clip_norm must be finite and > 0, got {self.clip_norm}")
        if self.noise_multiplier < 0:
            raise ValueError(f"config.dp.noise_multiplier must be >= 0 (0: calibrated), "
                             f"got {self.noise_multiplier}")  # fmt: skip
        if not 0 < self.tokenizer_share < 1:
            raise ValueError(f"config.dp.tokenizer_share must be in (0, 1), "
                             f"got {self.tokenizer_share}")  # fmt: skip
        if self.microbatch < 0:
            raise ValueError(f"config.dp.microbatch must be >= 0 (0: by platform), "
                             f"got {self.microbatch}")  # fmt: skip
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"config.dp.accountant must be one of {ACCOUNTANTS}, "
                             f"got {self.accountant!r}")  # fmt: skip

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> DPConfig:
        return cls(**config.dp.to_dict())


def enabled(config: ml_collections.ConfigDict) -> bool:
    """Whether the run is differentially private (`config.dp.epsilon` > 0)."""
    return "dp" in config and config.dp.epsilon > 0


def noise_seed(config: ml_collections.ConfigDict) -> int:
    """The secret seed of the DP noise and sampling: `config.dp.noise_seed`, or 63 fresh bits."""
    seed = int(config.dp.noise_seed)
    if seed >= 0:
        return seed
    # Every process of a multi-process run must sample and add the same noise: process 0's.
    raw = np.frombuffer(secrets.randbits(63).to_bytes(8, "little"), np.uint8)
    return int.from_bytes(parallel.from_process_zero(raw).tobytes(), "little")


def default_delta(n_rows: int) -> float:
    """1 / (10 N) rounded down to a power of ten."""
    return 10.0 ** math.floor(math.log10(1.0 / (10 * max(n_rows, 1))))


def make_accountant(name: str) -> dp_accounting.PrivacyAccountant:
    """A fresh `dp-accounting` accountant: 'rdp' (Renyi DP) or 'pld' (privacy loss distribution)."""
    return rdp.RdpAccountant() if name == "rdp" else pld.PLDAccountant()


def epsilon_of(event: dp_accounting.DpEvent, delta: float, accountant: str) -> float:
    """The epsilon of `event` at `delta` under the named accountant."""
    return float(make_accountant(accountant).compose(event).get_epsilon(delta))


def training_event(
    *, sampling_rate: float, noise_multiplier: float, steps: int
) -> dp_accounting.DpEvent:
    """DP-SGD: `steps` Poisson-sampled Gaussian mechanisms."""
    step = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    return dp_accounting.SelfComposedDpEvent(step, steps)


def _calibrate(
    make_event, epsilon: float, delta: float, accountant: str, what: str, hint: str
) -> float:
    """The smallest noise multiplier in [MIN, MAX] whose event meets (epsilon, delta)."""
    if epsilon_of(make_event(MAX_NOISE_MULTIPLIER), delta, accountant) > epsilon:
        raise ValueError(
            f"the privacy budget cannot be met: {what} would need a noise multiplier above "
            f"{MAX_NOISE_MULTIPLIER:g} for epsilon {epsilon:.4g}; {hint}"
        )
    if epsilon_of(make_event(MIN_NOISE_MULTIPLIER), delta, accountant) <= epsilon:
        return MIN_NOISE_MULTIPLIER
    return dp_accounting.calibrate_dp_mechanism(
        lambda: make_accountant(accountant), make_event, epsilon, delta,
        dp_accounting.ExplicitBracketInterval(MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER),
        tol=1e-4,
    )  # fmt: skip


def tokenizer_budget(share: float, epsilon: float, delta: float) -> tuple[float, float, float]:
    """(epsilon, Gaussian delta, threshold delta) of the tokenizer under the split rule."""
    return share * epsilon, share * delta / 2, share * delta / 2


def tokenizer_mechanism(config: ml_collections.ConfigDict, *, n_rows: int) -> tuple[float, float]:
    """(noise multiplier, threshold delta) of the DP tokenizer's Gaussian histograms.

    Args:
      config: the run config (its `dp` block).
      n_rows: private training rows (the default delta depends on them).
    """
    dp = DPConfig.from_config(config)
    delta = dp.delta or default_delta(n_rows)
    eps, gauss_delta, threshold_delta = tokenizer_budget(dp.tokenizer_share, dp.epsilon, delta)
    hint = "raise config.dp.epsilon or config.dp.tokenizer_share"
    sigma = _calibrate(dp_accounting.GaussianDpEvent, eps, gauss_delta, dp.accountant,
                       "the tokenizer", hint)  # fmt: skip
    return float(sigma), threshold_delta


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """What a DP run will spend and how: the record in privacy.json and the checkpoint."""

    epsilon: float
    delta: float
    accountant: str
    rows: int  # private training rows
    batch_size: int  # expected flows per step (Poisson sampling)
    sampling_rate: float
    steps: int
    clip_norm: float
    noise_multiplier: float
    tokenizer_share: float
    tokenizer_noise_multiplier: float
    tokenizer_delta_threshold: float

    def event(self, steps: int) -> dp_accounting.DpEvent:
        """The composed release after `steps` training steps: tokenizer, then DP-SGD."""
        tokenizer = dp_accounting.GaussianDpEvent(self.tokenizer_noise_multiplier)
        if not steps:
            return tokenizer
        return dp_accounting.ComposedDpEvent([
            tokenizer,
            training_event(sampling_rate=self.sampling_rate,
                           noise_multiplier=self.noise_multiplier, steps=steps),
        ])  # fmt: skip

    def spent(self, steps: int) -> dict[str, Any]:
        """Epsilon and delta per part (each alone) and in total (composed) after `steps` steps."""
        _, tok_gauss, tok_thr = tokenizer_budget(self.tokenizer_share, self.epsilon, self.delta)
        train_delta = self.delta - 2 * tok_gauss
        tok = epsilon_of(dp_accounting.GaussianDpEvent(self.tokenizer_noise_multiplier),
                         tok_gauss, self.accountant)  # fmt: skip
        train = epsilon_of(training_event(sampling_rate=self.sampling_rate,
                                          noise_multiplier=self.noise_multiplier, steps=steps),
                           train_delta, self.accountant) if steps else 0.0  # fmt: skip
        total = epsilon_of(self.event(steps), self.delta - tok_thr, self.accountant)
        return {
            "steps": steps,
            "tokenizer": {"epsilon": tok, "delta": tok_gauss + tok_thr},
            "training": {"epsilon": train, "delta": train_delta},
            "total": {"epsilon": total, "delta": self.delta},
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan(
    config: ml_collections.ConfigDict, *, rows: int, train_rows: int, batch_size: int, steps: int
) -> Plan:
    """The run's plan: the training noise multiplier calibrated (or checked) against the budget.

    Args:
      config: the run config (its `dp` block).
      rows: private training rows (before rows the DP tokenizer cannot encode are dropped);
        the default delta and the tokenizer's noise depend on them.
      train_rows: the rows DP-SGD samples from (after that filter).
      batch_size: the expected flows per step; the sampling rate is batch_size / train_rows.
      steps: the training steps the budget must cover.

    Raises:
      ValueError: the budget cannot be met (too many steps for the epsilon), or a given
        noise multiplier overspends it.
    """
    dp = DPConfig.from_config(config)
    if not 0 < batch_size < train_rows:
        raise ValueError(f"DP-SGD needs batch_size ({batch_size}) below the training rows "
                         f"({train_rows})")  # fmt: skip
    delta = dp.delta or default_delta(rows)
    tok_sigma, tok_thr = tokenizer_mechanism(config, n_rows=rows)
    base = Plan(epsilon=dp.epsilon, delta=delta, accountant=dp.accountant, rows=rows,
                batch_size=batch_size, sampling_rate=batch_size / train_rows, steps=steps,
                clip_norm=dp.clip_norm, noise_multiplier=dp.noise_multiplier or 1.0,
                tokenizer_share=dp.tokenizer_share, tokenizer_noise_multiplier=tok_sigma,
                tokenizer_delta_threshold=tok_thr)  # fmt: skip
    target_delta = delta - tok_thr

    def composed(sigma: float) -> dp_accounting.DpEvent:
        return dataclasses.replace(base, noise_multiplier=sigma).event(steps)

    if dp.noise_multiplier:
        spent = epsilon_of(composed(dp.noise_multiplier), target_delta, dp.accountant)
        if spent > dp.epsilon:
            raise ValueError(
                f"the privacy budget cannot be met: noise multiplier {dp.noise_multiplier:g} "
                f"for {steps} steps spends epsilon {spent:.4g} > {dp.epsilon:g}; set "
                "config.dp.noise_multiplier=0 to calibrate it, or lower num_steps"
            )
        return base
    sigma = _calibrate(composed, dp.epsilon, target_delta, dp.accountant, f"{steps} steps",
                       "raise config.dp.epsilon, lower num_steps or raise batch_size")  # fmt: skip
    return dataclasses.replace(base, noise_multiplier=float(sigma))


def record(plan_: Plan, *, steps_done: int) -> dict[str, Any]:
    """The privacy.json record: the plan and what was spent after `steps_done` steps."""
    return {"plan": plan_.to_dict(), "spent": plan_.spent(steps_done),
            "accountant": f"dp-accounting {plan_.accountant.upper()}",
            "sampling": "Poisson, each training flow independently with the sampling rate",
            "neighbouring": "add or remove one flow"}  # fmt: skip


def write(workdir: str | os.PathLike, plan_: Plan, *, steps_done: int) -> dict[str, Any]:
    """Writes `<workdir>/privacy.json` atomically; returns the record."""
    rec = record(plan_, steps_done=steps_done)
    _write_json(Path(workdir) / PRIVACY_FILE, rec)
    return rec


def check_resume(workdir: str | os.PathLike, plan_: Plan) -> None:
    """Refuses to resume a DP run under another plan than the one recorded in privacy.json."""
    path = Path(workdir) / PRIVACY_FILE
    if not path.exists():
        return
    saved = json.loads(path.read_text())["plan"]
    changed = {k: (saved.get(k), v) for k, v in plan_.to_dict().items() if saved.get(k) != v}
    if changed:
        raise ValueError(
            f"{path}: resuming would spend a budget other than the one recorded (changed: "
            + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
            + "); use a new workdir"
        )


def describe(plan_: Plan) -> str:
    """One line: the budget, the noise and the sampling of a plan."""
    return (f"epsilon {plan_.epsilon:g}, delta {plan_.delta:.1e} ({plan_.accountant.upper()}); "
            f"noise multiplier {plan_.noise_multiplier:.3f} (tokenizer "
            f"{plan_.tokenizer_noise_multiplier:.2f}), clip {plan_.clip_norm:g}, sampling rate "
            f"{plan_.sampling_rate:.4g} over {plan_.rows} flows, {plan_.steps} steps")  # fmt: skip


def _write_json(path: Path, value: Any) -> None:
    files.write_atomic(path, json.dumps(value, indent=2) + "\n")


def write_fingerprint(workdir: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
    """Keeps the table's fingerprint in the workdir: a DP checkpoint must not carry its hash."""
    _write_json(Path(workdir) / FINGERPRINT_FILE, fingerprint)


def read_fingerprint(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """The fingerprint `write_fingerprint` kept, or None."""
    path = Path(workdir) / FINGERPRINT_FILE
    return json.loads(path.read_text()) if path.exists() else None
