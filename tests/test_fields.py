"""The field table: every entry is complete and its value builds over any batch."""

from __future__ import annotations

import polars as pl
import pytest

from argusflow.records.fields import DEFAULT_FIELDS, FIELDS, NONE, field
from argusflow.records.schema import SCHEMA, empty_batch

MERGES = {"sum", "min", "max", "first", "last", "or", "equal", "prefix", "min-nonzero", NONE}
FORMATS = {"int", "float", "time", "hex4", "text", "special"}


def one_row() -> pl.DataFrame:
    row = {name: [b"" if dtype == pl.Binary else "" if dtype == pl.String else 0]
           for name, dtype in SCHEMA.items()}
    row.update(rtype=[0x10], cause=[0x10], dsrs=[0b1111], flow_qual=[1], proto=[6], spkts=[3],
               dpkts=[2], sbytes=[300], dbytes=[200], sstart=[1_700_000_000_000_000],
               slast=[1_700_000_001_500_000])
    return pl.DataFrame(row, schema=SCHEMA)


def test_entries_are_complete() -> None:
    labels = set()
    for name, f in FIELDS.items():
        assert f.name == name and f.width > 0 and f.label
        assert f.merge in MERGES, name
        assert f.fmt in FORMATS, name
        assert f.dsr is None or f.dsr in {*SCHEMA_DSRS, "user"}, name
        labels.add(f.label)
    assert len(labels) == len(FIELDS)  # labels are unique, as ra's header needs
    assert all(n in FIELDS for n in DEFAULT_FIELDS)


SCHEMA_DSRS = {"transport", "flow", "time", "metric", "psize", "encaps", "net", "asn", "icmpmap",
               "vlan", "mac", "mpls", "jitter", "attr", "suser", "duser", "behavior", "agr", "cor",
               "cocode", "label"}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_value_and_presence_build_over_batches(name: str) -> None:
    f = field(name)
    for frame in (empty_batch(), one_row()):
        out = frame.select(f.value().alias("v"))
        assert out.height in (frame.height, 1)
        if f.present is not None:
            assert frame.select(f.present().alias("p"))["p"].dtype == pl.Boolean


def test_values_a_filter_can_use() -> None:
    frame = one_row()
    assert frame.select(field("pkts").value())[0, 0] == 5
    assert frame.select(field("bytes").value())[0, 0] == 500
    assert frame.select(field("dur").value())[0, 0] == pytest.approx(1.5)
    assert frame.select(field("state").value())[0, 0] == "CON"
    assert frame.select(field("rate").value())[0, 0] == pytest.approx(4 / 1.5, rel=1e-6)
