"""ra's default lines from numpy columns, without polars: `ra -r FILE [-n] [-u] [-p N]`.

Printing the default fields of every record is ra's most common use, and on a large file the
polars path pays for itself poorly: importing polars alone is ~0.25 s, and each batch costs a
select of when/then chains (Flgs, State) before the compiled line writer runs.  Here the line
writer's columns (records/linewriter.py) are computed with numpy straight from the reader's
columns (RecordReader.feed_columns): the rules of records.derive and of the printer's coded
columns, over the tables of records.naming.

A batch holding a record this path does not print (Ethernet, RARP or 802.11 keys, flow subtype
3, a correlation DSR, a time past what localtime takes) is left to records.printer (`lines`
returns None), so the output stays the same; tests/test_numpy_lines.py compares both paths on
every sample file.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from argusflow.records import linewriter as lw
from argusflow.records import naming as nm
from argusflow.records.schema import (
    ADDR_ARP,
    ADDR_IPV4,
    ADDR_IPV6,
    DSR_BITS,
    NET_ESP,
    NET_RTP,
    NET_TCP_INIT,
    NET_TCP_PERF,
    NET_TCP_STATUS,
    RTYPE_MAR,
    RTYPE_NETFLOW,
)

Cols = Mapping[str, np.ndarray]

# What the lines read (RecordReader.feed_columns decodes only these).
DECODE = frozenset("""
    rtype cause dsrs flow_qual flow_subtype proto saddr_hi saddr_lo daddr_hi daddr_lo sport dport
    smask dmask sstart dstart spkts dpkts sbytes dbytes tcp_status net_subtype net_qual time_qual
    sencaps dencaps mac_qual icmpmap_qual icmpmap_type icmpmap_code esp_lostseq attr_qual sipopts
    dipopts stcp_retrans stcp_seq stcp_seqbase stcp_ackbytes stcp_bytes dtcp_retrans dtcp_seq
    dtcp_seqbase dtcp_ackbytes dtcp_bytes""".split())

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
        self._state_code = {text: i for i, text in reversed(list(enumerate(nm.STATE_TEXTS)))}
        self._has_name: dict[str, np.ndarray] = {}
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
        made = {"stime": times, "flgs": lw.KernelColumn(lw.CHARS7, flgs_value(r), lw.BLANK, param=9),
                "proto": coded(self._proto_key(r), self._proto_text),
                "saddr": self._address(r, "s"), "daddr": self._address(r, "d"),
                "sport": self._port(r, "s"), "dport": self._port(r, "d"),
                "dir": lw.KernelColumn(lw.TEXT, dir_code(r), self._dirs),
                "pkts": lw.KernelColumn(lw.INT, (r.c["spkts"] + r.c["dpkts"]).astype(np.int64), lw.BLANK),
                "bytes": lw.KernelColumn(lw.INT, (r.c["sbytes"] + r.c["dbytes"]).astype(np.int64), lw.BLANK),
                "state": lw.KernelColumn(lw.TEXT, self._state(r), self._states)}
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
        rows = np.flatnonzero(r.at == ADDR_IPV6)
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

    _RTP, _ARP = 1 << 20, 1 << 21

    def _proto_key(self, r: Rows) -> np.ndarray:
        proto = r.proto.astype(np.int64)
        if self.options.nflag != 2:  # ra names UDP flows carrying an RTP object "rtp"
            rtp = (r.proto == nm.IPPROTO_UDP) & r.has("net") & (r.c["net_subtype"] == NET_RTP)
            proto = np.where(rtp, self._RTP, proto)
        return np.where(r.at == ADDR_ARP, self._ARP, proto)

    def _proto_text(self, key: int) -> str:
        numeric = self.options.nflag == 2
        if key == self._ARP:
            return "2054" if numeric else "arp"
        if key == self._RTP:
            return "rtp"
        return str(key) if numeric else nm.protocols().get(key, str(key))

    # port kinds
    _BLANK, _NUMBER, _TCP, _UDP, _HEX4, _HEX8, _LEHEX = range(7)

    def _port(self, r: Rows, side: str) -> lw.KernelColumn:
        """Numbers are written by the kernel (INT); names, ICMP and ESP texts are entries of a
        table made once per distinct text."""
        kind, value = self._port_kind(r, side)
        named = np.zeros(len(kind), dtype=bool)
        for k, proto in ((self._TCP, "tcp"), (self._UDP, "udp")):
            rows = kind == k
            if rows.any():
                named[rows] = self._named(proto)[value[rows] & 0xFFFF]
        kind = np.where(((kind == self._TCP) | (kind == self._UDP)) & ~named, self._NUMBER, kind)
        values = np.where(kind == self._BLANK, lw.NULL, value)
        rows = np.flatnonzero((kind != self._BLANK) & (kind != self._NUMBER))
        if not len(rows):
            return lw.KernelColumn(lw.INT, values, lw.BLANK)
        uniq, inverse = distinct(kind[rows] << 32 | value[rows])
        texts = [self._port_text(key) for key in uniq.tolist()]
        values[rows] = lw.NULL - 1 - inverse
        return lw.KernelColumn(lw.INT, values, lw.join_tables(lw.BLANK, lw.table(texts)))

    def _named(self, proto: str) -> np.ndarray:
        """Which ports /etc/services names for `proto`."""
        if proto not in self._has_name:
            names = np.zeros(1 << 16, dtype=bool)
            names[[p for p in nm.services(proto) if p < 1 << 16]] = True
            self._has_name[proto] = names
        return self._has_name[proto]

    def _port_kind(self, r: Rows, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Each record's port kind and the value its text shows (printer._port_text)."""
        sport, dport = r.c["sport"].astype(np.int64), r.c["dport"].astype(np.int64)
        port = sport if side == "s" else dport
        numeric = self.options.nflag in (1, 2)
        if numeric:
            tcp_udp = np.full(len(port), self._NUMBER)
        else:
            by_proto = np.where(r.proto == nm.IPPROTO_TCP, self._TCP, self._UDP)
            tcp_udp = np.where(port == 0, self._BLANK, by_proto)
        # the reader's REVERSE undo may have moved ICMPv6 type/code into dport
        key6 = np.where(sport == 0, dport, sport)
        choices = [r.tcp | (r.ip & (r.proto == nm.IPPROTO_UDP)), r.icmp4, r.icmp6]
        kinds = [tcp_udp, self._HEX4, self._NUMBER if numeric else self._HEX4]
        values = [port, ((sport % 256) * 256 + sport // 256) if side == "s" else dport,
                  key6 // 256 if side == "s" else key6 & 0xFF]
        if side == "d":
            # ESP: the SPI; of an IPv6 key where an IPv4 key has it (key bytes 12-15)
            v6 = r.at == ADDR_IPV6
            choices.append(r.ip & (r.proto == nm.IPPROTO_ESP))
            kinds.append(np.where(v6, self._LEHEX, self._HEX8))
            values.append(np.where(v6, (r.c["saddr_lo"] & 0xFFFFFFFF).astype(np.int64),
                                   0x20200000 + r.c["smask"].astype(np.int64) * 256 + r.c["dmask"]))
        return np.select(choices, kinds, self._BLANK), np.select(choices, values, 0)

    def _port_text(self, key: int) -> str:
        kind, v = key >> 32, key & 0xFFFFFFFF
        if kind in (self._TCP, self._UDP):
            return nm.services("tcp" if kind == self._TCP else "udp")[v]
        if kind == self._HEX4:
            return f"0x{v >> 8 & 0xFF:02x}{v & 0xFF:02x}"
        if kind == self._HEX8:
            return f"0x{v:08x}"
        return "0x" + "".join(f"{v >> s & 0xFF:02x}" for s in (0, 8, 16, 24))

    def _state(self, r: Rows) -> np.ndarray:
        """derive.state_code for flow records."""
        k = self._state_code
        st, cause = r.c["tcp_status"], r.c["cause"]
        sp, dp = r.c["spkts"] > 0, r.c["dpkts"] > 0
        tcp = np.select([st == 0, (st & (nm.SRC_RESET | nm.DST_RESET)) != 0,
                         (st & (nm.FIN | nm.FIN_ACK)) != 0, (st & nm.NORMAL_CLOSE) != 0,
                         (cause & 0x40) != 0, (st & nm.CON_ESTABLISHED) != 0,
                         (st & nm.SAW_SYN_SENT) != 0, (st & nm.SAW_SYN) != 0],
                        [np.where(sp & dp, k["CON"], k["INT"]), k["RST"], k["FIN"], k["CLO"], k["TIM"],
                         k["CON"], k["ACC"], k["REQ"]], k["CON"])
        start_like = ((cause & 0x10) != 0) | r.is_arp
        other = np.select([sp & dp, sp], [k["CON"], np.where(start_like, k["INT"], k["REQ"])], k["RSP"])
        return np.select([cause == 0x80, r.tcp, r.icmp4, r.icmp6],
                         [k["ERR"], tcp, self._icmp_state(r), self._icmp6_state(r)], other)

    def _icmp_state(self, r: Rows) -> np.ndarray:
        k = self._state_code
        mapped = r.icmp_mapped
        sport = r.c["sport"].astype(np.int64)
        itype = np.where(mapped, r.c["icmpmap_type"], sport // 256)
        icode = np.where(mapped, r.c["icmpmap_code"], sport % 256)
        unreach = lookup(k, dict(enumerate(nm._UNREACH)), "UR")[np.clip(icode, 0, 255)]
        named = lookup(k, nm._ICMP_STATES, "UNK")[np.clip(itype, 0, 255)]
        return np.select([itype == 3, itype >= 46], [unreach, k["UNK"]], named)

    def _icmp6_state(self, r: Rows) -> np.ndarray:
        k = self._state_code
        sport, dport = r.c["sport"].astype(np.int64), r.c["dport"].astype(np.int64)
        key = np.where(sport == 0, dport, sport)
        itype, icode = key // 256, key % 256
        unreach = lookup(k, dict(enumerate(nm._ICMP6_UNREACH)), "UNK")[np.clip(icode, 0, 255)]
        param = lookup(k, {0: "PPH", 1: "PPNH", 2: "PPO"}, "UNK")[np.clip(icode, 0, 255)]
        named = lookup(k, nm._ICMP6_STATES, "UNK")[np.clip(itype, 0, 255)]
        return np.select([itype == 1, itype == 3, itype == 4],
                         [unreach, np.where(icode == 0, k["TXT"], k["TXR"]), param], named)


def lookup(codes: dict[str, int], table: dict[int, str], default: str) -> np.ndarray:
    """The code of table[key] (default when absent) for keys 0-255."""
    return np.array([codes[table.get(key, default)] for key in range(256)], dtype=np.int64)


class Rows:
    """A batch of flow records and the tests derive names (is_ip, has(dsr) ...), in numpy,
    each computed once per batch (several columns ask for the same)."""

    def __init__(self, cols: Cols) -> None:
        self.c = cols
        self.at = cols["flow_qual"] & 0x1F
        self.proto = cols["proto"]
        self.v4, self.v6 = self.at == ADDR_IPV4, self.at == ADDR_IPV6
        self.ip = (self.v4 | self.v6) & (cols["flow_subtype"] != 3)

    def supported(self) -> bool:
        """IPv4, IPv6 and ARP keys only, no flow subtype 3, no correlation DSR."""
        return bool((self.v4 | self.v6 | self.is_arp).all()
                    and not (self.c["flow_subtype"] == 3).any() and not self.has("cor").any())

    def has(self, dsr: str) -> np.ndarray:
        return (self.c["dsrs"] & DSR_BITS[dsr]) != 0

    @functools.cached_property
    def is_arp(self) -> np.ndarray:
        return self.at == ADDR_ARP  # RARP keys are left to the polars path

    @functools.cached_property
    def icmp4(self) -> np.ndarray:
        return self.v4 & (self.proto == nm.IPPROTO_ICMP)

    @functools.cached_property
    def icmp6(self) -> np.ndarray:
        return self.v6 & (self.proto == nm.IPPROTO_ICMPV6)

    @functools.cached_property
    def tcp(self) -> np.ndarray:
        return self.ip & (self.proto == nm.IPPROTO_TCP)

    @functools.cached_property
    def tcp_net(self) -> np.ndarray:
        """A TCP flow carrying a TCP network object."""
        subtype = self.c["net_subtype"]
        tcp_object = (subtype == NET_TCP_INIT) | (subtype == NET_TCP_STATUS) | (subtype == NET_TCP_PERF)
        return self.tcp & self.has("net") & tcp_object

    @functools.cached_property
    def icmp_mapped(self) -> np.ndarray:
        return self.has("icmpmap") & ((self.c["icmpmap_qual"] & 0x07) != 0)

    def stime(self) -> np.ndarray:
        s, d = self.c["sstart"], self.c["dstart"]
        return np.where(s == 0, d, np.where(d == 0, s, np.minimum(s, d))).astype(np.int64)


# --- Flgs (derive.flgs_codes) ---------------------------------------------------------------------

def _ch(letter: str) -> int:
    return ord(letter)


def _sd(src: np.ndarray, dst: np.ndarray, s: str, d: str, both: str) -> np.ndarray:
    return np.select([src & dst, src, dst], [_ch(both), _ch(s), _ch(d)], _ch(" "))


def flgs_value(r: Rows) -> np.ndarray:
    """The nine Flgs characters, 7 bits each (the line writer's CHARS7)."""
    c = r.c
    first = np.select([c["rtype"] == RTYPE_NETFLOW, r.has("time") & ((c["time_qual"] & 0x01) != 0)],
                      [_ch("N"), _ch("T")], _ch(" "))
    parts = [first, _flag_encaps(r), _flag_icmpmap(r), _flag_loss(r), _flag_window_or_silence(r),
             _flag_tcp(r, nm.SRC_CONGESTED, nm.DST_CONGESTED, "x", "t", "E"), _flag_frag(r),
             _flag_ipopts(r)]  # the ninth (correlation) is blank: batches with one go to polars
    value = np.full(len(first), _ch(" ") << 56, dtype=np.int64)
    for k, part in enumerate(parts):
        value |= np.asarray(part, dtype=np.int64) << (7 * k)
    return value


def _flag_encaps(r: Rows) -> np.ndarray:
    c = r.c
    enc = (c["sencaps"] | c["dencaps"]).astype(np.uint32)
    single = np.full(len(enc), _ch(" "), dtype=np.int64)
    for mask, letter in reversed(nm._ENCAPS_LETTERS):  # the first listed wins, as derive's chain
        single[enc == mask] = _ch(letter)
    from_enc = np.where(np.bitwise_count(enc) > 1, _ch("*"), single)
    no_enc = np.select([r.has("vlan"), r.has("mac"), r.has("mpls")], [_ch("v"), _ch("e"), _ch("m")], _ch(" "))
    base = np.where(r.has("encaps"), from_enc, no_enc)
    return np.where(r.has("mac") & ((c["mac_qual"] & 0x03) != 0), _ch("M"), base)


def _flag_icmpmap(r: Rows) -> np.ndarray:
    t = r.c["icmpmap_type"]
    letter = np.select([t == 3, t == 5, t == 11], [_ch("U"), _ch("R"), _ch("T")], _ch("I"))
    return np.where(r.icmp_mapped, letter, _ch(" "))


def _gap(r: Rows, side: str) -> np.ndarray:
    c, p = r.c, f"{side}tcp_"
    ok = (c[p + "retrans"] == 0) & (c[p + "seq"] != 0) & (c[p + "seqbase"] != c[p + "ackbytes"])
    gap = (c[p + "seq"].astype(np.int64) - c[p + "seqbase"].astype(np.int64)
           - c[p + "bytes"].astype(np.int64) - 1)
    return ok & (gap > 0)


def _flag_loss(r: Rows) -> np.ndarray:
    c = r.c
    st = c["tcp_status"]
    sre, dre = (st & nm.SRC_RETRANS) != 0, (st & nm.DST_RETRANS) != 0
    gaps = _gap(r, "s") | _gap(r, "d")
    ooo = _sd((st & nm.SRC_OUTOFORDER) != 0, (st & nm.DST_OUTOFORDER) != 0, "i", "r", "&")
    perf = c["net_subtype"] == NET_TCP_PERF
    # ra 3.0.8 shows a destination-only retransmission of an IPv6 flow as blank
    v6 = r.at == ADDR_IPV6
    tcp = np.select([sre | (dre & ~v6), ~r.ip | v6, perf & gaps],
                    [_sd(sre, dre, "s", "d", "*"), _ch(" "), _ch("g")], ooo)
    esp = (r.proto == nm.IPPROTO_ESP) & (c["net_subtype"] == NET_ESP) & (c["esp_lostseq"] != 0)
    return np.select([r.tcp_net, r.ip & esp], [tcp, _ch("s")], _ch(" "))


def _flag_tcp(r: Rows, smask: int, dmask: int, s: str, d: str, both: str) -> np.ndarray:
    st = r.c["tcp_status"]
    letters = _sd((st & smask) != 0, (st & dmask) != 0, s, d, both)
    return np.where(r.tcp_net & (r.at == ADDR_IPV4), letters, _ch(" "))


def _flag_window_or_silence(r: Rows) -> np.ndarray:
    """TCP window shut (S D @), or RTP silence suppression (s d *: printer.DEVIATIONS)."""
    qual = r.c["net_qual"]
    silence = _sd((qual & nm.RTP_SRC_SILENCE) != 0, (qual & nm.RTP_DST_SILENCE) != 0, "s", "d", "*")
    rtp = r.has("net") & (r.c["net_subtype"] == NET_RTP) & (r.proto == nm.IPPROTO_UDP)
    return np.where(rtp, silence, _flag_tcp(r, nm.SRC_WINDOW_SHUT, nm.DST_WINDOW_SHUT, "S", "D", "@"))


def _flag_frag(r: Rows) -> np.ndarray:
    c = r.c
    return np.select([r.has("attr") & ((c["attr_qual"] & 0x30) != 0),
                      r.has("net") & (c["net_subtype"] == 0x45), (c["flow_qual"] & 0x80) != 0],
                     [_ch("F"), _ch("f"), _ch("F")], _ch(" "))


_IPOPT_CODES = np.array([ord(nm._IPOPT_LETTERS.get(k, "U")) for k in range(256)], dtype=np.int64)


def _flag_ipopts(r: Rows) -> np.ndarray:
    c = r.c
    qual = c["attr_qual"]
    opts = (np.where((qual & 0x04) != 0, c["sipopts"], 0) | np.where((qual & 0x08) != 0, c["dipopts"], 0))
    opts = opts.astype(np.uint32)
    single = _IPOPT_CODES[np.minimum(opts, 255)]
    return np.select([~r.has("attr") | (opts == 0), np.bitwise_count(opts) > 1], [_ch(" "), _ch("O")], single)


# --- Dir (derive.dir_code) ---------------------------------------------------------------------------

def dir_code(r: Rows) -> np.ndarray:
    sp, dp = r.c["spkts"] > 0, r.c["dpkts"] > 0
    known = (r.c["tcp_status"] & (nm.SAW_SYN | nm.SAW_SYN_SENT)) != 0
    tcp_net = r.tcp_net
    middle = np.select([tcp_net & ~known, sp | dp], [4, 2], 0)
    plain = 3 + np.where(dp, 6, 0) + middle + np.where(sp, 1, 0)
    return np.select([~r.has("metric"), r.is_arp, tcp_net & known], [0, 1, 2], plain)


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
    among the distinct pairs."""
    order = np.lexsort((lo, hi))
    hs, ls = hi[order], lo[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (hs[1:] != hs[:-1]) | (ls[1:] != ls[:-1])
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse
