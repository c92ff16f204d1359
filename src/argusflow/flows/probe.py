"""The flow engine: decoded packet batches in, Argus flow records out (a record frame per batch).

    probe = FlowProbe(settings)
    for packets, decoded in decode_capture(reader):
        out = probe.feed(decoded)            # records reported while reading this batch
    out = probe.finish()                     # the flows still open at the end of the input

Per batch: keys (keys.py, numpy), the packet matrix, then one compiled pass (kernel.py) that
keeps the flow table across batches and reports records; records.py turns them into a batch: a
polars frame, or (`frames=False`, the file sink) numpy columns (records.writer.Columns).
Memory is bounded by the number of active flows (timed-out flows leave the table) plus one batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from argusflow.capture.batch import PacketBatch
from argusflow.capture.linktype import C_HDLC, LINUX_SLL, LOOP, NULL, PPP
from argusflow.decode.columns import DecodedBatch
from argusflow.flows import kernel
from argusflow.flows.fastkeys import packet_keys
from argusflow.flows.fields import N_FLOW_FIELDS, N_PACKET_FIELDS, PACKET_FIELDS, P
from argusflow.flows.keys import P_TCP, P_UDP
from argusflow.flows.records import Config, build_columns, build_records

if TYPE_CHECKING:
    import polars as pl

    from argusflow.records.writer import Columns

    Records = pl.DataFrame | Columns

P_LEN = P["len"]
SECOND = 1_000_000
FRAG_CACHE = 1 << 14  # first fragments remembered (direct-mapped by fragment hash)
# Records a file probe holds back before building a frame (FlowProbe `hold`): per-frame costs
# are amortised by then, and a frame of 8k records (~20 MB while encoded) keeps memory flat.
FILE_HOLD = 8192
# argus 3.0.8 defaults (features.md §1.4): IP, TCP, ICMP, IGMP, FRAG, ARP, OTHER idle timeouts.
DEFAULT_TIMEOUTS = {"IP": 30, "TCP": 60, "ICMP": 5, "IGMP": 30, "FRAG": 5, "ARP": 5, "OTHER": 30}
TIMEOUT_ORDER = ("IP", "TCP", "ICMP", "IGMP", "FRAG", "ARP", "OTHER")


@dataclass
class ProbeSettings:
    status_interval: float = 5.0  # ARGUS_FLOW_STATUS_INTERVAL; -X keeps argus's built-in 5 s
    timeouts: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    appbytes: bool = False
    psize: bool = False
    macs: bool = False
    jitter: bool = False
    user_data: int = 0
    srcid_type: int = 0
    srcid: int = 0


class FlowProbe:
    def __init__(self, settings: ProbeSettings | None = None, capacity: int = 1 << 14,
                 hold: int = 0, frames: bool = True) -> None:
        """`hold`: records kept back until that many are due (finish and advance return them
        all).  Building and encoding a frame costs ~15 ms whatever its size, so a file probe
        reading small batches asks for fewer, larger frames; live capture reports at once.
        `frames`: records come as polars frames; False: as numpy columns (records.writer
        Columns), which the file sink encodes without importing polars."""
        self.settings = s = settings or ProbeSettings()
        self.cfg = Config(s.appbytes, s.psize, s.macs, s.srcid_type, s.srcid)
        self.interval = max(1, int(round(s.status_interval * SECOND)))
        self.timeouts = np.array([s.timeouts.get(k, DEFAULT_TIMEOUTS[k]) * SECOND
                                  for k in TIMEOUT_ORDER], dtype=np.int64)
        self.F = np.zeros((N_FLOW_FIELDS, 0), dtype=np.int64, order="F")
        self.K = np.zeros((6, 0), dtype=np.uint64, order="F")
        self.H = np.zeros(0, dtype=np.uint64)
        self.FREE = np.zeros(0, dtype=np.int64)
        self.nfree = 0
        self.SLOTS = np.zeros(4, dtype=np.int64)
        self._grow(capacity)
        self.counters = np.zeros(2, dtype=np.int64)  # last flow seq, packets not keyed
        self.clock = np.zeros(2, dtype=np.int64)
        self.FRAGH = np.zeros(FRAG_CACHE, dtype=np.uint64)
        self.FRAGF = np.full((2, FRAG_CACHE), -1, dtype=np.int64)
        self.packets = 0
        self.bytes = 0
        self.first_ts = 0
        self.last_ts = 0
        self.hold = hold
        self._held = 0  # records in _OUT/_OK not yet returned
        self._OUT, self._OK = self._out(0)
        self._build = build_records if frames else build_columns
        self._none = self._build(*self._out(0), self.cfg)

    # -- public ---------------------------------------------------------------------------
    def feed(self, d: DecodedBatch, packets: PacketBatch | None = None) -> Records:
        """Run one decoded batch through the flow table; the records it completed.  `packets`
        (the batch the decoded one came from) lets payload heuristics (RTP) look at bytes."""
        n = len(d)
        if n == 0:
            return self._none
        self.packets += n
        self.bytes += int(d.wirelen.sum(dtype=np.int64))
        lo, hi = int(d.ts_us.min()), int(d.ts_us.max())
        self.first_ts = lo if self.first_ts == 0 else min(self.first_ts, lo)
        self.last_ts = max(self.last_ts, hi)
        keys = packet_keys(d)
        P = packet_matrix(d, keys, None if packets is None else packets.data,
                          None if packets is None else packets.offset)
        if packets is not None:
            P[P_LEN] -= link_header_not_counted(packets.linktype)
        K = np.stack([keys.a_hi, keys.a_lo, keys.b_hi, keys.b_lo, keys.w4, keys.w5])
        # Records are far fewer than packets; the kernel asks for more room when needed.
        OUT, OK = self._room(n // 8 + 1024)
        start, n_out = 0, self._held
        while True:
            start, self.nfree, n_out, why = kernel.run(
                P, K, keys.hash, keys.fhash, keys.fkey, keys.quoted, keys.qhash, start, self.F,
                self.K, self.H, self.SLOTS, self.FREE,
                self.nfree, OUT, OK, n_out, self.counters, self.interval, self.timeouts, self.clock,
                self.FRAGH, self.FRAGF)
            kernel.rehash(self.H, self.F, self.SLOTS)
            if why == kernel.DONE:
                break
            if why == kernel.NEED_FLOWS:
                self._grow(self.F.shape[1] * 2)
            else:
                OUT, OK = self._more_out(OUT, OK)
        return self._report(OUT, OK, n_out, n_out >= self.hold)

    def advance(self, now_us: int) -> Records:
        """Live capture: move the clock to wall-clock `now_us` without a packet, reporting the
        status records and idle timeouts that fall due (argus's timer does this when the link
        is quiet).  At most one table scan per second, like a packet's tick in the kernel."""
        if self.clock[0] == 0 or now_us < self.clock[0]:
            return self._report(self._OUT, self._OK, self._held, True)
        self.clock[1] = max(int(self.clock[1]), now_us)
        OUT, OK = self._room(self.F.shape[1] + 1)
        self.nfree, n_out = kernel.scan(self.F, self.K, self.H, self.SLOTS, self.FREE,
                                        self.nfree, now_us, self.interval, OUT, OK, self._held,
                                        self.counters, False)
        kernel.rehash(self.H, self.F, self.SLOTS)
        self.clock[0] = (now_us // SECOND + 1) * SECOND
        return self._report(OUT, OK, n_out, True)

    def finish(self) -> Records:
        """Report every flow still open (end of input: causes as usual, spec §3)."""
        return next(self.finish_chunks(self.F.shape[1] + 1), self._none)

    def finish_chunks(self, size: int = FILE_HOLD) -> Iterator[Records]:
        """finish() as frames of about `size` records (held ones first), in the same order:
        one frame of every open flow would be the probe's peak memory (40k flows at the end
        of the 5M-packet capture: ~50 MB)."""
        while True:
            OUT, OK = self._room(size)
            # The scan stops when OUT is full; the flows it did not reach stay for the next.
            self.nfree, n_out = kernel.scan(self.F, self.K, self.H, self.SLOTS, self.FREE,
                                            self.nfree, self.last_ts, self.interval, OUT, OK,
                                            self._held, self.counters, True)
            kernel.rehash(self.H, self.F, self.SLOTS)
            done = n_out < OUT.shape[1]
            frame = self._report(OUT, OK, n_out, True)
            if frame.height:
                yield frame
            if done:
                return

    @property
    def flows_reported(self) -> int:
        return int(self.counters[0])

    @property
    def packets_not_keyed(self) -> int:
        """Packets too damaged (or too foreign) to key: in no record, so counted as drops."""
        return int(self.counters[1])

    @property
    def active_flows(self) -> int:
        return int(self.F.shape[1] - self.nfree)

    # -- storage --------------------------------------------------------------------------
    def _grow(self, capacity: int) -> None:
        old = self.F.shape[1]
        if capacity <= old:
            return
        # Indexed F[field, flow] but stored flow by flow (Fortran order): a packet touches
        # some 40 fields of one flow, which then share a dozen cache lines instead of each
        # taking its own (the kernel ran 2x slower with the table row by row).
        F = np.zeros((N_FLOW_FIELDS, capacity), dtype=np.int64, order="F")
        F[:, :old] = self.F
        K = np.zeros((6, capacity), dtype=np.uint64, order="F")
        K[:, :old] = self.K
        H = np.zeros(capacity, dtype=np.uint64)
        H[:old] = self.H
        FREE = np.zeros(capacity, dtype=np.int64)
        FREE[: self.nfree] = self.FREE[: self.nfree]
        # New indices on the stack top-down, so low indices are used first.
        new = np.arange(capacity - 1, old - 1, -1, dtype=np.int64)
        FREE[self.nfree : self.nfree + len(new)] = new
        self.nfree += len(new)
        self.F, self.K, self.H, self.FREE = F, K, H, FREE
        # The hash table stays at most 1/4 full of flows, leaving room for deleted markers
        # between rehashes (one per batch).
        size = 1 << int(np.ceil(np.log2(capacity * 4 + 1)))
        self.SLOTS = np.zeros(size, dtype=np.int64)
        kernel.rehash(self.H, self.F, self.SLOTS)

    def _out(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        # Uninitialised: the kernel writes every row of each record it reports.
        return np.empty((N_FLOW_FIELDS, n), dtype=np.int64), np.empty((6, n), dtype=np.uint64)

    def _room(self, extra: int) -> tuple[np.ndarray, np.ndarray]:
        """Output arrays holding the held records, with room for `extra` more."""
        if self._OUT.shape[1] >= self._held + extra:
            return self._OUT, self._OK
        # Room for the whole hold at once: held records are copied only when it overflows.
        OUT, OK = self._out(max(self._held + extra, self.hold + extra))
        OUT[:, : self._held] = self._OUT[:, : self._held]
        OK[:, : self._held] = self._OK[:, : self._held]
        return OUT, OK

    def _report(self, OUT: np.ndarray, OK: np.ndarray, n_out: int, now: bool) -> Records:
        """The frame of the n_out records in OUT/OK, or (not `now`) keep them for later."""
        if not now:
            self._OUT, self._OK, self._held = OUT, OK, n_out
            return self._none
        # Fresh arrays for the next records: the frame may share memory with these.
        self._OUT, self._OK = self._out(0)
        self._held = 0
        if n_out == 0:
            return self._none
        return self._build(OUT[:, :n_out], OK[:, :n_out], self.cfg)

    def _more_out(self, OUT: np.ndarray, OK: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        OUT2, OK2 = self._out(OUT.shape[1] * 2 + self.F.shape[1])
        OUT2[:, : OUT.shape[1]] = OUT
        OK2[:, : OK.shape[1]] = OK
        return OUT2, OK2


# Link headers argus leaves out of the byte counts (corpus): it counts Ethernet frames whole,
# but not the Linux cooked (SLL) pseudo header, the PPP / Cisco HDLC header or the 4-byte
# address family of BSD loopback captures.
UNCOUNTED_LINK_BYTES = np.zeros(1 << 16, dtype=np.int64)
UNCOUNTED_LINK_BYTES[[LINUX_SLL, PPP, C_HDLC, 50, NULL, LOOP]] = (16, 4, 4, 4, 4, 4)  # 50: PPP/HDLC


def link_header_not_counted(linktype: np.ndarray) -> np.ndarray:
    return UNCOUNTED_LINK_BYTES[linktype]


def rtp_like(d: DecodedBatch, data: np.ndarray | None, offset: np.ndarray | None) -> np.ndarray:
    """UDP packets between unprivileged ports whose payload starts with an RTP version 2 header
    (argus labels such flows `rtp`; checked on the bench capture: DNS and the other streams
    are not, the RTP streams are)."""
    out = np.zeros(len(d), dtype=np.int64)
    if data is None or offset is None:
        return out
    idx = np.flatnonzero((d.proto == P_UDP) & (d.payload_caplen >= 12) & (d.sport >= 1024)
                         & (d.dport >= 1024) & (d.frag_offset == 0) & (d.ip_version > 0))
    if len(idx):
        first = data[offset[idx] + d.payload_off[idx].astype(np.int64)]
        out[idx] = (first >> 6) == 2
    return out


def packet_matrix(d: DecodedBatch, keys, data: np.ndarray | None = None,  # noqa: ANN001
                  offset: np.ndarray | None = None) -> np.ndarray:
    """The per-packet inputs of the kernel as one int64 matrix (rows: fields.PACKET_FIELDS)."""
    n = len(d)
    P = np.empty((N_PACKET_FIELDS, n), dtype=np.int64)
    transport = (d.proto == P_TCP) | (d.proto == P_UDP)
    values = {
        "ts": d.ts_us, "len": d.wirelen, "kind": keys.kind, "rev": keys.rev, "frag": keys.frag,
        "proto": d.proto, "tflags": d.tcp_flags, "tseq": d.tcp_seq, "tack": d.tcp_ack,
        "twin": d.tcp_win, "topts": d.tcp_opts, "twscale": d.tcp_wscale,
        "plen": np.where(transport, np.maximum(d.payload_len, 0), 0),
        # IPv6: argus 3.0.8 takes the "tos" from the wrong bits of the first header word (§6.13).
        "ttl": d.ttl,
        "tos": np.where(d.ip_version == 6, (d.ip6_flow >> 4) & 0xFF, d.tos),
        "ipid": d.ip_id, "enc": d.encaps, "vlanc": d.vlan_count,
        "vlan": d.vlan_outer, "mplsc": d.mpls_count, "mpls": d.mpls_top, "smac": d.src_mac,
        "dmac": d.dst_mac, "ipopts": d.ip_opts, "mf": d.frag_flags & 1,
        "icmp_err": d.q_ip_version, "ip_ver": d.ip_version, "src_lo": d.src_lo,
        "dst_lo": d.dst_lo, "itype": d.icmp_type, "icode": d.icmp_code, "frev": keys.frev,
        "rtp": rtp_like(d, data, offset), "reply": keys.reply,
    }
    for row, name in enumerate(PACKET_FIELDS):
        P[row] = values[name]
    return P
