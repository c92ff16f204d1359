"""rasort's merge sort for keys 3.0.8 compares only between records that both carry the value.

3.0.8 sorts with glibc's qsort, a merge sort (2.36: the first n // 2 and the rest sorted
recursively, then merged, taking the left record unless it compares greater).  Its comparison
calls two records equal on a key when either lacks what the key reads: no order at all, so the
result depends on the merge's steps, and only following them one comparison at a time gives
its order.  That walk is sequential, so it is one compiled loop (argusflow.aot, export
`merge_order`); without the extension it runs as plain Python.

Written in numba's subset of Python.  Key k of record r is `values[k, r]` (ops.sort gives every
key as a float64 without NaN), `present[k, r]` says whether r carries it, `sign[k]` is 1
(ascending) or -1.
The recursion is an explicit stack of (start, count, merged-yet) frames, deepest 2 log2(n).
"""

from __future__ import annotations

import numpy as np

from argusflow.capture.jit import Kernel

STACK = 256  # frames: two per halving, and n < 2**64


def _compare(values: np.ndarray, present: np.ndarray, sign: np.ndarray, a: int, b: int) -> int:
    """3.0.8's comparison of records a and b: the first key both carry and differ on."""
    for k in range(sign.shape[0]):
        if present[k, a] and present[k, b] and values[k, a] != values[k, b]:
            return sign[k] if values[k, a] > values[k, b] else -sign[k]
    return 0


def _merge(values: np.ndarray, present: np.ndarray, sign: np.ndarray, rows: np.ndarray,
           scratch: np.ndarray, lo: int, count: int) -> None:
    """Merge the sorted runs rows[lo:lo+count//2] and the rest, as glibc's msort does."""
    i, end1 = lo, lo + count // 2
    j, end2 = end1, lo + count
    k = 0
    while i < end1 and j < end2:
        if _compare(values, present, sign, rows[i], rows[j]) <= 0:
            scratch[k] = rows[i]
            i += 1
        else:
            scratch[k] = rows[j]
            j += 1
        k += 1
    while i < end1:  # the left run's rest; the right run's rest is in place already
        scratch[k] = rows[i]
        i += 1
        k += 1
    for m in range(k):
        rows[lo + m] = scratch[m]


def _merge_order(values: np.ndarray, present: np.ndarray, sign: np.ndarray, rows: np.ndarray,
                 scratch: np.ndarray) -> None:
    """Sort `rows` (record numbers) in place; `scratch` is as long as `rows`."""
    starts = np.zeros(STACK, dtype=np.int64)
    counts = np.zeros(STACK, dtype=np.int64)
    halves_done = np.zeros(STACK, dtype=np.bool_)
    top = 0
    starts[0], counts[0], halves_done[0] = 0, rows.shape[0], False
    top = 1
    while top > 0:
        top -= 1
        lo, count = starts[top], counts[top]
        if count <= 1:
            continue
        if halves_done[top]:
            _merge(values, present, sign, rows, scratch, lo, count)
            continue
        half = count // 2
        # this frame again once both halves are sorted, then the halves (left on top)
        starts[top], counts[top], halves_done[top] = lo, count, True
        starts[top + 1], counts[top + 1], halves_done[top + 1] = lo + half, count - half, False
        starts[top + 2], counts[top + 2], halves_done[top + 2] = lo, half, False
        top += 3


MERGE_ORDER = Kernel(_merge_order, deps=("_compare", "_merge"), aot="merge_order")
SIGNATURE = "void(f8[:, ::1], b1[:, ::1], i8[::1], i8[::1], i8[::1])"


def merge_sort_order(values: list[np.ndarray], present: list[np.ndarray | None],
                     descending: list[bool]) -> np.ndarray:
    """Record numbers in 3.0.8's order for these keys (see the module notes)."""
    n = len(values[0])
    matrix = np.ascontiguousarray(np.stack(values).astype(np.float64, copy=False))
    has = np.ones((len(values), n), dtype=np.bool_)
    for k, carried in enumerate(present):
        if carried is not None:
            has[k] = carried
    sign = np.array([-1 if desc else 1 for desc in descending], dtype=np.int64)
    rows = np.arange(n, dtype=np.int64)
    MERGE_ORDER(matrix, has, sign, rows, np.empty(n, dtype=np.int64))
    return rows
