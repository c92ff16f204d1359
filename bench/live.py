"""Live capture and radium throughput: our argus -i and radium against the real Argus 3.0.8.

    .venv/bin/python bench/live.py                       # both parts, as root
    .venv/bin/python bench/live.py --part rate --rates 100000,200000,top --runs 3
    .venv/bin/python bench/live.py --part radium --clients 100

Part 1 (rate), the method of ../shared/research/live-baseline.md: two private network
namespaces joined by a veth pair (random-suffixed names, deleted at the end); a probe captures on
one end with `-w FILE -M 1` while `tcpreplay -K --pps=N --loop=5` (or --topspeed) sends a
100k-packet capture from gen_pcap.py five times into the other (500k packets: more than any
ring here holds, so a probe that cannot keep up drops); SIGTERM; then captured = the packets in the flow
records (real ra), kernel drops = the sum of the MARs' drop counters (ra prints them as sport).
Probes alternate at each rate: ours, the real argus with its defaults (2 MiB libpcap ring) and
the real argus with ARGUS_PCAP_BUF_SIZE equal to our ring (so the ring size is not the only
thing compared).  A rate is "zero loss" for a probe when every run captured every packet.

Part 2 (radium): two sources (our `radium -r` serving the records of the same capture, 10 times
over) -> one radium -> N clients in this process (asyncio sockets that count bytes; one of them
keeps its stream, decoded at the end to count records).  Figure: records per second delivered
to each client and in total; the real radium with its limit of 31 clients for comparison.
Everything stays on this machine's loopback and in the namespaces made here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
OUR_BIN = Path(sys.executable).parent
RA, ARGUS, RADIUM = "/usr/bin/ra", "/usr/sbin/argus", "/usr/sbin/radium"
OUR_RING = "32M"  # capture/live.py DEFAULT_RING


def sh(*args: object, timeout: float = 120) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, args))}: {done.stderr.strip()}")
    return done.stdout


def make_inputs(scratch: Path, packets: int) -> tuple[Path, Path]:
    scratch.mkdir(parents=True, exist_ok=True)
    pcap, argus = scratch / f"live{packets}.pcap", scratch / f"live{packets}.argus"
    if not pcap.exists():
        sh(sys.executable, SHARED / "bench" / "gen_pcap.py", "--packets", packets, "--seed", 1,
           "-q", "-o", pcap)
    if not argus.exists():
        sh(ARGUS, "-X", "-r", pcap, "-w", argus)
    return pcap, argus


class Veth:
    def __init__(self) -> None:
        sfx = secrets.token_hex(3)
        self.src, self.cap, self.sif, self.cif = f"afbs{sfx}", f"afbc{sfx}", f"bs{sfx}", f"bc{sfx}"
        for ns in (self.src, self.cap):
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "link", "add", self.sif, "netns", self.src, "type", "veth", "peer", "name",
           self.cif, "netns", self.cap)
        for ns, i in ((self.src, self.sif), (self.cap, self.cif)):
            sh("ip", "-n", ns, "link", "set", i, "mtu", "1600", "up")

    def close(self) -> None:
        for ns in (self.src, self.cap):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def probe_command(kind: str, veth: Veth, out: Path, conf: Path) -> list[str]:
    common = ["-i", veth.cif, "-w", str(out), "-M", "1"]
    if kind == "ours":
        return [str(OUR_BIN / "argus"), "-X", *common]
    if kind == "real":
        return [ARGUS, "-X", *common]
    return [ARGUS, "-X", "-F", str(conf), *common]  # real, ring as big as ours


def one_run(kind: str, rate: str, veth: Veth, pcap: Path, scratch: Path, loop: int) -> dict:
    out, err = scratch / f"run-{kind}.argus", scratch / f"run-{kind}.err"
    out.unlink(missing_ok=True)
    conf = scratch / "buf.conf"
    conf.write_text(f"ARGUS_PCAP_BUF_SIZE={OUR_RING}\n")
    cmd = ["ip", "netns", "exec", veth.cap, *probe_command(kind, veth, out, conf)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(err, "wb"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # ours says when its rings are open; argus needs ~1 s
        if kind != "ours" or "capturing on" in err.read_text(errors="replace"):
            break
        time.sleep(0.05)
    time.sleep(1.5)
    speed = ["--topspeed"] if rate == "top" else [f"--pps={rate}"]
    sent_text = sh("ip", "netns", "exec", veth.src, "tcpreplay", "-K", "--no-flow-stats",
                   f"--loop={loop}", "-i", veth.sif, *speed, pcap, timeout=600)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = status
    sent = int(re.search(r"Actual: (\d+) packets", sent_text).group(1))
    pps = float(re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", sent_text).group(1))
    flows = sh(RA, "-X", "-n", "-r", out, "-c", ",", "-s", "pkts", "-", "not", "man")
    mars = sh(RA, "-X", "-n", "-M", "man", "-r", out, "-c", ",", "-s", "proto", "sport")
    captured = sum(int(x) for x in flows.split()[1:])
    drops = sum(int(r.split(",")[1]) for r in mars.splitlines()[1:] if r.startswith("man"))
    return {"kind": kind, "rate": rate, "sent": sent, "pps": pps, "captured": captured,
            "drops": drops, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def rate_part(args: argparse.Namespace, pcap: Path) -> list[str]:
    veth = Veth()
    rows: dict[tuple[str, str], list[dict]] = {}
    try:
        for rate in args.rates.split(","):
            for _ in range(args.runs):
                for kind in args.probes.split(","):
                    r = one_run(kind, rate, veth, pcap, args.scratch, args.loop)
                    rows.setdefault((kind, rate), []).append(r)
                    print(f"{kind:8} {rate:>7}: sent {r['sent']} at {r['pps']:.0f} pps, captured "
                          f"{r['captured']}, kernel drops {r['drops']}, cpu {r['cpu']:.1f} s",
                          flush=True)
    finally:
        veth.close()
    lines = ["| probe | requested pps | runs | zero-loss runs | achieved pps (median) | lost, median "
             "(max) | kernel drops (max) | probe CPU s (median) | peak RSS MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    best: dict[str, str] = {}
    failed: set[str] = set()
    for (kind, rate), runs in sorted(rows.items(), key=lambda kv: kv[0][0]):
        lost = [r["sent"] - r["captured"] for r in runs]
        zero = sum(1 for r, x in zip(runs, lost, strict=True) if x == 0 and r["drops"] == 0)
        if zero < len(runs):
            failed.add(kind)
        elif kind not in failed:
            best[kind] = rate
        lines.append(f"| {kind} | {rate} | {len(runs)} | {zero} | "
                     f"{statistics.median(r['pps'] for r in runs):,.0f} | {statistics.median(lost):,.0f} "
                     f"({max(lost):,}) | {max(r['drops'] for r in runs):,} | "
                     f"{statistics.median(r['cpu'] for r in runs):.2f} | "
                     f"{max(r['rss_mb'] for r in runs):.0f} |")
    lines.append("")
    lines += [f"highest rate with zero loss in every run (and at every lower rate), {k}: {v}"
              for k, v in best.items()]
    return lines


# -- radium ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


async def client(port: int, keep: bool, idle_s: float) -> tuple[int, float, float, bytes]:
    """One stream reader: START, then count bytes until the stream is idle for idle_s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hello = await reader.readexactly(128)
    writer.write(b"START: ")
    await writer.drain()
    got, first, last, kept = 0, 0.0, 0.0, [hello] if keep else []
    while True:
        try:
            data = await asyncio.wait_for(reader.read(1 << 20), idle_s if got else 60)
        except (TimeoutError, ConnectionResetError):  # a server may drop a slow reader
            break
        if not data:
            break
        now = time.monotonic()
        first = first or now
        last = now
        got += len(data)
        if keep:
            kept.append(data)
    writer.close()
    return got, first, last, b"".join(kept)


async def run_clients(port: int, n: int, ready: asyncio.Event) -> list:
    tasks = [asyncio.create_task(client(port, k == 0, 3.0)) for k in range(n)]
    await asyncio.sleep(1.0)
    ready.set()
    return await asyncio.gather(*tasks)


def radium_run(kind: str, n_clients: int, argus: Path, copies: int) -> str:
    src_ports, relay = [free_port(), free_port()], free_port()
    procs = []
    try:
        for p in src_ports:  # our radium -r: serves its files once a client has started
            procs.append(subprocess.Popen([OUR_BIN / "radium", "-X", "-r", *[argus] * copies,
                                           "-P", str(p), "-B", "127.0.0.1"],
                                          stderr=subprocess.DEVNULL))
        for p in src_ports:
            wait_port(p)
        binary = OUR_BIN / "radium" if kind == "ours" else RADIUM
        procs.append(subprocess.Popen([binary, "-X", "-P", str(relay), "-B", "127.0.0.1",
                                       *[w for p in src_ports for w in ("-S", f"127.0.0.1:{p}")]],
                                      stderr=subprocess.DEVNULL))
        wait_port(relay)
        results = asyncio.run(_clients_then_sources(relay, n_clients))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return summarize_radium(kind, n_clients, results)


async def _clients_then_sources(relay: int, n: int) -> list:
    return await run_clients(relay, n, asyncio.Event())


def summarize_radium(kind: str, n: int, results: list) -> str:
    from argusflow.records.codec import read_bytes

    sizes = [r[0] for r in results]
    first = min(r[1] for r in results if r[1])
    last = max(r[2] for r in results)
    records = read_bytes(results[0][3]).height - 1  # the kept stream, START MAR left out
    full = sum(1 for s in sizes if s == max(sizes))
    per_client = records / max(last - first, 1e-9)
    return (f"| {kind} radium | {n} | {full} | {records:,} | {last - first:.2f} | "
            f"{per_client:,.0f} | {per_client * n:,.0f} |")


def radium_part(args: argparse.Namespace, argus: Path) -> list[str]:
    lines = ["| relay | clients | clients with the whole stream | records per client | seconds "
             "| records/s per client | deliveries/s (all clients) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind, n in (("ours", args.clients), ("real", min(args.clients, 31))):
        row = radium_run(kind, n, argus, args.copies)
        print(row, flush=True)
        lines.append(row)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", choices=("rate", "radium", "all"), default="all")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/argusflow-live"))
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--rates", default="100000,150000,200000,250000,300000,top")
    ap.add_argument("--probes", default="ours,real,real-buf")
    ap.add_argument("--runs", type=int, default=2)
    # Sent 5 times over, the 100k capture (about 16 MB in a ring that keeps 96 bytes a packet)
    # no longer fits in our 32 MB ring: the probe has to keep up, not just buffer.
    ap.add_argument("--loop", type=int, default=5, help="tcpreplay --loop (times the file is sent)")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--copies", type=int, default=10, help="times each source serves the file")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/live.py needs root (network namespaces, AF_PACKET)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # finally blocks remove namespaces
    pcap, argus = make_inputs(args.scratch, args.packets)
    report = []
    if args.part in ("rate", "all"):
        report += rate_part(args, pcap) + [""]
    if args.part in ("radium", "all"):
        report += radium_part(args, argus)
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
