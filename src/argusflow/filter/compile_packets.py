"""The probe's capture filter (`argus -r F - tcp and port 80`): a tcpdump-syntax subset compiled
into a numpy mask over decoded packet columns (decode.columns), applied before the flow engine.

    >>> f = compile_capture_filter("tcp and not port 22")
    >>> keep = f.mask(decoded)          # one bool per packet of a DecodedBatch

The text is parsed by the record filter's parser (filter.parser, the same tree), after a few
tcpdump spellings it lacks are rewritten (`ip6`, `icmp6`, `vlan N`, `portrange A-B`, `greater N`,
`less N`); `len` is each packet's length on the wire there (parse(packet_len=True)).  Primitives
that describe flow records, not packets (`pkts`, `dur`, `syn`, `ttl` ...), are rejected with a
one-line FilterError, as the real argus's libpcap rejects them.

Packet semantics are libpcap's: `port` needs TCP/UDP/SCTP and no fragment offset; `host` and
`net` match IPv4, IPv6 and ARP/RARP addresses; `proto N` looks at IPv4 and IPv6; `ip proto`,
`ether proto`; `len` relations compute in unsigned 32 bits, and a division by zero rejects the
packet; and, as in BPF, a primitive only sees past VLAN tags (MPLS labels) when the
expression has a `vlan` (`mpls`) primitive; tunnelled packets (GRE, PPPoE) match by their outer
headers only, which our decoded columns do not keep, so they match no protocol primitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from argusflow.decode.codes import ENC_ETHER, ENC_GRE, ENC_PPP
from argusflow.decode.columns import DecodedBatch
from argusflow.errors import FilterError
from argusflow.filter.ast import BOTH, DST, EQ, GE, GT, LE, LT, NE, SRC, And, Const, Node, Not, Or, Prim
from argusflow.filter.parser import parse

ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_RARP, ETH_8021AD = 0x0800, 0x86DD, 0x0806, 0x8035, 0x88A8
PROTO_KINDS = {"tcp": 6, "udp": 17, "icmp": 1, "igmp": 2}
PORT_PROTOS = (6, 17, 132)
M64 = (1 << 64) - 1
OPS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    EQ: np.equal, NE: np.not_equal, GT: np.greater, GE: np.greater_equal, LT: np.less,
    LE: np.less_equal}
PACKET_KINDS = {"ip", "ipv4", "ipv6", "arp", "rarp", "ether", "vlan", "mpls", "host", "port",
                "proto", "ehost", "vid", "len", *PROTO_KINDS}
U32 = np.uint64(0xFFFFFFFF)
# libpcap's `greater N` / `less N` at the start of a term: `len >= N` / `len <= N`.
LENGTH_WORDS = re.compile(r"(^|[(!]|&&|\|\||\band\b|\bor\b|\bnot\b)(\s*)\b(greater|less)\s+"
                          r"(0[xX][0-9A-Fa-f]+|\d+)\b")


@dataclass(frozen=True)
class CaptureFilter:
    """A compiled capture filter: `.mask(decoded)` says which packets the probe sees."""

    text: str
    tree: Node = field(repr=False)
    ranges: dict[int, tuple[int, int]] = field(repr=False, default_factory=dict)

    def mask(self, d: DecodedBatch) -> np.ndarray:
        run = _Evaluator(d, self.tree, self.ranges)
        keep = run.eval(self.tree, np.ones(len(d), dtype=bool))
        return keep & ~run.failed


def compile_capture_filter(text: str) -> CaptureFilter:
    """Parse a tcpdump-style capture filter once; FilterError (one line) when it is not one."""
    if "[" in text:
        raise FilterError(text.index("[") + 1, "packet byte loads (proto[offset]) are not "
                          "supported in a capture filter")
    rewritten, ranges = _tcpdump_spellings(text)
    tree = parse(rewritten, packet_len=True)
    for node in tree.walk():
        if isinstance(node, Const) and node is not tree:
            raise FilterError(1, "this expression is not a capture filter (tcpdump syntax)")
        if isinstance(node, Prim) and node.kind not in PACKET_KINDS:
            raise FilterError(node.col, f"'{node.kind}' is not a capture-filter term (packets are "
                              "filtered by host, net, port, portrange, proto, ip, ip6, arp, "
                              "tcp, udp, icmp, vlan, ether host ...)")
        if isinstance(node, Prim) and node.kind in ("port", "vid") and node.op != EQ \
                and node.col not in ranges:  # `port gt 80`: ra's grammar, not libpcap's
            raise FilterError(node.col, f"'{node.kind}' takes a number in a capture filter "
                              "(portrange A-B for a range)")
    return CaptureFilter(text, tree, ranges)


def _tcpdump_spellings(text: str) -> tuple[str, dict[int, tuple[int, int]]]:
    """Rewrite tcpdump words the record grammar lacks.  `portrange A-B` becomes `port gte A`,
    padded to its own length so that later columns stay true; the returned map gives, by the
    column of that A, the range the primitive really means."""
    text = re.sub(r"\bip6\b", "ipv6", text)
    text = re.sub(r"\bicmp6\b", "(ipv6 and proto 58)", text)
    text = re.sub(r"\bvlan\s+(\d+)", r"vid \1", text)
    text = LENGTH_WORDS.sub(lambda m: f"{m[1]}{m[2]}len{'>=' if m[3] == 'greater' else '<='}{m[4]}"
                            .ljust(len(m[0])), text)
    ranges: dict[int, tuple[int, int]] = {}

    def portrange(m: re.Match[str]) -> str:
        lo, hi = int(m.group(1)), int(m.group(2))
        new = f"port gte {lo}"
        # keyed by the 1-based column of `gte`, which is where the parser places the primitive
        ranges[m.start() + len("port ") + 1] = (min(lo, hi), max(lo, hi))
        return new.ljust(len(m.group(0)))

    text = re.sub(r"\bportrange\s+(\d+)\s*-\s*(\d+)", portrange, text)
    return text, ranges


def _divides(tree: object) -> bool:
    """Whether an arithmetic tree of the parser (parser.Arith) has a division."""
    return isinstance(tree, tuple) and (tree[0] == "/" or any(map(_divides, tree[1:])))


class _Evaluator:
    """One pass over the tree for one batch: each primitive is a few numpy comparisons."""

    def __init__(self, d: DecodedBatch, tree: Node, ranges: dict[int, tuple[int, int]]) -> None:
        self.d = d
        self.ranges = ranges
        self.failed = np.zeros(len(d), dtype=bool)  # packets a division by zero rejected
        self.divides = any(isinstance(p, Prim) and p.kind == "len" and any(map(_divides, p.value))
                           for p in tree.walk())
        kinds = {p.kind for p in tree.walk() if isinstance(p, Prim)}
        # BPF reads fixed offsets: without `vlan`/`mpls` it does not look past a tag or label.
        tagged = d.vlan_count > 0 if ("vlan" in kinds or "vid" in kinds) else d.vlan_count == 0
        labelled = d.mpls_count > 0 if "mpls" in kinds else d.mpls_count == 0
        tunnel = ((d.encaps & ENC_GRE) != 0) | (((d.encaps & ENC_PPP) != 0)
                                                & ((d.encaps & ENC_ETHER) != 0))
        self.visible = tagged & labelled & ~tunnel
        et = d.ethertype
        self.ip4 = self.visible & (et == ETH_IPV4) & (d.ip_version == 4)
        self.ip6 = self.visible & (et == ETH_IPV6) & (d.ip_version == 6)
        self.arp = self.visible & ((et == ETH_ARP) | (et == ETH_RARP))
        # BPF finds an IPv6 transport protocol right after the fixed header or after one fragment
        # header, and IPv6 ports only right after the fixed header.
        ext = np.where(self.ip6, d.l4_off.astype(np.int64) - d.l3_off, 0)
        self.ip6_plain = self.ip6 & (ext == 40)
        self.ip6_proto = self.ip6_plain | (self.ip6 & (ext == 48) & ((d.frag_flags & 4) != 0))

    def eval(self, node: Node, reach: np.ndarray) -> np.ndarray:
        """`reach`: the packets BPF's short-circuit evaluation brings to `node` (a division by
        zero there rejects the packet, whatever the rest of the expression says)."""
        if isinstance(node, And):
            left = self.eval(node.left, reach)
            return left & self.eval(node.right, reach & left if self.divides else reach)
        if isinstance(node, Or):
            left = self.eval(node.left, reach)
            return left | self.eval(node.right, reach & ~left if self.divides else reach)
        if isinstance(node, Not):
            return ~self.eval(node.child, reach)
        if isinstance(node, Const):
            return np.full(len(self.d), node.value, dtype=bool)
        assert isinstance(node, Prim)
        if node.kind == "len":
            return self.p_len(node, reach)
        return getattr(self, "p_" + node.kind, self.p_protocol)(node)

    def _dirs(self, p: Prim, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        if p.dir == SRC:
            return src
        if p.dir == DST:
            return dst
        return src & dst if p.dir == BOTH else src | dst

    def p_protocol(self, p: Prim) -> np.ndarray:
        d, k = self.d, p.kind
        if k in PROTO_KINDS:
            return (self.ip4 | (self.ip6_proto & (k != "icmp"))) & (d.proto == PROTO_KINDS[k])
        if k in ("ip", "ipv4"):
            return self.ip4
        if k == "ipv6":
            return self.ip6
        if k == "arp":
            return self.arp & (d.ethertype == ETH_ARP)
        if k == "rarp":
            return self.arp & (d.ethertype == ETH_RARP)
        if k == "vlan":  # 802.1ad frames too, which the decoder (as argus) does not open
            return (d.vlan_count > 0) | (d.ethertype == ETH_8021AD)
        if k == "mpls":
            return d.mpls_count > 0
        return (d.encaps & ENC_ETHER) != 0  # "ether"

    def p_host(self, p: Prim) -> np.ndarray:
        d = self.d
        version, addr, mask = p.value  # type: ignore[misc]
        if version == 4:
            fam = self.ip4 | (self.arp if p.proto in ("", "arp", "rarp") else False)
            if p.proto in ("arp", "rarp"):
                fam = self.arp
            src = fam & ((d.src_lo & np.uint64(mask)) == np.uint64(addr))
            dst = fam & ((d.dst_lo & np.uint64(mask)) == np.uint64(addr))
            return self._dirs(p, src, dst)
        hi, lo = np.uint64(addr >> 64), np.uint64(addr & M64)
        mhi, mlo = np.uint64(mask >> 64), np.uint64(mask & M64)
        src = self.ip6 & ((d.src_hi & mhi) == hi) & ((d.src_lo & mlo) == lo)
        dst = self.ip6 & ((d.dst_hi & mhi) == hi) & ((d.dst_lo & mlo) == lo)
        return self._dirs(p, src, dst)

    def p_port(self, p: Prim) -> np.ndarray:
        d = self.d
        protos = (PROTO_KINDS[p.proto],) if p.proto in ("tcp", "udp") else PORT_PROTOS
        ok = (self.ip4 | self.ip6_plain) & np.isin(d.proto, protos) & (d.frag_offset == 0)
        value = int(p.value)  # type: ignore[arg-type]
        span = self.ranges.get(p.col)
        if span is not None:
            src = (d.sport >= span[0]) & (d.sport <= span[1])
            dst = (d.dport >= span[0]) & (d.dport <= span[1])
        else:
            cmp = OPS[p.op]
            src, dst = cmp(d.sport, value), cmp(d.dport, value)
        return self._dirs(p, ok & src, ok & dst)

    def p_proto(self, p: Prim) -> np.ndarray:
        d, value = self.d, int(p.value)  # type: ignore[arg-type]
        if p.proto == "ether":
            return self.visible & (d.ethertype == value)
        if p.proto in ("ip", "ipv4"):
            return self.ip4 & (d.proto == value)
        if p.proto == "ipv6":
            return self.ip6_proto & (d.proto == value)
        return (self.ip4 | self.ip6_proto) & (d.proto == value)

    def p_ehost(self, p: Prim) -> np.ndarray:
        mac = np.uint64(int.from_bytes(bytes(p.value), "big"))  # type: ignore[arg-type]
        return self._dirs(p, self.d.src_mac == mac, self.d.dst_mac == mac)

    def p_len(self, p: Prim, reach: np.ndarray) -> np.ndarray:
        """An arithmetic relation on the packet's length (on the wire, as BPF's `len`), in BPF's
        unsigned 32-bit arithmetic; a division by zero rejects the packet, as in BPF."""
        left, right = p.value  # type: ignore[misc]
        failed = np.zeros(len(self.d), dtype=bool)
        a, b = self._arith(left, failed), self._arith(right, failed)
        self.failed |= failed & reach
        return OPS[p.op](a, b) & ~failed

    def _arith(self, tree: object, failed: np.ndarray) -> np.ndarray | np.uint64:
        if isinstance(tree, int):
            return np.uint64(tree & 0xFFFFFFFF)
        if isinstance(tree, str):  # parser.PACKET_LEN
            return self.d.wirelen.astype(np.uint64)
        op, left, right = tree  # type: ignore[misc]
        a, b = self._arith(left, failed), self._arith(right, failed)
        if op == "/":
            zero = np.asarray(b == 0)
            failed |= zero
            return np.asarray(a // np.where(zero, 1, b)).astype(np.uint64)
        if op in ("LSH", "RSH"):
            shift = np.minimum(b, 32)  # a shift by 32 or more leaves nothing of 32 bits
            return ((a << shift) & U32) if op == "LSH" else (a >> shift)
        value = {"+": np.add, "-": np.subtract, "*": np.multiply, "&": np.bitwise_and,
                 "|": np.bitwise_or}[op](a, b)
        return value & U32

    def p_vid(self, p: Prim) -> np.ndarray:
        d = self.d
        return (d.vlan_count > 0) & OPS[p.op](d.vlan_outer & 0x0FFF, int(p.value))  # type: ignore[arg-type]
