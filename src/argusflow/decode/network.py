"""IPv4 (options, fragments) and IPv6 (extension header chain, fragment header)."""

from __future__ import annotations

import numpy as np

from argusflow.decode import codes as c
from argusflow.decode import headers as h
from argusflow.decode.codes import Reason, Status
from argusflow.decode.cursor import Cursor
from argusflow.decode.kernels import ip_options

# IPv6 extension headers we step over: hop-by-hop, routing, fragment, AH, destination options,
# mobility, HIP, shim6.  ESP (50) ends the chain: what follows is encrypted.
IPV6_EXT = np.zeros(256, dtype=bool)
IPV6_EXT[[0, 43, 44, 51, 60, 135, 139, 140]] = True
MAX_EXT = 16


def ipv4(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.IPV4)
    out = cur.out
    off = cur.off[idx]
    out.l3_off[idx] = off
    out.ip_version[idx] = 4
    out.tos[idx] = g.tos
    out.ttl[idx] = g.ttl
    out.proto[idx] = g.proto
    out.ip_id[idx] = g.id
    out.ip_len[idx] = g.total_len
    out.src_lo[idx] = g.src
    out.dst_lo[idx] = g.dst
    out.frag_offset[idx] = g.frag * 8
    out.frag_flags[idx] = g.mf | (g.df << 1)
    hl = g.ihl * 4
    avail = cur.caplen[idx] - off
    cur.off[idx] = off + hl
    out.l4_off[idx] = off + hl
    cur.ip_end[idx] = off + g.total_len

    opts = np.flatnonzero((g.ihl > 5) & g.complete)
    if len(opts):
        i = idx[opts]
        length = np.minimum(hl[opts], avail[opts]) - 20
        bits = ip_options(cur.data, cur.start[i] + cur.off[i] - hl[opts] + 20, length)
        out.ip_opts[i] = bits & 0x7F

    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.IP_TRUNCATED)
    cur.flag(idx[g.version != 4], Status.MALFORMED, Reason.IP_BAD_VERSION)
    cur.flag(idx[g.ihl < 5], Status.MALFORMED, Reason.IP_BAD_HEADER_LENGTH)
    cur.flag(idx[g.total_len < hl], Status.MALFORMED, Reason.IP_BAD_TOTAL_LENGTH)
    cur.flag(idx[hl > avail], Status.TRUNCATED, Reason.IP_OPTIONS_TRUNCATED)


def ipv6(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.IPV6)
    out = cur.out
    off = cur.off[idx]
    out.l3_off[idx] = off
    out.ip_version[idx] = 6
    out.ip6_flow[idx] = g.word0
    out.tos[idx] = g.tclass
    out.ttl[idx] = g.hlim
    out.ip_len[idx] = 40 + g.payload_len
    out.src_hi[idx] = g.src_hi
    out.src_lo[idx] = g.src_lo
    out.dst_hi[idx] = g.dst_hi
    out.dst_lo[idx] = g.dst_lo
    cur.ip_end[idx] = off + 40 + g.payload_len
    cur.off[idx] = off + 40
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.IP_TRUNCATED)
    cur.flag(idx[g.version != 6], Status.MALFORMED, Reason.IP_BAD_VERSION)
    nh = g.next.copy()
    _extension_chain(cur, idx, nh)
    out.proto[idx] = nh
    out.l4_off[idx] = cur.off[idx]


def _extension_chain(cur: Cursor, idx: np.ndarray, nh: np.ndarray) -> None:
    """Step over extension headers, updating `nh` (next header per packet of idx) in place."""
    out = cur.out
    active = np.flatnonzero(IPV6_EXT[nh] & (out.status[idx] == Status.OK))
    for _ in range(MAX_EXT):
        if len(active) == 0:
            return
        i = idx[active]
        kind = nh[active]
        e = cur.gather(i, h.IPV6_EXT)
        frag = kind == 44
        if frag.any():
            f = cur.gather(i[frag], h.IPV6_FRAG)
            out.frag_offset[i[frag]] = f.offset * 8
            out.frag_flags[i[frag]] |= (f.more | 4).astype(np.uint8)
            out.ip_id[i[frag]] = f.id
        ah = kind == 51
        out.encaps[i[ah]] |= c.ENC_AH
        length = np.where(frag, 8, np.where(ah, (e.len + 2) * 4, (e.len + 1) * 8))
        cur.off[i] += length
        nh[active] = e.next
        cur.flag(i[~e.complete], Status.TRUNCATED, Reason.IP6_EXT_TRUNCATED)
        keep = e.complete & IPV6_EXT[e.next]
        active = active[keep]
    cur.flag(idx[active], Status.MALFORMED, Reason.IP6_TOO_MANY_EXT)
