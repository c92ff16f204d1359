"""The columnar schema of a batch of decoded Argus records.

A batch is a `polars.DataFrame` with exactly these columns, in this order, one row per record
(flow records *and* management records: MARs are rows too, never dropped).

Design rules
------------
* Values are stored as decoded from the DSRs after the reader's normalisation (the flow key's
  REVERSE bit undone, time forms turned into four timestamps, metric widths widened to u64), but
  otherwise *raw*: what ra derives for printing (state, dir, flags, rates ...) is computed from
  these columns by the printer/filter, never stored.  Deriving is cheap and keeps one truth.
* A DSR that is absent leaves its columns at 0 (or empty); the `dsrs` bitmask says which DSRs
  were present (bit = `DSR_BITS[name]`).  No nulls: vectorised code stays simple and fast.
* Times are integer microseconds since the epoch (i64).
* Addresses are two u64 halves so that IPv4 (lo = address), IPv6 (hi, lo) and MAC (lo = 48 bits)
  share columns; `addr_type` (flow qualifier & 0x1F) says which.
* Variable-length DSR payloads (user data, labels, opaque network objects, MAR bytes) are Binary.

The field table (`records.fields`) maps user-visible Argus field names onto these columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

# Dtypes by their polars names: polars is imported when SCHEMA or COLUMNS is first used, not by
# this module (argus -r -w never needs it: its import is ~0.2 s of CPU and 33 MB).
U8, U16, U32, U64 = "UInt8", "UInt16", "UInt32", "UInt64"
I32, I64, F32, F64 = "Int32", "Int64", "Float32", "Float64"
BIN, STR = "Binary", "String"

# Bits of the `dsrs` column: which DSRs a record carried.
DSR_BITS: dict[str, int] = {
    "transport": 1 << 0,
    "flow": 1 << 1,
    "time": 1 << 2,
    "metric": 1 << 3,
    "psize": 1 << 4,
    "encaps": 1 << 5,
    "net": 1 << 6,
    "asn": 1 << 7,
    "icmpmap": 1 << 8,
    "vlan": 1 << 9,
    "mac": 1 << 10,
    "mpls": 1 << 11,
    "jitter": 1 << 12,
    "attr": 1 << 13,
    "suser": 1 << 14,
    "duser": 1 << 15,
    "behavior": 1 << 16,
    "agr": 1 << 17,
    "cor": 1 << 18,
    "cocode": 1 << 19,
    "label": 1 << 20,
}

# DSR type byte (bits 0-6) -> DSR name.  User data is split by subtype into suser/duser.
DSR_TYPES: dict[int, str] = {
    0x01: "transport",
    0x02: "flow",
    0x03: "time",
    0x10: "metric",
    0x12: "psize",
    0x20: "encaps",
    0x30: "net",
    0x32: "asn",
    0x34: "icmpmap",
    0x40: "vlan",
    0x42: "mac",
    0x44: "mpls",
    0x46: "jitter",
    0x48: "attr",
    0x50: "user",
    0x54: "behavior",
    0x60: "agr",
    0x62: "cor",
    0x64: "cocode",
    0x66: "label",
}

# Record type (byte 0 & 0xF0).
RTYPE_FAR, RTYPE_NETFLOW, RTYPE_EVENT, RTYPE_MAR = 0x10, 0x30, 0x40, 0x80

# Causes (byte 1 & 0xF0).
CAUSE_START, CAUSE_STATUS, CAUSE_STOP, CAUSE_TIMEOUT = 0x10, 0x20, 0x30, 0x40
CAUSE_FLUSH, CAUSE_SHUTDOWN, CAUSE_CLOSED, CAUSE_ERROR = 0x50, 0x60, 0x70, 0x80

# Flow key address types (flow qualifier & 0x1F).
ADDR_IPV4, ADDR_IPV6, ADDR_ETHER, ADDR_ARP, ADDR_RARP = 0x01, 0x02, 0x03, 0x04, 0x05

# Network DSR subtypes.
NET_NONE, NET_TCP_INIT, NET_TCP_STATUS, NET_TCP_PERF = 0x00, 0x03, 0x04, 0x05
NET_ARP, NET_ICMP, NET_ESP, NET_FRAG = 0x10, 0x34, 0x38, 0x45
NET_RTP = 0x0A  # the RTP object (kept by ra when IPv4 with >= 5 packets one way)


def _tcp_direction(prefix: str) -> list[tuple[str, str, str]]:
    return [
        (f"{prefix}tcp_last", I64, "time of the last packet in this direction (us)"),
        (f"{prefix}tcp_status", U32, "TCP status bits for this direction"),
        (f"{prefix}tcp_seqbase", U32, "initial sequence number (ra stcpb/dtcpb)"),
        (f"{prefix}tcp_seq", U32, "highest/next sequence number"),
        (f"{prefix}tcp_ack", U32, "last acknowledgement number"),
        (f"{prefix}tcp_winnum", U32, "winnum"),
        (f"{prefix}tcp_bytes", U32, "TCP payload bytes"),
        (f"{prefix}tcp_retrans", U32, "retransmitted packets (ra sloss/dloss)"),
        (f"{prefix}tcp_ackbytes", U32, "ackbytes"),
        (f"{prefix}tcp_winbytes", U32, "winbytes"),
        (f"{prefix}tcp_win", U16, "last advertised window, unscaled"),
        (f"{prefix}tcp_flags", U8, "OR of TCP flags seen"),
        (f"{prefix}tcp_winshift", U8, "window scale shift"),
    ]


def _jitter_block(prefix: str) -> list[tuple[str, str, str]]:
    return [
        (f"{prefix}_n", I32, "number of intervals"),
        (f"{prefix}_min", F32, "minimum (us)"),
        (f"{prefix}_mean", F32, "mean (us)"),
        (f"{prefix}_stdev", F32, "standard deviation (us)"),
        (f"{prefix}_max", F32, "maximum (us)"),
    ]


# (column, dtype name, meaning) in schema order.
_COLUMNS: list[tuple[str, str, str]] = [
    # record header
    ("offset", U64, "byte offset of the record in its file or stream"),
    ("rtype", U8, "record type: byte 0 & 0xF0 (0x10 FAR, 0x30 NetFlow FAR, 0x40 event, 0x80 MAR)"),
    ("cause", U8, "byte 1 of the header: cause (high nibble) and option (low nibble)"),
    ("dsrs", U32, "bitmask of the DSRs present (DSR_BITS)"),
    ("unknown_dsrs", U8, "DSRs of an unknown type that were skipped"),
    # transport DSR
    ("srcid", U32, "probe source id, 4 bytes read big-endian (strings: natural byte order)"),
    ("srcid_type", U8, "transport qualifier: 0 none, 1 IPv4, 0x20 int, 0x21 string"),
    ("seq", U32, "transport sequence number"),
    # flow key DSR
    ("flow_subtype", U8, "flow DSR subtype; the REVERSE bit (0x40) is cleared once undone (IP keys)"),
    ("flow_qual", U8, "flow DSR qualifier (addr type | 0x20 DIRECTION | 0x40 MASKLEN | 0x80 FRAG)"),
    ("saddr_hi", U64, "source address, high 64 bits (IPv6 only)"),
    ("saddr_lo", U64, "source address, low 64 bits (IPv4 address, IPv6 low half, MAC, ARP spa)"),
    ("daddr_hi", U64, "destination address, high 64 bits"),
    ("daddr_lo", U64, "destination address, low 64 bits"),
    ("proto", U16, "IP protocol; ether type for Ethernet keys; 0 for LAYER_3_MATRIX"),
    ("tp_p", U8, "IPv4 key byte 13 (ICMP: quoted protocol or TOS)"),
    ("sport", U16, "key bytes 14-15 read BE (ICMP: type<<8|code; ICMPv6: type<<8|code; ether: ssap)"),
    ("dport", U16, "key bytes 16-17 read BE (ICMP: id as ra reads it; ether: dsap)"),
    ("smask", U16, "IPv4: key byte 18 (mask or DNS txid byte); IPv6: LE u16 at 44"),
    ("dmask", U16, "IPv4: key byte 19; IPv6: LE u16 at 46"),
    ("flowlabel", U32, "IPv6 flow label (20 bits)"),
    ("arp_hrd", U16, "ARP hardware type"),
    ("arp_pro", U16, "ARP protocol type"),
    ("arp_hln", U8, "ARP hardware address length"),
    ("arp_pln", U8, "ARP protocol address length"),
    ("arp_op", U16, "ARP opcode"),
    ("arp_sha", U64, "ARP sender hardware address (as many bytes as the DSR holds)"),
    ("flow_raw", BIN, "flow DSR payload for keys we do not decode (layer-2, MPLS, VLAN, ISIS ...)"),
    # time DSR
    ("time_subtype", U8, "time DSR subtype as stored"),
    ("time_qual", U8, "time DSR qualifier (0x18 usec UTC, 0x19 nsec; bit 0x01 = adjusted)"),
    ("sstart", I64, "source start time (us); argus default form: the flow start"),
    ("slast", I64, "source last time (us); argus default form: the flow last time"),
    ("dstart", I64, "destination start time (us)"),
    ("dlast", I64, "destination last time (us)"),
    # metric DSR
    ("metric_subtype", U8, "1 packets+bytes, 4 with application bytes"),
    ("spkts", U64, "source packets"),
    ("sbytes", U64, "source bytes"),
    ("sappbytes", U64, "source application bytes"),
    ("dpkts", U64, "destination packets"),
    ("dbytes", U64, "destination bytes"),
    ("dappbytes", U64, "destination application bytes"),
    # packet size DSR
    ("psize_subtype", U8, "packet size subtype (argus 0; client writers 0x04|0x01|0x02)"),
    ("psize_qual", U8, "packet size qualifier (metric codes: 2 both, 6 src, 10 dst)"),
    ("smaxsz", U16, "largest source packet"),
    ("sminsz", U16, "smallest source packet"),
    ("dmaxsz", U16, "largest destination packet"),
    ("dminsz", U16, "smallest destination packet"),
    ("spktsz_hist", U32, "source size histogram, 8 nibbles"),
    ("dpktsz_hist", U32, "destination size histogram, 8 nibbles"),
    # encapsulation DSR
    ("sencaps", U32, "encapsulations in src->dst packets"),
    ("dencaps", U32, "encapsulations in dst->src packets"),
    # network DSR
    ("net_subtype", U8, "network DSR subtype (0x05 TCP_PERF, 0x03 TCP_INIT, 0x34 ICMP, ...)"),
    ("tcp_status", U32, "TCP (or ESP) status bits, whole connection"),
    ("tcp_state", U32, "TCP state machine value"),
    ("tcp_options", U32, "TCP options word"),
    ("tcp_synack", U32, "us between SYN and SYN-ACK"),
    ("tcp_ackdat", U32, "us between SYN-ACK and ACK"),
    *_tcp_direction("s"),
    *_tcp_direction("d"),
    ("esp_spi", U32, "ESP SPI"),
    ("esp_lastseq", U32, "ESP last sequence number"),
    ("esp_lostseq", U32, "ESP lost sequence count"),
    ("net_raw", BIN, "network DSR payload for opaque objects (ICMP, ARP responder, RTP ...)"),
    ("net_qual", U8, "network DSR qualifier byte (kept for the RTP object, which ra -w copies)"),
    # ICMP-mapped DSR
    ("icmpmap_qual", U8, "1 unreachable, 2 redirect, 4 time exceeded"),
    ("icmpmap_type", U8, "ICMP type"),
    ("icmpmap_code", U8, "ICMP code"),
    ("icmpmap_iseq", U16, "iseq"),
    ("icmpmap_osrc", U32, "ICMP sender (ra inode)"),
    ("icmpmap_odst", U32, "destination of the ICMP packet"),
    ("icmpmap_isrc", U32, "quoted source address"),
    ("icmpmap_idst", U32, "quoted destination address"),
    ("icmpmap_gw", U32, "gateway (redirects)"),
    # VLAN DSR
    ("vlan_qual", U8, "1 src tag valid, 2 dst tag valid"),
    ("svlan", U16, "src->dst 802.1Q TCI"),
    ("dvlan", U16, "dst->src 802.1Q TCI"),
    # MAC DSR
    ("mac_qual", U8, "1 source MAC changed, 2 destination MAC changed"),
    ("smac", U64, "source MAC (48 bits)"),
    ("dmac", U64, "destination MAC (48 bits)"),
    ("mac_etype", U16, "ether type (stored LE on disk)"),
    ("mac_dsap", U8, "dsap"),
    ("mac_ssap", U8, "ssap"),
    # MPLS DSR
    ("mpls_subtype", U8, "1 src label, 2 dst label"),
    ("mpls_qual", U8, "src entries << 4 | dst entries"),
    ("smpls", U32, "first source label stack entry (label << 12 | TC << 9 | S << 8 | TTL)"),
    ("dmpls", U32, "first destination label stack entry"),
    # jitter DSR
    ("jit_subtype", U8, "jitter subtype (histogram forms)"),
    ("jit_qual", U8, "blocks present: 1 src active, 2 src idle, 4 dst active, 8 dst idle"),
    *_jitter_block("sjit_act"),
    *_jitter_block("sjit_idl"),
    *_jitter_block("djit_act"),
    *_jitter_block("djit_idl"),
    # IP attribute DSR
    ("attr_qual", U8, "1 src, 2 dst, 4 src options, 8 dst options, 0x10/0x20 fragments"),
    ("sttl", U8, "source TTL"),
    ("stos", U8, "source TOS"),
    ("sipid", U16, "source IP id as stored"),
    ("sipopts", U32, "source IP options bitmap"),
    ("dttl", U8, "destination TTL"),
    ("dtos", U8, "destination TOS"),
    ("dipid", U16, "destination IP id as stored"),
    ("dipopts", U32, "destination IP options bitmap"),
    # user data DSRs
    ("suser_size", U16, "configured capture length, source"),
    ("suser", BIN, "source user data bytes"),
    ("duser_size", U16, "configured capture length, destination"),
    ("duser", BIN, "destination user data bytes"),
    # behavior DSR
    ("behavior_subtype", U8, "1 TCP keystrokes, 2 SSH keystrokes"),
    ("snstroke", I32, "source keystrokes"),
    ("dnstroke", I32, "destination keystrokes"),
    # aggregation DSR
    ("agr_subtype", U8, "aggregated metric (4 = duration)"),
    ("agr_qual", U8, "aggregation qualifier"),
    ("agr_count", U32, "records merged (ra trans); 0 when absent (ra shows 1)"),
    *_jitter_block("agr_act"),
    # ASN, correlation, country code, label DSRs
    ("sas", U32, "source AS"),
    ("das", U32, "destination AS"),
    ("ias", U32, "intermediate-node AS"),
    ("cor_raw", BIN, "correlation DSR payload (6-word entries)"),
    ("sco", STR, "source country code"),
    ("dco", STR, "destination country code"),
    ("label", STR, "label DSR text"),
    # management record
    ("mar_raw", BIN, "the whole MAR as read (128 bytes, or 4 for an error MAR); empty for flows"),
]

COLUMN_DOCS: dict[str, str] = {name: doc for name, _, doc in _COLUMNS}
# numpy dtype of each column as DataFrame.to_numpy() gives it (Binary/String: object), for
# batches built without polars (records.writer.Columns).
_NUMPY = {U8: "u1", U16: "u2", U32: "u4", U64: "u8", I32: "i4", I64: "i8", F32: "f4",
          F64: "f8", BIN: "O", STR: "O"}
NUMPY_DTYPES: dict[str, str] = {name: _NUMPY[dtype] for name, dtype, _ in _COLUMNS}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - SCHEMA and COLUMNS, built on first use
    """SCHEMA (column -> polars dtype) and COLUMNS (column, polars dtype, meaning)."""
    if name not in ("SCHEMA", "COLUMNS"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import polars as pl

    columns = [(column, getattr(pl, dtype), doc) for column, dtype, doc in _COLUMNS]
    globals()["COLUMNS"] = columns
    globals()["SCHEMA"] = {column: dtype for column, dtype, _ in columns}
    return globals()[name]


def empty_batch() -> pl.DataFrame:
    """A batch with no rows and the full schema."""
    import polars as pl

    return pl.DataFrame(schema=__getattr__("SCHEMA"))
