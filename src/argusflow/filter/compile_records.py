"""Compile a filter tree into one boolean polars expression over a record batch (records.schema).

How ra evaluates a primitive, and so how we do
----------------------------------------------
ra compiles the filter to a BPF-like program that loads fields from the DSRs of its in-memory
record.  A load from a DSR the record does not have (or past that DSR's length) yields -1, and
every comparison with -1 is false.  Three consequences are kept here on purpose:

* `lt`/`lte` are compiled as the negation of `gte`/`gt`, so they are *true* when the field is
  absent (`ttl lt 5` matches a record without an IP-attribute DSR);
* a masked comparison (flags, options, VLAN ids, encapsulations ...) ANDs the -1 with the mask
  before comparing, so with the DSR absent it compares the mask itself (`mss` matches a UDP
  record, whose network DSR is one empty word; `vid 4095` matches a record without VLAN tags);
* float comparisons round both sides to 6 decimals and treat 0 < 0 as true (ra's
  floatislessthan), so `dur gte 0` is false for a zero duration.

Derived values (direction-less counters, state bits, rates, ICMP types) are computed exactly as
spec §9 describes ra deriving them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from argusflow.filter import numpy_fields, numpy_ops
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
from argusflow.records.schema import (
    ADDR_ARP,
    ADDR_ETHER,
    ADDR_IPV4,
    ADDR_IPV6,
    DSR_BITS,
    NET_ARP,
    NET_ESP,
    NET_FRAG,
    NET_ICMP,
    NET_TCP_INIT,
    NET_TCP_PERF,
    NET_TCP_STATUS,
    RTYPE_FAR,
    RTYPE_MAR,
)

if TYPE_CHECKING:
    import polars as pl
    from polars import Expr

    from argusflow.records.fields import Field


# The building blocks every primitive is written with: polars' by default, filter.numpy_ops'
# for compile_numpy (one compiler, two back-ends; a Compiler holds its own).  polars is
# imported only for the polars back-end: `ra -w - tcp` runs without it when the reader can.
class PolarsOps:
    @staticmethod
    def module() -> Any:  # noqa: ANN401 - the polars module
        import polars

        return polars

    @classmethod
    def col(cls, name: str) -> Expr:
        return cls.module().col(name)

    @classmethod
    def lit(cls, value: object) -> Expr:
        return cls.module().lit(value)

    @classmethod
    def when(cls, condition: Expr) -> Any:  # noqa: ANN401 - polars' When
        return cls.module().when(condition)

    @classmethod
    def any_horizontal(cls, *exprs: Expr | list[Expr]) -> Expr:
        return cls.module().any_horizontal(*exprs)

    @classmethod
    def max_horizontal(cls, *exprs: Expr) -> Expr:
        return cls.module().max_horizontal(*exprs)

    @classmethod
    def dtype(cls, name: str) -> Any:  # noqa: ANN401 - a polars dtype
        return getattr(cls.module(), name)

    @staticmethod
    def field(name: str) -> tuple[Expr, str | None]:
        f = field_of(name)
        return f.value(), f.dsr

    @classmethod
    def opaque_int(cls, wanted: Expr, index: int, width: int, endianness: str) -> Expr:
        """Builder.opaque_int: the rows not wanted are null, which costs nothing to slice
        (slicing binaries is the slow part of a filter)."""
        pl = cls.module()
        raw = pl.when(wanted).then(pl.col("net_raw"))
        kind = pl.UInt8 if width == 1 else pl.UInt32
        return raw.bin.slice(index, width).bin.reinterpret(dtype=kind, endianness=endianness) \
            .fill_null(0).cast(pl.Int64)


# Fields of the table (records.fields) whose value is the column of the same name, with their
# DSR: the numpy back-end reads these without importing the table (and polars with it).
# tests/test_filter_backends.py checks each entry against the table.
PLAIN_FIELDS: dict[str, str] = {
    **{f"{s}{n}": "metric" for s in "sd" for n in ("pkts", "bytes", "appbytes")},
    **{f"{s}{n}": "attr" for s in "sd" for n in ("ttl", "tos", "ipid")},
    **{f"{s}nstroke": "behavior" for s in "sd"}, **{f"{s}as": "asn" for s in "sd"},
    **{f"{s}co": "cocode" for s in "sd"},
}


class NumpyOps:
    col = staticmethod(numpy_ops.col)
    lit = staticmethod(numpy_ops.lit)
    when = staticmethod(numpy_ops.when)
    any_horizontal = staticmethod(numpy_ops.any_horizontal)
    max_horizontal = staticmethod(numpy_ops.max_horizontal)
    dtype = staticmethod(numpy_ops.dtype)
    opaque_int = staticmethod(numpy_ops.opaque_int)

    @staticmethod
    def field(name: str) -> tuple[Expr, str | None]:
        if name in PLAIN_FIELDS:
            return numpy_ops.col(name), PLAIN_FIELDS[name]  # type: ignore[return-value]
        derived = numpy_fields.field(name)
        if derived is None:
            raise numpy_ops.Unsupported(f"field {name}: no numpy form")
        return derived  # type: ignore[return-value]


HOST6_WORD = 46  # host value family: an IPv4-sized number ra compares with IPv6 keys only
ADDR_ISIS = 0x06  # flow key qualifier ra uses for IS-IS keys (none in argus 3.0.8 output)
NET_RTCP, NET_RTP, NET_UDT = 0x09, 0x0A, 0x0D
RTYPE_EVENT, RTYPE_INDEX = 0x40, 0x20
CAUSES = {"start": 0x10, "status": 0x20, "stop": 0x30, "timeout": 0x40, "shut": 0x60}
RECORD_TYPES = {"man": RTYPE_MAR, "far": RTYPE_FAR, "event": RTYPE_EVENT, "index": RTYPE_INDEX}
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "push": 0x08, "ack": 0x10, "urg": 0x20,
             "ece": 0x40, "cwr": 0x80}
TCP_OPTIONS = {"tcpopt": 0xFFF00000, "mss": 0x00100000, "wscale": 0x00200000,
               "selackok": 0x00400000, "selack": 0x00800000, "tcpecho": 0x01000000,
               "tcpechoreply": 0x02000000, "tcptimestamp": 0x04000000, "tcpcc": 0x08000000,
               "tcpccnew": 0x10000000, "tcpccecho": 0x20000000, "secn": 0x40000000,
               "decn": 0x80000000}
# TCP status bits (spec §6.7.1) as (src, dst) pairs, and whole-connection bits.
PAIRED_STATUS = {"outoforder": (0x10000, 0x20000), "winshut": (0x400, 0x800),
                 "ecn": (0x4000, 0x8000)}
CONN_STATUS = {"normal": 0x20, "wait": 0x40, "synack": 0x02, "finack": 0x10}
SAW_SYN, CON_ESTABLISHED = 0x01, 0x04
RETRANS = (0x100, 0x200)
ESP_DROP = (0x10, 0x20)
DUPLICATES = (0x40000, 0x80000)
FRAGMENTS = (0x10, 0x20)
IGMP_QUERY, IGMP_LEAVE = 0x11, 0x17
PFLAG = 6  # ra's default print precision, which its float comparisons round to
MISSING_FLOAT = -10000000.0

# Bytes of the network DSR objects as ra holds them (NET_HEADER: any other object).
NET_LENGTHS = {NET_TCP_PERF: 120, NET_TCP_INIT: 120, NET_TCP_STATUS: 120, NET_ESP: 20,
               NET_ICMP: 28, NET_ARP: 176, NET_FRAG: 56, NET_UDT: 12}
NET_HEADER = 4
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    EQ: operator.eq, NE: operator.ne, GT: operator.gt, GE: operator.ge, LT: operator.lt,
    LE: operator.le}

# Network DSR words ra's filter reads, by byte offset: TCP object columns, ESP object columns.
TCP_WORDS = {4: "tcp_status", 8: "tcp_state", 12: "tcp_options", 36: "stcp_seqbase",
             84: "dtcp_seqbase"}
ESP_WORDS = {4: "tcp_status", 8: "esp_spi", 12: "esp_lastseq", 16: "esp_lostseq"}


# ---------------------------------------------------------------- back-end independent pieces

def _float_test(v: float, op: str) -> Callable[[pl.Series], pl.Series]:
    """The core of ra's float comparison of a column with v, in numpy over a whole batch.

    Both sides are C floats rounded to PFLAG decimals (half away from zero); signed zeros are
    told apart (-0 == 0 is false, 0 < 0 is true) and NaN is neither greater, less nor equal.
    Returns `greater` for gt/le, `not less` for ge/lt and `equal` for eq/ne.
    """
    scale = 10.0 ** PFLAG
    f32 = np.float64(np.float32(v))
    f = np.copysign(np.floor(abs(f32) * scale + 0.5) / scale, f32)
    f_neg = bool(np.signbit(f32))

    def run(series: pl.Series | np.ndarray) -> pl.Series | np.ndarray:
        numpy = isinstance(series, np.ndarray)  # the numpy back-end's call
        if numpy:
            raw = series.astype(np.float32).astype(np.float64)
        else:
            import polars as pl

            raw = series.cast(pl.Float32).cast(pl.Float64).to_numpy()
        with np.errstate(invalid="ignore"):
            x = np.copysign(np.floor(np.abs(raw) * scale + 0.5) / scale, raw)
            nan = np.isnan(raw)
            x_neg = np.signbit(raw)
            zeros = (x == 0) & (f == 0)
            if op in (GT, LE):
                out = (x > f) | (zeros & ~x_neg & f_neg)
            elif op in (GE, LT):
                out = ~((x < f) | (zeros & ~(~x_neg & f_neg))) | nan
            else:
                out = (np.abs(x - f) <= 0.1 ** (PFLAG + 1)) & np.where(x == 0, x_neg == f_neg, True)
            out &= ~nan if op not in (GE, LT) else True
        return out if numpy else pl.Series(out, dtype=pl.Boolean)

    return run


def sides(direction: str, one: Callable[[str], Expr], default: str = EITHER) -> Expr:
    """Apply a per-side test for a direction qualifier."""
    direction = direction or default
    if direction == SRC:
        return one(SRC)
    if direction == DST:
        return one(DST)
    if direction == BOTH:
        return one(SRC) & one(DST)
    return one(SRC) | one(DST)


def field_of(name: str) -> Field:
    """The field table's entry: imported on first use (it and records.derive cost start-up
    time that filters on key columns, the usual ones, never need)."""
    from argusflow.records.fields import FIELDS

    return FIELDS[name]


# ---------------------------------------------------------------- ra's loads, for one back-end

class Builder:
    """ra's loads and comparisons, written once with the building blocks of one back-end
    (`ops`: PolarsOps or NumpyOps).  The back-end is the instance's: compiling is re-entrant
    (two threads, radium's clients for one, compile at once for either back-end)."""

    def __init__(self, ops: type[PolarsOps] | type[NumpyOps] = PolarsOps) -> None:
        self.ops = ops
        # Bound once: every primitive calls these, and compiling must stay cheap.
        self.col, self.lit, self.when = ops.col, ops.lit, ops.when
        self.any_horizontal, self.max_horizontal = ops.any_horizontal, ops.max_horizontal

    def dt(self, name: str) -> Any:  # noqa: ANN401 - a polars dtype, or a numpy one
        """The dtype called `name` in polars (Int64, UInt8 ...), for this back-end."""
        return self.ops.dtype(name)

    def field_value(self, name: str) -> Expr:
        """The value of field `name` of the field table (records.fields)."""
        return self.ops.field(name)[0]

    def field_dsr(self, name: str) -> str | None:
        """The DSR that carries field `name` (records.fields)."""
        return self.ops.field(name)[1]

    # -- record-level helpers
    def has(self, dsr: str) -> Expr:
        return (self.col("dsrs") & DSR_BITS[dsr]) != 0

    def is_type(self, rtype: int) -> Expr:
        return (self.col("rtype") & rtype) == rtype

    def linktype(self, addr_type: int) -> Expr:
        return self.has("flow") & ((self.col("flow_qual") & 0x1F) == addr_type)

    def ip_proto(self, number: int, family: str = "") -> Expr:
        """ra's prototype(): the flow key is IPv4/IPv6 with this IP protocol."""
        v4 = self.linktype(ADDR_IPV4) & (self.col("proto") == number)
        v6 = self.linktype(ADDR_IPV6) & (self.col("proto") == number)
        return {"ipv4": v4, "ipv6": v6}.get(family, v4 | v6)

    def net_present(self) -> Expr:
        """The network DSR as ra keeps it.  The reader already leaves out the RTP objects that
        3.0.8 drops when reading (records.dsr_decode.drop_unread_rtp); RTCP objects it always drops."""
        return self.has("net") & (self.col("net_subtype") != NET_RTCP)

    def net_holds(self, end: int) -> Expr:
        """The network DSR as ra holds it in memory reaches byte `end` (TCP objects are expanded
        to 120 bytes; objects ra does not know count as their header only).  A lookup of one
        boolean per subtype: cheaper than comparing looked-up lengths."""
        reaches = {sub: length >= end for sub, length in NET_LENGTHS.items()}
        holds = self.col("net_subtype").replace_strict(reaches, default=NET_HEADER >= end,
                                                       return_dtype=self.dt("Boolean"))
        return self.net_present() & holds

    def opaque_int(self, index: int, width: int, subtypes: tuple[int, ...] = (),
                   endianness: str = "big") -> Expr:
        """The unsigned `width`-byte integer at byte `index` of the network DSR payload of these
        object subtypes (default: any the batch does not already have as columns); 0 elsewhere
        and past the payload's end."""
        sub = self.col("net_subtype")
        if subtypes:
            wanted = sub.is_in(list(subtypes))
        else:
            wanted = ~sub.is_in([NET_TCP_PERF, NET_TCP_INIT, NET_TCP_STATUS, NET_ESP, 0])
        return self.ops.opaque_int(wanted, index, width, endianness)

    def net_word(self, offset: int, tcp_only: bool = False) -> tuple[Expr, Expr]:
        """(value, present) of the u32 at `offset` of the network DSR.  With `tcp_only` the caller
        also requires a TCP flow, whose network DSR is a TCP object, so the other objects are not
        decoded."""
        sub = self.col("net_subtype")
        present = self.net_holds(offset + 4)
        tcp = sub.is_in([NET_TCP_PERF, NET_TCP_INIT, NET_TCP_STATUS])
        tcp_value = self.col(TCP_WORDS[offset]).cast(self.dt("Int64")) if offset in TCP_WORDS else self.lit(0)
        if tcp_only:
            return self.when(tcp).then(tcp_value).otherwise(0), present
        value = self.when(tcp).then(tcp_value)
        if offset in ESP_WORDS:
            value = value.when(sub == NET_ESP).then(self.col(ESP_WORDS[offset]).cast(self.dt("Int64")))
        # ra converts the 32-bit words of the other objects it knows to host order; the ARP
        # responder's hardware address it loads as it lies in memory (little-endian), and of the
        # ICMPv6 object's first word only type and code survive (observed against ra 3.0.8).
        arp_word = self.opaque_int(offset - 4, 4, (NET_ARP,), "little")
        value = value.when(sub == NET_ARP).then(arp_word)
        if offset == 4:
            icmp6 = self.opaque_int(0, 1, (NET_ICMP,)) + self.opaque_int(1, 1, (NET_ICMP,)) * 256
            value = value.when(self.col("proto") == 58).then(icmp6)
        value = value.otherwise(self.opaque_int(offset - 4, 4))
        return value, present

    def net_flag_byte(self, side: str) -> tuple[Expr, Expr]:
        offset = 70 if side == SRC else 118
        value = self.col(f"{side[0]}tcp_flags").cast(self.dt("Int64"))
        return value, self.net_holds(offset)

    # -- comparisons with ra's -1 rule
    def cmp(self, value: Expr, present: Expr, v: int, op: str) -> Expr:
        """An unmasked load compared with v: an absent field makes eq/gt/ge false, lt/le true."""
        # A u64 counter past 2**63 (hostile input) reads as negative, in both back-ends alike.
        value = value.cast(self.dt("Int64"), wrap_numerical=True)
        if op == EQ:
            return present & (value == v)
        if op == NE:
            return ~(present & (value == v))
        if op == GT:
            return present & (value > v)
        if op == GE:
            return present & (value >= v)
        if op == LT:
            return ~(present & (value >= v))
        return ~(present & (value > v))

    def mcmp(self, value: Expr, present: Expr, v: int, mask: int, op: str = EQ) -> Expr:
        """A masked load: an absent field reads as -1, so it compares as the mask itself.
        (Written as boolean algebra, not a select of the loaded values: the same answer for
        less work.)"""
        target = v & mask
        compare = COMPARE[op]
        loaded = compare(value.cast(self.dt("Int64")) & mask, target)
        return (~present | loaded) if compare(mask, target) else (present & loaded)

    def flag(self, value: Expr, present: Expr, bits: int) -> Expr:
        return self.mcmp(value, present, bits, bits)

    def fcmp(self, value: Expr, present: Expr, v: float, op: str) -> Expr:
        """ra's float comparison (see _float_test); an absent value fails gt/ge/eq."""
        core = value.map_batches(_float_test(v, op), return_dtype=self.dt("Boolean"), is_elementwise=True)
        if op in (EQ, GT, GE):
            return present & core
        return ~(present & core)

    # -- derived values (spec §9)
    def duration(self) -> Expr:
        """Record duration (field `dur`); ra's filter sees 0 for a management record."""
        return self.when(self.is_type(RTYPE_MAR)).then(0.0).otherwise(self.field_value("dur"))

    def side_rate(self, side: str, load: bool) -> Expr:
        """Field srate/drate or sload/dload; 0 for management records."""
        value = self.field_value(f"{side[0]}{'load' if load else 'rate'}")
        return self.when(self.is_type(RTYPE_MAR)).then(0.0).otherwise(value)

    def icmp_net_byte(self, index: int) -> tuple[Expr, Expr]:
        """(value, present) of byte `index` of the ICMP object: present when the network DSR
        holds that byte (a header-only DSR, which 3.0.8 writes for a garbled key, does not)."""
        present = self.net_holds(5 + index)
        return self.opaque_int(index, 1, (NET_ICMP,)), present

    def arp_reversed(self) -> Expr:
        sub = self.col("flow_subtype")
        return self.is_type(RTYPE_FAR) & self.has("flow") & ((sub & 0x3F) == 0x06) & ((sub & 0x40) != 0)

    def stream_header(self) -> Expr:
        """The management record that opens a file or stream: ra reads it as the stream's header
        and never puts it to the filter, so no filter selects it."""
        return self.is_type(RTYPE_MAR) & (self.col("offset") == 0)


# ---------------------------------------------------------------- the compiler

class Compiler(Builder):
    """Compiles a tree; with `swap`, for ARP records whose key has the REVERSE bit.

    ra reverses the time, metric, packet-size, IP-attribute, VLAN, MAC, MPLS, jitter, user,
    behaviour, AS and country DSRs of such records when it reads them (not the key, the
    encapsulation or the network DSR), so those per-side values are looked up on the other side.
    """

    def __init__(self, ops: type[PolarsOps] | type[NumpyOps] = PolarsOps, swap: bool = False) -> None:
        super().__init__(ops)
        self.swap = swap

    def phys(self, side: str) -> str:
        """The side of the batch columns that holds ra's `side` of the record."""
        if not self.swap or side not in (SRC, DST):
            return side
        return DST if side == SRC else SRC

    def dsides(self, direction: str, one: Callable[[str], Expr], default: str = EITHER) -> Expr:
        """sides() for values outside the flow key, which a swapped record holds reversed."""
        return sides(direction, lambda side: one(self.phys(side)), default)

    def compile(self, node: Node) -> Expr:
        if isinstance(node, And):
            return self.compile(node.left) & self.compile(node.right)
        if isinstance(node, Or):
            return self.compile(node.left) | self.compile(node.right)
        if isinstance(node, Not):
            return ~self.compile(node.child)
        if isinstance(node, Const):
            return self.lit(node.value)
        if isinstance(node, Prim):
            return self.prim(node)
        raise TypeError(f"not a filter node: {node!r}")

    def prim(self, p: Prim) -> Expr:
        method = getattr(self, f"k_{p.kind}", None)
        if method is not None:
            return method(p)
        for table, handler in ((TCP_FLAGS, self.tcp_flag), (TCP_OPTIONS, self.tcp_option),
                               (CAUSES, self.cause), (RECORD_TYPES, self.record_type),
                               (CONN_STATUS, self.conn_status), (PAIRED_STATUS, self.paired)):
            if p.kind in table:
                return handler(p)
        raise ValueError(f"no compiler for primitive {p.kind!r}")

    # -- addresses
    def k_host(self, p: Prim) -> Expr:
        family, addr, mask = p.value  # type: ignore[misc]
        if family == 6:
            return self.host6(p, addr, mask)
        v4 = lambda side: (self.col(f"{side[0]}addr_lo") & mask) == (addr & mask)  # noqa: E731
        test = sides(p.dir, v4) if mask else self.lit(True)
        arp = self.linktype(ADDR_ARP) & test
        ipv4 = self.linktype(ADDR_IPV4) & test
        ipv6 = self.linktype(ADDR_IPV6)
        if mask:  # only the first address word is compared, as ra does
            word = lambda side: ((self.col(f"{side[0]}addr_hi") // 2**32) & mask) == (addr & mask)  # noqa: E731
            ipv6 = ipv6 & sides(p.dir, word)
        # Family 0: the operand type was unset (both IP versions compared); HOST6_WORD: an IPv4
        # number where ra's operand type says IPv6 (only IPv6 keys compared, first word).
        v4_too, v6_too = family in (0, 4), family in (0, HOST6_WORD)
        families = [e for e, on in ((ipv4, v4_too), (ipv6, v6_too)) if on]
        if p.proto == "":
            return self.any_horizontal(arp, *families)
        if p.proto == "ip":
            return self.any_horizontal(*families)
        if p.proto == "ipv6":
            return ipv6
        if p.proto == "arp":
            return self.k_arp(p) & test
        return ipv4  # ipv4, icmp

    def host6(self, p: Prim, addr: int, mask: int) -> Expr:
        hi, lo = addr >> 64, addr & (2**64 - 1)
        mhi, mlo = mask >> 64, mask & (2**64 - 1)

        def one(side: str) -> Expr:
            s = side[0]
            high = (self.col(f"{s}addr_hi") & mhi) == (hi & mhi)
            return high & ((self.col(f"{s}addr_lo") & mlo) == (lo & mlo))

        ipv6 = self.linktype(ADDR_IPV6) & sides(p.dir, one)
        if p.proto == "":
            m0, a0 = mhi >> 32, hi >> 32
            arp_word = lambda side: (self.col(f"{side[0]}addr_lo") & m0) == (a0 & m0)  # noqa: E731
            return (self.linktype(ADDR_ARP) & sides(p.dir, arp_word)) | ipv6
        return ipv6

    def k_ehost(self, p: Prim) -> Expr:
        mac = int.from_bytes(p.value, "big")  # type: ignore[arg-type]
        return self.has("mac") & self.dsides(p.dir, lambda side: self.col(f"{side[0]}mac") == mac)

    def k_arphw(self, p: Prim) -> Expr:
        mac = int.from_bytes(p.value, "big")  # type: ignore[arg-type]
        return self.linktype(ADDR_ARP) & (self.col("arp_sha") == mac)

    def k_srcid(self, p: Prim) -> Expr:
        v = p.value
        mar = self.is_type(RTYPE_MAR) & (self.col("srcid") == v)
        far = ((self.is_type(RTYPE_FAR) | self.is_type(RTYPE_EVENT))
               & self.cmp(self.col("srcid"), self.has("transport"), v, EQ))
        return mar | far

    def k_inode(self, p: Prim) -> Expr:
        return self.is_type(RTYPE_FAR) & self.cmp(self.col("icmpmap_osrc"), self.has("icmpmap"), p.value, EQ)

    # -- ports and protocols
    def k_port(self, p: Prim) -> Expr:
        v, op = p.value, p.op

        def ports(gate: Expr) -> Expr:
            one = lambda side: self.cmp(self.col(f"{side[0]}port"), self.lit(True), v, op)  # noqa: E731
            return gate & sides(p.dir, one)

        if p.proto == "tcp":
            return ports(self.ip_proto(6))
        if p.proto == "udp":
            return ports(self.ip_proto(17))
        if p.proto == "udt":
            return ports(self.net_present() & (self.col("net_subtype") == NET_UDT))
        if p.proto in ("rtp", "rtcp"):
            sub = NET_RTP if p.proto == "rtp" else NET_RTCP
            return ports(self.ip_proto(17)) & ports(self.udp_app(sub))
        return ports(self.ip_proto(6)) | ports(self.ip_proto(17))

    def udp_app(self, subtype: int) -> Expr:
        udp = self.has("flow") & (self.col("proto") == 17)
        return udp & self.net_present() & (self.col("net_subtype") == subtype)

    def k_proto(self, p: Prim) -> Expr:
        v = p.value
        if p.proto == "ether":
            known = {0x0800: self.linktype(ADDR_IPV4), 0x86DD: self.linktype(ADDR_IPV6),
                     0x0806: self.linktype(ADDR_ARP), 0x8035: self.linktype(ADDR_ARP)}
            return known.get(v, self.linktype(ADDR_ETHER) & (self.col("proto") == v))  # type: ignore[arg-type]
        if p.proto == "arp":
            return self.linktype(ADDR_ARP)
        return self.ip_proto(v, p.proto if p.proto in ("ipv4", "ipv6") else "")  # type: ignore[arg-type]

    def k_tcp(self, p: Prim) -> Expr:
        return self.ip_proto(6)

    def k_udp(self, p: Prim) -> Expr:
        return self.ip_proto(17)

    def k_icmp(self, p: Prim) -> Expr:
        return self.ip_proto(1)

    def k_igmp(self, p: Prim) -> Expr:
        return self.ip_proto(2)

    def k_arp(self, p: Prim) -> Expr:
        return self.is_type(RTYPE_FAR) & self.flag(self.col("flow_subtype"), self.has("flow"), 0x06)

    def k_rarp(self, p: Prim) -> Expr:
        return self.linktype(ADDR_ARP)  # ra tests the ARP key type for RARP too

    def k_ip(self, p: Prim) -> Expr:
        return self.linktype(ADDR_IPV4) | self.linktype(ADDR_IPV6)

    def k_ipv4(self, p: Prim) -> Expr:
        return self.linktype(ADDR_IPV4)

    def k_ipv6(self, p: Prim) -> Expr:
        return self.linktype(ADDR_IPV6)

    def k_isis(self, p: Prim) -> Expr:
        return self.linktype(ADDR_ISIS)

    def k_mpls(self, p: Prim) -> Expr:
        return self.has("mpls")

    def k_vlan(self, p: Prim) -> Expr:
        return self.has("vlan")

    def k_udt(self, p: Prim) -> Expr:
        return self.net_present() & (self.col("net_subtype") == NET_UDT)

    def k_rtp(self, p: Prim) -> Expr:
        return self.udp_app(NET_RTP)

    def k_rtcp(self, p: Prim) -> Expr:
        return self.udp_app(NET_RTCP)

    def k_all(self, p: Prim) -> Expr:
        return self.lit(True)

    # -- integer attributes
    def per_side(self, p: Prim, name: str, test: Callable[[Expr, Expr], Expr]) -> Expr:
        """Test field s<name> / d<name> of the field table, present when its DSR is."""
        def one(side: str) -> Expr:
            name_here = f"{side[0]}{name}"
            return test(self.field_value(name_here), self.has(self.field_dsr(name_here)))  # type: ignore[arg-type]

        return self.dsides(p.dir, one)

    def k_ttl(self, p: Prim) -> Expr:
        return self.linktype(ADDR_IPV4) & self.per_side(p, "ttl", lambda v, h: self.cmp(v, h, p.value, p.op))

    def k_tos(self, p: Prim) -> Expr:
        return self.linktype(ADDR_IPV4) & self.per_side(p, "tos", lambda v, h: self.cmp(v, h, p.value, p.op))

    def k_dsb(self, p: Prim) -> Expr:
        test = lambda v, h: self.mcmp(v, h, p.value, 0xFC, p.op)  # noqa: E731
        return self.linktype(ADDR_IPV4) & self.per_side(p, "tos", test)

    def k_ipid(self, p: Prim) -> Expr:
        return self.ip_proto(6) & self.per_side(p, "ipid", lambda v, h: self.cmp(v, h, p.value, p.op))

    def k_vid(self, p: Prim) -> Expr:
        return self.per_side(p, "vid", lambda v, h: self.mcmp(v, h, p.value, 0x0FFF))

    def k_vpri(self, p: Prim) -> Expr:
        v = (p.value << 12) & 0xFFFFFFFF  # type: ignore[operator]
        return self.dsides(p.dir, lambda side: self.mcmp(self.col(f"{side[0]}vlan"), self.has("vlan"),
                                                         v, 0xF000))

    def k_mid(self, p: Prim) -> Expr:
        # ra compares the label bits of the label stack entry (the field table has the label);
        # the destination entry is there only when the DSR carries destination labels.
        v = ((p.value << 12) & 0xFFFFFFFF) >> 12  # type: ignore[operator]

        def one(side: str) -> Expr:
            labels = (self.col("mpls_qual") & 0x0F) > 0 if side == DST else self.lit(True)
            present = self.has("mpls") & labels
            return self.mcmp(self.field_value(f"{side[0]}mpls"), present, v, 0xFFFFF, p.op)

        return self.dsides(p.dir, one)

    def counter(self, p: Prim, name: str) -> Expr:
        return self.per_side(p, name, lambda v, h: self.cmp(v, h, p.value, p.op))

    def k_pkts(self, p: Prim) -> Expr:
        return self.counter(p, "pkts")

    def k_bytes(self, p: Prim) -> Expr:
        return self.counter(p, "bytes")

    def k_appbytes(self, p: Prim) -> Expr:
        return self.counter(p, "appbytes")

    def k_nstroke(self, p: Prim) -> Expr:
        return self.per_side(p, "nstroke", lambda v, h: self.cmp(v, h, p.value, p.op))

    def k_asn(self, p: Prim) -> Expr:
        return self.per_side(p, "as", lambda v, h: self.cmp(v, h, p.value, p.op))

    def k_encaps(self, p: Prim) -> Expr:
        return sides(p.dir, lambda side: self.mcmp(self.col(f"{side[0]}encaps"), self.has("encaps"),
                                                   p.value, p.value))

    def k_co(self, p: Prim) -> Expr:
        code = p.value.rstrip(b"\0").decode("ascii", "replace")  # type: ignore[union-attr]
        return self.per_side(p, "co", lambda v, h: h & (v == code))

    def k_seq(self, p: Prim) -> Expr:
        return self.is_type(RTYPE_FAR) & self.cmp(self.col("seq"), self.has("transport"), p.value, p.op)

    def k_trans(self, p: Prim) -> Expr:
        # ra counts a flow record without an aggregation DSR as one transaction.
        count = self.when(self.has("agr")).then(self.col("agr_count").cast(self.dt("Int64"))).otherwise(1)
        return self.cmp(count, self.is_type(RTYPE_FAR), p.value, p.op)

    def k_tcpbase(self, p: Prim) -> Expr:
        return sides(p.dir, lambda side: self.cmp(*self.net_word(36 if side == SRC else 84), p.value, p.op))

    def k_spi(self, p: Prim) -> Expr:
        # ra overwrites the low half of the key's SPI word with its default masks (spec §6.2.4).
        i64 = self.dt("Int64")
        spi = self.col("smask").cast(i64) * 256 + self.col("dmask").cast(i64) + 0x20200000
        return self.ip_proto(50) & self.cmp(spi, self.lit(True), p.value, p.op)

    def k_deldur(self, p: Prim) -> Expr:
        return self.cmp(self.lit(0), self.has("cor"), p.value * 1000, p.op)  # type: ignore[operator]

    k_dellast = k_deldur

    def k_loss(self, p: Prim) -> Expr:
        return sides(p.dir, lambda side: self.cmp(self.field_value(f"{side[0]}loss"), self.lit(True),
                                                  p.value, p.op))

    def k_gap(self, p: Prim) -> Expr:
        def gap(side: str) -> Expr:
            s = side[0]
            i64 = self.dt("Int64")
            seq, base = self.col(f"{s}tcp_seq").cast(i64), self.col(f"{s}tcp_seqbase").cast(i64)
            nbytes = self.col(f"{s}tcp_bytes").cast(self.dt("Int64"))
            ok = (self.col(f"{s}tcp_retrans") == 0) & (seq != 0) & (base != self.col(f"{s}tcp_ackbytes"))
            value = self.when(ok).then(self.max_horizontal(seq - base - nbytes - 1, self.lit(0))).otherwise(0)
            perf = self.ip_proto(6) & (self.col("net_subtype") == NET_TCP_PERF)
            return self.cmp(value, perf, p.value, p.op)

        return sides(p.dir, gap)

    # -- floats
    def k_dur(self, p: Prim) -> Expr:
        return self.fcmp(self.duration(), self.lit(True), p.value, p.op)  # type: ignore[arg-type]

    def k_rate(self, p: Prim) -> Expr:
        return self.dsides(p.dir, lambda side: self.fcmp(self.side_rate(side, False), self.lit(True),
                                                         p.value, p.op))

    def k_load(self, p: Prim) -> Expr:
        return self.dsides(p.dir, lambda side: self.fcmp(self.side_rate(side, True), self.lit(True),
                                                         p.value, p.op))

    def k_ploss(self, p: Prim) -> Expr:
        # ra 3.0.8 never fills the percent-loss slots its filter reads: they are always 0.
        return self.fcmp(self.lit(0.0), self.lit(True), p.value, p.op)  # type: ignore[arg-type]

    def k_pcr(self, p: Prim) -> Expr:
        value = self.field_value("pcr")
        if self.swap:  # source and destination application bytes trade places
            value = self.when(value != 0).then(-value).otherwise(value)
        return self.is_type(RTYPE_FAR) & self.fcmp(value, self.lit(True), p.value, p.op)  # type: ignore[arg-type]

    def k_avgdur(self, p: Prim) -> Expr:
        # Argus 5 meaning (see DEVIATIONS): the mean duration of the merged records.
        mean = self.when(self.has("agr")).then(self.field_value("mean")).otherwise(self.duration())
        return self.fcmp(mean, self.lit(True), p.value, p.op)  # type: ignore[arg-type]

    def k_tcprtt(self, p: Prim) -> Expr:
        rtt = self.field_value("tcprtt")
        present = self.ip_proto(6) & self.net_present() & self.col("net_subtype").is_in([NET_TCP_PERF])
        return self.fcmp(rtt, present, float(p.value), p.op)  # type: ignore[arg-type]

    def jitter(self, p: Prim, stat: str, block: str) -> Expr:
        value = float(p.value) * 1000.0  # type: ignore[arg-type]

        def one(s: str, b: str) -> Expr:
            s = self.phys(SRC if s == "s" else DST)[0]
            return self.fcmp(self.col(f"{s}jit_{b}_{stat}"), self.has("jitter"), value, p.op)

        if p.dir == SRC:
            return one("s", block)
        if p.dir == DST:
            return one("d", block)
        if p.dir == EITHER:  # ra compares the destination's active block here, whatever was asked
            return one("s", block) | one("d", "act")
        return one("s", block) & one("d", block)  # no direction means both, in ra

    def k_inter(self, p: Prim) -> Expr:
        return self.jitter(p, "mean", "act")

    k_interact = k_inter

    def k_interidle(self, p: Prim) -> Expr:
        return self.jitter(p, "mean", "idl")

    def k_jitter(self, p: Prim) -> Expr:
        return self.jitter(p, "stdev", "act")

    k_jitact = k_jitter

    def k_jitidle(self, p: Prim) -> Expr:
        return self.jitter(p, "stdev", "idl")

    # -- TCP state, flags and options
    def tcp_flag(self, p: Prim) -> Expr:
        bits = TCP_FLAGS[p.kind]
        return self.ip_proto(6) & sides(p.dir, lambda side: self.flag(*self.net_flag_byte(side), bits))

    k_rst = tcp_flag

    def tcp_status(self, bits: int) -> Expr:
        return self.ip_proto(6) & self.flag(*self.net_word(4, tcp_only=True), bits)

    def paired(self, p: Prim) -> Expr:
        src, dst = PAIRED_STATUS[p.kind]
        return sides(p.dir, lambda side: self.tcp_status(src if side == SRC else dst))

    def conn_status(self, p: Prim) -> Expr:
        return self.tcp_status(CONN_STATUS[p.kind])

    def k_est(self, p: Prim) -> Expr:
        metric = self.has("metric")
        both = self.cmp(self.col("spkts"), metric, 0, GT) & self.cmp(self.col("dpkts"), metric, 0, GT)
        return (self.linktype(ADDR_IPV4) & both) | self.tcp_status(CON_ESTABLISHED)

    def k_retrans(self, p: Prim) -> Expr:
        def one(side: str) -> Expr:
            k = 0 if side == SRC else 1
            esp = self.ip_proto(50) & self.flag(*self.net_word(4), ESP_DROP[k])
            return esp | self.tcp_status(RETRANS[k])

        return sides(p.dir, one)

    def k_dup(self, p: Prim) -> Expr:
        bits = {SRC: DUPLICATES[0], DST: DUPLICATES[1]}.get(p.dir, DUPLICATES[0] | DUPLICATES[1])
        return self.flag(*self.net_word(4), bits)

    def k_frag(self, p: Prim) -> Expr:
        def one(side: str) -> Expr:
            return self.flag(self.col("attr_qual"), self.has("attr"), FRAGMENTS[0 if side == SRC else 1])

        direction = p.dir if p.dir in (SRC, DST) else EITHER
        return self.linktype(ADDR_IPV4) & self.dsides(direction, one)

    def k_multipath(self, p: Prim) -> Expr:
        bits = {SRC: 1, DST: 2, BOTH: 3}
        if p.dir in bits:
            return self.flag(self.col("mac_qual"), self.has("mac"), bits[self.phys(p.dir)])
        qual, mac = self.col("mac_qual"), self.has("mac")
        return self.flag(qual, mac, 1) | self.flag(qual, mac, 2)

    def k_hello(self, p: Prim) -> Expr:
        return self.linktype(ADDR_ISIS) & self.lit(False)  # IS-IS PDU types: no such keys from argus 3.0.8

    k_lsp = k_csnp = k_psnp = k_hello

    def tcp_option(self, p: Prim) -> Expr:
        return self.linktype(ADDR_IPV4) & self.flag(*self.net_word(12), TCP_OPTIONS[p.kind])

    # -- record types and causes
    def cause(self, p: Prim) -> Expr:
        return self.flag(self.col("cause"), self.lit(True), CAUSES[p.kind])

    def record_type(self, p: Prim) -> Expr:
        return self.is_type(RECORD_TYPES[p.kind])

    # -- ICMP and IGMP
    def icmp_type_is(self, value: int) -> Expr:
        return self.ip_proto(1) & self.cmp(*self.icmp_net_byte(0), value, EQ)

    def icmpmap_qual_is(self, value: int) -> Expr:
        return self.cmp(self.col("icmpmap_qual"), self.has("icmpmap"), value, EQ)

    def k_icmpmap(self, p: Prim) -> Expr:
        return self.has("icmpmap") & ((self.col("icmpmap_qual") & 0x07) != 0)

    def k_echo(self, p: Prim) -> Expr:
        byte, present = self.icmp_net_byte(0)
        return self.ip_proto(1) & (self.cmp(byte, present, 8, EQ) | self.cmp(byte, present, 0, EQ))

    def k_unreach(self, p: Prim) -> Expr:
        return self.icmp_type_is(3) | self.icmpmap_qual_is(1)

    def k_redirect(self, p: Prim) -> Expr:
        mapped_type = self.ip_proto(1) & self.cmp(self.col("icmpmap_type"), self.has("icmpmap"), 5, EQ)
        return mapped_type | self.icmpmap_qual_is(2)

    def k_timexed(self, p: Prim) -> Expr:
        return self.icmp_type_is(11) | self.icmpmap_qual_is(4)

    def k_unr(self, p: Prim) -> Expr:
        code, present = self.icmp_net_byte(1)
        own = self.icmp_type_is(3) & self.cmp(code, present, p.value, EQ)  # type: ignore[arg-type]
        mapped = self.icmpmap_qual_is(1) & (self.col("icmpmap_code") == p.value)
        return own | mapped

    def igmp_type(self) -> Expr:
        # ra loads the byte at offset 10 of the flow key.  It holds an IPv4 key's port words
        # in host order, so that byte is the key's next one (the code / max response time);
        # in an IPv6 key (proto 2 there is a garbled record) it is byte 10 of the source.
        v4 = self.col("sport").cast(self.dt("Int64")) & 0xFF
        v6 = (self.col("saddr_lo") // 2**40).cast(self.dt("Int64")) & 0xFF
        return self.when(self.linktype(ADDR_IPV6)).then(v6).otherwise(v4)

    def k_rtr(self, p: Prim) -> Expr:
        return self.ip_proto(2) & (self.igmp_type() == IGMP_QUERY)

    def k_mbr(self, p: Prim) -> Expr:
        return self.ip_proto(2) & (self.igmp_type() != IGMP_QUERY)

    def k_lvg(self, p: Prim) -> Expr:
        return self.ip_proto(2) & (self.igmp_type() == IGMP_LEAVE)

    def k_cocode(self, p: Prim) -> Expr:
        return ~(self.has("cocode") & (self.col("sco") == ""))

    # -- locality (Argus 5): without an RA_LOCAL table, private and link-local space is local
    def local_side(self, side: str) -> Expr:
        a = self.col(f"{side[0]}addr_lo")
        nets = [(0x0A000000, 8), (0xAC100000, 12), (0xC0A80000, 16), (0x7F000000, 8),
                (0xA9FE0000, 16)]
        v4 = self.any_horizontal([(a // 2 ** (32 - bits)) == (net >> (32 - bits)) for net, bits in nets])
        hi = self.col(f"{side[0]}addr_hi")
        v6 = ((hi // 2**57) == 0x7E) | ((hi // 2**54) == 0x3FA) | ((hi == 0) & (a == 1))
        return (self.linktype(ADDR_IPV4) & v4) | (self.linktype(ADDR_IPV6) & v6)

    def k_lcl(self, p: Prim) -> Expr:
        return self.local_side(SRC) | self.local_side(DST)

    def k_rem(self, p: Prim) -> Expr:
        ip = self.linktype(ADDR_IPV4) | self.linktype(ADDR_IPV6)
        return ip & (~self.local_side(SRC) | ~self.local_side(DST))

    # -- broadcast and multicast
    def k_multicast(self, p: Prim) -> Expr:
        if p.proto == "ether":
            group = lambda side: ((self.col(f"{side[0]}mac") // 2**40) & 1) == 1  # noqa: E731
            return self.has("mac") & sides(EITHER, group)
        high = lambda side: (self.col(f"{side[0]}addr_lo") & 0xF0000000) >= 0xE0000000  # noqa: E731
        return self.linktype(ADDR_IPV4) & sides(EITHER, high)

    def k_broadcast(self, p: Prim) -> Expr:
        if p.proto == "ether":
            every = 0xFFFFFFFFFFFF
            return self.has("mac") & sides(EITHER, lambda side: self.col(f"{side[0]}mac") == every)
        every_host = lambda side: self.col(f"{side[0]}addr_lo") == 0xFFFFFFFF  # noqa: E731
        return self.linktype(ADDR_IPV4) & sides(EITHER, every_host)


# Primitives that read a per-side value from a DSR ra reverses in ARP REVERSE records.
SWAP_KINDS = {"ttl", "tos", "dsb", "ipid", "vid", "vpri", "mid", "pkts", "bytes", "appbytes",
              "nstroke", "asn", "co", "ehost", "rate", "load", "pcr", "inter", "interact",
              "interidle", "jitter", "jitact", "jitidle", "multipath", "frag"}


def compile_node(node: Node, ops: type[PolarsOps] | type[NumpyOps] = PolarsOps) -> Expr:
    """The boolean expression selecting the records `node` accepts: polars by default, or
    with another back-end's building blocks (`ops`)."""
    compiler = Compiler(ops)
    plain = compiler.compile(node)
    if any(isinstance(p, Prim) and p.kind in SWAP_KINDS for p in node.walk()):
        swapped = Compiler(ops, swap=True).compile(node)
        plain = compiler.when(compiler.arp_reversed()).then(swapped).otherwise(plain)
    return plain.fill_null(False) & ~compiler.stream_header()


def compile_numpy(node: Node) -> numpy_ops.NpExpr | None:
    """compile_node with the numpy building blocks: a function of a batch's numpy columns
    (None when some primitive needs what only polars has)."""
    try:
        return compile_node(node, NumpyOps)  # type: ignore[return-value]
    except numpy_ops.Unsupported:
        return None
