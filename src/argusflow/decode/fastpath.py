"""Compiled fast path for the packets most captures are made of.

Ethernet (with 802.1Q/802.1ad tags), Linux cooked (v1, v2) or raw IP -> IPv4 without options
or IPv6 without extension headers -> TCP (with options), UDP (with the DNS id), ICMP/ICMPv6 echo,
or any other protocol as opaque.
One loop per packet writes every output column while the packet's first cache lines are hot,
which the layer-by-layer numpy decoder cannot do (each of its passes misses the cache again).

Everything else -- other link types, LLC, MPLS, PPPoE, ARP, IP options, IPv6 extension headers,
ICMP errors, SCTP/ESP/tunnels, and any packet that is truncated or malformed -- is marked `slow`
and decoded by the reference path, which is the specification: tests decode the corpus both
ways and require identical columns.  Header offsets come from the header tables in headers.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from argusflow.capture import jit
from argusflow.decode import codes as c
from argusflow.decode import headers as h
from argusflow.decode.columns import SLOT, DecodedBatch
from argusflow.decode.kernels import TCPOPT_TABLE, tcp_option_walk

PREFETCH_AHEAD = 12  # packets
GROUP_ORDER = ("u1", "u2", "u4", "u8", "i4")  # _fast's output arguments

# column rows in the per-dtype matrices (see columns.GROUPS)
U1_STATUS, U1_VLAN_COUNT, U1_IP_VERSION = SLOT["status"], SLOT["vlan_count"], SLOT["ip_version"]
U1_PROTO, U1_TTL, U1_TOS, U1_FRAG_FLAGS = SLOT["proto"], SLOT["ttl"], SLOT["tos"], SLOT["frag_flags"]
U1_WSCALE, U1_ICMP_TYPE, U1_ICMP_CODE = SLOT["tcp_wscale"], SLOT["icmp_type"], SLOT["icmp_code"]
U2_VLAN_OUTER, U2_VLAN_INNER, U2_ETHERTYPE = SLOT["vlan_outer"], SLOT["vlan_inner"], SLOT["ethertype"]
U2_FRAG_OFFSET, U2_SPORT, U2_DPORT = SLOT["frag_offset"], SLOT["sport"], SLOT["dport"]
U2_TCP_FLAGS, U2_TCP_WIN, U2_TCP_MSS = SLOT["tcp_flags"], SLOT["tcp_win"], SLOT["tcp_mss"]
U2_ICMP_ID, U2_ICMP_SEQ, U2_LINK_LEN = SLOT["icmp_id"], SLOT["icmp_seq"], SLOT["link_len"]
U4_ENCAPS, U4_IP6_FLOW, U4_IP_ID, U4_IP_LEN = SLOT["encaps"], SLOT["ip6_flow"], SLOT["ip_id"], SLOT["ip_len"]
U4_SEQ, U4_ACK, U4_TCP_OPTS = SLOT["tcp_seq"], SLOT["tcp_ack"], SLOT["tcp_opts"]
U4_TSVAL, U4_TSECR, U4_ICMP_REST = SLOT["tcp_tsval"], SLOT["tcp_tsecr"], SLOT["icmp_rest"]
U8_DST_MAC, U8_SRC_MAC = SLOT["dst_mac"], SLOT["src_mac"]
U8_SRC_HI, U8_SRC_LO, U8_DST_HI, U8_DST_LO = SLOT["src_hi"], SLOT["src_lo"], SLOT["dst_hi"], SLOT["dst_lo"]
I4_L3, I4_L4, I4_POFF = SLOT["l3_off"], SLOT["l4_off"], SLOT["payload_off"]
I4_PLEN, I4_PCAPLEN, I4_DNS = SLOT["payload_len"], SLOT["payload_caplen"], SLOT["dns_id"]

# header field offsets, from the tables
ETH_DST, ETH_SRC, ETH_TYPE = h.ETHERNET.at("dst"), h.ETHERNET.at("src"), h.ETHERNET.at("type")
VLAN_TCI, VLAN_TYPE = h.VLAN.at("tci"), h.VLAN.at("type")
IP4_TOS, IP4_LEN, IP4_ID = h.IPV4.at("tos"), h.IPV4.at("total_len"), h.IPV4.at("id")
IP4_FRAG, IP4_TTL, IP4_PROTO = h.IPV4.at("frag"), h.IPV4.at("ttl"), h.IPV4.at("proto")
IP4_SRC, IP4_DST = h.IPV4.at("src"), h.IPV4.at("dst")
IP6_PLEN, IP6_NEXT, IP6_HLIM = h.IPV6.at("payload_len"), h.IPV6.at("next"), h.IPV6.at("hlim")
IP6_SRC, IP6_DST = h.IPV6.at("src_hi"), h.IPV6.at("dst_hi")
TCP_SEQ, TCP_ACK, TCP_OFF, TCP_WIN = h.TCP.at("seq"), h.TCP.at("ack"), h.TCP.at("doff"), h.TCP.at("win")
UDP_LEN = h.UDP.at("length")
ICMP_ID, ICMP_SEQ, ICMP_REST = h.ICMP.at("id"), h.ICMP.at("seq"), h.ICMP.at("rest")

SLL_HATYPE, SLL_HALEN = h.LINUX_SLL.at("hatype"), h.LINUX_SLL.at("halen")
SLL_ADDR, SLL_PROTO = h.LINUX_SLL.at("addr"), h.LINUX_SLL.at("proto")
SLL2_HATYPE, SLL2_HALEN = h.LINUX_SLL2.at("hatype"), h.LINUX_SLL2.at("halen")
SLL2_ADDR, SLL2_PROTO = h.LINUX_SLL2.at("addr"), h.LINUX_SLL2.at("proto")

ENC_ETHER, ENC_8021Q, ENC_SLL = c.ENC_ETHER, c.ENC_8021Q, c.ENC_SLL


def _prefetch(arr: np.ndarray, idx: int) -> None:
    """A hint to the CPU; compiled, it becomes llvm.prefetch (see _compile)."""


def _be(buf: np.ndarray, p: int, n: int) -> int:
    v = 0
    for k in range(n):
        v = (v << 8) | int(buf[p + k])
    return v


def _tables() -> tuple[np.ndarray, ...]:
    """Lookup tables shared with the reference decoder, in _fast's argument order."""
    from argusflow.decode.network import IPV6_EXT
    from argusflow.decode.transport import ICMP6_ECHO, ICMP6_ERROR, ICMP_ECHO_LIKE, ICMP_ERROR

    return IPV6_EXT, TCPOPT_TABLE, ICMP_ECHO_LIKE, ICMP_ERROR, ICMP6_ECHO, ICMP6_ERROR


def _fast(
    buf: np.ndarray,
    start: np.ndarray,
    caplen: np.ndarray,
    linktype: np.ndarray,
    u1: np.ndarray,
    u2: np.ndarray,
    u4: np.ndarray,
    u8: np.ndarray,
    i4: np.ndarray,
    ext6: np.ndarray,
    tcpopt: np.ndarray,
    echo4: np.ndarray,
    err4: np.ndarray,
    echo6: np.ndarray,
    err6: np.ndarray,
    slow: np.ndarray,
    lo: int,
    hi: int,
) -> None:
    n = hi
    for i in range(lo, hi):
        if i + PREFETCH_AHEAD < n:
            ahead = start[i + PREFETCH_AHEAD]
            _prefetch(buf, ahead)
            _prefetch(buf, min(ahead + 64, buf.shape[0] - 1))
        p = start[i]
        cl = caplen[i]
        lt = linktype[i]
        if lt == 1:  # Ethernet
            if cl < 14:
                slow[i] = True
                continue
            u8[U8_DST_MAC, i] = _be(buf, p + ETH_DST, 6)
            u8[U8_SRC_MAC, i] = _be(buf, p + ETH_SRC, 6)
            etype = _be(buf, p + ETH_TYPE, 2)
            off = 14
            encaps = ENC_ETHER
        elif lt == 113 or lt == 276:  # Linux cooked v1 / v2
            hdr = 16 if lt == 113 else 20
            if cl < hdr:
                slow[i] = True
                continue
            if lt == 113:
                etype = _be(buf, p + SLL_PROTO, 2)
                hatype = _be(buf, p + SLL_HATYPE, 2)
                if _be(buf, p + SLL_HALEN, 2) == 6:
                    u8[U8_SRC_MAC, i] = _be(buf, p + SLL_ADDR, 6)
            else:
                etype = _be(buf, p + SLL2_PROTO, 2)
                hatype = _be(buf, p + SLL2_HATYPE, 2)
                if int(buf[p + SLL2_HALEN]) == 6:
                    u8[U8_SRC_MAC, i] = _be(buf, p + SLL2_ADDR, 6)
            if hatype == 824:  # netlink
                slow[i] = True
                continue
            off = hdr
            u2[U2_LINK_LEN, i] = hdr
            encaps = ENC_SLL
        elif lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229:  # raw IP
            version = (int(buf[p]) >> 4) if cl >= 1 else 0
            if lt == 228:
                version = 4
            elif lt == 229:
                version = 6
            if version != 4 and version != 6:
                slow[i] = True
                continue
            etype = 0x0800 if version == 4 else 0x86DD
            off = 0
            encaps = 0
        else:
            slow[i] = True
            continue
        nv = 0
        while etype == 0x8100 or etype == 0x9100:  # not 0x88a8: see cursor.ET_VLAN
            if off + 4 > cl or nv >= 15:
                nv = -1
                break
            tci = _be(buf, p + off + VLAN_TCI, 2)
            if nv == 0:
                u2[U2_VLAN_OUTER, i] = tci
            elif nv == 1:
                u2[U2_VLAN_INNER, i] = tci
            nv += 1
            encaps |= ENC_8021Q
            etype = _be(buf, p + off + VLAN_TYPE, 2)
            off += 4
        if nv < 0 or etype < 0x0600 or etype == 0x8847 or etype == 0x8848 or etype == 0x8864:
            slow[i] = True
            continue
        if etype == 0x0806 or etype == 0x8035:
            slow[i] = True
            continue
        u1[U1_VLAN_COUNT, i] = nv
        u4[U4_ENCAPS, i] = encaps
        u2[U2_ETHERTYPE, i] = etype
        if etype != 0x0800 and etype != 0x86DD:
            continue  # another protocol: nothing more to decode, status OK
        avail = cl - off
        q = p + off
        if etype == 0x0800:
            if avail < 20 or int(buf[q]) != 0x45:  # version 4, no options
                slow[i] = True
                continue
            total = _be(buf, q + IP4_LEN, 2)
            if total < 20:
                slow[i] = True
                continue
            frag = _be(buf, q + IP4_FRAG, 2)
            proto = int(buf[q + IP4_PROTO])
            u1[U1_IP_VERSION, i] = 4
            u1[U1_TOS, i] = buf[q + IP4_TOS]
            u1[U1_TTL, i] = buf[q + IP4_TTL]
            u1[U1_PROTO, i] = proto
            u4[U4_IP_ID, i] = _be(buf, q + IP4_ID, 2)
            u4[U4_IP_LEN, i] = total
            u8[U8_SRC_LO, i] = _be(buf, q + IP4_SRC, 4)
            u8[U8_DST_LO, i] = _be(buf, q + IP4_DST, 4)
            fo = frag & 0x1FFF
            u2[U2_FRAG_OFFSET, i] = fo * 8
            u1[U1_FRAG_FLAGS, i] = ((frag >> 13) & 1) | (((frag >> 14) & 1) << 1)
            l4 = off + 20
            ip_end = off + total
        else:
            if avail < 40 or (int(buf[q]) >> 4) != 6:
                slow[i] = True
                continue
            proto = int(buf[q + IP6_NEXT])
            if ext6[proto]:
                slow[i] = True
                continue
            w0 = _be(buf, q, 4)
            plen = _be(buf, q + IP6_PLEN, 2)
            u1[U1_IP_VERSION, i] = 6
            u4[U4_IP6_FLOW, i] = w0
            u1[U1_TOS, i] = (w0 >> 20) & 0xFF
            u1[U1_TTL, i] = buf[q + IP6_HLIM]
            u1[U1_PROTO, i] = proto
            u4[U4_IP_LEN, i] = 40 + plen
            u8[U8_SRC_HI, i] = _be(buf, q + IP6_SRC, 8)
            u8[U8_SRC_LO, i] = _be(buf, q + IP6_SRC + 8, 8)
            u8[U8_DST_HI, i] = _be(buf, q + IP6_DST, 8)
            u8[U8_DST_LO, i] = _be(buf, q + IP6_DST + 8, 8)
            fo = 0
            l4 = off + 40
            ip_end = off + 40 + plen
        i4[I4_L3, i] = off
        i4[I4_L4, i] = l4
        if fo != 0:
            continue  # a later fragment: no transport header
        a4 = cl - l4
        r = p + l4
        poff = l4
        if proto == 6:
            if a4 < 20:
                slow[i] = True
                continue
            hl = (int(buf[r + TCP_OFF]) >> 4) * 4
            if hl < 20 or hl > a4:
                slow[i] = True
                continue
            u2[U2_SPORT, i] = _be(buf, r, 2)
            u2[U2_DPORT, i] = _be(buf, r + 2, 2)
            u4[U4_SEQ, i] = _be(buf, r + TCP_SEQ, 4)
            u4[U4_ACK, i] = _be(buf, r + TCP_ACK, 4)
            u2[U2_TCP_FLAGS, i] = _be(buf, r + TCP_OFF, 2) & 0x1FF
            u2[U2_TCP_WIN, i] = _be(buf, r + TCP_WIN, 2)
            if hl > 20:
                bits, mss, wscale, tsval, tsecr = tcp_option_walk(buf, r + 20, r + hl, tcpopt)
                u4[U4_TCP_OPTS, i] = bits
                u2[U2_TCP_MSS, i] = mss
                u1[U1_WSCALE, i] = wscale
                u4[U4_TSVAL, i] = tsval
                u4[U4_TSECR, i] = tsecr
            poff = l4 + hl
        elif proto == 17 or proto == 136:
            if a4 < 8:
                slow[i] = True
                continue
            sport = _be(buf, r, 2)
            dport = _be(buf, r + 2, 2)
            u2[U2_SPORT, i] = sport
            u2[U2_DPORT, i] = dport
            poff = l4 + 8
            if (sport == 53 or dport == 53) and a4 >= 10:
                if _be(buf, r + UDP_LEN, 2) >= 10 and ip_end - l4 >= 10:
                    i4[I4_DNS, i] = _be(buf, r + 8, 2)
        elif proto == 1 or proto == 58:
            typ = int(buf[r]) if a4 >= 1 else 0
            err = err4[typ] if proto == 1 else err6[typ]
            if a4 < 8 or err:
                slow[i] = True
                continue
            u1[U1_ICMP_TYPE, i] = typ
            u1[U1_ICMP_CODE, i] = buf[r + 1]
            u4[U4_ICMP_REST, i] = _be(buf, r + ICMP_REST, 4)
            if echo4[typ] if proto == 1 else echo6[typ]:
                u2[U2_ICMP_ID, i] = _be(buf, r + ICMP_ID, 2)
                u2[U2_ICMP_SEQ, i] = _be(buf, r + ICMP_SEQ, 2)
            poff = l4 + 8
        elif proto == 2:
            if a4 >= 8:  # type, code, group address (see transport.igmp)
                u1[U1_ICMP_TYPE, i] = buf[r]
                u1[U1_ICMP_CODE, i] = buf[r + 1]
                u4[U4_ICMP_REST, i] = _be(buf, r + ICMP_REST, 4)
        elif proto == 132 or proto == 33 or proto == 50 or proto == 4 or proto == 41 or proto == 47:
            slow[i] = True
            continue
        i4[I4_POFF, i] = poff
        i4[I4_PLEN, i] = max(ip_end - poff, 0)
        i4[I4_PCAPLEN, i] = max(min(ip_end, cl) - poff, 0)


def _bind_prefetch() -> None:
    """Before numba compiles the loop: _prefetch becomes the llvm.prefetch intrinsic."""
    globals()["_prefetch"] = _prefetch_intrinsic()


FAST = jit.Kernel(_fast, deps=("_be", "tcp_option_walk"), aot="fast_decode", prepare=_bind_prefetch)
_TABLES = _tables()


def _compiled_fast() -> Any:
    """The compiled fast path (precompiled, or numba's with the llvm.prefetch intrinsic).

    numba's on-disk cache is keyed on this file only, but the loop bakes in constants from
    columns.py and headers.py (column rows, field offsets).  So the first use of numba's
    compiles compares the compiled loop with its Python source on a few packets, and recompiles
    on any difference (argusflow.aot's digest covers all of decode/ already)."""
    global _checked
    kernel = FAST.jit()
    if not _checked:
        if kernel is FAST._numba and not _agrees(kernel):
            kernel.recompile()
        _checked = True
    return kernel


_checked = False


def _probe_packets() -> tuple[np.ndarray, ...]:
    """Packets that take every branch of the fast path that writes a column."""
    ip4 = bytes.fromhex("4500003c1c4640004006b1e6c0a80001c0a800c7")
    tcp = bytes.fromhex("d43100501234567800000000a0027210fe300000020405b40402080a000000010000000001030307")
    udp = bytes.fromhex("e1f1003500120000abcd01000001000000")
    ip6 = bytes.fromhex("6bc123450012113f20010db8000000000000000000000001ff020000000000000000000000000002")
    icmp = bytes.fromhex("08000000000700090000")
    frag = bytes.fromhex("4500001c1c4600b94011b1e6c0a80001c0a800c7") + bytes(8)
    frames = [
        bytes(6) + bytes(range(6)) + b"\x81\x00\x20\x05\x08\x00" + ip4 + tcp,
        bytes(range(12)) + b"\x86\xdd" + ip6 + udp,
        bytes.fromhex("00000001000600112233445500000800")
        + ip4[:2]
        + b"\x00\x1e"
        + ip4[4:9]
        + b"\x01"
        + ip4[10:]
        + icmp,
        bytes(12) + b"\x88\xcc" + bytes(10),
        frag,
    ]
    links = [1, 1, 113, 1, 101]
    data = np.frombuffer(b"".join(frames), dtype=np.uint8)
    start = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.int64)
    caplen = np.array([len(f) for f in frames], dtype=np.int64)
    return data, start, caplen, np.array(links, dtype=np.uint16)


def _agrees(kernel: Any) -> bool:
    data, start, caplen, links = _probe_packets()
    results = []
    for fn in (kernel, FAST.py):
        groups = DecodedBatch.empty_groups(len(start))
        slow = np.zeros(len(start), dtype=np.bool_)
        fn(data, start, caplen, links, *(groups[k] for k in GROUP_ORDER), *_TABLES, slow, 0, len(start))
        results.append((groups, slow))
    (a, sa), (b, sb) = results
    return bool((sa == sb).all()) and all(np.array_equal(a[k], b[k]) for k in GROUP_ORDER)


def _prefetch_intrinsic() -> object:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
        """Ask the CPU to start loading arr[idx]: the per-packet work is too branchy for
        out-of-order execution to reach the next packets' cold cache lines by itself."""

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            i8p = ir.IntType(8).as_pointer()
            ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(arr, idx), codegen

    return prefetch


def fast_decode(
    data: np.ndarray,
    start: np.ndarray,
    caplen: np.ndarray,
    linktype: np.ndarray,
    groups: dict[str, np.ndarray],
    slow: np.ndarray | None = None,
    lo: int = 0,
    hi: int | None = None,
    compiled: bool = True,
) -> np.ndarray:
    """Decode packets lo..hi (default: all) of what the fast path covers into `groups`
    (DecodedBatch storage); sets and returns `slow`, the mask of packets left for the
    reference decoder.  `start`/`caplen` are int64, `linktype` uint16, all C-contiguous.
    `compiled=False` runs the same loop as plain Python (slow; for tests)."""
    if slow is None:
        slow = np.zeros(len(start), dtype=np.bool_)
    kernel = _compiled_fast() if compiled else FAST.py
    kernel(
        data,
        start,
        caplen,
        linktype,
        *(groups[k] for k in GROUP_ORDER),
        *_TABLES,
        slow,
        lo,
        len(start) if hi is None else hi,
    )
    return slow
