"""The installed `ra` console script as a user runs it: pipes, stdin, exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest


def sample(files: list[Path], name: str) -> Path:
    return next(p for p in files if p.name == name)


def test_write_to_stdout_pipes_into_the_real_ra(sample_argus_files, run_ours, run_real) -> None:
    source = sample(sample_argus_files, "tcp_rich.argus")
    ours = run_ours(["ra", "-X", "-r", str(source), "-w", "-"], text=False)
    assert ours.returncode == 0 and ours.stderr == b""
    via_pipe = run_real(["ra", "-X", "-n", "-r", "-"], input=ours.stdout)
    assert via_pipe.stdout == run_real(["ra", "-X", "-n", "-r", str(source)]).stdout


def test_reads_stdin(sample_argus_files, run_ours, run_real) -> None:
    source = sample(sample_argus_files, "udp.argus")
    ours = run_ours(["ra", "-X", "-n", "-r", "-"], input=source.read_bytes())
    assert ours.stdout == run_real(["ra", "-X", "-n", "-r", str(source)]).stdout


@pytest.mark.parametrize("argv, code", [
    (["-X", "-r", "{tcp}"], 0),
    (["-X", "-r", "{tcp}", "-", "udp"], 1),
    (["-X", "-r", "{missing}"], 2),
    (["-X", "-r", "{tcp}", "-s", "nosuchfield"], 2),
    (["-X", "-r", "{tcp}", "-", "tcp and and"], 2),
    (["-X", "-r", "{tcp}", "-N", "99999999999999999999"], 0),  # every record (was a traceback)
])
def test_exit_codes_and_one_line_errors(argv, code, sample_argus_files, run_ours, tmp_path) -> None:
    names = {"tcp": sample(sample_argus_files, "tcp.argus"), "missing": tmp_path / "missing"}
    run = run_ours(["ra", *(a.format(**names) for a in argv)])
    assert run.returncode == code
    assert "Traceback" not in run.stderr
    if code == 2:
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("ra: ")


def test_json_lines(sample_argus_files, run_ours) -> None:
    import json

    run = run_ours(["ra", "-X", "-M", "json", "-r", str(sample(sample_argus_files, "icmp.argus"))])
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(rows) == 5 and all("saddr" in r or "SrcAddr" in r for r in rows)
