"""TCP (with options), UDP (with the DNS id on port 53), SCTP/DCCP ports, ICMP and ICMPv6
(with the header quoted by error messages), ESP; and ARP, which sits beside IP."""

from __future__ import annotations

import numpy as np

from argusflow.decode import codes as c
from argusflow.decode import headers as h
from argusflow.decode.codes import Reason, Status
from argusflow.decode.cursor import Cursor
from argusflow.decode.fields import Gathered
from argusflow.decode.kernels import tcp_options

ICMP_ECHO_LIKE = np.zeros(256, dtype=bool)
ICMP_ECHO_LIKE[[0, 8, 13, 14, 15, 16, 17, 18]] = True
ICMP_ERROR = np.zeros(256, dtype=bool)
ICMP_ERROR[[3, 4, 5, 11, 12]] = True
ICMP6_ECHO = np.zeros(256, dtype=bool)
ICMP6_ECHO[[128, 129]] = True
ICMP6_ERROR = np.zeros(256, dtype=bool)
ICMP6_ERROR[[1, 2, 3, 4]] = True
PORT_PROTOS = (6, 17, 33, 132, 136)


def decode_transport(cur: Cursor) -> None:
    out = cur.out
    # only first fragments (offset 0) carry the transport header
    cand = np.flatnonzero((out.status == Status.OK) & (out.ip_version != 0) & (out.frag_offset == 0))
    if len(cand) == 0:
        return
    proto = out.proto[cand]
    for number, fn in DECODERS.items():
        sel = cand[proto == number]
        if len(sel):
            fn(cur, sel)
    _payload(cur, cand)


def _payload(cur: Cursor, idx: np.ndarray) -> None:
    out = cur.out
    poff = out.payload_off[idx].astype(np.int64)
    none = poff == 0
    poff = np.where(none, out.l4_off[idx], poff)
    out.payload_off[idx] = poff
    end = cur.ip_end[idx]
    out.payload_len[idx] = np.maximum(end - poff, 0)
    out.payload_caplen[idx] = np.maximum(np.minimum(end, cur.caplen[idx]) - poff, 0)


def tcp(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.TCP)
    out = cur.out
    out.sport[idx] = g.sport
    out.dport[idx] = g.dport
    out.tcp_seq[idx] = g.seq
    out.tcp_ack[idx] = g.ack
    out.tcp_flags[idx] = g.flags
    out.tcp_win[idx] = g.win
    hl = g.doff * 4
    l4 = cur.off[idx]
    out.payload_off[idx] = l4 + hl
    avail = cur.caplen[idx] - l4
    opts = np.flatnonzero(g.complete & (g.doff > 5))
    if len(opts):
        i = idx[opts]
        length = np.minimum(hl[opts], avail[opts]) - 20
        o = tcp_options(cur.data, cur.start[i] + l4[opts] + 20, length)
        out.tcp_opts[i] = o[:, 0]
        out.tcp_mss[i] = o[:, 1]
        out.tcp_wscale[i] = o[:, 2]
        out.tcp_tsval[i] = o[:, 3]
        out.tcp_tsecr[i] = o[:, 4]
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.L4_TRUNCATED)
    cur.flag(idx[g.complete & (g.doff < 5)], Status.MALFORMED, Reason.TCP_BAD_OFFSET)
    cur.flag(idx[g.complete & (hl > avail)], Status.TRUNCATED, Reason.TCP_OPTIONS_TRUNCATED)


def udp(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.UDP)
    out = cur.out
    out.sport[idx] = g.sport
    out.dport[idx] = g.dport
    out.payload_off[idx] = cur.off[idx] + 8
    dns = np.flatnonzero(g.complete & ((g.sport == 53) | (g.dport == 53)))
    if len(dns):
        d = cur.gather(idx[dns], h.DNS_ID, extra=8)
        # a DNS id only counts if it lies inside the datagram as well as the capture
        inside = d.complete & (g.length[dns] >= 10) & (cur.ip_end[idx[dns]] - cur.off[idx[dns]] >= 10)
        out.dns_id[idx[dns[inside]]] = d.id[inside]
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.L4_TRUNCATED)


def ports_only(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.PORTS)
    cur.out.sport[idx] = g.sport
    cur.out.dport[idx] = g.dport
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.L4_TRUNCATED)


def sctp(cur: Cursor, idx: np.ndarray) -> None:
    ports_only(cur, idx)
    cur.out.payload_off[idx] = cur.off[idx] + 12


def esp(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.ESP)
    cur.out.esp_spi[idx] = g.spi
    cur.out.esp_seq[idx] = g.seq
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.L4_TRUNCATED)


def _icmp_common(cur: Cursor, idx: np.ndarray, echo_table: np.ndarray) -> Gathered:
    g = cur.gather(idx, h.ICMP)
    out = cur.out
    out.icmp_type[idx] = g.type
    out.icmp_code[idx] = g.code
    out.icmp_rest[idx] = g.rest
    echo = echo_table[g.type]
    out.icmp_id[idx[echo]] = g.id[echo]
    out.icmp_seq[idx[echo]] = g.seq[echo]
    out.payload_off[idx] = cur.off[idx] + 8
    # an ICMP header cut after type/code still identifies the flow; only < 4 bytes is truncated
    cur.flag(idx[cur.caplen[idx] - cur.off[idx] < 4], Status.TRUNCATED, Reason.L4_TRUNCATED)
    return g


def _quoted_ports(cur: Cursor, idx: np.ndarray, proto: np.ndarray, at: np.ndarray) -> None:
    sel = np.isin(proto, PORT_PROTOS)
    p = cur.gather(idx[sel], h.PORTS, extra=at[sel])
    cur.out.q_sport[idx[sel]] = p.sport
    cur.out.q_dport[idx[sel]] = p.dport


def icmp(cur: Cursor, idx: np.ndarray) -> None:
    g = _icmp_common(cur, idx, ICMP_ECHO_LIKE)
    err = idx[ICMP_ERROR[g.type]]
    q = cur.gather(err, h.IPV4, extra=8)
    ok = q.complete & (q.version == 4) & (q.ihl >= 5)
    err, out = err[ok], cur.out
    out.q_ip_version[err] = 4
    out.q_proto[err] = q.proto[ok]
    out.q_src_lo[err] = q.src[ok]
    out.q_dst_lo[err] = q.dst[ok]
    first = q.frag[ok] == 0
    at = 8 + q.ihl[ok][first].astype(np.int64) * 4
    _quoted_ports(cur, err[first], q.proto[ok][first], at)
    _quoted_dns_id(cur, err[first], q.proto[ok][first], at)


def _quoted_dns_id(cur: Cursor, idx: np.ndarray, proto: np.ndarray, at: np.ndarray) -> None:
    """The DNS id of a quoted UDP/53 datagram, when the quote reaches it: IPv4 DNS flows are
    keyed by it, and argus maps the error onto such a flow (corpus: ndpi__KakaoTalk_chat)."""
    out = cur.out
    dns = (proto == 17) & ((out.q_sport[idx] == 53) | (out.q_dport[idx] == 53))
    g = cur.gather(idx[dns], h.DNS_ID, extra=at[dns] + 8)
    out.q_dns_id[idx[dns][g.complete]] = g.id[g.complete]


def icmp6(cur: Cursor, idx: np.ndarray) -> None:
    g = _icmp_common(cur, idx, ICMP6_ECHO)
    err = idx[ICMP6_ERROR[g.type]]
    q = cur.gather(err, h.IPV6, extra=8)
    ok = q.complete & (q.version == 6)
    err, out = err[ok], cur.out
    out.q_ip_version[err] = 6
    out.q_proto[err] = q.next[ok]
    out.q_src_hi[err] = q.src_hi[ok]
    out.q_src_lo[err] = q.src_lo[ok]
    out.q_dst_hi[err] = q.dst_hi[ok]
    out.q_dst_lo[err] = q.dst_lo[ok]
    _quoted_ports(cur, err, q.next[ok], np.full(len(err), 48, dtype=np.int64))


def igmp(cur: Cursor, idx: np.ndarray) -> None:
    """IGMP: type, code and bytes 4-7 (the group address; v3 reports: reserved + record count),
    which argus 3.0.8 keys IGMP flows by (flows/keys.py; corpus: ndpi__wechat)."""
    g = cur.gather(idx, h.ICMP)
    ok = idx[g.complete]
    cur.out.icmp_type[ok] = g.type[g.complete]
    cur.out.icmp_code[ok] = g.code[g.complete]
    cur.out.icmp_rest[ok] = g.rest[g.complete]


def ip_in_ip(cur: Cursor, idx: np.ndarray) -> None:
    """Tunnelled IP is not followed yet; the bit tells the flow model it was there."""
    cur.out.encaps[idx] |= np.where(cur.out.proto[idx] == 41, c.ENC_IPV6, c.ENC_IPIP).astype(np.uint32)


DECODERS = {
    6: tcp,
    17: udp,
    136: udp,  # UDP-Lite: same layout
    132: sctp,
    33: ports_only,  # DCCP
    1: icmp,
    58: icmp6,
    50: esp,
    2: igmp,
    4: ip_in_ip,
    41: ip_in_ip,
}


def arp(cur: Cursor, idx: np.ndarray) -> None:
    """ARP/RARP for IPv4 over any hardware type: address offsets follow hlen and plen."""
    g = cur.gather(idx, h.ARP)
    out = cur.out
    out.l3_off[idx] = cur.off[idx]
    out.arp_op[idx] = g.op
    ipv4 = g.complete & (g.ptype == 0x0800) & (g.plen == 4)
    i, hlen = idx[ipv4], g.hlen[ipv4]
    spa = cur.gather(i, h.ARP_IPV4_ADDR, extra=8 + hlen)
    tpa = cur.gather(i, h.ARP_IPV4_ADDR, extra=12 + 2 * hlen)
    out.src_lo[i] = spa.addr
    out.dst_lo[i] = tpa.addr
    mac = hlen == 6
    out.arp_sha[i[mac]] = cur.gather(i[mac], h.ARP_MAC_ADDR, extra=8).addr
    out.arp_tha[i[mac]] = cur.gather(i[mac], h.ARP_MAC_ADDR, extra=18).addr
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.ARP_TRUNCATED)
    cur.flag(i[~tpa.complete], Status.TRUNCATED, Reason.ARP_TRUNCATED)
    cur.flag(idx[g.complete & ~ipv4], Status.MALFORMED, Reason.ARP_UNSUPPORTED)
