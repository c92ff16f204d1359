"""Headers between the link layer and IP: 802.1Q/802.1ad tags, MPLS label stacks, PPPoE
sessions and 802.2 LLC/SNAP, in any order and nesting, until an IP/ARP/other protocol is reached.
"""

from __future__ import annotations

import numpy as np

from argusflow.decode import codes as c
from argusflow.decode import headers as h
from argusflow.decode.codes import Reason, Status
from argusflow.decode.cursor import (
    ET_IPV4,
    ET_IPV6,
    K_IP,
    K_LLC,
    K_MPLS,
    K_PPPOE,
    K_VLAN,
    KIND,
    NXT_LLC,
    Cursor,
)
from argusflow.decode.link import _ethertype_or_llc, _ppp_proto

MAX_LAYERS = 16


def vlan(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.VLAN)
    out = cur.out
    count = out.vlan_count[idx]
    out.vlan_outer[idx] = np.where(count == 0, g.tci, out.vlan_outer[idx])
    out.vlan_inner[idx] = np.where(count == 1, g.tci, out.vlan_inner[idx])
    out.vlan_count[idx] = np.minimum(count.astype(np.int64) + 1, 255)
    out.encaps[idx] |= c.ENC_8021Q
    cur.off[idx] += 4
    cur.nxt[idx] = _ethertype_or_llc(g.type)
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.TAGS_TRUNCATED)


def mpls(cur: Cursor, idx: np.ndarray) -> None:
    """One label stack entry per call; after the bottom one, the payload's version nibble
    says IPv4 or IPv6 (there is no protocol field)."""
    g = cur.gather(idx, h.MPLS)
    out = cur.out
    count = out.mpls_count[idx]
    out.mpls_top[idx] = np.where(count == 0, g.entry, out.mpls_top[idx])
    out.mpls_bottom[idx] = g.entry
    out.mpls_count[idx] = np.minimum(count.astype(np.int64) + 1, 255)
    out.encaps[idx] |= c.ENC_MPLS
    cur.off[idx] += 4
    bottom = g.bottom == 1
    cur.nxt[idx[~bottom]] = 0x8847
    ver = cur.gather(idx[bottom], h.FIRST_NIBBLE).version
    cur.nxt[idx[bottom]] = np.where(ver == 4, ET_IPV4, np.where(ver == 6, ET_IPV6, 0))
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.TAGS_TRUNCATED)


def pppoe(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.PPPOE)
    cur.out.encaps[idx] |= c.ENC_PPP
    cur.off[idx] += 8
    _ppp_proto(cur, idx, g.proto)
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.TAGS_TRUNCATED)


def llc(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.LLC)
    out = cur.out
    out.llc_dsap[idx] = g.dsap
    out.llc_ssap[idx] = g.ssap
    out.encaps[idx] |= c.ENC_LLC
    snap = (g.dsap == 0xAA) & (g.ssap == 0xAA) & (g.ctrl == 3)
    s = cur.gather(idx[snap], h.SNAP)
    cur.nxt[idx] = 0
    cur.nxt[idx[snap]] = _ethertype_or_llc(s.type)
    cur.off[idx[snap]] += 8
    # non-SNAP: U frames have a 1-byte control field, I/S frames 2 bytes; nothing we follow
    cur.off[idx[~snap]] += np.where((g.ctrl[~snap] & 3) == 3, 3, 4)
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.TAGS_TRUNCATED)
    cur.flag(idx[snap][~s.complete], Status.TRUNCATED, Reason.TAGS_TRUNCATED)


def ip_by_version(cur: Cursor, idx: np.ndarray) -> None:
    g = cur.gather(idx, h.FIRST_NIBBLE)
    cur.nxt[idx] = np.where(g.version == 4, ET_IPV4, np.where(g.version == 6, ET_IPV6, 0))
    bad = g.complete & (g.version != 4) & (g.version != 6)
    cur.flag(idx[~g.complete], Status.TRUNCATED, Reason.LINK_TRUNCATED)
    cur.flag(idx[bad], Status.MALFORMED, Reason.LINK_BAD)


STEPS = {K_VLAN: vlan, K_MPLS: mpls, K_PPPOE: pppoe, K_LLC: llc, K_IP: ip_by_version}


def decode_tags(cur: Cursor) -> None:
    active = cur.all
    for _ in range(MAX_LAYERS):
        kind = KIND[np.minimum(cur.nxt[active], NXT_LLC + 1)]
        step = (kind > 0) & (kind <= K_IP)
        if not step.any():
            return
        active = active[step]
        kind = kind[step]
        for k, fn in STEPS.items():
            sel = active[kind == k]
            if len(sel):
                fn(cur, sel)
    kind = KIND[np.minimum(cur.nxt[active], NXT_LLC + 1)]
    cur.flag(active[(kind > 0) & (kind <= K_IP)], Status.MALFORMED, Reason.TOO_MANY_TAGS)
