"""Live capture on Linux: AF_PACKET with a TPACKET_V3 memory-mapped receive ring.

    cap = LiveCapture("eth0", snaplen=96, promisc=True, position=0)
    loop.add_reader(cap.fileno(), ...)      # readable = at least one block handed to us
    batch = cap.read()                      # PacketBatch of every packet in the ready blocks
    received, dropped = cap.statistics()    # kernel counters (PACKET_STATISTICS), cumulative

The kernel fills fixed-size blocks of the ring and hands a whole block to user space when it is
full or when its timeout (`block_ms`) expires, so one wake-up brings many packets.  One small
compiled walk (`_walk_blocks`) follows each ready block's tpacket3_hdr chain, copies the packets
(at most `snaplen` bytes each) into the batch buffer and gives the block back to the kernel at
once, so the ring never waits on the flow engine.  The batch is then the same PacketBatch the
file readers produce (`ifindex` holds the interface's position among the `-i` options).

The kernel truncates packets to the snap length itself with a BPF program (the capture filter
compiled by libpcap, capture/bpf.py, or just `ret #snaplen`): a ring then holds about five
times as many packets of a typical mix as with whole frames (see
../shared/research/live-baseline.md, "the default ring holds only 2,050").
VLAN tags the kernel took off the frame (rx VLAN offload) are put back, as libpcap does, so the
bytes and lengths equal what a capture file of the same traffic holds.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import select
import socket
import struct

import numpy as np

from argusflow.capture import bpf, jit
from argusflow.capture import linktype as lt
from argusflow.capture.batch import PacketBatch
from argusflow.capture.jit import Kernel
from argusflow.errors import ArgusflowError, UsageError

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
PACKET_MR_PROMISC = 1
SO_ATTACH_FILTER = 26
SIOCGIFHWADDR = 0x8927
ETH_P_ALL = 0x0003
TP_STATUS_KERNEL, TP_STATUS_USER = 0, 1
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40
BPF_RET_K = 0x06

DEFAULT_SNAPLEN = 96  # argus 3.0.8's built-in snap length
DEFAULT_RING = 32 << 20  # ARGUS_PCAP_BUF_SIZE; libpcap's default is 2 MiB (too small, baseline)
# A block is handed over when full or BLOCK_MS after its first packet, so at low rates each block
# holds only BLOCK_MS of traffic and the ring absorbs a stall of BLOCK_NR * BLOCK_MS at most,
# whatever its size: many small blocks (128 x 40 ms = 5 s) rather than a few big ones.
BLOCK_SIZE = 256 << 10
BLOCK_MS = 40
MAX_BATCH = 1 << 16

# ARPHRD_* (/sys/class/net/IF/type) -> the link type the decoder expects
ARPHRD_LINKTYPE = {1: lt.ETHERNET, 772: lt.ETHERNET, 65534: lt.RAW}


class CaptureError(ArgusflowError):
    """An interface that cannot be captured on (missing, no permission, unsupported)."""


class TpacketReq3(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint) for name in (
        "tp_block_size", "tp_block_nr", "tp_frame_size", "tp_frame_nr",
        "tp_retire_blk_tov", "tp_sizeof_priv", "tp_feature_req_word")]


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def _walk_blocks(ring32: np.ndarray, ring8: np.ndarray, block_size: int, block_nr: int,
                 block: int, snaplen: int, out: np.ndarray, rows: np.ndarray) -> tuple[int, int]:
    """Copy the packets of ready blocks from `block` on into `out`, their columns into `rows`
    (offset, seconds, nanoseconds, caplen, wirelen); give each block back to the kernel.
    Stops before a block whose packets might not fit.  Returns (next block, packets)."""
    n, pos = 0, 0
    stride = snaplen + 4
    for _ in range(block_nr):
        base = block * block_size
        if ring32[base // 4 + 2] & TP_STATUS_USER == 0:
            break
        num = int(ring32[base // 4 + 3])
        if n + num > rows.shape[1] or pos + num * stride > out.shape[0]:
            break
        p = base + int(ring32[base // 4 + 4])
        for _k in range(num):
            h = p // 4
            cap = min(int(ring32[h + 3]), snaplen)
            wire = int(ring32[h + 4])
            status = int(ring32[h + 5])
            mac = p + (int(ring32[h + 6]) & 0xFFFF)
            tci = int(ring32[h + 8])
            rows[0, n] = pos
            rows[1, n] = ring32[h + 1]
            rows[2, n] = ring32[h + 2]
            if (status & TP_STATUS_VLAN_VALID or tci != 0) and cap >= 12:
                tpid = int(ring32[h + 9]) & 0xFFFF if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                out[pos:pos + 12] = ring8[mac:mac + 12]
                out[pos + 12] = tpid >> 8
                out[pos + 13] = tpid & 0xFF
                out[pos + 14] = (tci >> 8) & 0xFF
                out[pos + 15] = tci & 0xFF
                out[pos + 16:pos + cap + 4] = ring8[mac + 12:mac + cap]
                cap += 4
                wire += 4
            else:
                out[pos:pos + cap] = ring8[mac:mac + cap]
            rows[3, n] = cap
            rows[4, n] = wire
            pos += cap
            n += 1
            if ring32[h] == 0:
                break
            p += int(ring32[h])
        ring32[base // 4 + 2] = TP_STATUS_KERNEL
        block = (block + 1) % block_nr
    return block, n


walk_blocks = Kernel(_walk_blocks, aot="walk_blocks")


def compile_walk() -> None:
    """Compile (or load) the walk now, on a dummy ring: not while the real ring fills."""
    if jit.wanted(None):
        ring = np.zeros(BLOCK_SIZE, dtype=np.uint8)
        walk_blocks.jit()(ring.view(np.uint32), ring, BLOCK_SIZE, 1, 0, 96,
                          np.zeros(100, np.uint8), np.zeros((5, 1), np.int64))


def interface_linktype(sock: socket.socket, ifname: str) -> int:
    """The interface's hardware type (SIOCGIFHWADDR; /sys may show another namespace)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()))
    except OSError:
        raise CaptureError(f"{ifname}: no such interface") from None
    arphrd = struct.unpack_from("H", raw, 16)[0]
    if arphrd not in ARPHRD_LINKTYPE:
        raise CaptureError(f"{ifname}: unsupported link type (ARPHRD {arphrd})")
    return ARPHRD_LINKTYPE[arphrd]


class LiveCapture:
    """One interface's AF_PACKET socket and its receive ring."""

    def __init__(self, ifname: str, *, snaplen: int = DEFAULT_SNAPLEN, promisc: bool = True,
                 ring_bytes: int = DEFAULT_RING, block_ms: int = BLOCK_MS, position: int = 0,
                 max_batch: int = MAX_BATCH, filter_text: str | None = None) -> None:
        if not 14 <= snaplen <= 262144:
            raise UsageError(f"-s {snaplen}: the snap length is 14 to 262144 bytes")
        self.ifname, self.snaplen, self.position = ifname, snaplen, position
        self.block_size = max(BLOCK_SIZE, 1 << int(np.ceil(np.log2(snaplen + 4096))))
        self.block_nr = max(2, ring_bytes // self.block_size)
        self.received = self.dropped = 0
        self._block = 0
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise CaptureError(f"{ifname}: capturing needs root (or CAP_NET_RAW)") from None
        try:
            self.linktype = interface_linktype(self.sock, ifname)
            self._attach_filter(filter_text)
            self._setup(promisc, block_ms)
        except (OSError, ArgusflowError) as err:
            self.sock.close()
            if isinstance(err, ArgusflowError):
                raise
            raise CaptureError(f"{ifname}: {err.strerror or err}") from None
        self.ring8 = np.frombuffer(self.ring, dtype=np.uint8)
        self.ring32 = np.frombuffer(self.ring, dtype=np.uint32)
        self.rows = np.empty((5, max_batch), dtype=np.int64)
        self._buffers = [np.empty(max_batch * (snaplen + 4), dtype=np.uint8) for _ in range(2)]
        self._walk = walk_blocks.jit() if jit.wanted(None) else walk_blocks.py

    def _setup(self, promisc: bool, block_ms: int) -> None:
        s = self.sock
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        req = TpacketReq3(self.block_size, self.block_nr, 2048,
                          self.block_size // 2048 * self.block_nr, block_ms, 0, 0)
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, bytes(req))
        self.ring = mmap.mmap(s.fileno(), self.block_size * self.block_nr,
                              mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        s.bind((self.ifname, ETH_P_ALL))
        if promisc:
            index = socket.if_nametoindex(self.ifname)
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                         struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b""))
        s.setblocking(False)

    def _attach_filter(self, filter_text: str | None) -> None:
        """A kernel BPF program: the capture filter compiled by libpcap (its accepting returns
        give the snap length), or without a filter one instruction returning the snap length.
        Either way the kernel cuts packets to the snap length before they reach the ring."""
        code = [(BPF_RET_K, 0, 0, self.snaplen)]
        if filter_text:
            code = bpf.compile_filter(filter_text, self.linktype, self.snaplen)
        program = (SockFilter * len(code))(*(SockFilter(*insn) for insn in code))
        fprog = SockFprog(len(code), program)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait(self, timeout_s: float) -> bool:
        """Block until a block is ready (for callers without an event loop)."""
        return bool(select.select([self.sock], [], [], timeout_s)[0])

    def read(self) -> PacketBatch | None:
        """Every packet of the blocks ready now (up to one batch), or None."""
        out = self._buffers[0]
        self._buffers.reverse()  # the previous batch stays valid while this one is read
        self._block, n = self._walk(self.ring32, self.ring8, self.block_size, self.block_nr,
                                    self._block, self.snaplen, out, self.rows)
        if n == 0:
            return None
        r = self.rows[:, :n]
        return PacketBatch(
            ts_us=r[1] * 1_000_000 + r[2] // 1000,
            caplen=r[3].astype(np.uint32), wirelen=r[4].astype(np.uint32),
            linktype=np.full(n, self.linktype, dtype=np.uint16),
            ifindex=np.full(n, self.position, dtype=np.uint16),
            offset=r[0].copy(), data=out)

    def pending_error(self) -> str | None:
        """The socket's error (read and cleared: the kernel flags e.g. ENETDOWN when the
        interface goes down or away, and poll() keeps reporting it until it is read)."""
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return os.strerror(code) if code else None

    def gone(self) -> bool:
        """The interface no longer exists (deleted, or its namespace went away)."""
        try:
            socket.if_nametoindex(self.ifname)
        except OSError:
            return True
        return False

    def statistics(self) -> tuple[int, int]:
        """(packets received, packets dropped by the kernel) since the capture started.  The
        kernel resets its counters on each read, so they are summed here."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops, _ = struct.unpack("III", raw)
        self.received += packets
        self.dropped += drops
        return self.received, self.dropped

    def close(self) -> None:
        del self.ring8, self.ring32  # the views must go before the mapping can be closed
        try:
            self.ring.close()
        except BufferError:
            pass  # a view survives somewhere (numba's compiler keeps some): freed at exit
        self.sock.close()


def available() -> str | None:
    """Why live capture cannot run here (None when it can)."""
    if not hasattr(socket, "AF_PACKET"):
        return "live capture needs Linux (AF_PACKET)"
    if os.geteuid() != 0:
        return "live capture needs root (or CAP_NET_RAW)"
    return None
