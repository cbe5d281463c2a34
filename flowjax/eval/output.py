"""Writes an evaluation report to a folder: report.json, report.md and the figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from absl import logging

from flowjax.eval import figures
from flowjax.eval.report import EvalReport
from flowjax.files import write_atomic


def write_report(
    report: EvalReport,
    out_dir: str | os.PathLike,
    *,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
) -> list[Path]:
    """Writes report.json, report.md and the PNG figures into out_dir, each file atomically.

    Args:
      report: the result of `evaluate`.
      out_dir: created if missing.
      train, holdout, synthetic: the tables that were evaluated (for the histograms).

    Returns:
      The paths written.
    """
    out = Path(out_dir)
    text = json.dumps(report.to_dict(), indent=1, allow_nan=False)
    paths = [
        write_atomic(out / "report.json", text),
        write_atomic(out / "report.md", report.to_markdown()),
    ]
    pngs = figures.render_all(report, train=train, holdout=holdout, synthetic=synthetic)
    paths += [write_atomic(out / name, png) for name, png in pngs.items()]
    logging.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths
