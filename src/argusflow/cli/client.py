"""What every ra* client shares: its inputs, the record selection (-t, filter, -N), the rarc.

A client program is: `ClientSession.from_args(...)`, then `for batch, start_mar in
session.batches(): sink.write(...)`, then `session.exit_code(matched)`.  Damage in one input is
reported as one line and reading goes on with the next input; the exit code is then 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from argusflow.cli.options import ParsedArgs
from argusflow.cli.rarc import load_rarc
from argusflow.cli.runner import EXIT_ERROR, EXIT_MATCHED, EXIT_NONE
from argusflow.errors import CorruptInput, UsageError
from argusflow.records.schema import NUMPY_DTYPES, RTYPE_MAR
from argusflow.records.source import (
    expand_directories,
    iter_batches,
    iter_copies,
    iter_raw_batches,
)

if TYPE_CHECKING:
    import polars as pl

    from argusflow.filter import RecordFilter
    from argusflow.ops.timerange import TimeRange
    from argusflow.records.codec import Copies, RawBatch
    from argusflow.records.fields import Field


@dataclass
class CountRange:
    """`-N`: which flow records (1-based, counted after the filter) to process."""

    first: int
    last: int | None
    # ra 3.0.8 numbers the records of every input after the first with two extra numbers:
    # one just before its first flow and one just after it (both even when the input has
    # no flow).  Measured without a filter or -t; with them the extras follow another rule
    # not yet matched, so a selecting session turns this off.
    later_extras: bool = True
    _inputs: int = 0  # inputs started
    _base: int = 0  # the number before the current input's first record
    _flows: int = 0  # flows counted in the current input

    @classmethod
    def parse(cls, text: str) -> CountRange:
        spec = text[1:] if text[:1] in ("i", "o") else text
        try:
            if "-" in spec:
                a, b = spec.split("-", 1)
                return cls(_count(a), _count(b))
            if "+" in spec:
                a, b = spec.split("+", 1)
                return cls(_count(a), _count(a) + _count(b))
            return cls(1, _count(spec))
        except ValueError:
            raise UsageError(f"-N {text}: expected N, START-END or START+COUNT") from None

    def start_input(self) -> None:
        """A new input begins: its numbers go on from the last input's, extras included."""
        if self._inputs:
            self._base += self._flows + (2 if self._later() else 0)
        self._inputs += 1
        self._flows = 0

    def _later(self) -> bool:
        return self._inputs > 1 and self.later_extras

    def numbers(self, is_flow: pl.Series) -> tuple[pl.Series, pl.Series, int]:
        """Each record's number (a MAR's is that of the flows before it), the number START
        is compared with, and the running number after the batch.  The two differ for a
        later input's first flow: 3.0.8 keeps it for a START up to one past its number."""
        import polars as pl

        in_input = is_flow.cast(pl.Int64).cum_sum() + self._flows
        number = in_input + self._base
        start_number = number
        if self._later():  # a flow: +1 for the first, +2 from the second on; a MAR: +2 once
            # a flow was counted, +1 before (the number just before the first flow)
            flow_extra = in_input.clip(upper_bound=2)
            mar_extra = (in_input >= 1).cast(pl.Int64) + 1
            flows = is_flow.cast(pl.Int64)
            number = number + flows * flow_extra + (1 - flows) * mar_extra
            start_number = number + (is_flow & (in_input == 1)).cast(pl.Int64)
        if is_flow.len():
            self._flows = int(in_input[-1])
        seen = self._base + self._flows + (2 if self._later() and self._flows else 0)
        return number, start_number, seen


def _count(text: str) -> int:
    """A record number of -N; past 2**62 it means every record (record numbers are compared
    as 64-bit integers, and ra 3.0.8 prints all records for such a number too)."""
    return min(int(text), 2**62)


@dataclass
class ClientSession:
    program: str
    args: ParsedArgs
    conf: dict[str, str]
    inputs: list[str]
    record_filter: object | None = None
    time_range: TimeRange | None = None
    count_range: CountRange | None = None
    errors: int = 0
    flows_seen: int = 0
    sources: list = field(default_factory=list)  # -S servers (stream.client.Source)
    duration: float | None = None  # -T secs: how long to read the servers
    decode_columns: frozenset[str] | None = None  # what the sink reads of a file (None: all)
    _selectors: list[pl.Expr | None] = field(default_factory=list, repr=False)  # built once
    _start_mar: bytes | None = field(default=None, repr=False)  # of the input being read

    @classmethod
    def from_args(cls, program: str, args: ParsedArgs) -> ClientSession:
        conf = load_rarc(args.all("F"), skip_defaults=args.flag("X") > 0)
        inputs = args.all("r") + expand_directories(args.all("R"))
        session = cls(program, args, conf, inputs)
        session.add_stream_sources(args, conf)
        if not inputs and not session.sources:
            raise UsageError("no input: give -r FILE ..., -R DIR ... or -S HOST[:PORT]")
        # The filter is compiled before any input is read: a bad one stops us at once.
        filter_text = args.filter or conf.get("RA_FILTER") or None
        if filter_text:
            session.record_filter = compile_record_filter(filter_text)
        time_text = args.value("t") or conf.get("RA_TIMERANGE") or None
        if time_text:
            from argusflow.ops.timerange import parse_timerange  # start-up time: only for -t

            session.time_range = parse_timerange(time_text)
        if args.value("N"):
            session.count_range = CountRange.parse(args.value("N") or "")
            session.count_range.later_extras = not session.selects
        return session

    def add_stream_sources(self, args: ParsedArgs, conf: dict[str, str]) -> None:
        """`-S host[:port]` / `argus://host[:port]` (several; port 561) and `-T secs`."""
        servers = args.all("S") or conf.get("RA_ARGUS_SERVER", "").split()
        if servers:  # the stream client (asyncio, ssl) costs ~0.1 s to import: only for -S
            from argusflow.stream.client import parse_source

            self.sources = [parse_source(text) for text in servers]
        duration = args.value("T")
        if duration is not None:
            try:
                self.duration = float(duration.rstrip("s"))
            except ValueError:
                raise UsageError(f"-T {duration}: expected a number of seconds") from None

    def remote_filter(self) -> str | None:
        """What ra sends as FILTER: MARs always pass, `local` keeps the filter to ourselves."""
        text = self.args.filter or self.conf.get("RA_FILTER") or None
        if not text or self.args.filter_is_local:
            return None
        return f"man or ({text})"

    @property
    def selects(self) -> bool:
        """A filter or a time range selects records (-N aside)."""
        return self.record_filter is not None or self.time_range is not None

    @property
    def _selector(self) -> pl.Expr | None:
        """selector(), built on first use: a numpy-only filter never builds it (nor imports
        polars)."""
        if not self._selectors:
            self._selectors.append(self.selector())
        return self._selectors[0]

    def selector(self) -> pl.Expr | None:
        parts: list[pl.Expr] = []
        if self.record_filter is not None:
            parts.append(self.record_filter.expr)  # type: ignore[attr-defined]
        if self.time_range is not None:
            from argusflow.records import derive  # a big module: only -t needs it here

            mar = derive.is_mar()
            parts.append(mar | self.time_range.expr(derive.stime_us(), derive.ltime_us()))
        if not parts:
            return None
        combined = parts[0]
        for p in parts[1:]:
            combined = combined & p
        return combined

    def batches(self, raw: bool = False) -> Iterator[tuple[pl.DataFrame | RawBatch | Copies,
                                                            bytes | None]]:
        """Selected records of every input, with that input's START MAR.  `raw`: those read
        from files come as the files hold them, for a writer that copies them: Copies when
        there is no selection or only a filter with a numpy form (then polars is never
        imported), RawBatch otherwise."""
        for path in self.inputs:
            yield from self._raw_batches_of(path) if raw else self._batches_of(path)
            if self.done():
                return
        if self.sources:
            yield from self._stream_batches()

    def _stream_batches(self) -> Iterator[tuple[pl.DataFrame, bytes | None]]:
        from argusflow.stream.client import StreamFeed

        tls = None
        if any(source.tls for source in self.sources):
            from argusflow.stream.client import tls_client_context

            c = self.conf
            tls = tls_client_context(c.get("RA_TLS_CA"), c.get("RA_TLS_CERT"), c.get("RA_TLS_KEY"))
        feed = StreamFeed(self.sources, self.remote_filter(), self.duration, tls=tls)
        try:
            for item in feed:
                if isinstance(item, str):
                    self.report(item)
                    continue
                batch, start_mar = item
                selected = self.select(batch)
                if selected.height:
                    yield selected, start_mar
                if self.done():
                    return
        finally:
            feed.close()

    def _batches_of(self, path: str) -> Iterator[tuple[pl.DataFrame, bytes | None]]:
        picker = self.row_picker()
        # A selection run on the decoded batch (no picker) may read any column: decode them all.
        columns = self.decode_columns if picker is not None or not self.selects else None
        try:
            for batch in iter_batches(path, select=picker, columns=columns):
                # With a picker the reader has selected already (on a few columns), and the
                # picker saw the START MAR even if the filter dropped it.
                selected = self.select(batch) if picker is None else batch
                if picker is None and picker_start_mar(batch) is not None:
                    self._start_mar = picker_start_mar(batch)
                if selected.height:
                    yield selected, self._start_mar
                del batch, selected  # not held while the next chunk is decoded
                if self.done():
                    return
        except CorruptInput as err:
            self.report(str(err))
        except UsageError as err:
            self.report(str(err))
        finally:
            self._start_mar = None

    def _raw_batches_of(self, path: str) -> Iterator[tuple[RawBatch | Copies, bytes | None]]:
        """`_batches_of` for a writer that copies records: the reader decodes only what the
        selection reads (all of it when polars cannot name the columns)."""
        picker = self.row_picker() or (RowPicker(self, None) if self.selects else None)
        try:
            if picker is None or picker.numpy is not None:
                yield from self._copies_of(path, picker)
                return
            for raw in iter_raw_batches(path, select=picker):
                if picker is None and picker_start_mar(raw.records) is not None:
                    self._start_mar = picker_start_mar(raw.records)
                yield raw, self._start_mar
                if self.done():
                    return
        except (CorruptInput, UsageError) as err:
            self.report(str(err))
        finally:
            self._start_mar = None

    def _copies_of(self, path: str, picker: RowPicker | None) -> Iterator[tuple[Copies, bytes | None]]:
        """_raw_batches_of without polars: every record, or those a numpy filter picks."""
        columns = picker.columns if picker is not None else None
        for copies in iter_copies(path, columns or frozenset(), picker):
            if picker is None and copies.first_mar() is not None:
                self._start_mar = copies.first_mar()
            yield copies, self._start_mar

    def row_picker(self) -> RowPicker | None:
        """Selection done inside the reader, on the columns it needs (None: nothing to select,
        or a selector whose columns polars cannot name)."""
        if not self.selects and self.count_range is None:
            return None
        numpy = self.numpy_filter()
        if numpy is not None:
            return RowPicker(self, frozenset(numpy.columns | PICKER_COLUMNS), numpy)
        try:
            roots = set(self._selector.meta.root_names()) if self._selector is not None else set()
        except Exception:  # noqa: BLE001 - an expression polars cannot list: decode it all
            return None
        return RowPicker(self, frozenset(roots | PICKER_COLUMNS))

    def numpy_filter(self) -> RecordFilter | None:
        """The filter, when it is the whole selection and runs on numpy (filter.numpy_ops)."""
        f = self.record_filter
        if f is None or self.time_range is not None or self.count_range is not None:
            return None
        return f if getattr(f, "numpy", None) is not None else None  # type: ignore[return-value]

    def select(self, batch: pl.DataFrame) -> pl.DataFrame:
        if self._selector is not None:
            batch = batch.filter(self._selector)
        if self.count_range is not None:
            batch = self.apply_count_range(batch)
        return batch

    def apply_count_range(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Keep the flow records numbered first..last (MARs are not counted, as in ra), and
        the MARs between them: ra 3.0.8 stops once it has the last (no STOP MAR after it) and
        skips the MARs before the first (a MAR's number is that of the flows before it)."""
        assert self.count_range is not None

        is_flow = batch["rtype"] != RTYPE_MAR
        if batch.height and "offset" in batch.columns and int(batch["offset"][0]) == 0:
            self.count_range.start_input()  # every program's batches: an input's first record
        number, start_number, self.flows_seen = self.count_range.numbers(is_flow)
        first = self.count_range.first
        last = self.count_range.last if self.count_range.last is not None else 2**62
        flow_kept = is_flow & (start_number >= first) & (number <= last)
        mar_kept = ~is_flow & (number >= first - 1) & (number < last)
        return batch.filter(flow_kept | mar_kept)

    def done(self) -> bool:
        return (self.count_range is not None and self.count_range.last is not None
                and self.flows_seen >= self.count_range.last)

    def report(self, message: str) -> None:
        self.errors += 1
        sys.stdout.flush()
        print(f"{self.program}: {message}", file=sys.stderr)

    def exit_code(self, matched: int) -> int:
        if self.errors:
            return EXIT_ERROR
        return EXIT_MATCHED if matched else EXIT_NONE


def printing_projection(fields: Iterable[Field], tcp_flags: bool) -> frozenset[str] | None:
    """The columns to decode for printing `fields` (None: all of them).

    Most of the decoding time goes to the network DSR (TCP_PERF has 30 columns), so that DSR is
    cut to the columns the fields' values read (their polars expressions name them); the other
    DSRs are cheap and decoded whole, which also covers what the printer reads outside those
    expressions (addresses, user data, MARs).  `tcp_flags`: -z / -Z print states from the TCP
    flag bytes, so the network DSR is decoded whole.
    """
    if tcp_flags:
        return None
    roots: set[str] = set()
    try:
        for f in fields:
            roots.update(f.value().meta.root_names())
            if f.present is not None:
                roots.update(f.present().meta.root_names())
    except Exception:  # noqa: BLE001 - an expression polars cannot list: decode it all
        return None
    from argusflow.records.dsr_decode import DSR_COLUMNS

    net = DSR_COLUMNS["net"]
    # net_subtype always: the reader needs it to drop the RTP objects ra does not read
    return frozenset((set(NUMPY_DTYPES) - net) | (roots & net) | {"net_subtype"})


def picker_start_mar(batch: pl.DataFrame | dict[str, np.ndarray]) -> bytes | None:
    """The input's START MAR if `batch` (a frame, or numpy columns) opens the input with it."""
    if len(batch["rtype"]) and int(batch["offset"][0]) == 0 and int(batch["rtype"][0]) == RTYPE_MAR:
        return batch["mar_raw"][0]
    return None


PICKER_COLUMNS = frozenset({"rtype", "offset", "mar_raw"})  # what RowPicker reads itself


@dataclass
class RowPicker:
    """A session's selection (filter, -t, -N) as the reader's RowSelector (records.codec).
    `numpy`: the filter, when it is the whole selection and runs on numpy columns."""

    session: ClientSession
    columns: frozenset[str] | None  # None: every column
    numpy: RecordFilter | None = None

    def __call__(self, probe: pl.DataFrame | dict[str, np.ndarray]) -> np.ndarray:
        start_mar = picker_start_mar(probe)
        if start_mar is not None:
            self.session._start_mar = start_mar
        if self.numpy is not None:
            if isinstance(probe, dict):  # RecordReader.feed_copies: numpy columns already
                columns = probe
            else:
                columns = {name: probe[name].to_numpy() for name in self.numpy.columns}
            return np.flatnonzero(self.numpy.numpy_mask(columns, len(probe["rtype"])))
        selector = self.session._selector
        if self.session.count_range is None and selector is not None:
            # One boolean column is cheaper than filtering a numbered copy of the probe.
            keep = probe.select(selector.fill_null(False)).to_series().to_numpy()
            return np.flatnonzero(keep)
        kept = self.session.select(probe.with_row_index("_row"))
        return kept["_row"].to_numpy().astype(np.int64)


def compile_record_filter(text: str) -> object:
    """Compile a record filter; until the filter language lands, refuse it clearly."""
    try:
        from argusflow.filter import compile_filter  # type: ignore[attr-defined]
    except ImportError:
        raise UsageError(
            f"filter expressions are not supported yet (got '{text}'); see the filter issue"
        ) from None
    return compile_filter(text)
