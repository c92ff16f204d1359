"""Splitting a record stream into files: the transform behind rasplit and rastream (3.0.8).

Modes (`-M`): `count N` (default 10000), `size N[bkmg]`, `time N[smhdwMy]`, `flow "filter"`.
Everything works on whole batches: a split assigns every row a *file key* (an output name), and
the writer groups rows by key, keeping their order.  What the real rasplit does, measured:

* count: records are numbered from 1 across the run (MARs included, except the first input's
  START MAR, which only becomes each file's header); record n opens a new file when
  n % N == 0, so the first file holds N-1 records.  Suffixes `aa`, `ab`, ... (`-a` letters).
* size: a new file when the size of the current file *as stat() sees it* plus the record's
  length exceeds N.  The real tool flushes the START MAR at once and writes the records
  through a 4 KiB stdio buffer, so stat() lags behind: we emulate that (measured).
* flow: a record that matches the filter starts a new file (the one before it keeps what came
  earlier; no file is made for an empty start).
* time: file bins aligned on the epoch in local time (s m h d), on Sunday (w), on the first of
  the month (M) or year (y); records that span a bin boundary are cut into one piece per bin:
  packets are shared by the time each piece covers (cumulative floor, at least one packet per
  piece while more than one is left for the pieces after it), bytes follow the packets at the
  record's mean size, and the last piece takes what is left.  A direction with a single packet
  in a piece has no duration: the piece's time collapses to a point.
  Retransmissions follow the packets (cumulative share, rounded) and a piece left without any
  loses its direction's retransmission status bit.
* MARs: the first input START MAR heads every file (a copy); later MARs are records like the
  others (time mode files them by their `now` time, as the real tool does).
* `$field` in a name is the field as ra prints it (trimmed); `%` codes are strftime of the bin
  start (time mode).  With `$`/`%` in a count-mode name no suffix is added and the count does
  not split (the real tool crashes there; we write one file per name).  MARs stay out of `$field`
  files (the real tool aborts on the first one).

Known differences from the real tool (measured 2026-11-28 over the 54 corpus captures the real
argus makes flows from, 5 modes each: 252 of 270 runs identical; 15 of the 18 others come from
records.writer, not from splitting).  Splitting's own:
* records that claim to span more than MAX_PIECES bins are filed whole; the real tool keeps
  pieces only where its packets land (suricata bug-1450-04: 3+3 packets over 21 years at 1 m
  bins give pieces at the start, at the exact middle of the record and at its end, which looks
  like packets spread evenly over the record's time);
* the real tool's byte shares of cut records are sometimes one or two bytes off the record's
  mean size (a float rounding we could not reproduce; totals are kept; ndpi__wechat at 1 s);
* with a `$field` template the real tool once wrote a file's first two records after the later
  ones (zeek__pppoe, `$proto/argus.%H%M`; same records, order only).
"""

from __future__ import annotations

import calendar
import re
import time as _time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from argusflow.errors import UsageError
from argusflow.records import derive
from argusflow.records.schema import RTYPE_MAR

MODES = ("count", "size", "time", "flow")
TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SIZE_UNITS = {"b": 10**9, "g": 10**9, "m": 10**6, "k": 10**3}  # 3.0.8: 'b' means billion
STDIO_BLOCK = 4096
DEFAULT_COUNT = 10000
DEFAULT_TIME_SUFFIX = "%Y.%m.%d.%H.%M.%S"
MAX_PIECES = 100_000  # bins one record may be cut into


@dataclass(frozen=True)
class SplitMode:
    kind: str  # count | size | time | flow
    value: int = DEFAULT_COUNT  # records, bytes, or seconds (time; months/years use `unit`)
    unit: str = ""  # time unit letter
    filter_text: str = ""

    @property
    def seconds(self) -> int:
        return self.value * TIME_UNITS.get(self.unit, 1)


def parse_mode(words: list[str]) -> SplitMode:
    """`-M` words: `time 10m`, `count 100`, `size 10k`, `flow "tcp and syn"` (or none)."""
    if not words:
        return SplitMode("count")
    kind = next((m for m in MODES if words[0].lower().startswith(m[:3])), None)
    if kind is None:
        raise UsageError(f"-M {words[0]}: expected count, size, time or flow")
    if len(words) < 2:
        raise UsageError(f"-M {kind} needs a value")
    arg = words[1]
    if kind == "flow":
        return SplitMode("flow", 0, "", " ".join(words[1:]))
    match = re.fullmatch(r"(\d+)([A-Za-z]?)", arg)
    if not match:
        raise UsageError(f"-M {kind} {arg}: expected a number with an optional unit")
    number, unit = int(match.group(1)), match.group(2)
    if kind == "time":
        unit = unit or "s"
        if unit not in TIME_UNITS and unit not in ("M", "y"):
            raise UsageError(f"-M time {arg}: unit must be one of s m h d w M y")
        if number <= 0:
            raise UsageError(f"-M time {arg}: the period must be at least 1")
        return SplitMode("time", number, unit)
    if kind == "size":
        if unit and unit.lower() not in SIZE_UNITS:
            raise UsageError(f"-M size {arg}: unit must be one of k m g")
        return SplitMode("size", number * SIZE_UNITS.get(unit.lower(), 1) if unit else number)
    if number <= 0:
        raise UsageError(f"-M count {arg}: the count must be at least 1")
    return SplitMode("count", number)


# --- names -----------------------------------------------------------------------------------------

def name_template(prefix: str | None, mode: SplitMode, suffix_len: int = 2) -> str:
    """The -w name with the default suffix the real tools add for this mode."""
    name = prefix if prefix else "x"
    templated = "%" in name or "$" in name
    if mode.kind in ("size", "flow") or (mode.kind == "count" and not templated):
        name += "a" * suffix_len
    if mode.kind == "time" and "%" not in name:
        name = (name if name.endswith(".") else name + ".") + DEFAULT_TIME_SUFFIX
    return name


def has_letter_suffix(template: str, mode: SplitMode) -> bool:
    return mode.kind in ("size", "flow") or (mode.kind == "count" and "%" not in template
                                             and "$" not in template)


def letter_suffix(index: int, length: int) -> str:
    """`aa` ... `yz`, then `zaa` ... `zyz`, `zzaa` ...: the real tool appends a letter as soon
    as the first suffix letter reaches 'z', and keeps counting in the last `length` letters."""
    block = 25 * 26 ** (length - 1)
    prefix, n = divmod(index, block)
    letters = []
    for _ in range(length):
        letters.append(chr(ord("a") + n % 26))
        n //= 26
    return "z" * prefix + "".join(reversed(letters))


FIELD_RE = re.compile(r"\$([a-zA-Z][a-zA-Z0-9]*)")


def template_fields(template: str) -> list[str]:
    """Printable field names a `$field` template uses (longest known name that prefixes it)."""
    from argusflow.records.fields import FIELDS

    names = []
    for match in FIELD_RE.finditer(template):
        word = match.group(1)
        known = [n for n in FIELDS if word.startswith(n)]
        if not known:
            raise UsageError(f"-w {template}: ${word} is not a printable field")
        names.append(max(known, key=len))
    return names


def field_texts(batch: pl.DataFrame, names: list[str], nflag: int = 0) -> list[pl.Series]:
    """Each field as ra prints it in its default width ('*' when cut), spaces trimmed."""
    from argusflow.records.fields import FIELDS
    from argusflow.records.printer import Column, Printer, PrintOptions

    out = []
    for name in names:
        f = FIELDS[name]
        opts = PrintOptions(columns=(Column(f, f.width),), nflag=nflag, print_man=True)
        printer = Printer(opts)
        lines = printer.lines(batch) if batch.height else pl.Series([], dtype=pl.String)
        out.append(lines.str.strip_chars(" "))
    return out


def fill_fields(template: str, batch: pl.DataFrame, nflag: int = 0) -> pl.Series:
    """The template with every `$field` replaced per record (strftime codes left alone)."""
    names = template_fields(template)
    if not names:
        return pl.Series([template] * batch.height, dtype=pl.String)
    texts = field_texts(batch, names, nflag)
    parts: list[pl.Series | str] = []
    last = 0
    for match, name, text in zip(FIELD_RE.finditer(template), names, texts, strict=True):
        parts.append(template[last:match.start()])
        parts.append(text)
        last = match.start(1) + len(name)
    parts.append(template[last:])
    frame = pl.DataFrame({f"p{i}": (p if isinstance(p, pl.Series) else pl.Series([p] * batch.height))
                          for i, p in enumerate(parts)})
    return frame.select(pl.concat_str(pl.all()))[:, 0]


def strftime_names(names: pl.Series, bin_start: np.ndarray, utc: bool) -> pl.Series:
    """strftime each name with its bin start (one call per distinct (name, bin) pair)."""
    frame = pl.DataFrame({"name": names, "t": bin_start})
    unique = frame.unique(maintain_order=True)
    to_tm = _time.gmtime if utc else _time.localtime
    done = [_time.strftime(n, to_tm(int(t))) if "%" in n else n
            for n, t in unique.iter_rows()]
    mapping = unique.with_columns(out=pl.Series(done, dtype=pl.String))
    return frame.join(mapping, on=["name", "t"], how="left", maintain_order="left")["out"]


# --- time bins ----------------------------------------------------------------------------------

def _gmtoff(seconds: np.ndarray, utc: bool) -> np.ndarray:
    """Local UTC offset at each time (one localtime() call per distinct hour)."""
    if utc or len(seconds) == 0:
        return np.zeros(len(seconds), dtype=np.int64)
    hours, inverse = np.unique(seconds // 3600, return_inverse=True)
    offsets = np.array([_time.localtime(int(h) * 3600).tm_gmtoff for h in hours], dtype=np.int64)
    return offsets[inverse]


def bin_start(seconds: np.ndarray, mode: SplitMode, utc: bool = False) -> np.ndarray:
    """Start (epoch seconds) of the bin each time falls in."""
    seconds = np.asarray(seconds, dtype=np.int64)
    if mode.unit in ("s", "m", "h", "d"):
        size = mode.seconds
        off = _gmtoff(seconds, utc)
        return (seconds + off) // size * size - off
    return _calendar_starts(seconds, mode, utc)


def bin_end(starts: np.ndarray, mode: SplitMode, utc: bool = False) -> np.ndarray:
    if mode.unit in TIME_UNITS:
        return starts + mode.seconds
    return _calendar_starts(starts, mode, utc, step=1)


def _calendar_starts(seconds: np.ndarray, mode: SplitMode, utc: bool, step: int = 0) -> np.ndarray:
    """Week (Sunday), month and year bins, through the calendar (per distinct day)."""
    days, inverse = np.unique(seconds // 86400, return_inverse=True)
    out = np.empty(len(days), dtype=np.int64)
    to_tm = _time.gmtime if utc else _time.localtime
    for i, day in enumerate(days):
        tm = to_tm(int(day) * 86400 + 43200)
        y, mo, d = tm.tm_year, tm.tm_mon, tm.tm_mday
        if mode.unit == "w":
            wday = (tm.tm_wday + 1) % 7  # Sunday = 0
            start = calendar.timegm((y, mo, d, 0, 0, 0)) - wday * 86400 + step * mode.seconds
        elif mode.unit == "M":
            mo0 = mo - 1 + step
            start = calendar.timegm((y + mo0 // 12, mo0 % 12 + 1, 1, 0, 0, 0))
        else:
            start = calendar.timegm((y + step, 1, 1, 0, 0, 0))
        out[i] = start - (0 if utc else to_tm(start).tm_gmtoff)
    return out[inverse]


# --- cutting records at bin boundaries ------------------------------------------------------------

def record_start_us(batch: pl.DataFrame) -> np.ndarray:
    """The time a record is filed by: its start (flows), `now` (MARs, as ra prints stime)."""
    start = batch.select(derive.stime_us()).to_series().to_numpy()
    is_mar = (batch["rtype"] == RTYPE_MAR).to_numpy()
    if is_mar.any():
        now = [_mar_now(raw) for raw in batch.filter(pl.col("rtype") == RTYPE_MAR)["mar_raw"]]
        start = start.copy()
        start[is_mar] = np.array(now, dtype=np.int64)
    return start


def _mar_now(raw: bytes) -> int:
    if len(raw) < 40:
        return 0
    return int.from_bytes(raw[32:36], "big") * 1_000_000 + int.from_bytes(raw[36:40], "big")


def cut_at_boundaries(batch: pl.DataFrame, mode: SplitMode, utc: bool = False) -> pl.DataFrame:
    """Every flow record that spans bin boundaries becomes one record per bin (see module doc)."""
    flows = (batch["rtype"] != RTYPE_MAR).to_numpy()
    times = batch.select(s0=derive.sstime_us(), s1=derive.sltime_us(), d0=derive.dstime_us(),
                         d1=derive.dltime_us(), t0=derive.stime_us(), t1=derive.ltime_us())
    t0 = times["t0"].to_numpy()
    t1 = times["t1"].to_numpy()
    first_bin = bin_start(t0 // 1_000_000, mode, utc)
    first_end = bin_end(first_bin, mode, utc) * 1_000_000
    spans = flows & (t1 >= first_end) & (t1 > t0)
    # A damaged record can claim to last for years: past MAX_PIECES bins it is filed whole.
    shortest = {"M": 28 * 86400, "y": 365 * 86400}.get(mode.unit, mode.seconds)
    bins = (t1 - first_bin * 1_000_000) // (shortest * 1_000_000) + 1
    spans &= bins <= MAX_PIECES
    if not spans.any():
        return batch
    rows = np.flatnonzero(spans)
    pieces = _pieces(rows, t0, t1, first_bin, mode, utc)
    cut, keep = _cut_rows(batch, times, pieces)
    # Stitch: untouched rows keep their place, a cut row is replaced by its pieces in order.
    # One gather of the wide frame by an index sorted in numpy (a polars sort of the whole
    # frame by a key column cost a third of rasplit's own time).
    whole = np.flatnonzero(~spans)
    owner = np.concatenate([whole, pieces.row[keep]])  # pieces already in order per row
    index = np.concatenate([whole, batch.height + np.arange(cut.height)])
    order = index[np.argsort(owner, kind="stable")]
    return pl.concat([batch, cut], how="vertical")[order]


@dataclass
class Pieces:
    row: np.ndarray  # batch row of each piece
    k: np.ndarray  # index of the piece within its record
    count: np.ndarray  # pieces of that record
    lo: np.ndarray  # bin start (us) of the piece
    hi: np.ndarray  # bin end (us)


def _pieces(rows: np.ndarray, t0: np.ndarray, t1: np.ndarray, first_bin: np.ndarray,
            mode: SplitMode, utc: bool) -> Pieces:
    """The bins each spanning record covers (fixed bins: arithmetic; calendar bins: stepping)."""
    out_row, out_k, out_lo, out_hi = [], [], [], []
    if mode.unit in ("s", "m", "h", "d", "w") and not (mode.unit in ("s", "m", "h", "d")
                                                       and not utc and _has_dst_change(t0, t1)):
        size = mode.seconds * 1_000_000
        lo0 = first_bin[rows] * 1_000_000
        n = (t1[rows] - lo0) // size + 1
        rep = np.repeat(np.arange(len(rows)), n)
        k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        lo = lo0[rep] + k * size
        return Pieces(rows[rep], k, n[rep], lo, lo + size)
    for r in rows:  # calendar bins: months/years (or a DST change) have no fixed length
        lo = int(first_bin[r])
        k = 0
        while True:
            hi = int(bin_end(np.array([lo]), mode, utc)[0])
            out_row.append(r)
            out_k.append(k)
            out_lo.append(lo * 1_000_000)
            out_hi.append(hi * 1_000_000)
            if t1[r] < hi * 1_000_000:
                break
            lo, k = hi, k + 1
    row = np.array(out_row, dtype=np.int64)
    kk = np.array(out_k, dtype=np.int64)
    counts = np.bincount(np.searchsorted(np.unique(row), row))
    return Pieces(row, kk, counts[np.searchsorted(np.unique(row), row)],
                  np.array(out_lo, dtype=np.int64), np.array(out_hi, dtype=np.int64))


def _has_dst_change(t0: np.ndarray, t1: np.ndarray) -> bool:
    if len(t0) == 0:
        return False
    a = _time.localtime(int(t0.min() // 1_000_000)).tm_gmtoff
    b = _time.localtime(int(t1.max() // 1_000_000)).tm_gmtoff
    return a != b


def _share(total: np.ndarray, cum_frac: np.ndarray, last: np.ndarray, first: np.ndarray
           ) -> np.ndarray:
    """Packets per piece: cumulative floor, at least one per piece while more than one is left."""
    floor_cum = np.floor(total * cum_frac).astype(np.int64)
    floor_cum = np.where(last, total, floor_cum)
    out = np.empty_like(floor_cum)
    # The running maximum makes this a scan over each record's pieces (a few per record).
    prev = 0
    for i in range(len(out)):
        if first[i]:
            prev = 0
        bump = min(prev + 1, max(int(total[i]) - 1, 0))
        cum = max(int(floor_cum[i]), bump, prev)
        if last[i]:
            cum = int(total[i])
        out[i] = cum - prev
        prev = cum
    return out


def _cut_rows(batch: pl.DataFrame, times: pl.DataFrame, p: Pieces
              ) -> tuple[pl.DataFrame, np.ndarray]:
    base = batch[p.row]
    first = p.k == 0
    last = p.k == p.count - 1
    cols: dict[str, np.ndarray] = {}
    for side in ("s", "d"):
        start = times[f"{side}0"].to_numpy()[p.row]
        end = times[f"{side}1"].to_numpy()[p.row]
        pkts = base[f"{side}pkts"].to_numpy().astype(np.int64)
        byts = base[f"{side}bytes"].to_numpy().astype(np.int64)
        app = base[f"{side}appbytes"].to_numpy().astype(np.int64)
        span = (end - start).astype(np.float64)
        upto = np.minimum(p.hi, end)
        # A direction with no duration (one packet) lies wholly in the piece that holds its time.
        point = np.where(start < p.hi, 1.0, 0.0)
        frac = np.where(span > 0, (upto - start) / np.where(span > 0, span, 1.0), point)
        frac = np.clip(frac, 0.0, 1.0)
        share = _share(pkts, frac, last, first)
        # The mean size times the share, in integers: as a float product, 7 of 14 packets of
        # 7556 bytes came to 3777.99.. and lost a byte the real tool keeps.
        piece_bytes = _with_remainder(_scaled(byts, share, pkts), byts, p, last)
        piece_app = _with_remainder(_scaled(app, share, pkts), app, p, last)
        lo = np.maximum(start, p.lo)
        hi = np.minimum(end, p.hi)
        cols[f"{side}tcp_retrans"] = _share_retrans(base[f"{side}tcp_retrans"].to_numpy(), share,
                                                    pkts, p)
        cols[f"{side}pkts"] = share
        cols[f"{side}bytes"] = piece_bytes
        cols[f"{side}appbytes"] = piece_app
        cols[f"{side}lo"], cols[f"{side}hi"] = lo, hi
    total = cols["spkts"] + cols["dpkts"]
    for side in ("s", "d"):
        lo, hi, n = cols.pop(f"{side}lo"), cols.pop(f"{side}hi"), cols[f"{side}pkts"]
        end = times[f"{side}1"].to_numpy()[p.row]
        point_end = last & (n == 1)
        point_start = ~point_end & (total == 1)
        lo = np.where(point_end, end, lo)
        hi = np.where(point_end, end, np.where(point_start, lo, hi))
        none = n == 0
        cols[f"{side}start"] = np.where(none, 0, lo)
        cols[f"{side}last"] = np.where(none, 0, hi)
    keep = total > 0
    # A piece without retransmissions of its own loses the direction's retransmission bit.
    status = base["tcp_status"].to_numpy().astype(np.int64)
    for side, bit in (("s", 0x100), ("d", 0x200)):
        gone = (base[f"{side}tcp_retrans"].to_numpy() > 0) & (cols[f"{side}tcp_retrans"] == 0)
        status = np.where(gone, status & ~bit, status)
    out = base.with_columns(
        tcp_status=pl.Series(status).cast(pl.UInt32),
        sstart=pl.Series(cols["sstart"]), slast=pl.Series(cols["slast"]),
        dstart=pl.Series(cols["dstart"]), dlast=pl.Series(cols["dlast"]),
        stcp_retrans=pl.Series(cols["stcp_retrans"]).cast(pl.UInt32),
        dtcp_retrans=pl.Series(cols["dtcp_retrans"]).cast(pl.UInt32),
        **{name: pl.Series(cols[name]).cast(pl.UInt64)
           for name in ("spkts", "dpkts", "sbytes", "dbytes", "sappbytes", "dappbytes")},
    )
    return (out.filter(pl.Series(keep)) if not keep.all() else out), keep


def _scaled(total: np.ndarray, part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """floor(total * part / whole) exactly, without int64 overflow for huge totals."""
    whole = np.maximum(whole, 1)
    quotient, rest = np.divmod(total, whole)
    return quotient * part + rest * part // whole


def _share_retrans(retrans: np.ndarray, share: np.ndarray, pkts: np.ndarray, p: Pieces
                   ) -> np.ndarray:
    """Retransmissions follow the packets: the cumulative share, rounded (as measured)."""
    groups = np.cumsum(p.k == 0) - 1
    cum = np.cumsum(share)
    offsets = np.concatenate([[0], np.bincount(groups, weights=share).cumsum()[:-1]])
    cum_in_record = cum - offsets[groups]
    retrans = retrans.astype(np.int64)
    ratio = np.where(pkts > 0, retrans / np.maximum(pkts, 1), 0.0)
    cum_retrans = np.floor(ratio * cum_in_record + 0.5).astype(np.int64)
    before = np.concatenate([[0], cum_retrans[:-1]])
    before = np.where(p.k == 0, 0, before)
    return np.maximum(cum_retrans - before, 0)


def _with_remainder(values: np.ndarray, totals: np.ndarray, p: Pieces, last: np.ndarray) -> np.ndarray:
    """The last piece of each record takes what the others left."""
    groups = np.cumsum(p.k == 0) - 1
    before = np.bincount(groups, weights=np.where(last, 0, values)).astype(np.int64)
    return np.where(last, totals - before[groups], values)


# --- the splitter --------------------------------------------------------------------------------

@dataclass
class Splitter:
    """Assigns records to output names batch after batch; holds the counters across batches."""

    mode: SplitMode
    template: str
    suffix_len: int = 2
    utc: bool = False
    nflag: int = 0
    flow_filter: pl.Expr | None = None
    first_start_skipped: bool = False
    count: int = 1  # the real tool's record counter (count mode)
    file_index: int = 0  # letter suffix of the current file
    current_size: int = 128  # bytes written to the current file, START MAR included (size mode)
    current_has_records: bool = False
    _fields: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._fields = template_fields(self.template)

    @property
    def lettered(self) -> bool:
        return has_letter_suffix(self.template, self.mode) or (
            self.mode.kind in ("size", "flow"))

    def prepare(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Drop the run's first START MAR (it only heads files) and cut records at bins."""
        if not self.first_start_skipped and batch.height:
            if int(batch["rtype"][0]) == RTYPE_MAR:
                batch = batch.slice(1)
            self.first_start_skipped = True
        if self.mode.kind == "time" and batch.height:
            batch = cut_at_boundaries(batch, self.mode, self.utc)
        return batch

    def names(self, batch: pl.DataFrame, sizes: np.ndarray | None = None) -> pl.Series:
        """The output name of every record of a prepared batch."""
        n = batch.height
        base = fill_fields(self.template, batch, self.nflag) if self._fields \
            else pl.Series([self.template] * n, dtype=pl.String)
        if self.mode.kind == "time":
            starts = bin_start(record_start_us(batch) // 1_000_000, self.mode, self.utc)
            return strftime_names(base, starts, self.utc)
        index = self._file_indexes(batch, sizes)
        if not self.lettered:
            return base
        suffix_len = self.suffix_len
        uniq, inverse = np.unique(index, return_inverse=True)
        suffixes = np.array([letter_suffix(int(i), suffix_len) for i in uniq], dtype=object)[inverse]
        stem = base.str.slice(0, base.str.len_chars() - suffix_len)
        return stem + pl.Series(suffixes.astype(str))

    def _file_indexes(self, batch: pl.DataFrame, sizes: np.ndarray | None) -> np.ndarray:
        n = batch.height
        if self.mode.kind == "count":
            if not self.lettered:
                return np.zeros(n, dtype=np.int64)
            numbers = self.count + np.arange(n)
            self.count += n
            new = (numbers % self.mode.value == 0) if self.mode.value > 1 else np.ones(n, bool)
            index = self.file_index + np.cumsum(new)
            self.file_index = int(index[-1]) if n else self.file_index
            return index
        if self.mode.kind == "flow":
            assert self.flow_filter is not None
            new = batch.select(self.flow_filter.fill_null(False)).to_series().to_numpy()
            new = new & ~(batch["rtype"] == RTYPE_MAR).to_numpy()
            # A match starts a new file, even at the first record (the real tool then never
            # creates the 'aa' file).
            index = self.file_index + np.cumsum(new)
            self.file_index = int(index[-1]) if n else self.file_index
            return index
        assert sizes is not None
        return self._size_indexes(sizes)

    def _size_indexes(self, sizes: np.ndarray) -> np.ndarray:
        """A new file when stat()'s view of the file plus the record would pass the limit."""
        limit = self.mode.value
        out = np.empty(len(sizes), dtype=np.int64)
        i = 0
        fresh = False  # the current file has no record yet: it does not exist for stat()
        while i < len(sizes):
            # The records that fit in the current file, found by one search per output file.
            written = self.current_size + np.cumsum(sizes[i:]) - sizes[i:]  # before each record
            # The header goes out at once, the records through a 4 KiB stdio buffer.
            # A full buffer is only written out when the next record does not fit.
            body = np.maximum(written - self.header_size - 1, 0)
            on_disk = self.header_size + body // STDIO_BLOCK * STDIO_BLOCK
            over = on_disk + sizes[i:] > limit
            if fresh or not self.current_has_records:
                over[0] = False
            self.current_has_records = True
            stop = int(np.argmax(over)) if over.any() else len(sizes) - i
            out[i:i + stop] = self.file_index
            if stop == len(sizes) - i:
                self.current_size = int(written[-1] + sizes[-1]) if len(sizes) else self.current_size
                break
            i += stop
            self.file_index += 1
            self.current_size = self.header_size
            fresh = True
        return out

    header_size: int = 128
