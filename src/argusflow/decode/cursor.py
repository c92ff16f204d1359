"""The decoder's per-batch state: where each packet's next header starts and what it is.

`nxt` holds the protocol of the next header in the ethertype number space, plus two pseudo
values for headers without an ethertype (LLC, "IP, look at the version nibble").  Layers take the
packets whose `nxt` they handle, gather their header, write output columns and advance `off`.
"""

from __future__ import annotations

import numpy as np

from argusflow.capture.batch import PacketBatch
from argusflow.decode.codes import Reason, Status
from argusflow.decode.columns import DecodedBatch
from argusflow.decode.fields import Gathered, Header, gather

ET_IPV4 = 0x0800
ET_ARP = 0x0806
ET_RARP = 0x8035
ET_IPV6 = 0x86DD
# argus 3.0.8 does not look inside 802.1ad (0x88a8) service tags: such frames are non-IP flows
# of that ether type (corpus: tcpdump__802.1ad_QinQ).
ET_VLAN = (0x8100, 0x9100)
ET_MPLS = (0x8847, 0x8848)
ET_PPPOE_SESSION = 0x8864
NXT_NONE = 0  # nothing more we can decode
NXT_LLC = 0x10000  # an 802.2 LLC header follows
NXT_IP = 0x10001  # an IP header of either version follows

# kinds of next header, looked up in one table gather per layer step
K_DONE, K_VLAN, K_MPLS, K_PPPOE, K_LLC, K_IP, K_IPV4, K_IPV6, K_ARP = range(9)
KIND = np.zeros(0x10002, dtype=np.uint8)
KIND[list(ET_VLAN)] = K_VLAN
KIND[list(ET_MPLS)] = K_MPLS
KIND[ET_PPPOE_SESSION] = K_PPPOE
KIND[NXT_LLC] = K_LLC
KIND[NXT_IP] = K_IP
KIND[ET_IPV4] = K_IPV4
KIND[ET_IPV6] = K_IPV6
KIND[[ET_ARP, ET_RARP]] = K_ARP

# PPP protocol numbers that lead somewhere we decode
PPP_TO_ETHERTYPE = {0x0021: ET_IPV4, 0x0057: ET_IPV6, 0x0281: 0x8847, 0x0283: 0x8848}


class Cursor:
    def __init__(self, batch: PacketBatch) -> None:
        n = len(batch)
        self.n = n
        self.data = batch.data
        self.start = batch.offset.astype(np.int64, copy=False)
        self.caplen = batch.caplen.astype(np.int64)
        self.off = np.zeros(n, dtype=np.int64)
        self.nxt = np.zeros(n, dtype=np.int64)
        self.ip_end = np.zeros(n, dtype=np.int64)  # offset where the IP datagram ends
        self.out = DecodedBatch(n, batch.ts_us, batch.wirelen, batch.caplen)
        self.all = np.arange(n)

    def gather(self, idx: np.ndarray, header: Header, extra: int | np.ndarray = 0) -> Gathered:
        """`header` for packets `idx`, starting `extra` bytes after their current offset."""
        at = self.off[idx] + extra
        return gather(self.data, self.start[idx] + at, self.caplen[idx] - at, header)

    def flag(self, idx: np.ndarray, status: Status, reason: Reason) -> None:
        """Record a problem for packets `idx`, keeping the first problem each packet had; they
        decode no further."""
        if len(idx) == 0:
            return
        out = self.out
        first = out.status[idx] == Status.OK
        out.status[idx[first]] = status
        out.reason[idx[first]] = reason
        self.nxt[idx] = NXT_NONE
