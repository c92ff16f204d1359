"""Headers as data: a header is a table of fields; one function gathers them for a batch.

    IPV4 = Header("ipv4", 20, (
        Field("ihl", 0, 1, bits=(0, 4)),
        Field("total_len", 2, 2),
        ...
    ))
    g = gather(data, pos, avail, IPV4)      # pos/avail: per packet, where the header starts
    g.total_len, g.complete                 # int64 columns; complete: all `length` bytes captured

`pos` already includes every per-packet shift (VLAN tags, options, extension headers), so the
field offsets stay constants.  A field the packet does not hold entirely reads as 0; `complete`
says whether the whole header was captured.  The gather runs as one numba loop (a few ns per
field and packet, its cache misses overlapped) once numba is loaded (see capture/jit.py);
before that, and without numba, numpy gathers byte by byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from argusflow.capture import jit


@dataclass(frozen=True)
class Field:
    """`size` bytes at `offset`, in byte order `order` ('>' network, '<' little);
    `bits=(shift, width)` keeps only those bits of the value."""

    name: str
    offset: int
    size: int
    order: str = ">"
    bits: tuple[int, int] | None = None


@dataclass(frozen=True)
class Header:
    name: str
    length: int  # bytes that must be captured for `complete`
    fields: tuple[Field, ...]
    _plan: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        f = self.fields
        plan = (
            np.array([x.offset for x in f], dtype=np.int64),
            np.array([x.size for x in f], dtype=np.int64),
            np.array([x.order == ">" for x in f], dtype=np.bool_),
            np.array([x.bits[0] if x.bits else 0 for x in f], dtype=np.int64),
            np.array([((1 << x.bits[1]) - 1) if x.bits else -1 for x in f], dtype=np.int64),
        )
        object.__setattr__(self, "_plan", plan)

    def names(self) -> list[str]:
        return [x.name for x in self.fields]

    def at(self, name: str) -> int:
        """Offset of field `name` (for code that reads it directly, e.g. the compiled fast path)."""
        return next(x.offset for x in self.fields if x.name == name)


class Gathered:
    """Columns gathered for one header: attribute per field name (int64), plus `complete`."""

    def __init__(self, header: Header, values: np.ndarray, complete: np.ndarray) -> None:
        self.complete = complete
        for i, name in enumerate(header.names()):
            setattr(self, name, values[i])

    def __getattr__(self, name: str) -> np.ndarray:  # only reached for unknown names
        raise AttributeError(name)


def _gather_loop(
    buf: np.ndarray,
    pos: np.ndarray,
    avail: np.ndarray,
    offs: np.ndarray,
    sizes: np.ndarray,
    bigs: np.ndarray,
    shifts: np.ndarray,
    masks: np.ndarray,
    out: np.ndarray,
) -> None:
    for i in range(pos.shape[0]):
        p = pos[i]
        a = avail[i]
        for f in range(offs.shape[0]):
            o = offs[f]
            s = sizes[f]
            v = 0
            if o + s <= a:
                if bigs[f]:
                    for k in range(s):
                        v = (v << 8) | np.int64(buf[p + o + k])
                else:
                    for k in range(s - 1, -1, -1):
                        v = (v << 8) | np.int64(buf[p + o + k])
                v = (v >> shifts[f]) & masks[f]
            out[f, i] = v


def _gather_numpy(
    buf: np.ndarray,
    pos: np.ndarray,
    avail: np.ndarray,
    offs: np.ndarray,
    sizes: np.ndarray,
    bigs: np.ndarray,
    shifts: np.ndarray,
    masks: np.ndarray,
    out: np.ndarray,
) -> None:
    last = max(len(buf) - 1, 0)
    for f in range(len(offs)):
        o, s = int(offs[f]), int(sizes[f])
        v = np.zeros(len(pos), dtype=np.uint64)
        order = range(s) if bigs[f] else range(s - 1, -1, -1)
        for k in order:
            byte = buf[np.minimum(pos + (o + k), last)].astype(np.uint64)
            v = (v << np.uint64(8)) | byte
        v = v.view(np.int64)
        if masks[f] != -1:
            v = (v >> shifts[f]) & masks[f]
        out[f] = np.where(avail >= o + s, v, 0)


GATHER_LOOP = jit.Kernel(_gather_loop, aot="gather_loop")


def _kernel(*args: np.ndarray) -> None:
    """The compiled loop once numba (or the precompiled extension) is loaded; numpy byte
    gathers before that."""
    (GATHER_LOOP.jit() if GATHER_LOOP.ready() else _gather_numpy)(*args)


def gather(buf: np.ndarray, pos: np.ndarray, avail: np.ndarray, header: Header) -> Gathered:
    """Every field of `header` for packets whose header starts at buf[pos], with `avail` bytes
    captured from there (may be <= 0)."""
    n = len(pos)
    out = np.empty((len(header.fields), n), dtype=np.int64)
    if n:
        pos = np.ascontiguousarray(pos, dtype=np.int64)
        avail = np.ascontiguousarray(avail, dtype=np.int64)
        _kernel(buf, pos, avail, *header._plan, out)
    return Gathered(header, out, avail >= header.length)
