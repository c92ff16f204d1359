"""radium and `ra -S` as real processes on 127.0.0.1, against the real Argus 3.0.8 tools.

Interop: the real ra reads our radium; the real radium relays ours to the real ra; our ra and
our radium read a live real argus (capturing on lo the UDP traffic this test sends itself).
Scale and abuse: a thousand clients each get every record; a client that never reads is dropped
alone; random bytes, half commands, silent peers, refused networks and one client too many.
Operations: -d with a pid file, SIGHUP reopens -w files, SIGTERM sends the STOP MAR.

Every process is started by the test and ended by its pid; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import COMPILER_RETRIES, compiler_timed_out, run_real_tool, terminate

from argusflow.records.codec import read_bytes
from argusflow.records.schema import RTYPE_MAR
from argusflow.records.writer import encode_batch
from argusflow.stream import protocol as p

REPO = Path(__file__).resolve().parent.parent
OUR_BIN = Path(sys.executable).parent
BUNDLED = REPO / "samples" / "mix.argus"
SAMPLES = REPO.parent / "shared" / "spec" / "samples"
RA, RADIUM, ARGUS = Path("/usr/bin/ra"), Path("/usr/sbin/radium"), Path("/usr/sbin/argus")
FIELDS = ("srcid seq stime ltime dur trans flgs proto saddr sport dir daddr dport spkts dpkts "
          "sbytes dbytes state stos dtos sttl dttl swin dwin tcprtt synack ackdat").split()
SAMPLE_NAMES = ("tcp", "udp", "icmp", "ipv6", "arp", "vlan", "mpls", "misc", "tcp_rich", "udp_rich")
HOST = "127.0.0.1"


def need(*tools: Path) -> None:
    for tool in tools:
        if not tool.exists():
            pytest.skip(f"real tool {tool} not installed (Debian: argus-server, argus-client)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Procs:
    """Processes started by one test; all ended (TERM, then KILL) by pid when it finishes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[subprocess.Popen] = []

    def start(self, args: list[str | Path], name: str, **kw: object) -> subprocess.Popen:
        env = {**os.environ, "TZ": "UTC"}
        proc = subprocess.Popen([str(a) for a in args], stdout=open(self.tmp / f"{name}.out", "wb"),
                                stderr=open(self.tmp / f"{name}.err", "wb"), env=env, **kw)
        self.running.append(proc)
        return proc

    def out(self, name: str) -> str:
        return (self.tmp / f"{name}.out").read_text(errors="replace")

    def err(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")

    def end(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        terminate(proc, sig, timeout)
        return proc.returncode

    def close(self) -> None:
        for proc in self.running:
            self.end(proc, timeout=3.0)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    box = Procs(tmp_path)
    try:
        yield box
    finally:
        box.close()


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                s.settimeout(2)
                s.recv(128)  # take the START MAR so the server is not left a half-open peer
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listening on {HOST}:{port} after {timeout} s")


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{proc.args[0]} still running after {timeout} s")


def radium_conf(tmp: Path, **values: object) -> Path:
    path = tmp / "radium.conf"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def flow_lines(text: str) -> list[str]:
    """Printed records, without MAR lines and the header."""
    lines = text.splitlines()
    return [line for line in lines[1:] if "|man|" not in line and line.strip()]


def make_records(n: int) -> tuple[bytes, pl.DataFrame]:
    """An Argus file of n flow records (the bundled sample's, repeated, seq 1..n)."""
    data = BUNDLED.read_bytes()
    batch = read_bytes(data)
    flows = batch.filter(batch["rtype"] != RTYPE_MAR)
    reps = -(-n // flows.height)
    big = pl.concat([flows] * reps).head(n)
    big = big.with_columns(pl.Series("seq", np.arange(1, n + 1, dtype=np.uint32)))
    return data[:128] + encode_batch(big, synthesise_agr=False), big


@pytest.fixture(scope="module")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"needs {SAMPLES} (the team's shared folder beside the repo)")
    return SAMPLES


def real_ra_print(args: list[str | Path], timeout: float = 60) -> str:
    return run_real_tool([RA, "-X", "-n", "-u", "-c", "|", "-s", *FIELDS, *args],
                         timeout=timeout).stdout


def clients(port: int) -> int:
    """Connections a server on HOST:port has (the real tools print nothing when one connects)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"sport = :{port}"],
                         capture_output=True, text=True, timeout=10).stdout
    return len(out.splitlines())


def wait_started(client: subprocess.Popen, server: subprocess.Popen, port: int) -> None:
    """Until the client is connected to the server on `port`, or either has exited."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and client.poll() is None and server.poll() is None:
        if clients(port):
            return
        time.sleep(0.05)


def wait_clients(port: int, count: int, timeout: float = 60.0) -> None:
    """Until `count` clients are connected to `port` (our ra takes seconds to start on a loaded
    machine), then a moment for the server to take them in: records sent before are lost."""
    deadline = time.monotonic() + timeout
    while clients(port) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{clients(port)} of {count} clients on {HOST}:{port} after {timeout} s")
        time.sleep(0.1)
    time.sleep(0.5)


# ---------------------------------------------------------------------------------- interop


@pytest.mark.parametrize("filt", [None, "tcp", "udp or icmp"])
def test_real_ra_reads_our_radium(procs: Procs, samples_dir: Path, filt: str | None) -> None:
    """`radium -r FILES -P` serves the files to the first client; the real ra -S prints exactly
    what `ra -r FILES` prints (with a filter: the FILTER: handshake, filtered on our side)."""
    need(RA)
    files = [samples_dir / f"{n}.argus" for n in SAMPLE_NAMES]
    tail = ["-", filt] if filt else []
    want = flow_lines(real_ra_print(["-r", *files, *tail]))
    assert want, "the samples should print records"
    for _ in range(COMPILER_RETRIES):
        port = free_port()
        rad = procs.start([OUR_BIN / "radium", "-X", "-r", *files, "-P", port, "-B", HOST],
                          "radium")
        wait_listening(port, rad)
        ra = procs.start([RA, "-X", "-n", "-u", "-c", "|", "-s", *FIELDS, "-S",
                          f"{HOST}:{port}", *tail], "ra")
        wait_started(ra, rad, port)
        if not compiler_timed_out(procs.err("ra")):
            break
        procs.end(rad)  # ra exited 1 before it connected: its filter compiler was too slow
    assert wait_exit(rad, 30) == 0  # files done: STOP MAR, close, exit
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(flow_lines(procs.out("ra"))) < len(want):
        time.sleep(0.1)
    procs.end(ra)  # the real ra keeps trying to reconnect after EOF
    assert flow_lines(procs.out("ra")) == want
    if filt:
        assert f"filter 'man or ({filt})'" in procs.err("radium")


def test_real_radium_relays_our_radium(procs: Procs, samples_dir: Path) -> None:
    """ours -> real radium -> real ra: the same records as reading the files."""
    need(RA, RADIUM)
    files = [samples_dir / f"{n}.argus" for n in SAMPLE_NAMES]
    ours, relay = free_port(), free_port()
    real = procs.start([RADIUM, "-X", "-S", f"{HOST}:{ours}", "-P", relay, "-B", HOST], "real_radium")
    wait_listening(relay, real)
    ra = procs.start([RA, "-X", "-n", "-u", "-c", "|", "-s", *FIELDS, "-S", f"{HOST}:{relay}"], "ra")
    wait_clients(relay, 1)  # the real radium does not buffer: its client must be there first
    rad = procs.start([OUR_BIN / "radium", "-X", "-r", *files, "-P", ours, "-B", HOST], "radium")
    # The real radium retries its source every 5 s; ours serves the files when it starts.
    assert wait_exit(rad, 30) == 0
    want = flow_lines(real_ra_print(["-r", *files]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(flow_lines(procs.out("ra"))) < len(want):
        time.sleep(0.2)
    procs.end(ra)
    assert flow_lines(procs.out("ra")) == want


def send_udp(count: int, base_port: int, spacing: float = 0.01) -> None:
    """Loopback UDP to ports nobody listens on (each packet also gets an ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            s.sendto(b"argusflow-test" * (1 + i % 4), (HOST, base_port + i % 3))
            time.sleep(spacing)


def test_ours_read_a_live_real_argus(procs: Procs, tmp_path: Path) -> None:
    """Real argus on lo -> our ra -S (same lines as the real ra -S), our ra -S with a remote
    filter, and our radium -w, which reconnects when argus restarts and loses nothing."""
    need(RA, ARGUS)
    port, traffic = free_port(), free_port()

    ports = " or ".join(f"port {traffic + k}" for k in (0, 1, 2, 10, 11, 12))

    def start_argus(tag: str) -> subprocess.Popen:
        # Only our UDP test traffic: never the stream port itself (no feedback loop).
        proc = procs.start([ARGUS, "-X", "-i", "lo", "-P", port, "-B", HOST, "-S", "1",
                            "-", f"udp and ({ports})"], f"argus{tag}")
        wait_listening(port, proc)
        return proc

    argus = start_argus("1")
    out = tmp_path / "radium.argus"
    rad = procs.start([OUR_BIN / "radium", "-X", "-S", f"{HOST}:{port}", "-w", out], "radium")
    ours = procs.start([OUR_BIN / "ra", "-X", "-n", "-u", "-c", "|", "-s", *FIELDS, "-S",
                        f"{HOST}:{port}"], "ours")
    ours_udp = procs.start([OUR_BIN / "ra", "-X", "-n", "-s", "proto", "-S", f"argus://{HOST}:{port}",
                            "-", "udp"], "ours_udp")
    real = procs.start([RA, "-X", "-n", "-u", "-c", "|", "-s", *FIELDS, "-S", f"{HOST}:{port}"], "real")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ("connected" not in procs.err("radium")):
        time.sleep(0.1)
    wait_clients(port, 4)  # radium, our two ra, the real ra (ours import polars/numba first)
    send_udp(30, traffic)
    time.sleep(2.5)
    procs.end(argus)  # SIGTERM: SHUTDOWN flows, STOP MAR, close
    assert wait_exit(ours, 10) == 0  # our ra reads to EOF and ends
    assert wait_exit(ours_udp, 10) == 0
    procs.end(real)
    got, want = flow_lines(procs.out("ours")), flow_lines(procs.out("real"))
    assert len(want) >= 3 and got == want
    udp = procs.out("ours_udp").split()
    assert udp[0] == "Proto" and set(udp[1:]) == {"udp"}, "the remote filter kept only udp"
    # The source went away: radium logs it and reconnects to the new argus on the same port.
    argus2 = start_argus("2")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and procs.err("radium").count(": connected") < 2:
        time.sleep(0.1)
    assert procs.err("radium").count(": connected") >= 2, procs.err("radium")
    assert "reconnecting" in procs.err("radium")
    send_udp(12, traffic + 10)
    time.sleep(2.5)
    procs.end(argus2)
    time.sleep(1.0)
    assert procs.end(rad) == 0
    written = flow_lines(real_ra_print(["-r", out]))
    ports = {line.split("|")[12] for line in written}
    assert {str(traffic), str(traffic + 10)} <= ports, "records from both argus runs were kept"
    first_run = [line for line in written if line.split("|")[12] in
                 {str(traffic + k) for k in range(3)} and line.split("|")[7] == "udp"]
    assert sorted(first_run) == sorted(x for x in want if x.split("|")[7] == "udp")


# ----------------------------------------------------------------------------- many clients


async def read_client(port: int, filter_text: str | None = None, start: bool = True,
                      timeout: float = 60.0) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        data = await asyncio.wait_for(reader.readexactly(128), timeout)
        if filter_text:
            writer.write(b"FILTER: " + filter_text.encode())
            data += await asyncio.wait_for(reader.readexactly(2), timeout)
        if start:
            writer.write(b"START: ")
        return data + await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def test_thousand_clients_each_get_every_record(procs: Procs, tmp_path: Path) -> None:
    n_records, n_clients = 1000, 1000
    data, records = make_records(n_records)
    (tmp_path / "big.argus").write_bytes(data)
    port = free_port()
    conf = radium_conf(tmp_path, RADIUM_START_CLIENTS=n_clients, RADIUM_MAR_STATUS_INTERVAL=3600)
    rad = procs.start([OUR_BIN / "radium", "-X", "-f", conf, "-r", tmp_path / "big.argus",
                       "-P", port, "-B", HOST], "radium")
    wait_listening(port, rad)

    async def everyone() -> tuple[list[bytes], float]:
        began = time.monotonic()
        got = await asyncio.gather(*(read_client(port) for _ in range(n_clients)))
        return got, time.monotonic() - began

    got, elapsed = asyncio.run(everyone())
    assert wait_exit(rad, 30) == 0
    expected = encode_batch(records, synthesise_agr=False)
    bodies = {g[128:-128] for g in got}
    assert bodies == {expected}, "every client got every record, byte for byte"
    stops = {g[-128:][:2] for g in got}
    assert stops == {b"\x83\x30"}, "and then radium's STOP MAR"
    rate = n_records * n_clients / elapsed
    print(f"\n{n_clients} clients x {n_records} records in {elapsed:.2f} s: "
          f"{rate:,.0f} record deliveries/s")


def test_slow_client_is_dropped_alone(procs: Procs, tmp_path: Path) -> None:
    n_records = 40_000
    data, records = make_records(n_records)
    (tmp_path / "big.argus").write_bytes(data)
    port = free_port()
    conf = radium_conf(tmp_path, RADIUM_START_CLIENTS=2, RADIUM_CLIENT_BACKLOG=2 << 20)
    rad = procs.start([OUR_BIN / "radium", "-X", "-f", conf, "-r", tmp_path / "big.argus",
                       "-P", port, "-B", HOST], "radium")
    wait_listening(port, rad)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((HOST, port))
    slow.settimeout(10)
    assert len(slow.recv(128, socket.MSG_WAITALL)) == 128
    slow.sendall(b"START: ")  # ... and never reads again

    got = asyncio.run(read_client(port))
    assert wait_exit(rad, 60) == 0
    assert got[128:-128] == encode_batch(records, synthesise_agr=False)
    assert got[-128:][:2] == b"\x83\x30"
    assert "too slow" in procs.err("radium")
    slow.close()


# ---------------------------------------------------------------------------- hostile peers


def test_hostile_peers_cannot_hurt_a_good_client(procs: Procs, tmp_path: Path) -> None:
    data, records = make_records(2000)
    (tmp_path / "f.argus").write_bytes(data)
    port = free_port()
    conf = radium_conf(tmp_path, RADIUM_START_CLIENTS=1)
    rad = procs.start([OUR_BIN / "radium", "-X", "-f", conf, "-r", tmp_path / "f.argus",
                       "-P", port, "-B", HOST], "radium")
    wait_listening(port, rad)
    rng = np.random.default_rng(7)
    peers = []
    for payload in (rng.bytes(200_000), b"STA", b"FILTER: man or (", b"FILT", b"", b"\x00" * 5000):
        s = socket.create_connection((HOST, port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if payload:
            try:
                s.sendall(payload)
            except OSError:
                pass  # radium may close a junk sender while it is still sending
        peers.append(s)
    time.sleep(0.3)
    got = asyncio.run(read_client(port, filter_text="man or (udp)"))
    assert got[128:130] == b"OK"
    want = records.filter(pl.col("proto") == 17)
    assert got[130:-128] == encode_batch(want, synthesise_agr=False)
    assert wait_exit(rad, 30) == 0
    log = procs.err("radium")
    assert "unknown command" in log and "closing: more than" in log
    for s in peers:
        s.close()


def test_allow_list_and_too_many_clients(procs: Procs, tmp_path: Path) -> None:
    port, denied_port, dead = free_port(), free_port(), free_port()
    rad = procs.start([OUR_BIN / "radium", "-X", "-S", f"{HOST}:{dead}", "-P", port, "-B", HOST,
                       "--max-clients", "3", "--allow", "127.0.0.0/8"], "radium")
    conf = radium_conf(tmp_path, RADIUM_ACCESS_ALLOW="10.0.0.0/8,192.168.0.0/16")
    denied = procs.start([OUR_BIN / "radium", "-X", "-f", conf, "-S", f"{HOST}:{dead}",
                          "-P", denied_port, "-B", HOST], "denied")
    wait_listening(port, rad)
    wait_listening(denied_port, denied)
    with socket.create_connection((HOST, denied_port), timeout=30) as s:
        s.settimeout(30)
        assert s.recv(64, socket.MSG_WAITALL) == p.ACCESS_DENIED  # the record, then EOF
    time.sleep(0.2)
    assert "access denied" in procs.err("denied")
    kept = [socket.create_connection((HOST, port)) for _ in range(3)]
    for s in kept:
        s.settimeout(10)
        assert len(s.recv(128, socket.MSG_WAITALL)) == 128
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.settimeout(10)
        assert s.recv(64, socket.MSG_WAITALL) == p.TOO_MANY_CLIENTS
    for s in kept:
        s.close()
    time.sleep(0.3)
    with socket.create_connection((HOST, port), timeout=10) as s:  # room again
        s.settimeout(10)
        assert len(s.recv(128, socket.MSG_WAITALL)) == 128


# ------------------------------------------------------------------------------- operations


def test_daemon_pidfile_sighup_sigterm(procs: Procs, tmp_path: Path) -> None:
    port, dead = free_port(), free_port()
    pidfile, out = tmp_path / "radium.pid", tmp_path / "out.argus"
    conf = radium_conf(tmp_path, RADIUM_MAR_STATUS_INTERVAL=0.3)
    parent = procs.start([OUR_BIN / "radium", "-X", "-d", "-f", conf, "--pidfile", pidfile,
                          "-S", f"{HOST}:{dead}", "-P", port, "-B", HOST, "-w", out], "radium")
    assert wait_exit(parent, 30) == 0  # the shell gets control back
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not pidfile.exists():
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    try:
        client = None
        while client is None and time.monotonic() < deadline:
            try:
                client = socket.create_connection((HOST, port), timeout=30)
            except OSError:
                time.sleep(0.05)
        assert client is not None, "the daemon listens"
        client.settimeout(10)
        assert client.recv(128, socket.MSG_WAITALL)[:2] == b"\x83\x10"
        client.sendall(b"START: ")
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.rename(out, tmp_path / "out.argus.1")  # logrotate
        os.kill(pid, signal.SIGHUP)
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.exists(), "SIGHUP reopened the output file"
        os.kill(pid, signal.SIGTERM)
        stream = b""
        while chunk := client.recv(65536):
            stream += chunk
        client.close()
        assert stream[-128:][:2] == b"\x83\x30", "the STOP MAR came last, then EOF"
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.05)
        assert not pidfile.exists()
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
    for path in (tmp_path / "out.argus.1", out):
        batch = read_bytes(path.read_bytes())
        causes = (batch["cause"] & 0xF0).to_list()
        assert causes[0] == 0x10 and 0x20 in causes, path
    assert (read_bytes(out.read_bytes())["cause"] & 0xF0).to_list()[-1] == 0x30
    assert "reconnecting" in procs.err("radium")


def test_our_ra_reports_a_corrupt_stream_and_keeps_what_it_had(procs: Procs, tmp_path: Path) -> None:
    """A server that sends good records, then damage: ra prints the records, one error line,
    exit 2.  Also: -S over IPv6 loopback and two -S sources read at once."""
    data, records = make_records(50)
    good = data + b"\x13\x10\x00\x00" + b"\xee" * 40  # a flow record header of length 0 words
    listeners = []
    for family, host in ((socket.AF_INET, HOST), (socket.AF_INET6, "::1")):
        srv = socket.socket(family)
        try:
            srv.bind((host, 0))
        except OSError:
            pytest.skip(f"{host} not available")
        srv.listen(4)
        srv.settimeout(30)
        listeners.append(srv)

    def serve(srv: socket.socket, payload: bytes) -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(30)
            conn.sendall(payload[:128])
            assert conn.recv(16) == b"START: "
            conn.sendall(payload[128:])

    import threading

    threads = [threading.Thread(target=serve, args=(listeners[0], good), daemon=True),
               threading.Thread(target=serve, args=(listeners[1], data), daemon=True)]
    for t in threads:
        t.start()
    v4, v6 = (s.getsockname()[1] for s in listeners)
    ra = procs.start([OUR_BIN / "ra", "-X", "-n", "-s", "seq", "-S", f"{HOST}:{v4}",
                      "-S", f"argus://[::1]:{v6}"], "ra")
    assert wait_exit(ra, 60) == 2
    seqs = procs.out("ra").split()[1:]
    assert sorted(map(int, seqs)) == sorted(2 * records["seq"].to_list())
    err = procs.err("ra").strip().splitlines()
    assert len(err) == 1 and f"{HOST}:{v4}: byte " in err[0] and "record length 0" in err[0]
    for s in listeners:
        s.close()


def test_radium_merges_two_radiums(procs: Procs, tmp_path: Path, samples_dir: Path) -> None:
    """The article's collector: `radium -S a -S b -w archive` over two of our radiums, each
    serving its own files; the archive holds every record of both (real ra reads it)."""
    need(RA)
    a_files = [samples_dir / f"{n}.argus" for n in ("tcp", "udp")]
    b_files = [samples_dir / f"{n}.argus" for n in ("icmp", "arp")]
    pa, pb = free_port(), free_port()
    archive = tmp_path / "archive.argus"
    ra_ = procs.start([OUR_BIN / "radium", "-X", "-r", *a_files, "-P", pa, "-B", HOST], "a")
    rb = procs.start([OUR_BIN / "radium", "-X", "-r", *b_files, "-P", pb, "-B", HOST], "b")
    wait_listening(pa, ra_)
    wait_listening(pb, rb)
    udp_only = tmp_path / "udp.argus"
    merger = procs.start([OUR_BIN / "radium", "-X", "-e", "2435", "-S", f"{HOST}:{pa}",
                          f"argus://{HOST}:{pb}", "-w", archive, "-w", udp_only, "udp"], "merger")
    assert wait_exit(ra_, 60) == 0 and wait_exit(rb, 60) == 0  # each served the merger, then left
    time.sleep(0.5)
    assert procs.end(merger) == 0
    got = sorted(flow_lines(real_ra_print(["-r", archive])))
    assert got == sorted(flow_lines(real_ra_print(["-r", *a_files, *b_files])))
    udp = sorted(flow_lines(real_ra_print(["-r", udp_only])))
    assert udp and udp == sorted(line for line in got if line.split("|")[7] == "udp")
    start = read_bytes(archive.read_bytes())["mar_raw"][0]
    assert start[120:124] == (2435).to_bytes(4, "big"), "the archive starts with our -e id"
    assert "reconnecting" in procs.err("merger")


def make_certs(tmp: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    def run(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", tmp / "ca.key", "-out", tmp / "ca.pem", "-days", "1",
        "-subj", "/CN=argusflow-test-ca")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", tmp / "san.ext"]), ("client", [])):
        run("req", *key, "-keyout", tmp / f"{name}.key", "-out", tmp / f"{name}.csr",
            "-subj", f"/CN={name}")
        run("x509", "-req", "-in", tmp / f"{name}.csr", "-CA", tmp / "ca.pem", "-CAkey",
            tmp / "ca.key", "-CAcreateserial", "-out", tmp / f"{name}.pem", "-days", "1", *ext)
    return {n: tmp / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_tls_extension(procs: Procs, tmp_path: Path) -> None:
    """argus+tls://: the client verifies the server; the server requires a client certificate."""
    if not Path("/usr/bin/openssl").exists():
        pytest.skip("openssl not installed")
    certs = make_certs(tmp_path)
    data, records = make_records(300)
    (tmp_path / "f.argus").write_bytes(data)
    port = free_port()
    rad = procs.start([OUR_BIN / "radium", "-X", "-r", tmp_path / "f.argus", "-P", port, "-B", HOST,
                       "--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                       "--tls-client-ca", certs["ca.pem"]], "radium")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "listening" not in procs.err("radium"):
        time.sleep(0.05)
    url = f"argus+tls://{HOST}:{port}"
    no_ca = tmp_path / "no_ca.rc"
    no_ca.write_text(f"RA_TLS_CERT={certs['client.pem']}\nRA_TLS_KEY={certs['client.key']}\n")
    no_cert = tmp_path / "no_cert.rc"
    no_cert.write_text(f"RA_TLS_CA={certs['ca.pem']}\n")
    full = tmp_path / "full.rc"
    full.write_text(no_ca.read_text() + no_cert.read_text())
    for name, rc in (("unverified", no_ca), ("anonymous", no_cert)):
        ra = procs.start([OUR_BIN / "ra", "-X", "-F", rc, "-s", "seq", "-S", url], name)
        assert wait_exit(ra, 60) == 2
        # Unverified: the client refuses the server.  Anonymous: with TLS 1.3 the server's
        # refusal of the missing certificate reaches the client as a close.
        assert "CERTIFICATE_VERIFY_FAILED" in procs.err(name) or (
            name == "anonymous" and "before its start record" in procs.err(name)), procs.err(name)
        assert rad.poll() is None
    ra = procs.start([OUR_BIN / "ra", "-X", "-F", full, "-s", "seq", "-S", url], "ra")
    assert wait_exit(ra, 60) == 0
    assert list(map(int, procs.out("ra").split()[1:])) == records["seq"].to_list()
    assert wait_exit(rad, 30) == 0



def test_real_ra_reads_a_corpus_capture_through_our_radium(procs: Procs, tmp_path: Path) -> None:
    """Thousands of varied real records (argus on a corpus capture) survive radium's relay."""
    need(RA, ARGUS)
    pcap = REPO.parent / "shared" / "corpus" / "ndpi__1kxun.pcap"
    if not pcap.exists():
        pytest.skip(f"needs {pcap}")
    made = tmp_path / "corpus.argus"
    subprocess.run([str(ARGUS), "-X", "-r", str(pcap), "-w", str(made)], check=True, timeout=120,
                   capture_output=True)
    port = free_port()
    rad = procs.start([OUR_BIN / "radium", "-X", "-r", made, "-P", port, "-B", HOST], "radium")
    wait_listening(port, rad)
    ra = procs.start([RA, "-X", "-n", "-u", "-c", "|", "-s", *FIELDS, "-S", f"{HOST}:{port}"], "ra")
    assert wait_exit(rad, 60) == 0
    time.sleep(0.5)
    procs.end(ra)
    want = flow_lines(real_ra_print(["-r", made]))
    assert len(want) > 200
    assert flow_lines(procs.out("ra")) == want


@pytest.mark.parametrize("port", ["70000", "-1", "abc"])
def test_bad_port_is_one_line(port: str, tmp_path: Path) -> None:
    done = subprocess.run([OUR_BIN / "radium", "-X", "-r", BUNDLED, "-P", port],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("radium: -P")
