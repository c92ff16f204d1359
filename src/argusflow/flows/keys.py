"""Flow keys of a packet batch, normalised the way argus 3.0.8 keys bidirectional flows.

Every packet gets one key of six u64 words, the same for both directions of a flow:

    a_hi a_lo b_hi b_lo   the two endpoints, numerically smaller one first
    w4                    kind << 56 | proto << 40 | port_a << 16 | port_b
    w5                    extra: DNS transaction id, ICMP type/code/id/seq, ether type + saps

and `rev`: True when the packet travels from endpoint b to endpoint a.  The flow table decides
the flow's orientation from its first packet; a packet is in the source direction when its `rev`
equals the first packet's.

Keys follow spec §6.2: the classic 5-tuple; the DNS transaction id for UDP port 53; ICMP type
(echo reply folded onto echo), code, identifier and sequence, and the quoted port, protocol or
address of an error; ARP sender/target protocol addresses; non-IP frames by MAC addresses, ether
type and LLC saps.  Packets we cannot key (damaged, non-Ethernet ARP) get kind 0 and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argusflow.decode.codes import ENC_ETHER, ENC_PPP, Reason, Status
from argusflow.decode.columns import DecodedBatch

KIND_NONE, KIND_IPV4, KIND_IPV6, KIND_ARP, KIND_ETHER = 0, 1, 2, 3, 4
ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_RARP, ETH_PPPOE_SESSION = 0x0800, 0x86DD, 0x0806, 0x8035, 0x8864
IGMP_QUERY = 0x11
P_ICMP, P_IGMP, P_TCP, P_UDP, P_ESP, P_ICMP6 = 1, 2, 6, 17, 50, 58

# ICMP types (v4) whose key carries something from the quoted packet or the message.
ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_REDIRECT, ICMP_ECHO = 0, 3, 5, 8
ICMP6_ECHO, ICMP6_ECHO_REPLY = 128, 129
ND_ROUTER_SOLICIT, ND_ROUTER_ADVERT, ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT = 133, 134, 135, 136

U64 = np.uint64
IP_REASONS = np.array([Reason.IP_TRUNCATED, Reason.IP_BAD_HEADER_LENGTH, Reason.IP_BAD_TOTAL_LENGTH,
                       Reason.IP_OPTIONS_TRUNCATED], dtype=np.uint8)
L4_REASONS = np.array([Reason.L4_TRUNCATED, Reason.TCP_BAD_OFFSET, Reason.TCP_OPTIONS_TRUNCATED],
                      dtype=np.uint8)


@dataclass
class PacketKeys:
    kind: np.ndarray  # u1
    a_hi: np.ndarray
    a_lo: np.ndarray
    b_hi: np.ndarray
    b_lo: np.ndarray
    w4: np.ndarray
    w5: np.ndarray
    rev: np.ndarray  # bool
    reply: np.ndarray  # bool: an ICMP echo reply (a flow it starts is oriented requester first)
    hash: np.ndarray  # u64
    frag: np.ndarray  # bool: a non-first fragment (no transport header; joined by IP id)
    fhash: np.ndarray  # u64: hash of the fragment key (addresses, protocol, IP id)
    fkey: np.ndarray  # (6, n) u64: the fragment key (what later fragments are keyed by)
    frev: np.ndarray  # bool: `rev` of the fragment key (endpoints ordered by address only)
    quoted: np.ndarray  # (6, n) u64: key of the packet an ICMP error quotes (0 when none)
    qhash: np.ndarray  # u64


def _u64(x: np.ndarray) -> np.ndarray:
    return x.astype(U64, copy=False)


def packet_keys(d: DecodedBatch) -> PacketKeys:
    """Normalised keys of every packet of a decoded batch (all numpy, no per-packet Python)."""
    n = len(d)
    ok = d.status == Status.OK
    ver = d.ip_version
    etype = d.ethertype.astype(np.int64)
    # argus keys a packet whose transport header is damaged by what it could read, and one whose
    # IP header is damaged as a non-IP frame of that ether type (corpus).
    l4_damaged = ~ok & np.isin(d.reason, L4_REASONS)
    ip_damaged = ~ok & np.isin(d.reason, IP_REASONS)
    kind = np.zeros(n, dtype=np.uint8)
    kind[(ok | l4_damaged) & (ver == 4)] = KIND_IPV4
    kind[(ok | l4_damaged) & (ver == 6)] = KIND_IPV6
    arp = ok & ((etype == ETH_ARP) | (etype == ETH_RARP)) & (ver == 0)
    kind[arp] = KIND_ARP
    # Non-IP frames become flows only when they have MAC addresses (argus keys them by MACs).
    has_macs = (d.encaps & ENC_ETHER) != 0
    ether = ok & has_macs & (ver == 0) & ~arp & (etype != ETH_IPV4) & (etype != ETH_IPV6)
    ether |= ip_damaged & has_macs
    kind[ether] = KIND_ETHER

    proto = d.proto.astype(np.int64)
    ip = (kind == KIND_IPV4) | (kind == KIND_IPV6)
    frag = ip & (d.frag_offset > 0)
    ports = ip & ~frag & ((proto == P_TCP) | (proto == P_UDP) | (proto == 132) | (proto == 33))
    sport = np.where(ports, d.sport, 0).astype(np.int64)
    dport = np.where(ports, d.dport, 0).astype(np.int64)
    sport, dport = _ipv6_fragment_ports(d, frag & (kind == KIND_IPV6), sport, dport)

    s_hi, s_lo = _u64(d.src_hi).copy(), _u64(d.src_lo).copy()
    t_hi, t_lo = _u64(d.dst_hi).copy(), _u64(d.dst_lo).copy()
    s_hi[~ip & ~arp] = 0
    # argus 3.0.8 keys IGMP by the message's group field (v3 reports: 0.0.0.N, the record
    # count), except a general query (group 0), which keeps the IP destination.
    igmp = (kind == KIND_IPV4) & ~frag & (proto == P_IGMP)
    group = igmp & ~((d.icmp_type == IGMP_QUERY) & (d.icmp_rest == 0))
    t_lo[group] = d.icmp_rest[group]
    t_hi[~ip & ~arp] = 0
    # Non-IP frames are keyed by their MAC addresses and saps.
    s_lo = np.where(ether, _u64(d.src_mac), s_lo)
    t_lo = np.where(ether, _u64(d.dst_mac), t_lo)
    sport = np.where(ether, d.llc_ssap, sport).astype(np.int64)
    dport = np.where(ether, d.llc_dsap, dport).astype(np.int64)

    extra = np.zeros(n, dtype=U64)
    udp = ip & ~frag & (proto == P_UDP)
    # Only IPv4 keys carry the DNS transaction id (the IPv6 key has no room for it).
    dns = udp & (kind == KIND_IPV4) & ((sport == 53) | (dport == 53)) & (d.dns_id >= 0)
    extra[dns] = _u64(d.dns_id[dns]) | U64(1 << 32)
    # PPPoE session frames that carry no IP (LCP, ...) are keyed by the PPPoE ether type.
    pppoe = ether & ((d.encaps & ENC_PPP) != 0) & (etype == 0)
    etype = np.where(pppoe, ETH_PPPOE_SESSION, etype)
    extra = np.where(ether, _u64(etype) << U64(16), extra)
    extra = _icmp_extra(d, kind, frag, extra)
    # ... and by type, code and IP id: every IGMP message is a record of its own (racluster
    # merges them by addresses).
    igmp_extra = (U64(1 << 61) | (_u64(d.icmp_type) << U64(40)) | (_u64(d.icmp_code) << U64(32))
                  | _u64(d.ip_id))
    extra = np.where(igmp, igmp_extra, extra)
    esp = ip & ~frag & (proto == P_ESP)
    extra = np.where(esp, _u64(d.esp_spi) | U64(1 << 44), extra)
    frag_extra = _u64(d.ip_id) | U64(1 << 40)
    extra = np.where(frag, frag_extra, extra)

    # Order the endpoints: smaller (address, port) first.
    s_gt = (s_hi > t_hi) | ((s_hi == t_hi) & ((s_lo > t_lo) | ((s_lo == t_lo) & (sport > dport))))
    # argus 3.0.8 does not join the two directions of an IPv6 flow between equal addresses
    # (corpus: QUIC over ::1 gives two one-way flows).
    s_gt &= ~((kind == KIND_IPV6) & (s_hi == t_hi) & (s_lo == t_lo))
    # ARP keys are not ordered by address: a request is keyed (sender, target) and a reply
    # reversed onto its request, so A asking for B and B asking for A are two flows
    # (corpus: ndpi__icmp-tunnel, simultaneous requests).
    s_gt = np.where(arp, (d.arp_op == 2) | (d.arp_op == 4), s_gt)
    a_hi, b_hi = np.where(s_gt, t_hi, s_hi), np.where(s_gt, s_hi, t_hi)
    a_lo, b_lo = np.where(s_gt, t_lo, s_lo), np.where(s_gt, s_lo, t_lo)
    pa, pb = np.where(s_gt, dport, sport), np.where(s_gt, sport, dport)
    w4 = (_u64(kind) << U64(56)) | (_u64(np.where(ether | arp, 0, proto)) << U64(40)) \
        | (_u64(pa) << U64(16)) | _u64(pb)
    h = _hash(a_hi, a_lo, b_hi, b_lo, w4, extra)
    # Later fragments carry no ports: they find their flow through the first fragment's
    # (addresses, protocol, IP id), hashed the way their own key is.
    s_gt_addr = (s_hi > t_hi) | ((s_hi == t_hi) & (s_lo > t_lo))
    fa_hi, fb_hi = np.where(s_gt_addr, t_hi, s_hi), np.where(s_gt_addr, s_hi, t_hi)
    fa_lo, fb_lo = np.where(s_gt_addr, t_lo, s_lo), np.where(s_gt_addr, s_lo, t_lo)
    fw4 = (_u64(kind) << U64(56)) | (_u64(proto) << U64(40))
    fhash = _hash(fa_hi, fa_lo, fb_hi, fb_lo, fw4, frag_extra)
    quoted, qhash = quoted_keys(d, kind)
    fkey = np.stack([fa_hi, fa_lo, fb_hi, fb_lo, fw4, frag_extra])
    itype = d.icmp_type
    reply = ip & ~frag & (((proto == P_ICMP) & (kind == KIND_IPV4) & (itype == ICMP_ECHO_REPLY))
                          | ((proto == P_ICMP6) & (kind == KIND_IPV6) & (itype == ICMP6_ECHO_REPLY)))
    return PacketKeys(kind, a_hi, a_lo, b_hi, b_lo, w4, extra, s_gt, reply, h, frag, fhash, fkey,
                      s_gt_addr, quoted, qhash)


def _ipv6_fragment_ports(d: DecodedBatch, v6frag: np.ndarray, sport: np.ndarray,
                         dport: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """argus 3.0.8 keys a non-first IPv6 fragment by "ports" read from its fragment header's
    identification field, each half in little-endian order, and swaps the two when the source
    address is the larger (corpus: ndpi__dns_fragmented, zeek__ipv6-fragmented-dns)."""
    if not v6frag.any():
        return sport, dport
    ident = d.ip_id.astype(np.int64)
    hi, lo = (ident >> 16) & 0xFFFF, ident & 0xFFFF
    hi, lo = ((hi & 0xFF) << 8) | (hi >> 8), ((lo & 0xFF) << 8) | (lo >> 8)
    src_gt = (d.src_hi > d.dst_hi) | ((d.src_hi == d.dst_hi) & (d.src_lo > d.dst_lo))
    fs, fd = np.where(src_gt, lo, hi), np.where(src_gt, hi, lo)
    return np.where(v6frag, fs, sport), np.where(v6frag, fd, dport)


def quoted_keys(d: DecodedBatch, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the flows ICMP errors quote (5-tuple of the quoted header), for the mapping of
    spec §6.8 (with the DNS transaction id of a quoted IPv4 DNS datagram, when quoted)."""
    n = len(d)
    quoted = np.zeros((6, n), dtype=U64)
    qhash = np.zeros(n, dtype=U64)
    idx = np.flatnonzero((d.q_ip_version > 0) & ((kind == KIND_IPV4) | (kind == KIND_IPV6)))
    if not len(idx):
        return quoted, qhash
    qkind = np.where(d.q_ip_version[idx] == 4, KIND_IPV4, KIND_IPV6).astype(np.int64)
    qproto = d.q_proto[idx].astype(np.int64)
    ports = (qproto == P_TCP) | (qproto == P_UDP)
    sport = np.where(ports, d.q_sport[idx], 0).astype(np.int64)
    dport = np.where(ports, d.q_dport[idx], 0).astype(np.int64)
    s_hi, s_lo = _u64(d.q_src_hi[idx]), _u64(d.q_src_lo[idx])
    t_hi, t_lo = _u64(d.q_dst_hi[idx]), _u64(d.q_dst_lo[idx])
    s_gt = (s_hi > t_hi) | ((s_hi == t_hi) & ((s_lo > t_lo) | ((s_lo == t_lo) & (sport > dport))))
    a_hi, b_hi = np.where(s_gt, t_hi, s_hi), np.where(s_gt, s_hi, t_hi)
    a_lo, b_lo = np.where(s_gt, t_lo, s_lo), np.where(s_gt, s_lo, t_lo)
    pa, pb = np.where(s_gt, dport, sport), np.where(s_gt, sport, dport)
    w4 = (_u64(qkind) << U64(56)) | (_u64(qproto) << U64(40)) | (_u64(pa) << U64(16)) | _u64(pb)
    # IPv4 DNS flows carry their transaction id in the key (see packet_keys).
    qdns = d.q_dns_id[idx]
    dns = (qkind == KIND_IPV4) & (qproto == P_UDP) & ((sport == 53) | (dport == 53)) & (qdns >= 0)
    extra = np.where(dns, _u64(np.maximum(qdns, 0)) | U64(1 << 32), U64(0))
    for row, values in enumerate((a_hi, a_lo, b_hi, b_lo, w4, extra)):
        quoted[row, idx] = values
    qhash[idx] = _hash(a_hi, a_lo, b_hi, b_lo, w4, extra)
    return quoted, qhash


def _hash(a_hi: np.ndarray, a_lo: np.ndarray, b_hi: np.ndarray, b_lo: np.ndarray, w4: np.ndarray,
          extra: np.ndarray) -> np.ndarray:
    return _mix(a_lo) ^ _mix(b_lo ^ U64(0x9E3779B97F4A7C15)) ^ _mix(a_hi + b_hi * U64(31)) \
        ^ _mix(w4 * U64(0xBF58476D1CE4E5B9)) ^ _mix(extra + U64(0x94D049BB133111EB))


def _icmp_extra(d: DecodedBatch, kind: np.ndarray, frag: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """ICMP keys (spec §6.2.3): type (echo reply folded to echo), code, and the id/seq slot."""
    proto = d.proto
    t = d.icmp_type.astype(np.int64)
    code = d.icmp_code.astype(np.int64)
    icmp4 = (kind == KIND_IPV4) & ~frag & (proto == P_ICMP)
    icmp6 = (kind == KIND_IPV6) & ~frag & (proto == P_ICMP6)
    ktype = np.where(icmp4 & (t == ICMP_ECHO_REPLY), ICMP_ECHO, t)
    ktype = np.where(icmp6 & (t == ICMP6_ECHO_REPLY), ICMP6_ECHO, ktype)
    # Neighbour discovery: advertisements join the solicitation's flow (corpus).
    ktype = np.where(icmp6 & (t == ND_NEIGHBOR_ADVERT), ND_NEIGHBOR_SOLICIT, ktype)
    ktype = np.where(icmp6 & (t == ND_ROUTER_ADVERT), ND_ROUTER_SOLICIT, ktype)
    echo = icmp4 & (ktype == ICMP_ECHO)
    slot = np.zeros(len(t), dtype=np.int64)  # bytes 16-19 of the key, as a number
    slot = np.where(echo, d.icmp_id.astype(np.int64) << 16 | d.icmp_seq, slot)
    unreach = icmp4 & (t == ICMP_UNREACH)
    quoted = d.q_ip_version > 0
    slot = np.where(unreach & (code == 3) & quoted, d.q_dport.astype(np.int64) << 16, slot)
    slot = np.where(unreach & (code == 2) & quoted, d.q_proto.astype(np.int64) << 16, slot)
    host = ((unreach | (icmp4 & (t == ICMP_REDIRECT))) & (code <= 1) & quoted)
    slot = np.where(host, d.q_dst_lo.astype(np.int64) & 0xFFFFFFFF, slot)
    tp_p = np.where(unreach & (code == 3) & quoted, d.q_proto, 0).astype(np.int64)
    value = (1 << 60) | tp_p << 48 | ktype << 40 | code << 32 | slot
    return np.where(icmp4 | icmp6, _u64(value), extra)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads key bits over the whole hash."""
    x = (x ^ (x >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> U64(27))) * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))
