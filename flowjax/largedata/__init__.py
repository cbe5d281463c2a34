"""Tables larger than memory: record batches -> streamed fit -> memory-mapped token files.

The out-of-core twin of `flowjax.data.prepare_data` (issue 15). `prepare(config, data,
token_dir=...)` returns a `data.Prepared` whose splits are memmapped token files, so
`data.get_batch` draws batches from disk with the same pure (seed, step) function;
`enabled(config, data)` says whether a run should take this path
(`config.data.out_of_core`: 'auto', 'on' or 'off').

- `reader`: pyarrow record batches typed and checked as `flowjax.io.load_flows` does;
- `rows`: a row's split and sample membership, pure functions of (seed, row index);
- `fit`: the bounded sample, the schema on it, the streamed survey and the tokenizer fit;
- `checks` and `vocab`: what the survey checks and counts;
- `tokenfile`: atomic, reusable token directories.
"""

from flowjax.largedata.build import LargePrepared, enabled, prepare, sample_part
from flowjax.largedata.rows import split_of

__all__ = ["LargePrepared", "enabled", "prepare", "sample_part", "split_of"]
