"""What ra derives from the stored DSR values: times, rates, state, dir, flags, names (spec §9).

Every function returns a polars expression over the columns of `records.schema` (after
`orient`), so that the printer, the filter, rasort and racluster compute a derived value the same
way and over whole batches.  Single-precision float arithmetic is deliberate where ra 3.0.8 uses
C `float` (rates, loads, mean sizes, aggregation statistics): it changes the printed digits.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from argusflow.records.naming import (  # noqa: F401 - derive's API names them too
    _ENCAPS_LETTERS,
    _ICMP6_STATES,
    _ICMP6_UNREACH,
    _ICMP_STATES,
    _IP_PROTOCOLS,
    _IPOPT_LETTERS,
    _MAR_STATES,
    _UNREACH,
    CON_ESTABLISHED,
    DIR_TEXTS,
    DST_CONGESTED,
    DST_OUTOFORDER,
    DST_RESET,
    DST_RETRANS,
    DST_WINDOW_SHUT,
    ETHER_TYPES,
    FIN,
    FIN_ACK,
    IPPROTO_ESP,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_IGMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    LLC_SAPS,
    NORMAL_CLOSE,
    RTP_DST_SILENCE,
    RTP_SRC_SILENCE,
    SAW_SYN,
    SAW_SYN_SENT,
    SRC_CONGESTED,
    SRC_OUTOFORDER,
    SRC_RESET,
    SRC_RETRANS,
    SRC_WINDOW_SHUT,
    STATE_TEXTS,
    TH_ACK,
    TH_CWR,
    TH_ECE,
    TH_FIN,
    TH_PSH,
    TH_RST,
    TH_SYN,
    TH_URG,
    protocols,
    services,
)
from argusflow.records.schema import (
    ADDR_ARP,
    ADDR_ETHER,
    ADDR_IPV4,
    ADDR_IPV6,
    ADDR_RARP,
    DSR_BITS,
    NET_ESP,
    NET_RTP,
    NET_TCP_INIT,
    NET_TCP_PERF,
    NET_TCP_STATUS,
    RTYPE_MAR,
    RTYPE_NETFLOW,
)

c = pl.col
F32, F64 = pl.Float32, pl.Float64


def has(dsr: str) -> pl.Expr:
    """True where the record carried DSR `dsr`."""
    return (c("dsrs") & DSR_BITS[dsr]) != 0


def bit(column: str, mask: int) -> pl.Expr:
    return (c(column) & mask) != 0


def is_mar() -> pl.Expr:
    return c("rtype") == RTYPE_MAR


def addr_type() -> pl.Expr:
    return c("flow_qual") & 0x1F


def is_ip() -> pl.Expr:
    return addr_type().is_in([ADDR_IPV4, ADDR_IPV6]) & (c("flow_subtype") != 3)


def is_tcp() -> pl.Expr:
    return is_ip() & (c("proto") == IPPROTO_TCP)


def is_tcp_net() -> pl.Expr:
    """A TCP flow that carries a TCP network object (TCP_INIT, TCP_STATUS or TCP_PERF)."""
    return is_tcp() & has("net") & c("net_subtype").is_in([NET_TCP_INIT, NET_TCP_STATUS, NET_TCP_PERF])


def is_icmp4() -> pl.Expr:
    return (addr_type() == ADDR_IPV4) & (c("proto") == IPPROTO_ICMP) & (c("flow_subtype") != 3)


def is_icmp6() -> pl.Expr:
    return (addr_type() == ADDR_IPV6) & (c("proto") == IPPROTO_ICMPV6)


def is_arp() -> pl.Expr:
    return addr_type().is_in([ADDR_ARP, ADDR_RARP])


def is_ether() -> pl.Expr:
    return addr_type() == ADDR_ETHER


# --- re-orientation (§9.7) ------------------------------------------------------------------

# Column pairs swapped when ra reverses a record.
_SWAP_PAIRS: list[tuple[str, str]] = [
    ("saddr_hi", "daddr_hi"), ("saddr_lo", "daddr_lo"), ("sport", "dport"), ("smask", "dmask"),
    ("sstart", "dstart"), ("slast", "dlast"), ("spkts", "dpkts"), ("sbytes", "dbytes"),
    ("sappbytes", "dappbytes"), ("smaxsz", "dmaxsz"), ("sminsz", "dminsz"),
    ("spktsz_hist", "dpktsz_hist"), ("sencaps", "dencaps"),
    *[(f"stcp_{k}", f"dtcp_{k}") for k in (
        "last", "status", "seqbase", "seq", "ack", "winnum", "bytes", "retrans", "ackbytes",
        "winbytes", "win", "flags", "winshift")],
    *[(f"sjit_{b}_{k}", f"djit_{b}_{k}")
      for b in ("act", "idl") for k in ("n", "min", "mean", "stdev", "max")],
    ("svlan", "dvlan"), ("smac", "dmac"), ("smpls", "dmpls"), ("sttl", "dttl"), ("stos", "dtos"),
    ("sipid", "dipid"), ("sipopts", "dipopts"), ("suser_size", "duser_size"), ("suser", "duser"),
    ("snstroke", "dnstroke"), ("sas", "das"), ("sco", "dco"),
]

# Qualifier bits that say "src part present" / "dst part present".
_SWAP_BITS: dict[str, list[tuple[int, int]]] = {
    "attr_qual": [(0x01, 0x02), (0x04, 0x08), (0x10, 0x20)],
    "vlan_qual": [(0x01, 0x02)],
    "mac_qual": [(0x01, 0x02)],
    "jit_qual": [(0x01, 0x04), (0x02, 0x08)],
    "mpls_subtype": [(0x01, 0x02)],
}


def _swap_bits(column: str, pairs: list[tuple[int, int]]) -> pl.Expr:
    keep = 0xFF
    out = None
    for a, b in pairs:
        keep &= ~(a | b)
        moved = (pl.when(bit(column, a)).then(pl.lit(b)).otherwise(0)
                 | pl.when(bit(column, b)).then(pl.lit(a)).otherwise(0))
        out = moved if out is None else out | moved
    return ((c(column) & keep) | out).cast(pl.UInt8)


def reverse_mask(numeric_ports: bool, services: dict[int, str]) -> pl.Expr:
    """Rows ra's TCP correction (§9.7) would reverse: none, as observed with ra 3.0.8 -X.

    The spec describes two rules (SYN-ACK seen without the SYN; well-known port as Dport), but
    over the samples and the 66-file corpus `ra -X` prints every TCP record in the orientation
    the reader gives (zeek__wikipedia: a TCP_INIT SYN-ACK stays server -> client; misc.argus
    keeps 10.0.0.7:443 as source), and applying either rule made 10 files differ.  The hook stays
    so that a later finding can switch a rule back on.
    """
    del numeric_ports, services
    return pl.lit(False)


def orient(batch: pl.DataFrame, numeric_ports: bool) -> pl.DataFrame:
    """The batch with the records ra would reverse for printing turned round (§9.7)."""
    rev = reverse_mask(numeric_ports, services("tcp"))
    mask = batch.select(rev).to_series()
    if not mask.any():
        return batch
    # Swap by renaming the reversed rows' columns, then put them back in place.
    rows = np.flatnonzero(mask.to_numpy())
    turned = batch[rows]
    renames = {}
    for a, b in _SWAP_PAIRS:
        renames[a], renames[b] = b, a
    turned = turned.rename(renames).select(batch.columns)
    turned = turned.with_columns([_swap_bits(col, pairs).alias(col) for col, pairs in _SWAP_BITS.items()])
    columns = {}
    for name in batch.columns:
        columns[name] = batch[name].scatter(rows, turned[name]) if name in renames or name in _SWAP_BITS \
            else batch[name]
    return pl.DataFrame(columns)


# --- times and durations --------------------------------------------------------------------

def _nz_min(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return (pl.when(a == 0).then(b).when(b == 0).then(a)
            .otherwise(pl.min_horizontal(a, b)))


def _no_dst_times() -> pl.Expr:
    return (c("dstart") == 0) & (c("dpkts") > 0)


def _one_each() -> pl.Expr:
    return (c("spkts") == 1) & (c("dpkts") == 1)


def _split_single() -> pl.Expr:
    """One side sent a single packet, the other more, and the record spans a second boundary:
    ra 3.0.8 then gives the single-packet side the start time only (observed on the corpus)."""
    unbalanced = (c("spkts") == 1) != (c("dpkts") == 1)
    return _no_dst_times() & unbalanced & ((c("sstart") // 1_000_000) != (_slast_eff() // 1_000_000))


def _slast_eff() -> pl.Expr:
    return pl.when(c("slast") == 0).then(c("sstart")).otherwise(c("slast"))


def _src_moved() -> pl.Expr:
    """Only src timestamps, but only the destination sent packets: ra moves them to dst."""
    return _no_dst_times() & (c("spkts") == 0)


def sstime_us() -> pl.Expr:
    return pl.when(_src_moved()).then(0).otherwise(c("sstart"))


def sltime_us() -> pl.Expr:
    """Without dst timestamps ra splits a one-packet-each-way record at its two times."""
    return (pl.when(_src_moved()).then(0)
            .when(_no_dst_times() & _one_each()).then(c("sstart"))
            .when(_split_single() & (c("spkts") == 1)).then(c("sstart"))
            .otherwise(_slast_eff()))


def dstime_us() -> pl.Expr:
    return (pl.when(c("dpkts") == 0).then(0)
            .when(_no_dst_times() & _one_each()).then(_slast_eff())
            .when(_no_dst_times()).then(c("sstart"))
            .otherwise(c("dstart")))


def dltime_us() -> pl.Expr:
    return (pl.when(c("dpkts") == 0).then(0)
            .when(_split_single() & (c("dpkts") == 1)).then(c("sstart"))
            .when(_no_dst_times()).then(_slast_eff())
            .when(c("dlast") == 0).then(c("dstart"))
            .otherwise(c("dlast")))


def stime_us() -> pl.Expr:
    return _nz_min(c("sstart"), c("dstart"))


def ltime_us() -> pl.Expr:
    """Latest end time; an end the time DSR did not carry (direction bits) does not count."""
    dirs = (c("time_subtype") & 0x78) != 0
    s_end = pl.when(~dirs | ((c("time_subtype") & 0x10) != 0)).then(c("slast")).otherwise(0)
    d_end = pl.when(~dirs | ((c("time_subtype") & 0x40) != 0)).then(c("dlast")).otherwise(0)
    ends = pl.max_horizontal(s_end, d_end)
    return pl.when(ends != 0).then(ends).otherwise(pl.max_horizontal(c("sstart"), c("dstart")))


def seconds(us: pl.Expr) -> pl.Expr:
    """Microseconds as ra's double seconds (sec + usec/1e6)."""
    return (us // 1_000_000).cast(F64) + (us % 1_000_000).cast(F64) / 1e6


def span(start: pl.Expr, last: pl.Expr) -> pl.Expr:
    """A duration as ra keeps it: a C float of the exact difference (shows with -p 9)."""
    return ((last - start).cast(F64) / 1e6).cast(F32)


def dur() -> pl.Expr:
    """ra's duration runs to the latest timestamp of any kind (not always LastTime)."""
    latest = pl.max_horizontal(c("slast"), c("dlast"), c("sstart"), c("dstart"))
    return span(stime_us(), latest)


def sdur() -> pl.Expr:
    return span(sstime_us(), sltime_us())


def ddur() -> pl.Expr:
    return span(dstime_us(), dltime_us())


# --- counters, rates, loads -------------------------------------------------------------------

def f32(e: pl.Expr) -> pl.Expr:
    return e.cast(F32)


def pkts() -> pl.Expr:
    return c("spkts") + c("dpkts")


def bytes_() -> pl.Expr:
    return c("sbytes") + c("dbytes")


def appbytes() -> pl.Expr:
    return c("sappbytes") + c("dappbytes")


def _dir_time(side: str) -> pl.Expr:
    d = sdur() if side == "s" else ddur()
    return f32(pl.when(d > 0).then(d).otherwise(dur()))


def dir_rate(side: str) -> pl.Expr:
    n = c(f"{side}pkts")
    t = _dir_time(side)
    return pl.when((n > 1) & (t > 0)).then(f32(n - 1) / t).otherwise(pl.lit(0.0, F32))


def dir_load(side: str) -> pl.Expr:
    n, b = c(f"{side}pkts"), c(f"{side}bytes")
    t = _dir_time(side)
    payload = f32(b - b // pl.when(n > 0).then(n).otherwise(1))
    return pl.when((n > 1) & (t > 0)).then(payload * 8.0 / t).otherwise(pl.lit(0.0, F32))


def rate() -> pl.Expr:
    d = f32(dur())
    return pl.when((pkts() > 1) & (d > 0)).then(f32(pkts() - 1) / d).otherwise(pl.lit(0.0, F32))


def _payload(side: str) -> pl.Expr:
    """Bytes less one mean-sized packet: ra's load counts the time between packets only."""
    n, b = c(f"{side}pkts"), c(f"{side}bytes")
    return pl.when(n > 0).then(b - b // pl.when(n > 0).then(n).otherwise(1)).otherwise(0)


def load() -> pl.Expr:
    d = f32(dur())
    bits = f32(_payload("s") + _payload("d")) * 8.0
    return pl.when(d > 0).then(bits / d).otherwise(pl.lit(0.0, F32))


def pcr() -> pl.Expr:
    s, d = c("sappbytes").cast(F64), c("dappbytes").cast(F64)
    total = s + d
    return pl.when(total > 0).then((s - d) / total).otherwise(pl.lit(-0.0, F64))


def meansz(side: str) -> pl.Expr:
    n = c(f"{side}pkts")
    return pl.when(n > 0).then(f32(c(f"{side}bytes")) / f32(n)).otherwise(pl.lit(0.0, F32))


# --- losses ------------------------------------------------------------------------------------

def dir_loss(side: str) -> pl.Expr:
    tcp = is_tcp_net() & (c("tcp_state") != 0) & (c(f"{side}pkts") > 0)
    esp = is_ip() & (c("proto") == IPPROTO_ESP) & (c("net_subtype") == NET_ESP)
    esp_loss = c("esp_lostseq") if side == "s" else pl.lit(0)
    return (pl.when(tcp).then(c(f"{side}tcp_retrans"))
            .when(esp).then(esp_loss).otherwise(0)).cast(pl.Int64)


def loss() -> pl.Expr:
    return dir_loss("s") + dir_loss("d")


def _percent(part: pl.Expr, whole: pl.Expr) -> pl.Expr:
    total = (whole + part).cast(F64)
    return pl.when(total > 0).then(part.cast(F64) * 100.0 / total).otherwise(0.0)


def ploss() -> pl.Expr:
    return _percent(loss(), pkts())


def dir_ploss(side: str) -> pl.Expr:
    return _percent(dir_loss(side), c(f"{side}pkts"))


# --- jitter (§6.12) -----------------------------------------------------------------------------

def _block_present(side: str, block: str) -> pl.Expr:
    bits = {("s", "act"): 1, ("s", "idl"): 2, ("d", "act"): 4, ("d", "idl"): 8}
    return has("jitter") & bit("jit_qual", bits[(side, block)])


def jit_present(side: str, block: str | None = None) -> pl.Expr:
    if block is None:
        return _block_present(side, "act") | _block_present(side, "idl")
    return _block_present(side, block)


def _ms(us: pl.Expr) -> pl.Expr:
    """µs as ms, the IEEE quotient ra prints.  Polars divides a float column by a scalar as a
    product with the reciprocal, one ulp off for ~14% of values: enough to round a float32
    µs value (whose quotient by 1000 often ends in a 5 in the 7th decimal) the other way."""
    return us.cast(F64).map_batches(_exact_ms, return_dtype=F64)


def _exact_ms(values: pl.Series) -> pl.Series:
    ms = pl.Series(values.name, values.fill_null(0.0).to_numpy() / 1000.0)
    if values.null_count():  # nulls stay nulls, and a NaN (argus writes some) stays NaN
        ms = ms.scatter(values.is_null().arg_true(), None)
    return ms


def intpkt(side: str, block: str | None = None) -> pl.Expr:
    """Mean inter-packet time in ms: one block, or both pooled by their counts."""
    if block is not None:
        return _ms(c(f"{side}jit_{block}_mean"))
    n = c(f"{side}jit_act_n").cast(F64) + c(f"{side}jit_idl_n").cast(F64)
    # the pooled mean is a C float in ra; the /1000 is done in double
    return pl.when(n > 0).then(_ms(_pooled_mean(side))).otherwise(0.0)


def jitter(side: str, block: str | None = None) -> pl.Expr:
    """Inter-packet time standard deviation in ms (pooled when both blocks are present)."""
    if block is not None:
        return _ms(c(f"{side}jit_{block}_stdev"))
    act, idl = _block_present(side, "act"), _block_present(side, "idl")
    n = c(f"{side}jit_act_n").cast(F64) + c(f"{side}jit_idl_n").cast(F64)
    pooled = _ms(_sum_of_squares(side, "act") + _sum_of_squares(side, "idl")) / n
    # ra 3.0.8 scales the pooled sum of squares by 1/1000 instead of 1/10^6, and squares the
    # pooled mean after a C float division by 1000 (matched for identical output: every
    # record of the rich corpus prints as ra prints it).  The float quotient is the double
    # one rounded to float (exact: double has more than twice float's precision).
    mean_ms = _ms(_pooled_mean(side)).cast(F32).cast(F64)
    var = pooled - mean_ms * mean_ms
    return (pl.when(act & idl & (n > 0)).then(var.clip(lower_bound=0.0).sqrt())
            .when(act).then(_ms(c(f"{side}jit_act_stdev")))
            .otherwise(_ms(c(f"{side}jit_idl_stdev"))))


def _pooled_mean(side: str) -> pl.Expr:
    """The mean of both blocks, in C float arithmetic as ra 3.0.8 computes it (µs)."""
    na, ni = c(f"{side}jit_act_n").cast(F32), c(f"{side}jit_idl_n").cast(F32)
    ma, mi = c(f"{side}jit_act_mean").cast(F32), c(f"{side}jit_idl_mean").cast(F32)
    return (ma * na + mi * ni) / (na + ni)


def _sum_of_squares(side: str, block: str) -> pl.Expr:
    """n*stdev^2 + (mean*n)^2/n of one block in µs^2; mean*n is a C float product in ra."""
    n = c(f"{side}jit_{block}_n")
    s = c(f"{side}jit_{block}_stdev").cast(F64)
    total = (c(f"{side}jit_{block}_mean").cast(F32) * n.cast(F32)).cast(F64)
    return pl.when(n > 0).then(n.cast(F64) * (s * s) + total * total / n.cast(F64)).otherwise(0.0)


# --- aggregation statistics (§6.16) ---------------------------------------------------------------

def trans() -> pl.Expr:
    return pl.when(has("agr") & (c("agr_count") > 0)).then(c("agr_count")).otherwise(1).cast(pl.UInt32)


def agr_stat(name: str) -> pl.Expr:
    """mean/min/max/stddev/sum of the aggregated durations; ra synthesises one sample if absent."""
    d = f32(dur())
    if name == "stddev":
        # ra 3.0.8 does not reset the deviation when it synthesises the statistics of a record
        # without an aggregation DSR: the last aggregated record's value shows (samples/synthetic).
        stale = pl.when(has("agr") & ~is_mar()).then(c("agr_act_stdev")).otherwise(None)
        return stale.forward_fill().fill_null(0.0).cast(F32)
    if name in ("sum", "runtime"):
        n = f32(c("agr_act_n"))
        return pl.when(has("agr")).then(n * c("agr_act_mean")).otherwise(d)
    return pl.when(has("agr")).then(c(f"agr_act_{name}")).otherwise(d)


# --- State (§9.4) -------------------------------------------------------------------------------


def _lookup(key: pl.Expr, table: dict[int, str], default: str) -> pl.Expr:
    return key.cast(pl.Int64).replace_strict(table, default=default, return_dtype=pl.String)


class Vocabulary:
    """A small set of texts: the logic computes an integer code per row (cheap integer work), one
    gather turns codes into texts (string when/then chains cost far more over a batch)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)  # duplicates allowed: codes can be computed arithmetically
        self.index: dict[str, int] = {}
        for i, text in enumerate(self.texts):
            self.index.setdefault(text, i)

    def code(self, text: str) -> pl.Expr:
        return pl.lit(self.index[text], dtype=pl.UInt32)

    def lookup(self, key: pl.Expr, table: dict[int, str], default: str, size: int = 256) -> pl.Expr:
        """The code of table[key] (default when absent); key must lie in 0..size-1."""
        codes = pl.Series([self.index[table.get(k, default)] for k in range(size)], dtype=pl.UInt32)
        return pl.lit(codes).gather(key.cast(pl.Int64).clip(0, size - 1))

    def text(self, code: pl.Expr) -> pl.Expr:
        return pl.lit(self.series()).gather(code)

    def series(self) -> pl.Series:
        return pl.Series(self.texts, dtype=pl.String)


STATES = Vocabulary(STATE_TEXTS)


def tcp_state_code() -> pl.Expr:
    s, k = c("tcp_status"), STATES.code
    both = (c("spkts") > 0) & (c("dpkts") > 0)
    return (pl.when(s == 0).then(pl.when(both).then(k("CON")).otherwise(k("INT")))
            .when((s & (SRC_RESET | DST_RESET)) != 0).then(k("RST"))
            .when((s & (FIN | FIN_ACK)) != 0).then(k("FIN"))
            .when((s & NORMAL_CLOSE) != 0).then(k("CLO"))
            .when((c("cause") & 0x40) != 0).then(k("TIM"))
            .when((s & CON_ESTABLISHED) != 0).then(k("CON"))
            .when((s & SAW_SYN_SENT) != 0).then(k("ACC"))
            .when((s & SAW_SYN) != 0).then(k("REQ"))
            .otherwise(k("CON")))


def tcp_state() -> pl.Expr:
    return STATES.text(tcp_state_code())


def icmp_state_code() -> pl.Expr:
    mapped = has("icmpmap") & bit("icmpmap_qual", 0x07)
    itype = pl.when(mapped).then(c("icmpmap_type")).otherwise(c("sport") // 256)
    icode = pl.when(mapped).then(c("icmpmap_code")).otherwise(c("sport") % 256)
    unreach = STATES.lookup(icode, dict(enumerate(_UNREACH)), "UR")
    return (pl.when(itype == 3).then(unreach)
            .when(itype >= 46).then(STATES.code("UNK"))
            .otherwise(STATES.lookup(itype, _ICMP_STATES, "UNK")))


def icmp6_key() -> pl.Expr:
    """ICMPv6 type << 8 | code (in dport when the reader swapped the ports of a REVERSE key)."""
    return pl.when(c("sport") == 0).then(c("dport")).otherwise(c("sport"))


def icmp6_state_code() -> pl.Expr:
    itype, icode, k = icmp6_key() // 256, icmp6_key() % 256, STATES.code
    return (pl.when(itype == 1).then(STATES.lookup(icode, dict(enumerate(_ICMP6_UNREACH)), "UNK"))
            .when(itype == 3).then(pl.when(icode == 0).then(k("TXT")).otherwise(k("TXR")))
            .when(itype == 4).then(STATES.lookup(icode, {0: "PPH", 1: "PPNH", 2: "PPO"}, "UNK"))
            .otherwise(STATES.lookup(itype, _ICMP6_STATES, "UNK")))


def other_state_code() -> pl.Expr:
    sp, dp, k = c("spkts") > 0, c("dpkts") > 0, STATES.code
    start_like = ((c("cause") & 0x10) != 0) | is_arp()
    return (pl.when(sp & dp).then(k("CON"))
            .when(sp).then(pl.when(start_like).then(k("INT")).otherwise(k("REQ")))
            .otherwise(k("RSP")))


def mar_state_code() -> pl.Expr:
    cause = c("cause") & 0xF0
    return (pl.when(c("cause") == 0x81).then(STATES.code("ADN"))
            .when(c("cause") == 0x82).then(STATES.code("MAX"))
            .otherwise(STATES.lookup(cause, _MAR_STATES, "UNK")))


_TCP_STATUS_LETTERS = [(SAW_SYN, "s"), (SAW_SYN_SENT, "S"), (CON_ESTABLISHED, "E"), (FIN, "f"),
                       (FIN_ACK, "F"), (NORMAL_CLOSE, "C"), (SRC_RESET | DST_RESET, "R")]
_TCP_FLAG_LETTERS = [(TH_FIN, "F"), (TH_SYN, "S"), (TH_RST, "R"), (TH_PSH, "P"), (TH_ACK, "A"),
                     (TH_URG, "U"), (TH_ECE, "E"), (TH_CWR, "C")]


def _letters(column: str, table: list[tuple[int, str]]) -> pl.Expr:
    parts = [pl.when((c(column) & m) != 0).then(pl.lit(ch)).otherwise(pl.lit("")) for m, ch in table]
    return pl.concat_str(parts)


def state_code() -> pl.Expr:
    """The State column as a code of `STATES` (without -z/-Z letters)."""
    return (pl.when(is_mar()).then(mar_state_code())
            .when(c("cause") == 0x80).then(STATES.code("ERR"))
            .when(c("flow_subtype") == 3).then(STATES.code("UNK"))
            .when(is_tcp()).then(tcp_state_code())
            .when(is_icmp4()).then(icmp_state_code())
            .when(is_icmp6()).then(icmp6_state_code())
            .otherwise(other_state_code()))


def state(zflag: str | None = None) -> pl.Expr:
    """The State column; `zflag` 'z' gives TCP status letters, 'b'/'s'/'d' TCP flag letters."""
    named = STATES.text(state_code())
    if zflag is None:
        return named
    if zflag == "z":
        letters = _letters("tcp_status", _TCP_STATUS_LETTERS)
    else:
        src, dst = _letters("stcp_flags", _TCP_FLAG_LETTERS), _letters("dtcp_flags", _TCP_FLAG_LETTERS)
        letters = {"s": src, "d": dst, "b": pl.concat_str([src, pl.lit("_"), dst])}[zflag]
    # the letters replace the name where the TCP branch of state_code() meets a network DSR
    # (a header-only one, which 3.0.8 writes for garbled keys, has no letters)
    tcp_branch = ~is_mar() & (c("cause") != 0x80) & (c("flow_subtype") != 3) & is_tcp() & has("net")
    return pl.when(tcp_branch).then(letters).otherwise(named)


# --- Dir (§9.5) -----------------------------------------------------------------------------------

DIRS = Vocabulary(DIR_TEXTS)  # code 3 + 6 * left + 2 * middle + right: see naming.DIR_TEXTS


def dir_code() -> pl.Expr:
    sp, dp = c("spkts") > 0, c("dpkts") > 0
    left = pl.when(dp).then(6).otherwise(0)
    right = pl.when(sp).then(1).otherwise(0)
    known = bit("tcp_status", SAW_SYN | SAW_SYN_SENT)
    middle = (pl.when(is_tcp_net() & ~known).then(4)
              .when(sp | dp).then(2).otherwise(0))
    plain = (3 + left + middle + right).cast(pl.UInt32)
    tcp_known = is_tcp_net() & known
    glyph = (pl.when(~has("metric")).then(DIRS.code(""))
             .when(addr_type().is_in([ADDR_ARP, ADDR_RARP])).then(DIRS.code("who"))
             .when(tcp_known).then(DIRS.code(" ->"))
             .otherwise(plain))
    return pl.when(is_mar()).then(DIRS.code("")).otherwise(glyph)


def dir_() -> pl.Expr:
    return DIRS.text(dir_code())


# --- Flgs (§9.3) ------------------------------------------------------------------------------------

_ASCII = pl.Series([chr(i) for i in range(256)], dtype=pl.String)


def _ch(letter: str) -> pl.Expr:
    """A Flgs letter as its ASCII code."""
    return pl.lit(ord(letter), pl.UInt8)


def _popcount(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.UInt32).bitwise_count_ones()


def _flag_encaps() -> pl.Expr:
    enc = (c("sencaps") | c("dencaps")).cast(pl.UInt32)
    single = _ch(" ")
    for mask, ch in reversed(_ENCAPS_LETTERS):
        single = pl.when(enc == mask).then(_ch(ch)).otherwise(single)
    from_enc = pl.when(_popcount(enc) > 1).then(_ch("*")).otherwise(single)
    no_enc = (pl.when(has("vlan")).then(_ch("v")).when(has("mac")).then(_ch("e"))
              .when(has("mpls")).then(_ch("m")).otherwise(_ch(" ")))
    base = pl.when(has("encaps")).then(from_enc).otherwise(no_enc)
    return pl.when(has("mac") & bit("mac_qual", 0x03)).then(_ch("M")).otherwise(base)


def _flag_icmpmap() -> pl.Expr:
    mapped = has("icmpmap") & bit("icmpmap_qual", 0x07)
    t = c("icmpmap_type")
    letter = (pl.when(t == 3).then(_ch("U")).when(t == 5).then(_ch("R"))
              .when(t == 11).then(_ch("T")).otherwise(_ch("I")))
    return pl.when(mapped).then(letter).otherwise(_ch(" "))


def _sd(src: pl.Expr, dst: pl.Expr, s: str, d: str, both: str) -> pl.Expr:
    return (pl.when(src & dst).then(_ch(both)).when(src).then(_ch(s))
            .when(dst).then(_ch(d)).otherwise(_ch(" ")))


def _gap(side: str) -> pl.Expr:
    p = f"{side}tcp_"
    ok = (c(p + "retrans") == 0) & (c(p + "seq") != 0) & (c(p + "seqbase") != c(p + "ackbytes"))
    gap = (c(p + "seq").cast(pl.Int64) - c(p + "seqbase").cast(pl.Int64)
           - c(p + "bytes").cast(pl.Int64) - 1)
    return ok & (gap > 0)


def gap_bytes(side: str) -> pl.Expr:
    """Sequence space not covered by payload: seq - isn - bytes - 1, when nothing was resent."""
    p = f"{side}tcp_"
    gap = (c(p + "seq").cast(pl.Int64) - c(p + "seqbase").cast(pl.Int64)
           - c(p + "bytes").cast(pl.Int64) - 1)
    ok = (c(p + "retrans") == 0) & (c(p + "seq") != 0)
    return pl.when(ok & (gap > 0)).then(gap).otherwise(0)


def _flag_loss() -> pl.Expr:
    st = c("tcp_status")
    sre, dre = (st & SRC_RETRANS) != 0, (st & DST_RETRANS) != 0
    retrans = _sd(sre, dre, "s", "d", "*")
    gap = pl.when(_gap("s") | _gap("d")).then(_ch("g")).otherwise(_ch(" "))
    ooo = _sd((st & SRC_OUTOFORDER) != 0, (st & DST_OUTOFORDER) != 0, "i", "r", "&")
    perf = c("net_subtype") == NET_TCP_PERF
    # ra 3.0.8 shows a destination-only retransmission of an IPv6 flow as blank (bench captures)
    v6 = addr_type() == ADDR_IPV6
    tcp = (pl.when(sre | (dre & ~v6)).then(retrans)
           .when(~is_ip() | v6).then(_ch(" "))
           .when(perf & (_gap("s") | _gap("d"))).then(gap)
           .otherwise(ooo))
    esp = (c("proto") == IPPROTO_ESP) & (c("net_subtype") == NET_ESP) & (c("esp_lostseq") != 0)
    return pl.when(is_tcp_net()).then(tcp).when(is_ip() & esp).then(_ch("s")).otherwise(_ch(" "))


def _flag_tcp(smask: int, dmask: int, s: str, d: str, both: str) -> pl.Expr:
    st = c("tcp_status")
    letters = _sd((st & smask) != 0, (st & dmask) != 0, s, d, both)
    return pl.when(is_tcp_net() & (addr_type() == ADDR_IPV4)).then(letters).otherwise(_ch(" "))


def _flag_ipopts() -> pl.Expr:
    opts = pl.when(bit("attr_qual", 0x04)).then(c("sipopts")).otherwise(0) | pl.when(
        bit("attr_qual", 0x08)).then(c("dipopts")).otherwise(0)
    opts = opts.cast(pl.UInt32)
    codes = pl.Series([ord(_IPOPT_LETTERS.get(k, "U")) for k in range(256)], dtype=pl.UInt8)
    single = pl.lit(codes).gather(opts.clip(0, 255))
    return (pl.when(~has("attr") | (opts == 0)).then(_ch(" "))
            .when(_popcount(opts) > 1).then(_ch("O")).otherwise(single))


def _flag_frag() -> pl.Expr:
    return (pl.when(has("attr") & bit("attr_qual", 0x30)).then(_ch("F"))
            .when(has("net") & (c("net_subtype") == 0x45)).then(_ch("f"))
            .when(bit("flow_qual", 0x80)).then(_ch("F")).otherwise(_ch(" ")))


def _flag_window_or_silence() -> pl.Expr:
    """Flgs position 4: TCP window shut (S D @), or RTP silence suppression (s d *).  ra 3.0.8
    prints 'd' for both directions and nothing for the source alone; its man page promises
    s/d/* and we print that (printer.DEVIATIONS)."""
    qual = c("net_qual")
    silence = _sd((qual & RTP_SRC_SILENCE) != 0, (qual & RTP_DST_SILENCE) != 0, "s", "d", "*")
    rtp = has("net") & (c("net_subtype") == NET_RTP) & (c("proto") == IPPROTO_UDP)
    return (pl.when(rtp).then(silence)
            .otherwise(_flag_tcp(SRC_WINDOW_SHUT, DST_WINDOW_SHUT, "S", "D", "@")))


def flgs() -> pl.Expr:
    """The 9-character Flgs string."""
    # each part is an ASCII code (integer work is far cheaper than 9 string when/then chains)
    text = pl.concat_str([pl.lit(_ASCII).gather(part) for part in flgs_codes()])
    return pl.when(is_mar()).then(pl.lit(" " * 9)).otherwise(text)


def flgs_codes() -> list[pl.Expr]:
    """The ASCII code of each Flgs character (of a flow record: MARs print nine blanks)."""
    first = (pl.when(c("rtype") == RTYPE_NETFLOW).then(_ch("N"))
             .when(has("time") & bit("time_qual", 0x01)).then(_ch("T")).otherwise(_ch(" ")))
    n = (c("cor_raw").bin.size() // 24).cast(pl.Int64)
    lead = (pl.when(n < 10).then(n).when(n < 100).then(n // 10).when(n < 1000).then(n // 100)
            .otherwise(n // 1000))
    cor = pl.when(has("cor")).then((ord("0") + lead).cast(pl.UInt8)).otherwise(_ch(" "))  # first digit
    parts = [first, _flag_encaps(), _flag_icmpmap(), _flag_loss(),
             _flag_window_or_silence(),
             _flag_tcp(SRC_CONGESTED, DST_CONGESTED, "x", "t", "E"),
             _flag_frag(), _flag_ipopts(), cor]
    return parts


# --- names --------------------------------------------------------------------------------------------
