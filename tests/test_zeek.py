"""Zeek conn.log: loading as a flow table, writing back in Zeek's format, bad rows."""

import gzip
import re

import numpy as np
import pandas as pd
import pytest

from flowjax import zeek
from flowjax.io import load_flows

FIELDS = (
    "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes "
    "resp_bytes conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes "
    "resp_pkts resp_ip_bytes tunnel_parents"
).split()
TYPES = (
    "time string addr port addr port enum string interval count count string bool bool count "
    "string count count count count set[string]"
).split()
# IoT-23 joins its appended label fields to tunnel_parents with three spaces.
ROWS = [
    "1331901000.000000 CCUIP21wTjqkj8ZqX5 192.168.202.79 50463 192.168.229.251 80 tcp http "
    "0.004063 166 214 SF - - 0 ShADadFf 6 494 4 382 (empty)|Benign|-",
    "1331901000.123456 Csssjd3tX0yOTPDpng 192.168.202.76 137 192.168.202.255 137 udp dns "
    "3.780125 350 0 S0 - - 0 D 7 546 0 0 (empty)|Benign|-",
    "1331901001.010203 C6pKV8GSxOnSLghOa 192.168.202.89 59438 192.168.229.101 22 tcp - "
    "- - - S0 - - 0 S 1 60 0 0 (empty)|Malicious|PartOfAHorizontalPortScan",
    "1331901001.999999 CEle3f3zno26fFZkrh 192.168.202.89 59440 192.168.229.102 23 tcp - "
    "- - - S0 - - 0 S 1 60 0 0 (empty)|Malicious|PartOfAHorizontalPortScan",
    "1331901002.500001 CwSkQu4eWZCH7OONC1 192.168.202.102 3 192.168.229.254 1 icmp - "
    "0.000021 28 28 OTH - - 0 - 1 56 1 56 (empty)|Benign|-",
    "1331901003.000100 CjE1Ph2Nrp1pKD8Yf7 fe80::219:e3ff:fee7:5d23 143 ff02::16 0 icmp - "
    "0.500000 40 0 OTH - - 0 - 2 152 0 0 (empty)|Benign|-",
    "1331901004.700042 CYnwFi2L3K8yEELkfe 192.168.202.110 43213 192.168.229.156 443 tcp ssl "
    "12.089171 1024 8302 SF - - 0 ShADadfF 14 1764 12 8934 (empty)|Malicious|C&C",
    "1331901005.514233 CVz1kP1f3D2v4TqLdb 192.168.202.110 43214 192.168.229.156 443 tcp ssl "
    "11.502318 998 8301 SF - - 0 ShADadfF 13 1690 12 8933 (empty)|Malicious|C&C",
    "1331901006.000007 CJ4xRQ2bmZyP8nNs5a 192.168.202.65 6667 192.168.229.50 6667 tcp irc "
    "61.000417 5120 2049 RSTO - - 1460 ShADadR 40 7200 30 3609 (empty)|Malicious|C&C",
    "1331901006.250000 CH3tbE2ZTWcXH1aGr8 192.168.202.76 53 192.168.207.4 53 udp dns "
    "0.001102 34 50 SF - - 0 Dd 1 62 1 78 (empty)|Benign|-",
    "1331901007.875312 CkNTM91kfnyPJ3zE4d 192.168.202.81 80 192.168.229.7 8080 tcp http "
    "0.250003 0 0 SH - - 0 F 1 40 0 0 (empty)|Malicious|DDoS",
    "1331901009.000000 CpW9Lb2ZGpmgbUvNh9 192.168.202.83 55321 192.168.229.7 8080 tcp http "
    "0.310208 0 0 SH - - 0 F 1 40 0 0 (empty)|Malicious|DDoS",
]
SEP = "\t"
TAIL = "   "


def _row(text: str) -> str:
    head, label, detailed = text.split("|")
    return SEP.join(head.split(" ")) + TAIL + label + TAIL + detailed


def conn_log(rows: list[str] = ROWS) -> str:
    """A labelled conn.log as IoT-23 writes it."""
    header = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tconn",
        "#open\t2019-01-03-15-28-31",
        "#fields\t" + SEP.join(FIELDS) + TAIL + "label" + TAIL + "detailed-label",
        "#types\t" + SEP.join(TYPES) + TAIL + "string" + TAIL + "string",
    ]
    return "\n".join(header + [_row(r) for r in rows] + ["#close\t2019-01-03-15-29-00"]) + "\n"


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "conn.log.labeled"
    path.write_text(conn_log())
    return path


def test_sniffs_plain_and_gzipped(log, tmp_path):
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    csv = tmp_path / "flows.csv"
    csv.write_text("ts,proto\n1.0,tcp\n")
    assert zeek.is_zeek(log) and zeek.is_zeek(gz) and not zeek.is_zeek(csv)


def test_read_zeek_types_and_missing(log):
    frame, meta = zeek.read_zeek(log)
    assert list(frame.columns) == [*FIELDS, "label", "detailed-label"]
    assert meta["fields"] == list(frame.columns) and meta["types"][-1] == "string"
    assert meta["separator"] == "\t" and meta["unset_field"] == "-" and meta["spaced_tail"] == 3
    assert frame["id.orig_p"].dtype == np.int64 and frame["orig_pkts"].dtype == np.int64
    assert frame["orig_bytes"].dtype == np.float64 and np.isnan(frame["orig_bytes"][2])
    assert np.isnan(frame["duration"][2]) and frame["duration"][1] == 3.780125
    assert frame["service"][2] is None and frame["service"][0] == "http"
    assert frame["history"][4] is None and frame["local_orig"].isna().all()
    assert (frame["tunnel_parents"] == "(empty)").all()
    assert frame["id.orig_h"][5] == "fe80::219:e3ff:fee7:5d23"
    micros = np.rint(frame["ts"].to_numpy() * 1e6).astype(np.int64)
    assert micros[1] == 1331901000123456 and micros[7] == 1331901005514233
    assert frame["detailed-label"][0] is None and frame["detailed-label"][6] == "C&C"


@pytest.mark.parametrize("gz", [False, True])
def test_load_flows(log, tmp_path, gz):
    path = log
    if gz:
        path = tmp_path / "conn.log.gz"
        path.write_bytes(gzip.compress(log.read_bytes()))
    flows = load_flows(path)
    f, s, r = flows.frame, flows.schema, flows.report
    assert r.dialect == s.dialect == "zeek" and r.rows_kept == len(ROWS)
    kinds = dict(s.kinds)
    assert kinds["id.orig_h"] == kinds["id.resp_h"] == "ip"
    assert kinds["ts"] == "timestamp" and kinds["uid"] == "identifier"
    for col in ("id.orig_p", "id.resp_p", "proto", "service", "conn_state", "history"):
        assert kinds[col] == "categorical", col
    assert kinds["orig_bytes"] == kinds["orig_pkts"] == kinds["resp_ip_bytes"] == "integer"
    assert kinds["duration"] == "continuous"
    assert s.label == "detailed-label"  # more classes than the binary `label`
    assert r.nonfinite["duration"] == {"NaN": 2}
    expected, _ = zeek.read_zeek(log)
    pd.testing.assert_series_equal(f["ts"], expected["ts"])
    assert f["service"].tolist() == expected["service"].tolist()


def _rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(("#open", "#close"))]


def test_round_trip(log, tmp_path):
    frame, meta = zeek.read_zeek(log)
    for name in ("out.log", "out.log.gz"):
        out = zeek.write_zeek(frame, tmp_path / name, meta)
        again, meta_again = zeek.read_zeek(out)
        pd.testing.assert_frame_equal(again, frame)
        assert meta_again == meta
    assert zeek.read_header(tmp_path / "out.log.gz") == meta
    assert _rows((tmp_path / "out.log").read_text()) == _rows(log.read_text())
    assert not list(tmp_path.glob("*.tmp"))
    opened = re.search(r"^#open\t(\S+)$", (tmp_path / "out.log").read_text(), re.M)
    assert re.fullmatch(r"\d{4}(-\d\d){5}", opened.group(1))


def test_streaming_chunks_and_ungenerated_fields(log):
    frame, meta = zeek.read_zeek(log)
    generated = frame.drop(columns=["ts", "uid", "id.orig_h", "id.resp_h"])
    generated["orig_pkts"] = generated["orig_pkts"].astype(np.float64)  # as decoded: 6.0
    chunks = zeek.format_rows(generated[:5], meta) + zeek.format_rows(generated[5:], meta)
    assert chunks == zeek.format_rows(generated, meta)
    first = chunks.splitlines()[0].split("\t")
    assert first[:5] == ["-", "-", "-", "50463", "-"] and first[16] == "6"
    text = zeek.header_lines(meta) + chunks + zeek.close_line(meta)
    assert text.splitlines()[-1].startswith("#close\t") and text.startswith("#separator \\x09\n")
    with pytest.raises(ValueError, match=r"\['extra'\] are not fields"):
        zeek.format_rows(frame.assign(extra=1), meta)


def test_plain_conn_log_without_labels(tmp_path):
    text = conn_log().replace(TAIL + "label" + TAIL + "detailed-label", "")
    text = text.replace(TAIL + "string" + TAIL + "string", "")
    text = re.sub(rf"{TAIL}\S+{TAIL}\S+$", "", text, flags=re.M)
    path = tmp_path / "conn.log"
    path.write_text(text)
    frame, meta = zeek.read_zeek(path)
    assert list(frame.columns) == FIELDS and meta["spaced_tail"] == 0
    flows = load_flows(path)
    assert flows.report.dialect == "zeek" and flows.schema.label is None


def test_bad_rows_name_file_and_line(tmp_path):
    rows = list(ROWS)
    rows[3] = rows[3].replace(" 192.168.229.102 23 ", " 192.168.229.102 ")  # a field short
    path = tmp_path / "short.log"
    path.write_text(conn_log(rows))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 12: 22 fields"):
        zeek.read_zeek(path)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 12"):
        load_flows(path)
    rows = list(ROWS)
    rows[1] = rows[1].replace(" 3.780125 ", " 3.78s ")
    path.write_text(conn_log(rows))
    with pytest.raises(ValueError, match=r"line 10: column 'duration' holds '3.78s'"):
        zeek.read_zeek(path)
    path.write_text("#separator \\x09\n#path\tconn\n")
    with pytest.raises(ValueError, match="without a #fields line"):
        zeek.read_zeek(path)


def test_generated_tables_are_written_back_as_zeek_logs(tmp_path):
    """A model trained on a conn.log writes .log output as a conn.log with its header."""
    from flowjax import generate, pipeline

    path = tmp_path / "conn.log.labeled"
    path.write_text(conn_log(ROWS * 10))
    gen, _, _ = pipeline.fit(pipeline.model_config("marginals", "default"), path, tmp_path / "r")
    assert gen.tokenizer.schema.source_format["format"] == "zeek"
    out = generate.generate_to_files(gen, 50, tmp_path / "synthetic.log", progress=False)
    frame, meta = zeek.read_zeek(out)
    original, original_meta = zeek.read_zeek(path)
    assert meta["fields"] == original_meta["fields"] and meta["types"] == original_meta["types"]
    assert len(frame) == 50 and out.read_text().rstrip().splitlines()[-1].startswith("#close")
    assert set(frame["proto"]) <= set(original["proto"])
    # A column with an IPv6 address is modelled as categories: only real addresses come out.
    assert set(frame["id.resp_h"]) <= set(original["id.resp_h"])
    with pytest.raises(ValueError, match="Zeek output needs"):
        generate.generate_to_files(
            pipeline.fit(pipeline.model_config("marginals", "default"), "lab", tmp_path / "l")[0],
            10, tmp_path / "lab.log", progress=False,
        )  # fmt: skip
