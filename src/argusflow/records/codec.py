"""Sans-IO reader of Argus V3 records: bytes in, columnar record batches out.

`RecordReader.feed(chunk)` accepts any slice of a file or stream and returns the records that are
complete so far as one polars DataFrame with the schema of `records.schema`; it keeps the rest
for the next call.  Damage stops the reader at the first bad record header: the records before
it are still returned, and `reader.error` holds a `CorruptInput` saying where and what.

Decoding is vectorised: only the walk over record headers is a sequential loop (each header
gives the next one's position).  DSRs are then found with one vectorised pass per DSR depth and
decoded per DSR type with the declarative layouts of `records.dsr_decode`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from argusflow.errors import CorruptInput
from argusflow.records import dsr_decode
from argusflow.records.schema import RTYPE_MAR, SCHEMA

COOKIE_V3 = 0xE5712DCB
COOKIE_V3_SWAPPED = 0xCB2D71E5
COOKIE_V5 = 0xE57150CB
COOKIE_V2 = 0xE5617ACB
MAR_BYTES = 128
# ra accepts records up to 0x40000 bytes; the 16-bit word count allows up to 262140.
KNOWN_RTYPES = frozenset({0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80})


class RecordReader:
    """Incremental decoder of one Argus file or stream.

    require_start_mar: the first record must be the 128-byte START MAR carrying the V3 cookie
    (true for files and for the stream a server sends after accept).
    """

    def __init__(self, source: str = "<stream>", require_start_mar: bool = True) -> None:
        self.source = source
        self.require_start_mar = require_start_mar
        self._pending = b""
        self._consumed = 0  # bytes of the stream before self._pending
        self.records_read = 0
        self.error: CorruptInput | None = None
        self.start_mar: bytes | None = None

    @property
    def bytes_pending(self) -> int:
        return len(self._pending)

    def feed(self, chunk: bytes) -> pl.DataFrame:
        """Decode every complete record in what was fed so far."""
        if self.error is not None:
            return empty()
        buf = self._pending + bytes(chunk) if self._pending else bytes(chunk)
        if self.start_mar is None and self.require_start_mar:
            if len(buf) < MAR_BYTES:
                self._pending = buf
                return empty()
            problem = check_start_mar(buf)
            if problem:
                self._fail(0, problem)
                return empty()
            self.start_mar = buf[:MAR_BYTES]
        starts, lengths, end, problem = walk_records(buf)
        batch = decode_records(buf, starts, lengths, self._consumed)
        self.records_read += len(starts)
        if problem is not None:
            self._fail(self._consumed + end, problem)
        self._pending = buf[end:]
        self._consumed += end
        return batch

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


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


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


def walk_records(buf: bytes) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    """Find the complete records in `buf`.

    Returns (starts, lengths in bytes, end of the last complete record, problem or None).
    This is the one inherently sequential step: a header gives the next header's position.
    """
    n = len(buf)
    starts: list[int] = []
    lengths: list[int] = []
    pos = 0
    problem = None
    append_start, append_len = starts.append, lengths.append
    while pos + 4 <= n:
        length = (buf[pos + 2] << 8 | buf[pos + 3]) << 2
        kind = buf[pos] & 0xF0
        if length == 0 or kind not in KNOWN_RTYPES or buf[pos] & 0x0F != 3:
            problem = header_problem(buf, pos)
            break
        if kind == RTYPE_MAR and length not in (MAR_BYTES, 4):
            problem = f"management record of {length} bytes (expected 128)"
            break
        if pos + length > n:
            break
        append_start(pos)
        append_len(length)
        pos += length
    return np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64), pos, problem


def header_problem(buf: bytes, pos: int) -> str:
    byte0 = buf[pos]
    length = buf[pos + 2] << 8 | buf[pos + 3]
    if byte0 & 0xF0 not in KNOWN_RTYPES:
        return f"bad record header 0x{buf[pos:pos + 4].hex()}: unknown record type 0x{byte0 >> 4:x}"
    if byte0 & 0x0F != 3:
        return f"bad record header 0x{buf[pos:pos + 4].hex()}: version {byte0 & 0x0F}, expected 3"
    kind = "management" if byte0 & 0xF0 == RTYPE_MAR else "flow"
    return f"record length {length} in a {kind} record"


def decode_records(buf: bytes, starts: np.ndarray, lengths: np.ndarray, base: int) -> pl.DataFrame:
    """Decode the records at `starts` into a batch; offsets are relative to the stream start."""
    if len(starts) == 0:
        return empty()
    arr = np.frombuffer(buf, dtype=np.uint8)
    # Padding lets field gathers read a little past a short DSR; decoders mask such fields.
    padded = np.concatenate([arr, np.zeros(dsr_decode.GATHER_PAD, dtype=np.uint8)])
    columns = dsr_decode.decode(padded, starts, lengths, buf)
    columns["offset"] = (starts + base).astype(np.uint64)
    columns["mar_raw"] = mar_bytes(buf, starts, lengths, columns["rtype"])
    return to_frame(columns, len(starts))


def mar_bytes(buf: bytes, starts: np.ndarray, lengths: np.ndarray, rtype: np.ndarray) -> list:
    """The raw bytes of each MAR (empty for flow records). MARs are rare: a short loop is fine."""
    out: list[bytes] = [b""] * len(starts)
    for i in np.flatnonzero(rtype == RTYPE_MAR):
        s = int(starts[i])
        out[i] = buf[s:s + int(lengths[i])]
    return out


def to_frame(columns: dict, n: int) -> pl.DataFrame:
    series = []
    for name, dtype in SCHEMA.items():
        values = columns.get(name)
        if values is None:
            series.append(pl.repeat(default_of(dtype), n, dtype=dtype, eager=True).alias(name))
        else:
            series.append(pl.Series(name, values, dtype=dtype))
    return pl.DataFrame(series)


def default_of(dtype: pl.DataType) -> object:
    if dtype == pl.Binary:
        return b""
    if dtype == pl.String:
        return ""
    if dtype in (pl.Float32, pl.Float64):
        return 0.0
    return 0


def read_bytes(data: bytes, source: str = "<bytes>") -> pl.DataFrame:
    """Decode a whole in-memory Argus file; raises CorruptInput on damage."""
    reader = RecordReader(source)
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
