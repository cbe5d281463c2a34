"""The privacy/quality trade-off: runs at several epsilons, quality and two membership attacks.

Each (dataset, model, epsilon) run goes through the main job's path (`pipeline.run_model`:
train, generate, the evaluation report) with the same steps and batch at every epsilon
(warm-up at most a tenth of the steps);
epsilon inf is the same run without DP (no early stopping or best-checkpoint selection
either, as under DP). Beside the report's headline it scores two membership attacks, each
an ROC AUC against 0.5 (no better than a coin): the report's distance attack (synthetic
rows nearer to training rows than to held-out ones) and a likelihood attack that ranks
flows by the model's own log-probability, training flows against held-out test flows.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from absl import logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from flowjax import configs, files, generate, pipeline, train
from flowjax import data as fjdata

HEADLINE = (  # (report section, metric, column name)
    ("fidelity", "column shape (1-KS / 1-TVD)", "column shape"),
    ("detection", "detection ROC AUC", "detection AUC"),
    ("utility", "TSTR / TRTR macro-F1", "TSTR/TRTR"),
    ("coverage", "k-NN precision", "k-NN precision"),
    ("coverage", "k-NN recall", "k-NN recall"),
    ("privacy", "membership-inference AUC", "distance attack AUC"),
)


def row_nats(gen: generate.Generator, tokens: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """The model's nats (negative log-probability) of each sentence int32 [n, 1+F]: float [n]."""
    n_dev = gen.mesh.devices.size
    row_losses = train.make_row_loss_fn(gen.graphdef, gen.mesh,
                                        batch_size=-(-batch_size // n_dev) * n_dev)  # fmt: skip
    legal = jnp.asarray(gen.tokenizer.legal_mask()[1:])
    return row_losses(gen.params, gen.rest, tokens, legal)


def likelihood_attack(
    gen: generate.Generator, splits: fjdata.Splits, *, rows: int = 20_000, seed: int = 0
) -> float:
    """ROC AUC of telling training flows from held-out test flows by the model's likelihood.

    Every training and test flow (at most `rows` of each, a seeded subsample), each scored by
    its log-probability; 0.5 means the model is no likelier on the flows it trained on.
    """
    rng = np.random.default_rng(seed)

    def some(tokens):
        return tokens if len(tokens) <= rows else tokens[rng.choice(len(tokens), rows, False)]

    members, others = some(splits.train), some(splits.test)
    scores = -np.r_[row_nats(gen, members), row_nats(gen, others)]
    return float(roc_auc_score(np.r_[np.ones(len(members)), np.zeros(len(others))], scores))


def run_one(
    data: str, family: str, epsilon: float, workdir: str | os.PathLike, *, steps: int,
    num_flows: int, noise_seed: int = -1, seed: int = 0, public_labels: str = "",
) -> dict:  # fmt: skip
    """Trains, generates and scores one (dataset, model, epsilon); returns its table row."""
    config = configs.with_steps(pipeline.model_config(family, "default"), steps)
    config.update(early_stopping_patience=0, keep_best=False)
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, steps // 10)
    config.dp.update(epsilon=0.0 if math.isinf(epsilon) else epsilon, noise_seed=noise_seed,
                     public_labels=public_labels)  # fmt: skip
    result = pipeline.run_model(config, data=data, workdir=workdir, num_flows=(num_flows,),
                                seed=seed)  # fmt: skip
    report = result.reports[num_flows]
    gen = generate.load_generator(workdir)
    row = {"data": _name(data), "model": family, "epsilon": epsilon}
    for section, metric, name in HEADLINE:
        row[name] = report.value(section, metric)
    row["likelihood attack AUC"] = likelihood_attack(gen, result.prepared.splits, seed=seed)
    row["val bits/column"] = result.train_metrics.get("val_bits_per_column")
    row["train s"] = result.seconds["train"]
    row["tokens/s"] = result.train_metrics.get("tokens_per_second")
    privacy = result.train_metrics.get("privacy")
    row["epsilon spent"] = privacy["spent"]["total"]["epsilon"] if privacy else math.inf
    row["noise multiplier"] = privacy["plan"]["noise_multiplier"] if privacy else 0.0
    return row


def plot(rows: list[dict], path: str | os.PathLike) -> None:
    """Quality and attack AUCs against epsilon (inf at the right edge), a panel per metric."""
    names = ["column shape", "detection AUC", "TSTR/TRTR", "k-NN recall",
             "distance attack AUC", "likelihood attack AUC"]  # fmt: skip
    finite = sorted({r["epsilon"] for r in rows if math.isfinite(r["epsilon"])})
    at_inf = (finite[-1] * 3) if finite else 1.0
    fig = Figure(figsize=(13, 7))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    for ax, name in zip(axes.ravel(), names, strict=True):
        for key in sorted({(r["data"], r["model"]) for r in rows}):
            runs = sorted((r for r in rows if (r["data"], r["model"]) == key),
                          key=lambda r: r["epsilon"])  # fmt: skip
            x = [r["epsilon"] if math.isfinite(r["epsilon"]) else at_inf for r in runs]
            ax.plot(x, [r[name] for r in runs], marker="o", label=f"{key[0]} {key[1]}")
        if "attack" in name:
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks([*finite, at_inf], [*(f"{e:g}" for e in finite), "inf"])
        ax.set_title(name)
        ax.set_xlabel("epsilon")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_grid(
    datasets: list[str], families: list[str], epsilons: list[float], *,
    workdir: str | os.PathLike, out_dir: str | os.PathLike, steps: int, num_flows: int,
    noise_seed: int = -1, public_labels: dict[str, str] | None = None,
) -> list[dict]:  # fmt: skip
    """Every (dataset, model, epsilon) run; rows go to `<out_dir>/dp_tradeoff.json` as they
    finish (a rerun skips the rows already there), then the Markdown table and the plot.
    `public_labels` maps a dataset to its declared classes (`config.dp.public_labels`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dp_tradeoff.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    done = {(r["data"], r["model"], r["epsilon"]) for r in rows}
    for data in datasets:
        for family in families:
            for eps in epsilons:
                name = _name(data)
                if (name, family, eps) in done:
                    continue
                run_dir = _run_dir(workdir, name, family, eps)
                if run_dir.exists():
                    shutil.rmtree(run_dir)  # a half-finished run: start it again
                logging.info("dp trade-off: %s %s epsilon %g", name, family, eps)
                labels = (public_labels or {}).get(data, "")
                rows.append(run_one(data, family, eps, run_dir, steps=steps, num_flows=num_flows,
                                    noise_seed=noise_seed, public_labels=labels))  # fmt: skip
                files.write_atomic(path, json.dumps(rows, indent=1, default=float))
    _write_outputs(rows, out)
    return rows


def rescore_likelihood(
    datasets: list[str], *, workdir: str | os.PathLike, out_dir: str | os.PathLike
) -> list[dict]:
    """Scores the likelihood attack again on the checkpoints of the rows in
    `<out_dir>/dp_tradeoff.json` (after a change to `likelihood_attack`); rewrites the outputs."""
    out = Path(out_dir)
    rows = json.loads((out / "dp_tradeoff.json").read_text())
    paths = {_name(d): d for d in datasets}
    for row in rows:
        run_dir = _run_dir(workdir, row["data"], row["model"], row["epsilon"])
        gen = generate.load_generator(run_dir)
        config = pipeline.model_config(row["model"], "default")
        config.dp.epsilon = 0.0 if math.isinf(row["epsilon"]) else row["epsilon"]
        prepared = fjdata.prepare_data(config, paths[row["data"]],
                                       tokenizer_json=gen.tokenizer.to_json())  # fmt: skip
        row["likelihood attack AUC"] = likelihood_attack(gen, prepared.splits)
    files.write_atomic(out / "dp_tradeoff.json", json.dumps(rows, indent=1, default=float))
    _write_outputs(rows, out)
    return rows


def _name(data: str) -> str:
    return Path(str(data)).name.split(".")[0]


def _run_dir(workdir: str | os.PathLike, name: str, family: str, epsilon: float) -> Path:
    return Path(workdir) / f"{name}_{family}_eps{epsilon:g}"


def _write_outputs(rows: list[dict], out: Path) -> None:
    files.write_atomic(out / "dp_tradeoff.md", pipeline.markdown_table(rows))
    plot(rows, out / "dp_tradeoff.png")
