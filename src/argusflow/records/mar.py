"""Management records (MARs): the 128-byte START, STATUS and STOP records of spec §4.

A data set starts with a START MAR (the V3 cookie at offset 8 is the only file header ra checks),
may carry periodic STATUS MARs and usually ends with a STOP MAR.  Source ids have three
encodings (§4.3); `SourceId` keeps the MAR form and the transport-DSR form together so that a
probe writes both consistently.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from argusflow.errors import UsageError

ARGUS_COOKIE = 0xE5712DCB
MAR_LENGTH = 128
MAR_START, MAR_STATUS, MAR_STOP = 0x10, 0x20, 0x30

# The 4-byte error MARs a server sends before closing (spec §11.2 item 6).
ERROR_MAR_ACCESS_DENIED = bytes.fromhex("83810001")
ERROR_MAR_TOO_MANY_CLIENTS = bytes.fromhex("83820001")

IDIS_STRING, IDIS_INT, IDIS_IPV4 = 0x00200000, 0x00400000, 0x00800000
SRCID_NONE, SRCID_IPV4, SRCID_INT, SRCID_STRING = 0x00, 0x01, 0x20, 0x21

# Offsets 0-103 of the MAR (spec §4.1), all big-endian; suserlen/duserlen (104-107) are written
# separately because argus leaves them in host order in STATUS/STOP MARs.
_BODY = struct.Struct(">BBH I I I I I II II BBBB HH QQq IIIIIIII")
_TAIL = struct.Struct(">12x I i")
_DOTTED = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


@dataclass(frozen=True)
class SourceId:
    """A probe source id in both of its on-disk forms (spec §4.3)."""

    status_bit: int  # MAR status bit saying how to read the id
    mar_value: int  # u32 written at MAR thisid/argusid (strings byte-reversed)
    transport_qual: int  # transport DSR qualifier
    transport_value: int  # u32 of the transport DSR's 4 id bytes read big-endian

    @classmethod
    def parse(cls, value: int | str | None) -> SourceId:
        """None, an int, a dotted IPv4 address, a decimal string, or a string of up to 4 chars."""
        if value is None or value == "":
            return cls(0, 0, SRCID_NONE, 0)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            number = int(value)
            if not 0 <= number <= 0xFFFFFFFF:
                raise UsageError(f"source id {value}: integer ids must fit 32 bits")
            return cls(IDIS_INT, number, SRCID_INT, number)
        if _DOTTED.match(value):
            try:
                number = int(ipaddress.IPv4Address(value))
            except ValueError as err:
                raise UsageError(f"source id {value}: {err}") from None
            return cls(IDIS_IPV4, number, SRCID_IPV4, number)
        raw = value.encode("ascii", "replace")
        if len(raw) > 4:
            raise UsageError(f"source id {value!r}: string ids are at most 4 characters")
        natural = int.from_bytes(raw.ljust(4, b"\0"), "big")
        # The 4 characters were treated as a host-order u32 and converted: reversed in MARs.
        reversed_ = int.from_bytes(raw.ljust(4, b"\0"), "little")
        return cls(IDIS_STRING, reversed_, SRCID_STRING, natural)


@dataclass
class MarCounters:
    """The per-period numbers of a STATUS/STOP MAR (spec §4.1 offsets 48-107)."""

    pkts: int = 0
    bytes: int = 0
    drift: int = 0
    records: int = 0
    flows: int = 0
    dropped: int = 0
    queue: int = 0
    output: int = 0
    clients: int = 0
    bufs: int = 0
    memory: int = 0
    suserlen: int = 0
    duserlen: int = 0


def _split(us: int) -> tuple[int, int]:
    return us // 1_000_000, us % 1_000_000


def _mar(cause: int, status: int, argusid: int, thisid: int, startime_us: int, now_us: int,
         localnet: int, netmask: int, seq: int, interface_type: int, report_interval: int,
         mar_interval: int, counters: MarCounters, userlen_order: str) -> bytes:
    c = counters
    body = _BODY.pack(
        0x83, cause, MAR_LENGTH // 4, status, argusid, localnet, netmask, seq,
        *_split(startime_us), *_split(now_us), 3, 0, interface_type, 0,
        report_interval, mar_interval, c.pkts, c.bytes, c.drift, c.records, c.flows, c.dropped,
        c.queue, c.output, c.clients, c.bufs, c.memory,
    )
    userlen = (c.suserlen.to_bytes(2, userlen_order) + c.duserlen.to_bytes(2, userlen_order))
    out = body + userlen + _TAIL.pack(thisid, -1)
    assert len(out) == MAR_LENGTH
    return out


def start_mar(srcid: int | str | None | SourceId = None, *, startime_us: int, now_us: int,
              localnet: int = 0, netmask: int = 0, seq: int = 0, report_interval: int = 5,
              mar_interval: int = 60, interface_type: int = 0) -> bytes:
    """The initial MAR: cookie at offset 8, the source id in `thisid` (spec §4.4)."""
    sid = srcid if isinstance(srcid, SourceId) else SourceId.parse(srcid)
    return _mar(MAR_START, sid.status_bit, ARGUS_COOKIE, sid.mar_value, startime_us, now_us,
                localnet, netmask, seq, interface_type, report_interval, mar_interval,
                MarCounters(), "big")


def status_mar(srcid: int | str | None | SourceId = None, *, startime_us: int, now_us: int,
               counters: MarCounters | None = None, localnet: int = 0, netmask: int = 0,
               seq: int = 0, report_interval: int = 5, mar_interval: int = 60,
               interface_type: int = 0) -> bytes:
    """A periodic MAR: source id in `argusid`, startime = previous MAR's time (spec §4.1)."""
    return _later_mar(MAR_STATUS, srcid, startime_us, now_us, counters, localnet, netmask, seq,
                      report_interval, mar_interval, interface_type)


def stop_mar(srcid: int | str | None | SourceId = None, *, startime_us: int, now_us: int,
             counters: MarCounters | None = None, localnet: int = 0, netmask: int = 0,
             seq: int = 0, report_interval: int = 5, mar_interval: int = 60,
             interface_type: int = 0) -> bytes:
    """The final MAR; its argusid equals the START MAR's thisid (spec §11.2 item 5)."""
    return _later_mar(MAR_STOP, srcid, startime_us, now_us, counters, localnet, netmask, seq,
                      report_interval, mar_interval, interface_type)


def _later_mar(cause: int, srcid: int | str | None | SourceId, startime_us: int, now_us: int,
               counters: MarCounters | None, localnet: int, netmask: int, seq: int,
               report_interval: int, mar_interval: int, interface_type: int) -> bytes:
    sid = srcid if isinstance(srcid, SourceId) else SourceId.parse(srcid)
    # argus leaves suserlen/duserlen in host order (little-endian) in these MARs (spec §2).
    return _mar(cause, sid.status_bit, sid.mar_value, 0, startime_us, now_us, localnet, netmask,
                seq, interface_type, report_interval, mar_interval, counters or MarCounters(),
                "little")
