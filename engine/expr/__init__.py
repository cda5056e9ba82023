"""The policy expression language: parse -> IR -> type check -> evaluate.

    >>> from engine import expr
    >>> node = expr.parse("monetary_365d >= 50000 and lifecycle_stage == '签约'")
    >>> expr.check(node, {"monetary_365d": expr.NUMBER, "lifecycle_stage": expr.STRING})
    Type(name='bool', item=None)
    >>> expr.evaluate(node, {"monetary_365d": 62000.0, "lifecycle_stage": "签约"})
    True

Each stage is its own module: ``lexer`` and ``parser`` (text -> ``ast`` nodes), ``check`` (types,
with ``types`` and the shared ``functions`` table), ``evaluate`` (closures), ``render`` (text back).
Null rules are documented in ``evaluate`` and in docs/expressions.md.
"""
from __future__ import annotations

from . import ast, functions, types
from .ast import Between, Binary, BoolOp, Call, Const, In, IsNull, Name, Node, Unary, free_names
from .check import check
from .evaluate import EvaluationError, compile_expr, evaluate
from .functions import FUNCTIONS, Function
from .parser import parse
from .render import explain, to_source
from .types import ANY, BOOL, DATE, DATETIME, LIST, NULL, NUMBER, STRING, Type, parse_type

__all__ = [
    "parse", "check", "compile_expr", "evaluate", "free_names", "explain", "to_source",
    "EvaluationError", "FUNCTIONS", "Function",
    "Type", "NUMBER", "STRING", "BOOL", "DATE", "DATETIME", "LIST", "ANY", "NULL", "parse_type",
    "Node", "Const", "Name", "Unary", "Binary", "BoolOp", "In", "Between", "IsNull", "Call",
    "ast", "functions", "types",
]
