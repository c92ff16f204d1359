"""The Argus record stream state machines (stream.protocol), byte by byte, without sockets.

Server side: the START MAR on accept, nothing before START:, FILTER: replies, commands cut
anywhere, junk, deadlines, bounded backlogs, the STOP MAR.  Fanout: per-filter selection gives
exactly the bytes the writer gives for the filtered batch.  Client side: refusals, the filter
handshake, records cut at any byte, damage.  Hypothesis feeds both sides arbitrary bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argusflow.filter import compile_filter
from argusflow.records.codec import read_bytes
from argusflow.records.mar import start_mar, stop_mar
from argusflow.records.schema import RTYPE_MAR
from argusflow.records.writer import encode_batch
from argusflow.stream import protocol as p

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "mix.argus"
HELLO = start_mar("10.9.8.7", startime_us=1_700_000_000_000_000, now_us=1_700_000_001_000_000)
STOP = stop_mar("10.9.8.7", startime_us=1_700_000_001_000_000, now_us=1_700_000_002_000_000)


@pytest.fixture(scope="module")
def sample() -> tuple[pl.DataFrame, bytes]:
    """The bundled sample's records without its START MAR, and their radium encoding."""
    batch = read_bytes(SAMPLE.read_bytes()).slice(1)
    return batch, encode_batch(batch, synthesise_agr=False)


def server(**kw: object) -> p.ServerConnection:
    conn = p.ServerConnection(HELLO, now=0.0, **kw)  # type: ignore[arg-type]
    assert conn.data_to_send() == HELLO  # the START MAR goes out at once, unsolicited
    return conn


def names(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


# ------------------------------------------------------------------------------ server side


def test_start_mar_first_and_nothing_before_start(sample: tuple[pl.DataFrame, bytes]) -> None:
    _, data = sample
    conn = server()
    assert conn.send_records(data) is None
    assert conn.data_to_send() == b""  # records before START: are not buffered (§11.2 item 3)
    assert names(conn.receive_data(b"START: ")) == ["Started"]
    conn.send_records(data)
    assert conn.data_to_send() == data


def test_valid_filter_gets_ok_then_start() -> None:
    conn = server()
    events = conn.receive_data(b"FILTER: man or (tcp and dst port 8000)")
    assert events == [p.FilterAccepted("man or (tcp and dst port 8000)")]
    assert conn.data_to_send() == b"OK"
    assert conn.filter_text == "man or (tcp and dst port 8000)"
    assert names(conn.receive_data(b"START: ")) == ["Started"]


def test_invalid_filter_is_refused_and_closed() -> None:
    conn = server()
    events = conn.receive_data(b"FILTER: this is not valid ((\x00")
    assert names(events) == ["FilterRefused", "Closed"]
    assert conn.data_to_send() == b"SY"  # what argus answers a bad filter (transcript 4)
    assert conn.closed
    assert conn.receive_data(b"START: ") == []


def test_unterminated_bad_filter_waits_then_is_refused() -> None:
    conn = server(filter_grace=1.0)
    assert conn.receive_data(b"FILTER: this is not valid ((", now=0.0) == []
    assert not conn.closed and conn.data_to_send() == b""
    assert conn.tick(0.5) == []
    events = conn.tick(1.5)
    assert names(events) == ["FilterRefused", "Closed"]
    assert conn.data_to_send() == b"SY"


def test_filter_cut_in_two_sends_is_joined() -> None:
    conn = server()
    assert conn.receive_data(b"FILTER: man or (tc") == []
    assert conn.receive_data(b"p)") == [p.FilterAccepted("man or (tcp)")]
    assert conn.data_to_send() == b"OK"


@pytest.mark.parametrize("cut", range(1, 7))
def test_start_cut_anywhere(cut: int) -> None:
    conn = server()
    first = conn.receive_data(b"START: "[:cut])
    second = conn.receive_data(b"START: "[cut:])
    # "START:" is the command (argus matches the prefix); the space after it is optional.
    assert names(first + second) == ["Started"] and names(first) == (["Started"] if cut == 6 else [])
    assert conn.started and conn.data_to_send() == b""


def test_filter_and_start_in_one_send() -> None:
    conn = server()
    events = conn.receive_data(b"FILTER: udpSTART: ")
    assert names(events) == ["FilterAccepted", "Started"]
    assert conn.filter_text == "udp" and conn.data_to_send() == b"OK"


def test_done_closes() -> None:
    conn = server()
    conn.receive_data(b"START: ")
    assert names(conn.receive_data(b"DONE: ")) == ["Closed"]
    assert conn.closed


def test_peer_eof_closes() -> None:
    conn = server()
    assert names(conn.receive_data(b"")) == ["Closed"]


@pytest.mark.parametrize("command", [b"FILE: /tmp/x", b"MODEL: ", b"PROJECT: ", b"\xff\xfe junk"])
def test_ignored_commands_keep_the_connection(command: bytes) -> None:
    conn = server()
    events = conn.receive_data(command)
    assert names(events) == ["Ignored"]
    assert not conn.closed
    assert names(conn.receive_data(b"START: ")) == ["Started"]


def test_endless_junk_is_closed() -> None:
    conn = server()
    events: list = []
    for _ in range(p.MAX_JUNK_BYTES // 1000 + 2):
        events += conn.receive_data(b"x" * 1000)
    assert names(events)[-1] == "Closed" and conn.closed


def test_endless_filter_is_closed() -> None:
    conn = server()
    events = conn.receive_data(b"FILTER: " + b"(" * (p.MAX_COMMAND_BYTES + 10))
    assert names(events) == ["Closed"]


def test_start_deadline() -> None:
    conn = server(start_timeout=5.0)
    assert conn.tick(4.9) == []
    assert names(conn.tick(5.0)) == ["Closed"]
    started = server(start_timeout=5.0)
    started.receive_data(b"START: ")
    assert started.tick(100.0) == []


def test_backlog_overflow_closes_alone(sample: tuple[pl.DataFrame, bytes]) -> None:
    batch, data = sample
    slow, fast = server(max_backlog=len(data) * 3), server(max_backlog=len(data) * 3)
    fanout = p.Fanout()
    for conn in (slow, fast):
        conn.receive_data(b"START: ")
        fanout.add(conn)
    dropped = []
    for _ in range(5):
        dropped += fanout.publish(batch, data)
        assert fast.data_to_send() == data  # the fast peer reads after every batch
    assert [c for c, _ in dropped] == [slow]
    assert "too slow" in dropped[0][1].reason
    assert slow.closed and slow.data_to_send() == b"" and not fast.closed


def test_stop_mar_only_to_started_peers() -> None:
    started, waiting = server(), server()
    started.receive_data(b"START: ")
    fanout = p.Fanout()
    fanout.add(started)
    fanout.add(waiting)
    fanout.stop(STOP)
    assert started.data_to_send() == STOP and waiting.data_to_send() == b""
    assert started.closed and waiting.closed


# ----------------------------------------------------------------------------------- fanout


@pytest.mark.parametrize("text", ["tcp", "udp", "man", "man or (udp)", "not tcp", "icmp or arp",
                                  "src pkts gt 2"])
def test_fanout_selection_equals_encoding_the_filtered_batch(
        sample: tuple[pl.DataFrame, bytes], text: str) -> None:
    batch, data = sample
    conn = server()
    conn.receive_data(f"FILTER: {text}".encode())
    assert conn.data_to_send() == b"OK"
    conn.receive_data(b"START: ")
    plain = server()
    plain.receive_data(b"START: ")
    fanout = p.Fanout()
    fanout.add(conn)
    fanout.add(plain)
    fanout.publish(batch, data)
    expected = encode_batch(batch.filter(compile_filter(text).expr), synthesise_agr=False)
    assert conn.data_to_send() == expected
    assert plain.data_to_send() == data


def test_encoded_batch_select_any_mask(sample: tuple[pl.DataFrame, bytes]) -> None:
    batch, data = sample
    enc = p.EncodedBatch(batch, data)
    rng = np.random.default_rng(5)
    for _ in range(20):
        mask = rng.random(batch.height) < rng.random()
        assert enc.select(mask) == encode_batch(batch.filter(pl.Series(mask)),
                                                synthesise_agr=False)


# ------------------------------------------------------------------------------ client side


@pytest.mark.parametrize(("record", "reason"), [(p.ACCESS_DENIED, "access denied"),
                                                 (p.TOO_MANY_CLIENTS, "too many clients")])
def test_client_sees_refusal(record: bytes, reason: str) -> None:
    client = p.ClientConnection()
    assert client.receive_data(record) == [p.Refused(reason)]
    assert client.data_to_send() == b""


def test_client_handshake_without_filter() -> None:
    client = p.ClientConnection()
    assert client.receive_data(HELLO[:100]) == []
    events = client.receive_data(HELLO[100:])
    assert names(events) == ["Hello", "Records"]
    assert events[1].batch["rtype"].to_list() == [RTYPE_MAR]  # ra prints the STA line
    assert client.data_to_send() == b"START: "


def test_client_handshake_with_filter() -> None:
    client = p.ClientConnection("man or (tcp)")
    client.receive_data(HELLO)
    assert client.data_to_send() == b"FILTER: man or (tcp)"
    assert client.receive_data(b"O") == []
    assert names(client.receive_data(b"K")) == ["FilterAccepted"]
    assert client.data_to_send() == b"START: "


def test_client_filter_refused() -> None:
    client = p.ClientConnection("bad ((")
    client.receive_data(HELLO)
    client.data_to_send()
    events = client.receive_data(b"SY")
    assert names(events) == ["FilterRefused"] and "syntax" in events[0].reason


def test_client_not_argus() -> None:
    client = p.ClientConnection()
    events = client.receive_data(b"HTTP/1.1 400 Bad Request\r\n" + b"x" * 200)
    assert names(events) == ["Corrupt"]


def test_client_damage_keeps_records_before_it(sample: tuple[pl.DataFrame, bytes]) -> None:
    batch, data = sample
    client = p.ClientConnection()
    events = client.receive_data(HELLO + data + b"\x13\x10\x00\x00" + b"\xff" * 64)
    got = pl.concat([e.batch for e in events if isinstance(e, p.Records)])
    assert got.height == batch.height + 1
    assert names(events)[-1] == "Corrupt"


def test_client_eof_inside_a_record(sample: tuple[pl.DataFrame, bytes]) -> None:
    _, data = sample
    client = p.ClientConnection()
    client.receive_data(HELLO + data[:-10])
    events = client.receive_data(b"")
    assert names(events) == ["Corrupt", "Closed"]
    assert "ends inside a record" in events[0].error.problem


def test_client_close_says_done() -> None:
    client = p.ClientConnection()
    client.receive_data(HELLO)
    client.data_to_send()
    client.close()
    assert client.data_to_send() == b"DONE: "


def pump(a: p.ServerConnection, b: p.ClientConnection) -> list:
    """Move bytes both ways until both sides are quiet; returns the client's events."""
    events: list = []
    for _ in range(10):
        down, up = a.data_to_send(), b.data_to_send()
        if not down and not up:
            break
        if down:
            events += b.receive_data(down)
        if up:
            a.receive_data(up)
    return events


def test_both_ends_in_memory(sample: tuple[pl.DataFrame, bytes]) -> None:
    batch, data = sample
    srv = p.ServerConnection(HELLO)
    client = p.ClientConnection("man or (udp)")
    pump(srv, client)
    assert srv.started and srv.filter_text == "man or (udp)"
    fanout = p.Fanout()
    fanout.add(srv)
    fanout.publish(batch, data)
    fanout.stop(STOP)
    events = pump(srv, client)
    got = pl.concat([e.batch for e in events if isinstance(e, p.Records)])
    want = batch.filter(compile_filter("man or (udp)").expr)
    assert got.height == want.height + 1  # + the STOP MAR
    assert got["seq"].to_list()[:-1] == want["seq"].to_list()
    assert "EndOfStream" in names(events)


# ------------------------------------------------------------------------------- hypothesis


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=12), st.lists(st.floats(0, 20), max_size=3))
def test_server_survives_any_bytes(chunks: list[bytes], ticks: list[float]) -> None:
    conn = p.ServerConnection(HELLO, filter_grace=0.5)
    for chunk in chunks:
        for event in conn.receive_data(chunk):
            assert isinstance(event, (p.FilterAccepted, p.FilterRefused, p.Started, p.Ignored,
                                      p.Closed))
        out = conn.data_to_send()
        assert out in (b"", HELLO, b"OK", b"SY", b"ER", HELLO + b"OK", HELLO + b"SY",
                       HELLO + b"ER") or set(out.split(b"OK")) <= {b"", HELLO}
    for t in sorted(ticks):
        conn.tick(t)
    assert conn.state in (p.State.HELLO, p.State.STREAMING, p.State.CLOSED)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_client_records_cut_anywhere(sample: tuple[pl.DataFrame, bytes], data: st.DataObject) -> None:
    batch, encoded = sample
    stream = HELLO + encoded + STOP
    cuts = sorted(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=8, unique=True)))
    client = p.ClientConnection()
    events: list = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += client.receive_data(stream[a:b])
    events += client.receive_data(b"")
    got = pl.concat([e.batch for e in events if isinstance(e, p.Records)])
    assert got.height == batch.height + 2
    assert got["seq"].to_list()[1:-1] == batch["seq"].to_list()
    assert names(events)[-1] == "Closed" and "Corrupt" not in names(events)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_client_survives_any_bytes(chunks: list[bytes]) -> None:
    client = p.ClientConnection("tcp")
    for chunk in [*chunks, b""]:
        client.receive_data(chunk)
        client.data_to_send()
    assert client.state is p.State.CLOSED


PIECES = [b"START: ", b"START:", b"STA", b"RT: ", b"FILTER: tcp", b"FILTER: man or (udp)",
          b"FILTER: ((", b"FILT", b"ER: icmp", b"DONE: ", b"DO", b"\x00", b"\n", b"FILE: x",
          b"MODEL: "]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=40)), max_size=10),
       st.booleans())
def test_server_command_sequences(sample: tuple[pl.DataFrame, bytes], chunks: list[bytes],
                                  publish: bool) -> None:
    """Commands and fragments in any order: START happens at most once, nothing follows a
    close, records reach the peer only after START, replies are only OK/SY/ER."""
    data = sample[1]
    conn = p.ServerConnection(HELLO)
    assert conn.data_to_send() == HELLO
    starts, closed_at = 0, None
    for i, chunk in enumerate(chunks):
        was_started = conn.started
        events = conn.receive_data(chunk, now=float(i))
        if closed_at is not None:
            assert events == []
        starts += names(events).count("Started")
        if any(isinstance(e, p.Closed) for e in events):
            closed_at = i
        if publish:
            conn.send_records(data)
        out = conn.data_to_send()
        replies = out.replace(data, b"") if was_started or conn.started else out
        assert replies in (b"", b"OK", b"SY", b"ER", b"OKOK", b"OKSY", b"OKER")
        if not (was_started or conn.started):
            assert data not in out
    assert starts <= 1


def test_filter_sent_byte_by_byte_costs_few_compilations() -> None:
    calls: list[str] = []

    def counting(text: str) -> object:
        calls.append(text)
        return compile_filter(text)

    conn = p.ServerConnection(HELLO, compile_filter=counting)
    # No prefix of it compiles (a prefix that did would be taken: there is no terminator).
    command = b"FILTER: " + b"(" * 2000 + b"tcp"
    for byte in command:
        conn.receive_data(bytes([byte]))
    assert len(calls) < 30  # not one per byte
    events = conn.tick(10.0)
    assert names(events) == ["FilterRefused", "Closed"]
    assert conn.data_to_send()[-2:] in (b"SY", b"ER")


@pytest.mark.parametrize(("text", "host", "port", "tls"), [
    ("h", "h", 561, False), ("h:1", "h", 1, False), ("[::1]:5", "::1", 5, False),
    ("::1", "::1", 561, False), ("argus://a:7", "a", 7, False), ("argus-tcp://x", "x", 561, False),
    ("argus+tls://[::1]", "::1", 561, True)])
def test_parse_source(text: str, host: str, port: int, tls: bool) -> None:
    from argusflow.stream.client import Source, parse_source

    assert parse_source(text) == Source(host, port, tls)


@pytest.mark.parametrize("text", ["h:0", "h:x", "udp://h", "h:1//f", ""])
def test_parse_source_errors(text: str) -> None:
    from argusflow.errors import UsageError
    from argusflow.stream.client import parse_source

    with pytest.raises(UsageError):
        parse_source(text)
