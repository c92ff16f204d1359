"""The compiled part of ra's polars-free default lines (records/numpy_lines.py): per record, in
one pass, the codes of the columns whose rules are long chains of tests (derive's Flgs, State,
Dir, the printer's Proto and port kinds).  As numpy expressions these were ~300 array
operations per batch, most of the printing time; here one loop, released from the GIL so the
next batch decodes meanwhile.

Written in numba's subset of Python and compiled ahead of time (argusflow.aot, export
`line_codes`).  `cols[k, r]` is input column INPUTS[k] of record r as int64 (flow records only:
the caller drops MARs); `out[k, r]` gets output k (O_FLGS, O_STATE ...).  The rules are those of
records.derive and records.printer (each branch names the function it follows); the texts the
codes stand for are records.naming's, looked up through `tables` (TABLES gives the layout).
"""

from __future__ import annotations

import numpy as np

from argusflow.records import naming as nm
from argusflow.records.linekernel import _Kernel
from argusflow.records.schema import (
    ADDR_ARP,
    ADDR_IPV4,
    ADDR_IPV6,
    DSR_BITS,
    NET_ESP,
    NET_RTP,
    NET_TCP_INIT,
    NET_TCP_PERF,
    NET_TCP_STATUS,
    RTYPE_NETFLOW,
)

INPUTS = ("cause", "dsrs", "flow_qual", "flow_subtype", "proto", "sport", "dport", "smask",
          "dmask", "saddr_lo", "spkts", "dpkts", "tcp_status", "net_subtype", "net_qual",
          "time_qual", "sencaps", "dencaps", "mac_qual", "icmpmap_qual", "icmpmap_type",
          "icmpmap_code", "esp_lostseq", "attr_qual", "sipopts", "dipopts", "rtype",
          "stcp_retrans", "stcp_seq", "stcp_seqbase", "stcp_ackbytes", "stcp_bytes",
          "dtcp_retrans", "dtcp_seq", "dtcp_seqbase", "dtcp_ackbytes", "dtcp_bytes")
(CAUSE, DSRS, FLOW_QUAL, SUBTYPE, PROTO, SPORT, DPORT, SMASK, DMASK, SADDR_LO, SPKTS, DPKTS,
 TCP_STATUS, NET_SUBTYPE, NET_QUAL, TIME_QUAL, SENCAPS, DENCAPS, MAC_QUAL, ICMPMAP_QUAL,
 ICMPMAP_TYPE, ICMPMAP_CODE, ESP_LOSTSEQ, ATTR_QUAL, SIPOPTS, DIPOPTS, RTYPE, STCP) = range(28)
GAP = 5  # STCP + GAP: the destination's five TCP columns

# outputs: Flgs (nine 7-bit characters), State and Dir (codes of naming.STATE_TEXTS and
# DIR_TEXTS), Proto key, and each port's kind and value
O_FLGS, O_STATE, O_DIR, O_PROTO, O_SKIND, O_SVALUE, O_DKIND, O_DVALUE = range(8)
OUTPUTS = 8
PROTO_RTP, PROTO_ARP = 1 << 20, 1 << 21
# port kinds: blank, a number, a TCP or UDP service (or the number), hex "0x%04x", hex
# "0x%08x", and the SPI of an IPv6 key (its bytes in little-endian order)
BLANK, NUMBER, TCP, UDP, HEX4, HEX8, LEHEX = range(7)

_HAS_NET, _HAS_TIME, _HAS_ENCAPS = DSR_BITS["net"], DSR_BITS["time"], DSR_BITS["encaps"]
_HAS_VLAN, _HAS_MAC, _HAS_MPLS = DSR_BITS["vlan"], DSR_BITS["mac"], DSR_BITS["mpls"]
_HAS_ICMPMAP, _HAS_ATTR, _HAS_METRIC = DSR_BITS["icmpmap"], DSR_BITS["attr"], DSR_BITS["metric"]

# `tables`: 256 entries each, indexed by a byte
T_ICMP, T_UNREACH, T_ICMP6, T_UNREACH6, T_PARAM6, T_IPOPT, T_ENCAPS = (256 * k for k in range(7))
T_STATES = 256 * 7  # then the codes of these states, in this order
_NAMED = ("CON", "INT", "RST", "FIN", "CLO", "TIM", "ACC", "REQ", "RSP", "UNK", "ERR", "TXT", "TXR")
(S_CON, S_INT, S_RST, S_FIN, S_CLO, S_TIM, S_ACC, S_REQ, S_RSP, S_UNK, S_ERR, S_TXT,
 S_TXR) = (T_STATES + k for k in range(len(_NAMED)))
_ENCAPS_MASKS = np.array([mask for mask, _ in nm._ENCAPS_LETTERS], dtype=np.int64)


def tables() -> np.ndarray:
    """The lookup tables the kernel reads (codes of naming's texts; ASCII codes of letters)."""
    code = {text: i for i, text in reversed(list(enumerate(nm.STATE_TEXTS)))}

    def of(table: dict[int, str], default: str) -> list[int]:
        return [code[table.get(k, default)] for k in range(256)]

    encaps = [ord(" ")] * 256  # by the letter's index in _ENCAPS_LETTERS
    for k, (_, letter) in enumerate(nm._ENCAPS_LETTERS):
        encaps[k] = ord(letter)
    parts = [of(nm._ICMP_STATES, "UNK"), of(dict(enumerate(nm._UNREACH)), "UR"),
             of(nm._ICMP6_STATES, "UNK"), of(dict(enumerate(nm._ICMP6_UNREACH)), "UNK"),
             of({0: "PPH", 1: "PPNH", 2: "PPO"}, "UNK"),
             [ord(nm._IPOPT_LETTERS.get(k, "U")) for k in range(256)], encaps,
             [code[text] for text in _NAMED]]
    return np.array([v for part in parts for v in part], dtype=np.int64)


def _sd(src: bool, dst: bool, s: int, d: int, both: int) -> int:
    if src and dst:
        return both
    if src:
        return s
    if dst:
        return d
    return 32


def _popcount(v: int) -> int:
    count = 0
    while v:
        v &= v - 1
        count += 1
    return count


def _gap(cols: np.ndarray, k: int, r: int) -> bool:
    """derive._gap of one direction (its TCP columns from row k)."""
    retrans, seq, seqbase = cols[k, r], cols[k + 1, r], cols[k + 2, r]
    ok = retrans == 0 and seq != 0 and seqbase != cols[k + 3, r]
    return ok and seq - seqbase - cols[k + 4, r] - 1 > 0


def _encaps(cols: np.ndarray, r: int, dsrs: int, tables: np.ndarray) -> int:
    """derive._flag_encaps."""
    if dsrs & _HAS_MAC and cols[MAC_QUAL, r] & 0x03:
        return 77  # M
    if dsrs & _HAS_ENCAPS:
        enc = (cols[SENCAPS, r] | cols[DENCAPS, r]) & 0xFFFFFFFF
        if _popcount(enc) > 1:
            return 42  # *
        for k in range(len(_ENCAPS_MASKS)):  # the first listed wins
            if enc == _ENCAPS_MASKS[k]:
                return tables[T_ENCAPS + k]
        return 32
    if dsrs & _HAS_VLAN:
        return 118  # v
    if dsrs & _HAS_MAC:
        return 101  # e
    if dsrs & _HAS_MPLS:
        return 109  # m
    return 32


def _loss(cols: np.ndarray, r: int, ip: bool, v6: bool, tcp_net: bool, st: int) -> int:
    """derive._flag_loss."""
    if tcp_net:
        sre, dre = (st & nm.SRC_RETRANS) != 0, (st & nm.DST_RETRANS) != 0
        if sre or (dre and not v6):  # ra shows a dst-only retransmission of IPv6 as blank
            return _sd(sre, dre, 115, 100, 42)  # s d *
        if not ip or v6:
            return 32
        if cols[NET_SUBTYPE, r] == NET_TCP_PERF and (_gap(cols, STCP, r) or _gap(cols, STCP + GAP, r)):
            return 103  # g
        return _sd((st & nm.SRC_OUTOFORDER) != 0, (st & nm.DST_OUTOFORDER) != 0, 105, 114, 38)  # i r &
    esp = cols[PROTO, r] == nm.IPPROTO_ESP and cols[NET_SUBTYPE, r] == NET_ESP and cols[ESP_LOSTSEQ, r] != 0
    return 115 if ip and esp else 32


def _flgs(cols: np.ndarray, r: int, ip: bool, v4: bool, v6: bool, tcp_net: bool, mapped: bool,
          tables: np.ndarray) -> int:
    """derive.flgs_codes packed 7 bits a character (the ninth, correlation, blank)."""
    dsrs, st, proto = cols[DSRS, r], cols[TCP_STATUS, r], cols[PROTO, r]
    first = 32
    if cols[RTYPE, r] == RTYPE_NETFLOW:
        first = 78  # N
    elif dsrs & _HAS_TIME and cols[TIME_QUAL, r] & 0x01:
        first = 84  # T
    icmp = 32
    if mapped:
        t = cols[ICMPMAP_TYPE, r]
        icmp = 85 if t == 3 else (82 if t == 5 else (84 if t == 11 else 73))  # U R T I
    tcp4 = tcp_net and v4
    qual = cols[NET_QUAL, r]
    if dsrs & _HAS_NET and cols[NET_SUBTYPE, r] == NET_RTP and proto == nm.IPPROTO_UDP:
        window = _sd((qual & nm.RTP_SRC_SILENCE) != 0, (qual & nm.RTP_DST_SILENCE) != 0, 115, 100, 42)
    elif tcp4:
        window = _sd((st & nm.SRC_WINDOW_SHUT) != 0, (st & nm.DST_WINDOW_SHUT) != 0, 83, 68, 64)  # S D @
    else:
        window = 32
    congested = _sd((st & nm.SRC_CONGESTED) != 0, (st & nm.DST_CONGESTED) != 0, 120, 116, 69) \
        if tcp4 else 32  # x t E
    attr = cols[ATTR_QUAL, r]
    if dsrs & _HAS_ATTR and attr & 0x30:
        frag = 70  # F
    elif dsrs & _HAS_NET and cols[NET_SUBTYPE, r] == 0x45:
        frag = 102  # f
    elif cols[FLOW_QUAL, r] & 0x80:
        frag = 70
    else:
        frag = 32
    opts = ((cols[SIPOPTS, r] if attr & 0x04 else 0) | (cols[DIPOPTS, r] if attr & 0x08 else 0)) & 0xFFFFFFFF
    if not dsrs & _HAS_ATTR or opts == 0:
        ipopt = 32
    elif _popcount(opts) > 1:
        ipopt = 79  # O
    else:
        ipopt = tables[T_IPOPT + min(opts, 255)]
    return (first | _encaps(cols, r, dsrs, tables) << 7 | icmp << 14
            | _loss(cols, r, ip, v6, tcp_net, st) << 21 | window << 28 | congested << 35 | frag << 42
            | ipopt << 49 | 32 << 56)


def _state(cols: np.ndarray, r: int, tcp: bool, icmp4: bool, icmp6: bool, arp: bool, mapped: bool,
           tables: np.ndarray) -> int:
    """derive.state_code of a flow record (tcp_state_code, icmp_state_code ...)."""
    cause, st = cols[CAUSE, r], cols[TCP_STATUS, r]
    sp, dp = cols[SPKTS, r] != 0, cols[DPKTS, r] != 0
    if cause == 0x80:
        return tables[S_ERR]
    if tcp:
        if st == 0:
            return tables[S_CON] if sp and dp else tables[S_INT]
        if st & (nm.SRC_RESET | nm.DST_RESET):
            return tables[S_RST]
        if st & (nm.FIN | nm.FIN_ACK):
            return tables[S_FIN]
        if st & nm.NORMAL_CLOSE:
            return tables[S_CLO]
        if cause & 0x40:
            return tables[S_TIM]
        if st & nm.CON_ESTABLISHED:
            return tables[S_CON]
        if st & nm.SAW_SYN_SENT:
            return tables[S_ACC]
        if st & nm.SAW_SYN:
            return tables[S_REQ]
        return tables[S_CON]
    sport, dport = cols[SPORT, r], cols[DPORT, r]
    if icmp4:
        itype = cols[ICMPMAP_TYPE, r] if mapped else sport // 256
        icode = cols[ICMPMAP_CODE, r] if mapped else sport % 256
        if itype == 3:
            return tables[T_UNREACH + min(max(icode, 0), 255)]
        if itype >= 46:
            return tables[S_UNK]
        return tables[T_ICMP + max(itype, 0)]
    if icmp6:
        key = dport if sport == 0 else sport  # the reader's REVERSE undo may have moved it
        itype, icode = key // 256, key % 256
        if itype == 1:
            return tables[T_UNREACH6 + icode]
        if itype == 3:
            return tables[S_TXT] if icode == 0 else tables[S_TXR]
        if itype == 4:
            return tables[T_PARAM6 + icode]
        return tables[T_ICMP6 + itype]
    if sp and dp:
        return tables[S_CON]
    if sp:
        return tables[S_INT] if cause & 0x10 or arp else tables[S_REQ]
    return tables[S_RSP]


def _dir(cols: np.ndarray, r: int, arp: bool, tcp_net: bool) -> int:
    """derive.dir_code (naming.DIR_TEXTS)."""
    if not cols[DSRS, r] & _HAS_METRIC:
        return 0
    if arp:
        return 1
    known = (cols[TCP_STATUS, r] & (nm.SAW_SYN | nm.SAW_SYN_SENT)) != 0
    if tcp_net and known:
        return 2
    sp, dp = cols[SPKTS, r] != 0, cols[DPKTS, r] != 0
    middle = 4 if tcp_net else (2 if sp or dp else 0)
    return 3 + (6 if dp else 0) + middle + (1 if sp else 0)


def _ports(cols: np.ndarray, r: int, out: np.ndarray, ip: bool, v6: bool, icmp4: bool, icmp6: bool,
           numeric: bool) -> None:
    """printer._port_text's kinds and values, source and destination."""
    sport, dport, proto = cols[SPORT, r], cols[DPORT, r], cols[PROTO, r]
    skind, svalue, dkind, dvalue = BLANK, 0, BLANK, 0
    if ip and (proto == nm.IPPROTO_TCP or proto == nm.IPPROTO_UDP):
        kind = NUMBER if numeric else (TCP if proto == nm.IPPROTO_TCP else UDP)
        skind = BLANK if not numeric and sport == 0 else kind
        dkind = BLANK if not numeric and dport == 0 else kind
        svalue, dvalue = sport, dport
    elif icmp4:
        skind, svalue = HEX4, (sport % 256) * 256 + sport // 256
        dkind, dvalue = HEX4, dport
    elif icmp6:
        key = dport if sport == 0 else sport
        skind = dkind = NUMBER if numeric else HEX4
        svalue, dvalue = key // 256, key & 0xFF
    elif ip and proto == nm.IPPROTO_ESP:  # the SPI; of an IPv6 key where IPv4 keys have it
        if v6:
            dkind, dvalue = LEHEX, cols[SADDR_LO, r] & 0xFFFFFFFF
        else:
            dkind, dvalue = HEX8, 0x20200000 + cols[SMASK, r] * 256 + cols[DMASK, r]
    out[O_SKIND, r], out[O_SVALUE, r], out[O_DKIND, r], out[O_DVALUE, r] = skind, svalue, dkind, dvalue


def line_codes(cols: np.ndarray, tables: np.ndarray, nflag: int, out: np.ndarray) -> None:
    """The codes of every record (see the module notes)."""
    numeric_ports = nflag == 1 or nflag == 2
    for r in range(cols.shape[1]):
        at, proto, dsrs = cols[FLOW_QUAL, r] & 0x1F, cols[PROTO, r], cols[DSRS, r]
        v4, v6, arp = at == ADDR_IPV4, at == ADDR_IPV6, at == ADDR_ARP
        ip = (v4 or v6) and cols[SUBTYPE, r] != 3
        tcp = ip and proto == nm.IPPROTO_TCP
        ns = cols[NET_SUBTYPE, r]
        tcp_net = tcp and (dsrs & _HAS_NET) != 0 and (ns == NET_TCP_INIT or ns == NET_TCP_STATUS
                                                      or ns == NET_TCP_PERF)
        icmp4 = v4 and proto == nm.IPPROTO_ICMP
        icmp6 = v6 and proto == nm.IPPROTO_ICMPV6
        mapped = (dsrs & _HAS_ICMPMAP) != 0 and (cols[ICMPMAP_QUAL, r] & 0x07) != 0
        out[O_FLGS, r] = _flgs(cols, r, ip, v4, v6, tcp_net, mapped, tables)
        out[O_STATE, r] = _state(cols, r, tcp, icmp4, icmp6, arp, mapped, tables)
        out[O_DIR, r] = _dir(cols, r, arp, tcp_net)
        rtp = nflag != 2 and proto == nm.IPPROTO_UDP and (dsrs & _HAS_NET) != 0 and ns == NET_RTP
        out[O_PROTO, r] = PROTO_ARP if arp else (PROTO_RTP if rtp else proto)
        _ports(cols, r, out, ip, v6, icmp4, icmp6, numeric_ports)


LINE_CODES = _Kernel(line_codes, ("_sd", "_popcount", "_gap", "_encaps", "_loss", "_flgs", "_state",
                                  "_dir", "_ports"))
