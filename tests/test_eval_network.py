"""Tests of flowjax.eval.network on flow tables whose right answer is known."""

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from threadpoolctl import threadpool_limits

from flowjax.eval import evaluate
from flowjax.eval.network import heavy_hitters, jsd, network_view, trace_auc

PORTS = np.array([80, 443, 53, 22, 25])


def stream(n: int, seed: int, *, rate: float = 20.0) -> pd.DataFrame:
    """Independent benign flows (NetFlow names): skewed hosts and ports, Poisson arrivals."""
    rng = np.random.default_rng(seed)
    src_w, dst_w = 1 / np.arange(1, 51), 1 / np.arange(1, 31) ** 1.5
    dp = rng.choice(PORTS, n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    return pd.DataFrame(
        {
            "sa": [f"10.0.{i // 10}.{i}" for i in rng.choice(50, n, p=src_w / src_w.sum())],
            "da": [f"10.9.{i % 3}.{i}" for i in rng.choice(30, n, p=dst_w / dst_w.sum())],
            "sp": rng.integers(1024, 65536, n),
            "dp": dp,
            "pr": np.where(dp == 53, "UDP", "TCP"),
            "ts": np.cumsum(rng.exponential(1 / rate, n)),
            "td": rng.exponential(2.0, n),
            "byt": np.round(rng.lognormal(7, 2, n)),
            "pkt": 1 + rng.poisson(5, n),
        }
    )


def section(train, holdout, synthetic):
    """The network section of a report that runs only that section."""
    return evaluate(train, holdout, synthetic, sections=("network",)).sections["network"]


def both(sec, metric: str) -> tuple[float, float]:
    return sec.value(metric), sec.value(metric, "reference")


def test_jsd_known_values():
    a = pd.Series([1, 1, 2, 2])
    assert jsd(a, a) == 0.0
    assert jsd(a, pd.Series([3, 4])) == pytest.approx(1.0)
    expected = jensenshannon([1.0, 0.0], [0.5, 0.5], base=2) ** 2
    assert jsd(pd.Series(["x"] * 4), pd.Series(["x", "y"])) == pytest.approx(expected)
    assert jsd(pd.Series([6, 6.0]), pd.Series(["6"])) == 0.0


def test_heavy_hitters_known_values():
    a = pd.Series(list("xxxxxyyyyzzz"))
    b = pd.Series(list("xyyzzz"))
    assert heavy_hitters(a, b, k=3) == pytest.approx((1.0, -1.0))
    overlap, rho = heavy_hitters(a, b, k=2)  # top-2: {x, y} and {z, y}
    assert overlap == 0.5 and rho == pytest.approx(-1.0)


def test_identical_tables_score_perfectly():
    flows = stream(600, 0)
    sec = section(flows, flows, flows)
    for metric in ("JSD src_port", "JSD dst_port", "JSD protocol"):
        assert both(sec, metric) == (0.0, 0.0)
    for name in ("src_ip", "dst_ip", "src_ip /24", "dst_ip /24"):
        assert sec.value(f"top-10 overlap {name}") == 1.0
        assert sec.value(f"top-10 rank correlation {name}") == pytest.approx(1.0)
    assert sec.value("Wasserstein-1 log1p(bytes)") == 0.0
    assert sec.value("Wasserstein-1 log1p(inter-arrival ms)") == 0.0
    assert sec.value("fan-out dst_port Wasserstein-1 log1p") == 0.0


def test_disjoint_ports_and_shifted_sizes():
    train, holdout = stream(1000, 0), stream(1000, 1)
    synthetic = stream(1000, 2).assign(dp=lambda f: f["dp"] + 10_000, byt=lambda f: f["byt"] * 20)
    sec = section(train, holdout, synthetic)
    jsd_syn, jsd_ref = both(sec, "JSD dst_port")
    assert jsd_syn == pytest.approx(1.0) and jsd_ref < 0.02
    wd_syn, wd_ref = both(sec, "Wasserstein-1 log1p(bytes)")
    assert wd_syn == pytest.approx(np.log(20), rel=0.1) and wd_ref < 0.3


def _attack(kind: str, *, spread: bool) -> pd.DataFrame:
    """Benign flows between 30 sources and 30 hosts in one minute, plus 100 flows within 2 s:
    one source to 100 ports of one host ('scan'), or 100 sources to one host ('flood').

    With `spread`, the attack's one source (scan) or one host (flood) is replaced, flow by
    flow, by a random benign one: the same flows, no longer concentrated.
    """
    rng = np.random.default_rng(1)
    benign = stream(300, 1, rate=5.0)
    benign["sa"] = [f"10.0.0.{i}" for i in rng.integers(0, 30, len(benign))]
    benign["da"] = [f"10.9.0.{i}" for i in rng.integers(0, 30, len(benign))]
    attack = stream(100, 2).assign(sa="10.6.6.6", da="10.9.9.9", ts=10 + 2 * rng.random(100))
    if kind == "scan":
        attack["dp"] = np.arange(1, 101)
    else:
        attack["sa"] = [f"10.7.0.{i}" for i in range(100)]
    column = "sa" if kind == "scan" else "da"
    if spread:
        attack[column] = rng.choice(benign[column].to_numpy(), len(attack))
    return pd.concat([benign, attack], ignore_index=True)


@pytest.mark.parametrize("kind, metric", [("scan", "fan-out dst_port"), ("flood", "fan-in src_ip")])
def test_scans_and_floods_show_in_fan_out_and_fan_in(kind, metric):
    train = stream(500, 9, rate=8.0)  # denser than the scored tables: train is the one thinned
    sec = section(train, _attack(kind, spread=True), _attack(kind, spread=False))
    p99, spread_p99 = both(sec, f"{metric} p99")
    assert p99 >= 100 and spread_p99 < 30


def _bursty(flows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same flows in bursts of 8 from one source 1 ms apart, at the same mean rate."""
    rng = np.random.default_rng(seed)
    n = len(flows) // 8 * 8
    starts = np.cumsum(rng.exponential(8 / 20.0, n // 8))
    times = np.repeat(starts, 8) + np.tile(np.arange(8) * 1e-3, n // 8)
    return flows.iloc[:n].assign(sa=np.repeat(flows["sa"].to_numpy()[:n:8], 8), ts=times)


def test_trace_auc_is_chance_on_one_stream_and_high_on_bursts():
    flows = stream(6000, 3)
    train, holdout, rest = flows.iloc[:2000], flows.iloc[2000:4000], flows.iloc[4000:]
    auc, auc_ref = both(section(train, holdout, rest), "trace detection ROC AUC")
    assert auc < 0.62 and auc_ref < 0.62
    bursty = network_view(_bursty(rest.reset_index(drop=True), 4))
    with threadpool_limits(limits=1):  # as `evaluate` runs it
        assert trace_auc(network_view(train), bursty, max_windows=250, seed=0) > 0.9


def test_missing_columns_leave_their_metrics_out():
    train, holdout, synthetic = stream(400, 0), stream(400, 1), stream(400, 2)
    names = [r.metric for r in section(train, holdout, synthetic.drop(columns="ts")).rows]
    assert not any("inter-arrival" in m for m in names)
    assert "fan-out dst_port p99" in names and "JSD dst_port" in names
    no_ips = section(train.drop(columns=["sa", "da"]), holdout, synthetic)
    names = [r.metric for r in no_ips.rows]
    assert not any("top-10" in m or "fan" in m for m in names)
    assert "JSD src_port" in names and "trace detection ROC AUC" in names
    plain = pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0) % 7})
    report = evaluate(plain, plain, plain, sections=("network",))
    assert "network" not in report.sections


def test_view_sums_cicflowmeter_totals_and_reads_times():
    frame = pd.DataFrame(
        {
            "Total Length of Fwd Packets": [10.0, 20.0],
            "Total Length of Bwd Packets": [1.0, 2.0],
            " Total Fwd Packets": [1, 2],
            "Total Backward Packets": [3, 4],
            "Timestamp": pd.to_datetime(["1970-01-01 00:00:10", "1970-01-01 00:01:00"]),
        }
    )
    view = network_view(frame)
    assert view["bytes"].tolist() == [11.0, 22.0]
    assert view["packets"].tolist() == [4.0, 6.0]
    assert view["time"].tolist() == [10.0, 60.0]
    argus = pd.DataFrame(
        {
            "StartTime": ["2011/08/16 10:40:00.048460", "2011/08/16 10:40:01.000000"],
            "TotBytes": [1, 2],
        }
    )
    view = network_view(argus)
    assert view["bytes"].tolist() == [1.0, 2.0]
    assert np.diff(view["time"]) == pytest.approx([0.95154])
    assert view["time"].iloc[0] == pytest.approx(1313491200.04846)
