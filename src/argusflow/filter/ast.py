"""The parsed filter: a small tree that knows nothing about record columns or packet layouts.

Leaves are `Prim` nodes: one Argus primitive with its qualifiers already resolved (names looked
up, addresses turned into integers, port ranges split), so that each compiler (records now,
packet batches later) only maps a primitive onto its own data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Direction qualifiers: src, dst, "src or dst" (also the default) and "src and dst".
SRC, DST, EITHER, BOTH = "src", "dst", "or", "and"
# Comparison operators.
EQ, NE, GT, GE, LT, LE = "eq", "ne", "gt", "ge", "lt", "le"


class Node:
    """Base of the filter tree."""

    def walk(self):
        yield self


@dataclass(frozen=True)
class And(Node):
    left: Node
    right: Node

    def walk(self):
        yield self
        yield from self.left.walk()
        yield from self.right.walk()


@dataclass(frozen=True)
class Or(Node):
    left: Node
    right: Node

    def walk(self):
        yield self
        yield from self.left.walk()
        yield from self.right.walk()


@dataclass(frozen=True)
class Not(Node):
    child: Node

    def walk(self):
        yield self
        yield from self.child.walk()


@dataclass(frozen=True)
class Const(Node):
    """A predicate known at parse time (`1 > 0`, `inbound`, an empty expression)."""

    value: bool


@dataclass(frozen=True)
class Prim(Node):
    """One primitive.

    kind   what is tested: "host", "net", "port", "proto", "ttl", "pkts", "syn", "tcp", ...
    dir    SRC / DST / EITHER / BOTH, or "" when the primitive has no direction
    proto  the protocol qualifier as written ("tcp", "ip", "ether", ...) or ""
    op     EQ / NE / GT / GE / LT / LE for valued primitives
    value  the resolved operand (int, float, tuple of address words, bytes, str) or None
    """

    kind: str
    dir: str = ""
    proto: str = ""
    op: str = EQ
    value: object = None
    col: int = field(default=0, compare=False)
