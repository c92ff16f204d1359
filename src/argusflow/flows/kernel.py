"""The compiled heart of the probe: one pass over a batch's packets in time order.

Per packet: find the flow (open-addressing hash table over the normalised keys), end the open
record when the status interval has passed (spec §3: records are interval reports) or the flow
when it was idle longer than its protocol's timeout, then add the packet to the open record and
run the TCP state machine.  Once per second of packet time a scan reports the records of quiet
flows whose interval is over and frees timed-out flows, so the table holds only active flows.

All state lives in arrays (fields.py layouts): F (flow state, int64), K (keys, u64), H (hashes),
SLOTS (hash table: flow index + 1, 0 empty, -1 deleted), FREE (stack of free flow indices).
Reported records are copies of a flow's F column (plus cause) into OUT, its key into OK.
The kernel returns early when the flow table or the output is full; the caller grows the arrays
and calls again from the returned packet index.
"""

from __future__ import annotations

import numpy as np

from argusflow.flows.fields import FLOW_FIELDS, PACKET_FIELDS, RECORD_END, RECORD_FIRST
from argusflow.flows.jit import entry, njit
from argusflow.flows.keys import KIND_IPV4, KIND_IPV6
from argusflow.flows.tcp import tcp_update

(P_TS, P_LEN, P_KIND, P_REV, P_FRAG, P_PROTO, P_TFLAGS, P_TSEQ, P_TACK, P_TWIN, P_TOPTS,
 P_TWSCALE, P_PLEN, P_TTL, P_TOS, P_IPID, P_ENC, P_VLANC, P_VLAN, P_MPLSC, P_MPLS, P_SMAC,
 P_DMAC, P_IPOPTS, P_MF, P_ICMP_ERR, P_IP_VER, P_SRC_LO, P_DST_LO, P_ITYPE,
 P_ICODE, P_FREV, P_RTP, P_REPLY) = range(len(PACKET_FIELDS))

_F = {name: i for i, name in enumerate(FLOW_FIELDS)}
(USED, REV, SEQ, FIRST_TS, LAST_TS, TIMEOUT, NREC, KIND, PROTO, DIRQ) = (
    _F[n] for n in ("used", "rev", "seq", "first_ts", "last_ts", "timeout", "nrec", "kind",
                    "proto", "dirq"))
(R_START, SPK, DPK, SBY, DBY, SAPP, DAPP, SFIRST, SLAST, DFIRST, DLAST) = (
    _F[n] for n in ("r_start", "spk", "dpk", "sby", "dby", "sapp", "dapp", "sfirst", "slast",
                    "dfirst", "dlast"))
(STTL, STOS, SIPID, SENC, SVLAN, SMPLS, SMIN, SMAX, SFRAG, SOPTS) = (
    _F[n] for n in ("sttl", "stos", "sipid", "senc", "svlan", "smpls", "smin", "smax", "sfrag",
                    "sopts"))
(DTTL, DTOS, DIPID, DENC, DVLAN, DMPLS, DMIN, DMAX, DFRAG, DOPTS) = (
    _F[n] for n in ("dttl", "dtos", "dipid", "denc", "dvlan", "dmpls", "dmin", "dmax", "dfrag",
                    "dopts"))
(VLANQ, MPLSQ, SMAC, DMAC, MACQ, ATTRQ) = (
    _F[n] for n in ("vlanq", "mplsq", "smac", "dmac", "macq", "attrq"))
(O_CAUSE, O_SLOT, RTP) = (_F["o_cause"], _F["o_slot"], _F["rtp"])
(IMAP_QUAL, IMAP_TYPE, IMAP_CODE, IMAP_OSRC, IMAP_ODST, IMAP_TS) = (
    _F[n] for n in ("imap_qual", "imap_type", "imap_code", "imap_osrc", "imap_odst", "imap_ts"))
N_FLOW = len(FLOW_FIELDS)

CAUSE_START, CAUSE_STATUS = 0x10, 0x20
P_TCP = 6

# Return codes: why the kernel stopped before the end of the batch.
DONE, NEED_FLOWS, NEED_OUTPUT = 0, 1, 2


@njit
def find(K: np.ndarray, H: np.ndarray, SLOTS: np.ndarray, keys: np.ndarray, h: np.uint64,
         i: int) -> int:
    """Flow index of packet i's key, or -1."""
    mask = len(SLOTS) - 1
    pos = np.int64(h & np.uint64(mask))
    while True:
        s = SLOTS[pos]
        if s == 0:
            return -1
        if s > 0:
            f = s - 1
            if H[f] == h and K[0, f] == keys[0, i] and K[1, f] == keys[1, i] \
                    and K[2, f] == keys[2, i] and K[3, f] == keys[3, i] \
                    and K[4, f] == keys[4, i] and K[5, f] == keys[5, i]:
                return f
        pos = (pos + 1) & mask


@njit
def insert(H: np.ndarray, SLOTS: np.ndarray, f: int) -> None:
    mask = len(SLOTS) - 1
    pos = np.int64(H[f] & np.uint64(mask))
    while SLOTS[pos] > 0:
        pos = (pos + 1) & mask
    SLOTS[pos] = f + 1


@njit
def remove(H: np.ndarray, SLOTS: np.ndarray, f: int) -> None:
    mask = len(SLOTS) - 1
    pos = np.int64(H[f] & np.uint64(mask))
    while SLOTS[pos] != f + 1:
        pos = (pos + 1) & mask
    SLOTS[pos] = -1


@njit
def is_open(F: np.ndarray, f: int) -> bool:
    """Flow f has packets not yet reported."""
    return F[SPK, f] + F[DPK, f] > 0


@njit
def emit(F: np.ndarray, K: np.ndarray, f: int, OUT: np.ndarray, OK: np.ndarray, n_out: int,
         counters: np.ndarray) -> int:
    """Report flow f's open record into OUT[:, n_out]; reset the record.  Returns n_out + 1."""
    if F[SEQ, f] == 0:
        counters[0] += 1
        if counters[0] > 0xFFFFFFFF:
            counters[0] = 1
        F[SEQ, f] = counters[0]
    F[O_CAUSE, f] = CAUSE_START if F[NREC, f] == 0 else CAUSE_STATUS
    F[O_SLOT, f] = f
    for r in range(N_FLOW):
        OUT[r, n_out] = F[r, f]
    for w in range(6):
        OK[w, n_out] = K[w, f]
    F[NREC, f] += 1
    for r in range(RECORD_FIRST, RECORD_END):
        F[r, f] = 0
    return n_out + 1


@njit
def release(F: np.ndarray, H: np.ndarray, SLOTS: np.ndarray, FREE: np.ndarray, nfree: int,
            f: int) -> int:
    remove(H, SLOTS, f)
    F[:, f] = 0
    FREE[nfree] = f
    return nfree + 1


@entry("flow_scan")
def scan(F: np.ndarray, K: np.ndarray, H: np.ndarray, SLOTS: np.ndarray, FREE: np.ndarray,
         nfree: int, now: int, interval: int, OUT: np.ndarray, OK: np.ndarray, n_out: int,
         counters: np.ndarray, flush: bool) -> tuple[int, int]:
    """Report due records, free timed-out flows; with `flush`, report and free everything."""
    for f in range(F.shape[1]):
        if F[USED, f] == 0:
            continue
        if n_out >= OUT.shape[1]:
            break
        dead = flush or idle_expired(now, F[LAST_TS, f], F[TIMEOUT, f])
        if is_open(F, f) and (dead or now - F[R_START, f] >= interval):
            n_out = emit(F, K, f, OUT, OK, n_out, counters)
        if dead:
            nfree = release(F, H, SLOTS, FREE, nfree, f)
    return nfree, n_out


@njit
def new_flow(F: np.ndarray, K: np.ndarray, H: np.ndarray, SLOTS: np.ndarray, f: int,
             P: np.ndarray, keys: np.ndarray, hashes: np.ndarray, i: int,
             timeouts: np.ndarray) -> None:
    for w in range(6):
        K[w, f] = keys[w, i]
    H[f] = hashes[i]
    insert(H, SLOTS, f)
    F[USED, f] = 1
    F[REV, f] = P[P_REV, i]
    if P[P_REPLY, i]:
        # An echo flow first seen by its reply is still oriented requester -> responder, and
        # marked as such (flow key DIRECTION bit, spec §6.2.3).
        F[REV, f] = 1 - P[P_REV, i]
        F[DIRQ, f] = 0x20
    F[FIRST_TS, f] = P[P_TS, i]
    F[KIND, f] = P[P_KIND, i]
    F[PROTO, f] = P[P_PROTO, i]
    # A UDP flow whose first packet carries an RTP version 2 header is an RTP flow.
    F[RTP, f] = P[P_RTP, i]
    F[TIMEOUT, f] = timeouts[flow_class(P[P_KIND, i], P[P_PROTO, i], P[P_FRAG, i])]


@njit
def idle_expired(now: int, last: int, timeout: int) -> bool:
    """argus compares idle time in whole seconds: a flow last seen at 907.49 is still alive for
    a packet at 912.63 with a 5 s timeout (corpus: zeek__communityid-icmp6)."""
    return now // 1_000_000 - last // 1_000_000 > timeout // 1_000_000


@njit
def flow_class(kind: int, proto: int, frag: int) -> int:
    """Index into the timeout table: 0 IP, 1 TCP, 2 ICMP, 3 IGMP, 4 FRAG, 5 ARP, 6 OTHER."""
    if kind == KIND_IPV4 or kind == KIND_IPV6:
        if frag:
            return 4
        if proto == P_TCP:
            return 1
        if proto == 1 or proto == 58:
            return 2
        if proto == 2:
            return 3
        return 0
    if kind == 3:
        return 5
    return 6


@njit
def add_packet(F: np.ndarray, f: int, d: int, P: np.ndarray, i: int, now: int) -> None:
    """Add packet i to flow f's open record, direction d (0 source, 1 destination)."""
    ts = P[P_TS, i]
    size = P[P_LEN, i]
    if not is_open(F, f):
        F[R_START, f] = now
    if d == 0:
        F[SPK, f] += 1
        F[SBY, f] += size
        F[SAPP, f] += P[P_PLEN, i]
        if F[SPK, f] == 1:
            F[SFIRST, f] = ts
            F[SMIN, f] = size
        F[SLAST, f] = ts
        F[SMIN, f] = min(F[SMIN, f], size)
        F[SMAX, f] = max(F[SMAX, f], size)
    else:
        F[DPK, f] += 1
        F[DBY, f] += size
        F[DAPP, f] += P[P_PLEN, i]
        if F[DPK, f] == 1:
            F[DFIRST, f] = ts
            F[DMIN, f] = size
        F[DLAST, f] = ts
        F[DMIN, f] = min(F[DMIN, f], size)
        F[DMAX, f] = max(F[DMAX, f], size)
    side = 0 if d == 0 else DTTL - STTL
    if P[P_IP_VER, i] != 0:
        F[STTL + side, f] = P[P_TTL, i]
        F[STOS + side, f] = P[P_TOS, i]
        F[SIPID + side, f] = P[P_IPID, i]
        F[SOPTS + side, f] = P[P_IPOPTS, i]  # attributes are those of the last packet
        F[ATTRQ, f] |= 1 << d
        if P[P_FRAG, i] or P[P_MF, i]:
            F[SFRAG + side, f] = 1
    F[SENC + side, f] |= P[P_ENC, i]
    if P[P_VLANC, i] > 0:
        F[SVLAN + side, f] = P[P_VLAN, i]
        F[VLANQ, f] |= 1 << d
    if P[P_MPLSC, i] > 0:
        F[SMPLS + side, f] = P[P_MPLS, i]
        F[MPLSQ, f] |= 1 << d
    if d == 0:
        if F[SMAC, f] == 0 and F[DMAC, f] == 0:
            F[SMAC, f] = P[P_SMAC, i]
            F[DMAC, f] = P[P_DMAC, i]
        elif F[SMAC, f] != P[P_SMAC, i]:
            F[MACQ, f] |= 1


@njit
def fragment_flow(F: np.ndarray, FRAGH: np.ndarray, FRAGF: np.ndarray, fh: np.uint64) -> int:
    """The flow whose first fragment had this fragment hash, or -1 (direct-mapped cache)."""
    at = np.int64(fh & np.uint64(len(FRAGH) - 1))
    f = FRAGF[0, at]
    if FRAGH[at] == fh and f >= 0 and F[USED, f] != 0 and F[FIRST_TS, f] == FRAGF[1, at]:
        return f
    return -1


@njit
def remember_fragment(F: np.ndarray, FRAGH: np.ndarray, FRAGF: np.ndarray, fh: np.uint64,
                      f: int) -> None:
    at = np.int64(fh & np.uint64(len(FRAGH) - 1))
    FRAGH[at] = fh
    FRAGF[0, at] = f
    FRAGF[1, at] = F[FIRST_TS, f]


@njit
def absorb(F: np.ndarray, f: int, g: int, d: int) -> None:
    """Add fragment flow g's open record to flow f; g's source side is f's side d."""
    for side in range(2):
        src = side * (DPK - SPK)
        dst = (d if side == 0 else 1 - d) * (DPK - SPK)
        tsrc = side * (DFIRST - SFIRST)
        tdst = (d if side == 0 else 1 - d) * (DFIRST - SFIRST)
        if F[SPK + src, g] == 0:
            continue
        if F[SPK + dst, f] == 0 or F[SFIRST + tsrc, g] < F[SFIRST + tdst, f]:
            F[SFIRST + tdst, f] = F[SFIRST + tsrc, g]
        F[SLAST + tdst, f] = max(F[SLAST + tdst, f], F[SLAST + tsrc, g])
        F[SPK + dst, f] += F[SPK + src, g]
        F[SBY + dst, f] += F[SBY + src, g]
        F[SFRAG + (DTTL - STTL if dst else 0), f] = 1
    F[R_START, f] = min(F[R_START, f], F[R_START, g])


@njit
def map_icmp_error(F: np.ndarray, K: np.ndarray, H: np.ndarray, SLOTS: np.ndarray, P: np.ndarray,
                   quoted: np.ndarray, qhashes: np.ndarray, i: int) -> None:
    """An ICMP error marks the flow it quotes (spec §6.8) and extends its last time."""
    g = find(K, H, SLOTS, quoted, qhashes[i], i)
    if g < 0 or not is_open(F, g):
        return
    t = P[P_ITYPE, i]
    F[IMAP_QUAL, g] = 1 if t == 3 else 2 if t == 5 else 4 if t == 11 else 0
    F[IMAP_TYPE, g] = t
    F[IMAP_CODE, g] = P[P_ICODE, i]
    F[IMAP_OSRC, g] = P[P_SRC_LO, i]
    F[IMAP_ODST, g] = P[P_DST_LO, i]
    F[IMAP_TS, g] = P[P_TS, i]


@entry("flow_run")
def run(P: np.ndarray, keys: np.ndarray, hashes: np.ndarray, fhashes: np.ndarray,
        fkeys: np.ndarray, quoted: np.ndarray, qhashes: np.ndarray, start: int,
        F: np.ndarray, K: np.ndarray, H: np.ndarray, SLOTS: np.ndarray, FREE: np.ndarray,
        nfree: int, OUT: np.ndarray, OK: np.ndarray, n_out: int, counters: np.ndarray,
        interval: int, timeouts: np.ndarray, clock: np.ndarray, FRAGH: np.ndarray,
        FRAGF: np.ndarray) -> tuple[int, int, int, int]:
    """Process packets start.. of the batch.  Returns (next packet, nfree, n_out, reason).

    counters: [last flow sequence number, packets skipped]; clock: [next scan time, global time].
    FRAGH/FRAGF: fragment cache (hash; flow, flow start) joining later fragments to the flow
    of their first fragment.
    """
    n = P.shape[1]
    out_cap = OUT.shape[1]
    for i in range(start, n):
        if n_out + 2 > out_cap:
            return i, nfree, n_out, NEED_OUTPUT
        ts = P[P_TS, i]
        # argus measures intervals on its global clock, the latest packet time seen: a packet
        # older than that (unordered capture) neither opens a later interval nor ends one.
        if ts > clock[1]:
            clock[1] = ts
        now = clock[1]
        if ts >= clock[0]:
            if clock[0] > 0:
                nfree, n_out = scan(F, K, H, SLOTS, FREE, nfree, ts, interval, OUT, OK, n_out,
                                    counters, False)
                if n_out + 2 > out_cap:
                    return i, nfree, n_out, NEED_OUTPUT
            clock[0] = (ts // 1_000_000 + 1) * 1_000_000
        if P[P_KIND, i] == 0:
            counters[1] += 1
            continue
        f = -1
        if P[P_FRAG, i] and P[P_KIND, i] == KIND_IPV4:
            f = fragment_flow(F, FRAGH, FRAGF, fhashes[i])
        if f < 0:
            f = find(K, H, SLOTS, keys, hashes[i], i)
        if f >= 0 and idle_expired(ts, F[LAST_TS, f], F[TIMEOUT, f]):
            if is_open(F, f):
                n_out = emit(F, K, f, OUT, OK, n_out, counters)
            nfree = release(F, H, SLOTS, FREE, nfree, f)
            f = -1
        fresh = f < 0
        if fresh:
            if nfree == 0:
                return i, nfree, n_out, NEED_FLOWS
            nfree -= 1
            f = FREE[nfree]
            new_flow(F, K, H, SLOTS, f, P, keys, hashes, i, timeouts)
        elif is_open(F, f) and now - F[R_START, f] >= interval:
            n_out = emit(F, K, f, OUT, OK, n_out, counters)
        d = 0 if P[P_REV, i] == F[REV, f] else 1
        add_packet(F, f, d, P, i, now)
        if P[P_MF, i] and not P[P_FRAG, i] and P[P_KIND, i] == KIND_IPV4:
            remember_fragment(F, FRAGH, FRAGF, fhashes[i], f)
            # Fragments that came before their first fragment wait in a flow of their own.
            g = find(K, H, SLOTS, fkeys, fhashes[i], i)
            if g >= 0 and g != f:
                same = P[P_FREV, i] == F[REV, g]
                absorb(F, f, g, d if same else 1 - d)
                nfree = release(F, H, SLOTS, FREE, nfree, g)
        if P[P_PROTO, i] == P_TCP and P[P_KIND, i] <= KIND_IPV6 and P[P_FRAG, i] == 0:
            tcp_update(F, f, d, ts, P[P_TFLAGS, i], P[P_TSEQ, i], P[P_TACK, i], P[P_TWIN, i],
                       P[P_TOPTS, i], P[P_TWSCALE, i], P[P_PLEN, i], fresh)
        F[LAST_TS, f] = ts
        if P[P_ICMP_ERR, i] != 0:
            map_icmp_error(F, K, H, SLOTS, P, quoted, qhashes, i)
    return n, nfree, n_out, DONE


@entry("flow_rehash")
def rehash(H: np.ndarray, F: np.ndarray, SLOTS: np.ndarray) -> None:
    """Rebuild the hash table (after growing it, or to drop deleted markers)."""
    SLOTS[:] = 0
    for f in range(F.shape[1]):
        if F[USED, f] != 0:
            insert(H, SLOTS, f)
