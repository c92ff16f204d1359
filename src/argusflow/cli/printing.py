"""The text sink of every printing client: command-line options and rarc variables -> printer."""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from argusflow.cli.options import ParsedArgs
from argusflow.cli.rarc import is_yes
from argusflow.errors import UsageError

if TYPE_CHECKING:  # polars and the printer are imported by the paths that use them (start-up)
    import polars as pl

    from argusflow.records.codec import Decoded
    from argusflow.records.numpy_lines import NumpyLines
    from argusflow.records.printer import Printer, PrintOptions

# RA_PRINT_NAMES -> the -n count it stands for (ports/protocols as names, or numbers).
PRINT_NAMES = {"port": 0, "all": 0, "proto": 1, "none": 2}


class _PrintThread:
    """The background thread both sinks print in: started by the first batch, given items
    through a bounded queue (None ends it); an error it meets is raised at the caller's next
    call."""

    QUEUE = 4

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(self.QUEUE)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _put(self, item: object) -> None:
        self._raise_pending()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
            self._thread.start()
        self._queue.put(item)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._raise_pending()
        sys.stdout.flush()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        raise NotImplementedError


class TextSink(_PrintThread):
    """Prints batches on stdout.

    Printing runs in one background thread, so that the next batch is decoded while this one is
    formatted (polars and numpy release the GIL).  Each call has a fixed cost of some 25 ms
    (polars plans the expressions), so batches are merged: the thread waits for `MIN_ROWS` rows
    (but never longer than `LINGER` seconds for the next batch, so a live stream still prints
    promptly), and then takes whatever else already waits, up to `MERGE_ROWS` rows.  Merging
    what waits keeps the printer from falling behind the decoder, and at the end of a file only
    the last batches remain to print.  Batches keep their order; at most `QUEUE` batches wait,
    cut to the columns the printer reads, so memory stays bounded.  Errors surface at the next
    call."""

    QUEUE = 4
    MIN_ROWS = 50_000
    MERGE_ROWS = 120_000
    LINGER = 0.2

    def __init__(self, printer: Printer) -> None:
        super().__init__()
        self.printer = printer

    def write(self, batch: pl.DataFrame) -> None:
        # the stream now: callers may redirect stdout
        self._put((self.printer.project(batch), sys.stdout))

    def _run(self) -> None:
        ahead = [self._queue.get()]  # the next item (None: end of input)
        while ahead[0] is not None:
            batch, stream = ahead.pop()  # type: ignore[misc]
            batches, rows = [batch], batch.height
            while not ahead:  # merge what waits for the same stream
                try:  # below MIN_ROWS, wait for more unless the source is slow (live)
                    item = self._queue.get(timeout=self.LINGER) if rows < self.MIN_ROWS \
                        else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None and item[1] is stream and rows + item[0].height <= self.MERGE_ROWS:
                    batches.append(item[0])
                    rows += item[0].height
                else:
                    ahead.append(item)
            self._print(batches, stream)
            if not ahead:
                ahead.append(self._queue.get())

    def _print(self, batches: list[pl.DataFrame], stream: TextIO) -> None:
        if self._error is not None:  # after an error: drain only
            return
        try:
            import polars as pl

            print_batch(self.printer, pl.concat(batches) if len(batches) > 1 else batches[0], stream)
        except BaseException as err:  # handed to the caller's thread
            self._error = err


def print_batch(printer: Printer, batch: pl.DataFrame, stream: TextIO) -> None:
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a text-only stream (redirected in-process): write text
        text = printer.render(batch)
        if text:
            stream.write(text)
        return
    stream.flush()  # text written through the text layer goes first
    # bytes straight to the binary stream: no Python str of the batch's lines
    printer.write(batch, binary)


def int_option(text: str | None, what: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what}: expected a number, found '{text}'") from None


def print_options(args: ParsedArgs, conf: dict[str, str]) -> PrintOptions:
    from argusflow.records.printer import PrintOptions, parse_field_list

    modes = args.all("M")
    apply_time_zone(modes, conf)
    fields = args.all("s") or conf.get("RA_FIELD_SPECIFIER", "").split()
    nflag = PRINT_NAMES.get(conf.get("RA_PRINT_NAMES", "").lower(), 0) + args.flag("n")
    # -c '': ra's space-delimited lines with addr.port joined (records.printer)
    delimiter = args.value("c")
    if delimiter is None:
        delimiter = conf.get("RA_FIELD_DELIMITER") or None
    zflag = "z" if args.flag("z") else args.value("Z")
    if zflag not in (None, "z", "b", "s", "d"):
        raise UsageError(f"-Z {zflag}: expected b, s or d")
    print_man = is_yes(conf.get("RA_PRINT_MAN_RECORDS")) and not args.flag("X")
    if "man" in modes:
        print_man = True
    if "noman" in modes:
        print_man = False
    return PrintOptions(
        columns=parse_field_list(fields),
        nflag=nflag % 4,
        delimiter=delimiter,
        epoch=bool(args.flag("u")) or is_yes(conf.get("RA_PRINT_UNIX_TIME")),
        precision=int_option(args.value("p") or conf.get("RA_USEC_PRECISION"), "-p", 6),
        header=int_option(args.value("L") or conf.get("RA_PRINT_LABELS"), "-L", 0),
        zflag=zflag,
        time_format=conf.get("RA_TIME_FORMAT") or PrintOptions.time_format,
        print_man=print_man,
        json="json" in modes,
        port_direction=bool(conf.get("RA_PORT_DIRECTION")),
    )


def apply_time_zone(modes: list[str], conf: dict[str, str]) -> None:
    """`-M TZ=zone` or RA_TZ: times print in that zone, as with the TZ variable."""
    zone = conf.get("RA_TZ")
    for mode in modes:
        if mode.startswith("TZ="):
            zone = mode[3:].strip("'\"")
    if zone:
        os.environ["TZ"] = zone
        time.tzset()


def make_printer(args: ParsedArgs, conf: dict[str, str]) -> TextSink:
    from argusflow.records.printer import Printer

    return TextSink(Printer(print_options(args, conf)))


def numpy_lines(args: ParsedArgs, conf: dict[str, str]) -> NumpyLines | None:
    """The polars-free printer of the default fields (records.numpy_lines), when the options
    ask for nothing else: the same reading of them as `print_options`, or None."""
    from argusflow.records.numpy_lines import LineOptions, NumpyLines, available

    if not available():  # no compiled kernels (a failed build): the polars path
        return None
    if args.all("s") or conf.get("RA_FIELD_SPECIFIER", "").split() or args.all("M") or conf.get("RA_TZ"):
        return None
    if args.value("c") is not None or conf.get("RA_FIELD_DELIMITER") or conf.get("RA_TIME_FORMAT"):
        return None
    if args.flag("z") or args.value("Z") is not None:
        return None
    if is_yes(conf.get("RA_PRINT_MAN_RECORDS")) and not args.flag("X"):
        return None
    header = int_option(args.value("L") or conf.get("RA_PRINT_LABELS"), "-L", 0)
    precision = int_option(args.value("p") or conf.get("RA_USEC_PRECISION"), "-p", 6)
    if header > 0 or not 0 <= precision <= 6:
        return None
    nflag = PRINT_NAMES.get(conf.get("RA_PRINT_NAMES", "").lower(), 0) + args.flag("n")
    epoch = bool(args.flag("u")) or is_yes(conf.get("RA_PRINT_UNIX_TIME"))
    return NumpyLines(LineOptions(nflag=nflag % 4, precision=precision, epoch=epoch, header=header == 0))


class LineSink(_PrintThread):
    """Prints numpy-column batches (RecordReader.feed_columns) with `NumpyLines` on stdout, in a
    background thread as TextSink does (the line writer runs without the GIL while the next
    batch decodes).  A batch the numpy path cannot print goes whole to the polars printer
    `fallback` makes (once), with the line count carried over for the header.  Two batches
    waiting are enough to keep both threads busy, and bound memory."""

    QUEUE = 2

    def __init__(self, lines: NumpyLines, fallback: Callable[[], Printer]) -> None:
        super().__init__()
        self.lines = lines
        self.fallback = fallback
        self.printed = 0
        self._printer: Printer | None = None

    def write(self, batch: Decoded) -> None:
        self._put((batch, sys.stdout))

    def drain(self) -> None:
        """Wait until every batch given so far is printed (before an error message)."""
        if self._thread is not None:
            self._queue.join()
        sys.stdout.flush()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:  # after an error: drain only
                    self._print(*item)
            except BaseException as err:  # handed to the caller's thread
                self._error = err
            finally:
                self._queue.task_done()

    def _print(self, batch: Decoded, stream: TextIO) -> None:
        made = self.lines.lines(batch.columns)
        if made is None:
            if self._printer is None:
                self._printer = self.fallback()
            self._printer.lines_printed = self.printed
            print_batch(self._printer, batch.frame(), stream)
            self.printed = self._printer.lines_printed
            return
        data, count = made
        if not count:
            return
        head = self.lines.header() if self.printed == 0 and self.lines.options.header else ""
        self.printed += count
        binary = getattr(stream, "buffer", None)
        if binary is None:  # a text-only stream (redirected in-process)
            stream.write(head + bytes(data).decode())
            return
        stream.flush()
        if head:
            binary.write(head.encode())
        binary.write(data)
