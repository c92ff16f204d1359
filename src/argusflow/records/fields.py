"""The one table of Argus fields (STYLE §4): name, ra label, width, format, DSR, merge rule, value.

`FIELDS[name]` is a frozen `Field`.  `value()` builds the polars expression of the field's
*value* over a batch with the `records.schema` columns (after `derive.orient` when you want ra's
orientation): numbers for counters, times in microseconds, derived strings for state/dir/flgs.
The printer turns values into text by `fmt`; the filter, rasort and racluster use `value()`,
`present()` and `merge` directly.

Labels and default widths are those printed by `/usr/bin/ra -X` 3.0.8 (header line of
`ra -s FIELD`); a label longer than its width is cut by ra in the header (`SrcRetra`), so the
full label is kept here and `header_label` says what ra prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from argusflow.records import derive as d

c = pl.col

# Format kinds understood by the printer.
FMT_INT = "int"          # decimal integer
FMT_FLOAT = "float"      # fixed point, -p digits
FMT_TIME = "time"        # timestamp in microseconds, RA_TIME_FORMAT / -u
FMT_HEX4 = "hex4"        # 0x%04x
FMT_TEXT = "text"        # the value is already the printed string
FMT_SPECIAL = "special"  # printed by a dedicated printer function (addresses, ports, proto ...)

# Merge rules for racluster.
SUM, MIN, MAX, FIRST, LAST, OR, NONE = "sum", "min", "max", "first", "last", "or", "none"
# As racluster 3.0.8 merges (checked against it): kept only when every record agrees, else 0;
# addresses keep their longest common prefix; TTLs keep the smallest non-zero value.
EQUAL, PREFIX, MIN_NONZERO = "equal", "prefix", "min-nonzero"


@dataclass(frozen=True)
class Field:
    """One printable Argus field."""

    name: str
    label: str
    width: int
    fmt: str
    dsr: str | None
    merge: str
    value: Callable[[], pl.Expr]
    present: Callable[[], pl.Expr] | None = None  # False -> ra prints the field blank
    align: str = "r"      # value alignment in fixed-width output: r, l
    hdr_align: str = "r"  # label alignment: r, c (centred)
    hdr_extra: int = 0    # ra prints some labels one column wider than the values
    doc: str = ""

    @property
    def header_label(self) -> str:
        return self.label[: self.width]


def _col(name: str) -> Callable[[], pl.Expr]:
    return lambda: c(name)


def _has(dsr: str) -> Callable[[], pl.Expr]:
    return lambda: d.has(dsr)


def _attr(bitmask: int) -> Callable[[], pl.Expr]:
    return lambda: d.has("attr") & d.bit("attr_qual", bitmask)


_FIELDS: list[Field] = []


def _f(name: str, label: str, width: int, fmt: str, dsr: str | None, merge: str,
       value: Callable[[], pl.Expr], present: Callable[[], pl.Expr] | None = None, **kw: object) -> None:
    _FIELDS.append(Field(name, label, width, fmt, dsr, merge, value, present, **kw))  # type: ignore[arg-type]


# --- identity, times ----------------------------------------------------------------------------
_f("srcid", "SrcId", 18, FMT_SPECIAL, "transport", FIRST, _col("srcid"), doc="probe source id")
_f("seq", "Seq", 12, FMT_INT, "transport", FIRST, _col("seq"), hdr_align="c")
_f("rank", "Rank", 6, FMT_SPECIAL, None, NONE, lambda: pl.int_range(1, pl.len() + 1), hdr_align="c")
_f("stime", "StartTime", 18, FMT_TIME, "time", MIN, d.stime_us)
_f("ltime", "LastTime", 18, FMT_TIME, "time", MAX, d.ltime_us)
_f("sstime", "SrcStartTime", 18, FMT_TIME, "time", MIN, d.sstime_us, hdr_extra=1)
_f("sltime", "SrcLastTime", 18, FMT_TIME, "time", MAX, d.sltime_us, hdr_extra=1)
_f("dstime", "DstStartTime", 18, FMT_TIME, "time", MIN, d.dstime_us, hdr_extra=1)
_f("dltime", "DstLastTime", 18, FMT_TIME, "time", MAX, d.dltime_us, hdr_extra=1)
_f("dur", "Dur", 10, FMT_FLOAT, "time", NONE, d.dur)
_f("sdur", "SrcDur", 10, FMT_FLOAT, "time", NONE, d.sdur)
_f("ddur", "DstDur", 10, FMT_FLOAT, "time", NONE, d.ddur)
_f("trans", "Trans", 6, FMT_INT, "agr", SUM, d.trans)
_f("flgs", "Flgs", 9, FMT_SPECIAL, None, NONE, d.flgs, align="l")
_f("cause", "Cause", 7, FMT_SPECIAL, None, FIRST, _col("cause"))

# --- flow key -----------------------------------------------------------------------------------
_f("proto", "Proto", 6, FMT_SPECIAL, "flow", EQUAL, _col("proto"))
_f("saddr", "SrcAddr", 18, FMT_SPECIAL, "flow", PREFIX, _col("saddr_lo"))
_f("daddr", "DstAddr", 18, FMT_SPECIAL, "flow", PREFIX, _col("daddr_lo"))
_f("sport", "Sport", 6, FMT_SPECIAL, "flow", EQUAL, _col("sport"), align="l")
_f("dport", "Dport", 6, FMT_SPECIAL, "flow", EQUAL, _col("dport"), align="l")
_f("dir", "Dir", 5, FMT_SPECIAL, None, NONE, d.dir_)
_f("state", "State", 5, FMT_SPECIAL, "net", OR, lambda: d.state())

# --- counters -----------------------------------------------------------------------------------
_f("pkts", "TotPkts", 8, FMT_INT, "metric", SUM, d.pkts)
_f("spkts", "SrcPkts", 8, FMT_INT, "metric", SUM, _col("spkts"))
_f("dpkts", "DstPkts", 8, FMT_INT, "metric", SUM, _col("dpkts"))
_f("bytes", "TotBytes", 10, FMT_INT, "metric", SUM, d.bytes_)
_f("sbytes", "SrcBytes", 12, FMT_INT, "metric", SUM, _col("sbytes"))
_f("dbytes", "DstBytes", 12, FMT_INT, "metric", SUM, _col("dbytes"))
_f("appbytes", "TotAppBytes", 10, FMT_INT, "metric", SUM, d.appbytes)
_f("sappbytes", "SAppBytes", 12, FMT_INT, "metric", SUM, _col("sappbytes"))
_f("dappbytes", "DAppBytes", 12, FMT_INT, "metric", SUM, _col("dappbytes"))
_f("rate", "Rate", 12, FMT_FLOAT, "metric", NONE, d.rate)
_f("srate", "SrcRate", 12, FMT_FLOAT, "metric", NONE, lambda: d.dir_rate("s"))
_f("drate", "DstRate", 12, FMT_FLOAT, "metric", NONE, lambda: d.dir_rate("d"))
_f("load", "Load", 8, FMT_FLOAT, "metric", NONE, d.load)
_f("sload", "SrcLoad", 8, FMT_FLOAT, "metric", NONE, lambda: d.dir_load("s"))
_f("dload", "DstLoad", 8, FMT_FLOAT, "metric", NONE, lambda: d.dir_load("d"))
_f("pcr", "PCRatio", 10, FMT_FLOAT, "metric", NONE, d.pcr)
_f("loss", "Loss", 10, FMT_INT, "net", SUM, d.loss)
_f("sloss", "SrcLoss", 10, FMT_INT, "net", SUM, lambda: d.dir_loss("s"))
_f("dloss", "DstLoss", 10, FMT_INT, "net", SUM, lambda: d.dir_loss("d"))
_f("ploss", "pLoss", 8, FMT_FLOAT, "net", NONE, d.ploss)
_f("sploss", "pSrcLoss", 10, FMT_FLOAT, "net", NONE, lambda: d.dir_ploss("s"))
_f("dploss", "pDstLoss", 10, FMT_FLOAT, "net", NONE, lambda: d.dir_ploss("d"))
_f("retrans", "Retrans", 7, FMT_INT, "net", SUM, lambda: pl.lit(0))
_f("sretrans", "SrcRetrans", 8, FMT_INT, "net", SUM, lambda: pl.lit(0))
_f("dretrans", "DstRetrans", 8, FMT_INT, "net", SUM, lambda: pl.lit(0))
_f("pretrans", "pRetrans", 7, FMT_FLOAT, "net", NONE, lambda: pl.lit(0.0))
_f("spretrans", "pSrcRetrans", 8, FMT_FLOAT, "net", NONE, lambda: pl.lit(0.0))
_f("dpretrans", "pDstRetrans", 8, FMT_FLOAT, "net", NONE, lambda: pl.lit(0.0))
_f("sgap", "SrcGap", 8, FMT_INT, "net", SUM, lambda: d.gap_bytes("s"), present=d.is_tcp_net)
_f("dgap", "DstGap", 8, FMT_INT, "net", SUM, lambda: d.gap_bytes("d"), present=d.is_tcp_net)

# --- IP attributes -------------------------------------------------------------------------------
def _hops(ttl: pl.Expr) -> pl.Expr:
    """ra's hop estimate: distance from the TTL up to the next power of two (0 -> 1)."""
    out = pl.lit(256) - ttl
    for k in range(7, -1, -1):
        out = pl.when(ttl <= (1 << k)).then(pl.lit(1 << k) - ttl).otherwise(out)
    return out


_f("sttl", "sTtl", 4, FMT_INT, "attr", MIN_NONZERO, _col("sttl"), _attr(0x01))
_f("dttl", "dTtl", 4, FMT_INT, "attr", MIN_NONZERO, _col("dttl"), _attr(0x02))
_f("shops", "sHops", 5, FMT_INT, "attr", LAST, lambda: _hops(c("sttl").cast(pl.Int32)), _attr(0x01))
_f("dhops", "dHops", 5, FMT_INT, "attr", LAST, lambda: _hops(c("dttl").cast(pl.Int32)), _attr(0x02))
_f("stos", "sTos", 5, FMT_INT, "attr", EQUAL, _col("stos"), _attr(0x01))
_f("dtos", "dTos", 5, FMT_INT, "attr", EQUAL, _col("dtos"), _attr(0x02))
_f("sdsb", "sDSb", 5, FMT_SPECIAL, "attr", LAST, lambda: c("stos") // 4, _attr(0x01))
_f("ddsb", "dDSb", 5, FMT_SPECIAL, "attr", LAST, lambda: c("dtos") // 4, _attr(0x02))
_f("sipid", "sIpId", 7, FMT_HEX4, "attr", LAST, _col("sipid"), _attr(0x01))
_f("dipid", "dIpId", 7, FMT_HEX4, "attr", LAST, _col("dipid"), _attr(0x02))

# --- TCP ------------------------------------------------------------------------------------------
_PERF = lambda: d.is_tcp_net()  # noqa: E731
_f("swin", "SrcWin", 6, FMT_INT, "net", LAST,
   lambda: (c("stcp_win").cast(pl.Float64) * pl.lit(2.0).pow(c("stcp_winshift"))).cast(pl.UInt64),
   lambda: _PERF() & (c("spkts") > 0))
_f("dwin", "DstWin", 6, FMT_INT, "net", LAST,
   lambda: (c("dtcp_win").cast(pl.Float64) * pl.lit(2.0).pow(c("dtcp_winshift"))).cast(pl.UInt64),
   lambda: _PERF() & (c("spkts") > 0) & (c("dpkts") > 0))
_f("stcpb", "SrcTCPBase", 12, FMT_INT, "net", FIRST, _col("stcp_seqbase"),
   lambda: _PERF() & (c("stcp_seqbase") != 0))
_f("dtcpb", "DstTCPBase", 12, FMT_INT, "net", FIRST, _col("dtcp_seqbase"),
   lambda: _PERF() & (c("dtcp_seqbase") != 0))
_f("tcprtt", "TcpRtt", 12, FMT_FLOAT, "net", LAST,
   lambda: ((c("tcp_synack").cast(pl.UInt64) + c("tcp_ackdat").cast(pl.UInt64)) % (1 << 32))
   .cast(pl.Float64) / 1e6)  # ra adds the two u32 and wraps
_f("synack", "SynAck", 12, FMT_FLOAT, "net", LAST, lambda: c("tcp_synack").cast(pl.Float64) / 1e6)
_f("ackdat", "AckDat", 12, FMT_FLOAT, "net", LAST, lambda: c("tcp_ackdat").cast(pl.Float64) / 1e6)
_f("tcpopt", "TcpOpt", 12, FMT_SPECIAL, "net", LAST, _col("tcp_options"), align="l")

# --- packet sizes -------------------------------------------------------------------------------
_f("smeansz", "sMeanPktSz", 12, FMT_FLOAT, "metric", NONE, lambda: d.meansz("s"))
_f("dmeansz", "dMeanPktSz", 12, FMT_FLOAT, "metric", NONE, lambda: d.meansz("d"))
_f("smaxsz", "sMaxPktSz", 12, FMT_INT, "psize", MAX, _col("smaxsz"),
   lambda: d.has("psize") & (c("smaxsz") > 0))
_f("sminsz", "sMinPktSz", 12, FMT_INT, "psize", MIN, _col("sminsz"),
   lambda: d.has("psize") & (c("smaxsz") > 0))
_f("dmaxsz", "dMaxPktSz", 12, FMT_INT, "psize", MAX, _col("dmaxsz"),
   lambda: d.has("psize") & (c("dmaxsz") > 0))
_f("dminsz", "dMinPktSz", 12, FMT_INT, "psize", MIN, _col("dminsz"),
   lambda: d.has("psize") & (c("dmaxsz") > 0))
_HIST = lambda: d.has("psize") & d.bit("psize_subtype", 0x04)  # noqa: E731
_f("spktsz", "sPktSz", 12, FMT_SPECIAL, "psize", NONE, _col("spktsz_hist"), _HIST)
_f("dpktsz", "dPktSz", 12, FMT_SPECIAL, "psize", NONE, _col("dpktsz_hist"), _HIST)

# --- jitter ---------------------------------------------------------------------------------------
for _s, _S in (("s", "S"), ("d", "D")):
    _src = "Src" if _s == "s" else "Dst"
    # ra prints SIntPkt whenever there is a jitter DSR, DIntPkt only with destination blocks
    _f(f"{_s}intpkt", f"{_S}IntPkt", 12, FMT_FLOAT, "jitter", NONE,
       lambda s=_s: d.intpkt(s), _has("jitter") if _s == "s" else (lambda s=_s: d.jit_present(s)))
    for _b, _B in (("act", "Act"), ("idl", "Idl")):
        _f(f"{_s}intpkt{_b}", f"{_S}IntPkt{_B}", 12, FMT_FLOAT, "jitter", NONE,
           lambda s=_s, b=_b: d.intpkt(s, b), _has("jitter"))
    _f(f"{_s}jit", f"{_src}Jitter", 12, FMT_FLOAT, "jitter", NONE,
       lambda s=_s: d.jitter(s), lambda s=_s: d.jit_present(s))
    for _b, _B in (("act", "Act"), ("idl", "Idl")):
        _f(f"{_s}jit{_b}", f"{_src}Jit{_B}", 12, FMT_FLOAT, "jitter", NONE,
           lambda s=_s, b=_b: d.jitter(s, b), lambda s=_s, b=_b: d.jit_present(s, b))
    _f(f"{_s}intdist", f"{_S}IntDist", 8, FMT_TEXT, "jitter", NONE, lambda: pl.lit(""))
    _f(f"{_s}intdistact", f"{_S}IntActDist", 11, FMT_TEXT, "jitter", NONE, lambda: pl.lit(""))
    _f(f"{_s}intdistidl", f"{_S}IntIdlDist", 11, FMT_TEXT, "jitter", NONE, lambda: pl.lit(""))

# --- layer 2 --------------------------------------------------------------------------------------
_f("smac", "SrcMac", 18, FMT_SPECIAL, "mac", FIRST, _col("smac"), _has("mac"))
_f("dmac", "DstMac", 18, FMT_SPECIAL, "mac", FIRST, _col("dmac"), _has("mac"))
_f("soui", "SrcOui", 9, FMT_TEXT, "mac", FIRST, lambda: pl.lit(""))
_f("doui", "DstOui", 9, FMT_TEXT, "mac", FIRST, lambda: pl.lit(""))
_f("svlan", "sVlan", 8, FMT_HEX4, "vlan", FIRST, _col("svlan"),
   lambda: d.has("vlan") & d.bit("vlan_qual", 0x01))
_f("dvlan", "dVlan", 8, FMT_HEX4, "vlan", FIRST, _col("dvlan"),
   lambda: d.has("vlan") & d.bit("vlan_qual", 0x02))
_f("svid", "sVid", 6, FMT_INT, "vlan", FIRST, lambda: c("svlan") & 0x0FFF,
   lambda: d.has("vlan") & d.bit("vlan_qual", 0x01))
_f("dvid", "dVid", 6, FMT_INT, "vlan", FIRST, lambda: c("dvlan") & 0x0FFF,
   lambda: d.has("vlan") & d.bit("vlan_qual", 0x02))
_f("svpri", "sVpri", 6, FMT_TEXT, "vlan", FIRST, lambda: pl.lit(""))
_f("dvpri", "dVpri", 6, FMT_TEXT, "vlan", FIRST, lambda: pl.lit(""))
_f("smpls", "sMpls", 8, FMT_INT, "mpls", FIRST, lambda: c("smpls") // 4096,
   lambda: d.has("mpls") & d.bit("mpls_subtype", 0x01))
_f("dmpls", "dMpls", 8, FMT_INT, "mpls", FIRST, lambda: c("dmpls") // 4096,
   lambda: d.has("mpls") & d.bit("mpls_subtype", 0x02))

# --- user data, labels, AS, ICMP ----------------------------------------------------------------
_f("suser", "srcUdata", 16, FMT_SPECIAL, "suser", FIRST, _col("suser"), _has("suser"),
   align="l", hdr_align="c")
_f("duser", "dstUdata", 16, FMT_SPECIAL, "duser", FIRST, _col("duser"), _has("duser"),
   align="l", hdr_align="c")
_f("label", "Label", 5, FMT_TEXT, "label", FIRST, _col("label"), _has("label"), align="l")
_f("sco", "sCo", 3, FMT_TEXT, "cocode", FIRST, _col("sco"), _has("cocode"))
_f("dco", "dCo", 3, FMT_TEXT, "cocode", FIRST, _col("dco"), _has("cocode"))
_f("sas", "sAS", 6, FMT_INT, "asn", FIRST, _col("sas"), _has("asn"))
_f("das", "dAS", 6, FMT_INT, "asn", FIRST, _col("das"), _has("asn"))
_f("ias", "iAS", 5, FMT_INT, "asn", FIRST, _col("ias"), _has("asn"))
_f("inode", "Inode", 18, FMT_SPECIAL, "icmpmap", FIRST, _col("icmpmap_osrc"),
   lambda: d.has("icmpmap") & d.bit("icmpmap_qual", 0x07))
_f("icmpid", "IcmpId", 6, FMT_INT, "flow", FIRST,
   # ra reads an ICMPv6 key's id slot in host order (argus leaves it 0 in the flows it
   # tracks; garbled keys carry bytes there)
   lambda: pl.when(d.is_icmp6()).then(
       pl.when(c("sport") == 0).then(0).otherwise((c("dport") % 256) * 256 + c("dport") // 256))
   .otherwise(c("dport")),
   lambda: d.is_icmp4() | d.is_icmp6())

# --- aggregation ---------------------------------------------------------------------------------
_f("mean", "Mean", 10, FMT_FLOAT, "agr", NONE, lambda: d.agr_stat("mean"))
_f("stddev", "StdDev", 10, FMT_FLOAT, "agr", NONE, lambda: d.agr_stat("stddev"))
_f("min", "Min", 10, FMT_FLOAT, "agr", MIN, lambda: d.agr_stat("min"))
_f("max", "Max", 10, FMT_FLOAT, "agr", MAX, lambda: d.agr_stat("max"))
_f("sum", "Sum", 10, FMT_FLOAT, "agr", SUM, lambda: d.agr_stat("sum"))
_f("runtime", "RunTime", 10, FMT_FLOAT, "agr", SUM, lambda: d.agr_stat("runtime"))
_f("idle", "IdleTime", 10, FMT_SPECIAL, None, NONE, d.ltime_us)

# --- behaviour, misc -------------------------------------------------------------------------------
_f("nstroke", "NStrok", 9, FMT_INT, "behavior", SUM, lambda: c("snstroke") + c("dnstroke"),
   _has("behavior"))
_f("snstroke", "sNStrok", 9, FMT_INT, "behavior", SUM, _col("snstroke"), _has("behavior"))
_f("dnstroke", "dNStrok", 9, FMT_INT, "behavior", SUM, _col("dnstroke"), _has("behavior"))
_f("srng", "SRange", 6, FMT_TEXT, None, NONE, lambda: pl.lit(""))
_f("erng", "ERange", 6, FMT_TEXT, None, NONE, lambda: pl.lit(""))
_f("offset", "Offset", 12, FMT_INT, None, FIRST, _col("offset"))
_f("autoid", "AutoId", 6, FMT_INT, None, NONE, lambda: pl.lit(0))

FIELDS: dict[str, Field] = {f.name: f for f in _FIELDS}

DEFAULT_FIELDS: tuple[str, ...] = (
    "stime", "flgs", "proto", "saddr", "sport", "dir", "daddr", "dport", "pkts", "bytes", "state")


def field(name: str) -> Field:
    """The field called `name`; KeyError names the field."""
    return FIELDS[name]
