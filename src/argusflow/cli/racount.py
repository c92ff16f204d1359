"""racount: count records, packets and bytes (racount(1), 3.0.8).

    racount [-M proto addr rmon] [ra options] [- FILTER]

Pipeline: argus-file source (only the counted columns decoded, as numpy: polars is imported
only for a selection it runs, or to name protocols) -> selection (filter, -t, -N) -> ops.count
tallies -> the totals line, then the protocol and address summaries asked for.
"""

from __future__ import annotations

import sys

import numpy as np

from argusflow.cli.client import ClientSession
from argusflow.cli.options import parse_argv
from argusflow.cli.runner import EXIT_MATCHED, entry
from argusflow.errors import ArgusflowError
from argusflow.ops.count import (
    ADDR_COLUMNS,
    KIND_ARP,
    KIND_RARP,
    KIND_UNKNOWN,
    PROTO_COLUMNS,
    TOTAL_COLUMNS,
    Tally,
)
from argusflow.records.schema import RTYPE_MAR
from argusflow.records.source import iter_copies

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
    tally = Tally(rmon="rmon" in modes, by_proto=want_proto, by_addr=want_addr,
                  name_columns=namer.columns if namer else ())
    columns = TOTAL_COLUMNS | frozenset(tally.name_columns)
    columns |= (PROTO_COLUMNS if want_proto else frozenset()) | (ADDR_COLUMNS if want_addr else frozenset())
    matched = count_inputs(session, tally, columns)
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


def count_inputs(session: ClientSession, tally: Tally, columns: frozenset[str]) -> int:
    """Tally every selected record; returns how many were selected (MARs too, as ra counts)."""
    numpy_filter = session.numpy_filter()
    if session.sources or (numpy_filter is None and (session.selects or session.count_range)):
        return count_batches(session, tally, columns)  # a selection polars runs, or -S
    matched = 0
    for path in session.inputs:
        matched += count_file(session, path, tally, columns | (numpy_filter.columns if numpy_filter
                                                                 else frozenset()))
    return matched


def count_file(session: ClientSession, path: str, tally: Tally, columns: frozenset[str]) -> int:
    """One input, without polars: the reader decodes only `columns` (numpy), the tally and the
    filter (when it has a numpy form) read them, and nothing is kept."""
    numpy_filter = session.numpy_filter()
    matched = 0

    def pick(cols: dict[str, np.ndarray]) -> np.ndarray:
        nonlocal matched
        n = len(cols["rtype"])
        keep = numpy_filter.numpy_mask(cols, n) if numpy_filter is not None else np.ones(n, bool)
        matched += int(keep.sum())
        tally.add({name: cols[name][keep & (cols["rtype"] != RTYPE_MAR)] for name in columns})
        return np.zeros(0, dtype=np.int64)

    try:
        for _ in iter_copies(path, columns, pick):
            pass
    except ArgusflowError as err:  # damage, or an input that cannot be read: as 3.0.8, the
        session.report(str(err))   # counts so far are still printed (exit status 2)
    return matched


def count_batches(session: ClientSession, tally: Tally, columns: frozenset[str]) -> int:
    session.decode_columns = columns
    matched = 0
    for batch, _ in session.batches():
        matched += batch.height
        flows = batch.filter(batch["rtype"] != RTYPE_MAR)
        tally.add({name: flows[name].to_numpy() for name in columns})
    return matched


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
