"""Binary Argus output (`-w FILE`, `-w -`): the sink every writing program shares.

Like the real clients, the file is opened for appending only when the first record arrives (a
filter that matches nothing creates no file), and a new or empty file starts with a START MAR:
a byte-for-byte copy of the input's START MAR, or a synthesised one when there is none.
Appending to a file that already has records never adds a second START MAR.

Beyond the real clients:
* a name ending in .gz, .bz2, .xz or .zst is written compressed (appending adds a new
  member/stream, which every decompressor reads as one continuous stream);
* `atomic=True` writes under a hidden temporary name in the same directory and renames it when
  the file is closed, so a reader never sees half a file (rasplit, rastream);
* `stop_mar=True` ends the file with a STOP MAR unless its last record already is one;
* `retries=N`: a failed write (full disk, ...) is undone by truncating the file back to its last
  complete record, and tried again N times, `retry_delay` seconds apart, before giving up with
  one line; the temporary file is then removed, so no corrupt file is left behind.
"""

from __future__ import annotations

import bz2
import lzma
import os
import shutil
import struct
import sys
import time
import zlib
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np

from argusflow.errors import ArgusflowError
from argusflow.records.framing import record_bounds
from argusflow.records.schema import RTYPE_MAR

if TYPE_CHECKING:  # not imported by the probe's sink (flows.probe_writer): it runs without polars
    import polars as pl

    from argusflow.records.codec import RawBatch


class OutputError(ArgusflowError):
    """An output file that cannot be opened or written."""


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


def _zstd() -> Compressor:
    try:
        import zstandard
    except ImportError:
        raise OutputError("zstd output needs the 'zstandard' package (pip install zstandard)") from None
    return zstandard.ZstdCompressor().compressobj()  # type: ignore[return-value]


COMPRESSORS = {
    ".gz": lambda: zlib.compressobj(6, zlib.DEFLATED, 31),
    ".bz2": lambda: bz2.BZ2Compressor(9),
    ".xz": lambda: lzma.LZMACompressor(format=lzma.FORMAT_XZ),
    ".zst": _zstd,
}


def compression_suffix(path: str) -> str | None:
    """The compression a -w name asks for by its suffix ('.gz' ...), or None for plain output."""
    return next((suffix for suffix in COMPRESSORS if path.endswith(suffix)), None)


def compressor_for(suffix: str | None) -> Compressor | None:
    return COMPRESSORS[suffix]() if suffix else None  # type: ignore[return-value]


def temporary_name(path: str) -> str:
    """Hidden (dot) name beside `path`: `-R` readers and globs skip it."""
    folder, base = os.path.split(path)
    return os.path.join(folder, f".{base}.part-{os.getpid()}")


class ArgusOutput:
    def __init__(self, path: str, synthesise_agr: bool = True, *, atomic: bool = False,
                 stop_mar: bool = False, retries: int = 0, retry_delay: float = 1.0,
                 compression: str | None = "auto") -> None:
        """`compression`: "auto" (by the name's suffix), None (plain) or a suffix ('.gz' ...):
        rasplit decides by its -w template, since a made-up name may end in 'zst' by chance."""
        self.path = path
        self.compression = compression_suffix(path) if compression == "auto" else compression
        self.synthesise_agr = synthesise_agr
        self.atomic = atomic and path != "-"
        self.stop_mar = stop_mar
        self.retries = retries
        self.retry_delay = retry_delay
        self._stream: BinaryIO | None = None
        self._owns_stream = False
        self._needs_header = False
        self._compressor: Compressor | None = None
        self._write_path = path
        self._good_size = 0  # bytes of the file known to be complete records
        self._header: bytes | None = None
        self._last_is_stop = False
        self.records_written = 0
        self.bytes_written = 0  # uncompressed Argus bytes, header included

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def write(self, batch: pl.DataFrame | RawBatch, start_mar: bytes | None) -> None:
        """Append a batch; `start_mar` is the current input's START MAR (None if it had none).

        A RawBatch (records as the input holds them) is copied, but for the records the reader
        changes, which are encoded: ra and racluster print the copy as they print the input."""
        if batch.height == 0:
            return
        from argusflow.records.codec import RawBatch

        if isinstance(batch, RawBatch):
            data = passed_through(batch, self.synthesise_agr)
            self.write_encoded(data, batch.records, start_mar)
            return
        from argusflow.records.writer import encode_batch  # only here: ra -w copies records

        self.write_encoded(encode_batch(batch, synthesise_agr=self.synthesise_agr), batch,
                           start_mar)

    def write_encoded(self, data: bytes, batch: pl.DataFrame, start_mar: bytes | None) -> None:
        """Append records already encoded (`data` is `encode_batch(batch)`)."""
        if batch.height == 0:
            return
        first = batch["mar_raw"][0] if first_is_copy_candidate(batch) else None
        self.write_chunk(data, batch.height, start_mar, first, is_stop_mar(batch[-1]))

    def write_chunk(self, data: bytes, count: int, start_mar: bytes | None,
                    first_mar: bytes | None, last_is_stop: bool) -> None:
        """Append `count` encoded records without their batch (rasplit writes thousands of
        small runs: slicing the wide frame for each cost more than the writing).  `first_mar`:
        the first record's MAR bytes when it is an input's leading START MAR, else None."""
        if count == 0:
            return
        stream = self._open()
        if self._needs_header:
            header = start_mar or synthesised_start_mar()
            self._header = header
            self._needs_header = False
            if first_mar is not None and first_mar == header:
                data = data[len(header):]
                count -= 1
            data = header + data
        self._emit(stream, data)
        self.records_written += count
        self._last_is_stop = last_is_stop

    def close(self) -> None:
        if self._stream is None:
            return
        try:
            if self.stop_mar and not self._last_is_stop:
                self._emit(self._stream, closing_stop_mar(self._header))
            if self._compressor is not None:
                self._emit_raw(self._stream, self._compressor.flush())
            self._flush(self._stream)
        except OutputError:
            self.abort()
            raise
        if self._owns_stream:
            self._stream.close()
        self._stream = None
        if self._write_path != self.path:
            try:
                os.replace(self._write_path, self.path)
            except OSError as err:
                self._discard()
                raise OutputError(f"{self.path}: cannot rename the finished file into place: "
                                  f"{err.strerror or err}") from None

    def abort(self) -> None:
        """Give up on this file: close it and remove the temporary copy (never a half file)."""
        if self._stream is not None and self._owns_stream:
            try:
                self._stream.close()
            except OSError:
                pass
        self._stream = None
        self._discard()

    def _discard(self) -> None:
        if self._write_path != self.path:
            try:
                os.unlink(self._write_path)
            except OSError:
                pass

    def _open(self) -> BinaryIO:
        if self._stream is not None:
            return self._stream
        if self.path == "-":
            self._stream = sys.stdout.buffer
            self._needs_header = True
            self._compressor = None
            return self._stream
        self._compressor = compressor_for(self.compression)
        self._with_retries(self._open_file, "cannot open for writing")
        assert self._stream is not None
        return self._stream

    def _open_file(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        existing = os.path.getsize(self.path) if os.path.isfile(self.path) else 0
        self._write_path = temporary_name(self.path) if self.atomic else self.path
        if self.atomic and existing:
            # Appending atomically: the records so far, then ours, renamed over the original.
            shutil.copyfile(self.path, self._write_path)
        self._stream = open(self._write_path, "ab" if not self.atomic or existing else "wb")  # noqa: SIM115
        self._owns_stream = True
        self._good_size = self._stream.tell()
        self._needs_header = self._good_size == 0

    def _emit(self, stream: BinaryIO, data: bytes) -> None:
        self.bytes_written += len(data)
        if self._compressor is not None:
            data = self._compressor.compress(data)
        self._emit_raw(stream, data)

    def _emit_raw(self, stream: BinaryIO, data: bytes) -> None:
        if not data:
            return

        def attempt() -> None:
            try:
                stream.write(data)
                if self._owns_stream:
                    stream.flush()
            except OSError:
                self._undo(stream)
                raise
            self._good_size += len(data)

        self._with_retries(attempt, "write failed")

    def _undo(self, stream: BinaryIO) -> None:
        """Drop whatever part of a failed write reached the file: it ends on a whole record."""
        if not self._owns_stream:
            return
        try:
            stream.seek(0, os.SEEK_END)
            os.ftruncate(stream.fileno(), self._good_size)
            stream.seek(self._good_size)
        except (OSError, ValueError):
            pass

    def _flush(self, stream: BinaryIO) -> None:
        self._with_retries(stream.flush, "write failed")

    def _with_retries(self, action: object, what: str) -> None:
        for attempt in range(self.retries + 1):
            try:
                action()  # type: ignore[operator]
                return
            except OSError as err:
                reason = err.strerror or str(err)
                if attempt < self.retries:
                    print(f"{os.path.basename(sys.argv[0]) or 'argusflow'}: {self.path}: {what}: "
                          f"{reason}; retrying in {self.retry_delay:g} s", file=sys.stderr)
                    time.sleep(self.retry_delay)
                    continue
                if what == "write failed":
                    self.abort()
                raise OutputError(f"{self.path}: {what}: {reason}") from None


def passed_through(raw: RawBatch, synthesise_agr: bool) -> bytes:
    """The records of `raw` as they came, the changed ones encoded in their place."""
    if not len(raw.changed):
        return raw.data
    from argusflow.records.writer import encode_batch  # the encoder costs start-up time

    encoded = encode_batch(raw.changed_batch, synthesise_agr=synthesise_agr)
    _, enc_lengths, _, _ = record_bounds(np.frombuffer(encoded, dtype=np.uint8))
    lengths = raw.lengths.astype(np.int64)
    starts = np.cumsum(lengths) - lengths  # where each record is: in raw.data, or ...
    starts[raw.changed] = len(raw.data) + np.cumsum(enc_lengths) - enc_lengths  # ... encoded
    lengths[raw.changed] = enc_lengths
    return gather_words(raw.data + encoded, starts, lengths)


def gather_words(buf: bytes, starts: np.ndarray, lengths: np.ndarray) -> bytes:
    """buf[starts[0]:+lengths[0]] + buf[starts[1]:...] ...; all on 4-byte word boundaries."""
    words = np.frombuffer(buf, dtype=np.uint32)
    count = lengths // 4
    first = np.cumsum(count) - count  # each record's first word in the output
    index = np.arange(int(count.sum())) + np.repeat(starts // 4 - first, count)
    return words[index].tobytes()


def first_is_copy_candidate(batch: pl.DataFrame) -> bool:
    """The first record is an input's leading MAR (it may have become the file header)."""
    return int(batch["rtype"][0]) == RTYPE_MAR and int(batch["offset"][0]) == 0


def first_is_copy(batch: pl.DataFrame, header: bytes) -> bool:
    """The input's START MAR became the file header: do not write it a second time."""
    return first_is_copy_candidate(batch) and batch["mar_raw"][0] == header


def drop_leading_copy(batch: pl.DataFrame, header: bytes) -> pl.DataFrame:
    return batch.slice(1) if first_is_copy(batch, header) else batch


def is_stop_mar(row: pl.DataFrame) -> bool:
    raw = row["mar_raw"][0]
    return int(row["rtype"][0]) == RTYPE_MAR and len(raw) >= 2 and (raw[1] & 0xF0) == 0x30


def closing_stop_mar(header: bytes | None, now_us: int | None = None) -> bytes:
    """A STOP MAR that closes a file: the header's source id and interval, now as its time."""
    now_us = int(time.time() * 1e6) if now_us is None else now_us
    mar = bytearray(header if header is not None and len(header) == 128 else synthesised_start_mar())
    thisid = struct.unpack_from(">I", mar, 120)[0]
    mar[1] = 0x30
    struct.pack_into(">I", mar, 8, thisid)  # STOP: the source id moves to argusid (spec §4.1)
    struct.pack_into(">I", mar, 120, 0)
    struct.pack_into(">II", mar, 32, *divmod(now_us, 1_000_000))
    return bytes(mar)


def synthesised_start_mar(now_us: int | None = None) -> bytes:
    """A START MAR for output that has no input MAR to copy (spec §4.4)."""
    now_us = int(time.time() * 1e6) if now_us is None else now_us
    mar = np.zeros(128, dtype=np.uint8)
    mar[0:4] = (0x83, 0x10, 0x00, 0x20)
    mar[8:12] = (0xE5, 0x71, 0x2D, 0xCB)
    seconds, micros = divmod(now_us, 1_000_000)
    for at in (24, 32):
        mar[at:at + 4] = np.frombuffer(seconds.to_bytes(4, "big"), dtype=np.uint8)
        mar[at + 4:at + 8] = np.frombuffer(micros.to_bytes(4, "big"), dtype=np.uint8)
    mar[40] = 3
    mar[124:128] = 0xFF
    return mar.tobytes()
