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


def drop_stale_cache(package_dir: str, layout: str) -> None:
    """Numba's cache knows only the source file of a function, not the constants it imported:
    when the state layout (fields.py) changes, the cached kernels would index the old rows.
    Keep a stamp of the layout next to the cache and drop the cache when it differs."""
    import hashlib
    from pathlib import Path

    cache = Path(package_dir) / "__pycache__"
    stamp = cache / "flows-layout.stamp"
    digest = hashlib.sha256(layout.encode()).hexdigest()
    try:
        if stamp.exists() and stamp.read_text() == digest:
            return
        cache.mkdir(exist_ok=True)
        for old in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            old.unlink(missing_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only install: numba then compiles in memory anyway
        pass
