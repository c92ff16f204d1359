"""The filter's two back-ends agree: polars (`RecordFilter.expr`) and numpy (`.numpy`).

One compiler writes both (filter.compile_records with filter.numpy_ops' building blocks), and
ra -w and the reader's row picker use numpy whenever every primitive allows it, so a difference
would make `ra -w - EXPR` write other records than `ra - EXPR` prints.  Checked on every listed
expression of tests/test_filter_diff.py and on generated ones, over the spec samples and the
corpus turned into Argus data by the real argus (default and rich configurations: ARP REVERSE
keys, TCP options, jitter, MPLS, VLANs ...).  Where the polars answer itself is checked against
the real ra is test_filter_diff.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_filter_diff import EXPRESSIONS, expression

from argusflow.errors import FilterError
from argusflow.filter import RecordFilter, compile_filter, parse
from argusflow.records.codec import read_file

# The issue-3 filters, and the everyday primitives: these must never fall back to polars.
MUST_BE_NUMPY = ["tcp", "dst port 53", "src pkts gt 10 and not net 10.0.0.0/8",
                 "syn and not synack", "(tcp or udp) and bytes gt 1000", "udp and port 53",
                 "host 10.0.0.1", "net fd00::/8", "icmp", "arp", "not ip", "ttl gt 64",
                 "src bytes lte 60", "ether host 00:11:22:33:44:01", "man", "start", "est",
                 "rst", "jit gt 0.0", "trans 1",
                 "seq gt 0", "srcid 0", "frag", "multipath", "src appbytes eq 0",
                 # derived fields (filter.numpy_fields) and words of the opaque network objects
                 "dur gt 1", "src rate gt 10", "dst load lt 1000", "pcr gt 0", "avgdur gt 0.5",
                 "tcprtt gt 0.01", "vid 4095", "dst vid 1", "mid 29", "retrans", "src dup", "mss",
                 "echo", "unreach", "timexed", "unrport", "outoforder", "normal"]


@pytest.fixture(scope="module")
def batches(shared_dir: Path, corpus_argus_files: dict[str, Path],
            corpus_rich_argus_files: dict[str, Path]) -> dict[str, pl.DataFrame]:
    samples = sorted((shared_dir / "spec" / "samples").glob("*.argus"))
    frames = {"samples": pl.concat([read_file(str(p)) for p in samples])}
    for name, files in (("corpus", corpus_argus_files), ("corpus-rich", corpus_rich_argus_files)):
        frames[name] = pl.concat([read_file(str(files[k])) for k in sorted(files)])
    return frames


def disagreement(f: RecordFilter, batch: pl.DataFrame) -> str | None:
    """Where the back-ends differ on `batch` (None: they agree)."""
    expected = f.mask(batch).fill_null(False).to_numpy()
    columns = {name: batch[name].to_numpy() for name in f.columns}
    got = f.numpy_mask(columns, batch.height)
    if np.array_equal(expected, got):
        return None
    rows = np.flatnonzero(expected != got)
    return f"{len(rows)} records differ, offsets {batch['offset'].to_numpy()[rows[:5]].tolist()}"


def compiled(text: str) -> RecordFilter | None:
    try:
        return compile_filter(text)
    except FilterError:
        return None


def test_the_usual_filters_run_on_numpy() -> None:
    assert [text for text in MUST_BE_NUMPY if compile_filter(text).numpy is None] == []


def test_numpy_reads_only_the_columns_polars_names() -> None:
    for text in MUST_BE_NUMPY:
        f = compile_filter(text)
        assert f.numpy is not None
        assert f.numpy.roots <= set(f.expr.meta.root_names()), text


def test_every_listed_expression_agrees(batches: dict[str, pl.DataFrame]) -> None:
    wrong: dict[str, str] = {}
    numpy_count = 0
    for text in EXPRESSIONS:
        f = compiled(text)
        if f is None or f.numpy is None:
            continue
        numpy_count += 1
        for name, batch in batches.items():
            why = disagreement(f, batch)
            if why:
                wrong[f"{name}: {text}"] = why
    assert wrong == {}
    assert numpy_count >= len(EXPRESSIONS) * 3 // 4  # most of the language runs on numpy


def test_constant_and_empty_batches() -> None:
    for text, expected in (("2 > 1", True), ("1 > 2", False)):
        f = compile_filter(text)
        assert f.numpy is not None
        for n in (0, 3):
            columns = {name: np.ones(n, dtype=np.uint64) for name in f.columns}
            assert f.numpy_mask(columns, n).tolist() == [expected] * n


@settings(max_examples=150, deadline=None)
@given(case=expression(), which=st.sampled_from(["samples", "corpus", "corpus-rich"]))
def test_generated_expressions_agree(case: tuple[str, tuple], which: str,
                                     batches: dict[str, pl.DataFrame]) -> None:
    text, _ = case
    f = compiled(text)
    if f is None or f.numpy is None:
        return
    assert disagreement(f, batches[which]) is None, text


def test_plain_fields_are_the_field_tables() -> None:
    """compile_records.PLAIN_FIELDS (read by the numpy back-end without the field table) says
    what the table says: the value is the column of that name, carried by that DSR."""
    from argusflow.filter.compile_records import PLAIN_FIELDS
    from argusflow.records.fields import FIELDS

    for name, dsr in PLAIN_FIELDS.items():
        value = FIELDS[name].value()
        assert value.meta.is_column() and value.meta.output_name() == name, name
        assert FIELDS[name].dsr == dsr, name


def test_compiling_for_numpy_needs_no_polars() -> None:
    """`ra -w - FILTER` can run without importing polars (~0.2 s of start-up)."""
    import subprocess
    import sys

    code = ("import sys\nfrom argusflow.filter import compile_filter\n"
            f"for text in {MUST_BE_NUMPY!r}:\n    assert compile_filter(text).numpy is not None\n"
            "assert 'polars' not in sys.modules, 'polars imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("expr", [["-", "tcp"], ["-", "src pkts gt 10 and not net 10.0.0.0/8"], [],
                                  ["-", "dur gt 0.5 or src rate gt 10 or load gt 1000"],
                                  ["-", "echo or unreach or retrans or mss"]])
def test_ra_w_copies_without_polars(expr: list[str], tmp_path: Path, shared_dir: Path,
                                    run_real) -> None:
    """`ra -w` with no filter, or one with a numpy form, reads, selects and copies records
    without importing polars (~0.2 s of CPU), and writes what the real ra prints alike."""
    import subprocess
    import sys

    source = tmp_path / "samples.argus"
    source.write_bytes(b"".join(p.read_bytes() for p in sorted((shared_dir / "spec" / "samples")
                                                               .glob("*.argus"))))
    ours, real = tmp_path / "ours.argus", tmp_path / "real.argus"
    code = ("import sys\nfrom argusflow.cli.ra import ra\n"
            f"rc = ra({['-X', '-r', str(source), '-w', str(ours), *expr]!r})\n"
            "assert 'polars' not in sys.modules, 'polars imported'\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    run_real(["ra", "-X", "-r", str(source), "-w", str(real), *expr])
    printed = [run_real(["ra", "-X", "-n", "-r", str(path)]).stdout for path in (ours, real)]
    assert printed[0] == printed[1]



def test_counters_past_63_bits_compare_alike(bundled_sample: Path) -> None:
    """A 64-bit counter of 2**63 or more (hostile input) is compared as the signed value both
    back-ends read (numpy wraps): polars' strict cast to Int64 ended ra with a traceback."""
    batch = read_file(str(bundled_sample)).with_columns(
        pl.lit(2**63 + 5, dtype=pl.UInt64).alias("sbytes"))
    for text in ("src bytes gt 5", "src bytes lt 5", "bytes gt 5"):
        f = compile_filter(text)
        assert f.numpy is not None, text
        assert disagreement(f, batch) is None, text


def test_compiling_is_reentrant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The back-end is the compiler's, not the module's: a polars compile that starts while a
    numpy one is under way (another thread: two radium clients sending filters) builds polars,
    and the numpy one goes on with numpy.  (A global back-end stack gave the inner one numpy.)"""
    from argusflow.filter import compile_records
    from argusflow.filter.numpy_ops import NpExpr

    inner: list[object] = []
    numpy_col = compile_records.NumpyOps.col

    def col(name: str) -> NpExpr:
        if not inner:  # in the middle of the numpy compile
            inner.append(compile_records.compile_node(parse("tcp and src pkts gt 10")))
        return numpy_col(name)

    monkeypatch.setattr(compile_records.NumpyOps, "col", staticmethod(col))
    outer = compile_records.compile_numpy(parse("udp and dst port 53"))
    assert isinstance(outer, NpExpr)
    assert isinstance(inner[0], pl.Expr)


def test_threads_compile_both_back_ends_at_once() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def both(text: str) -> tuple[bool, bool]:
        f = compile_filter(text)
        return f.numpy is not None, isinstance(f.expr, pl.Expr)

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(both, MUST_BE_NUMPY * 4)) == {(True, True)}


def test_opaque_words_from_any_payload_column() -> None:
    """numpy_ops.opaque_int reads the payload column as the reader gives it (bytes, b"" where
    a record has none), as polars' to_numpy gives it (None for nulls) and as feed_copies fills
    it when no record of the batch carried one (zeros); short payloads read 0."""
    from argusflow.filter.numpy_ops import col, opaque_int

    wanted = col("want") == 1
    payloads = [b"\x01\x02\x03\x04\x05", b"\x01\x02", b"", b"\xff\x00\x00\x00\x01"]
    cols = {"want": np.array([1, 1, 1, 0]), "net_raw": np.array(payloads, dtype=object)}
    assert opaque_int(wanted, 1, 4, "big")(cols).tolist() == [0x02030405, 0, 0, 0]
    assert opaque_int(wanted, 0, 4, "little")(cols).tolist() == [0x04030201, 0, 0, 0]
    assert opaque_int(wanted, 1, 1, "big")(cols).tolist() == [2, 2, 0, 0]
    cols["net_raw"] = np.array([payloads[0], None, None, None], dtype=object)
    assert opaque_int(wanted, 4, 1, "big")(cols).tolist() == [5, 0, 0, 0]
    cols["net_raw"] = np.zeros(4, dtype=object)
    assert opaque_int(wanted, 0, 1, "big")(cols).tolist() == [0, 0, 0, 0]
