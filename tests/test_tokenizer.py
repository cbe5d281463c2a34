"""Tokenizer: round trips, the paper's pooled alphabet, JSON persistence, unseen values."""

import numpy as np
import pandas as pd
import pytest

from flowjax.io import BadValuePolicy, load_flows
from flowjax.schema import infer_schema
from flowjax.tokenizer import FlowTokenizer


def table(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "Flow Duration": np.where(rng.random(n) < 0.2, 0.0, rng.lognormal(8, 2, n)),
            "Total Fwd Packets": rng.integers(1, 500, n),
            "Flow Bytes/s": np.where(rng.random(n) < 0.01, np.inf, rng.lognormal(5, 3, n)),
            "Destination Port": rng.choice([80, 443, 53, 22], n, p=[0.4, 0.3, 0.2, 0.1]),
            "Protocol": rng.choice([6, 17], n),
            "Label": rng.choice(["BENIGN", "DDoS", "PortScan"], n),
        }
    )
    frame.loc[rng.random(n) < 0.05, "Flow Bytes/s"] = np.nan
    frame.loc[:20, "Destination Port"] = rng.integers(1024, 65535, 21)  # rare ports -> 'other'
    return frame, infer_schema(frame, label="Label", dialect="cic-java")


def bin_of(codec, values):
    k = len(codec.edges) - 1
    return np.clip(np.searchsorted(codec.edges[1:k], values, side="right"), 0, k - 1)


@pytest.mark.parametrize("decode_values", ["sketch", "midpoint"])
@pytest.mark.parametrize("binning", ["quantile", "equal_width"])
def test_round_trip_per_column(decode_values, binning):
    frame, schema = table()
    tok = FlowTokenizer(binning=binning, decode_values=decode_values, max_categories=4)
    tokens = tok.fit(frame, schema).encode(frame)
    assert tokens.dtype == np.int32 and tokens.shape == (len(frame), 1 + 6)
    assert tok.columns[0] == "Label" and (tokens[:, 0] == 0).all()
    decoded = tok.decode(tokens, seed=3)
    np.testing.assert_array_equal(tok.encode(decoded), tokens)  # every value inside its bin
    assert list(decoded["Label"]) == list(frame["Label"])  # categoricals exact
    assert list(decoded["Protocol"]) == list(frame["Protocol"])
    common = frame["Destination Port"].isin([80, 443, 53, 22])
    assert (decoded["Destination Port"][common] == frame["Destination Port"][common]).all()
    assert decoded["Total Fwd Packets"].dtype == np.int64
    assert np.isnan(decoded["Flow Bytes/s"]).sum() == np.isnan(frame["Flow Bytes/s"]).sum()
    assert np.isposinf(decoded["Flow Bytes/s"]).sum() == np.isposinf(frame["Flow Bytes/s"]).sum()
    assert ((decoded["Flow Duration"] == 0) == (frame["Flow Duration"] == 0)).all()


def test_legal_mask_partitions_the_vocabulary():
    frame, schema = table()
    tok = FlowTokenizer(max_categories=4).fit(frame, schema)
    mask = tok.legal_mask()
    assert mask.shape == (tok.seq_len, tok.vocab_size)
    assert mask[0].sum() == 1 and mask[0, 0]
    assert (mask[1:].sum(axis=0)[1:] == 1).all()  # each token belongs to exactly one column
    tokens = tok.encode(frame)
    assert mask[np.arange(tok.seq_len)[None, :], tokens].all()
    # The label holds exactly its three classes: no 'other' token, no NaN token.
    assert mask[1].sum() == 3
    protocol = tok.codecs[tok.columns.index("Protocol")]
    assert protocol.size == 2 and not protocol.has_other and not protocol.has_nan
    port = tok.codecs[tok.columns.index("Destination Port")]
    assert port.has_other  # 4 common ports kept exactly, 21 rare ones behind 'other'


def test_other_decodes_to_real_rare_values_by_frequency():
    frame, schema = table()
    frame["proto"] = np.where(np.arange(len(frame)) < 1900, "tcp", "udp")
    frame.loc[1900:1949, "proto"] = "gre"  # rare with max_categories=1: 50 gre, 40 udp, 10 esp
    frame.loc[1950:1959, "proto"] = "esp"
    schema = infer_schema(frame, label="Label", dialect="unknown")
    tok = FlowTokenizer(max_categories=1).fit(frame, schema)
    j = tok.columns.index("proto")
    codec = tok.codecs[j]
    tokens = tok.encode(frame)
    tokens[:, 1 + j] = codec.other  # every row asks for a rare value
    decoded = tok.decode(tokens, seed=1)["proto"]
    assert set(decoded) == {"udp", "gre", "esp"}  # real values only, never a placeholder
    shares = decoded.value_counts(normalize=True)
    assert abs(shares["esp"] - 10 / 100) < 0.03 and abs(shares["gre"] - 50 / 100) < 0.04
    ports = tok.decode(np.where(tok.legal_mask()[None, 1:].any(-1), tokens[:, 1:], 0))
    assert not ports["Destination Port"].isna().any()


def test_vocabulary_comes_from_the_whole_table():
    frame, schema = table()
    frame["Flow Bytes/s"] = frame["Flow Bytes/s"].fillna(1.0)
    frame.loc[5, "Flow Bytes/s"] = np.nan  # the only NaN: not in the training rows below
    frame.loc[6, "Flow Bytes/s"] = -np.inf
    train = frame.iloc[10:]
    tok = FlowTokenizer().fit(train, schema, vocabulary=frame)
    tokens = tok.encode(frame)  # every row encodes, whatever the split
    codec = tok.codecs[tok.columns.index("Flow Bytes/s")]
    assert codec.specials == ("nan", "posinf", "neginf")
    assert tok.decode(tokens)["Flow Bytes/s"].isna().sum() == 1
    alone = FlowTokenizer().fit(train, schema)
    with pytest.raises(ValueError, match="NaN, and the table"):
        alone.encode(frame)
    with pytest.raises(ValueError, match="-Infinity, and the table"):
        alone.encode(frame.iloc[6:7])


def test_paper_mode_pooled_percentiles():
    # Two columns of 0..99 and 100..199: pooled percentiles of 0..199.
    frame = pd.DataFrame(
        {"a": np.arange(100.0), "b": np.arange(100.0, 200.0), "Label": ["x"] * 100}
    )
    schema = infer_schema(frame, label="Label", dialect="unknown")
    tok = FlowTokenizer(mode="paper").fit(frame, schema)
    edges = tok.codecs[0].edges
    np.testing.assert_allclose(edges, np.percentile(np.arange(200.0), np.linspace(0, 100, 50)))
    assert len(edges) == 50 and tok.vocab_size == 50 and tok.columns == ("a", "b")
    assert tok.codecs[0].edges is tok.codecs[1].edges  # one alphabet shared by every column
    tokens = tok.encode(frame)
    # Symbol s (1..49) covers [edges[s-1], edges[s]); value v of 0..199 falls in bin v // (199/49).
    expected = 1 + np.minimum(np.floor(np.arange(200.0) / (199.0 / 49)), 48).astype(int)
    np.testing.assert_array_equal(tokens[:, 1:].T.ravel(), expected)
    assert tokens[:, 0].tolist() == [0] * 100
    np.testing.assert_array_equal(tok.encode(tok.decode(tokens)), tokens)


def test_paper_mode_rejects_nonfinite_with_a_clear_error():
    frame, schema = table()
    with pytest.raises(ValueError, match="paper mode has no symbol for NaN/Infinity: column"):
        FlowTokenizer(mode="paper").fit(frame, schema)


def test_json_round_trip_gives_identical_encodes():
    frame, schema = table()
    tok = FlowTokenizer(max_categories=3).fit(frame, schema)
    again = FlowTokenizer.from_json(tok.to_json())
    np.testing.assert_array_equal(again.encode(frame), tok.encode(frame))
    np.testing.assert_array_equal(again.legal_mask(), tok.legal_mask())
    pd.testing.assert_frame_equal(again.decode(tok.encode(frame)), tok.decode(tok.encode(frame)))
    assert again.schema == schema


def test_unseen_values_map_to_edge_bins():
    frame, schema = table()
    tok = FlowTokenizer(max_categories=4).fit(frame, schema)
    codec = tok.codecs[tok.columns.index("Total Fwd Packets")]
    unseen = frame.head(3).copy()
    unseen["Total Fwd Packets"] = [-1e12, 1e12, 7]
    unseen["Destination Port"] = [99999, 80, 1]
    tokens = tok.encode(unseen)
    j = 1 + tok.columns.index("Total Fwd Packets")
    assert tokens[0, j] == codec.offset and tokens[1, j] == codec.offset + codec.size - 1
    port = tok.codecs[tok.columns.index("Destination Port")]
    assert tokens[0, 1 + tok.columns.index("Destination Port")] == port.other
    assert tok.legal_mask()[np.arange(tok.seq_len)[None, :], tokens].all()
    unseen["Label"] = ["NeverSeen", "BENIGN", "DDoS"]  # the label has no 'other': a clear error
    with pytest.raises(ValueError, match="'Label', row 0: value 'NeverSeen' is not in the table"):
        tok.encode(unseen)


def test_condition_tokens():
    frame, schema = table()
    tok = FlowTokenizer().fit(frame, schema)
    cond = tok.condition_tokens({"Label": "DDoS", "Protocol": 17})
    assert cond[0] == 0 and (cond[3:] == -1).sum() >= 1
    decoded = tok.decode(np.where(cond < 0, tok.encode(frame.head(1))[0], cond)[None, :])
    assert decoded["Label"][0] == "DDoS" and decoded["Protocol"][0] == 17
    with pytest.raises(ValueError, match="not a value the model knows"):
        tok.condition_tokens({"Label": "Heartbleed"})
    with pytest.raises(ValueError, match="not a sentence column"):
        tok.condition_tokens({"Nope": 1})


def test_shared_files_tokenize_in_both_modes(shared_data):
    for path in sorted(shared_data.glob("*.csv.gz")):
        flows = load_flows(path)
        tok = FlowTokenizer(port_ranges=True).fit(flows.frame, flows.schema)
        tokens = tok.encode(flows.frame)
        octets = 3 * sum(e["how"] == "ipv4" for _, e in flows.schema.encodings)  # 4 per address
        assert tokens.shape == (len(flows.frame), 1 + len(flows.schema.sentence_columns) + octets)
        np.testing.assert_array_equal(tok.encode(tok.decode(tokens)), tokens)
        clean = load_flows(path, policy=BadValuePolicy(nonfinite="drop"))
        paper = FlowTokenizer(mode="paper").fit(clean.frame, clean.schema)
        ptokens = paper.encode(clean.frame)
        assert paper.vocab_size == 50 and ptokens.max() <= 49 and ptokens[:, 1:].min() >= 1
        np.testing.assert_array_equal(paper.encode(paper.decode(ptokens)), ptokens)


def test_decoded_values_depend_only_on_seed_and_row():
    frame, schema = table()
    tok = FlowTokenizer().fit(frame, schema)
    tokens = tok.encode(frame)
    whole = tok.decode(tokens, seed=5)
    parts = pd.concat(
        [tok.decode(tokens[:700], seed=5), tok.decode(tokens[700:], seed=5, row_offset=700)],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(parts, whole)
    assert not tok.decode(tokens, seed=6)["Flow Duration"].equals(whole["Flow Duration"])


def test_condition_values_must_be_numbers_in_range():
    frame, schema = table()
    tok = FlowTokenizer().fit(frame, schema)
    packets = tok.codecs[tok.columns.index("Total Fwd Packets")]
    lo, hi = float(packets.edges[0]), float(packets.edges[-1])
    with pytest.raises(ValueError, match="'Flow Duration' is a numeric column and 'abc' is not"):
        tok.condition_tokens({"Flow Duration": "abc"})
    for value in ("-5", "1e12", lo - 1, hi + 1):
        with pytest.raises(ValueError, match=rf"Total Fwd Packets={value!r} is outside the "
                                             rf"column's range \[{lo:g}, {hi:g}\]$"):  # fmt: skip
            tok.condition_tokens({"Total Fwd Packets": value})
    with pytest.raises(ValueError, match="not a value the model knows exactly"):
        tok.condition_tokens({"Protocol": "tcp"})
    with pytest.raises(ValueError, match=r"outside the column's range .*, or 0$"):
        tok.condition_tokens({"Flow Duration": "-inf"})
    cond = tok.condition_tokens({"Total Fwd Packets": str(hi), "Flow Duration": "0",
                                 "Flow Bytes/s": "inf"})  # fmt: skip
    sentence = np.where(cond < 0, tok.encode(frame.head(1))[0], cond)[None, :]
    decoded = tok.decode(sentence)
    assert decoded["Total Fwd Packets"][0] == hi and decoded["Flow Duration"][0] == 0
    assert np.isposinf(decoded["Flow Bytes/s"][0])


@pytest.mark.parametrize("decode_values", ["sketch", "midpoint"])
def test_exact_integer_tokens_round_trip_exactly(decode_values):
    rng = np.random.default_rng(0)
    values = np.arange(100) * 7 + 3  # 100 distinct packet counts: more than n_bins
    frame = pd.DataFrame({"Total Fwd Packets": rng.choice(values, 3000),
                          "Flow Duration": rng.lognormal(8, 2, 3000),
                          "Label": rng.choice(["a", "b"], 3000)})  # fmt: skip
    frame.loc[0, "Total Fwd Packets"] = 10_000  # a value only the vocabulary rows hold
    schema = infer_schema(frame, label="Label", dialect="cic-java")
    tok = FlowTokenizer(exact_integers=256, decode_values=decode_values)
    tok.fit(frame.iloc[1:], schema, vocabulary=frame)
    decoded = tok.decode(tok.encode(frame), seed=5)
    np.testing.assert_array_equal(decoded["Total Fwd Packets"], frame["Total Fwd Packets"])
    codec = tok.codecs[tok.columns.index("Total Fwd Packets")]
    assert codec.exact and codec.size == 101
    assert not tok.codecs[tok.columns.index("Flow Duration")].exact  # continuous: binned
    again = FlowTokenizer.from_json(tok.to_json())
    pd.testing.assert_frame_equal(again.decode(again.encode(frame), seed=5), decoded)
    assert FlowTokenizer().fit(frame, schema).codecs[1].size < 101  # off by default


def test_two_level_tokens_decode_inside_their_fine_interval():
    frame, schema = table(4000, seed=3)
    tok = FlowTokenizer(two_level=True).fit(frame, schema)
    # Only the numeric columns with more than 4 x 49 distinct values get the second token.
    assert set(tok.two_level_columns) == {"Flow Duration", "Flow Bytes/s", "Total Fwd Packets"}
    tokens = tok.encode(frame)
    assert tokens.shape[1] == 1 + frame.shape[1] + 3
    assert tok.legal_mask()[np.arange(tok.seq_len), tokens].all()
    decoded = tok.decode(tokens, seed=1)
    assert sorted(decoded.columns) == sorted(tok.schema.sentence_columns)  # no pseudo-columns
    for col in ("Flow Duration", "Flow Bytes/s"):  # continuous: no rounding to integers
        j = tok.columns.index(col)
        codec, fine = tok.codecs[j], tok.codecs[j + 1]
        v, out = frame[col].to_numpy(np.float64), decoded[col].to_numpy(np.float64)
        regular = np.isfinite(v) & (v != 0)
        b, f = bin_of(codec, v[regular]), tokens[regular, j + 2] - fine.offset
        lo, hi = codec.sketch[b, f], codec.sketch[b, f + 1]
        assert np.all((out[regular] >= lo) & (out[regular] <= hi))  # inside the fine interval
        assert np.all((v[regular] >= lo) & (v[regular] <= hi))  # as the real value was
        assert len(np.unique(f)) == fine.size  # every interval is used
        np.testing.assert_array_equal(np.isnan(out), np.isnan(v))  # specials stay exact
    again = FlowTokenizer.from_json(tok.to_json())
    np.testing.assert_array_equal(again.encode(frame), tokens)
    pd.testing.assert_frame_equal(again.decode(tokens, seed=1), decoded)
    with pytest.raises(ValueError, match="not a sentence column"):
        tok.condition_tokens({"Flow Duration\u00b7fine": 3})
