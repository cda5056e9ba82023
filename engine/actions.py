"""Turn rule outputs into concrete work: a task with an assignee and a due time, a message with a
channel, an address and a rendered text."""
from __future__ import annotations

from collections import ChainMap
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError

from engine.calendar import BusinessCalendar, parse_duration
from engine.decisions import Message, MinGap, Task
from engine.errors import PolicyError, Problem
from engine.guards import channel_address
from engine.model import Customer
from engine.policy.loader import Organization
from engine.policy.model import MessageSpec, Rule, RuleSet, TaskSpec, period_label
from engine.render import render_message, template_reads, template_syntax_problem, without_customer_values
from engine.stages import whole_days


def customer_context(customer: Customer, features: dict[str, Any]) -> ChainMap:
    """What templates see as ``customer``: the record's contact fields plus every feature and tag."""
    contact = {
        "name": customer.name,
        "contact_person": customer.contact_person,
        "phone": customer.phone,
        "email": customer.email,
        "wechat": customer.wechat,
        "gender": customer.gender,
    }
    # A view, not a copy: built for every customer who gets a task or message.
    return ChainMap(contact, features)


class ActionBuilder:
    """Builds tasks and messages for one run (one as-of date, one organisation, one calendar)."""

    def __init__(self, org: Organization, calendar: BusinessCalendar, env, as_of: date):
        self.org = org
        self.calendar = calendar
        self.env = env
        self.as_of = as_of
        # Tasks are due counted from the start of the as-of day's working time.
        self.start = calendar.working_start(as_of)
        self._due_cache: dict[str, datetime] = {}
        self._inline_cache: dict[str, _InlineText] = {}
        self._gaps: dict[tuple, MinGap] = {}

    def due(self, duration_text: str) -> datetime:
        due = self._due_cache.get(duration_text)
        if due is None:
            due = self.calendar.add(self.start, parse_duration(duration_text))
            self._due_cache[duration_text] = due
        return due

    def _due_for(self, spec: TaskSpec, features: dict) -> datetime:
        """``due`` after the run's start, but no later than the end of the working day on or before the
        ``due_by`` date (e.g. the post-purchase week's last day); never before the run's start."""
        due = self.due(spec.due)
        limit = features.get(spec.due_by) if spec.due_by else None
        if isinstance(limit, date):
            latest = self.calendar.last_working_moment(limit)
            if latest is not None and latest < due:
                due = max(latest, self.start)
        return due

    def _inline(self, text: str | None, context: dict, rule: Rule, label: str = "title") -> str | None:
        """Render a task title or script (``label``), which may use {{ customer.xxx }} like message templates."""
        if text is None or "{" not in text:
            return text
        inline = self._inline_cache.get(text)
        if inline is None:
            try:
                inline = _InlineText(self.env, text)
            except TemplateSyntaxError as exc:  # a Jinja syntax error in a policy file: said as validate says it
                what = (f"规则 {rule.rule_id} 的任务{'标题' if label == 'title' else '话术'}", f"the {label} of rule {rule.rule_id}'s task")
                raise PolicyError(template_syntax_problem(exc, rule.location, rule.location.file, what)) from None
            self._inline_cache[text] = inline
        try:
            return inline.render(context)
        except Exception as exc:
            whose = context["customer"].get("customer_id")
            raise PolicyError(Problem(
                code="template-undefined", location=rule.location,
                message=f"规则 {rule.rule_id}（客户 {whose}）的任务标题或话术无法生成 / "
                        f"rule {rule.rule_id} (customer {whose}): {without_customer_values(str(exc), context)}",
                fix="只用 templates/README.md 里列出的变量，如 customer.name / "
                    "use only variables listed in templates/README.md, e.g. customer.name")) from None

    def context(self, customer: Customer, features: dict, params: dict | None = None) -> dict[str, Any]:
        return {
            "customer": customer_context(customer, features),
            "company": self.org.company,
            "as_of": self.as_of,
            "params": params or {},
        }

    def key(self, spec: TaskSpec | MessageSpec, rule: Rule, customer: Customer, features: dict) -> str:
        """The idempotency key the contact ledger checks: rule, customer, period (and key_by value).

        The period is the one containing the rule's ``period_of`` day when it has one (the birthday a
        greeting is for), else the run's date: a greeting issued on 30 Dec for a birthday on 2 Jan is
        the new year's, whichever day of its window the batch runs on."""
        day = _period_day(spec, features) or self.as_of
        key = f"{rule.rule_id}|{customer.customer_id}|{period_label(spec.once_per, day)}"
        if spec.key_by:
            key += f"|{features.get(spec.key_by)}"
        return key

    def former_keys(self, spec: TaskSpec | MessageSpec, rule: Rule, customer: Customer,
                    features: dict) -> tuple[tuple[str, ...], date | None]:
        """The keys the same item had before its rule counted ``once_per`` at its ``period_of`` day, and
        the first day a ledger row under one of them counts (the guards' dedupe reads both).

        Before, the period was the one of the run's date, and care windows were cut at the end of that
        period: a 30 Dec run greeted a 2 Jan birthday under 2025. Such a run lay in the greeting window,
        at most FORMER_KEY_DAYS before the day; so the keys are those with the periods of those days
        other than the day's own (with and without the key_by value, as before key_by was added)."""
        day = _period_day(spec, features)
        if day is None:
            return (), None
        start = f"{rule.rule_id}|{customer.customer_id}|"
        value = f"|{features.get(spec.key_by)}" if spec.key_by else None
        keys = []
        for label in _earlier_labels(spec.once_per, day):
            if value is not None:
                keys.append(start + label + value)
            keys.append(start + label)
        return tuple(keys), day - timedelta(days=FORMER_KEY_DAYS)
    def min_gap(self, spec: TaskSpec | MessageSpec, rule: Rule, features: dict) -> MinGap | None:
        """The rule's ``min_gap_days`` for this customer: a whole number, or the value of the feature it
        names (e.g. revisit_interval_days). None: no gap to keep (none written, or the feature is
        empty or not a whole number of days ≥ 1 for this customer)."""
        gap = spec.min_gap_days
        if gap is None:
            return None
        feature = gap if isinstance(gap, str) else None
        days = whole_days(features.get(feature)) if feature else gap
        if not days:
            return None
        ident = (rule.rule_id, days, feature, spec.gap_family)
        found = self._gaps.get(ident)
        if found is None:
            found = self._gaps[ident] = MinGap(days, (rule.rule_id, *rule.formerly, *spec.gap_family), feature,
                                               spec.gap_siblings)
        return found

    def task(self, spec: TaskSpec, rule: Rule, rs: RuleSet, customer: Customer, features: dict, context: dict) -> Task:
        role = spec.assign_to[5:] if spec.assign_to.startswith("role:") else None
        assignment = None  # how the person was chosen, when the role has several
        if role is None and customer.owner:
            assignee = customer.owner
        else:  # by role; or no 客户经理: the unassigned role takes it, and the sheet says why
            role = role if role is not None else self.org.unassigned_role
            assignee, assignment = self.org.person_for(role, customer.customer_id)
        former_keys, former_since = self.former_keys(spec, rule, customer, features)
        return Task(
            customer_id=customer.customer_id,
            customer_name=customer.name,
            assignee=assignee,
            role=role,
            title=self._inline(spec.title, context, rule) or "",
            reason=rule.description,
            rule_id=rule.rule_id,
            policy_id=rs.policy_id,
            stage=rs.stage,
            due=self._due_for(spec, features),
            priority=spec.priority,
            script=self._inline(spec.script, context, rule, "script"),
            category=spec.category,
            key=self.key(spec, rule, customer, features),
            replaces=spec.replaces,
            assignment=assignment,
            former_keys=former_keys,
            former_since=former_since,
            min_gap=self.min_gap(spec, rule, features),
            formerly=rule.formerly,
        )

    def pick_channel(self, spec: MessageSpec, customer: Customer) -> tuple[str | None, str | None]:
        """The channel and address to use, or (None, None) when the customer cannot be reached. A
        channel without an address it can reach (none recorded; for SMS, no mainland mobile number: a
        landline or a foreign number cannot take one) is passed over: ``channel: preferred`` tries the
        next one; with none left, ``engine.guards.no_contact_reason`` says which number SMS could not use."""
        if spec.channel != "preferred":
            candidates = [spec.channel]
        else:
            preferred = self.org.channel_key(customer.preferred_channel)
            candidates = ([preferred] if preferred else []) + [c for c in self.org.default_channel_order if c != preferred]
        for key in candidates:
            address = channel_address(self.org.channels[key], customer)  # SMS: a mainland mobile number only
            if address:
                return key, address
        return None, None

    def message(self, spec: MessageSpec, rule: Rule, rs: RuleSet, customer: Customer, features: dict, channel: str,
                address: str, context: dict) -> Message:
        ctx = dict(context)
        ctx["params"] = spec.params
        template_name = f"messages/{channel}/{spec.template}.txt"
        rendered = render_message(self.env, template_name, ctx)
        former_keys, former_since = self.former_keys(spec, rule, customer, features)
        return Message(
            customer_id=customer.customer_id,
            customer_name=customer.name,
            channel=channel,
            address=address,
            template=spec.template,
            category=spec.category,
            subject=rendered.subject,
            body=rendered.body,
            rule_id=rule.rule_id,
            policy_id=rs.policy_id,
            stage=rs.stage,
            key=self.key(spec, rule, customer, features),
            send_on=send_day(spec, features),
            send_at=send_not_before(spec, features),
            former_keys=former_keys,
            former_since=former_since,
            min_gap=self.min_gap(spec, rule, features),
            formerly=rule.formerly,
        )


# How long before the day it is about a greeting may be issued: the longest window care.yaml allows
# (greeting_days_before, gift_days_before, a festival's greeting_days_before: at most 60 days).
FORMER_KEY_DAYS = 60


def _period_day(spec: TaskSpec | MessageSpec, features: dict) -> date | None:
    """The day of the rule's ``period_of`` date feature; None: no period_of, or no date (the run's date counts)."""
    day = features.get(spec.period_of) if spec.period_of else None
    if isinstance(day, datetime):
        return day.date()
    return day if isinstance(day, date) else None


@lru_cache(maxsize=4096)  # a festival greeting asks for the same day for every customer
def _earlier_labels(period: str, day: date) -> tuple[str, ...]:
    """The labels of the periods the FORMER_KEY_DAYS before ``day`` fall in, other than ``day``'s own."""
    own = period_label(period, day)
    labels = dict.fromkeys(period_label(period, day - timedelta(days=n)) for n in range(FORMER_KEY_DAYS, 0, -1))
    labels.pop(own, None)
    return tuple(labels)


def send_day(spec: MessageSpec, features: dict) -> date | None:
    """The day a message is to go out when its rule says ``send_on: <date feature>`` (the guards
    schedule it at that day's send time, never before the run's own); None: the run's send time."""
    if spec.send_on is None:
        return None
    day = features.get(spec.send_on)
    if isinstance(day, datetime):
        return day.date()
    return day if isinstance(day, date) else None


def send_not_before(spec: MessageSpec, features: dict) -> datetime | None:
    """The moment a message must not go out before when its rule's ``send_on`` names a time (a
    survey: the complaint's resolution); the guards take the later of it and the day's send time."""
    moment = features.get(spec.send_on) if spec.send_on is not None else None
    return moment if isinstance(moment, datetime) else None


_MISSING = object()  # a variable the context does not have (rendering it fails, unless the text tests for it)
# Values whose equality means equal text, once their type is in the key too (True == 1 == 1.0 but
# they print differently). Floats go in as repr (-0.0 == 0.0); anything else (an aware datetime, a
# Decimal, a list) makes the text render for that customer.
_PLAIN = frozenset({str, int, bool, type(None), date})


class _InlineText:
    """A task title or script, compiled once. Most read a tag or two (``为{{ customer.value_tier }}价值客户…``),
    so the text rendered for some values is kept and reused for the next customer with the same values:
    building tasks, mostly this rendering, was a tenth of the evaluation of 100,000 customers."""

    __slots__ = ("template", "reads", "rendered")

    def __init__(self, env, text: str):
        self.template = env.from_string(text)
        self.reads = template_reads(env.parse(text))  # None: the text may depend on more; never reused
        self.rendered: dict[tuple, str] = {}  # ((type, value) for each read) → text

    def render(self, context: dict) -> str:
        if self.reads is None:
            return self.template.render(context)
        key = []
        for var, field in self.reads:
            value = _read(self.template.environment, context, var, field)
            kind = type(value)
            if kind is float:
                value = repr(value)
            elif kind is datetime and value.tzinfo is None:
                pass  # naive: equal means the same wall time, printed alike
            elif kind not in _PLAIN and value is not _MISSING:
                return self.template.render(context)
            key.append((kind, value))
        text = self.rendered.get(key := tuple(key))
        if text is None:
            text = self.rendered[key] = self.template.render(context)
        return text


def _read(env, context: dict, var: str, field: str | None) -> Any:
    """A context value looked up as the template does (Jinja's own attribute-then-item lookup; a
    missing field is Jinja's undefined, which is not a plain value)."""
    value = context.get(var, _MISSING)
    if field is None or value is _MISSING:
        return value
    return env.getattr(value, field)
