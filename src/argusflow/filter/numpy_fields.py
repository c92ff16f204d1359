"""The derived fields the filter compares (dur, rates, loads, pcr, avgdur, tcprtt, vid, mid), in numpy.

The field table (records.fields, records.derive) states them as polars expressions, which the
numpy back-end cannot run; these are the same formulas over a batch's numpy columns, so that
`ra -w - dur gt 1` reads, selects and copies without polars.  The C float steps are kept (ra
holds durations, rates and loads as C floats): both back-ends then give the same bits, which
tests/test_filter_backends.py checks on the samples and the corpus.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from argusflow.filter.numpy_ops import Columns, NpExpr
from argusflow.records.schema import DSR_BITS

TIMES = frozenset({"sstart", "slast", "dstart", "dlast"})
COUNTS = frozenset({"spkts", "dpkts"})


def span(start: np.ndarray, last: np.ndarray) -> np.ndarray:
    """A duration as ra keeps it: a C float of the exact difference in seconds."""
    return ((last - start).astype(np.float64) / 1e6).astype(np.float32)


def dur(c: Columns) -> np.ndarray:
    """records.derive.dur: from the earliest non-zero start to the latest time of any kind."""
    s, d = c["sstart"], c["dstart"]
    start = np.where(s == 0, d, np.where(d == 0, s, np.minimum(s, d)))
    latest = np.maximum(np.maximum(c["slast"], c["dlast"]), np.maximum(s, d))
    return span(start, latest)


def side_times(c: Columns, side: str) -> tuple[np.ndarray, np.ndarray]:
    """records.derive's (sstime, sltime) or (dstime, dltime): ra's per-side start and end when
    the record lacks destination times (split, moved or shared, as observed on the corpus)."""
    sstart, spkts, dpkts = c["sstart"], c["spkts"], c["dpkts"]
    no_dst = (c["dstart"] == 0) & (dpkts > 0)
    one_each = (spkts == 1) & (dpkts == 1)
    slast = np.where(c["slast"] == 0, sstart, c["slast"])
    split = no_dst & ((spkts == 1) != (dpkts == 1)) & ((sstart // 1_000_000) != (slast // 1_000_000))
    zero = np.zeros_like(sstart)
    if side == "s":
        moved = no_dst & (spkts == 0)
        first = np.where(moved, zero, sstart)
        last = np.select([moved, no_dst & one_each, split & (spkts == 1)], [zero, sstart, sstart], slast)
        return first, last
    none = dpkts == 0
    first = np.select([none, no_dst & one_each, no_dst], [zero, slast, sstart], c["dstart"])
    dlast = np.where(c["dlast"] == 0, c["dstart"], c["dlast"])
    last = np.select([none, split & (dpkts == 1), no_dst], [zero, sstart, slast], dlast)
    return first, last


def dir_time(c: Columns, side: str) -> np.ndarray:
    """The side's duration, or the record's when the side has none."""
    d = span(*side_times(c, side))
    return np.where(d > 0, d, dur(c)).astype(np.float32)


def dir_rate(side: str) -> Callable[[Columns], np.ndarray]:
    def rate(c: Columns) -> np.ndarray:
        n, t = c[f"{side}pkts"], dir_time(c, side)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            value = (n - 1).astype(np.float32) / t
        return np.where((n > 1) & (t > 0), value, np.float32(0.0))

    return rate


def dir_load(side: str) -> Callable[[Columns], np.ndarray]:
    def load(c: Columns) -> np.ndarray:
        n, b, t = c[f"{side}pkts"], c[f"{side}bytes"], dir_time(c, side)
        payload = (b - b // np.where(n > 0, n, 1)).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            value = payload * np.float32(8.0) / t
        return np.where((n > 1) & (t > 0), value, np.float32(0.0))

    return load


def pcr(c: Columns) -> np.ndarray:
    s, d = c["sappbytes"].astype(np.float64), c["dappbytes"].astype(np.float64)
    total = s + d
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (s - d) / total, -0.0)


def mean(c: Columns) -> np.ndarray:
    """records.derive.agr_stat('mean'): the aggregated mean, or the duration when not merged."""
    merged = (c["dsrs"] & DSR_BITS["agr"]) != 0
    return np.where(merged, c["agr_act_mean"], dur(c)).astype(np.float32)


def tcprtt(c: Columns) -> np.ndarray:
    """synack + ackdat, added as the u32 ra adds them (wrapping), in seconds."""
    total = (c["tcp_synack"].astype(np.uint64) + c["tcp_ackdat"]) % (1 << 32)
    return total.astype(np.float64) / 1e6


def _masked(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Columns], np.ndarray]:
    return lambda c: fn(c[name])


RATES = TIMES | COUNTS
# name -> (function of the columns, the columns it reads, the field's DSR in records.fields)
FIELDS: dict[str, tuple[Callable[[Columns], np.ndarray], frozenset[str], str]] = {
    "dur": (dur, TIMES, "time"),
    "srate": (dir_rate("s"), RATES, "metric"),
    "drate": (dir_rate("d"), RATES, "metric"),
    "sload": (dir_load("s"), RATES | {"sbytes"}, "metric"),
    "dload": (dir_load("d"), RATES | {"dbytes"}, "metric"),
    "pcr": (pcr, frozenset({"sappbytes", "dappbytes"}), "metric"),
    "mean": (mean, TIMES | {"dsrs", "agr_act_mean"}, "agr"),
    "tcprtt": (tcprtt, frozenset({"tcp_synack", "tcp_ackdat"}), "net"),
    "svid": (_masked("svlan", lambda v: v & 0x0FFF), frozenset({"svlan"}), "vlan"),
    "dvid": (_masked("dvlan", lambda v: v & 0x0FFF), frozenset({"dvlan"}), "vlan"),
    "smpls": (_masked("smpls", lambda v: v // 4096), frozenset({"smpls"}), "mpls"),
    "dmpls": (_masked("dmpls", lambda v: v // 4096), frozenset({"dmpls"}), "mpls"),
}


def field(name: str) -> tuple[NpExpr, str] | None:
    """The numpy value of field `name` and its DSR (None: no numpy form here)."""
    if name not in FIELDS:
        return None
    fn, roots, dsr = FIELDS[name]
    return NpExpr(fn, roots), dsr
