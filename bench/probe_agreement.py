#!/usr/bin/env python3
"""Per-capture agreement of our probe with the real argus 3.0.8 (issue 4's comparison).

    bench/probe_agreement.py [--rich] [--diff] [--only TEXT] [CAPTURE...]

For each capture (default: every file of ../shared/corpus): run `/usr/sbin/argus -X` and ours with
the same options (`--rich` adds `-S 5 -A -J -Z -m`), merge each with /usr/bin/racluster, print with
/usr/bin/ra -X -n -u -c , -s proto saddr sport daddr dport spkts dpkts sbytes dbytes state stime ltime
and compare the lines as multisets.  Captures where the real argus fails, makes no flow or gives
other flows on a second run are listed but not counted.  `--diff` prints the lines each side has
alone, to find the cause.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
OURS = REPO / ".venv" / "bin" / "argus"
REAL_ARGUS, RA, RACLUSTER = "/usr/sbin/argus", "/usr/bin/ra", "/usr/bin/racluster"
FIELDS = "proto saddr sport daddr dport spkts dpkts sbytes dbytes state stime ltime".split()
RICH = ["-S", "5", "-A", "-J", "-Z", "-m"]
RERUNS = 3  # more runs of the real argus, to catch the captures where it is not deterministic


def lines(argus_file: Path, merge: bool) -> Counter[str]:
    if merge:
        merged = argus_file.with_suffix(".cl")
        merged.unlink(missing_ok=True)  # racluster -w appends
        subprocess.run([RACLUSTER, "-X", "-r", str(argus_file), "-w", str(merged)],
                       capture_output=True, check=True)
        argus_file = merged
    out = subprocess.run([RA, "-X", "-n", "-u", "-c", ",", "-r", str(argus_file), "-s", *FIELDS],
                         capture_output=True, text=True).stdout
    return Counter(out.splitlines()[1:])


def run(cmd: list[str]) -> bool:
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def compare(capture: Path, options: list[str], tmp: Path, merge: bool, ours_program: Path = OURS
            ) -> tuple[Counter[str], Counter[str]] | Counter[str] | None:
    """(real lines, our lines); None when the real argus makes no flow; an empty Counter when
    two runs of the real argus disagree."""
    real, ours = tmp / "real.argus", tmp / "ours.argus"
    for f in (real, ours):
        f.unlink(missing_ok=True)
    if not run([REAL_ARGUS, "-X", *options, "-r", str(capture), "-w", str(real)]) \
            or not real.exists():
        return None
    real_lines = lines(real, merge)
    if not real_lines:
        return None
    # A capture on which the real argus reads memory it should not gives other flows each run
    # (tcpdump__mpls-traceroute; some runs agree): it is no oracle there.
    for _ in range(RERUNS):
        real.unlink()
        run([REAL_ARGUS, "-X", *options, "-r", str(capture), "-w", str(real)])
        if lines(real, merge) != real_lines:
            return Counter()
    run([str(ours_program), "-X", *options, "-r", str(capture), "-w", str(ours)])
    return real_lines, lines(ours, merge) if ours.exists() else Counter()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("captures", nargs="*", type=Path)
    ap.add_argument("--rich", action="store_true", help="-S 5 -A -J -Z -m on both sides")
    ap.add_argument("--records", action="store_true", help="compare unmerged records")
    ap.add_argument("--diff", action="store_true", help="print the differing lines")
    ap.add_argument("--only", default="", help="captures whose name contains TEXT")
    ap.add_argument("--ours", type=Path, default=OURS, help="our argus program (to try a change)")
    a = ap.parse_args()
    captures = a.captures or sorted(p for p in CORPUS.iterdir()
                                    if p.is_file() and not p.name.isupper()
                                    and p.suffix not in (".md", ".tsv"))
    options = RICH if a.rich else []
    total_common = total_real = total_ours = 0
    with tempfile.TemporaryDirectory() as tmp:
        for capture in captures:
            if a.only not in capture.name:
                continue
            got = compare(capture, options, Path(tmp), not a.records, a.ours)
            if got is None:
                print(f"{capture.name}: real argus makes no flow (not counted)")
                continue
            if not got:
                print(f"{capture.name}: real argus differs between runs (not counted)")
                continue
            real, ours = got
            common = sum((real & ours).values())
            n_real, n_ours = sum(real.values()), sum(ours.values())
            total_common, total_real, total_ours = (total_common + common, total_real + n_real,
                                                    total_ours + n_ours)
            mark = "" if common == n_real == n_ours else "  <--"
            print(f"{capture.name}: {common}/{n_real} real, {n_ours} ours{mark}")
            if a.diff and mark:
                for line in sorted((real - ours).elements()):
                    print(f"   real {line}")
                for line in sorted((ours - real).elements()):
                    print(f"   ours {line}")
    denom = max(total_real, total_ours) or 1
    print(f"total: {total_common} identical of {total_real} real / {total_ours} ours "
          f"= {100 * total_common / denom:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
