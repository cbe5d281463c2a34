"""Benchmark: tokenizer encode/decode throughput (rows/s) on a real CIC file resampled to N rows.

python -m experiments.bench_tokenizer --rows=1000000
"""

import time

from absl import app, flags

from experiments import SHARED_DATA
from flowjax.io import load_flows
from flowjax.tokenizer import FlowTokenizer

flags.DEFINE_string(
    "data", str(SHARED_DATA / "cicids2017_trafficlabelling_thursday_webattacks_balanced.csv.gz"),
    "flow table to resample",
)  # fmt: skip
flags.DEFINE_integer("rows", 1_000_000, "rows to encode and decode")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    flows = load_flows(FLAGS.data)
    schema = flows.schema
    big = flows.frame.sample(FLAGS.rows, replace=True, random_state=0).reset_index(drop=True)
    for mode in ("per_column", "paper"):
        frame = big
        if mode == "paper":  # the paper mode has no NaN/Infinity symbols
            frame = big.replace([float("inf"), float("-inf")], 0.0).fillna(0.0)
        tok = FlowTokenizer(mode=mode).fit(frame, schema)
        start = time.perf_counter()
        tokens = tok.encode(frame)
        mid = time.perf_counter()
        tok.decode(tokens)
        end = time.perf_counter()
        print(
            f"{mode:10s} {FLAGS.rows:,} rows x {tok.seq_len - 1} columns: "
            f"encode {mid - start:.2f} s ({FLAGS.rows / (mid - start):,.0f} rows/s), "
            f"decode {end - mid:.2f} s ({FLAGS.rows / (end - mid):,.0f} rows/s)"
        )


if __name__ == "__main__":
    app.run(main)
