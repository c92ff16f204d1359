"""racluster.conf `status=` and `idle=` timers: when a merged record is closed and reported.

racluster 3.0.8, as observed on corpus files (`racluster -X -f conf`):

* When a record joins an existing aggregate, the aggregate is reported and restarted from that
  record if the two together would span `status` seconds or more (max last - min start), or if
  the gap between them is `idle` seconds or more.
* Before every input record (any rule, MARs too), each aggregate of a rule with `idle` whose last
  time is `idle` seconds or more before the record's start time is reported and dropped; a later
  record of its key starts a new aggregate.  (`status` does not report from this timer in 3.0.8.)
* Reports come out as they happen: timer reports before the record (rules in order, each in its
  queue order: least recently updated first), then the report a record's merge causes; what is
  still open at the end follows, rule by rule, in queue order.

Here an aggregate is a (key, segment) group of the Clusterer: `segments` numbers each key's
segments in record order (sequential per key, so compiled), and `emission` gives each group its
report position, computed over whole arrays once every record has been read.

* A merge that reports an aggregate restarts it in place (ArgusZeroRecord): the times, counters,
  packet sizes, TCP status and per-direction objects and the aggregation statistics are zeroed,
  and the record is merged into what is left.  So the restarted aggregate keeps the old one's
  seq, cause, masked key fields and IP attributes (ids, TTLs, TOS); its TCP window scales stay
  0 (zeroed, and a merge never sets them), and so does its statistics' minimum.  An aggregate the idle
  timer reported before the record came is gone: the record starts a new one.  `Timers.record`
  tells the Clusterer which group each record restarts; its kernel does the zeroing and merge.

Not found: when 3.0.8 runs its idle timer exactly.  Across two idle rules it reports aggregates
later than the first record past their idle time (tests: test_conf_timer_segments xfail), and on
a large file (bench big.argus, 345k records) the same command wrote 131647 to 147248 records in
different runs: its timers seem to depend on the wall clock too, which we cannot follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import polars as pl

from argusflow.ops.key_ids import number_keys
from argusflow.records import derive

NEVER = np.iinfo(np.int64).max  # report position of aggregates still open at the end
PHASE_TIMER, PHASE_MERGE, PHASE_END = 0, 1, 2


@dataclass
class Clock:
    """The input stream's record positions and start times, shared by every rule's clusterer
    (a timer fires on any record, matched or not)."""

    seen: int = 0
    _starts: list[np.ndarray] = field(default_factory=list)
    # The latest start time read up to each record of the current batch (and the one before).
    _run: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _run_from: int = -1

    def advance(self, batch: pl.DataFrame) -> pl.DataFrame:
        """The batch with `_pos`, its records' positions in the whole input."""
        starts = batch.select(derive.stime_us()).to_series().fill_null(0).to_numpy()
        self._starts.append(starts.astype(np.int64))
        start = self._run[-1] if len(self._run) else np.iinfo(np.int64).min
        self._run = np.maximum.accumulate(np.concatenate([[start], starts.astype(np.int64)]))
        self._run_from = self.seen - 1
        pos = pl.int_range(self.seen, self.seen + batch.height, dtype=pl.Int64, eager=True)
        self.seen += batch.height
        return batch.with_columns(pos.alias("_pos"))

    def latest(self, pos: np.ndarray) -> np.ndarray:
        """The latest start time read up to (and with) the records at `pos` (current batch)."""
        return self._run[pos - self._run_from]

    def global_times(self) -> np.ndarray:
        """Start times of every record read, made non-decreasing (so positions can be searched)."""
        if not self._starts:
            return np.zeros(0, dtype=np.int64)
        return np.maximum.accumulate(np.concatenate(self._starts))


@numba.njit(cache=True)
def segments(base: np.ndarray, st: np.ndarray, lt: np.ndarray, status: np.int64,
             idle: np.int64, seg_st: np.ndarray, seg_lt: np.ndarray, seg_no: np.ndarray,
             open_: np.ndarray, out_seg: np.ndarray, closes: np.ndarray) -> None:
    """Segment number of each record within its key (`base`), in record order; `closes` marks
    the records whose merge reports the key's previous segment.  State arrays persist across
    batches, indexed by key."""
    for i in range(base.shape[0]):
        g = base[i]
        if open_[g]:
            lo = min(st[i], seg_st[g])
            hi = max(lt[i], seg_lt[g])
            gap = 0
            if lt[i] < seg_st[g]:
                gap = seg_st[g] - lt[i]
            elif seg_lt[g] < st[i]:
                gap = st[i] - seg_lt[g]
            if (status > 0 and hi - lo >= status) or (idle > 0 and gap >= idle):
                seg_no[g] += 1
                closes[i] = True
                seg_st[g] = st[i]
                seg_lt[g] = lt[i]
            else:
                seg_st[g] = lo
                seg_lt[g] = hi
        else:
            open_[g] = True
            seg_st[g] = st[i]
            seg_lt[g] = lt[i]
        out_seg[i] = seg_no[g]


@numba.njit(cache=True)
def closed_by(base: np.ndarray, full: np.ndarray, closes: np.ndarray, pos: np.ndarray,
              prev_full: np.ndarray, closed_at: np.ndarray, previous: np.ndarray) -> None:
    """Position of the record whose merge reported each group (its key's next segment's first
    record), and that record's `previous` group; `prev_full` remembers each key's current
    group across batches."""
    for i in range(base.shape[0]):
        if closes[i]:
            closed_at[prev_full[base[i]]] = pos[i]
            previous[i] = prev_full[base[i]]
        prev_full[base[i]] = full[i]


def emission(closed_at: np.ndarray, last_pos: np.ndarray, seg_last: np.ndarray, idle_us: int,
             times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, phase) at which each group is reported: by the idle timer (before the first
    later record that starts `idle` after the group's last time), by the merge of its key's next
    record, or at the end."""
    pos = closed_at.copy()
    phase = np.where(pos < NEVER, PHASE_MERGE, PHASE_END)
    if idle_us > 0 and len(times):
        fire = np.searchsorted(times, seg_last + idle_us, side="left")
        fire = np.maximum(fire, last_pos + 1)
        timer = (fire < len(times)) & (fire <= pos)
        pos = np.where(timer, fire, pos)
        phase = np.where(timer, PHASE_TIMER, phase)
    return pos, phase


def _grown(a: np.ndarray, size: int, fill: int | bool = 0) -> np.ndarray:
    if size <= len(a):
        return a
    out = np.full(max(size, len(a) * 2, 1024), fill, dtype=a.dtype)
    out[:len(a)] = a
    return out


@dataclass
class Timers:
    """One rule's timers and the state that splits its keys into reported segments."""

    status_us: int = 0
    idle_us: int = 0
    clock: Clock = field(default_factory=Clock)
    _table: pl.DataFrame | None = None  # the rule's keys (without segment)
    _count: int = 0
    _seg_st: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _seg_lt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _seg_no: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _open: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    _prev: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _base: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _closes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    _lt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _closed_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _last_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _last_time: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def segment(self, keys: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
        """`keys` with `_seg`, each record's segment of its key (records in input order)."""
        base, _, self._table, self._count = number_keys(keys.drop("_fwd"), self._table,
                                                        self._count)
        n = self._count
        self._seg_st, self._seg_lt = _grown(self._seg_st, n), _grown(self._seg_lt, n)
        self._seg_no, self._open = _grown(self._seg_no, n), _grown(self._open, n, False)
        self._prev = _grown(self._prev, n)
        times = batch.select(derive.stime_us().fill_null(0).cast(pl.Int64),
                             derive.ltime_us().fill_null(0).cast(pl.Int64))
        st, lt = times.to_series(0).to_numpy(), times.to_series(1).to_numpy()
        seg = np.zeros(len(base), dtype=np.int64)
        closes = np.zeros(len(base), dtype=bool)
        segments(base, st, lt, np.int64(self.status_us), np.int64(self.idle_us), self._seg_st,
                 self._seg_lt, self._seg_no, self._open, seg, closes)
        self._base, self._closes, self._lt = base, closes, lt
        return keys.with_columns(pl.Series("_seg", seg))

    def record(self, gid: np.ndarray, pos: np.ndarray, groups: int) -> np.ndarray:
        """Note, per (key, segment) group, what its report position depends on; returns, per
        record, the group its merge restarts (-1: none).  3.0.8 restarts the reported
        aggregate in place (zeroed, then the record merged in), unless the idle timer had
        already reported and dropped it before the record came."""
        self._closed_at = _grown(self._closed_at, groups, NEVER)
        self._last_pos = _grown(self._last_pos, groups, -1)
        self._last_time = _grown(self._last_time, groups)
        previous = np.full(len(gid), -1, dtype=np.int64)
        closed_by(self._base, gid, self._closes, pos, self._prev, self._closed_at, previous)
        np.maximum.at(self._last_pos, gid, pos)
        np.maximum.at(self._last_time, gid, self._lt)
        rows = np.flatnonzero(previous >= 0)
        if self.idle_us > 0 and len(rows):
            # The timer runs before each record on the latest start time read so far.
            now = self.clock.latest(pos[rows])
            dropped = now >= self._last_time[previous[rows]] + self.idle_us
            previous[rows[dropped]] = -1
        return previous

    def reports(self, groups: int) -> tuple[np.ndarray, np.ndarray]:
        """(position, phase) of each group's report, once the whole input is read."""
        return emission(self._closed_at[:groups], self._last_pos[:groups],
                        self._last_time[:groups], self.idle_us, self.clock.global_times())
