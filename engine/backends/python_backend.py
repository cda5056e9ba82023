"""The default backend: each condition is compiled once into nested Python closures
(``engine.expr.compile_expr``; no ``eval``) and called per customer."""
from __future__ import annotations

from engine import expr
from engine.policy.model import RuleSet


class _Compiled:
    __slots__ = ("predicates",)

    def __init__(self, ruleset: RuleSet):
        self.predicates = [expr.compile_expr(rule.condition) for rule in ruleset.rules]

    def matching(self, features: dict) -> list[int]:
        # A condition is true only when it evaluates to exactly True (null counts as false).
        return [i for i, pred in enumerate(self.predicates) if pred(features) is True]


class PythonBackend:
    name = "python"

    def compile(self, ruleset: RuleSet) -> _Compiled:
        return _Compiled(ruleset)
