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

import numpy as np
import polars as pl

from argusflow.capture import jit
from argusflow.errors import CorruptInput
from argusflow.records import dsr_decode
from argusflow.records.framing import BAD_MAR_LENGTH, OK, Frame, frame
from argusflow.records.schema import RTYPE_MAR, SCHEMA

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
        # How much input to expect (None: unknown, e.g. a stream): decides whether numba's
        # compiled kernels repay their start-up (capture/jit.py), once for the whole input.
        self.expected_bytes = expected_bytes
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
        # numba's kernels only when numba is loaded already (by the probe, or forced by tests):
        # importing it costs more than the numpy decoders spend on a large file.
        data = dsr_decode.ByteBuffer(buf, compiled=jit.active())
        found = frame(data.u8[:len(buf)], data.compiled)
        batch = decode_records(data, found, self._consumed)
        self.records_read += len(found.starts)
        end = found.end
        if found.status != OK:
            self._fail(self._consumed + end, framing_problem(buf, end, found.status))
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


def decode_records(data: dsr_decode.ByteBuffer, found: Frame, base: int) -> pl.DataFrame:
    """Decode the framed records into a batch; offsets are relative to the stream start."""
    if len(found.starts) == 0:
        return empty()
    columns = dsr_decode.decode(data, found)
    columns["offset"] = (found.starts + base).astype(np.uint64)
    columns["mar_raw"] = mar_bytes(data.raw, found.starts, found.lengths, columns["rtype"])
    return to_frame(columns, len(found.starts))


def mar_bytes(buf: bytes, starts: np.ndarray, lengths: np.ndarray, rtype: np.ndarray) -> list:
    """The raw bytes of each MAR (empty for flow records). MARs are rare: a short loop is fine."""
    out: list[bytes] = [b""] * len(starts)
    for i in np.flatnonzero(rtype == RTYPE_MAR):
        s = int(starts[i])
        out[i] = buf[s:s + int(lengths[i])]
    return out


def to_frame(columns: dict, n: int) -> pl.DataFrame:
    """Assemble the batch in schema order; columns no DSR wrote are zeros (or empty).

    The absent columns are zero-copy slices of one cached all-zero frame, so a batch costs a
    Series construction only for the columns its records really carry.
    """
    present = [pl.Series(name, columns[name], dtype=dtype)
               for name, dtype in SCHEMA.items() if name in columns]
    return zero_frame(n).with_columns(present)


_ZERO_FRAME: list[pl.DataFrame] = []


def zero_frame(n: int) -> pl.DataFrame:
    """A frame of n rows with every schema column zero or empty (cached, grown on demand)."""
    if not _ZERO_FRAME or _ZERO_FRAME[0].height < n:
        rows = max(n, 1 << 16)
        _ZERO_FRAME[:] = [pl.DataFrame([EMPTY_VALUES[dtype](name, rows) for name, dtype in SCHEMA.items()])]
    return _ZERO_FRAME[0].slice(0, n)


EMPTY_VALUES = {
    pl.Binary: lambda name, n: pl.Series(name, [b""], dtype=pl.Binary).new_from_index(0, n),
    pl.String: lambda name, n: pl.Series(name, [""], dtype=pl.String).new_from_index(0, n),
    **{dtype: (lambda name, n, t=dtype: pl.zeros(n, dtype=t, eager=True).alias(name))
       for dtype in (pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.Int32, pl.Int64, pl.Float32,
                     pl.Float64)},
}


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
