"""rastream: split a live Argus stream into files and process each one when it is done (man rastream).

    rastream -S HOST[:PORT] ... | -r FILE ...  [-M time N[smhdwMy] | count N | size N[kmg]
             | flow "FILTER"]  [-w NAME]  [-B SECS]  [-f PROGRAM]  [--utc] [--tz ZONE]  [- FILTER]

Pipeline: argus stream -> selection -> ops.split -> one ArgusOutput per name, as rasplit.  What
rastream adds is *when* a file is finished: in time mode, once the stream's clock (the latest
record time, running on in real time while a live stream is quiet) has passed the end of the file's bin by
-B seconds, so that late records still reach their file; in the other modes when the next file
starts.  A finished file is renamed into place and then `PROGRAM -r /full/path/FILE` runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from argusflow.cli.client import ClientSession
from argusflow.cli.options import parse_argv
from argusflow.cli.rasplit import (
    SplitWriter,
    Terminated,
    install_signal_handlers,
    restore_signal_handlers,
    retry_delay,
    setup,
    take_long_options,
)
from argusflow.cli.runner import EXIT_MATCHED, entry
from argusflow.errors import UsageError
from argusflow.records.schema import RTYPE_MAR

USAGE = """usage: rastream [options] [- filter-expression]
  -S HOST[:PORT] ... | -r FILE ...   the stream (as ra)
  -M time N[smhdwMy] | count N | size N[kmg] | flow "FILTER"   as rasplit (default count 10000)
  -w NAME        output name, as rasplit (strftime codes, $field)
  -B SECS        hold: a time bin's file is finished SECS after the bin ends (default 5)
  -f PROGRAM     run `PROGRAM -r /full/path/FILE` for every finished file
  --utc / --tz ZONE   names and bins in UTC / in this time zone"""

DEFAULT_HOLD_S = 5.0
WALL_CLOCK_TICK_S = 1.0


@dataclass
class PostProcessor:
    """Runs `-f PROGRAM -r FILE` for finished files, without waiting; reaps them at the end."""

    program: str | None
    running: list[subprocess.Popen] = field(default_factory=list)

    def __call__(self, path: str) -> None:
        if not self.program:
            return
        full = os.path.abspath(path)
        try:
            self.running.append(subprocess.Popen([self.program, "-r", full]))
        except OSError as err:
            print(f"rastream: -f {self.program}: cannot run it on {full}: {err.strerror or err}",
                  file=sys.stderr)
        self.running = [p for p in self.running if p.poll() is None]

    def wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


@dataclass
class StreamClock:
    """Finishes files as time passes: record time always, wall clock too for live input."""

    writer: SplitWriter
    hold_s: float
    live: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    seen_us: int = 0  # the latest record time, and the wall clock when it arrived
    seen_at: float = 0.0

    def after_batch(self) -> None:
        if self.writer.latest_us != self.seen_us:
            self.seen_us, self.seen_at = self.writer.latest_us, time.monotonic()
        if self.writer.splitter.mode.kind == "time":
            self.writer.finish_bins_before(self.writer.latest_us / 1e6 - self.hold_s)

    def run_wall_clock(self) -> None:
        """Live streams can go quiet: their clock then runs on from the last record's time, in
        real time (a replayed old stream keeps its own time, not today's)."""
        while not self.stop.wait(WALL_CLOCK_TICK_S):
            with self.lock:
                if self.writer.splitter.mode.kind == "time" and self.seen_us:
                    now_s = self.seen_us / 1e6 + (time.monotonic() - self.seen_at)
                    self.writer.finish_bins_before(now_s - self.hold_s)


def hold_seconds(text: str | None) -> float:
    if text is None:
        return DEFAULT_HOLD_S
    try:
        value = float(text.rstrip("s"))
    except ValueError:
        raise UsageError(f"-B {text}: expected a number of seconds") from None
    if value < 0:
        raise UsageError(f"-B {text}: the hold cannot be negative")
    return value


def rastream(argv: list[str]) -> int:
    argv, extra = take_long_options(argv)
    args = parse_argv(argv, "rastream")
    if args.flag("h"):
        print(USAGE)
        return EXIT_MATCHED
    session = ClientSession.from_args("rastream", args)
    split = setup("rastream", args, extra)
    post = PostProcessor(args.value("f"))
    writer = SplitWriter(split.splitter, on_close=None if split.to_stdout else post,
                         retry_delay=retry_delay(), to_stdout=split.to_stdout)
    clock = StreamClock(writer, hold_seconds(args.value("B")), live=bool(session.sources))
    previous = install_signal_handlers()
    ticker = threading.Thread(target=clock.run_wall_clock, daemon=True) if clock.live else None
    if ticker is not None:
        ticker.start()
    matched = 0
    try:
        for batch, start_mar in session.batches():
            with clock.lock:
                matched += int((batch["rtype"] != RTYPE_MAR).sum())
                writer.write(batch, start_mar)
                clock.after_batch()
    except Terminated:
        pass  # SIGTERM/SIGHUP: finish the current files properly, as at the end of input
    finally:
        clock.stop.set()
        with clock.lock:
            writer.finish_all()
        post.wait()
        restore_signal_handlers(previous)
    return session.exit_code(matched) if not session.sources else EXIT_MATCHED


def main() -> None:
    entry("rastream", rastream)
