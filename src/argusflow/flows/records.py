"""Reported flow state -> record batch (records.schema), all columns at once.

The kernel copies a flow's state column into OUT when it reports a record; this module turns a
block of such columns into a record batch: numpy columns (records.writer.Columns) for the file
sink, which then runs without polars, or the polars frame the printer and live clients take.  The flow key is
rebuilt from the normalised key words and the flow's orientation (its first packet), the time
DSR follows argus's default form (spec §6.3 (a): start = first source packet unless a reply came
a whole second earlier; last = last packet), and the DSRs present follow spec §7.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from argusflow.flows.fields import F
from argusflow.flows.keys import (
    KIND_ARP,
    KIND_ETHER,
    KIND_IPV4,
    KIND_IPV6,
    P_ESP,
    P_ICMP,
    P_ICMP6,
    P_TCP,
    P_UDP,
)
from argusflow.records.schema import DSR_BITS, NUMPY_DTYPES
from argusflow.records.writer import Bytes, Columns

if TYPE_CHECKING:
    import polars as pl

U64 = np.uint64
NET_NONE, NET_TCP_INIT, NET_TCP_PERF, NET_RTP = 0x00, 0x03, 0x05, 0x0A
# RTP object: status word, the source and destination RTP headers (12 bytes each), then the
# loss counters; argus fills the headers from the last packets, ra only needs the subtype.
RTP_OBJECT = bytes(4) + b"\x80" + bytes(11) + b"\x80" + bytes(11) + bytes(8)
TH_SYN = 0x02


class Config:
    """Which optional groups are written (argus -A -J -Z -m -U), and the source id."""

    def __init__(self, appbytes: bool = False, psize: bool = False, macs: bool = False,
                 srcid_type: int = 0, srcid: int = 0) -> None:
        self.appbytes = appbytes
        self.psize = psize
        self.macs = macs
        self.srcid_type = srcid_type
        self.srcid = srcid


def _byteswap16(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.int64)
    return ((x & 0xFF) << 8) | ((x >> 8) & 0xFF)


def build_columns(OUT: np.ndarray, OK: np.ndarray, cfg: Config) -> Columns:
    """Records for the reported columns OUT[:, :m], OK[:, :m] (already sliced), as numpy."""
    cols, rtp = record_columns(OUT, OK, cfg)
    strings = {}
    if rtp.any():
        sizes = np.where(rtp, len(RTP_OBJECT), 0)
        flat = np.tile(np.frombuffer(RTP_OBJECT, dtype=np.uint8), int(rtp.sum()))
        strings["net_raw"] = Bytes(sizes, flat)
    return Columns(cols, OUT.shape[1], strings)


def build_records(OUT: np.ndarray, OK: np.ndarray, cfg: Config) -> pl.DataFrame:
    """The same records as a polars frame."""
    import polars as pl

    cols, rtp = record_columns(OUT, OK, cfg)
    out = frame(cols, OUT.shape[1])
    if rtp.any():
        raw = pl.Series("net_raw", np.where(rtp, 1, 0)).replace_strict(
            {1: RTP_OBJECT, 0: b""}, return_dtype=pl.Binary)
        out = out.with_columns(raw)
    return out


def record_columns(OUT: np.ndarray, OK: np.ndarray,
                   cfg: Config) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The columns given (schema dtypes) and which records carry the RTP object."""
    m = OUT.shape[1]
    cols: dict[str, np.ndarray] = {}

    def row(name: str) -> np.ndarray:
        return OUT[F[name]]

    kind = row("kind")
    # Ethernet keys keep the normalised order (smaller MAC first) whatever the first packet:
    # ra shows them so from argus's files (corpus: a truncated IP frame), counters as seen.
    flow_rev = (row("rev") != 0) & (kind != KIND_ETHER)
    a_hi, a_lo, b_hi, b_lo, w4, w5 = OK
    pa = ((w4 >> U64(16)) & U64(0xFFFF)).astype(np.int64)
    pb = (w4 & U64(0xFFFF)).astype(np.int64)
    proto = ((w4 >> U64(40)) & U64(0xFF)).astype(np.int64)
    cols["saddr_hi"] = np.where(flow_rev, b_hi, a_hi)
    cols["saddr_lo"] = np.where(flow_rev, b_lo, a_lo)
    cols["daddr_hi"] = np.where(flow_rev, a_hi, b_hi)
    cols["daddr_lo"] = np.where(flow_rev, a_lo, b_lo)
    sport = np.where(flow_rev, pb, pa)
    dport = np.where(flow_rev, pa, pb)

    ip = (kind == KIND_IPV4) | (kind == KIND_IPV6)
    icmp4 = (kind == KIND_IPV4) & (proto == P_ICMP)
    icmp6 = (kind == KIND_IPV6) & (proto == P_ICMP6)
    w5i = w5.astype(np.int64)
    ktype, kcode = (w5i >> 40) & 0xFF, (w5i >> 32) & 0xFF
    slot = w5i & 0xFFFFFFFF
    # ICMP: bytes 14-15 type, code; bytes 16-17 hold the id slot in host (LE) order, except the
    # quoted IPv4 destination of net/host errors, copied in network order (spec §6.2.3).
    host_err = icmp4 & (((ktype == 3) | (ktype == 5)) & (kcode <= 1))
    icmp_dport = np.where(host_err, slot >> 16, _byteswap16(slot >> 16))
    sport = np.where(icmp4 | icmp6, ktype << 8 | kcode, sport)
    dport = np.where(icmp4, icmp_dport, np.where(icmp6, 0, dport))
    ether = kind == KIND_ETHER
    arp = kind == KIND_ARP
    cols["proto"] = np.where(ether, (w5i >> 16) & 0xFFFF, np.where(arp, 0, proto))
    cols["sport"] = np.where(arp, 0, sport)
    cols["dport"] = np.where(arp, 0, dport)
    cols["tp_p"] = np.where(icmp4, (w5i >> 48) & 0xFF, 0)
    # ESP: the SPI fills key bytes 16-19 (spec §6.2.4): dport and the two mask bytes.
    esp = ip & (proto == P_ESP)
    spi = w5i & 0xFFFFFFFF
    cols["dport"] = np.where(esp, spi >> 16, cols["dport"])
    cols["sport"] = np.where(esp, 0, cols["sport"])
    cols["smask"] = np.where(esp, (spi >> 8) & 0xFF, 0)
    cols["dmask"] = np.where(esp, spi & 0xFF, 0)
    addr_type = np.select([kind == KIND_IPV4, kind == KIND_IPV6, ether, arp], [1, 2, 3, 4], 0)
    cols["flow_qual"] = addr_type | row("dirq")
    cols["flow_subtype"] = np.where(arp, 0x06, 0x01)
    cols["arp_hrd"] = np.where(arp, 1, 0)
    cols["arp_pro"] = np.where(arp, 0x0800, 0)
    cols["arp_hln"] = np.where(arp, 6, 0)
    cols["arp_pln"] = np.where(arp, 4, 0)
    cols["arp_op"] = np.where(arp, 1, 0)

    # Counters and times.
    spk, dpk = row("spk"), row("dpk")
    for name in ("spk", "dpk", "sby", "dby"):
        cols[{"spk": "spkts", "dpk": "dpkts", "sby": "sbytes", "dby": "dbytes"}[name]] = row(name)
    if cfg.appbytes:
        cols["sappbytes"], cols["dappbytes"] = row("sapp"), row("dapp")
    cols["metric_subtype"] = np.full(m, 4 if cfg.appbytes else 1)
    # argus reports the source's first packet time unless the destination's first packet lies
    # in an earlier second (it compares whole seconds only: bench and medium captures).
    sfirst, dfirst = row("sfirst"), row("dfirst")
    dst_earlier = (dpk > 0) & (dfirst // 1_000_000 < sfirst // 1_000_000)
    start = np.where((spk > 0) & ~dst_earlier, sfirst, dfirst)
    last = np.maximum(np.maximum(row("slast"), row("dlast")), row("imap_ts"))
    cols["sstart"], cols["slast"] = start, last
    cols["time_subtype"] = np.full(m, 0x02)
    cols["time_qual"] = np.full(m, 0x18)

    cols["sencaps"], cols["dencaps"] = row("senc"), row("denc")
    dsrs = np.full(m, DSR_BITS["transport"] | DSR_BITS["flow"] | DSR_BITS["time"]
                   | DSR_BITS["metric"] | DSR_BITS["encaps"], dtype=np.int64)

    tcp = ip & (proto == P_TCP)
    syn_only = tcp & (row("nrec") == 0) & (spk == 1) & (dpk == 0) & (row("t_s_flags") == TH_SYN)
    cols["net_subtype"] = np.where(tcp, np.where(syn_only, NET_TCP_INIT, NET_TCP_PERF), NET_NONE)
    rtp = ip & (proto == P_UDP) & (row("rtp") != 0)
    cols["net_subtype"] = np.where(rtp, NET_RTP, cols["net_subtype"])
    dsrs |= np.where(tcp | rtp, DSR_BITS["net"], 0)
    for name in ("status", "state", "opts", "synack", "ackdat"):
        target = "tcp_options" if name == "opts" else f"tcp_{name}"
        cols[target] = np.where(tcp, row(f"t_{name}"), 0)
    for p in ("s", "d"):
        for name in ("seqbase", "seq", "ack", "win", "flags", "bytes", "retrans", "status"):
            cols[f"{p}tcp_{name}"] = np.where(tcp, row(f"t_{p}_{name}"), 0)
        cols[f"{p}tcp_winshift"] = np.where(tcp, row(f"t_{p}_wscale"), 0)
        cols[f"{p}tcp_last"] = np.where(tcp, row(f"t_{p}_last"), 0)

    # IP attributes: TTL, TOS, IP id (stored byte-swapped, spec §2), options, fragments.
    attrq = np.where(ip, row("attrq"), 0)
    attrq = attrq & np.where(spk > 0, 1, 0) | attrq & np.where(dpk > 0, 2, 0)
    attrq |= np.where(attrq & 1 & (row("sopts") != 0), 4, 0)
    attrq |= np.where(attrq & 2 & (row("dopts") != 0), 8, 0)
    attrq |= np.where(ip & (row("sfrag") != 0), 0x10, 0) | np.where(ip & (row("dfrag") != 0), 0x20, 0)
    cols["attr_qual"] = attrq
    for p in ("s", "d"):
        cols[f"{p}ttl"], cols[f"{p}tos"] = row(f"{p}ttl"), row(f"{p}tos")
        cols[f"{p}ipid"] = _byteswap16(row(f"{p}ipid"))
        cols[f"{p}ipopts"] = row(f"{p}opts")
    dsrs |= np.where(ip & (attrq != 0), DSR_BITS["attr"], 0)

    vlanq = row("vlanq")
    cols["vlan_qual"], cols["svlan"], cols["dvlan"] = vlanq, row("svlan"), row("dvlan")
    dsrs |= np.where(vlanq != 0, DSR_BITS["vlan"], 0)
    mplsq = row("mplsq")
    cols["mpls_subtype"] = mplsq
    cols["mpls_qual"] = np.where(mplsq & 1, 0x10, 0) | np.where(mplsq & 2, 0x01, 0)
    cols["smpls"], cols["dmpls"] = row("smpls"), row("dmpls")
    dsrs |= np.where(mplsq != 0, DSR_BITS["mpls"], 0)
    if cfg.macs:
        cols["smac"], cols["dmac"], cols["mac_qual"] = row("smac"), row("dmac"), row("macq")
        dsrs |= DSR_BITS["mac"]
    if cfg.psize:
        cols["psize_qual"] = np.select([(spk > 0) & (dpk > 0), spk > 0], [2, 6], 10)
        for p in ("s", "d"):
            cols[f"{p}maxsz"], cols[f"{p}minsz"] = row(f"{p}max"), row(f"{p}min")
        dsrs |= DSR_BITS["psize"]

    imap = row("imap_qual")
    for name in ("qual", "type", "code", "osrc", "odst"):
        cols[f"icmpmap_{name}"] = row(f"imap_{name}")
    dsrs |= np.where(imap != 0, DSR_BITS["icmpmap"], 0)

    cols["rtype"] = np.full(m, 0x10)
    cols["cause"] = row("o_cause")
    cols["dsrs"] = dsrs
    cols["seq"] = row("seq")
    cols["srcid_type"] = np.full(m, cfg.srcid_type)
    cols["srcid"] = np.full(m, cfg.srcid)
    return {name: typed(name, values) for name, values in cols.items()}, rtp


_BOUNDS = {"u1": 0xFF, "u2": 0xFFFF, "u4": 0xFFFFFFFF}


def typed(name: str, values: np.ndarray) -> np.ndarray:
    """`values` in the column's schema dtype."""
    dtype = NUMPY_DTYPES[name]
    if dtype in _BOUNDS and values.dtype != np.uint64:
        # Out-of-order captures can make time differences negative: keep to the field.
        values = np.clip(values, 0, _BOUNDS[dtype])
    return values.astype(dtype, copy=False)


def frame(cols: dict[str, np.ndarray], m: int) -> pl.DataFrame:
    """A frame with every schema column: the given ones (schema dtypes), the rest zero / empty
    (broadcast literals: building ~150 zero columns per batch as arrays cost more than the
    engine)."""
    import polars as pl

    from argusflow.records.schema import SCHEMA

    given = [pl.Series(name, values) for name, values in cols.items()]
    out = pl.DataFrame(given, height=m) if given else pl.DataFrame(height=m)
    zero = {pl.Binary: b"", pl.String: ""}
    missing = [pl.lit(zero.get(dtype, 0), dtype=dtype).alias(name)
               for name, dtype in SCHEMA.items() if name not in cols]
    return out.with_columns(missing).select(list(SCHEMA))
