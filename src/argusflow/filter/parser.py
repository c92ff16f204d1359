"""Recursive-descent parser for the ra filter language (ra(1) FILTER EXPRESSION, Argus 3.0.8).

It follows the real yacc grammar (`expr`, `term`, `head id`, `thead tid`, `paren pid`, the
arithmetic relations) including its qualifier threading: after `and`/`or`, a bare operand
(`host a and b`, `port 53 or domain`, `ttl 1 and gt 5`) re-uses the qualifiers of the previous
primitive, a parenthesised term hands on the qualifiers in force before it, and a protocol
keyword or record-type keyword leaves none (so `tcp and 80` is an error).  Names are resolved
here, so what comes out is a tree of resolved primitives (`ast.Prim`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from argusflow.errors import FilterError
from argusflow.filter import names
from argusflow.filter.ast import (
    BOTH,
    DST,
    EITHER,
    EQ,
    GE,
    GT,
    LE,
    LT,
    NE,
    SRC,
    And,
    Const,
    Node,
    Not,
    Or,
    Prim,
)
from argusflow.filter.lexer import Token, tokenize

HOST6_WORD = 46  # see compile_records: an IPv4-sized host value ra compares with IPv6 keys only
# ra's compiled-in size of its in-memory record, which is what `len` loads.
RECORD_LEN = 384
# What `len` is in a capture filter (parse(packet_len=True)): each packet's length, so an
# arithmetic relation that reads it is a primitive, Prim("len", op, (left, right)), whose sides
# are arithmetic trees: PACKET_LEN, an int, or (operator token kind, left, right).
PACKET_LEN = "len"
Arith = int | str | tuple

# Token classes of the 3.0.8.2 grammar (checked against the real ra, not only its sources).
PNAMES = {"LINK": "ether", "ARP": "arp", "RARP": "rarp", "IP": "ip", "IPV4": "ipv4",
          "IPV6": "ipv6", "TCP": "tcp", "UDP": "udp", "UDT": "udt", "RTP": "rtp", "RTCP": "rtcp",
          "ICMP": "icmp", "IGMP": "igmp", "MPLS": "mpls", "VLAN": "vlan", "ISIS": "isis",
          "ANON": "anon"}
SNAMES = {"START": "start", "STOP": "stop", "STATUS": "status", "SHUTDOWN": "shut",
          "ERROR": "error", "MAN": "man", "FAR": "far", "EVENT": "event", "INDEX": "index",
          "NORMAL": "normal", "WAIT": "wait", "SYNACK": "synack", "FINACK": "finack",
          "ESTABLISHED": "est", "CONNECTED": "est", "TIMEDOUT": "timeout", "ICMPMAP": "icmpmap",
          "ICMPECHO": "echo", "UNREACH": "unreach", "REDIRECT": "redirect", "TIMEXED": "timexed",
          "RTR": "rtr", "MBR": "mbr", "LVG": "lvg", "COCODE": "cocode", "UNR": "unr",
          "LCL": "lcl", "REM": "rem"}
TNAMES = {"OUTOFORDER": "outoforder", "RETRANS": "retrans", "WINSHUT": "winshut", "SYN": "syn",
          "FIN": "fin", "RESET": "rst", "ACK": "ack", "PUSH": "push", "URGENT": "urg",
          "CWR": "cwr", "ECE": "ece", "FRAG": "frag", "FRAG_ONLY": "fragonly", "ECN": "ecn",
          "MULTIPATH": "multipath", "HELLO": "hello", "LSP": "lsp", "CSNP": "csnp",
          "PSNP": "psnp", "DUP": "dup"}
ONAMES = {"TCPOPT": "tcpopt", "MSS": "mss", "WSCALE": "wscale", "SELECTIVEACKOK": "selackok",
          "SELECTIVEACK": "selack", "TCPECHO": "tcpecho", "TCPECHOREPLY": "tcpechoreply",
          "TCPTIMESTAMP": "tcptimestamp", "TCPCC": "tcpcc", "TCPCCNEW": "tcpccnew",
          "TCPCCECHO": "tcpccecho", "SECN": "secn", "DECN": "decn"}
AQUALS = {"HOST": "host", "SRCID": "srcid", "INODE": "inode", "NET": "net"}
IQUALS = {"PORT": "port", "IPID": "ipid", "TTL": "ttl", "TOS": "tos", "DSB": "dsb", "CO": "co",
          "VID": "vid", "VPRI": "vpri", "MPLSID": "mid", "BYTE": "bytes", "APPBYTE": "appbytes",
          "PKT": "pkts", "TRANS": "trans", "TCPBASE": "tcpbase", "SPI": "spi",
          "ENCAPS": "encaps", "DELTADUR": "deldur", "DELTALAST": "dellast",
          "NSTROKE": "nstroke", "SEQ": "seq", "LOSS": "loss", "GAP": "gap", "TCPRTT": "tcprtt"}
FQUALS = {"DUR": "dur", "AVGDUR": "avgdur", "INTER": "inter", "INTERACTIVE": "interact",
          "INTERIDLE": "interidle", "JITTER": "jitter", "JITTERACTIVE": "jitact",
          "JITTERIDLE": "jitidle", "RATE": "rate", "LOAD": "load", "PLOSS": "ploss",
          "ABR": "pcr", "PCR": "pcr", "ASN": "asn"}
# Keyword operators that may follow a qualifier (`ttl gt 5`); the symbolic ones and `neq` are
# our extension (3.0.8 accepts only `>=` and `<=` there).
KW_OPS = {"LESS": LT, "GREATER": GT, "EQUAL": EQ, "GEQ": GE, "LEQ": LE}
EXT_OPS = {"NEQ": NE, ">": GT, "<": LT, "=": EQ}
# Primitives whose 3.0.8 code is empty: ra accepts them only as the whole expression.
WHOLE_ONLY = "all"
# Values of the integer-only primitives that take a float operand (`dur`, `rate` ...).
FLOAT_KINDS = set(FQUALS.values()) | {"tcprtt"}
UNR_CODES = {"unrnet": 0, "unrhost": 1, "unrproto": 2, "unrport": 3, "unrfrag": 4,
             "unrsrcfail": 5, "unrnetunk": 6, "unrhostunk": 7, "unriso": 8, "unrnetpro": 9,
             "unrhostpro": 10, "unrnettos": 11, "unrhosttos": 12, "unrfilter": 13,
             "unrhostpre": 14, "unrnetpre": 15}
ID_START = {"ID", "STRING", "HIDV4", "HIDV6", "EID", "NUM", "FLOAT", *KW_OPS, *EXT_OPS}
# Binding strength of the arithmetic operators (yacc: | < & < << >> < + - < * /).
ARITH_OPS = {"+": 3, "-": 3, "*": 4, "/": 4, "&": 1, "|": 0, "LSH": 2, "RSH": 2}
ARITH_FLOOR = 0
RELOPS = {">": (">", False), "GEQ": (">=", False), "=": ("==", False), "EQUAL": ("==", False),
          "LEQ": (">", True), "<": (">=", True), "NEQ": ("==", True)}


@dataclass(frozen=True)
class Qual:
    """The qualifiers in force: protocol, direction, address/field type, operand type."""

    proto: str = ""
    dir: str = ""
    addr: str = ""
    type: str = ""


class Parser:
    def __init__(self, text: str, packet_len: bool = False) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.pos = 0
        self.packet_len = packet_len

    # ---------------------------------------------------------------- token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.pos]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def take(self) -> Token:
        tok = self.tok
        self.pos += 1
        return tok

    def fail(self, message: str, tok: Token | None = None) -> FilterError:
        tok = tok or self.tok
        return FilterError(tok.col, f"{message}, found {tok.show()}")

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.fail(f"expected {what}")
        return self.take()

    # ---------------------------------------------------------------- expressions
    def parse(self) -> Node:
        if self.tok.kind == "EOF":
            return Const(True)
        node, _ = self.expr(None)
        if self.tok.kind != "EOF":
            raise self.fail("expected 'and', 'or' or the end of the expression")
        return node

    def expr(self, q: Qual | None) -> tuple[Node, Qual | None]:
        node, q = self.term(q)
        while self.tok.kind in ("AND", "OR"):
            join = And if self.take().kind == "AND" else Or
            if self.starts_id(self.pos):
                right, q = self.ident(q)
            else:
                right, q = self.term(q)
            node = join(node, right)
        return node, q

    def starts_id(self, i: int) -> bool:
        """Whether the token at i begins a bare operand rather than a new term."""
        kind = self.toks[i].kind
        if kind == "!":
            return self.starts_id(i + 1)
        if kind == "NUM":
            return not self.arith_follows(i + 1)
        if kind == "(":
            j = i + 1
            while self.toks[j].kind in ("(", "!"):
                j += 1
            if self.toks[j].kind == "NUM":
                return not self.arith_follows(j + 1)
            return self.toks[j].kind in ID_START
        return kind in ID_START

    def arith_follows(self, i: int) -> bool:
        while self.toks[i].kind == ")":
            i += 1
        return self.toks[i].kind in ARITH_OPS or self.toks[i].kind in RELOPS

    def term(self, q: Qual | None) -> tuple[Node, Qual | None]:
        tok = self.tok
        kind = tok.kind
        if kind == "!":
            self.take()
            node, q2 = self.term(q)
            return Not(node), q2
        if kind in ("LEN", "NUM") or (kind in PNAMES and self.peek().kind == "["):
            return self.relation(), None
        if kind == "(":
            if self.paren_is_arith():  # `(len - 1) > 3`, unless it is `(len > 3)`
                start = self.pos
                try:
                    return self.relation(), None
                except FilterError:
                    self.pos = start
            self.take()
            node, _ = self.expr(q)
            self.expect(")", "')'")
            return node, q
        if kind in SNAMES:
            self.take()
            return self.sname(tok), None
        if kind in ONAMES:
            self.take()
            return Prim(ONAMES[kind], col=tok.col), q
        if kind in TNAMES:
            if kind == "DUP":
                raise self.fail("expected 'src' or 'dst' before 'dup'")
            self.take()
            # ra's tcode takes its direction from the qualifiers in force, so after
            # `src host x and` a bare `rst` means `src rst`.
            return self.tname(tok, q or Qual()), q
        if kind in ("INBOUND", "OUTBOUND"):
            self.take()
            return Const(kind == "INBOUND"), None
        return self.head_term()

    def paren_is_arith(self) -> bool:
        j = self.pos
        while self.toks[j].kind == "(":
            j += 1
        kind = self.toks[j].kind
        if kind == "LEN" or (kind in PNAMES and self.toks[j + 1].kind == "["):
            return True
        return kind == "NUM" and self.arith_follows(j + 1)

    # ---------------------------------------------------------------- qualified terms
    def head_term(self) -> tuple[Node, Qual | None]:
        start = self.tok
        proto = ""
        if self.tok.kind in PNAMES:
            proto = PNAMES[self.take().kind]
        direction = self.dqual()
        kind = self.tok.kind
        if direction and kind in TNAMES:
            tok = self.take()
            q = Qual(proto, direction)
            return self.tname(tok, q), q
        if kind in AQUALS:
            q = Qual(proto, direction, AQUALS[self.take().kind])
        elif kind in IQUALS:
            q = Qual(proto, direction, IQUALS[self.take().kind], "int")
        elif kind in FQUALS:
            q = Qual(proto, direction, FQUALS[self.take().kind], "float")
        elif kind == "PROTO" and not direction:
            self.take()
            q = Qual(proto, "", "proto")
        elif kind == "GATEWAY" and not direction:
            self.take()
            q = Qual(proto, "", "gateway")
        elif kind in ("BROADCAST", "MULTICAST") and not direction:
            self.take()
            return self.other(kind, proto, start), None
        elif direction:
            q = Qual(proto, direction)
        elif proto:
            if proto == "ether":
                raise FilterError(start.col, "'ether' must be followed by host, src, dst or proto")
            return Prim(WHOLE_ONLY if proto == "anon" else proto, col=start.col), None
        else:
            raise self.fail("expected a filter primitive")
        return self.ident(q)

    def dqual(self) -> str:
        kind = self.tok.kind
        if kind not in ("SRC", "DST"):
            return ""
        self.take()
        if self.tok.kind in ("OR", "AND") and self.peek().kind in ("SRC", "DST") and \
                self.peek().kind != kind:
            join = self.take().kind
            self.take()
            return EITHER if join == "OR" else BOTH
        return SRC if kind == "SRC" else DST

    def sname(self, tok: Token) -> Node:
        name = SNAMES[tok.kind]
        if name == "error":
            return Prim(WHOLE_ONLY, col=tok.col)
        if name == "unr":
            return Prim("unr", value=UNR_CODES[tok.text], col=tok.col)
        return Prim(name, col=tok.col)

    def tname(self, tok: Token, q: Qual) -> Node:
        name = TNAMES[tok.kind]
        if name == "fragonly":
            return Prim(WHOLE_ONLY, col=tok.col)
        return Prim(name, dir=q.dir or EITHER, proto=q.proto, col=tok.col)

    def other(self, kind: str, proto: str, tok: Token) -> Node:
        if proto not in ("", "ether", "ip"):
            return Prim(WHOLE_ONLY, col=tok.col)
        if kind == "BROADCAST" and proto == "":
            raise FilterError(tok.col, "only ether or ip broadcast filters are supported")
        return Prim(kind.lower(), proto=proto, col=tok.col)

    # ---------------------------------------------------------------- operands (yacc `id`)
    def ident(self, q: Qual | None) -> tuple[Node, Qual | None]:
        tok = self.tok
        if q is None:
            raise self.fail("expected a qualifier such as host, port or ttl before this operand"
                            if self.starts_id(self.pos) else "expected a filter primitive")
        kind = tok.kind
        if kind == "!":
            self.take()
            node, q2 = self.ident(q)
            return Not(node), q2
        if kind == "(":
            self.take()
            node, q = self.pid(q)
            self.expect(")", "')'")
            return node, q
        if kind in KW_OPS or kind in EXT_OPS:
            self.take()
            op = KW_OPS.get(kind) or EXT_OPS[kind]
            return self.number(q, op, tok), q
        if kind in ("NUM", "FLOAT"):
            return self.number(q, EQ, None), q
        if kind == "HIDV4":
            return self.ipv4(q)
        if kind == "HIDV6":
            return self.ipv6(q)
        if kind == "EID":
            self.take()
            q = replace(q, type="ipv6")
            return self.ether(q, tok.value, tok), q
        if kind in ("ID", "STRING"):
            self.take()
            if kind == "STRING":
                q = replace(q, type="string")
            return self.named(q, tok), q
        what = {"int": "a number", "float": "a number"}.get(q.type, "a value")
        raise self.fail(f"expected {what} after {self.toks[self.pos - 1].show()}")

    def pid(self, q: Qual) -> tuple[Node, Qual]:
        """Inside `qualifier ( ... )`: operands joined by and/or, all with the same qualifiers."""
        if self.tok.kind in KW_OPS or self.tok.kind in EXT_OPS:
            raise self.fail("expected an operand")
        node, q = self.ident(q)
        while self.tok.kind in ("AND", "OR"):
            join = And if self.take().kind == "AND" else Or
            right, q = self.ident(q)
            node = join(node, right)
        return node, q

    def number(self, q: Qual, op: str, op_tok: Token | None) -> Node:
        tok, value = self.pnum()
        if tok is None:
            after = f" after {op_tok.show()}" if op_tok else ""
            raise self.fail(f"expected a number{after}")
        col = (op_tok or tok).col
        if tok.kind == "FLOAT":
            return self.float_prim(q, float(value), tok.text, op, col)
        return self.int_prim(q, int(value), op, col)

    def pnum(self) -> tuple[Token | None, object]:
        """NUM or FLOAT, possibly in parentheses."""
        depth = 0
        while self.peek(depth).kind == "(":
            depth += 1
        tok = self.peek(depth)
        if tok.kind not in ("NUM", "FLOAT"):
            return None, None
        for k in range(depth):
            if self.peek(depth + 1 + k).kind != ")":
                return None, None
        self.pos += 2 * depth + 1
        return tok, tok.value

    # ---------------------------------------------------------------- primitives from operands
    def int_prim(self, q: Qual, value: int, op: str, col: int) -> Node:
        addr = q.addr
        u32 = value & 0xFFFFFFFF
        if addr in ("", "host", "net"):
            if q.proto == "ether":
                raise FilterError(col, "a number is not an ethernet address")
            if q.type == "ipv4" and addr == "net":  # `net 10.0.0.0/8 and 192`: 192.0.0.0/8
                return self.host4(q, *names.left_justify(u32), col)
            if q.type == "ipv4":  # after `host 1.2.3.4 and`, a number is an address
                return self.host4(q, u32, 0xFFFFFFFF, col)
            if q.type == "ipv6":  # ra crashes parsing a number as an IPv6 address
                raise FilterError(col, "a number is not an IPv6 address")
            return self.host4(q, 0, 0, col, family=0)  # ra compares nothing: any IP/ARP record
        if addr in ("srcid", "inode"):
            return Prim(addr, value=u32, col=col)
        if addr == "port":
            return self.port_prim(q, u32, op, col)
        if addr == "proto":
            return self.proto_prim(q, value, col)
        if addr == "gateway":
            raise FilterError(col, "'gateway' requires a name")
        if addr in ("co", "encaps"):
            raise FilterError(col, f"expected a name after '{addr}'")
        if addr == "asn":
            return Prim("asn", dir=q.dir or EITHER, op=op, value=u32, col=col)
        if addr in FLOAT_KINDS:
            return self.float_prim(q, float(value), str(value), op, col)
        if addr == "dsb":
            return Prim("dsb", dir=q.dir or EITHER, op=op, value=(u32 << 2) & 0xFF, col=col)
        return Prim(addr, dir=q.dir or EITHER, op=op, value=u32, col=col)

    def float_prim(self, q: Qual, value: float, text: str, op: str, col: int) -> Node:
        addr = q.addr
        if addr == "asn":
            if "." in text:
                major, _, minor = text.partition(".")
                # ra writes 2^16, which in C is 18.
                number = 18 * int(major or 0) + int(minor or 0)
            else:
                number = int(value)
            return Prim("asn", dir=q.dir or EITHER, op=EQ, value=number & 0xFFFFFFFF, col=col)
        if addr not in FLOAT_KINDS:
            raise FilterError(col, f"expected a whole number after '{addr or 'host'}'")
        return Prim(addr, dir=q.dir or "", op=op, value=value, col=col)

    def port_prim(self, q: Qual, port: int, op: str, col: int) -> Node:
        if q.proto not in ("", "tcp", "udp", "udt", "rtp", "rtcp"):
            raise FilterError(col, f"illegal qualifier '{q.proto}' of 'port'")
        return Prim("port", dir=q.dir or EITHER, proto=q.proto, op=op, value=port, col=col)

    def proto_prim(self, q: Qual, number: int, col: int) -> Node:
        if q.proto in ("tcp", "udp", "rtp", "rtcp", "icmp", "igmp"):
            raise FilterError(col, f"'{q.proto} proto' is bogus")
        if q.proto == "rarp":
            raise FilterError(col, "rarp does not encapsulate another protocol")
        if q.proto not in ("", "ip", "ipv4", "ipv6", "arp", "ether"):
            raise FilterError(col, f"illegal qualifier '{q.proto}' of 'proto'")
        # ra compares the whole number with the key's byte (or ether type): 262 never matches.
        return Prim("proto", proto=q.proto, value=number & 0xFFFFFFFF, col=col)

    def host4(self, q: Qual, addr: int, mask: int, col: int, family: int = 4) -> Node:
        proto = q.proto
        if proto in ("tcp", "udp", "rtp", "rtcp", "udt", "isis"):
            raise FilterError(col, f"'{proto}' modifier applied to host")
        if proto in ("ether", "rarp", "igmp", "mpls", "vlan", "anon"):
            raise FilterError(col, f"'{proto}' modifier cannot qualify an IP address")
        return Prim("host", dir=q.dir or EITHER, proto=proto, value=(family, addr, mask), col=col)

    def ipv4(self, q: Qual) -> tuple[Node, Qual]:
        tok = self.take()
        q = replace(q, type="ipv4")
        addr = names.parse_ipv4(tok.text)
        if self.tok.kind == "/" and self.peek().kind == "NUM":
            self.take()
            bits = self.take().value
            return self.masked(q, 4, addr, bits, tok), q
        if self.tok.kind == "AMASK" and self.peek().kind == "HIDV4":
            self.take()
            mask = names.parse_ipv4(self.take().text)
            if q.addr != "net":
                raise FilterError(tok.col, "mask syntax is for networks only")
            return self.host4(q, addr & mask, mask, tok.col), q
        if q.addr not in ("", "host", "net"):
            # ra takes the address as a number: `ttl 10.0.0.1` compares ttl with 0x0A000001.
            return self.int_prim(q, addr, EQ, tok.col), q
        return self.host4(q, addr, 0xFFFFFFFF, tok.col), q

    def masked(self, q: Qual, family: int, addr: int, bits: int, tok: Token) -> Node:
        if q.addr != "net":
            raise FilterError(tok.col, "mask syntax is for networks only")
        width = 32 if family == 4 else 128
        if not 0 <= bits <= width:
            raise FilterError(tok.col, f"mask length {bits} is out of range")
        mask = ((1 << width) - 1) ^ ((1 << (width - bits)) - 1)
        if family == 4:
            return self.host4(q, addr & mask, mask, tok.col)
        return self.host6(q, addr & mask, mask, tok.col)

    def host6(self, q: Qual, addr: int, mask: int, col: int) -> Node:
        if q.proto not in ("", "ip", "ipv6"):
            raise FilterError(col, f"'{q.proto}' modifier cannot qualify an IPv6 address")
        return Prim("host", dir=q.dir or EITHER, proto=q.proto, value=(6, addr, mask), col=col)

    def ipv6(self, q: Qual) -> tuple[Node, Qual]:
        tok = self.take()
        q = replace(q, type="ipv6")
        addr = int(ipaddress.IPv6Address(tok.text))
        if self.tok.kind == "/" and self.peek().kind == "NUM":
            self.take()
            bits = self.take().value
            return self.masked(q, 6, addr, bits, tok), q
        if q.addr not in ("", "host", "net"):
            return self.int_prim(q, 0, EQ, tok.col), q  # ra's number for an IPv6 operand is 0
        return self.host6(q, addr, (1 << 128) - 1, tok.col), q

    def ether(self, q: Qual, mac: bytes, tok: Token) -> Node:
        if q.proto == "ether" and q.addr in ("", "host"):
            return Prim("ehost", dir=q.dir or EITHER, value=mac, col=tok.col)
        if q.proto == "arp" and q.addr == "host":
            return Prim("arphw", value=mac, col=tok.col)
        raise FilterError(tok.col, "ethernet address used in non-ether expression")

    def named(self, q: Qual, tok: Token) -> Node:
        name = str(tok.value)
        if tok.kind == "STRING":
            name = name[1:-1]
        addr, col = q.addr, tok.col
        if addr == "net":
            # With the operand type unset ra compares IPv4 and IPv6 keys (first word only); after
            # an IPv6 address (`... and net NAME`) only IPv6 ones.
            addr, mask = names.left_justify(names.network_number(name))
            family = {"ipv4": 4, "ipv6": HOST6_WORD}.get(q.type, 0)
            return self.host4(q, addr, mask, col, family=family)
        if addr in ("", "host"):
            if q.proto == "ether":
                mac = names.ether_host(name)
                if mac is None:
                    raise FilterError(col, f"unknown ether host '{name}'")
                return Prim("ehost", dir=q.dir or EITHER, value=mac, col=col)
            return self.host_name(q, name, col)
        if addr in ("srcid", "inode"):
            if q.type == "string":
                raw = name.encode()[:4].ljust(4, b"\0")
                return Prim(addr, value=int.from_bytes(raw, "big"), col=col)
            found = [a for fam, a in names.host_addresses(name) if fam == 4]
            if not found:
                raise FilterError(col, f"{addr} {name} unknown")
            return _any(Prim(addr, value=a, col=col) for a in found)
        if addr == "port":
            return self.port_name(q, name, tok)
        if addr == "proto":
            return self.proto_name(q, name, col)
        if addr == "gateway":
            raise FilterError(col, f"unknown ether host: {name}")
        if addr == "dsb":
            code = names.prefix_lookup(names.DSCODES, name)
            if code is not None:
                return Prim("dsb", dir=q.dir or EITHER, value=(code << 2) & 0xFF, col=col)
        if addr == "co":
            return Prim("co", dir=q.dir or EITHER, value=name.encode()[:2].ljust(2, b"\0"), col=col)
        if addr == "encaps":
            code = names.prefix_lookup(names.ENCAPS, name)
            if code is not None:
                return Prim("encaps", dir=q.dir or EITHER, value=code, col=col)
        raise FilterError(col, f"{tok.show()} is not a valid value for '{addr}'")

    def host_name(self, q: Qual, name: str, col: int) -> Node:
        found = names.host_addresses(name)
        if not found:
            raise FilterError(col, f"host {name} unknown")
        prims: list[Node] = []
        for family, address in found:
            # ra re-qualifies the protocol by the family of each address it finds.
            proto = "ipv4" if family == 4 else "ipv6"
            sub = replace(q, proto=proto if q.proto in ("", "ip", "ipv4", "ipv6") else q.proto)
            if family == 4:
                prims.append(self.host4(sub, address, 0xFFFFFFFF, col))
            else:
                prims.append(self.host6(sub, address, (1 << 128) - 1, col))
        return _any(prims)

    def port_name(self, q: Qual, name: str, tok: Token) -> Node:
        col = tok.col
        if q.proto not in ("", "tcp", "udp", "udt", "rtp", "rtcp"):
            raise FilterError(col, f"illegal qualifier '{q.proto}' of 'port'")
        if "-" in name:
            low, high = name.split("-", 1)
            if not low[:1].isdigit():
                raise FilterError(col, f"{tok.show()} is not a port range")
            node: Node = self.port_prim(q, _leading_int(low), GE, col)
            if high[:1].isdigit():  # ra silently drops a second half that is not a number
                node = And(node, self.port_prim(q, _leading_int(high), LE, col))
            return node
        found = names.service_port(name)
        if found is None:
            raise FilterError(col, f"unknown port '{name}'")
        port, real = found
        proto = q.proto
        if proto in ("udp", "rtp", "rtcp", "udt") and real == "tcp":
            raise FilterError(col, f"port '{name}' is tcp")
        if proto == "tcp" and real == "udp":
            raise FilterError(col, f"port '{name}' is udp")
        if not proto:
            proto = real
        return Prim("port", dir=q.dir or EITHER, proto=proto, op=EQ, value=port, col=col)

    def proto_name(self, q: Qual, name: str, col: int) -> Node:
        if q.proto == "ether":
            number = names.ETHER_PROTOS.get(name)
            if number is None:
                raise FilterError(col, f"unknown ether proto '{name}'")
            return self.proto_prim(q, number, col)
        if q.proto in ("", "ip", "ipv4", "ipv6"):
            number = names.protocol_number(name)
            if number is None:
                raise FilterError(col, f"unknown proto '{name}'")
            return self.proto_prim(q, number, col)
        return self.proto_prim(q, 0, col)

    # ---------------------------------------------------------------- arithmetic relations
    def relation(self) -> Node:
        left, checks = self.arith(ARITH_FLOOR)
        tok = self.tok
        if tok.kind not in RELOPS:
            raise self.fail("expected a comparison such as '>' or '='")
        self.take()
        right, more = self.arith(ARITH_FLOOR)
        op, negate = RELOPS[tok.kind]
        node: Node
        if isinstance(left, int) and isinstance(right, int):
            diff = _wrap64(left - right)
            result = {">": diff > 0, ">=": diff >= 0 and diff != -1, "==": diff == 0}[op]
            node = Const(result != negate)
        else:  # a packet's length: BPF compares `>`, `>=` and `==`, and negates for the others
            node = Prim(PACKET_LEN, op={">": GT, ">=": GE, "==": EQ}[op], value=(left, right),
                        col=tok.col)
            node = Not(node) if negate else node
        for check in checks + more:
            node = And(check, node)
        return node

    def arith(self, min_prec: float) -> tuple[Arith, list[Node]]:
        value, checks = self.arith_primary()
        while self.tok.kind in ARITH_OPS and ARITH_OPS[self.tok.kind] >= min_prec:
            op = self.take()
            right, more = self.arith(ARITH_OPS[op.kind] + 0.01)
            checks += more
            value = _apply(op.kind, value, right, op.col)
        return value, checks

    def arith_primary(self) -> tuple[Arith, list[Node]]:
        tok = self.tok
        if tok.kind == "NUM":
            self.take()
            return tok.value & 0xFFFFFFFF, []  # immediates load as unsigned 32-bit
        if tok.kind == "LEN":
            self.take()
            return (PACKET_LEN if self.packet_len else RECORD_LEN), []
        if tok.kind == "(":
            self.take()
            value, checks = self.arith(ARITH_FLOOR)
            self.expect(")", "')'")
            return value, checks
        if tok.kind in PNAMES and self.peek().kind == "[":
            # proto[offset] loads bytes of ra's in-memory record; see DEVIATIONS: we read 0.
            proto = PNAMES[self.take().kind]
            self.take()
            self.arith(ARITH_FLOOR)
            if self.tok.kind == ":":
                self.take()
                size = self.expect("NUM", "a size").value
                if size not in (1, 2, 4, 8):
                    raise self.fail("data size must be 1, 2, or 4")
            self.expect("]", "']'")
            if proto == "ether":
                return 0, []
            if proto == "anon":
                raise FilterError(tok.col, "unsupported index operation")
            return 0, [Prim(proto, col=tok.col)]
        raise self.fail("expected a number")


def _apply(op: str, a: Arith, b: Arith, col: int) -> Arith:
    if op == "/" and b == 0:
        raise FilterError(col, "division by zero")
    if not (isinstance(a, int) and isinstance(b, int)):
        if op in ("&", "*") and 0 in (a, b):  # libpcap folds these, so `x / (len & 0)` fails
            return 0
        return (op, a, b)  # reads a packet's length: the capture filter computes it per packet
    if op == "+":
        return _wrap64(a + b)
    if op == "-":
        return _wrap64(a - b)
    if op == "*":
        return _wrap64(a * b)
    if op == "/":
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    if op == "&":
        return a & b
    if op == "|":
        return a | b
    if op == "LSH":
        return _wrap64(a << (b & 63))
    return a >> (b & 63)


def _wrap64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _leading_int(text: str) -> int:
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits or 0) & 0xFFFFFFFF


def _any(nodes) -> Node:
    nodes = list(nodes)
    node = nodes[0]
    for other in nodes[1:]:
        node = Or(node, other)
    return node


def parse(text: str, packet_len: bool = False) -> Node:
    """Parse a filter expression into a tree of resolved primitives; FilterError if malformed.
    With `packet_len` (capture filters) `len` is each packet's length, not a constant."""
    stripped = text.strip()
    if stripped.startswith("local") and (len(stripped) == 5 or not stripped[5].isalnum()):
        offset = text.index("local") + 5
        text = " " * offset + text[offset:]  # keep columns pointing into the original text
    node = Parser(text, packet_len).parse()
    whole = [p for p in node.walk() if isinstance(p, Prim) and p.kind == WHOLE_ONLY]
    if whole and node is not whole[0]:
        raise FilterError(whole[0].col, "this primitive can only be used on its own")
    return node
