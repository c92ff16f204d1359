"""Every header the decoder reads, as field tables (see fields.py).  Offsets are from the start
of the header; the decoder supplies each packet's start."""

from __future__ import annotations

from argusflow.decode.fields import Field, Header

F = Field

# ---- link layers ----------------------------------------------------------------------------
ETHERNET = Header("ethernet", 14, (F("dst", 0, 6), F("src", 6, 6), F("type", 12, 2)))
LINUX_SLL = Header(
    "sll", 16, (F("hatype", 2, 2), F("halen", 4, 2), F("addr", 6, 6), F("proto", 14, 2))
)
LINUX_SLL2 = Header(
    "sll2", 20, (F("proto", 0, 2), F("hatype", 8, 2), F("halen", 11, 1), F("addr", 12, 6))
)
NULL_FAMILY = Header("null", 4, (F("le", 0, 4, "<"), F("be", 0, 4)))
PPP = Header("ppp", 2, (F("b0", 0, 1), F("b1", 1, 1), F("proto", 0, 2)))
CISCO_HDLC = Header("chdlc", 4, (F("proto", 2, 2),))
FDDI = Header("fddi", 13, (F("dst", 1, 6), F("src", 7, 6)))
RADIOTAP = Header("radiotap", 4, (F("length", 2, 2, "<"),))
IEEE802_11 = Header(
    "802.11",
    24,
    (
        F("type", 0, 1, bits=(2, 2)),
        F("subtype", 0, 1, bits=(4, 4)),
        F("ds", 1, 1, bits=(0, 2)),
        F("protected", 1, 1, bits=(6, 1)),
        F("order", 1, 1, bits=(7, 1)),
        F("a1", 4, 6),
        F("a2", 10, 6),
        F("a3", 16, 6),
    ),
)
IEEE802_11_A4 = Header("802.11 addr4", 30, (F("a4", 24, 6),))
NFLOG = Header("nflog", 4, (F("family", 0, 1),))
NFLOG_TLV = Header("nflog tlv", 4, (F("length", 0, 2, "<"), F("type", 2, 2, "<")))
FIRST_NIBBLE = Header("version", 1, (F("version", 0, 1, bits=(4, 4)),))

# ---- tags between link and network layer ----------------------------------------------------
VLAN = Header("802.1q", 4, (F("tci", 0, 2), F("type", 2, 2)))
MPLS = Header("mpls", 4, (F("entry", 0, 4), F("bottom", 2, 1, bits=(0, 1))))
PPPOE = Header("pppoe session", 8, (F("proto", 6, 2),))
LLC = Header(
    "llc", 3, (F("dsap", 0, 1), F("ssap", 1, 1), F("ctrl", 2, 1))
)
SNAP = Header("snap", 8, (F("oui", 3, 3), F("type", 6, 2)))

# ---- network layer --------------------------------------------------------------------------
IPV4 = Header(
    "ipv4",
    20,
    (
        F("version", 0, 1, bits=(4, 4)),
        F("ihl", 0, 1, bits=(0, 4)),
        F("tos", 1, 1),
        F("total_len", 2, 2),
        F("id", 4, 2),
        F("df", 6, 1, bits=(6, 1)),
        F("mf", 6, 1, bits=(5, 1)),
        F("frag", 6, 2, bits=(0, 13)),
        F("ttl", 8, 1),
        F("proto", 9, 1),
        F("src", 12, 4),
        F("dst", 16, 4),
    ),
)
IPV6 = Header(
    "ipv6",
    40,
    (
        F("word0", 0, 4),
        F("version", 0, 1, bits=(4, 4)),
        F("tclass", 0, 2, bits=(4, 8)),
        F("payload_len", 4, 2),
        F("next", 6, 1),
        F("hlim", 7, 1),
        F("src_hi", 8, 8),
        F("src_lo", 16, 8),
        F("dst_hi", 24, 8),
        F("dst_lo", 32, 8),
    ),
)
IPV6_EXT = Header("ipv6 extension", 2, (F("next", 0, 1), F("len", 1, 1)))
IPV6_FRAG = Header(
    "ipv6 fragment",
    8,
    (F("next", 0, 1), F("offset", 2, 2, bits=(3, 13)), F("more", 3, 1, bits=(0, 1)), F("id", 4, 4)),
)
ARP = Header(
    "arp",
    8,
    (F("htype", 0, 2), F("ptype", 2, 2), F("hlen", 4, 1), F("plen", 5, 1), F("op", 6, 2)),
)
# ARP addresses sit at offsets that depend on the hardware/protocol address lengths
ARP_IPV4_ADDR = Header("arp ipv4 address", 4, (F("addr", 0, 4),))
ARP_MAC_ADDR = Header("arp hardware address", 6, (F("addr", 0, 6),))

# ---- transport layer ------------------------------------------------------------------------
PORTS = Header("ports", 4, (F("sport", 0, 2), F("dport", 2, 2)))
TCP = Header(
    "tcp",
    20,
    (
        F("sport", 0, 2),
        F("dport", 2, 2),
        F("seq", 4, 4),
        F("ack", 8, 4),
        F("doff", 12, 1, bits=(4, 4)),
        F("flags", 12, 2, bits=(0, 9)),
        F("win", 14, 2),
    ),
)
UDP = Header("udp", 8, (F("sport", 0, 2), F("dport", 2, 2), F("length", 4, 2)))
DNS_ID = Header("dns id", 2, (F("id", 0, 2),))
ICMP = Header(
    "icmp", 8, (F("type", 0, 1), F("code", 1, 1), F("id", 4, 2), F("seq", 6, 2), F("rest", 4, 4))
)
ESP = Header("esp", 8, (F("spi", 0, 4), F("seq", 4, 4)))

# ---- tunnels --------------------------------------------------------------------------------
GRE = Header(
    "gre",
    4,
    (
        F("checksum", 0, 1, bits=(7, 1)),
        F("routing", 0, 1, bits=(6, 1)),
        F("key", 0, 1, bits=(5, 1)),
        F("seq", 0, 1, bits=(4, 1)),
        F("ack", 1, 1, bits=(7, 1)),
        F("version", 1, 1, bits=(0, 3)),
        F("proto", 2, 2),
    ),
)
