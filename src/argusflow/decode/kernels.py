"""Per-packet type-length-value walks (IP options, TCP options, IPv6 extension chains).

Like record headers, options form a chain where each element's position depends on the previous
one, so they are walked by a small loop per packet; numba compiles it once loaded (see
capture/jit.py), plain Python runs it before that or without numba.  Everything a walk finds
is written into output arrays at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from argusflow.capture import jit
from argusflow.decode.codes import IPOPT_BITS, TCPOPT_BITS

# option type -> bit, as dense tables the compiled loop can index
IPOPT_TABLE = np.zeros(256, dtype=np.int64)
for _k, _b in IPOPT_BITS.items():
    IPOPT_TABLE[_k] = _b
TCPOPT_TABLE = np.zeros(256, dtype=np.int64)
for _k, _b in TCPOPT_BITS.items():
    TCPOPT_TABLE[_k] = _b


def _ip_options(buf: Any, pos: np.ndarray, length: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """IPv4 options in buf[pos : pos + length] -> option bitmap; bit 0x80 marks a bad length."""
    for i in range(pos.shape[0]):
        p = pos[i]
        end = p + length[i]
        bits = 0
        while p < end:
            kind = int(buf[p])
            if kind == 0:
                break
            if kind == 1:
                p += 1
                continue
            if p + 1 >= end:
                bits |= 0x80
                break
            olen = int(buf[p + 1])
            if olen < 2 or p + olen > end:
                bits |= 0x80
                break
            bits |= table[kind]
            p += olen
        out[i] = bits


def tcp_option_walk(buf: Any, p: int, end: int, table: np.ndarray) -> tuple[int, int, int, int, int]:
    """The TCP options in buf[p:end]: (option bits of spec §6.7.2, mss, wscale, tsval, tsecr).
    A bad option length ends the walk.  The compiled fast path calls this too."""
    bits = 0
    mss = 0
    wscale = 0
    tsval = 0
    tsecr = 0
    while p < end:
        kind = int(buf[p])
        if kind == 0:
            break
        if kind == 1:
            p += 1
            continue
        if p + 1 >= end:
            break
        olen = int(buf[p + 1])
        if olen < 2 or p + olen > end:
            break
        bits |= table[kind]
        if kind == 2 and olen == 4:
            mss = int(buf[p + 2]) * 256 + int(buf[p + 3])
        elif kind == 3 and olen == 3:
            wscale = int(buf[p + 2])
        elif kind == 8 and olen == 10:
            for k in range(2, 6):
                tsval = (tsval << 8) | int(buf[p + k])
            for k in range(6, 10):
                tsecr = (tsecr << 8) | int(buf[p + k])
        p += olen
    return bits, mss, wscale, tsval, tsecr


def _tcp_options(buf: Any, pos: np.ndarray, length: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """TCP options in buf[pos : pos + length] -> out rows (bits, mss, wscale, tsval, tsecr)."""
    for i in range(pos.shape[0]):
        bits, mss, wscale, tsval, tsecr = tcp_option_walk(buf, pos[i], pos[i] + length[i], table)
        out[i, 0] = bits
        out[i, 1] = mss
        out[i, 2] = wscale
        out[i, 3] = tsval
        out[i, 4] = tsecr


IP_OPTIONS = jit.Kernel(_ip_options, aot="ip_options")
TCP_OPTIONS = jit.Kernel(_tcp_options, deps=("tcp_option_walk",), aot="tcp_options")


def _run(kernel: jit.Kernel, buf: np.ndarray, *args: np.ndarray) -> None:
    if kernel.ready():
        kernel.jit()(buf, *args)
    else:
        kernel.py(memoryview(buf), *args)


def ip_options(buf: np.ndarray, pos: np.ndarray, length: np.ndarray) -> np.ndarray:
    out = np.zeros(len(pos), dtype=np.int64)
    if len(pos):
        _run(IP_OPTIONS, buf, pos.astype(np.int64), length.astype(np.int64), IPOPT_TABLE, out)
    return out


def tcp_options(buf: np.ndarray, pos: np.ndarray, length: np.ndarray) -> np.ndarray:
    """(n, 5) int64: option bits (spec §6.7.2), mss, wscale, tsval, tsecr."""
    out = np.zeros((len(pos), 5), dtype=np.int64)
    if len(pos):
        _run(TCP_OPTIONS, buf, pos.astype(np.int64), length.astype(np.int64), TCPOPT_TABLE, out)
    return out
