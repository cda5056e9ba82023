"""Turn the IR back into text: ``to_source`` (canonical text) and ``explain`` (text with values).

The canonical text uses lower-case keywords, single-quoted strings, one space around operators and
only the brackets the precedence rules need, so ``parse(to_source(node)) == node``.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Callable, Mapping

from .ast import Between, Binary, BoolOp, Call, Const, In, IsNull, Name, Node, Unary

# Binding strength, loosest first (see the grammar in parser.py).
_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _NEG, _ATOM = range(1, 9)
_PREC = {"or": _OR, "and": _AND, "+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "%": _PRODUCT}

_STRING_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(text: str) -> str:
    return "'" + "".join(_STRING_ESCAPES.get(c, c) for c in text) + "'"


def const_text(value: Any) -> str:
    """A constant as it is written in an expression."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, datetime):
        raise ValueError(f"a datetime constant ({value}) has no text form")
    if isinstance(value, date):
        return f"date('{value.isoformat()}')"
    if isinstance(value, (int, float)):
        return repr(value)  # repr of a float reads back as the same float
    raise ValueError(f"{value!r} cannot be written in an expression")


def value_text(value: Any) -> str:
    """A data value as shown by ``explain`` (dates in plain ISO form)."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if value is None or isinstance(value, (bool, int, float, str)):
        return const_text(value)
    return str(value)


def _prec(node: Node) -> int:
    if isinstance(node, BoolOp):
        return _PREC[node.op]
    if isinstance(node, Unary):
        return _NOT if node.op == "not" else _NEG
    if isinstance(node, Binary):
        return _PREC.get(node.op, _COMPARE)
    if isinstance(node, (In, Between, IsNull)):
        return _COMPARE
    if isinstance(node, Const) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool) \
            and node.value < 0:
        return _NEG
    return _ATOM


def _render(node: Node, name_text: Callable[[str], str]) -> str:
    def sub(child: Node, needs_brackets: bool) -> str:
        text = _render(child, name_text)
        return f"({text})" if needs_brackets else text

    def operand(child: Node) -> str:  # an operand of a comparison, in, between or is null
        return sub(child, _prec(child) <= _COMPARE)

    if isinstance(node, Const):
        return const_text(node.value)
    if isinstance(node, Name):
        return name_text(node.name)
    if isinstance(node, Unary):
        if node.op == "not":
            return "not " + sub(node.operand, _prec(node.operand) < _NOT)
        return "-" + sub(node.operand, _prec(node.operand) < _NEG)
    if isinstance(node, BoolOp):
        own = _PREC[node.op]
        return f" {node.op} ".join(sub(o, _prec(o) <= own) for o in node.operands)
    if isinstance(node, Binary):
        own = _prec(node)
        if own == _COMPARE:
            return f"{operand(node.left)} {node.op} {operand(node.right)}"
        # Left-associative: a - b - c is (a - b) - c, so only the right side needs brackets at equal strength.
        return f"{sub(node.left, _prec(node.left) < own)} {node.op} {sub(node.right, _prec(node.right) <= own)}"
    if isinstance(node, In):
        if isinstance(node.options, tuple):
            options = "[" + ", ".join(_render(o, name_text) for o in node.options) + "]"
        else:
            options = _render(node.options, name_text)
        return f"{operand(node.value)} {'not in' if node.negated else 'in'} {options}"
    if isinstance(node, Between):
        if node.inclusive:
            return f"{operand(node.value)} between {operand(node.low)} and {operand(node.high)}"
        # No text form for an exclusive range: write the two comparisons it means.
        value = operand(node.value)
        return f"{value} > {operand(node.low)} and {value} < {operand(node.high)}"
    if isinstance(node, IsNull):
        return f"{operand(node.value)} {'is not null' if node.negated else 'is null'}"
    if isinstance(node, Call):
        return f"{node.func}(" + ", ".join(_render(a, name_text) for a in node.args) + ")"
    raise TypeError(f"not an expression node: {node!r}")


def to_source(node: Node) -> str:
    """The canonical text of an expression."""
    return _render(node, lambda name: name)


def explain(node: Node, ctx: Mapping[str, Any]) -> str:
    """The expression text with every name followed by its value, e.g. ``monetary_365d(=62000.0) >= 50000``."""
    return _render(node, lambda name: f"{name}(={value_text(ctx.get(name))})")
