"""Loading: each dialect from small fixture files, each bad input with its own error."""

import gzip

import numpy as np
import pandas as pd
import pytest

from flowjax.io import BadValuePolicy, load_flows

JAVA_HEADER = (
    " Destination Port, Flow Duration, Total Fwd Packets, Total Backward Packets,"
    "Flow Bytes/s, Flow Packets/s, Fwd Header Length, Fwd Header Length, Label"
)
JAVA_ROWS = [
    "80,1000,2,1,3000.5,3000,40,40,BENIGN",
    "443,0,1,0,Infinity,Infinity,20,20,BENIGN",
    "53,250,1,1,NaN,8000,20,20,DDoS",
    "80,2000,4,3,1500.25,3500,80,80,DDoS",
]


def write(path, text, *, crlf=False, gz=False):
    data = text.replace("\n", "\r\n") if crlf else text
    if gz:
        with gzip.open(path, "wt", newline="") as f:
            f.write(data)
    else:
        path.write_text(data, newline="")
    return path


def test_java_dialect(tmp_path):
    text = "\n".join([JAVA_HEADER, *JAVA_ROWS[:2], JAVA_HEADER, *JAVA_ROWS[2:]]) + "\n"
    flows = load_flows(write(tmp_path / "java.csv.gz", text, crlf=True, gz=True))
    f, s, r = flows.frame, flows.schema, flows.report
    assert r.dialect == "cic-java"
    assert r.rows_read == 5 and r.header_rows_removed == 1 and r.rows_kept == 4
    assert "Fwd Header Length.1" in f.columns  # kept: generated tables write it as a copy
    assert "Fwd Header Length.1 = Fwd Header Length (holds on 4 of 4 rows)" in r.dependencies
    assert (
        r.excluded_columns["Fwd Header Length.1"]
        == "computed: Fwd Header Length.1 = Fwd Header Length"
    )
    assert "Label" in f.columns and "Destination Port" in f.columns  # names stripped
    assert s.label == "Label"
    assert r.nonfinite["Flow Bytes/s"] == {"NaN": 1, "+Infinity": 1}
    assert r.nonfinite["Flow Packets/s"] == {"+Infinity": 1}
    assert np.isposinf(f["Flow Bytes/s"].iloc[1]) and np.isnan(f["Flow Bytes/s"].iloc[2])
    assert s.kind("Destination Port") == "categorical"
    assert s.kind("Total Fwd Packets") == "integer"
    assert s.kind("Flow Bytes/s") == "continuous"
    assert list(f["Label"]) == ["BENIGN", "BENIGN", "DDoS", "DDoS"]


def test_python_cicflowmeter_dialect(tmp_path):
    frame = pd.DataFrame(
        {
            "src_ip": ["10.0.0.1", "10.0.0.2", "10.0.0.1"],
            "dst_ip": ["10.0.0.9", "10.0.0.9", "10.0.0.8"],
            "src_port": [5000, 5001, 5002],
            "dst_port": [80, 80, 22],
            "protocol": [6, 6, 6],
            "timestamp": ["2024-01-01 10:00:00", "2024-01-01 10:00:01", "2024-01-01 10:00:02"],
            "flow_duration": [0.5, 1.25, 3.0],
            "flow_byts_s": [100.0, 200.5, 50.0],
            "tot_fwd_pkts": [3, 4, 10],
            "tot_bwd_pkts": [2, 2, 9],
            "label": ["benign", "benign", "ssh"],
        }
    )
    frame.to_parquet(tmp_path / "py.parquet")
    flows = load_flows(tmp_path / "py.parquet")
    s = flows.schema
    assert flows.report.dialect == "cicflowmeter-python"
    assert s.label == "label"
    assert s.kind("src_ip") == "ip" and s.kind("timestamp") == "timestamp"
    assert s.kind("protocol") == "constant"
    assert set(s.excluded) == {"protocol"}  # addresses and time are modelled
    assert s.encoding("src_ip") == {"how": "ipv4", "form": "dotted"}
    assert s.encoding("timestamp")["format"]["unit"] == "%Y-%m-%d %H:%M:%S"
    off = load_flows(tmp_path / "py.parquet", identities=False)
    assert set(off.schema.excluded) == {"src_ip", "dst_ip", "timestamp", "protocol"}
    assert off.report.excluded_columns["src_ip"].startswith("missing from the output: addr")
    assert flows.report.excluded_columns["protocol"] == "constant 6"
    assert s.kind("flow_duration") == "continuous" and s.kind("tot_fwd_pkts") == "integer"


def test_netflow_dialect_and_override(tmp_path):
    text = (
        "srcip,dstip,srcport,dstport,proto,ts,td,pkt,byt,type\n"
        "1730436467,719036359,0,0,ICMP,1458298072364000.0,305.6,62,1736,background\n"
        "1730436466,719036358,443,51000,TCP,1458298072365000.0,1.5,10,9000,background\n"
        "1730436465,719036357,53,4000,UDP,1458298072366000.0,0.1,1,80,blacklist\n"
    )
    path = write(tmp_path / "nf.csv", text)
    flows = load_flows(path)
    s = flows.schema
    assert flows.report.dialect == "netflow"
    assert s.label == "type"
    assert s.kind("srcip") == "ip" and s.kind("ts") == "timestamp"
    assert s.kind("proto") == "categorical" and s.kind("pkt") == "integer"
    assert "ts" in s.sentence_columns  # a microsecond epoch, modelled as seconds
    assert s.encoding("ts")["format"] == {"kind": "epoch", "unit": "us", "integer": False,
                                          "decimals": 0}  # fmt: skip
    assert s.encoding("srcip") == {"how": "ipv4", "form": "integer"}
    flows = load_flows(path, schema={"kinds": {"pkt": "continuous"}, "include": ["ts"]},
                       identities=False)  # fmt: skip
    assert flows.schema.kind("pkt") == "continuous" and "ts" in flows.schema.sentence_columns


def test_policies(tmp_path):
    path = write(tmp_path / "j.csv", "\n".join([JAVA_HEADER, *JAVA_ROWS]) + "\n")
    dropped = load_flows(path, policy=BadValuePolicy(nonfinite="drop"))
    assert dropped.report.rows_kept == 2 and dropped.report.dropped == {"NaN or Infinity": 2}
    clipped = load_flows(path, policy=BadValuePolicy(nonfinite="clip"))
    assert clipped.report.rows_kept == 3  # the NaN row cannot be clipped
    assert clipped.frame["Flow Bytes/s"].max() == 3000.5
    assert clipped.report.clipped["Flow Packets/s"] == 1


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", "", "the file is empty"),
        ("header.csv", JAVA_HEADER + "\n", "no data rows"),
        ("text.csv", "a,b,Label\nx,y,BENIGN\nz,w,DDoS\n", "no numeric columns"),
        (
            "bad.csv",
            "\n".join(
                [JAVA_HEADER, JAVA_ROWS[0], "80,12x,2,1,1,1,1,1,BENIGN", JAVA_ROWS[1]]
            ),  # fmt: skip
            "column 'Flow Duration', line 3: non-numeric value '12x'",
        ),
    ],
)
def test_bad_inputs_name_the_problem(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(ValueError, match=f"{path}.*{message}" if name != "bad.csv" else message):
        load_flows(path)


def test_bad_value_can_be_dropped(tmp_path):
    text = "\n".join([JAVA_HEADER, JAVA_ROWS[0], "80,12x,2,1,1,1,1,1,BENIGN", JAVA_ROWS[3]])
    flows = load_flows(write(tmp_path / "b.csv", text), policy=BadValuePolicy(invalid="drop"))
    assert flows.report.rows_kept == 2
    assert flows.report.dropped == {"non-numeric value in a numeric column": 1}


def test_unknown_label_and_truncated_gzip(tmp_path):
    path = write(tmp_path / "j.csv.gz", "\n".join([JAVA_HEADER, *JAVA_ROWS * 200]), gz=True)
    with pytest.raises(ValueError, match="label column 'Class' not found"):
        load_flows(path, label="Class")
    truncated = tmp_path / "t.csv.gz"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=f"{truncated}: the compressed file is truncated"):
        load_flows(truncated)
    with pytest.raises(ValueError, match="no such file"):
        load_flows(tmp_path / "missing.csv")


def test_shared_files_load(shared_data):
    expected = {
        "cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz": ("cic-java", 9998, "Label"),
        "cicids2017_mlcve_sample_grouped7.csv.gz": ("cic-java", 6311, "Label"),
        "cicids2017_trafficlabelling_thursday_webattacks_balanced.csv.gz": (
            "cic-java",
            7267,
            "Label",
        ),  # fmt: skip
        "ugr16_netflow_sample1k.csv.gz": ("netflow", 1000, "type"),
    }
    for name, (dialect, rows, label) in expected.items():
        flows = load_flows(shared_data / name)
        assert (flows.report.dialect, flows.report.rows_kept, flows.schema.label) == (
            dialect, rows, label)  # fmt: skip
    friday = load_flows(shared_data / "cicids2017_mlcve_friday_afternoon_ddos_head10k.csv.gz")
    assert friday.report.nonfinite["Flow Bytes/s"] == {"NaN": 1, "+Infinity": 6}
    assert friday.report.nonfinite["Flow Packets/s"] == {"+Infinity": 7}
    assert friday.report.duplicate_rows == 73
    assert "Bwd PSH Flags" in friday.schema.excluded
