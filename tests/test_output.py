"""Generated tables are drop-ins: the input's columns, order and dtypes, nothing invented,
every relation of the real rows kept. Checked with the independent-marginals baseline (every
column drawn on its own: the hardest case for relations) and with an under-trained GRU."""

import json

import numpy as np
import pandas as pd
import pytest

from flowjax import addresses, dialects, generate, netcodecs, pipeline, table, timefmt, train
from flowjax.eval.validity import check_rows
from flowjax.io import load_flows
from flowjax.schema import NUMERIC_KINDS


def unsw_like(n=3000, seed=0) -> pd.DataFrame:
    """A UNSW-NB15-style table: string proto/service/state, an id index, attack_cat and a
    binary label that is a function of it, a rare protocol and a column with NaN."""
    rng = np.random.default_rng(seed)
    cat = rng.choice(["Normal", "Generic", "Exploits", "Fuzzers", "DoS", "Worms"], n,
                     p=[0.5, 0.2, 0.15, 0.1, 0.045, 0.005])  # fmt: skip
    proto = rng.choice(["tcp", "udp", "arp", "ospf"], n, p=[0.6, 0.3, 0.07, 0.03])
    proto[:3] = "sctp"  # three rows of a rare protocol
    spkts = rng.integers(1, 200, n)
    return pd.DataFrame({
        "id": np.arange(1, n + 1),
        "dur": np.round(rng.exponential(2.0, n), 6),
        "proto": proto,
        "service": rng.choice(["-", "http", "dns", "ftp"], n),
        "state": rng.choice(["FIN", "INT", "CON", "REQ"], n),
        "spkts": spkts,
        "sbytes": spkts * rng.integers(40, 1500, n),
        "sttl": rng.choice([0, 31, 62, 254], n),
        "is_ftp_login": rng.choice([0, 1], n, p=[0.95, 0.05]),
        "ct_flw_http_mthd": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 4, n)),
        "attack_cat": cat,
        "label": (cat != "Normal").astype(np.int64),
    })  # fmt: skip


def _categorical(schema, col) -> bool:
    return schema.kind(col) not in NUMERIC_KINDS or schema.dtype(col) in ("string", "bool")


def check_drop_in(path, synthetic: pd.DataFrame, schema) -> None:
    """The assertions of a drop-in: columns, order, dtypes, values, relations, rules."""
    real = load_flows(path).frame
    missing = {c for c, f in schema.fills if f["how"] == "missing"}
    assert missing <= {c for c in real.columns if schema.kind(c) in ("ip", "timestamp",
                                                                     "identifier")}  # fmt: skip
    assert list(synthetic.columns) == [c for c in real.columns if c not in missing]
    for col in synthetic.columns:
        if schema.dtype(col) == "string":
            assert pd.api.types.is_string_dtype(synthetic[col]), col
        else:
            assert synthetic[col].dtype == real[col].dtype, col
        if not real[col].isna().any():
            assert not synthetic[col].isna().any(), f"{col}: NaN the real column never had"
        encoding = schema.encoding(col) or {}
        if encoding.get("how") == "ipv4":  # new addresses, from octets real ones have there
            syn, got = (addresses.to_octets(t[col], encoding["form"]) for t in (synthetic, real))
            for k in range(4):
                assert set(syn[:, k]) <= set(got[:, k]), f"{col}: octet {k + 1} never seen"
        elif encoding.get("how") == "time":  # row mode: inside the capture's time span
            fmt = timefmt.TimeFormat.from_dict(encoding["format"])
            syn, got = (timefmt.parse(t[col], fmt) for t in (synthetic, real))
            assert got.min() <= syn.min() and syn.max() <= got.max(), col
        elif dialects.canonical_name(col) in dialects.PORT_KEYS and schema.dtype(col) != "string":
            invented = set(synthetic[col].dropna()) - set(real[col].dropna())
            ranges = set(netcodecs.port_range(real[col].dropna().to_numpy(np.float64)))
            outside = {p for p in invented if int(netcodecs.port_range(np.array([p]))[0])
                       not in ranges}  # fmt: skip
            assert not outside, f"{col}: ports in a range no real port is in: {list(outside)[:5]}"
        elif _categorical(schema, col):
            invented = set(synthetic[col].dropna()) - set(real[col].dropna())
            assert not invented, f"{col}: values the real column never had: {list(invented)[:5]}"
    for d in schema.relations.derived:
        expected = d.compute(synthetic)
        got = synthetic[d.target].to_numpy()
        if schema.dtype(d.target) == "string" or expected.dtype == object:
            assert (got == expected).all(), d.describe()
        else:
            np.testing.assert_allclose(got, expected.astype(np.float64), rtol=1e-9,
                                       err_msg=d.describe())  # fmt: skip
    real_rules, syn_rules = check_rows(real), check_rows(synthetic)
    for rule in real_rules.columns:
        if real_rules[rule].all():
            assert syn_rules[rule].all(), f"rule {rule} holds on every real row, not synthetic"


def _marginals(path, workdir):
    config = pipeline.model_config("marginals", "default")
    gen, _, _ = pipeline.fit(config, path, workdir)
    return gen


SHARED = [
    "cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz",
    "cicids2017_mlcve_sample_grouped7.csv.gz",
    "cicids2017_trafficlabelling_thursday_webattacks_balanced.csv.gz",
    "ctu13_scenario6_binetflow_5min.csv.gz",
    "ugr16_netflow_onehost_24h.csv.gz",
    "ugr16_netflow_sample1k.csv.gz",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHARED)
def test_round_trip_on_shared_files(shared_data, name, tmp_path):
    path = shared_data / name
    gen = _marginals(path, tmp_path)
    synthetic = generate.generate(gen, 3000, seed=1)
    check_drop_in(path, synthetic, gen.tokenizer.schema)


def test_round_trip_on_the_lab_data(tmp_path):
    gen = _marginals("lab", tmp_path)
    check_drop_in("lab", generate.generate(gen, 3000, seed=1), gen.tokenizer.schema)


def test_round_trip_through_csv_and_parquet_of_an_unsw_like_table(tmp_path):
    path = tmp_path / "unsw.csv"
    unsw_like().to_csv(path, index=False)
    gen = _marginals(path, tmp_path / "run")
    schema = gen.tokenizer.schema
    assert schema.label == "attack_cat"  # the multi-class label, not the binary one
    assert [d.describe() for d in schema.relations.derived] == [
        "label is a function of attack_cat (6 values)"
    ]
    assert dict(schema.fills)["id"] == {"how": "index", "start": 1}
    for name in ("flows.csv", "flows.parquet"):
        out = generate.generate_to_files(gen, 2000, tmp_path / name, seed=2, progress=False)
        synthetic = pd.read_csv(out) if name.endswith("csv") else pd.read_parquet(out)
        real = pd.read_csv(path)
        assert list(synthetic.columns) == list(real.columns)
        assert (synthetic.dtypes == real.dtypes).all(), name  # CSV reads back the same dtypes
        assert list(synthetic["id"]) == list(range(1, 2001))
        check_drop_in(path, synthetic, schema)
        sidecar = json.loads(table.sidecar_path(out).read_text())
        assert {c["name"]: c["how"] for c in sidecar["columns"]}["label"] == "computed"
    assert set(synthetic["proto"]) <= {"tcp", "udp", "arp", "ospf", "sctp"}


def test_under_trained_model_invents_nothing_in_100k_rows(tmp_path):
    path = tmp_path / "unsw.csv"
    unsw_like().to_csv(path, index=False)
    config = pipeline.model_config("rnn", "tiny")
    config.data.fraction = 1.0
    config.num_steps = 5
    config.eval_every = config.checkpoint_every = 5
    train.train_and_evaluate(config, tmp_path / "run", data=path)
    synthetic = generate.generate(tmp_path / "run", 100_000, seed=0, batch_size=8192)
    real = pd.read_csv(path)
    for col in ("proto", "service", "state", "attack_cat", "label", "sttl", "is_ftp_login"):
        invented = set(synthetic[col]) - set(real[col])
        assert not invented, f"{col}: {invented}"
    assert synthetic["label"].dtype == np.int64 and synthetic["sttl"].dtype == np.int64
    assert not synthetic.drop(columns="ct_flw_http_mthd").isna().any().any()
    assert (synthetic["label"] == (synthetic["attack_cat"] != "Normal")).all()


@pytest.mark.slow
def test_nan_rows_outside_the_training_split_still_train(shared_data, tmp_path):
    # The DDoS file's only NaN (Flow Bytes/s) falls outside the tiny preset's training rows.
    config = pipeline.model_config("rnn", "tiny")
    config.num_steps = 4
    config.eval_every = config.checkpoint_every = 4
    path = shared_data / "cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz"
    metrics = train.train_and_evaluate(config, tmp_path, data=path)
    assert np.isfinite(metrics["val_loss"])


def test_paper_mode_output_lists_the_columns_it_does_not_model(tmp_path):
    path = tmp_path / "unsw.csv"
    unsw_like(n=600).to_csv(path, index=False)
    gen, _, _ = pipeline.fit(pipeline.model_config("marginals", "paper"), path, tmp_path / "run")
    synthetic = generate.generate(gen, 200, seed=0)
    schema = gen.tokenizer.schema
    missing = {c for c, f in schema.fills if f["how"] == "missing"}
    assert {"proto", "service", "state", "attack_cat"} <= missing  # text: not the study's
    real = pd.read_csv(path)
    assert list(synthetic.columns) == [c for c in real.columns if c not in missing]
    assert (synthetic.dtypes == real[synthetic.columns].dtypes).all()
