"""The TPACKET_V3 block walk of capture/live.py on rings built in memory (no root needed).

A ring here is what the kernel leaves in the mmap'd area: blocks with a block descriptor
(status, packet count, offset of the first packet) and a chain of tpacket3_hdr + frame.  The
walk must return every packet of the ready blocks, cut to the snap length, with a VLAN tag the
kernel had taken off put back after the MAC addresses (length + 4, as libpcap), and give each
block back to the kernel.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argusflow.capture import jit
from argusflow.capture.live import (
    TP_STATUS_USER,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    walk_blocks,
)

BLOCK = 8192
HDR = 48  # tpacket3_hdr, padded to 16
MAC_AT = 66  # where the kernel puts the frame: after the header and a sockaddr_ll (+ padding)

Packet = tuple[bytes, int, int, int]  # frame as delivered, wire length, vlan tci or -1, tpid


def build_ring(blocks: list[list[Packet]], ready: list[bool]) -> np.ndarray:
    ring = np.zeros(BLOCK * len(blocks), dtype=np.uint8)
    for b, (packets, is_ready) in enumerate(zip(blocks, ready, strict=True)):
        base = b * BLOCK
        p = base + 48
        struct.pack_into("<IIIII", ring, base + 4, 0, TP_STATUS_USER if is_ready else 0,
                         len(packets), 48, 0)
        for k, (frame, wire, tci, tpid) in enumerate(packets):
            step = (MAC_AT + len(frame) + 15) // 16 * 16
            status = TP_STATUS_USER
            if tci >= 0:
                status |= TP_STATUS_VLAN_VALID | (TP_STATUS_VLAN_TPID_VALID if tpid else 0)
            nxt = step if k + 1 < len(packets) else 0
            struct.pack_into("<IIIIIIHHIIH", ring, p, nxt, 1_700_000_000 + k, 123_456_789,
                             len(frame), wire, status, MAC_AT, MAC_AT + 14, 0, max(tci, 0), tpid)
            ring[p + MAC_AT:p + MAC_AT + len(frame)] = np.frombuffer(frame, np.uint8)
            p += step
        assert p <= base + BLOCK
    return ring


def walk(ring: np.ndarray, snaplen: int, compiled: bool, start: int = 0):  # noqa: ANN201
    fn = walk_blocks.jit() if compiled else walk_blocks.py
    out = np.zeros(256 * (snaplen + 4), dtype=np.uint8)
    rows = np.zeros((5, 256), dtype=np.int64)
    nxt, n = fn(ring.view(np.uint32), ring, BLOCK, len(ring) // BLOCK, start, snaplen, out, rows)
    frames = [out[rows[0, i]:rows[0, i] + rows[3, i]].tobytes() for i in range(n)]
    return nxt, frames, rows[:, :n]


def expected(packet: Packet, snaplen: int) -> tuple[bytes, int]:
    frame, wire, tci, tpid = packet
    if tci < 0:
        return frame[:snaplen], wire
    tag = struct.pack(">HH", tpid or 0x8100, tci)
    return frame[:12] + tag + frame[12:snaplen], wire + 4


frames = st.binary(min_size=14, max_size=300)
packets = st.tuples(frames, st.integers(0, 1), st.integers(-1, 0xFFFF),
                    st.sampled_from([0, 0x88A8])).map(
    lambda t: (t[0], len(t[0]) + t[1] * 1000, t[2], t[3] if t[2] >= 0 else 0))
modes = [False] + ([True] if jit.AVAILABLE else [])


@pytest.mark.parametrize("compiled", modes)
@settings(max_examples=60, deadline=None)
@given(blocks=st.lists(st.lists(packets, min_size=1, max_size=12), min_size=1, max_size=3),
       snaplen=st.sampled_from([64, 96, 1500]))
def test_walk_returns_every_packet_of_ready_blocks(compiled: bool, blocks: list[list[Packet]],
                                                   snaplen: int) -> None:
    ring = build_ring(blocks + [[]], [True] * len(blocks) + [False])
    nxt, got, rows = walk(ring, snaplen, compiled)
    want = [expected(p, snaplen) for block in blocks for p in block]
    assert got == [w[0] for w in want]
    assert rows[4].tolist() == [w[1] for w in want]
    assert rows[2].tolist() == [123_456_789] * len(want)  # nanoseconds
    assert nxt == len(blocks)  # stopped at the block the kernel still owns
    status = ring.view(np.uint32)[[b * BLOCK // 4 + 2 for b in range(len(blocks))]]
    assert not status.any(), "every block read is handed back to the kernel"


def test_walk_stops_at_a_kernel_block_and_wraps_around() -> None:
    one = [(bytes(range(60)), 60, -1, 0)]
    ring = build_ring([one, one], [False, True])
    nxt, got, _ = walk(ring, 96, False, start=1)
    assert (nxt, len(got)) == (0, 1)  # read block 1, wrapped, block 0 not ready
    assert walk(ring, 96, False, start=0)[1] == []


def test_walk_leaves_a_block_that_does_not_fit_the_batch() -> None:
    block = [(bytes(100), 100, -1, 0)] * 3
    ring = build_ring([block], [True])
    out = np.zeros(2 * 100, dtype=np.uint8)
    rows = np.zeros((5, 256), dtype=np.int64)
    nxt, n = walk_blocks.py(ring.view(np.uint32), ring, BLOCK, 1, 0, 96, out, rows)
    assert (nxt, n) == (0, 0)
    assert ring.view(np.uint32)[2] == TP_STATUS_USER, "kept for the next read"
