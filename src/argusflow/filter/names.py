"""Name lookups the filter needs: hosts, networks, services, protocols, DS code points, encaps.

ra resolves names while it compiles the filter, so an unknown name is a filter error.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

# Encapsulation names ra accepts after `encaps` (spec §6.6 bits).  ra matches a name whose
# beginning is one of these labels, first label first (so `encaps ethernet` is `eth`).
ENCAPS: list[tuple[str, int]] = [
    ("mpls", 0x1), ("eth", 0x2), ("802q", 0x4), ("llc", 0x8), ("pppoe", 0x10), ("isl", 0x20),
    ("gre", 0x40), ("ah", 0x80), ("ipnip", 0x100), ("ipnip6", 0x200), ("hdlc", 0x400),
    ("chdlc", 0x800), ("atm", 0x1000), ("sll", 0x2000), ("fddi", 0x4000), ("slip", 0x8000),
    ("arc", 0x10000), ("wlan", 0x20000), ("prism", 0x40000), ("avs", 0x80000),
    ("lrh", 0x100000), ("grh", 0x200000), ("teredo", 0x400000), ("udt", 0x800000),
    ("ipsec", 0x1000000), ("juniper", 0x2000000), ("erspan", 0x4000000),
]

# Differentiated services code points by name (RFC 2474/2597/3246), for `dsb NAME`.
DSCODES: list[tuple[str, int]] = [
    ("cs0", 0), ("cs1", 8), ("cs2", 16), ("cs3", 24), ("cs4", 32), ("cs5", 40), ("cs6", 48),
    ("cs7", 56), ("af11", 10), ("af12", 12), ("af13", 14), ("af21", 18), ("af22", 20),
    ("af23", 22), ("af31", 26), ("af32", 28), ("af33", 30), ("af41", 34), ("af42", 36),
    ("af43", 38), ("ef", 46), ("va", 44), ("le", 1),
]

# Ether types by name for `ether proto NAME`: the names 3.0.8 knows that are not filter keywords
# (`ip`, `arp`, `rarp` are keywords there, so `ether proto ip` is a syntax error).
ETHER_PROTOS: dict[str, int] = {"pup": 0x0200, "lat": 0x6004, "atalk": 0x809B, "aarp": 0x80F3,
                                "ipx": 0x8137}


def prefix_lookup(table: list[tuple[str, int]], name: str) -> int | None:
    """ra's strncasecmp(label, name, strlen(label)): the first label that `name` starts with."""
    low = name.lower()
    for label, code in table:
        if low.startswith(label):
            return code
    return None


@lru_cache(maxsize=256)
def service_port(name: str) -> tuple[int, str] | None:
    """(port, "tcp" | "udp" | "") for a service name, "" when both protocols define it."""
    import socket  # only when a filter names a service: ~7 ms of start-up otherwise

    found: dict[str, int] = {}
    for proto in ("tcp", "udp"):
        try:
            found[proto] = socket.getservbyname(name, proto)
        except OSError:
            continue
    if not found:
        return None
    if len(found) == 2:
        return found["tcp"], ""
    (proto, port), = found.items()
    return port, proto


@lru_cache(maxsize=256)
def protocol_number(name: str) -> int | None:
    import socket

    try:
        return socket.getprotobyname(name)
    except OSError:
        return None


@lru_cache(maxsize=256)
def host_addresses(name: str) -> tuple[tuple[int, int], ...]:
    """Every address of `name` as (family, integer); empty when it does not resolve."""
    import socket

    try:
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return ()
    out: list[tuple[int, int]] = []
    for family, _, _, _, sockaddr in infos:
        if family == socket.AF_INET:
            item = (4, int(ipaddress.IPv4Address(sockaddr[0])))
        elif family == socket.AF_INET6:
            item = (6, int(ipaddress.IPv6Address(sockaddr[0].split("%")[0])))
        else:
            continue
        if item not in out:
            out.append(item)
    return tuple(out)


@lru_cache(maxsize=64)
def network_number(name: str) -> int:
    """getnetbyname(): a name from /etc/networks; ra uses 0 for an unknown network (also for
    "10.0.0", which is not a name)."""
    try:
        with open("/etc/networks", encoding="ascii", errors="replace") as fh:
            for line in fh:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and name in (fields[0], *fields[2:]):
                    value = 0
                    for part in fields[1].split("."):
                        value = value << 8 | (int(part) & 0xFF)
                    return value
    except (OSError, ValueError):
        pass
    return 0


def left_justify(addr: int) -> tuple[int, int]:
    """ra's net_mask(): shift a short network number to the top, masking what it covers."""
    mask = 0xFFFFFFFF
    if addr:
        while addr & 0xFF000000 == 0:
            addr, mask = (addr << 8) & 0xFFFFFFFF, (mask << 8) & 0xFFFFFFFF
    return addr, mask


@lru_cache(maxsize=64)
def ether_host(name: str) -> bytes | None:
    """A MAC address by name from /etc/ethers."""
    try:
        with open("/etc/ethers", encoding="ascii", errors="replace") as fh:
            for line in fh:
                parts = line.split("#", 1)[0].split()
                if len(parts) >= 2 and parts[1] == name:
                    return bytes(int(p, 16) for p in parts[0].split(":"))
    except (OSError, ValueError):
        pass
    return None


def parse_ipv4(text: str) -> int:
    """A dotted quad whose parts may be hex or octal like the scanner's numbers."""
    from argusflow.filter.lexer import c_int

    value = 0
    for part in text.split("."):
        value = value << 8 | (c_int(part) & 0xFF)
    return value
