"""open_capture: pick the reader from the first bytes (never from the file name).

gzip, bzip2 and xz wrappers are unwrapped with the standard library and the magic is looked at
again inside.  `-` reads standard input.  Bytes already consumed to sniff a magic are given back to
the reader through a small prefix stream, so pipes work as well as files.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from argusflow.capture.pcap_reader import MAGICS, PcapReader
from argusflow.capture.pcapng_reader import SHB, PcapngReader
from argusflow.capture.reader import DEFAULT_BATCH, DEFAULT_BUFFER, CaptureReader
from argusflow.errors import CorruptInput

_DECOMPRESSORS: dict[bytes, Callable[[Any], Any]] = {
    b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f, mode="rb"),
    b"BZh": bz2.BZ2File,
    b"\xfd7zXZ\x00": lzma.LZMAFile,
}


class _Prefixed(io.RawIOBase):
    """A stream that first returns `prefix`, then whatever `raw` has left."""

    def __init__(self, prefix: bytes, raw: BinaryIO) -> None:
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            k = min(len(b), len(self._prefix))
            b[:k] = self._prefix[:k]
            self._prefix = self._prefix[k:]
            return k
        return self._raw.readinto(b)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._raw.close()
        super().close()


def _sniff(stream: BinaryIO, n: int = 6) -> bytes:
    head = b""
    while len(head) < n:
        chunk = stream.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _size(stream: BinaryIO) -> int | None:
    """Bytes in a regular file; None for pipes and terminals."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _unwrap(stream: BinaryIO, name: str) -> tuple[bytes, BinaryIO, int]:
    """Peel compression layers: the capture's first bytes, a stream from its byte 0, and how
    many layers there were."""
    for layers in range(3):
        try:
            head = _sniff(stream)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            stream.close()
            raise CorruptInput(name, 0, f"bad compressed stream: {exc}") from None
        stream = _Prefixed(head, stream)  # type: ignore[assignment]
        wrapper = next((w for m, w in _DECOMPRESSORS.items() if head.startswith(m)), None)
        if wrapper is None:
            return head, stream, layers
        stream = wrapper(stream)  # type: ignore[assignment]
    stream.close()
    raise CorruptInput(name, 0, "more than 3 layers of compression")


def open_capture(
    path: str | os.PathLike[str],
    batch_size: int = DEFAULT_BATCH,
    buffer_size: int = DEFAULT_BUFFER,
    reuse_buffers: bool = False,
) -> CaptureReader:
    """Open a pcap/pcapng capture (possibly compressed; `-` = stdin) for batch reading.

    Raises CorruptInput when the file is not a capture at all; damage later in the file is
    reported through the reader's `error`/`warnings` after the good packets have been yielded.
    """
    name = str(path)
    if name == "-":
        stream: BinaryIO = sys.stdin.buffer
        name = "stdin"
    else:
        try:
            stream = open(Path(path), "rb", buffering=0)  # noqa: SIM115 - the reader owns it
        except OSError as exc:
            raise CorruptInput(name, 0, f"cannot open: {exc.strerror or exc}") from None
    size = _size(stream)
    head, stream, layers = _unwrap(stream, name)
    if layers and size is not None:
        size *= 5  # compressed: a rough guess of the capture's size
    kwargs: dict[str, Any] = {"batch_size": batch_size, "buffer_size": buffer_size}
    kwargs.update(reuse_buffers=reuse_buffers, size_hint=size)
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in MAGICS:
        return PcapReader(stream, name, **kwargs)
    if len(head) >= 4 and int.from_bytes(head[:4], "little") == SHB:
        return PcapngReader(stream, name, **kwargs)
    stream.close()
    what = "empty file" if not head else f"unknown capture format (magic {head[:4].hex()})"
    raise CorruptInput(name, 0, what)
