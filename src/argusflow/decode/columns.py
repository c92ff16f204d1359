"""DecodedBatch: one row per packet, the fields the flow model needs, as numpy columns.

The column table below is the single description of the output: names, dtypes, meaning.
Absent values are 0 (no nulls), with a flag column or bitmask saying what is present, except
`dns_id` which is -1 when the packet carries none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl

# (name, dtype, meaning)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("status", "u1", "codes.Status: ok / truncated / malformed"),
    ("reason", "u1", "codes.Reason of the first problem found"),
    ("encaps", "u4", "encapsulation bits seen (spec §6.6)"),
    (
        "link_len",
        "u2",
        "leading bytes argus leaves out of its byte counts: SLL/NULL/PPP/C-HDLC/NFLOG "
        "headers, radiotap (not the 802.11 header); 0 for Ethernet, raw IP, FDDI",
    ),
    ("dst_mac", "u8", "48-bit destination MAC (802.11: the DA)"),
    ("src_mac", "u8", "48-bit source MAC (SLL: the sender address when 6 bytes)"),
    ("vlan_count", "u1", "802.1Q/802.1ad tags seen"),
    ("vlan_outer", "u2", "TCI of the first tag"),
    ("vlan_inner", "u2", "TCI of the second tag"),
    ("mpls_count", "u1", "MPLS label stack entries"),
    ("mpls_top", "u4", "first label stack entry (label << 12 | tc << 9 | s << 8 | ttl)"),
    ("mpls_bottom", "u4", "last label stack entry"),
    ("llc_dsap", "u1", "802.2 LLC DSAP (when an LLC header was seen)"),
    ("llc_ssap", "u1", "802.2 LLC SSAP"),
    ("ethertype", "u2", "protocol after all link/tag layers (0 when none is known)"),
    ("l3_off", "i4", "offset of the network header in the packet"),
    ("ip_version", "u1", "4, 6 or 0 (not IP)"),
    ("src_hi", "u8", "IPv6 source bits 127-64 (0 for IPv4)"),
    ("src_lo", "u8", "IPv6 source bits 63-0; IPv4 source; ARP sender IPv4"),
    ("dst_hi", "u8", "IPv6 destination bits 127-64"),
    ("dst_lo", "u8", "IPv6 destination bits 63-0; IPv4 destination; ARP target IPv4"),
    ("proto", "u1", "IP protocol / last IPv6 next header"),
    ("ttl", "u1", "IPv4 TTL / IPv6 hop limit"),
    ("tos", "u1", "IPv4 TOS / IPv6 traffic class"),
    ("ip6_flow", "u4", "IPv6 first header word (version, class, flow label)"),
    ("ip_id", "u4", "IPv4 id; IPv6 fragment-header id"),
    ("ip_len", "u4", "IPv4 total length; IPv6 40 + payload length"),
    ("frag_offset", "u2", "fragment offset in bytes"),
    ("frag_flags", "u1", "0x1 more fragments, 0x2 don't fragment, 0x4 IPv6 fragment header"),
    ("ip_opts", "u1", "IP options bitmap (spec §6.13)"),
    ("l4_off", "i4", "offset of the transport header (0 when none)"),
    ("sport", "u2", "TCP/UDP/SCTP/DCCP source port"),
    ("dport", "u2", "destination port"),
    ("tcp_seq", "u4", ""),
    ("tcp_ack", "u4", ""),
    ("tcp_flags", "u2", "FIN 0x1 ... CWR 0x80, NS 0x100"),
    ("tcp_win", "u2", "raw window field"),
    ("tcp_opts", "u4", "TCP options seen (spec §6.7.2 bits)"),
    ("tcp_mss", "u2", ""),
    ("tcp_wscale", "u1", ""),
    ("tcp_tsval", "u4", ""),
    ("tcp_tsecr", "u4", ""),
    ("icmp_type", "u1", "ICMP / ICMPv6 type"),
    ("icmp_code", "u1", ""),
    ("icmp_id", "u2", "echo/timestamp/info identifier"),
    ("icmp_seq", "u2", "echo sequence"),
    ("icmp_rest", "u4", "ICMP header bytes 4-7 of any type (redirect: gateway; unreachable: MTU); "
     "IGMP bytes 4-7 (group address)"),
    ("q_ip_version", "u1", "IP version of the packet quoted by an ICMP error (0: none)"),
    ("q_proto", "u1", "quoted protocol"),
    ("q_src_hi", "u8", ""),
    ("q_src_lo", "u8", ""),
    ("q_dst_hi", "u8", ""),
    ("q_dst_lo", "u8", ""),
    ("q_sport", "u2", "quoted ports (TCP/UDP/SCTP/DCCP)"),
    ("q_dport", "u2", ""),
    ("esp_spi", "u4", "ESP security parameter index"),
    ("esp_seq", "u4", "ESP sequence number"),
    ("arp_op", "u2", "ARP/RARP operation"),
    ("arp_sha", "u8", "ARP sender hardware address"),
    ("arp_tha", "u8", "ARP target hardware address"),
    ("payload_off", "i4", "offset of the transport payload (0 when none)"),
    ("payload_len", "i4", "payload bytes per the IP header lengths"),
    ("payload_caplen", "i4", "payload bytes actually captured"),
    ("dns_id", "i4", "DNS transaction id for UDP port 53, -1 when none"),
    ("q_dns_id", "i4", "DNS transaction id of a quoted UDP/53 datagram (ICMPv4 errors), -1 when none"),
)
DTYPES = {name: np.dtype(dt) for name, dt, _ in COLUMNS}

# Storage: one 2-D array per dtype, each column a row view of it, so that a compiled decoder
# can take five arrays instead of sixty.  GROUPS[dtype] lists its columns; SLOT[name] = row.
GROUPS: dict[str, list[str]] = {}
for _name, _dt, _ in COLUMNS:
    GROUPS.setdefault(_dt, []).append(_name)
SLOT = {name: row for names in GROUPS.values() for row, name in enumerate(names)}


class DecodedBatch:
    """Columns of COLUMNS (attributes), plus the batch's packet times and lengths."""

    def __init__(
        self,
        n: int,
        ts_us: np.ndarray,
        wirelen: np.ndarray,
        caplen: np.ndarray,
        groups: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.n = n
        self.ts_us = ts_us
        self.wirelen = wirelen
        self.caplen = caplen
        self.groups = self.empty_groups(n) if groups is None else groups
        for dt, names in GROUPS.items():
            for row, name in enumerate(names):
                setattr(self, name, self.groups[dt][row])

    @staticmethod
    def empty_groups(n: int) -> dict[str, np.ndarray]:
        """Storage for n packets with every column at its absent value."""
        groups = {dt: np.zeros((len(names), n), dtype=dt) for dt, names in GROUPS.items()}
        groups["i4"][SLOT["dns_id"]] = -1
        groups["i4"][SLOT["q_dns_id"]] = -1
        return groups

    def __len__(self) -> int:
        return self.n

    def take(self, idx: np.ndarray) -> DecodedBatch:
        """The packets `idx` (an index array), as a new batch (the capture filter's selection)."""
        groups = {dt: matrix[:, idx] for dt, matrix in self.groups.items()}
        return DecodedBatch(len(idx), self.ts_us[idx], self.wirelen[idx], self.caplen[idx], groups)

    def columns(self) -> dict[str, np.ndarray]:
        cols = {"ts_us": self.ts_us, "wirelen": self.wirelen, "caplen": self.caplen}
        cols.update((name, getattr(self, name)) for name in DTYPES)
        return cols

    def to_polars(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(self.columns())
