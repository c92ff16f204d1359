"""ra's text output: a batch of records in, lines of text out, byte-identical to ra 3.0.8 `-X`.

Public API (what the CLI calls)::

    columns = parse_field_list(["+dur", "-flgs", "sbytes:14"])   # -s edits; UsageError if unknown
    printer = Printer(PrintOptions(columns=columns, nflag=1, delimiter=",", epoch=True,
                                   precision=3, header=0, zflag=None, time_format=None,
                                   print_man=False, json=False))
    sys.stdout.write(printer.render(batch))   # header (per -L, across calls) + one line per record
    printer.lines(batch)                      # the record lines only, as a polars String Series
    printer.header()                          # the header line
    format_batch(batch, options)              # one-shot convenience

Fixed-width output (the default) is written by a compiled line writer (records/linewriter.py,
records/linekernel.py): the numbers, codes and masks of every column come from one polars
select, and one kernel, released from the GIL, writes every line of the batch into one buffer;
only rare texts (IPv6 addresses, ICMP ports, columns without a kernel kind) are made by polars.
The rest of this module is the polars path: -c, JSON, -L N, MAR lines, and the fallback when the
precompiled extension is missing (ARGUSFLOW_LINE_WRITER=0 forces it).  `ra` with the default
fields does not come here at all (records/numpy_lines.py: the same lines without polars), but
for batches holding records that path leaves to this one.

Each field becomes one text column computed over the whole batch with polars expressions;
columns with few distinct inputs (flags, state, names, addresses, ports) are formatted once per
distinct input and spread back (no loop over records).  Fixed-width output pads each value to
its width (a longer value is cut and ends in `*`), joins a port to the address before it as
`addr.port` and strips trailing blanks; `-c` output joins the natural values with the delimiter.
MARs print as ra's `man` lines when `print_man`; JSON output (`-M json`, as in Argus 5) prints
one object per record with the field names as keys.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from argusflow.errors import UsageError
from argusflow.records import derive as d
from argusflow.records import linewriter
from argusflow.records.fields import (
    DEFAULT_FIELDS,
    FIELDS,
    FMT_FLOAT,
    FMT_HEX4,
    FMT_INT,
    FMT_SPECIAL,
    FMT_TEXT,
    FMT_TIME,
    Field,
)
from argusflow.records.numpy_lines import distinct_pairs
from argusflow.records.schema import ADDR_ARP, ADDR_ETHER, ADDR_IPV4, ADDR_IPV6, ADDR_RARP, NET_RTP

ADDR_WLAN = 0x08

c = pl.col

DEFAULT_TIME_FORMAT = "%T.%f"

# Where ra 3.0.8 is provably wrong and its man page promises otherwise, we deviate; each entry
# names the case and is covered by a test (tests/test_printer.py).
DEVIATIONS: dict[str, str] = {
    "rtp-silence-flags": "Flgs position 4 of an RTP flow: man ra gives s / d / * for silence "
                         "suppression by the source / destination / both; ra 3.0.8 prints 'd' for "
                         "both and nothing for the source alone. We print what the man page says.",
}


@dataclass(frozen=True)
class Column:
    """One output column: a field, its width, and whether its label appears in the header."""

    field: Field
    width: int
    labelled: bool = True


@dataclass(frozen=True)
class PrintOptions:
    """What ra's printing options ask for (-s -n -c -u -p -L -z/-Z, RA_* variables, -M json)."""

    columns: tuple[Column, ...] = ()
    nflag: int = 0                    # -n count: 1 numeric ports, 2 numeric protocols too
    delimiter: str | None = None      # -c CHAR; None = fixed-width columns
    epoch: bool = False               # -u
    precision: int = 6                # -p N
    header: int | None = None         # -L: None/0 once, N every N lines, -1 never
    zflag: str | None = None          # 'z' (-z) or 'b'/'s'/'d' (-Z)
    time_format: str | None = None    # RA_TIME_FORMAT; None = ra's built-in "%T.%f"
    print_man: bool = False           # RA_PRINT_MAN_RECORDS=yes (never with -X)
    json: bool = False                # -M json
    port_direction: bool = False      # RA_PORT_DIRECTION (Debian ra.conf); not applied yet

    def __post_init__(self) -> None:
        if not self.columns:
            object.__setattr__(self, "columns", parse_field_list([]))


# --- -s field lists ---------------------------------------------------------------------------------

def _column(spec: str) -> Column:
    name, _, width = spec.partition(":")
    width = width.partition(":")[0]
    if name not in FIELDS:
        raise UsageError(f"unknown field '{name}'")
    f = FIELDS[name]
    if width:
        if not width.isdigit():
            raise UsageError(f"bad width in '{spec}'")
        return Column(f, int(width))
    return Column(f, f.width)


def parse_field_list(items: list[str] | tuple[str, ...], base: tuple[str, ...] = DEFAULT_FIELDS
                     ) -> tuple[Column, ...]:
    """Resolve `-s` arguments: a new list, or edits of `base` (`+f`, `+Nf`, `-f`, `f:width`)."""
    columns: list[Column] = []
    if not items or items[0][:1] in "+-":
        columns = [Column(FIELDS[n], FIELDS[n].width) for n in base]
    for item in items:
        if item.startswith("-"):
            name = item[1:].partition(":")[0]
            columns = [col for col in columns if col.field.name != name]
        elif item.startswith("+"):
            rest = item[1:]
            digits = len(rest) - len(rest.lstrip("0123456789"))
            col = _column(rest[digits:])
            if digits:
                pos = int(rest[:digits])
                # ra 3.0.8 appends past-the-end insertions but leaves them out of the header.
                col = col if pos <= len(columns) else replace(col, labelled=False)
                columns.insert(min(pos, len(columns)), col)
            else:
                columns.append(col)
        else:
            columns.append(_column(item))
    return tuple(columns)


# --- number formatting ------------------------------------------------------------------------------

def fixed(values: pl.Series, precision: int) -> pl.Series:
    """printf("%.*f") for a float column, vectorised; exact ties and huge values fall back to C."""
    v = values.cast(pl.Float64).to_numpy()
    p = max(0, precision)
    scale = 10.0 ** p
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.abs(v) * scale
        r = np.rint(a)
        frac = a - np.floor(a)
    slow = ~np.isfinite(a) | (a >= 2.0 ** 52) | (np.abs(frac - 0.5) < 1e-6) | (p > 15)
    r = np.where(slow, 0, r).astype(np.uint64)
    neg = np.signbit(v) & ~np.isnan(v)
    zero = (r == 0) & ~neg & ~slow
    if 2 * np.count_nonzero(zero) > len(v):
        # mostly zeros (RTTs of UDP, jitter and gaps of one-packet flows): only the rest is built
        text = pl.repeat(f"{0:.{p}f}", len(v), dtype=pl.String, eager=True)
        rest = np.flatnonzero(~zero)
        if len(rest):
            text = text.scatter(rest, _fixed_text(r[rest], neg[rest], p))
    else:
        text = _fixed_text(r, neg, p)
    if slow.any():
        idx = np.flatnonzero(slow)
        fixes = [_c_fixed(v[i], p) for i in idx]
        text = text.scatter(idx, fixes)
    return text


def _c_fixed(value: float, p: int) -> str:
    """printf("%.*f"): as Python's format, but for a NaN with its sign bit set ("-nan")."""
    if math.isnan(value) and math.copysign(1.0, value) < 0:
        return "-nan"
    return f"{value:.{p}f}"


def _fixed_text(r: np.ndarray, neg: np.ndarray, p: int) -> pl.Series:
    """The text of `r` / 10**p, signed by `neg` (fixed's fast path)."""
    whole = c("r") // (10 ** p) if p <= 15 else c("r")
    pieces = [pl.lit(_SIGNS).gather(c("neg").cast(pl.UInt32)), whole.cast(pl.String)]
    if 0 < p <= 15:
        pieces += [pl.lit("."), *_digit_pieces(c("r") % (10 ** p), p)]
    return pl.DataFrame({"r": r, "neg": neg}).select(pl.concat_str(pieces)).to_series()


_SIGNS = pl.Series(["", "-"], dtype=pl.String)


@functools.cache
def _digits(n: int) -> pl.Series:
    """The 10**n texts of n zero-padded digits."""
    return pl.Series([f"{i:0{n}d}" for i in range(10 ** n)], dtype=pl.String)


def _digit_pieces(value: pl.Expr, p: int) -> list[pl.Expr]:
    """The p zero-padded digits of `value` (< 10**p), gathered three at a time from tables
    (a cast and a zfill per column cost more)."""
    pieces = []
    rest = p
    while rest > 0:
        n = min(3, rest)
        rest -= n
        pieces.append(pl.lit(_digits(n)).gather(((value // (10 ** rest)) % (10 ** n)).cast(pl.UInt32)))
    return pieces


@functools.cache
def _text_table(kind: str) -> pl.Series:
    """Lookup tables gathered by value: 'hex2' (256 x "%02x"), 'hex' (65536 x "%x"),
    'dotted' (65536 x "a.b", the two octets of 16 bits)."""
    if kind == "hex2":
        return pl.Series([format(i, "02x") for i in range(256)], dtype=pl.String)
    i = pl.int_range(0, 65536, eager=True).to_frame("i")
    if kind == "hex":  # four nibbles, leading zeros dropped (built in polars: a Python loop costs 50 ms)
        nibbles = pl.Series(list("0123456789abcdef"))
        text = pl.concat_str([pl.lit(nibbles).gather((c("i") // (1 << s)) % 16) for s in (12, 8, 4, 0)])
        text = text.str.strip_chars_start("0")
        return i.select(pl.when(text == "").then(pl.lit("0")).otherwise(text)).to_series().rename("")
    dotted = (c("i") // 256).cast(pl.String) + "." + (c("i") % 256).cast(pl.String)
    return i.select(dotted).to_series().rename("")


def _lookup(table: str, index: pl.Expr) -> pl.Expr:
    return pl.lit(_text_table(table)).gather(index)


def _byte_hex(e: pl.Expr, shift: int) -> pl.Expr:
    return _lookup("hex2", ((e // (1 << shift)) & 0xFF).cast(pl.UInt32))


def hex4(e: pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit("0x"), _byte_hex(e, 8), _byte_hex(e, 0)])


def hex8(e: pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit("0x"), *[_byte_hex(e, s) for s in (24, 16, 8, 0)]])


def ipv4(e: pl.Expr) -> pl.Expr:
    e = e.cast(pl.UInt64)
    halves = [_lookup("dotted", ((e // (1 << s)) & 0xFFFF).cast(pl.UInt32)) for s in (16, 0)]
    return pl.concat_str(halves, separator=".")


def mac(e: pl.Expr, numeric: bool = False) -> pl.Expr:
    """MAC text; ra names the broadcast address unless -nn."""
    e = e.cast(pl.UInt64)
    text = pl.concat_str([_byte_hex(e, s) for s in (40, 32, 24, 16, 8, 0)], separator=":")
    if numeric:
        return text
    return pl.when(e == 0xFFFFFFFFFFFF).then(pl.lit("Broadcast")).otherwise(text)


def ipv6_series(hi: pl.Series, lo: pl.Series) -> pl.Series:
    """IPv6 text as Python's ipaddress writes it (first longest run of 2+ zero groups -> "::")."""
    h, low = hi.cast(pl.UInt64).to_numpy(), lo.cast(pl.UInt64).to_numpy()
    groups = np.stack([(word >> np.uint64(s)) & np.uint64(0xFFFF)
                       for word in (h, low) for s in (48, 32, 16, 0)], axis=1).astype(np.uint32)
    run = np.zeros_like(groups)
    acc = np.zeros(len(groups), dtype=np.uint32)
    for j in range(8):  # length of the zero run ending at each group
        acc = (acc + 1) * (groups[:, j] == 0)
        run[:, j] = acc
    longest, end = run.max(axis=1), run.argmax(axis=1)  # argmax: the first longest run
    frame = pl.DataFrame({**{f"g{j}": groups[:, j] for j in range(8)},
                          "first": (end - longest + 1).astype(np.int64), "end": end.astype(np.int64),
                          "squeeze": longest >= 2})
    return frame.select(_ipv6_text()).to_series()


@functools.cache
def _ipv6_text() -> pl.Expr:
    """Groups g0..g7, the zero run first..end and whether to squeeze it -> the text."""
    hexes = [_lookup("hex", c(f"g{j}")) for j in range(8)]
    left = pl.concat_str([pl.when(c("first") > j).then(g) for j, g in enumerate(hexes)],
                         separator=":", ignore_nulls=True)
    right = pl.concat_str([pl.when(c("end") < j).then(g) for j, g in enumerate(hexes)],
                          separator=":", ignore_nulls=True)
    full = pl.concat_str(hexes, separator=":")
    return pl.when(c("squeeze")).then(left + "::" + right).otherwise(full)


# --- time formatting ------------------------------------------------------------------------------------

def _local_zone() -> str:
    tz = os.environ.get("TZ")
    if tz:
        return tz.lstrip(":")
    link = Path("/etc/localtime")
    if link.is_symlink():
        target = str(link.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    timezone = Path("/etc/timezone")
    if timezone.exists():
        return timezone.read_text().strip() or "UTC"
    return "UTC"


def time_widths(opts: PrintOptions, name: str) -> tuple[int, int]:
    """(header width, value width) of a timestamp column; value width <= 0: unpadded.

    ra 3.0.8 sizes its built-in format as 12 + precision.  With RA_TIME_FORMAT it measures the
    format with six fraction digits, and the StartTime value width comes out six narrower when
    the format has no %f (a bug we match); the per-direction times keep the built-in width.
    """
    per_direction = name in ("sstime", "sltime", "dstime", "dltime")
    p = opts.precision
    base = 12 + p
    if opts.time_format is None or per_direction:
        return (base + 1, base) if per_direction else (base, base)
    six = replace(opts, precision=6)
    sample = format_times(pl.Series([1_000_000_000_000_000], dtype=pl.Int64), replace(six, epoch=False))
    l6 = len(sample[0])
    header = l6 - (6 - p)
    if opts.epoch or name != "stime":
        return header, header
    return header, l6 - 6 + (p if "%f" in opts.time_format else 0)


def format_times(us: pl.Series, opts: PrintOptions) -> pl.Series:
    p = min(max(opts.precision, 0), 6)
    frame = pl.DataFrame({"sec": us // 1_000_000, "frac": (us % 1_000_000) // (10 ** (6 - p))})
    fraction = _digit_pieces(c("frac"), p)
    if opts.epoch:
        pieces = [c("sec").cast(pl.String), *([pl.lit("."), *fraction] if p else [])]
        return frame.select(pl.concat_str(pieces)).to_series()
    fmt = opts.time_format or DEFAULT_TIME_FORMAT
    if p == 0:
        fmt = fmt.replace(".%f", "").replace("%f", "")
    seconds, index = _second_index(frame["sec"])
    stamps = _local_stamps(seconds)
    pieces = []
    for k, piece in enumerate(fmt.split("%f")):
        if k:
            pieces += fraction
        if piece:  # strftime once per second of the batch, then gathered
            pieces.append(pl.lit(stamps.dt.strftime(piece)).gather(index))
    if not pieces:
        return pl.Series([""] * len(us), dtype=pl.String)
    return frame.select(pl.concat_str(pieces)).to_series()


def _second_index(sec: pl.Series) -> tuple[pl.Series, pl.Expr]:
    """The seconds to format and, per row, the index of its second among them."""
    low, high = sec.min(), sec.max()
    if low is not None and high - low <= max(4 * len(sec), 4096):  # a batch spans a few seconds
        return pl.int_range(low, high + 1, eager=True), (c("sec") - low).cast(pl.UInt32)
    uniq, inverse = np.unique(sec.to_numpy(), return_inverse=True)
    return pl.Series(uniq), pl.lit(pl.Series(inverse.astype(np.uint32)))


def _local_stamps(seconds: pl.Series) -> pl.Series:
    zone = _local_zone()
    stamps = pl.from_epoch(seconds, time_unit="s").dt.replace_time_zone("UTC")
    try:
        return stamps.dt.convert_time_zone(zone)
    except Exception:  # unknown zone name: ra would fall back to UTC as well
        return stamps


# --- per-field text -----------------------------------------------------------------------------------

_CAUSES = {0x10: "Start", 0x20: "Status", 0x30: "Stop", 0x40: "Timeout", 0x60: "Shutdown", 0x80: "Error"}
_DSCP = {0: "cs0", 8: "cs1", 16: "cs2", 24: "cs3", 32: "cs4", 40: "cs5", 48: "cs6", 56: "cs7",
         10: "af11", 12: "af12", 14: "af13", 18: "af21", 20: "af22", 22: "af23", 26: "af31",
         28: "af32", 30: "af33", 34: "af41", 36: "af42", 38: "af43", 46: "ef"}
_TCPOPT = "MwsSeETcNOSD"
_PERCENT_FIELDS = ("ploss", "sploss", "dploss", "pretrans", "spretrans", "dpretrans")


def _name_or_number(e: pl.Expr, table: dict[int, str]) -> pl.Expr:
    return e.cast(pl.Int64).replace_strict(table, default=e.cast(pl.String), return_dtype=pl.String)




def proto_text(opts: PrintOptions) -> pl.Expr:
    at = d.addr_type()
    numeric = opts.nflag in (2,)
    ip_name = c("proto").cast(pl.String) if numeric else _name_or_number(c("proto"), d.protocols())
    if not numeric:  # ra names UDP flows that carry an RTP network object (subtype 0x0A) "rtp"
        rtp = (c("proto") == d.IPPROTO_UDP) & d.has("net") & (c("net_subtype") == NET_RTP)
        ip_name = pl.when(rtp).then(pl.lit("rtp")).otherwise(ip_name)
    etype = c("proto").cast(pl.Int64)
    if opts.nflag == 2:
        named = c("proto").cast(pl.String)
    elif opts.nflag == 1:  # -n: known ether types by name, the others as numbers
        named = etype.replace_strict(d.ETHER_TYPES, default=c("proto").cast(pl.String),
                                     return_dtype=pl.String)
    else:
        named = etype.replace_strict(d.ETHER_TYPES, default="unknown", return_dtype=pl.String)
    ether = pl.when(c("proto") == 0).then(pl.lit("0" if opts.nflag == 2 else "llc")).otherwise(named)
    return (pl.when(d.is_mar()).then(pl.lit("man"))
            .when(at == ADDR_ARP).then(pl.lit("2054" if numeric else "arp"))
            .when(at == ADDR_RARP).then(pl.lit("rarp"))
            .when(at == ADDR_WLAN).then(pl.lit("wlan"))  # even with -nn, as ra 3.0.8 prints it
            .when(at == ADDR_ETHER).then(ether)
            .when(c("flow_subtype") == 3).then(pl.lit("ip" if _char_delimited(opts) else "ip "))
            .otherwise(ip_name))


def _port_text(side: str, opts: PrintOptions, rare_only: bool = False) -> pl.Expr:
    """Port text.  `rare_only`: for rows that are not TCP/UDP (the name lookups, costly to set
    up per call, are left out)."""
    port = c(f"{side}port")
    numeric = opts.nflag in (1, 2)
    if numeric or rare_only:
        tcp_udp = port.cast(pl.String)
    else:
        tcp = _name_or_number(port, d.services("tcp"))
        udp = _name_or_number(port, d.services("udp"))
        tcp_udp = (pl.when(port == 0).then(pl.lit(""))
                   .when(c("proto") == d.IPPROTO_TCP).then(tcp).otherwise(udp))
    swapped = (c("sport") % 256) * 256 + c("sport") // 256
    icmp = hex4(swapped) if side == "s" else hex4(c("dport"))
    # The reader's REVERSE undo may have moved ICMPv6 type/code into dport; ra never moves them.
    icmp6_key = pl.when(c("sport") == 0).then(c("dport")).otherwise(c("sport"))
    icmp6_value = (icmp6_key // 256) if side == "s" else (icmp6_key & 0xFF)
    icmp6 = icmp6_value.cast(pl.String) if numeric else hex4(icmp6_value)
    esp4 = hex8(pl.lit(0x20200000, pl.UInt32) + c("smask").cast(pl.UInt32) * 256 + c("dmask").cast(pl.UInt32))
    # ra reads the SPI of an IPv6 key (real argus writes them for garbled packets) where an
    # IPv4 key has it, key bytes 12-15: the source address's last word, little-endian; eight
    # digits in columns, "%x" with -c.
    low = c("saddr_lo").cast(pl.UInt64) & 0xFFFFFFFF
    as_le = pl.concat_str([_byte_hex(low, s) for s in (0, 8, 16, 24)])
    if opts.delimiter is not None:
        as_le = as_le.str.strip_chars_start("0")
        as_le = pl.when(as_le == "").then(pl.lit("0")).otherwise(as_le)
    esp6 = pl.concat_str([pl.lit("0x"), as_le])
    esp = pl.when(d.addr_type() == d.ADDR_IPV6).then(esp6).otherwise(esp4)
    sap = port.cast(pl.String) if numeric else pl.when(c("proto") == 0).then(
        _name_or_number(port, d.LLC_SAPS)).otherwise(pl.lit(""))
    ip = d.is_ip()
    return (pl.when(d.is_mar()).then(pl.lit(""))
            .when(d.is_ether()).then(sap)
            .when(ip & c("proto").is_in([d.IPPROTO_TCP, d.IPPROTO_UDP])).then(tcp_udp)
            .when(d.is_icmp4()).then(icmp)
            .when(d.is_icmp6()).then(icmp6)
            .when(ip & (c("proto") == d.IPPROTO_ESP)).then(esp if side == "d" else pl.lit(""))
            .otherwise(pl.lit("")))


def _srcid_text() -> pl.Expr:
    sid = c("srcid").cast(pl.UInt64)
    chars = [((sid // (1 << s)) & 0xFF).cast(pl.UInt8) for s in (24, 16, 8, 0)]
    as_text = pl.concat_str([
        pl.when(ch == 0).then(pl.lit("")).otherwise(
            ch.cast(pl.Int64).replace_strict({i: chr(i) for i in range(1, 256)}, return_dtype=pl.String))
        for ch in chars])
    return (pl.when(c("srcid_type") == 0x20).then(sid.cast(pl.String))
            .when(c("srcid_type") == 0x21).then(as_text)
            .otherwise(ipv4(sid)))


def _tcpopt_text() -> pl.Expr:
    opts = c("tcp_options")
    letters = [pl.when((opts & (1 << (20 + i))) != 0).then(pl.lit(ch)).otherwise(pl.lit(" "))
               for i, ch in enumerate(_TCPOPT)]
    return pl.when((opts & 0xFFF00000) != 0).then(pl.concat_str(letters)).otherwise(pl.lit(""))


def _special_expr(name: str, opts: PrintOptions) -> pl.Expr | None:
    """Text of the fields whose printing is not a plain number format (None: done elsewhere)."""
    if name == "srcid":
        return _srcid_text()
    if name == "flgs":
        return d.flgs()
    if name == "cause":
        return (c("cause") & 0xF0).cast(pl.Int64).replace_strict(_CAUSES, default="Unknown",
                                                                  return_dtype=pl.String)
    if name == "proto":
        return proto_text(opts)
    if name in ("sport", "dport"):
        return _port_text(name[0], opts)
    if name == "dir":
        return d.dir_().str.pad_start(5)
    if name == "state":
        return d.state(opts.zflag)
    if name in ("smac", "dmac"):
        return mac(c(name), numeric=opts.nflag == 2)
    if name in ("sdsb", "ddsb"):
        dscp = c(name[0] + "tos").cast(pl.Int64) // 4
        number = dscp.cast(pl.String).str.pad_start(2)
        if opts.nflag == 2:
            return number
        return dscp.replace_strict(_DSCP, default=number, return_dtype=pl.String)
    if name in ("spktsz", "dpktsz"):
        e = c(name[0] + "pktsz_hist").cast(pl.UInt32)
        return pl.concat_str([_byte_hex(e, s) for s in (24, 16, 8, 0)])
    if name == "tcpopt":
        return _tcpopt_text()
    if name == "inode":
        return ipv4(c("icmpmap_osrc"))
    if name == "rank":
        return pl.int_range(1, pl.len() + 1).cast(pl.String)
    if name == "idle":
        now = time.time()
        return pl.lit(now) - d.seconds(d.ltime_us())
    return None


@functools.cache
def _address_expr(side: str, named: bool, layer2: bool) -> pl.Expr:
    """IPv4 text, or a MAC for layer-2 keys when the batch has any (`layer2`); MARs blank."""
    lo = c(f"{side}addr_lo")
    text = ipv4(lo & 0xFFFFFFFF)
    if layer2:
        is_l2 = c("_at").is_in([ADDR_ETHER, ADDR_RARP])
        text = pl.when(is_l2).then(mac(lo, numeric=not named)).otherwise(text)
    return pl.when(c("_mar")).then(pl.lit("")).otherwise(text).alias("a")


def _ipv4_by_value(lo: pl.Series, fit: Callable[[pl.Series], pl.Series] | None) -> pl.Series:
    """IPv4 text made (and fitted) once per distinct address, then spread back: a batch holds
    far fewer addresses than records."""
    v4 = lo & 0xFFFFFFFF
    uniq = v4.unique()
    table = pl.select(ipv4(pl.lit(uniq))).to_series()
    return v4.replace_strict(uniq, fit(table) if fit else table, return_dtype=pl.String)


def _address_series(frame: pl.DataFrame, side: str, named: bool,
                    fit: Callable[[pl.Series], pl.Series] | None = None) -> pl.Series:
    """Address text.  `named`: show the broadcast MAC of a layer-2 key as "Broadcast" (ra 3.0.8
    does so only in delimited output without -nn).  `fit`: pads IPv4 texts to the column (the
    other texts are fitted afterwards with the rest of the column)."""
    at = frame["_at"]
    lo, hi = frame[f"{side}addr_lo"], frame[f"{side}addr_hi"]
    layer2 = bool(at.is_in([ADDR_ETHER, ADDR_RARP]).any())
    if layer2:
        base = frame.select(_address_expr(side, named, layer2)).to_series()
    else:
        base = _ipv4_by_value(lo, fit)
        if frame["_mar"].any():
            base = base.scatter(np.flatnonzero(frame["_mar"].to_numpy()), "")
    v6 = (at == ADDR_IPV6) & ~frame["_mar"]
    if v6.any():
        idx = np.flatnonzero(v6.to_numpy())
        texts = ipv6_series(hi.gather(idx), lo.gather(idx))
        base = base.scatter(idx, texts)
    wlan = (at == ADDR_WLAN) & ~frame["_mar"]
    if wlan.any():  # 802.11 keys stay raw in flow_raw: dst MAC, src MAC, ...; rare, done per row
        idx = np.flatnonzero(wlan.to_numpy())
        start = 6 if side == "s" else 0
        raws = frame["flow_raw"].gather(idx).to_list()
        values = [int.from_bytes(r[start:start + 6].ljust(6, b"\0"), "big") for r in raws]
        texts = pl.select(mac(pl.Series(values, dtype=pl.UInt64), numeric=not named)).to_series()
        base = base.scatter(idx, texts)
    return base


_ASCII = bytes(ch if 0x20 <= ch < 0x7F else 0x2E for ch in range(256))


def _user_series(frame: pl.DataFrame, name: str, width: int) -> pl.Series:
    """`s[N]=bytes` with non-printables as '.', N = min(bytes captured, field width)."""
    data = frame[name]
    n = data.bin.size().cast(pl.Int64).clip(upper_bound=width)
    prefix = name[0] + "[" + n.cast(pl.String) + "]="
    # Formatted per distinct payload (user data is rare and repetitive); translate runs in C.
    uniq = data.unique()
    texts = [v[:width].translate(_ASCII).decode("ascii") for v in uniq.to_list()]
    table = pl.DataFrame({"v": uniq, "t": pl.Series(texts, dtype=pl.String)})
    body = pl.DataFrame({"v": data}).join(table, on="v", how="left", maintain_order="left")["t"]
    return pl.select(pl.when(n > 0).then(prefix + body).otherwise(pl.lit(""))).to_series()


# --- management records (§4.5) ---------------------------------------------------------------------------

_MAR_TIMES = {"stime": "now", "ltime": "start", "sstime": "start", "dstime": "start",
              "sltime": "now", "dltime": "now"}
_MAR_NUMBERS = {"saddr": "queue", "daddr": "bufs", "sport": "dropped", "dport": "clients",
                "spkts": "pkts_rcvd", "pkts": "pkts_rcvd", "dpkts": "records", "sbytes": "bytes_rcvd",
                "dbytes": "dropped", "bytes": "mem_bytes", "appbytes": "mem_bytes",
                "sappbytes": "bufs", "dappbytes": "zero", "seq": "seq", "offset": "offset"}
_MAR_AS_FLOW = ("srcid", "flgs", "cause", "proto", "state")  # the flow printers handle MARs
_MAR_ZERO_INTS = ("loss", "sloss", "dloss", "retrans", "sretrans", "dretrans")
_MAR_ZERO_FLOATS = ("rate", "srate", "drate", "load", "sload", "dload", "ploss", "sploss", "dploss",
                    "pretrans", "spretrans", "dpretrans", "tcprtt", "synack", "ackdat",
                    "smeansz", "dmeansz")

# (name, byte offset, width) of the MAR fields ra prints; all big-endian.
_MAR_LAYOUT = [("seq", 20, 4), ("start_sec", 24, 4), ("start_usec", 28, 4), ("now_sec", 32, 4),
               ("now_usec", 36, 4), ("pkts_rcvd", 48, 8), ("bytes_rcvd", 56, 8), ("records", 72, 4),
               ("dropped", 80, 4), ("queue", 84, 4), ("clients", 92, 4), ("bufs", 96, 4),
               ("mem_bytes", 100, 4)]


def mar_values(values: pl.DataFrame) -> pl.DataFrame:
    """The MAR fields of every row (zeros for flows), decoded from `mar_raw` in one numpy pass."""
    n = values.height
    raw = values["mar_raw"].to_list()
    block = np.zeros((n, 128), dtype=np.uint8)
    rows = np.flatnonzero(values["_mar"].to_numpy())
    for r in rows:  # MARs are a handful per file
        data = raw[r][:128]
        block[r, : len(data)] = np.frombuffer(data, dtype=np.uint8)
    out = {}
    for name, off, width in _MAR_LAYOUT:
        v = np.zeros(n, dtype=np.uint64)
        for k in range(width):
            v = (v << np.uint64(8)) | block[:, off + k].astype(np.uint64)
        out[name] = v
    frame = pl.DataFrame(out)
    now = (frame["now_sec"] * 1_000_000 + frame["now_usec"]).cast(pl.Int64)
    start = (frame["start_sec"] * 1_000_000 + frame["start_usec"]).cast(pl.Int64)
    # ra shows a MAR's offset as that of the record before it (its offset is never updated).
    offsets = values.select(
        pl.when(c("_mar")).then(None).otherwise(c("offset")).shift(1).forward_fill().fill_null(0)
    ).to_series()
    prev_offset = pl.select(pl.when(values["offset"] == 0).then(0).otherwise(offsets)).to_series()
    return frame.with_columns(
        now=now, start=start, zero=pl.lit(0),
        dur=((now - start).cast(pl.Float64) / 1e6).cast(pl.Float32),
        offset=prev_offset)


# What the Series formatters read outside the plan's expressions (addresses, user data, MARs).
_SERIES_COLUMNS = ("rtype", "flow_qual", "saddr_lo", "saddr_hi", "daddr_lo", "daddr_hi", "flow_raw",
                   "suser", "duser", "mar_raw", "offset", "proto", "flow_subtype")


# --- coded columns: an integer code per row, one gather from a table of texts ---------------------

@dataclass
class _Plan:
    """How a column's text is made.

    kind 'expr': `expr` is the text.  'time'/'float': `expr` is the number, formatted as a Series.
    'addr'/'user': formatted from the frame as a Series.  'coded': `expr` indexes `table`; rows
    where `rare` holds get `fallback` (a text expression) instead.  `keep`: where the text shows.
    """

    kind: str
    expr: pl.Expr | None = None
    keep: pl.Expr | None = None
    table: pl.Series | None = None
    rare: pl.Expr | None = None
    fallback: pl.Expr | None = None


_PORT_BLOCK = 65536


@functools.cache
def _port_table(numeric: bool) -> pl.Series:
    """"" then a block of 65536 port texts each: numbers, and unless `numeric` TCP and UDP names."""
    port = pl.int_range(0, _PORT_BLOCK, eager=True).to_frame("p")
    blocks = [pl.Series([""]), port.select(c("p").cast(pl.String)).to_series()]
    if not numeric:
        names = [_name_or_number(c("p"), d.services(kind)) for kind in ("tcp", "udp")]
        blocks += [port.select(e).to_series() for e in names]
    return pl.concat([b.rename("") for b in blocks])


def _port_kind(side: str, numeric: bool) -> pl.Expr:
    """0 blank, 1 number, 2 TCP name, 3 UDP name, 4 other (ICMP type/code, ESP SPI, LLC SAP)."""
    port, proto = c(f"{side}port"), c("proto")
    ip = d.is_ip()
    one = pl.lit(1)
    tcp_udp = one if numeric else (pl.when(port == 0).then(0).when(proto == d.IPPROTO_TCP).then(2)
                                   .otherwise(3))
    ether = one if numeric else pl.when(proto == 0).then(4).otherwise(0)
    return (pl.when(d.is_mar()).then(0)
            .when(d.is_ether()).then(ether)
            .when(ip & proto.is_in([d.IPPROTO_TCP, d.IPPROTO_UDP])).then(tcp_udp)
            .when(d.is_icmp4() | d.is_icmp6()).then(4)
            .when(ip & (proto == d.IPPROTO_ESP)).then(4 if side == "d" else 0)
            .otherwise(0))


@functools.cache
def _tcpopt_table() -> pl.Series:
    """The TcpOpt text of each value of the 12 option bits (bits 20-31 of the options word)."""
    texts = ["".join(ch if code & (1 << i) else " " for i, ch in enumerate(_TCPOPT)) for code in range(4096)]
    texts[0] = ""
    return pl.Series(texts, dtype=pl.String)


_PROTO_BLOCK = 65536
# after the IP block: rtp, man, arp, rarp, wlan, ip (flow subtype 3), then the ether block
_PROTO_RTP, _PROTO_MAN, _PROTO_ARP, _PROTO_RARP, _PROTO_WLAN, _PROTO_IP3, _PROTO_ETHER = \
    (_PROTO_BLOCK + k for k in range(7))


@functools.cache
def _char_delimited(opts: PrintOptions) -> bool:
    """Output delimited by a character other than blank (ra strips its fields): LAYER_3_MATRIX
    records print proto "ip" (else "ip "), the broadcast MAC "Broadcast" (without -nn)."""
    return opts.delimiter not in (None, " ", "")


def _proto_table(nflag: int, delimited: bool) -> pl.Series:
    """Every Proto text `proto_text` can give, indexed as `_proto_code` counts."""
    numeric = nflag == 2
    number = pl.int_range(0, _PROTO_BLOCK, eager=True).to_frame("p")
    as_text = c("p").cast(pl.String)
    ip = as_text if numeric else _name_or_number(c("p"), d.protocols())
    if nflag == 2:
        ether = as_text
    else:
        ether = c("p").replace_strict(d.ETHER_TYPES, default=as_text if nflag == 1 else pl.lit("unknown"),
                                      return_dtype=pl.String)
    ether = pl.when(c("p") == 0).then(pl.lit("0" if numeric else "llc")).otherwise(ether)
    named = ["rtp", "man", "2054" if numeric else "arp", "rarp", "wlan", "ip" if delimited else "ip "]
    return pl.concat([number.select(ip.alias("t")).to_series(), pl.Series("t", named, dtype=pl.String),
                      number.select(ether.alias("t")).to_series()]).rename("")


def _proto_code(opts: PrintOptions) -> pl.Expr:
    """The index of a record's Proto text in `_proto_table` (integer work: no text per row)."""
    at = d.addr_type()
    proto = c("proto").cast(pl.Int64).clip(0, _PROTO_BLOCK - 1)
    ip = proto
    if opts.nflag != 2:  # ra names UDP flows that carry an RTP network object (subtype 0x0A) "rtp"
        rtp = (c("proto") == d.IPPROTO_UDP) & d.has("net") & (c("net_subtype") == NET_RTP)
        ip = pl.when(rtp).then(pl.lit(_PROTO_RTP)).otherwise(proto)
    code = (pl.when(d.is_mar()).then(pl.lit(_PROTO_MAN))
            .when(at == ADDR_ARP).then(pl.lit(_PROTO_ARP))
            .when(at == ADDR_RARP).then(pl.lit(_PROTO_RARP))
            .when(at == ADDR_WLAN).then(pl.lit(_PROTO_WLAN))
            .when(at == ADDR_ETHER).then(_PROTO_ETHER + proto)
            .when(c("flow_subtype") == 3).then(pl.lit(_PROTO_IP3))
            .otherwise(ip))
    return code.cast(pl.UInt32)


def _coded_plan(name: str, opts: PrintOptions) -> _Plan | None:
    if name == "proto":
        return _Plan("coded", _proto_code(opts), table=_proto_table(opts.nflag, _char_delimited(opts)))
    if name == "tcpopt":
        bits = (c("tcp_options") // (1 << 20)) & 0xFFF
        return _Plan("coded", bits.cast(pl.UInt32), table=_tcpopt_table())
    if name == "dir":
        return _Plan("coded", d.dir_code(), table=d.DIRS.series().str.pad_start(5))
    if name == "state" and opts.zflag is None:
        return _Plan("coded", d.state_code(), table=d.STATES.series())
    if name in ("sport", "dport"):
        numeric = opts.nflag in (1, 2)
        kind = _port_kind(name[0], numeric)
        index = (pl.when(kind.is_in([0, 4])).then(0)
                 .otherwise((kind - 1) * _PORT_BLOCK + 1 + c(name).cast(pl.Int64))).cast(pl.UInt32)
        return _Plan("coded", index, table=_port_table(numeric), rare=kind == 4,
                     fallback=_port_text(name[0], opts, rare_only=True))
    return None


NULL_VALUE = linewriter.NULL  # a kernel value that shows entry 0 of its table: the blank
_FLGS_CHARS = 9


def _blank_value(kc: linewriter.KernelColumn) -> int:
    """The value of a blank cell: the kernel's NULL, or for a TEXT column the index of a blank
    entry (appended when its table has none)."""
    if kc.kind != linewriter.TEXT:
        return NULL_VALUE
    lengths = kc.table.lengths
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        return int(empty[0])
    kc.table = linewriter.join_tables(kc.table, linewriter.BLANK)
    return len(kc.table) - 1


# Blank fields ra's space-delimited lines print as blanks, not as nothing (3.0.8, seen field
# by field on the samples and corpus: ports (one blank where the key has ports), TCP options
# and inode of UDP, icmpid).
SPACE_BLANKS = {"sport": 6, "dport": 6, "tcpopt": 12, "inode": 18, "icmpid": 1}


def _port_after_address(cols: tuple[Column, ...], i: int) -> bool:
    """Column i is sport after saddr or dport after daddr (ra prints them as addr.port)."""
    name = cols[i].field.name
    return name in ("sport", "dport") and \
        cols[i - 1].field.name == ("saddr" if name == "sport" else "daddr")


def _blanks(n: int) -> pl.Series:
    return pl.repeat("", n, dtype=pl.String, eager=True)


def _seconds_of(sec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The seconds to format (a range, or the distinct ones when the batch spans too long)
    and each row's index among them."""
    if len(sec) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    low, high = int(sec.min()), int(sec.max())
    if high - low <= max(4 * len(sec), 4096):
        return np.arange(low, high + 1, dtype=np.int64), sec - low
    uniq, inverse = np.unique(sec, return_inverse=True)
    return uniq.astype(np.int64), inverse.astype(np.int64)


# --- the printer ----------------------------------------------------------------------------------------

@dataclass
class Printer:
    """Formats batches; keeps the line count across batches for -L N headers."""

    options: PrintOptions = field(default_factory=PrintOptions)
    lines_printed: int = 0
    _cached_plan: list[_Plan] | None = field(default=None, repr=False, compare=False)
    _tables: dict[tuple[int, bool], pl.Series] = field(default_factory=dict, repr=False, compare=False)
    _columns: frozenset[str] | None = field(default=None, repr=False, compare=False)
    _kernel_tables: dict[tuple[int, str], linewriter.Table] = field(default_factory=dict, repr=False,
                                                                    compare=False)
    _kernel_select: dict[str, pl.Expr] | None = field(default=None, repr=False, compare=False)

    def project(self, batch: pl.DataFrame) -> pl.DataFrame:
        """The batch cut to the columns this printer reads.

        A batch has ~170 columns and the default fields read ~20: filtering out MARs, merging
        batches and making them contiguous then copy only those (a third of the printing time
        went to copying columns nobody prints)."""
        if self._columns is None:
            self._columns = self._read_columns()
        if batch.width <= len(self._columns):
            return batch
        return batch.select(name for name in batch.columns if name in self._columns)

    def _read_columns(self) -> frozenset[str]:
        """Every column the plan's expressions name, plus what the Series formatters and the
        re-orientation (which swaps whole column pairs) read."""
        names = set(_SERIES_COLUMNS)
        reverse = d.reverse_mask(self.options.nflag in (1, 2), {})
        if not reverse.meta.eq(pl.lit(False)):  # orient swaps whole column pairs: keep them all
            names.update(name for pair in d._SWAP_PAIRS for name in pair)
            names.update(d._SWAP_BITS)
        exprs = [d.is_mar(), d.addr_type(), reverse]
        for p in self._plan():
            exprs += [e for e in (p.expr, p.keep, p.rare, p.fallback) if e is not None]
        for e in exprs:
            names.update(e.meta.root_names())
        return frozenset(names)

    def header(self) -> str:
        """The header line (with its newline)."""
        o = self.options
        cols = self.options.columns
        if o.delimiter in (" ", ""):  # ra's space-delimited header ends with the delimiter
            return "".join(self._label(col, None) + " " for col in cols if col.labelled) + "\n"
        if o.delimiter is not None:
            return o.delimiter.join(self._label(col, None) for col in cols if col.labelled) + "\n"
        return "".join(self._label(col, self._hdr_width(col)) + " " for col in cols if col.labelled) + "\n"

    def _label(self, col: Column, width: int | None) -> str:
        if width is None:  # delimited output: the label as cut to the field width
            return col.field.label[: col.width]
        if width <= 0:
            return col.field.label
        label = col.field.label[:width]
        if col.field.hdr_align == "c":
            left = (width - len(label)) // 2
            return (" " * left + label).ljust(width)
        return label.rjust(width)

    def _hdr_width(self, col: Column) -> int:
        if col.field.fmt == FMT_TIME and col.width == col.field.width:
            return time_widths(self.options, col.field.name)[0]
        return self._col_width(col) + col.field.hdr_extra

    def _col_width(self, col: Column) -> int:
        if col.field.fmt == FMT_TIME and col.width == col.field.width:
            return time_widths(self.options, col.field.name)[1]
        if col.field.name in ("suser", "duser"):
            # room for "s[N]=" and N bytes, as ra sizes it
            return len(f"s[{col.width}]=") + col.width + 3
        return col.width

    # --- cells: one text expression per column ----------------------------------------------------

    def _plan(self) -> list[_Plan]:
        """How each column is made, built once per printer."""
        if self._cached_plan is None:
            self._cached_plan = [self._column_plan(col.field) for col in self.options.columns]
        return self._cached_plan

    def _column_plan(self, f: Field) -> _Plan:
        o = self.options
        keep = self._keep(f)
        if f.name in ("saddr", "daddr"):
            return _Plan("addr", keep=keep)
        if f.name in ("suser", "duser"):
            return _Plan("user", keep=keep)
        if f.fmt == FMT_TIME:
            return _Plan("time", f.value().cast(pl.Int64), keep)
        if f.fmt == FMT_FLOAT or f.name == "idle":
            return _Plan("float", _special_expr(f.name, o) if f.name == "idle" else f.value(), keep)
        coded = _coded_plan(f.name, o)
        if coded is not None:
            if keep is not None:  # the extra last entry of the table is the blank
                coded.expr = pl.when(keep).then(coded.expr).otherwise(pl.lit(len(coded.table), pl.UInt32))
                coded.table = pl.concat([coded.table, pl.Series([""], dtype=pl.String)])
            return coded
        if f.fmt == FMT_HEX4:
            expr = hex4(f.value().cast(pl.UInt32))
        elif f.fmt == FMT_SPECIAL:
            expr = _special_expr(f.name, o).cast(pl.String)
        elif f.fmt == FMT_INT:
            expr = f.value().cast(pl.Int64).cast(pl.String)
        else:
            expr = f.value().cast(pl.String)
        expr = expr.fill_null("")
        return _Plan("expr", expr if keep is None else pl.when(keep).then(expr).otherwise(pl.lit("")))

    def _table(self, i: int, fit: bool) -> pl.Series:
        """Texts of a coded column, fitted to its width for fixed-width output (once per printer)."""
        key = (i, fit)
        if key not in self._tables:
            table = self._plan()[i].table
            assert table is not None
            self._tables[key] = self._fit(table, self.options.columns[i]) if fit else table
        return self._tables[key]

    def _prepare(self, batch: pl.DataFrame) -> pl.DataFrame:
        # one contiguous chunk per column: polars string kernels are far slower on many chunks
        frame = d.orient(batch.rechunk(), numeric_ports=self.options.nflag in (1, 2))  # no-op if done
        return frame.with_columns(_mar=d.is_mar(), _at=d.addr_type())

    def _cells(self, frame: pl.DataFrame, fit: bool) -> pl.DataFrame:
        """The text of every column (`t0`, `t1`, ...) and `_mar`.

        Texts that need Series work (times, floats, addresses, user data, MAR values) are computed
        first and attached to the frame; the rest are expressions evaluated in one select, so that
        polars runs the columns in parallel.  Coded columns gather their text from a table that is
        already fitted; the others are fitted in a second select over the texts.
        """
        o = self.options
        plan = self._plan()
        numeric = {f"_v{i}": p.expr for i, p in enumerate(plan) if p.kind in ("time", "float")}
        values = frame.select(**numeric) if numeric else None
        extra: dict[str, pl.Series] = {}
        cells: list[pl.Expr] = []
        for i, (col, p) in enumerate(zip(o.columns, plan, strict=True)):
            expr = p.expr
            if p.kind == "coded":
                assert p.expr is not None
                expr = pl.lit(self._table(i, fit)).gather(p.expr)
                if p.rare is not None:
                    cells.append(p.rare.alias(f"_r{i}"))
            elif p.kind != "expr":
                extra[f"_s{i}"] = self._series_text(frame, values, col, p.kind, i, fit)
                expr = c(f"_s{i}")
                if p.keep is not None:
                    expr = pl.when(p.keep).then(expr).otherwise(pl.lit(""))
            assert expr is not None
            cells.append(expr.alias(f"t{i}"))
        # a key with ports (TCP, UDP, Ethernet): ra's space-delimited lines print a blank one as
        # one blank, others (ARP, LAYER_3_MATRIX, other protocols) as six
        ports = (c("_at") == ADDR_ETHER) | (c("_at").is_in([ADDR_IPV4, ADDR_IPV6])
                                            & c("proto").is_in([6, 17]) & (c("flow_subtype") != 3))
        texts = frame.with_columns(**extra).select(*cells, c("_mar"), ports.alias("_ports"))
        if fit:
            # most columns never overflow: then padding alone fits them (no cut, no '*'); and
            # some (times, Flgs) always come at their width: then they are left as they are
            loose = [i for i, p in enumerate(plan) if p.kind != "coded"]
            lengths = [c(f"t{i}").str.len_chars() for i in loose]
            ranges = texts.select(*(n.max().alias(f"max{k}") for k, n in enumerate(lengths)),
                                  *(n.min().alias(f"min{k}") for k, n in enumerate(lengths))).row(0) \
                if loose else ()
            fits = []
            for i, longest, shortest in zip(loose, ranges[:len(loose)], ranges[len(loose):], strict=True):
                width = self._col_width(o.columns[i])
                if not longest == shortest == width:
                    fits.append(self._fit_expr(c(f"t{i}"), o.columns[i], overflow=(longest or 0) > width)
                                .alias(f"t{i}"))
            texts = texts.with_columns(fits) if fits else texts
        texts = self._with_rare_texts(frame, texts, fit)
        if texts["_mar"].any():
            texts = self._with_mar_texts(frame, texts, fit)
        return texts

    def _with_rare_texts(self, frame: pl.DataFrame, texts: pl.DataFrame, fit: bool) -> pl.DataFrame:
        """Rows of a coded column its table cannot print (ICMP ports...): their own expression."""
        rare = [i for i, p in enumerate(self._plan()) if p.rare is not None]
        for i in rare:
            rows = np.flatnonzero(texts[f"_r{i}"].to_numpy())
            if len(rows) == 0:
                continue
            fallback = self._plan()[i].fallback
            assert fallback is not None
            value = frame.select(sorted(set(fallback.meta.root_names())))[rows].select(fallback).to_series()
            if fit:
                value = self._fit(value, self.options.columns[i])
            texts = texts.with_columns(texts[f"t{i}"].scatter(rows, value))
        return texts.drop(f"_r{i}" for i in rare)

    def _with_mar_texts(self, frame: pl.DataFrame, texts: pl.DataFrame, fit: bool) -> pl.DataFrame:
        """MAR rows print their own values in most columns (§4.5)."""
        mars = mar_values(frame)
        updates = []
        for i, col in enumerate(self.options.columns):
            if col.field.name in _MAR_AS_FLOW:
                continue
            mar_text = self._mar_text(mars, col)
            if fit:
                mar_text = self._fit(mar_text, replace(col, field=replace(col.field, align="r")))
            updates.append(pl.when(c("_mar")).then(pl.lit(mar_text)).otherwise(c(f"t{i}")).alias(f"t{i}"))
        return texts.with_columns(updates) if updates else texts

    def _series_text(self, frame: pl.DataFrame, values: pl.DataFrame | None, col: Column, kind: str,
                     i: int, fit: bool = False) -> pl.Series:
        o = self.options
        name = col.field.name
        if kind == "addr":
            return _address_series(frame, name[0], _char_delimited(o) and o.nflag < 2,
                                   (lambda text: self._fit(text, col)) if fit else None)
        if kind == "user":
            return _user_series(frame, name, col.width)
        assert values is not None
        if kind == "time":
            return format_times(values[f"_v{i}"], o)
        text = fixed(values[f"_v{i}"], o.precision)
        return text.str.pad_start(3) if name in _PERCENT_FIELDS else text  # ra: "%3.*f"

    def texts(self, batch: pl.DataFrame, fit: bool = False) -> list[pl.Series]:
        """The text of every column for every record of the batch ('' = blank).

        With `fit`, each text is already padded or cut to its column width (fixed-width output).
        """
        cells = self._cells(self._prepare(batch), fit)
        return [cells[:, i].alias(col.field.name) for i, col in enumerate(self.options.columns)]

    def _fit_expr(self, text: pl.Expr, col: Column, overflow: bool = True) -> pl.Expr:
        """Pad to the column width; a longer value is cut and marked with '*' (cause: just cut).

        `overflow` False: the caller knows no value is longer than the width.
        """
        w = self._col_width(col)
        if w <= 0:
            return text
        pad = text.str.pad_end(w) if col.field.align == "l" else text.str.pad_start(w)
        if not overflow:
            return pad
        cut = text.str.slice(0, w) if col.field.name == "cause" else text.str.slice(0, max(w - 1, 0)) + "*"
        return pl.when(text.str.len_chars() > w).then(cut).otherwise(pad)

    def _fit(self, text: pl.Series, col: Column) -> pl.Series:
        if text.len() == 0:
            return text
        return pl.select(self._fit_expr(pl.lit(text), col)).to_series()

    def _mar_text(self, mars: pl.DataFrame, col: Column) -> pl.Series:
        """What ra prints in a column of a MAR line (§4.5); '' where it prints nothing."""
        name = col.field.name
        o = self.options
        if name in _MAR_TIMES:
            return format_times(mars[_MAR_TIMES[name]], o)
        if name in ("dur", "sdur", "ddur"):
            return fixed(mars["dur"], o.precision)
        if name in _MAR_NUMBERS:
            return mars[_MAR_NUMBERS[name]].cast(pl.String)
        if name in _MAR_ZERO_INTS:
            return pl.Series([""] * mars.height).str.replace("^$", "0")
        if name in _MAR_ZERO_FLOATS:
            zero = fixed(pl.Series([0.0] * mars.height), o.precision)
            return zero.str.pad_start(3) if name in _PERCENT_FIELDS else zero
        return pl.Series([""] * mars.height, dtype=pl.String)

    def _keep(self, f: Field) -> pl.Expr | None:
        """Where the field prints (None: everywhere): its DSR is present, and not on MAR lines."""
        present = f.present() if f.present is not None else None
        if f.name in _MAR_AS_FLOW:
            return present
        return ~c("_mar") if present is None else (present & ~c("_mar"))

    def lines(self, batch: pl.DataFrame) -> pl.Series:
        """One text line per printed record (no newlines, no header)."""
        o = self.options
        batch = self.project(batch)
        if not o.print_man and (batch["rtype"] == 0x80).any():
            batch = batch.filter(~d.is_mar())
        if batch.height == 0:
            return pl.Series([], dtype=pl.String)
        frame = self._prepare(batch)
        if o.json:
            return self._json(self._cells(frame, fit=False))
        if o.delimiter is not None:
            return self._delimited(self._cells(frame, fit=False))
        return self._fixed(self._cells(frame, fit=True))

    # --- the compiled line writer (fixed-width output) ------------------------------------------

    def _compiled_lines(self, batch: pl.DataFrame) -> tuple[memoryview, int] | None:
        """The lines (newline-ended bytes) and their count from the compiled writer, or None
        where it does not apply: -c, JSON, -L N, MAR lines, or no compiled writer."""
        o = self.options
        if o.json or o.delimiter is not None or not self._plain() or not linewriter.available():
            return None
        batch = self.project(batch)
        if (batch["rtype"] == 0x80).any():
            if o.print_man:
                return None
            batch = batch.filter(~d.is_mar())
        if batch.height == 0:
            return memoryview(b""), 0
        frame = self._prepare(batch)
        return linewriter.write_lines(self._kernel_columns(frame), frame.height), frame.height

    def _kernel_columns(self, frame: pl.DataFrame) -> list[linewriter.KernelColumn]:
        """Each column as the kernel takes it.  Every number, code and mask is computed in one
        select (polars runs them in parallel), then shaped with numpy."""
        o = self.options
        plan = self._plan()
        if self._kernel_select is None:  # built once: the Flgs codes alone take ~8 ms to build
            self._kernel_select = {}
            for i, (col, p) in enumerate(zip(o.columns, plan, strict=True)):
                self._kernel_select.update(self._kernel_exprs(i, col, p))
        exprs = self._kernel_select
        values = frame.select(**exprs) if exprs else pl.DataFrame()
        return [self._kernel_column(frame, values, i, col, p)
                for i, (col, p) in enumerate(zip(o.columns, plan, strict=True))]

    def _kernel_exprs(self, i: int, col: Column, p: _Plan) -> dict[str, pl.Expr]:
        """What column i needs computed over the batch: `_v` its numbers or codes, `_k` where it
        shows, `_r` its rare rows, `_t` its text (a column the kernel cannot code)."""
        f = col.field
        out: dict[str, pl.Expr] = {}
        keep = self._keep(f) if p.kind == "expr" else p.keep  # an 'expr' plan's text applies it
        if keep is not None and p.kind != "coded":
            out[f"_k{i}"] = keep
        if p.kind in ("time", "float"):
            assert p.expr is not None
            out[f"_v{i}"] = p.expr
        elif p.kind == "coded":
            assert p.expr is not None
            out[f"_v{i}"] = p.expr
            if p.rare is not None:
                out[f"_r{i}"] = p.rare
        elif p.kind == "expr" and f.name == "flgs":
            out[f"_v{i}"] = pl.sum_horizontal([code.cast(pl.Int64) * (1 << (7 * k))
                                               for k, code in enumerate(d.flgs_codes())])
        elif p.kind == "expr" and f.fmt == FMT_INT:
            out[f"_v{i}"] = f.value().cast(pl.Int64)
        elif p.kind == "expr":
            assert p.expr is not None
            out.pop(f"_k{i}", None)  # the text expression applies it
            out[f"_t{i}"] = p.expr
        return out

    def _kernel_column(self, frame: pl.DataFrame, values: pl.DataFrame, i: int, col: Column,
                       p: _Plan) -> linewriter.KernelColumn:
        f = col.field
        n = frame.height
        if p.kind == "time":
            kc = self._kernel_time(values[f"_v{i}"])
        elif p.kind == "float":
            kc = self._kernel_float(values[f"_v{i}"], col)
        elif p.kind == "coded":
            kc = self._kernel_coded(frame, values, i)
        elif p.kind == "addr":
            kc = self._kernel_address(frame, col)
        elif p.kind == "expr" and f.name == "flgs":
            kc = linewriter.KernelColumn(linewriter.CHARS7, values[f"_v{i}"].to_numpy(), linewriter.BLANK,
                                         param=_FLGS_CHARS)
        elif p.kind == "expr" and f.fmt == FMT_INT:
            v = values[f"_v{i}"]
            kc = linewriter.KernelColumn(linewriter.INT, v.fill_null(NULL_VALUE).to_numpy(), linewriter.BLANK)
        else:
            texts = values[f"_t{i}"] if p.kind == "expr" else _user_series(frame, f.name, col.width)
            kc = linewriter.KernelColumn(linewriter.TEXT, np.arange(n, dtype=np.int64),
                                         linewriter.table(texts))
        keep = f"_k{i}"
        if keep in values.columns:
            shown = values[keep].fill_null(False).to_numpy()
            if not shown.all():
                kc.values = np.where(shown, kc.values, _blank_value(kc))
        kc.values = np.ascontiguousarray(kc.values, dtype=np.int64)
        kc.width = self._col_width(col)
        kc.align_left = f.align == "l"
        kc.cut = f.name == "cause"
        kc.joined = i > 0 and f.name in ("sport", "dport") and \
            self.options.columns[i - 1].field.name == ("saddr" if f.name == "sport" else "daddr")
        return kc

    def _kernel_time(self, us: pl.Series) -> linewriter.KernelColumn:
        """Times: per second of the batch, the local-time texts around each %f (strftime once
        per second and piece), the fraction written by the kernel."""
        o = self.options
        p = min(max(o.precision, 0), 6)
        valid = us.is_not_null().to_numpy()
        v = us.fill_null(0).to_numpy().astype(np.int64)
        sec = v // 1_000_000
        seconds, index = _seconds_of(sec[valid] if not valid.all() else sec)
        if o.epoch:
            texts = [pl.Series(seconds).cast(pl.String) + ("." if p else "")]
            texts += [_blanks(len(seconds))] if p else []
        else:
            fmt = o.time_format or DEFAULT_TIME_FORMAT
            if p == 0:
                fmt = fmt.replace(".%f", "").replace("%f", "")
            stamps = _local_stamps(pl.Series(seconds))
            texts = [stamps.dt.strftime(piece) if piece else _blanks(len(seconds))
                     for piece in fmt.split("%f")]
        full = np.zeros(len(v), dtype=np.int64)
        full[valid] = index
        values = np.where(valid, full * 1_000_000 + v % 1_000_000, NULL_VALUE)
        return linewriter.KernelColumn(linewriter.TIME, values, linewriter.join_tables(
            linewriter.BLANK, *(linewriter.table(t) for t in texts)),
            param=p, pieces=len(texts), seconds=len(seconds))

    def _kernel_float(self, values: pl.Series, col: Column) -> linewriter.KernelColumn:
        """printf("%.*f") as `fixed` makes it: r = |v| * 10**p rounded, exact ties, huge and
        non-finite values formatted by Python (as table entries)."""
        p = max(0, self.options.precision)
        name = col.field.name
        padded = name in _PERCENT_FIELDS  # ra: "%3.*f"
        if p > 15 or (padded and (self._col_width(col) < 3 or col.field.align == "l")):
            text = fixed(values, p)
            text = text.str.pad_start(3) if padded else text
            return linewriter.KernelColumn(linewriter.TEXT, np.arange(len(text), dtype=np.int64),
                                           linewriter.table(text))
        v = values.cast(pl.Float64).to_numpy()
        with np.errstate(invalid="ignore", over="ignore"):
            a = np.abs(v) * (10.0 ** p)
            r = np.rint(a)
            frac = a - np.floor(a)
        slow = ~np.isfinite(a) | (a >= 2.0 ** 52) | (np.abs(frac - 0.5) < 1e-6)
        r = np.where(slow, 0, r).astype(np.int64)
        neg = np.signbit(v) & ~np.isnan(v)
        coded = np.where(neg, ~r, r)
        rows = np.flatnonzero(slow)
        if len(rows) == 0:
            return linewriter.KernelColumn(linewriter.FIXED, coded, linewriter.BLANK, param=p)
        texts = [_c_fixed(v[k], p) for k in rows]  # rare: ties and oddities, as `fixed` does
        coded, tab = linewriter.with_texts(coded, rows, linewriter.BLANK, texts)
        return linewriter.KernelColumn(linewriter.FIXED, coded, tab, param=p)

    def _kernel_coded(self, frame: pl.DataFrame, values: pl.DataFrame, i: int) -> linewriter.KernelColumn:
        """A coded column: its (unfitted) table, and the rare rows' own texts appended."""
        p = self._plan()[i]
        base = self._kernel_table(i)
        codes = values[f"_v{i}"].cast(pl.Int64).to_numpy()
        rare = f"_r{i}"
        rows = np.flatnonzero(values[rare].fill_null(False).to_numpy()) if rare in values.columns \
            else np.zeros(0, dtype=np.int64)
        if len(rows) == 0:
            return linewriter.KernelColumn(linewriter.TEXT, codes, base)
        assert p.fallback is not None
        texts = frame.select(sorted(set(p.fallback.meta.root_names())))[rows].select(p.fallback).to_series()
        extra = linewriter.table(texts)
        codes = codes.copy()
        codes[rows] = len(base) + np.arange(len(rows), dtype=np.int64)
        return linewriter.KernelColumn(linewriter.TEXT, codes, linewriter.join_tables(base, extra))

    def _kernel_table(self, i: int) -> linewriter.Table:
        key = (i, "kernel")
        if key not in self._kernel_tables:
            self._kernel_tables[key] = linewriter.table(self._table(i, False))
        return self._kernel_tables[key]

    def _kernel_address(self, frame: pl.DataFrame, col: Column) -> linewriter.KernelColumn:
        """IPv4 addresses as numbers (the kernel writes them); IPv6, MAC and 802.11 texts as
        `_address_series` makes them, for their rows only."""
        o = self.options
        side = col.field.name[0]
        at = frame["_at"].to_numpy()
        lo = frame[f"{side}addr_lo"].to_numpy()
        values = (lo & 0xFFFFFFFF).astype(np.int64)
        mar = frame["_mar"].to_numpy()
        v6 = (at == ADDR_IPV6) & ~mar
        other = np.flatnonzero(np.isin(at, (ADDR_ETHER, ADDR_RARP, ADDR_WLAN)) | mar)
        tab = linewriter.BLANK
        if v6.any():  # IPv6 texts once per distinct address
            rows = np.flatnonzero(v6)
            hi = frame[f"{side}addr_hi"].to_numpy()[rows]
            first, inverse = distinct_pairs(hi, lo[rows])
            texts = ipv6_series(pl.Series(hi[first]), pl.Series(lo[rows][first]))
            values[rows] = NULL_VALUE - len(tab) - inverse
            tab = linewriter.join_tables(tab, linewriter.table(texts))
        if len(other):  # MACs, 802.11 keys and MARs: rare, row by row
            texts = _address_series(frame[other], side, _char_delimited(o) and o.nflag < 2)
            values, tab = linewriter.with_texts(values, other, tab, texts)
        return linewriter.KernelColumn(linewriter.IPV4, values, tab)

    def _delimited(self, cells: pl.DataFrame) -> pl.Series:
        o = self.options
        cols = o.columns
        # ra's space-delimited form (-c ' ', and -c '' which also joins addr.port): Flgs keeps
        # its width, some blank fields print blanks, and lines end at their last non-blank.
        space = o.delimiter in (" ", "")
        pieces: list[pl.Expr] = []
        for i, col in enumerate(cols):
            name = col.field.name
            text = c(f"t{i}")
            if name == "flgs" and not space:
                text = text + " "
            elif name in ("suser", "duser") or (name in ("tcpopt", "dir") and not space):
                # ra trims trailing blanks of these in delimited output ("  <? " -> "  <?").
                text = text.str.strip_chars_end(" ")
            if space and name in SPACE_BLANKS:
                blank = pl.lit(" " * SPACE_BLANKS[name])
                if name in ("sport", "dport"):  # one blank where the key has ports
                    blank = pl.when(c("_ports")).then(pl.lit(" ")).otherwise(blank)
                text = pl.when(text == "").then(blank).otherwise(text)
            if i > 0:
                sep = pl.lit(o.delimiter or " ")
                if o.delimiter == "" and _port_after_address(cols, i):
                    sep = pl.when(c(f"t{i}") == "").then(sep).otherwise(pl.lit("."))
                pieces.append(sep)
            pieces.append(text)
        lines = cells.select(pl.concat_str(pieces))[:, 0]
        return lines.str.strip_chars_end(" ") if space else lines

    def _fixed(self, cells: pl.DataFrame) -> pl.Series:
        cols = self.options.columns
        pieces: list[pl.Expr] = []
        for i in range(len(cols)):
            t = c(f"t{i}")
            if i > 0:
                joined = _port_after_address(cols, i)
                # addr.port, unless the port is blank (left-aligned, so blank = leading space)
                sep = (pl.when(t.str.starts_with(" ") | (t == "") | c("_mar")).then(pl.lit(" "))
                       .otherwise(pl.lit(".")) if joined else pl.lit(" "))
                pieces.append(sep)
            # ra ends lines at their last non-blank: trimming the last column is far cheaper
            # than trimming whole lines, which is left for lines that still end in a blank
            pieces.append(t.str.strip_chars_end(" ") if i == len(cols) - 1 else t)
        lines = cells.select(pl.concat_str(pieces))[:, 0]
        if lines.str.ends_with(" ").any():
            lines = lines.str.strip_chars_end(" ")
        return lines

    def _json(self, cells: pl.DataFrame) -> pl.Series:
        items = []
        for n, col in enumerate(self.options.columns):
            key = json.dumps(col.field.name)
            value = c(f"t{n}").str.strip_chars(" ")
            numeric = col.field.fmt in (FMT_INT, FMT_FLOAT)
            if numeric:
                rendered = pl.when(value == "").then(pl.lit("null")).otherwise(value)
            else:
                escaped = value.str.replace_all("\\", "\\\\", literal=True).str.replace_all(
                    '"', '\\"', literal=True)
                rendered = pl.concat_str([pl.lit('"'), escaped, pl.lit('"')])
            prefix = ("{" if n == 0 else ",") + key + ":"
            items.append(pl.concat_str([pl.lit(prefix), rendered]))
        items.append(pl.lit("}"))
        return cells.select(pl.concat_str(items))[:, 0]

    def render(self, batch: pl.DataFrame) -> str:
        """Header lines (per -L) and one line per record, each ending in a newline."""
        compiled = self._compiled_lines(batch)
        if compiled is not None:
            data, count = compiled
            return self._headers(count) + bytes(data).decode() if count else ""
        lines = self.lines(batch)
        if lines.len() == 0:
            return ""
        return self._headers(lines.len()) + lines.str.join("\n").item() + "\n" if self._plain() \
            else self._paginate(lines)

    def write(self, batch: pl.DataFrame, out: BinaryIO) -> None:
        """What `render` returns, written to a binary stream in one native write (no Python str)."""
        compiled = self._compiled_lines(batch)
        if compiled is not None:
            data, count = compiled
            if count:
                head = self._headers(count)
                if head:
                    out.write(head.encode())
                out.write(data)
            return
        lines = self.lines(batch)
        if lines.len() == 0:
            return
        if not self._plain():
            out.write(self._paginate(lines).encode())
            return
        head = self._headers(lines.len())
        if head:
            out.write(head.encode())
        out.flush()  # polars writes after what the stream holds
        try:
            lines.to_frame("line").write_csv(out, include_header=False, quote_style="never")
        except OSError as err:
            if "os error 32" in str(err):  # EPIPE, as polars reports it
                raise BrokenPipeError(32, "Broken pipe") from None
            raise

    def _plain(self) -> bool:
        """True when no header falls inside a batch (at most one, before its first line)."""
        o = self.options
        every = o.header if o.header is not None else 0
        return o.json or every <= 0

    def _headers(self, count: int) -> str:
        """The header before `count` lines (none for JSON, -L -1, or after the first batch)."""
        o = self.options
        every = o.header if o.header is not None else 0
        first = self.lines_printed == 0
        self.lines_printed += count
        return self.header() if every == 0 and first and not o.json else ""

    def _paginate(self, lines: pl.Series) -> str:
        """-L N: a header every N lines, counted across batches."""
        every = self.options.header or 0
        header = self.header()
        out: list[str] = []
        body = lines.to_list()
        start = 0
        while start < len(body):
            count = self.lines_printed + start
            room = every - (count % every)
            if count % every == 0:
                out.append(header)
            out.append("\n".join(body[start:start + room]) + "\n")
            start += room
        self.lines_printed += len(body)
        return "".join(out)


def format_batch(batch: pl.DataFrame, options: PrintOptions | None = None) -> str:
    """Print one batch as ra would (header included)."""
    return Printer(options or PrintOptions()).render(batch)


_ = (math, FMT_TEXT)
