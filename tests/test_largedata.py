"""The out-of-core data path (`flowjax.largedata`) against the in-memory one, on small tables
streamed in record batches much smaller than the table."""

import json
import shutil

import jax
import numpy as np
import pandas as pd
import pytest

from flowjax import configs, data, datasets, largedata, parallel, pipeline, train
from flowjax.largedata import build, fit, reader, rows, tokenfile

BATCH = 500  # rows per record batch: the lab table (4,363 rows) streams in 9 batches


def _config(**data_options):
    config = configs.get_config("rnn", "default")
    config.data.out_of_core = "on"
    config.data.out_of_core_sample = 1_000_000  # larger than every table here: all rows
    for key, value in data_options.items():
        config.data[key] = value
    return config


def _in_memory(config, source):
    """The table as load_table reads it, its hash split, and the tokenizer fitted in memory
    on the split's training rows with the whole table as vocabulary."""
    frame, schema = data.load_table(config, source)
    parts = rows.split_of(np.arange(len(frame)), fractions=tuple(config.data.split),
                          seed=config.data.split_seed)  # fmt: skip
    train = np.flatnonzero(parts == rows.TRAIN)
    tok = data._tokenizer(config, frame.iloc[train], schema, frame, None)
    return frame, parts, tok


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    config = _config()
    token_dir = tmp_path_factory.mktemp("lab") / "tokens"
    prepared = largedata.prepare(config, "lab", token_dir=token_dir, batch_rows=BATCH)
    return config, token_dir, prepared, *_in_memory(config, "lab")


def test_tokenizer_equals_the_in_memory_fit(lab):
    _, _, prepared, _, _, tok = lab
    assert json.loads(prepared.tokenizer.to_json()) == json.loads(tok.to_json())
    assert prepared.schema == tok.schema


def test_token_files_equal_in_memory_encoding_row_for_row(lab):
    _, _, prepared, frame, parts, tok = lab
    tokens = tok.encode(frame)
    for k, name in enumerate(tokenfile.SPLITS):
        idx = np.flatnonzero(parts == k)
        on_disk = getattr(prepared.splits, name)
        assert isinstance(on_disk, np.memmap)
        np.testing.assert_array_equal(getattr(prepared.splits, f"{name}_idx"), idx)
        np.testing.assert_array_equal(np.asarray(on_disk, dtype=np.int32), tokens[idx])


def test_small_vocabulary_is_stored_as_uint16(lab):
    _, _, prepared, *_ = lab
    assert prepared.tokenizer.vocab_size <= 65535
    assert prepared.splits.train.dtype == np.uint16
    assert tokenfile.token_dtype(70_000) == np.int32


def test_get_batch_on_the_memmap_equals_in_memory(lab):
    _, _, prepared, frame, parts, tok = lab
    in_memory = tok.encode(frame)[parts == rows.TRAIN]
    n = len(in_memory)
    batch_size = 1000
    steps = range(n // batch_size + 3)  # past the first epoch boundary
    for step in steps:
        got = data.get_batch(prepared.splits.train, step=step, batch_size=batch_size, seed=7)
        want = data.get_batch(in_memory, step=step, batch_size=batch_size, seed=7)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)


def test_fingerprint_and_sample_match_the_in_memory_table(lab):
    _, _, prepared, frame, parts, _ = lab
    assert prepared.fingerprint == data.data_fingerprint(frame, "lab")
    pd.testing.assert_frame_equal(prepared.sample(), frame)
    np.testing.assert_array_equal(prepared.sample_rows, np.arange(len(frame)))
    holdout = largedata.sample_part(prepared, "test")
    pd.testing.assert_frame_equal(holdout, frame[parts == rows.TEST].reset_index(drop=True))


def test_a_complete_token_dir_is_reused_and_a_half_written_one_is_not(lab, tmp_path, monkeypatch):
    config, token_dir, prepared, *_ = lab
    copy = tmp_path / "tokens"
    shutil.copytree(token_dir, copy)

    def no_pass(*args, **kwargs):
        raise AssertionError("a complete token dir was re-tokenized")

    with monkeypatch.context() as m:  # complete: reopened without reading the table
        m.setattr(reader, "scan", no_pass)
        again = largedata.prepare(config, "lab", token_dir=copy, batch_rows=BATCH)
        np.testing.assert_array_equal(again.splits.val, prepared.splits.val)
    scans = []
    real_scan = reader.scan
    monkeypatch.setattr(reader, "scan", lambda *a, **k: scans.append(1) or real_scan(*a, **k))
    val = copy / "val.tokens.npy"  # a split file cut short, as by a crash while writing
    val.write_bytes(val.read_bytes()[:-7])
    redone = largedata.prepare(config, "lab", token_dir=copy, batch_rows=BATCH)
    np.testing.assert_array_equal(redone.splits.val, prepared.splits.val)
    (copy / tokenfile.META).unlink()  # files without tokens.json: never taken as complete
    redone = largedata.prepare(config, "lab", token_dir=copy, batch_rows=BATCH)
    np.testing.assert_array_equal(redone.splits.test, prepared.splits.test)
    assert len(scans) == 2
    assert not list(copy.glob("*.tmp"))


def test_parquet_gives_the_same_tokens_as_csv(lab, tmp_path):
    config, _, prepared, *_ = lab
    pd.read_csv(datasets.resolve("lab"), keep_default_na=False, na_values=[]).to_parquet(
        tmp_path / "lab.parquet", row_group_size=700
    )
    other = largedata.prepare(config, tmp_path / "lab.parquet", token_dir=tmp_path / "tok",
                              batch_rows=BATCH)  # fmt: skip
    assert other.tokenizer.to_json() == prepared.tokenizer.to_json()
    np.testing.assert_array_equal(other.splits.train, prepared.splits.train)


@pytest.mark.parametrize("sample", [1_000_000, 100])  # the bad row in the sample, or not
def test_a_bad_cell_names_file_column_and_line(tmp_path, sample):
    frame = pd.read_csv(datasets.resolve("lab"), keep_default_na=False, na_values=[]).head(1200)
    top = rows.sample_threshold(len(frame), size=sample, fraction=1.0, seed=0)
    bad = int(np.flatnonzero(rows.sample_hash(np.arange(len(frame)), seed=0) > top)[-1]) if (
        sample < len(frame)) else 1037  # fmt: skip
    frame["flow_duration"] = frame["flow_duration"].astype(str)
    frame.loc[bad, "flow_duration"] = "12,5 s"  # data row r is line r + 2 of the file
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    config = _config(out_of_core_sample=sample)
    with pytest.raises(ValueError, match=rf"bad\.csv: column 'flow_duration', line {bad + 2}\b"):
        largedata.prepare(config, path, token_dir=tmp_path / "tok", batch_rows=BATCH)
    assert not (tmp_path / "tok" / tokenfile.META).exists()


def test_a_relation_that_fails_outside_the_sample_is_dropped(tmp_path):
    frame = pd.read_csv(datasets.resolve("lab"), keep_default_na=False, na_values=[]).head(2000)
    config = _config(out_of_core_sample=300)
    top = rows.sample_threshold(len(frame), size=300, fraction=1.0, seed=0)
    outside = int(np.flatnonzero(rows.sample_hash(np.arange(len(frame)), seed=0) > top)[-1])
    frame.loc[outside, "subflow_fwd_pkts"] += 1  # equal to tot_fwd_pkts except on this row
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    opts = fit.Options.from_config(config, batch_rows=BATCH)
    sample = fit.collect_sample(reader.scan(path, batch_rows=BATCH), opts)
    assert "subflow_fwd_pkts" in sample.candidate.relations.targets  # the sample shows a copy
    prepared = largedata.prepare(config, path, token_dir=tmp_path / "tok", batch_rows=BATCH)
    assert "subflow_fwd_pkts" not in prepared.schema.relations.targets
    assert "subflow_fwd_pkts" in prepared.schema.sentence_columns
    assert prepared.schema.relations.rows == len(frame)


def test_row_hash_split_is_stable_and_has_the_configured_fractions():
    n = 200_000
    parts = rows.split_of(np.arange(n), fractions=(0.8, 0.1, 0.1), seed=3)
    shares = np.bincount(parts, minlength=3) / n
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.005)
    picked = np.array([5, 77_777, 199_999])  # any process places any row on its own
    np.testing.assert_array_equal(rows.split_of(picked, fractions=(0.8, 0.1, 0.1), seed=3),
                                  parts[picked])  # fmt: skip
    other = rows.split_of(np.arange(n), fractions=(0.8, 0.1, 0.1), seed=4)
    assert (other != parts).mean() > 0.2
    with pytest.raises(ValueError, match="summing to 1"):
        rows.split_of(picked, fractions=(0.8, 0.3, 0.1), seed=0)


def test_the_switch_and_the_refusals(tmp_path):
    config = configs.get_config("rnn", "default")
    assert config.data.out_of_core == "auto"
    assert not largedata.enabled(config, "lab")  # 4,363 rows: the in-memory path
    config.data.out_of_core_bytes = 1000
    assert largedata.enabled(config, "lab")
    config.data.out_of_core = "off"
    assert not largedata.enabled(config, "lab")
    config.data.out_of_core = "sometimes"
    with pytest.raises(ValueError, match="out_of_core"):
        largedata.enabled(config, "lab")
    clip = _config(nonfinite="clip")
    with pytest.raises(ValueError, match="clip"):
        largedata.prepare(clip, "lab", token_dir=tmp_path / "t")
    trace = _config()
    trace.data.trace.enabled = True
    with pytest.raises(ValueError, match="trace mode"):
        largedata.prepare(trace, "lab", token_dir=tmp_path / "t")
    private = _config()
    private.dp.epsilon = 1.0
    with pytest.raises(ValueError, match="differential privacy"):
        largedata.prepare(private, "lab", token_dir=tmp_path / "t")
    assert build.DEFAULT_BATCH_ROWS > BATCH


def test_a_cic_file_with_infinity_matches_in_memory(shared_data, tmp_path):
    source = shared_data / "cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz"
    config = _config()
    prepared = largedata.prepare(config, source, token_dir=tmp_path / "tok", batch_rows=997)
    frame, parts, tok = _in_memory(config, source)
    assert prepared.tokenizer.to_json() == tok.to_json()
    test_rows = np.flatnonzero(parts == rows.TEST)
    np.testing.assert_array_equal(prepared.splits.test, tok.encode(frame)[test_rows])


def test_training_reads_the_token_files_and_resumes_on_them(tmp_path):
    config = configs.get_config("rnn", "tiny")
    config.update(num_steps=6, log_every=1, eval_every=6, checkpoint_every=3)
    config.data.out_of_core = "on"
    mesh = parallel.make_mesh(jax.devices()[:1])
    metrics, prepared = train.train_model(config, tmp_path, data="lab", mesh=mesh)
    assert isinstance(prepared.splits.train, np.memmap)
    stamp = (tmp_path / "tokens" / "tokens.json").stat().st_mtime_ns
    losses = [h["train_loss"] for h in metrics["history"]]
    assert len(losses) == 6 and np.isfinite(losses).all() and losses[-1] < losses[0]
    config.num_steps = 8  # a resumed run reopens the token files instead of tokenizing again
    resumed, _ = train.train_model(config, tmp_path, data="lab", mesh=mesh)
    assert [h["step"] for h in resumed["history"]] == [7, 8]
    assert (tmp_path / "tokens" / "tokens.json").stat().st_mtime_ns == stamp
    real = pipeline.real_tables(prepared)  # evaluation compares with the sample's split rows
    assert len(real.train) > len(real.holdout) > 0
    assert list(real.train.columns) == list(real.holdout.columns)
