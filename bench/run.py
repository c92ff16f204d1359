#!/usr/bin/env python3
"""Benchmark argusflow against the real Argus 3.0.8 tools: the median ratio ours/real, as a markdown table.

    bench/run.py [--sizes small,medium] [--runs 5] [--rows ra] [--scratch /tmp/argusflow-bench]

1. The standard inputs of ../shared/bench/README.md (gen_pcap.py, seed 1: small 100k, medium 1M,
   large 5M packets) are made in a scratch directory, and the real argus turns each one into X.argus
   (`/usr/sbin/argus -X -r X.pcap -w X.argus`). They are reused on later runs (--regen to remake,
   --clean to delete them at the end). Large is 3.4 GB, and you have to ask for it.
2. Each row pairs one of our commands (A) with the real tool (B). They run in turn, A B A B ...,
   after a warm-up run of each. The ratio A/B is taken pair by pair, and the median is reported
   with min-max. This is the method of ../shared/bench/measure.py: whole processes, a monotonic
   wall clock, and os.wait4 rusage for CPU and peak RSS. Pairing keeps the ratio meaningful on a
   noisy, shared machine.
3. Rows that are Python calls (decode only) run in a child venv python. They report records/s.

Standard library only, so any python3 >= 3.11 can run it. Our side runs from --venv (default .venv).
Add rows to PAIRED_ROWS / CALL_ROWS below as programs land.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_ARGUS = "/usr/sbin/argus"
REAL_RACOUNT = "/usr/bin/racount"
RUN_TIMEOUT_S = 600.0  # one run of one command. A hung command shows up as a failed row.


# ---------------------------------------------------------------- the inputs


@dataclass(frozen=True)
class Size:
    name: str
    packets: int
    truth: bool  # ../shared/bench/README.md writes --truth for small and medium only
    sha256: str  # of the pcap as that README gives it (NumPy 2.4.6)


SIZES = {
    s.name: s
    for s in (
        Size("small", 100_000, True, "8ddf1e7145c4df2f7d96f2db10eda6ae6f41429bbdb36aef4d12b917fe459ce9"),
        Size("medium", 1_000_000, True, "c0cb2a395fdbb86859d42c71929baae15d3b23baca328cbf45c6d3d5598b5301"),
        Size("large", 5_000_000, False, "6de5d58fabc6d91c55220c4c7d8bd28c21cb7f003ba80b72a1f51c7fb6e75019"),
    )
}
BYTES_PER_PACKET = 700  # pcap (~680) + argus file (~10) per packet: enough to check free space


@dataclass(frozen=True)
class Input:
    size: Size
    pcap: Path
    argus: Path
    records: int  # every record in X.argus (management records included), as racount counts them


# ---------------------------------------------------------------- the rows


@dataclass(frozen=True)
class PairedRow:
    """Ours (A) against the real tool (B), both as argv templates.

    Placeholders: {bin} our venv's bin dir, {argus} and {pcap} the standard input, {out} a scratch
    file of this row. stdout and stderr go to /dev/null, so `ra -n > /dev/null` is simply `ra -n`.
    Use ("sh", "-c", "rm -f {out}; exec ...") when a command must start from a clean file
    (argus -w appends).
    """

    name: str
    ours: tuple[str, ...]
    real: tuple[str, ...]
    reads: str = "argus"  # "argus" or "pcap": what the records column counts


@dataclass(frozen=True)
class CallRow:
    """A Python call timed inside one child process: `module:function(path)` on the input.

    The function gets the path of the input as a str. It returns a polars DataFrame (one row per
    record) or an iterable of them.
    """

    name: str
    target: str
    reads: str = "argus"
    target_rate: float = 0.0  # records/s the issue asks for (shown in the note)
    # A real command run in turn with each call (call, real, call, real ...) by the same child, so
    # that the ratio survives a loaded machine as the paired rows do. None: records/s only.
    real: tuple[str, ...] | None = None


PAIRED_ROWS: list[PairedRow] = [
    PairedRow(
        "ra -n > /dev/null",
        ("{bin}/ra", "-X", "-n", "-r", "{argus}"),
        ("/usr/bin/ra", "-X", "-n", "-r", "{argus}"),
    ),
    PairedRow(
        "ra -w /dev/null",
        ("{bin}/ra", "-X", "-r", "{argus}", "-w", "/dev/null"),
        ("/usr/bin/ra", "-X", "-r", "{argus}", "-w", "/dev/null"),
    ),
    PairedRow(
        "ra filter 'tcp and src pkts gt 10'",
        ("{bin}/ra", "-X", "-n", "-r", "{argus}", "-", "tcp and src pkts gt 10"),
        ("/usr/bin/ra", "-X", "-n", "-r", "{argus}", "-", "tcp and src pkts gt 10"),
    ),
    PairedRow(
        "racluster -w /dev/null",
        ("{bin}/racluster", "-X", "-r", "{argus}", "-w", "/dev/null"),
        ("/usr/bin/racluster", "-X", "-r", "{argus}", "-w", "/dev/null"),
    ),
    PairedRow(
        "racluster -m saddr daddr -w /dev/null",
        ("{bin}/racluster", "-X", "-r", "{argus}", "-m", "saddr", "daddr", "-w", "/dev/null"),
        ("/usr/bin/racluster", "-X", "-r", "{argus}", "-m", "saddr", "daddr", "-w", "/dev/null"),
    ),
    # Issue 3's five filters, selecting into -w /dev/null (the reader judges records on the
    # filter's columns, then copies the kept ones' bytes; the real ra re-encodes them).
    *[PairedRow(
        f"ra -w /dev/null - {text}",
        ("{bin}/ra", "-X", "-r", "{argus}", "-w", "/dev/null", "-", text),
        ("/usr/bin/ra", "-X", "-r", "{argus}", "-w", "/dev/null", "-", text),
    ) for text in ("tcp", "dst port 53", "src pkts gt 10 and not net 10.0.0.0/8", "syn and not synack",
                   "(tcp or udp) and bytes gt 1000")],
    # The probe: real argus ends on a whole second (1 s poll), so read the cpu ratio here.
    PairedRow(
        "argus -r X.pcap -w out (probe)",
        ("sh", "-c", "rm -f {out}; exec {bin}/argus -X -r {pcap} -w {out}"),
        ("sh", "-c", "rm -f {out}; exec /usr/sbin/argus -X -r {pcap} -w {out}"),
        reads="pcap",
    ),
    # rasplit into one-minute files (a fresh directory each run: rasplit appends to what is there).
    PairedRow(
        "rasplit -M time 1m",
        ("sh", "-c", "rm -rf {out}.split; exec {bin}/rasplit -X -M time 1m -r {argus} -w {out}.split/%H.%M"),
        ("sh", "-c", "rm -rf {out}.split; exec /usr/bin/rasplit -X -M time 1m -r {argus} "
         "-w {out}.split/%H.%M"),
    ),
    # rasort holds every record (as read, only the keys decoded), sorts once, writes in order.
    PairedRow(
        "rasort -m bytes -w /dev/null",
        ("{bin}/rasort", "-X", "-r", "{argus}", "-m", "bytes", "-w", "/dev/null"),
        ("/usr/bin/rasort", "-X", "-r", "{argus}", "-m", "bytes", "-w", "/dev/null"),
    ),
    PairedRow(
        "racount",
        ("{bin}/racount", "-X", "-r", "{argus}"),
        ("/usr/bin/racount", "-X", "-r", "{argus}"),
    ),
    # Later issues add rows here (rabins, radium, ...), in the same form.
]

CALL_ROWS: list[CallRow] = [
    # racount reads every record and does almost nothing else: the real tools' decoding cost.
    CallRow("decode only (records.codec.read_file)", "argusflow.records.codec:read_file", target_rate=1e6,
            real=("/usr/bin/racount", "-X", "-r", "{argus}")),
]


# ---------------------------------------------------------------- timing (the measure.py method)


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    rss_mib: float
    rc: int


def run_once(argv: Sequence[str], timeout: float = RUN_TIMEOUT_S) -> Sample:
    """One whole process, as ../shared/bench/measure.py's run_once times it, plus a timeout."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, proc.returncode)


def first_error(argv: Sequence[str]) -> tuple[int, str]:
    """Run once with stderr kept: the exit code and the first line of stderr. Also warms the cache."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=RUN_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return -1, str(err)
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return done.returncode, (lines[-1] if lines else "")


def paired(a: Sequence[str], b: Sequence[str], runs: int, warmup: int) -> tuple[list[Sample], list[Sample]]:
    for _ in range(warmup):
        run_once(a)
        run_once(b)
    res_a: list[Sample] = []
    res_b: list[Sample] = []
    for _ in range(runs):
        res_a.append(run_once(a))
        res_b.append(run_once(b))
    return res_a, res_b


# ---------------------------------------------------------------- formatting


def spread(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """median (min–max)"""
    if not values:
        return "—"
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def rate(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.0f} k"


COLUMNS = ("row", "input", "records", "ours wall s", "real wall s", "ours/real wall", "ours/real cpu",
           "ours RSS MiB", "real RSS MiB", "note")


def table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# ---------------------------------------------------------------- making the inputs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def count_records(argus_file: Path) -> int:
    """racount's record total (management records included)."""
    out = subprocess.run([REAL_RACOUNT, "-X", "-r", str(argus_file)], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "sum":
            return int(fields[1])
    raise SystemExit(f"bench: racount printed no 'sum' line for {argus_file}")


def make_input(size: Size, scratch: Path, shared: Path, python: str, regen: bool) -> Input:
    pcap, argus = scratch / f"{size.name}.pcap", scratch / f"{size.name}.argus"
    stamp = scratch / f"{size.name}.ready.json"
    if not regen and stamp.is_file() and pcap.is_file() and argus.is_file():
        info = json.loads(stamp.read_text())
        if info.get("packets") == size.packets:
            return Input(size, pcap, argus, info["records"])
    need = size.packets * BYTES_PER_PACKET
    free = shutil.disk_usage(scratch).free
    if free < need:
        raise SystemExit(f"bench: {size.name} needs about {need / 1e9:.1f} GB in {scratch}, "
                         f"{free / 1e9:.1f} GB free (choose another --scratch)")
    stamp.unlink(missing_ok=True)
    cmd = [python, str(shared / "bench" / "gen_pcap.py"), "--packets", str(size.packets), "--seed", "1",
           "-o", str(pcap), "-q"]
    if size.truth:
        cmd += ["--truth", str(scratch / f"{size.name}.truth.csv")]
    log(f"making {pcap} ({size.packets:,} packets)")
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    digest = sha256_of(pcap)
    if digest != size.sha256:
        log(f"warning: {pcap.name} sha256 {digest[:16]}... differs from ../shared/bench/README.md "
            "(another NumPy version?); figures are not comparable with the baseline")
    argus.unlink(missing_ok=True)  # argus -w appends to a file that is already there
    log(f"making {argus} with the real argus")
    subprocess.run([REAL_ARGUS, "-X", "-r", str(pcap), "-w", str(argus)], check=True,
                   stdin=subprocess.DEVNULL)
    records = count_records(argus)
    stamp.write_text(json.dumps({"packets": size.packets, "sha256": digest, "records": records}))
    return Input(size, pcap, argus, records)


def existing_input(path: Path) -> Input:
    """--argus FILE: an Argus file made elsewhere; no pcap behind it."""
    if not path.is_file():
        raise SystemExit(f"bench: --argus {path}: no such file")
    return Input(Size(path.stem, 0, False, ""), Path(""), path, count_records(path))


# ---------------------------------------------------------------- measuring the rows


def fill(template: Sequence[str], inp: Input, bin_dir: Path, out: Path) -> list[str]:
    values = {"bin": str(bin_dir), "argus": str(inp.argus), "pcap": str(inp.pcap), "out": str(out)}
    return [part.format(**values) for part in template]


def measure_paired(row: PairedRow, inp: Input, bin_dir: Path, scratch: Path, runs: int) -> list[str]:
    ours = fill(row.ours, inp, bin_dir, scratch / "out_ours.tmp")
    real = fill(row.real, inp, bin_dir, scratch / "out_real.tmp")
    records = f"{inp.records:,}" if row.reads == "argus" else f"{inp.size.packets:,} pkts"
    base = [row.name, inp.size.name, records]
    if not Path(ours[0]).exists() and not shutil.which(ours[0]):
        return base + ["—"] * 6 + [f"ours not installed: {ours[0]}"]
    rc_real, err_real = first_error(real)
    rc_ours, err_ours = first_error(ours)
    if rc_ours != rc_real:
        return base + ["—"] * 6 + [f"ours exit {rc_ours} (real {rc_real}): {err_ours[:120]}"]
    log(f"{row.name} / {inp.size.name}: {runs} pairs")
    a, b = paired(ours, real, runs, warmup=1)
    wall = [x.wall / y.wall for x, y in zip(a, b, strict=True) if y.wall > 0]
    cpu = [x.cpu / y.cpu for x, y in zip(a, b, strict=True) if y.cpu > 0]
    rcs = sorted({s.rc for s in a + b})
    note = "" if rcs == [rc_real] else f"exit codes varied: {rcs}"
    if not note:
        count, unit = (inp.records, "records") if row.reads == "argus" else (inp.size.packets, "packets")
        note = f"ours {rate(count / statistics.median(s.wall for s in a))} {unit}/s"
    return base + [
        spread([s.wall for s in a]), spread([s.wall for s in b]),
        spread(wall, "{:.2f}"), spread(cpu, "{:.2f}"),
        f"{statistics.median(s.rss_mib for s in a):.0f}", f"{statistics.median(s.rss_mib for s in b):.0f}",
        note,
    ]


CALL_SNIPPET = r"""
import importlib, json, os, resource, subprocess, sys, time
module, _, func = sys.argv[1].partition(":")
fn = getattr(importlib.import_module(module), func)
path, runs, real = sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])

def count(result):
    if hasattr(result, "height"):
        return result.height
    return sum(batch.height for batch in result)

def run_real():
    t0 = time.monotonic()
    p = subprocess.Popen(real, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    return time.monotonic() - t0, ru.ru_utime + ru.ru_stime

n = count(fn(path))  # warm-up: imports, JIT, page cache
if real:
    run_real()
walls, cpus, real_walls, real_cpus = [], [], [], []
for _ in range(runs):
    w0, c0 = time.perf_counter(), time.process_time()
    n = count(fn(path))
    walls.append(time.perf_counter() - w0)
    cpus.append(time.process_time() - c0)
    if real:
        w, c = run_real()
        real_walls.append(w)
        real_cpus.append(c)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"records": n, "wall": walls, "cpu": cpus, "rss_mib": rss,
                  "real_wall": real_walls, "real_cpu": real_cpus}))
"""


def measure_call(row: CallRow, inp: Input, bin_dir: Path, runs: int) -> list[str]:
    base = [row.name, inp.size.name, f"{inp.records:,}"]
    path = inp.argus if row.reads == "argus" else inp.pcap
    real = fill(row.real, inp, bin_dir, Path(os.devnull)) if row.real else []
    log(f"{row.name} / {inp.size.name}: {runs} calls" + (f", each followed by {real[0]}" if real else ""))
    done = subprocess.run([str(bin_dir / "python"), "-c", CALL_SNIPPET, row.target, str(path), str(runs),
                           json.dumps(real)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT_S * 2)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return base + ["—"] * 6 + [f"failed: {lines[-1][:120] if lines else done.returncode}"]
    res = json.loads(done.stdout.strip().splitlines()[-1])
    per_s = res["records"] / statistics.median(res["wall"])
    note = f"**{rate(per_s)} records/s**"
    if row.target_rate:
        note += f" (target ≥ {rate(row.target_rate)})"
    if real:
        note += f"; real = `{Path(real[0]).name}` (whole process)"
    if res["records"] != inp.records:
        note += f"; decoded {res['records']:,} records, racount {inp.records:,}"
    wall = [a / b for a, b in zip(res["wall"], res["real_wall"], strict=False) if b > 0]
    cpu = [a / b for a, b in zip(res["cpu"], res["real_cpu"], strict=False) if b > 0]
    return base + [spread(res["wall"]), spread(res["real_wall"]), spread(wall, "{:.2f}"),
                   spread(cpu, "{:.2f}"), f"{res['rss_mib']:.0f}", "—", note]


# ---------------------------------------------------------------- main


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,medium",
                    help="comma list of small, medium, large (default small,medium; large is 3.4 GB)")
    ap.add_argument("--runs", type=int, default=5, help="timed pairs per row (default 5)")
    ap.add_argument("--rows", default="", help="only rows whose name contains this text")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/argusflow-bench"),
                    help="where the inputs go (default /tmp/argusflow-bench)")
    ap.add_argument("--venv", type=Path, default=REPO_ROOT / ".venv", help="our side (default .venv)")
    ap.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared", help="default ../shared")
    ap.add_argument("--regen", action="store_true", help="remake the inputs even if they are there")
    ap.add_argument("--clean", action="store_true", help="delete the scratch directory at the end")
    ap.add_argument("--out", type=Path, help="also write the markdown table to this file")
    ap.add_argument("--argus", type=Path, action="append", default=[],
                    help="also an existing Argus file (e.g. /tmp/bench/big.argus, medium x5); "
                         "rows that read a pcap are skipped for it")
    return ap.parse_args(argv)


def check_setup(args: argparse.Namespace, sizes: list[str]) -> None:
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"bench: unknown size {', '.join(unknown)} (small, medium, large)")
    if not (args.shared / "bench" / "gen_pcap.py").is_file():
        raise SystemExit(f"bench: needs {args.shared}/bench/gen_pcap.py (the shared folder)")
    for tool in (REAL_ARGUS, REAL_RACOUNT):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"bench: needs the real {tool} (Debian argus-server, argus-client)")
    if not (args.venv / "bin" / "python").exists():
        raise SystemExit(f"bench: no venv at {args.venv} (make run creates it)")


def compile_package(python: Path) -> None:
    """Byte-compile our package once, as a regular install would.

    An editable install under PYTHONDONTWRITEBYTECODE=1 never writes .pyc files, so every timed
    run would compile our sources again (0.1-0.2 s) and the ratios would overstate start-up.
    """
    subprocess.run([str(python), "-m", "compileall", "-q", str(REPO_ROOT / "src" / "argusflow")],
                   check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    check_setup(args, sizes)
    args.scratch.mkdir(parents=True, exist_ok=True)
    bin_dir = args.venv / "bin"
    python = bin_dir / "python"
    compile_package(python)
    inputs = [make_input(SIZES[s], args.scratch, args.shared, str(python), args.regen) for s in sizes]
    inputs += [existing_input(path) for path in args.argus]

    lines = [
        f"argusflow bench {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {git_head()}, "
        f"{os.cpu_count()} cpus, {platform.python_implementation()} {platform.python_version()}; "
        f"median of {args.runs} pairs after 1 warm-up, (min–max); ratios are ours/real pair by pair.",
        "",
        table_line(COLUMNS),
        table_line(["---"] * 2 + ["---:"] * (len(COLUMNS) - 3) + ["---"]),
    ]
    print("\n".join(lines), flush=True)
    for inp in inputs:
        for row in PAIRED_ROWS:
            if args.rows in row.name and (row.reads == "argus" or inp.pcap.name):
                lines.append(table_line(measure_paired(row, inp, bin_dir, args.scratch, args.runs)))
                print(lines[-1], flush=True)
        for call in CALL_ROWS:
            if args.rows in call.name:
                lines.append(table_line(measure_call(call, inp, bin_dir, args.runs)))
                print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    if args.clean:
        shutil.rmtree(args.scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
