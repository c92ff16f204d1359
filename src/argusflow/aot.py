"""The hot kernels compiled ahead of time into one extension module, so a run need not start numba.

Importing numba and loading its cached kernels costs every run about 0.7-1 s of CPU and
~100 MB of memory (LLVM), more than the work itself on most inputs.  numba can also compile
functions into a plain extension module (`numba.pycc`) that needs numpy only.  So the first
run after the kernels' sources change builds the extension (in a subprocess, 10-90 s, like
numba's own first compile) into `__pycache__` next to this file; later runs import it.  When
the build cannot be done (no C compiler, read-only install) the kernels run under numba's JIT
as before; a failed build is remembered, not retried on every run.

The kernels are listed in KERNELS with the one signature each is called with (pycc exports a
single specialisation; the callers pass exactly these types).  The extension's name carries a
digest of every source the compiled code depends on (whole packages where kernels read
constants from their neighbours), the signatures and the Python and numba versions.
`ARGUSFLOW_JIT=1` skips the extension (numba's JIT; for debugging), `ARGUSFLOW_AOT_CHECK=1`
checks the arrays of every call against the signatures (for tests).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = Path(__file__).resolve().parent
CACHE = PACKAGE / "__pycache__"
PREFIX = "kernels_"
BUILDING = "ARGUSFLOW_KERNEL_BUILD"  # set in the build subprocess: compile with numba there
CHECK = "ARGUSFLOW_AOT_CHECK"  # check every call's argument types (tests; slow)
# Sources whose code or constants the kernels compile in: a file, or a package (all its .py).
SOURCES = ("aot.py", "capture", "decode", "flows", "ops/cluster.py", "ops/cluster_model.py",
           "ops/sortkernel.py",
           "records/fields.py", "records/schema.py", "records/derive.py", "records/kernels.py",
           "records/linekernel.py", "records/codekernel.py", "records/naming.py")

_A = "UniTuple(i8, 4)"  # (count, position, status, reason) of the capture walkers
# export name -> ("module:attribute", numba signature).  The attribute is a numba dispatcher
# or a capture.jit.Kernel.
KERNELS: dict[str, tuple[str, str]] = {
    "merge_batch": ("argusflow.ops.cluster:merge_batch",
                    "void(u8[:, ::1], i8[::1], b1[::1], i8[::1], b1[::1], f8[::1], u8[:, ::1], "
                    "u4[:, ::1], u2[:, ::1], u1[:, ::1], f8[::1], i8[::1], i8[::1], "
                    "f4[:, ::1], b1[::1], i8[::1], i8[:, ::1], i8[:, ::1], i8[::1], i8[::1], "
                    "f4[:, ::1], i8[::1], u8[:, ::1], u8[::1])"),
    "walk_pcap": ("argusflow.capture.walk:walk_pcap",
                  f"{_A}(u1[::1], i8, i8, i8, b1, i8, i8, i8[:, ::1], i8)"),
    "walk_pcapng": ("argusflow.capture.walk:walk_pcapng",
                    f"{_A}(u1[::1], i8, i8, i8, b1, i8, i8, i8, i8[:, ::1], i8)"),
    "fast_decode": ("argusflow.decode.fastpath:FAST",
                    "void(u1[::1], i8[::1], i8[::1], u2[::1], u1[:, ::1], u2[:, ::1], "
                    "u4[:, ::1], u8[:, ::1], i4[:, ::1], b1[::1], i8[::1], b1[::1], b1[::1], "
                    "b1[::1], b1[::1], b1[::1], i8, i8)"),
    "ip_options": ("argusflow.decode.kernels:IP_OPTIONS",
                   "void(u1[::1], i8[::1], i8[::1], i8[::1], i8[::1])"),
    "tcp_options": ("argusflow.decode.kernels:TCP_OPTIONS",
                    "void(u1[::1], i8[::1], i8[::1], i8[::1], i8[:, ::1])"),
    "gather_loop": ("argusflow.decode.fields:GATHER_LOOP",
                    "void(u1[::1], i8[::1], i8[::1], i8[::1], i8[::1], b1[::1], i8[::1], "
                    "i8[::1], i8[:, ::1])"),
    "flow_keys": ("argusflow.flows.fastkeys:_keys",
                  "void(u1[::1], u1[::1], u1[::1], u2[::1], u4[::1], u1[::1], u2[::1], u2[::1], "
                  "u2[::1], u4[::1], u8[::1], u8[::1], u8[::1], u8[::1], u1[::1], u1[::1], "
                  "u4[::1], u2[::1], u2[::1], u8[::1], u8[::1], u1[::1], u1[::1], i4[::1], "
                  "u1[::1], u2[::1], u1[::1], u8[::1], u4[::1], u2[::1], u1[::1], u1[::1], "
                  "u8[:, ::1], b1[::1], b1[::1], u8[::1], b1[::1], u8[::1], u8[:, ::1], b1[::1])"),
    "flow_run": ("argusflow.flows.kernel:run",
                 "UniTuple(i8, 4)(i8[:, ::1], u8[:, ::1], u8[::1], u8[::1], u8[:, ::1], "
                 "u8[:, ::1], u8[::1], i8, i8[::1, :], u8[::1, :], u8[::1], i8[::1], i8[::1], "
                 "i8, i8[:, ::1], u8[:, ::1], i8, i8[::1], i8, i8[::1], i8[::1], u8[::1], "
                 "i8[:, ::1])"),
    "flow_scan": ("argusflow.flows.kernel:scan",
                  "UniTuple(i8, 2)(i8[::1, :], u8[::1, :], u8[::1], i8[::1], i8[::1], i8, i8, "
                  "i8, i8[:, ::1], u8[:, ::1], i8, i8[::1], b1)"),
    "flow_rehash": ("argusflow.flows.kernel:rehash", "void(u8[::1], i8[::1, :], i8[::1])"),
    "frame_records": ("argusflow.records.kernels:FRAME_RECORDS",
                      "UniTuple(i8, 4)(u1[::1], i8, b1, b1, i8[::1], i8[::1], i8[::1], i8[::1], "
                      "i8[::1], i8[::1], u1[::1], u1[::1], u1[::1], i8[::1])"),
    "gather_fields": ("argusflow.records.kernels:GATHER_FIELDS",
                      "void(u4[::1], u1[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], "
                      "b1[::1], i8[::1], i8[::1], u1[:, ::1], u2[:, ::1], u4[:, ::1], u8[:, ::1])"),
    "walk_blocks": ("argusflow.capture.live:walk_blocks",
                    "UniTuple(i8, 2)(u4[::1], u1[::1], i8, i8, i8, i8, u1[::1], i8[:, ::1])"),
    "write_lines": ("argusflow.records.linekernel:WRITE_LINES",
                    "i8(i8[:, ::1], i8[:, ::1], u1[::1], i8[::1], i8[::1], u1[::1])"),
    "line_codes": ("argusflow.records.codekernel:LINE_CODES", "void(i8[:, ::1], i8[::1], i8, i8[:, ::1])"),
    "merge_order": ("argusflow.ops.sortkernel:MERGE_ORDER",
                    "void(f8[:, ::1], b1[:, ::1], i8[::1], i8[::1], i8[::1])"),
}
# Exports that release the GIL while they run (pycc's wrappers keep it otherwise) and run
# without numba's reference counting (they allocate nothing; the counting of the arrays handed
# to inlined helpers took a third of the line writer's time): the printer's line writer runs
# in a thread beside the decoder (and the codes of ra's default lines with it).
NOGIL = frozenset({"write_lines", "line_codes", "merge_batch"})


def _digest() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        path = PACKAGE / name
        for src in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            h.update(src.name.encode())
            h.update(src.read_bytes())
    # numba's version file, found without importing numba (or importlib.metadata: 0.1 s).
    spec = importlib.util.find_spec("numba")
    if spec is None or spec.origin is None:
        raise ImportError("numba is not installed")
    h.update((Path(spec.origin).parent / "_version.py").read_bytes())
    h.update(f"{sys.version}|{sorted(KERNELS.items())}".encode())
    return h.hexdigest()[:16]


def _module_path(name: str) -> Path:
    return CACHE / f"{name}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def _name() -> str | None:
    if os.environ.get(BUILDING) or os.environ.get("ARGUSFLOW_JIT"):
        return None
    try:
        return f"{PREFIX}{_digest()}"
    except (OSError, ImportError):
        return None


NAME = _name()
# The extension exists already (modules then skip numba at import, expecting to load it).
READY = NAME is not None and _module_path(NAME).exists()
_LOADED: list[ModuleType | None] = []


def extension() -> ModuleType | None:
    """The extension module, built now if it is missing; None: use numba's JIT."""
    if not _LOADED:
        _LOADED.append(_load())
    return _LOADED[0]


def loaded() -> bool:
    """The extension is loaded in this process already (its kernels cost nothing more)."""
    return bool(_LOADED and _LOADED[0] is not None)


def function(name: str) -> Any:
    """Kernel `name` of KERNELS from the extension (built if missing), or None."""
    module = extension()
    fn = None if module is None else getattr(module, name, None)
    if fn is not None and os.environ.get(CHECK):
        return _checked(name, fn)
    return fn


def _checked(name: str, fn: Any) -> Any:
    """`fn` behind a check of its arrays' dtypes, dimensions and layouts against its
    signature: pycc's exports check none of them and would read memory wrongly."""
    import numpy as np
    from numba import typeof
    from numba.core import sigutils

    wanted, _ = sigutils.normalize_signature(KERNELS[name][1])

    def call(*args: Any) -> Any:
        for i, (arg, want) in enumerate(zip(args, wanted, strict=True)):
            if isinstance(arg, np.ndarray):
                got = typeof(arg)
                if (got.dtype, got.ndim, got.layout) != (want.dtype, want.ndim, want.layout):
                    raise TypeError(f"{name}: argument {i} is {got}, the kernel takes {want}")
        return fn(*args)

    return call


def _load() -> ModuleType | None:
    if NAME is None:
        return None
    path = _module_path(NAME)
    failed = path.with_suffix(".failed")
    if not path.exists() and not failed.exists():
        _build(NAME, path, failed)
    if not path.exists():
        return None
    try:
        spec = importlib.util.spec_from_file_location(NAME, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as err:
        _give_up(path, failed, err)
        return None
    return module


def _give_up(path: Path, failed: Path, err: ImportError) -> None:
    """An extension that exists but does not load (damaged, another libc): remember it as a
    failed build and move it aside, so the next run uses numba's JIT instead of failing again."""
    try:
        failed.write_text(f"could not load {path.name}: {err}\n")
        os.replace(path, path.with_suffix(".unloadable"))
    except OSError:
        pass


def _build(name: str, path: Path, failed: Path) -> None:
    """Compile the extension in a subprocess, then move it into place (atomic: concurrent runs
    may build it at once, each into a directory of its own; the last rename wins, all equal)."""
    try:
        CACHE.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            env = {**os.environ, BUILDING: "1"}
            done = subprocess.run([sys.executable, "-m", "argusflow.aot", name, tmp],
                                  env=env, capture_output=True, timeout=900, check=False,
                                  stdin=subprocess.DEVNULL)
            built = Path(tmp) / path.name
            if done.returncode == 0 and built.exists():
                os.replace(built, path)
                for old in CACHE.glob(f"{PREFIX}*"):  # builds of earlier sources
                    if not old.name.startswith(name):
                        old.unlink(missing_ok=True)
                return
        failed.write_bytes(done.stderr[-4000:])
    except (OSError, subprocess.SubprocessError):
        try:
            failed.touch()
        except OSError:
            pass


def python_source(target: str) -> Any:
    """The Python function behind KERNELS' `module:attribute`, its helpers made numba
    dispatchers (what pycc needs to compile it)."""
    import importlib

    module_name, attr = target.split(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if hasattr(obj, "py_func"):  # a numba dispatcher
        return obj.py_func
    obj.numba()  # a capture.jit.Kernel: compiles and rebinds its helpers
    return obj.fn


def _compile(name: str, out_dir: str) -> None:
    """The build subprocess: numba.pycc exports every kernel of KERNELS under its name."""
    import warnings

    warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
    from numba.pycc import CC

    cc = CC(name)
    cc.output_dir = out_dir
    cc.verbose = False
    released = []
    for export, (target, sig) in KERNELS.items():
        fn = python_source(target)
        cc.export(export, sig)(fn)
        if export in NOGIL:
            released.append(fn)
    _release_gil(released)
    cc.compile()
    shutil.rmtree(Path(out_dir) / "build", ignore_errors=True)


def _release_gil(functions: list[Any]) -> None:
    """Compile `functions` with numba's release_gil flag and without NRT (what
    @njit(nogil=True, _nrt=False) sets): pycc has no option for them, so its compile step is
    wrapped."""
    from numba.pycc import compiler

    original = compiler.compile_extra

    def compile_extra(typingctx: Any, targetctx: Any, func: Any, args: Any, return_type: Any,
                      flags: Any, *rest: Any, **kws: Any) -> Any:
        if any(func is fn for fn in functions):
            flags = flags.copy()
            flags.release_gil = True
            flags.nrt = False
        return original(typingctx, targetctx, func, args, return_type, flags, *rest, **kws)

    compiler.compile_extra = compile_extra


if __name__ == "__main__":
    _compile(sys.argv[1], sys.argv[2])
