"""Packet decoding: hand-made packets for every layer, truncation, and the corpus."""

from __future__ import annotations

import ipaddress
import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from argusflow.capture import jit, open_capture
from argusflow.capture.batch import PacketBatch
from argusflow.decode import DecodedBatch, Reason, Status, decode_batch, fields, finish_slow, reference_decode
from argusflow.decode import codes as c
from argusflow.decode.fastpath import fast_decode

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
CAPTURES = sorted(p for p in CORPUS.glob("*") if p.name not in ("MANIFEST.tsv", "README.md"))
needs_corpus = pytest.mark.skipif(not CAPTURES, reason=f"no corpus at {CORPUS}")

MAC_A = bytes.fromhex("0200000000aa")
MAC_B = bytes.fromhex("0200000000bb")
IP_A = bytes([10, 0, 0, 1])
IP_B = bytes([192, 0, 2, 7])
IP6_A = bytes.fromhex("20010db8000000000000000000000001")
IP6_B = bytes.fromhex("20010db8000000000000000000000002")


# ---------------------------------------------------------------- packet builders


def ether(payload: bytes, etype: int = 0x0800, dst: bytes = MAC_B, src: bytes = MAC_A) -> bytes:
    return dst + src + struct.pack(">H", etype) + payload


def ipv4(
    payload: bytes, proto: int, options: bytes = b"", frag: int = 0, ttl: int = 64, tos: int = 0
) -> bytes:
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(payload)
    hdr = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, tos, total, 0x1234, frag, ttl, proto, 0, IP_A, IP_B)
    return hdr + options + payload


def ipv6(payload: bytes, nh: int, hlim: int = 33) -> bytes:
    return (
        struct.pack(">IHBB", 0x60000000 | (0xB8 << 20) | 0x12345, len(payload), nh, hlim)
        + IP6_A
        + IP6_B
        + payload
    )


def tcp(
    sport: int = 1234, dport: int = 80, flags: int = 0x02, options: bytes = b"", data: bytes = b""
) -> bytes:
    doff = 5 + len(options) // 4
    hdr = struct.pack(">HHIIBBHHH", sport, dport, 1000, 2000, doff << 4, flags, 65535, 0, 0)
    return hdr + options + data


def udp(sport: int, dport: int, data: bytes = b"") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data


def icmp(typ: int, code: int, rest: bytes = b"\0\0\0\0", data: bytes = b"") -> bytes:
    return struct.pack(">BBH", typ, code, 0) + rest + data


def decode(packets: list[bytes], linktype: int = 1) -> DecodedBatch:
    return decode_batch(PacketBatch.from_packets(packets, linktype))


def u64(b: bytes) -> int:
    return int.from_bytes(b, "big")


# ---------------------------------------------------------------- Ethernet / IPv4 / TCP


TCP_OPTS = (
    bytes([2, 4, 0x05, 0xB4, 1, 3, 3, 7, 4, 2, 8, 10])
    + struct.pack(">II", 111, 222)
    + bytes([1, 1, 5, 10])
    + struct.pack(">II", 5, 6)
)


def test_ethernet_ipv4_tcp_with_options(compiled: bool) -> None:
    frame = ether(ipv4(tcp(options=TCP_OPTS, data=b"hello"), 6, tos=0x10))
    d = decode([frame])
    assert d.status[0] == Status.OK
    assert d.encaps[0] == c.ENC_ETHER
    assert d.dst_mac[0] == u64(MAC_B) and d.src_mac[0] == u64(MAC_A)
    assert (d.ethertype[0], d.ip_version[0], d.proto[0], d.ttl[0], d.tos[0]) == (0x0800, 4, 6, 64, 0x10)
    assert d.src_lo[0] == u64(IP_A) and d.dst_lo[0] == u64(IP_B) and d.src_hi[0] == 0
    assert (d.sport[0], d.dport[0], d.tcp_seq[0], d.tcp_ack[0], d.tcp_win[0]) == (1234, 80, 1000, 2000, 65535)
    assert d.tcp_flags[0] == c.TH_SYN
    bits = c.TCPOPT_MSS | c.TCPOPT_WSCALE | c.TCPOPT_SACK_OK | c.TCPOPT_TIMESTAMP | c.TCPOPT_SACK
    assert d.tcp_opts[0] == bits
    assert (d.tcp_mss[0], d.tcp_wscale[0], d.tcp_tsval[0], d.tcp_tsecr[0]) == (1460, 7, 111, 222)
    assert (d.l3_off[0], d.l4_off[0], d.payload_off[0]) == (14, 34, 34 + 20 + len(TCP_OPTS))
    assert d.payload_len[0] == 5 and d.payload_caplen[0] == 5
    assert d.ip_len[0] == 20 + 20 + len(TCP_OPTS) + 5 and d.ip_id[0] == 0x1234


def test_ipv4_options_and_fragments(compiled: bool) -> None:
    rr = bytes([7, 7, 4]) + b"\0\0\0\0"  # record route, 7 bytes
    ra = bytes([148, 4, 0, 0])  # router alert
    opts = rr + bytes([1]) + ra  # 12 bytes
    d = decode(
        [
            ether(ipv4(udp(5, 6), 17, options=opts)),
            ether(ipv4(udp(5, 6, b"x" * 20), 17, frag=0x2000)),  # first fragment, MF
            ether(ipv4(b"y" * 16, 17, frag=0x4000 | 3)),  # DF and offset 24 bytes
        ]
    )
    assert d.ip_opts[0] == 0x01 | 0x40 and d.l4_off[0] == 14 + 32 and d.sport[0] == 5
    assert (d.frag_flags[1], d.frag_offset[1], d.sport[1]) == (1, 0, 5)
    assert (d.frag_flags[2], d.frag_offset[2], d.sport[2], d.payload_len[2]) == (2, 24, 0, 0)
    assert (d.status == Status.OK).all()


def test_udp_dns_id_and_other_ports(compiled: bool) -> None:
    dns = struct.pack(">HH", 0xBEEF, 0x0100) + b"\0" * 8
    d = decode(
        [
            ether(ipv4(udp(33333, 53, dns), 17)),
            ether(ipv4(udp(53, 4444, b"\x01"), 17)),
            ether(ipv4(udp(1, 2, dns), 17)),
        ]
    )
    assert d.dns_id.tolist() == [0xBEEF, -1, -1]
    assert d.payload_len.tolist() == [12, 1, 12]


def test_icmp_echo_and_error_quote(compiled: bool) -> None:
    echo = icmp(8, 0, struct.pack(">HH", 77, 3))
    quoted = ipv4(udp(40000, 33434, b"abcd"), 17)[:28]
    unreach = icmp(3, 3, data=quoted)
    d = decode([ether(ipv4(echo, 1)), ether(ipv4(unreach, 1))])
    assert (d.icmp_type[0], d.icmp_id[0], d.icmp_seq[0], d.q_ip_version[0]) == (8, 77, 3, 0)
    assert (d.icmp_type[1], d.icmp_code[1], d.icmp_id[1]) == (3, 3, 0)
    assert (d.icmp_rest[0], d.icmp_rest[1]) == ((77 << 16) | 3, 0)
    assert (d.q_ip_version[1], d.q_proto[1], d.q_sport[1], d.q_dport[1]) == (4, 17, 40000, 33434)
    assert d.q_src_lo[1] == u64(IP_A) and d.q_dst_lo[1] == u64(IP_B)
    assert d.q_dns_id[1] == -1  # not DNS


def test_icmp_error_quoting_dns_keeps_its_id(compiled: bool) -> None:
    long_quote = icmp(3, 3, data=ipv4(udp(40000, 53, b"\xbd\xaa\x01\x00"), 17))
    short_quote = icmp(3, 3, data=ipv4(udp(40000, 53, b"\xbd\xaa"), 17)[:28])
    d = decode([ether(ipv4(long_quote, 1)), ether(ipv4(short_quote, 1))])
    assert d.q_dns_id.tolist() == [0xBDAA, -1]


def test_sctp_esp(compiled: bool) -> None:
    sctp = struct.pack(">HHII", 2905, 2906, 1, 0)
    esp = struct.pack(">II", 0xCAFE, 1) + b"z" * 8
    d = decode([ether(ipv4(sctp, 132)), ether(ipv4(esp, 50))])
    assert (d.sport[0], d.dport[0], d.payload_off[0]) == (2905, 2906, 34 + 12)
    assert (d.esp_spi[1], d.esp_seq[1]) == (0xCAFE, 1)


def test_gre_decapsulation(compiled: bool) -> None:
    inner = ipv6(udp(7, 53, b"\x55\x66" + b"\0" * 10), 17)
    keyed = struct.pack(">HHII", 0x3000, 0x86DD, 42, 1) + inner  # key and sequence present
    bridged = struct.pack(">HH", 0, 0x6558) + ether(ipv4(tcp(dport=22), 6), dst=MAC_A, src=MAC_A)
    # PPTP: enhanced GRE (version 1) with sequence and ack numbers, carrying PPP
    pptp = struct.pack(">HHHHII", 0x3081, 0x880B, 30, 6, 9, 8) + b"\xff\x03\x00\x21" + ipv4(tcp(), 6)
    lcp = struct.pack(">HHHHI", 0x3001, 0x880B, 8, 6, 9) + b"\xff\x03\xc0\x21" + b"\x01" * 8
    d = decode([ether(ipv4(g, 47)) for g in (keyed, bridged, pptp, lcp)])
    assert d.proto.tolist() == [17, 6, 6, 47]
    assert (d.ip_version[0], d.dns_id[0], d.sport[0], d.dst_lo[0]) == (6, 0x5566, 7, u64(IP6_B[8:]))
    assert d.l3_off[0] == 14 + 20 + 12 and d.l4_off[0] == 14 + 20 + 12 + 40
    gre = c.ENC_ETHER | c.ENC_GRE
    assert d.encaps.tolist() == [gre, gre, gre | c.ENC_PPP, c.ENC_ETHER]
    assert d.dst_mac[1] == u64(MAC_B) and d.dport[1] == 22 and d.dport[2] == 80
    assert (d.status == Status.OK).all()


# ---------------------------------------------------------------- IPv6


def test_ipv6_extension_chain_and_fragment(compiled: bool) -> None:
    hbh = bytes([60, 0]) + b"\x01\x04\0\0\0\0"  # hop-by-hop -> dest opts, 8 bytes
    dst = bytes([44, 0]) + b"\x01\x04\0\0\0\0"  # dest opts -> fragment
    frag = struct.pack(">BBHI", 17, 0, (0 << 3) | 1, 0xABCDEF01)  # offset 0, M
    d = decode([ether(ipv6(hbh + dst + frag + udp(546, 547, b"q"), 0), 0x86DD)])
    assert d.status[0] == Status.OK
    assert (d.ip_version[0], d.proto[0], d.ttl[0], d.tos[0]) == (6, 17, 33, 0xB8)
    assert d.src_hi[0] == u64(IP6_A[:8]) and d.src_lo[0] == u64(IP6_A[8:]) and d.dst_lo[0] == u64(IP6_B[8:])
    assert (d.frag_flags[0], d.frag_offset[0], d.ip_id[0]) == (5, 0, 0xABCDEF01)
    assert (d.l4_off[0], d.sport[0], d.dport[0], d.payload_len[0]) == (14 + 40 + 24, 546, 547, 1)
    later = struct.pack(">BBHI", 17, 0, (100 << 3), 9)
    d = decode([ether(ipv6(later + b"r" * 8, 44), 0x86DD)])
    assert (d.frag_offset[0], d.frag_flags[0], d.sport[0]) == (800, 4, 0)


def test_icmpv6_echo_and_error(compiled: bool) -> None:
    echo = icmp(128, 0, struct.pack(">HH", 9, 10))
    err = icmp(1, 4, data=ipv6(udp(1000, 2000), 17)[:48])
    d = decode([ether(ipv6(echo, 58), 0x86DD), ether(ipv6(err, 58), 0x86DD)])
    assert (d.icmp_type[0], d.icmp_id[0], d.icmp_seq[0]) == (128, 9, 10)
    assert (d.q_ip_version[1], d.q_proto[1], d.q_sport[1], d.q_dport[1]) == (6, 17, 1000, 2000)
    assert d.q_dst_lo[1] == u64(IP6_B[8:])


# ---------------------------------------------------------------- tags


def test_vlan_qinq_mpls_pppoe_llc(compiled: bool) -> None:
    inner = ipv4(tcp(), 6)
    qinq = ether(struct.pack(">HH", 0x2064, 0x8100) + struct.pack(">HH", 0x0005, 0x0800) + inner, 0x8100)
    mpls = ether(struct.pack(">II", (1001 << 12) | 64, (2002 << 12) | 0x100 | 63) + inner, 0x8847)
    pppoe = ether(struct.pack(">BBHHH", 0x11, 0, 1, len(inner) + 2, 0x0021) + inner, 0x8864)
    snap = bytes([0xAA, 0xAA, 3, 0, 0, 0, 0x08, 0x00]) + inner
    llc = ether(snap, len(snap))
    stp = ether(bytes([0x42, 0x42, 3]) + b"\0" * 35, 38)
    d = decode([qinq, mpls, pppoe, llc, stp])
    assert (d.vlan_count[0], d.vlan_outer[0], d.vlan_inner[0]) == (2, 0x2064, 5)
    assert d.encaps[0] == c.ENC_ETHER | c.ENC_8021Q
    assert (d.mpls_count[1], d.mpls_top[1] >> 12, d.mpls_bottom[1] >> 12) == (2, 1001, 2002)
    assert d.encaps[1] == c.ENC_ETHER | c.ENC_MPLS
    assert d.encaps[2] == c.ENC_ETHER | c.ENC_PPP
    assert d.encaps[3] == c.ENC_ETHER | c.ENC_LLC and d.llc_dsap[3] == 0xAA
    assert (d.proto[:4] == 6).all() and (d.dport[:4] == 80).all() and (d.status[:4] == Status.OK).all()
    assert (d.ip_version[4], d.ethertype[4], d.llc_dsap[4], d.status[4]) == (0, 0, 0x42, Status.OK)


def test_8021ad_service_tag_is_not_looked_into(compiled: bool) -> None:
    # argus 3.0.8 makes a non-IP flow of ether type 0x88a8 (corpus: tcpdump__802.1ad_QinQ)
    frame = ether(struct.pack(">HH", 0x2064, 0x0800) + ipv4(tcp(), 6), 0x88A8)
    d = decode([frame])
    assert (d.vlan_count[0], d.ethertype[0], d.ip_version[0]) == (0, 0x88A8, 0)


def test_arp(compiled: bool) -> None:
    body = struct.pack(">HHBBH", 1, 0x0800, 6, 4, 2) + MAC_A + IP_A + MAC_B + IP_B
    d = decode(
        [
            ether(body, 0x0806),
            ether(body[:20], 0x0806),
            ether(struct.pack(">HHBBH", 1, 0x0800, 6, 6, 1), 0x0806),
        ]
    )
    assert (d.arp_op[0], d.arp_sha[0], d.arp_tha[0]) == (2, u64(MAC_A), u64(MAC_B))
    assert (d.src_lo[0], d.dst_lo[0], d.ip_version[0]) == (u64(IP_A), u64(IP_B), 0)
    assert (d.status[1], d.reason[1]) == (Status.TRUNCATED, Reason.ARP_TRUNCATED)
    assert (d.status[2], d.reason[2]) == (Status.MALFORMED, Reason.ARP_UNSUPPORTED)


# ---------------------------------------------------------------- link types

IP_PACKET = ipv4(udp(1111, 53, b"\x12\x34" + b"\0" * 10), 17)
IP6_PACKET = ipv6(udp(1111, 53, b"\x12\x34" + b"\0" * 10), 17)


def radiotap(ds: int, qos: bool) -> bytes:
    rt = struct.pack("<BBHI", 0, 0, 8, 0)
    fc = bytes([0x08 | (0x80 if qos else 0), ds])
    addrs = MAC_B + MAC_A + bytes(6)  # a1 a2 a3
    hdr = fc + b"\0\0" + addrs + b"\0\0" + (bytes(6) if ds == 3 else b"") + (b"\0\0" if qos else b"")
    return rt + hdr + bytes([0xAA, 0xAA, 3, 0, 0, 0, 0x08, 0x00]) + IP_PACKET


def nflog() -> bytes:
    prefix = struct.pack("<HH", 8, 10) + b"abcd"  # NFULA_PREFIX
    payload = struct.pack("<HH", 4 + len(IP_PACKET), 9) + IP_PACKET
    return bytes([2, 0, 0, 1]) + prefix + payload + b"\0" * (-len(payload) % 4)


LINK_CASES = {
    "sll": (
        113,
        struct.pack(">HHH", 0, 1, 6) + MAC_A + b"\0\0" + struct.pack(">H", 0x0800) + IP_PACKET,
        c.ENC_SLL,
    ),
    "sll2": (276, struct.pack(">HHIHBB", 0x0800, 0, 3, 1, 0, 6) + MAC_A + b"\0\0" + IP_PACKET, c.ENC_SLL),
    "null_le": (0, struct.pack("<I", 2) + IP_PACKET, 0),
    "null_be": (0, struct.pack(">I", 2) + IP_PACKET, 0),
    "loop": (108, struct.pack(">I", 2) + IP_PACKET, 0),
    "raw": (101, IP_PACKET, 0),
    "raw12": (12, IP_PACKET, 0),
    "ipv4": (228, IP_PACKET, 0),
    "ppp": (9, b"\xff\x03\x00\x21" + IP_PACKET, c.ENC_PPP),
    "ppp_nohdlc": (9, b"\x00\x21" + IP_PACKET, c.ENC_PPP),
    "chdlc": (104, b"\x0f\x00\x08\x00" + IP_PACKET, c.ENC_CHDLC),
    "fddi": (
        10,
        b"\x50" + MAC_B + MAC_A + bytes([0xAA, 0xAA, 3, 0, 0, 0, 8, 0]) + IP_PACKET,
        c.ENC_FDDI | c.ENC_LLC,
    ),
    "radiotap": (127, radiotap(1, False), c.ENC_80211 | c.ENC_LLC),
    "radiotap_qos_wds": (127, radiotap(3, True), c.ENC_80211 | c.ENC_LLC),
    "nflog": (239, nflog(), 0),
}


@pytest.mark.parametrize("name", sorted(LINK_CASES))
def test_link_types(name: str, compiled: bool) -> None:
    link, frame, encaps = LINK_CASES[name]
    d = decode([frame], link)
    assert (d.status[0], d.ip_version[0], d.proto[0], d.sport[0], d.dport[0]) == (Status.OK, 4, 17, 1111, 53)
    assert d.dns_id[0] == 0x1234 and d.encaps[0] == encaps
    assert d.src_lo[0] == u64(IP_A)


def test_link_types_ipv6_and_mixed_batch(compiled: bool) -> None:
    batch = PacketBatch.from_packets([IP6_PACKET, ether(IP_PACKET), IP6_PACKET], 229)
    lt = np.array([229, 1, 101], dtype=np.uint16)
    batch = PacketBatch(batch.ts_us, batch.caplen, batch.wirelen, lt, batch.ifindex, batch.offset, batch.data)
    d = decode_batch(batch)
    assert d.ip_version.tolist() == [6, 4, 6] and (d.dport == 53).all()
    d = decode([b"\0" * 40], 182)
    assert (d.status[0], d.reason[0]) == (Status.MALFORMED, Reason.UNKNOWN_LINKTYPE)


# ---------------------------------------------------------------- damage


FULL_FRAMES = [
    ether(ipv4(tcp(options=TCP_OPTS), 6, options=bytes([148, 4, 0, 0]))),
    ether(ipv6(bytes([44, 0]) + b"\x01\x04\0\0\0\0" + udp(1, 53, b"\1\2"), 0), 0x86DD),
    ether(ipv4(icmp(3, 1, data=ipv4(tcp(), 6)[:28]), 1)),
    ether(struct.pack(">HH", 1, 0x8847) + struct.pack(">I", (5 << 12) | 0x1FF) + ipv4(udp(1, 2), 17), 0x8100),
]


@pytest.mark.parametrize("frame", range(len(FULL_FRAMES)))
def test_every_prefix_decodes(frame: int, compiled: bool) -> None:
    """Each prefix of a packet: no exception, and status OK only when the needed headers are whole."""
    full = FULL_FRAMES[frame]
    prefixes = [full[:k] for k in range(len(full) + 1)]
    d = decode(prefixes)
    assert d.status[-1] == Status.OK
    assert set(d.status.tolist()) <= {Status.OK, Status.TRUNCATED}
    assert d.status[0] == Status.TRUNCATED and d.reason[0] == Reason.LINK_TRUNCATED
    ok = d.status == Status.OK
    assert (d.l4_off[ok][d.ip_version[ok] > 0] > 0).all()


def test_malformed_headers(compiled: bool) -> None:
    bad_ihl = bytearray(ether(ipv4(udp(1, 2), 17)))
    bad_ihl[14] = 0x43
    bad_len = bytearray(ether(ipv4(udp(1, 2), 17)))
    bad_len[16:18] = b"\x00\x08"
    bad_doff = bytearray(ether(ipv4(tcp(), 6)))
    bad_doff[14 + 20 + 12] = 0x20
    bad_ver = ether(ipv4(udp(1, 2), 17)).replace(b"\x45", b"\x55", 1)
    d = decode([bytes(bad_ihl), bytes(bad_len), bytes(bad_doff), bad_ver])
    assert d.reason.tolist() == [
        Reason.IP_BAD_HEADER_LENGTH,
        Reason.IP_BAD_TOTAL_LENGTH,
        Reason.TCP_BAD_OFFSET,
        Reason.IP_BAD_VERSION,
    ]
    assert (d.status == Status.MALFORMED).all()


def test_random_garbage_never_raises(compiled: bool) -> None:
    rng = random.Random(7)
    base = FULL_FRAMES + [frame for _, frame, _ in LINK_CASES.values()]
    for link in (1, 113, 276, 0, 101, 9, 104, 10, 127, 239, 229):
        packets = []
        for _ in range(300):
            p = bytearray(rng.choice(base))
            for _ in range(rng.randrange(1, 8)):
                p[rng.randrange(len(p))] = rng.randrange(256)
            packets.append(bytes(p[: rng.randrange(len(p) + 1)]))
        d = decode(packets, link)
        assert len(d) == 300
        assert (d.payload_off <= np.array([len(p) for p in packets]) + 65535).all()


@pytest.mark.skipif(not jit.AVAILABLE, reason="numba not installed")
def test_gather_fallback_matches_kernel() -> None:
    rng = np.random.default_rng(3)
    buf = rng.integers(0, 256, 5000, dtype=np.uint8)
    pos = rng.integers(0, 5000, 400)
    avail = rng.integers(-5, 60, 400)
    header = fields.Header(
        "t",
        24,
        (
            fields.Field("a", 0, 2),
            fields.Field("b", 3, 8),
            fields.Field("c", 9, 6, "<"),
            fields.Field("d", 20, 2, bits=(3, 9)),
        ),
    )
    pos = np.minimum(pos, 5000 - 24)
    out1 = np.empty((4, 400), dtype=np.int64)
    out2 = np.empty((4, 400), dtype=np.int64)
    fields._gather_numpy(buf, pos, avail, *header._plan, out1)
    fields.GATHER_LOOP.jit()(buf, pos, avail, *header._plan, out2)
    assert (out1 == out2).all()


# ---------------------------------------------------------------- corpus


@pytest.fixture(params=[False, True], ids=["python", "compiled"])
def compiled(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with numpy/plain-Python loops and again with numba's (when installed)."""
    if request.param and not jit.AVAILABLE:
        pytest.skip("numba not installed")
    monkeypatch.setattr(jit, "FORCE", request.param)
    return bool(request.param)


def decode_file(path: Path) -> tuple[list[PacketBatch], list[DecodedBatch]]:
    batches = list(open_capture(path))
    return batches, [decode_batch(b) for b in batches]


@needs_corpus
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_corpus_decodes(path: Path, compiled: bool) -> None:
    batches, decoded = decode_file(path)
    for b, d in zip(batches, decoded, strict=True):
        assert len(d) == len(b)
        ok = d.status == Status.OK
        assert (d.payload_off[ok] <= b.caplen[ok].astype(np.int64) + 65535).all()
        d.to_polars()


@needs_corpus
def test_corpus_specific_decodes() -> None:
    def one(name: str) -> DecodedBatch:
        (d,) = decode_file(CORPUS / name)[1]
        return d

    d = one("tcpdump__802.1ad_QinQ.pcap")
    # as argus 3.0.8: an 802.1ad service tag ends the decoding (a non-IP frame of that type)
    assert (d.vlan_count == 0).all() and (d.ethertype == 0x88A8).all()
    d = one("zeek__mixed-vlan-mpls.pcap")
    assert (d.mpls_count > 0).any() and (d.vlan_count > 0).any() and (d.proto == 6).all()
    d = one("zeek__nflog-http.pcap")
    assert (d.status == Status.OK).all() and set(d.dport.tolist()) | set(d.sport.tolist()) >= {80}
    d = one("zeek__linux_dlt_sll2.pcap")
    assert sorted(set(d.proto.tolist())) == [0, 1, 58]
    d = one("zeek__ipv6-fragmented-dns.pcap")
    assert ((d.frag_flags & 4) != 0).any()
    d = one("zeek__dns-inverse-query.pcap")  # FDDI + SNAP
    assert (d.encaps == c.ENC_FDDI | c.ENC_LLC).all() and (d.proto == 6).all()
    d = one("tcpdump__mpls-traceroute.pcap")  # MPLS over PPP
    assert (d.mpls_count > 0).sum() > 0 and (d.status == Status.OK).all()
    d = one("zeek__pppoe.pcap")
    session = d.ethertype != 0x8863  # discovery frames carry no PPP
    assert ((d.encaps[session] & c.ENC_PPP) != 0).all() and (d.ip_version == 6).sum() == 25
    d = one("zeek__trunc-ip4-trunc.pcap")
    assert (d.status[0], d.reason[0]) == (Status.TRUNCATED, Reason.IP_TRUNCATED)


# ---------------------------------------------------------------- fast path == reference path


def assert_same(a: DecodedBatch, b: DecodedBatch) -> None:
    for name, col in b.columns().items():
        other = a.columns()[name]
        bad = np.flatnonzero(other != col)
        assert len(bad) == 0, f"{name}: rows {bad[:5]}: fast {other[bad[:5]]} reference {col[bad[:5]]}"


@needs_corpus
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_fast_path_matches_reference_on_corpus(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled fast path + reference == plain-numpy reference (numba not used at all)."""
    if not jit.AVAILABLE:
        pytest.skip("numba not installed")
    for batch in open_capture(path):
        monkeypatch.setattr(jit, "FORCE", True)
        fast = decode_batch(batch)
        monkeypatch.setattr(jit, "FORCE", False)
        assert_same(fast, reference_decode(batch))


def test_fast_path_matches_reference_on_damaged_packets(compiled: bool) -> None:
    rng = random.Random(11)
    base = FULL_FRAMES + [
        ether(ipv4(udp(5353, 53, b"\xab\xcd" + b"\0" * 10), 17)),
        ether(ipv6(tcp(options=TCP_OPTS), 6), 0x86DD),
        ether(ipv4(icmp(0, 0, struct.pack(">HH", 1, 2)), 1)),
        ether(ipv6(icmp(129, 0, struct.pack(">HH", 1, 2)), 58), 0x86DD),
        ether(struct.pack(">HH", 7, 0x86DD) + ipv6(udp(1, 2), 17), 0x8100),
    ]
    packets = [bytes(b) for b in base]
    for _ in range(3000):
        p = bytearray(rng.choice(base))
        for _ in range(rng.randrange(0, 4)):
            p[rng.randrange(len(p))] = rng.randrange(256)
        packets.append(bytes(p[: rng.randrange(len(p) + 1)] if rng.random() < 0.3 else p))
    batch = PacketBatch.from_packets(packets, 1)
    assert_same(decode_batch(batch), reference_decode(batch))
    # the fast path's own loop as plain Python (what numba compiles) agrees too
    out = DecodedBatch(len(batch), batch.ts_us, batch.wirelen, batch.caplen)
    caplen = batch.caplen.astype(np.int64)
    slow = fast_decode(batch.data, batch.offset, caplen, batch.linktype, out.groups, compiled=False)
    finish_slow(batch, out, slow)
    assert_same(out, reference_decode(batch))


# ---------------------------------------------------------------- against tshark

TSHARK = shutil.which("tshark")
TSHARK_FIELDS = (
    "frame.number ip.src ip.dst ip.ttl ipv6.src ipv6.dst ipv6.hlim tcp.srcport tcp.dstport tcp.seq_raw "
    "tcp.flags udp.srcport udp.dstport vlan.id dns.id icmp.type icmpv6.type"
).split()
TSHARK_FILES = [
    "ndpi__ocs.pcap",
    "ndpi__KakaoTalk_chat.pcap",
    "ndpi__git.pcap",
    "ndpi__dns_fragmented.pcap",
    "ndpi__wechat.pcap",
    "ndpi__6in4tunnel.pcap",
    "tcpdump__quic_handshake.pcap",
    "tcpdump__LINKTYPE_IPV4.pcap",
    "tcpdump__LINKTYPE_IPV6.pcap",
    "tcpdump__HDLC.pcap",
    "tcpdump__mpls-traceroute.pcap",
    "tcpdump__802.1ad_QinQ.pcap",
    "zeek__linux_dlt_sll2.pcap",
    "zeek__nflog-http.pcap",
    "zeek__dns-inverse-query.pcap",
    "zeek__mixed-vlan-mpls.pcap",
    "zeek__http-qinq-0.pcap",
    "zeek__pppoe.pcap",
    "zeek__communityid-icmp.pcap",
    "zeek__communityid-icmp6.pcap",
    "zeek__ipv6-fragmented-dns.pcap",
    "zeek__pcapng-multi-interface.pcapng",
    "zeek__tunnels-gre-sample.pcap",
]


def tshark_rows(path: Path) -> list[dict[str, list[str]]]:
    args = [TSHARK or "tshark", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
    args += ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;"]
    for f in TSHARK_FIELDS:
        args += ["-e", f]
    text = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = []
    for line in text.splitlines():
        values = line.split("|")
        rows.append({f: (v.split(";") if v else []) for f, v in zip(TSHARK_FIELDS, values, strict=True)})
    return rows


def ipv4_text(v: int) -> str:
    return ".".join(str((int(v) >> s) & 0xFF) for s in (24, 16, 8, 0))


def ipv6_text(hi: int, lo: int) -> str:
    return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))


@needs_corpus
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install tshark)")
@pytest.mark.parametrize("name", TSHARK_FILES)
def test_fields_match_tshark(name: str) -> None:
    """Addresses, TTL, ports, TCP seq/flags, VLAN id, DNS id and ICMP type of every packet we
    decode as OK equal tshark's first-layer values (tshark's later values are tunnelled/quoted)."""
    rows = tshark_rows(CORPUS / name)
    batches, decoded = decode_file(CORPUS / name)
    checked = 0
    for b, d in zip(batches, decoded, strict=True):
        for i in np.flatnonzero(d.status == Status.OK):
            t = rows[b.first_index + i]

            def first(field: str, t: dict[str, list[str]] = t) -> str | None:
                return t[field][0] if t[field] else None

            if d.encaps[i] & c.ENC_GRE:  # we report the packet inside GRE: tshark's second layer
                t = {k: v[1:] if k.startswith("ip.") else v for k, v in t.items()}
            if d.ip_version[i] == 4:
                assert (first("ip.src", t), first("ip.dst", t)) == (
                    ipv4_text(d.src_lo[i]),
                    ipv4_text(d.dst_lo[i]),
                )
                assert first("ip.ttl", t) == str(d.ttl[i])
            elif d.ip_version[i] == 6 and first("ipv6.src") and not t["ip.src"]:
                assert first("ipv6.src") == ipv6_text(d.src_hi[i], d.src_lo[i])
                assert first("ipv6.dst") == ipv6_text(d.dst_hi[i], d.dst_lo[i])
                assert first("ipv6.hlim") == str(d.ttl[i])
            if d.proto[i] == 6 and d.l4_off[i] and d.frag_offset[i] == 0:
                assert (first("tcp.srcport"), first("tcp.dstport")) == (str(d.sport[i]), str(d.dport[i]))
                assert first("tcp.seq_raw") == str(d.tcp_seq[i])
                assert int(first("tcp.flags") or "-1", 16) == d.tcp_flags[i] & 0xFFF
            if d.proto[i] == 17 and d.frag_offset[i] == 0 and first("udp.srcport"):
                assert (first("udp.srcport"), first("udp.dstport")) == (str(d.sport[i]), str(d.dport[i]))
            if d.vlan_count[i]:  # tshark names an 802.1ad (0x88a8) tag ieee8021ad.id, not vlan.id
                assert first("vlan.id") in (str(d.vlan_outer[i] & 0xFFF), str(d.vlan_inner[i] & 0xFFF))
            if d.dns_id[i] >= 0 and first("dns.id"):
                assert int(first("dns.id") or "0", 16) == d.dns_id[i]
            if d.proto[i] in (1, 58) and d.l4_off[i]:
                assert first("icmp.type" if d.proto[i] == 1 else "icmpv6.type") == str(d.icmp_type[i])
            if d.q_ip_version[i] == 4 and len(t["ip.src"]) > 1:
                assert t["ip.src"][1] == ipv4_text(d.q_src_lo[i])
            checked += 1
    assert checked == sum(len(b) for b in batches) or name == "tcpdump__HDLC.pcap"


@needs_corpus
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_byte_counts_match_argus(path: Path, corpus_manifest: dict[str, dict[str, str]]) -> None:
    """Where real argus counted every packet, it counted wirelen - link_len bytes in all."""
    row = corpus_manifest.get(path.name)
    batches, decoded = decode_file(path)
    packets = sum(len(b) for b in batches)
    if row is None or row["argus_exit"] != "0" or row["argus_pkts"] != str(packets) or packets == 0:
        pytest.skip("real argus did not count every packet of this capture")
    ours = sum(
        int((b.wirelen.astype(np.int64) - d.link_len).sum()) for b, d in zip(batches, decoded, strict=True)
    )
    assert ours == int(row["argus_bytes"])


def test_radiotap_control_and_management_frames(compiled: bool) -> None:
    rt = struct.pack("<BBHI", 0, 0, 8, 0)
    ack = rt + bytes([0xD4, 0, 0, 0]) + MAC_B + b"\1\2\3\4"  # ACK: receiver only, then FCS
    rts = rt + bytes([0xB4, 0, 0, 0]) + MAC_B + MAC_A
    beacon = rt + bytes([0x80, 0, 0, 0]) + b"\xff" * 6 + MAC_A + MAC_A + b"\0\0" + b"\0" * 12
    d = decode([ack, rts, beacon, ack[:12]], 127)
    assert d.status.tolist() == [Status.OK, Status.OK, Status.OK, Status.TRUNCATED]
    assert (d.dst_mac[0], d.src_mac[0], d.src_mac[1], d.dst_mac[2]) == (u64(MAC_B), 0, u64(MAC_A), 2**48 - 1)
    assert (d.link_len == 8).all() and (d.ethertype == 0).all() and (d.encaps == c.ENC_80211).all()
