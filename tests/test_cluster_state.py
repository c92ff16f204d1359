"""racluster's group state kept at each column's own width (ops.cluster WIDTHS): the largest and
smallest value of every width comes back out of a group unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from argusflow.ops.cluster import MERGED, WIDTHS, Clusterer, parse_model
from argusflow.records.schema import DSR_BITS, SCHEMA
from argusflow.records.source import iter_batches

# One merging column of each width, each set to the edges of its type.
EDGES: dict[str, list[int]] = {
    "saddr_hi": [0, 2**64 - 1, 2**63],      # u64, 8 bytes
    "sbytes": [0, 2**64 - 1, 2**63 + 5],    # u64 counter
    "snstroke": [0, -1, -(2**31)],          # i32, kept 8 bytes (sign-extended)
    "stcp_seq": [0, 2**32 - 1, 2**31],      # u32, 4 bytes
    "sport": [0, 2**16 - 1, 2**15],         # u16, 2 bytes
    "sttl": [0, 255, 128],                  # u8, 1 byte
}


def _one_tcp_record(bundled_sample: Path) -> pl.DataFrame:
    batch = pl.concat(list(iter_batches(str(bundled_sample))))
    flows = batch.filter((pl.col("rtype") == 0x10) & (pl.col("proto") == 6))
    assert flows.height, "the bundled sample has TCP flow records"
    return flows.head(1)


def test_widths_cover_every_merging_column() -> None:
    held = np.sort(np.concatenate(list(WIDTHS.values())))
    assert np.array_equal(held, np.arange(len(MERGED)))


def test_edge_values_survive_the_narrow_state(bundled_sample: Path) -> None:
    """Three groups (-m srcid), one record each: the state row written from the record and read
    back for the output holds every edge value of every width."""
    record = _one_tcp_record(bundled_sample)
    batch = pl.concat([record] * 3).with_columns(
        pl.Series("srcid", [1, 2, 3], dtype=SCHEMA["srcid"]),
        *[pl.Series(name, values, dtype=SCHEMA[name]) for name, values in EDGES.items()])
    clusterer = Clusterer(model=parse_model(["srcid"]))
    clusterer.add(batch)
    out = clusterer.result()
    assert out["srcid"].to_list() == [1, 2, 3]
    for name, values in EDGES.items():
        assert out[name].to_list() == values, name


@pytest.mark.parametrize("name", ["spkts", "sbytes", "dbytes"])
def test_sums_past_32_bits(bundled_sample: Path, name: str) -> None:
    """Counters that merge by adding keep 64 bits in the state."""
    record = _one_tcp_record(bundled_sample)
    big = 3 * 2**32
    batch = pl.concat([record] * 2).with_columns(
        pl.Series(name, [big, big], dtype=SCHEMA[name]))
    clusterer = Clusterer(model=parse_model(["srcid"]))
    clusterer.add(batch)
    assert clusterer.result()[name].to_list() == [2 * big]


def test_signed_32_bit_sums_wrap_as_in_c(bundled_sample: Path) -> None:
    """Keystroke counts (i32) add up as C ints do: hostile input near 2**31 wraps, it does not
    end racluster with a traceback from the cast back to the column's type."""
    record = _one_tcp_record(bundled_sample)
    batch = pl.concat([record] * 2).with_columns(
        pl.Series("snstroke", [2**31 - 1] * 2, dtype=SCHEMA["snstroke"]),
        pl.col("dsrs") | DSR_BITS["behavior"])
    clusterer = Clusterer(model=parse_model(["srcid"]))
    clusterer.add(batch)
    assert clusterer.result()["snstroke"].to_list() == [-2]
