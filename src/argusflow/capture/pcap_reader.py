"""Classic libpcap files: either byte order, micro- or nanosecond timestamps."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from argusflow.capture import linktype as lt
from argusflow.capture import walk
from argusflow.capture.batch import PacketBatch
from argusflow.capture.reader import CaptureReader

# magic as read little-endian -> (big-endian file, nanosecond timestamps)
MAGICS: dict[int, tuple[bool, bool]] = {
    0xA1B2C3D4: (False, False),
    0xD4C3B2A1: (True, False),
    0xA1B23C4D: (False, True),
    0x4D3CB2A1: (True, True),
}
FILE_HEADER = 24
RECORD_HEADER = 16


class PcapReader(CaptureReader):
    format_name = "pcap"

    def _batches(self) -> Iterator[PacketBatch]:
        header = self._read_exact(FILE_HEADER)
        if len(header) < FILE_HEADER:
            self._fail(len(header), "file ends inside the pcap file header")
            return
        big, nano = MAGICS[struct.unpack_from("<I", header)[0]]
        order = ">" if big else "<"
        major, minor, _, _, snaplen, raw_link = struct.unpack(order + "HHiIII", header[4:])
        # libpcap: before 2.3 caplen and len were swapped in record headers; 2.3 is ambiguous
        self._swapped = 1 if (major, minor) < (2, 3) else 2 if (major, minor) == (2, 3) else 0
        self.snaplen = snaplen
        self.linktype, garbage = lt.split_linktype_field(raw_link)
        if garbage:
            self._warn("linktype_garbage", 20, f"garbage upper bits in link-type field 0x{raw_link:08x}")
        if not lt.is_supported(self.linktype):
            self._warn("linktype_unknown", 20, f"unsupported link type {self.linktype}")
        self._big, self._nano = big, nano
        self.file_offset = FILE_HEADER
        yield from self._records()

    def _records(self) -> Iterator[PacketBatch]:
        rows = np.empty((5, self.batch_size), dtype=np.int64)
        carry = b""
        eof = False
        while not eof:
            buf = self._new_buffer()
            buf[: len(carry)] = np.frombuffer(carry, dtype=np.uint8)
            walker, view = walk.walker(walk.walk_pcap, buf, self.use_jit)
            fill, pos, n, status = len(carry), 0, 0, walk.NEED_MORE
            while True:
                got, pos, status, _ = walker(
                    view, pos, fill, self.batch_size - n, self._big, self._swapped, lt.MAX_CAPLEN, rows, n
                )
                n += got
                if status != walk.NEED_MORE:
                    break
                read = self._fill(buf, fill, len(buf))
                if read == 0:
                    eof = fill < len(buf)  # buffer not full: the stream has ended
                    break
                fill += read
            if n:
                yield self._batch(buf, rows[:, :n])
            if status == walk.CORRUPT:
                caplen = max(struct.unpack_from(">II" if self._big else "<II", buf, pos + 8))
                problem = f"record header claims caplen {caplen} (> {lt.MAX_CAPLEN})"
                self._fail(self.file_offset + pos, problem)
                return
            if eof and pos < fill:
                where = "record header" if fill - pos < RECORD_HEADER else "packet data"
                self._fail(self.file_offset + pos, f"file ends inside a {where}")
                return
            carry = buf[pos:fill].tobytes()
            self.file_offset += pos

    def _hold_bad_times(self, ts_us: np.ndarray, sec: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """A packet whose fraction is out of range keeps the time of the last packet before it
        with a valid one: the real argus's last time does not move for it (corpus:
        tcpdump__timestamp_invalid_nano).  With none before, the fraction is clamped."""
        idx = np.where(bad, -1, np.arange(len(ts_us)))
        idx = np.maximum.accumulate(idx)
        last = getattr(self, "_last_good_us", None)
        clamped = sec * 1_000_000 + 999_999
        held = np.where(idx >= 0, ts_us[np.maximum(idx, 0)], clamped if last is None else last)
        out = np.where(bad, held, ts_us)
        self._last_good_us = int(out[-1])
        return out

    def _batch(self, buf: np.ndarray, rows: np.ndarray) -> PacketBatch:
        sec, frac = rows[1], rows[2]
        limit = 1_000_000_000 if self._nano else 1_000_000
        bad = frac >= limit
        if bad.any():
            first = int(rows[0, np.argmax(bad)]) - RECORD_HEADER
            problem = f"timestamp fraction >= {limit}"
            self._warn("bad_fraction", self.file_offset + first, problem, int(bad.sum()))
        ts_us = sec * 1_000_000 + (frac // 1000 if self._nano else frac)
        if bad.any():
            ts_us = self._hold_bad_times(ts_us, sec, bad)
        elif len(ts_us):
            self._last_good_us = int(ts_us[-1])
        n = rows.shape[1]
        return PacketBatch(
            ts_us=ts_us,
            caplen=rows[3].astype(np.uint32),
            wirelen=rows[4].astype(np.uint32),
            linktype=np.full(n, self.linktype, dtype=np.uint16),
            ifindex=np.zeros(n, dtype=np.uint16),
            offset=rows[0].copy(),
            data=buf,
            first_index=self.packets,
        )
