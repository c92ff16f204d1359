"""ra's polars-free default lines (records/numpy_lines.py) against the printer's polars path:
the same text for every sample file and the garbled records real argus writes, and polars never
imported by `ra -r FILE` with the default fields."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from garbled import write_garbled_file

from argusflow.records import linewriter as lw
from argusflow.records import numpy_lines as nl
from argusflow.records.codec import RecordReader
from argusflow.records.fields import DEFAULT_FIELDS, FIELDS
from argusflow.records.printer import Printer, PrintOptions, ipv6_series

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "spec" / "samples"

# LineOptions and the PrintOptions they stand for
OPTION_SETS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "n": ({"nflag": 1}, {"nflag": 1}),
    "nn_p3": ({"nflag": 2, "precision": 3}, {"nflag": 2, "precision": 3}),
    "nnn": ({"nflag": 3}, {"nflag": 3}),
    "u_p0": ({"epoch": True, "precision": 0}, {"epoch": True, "precision": 0}),
    "p0_noheader": ({"precision": 0, "header": False}, {"precision": 0, "header": -1}),
}

needs_writer = pytest.mark.skipif(not lw.available(), reason="no compiled line writer (no extension)")
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="needs ../shared/spec/samples")


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.argus")) if SAMPLES.is_dir() else []


def both_paths(data: bytes, option_set: str) -> tuple[str | None, str]:
    """(the numpy path's text, None where it leaves the batch to polars; the polars path's)."""
    ours, theirs = OPTION_SETS[option_set]
    reader = RecordReader(expected_bytes=len(data))
    decoded = reader.feed_columns(data, nl.DECODE)
    lines = nl.NumpyLines(nl.LineOptions(**ours))
    made = lines.lines(decoded.columns)
    expected = Printer(PrintOptions(**theirs)).render(decoded.frame())
    if made is None:
        return None, expected
    data_, count = made
    head = lines.header() if count and lines.options.header else ""
    return head + bytes(data_).decode(), expected


@needs_writer
@needs_samples
@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_same_lines_as_polars_path(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    data = path.read_bytes()
    for option_set in OPTION_SETS:
        ours, expected = both_paths(data, option_set)
        assert ours is None or ours == expected, option_set


# Files with Ethernet keys, RARP, flow subtype 3 or correlation DSRs go to polars; the rest
# (most) are printed by the numpy path.
LEFT_TO_POLARS = {"ether.argus", "ether_rich.argus", "synthetic.argus", "synthetic_racluster.argus",
                  "udp_l3matrix.argus"}


@needs_writer
@needs_samples
def test_most_samples_take_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    lines = nl.NumpyLines(nl.LineOptions())
    for path in sample_files():
        data = path.read_bytes()
        decoded = RecordReader(expected_bytes=len(data)).feed_columns(data, nl.DECODE)
        assert (lines.lines(decoded.columns) is None) == (path.name in LEFT_TO_POLARS), path.name


@needs_writer
@pytest.mark.parametrize("seed", range(3))
def test_garbled_records_as_polars_prints_them(seed: int, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    data = write_garbled_file(tmp_path / "g.argus", seed).read_bytes()
    for option_set in OPTION_SETS:
        ours, expected = both_paths(data, option_set)
        assert ours is None or ours == expected, option_set


def test_fields_are_the_default_fields() -> None:
    assert tuple(name for name, *_ in nl.FIELDS) == DEFAULT_FIELDS
    for name, label, width, left in nl.FIELDS:
        f = FIELDS[name]
        assert (f.label, f.width, f.align == "l", f.hdr_align, f.hdr_extra) == (label, width, left, "r", 0)
    for p in (0, 3, 6):
        header = nl.NumpyLines(nl.LineOptions(precision=p)).header()
        assert header == Printer(PrintOptions(precision=p)).header()


def test_ipv6_texts_as_the_printer_makes_them() -> None:
    rng = random.Random(7)
    pairs = []
    for _ in range(400):  # groups zero at random: runs of every length and place
        groups = [0 if rng.random() < 0.5 else rng.randrange(1, 1 << 16) for _ in range(8)]
        hi = sum(g << (16 * (3 - j)) for j, g in enumerate(groups[:4]))
        lo = sum(g << (16 * (3 - j)) for j, g in enumerate(groups[4:]))
        pairs.append((hi, lo))
    pairs += [(0, 0), (0, 1), (0xFE80 << 48, 1), (0x20010DB8 << 32, 0)]
    import polars as pl

    hi = pl.Series([h for h, _ in pairs], dtype=pl.UInt64)
    lo = pl.Series([low for _, low in pairs], dtype=pl.UInt64)
    assert [nl.ipv6_text(h, low) for h, low in pairs] == ipv6_series(hi, lo).to_list()


def test_distinct_counts_or_sorts() -> None:
    for values in (np.array([5, 3, 5, 9, 3]), np.array([1 << 40, 7, 1 << 40, 0])):
        uniq, inverse = nl.distinct(values)
        assert list(uniq) == sorted(set(values.tolist()))
        assert (uniq[inverse] == values).all()


@needs_samples
def test_ra_prints_default_fields_without_polars() -> None:
    code = ("import sys; from argusflow.cli.ra import ra; "
            f"code = ra(['-X', '-n', '-r', {str(SAMPLES / 'tcp.argus')!r}]); "
            "sys.stdout.flush(); assert 'polars' not in sys.modules, 'polars imported'; sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TZ": "UTC"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(Printer(PrintOptions()).header())


@needs_samples
def test_kernels_get_the_types_they_were_built_for() -> None:
    """ra's default lines under ARGUSFLOW_AOT_CHECK (every call's arrays checked against the
    signature) print what the polars path prints (the same fields named with -s)."""
    ra = [str(Path(sys.executable).parent / "ra"), "-X", "-r", str(SAMPLES / "icmp.argus"),
          "-r", str(SAMPLES / "tcp.argus")]
    env = dict(os.environ, TZ="UTC", ARGUSFLOW_AOT_CHECK="1")
    checked = subprocess.run(ra, capture_output=True, env=env, check=False)
    assert checked.returncode == 0 and checked.stdout, checked.stderr.decode()
    polars = subprocess.run([*ra, "-s", *DEFAULT_FIELDS], capture_output=True, env=env, check=True)
    assert checked.stdout == polars.stdout


@needs_writer
@needs_samples
def test_no_compiled_kernel_leaves_the_batch_to_polars(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code kernel gone after `available()` said yes (its extension being rebuilt): the
    batch goes to the polars printer, not an AssertionError."""
    monkeypatch.setenv("TZ", "UTC")
    data = (SAMPLES / "tcp.argus").read_bytes()
    decoded = RecordReader(expected_bytes=len(data)).feed_columns(data, nl.DECODE)
    monkeypatch.setattr(nl, "codes_kernel", lambda: None)
    lines = nl.NumpyLines(nl.LineOptions())
    assert lines.lines(decoded.columns) is None
    import io

    from argusflow.cli.printing import LineSink

    sink = LineSink(lines, lambda: Printer(PrintOptions()))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    sink.write(decoded)
    sink.close()
    assert out.getvalue() == Printer(PrintOptions()).render(decoded.frame())
