"""rastream: the same files as rasplit, finished at the right moment, handed to -f, and closed
properly on SIGTERM; read from files and from a live radium.

Every process is started by the test and ended by its pid; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import started

from argusflow.cli.rasplit import SplitWriter, rasplit
from argusflow.cli.rastream import StreamClock, rastream
from argusflow.cli.runner import run_main
from argusflow.ops.split import SplitMode, Splitter
from argusflow.records.codec import read_file

OUR_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
FIELDS = "stime ltime dur proto saddr sport daddr dport spkts dpkts sbytes dbytes state flgs".split()


def inproc(body, program: str, argv: list[str], cwd: Path) -> tuple[int, str]:
    err = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err):
            code = run_main(program, body, argv)
    finally:
        os.chdir(old)
    return code, err.getvalue()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def printed(path: Path) -> str:
    done = subprocess.run(["/usr/bin/ra", "-X", "-n", "-u", "-c", ",", "-s", *FIELDS, "-r", path],
                          capture_output=True, text=True, timeout=60)
    return done.stdout


def ends_with_stop_mar(path: Path) -> bool:
    batch = read_file(str(path))
    return batch["rtype"][-1] == 0x80 and batch["mar_raw"][-1][1] & 0xF0 == 0x30


def source_file(corpus_argus_files: dict[str, Path], name: str = "ndpi__wechat.pcap") -> Path:
    if name not in corpus_argus_files:
        pytest.skip(f"{name}: no flow records from the real argus")
    return corpus_argus_files[name]


POST = """#!/bin/sh
# rastream -f: called as `post.sh -r /full/path`; keep a copy of the file as it was handed over.
[ "$1" = "-r" ] || exit 3
echo "$2" >> "{log}"
cp "$2" "{snap}/$(echo "$2" | tr / _)"
"""


def test_files_like_rasplit_and_each_handed_to_the_program(corpus_argus_files, tmp_path: Path
                                                           ) -> None:
    source = source_file(corpus_argus_files)
    log, snap = tmp_path / "post.log", tmp_path / "snap"
    snap.mkdir()
    post = tmp_path / "post.sh"
    post.write_text(POST.format(log=log, snap=snap))
    post.chmod(0o755)
    stream_root, split_root = tmp_path / "stream", tmp_path / "split"
    template = "%Y-%m-%d/argus.%H.%M.%S"
    code, err = inproc(rastream, "rastream", ["-X", "-r", str(source), "-M", "time", "10m", "-B",
                                              "0", "-f", str(post), "-w", f"{stream_root}/{template}"],
                       tmp_path)
    assert code == 0, err
    inproc(rasplit, "rasplit", ["-X", "-r", str(source), "-M", "time", "10m", "-w",
                                f"{split_root}/{template}"], tmp_path)
    names = tree(stream_root)
    assert names == tree(split_root)
    for name in names:
        assert printed(stream_root / name) == printed(split_root / name)
    handed = log.read_text().split()
    assert sorted(handed) == sorted(str(stream_root / n) for n in names)  # each once, full path
    for path in handed:  # complete when handed over: ends with its STOP MAR
        assert ends_with_stop_mar(snap / path.replace("/", "_"))


def record_rows(template: pl.DataFrame, times_s: list[float]) -> pl.DataFrame:
    """Flow records at the given times (0.1 s long), from a sample record."""
    us = (np.array(times_s) * 1e6).astype(np.int64)
    rows = pl.concat([template] * len(times_s))
    return rows.with_columns(sstart=pl.Series(us), slast=pl.Series(us + 100_000),
                             dstart=pl.lit(0, pl.Int64), dlast=pl.lit(0, pl.Int64))


def test_hold_keeps_a_bin_open_for_late_records(bundled_sample: Path, tmp_path: Path) -> None:
    """-B 30: the 12:00 file stays open until records pass 12:01:30; a late record still joins it."""
    sample = read_file(str(bundled_sample))
    start_mar = sample["mar_raw"][0]
    flow = sample.filter(pl.col("rtype") != 0x80).head(1)
    closed: list[str] = []
    splitter = Splitter(SplitMode("time", 1, "m"), str(tmp_path / "m.%H%M%S"), utc=True,
                        first_start_skipped=True)
    writer = SplitWriter(splitter, on_close=closed.append, retry_delay=0.0)
    clock = StreamClock(writer, hold_s=30.0, live=False)
    base = 1_700_000_400.0  # 22:20:00 UTC
    for times in ([base + 1, base + 50], [base + 70], [base + 55], [base + 95]):
        writer.write(record_rows(flow, times), start_mar)
        clock.after_batch()
        if times == [base + 55]:
            assert closed == []  # 22:21:10 is within the hold of the 22:20 bin
    assert closed == [str(tmp_path / "m.222000")]
    writer.finish_all()
    first = read_file(str(tmp_path / "m.222000"))
    assert first.filter(pl.col("rtype") != 0x80).height == 3  # the late record included
    assert ends_with_stop_mar(tmp_path / "m.222000")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"radium exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                s.settimeout(2)
                s.recv(128)
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listening on {HOST}:{port}")


@contextlib.contextmanager
def quiet_server(data: bytes):
    """An Argus source that sends `data` to its client and then stays connected, silent."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    conns: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            conns.append(conn)
            conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for conn in conns:
            conn.close()


def test_live_stream_from_radium(corpus_argus_files, tmp_path: Path) -> None:
    """rastream -S from our radium serving a file: the same files as rasplit makes."""
    source = source_file(corpus_argus_files)
    port = free_port()
    with started([OUR_BIN / "radium", "-X", "-r", source, "-P", port, "-B", HOST], tmp_path,
                 "radium") as rad:
        wait_listening(port, rad)
        out = tmp_path / "live"
        with started([OUR_BIN / "rastream", "-X", "-S", f"{HOST}:{port}", "-M", "time", "10m",
                      "-w", f"{out}/%H%M"], tmp_path, "rastream") as stream:
            assert stream.wait(30) == 0, (tmp_path / "rastream.err").read_text()
    inproc(rasplit, "rasplit", ["-X", "-r", str(source), "-M", "time", "10m", "-w",
                                f"{tmp_path}/split/%H%M"], tmp_path)
    assert tree(out) == tree(tmp_path / "split")
    for name in tree(out):
        assert printed(out / name) == printed(tmp_path / "split" / name)


def test_sigterm_finishes_the_open_file(corpus_argus_files, tmp_path: Path) -> None:
    """SIGTERM while a live source is quiet: the open file is finished properly (renamed into
    place, STOP MAR last, no temporary file left)."""
    source = source_file(corpus_argus_files)
    with quiet_server(source.read_bytes()) as port:
        out = tmp_path / "live"
        with started([OUR_BIN / "rastream", "-X", "-S", f"{HOST}:{port}", "-M", "count", "100000",
                      "-w", f"{out}/all."], tmp_path, "rastream") as stream:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not list(out.glob(".all.aa.part-*")):
                time.sleep(0.1)
            time.sleep(1.0)  # let the whole file arrive
            assert stream.poll() is None, (tmp_path / "rastream.err").read_text()
            assert tree(out) == [f".all.aa.part-{stream.pid}"]  # being written: hidden
            stream.send_signal(signal.SIGTERM)
            assert stream.wait(15) == 0, (tmp_path / "rastream.err").read_text()
    assert tree(out) == ["all.aa"]
    assert ends_with_stop_mar(out / "all.aa")
    assert printed(out / "all.aa") == printed(source)


def test_quiet_live_stream_finishes_its_bin_in_real_time(corpus_argus_files, tmp_path: Path
                                                         ) -> None:
    """A live source that goes quiet: the clock runs on from the last record, so the open time
    bin is finished (and handed to -f) about -B seconds after its end, without more records."""
    source = source_file(corpus_argus_files, "ndpi__synscan.pcap")
    log = tmp_path / "post.log"
    post = tmp_path / "post.sh"
    post.write_text(f'#!/bin/sh\necho "$2" >> "{log}"\n')
    post.chmod(0o755)
    with quiet_server(source.read_bytes()) as port:
        out = tmp_path / "live"
        with started([OUR_BIN / "rastream", "-X", "-S", f"{HOST}:{port}", "-M", "time", "2s",
                      "-B", "1", "-f", post, "-w", f"{out}/s.%H%M%S"], tmp_path, "rastream") as stream:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (log.exists() and
                                                       len(log.read_text().split()) == len(tree(out))
                                                       and tree(out) and not list(out.glob(".*"))):
                time.sleep(0.2)
            assert stream.poll() is None
            assert tree(out) and not list(out.glob(".*")), "every bin finished while still connected"
    assert sorted(log.read_text().split()) == sorted(str(out / n) for n in tree(out))


def test_unwritable_directory_is_retried_then_one_line(corpus_argus_files, tmp_path: Path,
                                                       monkeypatch) -> None:
    """A directory that cannot be made: the open is retried, then one line and exit 2; the -f
    program never sees a file that was not written."""
    monkeypatch.setenv("ARGUSFLOW_RETRY_DELAY", "0")
    source = source_file(corpus_argus_files)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    log = tmp_path / "post.log"
    post = tmp_path / "post.sh"
    post.write_text(f'#!/bin/sh\necho "$2" >> "{log}"\n')
    post.chmod(0o755)
    code, err = inproc(rastream, "rastream", ["-X", "-r", str(source), "-M", "time", "10m", "-f",
                                              str(post), "-w", f"{blocker}/sub/%H%M"], tmp_path)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("rastream: ") and "cannot open for writing" in lines[-1]
    assert len(lines) == 4 and all("retrying" in line for line in lines[:-1])
    assert not log.exists()
