"""Validity: the domain rules of CICFlowMeter and NetFlow records, checked row by row.

Columns are found by their canonical key (`flowjax.dialects`), so the same rules
work on CIC Java names (`Flow Bytes/s`), Python cicflowmeter names
(`flow_byts_s`) and NetFlow names (`byt`, `pkt`, `td`). A rule whose columns are
absent is not applicable and is left out. The rules are calibrated per dialect:
durations are compared in microseconds, as the Java CICFlowMeter writes them (the
Python meter's seconds are converted), rates per second; Argus' hexadecimal ICMP
"ports" (`0x0303`) are read as numbers and its protocol names (rtp, rtcp, arp)
are known. Real CIC data breaks a few rules in a few rows (`Flow IAT Min` = -1),
which is why the holdout's pass rate is the reference, not 100 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from flowjax import dialects
from flowjax.eval.report import Row, Section

RATE_TOL = 1e-2  # relative tolerance of rate and total-length identities
ORDER_TOL = 1e-6  # relative tolerance of min <= mean <= max
RATE_KEYS = ("flow_byts_s", "flow_pkts_s", "fwd_pkts_s", "bwd_pkts_s")
DURATION_KEYS = dialects.DURATION_KEYS
COUNT_KEYS = dialects.COUNT_KEYS
FAMILIES = (
    "fwd_pkt_len",
    "bwd_pkt_len",
    "pkt_len",
    "flow_iat",
    "fwd_iat",
    "bwd_iat",
    "active",
    "idle",
)
# IANA numbers seen in flow data: HOPOPT, ICMP, IGMP, IPIP, TCP, UDP, IPv6, GRE,
# ESP, AH, ICMPv6, OSPF, PIM, VRRP, SCTP; and the names NetFlow tools print.
PROTOCOL_NUMBERS = frozenset({0, 1, 2, 4, 6, 17, 41, 47, 50, 51, 58, 89, 103, 112, 132})
PROTOCOL_NAMES = frozenset(
    {"hopopt", "icmp", "igmp", "ipip", "ipv4", "tcp", "udp", "ipv6", "gre", "esp", "ah",
     "icmpv6", "ipv6-icmp", "ospf", "pim", "vrrp", "sctp",
     "arp", "rarp", "rtp", "rtcp", "llc", "ipx/spx", "udt"}  # and Argus' names
)  # fmt: skip
SECONDS_DIALECTS = frozenset({"cicflowmeter-python"})  # meters that write durations in seconds

Columns = dict[str, np.ndarray]  # canonical key -> float64 [N]
Rule = Callable[[Columns, dict[str, pd.Series]], np.ndarray | None]


def _close(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(actual - expected) <= RATE_TOL * np.abs(expected) + 1e-6


def _finite(c: Columns, raw) -> np.ndarray | None:
    keys = [k for k in c if k not in RATE_KEYS]
    ok = np.all([np.isfinite(c[k]) for k in keys], axis=0) if keys else None
    rates = [k for k in RATE_KEYS if k in c]
    if rates and "flow_duration" in c:
        flowing = c["flow_duration"] > 0  # a 0-length flow has no defined rate
        rate_ok = np.all([np.isfinite(c[k]) | ~flowing for k in rates], axis=0)
        ok = rate_ok if ok is None else ok & rate_ok
    return ok


def _at_least(keys, low: float) -> Rule:
    def rule(c: Columns, raw):
        present = [k for k in keys if k in c]
        return np.all([~(c[k] < low) for k in present], axis=0) if present else None

    return rule


def _packets_present(c: Columns, raw):
    if "packets" in c:
        return ~(c["packets"] < 1)
    present = [k for k in ("tot_fwd_pkts", "tot_bwd_pkts") if k in c]
    return ~(sum(c[k] for k in present) < 1) if present else None


def _ordered(family: str) -> Rule:
    def rule(c: Columns, raw):
        keys = [f"{family}_{s}" for s in ("min", "mean", "max") if f"{family}_{s}" in c]
        if len(keys) < 2:
            return None
        pairs = zip(keys[:-1], keys[1:], strict=True)
        return np.all([~(c[a] > c[b] + ORDER_TOL * np.abs(c[b]) + ORDER_TOL) for a, b in pairs], 0)

    return rule


def _rates(rate_totals: dict[str, tuple[str, ...]]) -> Rule:
    def rule(c: Columns, raw):
        checks = [(r, t) for r, t in rate_totals.items() if r in c and all(k in c for k in t)]
        if not checks or "flow_duration" not in c:
            return None
        seconds = c["flow_duration"] / 1e6
        flowing = seconds > 0
        with np.errstate(all="ignore"):
            expected = [sum(c[k] for k in t) / seconds for _, t in checks]
        return np.all(
            [~flowing | _close(c[r], e) for (r, _), e in zip(checks, expected, strict=True)], axis=0
        )

    return rule


def _length_totals(c: Columns, raw):
    out = []
    for d in ("fwd", "bwd"):
        total, count = c.get(f"totlen_{d}_pkts"), c.get(f"tot_{d}_pkts")
        mean, longest = c.get(f"{d}_pkt_len_mean"), c.get(f"{d}_pkt_len_max")
        if total is not None and count is not None and mean is not None:
            out.append(_close(total, mean * count) | (np.abs(total - mean * count) <= 1))
        if total is not None and longest is not None:
            out.append(~(longest > total + ORDER_TOL * np.abs(total)))
    return np.all(out, axis=0) if out else None


def _subflows(c: Columns, raw):
    pairs = [
        (f"subflow_{d}_{u}", f"{t}_{d}_pkts")
        for d in ("fwd", "bwd")
        for u, t in (("pkts", "tot"), ("byts", "totlen"))
    ]
    present = [(s, t) for s, t in pairs if s in c and t in c]
    return np.all([~(c[s] > c[t]) for s, t in present], axis=0) if present else None


def _in_range(keys, low: int, high: int) -> Rule:
    def rule(c: Columns, raw):
        present = [k for k in keys if k in c]
        if not present:
            return None
        return np.all(
            [(c[k] >= low) & (c[k] <= high) & (c[k] == np.round(c[k])) for k in present], 0
        )

    return rule


def _protocol(c: Columns, raw):
    if "protocol" not in raw:
        return None
    number = pd.to_numeric(raw["protocol"], errors="coerce")
    name = raw["protocol"].astype(str).str.strip().str.lower()
    return (number.isin(PROTOCOL_NUMBERS) | name.isin(PROTOCOL_NAMES)).to_numpy()


def _bytes_per_packet(c: Columns, raw):
    if "bytes" not in c or "packets" not in c:
        return None
    with np.errstate(all="ignore"):
        per = c["bytes"] / c["packets"]
    return ~(c["packets"] >= 1) | ((per >= 20) & (per <= 65535))


RULES: dict[str, tuple[str, Rule]] = {
    "finite": ("numeric cells are finite (rates may be inf when duration is 0)", _finite),
    "nonnegative_counts": ("packet, byte, length and flag counts >= 0", _at_least(COUNT_KEYS, 0)),
    "nonnegative_durations": ("duration, IAT, active, idle >= 0", _at_least(DURATION_KEYS, 0)),
    "packets_present": ("a flow has at least one packet", _packets_present),
    **{f"min_mean_max_{f}": (f"{f}: min <= mean <= max", _ordered(f)) for f in FAMILIES},
    "byte_rate": (
        "Flow Bytes/s = total bytes / duration",
        _rates({"flow_byts_s": ("totlen_fwd_pkts", "totlen_bwd_pkts")}),
    ),
    "packet_rate": (
        "packets/s = packets / duration (flow, fwd, bwd)",
        _rates(
            {
                "flow_pkts_s": ("tot_fwd_pkts", "tot_bwd_pkts"),
                "fwd_pkts_s": ("tot_fwd_pkts",),
                "bwd_pkts_s": ("tot_bwd_pkts",),
            }
        ),
    ),  # fmt: skip
    "length_totals": ("total length = mean length x packets, max <= total", _length_totals),
    "subflow_le_total": ("subflow packets/bytes <= totals", _subflows),
    "port_range": (
        "ports are integers in 0..65535",
        _in_range(sorted(dialects.PORT_KEYS), 0, 65535),
    ),
    "init_window_range": (
        "initial window bytes in -1..65535 (-1 = none seen)",
        _in_range(["init_fwd_win_byts", "init_bwd_win_byts"], -1, 65535),
    ),
    "protocol_known": ("protocol is a known IP protocol number or name", _protocol),
    "bytes_per_packet": ("NetFlow: 20 <= bytes/packet <= 65535", _bytes_per_packet),
}


def _numbers(values: pd.Series, *, empty: float = np.nan) -> np.ndarray:
    """float64 [N]: the column as numbers; hexadecimal text ('0x0303', Argus) included,
    empty (or missing) cells of a text column as `empty`."""
    out = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, copy=True)
    if not pd.api.types.is_numeric_dtype(values):
        text = values.astype(str).str.strip().str.lower()
        hexa = text.str.fullmatch(r"0x[0-9a-f]+").to_numpy()
        out[hexa] = [int(x, 16) for x in text[hexa]]
        out[((text == "") | values.isna()).to_numpy()] = empty
    return out


def check_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """bool [N, applicable rules]: True where a row passes a rule."""
    keys = dialects.canonical_columns(frame.columns)
    raw = {k: frame[col] for col, k in keys.items()}
    # Argus leaves the ports of portless protocols (IGMP, some ICMP) empty: port 0, as NetFlow.
    c = {
        k: _numbers(v, empty=0.0 if k in dialects.PORT_KEYS else np.nan)
        for k, v in raw.items()
        if k not in dialects.TEXT_KEYS
    }
    if "flow_duration" in c and dialects.detect_dialect(frame.columns) in SECONDS_DIALECTS:
        c["flow_duration"] = c["flow_duration"] * 1e6
    results = {}
    for name, (_, rule) in RULES.items():
        mask = rule(c, raw)
        if mask is not None:
            results[name] = np.broadcast_to(np.asarray(mask, bool), (len(frame),))
    return pd.DataFrame(results, index=frame.index)


def validity(synthetic: pd.DataFrame, holdout: pd.DataFrame) -> Section:
    """Pass rates of all rules, and of each rule, for the synthetic and the holdout rows.

    Args:
      synthetic: the full synthetic table (its own column names).
      holdout: the full real held-out table.

    Returns:
      A section with the share of rows passing every rule; per-rule pass rates
      and failure counts in the details.
    """
    start = time.perf_counter()
    checks = {"synthetic": check_rows(synthetic), "reference": check_rows(holdout)}
    rules = [r for r in checks["synthetic"].columns if r in checks["reference"].columns]
    details = {"rules": {r: RULES[r][0] for r in rules}}
    for which, table in checks.items():
        table = table[rules]
        details[which] = {
            "all_rules": float(table.all(axis=1).mean()) if rules else 1.0,
            "pass_rate": {r: float(table[r].mean()) for r in rules},
            "failures": {r: int((~table[r]).sum()) for r in rules},
        }
    s, r = details["synthetic"], details["reference"]
    row = Row(
        "valid rows % (all domain rules)",
        100 * s["all_rules"],
        100 * r["all_rules"],
        f"{len(rules)} applicable rules",
    )
    worse = [
        f"{k}: {100 * s['pass_rate'][k]:.1f} % vs {100 * r['pass_rate'][k]:.1f} %"
        for k in rules
        if s["pass_rate"][k] < r["pass_rate"][k] - 0.01
    ]
    notes = ["rules broken more often than in holdout: " + "; ".join(worse)] if worse else []
    if not rules:
        notes.append("no domain rule applies to these columns")
    return Section("validity", [row], details, notes, time.perf_counter() - start)
