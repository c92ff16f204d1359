"""Decoding the DSRs of a batch of records (spec §5-§6), one DSR type at a time.

Each DSR layout is data: a table of (column, byte offset, width, byte order, kind).  `gather`
reads every field of a layout for all DSRs of that type and writes it at the owning record's
row.  Variable layouts (IP attributes, jitter blocks, packet sizes, MPLS, the TCP direction
blocks) are the same tables applied at a per-DSR base offset; the time and metric DSRs, whose
encodings change with the header bits, are grouped by header first, and each group is one
fixed layout again.  A field beyond its DSR's length reads as 0, like an absent DSR.

Columns are written once, straight into arrays of the schema's dtypes (`kind` f32/i32 fields are
reinterpreted, not converted): no wide intermediate columns, which cost more memory traffic
than the reading itself.  When the compiled kernels are loaded (ByteBuffer.compiled), a layout
is read in one compiled pass (records.kernels.gather_fields) into an Arena holding the batch's
columns, instead of numpy's few passes per field.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from argusflow.records.framing import Frame, kernel
from argusflow.records.schema import (
    ADDR_ETHER,
    ADDR_IPV4,
    ADDR_IPV6,
    DSR_BITS,
    DSR_TYPES,
    NET_ESP,
    NET_TCP_INIT,
    NET_TCP_PERF,
    NET_TCP_STATUS,
    NUMPY_DTYPES,
    RTYPE_MAR,
)

GATHER_PAD = 512  # zero bytes after the data: a base offset plus a field offset stays inside
ABSENT = 1 << 40  # a base offset that no DSR size reaches: the field reads as 0
BE, LE = "big", "little"
U, S, F = "u", "i32", "f32"

# Columns a decoder builds on the way to a schema column (popped before the batch is made).
HELPER_DTYPES = {"flowlabel_word": np.uint32, "stcp_last_sec": np.uint32,
                 "stcp_last_usec": np.uint32, "dtcp_last_sec": np.uint32,
                 "dtcp_last_usec": np.uint32, "status": np.uint32, "argusid": np.uint32,
                 "thisid": np.uint32}
# The unsigned integer of each width: the bits a column's values are OR-ed in as.
BITS_OF = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def dtype_of(name: str) -> np.dtype:
    dtype = DTYPES.get(name)
    if dtype is None:
        raise KeyError(name)
    return dtype


DTYPES: dict[str, np.dtype] = {
    # by the schema's numpy names: SCHEMA would import polars, which a numpy reader never needs
    **{name: np.dtype(code) for name, code in NUMPY_DTYPES.items() if code != "O"},
    **{name: np.dtype(dtype) for name, dtype in HELPER_DTYPES.items()},
}


# --- numpy readers --------------------------------------------------------------------------------

def read_words(words: np.ndarray, at: np.ndarray, lead: int, width: int, little: bool = False
               ) -> np.ndarray:
    """The `width`-byte unsigned integers `lead` bytes into the big-endian words numbered `at`
    (words: the buffer as native u32, ByteBuffer.words): one or two gathers of u32 per field,
    not one per byte.  u32 when the field fits in one word, else u64."""
    return field_value(lambda j: words[at + j] if j else words[at], 0, lead, width, little)


def field_value(fetch: Callable[[int], np.ndarray], word: int, lead: int, width: int,
                little: bool = False) -> np.ndarray:
    """A field `lead` bytes into word `word` of each DSR, from `fetch(word)`: the u32 words
    there (shared between the fields of one word: never changed in place)."""
    if lead + width <= 4:
        value = fetch(word)
        if width < 4:
            value = (value >> np.uint32(8 * (4 - lead - width))) & np.uint32((1 << (8 * width)) - 1)
    else:
        value = fetch(word).astype(np.uint64) << np.uint64(32) | fetch(word + 1)
        if width < 8:
            value = (value >> np.uint64(8 * (8 - lead - width))) & np.uint64((1 << (8 * width)) - 1)
    if little and width > 1:
        value = value.astype(BITS_OF.get(width, np.uint64)).byteswap()
        if width not in BITS_OF:
            value >>= np.uint64(8 * (8 - width))
    return value


def read_numpy(u8: np.ndarray, at: np.ndarray, width: int, little: bool = False,
               words: np.ndarray | None = None) -> np.ndarray:
    """The `width`-byte unsigned integers at byte offsets `at` (any alignment), as u64."""
    if width == 1:
        return u8[at].astype(np.uint64)
    if words is not None and len(at) and bool(((at & 3) == (at[0] & 3)).all()):
        return read_words(words, at >> 2, int(at[0] & 3), width, little).astype(np.uint64)
    span = width if width in (2, 4, 8) else 8
    raw = u8[at[:, None] + np.arange(span)].view(f"{'<' if little else '>'}u{span}").ravel()
    value = raw.astype(np.uint64)
    if span == width:
        return value
    return value & np.uint64((1 << (8 * width)) - 1) if little else value >> np.uint64(8 * (span - width))


# --- buffers, DSR sets and columns -----------------------------------------------------------

class ByteBuffer:
    """The bytes being decoded, zero-padded so that no gather leaves the array.

    `compiled`: framed and gathered with the compiled kernels (records.kernels), else numpy.
    """

    def __init__(self, raw: bytes, compiled: bool = False) -> None:
        self.raw = raw
        self.compiled = compiled
        self.u8 = np.zeros((len(raw) + GATHER_PAD) // 4 * 4, dtype=np.uint8)
        self.u8[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        self._words: np.ndarray | None = None

    @property
    def words(self) -> np.ndarray:
        """The buffer as native u32 holding its big-endian words (the numpy readers' source)."""
        if self._words is None:
            self._words = self.u8.view(">u4").astype(np.uint32)
        return self._words


class Dsrs:
    """The DSRs of one type in a batch: owning record, byte position, size, header bytes.

    A subset (`where`) copies the header bytes only when asked: most subsets are only read."""

    def __init__(self, rec: np.ndarray, pos: np.ndarray, size: np.ndarray,
                 sub: np.ndarray | Callable[[], np.ndarray],
                 qual: np.ndarray | Callable[[], np.ndarray]) -> None:
        self.rec, self.pos, self.size = rec, pos, size
        self._sub, self._qual = sub, qual

    @property
    def sub(self) -> np.ndarray:
        if callable(self._sub):
            self._sub = self._sub()
        return self._sub

    @property
    def qual(self) -> np.ndarray:
        if callable(self._qual):
            self._qual = self._qual()
        return self._qual

    def where(self, mask: np.ndarray) -> Dsrs:
        count = np.count_nonzero(mask)
        if count == len(mask):  # usually all or none: no copies then
            return self
        at = np.flatnonzero(mask)
        return Dsrs(self.rec[at], self.pos[at], self.size[at], lambda: self.sub[at],
                    lambda: self.qual[at])


class Columns(dict):
    """Columns of a batch, each an array of its schema dtype from the first write on."""

    def __init__(self, n: int, raw: bytes = b"", wanted: frozenset[str] | None = None) -> None:
        super().__init__()
        self.n = n
        self.raw = raw  # the undecoded bytes, for the few DSRs kept as byte strings
        self.wanted = wanted  # a projection (with_helpers): the only columns to build
        self.raw_u8 = np.frombuffer(raw, dtype=np.uint8)
        self.arena: Arena | None = None  # where the compiled gather writes (decode sets it)

    def wants(self, name: str) -> bool:
        return self.wanted is None or name in self.wanted

    def column(self, name: str) -> np.ndarray:
        """The column `name`, made (zeros, in the arena if it has room for it) on first use."""
        values = self.get(name)
        if values is None:
            if self.arena is not None and name in self.arena.slot:
                values = self[name] = self.arena.view(name)
            else:
                values = self[name] = np.zeros(self.n, dtype=dtype_of(name))
        return values

    def in_arena(self, name: str) -> bool:
        """Column `name` is (or will be made) the arena's: the compiled gather may write it."""
        arena = self.arena
        if arena is None or name not in arena.slot:
            return False
        values = self.get(name)
        return values is None or values is arena.views.get(name)

    def scatter(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        """column[rows] |= values, as bits: integers are truncated to the column's width, and
        32-bit patterns land in i32/f32 columns unchanged (reinterpreted).  A column written by
        several DSR variants is OR-ed (one writer per row)."""
        if not self.wants(name):
            return
        fresh = name not in self
        column = self.column(name)
        bits = column.view(BITS_OF[column.itemsize])
        if fresh:  # zeros: a plain store, a third of an OR's work
            bits[rows] = values
        else:
            bits[rows] |= np.asarray(values).astype(bits.dtype)

    def merge(self, name: str, values: np.ndarray) -> None:
        """Add a whole column (n values); OR-ed into one that exists."""
        if not self.wants(name):
            return
        if name in self:
            self.scatter(name, slice(None), values)  # type: ignore[arg-type]
        else:
            self[name] = values.astype(dtype_of(name), copy=False)

    def put(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        self.scatter(name, rows, np.asarray(values))

    def typed(self) -> dict[str, np.ndarray]:
        """The columns in their schema dtypes (the few header columns set directly are cast)."""
        out: dict[str, np.ndarray] = dict(self)
        for name, values in out.items():
            if values.dtype != object:
                want = dtype_of(name)
                if values.dtype != want:
                    out[name] = values.astype(want)
        return out


Layout = list[tuple[str, int, int, str, str]]


def gather(cols: Columns, buf: ByteBuffer, d: Dsrs, layout: Layout, prefix: str = "",
           base: np.ndarray | int = 0) -> None:
    """Read every field of `layout` for all DSRs `d` (at `base` + offset) into the columns."""
    if cols.wanted is not None:
        layout = [f for f in layout if prefix + f[0] in cols.wanted]
    if not len(d.rec) or not layout:
        return
    if cols.arena is not None:
        layout = gather_compiled(cols, buf, d, layout, prefix, base)
        if not layout:
            return
    scalar = np.ndim(base) == 0
    smallest = int(d.size.min())
    aligned = int(base) % 4 == 0 if scalar else bool(((np.asarray(base) & 3) == 0).all())
    wbase = (d.pos + base) >> 2  # DSRs start on words; with an aligned base, so does a field's word
    fetched: dict[int, np.ndarray] = {}

    def fetch(word: int) -> np.ndarray:  # fields packed in one word share its gather
        got = fetched.get(word)
        if got is None:
            got = fetched[word] = buf.words[wbase + word]
        return got

    for name, off, width, order, _ in layout:
        if scalar and smallest >= int(base) + off + width:
            ok, rows = None, d.rec  # the usual case: every DSR holds the field
        else:
            ok = base + off + width <= d.size
            rows = d.rec[ok]
            if not len(rows):
                continue
        if aligned and ok is None:
            values = field_value(fetch, off >> 2, off & 3, width, order == LE)
        elif aligned:
            values = read_words(buf.words, wbase[ok] + (off >> 2), off & 3, width, order == LE)
        else:
            at = d.pos + base + off if ok is None else (d.pos + base + off)[ok]
            values = read_numpy(buf.u8, at, width, order == LE, buf.words)
        cols.scatter(prefix + name, rows, values)


class Arena:
    """Zeroed columns for one batch, held as four 2D blocks by width (u8, u16, u32, u64 rows),
    so that the compiled gather writes any of them in one call.  A column is a row, viewed in
    its schema dtype (i32/f32 columns are u32 rows reinterpreted)."""

    def __init__(self, n: int, names: list[str]) -> None:
        by_width: dict[int, list[str]] = {1: [], 2: [], 4: [], 8: []}
        for name in names:
            by_width[dtype_of(name).itemsize].append(name)
        self.blocks = [np.zeros((len(by_width[w]), n), dtype=BITS_OF[w]) for w in (1, 2, 4, 8)]
        self.slot = {name: (w, row) for w, group in by_width.items()
                     for row, name in enumerate(group)}
        self.views: dict[str, np.ndarray] = {}

    def view(self, name: str) -> np.ndarray:
        width, row = self.slot[name]
        values = self.views[name] = self.blocks[(1, 2, 4, 8).index(width)][row].view(dtype_of(name))
        return values


def gather_compiled(cols: Columns, buf: ByteBuffer, d: Dsrs, layout: Layout, prefix: str,
                    base: np.ndarray | int) -> Layout:
    """gather's work, for the fields whose column is in the arena, in one compiled pass over the
    DSRs (records.kernels.gather_fields); returns the fields left for numpy."""
    mine = [f for f in layout if cols.in_arena(prefix + f[0])]
    if not mine:
        return layout
    arena = cols.arena
    assert arena is not None
    slots = []
    for name, *_ in mine:
        cols.column(prefix + name)  # registers the arena's view as the column
        slots.append(arena.slot[prefix + name])
    gather_fields = kernel("gather_fields")
    assert gather_fields is not None  # decode makes an arena only when it is there
    gather_fields(buf.words, buf.u8, np.ascontiguousarray(d.pos, dtype=np.int64),
                  np.ascontiguousarray(d.size, dtype=np.int64),
                  np.ascontiguousarray(d.rec, dtype=np.int64),
                  np.ascontiguousarray(np.reshape(base, -1), dtype=np.int64),
                  np.array([f[1] for f in mine], dtype=np.int64),
                  np.array([f[2] for f in mine], dtype=np.int64),
                  np.array([f[3] == LE for f in mine], dtype=np.bool_),
                  np.array([w for w, _ in slots], dtype=np.int64),
                  np.array([row for _, row in slots], dtype=np.int64), *arena.blocks)
    return [f for f in layout if f not in mine] if len(mine) < len(layout) else []


def fixed(layout: Layout) -> Callable[[Columns, ByteBuffer, Dsrs], None]:
    def decode(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
        gather(cols, buf, d, layout)
    return decode


def groups(d: Dsrs, key: np.ndarray) -> list[tuple[int, Dsrs]]:
    """The DSRs split by `key` (a header-derived layout code): few groups, each one layout."""
    if not len(key):
        return []
    small = int(key.max()) < 1 << 17  # then counting is cheaper than np.unique's hashing
    values = np.flatnonzero(np.bincount(key)).tolist() if small else np.unique(key).tolist()
    if len(values) == 1:
        return [(values[0], d)]
    return [(value, d.where(key == value)) for value in values]


# --- layouts (column, offset, width, order, kind) ---------------------------------------------

TRANSPORT: Layout = [("srcid", 4, 4, BE, U), ("seq", 8, 4, BE, U)]
ENCAPS: Layout = [("sencaps", 4, 4, BE, U), ("dencaps", 8, 4, BE, U)]
ICMPMAP: Layout = [
    ("icmpmap_type", 4, 1, BE, U), ("icmpmap_code", 5, 1, BE, U), ("icmpmap_iseq", 6, 2, BE, U),
    ("icmpmap_osrc", 8, 4, BE, U), ("icmpmap_odst", 12, 4, BE, U), ("icmpmap_isrc", 16, 4, BE, U),
    ("icmpmap_idst", 20, 4, BE, U), ("icmpmap_gw", 24, 4, BE, U),
]
VLAN: Layout = [("svlan", 4, 2, BE, U), ("dvlan", 6, 2, BE, U)]
MAC: Layout = [
    ("dmac", 4, 6, BE, U), ("smac", 10, 6, BE, U), ("mac_etype", 16, 2, LE, U),
    ("mac_dsap", 18, 1, BE, U), ("mac_ssap", 19, 1, BE, U),
]
BEHAVIOR: Layout = [("snstroke", 4, 4, BE, S), ("dnstroke", 8, 4, BE, S)]
ASN: Layout = [("sas", 4, 4, BE, U), ("das", 8, 4, BE, U), ("ias", 12, 4, BE, U)]
# The aggregation DSR's statistics are in the writer's host order (little-endian), spec §6.16.
AGR: Layout = [
    ("agr_count", 4, 4, BE, U), ("agr_act_n", 24, 4, LE, S), ("agr_act_min", 28, 4, LE, F),
    ("agr_act_mean", 32, 4, LE, F), ("agr_act_stdev", 36, 4, LE, F), ("agr_act_max", 40, 4, LE, F),
]
TCP_PERF: Layout = [
    ("tcp_status", 4, 4, BE, U), ("tcp_state", 8, 4, BE, U), ("tcp_options", 12, 4, BE, U),
    ("tcp_synack", 16, 4, BE, U), ("tcp_ackdat", 20, 4, BE, U),
]
# One direction block of TCP_PERF (spec §6.7.3), at offset 24 (source) or 72 (destination).
TCP_DIRECTION: Layout = [
    ("tcp_last_sec", 0, 4, BE, U), ("tcp_last_usec", 4, 4, BE, U),
    ("tcp_status", 8, 4, BE, U), ("tcp_seqbase", 12, 4, BE, U), ("tcp_seq", 16, 4, BE, U),
    ("tcp_ack", 20, 4, BE, U), ("tcp_winnum", 24, 4, BE, U), ("tcp_bytes", 28, 4, BE, U),
    ("tcp_retrans", 32, 4, BE, U), ("tcp_ackbytes", 36, 4, BE, U), ("tcp_winbytes", 40, 4, BE, U),
    ("tcp_win", 44, 2, BE, U), ("tcp_flags", 46, 1, BE, U), ("tcp_winshift", 47, 1, BE, U),
]
TCP_INIT: Layout = [
    ("tcp_status", 4, 4, BE, U), ("stcp_seqbase", 8, 4, BE, U), ("tcp_options", 12, 4, BE, U),
    ("stcp_win", 16, 2, BE, U), ("stcp_flags", 18, 1, BE, U), ("stcp_winshift", 19, 1, BE, U),
]
TCP_STATUS: Layout = [
    ("tcp_status", 4, 4, BE, U), ("stcp_flags", 8, 1, BE, U), ("dtcp_flags", 9, 1, BE, U),
]
ESP: Layout = [
    ("tcp_status", 4, 4, BE, U), ("esp_spi", 8, 4, BE, U), ("esp_lastseq", 12, 4, BE, U),
    ("esp_lostseq", 16, 4, BE, U),
]
FLOW_IPV4: Layout = [
    ("saddr_lo", 4, 4, BE, U), ("daddr_lo", 8, 4, BE, U), ("proto", 12, 1, BE, U),
    ("tp_p", 13, 1, BE, U), ("sport", 14, 2, BE, U), ("dport", 16, 2, BE, U),
    ("smask", 18, 1, BE, U), ("dmask", 19, 1, BE, U),
]
FLOW_IPV6: Layout = [
    ("saddr_hi", 4, 8, BE, U), ("saddr_lo", 12, 8, BE, U), ("daddr_hi", 20, 8, BE, U),
    ("daddr_lo", 28, 8, BE, U), ("proto", 36, 1, BE, U), ("flowlabel_word", 36, 4, BE, U),
    ("sport", 40, 2, BE, U), ("dport", 42, 2, BE, U), ("smask", 44, 2, LE, U),
    ("dmask", 46, 2, LE, U),
]
FLOW_ETHER: Layout = [
    ("daddr_lo", 4, 6, BE, U), ("saddr_lo", 10, 6, BE, U), ("proto", 16, 2, BE, U),
    ("dport", 18, 1, BE, U), ("sport", 19, 1, BE, U),
]
FLOW_ARP: Layout = [
    ("arp_hrd", 4, 2, BE, U), ("arp_pro", 6, 2, BE, U), ("arp_hln", 8, 1, BE, U),
    ("arp_pln", 9, 1, BE, U), ("arp_op", 10, 2, BE, U),
]
# LAYER_3_MATRIX addresses are in the writer's host order (little-endian), spec §8.
FLOW_MATRIX: Layout = [("saddr_lo", 4, 4, LE, U), ("daddr_lo", 8, 4, LE, U)]
JITTER_BLOCK: Layout = [
    ("_n", 0, 4, BE, S), ("_min", 4, 4, BE, F), ("_mean", 8, 4, BE, F), ("_stdev", 12, 4, BE, F),
    ("_max", 16, 4, BE, F),
]


# --- the decoder -------------------------------------------------------------------------------

def decode(buf: ByteBuffer, found: Frame,
           columns: frozenset[str] | None = None) -> dict[str, np.ndarray]:
    """Decode every record framing found; returns schema-typed column arrays.

    `columns` (a projection) limits the work to the DSR kinds that carry those columns
    (DSR_COLUMNS); the record header columns, `dsrs` and `unknown_dsrs` are always there.
    """
    starts, lengths = found.starts, found.lengths
    cols = Columns(len(starts), buf.raw, None if columns is None else with_helpers(columns))
    rtype = buf.u8[starts] & 0xF0
    cols["rtype"] = rtype
    cols["cause"] = buf.u8[starts + 1]
    present = np.zeros(len(starts), dtype=np.uint32)
    unknown = found.bad_dsrs.copy()
    kind, rec, pos, size = found.dsr_kind, found.dsr_rec, found.dsr_pos, found.dsr_size
    sub, qual = ra_dsr_headers(buf, found)
    if not found.by_kind:  # group the DSRs by type (a stable sort keeps each record's order)
        order = np.argsort(kind, kind="stable")
        kind, rec, pos, size, sub, qual = (a[order] for a in (kind, rec, pos, size, sub, qual))
    bounds = np.searchsorted(kind, np.arange(129))
    codes = np.flatnonzero(np.diff(bounds)).tolist()  # the DSR types present
    if buf.compiled and kernel("gather_fields") is not None:
        cols.arena = Arena(cols.n, arena_columns(codes, cols.wanted))
    for code in codes:
        lo, hi = bounds[code], bounds[code + 1]
        name = DSR_TYPES.get(code)
        if name is None:
            np.add.at(unknown, rec[lo:hi], 1)
            continue
        d = Dsrs(rec[lo:hi], pos[lo:hi], size[lo:hi], sub[lo:hi], qual[lo:hi])
        if cols.wanted is None or not cols.wanted.isdisjoint(DSR_COLUMNS[name]):
            DECODERS[name](cols, buf, d)
        if name == "user":
            present |= user_bits(d, cols.n)
        else:
            present[d.rec] |= np.uint32(DSR_BITS[name])
    drop_unread_rtp(cols, present)
    unreverse_arp(cols, present)
    cols["dsrs"] = present
    cols["unknown_dsrs"] = np.minimum(unknown, 255).astype(np.uint8)
    if columns is None or not columns.isdisjoint(("srcid", "srcid_type")):
        decode_mar_ids(cols, buf, starts, lengths, rtype)
    return cols.typed()


def arena_columns(codes: list[int], wanted: frozenset[str] | None) -> list[str]:
    """The numeric columns the decoders of DSR types `codes` may gather (helpers included)."""
    names: set[str] = set()
    for code in codes:
        name = DSR_TYPES.get(code)
        if name is not None:
            names |= GATHERED.get(name, frozenset())
    return sorted(n for n in names if wanted is None or n in wanted)


NET_RTP = 0x0A
RTP_MIN_PACKETS = 5


def drop_unread_rtp(cols: Columns, present: np.ndarray) -> None:
    """Leave out the RTP object where ra 3.0.8's reader does: it keeps it only on IPv4 flows
    with at least 5 packets in one direction (probed with ra -w on crafted records: 5/0, 0/5, 5/1
    keep it, 4/4 and every IPv6 flow lose it).  ra then prints such a flow as udp, `-w` writes it
    without a network DSR, and racluster merges it as plain udp; doing it once here serves all."""
    sub = cols.get("net_subtype")
    if sub is None:
        return
    rtp = sub == NET_RTP
    if not rtp.any():
        return
    zeros = np.zeros(cols.n, dtype=np.uint64)
    ipv4 = (cols.get("flow_qual", zeros) & 0x1F) == ADDR_IPV4
    busiest = np.maximum(cols.get("spkts", zeros), cols.get("dpkts", zeros))
    drop = np.flatnonzero(rtp & ~(ipv4 & (busiest >= RTP_MIN_PACKETS)))
    for name in ("net_subtype", "net_qual"):
        if name in cols:
            cols[name][drop] = 0
    if "net_raw" in cols:
        cols["net_raw"][drop] = b""
    present[drop] &= np.uint32(0xFFFFFFFF ^ DSR_BITS["net"])


# ARP keys with the REVERSE bit: ra turns every other DSR round (not the encapsulation DSR) and
# clears the bit (spec §6.2.8; ra -w on tcpdump__arp-oobr.pcap).
ARP_SWAPPED_PAIRS = (
    ("sstart", "dstart"), ("slast", "dlast"), ("spkts", "dpkts"), ("sbytes", "dbytes"),
    ("sappbytes", "dappbytes"), ("smaxsz", "dmaxsz"), ("sminsz", "dminsz"),
    ("spktsz_hist", "dpktsz_hist"), ("svlan", "dvlan"), ("smac", "dmac"),
    ("smpls", "dmpls"), ("sttl", "dttl"), ("stos", "dtos"), ("sipid", "dipid"),
    ("sipopts", "dipopts"), ("suser_size", "duser_size"), ("suser", "duser"),
    ("snstroke", "dnstroke"), ("sas", "das"), ("sco", "dco"),
    *((f"sjit_{b}_{s}", f"djit_{b}_{s}") for b in ("act", "idl")
      for s in ("n", "min", "mean", "stdev", "max")),
)
# Qualifier bits that name a direction: (column, source bits, destination bits).
ARP_SWAPPED_BITS = (
    ("vlan_qual", 0x01, 0x02), ("mac_qual", 0x01, 0x02), ("mpls_subtype", 0x01, 0x02),
    ("mpls_qual", 0xF0, 0x0F), ("jit_qual", 0x03, 0x0C), ("attr_qual", 0x15, 0x2A),
    ("time_subtype", 0x18, 0x60),
)


def swap_bits(value: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Exchange the `src` and `dst` bit groups (same shape) of each value."""
    shift = (src & -src).bit_length() - (dst & -dst).bit_length()
    v = value.astype(np.int64)
    if shift > 0:
        moved = (v & src) >> shift | (v & dst) << shift
    else:
        moved = (v & src) << -shift | (v & dst) >> -shift
    return ((v & ~(src | dst)) | moved).astype(value.dtype)


def unreverse_arp(cols: Columns, present: np.ndarray) -> None:
    """Turn ARP records whose key has the REVERSE bit round once here, as ra's reader does: the
    printer, the filter, racluster and the writer then see them as ra holds them."""
    sub = cols.get("flow_subtype")
    if sub is None:
        return
    rows = np.flatnonzero(((sub & 0x3F) == 0x06) & ((sub & 0x40) > 0) & (cols["rtype"] != RTYPE_MAR))
    if not len(rows):
        return
    for a, b in ARP_SWAPPED_PAIRS:
        if a not in cols and b not in cols:
            continue
        known = cols[a] if a in cols else cols[b]
        for name in (a, b):  # the user DSRs come one per direction: a side may be missing
            if name not in cols:
                cols[name] = np.full_like(known, b"" if known.dtype == object else 0)
        cols[a][rows], cols[b][rows] = cols[b][rows], cols[a][rows].copy()
    for name, src, dst in ARP_SWAPPED_BITS:
        if name in cols:
            cols[name][rows] = swap_bits(cols[name][rows], src, dst)
    present[rows] = swap_bits(present[rows], DSR_BITS["suser"], DSR_BITS["duser"])
    if "psize_qual" in cols:  # the metric codes 5-8 (source only) and 9-12 (destination only)
        q = cols["psize_qual"][rows].astype(np.int64)
        q = np.where((q >= 5) & (q <= 8), q + 4, np.where((q >= 9) & (q <= 12), q - 4, q))
        cols["psize_qual"][rows] = q
    sub[rows] &= np.uint8(0xFF ^ 0x40)


# Columns a decoder needs to build a wanted one: both sides of what un-reversing swaps (and the
# key's protocol and IPv6 halves it looks at), the parts that are combined into one column.
PARTNERS = [
    ({"saddr_hi", "daddr_hi", "saddr_lo", "daddr_lo", "sport", "dport", "smask", "dmask"},
     {"saddr_hi", "daddr_hi", "saddr_lo", "daddr_lo", "sport", "dport", "smask", "dmask", "proto"}),
    ({"flowlabel"}, {"flowlabel_word"}),
    ({"stcp_last"}, {"stcp_last_sec", "stcp_last_usec"}),
    ({"dtcp_last"}, {"dtcp_last_sec", "dtcp_last_usec"}),
    # drop_unread_rtp looks at the key type and the packet counts
    ({"net_subtype", "net_qual", "net_raw"}, {"net_subtype", "flow_qual", "spkts", "dpkts"}),
    # unreverse_arp: both sides of what it swaps, and the key's subtype
    *(({a, b}, {a, b, "flow_subtype"}) for a, b in ARP_SWAPPED_PAIRS),
    *(({name}, {name, "flow_subtype"}) for name, _, _ in ARP_SWAPPED_BITS),
    ({"psize_qual"}, {"psize_qual", "flow_subtype"}),
]


def with_helpers(columns: frozenset[str]) -> frozenset[str]:
    """A projection plus the columns its decoders need on the way (PARTNERS)."""
    out = set(columns) | {"rtype", "cause"}
    for trigger, needs in PARTNERS:
        if not out.isdisjoint(trigger):
            out |= needs
    return frozenset(out)


def user_bits(d: Dsrs, n: int) -> np.ndarray:
    """The `dsrs` bits of user-data DSRs: one per direction (suser, duser)."""
    direction = np.where(d.sub & 0x80, d.sub, d.qual)
    bits = np.zeros(n, dtype=np.uint32)
    for bit, name in ((0x10, "suser"), (0x20, "duser")):
        here = (direction & bit) > 0
        bits[d.rec[here]] |= np.uint32(DSR_BITS[name])
    return bits


def decode_mar_ids(cols: Columns, buf: ByteBuffer, starts: np.ndarray, lengths: np.ndarray,
                   rtype: np.ndarray) -> None:
    """Source id of each 128-byte MAR: `thisid` in START MARs, `argusid` in the others."""
    rows = np.flatnonzero((rtype == RTYPE_MAR) & (lengths == 128))
    if not len(rows):
        return
    at = starts[rows]
    mar = Dsrs(rows, at, np.full(len(rows), 128), np.zeros(len(rows), np.int64),
               np.zeros(len(rows), np.int64))
    scratch = Columns(cols.n)
    gather(scratch, buf, mar, [("status", 4, 4, BE, U), ("argusid", 8, 4, BE, U),
                               ("thisid", 120, 4, BE, U)])
    status, argusid, thisid = scratch["status"][rows], scratch["argusid"][rows], scratch["thisid"][rows]
    is_start = (buf.u8[at + 1] & 0xF0) == 0x10
    ident = np.where(is_start, thisid, argusid)
    kind = np.select(
        [(status & 0x00800000) > 0, (status & 0x00400000) > 0, (status & 0x00200000) > 0],
        [1, 0x20, 0x21], 0,
    )
    # A string id sits in the MAR byte-reversed (spec §4.3); keep the natural order.
    swapped = ident.astype(np.uint32).byteswap().astype(np.uint64)
    cols.put("srcid", rows, np.where(kind == 0x21, swapped, ident))
    cols.put("srcid_type", rows, kind)


def decode_transport(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    gather(cols, buf, d, TRANSPORT)
    cols.put("srcid_type", d.rec, d.qual)


def decode_flow(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    keytype = d.sub & 0x3F
    addr = d.qual & 0x1F
    five = keytype == 0x01
    variants = [
        (five & (addr == ADDR_IPV4), FLOW_IPV4),
        (five & (addr == ADDR_IPV6), FLOW_IPV6),
        (five & (addr == ADDR_ETHER), FLOW_ETHER),
        ((keytype == 0x03) & (addr == ADDR_IPV4), FLOW_MATRIX),
    ]
    handled = keytype == 0x06
    for mask, layout in variants:
        handled |= mask
        gather(cols, buf, d.where(mask), layout)
    if "flowlabel_word" in cols:
        cols.merge("flowlabel", cols.pop("flowlabel_word") & np.uint64(0xFFFFF))
    flow_arp(cols, buf, d.where(keytype == 0x06))
    store_raw(cols, "flow_raw", d.where(~handled), 4)
    cols.put("flow_qual", d.rec, d.qual)
    # The REVERSE bit is undone for IPv4/IPv6 keys only, as ra does: Ethernet keys print as
    # stored, and ARP keys keep it (ra reverses the *other* DSRs there).
    ip_reverse = ((d.sub & 0x40) > 0) & (keytype != 0x06) & np.isin(addr, (ADDR_IPV4, ADDR_IPV6))
    cols.put("flow_subtype", d.rec, np.where(ip_reverse, d.sub & ~0x40, d.sub))
    unreverse(cols, d.rec[ip_reverse])


def flow_arp(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    if not len(d.rec):
        return
    gather(cols, buf, d, FLOW_ARP)
    rarp = (d.qual & 0x1F) == 0x05
    arp_addresses(cols, buf, d.where(~rarp))
    # RARP carries only the target protocol address, then the hardware addresses; ra prints
    # the second of those (bytes 22..27) as SrcAddr (tcpdump__arp-oobr.pcap).
    gather(cols, buf, d.where(rarp), [("daddr_lo", 12, 4, BE, U), ("saddr_lo", 22, 6, BE, U)])
    # Sender hardware address: as many of its hln bytes as the DSR really holds (argus 3.0.8
    # writes the ARP key one word short, spec §6.2.8).  ARP flows are few: numpy is fine here.
    hln = np.minimum(buf.u8[d.pos + 8].astype(np.int64), 6)
    base = np.where(rarp, 16, 20)
    take = np.minimum(hln, np.clip(d.size - base, 0, None))
    sha = np.zeros(len(d.rec), dtype=np.uint64)
    for k in range(6):
        byte = buf.u8[d.pos + base + k].astype(np.uint64)
        sha = np.where(k < take, sha << np.uint64(8) | byte, sha)
    cols.put("arp_sha", d.rec, sha)


def ra_dsr_headers(buf: ByteBuffer, found: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Subtype and qualifier of every DSR as ra reads them.

    ra turns an ARP key's target address (offset 16) from network order in place when pln is
    4, even when the key is 4 words long: it turns the next DSR's header round.  argus 3.0.8 did
    the same when writing such keys (their time DSR is stored `03 18 01 03`), so ra's swap
    restores it.  Only headers whose type and length bytes are equal keep their framing; in
    those the subtype and qualifier trade places (arp_addresses reads the address itself)."""
    sub, qual = found.dsr_sub.astype(np.int64), found.dsr_qual.astype(np.int64)
    short = np.flatnonzero(found.dsr_size == 16)  # one pass over all DSRs, the rest on few
    short = short[(found.dsr_kind[short] == 0x02) & ((found.dsr_sub[short] & 0x3F) == 0x06)
                  & ((found.dsr_qual[short] & 0x1F) == 0x04)]
    if not len(short):
        return sub, qual
    pos = found.dsr_pos[short]
    short, pos = short[buf.u8[pos + 9] == 4], pos[buf.u8[pos + 9] == 4]
    # DSRs come rank by rank, not in buffer order: find the one 16 bytes on by its position.
    by_pos = np.argsort(found.dsr_pos, kind="stable")
    at = np.minimum(np.searchsorted(found.dsr_pos, pos + 16, sorter=by_pos), len(by_pos) - 1)
    nxt = by_pos[at]
    ok = ((found.dsr_pos[nxt] == pos + 16) & (found.dsr_rec[nxt] == found.dsr_rec[short])
          & (buf.u8[pos + 16] == buf.u8[pos + 19]))
    nxt = nxt[ok]
    sub[nxt], qual[nxt] = qual[nxt], sub[nxt].copy()
    return sub, qual


def arp_addresses(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    """Sender and target protocol addresses of ARP keys, read as ra 3.0.8 reads them.

    ra takes them at their offsets whatever the DSR's length says: a key cut short (argus
    writes some 4-word keys for malformed ARP, tcpdump__arp-oobr.pcap) gets its target address
    from the bytes after it, the next DSR's header.  ra swaps them from network order only when
    pln is 4; otherwise they keep the bytes' little-endian value (records.writer writes them
    back the same way)."""
    if not len(d.rec):
        return
    pln = buf.u8[d.pos + 9]
    for name, off in (("saddr_lo", 12), ("daddr_lo", 16)):
        at = d.pos + off  # the buffer is zero-padded past its end: never out of bounds
        big = read_numpy(buf.u8, at, 4, False, buf.words)
        cols.put(name, d.rec, np.where(pln == 4, big, byteswap32(big)))


def byteswap32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.uint32).byteswap().astype(np.uint64)


def unreverse(cols: Columns, rows: np.ndarray) -> None:
    """Swap source and destination of the flow key (spec §6.2.9).

    ICMPv6 keys keep their type/code and id slots in place, as ra does: only ports swap.
    """
    if not len(rows):
        return
    icmp6 = (cols.get("proto", np.zeros(cols.n, np.uint64))[rows] == 58) & (
        cols.get("saddr_hi", np.zeros(cols.n, np.uint64))[rows]
        | cols.get("daddr_hi", np.zeros(cols.n, np.uint64))[rows] > 0)
    with_ports = rows[~icmp6]
    for a, b, which in (("saddr_hi", "daddr_hi", rows), ("saddr_lo", "daddr_lo", rows),
                        ("sport", "dport", with_ports), ("smask", "dmask", rows)):
        if a not in cols and b not in cols:
            continue
        ca, cb = cols.column(a), cols.column(b)
        ca[which], cb[which] = cb[which].copy(), ca[which].copy()


def object_column(cols: Columns, name: str, empty: object) -> np.ndarray:
    column = cols.get(name)
    if column is None:
        column = cols[name] = np.full(cols.n, empty, dtype=object)
    return column


def store_raw(cols: Columns, name: str, d: Dsrs, skip: int) -> None:
    """Keep the payload of DSRs we do not decode as bytes.

    Not rare (the network objects of UDP and other flows): payloads of one length are cut out
    of the buffer as one (m, length) array whose rows numpy turns into bytes objects.
    """
    if not len(d.rec) or not cols.wants(name):
        return
    column = object_column(cols, name, b"")
    lengths = d.size - skip
    for length, g in groups(d, np.maximum(lengths, 0)):
        if length <= 0:
            continue
        block = cols.raw_u8[(g.pos + skip)[:, None] + np.arange(length)]
        values = np.empty(len(g.rec), dtype=object)
        values[:] = block.view(f"V{length}").ravel().tolist()  # bytes, zeros kept
        column[g.rec] = values


TIME_NAMES = ("sstart", "slast", "dstart", "dlast")
NSEC = 0x19  # time qualifier: nanosecond fractions


def time_plan(sub: int, size: int) -> list[tuple[int, bool, int]]:
    """The time DSR reader algorithm of spec §6.3 for one header: (slot k, relative?, offset)
    for each of sstart, slast, dstart, dlast it sets, in the order to apply them.  A relative
    slot is a signed 32-bit microsecond offset from the timestamp at byte 4."""
    words = size // 4
    has = (sub & 0x08 != 0, sub & 0x10 != 0, sub & 0x20 != 0, sub & 0x40 != 0)
    if not (has[0] or has[2]):
        plan = [(k, False, 4 + 8 * k) for k in range(4) if words >= 3 + 2 * k]
        if sub & 0x07 == 0x03 and words >= 4:  # ABSOLUTE_RELATIVE_RANGE
            plan.append((1, True, 12))
        return plan
    present = (has[0], has[1] and has[0], has[2], has[3] and has[2])
    count = sum(present)
    relative = count > (words - 1) // 2 and (count == 1 or words == count + 2)
    plan, slot = [], 0
    for k in range(4):
        if not present[k]:
            continue
        if relative and slot > 0:
            at = 12 + 4 * (slot - 1)
            if at + 4 <= size:
                plan.append((k, True, at))
        elif 4 + 8 * slot + 8 <= size:
            plan.append((k, False, 4 + 8 * slot))
        slot += 1
    return plan


# ra 3.0.8 turns a microsecond fraction into a C int of nanoseconds: past INT_MAX it becomes
# INT_MIN, -2147483 us once divided back (tcpdump__timestamp_invalid_nano: 0xffdf3b65 us in the
# file, 2.147483 s before the second in ra's output).  Up to that, a fraction >= 1e6 counts whole.
USEC_LIMIT = (2**31 - 1) // 1000
USEC_WRAPPED = -(2**31 // 1000)


def timestamps(words: np.ndarray, at: np.ndarray, nsec: bool) -> np.ndarray:
    """Seconds, then the fraction (ns or us), at word numbers `at`: microseconds."""
    sec = words[at].astype(np.int64)
    frac = words[at + 1].astype(np.int64)
    if nsec:
        return sec * 1_000_000 + np.minimum(frac // 1000, 999_999)
    return sec * 1_000_000 + np.where(frac > USEC_LIMIT, USEC_WRAPPED, frac)


def decode_time(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("time_subtype", d.rec, d.sub)
    cols.put("time_qual", d.rec, d.qual)
    if cols.wanted is not None and cols.wanted.isdisjoint(TIME_NAMES):
        return
    out = np.zeros((4, cols.n), dtype=np.int64)
    key = d.size >> 2 << 9 | (d.qual == NSEC) << 8 | d.sub
    for value, g in groups(d, key):
        plan = time_plan(value & 0xFF, (value >> 9) * 4)
        if not plan:
            continue
        word, nsec = g.pos >> 2, bool(value & 0x100)
        first = timestamps(buf.words, word + 1, nsec) if any(rel for _, rel, _ in plan) else None
        for k, rel, at in plan:
            if rel:
                delta = buf.words[word + at // 4].view(np.int32)
                out[k, g.rec] = first + delta
            else:
                out[k, g.rec] = timestamps(buf.words, word + at // 4, nsec)
    out[1] = np.where(out[1] == 0, out[0], out[1])
    out[3] = np.where(out[3] == 0, out[2], out[3])
    ranged = np.zeros(cols.n, dtype=np.bool_)
    ranged[d.rec] = (d.sub & 0x78) != 0
    before_start(out, ranged)
    for k, name in enumerate(TIME_NAMES):
        cols.merge(name, out[k])


def before_start(out: np.ndarray, ranged: np.ndarray) -> None:
    """A last time before its start (only a wrapped fraction makes one), as ra 3.0.8 holds it:
    with direction bits (`ranged`) the two are swapped, else the last time is the start."""
    for start, last in ((0, 1), (2, 3)):
        early = out[last] < out[start]
        if early.any():
            first = np.where(early & ranged, out[last], out[start])
            out[last] = np.where(early, out[start], out[last])
            out[start] = first


METRIC_WIDTHS = (0, 1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 0, 0, 0)
METRIC_NAMES = (("spkts", "sbytes", "sappbytes"), ("dpkts", "dbytes", "dappbytes"))


def metric_layout(code: int, counters: int) -> Layout:
    """Metric DSR (spec §6.4): the qualifier's low nibble gives the counter width and which
    directions follow; subtype 0x04 adds application bytes (3 counters a side)."""
    width = METRIC_WIDTHS[code]
    if width == 0:
        return []
    sides = (1 <= code <= 8, code <= 4 or code >= 9)
    layout: Layout = []
    at = 4
    for here, names in zip(sides, METRIC_NAMES, strict=True):
        if here:
            for name in names[:counters]:
                layout.append((name, at, width, BE, U))
                at += width
    return layout


def decode_metric(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("metric_subtype", d.rec, d.sub)
    key = (d.qual & 0x0F) << 1 | (d.sub == 0x04)
    for value, g in groups(d, key):
        gather(cols, buf, g, metric_layout(value >> 1, 3 if value & 1 else 2))


def sides(qual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which directions a metric-style qualifier says are present (spec §6.4 table)."""
    code = qual & 0x0F
    return (code >= 1) & (code <= 8), ((code >= 1) & (code <= 4)) | ((code >= 9) & (code <= 12))


def decode_psize(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("psize_subtype", d.rec, d.sub)
    cols.put("psize_qual", d.rec, d.qual)
    has_src, has_dst = sides(d.qual)
    dst_at = np.where(has_src, 8, 4)
    gather(cols, buf, d, [("sminsz", 0, 2, BE, U), ("smaxsz", 2, 2, BE, U)],
           base=np.where(has_src, 4, ABSENT))
    gather(cols, buf, d, [("dminsz", 0, 2, BE, U), ("dmaxsz", 2, 2, BE, U)],
           base=np.where(has_dst, dst_at, ABSENT))
    # Client writers append one histogram word per present direction (subtype bit 0x04).
    hist = (d.sub & 0x04) > 0
    hist_at = dst_at + np.where(has_dst, 4, 0)
    gather(cols, buf, d, [("spktsz_hist", 0, 4, BE, U)], base=np.where(hist & has_src, hist_at, ABSENT))
    dhist_at = hist_at + np.where(has_src, 4, 0)
    gather(cols, buf, d, [("dpktsz_hist", 0, 4, BE, U)], base=np.where(hist & has_dst, dhist_at, ABSENT))


def decode_net(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("net_subtype", d.rec, d.sub)
    cols.put("net_qual", d.rec, d.qual)
    perf = d.where(d.sub == NET_TCP_PERF)
    gather(cols, buf, perf, TCP_PERF)
    for prefix, base in (("s", 24), ("d", 72)):
        if not len(perf.rec):
            break
        gather(cols, buf, perf, TCP_DIRECTION, prefix=prefix, base=base)
        if f"{prefix}tcp_last_sec" not in cols:
            continue
        sec = cols.pop(f"{prefix}tcp_last_sec").astype(np.int64)
        usec = np.minimum(cols.pop(f"{prefix}tcp_last_usec").astype(np.int64), 999_999)
        cols.merge(f"{prefix}tcp_last", np.where(sec > 0, sec * 1_000_000 + usec, 0))
    gather(cols, buf, d.where(d.sub == NET_TCP_INIT), TCP_INIT)
    gather(cols, buf, d.where(d.sub == NET_TCP_STATUS), TCP_STATUS)
    gather(cols, buf, d.where(d.sub == NET_ESP), ESP)
    opaque = ~np.isin(d.sub, (NET_TCP_PERF, NET_TCP_INIT, NET_TCP_STATUS, NET_ESP))
    store_raw(cols, "net_raw", d.where(opaque & (d.size > 4)), 4)


def decode_icmpmap(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("icmpmap_qual", d.rec, d.qual)
    gather(cols, buf, d, ICMPMAP)


def decode_vlan(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("vlan_qual", d.rec, d.qual)
    gather(cols, buf, d, VLAN)


def decode_mac(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("mac_qual", d.rec, d.qual)
    gather(cols, buf, d, MAC)


def decode_mpls(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("mpls_subtype", d.rec, d.sub)
    cols.put("mpls_qual", d.rec, d.qual)
    nsrc, ndst = d.qual >> 4, d.qual & 0x0F
    gather(cols, buf, d, [("smpls", 4, 4, BE, U)], base=np.where(nsrc > 0, 0, ABSENT))
    gather(cols, buf, d, [("dmpls", 4, 4, BE, U)], base=np.where(ndst > 0, 4 * nsrc, ABSENT))


def decode_jitter(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("jit_subtype", d.rec, d.sub)
    cols.put("jit_qual", d.rec, d.qual)
    stride = np.where(d.sub & 0x01, 24, 20)  # an exponential histogram word follows each block
    at = np.full(len(d.rec), 4, dtype=np.int64)
    for bit, prefix in ((1, "sjit_act"), (2, "sjit_idl"), (4, "djit_act"), (8, "djit_idl")):
        here = (d.qual & bit) > 0
        gather(cols, buf, d, JITTER_BLOCK, prefix=prefix, base=np.where(here, at, ABSENT))
        at = at + np.where(here, stride, 0)


def decode_attr(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("attr_qual", d.rec, d.qual)
    for qual, g in groups(d, d.qual & 0x0F):  # one layout per combination of words
        gather(cols, buf, g, attr_layout(qual))


# Words follow in the order src attrs, src options, dst attrs, dst options (spec §6.13).
ATTR_WORDS: list[tuple[int, Layout]] = [
    (0x01, [("sttl", 0, 1, BE, U), ("stos", 1, 1, BE, U), ("sipid", 2, 2, BE, U)]),
    (0x04, [("sipopts", 0, 4, BE, U)]),
    (0x02, [("dttl", 0, 1, BE, U), ("dtos", 1, 1, BE, U), ("dipid", 2, 2, BE, U)]),
    (0x08, [("dipopts", 0, 4, BE, U)]),
]


def attr_layout(qual: int) -> Layout:
    layout: Layout = []
    at = 4
    for bit, fields in ATTR_WORDS:
        if qual & bit:
            layout += [(name, at + off, width, order, kind) for name, off, width, order, kind in fields]
            at += 4
    return layout


def decode_user(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    """User data: 16-bit length form (subtype 0x80 | 0x10 src / 0x20 dst), or the old form."""
    direction = np.where(d.sub & 0x80, d.sub, d.qual)
    for bit, prefix in ((0x10, "s"), (0x20, "d")):
        g = d.where((direction & bit) > 0)
        if not len(g.rec):
            continue
        gather(cols, buf, g, [(f"{prefix}user_size", 4, 2, BE, U)])
        if not cols.wants(f"{prefix}user"):
            continue
        count = buf.u8[g.pos + 6].astype(np.int64) << 8 | buf.u8[g.pos + 7]
        length = np.clip(np.minimum(count, g.size - 8), 0, None)
        column = object_column(cols, f"{prefix}user", b"")
        for r, p, n in zip(g.rec.tolist(), (g.pos + 8).tolist(), length.tolist(), strict=True):
            column[r] = cols.raw[p:p + n]


def decode_label(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    column = object_column(cols, "label", "")
    for r, p, s in zip(d.rec.tolist(), d.pos.tolist(), d.size.tolist(), strict=True):
        column[r] = cols.raw[p + 4:p + s].split(b"\0", 1)[0].decode("ascii", "replace")


def decode_cocode(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    for name, off in (("sco", 4), ("dco", 6)):
        if not cols.wants(name):
            continue
        column = object_column(cols, name, "")
        for r, p in zip(d.rec.tolist(), d.pos.tolist(), strict=True):
            column[r] = cols.raw[p + off:p + off + 2].rstrip(b"\0").decode("ascii", "replace")


def decode_cor(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    store_raw(cols, "cor_raw", d, 4)


def decode_agr(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("agr_subtype", d.rec, d.sub)
    cols.put("agr_qual", d.rec, d.qual)
    gather(cols, buf, d, AGR)


def decode_behavior(cols: Columns, buf: ByteBuffer, d: Dsrs) -> None:
    cols.put("behavior_subtype", d.rec, d.sub)
    gather(cols, buf, d, BEHAVIOR)


DECODERS: dict[str, Callable[[Columns, ByteBuffer, Dsrs], None]] = {
    "transport": decode_transport,
    "flow": decode_flow,
    "time": decode_time,
    "metric": decode_metric,
    "psize": decode_psize,
    "encaps": fixed(ENCAPS),
    "net": decode_net,
    "asn": fixed(ASN),
    "icmpmap": decode_icmpmap,
    "vlan": decode_vlan,
    "mac": decode_mac,
    "mpls": decode_mpls,
    "jitter": decode_jitter,
    "attr": decode_attr,
    "user": decode_user,
    "behavior": decode_behavior,
    "agr": decode_agr,
    "cor": decode_cor,
    "cocode": decode_cocode,
    "label": decode_label,
}


HELPERS_OF = {"flow": {"flowlabel_word"},
              "net": {"stcp_last_sec", "stcp_last_usec", "dtcp_last_sec", "dtcp_last_usec"}}


def _names(*layouts: Layout, prefix: str = "") -> set[str]:
    return {prefix + f[0] for layout in layouts for f in layout}


# The columns each DSR kind's decoder writes: what a projection needs decoded.
# tests/test_codec.py checks every schema column against a full decode.
DSR_COLUMNS: dict[str, frozenset[str]] = {name: frozenset(cols) for name, cols in {
    "transport": _names(TRANSPORT) | {"srcid_type"},
    "flow": (_names(FLOW_IPV4, FLOW_IPV6, FLOW_ETHER, FLOW_ARP, FLOW_MATRIX) - {"flowlabel_word"})
    | {"flowlabel", "arp_sha", "flow_raw", "flow_qual", "flow_subtype"},
    "time": {"time_subtype", "time_qual", "sstart", "slast", "dstart", "dlast"},
    "metric": {"metric_subtype", "spkts", "sbytes", "sappbytes", "dpkts", "dbytes", "dappbytes"},
    "psize": {"psize_subtype", "psize_qual", "sminsz", "smaxsz", "dminsz", "dmaxsz", "spktsz_hist",
              "dpktsz_hist"},
    "encaps": _names(ENCAPS),
    "net": ({"net_subtype", "net_qual", "net_raw", "stcp_last", "dtcp_last"}
            | _names(TCP_PERF, TCP_INIT, TCP_STATUS, ESP)
            | ((_names(TCP_DIRECTION, prefix="s") | _names(TCP_DIRECTION, prefix="d"))
               - {"stcp_last_sec", "stcp_last_usec", "dtcp_last_sec", "dtcp_last_usec"})),
    "asn": _names(ASN),
    "icmpmap": _names(ICMPMAP) | {"icmpmap_qual"},
    "vlan": _names(VLAN) | {"vlan_qual"},
    "mac": _names(MAC) | {"mac_qual"},
    "mpls": {"mpls_subtype", "mpls_qual", "smpls", "dmpls"},
    "jitter": {"jit_subtype", "jit_qual"} | {p + f[0] for p in ("sjit_act", "sjit_idl", "djit_act",
                                                                 "djit_idl") for f in JITTER_BLOCK},
    "attr": {"attr_qual", "sttl", "stos", "sipid", "sipopts", "dttl", "dtos", "dipid", "dipopts"},
    "user": {"suser_size", "duser_size", "suser", "duser"},
    "behavior": _names(BEHAVIOR) | {"behavior_subtype"},
    "agr": _names(AGR) | {"agr_subtype", "agr_qual"},
    "cor": {"cor_raw"},
    "cocode": {"sco", "dco"},
    "label": {"label"},
}.items()}

# The numeric columns of each DSR type (what the arena holds for it), and the helper columns.
GATHERED: dict[str, frozenset[str]] = {
    name: frozenset(c for c in cols | (set(HELPER_DTYPES) & HELPERS_OF.get(name, set()))
                    if c in DTYPES)
    for name, cols in DSR_COLUMNS.items()
}
