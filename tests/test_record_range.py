"""-N over several inputs against the real 3.0.8 ra, rasort and racount: byte-identical output.

3.0.8 numbers the flows of every input after the first with two extra numbers (one before its
first flow, one after it), and keeps that first flow for a START up to one past its number.
Ours runs in-process; the real tools by absolute path with -X.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from argusflow.cli.ra import ra
from argusflow.cli.racount import racount
from argusflow.cli.rasort import rasort
from argusflow.cli.runner import run_main

PROGRAMS = {"ra": ra, "rasort": rasort, "racount": racount}
ORDERS = {
    "tcp_udp_icmp": ("tcp", "udp", "icmp"),
    "udp_tcp_icmp_long": ("udp", "tcp", "icmp", "long"),
    "icmp_tcp_tcp_udp": ("icmp", "tcp", "tcp", "udp"),
}
RANGES = ("2", "3", "5", "8", "4-9", "3+2", "8-8")


def ours(program: str, argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_main(program, PROGRAMS[program], [str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("program", PROGRAMS)
def test_several_inputs_match_real(shared_dir: Path, run_real, program: str, order: str) -> None:
    samples = shared_dir / "spec" / "samples"
    files = [samples / f"{name}.argus" for name in ORDERS[order]]
    for count in RANGES:
        argv = ["-X", "-N", count, "-r", *files]
        code, text, err = ours(program, argv)
        done = run_real([program, *argv])
        assert err == done.stderr, count
        assert text == done.stdout, count
        assert code == done.returncode, count
