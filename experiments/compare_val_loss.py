"""Validation loss of each model in the paper setting and the default setting, after equal steps.

Usage:
  python experiments/compare_val_loss.py \
    --data=/path/to/cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz \
    --workdir=runs/compare --steps=1000 [--batch_size=64]

For every family, the `paper` preset (the study's network, optimizer and pooled
49-bin alphabet) and the `default` preset (per-column tokens) are trained for
the same number of steps (and, with --batch_size, on the same batch size), then
scored on the validation split. Nats per flow are not comparable across the two
tokenizer modes (different alphabets and column sets); bits per column put them
on one scale per symbol. Prints a markdown table.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from flowjax import checkpoint, configs, train

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Flow file or dataset name.")
flags.DEFINE_string("workdir", None, "Root directory; one run directory per model and preset.")
flags.DEFINE_integer("steps", 1000, "Training steps for every run.")
flags.DEFINE_integer("batch_size", 0, "Batch size for every run (0: each preset's own).")
flags.DEFINE_list("families", list(configs.FAMILIES), "Model families.")
flags.DEFINE_list("presets", ["paper", "default"], "Presets to compare.")
flags.mark_flags_as_required(["data", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    checkpoint.quiet_orbax_logs()
    rows = []
    for family in FLAGS.families:
        for preset in FLAGS.presets:
            config = configs.with_steps(configs.get_config(family, preset), FLAGS.steps)
            if FLAGS.batch_size:
                config.batch_size = FLAGS.batch_size
            workdir = Path(FLAGS.workdir) / f"{family}_{preset}"
            m = train.train_and_evaluate(config, workdir, data=FLAGS.data)
            rows.append(
                f"| {family} | {preset} | {config.tokenizer.mode} | {m['vocab_size']} | "
                f"{m['seq_len'] - 1} | {m['num_params']:,} | {m['step']} | {config.batch_size} | "
                f"{m['val_loss']:.2f} | {m['val_bits_per_column']:.3f} |"
            )
            print(rows[-1], flush=True)
    print("\n| model | preset | tokenizer | vocab | columns | params | steps | batch | "
          "val nats/flow | val bits/column |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
