"""Tests for flowjax.datasets: name resolution and the shipped lab captures."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowjax import datasets

# cicflowmeter 0.5's columns in its own order, then the label the capture script adds.
LAB_COLUMNS = (
    "src_ip,dst_ip,src_port,dst_port,protocol,timestamp,flow_duration,flow_byts_s,flow_pkts_s,"
    "fwd_pkts_s,bwd_pkts_s,tot_fwd_pkts,tot_bwd_pkts,totlen_fwd_pkts,totlen_bwd_pkts,"
    "fwd_pkt_len_max,fwd_pkt_len_min,fwd_pkt_len_mean,fwd_pkt_len_std,bwd_pkt_len_max,"
    "bwd_pkt_len_min,bwd_pkt_len_mean,bwd_pkt_len_std,pkt_len_max,pkt_len_min,pkt_len_mean,"
    "pkt_len_std,pkt_len_var,fwd_header_len,bwd_header_len,fwd_seg_size_min,fwd_act_data_pkts,"
    "flow_iat_mean,flow_iat_max,flow_iat_min,flow_iat_std,fwd_iat_tot,fwd_iat_max,fwd_iat_min,"
    "fwd_iat_mean,fwd_iat_std,bwd_iat_tot,bwd_iat_max,bwd_iat_min,bwd_iat_mean,bwd_iat_std,"
    "fwd_psh_flags,bwd_psh_flags,fwd_urg_flags,bwd_urg_flags,fin_flag_cnt,syn_flag_cnt,"
    "rst_flag_cnt,psh_flag_cnt,ack_flag_cnt,urg_flag_cnt,ece_flag_cnt,down_up_ratio,"
    "pkt_size_avg,init_fwd_win_byts,init_bwd_win_byts,active_max,active_min,active_mean,"
    "active_std,idle_max,idle_min,idle_mean,idle_std,fwd_byts_b_avg,fwd_pkts_b_avg,"
    "bwd_byts_b_avg,bwd_pkts_b_avg,fwd_blk_rate_avg,bwd_blk_rate_avg,fwd_seg_size_avg,"
    "bwd_seg_size_avg,cwr_flag_count,subflow_fwd_pkts,subflow_bwd_pkts,subflow_fwd_byts,"
    "subflow_bwd_byts,label"
).split(",")
# Flows per class, as flowjax/datasets/lab/README.md documents them.
LAB_COUNTS = {
    "BENIGN": 1878,
    "PortScan": 1204,
    "SYNFlood": 1000,
    "BruteForce-SSH": 25,
    "BruteForce-FTP": 40,
    "SlowHTTP": 216,
}
LAB_README = Path(datasets.__file__).parent / "lab" / "README.md"
# Flows per class of the 20-minute trace, as flowjax/datasets/lab-trace/README.md documents them.
TRACE_COUNTS = {
    "BENIGN": 9256,
    "PortScan": 2704,
    "SYNFlood": 3000,
    "BruteForce-SSH": 50,
    "BruteForce-FTP": 80,
    "SlowHTTP": 432,
}
TRACE_README = Path(datasets.__file__).parent / "lab-trace" / "README.md"
TRACE_ATTACKERS = ("10.66.0.66", "10.66.0.67")


def assert_reproducible_gzip(raw: bytes) -> None:
    """`gzip -n` output: the gzip magic, no file name, no mtime."""
    assert raw[:2] == b"\x1f\x8b"
    assert raw[3] & 0x08 == 0 and raw[4:8] == b"\0\0\0\0"


def assert_documented(frame: pd.DataFrame, counts: dict, readme: Path) -> None:
    """The dataset's columns are lab's, its classes and their counts as its README's table."""
    assert list(frame.columns) == LAB_COLUMNS
    assert frame["label"].value_counts().to_dict() == counts
    text = readme.read_text()
    for label, count in counts.items():
        assert f"| {label} | {count} |" in text, label
    assert f"| total | {sum(counts.values())} |" in text


def test_resolve_shipped_name():
    path = datasets.resolve("lab")
    assert path.is_file()
    assert path == Path(datasets.__file__).resolve().parent / "lab" / "flows.csv.gz"


def test_resolve_existing_path_is_itself(tmp_path):
    table = tmp_path / "mine.csv"
    table.write_text("a,b\n1,2\n")
    assert datasets.resolve(str(table)) == table
    assert datasets.resolve(table) == table


def test_resolve_unknown_lists_known_names():
    with pytest.raises(ValueError, match="no-such-set: no such file.*known names: lab, lab-trace"):
        datasets.resolve("no-such-set")


def test_lab_file_is_small_and_reproducibly_compressed():
    raw = datasets.resolve("lab").read_bytes()
    assert len(raw) < 2 * 1024 * 1024
    assert_reproducible_gzip(raw)


def test_lab_has_documented_columns_and_classes():
    frame = pd.read_csv(datasets.resolve("lab"))
    assert_documented(frame, LAB_COUNTS, LAB_README)
    attacker = (frame["src_ip"] == "10.66.0.66") | (frame["dst_ip"] == "10.66.0.66")
    assert (frame.loc[attacker, "label"] != "BENIGN").all()
    assert (frame.loc[~attacker, "label"] == "BENIGN").all()
    assert set(frame["protocol"]) == {6, 17}


def test_lab_loads_by_name():
    from flowjax.io import load_flows

    flows = load_flows("lab")
    assert len(flows.frame) == sum(LAB_COUNTS.values())
    assert flows.schema.label == "label"
    assert flows.report.dialect == "cicflowmeter-python"
    for col in ("active_max", "idle_mean"):  # constants
        assert col not in flows.schema.sentence_columns, col
    encodings = dict(flows.schema.encodings)  # addresses as octets, time as seconds
    assert encodings["src_ip"] == encodings["dst_ip"] == {"how": "ipv4", "form": "dotted"}
    assert encodings["timestamp"]["how"] == "time"
    assert "tot_fwd_pkts" in flows.schema.sentence_columns


@pytest.mark.parametrize("mode", ["paper", "per_column"])
def test_lab_tokenizes(mode):
    from flowjax.io import load_flows
    from flowjax.tokenizer import FlowTokenizer

    flows = load_flows("lab")
    tok = FlowTokenizer(mode=mode).fit(flows.frame, flows.schema)
    tokens = tok.encode(flows.frame)
    assert tokens.dtype == np.int32
    assert tokens.shape == (len(flows.frame), tok.seq_len)
    assert (tokens[:, 0] == 0).all()
    legal = tok.legal_mask()
    rows = np.arange(tok.seq_len)[None, :]
    assert legal[rows, tokens].all()  # every symbol is legal at its position
    assert len(np.unique(tokens[:, 1:], axis=0)) > 100  # the attacks do not collapse


def test_resolve_trace_name_with_hyphen():
    path = datasets.resolve("lab-trace")
    assert path == Path(datasets.__file__).resolve().parent / "lab-trace" / "flows.csv.gz"
    raw = path.read_bytes()
    assert len(raw) < 5 * 1024 * 1024
    assert_reproducible_gzip(raw)


@pytest.fixture(scope="module")
def trace():
    return pd.read_csv(datasets.resolve("lab-trace"))


def test_trace_has_documented_columns_and_classes(trace):
    assert_documented(trace, TRACE_COUNTS, TRACE_README)
    assert set(trace["protocol"]) == {6, 17}


def test_trace_labels_follow_the_attackers(trace):
    attacker = trace["src_ip"].isin(TRACE_ATTACKERS) | trace["dst_ip"].isin(TRACE_ATTACKERS)
    assert (trace.loc[attacker, "label"] != "BENIGN").all()
    assert (trace.loc[~attacker, "label"] == "BENIGN").all()
    for host in TRACE_ATTACKERS:  # both attackers attack, with more than one kind of attack
        mine = (trace["src_ip"] == host) | (trace["dst_ip"] == host)
        assert trace.loc[mine, "label"].nunique() >= 3, host


def test_trace_spans_time_with_attacks_interleaved(trace):
    t = pd.to_datetime(trace["timestamp"])
    assert t.max() - t.min() >= pd.Timedelta(minutes=15)
    benign, attack = t[trace["label"] == "BENIGN"], t[trace["label"] != "BENIGN"]
    assert benign.min() < attack.min() and attack.max() < benign.max()
    assert attack.max() - attack.min() >= pd.Timedelta(minutes=12)  # spread, not one burst
    # Benign traffic goes on throughout: no minute of the capture is without it.
    minutes = ((benign - t.min()).dt.total_seconds() // 60).astype(int)
    assert set(minutes) == set(range(int((t.max() - t.min()).total_seconds() // 60) + 1))


def test_trace_has_many_hosts_with_skewed_activity(trace):
    hosts = set(trace["src_ip"]) | set(trace["dst_ip"])
    assert len(hosts) >= 6
    benign = trace[trace["label"] == "BENIGN"]
    clients = benign.loc[benign["dst_ip"] == "10.66.0.10", "src_ip"].value_counts()
    assert len(clients) >= 6
    assert clients.iloc[0] >= 10 * clients.iloc[-1]  # heavy hitters and light users


def test_trace_loads_by_name():
    from flowjax.io import load_flows

    flows = load_flows("lab-trace")
    assert len(flows.frame) == sum(TRACE_COUNTS.values())
    assert flows.schema.label == "label"
    assert flows.report.dialect == "cicflowmeter-python"
