"""Render-only speed of the ra text printer: records/s over a decoded Argus file.

    .venv/bin/python bench/render_speed.py [/tmp/bench/big.argus]

Decodes the file once, then times `Printer.write` (to /dev/null) per option set, with batches
merged to ~100k rows as the CLI's text sink does.  CPU seconds (all threads) and wall seconds.
"""

from __future__ import annotations

import os
import sys
import time

import polars as pl

from argusflow.records.printer import Printer, PrintOptions, parse_field_list
from argusflow.records.source import iter_batches

FIELDS_20 = ("stime ltime dur flgs proto saddr sport dir daddr dport spkts dpkts sbytes dbytes rate "
             "load state sttl dttl tcprtt").split()
SETS: dict[str, dict] = {
    "default": {},
    "-n": {"nflag": 1},
    "-n -s (20 fields)": {"nflag": 1, "columns": parse_field_list(FIELDS_20)},
}


def merged(path: str, rows: int = 100_000) -> list[pl.DataFrame]:
    out: list[pl.DataFrame] = []
    pending: list[pl.DataFrame] = []
    for batch in iter_batches(path):
        pending.append(batch)
        if sum(b.height for b in pending) >= rows:
            out.append(pl.concat(pending))
            pending = []
    if pending:
        out.append(pl.concat(pending))
    return out


def main() -> None:
    os.environ.setdefault("TZ", "UTC")
    path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/bench/big.argus"
    batches = merged(path)
    n = sum(b.height for b in batches)
    with open(os.devnull, "wb") as sink:
        for name, options in SETS.items():
            printer = Printer(PrintOptions(**options))
            cpu, wall = time.process_time(), time.perf_counter()
            for batch in batches:
                printer.write(batch, sink)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            rate = n / wall / 1e3
            print(f"{name:20s} {n} records  cpu {cpu:.2f} s  wall {wall:.2f} s  {rate:.0f}k records/s")


if __name__ == "__main__":
    main()
