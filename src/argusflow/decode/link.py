"""Link layers: one function per link type sets MACs, encapsulation bits, the offset of the
next header and its protocol (cursor.nxt)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from argusflow.capture import linktype as lt
from argusflow.decode import codes as c
from argusflow.decode import headers as h
from argusflow.decode.codes import Reason, Status
from argusflow.decode.cursor import ET_IPV4, ET_IPV6, NXT_IP, NXT_LLC, PPP_TO_ETHERTYPE, Cursor


def _ethertype_or_llc(t: np.ndarray) -> np.ndarray:
    """Ethernet type field: below 0x0600 it is an 802.3 length and an LLC header follows."""
    return np.where(t < 0x0600, NXT_LLC, t)


def ethernet(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.ETHERNET)
    cur.out.dst_mac[idx] = g.dst
    cur.out.src_mac[idx] = g.src
    cur.out.encaps[idx] |= c.ENC_ETHER
    cur.off[idx] += 14
    cur.nxt[idx] = _ethertype_or_llc(g.type)
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def raw_ip(cur: Cursor, idx: np.ndarray) -> None:
    cur.nxt[idx] = NXT_IP


def ipv4(cur: Cursor, idx: np.ndarray) -> None:
    cur.nxt[idx] = ET_IPV4


def ipv6(cur: Cursor, idx: np.ndarray) -> None:
    cur.nxt[idx] = ET_IPV6


def _family(cur: Cursor, idx: np.ndarray, fam: np.ndarray, ok: np.ndarray) -> None:
    """BSD address families: 2 is IPv4; 24, 28 and 30 are IPv6 on the various BSDs/macOS."""
    cur.off[idx] += 4
    cur.out.link_len[idx] = 4
    nxt = np.where(fam == 2, ET_IPV4, np.where(np.isin(fam, (10, 24, 28, 30)), ET_IPV6, 0))
    cur.nxt[idx] = nxt
    cur.flag(idx[~ok], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def null(cur: Cursor, idx: np.ndarray) -> None:
    # host byte order of the machine that wrote the file: a small number is the right reading
    g = cur.gather(idx, h.NULL_FAMILY)
    _family(cur, idx, np.where(g.le <= 0xFFFF, g.le, g.be), g.complete)


def loop(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.NULL_FAMILY)
    _family(cur, idx, g.be, g.complete)


def _ppp_proto(cur: Cursor, idx: np.ndarray, proto: np.ndarray) -> None:
    nxt = np.zeros(len(idx), dtype=np.int64)
    for ppp, et in PPP_TO_ETHERTYPE.items():
        nxt[proto == ppp] = et
    cur.nxt[idx] = nxt


def ppp(cur: Cursor, idx: np.ndarray) -> None:
    cur.out.encaps[idx] |= c.ENC_PPP
    g = cur.gather(idx, h.PPP)
    framed = (g.b0 == 0xFF) & (g.b1 == 0x03)  # HDLC-like framing: address and control bytes
    cur.off[idx[framed]] += 2
    g = cur.gather(idx, h.PPP)
    compressed = (g.b0 & 1) == 1  # protocol-field compression: a 1-byte protocol number
    proto = np.where(compressed, g.b0, g.proto)
    cur.off[idx] += np.where(compressed, 1, 2)
    cur.out.link_len[idx] = cur.off[idx]
    _ppp_proto(cur, idx, proto)
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def cisco_hdlc(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.CISCO_HDLC)
    cur.out.encaps[idx] |= c.ENC_CHDLC
    cur.out.link_len[idx] = 4
    cur.off[idx] += 4
    cur.nxt[idx] = np.where(g.proto == 0x8035, 0, g.proto)  # 0x8035 is SLARP here, not RARP
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def _sll_proto(proto: np.ndarray, hatype: np.ndarray) -> np.ndarray:
    # Linux puts pseudo ethertypes below 0x0600 here: 4 = 802.2 LLC frames follow
    nxt = np.where(proto == 0x0004, NXT_LLC, np.where(proto < 0x0600, 0, proto))
    return np.where(hatype == 824, 0, nxt)  # ARPHRD_NETLINK: netlink messages, not packets


def linux_sll(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.LINUX_SLL)
    cur.out.encaps[idx] |= c.ENC_SLL
    cur.out.src_mac[idx] = np.where(g.halen == 6, g.addr, 0)
    cur.out.link_len[idx] = 16
    cur.off[idx] += 16
    cur.nxt[idx] = _sll_proto(g.proto, g.hatype)
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def linux_sll2(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.LINUX_SLL2)
    cur.out.encaps[idx] |= c.ENC_SLL
    cur.out.src_mac[idx] = np.where(g.halen == 6, g.addr, 0)
    cur.out.link_len[idx] = 20
    cur.off[idx] += 20
    cur.nxt[idx] = _sll_proto(g.proto, g.hatype)
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def fddi(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.FDDI)
    cur.out.encaps[idx] |= c.ENC_FDDI
    cur.out.dst_mac[idx] = g.dst
    cur.out.src_mac[idx] = g.src
    cur.off[idx] += 13
    cur.nxt[idx] = NXT_LLC
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def radiotap(cur: Cursor, idx: np.ndarray) -> None:
    """Radiotap, then 802.11: only unprotected data frames carry an LLC header we follow."""
    rt = cur.gather(idx, h.RADIOTAP)
    cur.off[idx] += rt.length
    cur.out.link_len[idx] = np.minimum(rt.length, 0xFFFF)
    w = cur.gather(idx, h.IEEE802_11)
    a4 = cur.gather(idx, h.IEEE802_11_A4).a4
    out = cur.out
    out.encaps[idx] |= c.ENC_80211
    ds = w.ds  # bit 0 ToDS, bit 1 FromDS
    out.dst_mac[idx] = np.where((ds & 1) == 1, w.a3, w.a1)
    out.src_mac[idx] = np.select([ds == 0, ds == 1, ds == 2], [w.a2, w.a2, w.a3], a4)
    qos = (w.type == 2) & ((w.subtype & 0x8) != 0)  # QoS data frames have 2 more bytes
    hdr = 24 + np.where(ds == 3, 6, 0) + np.where(qos, 2, 0) + np.where(qos & (w.order == 1), 4, 0)
    has_body = (w.type == 2) & ((w.subtype & 0x4) == 0) & (w.protected == 0)
    cur.off[idx] += hdr
    cur.nxt[idx] = np.where(has_body, NXT_LLC, 0)
    # control frames are short: ACK and CTS carry only the receiver address, others two
    need = np.where(w.type == 1, np.where((w.subtype == 12) | (w.subtype == 13), 10, 16), 24)
    need = need + np.where(ds == 3, 6, 0)
    bad = ~rt.complete | (cur.caplen[idx] - (cur.off[idx] - hdr) < need)
    cur.flag(idx[bad], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def nflog(cur: Cursor, idx: np.ndarray) -> None:
    """NFLOG: a 4-byte header, then TLVs (host byte order, padded to 4); type 9 is the packet."""
    fam = cur.gather(idx, h.NFLOG).family
    cur.off[idx] += 4
    found = np.zeros(len(idx), dtype=bool)
    active = np.arange(len(idx))
    for _ in range(64):  # a real NFLOG record has about a dozen TLVs
        if len(active) == 0:
            break
        tlv = cur.gather(idx[active], h.NFLOG_TLV)
        hit = tlv.complete & (tlv.type == 9)
        found[active[hit]] = True
        cur.off[idx[active[hit]]] += 4
        step = (tlv.length + 3) & ~3
        go = tlv.complete & ~hit & (tlv.length >= 4)
        cur.off[idx[active[go]]] += step[go]
        active = active[go]
    cur.nxt[idx] = np.where(fam == 2, ET_IPV4, np.where(fam == 10, ET_IPV6, 0))
    cur.out.link_len[idx] = np.minimum(cur.off[idx], 0xFFFF)
    cur.flag(idx[~found], Status.TRUNCATED, Reason.LINK_TRUNCATED)


def unknown(cur: Cursor, idx: np.ndarray) -> None:
    cur.flag(idx, Status.MALFORMED, Reason.UNKNOWN_LINKTYPE)


DECODERS: dict[int, Callable[[Cursor, np.ndarray], None]] = {
    lt.ETHERNET: ethernet,
    lt.RAW: raw_ip,
    lt.RAW_12: raw_ip,
    lt.RAW_14: raw_ip,
    lt.IPV4: ipv4,
    lt.IPV6: ipv6,
    lt.NULL: null,
    lt.LOOP: loop,
    lt.PPP: ppp,
    lt.C_HDLC: cisco_hdlc,
    lt.LINUX_SLL: linux_sll,
    lt.LINUX_SLL2: linux_sll2,
    lt.FDDI: fddi,
    lt.IEEE802_11_RADIOTAP: radiotap,
    lt.NFLOG: nflog,
}


def decode_link(cur: Cursor, linktype: np.ndarray) -> None:
    first = int(linktype[0]) if len(linktype) else 0
    if len(linktype) == 0 or (linktype == first).all():  # the usual case: one link type
        DECODERS.get(first, unknown)(cur, cur.all)
        return
    for value in np.unique(linktype):
        DECODERS.get(int(value), unknown)(cur, np.flatnonzero(linktype == value))
