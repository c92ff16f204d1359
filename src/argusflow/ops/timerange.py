"""`-t` time ranges, as `man ra` defines them, compiled to a predicate over record batches.

    [x][i|n|c]timeSpecification[-timeSpecification]   or   timeSpecification+span
    timeSpecification: [[[yyyy/]mm/]dd.]HH[:MM[:SS]] | [yyyy/]mm/dd | yyyy[/mm] | seconds
                       | {+|-}%d{smhdwMy}... (relative to now)

A single specification covers its own granularity (`14` is 14:00-15:00 today, `2011/08` is all of
August 2011); a range runs from the first to the second; `+span` adds a length.  Comparison
modes: i (default) the record intersects the range, n the record includes the whole range,
c the record is contained in it, and x negates.  Times are local (TZ), like the real tools.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from argusflow.errors import UsageError

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class TimeRange:
    start_us: int
    end_us: int
    mode: str = "i"  # i intersects, n includes, c contained
    negate: bool = False

    def expr(self, stime: pl.Expr, ltime: pl.Expr) -> pl.Expr:
        if self.mode == "n":
            hit = (stime <= self.start_us) & (ltime >= self.end_us)
        elif self.mode == "c":
            hit = (stime >= self.start_us) & (ltime <= self.end_us)
        else:
            hit = (stime <= self.end_us) & (ltime >= self.start_us)
        return ~hit if self.negate else hit


def parse_timerange(text: str, now: float | None = None) -> TimeRange:
    """Parse a `-t` argument; raise UsageError with what was expected."""
    now = time.time() if now is None else now
    spec = text.strip()
    negate = spec.startswith("x")
    if negate:
        spec = spec[1:]
    mode = "i"
    if spec[:1] in ("i", "n", "c"):
        mode, spec = spec[0], spec[1:]
    if not spec:
        raise UsageError(f"-t {text}: expected a time specification")
    if "*" in spec:
        raise UsageError(f"-t {text}: wildcard time specifications are not supported")
    start, end = parse_span(spec, now, text)
    return TimeRange(int(start * 1e6), int(end * 1e6), mode, negate)


def parse_span(spec: str, now: float, text: str) -> tuple[float, float]:
    if spec.startswith(("-", "+")):
        return relative_span(spec, now, text)
    plus = re.fullmatch(r"(.+?)\+(\d+[smhdwMy]?(?:\d+[smhdwMy])*)", spec)
    if plus:
        start, _ = parse_point(plus.group(1), now, text)
        return start, start + duration(plus.group(2), text)
    first, second = split_range(spec)
    start, end = parse_point(first, now, text)
    if second is not None:
        end, _ = parse_point(second, now, text, base=start)
    if end < start:
        raise UsageError(f"-t {text}: the range ends before it starts")
    return start, end


def split_range(spec: str) -> tuple[str, str | None]:
    """Split `a-b`; a '-' inside a date never appears (dates use '/'), so the first '-' splits."""
    if "-" in spec:
        a, b = spec.split("-", 1)
        return a, b
    return spec, None


def relative_span(spec: str, now: float, text: str) -> tuple[float, float]:
    """`-10m` (the last 10 minutes), `-2h5m+5m` (5 minutes starting 2h05 ago)."""
    match = re.fullmatch(r"([-+])([0-9smhdwMy]+?)(?:\+([0-9smhdwMy]+))?", spec)
    if not match:
        raise UsageError(f"-t {text}: expected a relative time such as -10m or -1h+5m")
    offset = duration(match.group(2), text)
    start = now - offset if match.group(1) == "-" else now + offset
    if match.group(3):
        return start, start + duration(match.group(3), text)
    return (start, now) if match.group(1) == "-" else (now, start)


def duration(spec: str, text: str) -> float:
    """`90`, `10m`, `1h30m`, `2d`, `1M` (30 days), `1y` (365 days) in seconds."""
    total = 0.0
    parts = re.findall(r"(\d+)([smhdwMy]?)", spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise UsageError(f"-t {text}: bad duration '{spec}', expected a number with s m h d w M y")
    for number, unit in parts:
        scale = {"M": 30 * 86400, "y": 365 * 86400}.get(unit, UNIT_SECONDS.get(unit or "s", 1))
        total += int(number) * scale
    return total


def parse_point(spec: str, now: float, text: str, base: float | None = None) -> tuple[float, float]:
    """A point in time and the end of its granularity (the start of the next unit)."""
    if re.fullmatch(r"\d{9,}(\.\d+)?", spec):
        value = float(spec)
        return value, value + 1
    today = datetime.fromtimestamp(base if base is not None else now)
    date_part, _, clock = spec.rpartition(".") if "." in spec else ("", "", spec)
    if "/" in clock or (re.fullmatch(r"\d{4}", clock) and not date_part):
        date_part, clock = clock, ""
    year, month, day, unit = parse_date(date_part, today, text)
    hour = minute = second = 0
    if clock:
        fields = clock.split(":")
        if not all(f.isdigit() for f in fields) or len(fields) > 3:
            raise UsageError(f"-t {text}: bad time '{clock}', expected HH[:MM[:SS]]")
        hour, minute, second = (int(f) for f in fields + ["0"] * (3 - len(fields)))
        unit = ("hour", "minute", "second")[len(fields) - 1]
    try:
        start = datetime(year, month, day, hour, minute, second)
    except ValueError as err:
        raise UsageError(f"-t {text}: {err}") from None
    return start.timestamp(), next_unit(start, unit).timestamp()


def parse_date(part: str, today: datetime, text: str) -> tuple[int, int, int, str]:
    if not part:
        return today.year, today.month, today.day, "day"
    fields = part.split("/")
    if not all(f.isdigit() for f in fields):
        raise UsageError(f"-t {text}: bad date '{part}', expected [yyyy/]mm/dd")
    numbers = [int(f) for f in fields]
    if len(fields) == 1 and len(fields[0]) == 4:
        return numbers[0], 1, 1, "year"
    if len(fields) == 1:
        return today.year, today.month, numbers[0], "day"
    if len(fields) == 2 and len(fields[0]) == 4:
        return numbers[0], numbers[1], 1, "month"
    if len(fields) == 2:
        return today.year, numbers[0], numbers[1], "day"
    if len(fields) == 3:
        return numbers[0], numbers[1], numbers[2], "day"
    raise UsageError(f"-t {text}: bad date '{part}'")


def next_unit(start: datetime, unit: str) -> datetime:
    if unit == "year":
        return start.replace(year=start.year + 1)
    if unit == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    step = {"day": timedelta(days=1), "hour": timedelta(hours=1), "minute": timedelta(minutes=1),
            "second": timedelta(seconds=1)}[unit]
    return start + step
