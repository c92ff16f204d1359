"""The TCP state machine of one flow, one packet at a time (compiled; called by the flow kernel).

Argus keeps a status word per connection (spec §6.7.1) that ra turns into the State column:
SAW_SYN when the source's SYN is seen, SAW_SYN_SENT for the SYN-ACK, CON_ESTABLISHED when the
handshake completes (or at once for a connection picked up mid-stream), FIN / FIN_ACK /
NORMAL_CLOSE for the close, a RESET bit per direction, and per-direction retransmission,
window-shut, ECN and out-of-order bits.  The word is cumulative over the flow; the per-record
delta reports share it.  Sequence tracking per direction gives the base sequence number, the
highest sequence seen, payload bytes and retransmissions (sloss/dloss).
"""

from __future__ import annotations

import numpy as np

from argusflow.flows.fields import F
from argusflow.flows.jit import njit

SAW_SYN, SAW_SYN_SENT, CON_ESTABLISHED = 0x1, 0x2, 0x4
FIN, FIN_ACK, NORMAL_CLOSE = 0x8, 0x10, 0x20
PKTS_RETRANS, WINDOW_SHUT, RESET, CONGESTED, OUTOFORDER = 0x100, 0x400, 0x1000, 0x4000, 0x10000
TH_FIN, TH_SYN, TH_RST, TH_ACK, TH_ECE, TH_CWR = 0x01, 0x02, 0x04, 0x10, 0x40, 0x80
TCPOPT_SRC_ECN = 0x40000000
# BSD TCPS_* values argus reports as the connection state.
TCPS_SYN_SENT, TCPS_SYN_RECEIVED, TCPS_ESTABLISHED = 2, 3, 4
TCPS_FIN_WAIT_1, TCPS_CLOSE_WAIT, TCPS_TIME_WAIT = 6, 5, 9

(STATUS, STATE, OPTS, SYNACK, ACKDAT, SYN_TS, SYNACK_TS) = (
    F[n] for n in ("t_status", "t_state", "t_opts", "t_synack", "t_ackdat", "t_syn_ts",
                   "t_synack_ts"))
# Direction blocks: field = base + direction * DSTRIDE.
(SEQBASE, SEQ, ACK, WIN, FLAGS, BYTES, RETRANS, WSCALE, LAST, DSTATUS, SEEN) = (
    F["t_s_" + n] for n in ("seqbase", "seq", "ack", "win", "flags", "bytes", "retrans",
                            "wscale", "last", "status", "seen"))
DSTRIDE = F["t_d_seqbase"] - F["t_s_seqbase"]
FIN_SEQ = F["t_fin_seq_s"]
M32 = 0xFFFFFFFF


@njit
def seq_after(a: int, b: int) -> bool:
    """a > b in 32-bit sequence space."""
    return 0 < ((a - b) & M32) < 0x80000000


@njit
def tcp_update(st: np.ndarray, f: int, d: int, ts: int, flags: int, seq: int, ack: int, win: int,
               opts: int, wscale: int, plen: int, new_flow: bool) -> None:
    o = d * DSTRIDE
    other = (1 - d) * DSTRIDE
    status = st[STATUS, f]
    st[FLAGS + o, f] |= flags & 0xFF
    st[OPTS, f] |= opts
    syn = (flags & TH_SYN) != 0
    ackf = (flags & TH_ACK) != 0
    first_in_dir = st[SEEN + o, f] == 0
    st[SEEN + o, f] += 1
    if first_in_dir:
        # The base is the sequence number before the first byte: a SYN's own number, else one
        # less when the packet carries data (samples: misc.pcap, tcp_states.pcap).
        st[SEQBASE + o, f] = (seq - 1) & M32 if (plen > 0 and not syn) else seq
        st[SEQ + o, f] = seq
    end = (seq + plen + (1 if syn else 0) + (1 if flags & TH_FIN else 0)) & M32
    if syn:
        if ackf:
            if status & SAW_SYN_SENT and not first_in_dir and seq == st[SEQBASE + o, f]:
                st[RETRANS + o, f] += 1
                status |= PKTS_RETRANS << d
            status |= SAW_SYN_SENT
            if st[SYN_TS, f] > 0 and st[SYNACK, f] == 0:
                st[SYNACK, f] = ts - st[SYN_TS, f]
            if st[SYNACK_TS, f] == 0:
                st[SYNACK_TS, f] = ts
            st[STATE, f] = TCPS_SYN_RECEIVED
        else:
            if status & SAW_SYN and not first_in_dir and seq == st[SEQBASE + o, f]:
                st[RETRANS + o, f] += 1
                status |= PKTS_RETRANS << d
            status |= SAW_SYN
            if st[SYN_TS, f] == 0:
                st[SYN_TS, f] = ts
            if flags & (TH_ECE | TH_CWR):
                st[OPTS, f] |= TCPOPT_SRC_ECN
            st[STATE, f] = TCPS_SYN_SENT
        if wscale > 0:
            st[WSCALE + o, f] = wscale
    elif new_flow:
        # Picked up mid-stream: argus takes the connection as established.
        status |= CON_ESTABLISHED
        st[STATE, f] = TCPS_ESTABLISHED
    elif ackf and (status & CON_ESTABLISHED) == 0:
        if status & SAW_SYN_SENT:
            if st[SYNACK_TS, f] > 0 and st[ACKDAT, f] == 0:
                st[ACKDAT, f] = ts - st[SYNACK_TS, f]
        status |= CON_ESTABLISHED
        st[STATE, f] = TCPS_ESTABLISHED
    if flags & TH_RST:
        status |= RESET << d
    elif not syn and plen > 0 and not first_in_dir and not seq_after(end, st[SEQ + o, f]):
        # Data that ends at or before what this direction already sent: a retransmission.
        st[RETRANS + o, f] += 1
        status |= PKTS_RETRANS << d
    if seq_after(end, st[SEQ + o, f]) or first_in_dir:
        st[SEQ + o, f] = end
    if flags & TH_FIN:
        status |= FIN
        st[FIN_SEQ + d, f] = end
        if st[STATE, f] < TCPS_FIN_WAIT_1:
            st[STATE, f] = TCPS_FIN_WAIT_1
    if ackf:
        st[ACK + o, f] = ack
        fin_other = st[FIN_SEQ + (1 - d), f]
        if fin_other != 0 and not seq_after(fin_other, ack):
            status |= FIN_ACK
            if st[FIN_SEQ + d, f] != 0:
                status |= NORMAL_CLOSE
                st[STATE, f] = TCPS_TIME_WAIT
    if win == 0 and not syn and (flags & TH_RST) == 0:
        status |= WINDOW_SHUT << d
    if (flags & TH_RST) == 0:  # a reset's window is not an advertisement (samples: ipv6.pcap)
        st[WIN + o, f] = win
    st[BYTES + o, f] += plen
    st[LAST + o, f] = ts
    st[STATUS, f] = status
    _ = other
