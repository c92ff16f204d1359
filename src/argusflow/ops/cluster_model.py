"""racluster's aggregation model and the layout of its merging columns, without polars.

What `-m` keys on (Model, parse_model) and which columns the merge kernel of ops.cluster reads
and writes (MERGED, their state widths, the pairs a reversal swaps): shared by the polars
aggregator (ops.cluster) and the numpy one (ops.cluster_columns), which `racluster -w` runs
without importing polars.  The kernel compiles these constants in: this module is one of
aot.SOURCES.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass

import numpy as np

from argusflow.errors import UsageError
from argusflow.records.schema import NUMPY_DTYPES

# --- the aggregation model (-m keys) ------------------------------------------------------------

# -m words racluster 3.0.8 accepts, and the record columns each one keys on.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "srcid": ("srcid",),
    "smac": ("smac",), "dmac": ("dmac",),
    "soui": ("_soui",), "doui": ("_doui",),
    "smpls": ("smpls",), "dmpls": ("dmpls",),
    "svlan": ("svlan",), "dvlan": ("dvlan",),
    "saddr": ("saddr_hi", "saddr_lo"), "daddr": ("daddr_hi", "daddr_lo"),
    "proto": ("proto",),
    "sport": ("proto", "sport"), "dport": ("proto", "dport"),
    "stos": ("stos",), "dtos": ("dtos",), "sttl": ("sttl",), "dttl": ("dttl",),
    "stcpb": ("stcp_seqbase",), "dtcpb": ("dtcp_seqbase",),
    "inode": ("icmpmap_osrc",),
    "sco": ("sco",), "dco": ("dco",), "sas": ("sas",), "das": ("das",), "ias": ("ias",),
    "none": (),
}
FLOW_KEY_COLUMNS = {"saddr_hi", "saddr_lo", "daddr_hi", "daddr_lo", "proto", "sport", "dport"}
# The default model: the flow key and the probe (racluster's 5-tuple + srcid).
DEFAULT_KEYS = ("srcid", "proto", "saddr", "sport", "daddr", "dport")
# Words of -m that also name a sort algorithm: racluster sorts its output by them (in order).
SORT_KEYS = ("smac", "dmac", "saddr", "daddr", "proto", "sport", "dport", "stos", "dtos",
             "sttl", "dttl", "smpls", "dmpls", "svlan", "dvlan", "srcid", "stcpb", "dtcpb",
             "sco", "dco", "sas", "das")

_PREFIX = re.compile(r"^(saddr|daddr|matrix|inode)(?:/(\d+|\d+\.\d+\.\d+\.\d+))?$")


@dataclass
class Model:
    """One aggregation model: the key words of `-m` (or `model=`) and their prefix lengths."""

    words: tuple[str, ...] = DEFAULT_KEYS
    smask: int | None = None   # saddr/N (None = whole address)
    dmask: int | None = None
    imask: int | None = None
    matrix: bool = False
    default: bool = True
    preserve: bool = True      # False: flow key fields outside the model are cleared first

    @property
    def columns(self) -> list[str]:
        out: list[str] = []
        for word in self.words:
            for col in KEY_COLUMNS[word]:
                if col not in out:
                    out.append(col)
        return out

    sort_keys: tuple[str, ...] = ()  # the -m words that are also sort algorithms

    @property
    def sort_words(self) -> list[str]:
        return list(self.sort_keys)


def _prefix_len(text: str, word: str) -> int:
    if "." in text:
        value = 0
        for part in text.split("."):
            value = value << 8 | int(part)
        return bin(value).count("1")
    length = int(text)
    if not 0 <= length <= 128:
        raise UsageError(f"-m {word}/{text}: prefix length out of range")
    return length


def parse_model(words: list[str]) -> Model:
    """`-m saddr/24 daddr proto` -> Model; unknown words are a usage error."""
    if not words:
        return Model()
    keys: list[str] = []
    model = Model(default=False)
    for word in words:
        for part in word.replace(",", " ").split():
            m = _PREFIX.match(part)
            if m:
                name, length = m.group(1), m.group(2)
                plen = _prefix_len(length, name) if length else None
                if name == "matrix":
                    model.matrix = True
                    keys += ["saddr", "daddr"]
                    model.smask = model.dmask = plen
                elif name == "inode":
                    keys.append("inode")
                    model.imask = plen
                else:
                    keys.append(name)
                    setattr(model, "smask" if name == "saddr" else "dmask", plen)
            elif part in KEY_COLUMNS:
                keys.append(part)
            else:
                raise UsageError(f"-m {part}: unknown aggregation key; see 'man racluster'")
    model.words = tuple(dict.fromkeys(keys))
    model.sort_keys = tuple(w for w in words if w.split("/")[0] in SORT_KEYS)
    return model



# --- merging columns ----------------------------------------------------------------------------

TCP_DIR = ("last", "status", "seqbase", "seq", "ack", "winnum", "bytes", "retrans", "ackbytes",
            "winbytes", "win", "flags", "winshift")

# Columns the kernel reads and writes, as u64 (the rest keep the group's first record's values).
MERGED: tuple[str, ...] = (
    "dsrs", "srcid", "srcid_type", "flow_subtype", "flow_qual",
    "saddr_hi", "saddr_lo", "daddr_hi", "daddr_lo", "proto", "sport", "dport", "smask", "dmask",
    "sstart", "slast", "dstart", "dlast",
    "spkts", "sbytes", "sappbytes", "dpkts", "dbytes", "dappbytes",
    "psize_qual", "smaxsz", "sminsz", "dmaxsz", "dminsz", "spktsz_hist", "dpktsz_hist",
    "sencaps", "dencaps",
    "net_subtype", "tcp_status", "tcp_state", "tcp_options", "tcp_synack", "tcp_ackdat",
    *[f"stcp_{k}" for k in TCP_DIR], *[f"dtcp_{k}" for k in TCP_DIR],
    "esp_spi", "esp_lastseq", "esp_lostseq",
    "icmpmap_qual", "icmpmap_type", "icmpmap_code", "icmpmap_iseq", "icmpmap_osrc",
    "icmpmap_odst", "icmpmap_isrc", "icmpmap_idst", "icmpmap_gw",
    "vlan_qual", "svlan", "dvlan", "mac_qual", "smac", "dmac", "mac_etype",
    "mpls_subtype", "smpls", "dmpls", "jit_qual", "sjit_act_n", "sjit_idl_n", "djit_act_n",
    "djit_idl_n",
    "attr_qual", "sttl", "stos", "sipid", "sipopts", "dttl", "dtos", "dipid", "dipopts",
    "suser_size", "duser_size", "snstroke", "dnstroke", "sas", "das",
)
IX = {name: i for i, name in enumerate(MERGED)}
NCOLS = len(MERGED)


def _width(name: str) -> int:
    """Bytes a merging column keeps per group: its own unsigned width.  Signed 32-bit columns
    stay 64-bit, as the kernel holds them (sign-extended); 64-bit ones keep every bit."""
    return {"u1": 1, "u2": 2, "u4": 4}.get(NUMPY_DTYPES[name], 8)


# The merging columns of each width: a group's state row is kept in four narrow matrices
# (423 bytes instead of 856 as one u64 row) and widened to u64 only while it merges.
WIDTHS = {w: np.array([IX[n] for n in MERGED if _width(n) == w], dtype=np.int64)
          for w in (8, 4, 2, 1)}
W64, W32, W16, W8 = WIDTHS[8], WIDTHS[4], WIDTHS[2], WIDTHS[1]
STATE_DTYPES = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}

# What a reversal (ArgusReverseRecord) swaps: records.derive's _SWAP_PAIRS and _SWAP_BITS
# (derive builds polars expressions, so it is not imported here; tests/test_cluster_columns.py
# checks that the two lists agree).
REVERSED_PAIRS: tuple[tuple[str, str], ...] = (
    ("saddr_hi", "daddr_hi"), ("saddr_lo", "daddr_lo"), ("sport", "dport"), ("smask", "dmask"),
    ("sstart", "dstart"), ("slast", "dlast"), ("spkts", "dpkts"), ("sbytes", "dbytes"),
    ("sappbytes", "dappbytes"), ("smaxsz", "dmaxsz"), ("sminsz", "dminsz"),
    ("spktsz_hist", "dpktsz_hist"), ("sencaps", "dencaps"),
    *[(f"stcp_{k}", f"dtcp_{k}") for k in TCP_DIR],
    *[(f"sjit_{b}_{k}", f"djit_{b}_{k}")
      for b in ("act", "idl") for k in ("n", "min", "mean", "stdev", "max")],
    ("svlan", "dvlan"), ("smac", "dmac"), ("smpls", "dmpls"), ("sttl", "dttl"), ("stos", "dtos"),
    ("sipid", "dipid"), ("sipopts", "dipopts"), ("suser_size", "duser_size"), ("suser", "duser"),
    ("snstroke", "dnstroke"), ("sas", "das"), ("sco", "dco"),
)
REVERSED_BITS: dict[str, tuple[tuple[int, int], ...]] = {
    "attr_qual": ((0x01, 0x02), (0x04, 0x08), (0x10, 0x20)),
    "vlan_qual": ((0x01, 0x02),),
    "mac_qual": ((0x01, 0x02),),
    "jit_qual": ((0x01, 0x04), (0x02, 0x08)),
    "mpls_subtype": ((0x01, 0x02),),
}

# The pairs as the kernel swaps them (merging columns), the others (swapped in the first
# record's columns when a group is turned round), and qualifier bits that swap with them.
SWAP_PAIRS = np.array([(IX[a], IX[b]) for a, b in REVERSED_PAIRS if a in IX and b in IX],
                      dtype=np.int64)
OTHER_PAIRS = [(a, b) for a, b in REVERSED_PAIRS if a not in IX]
SWAP_BITS = np.array([(IX[col], a, b) for col, pairs in REVERSED_BITS.items()
                      for a, b in pairs], dtype=np.int64)

# Aggregation statistics per group: float32 min, mean, stdev, max (racluster keeps C floats).
A_MIN, A_MEAN, A_STDEV, A_MAX = range(4)
AGR_STATS = ("agr_act_min", "agr_act_mean", "agr_act_stdev", "agr_act_max")

SLICE_ROWS = 4096  # rows of the merging-column matrix built at once (3.5 MB)
BLOCK = 64  # records the merge kernel turns row-major at once (its scratch block's rows)
# Groups the per-group arrays are first reserved for (about 30 MB of address space, mapped in
# only as groups are written), then doubled.
RESERVED_GROUPS = 1 << 16


def reserved(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """Zeros in a private anonymous mapping: the kernel maps a page in when it is first
    written, so capacity that is never used costs no memory (np.zeros may take small arrays
    from the heap and clear them)."""
    size = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def to_u64(arrays: list[np.ndarray], lo: int, hi: int) -> np.ndarray:
    """Rows lo..hi of the merging columns as one u64 matrix, column-major (one row per
    column).  Signed values keep their bits (int64) or are sign-extended (int32), as C casts."""
    cols = np.empty((NCOLS, hi - lo), dtype=np.uint64)
    for j, values in enumerate(arrays):
        cols[j] = values[lo:hi]
    return cols
