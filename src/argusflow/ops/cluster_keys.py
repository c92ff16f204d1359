"""racluster's group ids: each distinct aggregation key an id, in order of first appearance,
found through a 64-bit hash of the key row.

A polars join of a batch's key columns against every known key (ops.key_ids) held tens of MB
per batch (its hash tables over a dozen columns) and took a sixth of racluster's time.  Here a
key row is hashed once (polars `hash_rows`), and the hashes are looked up in a sorted array
(numpy `searchsorted`): a few bytes per key.  A hash does not prove a key, so every batch is
checked against the keys themselves (the known key of each row's id, gathered and compared
column by column); should two keys ever share a hash, that batch and all later ones are
numbered by the exact join instead.  The ids are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from argusflow.ops.key_ids import number_keys


@dataclass
class KeyIndex:
    """The keys seen so far: their hashes (sorted, with their ids) and the key rows by id."""

    count: int = 0
    table: pl.DataFrame | None = None  # key columns and `_gid`, row i = id i (ops.key_ids)
    exact: bool = False                # a hash collision was seen: ops.key_ids from then on
    _hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    _ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def number(self, keys: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Id of every row's key (new keys numbered in order of appearance) and which rows are
        the first of a new key."""
        if not self.exact:
            found = self._by_hash(keys)
            if found is not None:
                return found
            self.exact = True  # two keys share a hash: nothing of this batch was kept
        gid, fresh, self.table, self.count = number_keys(keys, self.table, self.count)
        return gid, fresh

    def _by_hash(self, keys: pl.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
        h = keys.hash_rows().to_numpy()
        gid = np.full(len(h), -1, dtype=np.int64)
        if len(self._hashes):
            at = np.minimum(np.searchsorted(self._hashes, h), len(self._hashes) - 1)
            known = self._hashes[at] == h
            gid[known] = self._ids[at[known]]
        missing = np.flatnonzero(gid < 0)
        fresh = np.zeros(len(h), dtype=bool)
        new_hashes = np.zeros(0, dtype=np.uint64)
        if len(missing):
            # New keys in order of their first row: ids count, count + 1, ...
            uniq, first, inverse = np.unique(h[missing], return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            gid[missing] = self.count + rank[inverse.reshape(-1)]
            fresh[missing[first]] = True
            new_hashes = uniq[order]
        new = keys.filter(pl.Series(fresh)) if len(missing) else keys.clear()
        table = self._grown_table(new)
        if not keys.equals(table.drop("_gid")[gid], null_equal=True):
            return None
        self.table = table
        self._add_hashes(new_hashes)
        return gid, fresh

    def _grown_table(self, new: pl.DataFrame) -> pl.DataFrame:
        if not new.height and self.table is not None:
            return self.table
        rows = new.with_columns(
            (pl.int_range(pl.len(), dtype=pl.Int64) + self.count).alias("_gid"))
        # One chunk: gathering the check rows from a table of many chunks took 2.5x longer.
        return rows if self.table is None else pl.concat([self.table, rows], rechunk=True)

    def _add_hashes(self, new_hashes: np.ndarray) -> None:
        if not len(new_hashes):
            return
        ids = np.arange(self.count, self.count + len(new_hashes), dtype=np.int64)
        self.count += len(new_hashes)
        hashes = np.concatenate([self._hashes, new_hashes])
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._ids = np.concatenate([self._ids, ids])[order]
