"""racluster's group ids: each distinct aggregation key an id, in order of first appearance,
found through a 64-bit hash of the key row.

A polars join of a batch's key columns against every known key (ops.key_ids) held tens of MB
per batch (its hash tables over a dozen columns) and took a sixth of racluster's time.  Here a
key row is hashed once (polars `hash_rows`), and the hashes are looked up in a sorted array
(numpy `searchsorted`): a few bytes per key.  A hash does not prove a key, so every batch is
checked against the keys themselves (the known key of each row's id, gathered and compared
column by column); should two keys ever share a hash, that batch and all later ones are
numbered by the exact join instead.  The ids are the same either way.  The hash lookup is
ops.hashed_ids's, which ops.cluster_columns.RowKeys (numpy key rows) shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from argusflow.ops.hashed_ids import HashedIds
from argusflow.ops.key_ids import number_keys


@dataclass
class KeyIndex(HashedIds):
    """The keys seen so far: their hashes (ops.hashed_ids) and the key rows by id."""

    table: pl.DataFrame | None = None  # key columns and `_gid`, row i = id i (ops.key_ids)

    def _hash(self, keys: pl.DataFrame) -> np.ndarray:
        return keys.hash_rows().to_numpy()

    def _keep(self, keys: pl.DataFrame, gid: np.ndarray, fresh: np.ndarray) -> bool:
        new = keys.filter(pl.Series(fresh)) if fresh.any() else keys.clear()
        table = self._grown_table(new)
        if not keys.equals(table.drop("_gid")[gid], null_equal=True):
            return False
        self.table = table
        return True

    def _exact(self, keys: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        gid, fresh, self.table, self.count = number_keys(keys, self.table, self.count)
        return gid, fresh

    def _grown_table(self, new: pl.DataFrame) -> pl.DataFrame:
        if not new.height and self.table is not None:
            return self.table
        rows = new.with_columns(
            (pl.int_range(pl.len(), dtype=pl.Int64) + self.count).alias("_gid"))
        # One chunk: gathering the check rows from a table of many chunks took 2.5x longer.
        return rows if self.table is None else pl.concat([self.table, rows], rechunk=True)
