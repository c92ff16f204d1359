"""Record-header walkers: the one inherently sequential step of reading a capture.

Each record's position depends on the previous record's length, so this loop cannot be
vectorised.  The same source runs compiled by numba for big inputs (about 10-15 ns a record) and
as plain Python for small ones or without numba (~3 us a record; callers then pass a memoryview,
whose indexing yields ints fast).  See jit.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from argusflow.capture.jit import Kernel

# walker status codes (third return value)
NEED_MORE = 0  # stopped at a record that does not fit in the buffer (or the buffer is used up)
BATCH_FULL = 1  # wrote max_pkts records
CORRUPT = 2  # the record header at `pos` is impossible (reason in the 4th return value)
CONTROL_BLOCK = 3  # pcapng: a section/interface block at `pos` that Python must parse

# pcapng reasons for CORRUPT
BAD_CAPLEN = 1
BAD_BLOCK_LENGTH = 2
BAD_INTERFACE = 3
BAD_TRAILER = 4

def _u32(buf: Any, p: int, big: bool) -> int:
    if big:
        return (int(buf[p]) << 24) | (int(buf[p + 1]) << 16) | (int(buf[p + 2]) << 8) | int(buf[p + 3])
    return (int(buf[p + 3]) << 24) | (int(buf[p + 2]) << 16) | (int(buf[p + 1]) << 8) | int(buf[p])


def _u16(buf: Any, p: int, big: bool) -> int:
    if big:
        return (int(buf[p]) << 8) | int(buf[p + 1])
    return (int(buf[p + 1]) << 8) | int(buf[p])


def _walk_pcap(
    buf: Any,
    pos: int,
    end: int,
    max_pkts: int,
    big: bool,
    swapped: int,
    max_caplen: int,
    out: np.ndarray,
    base: int,
) -> tuple[int, int, int, int]:
    """Classic pcap: records from `pos` while whole records fit before `end`, into the columns of
    `out` (data offset, ts seconds, ts fraction, caplen, wirelen), written while the header is
    in cache, starting at column `base`.

    `swapped` (files older than pcap 2.4 store caplen and len the other way round):
    0 = caplen at +8, 1 = caplen at +12, 2 = the smaller of the two (pcap 2.3)."""
    n = 0
    while n < max_pkts:
        if pos + 16 > end:
            return n, pos, NEED_MORE, 0
        caplen = _u32(buf, pos + 8, big)
        wirelen = _u32(buf, pos + 12, big)
        if swapped == 1 or (swapped == 2 and wirelen < caplen):
            caplen, wirelen = wirelen, caplen
        if caplen > max_caplen:
            return n, pos, CORRUPT, BAD_CAPLEN
        nxt = pos + 16 + caplen
        if nxt > end:
            return n, pos, NEED_MORE, 0
        out[0, base + n] = pos + 16
        out[1, base + n] = _u32(buf, pos, big)
        out[2, base + n] = _u32(buf, pos + 4, big)
        out[3, base + n] = caplen
        out[4, base + n] = wirelen
        n += 1
        pos = nxt
    return n, pos, BATCH_FULL, 0


def _walk_pcapng(
    buf: Any,
    pos: int,
    end: int,
    max_pkts: int,
    big: bool,
    max_caplen: int,
    n_ifaces: int,
    spb_snaplen: int,
    out: np.ndarray,
    base: int,
) -> tuple[int, int, int, int]:
    """pcapng packet blocks (EPB, SPB, obsolete PB) into the columns of `out`:
    (data offset, caplen, wirelen, interface, ts high, ts low).  Stops at SHB/IDB blocks."""
    n = 0
    while n < max_pkts:
        if pos + 12 > end:
            return n, pos, NEED_MORE, 0
        btype = _u32(buf, pos, big)
        blen = _u32(buf, pos + 4, big)
        if btype == 0x0A0D0D0A or btype == 1:
            return n, pos, CONTROL_BLOCK, 0
        if blen < 12 or blen % 4 != 0 or blen > max_caplen + 4096:
            return n, pos, CORRUPT, BAD_BLOCK_LENGTH
        if pos + blen > end:
            return n, pos, NEED_MORE, 0
        if _u32(buf, pos + blen - 4, big) != blen:
            return n, pos, CORRUPT, BAD_TRAILER
        if btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if blen < 32:
                return n, pos, CORRUPT, BAD_BLOCK_LENGTH
            if btype == 6:
                iface = _u32(buf, pos + 8, big)
            else:
                iface = _u16(buf, pos + 8, big)
            caplen = _u32(buf, pos + 20, big)
            if iface >= n_ifaces:
                return n, pos, CORRUPT, BAD_INTERFACE
            if caplen > blen - 32 or caplen > max_caplen:
                return n, pos, CORRUPT, BAD_CAPLEN
            out[0, base + n] = pos + 28
            out[1, base + n] = caplen
            out[2, base + n] = _u32(buf, pos + 24, big)
            out[3, base + n] = iface
            out[4, base + n] = _u32(buf, pos + 12, big)
            out[5, base + n] = _u32(buf, pos + 16, big)
            n += 1
        elif btype == 3:  # simple packet block: no timestamp, interface 0
            if blen < 16:
                return n, pos, CORRUPT, BAD_BLOCK_LENGTH
            if n_ifaces < 1:
                return n, pos, CORRUPT, BAD_INTERFACE
            wirelen = _u32(buf, pos + 8, big)
            caplen = min(wirelen, blen - 16)
            if spb_snaplen > 0:
                caplen = min(caplen, spb_snaplen)
            out[0, base + n] = pos + 12
            out[1, base + n] = caplen
            out[2, base + n] = wirelen
            out[3, base + n] = 0
            out[4, base + n] = 0
            out[5, base + n] = 0
            n += 1
        pos += blen
    return n, pos, BATCH_FULL, 0


walk_pcap = Kernel(_walk_pcap, deps=("_u32", "_u16"), aot="walk_pcap")
walk_pcapng = Kernel(_walk_pcapng, deps=("_u32", "_u16"), aot="walk_pcapng")


def walker(kernel: Kernel, buf: np.ndarray, compiled: bool) -> tuple[Any, Any]:
    """(function, what it indexes): the compiled loop over the array, or the Python loop over a
    memoryview (whose indexing yields ints much faster than an array's)."""
    return (kernel.jit(), buf) if compiled else (kernel.py, memoryview(buf))
