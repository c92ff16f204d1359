"""The sans-IO reader: chunking does not matter, damage is reported and what came before is kept."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argusflow.errors import CorruptInput
from argusflow.records.codec import RecordReader, read_bytes
from argusflow.records.source import iter_batches

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "spec" / "samples"
BUNDLED = Path(__file__).resolve().parents[1] / "samples"


def sample_files() -> list[Path]:
    files = sorted(SAMPLES.glob("*.argus")) if SAMPLES.is_dir() else []
    return files or sorted(BUNDLED.glob("*.argus"))


def rich_bytes() -> bytes:
    files = sample_files()
    if not files:
        pytest.skip("no Argus sample files: ../shared/spec/samples is absent and samples/ is empty")
    return max(files, key=lambda p: p.stat().st_size).read_bytes()


def feed_in_chunks(data: bytes, cuts: list[int]) -> tuple[pl.DataFrame, RecordReader]:
    reader = RecordReader("chunks")
    batches = []
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        batches.append(reader.feed(data[last:cut]))
        last = cut
    reader.finish()
    return pl.concat(batches), reader


def test_every_sample_decodes_without_damage() -> None:
    for path in sample_files():
        batch = read_bytes(path.read_bytes(), str(path))
        assert batch.height >= 2, path
        assert batch["rtype"][0] == 0x80  # the START MAR is a record too


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40_000), max_size=12))
def test_chunk_boundaries_do_not_change_the_batch(cuts: list[int]) -> None:
    data = rich_bytes()
    whole = read_bytes(data)
    chunked, reader = feed_in_chunks(data, [c % (len(data) + 1) for c in cuts])
    assert reader.error is None
    assert chunked.equals(whole)


def test_truncated_file_keeps_records_before_the_cut() -> None:
    data = rich_bytes()
    whole = read_bytes(data)
    cut = int(whole["offset"][2]) + 10  # inside the third record
    reader = RecordReader("cut.argus")
    batch = reader.feed(data[:cut])
    error = reader.finish()
    assert batch.height == 2
    assert isinstance(error, CorruptInput)
    assert error.offset == int(whole["offset"][2])
    assert "cut.argus: byte" in str(error) and "ends inside a record" in str(error)


def test_zero_length_record_is_reported_at_its_offset() -> None:
    data = rich_bytes()
    whole = read_bytes(data)
    at = int(whole["offset"][1])
    damaged = data[:at] + b"\x13\x10\x00\x00" + data[at:]
    reader = RecordReader("zero.argus")
    batch = reader.feed(damaged)
    assert batch.height == 1
    assert reader.error is not None and reader.error.offset == at
    assert "record length 0 in a flow record" in str(reader.error)


def test_empty_input_is_no_records_and_no_damage() -> None:
    reader = RecordReader("empty")
    assert reader.feed(b"").height == 0
    assert reader.finish() is None


@pytest.mark.parametrize("head", [b"\x00" * 200, b"GIF89a" + b"\x01" * 300, b"\x83\x10"])
def test_not_an_argus_file(head: bytes) -> None:
    reader = RecordReader("x")
    reader.feed(head)
    error = reader.finish()
    assert error is not None and error.offset == 0


def test_argus5_cookie_is_named() -> None:
    data = bytearray(rich_bytes())
    data[8:12] = bytes.fromhex("e57150cb")
    with pytest.raises(CorruptInput, match="Argus 5"):
        read_bytes(bytes(data))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_flipped_bits_never_crash(data: st.DataObject) -> None:
    original = rich_bytes()
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(damaged) - 1))
        damaged[pos] ^= 1 << data.draw(st.integers(0, 7))
    reader = RecordReader("fuzz")
    batch = reader.feed(bytes(damaged))
    reader.finish()
    assert batch.height <= len(original) // 4


@settings(max_examples=80, deadline=None)
@given(st.binary(min_size=0, max_size=2000))
def test_random_bytes_after_a_good_start(junk: bytes) -> None:
    good = rich_bytes()
    reader = RecordReader("junk")
    batch = reader.feed(good + junk)
    reader.finish()
    assert batch.height >= read_bytes(good).height or reader.error is not None


def zstd_compress(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress, zstd_compress])
def test_compressed_inputs_by_magic(tmp_path: Path, compress) -> None:
    data = rich_bytes()
    path = tmp_path / "records.bin"  # no telling extension: the magic number decides
    path.write_bytes(compress(data))
    batch = pl.concat(list(iter_batches(str(path))))
    assert batch.equals(read_bytes(data))


def test_small_chunks_through_iter_batches(tmp_path: Path) -> None:
    data = rich_bytes()
    path = tmp_path / "f.argus"
    path.write_bytes(data)
    batch = pl.concat(list(iter_batches(str(path), chunk_bytes=37)))
    assert batch.equals(read_bytes(data))


def test_compiled_and_plain_kernels_agree() -> None:
    """Small inputs decode without numba, big ones with it: both must give the same batch."""
    from argusflow.capture import jit

    saved = jit.FORCE
    try:
        for path in sample_files():
            data = path.read_bytes()
            jit.FORCE = False
            plain = read_bytes(data)
            jit.FORCE = True
            assert read_bytes(data).equals(plain), path.name
    finally:
        jit.FORCE = saved


def in_buffer_order(found):  # noqa: ANN001, ANN201 - records.framing.Frame
    """The numpy framer lists DSRs rank by rank; the kernel in buffer order."""
    order = np.argsort(found.dsr_pos, kind="stable")
    return [found.starts, found.lengths, found.end, found.status, found.bad_dsrs] + [
        getattr(found, name)[order]
        for name in ("dsr_rec", "dsr_pos", "dsr_size", "dsr_kind", "dsr_sub", "dsr_qual")]


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_numpy_framer_finds_what_the_kernel_finds(data: st.DataObject) -> None:
    """Pointer doubling over candidate headers must give the sequential walk's records, DSRs,
    end and status, on damaged input too (flipped bits, cut anywhere)."""
    pytest.importorskip("numba")
    from argusflow.records import framing

    damaged = bytearray(rich_bytes())
    for _ in range(data.draw(st.integers(0, 6))):
        pos = data.draw(st.integers(0, len(damaged) - 1))
        damaged[pos] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(damaged)))
    buf = np.frombuffer(bytes(damaged[:cut]), dtype=np.uint8)
    want = in_buffer_order(framing.frame(buf, compiled=True))
    got = in_buffer_order(framing.frame_numpy(buf))
    for a, b in zip(want, got, strict=True):
        assert np.array_equal(a, b)


def decoded_with(data: bytes, compiled: bool) -> tuple[pl.DataFrame, str]:
    """The batch and the error (as text) of decoding `data` with the compiled kernels or numpy."""
    from argusflow.capture import jit

    saved = jit.FORCE
    try:
        jit.FORCE = compiled
        reader = RecordReader("damaged")
        batch = reader.feed(data)
        return batch, str(reader.finish())
    finally:
        jit.FORCE = saved


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_compiled_decode_equals_numpy_on_damaged_input(data: st.DataObject) -> None:
    """The compiled framer and field gatherer (records.kernels) decode every value as numpy
    does, damaged input too: DSR lengths that cut fields short, records cut anywhere."""
    pytest.importorskip("numba")
    damaged = bytearray(rich_bytes())
    for _ in range(data.draw(st.integers(0, 6))):
        pos = data.draw(st.integers(128, len(damaged) - 1))  # the START MAR stays good
        damaged[pos] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(128, len(damaged)))
    plain, plain_error = decoded_with(bytes(damaged[:cut]), False)
    compiled, compiled_error = decoded_with(bytes(damaged[:cut]), True)
    assert compiled.equals(plain)
    assert compiled_error == plain_error


def test_compiled_record_bounds_equal_numpy() -> None:
    pytest.importorskip("numba")
    from argusflow.records import framing

    data = rich_bytes()
    for cut in (0, 3, 127, 128, 200, len(data) // 2, len(data) - 1, len(data)):
        buf = np.frombuffer(data[:cut], dtype=np.uint8)
        want = framing.record_bounds(buf, compiled=False)
        got = framing.record_bounds(buf, compiled=True)
        for a, b in zip(want, got, strict=True):
            assert np.array_equal(a, b), cut


def projected(data: bytes, columns: frozenset[str]) -> pl.DataFrame:
    from argusflow.records import dsr_decode
    from argusflow.records.codec import decode_records
    from argusflow.records.framing import frame

    buf = dsr_decode.ByteBuffer(data)
    return decode_records(buf, frame(buf.u8[:len(data)], compiled=False), 0, columns)


def test_projection_decodes_each_column_as_a_full_decode_does() -> None:
    """A reader asked for one column (a filter's, say) gives exactly the full decode's values:
    the DSR -> columns table and the helper columns (both sides of a reversed key) are right."""
    from argusflow.records.schema import SCHEMA

    files = sample_files()
    if not files:
        pytest.skip("no Argus sample files: ../shared/spec/samples is absent and samples/ is empty")
    data = b"".join(path.read_bytes() for path in files)  # later START MARs are plain records
    full = read_bytes(data)
    for name in SCHEMA:
        one = projected(data, frozenset({name}))
        assert one[name].equals(full[name]), name
        assert set(one.columns) == {name, "rtype", "offset", "mar_raw", "dsrs"}


def test_two_step_selection_keeps_the_rows_a_filter_keeps() -> None:
    """feed(select=...) judges records on a projection, then decodes the kept ones in full."""
    data = rich_bytes()
    full = read_bytes(data)
    keep = (pl.col("proto") == 6) | (pl.col("rtype") == 0x80)

    class Picker:
        columns = frozenset({"proto"})

        def __call__(self, probe: pl.DataFrame) -> np.ndarray:
            return probe.with_row_index("i").filter(keep)["i"].to_numpy().astype(np.int64)

    reader = RecordReader("two-step")
    batch = reader.feed(data, Picker())
    assert reader.finish() is None
    assert batch.equals(full.filter(keep))


def test_every_filter_selects_the_same_records_through_the_projection() -> None:
    """ra and racluster select inside the reader on the filter's columns only (polars names
    them): for every expression of the filter differential list, that selects what filtering
    the fully decoded batch selects."""
    from test_filter_diff import EXPRESSIONS

    from argusflow.cli.client import RowPicker
    from argusflow.errors import FilterError
    from argusflow.filter import compile_filter

    files = sample_files()
    if not files:
        pytest.skip("no Argus sample files: ../shared/spec/samples is absent and samples/ is empty")
    data = b"".join(path.read_bytes() for path in files)
    full = read_bytes(data)

    class Session:  # what RowPicker needs of a ClientSession
        def __init__(self, expr: pl.Expr) -> None:
            self.expr = self._selector = expr
            self._start_mar = None
            self.count_range = None

        def select(self, batch: pl.DataFrame) -> pl.DataFrame:
            return batch.filter(self.expr)

    for text in EXPRESSIONS:
        try:
            expr = compile_filter(text).expr
        except FilterError:
            continue
        picker = RowPicker(Session(expr), frozenset(expr.meta.root_names()))  # type: ignore[arg-type]
        reader = RecordReader("projection")
        got = reader.feed(data, picker)
        assert got.equals(full.filter(expr)), text


# --- the printer's projection ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["misc_rich.argus", "ipv6_rich.argus", "icmp_rich.argus",
                                  "mix_racluster.argus", "tcp_states_rich.argus",
                                  "synthetic.argus"])
def test_printing_projection_prints_like_a_full_decode(name: str) -> None:
    """Every field prints the same from a batch decoded with ra's printing projection (the
    network DSR cut to the columns the fields read) as from a full decode."""
    from argusflow.cli.client import printing_projection
    from argusflow.records.fields import FIELDS
    from argusflow.records.printer import Printer, PrintOptions, parse_field_list

    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    every = [name for name in FIELDS if name != "idle"]  # idle is seconds until now: it moves
    for names in ([], ["+sloss", "+dloss", "+stcpb", "+swin"], every):
        columns = parse_field_list(names)
        projection = printing_projection([col.field for col in columns], tcp_flags=False)
        assert projection is not None
        full = pl.concat(iter_batches(str(path)))
        cut = pl.concat(iter_batches(str(path), columns=projection))
        assert (Printer(PrintOptions(columns=columns, nflag=1)).render(cut)
                == Printer(PrintOptions(columns=columns, nflag=1)).render(full))


def test_arp_reverse_key_is_turned_round_once_by_the_reader() -> None:
    """An ARP key with the REVERSE bit: the reader swaps the other DSRs' directions and clears
    the bit, as ra holds the record (spec §6.2.8); reading our rewrite of it changes nothing."""
    from argusflow.records.mar import start_mar
    from argusflow.records.schema import DSR_BITS, SCHEMA
    from argusflow.records.writer import encode_batch

    values = {"rtype": 0x10, "cause": 0x10, "flow_subtype": 0x06, "flow_qual": 4,
              "dsrs": sum(DSR_BITS[k] for k in ("transport", "flow", "time", "metric")),
              "arp_hrd": 1, "arp_pro": 0x0800, "arp_hln": 6, "arp_pln": 4, "arp_op": 2,
              "saddr_lo": 0x0A000001, "daddr_lo": 0x0A000002, "spkts": 1, "sbytes": 60,
              "sstart": 1_700_000_000_000_000, "slast": 1_700_000_000_000_000,
              "time_subtype": 0x02, "time_qual": 0x18}
    blank = {pl.Binary: b"", pl.String: ""}
    frame = pl.DataFrame({name: [values.get(name, blank.get(dtype, 0))]
                          for name, dtype in SCHEMA.items()}, schema=SCHEMA)
    record = bytearray(encode_batch(frame))
    at = record.index(bytes([0x02, 0x06, 0x04]))  # the flow DSR header: set REVERSE
    record[at + 1] = 0x46
    mar = start_mar(None, startime_us=1, now_us=2)
    row = read_bytes(mar + bytes(record)).row(1, named=True)
    assert (row["flow_subtype"], row["spkts"], row["dpkts"], row["dbytes"]) == (0x06, 0, 1, 60)
    assert row["dstart"] == 1_700_000_000_000_000 and row["sstart"] == 0
    again = read_bytes(mar + encode_batch(read_bytes(mar + bytes(record))[1:]))
    assert again.row(1, named=True)["dpkts"] == 1


@pytest.mark.parametrize(("time_dsr", "want"), [
    # plain range (start, last): a last time before the start becomes the start
    ("03021805 54872e59 000f423f 54872e5a ffdf3b65",
     (1418145369_999999, 1418145369_999999, 0, 0)),
    # src start, src last, dst start: swapped with the start; a fraction of 1e6 counts whole
    ("033a1807 54872e59 000f423f 54872e5a ffdf3b65 54872e5a 000f4240",
     (1418145367_852517, 1418145369_999999, 1418145371_000000, 1418145371_000000)),
])
def test_time_fractions_past_a_second_read_as_ra_reads_them(time_dsr: str, want: tuple) -> None:
    """tcpdump__timestamp_invalid_nano: a microsecond fraction too big for a C int of
    nanoseconds wraps to -2147483 us in ra 3.0.8; the last time then lies before the start."""
    from argusflow.records.mar import start_mar

    dsr = bytes.fromhex(time_dsr.replace(" ", ""))
    record = bytes([0x13, 0x10, 0, 1 + len(dsr) // 4]) + dsr
    row = read_bytes(start_mar(None, startime_us=1, now_us=2) + record).row(1, named=True)
    assert (row["sstart"], row["slast"], row["dstart"], row["dlast"]) == want


@pytest.mark.parametrize(("key", "time_head", "spa"), [
    # pln 4: argus turned the time DSR's header round when it wrote the key; ra turns it back
    ("02060404 00010825 00040001 001f29da", "03180103", 0x001F29DA),
    # pln 0: nothing is turned round; the addresses are the bytes' little-endian value
    ("02060404 00000000 00000000 00000000", "03011803", 0),
])
def test_short_arp_key_reads_its_target_from_the_next_dsr(key: str, time_head: str,
                                                          spa: int) -> None:
    """tcpdump__arp-oobr.pcap: 4-word ARP keys.  ra reads the target address at its offset
    whatever the key's length (the next DSR's header, 3.24.1.3 here) and the time DSR as a
    plain timestamp (no `T` flag)."""
    from argusflow.records.mar import start_mar

    dsrs = bytes.fromhex((key + time_head + "4b9c15c6 0000cecb").replace(" ", ""))
    record = bytes([0x13, 0x10, 0, 1 + len(dsrs) // 4]) + dsrs
    row = read_bytes(start_mar(None, startime_us=1, now_us=2) + record).row(1, named=True)
    assert (row["saddr_lo"], row["daddr_lo"]) == (spa, 0x03180103)
    assert (row["time_subtype"], row["time_qual"]) == (0x01, 0x18)
    assert row["sstart"] == 0x4B9C15C6 * 1_000_000 + 0xCECB


def test_rarp_key_source_is_the_hardware_address_ra_prints() -> None:
    """tcpdump__arp-oobr.pcap: ra prints a RARP key's SrcAddr from bytes 22..27 (the second
    hardware address slot); records.writer zeroes that area, as ra -w does."""
    from argusflow.records.mar import start_mar

    dsrs = bytes.fromhex("02060507 00010800 06040003 00000000 00000000 00000065 29da2d79"
                         "03011803 4b9c1a9f 00000001".replace(" ", ""))
    record = bytes([0x13, 0x10, 0, 1 + len(dsrs) // 4]) + dsrs
    row = read_bytes(start_mar(None, startime_us=1, now_us=2) + record).row(1, named=True)
    assert (row["saddr_lo"], row["daddr_lo"]) == (0x006529DA2D79, 0)
