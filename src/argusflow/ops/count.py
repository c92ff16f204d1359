"""racount's tallies (racount(1), 3.0.8): totals, a breakdown by protocol, IPv4 address kinds.

Everything is accumulated batch by batch over numpy columns (`Tally.add`); the text is made by
cli/racount.py.  What 3.0.8 does, as checked against it:

* the totals are the flow records selected, plus one (3.0.8 counts one management record, once,
  however many inputs), and their packets and bytes;
* `-M proto`: IP 5-tuple and layer-3 matrix keys by protocol number (IPv4 and IPv6 share a
  bucket), then Ethernet keys by ether type (only types below 0x1000 are printed), then ARP,
  RARP and other keys; each line is named by the first record of its bucket, as ra names its
  protocol;
* `-M addr`: the distinct IPv4 source and destination addresses, each counted in the kinds
  its value falls in (some multicast values count in two); IPv6 addresses once per record (not
  per address), in the kinds 3.0.8 tests (no global unicast kind: 2001:db8::1 counts nowhere);
* `-M rmon`: every record counts twice, as it is and turned round (the totals double, source
  and destination agree), and the address summary counts distinct addresses on either side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from argusflow.records.schema import ADDR_ARP, ADDR_ETHER, ADDR_IPV4, ADDR_IPV6, ADDR_RARP

# Bucket kinds, in the order racount prints them; a bucket is kind << 16 | number.
KIND_IP, KIND_ETHER, KIND_ARP, KIND_RARP, KIND_UNKNOWN = range(5)
ADDR_WLAN = 0x06
FLOW_CLASSIC, FLOW_MATRIX = 0x01, 0x03  # flow DSR subtypes (& 0x3F): 5-tuple, layer-3 matrix
ETHER_PRINTED_BELOW = 0x1000  # 3.0.8 prints ether-type buckets 0..0xFFF only
COUNTERS = ("spkts", "dpkts", "sbytes", "dbytes")
# Columns each tally reads (the reader decodes only these, and what the selection reads).
TOTAL_COLUMNS = frozenset({"rtype", *COUNTERS})
PROTO_COLUMNS = frozenset({"flow_subtype", "flow_qual", "proto"})
ADDR_COLUMNS = frozenset({"flow_subtype", "flow_qual", "saddr_lo", "daddr_lo", "saddr_hi",
                          "daddr_hi"})

# Address kinds, in the order and with the labels racount prints them.
ADDRESS_KINDS = (
    ("unicast", "IPv4 Unicast"), ("thisnet", "IPv4 Unicast This Network"),
    ("private", "IPv4 Unicast Private"), ("loopback", "IPv4 Unicast LoopBack"),
    ("linklocal", "IPv4 Unicast Link Local"), ("testnet", "IPv4 Unicast Test Net"),
    ("reserved", "IPv4 Unicast Reserved"), ("mc_local", "IPv4 Multicast Local"),
    ("mc_internet", "IPv4 Multicast Internet"), ("mc_adhoc", "IPv4 Multicast AdHoc"),
    ("mc_reserved", "IPv4 Multicast Reserved"), ("mc_sdpsap", "IPv4 Multicast SdpSap"),
    ("mc_nasdaq", "IPv4 Multicast Nasdaq"), ("mc_distrans", "IPv4 Multicast DisTrans"),
    ("mc_srcspec", "IPv4 Multicast Src Spec"), ("mc_glop", "IPv4 Multicast GLOP Blk"),
    ("mc_orglocal", "IPv4 Multicast OrgLocal"), ("mc_sitelocal", "IPv4 Multicast SiteLocal"),
)


# IPv6 kinds 3.0.8 prints (V4Compat and V4Mapped are counted but not printed; Global never).
IPV6_KINDS = (
    ("v6_unspecified", "IPv6 Unspecified"), ("v6_loopback", "IPv6 Loopback"),
    ("v6_linklocal", "IPv6 LinkLocal"), ("v6_sitelocal", "IPv6 SiteLocal"),
    ("v6_global", "IPv6 Global"), ("v6_mc_node", "IPv6 Multicast Node Local"),
    ("v6_mc_link", "IPv6 Multicast Link Local"), ("v6_mc_site", "IPv6 Multicast Site Local"),
    ("v6_mc_org", "IPv6 Multicast Org  Local"), ("v6_mc_global", "IPv6 Multicast Global"),
)


def ipv6_kinds(hi: np.ndarray, lo: np.ndarray) -> dict[str, np.ndarray]:
    """3.0.8's IPv6 tests, first match wins, for addresses as (high, low) 64-bit halves."""
    hi, lo = hi.astype(np.uint64), lo.astype(np.uint64)
    top10 = hi & np.uint64(0xFFC0000000000000)
    mc = (hi >> np.uint64(56)) == 0xFF
    scope = (hi >> np.uint64(48)) & np.uint64(0xF)
    zero64 = hi == 0
    tests = [
        ("v6_unspecified", zero64 & (lo == 0)),
        ("v6_loopback", zero64 & (lo == 1)),
        ("v4compat", zero64 & ((lo >> np.uint64(32)) == 0) & (lo > 1)),
        ("v4mapped", zero64 & ((lo >> np.uint64(32)) == 0xFFFF)),
        ("v6_linklocal", top10 == np.uint64(0xFE80000000000000)),
        ("v6_sitelocal", top10 == np.uint64(0xFEC0000000000000)),
        ("v6_mc_node", mc & (scope == 1)), ("v6_mc_link", mc & (scope == 2)),
        ("v6_mc_site", mc & (scope == 5)), ("v6_mc_org", mc & (scope == 8)),
        ("v6_mc_global", mc & (scope == 0xE)),
    ]
    out = {name: np.zeros(len(hi), dtype=bool) for name, _ in IPV6_KINDS}
    left = np.ones(len(hi), dtype=bool)
    for name, test in tests:
        hit = left & test
        if name in out:
            out[name] = hit
        left &= ~hit
    return out


def bucket_codes(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Each flow record's protocol bucket (kind << 16 | protocol or ether type)."""
    subtype = cols["flow_subtype"].astype(np.int64) & 0x3F
    typ = cols["flow_qual"].astype(np.int64) & 0x1F
    proto = cols["proto"].astype(np.int64)
    five_tuple = (subtype == FLOW_CLASSIC) | (subtype == FLOW_MATRIX)
    kind = np.select(
        [five_tuple & ((typ == ADDR_IPV4) | (typ == ADDR_IPV6)),
         five_tuple & ((typ == ADDR_ETHER) | (typ == ADDR_WLAN)),
         typ == ADDR_ARP, typ == ADDR_RARP],
        [KIND_IP, KIND_ETHER, KIND_ARP, KIND_RARP], KIND_UNKNOWN)
    # 3.0.8 tallies 5-tuple keys of other address types nowhere
    kind = np.where(five_tuple & (kind == KIND_UNKNOWN), -1, kind)
    number = np.where((kind == KIND_IP) | (kind == KIND_ETHER), proto, 0)
    return (kind << 16) | number


def address_kinds(addr: np.ndarray) -> dict[str, np.ndarray]:
    """For each IPv4 address (host order), whether it counts in each kind (3.0.8's tests)."""
    a = addr.astype(np.int64)
    top, low24, b2 = a & 0xFF000000, a & 0x00FFFFFF, a & 0x00FF0000
    mc = (a & 0xF0000000) == 0xE0000000
    e0 = mc & (top == 0xE0000000)
    ef = mc & (top == 0xEF000000)
    out: dict[str, np.ndarray] = {
        "mc_local": e0 & (low24 < 0x100),
        "mc_internet": e0 & (low24 >= 0x100) & (low24 < 0x200),
        "mc_adhoc": e0 & (low24 >= 0x200) & (low24 < 0xFF00),
        "mc_sdpsap": e0 & (low24 >= 0x20000) & (low24 < 0x30000),
        "mc_nasdaq": e0 & (low24 >= 0x30000) & (low24 < 0x30040),
        "mc_distrans": e0 & (low24 >= 0xFD0000) & (low24 <= 0xFD0000),
        "mc_srcspec": mc & (top == 0xE8000000),
        "mc_glop": mc & (top == 0xE9000000),
        "mc_orglocal": ef & (b2 >= 0xC00000) & (b2 < 0xFC0000),
        "mc_sitelocal": ef & (b2 >= 0xFC0000),
    }
    # reserved: several ranges, and an address can count here and in another multicast kind
    out["mc_reserved"] = (
        (e0 & (((low24 >= 0xFF00) & (low24 < 0x20000)) | ((low24 >= 0x30040) & (low24 < 0xFD0000))))
        .astype(np.int64) + (mc & (top > 0xE0000000) & (top < 0xE8000000))
        + (mc & (top >= 0xE9000000) & (top <= 0xEE000000)) + (ef & (b2 < 0xC00000)))
    out.update(_unicast_kinds(a, top, ~mc))
    return out


def _unicast_kinds(a: np.ndarray, top: np.ndarray, uni: np.ndarray) -> dict[str, np.ndarray]:
    """The unicast tests, first match wins (3.0.8's if/else chain)."""
    conditions = [
        ("thisnet", top == 0),
        ("reserved", top < 0x03000000),
        ("reserved", np.isin(top, [0x05000000, 0x17000000, 0x1B000000, 0x24000000, 0x25000000,
                                   0x29000000, 0x30000000])),
        ("reserved", (top >= 0x49000000) & (top < 0x50000000)),
        ("reserved", (top >= 0x59000000) & (top < 0x7F000000)),
        ("loopback", top == 0x7F000000),
        ("private", (a & 0xFFFF0000) == 0xAC100000),
        ("reserved", (top >= 0xAD000000) & (top < 0xBC000000)),  # (its link-local test never holds)
        ("reserved", (top >= 0xBE000000) & (top < 0xC0000000)),
        ("testnet", (a & 0xFFFFFF00) == 0xC0000200),
        ("private", (a & 0xFFFF0000) == 0xC0A80000),
        ("unicast", top == 0xC0000000),
        ("reserved", np.isin(top, [0xC5000000, 0xDF000000])),
        ("reserved", top >= 0xF0000000),
        ("private", top == 0x0A000000),
        ("unicast", np.ones(len(a), dtype=bool)),
    ]
    out = {name: np.zeros(len(a), dtype=np.int64) for name in
           ("unicast", "thisnet", "private", "loopback", "linklocal", "testnet", "reserved")}
    left = uni.copy()
    for name, test in conditions:
        hit = left & test
        out[name] += hit
        left &= ~hit
    return out


@dataclass
class Bucket:
    records: int = 0
    counters: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.uint64))
    first: dict[str, object] = field(default_factory=dict)  # the first record's naming columns


@dataclass
class Tally:
    rmon: bool = False
    by_proto: bool = False
    by_addr: bool = False
    name_columns: tuple[str, ...] = ()  # what naming a bucket reads of its first record
    records: int = 0
    counters: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.uint64))
    buckets: dict[int, Bucket] = field(default_factory=dict)
    src_addrs: set[int] = field(default_factory=set)
    dst_addrs: set[int] = field(default_factory=set)
    v6_counts: dict[str, list[int]] = field(  # IPv6: every record counts, not each address once
        default_factory=lambda: {name: [0, 0] for name, _ in IPV6_KINDS})

    def add(self, cols: dict[str, np.ndarray]) -> None:
        """Add a batch of flow records (numpy columns)."""
        n = len(cols["rtype"])
        if not n:
            return
        self.records += n * (2 if self.rmon else 1)
        self.counters += self._turned(np.array([cols[name].sum(dtype=np.uint64) for name in COUNTERS],
                                               dtype=np.uint64))
        if self.by_proto:
            self._add_buckets(cols, self._turned(np.stack([cols[name] for name in COUNTERS])))
        if self.by_addr:
            self._add_addresses(cols)

    def _turned(self, counters: np.ndarray) -> np.ndarray:
        """-M rmon: the record and its reversal, so each side gets both directions' counts."""
        if not self.rmon:
            return counters
        pkts, octets = counters[0] + counters[1], counters[2] + counters[3]
        return np.stack([pkts, pkts, octets, octets])

    def _add_buckets(self, cols: dict[str, np.ndarray], counters: np.ndarray) -> None:
        codes = bucket_codes(cols)
        found, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(found))
        # exact u64 sums (bincount's float64 weights round counters past 2**53)
        sums = np.zeros((len(counters), len(found)), dtype=np.uint64)
        for row, total in zip(counters, sums, strict=True):
            np.add.at(total, inverse.reshape(-1), row.astype(np.uint64, copy=False))
        for k, code in enumerate(found.tolist()):
            if code < 0:
                continue
            bucket = self.buckets.get(code)
            if bucket is None:
                row = int(first[k])
                bucket = self.buckets[code] = Bucket(
                    first={name: cols[name][row] for name in self.name_columns})
            bucket.records += int(counts[k]) * (2 if self.rmon else 1)
            bucket.counters += sums[:, k]

    def _add_addresses(self, cols: dict[str, np.ndarray]) -> None:
        subtype = cols["flow_subtype"].astype(np.int64) & 0x3F
        keyed = (subtype == FLOW_CLASSIC) | (subtype == FLOW_MATRIX)
        v4 = keyed & ((cols["flow_qual"] & 0x1F) == ADDR_IPV4)
        src = np.unique(cols["saddr_lo"][v4]).tolist()
        dst = np.unique(cols["daddr_lo"][v4]).tolist()
        self._add_ipv6(cols, keyed & ((cols["flow_qual"] & 0x1F) == ADDR_IPV6))
        if self.rmon:  # only source addresses are tallied, of the record and its reversal
            # (3.0.8 turns a layer-3 matrix key round with a source address of 0)
            turned = np.where(subtype == FLOW_MATRIX, 0, cols["daddr_lo"])
            self.src_addrs.update(src, np.unique(turned[v4]).tolist())
        else:
            self.src_addrs.update(src)
            self.dst_addrs.update(dst)

    def _add_ipv6(self, cols: dict[str, np.ndarray], v6: np.ndarray) -> None:
        if not v6.any():
            return
        src = ipv6_kinds(cols["saddr_hi"][v6], cols["saddr_lo"][v6])
        dst = ipv6_kinds(cols["daddr_hi"][v6], cols["daddr_lo"][v6])
        for name, counts in self.v6_counts.items():
            if self.rmon:  # sources only: the record's and its reversal's
                counts[0] += int(src[name].sum()) + int(dst[name].sum())
            else:
                counts[0] += int(src[name].sum())
                counts[1] += int(dst[name].sum())

    def address_counts(self) -> list[tuple[str, int, int]]:
        """(label, src count, dst count) of the kinds racount prints, in its order: those with a
        count, but Test Net only when Link Local has one (3.0.8 tests the wrong counter; and
        its link-local test never holds, so Test Net never prints)."""
        src = address_kinds(np.array(sorted(self.src_addrs), dtype=np.uint64))
        dst = address_kinds(np.array(sorted(self.dst_addrs), dtype=np.uint64))
        counts = {name: (int(src[name].sum()), int(dst[name].sum())) for name, _ in ADDRESS_KINDS}
        shown = {name: any(pair) for name, pair in counts.items()}
        shown["testnet"] = shown["linklocal"]
        lines = [(label, *counts[name]) for name, label in ADDRESS_KINDS if shown[name]]
        return lines + [(label, *self.v6_counts[name]) for name, label in IPV6_KINDS
                        if any(self.v6_counts[name])]

    def ordered_buckets(self) -> list[tuple[int, Bucket]]:
        """Buckets in racount's order: IP protocols, ether types below 0x1000, ARP, RARP, other."""
        return [(code, self.buckets[code]) for code in sorted(self.buckets)
                if not (code >> 16 == KIND_ETHER and code & 0xFFFF >= ETHER_PRINTED_BELOW)]
