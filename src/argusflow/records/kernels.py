"""The compiled loops of reading Argus records, in numba's subset of Python.

argusflow.aot compiles them ahead of time (KERNELS: frame_records, gather_fields); records.framing
and records.dsr_decode call them from there, or run their numpy equivalents when the extension
is missing.  Kept apart from their callers so that editing those does not rebuild the extension.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# Status codes of frame_records (records.framing re-exports them).
OK, BAD_HEADER, BAD_MAR_LENGTH = 0, 1, 2


def frame_records(buf, n, walk, fill, kinds, starts, lengths, drec, dpos, dsize, dkind, dsub,  # noqa: ANN001, ANN201, PLR0913
                  dqual, dbad):
    """Walk the record headers of buf[:n] from 0, and with `walk` the DSR headers of each flow
    record: the sequential part of reading.  Returns (records, DSRs, end, status).

    Two passes, so that the outputs are allocated once at their size: without `fill` it only
    counts the DSRs of each type into `kinds`; with `fill` it writes the records, and the DSRs
    grouped by type (kinds[t]: the next slot for type t, each record's in buffer order)."""
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
        if fill:
            starts[nrec] = pos
            lengths[nrec] = length
        if walk and kind != 0x80:
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
                    if fill:
                        dbad[nrec] += 1  # ra stops parsing the record here too
                    break
                t &= 0x7F
                if fill:
                    at = kinds[t]
                    kinds[t] = at + 1
                    drec[at] = nrec
                    dpos[at] = cur
                    dsize[at] = size
                    dkind[at] = t
                    dsub[at] = st
                    dqual[at] = q
                else:
                    kinds[t] += 1
                ndsr += 1
                cur += size
        nrec += 1
        pos += length
    return nrec, ndsr, pos, status


def gather_fields(words, u8, pos, size, rec, base, foff, fwidth, flittle, fslot, frow,  # noqa: ANN001, ANN201, PLR0913
                  out1, out2, out4, out8):
    """Every field f of a layout for every DSR i: the fwidth[f] bytes at pos[i] + base + foff[f]
    (big-endian, or little when flittle[f]), OR-ed into row rec[i] of column frow[f] of the
    out array of its width fslot[f] (1, 2, 4 or 8 bytes; wider values are truncated to it).
    A field beyond its DSR's size[i] is skipped.  `base` has one value per DSR, or one for all.
    `words`: the buffer `u8` as native u32 of its big-endian words.  One field at a time: its
    loop is short and writes one column in order (a DSR at a time was twice as slow)."""
    # What decides the fast loop: every DSR on a word (as framing finds them) and long enough.
    smallest = size[0] if len(size) else 0
    aligned = True
    for i in range(len(pos)):
        smallest = min(smallest, size[i])
        aligned = aligned and (pos[i] & 3) == 0
    for f in range(len(foff)):
        row = frow[f]
        args = (words, u8, pos, size, rec, base, foff[f], fwidth[f], flittle[f],
                smallest if aligned else 0)
        if fslot[f] == 4:
            _fill(out4[row], *args)
        elif fslot[f] == 8:
            _fill(out8[row], *args)
        elif fslot[f] == 2:
            _fill(out2[row], *args)
        else:
            _fill(out1[row], *args)


def _fill(out, words, u8, pos, size, rec, base, off, w, little, smallest):  # noqa: ANN001, ANN202, PLR0913
    """One field of gather_fields into its column `out`: from the one or two words it lies in
    (byte by byte when it spans three).  `smallest`: the least DSR size when every DSR starts
    on a word, else 0."""
    if len(base) == 1 and not little and base[0] + off + w <= smallest:
        # The usual case: at the same place in every DSR, which all hold it.
        at = base[0] + off
        lead = at & 3
        word = at >> 2
        if lead + w <= 4:
            shift = np.uint32(8 * (4 - lead - w))
            mask32 = np.uint32((1 << (8 * w)) - 1) if w < 4 else np.uint32(0xFFFFFFFF)
            for i in range(len(pos)):
                out[rec[i]] |= (words[(pos[i] >> 2) + word] >> shift) & mask32
            return
        if lead + w <= 8:
            shift64 = np.uint64(8 * (8 - lead - w))
            mask64 = (np.uint64(1) << np.uint64(8 * w)) - np.uint64(1) if w < 8 else ~np.uint64(0)
            for i in range(len(pos)):
                at_word = (pos[i] >> 2) + word
                both = (np.uint64(words[at_word]) << np.uint64(32)) | np.uint64(words[at_word + 1])
                out[rec[i]] |= (both >> shift64) & mask64
            return
    one_base = len(base) == 1
    mask = (np.uint64(1) << np.uint64(8 * w)) - np.uint64(1) if w < 8 else ~np.uint64(0)
    for i in range(len(pos)):
        start = (base[0] if one_base else base[i]) + off
        if start + w > size[i]:
            continue
        at = pos[i] + start
        lead = at & 3
        word = at >> 2
        if lead + w <= 4:
            v = np.uint64(words[word] >> np.uint32(8 * (4 - lead - w))) & mask
        elif lead + w <= 8:
            v = (((np.uint64(words[word]) << np.uint64(32)) | np.uint64(words[word + 1]))
                 >> np.uint64(8 * (8 - lead - w))) & mask
        else:
            v = np.uint64(0)
            for k in range(w):
                v = (v << np.uint64(8)) | np.uint64(u8[at + k])
        if little:
            swapped = np.uint64(0)
            for _ in range(w):
                swapped = (swapped << np.uint64(8)) | (v & np.uint64(0xFF))
                v >>= np.uint64(8)
            v = swapped
        out[rec[i]] |= v


class Compiled:
    """A kernel and the helpers it calls, made numba functions only when asked (argusflow.aot's
    build calls numba(), as it does capture.jit.Kernel's; records.framing too when the extension
    is missing and numba is loaded): importing this module does not import numba."""

    def __init__(self, fn: Callable[..., Any], deps: tuple[str, ...] = ()) -> None:
        self.fn, self.deps = fn, deps
        self._numba: Callable[..., Any] | None = None

    def numba(self) -> Callable[..., Any]:
        if self._numba is None:
            import numba

            module = globals()
            for name in self.deps:
                if not isinstance(module[name], numba.core.dispatcher.Dispatcher):
                    module[name] = numba.njit(cache=True)(module[name])
            self._numba = numba.njit(cache=True, nogil=True)(self.fn)
        return self._numba


# argusflow.aot.KERNELS names these (module:attribute).
FRAME_RECORDS = Compiled(frame_records)
GATHER_FIELDS = Compiled(gather_fields, deps=("_fill",))
COMPILED = {"frame_records": FRAME_RECORDS, "gather_fields": GATHER_FIELDS}
