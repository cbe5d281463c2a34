"""Prints the validation report, the inferred schema and the vocabulary sizes of flow tables.

python -m experiments.describe_data --data=lab --data=../shared/data/ugr16_netflow_sample1k.csv.gz
"""

import collections

from absl import app, flags

from flowjax.io import BadValuePolicy, load_flows
from flowjax.tokenizer import FlowTokenizer

flags.DEFINE_multi_string("data", ["lab"], "flow tables (paths or shipped dataset names)")
flags.DEFINE_string("label", None, "label column (default: inferred from the dialect)")
FLAGS = flags.FLAGS


def describe(path: str) -> str:
    """The report, schema and vocabulary sizes of one table, as Markdown."""
    flows = load_flows(path, label=FLAGS.label)
    kinds = collections.defaultdict(list)
    for col, kind in flows.schema.kinds:
        kinds[kind].append(col)
    per_column = FlowTokenizer().fit(flows.frame, flows.schema)
    clean = load_flows(path, label=FLAGS.label, policy=BadValuePolicy(nonfinite="drop"))
    paper = FlowTokenizer(mode="paper").fit(clean.frame, clean.schema)
    lines = [f"### {path}", "", "```", flows.report.summary(), "```", ""]
    lines.append(f"- label: `{flows.schema.label}`; sentence: {len(flows.schema.sentence_columns)}"
                 f" columns")  # fmt: skip
    for kind, cols in kinds.items():
        shown = ", ".join(f"`{c}`" for c in cols[:8]) + (" ..." if len(cols) > 8 else "")
        lines.append(f"- {kind} ({len(cols)}): {shown}")
    lines.append(
        f"- vocabulary: per_column {per_column.vocab_size} (sentence length {per_column.seq_len}); "
        f"paper {paper.vocab_size} (sentence length {paper.seq_len}, "
        f"{clean.report.rows_kept} rows after dropping NaN/Infinity)"
    )
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    for path in FLAGS.data:
        print(describe(path))


if __name__ == "__main__":
    app.run(main)
