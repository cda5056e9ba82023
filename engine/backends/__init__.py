"""Evaluation backends. Each one answers the same question for a rule set and a customer's
features: which rules' conditions hold. Hit policies are applied afterwards, in ``engine.evaluate``,
identically for every backend."""
from __future__ import annotations

from typing import Protocol

from engine.policy.model import RuleSet


class CompiledRuleSet(Protocol):
    def matching(self, features: dict) -> list[int]:
        """Indices (in rule order) of the rules whose condition is true for these features."""


class Backend(Protocol):
    name: str

    def compile(self, ruleset: RuleSet) -> CompiledRuleSet: ...


def get_backend(name: str) -> Backend:
    if name == "python":
        from engine.backends.python_backend import PythonBackend

        return PythonBackend()
    if name == "durable":
        from engine.backends.durable_backend import DurableBackend

        return DurableBackend()
    raise ValueError(f"unknown engine '{name}': use 'python' or 'durable'")
