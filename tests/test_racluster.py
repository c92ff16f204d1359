"""Our racluster against the real /usr/bin/racluster 3.0.8: same merged records, same text.

Inputs: the spec samples and the Argus files the real argus makes from the corpus captures with
`-S 5` (status records every 5 s, so there is something to merge).  Both racluster outputs are
written with -w and printed by the real ra with 48 fields; the lines must be identical.  Our
racluster runs in-process (the body of the console script) to keep the module fast.

Cases where we still differ from 3.0.8 are listed in KNOWN_DIFFERENT with the reason; they run as
non-strict xfails so that they show up in the report and pass once fixed.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from conftest import build_argus_files

from argusflow.cli.racluster import racluster
from argusflow.cli.runner import run_main
from argusflow.errors import UsageError
from argusflow.ops.cluster import parse_model

FIELDS = (
    "srcid seq stime ltime dur trans cause flgs proto saddr sport dir daddr dport spkts dpkts "
    "sbytes dbytes sappbytes dappbytes state smac dmac stos dtos sttl dttl sipid dipid svlan dvlan "
    "smpls dmpls swin dwin stcpb dtcpb tcprtt synack ackdat tcpopt inode mean min max stddev"
).split()

CONF3 = """\
# three fall-through rules
filter="udp and port 53" model="saddr daddr proto dport" label="dns"
filter="tcp" model="saddr daddr proto dport"
filter="" model="proto"
"""

# Fall-through with `cont`: TCP and UDP records count in the first model and again in a later one.
CONF_CONT = """\
filter="tcp or udp" model="saddr daddr proto dport" cont
filter="udp and port 53" model="saddr daddr proto"
filter="" model="saddr daddr proto"
"""

# The same with racluster.conf's timers (racluster(5) example): aggregates reported every
# `status` seconds and closed after `idle` seconds, by record time.
CONF_TIMERS = """\
filter="tcp or udp" model="saddr daddr proto dport" status=120 idle=3600 cont
filter="udp and port 53" model="saddr daddr proto" status=0 idle=10
filter="" model="saddr daddr proto" status=0 idle=3600
"""

MODES = {
    "default": [],
    "saddr_daddr": ["-m", "saddr", "daddr"],
    "proto_dport": ["-m", "proto", "dport"],
    "saddr24": ["-m", "saddr/24"],
    "matrix": ["-m", "matrix"],
    "srcid": ["-m", "srcid"],
    "rmon": ["-M", "rmon"],
    "conf3": ["-f", "CONF3"],
    "conf_cont": ["-f", "CONF_CONT"],
}

# Corpus files (capture names) rich in status records or odd keys, run with every mode.
RICH = ("ndpi__ocs.pcap", "ndpi__netflix.pcap", "ndpi__wechat.pcap", "ndpi__1kxun.pcap",
        "zeek__ftp-cwd-navigation.pcap", "ndpi__icmp-tunnel.pcap", "ndpi__KakaoTalk_chat.pcap",
        "zeek__tunnels-gre-sample.pcap", "ndpi__googledns_android10.pcap", "zeek__dhcp-dhcp.pcap")

_TCP = "TCP objects merged from different connections (base sequence numbers, gaps)"
_LAST = ("interleaved flows of one group: 3.0.8 sometimes keeps a later-starting record's "
         "earlier last time, not the latest (rule not found yet)")
KNOWN_DIFFERENT: dict[tuple[str, str], str] = {
    ("default", "tcpdump__timestamp_invalid_nano.pcap"): "nanosecond times as 3.0.8 reads them",
    ("matrix", "ndpi__1kxun.pcap"): _LAST,
    ("rmon", "ndpi__1kxun.pcap"): _LAST,
    ("proto_dport", "ndpi__1kxun.pcap"): "sorted by dport, 3.0.8 places a merged IPv6 group "
                                         "(::) out of numeric order; its sort key is not found",
    **{(m, "ndpi__ocs.pcap"): _TCP + ": the gap flag 'g' after a reversed merge"
       for m in ("matrix", "rmon")},
}


def ours(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_main("racluster", racluster, argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def status_argus_files(tmp_path_factory: pytest.TempPathFactory,
                       corpus_captures: list[Path]) -> dict[str, Path]:
    """Argus files made by the real argus with status records every 5 seconds."""
    out = tmp_path_factory.mktemp("status5")
    files = build_argus_files(corpus_captures, out, ["-X", "-S", "5"]).files
    if not files:
        pytest.skip("the real argus made no Argus file from the corpus")
    return files


@pytest.fixture(scope="session")
def conf3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conf") / "racluster.conf"
    path.write_text(CONF3)
    (path.parent / "cont.conf").write_text(CONF_CONT)
    (path.parent / "timers.conf").write_text(CONF_TIMERS)
    return path


def options(mode: str, conf: Path) -> list[str]:
    names = {"CONF3": conf, "CONF_CONT": conf.parent / "cont.conf",
             "CONF_TIMERS": conf.parent / "timers.conf"}
    return [str(names[o]) if o in names else o for o in MODES[mode]]


def printed(run_real, path: Path) -> list[str]:
    if not path.exists():
        return []
    done = run_real(["ra", "-X", "-n", "-u", "-c", ",", "-s", *FIELDS, "-r", str(path)])
    return done.stdout.splitlines()


def compare_written(run_real, src: Path, opts: list[str], tmp: Path) -> None:
    real_out, our_out = tmp / "real.argus", tmp / "ours.argus"
    run_real(["racluster", "-X", "-r", str(src), "-w", str(real_out), *opts])
    code, _, err = ours(["-X", "-r", str(src), "-w", str(our_out), *opts])
    assert err == ""
    real, mine = printed(run_real, real_out), printed(run_real, our_out)
    assert len(mine) == len(real), f"{len(mine)} records, the real racluster wrote {len(real)}"
    for number, (a, b) in enumerate(zip(real, mine, strict=True), start=1):
        if a != b:
            diff = [(FIELDS[i], x, y) for i, (x, y) in
                    enumerate(zip(a.split(","), b.split(","), strict=False)) if x != y]
            pytest.fail(f"record {number} differs (field, real, ours): {diff}")


def _mark(mode: str, name: str, request: pytest.FixtureRequest) -> None:
    reason = KNOWN_DIFFERENT.get((mode, name))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


def test_default_key_on_every_corpus_file(status_argus_files, run_real, tmp_path, request) -> None:
    failures = []
    for name, path in sorted(status_argus_files.items()):
        sub = tmp_path / name
        sub.mkdir()
        try:
            compare_written(run_real, path, [], sub)
        except AssertionError as err:
            if ("default", name) not in KNOWN_DIFFERENT:
                failures.append(f"{name}: {str(err).splitlines()[0]}")
        except pytest.fail.Exception as err:
            if ("default", name) not in KNOWN_DIFFERENT:
                failures.append(f"{name}: {err}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", [m for m in MODES if m != "default"])
@pytest.mark.parametrize("name", RICH)
def test_modes_on_rich_files(mode, name, status_argus_files, run_real, conf3, tmp_path,
                             request) -> None:
    if name not in status_argus_files:
        pytest.skip(f"the real argus made nothing from {name}")
    _mark(mode, name, request)
    compare_written(run_real, status_argus_files[name], options(mode, conf3), tmp_path)


@pytest.mark.parametrize("mode", ["default", "saddr_daddr", "proto_dport", "srcid", "rmon"])
def test_samples(mode, sample_argus_files, run_real, conf3, tmp_path) -> None:
    for path in sample_argus_files:
        sub = tmp_path / path.stem
        sub.mkdir()
        compare_written(run_real, path, options(mode, conf3), sub)


@pytest.mark.parametrize("fields", [
    [],
    ["-n", "-s", "stime", "dur", "trans", "mean", "stddev", "min", "max", "saddr", "daddr",
     "proto", "state"],
    ["-nn", "-u", "-p", "3", "-c", ",", "-L", "0"],
])
@pytest.mark.parametrize("name", RICH[:6])
def test_printed_text(name, fields, status_argus_files, run_real) -> None:
    """Our racluster's own printing is the real one's, byte for byte."""
    if name not in status_argus_files:
        pytest.skip(f"the real argus made nothing from {name}")
    argv = ["-X", "-r", str(status_argus_files[name]), *fields]
    real = run_real(["racluster", *argv])
    code, out, err = ours(argv)
    assert err == ""
    assert out == real.stdout
    assert code == real.returncode


def test_filter_after_dash(status_argus_files, run_real, tmp_path) -> None:
    path = status_argus_files.get("ndpi__wechat.pcap") or next(iter(status_argus_files.values()))
    compare_written(run_real, path, ["-", "tcp"], tmp_path)


@pytest.mark.parametrize("opts", [["-", "tcp and udp"], ["-m", "proto", "-", "tcp and udp"],
                                  ["-M", "norep", "-", "tcp and udp"], [], ["-", "man"]],
                         ids=["none", "m_none", "norep_none", "all", "mars_only"])
def test_exit_status_as_real(opts, sample_argus_files, run_real, run_ours, tmp_path) -> None:
    """0 when some record (a MAR too) got through the filter, 1 when none did, as 3.0.8 says
    and does; with and without -w; and on a file that holds only MARs."""
    source = sample_argus_files[0]
    mars_only = tmp_path / "mars.argus"
    run_real(["ra", "-X", "-r", str(source), "-w", str(mars_only), "-", "man"])
    for path in (source, mars_only):
        for write in ([], ["-w", str(tmp_path / "out.argus")]):
            argv = ["-X", "-r", str(path), *write, *opts]
            (tmp_path / "out.argus").unlink(missing_ok=True)
            real = run_real(["racluster", *argv]).returncode
            (tmp_path / "out.argus").unlink(missing_ok=True)
            assert run_ours(["racluster", *argv]).returncode == real, argv


def test_none_collapses_everything(status_argus_files) -> None:
    """Documented deviation: `-m none` gives one record (3.0.8 does not)."""
    path = status_argus_files.get("ndpi__ocs.pcap") or next(iter(status_argus_files.values()))
    code, out, _ = ours(["-X", "-r", str(path), "-m", "none", "-n", "-L", "-1", "-s", "trans",
                         "pkts"])
    assert code == 0
    assert len(out.splitlines()) == 1


def test_bad_key_is_one_line() -> None:
    with pytest.raises(UsageError):
        parse_model(["bogus"])
    code, _, err = ours(["-X", "-r", "/nonexistent", "-m", "bogus"])
    assert code == 2 and err.count("\n") == 1 and "bogus" in err


# Short timers on one model per protocol: many restarted aggregates, TCP INIT records merged
# into PERF ones after a restart.
CONF_PROTO_SHORT = 'filter="" model="proto" status=3 idle=20\n'


@pytest.mark.parametrize(("conf", "name"), [
    ("timers", "ndpi__wechat.pcap"), ("tcp", "ndpi__wechat.pcap"),
    ("proto", "ndpi__KakaoTalk_chat.pcap"), ("proto", "zeek__wikipedia.pcap"),
])
def test_conf_timers(conf, name, status_argus_files, run_real, conf3, tmp_path) -> None:
    """Timed aggregates restart as 3.0.8 restarts them: every printed field agrees."""
    if name not in status_argus_files:
        pytest.skip(f"the real argus made nothing from {name}")
    conf_path = conf3.parent / "timers.conf"
    if conf != "timers":
        conf_path = tmp_path / f"{conf}.conf"
        conf_path.write_text(CONF_TIMERS_TCP if conf == "tcp" else CONF_PROTO_SHORT)
    compare_written(run_real, status_argus_files[name], ["-f", str(conf_path)], tmp_path)


# What the timers decide: which records form each reported aggregate, and the report order.
SEGMENT_FIELDS = "stime ltime trans proto saddr daddr dport spkts dpkts sbytes dbytes".split()
CONF_TIMERS_TCP = """\
filter="tcp" model="saddr daddr proto dport" status=10 idle=30
filter="" model="proto"
"""


# Two idle rules: aggregates that 3.0.8 reports at one timer check, in queue order, we report
# at different records (see test_conf_timer_segments' xfail).
CONF_IDLE_TWO_RULES = """\
filter="udp" status=15 idle=8
filter="tcp" model="saddr daddr" idle=6
"""
_IDLE_ORDER = ("timed idle report order: 3.0.8 reports aggregates whose idle time passed at "
               "different records together, later than the first record past their idle time "
               "(netflix: two DNS flows idle since 43.02 and 44.85 come out with an SSDP flow "
               "idle since 46.00, after TCP records of the other rule at 43.01-44.99; UDP-only "
               "input gives the same order as ours); when 3.0.8 checks the idle timers is not "
               "found yet (not before every record, nor only on the rule's own records, nor on "
               "records taken by it or an earlier rule).  It may depend on the wall clock: on "
               "big.argus (345k records) with CONF_TIMERS, 3.0.8 wrote 131647, 140358, 141841 "
               "and 147248 records in different runs of the same command")


@pytest.mark.parametrize("conf", [
    "timers", "tcp",
    pytest.param("idle_two_rules", marks=pytest.mark.xfail(reason=_IDLE_ORDER, strict=False)),
])
def test_conf_timer_segments(conf, status_argus_files, run_real, conf3, tmp_path) -> None:
    path = status_argus_files.get("ndpi__wechat.pcap") or next(iter(status_argus_files.values()))
    conf_path = conf3.parent / "timers.conf"
    if conf == "tcp":
        conf_path = tmp_path / "tcp.conf"
        conf_path.write_text(CONF_TIMERS_TCP)
    if conf == "idle_two_rules":
        if "ndpi__netflix.pcap" not in status_argus_files:
            pytest.skip("the real argus made nothing from ndpi__netflix.pcap")
        path = status_argus_files["ndpi__netflix.pcap"]
        conf_path = tmp_path / "idle.conf"
        conf_path.write_text(CONF_IDLE_TWO_RULES)
    real_out, our_out = tmp_path / "real.argus", tmp_path / "ours.argus"
    opts = ["-f", str(conf_path)]
    run_real(["racluster", "-X", "-r", str(path), "-w", str(real_out), *opts])
    _, _, err = ours(["-X", "-r", str(path), "-w", str(our_out), *opts])
    assert err == ""
    show = ["ra", "-X", "-n", "-u", "-c", ",", "-s", *SEGMENT_FIELDS, "-r"]
    real = run_real([*show, str(real_out)]).stdout.splitlines()
    mine = run_real([*show, str(our_out)]).stdout.splitlines()
    keys = {tuple(line.split(",")[3:7]) for line in real[1:]}
    assert len(real) - 1 > len(keys)  # the timers did split some keys into several records
    assert mine == real


PARTIAL_CONFS = ['filter="tcp"', 'filter="udp" model="saddr daddr"\nfilter="icmp" model="proto"']


@pytest.mark.parametrize("conf", PARTIAL_CONFS)
def test_conf_records_no_rule_takes_merge_on_the_flow_key(conf, status_argus_files, run_real,
                                                           tmp_path) -> None:
    """racluster 3.0.8 aggregates the records that no statement takes on the default key."""
    path = status_argus_files.get("ndpi__wechat.pcap") or next(iter(status_argus_files.values()))
    conf_path = tmp_path / "partial.conf"
    conf_path.write_text(conf + "\n")
    compare_written(run_real, path, ["-f", str(conf_path)], tmp_path)


def test_reader_gives_racluster_every_carried_column(bundled_sample: Path) -> None:
    """racluster's numpy route reads through RecordReader.feed_columns(data, None): every
    column the records carry (none zero-filled), and the input's START MAR."""
    import numpy as np

    from argusflow.cli.racluster import decoded_chunks
    from argusflow.records.codec import RecordReader
    from argusflow.records.schema import NUMPY_DTYPES

    path = bundled_sample
    data = path.read_bytes()
    carried = RecordReader().feed_columns(data, None)
    assert carried.start_mar == data[:128]
    named = RecordReader().feed_columns(data, frozenset(carried.columns))
    assert carried.columns.keys() == named.columns.keys()
    for name, values in carried.columns.items():
        assert np.array_equal(values, named.columns[name]), name
    assert set(carried.columns) < set(RecordReader().feed_columns(data, frozenset(NUMPY_DTYPES)).columns)

    class Session:  # what decoded_chunks needs of a ClientSession
        def report(self, text: str) -> None:
            raise AssertionError(text)

    chunks = list(decoded_chunks(Session(), str(path)))  # type: ignore[arg-type]
    assert [c.height for c in chunks] == [carried.n]
    assert chunks[0].start_mar == data[:128]
    assert chunks[0].columns.keys() == carried.columns.keys()
