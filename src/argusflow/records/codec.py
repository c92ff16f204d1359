"""Sans-IO reader of Argus V3 records: bytes in, columnar record batches out.

`RecordReader.feed(chunk)` accepts any slice of a file or stream and returns the records that are
complete so far as one polars DataFrame with the schema of `records.schema`; it keeps the rest
for the next call.  Damage stops the reader at the first bad record header: the records before
it are still returned, and `reader.error` holds a `CorruptInput` saying where and what.

Decoding is vectorised: only framing (walking the record and DSR headers, each giving the next
one's position) is a sequential kernel, `records.framing`; the DSRs are then decoded per DSR
type for the whole batch with the declarative layouts of `records.dsr_decode`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from argusflow.errors import CorruptInput
from argusflow.lazy import LazyModule
from argusflow.records import dsr_decode, framing, schema
from argusflow.records.framing import BAD_MAR_LENGTH, OK, Frame, frame, record_bounds
from argusflow.records.schema import RTYPE_MAR

if TYPE_CHECKING:
    import polars as pl
else:
    pl = LazyModule("polars")  # only for polars batches: feed_copies runs without it

COOKIE_V3 = 0xE5712DCB
COOKIE_V3_SWAPPED = 0xCB2D71E5
COOKIE_V5 = 0xE57150CB
COOKIE_V2 = 0xE5617ACB
MAR_BYTES = 128
KNOWN_RTYPES = frozenset({0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80})


class RecordReader:
    """Incremental decoder of one Argus file or stream.

    require_start_mar: the first record must be the 128-byte START MAR carrying the V3 cookie
    (true for files and for the stream a server sends after accept).
    """

    def __init__(self, source: str = "<stream>", require_start_mar: bool = True,
                 expected_bytes: int | None = None) -> None:
        self.source = source
        # How much input to expect (None: unknown, e.g. a stream): decides whether the compiled
        # kernels repay loading them (framing.use_kernels); a stream switches to them once it
        # has brought that much.
        self.expected_bytes = expected_bytes
        self.require_start_mar = require_start_mar
        self._pending = b""
        self._consumed = 0  # bytes of the stream before self._pending
        self.records_read = 0
        self.error: CorruptInput | None = None
        self.start_mar: bytes | None = None
        # The compiled kernels, once decided for (loading them costs ~25 ms: see _frame).
        self.compiled = framing.kernels_loaded()

    @property
    def bytes_pending(self) -> int:
        return len(self._pending)

    def feed(self, chunk: bytes, select: RowSelector | None = None,
             columns: frozenset[str] | None = None) -> pl.DataFrame:
        """Decode every complete record in what was fed so far.

        With `select`, decoding is in two steps: only `select.columns` for every record, then
        the whole record for the rows `select` keeps (a filter needs a few columns of many
        records; the sink needs every column of the few it keeps).  With `columns` the batch
        still has every schema column, but only those are decoded (the others are zeros): the
        sink's projection, e.g. what the printer reads for the chosen fields.
        """
        framed = self._frame(chunk)
        if framed is None:
            return empty()
        data, found = framed
        if select is None:
            batch = decode_records(data, found, self._consumed, columns, fill=True)
        else:
            probe = decode_records(data, found, self._consumed, select.columns)
            rows = select(probe)
            batch = (decode_records(data, found.take(rows), self._consumed, columns, fill=True)
                     if len(rows) else empty())
        self._advance(data.raw, found.end, found.status)
        return batch

    def feed_raw(self, chunk: bytes, select: RowSelector | None = None) -> RawBatch:
        """Like `feed`, but the selected records come back as the input holds them (their bytes),
        with only the columns the selection read: `ra -w` copies records it does not change
        instead of decoding every column and encoding them again.  The records the reader
        changes while decoding (RawBatch.changed) come decoded whole, for the encoder."""
        if select is None:
            return self._copy_all(chunk)
        framed = self._frame(chunk)
        if framed is None:
            return RawBatch.empty()
        data, found = framed
        probe = decode_records(data, found, self._consumed, select.columns)
        rows = select(probe)
        records = probe.select("rtype", "offset", "mar_raw")  # what the writer reads
        records = records[rows] if len(rows) < records.height else records
        starts, lengths = found.starts[rows], found.lengths[rows]
        changed, rows_changed = kept_among(reader_changes(found), rows)
        changed_batch = (decode_records(data, found.take(changed), self._consumed, fill=True)
                         if len(changed) else empty())
        raw = RawBatch(records, record_bytes(data.raw, starts, lengths, found.end), lengths,
                       rows_changed, changed_batch)
        self._advance(data.raw, found.end, found.status)
        return raw

    def feed_copies(self, chunk: bytes, columns: frozenset[str] = frozenset(),
                    pick: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None) -> Copies:
        """feed_raw without polars: `pick` judges numpy columns (dsr_decode.decode's, only
        `columns`, with offset and mar_raw) and returns the ascending rows to keep, which come
        back as the input holds them (all of them without `pick`).  For ra -w with no filter
        or one with a numpy form (ra -w - tcp)."""
        if pick is None:
            return self._copy_all_numpy(chunk)
        framed = self._frame(chunk)
        if framed is None:
            return Copies.empty()
        data, found = framed
        probe = dsr_decode.decode(data, found, columns)
        for name in columns - probe.keys() - {"offset", "mar_raw"}:  # no DSR wrote it: zeros
            probe[name] = np.zeros(len(found.starts), dtype=schema.NUMPY_DTYPES[name])
        probe["offset"] = (found.starts + self._consumed).astype(np.uint64)
        probe["mar_raw"] = mar_bytes(data.raw, found.starts, found.lengths, probe["rtype"])
        rows = pick(probe)
        starts, lengths = found.starts[rows], found.lengths[rows]
        changed, rows_changed = kept_among(reader_changes(found), rows)
        rtype = probe["rtype"][rows]
        base = self._consumed
        copies = Copies(record_bytes(data.raw, starts, lengths, found.end), lengths, rtype,
                        probe["offset"][rows], mar_array(data.raw, starts, lengths, rtype),
                        rows_changed,
                        lambda: decode_records(data, found.take(changed), base, fill=True))
        self._advance(data.raw, found.end, found.status)
        return copies

    def feed_columns(self, chunk: bytes, columns: frozenset[str] | None) -> Decoded:
        """`columns` of every complete record as numpy arrays, without polars (zeros where no
        DSR carried them); None: every column the records carry (no zeros for the others, as
        records.dsr_decode gives them).  `Decoded.frame()` decodes the same records whole as
        a polars batch, for a sink that meets a record it cannot handle from those columns."""
        framed = self._frame(chunk)
        if framed is None:
            return Decoded({}, 0, empty, self.start_mar)
        data, found = framed
        n = len(found.starts)
        cols = dsr_decode.decode(data, found, columns)
        for name in (columns or frozenset()) - cols.keys():
            cols[name] = np.zeros(n, dtype=schema.NUMPY_DTYPES[name])
        # the fallback frames the bytes again: a batch waiting to print holds only its bytes
        # and columns, not the framing (~20 MB a 4 MB chunk)
        raw, end, base, compiled = data.raw, found.end, self._consumed, data.compiled
        decoded = Decoded(cols, n, lambda: decode_whole(raw[:end], base, compiled), self.start_mar)
        self._advance(data.raw, found.end, found.status)
        return decoded

    def _copy_all_numpy(self, chunk: bytes) -> Copies:
        """_copy_all as Copies: polars is imported only if some record is one the reader
        changes."""
        framed = self._headers_framed(chunk)
        if framed is None:
            return Copies.empty()
        buf, starts, lengths, end, status = framed
        changed, decode_changed = changed_rows(buf, starts, lengths, suspects(buf, starts, end))
        rtype = np.frombuffer(buf, dtype=np.uint8)[starts] & 0xF0
        copies = Copies(buf[:end], lengths, rtype, (starts + self._consumed).astype(np.uint64),
                        mar_array(buf, starts, lengths, rtype), changed, decode_changed)
        self._advance(buf, end, status)
        return copies

    def _headers_framed(self, chunk: bytes) -> tuple[bytes, np.ndarray, np.ndarray, int, int] | None:
        """The whole records now buffered, by their headers only: (buffer, starts, lengths,
        end of the last whole record, framing status); None while no record is whole."""
        buf = self._take(chunk)
        if buf is None:
            return None
        starts, lengths, end, status = record_bounds(np.frombuffer(buf, dtype=np.uint8),
                                                     self._copy_kernels())
        self.records_read += len(starts)
        return buf, starts, lengths, end, status

    def _copy_kernels(self) -> bool | None:
        """record_bounds with the compiled kernel when copying records whole?  Only the record
        headers are walked then: loading the kernels repays itself on larger inputs only."""
        if not self.compiled:
            size = self._consumed if self.expected_bytes is None else self.expected_bytes
            if size >= COPY_COMPILED_FROM_BYTES:
                self.compiled = use_kernels(self.expected_bytes, self._consumed)
        return self.compiled or None

    def _copy_all(self, chunk: bytes) -> RawBatch:
        """feed_raw without a selection: no record is decoded, and only the record headers are
        framed; the DSRs only of the few records a word test says may be ones the reader
        changes (suspects)."""
        framed = self._headers_framed(chunk)
        if framed is None:
            return RawBatch.empty()
        buf, starts, lengths, end, status = framed
        changed, changed_batch = changed_among(buf, starts, lengths, suspects(buf, starts, end))
        raw = RawBatch(header_columns(buf, starts, lengths, self._consumed), buf[:end], lengths,
                       changed, changed_batch)
        self._advance(buf, end, status)
        return raw

    def _frame(self, chunk: bytes) -> tuple[dsr_decode.ByteBuffer, Frame] | None:
        """Frame what was fed so far (None: nothing to decode yet, or the input is bad)."""
        buf = self._take(chunk)
        if buf is None:
            return None
        if not self.compiled:
            self.compiled = use_kernels(self.expected_bytes, self._consumed)
        data = dsr_decode.ByteBuffer(buf, compiled=self.compiled)
        found = frame(data.u8[:len(buf)], data.compiled)
        self.records_read += len(found.starts)
        return data, found

    def _take(self, chunk: bytes) -> bytes | None:
        """What was fed so far, from the first record not yet read (None: too little yet, or
        the input is bad)."""
        if self.error is not None:
            return None
        buf = self._pending + bytes(chunk) if self._pending else bytes(chunk)
        if self.start_mar is None and self.require_start_mar:
            if len(buf) < MAR_BYTES:
                self._pending = buf
                return None
            problem = check_start_mar(buf)
            if problem:
                self._fail(0, problem)
                return None
            self.start_mar = buf[:MAR_BYTES]
        return buf

    def _advance(self, buf: bytes, end: int, status: int) -> None:
        """Keep what follows the last complete record for the next chunk; note damage."""
        if status != OK:
            self._fail(self._consumed + end, framing_problem(buf, end, status))
        self._pending = buf[end:]
        self._consumed += end

    def finish(self) -> CorruptInput | None:
        """End of input: bytes left over mean the input ended inside a record."""
        if self.error is None and self._pending:
            if self.start_mar is None and self.require_start_mar and self._consumed == 0:
                self._fail(0, f"only {len(self._pending)} bytes, not an Argus file (too short for "
                           "its 128-byte start record)")
            else:
                self._fail(self._consumed, incomplete_problem(self._pending))
        return self.error

    def _fail(self, offset: int, problem: str) -> None:
        self.error = CorruptInput(self.source, offset, problem, self.records_read)


# Copying records whole frames their headers only (~1.5 ms a MB with numpy, a tenth of that
# compiled): the kernels' ~25 ms of loading pay from about this size.
COPY_COMPILED_FROM_BYTES = 32 << 20


def use_kernels(expected_bytes: int | None, consumed: int = 0) -> bool:
    """Frame and gather with the compiled kernels (framing.use_kernels)?  A stream's size is
    unknown: it starts with numpy and switches once it has brought enough (`consumed`), so a
    short pipe never loads them and a day-long stream does."""
    return framing.use_kernels(consumed if expected_bytes is None else expected_bytes)


use_numba = use_kernels  # its name before the kernels were compiled ahead of time (bench/)


class RowSelector(Protocol):
    """Which records of a batch to keep, judged on a projection of it (codec.feed)."""

    # what it reads (rtype, offset, mar_raw, dsrs are always there); None: every column
    columns: frozenset[str] | None

    def __call__(self, probe: pl.DataFrame) -> np.ndarray: ...  # ascending row numbers


_EMPTY: list[pl.DataFrame] = []


def empty() -> pl.DataFrame:
    """A batch of no records: a slice of one made once (its ~200 columns cost milliseconds to
    build, and ra -w asks for one per chunk)."""
    if not _EMPTY:
        _EMPTY.append(pl.DataFrame(schema=schema.SCHEMA))
    return _EMPTY[0].head(0)


@dataclass
class RawBatch:
    """Records as the input holds them: one row of `records` per record (rtype, offset and
    mar_raw), `data` their bytes back to back (`lengths` each).
    `changed`: the rows the reader turns round (ARP keys with the REVERSE bit), whole in
    `changed_batch`: these are encoded, as ra -w writes them."""

    records: pl.DataFrame
    data: bytes
    lengths: np.ndarray
    changed: np.ndarray
    changed_batch: pl.DataFrame

    @property
    def height(self) -> int:
        return self.records.height

    @classmethod
    def empty(cls) -> RawBatch:
        none = np.zeros(0, dtype=np.int64)
        return cls(empty().select("rtype", "offset", "mar_raw"), b"", none, none, empty())


@dataclass
class Copies:
    """Records as the input holds them, as feed_copies gives them: `data` their bytes back to
    back (`lengths` each), with each one's record type, offset and MAR bytes.  `changed`: the
    rows the reader changes, encoded instead of copied (RawBatch.changed); `decode_changed`
    decodes them, with polars, only when there are some (`raw_batch`)."""

    data: bytes
    lengths: np.ndarray
    rtype: np.ndarray
    offset: np.ndarray
    mar_raw: np.ndarray  # of bytes objects
    changed: np.ndarray
    decode_changed: Callable[[], pl.DataFrame | None] | None

    @property
    def height(self) -> int:
        return len(self.lengths)

    @classmethod
    def empty(cls) -> Copies:
        none = np.zeros(0, dtype=np.int64)
        return cls(b"", none, none.astype(np.uint8), none.astype(np.uint64),
                   none.astype(object), none, None)

    def first_mar(self) -> bytes | None:
        """The first record's bytes when it is the input's leading (START) MAR."""
        if self.height and self.rtype[0] == RTYPE_MAR and self.offset[0] == 0:
            return self.mar_raw[0]
        return None

    def ends_with_stop_mar(self) -> bool:
        last = self.mar_raw[-1] if self.height else b""
        return bool(self.height) and self.rtype[-1] == RTYPE_MAR and len(last) >= 2 \
            and last[1] & 0xF0 == 0x30

    def raw_batch(self) -> RawBatch:
        """The same records as a RawBatch (polars), for a writer that encodes changed ones."""
        records = pl.DataFrame([
            pl.Series("rtype", self.rtype, dtype=schema.SCHEMA["rtype"]),
            pl.Series("offset", self.offset, dtype=schema.SCHEMA["offset"]),
            pl.Series("mar_raw", self.mar_raw.tolist(), dtype=schema.SCHEMA["mar_raw"]),
        ])
        changed = None
        if len(self.changed) and self.decode_changed is not None:
            changed = self.decode_changed()
        return RawBatch(records, self.data, self.lengths, self.changed,
                        empty() if changed is None else changed)


@dataclass
class Decoded:
    """Records as RecordReader.feed_columns gives them: some columns as numpy arrays (`n`
    records, MARs included) and `frame`, which decodes them whole as a polars batch."""

    columns: dict[str, np.ndarray]
    n: int
    frame: Callable[[], pl.DataFrame]
    start_mar: bytes | None = None  # the input's START MAR (RecordReader.start_mar)

    @property
    def height(self) -> int:
        return self.n


def mar_array(buf: bytes, starts: np.ndarray, lengths: np.ndarray, rtype: np.ndarray) -> np.ndarray:
    """mar_bytes as a numpy array of bytes objects (indexable by row numbers)."""
    out = np.full(len(starts), b"", dtype=object)
    for i in np.flatnonzero(rtype == RTYPE_MAR).tolist():  # MARs are rare: a short loop
        s = int(starts[i])
        out[i] = buf[s:s + int(lengths[i])]
    return out


FLOW_DSR = 0x02
ARP_KEY, KEY_REVERSE = 0x06, 0x40
RARP_QUAL = 0x05  # an ARP key's qualifier & 0x1F for RARP


def reader_changes(found: Frame) -> np.ndarray:
    """Records the reader turns round (dsr_decode.unreverse_arp), and RARP records, found from
    the DSR headers framing read, without decoding anything.  RARP keys are encoded because
    ra -w zeroes their hardware addresses (bytes 22..27, which ra prints as SrcAddr): a copy
    would print otherwise than the real ra's copy does.

    The reader's other change, dropping the RTP objects ra does not read (drop_unread_rtp), is
    left to whoever reads the copy: ra drops them again, so copying costs nothing in fidelity,
    while encoding the ~0.3% of records that carry one cost as much as copying the rest."""
    flow = np.flatnonzero(found.dsr_kind == FLOW_DSR)  # one per record: test only those
    sub = found.dsr_sub[flow]
    rarp = (found.dsr_qual[flow] & 0x1F) == RARP_QUAL
    arp = flow[((sub & 0x3F) == ARP_KEY) & (((sub & KEY_REVERSE) > 0) | rarp)]
    # counting, not np.unique: its first call imports numpy.ma (~13 ms of start-up)
    return np.flatnonzero(np.bincount(found.dsr_rec[arp]))


def kept_among(records: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Those of `records` that the ascending `rows` keep, and where they are among the rows
    (a binary search each: `records` are few, `rows` many)."""
    at = np.searchsorted(rows, records)
    kept = at < len(rows)
    kept[kept] = rows[at[kept]] == records[kept]
    return records[kept], at[kept]


def record_bytes(buf: bytes, starts: np.ndarray, lengths: np.ndarray, end: int) -> bytes:
    """The bytes of these records (of buf[:end]), back to back.  Records start and end on
    4-byte words, so words are moved."""
    if len(starts) == 0:
        return b""
    if starts[0] == 0 and int(lengths.sum()) == end:
        return buf[:end]  # every record of the buffer, in one piece
    words = np.frombuffer(buf, dtype=np.uint32, count=end // 4)
    count = lengths // 4
    total = int(count.sum())
    if total * 8 < len(words):
        # A few records: number their words (work in proportion to what is kept).
        first = np.cumsum(count) - count
        return words[np.arange(total) + np.repeat(starts // 4 - first, count)].tobytes()
    # Many: the gaps and the kept records cover the words in turn (records are ascending and
    # apart): one mask repeated over their sizes (an int8 cumsum of edges cost ~4x more).
    first = starts // 4
    sizes = np.empty(2 * len(starts) + 1, dtype=np.int64)
    sizes[1::2] = count
    sizes[0] = first[0]
    sizes[2:-1:2] = first[1:] - (first[:-1] + count[:-1])
    sizes[-1] = len(words) - (first[-1] + count[-1])
    kept = np.zeros(len(sizes), dtype=bool)
    kept[1::2] = True
    return words[np.repeat(kept, sizes)].tobytes()


def header_columns(buf: bytes, starts: np.ndarray, lengths: np.ndarray, base: int) -> pl.DataFrame:
    """rtype, offset and mar_raw of the records, read from their headers alone."""
    rtype = np.frombuffer(buf, dtype=np.uint8)[starts] & 0xF0
    return pl.DataFrame([
        pl.Series("rtype", rtype, dtype=schema.SCHEMA["rtype"]),
        pl.Series("offset", (starts + base).astype(np.uint64), dtype=schema.SCHEMA["offset"]),
        pl.Series("mar_raw", mar_bytes(buf, starts, lengths, rtype), dtype=schema.SCHEMA["mar_raw"]),
    ])


def suspects(buf: bytes, starts: np.ndarray, end: int) -> np.ndarray:
    """Records holding a word that reads like the header of an ARP key with the REVERSE bit
    or of a RARP key (reader_changes), wherever it is: a superset of the records that are
    encoded, found without walking the DSRs.  Words as little-endian numbers: byte 0 is the
    lowest."""
    words = np.frombuffer(buf, dtype="<u4", count=end // 4)
    hits = np.flatnonzero((words & 0x3F7F) == ARP_KEY << 8 | FLOW_DSR)  # one pass: ARP keys
    found = words[hits]
    hits = hits[((found & KEY_REVERSE << 8) > 0) | ((found >> 16 & 0x1F) == RARP_QUAL)]
    if not len(hits):
        return hits
    return np.flatnonzero(np.bincount(np.searchsorted(starts, hits * 4, side="right") - 1))


def changed_among(buf: bytes, starts: np.ndarray, lengths: np.ndarray,
                  maybe: np.ndarray) -> tuple[np.ndarray, pl.DataFrame]:
    """Which of the `maybe` records the reader changes (framed on their own), and those
    decoded whole."""
    changed, decode = changed_rows(buf, starts, lengths, maybe)
    return changed, decode() if len(changed) else empty()


def changed_rows(buf: bytes, starts: np.ndarray, lengths: np.ndarray,
                 maybe: np.ndarray) -> tuple[np.ndarray, Callable[[], pl.DataFrame]]:
    """changed_among, with what decodes those records (polars) called only if there are
    some: most chunks of a large file hold a suspect word but no such record."""
    if not len(maybe):
        return maybe, empty
    part = record_bytes(buf, starts[maybe], lengths[maybe], int(starts[-1] + lengths[-1]))
    data = dsr_decode.ByteBuffer(part)
    found = frame(data.u8[:len(part)], False)
    exact = reader_changes(found)
    return maybe[exact], lambda: decode_records(data, found.take(exact), 0, fill=True)


def check_start_mar(buf: bytes) -> str | None:
    """Why `buf` does not start with an Argus V3 START MAR, or None when it does."""
    cookie = int.from_bytes(buf[8:12], "big")
    if cookie == COOKIE_V5:
        return "Argus 5 file (cookie 0xE57150CB): only Argus V3 records are supported"
    if cookie == COOKIE_V2:
        return "Argus V2 file (cookie 0xE5617ACB): only Argus V3 records are supported"
    if cookie not in (COOKIE_V3, COOKIE_V3_SWAPPED):
        return f"not an Argus file: expected the cookie 0xE5712DCB at byte 8, found 0x{cookie:08X}"
    if buf[0] & 0xF0 != RTYPE_MAR or int.from_bytes(buf[2:4], "big") != MAR_BYTES // 4:
        return "not an Argus file: the first record is not a 128-byte management record"
    return None


def incomplete_problem(rest: bytes) -> str:
    if len(rest) < 4:
        return f"input ends inside a record header ({len(rest)} of 4 bytes)"
    want = int.from_bytes(rest[2:4], "big") * 4
    return f"input ends inside a record ({len(rest)} of its {want} bytes)"


def framing_problem(buf: bytes, pos: int, status: int) -> str:
    if status == BAD_MAR_LENGTH:
        length = int.from_bytes(buf[pos + 2:pos + 4], "big") * 4
        return f"management record of {length} bytes (expected 128)"
    byte0 = buf[pos]
    length = buf[pos + 2] << 8 | buf[pos + 3]
    if byte0 & 0xF0 not in KNOWN_RTYPES:
        return f"bad record header 0x{buf[pos:pos + 4].hex()}: unknown record type 0x{byte0 >> 4:x}"
    if byte0 & 0x0F != 3:
        return f"bad record header 0x{buf[pos:pos + 4].hex()}: version {byte0 & 0x0F}, expected 3"
    kind = "management" if byte0 & 0xF0 == RTYPE_MAR else "flow"
    return f"record length {length} in a {kind} record"


def decode_whole(raw: bytes, base: int, compiled: bool) -> pl.DataFrame:
    """Frame and decode whole records (bytes that start with a record and end with one)."""
    data = dsr_decode.ByteBuffer(raw, compiled=compiled)
    return decode_records(data, frame(data.u8[:len(raw)], data.compiled), base, fill=True)


def decode_records(data: dsr_decode.ByteBuffer, found: Frame, base: int,
                   projection: frozenset[str] | None = None, fill: bool = False) -> pl.DataFrame:
    """Decode the framed records into a batch; offsets are relative to the stream start.

    With a projection the batch has only those columns, plus rtype, offset, mar_raw and dsrs;
    with `fill` too it has every column, those not decoded being zeros.
    """
    if len(found.starts) == 0:
        return empty() if projection is None else empty().select(wanted_columns(projection))
    columns = dsr_decode.decode(data, found, projection)
    columns["offset"] = (found.starts + base).astype(np.uint64)
    columns["mar_raw"] = mar_bytes(data.raw, found.starts, found.lengths, columns["rtype"])
    if projection is None or fill:
        return to_frame(columns, len(found.starts))
    return to_frame(columns, len(found.starts), wanted_columns(projection))


ALWAYS = ("rtype", "offset", "mar_raw", "dsrs")


def wanted_columns(projection: frozenset[str]) -> list[str]:
    return [name for name in schema.SCHEMA if name in projection or name in ALWAYS]


def mar_bytes(buf: bytes, starts: np.ndarray, lengths: np.ndarray, rtype: np.ndarray) -> list:
    """The raw bytes of each MAR (empty for flow records). MARs are rare: a short loop is fine."""
    out: list[bytes] = [b""] * len(starts)
    for i in np.flatnonzero(rtype == RTYPE_MAR):
        s = int(starts[i])
        out[i] = buf[s:s + int(lengths[i])]
    return out


def to_frame(columns: dict, n: int, names: list[str] | None = None) -> pl.DataFrame:
    """Assemble the batch in schema order (`names`: only those); columns no DSR wrote are zeros
    (or empty).

    The absent columns are zero-copy slices of cached all-zero columns, so a batch costs a
    Series construction only for the columns its records really carry.
    """
    keep = schema.SCHEMA if names is None else names
    return pl.DataFrame([series(name, columns[name]) if name in columns
                         else zero_column(name, n) for name in keep])


def series(name: str, values: np.ndarray | list) -> pl.Series:
    """A batch column.  A numpy array of the schema's own dtype is taken as it is: naming the
    dtype makes polars cast it, ~20x the cost of the rest of a batch's assembly."""
    dtype = schema.SCHEMA[name]
    if isinstance(values, np.ndarray) and NUMPY_OF.get(str(dtype)) is values.dtype.type:
        return pl.Series(name, values)
    return pl.Series(name, values, dtype=dtype)


_ZEROS: dict[str, pl.Series] = {}


def zero_column(name: str, n: int) -> pl.Series:
    """n zeros (or empty values) of a schema column: a slice of a cached column."""
    column = _ZEROS.get(name)
    if column is None or column.len() < n:
        column = _ZEROS[name] = empty_values(name, max(n, 1 << 16))
    return column.slice(0, n)


def empty_values(name: str, n: int) -> pl.Series:
    dtype = schema.SCHEMA[name]
    if dtype in (pl.Binary, pl.String):
        return pl.Series(name, [b"" if dtype == pl.Binary else ""], dtype=dtype).new_from_index(0, n)
    return pl.Series(name, np.zeros(n, dtype=schema.NUMPY_DTYPES[name]))


# numpy type of each numeric polars dtype, by the dtype's name (str(pl.UInt8) == "UInt8"):
# naming polars' dtypes here would import polars with this module.
NUMPY_OF = {"UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64,
            "Int32": np.int32, "Int64": np.int64, "Float32": np.float32, "Float64": np.float64}




def read_bytes(data: bytes, source: str = "<bytes>") -> pl.DataFrame:
    """Decode a whole in-memory Argus file; raises CorruptInput on damage."""
    reader = RecordReader(source, expected_bytes=len(data))
    batch = reader.feed(data)
    error = reader.finish()
    if error is not None:
        raise error
    return batch


def read_file(path: str) -> pl.DataFrame:
    """Decode a whole Argus file (plain or compressed); raises CorruptInput on damage."""
    from argusflow.records.source import iter_batches

    batches = list(iter_batches(path))
    return pl.concat(batches) if batches else empty()
