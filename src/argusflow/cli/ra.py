"""ra: read Argus records, select them, print them or write them (man ra, 3.0.8).

    ra -r FILE... | -R DIR...  [-w FILE|-] [-s FIELDS] [-n] [-c C] [-u] [-p N] [-L N] [-N N]
       [-t RANGE] [-z | -Z b|s|d] [-M json] [-q] [-F rarc] [-X] [-D N]  [- FILTER]

Pipeline: argus-file source -> selection (filter, -t, -N) -> text printer or Argus writer.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from argusflow.cli.client import ClientSession
from argusflow.cli.malloc import reuse_freed_memory
from argusflow.cli.options import ParsedArgs, parse_argv
from argusflow.cli.runner import EXIT_MATCHED, entry

if TYPE_CHECKING:
    from argusflow.cli.printing import TextSink
    from argusflow.records.codec import Copies, RawBatch
    from argusflow.records.numpy_lines import NumpyLines
    from argusflow.records.output import ArgusOutput

USAGE = """usage: ra [options] [- filter-expression]
  -r FILE ...   read Argus files ('-' is stdin; gzip, bzip2, xz and compress by magic number)
  -R DIR ...    read every file under these directories (sorted, dot files skipped)
  -w FILE       write binary Argus records ('-' is stdout) instead of printing
  -s FIELDS     fields to print: `-s saddr daddr`, `+field`, `+Nfield`, `-field`, `field:width`
  -n / -nn      numeric ports / numeric ports and protocols
  -c CHAR       column delimiter            -u   times as seconds since the epoch
  -p N          fractional digits           -L N header: -1 none, 0 once, N every N lines
  -N RANGE      records N, START-END, START+COUNT (flow records after the filter)
  -t RANGE      time range (man ra)         -z / -Z b|s|d  TCP state changes / TCP flags
  -M json       JSON lines                  -q   quiet: count only (exit code)
  -F FILE       rarc file                   -X   do not read /etc/ra.conf and ~/.rarc
  -D N          debug: show tracebacks
Exit status: 0 records matched, 1 none matched, 2 error."""


def ra(argv: list[str]) -> int:
    args = parse_argv(argv, "ra")
    if args.flag("h"):
        print(USAGE)
        return EXIT_MATCHED
    reuse_freed_memory()  # before the first chunk's arrays
    session = ClientSession.from_args("ra", args)
    out_path = args.value("w")
    if not out_path and not args.flag("q") and reads_every_record(session):
        from argusflow.cli.printing import numpy_lines

        lines = numpy_lines(args, session.conf)
        if lines is not None:
            return print_columns(session, lines, args)
    sink = open_sink(args, session, out_path)
    matched = 0
    try:
        # -w copies the records it does not change (ra's own -w encodes them all again; what ra
        # and racluster print of the copy is the same, and reading it costs only the filter).
        for batch, start_mar in session.batches(raw=bool(out_path)):
            matched += batch.height
            if out_path:
                write_copy(sink, batch, start_mar)  # type: ignore[arg-type]
            elif not args.flag("q"):
                sink.write(batch)  # type: ignore[call-arg]
    finally:
        sink.close()
        sys.stdout.flush()
    return session.exit_code(matched)


def reads_every_record(session: ClientSession) -> bool:
    """Files only, and no filter, -t or -N."""
    return not session.selects and session.count_range is None and not session.sources


def print_columns(session: ClientSession, lines: NumpyLines, args: ParsedArgs) -> int:
    """Every record of every input printed by `lines` (the default fields), read as numpy
    columns: polars is imported only if some batch needs the full printer."""
    from argusflow.cli.printing import LineSink, make_printer
    from argusflow.errors import CorruptInput, UsageError
    from argusflow.records.numpy_lines import CHUNK_BYTES, DECODE
    from argusflow.records.source import iter_columns

    sink = LineSink(lines, lambda: make_printer(args, session.conf).printer)
    matched = 0
    try:
        for path in session.inputs:
            try:
                for batch in iter_columns(path, DECODE, chunk_bytes=CHUNK_BYTES):
                    matched += batch.height
                    sink.write(batch)
                    del batch  # not held while the next chunk is decoded
            except (CorruptInput, UsageError) as err:
                sink.drain()  # the lines before the damage come first, as ra prints them
                session.report(str(err))
    finally:
        sink.close()
        sys.stdout.flush()
    return session.exit_code(matched)


def write_copy(sink: ArgusOutput, batch: RawBatch | Copies, start_mar: bytes | None) -> None:
    """Append records read as the input holds them.  Copies (a numpy filter's selection) go
    straight to the file: no polars, unless the reader changed some, which are encoded."""
    from argusflow.records.codec import Copies

    if isinstance(batch, Copies) and not len(batch.changed):
        sink.write_chunk(batch.data, batch.height, start_mar, batch.first_mar(),
                         batch.ends_with_stop_mar())
    else:
        sink.write(batch.raw_batch() if isinstance(batch, Copies) else batch, start_mar)


def open_sink(args: ParsedArgs, session: ClientSession, out_path: str | None) -> ArgusOutput | TextSink:
    """The writer or the printer; each imports only what it needs (start-up time)."""
    if out_path:
        from argusflow.records.output import ArgusOutput

        return ArgusOutput(out_path)
    from argusflow.cli.client import printing_projection
    from argusflow.cli.printing import make_printer

    sink = make_printer(args, session.conf)
    options = sink.printer.options
    session.decode_columns = printing_projection((col.field for col in options.columns),
                                                 tcp_flags=options.zflag is not None)
    return sink


def main() -> None:
    entry("ra", ra)
