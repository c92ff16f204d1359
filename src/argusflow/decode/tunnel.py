"""GRE decapsulation: argus 3.0.8 keys GRE-carried IP on the inner packet (it reports the inner
tcp/udp/icmp flows), while it leaves IP-in-IP, 6in4, VXLAN, Geneve and Teredo as outer flows.

The inner packet is decoded as a batch of its own (raw IP, Ethernet for transparent bridging,
or PPP for PPTP's enhanced GRE) and its network and transport columns replace the outer ones;
the outer link-layer columns stay, and the encapsulation bits add up.  A GRE packet whose inner
part is not IP, or cannot be decoded cleanly, stays the outer GRE packet.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from argusflow.capture import linktype as lt
from argusflow.capture.batch import PacketBatch
from argusflow.decode import codes as c
from argusflow.decode import headers as h
from argusflow.decode.codes import Status
from argusflow.decode.columns import DTYPES, DecodedBatch
from argusflow.decode.fields import gather

MAX_DEPTH = 3
# columns that describe the outer frame and survive decapsulation
OUTER_COLUMNS = frozenset(
    "encaps link_len dst_mac src_mac vlan_count vlan_outer vlan_inner mpls_count mpls_top mpls_bottom "
    "llc_dsap llc_ssap ethertype".split()
)
OFFSET_COLUMNS = ("l4_off", "payload_off")  # 0 means absent; l3_off is always set
GRE_INNER = {0x0800: lt.RAW, 0x86DD: lt.RAW, 0x6558: lt.ETHERNET, 0x880B: lt.PPP}


def decapsulate_gre(
    batch: PacketBatch, out: DecodedBatch, decode: Callable[[PacketBatch, int], DecodedBatch], depth: int
) -> None:
    if depth >= MAX_DEPTH:
        return
    idx = np.flatnonzero((out.proto == 47) & (out.status == Status.OK) & (out.l4_off > 0))
    if len(idx) == 0:
        return
    l4 = out.l4_off[idx].astype(np.int64)
    caplen = batch.caplen[idx].astype(np.int64)
    g = gather(batch.data, batch.offset[idx] + l4, caplen - l4, h.GRE)
    # optional words: checksum+reserved, key (PPTP: payload length + call id), sequence, ack (v1)
    length = 4 + 4 * g.checksum + 4 * g.key + 4 * g.seq + 4 * ((g.version == 1) & (g.ack == 1))
    link = np.zeros(len(idx), dtype=np.uint16)
    for proto, inner in GRE_INNER.items():
        link[g.proto == proto] = inner
    ok = g.complete & (g.routing == 0) & (g.version <= 1) & (link != 0) & (l4 + length <= caplen)
    idx, l4, length, link = idx[ok], l4[ok], length[ok], link[ok]
    if len(idx) == 0:
        return
    shift = l4 + length
    inner = decode(
        PacketBatch(
            ts_us=batch.ts_us[idx],
            caplen=(batch.caplen[idx] - shift).astype(np.uint32),
            wirelen=batch.wirelen[idx],
            linktype=link,
            ifindex=batch.ifindex[idx],
            offset=batch.offset[idx] + shift,
            data=batch.data,
        ),
        depth + 1,
    )
    take = (inner.status == Status.OK) & (inner.ip_version != 0)
    rows, src, shift = idx[take], np.flatnonzero(take), shift[take]
    for name in DTYPES:
        if name not in OUTER_COLUMNS:
            getattr(out, name)[rows] = getattr(inner, name)[src]
    out.l3_off[rows] += shift
    for name in OFFSET_COLUMNS:
        col = getattr(out, name)
        col[rows] = np.where(col[rows] > 0, col[rows] + shift, 0)
    out.encaps[rows] |= inner.encaps[src] | c.ENC_GRE
