"""Differential tests: the records our compiled filter selects are the records ra 3.0.8 prints.

For every expression, over three Argus files (the spec samples, and the corpus captures turned
into Argus data by the real argus with its default and its rich configuration), the Offset column
of `/usr/bin/ra -X -r F -n -u -c , -s offset - EXPR` must equal the `offset`s our expression
selects (management records, which ra -X does not print, are left out of the comparison), and
ra's exit code (0: something matched, MARs included; 1: nothing) must be ours.

The per-file Argus outputs are concatenated into one file per set, so that each expression costs
one ra run per set: ra and our reader both read concatenated Argus files.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
from garbled import write_garbled_file
from hypothesis import given, settings
from hypothesis import strategies as st

from argusflow.errors import FilterError
from argusflow.filter import compile_filter
from argusflow.records.codec import read_file
from argusflow.records.schema import RTYPE_MAR

RA = Path("/usr/bin/ra")

# Every primitive of ra(1) FILTER EXPRESSION and features.md §2.9, with qualifiers, operators,
# the bare-operand rule, combinators and arithmetic relations.
EXPRESSIONS: list[str] = [
    'host 172.16.0.8', 'src host 192.168.1.104', 'dst host 192.168.1.104',
    'host 192.168.1.104 and 172.16.0.8', 'src or dst host 10.3.22.91',
    'src and dst host 192.168.1.104', 'dst or src host 192.168.1.7', 'net 192.168.0.0/16',
    'src net 192.168.1.0/24', 'dst net 10.0.0.0/8', 'net 172.16.0.0 mask 255.255.0.0',
    'ip host 192.168.1.103', 'ipv4 host 192.168.1.7', 'ipv6 host fd00::1', 'host fd00::1',
    'net fd00::/8', 'net fe80::/10', 'src net 2001:db8::/32', 'arp host 10.0.0.1',
    'icmp host 10.0.0.1', 'host 0.0.0.0', 'host 255.255.255.255', 'not host 172.16.0.8',
    'host 10.0.0.1 or 10.0.0.2', 'net 10.0.0.0/24 and not 10.0.0.1', 'dst 192.168.1.104', 'src 1',
    'host 1', 'net 10', 'host localhost', 'host 10.0.0.1 and 167772162',
    'ether host 00:11:22:33:44:01', 'ether src 0:0:0:0:0:0', 'ether dst ff:ff:ff:ff:ff:ff',
    'ether broadcast', 'ether proto 0x0800', 'ether proto 0x86dd', 'ether proto 0x0806',
    'ether proto 34984', 'ether proto 0x8863', 'ether proto 0x8035', 'ether proto loopback', 'port 80',
    'port 443', 'src port 443', 'dst port 53', 'tcp port 80', 'udp port 53', 'port domain',
    'tcp dst port http', 'port 1000-2000', 'src port 1024-65535', 'port 53-ftp', 'dst port gt 1023',
    'port lt 1024', 'port gte 443', 'port lte 80', 'src port 53 or 80', 'tcp port 21 or 20 or 80',
    'port 0', 'rtp port 5004', 'rtcp port 5005', 'udt port 9000', 'src and dst port gt 1023',
    'dst or src port 443', 'port (80 or 443)', 'port 80 and not 443', 'tcp', 'udp', 'icmp', 'igmp',
    'ip', 'ipv4', 'ipv6', 'arp', 'rarp', 'mpls', 'vlan', 'isis', 'udt', 'rtp', 'rtcp', 'anon',
    'proto 17', 'ip proto 6', 'ipv6 proto 58', 'proto gre', 'proto sctp', 'ipv4 proto 1',
    'arp proto 5', 'ipv6 proto 17', 'pkts gt 10', 'src pkts gt 1', 'dst pkts eq 0', 'pkts lt 2',
    'bytes gt 1000', 'src bytes lte 60', 'dst bytes gte 100', 'appbytes gt 0', 'src appbytes eq 0',
    'data gt 100', 'byte gt 1500', 'pkt 1', 'pkts gt 0x10', 'pkts gt 010', 'src and dst pkts gt 2',
    'src or dst bytes gt 5000', 'pkts gt -1', 'pkts lt -1', 'rate gt 10', 'src rate gt 1.5',
    'dst rate lt 0.5', 'rate 0', 'load gt 1000', 'src load gte 100.5', 'dst load 0', 'pcr gt 0',
    'pcr lt -0.5', 'abr eq 1', 'pcratio gt 0.5', 'pcr 0', 'trans 1', 'trans gt 1', 'trans lt 1',
    'ploss gt 0', 'src ploss lt 1', 'ttl 64', 'ttl gt 100', 'src ttl lt 64', 'dst ttl 128', 'ttl 1',
    'ttl 255', 'tos 0', 'tos gt 0', 'src tos 16', 'dsb 0', 'dsb ef', 'dsb cs1', 'dsbyte 46',
    'ipid gt 1000', 'src ipid 0', 'dst ipid lt 100', 'vid 5', 'vid 4095', 'src vid 4093', 'dst vid 0',
    'vid gt 1', 'vpri 0', 'vpri 15', 'mid 29', 'src mid 29', 'mid gt 100', 'mid 1048575', 'dur gt 1',
    'dur 0', 'dur lt 0.001', 'dur gte 0', 'dur lte 0', 'dur gt 0.5', 'dur eq 0.0001', 'dur 1',
    'intpkt gt 1.5', 'src intpkt gt 10.0', 'dst intpkt lt 5.0', 'intpktact gt 1.0',
    'intpktidle gt 0.0', 'jit gt 0.0', 'jitter gt 1.0', 'src jit gt 0.5', 'jitact lt 1.0',
    'jitidle gt 0.0', 'src or dst intpkt gt 1.0', 'src and dst jit gt 0.0', 'dst or src jitter lt 0.5',
    'syn', 'fin', 'rst', 'ack', 'push', 'urg', 'ece', 'cwr', 'reset', 'src syn', 'dst syn',
    'src and dst fin', 'src or dst rst', 'dst ack', 'tcp src push', 'src urg', 'dst ece', 'synack',
    'finack', 'normal', 'wait', 'est', 'con', 'avail', 'timeout', 'retrans', 'src retrans',
    'dst retrans', 'drop', 'src and dst retrans', 'outoforder', 'ooo', 'src ooo', 'dst outoforder',
    'winshut', 'src winshut', 'dst winshut', 'ecn', 'src ecn', 'dst ecn', 'src and dst ecn',
    'multipath', 'mpath', 'src multipath', 'dst multipath', 'src and dst multipath', 'src dup',
    'dst dup', 'src or dst dup', 'src and dst dup', 'base gt 0', 'src base 0', 'dst tcpb gt 1000',
    'base lt 1', 'tcpopt', 'mss', 'wscale', 'selackok', 'selack', 'tcpecho', 'tcpechoreply',
    'tcptimestamp', 'tcpcc', 'tcpccnew', 'tcpccecho', 'secn', 'decn', 'not mss', 'start', 'stop',
    'status', 'shut', 'error', 'man', 'mar', 'far', 'event', 'index', 'init', 'echo', 'unreach',
    'redirect', 'timexed', 'rtr', 'mbr', 'lvg', 'icmp and echo', 'icmp and not echo', 'frag',
    'src frag', 'dst frag', 'src and dst frag', 'fragonly', 'seq gt 0', 'seq 1', 'seq lt 100',
    'srcid 0', 'srcid 10.0.0.1', 'srcid 0x01020304', 'inode 0', 'inode 192.168.1.1', 'encaps eth',
    'encaps 802q', 'encaps mpls', 'encaps llc', 'encaps pppoe', 'encaps sll', 'encaps wlan',
    'encaps ethernet', 'src encaps eth', 'dst encaps 802q', 'co US', 'src co DE', 'cocode', 'as 0',
    'asn gt 0', 'nstroke gt 0', 'nstrokes 0', 'spi gt 0', 'spi 0', 'deldur gt 0', 'delstime lt 1',
    'delltime 0', 'multicast', 'ip multicast', 'ip broadcast', 'tcp multicast', 'udp broadcast',
    'inbound', 'outbound', 'len > 383', 'len = 384', '1 > 0', '1 + 2 = 3', '7 / 2 = 3', '6 & 3 = 2',
    '1 << 2 = 4', '8 >> 1 = 4', '5 - 7 > 0', '0 - 1 < 0', '3 != 4', '4 <= 3', '1 | 2 = 3',
    '2 * 3 == 6', '(1 + 1) eq 2', 'tcp and 1 > 0', 'not tcp', '! udp', 'tcp && udp', 'tcp || udp',
    'tcp and not port 80', '(tcp or udp) and not port 53', 'host 192.168.1.104 and (port 80 or 443)',
    'ttl (64 or 128)', 'ttl 64 and not 1', 'port 53 or domain', 'tcp port 80 or 443',
    'dst port 443 and src port gt 1023', 'not (tcp or udp or icmp)', 'not (arp or ip)',
    'src pkts gt 1 and dst pkts eq 0', 'ttl lt 5', 'not ttl lt 5', 'syn and not synack', 'fin or rst',
    'est and not normal', 'udp and not con', 'man or far', 'start and tcp', 'not not tcp',
    'ttl gt 5 and lt 100', 'host 10.0.0.7 and (tcp) and 10.0.0.5', 'ttl 64 and (1 or 64)',
    'ttl 64 and ! 1', 'not host 10.0.0.1 and 10.0.0.7', 'ip src host 10.0.0.1', 'tcp src syn',
    'host 10.0.0.1 and 10.0.0.2', 'host 10.0.0.1 or not 10.0.0.2', 'src port gt 1000',
    'port gt 1000 and lt 2000', '(host 10.0.0.1 or 10.0.0.2)', 'host (10.0.0.1 or 10.0.0.2)', '! tcp',
    '!tcp', 'src or dst host 10.0.0.1', 'src and dst host 10.0.0.1', 'dst or src port 53',
    'net 10.0.0.0/8', 'net 10.0.0.0 mask 255.0.0.0', 'net 10.0.0', 'ttl eq 64', 'ttl equal 64',
    'ttl greater 5', 'ttl less 5', 'rate gt 0.5', 'load gt 100', 'srcid 1.2.3.4', 'inode 1.2.3.4',
    'co us', 'abr gt 0', 'spi 5', 'deldur gt 1', 'delstime gt 1', 'delltime gt 1', 'dsb 10', 'asn 100',
    'as 100', 'dst fragonly', 'hello', 'len > 3', 'ttl gte 64', 'ttl >= 64', 'ttl <= 64',
    'ttl 64 or 128', 'dst bytes lt 100', 'data gt 0', 'byte gt 0', 'pkt gt 0',
    # qualifier threading found by fuzzing (bare operands take the operand type in force)
    'net 10.0.0.0/8 or 1', 'net 10.0.0.0/8 or 0', 'net 192.168.0.0/16 and not 192',
    'proto 1 and 10.0.0.1 and not lt 100', 'src host 10.0.0.1 and rst', 'dst port 443 and (fin)',
    'host 10.0.0.1 and (tcp and rst)', 'ttl 64 and (1)', 'ttl 64 and (1 or 64)', 'net 10.0.0',
    'net foo', 'host 10.0.0.1 or ! 10.0.0.2 and ! 10.0.0.7', 'src port 53 or gt 1000 and lt 2000',
    'tcp && ! (not udp)', 'tcp and (len = 384)', 'ttl 10.0.0.1', 'dur fd00::1', 'man', 'stop',
    'man and dur 0', 'man and dur gt 0', 'man and not vid 4095',
]

# Expressions whose disagreement on the corpus comes from the record reader, not the filter.
# tcpdump__timestamp_invalid_nano's plain time DSR has a last time before the start (a
# microsecond field over 999999): ra prints it as the start (so does our reader), but its src load
# still counts the 2.147 s between them.  The capture's rich records (corpus-rich) agree, as do the
# samples.  (Short ARP keys, and dur/rate over such times, once here, are read as ra reads them.)
READER_GAPS: dict[str, str] = {
    "load gt 100": "end time with usec > 999999: ra's src load spans the wrapped end time",
    "src load gte 100.5": "end time with usec > 999999: ra's src load spans the wrapped end time",
}


READER_GAP_CAPTURES = {"tcpdump__timestamp_invalid_nano.pcap"}


def concatenate(paths: list[Path], out: Path) -> Path:
    with out.open("wb") as fh:
        for path in paths:
            fh.write(path.read_bytes())
    return out


@pytest.fixture(scope="session")
def filter_files(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path,
                 corpus_argus_files: dict[str, Path], corpus_rich_argus_files: dict[str, Path],
                 real_tool) -> dict[str, Path]:
    real_tool("/usr/bin/ra")
    folder = tmp_path_factory.mktemp("filter-diff")
    samples = sorted((shared_dir / "spec" / "samples").glob("*.argus"))
    return {
        "samples": concatenate(samples, folder / "samples.argus"),
        "corpus": concatenate([corpus_argus_files[k] for k in sorted(corpus_argus_files)],
                              folder / "corpus.argus"),
        "corpus-rich": concatenate([corpus_rich_argus_files[k] for k in sorted(corpus_rich_argus_files)],
                                   folder / "corpus-rich.argus"),
        # Without the capture whose timestamps the reader and ra read differently (READER_GAPS).
        "corpus-clean": concatenate([corpus_rich_argus_files[k] for k in sorted(corpus_rich_argus_files)
                                     if k not in READER_GAP_CAPTURES], folder / "corpus-clean.argus"),
    }


def run_ra(path: Path, text: str) -> tuple[set[int] | None, int]:
    """(offsets ra prints, exit code); None when ra rejects the expression."""
    for _ in range(5):
        done = subprocess.run([RA, "-X", "-r", path, "-n", "-u", "-c", ",", "-s", "offset", "-", text],
                              capture_output=True, text=True, timeout=60)
        # ra compiles the filter in a child process and gives up on it after a short wait,
        # which a loaded machine can exceed: that is not an answer about the filter.
        if "timed out" not in done.stderr:
            break
    if done.returncode != 0 and done.stderr.strip():
        return None, done.returncode
    return {int(line) for line in done.stdout.splitlines()[1:] if line.strip()}, done.returncode


def run_ours(frame: pl.DataFrame, text: str) -> tuple[set[int] | None, int]:
    try:
        selected = frame.filter(compile_filter(text).expr)
    except FilterError:
        return None, 2
    flows = selected.filter(pl.col("rtype") != RTYPE_MAR)
    return set(flows["offset"].to_list()), 0 if selected.height else 1


@pytest.fixture(scope="session")
def frames(filter_files: dict[str, Path]) -> dict[str, pl.DataFrame]:
    return {name: read_file(str(path)) for name, path in filter_files.items()}


@pytest.fixture(scope="session")
def real_results(filter_files: dict[str, Path]) -> dict[tuple[str, str], tuple[set[int] | None, int]]:
    jobs = [(name, text) for name in ("samples", "corpus", "corpus-rich") for text in EXPRESSIONS]
    with ThreadPoolExecutor(3) as pool:
        results = pool.map(lambda job: run_ra(filter_files[job[0]], job[1]), jobs)
        return dict(zip(jobs, results, strict=True))


def disagreements(name: str, frames, real_results) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in EXPRESSIONS:
        real, real_rc = real_results[(name, text)]
        ours, our_rc = run_ours(frames[name], text)
        if real is None or ours is None:
            if (real is None) != (ours is None):
                out[text] = f"ra {'rejects' if real is None else 'accepts'}, we do not"
            continue
        if real != ours or real_rc != our_rc:
            out[text] = (f"only ra {sorted(real - ours)[:5]}, only ours {sorted(ours - real)[:5]}, "
                         f"rc {real_rc}/{our_rc}")
    return out


def test_expression_list_covers_the_language() -> None:
    assert len(EXPRESSIONS) >= 200
    words = {w for text in EXPRESSIONS for w in text.replace("(", " ").replace(")", " ").split()}
    for primitive in ("host", "net", "port", "proto", "ether", "pkts", "bytes", "appbytes", "rate",
                      "load", "pcr", "ttl", "tos", "dsb", "ipid", "vid", "vpri", "mid", "dur",
                      "intpkt", "jit", "syn", "synack", "fin", "finack", "rst", "ack", "urg", "push",
                      "ece", "cwr", "ecn", "con", "est", "normal", "wait", "timeout", "man", "far",
                      "start", "stop", "status", "error", "echo", "unreach", "redirect", "timexed",
                      "frag", "fragonly", "srcid", "seq", "encaps", "tcpopt", "mss",
                      "retrans", "outoforder", "winshut", "multipath", "trans", "spi", "inode", "len",
                      "gt", "gte", "lt", "lte", "eq", ">=", "<=", "not", "!", "&&", "||"):
        assert primitive in words, primitive


@pytest.mark.parametrize("name", ["samples", "corpus", "corpus-rich"])
def test_selection_matches_ra(name: str, frames, real_results) -> None:
    wrong = disagreements(name, frames, real_results)
    unexplained = {text: why for text, why in wrong.items() if text not in READER_GAPS}
    assert unexplained == {}
    if name == "samples":
        assert wrong == {}


@pytest.mark.parametrize("name", [
    pytest.param("corpus", marks=pytest.mark.xfail(
        reason="record reader: src load over an end time with usec > 999999 (READER_GAPS)",
        strict=False)),
    "corpus-rich"])
def test_reader_gaps_still_open(name: str, frames, real_results) -> None:
    wrong = disagreements(name, frames, real_results)
    assert {text: why for text, why in wrong.items() if text in READER_GAPS} == {}


def test_garbled_ipv6_keys_select_as_in_ra(real_tool, tmp_path: Path) -> None:
    """ICMP and IGMP words of a key or DSR that is not there read as ra reads them."""
    real_tool("/usr/bin/ra")
    path = write_garbled_file(tmp_path / "garbled.argus")
    frame = read_file(str(path))
    with ThreadPoolExecutor(3) as pool:
        real = dict(zip(EXPRESSIONS, pool.map(lambda text: run_ra(path, text), EXPRESSIONS),
                        strict=True))
    assert disagreements("garbled", {"garbled": frame},
                         {("garbled", text): result for text, result in real.items()}) == {}


def test_ra_optimizer_bug_is_a_deviation(filter_files, frames) -> None:
    """3.0.8 selects nothing for `not mpls and dur gte 1`; we select what both parts select."""
    path = filter_files["samples"]
    both = run_ra(path, "not mpls")[0] & run_ra(path, "dur gte 1")[0]
    assert both
    assert run_ra(path, "not mpls and dur gte 1")[0] == set()
    assert run_ours(frames["samples"], "not mpls and dur gte 1")[0] == both


@pytest.mark.parametrize("text", ["intpkt gt 1", "jit gt 0", "src intpkt gt 10", "src jitidle lt 5"])
def test_jitter_with_whole_numbers_is_a_deviation(text: str, filter_files, frames) -> None:
    """3.0.8 compares the wrong slot for `intpkt gt 1`; ours means `intpkt gt 1.0`."""
    as_float = text + ".0"
    ours = run_ours(frames["corpus-rich"], text)
    assert ours == run_ours(frames["corpus-rich"], as_float)
    assert ours == run_ra(filter_files["corpus-rich"], as_float)


# ---------------------------------------------------------------- expressions from the grammar

ADDRESSES = ["10.0.0.1", "10.0.0.2", "127.0.0.1", "192.168.10.1", "192.168.1.104", "fd00::1",
             "10.0.0.0/8", "192.168.0.0/16", "fe80::/10", "172.16.0.0 mask 255.255.0.0"]
DIRS = ["", "src ", "dst ", "src or dst ", "src and dst "]
OPS = ["", "gt ", "lt ", "gte ", "lte ", "eq ", ">= ", "<= "]
VALUED = {"ttl": [0, 1, 64, 128, 255], "tos": [0, 16], "dsb": [0, 46], "pkts": [0, 1, 2, 5, 100],
          "bytes": [0, 60, 1000], "appbytes": [0, 10], "port": [0, 53, 80, 443, 8080, 5355],
          "tcp port": [80, 443], "udp port": [53, 1900], "vid": [0, 5, 10, 4095], "vpri": [0, 15],
          "mid": [0, 29, 1048575], "ipid": [0, 1], "seq": [0, 1, 3], "base": [0, 1],
          "trans": [0, 1, 2], "spi": [0, 1], "nstroke": [0], "as": [0]}
# Primitives that take no direction or operator.
PLAIN = {"proto": [1, 6, 17, 58], "ether proto": [2048, 2054, 34525], "srcid": [0, 167772161],
         "inode": [0]}
FLOATS = {"dur": ["0", "0.001", "0.5", "1", "2.5"], "rate": ["0", "0.5", "10"],
          "load": ["0", "100", "5000.5"], "pcr": ["0", "0.5", "-0.5"], "jit": ["0.0", "1.5"],
          "intpkt": ["0.0", "2.0"], "intpktidle": ["0.0", "5.0"], "jitact": ["0.0", "0.5"],
          "ploss": ["0", "1"]}
NAMES = ["tcp", "udp", "icmp", "igmp", "arp", "rarp", "ip", "ipv4", "ipv6", "est", "con", "normal",
         "wait", "synack", "finack", "man", "far", "start", "stop", "status", "echo", "unreach",
         "redirect", "timexed", "rtr", "mbr", "mss", "wscale", "selackok", "tcptimestamp", "secn",
         "decn", "tcpopt", "multicast", "ip broadcast", "ether broadcast", "vlan", "mpls",
         "cocode", "timeout", "src dup", "dst syn", "src frag", "tcp src fin", "src or dst syn",
         "src ack", "dst rst", "src and dst push", "dst ecn", "src retrans", "src or dst winshut",
         "dst frag", "src or dst multipath", "src or dst outoforder", "encaps eth",
         "src encaps 802q", "ether src 00:11:22:33:44:01", "ether host ff:ff:ff:ff:ff:ff",
         "co us", "dsb ef", "inbound", "outbound", "len = 384", "1 > 2"]
PLAIN_NAMES = [f"{k} {v}" for k, values in PLAIN.items() for v in values]


@st.composite
def primitive(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["name", "host", "valued", "float"]))
    if kind == "name":
        return draw(st.sampled_from(NAMES + PLAIN_NAMES))
    direction = draw(st.sampled_from(DIRS))
    if kind == "host":
        addr = draw(st.sampled_from(ADDRESSES))
        word = "net" if "/" in addr or "mask" in addr else "host"
        return f"{direction}{word} {addr}"
    if kind == "valued":
        field = draw(st.sampled_from(sorted(VALUED)))
        op = draw(st.sampled_from(OPS))
        proto, _, name = field.rpartition(" ")  # `tcp port`: the protocol comes first
        head = f"{proto} {direction}{name}" if proto else f"{direction}{name}"
        first = f"{head} {op}{draw(st.sampled_from(VALUED[field]))}"
        if draw(st.booleans()):  # the bare-operand rule: `ttl 1 or 64`, `port 80 and gt 1000`
            join = draw(st.sampled_from([" and ", " or ", " and not "]))
            return f"{first}{join}{draw(st.sampled_from(OPS))}{draw(st.sampled_from(VALUED[field]))}"
        return first
    field = draw(st.sampled_from(sorted(FLOATS)))
    return f"{direction}{field} {draw(st.sampled_from(OPS))}{draw(st.sampled_from(FLOATS[field]))}"


@st.composite
def expression(draw: st.DrawFn, depth: int = 0) -> tuple[str, tuple]:
    """(text, tree): primitives joined by and/or/not.  The right operand of and/or is in
    parentheses so that every primitive means the same as on its own (no qualifier threading,
    which the fixed list covers), and the tree can be recomputed from ra's answer per primitive."""
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        leaf = draw(primitive())
        return leaf, ("leaf", leaf)
    kind = draw(st.sampled_from(["and", "or", "not"]))
    if kind == "not":
        text, tree = draw(expression(depth + 1))
        return f"{draw(st.sampled_from(['not', '!']))} ({text})", ("not", tree)
    left_text, left = draw(expression(depth + 1))
    right_text, right = draw(expression(depth + 1))
    join = draw(st.sampled_from({"and": [" and ", " && "], "or": [" or ", " || "]}[kind]))
    if draw(st.booleans()):
        left_text = f"({left_text})"
    return f"{left_text}{join}({right_text})", (kind, left, right)


def evaluate(tree: tuple, leaf_result, universe: set[int]) -> set[int]:
    if tree[0] == "leaf":
        return leaf_result(tree[1])
    if tree[0] == "not":
        return universe - evaluate(tree[1], leaf_result, universe)
    left, right = (evaluate(t, leaf_result, universe) for t in tree[1:])
    return left & right if tree[0] == "and" else left | right


@settings(max_examples=60)
@given(case=expression(), which=st.sampled_from(["samples", "corpus-clean"]))
def test_generated_expressions_match_ra(case: tuple[str, tuple], which: str, filter_files,
                                        frames) -> None:
    """Ours selects what the expression means: the and/or/not of ra's selection for each
    primitive, which is also what ra selects unless its optimizer mis-compiles the whole
    (filter.DEVIATIONS["optimizer"])."""
    text, tree = case
    path = filter_files[which]
    ours, our_rc = run_ours(frames[which], text)
    assert ours is not None, text
    universe = run_ra(path, "")[0]
    meaning = evaluate(tree, lambda leaf: run_ra(path, leaf)[0], universe)
    assert ours == meaning, text
    real, real_rc = run_ra(path, text)
    if real == meaning:
        assert our_rc == real_rc, text


