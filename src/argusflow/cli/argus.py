"""argus: the probe (man argus, 3.0.8): packets in, Argus flow records out.

    argus -r FILE... [-w FILE|-] [-S secs] [-M secs] [-e srcid] [-A] [-J] [-Z] [-m] [-U bytes]
          [-F conf]... [-X] [-D N]
    argus -i IFACE[/SRCID] [-i IFACE2 ...] [-P PORT] [-B ADDR[,ADDR]] [-w FILE] [-s SNAPLEN]
          [-p] [-d] [-S secs] [-M secs] ...      (live capture: cli/argus_live.py)

Pipeline: capture source (capture/) -> packet decoding (decode/) -> flow engine (flows/) ->
Argus file sink (records/output.py) or the text printer when there is no -w.
Configuration as the real argus: /etc/argus.conf unless -X, then each -F file in order, then the
command-line options.  MAR times are packet times (the real argus stamps wall-clock time there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from argusflow.capture import open_capture
from argusflow.cli.options import Extension, parse_argv, split_long_options, take_extensions
from argusflow.cli.runner import EXIT_MATCHED, entry
from argusflow.decode import decode_capture
from argusflow.errors import UsageError
from argusflow.flows.probe import DEFAULT_TIMEOUTS, FILE_HOLD, FlowProbe, ProbeSettings
from argusflow.flows.probe_writer import ProbeOutput
from argusflow.records.mar import MarCounters, SourceId, start_mar, stop_mar

if TYPE_CHECKING:  # live capture, TLS, polars and the printer are imported only when used
    import ssl

    import polars as pl

    from argusflow.cli.argus_live import LiveOptions
    from argusflow.filter.compile_packets import CaptureFilter

SYSTEM_CONF = "/etc/argus.conf"
# Our extensions for live probes (man argus has none of these); each sets a config variable.
LONG_OPTIONS = {"--allow": "ARGUS_ACCESS_ALLOW", "--pidfile": "ARGUS_PID_FILE",
                "--tls-cert": "ARGUS_TLS_CERT", "--tls-key": "ARGUS_TLS_KEY",
                "--tls-client-ca": "ARGUS_TLS_CLIENT_CA"}
USAGE = """usage: argus -r FILE... [options] [- capture-filter]
  -r FILE ...  read pcap/pcapng captures ('-' is stdin; gzip/bzip2/xz by magic number)
  -i IFACE[/SRCID]  capture live on IFACE (Linux, root; several -i allowed)
  -P PORT      serve records to clients (ra -S, radium)   -B ADDR[,ADDR]  bind addresses
  -s BYTES     snap length (default 96)   -p  not promiscuous   -d  run as a daemon
  --allow NET[,NET]  client networks allowed (ARGUS_ACCESS_ALLOW)   --pidfile PATH
  --tls-cert PEM --tls-key PEM [--tls-client-ca PEM]  serve -P over TLS (our extension)
  -w FILE      write Argus records (appends; '-' is stdout); without -w records are printed
  -S SECS      flow status interval (ARGUS_FLOW_STATUS_INTERVAL, default 5)
  -M SECS      MAR status interval (ARGUS_MAR_STATUS_INTERVAL, default 60)
  -e SRCID     source id: number, IPv4 address or up to 4 characters
  -A -J -Z -m  app bytes, jitter, packet sizes, MAC addresses;  -U N  user data bytes
  -F FILE      argus.conf file (several allowed)   -X  do not read /etc/argus.conf
  -D N         debug: show tracebacks"""


def read_conf(path: str) -> dict[str, str]:
    """VAR=value lines of an argus.conf; '#' starts a comment, quotes are dropped."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        raise UsageError(f"{path}: cannot read configuration: {err.strerror or err}") from None
    conf: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if value.startswith('"'):
            value = value[1:].partition('"')[0]
        else:
            value = value.split("#")[0].strip()
        conf[name.strip()] = value
    return conf


def yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "1", "true", "on")


def number(text: str | None, what: str, default: float) -> float:
    if text is None or text == "":
        return default
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{what}: expected a number, found '{text}'") from None


def settings_from(conf: dict[str, str], args) -> tuple[ProbeSettings, SourceId, int]:  # noqa: ANN001
    s = ProbeSettings()
    s.status_interval = number(args.value("S") or conf.get("ARGUS_FLOW_STATUS_INTERVAL"), "-S", 5)
    if s.status_interval < 1:
        raise UsageError("-S: the status interval is at least 1 second")
    mar_interval = int(number(args.value("M") or conf.get("ARGUS_MAR_STATUS_INTERVAL"), "-M", 60))
    for key in DEFAULT_TIMEOUTS:
        given = conf.get(f"ARGUS_{key}_TIMEOUT")
        if given:
            s.timeouts[key] = int(number(given, f"ARGUS_{key}_TIMEOUT", DEFAULT_TIMEOUTS[key]))
    s.appbytes = bool(args.flag("A")) or yes(conf.get("ARGUS_GENERATE_APPBYTE_METRIC"))
    s.jitter = bool(args.flag("J")) or yes(conf.get("ARGUS_GENERATE_JITTER_DATA"))
    s.psize = bool(args.flag("Z")) or yes(conf.get("ARGUS_GENERATE_PACKET_SIZE"))
    s.macs = bool(args.flag("m")) or yes(conf.get("ARGUS_GENERATE_MAC_DATA"))
    s.user_data = int(number(args.value("U") or conf.get("ARGUS_CAPTURE_DATA_LEN"), "-U", 0))
    srcid = SourceId.parse(args.value("e") or conf.get("ARGUS_MONITOR_ID") or None)
    s.srcid_type, s.srcid = srcid.transport_qual, srcid.transport_value
    return s, srcid, mar_interval


class TextOut:
    """Records printed as ra prints them by default (argus without -w)."""

    def __init__(self) -> None:
        from argusflow.records.printer import Printer, PrintOptions

        self.printer = Printer(PrintOptions())

    def write(self, batch: pl.DataFrame, start: bytes | None) -> None:
        import polars as pl

        flows = batch.filter(pl.col("rtype") != 0x80)
        if flows.height:
            sys.stdout.write(self.printer.render(flows))

    def write_mar(self, mar: bytes, start: bytes | None) -> None:
        """ra prints no MARs by default."""

    def close(self) -> None:
        sys.stdout.flush()


def compile_capture_filter(text: str) -> CaptureFilter:
    """The filter modules import polars: only when there is a filter."""
    from argusflow.filter.compile_packets import compile_capture_filter as compile_filter

    return compile_filter(text)


def split_interfaces(argv: list[str]) -> tuple[list[str], list[str]]:
    """`-i IFACE` words, taken out first: the shared parser knows -i only as a client switch."""
    wanted = [Extension("-i", glued="any", missing="option -i needs an interface")]
    rest, taken = take_extensions(argv, wanted)
    found = [t.value or "" for t in taken]
    if not all(found):
        raise UsageError("option -i needs an interface")
    return rest, found


def argus(argv: list[str]) -> int:
    argv, long_options = split_long_options(argv, LONG_OPTIONS)
    argv, interfaces = split_interfaces(argv)
    args = parse_argv(argv, "argus", flags=set("AJZmXdp"), one_value=set("e"))
    if args.flag("h"):
        print(USAGE)
        return EXIT_MATCHED
    conf: dict[str, str] = {}
    if not args.flag("X") and Path(SYSTEM_CONF).exists():
        conf.update(read_conf(SYSTEM_CONF))
    for path in args.all("F"):
        conf.update(read_conf(path))
    conf.update(long_options)  # the command line wins over the files
    inputs = sorted(args.all("r"))  # argus reads its files in lexicographic order
    if not interfaces and not inputs and conf.get("ARGUS_INTERFACE"):
        interfaces = conf["ARGUS_INTERFACE"].split()
    if interfaces and inputs:
        raise UsageError("give either -r files or -i interfaces, not both")
    if not inputs and not interfaces:
        raise UsageError("no input: give capture files with -r or interfaces with -i")
    settings, srcid, mar_interval = settings_from(conf, args)
    if interfaces:
        return run_live(args, conf, interfaces, settings, srcid, mar_interval)
    out_path = args.value("w") or (conf.get("ARGUS_OUTPUT_FILE") if not args.flag("X") else None)
    # The capture filter (` - tcp and port 80`, or ARGUS_FILTER) is compiled before any output.
    filter_text = args.filter or conf.get("ARGUS_FILTER") or ""
    capture_filter = compile_capture_filter(filter_text) if filter_text.strip() else None
    sink = ProbeOutput(out_path) if out_path else TextOut()
    # The file sink takes numpy columns (no polars in the process); the printer takes frames.
    probe = FlowProbe(settings, hold=FILE_HOLD, frames=not out_path)
    header: bytes | None = None
    errors = []
    try:
        for path in inputs:
            reader = open_capture(path, reuse_buffers=True)  # batches are used at once
            with reader:
                for packets, decoded in decode_capture(reader):
                    if header is None and len(decoded):
                        t0 = int(decoded.ts_us[0])
                        header = start_mar(srcid, startime_us=t0, now_us=t0,
                                           report_interval=int(settings.status_interval),
                                           mar_interval=mar_interval)
                    if capture_filter is not None:  # packets it rejects are never seen
                        keep = np.flatnonzero(capture_filter.mask(decoded))
                        decoded, packets = decoded.take(keep), packets.take(keep)
                    records = probe.feed(decoded, packets)
                    if records.height:
                        sink.write(records, header)
            if reader.error is not None:
                errors.append(reader.error)
        if header is None:
            header = start_mar(srcid, startime_us=0, now_us=0,
                               report_interval=int(settings.status_interval),
                               mar_interval=mar_interval)
        for records in probe.finish_chunks():  # the open flows, a bounded frame at a time
            sink.write(records, header)
        stop = stop_mar(srcid, startime_us=probe.first_ts, now_us=probe.last_ts,
                        counters=MarCounters(pkts=probe.packets, bytes=probe.bytes,
                                             records=probe.flows_reported,
                                             flows=probe.flows_reported,
                                             dropped=probe.packets_not_keyed),
                        report_interval=int(settings.status_interval), mar_interval=mar_interval)
        sink.write_mar(stop, header)
    finally:
        sink.close()
    for err in errors:
        print(f"argus: {err}", file=sys.stderr)
    return EXIT_MATCHED


def ring_bytes(text: str | None) -> int:
    """ARGUS_PCAP_BUF_SIZE: bytes, or with a K/M/G suffix."""
    from argusflow.capture.live import DEFAULT_RING

    if not text:
        return DEFAULT_RING
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1].upper(), 1)
    return int(number(text.rstrip("kKmMgG"), "ARGUS_PCAP_BUF_SIZE", 0) * scale) or DEFAULT_RING


def live_options(args, conf: dict[str, str], interfaces: list[str],  # noqa: ANN001
                 srcid: SourceId, mar_interval: int) -> LiveOptions:
    from argusflow.capture.live import DEFAULT_SNAPLEN
    from argusflow.cli.argus_live import LiveOptions

    port = args.value("P") or conf.get("ARGUS_ACCESS_PORT")
    binds = args.value("B") or conf.get("ARGUS_BIND_IP") or ""
    promisc = not args.flag("p") and conf.get("ARGUS_GO_PROMISCUOUS", "yes").lower() != "no"
    return LiveOptions(
        interfaces=interfaces, srcid=srcid, promisc=promisc,
        snaplen=int(number(args.value("s"), "-s", DEFAULT_SNAPLEN)),
        ring_bytes=ring_bytes(conf.get("ARGUS_PCAP_BUF_SIZE")),
        port=int(number(port, "-P", 0)) or None,
        binds=[b for b in binds.replace(",", " ").split() if b],
        allow=conf.get("ARGUS_ACCESS_ALLOW"), mar_interval=mar_interval,
        filter_text=args.filter or conf.get("ARGUS_FILTER"), tls=server_tls(conf))


def server_tls(conf: dict[str, str]) -> ssl.SSLContext | None:
    """Our TLS extension for -P (plain TCP, what Argus 3.0.8 speaks, stays the default)."""
    from argusflow.stream.server import tls_server_context

    if not conf.get("ARGUS_TLS_CERT"):
        return None
    return tls_server_context(conf["ARGUS_TLS_CERT"], conf.get("ARGUS_TLS_KEY"),
                              conf.get("ARGUS_TLS_CLIENT_CA"))


def run_live(args, conf: dict[str, str], interfaces: list[str],  # noqa: ANN001
             settings: ProbeSettings, srcid: SourceId, mar_interval: int) -> int:
    """argus -i: open the rings (as root, before detaching), then serve until SIGTERM."""
    import asyncio

    from argusflow.cli import daemon  # logging and sockets: only for live probes
    from argusflow.cli.argus_live import LiveProbe, check_interfaces

    opts = live_options(args, conf, interfaces, srcid, mar_interval)
    out_path = args.value("w") or (conf.get("ARGUS_OUTPUT_FILE") if not args.flag("X") else None)
    as_daemon = bool(args.flag("d")) or yes(conf.get("ARGUS_DAEMON"))
    if as_daemon and out_path and out_path != "-":
        out_path = os.path.abspath(out_path)  # a daemon runs in /
    sink = ProbeOutput(out_path) if out_path else (None if opts.port else TextOut())
    check_interfaces(opts)
    pidfile = conf.get("ARGUS_PID_FILE") or (
        daemon.default_pidfile(f"argus.{opts.port or 0}.pid") if as_daemon else None)
    if as_daemon:
        daemon.daemonize(os.path.abspath(pidfile))
    elif pidfile:
        daemon.write_pidfile(pidfile)
    daemon.setup_logging("argus", as_daemon, bool(args.value("D")))
    probe = LiveProbe(settings, opts, sink)
    daemon.raise_fd_limit()
    try:
        asyncio.run(probe.run())
    finally:
        daemon.remove_pidfile(pidfile)
    return EXIT_MATCHED


def main() -> None:
    entry("argus", argus)
