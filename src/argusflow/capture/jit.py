"""Optional, lazy numba: compile the hot loops only for workloads that repay numba's start-up.

Importing numba and initialising its compiler costs about a second of CPU, more than reading
and decoding a 10 MB capture in plain Python and numpy.  So numba is imported on the first
workload of MIN_PACKETS packets or more (or a stream of unknown size) and, once paid for, used
for everything after.  Without numba installed the same functions run as plain Python.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

AVAILABLE = importlib.util.find_spec("numba") is not None
MIN_PACKETS = 20_000
FORCE: bool | None = None  # tests set True/False to override the automatic choice


def active() -> bool:
    """numba is loaded already: compiled code costs nothing more to use."""
    if FORCE is not None:
        return FORCE and AVAILABLE
    return AVAILABLE and "numba" in sys.modules


def wanted(packets: int | None) -> bool:
    """Use compiled code for `packets` packets (None: unknown, assume many)?"""
    if FORCE is not None:
        return FORCE and AVAILABLE
    return AVAILABLE and (active() or packets is None or packets >= MIN_PACKETS)


def _rebind(fn: types.FunctionType, names: dict[str, Any]) -> types.FunctionType:
    """A copy of `fn` that looks its global names up in `names`."""
    return types.FunctionType(fn.__code__, names, fn.__name__, fn.__defaults__, fn.__closure__)


class Kernel:
    """A loop written in numba's subset of Python: call `.py` directly, or `.jit()` to get it
    compiled (on first use; cached on disk).  `deps` names module-level helpers it calls, which
    are compiled first and rebound in the module so the compiled loop can call them."""

    def __init__(self, fn: Callable[..., Any], deps: tuple[str, ...] = (), **options: Any) -> None:
        # The Python version keeps the helpers as they are now, even after `jit` rebinds them
        # in the module for the compiled version: it and its same-module helpers run against a
        # snapshot of the module's names.
        self.fn = fn
        snapshot = dict(fn.__globals__)
        for name in deps:
            dep = snapshot[name]
            if isinstance(dep, types.FunctionType) and dep.__globals__ is fn.__globals__:
                snapshot[name] = _rebind(dep, snapshot)
        self.py: Callable[..., Any] = _rebind(fn, snapshot)
        self.deps = deps
        self.options = {"cache": True, "nogil": True, **options}
        self._compiled: Callable[..., Any] | None = None

    def jit(self) -> Callable[..., Any]:
        if self._compiled is None:
            import numba

            module = self.fn.__globals__
            for name in self.deps:
                if not isinstance(module[name], numba.core.dispatcher.Dispatcher):
                    module[name] = numba.njit(cache=True)(module[name])
            self._compiled = numba.njit(**self.options)(self.fn)
        return self._compiled

    def __call__(self, *args: Any) -> Any:
        """Compiled if numba is loaded, plain Python otherwise."""
        return self.jit()(*args) if active() else self.py(*args)
