"""Capture readers: formats by magic number, batching, and damage that never raises."""

from __future__ import annotations

import gzip
import io
import random
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argusflow.capture import PcapngReader, PcapReader, jit, open_capture, walk
from argusflow.capture.batch import PacketBatch
from argusflow.capture.reader import DEFAULT_BATCH
from argusflow.errors import CorruptInput

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
CAPTURES = sorted(p for p in CORPUS.glob("*") if p.name not in ("MANIFEST.tsv", "README.md"))
needs_corpus = pytest.mark.skipif(not CAPTURES, reason=f"no corpus at {CORPUS}")

# Where we knowingly differ from capinfos' count (MANIFEST `packets`): libpcap's reading.
EXPECTED_COUNT = {"suricata__bug-6875-01_fuzz.pcap": 1}
# Captures whose damage must stop reading with a CorruptInput naming the byte offset.
EXPECTED_ERROR = {
    "suricata__bug-6875-01_fuzz.pcap": "byte 228: record header claims caplen 1409179648",
    "suricata__bug-1450-04_tls_DER-incomplete-header.pcap": "byte 5035: record header claims caplen",
    "ndpi__fuzz-2021-10-13.pcap": "byte 237: file ends inside a record header",
}


def read_all(path: Path | str, **kw: object) -> tuple[list[PacketBatch], object]:
    reader = open_capture(path, **kw)  # type: ignore[arg-type]
    with reader:
        return list(reader), reader


def pcap_bytes(
    packets: list[bytes],
    big: bool = False,
    nano: bool = False,
    link: int = 1,
    version: tuple[int, int] = (2, 4),
    times: list[tuple[int, int]] | None = None,
) -> bytes:
    o = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(o + "IHHiIII", magic, *version, 0, 0, 65535, link)]
    for i, p in enumerate(packets):
        sec, frac = times[i] if times else (1_700_000_000 + i, 500)
        caplen, wirelen = len(p), len(p) + 4
        if version < (2, 3):
            caplen, wirelen = wirelen, caplen
        out.append(struct.pack(o + "IIII", sec, frac, caplen, wirelen) + p)
    return b"".join(out)


def pkt(i: int, size: int = 60) -> bytes:
    return bytes([i & 0xFF]) * size


# ---------------------------------------------------------------- corpus


@needs_corpus
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_corpus_counts(path: Path, corpus_manifest: dict[str, dict[str, str]]) -> None:
    batches, reader = read_all(path)
    n = sum(len(b) for b in batches)
    row = corpus_manifest.get(path.name)
    if row is not None:
        expected = EXPECTED_COUNT.get(path.name, int(row["packets"].split()[0]))
        assert n == expected
    if path.name in EXPECTED_ERROR:
        assert reader.error is not None and EXPECTED_ERROR[path.name] in str(reader.error)
        assert "\n" not in str(reader.error)
    else:
        assert reader.error is None
    for b in batches:  # every packet lies inside its buffer
        assert (b.offset + b.caplen <= len(b.data)).all()


@needs_corpus
def test_corpus_pcapng_interfaces() -> None:
    (batch,), _ = read_all(CORPUS / "zeek__pcapng-multi-interface.pcapng")
    assert batch.ifindex.tolist() == [0, 0, 1, 1, 1, 1]
    # interface 1 has nanosecond resolution: times must still be in the same epoch range
    assert (np.diff(batch.ts_us) >= 0).all() and batch.ts_us[0] // 10**6 == 1767663089
    batches, _ = read_all(CORPUS / "zeek__ldap-gap-data-missing.pcapng")
    assert sum(len(b) for b in batches) == 18


@needs_corpus
def test_corpus_nanosecond_and_invalid_fraction() -> None:
    (good,), _ = read_all(CORPUS / "tcpdump__tcp-handshake-nano.pcap")
    assert good.ts_us[0] % 10**6 != 0  # fraction divided down from ns, not dropped
    (bad,), reader = read_all(CORPUS / "tcpdump__timestamp_invalid_nano.pcap")
    assert len(bad) == 3 and reader.error is None
    assert reader.stats["bad_fraction"] == 2  # the first fraction is 999999999: valid
    assert "timestamp fraction" in str(reader.warnings[0])
    # as the real argus: packets with a bad fraction keep the last valid packet's time
    assert bad.ts_us.tolist() == [1418145369_999999] * 3


def test_bad_fraction_without_a_valid_time_before_is_clamped(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(pcap_bytes([pkt(1), pkt(2), pkt(3)], False, False,
                                times=[(10, 2_000_000), (11, 5), (12, 1_000_000)]))
    (batch,), _ = read_all(path)
    assert batch.ts_us.tolist() == [10_999_999, 11_000_005, 11_000_005]


@needs_corpus
def test_corpus_gzip_and_garbage_linktype() -> None:
    batches, _ = read_all(CORPUS / "zeek__pe_files_timestamp.pcap.gz")
    assert sum(len(b) for b in batches) == 22
    (batch,), reader = read_all(CORPUS / "tcpdump__heap-overflow-1.pcap")
    assert batch.linktype.tolist() == [101]
    assert reader.stats["linktype_garbage"] == 1


@pytest.fixture(params=[False, True], ids=["python", "compiled"])
def compiled(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with the plain-Python loops and again with numba's (when installed)."""
    if request.param and not jit.AVAILABLE:
        pytest.skip("numba not installed")
    monkeypatch.setattr(jit, "FORCE", request.param)
    return bool(request.param)


def test_jit_only_for_big_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jit, "FORCE", None)
    monkeypatch.setattr(jit, "active", lambda: False)  # as in a fresh process
    monkeypatch.setattr(jit, "precompiled", lambda: False)  # ... without argusflow.aot's kernels
    path = tmp_path / "small.pcap"
    path.write_bytes(pcap_bytes([pkt(1)]))
    assert not open_capture(path).use_jit
    assert open_capture(path).use_jit is False
    monkeypatch.setattr(jit, "MIN_PACKETS", 0)
    assert open_capture(path).use_jit == jit.AVAILABLE
    # The precompiled walkers cost nothing to use: small inputs take them too.
    monkeypatch.setattr(jit, "MIN_PACKETS", 20_000)
    monkeypatch.setattr(jit, "precompiled", lambda: True)
    assert open_capture(path).use_jit == jit.AVAILABLE


@needs_corpus
@pytest.mark.parametrize("seed", range(6))
def test_corpus_damaged_copies(seed: int, tmp_path: Path, compiled: bool) -> None:
    """Truncated and bit-flipped copies: no exception, no hang, packets stay inside buffers."""
    rng = random.Random(seed)
    src = rng.choice([p for p in CAPTURES if p.stat().st_size < 300_000])
    data = bytearray(src.read_bytes())
    if seed % 2:
        del data[rng.randrange(len(data) + 1) :]
    for _ in range(rng.randrange(1, 40)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path = tmp_path / "damaged"
    path.write_bytes(bytes(data))
    try:
        batches, _ = read_all(path)
    except CorruptInput:
        return  # the magic itself was hit
    for b in batches:
        assert (b.offset + b.caplen <= len(b.data)).all()


# ---------------------------------------------------------------- classic pcap


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, big: bool, nano: bool) -> None:
    frac = 123_456_789 if nano else 123_456
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes([pkt(1), pkt(2, 100)], big, nano, times=[(10, frac), (11, 0)]))
    (batch,), reader = read_all(path)
    assert batch.ts_us.tolist() == [10_123_456, 11_000_000]
    assert batch.caplen.tolist() == [60, 100]
    assert batch.wirelen.tolist() == [64, 104]
    assert batch.packet(1) == pkt(2, 100)
    assert isinstance(reader, PcapReader) and reader.error is None


def test_pcap_old_version_swapped_lengths(tmp_path: Path) -> None:
    path = tmp_path / "old.pcap"
    path.write_bytes(pcap_bytes([pkt(1), pkt(2)], version=(2, 2)))
    (batch,), _ = read_all(path)
    assert batch.caplen.tolist() == [60, 60] and batch.wirelen.tolist() == [64, 64]


def test_pcap_batches_and_carry(tmp_path: Path, compiled: bool) -> None:
    """Small batches and big packets that cross buffer boundaries give the same packets."""
    packets = [pkt(i, 150_000 + i) for i in range(20)] + [pkt(i) for i in range(50)]
    path = tmp_path / "big.pcap"
    path.write_bytes(pcap_bytes(packets))
    for kw in ({}, {"batch_size": 3}, {"buffer_size": 1 << 20}, {"batch_size": 7, "reuse_buffers": True}):
        got: list[bytes] = []
        reader = open_capture(path, **kw)  # type: ignore[arg-type]
        for b in reader:
            assert len(b) <= kw.get("batch_size", DEFAULT_BATCH)
            got.extend(b.packet(i) for i in range(len(b)))
        assert got == packets and reader.error is None


@pytest.mark.parametrize("cut", [24 + 5, 24 + 16 + 30, 24 + 76 + 10])
def test_pcap_truncated_file(tmp_path: Path, cut: int, compiled: bool) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes(pcap_bytes([pkt(1), pkt(2), pkt(3)])[:cut])
    batches, reader = read_all(path)
    good = (cut - 24) // 76
    assert sum(len(b) for b in batches) == good
    where = "record header" if (cut - 24) % 76 < 16 else "packet data"
    expected = f"{path}: byte {24 + 76 * good}: file ends inside a {where}; {good} records read before it"
    assert str(reader.error) == expected


def test_pcap_huge_caplen(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes([pkt(1), pkt(2)]))
    struct.pack_into("<I", data, 24 + 76 + 8, 0x7FFFFFFF)
    path = tmp_path / "huge.pcap"
    path.write_bytes(bytes(data))
    batches, reader = read_all(path)
    assert sum(len(b) for b in batches) == 1
    assert "byte 100: record header claims caplen 2147483647" in str(reader.error)
    with pytest.raises(CorruptInput):
        reader.check()


def test_not_a_capture(tmp_path: Path) -> None:
    for content, words in ((b"", "empty file"), (b"hello world", "unknown capture format")):
        path = tmp_path / "x"
        path.write_bytes(content)
        with pytest.raises(CorruptInput, match=words):
            open_capture(path)
    with pytest.raises(CorruptInput, match="cannot open"):
        open_capture(tmp_path / "missing")


def test_compressed_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = pcap_bytes([pkt(i) for i in range(5)])
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(raw))
    batches, _ = read_all(path)
    assert sum(len(b) for b in batches) == 5
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(raw))))
    batches, reader = read_all("-")
    assert sum(len(b) for b in batches) == 5 and reader.source == "stdin"
    path.write_bytes(gzip.compress(raw)[:-20])  # a cut gzip stream: error, not exception
    batches, reader = read_all(path)
    assert reader.error is not None


@pytest.mark.skipif(not jit.AVAILABLE, reason="numba not installed")
def test_python_walker_matches_compiled() -> None:
    data = np.frombuffer(pcap_bytes([pkt(i, 40 + i) for i in range(30)], big=True), dtype=np.uint8)
    a = np.zeros((5, 40), dtype=np.int64)
    b = np.zeros((5, 40), dtype=np.int64)
    ra = walk._walk_pcap(memoryview(data), 24, len(data) - 3, 40, True, 0, 262144, a, 0)
    rb = walk.walk_pcap.jit()(data, 24, len(data) - 3, 40, True, 0, 262144, b, 0)
    assert ra == rb and (a == b).all() and ra[0] == 29


# ---------------------------------------------------------------- pcapng


def block(btype: int, body: bytes, o: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def option(code: int, value: bytes, o: str = "<") -> bytes:
    return struct.pack(o + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(o: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1), o)


def idb(link: int, tsresol: int | None = None, o: str = "<", snaplen: int = 0) -> bytes:
    opts = option(9, bytes([tsresol]), o) + option(0, b"", o) if tsresol is not None else b""
    return block(1, struct.pack(o + "HHI", link, 0, snaplen) + opts, o)


def epb(iface: int, units: int, data: bytes, o: str = "<") -> bytes:
    hdr = struct.pack(o + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data), len(data) + 1)
    return block(6, hdr + data, o)


@pytest.mark.parametrize("o", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_blocks(tmp_path: Path, o: str, compiled: bool) -> None:
    content = (
        shb(o)
        + idb(1, None, o)  # default: microseconds
        + idb(101, 9, o)  # nanoseconds
        + idb(113, 0x80 | 10, o, snaplen=20)  # 2^-10 s
        + epb(0, 1_000_000_123, pkt(1), o)
        + block(5, b"\0" * 8, o)  # interface statistics: skipped
        + epb(1, 2_000_000_000_456, pkt(2), o)
        + block(3, struct.pack(o + "I", 60) + pkt(3), o)  # simple packet block: interface 0
        + epb(2, 3 * 1024 + 512, pkt(4), o)
        + block(0x0BAD, b"junk", o)
    )
    path = tmp_path / "x.pcapng"
    path.write_bytes(content)
    (batch,), reader = read_all(path)
    assert isinstance(reader, PcapngReader) and reader.error is None
    assert batch.ifindex.tolist() == [0, 1, 0, 2]
    assert batch.linktype.tolist() == [1, 101, 1, 113]
    assert batch.ts_us.tolist() == [1_000_000_123, 2_000_000_000, 0, 3_500_000]
    assert batch.caplen.tolist() == [60, 60, 60, 60]
    assert batch.wirelen.tolist() == [61, 61, 60, 61]
    assert batch.packet(2) == pkt(3)


def test_pcapng_two_sections_and_damage(tmp_path: Path, compiled: bool) -> None:
    content = shb("<") + idb(1) + epb(0, 5, pkt(1)) + shb(">") + idb(228, o=">") + epb(0, 7, pkt(2), ">")
    path = tmp_path / "x.pcapng"
    path.write_bytes(content)
    batches, reader = read_all(path)
    assert [b.linktype.tolist() for b in batches] == [[1], [228]]
    assert [b.ifindex.tolist() for b in batches] == [[0], [1]]
    # an EPB naming an undeclared interface stops reading at that block
    path.write_bytes(shb() + idb(1) + epb(0, 5, pkt(1)) + epb(3, 6, pkt(2)))
    batches, reader = read_all(path)
    assert sum(len(b) for b in batches) == 1
    assert "interface that was not described" in str(reader.error)
    for cut in range(len(content)):
        path.write_bytes(content[:cut])
        try:
            batches, reader = read_all(path)
        except CorruptInput:
            assert cut < 4


# ---------------------------------------------------------------- properties


@settings(max_examples=60)
@given(
    packets=st.lists(st.binary(max_size=300), max_size=40),
    big=st.booleans(),
    nano=st.booleans(),
    batch_size=st.integers(1, 50),
    cut=st.integers(0, 40),
)
def test_pcap_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    packets: list[bytes],
    big: bool,
    nano: bool,
    batch_size: int,
    cut: int,
) -> None:
    """Whatever the packets and batch size, reading gives them back in order; cutting the file
    gives back exactly the packets that were whole, and an error naming where it ended."""
    times = [(1_600_000_000 + i, i * 7) for i in range(len(packets))]
    content = pcap_bytes(packets, big, nano, times=times)
    path = tmp_path_factory.mktemp("prop") / "x.pcap"
    path.write_bytes(content)
    batches, reader = read_all(path, batch_size=batch_size)
    assert [b.packet(i) for b in batches for i in range(len(b))] == packets
    assert all(len(b) <= batch_size for b in batches) and reader.error is None
    expected_us = [s * 10**6 + (f // 1000 if nano else f) for s, f in times]
    assert [t for b in batches for t in b.ts_us.tolist()] == expected_us
    if packets and cut:
        end = len(content) - min(cut, len(content) - 24)
        path.write_bytes(content[:end])
        batches, reader = read_all(path, batch_size=batch_size)
        whole, pos = 0, 24
        while pos + 16 + len(packets[whole]) <= end:
            pos += 16 + len(packets[whole])
            whole += 1
            if whole == len(packets):
                break
        assert sum(len(b) for b in batches) == whole
        assert (reader.error is None) == (pos == end)
