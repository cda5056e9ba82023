"""What a run decides: rule firings (the audit trail), tasks for staff and messages for customers."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(slots=True)  # slots: a large run holds over a million of these
class Firing:
    """One rule that fired for one customer: the unit of the decision log."""

    customer_id: str
    stage: str
    policy_id: str
    rule_id: str
    source: str  # file:line:col or workbook!Sheet!Cell
    inputs: dict[str, Any]  # the values the condition read
    outputs: list[dict[str, Any]] = field(default_factory=list)
    suppressed_by: str | None = None  # the guard that stopped an output, if any
    note: str | None = None  # e.g. a hit-policy warning


@dataclass(frozen=True)
class MinGap:
    """A rule's ``min_gap_days`` for one item: held back when the contact ledger shows one of ``rules``
    (the rule itself and its former ids, the rules whose task replaces it and those that replace what it replaces)
    issued to the same customer less than ``days`` days before this run's as-of date (the min-gap
    guard, engine/guards.py).
    Shared by every item with the same values, so a large run holds a few of these, not one per item."""

    days: int
    rules: tuple[str, ...]  # the rule first, its former ids (formerly:), then its family in id order
    feature: str | None = None  # the feature the days came from (min_gap_days: revisit_interval_days)
    siblings: tuple[tuple[str, str], ...] = ()  # (family rule, the rule both replace) for siblings


@dataclass
class Task:
    customer_id: str
    customer_name: str | None
    assignee: str  # a person (the 客户经理 or the person filling a role)
    role: str | None  # the role the task went to, if assigned by role
    title: str
    reason: str
    rule_id: str
    policy_id: str
    stage: str
    due: datetime
    priority: str
    script: str | None
    category: str = "service"
    key: str = ""  # idempotency key: rule, customer, period
    handler: bool = False  # assigned to the ticket's 处理人 (an SLA reminder), not as 客户经理 or by role
    replaces: tuple[str, ...] = ()  # the rule's task.replaces: these rules' tasks for the customer are not issued
    assignment: str | None = None  # a role with several people: how this one was chosen (Organization.person_for)
    # Keys the same task had before its rule counted once_per at its period_of day, and the first day a
    # ledger row under one of them counts as this task (engine.actions.ActionBuilder.former_keys).
    former_keys: tuple[str, ...] = ()
    former_since: date | None = None
    min_gap: MinGap | None = None  # the rule's min_gap_days for this customer, if any
    # The rule's former ids (formerly:): ledger rows under them, with the rest of the key the same, are this task.
    formerly: tuple[str, ...] = ()


def task_output(task: Task) -> dict[str, Any]:
    """A task as the decision log records it; with its role and how the person was chosen when the
    role has several people (an auditor sees why this one got it)."""
    out = {"assignee": task.assignee, "title": task.title, "due": task.due, "priority": task.priority, "key": task.key}
    if task.assignment:
        out["role"] = task.role
        out["assigned"] = task.assignment
    return out


CATEGORY_LABELS = {"marketing": "营销", "service": "服务"}  # a message's category as staff read it


@dataclass
class Message:
    customer_id: str
    customer_name: str | None
    channel: str
    address: str | None
    template: str
    category: str
    subject: str | None
    body: str
    rule_id: str
    policy_id: str
    stage: str
    send_at: datetime | None = None
    key: str = ""
    send_on: date | None = None  # the rule's send_on day (send_on: <date feature>): sent then, at the send time
    former_keys: tuple[str, ...] = ()  # as for a Task
    former_since: date | None = None
    min_gap: MinGap | None = None  # the rule's min_gap_days for this customer, if any
    formerly: tuple[str, ...] = ()  # as for a Task


# Types that need no change, checked first: this runs for every value of a large decision log.
_AS_IS = frozenset({str, int, bool, type(None)})


def jsonable(value: Any) -> Any:
    """Values as they appear in JSON outputs: dates in ISO form, everything else as is."""
    if type(value) in _AS_IS:
        return value
    if isinstance(value, datetime):
        return value.isoformat(timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value
