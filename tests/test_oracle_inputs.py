"""The Argus files the real argus makes for the differential tests are the same on every run.

A record that differs between two runs of the real argus makes every comparison that reads it
pass or fail by chance. tcpdump__mpls-traceroute.pcap gives one (a garbled IPv6 key, protocol
byte from uninitialised memory; for some values the record is missing): conftest.make_argus_file
runs argus again until the record is there and settle_garbled_key fixes its protocol and ports;
tests/garbled.py tests every value they can take.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import SETTLED_PROTOCOL, UNSETTLED_KEYS, ipv6_key_records, make_argus_file


def flow_records(data: bytes) -> list[bytes]:
    """The flow records of an Argus file, in order (MARs carry the wall clock: left out)."""
    records, at = [], 0
    while at + 4 <= len(data):
        end = at + int.from_bytes(data[at + 2:at + 4], "big") * 4
        if end == at:
            break
        if data[at] & 0xF0 != 0x80:
            records.append(data[at:end])
        at = end
    return records


@pytest.mark.parametrize("argus_args", [["-X"], ["-X", "-A", "-J", "-Z", "-m", "-S", "5"]],
                         ids=["plain", "rich"])
@pytest.mark.parametrize("name", sorted(UNSETTLED_KEYS))
def test_unsettled_capture_gives_the_same_records_each_run(name: str, argus_args: list[str],
                                                           corpus_captures: list[Path],
                                                           real_tool, tmp_path: Path) -> None:
    real_tool("/usr/sbin/argus")
    capture = next((c for c in corpus_captures if c.name == name), None)
    if capture is None:
        pytest.skip(f"{name} is not in the corpus")
    outs = [tmp_path / f"{k}.argus" for k in range(2)]
    with ThreadPoolExecutor(2) as pool:
        why_not = list(pool.map(lambda out: make_argus_file(capture, out, argus_args), outs))
    assert why_not == [None, None]
    runs = [flow_records(out.read_bytes()) for out in outs]
    assert runs[0] and runs[1] == runs[0]
    data = outs[0].read_bytes()
    keys = [dsr for _, _, dsr in ipv6_key_records(data) if data[dsr + 4:dsr + 20] == UNSETTLED_KEYS[name]]
    assert len(keys) == 1 and data[keys[0] + 36] == SETTLED_PROTOCOL
