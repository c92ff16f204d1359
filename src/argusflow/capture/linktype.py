"""Link-type numbers (LINKTYPE_* as stored in capture files) that argusflow knows.

Capture readers use this table to warn once about a link type nobody can decode; the decoder
dispatches on the same numbers.  libpcap maps the BSD DLT_RAW values 12 and 14 to raw IP, so do we.
"""

from __future__ import annotations

NULL = 0  # BSD loopback: 4-byte address family in the writer's byte order
ETHERNET = 1
PPP = 9
FDDI = 10
RAW_12 = 12
RAW_14 = 14
RAW = 101
C_HDLC = 104
LOOP = 108  # OpenBSD loopback: address family in network byte order
LINUX_SLL = 113
IEEE802_11_RADIOTAP = 127
IPV4 = 228
IPV6 = 229
NFLOG = 239
LINUX_SLL2 = 276

NAMES: dict[int, str] = {
    NULL: "NULL",
    ETHERNET: "EN10MB",
    PPP: "PPP",
    FDDI: "FDDI",
    RAW_12: "RAW",
    RAW_14: "RAW",
    RAW: "RAW",
    C_HDLC: "C_HDLC",
    LOOP: "LOOP",
    LINUX_SLL: "LINUX_SLL",
    IEEE802_11_RADIOTAP: "IEEE802_11_RADIO",
    IPV4: "IPV4",
    IPV6: "IPV6",
    NFLOG: "NFLOG",
    LINUX_SLL2: "LINUX_SLL2",
}

# libpcap refuses records whose caplen exceeds this (max_snaplen_for_dlt); so do we.
MAX_CAPLEN = 262144


def is_supported(linktype: int) -> bool:
    return linktype in NAMES


def split_linktype_field(raw: int) -> tuple[int, bool]:
    """Link type from a pcap header's 32-bit link-type field, and whether its upper bits are garbage.

    Bits 16-25 are reserved (must be 0); bits 26-31 may carry an FCS length, but only with the
    FCS-present bit 0x04000000 set.  Like libpcap we keep the low 16 bits either way.
    """
    fcs_present = bool(raw & 0x04000000)
    garbage = bool(raw & 0x03FF0000) or (bool(raw & 0xF0000000) and not fcs_present)
    return raw & 0xFFFF, garbage
