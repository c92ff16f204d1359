"""The Argus TCP record stream (spec §11) as state machines: bytes in, events out, no sockets.

Server side, one `ServerConnection` per accepted peer:

    conn = ServerConnection(start_mar, now=t)       # the START MAR is queued at once
    events = conn.receive_data(chunk)               # FILTER:/START:/DONE:, b"" = peer EOF
    conn.send_records(data)                         # only reaches peers that sent START:
    conn.tick(now)                                  # the START: deadline, a half FILTER:
    transport.write(conn.data_to_send())

`Fanout` holds the connections of one server and gives every started one the records its
filter accepts; records are encoded once per batch and cut per distinct filter, so a thousand
peers with the same (or no) filter cost one selection.  Each connection keeps a bounded backlog:
a peer that does not read is closed alone when its backlog overflows.

Client side, `ClientConnection` turns what a server sends into record batches and answers it
(`FILTER: ` then, after `OK`, `START: `).  Peers that misbehave (random bytes, a command cut
in half, a command that never ends) never raise: they produce `Closed` / `Ignored` events and
the state machine stays consistent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import polars as pl

from argusflow.errors import ArgusflowError, CorruptInput, FilterError
from argusflow.records.codec import MAR_BYTES, RecordReader, check_start_mar
from argusflow.records.framing import frame
from argusflow.records.schema import RTYPE_MAR

# 4-byte error MARs a server sends instead of its START MAR, then closes (spec §11.2 item 6).
ACCESS_DENIED = b"\x83\x81\x00\x01"
TOO_MANY_CLIENTS = b"\x83\x82\x00\x01"
REFUSALS = {ACCESS_DENIED: "access denied", TOO_MANY_CLIENTS: "too many clients"}

START, DONE, FILTER = b"START:", b"DONE:", b"FILTER:"
IGNORED_COMMANDS = (b"FILE:", b"MODEL:", b"PROJECT:")
KEYWORDS = (START, DONE, FILTER, *IGNORED_COMMANDS)
OK, SYNTAX, ERROR = b"OK", b"SY", b"ER"
CAUSE_STOP = 0x30

# What a peer may send before the server gives up on it.
MAX_COMMAND_BYTES = 16 << 10  # one FILTER: expression; ra's own buffer is smaller
MAX_JUNK_BYTES = 64 << 10  # unknown commands / bytes after START: before we close
START_TIMEOUT_S = 5.0  # argus 3.0.8: a peer that has not sent START: within 5 s is dropped
FILTER_GRACE_S = 1.0  # a FILTER: that does not compile may still be arriving
FILTER_QUICK_TRIES = 4  # compilations of a growing FILTER: fragment before we slow down
MAX_BACKLOG_BYTES = 8 << 20


# ------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class FilterAccepted:
    text: str


@dataclass(frozen=True)
class FilterRefused:
    text: str
    reason: str


@dataclass(frozen=True)
class Started:
    pass


@dataclass(frozen=True)
class Ignored:
    """A command we do not act on (FILE:, MODEL:, junk); `data` is at most 64 bytes of it."""

    data: bytes


@dataclass(frozen=True)
class Closed:
    """The connection is over; the transport sends what is queued, then closes."""

    reason: str


@dataclass(frozen=True)
class Hello:
    """Client side: the server's START MAR arrived."""

    start_mar: bytes = field(repr=False)


@dataclass(frozen=True)
class Refused:
    """Client side: the server answered with an error record instead of its START MAR."""

    reason: str


@dataclass(frozen=True)
class Records:
    batch: pl.DataFrame = field(repr=False)


@dataclass(frozen=True)
class EndOfStream:
    """Client side: a STOP MAR arrived; EOF normally follows."""


@dataclass(frozen=True)
class Corrupt:
    error: CorruptInput


Event = (FilterAccepted | FilterRefused | Started | Ignored | Closed | Hello | Refused | Records
         | EndOfStream | Corrupt)


class State(Enum):
    HELLO = "hello"  # server: START MAR sent, waiting for FILTER:/START:
    FILTER_REPLY = "filter-reply"  # client: FILTER: sent, waiting for the 2-byte reply
    STREAMING = "streaming"
    CLOSED = "closed"


def default_compile(text: str) -> object:
    from argusflow.filter import compile_filter

    return compile_filter(text)


# -------------------------------------------------------------------------------- server side


class ServerConnection:
    """One peer of an Argus record server."""

    def __init__(self, start_mar: bytes, *, now: float = 0.0,
                 compile_filter: Callable[[str], object] = default_compile,
                 start_timeout: float = START_TIMEOUT_S, max_backlog: int = MAX_BACKLOG_BYTES,
                 filter_grace: float = FILTER_GRACE_S) -> None:
        self.state = State.HELLO
        self.filter: object | None = None
        self.filter_text: str | None = None
        self.close_reason: str | None = None
        self._compile = compile_filter
        self._inbuf = b""
        self._junk = 0
        self._out: deque[bytes] = deque([start_mar])
        self.backlog = len(start_mar)
        self.max_backlog = max_backlog
        self._start_timeout = start_timeout
        self._start_deadline = now + start_timeout
        self._filter_error: Exception | None = None
        self._filter_grace = filter_grace
        self._filter_deadline: float | None = None
        self._filter_tried = 0  # length of the FILTER: fragment last compiled
        self._filter_attempts = 0
        self._now = now
        self.records_bytes = 0

    # -- what the transport calls

    def receive_data(self, data: bytes, now: float | None = None) -> list[Event]:
        """Bytes from the peer; b"" means the peer closed its side."""
        if now is not None:
            self._now = now
        if self.state is State.CLOSED:
            return []
        if not data:
            return [self._close("peer closed the connection")]
        self._inbuf += data
        return self._parse()

    def tick(self, now: float) -> list[Event]:
        """Deadlines: START: not sent in time, a FILTER: that never became valid."""
        self._now = now
        if self.state is not State.HELLO:
            return []
        if self._filter_deadline is not None and now >= self._filter_deadline:
            return self._filter(final=True) or []
        if now >= self._start_deadline:
            return [self._close(f"no START: within {self._start_timeout:g} s")]
        return []

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self.backlog = 0
        return data

    def send_records(self, data: bytes) -> Closed | None:
        """Queue records for a started peer; a peer whose backlog overflows is closed."""
        if self.state is not State.STREAMING or not data:
            return None
        if self.backlog + len(data) > self.max_backlog:
            self._out.clear()
            self.backlog = 0
            return self._close(f"too slow: more than {self.max_backlog} bytes waiting, dropped")
        self._queue(data)
        self.records_bytes += len(data)
        return None

    def send_stop(self, stop_mar: bytes) -> None:
        """Server shutdown: started peers get the STOP MAR; then everyone is closed."""
        if self.state is State.STREAMING:
            self._queue(stop_mar)
        if self.state is not State.CLOSED:
            self._close("server shutting down")

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def started(self) -> bool:
        return self.state is State.STREAMING

    # -- command parsing

    def _parse(self) -> list[Event]:
        events: list[Event] = []
        while self._inbuf and self.state is not State.CLOSED:
            self._inbuf = self._inbuf.lstrip(b"\x00\r\n\t ")
            if not self._inbuf:
                break
            step = self._command()
            if step is None:  # an incomplete command: wait for more
                if len(self._inbuf) > MAX_COMMAND_BYTES:
                    events.append(self._close(f"command longer than {MAX_COMMAND_BYTES} bytes"))
                break
            events.extend(step)
        return events

    def _command(self) -> list[Event] | None:
        buf = self._inbuf
        for word in KEYWORDS:
            if len(buf) < len(word) and word.startswith(buf):
                return None  # "STA": the rest of the keyword has not arrived
        if buf.startswith(START):
            self._consume(len(START), optional_space=True)
            return self._start()
        if buf.startswith(DONE):
            self._inbuf = b""
            return [self._close("peer sent DONE:")]
        if buf.startswith(FILTER):
            return self._filter()
        return self._ignore()

    def _consume(self, n: int, optional_space: bool = False) -> None:
        self._inbuf = self._inbuf[n:]
        if optional_space and self._inbuf[:1] == b" ":
            self._inbuf = self._inbuf[1:]

    def _start(self) -> list[Event]:
        if self.state is State.STREAMING:
            return [Ignored(START)]
        self.state = State.STREAMING
        self._filter_deadline = None
        return [Started()]

    def _filter(self, final: bool = False) -> list[Event] | None:
        """FILTER: compile it; one that does not compile yet may still be arriving."""
        if self.state is State.STREAMING:
            # A reply now would land inside the record stream; argus clients never do this.
            return self._ignore()
        body, rest, terminated = split_filter(self._inbuf[len(FILTER):])
        terminated = terminated or final
        if not terminated and not body.strip():
            return None  # "FILTER: " so far: the expression has not arrived yet
        if not terminated and self._filter_attempts >= FILTER_QUICK_TRIES \
                and len(body) < 2 * self._filter_tried:
            # After a few tries, recompile a growing fragment only when it has doubled: a peer
            # sending a filter byte by byte must not cost one compilation per byte (the
            # deadline tries the whole of it last).
            return None
        self._filter_tried = len(body)
        self._filter_attempts += 1
        text = body.decode("utf-8", "replace").strip()
        try:
            compiled = self._compile(text) if text else None
        except (ArgusflowError, RecursionError, ValueError) as err:
            self._filter_error = err
            if not terminated:
                # The expression may still be arriving (TCP may cut one send in two).
                if self._filter_deadline is None:
                    self._filter_deadline = self._now + self._filter_grace
                return None
            self._inbuf = rest
            return self._refuse_filter(text)
        self._inbuf = rest
        self._filter_deadline = None
        self._filter_tried = self._filter_attempts = 0
        self.filter, self.filter_text = compiled, (text or None)
        self._queue(OK)
        return [FilterAccepted(text)]

    def _refuse_filter(self, text: str) -> list[Event]:
        err = self._filter_error
        self._inbuf = b""
        self._filter_deadline = None
        self._queue(SYNTAX if isinstance(err, FilterError) else ERROR)
        reason = str(err) if err is not None else "bad filter"
        return [FilterRefused(text, reason), self._close(f"filter refused: {reason}")]

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self.backlog += len(data)

    def _ignore(self) -> list[Event]:
        """FILE:, MODEL:, PROJECT: and junk: argus treats one recv() as one command."""
        buf = self._inbuf
        end = first_terminator(buf)
        taken = buf if end < 0 else buf[:end + 1]
        self._inbuf = b"" if end < 0 else buf[end + 1:]
        self._junk += len(taken)
        if self._junk > MAX_JUNK_BYTES:
            return [self._close(f"more than {MAX_JUNK_BYTES} bytes of unknown commands")]
        return [Ignored(taken[:64])]

    def _close(self, reason: str) -> Closed:
        self.state = State.CLOSED
        self.close_reason = reason
        return Closed(reason)


def first_terminator(buf: bytes) -> int:
    """Index of the first NUL or newline, -1 if none."""
    found = [i for i in (buf.find(b"\x00"), buf.find(b"\n")) if i >= 0]
    return min(found) if found else -1


def split_filter(after: bytes) -> tuple[bytes, bytes, bool]:
    """A FILTER: body runs to a NUL/newline, to a following START:/DONE:, or to the end.

    Returns (body, rest, terminated): `terminated` is False when the body simply ran to the end
    of what has arrived (more of it may still come).
    """
    cut = len(after)
    terminated = False
    end = first_terminator(after)
    if end >= 0:
        cut, terminated = end, True
    for word in (START, DONE):
        at = after.find(word)
        if 0 <= at < cut:
            cut, terminated = at, True
    rest = after[cut:]
    if rest[:1] in (b"\x00", b"\n"):
        rest = rest[1:]
    return after[:cut], rest, terminated


# ------------------------------------------------------------------------------------- fanout


class EncodedBatch:
    """A record batch with its wire bytes and the byte range of each record."""

    def __init__(self, batch: pl.DataFrame, data: bytes) -> None:
        self.batch = batch
        self.data = data
        found = frame(np.frombuffer(data, dtype=np.uint8))
        if len(found.starts) != batch.height:
            raise ValueError(f"{batch.height} rows but {len(found.starts)} records in the bytes")
        self.starts = found.starts
        self.lengths = found.lengths

    def select(self, mask: np.ndarray) -> bytes:
        """The bytes of the records where mask is true, in order (one gather of u32 words)."""
        if mask.all():
            return self.data
        keep = np.flatnonzero(mask)
        if not len(keep):
            return b""
        words = self.lengths[keep] // 4
        first = self.starts[keep] // 4
        # Word index of every output word: record start + position inside the record.
        base = np.repeat(first - (np.cumsum(words) - words), words)
        index = base + np.arange(int(words.sum()))
        return np.frombuffer(self.data, dtype=np.uint32)[index].tobytes()


class Fanout:
    """The connections of one server and the distribution of records to them."""

    def __init__(self) -> None:
        self.connections: set[ServerConnection] = set()

    def add(self, conn: ServerConnection) -> None:
        self.connections.add(conn)

    def discard(self, conn: ServerConnection) -> None:
        self.connections.discard(conn)

    @property
    def started(self) -> int:
        return sum(1 for c in self.connections if c.started)

    def publish(self, batch: pl.DataFrame, data: bytes) -> list[tuple[ServerConnection, Closed]]:
        """Queue `data` (the encoding of `batch`) for every started connection, filtered.

        Returns the connections that overflowed and were closed by it.
        """
        targets = [c for c in self.connections if c.started]
        if not targets or not data:
            return []
        encoded: EncodedBatch | None = None
        per_filter: dict[str | None, bytes] = {}
        dropped: list[tuple[ServerConnection, Closed]] = []
        for conn in targets:
            key = conn.filter_text
            if key not in per_filter:
                if key is None:
                    per_filter[key] = data
                else:
                    encoded = encoded or EncodedBatch(batch, data)
                    per_filter[key] = encoded.select(filter_mask(conn.filter, batch))
            closed = conn.send_records(per_filter[key])
            if closed is not None:
                dropped.append((conn, closed))
        return dropped

    def stop(self, stop_mar: bytes) -> None:
        for conn in self.connections:
            conn.send_stop(stop_mar)

    def tick(self, now: float) -> list[tuple[ServerConnection, Event]]:
        out: list[tuple[ServerConnection, Event]] = []
        for conn in list(self.connections):
            out.extend((conn, e) for e in conn.tick(now))
        return out


def filter_mask(compiled: object, batch: pl.DataFrame) -> np.ndarray:
    expr = compiled.expr  # type: ignore[attr-defined]
    return batch.select(expr.fill_null(False).alias("m")).to_series().to_numpy().astype(bool)


# -------------------------------------------------------------------------------- client side


class ClientConnection:
    """The client end: reads the START MAR, negotiates the filter, then decodes records."""

    def __init__(self, filter_text: str | None = None, source: str = "<stream>") -> None:
        self.filter_text = filter_text
        self.source = source
        self.state = State.HELLO
        self.start_mar: bytes | None = None
        self.refused: str | None = None
        self.reader = RecordReader(source)
        self._inbuf = b""
        self._out: list[bytes] = []

    def receive_data(self, data: bytes) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        if not data:
            return self._eof()
        if self.state is State.STREAMING:
            return self._records(data)
        self._inbuf += data
        events: list[Event] = []
        if self.state is State.HELLO:
            events += self._hello()
        if self.state is State.FILTER_REPLY:
            events += self._filter_reply()
        if self.state is State.STREAMING and self._inbuf:
            rest, self._inbuf = self._inbuf, b""
            events += self._records(rest)
        return events

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def close(self) -> None:
        """Say goodbye politely (`DONE: `) if the server is still listening."""
        if self.state is not State.CLOSED:
            self._out.append(b"DONE: ")
            self.state = State.CLOSED

    def _hello(self) -> list[Event]:
        buf = self._inbuf
        if len(buf) >= 4 and buf[0] & 0xF0 == RTYPE_MAR and buf[2:4] == b"\x00\x01":
            self.refused = REFUSALS.get(buf[:4], f"error record 0x{buf[:4].hex()}")
            self.state = State.CLOSED
            return [Refused(self.refused)]
        if len(buf) < MAR_BYTES:
            return []
        problem = check_start_mar(buf)
        if problem:
            self.state = State.CLOSED
            return [Corrupt(CorruptInput(self.source, 0, problem, 0))]
        self.start_mar = buf[:MAR_BYTES]
        self._inbuf = buf[MAR_BYTES:]
        events: list[Event] = [Hello(self.start_mar)]
        events += self._records(self.start_mar)
        if self.filter_text:
            self._out.append(b"FILTER: " + self.filter_text.encode())
            self.state = State.FILTER_REPLY
        else:
            self._out.append(b"START: ")
            self.state = State.STREAMING
        return events

    def _filter_reply(self) -> list[Event]:
        if len(self._inbuf) < 2:
            return []
        reply, self._inbuf = self._inbuf[:2], self._inbuf[2:]
        if reply != OK:
            self.state = State.CLOSED
            why = {SYNTAX: "syntax error", ERROR: "error"}.get(reply, f"reply {reply!r}")
            return [FilterRefused(self.filter_text or "", f"server refused the filter ({why})")]
        self._out.append(b"START: ")
        self.state = State.STREAMING
        return [FilterAccepted(self.filter_text or "")]

    def _records(self, data: bytes) -> list[Event]:
        batch = self.reader.feed(data)
        events: list[Event] = []
        if batch.height:
            events.append(Records(batch))
            stops = (batch["rtype"] == RTYPE_MAR) & ((batch["cause"] & 0xF0) == CAUSE_STOP)
            if stops.any():
                events.append(EndOfStream())
        if self.reader.error is not None:
            self.state = State.CLOSED
            events.append(Corrupt(self.reader.error))
        return events

    def _eof(self) -> list[Event]:
        state, self.state = self.state, State.CLOSED
        if state is State.HELLO:
            return [Closed("server closed the connection before its start record"
                           if not self._inbuf else
                           f"server closed the connection after {len(self._inbuf)} bytes")]
        if state is State.FILTER_REPLY:
            return [Closed("server closed the connection instead of answering the filter")]
        error = self.reader.finish()
        events: list[Event] = [Corrupt(error)] if error is not None else []
        return events + [Closed("server closed the connection")]
