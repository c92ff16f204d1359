"""Fixed-width lines through the compiled line writer (records/linekernel.py).

The printer describes each column as a `KernelColumn`: one int64 per record and a small table
of texts (see linekernel for what the numbers mean); `write_lines` packs them and the kernel
writes every line of the batch into one byte buffer, without the GIL.  Texts the kernel does not
make itself (IPv6 addresses, names, rare columns) come as table entries, made by polars once
per distinct value or, for a column the printer cannot code, once per record.

The kernel comes from argusflow.aot's precompiled extension; with `ARGUSFLOW_JIT=1` from
numba's JIT.  Without either (a failed build, no numba), `available()` is False and the printer
keeps its polars path.  `ENABLED = False` (or ARGUSFLOW_LINE_WRITER=0) turns the kernel off:
tests compare both paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from argusflow.records import linekernel as k

if TYPE_CHECKING:
    import polars as pl

ENABLED = os.environ.get("ARGUSFLOW_LINE_WRITER", "1") != "0"
NULL = k.NULL
TEXT, INT, FIXED, TIME, IPV4, CHARS7 = k.TEXT, k.INT, k.FIXED, k.TIME, k.IPV4, k.CHARS7
# the longest text of each kind beyond its table entries (a sign and 19 digits, ...)
_KIND_BYTES = {TEXT: 0, INT: 20, FIXED: 41, TIME: 6, IPV4: 15, CHARS7: 9}

_kernel: list[Callable[..., Any] | None] = []


def available() -> bool:
    """The compiled writer can be used (loaded, or loadable without building anything slow
    more than once)."""
    if not ENABLED:
        return False
    if not _kernel:
        _kernel.append(_load())
    return _kernel[0] is not None


def _load() -> Callable[..., Any] | None:
    from argusflow import aot

    fn = aot.function("write_lines")
    if fn is None and os.environ.get("ARGUSFLOW_JIT"):
        try:
            fn = k.WRITE_LINES.numba()
        except ImportError:  # no numba: the polars path
            return None
    return fn


@dataclass
class Table:
    """Texts as UTF-8 bytes and the byte length of each."""

    data: bytes
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    def offsets(self) -> np.ndarray:
        """Where each text starts, and the end."""
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def gather(self, entries: np.ndarray) -> Table:
        """The table of these entries only."""
        lengths = self.lengths[entries]
        total = int(lengths.sum())
        if total == 0:
            return Table(b"", lengths)
        starts = self.offsets()[entries]
        # byte k of the result comes from starts[entry] + (k - where that entry starts in it)
        shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        data = np.frombuffer(self.data, dtype=np.uint8)[shift + np.arange(total)]
        return Table(data.tobytes(), lengths)

    def is_ascii(self) -> bool:
        return self.data.isascii()

    def longest(self) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0


def table(texts: pl.Series | list[str]) -> Table:
    """The texts as a Table (nulls are blank).  A list is packed without polars (the
    polars-free printer, records.numpy_lines)."""
    if isinstance(texts, list):
        encoded = [t.encode() for t in texts]
        return Table(b"".join(encoded), np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    import polars as pl

    s = texts.cast(pl.String).fill_null("")
    if s.len() == 0:
        return Table(b"", np.zeros(0, dtype=np.int64))
    data = s.str.join("").item().encode()
    return Table(data, s.str.len_bytes().to_numpy().astype(np.int64))


def join_tables(*tables: Table) -> Table:
    return Table(b"".join(t.data for t in tables), np.concatenate([t.lengths for t in tables]))


BLANK = table([""])


@dataclass
class KernelColumn:
    """One column for the kernel: kind, values (int64 per record), table and layout."""

    kind: int
    values: np.ndarray
    table: Table
    width: int = 0
    align_left: bool = False
    cut: bool = False           # a longer text is just cut (no '*')
    param: int = 0              # decimals (FIXED, TIME) or characters (CHARS7)
    pieces: int = 0             # TIME: texts per second
    seconds: int = 0            # TIME: how many seconds the table holds
    joined: bool = False        # '.' before it unless it starts blank (a port after its address)

    def most_bytes(self) -> int:
        """The longest cell this column can write, before fitting."""
        longest = self.table.longest()
        if self.kind == TIME:
            return longest * max(self.pieces, 1) + _KIND_BYTES[TIME] * self.pieces
        return max(longest, _KIND_BYTES[self.kind] + self.param)


def with_texts(values: np.ndarray, rows: np.ndarray, base: Table, texts: pl.Series | list[str]
               ) -> tuple[np.ndarray, Table]:
    """`rows` show `texts` (entries appended to `base`), as NULL-coded values."""
    extra = table(texts)
    values[rows] = NULL - (len(base) + np.arange(len(rows), dtype=np.int64))
    return values, join_tables(base, extra)


def write_lines(columns: list[KernelColumn], n: int) -> memoryview:
    """Every line (newline-ended) of `n` records, as bytes."""
    assert available()
    fn = _kernel[0]
    assert fn is not None
    columns = [_compact(col) for col in columns]
    ncols = len(columns)
    vals = np.empty((ncols, n), dtype=np.int64)
    spec = np.zeros((ncols, k.SPEC_COLUMNS), dtype=np.int64)
    per_line = 1
    for j, col in enumerate(columns):
        vals[j] = col.values
        spec[j] = _spec_row(col)
        per_line += max(col.width, 0) + col.most_bytes() + 2
    whole = join_tables(*(col.table for col in columns))
    counts = np.array([len(col.table) for col in columns], dtype=np.int64)
    tbase = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    toff = np.concatenate([[0], np.cumsum(whole.lengths)]).astype(np.int64)
    tbytes = np.frombuffer(whole.data, dtype=np.uint8) if whole.data else np.zeros(1, dtype=np.uint8)
    out = np.empty(n * per_line + 1, dtype=np.uint8)
    end = fn(vals, spec, tbytes, toff, tbase, out)
    return memoryview(out)[:end]


def _compact(col: KernelColumn) -> KernelColumn:
    """A TEXT column whose table is much larger than the batch (all port names, ...) keeps
    only the entries it uses: every table is copied into the kernel's buffer per batch."""
    size = len(col.table)
    if col.kind != TEXT or size <= max(4096, len(col.values)):
        return col
    used = np.zeros(size, dtype=bool)
    used[col.values] = True
    entries = np.flatnonzero(used)
    renumber = np.cumsum(used) - 1
    return replace(col, values=renumber[col.values], table=col.table.gather(entries))


def _spec_row(col: KernelColumn) -> list[int]:
    row = [0] * k.SPEC_COLUMNS
    row[k.KIND] = col.kind
    row[k.WIDTH] = col.width
    row[k.ALIGN] = k.ALIGN_LEFT if col.align_left else k.ALIGN_RIGHT
    row[k.CUT] = int(col.cut)
    row[k.PARAM] = col.param
    row[k.PIECES] = col.pieces
    row[k.SECONDS] = col.seconds
    row[k.SEP] = int(col.joined)
    row[k.ASCII] = int(col.table.is_ascii())
    row[k.SCALE] = 10 ** col.param if col.kind == FIXED else 1
    row[k.TSCALE] = 10 ** (6 - col.param) if col.kind == TIME else 1
    return row
