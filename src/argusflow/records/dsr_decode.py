"""Vectorised decoding of the DSRs of a batch of records (spec §5-§6).

Every fixed-layout DSR is a table of (column, byte offset, width, byte order) gathered for all
DSRs of that type at once; the variable ones (flow key, time, metric, packet size, jitter, IP
attributes, MPLS, user data) compute per-row offsets first and then gather.  A field that lies
beyond its DSR's length reads as 0, like an absent DSR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from argusflow.records.schema import (
    ADDR_ETHER,
    ADDR_IPV4,
    ADDR_IPV6,
    DSR_BITS,
    DSR_TYPES,
    NET_ESP,
    NET_TCP_INIT,
    NET_TCP_PERF,
    NET_TCP_STATUS,
    RTYPE_MAR,
    SCHEMA,
)

GATHER_PAD = 512  # bytes of zero padding after the buffer: the furthest fixed field offset is 120
BE, LE = "big", "little"

_NUMPY_OF = {
    "UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64,
    "Int32": np.int32, "Int64": np.int64, "Float32": np.float32, "Float64": np.float64,
}


@dataclass
class Dsrs:
    """The DSRs of one type found in a batch: owning record, byte position, size, header bytes."""

    rec: np.ndarray
    pos: np.ndarray
    size: np.ndarray
    sub: np.ndarray
    qual: np.ndarray

    def where(self, mask: np.ndarray) -> Dsrs:
        return Dsrs(self.rec[mask], self.pos[mask], self.size[mask], self.sub[mask], self.qual[mask])


class Columns(dict):
    """Column arrays of a batch, allocated (zero-filled) on first use."""

    def __init__(self, n: int, raw: bytes = b"") -> None:
        super().__init__()
        self.n = n
        self.raw = raw  # the undecoded bytes, for the few DSRs kept as byte strings

    def col(self, name: str) -> np.ndarray:
        if name not in self:
            self[name] = np.zeros(self.n, dtype=_NUMPY_OF[str(SCHEMA[name])])
        return self[name]

    def put(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        column = self.col(name)
        column[rows] = values.astype(column.dtype, copy=False)


# --- gathering ------------------------------------------------------------------------------

def gather(buf: np.ndarray, pos: np.ndarray, width: int, order: str = BE) -> np.ndarray:
    """Unsigned integers of `width` bytes at each position, as uint64."""
    value = np.zeros(len(pos), dtype=np.uint64)
    steps = range(width) if order == BE else range(width - 1, -1, -1)
    for k in steps:
        value = (value << np.uint64(8)) | buf[pos + k].astype(np.uint64)
    return value


def field(buf: np.ndarray, d: Dsrs, offset: int, width: int, order: str = BE) -> np.ndarray:
    """A field at a fixed offset of each DSR; 0 where the DSR is too short to hold it."""
    value = gather(buf, d.pos + offset, width, order)
    value[d.size < offset + width] = 0
    return value


def as_f32(value: np.ndarray) -> np.ndarray:
    return value.astype(np.uint32).view(np.float32)


def as_i32(value: np.ndarray) -> np.ndarray:
    return value.astype(np.uint32).view(np.int32)


def timestamp(buf: np.ndarray, pos: np.ndarray, nsec: np.ndarray | bool = False) -> np.ndarray:
    """(u32 sec, u32 fraction) at each position -> int64 microseconds."""
    sec = gather(buf, pos, 4).astype(np.int64)
    frac = gather(buf, pos + 4, 4).astype(np.int64)
    frac = np.where(nsec, frac // 1000, frac)
    return sec * 1_000_000 + np.minimum(frac, 999_999)


# --- fixed layouts (column, offset, width, order, kind) ---------------------------------------

Layout = list[tuple[str, int, int, str, str]]
U, S, F = "u", "i32", "f32"

TRANSPORT: Layout = [("srcid", 4, 4, BE, U), ("seq", 8, 4, BE, U)]
ENCAPS: Layout = [("sencaps", 4, 4, BE, U), ("dencaps", 8, 4, BE, U)]
ICMPMAP: Layout = [
    ("icmpmap_type", 4, 1, BE, U), ("icmpmap_code", 5, 1, BE, U), ("icmpmap_iseq", 6, 2, BE, U),
    ("icmpmap_osrc", 8, 4, BE, U), ("icmpmap_odst", 12, 4, BE, U), ("icmpmap_isrc", 16, 4, BE, U),
    ("icmpmap_idst", 20, 4, BE, U), ("icmpmap_gw", 24, 4, BE, U),
]
VLAN: Layout = [("svlan", 4, 2, BE, U), ("dvlan", 6, 2, BE, U)]
MAC: Layout = [
    ("dmac", 4, 6, BE, U), ("smac", 10, 6, BE, U), ("mac_etype", 16, 2, LE, U),
    ("mac_dsap", 18, 1, BE, U), ("mac_ssap", 19, 1, BE, U),
]
BEHAVIOR: Layout = [("snstroke", 4, 4, BE, S), ("dnstroke", 8, 4, BE, S)]
ASN: Layout = [("sas", 4, 4, BE, U), ("das", 8, 4, BE, U), ("ias", 12, 4, BE, U)]
# The aggregation DSR's statistics are in the writer's host order (little-endian), spec §6.16.
AGR: Layout = [
    ("agr_count", 4, 4, BE, U), ("agr_act_n", 24, 4, LE, S), ("agr_act_min", 28, 4, LE, F),
    ("agr_act_mean", 32, 4, LE, F), ("agr_act_stdev", 36, 4, LE, F), ("agr_act_max", 40, 4, LE, F),
]
TCP_PERF: Layout = [
    ("tcp_status", 4, 4, BE, U), ("tcp_state", 8, 4, BE, U), ("tcp_options", 12, 4, BE, U),
    ("tcp_synack", 16, 4, BE, U), ("tcp_ackdat", 20, 4, BE, U),
]
TCP_INIT: Layout = [
    ("tcp_status", 4, 4, BE, U), ("stcp_seqbase", 8, 4, BE, U), ("tcp_options", 12, 4, BE, U),
    ("stcp_win", 16, 2, BE, U), ("stcp_flags", 18, 1, BE, U), ("stcp_winshift", 19, 1, BE, U),
]
TCP_STATUS: Layout = [
    ("tcp_status", 4, 4, BE, U), ("stcp_flags", 8, 1, BE, U), ("dtcp_flags", 9, 1, BE, U),
]
ESP: Layout = [
    ("tcp_status", 4, 4, BE, U), ("esp_spi", 8, 4, BE, U), ("esp_lastseq", 12, 4, BE, U),
    ("esp_lostseq", 16, 4, BE, U),
]
TCP_DIRECTION: Layout = [
    ("tcp_status", 8, 4, BE, U), ("tcp_seqbase", 12, 4, BE, U), ("tcp_seq", 16, 4, BE, U),
    ("tcp_ack", 20, 4, BE, U), ("tcp_winnum", 24, 4, BE, U), ("tcp_bytes", 28, 4, BE, U),
    ("tcp_retrans", 32, 4, BE, U), ("tcp_ackbytes", 36, 4, BE, U), ("tcp_winbytes", 40, 4, BE, U),
    ("tcp_win", 44, 2, BE, U), ("tcp_flags", 46, 1, BE, U), ("tcp_winshift", 47, 1, BE, U),
]


def apply_layout(cols: Columns, buf: np.ndarray, d: Dsrs, layout: Layout, prefix: str = "",
                 base: int = 0) -> None:
    for name, offset, width, order, kind in layout:
        value = field(buf, d, base + offset, width, order)
        if kind == F:
            value = as_f32(value)
        elif kind == S:
            value = as_i32(value)
        cols.put(prefix + name, d.rec, value)


def fixed(layout: Layout) -> Callable[[Columns, np.ndarray, Dsrs], None]:
    def decode(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
        apply_layout(cols, buf, d, layout)
    return decode


# --- finding the DSRs -----------------------------------------------------------------------

def find_dsrs(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, far: np.ndarray):
    """Walk the DSR lists of all flow records at once, one DSR depth per pass.

    Returns (record index, position, size, type, subtype, qualifier) arrays of every DSR and
    the number of DSRs that could not be framed (zero length or overrunning), per record.
    """
    rec = np.flatnonzero(far)
    cur = starts[rec] + 4
    end = starts[rec] + lengths[rec]
    parts: list[tuple[np.ndarray, ...]] = []
    bad = np.zeros(len(starts), dtype=np.int64)
    while len(rec):
        more = cur + 4 <= end
        rec, cur, end = rec[more], cur[more], end[more]
        kind, sub, qual, short = buf[cur], buf[cur + 1], buf[cur + 2], buf[cur + 3]
        words = np.where(
            kind & 0x80, 1, np.where(sub & 0x80, qual.astype(np.int64) << 8 | short, short)
        ).astype(np.int64)
        size = words * 4
        ok = (words > 0) & (cur + size <= end)
        np.add.at(bad, rec[~ok], 1)
        rec, cur, end, size = rec[ok], cur[ok], end[ok], size[ok]
        parts.append((rec, cur, size, kind[ok] & 0x7F, sub[ok], qual[ok]))
        cur = cur + size
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return (empty,) * 6, bad
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True)), bad


# --- the decoder ----------------------------------------------------------------------------

def decode(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, raw: bytes) -> Columns:
    """Decode the records at `starts`; `buf` is `raw` as uint8 plus GATHER_PAD zero bytes."""
    cols = Columns(len(starts), raw)
    rtype = buf[starts] & 0xF0
    cols["rtype"] = rtype.astype(np.uint8)
    cols["cause"] = buf[starts + 1].astype(np.uint8)
    present = cols.col("dsrs")
    far = rtype != RTYPE_MAR
    (rec, pos, size, kind, sub, qual), bad = find_dsrs(buf, starts, lengths, far)
    unknown = bad.copy()
    known = np.zeros(len(rec), dtype=bool)
    for code, name in DSR_TYPES.items():
        sel = kind == code
        if not sel.any():
            continue
        known |= sel
        d = Dsrs(rec[sel], pos[sel], size[sel], sub[sel].astype(np.int64), qual[sel].astype(np.int64))
        DECODERS[name](cols, buf, d)
        if name != "user":
            present[d.rec] |= np.uint32(DSR_BITS[name])
    np.add.at(unknown, rec[~known], 1)
    cols["unknown_dsrs"] = np.minimum(unknown, 255).astype(np.uint8)
    decode_mar_ids(cols, buf, starts, lengths, rtype)
    return cols


def decode_mar_ids(cols: Columns, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                   rtype: np.ndarray) -> None:
    """Source id of each 128-byte MAR: `thisid` in START MARs, `argusid` in the others."""
    rows = np.flatnonzero((rtype == RTYPE_MAR) & (lengths == 128))
    if not len(rows):
        return
    at = starts[rows]
    status = gather(buf, at + 4, 4)
    is_start = (buf[at + 1] & 0xF0) == 0x10
    ident = np.where(is_start, gather(buf, at + 120, 4), gather(buf, at + 8, 4))
    kind = np.select(
        [(status & 0x00800000) > 0, (status & 0x00400000) > 0, (status & 0x00200000) > 0],
        [1, 0x20, 0x21], 0,
    )
    # A string id sits in the MAR byte-reversed (spec §4.3); keep the natural order.
    swapped = ident.astype(np.uint32).byteswap().astype(np.uint64)
    cols.put("srcid", rows, np.where(kind == 0x21, swapped, ident))
    cols.put("srcid_type", rows, kind)


def decode_transport(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    apply_layout(cols, buf, d, TRANSPORT)
    cols.put("srcid_type", d.rec, d.qual)


def decode_flow(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    keytype = d.sub & 0x3F
    addr = d.qual & 0x1F
    reverse = (d.sub & 0x40) > 0
    cols.put("flow_qual", d.rec, d.qual)
    five = keytype == 0x01
    ipv4, ipv6 = d.where(five & (addr == ADDR_IPV4)), d.where(five & (addr == ADDR_IPV6))
    ether = d.where(five & (addr == ADDR_ETHER))
    arp, matrix = d.where(keytype == 0x06), d.where((keytype == 0x03) & (addr == ADDR_IPV4))
    handled = (five & np.isin(addr, (ADDR_IPV4, ADDR_IPV6, ADDR_ETHER))) | (keytype == 0x06)
    handled |= (keytype == 0x03) & (addr == ADDR_IPV4)
    flow_ipv4(cols, buf, ipv4)
    flow_ipv6(cols, buf, ipv6)
    flow_ether(cols, buf, ether)
    flow_arp(cols, buf, arp)
    flow_matrix(cols, buf, matrix)
    store_raw(cols, "flow_raw", buf, d.where(~handled), 4)
    # The REVERSE bit is undone for IP keys; ARP keeps it (ra reverses the *other* DSRs there).
    ip_reverse = reverse & (keytype != 0x06)
    cols.put("flow_subtype", d.rec, np.where(ip_reverse, d.sub & ~0x40, d.sub))
    unreverse(cols, d.rec[ip_reverse])


def flow_ipv4(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    apply_layout(cols, buf, d, [
        ("saddr_lo", 4, 4, BE, U), ("daddr_lo", 8, 4, BE, U), ("proto", 12, 1, BE, U),
        ("tp_p", 13, 1, BE, U), ("sport", 14, 2, BE, U), ("dport", 16, 2, BE, U),
        ("smask", 18, 1, BE, U), ("dmask", 19, 1, BE, U),
    ])


def flow_ipv6(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    apply_layout(cols, buf, d, [
        ("saddr_hi", 4, 8, BE, U), ("saddr_lo", 12, 8, BE, U), ("daddr_hi", 20, 8, BE, U),
        ("daddr_lo", 28, 8, BE, U), ("proto", 36, 1, BE, U), ("sport", 40, 2, BE, U),
        ("dport", 42, 2, BE, U), ("smask", 44, 2, LE, U), ("dmask", 46, 2, LE, U),
    ])
    cols.put("flowlabel", d.rec, field(buf, d, 36, 4) & 0xFFFFF)


def flow_ether(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    apply_layout(cols, buf, d, [
        ("daddr_lo", 4, 6, BE, U), ("saddr_lo", 10, 6, BE, U), ("proto", 16, 2, BE, U),
        ("dport", 18, 1, BE, U), ("sport", 19, 1, BE, U),
    ])


def flow_arp(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    apply_layout(cols, buf, d, [
        ("arp_hrd", 4, 2, BE, U), ("arp_pro", 6, 2, BE, U), ("arp_hln", 8, 1, BE, U),
        ("arp_pln", 9, 1, BE, U), ("arp_op", 10, 2, BE, U),
    ])
    rarp = (d.qual & 0x1F) == 0x05
    arp, rev = d.where(~rarp), d.where(rarp)
    apply_layout(cols, buf, arp, [("saddr_lo", 12, 4, BE, U), ("daddr_lo", 16, 4, BE, U)])
    # RARP carries only the target protocol address, then the hardware addresses.
    apply_layout(cols, buf, rev, [("daddr_lo", 12, 4, BE, U)])
    # Sender hardware address: as many of its hln bytes as the DSR really holds (argus 3.0.8
    # writes the ARP key one word short, spec §6.2.8).
    hln = np.minimum(field(buf, d, 8, 1).astype(np.int64), 6)
    base = np.where(rarp, 16, 20)
    have = np.clip(d.size - base, 0, None)
    take = np.minimum(hln, have)
    sha = np.zeros(len(d.rec), dtype=np.uint64)
    for k in range(6):
        byte = buf[d.pos + base + k].astype(np.uint64)
        sha = np.where(k < take, sha << np.uint64(8) | byte, sha)
    cols.put("arp_sha", d.rec, sha)


def flow_matrix(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    # LAYER_3_MATRIX addresses are in the writer's host order (little-endian), spec §8.
    apply_layout(cols, buf, d, [("saddr_lo", 4, 4, LE, U), ("daddr_lo", 8, 4, LE, U)])


def unreverse(cols: Columns, rows: np.ndarray) -> None:
    """Swap source and destination of the flow key (spec §6.2.9)."""
    if not len(rows):
        return
    for a, b in (("saddr_hi", "daddr_hi"), ("saddr_lo", "daddr_lo"), ("sport", "dport"),
                 ("smask", "dmask")):
        ca, cb = cols.col(a), cols.col(b)
        ca[rows], cb[rows] = cb[rows].copy(), ca[rows].copy()


def store_raw(cols: Columns, name: str, buf: np.ndarray, d: Dsrs, skip: int) -> None:
    """Keep the payload of DSRs we do not decode as bytes (rare: a short loop is fine)."""
    if not len(d.rec):
        return
    column = cols.get(name)
    if column is None:
        column = cols[name] = np.full(cols.n, b"", dtype=object)
    data = cols.raw
    for r, p, s in zip(d.rec.tolist(), d.pos.tolist(), d.size.tolist(), strict=True):
        column[r] = data[p + skip:p + s]


def decode_time(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("time_subtype", d.rec, d.sub)
    cols.put("time_qual", d.rec, d.qual)
    nsec = d.qual == 0x19
    words = d.size // 4
    has = [(d.sub & bit) > 0 for bit in (0x08, 0x10, 0x20, 0x40)]
    directional = has[0] | has[2]
    has[1] &= has[0]
    has[3] &= has[2]
    count = sum(h.astype(np.int64) for h in has)
    absolute = count <= (words - 1) // 2
    relative = ~absolute & ((count == 1) | (words == count + 2))
    slot = np.cumsum(np.stack([h.astype(np.int64) for h in has]), axis=0) - 1
    first = timestamp(buf, d.pos + 4, nsec)
    names = ("sstart", "slast", "dstart", "dlast")
    values: list[np.ndarray] = []
    for k in range(4):
        at_abs = d.pos + 4 + 8 * slot[k]
        at_rel = d.pos + 12 + 4 * (slot[k] - 1)
        absolute_value = timestamp(buf, np.maximum(at_abs, 0), nsec)
        offset = as_i32(gather(buf, np.maximum(at_rel, 0), 4)).astype(np.int64)
        value = np.where(relative & (slot[k] > 0), first + offset, absolute_value)
        fits = np.where(relative & (slot[k] > 0), at_rel + 4, at_abs + 8) <= d.pos + d.size
        values.append(np.where(has[k] & directional & fits, value, 0))
    plain = plain_times(buf, d, nsec, words)
    for k in range(4):
        values[k] = np.where(directional, values[k], plain[k])
    # A missing end time is the start time (spec §6.3 step 3).
    values[1] = np.where(values[1] == 0, values[0], values[1])
    values[3] = np.where(values[3] == 0, values[2], values[3])
    for name, value in zip(names, values, strict=True):
        cols.put(name, d.rec, value)


def plain_times(buf: np.ndarray, d: Dsrs, nsec: np.ndarray, words: np.ndarray) -> list[np.ndarray]:
    """Time DSRs without direction bits: the payload fills src.start, src.end, dst.start ..."""
    out = []
    for k in range(4):
        value = timestamp(buf, d.pos + 4 + 8 * k, nsec)
        out.append(np.where(words >= 3 + 2 * k, value, 0))
    # ABSOLUTE_RELATIVE_RANGE: the second timestamp is a microsecond offset from the first.
    rel = (d.sub & 0x07) == 0x03
    offset = as_i32(gather(buf, d.pos + 12, 4)).astype(np.int64)
    out[1] = np.where(rel & (words >= 4), out[0] + offset, out[1])
    return out


METRIC_WIDTH = np.array([0, 1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 0, 0, 0])


def decode_metric(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("metric_subtype", d.rec, d.sub)
    code = d.qual & 0x0F
    width = METRIC_WIDTH[code]
    has_src = (code >= 1) & (code <= 8)
    has_dst = ((code >= 1) & (code <= 4)) | (code >= 9) & (code <= 12)
    counters = np.where(d.sub == 0x04, 3, 2)
    src_names = ("spkts", "sbytes", "sappbytes")
    dst_names = ("dpkts", "dbytes", "dappbytes")
    for w in (1, 2, 4, 8):
        g = d.where(width == w)
        if not len(g.rec):
            continue
        gsrc, gdst = has_src[width == w], has_dst[width == w]
        gcount = counters[width == w]
        dst_base = 4 + np.where(gsrc, gcount, 0) * w
        for k in range(3):
            valid = k < gcount
            src = gather(buf, g.pos + 4 + k * w, w)
            dst = gather(buf, g.pos + dst_base + k * w, w)
            src_ok = gsrc & valid & (4 + (k + 1) * w <= g.size)
            dst_ok = gdst & valid & (dst_base + (k + 1) * w <= g.size)
            cols.put(src_names[k], g.rec, np.where(src_ok, src, 0))
            cols.put(dst_names[k], g.rec, np.where(dst_ok, dst, 0))


def decode_psize(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("psize_subtype", d.rec, d.sub)
    cols.put("psize_qual", d.rec, d.qual)
    code = d.qual & 0x0F
    has_src = (code >= 1) & (code <= 8)
    has_dst = ((code >= 1) & (code <= 4)) | (code >= 9) & (code <= 12)
    dst_at = np.where(has_src, 8, 4)
    for name, off, ok in (("sminsz", 4, has_src), ("smaxsz", 6, has_src)):
        cols.put(name, d.rec, np.where(ok & (d.size >= off + 2), gather(buf, d.pos + off, 2), 0))
    for name, off in (("dminsz", 0), ("dmaxsz", 2)):
        at = dst_at + off
        cols.put(name, d.rec, np.where(has_dst & (d.size >= at + 2), gather(buf, d.pos + at, 2), 0))
    # Client writers append one histogram word per present direction (subtype bit 0x04).
    hist = (d.sub & 0x04) > 0
    hist_at = dst_at + np.where(has_dst, 4, 0)
    shist = gather(buf, d.pos + hist_at, 4)
    dhist = gather(buf, d.pos + hist_at + np.where(has_src, 4, 0), 4)
    cols.put("spktsz_hist", d.rec, np.where(hist & has_src & (d.size >= hist_at + 4), shist, 0))
    dh_ok = hist & has_dst & (d.size >= hist_at + np.where(has_src, 8, 4))
    cols.put("dpktsz_hist", d.rec, np.where(dh_ok, dhist, 0))


def decode_net(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("net_subtype", d.rec, d.sub)
    perf = d.where(d.sub == NET_TCP_PERF)
    apply_layout(cols, buf, perf, TCP_PERF)
    apply_layout(cols, buf, perf, TCP_DIRECTION, prefix="s", base=24)
    apply_layout(cols, buf, perf, TCP_DIRECTION, prefix="d", base=72)
    for prefix, base in (("s", 24), ("d", 72)):
        last = timestamp(buf, perf.pos + base)
        cols.put(f"{prefix}tcp_last", perf.rec, np.where(perf.size >= base + 8, last, 0))
    apply_layout(cols, buf, d.where(d.sub == NET_TCP_INIT), TCP_INIT)
    apply_layout(cols, buf, d.where(d.sub == NET_TCP_STATUS), TCP_STATUS)
    apply_layout(cols, buf, d.where(d.sub == NET_ESP), ESP)
    opaque = ~np.isin(d.sub, (NET_TCP_PERF, NET_TCP_INIT, NET_TCP_STATUS, NET_ESP))
    store_raw(cols, "net_raw", buf, d.where(opaque & (d.size > 4)), 4)


def decode_icmpmap(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("icmpmap_qual", d.rec, d.qual)
    apply_layout(cols, buf, d, ICMPMAP)


def decode_vlan(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("vlan_qual", d.rec, d.qual)
    apply_layout(cols, buf, d, VLAN)


def decode_mac(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("mac_qual", d.rec, d.qual)
    apply_layout(cols, buf, d, MAC)


def decode_mpls(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("mpls_subtype", d.rec, d.sub)
    cols.put("mpls_qual", d.rec, d.qual)
    nsrc = d.qual >> 4
    ndst = d.qual & 0x0F
    src = field(buf, d, 4, 4)
    dst_at = 4 + 4 * nsrc
    dst = gather(buf, d.pos + dst_at, 4)
    cols.put("smpls", d.rec, np.where(nsrc > 0, src, 0))
    cols.put("dmpls", d.rec, np.where((ndst > 0) & (d.size >= dst_at + 4), dst, 0))


def decode_jitter(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("jit_subtype", d.rec, d.sub)
    cols.put("jit_qual", d.rec, d.qual)
    stride = np.where(d.sub & 0x01, 24, 20)
    at = np.full(len(d.rec), 4, dtype=np.int64)
    for bit, prefix in ((1, "sjit_act"), (2, "sjit_idl"), (4, "djit_act"), (8, "djit_idl")):
        here = (d.qual & bit) > 0
        ok = here & (d.size >= at + 20)
        block = [("_n", 0, S), ("_min", 4, F), ("_mean", 8, F), ("_stdev", 12, F), ("_max", 16, F)]
        for suffix, off, kind in block:
            raw = gather(buf, d.pos + at + off, 4)
            value = as_f32(raw) if kind == F else as_i32(raw)
            cols.put(prefix + suffix, d.rec, np.where(ok, value, 0))
        at = at + np.where(here, stride, 0)


def decode_attr(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("attr_qual", d.rec, d.qual)
    at = np.full(len(d.rec), 4, dtype=np.int64)
    # Words follow in the order src attrs, src options, dst attrs, dst options (spec §6.13).
    for bit, names in ((0x01, ("sttl", "stos", "sipid")), (0x04, ("sipopts",)),
                       (0x02, ("dttl", "dtos", "dipid")), (0x08, ("dipopts",))):
        here = ((d.qual & bit) > 0) & (d.size >= at + 4)
        word = gather(buf, d.pos + at, 4)
        if len(names) == 3:
            parts = (word >> np.uint64(24), (word >> np.uint64(16)) & np.uint64(0xFF),
                     word & np.uint64(0xFFFF))
        else:
            parts = (word,)
        for name, value in zip(names, parts, strict=True):
            cols.put(name, d.rec, np.where(here, value, 0))
        at = at + np.where((d.qual & bit) > 0, 4, 0)


def decode_user(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    """User data: 16-bit length form (subtype 0x80 | 0x10 src / 0x20 dst), or the old form."""
    direction = np.where(d.sub & 0x80, d.sub, d.qual)
    for bit, prefix in ((0x10, "s"), (0x20, "d")):
        g = d.where((direction & bit) > 0)
        if not len(g.rec):
            continue
        cols.col("dsrs")[g.rec] |= np.uint32(DSR_BITS[f"{prefix}user"])
        cols.put(f"{prefix}user_size", g.rec, field(buf, g, 4, 2))
        count = field(buf, g, 6, 2).astype(np.int64)
        length = np.clip(np.minimum(count, g.size - 8), 0, None)
        store_slices(cols, f"{prefix}user", buf, g.rec, g.pos + 8, length)


def store_slices(cols: Columns, name: str, buf: np.ndarray, rows: np.ndarray, pos: np.ndarray,
                 length: np.ndarray) -> None:
    column = cols.get(name)
    if column is None:
        column = cols[name] = np.full(cols.n, b"", dtype=object)
    data = cols.raw
    for r, p, n in zip(rows.tolist(), pos.tolist(), length.tolist(), strict=True):
        column[r] = data[p:p + n]


def decode_label(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    column = cols.get("label")
    if column is None:
        column = cols["label"] = np.full(cols.n, "", dtype=object)
    data = cols.raw
    for r, p, s in zip(d.rec.tolist(), d.pos.tolist(), d.size.tolist(), strict=True):
        column[r] = data[p + 4:p + s].split(b"\0", 1)[0].decode("ascii", "replace")


def decode_cocode(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    for name, off in (("sco", 4), ("dco", 6)):
        column = cols.get(name)
        if column is None:
            column = cols[name] = np.full(cols.n, "", dtype=object)
        data = cols.raw
        for r, p in zip(d.rec.tolist(), d.pos.tolist(), strict=True):
            column[r] = data[p + off:p + off + 2].rstrip(b"\0").decode("ascii", "replace")


def decode_cor(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    store_raw(cols, "cor_raw", buf, d, 4)


def decode_agr(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("agr_subtype", d.rec, d.sub)
    cols.put("agr_qual", d.rec, d.qual)
    apply_layout(cols, buf, d, AGR)


def decode_behavior(cols: Columns, buf: np.ndarray, d: Dsrs) -> None:
    cols.put("behavior_subtype", d.rec, d.sub)
    apply_layout(cols, buf, d, BEHAVIOR)


DECODERS: dict[str, Callable[[Columns, np.ndarray, Dsrs], None]] = {
    "transport": decode_transport,
    "flow": decode_flow,
    "time": decode_time,
    "metric": decode_metric,
    "psize": decode_psize,
    "encaps": fixed(ENCAPS),
    "net": decode_net,
    "asn": fixed(ASN),
    "icmpmap": decode_icmpmap,
    "vlan": decode_vlan,
    "mac": decode_mac,
    "mpls": decode_mpls,
    "jitter": decode_jitter,
    "attr": decode_attr,
    "user": decode_user,
    "behavior": decode_behavior,
    "agr": decode_agr,
    "cor": decode_cor,
    "cocode": decode_cocode,
    "label": decode_label,
}
