"""racluster's group ids by key hash (ops.cluster_keys) against the exact join (ops.key_ids)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from argusflow.ops.cluster_keys import KeyIndex
from argusflow.ops.key_ids import number_keys


def _batches(seed: int) -> list[pl.DataFrame]:
    """Key batches with repeats within and across batches, nulls and a binary column."""
    rng = np.random.default_rng(seed)
    out = []
    for size in (500, 1, 0, 700, 300):
        a = rng.integers(0, 40, size, dtype=np.uint64)
        b = rng.integers(0, 3, size).astype(np.uint8)
        raw = [None if x % 3 else bytes([int(x) % 5]) for x in rng.integers(0, 9, size)]
        out.append(pl.DataFrame({"_k_a": a, "_k_b": b,
                                 "_k_raw": pl.Series(raw, dtype=pl.Binary)}))
    return out


def _exact(batches: list[pl.DataFrame]) -> list[tuple[np.ndarray, np.ndarray]]:
    table, count, out = None, 0, []
    for keys in batches:
        gid, fresh, table, count = number_keys(keys, table, count)
        out.append((gid, fresh))
    return out


def _hashed(batches: list[pl.DataFrame], index: KeyIndex) -> list[tuple[np.ndarray, np.ndarray]]:
    return [index.number(keys) for keys in batches]


@pytest.mark.parametrize("seed", [1, 2])
def test_ids_and_first_rows_as_the_exact_join(seed: int) -> None:
    batches = _batches(seed)
    index = KeyIndex()
    for (gid, fresh), (want_gid, want_fresh) in zip(_hashed(batches, index), _exact(batches),
                                                     strict=True):
        assert np.array_equal(gid, want_gid)
        assert np.array_equal(fresh, want_fresh)
    assert not index.exact


def test_a_hash_collision_falls_back_to_the_exact_join(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key hashes alike from the third batch on: that batch's check finds keys that differ
    from their ids' keys, and the ids still come out as the exact join gives them."""
    batches = _batches(3)
    want = _exact(batches)
    index = KeyIndex()
    got = _hashed(batches[:3], index)
    real = pl.DataFrame.hash_rows
    monkeypatch.setattr(pl.DataFrame, "hash_rows",
                        lambda self, *a, **k: real(self, *a, **k) * 0 + 7)
    got += _hashed(batches[3:], index)
    assert index.exact
    for (gid, fresh), (want_gid, want_fresh) in zip(got, want, strict=True):
        assert np.array_equal(gid, want_gid)
        assert np.array_equal(fresh, want_fresh)
