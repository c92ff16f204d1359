"""Framing: find the records in a buffer and the DSRs inside each flow record.

This is the one inherently sequential step of reading Argus data (each header gives the next
one's position).  Two implementations give the same Frame: a small numba kernel, used when numba
is loaded already (the probe), and a numpy framer (pointer doubling over the words that look like
record headers, then all records' DSRs walked side by side) that never pays numba's start-up of
close to a second.  Everything after framing is vectorised per DSR type.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# For sizing guesses (capture/jit.py): argus flow records are 100-350 bytes.
AVERAGE_RECORD_BYTES = 150

# Status codes of the kernel.
OK, BAD_HEADER, BAD_MAR_LENGTH = 0, 1, 2


def _frame(buf, n, starts, lengths, drec, dpos, dsize, dkind, dsub, dqual, dbad):  # noqa: ANN001
    pos = 0
    nrec = 0
    ndsr = 0
    status = OK
    while pos + 4 <= n:
        b0 = buf[pos]
        kind = b0 & 0xF0
        length = ((np.int64(buf[pos + 2]) << 8) | buf[pos + 3]) * 4
        if length == 0 or (b0 & 0x0F) != 3 or kind == 0 or kind > 0x80:
            status = BAD_HEADER
            break
        if kind == 0x80 and length != 128 and length != 4:
            status = BAD_MAR_LENGTH
            break
        if pos + length > n:
            break
        starts[nrec] = pos
        lengths[nrec] = length
        if kind != 0x80:
            cur = pos + 4
            end = pos + length
            while cur + 4 <= end:
                t = buf[cur]
                st = buf[cur + 1]
                q = buf[cur + 2]
                if t & 0x80:
                    words = 1
                elif st & 0x80:
                    words = (np.int64(q) << 8) | buf[cur + 3]
                else:
                    words = np.int64(buf[cur + 3])
                size = words * 4
                if words == 0 or cur + size > end:
                    dbad[nrec] += 1  # ra stops parsing the record here too
                    break
                drec[ndsr] = nrec
                dpos[ndsr] = cur
                dsize[ndsr] = size
                dkind[ndsr] = t & 0x7F
                dsub[ndsr] = st
                dqual[ndsr] = q
                ndsr += 1
                cur += size
        nrec += 1
        pos += length
    return nrec, ndsr, pos, status


class LazyKernel:
    """capture.jit.Kernel, made on first use: reading records never needs numba, and importing
    the capture package costs start-up time that `ra - filter` runs notice."""

    def __init__(self, fn: Callable[..., Any], deps: tuple[str, ...] = ()) -> None:
        self.fn, self.deps = fn, deps
        self._kernel: Any = None

    def kernel(self) -> Any:
        if self._kernel is None:
            from argusflow.capture.jit import Kernel

            self._kernel = Kernel(self.fn, deps=self.deps)
        return self._kernel

    def jit(self) -> Callable[..., Any]:
        return self.kernel().jit()

    @property
    def py(self) -> Callable[..., Any]:
        return self.kernel().py


def numba_active() -> bool:
    """capture.jit.active() without importing it: numba is loaded (or tests force it)."""
    jit = sys.modules.get("argusflow.capture.jit")
    return bool(jit is not None and jit.active())


FRAME = LazyKernel(_frame)


@dataclass
class Frame:
    """Records and DSRs found in a buffer; positions are byte offsets into it."""

    starts: np.ndarray
    lengths: np.ndarray
    end: int  # end of the last complete record
    status: int  # OK, or why framing stopped at `end`
    dsr_rec: np.ndarray
    dsr_pos: np.ndarray
    dsr_size: np.ndarray
    dsr_kind: np.ndarray
    dsr_sub: np.ndarray
    dsr_qual: np.ndarray
    bad_dsrs: np.ndarray  # per record: DSRs that could not be framed

    def take(self, rows: np.ndarray) -> Frame:
        """The frame of records `rows` only (ascending), their DSRs renumbered to match."""
        number = np.full(len(self.starts), -1, dtype=np.int64)
        number[rows] = np.arange(len(rows))
        keep = number[self.dsr_rec] >= 0
        return Frame(self.starts[rows], self.lengths[rows], self.end, self.status,
                     number[self.dsr_rec[keep]], self.dsr_pos[keep], self.dsr_size[keep],
                     self.dsr_kind[keep], self.dsr_sub[keep], self.dsr_qual[keep],
                     self.bad_dsrs[rows])


def frame(buf: np.ndarray, compiled: bool | None = None) -> Frame:
    """Frame `buf`; `compiled` chooses numba's kernel, else the numpy framer (same result).

    None means the caller cannot tell how much input follows (a stream): numba if it is loaded
    already, since importing it costs more than the numpy framer (capture/jit.py).
    """
    if compiled is None:
        compiled = numba_active()
    if not compiled:
        return frame_numpy(buf)
    n = len(buf)
    cap = n // 4 + 1
    starts = np.empty(cap, dtype=np.int64)
    lengths = np.empty(cap, dtype=np.int64)
    drec = np.empty(cap, dtype=np.int64)
    dpos = np.empty(cap, dtype=np.int64)
    dsize = np.empty(cap, dtype=np.int64)
    dkind = np.empty(cap, dtype=np.uint8)
    dsub = np.empty(cap, dtype=np.uint8)
    dqual = np.empty(cap, dtype=np.uint8)
    dbad = np.zeros(cap, dtype=np.int64)
    nrec, ndsr, end, status = FRAME.jit()(buf, n, starts, lengths, drec, dpos, dsize, dkind, dsub,
                                          dqual, dbad)
    return Frame(starts[:nrec].copy(), lengths[:nrec].copy(), int(end), int(status),
                 drec[:ndsr].copy(), dpos[:ndsr].copy(), dsize[:ndsr].copy(),
                 dkind[:ndsr].copy(), dsub[:ndsr].copy(), dqual[:ndsr].copy(), dbad[:nrec].copy())


# --- the numpy framer: the kernel's result without a per-record loop -------------------------

def header_status(buf: np.ndarray, pos: int) -> int | None:
    """The kernel's verdict on the record header at `pos`: None for a good record that fits."""
    n = len(buf)
    if pos + 4 > n:
        return OK
    b0 = int(buf[pos])
    kind = b0 & 0xF0
    length = (int(buf[pos + 2]) << 8 | int(buf[pos + 3])) * 4
    if length == 0 or b0 & 0x0F != 3 or kind == 0 or kind > 0x80:
        return BAD_HEADER
    if kind == 0x80 and length not in (128, 4):
        return BAD_MAR_LENGTH
    return OK if pos + length > n else None


def chain(nxt: np.ndarray, stop: int) -> np.ndarray:
    """[0, nxt[0], nxt[nxt[0]], ...] up to `stop`, by pointer doubling: log2(records) numpy
    passes instead of one Python step per record.  `nxt[stop]` must be `stop`."""
    path = np.zeros(1, dtype=np.int64)  # J^i(0) for i < len(path); jump is J^len(path)
    jump = nxt
    while True:
        ahead = jump[path]
        ahead = ahead[ahead != stop]  # the chain ends inside this stretch: keep its head
        path = np.concatenate([path, ahead])
        if len(ahead) < len(path) - len(ahead) or len(ahead) == 0:
            return path
        jump = jump[jump]


def record_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Starts, lengths, end and status of the records of `buf`, as the kernel finds them.

    Records start on word boundaries, so every word that holds a good header is a candidate
    whose successor is the word after it; the records are the chain of candidates from 0.
    """
    n = len(buf)
    first = header_status(buf, 0)
    if first is not None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0, first
    nw = n // 4
    b0 = buf[: nw * 4: 4]
    kind = b0 & 0xF0
    # Cheap byte tests first: few words pass them, and only those get a length.
    cand = np.flatnonzero(((b0 & 0x0F) == 3) & (kind != 0) & (kind <= 0x80))
    at = cand * 4
    length = (buf[at + 2].astype(np.int64) << 8 | buf[at + 3]) * 4
    good = (length > 0) & (at + length <= n)
    good &= (kind[cand] != 0x80) | (length == 128) | (length == 4)
    cand, length = cand[good], length[good]
    stop = len(cand)
    after = cand + length // 4  # the word after each candidate's record
    nxt = np.searchsorted(cand, after)  # ... as a candidate number, if it is one
    nxt[cand[np.minimum(nxt, stop - 1)] != after] = stop
    nxt = np.append(nxt, stop)
    path = chain(nxt, stop)
    starts, lengths = cand[path] * 4, length[path]
    end = int(starts[-1] + lengths[-1])
    status = header_status(buf, end)
    return starts, lengths, end, OK if status is None else status


def frame_numpy(buf: np.ndarray) -> Frame:
    """`frame` without numba: records by pointer doubling, then the DSRs of all flow records
    walked side by side, one numpy step per DSR rank (a record holds a few dozen at most)."""
    starts, lengths, end, status = record_bounds(buf)
    bad = np.zeros(len(starts), dtype=np.int64)
    flows = np.flatnonzero((buf[starts] & 0xF0) != 0x80)
    # Word numbers: records and DSRs start on word boundaries; a header is one big-endian word.
    head = buf[: len(buf) // 4 * 4].view(">u4")
    cur, stop = (starts[flows] >> 2) + 1, (starts[flows] + lengths[flows]) >> 2
    found: list[tuple[np.ndarray, ...]] = []  # record, word, words, header of each DSR
    while len(flows):
        live = cur < stop
        if not live.all():  # copies only when some record has no DSR left
            flows, cur, stop = flows[live], cur[live], stop[live]
        h = head[cur].astype(np.uint32)  # the native form: cheaper for what follows
        words = np.where(h & 0x800000, h & 0xFFFF, h & 0xFF)  # 16-bit length when the subtype says
        words[h >= 0x80000000] = 1
        words = words.astype(np.int64)
        after = cur + words
        broken = (words == 0) | (after > stop)
        if broken.any():
            bad[flows[broken]] += 1  # ra stops parsing the record here too
            ok = ~broken
            flows, cur, stop, words, h, after = (a[ok] for a in (flows, cur, stop, words, h, after))
        found.append((flows, cur, words, h))
        cur = after
    return dsr_frame(starts, lengths, end, status, bad, found)


def dsr_frame(starts: np.ndarray, lengths: np.ndarray, end: int, status: int, bad: np.ndarray,
              found: list[tuple[np.ndarray, ...]]) -> Frame:
    """Assemble the Frame.  DSRs come rank by rank (every record's first DSR, then every
    second...), not in buffer order: within one record, a later DSR still comes later."""
    if not found:
        none = np.zeros(0, np.int64)
        return Frame(starts, lengths, end, status, none, none, none, none.astype(np.uint8),
                     none.astype(np.uint8), none.astype(np.uint8), bad)
    rec, word, words, head = (np.concatenate([f[k] for f in found]) for k in range(4))
    # The header word's bytes, as the kernel reads them: type (less its top bit), subtype, qual.
    octets = head.astype(">u4").view(np.uint8).reshape(-1, 4)
    return Frame(starts, lengths, end, status, rec, word * 4, words * 4,
                 octets[:, 0] & 0x7F, octets[:, 1].copy(), octets[:, 2].copy(), bad)
