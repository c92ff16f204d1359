"""Capture filters on the packet's length: libpcap's `greater N`, `less N` and `len` relations.

In a record filter `len` is a constant (ra loads the size of its in-memory record); in the
probe's capture filter (filter.compile_packets) it is each packet's length on the wire, in BPF's
unsigned 32-bit arithmetic.  Checked against the real argus on corpus captures: one with packets
of every size, one whose packets were captured short of their length on the wire.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from argusflow.capture.batch import PacketBatch
from argusflow.decode import decode_batch
from argusflow.errors import FilterError
from argusflow.filter import parse
from argusflow.filter.ast import Const
from argusflow.filter.compile_packets import compile_capture_filter

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
REAL_ARGUS, RA = Path("/usr/sbin/argus"), Path("/usr/bin/ra")
FIELDS = "proto saddr sport daddr dport spkts dpkts sbytes dbytes".split()

needs_real = pytest.mark.skipif(not (CORPUS.is_dir() and REAL_ARGUS.exists() and RA.exists()),
                                reason=f"needs {CORPUS} and the real argus 3.0.8 and ra")

CASES = [
    ("ndpi__wechat.pcap", "greater 100"),
    ("ndpi__wechat.pcap", "less 60"),
    ("ndpi__wechat.pcap", "tcp and not greater 1000"),
    ("ndpi__wechat.pcap", "udp or less 70"),
    ("ndpi__wechat.pcap", "len & 0xff > 100"),
    ("ndpi__wechat.pcap", "len >> 1 > 50 and len != 1514"),
    ("ndpi__wechat.pcap", "udp or not 7 / (len & 1) > 0"),  # a division by zero rejects
    # 54 bytes captured of packets up to 1500 long: `len` is the length on the wire
    ("zeek__tcp-retransmit-fast009.pcap", "greater 100"),
    ("zeek__tcp-retransmit-fast009.pcap", "len + 14 <= 114"),
]


def flow_lines(path: Path) -> Counter[str]:
    """The records' keys and counters as the real ra prints them (none: no file written)."""
    if not path.exists():
        return Counter()
    out = subprocess.run([RA, "-X", "-n", "-u", "-c", ",", "-r", str(path), "-s", *FIELDS],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return Counter(out.splitlines()[1:])


@needs_real
@pytest.mark.parametrize(("name", "expr"), CASES)
def test_length_filters_keep_what_the_real_argus_keeps(name: str, expr: str, tmp_path: Path) -> None:
    capture, real, ours = CORPUS / name, tmp_path / "real.argus", tmp_path / "ours.argus"
    if not capture.exists():
        pytest.skip(f"{capture} absent")
    subprocess.run([REAL_ARGUS, "-X", "-r", str(capture), "-w", str(real), "-", expr],
                   check=True, capture_output=True, timeout=60)
    code = "import sys; from argusflow.cli.argus import argus; sys.exit(argus(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "-X", "-r", str(capture), "-w", str(ours),
                           "-", expr], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    expected = flow_lines(real)
    assert expected, f"{expr} selects no packet of {name}: not a test"
    assert flow_lines(ours) == expected


def lengths_kept(expr: str, wirelen: list[int]) -> list[int]:
    """The wire lengths of the packets `expr` keeps, of UDP packets captured 60 bytes long."""
    packet = (b"\x00\x11\x22\x33\x44\x02\x00\x11\x22\x33\x44\x01\x08\x00"
              + bytes([0x45, 0, 0, 46, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
              + bytes([0x13, 0x88, 0, 53, 0, 26, 0, 0]) + b"x" * 18)
    batch = PacketBatch.from_packets([packet] * len(wirelen), wirelen=wirelen)
    keep = compile_capture_filter(expr).mask(decode_batch(batch))
    return [n for n, k in zip(wirelen, keep.tolist(), strict=True) if k]


def test_length_primitives_on_packets() -> None:
    sizes = [60, 99, 100, 101, 1500, 70000]
    assert lengths_kept("greater 100", sizes) == [100, 101, 1500, 70000]
    assert lengths_kept("less 100", sizes) == [60, 99, 100]
    assert lengths_kept("len > 100", sizes) == [101, 1500, 70000]
    assert lengths_kept("len = 100 or len = 60", sizes) == [60, 100]
    assert lengths_kept("100 < len and udp", sizes) == [101, 1500, 70000]
    assert lengths_kept("not (greater 100)", sizes) == [60, 99]
    # BPF arithmetic is unsigned 32-bit: len + 2**32 - 100 is len - 100, and wraps for 60
    assert lengths_kept("len + 0xffffff9c > 1000", [60, 1500, 1101, 1100]) == [60, 1500, 1101]
    assert lengths_kept("len & 0xff > 100", sizes) == [101, 1500, 70000]
    assert lengths_kept("len / 2 == 50", sizes) == [100, 101]
    assert lengths_kept("(len << 28) >> 28 == 12", sizes) == [60, 1500]
    # BPF: a division by zero rejects the packet, when the evaluation reaches it
    assert lengths_kept("7 / (len & 1) > 0", sizes) == [99, 101]
    assert lengths_kept("not 7 / (len & 1) > 0", sizes) == []
    assert lengths_kept("len < 100 or not 7 / (len & 1) > 0", sizes) == [60, 99]
    assert lengths_kept("len < 100 and not 7 / (len & 1) > 0", sizes) == []


def test_record_filters_keep_len_a_constant() -> None:
    """ra's `len` is the size of its in-memory record: the relation is known when parsing."""
    assert parse("len > 100") == Const(True)
    assert parse("len < 100") == Const(False)


def test_length_words_only_where_a_term_starts() -> None:
    for text in ("port greater 80", "port gt 80", "7 / (len & 0) > 0"):  # libpcap rejects them
        with pytest.raises(FilterError) as err:
            compile_capture_filter(text)
        assert "\n" not in str(err.value)
    assert compile_capture_filter("(greater 0x40)").tree == compile_capture_filter("len >= 64").tree
