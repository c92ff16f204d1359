"""Live probes on a real (virtual) network: our `argus -i` against the real Argus 3.0.8 tools.

Each test makes its own pair of network namespaces joined by a veth pair (names with a random
suffix, deleted by the fixture), replays a small generated capture with tcpreplay into one end
and captures on the other.  The flows that arrive, merged by /usr/bin/racluster and printed by
/usr/bin/ra, must equal what the real `argus -r` makes of the same capture.

Needs root, `ip netns`, tcpreplay, the real tools and ../shared/bench/gen_pcap.py; skips with
the reason otherwise.  Every process is started by the test and ended by its pid.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_real_tool, terminate

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
GEN_PCAP = SHARED / "bench" / "gen_pcap.py"
OUR_BIN = Path(sys.executable).parent
RA, RACLUSTER = Path("/usr/bin/ra"), Path("/usr/bin/racluster")
ARGUS, RADIUM = Path("/usr/sbin/argus"), Path("/usr/sbin/radium")
FLOW_FIELDS = "proto saddr sport daddr dport spkts dpkts sbytes dbytes".split()
LO = "127.0.0.1"


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "live capture tests need root (network namespaces, AF_PACKET)"
    if shutil.which("ip") is None or subprocess.run(["ip", "netns", "list"],
                                                    capture_output=True).returncode:
        return "'ip netns' is not available"
    if shutil.which("tcpreplay") is None:
        return "tcpreplay is not installed (apt-get install tcpreplay)"
    for tool in (RA, RACLUSTER, ARGUS, RADIUM):
        if not tool.exists():
            return f"real tool {tool} is not installed"
    if not GEN_PCAP.exists():
        return f"{GEN_PCAP} not found (../shared is absent)"
    return None


pytestmark = pytest.mark.skipif(why_not() is not None, reason=str(why_not()))


class Net:
    """Namespaces `src` (tcpreplay) and `cap` (probes, servers, clients on its loopback)."""

    def __init__(self, tmp: Path) -> None:
        sfx = secrets.token_hex(3)
        self.tmp = tmp
        self.src, self.cap = f"afls{sfx}", f"aflc{sfx}"
        self.pairs: list[tuple[str, str]] = []
        self.procs: list[subprocess.Popen] = []
        for ns in (self.src, self.cap):
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.add_pair()

    def add_pair(self) -> tuple[str, str]:
        """A veth pair (sender end in src, capture end in cap), up, no addresses."""
        k = len(self.pairs)
        s, c = f"s{k}{self.src[4:]}", f"c{k}{self.src[4:]}"
        sh("ip", "link", "add", s, "netns", self.src, "type", "veth", "peer", "name", c,
           "netns", self.cap)
        for ns, name in ((self.src, s), (self.cap, c)):
            sh("ip", "-n", ns, "link", "set", name, "mtu", "9000", "up")
        self.pairs.append((s, c))
        return s, c

    def start(self, name: str, *args: str | Path) -> subprocess.Popen:
        """A process in the capture namespace; stdout/stderr to files named after it."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.cap, *map(str, args)],
                                stdout=open(self.tmp / f"{name}.out", "wb"),
                                stderr=open(self.tmp / f"{name}.err", "wb"),
                                env={**os.environ, "TZ": "UTC"})
        self.procs.append(proc)
        return proc

    def err(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")

    def replay(self, pcap: Path, pair: int = 0, pps: int = 4000) -> None:
        sh("ip", "netns", "exec", self.src, "tcpreplay", "-q", "-K", f"--pps={pps}", "-i",
           self.pairs[pair][0], pcap, timeout=60)

    def close(self) -> None:
        for proc in self.procs:
            stop(proc, signal.SIGKILL, 2)
        for ns in (self.src, self.cap):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def sh(*args: str | Path, timeout: float = 20) -> str:
    done = run_real_tool(args, timeout=timeout)  # ra given a filter may time out compiling it
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
    return terminate(proc, sig, timeout)


def wait_for(check, timeout: float = 15, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def listening(net: Net, port: int) -> bool:
    out = sh("ip", "netns", "exec", net.cap, "ss", "-Hltn", f"sport = :{port}")
    return bool(out.strip())


def clients(net: Net, port: int) -> int:
    """Connections a server on `port` has (the real tools print nothing when a client connects)."""
    out = sh("ip", "netns", "exec", net.cap, "ss", "-Htn", "state", "established", f"sport = :{port}")
    return len(out.splitlines())


def wait_clients(net: Net, wanted: dict[int, int]) -> None:
    """Until each port has its number of clients (a loaded machine can take seconds to start our
    ra), then a moment for the servers to take them in: records sent before are not theirs."""
    wait_for(lambda: all(clients(net, port) >= n for port, n in wanted.items()), timeout=120,
             what=f"clients {wanted}")
    time.sleep(0.5)


def flows(*paths: Path) -> list[str]:
    """Flow records of Argus files, merged by the real racluster, printed by the real ra."""
    merged = subprocess.run([RACLUSTER, "-X", "-w", "-", "-r", *paths], capture_output=True,
                            timeout=60, check=True).stdout
    done = run_real_tool([RA, "-X", "-n", "-u", "-c", ",", "-s", *FLOW_FIELDS, "-r", "-", "-",
                          "not", "man"], input=merged, timeout=60)
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.splitlines()[1:])


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small generated captures and what the real `argus -r` makes of each."""
    folder = tmp_path_factory.mktemp("live")
    out: dict[str, Path] = {}
    for name, seed in (("a", 7), ("b", 8)):
        pcap = folder / f"{name}.pcap"
        sh(sys.executable, GEN_PCAP, "--packets", "3000", "--duration", "10", "--seed", str(seed),
           "-q", "-o", pcap)
        sh(ARGUS, "-X", "-r", pcap, "-w", folder / f"{name}.argus")
        out[name], out[f"{name}.argus"] = pcap, folder / f"{name}.argus"
    return out


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
    finally:
        n.close()


def our_probe(net: Net, name: str, *args: str | Path) -> subprocess.Popen:
    proc = net.start(name, OUR_BIN / "argus", "-X", *args)
    # (the first start after a change to the flow engine waits for numba to compile it)
    wait_for(lambda: "capturing on" in net.err(name) or proc.poll() is not None, timeout=120,
             what="our argus")
    assert proc.poll() is None, net.err(name)
    return proc


def test_live_probe_equals_argus_r(net: Net, captures: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "live.argus"
    probe = our_probe(net, "argus", "-i", net.pairs[0][1], "-w", out, "-M", "1")
    assert promiscuity(net) == 1, "promiscuous by default"
    net.replay(captures["a"])
    assert stop(probe) == 0, net.err("argus")  # at once: the last block is not handed over yet
    assert flows(out) == flows(captures["a.argus"])
    mars = subprocess.run([RA, "-X", "-n", "-M", "man", "-c", ",", "-s", "proto", "sport", "pkts",
                           "dport", "-r", out], capture_output=True, text=True, check=True).stdout
    rows = [line.split(",") for line in mars.splitlines()[1:] if line.startswith("man")]
    assert sum(int(r[2]) for r in rows) == 3000  # every packet counted in the status MARs
    assert sum(int(r[1]) for r in rows) == 0  # ra prints the MAR's kernel drops as sport
    assert {r[3] for r in rows[1:]} == {"1"}  # clients (dport): the -w file, as the real argus


def test_two_interfaces_marked_by_srcid(net: Net, captures: dict[str, Path],
                                        tmp_path: Path) -> None:
    net.add_pair()
    out = tmp_path / "two.argus"
    probe = our_probe(net, "argus", "-i", f"{net.pairs[0][1]}/10.0.0.1",
                      "-i", f"{net.pairs[1][1]}/10.0.0.2", "-w", out)
    net.replay(captures["a"], pair=0)
    net.replay(captures["b"], pair=1)
    time.sleep(0.5)
    assert stop(probe) == 0, net.err("argus")
    for pair, srcid in (("a", "10.0.0.1"), ("b", "10.0.0.2")):
        part = tmp_path / f"{pair}.argus"
        sh(RA, "-X", "-r", out, "-w", part, "-", f"srcid {srcid}")
        assert flows(part) == flows(captures[f"{pair}.argus"])


def test_real_ra_and_real_radium_read_our_probe(net: Net, captures: dict[str, Path],
                                                tmp_path: Path) -> None:
    port, relay = 15641, 15642
    probe = our_probe(net, "argus", "-i", net.pairs[0][1], "-P", str(port), "-B", LO)
    wait_for(lambda: listening(net, port), what="our probe's port")
    radium = net.start("radium", RADIUM, "-X", "-S", f"{LO}:{port}", "-P", str(relay), "-B", LO)
    wait_for(lambda: listening(net, relay), what="the real radium's port")
    direct, relayed = tmp_path / "direct.argus", tmp_path / "relayed.argus"
    ra1 = net.start("ra1", RA, "-X", "-S", f"{LO}:{port}", "-w", direct)
    ra2 = net.start("ra2", RA, "-X", "-S", f"{LO}:{relay}", "-w", relayed)
    wait_clients(net, {port: 2, relay: 1})  # radium and ra1 on the probe, ra2 on radium
    net.replay(captures["a"])
    time.sleep(0.5)
    assert stop(probe) == 0, net.err("argus")
    time.sleep(1.0)  # the clients have everything (the real ra retries after EOF: no exit)
    stop(ra1)
    stop(ra2)
    stop(radium)
    expected = flows(captures["a.argus"])
    assert flows(direct) == expected
    assert flows(relayed) == expected


def test_our_ra_reads_real_live_argus(net: Net, captures: dict[str, Path], tmp_path: Path) -> None:
    port = 15643
    # -S 1, and 3 s before SIGTERM: the real argus may exit before its output thread has sent
    # the flows it flushes at SIGTERM, so every flow must have had a status record by then.
    real = net.start("real", ARGUS, "-X", "-S", "1", "-i", net.pairs[0][1], "-P", str(port),
                     "-B", LO)
    wait_for(lambda: listening(net, port), what="the real argus' port")
    got, oracle = tmp_path / "got.argus", tmp_path / "oracle.argus"
    ra = net.start("ra", OUR_BIN / "ra", "-X", "-S", f"{LO}:{port}", "-w", got)
    real_ra = net.start("real_ra", RA, "-X", "-S", f"{LO}:{port}", "-w", oracle)
    wait_clients(net, {port: 2})
    net.replay(captures["a"])
    time.sleep(3.0)
    stop(real)
    wait_for(lambda: ra.poll() is not None, what="our ra to end with the real probe's stream")
    time.sleep(0.5)
    stop(real_ra)
    assert sorted(flows(got)) == sorted(flows(oracle))
    assert sorted(flows(got)) == sorted(flows(captures["a.argus"]))


def test_radium_keeps_records_across_probe_restart(net: Net, captures: dict[str, Path],
                                                   tmp_path: Path) -> None:
    port = 15644
    kept = tmp_path / "radium.argus"
    args = ("-i", net.pairs[0][1], "-P", str(port), "-B", LO)
    probe = our_probe(net, "argus1", *args)
    radium = net.start("radium", OUR_BIN / "radium", "-X", "-S", f"{LO}:{port}", "-w", kept)
    wait_for(lambda: "connected" in net.err("radium"), what="our radium to connect")
    net.replay(captures["a"])
    time.sleep(0.5)
    assert stop(probe) == 0
    wait_for(lambda: "reconnecting" in net.err("radium"), what="radium to notice the probe left")
    probe = our_probe(net, "argus2", *args)
    wait_for(lambda: net.err("radium").count("connected") >= 2, what="radium to reconnect")
    net.replay(captures["b"])
    time.sleep(0.5)
    assert stop(probe) == 0
    time.sleep(0.5)
    assert stop(radium) == 0
    assert sorted(flows(kept)) == sorted(flows(captures["a.argus"], captures["b.argus"]))
    assert "reconnecting" in net.err("radium")


def test_daemon_pidfile_sighup_and_clean_stop(net: Net, captures: dict[str, Path],
                                              tmp_path: Path) -> None:
    """-d detaches and writes the pid file; SIGHUP reopens -w (logrotate: the old file keeps
    what came before); SIGTERM reports the rest, ends the file with a STOP MAR, removes the pid
    file."""
    conf, pidfile = tmp_path / "argus.conf", tmp_path / "argus.pid"
    conf.write_text(f"ARGUS_PID_FILE={pidfile}\n")
    out, rotated = tmp_path / "out.argus", tmp_path / "out.argus.1"
    starter = net.start("argus", OUR_BIN / "argus", "-X", "-F", conf, "-d", "-S", "1",
                        "-i", net.pairs[0][1], "-w", out)
    assert starter.wait(120) == 0, net.err("argus")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"), what="pid file")
    pid = int(pidfile.read_text())
    if Path("/dev/log").exists():  # the daemon logs to syslog: no ready message to wait for
        time.sleep(3)
    else:
        wait_for(lambda: "capturing on" in net.err("argus"), timeout=120, what="the daemon")
    try:
        rotate_and_stop(net, captures, pid, out, rotated)
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)  # the daemon is not the fixture's child
    assert not pidfile.exists()
    assert flows(rotated) and flows(out)
    assert flows(rotated, out) == flows(captures["a.argus"], captures["b.argus"])
    assert out.read_bytes()[-128:][:2] == b"\x83\x30", "a STOP MAR ends the file"


def rotate_and_stop(net: Net, captures: dict[str, Path], pid: int, out: Path,
                    rotated: Path) -> None:
    net.replay(captures["a"])
    time.sleep(2.5)  # -S 1: every flow of the first capture has been written
    out.rename(rotated)
    os.kill(pid, signal.SIGHUP)
    net.replay(captures["b"])
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=20, what="the daemon to stop")


def promiscuity(net: Net) -> int:
    text = sh("ip", "-n", net.cap, "-d", "link", "show", net.pairs[0][1])
    return int(re.search(r"promiscuity (\d+)", text).group(1))


def test_p_leaves_the_interface_alone(net: Net) -> None:
    probe = our_probe(net, "argus", "-p", "-s", "128", "-i", net.pairs[0][1], "-P", "15660")
    assert "(snaplen 128, not promiscuous)" in net.err("argus")
    assert promiscuity(net) == 0
    assert stop(probe) == 0


def test_bad_interface_is_one_line(net: Net) -> None:
    done = subprocess.run(["ip", "netns", "exec", net.cap, OUR_BIN / "argus", "-X", "-i",
                           "nosuch0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "argus: nosuch0: no such interface"


def test_interface_going_away_ends_the_probe(net: Net, captures: dict[str, Path],
                                             tmp_path: Path) -> None:
    """The veth is deleted under the probe: it says so, reports what it had and exits (it
    must not spin on the socket's error)."""
    out = tmp_path / "gone.argus"
    probe = our_probe(net, "argus", "-i", net.pairs[0][1], "-w", out)
    net.replay(captures["a"])
    time.sleep(0.5)
    sh("ip", "-n", net.src, "link", "del", net.pairs[0][0])
    wait_for(lambda: probe.poll() is not None, timeout=20, what="the probe to end by itself")
    assert "the interface went away" in net.err("argus")
    assert flows(out) == flows(captures["a.argus"])


def test_capture_filter_in_the_kernel_as_real_live_argus(net: Net, captures: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """`argus -i IF - tcp and port 443`: both probes capture the same replay side by side; the
    filter (libpcap's language, compiled to kernel BPF) keeps the same flows."""
    ours, real = tmp_path / "ours.argus", tmp_path / "real.argus"
    words = ["-", "tcp", "and", "port", "443"]
    real_probe = net.start("real", ARGUS, "-X", "-i", net.pairs[0][1], "-w", real, *words)
    probe = our_probe(net, "argus", "-i", net.pairs[0][1], "-w", ours, *words)
    time.sleep(1.0)  # the real argus has no ready message
    net.replay(captures["a"])
    time.sleep(0.5)
    assert stop(probe) == 0, net.err("argus")
    stop(real_probe)
    got = flows(ours)
    assert got and all(",443," in line for line in got)
    assert got == flows(real)
    done = subprocess.run(["ip", "netns", "exec", net.cap, OUR_BIN / "argus", "-X", "-i",
                           net.pairs[0][1], "-", "tcp", "and"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "capture filter 'tcp and': " in done.stderr and len(done.stderr.splitlines()) == 1


def test_two_routers_through_radiums_to_a_collector(net: Net, captures: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """The founding article's deployment, small: a probe per router interface, a radium per
    router, a collector radium reading both, a client on the collector.  The client's flows are
    the flows of both captures."""
    net.add_pair()
    ports = {"p0": 15651, "p1": 15652, "r0": 15653, "r1": 15654, "collector": 15655}
    got = tmp_path / "collector.argus"
    probes = [our_probe(net, f"argus{k}", "-i", f"{net.pairs[k][1]}/10.0.0.{k + 1}",
                        "-P", str(ports[f"p{k}"]), "-B", LO) for k in (0, 1)]
    radium = OUR_BIN / "radium"
    for k in (0, 1):
        net.start(f"radium{k}", radium, "-X", "-S", f"{LO}:{ports[f'p{k}']}",
                  "-P", str(ports[f"r{k}"]), "-B", LO)
    collector = net.start("collector", radium, "-X", "-S", f"{LO}:{ports['r0']}",
                          "-S", f"{LO}:{ports['r1']}", "-P", str(ports["collector"]), "-B", LO)
    wait_for(lambda: net.err("collector").count("connected") >= 2, what="collector connected")
    wait_for(lambda: all("connected" in net.err(f"radium{k}") for k in (0, 1)),
             what="router radiums connected")
    client = net.start("client", OUR_BIN / "ra", "-X", "-S", f"{LO}:{ports['collector']}",
                       "-w", got)
    wait_for(lambda: "started" in net.err("collector"), what="the client to start")
    net.replay(captures["a"], pair=0)
    net.replay(captures["b"], pair=1)
    time.sleep(0.5)
    for probe in probes:
        assert stop(probe) == 0
    time.sleep(1.0)
    stop(collector)
    wait_for(lambda: client.poll() is not None, what="the client to end with the collector")
    assert sorted(flows(got)) == sorted(flows(captures["a.argus"], captures["b.argus"]))


def test_tls_and_allow_list(net: Net, captures: dict[str, Path], tmp_path: Path) -> None:
    """Our extensions on -P: TLS (the client verifies the probe) and an allow-list."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    from test_radium import make_certs

    certs = make_certs(tmp_path)
    rc = tmp_path / "ra.rc"
    rc.write_text(f"RA_TLS_CA={certs['ca.pem']}\n")
    port, got = 15661, tmp_path / "tls.argus"
    probe = our_probe(net, "argus", "-i", net.pairs[0][1], "-P", str(port), "-B", LO,
                      "--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                      "--allow", "127.0.0.0/8")
    wait_for(lambda: listening(net, port), what="the TLS port")
    client = net.start("ra", OUR_BIN / "ra", "-X", "-F", rc, "-S", f"argus+tls://{LO}:{port}",
                       "-w", got)
    wait_for(lambda: "started" in net.err("argus"), what="the TLS client to start")
    net.replay(captures["a"])
    time.sleep(0.5)
    assert stop(probe) == 0
    wait_for(lambda: client.poll() is not None, what="the client to end")
    assert sorted(flows(got)) == sorted(flows(captures["a.argus"]))
    denied = our_probe(net, "argus2", "-i", net.pairs[0][1], "-P", str(port + 1), "-B", LO,
                       "--allow", "10.9.9.0/24")
    wait_for(lambda: listening(net, port + 1), what="the second port")
    refused = net.start("refused", OUR_BIN / "ra", "-X", "-S", f"{LO}:{port + 1}")
    wait_for(lambda: refused.poll() is not None, what="the refused client to end")
    assert "access denied" in net.err("argus2")
    assert refused.returncode == 2 and denied.poll() is None
    stop(denied)
