"""The Argus record filter language (`ra - tcp and dst port 80`), parsed once, run as polars.

    >>> from argusflow.filter import compile_filter
    >>> f = compile_filter("tcp and src pkts gt 10")
    >>> batch.filter(f.expr)

`parse(text)` gives the target-independent tree (filter.ast); `compile_filter(text)` gives a
`RecordFilter` whose `.expr` is a boolean `polars.Expr` over the record batch columns of
records.schema, and `.numpy` the same filter over numpy columns (filter.numpy_ops; every
primitive has a numpy form today, None would send the filter to polars only).  Both raise
argusflow.errors.FilterError (1-based column and what was expected).  Compiling is re-entrant:
each compile holds its own back-end (compile_records.Builder).

The semantics are the real ra 3.0.8's, odd parts included; where 3.0.8 is broken we follow the
man page or Argus 5 instead, listed in DEVIATIONS (each has a test in tests/test_filter_parse.py
or tests/test_filter_diff.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from argusflow.filter.ast import Node
from argusflow.filter.compile_records import compile_node, compile_numpy
from argusflow.filter.numpy_ops import NpExpr
from argusflow.filter.parser import parse

if TYPE_CHECKING:
    import polars as pl

__all__ = ["DEVIATIONS", "RecordFilter", "compile_filter", "parse"]

# Where we knowingly differ from the real ra 3.0.8 (key: the construct; value: what and why).
DEVIATIONS: dict[str, str] = {
    "loss": "`[src|dst] loss OP N` is in the man page but a syntax error in 3.0.8; we accept it "
            "and compare the TCP retransmission (or ESP lost-sequence) count, as Argus 5 does.",
    "gap": "`[src|dst] gap OP N` (syntax error in 3.0.8): bytes missing from the TCP sequence "
           "space, seq - seqbase - bytes - 1 when there were no retransmissions.",
    "tcprtt": "`tcprtt OP SECONDS` (Argus 5 only): synack + ackdat of the TCP record.",
    "unr": "the Argus 5 ICMP unreachable codes (unrnet unrhost unrproto unrport unrfrag unrsrcfail "
           "unrnetunk unrhostunk unriso unrnetpro unrhostpro unrnettos unrhosttos unrfilter "
           "unrhostpre unrnetpre) are accepted: an unreachable of that code, seen or mapped.",
    "icmpmap": "3.0.8's `icmpmap` matches every record that lacks an ICMP-mapped DSR; ours "
               "matches only records that carry one (an ICMP error was mapped onto the flow).",
    "lcl/rem": "Argus 5 locality (`lcl`, `rem`) is accepted; without an RA_LOCAL table an address "
               "is local when it is private, loopback or link-local (IPv4 and IPv6).",
    "operators": "after a keyword, 3.0.8 accepts only gt gte lt lte eq (and >= <=); we also accept "
                 "`neq` (Argus 5) and the symbols > < == !=, with their obvious meaning.",
    "loads": "`proto[offset]` in an arithmetic relation reads ra's in-memory C record, which has "
             "no meaning here; we read 0 (which is what 3.0.8 gives at offset 0).",
    "ether multicast": "3.0.8 tests two bytes of its in-memory record; we test the group bit of "
                       "the MAC DSR's source or destination address, as the man page describes.",
    "division": "a division by zero in an arithmetic relation makes 3.0.8 reject every record; "
                "ours is a filter error.",
    "avgdur": "3.0.8 compares 8 bytes of an unset slot of its in-memory record (no flow record "
              "matches `avgdur gt 0`); ours is the mean duration of the merged records (Argus 5), "
              "the record's duration when it was not merged.",
    "jitter integers": "with a whole-number operand (`intpkt gt 1`, `jit gt 0`) 3.0.8 hands its "
                       "code generator the operand type instead of the field and compares an "
                       "unrelated slot; we compare the field, as 3.0.8 does for `intpkt gt 1.0`.",
    "optimizer": "3.0.8's filter optimizer mis-compiles some combinations: `not mpls and dur gte 1` "
                 "selects nothing, `not tcp and not pkts lt 3` selects fewer records than "
                 "`not tcp and pkts gte 3`. We select what the expression says: the logical "
                 "combination of what ra selects for each part (tests/test_filter_diff.py).",
}


class RecordFilter:
    """A compiled filter: `.expr` selects records of a batch; `.text` is what the user wrote.

    `.numpy`, when every primitive allows it, is the same filter over numpy columns
    (`numpy_mask`): cheaper than polars on a few columns of many records, as `ra -w` reads.
    Then `.expr` is compiled on first use: a reader that needs only numpy never imports polars.
    """

    def __init__(self, text: str, tree: Node, numpy: NpExpr | None,
                 expr: pl.Expr | None = None) -> None:
        self.text, self.tree, self.numpy = text, tree, numpy
        self._expr = expr if expr is not None or numpy is not None else compile_node(tree)

    def __repr__(self) -> str:
        return f"RecordFilter({self.text!r})"

    @property
    def expr(self) -> pl.Expr:
        """The boolean polars expression over the columns of a record batch."""
        if self._expr is None:
            self._expr = compile_node(self.tree)
        return self._expr

    @property
    def columns(self) -> frozenset[str]:
        """The batch columns the filter reads."""
        if self.numpy is not None:
            return self.numpy.roots
        return frozenset(self.expr.meta.root_names())

    def mask(self, batch: pl.DataFrame) -> pl.Series:
        """One boolean per record of `batch`."""
        return batch.select(self.expr.alias("match")).to_series()

    def numpy_mask(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """One boolean per record of `n`, from numpy columns holding at least `.columns`."""
        assert self.numpy is not None
        return self.numpy.evaluate(columns, n)

    def apply(self, batch: pl.DataFrame) -> pl.DataFrame:
        """The records of `batch` the filter accepts."""
        return batch.filter(self.expr)


def compile_filter(text: str) -> RecordFilter:
    """Parse and compile a filter expression once; evaluate it on every batch."""
    tree = parse(text)
    return RecordFilter(text, tree, compile_numpy(tree))
