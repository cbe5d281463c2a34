"""Relations: found on tables with a known answer, and enforced on rows that break them."""

import numpy as np
import pandas as pd

from flowjax import relations


def flows(n=3000, seed=0) -> pd.DataFrame:
    """A CIC-style table whose relations are known: what the Java meter writes."""
    rng = np.random.default_rng(seed)
    fwd = rng.integers(1, 40, n)
    bwd = np.where(rng.random(n) < 0.3, 0, rng.integers(1, 40, n))
    lo = rng.integers(20, 60, n)
    hi = np.where(fwd == 1, lo, lo + rng.integers(0, 1400, n))  # one packet: min = max
    fwd_len = fwd * ((lo + hi) // 2)
    bwd_len = np.where(bwd == 0, 0, bwd * rng.integers(0, 1500, n))
    duration = np.where(rng.random(n) < 0.05, 0, rng.integers(1, 10**7, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (fwd_len + bwd_len) * 1e6 / duration
    return pd.DataFrame({
        "Flow Duration": duration,
        "Total Fwd Packets": fwd,
        "Total Backward Packets": bwd,
        "Total Length of Fwd Packets": fwd_len,
        "Total Length of Bwd Packets": bwd_len,
        "Fwd Packet Length Max": hi,
        "Fwd Packet Length Min": lo,
        "Fwd Packet Length Mean": fwd_len / fwd,
        "Bwd Packet Length Mean": np.where(bwd == 0, 0.0, bwd_len / np.maximum(bwd, 1)),
        "Flow Bytes/s": rate,  # IEEE: x/0 = inf, 0/0 = NaN, as CIC writes them
        "Subflow Fwd Packets": fwd,
        "Noise": rng.random(n),
    })  # fmt: skip


def discover(frame):
    numeric = [c for c in frame.columns]
    return relations.discover(frame, numeric=numeric, categorical=[], label=None)


def test_discovers_the_known_relations():
    found = discover(flows())
    text = {line.split(" (holds")[0] for line in found.lines()}
    assert "Subflow Fwd Packets = Total Fwd Packets" in text
    assert ("Flow Bytes/s = 1e+06 * (Total Length of Fwd Packets + Total Length of Bwd Packets)"
            " / (Flow Duration)") in text  # fmt: skip
    assert ("Fwd Packet Length Mean = (Total Length of Fwd Packets) / (Total Fwd Packets), "
            "0 where the denominator is 0") in text  # fmt: skip
    assert ("Fwd Packet Length Min <= Fwd Packet Length Mean <= Fwd Packet Length Max "
            "<= Total Length of Fwd Packets") in text  # fmt: skip
    assert "Total Backward Packets = 0 => Total Length of Bwd Packets = 0" in text
    assert set(found.targets) == {
        "Subflow Fwd Packets", "Flow Bytes/s", "Fwd Packet Length Mean", "Bwd Packet Length Mean",
    }  # fmt: skip
    assert not any("Noise" in line for line in text)
    again = relations.Relations.from_dict(found.to_dict())
    assert again == found


def test_a_relation_broken_on_a_few_rows_is_not_used():
    frame = flows()
    frame.loc[:9, "Subflow Fwd Packets"] += 1  # 10 of 3000 rows: below the 99.9 % support
    frame.loc[:9, "Fwd Packet Length Max"] = 0  # breaks min <= mean <= max on those rows
    found = discover(frame)
    assert "Subflow Fwd Packets" not in found.targets
    assert not any("Fwd Packet Length Mean <= Fwd Packet Length Max" in line
                   for line in found.lines())  # fmt: skip


def test_complete_makes_every_row_obey_every_relation():
    real = flows()
    found = discover(real)
    # Independent columns: every relation broken somewhere, as a sampler would do it.
    rng = np.random.default_rng(1)
    fake = pd.DataFrame({c: rng.permutation(real[c].to_numpy()) for c in real.columns})
    fake = fake.drop(columns=list(found.targets))
    done = found.complete(fake)
    assert set(done.columns) == set(real.columns)
    for d in found.derived:
        np.testing.assert_allclose(done[d.target], d.compute(done), rtol=1e-12)
    z = done["Total Backward Packets"] == 0
    assert (done.loc[z, "Total Length of Bwd Packets"] == 0).all()
    for chain in found.chains:
        x = done[list(chain.columns)].to_numpy(np.float64)
        assert (np.diff(x, axis=1) >= 0).all(), chain
    # Integer columns stay whole numbers after the repairs.
    assert (done["Fwd Packet Length Max"] == np.round(done["Fwd Packet Length Max"])).all()
    # Rows that already obey are left as they were.
    pd.testing.assert_frame_equal(found.complete(real.drop(columns=list(found.targets)))[
        real.columns], real, check_dtype=False)  # fmt: skip


def test_label_function_becomes_a_lookup():
    rng = np.random.default_rng(0)
    cat = rng.choice(["Normal", "Exploits", "DoS"], 500)
    frame = pd.DataFrame({"attack_cat": cat, "label": (cat != "Normal").astype(int),
                          "proto": rng.choice(["tcp", "udp"], 500)})  # fmt: skip
    found = relations.discover(frame, numeric=[], categorical=["attack_cat", "label", "proto"],
                               label="attack_cat")  # fmt: skip
    assert found.targets == ("label",)
    lookup = found.derived[0]
    np.testing.assert_array_equal(lookup.compute(frame), frame["label"].to_numpy())


def test_netflow_bytes_per_packet_bound():
    rng = np.random.default_rng(0)
    pkt = rng.integers(1, 100, 1000)
    frame = pd.DataFrame({"pkt": pkt, "byt": pkt * rng.integers(40, 1500, 1000)})
    found = relations.discover(frame, numeric=["pkt", "byt"], categorical=[], label=None)
    (bound,) = found.bounds
    assert bound.target == "byt" and bound.per == "pkt" and bound.low >= 40
    fake = pd.DataFrame({"pkt": [10, 1, 5], "byt": [1, 10**7, 300]})
    done = found.complete(fake)
    per = done["byt"] / done["pkt"]
    assert ((per >= bound.low) & (per <= bound.high)).all()
