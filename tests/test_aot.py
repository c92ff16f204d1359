"""argusflow.aot: the kernels compiled ahead of time are the ones numba's JIT compiles, and a
probe run with the extension never loads numba."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from argusflow import aot

SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "spec" / "samples"


def test_signatures_are_parseable() -> None:
    pytest.importorskip("numba")
    from numba.core import sigutils

    for name, (target, sig) in aot.KERNELS.items():
        assert ":" in target, name
        args, ret = sigutils.normalize_signature(sig)
        assert len(args) > 0, name


def test_cluster_shim_keeps_its_interface() -> None:
    from argusflow.ops import cluster_aot

    assert cluster_aot.signature() == aot.KERNELS["merge_batch"][1]
    assert isinstance(cluster_aot.READY, bool)


def test_extension_exports_every_kernel() -> None:
    module = aot.extension()
    if module is None:
        pytest.skip("no ahead-of-time extension here (no compiler, or ARGUSFLOW_JIT)")
    for name in aot.KERNELS:
        assert callable(getattr(module, name)), name


def test_precompiled_walk_agrees_with_python() -> None:
    from argusflow.capture import walk

    fn = aot.function("walk_pcap")
    if fn is None:
        pytest.skip("no ahead-of-time extension here")
    # two little-endian pcap records of 4 and 2 bytes
    recs = np.array([1, 2, 4, 60], "<u4").tobytes() + bytes(4)
    recs += np.array([3, 4, 2, 60], "<u4").tobytes() + bytes(2)
    buf = np.frombuffer(recs, dtype=np.uint8).copy()
    outs = []
    for kernel, view in ((fn, buf), (walk.walk_pcap.py, memoryview(buf))):
        rows = np.zeros((6, 8), dtype=np.int64)
        got = kernel(view, 0, len(buf), 8, False, 0, 65535, rows, 0)
        outs.append((tuple(int(x) for x in got), rows))
    assert outs[0][0] == outs[1][0]
    assert np.array_equal(outs[0][1], outs[1][1])


def test_probe_runs_without_numba(tmp_path: Path) -> None:
    pcaps = sorted(SAMPLE.glob("*.pcap"))
    if not pcaps:
        pytest.skip(f"no spec samples in {SAMPLE}")
    if aot.extension() is None:
        pytest.skip("no ahead-of-time extension here")
    code = ("import sys; from argusflow.cli import argus; sys.argv = ['argus', '-X', '-r', "
            f"{str(pcaps[0])!r}, '-w', {str(tmp_path / 'out')!r}]\n"
            "try:\n    argus.main()\nexcept SystemExit:\n    pass\n"
            "print('numba' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-2000:]


CORPUS = SAMPLE.parent.parent / "corpus"


@pytest.mark.parametrize(("name", "extra"), [
    ("zeek__wikipedia.pcap", ["-", "tcp and port 80"]),  # a filtered batch: strided columns
    ("zeek__wikipedia.pcap", ["-S", "1", "-A", "-J", "-Z", "-m"]),
    ("zeek__pcapng-multi-interface.pcapng", []),
])
def test_kernels_get_the_types_they_were_built_for(name: str, extra: list[str],
                                                   tmp_path: Path) -> None:
    """pycc's exports do not check their arguments: ARGUSFLOW_AOT_CHECK makes every call do."""
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"no corpus capture {path}")
    if aot.extension() is None:
        pytest.skip("no ahead-of-time extension here")
    argv = ["argus", "-X", "-r", str(path), "-w", str(tmp_path / "out"), *extra]
    code = (f"import sys; from argusflow.cli import argus; sys.argv = {argv!r}\n"
            "try:\n    argus.main()\nexcept SystemExit:\n    pass\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False, env={**os.environ, aot.CHECK: "1"})
    assert "the kernel takes" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0, done.stderr[-2000:]


def test_check_mode_refuses_a_wrong_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    if aot.function("flow_rehash") is None:
        pytest.skip("no ahead-of-time extension here")
    monkeypatch.setenv(aot.CHECK, "1")
    rehash = aot.function("flow_rehash")
    with pytest.raises(TypeError, match="the kernel takes"):
        rehash(np.zeros(4, np.uint64), np.zeros((3, 4), np.int64), np.zeros(4, np.int64))


def test_an_extension_that_does_not_load_is_set_aside(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged extension fails once: it is moved aside and remembered as a failed build, so
    the next run takes numba's JIT instead of failing the same way again."""
    monkeypatch.setattr(aot, "CACHE", tmp_path)
    monkeypatch.setattr(aot, "NAME", "kernels_damaged")
    path = aot._module_path("kernels_damaged")
    path.write_bytes(b"not an ELF file")
    assert aot._load() is None
    assert not path.exists() and path.with_suffix(".failed").exists()
    assert aot._load() is None  # remembered: no build is tried
