"""The founding article end to end (../shared/seed/000_91a6837832c334df.txt, iVoyeur 2010).

    argus (probes, -S 5) -> radium -P -> rastream -S -M time 10m -w "%Y-%m-%d/argus.%H.%M.%S"
    -> racluster -R <day dir> -w argus-<day>.log [- tcp] -> bzip2

All of it is ours; the real /usr/bin/ra is the judge at the end.  What must hold, as the article
promises: every packet and byte the probes reported is in the day files, the day files are
smaller than the slices they came from, `- tcp` leaves only TCP, and the real ra reads the result
(plain and bzip2'd).  Three small corpus captures from three different days, one of them spanning
an hour (four non-empty 10-minute slices), another crossing a 10-minute boundary.

Our argus, rastream and racluster run in this process (start-up paid once); radium runs as a
server process, started and ended by its pid, every wait bounded.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_real_tool, started

from argusflow.cli.argus import argus
from argusflow.cli.racluster import racluster
from argusflow.cli.rastream import rastream
from argusflow.cli.runner import run_main

OUR_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
REAL_RA = Path("/usr/bin/ra")
CAPTURES = ("ndpi__wechat.pcap", "zeek__ftp-cwd-navigation.pcap", "ndpi__KakaoTalk_chat.pcap")
TEMPLATE = "%Y-%m-%d/argus.%H.%M.%S"  # the article's rastream -w, under a temporary root


def ours(body, program: str, argv: list[str]) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_main(program, body, argv)
    assert code == 0, f"{program} {' '.join(argv)}: exit {code}: {err.getvalue()}"


def ra_rows(path: Path, *fields: str, filt: tuple[str, ...] = ()) -> list[list[str]]:
    """The flow records of an Argus file as the real ra prints them (MARs left out)."""
    done = run_real_tool([REAL_RA, "-X", "-n", "-u", "-c", ",", "-L", "-1", "-s", *fields,
                          "-r", path, "-", "not man", *filt], timeout=60)
    assert done.returncode in (0, 1), done.stderr
    return [line.split(",") for line in done.stdout.splitlines()]


def totals(paths: list[Path]) -> tuple[int, int]:
    """Packets and bytes of every flow record in `paths`, both directions."""
    pkts = octets = 0
    for path in paths:
        for spkts, dpkts, sbytes, dbytes in ra_rows(path, "spkts", "dpkts", "sbytes", "dbytes"):
            pkts += int(spkts) + int(dpkts)
            octets += int(sbytes) + int(dbytes)
    return pkts, octets


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"radium exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"nothing listening on {HOST}:{port}")


@contextlib.contextmanager
def radium_serving(files: list[Path], port: int, tmp: Path) -> Iterator[subprocess.Popen]:
    """Our radium serving the probes' files on 127.0.0.1:port to its first client."""
    args = [OUR_BIN / "radium", "-X", *[a for f in files for a in ("-r", f)],
            "-P", port, "-B", HOST]
    with started(args, tmp, "radium") as proc:
        yield proc


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> dict[str, object]:
    """Run the article's pipeline once; the tests below check what it left."""
    if not REAL_RA.exists():
        pytest.skip("the real /usr/bin/ra is not installed")
    root = tmp_path_factory.mktemp("article")
    probes = []
    for name in CAPTURES:
        capture = shared_dir / "corpus" / name
        if not capture.exists():
            pytest.skip(f"corpus capture {name} is missing")
        probes.append(root / f"{name}.argus")
        ours(argus, "argus", ["-X", "-S", "5", "-r", str(capture), "-w", str(probes[-1])])
    slices = root / "argus"
    port = free_port()
    with radium_serving(probes, port, root) as rad:
        wait_listening(port, rad)
        ours(rastream, "rastream", ["-X", "-S", f"{HOST}:{port}", "-M", "time", "10m",
                                    "-w", f"{slices}/{TEMPLATE}"])
    days = {}
    for day in sorted(p for p in slices.iterdir() if p.is_dir()):
        log = root / f"argus-{day.name}.log"
        ours(racluster, "racluster", ["-X", "-R", str(day), "-w", str(log)])
        # A day of radium's own MARs only (they carry the wall clock) gives no file, as with
        # the real racluster.
        if log.exists():
            days[day.name] = log
    tcp_day = max(days, key=lambda d: len(list((slices / d).iterdir())))
    tcp_log = root / f"argus-{tcp_day}.tcp.log"
    ours(racluster, "racluster", ["-X", "-R", str(slices / tcp_day), "-w", str(tcp_log),
                                  "-", "tcp"])
    return {"probes": probes, "slices": slices, "days": days, "tcp_day": tcp_day,
            "tcp_log": tcp_log}


def test_slices_follow_the_template(archive) -> None:
    slices: Path = archive["slices"]  # type: ignore[assignment]
    files = sorted(p for p in slices.rglob("*") if p.is_file())
    assert files, "rastream wrote nothing"
    for path in files:
        day, name = path.parent.name, path.name
        time.strptime(day, "%Y-%m-%d")
        stamp = time.strptime(name, "argus.%H.%M.%S")
        assert stamp.tm_min % 10 == 0 and stamp.tm_sec == 0, name  # 10-minute bins
    # The hour-long capture gives several slices in its day (empty bins make no file).
    assert max(len(list(d.iterdir())) for d in slices.iterdir()) >= 4


def test_packets_and_bytes_conserved(archive) -> None:
    """Every packet and byte of the probes' records is in the day files (and in the slices)."""
    probes = totals(archive["probes"])  # type: ignore[arg-type]
    assert probes[0] > 0
    slices: Path = archive["slices"]  # type: ignore[assignment]
    assert totals(sorted(p for p in slices.rglob("*") if p.is_file())) == probes
    assert totals(list(archive["days"].values())) == probes  # type: ignore[union-attr]


def test_day_file_smaller_than_its_slices(archive) -> None:
    slices: Path = archive["slices"]  # type: ignore[assignment]
    shrunk = 0
    for day, log in archive["days"].items():  # type: ignore[union-attr]
        parts = [p for p in (slices / day).iterdir() if p.is_file()]
        merged = len(ra_rows(log, "stime"))
        assert log.stat().st_size < sum(p.stat().st_size for p in parts), day
        assert merged < sum(len(ra_rows(p, "stime")) for p in parts), day
        shrunk += 1
    assert shrunk == len(CAPTURES)


def test_tcp_filter_leaves_only_tcp(archive) -> None:
    rows = ra_rows(archive["tcp_log"], "proto")  # type: ignore[arg-type]
    assert rows and {proto for (proto,) in rows} == {"tcp"}
    day_log = archive["days"][archive["tcp_day"]]  # type: ignore[index]
    everything = ra_rows(day_log, "proto")
    assert len(rows) == sum(1 for (proto,) in everything if proto == "tcp") < len(everything)


def test_bzip2_day_file_reads_back(archive, tmp_path: Path) -> None:
    """The third option of the article: bzip2.  The real ra reads the plain and the .bz2 file
    alike (it decompresses by suffix)."""
    log: Path = archive["days"][archive["tcp_day"]]  # type: ignore[index]
    packed = tmp_path / (log.name + ".bz2")
    packed.write_bytes(bz2.compress(log.read_bytes()))
    assert packed.stat().st_size < log.stat().st_size
    fields = ("stime", "proto", "saddr", "sport", "daddr", "dport", "spkts", "dpkts", "sbytes",
              "dbytes")
    assert ra_rows(packed, *fields) == ra_rows(log, *fields)
    os.remove(packed)


def test_day_file_as_the_real_racluster_makes_it(archive, tmp_path: Path) -> None:
    """The daily cron job's output, record for record, is what the real racluster writes."""
    slices: Path = archive["slices"]  # type: ignore[assignment]
    fields = ("srcid", "stime", "ltime", "dur", "trans", "proto", "saddr", "sport", "dir", "daddr",
              "dport", "spkts", "dpkts", "sbytes", "dbytes", "state", "mean", "min", "max")
    for day, log in archive["days"].items():  # type: ignore[union-attr]
        real = tmp_path / f"real-{day}.log"
        subprocess.run(["/usr/bin/racluster", "-X", "-R", str(slices / day), "-w", str(real)],
                       capture_output=True, timeout=60, check=True)
        assert ra_rows(log, *fields) == ra_rows(real, *fields), day
