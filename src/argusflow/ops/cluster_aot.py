"""racluster's merge kernel compiled ahead of time: now one kernel of argusflow.aot's shared
extension (the probe's kernels are built into the same module); kept for ops/cluster.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from argusflow import aot

# Whether this process uses a built extension (cluster.py then does not compile with numba).
READY = aot.READY


def signature() -> str:
    """`void(u8[:, ::1], i8[::1], ...)`: the exported function's numba signature."""
    return aot.KERNELS["merge_batch"][1]


def merge_batch() -> Callable[..., Any] | None:
    """The compiled kernel from the extension, built now if it is missing; None: use numba."""
    return aot.function("merge_batch")  # type: ignore[no-any-return]
