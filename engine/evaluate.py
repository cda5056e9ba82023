"""Evaluate the rule sets of the stages, in order, for one customer's features.

The backend says which conditions hold; this module applies the hit policy, writes tags and scores
back into the features (so later policies can read them) and returns the firings for the log.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine import expr
from engine.backends import Backend
from engine.policy.model import STAGES, AddScore, Rule, RuleSet, SetTag


@dataclass
class Hit:
    ruleset: RuleSet
    rule: Rule
    inputs: dict
    note: str | None = None


def apply_hit_policy(ruleset: RuleSet, matched: list[int]) -> tuple[list[int], str | None]:
    """The rules that fire, and a note when the table broke its own hit policy.

    unique: at most one row may match; if several do, the first fires and a note says which matched.
    first: the first matching row. priority: the highest priority (ties: the first of them).
    any: several rows may match if their outputs agree; the first fires (a note if they disagree).
    collect: every matching row fires.
    """
    if not matched:
        return [], None
    policy = ruleset.hit_policy
    if policy == "collect":
        return matched, None
    if policy == "first":
        return matched[:1], None
    if policy == "priority":
        best = max(matched, key=lambda i: (ruleset.rules[i].priority, -i))
        return [best], None
    ids = ", ".join(ruleset.rules[i].rule_id for i in matched)
    if policy == "unique":
        note = f"hit policy unique, but {len(matched)} rows matched ({ids}); the first was used" if len(matched) > 1 else None
        return matched[:1], note
    if policy == "any":
        outs = {repr(ruleset.rules[i].outputs) for i in matched}
        note = f"hit policy any, but matching rows disagree ({ids}); the first was used" if len(outs) > 1 else None
        return matched[:1], note
    raise ValueError(f"unknown hit policy {policy}")


class Evaluator:
    """Compiled rule sets of every stage, ready to run customer after customer."""

    def __init__(self, rulesets: dict[str, list[RuleSet]], backend: Backend):
        self.backend = backend
        self.stages: list[tuple[str, list[tuple[RuleSet, object, list[tuple[str, ...]]]]]] = []
        self.tag_names: list[str] = []
        self.score_names: list[str] = []
        for stage in STAGES:
            compiled = []
            for rs in rulesets.get(stage, []):
                names = [tuple(sorted(expr.free_names(r.condition))) for r in rs.rules]
                compiled.append((rs, backend.compile(rs), names))
                for rule in rs.rules:
                    for out in rule.outputs:
                        if isinstance(out, SetTag) and out.name not in self.tag_names:
                            self.tag_names.append(out.name)
                        elif isinstance(out, AddScore) and out.name not in self.score_names:
                            self.score_names.append(out.name)
            self.stages.append((stage, compiled))

    def prepare(self, features: dict) -> None:
        """Every tag starts empty and every score at 0, so conditions can test them before they are set."""
        for name in self.tag_names:
            features.setdefault(name, None)
        for name in self.score_names:
            features[name] = 0

    def run_stage(self, stage_index: int, features: dict) -> list[Hit]:
        return [Hit(rs, rule, inputs, note) for rs, rule, inputs, note in self.fire(stage_index, features)]

    def fire(self, stage_index: int, features: dict) -> list[tuple[RuleSet, Rule, dict, str | None]]:
        """``run_stage`` as plain (ruleset, rule, inputs, note) tuples: a batch run takes about ten
        firings per customer straight into the decision log, without a Hit object each."""
        hits: list[tuple[RuleSet, Rule, dict, str | None]] = []
        for rs, compiled, names in self.stages[stage_index][1]:
            matched = compiled.matching(features)
            if not matched:
                continue
            fired, note = apply_hit_policy(rs, matched)
            for i in fired:
                rule = rs.rules[i]
                hits.append((rs, rule, {n: features.get(n) for n in names[i]}, note))
                for out in rule.outputs:
                    if type(out) is SetTag:
                        features[out.name] = out.value
                    elif type(out) is AddScore:
                        features[out.name] = (features.get(out.name) or 0) + out.points
        return hits
