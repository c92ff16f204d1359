"""Optional, lazy numba: compile the hot loops only for workloads that repay numba's start-up.

Importing numba and initialising its compiler costs about a second of CPU, more than reading
and decoding a 10 MB capture in plain Python and numpy.  So numba is imported on the first
workload of MIN_PACKETS packets or more (or a stream of unknown size) and, once paid for, used
for everything after.  Without numba installed the same functions run as plain Python.

A Kernel named in argusflow.aot.KERNELS comes from the extension built ahead of time once that
is loaded (the probe loads it at start-up): compiled code without numba, so as cheap as
numba already loaded (`ready()`, `wanted(..., precompiled=True)`).
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


def precompiled() -> bool:
    """The ahead-of-time extension (argusflow.aot) is loaded: its kernels cost nothing more."""
    aot = sys.modules.get("argusflow.aot")
    return bool(aot is not None and aot.loaded())


def wanted(packets: int | None, precompiled_kernels: bool = False) -> bool:
    """Use compiled code for `packets` packets (None: unknown, assume many)?
    `precompiled_kernels`: the caller's kernels are in argusflow.aot's extension."""
    if FORCE is not None:
        return FORCE and AVAILABLE
    if precompiled_kernels and precompiled():
        return True
    return AVAILABLE and (active() or packets is None or packets >= MIN_PACKETS)


def _rebind(fn: types.FunctionType, names: dict[str, Any]) -> types.FunctionType:
    """A copy of `fn` that looks its global names up in `names`."""
    return types.FunctionType(fn.__code__, names, fn.__name__, fn.__defaults__, fn.__closure__)


class Kernel:
    """A loop written in numba's subset of Python: call `.py` directly, or `.jit()` to get it
    compiled (on first use; cached on disk).  `deps` names module-level helpers it calls, which
    are compiled first and rebound in the module so the compiled loop can call them."""

    def __init__(self, fn: Callable[..., Any], deps: tuple[str, ...] = (), aot: str | None = None,
                 prepare: Callable[[], None] | None = None, **options: Any) -> None:
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
        self.aot = aot  # its name in argusflow.aot.KERNELS
        self.prepare = prepare  # run before numba compiles it (e.g. to bind intrinsics)
        self.options = {"cache": True, "nogil": True, **options}
        self._compiled: Callable[..., Any] | None = None
        self._numba: Callable[..., Any] | None = None

    def ready(self) -> bool:
        """Compiled code costs nothing more: numba is loaded or this kernel is precompiled."""
        if FORCE is not None:
            return FORCE and AVAILABLE
        return active() or (self.aot is not None and precompiled())

    def precompiled(self) -> Callable[..., Any] | None:
        """This kernel from argusflow.aot's extension (built if missing), or None."""
        if self.aot is None or not AVAILABLE:
            return None
        from argusflow import aot

        return aot.function(self.aot)  # type: ignore[no-any-return]

    def jit(self) -> Callable[..., Any]:
        """The compiled kernel: the ahead-of-time one if it exists, else numba's."""
        if self._compiled is None:
            self._compiled = self.precompiled()
        if self._compiled is None:
            self._compiled = self.numba()
        return self._compiled

    def numba(self) -> Callable[..., Any]:
        """Compiled by numba's JIT (what argusflow.aot's build exports, too)."""
        if self._numba is None:
            import numba

            if self.prepare is not None:
                self.prepare()
            module = self.fn.__globals__
            for name in self.deps:
                if not isinstance(module[name], numba.core.dispatcher.Dispatcher):
                    module[name] = numba.njit(cache=True)(module[name])
            self._numba = numba.njit(**self.options)(self.fn)
        return self._numba

    def __call__(self, *args: Any) -> Any:
        """Compiled if numba is loaded, plain Python otherwise."""
        return self.jit()(*args) if self.ready() else self.py(*args)
