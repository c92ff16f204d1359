"""The compiled line writer (records/linekernel.py, linewriter.py) against the printer's polars
path, and its kernel's rules on hand-made columns (run as plain Python)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from argusflow.records import linekernel as k
from argusflow.records import linewriter as lw
from argusflow.records.printer import Printer, PrintOptions, parse_field_list

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "spec" / "samples"

SPEC_FIELDS = (
    "srcid seq stime ltime dur trans cause flgs proto saddr sport dir daddr dport spkts dpkts "
    "sbytes dbytes sappbytes dappbytes state smac dmac stos dtos sttl dttl sipid dipid svid dvid "
    "svlan dvlan smpls dmpls swin dwin stcpb dtcpb tcprtt synack ackdat tcpopt sloss dloss smaxsz "
    "sminsz dmaxsz dminsz sintpkt dintpkt sjit djit inode icmpid suser:32 duser:32 offset").split()

OPTION_SETS: dict[str, dict] = {
    "default": {},
    "n": {"nflag": 1},
    "nn_p3": {"nflag": 2, "precision": 3},
    "z": {"zflag": "z"},
    "Zb_n": {"zflag": "b", "nflag": 1},
    "u_p0": {"epoch": True, "precision": 0},
    "spec": {"columns": parse_field_list(SPEC_FIELDS)},
    "iso": {"time_format": "%Y-%m-%dT%H:%M:%S.%f",
            "columns": parse_field_list(["stime", "ltime", "dur", "sstime"])},
    "T_p3": {"time_format": "%T", "precision": 3,
             "columns": parse_field_list(["spkts", "sstime", "stime", "ltime"])},
    "utf8_time": {"time_format": "%H·%M:%S·%f", "columns": parse_field_list(["stime", "ltime:10", "sstime"])},
    "narrow": {"columns": parse_field_list(["saddr:5", "sport:2", "pkts:2", "dur:3", "cause:2", "ploss:2",
                                            "pretrans", "state:2", "stime:5", "flgs:4", "proto:2"])},
    "unpadded": {"columns": parse_field_list(["dur:0", "pkts:0", "saddr:0", "sport:0", "stime:0"])},
    "p20": {"precision": 20, "columns": parse_field_list(["dur", "rate", "load"])},
}

needs_writer = pytest.mark.skipif(not lw.available(), reason="no compiled line writer (no extension)")
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="needs ../shared/spec/samples")


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.argus")) if SAMPLES.is_dir() else []


@needs_writer
@needs_samples
@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_same_lines_as_polars_path(path: Path, option_set: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from argusflow.records.codec import read_file

    os.environ["TZ"] = "UTC"
    batch = read_file(str(path))
    options = OPTION_SETS[option_set]
    compiled = Printer(PrintOptions(**options)).render(batch)
    monkeypatch.setattr(lw, "ENABLED", False)
    assert compiled == Printer(PrintOptions(**options)).render(batch)


def run(columns: list[lw.KernelColumn]) -> list[str]:
    """The kernel as plain Python (its rules, not its speed)."""
    n = len(columns[0].values)
    vals = np.stack([np.asarray(col.values, dtype=np.int64) for col in columns])
    spec = np.array([lw._spec_row(col) for col in columns], dtype=np.int64)
    whole = lw.join_tables(*(col.table for col in columns))
    counts = np.array([len(col.table) for col in columns], dtype=np.int64)
    tbase = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    tbytes = np.frombuffer(whole.data + b"\0", dtype=np.uint8)
    out = np.zeros(n * 200 + 1, dtype=np.uint8)
    end = k.write_lines(vals, spec, tbytes, whole.offsets(), tbase, out)
    return out[:end].tobytes().decode().split("\n")[:-1]


def column(kind: int, values: list[int], texts: list[str] | None = None,
           **layout: int | bool) -> lw.KernelColumn:
    return lw.KernelColumn(kind, np.array(values, dtype=np.int64), lw.table(texts or [""]), **layout)


def test_numbers_fit_and_cut() -> None:
    ints = column(lw.INT, [7, -42, 123456], width=4)
    assert run([ints]) == ["   7", " -42", "123*"]
    left = column(lw.INT, [7, 123456], width=4, align_left=True)
    assert run([left, column(lw.INT, [1, 2])]) == ["7    1", "123* 2"]
    fixed = column(lw.FIXED, [1234, ~0, ~1500], width=7, param=3)  # 1.234, -0.000, -1.500
    assert run([fixed]) == ["  1.234", " -0.000", " -1.500"]
    ip = column(lw.IPV4, [0x0A000001, 0xFFFFFFFF], width=12)
    assert run([ip]) == ["    10.0.0.1", "255.255.255*"]


def test_tables_blanks_and_ports() -> None:
    addr = column(lw.IPV4, [0x0A000001, lw.NULL - 1, lw.NULL], ["", "fd00::1"], width=10)
    port = column(lw.TEXT, [1, 0, 2], ["", "http", "verylongname"], width=6, align_left=True, joined=True)
    assert run([addr, port]) == ["  10.0.0.1.http", "   fd00::1", "          .veryl*"]
    cause = column(lw.TEXT, [0], ["Shutdown"], width=5, cut=True)
    assert run([cause]) == ["Shutd"]


def test_utf8_cells_count_characters() -> None:
    text = column(lw.TEXT, [0, 1], ["é", "ééééé"], width=3)
    assert run([text, column(lw.INT, [1, 2])]) == ["  é 1", "éé* 2"]


def test_times_and_flags() -> None:
    # seconds 0 and 1 of the table, pieces "a" | "." around the fraction (2 decimals)
    times = column(lw.TIME, [1_234_567, 0, lw.NULL], ["", "s0.", "s1.", "", ""], width=5,
                   param=2, pieces=2, seconds=2)
    flags = column(lw.CHARS7, [ord("T") | ord("e") << 7 | ord(" ") << 14], param=3)
    assert run([times, column(lw.INT, [1, 2, 3])]) == ["s1.23 1", "s0.00 2", "      3"]
    assert run([flags]) == ["Te"]  # the trailing blank goes, as at every line's end


@needs_writer
def test_kernel_releases_the_gil() -> None:
    from argusflow import aot

    assert "write_lines" in aot.NOGIL


@needs_writer
@needs_samples
def test_kernel_gets_the_types_it_was_built_for() -> None:
    """ra under ARGUSFLOW_AOT_CHECK (every call's arrays checked against the signature)."""
    import subprocess
    import sys

    path = SAMPLES / "tcp.argus"
    ra = [str(Path(sys.executable).parent / "ra"), "-X", "-n", "-r", str(path), "-s", "+dur", "+suser"]
    env = dict(os.environ, TZ="UTC", ARGUSFLOW_AOT_CHECK="1")
    checked = subprocess.run(ra, capture_output=True, env=env, check=False)
    assert checked.returncode == 0 and checked.stdout, checked.stderr.decode()
    env["ARGUSFLOW_LINE_WRITER"] = "0"
    assert checked.stdout == subprocess.run(ra, capture_output=True, env=env, check=True).stdout
