"""racluster's aggregation over numpy columns, without polars: the `racluster -w` path.

Pipeline position: decoded record columns in (records.dsr_decode's numpy arrays, every record of
a chunk), merged records out as a records.writer `Columns` batch for the Argus writer.

It is ops.cluster's aggregator for the models whose preparation is plain numpy: the default
flow key (with direction correction) and `-m` keys on numeric columns without prefix lengths,
matrix or rmon (`supports`).  The merge itself is the same compiled kernel (ops.cluster
merge_batch) over the same state layout (ops.cluster_model), so both aggregators give the same
records; tests/test_cluster_columns.py checks that they write the same bytes.  Polars costs
racluster ~0.25 s to import and ~0.1 s a run to build its batches: on the bench's large file
(345k records) a fifth of its time.

Group ids: every key row is hashed (a few multiply-xorshift rounds per column) and looked up in
a sorted array of the known hashes; every batch is checked against the key rows themselves, and
should two keys share a hash, the ids of that batch and all later ones are found by sorting the
key rows (exact, slower).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from argusflow.ops import cluster_aot
from argusflow.ops.cluster_model import (
    AGR_STATS,
    BLOCK,
    FLOW_KEY_COLUMNS,
    IX,
    MERGED,
    NCOLS,
    OTHER_PAIRS,
    RESERVED_GROUPS,
    SORT_KEYS,
    Model,
    reserved,
)
from argusflow.ops.cluster_state import GroupState
from argusflow.ops.hashed_ids import HashedIds, numbered
from argusflow.records.naming import IPPROTO_ESP, IPPROTO_ICMP
from argusflow.records.schema import (
    ADDR_ETHER,
    ADDR_IPV4,
    ADDR_IPV6,
    DSR_BITS,
    NUMPY_DTYPES,
    RTYPE_FAR,
    RTYPE_NETFLOW,
)
from argusflow.records.writer import Batch as WriterBatch
from argusflow.records.writer import Bytes, Columns, client_times

Cols = Mapping[str, np.ndarray]

# Key columns that hold text: their models go the polars way.
TEXT_KEYS = {"sco", "dco"}
TEXT_COLUMNS = {"sco", "dco", "label"}  # str values in the decoded columns (others: bytes)
# An ICMP request's reverse is its reply: type -> reply type (-1: none).
INFO_PAIRS = {8: 0, 0: 8, 9: 10, 10: 9, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
INFO_TABLE = np.full(256, -1, dtype=np.int64)
INFO_TABLE[list(INFO_PAIRS)] = list(INFO_PAIRS.values())
U64 = np.uint64


def supports(model: Model, rmon: bool) -> bool:
    """Whether this aggregator takes `model` (else ops.cluster's polars one does)."""
    return (not rmon and not model.matrix and model.smask is None and model.dmask is None
            and model.imask is None and (model.default or model.preserve)
            and not TEXT_KEYS & set(model.words))


def column(cols: Cols, name: str, n: int) -> np.ndarray:
    """A column of the batch; zeros when no record's DSRs carried it."""
    values = cols.get(name)
    return np.zeros(n, dtype=NUMPY_DTYPES[name]) if values is None else values


# --- a batch's records as the model keys them ---------------------------------------------------

def corrected_key_columns(cols: Cols, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The default flow key with direction correction: (saddr_hi, saddr_lo, daddr_hi, daddr_lo,
    sport, dport) in the smaller of the record's two orientations, and whether that is the
    record's own (forward) one."""
    col = {name: column(cols, name, n) for name in (
        "flow_qual", "flow_subtype", "proto", "sport", "dport", "saddr_hi", "saddr_lo",
        "daddr_hi", "daddr_lo")}
    at = col["flow_qual"] & 0x1F
    proto, sport, dport = col["proto"], col["sport"].astype(np.int64), col["dport"]
    v4 = (at == ADDR_IPV4) & (col["flow_subtype"] != 3)
    icmp = v4 & (proto == IPPROTO_ICMP)
    # An ICMP request's reverse is its reply: the type byte of `sport` turns round.
    flipped = INFO_TABLE[(sport >> 8) & 0xFF]
    rsport = np.where(icmp, np.where(flipped >= 0, flipped * 256 + (sport & 0xFF), sport),
                      dport)
    rdport = np.where(icmp, dport, sport)
    fwd = (col["saddr_hi"], col["saddr_lo"], col["daddr_hi"], col["daddr_lo"], sport, dport)
    rev = (col["daddr_hi"], col["daddr_lo"], col["saddr_hi"], col["saddr_lo"], rsport, rdport)
    # The forward orientation is not greater than the reverse one (lexicographic); only IPv4
    # keys other than ESP are turned.
    le = np.ones(n, dtype=bool)
    for a, b in reversed(list(zip(fwd, rev, strict=True))):
        le = (a < b) | ((a == b) & le)
    forward = le | ~(v4 & (proto != IPPROTO_ESP))
    return [np.where(forward, a, b) for a, b in zip(fwd, rev, strict=True)], forward


def with_masks(cols: dict[str, np.ndarray], n: int) -> None:
    """Records read without MASKLEN have whole-address masks (ops.cluster apply_model).  ESP
    keys keep the SPI's low half where the masks would be: left as they are."""
    qual = column(cols, "flow_qual", n)
    at = qual & 0x1F
    given = ((qual & 0x40) != 0) | ((at == ADDR_IPV4) & (column(cols, "proto", n) == IPPROTO_ESP))
    full = np.where(at == ADDR_IPV6, 128, 32).astype(np.uint16)
    for name in ("smask", "dmask"):
        cols[name] = np.where(given, column(cols, name, n), full).astype(np.uint16)


def durations(cols: Cols, n: int) -> np.ndarray:
    """Each record's duration in seconds, from its start and last times as ra takes them
    (records.derive stime_us and ltime_us)."""
    ss, sl = column(cols, "sstart", n), column(cols, "slast", n)
    ds, dl = column(cols, "dstart", n), column(cols, "dlast", n)
    start = np.where(ss == 0, ds, np.where(ds == 0, ss, np.minimum(ss, ds)))
    sub = column(cols, "time_subtype", n)
    dirs = (sub & 0x78) != 0
    s_end = np.where(~dirs | ((sub & 0x10) != 0), sl, 0)
    d_end = np.where(~dirs | ((sub & 0x40) != 0), dl, 0)
    ends = np.maximum(s_end, d_end)
    last = np.where(ends != 0, ends, np.maximum(ss, ds))
    return (last - start).astype(np.float64) / 1e6


def client_form_times(cols: dict[str, np.ndarray], n: int) -> None:
    """The four timestamps as the real client holds them after reading (ops.cluster's
    client_form_times, which says why)."""
    times = client_times(WriterBatch(Columns(cols, n)), np.arange(n))
    gone = ((column(cols, "spkts", n) == 0) & (column(cols, "dpkts", n) > 0)
            & (column(cols, "dstart", n) == 0) & (column(cols, "sstart", n) > 0))
    if gone.any():
        times[0] = np.where(gone, 0, times[0])
        times[1] = np.where(gone, 0, times[1])
    for name, values in zip(("sstart", "slast", "dstart", "dlast"), times, strict=True):
        cols[name] = values.astype(np.int64)


# --- group ids ---------------------------------------------------------------------------------

def hash_rows(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each key row (a (n, k) u64 matrix): splitmix64's mixing per column."""
    h = np.full(keys.shape[0], 0x9E3779B97F4A7C15, dtype=U64)
    for j in range(keys.shape[1]):
        h = (h ^ keys[:, j]) * U64(0xBF58476D1CE4E5B9)
        h ^= h >> U64(31)
        h *= U64(0x94D049BB133111EB)
        h ^= h >> U64(29)
    return h


@dataclass
class RowKeys(HashedIds):
    """The keys seen so far (u64 rows): their hashes (ops.hashed_ids), and the rows by id."""

    _table: np.ndarray | None = None

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        return hash_rows(keys)

    def _keep(self, keys: np.ndarray, gid: np.ndarray, fresh: np.ndarray) -> bool:
        self._store(keys[fresh])
        return np.array_equal(self._table[gid], keys)  # type: ignore[index]

    def _exact(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ids: the known rows and the batch's sorted together as whole rows."""
        known = self._table[:self.count] if self._table is not None else keys[:0]
        both = np.ascontiguousarray(np.concatenate([known, keys]))
        rows = both.view(np.dtype((np.void, both.dtype.itemsize * both.shape[1]))).ravel()
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        first_of_row = first[inverse.reshape(-1)][self.count:]
        old = first_of_row < self.count
        gid = np.where(old, first_of_row, -1)
        fresh = np.zeros(len(keys), dtype=bool)
        new = np.flatnonzero(~old)
        if len(new):
            starts, inv = np.unique(first_of_row[new], return_inverse=True)
            gid[new], firsts = numbered(starts, inv.reshape(-1), self.count)
            fresh[firsts - self.count] = True
        self._store(keys[fresh])
        self.count += int(fresh.sum())
        return gid, fresh

    def _store(self, new: np.ndarray) -> None:
        """Key rows of new ids, at rows count ... of the table (reserved, doubled as needed)."""
        have = 0 if self._table is None else len(self._table)
        need = self.count + len(new)
        if self._table is None or need > have:
            table = reserved((max(need, 2 * have, RESERVED_GROUPS), new.shape[1]), U64)
            if self._table is not None:
                table[:self.count] = self._table[:self.count]
            self._table = table
        self._table[self.count:need] = new


@dataclass
class ByteCodes:
    """A number for each distinct byte string of a key column (0: empty), kept across batches:
    the key rows are numbers.  A Python step per distinct value, none per record."""

    codes: dict[bytes, int] = field(default_factory=dict)

    def of(self, values: np.ndarray | None, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=U64)
        if values is None:
            return out
        rows = np.flatnonzero(values != b"")
        if len(rows):
            uniq, inverse = np.unique(values[rows], return_inverse=True)
            ids = [self.codes.setdefault(bytes(v), len(self.codes) + 1) for v in uniq]
            out[rows] = np.array(ids, dtype=U64)[inverse.reshape(-1)]
        return out


# --- the aggregator -----------------------------------------------------------------------------

def merge_kernel() -> Callable[..., Any]:
    """ops.cluster's merge_batch compiled ahead of time; without the extension, numba's JIT of
    it (which imports ops.cluster, and polars with it)."""
    kernel = cluster_aot.merge_batch() if cluster_aot.READY else None
    if kernel is None:
        from argusflow.ops.cluster import _kernel

        kernel = _kernel()
    return kernel


@dataclass
class ColumnClusterer:
    """ops.cluster.Clusterer for numpy columns (the models `supports` takes): `add` each chunk's
    decoded columns, then `result()` gives the merged records as a writer `Columns` batch."""

    model: Model = field(default_factory=Model)
    correct: bool = True
    report: bool = True          # False: -M norep, no aggregation statistics
    sort: bool = True
    groups: int = 0
    seen: int = 0
    _keys: RowKeys = field(default_factory=RowKeys)
    _raw: ByteCodes = field(default_factory=ByteCodes)
    # Per group: the first record's columns that never merge (chunks in group order).
    _base: list[dict[str, np.ndarray | Bytes]] = field(default_factory=list)
    _groups: GroupState = field(default_factory=GroupState)

    def add(self, cols: Cols, n: int) -> None:
        """Merge a chunk's records (every column decoded); MARs and events are not
        aggregated, nor LAYER_3_MATRIX keys when the model keys on addresses (as 3.0.8)."""
        rtype = column(cols, "rtype", n)
        keep = (rtype == RTYPE_FAR) | (rtype == RTYPE_NETFLOW)
        if self.model.default or {"saddr_lo", "daddr_lo"} & set(self.model.columns):
            keep &= (column(cols, "flow_subtype", n) & 0x3F) != 0x03
        batch = dict(cols)
        if not keep.all():
            batch = {name: values[keep] for name, values in cols.items()}
            n = int(keep.sum())
        if n == 0:
            return
        with_masks(batch, n)
        gid, fresh, fwd = self._group_ids(batch, n)
        self._groups.grow(self.groups)
        durs = durations(batch, n)
        client_form_times(batch, n)
        has_agr = (column(batch, "dsrs", n) & DSR_BITS["agr"]) != 0
        rcount = np.where(has_agr, column(batch, "agr_count", n), 0).astype(np.int64)
        rn = column(batch, "agr_act_n", n).astype(np.int64)
        rstats = np.ascontiguousarray(np.stack([column(batch, s, n) for s in AGR_STATS], axis=1),
                                      dtype=np.float32)
        new_rows = np.flatnonzero(fresh)
        if len(new_rows):
            self._keep_first(batch, new_rows)
            self._groups.start(gid, new_rows, fwd, durs, rcount, rn, rstats)
        seq = np.arange(self.seen, self.seen + n, dtype=np.int64)
        self.seen += n
        arrays = [column(batch, name, n) for name in MERGED]
        restart = np.full(n, -1, dtype=np.int64)  # racluster.conf timers: not on this path
        scratch = np.empty((BLOCK, NCOLS), dtype=U64), np.empty(NCOLS, dtype=U64)
        self._groups.merge(merge_kernel(), arrays, gid, fresh, seq, fwd, durs, rcount, rn, rstats,
                           restart, scratch)

    def _group_ids(self, batch: Cols, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys, fwd = self._key_rows(batch, n)
        gid, fresh = self._keys.number(keys)
        self.groups = self._keys.count
        return gid, fresh, fwd

    def _key_rows(self, batch: Cols, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The key of each record as a (n, k) u64 matrix (ops.cluster key_frame's columns),
        and its orientation within the key."""
        model = self.model
        at = column(batch, "flow_qual", n) & 0x1F
        kind = []
        if model.default or set(model.columns) & FLOW_KEY_COLUMNS:
            addresses = model.default or bool({"saddr_lo", "daddr_lo"} & set(model.columns))
            ip_kind = np.where((at == ADDR_IPV4) | (at == ADDR_IPV6), 0, at)
            kind = [column(batch, "flow_subtype", n) & 0x3F, at if addresses else ip_kind]
        forward = np.ones(n, dtype=bool)
        if self.correct and model.default:
            parts, forward = corrected_key_columns(batch, n)
            parts += [column(batch, x, n) for x in ("srcid", "proto", "arp_sha")]
            parts.append(self._raw.of(batch.get("flow_raw"), n))
        else:
            parts = [self._model_column(batch, name, n) for name in model.columns]
            if not parts and not kind:
                parts = [np.zeros(n, dtype=U64)]  # -m none: one group
        keys = np.empty((n, len(kind) + len(parts)), dtype=U64)
        for j, values in enumerate([*kind, *parts]):
            keys[:, j] = values  # signed values keep their bits, as distinct as before
        return keys, forward

    @staticmethod
    def _model_column(batch: Cols, name: str, n: int) -> np.ndarray:
        if name in ("_soui", "_doui"):
            return column(batch, f"{name[1]}mac", n) // (1 << 24)
        return column(batch, name, n)

    def _keep_first(self, batch: Cols, rows: np.ndarray) -> None:
        """New groups keep their first record's columns that never merge."""
        base: dict[str, np.ndarray | Bytes] = {}
        for name, values in batch.items():
            if name in IX or name == "mar_raw":
                continue
            base[name] = as_bytes(values[rows], name) if values.dtype == object else values[rows]
        self._base.append(base)

    def result(self) -> Columns:
        """The merged records in racluster's output order: by when each group was last
        updated, then sorted by the -m keys that are sort keys."""
        g = self.groups
        if g == 0:
            return Columns({}, 0)
        order = np.argsort(self._groups.last[:g], kind="stable")
        values, strings = self._bases(order)
        self._turn_round(values, strings, self._groups.flipped[:g][order])
        # signed columns from their sign-extended bits, i32 sums wrapped as C ints
        values.update((name, bits.astype(NUMPY_DTYPES[name]))
                      for name, bits in self._groups.take_merged(g, order))
        values.update(self._groups.agr_columns(g, order, values["dsrs"], self.report))
        out = Columns(values, g, strings)
        if self.sort and self.model.sort_keys:
            rows = sort_order(values, g, self.model)
            out = Columns({k: v[rows] for k, v in values.items()}, g,
                          {k: v.take(rows) for k, v in strings.items()})
        return out

    def _bases(self, order: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Bytes]]:
        """The never-merging columns of every group's first record, in `order`."""
        parts, self._base = self._base, []
        values: dict[str, np.ndarray] = {}
        strings: dict[str, Bytes] = {}
        for name in dict.fromkeys(k for part in parts for k in part):
            chunks = [part.get(name) for part in parts]
            if NUMPY_DTYPES[name] == "O":
                got = [c if c is not None else Bytes.empty(len(p["rtype"]))
                       for c, p in zip(chunks, parts, strict=True)]
                strings[name] = Bytes(np.concatenate([b.sizes for b in got]),
                                      np.concatenate([b.flat for b in got])).take(order)
            else:
                got = [c if c is not None else np.zeros(len(p["rtype"]), NUMPY_DTYPES[name])
                       for c, p in zip(chunks, parts, strict=True)]
                values[name] = np.concatenate(got)[order]
        return values, strings

    @staticmethod
    def _turn_round(values: dict[str, np.ndarray], strings: dict[str, Bytes],
                    flipped: np.ndarray) -> None:
        """Groups the kernel turned round: their first record's reversible columns too."""
        if not flipped.any():
            return
        n = len(flipped)
        for a, b in OTHER_PAIRS:
            if NUMPY_DTYPES[a] == "O":
                va, vb = (strings.get(x) or Bytes.empty(n) for x in (a, b))
                strings[a], strings[b] = va.pick(vb, flipped), vb.pick(va, flipped)
            else:
                va, vb = column(values, a, n), column(values, b, n)
                values[a], values[b] = np.where(flipped, vb, va), np.where(flipped, va, vb)


def as_bytes(values: np.ndarray, name: str) -> Bytes:
    """An object column (bytes; str for the text columns) as the writer's Bytes.  Only the
    first records of new groups come here."""
    items = values.tolist()
    if name in TEXT_COLUMNS:
        items = [v.encode() for v in items]
    sizes = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    return Bytes(sizes, np.frombuffer(b"".join(items), dtype=np.uint8))


# --- output order --------------------------------------------------------------------------------

def _le32(w: np.ndarray) -> np.ndarray:
    """A 32-bit word read in the other byte order (racluster compares addresses in host order)."""
    w = w.astype(U64)
    return ((w & U64(0xFF)) << U64(24)) | (((w >> U64(8)) & U64(0xFF)) << U64(16)) \
        | (((w >> U64(16)) & U64(0xFF)) << U64(8)) | (w >> U64(24))


def sort_order(values: Cols, n: int, model: Model) -> np.ndarray:
    """The rows in the order of ops.cluster sort_output (stable, by the -m sort keys)."""
    at = column(values, "flow_qual", n) & 0x1F
    is_ip = ((at == ADDR_IPV4) | (at == ADDR_IPV6)) & (column(values, "flow_subtype", n) != 3)
    keys: list[np.ndarray] = []  # most significant first
    for word in (w.split("/")[0] for w in model.sort_words):
        if word not in SORT_KEYS:
            continue
        if word in ("saddr", "daddr"):
            keys += _address_keys(values, n, word, at)
        elif word in ("smpls", "dmpls"):
            keys.append(column(values, word, n) // 4096)
        elif word in ("stcpb", "dtcpb"):
            keys.append(column(values, f"{word[0]}tcp_seqbase", n))
        elif word in ("sport", "dport"):
            ports = is_ip & np.isin(column(values, "proto", n), (6, 17))
            keys.append(np.where(ports, column(values, word, n), 0))
        elif word == "proto":  # from the highest number down, non-IP last
            keys.append(-np.where(is_ip, column(values, "proto", n), 0).astype(np.int64))
        else:
            keys.append(column(values, word, n))
    if not keys:
        return np.arange(n)
    return np.lexsort(keys[::-1])


def _address_keys(values: Cols, n: int, word: str, at: np.ndarray) -> list[np.ndarray]:
    """saddr/daddr sort keys: the kind of address, then IPv4 numerically (Ethernet keys as the
    key's 4 bytes racluster reads there), then IPv6 as four host-order words."""
    lo = column(values, "daddr_lo", n).astype(U64)
    slo = column(values, "saddr_lo", n).astype(U64)
    raw = ((lo >> U64(16)) & U64(0xFFFFFFFF) if word == "saddr" else
           ((lo & U64(0xFFFF)) << U64(16)) | ((slo >> U64(32)) & U64(0xFFFF)))
    own_lo = column(values, f"{word[0]}addr_lo", n).astype(U64)
    v4 = np.where(at == ADDR_IPV6, U64(0), np.where(at == ADDR_ETHER, _le32(raw), own_lo))
    keys = [at, v4]
    hi = column(values, f"{word[0]}addr_hi", n).astype(U64)
    for half, shift in ((hi, 32), (hi, 0), (own_lo, 32), (own_lo, 0)):
        word32 = (half >> U64(shift)) & U64(0xFFFFFFFF)
        keys.append(np.where(at == ADDR_IPV6, _le32(word32), U64(0)))
    return keys
