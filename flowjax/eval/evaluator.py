"""`evaluate`: runs every metric family on (train, holdout, synthetic) and raises the flags.

Each metric scores a table against the real training table twice: once for the
synthetic table and once for the real held-out table, whose value is the
reference a perfect generator would reach. Tables larger than `max_rows` are
subsampled, and the metrics whose cost grows with rows squared (one-class SVM
fits, k-NN manifolds, distances to closest records) use at most
`max_quadratic_rows` rows; the report records both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import tqdm
from absl import logging
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from flowjax.eval import coverage, detection, fidelity, inliers, network, privacy, utility, validity
from flowjax.eval.features import Encoder, Tables, infer_columns, nonfinite_counts, subsample
from flowjax.eval.report import EvalReport, Section

SECTIONS = (
    "fidelity", "detection", "coverage", "inliers", "utility", "privacy", "validity", "network"
)  # fmt: skip


def _check_table(name: str, frame) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) < 10:
        raise ValueError(f"{name} has {len(frame)} rows; at least 10 are needed to evaluate")


def _flags(report: EvalReport) -> list[str]:
    """Plain-language alarms from the headline values against their references."""
    flags = []

    def get(section, metric):
        if section not in report.sections:
            return None, None
        sec = report.sections[section]
        if not any(r.metric == metric for r in sec.rows):
            return None, None
        return sec.value(metric), sec.value(metric, "reference")

    inl, inl_ref = get("inliers", inliers.TITLES["robust_rbf"])
    rec, rec_ref = get("coverage", "k-NN recall")
    if inl is not None and rec is not None:
        if inl > inl_ref + 2.0 and rec < 0.8 * rec_ref:
            flags.append(
                f"inlier rate above the real reference ({inl:.1f} % vs {inl_ref:.1f} %) and recall"
                f" low ({rec:.2f} vs {rec_ref:.2f}): looks like mode collapse"
            )
        elif rec < 0.8 * rec_ref:
            flags.append(f"recall {rec:.2f} vs {rec_ref:.2f}: synthetic rows miss real modes")
    closer, closer_ref = get("privacy", "share closer to train than holdout")
    if closer is not None and closer > max(0.6, closer_ref + 0.1):
        flags.append(
            f"synthetic rows closer to training than holdout rows ({closer:.2f} vs"
            f" {closer_ref:.2f}): memorisation risk"
        )
    copies, copies_ref = get("privacy", "exact copies of train rows %")
    if copies is not None and copies > copies_ref + 5.0 and copies > 1.5 * copies_ref:
        flags.append(
            f"{copies:.1f} % of synthetic rows copy a training row (real rate {copies_ref:.1f} %)"
        )
    mia, mia_ref = get("privacy", "membership-inference AUC")
    if mia is not None and mia > max(0.6, mia_ref + 0.1):
        flags.append(f"membership inference works (AUC {mia:.2f} vs {mia_ref:.2f})")
    auc, _ = get("detection", "detection ROC AUC")
    if auc is not None and auc > 0.9:
        flags.append(f"a classifier tells synthetic from real rows (AUC {auc:.3f})")
    ratio, _ = get("utility", "TSTR / TRTR macro-F1")
    if ratio is not None and ratio < 0.8:
        flags.append(f"classifiers trained on synthetic rows reach {ratio:.2f} of TRTR macro-F1")
    valid, valid_ref = get("validity", "valid rows % (all domain rules)")
    if valid is not None and valid < valid_ref - 5.0:
        flags.append(
            f"{valid:.1f} % of synthetic rows pass the domain rules (real {valid_ref:.1f} %)"
        )
    return flags


def evaluate(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    categorical: Sequence[str] | None = None,
    label: str | None = None,
    seed: int = 0,
    max_rows: int = 100_000,
    max_quadratic_rows: int = 5_000,
    max_fit_rows: int = 20_000,
    sections: Sequence[str] = SECTIONS,
    ocsvm_protocols: Sequence[str] = tuple(inliers.PROTOCOLS),
    threads: int | None = 1,
    real_addresses: set[str] | None = None,
) -> EvalReport:
    """Scores a synthetic flow table against real training data, next to a real reference.

    Args:
      train: the real rows the generator was trained on.
      holdout: real rows the generator never saw; scored as if synthetic, they
        give the reference value of every metric.
      synthetic: the generated rows.
      categorical: the categorical columns (label included); inferred when None.
      label: the class column; by default the column whose canonical key is 'label'.
      seed: seeds every subsample and classifier.
      max_rows: rows per table above which tables are subsampled.
      max_quadratic_rows: rows per table for the quadratic-cost metrics.
      max_fit_rows: rows a classifier is trained on (detection: half per class).
      sections: which metric families to run, from SECTIONS.
      ocsvm_protocols: which one-class SVM protocols to run (see `inliers.PROTOCOLS`).
      threads: OpenMP/BLAS threads for scikit-learn (None: the libraries' default,
        all cores). The default of 1 is deliberate: on a machine shared with other
        busy processes, scikit-learn's spinning OpenMP threads made the gradient-
        boosted classifiers 10-40x slower, while one thread costs at most ~2x.
      real_addresses: the original addresses of the real tables when they were
        pseudonymised for training (`privacy.addresses_of` of the unpseudonymised table):
        the privacy section counts those that appear in the synthetic table.

    Returns:
      The report.
    """
    start = time.perf_counter()
    full = {"train": train, "holdout": holdout, "synthetic": synthetic}
    for name, frame in full.items():
        _check_table(name, frame)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; known: {SECTIONS}")
    unknown = set(ocsvm_protocols) - set(inliers.PROTOCOLS)
    if unknown:
        raise ValueError(
            f"unknown OCSVM protocol {sorted(unknown)}; known: {list(inliers.PROTOCOLS)}"
        )
    cols = infer_columns(train, holdout, synthetic, categorical=categorical, label=label)
    compared = list(cols.numeric) + list(cols.categorical)
    if not compared:
        raise ValueError("the three tables have no compared column in common")
    warnings, nonfinite = [], {}
    for name, frame in full.items():
        counts = nonfinite_counts(frame, cols.numeric)
        if counts:
            nonfinite[name] = counts
            warnings.append(
                f"{name}: {sum(counts.values()):,} NaN/inf cells in {len(counts)} columns,"
                " replaced by the training finite max/min/median in scaled metrics"
            )
    sampled = {
        name: subsample(frame, max_rows, np.random.default_rng([seed, 100 + i]))
        for i, (name, frame) in enumerate(full.items())
    }
    for name, frame in sampled.items():
        if len(frame) < len(full[name]):
            warnings.append(
                f"{name}: {len(frame):,} of {len(full[name]):,} rows sampled (max_rows)"
            )
    tables = Tables(
        sampled["train"], sampled["holdout"], sampled["synthetic"], cols,
        Encoder.fit(sampled["train"], cols), seed, max_quadratic_rows,
    )  # fmt: skip
    runners = {
        "fidelity": lambda: fidelity.fidelity(tables),
        "detection": lambda: detection.detection(tables, max_rows=max_fit_rows // 2),
        "coverage": lambda: coverage.coverage(tables),
        "inliers": lambda: inliers.inlier_rates(tables, protocols=tuple(ocsvm_protocols)),
        "utility": lambda: utility.utility(tables, max_rows=max_fit_rows),
        "privacy": lambda: privacy.privacy(tables, real_addresses),
        "validity": lambda: validity.validity(synthetic, holdout),
        "network": lambda: network.network(tables, max_windows=max_fit_rows // 2),
    }
    results: dict[str, Section] = {}
    todo = [name for name in SECTIONS if name in sections]
    # A bar on a console only (disable=None: off when stderr is not a terminal).
    bar = tqdm.tqdm(todo, desc="evaluate", unit="section", disable=None)
    with threadpool_limits(limits=threads), bar:
        for name in bar:
            bar.set_postfix_str(name)
            section = runners[name]()
            if section is not None:  # network: None when the tables have no network column
                results[name] = section
                logging.info("eval %s: %.1f s", name, section.seconds)
    report = EvalReport(
        n_rows={k: len(v) for k, v in full.items()},
        columns={
            "numeric": list(cols.numeric),
            "categorical": list(cols.categorical),
            "label": cols.label,
            "dropped": cols.dropped,
        },
        sampling={
            "max_rows": max_rows,
            "max_quadratic_rows": max_quadratic_rows,
            "max_fit_rows": max_fit_rows,
            "rows_used": {k: len(v) for k, v in sampled.items()},
            "seed": seed,
            "threads": threads,
        },
        sections=results,
        warnings=warnings,
        nonfinite=nonfinite,
    )
    report.flags = _flags(report)
    report.seconds = time.perf_counter() - start
    return report
