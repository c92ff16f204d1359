"""Framing: find the records in a buffer and the DSRs inside each flow record.

This is the one inherently sequential step of reading Argus data (each header gives the next
one's position), so it is one small kernel, compiled with numba for inputs big enough to repay
numba's start-up (capture/jit.py) and run as plain Python otherwise; everything after it is
vectorised per DSR type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argusflow.capture import jit
from argusflow.capture.jit import Kernel

# For choosing numba or not (capture/jit.py): argus flow records are 100-350 bytes.
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


FRAME = Kernel(_frame)


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


def frame(buf: np.ndarray, compiled: bool | None = None) -> Frame:
    """Frame `buf`; `compiled` chooses numba's version of the kernel (see capture/jit.py).

    None means the caller cannot tell how much input follows (a stream): compiled.
    """
    n = len(buf)
    if compiled is None:
        compiled = jit.wanted(None)
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
    kernel = FRAME.jit() if compiled else FRAME.py
    nrec, ndsr, end, status = kernel(buf, n, starts, lengths, drec, dpos, dsize, dkind, dsub,
                                     dqual, dbad)
    return Frame(starts[:nrec].copy(), lengths[:nrec].copy(), int(end), int(status),
                 drec[:ndsr].copy(), dpos[:ndsr].copy(), dsize[:ndsr].copy(),
                 dkind[:ndsr].copy(), dsub[:ndsr].copy(), dqual[:ndsr].copy(), dbad[:nrec].copy())
