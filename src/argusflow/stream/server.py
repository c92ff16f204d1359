"""An asyncio Argus record server (`argus -P`, `radium -P`): it only moves bytes.

Everything the protocol decides (commands, filters, deadlines, backlog bounds) is in
`stream.protocol`; this module accepts sockets, applies the bind list and the allow-list of
client networks, and shuttles bytes between sockets and `ServerConnection`s.

    server = RecordServer(lambda: mar.start_mar(srcid, startime_us=t0, now_us=now()))
    await server.listen(561, ["127.0.0.1", "::1"])        # argus/radium -P 561 -B ...
    server.publish(batch, data)       # each record batch (and STATUS MAR) with its wire bytes
    await server.stop(mar.stop_mar(srcid, ...))             # STOP MAR, then close everyone

Flow control: records are pushed to a peer's socket only while asyncio has not paused writing
to it; otherwise they wait in the connection's bounded backlog, and a peer whose backlog
overflows is aborted alone (the others never wait for it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable, Iterable

import polars as pl

from argusflow.errors import NetworkError, UsageError
from argusflow.stream.protocol import (
    ACCESS_DENIED,
    MAX_BACKLOG_BYTES,
    START_TIMEOUT_S,
    TOO_MANY_CLIENTS,
    Closed,
    Fanout,
    FilterAccepted,
    FilterRefused,
    Ignored,
    ServerConnection,
    Started,
    default_compile,
)

log = logging.getLogger("argusflow.stream.server")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WRITE_HIGH_WATER = 256 << 10
TICK_S = 0.5


def parse_networks(text: str | Iterable[str]) -> list[Network]:
    """`127.0.0.0/8,::1 10.1.2.3` -> networks; a bare address is a /32 (/128)."""
    words = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    out: list[Network] = []
    for word in words:
        try:
            out.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise UsageError(f"allow-list: '{word}' is not an address or network") from None
    return out


def tls_server_context(cert: str, key: str | None = None,
                       client_ca: str | None = None) -> ssl.SSLContext:
    """Our TLS extension: serve with `cert`/`key`; with `client_ca`, require client certificates
    signed by it."""
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key or None)
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as err:
        raise UsageError(f"TLS: {err}") from None
    return context


def allowed(address: str, networks: list[Network] | None) -> bool:
    if networks is None:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


class RecordServer:
    """Serve a record stream to many peers.

    hello(): the START MAR a new peer gets (called per peer: it carries the current time).
    allow: client networks allowed to connect (None = everyone); others get ACCESS_DENIED.
    """

    def __init__(self, hello: Callable[[], bytes], *, allow: list[Network] | None = None,
                 max_clients: int = 4096, start_timeout: float = START_TIMEOUT_S,
                 max_backlog: int = MAX_BACKLOG_BYTES,
                 compile_filter: Callable[[str], object] = default_compile,
                 tls: ssl.SSLContext | None = None) -> None:
        self.hello = hello
        self.tls = tls
        self.allow = allow
        self.max_clients = max_clients
        self.start_timeout = start_timeout
        self.max_backlog = max_backlog
        self.compile_filter = compile_filter
        self.fanout = Fanout()
        self.peers: dict[ServerConnection, _Peer] = {}
        self.servers: list[asyncio.base_events.Server] = []
        self._ticker: asyncio.Task | None = None
        self.dropped_slow = 0

    async def listen(self, port: int, hosts: list[str] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for host in hosts or [None]:  # type: ignore[list-item]
            try:
                server = await loop.create_server(lambda: _Peer(self), host, port, ssl=self.tls,
                                                  reuse_address=True, backlog=1024)
            except OSError as err:
                where = f"{host or '*'}:{port}"
                raise NetworkError(f"cannot listen on {where}: {err.strerror or err}") from None
            self.servers.append(server)
        self._ticker = asyncio.create_task(self._tick())

    @property
    def ports(self) -> list[int]:
        return [s.getsockname()[1] for srv in self.servers for s in srv.sockets]

    @property
    def clients(self) -> int:
        return len(self.peers)

    def waiting_bytes(self) -> int:
        """The largest amount of data waiting for one started peer (ours plus asyncio's)."""
        return max((conn.backlog + peer.buffered() for conn, peer in self.peers.items()
                    if conn.started), default=0)

    def publish(self, batch: pl.DataFrame, data: bytes) -> None:
        """Send `data` (the encoding of `batch`) to every started peer its filter lets through."""
        for conn, closed in self.fanout.publish(batch, data):
            self.dropped_slow += 1
            peer = self.peers.get(conn)
            log.warning("client %s: %s", peer.name if peer else "?", closed.reason)
            if peer is not None:
                peer.abort()
        for peer in list(self.peers.values()):
            peer.flush()

    async def drained(self, stall_timeout: float = 10.0) -> None:
        """Wait until every started peer has taken what was sent to it; give up on peers that
        take nothing for `stall_timeout` seconds (they are then dropped by stop())."""
        loop = asyncio.get_running_loop()
        last, since = self.waiting_bytes(), loop.time()
        while last and loop.time() - since < stall_timeout:
            await asyncio.sleep(0.01)
            now_waiting = self.waiting_bytes()
            if now_waiting < last:
                since = loop.time()
            last = now_waiting

    async def stop(self, stop_mar: bytes, drain_timeout: float = 2.0) -> None:
        """Shutdown: started peers get the STOP MAR, every socket is closed."""
        for server in self.servers:
            server.close()
        if self._ticker is not None:
            self._ticker.cancel()
        self.fanout.stop(stop_mar)
        peers = list(self.peers.values())
        for peer in peers:
            peer.flush()
        deadline = asyncio.get_running_loop().time() + drain_timeout
        while self.peers and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for peer in list(self.peers.values()):
            peer.abort()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_S)
            for conn, event in self.fanout.tick(loop.time()):
                peer = self.peers.get(conn)
                if peer is not None:
                    peer.handle([event])
                    peer.flush()


class _Peer(asyncio.Protocol):
    def __init__(self, server: RecordServer) -> None:
        self.server = server
        self.conn: ServerConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.name = "?"
        self.ignored = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.name = f"{peer[0]}:{peer[1]}" if ":" not in str(peer[0]) else f"[{peer[0]}]:{peer[1]}"
        srv = self.server
        if not allowed(str(peer[0]), srv.allow):
            log.warning("client %s: access denied (not in the allow-list)", self.name)
            transport.write(ACCESS_DENIED)
            transport.close()
            return
        if len(srv.peers) >= srv.max_clients:
            log.warning("client %s: refused, %d clients already connected", self.name, len(srv.peers))
            transport.write(TOO_MANY_CLIENTS)
            transport.close()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        loop = asyncio.get_running_loop()
        self.conn = ServerConnection(srv.hello(), now=loop.time(), compile_filter=srv.compile_filter,
                                     start_timeout=srv.start_timeout, max_backlog=srv.max_backlog)
        srv.fanout.add(self.conn)
        srv.peers[self.conn] = self
        log.info("client %s: connected (%d clients)", self.name, len(srv.peers))
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self.conn is None:
            return
        self.handle(self.conn.receive_data(data, asyncio.get_running_loop().time()))
        self.flush()

    def eof_received(self) -> bool:
        if self.conn is not None:
            self.handle(self.conn.receive_data(b""))
            self.flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.server.fanout.discard(self.conn)
            self.server.peers.pop(self.conn, None)
            if not self.conn.closed:
                log.info("client %s: connection lost%s", self.name, f" ({exc})" if exc else "")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()

    def handle(self, events: list) -> None:
        for event in events:
            if isinstance(event, FilterAccepted):
                log.info("client %s: filter '%s'", self.name, event.text)
            elif isinstance(event, FilterRefused):
                log.warning("client %s: filter refused: %s", self.name, event.reason)
            elif isinstance(event, Started):
                log.info("client %s: started", self.name)
            elif isinstance(event, Ignored):
                self.ignored += 1
                if self.ignored == 1:  # one line per peer: junk must not flood the log
                    log.warning("client %s: ignoring unknown command %r", self.name, event.data)
            elif isinstance(event, Closed):
                log.info("client %s: closing: %s", self.name, event.reason)

    def flush(self) -> None:
        conn, transport = self.conn, self.transport
        if conn is None or transport is None or transport.is_closing():
            return
        if not self.paused:
            data = conn.data_to_send()
            if data:
                transport.write(data)
        if conn.closed:
            if self.paused and conn.backlog:
                self.abort()
            else:
                transport.close()

    def buffered(self) -> int:
        transport = self.transport
        return 0 if transport is None or transport.is_closing() else transport.get_write_buffer_size()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
