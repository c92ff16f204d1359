"""Compiled packet keys: keys.packet_keys in one pass per packet.

keys.packet_keys is the specification, written as numpy over the batch; its forty-odd whole-
column passes cost more than the flow kernel itself (0.22 s against 0.25 s for 1M packets).
This loop computes the same keys packet by packet while a packet's columns are in cache.
Only the keys of quoted packets (ICMP errors, rare) still come from keys.quoted_keys.
tests/test_probe.py holds the two to identical output on the corpus and the bench capture.
"""

from __future__ import annotations

import numpy as np

from argusflow.decode.codes import ENC_ETHER, ENC_PPP, Status
from argusflow.decode.columns import DecodedBatch
from argusflow.flows.jit import entry, njit
from argusflow.flows.keys import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ETH_PPPOE_SESSION,
    ETH_RARP,
    ICMP6_ECHO,
    ICMP6_ECHO_REPLY,
    ICMP_ECHO,
    ICMP_ECHO_REPLY,
    ICMP_REDIRECT,
    ICMP_UNREACH,
    IGMP_QUERY,
    IP_REASONS,
    KIND_ARP,
    KIND_ETHER,
    KIND_IPV4,
    KIND_IPV6,
    L4_REASONS,
    ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT,
    ND_ROUTER_ADVERT,
    ND_ROUTER_SOLICIT,
    P_ESP,
    P_ICMP,
    P_ICMP6,
    P_IGMP,
    P_TCP,
    P_UDP,
    PacketKeys,
    quoted_keys,
)

STATUS_OK = int(Status.OK)
# Reason -> 1 IP header damaged, 2 transport header damaged (keys.IP_REASONS / L4_REASONS).
DAMAGE = np.zeros(256, dtype=np.uint8)
DAMAGE[IP_REASONS] = 1
DAMAGE[L4_REASONS] = 2

U = np.uint64
GOLDEN, M1, M2 = U(0x9E3779B97F4A7C15), U(0xBF58476D1CE4E5B9), U(0x94D049BB133111EB)


@njit
def _mix(x: np.uint64) -> np.uint64:
    """keys._mix (splitmix64 finaliser) on one word."""
    x = (x ^ (x >> U(30))) * M1
    x = (x ^ (x >> U(27))) * M2
    return x ^ (x >> U(31))


@njit
def _hash(a_hi: np.uint64, a_lo: np.uint64, b_hi: np.uint64, b_lo: np.uint64, w4: np.uint64,
          extra: np.uint64) -> np.uint64:
    return _mix(a_lo) ^ _mix(b_lo ^ GOLDEN) ^ _mix(a_hi + b_hi * U(31)) ^ _mix(w4 * M1) \
        ^ _mix(extra + M2)


@njit
def _icmp_value(icmp4: bool, icmp6: bool, t: int, code: int, icmp_id: int, icmp_seq: int,
                quoted: bool, q_dport: int, q_proto: int, q_dst_lo: int) -> int:
    """keys._icmp_extra for one ICMP packet."""
    ktype = t
    if icmp4 and t == ICMP_ECHO_REPLY:
        ktype = ICMP_ECHO
    if icmp6:
        if t == ICMP6_ECHO_REPLY:
            ktype = ICMP6_ECHO
        elif t == ND_NEIGHBOR_ADVERT:
            ktype = ND_NEIGHBOR_SOLICIT
        elif t == ND_ROUTER_ADVERT:
            ktype = ND_ROUTER_SOLICIT
    slot = 0
    if icmp4 and ktype == ICMP_ECHO:
        slot = (icmp_id << 16) | icmp_seq
    unreach = icmp4 and t == ICMP_UNREACH
    if unreach and code == 3 and quoted:
        slot = q_dport << 16
    if unreach and code == 2 and quoted:
        slot = q_proto << 16
    if (unreach or (icmp4 and t == ICMP_REDIRECT)) and code <= 1 and quoted:
        slot = q_dst_lo & 0xFFFFFFFF
    tp_p = q_proto if unreach and code == 3 and quoted else 0
    return (1 << 60) | (tp_p << 48) | (ktype << 40) | (code << 32) | slot


@entry("flow_keys")
def _keys(status, reason, ver, ethertype, encaps, proto_c, frag_offset, sport_c, dport_c,  # noqa: ANN001, PLR0913
          ip_id, src_hi, src_lo, dst_hi, dst_lo, icmp_type, icmp_code, icmp_rest, icmp_id,
          icmp_seq, src_mac, dst_mac, llc_ssap, llc_dsap, dns_id, q_ip_version, q_dport,
          q_proto, q_dst_lo, esp_spi, arp_op, damage,
          kind_o, key_o, rev_o, reply_o, hash_o, frag_o, fhash_o, fkey_o, frev_o) -> None:
    for i in range(len(status)):
        ok = status[i] == STATUS_OK
        v = ver[i]
        etype = np.int64(ethertype[i])
        dmg = damage[reason[i]] if not ok else 0
        kind = 0
        if (ok or dmg == 2) and v == 4:
            kind = KIND_IPV4
        if (ok or dmg == 2) and v == 6:
            kind = KIND_IPV6
        arp = ok and (etype == ETH_ARP or etype == ETH_RARP) and v == 0
        if arp:
            kind = KIND_ARP
        has_macs = (encaps[i] & ENC_ETHER) != 0
        ether = (ok and has_macs and v == 0 and not arp and etype != ETH_IPV4
                 and etype != ETH_IPV6) or (dmg == 1 and has_macs)
        if ether:
            kind = KIND_ETHER
        proto = np.int64(proto_c[i])
        ip = kind == KIND_IPV4 or kind == KIND_IPV6
        frag = ip and frag_offset[i] > 0
        sport = np.int64(0)
        dport = np.int64(0)
        if ip and not frag and (proto == P_TCP or proto == P_UDP or proto == 132 or proto == 33):
            sport = np.int64(sport_c[i])
            dport = np.int64(dport_c[i])
        s_hi, s_lo, t_hi, t_lo = U(src_hi[i]), U(src_lo[i]), U(dst_hi[i]), U(dst_lo[i])
        if frag and kind == KIND_IPV6:  # keys._ipv6_fragment_ports
            ident = np.int64(ip_id[i])
            hi, lo = (ident >> 16) & 0xFFFF, ident & 0xFFFF
            hi, lo = ((hi & 0xFF) << 8) | (hi >> 8), ((lo & 0xFF) << 8) | (lo >> 8)
            if s_hi > t_hi or (s_hi == t_hi and s_lo > t_lo):
                sport, dport = lo, hi
            else:
                sport, dport = hi, lo
        if not ip and not arp:
            s_hi = U(0)
            t_hi = U(0)
        igmp = kind == KIND_IPV4 and not frag and proto == P_IGMP
        if igmp and not (icmp_type[i] == IGMP_QUERY and icmp_rest[i] == 0):
            t_lo = U(icmp_rest[i])
        if ether:
            s_lo = U(src_mac[i])
            t_lo = U(dst_mac[i])
            sport = np.int64(llc_ssap[i])
            dport = np.int64(llc_dsap[i])
        extra = U(0)
        if (ip and not frag and proto == P_UDP and kind == KIND_IPV4
                and (sport == 53 or dport == 53) and dns_id[i] >= 0):
            extra = U(dns_id[i]) | U(1 << 32)
        if ether:
            if (encaps[i] & ENC_PPP) != 0 and etype == 0:
                etype = ETH_PPPOE_SESSION
            extra = U(etype) << U(16)
        icmp4 = kind == KIND_IPV4 and not frag and proto == P_ICMP
        icmp6 = kind == KIND_IPV6 and not frag and proto == P_ICMP6
        if icmp4 or icmp6:
            extra = U(_icmp_value(icmp4, icmp6, np.int64(icmp_type[i]), np.int64(icmp_code[i]),
                                  np.int64(icmp_id[i]), np.int64(icmp_seq[i]),
                                  q_ip_version[i] > 0, np.int64(q_dport[i]),
                                  np.int64(q_proto[i]), np.int64(q_dst_lo[i])))
        if igmp:
            extra = U(1 << 61) | (U(icmp_type[i]) << U(40)) | (U(icmp_code[i]) << U(32)) \
                | U(ip_id[i])
        if ip and not frag and proto == P_ESP:
            extra = U(esp_spi[i]) | U(1 << 44)
        frag_extra = U(ip_id[i]) | U(1 << 40)
        if frag:
            extra = frag_extra
        s_gt = s_hi > t_hi or (s_hi == t_hi and (s_lo > t_lo or (s_lo == t_lo and sport > dport)))
        if kind == KIND_IPV6 and s_hi == t_hi and s_lo == t_lo:
            s_gt = False
        if arp:
            s_gt = arp_op[i] == 2 or arp_op[i] == 4
        if s_gt:
            a_hi, a_lo, b_hi, b_lo, pa, pb = t_hi, t_lo, s_hi, s_lo, dport, sport
        else:
            a_hi, a_lo, b_hi, b_lo, pa, pb = s_hi, s_lo, t_hi, t_lo, sport, dport
        kp = 0 if ether or arp else proto
        w4 = (U(kind) << U(56)) | (U(kp) << U(40)) | (U(pa) << U(16)) | U(pb)
        key_o[0, i], key_o[1, i], key_o[2, i], key_o[3, i] = a_hi, a_lo, b_hi, b_lo
        key_o[4, i], key_o[5, i] = w4, extra
        hash_o[i] = _hash(a_hi, a_lo, b_hi, b_lo, w4, extra)
        s_gt_addr = s_hi > t_hi or (s_hi == t_hi and s_lo > t_lo)
        if s_gt_addr:
            fa_hi, fa_lo, fb_hi, fb_lo = t_hi, t_lo, s_hi, s_lo
        else:
            fa_hi, fa_lo, fb_hi, fb_lo = s_hi, s_lo, t_hi, t_lo
        fw4 = (U(kind) << U(56)) | (U(proto) << U(40))
        fkey_o[0, i], fkey_o[1, i], fkey_o[2, i], fkey_o[3, i] = fa_hi, fa_lo, fb_hi, fb_lo
        fkey_o[4, i], fkey_o[5, i] = fw4, frag_extra
        fhash_o[i] = _hash(fa_hi, fa_lo, fb_hi, fb_lo, fw4, frag_extra)
        t = icmp_type[i]
        reply_o[i] = ip and not frag and ((proto == P_ICMP and kind == KIND_IPV4
                                           and t == ICMP_ECHO_REPLY)
                                          or (proto == P_ICMP6 and kind == KIND_IPV6
                                              and t == ICMP6_ECHO_REPLY))
        kind_o[i] = kind
        rev_o[i] = s_gt
        frag_o[i] = frag
        frev_o[i] = s_gt_addr


def packet_keys(d: DecodedBatch) -> PacketKeys:
    """keys.packet_keys, compiled (same arrays, same values)."""
    n = len(d)
    kind = np.empty(n, dtype=np.uint8)
    key = np.empty((6, n), dtype=np.uint64)
    fkey = np.empty((6, n), dtype=np.uint64)
    rev, reply, frag, frev = (np.empty(n, dtype=np.bool_) for _ in range(4))
    h, fh = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    # The precompiled kernel (argusflow.aot) takes contiguous columns only, and a batch taken
    # out of another (a capture filter) holds strided views: copied then, free otherwise.
    columns = (d.status, d.reason, d.ip_version, d.ethertype, d.encaps, d.proto, d.frag_offset,
               d.sport, d.dport, d.ip_id, d.src_hi, d.src_lo, d.dst_hi, d.dst_lo, d.icmp_type,
               d.icmp_code, d.icmp_rest, d.icmp_id, d.icmp_seq, d.src_mac, d.dst_mac, d.llc_ssap,
               d.llc_dsap, d.dns_id, d.q_ip_version, d.q_dport, d.q_proto, d.q_dst_lo, d.esp_spi,
               d.arp_op, DAMAGE)
    _keys(*(np.ascontiguousarray(c) for c in columns), kind, key, rev, reply, h, frag, fh, fkey,
          frev)
    quoted, qhash = quoted_keys(d, kind)
    return PacketKeys(kind, key[0], key[1], key[2], key[3], key[4], key[5], rev, reply, h, frag,
                      fh, fkey, frev, quoted, qhash)
