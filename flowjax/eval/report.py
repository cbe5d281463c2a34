"""The evaluation result: metric rows next to their real reference, flags, JSON and markdown.

Every row holds the synthetic table's value and the reference value, the one
the real held-out table gets when it is scored as if it were synthetic. A
reader compares the two columns, never the synthetic value alone.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np


@dataclasses.dataclass
class Row:
    """One headline line: a metric for the synthetic table and for the real reference."""

    metric: str
    synthetic: float | None
    reference: float | None
    note: str = ""


@dataclasses.dataclass
class Section:
    """The result of one metric family: headline rows, JSON-safe details and notes."""

    name: str
    rows: list[Row]
    details: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def value(self, metric: str, which: str = "synthetic") -> float | None:
        """The value of a named row; raises ValueError naming unknown metrics."""
        for row in self.rows:
            if row.metric == metric:
                return getattr(row, which)
        raise ValueError(f"section {self.name!r} has no metric {metric!r}")


def json_safe(value):
    """Converts numpy scalars/arrays and non-finite floats (-> None) for json.dumps."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) >= 1000 or value == int(value) and abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.3f}"


@dataclasses.dataclass
class EvalReport:
    """Everything `flowjax.eval.evaluate` measured, with flags for a reader in a hurry."""

    n_rows: dict[str, int]
    columns: dict
    sampling: dict
    sections: dict[str, Section]
    flags: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    nonfinite: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def value(self, section: str, metric: str, which: str = "synthetic") -> float | None:
        """Shortcut: `report.value('coverage', 'k-NN recall', 'reference')`."""
        if section not in self.sections:
            raise ValueError(f"no section {section!r}; sections: {list(self.sections)}")
        return self.sections[section].value(metric, which)

    def headline(self) -> list[dict]:
        """Rows {section, metric, synthetic, reference, note}, in section order."""
        return [
            {"section": s.name, **json_safe(dataclasses.asdict(r))}
            for s in self.sections.values()
            for r in s.rows
        ]

    def to_dict(self) -> dict:
        """A JSON-safe dict of the whole report."""
        return json_safe(
            {
                "n_rows": self.n_rows,
                "columns": self.columns,
                "sampling": self.sampling,
                "headline": self.headline(),
                "flags": self.flags,
                "warnings": self.warnings,
                "nonfinite": self.nonfinite,
                "seconds": self.seconds,
                "sections": {
                    k: {"details": s.details, "notes": s.notes, "seconds": s.seconds}
                    for k, s in self.sections.items()
                },
            }
        )

    def to_markdown(self) -> str:
        """The headline table (metric, synthetic, real reference, note) with flags and notes."""
        n = self.n_rows
        lines = [
            "# Synthetic flows: evaluation report",
            "",
            f"Rows: train {n['train']:,}, holdout {n['holdout']:,}, synthetic {n['synthetic']:,}."
            f" Columns compared: {len(self.columns['numeric'])} numeric, "
            f"{len(self.columns['categorical'])} categorical (label: {self.columns['label']}).",
            "Reference = the real held-out table scored as if it were synthetic.",
            "",
        ]
        if self.flags:
            lines += ["## Flags", "", *[f"- **{f}**" for f in self.flags], ""]
        lines += ["## Headline", "", "| metric | synthetic | real reference | note |"]
        lines.append("|---|---|---|---|")
        for s in self.sections.values():
            for r in s.rows:
                cells = [r.metric, _fmt(r.synthetic), _fmt(r.reference), r.note]
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        notes = [f"{s.name}: {note}" for s in self.sections.values() for note in s.notes]
        if self.warnings or notes:
            lines += ["", "## Notes", "", *[f"- {w}" for w in self.warnings + notes]]
        if self.columns["dropped"]:
            dropped = ", ".join(f"`{c}` ({why})" for c, why in self.columns["dropped"].items())
            lines += ["", f"Columns not compared: {dropped}."]
        lines += ["", f"Sampling: {json.dumps(json_safe(self.sampling))}."]
        lines += [f"Evaluated in {self.seconds:.1f} s."]
        return "\n".join(lines) + "\n"
