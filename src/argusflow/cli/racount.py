"""racount: count records, packets and bytes (racount(1), 3.0.8).

    racount [-M proto addr rmon] [ra options] [- FILTER]

Pipeline: argus-file source (only the counted columns decoded) -> selection (filter, -t, -N)
-> ops.count tallies -> the totals line, then the protocol and address summaries asked for.
"""

from __future__ import annotations

import sys

import numpy as np

from argusflow.cli.client import ClientSession
from argusflow.cli.options import parse_argv
from argusflow.cli.runner import EXIT_MATCHED, entry
from argusflow.ops.count import COLUMNS, KIND_ARP, KIND_RARP, KIND_UNKNOWN, Tally
from argusflow.records.schema import RTYPE_MAR

USAGE = """usage: racount [-M proto addr rmon] [ra options] [- filter]
  -M proto      also a line per protocol (IP protocols, ether types, arp, rarp, unknown)
  -M addr       also the kinds of the distinct IPv4 addresses seen (unicast, private, ...)
  -M rmon       count every record both ways (addresses: either side, as sources)
  ra's options: -r -R -n -t -N -F -X -D (see ra -h)
Exit status: 0 records matched, 1 none matched, 2 error."""

HEADER = ("racount   records     total_pkts     src_pkts       dst_pkts       total_bytes        "
          "src_bytes          dst_bytes")
FIXED_NAMES = {KIND_ARP: "arp", KIND_RARP: "rarp", KIND_UNKNOWN: "unkwn"}


def counts_line(name: str, records: int, counters: np.ndarray) -> str:
    """One line as 3.0.8's printf("%8.8s  %-11Ld %-14Ld ...") of the name as its protocol
    printer leaves it (one blank after it: "ipv6-icmp " is cut to "ipv6-icm")."""
    spkts, dpkts, sbytes, dbytes = (int(v) for v in counters)
    label = (name + " ")[:8]
    return (f"{label:>8}  {records:<11} {spkts + dpkts:<14} {spkts:<14} {dpkts:<14} "
            f"{sbytes + dbytes:<18} {sbytes:<18} {dbytes:<18}")


def racount(argv: list[str]) -> int:
    args = parse_argv(argv, "racount")
    if args.flag("h"):
        print(USAGE)
        return EXIT_MATCHED
    modes = [m.lower() for m in args.all("M")]
    # 3.0.8 compares the first 4 letters for proto (so "prot" is enough) and addr
    want_proto = any(m.startswith("prot") for m in modes)
    want_addr = any(m.startswith("addr") for m in modes)
    session = ClientSession.from_args("racount", args)
    namer = BucketNamer(args.flag("n")) if want_proto else None
    tally = Tally(rmon="rmon" in modes, name_columns=namer.columns if namer else ())
    session.decode_columns = COLUMNS | frozenset(tally.name_columns)
    matched = 0
    for batch, _ in session.batches():
        matched += batch.height
        flows = batch.filter(batch["rtype"] != RTYPE_MAR)
        tally.add({name: flows[name].to_numpy() for name in session.decode_columns})
    lines = [HEADER, counts_line("sum", tally.records + 1, tally.counters)]
    if want_proto:
        lines.append("Protocol Summary")
        lines += [counts_line(namer.name(code, bucket.first) if namer else "",  # type: ignore[arg-type]
                              bucket.records, bucket.counters)
                  for code, bucket in tally.ordered_buckets()]
    if want_addr:
        lines.append("Address Summary")
        lines += address_lines(tally)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return session.exit_code(matched)


def address_lines(tally: Tally) -> list[str]:
    counts = tally.address_counts()
    if tally.rmon:
        return [f"  {label:<25} {s:<10}" for label, s, _ in counts]
    return [f"  {label:<25} src {s:<10}  dst {d:<10}" for label, s, d in counts]


class BucketNamer:
    """A protocol bucket's name: fixed for ARP, RARP and unknown keys, else the Proto text ra
    prints for the bucket's first record (`-n`/`-nn` as for ra)."""

    def __init__(self, nflag: int) -> None:
        import polars as pl

        from argusflow.records.printer import PrintOptions, proto_text

        self.expr: pl.Expr = proto_text(PrintOptions(nflag=nflag % 4))
        self.columns = tuple(sorted(set(self.expr.meta.root_names()) | {"rtype"}))

    def name(self, code: int, first: dict[str, object]) -> str:
        kind = code >> 16
        if kind in FIXED_NAMES:
            return FIXED_NAMES[kind]
        import polars as pl

        from argusflow.records.schema import SCHEMA

        row = pl.DataFrame({k: pl.Series([v], dtype=SCHEMA[k]) for k, v in first.items()})
        return str(row.select(self.expr).item())


def main() -> None:
    entry("racount", racount)
