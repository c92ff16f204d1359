"""The record cutting kernel of rasplit/rastream time mode (ops.split), apart because numba
costs about a second to load: count, size and flow modes, and time mode runs where no record
spans a bin boundary, never import it."""

from __future__ import annotations

import numba
import numpy as np

# Columns of a piece row (the kernel's output).
ROW, K, S0, S1, D0, D1, SP, DP, SB, DB, SA, DA, TR, SR, DR = range(15)
COUNTERS = ("spkts", "dpkts", "sbytes", "dbytes", "sappbytes", "dappbytes")


@numba.njit(cache=True)
def _c_int(x: float) -> int:
    """A double converted to a C int as x86 does: NaN and out-of-range give INT_MIN."""
    if x != x or x >= 2147483648.0 or x <= -2147483649.0:
        return -2147483648
    return int(x)


@numba.njit(cache=True)
def _nz_min(a: int, b: int) -> int:
    if a == 0:
        return b
    if b == 0:
        return a
    return min(a, b)


@numba.njit(cache=True)
def _skip_gap(t: int, start: int, end: int) -> int:
    """How far (us) 3.0.8 sees `t` past a direction's start when deciding to skip ahead.

    It reads the start and end (two 32-bit second/microsecond pairs) as one 64-bit timeval,
    so its "seconds" are start.sec + start.usec << 32 and its "microseconds" end.sec +
    end.usec << 32 (wrapping 64-bit arithmetic).  Measured consequence: a record only skips
    ahead when both times fall on whole seconds or the skip is large enough to beat that."""
    b_sec = start // 1_000_000 + ((start % 1_000_000) << 32)
    b_usec = end // 1_000_000 + ((end % 1_000_000) << 32)
    return (t // 1_000_000 - b_sec) * 1_000_000 + (t % 1_000_000 - b_usec)


@numba.njit(cache=True)
def _lost_share(pkts: int, before: int, lost: int) -> tuple[int, int]:
    """A piece's retransmissions: its packets' share of what the rest of the record still
    holds, rounded half to even (measured); returns (the piece's, what is left)."""
    if before <= 0 or lost <= 0:
        return 0, lost
    mine = min(int(np.rint(pkts * lost / before)), lost)
    return mine, lost - mine


@numba.njit(cache=True)
def align_kernel(rows, s0a, s1a, d0a, d1a, spa, dpa, sba, dba, saa, daa, agra, sra, dra,
                  origins, size, out):
    """3.0.8's rasplit record cutting, measured and read from its behaviour, one record at a
    time (each piece depends on the carry the previous one left).  Returns the number of
    pieces, or -1 when `out` is too short."""
    n = 0
    for i in range(len(rows)):
        s0, s1, d0, d1 = s0a[i], s1a[i], d0a[i], d1a[i]
        sp, dp, sb, db, sa, da = spa[i], dpa[i], sba[i], dba[i], saa[i], daa[i]
        agr = agra[i]  # records merged (ra trans); 0: the record has no aggregation DSR
        sr, dr = sra[i], dra[i]  # retransmissions (ra sloss, dloss)
        origin = origins[i]
        # Per-record model, set up at the first proportional cut: packets (and bytes) per bin
        # in each direction (float32, as the C struct holds them) and the mean packet spacing
        # (in bins) that lets a long, sparse record skip empty bins.
        ready = False
        srate = drate = np.float32(0.0)
        sbrate = dbrate = sarate = darate = np.float32(0.0)
        scarry = dcarry = np.float32(0.0)
        sgap = dgap = 0.0
        k = 0
        while sp + dp > 0:
            if n >= out.shape[0]:
                return -1
            start = _nz_min(s0, d0)
            end = max(s1, d1)
            if end == 0:
                end = max(s0, d0)
            esecs = origin + ((start - origin) // size + 1) * size
            row = out[n]
            row[ROW], row[K] = rows[i], k
            if sp + dp == 1 or end <= esecs:  # the rest fits in this bin: one last piece
                row[S0], row[S1], row[D0], row[D1] = s0, s1, d0, d1
                row[SP], row[DP], row[SB], row[DB], row[SA], row[DA] = sp, dp, sb, db, sa, da
                row[TR], row[SR], row[DR] = agr, sr, dr
                n += 1
                break
            if sp + dp == 2:  # two packets: one piece each, the first direction's first
                row[S0], row[S1], row[D0], row[D1] = s0, s1, d0, d1
                if agr >= 1:
                    agr = 1
                row[TR] = agr
                if sp == 1:
                    row[D0] = row[D1] = 0
                    row[SP], row[SB], row[SA] = 1, sb, sa
                    s0 = s1 = 0
                    sp = sb = sa = 0
                elif sp == 2:
                    half_b, half_a = sb // 2 + (sb & 1), sa // 2 + (sa & 1)
                    row[S1] = s0
                    row[SP], row[SB], row[SA] = 1, half_b, half_a
                    s0 = s1
                    sp, sb, sa = 1, sb - half_b, sa - half_a
                else:
                    half_b, half_a = db // 2 + (db & 1), da // 2 + (da & 1)
                    row[D1] = d0
                    row[DP], row[DB], row[DA] = 1, half_b, half_a
                    d0 = d1
                    dp, db, da = 1, db - half_b, da - half_a
                row[SR], sr = _lost_share(row[SP], sp + row[SP], sr)
                row[DR], dr = _lost_share(row[DP], dp + row[DP], dr)
                n += 1
                k += 1
                continue
            if not ready:
                speriod = max((s1 - s0) / size, 1.0)
                dperiod = max((d1 - d0) / size, 1.0)
                srate, drate = np.float32(sp / speriod), np.float32(dp / dperiod)
                sbrate, dbrate = np.float32(sb / speriod), np.float32(db / dperiod)
                sarate, darate = np.float32(sa / speriod), np.float32(da / dperiod)
                sgap = speriod / (sp - 1) if sp > 1 else 0.0
                if dp > 1:
                    dgap = dperiod / (dp - 1)
                else:
                    sgap = 0.0  # (sic: 3.0.8 clears the source spacing here)
                scarry = dcarry = np.float32(0.0)
                ready = True
            ss, se, ds, de = s0, s1, d0, d1  # the rest, before this cut
            ps0, ps1, pd0, pd1 = s0, s1, d0, d1
            psp, pdp, psb, pdb, psa, pda = sp, dp, sb, db, sa, da
            if ss > esecs:
                ps0 = ps1 = 0
                psp = psb = psa = 0
            elif se > esecs:
                ps1 = esecs
                s0 = esecs
            else:
                s0 = s1 = 0
                sgap = 0.0
            if ds > esecs:
                pd0 = pd1 = 0
                pdp = pdb = pda = 0
            elif de > esecs:
                pd1 = esecs
                d0 = esecs
            else:
                d0 = d1 = 0
                dgap = 0.0
            if ps0 != 0 and psp != 0:
                share = min(ps1 - ps0, size) / min(se - ss, size) if se > ss else np.nan
                psp = min(_c_int(np.float64(np.float32(srate + scarry)) * share), psp)
                psp = max(psp, 1)
                scarry = np.float32(np.float64(scarry) + (np.float64(srate) * share - psp))
                ratio = psp / np.float64(srate)
                psb, psa = _c_int(np.float64(sbrate) * ratio), _c_int(np.float64(sarate) * ratio)
            if pd0 != 0 and pdp != 0:
                share = min(pd1 - pd0, size) / min(de - ds, size) if de > ds else np.nan
                pdp = min(_c_int(np.float64(np.float32(drate + dcarry)) * share), pdp)
                pdp = max(pdp, 1)
                dcarry = np.float32(np.float64(dcarry) + (np.float64(drate) * share - pdp))
                ratio = pdp / np.float64(drate)
                pdb, pda = _c_int(np.float64(dbrate) * ratio), _c_int(np.float64(darate) * ratio)
            # Merged records are shared by packets as well (truncated, at least one).
            pagr = agr
            if agr > 1:
                pagr = max(_c_int(agr * ((psp + pdp) / (sp + dp))), 1)
                agr -= pagr
            sp, sb, sa = sp - psp, sb - psb, sa - psa
            dp, db, da = dp - pdp, db - pdb, da - pda
            # Bytes left without packets: a packet goes back to them, or the piece takes them.
            if sp == 0 and sb > 0:
                if psp > 1:
                    psp, sp = psp - 1, sp + 1
                else:
                    psb, psa = psb + sb, psa + sa
            if dp == 0 and db > 0:
                if pdp > 1:
                    pdp, dp = pdp - 1, dp + 1
                else:
                    pdb, pda = pdb + db, pda + da
            if psp + pdp == 1:
                ps1, pd1 = ps0, pd0
            # A sparse record skips ahead to where its next packets are expected.
            if sp > 1 and sgap != 0.0:
                t = ss + np.int64(sgap * psp * size)
                if _skip_gap(t, s0, s1) >= size:
                    s0 = t
            elif sp == 1:
                s0 = s1
            if dp > 1 and dgap != 0.0:
                t = ds + np.int64(dgap * pdp * size)
                if _skip_gap(t, d0, d1) >= size:
                    d0 = t
            elif dp == 1:
                d0 = d1
            row[S0], row[S1], row[D0], row[D1] = ps0, ps1, pd0, pd1
            row[SP], row[DP], row[SB], row[DB], row[SA], row[DA] = psp, pdp, psb, pdb, psa, pda
            row[TR] = pagr
            row[SR], sr = _lost_share(psp, sp + psp, sr)
            row[DR], dr = _lost_share(pdp, dp + pdp, dr)
            n += 1
            k += 1
    return n
