"""The policy model: what YAML files and decision tables compile to.

This is the backend-neutral intermediate form. A ``RuleSet`` is one policy (a YAML rule list or an
Excel decision table); each ``Rule`` has a condition (an expression tree from ``engine.expr``) and the
outputs it produces when it fires. Any evaluation backend receives the same objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from engine.errors import Location

STAGES = ("classification", "sla", "care", "churn")

# DMN hit policies. "collect" is the default for YAML rule lists: every matching rule fires.
HIT_POLICIES = ("unique", "first", "priority", "any", "collect")


@dataclass(frozen=True)
class SetTag:
    """Set a tag (a classification value) on the customer: ``value_tier = '高'``."""

    name: str
    value: Any
    # Where the value is written (the value in ``set:``, or the output cell of a table row), for
    # validate's messages; not part of what the output means.
    location: Location | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class AddScore:
    """Add points to a score on the customer: ``risk_points += 30``."""

    name: str
    points: float
    location: Location | None = field(default=None, compare=False, repr=False)  # the points in ``score:``


@dataclass(frozen=True)
class TaskSpec:
    """A task for staff. ``assign_to`` is ``owner`` (the customer's 客户经理) or ``role:<name>``."""

    title: str
    assign_to: str
    due: str  # a duration like "2d" counted from the as-of date on the task calendar
    priority: str
    script: str | None = None
    category: str = "service"
    once_per: str = "day"  # issue at most once per customer in this period (see PERIODS)
    key_by: str | None = None  # a feature whose value also goes into the key (e.g. an order id)
    due_by: str | None = None  # a date feature: due no later than the end of that day's working time
    period_of: str | None = None  # a date feature: once_per counts the period of that day, not of the run's date
    # Rule ids whose task for the same customer this task makes unnecessary (the same work): when this
    # rule fires, their task is not issued in this run (the dedupe guard says why). E.g. the churn
    # revisit replaces the periodic revisit.
    replaces: tuple[str, ...] = ()
    # At least this many days (a whole number, or a numeric feature's value for the customer) since
    # the ledger last shows this rule or its family (gap_family) issued to the customer.
    min_gap_days: int | str | None = None
    # The rules whose earlier tasks count for min_gap_days besides this one: the rules whose task
    # replaces it (their work includes this one's) and the rules that replace what this one replaces
    # (the same visit); filled in once every rule is known (engine.policy.loader._gap_families).
    gap_family: tuple[str, ...] = ()
    # (sibling rule, the rule both replace) for the family members that are siblings, for the reason.
    gap_siblings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MessageSpec:
    """A message to the customer. ``channel`` is a channel key or ``preferred``."""

    template: str
    channel: str
    category: str  # "marketing" or "service": guards treat them differently
    params: dict[str, Any] = field(default_factory=dict)
    once_per: str = "day"
    key_by: str | None = None
    # A date feature: send on that day (at the guards' send_time), not at the run's own send time;
    # e.g. a birthday greeting issued a few days ahead that reaches the customer on the birthday.
    send_on: str | None = None
    # A date feature: once_per counts the period of that day (the day the message is about, e.g. the
    # birthday), not of the run's date; a greeting issued on 30 Dec for 2 Jan is the new year's.
    period_of: str | None = None
    min_gap_days: int | str | None = None  # as for tasks; messages have no replaces, so no family
    gap_family: tuple[str, ...] = ()
    gap_siblings: tuple[tuple[str, str], ...] = ()


# How often the same rule may issue the same task or message to the same customer. The period is
# part of the idempotency key the contact ledger checks, so re-runs never issue twice. It is the
# period of the run's date, or of the rule's ``period_of`` date feature (engine.actions.ActionBuilder.key).
PERIODS = ("day", "week", "month", "quarter", "year", "ever")


def period_label(period: str, day) -> str:
    """The label of the period containing ``day``: 2026-11-20, 2026-W47, 2026-11, 2026-Q4, 2026, ever."""
    if period == "day":
        return day.isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    if period == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    if period == "year":
        return str(day.year)
    if period == "ever":
        return "ever"
    raise ValueError(f"unknown period {period}")


Output = SetTag | AddScore | TaskSpec | MessageSpec


@dataclass
class Rule:
    rule_id: str
    description: str
    condition: Any  # engine.expr node
    condition_text: str
    outputs: list[Output]
    location: Location
    priority: int = 0  # for hit policy "priority": higher wins
    # Decision-table rows keep the per-input-column tests for explain/validate.
    cells: dict[str, str] = field(default_factory=dict)
    cell_conditions: list[Any] = field(default_factory=list)  # one parsed test per input cell, with its cell location
    # The ids this rule had before (renamed, or rules merged into it): the ledger's rows under them count
    # as this rule's for dedupe, min_gap_days and the task sheets' history (``formerly:``); where each is written.
    formerly: tuple[str, ...] = ()
    formerly_at: tuple[Location, ...] = field(default=(), compare=False, repr=False)

    @cached_property
    def source(self) -> str:
        """The location as written in the decision log (computed once: it is logged per firing)."""
        return str(self.location)


@dataclass
class RuleSet:
    policy_id: str
    stage: str
    description: str
    hit_policy: str
    rules: list[Rule]
    location: Location
    source_file: str  # relative path under the policy folder
    outputs_declared: tuple[str, ...] = ()  # tag names this policy sets (for validation and columns)
    complete: bool = False  # a table that claims to cover every input combination
    # Rule ids retired on purpose (``retired_rules:``): their items in the contact ledger need no rule
    # that took over (engine.former_rules); where each is written.
    retired: tuple[str, ...] = ()
    retired_at: tuple[Location, ...] = field(default=(), compare=False, repr=False)
