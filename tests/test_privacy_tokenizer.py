"""The DP tokenizer fit: rare private values never reach the tokenizer or schema; rows encode."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from flowjax import data, relations, table
from flowjax.configs import rnn
from flowjax.privacy import budget
from flowjax.privacy import tokenizer as private_tokenizer
from flowjax.schema import Schema, infer_schema

SENTINEL = "SENTINEL_7f3a9"
RARE_NUMBER = 987654.321
NOISE_MULTIPLIER, DELTA_THRESHOLD = 1.0, 1e-6


@pytest.fixture(scope="module")
def lab():
    """The tiny config under DP, the whole shipped `lab` table and its schema."""
    config = rnn.get_config("tiny")
    config.data.fraction = 1.0
    config.dp.epsilon = 1.0
    config.dp.noise_seed = 0
    frame, schema = data.load_table(config, "lab")
    return config, frame, schema


@pytest.fixture(scope="module")
def train(lab):
    config, frame, schema = lab
    tr, _, _ = data.split_indices(len(frame), frame[schema.label].to_numpy(),
                                  seed=config.data.split_seed)  # fmt: skip
    return frame.iloc[tr].reset_index(drop=True)


def fit(config, train, schema, *, seed=0):
    return private_tokenizer.fit_private(config, train, schema, noise_multiplier=NOISE_MULTIPLIER,
                                         delta_threshold=DELTA_THRESHOLD, seed=seed)  # fmt: skip


def with_sentinels(train):
    out = train.copy()
    out.loc[0, "label"] = SENTINEL
    out.loc[1, "flow_duration"] = RARE_NUMBER
    return out


def test_sentinels_never_reach_tokenizer_or_schema(lab, train):
    config, _, schema = lab
    private = with_sentinels(train)
    ordinary = data._tokenizer(config, private, schema, private, None).to_json()
    assert SENTINEL in ordinary and str(RARE_NUMBER) in ordinary  # the test can fail
    tok, dp_schema = fit(config, private, schema)
    for text in (tok.to_json(), dp_schema.to_json()):
        assert SENTINEL not in text
        assert str(RARE_NUMBER) not in text


def test_frequent_values_survive_and_rows_encode(lab, train):
    config, frame, schema = lab
    tok, dp_schema = fit(config, train, schema)
    codecs = dict(zip(tok.columns, tok.codecs, strict=True))
    majority = frame["label"].value_counts().index[0]
    assert majority in codecs["label"].values
    assert set(frame["protocol"].unique()) <= set(codecs["protocol"].values)
    ok = private_tokenizer.encodable(tok, frame)
    assert ok.mean() > 0.9
    tokens = tok.encode(frame[ok])  # raises if `encodable` let an unencodable row through
    out = table.complete(tok.decode(tokens, seed=0), dp_schema)
    assert list(out.columns) == list(frame.columns) and len(out) == ok.sum()


def test_encodable_flags_exactly_the_rows_encode_rejects(lab, train):
    config, frame, schema = lab
    tok, _ = fit(config, train, schema)
    ok = private_tokenizer.encodable(tok, frame)
    assert not ok.all()  # lab has rare classes and addresses the release suppresses
    for row in np.flatnonzero(~ok)[:20]:
        with pytest.raises(ValueError):
            tok.encode(frame.iloc[[row]])


def test_release_is_seeded_and_blind_to_a_rare_value(lab, train):
    config, _, schema = lab
    tok, dp_schema = fit(config, train, schema)
    again, again_schema = fit(config, train, schema)
    assert tok.to_json() == again.to_json() and dp_schema.to_json() == again_schema.to_json()
    assert fit(config, train, schema, seed=1)[0].to_json() != tok.to_json()
    rare = train["label"].value_counts().index[-1]  # a class too small to be released
    assert rare not in dict(zip(tok.columns, tok.codecs, strict=True))["label"].values
    neighbour = train.copy()
    neighbour.loc[np.flatnonzero(train["label"] == rare)[0], "label"] = SENTINEL
    other, other_schema = fit(config, neighbour, schema)
    assert other.to_json() == tok.to_json() and other_schema.to_json() == dp_schema.to_json()


def test_dp_schema_relations_are_declared_formulas_only(lab, train):
    config, _, schema = lab
    _, dp_schema = fit(config, train, schema)
    found = schema.relations
    assert any(isinstance(d, relations.Copy) for d in found.derived) and found.zero_implies
    rel = dp_schema.relations
    assert rel.derived and all(isinstance(d, relations.Formula) for d in rel.derived)
    assert not rel.zero_implies and not rel.bounds and rel.rows == 0
    assert all(n == 0 for _, n in rel.support)
    rates = {d.target: d.scale for d in rel.derived if d.target == "flow_byts_s"}
    assert rates == {"flow_byts_s": 1.0}  # the Python meter's durations are in seconds
    copies = [d.target for d in found.derived if isinstance(d, relations.Copy)]
    assert set(copies) <= set(dp_schema.sentence_columns) | set(rel.targets)


def test_encode_table_under_dp(lab, monkeypatch):
    config, frame, schema = lab
    monkeypatch.setattr(budget, "tokenizer_mechanism",
                        lambda config, *, n_rows: (NOISE_MULTIPLIER, DELTA_THRESHOLD))  # fmt: skip
    prep = data.encode_table(config, frame, schema, source="lab")
    splits = prep.splits
    for idx, tokens in ((splits.train_idx, splits.train), (splits.val_idx, splits.val),
                        (splits.test_idx, splits.test)):  # fmt: skip
        assert len(idx) and np.array_equal(prep.tokenizer.encode(frame.iloc[idx]), tokens)
    kept = len(splits.train_idx) + len(splits.val_idx) + len(splits.test_idx)
    assert 0.9 * len(frame) < kept < len(frame)
    assert all(isinstance(d, relations.Formula) for d in prep.schema.relations.derived)
    assert prep.schema.to_json() == prep.tokenizer.schema.to_json()
    resumed = data.encode_table(config, frame, schema, source="lab",
                                tokenizer_json=prep.tokenizer.to_json(),
                                schema_json=prep.schema.to_json())  # fmt: skip
    assert resumed.schema == prep.schema
    assert np.array_equal(resumed.splits.train, splits.train)


def test_encode_table_rejects_dp_in_trace_mode(lab):
    config, frame, schema = lab
    config = config.copy_and_resolve_references()
    config.data.trace.enabled = True
    with pytest.raises(ValueError, match="trace mode"):
        data.encode_table(config, frame, schema, source="lab")


def test_fills_and_header_carry_no_private_values():
    config = rnn.get_config("tiny")
    n = 3000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "id": np.arange(1, n + 1),
        "Flow ID": [f"flow-{i}" for i in range(n)],
        "Protocol": rng.choice([6, 17], n),
        "Flow Duration": rng.lognormal(3, 2, n),
        "Const": np.full(n, 7),
        "Label": rng.choice(["BENIGN", "DDoS"], n),
    })  # fmt: skip
    schema = infer_schema(frame, label="Label", dialect="cic-java",
                          override={"include": ["Flow ID"]})  # fmt: skip
    header = {"format": "zeek", "separator": "\t", "fields": list(frame.columns),
              "open": "2026-11-23-00-27-13", "close": "2026-11-23-00-31-05"}  # fmt: skip
    schema = dataclasses.replace(schema, source_format=header)
    tok, dp_schema = fit(config, frame, schema)
    fills = dict(dp_schema.fills)
    assert fills["Const"] == {"how": "constant", "value": 7}
    assert fills["id"] == {"how": "index", "start": 0}
    assert fills["Flow ID"]["how"] == "missing" and "Flow ID" not in tok.columns
    assert dp_schema.source_format == {k: header[k] for k in ("format", "separator", "fields")}
    assert "flow-" not in tok.to_json() + dp_schema.to_json()
    assert Schema.from_json(dp_schema.to_json()) == dp_schema


def test_declared_labels_keep_every_class_where_the_threshold_drops_rare_ones(lab, train):
    config, _, schema = lab
    classes = sorted(train[schema.label].unique())  # BruteForce-SSH has 20 training rows
    strict = private_tokenizer.fit_private(config, train, schema, noise_multiplier=8.0,
                                           delta_threshold=DELTA_THRESHOLD, seed=0)[0]  # fmt: skip
    declared = config.copy_and_resolve_references()
    declared.dp.public_labels = ",".join(classes)
    kept = private_tokenizer.fit_private(declared, train, schema, noise_multiplier=8.0,
                                         delta_threshold=DELTA_THRESHOLD, seed=0)[0]  # fmt: skip

    def label_values(tok):
        return set(next(c for c in tok.codecs if c.name == schema.label).values)

    assert not set(classes) <= label_values(strict)  # rare classes fall under the threshold
    assert label_values(kept) == set(classes)  # a declared class always keeps its token
