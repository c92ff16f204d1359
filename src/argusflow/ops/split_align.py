"""The record cutting of rasplit/rastream time mode (ops.split), as 3.0.8 cuts: one cut per turn
for every record still being cut, in numpy over all of them at once (a record takes one piece
per turn, so the turns are as many as the most pieces one record gives: a few for Argus'
usual status intervals).  A turn costs about 0.45 ms however few records it has, so a record
cut into 10,000 pieces (10,000 packets over 10,000 bins) costs 4.5 s: a compiled loop would
be the cure if such records turn up (numba was measured too: a second to load per run)."""

from __future__ import annotations

import numpy as np

# Columns of a piece row.
ROW, K, S0, S1, D0, D1, SP, DP, SB, DB, SA, DA, TR, SR, DR = range(15)
COUNTERS = ("spkts", "dpkts", "sbytes", "dbytes", "sappbytes", "dappbytes")
INT_MIN = -2147483648
_STATE = ("row", "origin", "s0", "s1", "d0", "d1", "sp", "dp", "sb", "db", "sa", "da", "agr",
          "sr", "dr")
_MODEL = {"srate": np.float32, "drate": np.float32, "sbrate": np.float32, "dbrate": np.float32,
          "sarate": np.float32, "darate": np.float32, "scarry": np.float32,
          "dcarry": np.float32, "sgap": np.float64, "dgap": np.float64, "ready": bool}

Rest = dict[str, np.ndarray]


def align_pieces(columns: list[np.ndarray], size: int) -> np.ndarray:
    """`columns`: the _STATE arrays of the records to cut.  Returns one row per piece, in
    record order and piece order within a record."""
    rest: Rest = {name: np.asarray(col, dtype=np.int64) for name, col in zip(_STATE, columns,
                                                                             strict=True)}
    n = len(rest["row"])
    rest.update({name: np.zeros(n, dtype=kind) for name, kind in _MODEL.items()})
    turns = []
    k = 0
    while len(rest["row"]):
        piece, alive = _turn(rest, size)
        piece[:, K] = k
        turns.append(piece)
        rest = {name: col[alive] for name, col in rest.items()}
        k += 1
    out = np.concatenate(turns) if turns else np.zeros((0, 15), dtype=np.int64)
    return out[np.lexsort((out[:, K], out[:, ROW]))]


def _turn(r: Rest, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One cut of every record: the pieces, and which records still have a rest to cut."""
    start = _nz_min(r["s0"], r["d0"])
    end = np.maximum(r["s1"], r["d1"])
    end = np.where(end == 0, np.maximum(r["s0"], r["d0"]), end)
    esecs = r["origin"] + ((start - r["origin"]) // size + 1) * size
    total = r["sp"] + r["dp"]
    last = (total <= 1) | (end <= esecs)  # the rest fits in this bin: one last piece
    piece = np.zeros((len(total), 15), dtype=np.int64)
    piece[:, ROW] = r["row"]
    whole = np.flatnonzero(last)
    for col, name in ((S0, "s0"), (S1, "s1"), (D0, "d0"), (D1, "d1"), (SP, "sp"), (DP, "dp"),
                      (SB, "sb"), (DB, "db"), (SA, "sa"), (DA, "da"), (TR, "agr"), (SR, "sr"),
                      (DR, "dr")):
        piece[whole, col] = r[name][whole]
    two = np.flatnonzero(~last & (total == 2))
    if len(two):
        _two_packets(r, two, piece)
    main = np.flatnonzero(~last & (total > 2))
    if len(main):
        _proportional(r, main, esecs[main], size, piece)
    alive = ~last & (r["sp"] + r["dp"] > 0)
    return piece, alive


def _two_packets(r: Rest, i: np.ndarray, piece: np.ndarray) -> None:
    """Two packets left: one piece each, the source's first (or the first of a direction)."""
    for col, name in ((S0, "s0"), (S1, "s1"), (D0, "d0"), (D1, "d1")):
        piece[i, col] = r[name][i]
    agr = np.where(r["agr"][i] >= 1, 1, r["agr"][i])
    piece[i, TR] = agr
    r["agr"][i] = agr
    one_each = i[r["sp"][i] == 1]
    piece[one_each, D0] = piece[one_each, D1] = 0
    piece[one_each, SP] = 1
    piece[one_each, SB], piece[one_each, SA] = r["sb"][one_each], r["sa"][one_each]
    for name in ("s0", "s1", "sp", "sb", "sa"):
        r[name][one_each] = 0
    for side, first, col_p, col_b, col_a, col_1 in (("s", "s0", SP, SB, SA, S1),
                                                    ("d", "d0", DP, DB, DA, D1)):
        j = i[r[f"{side}p"][i] == 2]
        b, a = r[f"{side}b"][j], r[f"{side}a"][j]
        half_b, half_a = b // 2 + (b & 1), a // 2 + (a & 1)
        piece[j, col_1] = r[first][j]
        piece[j, col_p], piece[j, col_b], piece[j, col_a] = 1, half_b, half_a
        r[first][j] = r[f"{side}1"][j]
        r[f"{side}p"][j] = 1
        r[f"{side}b"][j], r[f"{side}a"][j] = b - half_b, a - half_a
    _share_losses(r, i, piece)


def _share_losses(r: Rest, i: np.ndarray, piece: np.ndarray) -> None:
    """A piece's retransmissions: its packets' share of what the rest still holds, rounded half
    to even (measured); the rest keeps the others."""
    for side, col_p, col_r in (("s", SP, SR), ("d", DP, DR)):
        pkts, lost = piece[i, col_p], r[f"{side}r"][i]
        before = r[f"{side}p"][i] + pkts
        ok = (before > 0) & (lost > 0)
        mine = np.rint(pkts * lost / np.where(ok, before, 1)).astype(np.int64)
        mine = np.where(ok, np.minimum(mine, lost), 0)
        piece[i, col_r] = mine
        r[f"{side}r"][i] = lost - mine


def _start_model(r: Rest, i: np.ndarray, size: int) -> None:
    """At a record's first proportional cut: its rates per bin (float32, as the C struct holds
    them) and the mean packet spacing in bins that lets a sparse record skip ahead."""
    i = i[~r["ready"][i]]
    if not len(i):
        return
    for side in ("s", "d"):
        period = np.maximum((r[f"{side}1"][i] - r[f"{side}0"][i]) / size, 1.0)
        pkts = r[f"{side}p"][i]
        r[f"{side}rate"][i] = (pkts / period).astype(np.float32)
        r[f"{side}brate"][i] = (r[f"{side}b"][i] / period).astype(np.float32)
        r[f"{side}arate"][i] = (r[f"{side}a"][i] / period).astype(np.float32)
        r[f"{side}gap"][i] = np.where(pkts > 1, period / np.maximum(pkts - 1, 1), 0.0)
        r[f"{side}carry"][i] = 0.0
    # (sic) 3.0.8 clears the source spacing when the destination has one packet or none.
    r["sgap"][i] = np.where(r["dp"][i] > 1, r["sgap"][i], 0.0)
    r["ready"][i] = True


def _proportional(r: Rest, i: np.ndarray, esecs: np.ndarray, size: int, piece: np.ndarray
                  ) -> None:
    """Three packets or more: each direction gives the piece its share up to the boundary."""
    _start_model(r, i, size)
    before = {name: r[name][i].copy() for name in ("s0", "s1", "d0", "d1", "sp", "dp")}
    parts = {side: _cut_direction(r, i, esecs, size, side) for side in ("s", "d")}
    (ps0, ps1, psp, psb, psa), (pd0, pd1, pdp, pdb, pda) = parts["s"], parts["d"]
    # Merged records are shared by packets as well (truncated, at least one).
    agr = r["agr"][i]
    share = (psp + pdp) / (before["sp"] + before["dp"])
    pagr = np.where(agr > 1, np.maximum(_c_int(agr * share), 1), agr)
    r["agr"][i] = np.where(agr > 1, agr - pagr, agr)
    counts = {}
    for side, p, b, a in (("s", psp, psb, psa), ("d", pdp, pdb, pda)):
        left_p, left_b, left_a = r[f"{side}p"][i] - p, r[f"{side}b"][i] - b, r[f"{side}a"][i] - a
        # Bytes left without packets: a packet goes back to them, or the piece takes them.
        orphan = (left_p == 0) & (left_b > 0)
        give = orphan & (p > 1)
        take = orphan & ~give
        p, left_p = np.where(give, p - 1, p), np.where(give, left_p + 1, left_p)
        b, a = np.where(take, b + left_b, b), np.where(take, a + left_a, a)
        r[f"{side}p"][i], r[f"{side}b"][i], r[f"{side}a"][i] = left_p, left_b, left_a
        counts[side] = (p, b, a)
    psp, psb, psa = counts["s"]
    pdp, pdb, pda = counts["d"]
    point = psp + pdp == 1
    ps1, pd1 = np.where(point, ps0, ps1), np.where(point, pd0, pd1)
    for side, p, old0 in (("s", psp, before["s0"]), ("d", pdp, before["d0"])):
        _skip_ahead(r, i, side, p, old0, size)
    for col, value in ((S0, ps0), (S1, ps1), (D0, pd0), (D1, pd1), (SP, psp), (DP, pdp),
                       (SB, psb), (DB, pdb), (SA, psa), (DA, pda), (TR, pagr)):
        piece[i, col] = value
    _share_losses(r, i, piece)


def _cut_direction(r: Rest, i: np.ndarray, esecs: np.ndarray, size: int, side: str
                   ) -> tuple[np.ndarray, ...]:
    """One direction's part of a proportional cut: (start, end, pkts, bytes, appbytes) of the
    piece; the rest's times move to the boundary (or clear when the direction ends here)."""
    t0, t1 = r[f"{side}0"][i], r[f"{side}1"][i]
    pkts, byts, app = r[f"{side}p"][i], r[f"{side}b"][i], r[f"{side}a"][i]
    after = t0 > esecs  # the direction starts after the boundary: not in this piece
    across = ~after & (t1 > esecs)
    ends = ~after & ~across
    p0, p1 = np.where(after, 0, t0), np.where(after, 0, np.where(across, esecs, t1))
    pkts_p = np.where(after, 0, pkts)
    byts_p, app_p = np.where(after, 0, byts), np.where(after, 0, app)
    r[f"{side}0"][i] = np.where(across, esecs, np.where(ends, 0, t0))
    r[f"{side}1"][i] = np.where(ends, 0, t1)
    r[f"{side}gap"][i] = np.where(ends, 0.0, r[f"{side}gap"][i])
    counted = (p0 != 0) & (pkts_p != 0)
    if counted.any():
        j = np.flatnonzero(counted)
        rate, carry = r[f"{side}rate"][i][j], r[f"{side}carry"][i][j]
        span = t1[j] - t0[j]
        share = np.where(span > 0, np.minimum(p1[j] - p0[j], size)
                         / np.maximum(np.minimum(span, size), 1), np.nan)
        got = (rate + carry).astype(np.float32).astype(np.float64) * share
        cnt = np.maximum(np.minimum(_c_int(got), pkts_p[j]), 1)
        r[f"{side}carry"][i[j]] = (carry.astype(np.float64) + (rate.astype(np.float64) * share
                                                               - cnt)).astype(np.float32)
        ratio = cnt / rate.astype(np.float64)
        pkts_p[j] = cnt
        byts_p[j] = _c_int(r[f"{side}brate"][i][j].astype(np.float64) * ratio)
        app_p[j] = _c_int(r[f"{side}arate"][i][j].astype(np.float64) * ratio)
    return p0, p1, pkts_p, byts_p, app_p


def _skip_ahead(r: Rest, i: np.ndarray, side: str, taken: np.ndarray, old0: np.ndarray,
                size: int) -> None:
    """A sparse record's rest jumps to where its next packets are expected (3.0.8's test, see
    _skip_gap); a direction with one packet left collapses onto its last time."""
    left, gap = r[f"{side}p"][i], r[f"{side}gap"][i]
    t0, t1 = r[f"{side}0"][i], r[f"{side}1"][i]
    jumps = (left > 1) & (gap != 0.0)
    t = old0 + (gap * taken * size).astype(np.int64)
    moved = jumps & (_skip_gap(t, t0, t1) >= size)
    r[f"{side}0"][i] = np.where(moved, t, np.where(~jumps & (left == 1), t1, t0))


def _skip_gap(t: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """How far (us) 3.0.8 sees `t` past a direction's start when deciding to skip ahead.

    It reads the start and end (two 32-bit second/microsecond pairs) as one 64-bit timeval,
    so its "seconds" are start.sec + start.usec << 32 and its "microseconds" end.sec +
    end.usec << 32 (wrapping 64-bit arithmetic).  Measured consequence: a record only skips
    ahead when both times fall on whole seconds or the skip is large enough to beat that."""
    with np.errstate(over="ignore"):
        b_sec = start // 1_000_000 + ((start % 1_000_000) << 32)
        b_usec = end // 1_000_000 + ((end % 1_000_000) << 32)
        return (t // 1_000_000 - b_sec) * 1_000_000 + (t % 1_000_000 - b_usec)


def _c_int(x: np.ndarray) -> np.ndarray:
    """Doubles converted to a C int as x86 does: NaN and out-of-range give INT_MIN."""
    bad = np.isnan(x) | (x >= 2147483648.0) | (x <= -2147483649.0)
    return np.where(bad, INT_MIN, np.trunc(np.where(bad, 0.0, x))).astype(np.int64)


def _nz_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(a == 0, b, np.where(b == 0, a, np.minimum(a, b)))
