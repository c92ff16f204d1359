"""rasort's ordering (rasort(1), 3.0.8): sort keys by name, and one stable argsort over a batch.

The real rasort queues every flow record (MARs are dropped) and sorts them with glibc's qsort,
which is a merge sort: records whose keys compare equal keep their input order.  Without -m it
does not sort at all (its man page says stime is the default; 3.0.8 prints the input order).
Each key here is a list of polars expressions with a direction; one `arg_sort_by(...,
maintain_order=True)` over the whole batch gives the same order.

Directions are those of 3.0.8's comparison functions (not uniform: counters, rates, loads, TOS,
the protocol, VLAN/MPLS labels, TCP bases and round-trip time sort largest first; times,
durations, addresses, ports, TTLs, minimum packet sizes, source ids and AS numbers smallest
first).  `-v` reverses them all, except the flow-type prefix of an address key (3.0.8 returns
that comparison before its reversal).  Keys are matched as 3.0.8 matches them: the first keyword,
in its table order, that the given word starts with (`mindur` is `min`, `saddr/24` is `saddr`).

Keys 3.0.8 compares only between records that both carry what they read (TTLs, TOS, MACs, IP
ids, aggregation counts, packet sizes, AS numbers, source ids, sequence numbers) call two records
equal when either lacks it: no order, so where such records land depends on the merge sort's
steps.  When some records lack it, `merge_sort_order` (ops.sortkernel, a compiled loop) follows
glibc's merge sort step by step.

Known approximations: the TCP keys (stcpb, dtcpb, tcprtt) read 0 for records without a TCP
object (3.0.8's order there is not reproduced yet).  3.0.8's IPv6 dport is read by the other
record's protocol (with IPv4 and IPv6 records mixed, no order either); its idle time is a C
float of now - start (8 s steps): here the start time, latest first.  `tranref` compares
nothing in 3.0.8 and keeps the input order; so do `sco`/`dco`, which compare a record with
itself there.  `soui`/`doui` (vendor names) are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from argusflow.errors import UsageError
from argusflow.ops.sortkernel import merge_sort_order
from argusflow.records import derive as d
from argusflow.records.schema import ADDR_ETHER, ADDR_IPV4, ADDR_IPV6

c = pl.col
ASC, DESC = False, True
FLOW_CLASSIC, FLOW_MATRIX = 1, 3  # flow DSR subtypes (& 0x3F): 5-tuple, layer-3 matrix
IPPROTO_TCP, IPPROTO_UDP = 6, 17


@dataclass(frozen=True)
class Part:
    """One sort column: its value, its direction, and whether -v turns it round."""

    expr: pl.Expr
    descending: bool
    reversible: bool = True
    present: pl.Expr | None = None  # 3.0.8 compares the value only when both records have it


Builder = Callable[[int], list[Part]]  # the address prefix length (0: whole) -> parts


@dataclass(frozen=True)
class SortKey:
    word: str  # as given (`saddr/24`)
    keyword: str  # the 3.0.8 keyword it matched (`saddr`)
    parts: list[Part]


def _num(expr: pl.Expr) -> pl.Expr:
    """A value as 3.0.8 compares it when the DSR is there: numbers, never null or NaN."""
    return expr.cast(pl.Float64).fill_nan(0.0).fill_null(0.0)


def _one(expr: Callable[[], pl.Expr], descending: bool) -> Builder:
    return lambda _cidr: [Part(_num(expr()), descending)]


def _given(present: Callable[[], pl.Expr], value: Callable[[], pl.Expr], descending: bool) -> Builder:
    """A value 3.0.8 compares only between two records that both carry it (else: equal)."""
    return lambda _cidr: [Part(_num(value()), descending, present=present())]


def _has(dsr: str, column: str, descending: bool, scale: int = 1) -> Builder:
    return _given(lambda: d.has(dsr), lambda: c(column) // scale, descending)


def _col(name: str, descending: bool) -> Builder:
    return _one(lambda: c(name), descending)


def _classic_ip() -> pl.Expr:
    return ((c("flow_subtype") & 0x3F) == FLOW_CLASSIC) & d.addr_type().is_in([ADDR_IPV4, ADDR_IPV6])


def _port(name: str) -> Builder:
    """Ports of TCP and UDP 5-tuples; 0 for other IPv4 keys; other IPv6 keys (ICMPv6) compare
    the ICMPv6 type as sport and its code as dport (checked against 3.0.8 with types 1, 3, 128,
    129, 133 and 135, codes 0 and 4)."""
    def parts(_cidr: int) -> list[Part]:
        port = c(name).cast(pl.Int64)
        icmp6 = c("sport").cast(pl.Int64)  # type << 8 | code
        icmp6 = icmp6 // 256 if name == "sport" else icmp6 % 256
        tcp_udp = _classic_ip() & c("proto").is_in([IPPROTO_TCP, IPPROTO_UDP])
        other6 = _classic_ip() & (d.addr_type() == ADDR_IPV6)
        return [Part(pl.when(tcp_udp).then(port).when(other6).then(icmp6).otherwise(0), ASC)]
    return parts


def _proto(_cidr: int) -> list[Part]:
    return [Part(pl.when(_classic_ip()).then(c("proto")).otherwise(0).cast(pl.Int64), DESC)]


def _word_swapped(half: pl.Expr) -> pl.Expr:
    """A u64 of two big-endian 32-bit words with each word's bytes reversed: 3.0.8 compares an
    IPv6 address as four u32 words read in host (little-endian) order from network bytes."""
    out = pl.lit(0, dtype=pl.UInt64)
    for word in (1 << 32, 1):
        value = (half // word) % (1 << 32)
        for k in range(4):
            byte = (value // (1 << (8 * k))) % 256
            out = out + byte * (word << (8 * (3 - k)))
    return out


def _address(side: str) -> Builder:
    """Flow type (subtype, then address type: never reversed), then the address: IPv4 cut to
    the prefix, IPv6 as two halves (words in host order), MAC/ARP as numbers.  3.0.8's daddr
    of an Ethernet key compares the source MAC (sic)."""
    def parts(cidr: int) -> list[Part]:
        kind = ((c("flow_subtype") & 0x3F).cast(pl.Int64) * 256 + d.addr_type().cast(pl.Int64))
        typ = d.addr_type()
        lo = c(f"{side}addr_lo").cast(pl.UInt64)
        if side == "d":
            lo = pl.when(typ == ADDR_ETHER).then(c("saddr_lo")).otherwise(lo)
        shift = 32 - (cidr if 0 < cidr <= 32 else 32)
        if shift:
            lo = pl.when(typ == ADDR_IPV4).then((lo // (1 << shift)) * (1 << shift)).otherwise(lo)
        v6 = typ == ADDR_IPV6
        hi = pl.when(v6).then(_word_swapped(c(f"{side}addr_hi").cast(pl.UInt64))).otherwise(0)
        lo = pl.when(v6).then(_word_swapped(lo)).otherwise(lo)
        matrix = (c("flow_subtype") & 0x3F) == FLOW_MATRIX  # 3.0.8 compares no address of these
        return [Part(kind, ASC, reversible=False),
                Part(pl.when(matrix).then(0).otherwise(hi).cast(pl.UInt64), ASC),
                Part(pl.when(matrix).then(0).otherwise(lo).cast(pl.UInt64), ASC)]
    return parts


def _label(side: str, kind: str) -> Builder:
    """VLAN ids and MPLS labels, largest first; records with the tag before those with the DSR
    but not that tag, before those without the DSR."""
    def parts(_cidr: int) -> list[Part]:
        if kind == "vlan":
            dsr, bit, value = "vlan", "vlan_qual", c(f"{side}vlan") & 0x0FFF
        else:
            dsr, bit, value = "mpls", "mpls_subtype", c(f"{side}mpls") // 4096
        mask = 1 if side == "s" else 2
        key = (pl.when(d.has(dsr) & d.bit(bit, mask)).then(value.cast(pl.Int64) + 2)
               .when(d.has(dsr)).then(1).otherwise(0))
        return [Part(key, DESC)]
    return parts


def _ttl(side: str) -> Builder:
    mask = 1 if side == "s" else 2
    return _given(lambda: d.has("attr") & d.bit("attr_qual", mask), lambda: c(f"{side}ttl"), ASC)


def _tcp(value: Callable[[], pl.Expr]) -> Builder:
    """TCP-only values (base sequence numbers, round-trip time), largest first.  3.0.8 compares
    them between records that both have a network DSR, but which records it sees one on is not
    settled (comparing only those with ours does not give its order): 0 for the others here."""
    return _one(lambda: pl.when(_classic_ip() & (c("proto") == IPPROTO_TCP) & d.has("net"))
                .then(value()).otherwise(0), DESC)


def _psize(name: str, descending: bool) -> Builder:
    return _has("psize", name, descending)


def _f32(expr: Callable[[], pl.Expr]) -> Callable[[], pl.Expr]:
    """3.0.8 compares these as C floats."""
    return lambda: expr().cast(pl.Float32)


def _per_second(count: pl.Expr) -> pl.Expr:
    """3.0.8's sort rate: packets over the double duration (not the printed (pkts-1)/dur)."""
    dur = d.dur().cast(pl.Float64)  # a C float, as ra keeps it
    return pl.when(dur > 0).then(count.cast(pl.Float64) / dur).otherwise(0.0)


def _none(_cidr: int) -> list[Part]:
    return []


def _refused(keyword: str) -> Builder:
    def parts(_cidr: int) -> list[Part]:
        raise UsageError(f"-m {keyword}: sorting by vendor name is not supported")
    return parts


_RTT = lambda: (c("tcp_synack").cast(pl.UInt64) + c("tcp_ackdat").cast(pl.UInt64)) % (1 << 32)  # noqa: E731

# 3.0.8's keyword table, in its order (the order decides which keyword a word matches).
KEYWORDS: list[tuple[str, Builder]] = [
    ("stime", _one(d.stime_us, ASC)),
    ("ltime", _one(d.ltime_us, ASC)),
    ("trans", _has("agr", "agr_count", DESC)),
    ("dur", _one(lambda: d.ltime_us() - d.stime_us(), ASC)),
    ("mean", _one(_f32(lambda: d.agr_stat("mean")), ASC)),
    ("min", _one(_f32(lambda: d.agr_stat("min")), ASC)),
    ("max", _one(_f32(lambda: d.agr_stat("max")), ASC)),
    ("smac", _has("mac", "smac", ASC)),
    ("dmac", _has("mac", "dmac", ASC)),
    ("saddr", _address("s")),
    ("daddr", _address("d")),
    ("proto", _proto),
    ("sipid", _has("attr", "sipid", DESC)),
    # 3.0.8 compares the low byte of the *source* IP id for dipid
    ("dipid", _given(lambda: d.has("attr"), lambda: c("sipid") & 0xFF, DESC)),
    ("sport", _port("sport")),
    ("dport", _port("dport")),
    ("stos", _has("attr", "stos", DESC)),
    ("dtos", _has("attr", "dtos", DESC)),
    ("sttl", _ttl("s")),
    ("dttl", _ttl("d")),
    ("bytes", _one(d.bytes_, DESC)),
    ("sbytes", _col("sbytes", DESC)),
    ("dbytes", _col("dbytes", DESC)),
    ("pkts", _one(d.pkts, DESC)),
    ("spkts", _col("spkts", DESC)),
    ("dpkts", _col("dpkts", DESC)),
    ("appbytes", _one(d.appbytes, DESC)),
    ("sappbytes", _col("sappbytes", DESC)),
    ("dappbytes", _col("dappbytes", DESC)),
    ("load", _one(d.load, DESC)),
    ("sload", _one(lambda: d.dir_load("s"), DESC)),
    ("dload", _one(lambda: d.dir_load("d"), DESC)),
    ("loss", _one(d.loss, DESC)),
    ("ploss", _one(d.ploss, DESC)),
    ("rate", _one(lambda: _per_second(d.pkts()), DESC)),
    ("srate", _one(lambda: d.dir_rate("s"), DESC)),
    ("drate", _one(lambda: d.dir_rate("s"), DESC)),  # 3.0.8 compares the source rate (sic)
    ("tranref", _none),
    ("seq", _has("transport", "seq", ASC)),
    ("smpls", _label("s", "mpls")),
    ("dmpls", _label("d", "mpls")),
    ("svlan", _label("s", "vlan")),
    ("dvlan", _label("d", "vlan")),
    ("srcid", _has("transport", "srcid", ASC)),
    ("stcpb", _tcp(lambda: c("stcp_seqbase"))),
    ("dtcpb", _tcp(lambda: c("dtcp_seqbase"))),
    ("tcprtt", _tcp(_RTT)),
    ("sloss", _one(lambda: d.dir_loss("s"), DESC)),
    ("dloss", _one(lambda: d.dir_loss("d"), DESC)),
    ("sploss", _one(lambda: d.dir_ploss("s"), DESC)),
    ("dploss", _one(lambda: d.dir_ploss("d"), DESC)),
    ("smaxsz", _psize("smaxsz", DESC)),
    ("sminsz", _psize("sminsz", ASC)),
    ("dmaxsz", _psize("dmaxsz", DESC)),
    ("dminsz", _psize("dminsz", ASC)),
    ("sdsb", _has("attr", "stos", DESC, scale=4)),
    ("ddsb", _has("attr", "dtos", DESC, scale=4)),
    ("sco", _none),
    ("dco", _none),
    ("sas", _has("asn", "sas", ASC)),
    ("das", _has("asn", "das", ASC)),
    ("sum", _one(_f32(lambda: d.agr_stat("sum")), ASC)),
    ("runtime", _one(_f32(lambda: d.agr_stat("sum")), ASC)),
    ("idle", _one(d.stime_us, DESC)),  # 3.0.8's idle time runs from the start time
    ("soui", _refused("soui")),
    ("doui", _refused("doui")),
]


def match_keyword(word: str) -> tuple[str, Builder]:
    for keyword, builder in KEYWORDS:
        if word.startswith(keyword):
            return keyword, builder
    raise UsageError(f"sort syntax error. '{word}' not supported; see 'man rasort'")


def parse_keys(words: list[str]) -> list[SortKey]:
    """`-m` words as sort keys.  None: no key, the input order (rasort 3.0.8 without -m does not
    sort, whatever its man page says).  One prefix length serves every address key: 3.0.8 keeps
    one, the last `saddr/N` or `daddr/N` given."""
    matched = [(word, *match_keyword(word)) for word in words]
    cidr = 0
    for word, keyword, _ in matched:
        if keyword in ("saddr", "daddr") and "/" in word:
            cidr = _prefix(word)
    return [SortKey(word, keyword, builder(cidr)) for word, keyword, builder in matched]


def _prefix(word: str) -> int:
    text = word.split("/", 1)[1]
    digits = text[:len(text) - len(text.lstrip("0123456789"))]  # atoi: leading digits
    return int(digits) if digits else 0


def key_columns(keys: list[SortKey]) -> frozenset[str]:
    """The batch columns the keys read (for a reader that decodes only some)."""
    names: set[str] = set()
    for key in keys:
        for part in key.parts:
            names.update(part.expr.meta.root_names())
            if part.present is not None:
                names.update(part.present.meta.root_names())
    return frozenset(names)


def sort_order(batch: pl.DataFrame, keys: list[SortKey], reverse: bool = False) -> np.ndarray:
    """Row numbers of `batch` in rasort's order: stable, ties in input order."""
    parts = [part for key in keys for part in key.parts]
    if not parts or batch.height < 2:
        return np.arange(batch.height, dtype=np.int64)
    descending = [part.descending != (reverse and part.reversible) for part in parts]
    present = [None if part.present is None else batch.select(part.present).to_series().to_numpy()
               for part in parts]
    if any(p is not None and not p.all() for p in present):
        values = [batch.select(part.expr).to_series().to_numpy() for part in parts]
        return merge_sort_order(values, present, descending)
    order = batch.select(pl.arg_sort_by([part.expr for part in parts], descending=descending,
                                        maintain_order=True))
    return order.to_series().to_numpy().astype(np.int64)
