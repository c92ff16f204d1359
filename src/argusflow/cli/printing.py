"""The text sink of every printing client: command-line options and rarc variables -> printer."""

from __future__ import annotations

import os
import sys
import time

import polars as pl

from argusflow.cli.options import ParsedArgs
from argusflow.cli.rarc import is_yes
from argusflow.errors import UsageError
from argusflow.records.printer import Printer, PrintOptions, parse_field_list

# RA_PRINT_NAMES -> the -n count it stands for (ports/protocols as names, or numbers).
PRINT_NAMES = {"port": 0, "all": 0, "proto": 1, "none": 2}


class TextSink:
    def __init__(self, printer: Printer) -> None:
        self.printer = printer

    def write(self, batch: pl.DataFrame) -> None:
        binary = getattr(sys.stdout, "buffer", None)
        if binary is None:  # a text-only stream (redirected in-process): write text
            text = self.printer.render(batch)
            if text:
                sys.stdout.write(text)
            return
        sys.stdout.flush()  # text written through sys.stdout goes first
        # bytes straight to the binary stream: no Python str of the batch's lines
        self.printer.write(batch, binary)

    def close(self) -> None:
        sys.stdout.flush()


def int_option(text: str | None, what: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what}: expected a number, found '{text}'") from None


def print_options(args: ParsedArgs, conf: dict[str, str]) -> PrintOptions:
    modes = args.all("M")
    apply_time_zone(modes, conf)
    fields = args.all("s") or conf.get("RA_FIELD_SPECIFIER", "").split()
    nflag = PRINT_NAMES.get(conf.get("RA_PRINT_NAMES", "").lower(), 0) + args.flag("n")
    delimiter = args.value("c") or conf.get("RA_FIELD_DELIMITER") or None
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
    return TextSink(Printer(print_options(args, conf)))
