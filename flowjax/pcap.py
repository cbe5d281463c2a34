"""Packet captures to labelled CICFlowMeter flow tables: input checks, the flow meter, labels.

flowjax models flow records, and the paper's records come from CICFlowMeter.
`extract_flows` turns a pcap or pcapng file into the snake_case feature table of
the Python `cicflowmeter` package (`src_ip`, `dst_port`, `flow_byts_s`, ...),
which `flowjax.dialects` already knows, so `flowjax.io.load_flows` reads the
output unchanged. The flow meter is the optional extra `flowjax[pcap]` and is
imported only when a capture is converted. `label_flows` adds a `label` column
from attack windows (who attacked, from when to when), the way the CIC datasets
were labelled. Every input is checked first, so a broken capture fails with an
error that names the file and the problem instead of yielding zero flows.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import itertools
import os
import re
import struct
from pathlib import Path

from absl import logging

# First four bytes of a capture file -> (struct byte order, format name).
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", "pcap"),
    b"\xa1\xb2\xc3\xd4": (">", "pcap"),
    b"\x4d\x3c\xb2\xa1": ("<", "pcap"),  # nanosecond timestamps
    b"\xa1\xb2\x3c\x4d": (">", "pcap"),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"  # pcapng Section Header Block type
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_PCAPNG_PACKET_BLOCKS = (0x00000002, 0x00000003, 0x00000006)  # obsolete, simple, enhanced
_MAX_RECORD = 1 << 28  # a record longer than this is corruption, not a packet
_MIN_METER_VERSION = (0, 5)
_INSTALL_HINT = (
    "install the flow meter with `pip install 'flowjax[pcap]'` (cicflowmeter>=0.5 and scapy); "
    "cicflowmeter 0.5 declares Python>=3.12, on Python 3.11 install it with "
    "`pip install --no-deps --ignore-requires-python 'cicflowmeter==0.5.0' scapy requests`"
)


def check_capture(path: str | os.PathLike) -> tuple[str, int]:
    """Validates a capture file by walking its record headers, without decoding packets.

    Args:
      path: a pcap (microsecond or nanosecond, either byte order) or pcapng file.

    Returns:
      (format, packets): format is 'pcap' or 'pcapng'; packets counts packet records.

    Raises:
      ValueError: naming the file and the problem: missing, empty, not a capture
        (with a hint for gzip files), truncated (with the byte offset), no packets.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes), not a capture")
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic in _PCAP_MAGIC:
            packets = _walk_pcap(f, path, size, _PCAP_MAGIC[magic][0])
            kind = "pcap"
        elif magic == _PCAPNG_SHB:
            packets = _walk_pcapng(f, path, size)
            kind = "pcapng"
        elif magic[:2] == b"\x1f\x8b":
            raise ValueError(f"{path}: gzip-compressed, not a capture; gunzip it first")
        else:
            raise ValueError(
                f"{path}: not a pcap or pcapng file (first bytes {magic.hex()}; expected "
                f"a1b2c3d4, a1b23c4d or 0a0d0d0a in either byte order)"
            )
    if packets == 0:
        raise ValueError(f"{path}: a valid {kind} file with no packets")
    return kind, packets


def _walk_pcap(f, path: Path, size: int, order: str) -> int:
    """Counts the records of a classic pcap file; raises ValueError where it is cut short."""
    if size < 24:
        raise ValueError(f"{path}: truncated pcap: {size} bytes, the file header needs 24")
    offset, packets = 24, 0
    while offset < size:
        if size - offset < 16:
            raise ValueError(
                f"{path}: truncated pcap: packet {packets + 1} header at byte {offset} is cut "
                f"short ({size - offset} of 16 bytes)"
            )
        f.seek(offset + 8)
        (incl_len,) = struct.unpack(order + "I", f.read(4))
        if incl_len > _MAX_RECORD:
            raise ValueError(
                f"{path}: corrupt pcap: packet {packets + 1} at byte {offset} claims "
                f"{incl_len} bytes"
            )
        end = offset + 16 + incl_len
        if end > size:
            raise ValueError(
                f"{path}: truncated pcap: packet {packets + 1} at byte {offset} needs "
                f"{incl_len} bytes of data, the file ends after {size - offset - 16}"
            )
        offset, packets = end, packets + 1
    return packets


def _walk_pcapng(f, path: Path, size: int) -> int:
    """Counts the packet blocks of a pcapng file; raises ValueError where it is cut short."""
    offset, packets, order = 0, 0, "<"
    while offset < size:
        if size - offset < 12:
            raise ValueError(
                f"{path}: truncated pcapng: block at byte {offset} is cut short "
                f"({size - offset} of at least 12 bytes)"
            )
        f.seek(offset)
        head = f.read(12)
        if head[:4] == _PCAPNG_SHB:  # each section declares its own byte order
            for candidate in "<>":
                if struct.unpack(candidate + "I", head[8:12])[0] == _PCAPNG_BYTE_ORDER:
                    order = candidate
                    break
            else:
                raise ValueError(f"{path}: corrupt pcapng: bad byte-order magic at byte {offset}")
        block_type, length = struct.unpack(order + "II", head[:8])
        if length < 12 or length % 4 or length > _MAX_RECORD:
            raise ValueError(f"{path}: corrupt pcapng: block at byte {offset} has length {length}")
        if offset + length > size:
            raise ValueError(
                f"{path}: truncated pcapng: block at byte {offset} needs {length} bytes, the "
                f"file ends after {size - offset}"
            )
        f.seek(offset + length - 4)
        if struct.unpack(order + "I", f.read(4))[0] != length:
            raise ValueError(f"{path}: corrupt pcapng: block at byte {offset} ends badly")
        packets += block_type in _PCAPNG_PACKET_BLOCKS
        offset += length
    return packets


def _load_meter():
    """Imports the optional flow meter; raises ImportError with the install command."""
    try:
        from cicflowmeter.flow_session import FlowSession
        from scapy.utils import PcapReader
    except ImportError as e:
        raise ImportError(
            f"flowjax.pcap needs the cicflowmeter flow meter ({e}); {_INSTALL_HINT}"
        ) from e
    version = importlib.metadata.version("cicflowmeter")
    major_minor = re.match(r"(\d+)\.(\d+)", version)
    if major_minor is None or tuple(map(int, major_minor.groups())) < _MIN_METER_VERSION:
        # 0.1.6 (what pip picks beside numpy 2 on Python 3.11) drops every TCP and UDP packet.
        raise ImportError(f"cicflowmeter {version} is too old for flowjax.pcap; {_INSTALL_HINT}")
    return FlowSession, PcapReader


class _Rows:
    """Stands in for cicflowmeter's CSV writer: keeps the flow dicts in memory."""

    def __init__(self):
        self.rows: list[dict] = []

    def write(self, data: dict) -> None:
        self.rows.append(data)


def extract_flows(pcap_path: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Converts a capture into a CICFlowMeter flow table (CSV) with cicflowmeter's own columns.

    The packets are fed to cicflowmeter's `FlowSession` one by one in file order,
    without its sniffer: the sniffer's background thread expires flows by the
    wall clock, which splits flows of an offline capture at random. The meter's own
    flaws (the first packet of each flow counted twice, active/idle always 0, ...) are
    kept; flowjax/datasets/lab/README.md lists them.

    Args:
      pcap_path: a pcap or pcapng capture (checked by `check_capture` first).
      out_path: the CSV to write; written to `out_path.tmp` and then renamed.

    Returns:
      The number of flows (rows) written.

    Raises:
      ValueError: a bad capture, or one without IPv4 TCP/UDP packets.
      ImportError: the optional flow meter is not installed.
    """
    pcap_path, out_path = Path(pcap_path), Path(out_path)
    kind, packets = check_capture(pcap_path)
    flow_session, pcap_reader = _load_meter()
    logging.info("reading %s (%s, %d packets)", pcap_path, kind, packets)
    session = flow_session(output_mode="csv", output=os.devnull)
    rows = _Rows()
    session.output_writer = rows  # the meter calls .write(dict) once per finished flow
    with pcap_reader(str(pcap_path)) as reader:
        for i, packet in enumerate(reader, 1):
            session.process(packet)
            if i % 100_000 == 0:
                logging.info("%d/%d packets, %d flows done", i, packets, len(rows.rows))
    session.flush_flows()
    if not rows.rows:
        raise ValueError(f"{pcap_path}: {packets} packets but no IPv4 TCP or UDP flow")
    _write_csv(rows.rows, out_path)
    logging.info("wrote %d flows to %s", len(rows.rows), out_path)
    return len(rows.rows)


def _write_csv(rows: list[dict], out_path: Path) -> None:
    tmp = out_path.with_name(out_path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_path)


def read_windows(path: str | os.PathLike) -> list[tuple[str, str, float, float]]:
    """Reads attack windows: a CSV with columns label,host,start,end (epoch seconds).

    Returns:
      [(label, host, start, end)], sorted by start.

    Raises:
      ValueError: naming the file and line of a bad row, or two windows of one host
        that overlap (a flow could not be given one label).
    """
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"label", "host", "start", "end"} <= set(
            reader.fieldnames
        ):
            raise ValueError(f"{path}: needs the columns label,host,start,end")
        windows = []
        for line, row in enumerate(reader, 2):
            try:
                start, end = float(row["start"]), float(row["end"])
            except ValueError as e:
                raise ValueError(f"{path}:{line}: start/end are not numbers ({e})") from e
            if end < start or not row["label"] or not row["host"]:
                raise ValueError(f"{path}:{line}: empty label/host or end before start")
            windows.append((row["label"], row["host"], start, end))
    windows.sort(key=lambda w: w[2])
    for host in {w[1] for w in windows}:
        for a, b in itertools.pairwise(w for w in windows if w[1] == host):
            if b[2] <= a[3]:
                raise ValueError(f"{path}: windows {a[0]!r} and {b[0]!r} of host {host} overlap")
    return windows


def label_flows(
    flows_path: str | os.PathLike,
    windows_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    benign: str = "BENIGN",
) -> dict[str, int]:
    """Adds a `label` column: the attack whose host and window a flow matches, else `benign`.

    A flow matches a window when its `src_ip` or `dst_ip` is the window's host and
    its `timestamp` (cicflowmeter's start time, whole seconds in the local time zone
    of the process that extracted it; run both steps under the same TZ) lies in
    [floor(start), end].

    Args:
      flows_path: a CSV written by `extract_flows`.
      windows_path: attack windows, see `read_windows`.
      out_path: the labelled CSV (may equal flows_path); written via a .tmp file.
      benign: the label of flows outside every window.

    Returns:
      Flows per label.
    """
    flows_path, out_path = Path(flows_path), Path(out_path)
    windows = read_windows(windows_path)
    with open(flows_path, newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        missing = {"src_ip", "dst_ip", "timestamp"} - set(fields)
        if missing or "label" in fields:
            raise ValueError(
                f"{flows_path}: needs src_ip, dst_ip, timestamp and no label column "
                f"(missing {sorted(missing)})"
            )
        rows = list(reader)
    if not rows:
        raise ValueError(f"{flows_path}: no flows to label")
    counts: dict[str, int] = {}
    for line, row in enumerate(rows, 2):
        try:
            start = datetime.datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S").timestamp()
        except ValueError as e:
            raise ValueError(f"{flows_path}:{line}: bad timestamp {row['timestamp']!r}") from e
        row["label"] = next(
            (
                label
                for label, host, lo, hi in windows
                if host in (row["src_ip"], row["dst_ip"]) and int(lo) <= start <= hi
            ),
            benign,
        )
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    _write_csv(rows, out_path)
    return counts
