"""IP addresses: octets round trip, /k prefixes, and Crypto-PAn pseudonymisation."""

import ipaddress
import time

import numpy as np
import pandas as pd
import pytest
import yacryptopan

from flowjax import addresses

KEY = bytes(range(32))  # the key of Crypto-PAn's published test vector


def random_ints(n, seed=0):
    return np.random.default_rng(seed).integers(0, 2**32, n)


def shared_bits(a, b):
    """Leading bits two 32-bit addresses share."""
    return 32 - int(a ^ b).bit_length()


def test_octets_round_trip_dotted_and_integer():
    ints = np.append(random_ints(1000), [0, 2**32 - 1])
    octets = addresses.to_octets(pd.Series(ints), "integer")
    assert octets.shape == (1002, 4) and octets[-1].tolist() == [255] * 4
    dotted = addresses.from_octets(octets, "dotted")
    assert dotted[-2] == "0.0.0.0" and dotted[-1] == "255.255.255.255"
    assert str(ipaddress.IPv4Address(int(ints[0]))) == dotted[0]
    assert np.array_equal(addresses.to_octets(pd.Series(dotted), "dotted"), octets)
    assert np.array_equal(addresses.from_octets(octets, "integer"), ints)
    floats = pd.Series([3232235777.0, 167772161.0])
    assert addresses.to_octets(floats, "integer").tolist() == [[192, 168, 1, 1], [10, 0, 0, 1]]


@pytest.mark.parametrize(
    "values, form",
    [
        (pd.Series(["10.0.0.1", None, "192.168.1.255"]), "dotted"),
        (pd.Series([3232235777, 167772161]), "integer"),
        (pd.Series([3232235777.0, np.nan]), "integer"),
        (pd.Series(["fe80::1", "2001:db8::1"]), None),
        (pd.Series(["10.0.0.1", "2001:db8::1"]), None),
        (pd.Series(["00:1b:44:11:3a:b7"]), None),
        (pd.Series(["010.0.0.1"]), None),  # leading zeros would not round trip
        (pd.Series(["256.0.0.1"]), None),
        (pd.Series([2**32, 1]), None),
        (pd.Series([1.5]), None),
        (pd.Series([None], dtype=object), None),
    ],
)
def test_ip_form(values, form):
    assert addresses.ip_form(values) == form


def test_bad_addresses_name_the_row():
    with pytest.raises(ValueError, match="row 7"):
        addresses.to_octets(pd.Series(["10.0.0.1", "10.0.0.256"], index=[6, 7]), "dotted")
    with pytest.raises(ValueError, match="row 1"):
        addresses.to_octets(pd.Series([1.0, np.nan]), "integer")
    with pytest.raises(ValueError):
        addresses.from_octets(np.array([[1, 2, 3, 256]]), "dotted")


def test_prefix():
    values = pd.Series(["10.66.3.4", "fe80::1", None, "x", "192.168.200.7"], name="Src IP")
    out = addresses.prefix(values, 24)
    assert out.name == "Src IP"
    assert out.tolist()[:2] == ["10.66.3.0/24", "fe80::1"] and out.tolist()[3:] == [
        "x",
        "192.168.200.0/24",
    ]
    assert addresses.prefix(pd.Series([3232235777]), 16).tolist() == ["192.168.0.0/16"]


def test_pseudonymise_matches_yacryptopan():
    values = ["192.0.2.1", "10.0.0.1", "0.0.0.0", "255.255.255.255", "2001:db8::1", "fe80::1:2"]
    out = addresses.pseudonymise(pd.DataFrame({"ip": values}), ["ip"], KEY)["ip"].tolist()
    assert out[0] == "2.90.93.17"  # the published test vector
    reference = yacryptopan.CryptoPAn(KEY)
    assert out == [str(ipaddress.ip_address(reference.anonymize(v))) for v in values]


def test_pseudonymise_preserves_prefixes_exactly():
    rng = np.random.default_rng(2)
    bases = random_ints(8, seed=3)
    spreads = [rng.integers(0, 2 ** (32 - k), 3) for k in (8, 16, 24, 31)]
    ints = [int(b) ^ int(r) for b in bases for spread in spreads for r in spread]
    out = addresses.pseudonymise(pd.DataFrame({"ip": ints}), ["ip"], KEY)["ip"].to_numpy()
    for k in (8, 16, 24, 31):
        shared = 0
        for i in range(len(ints)):
            for j in range(i):
                before = shared_bits(ints[i], ints[j])
                assert shared_bits(int(out[i]), int(out[j])) == before
                shared += before >= k
        assert shared > 0  # the set does hold pairs that share a /k prefix


def test_pseudonymise_is_keyed_and_moves_every_address():
    dotted = addresses.from_octets(
        addresses.to_octets(pd.Series(random_ints(200)), "integer"), "dotted"
    )
    frame = pd.DataFrame({"src": dotted, "n": np.arange(200)})
    out = addresses.pseudonymise(frame, ["src"], KEY)
    assert out["n"].equals(frame["n"]) and out["src"].dtype == frame["src"].dtype
    assert addresses.ip_form(out["src"]) == "dotted"
    assert not (out["src"] == frame["src"]).any()
    assert not set(out["src"]) & set(frame["src"])
    assert out.equals(addresses.pseudonymise(frame, ["src"], KEY))
    other = addresses.pseudonymise(frame, ["src"], addresses.key_from_text("another key"))
    assert (other["src"] != out["src"]).all()


def test_pseudonymise_keeps_integer_forms_and_missing_cells():
    ints = random_ints(50)
    frame = pd.DataFrame({"i": ints, "f": np.append(ints[:-1], np.nan)})
    out = addresses.pseudonymise(frame, ["i", "f"], KEY)
    assert out["i"].dtype == np.int64 and out["f"].dtype == np.float64
    assert np.isnan(out["f"].iloc[-1]) and (out["f"].iloc[:-1] == out["i"].iloc[:-1]).all()
    assert addresses.ip_form(out["i"]) == "integer"


def test_pseudonymise_rejects_bad_keys_and_values():
    frame = pd.DataFrame({"ip": ["10.0.0.1"], "mac": ["00:1b:44:11:3a:b7"]})
    with pytest.raises(ValueError, match="32 bytes"):
        addresses.pseudonymise(frame, ["ip"], b"short")
    with pytest.raises(ValueError, match="mac"):
        addresses.pseudonymise(frame, ["mac"], KEY)
    key = addresses.key_from_text("passphrase")
    assert len(key) == 32 and key == addresses.key_from_text("passphrase")


def test_pseudonymise_caches_distinct_addresses():
    values = pd.Series(np.random.default_rng(4).choice(random_ints(10_000), 100_000))
    start = time.perf_counter()
    out = addresses.pseudonymise(pd.DataFrame({"ip": values}), ["ip"], KEY)
    assert time.perf_counter() - start < 2.0  # yacryptopan address by address takes ~3 s
    assert out["ip"].nunique() == values.nunique()
