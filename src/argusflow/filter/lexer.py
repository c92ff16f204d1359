"""Tokens of the Argus filter language, as the 3.0.8 scanner cuts them.

The real scanner is a flex specification: at each position the longest match wins and, on a
tie, the rule listed first (keywords, then numbers, floats, dotted quads, MAC addresses, IPv6
addresses, quoted strings, identifiers).  That is why `53-215` is one identifier (a port range),
`1.2.3.4` an IPv4 address rather than an identifier, and `tcpx` an identifier rather than `tcp`.
We reproduce that rule with a handful of regular expressions and pick the longest.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from argusflow.errors import FilterError

# keyword -> token kind (the grammar's terminal); aliases share a kind.
KEYWORDS: dict[str, str] = {
    "start": "START", "init": "START", "stop": "STOP", "status": "STATUS", "shut": "SHUTDOWN",
    "error": "ERROR", "man": "MAN", "mar": "MAN", "far": "FAR", "event": "EVENT", "index": "INDEX",
    "dst": "DST", "src": "SRC", "seq": "SEQ",
    "auth": "AUTH", "recurs": "RECURS", "req": "REQ", "rsp": "RSP",
    "link": "LINK", "ppp": "LINK", "slip": "LINK", "fddi": "LINK", "ether": "LINK",
    "arp": "ARP", "rarp": "RARP", "ip": "IP", "ipv4": "IPV4", "ipv6": "IPV6", "tcp": "TCP",
    "udp": "UDP", "udt": "UDT", "rtp": "RTP", "rtcp": "RTCP", "icmp": "ICMP", "igmp": "IGMP",
    "mpls": "MPLS", "vlan": "VLAN", "vid": "VID", "vpri": "VPRI", "mid": "MPLSID", "ipid": "IPID",
    "anon": "ANON", "isis": "ISIS", "psnp": "PSNP", "csnp": "CSNP", "lsp": "LSP", "hello": "HELLO",
    "svc": "SVC", "spi": "SPI",
    "host": "HOST", "srcid": "SRCID", "inode": "INODE", "net": "NET", "mask": "AMASK",
    "port": "PORT", "proto": "PROTO", "encaps": "ENCAPS",
    "ttl": "TTL", "tos": "TOS", "dsb": "DSB", "dsbyte": "DSB", "co": "CO", "cocode": "COCODE",
    "as": "ASN", "asn": "ASN", "trans": "TRANS", "pkt": "PKT", "pkts": "PKT", "byte": "BYTE",
    "bytes": "BYTE", "data": "APPBYTE", "appbyte": "APPBYTE", "appbytes": "APPBYTE",
    "pcr": "PCR", "pcratio": "PCR", "abr": "ABR", "abratio": "ABR",
    "nstroke": "NSTROKE", "nstrokes": "NSTROKE", "tcpb": "TCPBASE", "base": "TCPBASE",
    "tcprtt": "TCPRTT", "tcpopt": "TCPOPT", "mss": "MSS", "wscale": "WSCALE",
    "selackok": "SELECTIVEACKOK", "selack": "SELECTIVEACK", "tcpecho": "TCPECHO",
    "tcpechoreply": "TCPECHOREPLY", "tcptimestamp": "TCPTIMESTAMP", "tcpcc": "TCPCC",
    "tcpccnew": "TCPCCNEW", "tcpccecho": "TCPCCECHO", "secn": "SECN", "decn": "DECN",
    "rate": "RATE", "load": "LOAD", "inter": "INTER", "intpkt": "INTER", "intpktact": "INTERACTIVE",
    "intpktidle": "INTERIDLE", "jit": "JITTER", "jitter": "JITTER", "jitact": "JITTERACTIVE",
    "jitidle": "JITTERIDLE", "dur": "DUR", "avgdur": "AVGDUR", "deldur": "DELTADUR",
    "delstime": "DELTALAST", "delltime": "DELTALAST", "loss": "LOSS", "ploss": "PLOSS",
    "gap": "GAP", "dup": "DUP", "gateway": "GATEWAY",
    "eq": "EQUAL", "equal": "EQUAL", "lt": "LESS", "lte": "LEQ", "less": "LESS", "gt": "GREATER",
    "gte": "GEQ", "greater": "GREATER", "neq": "NEQ",
    "broadcast": "BROADCAST", "multicast": "MULTICAST",
    "and": "AND", "or": "OR", "not": "!",
    "len": "LEN", "length": "LEN", "inbound": "INBOUND", "outbound": "OUTBOUND",
    "syn": "SYN", "synack": "SYNACK", "fin": "FIN", "finack": "FINACK", "rst": "RESET", "ack": "ACK",
    "urg": "URGENT", "ece": "ECE", "cwr": "CWR", "push": "PUSH", "reset": "RESET",
    "rtr": "RTR", "mbr": "MBR", "lvg": "LVG",
    "normal": "NORMAL", "wait": "WAIT", "timeout": "TIMEDOUT", "est": "ESTABLISHED",
    "con": "CONNECTED", "avail": "CONNECTED",
    "ecn": "ECN", "drop": "RETRANS", "retrans": "RETRANS", "outoforder": "OUTOFORDER",
    "ooo": "OUTOFORDER", "multipath": "MULTIPATH", "mpath": "MULTIPATH", "winshut": "WINSHUT",
    "frag": "FRAG", "fragonly": "FRAG_ONLY",
    "icmpmap": "ICMPMAP", "echo": "ICMPECHO", "unreach": "UNREACH", "redirect": "REDIRECT",
    "timexed": "TIMEXED",
    # Argus 5 additions we accept (see filter.DEVIATIONS).
    "unrnet": "UNR", "unrhost": "UNR", "unrproto": "UNR", "unrport": "UNR", "unrfrag": "UNR",
    "unrsrcfail": "UNR", "unrnetunk": "UNR", "unrhostunk": "UNR", "unriso": "UNR",
    "unrnetpro": "UNR", "unrhostpro": "UNR", "unrnettos": "UNR", "unrhosttos": "UNR",
    "unrfilter": "UNR", "unrhostpre": "UNR", "unrnetpre": "UNR",
    "lcl": "LCL", "rem": "REM",
}

_N = r"(?:0[xX][0-9A-Fa-f]+|[0-9]+)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    # Order is the scanner's rule order: it breaks ties between equally long matches.
    ("OP2", re.compile(r">=|<=|!=|==|<<|>>|&&|\|\|")),
    ("NUM", re.compile(rf"[+-]?{_N}")),
    ("FLOAT", re.compile(rf"[+-]?(?:{_N})?\.{_N}")),
    ("HIDV4", re.compile(rf"{_N}\.{_N}\.{_N}\.{_N}")),
    ("EID", re.compile(r"[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}")),
    ("HIDV6", re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")),
    ("STRING", re.compile(r'"[^*\n]*"')),
    ("ID", re.compile(r"[A-Za-z0-9][-_.A-Za-z0-9]*[.A-Za-z0-9]|\\[^ !()\n\t]+")),
]
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_SINGLE = set("+-*/:[]!<>()&|=")
_OP2_KIND = {">=": "GEQ", "<=": "LEQ", "!=": "NEQ", "==": "=", "<<": "LSH", ">>": "RSH",
             "&&": "AND", "||": "OR"}


@dataclass(frozen=True)
class Token:
    """One token: its grammar kind, the text as typed, its value and its 1-based column."""

    kind: str
    text: str
    col: int
    value: object = None

    def show(self) -> str:
        return "end of expression" if self.kind == "EOF" else repr(self.text)


def c_int(text: str) -> int:
    """The scanner's stoi(): sign, 0x hex, leading-0 octal, folded into a 32-bit C int."""
    s, sign = text, 1
    if s[:1] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    base = 10
    if s.startswith(("0x", "0X")):
        base, s = 16, s[2:]
    elif s.startswith("0") and len(s) > 1:
        base, s = 8, s[1:]
    n = 0
    for ch in s:  # like xdtoi(): an '8' in an octal number still counts 8
        n = n * base + int(ch, 16)
    n = (sign * n) & 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def _ipv6_length(text: str, start: int) -> int:
    """Length of the longest valid IPv6 address at `start` (0 if none)."""
    m = _PATTERNS[5][1].match(text, start)
    if not m:
        return 0
    cand = m.group()
    for end in range(len(cand), 1, -1):
        piece = cand[:end]
        if "::" not in piece and piece.count(":") != 7:
            continue
        try:
            ipaddress.IPv6Address(piece)
        except ValueError:
            continue
        return end
    return 0


def _value(kind: str, text: str) -> object:
    if kind == "NUM":
        return c_int(text)
    if kind == "FLOAT":
        return float(text)
    if kind == "EID":
        return bytes(int(part, 16) for part in text.split(":"))
    if kind == "ID" and text.startswith("\\"):
        return text[1:]
    return text


def tokenize(text: str) -> list[Token]:
    """Cut `text` into tokens, ending with an EOF token; raises FilterError on an illegal char."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\n":
            i += 1
            continue
        best_len, best_kind = 0, ""
        word = _WORD.match(text, i)
        if word:
            # flex picks the longest keyword that the input starts with, if nothing is longer.
            w = word.group()
            for end in range(len(w), 0, -1):
                if w[:end] in KEYWORDS:
                    best_len, best_kind = end, "KW"
                    break
        if ch in _SINGLE and best_len < 1:
            best_len, best_kind = 1, "CHAR"
        for kind, pattern in _PATTERNS:
            length = _ipv6_length(text, i) if kind == "HIDV6" else (
                len(m.group()) if (m := pattern.match(text, i)) else 0)
            if length > best_len:
                best_len, best_kind = length, kind
        if best_len == 0:
            raise FilterError(i + 1, f"illegal character {ch!r}")
        piece = text[i:i + best_len]
        if best_kind == "KW":
            tokens.append(Token(KEYWORDS[piece], piece, i + 1, piece))
        elif best_kind == "CHAR":
            tokens.append(Token(piece, piece, i + 1))
        elif best_kind == "OP2":
            tokens.append(Token(_OP2_KIND[piece], piece, i + 1))
        else:
            tokens.append(Token(best_kind, piece, i + 1, _value(best_kind, piece)))
        i += best_len
    tokens.append(Token("EOF", "", n + 1))
    return tokens
