"""The intermediate form (IR) of an expression: a small tree of frozen dataclasses.

The node set is deliberately small and regular so that other backends (e.g. a durable_rules
translator) can walk it: Const, Name, Unary, Binary, BoolOp, In, Between, IsNull, Call.

Every node carries ``line``/``col``: the 1-based position in the expression text where the node
starts (for a Binary, where its left operand starts); the root returned by ``parse`` also carries
``origin``, where the text starts in its file. Positions are not part of equality, so two trees that
mean the same are ``==`` wherever they were written.

``to_dict()`` gives a stable, JSON-serialisable form. Leaves are ``{"const": v}`` and
``{"name": n}``; every other node has an ``"op"`` key:

    {"op": ">=", "left": {"name": "monetary_365d"}, "right": {"const": 50000}}
    {"op": "not", "operand": ...}           {"op": "neg", "operand": ...}      (unary minus)
    {"op": "and", "operands": [...]}        {"op": "or", "operands": [...]}
    {"op": "in", "value": ..., "options": [...]}   ("not in"; options may be {"name": n})
    {"op": "between", "value": ..., "low": ..., "high": ..., "inclusive": true}
    {"op": "is null", "value": ...}         {"op": "is not null", "value": ...}
    {"op": "call", "func": "days_since", "args": [...]}

A date or datetime constant (only made by code, not by parsing) is
``{"const": "2024-05-17", "type": "date"}``. ``to_dict(positions=True)`` adds ``"pos": [line, col]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterator, Union

from ..errors import Location

ARITHMETIC_OPS = ("+", "-", "*", "/", "%")
COMPARISON_OPS = ("==", "!=", "<", "<=", ">", ">=")
UNARY_OPS = ("not", "-")
BOOL_OPS = ("and", "or")


@dataclass(frozen=True)
class Node:
    line: int = field(default=1, compare=False, repr=False, kw_only=True)
    col: int = field(default=1, compare=False, repr=False, kw_only=True)
    # Set by parse() on the root node: where the expression text starts in the policy file, so that
    # check() and compile_expr() can report absolute positions without being told again.
    origin: Location | None = field(default=None, compare=False, repr=False, kw_only=True)

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def children(self) -> tuple["Node", ...]:
        return ()

    def walk(self) -> Iterator["Node"]:
        """This node and all nodes below it, parents first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def _with_pos(self, data: dict[str, Any], positions: bool) -> dict[str, Any]:
        if positions:
            data["pos"] = [self.line, self.col]
        return data


@dataclass(frozen=True)
class Const(Node):
    value: Any  # None, bool, int, float, str (and date/datetime when built by code)
    # The text as the author typed it (a string with its own quotes, “...” too), for messages; not
    # part of equality. None when built by code.
    written: str | None = field(default=None, compare=False, repr=False, kw_only=True)

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        if isinstance(self.value, datetime):
            data = {"const": self.value.isoformat(), "type": "datetime"}
        elif isinstance(self.value, date):
            data = {"const": self.value.isoformat(), "type": "date"}
        else:
            data = {"const": self.value}
        return self._with_pos(data, positions)


@dataclass(frozen=True)
class Name(Node):
    name: str

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        return self._with_pos({"name": self.name}, positions)


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "not" or "-"
    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        # "neg" rather than "-" so that a dict's "op" alone tells unary from binary minus.
        op = "neg" if self.op == "-" else self.op
        return self._with_pos({"op": op, "operand": self.operand.to_dict(positions)}, positions)


@dataclass(frozen=True)
class Binary(Node):
    op: str  # one of ARITHMETIC_OPS or COMPARISON_OPS
    left: Node
    right: Node

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        return self._with_pos(
            {"op": self.op, "left": self.left.to_dict(positions), "right": self.right.to_dict(positions)}, positions
        )


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" or "or"
    operands: tuple[Node, ...]  # two or more

    def children(self) -> tuple[Node, ...]:
        return self.operands

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        return self._with_pos({"op": self.op, "operands": [o.to_dict(positions) for o in self.operands]}, positions)


@dataclass(frozen=True)
class In(Node):
    value: Node
    options: Union[tuple[Node, ...], Name]  # a written list, or a name whose value is a list
    negated: bool = False  # "not in"

    def children(self) -> tuple[Node, ...]:
        return (self.value, *self.options) if isinstance(self.options, tuple) else (self.value, self.options)

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        options: Any
        if isinstance(self.options, tuple):
            options = [o.to_dict(positions) for o in self.options]
        else:
            options = self.options.to_dict(positions)
        op = "not in" if self.negated else "in"
        return self._with_pos({"op": op, "value": self.value.to_dict(positions), "options": options}, positions)


@dataclass(frozen=True)
class Between(Node):
    value: Node
    low: Node
    high: Node
    inclusive: bool = True  # the text form "x between a and b" is always inclusive

    def children(self) -> tuple[Node, ...]:
        return (self.value, self.low, self.high)

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        return self._with_pos(
            {
                "op": "between",
                "value": self.value.to_dict(positions),
                "low": self.low.to_dict(positions),
                "high": self.high.to_dict(positions),
                "inclusive": self.inclusive,
            },
            positions,
        )


@dataclass(frozen=True)
class IsNull(Node):
    value: Node
    negated: bool = False  # "is not null"

    def children(self) -> tuple[Node, ...]:
        return (self.value,)

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        op = "is not null" if self.negated else "is null"
        return self._with_pos({"op": op, "value": self.value.to_dict(positions)}, positions)


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.args

    def to_dict(self, positions: bool = False) -> dict[str, Any]:
        return self._with_pos(
            {"op": "call", "func": self.func, "args": [a.to_dict(positions) for a in self.args]}, positions
        )


def free_names(node: Node) -> set[str]:
    """The names an expression reads (for the audit log's "inputs used").

    ``as_of`` is included only when written as a name; the functions that use it implicitly
    (days_since, days_until) do not add it.
    """
    return {n.name for n in node.walk() if isinstance(n, Name)}
