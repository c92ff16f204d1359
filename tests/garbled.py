"""A garbled record that real argus 3.0.8 writes, in every variant its garbage can take.

From an IPv4 packet it mistakes for IPv6 (tcpdump__mpls-traceroute.pcap), 3.0.8 writes an IPv6
key whose protocol byte and port words are uninitialised memory (they differ from run to run)
and a network DSR that is its header only.  The differential tests that read corpus files made
by the real argus meet whichever protocol that run gave it; these variants meet them all.
"""

from __future__ import annotations

import random
from pathlib import Path

from argusflow.records.mar import start_mar

GARBLED_IPV6 = bytes.fromhex(
    "1310001c010301030a090807000000010201020ba54c00000111f76f0c0404040c010101a54b829b0014"
    "0000000000000000000000000000000000000309180340cd7a490004d0ce100106020001002c3000000148"
    "0001022810000012000602002c002c200000030000001000000000")
PROTO_AT = 52      # the key's protocol byte; the port words follow it up to byte 60
ADDRESSES_AT = 20  # source and destination address, 32 bytes


def garbled_records(seed: int) -> bytes:
    """GARBLED_IPV6 with every protocol byte, then random addresses, protocols and ports."""
    rnd = random.Random(seed)
    out = bytearray()
    for proto in range(256):
        record = bytearray(GARBLED_IPV6)
        record[PROTO_AT] = proto
        out += record
    for proto in [1, 2, 6, 17, 50, 58, 132] * 8:
        record = bytearray(GARBLED_IPV6)
        record[ADDRESSES_AT:PROTO_AT] = rnd.randbytes(PROTO_AT - ADDRESSES_AT)
        record[PROTO_AT] = proto
        record[PROTO_AT + 1:60] = rnd.randbytes(60 - PROTO_AT - 1)
        out += record
    return bytes(out)


def write_garbled_file(path: Path, seed: int = 1) -> Path:
    """An Argus file: a start MAR, then garbled_records(seed)."""
    mar = start_mar("10.9.8.7", startime_us=1_087_208_000_000_000, now_us=1_087_208_000_000_000)
    path.write_bytes(mar + garbled_records(seed))
    return path
