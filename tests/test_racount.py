"""Our racount against the real /usr/bin/racount 3.0.8: byte-identical output.

Ours runs in-process (the console script's body); the real one by absolute path with -X.
Inputs: the spec samples and the Argus files the real argus makes from the corpus captures.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from argusflow.cli.racount import racount
from argusflow.cli.runner import run_main
from argusflow.ops.count import address_kinds

MODES = {
    "totals": [],
    "proto_addr": ["-M", "proto", "addr"],
    "rmon": ["-M", "rmon", "proto", "addr"],
    "numeric": ["-nn", "-M", "proto"],
    "tcp_filter": ["-M", "proto", "addr", "-", "tcp"],
    "polars_filter": ["-M", "proto", "-", "src", "pkts", "gt", "1", "or", "arp"],
}


def ours(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_main("racount", racount, [str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_same(argv: list, run_real) -> None:
    code, text, err = ours(["-X", *argv])
    done = run_real(["racount", "-X", *argv])
    assert err == ""
    assert text.splitlines() == done.stdout.splitlines()
    assert text == done.stdout
    assert code == done.returncode


@pytest.mark.parametrize("mode", MODES)
def test_samples_match_real(sample_argus_file: Path, mode: str, run_real) -> None:
    assert_same(["-r", sample_argus_file, *MODES[mode]], run_real)


@pytest.mark.parametrize("mode", ("proto_addr", "rmon"))
def test_corpus_matches_real(corpus_argus_file: Path, mode: str, run_real) -> None:
    assert_same(["-r", corpus_argus_file, *MODES[mode]], run_real)


def test_several_inputs_count_one_management_record(shared_dir: Path, run_real) -> None:
    samples = shared_dir / "spec" / "samples"
    assert_same(["-r", samples / "misc.argus", samples / "icmp.argus", samples / "ipv6.argus",
                 "-M", "proto", "addr"], run_real)


def test_address_kinds_follow_3_0_8_tests() -> None:
    """3.0.8's chain of tests, including its quirks: 172.16/16 only is private, 169.254 is
    plain unicast (its link-local test sits inside the 173-187 range, so it never holds),
    239.192/10 counts as org-local.  (3.0.6's code, as its text: not checked value by value
    against 3.0.8, whose output agrees on every sample and corpus file.)"""
    addrs = {"10.1.2.3": "private", "172.16.9.9": "private", "172.17.0.1": "unicast",
             "192.168.1.1": "private", "192.0.2.7": "testnet", "127.0.0.1": "loopback",
             "0.1.2.3": "thisnet", "169.254.1.1": "unicast", "8.8.8.8": "unicast",
             "224.0.0.251": "mc_local", "239.255.255.250": "mc_sitelocal",
             "239.192.0.1": "mc_orglocal", "240.0.0.1": "reserved"}
    values = np.array([int.from_bytes(bytes(int(x) for x in a.split(".")), "big") for a in addrs],
                      dtype=np.uint64)
    kinds = address_kinds(values)
    for i, (addr, kind) in enumerate(addrs.items()):
        hits = [name for name, mask in kinds.items() if mask[i]]
        assert hits == [kind], addr


def test_missing_input_is_one_line(tmp_path: Path, run_real) -> None:
    """As 3.0.8: the error in one line, the (empty) counts still printed, exit status 2."""
    code, text, err = ours(["-X", "-r", tmp_path / "missing.argus"])
    done = run_real(["racount", "-X", "-r", tmp_path / "missing.argus"])
    assert (code, text) == (done.returncode, done.stdout) == (2, text)
    assert err.count("\n") == 1 and err.startswith("racount: ") and "missing.argus" in err


def test_protocol_sums_are_exact_past_2_53() -> None:
    """-M proto adds 64-bit counters exactly (a float sum rounds them past 2**53)."""
    import numpy as np

    from argusflow.ops.count import COUNTERS, Tally

    big = 2**53 + 1
    cols = {"rtype": np.full(2, 0x10, dtype=np.uint8), "flow_subtype": np.ones(2, dtype=np.uint8),
            "flow_qual": np.ones(2, dtype=np.uint8), "proto": np.full(2, 6, dtype=np.uint8)}
    for name in COUNTERS:
        cols[name] = np.array([big, 2], dtype=np.uint64)
    tally = Tally(by_proto=True)
    tally.add(cols)
    (bucket,) = tally.buckets.values()
    assert bucket.counters.tolist() == [big + 2] * 4
