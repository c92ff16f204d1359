"""racluster's merge kernel compiled ahead of time, so that a run need not start numba.

Importing numba and loading a cached kernel costs every racluster run about 0.7 s of CPU and
100 MB of memory (LLVM), more than the merge itself on most files.  numba can also compile a
function into a plain extension module (`numba.pycc`): that module needs numpy only.  So the
first run after the kernel's sources change builds the extension (in a subprocess, 10-60 s,
like numba's own first compile), into `__pycache__` next to this file; later runs import it.
When the build cannot be done (no C compiler, read-only install) the kernel runs under numba's
JIT, as before; a failed build is remembered, not retried on every run.

The extension's name carries a digest of everything the compiled code depends on: the kernel
module, the modules its constants come from (field table, schema, derive), and the Python and
numba versions.  `ARGUSFLOW_JIT=1` skips the extension (numba's JIT; for debugging).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent
SOURCES = ("ops/cluster.py", "records/fields.py", "records/schema.py", "records/derive.py")
CACHE = Path(__file__).resolve().parent / "__pycache__"
BUILDING = "ARGUSFLOW_KERNEL_BUILD"  # set in the build subprocess: compile with numba there

# merge_batch's arguments as cluster.Clusterer.add passes them (all contiguous arrays).
_ARGS = ("u8:2 i8:1 b1:1 i8:1 b1:1 f8:1 u8:2 f8:1 i8:1 i8:1 f4:2 b1:1 i8:1 i8:2 i8:2 i8:1 "
         "i8:1 f4:2 i8:1").split()


def signature() -> str:
    """`void(u8[:, ::1], i8[::1], ...)`: the exported function's numba signature."""
    arrays = []
    for arg in _ARGS:
        kind, dims = arg.split(":")
        arrays.append(f"{kind}[{', '.join([':'] * (int(dims) - 1) + ['::1'])}]")
    return f"void({', '.join(arrays)})"


def _digest() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((PACKAGE / name).read_bytes())
    # numba's version file, found without importing numba (or importlib.metadata: 0.1 s).
    spec = importlib.util.find_spec("numba")
    if spec is None or spec.origin is None:
        raise ImportError("numba is not installed")
    h.update((Path(spec.origin).parent / "_version.py").read_bytes())
    h.update(f"{sys.version}|{signature()}".encode())
    return h.hexdigest()[:16]


def _module_path(name: str) -> Path:
    return CACHE / f"{name}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def _import(name: str) -> Callable[..., Any]:
    spec = importlib.util.spec_from_file_location(name, _module_path(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.merge_batch  # type: ignore[no-any-return]


def _name() -> str | None:
    if os.environ.get(BUILDING) or os.environ.get("ARGUSFLOW_JIT"):
        return None
    try:
        return f"cluster_kernel_{_digest()}"
    except (OSError, ImportError):
        return None


NAME = _name()
# Whether this process uses a built extension (cluster.py then does not compile with numba).
READY = NAME is not None and _module_path(NAME).exists()


def merge_batch() -> Callable[..., Any] | None:
    """The compiled kernel from the extension, built now if it is missing; None: use numba."""
    if NAME is None:
        return None
    path = _module_path(NAME)
    failed = path.with_suffix(".failed")
    if not path.exists() and not failed.exists():
        _build(NAME, path, failed)
    if not path.exists():
        return None
    try:
        return _import(NAME)
    except ImportError:
        return None


def _build(name: str, path: Path, failed: Path) -> None:
    """Compile the extension in a subprocess, then move it into place (atomic: concurrent runs
    may build it at once, each into a directory of its own)."""
    try:
        CACHE.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            env = {**os.environ, BUILDING: "1"}
            done = subprocess.run([sys.executable, "-m", "argusflow.ops.cluster_aot", name, tmp],
                                  env=env, capture_output=True, timeout=900, check=False)
            built = Path(tmp) / path.name
            if done.returncode == 0 and built.exists():
                os.replace(built, path)
                for old in CACHE.glob("cluster_kernel_*"):  # builds of earlier sources
                    if not old.name.startswith(name):
                        old.unlink(missing_ok=True)
                return
        failed.write_bytes(done.stderr[-4000:])
    except (OSError, subprocess.SubprocessError):
        try:
            failed.touch()
        except OSError:
            pass


def _compile(name: str, out_dir: str) -> None:
    """The build subprocess: numba.pycc exports cluster.merge_batch as `merge_batch`."""
    import warnings

    warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
    from numba.pycc import CC

    from argusflow.ops import cluster

    cc = CC(name)
    cc.output_dir = out_dir
    cc.verbose = False
    cc.export("merge_batch", signature())(cluster.merge_batch.py_func)
    cc.compile()
    shutil.rmtree(Path(out_dir) / "build", ignore_errors=True)


if __name__ == "__main__":
    _compile(sys.argv[1], sys.argv[2])
