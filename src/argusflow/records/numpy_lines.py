"""ra's default lines without polars: `ra -r FILE [-n] [-u] [-p N]`, the default fields.

Printing the default fields of every record is ra's most common use, and on a large file the
polars path pays for itself poorly: importing polars alone is ~0.25 s, and each batch costs a
select of when/then chains (Flgs, State) before the compiled line writer runs.  Here the line
writer's columns (records/linewriter.py) come straight from the reader's numpy columns
(RecordReader.feed_columns): Flgs, State, Dir, Proto and the port kinds as codes from one
compiled pass over the records (records/codekernel.py: derive's rules over records.naming's
tables), addresses, times and names as the printer makes them (texts once per distinct value).

A batch holding a record this path does not print (Ethernet, RARP or 802.11 keys, flow subtype
3, a correlation DSR, a time past what localtime takes) is left to records.printer (`lines`
returns None), so the output stays the same; tests/test_numpy_lines.py compares both paths on
every sample file.  Without the compiled kernels (`available()`) ra keeps the polars path.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from argusflow.records import codekernel as ck
from argusflow.records import linewriter as lw
from argusflow.records import naming as nm
from argusflow.records.schema import (
    ADDR_ARP,
    ADDR_IPV4,
    ADDR_IPV6,
    DSR_BITS,
    RTYPE_MAR,
)

Cols = Mapping[str, np.ndarray]

# Bytes read at a time: a batch waiting to print holds its columns and bytes, so 2 MB chunks
# keep ra's peak memory at ~75 MB where 4 MB ones took ~110 MB, for ~3% more CPU.
CHUNK_BYTES = 2 << 20

# What the lines read (RecordReader.feed_columns decodes only these).
DECODE = frozenset(ck.INPUTS) | frozenset(
    "rtype saddr_hi saddr_lo daddr_hi daddr_lo sstart dstart spkts dpkts sbytes dbytes".split())

# (name, label, width, left-aligned) of ra's default fields as records.fields has them (the
# tests check): that module builds polars expressions, which this path never imports.
FIELDS = (("stime", "StartTime", 18, False), ("flgs", "Flgs", 9, True), ("proto", "Proto", 6, False),
          ("saddr", "SrcAddr", 18, False), ("sport", "Sport", 6, True), ("dir", "Dir", 5, False),
          ("daddr", "DstAddr", 18, False), ("dport", "Dport", 6, True), ("pkts", "TotPkts", 8, False),
          ("bytes", "TotBytes", 10, False), ("state", "State", 5, False))

# localtime's range (beyond it the polars path decides what to print)
_MAX_SECOND = 1 << 40


@dataclass(frozen=True)
class LineOptions:
    """The printing options this path takes (cli.printing.numpy_line_options reads them)."""

    nflag: int = 0        # -n count, 0-3
    precision: int = 6    # -p, 0-6
    epoch: bool = False   # -u
    header: bool = True   # the header before the first line (-L 0)


class NumpyLines:
    """Fixed-width lines of the default fields, as records.printer writes them."""

    def __init__(self, options: LineOptions) -> None:
        self.options = options
        time.tzset()  # localtime follows TZ as it is now, as the polars path reads it per batch
        self._stamps: dict[int, tuple[str, ...]] = {}  # second -> its texts (strftime is slow)
        self._dirs = lw.table([t.rjust(5) for t in nm.DIR_TEXTS])
        self._states = lw.table(nm.STATE_TEXTS)
        self._tables = ck.tables()
        self._has_name: dict[str, np.ndarray] = {}
        self._name_tables: dict[int, lw.Table] = {}
        self._ipv6: dict[tuple[int, int], str] = {}  # address -> text, across batches

    def width(self, name: str, width: int) -> int:
        """ra sizes the built-in time format as 12 + precision (printer.time_widths)."""
        return 12 + self.options.precision if name == "stime" else width

    def header(self) -> str:
        return "".join(label[:w].rjust(w) + " " for name, label, width, _ in FIELDS
                       for w in (self.width(name, width),)) + "\n"

    def lines(self, cols: Cols) -> tuple[memoryview, int] | None:
        """Every flow record's line (MARs are not printed) and their count; None when the
        batch holds a record this path does not print."""
        flows = cols["rtype"] != RTYPE_MAR
        if not flows.all():
            cols = {name: values[flows] for name, values in cols.items()}
        n = len(cols["rtype"])
        if n == 0:
            return memoryview(b""), 0
        r = Rows(cols)
        if not r.supported():
            return None
        times = self._time(r.stime())
        if times is None:
            return None
        codes = self._codes(cols, n)
        if codes is None:
            return None
        made = {"stime": times, "flgs": lw.KernelColumn(lw.CHARS7, codes[ck.O_FLGS], lw.BLANK, param=9),
                "proto": coded(codes[ck.O_PROTO], self._proto_text),
                "saddr": self._address(r, "s"), "daddr": self._address(r, "d"),
                "sport": self._port(codes[ck.O_SKIND], codes[ck.O_SVALUE]),
                "dport": self._port(codes[ck.O_DKIND], codes[ck.O_DVALUE]),
                "dir": lw.KernelColumn(lw.TEXT, codes[ck.O_DIR], self._dirs),
                "pkts": total(cols, "pkts"), "bytes": total(cols, "bytes"),
                "state": lw.KernelColumn(lw.TEXT, codes[ck.O_STATE], self._states)}
        columns = []
        for i, (name, _, width, left) in enumerate(FIELDS):
            kc = made[name]
            kc.values = np.ascontiguousarray(kc.values, dtype=np.int64)
            kc.width = self.width(name, width)
            kc.align_left = left
            kc.joined = i > 0 and (FIELDS[i - 1][0], name) in (("saddr", "sport"), ("daddr", "dport"))
            columns.append(kc)
        return lw.write_lines(columns, n), n

    # --- times -------------------------------------------------------------------------------

    def _time(self, us: np.ndarray) -> lw.KernelColumn | None:
        """The second's texts around the fraction, made once per distinct second."""
        p = self.options.precision
        sec = us // 1_000_000
        if int(sec.min()) < 0 or int(sec.max()) >= _MAX_SECOND:
            return None
        seconds, index = distinct(sec)
        texts = [self._second(s) for s in seconds.tolist()]
        pieces = list(zip(*texts, strict=True))
        values = index * 1_000_000 + us % 1_000_000
        tab = lw.join_tables(lw.BLANK, *(lw.table(list(t)) for t in pieces))
        return lw.KernelColumn(lw.TIME, values, tab, param=p, pieces=len(pieces), seconds=len(seconds))

    def _second(self, second: int) -> tuple[str, ...]:
        """The texts before and after the fraction ("%T." and "", as printer._kernel_time
        splits ra's "%T.%f")."""
        texts = self._stamps.get(second)
        if texts is None:
            p = self.options.precision
            if self.options.epoch:
                texts = (f"{second}.", "") if p else (str(second),)
            else:
                stamp = time.localtime(second)
                texts = (time.strftime("%T.", stamp), "") if p else (time.strftime("%T", stamp),)
            if len(self._stamps) > 1 << 16:
                self._stamps.clear()
            self._stamps[second] = texts
        return texts

    def _address(self, r: Rows, side: str) -> lw.KernelColumn:
        """IPv4 (and ARP) addresses as numbers; IPv6 texts once per distinct address."""
        lo = r.c[f"{side}addr_lo"]
        values = (lo & 0xFFFFFFFF).astype(np.int64)
        rows = np.flatnonzero(r.v6)
        if not len(rows):
            return lw.KernelColumn(lw.IPV4, values, lw.BLANK)
        hi = r.c[f"{side}addr_hi"][rows]
        first, inverse = distinct_pairs(hi, lo[rows])
        if len(self._ipv6) > 1 << 16:
            self._ipv6.clear()
        cache = self._ipv6
        pairs = zip(hi[first].tolist(), lo[rows][first].tolist(), strict=True)
        texts = [cache.get(pair) or cache.setdefault(pair, ipv6_text(*pair)) for pair in pairs]
        values[rows] = lw.NULL - 1 - inverse
        return lw.KernelColumn(lw.IPV4, values, lw.join_tables(lw.BLANK, lw.table(texts)))

    # --- Proto, ports, State -------------------------------------------------------------------

    def _codes(self, cols: Cols, n: int) -> np.ndarray | None:
        """Flgs, State, Dir, Proto and port codes of every record (records/codekernel.py);
        None without the compiled kernel (its extension being rebuilt, or a failed build):
        the batch then goes to the polars printer, as when `available()` is false."""
        kernel = codes_kernel()
        if kernel is None:
            return None
        inputs = np.empty((len(ck.INPUTS), n), dtype=np.int64)
        for k, name in enumerate(ck.INPUTS):
            inputs[k] = cols[name]  # as int64 (64-bit counters past 2**63 wrap: never seen)
        out = np.empty((ck.OUTPUTS, n), dtype=np.int64)
        kernel(inputs, self._tables, self.options.nflag, out)
        return out

    def _proto_text(self, key: int) -> str:
        numeric = self.options.nflag == 2
        if key == ck.PROTO_ARP:
            return "2054" if numeric else "arp"
        if key == ck.PROTO_RTP:
            return "rtp"
        return str(key) if numeric else nm.protocols().get(key, str(key))

    def _port(self, kind: np.ndarray, value: np.ndarray) -> lw.KernelColumn:
        """Numbers are written by the line writer (INT); names, ICMP and ESP texts are
        entries of a table made once per distinct text."""
        named = np.zeros(len(kind), dtype=bool)
        for k, proto in ((ck.TCP, "tcp"), (ck.UDP, "udp")):
            rows = kind == k
            if rows.any():
                named[rows] = self._named(proto)[value[rows] & 0xFFFF]
        kind = np.where(((kind == ck.TCP) | (kind == ck.UDP)) & ~named, ck.NUMBER, kind)
        values = np.where(kind == ck.BLANK, lw.NULL, value)
        rows = np.flatnonzero((kind != ck.BLANK) & (kind != ck.NUMBER))
        if not len(rows):
            return lw.KernelColumn(lw.INT, values, lw.BLANK)
        uniq, inverse = distinct(kind[rows] << 32 | value[rows])
        values[rows] = lw.NULL - 1 - inverse
        return lw.KernelColumn(lw.INT, values, lw.join_tables(lw.BLANK, *self._port_texts(uniq)))

    def _port_texts(self, keys: np.ndarray) -> list[lw.Table]:
        """The texts of these (ascending) port keys: names gathered from a table of every
        port's, ICMP's hex made with numpy, the rare rest one by one."""
        kinds, values = keys >> 32, keys & 0xFFFFFFFF
        tables = []
        for kind in np.flatnonzero(np.bincount(kinds)).tolist():  # ascending, as the keys
            these = values[kinds == kind]
            if kind in (ck.TCP, ck.UDP):
                tables.append(self._names(kind).gather(these))
            elif kind == ck.HEX4:
                tables.append(hex4_table(these))
            else:
                tables.append(lw.table([port_text(kind << 32 | v) for v in these.tolist()]))
        return tables

    def _names(self, kind: int) -> lw.Table:
        """The service name of every port for TCP or UDP ('' where none)."""
        if kind not in self._name_tables:
            names = nm.services("tcp" if kind == ck.TCP else "udp")
            self._name_tables[kind] = lw.table([names.get(p, "") for p in range(1 << 16)])
        return self._name_tables[kind]

    def _named(self, proto: str) -> np.ndarray:
        """Which ports /etc/services names for `proto`."""
        if proto not in self._has_name:
            names = np.zeros(1 << 16, dtype=bool)
            names[[p for p in nm.services(proto) if p < 1 << 16]] = True
            self._has_name[proto] = names
        return self._has_name[proto]


def total(cols: Cols, name: str) -> lw.KernelColumn:
    """TotPkts, TotBytes: both directions' counts."""
    return lw.KernelColumn(lw.INT, (cols["s" + name] + cols["d" + name]).astype(np.int64), lw.BLANK)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex4_table(values: np.ndarray) -> lw.Table:
    """"0x%04x" of each value (< 65536), as a Table."""
    chars = np.empty((len(values), 6), dtype=np.uint8)
    chars[:, 0], chars[:, 1] = ord("0"), ord("x")
    for k, shift in enumerate((12, 8, 4, 0)):
        chars[:, 2 + k] = _HEX[(values >> shift) & 0xF]
    return lw.Table(chars.tobytes(), np.full(len(values), 6, dtype=np.int64))


def port_text(key: int) -> str:
    """The text of a port (kind << 32 | value) that is not a plain number."""
    kind, v = key >> 32, key & 0xFFFFFFFF
    if kind in (ck.TCP, ck.UDP):
        return nm.services("tcp" if kind == ck.TCP else "udp")[v]
    if kind == ck.HEX4:
        return f"0x{v >> 8 & 0xFF:02x}{v & 0xFF:02x}"
    if kind == ck.HEX8:
        return f"0x{v:08x}"
    return "0x" + "".join(f"{v >> s & 0xFF:02x}" for s in (0, 8, 16, 24))  # LEHEX


_KERNEL: list[Callable[..., Any] | None] = []


def codes_kernel() -> Callable[..., Any] | None:
    """records.codekernel's line_codes from argusflow.aot's extension (numba's JIT with
    ARGUSFLOW_JIT=1), or None: then ra prints with records.printer."""
    if not _KERNEL:
        from argusflow import aot

        fn = aot.function("line_codes")
        if fn is None and os.environ.get("ARGUSFLOW_JIT"):
            try:
                fn = ck.LINE_CODES.numba()
            except ImportError:
                fn = None
        _KERNEL.append(fn)
    return _KERNEL[0]


def available() -> bool:
    return lw.available() and codes_kernel() is not None


class Rows:
    """What the numpy side reads of a batch of flow records (the rest is the kernel's)."""

    def __init__(self, cols: Cols) -> None:
        self.c = cols
        self.at = cols["flow_qual"] & 0x1F
        self.v4, self.v6 = self.at == ADDR_IPV4, self.at == ADDR_IPV6

    def supported(self) -> bool:
        """IPv4, IPv6 and ARP keys only, no flow subtype 3, no correlation DSR."""
        return bool((self.v4 | self.v6 | self.is_arp).all()
                    and not (self.c["flow_subtype"] == 3).any() and not self.has("cor").any())

    def has(self, dsr: str) -> np.ndarray:
        return (self.c["dsrs"] & DSR_BITS[dsr]) != 0

    @functools.cached_property
    def is_arp(self) -> np.ndarray:
        return self.at == ADDR_ARP  # RARP keys are left to the polars path

    def stime(self) -> np.ndarray:
        s, d = self.c["sstart"], self.c["dstart"]
        return np.where(s == 0, d, np.where(d == 0, s, np.minimum(s, d))).astype(np.int64)


# --- addresses and coded texts ---------------------------------------------------------------------

def ipv6_text(hi: int, lo: int) -> str:
    """As printer.ipv6_series writes it: the first longest run of 2+ zero groups is '::'."""
    groups = [(word >> s) & 0xFFFF for word in (hi, lo) for s in (48, 32, 16, 0)]
    best, best_end, run = 0, -1, 0
    for j, g in enumerate(groups):
        run = run + 1 if g == 0 else 0
        if run > best:
            best, best_end = run, j
    texts = [f"{g:x}" for g in groups]
    if best < 2:
        return ":".join(texts)
    return ":".join(texts[:best_end - best + 1]) + "::" + ":".join(texts[best_end + 1:])


def coded(keys: np.ndarray, text: object) -> lw.KernelColumn:
    """A TEXT column: `text(key)` once per distinct key."""
    uniq, inverse = distinct(keys)
    texts = [text(k) for k in uniq.tolist()]  # type: ignore[operator]
    return lw.KernelColumn(lw.TEXT, inverse, lw.table(texts))


def distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values (sorted) and each row's index among them (np.unique imports
    numpy.ma: ~30 ms of start-up).  Values close together are counted, not sorted."""
    low, high = int(values.min()), int(values.max())
    if high - low <= max(4 * len(values), 1 << 16):
        present = np.bincount(values - low) > 0
        return np.flatnonzero(present) + low, (np.cumsum(present) - 1)[values - low]
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def distinct_pairs(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each distinct (hi, lo) pair first shows in sorted order, and each row's index
    among the distinct pairs (np.unique(axis=0) sorts rows far more slowly); records.printer
    uses it too."""
    order = np.lexsort((lo, hi))
    hs, ls = hi[order], lo[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (hs[1:] != hs[:-1]) | (ls[1:] != ls[:-1])
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse
