"""Group ids from 64-bit key hashes, without polars: the part both of racluster's key indexes
share (ops.cluster_keys.KeyIndex over polars key frames, ops.cluster_columns.RowKeys over u64
key rows).

Each distinct key gets an id, in order of first appearance.  A key's hash is looked up in a
sorted array of the known hashes (numpy `searchsorted`): a few bytes per key.  A hash does not
prove a key, so a subclass checks every batch against the keys themselves; should two keys ever
share a hash, that batch and all later ones are numbered exactly (`_exact`) instead.  The ids
are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class HashedIds:
    """The hashes of the keys seen so far, sorted, with their ids."""

    count: int = 0
    exact: bool = False  # two keys shared a hash: `_exact` numbers every batch from then on
    _hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    _ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def number(self, keys: Any) -> tuple[np.ndarray, np.ndarray]:
        """Id of every row's key (new keys numbered in order of appearance) and which rows are
        the first of a new key."""
        if not self.exact:
            found = self._by_hash(keys)
            if found is not None:
                return found
            self.exact = True  # nothing of this batch was kept
        return self._exact(keys)

    # --- what a subclass gives -------------------------------------------------------------------

    def _hash(self, keys: Any) -> np.ndarray:
        """A u64 hash of every key row."""
        raise NotImplementedError

    def _keep(self, keys: Any, gid: np.ndarray, fresh: np.ndarray) -> bool:
        """Store the new keys (`fresh` rows) if every row's key is its id's key; False (nothing
        stored) when a hash stood for two keys."""
        raise NotImplementedError

    def _exact(self, keys: Any) -> tuple[np.ndarray, np.ndarray]:
        """`number` without hashes, counting `count` up itself."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------

    def _by_hash(self, keys: Any) -> tuple[np.ndarray, np.ndarray] | None:
        h = self._hash(keys)
        gid = np.full(len(h), -1, dtype=np.int64)
        if len(self._hashes):
            at = np.minimum(np.searchsorted(self._hashes, h), len(self._hashes) - 1)
            known = self._hashes[at] == h
            gid[known] = self._ids[at[known]]
        missing = np.flatnonzero(gid < 0)
        fresh = np.zeros(len(h), dtype=bool)
        new_hashes = np.zeros(0, dtype=np.uint64)
        if len(missing):
            uniq, first, inverse = np.unique(h[missing], return_index=True, return_inverse=True)
            gid[missing], firsts = numbered(first, inverse.reshape(-1), self.count)
            fresh[missing[firsts]] = True
            new_hashes = uniq[np.argsort(first, kind="stable")]
        if not self._keep(keys, gid, fresh):
            return None
        self._add_hashes(new_hashes)
        return gid, fresh

    def _add_hashes(self, new_hashes: np.ndarray) -> None:
        if not len(new_hashes):
            return
        ids = np.arange(self.count, self.count + len(new_hashes), dtype=np.int64)
        self.count += len(new_hashes)
        hashes = np.concatenate([self._hashes, new_hashes])
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._ids = np.concatenate([self._ids, ids])[order]


def numbered(first: np.ndarray, inverse: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids count, count + 1 ... for distinct values in order of their first row (`first`, as
    np.unique gives it), for every row (`inverse`); and the distinct values in id order."""
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return count + rank[inverse], first[order]
