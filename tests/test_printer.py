"""The ra text printer against the real /usr/bin/ra -X 3.0.8, byte for byte (TZ=UTC for both)."""

from __future__ import annotations

import io
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from garbled import write_garbled_file
from hypothesis import given, settings
from hypothesis import strategies as st

from argusflow.errors import UsageError
from argusflow.records.fields import DEFAULT_FIELDS, FIELDS
from argusflow.records.printer import (
    DEVIATIONS,
    Printer,
    PrintOptions,
    fixed,
    format_batch,
    ipv6_series,
    parse_field_list,
)
from argusflow.records.schema import DSR_BITS, SCHEMA

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "spec" / "samples"
RA = Path("/usr/bin/ra")

SPEC_FIELDS = (
    "srcid seq stime ltime dur trans cause flgs proto saddr sport dir daddr dport spkts dpkts "
    "sbytes dbytes sappbytes dappbytes state smac dmac stos dtos sttl dttl sipid dipid svid dvid "
    "svlan dvlan smpls dmpls swin dwin stcpb dtcpb tcprtt synack ackdat tcpopt sloss dloss smaxsz "
    "sminsz dmaxsz dminsz sintpkt dintpkt sjit djit inode icmpid suser:32 duser:32 offset").split()

# (ra arguments, PrintOptions keywords) per option set of the brief.
OPTION_SETS: dict[str, tuple[list[str], dict]] = {
    "default": ([], {}),
    "fields": (["-n", "-u", "-c", ",", "-s", *SPEC_FIELDS],
               {"nflag": 1, "epoch": True, "delimiter": ",", "columns": parse_field_list(SPEC_FIELDS)}),
    "nn_p3": (["-nn", "-p", "3", "-L", "0"], {"nflag": 2, "precision": 3, "header": 0}),
    "z": (["-z"], {"zflag": "z"}),
}

# More option sets, checked the same way (rc files are written to a temporary directory).
MORE_SETS: dict[str, tuple[list[str], dict, str]] = {
    "man": ([], {"print_man": True}, "RA_PRINT_MAN_RECORDS=yes\n"),
    "man_fields": (["-n", "-c", "|", "-s", *SPEC_FIELDS],
                   {"print_man": True, "nflag": 1, "delimiter": "|",
                    "columns": parse_field_list(SPEC_FIELDS)}, "RA_PRINT_MAN_RECORDS=yes\n"),
    "L2_u_p0": (["-L", "2", "-u", "-p", "0"], {"header": 2, "epoch": True, "precision": 0}, ""),
    "Zb_n": (["-Z", "b", "-n"], {"zflag": "b", "nflag": 1}, ""),
    "iso_time": (["-s", "stime", "ltime", "dur", "sstime"],
                 {"time_format": "%Y-%m-%dT%H:%M:%S.%f",
                  "columns": parse_field_list(["stime", "ltime", "dur", "sstime"])},
                 'RA_TIME_FORMAT="%Y-%m-%dT%H:%M:%S.%f"\n'),
    # a format without %f: ra 3.0.8 cuts StartTime six columns short; we match it
    "T_time_p3": (["-p", "3", "-s", "spkts", "sstime", "stime", "ltime"],
                  {"time_format": "%T", "precision": 3,
                   "columns": parse_field_list(["spkts", "sstime", "stime", "ltime"])},
                  'RA_TIME_FORMAT="%T"\n'),
}

needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir() or not RA.exists(),
    reason="needs ../shared/spec/samples and /usr/bin/ra (real Argus 3.0.8)")


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.argus")) if SAMPLES.is_dir() else []


def run_ra(path: Path, args: list[str], rc: Path | None = None) -> str:
    env = dict(os.environ, TZ="UTC")
    rc_args = ["-F", str(rc)] if rc else []
    done = subprocess.run([str(RA), "-X", *rc_args, "-r", str(path), *args], capture_output=True,
                          env=env, check=False)
    return done.stdout.decode("latin-1")


def read_batch(path: Path) -> pl.DataFrame:
    from argusflow.records.codec import read_file
    return read_file(str(path))


def ours(path: Path, options: dict) -> str:
    os.environ["TZ"] = "UTC"
    return Printer(PrintOptions(**options)).render(read_batch(path))


@needs_samples
@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_same_text_as_ra(path: Path, option_set: str) -> None:
    ra_args, options = OPTION_SETS[option_set]
    assert ours(path, options) == run_ra(path, ra_args)


@needs_samples
@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_write_bytes_same_as_render(path: Path, option_set: str) -> None:
    """The CLI's binary write path (polars writes the lines) gives render()'s bytes."""
    _, options = OPTION_SETS[option_set]
    os.environ["TZ"] = "UTC"
    out = io.BytesIO()
    batch = read_batch(path)
    printer = Printer(PrintOptions(**options))
    half = batch.height // 2
    printer.write(batch[:half], out)
    printer.write(batch[half:], out)
    assert out.getvalue().decode("latin-1") == ours(path, options)


@needs_samples
@pytest.mark.parametrize("option_set", sorted(MORE_SETS))
@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_more_options_same_text_as_ra(path: Path, option_set: str, tmp_path: Path) -> None:
    ra_args, options, rc_text = MORE_SETS[option_set]
    rc = None
    if rc_text:
        rc = tmp_path / "rarc"
        rc.write_text(rc_text)
    assert ours(path, options) == run_ra(path, ra_args, rc)


# --- corpus: real captures turned into Argus files by the real argus ----------------------------------

CORPUS = REPO.parent / "shared" / "corpus"
ARGUS = Path("/usr/sbin/argus")
# Captures whose every record prints identically (default fields and the spec field list).
CORPUS_PCAPS = ["ndpi__quic.pcap", "ndpi__git.pcap", "ndpi__teredo.pcap", "tcpdump__geneve.pcap",
                "ndpi__vxlan.pcap", "ndpi__ocs.pcap", "ndpi__dns_fragmented.pcap",
                "tcpdump__802.1ad_QinQ.pcap", "zeek__pppoe.pcap", "ndpi__synscan.pcap"]


@pytest.fixture(scope="module")
def corpus_argus(tmp_path_factory) -> dict[str, Path]:
    if not CORPUS.is_dir() or not ARGUS.exists() or not RA.exists():
        pytest.skip("needs ../shared/corpus, /usr/sbin/argus and /usr/bin/ra")
    out = tmp_path_factory.mktemp("corpus")
    made = {}
    for name in CORPUS_PCAPS:
        pcap = CORPUS / name
        if not pcap.exists():
            continue
        target = out / (pcap.stem + ".argus")
        subprocess.run([str(ARGUS), "-X", "-F", str(SAMPLES / "default.conf"), "-r", str(pcap),
                        "-w", str(target)], capture_output=True, timeout=120, check=False)
        if target.exists():
            made[name] = target
    return made


@pytest.mark.parametrize("option_set", ["default", "fields"])
@pytest.mark.parametrize("pcap", CORPUS_PCAPS)
def test_corpus_same_text_as_ra(corpus_argus: dict[str, Path], pcap: str, option_set: str) -> None:
    if pcap not in corpus_argus:
        pytest.skip(f"{pcap}: not in the corpus or argus could not read it")
    ra_args, options = OPTION_SETS[option_set]
    assert ours(corpus_argus[pcap], options) == run_ra(corpus_argus[pcap], ra_args)


@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
def test_garbled_ipv6_keys_same_text_as_ra(option_set: str, tmp_path: Path) -> None:
    """Every protocol a garbled IPv6 key of 3.0.8 can carry prints as ra prints it."""
    if not RA.exists():
        pytest.skip("needs /usr/bin/ra")
    path = write_garbled_file(tmp_path / "garbled.argus", seed=2)
    ra_args, options = OPTION_SETS[option_set]
    assert ours(path, options) == run_ra(path, ra_args)


# --- unit tests on hand-made batches ---------------------------------------------------------------

def batch(**values: object) -> pl.DataFrame:
    """One flow record: every column 0/empty except `values`."""
    row = {}
    for name, dtype in SCHEMA.items():
        if name in values:
            row[name] = [values[name]]
        elif dtype == pl.Binary:
            row[name] = [b""]
        elif dtype == pl.String:
            row[name] = [""]
        else:
            row[name] = [0]
    return pl.DataFrame(row, schema=SCHEMA)


TCP = dict(rtype=0x10, cause=0x10, dsrs=0b1111, flow_subtype=1, flow_qual=1, saddr_lo=0x0A000001,
           daddr_lo=0x0A000002, proto=6, sport=40000, dport=80, sstart=1_700_000_000_100_000,
           slast=1_700_000_000_400_400, spkts=6, sbytes=419, dpkts=5, dbytes=1170)


def test_default_fields_and_labels() -> None:
    cols = parse_field_list([])
    assert tuple(col.field.name for col in cols) == DEFAULT_FIELDS
    header = Printer(PrintOptions()).header()
    assert header.split() == ["StartTime", "Flgs", "Proto", "SrcAddr", "Sport", "Dir", "DstAddr",
                              "Dport", "TotPkts", "TotBytes", "State"]


def test_field_list_edits() -> None:
    names = [col.field.name for col in parse_field_list(["+2dur", "-flgs", "sbytes:14"])]
    assert names[:3] == ["stime", "dur", "proto"] and names[-1] == "sbytes"
    assert parse_field_list(["sbytes:14"])[0].width == 14
    assert [col.field.name for col in parse_field_list(["saddr", "+0dur"])] == ["dur", "saddr"]
    beyond = parse_field_list(["+30dur"])[-1]
    assert beyond.field.name == "dur" and not beyond.labelled  # ra 3.0.8 drops its label
    with pytest.raises(UsageError):
        parse_field_list(["nosuchfield"])


def test_fixed_width_truncates_with_star_and_joins_ports() -> None:
    os.environ["TZ"] = "UTC"
    cols = parse_field_list(["saddr:10", "sport:3", "daddr:5", "dport:8", "spkts"])
    text = format_batch(batch(**TCP), PrintOptions(columns=cols, nflag=1))
    assert text.splitlines()[1] == "  10.0.0.1.40* 10.0*.80              6"


def test_delimited_and_epoch_and_precision() -> None:
    cols = parse_field_list(["stime", "dur", "spkts", "dir", "state"])
    text = format_batch(batch(**TCP), PrintOptions(columns=cols, delimiter=",", epoch=True, precision=3))
    assert text == "StartTime,Dur,SrcPkts,Dir,State\n1700000000.100,0.300,6,  <->,CON\n"


def test_header_every_n_lines_and_none() -> None:
    two = pl.concat([batch(**TCP)] * 3)
    cols = parse_field_list(["spkts"])
    assert format_batch(two, PrintOptions(columns=cols, header=2)).splitlines() == [
        " SrcPkts ", "       6", "       6", " SrcPkts ", "       6"]
    assert format_batch(two, PrintOptions(columns=cols, header=-1)).splitlines() == ["       6"] * 3


def test_mars_are_skipped_unless_asked() -> None:
    mar = batch(rtype=0x80, cause=0x10, mar_raw=bytes(128))
    both = pl.concat([mar, batch(**TCP)])
    cols = parse_field_list(["proto"])
    assert format_batch(both, PrintOptions(columns=cols)).splitlines()[1:] == ["   tcp"]
    assert format_batch(both, PrintOptions(columns=cols, print_man=True)).splitlines()[1:] == [
        "   man", "   tcp"]


def test_json_lines() -> None:
    cols = parse_field_list(["saddr", "sport", "spkts", "dur"])
    text = format_batch(batch(**TCP), PrintOptions(columns=cols, json=True, nflag=1))
    assert text == '{"saddr":"10.0.0.1","sport":"40000","spkts":6,"dur":0.300400}\n'


def test_fixed_matches_printf() -> None:
    values = [0.0, -0.0, 0.5, 1.5, 2.5, 0.0000005, 1e20, -3.25, 33.288948059, float("nan")]
    got = fixed(pl.Series(values), 6).to_list()
    assert got == [f"{v:.6f}" for v in values]
    assert fixed(pl.Series([2.5, 3.5]), 0).to_list() == ["2", "4"]
    # printf gives a NaN's sign (argus writes jitter deviations that are -nan)
    assert fixed(pl.Series([-float("nan")]), 6).to_list() == ["-nan"]


def test_jitter_ms_is_the_ieee_quotient_and_keeps_nulls_and_nans() -> None:
    """751073.4375 us / 1000 rounds to ...437 as a C division; polars' product with the
    reciprocal gives ...438.  Nulls and NaNs (with their sign) pass through."""
    from argusflow.records.derive import _ms

    values = pl.Series("v", [751073.4375, None, -float("nan"), 1.0])
    got = pl.DataFrame({"v": values}).select(_ms(pl.col("v"))).to_series()
    assert fixed(got, 6).to_list()[0] == "751.073437"
    assert got.is_null().to_list() == [False, True, False, False]
    assert fixed(got.fill_null(0.0), 6).to_list()[2] == "-nan"


_GROUP = st.sampled_from([0, 0, 0, 1, 0xFFFF]) | st.integers(0, 0xFFFF)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_GROUP, min_size=8, max_size=8), min_size=1, max_size=40))
def test_ipv6_text_as_ipaddress(groups: list[list[int]]) -> None:
    values = [int.from_bytes(b"".join(g.to_bytes(2, "big") for g in row), "big") for row in groups]
    hi = pl.Series([v >> 64 for v in values], dtype=pl.UInt64)
    lo = pl.Series([v & (2**64 - 1) for v in values], dtype=pl.UInt64)
    assert ipv6_series(hi, lo).to_list() == [str(ipaddress.IPv6Address(v)) for v in values]


def test_every_field_has_label_and_width() -> None:
    for f in FIELDS.values():
        assert f.label and f.width > 0 and f.merge


def test_deviations_documented() -> None:
    assert isinstance(DEVIATIONS, dict)


@pytest.mark.parametrize(("qual", "letter"), [(0, " "), (1, "s"), (2, "d"), (3, "*")])
def test_rtp_silence_flags_as_the_man_page_says(qual: int, letter: str) -> None:
    """DEVIATIONS['rtp-silence-flags']: ra 3.0.8 prints ' ', ' ', 'd', 'd' here."""
    assert "rtp-silence-flags" in DEVIATIONS
    rtp = {**TCP, "proto": 17, "dsrs": TCP["dsrs"] | DSR_BITS["net"], "net_subtype": 0x0A,
           "net_qual": qual}
    text = format_batch(batch(**rtp), PrintOptions(columns=parse_field_list(["flgs"])))
    assert text.splitlines()[1].ljust(9)[4] == letter


@pytest.mark.skipif(shutil.which("true") is None, reason="no coreutils")
def test_speed_346k_records() -> None:
    import resource

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    rows = [batch(**TCP), batch(**{**TCP, "sport": 5353, "proto": 17, "spkts": 1, "dpkts": 0}),
            batch(**{**TCP, "saddr_lo": 0x0A000009, "dport": 443, "sstart": TCP["sstart"] + 7})]
    big = pl.concat([pl.concat(rows)] * 115_334).rechunk()
    start = cpu()
    out = Printer(PrintOptions()).render(big)
    elapsed = cpu() - start  # CPU seconds: wall time depends on the machine's other load
    assert out.count("\n") == big.height + 1
    assert elapsed < 2.5  # about 0.8 s CPU on the shared 2-core dev box


# --- the CLI's text sink: background printing, merged batches ------------------------------------------

def test_text_sink_keeps_order_across_merged_batches() -> None:
    import contextlib

    from argusflow.cli.printing import TextSink
    os.environ["TZ"] = "UTC"
    rows = [batch(**{**TCP, "spkts": n}) for n in range(1, 8)]
    cols = parse_field_list(["spkts", "saddr", "dport"])
    expected = Printer(PrintOptions(columns=cols, header=3)).render(pl.concat(rows))
    out = io.StringIO()
    sink = TextSink(Printer(PrintOptions(columns=cols, header=3)))
    sink.MERGE_ROWS = 3  # merge some, not all
    with contextlib.redirect_stdout(out):
        for row in rows:
            sink.write(row)
        sink.close()
    assert out.getvalue() == expected


def test_text_sink_raises_the_printers_error_in_the_callers_thread() -> None:
    import contextlib

    from argusflow.cli.printing import TextSink

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    sink = TextSink(Printer(PrintOptions(columns=parse_field_list(["spkts"]))))
    with contextlib.redirect_stdout(Broken()), pytest.raises(BrokenPipeError):
        sink.write(batch(**TCP))
        sink.close()


def test_write_pages_headers_like_render() -> None:
    three = pl.concat([batch(**TCP)] * 3)
    cols = parse_field_list(["spkts"])
    out = io.BytesIO()
    printer = Printer(PrintOptions(columns=cols, header=2))
    printer.write(three[:1], out)
    printer.write(three[1:], out)
    assert out.getvalue().decode() == Printer(PrintOptions(columns=cols, header=2)).render(three)


def test_ipv6_destination_retransmission_flag_is_blank_as_ra() -> None:
    from argusflow.records.schema import ADDR_IPV6, DSR_BITS
    retrans = dict(TCP, dsrs=TCP["dsrs"] | DSR_BITS["net"], net_subtype=0x05, tcp_status=0x4 | 0x200)
    cols = parse_field_list(["flgs", "spkts"])  # a column after Flgs: lines are right-trimmed
    v4 = format_batch(batch(**retrans), PrintOptions(columns=cols)).splitlines()[1]
    v6_batch = batch(**{**retrans, "flow_qual": ADDR_IPV6})
    v6 = format_batch(v6_batch, PrintOptions(columns=cols)).splitlines()[1]
    assert v4[3] == "d" and v6[3] == " "


def test_udp_with_rtp_object_prints_rtp_unless_nn() -> None:
    from argusflow.records.schema import DSR_BITS
    rtp = dict(TCP, proto=17, dsrs=TCP["dsrs"] | DSR_BITS["net"], net_subtype=0x0A)
    cols = parse_field_list(["proto"])
    assert format_batch(batch(**rtp), PrintOptions(columns=cols)).splitlines()[1] == "   rtp"
    assert format_batch(batch(**rtp), PrintOptions(columns=cols, nflag=2)).splitlines()[1] == "    17"


def test_project_keeps_only_printed_columns_and_the_same_text() -> None:
    os.environ["TZ"] = "UTC"
    rows = pl.concat([batch(**TCP), batch(**{**TCP, "flow_qual": 2, "saddr_hi": 1 << 48}),
                      batch(**{**TCP, "proto": 1, "sport": 0x0800})])
    for columns in (parse_field_list([]), parse_field_list(SPEC_FIELDS)):
        printer = Printer(PrintOptions(columns=columns))
        cut = printer.project(rows)
        assert cut.width < rows.width
        assert printer.render(cut) == Printer(PrintOptions(columns=columns)).render(rows)
