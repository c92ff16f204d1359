"""What the pcap and pcapng readers share: buffer management, damage reporting, statistics.

A reader fills a large buffer from the stream in small pieces and walks the record headers of
each piece right after it is read, while those bytes are still in the CPU cache (walking a cold
680 MB buffer costs ~100 ns a record in cache misses; walking warm pieces ~15 ns).  A batch ends
when it holds `batch_size` packets or its buffer is full; the partial record at the end of a full
buffer is carried into the next one.

Damage never raises from the iterator: packets before it are yielded, then iteration stops and
`error` holds a one-line `CorruptInput`.  Oddities that do not stop reading (an invalid timestamp
fraction, an unknown link type, garbage link-type bits) go to `warnings`, each kind once, with a
count in `stats`.
"""

from __future__ import annotations

import lzma
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from argusflow.capture import jit
from argusflow.capture.batch import PacketBatch
from argusflow.errors import CorruptInput

# A batch's working set (buffer, decoded columns, keys, the probe's packet matrix: ~1 KB a
# packet) is what the probe's memory grows by; 16k packets keep it near 20 MB, and larger
# batches were not faster (per-batch costs are ~1 ms; the columns stay in the L3 cache).
DEFAULT_BATCH = 16384
DEFAULT_BUFFER = 8 << 20  # ~12k packets of a typical mix (~700 bytes each)
READ_PIECE = 256 << 10  # small enough to stay in L2 while the walker runs over it
BYTES_PER_PACKET_GUESS = 200  # to turn a file size into a packet count for jit.wanted


class CaptureReader:
    """Iterable of PacketBatch from one capture stream.  Subclasses implement `_batches`."""

    format_name = "capture"

    def __init__(
        self,
        stream: BinaryIO,
        source: str,
        batch_size: int = DEFAULT_BATCH,
        buffer_size: int = DEFAULT_BUFFER,
        reuse_buffers: bool = False,
        size_hint: int | None = None,
    ) -> None:
        self.stream = stream
        self.source = source
        self.batch_size = max(1, int(batch_size))
        self.buffer_size = max(1 << 20, int(buffer_size))
        # With reuse_buffers a batch's bytes are only valid until the next-but-one batch: two
        # buffers alternate, which saves the page faults of fresh memory (~0.15 s per GB).
        self.reuse_buffers = reuse_buffers
        self._ring: list[np.ndarray] = []
        self._ring_next = 0
        self.error: CorruptInput | None = None
        self.warnings: list[CorruptInput] = []
        self.stats: Counter[str] = Counter()
        self.packets = 0  # packets yielded so far
        self.file_offset = 0  # file offset of the current buffer's byte 0
        self._started = False
        # compile the walker only when the input is big enough to repay numba's start-up
        packets = None if size_hint is None else size_hint // BYTES_PER_PACKET_GUESS
        self.use_jit = jit.wanted(packets, precompiled_kernels=True)

    # -- public -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[PacketBatch]:
        if self._started:
            raise RuntimeError("a CaptureReader can be iterated only once")
        self._started = True
        try:
            for batch in self._batches():
                self.packets += len(batch)
                yield batch
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:  # bad gzip/xz data, I/O
            self._fail(self.file_offset, f"read error: {exc}")

    def check(self) -> None:
        """Raise the fatal damage found while reading, if any (for callers who prefer raising)."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for subclasses ---------------------------------------------------------------------
    def _batches(self) -> Iterator[PacketBatch]:
        raise NotImplementedError

    def _fail(self, offset: int, problem: str) -> None:
        if self.error is None:
            self.error = CorruptInput(self.source, offset, problem, self.packets)

    def _warn(self, kind: str, offset: int, problem: str, count: int = 1) -> None:
        if kind not in self.stats:
            self.warnings.append(CorruptInput(self.source, offset, problem, self.packets))
        self.stats[kind] += count

    def _new_buffer(self) -> np.ndarray:
        if not self.reuse_buffers:
            return np.empty(self.buffer_size, dtype=np.uint8)
        if len(self._ring) < 2:
            self._ring.append(np.empty(self.buffer_size, dtype=np.uint8))
            return self._ring[-1]
        buf = self._ring[self._ring_next]
        self._ring_next ^= 1
        return buf

    def _read_exact(self, n: int) -> bytes:
        """Read exactly n bytes unless the stream ends first (then fewer)."""
        chunks = []
        while n > 0:
            chunk = self.stream.read(n)
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _fill(self, buf: np.ndarray, fill: int, limit: int) -> int:
        """Read up to READ_PIECE bytes into buf[fill:limit]; returns the count (0 at EOF)."""
        end = min(limit, fill + READ_PIECE)
        if end <= fill:
            return 0
        got = self.stream.readinto(memoryview(buf)[fill:end])  # type: ignore[attr-defined]
        return int(got or 0)
