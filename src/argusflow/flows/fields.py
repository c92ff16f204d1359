"""Row layouts of the flow engine's state arrays: one name per row, the index is the position.

The engine keeps all flow state in 2-D int64 arrays (row = field, column = flow slot), so the
compiled kernel takes a handful of arrays and the Python side can grow them with one copy.
Numba reads the module-level constants below as compile-time integers.
"""

from __future__ import annotations

# Per-packet matrix built from a decoded batch (rows of `P`).
PACKET_FIELDS = (
    "ts", "len", "kind", "rev", "frag", "proto", "tflags", "tseq", "tack", "twin", "topts",
    "twscale", "plen", "ttl", "tos", "ipid", "enc", "vlanc", "vlan", "mplsc", "mpls", "smac",
    "dmac", "ipopts", "mf", "icmp_err", "ip_ver", "src_lo", "dst_lo", "itype",
    "icode", "frev", "rtp", "reply",
)

# Flow state (rows of `F`): flow-level first, then the open record's accumulators, then TCP.
FLOW_FIELDS = (
    # flow
    "used", "rev", "seq", "first_ts", "last_ts", "timeout", "nrec", "kind", "proto", "dirq",
    "rtp",
    # the open record (reset after each report)
    "r_start", "spk", "dpk", "sby", "dby", "sapp", "dapp", "sfirst", "slast", "dfirst", "dlast",
    "sttl", "dttl", "stos", "dtos", "sipid", "dipid", "senc", "denc", "vlanq", "svlan", "dvlan",
    "mplsq", "smpls", "dmpls", "smac", "dmac", "macq", "smin", "smax", "dmin", "dmax",
    "sfrag", "dfrag", "sopts", "dopts", "attrq",
    "imap_qual", "imap_type", "imap_code", "imap_osrc", "imap_odst", "imap_isrc", "imap_idst",
    "imap_gw", "imap_ts",
    # TCP, cumulative over the flow
    "t_status", "t_state", "t_opts", "t_synack", "t_ackdat", "t_syn_ts", "t_synack_ts",
    "t_s_seqbase", "t_s_seq", "t_s_ack", "t_s_win", "t_s_flags", "t_s_bytes", "t_s_retrans",
    "t_s_wscale", "t_s_last", "t_s_status", "t_s_seen",
    "t_d_seqbase", "t_d_seq", "t_d_ack", "t_d_win", "t_d_flags", "t_d_bytes", "t_d_retrans",
    "t_d_wscale", "t_d_last", "t_d_status", "t_d_seen",
    "t_fin_seq_s", "t_fin_seq_d",
    # output only: filled when a record is emitted
    "o_cause", "o_slot",
)

P = {name: i for i, name in enumerate(PACKET_FIELDS)}
F = {name: i for i, name in enumerate(FLOW_FIELDS)}
N_PACKET_FIELDS = len(PACKET_FIELDS)
N_FLOW_FIELDS = len(FLOW_FIELDS)

# The first record-level field and the first field after them: reset together after a report.
RECORD_FIRST = F["r_start"]
RECORD_END = F["t_status"]


def _check_cache() -> None:
    """Compiled kernels call each other (kernel.run inlines tcp.tcp_update): a cached kernel
    is stale when the layout or any compiled module changed, not only its own file."""
    import os

    from argusflow.flows.jit import drop_stale_cache

    here = os.path.dirname(__file__)
    sources = []
    for name in ("kernel.py", "tcp.py", "keys.py", "fastkeys.py", "jit.py"):
        try:
            with open(os.path.join(here, name), "rb") as f:
                sources.append(f.read().hex())
        except OSError:
            sources.append(name)
    drop_stale_cache(here, repr((PACKET_FIELDS, FLOW_FIELDS)) + "".join(sources))


_check_cache()
