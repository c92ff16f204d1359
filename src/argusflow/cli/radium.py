"""radium: the Argus record multiplexor (man radium, 3.0.8), for a thousand clients.

    radium [-S HOST[:PORT]|argus://HOST[:PORT] ...] [-r FILE ...] [-P PORT] [-B ADDR[,ADDR]]
           [-w FILE [FILTER]] ... [-e SRCID] [-d] [-f radium.conf] [-X] [- FILTER]
           [--allow NET[,NET]] [--pidfile PATH] [--max-clients N]
           [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--tls-ca PEM]

Pipeline: stream sources (reconnected with backoff) and Argus files -> input filter ->
client re-encoding (records.writer, radium mode) -> the record server (`-P`) and `-w` files,
each with its own filter.  Upstream START MARs are replaced by radium's own; upstream
STATUS/STOP MARs pass through; radium adds its own STATUS MARs every
RADIUM_MAR_STATUS_INTERVAL seconds and a STOP MAR when it stops.

Signals: SIGTERM/SIGINT send the STOP MAR to clients and files and exit; SIGHUP reopens the
output files (logrotate).  Configuration variables (radium.conf, `-f`): RADIUM_MONITOR_ID,
RADIUM_ACCESS_PORT, RADIUM_BIND_IP, RADIUM_ARGUS_SERVER, RADIUM_OUTPUT_FILE, RADIUM_FILTER,
RADIUM_DAEMON, RADIUM_MAR_STATUS_INTERVAL, and our RADIUM_SYSLOG, RADIUM_ACCESS_ALLOW, RADIUM_MAX_CLIENTS,
RADIUM_CLIENT_BACKLOG (bytes queued per client, at least 2 MiB), RADIUM_PID_FILE,
RADIUM_START_CLIENTS (with -r and -P: wait for that many started clients before reading the
files, default 1).

TLS (our extension; Argus 3.0.8 speaks plain TCP, which stays the default): `--tls-cert/--tls-key`
(RADIUM_TLS_CERT/KEY) serve TLS, `--tls-client-ca` (RADIUM_TLS_CLIENT_CA) requires client
certificates signed by it; `-S argus+tls://host:port` sources are verified against `--tls-ca`
(RADIUM_TLS_CA, else the system CAs) and are shown our certificate when one is given.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import time
from dataclasses import dataclass, field

import polars as pl

from argusflow.cli import daemon
from argusflow.cli.options import Extension, parse_argv, take_extensions
from argusflow.cli.options import split_long_options as options_split_long
from argusflow.cli.rarc import is_yes, load_rarc
from argusflow.cli.runner import EXIT_MATCHED, entry
from argusflow.errors import ArgusflowError, CorruptInput, NetworkError, UsageError
from argusflow.records import mar as marlib
from argusflow.records.codec import RecordReader
from argusflow.records.output import ArgusOutput
from argusflow.records.schema import RTYPE_MAR
from argusflow.records.source import iter_batches
from argusflow.records.writer import encode_batch
from argusflow.stream.client import Source, parse_source, stream_records, tls_client_context
from argusflow.stream.server import RecordServer, parse_networks, tls_server_context

log = logging.getLogger("radium")

DEFAULT_FILES = ("/etc/radium.conf",)
LONG_OPTIONS = {"--allow": "RADIUM_ACCESS_ALLOW", "--pidfile": "RADIUM_PID_FILE",
                "--max-clients": "RADIUM_MAX_CLIENTS", "--tls-cert": "RADIUM_TLS_CERT",
                "--tls-key": "RADIUM_TLS_KEY", "--tls-client-ca": "RADIUM_TLS_CLIENT_CA",
                "--tls-ca": "RADIUM_TLS_CA"}
FILE_CHUNK = 1 << 20  # -r files are fed in slices so clients can keep up (decoding costs per slice)
MIN_BACKLOG = 2 * FILE_CHUNK
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 30.0


@dataclass
class Output:
    path: str
    filter_text: str | None
    sink: ArgusOutput
    filter: object | None = None


@dataclass
class Settings:
    sources: list[Source] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    port: int | None = None
    binds: list[str] = field(default_factory=list)
    outputs: list[tuple[str, str | None]] = field(default_factory=list)
    filter_text: str | None = None
    srcid: str | None = None
    daemon: bool = False
    syslog: bool = False
    allow: str | None = None
    pidfile: str | None = None
    max_clients: int = 4096
    backlog: int = 8 << 20
    mar_interval: float = 60.0
    start_clients: int = 1
    debug: bool = False
    tls: dict[str, str] = field(default_factory=dict)


def split_long_options(argv: list[str], options: dict[str, str] = LONG_OPTIONS,
                       ) -> tuple[list[str], dict[str, str]]:
    """radium's long options (see options.split_long_options)."""
    return options_split_long(argv, options)


def split_outputs(argv: list[str]) -> tuple[list[str], list[tuple[str, str | None]]]:
    """`-w FILE [FILTER]` pairs (the filter is one shell word), taken out before the parser."""
    rest, taken = take_extensions(argv, [Extension("-w", glued="any", trailing=True)])
    return rest, [(t.value or "", t.trailing) for t in taken]


def number(value: str, what: str, kind: type = int) -> int | float:
    try:
        return kind(value)
    except ValueError:
        raise UsageError(f"{what}: expected a number, found '{value}'") from None


def settings_from_argv(argv: list[str]) -> Settings:
    argv, long_values = split_long_options(argv)
    argv, outputs = split_outputs(argv)
    args = parse_argv(argv, "radium", one_value={"f"})
    skip = args.flag("X") > 0
    conf = load_rarc([], skip_defaults=True) if skip else {}
    if not skip:
        from pathlib import Path

        from argusflow.cli.rarc import parse_rarc
        for path in DEFAULT_FILES:
            if Path(path).is_file():
                conf.update(parse_rarc(Path(path).read_text(errors="replace")))
    conf.update(load_rarc(args.all("f") + args.all("F"), skip_defaults=True))
    conf.update(long_values)
    s = Settings()
    servers = args.all("S") or ([conf["RADIUM_ARGUS_SERVER"]] if conf.get("RADIUM_ARGUS_SERVER")
                                else [])
    s.sources = [parse_source(x) for x in servers]
    s.files = args.all("r")
    port = args.value("P") or conf.get("RADIUM_ACCESS_PORT")
    s.port = int(number(port, "-P")) if port else None
    if s.port is not None and not 0 <= s.port <= 65535:  # the socket layer would wrap it silently
        raise UsageError(f"-P {port}: port out of range")
    if s.port == 0:
        s.port = None
    bind = args.value("B") or conf.get("RADIUM_BIND_IP")
    s.binds = [b for b in (bind or "").replace(",", " ").split() if b]
    s.outputs = outputs or ([(conf["RADIUM_OUTPUT_FILE"], None)]
                            if conf.get("RADIUM_OUTPUT_FILE") else [])
    s.filter_text = args.filter or conf.get("RADIUM_FILTER") or None
    s.srcid = args.value("e") or conf.get("RADIUM_MONITOR_ID") or None
    s.daemon = bool(args.flag("d")) or is_yes(conf.get("RADIUM_DAEMON"))
    s.syslog = is_yes(conf.get("RADIUM_SYSLOG"))
    s.allow = conf.get("RADIUM_ACCESS_ALLOW") or None
    s.pidfile = conf.get("RADIUM_PID_FILE") or None
    for key, attr, kind in (("RADIUM_MAX_CLIENTS", "max_clients", int),
                            ("RADIUM_CLIENT_BACKLOG", "backlog", int),
                            ("RADIUM_MAR_STATUS_INTERVAL", "mar_interval", float),
                            ("RADIUM_START_CLIENTS", "start_clients", int)):
        if conf.get(key):
            setattr(s, attr, number(conf[key], key, kind))
    s.debug = args.given("D")
    s.tls = {k: v for k, v in conf.items() if k.startswith("RADIUM_TLS_") and v}
    if not s.sources and not s.files:
        raise UsageError("no input: give -S HOST[:PORT] ... or -r FILE ...")
    if s.port is None and not s.outputs:
        raise UsageError("no output: give -P PORT and/or -w FILE")
    return s


class Radium:
    def __init__(self, s: Settings) -> None:
        self.s = s
        self.srcid = marlib.SourceId.parse(s.srcid)
        self.started_us = now_us()
        self.last_mar_us = self.started_us
        self.last_seq = 0
        self.records = 0
        self.records_period = 0
        self.failed_batches = 0
        self.input_filter = compile_or_none(s.filter_text)
        self.outputs = [Output(path, f, ArgusOutput(path, synthesise_agr=False), compile_or_none(f))
                        for path, f in s.outputs]
        self.server: RecordServer | None = None
        self.stopping: asyncio.Event | None = None

    # -- MARs

    def start_mar(self) -> bytes:
        return marlib.start_mar(self.srcid, startime_us=self.started_us, now_us=now_us(),
                                seq=self.last_seq, report_interval=0, mar_interval=0)

    def counters(self) -> marlib.MarCounters:
        clients = self.server.fanout.started if self.server else 0
        return marlib.MarCounters(records=self.records_period, clients=clients)

    def status_mar(self) -> bytes:
        now = now_us()
        mar = marlib.status_mar(self.srcid, startime_us=self.last_mar_us, now_us=now,
                                counters=self.counters(), seq=self.last_seq, report_interval=0,
                                mar_interval=int(self.s.mar_interval))
        self.last_mar_us, self.records_period = now, 0
        return mar

    def stop_mar(self) -> bytes:
        return marlib.stop_mar(self.srcid, startime_us=self.last_mar_us, now_us=now_us(),
                               counters=self.counters(), seq=self.last_seq, report_interval=0,
                               mar_interval=int(self.s.mar_interval))

    # -- the pipeline

    def ingest(self, batch: pl.DataFrame) -> None:
        """Records from any source; a batch we cannot relay is logged, never fatal."""
        try:
            self._ingest(batch)
        except Exception as err:  # noqa: BLE001 - one bad batch must not stop a daemon
            self.failed_batches += 1
            log.error("dropped a batch of %d records: %s: %s", batch.height,
                      type(err).__name__, err, exc_info=self.s.debug)

    def _ingest(self, batch: pl.DataFrame) -> None:
        """Drop upstream START MARs, filter, re-encode, distribute."""
        upstream_start = (batch["rtype"] == RTYPE_MAR) & ((batch["cause"] & 0xF0) == 0x10)
        if upstream_start.any():
            batch = batch.filter(~upstream_start)
        if self.input_filter is not None and batch.height:
            batch = batch.filter((batch["rtype"] == RTYPE_MAR) | self.input_filter.mask(batch))
        if not batch.height:
            return
        flows = batch.filter(batch["rtype"] != RTYPE_MAR)
        if flows.height:
            self.last_seq = int(flows["seq"][-1])
        self.records += batch.height
        self.records_period += batch.height
        self.distribute(batch)

    def distribute(self, batch: pl.DataFrame) -> None:
        if self.server is not None and self.server.fanout.started:
            self.server.publish(batch, encode_batch(batch, synthesise_agr=False))
        for out in self.outputs:
            chosen = batch if out.filter is None else batch.filter(
                (batch["rtype"] == RTYPE_MAR) | out.filter.mask(batch))
            try:
                out.sink.write(chosen, self.start_mar())
            except ArgusflowError as err:
                log.error("%s", err)

    def own_mar(self, mar: bytes) -> None:
        reader = RecordReader("radium", require_start_mar=False)
        self.distribute(reader.feed(mar))

    def reopen_outputs(self) -> None:
        log.info("SIGHUP: reopening %d output files", len(self.outputs))
        for out in self.outputs:
            try:
                out.sink.close()
            except ArgusflowError as err:
                log.error("%s", err)

    def server_tls(self) -> ssl.SSLContext | None:
        tls = self.s.tls
        if not tls.get("RADIUM_TLS_CERT"):
            return None
        return tls_server_context(tls["RADIUM_TLS_CERT"], tls.get("RADIUM_TLS_KEY"),
                                  tls.get("RADIUM_TLS_CLIENT_CA"))

    def source_tls(self) -> ssl.SSLContext | None:
        tls = self.s.tls
        if not any(source.tls for source in self.s.sources):
            return None
        return tls_client_context(tls.get("RADIUM_TLS_CA"), tls.get("RADIUM_TLS_CERT"),
                                  tls.get("RADIUM_TLS_KEY"))

    # -- tasks

    async def follow(self, source: Source) -> None:
        """One upstream server, reconnected with exponential backoff for as long as we run."""
        remote = f"man or ({self.s.filter_text})" if self.s.filter_text else None
        tls = self.source_tls()
        backoff = BACKOFF_FIRST
        while True:
            began = time.monotonic()
            try:
                why = await stream_records(source, self.ingest, filter_text=remote, tls=tls,
                                           on_hello=lambda _m: log.info("%s: connected", source))
            except (NetworkError, CorruptInput) as err:
                why = str(err).removeprefix(f"{source}: ")
            if time.monotonic() - began > 10 * BACKOFF_FIRST:
                backoff = BACKOFF_FIRST  # it had been up for a while: retry quickly
            log.warning("%s: %s; reconnecting in %.2f s", source, why, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def read_files(self) -> None:
        if self.server is not None:
            while self.server.fanout.started < self.s.start_clients:
                await asyncio.sleep(0.02)
        for path in self.s.files:
            try:
                for batch in iter_batches(path, chunk_bytes=FILE_CHUNK):
                    self.ingest(batch)
                    await self.drain()
            except (CorruptInput, ArgusflowError) as err:
                log.error("%s", err)
            log.info("%s: done", path)
        if self.server is not None:
            await self.server.drained()  # a file's last records must reach the clients

    async def drain(self, wait_s: float = 1.0) -> None:
        """A file can wait for readers: give slow clients a moment before the next slice."""
        await asyncio.sleep(0)
        if self.server is None:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self.server.waiting_bytes() > FILE_CHUNK:
            await asyncio.sleep(0.002)

    async def status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.s.mar_interval)
            try:
                self.own_mar(self.status_mar())
            except Exception as err:  # noqa: BLE001 - keep the daemon up, say why
                log.error("status record: %s: %s", type(err).__name__, err)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reopen_outputs)
        if self.s.port is not None:
            allow = parse_networks(self.s.allow) if self.s.allow else None
            # One batch (a file slice, one upstream read) must fit in a client's queue.
            backlog = max(self.s.backlog, MIN_BACKLOG)
            self.server = RecordServer(self.start_mar, allow=allow, max_clients=self.s.max_clients,
                                       max_backlog=backlog, tls=self.server_tls())
            await self.server.listen(self.s.port, self.s.binds or None)
            log.info("listening on %s port %d", ",".join(self.s.binds) or "*", self.s.port)
        tasks = [asyncio.create_task(self.follow(src)) for src in self.s.sources]
        tasks.append(asyncio.create_task(self.status_loop()))
        files = asyncio.create_task(self.read_files()) if self.s.files else None
        waits = [asyncio.create_task(self.stopping.wait())]
        if files is not None and not self.s.sources:
            waits.append(files)  # only files: stop when they are done
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in [*tasks, *waits, *([files] if files else [])]:
            task.cancel()
        await self.shutdown()
        return EXIT_MATCHED

    async def shutdown(self) -> None:
        stop = self.stop_mar()
        if self.server is not None:
            await self.server.stop(stop)
        reader = RecordReader("radium", require_start_mar=False)
        batch = reader.feed(stop)
        for out in self.outputs:
            try:
                if out.sink.records_written:
                    out.sink.write(batch, self.start_mar())
                out.sink.close()
            except ArgusflowError as err:
                log.error("%s", err)
        log.info("stopped: %d records relayed", self.records)


def compile_or_none(text: str | None) -> object | None:
    if not text:
        return None
    from argusflow.filter import compile_filter

    return compile_filter(text)


def now_us() -> int:
    return int(time.time() * 1_000_000)


def default_pidfile(s: Settings) -> str:
    return daemon.default_pidfile(f"radium.{s.port or 0}.pid")


def radium(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return EXIT_MATCHED
    s = settings_from_argv(argv)
    pidfile = s.pidfile or (default_pidfile(s) if s.daemon else None)
    pidfile = os.path.abspath(pidfile) if pidfile else None
    if s.daemon:
        # A daemon runs in /: relative paths given on the command line must keep their meaning.
        s.files = [os.path.abspath(f) for f in s.files]
        s.outputs = [(f if f == "-" else os.path.abspath(f), flt) for f, flt in s.outputs]
        daemon.daemonize(pidfile or default_pidfile(s))
    elif pidfile:
        daemon.write_pidfile(pidfile)
    daemon.setup_logging("radium", s.daemon, s.debug, s.syslog)
    daemon.raise_fd_limit()
    try:
        return asyncio.run(Radium(s).run())
    finally:
        daemon.remove_pidfile(pidfile)


def main() -> None:
    entry("radium", radium)
