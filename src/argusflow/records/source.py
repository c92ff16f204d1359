"""Argus record sources: files (plain or compressed, chosen by magic number) and stdin.

`iter_batches(path)` streams a file through a `RecordReader` in chunks, so memory stays bounded
by the chunk size whatever the file size.  Damage is raised *after* every good record before it
has been yielded.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import numpy as np

from argusflow.errors import ArgusflowError, CorruptInput
from argusflow.records.codec import Copies, Decoded, RawBatch, RecordReader, RowSelector

if TYPE_CHECKING:
    import polars as pl

B = TypeVar("B")  # a batch: a polars DataFrame, or a RawBatch (records as the input holds them)

CHUNK_BYTES = 4 << 20

MAGICS: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"\x1f\x9d", "compress"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
]


class InputError(ArgusflowError):
    """An input that cannot be opened or read at all."""


def sniff(head: bytes) -> str:
    for magic, kind in MAGICS:
        if head.startswith(magic):
            return kind
    return "plain"


def open_input(path: str) -> BinaryIO:
    """Open `path` ('-' = stdin) for reading, decompressing by magic number, not by name."""
    try:
        raw: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as err:
        raise InputError(f"{path}: {err.strerror or err}") from None
    peekable = io.BufferedReader(raw) if not hasattr(raw, "peek") else raw  # type: ignore[arg-type]
    kind = sniff(peekable.peek(16)[:16])
    # The decompressors are imported only for their inputs (start-up time of plain reads).
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=peekable)  # type: ignore[return-value]
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(peekable)  # type: ignore[return-value]
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(peekable)  # type: ignore[return-value]
    if kind == "compress":
        return decompress_with_gzip(peekable, path)
    if kind == "zstd":
        return open_zstd(peekable, path)
    return peekable  # type: ignore[return-value]


def open_zstd(stream: BinaryIO, path: str) -> BinaryIO:
    try:
        import zstandard
    except ImportError:
        raise InputError(f"{path}: zstd-compressed, and the zstandard package is not installed") from None
    return zstandard.ZstdDecompressor().stream_reader(stream)  # type: ignore[return-value]


def decompress_with_gzip(stream: BinaryIO, path: str) -> BinaryIO:
    """Unix compress (.Z) has no Python module; `gzip -dc` reads it."""
    import subprocess

    proc = subprocess.Popen(["gzip", "-dc"], stdin=stream, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    return proc.stdout  # type: ignore[return-value]


def input_size(path: str) -> int | None:
    """Bytes a file holds (compressed files hold at least that much); None for stdin or pipes."""
    if path == "-":
        return None
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None


READ_ERRORS = (OSError, EOFError, ValueError, RuntimeError)


def read_errors() -> tuple[type[Exception], ...]:
    """READ_ERRORS, and xz's own error once lzma is in use."""
    lzma = sys.modules.get("lzma")
    return READ_ERRORS + ((lzma.LZMAError,) if lzma is not None else ())


def read_chunks(stream: BinaryIO, path: str, size: int = CHUNK_BYTES,
                live: bool = False) -> Iterator[bytes]:
    """Chunks of up to `size` bytes.  A `live` input (stdin, a pipe) yields what has arrived as
    soon as nothing more is waiting: `argus -w - | ra -r -` prints as records come, not per 4 MB."""
    read = stream.read1 if live and hasattr(stream, "read1") else stream.read
    errors = read_errors()
    while True:
        try:
            chunk = read(size)
            if live and chunk:
                chunk = top_up(stream, chunk, size)
        except errors as err:
            raise InputError(f"{path}: cannot decompress: {err}") from None
        if not chunk:
            return
        yield chunk


def top_up(stream: BinaryIO, chunk: bytes, size: int) -> bytes:
    """Add what is already waiting on a live input, up to `size` bytes, without blocking."""
    parts = [chunk]
    have = len(chunk)
    while have < size and waiting(stream):
        more = stream.read1(size - have)  # type: ignore[attr-defined]
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts) if len(parts) > 1 else chunk


def waiting(stream: BinaryIO) -> bool:
    import select

    try:
        ready, _, _ = select.select([stream.fileno()], [], [], 0)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False
    return bool(ready)


def iter_batches(path: str, source: str | None = None, chunk_bytes: int = CHUNK_BYTES,
                 select: RowSelector | None = None,
                 columns: frozenset[str] | None = None) -> Iterator[pl.DataFrame]:
    """Yield the records of one input as batches; raise CorruptInput at the first damage.

    `select`: only the records it keeps, judged on the columns it names; `columns`: only these
    are decoded, the others are zeros (RecordReader.feed).
    """
    return read_input(path, source, chunk_bytes, lambda r, chunk: r.feed(chunk, select, columns))


def iter_raw_batches(path: str, source: str | None = None, chunk_bytes: int = CHUNK_BYTES,
                     select: RowSelector | None = None) -> Iterator[RawBatch]:
    """`iter_batches`, with the records as the input holds them (RecordReader.feed_raw)."""
    return read_input(path, source, chunk_bytes, lambda r, chunk: r.feed_raw(chunk, select))


def iter_copies(path: str, columns: frozenset[str],
                pick: Callable[[dict[str, np.ndarray]], np.ndarray] | None,
                source: str | None = None, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Copies]:
    """`iter_raw_batches` with the selection (if any) judged on numpy columns, only `columns`
    decoded (RecordReader.feed_copies): reading, filtering and copying without polars."""
    return read_input(path, source, chunk_bytes, lambda r, chunk: r.feed_copies(chunk, columns, pick))


def iter_columns(path: str, columns: frozenset[str] | None, source: str | None = None,
                 chunk_bytes: int = CHUNK_BYTES) -> Iterator[Decoded]:
    """The records of one input as numpy columns, `columns` only (None: every column the
    records carry; RecordReader.feed_columns): reading without polars."""
    return read_input(path, source, chunk_bytes, lambda r, chunk: r.feed_columns(chunk, columns))


def read_input(path: str, source: str | None, chunk_bytes: int,
               feed: Callable[[RecordReader, bytes], B]) -> Iterator[B]:
    name = source or ("stdin" if path == "-" else path)
    size = input_size(path)
    reader = RecordReader(name, expected_bytes=size)
    stream = open_input(path)
    try:
        for chunk in read_chunks(stream, name, chunk_bytes, live=size is None):
            batch = feed(reader, chunk)
            if batch.height:
                yield batch
            del batch  # not held while the next chunk is decoded (racluster's peak memory)
            if reader.error is not None:
                raise reader.error
        error = reader.finish()
        if error is not None:
            raise error
    except InputError as err:
        # A decompressor failing half-way is damage too: keep what came before it.
        raise CorruptInput(name, reader._consumed, str(err).split(": ", 1)[-1],
                           reader.records_read) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def expand_directories(paths: list[str]) -> list[str]:
    """`-R`: every file under each directory, recursively, sorted, skipping dot files and dirs."""
    out: list[str] = []
    for top in paths:
        if not os.path.isdir(top):
            out.append(top)
            continue
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return out
