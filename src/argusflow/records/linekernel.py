"""The compiled line writer: every fixed-width text line of a batch, written into one byte buffer.

Written in numba's subset of Python and compiled ahead of time (argusflow.aot, export
`write_lines`, released from the GIL so the next batch decodes meanwhile); records/linewriter.py
prepares its arguments.  Kept apart from that module because any edit here rebuilds the
precompiled extension.

A batch is given column by column: `vals[j, r]` is one int64 per record, read by the column's
kind (`spec[j, KIND]`):

* TEXT:   the index of an entry in the column's text table;
* INT:    a signed decimal;
* FIXED:  a fixed-point number with `PARAM` decimals: r = value * 10**PARAM rounded (a negative
          number is stored as ~r, so that -0.0 keeps its sign);
* TIME:   `second * 10**6 + microseconds`, where `second` indexes the column's seconds: the
          text is piece 0 of that second, the fraction (`PARAM` digits), piece 1, ... (the
          local-time texts around each `%f` of the time format, `PIECES` of them);
* IPV4:   a 32-bit address, dotted;
* CHARS7: `PARAM` ASCII characters, 7 bits each, the first in the lowest bits (Flgs).

A value at or below NULL (any kind but TEXT) stands for entry `NULL - value` of the table
instead: entry 0 is the blank, later ones texts made elsewhere (IPv6 addresses, exact ties of
a rounding, ...).  Each cell is then fitted as ra does: padded to `WIDTH` characters (left or
right per `ALIGN`), a longer one cut to WIDTH - 1 and ended in '*' (`CUT`: just cut).  Cells are
joined by blanks (`SEP` 1: by '.' when the cell starts with a non-blank, as a port after its
address), and each line loses its trailing blanks and ends in a newline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

NULL = -(1 << 62)
TEXT, INT, FIXED, TIME, IPV4, CHARS7 = range(6)
# the columns of `spec`
KIND, WIDTH, ALIGN, CUT, PARAM, PIECES, SECONDS, SEP, ASCII, SCALE, TSCALE = range(11)
SPEC_COLUMNS = 11  # SCALE: 10**PARAM; TSCALE: 10**(6 - PARAM) (TIME: microseconds per digit)
ALIGN_LEFT, ALIGN_RIGHT = 0, 1


# "00" "01" ... "99": digits are written two at a time (half the divisions)
_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), dtype=np.uint8).copy()


def _count_digits(value: int) -> int:
    count = 1
    while value >= 100:
        value //= 100
        count += 2
    return count + 1 if value >= 10 else count


def _put_digits(out: np.ndarray, pos: int, value: int, count: int) -> int:
    """`count` digits of `value` (>= 0), zero-padded."""
    k = pos + count - 1
    while k > pos:
        pair = value % 100
        value //= 100
        out[k] = _PAIRS[2 * pair + 1]
        out[k - 1] = _PAIRS[2 * pair]
        k -= 2
    if k == pos:
        out[k] = 48 + value % 10
    return pos + count


def _put_text(out: np.ndarray, pos: int, tbytes: np.ndarray, a: int, b: int) -> int:
    for k in range(a, b):
        out[pos] = tbytes[k]
        pos += 1
    return pos


def _text_chars(tbytes: np.ndarray, a: int, b: int, ascii_only: int) -> int:
    """Characters of the UTF-8 text tbytes[a:b]."""
    if ascii_only:
        return b - a
    chars = 0
    for k in range(a, b):
        if (tbytes[k] & 0xC0) != 0x80:
            chars += 1
    return chars


def _open(out: np.ndarray, pos: int, chars: int, width: int, align: int) -> int:
    """The blanks before a right-aligned text of `chars` characters; where the text starts."""
    if width <= 0 or chars >= width or align == ALIGN_LEFT:
        return pos
    for k in range(pos, pos + width - chars):
        out[k] = 32
    return pos + width - chars


def _close(out: np.ndarray, start: int, end: int, chars: int, width: int, align: int, cut: int) -> int:
    """The blanks after a left-aligned text, or a text too long cut to the width; its end."""
    if width <= 0 or chars == width:
        return end
    if chars > width:  # its first width - 1 characters and '*' (`cut`: width, no '*')
        keep = width if cut else width - 1
        pos = start
        for _ in range(keep):
            pos += 1
            while pos < end and (out[pos] & 0xC0) == 0x80:
                pos += 1
        if not cut:
            out[pos] = 42
            pos += 1
        return pos
    if align == ALIGN_LEFT:
        for k in range(end, end + width - chars):
            out[k] = 32
        return end + width - chars
    return end


def _fit_text(out: np.ndarray, pos: int, tbytes: np.ndarray, a: int, b: int, ascii_only: int,
              width: int, align: int, cut: int) -> int:
    chars = _text_chars(tbytes, a, b, ascii_only)
    at = _open(out, pos, chars, width, align)
    return _close(out, pos, _put_text(out, at, tbytes, a, b), chars, width, align, cut)


def _fit_int(out: np.ndarray, pos: int, value: int, width: int, align: int, cut: int) -> int:
    neg = 1 if value < 0 else 0
    magnitude = -value if neg else value
    count = _count_digits(magnitude)
    at = _open(out, pos, count + neg, width, align)
    if neg:
        out[at] = 45
    end = _put_digits(out, at + neg, magnitude, count)
    return _close(out, pos, end, count + neg, width, align, cut)


def _fit_fixed(out: np.ndarray, pos: int, value: int, decimals: int, scale: int, width: int,
               align: int, cut: int) -> int:
    neg = 1 if value < 0 else 0
    r = ~value if neg else value
    whole = r // scale
    count = _count_digits(whole)
    chars = neg + count + (decimals + 1 if decimals > 0 else 0)
    at = _open(out, pos, chars, width, align)
    if neg:
        out[at] = 45
    end = _put_digits(out, at + neg, whole, count)
    if decimals > 0:
        out[end] = 46
        end = _put_digits(out, end + 1, r - whole * scale, decimals)
    return _close(out, pos, end, chars, width, align, cut)


def _fit_ipv4(out: np.ndarray, pos: int, value: int, width: int, align: int, cut: int) -> int:
    a, b, c, d = (value >> 24) & 255, (value >> 16) & 255, (value >> 8) & 255, value & 255
    na, nb, nc, nd = _count_digits(a), _count_digits(b), _count_digits(c), _count_digits(d)
    chars = na + nb + nc + nd + 3
    at = _open(out, pos, chars, width, align)
    at = _put_digits(out, at, a, na)
    out[at] = 46
    at = _put_digits(out, at + 1, b, nb)
    out[at] = 46
    at = _put_digits(out, at + 1, c, nc)
    out[at] = 46
    end = _put_digits(out, at + 1, d, nd)
    return _close(out, pos, end, chars, width, align, cut)


def _fit_chars7(out: np.ndarray, pos: int, value: int, count: int, width: int, align: int,
                cut: int) -> int:
    at = _open(out, pos, count, width, align)
    for k in range(count):
        out[at + k] = (value >> (7 * k)) & 127
    return _close(out, pos, at + count, count, width, align, cut)


def _fit_time(out: np.ndarray, pos: int, value: int, spec: np.ndarray, j: int, tbytes: np.ndarray,
              toff: np.ndarray, base: int) -> int:
    """The texts of the second around the fraction's digits."""
    decimals, pieces, seconds = spec[j, PARAM], spec[j, PIECES], spec[j, SECONDS]
    width, align, cut = spec[j, WIDTH], spec[j, ALIGN], spec[j, CUT]
    second = value // 1_000_000
    fraction = (value % 1_000_000) // spec[j, TSCALE]
    chars = (pieces - 1) * decimals
    for k in range(pieces):
        entry = base + 1 + k * seconds + second
        chars += toff[entry + 1] - toff[entry]
    ascii_only = spec[j, ASCII]
    end = _open(out, pos, chars, width, align) if ascii_only else pos
    start = end
    for k in range(pieces):
        if k > 0:
            end = _put_digits(out, end, fraction, decimals)
        entry = base + 1 + k * seconds + second
        end = _put_text(out, end, tbytes, toff[entry], toff[entry + 1])
    if ascii_only:
        return _close(out, pos, end, chars, width, align, cut)
    # not ASCII: characters counted once written; a right-aligned text then moves right
    chars = _text_chars(out, start, end, 0)
    if width > 0 and chars < width and align != ALIGN_LEFT:
        pad = width - chars
        for k in range(end - 1, pos - 1, -1):
            out[k + pad] = out[k]
        for k in range(pos, pos + pad):
            out[k] = 32
        return end + pad
    return _close(out, pos, end, chars, width, align, cut)


def _put_fitted(out: np.ndarray, pos: int, value: int, spec: np.ndarray, j: int,
                tbytes: np.ndarray, toff: np.ndarray, base: int) -> int:
    """Cell (j, value) at `pos`, padded or cut to its width as ra fits it; returns its end."""
    kind, width, align, cut = spec[j, KIND], spec[j, WIDTH], spec[j, ALIGN], spec[j, CUT]
    if kind == TEXT or value <= NULL:
        entry = base + value if kind == TEXT else base + (NULL - value)
        return _fit_text(out, pos, tbytes, toff[entry], toff[entry + 1], spec[j, ASCII], width,
                         align, cut)
    if kind == INT:
        return _fit_int(out, pos, value, width, align, cut)
    if kind == IPV4:
        return _fit_ipv4(out, pos, value, width, align, cut)
    if kind == FIXED:
        return _fit_fixed(out, pos, value, spec[j, PARAM], spec[j, SCALE], width, align, cut)
    if kind == TIME:
        return _fit_time(out, pos, value, spec, j, tbytes, toff, base)
    return _fit_chars7(out, pos, value, spec[j, PARAM], width, align, cut)


def write_lines(vals: np.ndarray, spec: np.ndarray, tbytes: np.ndarray, toff: np.ndarray,
                tbase: np.ndarray, out: np.ndarray) -> int:
    """Write every line into `out` (large enough); returns the number of bytes written."""
    ncols, n = vals.shape
    pos = 0
    for r in range(n):
        line = pos
        for j in range(ncols):
            if j > 0:
                out[pos] = 32
                pos += 1
            start = pos
            pos = _put_fitted(out, pos, vals[j, r], spec, j, tbytes, toff, tbase[j])
            if spec[j, SEP] == 1 and pos > start and out[start] != 32:
                out[start - 1] = 46
        while pos > line and out[pos - 1] == 32:
            pos -= 1
        out[pos] = 10
        pos += 1
    return pos


_HELPERS = ("_count_digits", "_put_digits", "_put_text", "_text_chars", "_open", "_close",
            "_fit_text", "_fit_int", "_fit_fixed", "_fit_ipv4", "_fit_chars7", "_fit_time",
            "_put_fitted")


class _Kernel:
    """What argusflow.aot's build needs: `fn`, and `numba()` to make the helpers dispatchers."""

    def __init__(self, fn: Callable[..., Any], helpers: tuple[str, ...]) -> None:
        self.fn = fn
        self.helpers = helpers
        self._jit: Callable[..., Any] | None = None

    def numba(self) -> Callable[..., Any]:
        if self._jit is None:
            import numba

            # helpers inlined, no reference counting (nothing is allocated): as aot builds it
            module = self.fn.__globals__
            for name in self.helpers:
                if not isinstance(module[name], numba.core.dispatcher.Dispatcher):
                    module[name] = numba.njit(inline="always", _nrt=False)(module[name])
            self._jit = numba.njit(nogil=True, _nrt=False)(self.fn)
        return self._jit


WRITE_LINES = _Kernel(write_lines, _HELPERS)
