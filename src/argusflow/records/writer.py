"""Encode record batches into Argus V3 bytes the way the client writers do (spec §6, §10, §11.6).

`ra -w`, racluster and radium decode every record and write it again with one encoder; this
module reproduces that encoder byte for byte: flow keys un-reversed with MASKLEN (32/32, IPv6
128/128), times in the relative form of §6.3(c), metric widths per §6.4, the DSR order of §5.4,
and the byte-order exceptions of §2.  MAR rows are written back from `mar_raw` unchanged.

How it works: each DSR kind has an encoder that builds the DSR bytes of *all* rows carrying it
at once (numpy structured arrays in file byte order, one per layout variant), returning
`Piece`s.  `encode_batch` adds up the per-row DSR lengths, computes every DSR's byte offset in
the output and scatters the pieces there.  No Python loop runs per record; the few loops run
over layout variants (metric widths, jitter block sets, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from argusflow.records.schema import (
    ADDR_ARP,
    ADDR_ETHER,
    ADDR_IPV4,
    ADDR_IPV6,
    ADDR_RARP,
    DSR_BITS,
    NET_ARP,
    NET_ESP,
    NET_ICMP,
    NET_NONE,
    NET_TCP_INIT,
    NET_TCP_PERF,
    NET_TCP_STATUS,
    NUMPY_DTYPES,
    RTYPE_MAR,
)

if TYPE_CHECKING:  # a Columns batch is encoded without polars (the probe's file sink)
    import polars as pl

# DSR order of the client writers (spec §5.4).
CLIENT_ORDER = (
    "transport", "flow", "time", "metric", "agr", "net", "vlan", "mpls", "jitter", "attr",
    "psize", "suser", "duser", "mac", "icmpmap", "encaps", "behavior", "cor", "cocode", "label",
    "asn",
)

TIME_SRC_START, TIME_SRC_END, TIME_DST_START, TIME_DST_END = 0x08, 0x10, 0x20, 0x40
TIME_ABSOLUTE_TIMESTAMP, TIME_ABSOLUTE_RANGE, TIME_RELATIVE_RANGE = 0x01, 0x02, 0x05
TIME_UTC_USEC = 0x18
# Above this record duration (us) the 3.0.8 client writer uses absolute timestamps (§6.3 c'):
# the offsets must fit an i32 (checked with ra: 1500 s relative, 2200 s absolute).
RELATIVE_LIMIT_US = 2**31 - 1
SECOND = 1_000_000
ARP_KEY_WORDS = 13  # client writers re-emit ARP keys with a zeroed 32-byte address area
RARP_KEY_WORDS = 7  # ... and RARP keys with 7 words (hardware addresses zeroed)
ARP_NET_WORDS = 44  # the ARP responder object keeps its 44-word size

NET_RTP = 0x0A

HDR = [("type", "u1"), ("sub", "u1"), ("qual", "u1"), ("len", "u1")]


@dataclass
class Piece:
    """DSR bytes for some rows: `data[i, :lens[i]]` belongs to batch row `rows[i]`."""

    rows: np.ndarray
    data: np.ndarray  # uint8, (len(rows), width)
    lens: np.ndarray | None = None  # byte lengths when they vary; None = the full width


@dataclass
class Bytes:
    """Variable-length byte strings: row i is flat[starts[i]:starts[i] + sizes[i]]."""

    sizes: np.ndarray
    flat: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.sizes) - self.sizes

    @classmethod
    def empty(cls, n: int) -> Bytes:
        return cls(np.zeros(n, dtype=np.int64), np.zeros(0, dtype=np.uint8))

    def take(self, rows: np.ndarray) -> Bytes:
        sizes = self.sizes[rows]
        within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return Bytes(sizes, self.flat[np.repeat(self.starts[rows], sizes) + within])

    def pick(self, other: Bytes, use_other: np.ndarray) -> Bytes:
        """Row i from `other` where use_other[i], else from self (same row count)."""
        n = len(self.sizes)
        both = Bytes(np.concatenate([self.sizes, other.sizes]),
                     np.concatenate([self.flat, other.flat]))
        return both.take(np.arange(n) + np.where(use_other, n, 0))

    def fixed(self, width: int) -> np.ndarray:
        """(n, width) array: each string cut or zero-padded to `width` bytes."""
        out = np.zeros((len(self.sizes), width), dtype=np.uint8)
        take = np.minimum(self.sizes, width)
        row = np.repeat(np.arange(len(take)), take)
        within = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
        out[row, within] = self.flat[np.repeat(self.starts, take) + within]
        return out


class Columns:
    """A record batch as numpy columns with the schema's names and dtypes (records.schema
    NUMPY_DTYPES), byte-string columns as `Bytes`: what the encoders read, without polars.
    Columns not given read as zeros (byte strings as empty), the schema's defaults.  The probe's
    file sink encodes these: polars costs it 0.2 s to import and ~15 ms a batch to build."""

    def __init__(self, values: dict[str, np.ndarray], height: int,
                 strings: dict[str, Bytes] | None = None) -> None:
        self.values = values
        self.height = height
        self.strings = strings or {}

    def column(self, name: str) -> np.ndarray:
        values = self.values.get(name)
        return np.zeros(self.height, dtype=NUMPY_DTYPES[name]) if values is None else values

    def bytes(self, name: str) -> Bytes:
        return self.strings.get(name) or Bytes.empty(self.height)


class Batch:
    """Column access for the encoders: numpy arrays, optionally restricted to some rows, over a
    polars frame or a `Columns` batch."""

    def __init__(self, df: pl.DataFrame | Columns, ra_rewrite: bool = True) -> None:
        self.df = df
        self.n = df.height
        self.ra_rewrite = ra_rewrite  # ra -w (True) or racluster/radium (False)
        self._cache: dict[str, np.ndarray] = {}
        self._series: dict[str, pl.Series] = {}
        self._bytes: dict[str, Bytes] = {}  # swapped byte-string columns of a Columns batch

    def col(self, name: str) -> np.ndarray:
        if name not in self._cache:
            df = self.df
            column = df.column(name) if isinstance(df, Columns) else df.get_column(name).to_numpy()
            self._cache[name] = column
        return self._cache[name]

    def at(self, name: str, rows: np.ndarray) -> np.ndarray:
        return self.col(name)[rows]

    def series(self, name: str) -> pl.Series:
        assert not isinstance(self.df, Columns)
        return self._series.get(name, self.df.get_column(name))

    def has_column(self, name: str) -> bool:
        """A Columns batch has them all (zero when not given)."""
        return isinstance(self.df, Columns) or name in self.df.columns

    def binary_sizes(self, name: str) -> np.ndarray:
        """Byte length of each row of a Binary column."""
        if isinstance(self.df, Columns):
            return self._bytes.get(name, self.df.bytes(name)).sizes
        return self.series(name).bin.size().to_numpy()

    def binary(self, name: str, rows: np.ndarray) -> Bytes:
        """The bytes of a Binary/String column for `rows`: sizes and one flat buffer, built by
        polars (no Python object per row)."""
        if isinstance(self.df, Columns):
            return self._bytes.get(name, self.df.bytes(name)).take(rows)
        import polars as pl

        series = self.series(name)
        if series.dtype == pl.String:
            series = series.cast(pl.Binary)
        as_lists = series.gather(pl.Series(rows, dtype=pl.Int64)).cast(pl.List(pl.UInt8))
        sizes = as_lists.list.len().to_numpy().astype(np.int64)
        flat = as_lists.explode().drop_nulls().to_numpy().astype(np.uint8)
        return Bytes(sizes, flat)

    def swap(self, a: str, b: str, rows: np.ndarray) -> None:
        """Exchange two columns on `rows`."""
        if NUMPY_DTYPES[a] == "O" and isinstance(self.df, Columns):
            on = np.zeros(self.n, dtype=bool)
            on[rows] = True
            va, vb = (self._bytes.get(c, self.df.bytes(c)) for c in (a, b))
            self._bytes[a], self._bytes[b] = va.pick(vb, on), vb.pick(va, on)
            return
        if NUMPY_DTYPES[a] == "O":
            import polars as pl

            idx = pl.Series(rows, dtype=pl.Int64)
            sa, sb = self.series(a), self.series(b)
            va, vb = sa.gather(idx), sb.gather(idx)
            # Series.scatter works in place: copy first, the caller's frame stays untouched.
            self._series[a] = sa.clone().scatter(idx, vb)
            self._series[b] = sb.clone().scatter(idx, va)
            return
        ca, cb = self.col(a).copy(), self.col(b).copy()
        ca[rows], cb[rows] = self.col(b)[rows], self.col(a)[rows]
        self._cache[a], self._cache[b] = ca, cb

    def replace(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        column = self.col(name).copy()
        column[rows] = values
        self._cache[name] = column


# --- helpers ----------------------------------------------------------------------------------

def packed(n: int, fields: list[tuple], values: dict[str, object]) -> np.ndarray:
    """Fill a packed structured array (file byte order) and return its bytes as (n, size)."""
    arr = np.zeros(n, dtype=np.dtype(fields))
    for name, value in values.items():
        arr[name] = value
    return arr.view(np.uint8).reshape(n, arr.dtype.itemsize)


def distinct(codes: np.ndarray) -> np.ndarray:
    """The values of small non-negative codes, ascending (np.unique imports numpy.ma: 30 ms of
    start-up)."""
    return np.flatnonzero(np.bincount(codes.astype(np.intp))) if len(codes) else codes


def header(kind: int, sub: object, qual: object, words: object) -> dict[str, object]:
    return {"type": kind, "sub": sub, "qual": qual, "len": words}


def mac_bytes(value: np.ndarray) -> np.ndarray:
    """48-bit addresses held in u64 -> (n, 6) bytes in network order."""
    return value.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]


def split_time(us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    us = us.astype(np.int64)
    return us // SECOND, us % SECOND


def ragged(rows: np.ndarray, data: Bytes, head: np.ndarray, trailer: int = 0) -> Piece:
    """Pieces of variable length: a fixed header (n, h), each row's bytes, then at least
    `trailer` zero bytes, padded to a word."""
    n = len(rows)
    sizes = data.sizes
    total = head.shape[1] + (sizes + trailer + 3) // 4 * 4
    width = int(total.max()) if n else head.shape[1]
    out = np.zeros((n, width), dtype=np.uint8)
    out[:, :head.shape[1]] = head
    if n and sizes.sum():
        within = np.arange(len(data.flat)) - np.repeat(data.starts, sizes)
        row = np.repeat(np.arange(n), sizes)
        out[row, head.shape[1] + within] = data.flat
    return Piece(rows, out, total)


def has(b: Batch, name: str) -> np.ndarray:
    """Rows of flow records carrying DSR `name`."""
    far = b.col("rtype") != RTYPE_MAR
    return np.flatnonzero(far & ((b.col("dsrs") & DSR_BITS[name]) > 0))


# --- transport, flow ---------------------------------------------------------------------------

def enc_transport(b: Batch, rows: np.ndarray) -> list[Piece]:
    fields = HDR + [("srcid", ">u4"), ("seq", ">u4")]
    data = packed(len(rows), fields, {
        **header(0x01, 0x03, b.at("srcid_type", rows), 3),
        "srcid": b.at("srcid", rows), "seq": b.at("seq", rows),
    })
    return [Piece(rows, data)]


def enc_flow(b: Batch, rows: np.ndarray) -> list[Piece]:
    sub = b.at("flow_subtype", rows)
    addr = b.at("flow_qual", rows) & 0x1F
    keytype = sub & 0x3F
    arp = (keytype == 0x06) | np.isin(addr, (ADDR_ARP, ADDR_RARP))
    matrix = ~arp & (keytype == 0x03) & (addr == ADDR_IPV4)
    five = ~arp & (keytype == 0x01)
    kinds = [
        (five & (addr == ADDR_IPV4), flow_ipv4),
        (five & (addr == ADDR_IPV6), flow_ipv6),
        (five & (addr == ADDR_ETHER), flow_ether),
        (arp, flow_arp),
        (matrix, flow_matrix),
    ]
    handled = np.zeros(len(rows), dtype=bool)
    pieces = []
    for mask, encode in kinds:
        handled |= mask
        if mask.any():
            pieces.append(encode(b, rows[mask]))
    if (~handled).any():
        pieces.append(opaque(b, rows[~handled], 0x02, "flow_subtype", "flow_qual", "flow_raw"))
    return pieces


def masks(b: Batch, rows: np.ndarray, full: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Client writers set MASKLEN; a key read without it gets full-length masks."""
    qual = b.at("flow_qual", rows)
    given = (qual & 0x40) > 0
    smask = np.where(given, b.at("smask", rows), full)
    dmask = np.where(given, b.at("dmask", rows), full)
    return qual | 0x40, smask, dmask


def flow_ipv4(b: Batch, rows: np.ndarray) -> Piece:
    qual, smask, dmask = masks(b, rows, 32)
    proto = b.at("proto", rows)
    sport, dport = b.at("sport", rows), b.at("dport", rows)
    # ESP: the client keeps its masks in bytes 16-17 and the SPI's low half in 18-19, which is
    # why ra shows SPIs as 0x2020xxxx (spec §6.2.4).
    esp = proto == 50
    esp_masks = np.where((b.at("flow_qual", rows) & 0x40) > 0, dport, 0x2020)
    dport = np.where(esp, esp_masks, dport)
    smask = np.where(esp, b.at("smask", rows), smask)
    dmask = np.where(esp, b.at("dmask", rows), dmask)
    # IGMP: the client does not carry type/code over (samples/misc.argus).
    igmp = proto == 2
    sport, dport = np.where(igmp, 0, sport), np.where(igmp, 0, dport)
    # Fragment keys: ra writes bytes 14-19 as zeros and adds no MASKLEN (checked with ra -w).
    frag = (b.at("flow_qual", rows) & 0x80) > 0
    qual = np.where(frag, b.at("flow_qual", rows), qual)
    sport, dport = np.where(frag, 0, sport), np.where(frag, 0, dport)
    smask, dmask = np.where(frag, 0, smask), np.where(frag, 0, dmask)
    fields = HDR + [("src", ">u4"), ("dst", ">u4"), ("proto", "u1"), ("tp_p", "u1"),
                    ("sport", ">u2"), ("dport", ">u2"), ("smask", "u1"), ("dmask", "u1")]
    data = packed(len(rows), fields, {
        **header(0x02, b.at("flow_subtype", rows), qual, 5),
        "src": b.at("saddr_lo", rows), "dst": b.at("daddr_lo", rows), "proto": proto,
        # The client writers clear the ICMP key's quoted-protocol byte (spec §6.2.3).
        "tp_p": np.where(proto == 1, 0, b.at("tp_p", rows)),
        "sport": sport, "dport": dport, "smask": smask, "dmask": dmask,
    })
    return Piece(rows, data)


def flow_ipv6(b: Batch, rows: np.ndarray) -> Piece:
    qual, smask, dmask = masks(b, rows, 128)
    label = b.at("proto", rows).astype(np.uint32) << 24 | (b.at("flowlabel", rows) & 0xFFFFF)
    fields = HDR + [("shi", ">u8"), ("slo", ">u8"), ("dhi", ">u8"), ("dlo", ">u8"),
                    ("label", ">u4"), ("sport", ">u2"), ("dport", ">u2"),
                    ("smask", "<u2"), ("dmask", "<u2")]  # masks in host order (spec §2)
    data = packed(len(rows), fields, {
        **header(0x02, b.at("flow_subtype", rows), qual, 12),
        "shi": b.at("saddr_hi", rows), "slo": b.at("saddr_lo", rows),
        "dhi": b.at("daddr_hi", rows), "dlo": b.at("daddr_lo", rows), "label": label,
        "sport": b.at("sport", rows), "dport": b.at("dport", rows),
        "smask": smask, "dmask": dmask,
    })
    return Piece(rows, data)


def flow_ether(b: Batch, rows: np.ndarray) -> Piece:
    fields = HDR + [("dmac", "u1", (6,)), ("smac", "u1", (6,)), ("etype", ">u2"),
                    ("dsap", "u1"), ("ssap", "u1")]
    data = packed(len(rows), fields, {
        # ra drops the REVERSE bit of Ethernet keys and keeps the MACs as stored (corpus).
        **header(0x02, b.at("flow_subtype", rows) & 0xBF, b.at("flow_qual", rows), 5),
        "dmac": mac_bytes(b.at("daddr_lo", rows)), "smac": mac_bytes(b.at("saddr_lo", rows)),
        "etype": b.at("proto", rows), "dsap": b.at("dport", rows), "ssap": b.at("sport", rows),
    })
    return Piece(rows, data)


def flow_arp(b: Batch, rows: np.ndarray) -> Piece:
    rarp = (b.at("flow_qual", rows) & 0x1F) == ADDR_RARP
    fields = HDR + [("hrd", ">u2"), ("pro", ">u2"), ("hln", "u1"), ("pln", "u1"), ("op", ">u2"),
                    ("spa", ">u4"), ("tpa", ">u4"), ("hw", "u1", (32,))]
    words = np.where(rarp, RARP_KEY_WORDS, ARP_KEY_WORDS)
    hrd, pro, hln, pln = arp_defaults(b, rows, rarp)
    # RARP keys carry only the target protocol address, in the first slot.
    spa = np.where(rarp, b.at("daddr_lo", rows), b.at("saddr_lo", rows))
    tpa = np.where(rarp, 0, b.at("daddr_lo", rows))
    # The reader took ARP addresses as little-endian numbers when pln was not 4 (ra swaps them
    # from network order only then): they go back in the same byte order.
    swap = ~rarp & (pln != 4)
    data = packed(len(rows), fields, {
        **header(0x02, b.at("flow_subtype", rows), b.at("flow_qual", rows), words),
        "hrd": hrd, "pro": pro, "hln": hln, "pln": pln, "op": b.at("arp_op", rows),
        "spa": np.where(swap, byteswap32(spa), spa), "tpa": np.where(swap, byteswap32(tpa), tpa),
    })
    return Piece(rows, data, words * 4)


def arp_defaults(b: Batch, rows: np.ndarray, rarp: np.ndarray) -> tuple[np.ndarray, ...]:
    """hrd, pro, hln, pln of ARP keys as ra -w writes them: a field that is 0 becomes the
    Ethernet/IPv4 value (1, 0x0800, 6, 4), each on its own (ra -w on tcpdump__arp-oobr.pcap:
    all-zero 4-word keys come out `0001 0800 0604`, `0001 0825 0004` as `0001 0825 0604`).
    RARP keys are written as read (no zero ones were seen)."""
    out = []
    for name, default in (("arp_hrd", 1), ("arp_pro", 0x0800), ("arp_hln", 6), ("arp_pln", 4)):
        value = b.at(name, rows)
        out.append(np.where(~rarp & (value == 0), default, value))
    return tuple(out)


def byteswap32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.uint32).byteswap()


def flow_matrix(b: Batch, rows: np.ndarray) -> Piece:
    # LAYER_3_MATRIX addresses stay in host order (spec §8); the writer still adds MASKLEN.
    fields = HDR + [("src", "<u4"), ("dst", "<u4")]
    data = packed(len(rows), fields, {
        **header(0x02, b.at("flow_subtype", rows), b.at("flow_qual", rows) | 0x40, 3),
        "src": b.at("saddr_lo", rows), "dst": b.at("daddr_lo", rows),
    })
    return Piece(rows, data)


def opaque(b: Batch, rows: np.ndarray, kind: int, sub: str | int,
           qual: str | int | np.ndarray, raw: str) -> Piece:
    """A DSR kept as payload bytes: header + payload, padded to a word."""
    chunks = b.binary(raw, rows)
    words = 1 + (chunks.sizes + 3) // 4
    subv = b.at(sub, rows) if isinstance(sub, str) else sub
    qualv = b.at(qual, rows) if isinstance(qual, str) else qual
    head = packed(len(rows), HDR, header(kind, subv, qualv, words))
    return ragged(rows, chunks, head)


# --- time ------------------------------------------------------------------------------------

def client_times(b: Batch, rows: np.ndarray) -> list[np.ndarray]:
    """The four timestamps as the client holds them after reading (spec §6.3).

    When the destination has packets but no timestamps of its own (the argus default form keeps
    only start and last, in the source slots) the client gives it the flow's times.  Observed
    with ra on the corpus: with one packet each way the source packet is the first and the
    destination packet the last one; with one packet on one side only, that side keeps just the
    start time when start and last lie in different seconds.
    """
    ss, se = b.at("sstart", rows), b.at("slast", rows)
    ds, de = b.at("dstart", rows), b.at("dlast", rows)
    spk, dpk = b.at("spkts", rows), b.at("dpkts", rows)
    se = np.maximum(se, ss)
    de = np.maximum(de, ds)
    start, last = ss, se
    to_dst = (dpk > 0) & (ds == 0) & (ss > 0)
    one_each = to_dst & (spk == 1) & (dpk == 1)
    new_second = start // SECOND != last // SECOND
    src_single = to_dst & (spk == 1) & (dpk > 1) & new_second
    dst_single = to_dst & (dpk == 1) & (spk > 1) & new_second
    ds = np.where(to_dst, np.where(one_each, last, start), ds)
    de = np.where(to_dst, np.where(dst_single, start, last), de)
    se = np.where(one_each | src_single, start, se)
    # The mirror case (source packets, times only in the destination slots) is copied back.
    to_src = (spk > 0) & (ss == 0) & (ds > 0)
    ss = np.where(to_src, ds, ss)
    se = np.where(to_src, de, se)
    return [ss, se, ds, de]


def time_presence(b: Batch, rows: np.ndarray, times: list[np.ndarray]) -> list[np.ndarray]:
    """Which of the four timestamps the client writer puts in the DSR."""
    ss, se, ds, de = times
    present = [t >= SECOND for t in times]  # the writer tests tv_sec > 0
    present[1] &= ~(present[0] & (se == ss))
    present[3] &= ~(present[2] & (de == ds))
    # A direction without packets carries no timestamps (when the record has counters).
    metric = (b.at("dsrs", rows) & DSR_BITS["metric"]) > 0
    for k, pk in ((0, "spkts"), (2, "dpkts")):
        empty = metric & (b.at(pk, rows) == 0)
        present[k] &= ~empty
        present[k + 1] &= ~empty
    return present


def duration_us(times: list[np.ndarray]) -> np.ndarray:
    """Record duration as the client computes it: latest end minus earliest non-zero start."""
    ss, se, ds, de = times
    big = np.iinfo(np.int64).max
    stime = np.minimum(np.where(ss > 0, ss, big), np.where(ds > 0, ds, big))
    ltime = np.maximum.reduce([ss, se, ds, de])
    return np.where(stime == big, 0, ltime - stime)


def enc_time(b: Batch, rows: np.ndarray) -> list[Piece]:
    n = len(rows)
    times = client_times(b, rows)
    present = time_presence(b, rows, times)
    dur = duration_us(times)
    bits = sum(np.where(p, bit, 0) for p, bit in zip(
        present, (TIME_SRC_START, TIME_SRC_END, TIME_DST_START, TIME_DST_END), strict=True))
    cnt = sum(p.astype(np.int64) for p in present)
    relative = (cnt > 1) & (dur <= RELATIVE_LIMIT_US)
    low = np.where(cnt <= 1, TIME_ABSOLUTE_TIMESTAMP,
                   np.where(relative, TIME_RELATIVE_RANGE, TIME_ABSOLUTE_RANGE))
    words = np.zeros((n, 9), dtype=np.int64)
    nwords = np.ones(n, dtype=np.int64)
    put_absolute(words, nwords, times, present, ~relative)
    put_relative(words, nwords, times, present, relative, dur)
    words[:, 0] = 0x03 << 24 | (bits | low) << 16 | TIME_UTC_USEC << 8 | nwords
    data = (words & 0xFFFFFFFF).astype(">u4").view(np.uint8).reshape(n, 36)
    return [Piece(rows, data, nwords * 4)]


def put_absolute(words: np.ndarray, nwords: np.ndarray, times: list[np.ndarray],
                 present: list[np.ndarray], rows: np.ndarray) -> None:
    """Absolute form: every present timestamp as (sec, usec), in slot order."""
    for k in range(4):
        sel = present[k] & rows
        sec, usec = split_time(times[k][sel])
        words[sel, nwords[sel]] = sec
        words[sel, nwords[sel] + 1] = usec
        nwords[sel] += 2


def put_relative(words: np.ndarray, nwords: np.ndarray, times: list[np.ndarray],
                 present: list[np.ndarray], rows: np.ndarray, dur: np.ndarray) -> None:
    """Relative form: the first present timestamp absolute, the others i32 us offsets."""
    ss, ds = times[0], times[2]
    from_src = rows & present[0]
    sec, usec = split_time(np.where(from_src, ss, ds)[rows])
    words[rows, 1], words[rows, 2] = sec, usec
    nwords[rows] = 3
    for k in (1, 2, 3):
        sel = from_src & present[k]
        words[sel, nwords[sel]] = times[k][sel] - ss[sel]
        nwords[sel] += 1
    # Without a source start the writer puts the record duration after the dst start.
    sel = rows & ~present[0] & present[3]
    words[sel, nwords[sel]] = dur[sel]
    nwords[sel] += 1


# --- metric ----------------------------------------------------------------------------------

METRIC_DTYPES = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}


def metric_qual(sp: np.ndarray, sb: np.ndarray, dp: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Width/direction code of §6.4, as the client writers choose it."""
    both = ((sp > 0) & (dp > 0)) | ((sb > 0) & (db > 0))
    small = (sp <= 0xFF) & (dp <= 0xFF) & (sb <= 0xFF) & (db <= 0xFF)
    top = np.maximum(sb, db)
    both_q = np.where(small, 1, np.where(top <= 0xFFFF, 2, np.where(top <= 0xFFFFFFFF, 3, 4)))
    src_side = (sp > 0) | (sb > 0)
    one = np.where(src_side, sb, db)
    one_q = np.where(one <= 0xFFFF, 6, np.where(one <= 0xFFFFFFFF, 7, 8))
    one_q = np.where(src_side, one_q, one_q + 4)
    nothing = (sp + dp == 0) & (sb + db == 0)
    return np.where(nothing | both, np.where(nothing, 1, both_q), one_q)


def enc_metric(b: Batch, rows: np.ndarray) -> list[Piece]:
    sp, sb, sa = (b.at(c, rows) for c in ("spkts", "sbytes", "sappbytes"))
    dp, db, da = (b.at(c, rows) for c in ("dpkts", "dbytes", "dappbytes"))
    qual = metric_qual(sp, sb, dp, db)
    app = (sa > 0) | (da > 0)
    pieces = []
    for q in distinct(qual):
        width = (1, 2, 4, 8)[(int(q) - 1) % 4]
        src, dst = q <= 8, q <= 4 or q >= 9
        for with_app in (False, True):
            sel = (qual == q) & (app == with_app)
            if not sel.any():
                continue
            counters = []
            if src:
                counters += [sp[sel], sb[sel]] + ([sa[sel]] if with_app else [])
            if dst:
                counters += [dp[sel], db[sel]] + ([da[sel]] if with_app else [])
            body = np.stack(counters, axis=1).astype(METRIC_DTYPES[width])
            body = body.view(np.uint8).reshape(int(sel.sum()), -1)
            size = 4 + (body.shape[1] + 3) // 4 * 4
            data = np.zeros((body.shape[0], size), dtype=np.uint8)
            data[:, 0], data[:, 1], data[:, 2], data[:, 3] = 0x10, 4 if with_app else 1, q, size // 4
            data[:, 4:4 + body.shape[1]] = body
            pieces.append(Piece(rows[sel], data))
    return pieces


# --- aggregation -----------------------------------------------------------------------------

AGR_FIELDS = HDR + [("count", ">u4"), ("times", "u1", (16,)), ("n", "<i4"), ("min", "<f4"),
                    ("mean", "<f4"), ("stdev", "<f4"), ("max", "<f4"), ("rest", "u1", (36,))]


def record_duration_s(b: Batch, rows: np.ndarray) -> np.ndarray:
    """Duration in seconds (f32) as ra computes it for the synthesised aggregation DSR."""
    return (duration_us(client_times(b, rows)) / 1e6).astype(np.float32)


def enc_agr(b: Batch, rows: np.ndarray) -> list[Piece]:
    """`rows` holds every flow row that gets an aggregation DSR (given or synthesised)."""
    given = (b.at("dsrs", rows) & DSR_BITS["agr"]) > 0
    dur = record_duration_s(b, rows)
    data = packed(len(rows), AGR_FIELDS, {
        **header(0x60, np.where(given, b.at("agr_subtype", rows), 4),
                 np.where(given, b.at("agr_qual", rows), 1), 20),
        "count": np.where(given, b.at("agr_count", rows), 1),
        "n": np.where(given, b.at("agr_act_n", rows), 1),
        "min": np.where(given, b.at("agr_act_min", rows), dur),
        "mean": np.where(given, b.at("agr_act_mean", rows), dur),
        "stdev": np.where(given, b.at("agr_act_stdev", rows), 0),
        "max": np.where(given, b.at("agr_act_max", rows), dur),
    })
    return [Piece(rows, data)]


# --- network ---------------------------------------------------------------------------------

def tcp_direction_fields(p: str) -> list[tuple]:
    return [(f"{p}sec", ">u4"), (f"{p}usec", ">u4"), (f"{p}status", ">u4"),
            (f"{p}seqbase", ">u4"), (f"{p}seq", ">u4"), (f"{p}ack", ">u4"), (f"{p}winnum", ">u4"),
            (f"{p}bytes", ">u4"), (f"{p}retrans", ">u4"), (f"{p}ackbytes", ">u4"),
            (f"{p}winbytes", ">u4"), (f"{p}win", ">u2"), (f"{p}flags", "u1"), (f"{p}winshift", "u1")]


def tcp_direction_values(b: Batch, rows: np.ndarray, p: str) -> dict[str, object]:
    sec, usec = split_time(b.at(f"{p}tcp_last", rows))
    values: dict[str, object] = {f"{p}sec": sec, f"{p}usec": usec}
    for name in ("status", "seqbase", "seq", "ack", "winnum", "bytes", "retrans", "ackbytes",
                 "winbytes", "win", "flags", "winshift"):
        values[f"{p}{name}"] = b.at(f"{p}tcp_{name}", rows)
    # ra clears the window of a direction without packets (corpus).
    silent = b.at(f"{p}pkts", rows) == 0
    values[f"{p}win"] = np.where(silent, 0, values[f"{p}win"])
    return values


def net_perf(b: Batch, rows: np.ndarray) -> Piece:
    fields = HDR + [("status", ">u4"), ("state", ">u4"), ("options", ">u4"), ("synack", ">u4"),
                    ("ackdat", ">u4")] + tcp_direction_fields("s") + tcp_direction_fields("d")
    data = packed(len(rows), fields, {
        **header(0x30, NET_TCP_PERF, 0, 30),
        "status": b.at("tcp_status", rows), "state": b.at("tcp_state", rows),
        "options": b.at("tcp_options", rows), "synack": b.at("tcp_synack", rows),
        "ackdat": b.at("tcp_ackdat", rows),
        **tcp_direction_values(b, rows, "s"), **tcp_direction_values(b, rows, "d"),
    })
    return Piece(rows, data)


def net_init(b: Batch, rows: np.ndarray) -> Piece:
    fields = HDR + [("status", ">u4"), ("seqbase", ">u4"), ("options", ">u4"), ("win", ">u2"),
                    ("flags", "u1"), ("winshift", "u1")]
    data = packed(len(rows), fields, {
        **header(0x30, NET_TCP_INIT, 0, 5),
        "status": b.at("tcp_status", rows), "seqbase": b.at("stcp_seqbase", rows),
        "options": b.at("tcp_options", rows), "win": b.at("stcp_win", rows),
        "flags": b.at("stcp_flags", rows), "winshift": b.at("stcp_winshift", rows),
    })
    return Piece(rows, data)


def net_status(b: Batch, rows: np.ndarray) -> Piece:
    fields = HDR + [("status", ">u4"), ("sflags", "u1"), ("dflags", "u1"), ("pad", ">u2")]
    data = packed(len(rows), fields, {
        **header(0x30, NET_TCP_STATUS, 0, 3), "status": b.at("tcp_status", rows),
        "sflags": b.at("stcp_flags", rows), "dflags": b.at("dtcp_flags", rows),
    })
    return Piece(rows, data)


def net_esp(b: Batch, rows: np.ndarray) -> Piece:
    fields = HDR + [("status", ">u4"), ("spi", ">u4"), ("lastseq", ">u4"), ("lostseq", ">u4")]
    data = packed(len(rows), fields, {
        **header(0x30, NET_ESP, 0, 5), "status": b.at("tcp_status", rows),
        "spi": b.at("esp_spi", rows), "lastseq": b.at("esp_lastseq", rows),
        "lostseq": b.at("esp_lostseq", rows),
    })
    return Piece(rows, data)


def net_opaque(b: Batch, rows: np.ndarray) -> Piece:
    sub = b.at("net_subtype", rows)
    # ra -w copies the RTP object's qualifier as read; the other objects are written with 0.
    qual = np.zeros(len(rows), dtype=np.uint8)
    if b.has_column("net_qual"):
        qual = np.where(sub == NET_RTP, b.at("net_qual", rows), 0)
    piece = opaque(b, rows, 0x30, "net_subtype", qual, "net_raw")
    # The client rewrite clears the ICMP object's checksum slot (payload bytes 2-3).
    icmp = sub == NET_ICMP
    if piece.data.shape[1] >= 8:
        piece.data[icmp, 6:8] = 0
    # The ARP responder object keeps its 44-word size whatever the reader kept of it.
    arp = sub == NET_ARP
    if arp.any():
        width = max(piece.data.shape[1], ARP_NET_WORDS * 4)
        data = np.zeros((len(rows), width), dtype=np.uint8)
        data[:, :piece.data.shape[1]] = piece.data
        data[arp, ARP_NET_WORDS * 4:] = 0
        data[arp, 3] = ARP_NET_WORDS
        lens = np.where(arp, ARP_NET_WORDS * 4, piece.lens)
        piece = Piece(rows, data, lens)
    return piece


def enc_net(b: Batch, rows: np.ndarray) -> list[Piece]:
    sub = b.at("net_subtype", rows)
    raw_len = b.binary_sizes("net_raw")[rows] if len(rows) else sub
    kinds: list[tuple[np.ndarray, Callable[[Batch, np.ndarray], Piece]]] = [
        (sub == NET_TCP_PERF, net_perf), (sub == NET_TCP_INIT, net_init),
        (sub == NET_TCP_STATUS, net_status), (sub == NET_ESP, net_esp),
    ]
    # The empty network DSR of UDP and other flows is not written again by the clients
    # (samples, corpus).  The RTP object is copied: the reader has already left it out where
    # ra's reader does (dsr_decode.drop_unread_rtp).
    known = np.isin(sub, (NET_TCP_PERF, NET_TCP_INIT, NET_TCP_STATUS, NET_ESP))
    kinds.append((~known & ~((sub == NET_NONE) & (raw_len == 0)), net_opaque))
    return [encode(b, rows[mask]) for mask, encode in kinds if mask.any()]


# --- the smaller DSRs ------------------------------------------------------------------------

def enc_vlan(b: Batch, rows: np.ndarray) -> list[Piece]:
    fields = HDR + [("s", ">u2"), ("d", ">u2")]
    data = packed(len(rows), fields, {**header(0x40, 0, b.at("vlan_qual", rows), 2),
                                      "s": b.at("svlan", rows), "d": b.at("dvlan", rows)})
    return [Piece(rows, data)]


def enc_mpls(b: Batch, rows: np.ndarray) -> list[Piece]:
    qual = b.at("mpls_qual", rows).astype(np.int64)
    nsrc, ndst = qual >> 4, qual & 0x0F
    words = 1 + nsrc + ndst
    n = len(rows)
    body = np.zeros((n, 31), dtype=np.int64)
    body[nsrc > 0, 0] = b.at("smpls", rows)[nsrc > 0]
    idx = np.flatnonzero(ndst > 0)
    body[idx, nsrc[idx]] = b.at("dmpls", rows)[idx]
    # racluster's merge adds subtype bit 0x20 and writes it; ra -w of such a record drops it
    # (mix_racluster.argus), so the ra mode clears it.
    sub = b.at("mpls_subtype", rows).astype(np.int64)
    sub = sub & ~0x20 if b.ra_rewrite else sub
    head = (0x44 << 24 | sub << 16
            | qual << 8 | words)
    all_words = np.concatenate([head[:, None], body], axis=1).astype(">u4")
    return [Piece(rows, all_words.view(np.uint8).reshape(n, 128), words * 4)]


JIT_BLOCKS = ((1, "sjit_act"), (2, "sjit_idl"), (4, "djit_act"), (8, "djit_idl"))


def enc_jitter(b: Batch, rows: np.ndarray) -> list[Piece]:
    qual = b.at("jit_qual", rows) & 0x0F
    pieces = []
    for q in distinct(qual):
        sel = rows[qual == q]
        fields, values = list(HDR), {}
        blocks = [p for bit, p in JIT_BLOCKS if q & bit]
        for p in blocks:
            fields += [(f"{p}_n", ">i4")] + [(f"{p}_{s}", ">f4") for s in ("min", "mean", "stdev", "max")]
            for s in ("n", "min", "mean", "stdev", "max"):
                values[f"{p}_{s}"] = b.at(f"{p}_{s}", sel)
        # Histogram forms are not kept by the reader: write the plain form.
        sub = b.at("jit_subtype", sel) & 0xFC
        data = packed(len(sel), fields, {**header(0x46, sub, q, 1 + 5 * len(blocks)), **values})
        pieces.append(Piece(sel, data))
    return pieces


def enc_attr(b: Batch, rows: np.ndarray) -> list[Piece]:
    qual = b.at("attr_qual", rows)
    pieces = []
    for q in distinct(qual):
        sel = rows[qual == q]
        fields, values = list(HDR), {}
        for bit, p in ((0x01, "s"), (0x04, "sopt"), (0x02, "d"), (0x08, "dopt")):
            if not q & bit:
                continue
            if p in ("s", "d"):
                fields += [(f"{p}ttl", "u1"), (f"{p}tos", "u1"), (f"{p}ipid", ">u2")]
                for f in ("ttl", "tos", "ipid"):
                    values[f"{p}{f}"] = b.at(f"{p}{f}", sel)
            else:
                fields.append((p, ">u4"))
                values[p] = b.at(f"{p[0]}ipopts", sel)
        words = 1 + sum(1 for bit in (1, 2, 4, 8) if q & bit)
        pieces.append(Piece(sel, packed(len(sel), fields, {**header(0x48, 0, q, words), **values})))
    return pieces


def enc_psize(b: Batch, rows: np.ndarray) -> list[Piece]:
    qual = b.at("psize_qual", rows)
    code = qual & 0x0F
    src = (code >= 1) & (code <= 8)
    dst = ((code >= 1) & (code <= 4)) | ((code >= 9) & (code <= 12))
    pieces = []
    for s_on, d_on in ((True, True), (True, False), (False, True)):
        sel = rows[(src == s_on) & (dst == d_on)]
        if not len(sel):
            continue
        fields, values = list(HDR), {}
        for on, p in ((s_on, "s"), (d_on, "d")):
            if on:
                fields += [(f"{p}min", ">u2"), (f"{p}max", ">u2")]
                values[f"{p}min"], values[f"{p}max"] = b.at(f"{p}minsz", sel), b.at(f"{p}maxsz", sel)
        for on, p in ((s_on, "s"), (d_on, "d")):
            if on:
                fields.append((f"{p}hist", ">u4"))
                values[f"{p}hist"] = b.at(f"{p}pktsz_hist", sel)
        # Client form: histogram present (0x04) plus one bit per direction.
        sub = 0x04 | (0x01 if s_on else 0) | (0x02 if d_on else 0)
        words = 1 + 2 * (int(s_on) + int(d_on))
        data = packed(len(sel), fields, {**header(0x12, sub, b.at("psize_qual", sel), words), **values})
        pieces.append(Piece(sel, data))
    return pieces


def enc_user(direction: str) -> Callable[[Batch, np.ndarray], list[Piece]]:
    def encode(b: Batch, rows: np.ndarray) -> list[Piece]:
        chunks = b.binary(f"{direction}user", rows)
        count = chunks.sizes
        words = 2 + (count + 3) // 4
        fields = [("type", "u1"), ("sub", "u1"), ("len", ">u2"), ("size", ">u2"), ("count", ">u2")]
        head = packed(len(rows), fields, {
            "type": 0x50, "sub": 0x90 if direction == "s" else 0xA0, "len": words,
            "size": b.at(f"{direction}user_size", rows), "count": count,
        })
        return [ragged(rows, chunks, head)]
    return encode


def enc_mac(b: Batch, rows: np.ndarray) -> list[Piece]:
    fields = HDR + [("dmac", "u1", (6,)), ("smac", "u1", (6,)), ("etype", "<u2"),
                    ("dsap", "u1"), ("ssap", "u1")]  # ether type in host order (spec §2)
    data = packed(len(rows), fields, {
        **header(0x42, 0, b.at("mac_qual", rows), 5),
        "dmac": mac_bytes(b.at("dmac", rows)), "smac": mac_bytes(b.at("smac", rows)),
        "etype": b.at("mac_etype", rows), "dsap": b.at("mac_dsap", rows),
        "ssap": b.at("mac_ssap", rows),
    })
    return [Piece(rows, data)]


def enc_icmpmap(b: Batch, rows: np.ndarray) -> list[Piece]:
    fields = HDR + [("type_", "u1"), ("code", "u1"), ("iseq", ">u2"), ("osrc", ">u4"),
                    ("odst", ">u4"), ("isrc", ">u4"), ("idst", ">u4"), ("gw", ">u4"),
                    ("trailer", ">u4")]
    values = {f: b.at(f"icmpmap_{f}", rows) for f in ("code", "iseq", "osrc", "odst", "isrc",
                                                       "idst", "gw")}
    data = packed(len(rows), fields, {**header(0x34, 0, b.at("icmpmap_qual", rows), 8),
                                      "type_": b.at("icmpmap_type", rows), **values})
    return [Piece(rows, data)]


def enc_encaps(b: Batch, rows: np.ndarray) -> list[Piece]:
    fields = HDR + [("s", ">u4"), ("d", ">u4")]
    data = packed(len(rows), fields, {**header(0x20, 0, 0, 3), "s": b.at("sencaps", rows),
                                      "d": b.at("dencaps", rows)})
    return [Piece(rows, data)]


def enc_behavior(b: Batch, rows: np.ndarray) -> list[Piece]:
    fields = HDR + [("s", ">i4"), ("d", ">i4")]
    data = packed(len(rows), fields, {**header(0x54, b.at("behavior_subtype", rows), 0, 3),
                                      "s": b.at("snstroke", rows), "d": b.at("dnstroke", rows)})
    return [Piece(rows, data)]


def enc_cor(b: Batch, rows: np.ndarray) -> list[Piece]:
    return [opaque(b, rows, 0x62, 0, 0, "cor_raw")]


def enc_cocode(b: Batch, rows: np.ndarray) -> list[Piece]:
    fields = HDR + [("s", "u1", (2,)), ("d", "u1", (2,))]
    data = packed(len(rows), fields, {**header(0x64, 0, 0, 2), "s": b.binary("sco", rows).fixed(2),
                                      "d": b.binary("dco", rows).fixed(2)})
    return [Piece(rows, data)]


def enc_label(b: Batch, rows: np.ndarray) -> list[Piece]:
    # NUL terminated and padded to a word; subtype 0x01 = service label.
    texts = b.binary("label", rows)
    words = 1 + (texts.sizes + 1 + 3) // 4
    head = packed(len(rows), HDR, header(0x66, 0x01, 0, words))
    return [ragged(rows, texts, head, trailer=1)]


def enc_asn(b: Batch, rows: np.ndarray) -> list[Piece]:
    ias = b.at("ias", rows)
    fields = HDR + [("s", ">u4"), ("d", ">u4"), ("i", ">u4")]
    words = np.where(ias > 0, 4, 3)
    data = packed(len(rows), fields, {**header(0x32, 0, 0, words), "s": b.at("sas", rows),
                                      "d": b.at("das", rows), "i": ias})
    return [Piece(rows, data, words * 4)]


ENCODERS: dict[str, Callable[[Batch, np.ndarray], list[Piece]]] = {
    "transport": enc_transport, "flow": enc_flow, "time": enc_time, "metric": enc_metric,
    "agr": enc_agr, "net": enc_net, "vlan": enc_vlan, "mpls": enc_mpls, "jitter": enc_jitter,
    "attr": enc_attr, "psize": enc_psize, "suser": enc_user("s"), "duser": enc_user("d"),
    "mac": enc_mac, "icmpmap": enc_icmpmap, "encaps": enc_encaps, "behavior": enc_behavior,
    "cor": enc_cor, "cocode": enc_cocode, "label": enc_label, "asn": enc_asn,
}


# --- ARP flows with the REVERSE bit ------------------------------------------------------------

# The column pairs are the reader's (dsr_decode.ARP_SWAPPED_PAIRS: ra leaves the encapsulation
# DSR as it is); the qualifier bits differ in that the writer also moves the user-data DSR bits.
# Qualifier bits that name a direction: (column, source bits, destination bits).
SWAPPED_BITS = (
    ("vlan_qual", 0x01, 0x02), ("mac_qual", 0x01, 0x02), ("mpls_subtype", 0x01, 0x02),
    ("mpls_qual", 0xF0, 0x0F), ("jit_qual", 0x03, 0x0C), ("attr_qual", 0x15, 0x2A),
    ("dsrs", DSR_BITS["suser"], DSR_BITS["duser"]),
)


def unreverse_arp(b: Batch) -> None:
    """ra reverses every other DSR of an ARP record whose key has the REVERSE bit (§6.2.8) and
    writes the key without it.  Our reader does so already (dsr_decode.unreverse_arp); this is
    for batches built otherwise."""
    sub = b.col("flow_subtype")
    far = (b.col("rtype") != RTYPE_MAR) & ((b.col("dsrs") & DSR_BITS["flow"]) > 0)
    rows = np.flatnonzero(far & ((sub & 0x3F) == 0x06) & ((sub & 0x40) > 0))
    if not len(rows):
        return
    # Only here: the reader's module imports polars (a probe's batches never get this far).
    from argusflow.records.dsr_decode import ARP_SWAPPED_PAIRS, swap_bits

    for a, c in ARP_SWAPPED_PAIRS:
        b.swap(a, c, rows)
    for name, src, dst in SWAPPED_BITS:
        b.replace(name, rows, swap_bits(b.at(name, rows), src, dst))
    # Packet-size qualifier: the metric codes 5-8 (source only) and 9-12 (destination only).
    q = b.at("psize_qual", rows).astype(np.int64)
    q = np.where((q >= 5) & (q <= 8), q + 4, np.where((q >= 9) & (q <= 12), q - 4, q))
    b.replace("psize_qual", rows, q)
    b.replace("flow_subtype", rows, b.at("flow_subtype", rows) & 0xBF)


# --- assembly --------------------------------------------------------------------------------

def agr_rows(b: Batch, synthesise_agr: bool) -> np.ndarray:
    """Rows that get an aggregation DSR.

    ra -w synthesises a count-1 DSR for records without one; racluster and radium write it only
    when more than one record was merged.
    """
    far = b.col("rtype") != RTYPE_MAR
    given = (b.col("dsrs") & DSR_BITS["agr"]) > 0
    if synthesise_agr:
        return np.flatnonzero(far)
    return np.flatnonzero(far & given & (b.col("agr_count") != 1))


def encode_batch(df: pl.DataFrame | Columns, synthesise_agr: bool = True) -> bytes:
    """Encode a record batch (schema of records.schema; a polars frame or `Columns`) as the
    client writers do.

    `synthesise_agr=True` is `ra -w` (every flow record carries an aggregation DSR, count 1 when
    the batch row has none; the MPLS merge bit 0x20 is dropped); False is racluster/radium (no
    aggregation DSR when the count is 1).  MAR rows are copied from `mar_raw`.
    """
    b = Batch(df, ra_rewrite=synthesise_agr)
    unreverse_arp(b)
    n = b.n
    if n == 0:
        return b""
    # Every DSR kind present, in client order, with each row's byte length (0 = absent).
    kinds: list[tuple[np.ndarray, list[Piece]]] = []
    rec_len = np.full(n, 4, dtype=np.int64)
    for name in CLIENT_ORDER:
        rows = agr_rows(b, synthesise_agr) if name == "agr" else has(b, name)
        if not len(rows):
            continue
        lengths = np.zeros(n, dtype=np.int64)
        pieces = ENCODERS[name](b, rows)
        for piece in pieces:
            lengths[piece.rows] = piece.data.shape[1] if piece.lens is None else piece.lens
        rec_len += lengths
        kinds.append((lengths, pieces))
    mar_rows = np.flatnonzero(b.col("rtype") == RTYPE_MAR)
    mar_chunks = b.binary("mar_raw", mar_rows)
    rec_len[mar_rows] = (mar_chunks.sizes + 3) // 4 * 4
    rec_start = np.cumsum(rec_len) - rec_len
    out = np.zeros(int(rec_len.sum()), dtype=np.uint8)
    write_headers(out, b, rec_start, rec_len)
    cursor = rec_start + 4  # where the next DSR of each record goes
    for lengths, pieces in kinds:
        for piece in pieces:
            scatter(out, cursor[piece.rows], piece)
        cursor += lengths
    if len(mar_rows):
        head = np.zeros((len(mar_rows), 0), dtype=np.uint8)
        scatter(out, rec_start[mar_rows], ragged(mar_rows, mar_chunks, head))
    return out.tobytes()


def write_headers(out: np.ndarray, b: Batch, rec_start: np.ndarray, rec_len: np.ndarray) -> None:
    """Record headers of the flow rows: type|version 3, cause, length in words (BE)."""
    far = np.flatnonzero(b.col("rtype") != RTYPE_MAR)
    words = rec_len[far] // 4
    head = np.stack([b.col("rtype")[far] | 0x03, b.col("cause")[far], words >> 8, words & 0xFF],
                    axis=1).astype(np.uint8)
    out.view(np.uint32)[rec_start[far] // 4] = head.view(np.uint32).ravel()


def scatter(out: np.ndarray, starts: np.ndarray, piece: Piece) -> None:
    """Copy piece rows to their byte offsets; everything is word aligned, so move u32 words."""
    words = out.view(np.uint32)
    data = np.ascontiguousarray(piece.data).view(np.uint32)
    at = starts[:, None] // 4 + np.arange(data.shape[1])
    if piece.lens is None or (piece.lens == piece.data.shape[1]).all():
        words[at] = data
        return
    keep = np.arange(data.shape[1])[None, :] < (piece.lens // 4)[:, None]
    words[at[keep]] = data[keep]
