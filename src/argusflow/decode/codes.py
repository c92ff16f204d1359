"""Numbers the decoder writes: packet status and reasons, and the Argus bitmasks it fills
(encapsulations: spec §6.6; IP options: §6.13; TCP options: §6.7.2)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    OK = 0
    TRUNCATED = 1  # the capture ends inside a header we need
    MALFORMED = 2  # a header holds impossible values


class Reason(IntEnum):
    NONE = 0
    UNKNOWN_LINKTYPE = 1
    LINK_TRUNCATED = 2
    LINK_BAD = 3  # e.g. a raw-IP packet whose version nibble is neither 4 nor 6
    TAGS_TRUNCATED = 4  # VLAN / MPLS / PPPoE / LLC header cut short
    TOO_MANY_TAGS = 5
    IP_TRUNCATED = 6
    IP_BAD_VERSION = 7
    IP_BAD_HEADER_LENGTH = 8
    IP_BAD_TOTAL_LENGTH = 9
    IP_OPTIONS_TRUNCATED = 10
    IP6_EXT_TRUNCATED = 11
    IP6_TOO_MANY_EXT = 12
    L4_TRUNCATED = 13
    TCP_BAD_OFFSET = 14
    TCP_OPTIONS_TRUNCATED = 15
    ARP_TRUNCATED = 17
    ARP_UNSUPPORTED = 18  # hardware/protocol types other than Ethernet/IPv4


# Encapsulation DSR bits (spec §6.6)
ENC_MPLS = 0x1
ENC_ETHER = 0x2
ENC_8021Q = 0x4
ENC_LLC = 0x8
ENC_PPP = 0x10
ENC_GRE = 0x40
ENC_AH = 0x80
ENC_IPIP = 0x100
ENC_IPV6 = 0x200
ENC_HDLC = 0x400
ENC_CHDLC = 0x800
ENC_SLL = 0x2000
ENC_FDDI = 0x4000
ENC_80211 = 0x20000

# IP options bitmap (spec §6.13), by option type
IPOPT_BITS = {7: 0x01, 68: 0x02, 130: 0x04, 131: 0x08, 136: 0x10, 137: 0x20, 148: 0x40}

# TCP options word (spec §6.7.2), by option kind
TCPOPT_MSS = 0x00100000
TCPOPT_WSCALE = 0x00200000
TCPOPT_SACK_OK = 0x00400000
TCPOPT_SACK = 0x00800000
TCPOPT_ECHO = 0x01000000
TCPOPT_ECHO_REPLY = 0x02000000
TCPOPT_TIMESTAMP = 0x04000000
TCPOPT_CC = 0x08000000
TCPOPT_CC_NEW = 0x10000000
TCPOPT_CC_ECHO = 0x20000000
TCPOPT_BITS = {
    2: TCPOPT_MSS,
    3: TCPOPT_WSCALE,
    4: TCPOPT_SACK_OK,
    5: TCPOPT_SACK,
    6: TCPOPT_ECHO,
    7: TCPOPT_ECHO_REPLY,
    8: TCPOPT_TIMESTAMP,
    11: TCPOPT_CC,
    12: TCPOPT_CC_NEW,
    13: TCPOPT_CC_ECHO,
}

# TCP flag bits as in the header (low 9 bits of bytes 12-13)
TH_FIN, TH_SYN, TH_RST, TH_PUSH, TH_ACK, TH_URG, TH_ECE, TH_CWR, TH_NS = (1 << i for i in range(9))
