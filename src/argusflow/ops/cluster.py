"""racluster's aggregation: merge the records of each flow key into one record (racluster(1)).

Pipeline position: record batches in (already filtered), one merged record per flow key out.

How it works, with memory bounded by the number of groups (not records):

1. `apply_model` turns each record into its aggregation form: key fields masked as the model says
   (`saddr/24`), records re-oriented for `matrix` (lower address first) and duplicated and
   reversed for `-M rmon`.
2. `Clusterer.add` gives every record a group id with one polars join of its key against the
   known keys; the key of a new group is remembered in first-appearance order.  Of the group's
   first record only the columns that never merge are kept (a small frame per batch); its
   merging columns become the group's state row.  Nothing else of the input is kept, so memory
   is bounded by the number of groups, not of records.
3. A compiled kernel (numba) then runs the merge of the real ArgusMergeRecords over the batch in
   input order, on a numpy matrix of the merging columns.  Per-field rules come from the one
   field table (records.fields `merge`: SUM, MIN, MAX, EQUAL, MIN_NONZERO; see `rule_columns`);
   what is per-DSR structure rather than per-field stays here: times widen, TCP objects merge as
   racluster merges them, addresses keep their longest common prefix, and the aggregation
   statistics (count, min/mean/stdev/max of the record durations) follow racluster's running
   float32 formulas, quirks included.  The kernel is sequential because racluster's results
   depend on the order of the merges (direction correction, running statistics, which TCP
   object wins); it is compiled, so no Python runs per record.  A group's first record fills
   its state row in the same pass.  The compiled kernel is an extension module built ahead of
   time by ops.cluster_aot (numba.pycc), so that a run does not start numba (0.7 s, 100 MB);
   numba's JIT is the fallback.
4. `Clusterer.result` returns the merged records in racluster's output order: the order in
   which each group was last updated, then sorted by the `-m` keys that are also sort keys.

Direction correction (default key only): a record whose reversed key matches an existing group
is reversed before merging, unless it is a TCP record that saw the SYN while the group did not,
in which case the group is reversed instead (as racluster does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

from argusflow.errors import ArgusflowError
from argusflow.ops import cluster_aot
from argusflow.ops.cluster_columns import corrected_key_columns
from argusflow.ops.cluster_keys import KeyIndex
from argusflow.ops.cluster_model import (  # noqa: F401 - re-exported for ops.cluster's users
    A_MAX,
    A_MEAN,
    A_MIN,
    A_STDEV,
    BLOCK,
    DEFAULT_KEYS,
    FLOW_KEY_COLUMNS,
    IX,
    KEY_COLUMNS,
    MERGED,
    NCOLS,
    OTHER_PAIRS,
    RESERVED_GROUPS,
    SLICE_ROWS,
    SORT_KEYS,
    STATE_DTYPES,
    SWAP_BITS,
    SWAP_PAIRS,
    TCP_DIR,
    W8,
    W16,
    W32,
    W64,
    WIDTHS,
    Model,
    parse_model,
    reserved,
    to_u64,
)
from argusflow.ops.cluster_state import GroupState
from argusflow.records import derive
from argusflow.records import fields as field_table
from argusflow.records.schema import (
    ADDR_ARP,
    ADDR_ETHER,
    ADDR_IPV4,
    ADDR_IPV6,
    ADDR_RARP,
    DSR_BITS,
    NET_ESP,
    NET_TCP_INIT,
    NET_TCP_PERF,
    NET_TCP_STATUS,
    SCHEMA,
)
from argusflow.records.writer import Batch as WriterBatch
from argusflow.records.writer import client_times

if TYPE_CHECKING:
    from argusflow.ops.cluster_timers import Timers

if cluster_aot.READY:
    def _njit(fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn  # the kernel comes from the built extension (ops.cluster_aot): no numba
else:
    import numba

    _njit = numba.njit(cache=True)

c = pl.col

# --- merging columns (their layout: ops.cluster_model) ---------------------------------------

_IX = IX

# Column indices the kernel uses (numba reads module globals as constants).
DSRS, SRCID, SRCID_TYPE, FQUAL = _IX["dsrs"], _IX["srcid"], _IX["srcid_type"], _IX["flow_qual"]
FSUB = _IX["flow_subtype"]
SHI, SLO, DHI, DLO = _IX["saddr_hi"], _IX["saddr_lo"], _IX["daddr_hi"], _IX["daddr_lo"]
PROTO, SPORT, DPORT, SMASK, DMASK = _IX["proto"], _IX["sport"], _IX["dport"], _IX["smask"], _IX["dmask"]
SSTART, SLAST, DSTART, DLAST = _IX["sstart"], _IX["slast"], _IX["dstart"], _IX["dlast"]
SPKTS, DPKTS = _IX["spkts"], _IX["dpkts"]


def rule_columns(rule: str, dsr: str | None = None, side: str = "") -> np.ndarray:
    """(merging column, DSR bit) of every field that merges by `rule` in records.fields.

    The field table is the one place per-field merge rules are written; the kernel applies a
    rule to a column when both records carry the field's DSR.  Derived fields (pkts, dur ...)
    follow from their columns and are skipped.  `side` keeps the "s" or "d" fields only.
    """
    out = []
    for f in field_table.FIELDS.values():
        if f.merge != rule or f.dsr is None or (dsr is not None and f.dsr != dsr):
            continue
        expr = f.value()
        name = expr.meta.output_name() if expr.meta.is_column() else None
        if name in _IX and name.startswith(side):
            out.append((_IX[name], DSR_BITS[f.dsr]))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


# The rules of the field table as the kernel reads them: counters add, packet sizes widen,
# TTLs keep the smallest non-zero value, TOS and the flow's protocol and ports survive only
# when every record agrees.
SUMS = rule_columns(field_table.SUM)
MAXES, MINS = rule_columns(field_table.MAX), rule_columns(field_table.MIN)
FLOW_EQUAL = rule_columns(field_table.EQUAL, "flow")[:, 0].copy()
ATTR_EQUAL_S = rule_columns(field_table.EQUAL, "attr", "s")[:, 0].copy()
ATTR_EQUAL_D = rule_columns(field_table.EQUAL, "attr", "d")[:, 0].copy()
ATTR_MINNZ_S = rule_columns(field_table.MIN_NONZERO, "attr", "s")[:, 0].copy()
ATTR_MINNZ_D = rule_columns(field_table.MIN_NONZERO, "attr", "d")[:, 0].copy()
SENC, DENC = _IX["sencaps"], _IX["dencaps"]
NETSUB, TSTATUS, TSTATE, TOPT = _IX["net_subtype"], _IX["tcp_status"], _IX["tcp_state"], \
    _IX["tcp_options"]
SYNACK, ACKDAT = _IX["tcp_synack"], _IX["tcp_ackdat"]
TCP_S = np.array([_IX[f"stcp_{k}"] for k in TCP_DIR], dtype=np.int64)
TCP_D = np.array([_IX[f"dtcp_{k}"] for k in TCP_DIR], dtype=np.int64)
T_STATUS, T_SEQBASE, T_SEQ, T_ACK, T_WINNUM, T_BYTES, T_RETRANS, T_ACKBYTES, T_WINBYTES, \
    T_WIN, T_FLAGS, T_WINSHIFT = range(1, 13)
ESPSPI, ESPLAST, ESPLOST = _IX["esp_spi"], _IX["esp_lastseq"], _IX["esp_lostseq"]
ICMPMAP = np.array([_IX[k] for k in MERGED if k.startswith("icmpmap_")], dtype=np.int64)
IMQUAL, IMOSRC = _IX["icmpmap_qual"], _IX["icmpmap_osrc"]
MQUAL, SMAC, DMAC, METYPE = _IX["mac_qual"], _IX["smac"], _IX["dmac"], _IX["mac_etype"]
AQUAL, STTL, STOS, SOPTS = _IX["attr_qual"], _IX["sttl"], _IX["stos"], _IX["sipopts"]
DTTL, DTOS, DOPTS = _IX["dttl"], _IX["dtos"], _IX["dipopts"]
ATTR_S = np.array([_IX[k] for k in ("sttl", "stos", "sipid", "sipopts")], dtype=np.int64)
ATTR_D = np.array([_IX[k] for k in ("dttl", "dtos", "dipid", "dipopts")], dtype=np.int64)

B_TRANSPORT, B_TIME, B_METRIC = DSR_BITS["transport"], DSR_BITS["time"], DSR_BITS["metric"]
B_PSIZE, B_ENCAPS, B_NET = DSR_BITS["psize"], DSR_BITS["encaps"], DSR_BITS["net"]
B_ICMPMAP, B_MAC, B_ATTR, B_FLOW = DSR_BITS["icmpmap"], DSR_BITS["mac"], DSR_BITS["attr"], \
    DSR_BITS["flow"]
SAW_SYN = derive.SAW_SYN
TCP_SUBTYPES = (NET_TCP_INIT, NET_TCP_STATUS, NET_TCP_PERF)
MAX_WINDOW = 65536

# What ArgusZeroRecord clears when racluster.conf's timers restart an aggregate.
RESTART_ZERO = np.array([
    SSTART, SLAST, DSTART, DLAST, *[_IX[k] for k in ("spkts", "sbytes", "sappbytes", "dpkts",
                                                     "dbytes", "dappbytes")],
    *[_IX[k] for k in ("smaxsz", "sminsz", "dmaxsz", "dminsz", "spktsz_hist", "dpktsz_hist")],
    TSTATUS, *TCP_S, *TCP_D,
    *[_IX[k] for k in ("sjit_act_n", "sjit_idl_n", "djit_act_n", "djit_idl_n")],
], dtype=np.int64)

# Column of `result()`: the group's first record carried statistics already (racluster output).
AGR_FROM_INPUT = "_agr_in"


@_njit
def _swap(row: np.ndarray, pairs: np.ndarray, bits: np.ndarray) -> None:
    for k in range(pairs.shape[0]):
        a, b = pairs[k, 0], pairs[k, 1]
        t = row[a]
        row[a] = row[b]
        row[b] = t
    for k in range(bits.shape[0]):
        col, a, b = bits[k, 0], bits[k, 1], bits[k, 2]
        v = row[col]
        moved = (b if v & a else 0) | (a if v & b else 0)
        row[col] = (v & ~np.uint64(a | b)) | np.uint64(moved)


@_njit
def _prefix4(a: np.uint64, b: np.uint64, masklen: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Longest common prefix of two IPv4 addresses, limited to `masklen` bits."""
    if a == b:
        return a, masklen
    value = np.uint64(0)
    taken = np.uint64(0)
    ind = np.uint64(0x80000000)
    while ind and (a & ind) == (b & ind) and taken < masklen:
        value |= a & ind
        ind >>= np.uint64(1)
        taken += np.uint64(1)
    return value, taken


@_njit
def _prefix64(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Common leading bits of two 64-bit words and how many there are."""
    value = np.uint64(0)
    taken = np.uint64(0)
    ind = np.uint64(1) << np.uint64(63)
    while ind and (a & ind) == (b & ind):
        value |= a & ind
        ind >>= np.uint64(1)
        taken += np.uint64(1)
    return value, taken


@_njit
def _prefix6(ahi: np.uint64, alo: np.uint64, bhi: np.uint64,
             blo: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64]:
    """Common prefix of two IPv6 addresses as racluster 3.0.8 takes it: whole 32-bit words, so
    the first differing word and all after it are cleared (fe80::4e5e:cff:fe9a:ec54 and
    fe80::4e5e:cff:feea:365 keep fe80::4e5e:cff:0:0)."""
    m32 = np.uint64(0xFFFFFFFF)
    a = (ahi >> np.uint64(32), ahi & m32, alo >> np.uint64(32), alo & m32)
    b = (bhi >> np.uint64(32), bhi & m32, blo >> np.uint64(32), blo & m32)
    same = 0  # leading words in common (no list: the kernel runs without numba's allocator)
    for k in range(4):
        if a[k] != b[k]:
            break
        same += 1
    zero = np.uint64(0)
    hi = ((a[0] << np.uint64(32)) if same >= 1 else zero) | (a[1] if same >= 2 else zero)
    lo = ((a[2] << np.uint64(32)) if same >= 3 else zero) | (a[3] if same >= 4 else zero)
    return hi, lo, np.uint64(32 * same)


@_njit
def _bswap32(v: np.uint64) -> np.uint64:
    u = np.uint64(v)
    b0 = u & np.uint64(0xFF)
    b1 = (u >> np.uint64(8)) & np.uint64(0xFF)
    b2 = (u >> np.uint64(16)) & np.uint64(0xFF)
    b3 = (u >> np.uint64(24)) & np.uint64(0xFF)
    return (b0 << np.uint64(24)) | (b1 << np.uint64(16)) | (b2 << np.uint64(8)) | b3


@_njit
def _keep_equal(s: np.ndarray, r: np.ndarray, cols: np.ndarray) -> None:
    """The EQUAL rule: a value survives only while every merged record has it."""
    for k in range(cols.shape[0]):
        if s[cols[k]] != r[cols[k]]:
            s[cols[k]] = 0


@_njit
def _merge_flow(s: np.ndarray, r: np.ndarray) -> None:
    """Flow key fields outside the model: common prefix for addresses, equal-or-zero else."""
    st, rt = s[FQUAL] & 0x1F, r[FQUAL] & 0x1F
    ip = (st == ADDR_IPV4 or st == ADDR_IPV6) and (rt == ADDR_IPV4 or rt == ADDR_IPV6)
    if (s[FSUB] & 0x3F) != (r[FSUB] & 0x3F) or (st != rt and not ip):
        # Different kinds of flow key: nothing of the key survives.
        s[SHI] = 0
        s[SLO] = 0
        s[DHI] = 0
        s[DLO] = 0
        s[PROTO] = 0
        s[SPORT] = 0
        s[DPORT] = 0
        return
    if (s[FSUB] & 0x3F) == 0x03:
        # LAYER_3_MATRIX keys hold their addresses byte-swapped: the prefix is of those bytes.
        for col in (SLO, DLO):
            v, _ = _prefix4(_bswap32(s[col]), _bswap32(r[col]), np.uint64(32))
            s[col] = _bswap32(v)
        return
    if st == ADDR_ARP or st == ADDR_RARP:
        # ARP keys keep an address only while every record has it (no prefixes).
        for col in (SLO, DLO):
            if s[col] != r[col]:
                s[col] = 0
        return
    if st == ADDR_IPV4:
        if rt == ADDR_IPV4:
            m = min(s[SMASK], r[SMASK])
            s[SLO], s[SMASK] = _prefix4(s[SLO], r[SLO], m)
            m = min(s[DMASK], r[DMASK])
            s[DLO], s[DMASK] = _prefix4(s[DLO], r[DLO], m)
            s[FQUAL] |= 0x40
            if s[PROTO] != r[PROTO]:
                s[PROTO] = 0
            else:
                if s[SPORT] != r[SPORT]:
                    s[SPORT] = 0
                if s[DPORT] != r[DPORT]:
                    s[DPORT] = 0
        else:
            s[SLO] = 0
            s[DLO] = 0
            if rt == ADDR_IPV6:
                _keep_equal(s, r, FLOW_EQUAL)
            else:
                s[FLOW_EQUAL] = 0
    elif st == ADDR_IPV6:
        if rt == ADDR_IPV6:
            for hi, lo, mk in ((SHI, SLO, SMASK), (DHI, DLO, DMASK)):
                if s[hi] != r[hi] or s[lo] != r[lo]:
                    s[hi], s[lo], s[mk] = _prefix6(s[hi], s[lo], r[hi], r[lo])
            s[FQUAL] |= 0x40
        else:
            s[SHI] = 0
            s[SLO] = 0
            s[DHI] = 0
            s[DLO] = 0
        _keep_equal(s, r, FLOW_EQUAL)


@_njit
def _merge_time(s: np.ndarray, r: np.ndarray) -> None:
    later = r[SSTART] >= s[SSTART]
    if r[SSTART] != 0 and (s[SSTART] == 0 or r[SSTART] < s[SSTART]):
        s[SSTART] = r[SSTART]
    rl = r[SLAST] if r[SLAST] != 0 else r[SSTART]
    sl = s[SLAST] if s[SLAST] != 0 else s[SSTART]
    # racluster 3.0.8 takes the record's last time when the record starts no earlier than the
    # group, in the second of the group's last time or after it, even when that last time is
    # earlier (interleaved flows of one group, corpus with -m saddr daddr); else the later one.
    us = np.uint64(1000000)
    s[SLAST] = rl if later and r[SSTART] // us >= sl // us else max(sl, rl)
    if r[DSTART] != 0 or r[DLAST] != 0:
        if s[DSTART] == 0 and s[DLAST] == 0:
            s[DSTART] = r[DSTART]
            s[DLAST] = r[DLAST]
        else:
            if r[DSTART] != 0 and (s[DSTART] == 0 or r[DSTART] < s[DSTART]):
                s[DSTART] = r[DSTART]
            if r[DLAST] > s[DLAST]:
                s[DLAST] = r[DLAST]


@_njit
def _merge_tcp_dir(s: np.ndarray, r: np.ndarray, ix: np.ndarray) -> None:
    s[ix[T_STATUS]] |= r[ix[T_STATUS]]
    s[ix[T_ACK]] = r[ix[T_ACK]]
    sb, rb = s[ix[T_SEQBASE]], r[ix[T_SEQBASE]]
    if sb > rb:
        if sb - rb > MAX_WINDOW:  # sequence roll-over
            s[ix[T_ACKBYTES]] = (s[ix[T_ACKBYTES]] + r[ix[T_SEQ]] + (0xFFFFFFFF - sb)) & 0xFFFFFFFF
        else:
            s[ix[T_SEQBASE]] = rb
    else:
        s[ix[T_SEQ]] = r[ix[T_SEQ]]
    s[ix[T_WINNUM]] = (s[ix[T_WINNUM]] + r[ix[T_WINNUM]]) & 0xFFFFFFFF
    s[ix[T_BYTES]] = (s[ix[T_BYTES]] + r[ix[T_BYTES]]) & 0xFFFFFFFF
    s[ix[T_RETRANS]] = (s[ix[T_RETRANS]] + r[ix[T_RETRANS]]) & 0xFFFFFFFF
    s[ix[T_WIN]] = r[ix[T_WIN]]
    s[ix[T_WINBYTES]] = r[ix[T_WINBYTES]]
    s[ix[T_FLAGS]] |= r[ix[T_FLAGS]]


@_njit
def _is_tcp_net(v: np.uint64) -> bool:
    return v == NET_TCP_INIT or v == NET_TCP_STATUS or v == NET_TCP_PERF


@_njit
def _merge_net(s: np.ndarray, r: np.ndarray) -> None:
    sn, rn = s[NETSUB], r[NETSUB]
    if sn != rn and not (_is_tcp_net(sn) and _is_tcp_net(rn)):
        s[DSRS] &= ~np.uint64(B_NET)
        return
    if sn == NET_TCP_PERF and rn == NET_TCP_PERF:
        # Observed with racluster 3.0.8.2: the later record's options and handshake times win,
        # and a source base sequence number that differs is cleared.
        s[TSTATUS] |= r[TSTATUS]
        s[TOPT] = r[TOPT]
        s[SYNACK] = r[SYNACK]
        s[ACKDAT] = r[ACKDAT]
        sb, rb = s[TCP_S[T_SEQBASE]], r[TCP_S[T_SEQBASE]]
        dst_base = s[TCP_D[T_SEQBASE]]
        _merge_tcp_dir(s, r, TCP_S)
        _merge_tcp_dir(s, r, TCP_D)
        if sb > rb and sb - rb > MAX_WINDOW:
            s[TCP_S[T_SEQBASE]] = 0
        s[TCP_D[T_SEQBASE]] = dst_base
        s[TCP_S[0]] = r[TCP_S[0]]
    elif sn == NET_TCP_PERF and rn == NET_TCP_INIT:
        # racluster 3.0.8 takes only the INIT record's options, and its (absent) handshake
        # times: the status and directions stay the group's (wechat, port 443 flows).
        s[TOPT] = r[TOPT]
        s[SYNACK] = 0
        s[ACKDAT] = 0
    elif sn == NET_TCP_PERF:  # STATUS into PERF
        s[TSTATUS] |= r[TSTATUS]
        s[TOPT] |= r[TOPT]
        s[TCP_S[T_FLAGS]] |= r[TCP_S[T_FLAGS]]
    elif sn == NET_TCP_INIT and rn == NET_TCP_INIT:
        s[TSTATUS] |= r[TSTATUS]
        s[TOPT] |= r[TOPT]
        s[TCP_S[T_FLAGS]] |= r[TCP_S[T_FLAGS]]
    elif sn == NET_TCP_INIT and rn == NET_TCP_PERF:
        # The group stays an INIT object: the later record's source side, status and options
        # replace its own, and nothing of the destination or the handshake times comes in
        # (racluster 3.0.8 on flows that began with a lone SYN, corpus with -m saddr daddr).
        for k in range(TCP_S.shape[0]):
            s[TCP_S[k]] = r[TCP_S[k]]
        s[TSTATUS] = r[TSTATUS]
        s[TSTATE] = r[TSTATE]
        s[TOPT] = r[TOPT]
    elif _is_tcp_net(sn) and rn == NET_TCP_PERF:
        # racluster copies the later TCP object over the earlier one.
        for k in range(TCP_S.shape[0]):
            s[TCP_S[k]] = r[TCP_S[k]]
            s[TCP_D[k]] = r[TCP_D[k]]
        s[TSTATUS] = r[TSTATUS]
        s[TSTATE] = r[TSTATE]
        s[TOPT] = r[TOPT]
        s[SYNACK] = r[SYNACK]
        s[ACKDAT] = r[ACKDAT]
        s[NETSUB] = NET_TCP_PERF
    elif sn == NET_TCP_STATUS:
        s[TSTATUS] |= r[TSTATUS]
    elif sn == NET_ESP:
        s[ESPLAST] = r[ESPLAST]
        s[ESPLOST] = (s[ESPLOST] + r[ESPLOST]) & 0xFFFFFFFF
        if s[ESPSPI] != r[ESPSPI]:
            s[ESPSPI] = 0


@_njit
def _merge_attr_side(s: np.ndarray, r: np.ndarray, bit: int, opt_bit: int, frag_bit: int,
                     cols: np.ndarray, equal: np.ndarray, minnz: np.ndarray) -> None:
    opts = cols[3]
    if (s[AQUAL] & bit) and (r[AQUAL] & bit):
        for k in range(equal.shape[0]):
            if s[equal[k]] != r[equal[k]]:
                s[equal[k]] = 0
        for k in range(minnz.shape[0]):
            x = minnz[k]
            if r[x] > 0 and s[x] > r[x]:
                s[x] = r[x]
        s[opts] ^= r[opts]
        if r[AQUAL] & frag_bit:
            s[AQUAL] |= frag_bit
    elif not (s[AQUAL] & bit) and (r[AQUAL] & bit):
        for k in range(cols.shape[0]):
            s[cols[k]] = r[cols[k]]
        s[AQUAL] |= bit | (r[AQUAL] & (opt_bit | frag_bit))


@_njit
def _f32mul(mean: np.float32, n: int) -> np.float64:
    """C's `float * int`: computed in single precision."""
    return np.float64(np.float32(mean * np.float32(n)))


@_njit
def _merge_agr(g: int, first_dur: np.ndarray, value: float, s: np.ndarray, count: np.ndarray,
               n: np.ndarray, stats: np.ndarray, rcount: int, rn: int, rstats: np.ndarray) -> None:
    """racluster's running statistics of the merged records' durations (C floats)."""
    if count[g] == 0:
        # racluster creates the statistics at the first merge, from the group's first record.
        if s[SPKTS] + s[DPKTS] == 0:
            if rcount > 0:
                count[g], n[g] = rcount, rn
                for k in range(4):  # element by element: a slice copy would allocate
                    stats[g, k] = rstats[k]
            return
        v0 = np.float32(first_dur[g])
        count[g] = 1
        n[g] = 1
        stats[g, A_MIN] = v0
        stats[g, A_MEAN] = v0
        stats[g, A_STDEV] = 0
        stats[g, A_MAX] = v0
    _add_agr(g, value, count, n, stats, rcount, rn, rstats)


@_njit
def _add_agr(g: int, value: float, count: np.ndarray, n: np.ndarray, stats: np.ndarray,
             rcount: int, rn: int, rstats: np.ndarray) -> None:
    """A record's duration (or its statistics) into group `g`'s existing statistics."""
    if rcount > 0:
        # Both sides carry statistics (records racluster wrote before): combine them.
        count[g] += rcount
        stats[g, A_MAX] = max(stats[g, A_MAX], rstats[A_MAX])
        stats[g, A_MIN] = min(stats[g, A_MIN], rstats[A_MIN])
        n1, n2 = n[g], rn
        m1, m2 = stats[g, A_MEAN], rstats[A_MEAN]
        sum1 = _f32mul(m1, n1) if n1 > 1 else np.float64(m1)
        sum2 = _f32mul(m2, n2) if n2 > 1 else np.float64(m2)
        d1, d2 = np.float64(stats[g, A_STDEV]), np.float64(rstats[A_STDEV])
        ss1 = n1 * (d1 * d1 + np.float64(m1) ** 2) if n1 > 1 else np.float64(m1) ** 2
        ss2 = n2 * (d2 * d2 + np.float64(m2) ** 2) if n2 > 1 else np.float64(m2) ** 2
        n[g] = n1 + n2
        if n[g] > 0:
            stats[g, A_MEAN] = np.float32((sum1 + sum2) / n[g])
            m2s = np.float64(stats[g, A_MEAN]) ** 2
            stats[g, A_STDEV] = np.float32(np.sqrt(abs((ss1 + ss2) / n[g] - m2s)))
        return
    count[g] += 1
    if stats[g, A_MAX] < value:
        stats[g, A_MAX] = value
    if stats[g, A_MIN] > value:
        stats[g, A_MIN] = value
    mean = stats[g, A_MEAN]
    sum1 = _f32mul(mean, n[g]) + value
    sd = np.float64(stats[g, A_STDEV])
    ss1 = n[g] * (sd * sd + np.float64(mean) * np.float64(mean))
    ss1 += value * value
    n[g] += 1
    stats[g, A_MEAN] = np.float32(sum1 / n[g])
    m2 = np.float64(stats[g, A_MEAN]) ** 2
    stats[g, A_STDEV] = np.float32(np.sqrt(abs(ss1 / n[g] - m2)))


@_njit
def _merge_one(s: np.ndarray, r: np.ndarray) -> None:
    """ArgusMergeRecords for the merging columns: `s` is the group so far, `r` the new record."""
    sd, rd = s[DSRS], r[DSRS]
    if (sd & B_TRANSPORT) and not ((rd & B_TRANSPORT) and s[SRCID] == r[SRCID]):
        s[DSRS] &= ~np.uint64(B_TRANSPORT)
    if (sd & B_FLOW) and (rd & B_FLOW):
        _merge_flow(s, r)
    if (sd & B_TIME) and (rd & B_TIME):
        _merge_time(s, r)
    for k in range(SUMS.shape[0]):
        if sd & rd & SUMS[k, 1]:
            s[SUMS[k, 0]] += r[SUMS[k, 0]]
    # An empty network DSR (UDP and other flows) is no object to merge: the client drops it.
    if (sd & B_NET) and (rd & B_NET) and s[NETSUB] != 0 and r[NETSUB] != 0:
        _merge_net(s, r)
    if (sd & B_ATTR) and (rd & B_ATTR):
        _merge_attr_side(s, r, 0x01, 0x04, 0x10, ATTR_S, ATTR_EQUAL_S, ATTR_MINNZ_S)
        _merge_attr_side(s, r, 0x02, 0x08, 0x20, ATTR_D, ATTR_EQUAL_D, ATTR_MINNZ_D)
    for k in range(MAXES.shape[0]):
        x = MAXES[k, 0]
        if (sd & rd & MAXES[k, 1]) and r[x] > s[x]:
            s[x] = r[x]
    for k in range(MINS.shape[0]):
        x = MINS[k, 0]
        if (sd & rd & MINS[k, 1]) and r[x] < s[x]:
            s[x] = r[x]
    if (sd & B_ENCAPS) and (rd & B_ENCAPS):
        s[SENC] |= r[SENC]
        s[DENC] |= r[DENC]
    # MAC addresses: racluster 3.0.8.2 keeps the first record's (samples *_rich, mix), and drops
    # them when a record without any is merged in.
    if (sd & B_MAC) and not (rd & B_MAC):
        s[DSRS] &= ~np.uint64(B_MAC)
    if rd & B_ICMPMAP:
        if sd & B_ICMPMAP:
            if (s[IMQUAL] & 0x07) and (r[IMQUAL] & 0x07) and (s[FQUAL] & 0x1F) == ADDR_IPV4:
                s[IMOSRC], _ = _prefix4(s[IMOSRC], r[IMOSRC], np.uint64(32))
        else:
            for k in range(ICMPMAP.shape[0]):
                s[ICMPMAP[k]] = r[ICMPMAP[k]]
            s[DSRS] |= B_ICMPMAP


@_njit
def _load(st: np.ndarray, g: int, s64: np.ndarray, s32: np.ndarray, s16: np.ndarray,
          s8: np.ndarray) -> None:
    """Group `g`'s state row, widened to u64 (the merge works on one width)."""
    for k in range(W64.shape[0]):
        st[W64[k]] = s64[g, k]
    for k in range(W32.shape[0]):
        st[W32[k]] = np.uint64(s32[g, k])
    for k in range(W16.shape[0]):
        st[W16[k]] = np.uint64(s16[g, k])
    for k in range(W8.shape[0]):
        st[W8[k]] = np.uint64(s8[g, k])


@_njit
def _store(st: np.ndarray, g: int, s64: np.ndarray, s32: np.ndarray, s16: np.ndarray,
           s8: np.ndarray) -> None:
    """Group `g`'s state row back at its columns' own widths."""
    for k in range(W64.shape[0]):
        s64[g, k] = st[W64[k]]
    for k in range(W32.shape[0]):
        s32[g, k] = np.uint32(st[W32[k]] & np.uint64(0xFFFFFFFF))
    for k in range(W16.shape[0]):
        s16[g, k] = np.uint16(st[W16[k]] & np.uint64(0xFFFF))
    for k in range(W8.shape[0]):
        s8[g, k] = np.uint8(st[W8[k]] & np.uint64(0xFF))


@_njit
def _restart(g: int, p: int, st: np.ndarray, s64: np.ndarray, s32: np.ndarray,
             s16: np.ndarray, s8: np.ndarray, count: np.ndarray, n: np.ndarray,
             stats: np.ndarray, flipped: np.ndarray) -> None:
    """Group `g` begins as racluster.conf's timers restart an aggregate (ArgusZeroRecord):
    the reported group `p` with its times, counters, sizes, TCP status and directions and
    statistics zeroed; everything else (key, attributes, masked fields) carries over.
    Statistics that `p` had stay as zeroed ones, so their minimum stays 0 (3.0.8)."""
    _load(st, p, s64, s32, s16, s8)
    for k in range(RESTART_ZERO.shape[0]):
        st[RESTART_ZERO[k]] = 0
    flipped[g] = flipped[p]
    count[g] = 0
    n[g] = 0
    stats[g, :] = 0


@_njit
def merge_batch(rec: np.ndarray, gid: np.ndarray, fresh: np.ndarray, seq: np.ndarray,
                relrev: np.ndarray, dur: np.ndarray, s64: np.ndarray, s32: np.ndarray,
                s16: np.ndarray, s8: np.ndarray, first_dur: np.ndarray, count: np.ndarray,
                n: np.ndarray, stats: np.ndarray, flipped: np.ndarray, last: np.ndarray,
                pairs: np.ndarray, bits: np.ndarray, rcount: np.ndarray, rn: np.ndarray,
                rstats: np.ndarray, restart: np.ndarray, block: np.ndarray,
                st: np.ndarray) -> None:
    """Records into their groups' state rows, in input order: a group's first record becomes
    its state row, the later ones merge into it.  `rec` is column-major (one row per merging
    column), as the columns come from the batch: no transposed copy.  A first record with a
    `restart` group (>= 0, racluster.conf timers) merges into that group's zeroed copy.
    The state rows are kept at their columns' widths (s64 ... s8, see WIDTHS) and widened to
    u64 for each merge.  `block` (BLOCK x columns) and `st` (a row) are scratch space, given
    so that the kernel allocates nothing: it runs without numba's allocator and reference
    counting, and releases the GIL (aot.NOGIL), so the next chunk decodes meanwhile."""
    ncols, nrec = rec.shape
    for i in range(nrec):
        if i % BLOCK == 0:
            # A block of records turned row-major, each column read as one contiguous run
            # (reading a record's columns one by one would miss the cache on every value).
            hi = min(i + BLOCK, nrec)
            for j in range(ncols):
                for k in range(i, hi):
                    block[k - i, j] = rec[j, k]
        g = gid[i]
        last[g] = seq[i]
        value = np.float64(np.float32(dur[i]))
        if fresh[i]:
            if restart[i] < 0:
                _store(block[i % BLOCK], g, s64, s32, s16, s8)
                continue
            _restart(g, restart[i], st, s64, s32, s16, s8, count, n, stats, flipped)
            _add_agr(g, value, count, n, stats, rcount[i], rn[i], rstats[i])
        else:
            _load(st, g, s64, s32, s16, s8)
            _merge_agr(g, first_dur, value, st, count, n, stats, rcount[i], rn[i], rstats[i])
        row = block[i % BLOCK]  # the record's own copy: changed in place, read once
        if row[DPKTS] == 0 and row[NETSUB] == NET_TCP_PERF:
            # A TCP record with no destination packets brings no destination window.
            row[TCP_D[T_WIN]] = 0
        if row[SPKTS] == 0 and row[NETSUB] == NET_TCP_PERF:
            row[TCP_S[T_WIN]] = 0
        if relrev[i]:
            s_syn = (st[TSTATUS] & SAW_SYN) != 0
            r_syn = (row[TSTATUS] & SAW_SYN) != 0
            tcp = row[PROTO] == 6 and (st[DSRS] & B_NET) and (row[DSRS] & B_NET)
            if tcp and r_syn and not s_syn:
                _swap(st, pairs, bits)
                flipped[g] ^= True
            else:
                _swap(row, pairs, bits)
                if row[PROTO] == 1 or row[PROTO] == 58:  # ICMP type/code and id stay put
                    t = row[SPORT]
                    row[SPORT] = row[DPORT]
                    row[DPORT] = t
        _merge_one(st, row)
        _store(st, g, s64, s32, s16, s8)


_KERNEL: list[Callable[..., Any]] = []


def scratch() -> tuple[np.ndarray, np.ndarray]:
    """merge_batch's scratch space: a block of records turned row-major, and one state row."""
    return np.empty((BLOCK, NCOLS), dtype=np.uint64), np.empty(NCOLS, dtype=np.uint64)


def _kernel() -> Callable[..., Any]:
    """merge_batch compiled: from the extension of ops.cluster_aot (built on first use), else
    numba's JIT."""
    if not _KERNEL:
        kernel = cluster_aot.merge_batch()
        if kernel is None and cluster_aot.READY:
            # The extension existed when this module was imported but cannot be loaded now.
            raise ArgusflowError("the compiled merge kernel could not be loaded; run again")
        _KERNEL.append(kernel or merge_batch)
    return _KERNEL[0]


# --- the model applied to a batch ------------------------------------------------------------

def _masked(hi: str, lo: str, plen: int | None, v6: pl.Expr) -> list[pl.Expr]:
    """An address column pair cut to `plen` bits (IPv4 in lo; IPv6 over hi and lo)."""
    if plen is None:
        return []
    m4 = (0xFFFFFFFF << (32 - min(plen, 32))) & 0xFFFFFFFF
    hi_mask = ((1 << 64) - 1) ^ ((1 << (64 - min(plen, 64))) - 1) if plen < 64 else (1 << 64) - 1
    lo_mask = ((1 << 64) - 1) ^ ((1 << (128 - plen)) - 1) if plen > 64 else 0
    v4 = derive.addr_type() == ADDR_IPV4  # only IP addresses are cut (not MACs, ARP keys)
    return [
        pl.when(v6).then(c(hi) & pl.lit(hi_mask, pl.UInt64)).otherwise(c(hi)).alias(hi),
        pl.when(v6).then(c(lo) & pl.lit(lo_mask, pl.UInt64))
        .when(v4).then(c(lo) & pl.lit(m4, pl.UInt64)).otherwise(c(lo)).alias(lo),
    ]


def reverse(batch: pl.DataFrame, rows: pl.Expr) -> pl.DataFrame:
    """The batch with the `rows` reversed (every src/dst pair swapped), as ArgusReverseRecord."""
    swaps = []
    # Ports stay put for ICMP (type/code and id) and, as racluster 3.0.8 does it, for IPv6.
    still = derive.is_icmp4() | (derive.addr_type() == ADDR_IPV6)
    esp = (derive.addr_type() == ADDR_IPV4) & (c("proto") == 50)  # SPI bytes in the masks
    for a, b in derive._SWAP_PAIRS:
        turn = rows & ~still if a == "sport" else rows & ~esp if a == "smask" else rows
        swaps.append(pl.when(turn).then(c(b)).otherwise(c(a)).alias(a))
        swaps.append(pl.when(turn).then(c(a)).otherwise(c(b)).alias(b))
    for column, pairs in derive._SWAP_BITS.items():
        swaps.append(pl.when(rows).then(derive._swap_bits(column, pairs)).otherwise(c(column))
                     .alias(column))
    return batch.with_columns(swaps)


def _le_words(side: str) -> list[pl.Expr]:
    """An IPv6 address (`s` or `d`) as four 32-bit words, each read little-endian."""
    out = []
    for half, shift in (("hi", 32), ("hi", 0), ("lo", 32), ("lo", 0)):
        w = (c(f"{side}addr_{half}") // (1 << shift)) % (1 << 32)
        out.append((w % 256) * (1 << 24) + ((w // 256) % 256) * (1 << 16)
                   + ((w // 65536) % 256) * 256 + w // (1 << 24))
    return out


def apply_model(batch: pl.DataFrame, model: Model, rmon: bool) -> pl.DataFrame:
    """Records as this model aggregates them: masked keys, matrix order, rmon duplicates."""
    at = derive.addr_type()
    v6 = at == ADDR_IPV6
    # Records read without MASKLEN have whole-address masks.
    # (ESP keys keep the SPI's low half where the masks would be: left as they are.)
    given = ((c("flow_qual") & 0x40) != 0) | ((at == ADDR_IPV4) & (c("proto") == 50))
    full = pl.when(v6).then(128).otherwise(32)
    batch = batch.with_columns(
        pl.when(given).then(c("smask")).otherwise(full).cast(pl.UInt16).alias("smask"),
        pl.when(given).then(c("dmask")).otherwise(full).cast(pl.UInt16).alias("dmask"),
    )
    if rmon:
        copy = reverse(batch, pl.lit(True))
        batch = pl.concat([batch, copy]).sort("_seq", maintain_order=True)
        batch = batch.with_columns((c("flow_qual") & ~0x20).cast(pl.UInt8))
    if model.matrix:
        # IPv6 addresses compare as four 32-bit words read in host (little-endian) order, as
        # racluster 3.0.8 compares them (ff02:: comes before fe80::).
        later6 = pl.lit(False)
        for s_word, d_word in reversed(list(zip(_le_words("s"), _le_words("d"), strict=True))):
            later6 = (s_word > d_word) | ((s_word == d_word) & later6)
        later = (at == ADDR_IPV4) & (c("saddr_lo") > c("daddr_lo")) | v6 & later6
        # Computed once as a column: inlined, it would be evaluated again in every swap.
        batch = reverse(batch.with_columns(later.alias("_later")), c("_later")).drop("_later")
    exprs = _masked("saddr_hi", "saddr_lo", model.smask, v6) + _masked(
        "daddr_hi", "daddr_lo", model.dmask, v6)
    v4 = at == ADDR_IPV4
    for name, plen in (("smask", model.smask), ("dmask", model.dmask)):
        if plen is not None:
            exprs.append(pl.when(v6).then(pl.lit(plen)).when(v4).then(min(plen, 32))
                         .otherwise(c(name)).cast(pl.UInt16).alias(name))
    if model.imask is not None:
        m4 = (0xFFFFFFFF << (32 - min(model.imask, 32))) & 0xFFFFFFFF
        exprs.append((c("icmpmap_osrc") & m4).alias("icmpmap_osrc"))
    if not model.preserve and not model.default:
        # racluster.conf models re-key each record: what the model does not name is cleared.
        cleared = {"saddr": ("saddr_hi", "saddr_lo"), "daddr": ("daddr_hi", "daddr_lo"),
                   "proto": ("proto",), "sport": ("sport",), "dport": ("dport",)}
        named = set(model.columns)
        for cols in cleared.values():
            for col in cols:
                if col not in named and not any(e.meta.output_name() == col for e in exprs):
                    exprs.append(pl.lit(0, SCHEMA[col]).alias(col))
    if exprs:
        batch = batch.with_columns(exprs)
        if model.smask is not None or model.dmask is not None:
            batch = batch.with_columns((c("flow_qual") | 0x40).cast(pl.UInt8))
    return batch


def key_frame(batch: pl.DataFrame, model: Model, correct: bool) -> pl.DataFrame:
    """Group key columns of each record (`_k*`), and `_fwd`: its orientation within the key.

    With direction correction a record and its reverse share one key (the smaller of the two
    orientations); `_fwd` says which one the record is in, so that records can be turned round
    to the orientation of their group's first record.
    """
    cols: list[pl.Expr] = []
    names = model.columns
    extra = {"_soui": c("smac") // (1 << 24), "_doui": c("dmac") // (1 << 24)}
    # racluster keys on the model's fields only: with -m, IPv4, IPv6 and non-IP flows can merge.
    # A flow key field keys on where the field lies in the key, so on the kind of key too.
    # racluster builds the key of IPv4 and IPv6 flows field by field from the same masked
    # fields, so without addresses in the model (-m proto dport) the two merge; addresses of
    # different lengths never match.
    at = derive.addr_type()
    addresses = model.default or bool({"saddr_lo", "daddr_lo"} & set(names))
    ip_kind = pl.when(at.is_in([ADDR_IPV4, ADDR_IPV6])).then(pl.lit(0, pl.UInt8)).otherwise(at)
    kind = [(c("flow_subtype") & 0x3F).alias("_kt"), (at if addresses else ip_kind).alias("_ka")] \
        if model.default or set(names) & FLOW_KEY_COLUMNS else []
    if not (correct and model.default):
        for name in names:
            cols.append((extra[name] if name in extra else c(name)).alias(f"_k_{name}"))
        if not cols and not kind:
            cols.append((c("rtype") * 0).alias("_k_none"))  # -m none: one group
        return batch.select(*kind, *cols, pl.lit(True).alias("_fwd"))
    return corrected_keys(batch)


def corrected_keys(batch: pl.DataFrame) -> pl.DataFrame:
    """key_frame of the default key with direction correction: the flow key in both
    orientations, the smaller one kept.  In numpy: the polars expressions' temporaries were a
    fifth of racluster's peak memory (polars' allocator keeps what it frees, apart from the
    decoder's)."""
    names = ["flow_qual", "flow_subtype", "proto", "sport", "dport", "saddr_hi", "saddr_lo",
             "daddr_hi", "daddr_lo"]
    col = {n: batch.get_column(n).to_numpy() for n in names}
    keys, forward = corrected_key_columns(col, batch.height)
    at, sub = col["flow_qual"] & 0x1F, col["flow_subtype"]
    out = {"_kt": pl.Series(sub & 0x3F), "_ka": pl.Series(at)}
    key = ("saddr_hi", "saddr_lo", "daddr_hi", "daddr_lo", "sport", "dport")
    for nm, values in zip(key, keys, strict=True):
        out[f"_k_{nm}"] = pl.Series(values)
    for x in ("srcid", "proto", "arp_sha", "flow_raw"):
        out[f"_k_{x}"] = batch.get_column(x)
    out["_fwd"] = pl.Series(forward)
    return pl.DataFrame(out)


# --- the aggregator ------------------------------------------------------------------------------

def client_form_times(batch: pl.DataFrame) -> pl.DataFrame:
    """The four timestamps as the real client holds them after reading (records.writer's rule):
    racluster merges those, so a one-packet-each-way record is already split in two."""
    times = client_times(WriterBatch(batch), np.arange(batch.height))
    # A record whose packets all went back, with its times in the source slots (argus's short
    # form): the client gives the times to the destination and none stay with the source, so
    # merging it cannot move the source's last time (racluster 3.0.8 on the bench capture).
    gone = ((batch["spkts"] == 0) & (batch["dpkts"] > 0) & (batch["dstart"] == 0)
            & (batch["sstart"] > 0)).to_numpy()
    if gone.any():
        times[0] = np.where(gone, 0, times[0])
        times[1] = np.where(gone, 0, times[1])
    names = ("sstart", "slast", "dstart", "dlast")
    return batch.with_columns(pl.Series(n, t, dtype=pl.Int64) for n, t in zip(names, times,
                                                                              strict=True))






@dataclass
class TimedGroups(GroupState):
    """The group state, and per group the group whose first record it keeps (itself, or the
    first of the groups a racluster.conf timer restarted into it)."""

    parent: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ARRAYS: ClassVar[tuple[str, ...]] = (*GroupState.ARRAYS, "parent")


@dataclass
class Clusterer:
    """Aggregates record batches with one model; `result()` gives the merged records."""

    model: Model = field(default_factory=Model)
    correct: bool = True
    rmon: bool = False
    report: bool = True          # False: -M norep, no aggregation statistics
    label: str | None = None     # racluster.conf label= for the records of this model
    sort: bool = True            # sort the output by the -m keys (not for racluster.conf rules)
    groups: int = 0
    seen: int = 0
    _keys: KeyIndex = field(default_factory=KeyIndex)
    # Per group: the first record's columns that never merge (frames in group order), and its
    # state (ops.cluster_state).  Nothing else of the input is kept.
    _base: list[pl.DataFrame] = field(default_factory=list)
    _columns: list[str] = field(default_factory=list)  # the input's column order
    _groups: TimedGroups = field(default_factory=TimedGroups)
    timers: Timers | None = None  # racluster.conf status=/idle= (None: one aggregate per key)

    def add(self, batch: pl.DataFrame) -> None:
        """Merge a batch of (selected) records; MARs and events are not aggregated."""
        # racluster 3.0.8 cannot re-key the addresses of LAYER_3_MATRIX flow keys ("buf 12 not
        # big enough") and drops those records; so do we.
        far = (c("rtype") == 0x10) | (c("rtype") == 0x30)
        if self.model.default or {"saddr_lo", "daddr_lo"} & set(self.model.columns):
            far = far & ((c("flow_subtype") & 0x3F) != 0x03)
        keep = batch.select(far).to_series()
        if not keep.all():  # the usual batch has only flow records: no copy then
            batch = batch.filter(keep)
        if batch.height == 0:
            return
        pos = None
        if "_pos" in batch.columns:
            pos = batch["_pos"].to_numpy()
            batch = batch.drop("_pos")
        if not self._columns:
            self._columns = batch.columns
        if self.rmon:  # the order apply_model keeps among a record and its reversed copy
            batch = batch.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_seq"))
        batch = apply_model(batch, self.model, self.rmon)
        use_correct = self.correct and self.model.default and not self.rmon
        keys = key_frame(batch, self.model, use_correct)
        timed = self.timers is not None and pos is not None
        if timed:
            keys = self.timers.segment(keys, batch)  # type: ignore[union-attr]
        gid, fresh = self._group_ids(keys.drop("_fwd"))
        restart = np.full(len(gid), -1, dtype=np.int64)
        if timed:
            restart = self.timers.record(gid, pos, self.groups)  # type: ignore[union-attr, arg-type]
        fwd = keys["_fwd"].to_numpy()
        del keys
        self._groups.grow(self.groups)
        dur = ((derive.ltime_us() - derive.stime_us()).cast(pl.Float64) / 1e6)
        durations = batch.select(dur).to_series().to_numpy()
        batch = client_form_times(batch)
        agr = batch.select(
            pl.when(derive.has("agr")).then(c("agr_count")).otherwise(0).cast(pl.Int64),
            c("agr_act_n").cast(pl.Int64))
        rcount, rn = agr.to_series(0).to_numpy(), agr.to_series(1).to_numpy()
        rstats = np.ascontiguousarray(batch.select(
            "agr_act_min", "agr_act_mean", "agr_act_stdev", "agr_act_max").to_numpy()
            .astype(np.float32))
        seq = np.arange(self.seen, self.seen + batch.height, dtype=np.int64)
        new_rows = np.flatnonzero(fresh)
        if len(new_rows):
            # What never merges is kept from a group's first record; the rest is its state row.
            self._base.append(batch.select(c for c in self._columns if c not in _IX)[new_rows])
            self._groups.start(gid, new_rows, fwd, durations, rcount, rn, rstats)
            self._groups.parent[gid[new_rows]] = gid[new_rows]
            self._restarted(gid, restart)
        self.seen += batch.height
        arrays = [batch.get_column(name).to_numpy() for name in MERGED]
        self._groups.merge(_kernel(), arrays, gid, fresh, seq, fwd, durations, rcount, rn,
                           rstats, restart, scratch())

    def _restarted(self, gid: np.ndarray, restart: np.ndarray) -> None:
        """Groups that restart an earlier one (racluster.conf timers) take its first record's
        columns and orientation: `parent` links them, resolved to the chain's first group."""
        rows = np.flatnonzero(restart >= 0)
        if not len(rows):
            return
        g = gid[rows]
        parent = self._groups.parent
        parent[g] = restart[rows]
        root = restart[rows]
        while True:  # a chain may grow within the batch: follow it to its start
            up = parent[root]
            if np.array_equal(up, root):
                break
            root = up
        parent[g] = root
        self._groups.orient[g] = self._groups.orient[root]

    def _bases(self) -> pl.DataFrame:
        """The non-merging columns of every group's first record, in group order (one frame)."""
        if len(self._base) > 1:
            self._base = [pl.concat(self._base)]
        return self._base[0]

    def _group_ids(self, keys: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Group id of every row (new keys numbered in order of appearance) and first rows."""
        gid, fresh = self._keys.number(keys)
        self.groups = self._keys.count
        return gid, fresh

    def _merged_columns(self, order: np.ndarray) -> list[pl.Series]:
        """The merging columns of every group (groups taken in `order`), from the state rows
        (freed once read)."""
        cols = []
        for name, bits in self._groups.take_merged(self.groups, order):
            dtype = SCHEMA[name]
            values = pl.Series(name, bits)
            if dtype.is_signed_integer():  # held sign-extended: -1 is 2**64 - 1 here
                values = values.reinterpret(signed=True)
            # i32 sums (keystrokes, jitter counts) wrap as racluster's C ints do
            cols.append(values.cast(dtype, wrap_numerical=True))
        return cols

    def result(self) -> pl.DataFrame:
        """The merged records in racluster's output order (a record batch of records.schema)."""
        g = self.groups
        if g == 0:
            return pl.DataFrame(schema={**SCHEMA, AGR_FROM_INPUT: pl.Boolean})
        # Timed rules are ordered by the caller; the others by when each group was last
        # updated: every per-group column is taken in that order once (no sort of the frame).
        order = np.arange(g) if self.timers is not None \
            else np.argsort(self._groups.last[:g], kind="stable")
        base = self._bases()
        self._base = []
        rows = self._groups.parent[:g][order]
        if (rows != np.arange(g)).any():
            base = base[rows]
        flipped = pl.Series(self._groups.flipped[:g][order])
        if flipped.any():
            base = base.with_columns(flipped.alias("_flip"))
            swaps = []
            for a, b in OTHER_PAIRS:
                swaps += [pl.when(c("_flip")).then(c(b)).otherwise(c(a)).alias(a),
                          pl.when(c("_flip")).then(c(a)).otherwise(c(b)).alias(b)]
            base = base.with_columns(swaps).drop("_flip")
        out = base.with_columns(self._merged_columns(order)).select(self._columns)
        del base
        # The agr bit of the state's dsrs is the first record's: the kernel never changes it.
        out = out.with_columns(((c("dsrs") & DSR_BITS["agr"]) > 0).alias(AGR_FROM_INPUT))
        dsrs = out["dsrs"].to_numpy().astype(np.uint32)
        agr = self._groups.agr_columns(g, order, dsrs, self.report)
        out = out.with_columns(pl.Series(name, values) for name, values in agr.items())
        if self.label:
            out = out.with_columns(_add_label(self.label))
        if self.timers is not None:
            # Timed rules are ordered by the caller, across rules, by when each was reported.
            at, phase = self.timers.reports(g)
            return out.with_columns(pl.Series("_emit", at), pl.Series("_phase", phase),
                                    pl.Series("_last", self._groups.last[:g]))
        return sort_output(out, self.model) if self.sort else out


def _add_label(label: str) -> list[pl.Expr]:
    """racluster.conf `label=`: appended to an existing label with ':' unless already there."""
    has = derive.has("label") & (c("label") != "")
    present = c("label").str.split(":").list.contains(pl.lit(label))
    text = pl.when(~has).then(pl.lit(label)).when(present).then(c("label")) \
        .otherwise(c("label") + ":" + label)
    return [text.alias("label"), (c("dsrs") | DSR_BITS["label"]).cast(pl.UInt32).alias("dsrs")]


def sort_output(out: pl.DataFrame, model: Model) -> pl.DataFrame:
    """racluster sorts its output by the -m keys that are sort algorithms (stable)."""
    words = [w.split("/")[0] for w in model.sort_words]
    if not words:
        return out
    by: list[pl.Expr] = []
    desc: list[bool] = []
    for word in words:
        if word in ("saddr", "daddr"):
            # Addresses sort by kind, then IPv4 ones numerically; others keep their order.
            at = derive.addr_type()
            # Ethernet keys compare the key's first (saddr) or second (daddr) 4 bytes, read in
            # host order, as if they were IPv4 addresses: dmac[0:4], dmac[4:6] + smac[0:2].
            raw = ((c("daddr_lo") // 65536) % (1 << 32) if word == "saddr" else
                   (c("daddr_lo") % 65536) * 65536 + (c("saddr_lo") // (1 << 32)) % 65536)
            ether = ((raw % 256) * (1 << 24) + ((raw // 256) % 256) * (1 << 16)
                     + ((raw // 65536) % 256) * 256 + raw // (1 << 24))
            v4 = (pl.when(at == ADDR_IPV6).then(0).when(at == ADDR_ETHER).then(ether)
                  .otherwise(c(f"{word[0]}addr_lo")))
            by += [at, v4]  # IPv4, IPv6, Ethernet, ARP, ...
            desc += [False, False]
            # IPv6 addresses compare as four 32-bit words read in host (little-endian) order.
            for half, shift in ((f"{word[0]}addr_hi", 32), (f"{word[0]}addr_hi", 0),
                                (f"{word[0]}addr_lo", 32), (f"{word[0]}addr_lo", 0)):
                w = (c(half) // (1 << shift)) % (1 << 32)
                le = ((w % 256) * (1 << 24) + ((w // 256) % 256) * (1 << 16)
                      + ((w // 65536) % 256) * 256 + w // (1 << 24))
                by.append(pl.when(at == ADDR_IPV6).then(le).otherwise(0))
                desc.append(False)
            continue
        if word in ("smpls", "dmpls"):
            by.append(c(word) // 4096)
        elif word in ("stcpb", "dtcpb"):
            by.append(c(f"{word[0]}tcp_seqbase"))
        elif word in ("sport", "dport"):
            # Only TCP and UDP ports sort; other flows compare equal and keep their order.
            ports = derive.is_ip() & c("proto").is_in([6, 17])
            by.append(pl.when(ports).then(c(word)).otherwise(0))
        elif word == "proto":
            by.append(pl.when(derive.is_ip()).then(c("proto")).otherwise(0))  # non-IP last
        else:
            by.append(c(word))
        desc.append(word == "proto")  # racluster lists protocols from the highest number down
    return out.sort(by, descending=desc, maintain_order=True)
