"""The numpy back-end of the record filter: the same compiler, other building blocks.

filter.compile_records writes each primitive once with a few polars-like building blocks
(`col`, `lit`, `when`, `any_horizontal`, operators, `.cast`, `.is_in` ...).  Compiled with
`NumpyOps` instead of polars, those blocks build `NpExpr`s: closures over a batch's numpy columns
(a mapping name -> array, as records.dsr_decode returns them), evaluated in one call per batch.
That skips building a polars frame of the probe columns and polars' per-query overhead, which
for `ra -w - FILTER` costs more than the comparisons themselves.

Field-table values other than plain columns come from filter.numpy_fields; integers inside the
opaque network DSR payloads (ICMP, ARP ...) from `opaque_int`.  What the numpy blocks do not
cover raises `Unsupported` while compiling: the filter then runs on polars only (every listed
expression of tests/test_filter_diff.py has a numpy form now).  tests/test_filter_backends.py
checks that both give the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Columns = Mapping[str, np.ndarray]
Fn = Callable[[Columns], Any]  # an array, or a numpy scalar that broadcasts


class Unsupported(AttributeError):
    """A building block the numpy back-end does not have: compile for polars only.  (An
    AttributeError, so that hasattr() and copy see a missing method as missing.)"""


# The dtypes the compiler casts to, by their polars names.
DTYPES: dict[str, type] = {"Int64": np.int64, "Int32": np.int32, "UInt8": np.uint8,
                           "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64,
                           "Float32": np.float32, "Float64": np.float64, "Boolean": np.bool_}


def dtype(name: str) -> np.dtype:
    if name not in DTYPES:
        raise Unsupported(f"dtype {name}")
    return np.dtype(DTYPES[name])


def _scalar(value: Any) -> Any:
    """A literal as numpy holds it: `~` must negate a boolean, not give -2."""
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, (int, float, str, bytes)):
        return value
    raise Unsupported(f"literal {value!r}")


def _bool_like(x: Any) -> bool:
    return getattr(x, "dtype", None) == np.bool_


@dataclass(frozen=True, eq=False)
class NpExpr:
    """A deferred computation over a batch's columns; `roots` are the columns it reads."""

    fn: Fn
    roots: frozenset[str]

    def __call__(self, cols: Columns) -> Any:
        return self.fn(cols)

    def evaluate(self, cols: Columns, n: int) -> np.ndarray:
        """One boolean per record (a constant result is broadcast to the `n` records)."""
        out = np.asarray(self.fn(cols), dtype=np.bool_)
        return out if out.shape == (n,) else np.broadcast_to(out, (n,)).copy()

    # -- operators: elementwise, as polars' (bitwise on integers, logical on booleans)
    def _bin(self, other: Any, op: Callable[[Any, Any], Any]) -> NpExpr:
        o = as_expr(other)
        f, g = self.fn, o.fn
        return NpExpr(lambda c: op(f(c), g(c)), self.roots | o.roots)

    def __and__(self, other: Any) -> NpExpr:
        o = as_expr(other)
        f, g = self.fn, o.fn

        def both(c: Columns) -> Any:
            left = f(c)
            if _bool_like(left) and not left.any():  # nothing left to keep: skip the right side
                return left
            return left & g(c)

        return NpExpr(both, self.roots | o.roots)

    def __or__(self, other: Any) -> NpExpr:
        o = as_expr(other)
        f, g = self.fn, o.fn

        def either(c: Columns) -> Any:
            left = f(c)
            if _bool_like(left) and left.all():  # everything kept already
                return left
            return left | g(c)

        return NpExpr(either, self.roots | o.roots)

    def __rand__(self, other: Any) -> NpExpr:
        return as_expr(other) & self

    def __ror__(self, other: Any) -> NpExpr:
        return as_expr(other) | self

    def __invert__(self) -> NpExpr:
        f = self.fn
        return NpExpr(lambda c: ~f(c), self.roots)

    def __eq__(self, other: Any) -> NpExpr:  # type: ignore[override]
        return self._bin(other, lambda a, b: a == b)

    def __ne__(self, other: Any) -> NpExpr:  # type: ignore[override]
        return self._bin(other, lambda a, b: a != b)

    def __gt__(self, other: Any) -> NpExpr:
        return self._bin(other, lambda a, b: a > b)

    def __ge__(self, other: Any) -> NpExpr:
        return self._bin(other, lambda a, b: a >= b)

    def __lt__(self, other: Any) -> NpExpr:
        return self._bin(other, lambda a, b: a < b)

    def __le__(self, other: Any) -> NpExpr:
        return self._bin(other, lambda a, b: a <= b)

    def __add__(self, other: Any) -> NpExpr:
        return self._bin(other, lambda a, b: a + b)

    def __radd__(self, other: Any) -> NpExpr:
        return as_expr(other) + self

    def __sub__(self, other: Any) -> NpExpr:
        return self._bin(other, lambda a, b: a - b)

    def __mul__(self, other: Any) -> NpExpr:
        return self._bin(other, lambda a, b: a * b)

    def __rmul__(self, other: Any) -> NpExpr:
        return as_expr(other) * self

    def __neg__(self) -> NpExpr:
        f = self.fn
        return NpExpr(lambda c: -f(c), self.roots)

    def __floordiv__(self, other: Any) -> NpExpr:
        return self._bin(other, lambda a, b: a // b)

    __hash__ = object.__hash__

    # -- the methods of polars.Expr the compiler uses
    def cast(self, want: np.dtype, wrap_numerical: bool = False) -> NpExpr:
        """astype: integers always wrap here, as polars' with `wrap_numerical`."""
        f = self.fn
        return NpExpr(lambda c: np.asarray(f(c)).astype(want, copy=False), self.roots)

    def is_in(self, values: Iterable[Any]) -> NpExpr:
        """Membership; the compiler asks it of a few small codes (subtypes), where a few
        comparisons are ~50x cheaper than np.isin on a batch."""
        wanted = list(values)
        f = self.fn
        if 0 < len(wanted) <= 8 and all(isinstance(v, int) for v in wanted):
            def any_of(c: Columns) -> Any:
                x = f(c)
                out = x == wanted[0]
                for v in wanted[1:]:
                    out |= x == v
                return out

            return NpExpr(any_of, self.roots)
        array = np.asarray(wanted)
        return NpExpr(lambda c: np.isin(f(c), array), self.roots)

    def replace_strict(self, mapping: dict[int, int], default: int,
                       return_dtype: Any = None) -> NpExpr:
        """A lookup table over byte values (the compiler maps DSR subtypes)."""
        if any(not 0 <= k < 256 for k in mapping):
            raise Unsupported("replace_strict beyond byte values")
        table = np.full(256, default, dtype=return_dtype or np.int64)
        table[list(mapping)] = list(mapping.values())
        f = self.fn

        def lookup(c: Columns) -> Any:
            x = np.asarray(f(c))
            # bytes index the table as they are (a cast to intp first costs ten times more)
            return table[x if x.dtype == np.uint8 else x.astype(np.intp)]

        return NpExpr(lookup, self.roots)

    def fill_null(self, value: Any) -> NpExpr:
        return self  # numpy columns have no nulls (records.schema: absent DSRs read 0)

    def map_batches(self, function: Callable[[Any], Any], **_: Any) -> NpExpr:
        f = self.fn
        return NpExpr(lambda c: function(np.asarray(f(c))), self.roots)

    def __getattr__(self, name: str) -> Any:
        raise Unsupported(f"polars method .{name}")


def as_expr(value: Any) -> NpExpr:
    if isinstance(value, NpExpr):
        return value
    constant = _scalar(value)
    return NpExpr(lambda c: constant, frozenset())


def col(name: str) -> NpExpr:
    return NpExpr(lambda c: c[name], frozenset({name}))


def lit(value: Any) -> NpExpr:
    return as_expr(value)


class When:
    """`when(c).then(v)[.when(c2).then(v2)...].otherwise(w)` as nested numpy selects.

    A condition that holds for none (or all) of a batch's records skips the branch it rules
    out: the ARP-REVERSE variant of a filter, for one, costs nothing on a batch without ARP."""

    def __init__(self, branches: list[tuple[NpExpr, NpExpr]], condition: NpExpr) -> None:
        self.branches, self.condition = branches, condition

    def then(self, value: Any) -> Then:
        return Then([*self.branches, (self.condition, as_expr(value))])


class Then:
    def __init__(self, branches: list[tuple[NpExpr, NpExpr]]) -> None:
        self.branches = branches

    def when(self, condition: Any) -> When:
        return When(self.branches, as_expr(condition))

    def otherwise(self, value: Any) -> NpExpr:
        out = as_expr(value)
        for condition, branch in reversed(self.branches):
            out = _select(condition, branch, out)
        return out

    def __getattr__(self, name: str) -> Any:
        raise Unsupported(f"when/then without otherwise (.{name}): nulls")


def _select(condition: NpExpr, yes: NpExpr, no: NpExpr) -> NpExpr:
    cf, yf, nf = condition.fn, yes.fn, no.fn

    def pick(c: Columns) -> Any:
        where = np.asarray(cf(c), dtype=np.bool_)
        if not where.any():
            return nf(c)
        if where.all():
            return yf(c)
        return np.where(where, yf(c), nf(c))

    return NpExpr(pick, condition.roots | yes.roots | no.roots)


def opaque_int(wanted: NpExpr, index: int, width: int, endianness: str) -> NpExpr:
    """The unsigned `width`-byte integer at byte `index` of column net_raw (bytes objects) where
    `wanted`; 0 elsewhere and past a payload's end (compile_records.Builder.opaque_int).  The
    payloads wanted are joined once and the bytes gathered at their offsets."""
    weights = 256 ** np.arange(width, dtype=np.int64)
    if endianness == "big":
        weights = weights[::-1]
    pick = wanted.fn

    def read(c: Columns) -> np.ndarray:
        column = c["net_raw"]
        out = np.zeros(len(column), dtype=np.int64)
        rows = np.flatnonzero(np.broadcast_to(np.asarray(pick(c), dtype=np.bool_), out.shape))
        if not len(rows):
            return out
        raws = _payloads(column[rows])
        lengths = np.fromiter(map(len, raws), dtype=np.int64, count=len(raws))
        whole = lengths >= index + width
        if whole.any():
            data = np.frombuffer(b"".join(raws), dtype=np.uint8)
            at = (np.cumsum(lengths) - lengths)[whole] + index
            out[rows[whole]] = data[at[:, None] + np.arange(width)].astype(np.int64) @ weights
        return out

    return NpExpr(read, wanted.roots | {"net_raw"})


def _payloads(raws: np.ndarray) -> np.ndarray:
    """Bytes objects: a column no record of the batch wrote holds zeros (the reader's fill),
    and one from polars holds None for nulls; both read as no payload."""
    if all(map(bytes.__instancecheck__, raws)):
        return raws
    return np.array([r if isinstance(r, bytes) else b"" for r in raws], dtype=object)


def when(condition: Any) -> When:
    return When([], as_expr(condition))


def any_horizontal(*exprs: Any) -> NpExpr:
    return _fold("any_horizontal", exprs, lambda a, b: a | b)


def max_horizontal(*exprs: Any) -> NpExpr:
    return _fold("max_horizontal", exprs, lambda a, b: a._bin(b, np.maximum))


def _fold(name: str, exprs: tuple[Any, ...], combine: Callable[[NpExpr, NpExpr], NpExpr]) -> NpExpr:
    """The expressions (or one list of them) combined left to right, as polars' *_horizontal."""
    parts = [as_expr(e) for e in _flatten(exprs)]
    if not parts:
        raise Unsupported(f"{name} of nothing")
    out = parts[0]
    for p in parts[1:]:
        out = combine(out, p)
    return out


def _flatten(exprs: tuple[Any, ...]) -> list[Any]:
    if len(exprs) == 1 and isinstance(exprs[0], (list, tuple)):
        return list(exprs[0])
    return list(exprs)
