"""Numbering of aggregation keys: each distinct key an id, in order of first appearance, kept
across batches (a polars join per batch, no Python per record)."""

from __future__ import annotations

import numpy as np
import polars as pl


def number_keys(keys: pl.DataFrame, table: pl.DataFrame | None,
                count: int) -> tuple[np.ndarray, np.ndarray, pl.DataFrame, int]:
    """Id of every row's key in `table` (new keys numbered from `count` in order of
    appearance), which rows are first of a new key, and the grown table and count."""
    names = keys.columns
    # One join against the known keys; only the rows it leaves without an id (usually few once
    # the first batches are in) go through `unique` and a second, small join.
    if table is None:
        gid = pl.Series("_gid", [None] * keys.height, dtype=pl.Int64)
    else:
        gid = keys.join(table, on=names, how="left", maintain_order="left",
                        nulls_equal=True)["_gid"]
    fresh = np.zeros(keys.height, dtype=bool)
    missing = gid.is_null()
    if missing.any():
        rows = keys.with_row_index("_row").filter(missing)
        firsts = rows.unique(subset=names, keep="first", maintain_order=True)
        fresh[firsts["_row"].to_numpy()] = True
        new = firsts.select(names).with_columns(
            (pl.int_range(pl.len(), dtype=pl.Int64) + count).alias("_gid"))
        table = new if table is None else pl.concat([table, new])
        count += new.height
        ids = rows.join(new, on=names, how="left", maintain_order="left",
                        nulls_equal=True)["_gid"]
        gid = gid.scatter(rows["_row"], ids)
    assert table is not None
    return gid.to_numpy().astype(np.int64), fresh, table, count
