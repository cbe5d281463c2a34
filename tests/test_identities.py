"""Addresses, ports, timestamps and Flow IDs: in the sentence, and out as the input wrote them."""

import numpy as np
import pandas as pd
import pytest

from flowjax import identities, netcodecs, table
from flowjax.io import load_flows
from flowjax.tokenizer import FlowTokenizer


def flows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A CICFlowMeter-style table: two subnets, ephemeral source ports, a few services,
    CIC's 12-hour timestamps and a Flow ID that is the 5-tuple (some rows reversed)."""
    rng = np.random.default_rng(seed)
    src = [f"192.168.10.{x}" for x in rng.integers(2, 30, n)]
    dst = [f"10.{x}.0.{y}" for x, y in zip(rng.integers(1, 4, n), rng.integers(1, 9, n),
                                           strict=True)]  # fmt: skip
    sport = rng.integers(49152, 65536, n)
    dport = rng.choice([80, 443, 53, 22], n)
    proto = np.where(dport == 53, 17, 6)
    minutes = np.sort(rng.integers(0, 600, n))  # 10 hours from 1:00 on, 12-hour clock
    stamp = [f"7/7/2017 {(1 + m // 60 - 1) % 12 + 1}:{m % 60:02d}" for m in minutes]
    flow_id = [f"{s}-{d}-{a}-{b}-{p}" for s, d, a, b, p in zip(src, dst, sport, dport, proto,
                                                               strict=True)]  # fmt: skip
    reverse = zip(src[::7], dst[::7], sport[::7], dport[::7], proto[::7], strict=True)
    flow_id[::7] = [f"{d}-{s}-{b}-{a}-{p}" for s, d, a, b, p in reverse]
    return pd.DataFrame({
        "Flow ID": flow_id, "Source IP": src, "Source Port": sport, "Destination IP": dst,
        "Destination Port": dport, "Protocol": proto, "Timestamp": stamp,
        "Flow Duration": rng.integers(1, 10**6, n), "Total Fwd Packets": rng.integers(1, 50, n),
        "Label": rng.choice(["BENIGN", "PortScan"], n),
    })  # fmt: skip


@pytest.fixture
def loaded(tmp_path):
    path = tmp_path / "flows.csv"
    flows().to_csv(path, index=False)
    return load_flows(path)


def test_schema_puts_addresses_and_time_in_the_sentence(loaded):
    s = loaded.schema
    assert s.encoding("Source IP") == {"how": "ipv4", "form": "dotted"}
    assert s.encoding("Timestamp")["format"]["unit"] == "%-m/%-d/%Y %-I:%M"
    assert dict(s.fills)["Flow ID"] == {
        "how": "flow_id", "order": "forward",
        "columns": ["Source IP", "Destination IP", "Source Port", "Destination Port", "Protocol"],
    }  # fmt: skip
    assert {"Source IP", "Destination IP", "Timestamp"} <= set(s.sentence_columns)


def test_round_trip_exact_addresses_and_times_inside_their_bin(loaded):
    frame, schema = loaded.frame, loaded.schema
    tok = FlowTokenizer(port_ranges=True, max_categories=3).fit(frame, schema)
    assert [c for c in tok.columns if c.startswith("Source IP")] == netcodecs.octet_names(
        "Source IP"
    )
    tokens = tok.encode(frame)
    out = table.complete(tok.decode(tokens), tok.schema)
    assert list(out.columns) == list(frame.columns)
    pd.testing.assert_series_equal(out["Source IP"], frame["Source IP"], check_dtype=False)
    pd.testing.assert_series_equal(out["Destination IP"], frame["Destination IP"],
                                   check_dtype=False)  # fmt: skip
    # Time: inside the bin of the real value (49 bins over 10 hours), in CIC's own text.
    codec = tok.codecs[tok.columns.index("Timestamp")]
    assert isinstance(codec, netcodecs.TimeCodec)
    assert out["Timestamp"].str.fullmatch(r"7/7/2017 (1[0-2]|[1-9]):[0-5]\d").all()
    np.testing.assert_array_equal(codec.encode(codec.numbers(out["Timestamp"])),
                                  tokens[:, 1 + tok.columns.index("Timestamp")])  # fmt: skip
    # Flow ID rebuilt from the generated 5-tuple, forward.
    five = ["Source IP", "Destination IP", "Source Port", "Destination Port", "Protocol"]
    expected = out[five].astype(str).agg("-".join, axis=1)
    assert (out["Flow ID"] == expected).all()
    np.testing.assert_array_equal(tok.encode(out), tokens)


def test_ports_keep_frequent_values_and_draw_the_rest_inside_their_range():
    rng = np.random.default_rng(1)
    ports = pd.Series(np.concatenate([np.full(500, 443), np.full(300, 80),
                                      rng.integers(49152, 65536, 200),
                                      rng.integers(1024, 5000, 50)]))  # fmt: skip
    codec = netcodecs.fit_port("src_port", ports, ports, max_exact=2, offset=1)
    assert codec.values == [443, 80] and codec.ranges == [1, 2]  # registered, ephemeral
    tokens = codec.encode(ports)
    out = codec.decode(tokens, rng.random(len(ports)), midpoint=False)
    np.testing.assert_array_equal(out[:800], ports[:800])
    assert ((out[800:1000] >= 49152) & (out[800:1000] <= 65535)).all()  # ephemeral stays so
    assert ((out[1000:] >= 1024) & (out[1000:] <= 4999)).all()
    assert len(np.unique(out[800:1000])) > 50  # drawn, not one value
    np.testing.assert_array_equal(codec.encode(pd.Series(out)), tokens)
    with pytest.raises(ValueError, match="in no range"):
        codec.encode(pd.Series([80.0, 22.0]))


def test_integer_addresses_and_microsecond_epochs(tmp_path):
    frame = pd.DataFrame({
        "srcip": [3232235777, 3232235778, 167772161, 167772162] * 25,
        "dstip": [167772161, 3232235777, 3232235779, 167772163] * 25,
        "ts": 1458298072364000.0 + np.arange(100) * 1_000_123.0,
        "pkt": np.arange(100) + 1,
        "type": ["background"] * 100,
    })  # fmt: skip
    frame.to_csv(tmp_path / "nf.csv", index=False)
    loaded = load_flows(tmp_path / "nf.csv")
    tok = FlowTokenizer(n_bins=100).fit(loaded.frame, loaded.schema)
    out = table.complete(tok.decode(tok.encode(loaded.frame)), tok.schema)
    np.testing.assert_array_equal(out["srcip"], frame["srcip"])
    assert out["srcip"].dtype == np.int64
    # 100 distinct times, 100 bins: each decodes to its own value, to the microsecond.
    np.testing.assert_array_equal(out["ts"], frame["ts"])


def test_conditioning_on_an_address_fixes_its_octets(loaded):
    tok = FlowTokenizer().fit(loaded.frame, loaded.schema)
    forced = tok.condition_tokens({"Source IP": "192.168.10.5"})
    octets = [tok.columns.index(c) + 1 for c in netcodecs.octet_names("Source IP")]
    assert (forced[octets] >= 0).all()
    decoded = tok.decode(np.where(forced >= 0, forced, tok.encode(loaded.frame.iloc[:1])[0])[None])
    assert decoded["Source IP"].iloc[0] == "192.168.10.5"
    with pytest.raises(ValueError, match="octet"):
        tok.condition_tokens({"Source IP": "172.16.0.1"})


def test_flow_id_that_is_not_the_five_tuple_stays_missing():
    frame = flows(50)
    assert identities.flow_id_fill(frame, "Flow ID") is not None
    frame["Flow ID"] = np.arange(50)  # label-encoded, as in the shared web-attack file
    assert identities.flow_id_fill(frame, "Flow ID") is None


def test_pseudonymised_training_leaves_no_real_address_in_the_output(tmp_path):
    """Addresses are mapped before anything sees them: prefix-preserving, Flow IDs rewritten
    to match, and generated tables hold none of the real addresses."""
    from flowjax import generate, pipeline
    from flowjax.eval import evaluate
    from flowjax.eval.privacy import addresses_of

    path = tmp_path / "flows.csv"
    real = flows(600)
    real.to_csv(path, index=False)
    (tmp_path / "key").write_text("a passphrase only the user holds\n")
    config = pipeline.model_config("marginals", "default")
    config.data.pseudonymise_key_file = str(tmp_path / "key")
    gen, prepared, _ = pipeline.fit(config, path, tmp_path / "run")
    seen = prepared.frame
    real_addresses = addresses_of(real)
    assert not addresses_of(seen) & real_addresses
    # Prefix-preserving: the 192.168.10.0/24 sources stay in one /24, the 10.x.0.y
    # destinations keep their shared /8 and their three distinct /16s.
    assert seen["Source IP"].str.rsplit(".", n=1).str[0].nunique() == 1
    assert seen["Destination IP"].str.split(".").str[0].nunique() == 1
    assert seen["Destination IP"].str.rsplit(".", n=2).str[0].nunique() == 3
    assert dict(gen.tokenizer.schema.fills)["Flow ID"]["how"] == "flow_id"  # still the 5-tuple
    synthetic = generate.generate(gen, 1000, seed=0)
    assert not addresses_of(synthetic) & real_addresses
    report = evaluate(seen, seen, synthetic, sections=("privacy",), real_addresses=real_addresses)
    assert report.value("privacy", "real addresses in the output %") == 0.0
    # Without the key, the synthetic addresses are the real ones (octets of real addresses).
    config.data.pseudonymise_key_file = ""
    gen, _, _ = pipeline.fit(config, path, tmp_path / "plain")
    plain = generate.generate(gen, 1000, seed=0)
    report = evaluate(real, real, plain, sections=("privacy",))
    assert report.value("privacy", "real addresses in the output %") > 50.0
