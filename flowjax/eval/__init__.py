"""Evaluation of synthetic flow tables: fidelity, detection, coverage, utility, privacy, validity.

numpy, pandas, scipy, scikit-learn and matplotlib only: importing this package
never imports JAX, so it can judge any generator's output.

    report = evaluate(train, holdout, synthetic)
    print(report.to_markdown())
    write_report(report, "out/", train=train, holdout=holdout, synthetic=synthetic)
"""

from flowjax.eval.evaluator import SECTIONS, evaluate
from flowjax.eval.report import EvalReport, Row, Section


def __getattr__(name: str):
    if name == "write_report":  # matplotlib is imported only when a report is written
        from flowjax.eval.output import write_report

        return write_report
    raise AttributeError(f"module 'flowjax.eval' has no attribute {name!r}")


__all__ = ["SECTIONS", "EvalReport", "Row", "Section", "evaluate", "write_report"]
