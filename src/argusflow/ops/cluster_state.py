"""racluster's per-group state, without polars: what both aggregators (ops.cluster.Clusterer over
polars batches, ops.cluster_columns.ColumnClusterer over numpy columns) keep of every group and
hand to the compiled merge kernel (ops.cluster merge_batch).

Per group: the orientation of its first record, the merging columns as state rows (one matrix
per column width, ops.cluster_model WIDTHS), the first record's duration, the aggregation
statistics (record count, active-time count, float32 min/mean/stdev/max), whether the kernel
turned the group round, and the sequence number of its last record.  The arrays are reserved,
not filled (ops.cluster_model.reserved): their pages are mapped in as groups are written, so a
generous capacity costs no memory, and most inputs never copy their state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from argusflow.ops.cluster_model import (
    AGR_STATS,
    MERGED,
    RESERVED_GROUPS,
    SLICE_ROWS,
    STATE_DTYPES,
    SWAP_BITS,
    SWAP_PAIRS,
    WIDTHS,
    reserved,
    to_u64,
)
from argusflow.records.schema import DSR_BITS


def _empty(dtype: type, *shape: int) -> Callable[[], np.ndarray]:
    return lambda: np.zeros((0, *shape), dtype=dtype)


@dataclass
class GroupState:
    """The state of every group so far (row g: group g); `grow` before rows are written."""

    orient: np.ndarray = field(default_factory=_empty(bool))
    # The state rows, one matrix per column width (WIDTHS): 8, 4, 2 and 1 bytes.
    state: dict[int, np.ndarray] = field(default_factory=lambda: {
        w: np.zeros((0, len(WIDTHS[w])), dtype=STATE_DTYPES[w]) for w in WIDTHS})
    first_dur: np.ndarray = field(default_factory=_empty(np.float64))
    count: np.ndarray = field(default_factory=_empty(np.int64))
    n: np.ndarray = field(default_factory=_empty(np.int64))
    stats: np.ndarray = field(default_factory=_empty(np.float32, len(AGR_STATS)))
    flipped: np.ndarray = field(default_factory=_empty(bool))
    last: np.ndarray = field(default_factory=_empty(np.int64))

    # The per-group arrays besides `state` (a subclass adds its own).
    ARRAYS: ClassVar[tuple[str, ...]] = ("orient", "first_dur", "count", "n", "stats", "flipped", "last")

    def grow(self, size: int) -> None:
        """Room for `size` groups: the capacity doubled (at least) when it runs out."""
        have = len(self.orient)
        if size <= have:
            return
        cap = max(size, have * 2, RESERVED_GROUPS)

        def grown(a: np.ndarray) -> np.ndarray:
            out = reserved((cap, *a.shape[1:]), a.dtype)
            out[:have] = a
            return out

        for name in self.ARRAYS:
            setattr(self, name, grown(getattr(self, name)))
        self.state = {w: grown(a) for w, a in self.state.items()}

    def start(self, gid: np.ndarray, rows: np.ndarray, fwd: np.ndarray, durs: np.ndarray,
              rcount: np.ndarray, rn: np.ndarray, rstats: np.ndarray) -> None:
        """New groups from their first records (`rows` of the batch): the orientation and
        duration, and the statistics when the record carries some (racluster wrote it)."""
        g = gid[rows]
        self.orient[g] = fwd[rows]
        self.first_dur[g] = durs[rows]
        carried = rows[rcount[rows] > 0]
        self.count[gid[carried]] = rcount[carried]
        self.n[gid[carried]] = rn[carried]
        self.stats[gid[carried]] = rstats[carried]

    def merge(self, kernel: Callable[..., Any], arrays: list[np.ndarray], gid: np.ndarray,
              fresh: np.ndarray, seq: np.ndarray, fwd: np.ndarray, durs: np.ndarray,
              rcount: np.ndarray, rn: np.ndarray, rstats: np.ndarray, restart: np.ndarray,
              scratch: tuple[np.ndarray, np.ndarray]) -> None:
        """Every record of a batch merged into its group's state by `kernel` (merge_batch).
        The merging columns (`arrays`, MERGED's order) are turned into u64 a slice at a time,
        so memory stays small per batch; `scratch` is the kernel's block and state row."""
        relrev = fwd != self.orient[gid]
        for lo in range(0, len(gid), SLICE_ROWS):
            hi = min(lo + SLICE_ROWS, len(gid))
            kernel(to_u64(arrays, lo, hi), gid[lo:hi], fresh[lo:hi], seq[lo:hi], relrev[lo:hi],
                   durs[lo:hi], *self.state.values(), self.first_dur, self.count, self.n,
                   self.stats, self.flipped, self.last, SWAP_PAIRS, SWAP_BITS, rcount[lo:hi],
                   rn[lo:hi], rstats[lo:hi], restart[lo:hi], *scratch)

    def take_merged(self, groups: int, order: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """(name, state bits) of every merging column, groups taken in `order`; the state rows
        are freed once read.  Signed columns are held sign-extended: the caller casts."""
        state, self.state = self.state, {}
        for width, matrix in state.items():
            rows = matrix[:groups][order]  # whole rows gathered at once, then each column
            for k, i in enumerate(WIDTHS[width]):
                yield MERGED[i], rows[:, k]

    def agr_columns(self, groups: int, order: np.ndarray, dsrs: np.ndarray,
                    report: bool) -> dict[str, np.ndarray]:
        """The aggregation DSR of groups that merged more than one record (groups in `order`),
        and `dsrs` with its bit set (cleared without `report`: -M norep)."""
        count = self.count[:groups][order]
        agr = count > 1
        stats = self.stats[:groups][order]
        bit = np.uint32(DSR_BITS["agr"])
        out = {
            "dsrs": np.where(agr & report, dsrs | bit, dsrs & ~bit).astype(np.uint32),
            "agr_subtype": np.where(agr, 4, 0).astype(np.uint8),
            "agr_qual": np.where(agr, 1, 0).astype(np.uint8),
            "agr_count": np.where(agr, count, 0).astype(np.uint32),
            "agr_act_n": np.where(agr, self.n[:groups][order], 0).astype(np.int32),
        }
        for k, name in enumerate(AGR_STATS):
            out[name] = np.where(agr, stats[:, k], 0).astype(np.float32)
        return out
