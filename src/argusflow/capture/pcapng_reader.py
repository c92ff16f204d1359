"""pcapng files: sections of either byte order, many interfaces with their own link type and
timestamp resolution (if_tsresol, if_tsoffset); enhanced, simple and obsolete packet blocks.
Every other block type is skipped."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from argusflow.capture import linktype as lt
from argusflow.capture import walk
from argusflow.capture.batch import PacketBatch
from argusflow.capture.reader import CaptureReader

SHB = 0x0A0D0D0A
IDB = 1
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_TSRESOL = 9
OPT_TSOFFSET = 14
_CORRUPT_REASONS = {
    walk.BAD_CAPLEN: "packet block caplen larger than the block or than {max}",
    walk.BAD_BLOCK_LENGTH: "impossible block length {blen}",
    walk.BAD_INTERFACE: "packet block names an interface that was not described",
    walk.BAD_TRAILER: "block trailer length differs from its header length {blen}",
}


@dataclass(frozen=True, slots=True)
class Interface:
    linktype: int
    snaplen: int
    tsresol: int = 6  # power of ten (or of two when binary) of the timestamp unit
    binary: bool = False
    tsoffset: int = 0  # seconds added to every timestamp

    def to_us(self, units: np.ndarray) -> np.ndarray:
        """Timestamp units (uint64) to int64 microseconds."""
        u = units.astype(np.int64)  # 2^63 units is far beyond any real capture
        if self.binary:
            whole = u >> self.tsresol
            part = ((u & ((1 << self.tsresol) - 1)) * 1_000_000) >> self.tsresol
            us = whole * 1_000_000 + part
        elif self.tsresol >= 6:
            us = u // (10 ** (self.tsresol - 6))
        else:
            us = u * (10 ** (6 - self.tsresol))
        return us + self.tsoffset * 1_000_000 if self.tsoffset else us


class PcapngReader(CaptureReader):
    format_name = "pcapng"

    def _batches(self) -> Iterator[PacketBatch]:
        self.interfaces: list[Interface] = []
        self._section_base = 0  # global index of this section's first interface
        self._big = False
        rows = np.empty((6, self.batch_size), dtype=np.int64)
        carry = b""
        eof = False
        while not eof:
            buf = self._new_buffer()
            buf[: len(carry)] = np.frombuffer(carry, dtype=np.uint8)
            walker, view = walk.walker(walk.walk_pcapng, buf, self.use_jit)
            fill, pos, n, status, reason = len(carry), 0, 0, walk.NEED_MORE, 0
            while True:
                local = len(self.interfaces) - self._section_base
                snap = self.interfaces[self._section_base].snaplen if local > 0 else 0
                got, pos, status, reason = walker(
                    view, pos, fill, self.batch_size - n, self._big, lt.MAX_CAPLEN, local, snap, rows, n
                )
                n += got
                if status == walk.CONTROL_BLOCK:
                    step = self._control_block(buf, pos, fill, n)
                    if step > 0:
                        pos += step
                        continue
                    if step < 0:  # malformed control block
                        status = walk.CORRUPT
                        break
                    if n and self._at_shb(buf, pos, fill):
                        break  # a new section: finish this batch first
                    status = walk.NEED_MORE
                if status != walk.NEED_MORE:
                    break
                read = self._fill(buf, fill, len(buf))
                if read == 0:
                    eof = fill < len(buf)
                    break
                fill += read
            if n:
                yield self._batch(buf, rows[:, :n])
            if status == walk.CORRUPT:
                if reason:
                    blen = _u32(buf, pos + 4, self._big) if pos + 8 <= fill else 0
                    problem = _CORRUPT_REASONS[reason].format(max=lt.MAX_CAPLEN, blen=blen)
                    self._fail(self.file_offset + pos, problem)
                return
            if eof and pos < fill:
                self._fail(self.file_offset + pos, "file ends inside a block")
                return
            carry = buf[pos:fill].tobytes()
            self.file_offset += pos

    def _at_shb(self, buf: np.ndarray, pos: int, fill: int) -> bool:
        return pos + 4 <= fill and _u32(buf, pos, self._big) in (SHB, _swap32(SHB))

    def _control_block(self, buf: np.ndarray, pos: int, fill: int, n: int) -> int:
        """Parse the SHB/IDB at pos: its length if done, 0 if more bytes are needed, -1 if bad.
        An SHB is left alone (0) while the batch holds packets of the previous section."""
        if pos + 12 > fill:
            return 0
        btype = _u32(buf, pos, self._big)
        if btype in (SHB, _swap32(SHB)):
            if n:
                return 0
            magic = _u32(buf, pos + 8, False)
            if magic not in (BYTE_ORDER_MAGIC, _swap32(BYTE_ORDER_MAGIC)):
                self._fail(self.file_offset + pos, "section header with a bad byte-order magic")
                return -1
            self._big = magic != BYTE_ORDER_MAGIC
        blen = _u32(buf, pos + 4, self._big)
        if blen < 12 or blen % 4 or blen > lt.MAX_CAPLEN:
            self._fail(self.file_offset + pos, f"impossible block length {blen}")
            return -1
        if pos + blen > fill:
            return 0
        block = buf[pos : pos + blen].tobytes()
        if btype == IDB:
            if blen < 20:
                self._fail(self.file_offset + pos, f"interface block too short ({blen} bytes)")
                return -1
            self._add_interface(block, pos)
        else:
            self._section_base = len(self.interfaces)
        return blen

    def _add_interface(self, block: bytes, pos: int) -> None:
        o = ">" if self._big else "<"
        link, _, snaplen = struct.unpack_from(o + "HHI", block, 8)
        tsresol, binary, tsoffset = 6, False, 0
        p, end = 16, len(block) - 4
        while p + 4 <= end:  # options: code u16, length u16, value padded to 4
            code, olen = struct.unpack_from(o + "HH", block, p)
            if code == 0 or p + 4 + olen > end:
                break
            if code == OPT_TSRESOL and olen >= 1:
                binary, tsresol = bool(block[p + 4] & 0x80), block[p + 4] & 0x7F
            elif code == OPT_TSOFFSET and olen >= 8:
                tsoffset = struct.unpack_from(o + "q", block, p + 4)[0]
            p += 4 + ((olen + 3) & ~3)
        if (not binary and tsresol > 18) or (binary and tsresol > 62):
            self._warn("bad_tsresol", self.file_offset + pos, f"unusable if_tsresol {tsresol}")
            tsresol, binary = 6, False
        if not lt.is_supported(link):
            self._warn("linktype_unknown", self.file_offset + pos, f"unsupported link type {link}")
        self.interfaces.append(Interface(link, snaplen, tsresol, binary, tsoffset))

    def _batch(self, buf: np.ndarray, rows: np.ndarray) -> PacketBatch:
        iface = rows[3] + self._section_base
        units = (rows[4].astype(np.uint64) << np.uint64(32)) | rows[5].astype(np.uint64)
        ts_us = np.empty(rows.shape[1], dtype=np.int64)
        links = np.array([i.linktype for i in self.interfaces], dtype=np.uint16)
        present = np.unique(iface)
        for g in present:
            sel = iface == g if len(present) > 1 else slice(None)
            ts_us[sel] = self.interfaces[int(g)].to_us(units[sel])
        return PacketBatch(
            ts_us=ts_us,
            caplen=rows[1].astype(np.uint32),
            wirelen=rows[2].astype(np.uint32),
            linktype=links[iface],
            ifindex=iface.astype(np.uint16),
            offset=rows[0].copy(),
            data=buf,
            first_index=self.packets,
        )


def _u32(buf: np.ndarray, p: int, big: bool) -> int:
    return int.from_bytes(buf[p : p + 4].tobytes(), "big" if big else "little")


def _swap32(v: int) -> int:
    return int.from_bytes(v.to_bytes(4, "little"), "big")
