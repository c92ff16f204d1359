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
    keys = keys.with_row_index("_row")
    firsts = keys.unique(subset=names, keep="first", maintain_order=True)
    if table is not None:
        firsts = firsts.join(table, on=names, how="anti", maintain_order="left")
    fresh = np.zeros(keys.height, dtype=bool)
    if firsts.height:
        fresh[firsts["_row"].to_numpy()] = True
        new = firsts.select(names).with_columns(
            (pl.int_range(pl.len(), dtype=pl.Int64) + count).alias("_gid"))
        table = new if table is None else pl.concat([table, new])
        count += new.height
    assert table is not None
    joined = keys.join(table, on=names, how="left", maintain_order="left")
    return joined["_gid"].to_numpy().astype(np.int64), fresh, table, count
