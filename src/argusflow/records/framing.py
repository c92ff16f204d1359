"""Framing: find the records in a buffer and the DSRs inside each flow record.

This is the one inherently sequential step of reading Argus data (each header gives the next
one's position).  Two implementations give the same Frame: a compiled kernel (records.kernels,
built ahead of time by argusflow.aot), used for inputs big enough to repay loading it, which
lists the DSRs grouped by type; and a numpy framer (pointer doubling over the words that look
like record headers, then all records' DSRs walked side by side) for small inputs and when
the kernels cannot be had.  Everything after framing is vectorised per DSR type.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from argusflow.records import kernels
from argusflow.records.kernels import BAD_HEADER, BAD_MAR_LENGTH, OK

# For sizing guesses (capture/jit.py): argus flow records are 100-350 bytes.
AVERAGE_RECORD_BYTES = 150

COMPILED_FROM_BYTES = 2 << 20  # inputs from this size on take the compiled kernels (see below)
NUMBA_FROM_BYTES = 350 << 20  # ... and numba's JIT when the extension cannot be had


def numba_active() -> bool:
    """capture.jit.active() without importing it: numba is loaded (or tests force it)."""
    jit = sys.modules.get("argusflow.capture.jit")
    return bool(jit is not None and jit.active())


def forced() -> bool | None:
    """capture.jit.FORCE (tests): True for compiled code, False for numpy, None to choose."""
    jit = sys.modules.get("argusflow.capture.jit")
    if jit is None or jit.FORCE is None:
        return None
    return bool(jit.FORCE and jit.AVAILABLE)


_KERNELS: dict[str, Callable[..., Any]] = {}


def kernel(name: str, jit: bool = False) -> Callable[..., Any] | None:
    """records.kernels' `name` compiled: from argusflow.aot's extension (built once if missing),
    else numba's JIT when numba is loaded already or `jit` says to load it; None: use numpy."""
    fn = _KERNELS.get(name)
    if fn is not None:
        return fn
    if AOT_POSSIBLE:
        from argusflow import aot

        fn = aot.function(name)
    if fn is None and (jit or numba_active()):
        fn = kernels.COMPILED[name].numba()
    if fn is not None:
        _KERNELS[name] = fn
    return fn


AOT_POSSIBLE = importlib.util.find_spec("numba") is not None  # the build needs numba


def extension_loaded() -> bool:
    aot = sys.modules.get("argusflow.aot")
    return bool(aot is not None and aot.loaded())


def kernels_loaded() -> bool:
    """use_kernels without loading anything: compiled code costs nothing more right now."""
    force = forced()
    if force is not None:
        return force
    return numba_active() or extension_loaded()


def use_kernels(size: int | None) -> bool:
    """Frame and gather with the compiled kernels an input of `size` bytes (None: unknown yet)?

    Yes once they are loaded (the probe, an earlier batch).  Loading argusflow.aot's extension
    costs ~25 ms of imports, more than the kernels save below COMPILED_FROM_BYTES: small inputs
    stay with numpy.  Without the extension (no compiler, ARGUSFLOW_JIT), numba's JIT costs
    ~0.5 s to load and repays that from NUMBA_FROM_BYTES on.
    """
    force = forced()
    if force is not None:
        return force
    if numba_active() or extension_loaded():
        return True
    if size is None or size < COMPILED_FROM_BYTES:
        return False
    if kernel("frame_records") is not None:
        return True
    return size >= NUMBA_FROM_BYTES and kernel("frame_records", jit=True) is not None


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
    by_kind: bool = False  # the DSRs come grouped by type (ascending), each record's in order

    def take(self, rows: np.ndarray) -> Frame:
        """The frame of records `rows` only (ascending), their DSRs renumbered to match."""
        number = np.full(len(self.starts), -1, dtype=np.int64)
        number[rows] = np.arange(len(rows))
        keep = number[self.dsr_rec] >= 0
        return Frame(self.starts[rows], self.lengths[rows], self.end, self.status,
                     number[self.dsr_rec[keep]], self.dsr_pos[keep], self.dsr_size[keep],
                     self.dsr_kind[keep], self.dsr_sub[keep], self.dsr_qual[keep],
                     self.bad_dsrs[rows], self.by_kind)


def frame(buf: np.ndarray, compiled: bool | None = None) -> Frame:
    """Frame `buf`; `compiled` chooses the compiled kernel, else the numpy framer (the same
    records and DSRs; the kernel lists the DSRs grouped by type, numpy rank by rank).

    None: the caller cannot tell how much input follows (a stream): compiled if the kernels are
    loaded already, since loading them costs more than the numpy framer (use_kernels).
    """
    walk = kernel("frame_records") if (use_kernels(None) if compiled is None else compiled) else None
    if walk is None:
        return frame_numpy(buf)
    buf = np.ascontiguousarray(buf)
    n = len(buf)
    kinds = np.zeros(128, dtype=np.int64)
    none8, none64 = np.empty(0, dtype=np.uint8), np.empty(0, dtype=np.int64)
    nrec, ndsr, end, status = walk(buf, n, True, False, kinds, none64, none64, none64, none64,
                                   none64, none8, none8, none8, none64)
    # Counting sort: each type's DSRs from the slot after the previous types' (decode then
    # slices them out by type, with no sort).
    kinds = np.cumsum(kinds) - kinds
    starts, lengths, bad = (np.empty(nrec, dtype=np.int64), np.empty(nrec, dtype=np.int64),
                            np.zeros(nrec, dtype=np.int64))
    drec, dpos, dsize = (np.empty(ndsr, dtype=np.int64) for _ in range(3))
    dkind, dsub, dqual = (np.empty(ndsr, dtype=np.uint8) for _ in range(3))
    walk(buf, n, True, True, kinds, starts, lengths, drec, dpos, dsize, dkind, dsub, dqual, bad)
    return Frame(starts, lengths, int(end), int(status), drec, dpos, dsize, dkind, dsub, dqual,
                 bad, by_kind=True)


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


def record_bounds(buf: np.ndarray, compiled: bool | None = None
                  ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Starts, lengths, end and status of the records of `buf`, as the kernel finds them
    (with the kernel if `compiled`, None: if it is loaded already).

    Records start on word boundaries, so every word that holds a good header is a candidate
    whose successor is the word after it; the records are the chain of candidates from 0.
    """
    walk = _KERNELS.get("frame_records") if compiled is None else (
        kernel("frame_records") if compiled else None)
    if walk is not None:
        return compiled_bounds(walk, buf)
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


def compiled_bounds(walk: Callable[..., Any], buf: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """record_bounds by the compiled kernel, which walks the record headers only (twice: to
    count them, then to write them into arrays of that size)."""
    buf = np.ascontiguousarray(buf)
    kinds = np.zeros(128, dtype=np.int64)
    none8, none64 = np.empty(0, dtype=np.uint8), np.empty(0, dtype=np.int64)
    nrec, _, end, status = walk(buf, len(buf), False, False, kinds, none64, none64, none64,
                                none64, none64, none8, none8, none8, none64)
    starts, lengths = np.empty(nrec, dtype=np.int64), np.empty(nrec, dtype=np.int64)
    walk(buf, len(buf), False, True, kinds, starts, lengths, none64, none64, none64, none8, none8,
         none8, none64)
    return starts, lengths, int(end), int(status)


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
