"""rasort: sort Argus records by fields (rasort(1), 3.0.8).

    rasort [-m FIELD ...] [-v] [-M replace] [ra options] [- FILTER]

Pipeline: argus-file source -> selection (filter, -t, -N) -> ops.sort -> text printer or Argus
writer.  As 3.0.8 does, every selected flow record is held until the inputs end (MARs are
dropped; -w starts the file with the last input's START MAR), then all are sorted together; ties
keep their input order.  Records are held as the input holds them (their bytes) with only the sort
keys decoded: -w writes the bytes in the new order, and printing decodes them again in order,
a slice at a time, with only the columns the printer reads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from argusflow.cli.client import PICKER_COLUMNS, ClientSession, picker_start_mar, printing_projection
from argusflow.cli.malloc import reuse_freed_memory
from argusflow.cli.options import ParsedArgs, parse_argv
from argusflow.cli.printing import make_printer
from argusflow.cli.runner import EXIT_MATCHED, entry
from argusflow.errors import CorruptInput, UsageError
from argusflow.ops.sort import SortKey, key_columns, parse_keys, sort_order
from argusflow.records.codec import RecordReader
from argusflow.records.framing import record_bounds
from argusflow.records.output import ArgusOutput, gather_words, passed_through
from argusflow.records.schema import RTYPE_MAR
from argusflow.records.source import iter_raw_batches

USAGE = """usage: rasort [-m FIELD ...] [-v] [-M replace] [ra options] [- filter]
  -m FIELD ...  sort keys, in order (none: the input order, as 3.0.8): stime ltime trans dur
                mean min max smac dmac saddr[/cidr] daddr[/cidr] proto sipid dipid sport dport
                stos dtos sttl dttl bytes sbytes dbytes pkts spkts dpkts appbytes sappbytes
                dappbytes load sload dload loss ploss rate srate drate tranref seq smpls dmpls
                svlan dvlan srcid stcpb dtcpb tcprtt sloss dloss sploss dploss smaxsz sminsz
                dmaxsz dminsz sdsb ddsb sco dco sas das sum runtime idle
                (counters, rates and loads sort largest first, as in 3.0.8)
  -v            reverse every key's direction
  -M replace    sort each -r file on its own and replace it with the sorted records
  -w FILE       write the sorted records as Argus ('-' is stdout) instead of printing
  ra's options: -r -R -s -n -c -u -p -L -N -t -z -Z -F -X -D (see ra -h)
Exit status: 0 records matched, 1 none matched, 2 error."""

CHUNK_ROWS = 50_000  # sorted records gathered (and decoded, to print) at a time


@dataclass
class Held:
    """The selected flow records of the inputs read so far, as they were read, with their keys."""

    data: list[bytes] = field(default_factory=list)
    lengths: list[np.ndarray] = field(default_factory=list)
    keys: list[pl.DataFrame] = field(default_factory=list)
    start_mar: bytes | None = None

    @property
    def count(self) -> int:
        return sum(len(n) for n in self.lengths)

    def add(self, data: bytes, lengths: np.ndarray, keys: pl.DataFrame) -> None:
        if len(lengths):
            self.data.append(data)
            self.lengths.append(lengths.astype(np.int64))
            self.keys.append(keys)

    def sorted_chunks(self, keys: list[SortKey], reverse: bool) -> Iterator[tuple[bytes, np.ndarray]]:
        """The records' bytes in sort order, CHUNK_ROWS records at a time, with their lengths
        (gathered a chunk at a time: the word index of the whole output was the peak of memory)."""
        if not self.lengths:
            return
        lengths = np.concatenate(self.lengths)
        order = sort_order(pl.concat(self.keys, how="vertical_relaxed"), keys, reverse)
        self.keys = []
        buf = b"".join(self.data)
        self.data = []  # the joined copy is the only one kept
        starts = np.cumsum(lengths) - lengths
        for lo in range(0, len(order), CHUNK_ROWS):
            rows = order[lo:lo + CHUNK_ROWS]
            yield gather_words(buf, starts[rows], lengths[rows]), lengths[rows]


class KeyCollector:
    """The reader's RowSelector: the session's selection (if any), less the MARs, keeping the
    sort keys of the records it selects and the input's START MAR."""

    def __init__(self, session: ClientSession, wanted: frozenset[str]) -> None:
        self.picker = session.row_picker()
        self.wanted = sorted(wanted | {"rtype"})  # a frame of the right height, keys or not
        inner = PICKER_COLUMNS if self.picker is None else self.picker.columns
        self.columns: frozenset[str] | None = None if inner is None else inner | wanted
        self.keys: pl.DataFrame | None = None
        self.start_mar: bytes | None = None

    def __call__(self, probe: pl.DataFrame) -> np.ndarray:
        mar = picker_start_mar(probe)
        if mar is not None:
            self.start_mar = mar
        rows = np.arange(probe.height) if self.picker is None else self.picker(probe)
        rows = rows[probe["rtype"].to_numpy()[rows] != RTYPE_MAR]
        self.keys = probe.select(self.wanted)[rows]
        return rows


def hold_input(session: ClientSession, path: str, held: Held, wanted: frozenset[str],
               encode_changed: bool) -> None:
    """Add one input's selected flow records to `held`.  `encode_changed`: the records the
    reader changes (ARP keys it turns round) are held encoded as ra -w writes them; printing
    decodes the original bytes again instead."""
    collector = KeyCollector(session, wanted)
    try:
        for raw in iter_raw_batches(path, select=collector):
            data, lengths = raw.data, raw.lengths
            if encode_changed and len(raw.changed):
                data = passed_through(raw, synthesise_agr=True)
                _, lengths, _, _ = record_bounds(np.frombuffer(data, dtype=np.uint8))
            held.add(data, lengths, collector.keys)  # type: ignore[arg-type]
            if session.done():
                break
    except (CorruptInput, UsageError) as err:
        session.report(str(err))
    if collector.start_mar is not None:  # 3.0.8's -w file starts with the last input's
        held.start_mar = collector.start_mar


def rasort(argv: list[str]) -> int:
    args = parse_argv(argv, "rasort")
    if args.flag("h"):
        print(USAGE)
        return EXIT_MATCHED
    keys = parse_keys(args.all("m"))
    reverse = bool(args.flag("v"))
    replace = "replace" in {m.lower() for m in args.all("M")}
    out_path = args.value("w")
    if replace and out_path:
        raise UsageError("-M replace and -w cannot be used together")
    reuse_freed_memory()
    session = ClientSession.from_args("rasort", args)
    wanted = key_columns(keys)
    if replace:
        return replace_inputs(session, keys, reverse, wanted)
    held = Held()
    for path in session.inputs:
        hold_input(session, path, held, wanted, encode_changed=bool(out_path))
        if session.done():
            break
    matched = held.count
    chunks = held.sorted_chunks(keys, reverse)
    if out_path:
        write_sorted(ArgusOutput(out_path), chunks, held.start_mar)
    elif not args.flag("q"):
        print_sorted(args, session, chunks)
    sys.stdout.flush()
    return session.exit_code(matched)


def write_sorted(sink: ArgusOutput, chunks: Iterator[tuple[bytes, np.ndarray]],
                 start_mar: bytes | None) -> None:
    """The file starts with the START MAR of the last input read, as 3.0.8's; no MAR follows."""
    try:
        for data, lengths in chunks:
            sink.write_chunk(data, len(lengths), start_mar, None, False)
    finally:
        sink.close()


def print_sorted(args: ParsedArgs, session: ClientSession,
                 chunks: Iterator[tuple[bytes, np.ndarray]]) -> None:
    """Each chunk of sorted records decoded (only what the printer reads) and printed; the
    printer's thread works on one while the next is decoded."""
    printer = make_printer(args, session.conf)
    options = printer.printer.options
    columns = printing_projection((col.field for col in options.columns),
                                  tcp_flags=options.zflag is not None)
    reader = RecordReader("sorted records", require_start_mar=False)
    try:
        for data, _ in chunks:
            batch = reader.feed(data, None, columns)
            if batch.height:
                printer.write(batch)
    finally:
        printer.close()


def replace_inputs(session: ClientSession, keys: list[SortKey], reverse: bool,
                   wanted: frozenset[str]) -> int:
    """-M replace: each file sorted on its own, written beside it and renamed over it."""
    matched = 0
    for path in session.inputs:
        held = Held()
        hold_input(session, path, held, wanted, encode_changed=True)
        matched += held.count
        tmp = f"{path}.tmp{os.getpid()}"
        write_sorted(ArgusOutput(tmp, compression=None), held.sorted_chunks(keys, reverse),
                     held.start_mar)
        if os.path.exists(tmp):  # no file when nothing was selected: the input stays
            os.replace(tmp, path)
    return session.exit_code(matched)


def main() -> None:
    entry("rasort", rasort)
