"""`entry(name)` for the kernels the probe calls from Python, `njit` for their helpers.

The entry points come from argusflow.aot's extension, compiled ahead of time (built on the
first import after the sources change), so the probe never loads numba; the helpers then stay
plain Python (nothing calls them compiled).  Without the extension (no compiler, ARGUSFLOW_JIT=1,
the build subprocess itself) numba's JIT compiles both; without numba they are all plain Python
(same results, much slower; numba is a declared dependency, that only keeps imports working)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from argusflow import aot

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
EXTENSION = aot.extension() if HAVE_NUMBA else None


def njit(fn: Callable[..., Any]) -> Callable[..., Any]:
    if not HAVE_NUMBA or EXTENSION is not None:
        return fn
    import numba

    return numba.njit(cache=True, nogil=True)(fn)  # type: ignore[no-any-return]


def entry(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The kernel `name` of argusflow.aot.KERNELS from the extension, else `njit(fn)`."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        compiled = aot.function(name) if EXTENSION is not None else None
        return compiled if compiled is not None else njit(fn)

    return wrap


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
