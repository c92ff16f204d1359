"""`njit`: numba's compiler when it is installed, else the plain Python function (same results,
much slower; numba is a declared dependency, the fallback only keeps imports working)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - only without numba
    numba = None
    HAVE_NUMBA = False


def njit(fn: Callable[..., Any]) -> Callable[..., Any]:
    if not HAVE_NUMBA:
        return fn
    return numba.njit(cache=True, nogil=True)(fn)
