"""argus -i: the live probe loop (asyncio, one thread).

    interfaces (capture/live.py rings) -> decode -> one FlowProbe per interface
        -> the record server (-P, stream/server.py) and the -w file (flows/probe_writer.py)

The event loop wakes when a ring hands over a block, reads every ready block as one batch and
feeds it through the flow engine.  A wall-clock tick (TICK_S) moves the probes' clocks on when
the link is quiet, so status records and idle timeouts come out on time, and sends a STATUS
MAR every -M seconds with the period's packets, bytes, records and kernel drops.

Several `-i` (the real argus 3.0.8 merges them into one flow table): each interface gets its
own flow table and its own source id, so a flow seen on two interfaces is two records that say
where they were seen.  The id is the one given as `-i IFACE/SRCID` (man argus), else `-e`,
else, with more than one interface, the interface's index (an integer id).

Signals: SIGTERM/SIGINT report every active flow, send the STOP MAR, close files and sockets;
SIGHUP reopens the -w file (logrotate).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import polars as pl

from argusflow.capture import bpf
from argusflow.capture.batch import PacketBatch
from argusflow.capture.live import BLOCK_MS, BLOCK_SIZE, LiveCapture, compile_walk
from argusflow.decode import decode_batch
from argusflow.errors import ArgusflowError, UsageError
from argusflow.filter.compile_packets import CaptureFilter, compile_capture_filter
from argusflow.flows.probe import FlowProbe, ProbeSettings
from argusflow.flows.probe_writer import ProbeOutput, encode_probe_batch
from argusflow.records import mar as marlib
from argusflow.records.codec import RecordReader
from argusflow.stream.server import RecordServer, parse_networks

log = logging.getLogger("argus")

TICK_S = 0.25
MAX_BLOCKS_PER_WAKE = 8  # batches read per wake-up before the loop serves its clients


class Sink(Protocol):
    def write(self, batch: pl.DataFrame, start: bytes | None) -> None: ...
    def close(self) -> None: ...


@dataclass
class LiveOptions:
    interfaces: list[str]
    srcid: marlib.SourceId
    snaplen: int = 96
    promisc: bool = True
    ring_bytes: int = 32 << 20
    port: int | None = None
    binds: list[str] = field(default_factory=list)
    allow: str | None = None
    mar_interval: int = 60
    filter_text: str | None = None
    tls: ssl.SSLContext | None = None


def now_us() -> int:
    return time.time_ns() // 1000


def interface_ids(words: list[str], default: marlib.SourceId) -> list[tuple[str, marlib.SourceId]]:
    """`-i IFACE[/SRCID]` words -> (interface, source id) (see the module docstring)."""
    out = []
    for word in words:
        name, _, given = word.partition("/")
        given = given.strip('"')
        if given:
            sid = marlib.SourceId.parse(given)
        elif len(words) > 1 and default.status_bit == 0:
            try:
                sid = marlib.SourceId.parse(socket.if_nametoindex(name))
            except OSError:
                raise UsageError(f"-i {name}: no such interface") from None
        else:
            sid = default
        out.append((name, sid))
    return out


def capture_filter(text: str | None) -> CaptureFilter | None:
    """The capture filter (the words after `-`) in user space (filter/compile_packets.py),
    only when libpcap cannot compile it to kernel BPF (capture/bpf.py, the normal way: the
    real argus hands it to libpcap too)."""
    if not text or not text.strip() or bpf.available():
        return None
    return compile_capture_filter(text)


# One TCP SYN (Ethernet, IPv4): enough to make numba compile the decoder and the flow kernel.
WARM_UP_FRAME = bytes.fromhex(
    "02000000000102000000000208004500002800010000400600000a0000010a000002"
    "c0000050000000010000000050022000000000000000000000000000")


def warm_up(settings: ProbeSettings) -> None:
    """Compile (or load from numba's cache) the hot code before capture starts, so the first
    packets and a SIGTERM are not kept waiting behind the compiler."""
    compile_walk()
    batch = PacketBatch.from_packets([WARM_UP_FRAME], ts_us=[1_000_000])
    probe = FlowProbe(settings)
    probe.feed(decode_batch(batch), batch)
    probe.advance(3_000_000)
    probe.finish()


def check_interfaces(opts: LiveOptions) -> None:
    """Open and close every ring once, so that what would stop the probe (no such interface,
    not root, a bad filter) is said on the terminal before a daemon detaches."""
    for k, (name, _) in enumerate(interface_ids(opts.interfaces, opts.srcid)):
        LiveCapture(name, snaplen=opts.snaplen, promisc=False, ring_bytes=BLOCK_SIZE * 2,
                    position=k, filter_text=opts.filter_text if bpf.available() else None).close()


class LiveProbe:
    def __init__(self, settings: ProbeSettings, opts: LiveOptions, sink: Sink | None) -> None:
        self.opts = opts
        self.sink = sink
        self.settings = settings
        self.filter = capture_filter(opts.filter_text)
        ids = interface_ids(opts.interfaces, opts.srcid)
        # Compile before the rings open: packets must not wait for the compiler.  (A daemon
        # builds its LiveProbe after the fork: polars' thread pool does not survive one.)
        warm_up(settings)
        self.caps: list[LiveCapture] = []
        self.probes: list[FlowProbe] = []
        try:
            for k, (name, sid) in enumerate(ids):
                kernel_filter = opts.filter_text if self.filter is None else None
                self.caps.append(LiveCapture(name, snaplen=opts.snaplen, promisc=opts.promisc,
                                             ring_bytes=opts.ring_bytes, position=k,
                                             filter_text=kernel_filter))
                self.probes.append(FlowProbe(replace(settings, srcid_type=sid.transport_qual,
                                                     srcid=sid.transport_value)))
        except ArgusflowError:
            self.close_captures()
            raise
        self.started_us = self.last_mar_us = now_us()
        self.header = marlib.start_mar(opts.srcid, startime_us=self.started_us,
                                       now_us=self.started_us,
                                       report_interval=int(settings.status_interval),
                                       mar_interval=opts.mar_interval)
        self.server: RecordServer | None = None
        self.stopping: asyncio.Event | None = None
        self.period = np.zeros(3, dtype=np.int64)  # packets, bytes, records since the last MAR
        self.dropped_reported = 0
        self.lost: set[int] = set()  # interfaces that went away
        self.failed_packets = 0  # in batches the engine could not take: reported as drops
        self.records = 0

    # -- MARs

    def start_mar(self) -> bytes:
        return marlib.start_mar(self.opts.srcid, startime_us=self.started_us, now_us=now_us(),
                                report_interval=int(self.settings.status_interval),
                                mar_interval=self.opts.mar_interval)

    def period_counters(self) -> marlib.MarCounters:
        dropped = sum(cap.statistics()[1] for cap in self.caps) + self.failed_packets
        pkts, nbytes, records = (int(v) for v in self.period)
        self.period[:] = 0
        counters = marlib.MarCounters(
            pkts=pkts, bytes=nbytes, records=records, dropped=dropped - self.dropped_reported,
            flows=sum(p.active_flows for p in self.probes),
            clients=self.clients())
        self.dropped_reported = dropped
        return counters

    def clients(self) -> int:
        """As the real argus counts them: its -w file is a client too."""
        started = self.server.fanout.started if self.server else 0
        return started + isinstance(self.sink, ProbeOutput)

    def later_mar(self, make) -> bytes:  # noqa: ANN001 - marlib.status_mar or stop_mar
        now = now_us()
        mar = make(self.opts.srcid, startime_us=self.last_mar_us, now_us=now,
                   counters=self.period_counters(), seq=sum(p.flows_reported for p in self.probes),
                   report_interval=int(self.settings.status_interval),
                   mar_interval=self.opts.mar_interval)
        self.last_mar_us = now
        return mar

    # -- the pipeline

    def emit(self, records: pl.DataFrame, flows: bool = True) -> None:
        if records.height == 0:
            return
        if flows:  # a MAR does not count itself
            self.records += records.height
            self.period[2] += records.height
        if self.sink is not None:
            try:
                self.sink.write(records, self.header)
            except ArgusflowError as err:
                log.error("%s", err)
        if self.server is not None and self.server.fanout.started:
            self.server.publish(records, encode_probe_batch(records))

    def emit_mar(self, raw: bytes) -> None:
        self.emit(RecordReader("argus", require_start_mar=False).feed(raw), flows=False)

    def feed(self, k: int, batch: PacketBatch) -> None:
        decoded = decode_batch(batch)
        if self.filter is not None:  # packets it rejects are never seen
            keep = np.flatnonzero(self.filter.mask(decoded))
            decoded, batch = decoded.take(keep), batch.take(keep)
        self.period[0] += len(batch)
        self.period[1] += int(batch.wirelen.sum(dtype=np.int64))
        self.emit(self.probes[k].feed(decoded, batch))

    def on_readable(self, k: int) -> None:
        """The loop's callback: the ring has blocks, or the socket reports an error."""
        if self.read_ready(k):
            return
        cap = self.caps[k]
        problem = cap.pending_error()
        if problem is None:
            return
        log.warning("%s: %s", cap.ifname, problem)
        if cap.gone():
            log.error("%s: the interface went away; no longer capturing on it", cap.ifname)
            asyncio.get_running_loop().remove_reader(cap.fileno())
            self.lost.add(k)
            if len(self.lost) == len(self.caps) and self.stopping is not None:
                self.stopping.set()

    def read_ready(self, k: int) -> int:
        """What interface k's ring holds now; the number of batches read."""
        if k in self.lost:
            return 0
        for done in range(MAX_BLOCKS_PER_WAKE):
            batch = self.caps[k].read()
            if batch is None:
                return done
            try:
                self.feed(k, batch)
            except Exception as err:  # noqa: BLE001 - a bad batch must not stop a daemon
                self.failed_packets += len(batch)  # nothing lost silently: counted as drops
                log.error("%s: dropped a batch of %d packets: %s: %s", self.caps[k].ifname,
                          len(batch), type(err).__name__, err)
        return MAX_BLOCKS_PER_WAKE

    def tick(self) -> None:
        for k in range(len(self.caps)):
            self.read_ready(k)
        now = now_us()
        for probe in self.probes:
            self.emit(probe.advance(now))
        if self.opts.mar_interval > 0 and now - self.last_mar_us >= self.opts.mar_interval * 1_000_000:
            self.emit_mar(self.later_mar(marlib.status_mar))

    # -- lifetime

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reopen)
        if self.opts.port:
            allow = parse_networks(self.opts.allow) if self.opts.allow else None
            self.server = RecordServer(self.start_mar, allow=allow, tls=self.opts.tls)
            await self.server.listen(self.opts.port, self.opts.binds or None)
            log.info("listening on %s port %d", ",".join(self.opts.binds) or "*", self.opts.port)
        for k, cap in enumerate(self.caps):
            loop.add_reader(cap.fileno(), self.on_readable, k)
            log.info("capturing on %s (snaplen %d%s)", cap.ifname, cap.snaplen,
                     "" if self.opts.promisc else ", not promiscuous")
        ticker = asyncio.create_task(self.tick_loop())
        await self.stopping.wait()
        ticker.cancel()
        for k, cap in enumerate(self.caps):
            if k not in self.lost:
                loop.remove_reader(cap.fileno())
        await self.shutdown()

    async def tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick()
            except Exception as err:  # noqa: BLE001 - keep the daemon up, say why
                log.error("tick: %s: %s", type(err).__name__, err)

    def reopen(self) -> None:
        log.info("SIGHUP: reopening the output file")
        if self.sink is not None:
            try:
                self.sink.close()
            except ArgusflowError as err:
                log.error("%s", err)

    async def shutdown(self) -> None:
        """Everything still in the rings, every active flow, then the STOP MAR."""
        # The block the kernel is filling becomes readable only when its timeout retires it.
        await asyncio.sleep(2 * BLOCK_MS / 1000)
        for k in range(len(self.caps)):
            while self.read_ready(k) == MAX_BLOCKS_PER_WAKE:
                pass
        for probe in self.probes:
            self.emit(probe.finish())
        stop = self.later_mar(marlib.stop_mar)
        if self.sink is not None:
            self.sink.write(RecordReader("argus", require_start_mar=False).feed(stop), self.header)
            self.sink.close()
        if self.server is not None:
            await self.server.stop(stop)
        received = sum(p.packets for p in self.probes)
        log.info("stopped: %d packets, %d records, %d dropped by the kernel", received,
                 self.records, self.dropped_reported)
        self.close_captures()

    def close_captures(self) -> None:
        for cap in self.caps:
            cap.close()
