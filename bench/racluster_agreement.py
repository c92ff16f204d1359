#!/usr/bin/env python3
"""How many inputs our racluster merges exactly as the real one, per mode (issue 6 figures).

    bench/racluster_agreement.py FILE.argus ... [--modes default,saddr_daddr] [--conf racluster.conf]

For every Argus file and mode, both racluster programs write their output with -w, the real ra
prints both with 40 fields, and the lines are compared.  Prints one line per mode: identical
files out of all, and for the files that differ, the first differing field of the first record.
Inputs are made by the caller, e.g. `/usr/sbin/argus -X -S 5 -r small.pcap -w small5.argus`
(status records every 5 s, so that there is something to merge).  Standard library only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = REPO / ".venv" / "bin" / "racluster"
FIELDS = (
    "srcid seq stime ltime dur trans cause flgs proto saddr sport dir daddr dport spkts dpkts "
    "sbytes dbytes sappbytes dappbytes state smac dmac stos dtos sttl dttl sipid dipid swin dwin "
    "stcpb dtcpb tcprtt synack ackdat tcpopt mean min max stddev"
).split()
CONF3 = """filter="udp and port 53" model="saddr daddr proto dport" label="dns"
filter="tcp" model="saddr daddr proto dport"
filter="" model="proto"
"""
MODES = {
    "default": [], "saddr_daddr": ["-m", "saddr", "daddr"], "proto_dport": ["-m", "proto", "dport"],
    "saddr24": ["-m", "saddr/24"], "matrix": ["-m", "matrix"], "srcid": ["-m", "srcid"],
    "rmon": ["-M", "rmon"], "conf3": ["-f", "CONF3"],
}


def printed(path: Path) -> list[str]:
    if not path.exists():
        return []
    done = subprocess.run(["/usr/bin/ra", "-X", "-n", "-u", "-c", ",", "-s", *FIELDS, "-r",
                           str(path)], capture_output=True, text=True, timeout=600)
    return done.stdout.splitlines()


def compare(src: Path, opts: list[str], tmp: Path) -> str | None:
    """None when both outputs print alike, else what differs first."""
    real, ours = tmp / "real.argus", tmp / "ours.argus"
    for path in (real, ours):
        path.unlink(missing_ok=True)  # both writers append
    subprocess.run(["/usr/bin/racluster", "-X", "-r", str(src), "-w", str(real), *opts],
                   capture_output=True, timeout=600)
    done = subprocess.run([str(OURS), "-X", "-r", str(src), "-w", str(ours), *opts],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return f"exit {done.returncode}: {done.stderr.strip()[:80]}"
    a, b = printed(real), printed(ours)
    if len(a) != len(b):
        return f"{len(b)} records, real {len(a)}"
    bad = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    if not bad:
        return None
    x, y = bad[0]
    fields = [FIELDS[i] for i, (p, q) in enumerate(zip(x.split(","), y.split(","), strict=False))
              if p != q]
    return f"{len(bad)} of {len(a)} records; first in {','.join(fields)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        conf = tmp / "racluster.conf"
        conf.write_text(CONF3)
        for mode in args.modes.split(","):
            opts = [str(conf) if o == "CONF3" else o for o in MODES[mode]]
            results = {f.name: compare(f, opts, tmp) for f in args.files}
            same = sum(r is None for r in results.values())
            print(f"{mode}: {same}/{len(results)} identical", flush=True)
            causes = Counter(r.split("; first in ")[-1] for r in results.values() if r)
            for name, result in results.items():
                if result:
                    print(f"    {name}: {result}")
            if causes:
                print(f"    fields: {dict(causes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
