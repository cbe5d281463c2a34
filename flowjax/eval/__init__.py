"""Evaluation of synthetic flow tables: fidelity, detection, coverage, utility, privacy, validity.

numpy, pandas, scipy, scikit-learn and matplotlib only: importing this package
never imports JAX, so it can judge any generator's output.

    report = evaluate(train, holdout, synthetic)
    print(report.to_markdown())
    write_report(report, "out/", train=train, holdout=holdout, synthetic=synthetic)
"""

from flowjax.eval.evaluator import SECTIONS, evaluate
from flowjax.eval.report import EvalReport, Row, Section, write_report

__all__ = ["SECTIONS", "EvalReport", "Row", "Section", "evaluate", "write_report"]
