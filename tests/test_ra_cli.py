"""Our ra against the real /usr/bin/ra: same text, same exit codes; files the real tools read.

Our ra runs in-process here (the same `ra()` body the console script runs) so that hundreds of
comparisons stay fast; test_ra_script.py runs the installed console script itself.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from argusflow.cli.ra import ra
from argusflow.cli.runner import run_main

# The field list of spec §13 (55 fields, as the sample .txt files were made).
SPEC_FIELDS = (
    "srcid seq stime ltime dur trans cause flgs proto saddr sport dir daddr dport spkts dpkts "
    "sbytes dbytes sappbytes dappbytes state smac dmac stos dtos sttl dttl sipid dipid svid dvid "
    "svlan dvlan smpls dmpls swin dwin stcpb dtcpb tcprtt synack ackdat tcpopt sloss dloss smaxsz "
    "sminsz dmaxsz dminsz sintpkt dintpkt sjit djit inode icmpid suser:32 duser:32 offset"
).split()

OPTION_SETS = {
    "default": [],
    "fields50": ["-n", "-u", "-c", ",", "-s", *SPEC_FIELDS],
    "nn_p3_L0": ["-nn", "-p", "3", "-L", "0"],
    "z": ["-z"],
    # ra's space-delimited lines (-c '' also joins addr.port), not the padded default
    "c_space": ["-c", " "],
    "c_empty": ["-c", ""],
}


def ra_inproc(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_main("ra", ra, argv)
    return code, out.getvalue(), err.getvalue()


def assert_same_as_real(run_real, path: Path, options: list[str]) -> None:
    argv = ["-X", "-r", str(path), *options]
    real = run_real(["ra", *argv])
    code, out, err = ra_inproc(argv)
    assert err == ""
    assert out == real.stdout, f"text differs for {path.name} {' '.join(options)}"
    assert code == real.returncode


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_samples_print_like_real_ra(sample_argus_file: Path, options: list[str], run_real) -> None:
    assert_same_as_real(run_real, sample_argus_file, options)


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_corpus_prints_like_real_ra(corpus_argus_file: Path, options: list[str], run_real) -> None:
    assert_same_as_real(run_real, corpus_argus_file, options)


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_rich_corpus_prints_like_real_ra(corpus_rich_argus_file: Path, options: list[str],
                                        run_real) -> None:
    assert_same_as_real(run_real, corpus_rich_argus_file, options)


def test_real_tools_read_what_we_write(sample_argus_file: Path, tmp_path: Path, run_real) -> None:
    ours = tmp_path / "ours.argus"
    code, _, err = ra_inproc(["-X", "-r", str(sample_argus_file), "-w", str(ours)])
    assert code == 0 and err == ""
    fields = ["-n", "-u", "-c", ",", "-s", *SPEC_FIELDS[:-1]]  # not offset: ours re-encodes
    for tool, extra in (("ra", fields), ("racluster", fields), ("rasort", ["-m", "bytes", *fields])):
        want = run_real([tool, "-X", "-r", str(sample_argus_file), *extra])
        got = run_real([tool, "-X", "-r", str(ours), *extra])
        assert got.stdout == want.stdout, f"{tool} reads our copy of {sample_argus_file.name} differently"


# --- ra -w copies the records it does not change ------------------------------------------------

# No filter, and issue 3's filters (plus one that keeps ARP flows and RTP flows).
PASS_FILTERS = {"all": [], "tcp": ["-", "tcp"], "dst_port_53": ["-", "dst port 53"],
                "syn": ["-", "syn and not synack"],
                "bytes": ["-", "(tcp or udp) and bytes gt 1000"], "arp_udp": ["-", "arp or udp"]}


def assert_read_alike(run_real, source: Path, ours: Path, expr: list[str]) -> None:
    """ra, racluster and rasort print our copy as they print the real ra's -w copy under the
    filter (as they print the input, but for what ra -w changes: RARP hardware addresses)."""
    real_copy = ours.with_name("real_copy.argus")
    real_copy.unlink(missing_ok=True)  # ra -w appends
    run_real(["ra", "-X", "-r", str(source), "-w", str(real_copy), *expr])
    fields = ["-n", "-u", "-c", ",", "-s", *SPEC_FIELDS[:-1]]  # not offset: records move
    for tool, extra in (("ra", fields), ("racluster", fields), ("rasort", ["-m", "bytes", *fields])):
        want = run_real([tool, "-X", "-r", str(real_copy), *extra])
        got = run_real([tool, "-X", "-r", str(ours), *extra])
        assert got.stdout == want.stdout, f"{tool} reads our copy of {source.name} differently"


def framed(data: bytes) -> tuple[list[bytes], set[int]]:
    """The records of an Argus file, and the offsets of those the reader changes (encoded)."""
    import numpy as np

    from argusflow.records.codec import reader_changes
    from argusflow.records.framing import frame

    found = frame(np.frombuffer(data, dtype=np.uint8))
    records = [data[s:s + n] for s, n in zip(found.starts.tolist(), found.lengths.tolist(),
                                             strict=True)]
    return records, {int(found.starts[i]) for i in reader_changes(found)}


def assert_copied(run_real, source: Path, ours: Path, expr: list[str]) -> int:
    """Our flow records are the ones ra selects, in order, each the input's bytes unless the
    reader changes it (then it is encoded: only its header type is checked).  Returns how many
    were encoded."""
    listed = run_real(["ra", "-X", "-r", str(source), "-n", "-c", ",", "-s", "offset", *expr])
    offsets = [int(line) for line in listed.stdout.split()[1:]]
    data = source.read_bytes()
    changed = framed(data)[1]
    written = [r for r in framed(ours.read_bytes())[0] if r[0] & 0xF0 != 0x80]
    assert len(written) == len(offsets)
    for offset, record in zip(offsets, written, strict=True):
        length = int.from_bytes(data[offset + 2:offset + 4], "big") * 4
        if offset in changed:
            assert record[0] == data[offset]
        else:
            assert record == data[offset:offset + length], f"record at {offset} not copied"
    return len(changed & set(offsets))


@pytest.mark.parametrize("expr", PASS_FILTERS.values(), ids=PASS_FILTERS.keys())
def test_write_copies_records(sample_argus_file: Path, expr: list[str], tmp_path: Path,
                              run_real) -> None:
    ours = tmp_path / "ours.argus"
    code, _, err = ra_inproc(["-X", "-r", str(sample_argus_file), "-w", str(ours), *expr])
    assert code == run_real(["ra", "-X", "-r", str(sample_argus_file), *expr]).returncode
    assert err == ""
    if code:
        assert not ours.exists()  # nothing matched: no file, as ra
        return
    assert ours.read_bytes()[:128] == sample_argus_file.read_bytes()[:128]  # its START MAR
    assert_copied(run_real, sample_argus_file, ours, expr)
    assert_read_alike(run_real, sample_argus_file, ours, expr)


@pytest.mark.parametrize("expr", [PASS_FILTERS["all"], PASS_FILTERS["arp_udp"]], ids=["all", "arp_udp"])
def test_corpus_write_copies_records(corpus_rich_argus_file: Path, expr: list[str],
                                     tmp_path: Path, run_real) -> None:
    """Over the corpus: RTP flows are copied with the object ra drops when it reads them (ra,
    racluster and rasort drop it again from the copy)."""
    ours = tmp_path / "ours.argus"
    code, _, err = ra_inproc(["-X", "-r", str(corpus_rich_argus_file), "-w", str(ours), *expr])
    assert err == ""
    if code:
        return
    assert_copied(run_real, corpus_rich_argus_file, ours, expr)
    assert_read_alike(run_real, corpus_rich_argus_file, ours, expr)


def test_write_encodes_arp_keys_with_the_reverse_bit(shared_dir: Path, tmp_path: Path,
                                                     run_real) -> None:
    """ARP records whose key has the REVERSE bit are written turned round, and RARP keys with
    their hardware addresses zeroed, as ra -w writes them: ra, rasort and racluster print our
    copy as the real ra's copy (racluster merges the turned-round record otherwise than the
    input's; ra prints a RARP key's zeroed address as SrcAddr)."""
    capture = shared_dir / "corpus" / "tcpdump__arp-oobr.pcap"
    source = tmp_path / "arp.argus"
    if capture.is_file():  # the real argus aborts at its very end here, once it has written
        run_real(["/usr/sbin/argus", "-X", "-r", str(capture), "-w", str(source)])
    if not source.is_file() or not framed(source.read_bytes())[1]:
        pytest.skip("no ARP records with the REVERSE bit (corpus or real argus absent)")
    ours, real_copy = tmp_path / "ours.argus", tmp_path / "real.argus"
    assert ra_inproc(["-X", "-r", str(source), "-w", str(ours)])[0] == 0
    run_real(["ra", "-X", "-r", str(source), "-w", str(real_copy)])
    assert assert_copied(run_real, source, ours, []) > 0
    fields = ["-n", "-u", "-c", ",", "-s", *SPEC_FIELDS[:-1]]
    for tool, extra in (("ra", fields), ("rasort", ["-m", "bytes", *fields]), ("racluster", fields)):
        want = run_real([tool, "-X", "-r", str(real_copy), *extra]).stdout
        assert run_real([tool, "-X", "-r", str(ours), *extra]).stdout == want, tool
    assert not reverse_arp_keys(ours.read_bytes())  # no key keeps the bit


def reverse_arp_keys(data: bytes) -> int:
    """How many flow DSRs of an Argus file are ARP keys with the REVERSE bit."""
    import numpy as np

    from argusflow.records.framing import frame

    found = frame(np.frombuffer(data, dtype=np.uint8))
    sub = found.dsr_sub[found.dsr_kind == 0x02]
    return int((((sub & 0x3F) == 0x06) & ((sub & 0x40) > 0)).sum())


def test_write_appends_several_inputs_with_one_header(sample_argus_files: list[Path],
                                                      tmp_path: Path, run_real) -> None:
    by_name = {p.name: p for p in sample_argus_files}
    inputs = [str(by_name["tcp.argus"]), str(by_name["udp.argus"])]
    ours = tmp_path / "ours.argus"
    for path in inputs:  # a second run appends to the file
        assert ra_inproc(["-X", "-r", path, "-w", str(ours)])[0] == 0
    want = run_real(["ra", "-X", "-n", "-r", *inputs]).stdout
    assert run_real(["ra", "-X", "-n", "-r", str(ours)]).stdout == want
    starts = [r for r in framed(ours.read_bytes())[0] if r[:2] == b"\x83\x10"]
    assert len(starts) == 2  # the first input's START MAR heads it; the second's is a record


def test_filter_that_matches_nothing_exits_1(sample_argus_file: Path, run_real) -> None:
    assert_same_as_real(run_real, sample_argus_file, ["-", "udp and tcp"])


def test_options_after_the_filter(run_real, tmp_path: Path, sample_argus_files: list[Path]) -> None:
    """getopt permutes: options after the filter's lone '-' are options (`ra -r f - tcp -w out`);
    after '--' everything is the filter."""
    tcp = next(p for p in sample_argus_files if p.name == "tcp.argus")
    assert_same_as_real(run_real, tcp, ["-", "tcp", "-s", "saddr", "proto", "-N", "2"])
    ours, real = tmp_path / "ours.argus", tmp_path / "real.argus"
    assert ra_inproc(["-X", "-r", str(tcp), "-", "tcp", "-w", str(ours)])[0] == 0
    run_real(["ra", "-X", "-r", str(tcp), "-", "tcp", "-w", str(real)])
    listing = ["ra", "-X", "-n", "-r"]
    assert run_real([*listing, str(ours)]).stdout == run_real([*listing, str(real)]).stdout
    assert ra_inproc(["-X", "-r", str(tcp), "--", "tcp", "-w", str(ours)])[0] == 2


def test_record_ranges_and_time_ranges(run_real, sample_argus_files: list[Path]) -> None:
    icmp = next(p for p in sample_argus_files if p.name == "icmp.argus")
    for options in (["-N", "2"], ["-N", "2-3"], ["-N", "2+1"], ["-t", "1700000004-1700000006"],
                    ["-t", "2023/11/14.22:13:24-2023/11/14.22:13:26"]):
        assert_same_as_real(run_real, icmp, ["-s", "stime", "proto", "state", *options])


@pytest.mark.parametrize("count", ["2", "2-3", "4-9", "3+1"])
def test_record_ranges_keep_the_mars_ra_keeps(count: str, run_real, tmp_path: Path,
                                              sample_argus_files: list[Path]) -> None:
    """-N with MARs shown (-M man) and written (-w): ra 3.0.8 stops at the last record it
    wants (no STOP MAR after it) and skips the MARs before the first."""
    icmp = next(p for p in sample_argus_files if p.name == "icmp.argus")
    assert_same_as_real(run_real, icmp, ["-M", "man", "-s", "stime", "proto", "state", "-N", count])
    ours, real = tmp_path / "ours.argus", tmp_path / "real.argus"
    assert ra_inproc(["-X", "-r", str(icmp), "-N", count, "-w", str(ours)])[0] == 0
    run_real(["ra", "-X", "-r", str(icmp), "-N", count, "-w", str(real)])
    listing = ["ra", "-X", "-n", "-M", "man", "-s", "proto", "state", "seq", "-r"]
    assert run_real([*listing, str(ours)]).stdout == run_real([*listing, str(real)]).stdout


# --- bad input -------------------------------------------------------------------------------

def damaged_copies(good: bytes) -> dict[str, tuple[bytes, int]]:
    """name -> (bytes, offset where the damage is)."""
    second = 128 + int.from_bytes(good[130:132], "big") * 4  # the record after the first FAR
    return {
        "truncated": (good[: second + 7], second),
        "zero_length": (good[:second] + b"\x13\x10\x00\x00" + good[second:], second),
        "bad_type": (good[:second] + b"\xf3\x10\x00\x02\x00\x00\x00\x00" + good[second:], second),
        "wrong_magic": (b"\x00" * 8 + b"\xde\xad\xbe\xef" + good[12:], 0),
        "random": (bytes(range(256)) * 3, 0),
    }


@pytest.mark.parametrize("kind", ["truncated", "zero_length", "bad_type", "wrong_magic", "random"])
def test_damage_gives_one_line_and_keeps_the_records_before(
    kind: str, tmp_path: Path, run_real, sample_argus_files: list[Path]
) -> None:
    source = next(p for p in sample_argus_files if p.name == "icmp.argus")
    good = source.read_bytes()
    data, offset = damaged_copies(good)[kind]
    bad = tmp_path / f"{kind}.argus"
    bad.write_bytes(data)
    code, out, err = ra_inproc(["-X", "-n", "-r", str(bad)])
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ra: {bad}: byte {offset}: "), err
    if offset:
        intact = tmp_path / "intact.argus"
        intact.write_bytes(good[:offset])
        assert out == run_real(["ra", "-X", "-n", "-r", str(intact)]).stdout


@pytest.mark.parametrize("kind", ["truncated", "zero_length", "bad_type"])
@pytest.mark.parametrize("expr", [[], ["-", "icmp"]], ids=["all", "filter"])
def test_damage_while_writing_keeps_the_records_before(
    kind: str, expr: list[str], tmp_path: Path, run_real, sample_argus_files: list[Path]
) -> None:
    source = next(p for p in sample_argus_files if p.name == "icmp.argus")
    data, offset = damaged_copies(source.read_bytes())[kind]
    bad, ours, intact = tmp_path / "bad.argus", tmp_path / "ours.argus", tmp_path / "intact.argus"
    bad.write_bytes(data)
    intact.write_bytes(data[:offset])
    code, _, err = ra_inproc(["-X", "-r", str(bad), "-w", str(ours), *expr])
    assert code == 2 and err.count("\n") == 1 and f"byte {offset}: " in err
    assert ours.read_bytes() == intact.read_bytes()  # every record before the damage, copied


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    code, out, err = ra_inproc(["-X", "-r", str(tmp_path / "nope.argus")])
    assert code == 2 and out == "" and err.count("\n") == 1 and "nope.argus" in err


def test_bad_option_is_one_line() -> None:
    code, _, err = ra_inproc(["-X", "-r", "x", "-j"])
    assert code == 2 and err.startswith("ra: unknown option -j")


def test_stdin_and_compressed_input(sample_argus_files: list[Path], tmp_path: Path, run_real) -> None:
    import bz2

    source = next(p for p in sample_argus_files if p.name == "tcp_rich.argus")
    packed = tmp_path / "tcp_rich.data"
    packed.write_bytes(bz2.compress(source.read_bytes()))
    want = run_real(["ra", "-X", "-n", "-r", str(source)]).stdout
    assert ra_inproc(["-X", "-n", "-r", str(packed)])[1] == want


def test_recursive_directories_sorted_without_dot_files(sample_argus_files: list[Path],
                                                        tmp_path: Path, run_real) -> None:
    top = tmp_path / "archive"
    (top / "b").mkdir(parents=True)
    (top / "a").mkdir()
    (top / ".hidden").mkdir()
    by_name = {p.name: p for p in sample_argus_files}
    (top / "b" / "x.argus").write_bytes(by_name["tcp.argus"].read_bytes())
    (top / "a" / "y.argus").write_bytes(by_name["udp.argus"].read_bytes())
    (top / ".hidden" / "z.argus").write_bytes(by_name["icmp.argus"].read_bytes())
    (top / "a" / ".dot.argus").write_bytes(by_name["icmp.argus"].read_bytes())
    want = run_real(["ra", "-X", "-n", "-r", str(by_name["udp.argus"]), str(by_name["tcp.argus"])])
    assert ra_inproc(["-X", "-n", "-R", str(top)])[1] == want.stdout


def test_every_protocol_number_is_named_as_ra_names_it(run_real, tmp_path: Path,
                                                       sample_argus_files: list[Path]) -> None:
    """ra 3.0.8's own protocol table (not /etc/protocols): one record per number 0-255."""
    from argusflow.records.codec import read_file

    udp = next(p for p in sample_argus_files if p.name == "udp.argus")
    records, _ = framed(udp.read_bytes())
    start, flow = records[0], next(r for r in records[1:] if r[0] & 0xF0 != 0x80)
    proto = 17
    probe = tmp_path / "probe.argus"

    def decoded_proto(record: bytes) -> int:
        probe.write_bytes(start + record)
        return int(read_file(str(probe)).filter(rtype=0x10)["proto"][0])

    spots = [k for k in range(len(flow)) if flow[k] == proto
             and decoded_proto(flow[:k] + bytes([61]) + flow[k + 1:]) == 61]
    assert spots, "no protocol byte found in the sample's first flow record"
    k = spots[0]
    every = tmp_path / "every.argus"
    every.write_bytes(start + b"".join(flow[:k] + bytes([v]) + flow[k + 1:] for v in range(256)))
    for options in (["-s", "proto"], ["-n", "-s", "proto"]):
        assert_same_as_real(run_real, every, options)
