"""rasplit: split Argus data into files by count, size, time or flow event (man rasplit, 3.0.8).

    rasplit -r FILE... | -R DIR... | -S HOST[:PORT]  [-M count N | size N[kmg] | time N[smhdwMy]
            | flow "FILTER"]  [-w NAME]  [-a LEN]  [--utc] [--tz ZONE]  [- FILTER]

Pipeline: argus source -> selection (filter, -t, -N) -> ops.split (cut, name) -> one
ArgusOutput per name (temporary name, renamed when complete; START MAR first, STOP MAR last).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import numpy as np
import polars as pl

from argusflow.cli.client import ClientSession, compile_record_filter
from argusflow.cli.options import Extension, ParsedArgs, parse_argv, take_extensions
from argusflow.cli.runner import EXIT_MATCHED, entry
from argusflow.errors import UsageError
from argusflow.ops.split import (
    SplitMode,
    Splitter,
    bin_end,
    bin_start,
    name_template,
    parse_mode,
    record_start_us,
)
from argusflow.records.framing import record_bounds as framing_bounds
from argusflow.records.output import ArgusOutput, compression_suffix
from argusflow.records.schema import RTYPE_MAR
from argusflow.records.writer import encode_batch

USAGE = """usage: rasplit [options] [- filter-expression]
  -r FILE ... | -R DIR ... | -S HOST[:PORT]   inputs (as ra)
  -M count N          a new file every N records (default 10000)
  -M size N[kmg]      files of at most about N bytes
  -M time N[smhdwMy]  one file per time bin; records spanning a boundary are split
  -M flow "FILTER"    a new file at each record that matches FILTER
  -w NAME             output name: strftime codes (%Y%m%d...) and $field (any printable field);
                      default prefix 'x', suffix 'aa' 'ab' ... or %Y.%m.%d.%H.%M.%S;
                      '-' is one stream on stdout, each part between a START and a STOP MAR
  -a LEN              suffix length (default 2)
  --utc / --tz ZONE   file names and bins in UTC / in this time zone (default: local time)
  -t RANGE, -N RANGE, -n, -X, -F FILE, -D N   as ra"""

OPEN_FILES = 16  # time bins kept open at once; older ones are finished (renamed)
RETRIES = 3


class Terminated(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM/SIGHUP: finish the files being written, then stop."""


SPLIT_OPTIONS = [Extension("--utc", takes_value=False), Extension("--tz", glued="="),
                 Extension("-a", glued="digits")]


def take_long_options(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Options the shared parser does not know: -a N (a flag elsewhere), --utc, --tz ZONE."""
    rest, taken = take_extensions(argv, SPLIT_OPTIONS)
    return rest, {t.name.lstrip("-"): "1" if t.value is None else t.value for t in taken}


@dataclass
class SplitSetup:
    mode: SplitMode
    splitter: Splitter
    utc: bool
    to_stdout: bool = False


def setup(program: str, args: ParsedArgs, extra: dict[str, str]) -> SplitSetup:
    if "tz" in extra:
        os.environ["TZ"] = extra["tz"]
        time.tzset()
    utc = "utc" in extra
    try:
        suffix_len = int(extra.get("a", "2"))
    except ValueError:
        raise UsageError(f"-a {extra['a']}: expected a number of letters") from None
    if suffix_len < 1:
        raise UsageError("-a: the suffix needs at least one letter")
    words = [w for w in args.all("M") if w.lower() not in ("nomodify",)]
    mode = parse_mode(words)
    out = args.value("w")
    # -w -: one stream on stdout; the split points become STOP/START MAR pairs.
    template = name_template(None if out == "-" else out, mode, suffix_len)
    flow_filter = None
    if mode.kind == "flow":
        flow_filter = compile_record_filter(mode.filter_text).expr  # type: ignore[attr-defined]
    splitter = Splitter(mode, template, suffix_len, utc, nflag=args.flag("n"),
                        flow_filter=flow_filter)
    return SplitSetup(mode, splitter, utc, to_stdout=out == "-")


@dataclass
class SplitWriter:
    """The output side: one ArgusOutput per name, finished in order, at most OPEN_FILES open."""

    splitter: Splitter
    on_close: Callable[[str], None] | None = None
    retries: int = RETRIES
    retry_delay: float = 1.0
    to_stdout: bool = False  # -w -: blocks on stdout instead of files
    outputs: OrderedDict[str, ArgusOutput] = field(default_factory=OrderedDict)
    bin_ends: dict[str, int] = field(default_factory=dict)  # time mode: end (s) of each file's bin
    records: int = 0
    latest_us: int = 0  # the stream's clock: the latest record time seen

    def write(self, batch: pl.DataFrame, start_mar: bytes | None) -> None:
        batch = self.splitter.prepare(batch)
        if self.splitter._fields:
            # The real tool cannot key a MAR by a flow field: MARs stay out of $field files.
            batch = batch.filter(pl.col("rtype") != RTYPE_MAR)
        if batch.height == 0:
            return
        data = encode_batch(batch, synthesise_agr=True)
        starts, lengths = record_bounds(data)
        names = self.splitter.names(batch, lengths).to_numpy()
        times = record_start_us(batch)
        self.latest_us = max(self.latest_us, int(times.max()))
        ends = (bin_end(bin_start(times // 1_000_000, self.splitter.mode, self.splitter.utc),
                        self.splitter.mode, self.splitter.utc)
                if self.splitter.mode.kind == "time" else None)
        # Runs of equal names: one write each (a run is usually a whole file's share).
        change = np.flatnonzero(names[1:] != names[:-1]) + 1
        bounds = np.concatenate([[0], change, [len(names)]])
        mar_at = MarLookup(batch)
        run_ends = (np.maximum.reduceat(ends, bounds[:-1]).tolist() if ends is not None
                    else [0] * (len(bounds) - 1))
        for a, b, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), run_ends, strict=True):
            name = str(names[a])
            chunk = data[int(starts[a]):int(starts[b - 1] + lengths[b - 1])]
            self._output(name).write_chunk(chunk, b - a, start_mar, mar_at.leading(a),
                                           mar_at.is_stop(b - 1))
            if ends is not None:
                self.bin_ends[name] = max(self.bin_ends.get(name, 0), end)
        self.records += batch.height

    def _output(self, name: str) -> ArgusOutput:
        out = self.outputs.get(name)
        if out is not None:
            self.outputs.move_to_end(name)
            return out
        if self.splitter.mode.kind != "time" or self.to_stdout:
            self.finish_all()  # count, size and flow never return to an earlier file
        if self.to_stdout:
            out = ArgusOutput("-", synthesise_agr=True, stop_mar=True)
        else:
            out = ArgusOutput(name, synthesise_agr=True, atomic=True, stop_mar=True,
                              retries=self.retries, retry_delay=self.retry_delay,
                              compression=compression_suffix(self.splitter.template))
        self.outputs[name] = out
        while len(self.outputs) > OPEN_FILES:
            oldest, sink = self.outputs.popitem(last=False)
            self._finish(oldest, sink)
        return out

    def finish(self, names: list[str]) -> None:
        for name in names:
            sink = self.outputs.pop(name, None)
            if sink is not None:
                self._finish(name, sink)

    def finish_all(self) -> None:
        while self.outputs:
            name, sink = self.outputs.popitem(last=False)
            self._finish(name, sink)

    def abort_all(self) -> None:
        for sink in self.outputs.values():
            sink.abort()
        self.outputs.clear()

    def finish_bins_before(self, clock_s: float) -> None:
        """Time mode: finish every file whose bin ended at or before `clock_s`."""
        done = [name for name in self.outputs if self.bin_ends.get(name, 0) <= clock_s]
        self.finish(done)

    def _finish(self, name: str, sink: ArgusOutput) -> None:
        self.bin_ends.pop(name, None)
        was_open = sink.is_open
        sink.close()
        if was_open and self.on_close is not None:
            self.on_close(name)


class MarLookup:
    """Per-row MAR facts a run of records needs, without slicing the batch for each run."""

    def __init__(self, batch: pl.DataFrame) -> None:
        self.batch = batch
        self.is_mar = (batch["rtype"] == RTYPE_MAR).to_numpy()

    def leading(self, row: int) -> bytes | None:
        """The row's MAR bytes if it is an input's leading MAR (a possible file header)."""
        if not self.is_mar[row] or int(self.batch["offset"][row]) != 0:
            return None
        return self.batch["mar_raw"][row]

    def is_stop(self, row: int) -> bool:
        if not self.is_mar[row]:
            return False
        raw = self.batch["mar_raw"][row]
        return len(raw) >= 2 and (raw[1] & 0xF0) == 0x30


def record_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of every record of an encoded batch.  Headers only (numpy pointer
    doubling): the full framer walks every DSR too and loads numba, which cost rasplit more
    than a second per run for bounds it never needed."""
    starts, lengths, _, _ = framing_bounds(np.frombuffer(data, dtype=np.uint8))
    return starts, lengths


def raise_terminated(signum: int, frame_: FrameType | None) -> None:
    raise Terminated()


def install_signal_handlers() -> dict[int, object]:
    """SIGTERM/SIGHUP raise Terminated; returns the handlers to put back afterwards."""
    previous: dict[int, object] = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, raise_terminated)
    return previous


def restore_signal_handlers(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


def retry_delay() -> float:
    """Seconds between write attempts (ARGUSFLOW_RETRY_DELAY; tests make it short)."""
    try:
        return float(os.environ.get("ARGUSFLOW_RETRY_DELAY", "1"))
    except ValueError:
        return 1.0


def rasplit(argv: list[str]) -> int:
    argv, extra = take_long_options(argv)
    args = parse_argv(argv, "rasplit")
    if args.flag("h"):
        print(USAGE)
        return EXIT_MATCHED
    session = ClientSession.from_args("rasplit", args)
    split = setup("rasplit", args, extra)
    writer = SplitWriter(split.splitter, retry_delay=retry_delay(), to_stdout=split.to_stdout)
    previous = install_signal_handlers()
    matched = 0
    try:
        for batch, start_mar in session.batches():
            matched += int((batch["rtype"] != RTYPE_MAR).sum())
            writer.write(batch, start_mar)
    except Terminated:
        return EXIT_MATCHED  # SIGTERM/SIGHUP: the files so far are finished below
    finally:
        writer.finish_all()
        restore_signal_handlers(previous)
    sys.stdout.flush()
    return session.exit_code(matched)


def main() -> None:
    entry("rasplit", rasplit)
