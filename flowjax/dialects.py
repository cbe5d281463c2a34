"""Column-name dialects of flow tables, mapped onto one canonical vocabulary.

Flow tables spell the same feature three ways: the Java CICFlowMeter of the CIC
datasets (`' Total Fwd Packets'`), the Python `cicflowmeter` package
(`tot_fwd_pkts`) and NetFlow exports (`pkt`, `td`). flowjax keeps a table's own
column names (users want their names back in synthetic output) and resolves
every name to a canonical key, the Python `cicflowmeter` spelling, so that the
schema inference and the validity rules in `flowjax.eval` work on any dialect.
This module is pure Python: `flowjax.eval` imports it without pulling in JAX.
"""

from __future__ import annotations

import re

# Java CICFlowMeter (CIC-IDS2017/2018, CIC-DDoS2019) name -> canonical key.
# Keys are compared after `_fold`, so case, spaces, '_' and '/' do not matter.
_JAVA = {
    "Flow ID": "flow_id",
    "Source IP": "src_ip",
    "Src IP": "src_ip",
    "Source Port": "src_port",
    "Src Port": "src_port",
    "Destination IP": "dst_ip",
    "Dst IP": "dst_ip",
    "Destination Port": "dst_port",
    "Dst Port": "dst_port",
    "Protocol": "protocol",
    "Timestamp": "timestamp",
    "Flow Duration": "flow_duration",
    "Total Fwd Packets": "tot_fwd_pkts",
    "Tot Fwd Pkts": "tot_fwd_pkts",
    "Total Backward Packets": "tot_bwd_pkts",
    "Tot Bwd Pkts": "tot_bwd_pkts",
    "Total Length of Fwd Packets": "totlen_fwd_pkts",
    "TotLen Fwd Pkts": "totlen_fwd_pkts",
    "Total Length of Bwd Packets": "totlen_bwd_pkts",
    "TotLen Bwd Pkts": "totlen_bwd_pkts",
    "Fwd Packet Length Max": "fwd_pkt_len_max",
    "Fwd Packet Length Min": "fwd_pkt_len_min",
    "Fwd Packet Length Mean": "fwd_pkt_len_mean",
    "Fwd Packet Length Std": "fwd_pkt_len_std",
    "Bwd Packet Length Max": "bwd_pkt_len_max",
    "Bwd Packet Length Min": "bwd_pkt_len_min",
    "Bwd Packet Length Mean": "bwd_pkt_len_mean",
    "Bwd Packet Length Std": "bwd_pkt_len_std",
    "Flow Bytes/s": "flow_byts_s",
    "Flow Packets/s": "flow_pkts_s",
    "Flow IAT Mean": "flow_iat_mean",
    "Flow IAT Std": "flow_iat_std",
    "Flow IAT Max": "flow_iat_max",
    "Flow IAT Min": "flow_iat_min",
    "Fwd IAT Total": "fwd_iat_tot",
    "Fwd IAT Tot": "fwd_iat_tot",
    "Fwd IAT Mean": "fwd_iat_mean",
    "Fwd IAT Std": "fwd_iat_std",
    "Fwd IAT Max": "fwd_iat_max",
    "Fwd IAT Min": "fwd_iat_min",
    "Bwd IAT Total": "bwd_iat_tot",
    "Bwd IAT Tot": "bwd_iat_tot",
    "Bwd IAT Mean": "bwd_iat_mean",
    "Bwd IAT Std": "bwd_iat_std",
    "Bwd IAT Max": "bwd_iat_max",
    "Bwd IAT Min": "bwd_iat_min",
    "Fwd PSH Flags": "fwd_psh_flags",
    "Bwd PSH Flags": "bwd_psh_flags",
    "Fwd URG Flags": "fwd_urg_flags",
    "Bwd URG Flags": "bwd_urg_flags",
    "Fwd Header Length": "fwd_header_len",
    "Fwd Header Len": "fwd_header_len",
    "Bwd Header Length": "bwd_header_len",
    "Bwd Header Len": "bwd_header_len",
    "Fwd Packets/s": "fwd_pkts_s",
    "Fwd Pkts/s": "fwd_pkts_s",
    "Bwd Packets/s": "bwd_pkts_s",
    "Bwd Pkts/s": "bwd_pkts_s",
    "Min Packet Length": "pkt_len_min",
    "Pkt Len Min": "pkt_len_min",
    "Max Packet Length": "pkt_len_max",
    "Pkt Len Max": "pkt_len_max",
    "Packet Length Mean": "pkt_len_mean",
    "Pkt Len Mean": "pkt_len_mean",
    "Packet Length Std": "pkt_len_std",
    "Pkt Len Std": "pkt_len_std",
    "Packet Length Variance": "pkt_len_var",
    "Pkt Len Var": "pkt_len_var",
    "FIN Flag Count": "fin_flag_cnt",
    "FIN Flag Cnt": "fin_flag_cnt",
    "SYN Flag Count": "syn_flag_cnt",
    "SYN Flag Cnt": "syn_flag_cnt",
    "RST Flag Count": "rst_flag_cnt",
    "RST Flag Cnt": "rst_flag_cnt",
    "PSH Flag Count": "psh_flag_cnt",
    "PSH Flag Cnt": "psh_flag_cnt",
    "ACK Flag Count": "ack_flag_cnt",
    "ACK Flag Cnt": "ack_flag_cnt",
    "URG Flag Count": "urg_flag_cnt",
    "URG Flag Cnt": "urg_flag_cnt",
    "CWE Flag Count": "cwe_flag_count",
    "CWR Flag Count": "cwr_flag_count",  # the Python meter's name for the CWR flag
    "ECE Flag Count": "ece_flag_cnt",
    "ECE Flag Cnt": "ece_flag_cnt",
    "Down/Up Ratio": "down_up_ratio",
    "Average Packet Size": "pkt_size_avg",
    "Pkt Size Avg": "pkt_size_avg",
    "Avg Fwd Segment Size": "fwd_seg_size_avg",
    "Fwd Seg Size Avg": "fwd_seg_size_avg",
    "Avg Bwd Segment Size": "bwd_seg_size_avg",
    "Bwd Seg Size Avg": "bwd_seg_size_avg",
    "Fwd Avg Bytes/Bulk": "fwd_byts_b_avg",
    "Fwd Byts/b Avg": "fwd_byts_b_avg",
    "Fwd Avg Packets/Bulk": "fwd_pkts_b_avg",
    "Fwd Pkts/b Avg": "fwd_pkts_b_avg",
    "Fwd Avg Bulk Rate": "fwd_blk_rate_avg",
    "Fwd Blk Rate Avg": "fwd_blk_rate_avg",
    "Bwd Avg Bytes/Bulk": "bwd_byts_b_avg",
    "Bwd Byts/b Avg": "bwd_byts_b_avg",
    "Bwd Avg Packets/Bulk": "bwd_pkts_b_avg",
    "Bwd Pkts/b Avg": "bwd_pkts_b_avg",
    "Bwd Avg Bulk Rate": "bwd_blk_rate_avg",
    "Bwd Blk Rate Avg": "bwd_blk_rate_avg",
    "Subflow Fwd Packets": "subflow_fwd_pkts",
    "Subflow Fwd Pkts": "subflow_fwd_pkts",
    "Subflow Fwd Bytes": "subflow_fwd_byts",
    "Subflow Fwd Byts": "subflow_fwd_byts",
    "Subflow Bwd Packets": "subflow_bwd_pkts",
    "Subflow Bwd Pkts": "subflow_bwd_pkts",
    "Subflow Bwd Bytes": "subflow_bwd_byts",
    "Subflow Bwd Byts": "subflow_bwd_byts",
    "Init_Win_bytes_forward": "init_fwd_win_byts",
    "Init Fwd Win Byts": "init_fwd_win_byts",
    "Init_Win_bytes_backward": "init_bwd_win_byts",
    "Init Bwd Win Byts": "init_bwd_win_byts",
    "act_data_pkt_fwd": "fwd_act_data_pkts",
    "Fwd Act Data Pkts": "fwd_act_data_pkts",
    "min_seg_size_forward": "fwd_seg_size_min",
    "Fwd Seg Size Min": "fwd_seg_size_min",
    "Active Mean": "active_mean",
    "Active Std": "active_std",
    "Active Max": "active_max",
    "Active Min": "active_min",
    "Idle Mean": "idle_mean",
    "Idle Std": "idle_std",
    "Idle Max": "idle_max",
    "Idle Min": "idle_min",
    "Label": "label",
}

# NetFlow-style exports (nfdump, UGR'16, NetShare) -> canonical key. The
# canonical NetFlow keys `bytes`, `packets` and `tcp_flags` have no CICFlowMeter twin.
_NETFLOW = {
    "srcip": "src_ip",
    "sa": "src_ip",
    "dstip": "dst_ip",
    "da": "dst_ip",
    "srcport": "src_port",
    "sp": "src_port",
    "dstport": "dst_port",
    "dp": "dst_port",
    "proto": "protocol",
    "pr": "protocol",
    "ts": "timestamp",
    "te": "timestamp_end",
    "td": "flow_duration",
    "duration": "flow_duration",
    "byt": "bytes",
    "ibyt": "bytes",
    "bytes": "bytes",
    "pkt": "packets",
    "ipkt": "packets",
    "packets": "packets",
    "flg": "tcp_flags",
    "flags": "tcp_flags",
    "tcp_flags": "tcp_flags",
    "type": "label",
    "class": "label",
    "attack": "label",
    "attack_cat": "label",  # UNSW-NB15's multi-class label (its binary `label` is a function of it)
    "category": "label",
    "lable": "label",  # sic: the UGR'16 per-host exports
}

# Argus (`ra -s ...`, CTU-13 `.binetflow`) -> canonical key.
_ARGUS = {
    "StartTime": "timestamp",
    "Dur": "flow_duration",
    "Proto": "protocol",
    "SrcAddr": "src_ip",
    "Sport": "src_port",
    "DstAddr": "dst_ip",
    "Dport": "dst_port",
    "TotPkts": "packets",
    "TotBytes": "bytes",
    "SrcBytes": "src_bytes",
}

# Zeek `conn.log` (`flowjax.zeek`) -> canonical key. `orig` is the side that opened the
# connection, as `fwd` is in CICFlowMeter; `*_ip_bytes` count IP headers too, unlike
# `orig_bytes`/`resp_bytes` (payload). IoT-23 appends `label` and `detailed-label`.
_ZEEK = {
    "ts": "timestamp",
    "uid": "flow_id",
    "id.orig_h": "src_ip",
    "id.orig_p": "src_port",
    "id.resp_h": "dst_ip",
    "id.resp_p": "dst_port",
    "proto": "protocol",
    "service": "service",
    "duration": "flow_duration",
    "orig_bytes": "src_bytes",
    "resp_bytes": "dst_bytes",
    "conn_state": "conn_state",
    "missed_bytes": "missed_bytes",
    "history": "history",
    "orig_pkts": "tot_fwd_pkts",
    "orig_ip_bytes": "src_ip_bytes",
    "resp_pkts": "tot_bwd_pkts",
    "resp_ip_bytes": "dst_ip_bytes",
    "label": "label",
    "detailed-label": "label",
}
# Zeek names that no other dialect uses: what `detect_dialect` looks for.
_ZEEK_ONLY = frozenset(_ZEEK) - {"ts", "proto", "service", "duration", "label"}

# The Python cicflowmeter names are canonical already.
CANONICAL = (
    frozenset(_JAVA.values())
    | frozenset(_NETFLOW.values())
    | frozenset(_ARGUS.values())
    | frozenset(_ZEEK.values())
)

# Names of row-index columns that exports and notebooks add ('Unnamed: 0' is pandas' name
# for an unnamed first column).
INDEX_NAMES = frozenset({"id", "index", "idx", "unnamed0", "rowid", "no"})

# Canonical keys by role, used by schema inference and validity rules.
IP_KEYS = frozenset({"src_ip", "dst_ip"})
TIME_KEYS = frozenset({"timestamp", "timestamp_end"})
ID_KEYS = frozenset({"flow_id"})
PORT_KEYS = frozenset({"src_port", "dst_port"})
FLAG_KEYS = frozenset(
    {
        "fwd_psh_flags",
        "bwd_psh_flags",
        "fwd_urg_flags",
        "bwd_urg_flags",
        "tcp_flags",
        "fin_flag_cnt",
        "syn_flag_cnt",
        "rst_flag_cnt",
        "psh_flag_cnt",
        "ack_flag_cnt",
        "urg_flag_cnt",
        "ece_flag_cnt",
        "cwe_flag_count",
        "cwr_flag_count",
    }
)
# Zeek's text fields: the application protocol, the end state and the packet history.
ZEEK_TEXT_KEYS = frozenset({"service", "conn_state", "history"})
CATEGORICAL_KEYS = PORT_KEYS | FLAG_KEYS | ZEEK_TEXT_KEYS | {"protocol", "label"}
# Keys whose values are text even when they look numeric elsewhere.
TEXT_KEYS = IP_KEYS | TIME_KEYS | ID_KEYS | ZEEK_TEXT_KEYS | {"label", "protocol", "tcp_flags"}
# Durations and counts: never negative in a well-formed flow (validity rules, loader notes).
DURATION_KEYS = tuple(
    ["flow_duration", "fwd_iat_tot", "bwd_iat_tot"]
    + [f"{f}_{s}" for f in ("flow_iat", "fwd_iat", "bwd_iat", "active", "idle")
       for s in ("min", "mean", "max", "std")]
)  # fmt: skip
COUNT_KEYS = tuple(
    ["tot_fwd_pkts", "tot_bwd_pkts", "totlen_fwd_pkts", "totlen_bwd_pkts", "fwd_header_len",
     "bwd_header_len", "pkt_len_var", "down_up_ratio", "pkt_size_avg", "fwd_seg_size_avg",
     "bwd_seg_size_avg", "fwd_act_data_pkts", "fwd_seg_size_min", "bytes", "packets",
     "src_bytes", "dst_bytes", "src_ip_bytes", "dst_ip_bytes", "missed_bytes"]
    + [f"{d}_{s}" for d in ("fwd_pkt_len", "bwd_pkt_len", "pkt_len")
       for s in ("min", "mean", "max", "std")]
    + [f"subflow_{d}_{u}" for d in ("fwd", "bwd") for u in ("pkts", "byts")]
    + sorted(FLAG_KEYS - {"tcp_flags"})
)  # fmt: skip


def _fold(name: str) -> str:
    """Folds case, whitespace and punctuation so that dialect spellings compare equal."""
    return re.sub(r"[^0-9a-z]+", "", name.strip().lower())


_LOOKUP = {_fold(k): v for k, v in _JAVA.items()}
_LOOKUP.update({_fold(k): v for k, v in _NETFLOW.items()})
_LOOKUP.update({_fold(k): v for k, v in _ARGUS.items()})
_LOOKUP.update({_fold(k): v for k, v in _ZEEK.items()})
_LOOKUP.update({_fold(k): k for k in CANONICAL})


def canonical_name(name: str) -> str | None:
    """Returns the canonical key of a column name in any known dialect, else None.

    Pandas' de-duplication suffix (`' Fwd Header Length.1'`) is not folded away:
    such a column is a copy and is handled by the loader, not renamed here.
    """
    return _LOOKUP.get(_fold(name))


def canonical_columns(columns) -> dict[str, str]:
    """Maps each column that has a canonical key to that key (first one wins)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for col in columns:
        key = canonical_name(str(col))
        if key is not None and key not in seen:
            out[str(col)] = key
            seen.add(key)
    return out


def detect_dialect(columns) -> str:
    """Names the dialect of a header: 'cic-java', 'cicflowmeter-python', 'zeek', 'netflow',
    'argus' or 'unknown'."""
    names = [str(c).strip() for c in columns]
    if any(n in _JAVA and n != "Label" for n in names):
        return "cic-java"
    snake = {k for k in CANONICAL - ZEEK_TEXT_KEYS if "_" in k}
    if sum(n in snake for n in names) >= 5:
        return "cicflowmeter-python"
    if sum(n in _ZEEK_ONLY for n in names) >= 3:
        return "zeek"
    if sum(_fold(n) in {_fold(k) for k in _NETFLOW} for n in names) >= 3:
        return "netflow"
    if sum(n in _ARGUS for n in names) >= 3:
        return "argus"
    return "unknown"
