"""Names, codes and letters ra prints, as plain Python data (no polars).

records.derive builds its polars expressions on these tables, and records.numpy_lines (ra's
polars-free default lines) its numpy codes, so both print the same texts.
"""

from __future__ import annotations

import functools
from pathlib import Path

# TCP status bits (spec §6.7.1).
SAW_SYN, SAW_SYN_SENT, CON_ESTABLISHED = 0x1, 0x2, 0x4
FIN, FIN_ACK, NORMAL_CLOSE = 0x8, 0x10, 0x20
SRC_RETRANS, DST_RETRANS = 0x100, 0x200
SRC_WINDOW_SHUT, DST_WINDOW_SHUT = 0x400, 0x800
SRC_RESET, DST_RESET = 0x1000, 0x2000
SRC_CONGESTED, DST_CONGESTED = 0x4000, 0x8000
SRC_OUTOFORDER, DST_OUTOFORDER = 0x10000, 0x20000

# TCP header flags.
TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK, TH_URG, TH_ECE, TH_CWR = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80

IPPROTO_ICMP, IPPROTO_IGMP, IPPROTO_TCP, IPPROTO_UDP = 1, 2, 6, 17
IPPROTO_ESP, IPPROTO_ICMPV6 = 50, 58


# The RTP object's qualifier: silence suppression seen in the source / destination stream.
RTP_SRC_SILENCE, RTP_DST_SILENCE = 0x01, 0x02

_ENCAPS_LETTERS = [(0x1, "m"), (0x2, "e"), (0x4, "v"), (0x8, "l"), (0x10, "p"), (0x20, "i"),
                   (0x40, "G"), (0x80, "a"), (0x100, "P"), (0x200, "6"), (0x400, "H"), (0x800, "C"),
                   (0x1000, "A"), (0x2000, "S"), (0x4000, "F"), (0x8000, "s"), (0x10000, "R"),
                   (0x20000, "w"), (0x40000, "z"), (0x80000, "a"), (0x400000, "T"),
                   (0x2000000, "J"), (0x4000000, "E")]

_IPOPT_LETTERS = {0x01: "R", 0x02: "T", 0x04: "+", 0x08: "L", 0x10: "D", 0x20: "S", 0x40: "A"}

_ICMP_STATES = {
    0: "ECR", 4: "SRC", 5: "RED", 6: "AHA", 8: "ECO", 9: "RTA", 10: "RTS", 11: "TXD", 12: "PAR",
    13: "TST", 14: "TSR", 15: "IRQ", 16: "IRR", 17: "MAS", 18: "MSR", 19: "SEC", 30: "TRC",
    31: "DCE", 32: "MHR", 33: "WAY", 34: "IAH", 35: "MRQ", 36: "MRP", 37: "DNQ", 38: "DNP",
    39: "SKP", 40: "PHO", 41: "NRS", 42: "NRA", 43: "NNS", 44: "NNA", 45: "PTB",
    1: "   ", 2: "   ", 7: "   ", **{k: "ROB" for k in range(20, 30)},
}
_UNREACH = ["URN", "URH", "URO", "URP", "URF", "URS", "URNU", "URHU", "URISO", "URNPRO", "URHPRO",
            "URNTOS", "URHTOS", "URFIL", "URPRE", "URCUT"]
_ICMP6_STATES = {128: "ECO", 129: "ECR", 130: "MRQ", 131: "MHR", 143: "MHR", 133: "NRS", 134: "NRA",
                 135: "NNS", 136: "NNA", 137: "RED", 2: "PTB"}
_ICMP6_UNREACH = ["URNR", "URAD", "URBS", "URAR", "URP", "URSF", "URRR", "URES"]
_MAR_STATES = {0x10: "STA", 0x20: "CON", 0x30: "STP", 0x60: "SHT", 0x80: "ERR"}

STATE_TEXTS = ["CON", "INT", "RST", "FIN", "CLO", "TIM", "ACC", "REQ", "RSP", "UNK", "ERR",
               "ADN", "MAX", "TXT", "TXR", "PPH", "PPNH", "PPO", "UR", *_UNREACH, *_ICMP6_UNREACH,
               *_ICMP_STATES.values(), *_ICMP6_STATES.values(), *_MAR_STATES.values()]

# "", "who", " ->", then left x middle x right glyphs (code 3 + 6 * left + 2 * middle + right)
DIR_TEXTS = ["", "who", " ->", *(a + b + e for a in " <" for b in " -?" for e in " >")]


@functools.cache
def services(proto: str) -> dict[int, str]:
    """Port -> first service name of /etc/services for `proto` ('tcp' or 'udp')."""
    names: dict[int, str] = {}
    path = Path("/etc/services")
    if not path.exists():
        return names
    for line in path.read_text(errors="replace").splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or "/" not in words[1]:
            continue
        port, _, kind = words[1].partition("/")
        if kind == proto and port.isdigit():
            names.setdefault(int(port), words[0])
    return names


# ra 3.0.8's own IP protocol names (IANA keywords as the ra binary spells them), 0-134; 135-252
# and 254-255 print as "unas", 253 as "ib" (every number checked against the ra binary).
_IP_PROTOCOLS = (
    "ip icmp igmp ggp ipnip st2 tcp cbt egp igp bbn-rcc nvp pup argus emcon xnet chaos udp mux dcn "
    "hmp prm xns-idp trunk-1 trunk-2 leaf-1 leaf-2 rdp irtp iso-tp4 netblt mfe-nsp merit-inp sep "
    "3pc idpr xtp ddp idpr-cmtp tp++ il ipv6 sdrp ipv6-route ipv6-frag idrp rsvp gre mhrp bna esp "
    "ah i-nlsp swipe narp mobile tlsp skip ipv6-icmp ipv6-no ipv6-opts any cftp any sat-expak "
    "kryptolan rvd ippc any sat-mon visa ipcv cpnx cphb wsn pvp br-sat-mon sun-nd wb-mon "
    "wb-expak iso-ip vmtp secure-vmtp vines ttp nsfnet-igp dgp tcf eigrp ospf sprite-rpc larp "
    "mtp ax.25 ipip micp aes-sp3-d etherip encap pri-enc gmtp ifmp pnni pim aris scps qnx a/n "
    "ipcomp snp compaq-peer ipx-n-ip vrrp pgm zero l2tp ddx iatp stp srp uti smp sm ptp isis fire "
    "crtp crudp sccopmce iplt sps pipe sctp fc rsvp").split()


@functools.cache
def protocols() -> dict[int, str]:
    """IP protocol number -> the name ra prints."""
    names = dict(enumerate(_IP_PROTOCOLS))
    names.update({n: "unas" for n in range(len(_IP_PROTOCOLS), 256)})
    names[253] = "ib"
    return names


# Ether types ra names; anything else prints "unknown" unless -n.
ETHER_TYPES = {0x0800: "ip", 0x0806: "arp", 0x8035: "rarp", 0x86DD: "ipv6", 0x8100: "802.1q",
               0x8847: "mpls", 0x8848: "mpls-mc", 0x8863: "pppoe", 0x8864: "pppoe",
               0x888E: "eapol", 0x88CC: "lldp", 0x9000: "loopback"}
LLC_SAPS = {0x00: "null", 0x02: "isap", 0x03: "gsap", 0x04: "sna", 0x05: "sna", 0x06: "ip",
            0x0E: "proway", 0x42: "stp", 0x4E: "mms", 0x5E: "isi", 0x7E: "x25", 0x80: "xns",
            0x8E: "proway", 0xAA: "snap", 0xBC: "banyan", 0xE0: "ipx", 0xF0: "netbeui",
            0xF4: "lanman", 0xFE: "iso", 0xFF: "global"}
