"""Tests of the row-by-row domain rules in flowjax.eval.validity, in three column dialects."""

import numpy as np
import pandas as pd
import pytest

from flowjax import dialects
from flowjax.eval.validity import RULES, check_rows, validity


def cic_flow() -> dict:
    """One self-consistent CICFlowMeter (Java names) flow: 2 s, 4 packets out, 2 back."""
    return {
        "Destination Port": 443, "Source Port": 51234, "Protocol": 6,
        "Flow Duration": 2_000_000,
        "Total Fwd Packets": 4, "Total Backward Packets": 2,
        "Total Length of Fwd Packets": 400, "Total Length of Bwd Packets": 200,
        "Fwd Packet Length Max": 150, "Fwd Packet Length Min": 50,
        "Fwd Packet Length Mean": 100, "Fwd Packet Length Std": 40,
        "Bwd Packet Length Max": 120, "Bwd Packet Length Min": 80,
        "Bwd Packet Length Mean": 100, "Bwd Packet Length Std": 20,
        "Min Packet Length": 50, "Max Packet Length": 150,
        "Packet Length Mean": 100, "Packet Length Std": 30, "Packet Length Variance": 900,
        "Flow Bytes/s": 300.0, "Flow Packets/s": 3.0, "Fwd Packets/s": 2.0, "Bwd Packets/s": 1.0,
        "Flow IAT Mean": 400_000, "Flow IAT Std": 1000, "Flow IAT Max": 500_000,
        "Flow IAT Min": 300_000,
        "Fwd IAT Total": 1_500_000, "Fwd IAT Mean": 500_000, "Fwd IAT Std": 0,
        "Fwd IAT Max": 600_000, "Fwd IAT Min": 400_000,
        "Bwd IAT Total": 1_000_000, "Bwd IAT Mean": 1_000_000, "Bwd IAT Std": 0,
        "Bwd IAT Max": 1_000_000, "Bwd IAT Min": 1_000_000,
        "Active Mean": 10, "Active Std": 0, "Active Max": 10, "Active Min": 10,
        "Idle Mean": 0, "Idle Std": 0, "Idle Max": 0, "Idle Min": 0,
        "SYN Flag Count": 1, "FIN Flag Count": 0,
        "Subflow Fwd Packets": 4, "Subflow Fwd Bytes": 400,
        "Subflow Bwd Packets": 2, "Subflow Bwd Bytes": 200,
        "Init_Win_bytes_forward": 29200, "Init_Win_bytes_backward": -1,
        "Label": "BENIGN",
    }  # fmt: skip


# rule -> changes that break it
BREAKS = {
    "finite": {"Fwd Packet Length Std": np.nan},
    "nonnegative_counts": {"SYN Flag Count": -1},
    "nonnegative_durations": {"Active Std": -5},
    "packets_present": {"Total Fwd Packets": 0, "Total Backward Packets": 0},
    "min_mean_max_fwd_pkt_len": {"Fwd Packet Length Min": 120},
    "min_mean_max_bwd_pkt_len": {"Bwd Packet Length Max": 90},
    "min_mean_max_pkt_len": {"Packet Length Mean": 151},
    "min_mean_max_flow_iat": {"Flow IAT Min": 450_000},
    "min_mean_max_fwd_iat": {"Fwd IAT Max": 450_000},
    "min_mean_max_bwd_iat": {"Bwd IAT Min": 2_000_000},
    "min_mean_max_active": {"Active Mean": 11},
    "min_mean_max_idle": {"Idle Min": 5},
    "byte_rate": {"Flow Bytes/s": 330.0},
    "packet_rate": {"Fwd Packets/s": 7.0},
    "length_totals": {"Total Length of Fwd Packets": 500, "Flow Bytes/s": 350.0},
    "subflow_le_total": {"Subflow Bwd Packets": 5},
    "port_range": {"Destination Port": 70000},
    "init_window_range": {"Init_Win_bytes_backward": -2},
    "protocol_known": {"Protocol": 250},
}
PYTHON_NAMES = {col: dialects.canonical_name(col) for col in cic_flow()}


def test_argus_hex_ports_and_empty_ports_are_read_as_argus_writes_them():
    frame = pd.DataFrame({
        "Proto": ["icmp", "igmp", "tcp", "rtcp"],
        "Sport": ["0x0303", "", "80", "5004"],
        "Dport": ["0xabc0", "", "70000", "5005"],
        "TotPkts": [1, 1, 2, 3],
        "TotBytes": [60, 60, 120, 300],
    })  # fmt: skip
    checks = check_rows(frame)
    assert checks["port_range"].tolist() == [True, True, False, True]
    assert checks["protocol_known"].all() and checks["finite"].all()


def test_a_consistent_flow_passes_every_applicable_rule():
    checks = check_rows(pd.DataFrame([cic_flow()]))
    assert set(checks.columns) == set(BREAKS)
    assert checks.all(axis=None)


@pytest.mark.parametrize("rule", sorted(BREAKS))
@pytest.mark.parametrize("names", ["java", "python"])
def test_each_rule_catches_the_row_that_breaks_it(rule, names):
    good, bad = cic_flow(), {**cic_flow(), **BREAKS[rule]}
    frame = pd.DataFrame([good, bad, good])
    if names == "python":  # the Python meter writes durations in seconds
        frame = frame.rename(columns=PYTHON_NAMES)
        frame["flow_duration"] = frame["flow_duration"] / 1e6
    checks = check_rows(frame)
    assert checks[rule].tolist() == [True, False, True]


def test_zero_duration_flows_may_have_infinite_rates():
    flow = {**cic_flow(), "Flow Duration": 0, "Flow Bytes/s": np.inf, "Flow Packets/s": np.inf}
    flow.update({"Fwd Packets/s": np.inf, "Bwd Packets/s": np.inf})
    checks = check_rows(pd.DataFrame([flow]))
    assert checks[["finite", "byte_rate", "packet_rate"]].all(axis=None)


def test_ports_must_be_integers():
    checks = check_rows(pd.DataFrame([{**cic_flow(), "Source Port": 80.5}]))
    assert not checks["port_range"].iloc[0]


def netflow() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "srcport": [51234, 0, 0],
            "dstport": [443, 2816, 0],
            "proto": ["TCP", "ICMP", "GRE"],
            "td": [1.5, 0.0, 300.0],
            "pkt": [10, 1, 31],
            "byt": [5200, 56, 992],
            "type": ["background"] * 3,
        }
    )


def test_netflow_rules_apply_to_netflow_names():
    frame = netflow()
    assert check_rows(frame).all(axis=None)
    frame.loc[1, "byt"] = 10  # 10 bytes in one packet: shorter than an IP header
    frame.loc[2, "proto"] = "FOO"
    frame.loc[0, "pkt"] = 0
    checks = check_rows(frame)
    assert checks["bytes_per_packet"].tolist() == [True, False, True]
    assert checks["protocol_known"].tolist() == [True, True, False]
    assert checks["packets_present"].tolist() == [False, True, True]


def test_validity_section_reports_pass_rates_and_failures():
    good = pd.DataFrame([cic_flow()] * 8)
    synthetic = pd.DataFrame([cic_flow()] * 6 + [{**cic_flow(), **BREAKS["byte_rate"]}] * 2)
    section = validity(synthetic, good)
    assert section.value("valid rows % (all domain rules)") == pytest.approx(75.0)
    assert section.value("valid rows % (all domain rules)", "reference") == pytest.approx(100.0)
    assert section.details["synthetic"]["failures"]["byte_rate"] == 2
    assert "byte_rate" in section.notes[0]
    assert set(RULES) >= set(section.details["rules"])
