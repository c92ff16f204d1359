"""An asyncio Argus stream client (`ra -S`, radium's sources): it only moves bytes.

`stream_records(source, on_batch)` connects, lets `ClientConnection` negotiate the filter and
decode the records, and hands every batch to `on_batch` until the server closes.  Anything a
user can cause (no such host, refused, bad filter, corrupt stream) ends as a NetworkError or
CorruptInput *after* every good record received has been handed on.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from argusflow.errors import CorruptInput, NetworkError, UsageError
from argusflow.stream.protocol import (
    ClientConnection,
    Closed,
    Corrupt,
    FilterRefused,
    Records,
    Refused,
)

DEFAULT_PORT = 561
READ_BYTES = 1 << 20
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/]*))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Source:
    host: str
    port: int = DEFAULT_PORT
    tls: bool = False  # argus+tls:// (our extension; plain TCP is what Argus 3.0.8 speaks)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_source(text: str) -> Source:
    """`host`, `host:port`, `[v6]:port`, `argus://host:port`, `argus-tcp://...` (port 561)."""
    spec = text.strip()
    tls = False
    for scheme in ("argus://", "argus-tcp://", "argus+tls://"):
        if spec.startswith(scheme):
            spec = spec[len(scheme):]
            tls = scheme == "argus+tls://"
            break
    else:
        if "://" in spec:
            raise UsageError(f"-S {text}: only argus:// (TCP) and argus+tls:// are supported")
    if "//" in spec:
        raise UsageError(f"-S {text}: the host:port//file form is not supported; use -r FILE")
    if spec.count(":") > 1 and not spec.startswith("["):
        return Source(spec, DEFAULT_PORT, tls)  # a bare IPv6 address
    found = _HOST_PORT.match(spec)
    if not found or not (found["v6"] or found["host"]):
        raise UsageError(f"-S {text}: expected HOST[:PORT] or argus://HOST[:PORT]")
    port = int(found["port"]) if found["port"] else DEFAULT_PORT
    if not 0 < port < 65536:
        raise UsageError(f"-S {text}: port {port} out of range")
    return Source(found["v6"] or found["host"], port, tls)


def tls_client_context(ca: str | None = None, cert: str | None = None,
                       key: str | None = None) -> ssl.SSLContext:
    """Verify the server against `ca` (else the system's CAs); `cert`/`key`: our certificate."""
    try:
        context = ssl.create_default_context(cafile=ca or None)
        if cert:
            context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as err:
        raise UsageError(f"TLS: {err}") from None
    return context


async def stream_records(source: Source, on_batch: Callable[[pl.DataFrame], None], *,
                         filter_text: str | None = None, connect_timeout: float = 10.0,
                         on_hello: Callable[[bytes], None] | None = None,
                         tls: ssl.SSLContext | None = None) -> str:
    """Read one server until it closes; returns why it ended (normal end of stream)."""
    context = (tls or tls_client_context()) if source.tls else None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(source.host, source.port, limit=READ_BYTES, ssl=context,
                                    server_hostname=source.host if context else None),
            connect_timeout)
    except ssl.SSLError as err:
        raise NetworkError(f"{source}: TLS: {err.reason or err}") from None
    except (TimeoutError, OSError) as err:
        why = "timed out" if isinstance(err, TimeoutError) else (
            os.strerror(err.errno) if err.errno else str(err))
        raise NetworkError(f"{source}: connect failed: {why}") from None
    conn = ClientConnection(filter_text, source=str(source))
    try:
        while True:
            try:
                data = await reader.read(READ_BYTES)
            except ssl.SSLError as err:
                raise NetworkError(f"{source}: TLS: {err.reason or err}") from None
            except OSError as err:
                raise NetworkError(f"{source}: {err.strerror or err}") from None
            for event in conn.receive_data(data):
                if isinstance(event, Records):
                    on_batch(event.batch)
                elif isinstance(event, Refused):
                    raise NetworkError(f"{source}: server refused the connection: {event.reason}")
                elif isinstance(event, FilterRefused):
                    raise NetworkError(f"{source}: {event.reason}")
                elif isinstance(event, Corrupt):
                    raise event.error
                elif isinstance(event, Closed):
                    if conn.start_mar is None:  # not even the start record: a failed connect
                        raise NetworkError(f"{source}: {event.reason}")
                    return event.reason
                if on_hello is not None and conn.start_mar is not None:
                    on_hello(conn.start_mar)
                    on_hello = None
            out = conn.data_to_send()
            if out:
                writer.write(out)
            if not data:
                if conn.start_mar is None:
                    raise NetworkError(f"{source}: server closed the connection before its start "
                                       "record")
                return "server closed the connection"
    finally:
        conn.close()
        await _goodbye(writer, conn.data_to_send())


async def _goodbye(writer: asyncio.StreamWriter, data: bytes) -> None:
    try:
        if data and not writer.is_closing():
            writer.write(data)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (TimeoutError, OSError, asyncio.CancelledError):
        pass


class StreamFeed:
    """A blocking iterator over the records of several servers read at once (`ra -S a -S b`).

    An asyncio loop in a helper thread reads every source; batches come out in arrival order as
    (batch, start_mar of their source); an error of one source comes out as a string and the
    others go on.  `duration` (ra -T) ends the reading early; `close()` ends it at once.
    """

    _END = object()

    def __init__(self, sources: list[Source], filter_text: str | None = None,
                 duration: float | None = None, depth: int = 64,
                 tls: ssl.SSLContext | None = None) -> None:
        import queue
        import threading

        self.sources = sources
        self.filter_text = filter_text
        self.duration = duration
        self.tls = tls
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, name="argus-stream", daemon=True)
        self._thread.start()

    def __iter__(self):  # noqa: ANN204 - a generator of (batch, start_mar) or str
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        loop, main = self._loop, self._main
        if loop is not None and main is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(main.cancel)
            except RuntimeError:
                pass
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._queue.get(timeout=0.05)
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
        self._thread.join()

    def _put(self, item: object) -> None:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            asyncio.run(self._read_all())
        finally:
            self._put(self._END)  # a no-op once close() is draining

    async def _read_all(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        jobs = [self._read_one(s) for s in self.sources]
        try:
            if self.duration is not None:
                await asyncio.wait_for(asyncio.gather(*jobs), self.duration)
            else:
                await asyncio.gather(*jobs)
        except (TimeoutError, asyncio.CancelledError):
            pass

    async def _read_one(self, source: Source) -> None:
        start: list[bytes] = []

        def on_batch(batch: pl.DataFrame) -> None:
            self._put((batch, start[0] if start else None))

        try:
            await stream_records(source, on_batch, filter_text=self.filter_text,
                                 on_hello=start.append, tls=self.tls)
        except (NetworkError, CorruptInput) as err:
            self._put(str(err))
