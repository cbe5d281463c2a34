"""A two-line Python API over the whole path, as users of SDV, synthcity or mostlyai expect.

    synth = flowjax.FlowSynthesizer("transformer", preset="default").fit(frame, label="Label")
    flows = synth.sample(10_000, condition={"Label": "DDoS"})

`fit` takes a DataFrame or a flow file, trains (or, for the count baselines, counts) into
a run directory, and `sample` returns tables with the input's columns, order and dtypes.
`save`/`load` keep the checkpoints only (never the training rows); `evaluate` scores
synthetic rows against real held-out rows with `flowjax.eval`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from flowjax import checkpoint, configs, generate, pipeline, sampling
from flowjax import eval as fjeval


class FlowSynthesizer:
    """Fits a flowjax model on a flow table and samples synthetic flows from it.

    Args:
      model: 'rnn', 'transformer', 'wavenet', or a count baseline ('marginals', 'bigram').
      preset: 'default', 'paper' or 'tiny'.
      steps: training steps (default: the preset's).
      workdir: the run directory (default: a new temporary one).
      overrides: config values by dotted name, e.g. {'batch_size': 64,
        'optimizer.learning_rate': 1e-3}.
    """

    def __init__(
        self,
        model: str = "rnn",
        preset: str = "default",
        *,
        steps: int | None = None,
        workdir: str | os.PathLike | None = None,
        overrides: Mapping | None = None,
    ):
        self.config = pipeline.model_config(model, preset)
        if steps is not None:
            configs.with_steps(self.config, steps)
        if overrides:
            self.config.update_from_flattened_dict(dict(overrides))
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="flowjax-"))
        self.generator: generate.Generator | None = None
        self.metrics: dict = {}

    def fit(self, data: pd.DataFrame | str | os.PathLike, *, label: str | None = None):
        """Trains on a DataFrame or a flow file (CSV, CSV.gz, Parquet, a dataset name).

        A DataFrame is written to `<workdir>/data/train.parquet` first, so training reads
        it like any file (and a resumed run finds it again). Returns self.
        """
        if isinstance(data, pd.DataFrame):
            path = self.workdir / "data" / "train.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            data.to_parquet(path, index=False)
            data = path
        if label is not None:
            self.config.data.label = label
        self.generator, _, self.metrics = pipeline.fit(self.config, data, self.workdir)
        return self

    def _generator(self) -> generate.Generator:
        if self.generator is None:
            raise ValueError("the synthesizer is not fitted: call fit() or FlowSynthesizer.load()")
        return self.generator

    def sample(
        self,
        n: int,
        *,
        seed: int = 0,
        condition: Mapping | None = None,
        class_balance: str | Mapping = "real",
        strategy: sampling.Strategy = generate.DEFAULT_STRATEGY,
    ) -> pd.DataFrame:
        """n synthetic flows with the training table's columns, order and dtypes."""
        return generate.generate(self._generator(), n, seed=seed, condition=dict(condition or {}),
                                 class_balance=class_balance, strategy=strategy)  # fmt: skip

    def save(self, directory: str | os.PathLike) -> Path:
        """Copies the checkpoints (model, tokenizer, schema; no training rows) to `directory`."""
        source = checkpoint.checkpoint_dir(self.workdir)
        if self._generator().workdir is None or not source.is_dir():
            raise ValueError(
                f"{self.config.model.name}: a count baseline has no checkpoint to save"
            )
        target = Path(directory)
        shutil.copytree(source, checkpoint.checkpoint_dir(target), dirs_exist_ok=True)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike) -> FlowSynthesizer:
        """A fitted synthesizer from a directory written by `save` (or a training workdir)."""
        synth = cls.__new__(cls)
        synth.generator = generate.load_generator(directory)
        synth.workdir = Path(directory)
        synth.config = None
        synth.metrics = {}
        return synth

    def evaluate(
        self, train: pd.DataFrame, holdout: pd.DataFrame, *, n: int | None = None, seed: int = 0
    ) -> fjeval.EvalReport:
        """Scores n synthetic rows (default: as many as `holdout`) against real train/holdout."""
        columns, categorical, label = pipeline.scored_columns(self._generator().tokenizer)
        synthetic = self.sample(n or len(holdout), seed=seed)
        return fjeval.evaluate(train[columns], holdout[columns], synthetic[columns],
                               categorical=categorical, label=label, seed=seed)  # fmt: skip
