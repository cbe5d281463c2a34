"""Token directories: one memory-mappable .npy file of sentences per split, written atomically.

A directory holds `<split>.tokens.npy` (uint16 [n, 1 + F] when the vocabulary fits, else
int32), `<split>.rows.npy` (int64 [n], the global row index of each sentence),
`tokenizer.json`, `schema.json`, the bounded sample (`sample.parquet`, `sample.rows.npy`)
and `tokens.json`, which lists them with the source file's size and mtime, the settings
they were made with, the fingerprint and the rows per split. Every file is written under a
temporary name and renamed; `tokens.json` is removed first and written last, so a
directory without it, or whose files do not have the shapes it lists, is never reused.
Files are appended to, not memory-mapped, while writing: written pages are page cache, not
the writer's memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

META = "tokens.json"
SAMPLE = "sample.parquet"  # the bounded sample of real rows (evaluation compares with it)
FORMAT = 1
SPLITS = ("train", "val", "test")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every token fits (vocab_size <= 65535), else int32."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.int32)


def source_stamp(path: Path) -> dict[str, Any]:
    """The source file's absolute path, size and modification time (ns)."""
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class Writer:
    """Appends sentences and row indices to each split's file, then commits the directory.

    Args:
      token_dir: the directory (created if missing); its `tokens.json` is removed at once.
      counts: rows each split will get ({'train': n, ...}); `commit` checks them.
      seq_len: 1 + F.
      dtype: the token dtype.
    """

    def __init__(self, token_dir: Path, *, counts: dict[str, int], seq_len: int, dtype):
        self.dir = Path(token_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / META).unlink(missing_ok=True)
        self.counts, self.written = dict(counts), dict.fromkeys(counts, 0)
        self.seq_len, self.dtype = seq_len, np.dtype(dtype)
        self.files = {}
        for name, n in self.counts.items():
            self.files[name] = (_open_npy(self._tmp(f"{name}.tokens.npy"), self.dtype,
                                          (n, seq_len)),
                                _open_npy(self._tmp(f"{name}.rows.npy"), np.dtype(np.int64),
                                          (n,)))  # fmt: skip

    def _tmp(self, name: str) -> Path:
        return self.dir / f"{name}.tmp"

    def write(self, split: str, tokens: np.ndarray, rows: np.ndarray) -> None:
        """Appends int [m, seq_len] sentences and their int64 [m] row indices to `split`."""
        if self.written[split] + len(tokens) > self.counts[split]:
            raise ValueError(
                f"{self.dir}: more {split} rows than the survey counted "
                f"({self.counts[split]}); did the source change while reading?"
            )
        tok_file, row_file = self.files[split]
        tok_file.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        row_file.write(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
        self.written[split] += len(tokens)

    def commit(self, meta: dict[str, Any], texts: dict[str, str], sample: pd.DataFrame,
               sample_rows: np.ndarray) -> None:  # fmt: skip
        """Closes the split files, writes the side files, then `tokens.json`, each atomically."""
        if self.written != self.counts:
            self.abort()
            raise ValueError(
                f"{self.dir}: wrote {self.written} rows, the survey counted "
                f"{self.counts}; did the source change while reading?"
            )
        for name, (tok_file, row_file) in self.files.items():
            for f, final in ((tok_file, f"{name}.tokens.npy"), (row_file, f"{name}.rows.npy")):
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(self._tmp(final), self.dir / final)
        for name, text in texts.items():
            _write_text(self.dir / name, text)
        sample.to_parquet(self._tmp(SAMPLE), index=False)
        os.replace(self._tmp(SAMPLE), self.dir / SAMPLE)
        with open(self._tmp("sample.rows.npy"), "wb") as f:
            np.save(f, np.asarray(sample_rows, np.int64))
        os.replace(self._tmp("sample.rows.npy"), self.dir / "sample.rows.npy")
        splits = {name: {"rows": n, "tokens": f"{name}.tokens.npy", "index": f"{name}.rows.npy"}
                  for name, n in self.counts.items()}  # fmt: skip
        meta = {"format": FORMAT, **meta, "dtype": self.dtype.name, "seq_len": self.seq_len,
                "splits": splits, "sample": SAMPLE,
                "sample_rows": "sample.rows.npy"}  # fmt: skip
        _write_text(self.dir / META, json.dumps(meta, indent=1))

    def abort(self) -> None:
        """Closes and removes the temporary files."""
        for tok_file, row_file in self.files.values():
            for f in (tok_file, row_file):
                f.close()
                Path(f.name).unlink(missing_ok=True)


def read_complete(token_dir: Path, **expected: Any) -> dict[str, Any] | None:
    """`tokens.json` of a complete directory whose entries equal `expected` (e.g. source,
    settings), every listed file present with its listed shape; else None."""
    path = Path(token_dir) / META
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("format") != FORMAT or any(meta.get(k) != v for k, v in expected.items()):
        return None
    try:
        for split in meta["splits"].values():
            tokens = open_array(Path(token_dir) / split["tokens"])
            index = open_array(Path(token_dir) / split["index"])
            if (tokens.shape != (split["rows"], meta["seq_len"]) or tokens.dtype != meta["dtype"]
                    or index.shape != (split["rows"],)):  # fmt: skip
                return None
        for name in ("tokenizer", "schema", "sample", "sample_rows"):
            if not (Path(token_dir) / meta[name]).is_file():
                return None
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return meta


def open_array(path: Path) -> np.ndarray:
    """A read-only memory map of a .npy file (an empty array is read, not mapped)."""
    array = np.load(path, mmap_mode="r")
    return np.load(path) if array.size == 0 else array


def _open_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]):
    f = open(path, "wb")  # noqa: SIM115 - closed by Writer.commit or Writer.abort
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    return f


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
