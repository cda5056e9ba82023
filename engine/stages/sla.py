"""SLA stage: response and resolution targets for inquiries, complaints and suggestions.

Reads the ``kind: sla`` settings file (``policies/sla.yaml``), and for every tracked interaction
created on or before the run's as-of instant:

* picks its targets with the first ``targets:`` rule whose ``when`` holds (first hit);
* computes the first-response and resolution deadlines on a business calendar;
* gives each clock a status: met, breached (closed late), open_within, at_risk, open_breached,
  paused (waiting on the customer) or unknown (closed, but the export says nothing about when);
* issues tasks: at-risk items to their handler (due at the deadline), open breached items to the
  escalation role (with how late they are); closed breaches only count in the KPIs;
* records one decision (``Firing``) per interaction and writes ``sla.xlsx`` (items + KPIs).

Definitions of statuses and KPIs: docs/sla.md. The module never evaluates policy text with ``eval``:
``when`` conditions go through ``engine.expr``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from operator import attrgetter
from typing import Any

from engine import expr
from engine.calendar import BusinessCalendar, Duration, parse_duration
from engine.decisions import Firing, Task, task_output
from engine.errors import Location, PolicyError, Problem
from engine.model import Customer, Interaction
from engine.policy.schema import Problems, check_keys, condition_text, did_you_mean
from engine.policy.yaml_source import YList, YMap
from engine.stages import ColumnRead, CustomerFacts, StageOutput, StageSetup, settings_documents
from engine.transfer import INTERACTIONS, TupleCodec
from engine.xlsx_out import Column, Sheet, Workbook

__all__ = ["FEATURES", "SlaPolicy", "SlaStage", "Target", "build", "load_sla_policy"]

# Per-customer features this stage adds (later stages' rules may read them, e.g. churn).
FEATURES: dict[str, tuple[str, str]] = {
    "sla_open": ("number", "服务时限：未完成的跟踪工单数（含临近超时、超时未完成、暂停）"),
    "sla_at_risk_open": ("number", "服务时限：临近超时的未完成工单数（未超时）"),
    "sla_breached_open": ("number", "服务时限：已超过时限仍未完成的工单数"),
    "sla_paused_open": ("number", "服务时限：等待客户回复、暂停计时的未完成工单数"),
    "sla_breached_window": ("number", "服务时限：统计窗口（sla.yaml window_days）内创建、任一时限超时（已完成或未完成）的工单数"),
    "sla_timely_rate_window": ("number", "服务时限：统计窗口内创建工单的处理及时率，0–1（没有可计算的工单时为 null）"),
}
DEFAULT_WINDOW_DAYS = 90  # interactions older than this and closed are history, not tracked

# Interaction fields that ``when`` conditions may use, besides the customer's features and tags.
WHEN_FIELDS: dict[str, Any] = {
    "type": expr.STRING,
    "channel": expr.STRING,
    "status": expr.STRING,
    "category": expr.STRING,
    "staff": expr.STRING,
}
# Interaction fields a clock may start or stop at (datetimes of the export).
CLOCK_FIELDS = ("time", "first_response_time", "resolved_time")

# Clock statuses (codes in decisions.jsonl; labels in sla.xlsx).
MET = "met"
BREACHED = "breached"
OPEN_WITHIN = "open_within"
AT_RISK = "at_risk"
OPEN_BREACHED = "open_breached"
PAUSED = "paused"
UNKNOWN = "unknown"
STATUS_LABELS = {
    MET: "按时",
    BREACHED: "超时（已完成）",
    OPEN_WITHIN: "未完成（时限内）",
    AT_RISK: "临近超时",
    OPEN_BREACHED: "超时未完成",
    PAUSED: "暂停（等客户回复）",
    UNKNOWN: "无法判断",
}
NO_TARGET_LABEL = "无适用时限"
ENDED = (MET, BREACHED)
_OPEN_FEATURE = {OPEN_BREACHED: "sla_breached_open", AT_RISK: "sla_at_risk_open", PAUSED: "sla_paused_open"}
RUNNING = (OPEN_WITHIN, AT_RISK, OPEN_BREACHED, PAUSED)
CLOCK_LABELS = {"first_response": "首次响应", "resolution": "解决"}

_TOP_KEYS = ("kind", "id", "description", "calendar", "clock", "at_risk_share", "escalation_role", "escalation_due",
             "track_types", "window_days", "targets")
_CLOCK_KEYS = ("start", "first_response", "resolved", "closed_statuses", "closed_without_resolved_time",
               "paused_statuses")
_TARGET_KEYS = ("id", "description", "when", "calendar", "first_response", "resolution")
_CLOSED_WITHOUT_TIME = ("first_response", "unknown")


# --------------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One first-hit rule of ``targets:``."""

    rule_id: str
    description: str
    condition_text: str
    condition: Any  # compiled engine.expr function: ctx -> bool
    names: tuple[str, ...]  # names the condition reads (recorded as decision inputs)
    first_response: Duration | None
    resolution: Duration | None
    calendar_name: str
    calendar: BusinessCalendar
    location: Location
    source: str  # str(location): goes on every decision and sla.xlsx row of this target


@dataclass
class SlaPolicy:
    policy_id: str
    source_file: str
    calendar_name: str
    start_field: str
    first_response_field: str
    resolved_field: str
    closed_statuses: frozenset[str]
    closed_without_resolved_time: str  # "first_response" or "unknown"
    paused_statuses: frozenset[str]
    at_risk_share: float
    escalation_role: str
    escalation_due: Duration
    track_types: tuple[str, ...]
    window_days: int
    targets: list[Target]
    warnings: list[Problem] = field(default_factory=list)


def _empty_map(loc: Location) -> YMap:
    empty = YMap()
    empty.loc, empty.key_locs, empty.value_locs = loc, {}, {}
    return empty


CLOSED_STATUSES = ("已解决", "已关闭")  # clock.closed_statuses when sla.yaml does not say


def closed_statuses_setting(doc: Any) -> tuple[str, ...] | None:
    """The statuses an SLA settings document calls closed (its default when it names none), or None
    when they are written wrongly (load_sla_policy reports that). The customer features use the same
    ones (engine.policy.loader), so SLA and churn agree on "closed"."""
    clock = doc.get("clock") if isinstance(doc, dict) else None
    value = clock.get("closed_statuses", list(CLOSED_STATUSES)) if isinstance(clock, dict) else list(CLOSED_STATUSES)
    return _texts(value, "clock closed_statuses", Location(), Problems())


def _texts(value: Any, where: str, loc: Location, problems: Problems) -> tuple[str, ...] | None:
    """A list of texts (one text is accepted as a list of one)."""
    if value is None:
        return ()
    items = list(value) if isinstance(value, (list, YList)) else [value]
    if any(isinstance(v, (dict, list)) or v is None for v in items):
        problems.error("bad-value", f"{where} 要写成文字列表，如 [已解决, 已关闭] / {where} must be a list of texts, e.g. [已解决, 已关闭]",
                       loc)
        return None
    return tuple(str(v).strip() for v in items)


def _duration(value: Any, where: str, loc: Location, problems: Problems) -> Duration | None:
    if isinstance(value, bool) or value is None:
        problems.error("bad-duration", f"{where} 要写时长，如 4h 或 2d / {where} must be a duration such as 4h or 2d", loc)
        return None
    try:
        return parse_duration(str(value), loc)
    except PolicyError as exc:
        problems.extend(exc.problems)
        return None


def _clock_field(block: YMap, key: str, default: str, problems: Problems) -> str:
    value = str(block.get(key, default))
    if value not in CLOCK_FIELDS:
        guess = did_you_mean(value, CLOCK_FIELDS)
        problems.error("unknown-field", f"clock {key}: '{value}' 不是互动记录里的时间字段" + (f"，是不是 '{guess}'？" if guess else "")
                       + f" / clock {key}: '{value}' is not a time field of the interaction export"
                       + (f"; did you mean '{guess}'?" if guess else ""),
                       block.value_loc(key), fix=f"可以是其中之一 / one of: {', '.join(CLOCK_FIELDS)}")
    return value


def load_sla_policy(policyset: Any, calendars: dict[str, BusinessCalendar]) -> SlaPolicy | None:
    """Read and check the ``kind: sla`` settings file; None if the policy folder has none.

    Raises PolicyError listing every problem (unknown role or calendar, bad durations, unknown names
    in ``when``, ...), each with file:line:col. ``validate`` can call this without running a batch.
    """
    # Rule policies of kind sla (with rules:/table:) belong to the rule evaluator, not here.
    docs = settings_documents(policyset, "sla")
    if not docs:
        return None
    problems = Problems()
    path, doc = docs[0]
    rel = policyset.relpath(path)
    for other_path, other in docs[1:]:
        problems.error("duplicate-sla-settings",
                       f"SLA 设置文件只能有一个，{rel} 已经是了 / only one SLA settings file is allowed, but {rel} already is one",
                       other.loc, fix=f"把 {policyset.relpath(other_path)} 的内容合并到 {rel} / "
                                      f"merge {policyset.relpath(other_path)} into {rel}")
    check_keys(doc, "the SLA settings file", _TOP_KEYS, ("targets",), problems, doc.loc)

    calendar_name = str(doc.get("calendar", "standard"))
    if calendar_name not in calendars:
        problems.error("unknown-calendar", f"calendar.yaml 里没有日历 '{calendar_name}' / "
                                           f"calendar '{calendar_name}' is not defined in calendar.yaml",
                       doc.value_loc("calendar"),
                       fix=f"已有的日历 / calendars: {', '.join(calendars)}")

    clock = doc.get("clock")
    if clock is None or not check_keys(clock, "clock", _CLOCK_KEYS, (), problems, doc.value_loc("clock")):
        clock = _empty_map(doc.value_loc("clock"))  # absent, or not a mapping (reported): defaults
    start_field = _clock_field(clock, "start", "time", problems)
    first_field = _clock_field(clock, "first_response", "first_response_time", problems)
    resolved_field = _clock_field(clock, "resolved", "resolved_time", problems)
    closed = _texts(clock.get("closed_statuses", list(CLOSED_STATUSES)), "clock closed_statuses",
                    clock.value_loc("closed_statuses"), problems) or ()
    paused = _texts(clock.get("paused_statuses", []), "clock paused_statuses",
                    clock.value_loc("paused_statuses"), problems) or ()
    for status in sorted(set(closed) & set(paused)):
        problems.error("status-conflict", f"状态 '{status}' 既算已关闭又算暂停计时 / status '{status}' is both closed and paused",
                       clock.value_loc("paused_statuses"))
    without_time = str(clock.get("closed_without_resolved_time", "first_response"))
    if without_time not in _CLOSED_WITHOUT_TIME:
        problems.error("bad-value", f"closed_without_resolved_time 只能是 {', '.join(_CLOSED_WITHOUT_TIME)} 之一，不能是 "
                                    f"'{without_time}' / closed_without_resolved_time must be one of "
                                    f"{', '.join(_CLOSED_WITHOUT_TIME)}, not '{without_time}'",
                       clock.value_loc("closed_without_resolved_time"))

    share = doc.get("at_risk_share", 0.75)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        problems.error("bad-value", f"at_risk_share 要写 0 到 1 之间的数（如 0.75），不能是 '{share}' / "
                                    f"at_risk_share must be a number between 0 and 1 (e.g. 0.75), not '{share}'",
                       doc.value_loc("at_risk_share"))
        share = 0.75

    roles = policyset.organization.roles
    role = str(doc.get("escalation_role", "客服主管"))
    if role not in roles:
        guess = did_you_mean(role, roles)
        problems.error("unknown-role", f"escalation_role '{role}' 不是 organization.yaml 里的角色"
                       + (f"，是不是 '{guess}'？" if guess else "")
                       + f" / escalation_role '{role}' is not one of the roles in organization.yaml"
                       + (f"; did you mean '{guess}'?" if guess else ""),
                       doc.value_loc("escalation_role"),
                       fix=f"写已有的角色（{', '.join(roles)}），或在 organization.yaml 的 roles: 里加上 '{role}' / "
                           f"roles: {', '.join(roles)} (or add '{role}' to roles: in organization.yaml)")
    escalation_due = _duration(doc.get("escalation_due", "2h"), "escalation_due", doc.value_loc("escalation_due"), problems)

    track = _texts(doc.get("track_types", ["投诉", "咨询", "建议"]), "track_types", doc.value_loc("track_types"),
                   problems) or ()
    window_days = doc.get("window_days", DEFAULT_WINDOW_DAYS)
    if isinstance(window_days, bool) or not isinstance(window_days, int) or window_days < 1:
        problems.error("bad-value", f"window_days 要写整数天数（1 或更多），不能是 '{window_days}' / "
                                    f"window_days must be a whole number of days (1 or more), not '{window_days}'",
                       doc.value_loc("window_days"), fix="如 / e.g. window_days: 90")
        window_days = DEFAULT_WINDOW_DAYS

    # Names a condition may read: every customer feature and tag known at load time, plus the
    # interaction's fields. Our own features are left out: they are computed from these targets.
    schema = {n: t for n, t in policyset.schema.items() if n not in FEATURES}
    schema.update(WHEN_FIELDS)
    other_rule_ids = {rule.rule_id: rule.location for rs in policyset.all_rulesets() for rule in rs.rules}

    targets: list[Target] = []
    blocks = doc.get("targets")
    if "targets" in doc and not isinstance(blocks, YList):
        problems.error("not-a-list", "'targets:' 下面要写成列表（每条以 '- ' 开头） / "
                                     "'targets:' must be a list of rules (lines starting with '- ')", doc.value_loc("targets"))
        blocks = YList()
    seen: dict[str, Location] = {}
    for i, block in enumerate(blocks or []):
        item_loc = blocks.item_loc(i)
        if not check_keys(block, "an SLA target", _TARGET_KEYS, ("id", "when"), problems, item_loc):
            continue
        rule_id = str(block.get("id", f"target#{i + 1}"))
        location = block.key_loc("id")
        if rule_id in seen or rule_id in other_rule_ids:
            first = seen.get(rule_id) or other_rule_ids[rule_id]
            problems.error("duplicate-rule-id", f"规则编号 '{rule_id}' 已经在 {first} 用过 / "
                                                f"rule id '{rule_id}' is already used at {first}", location,
                           fix="所有策略文件里的规则编号都不能重复，给这条规则换一个编号 / "
                               "rule ids must be unique across all policy files")
        seen.setdefault(rule_id, location)
        when_text = condition_text(block.get("when", "true"))
        compiled, names = None, ()
        try:
            node = expr.parse(when_text, block.value_loc("when"))
            expr.check(node, schema, expect=expr.BOOL)
            compiled = expr.compile_expr(node)
            names = tuple(sorted(expr.free_names(node)))
        except PolicyError as exc:
            problems.extend(exc.problems)
        first = resolution = None
        if "first_response" in block:
            first = _duration(block["first_response"], "first_response", block.value_loc("first_response"), problems)
        if "resolution" in block:
            resolution = _duration(block["resolution"], "resolution", block.value_loc("resolution"), problems)
        if "first_response" not in block and "resolution" not in block:
            problems.error("missing-field", f"目标 '{rule_id}' 要写 first_response、resolution 或两个都写 / "
                                            f"target '{rule_id}' needs first_response, resolution or both", block.loc)
        target_calendar = str(block.get("calendar", calendar_name))
        if "calendar" in block and target_calendar not in calendars:
            problems.error("unknown-calendar", f"calendar.yaml 里没有日历 '{target_calendar}' / "
                                               f"calendar '{target_calendar}' is not defined in calendar.yaml",
                           block.value_loc("calendar"), fix=f"已有的日历 / calendars: {', '.join(calendars)}")
        if compiled is None or target_calendar not in calendars:
            continue
        targets.append(Target(
            rule_id=rule_id,
            description=str(block.get("description", "")),
            condition_text=when_text,
            condition=compiled,
            names=names,
            first_response=first,
            resolution=resolution,
            calendar_name=target_calendar,
            calendar=calendars[target_calendar],
            location=location,
            source=str(location),
        ))
    if not blocks and "targets" in doc:
        problems.warning("no-targets", "SLA 设置文件的 targets: 是空的：不会跟踪任何时限 / "
                                       "the SLA settings file has no targets: nothing will be tracked", doc.value_loc("targets"))

    if problems.errors:
        raise PolicyError(problems.errors)
    return SlaPolicy(
        policy_id=str(doc.get("id", "sla")),
        source_file=rel,
        calendar_name=calendar_name,
        start_field=start_field,
        first_response_field=first_field,
        resolved_field=resolved_field,
        closed_statuses=frozenset(closed),
        closed_without_resolved_time=without_time,
        paused_statuses=frozenset(paused),
        at_risk_share=float(share),
        escalation_role=role,
        escalation_due=escalation_due,
        track_types=track,
        window_days=window_days,
        targets=targets,
        warnings=[p for p in problems if p.severity != "error"],
    )


def column_reads(policyset: Any) -> list[ColumnRead]:
    """The interaction columns this module reads itself: its escalations and sla.xlsx depend on them
    whatever the rules say. A setting validate rejects reads nothing here (validate said why)."""
    docs = settings_documents(policyset, "sla")
    if not docs:
        return []
    doc = docs[0][1]
    clock = doc.get("clock")
    clock = clock if isinstance(clock, YMap) else _empty_map(doc.value_loc("clock"))
    blocks = [b for b in doc.get("targets") or () if isinstance(b, YMap)] if isinstance(doc.get("targets"), YList) else []
    if not blocks:
        return []  # nothing tracked (validate warns)
    reads = [ColumnRead("interactions", "type", "track_types", doc.value_loc("track_types"))]
    clocks = [("start", "time", True),
              ("first_response", "first_response_time", any("first_response" in b for b in blocks)),
              ("resolved", "resolved_time", True)]  # a resolution also stops the first-response clock
    for key, default, used in clocks:
        name = str(clock.get(key, default))
        if used and name in CLOCK_FIELDS:
            reads.append(ColumnRead("interactions", name, f"clock.{key}", clock.value_loc(key)))
    reads.append(ColumnRead("interactions", "status", "clock.closed_statuses", clock.value_loc("closed_statuses")))
    for i, block in enumerate(blocks):
        try:
            names = expr.free_names(expr.parse(condition_text(block.get("when", "true"))))
        except PolicyError:
            continue
        setting = f"targets {block.get('id', f'target#{i + 1}')} when"
        reads.extend(ColumnRead("interactions", n, setting, block.value_loc("when")) for n in sorted(names & WHEN_FIELDS.keys()))
    return reads


# --------------------------------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Clock:
    """One timed obligation of one interaction (first response or resolution)."""

    name: str  # "first_response" or "resolution"
    target: Duration
    deadline: datetime
    status: str
    stopped: datetime | None = None  # when the clock stopped (None: still running or unknown)
    late: timedelta | None = None  # how late: business time (wall time for wall targets)
    elapsed: timedelta | None = None  # for running clocks: time used so far
    share_used: float | None = None  # for running clocks: elapsed / target length
    note: str | None = None

    @property
    def late_hours(self) -> float | None:
        return None if self.late is None else round(self.late.total_seconds() / 3600, 2)

    def to_output(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": str(self.target), "deadline": self.deadline, "status": self.status}
        if self.stopped is not None:
            out["stopped"] = self.stopped
        if self.late is not None:
            minutes = round(self.late.total_seconds() / 60, 1)
            out["late_minutes"] = int(minutes) if minutes.is_integer() else minutes
        if self.share_used is not None:
            out["share_used"] = round(self.share_used, 4)
        if self.note:
            out["note"] = self.note
        return out


def _span(calendar: BusinessCalendar, duration: Duration, a: datetime, b: datetime) -> timedelta:
    """Time from a to b as the target counts it: business time, or clock time for wall targets."""
    return b - a if duration.wall else calendar.business_time_between(a, b)


class UntilAsOf:
    """Working time from an earlier instant up to the run's as-of instant, on one calendar.

    Every open late item is measured up to the same instant, so the working time from each local
    midnight to that instant is worked out once per day and kept: a ticket left open for a year costs
    two short look-ups instead of a scan over 365 days.
    """

    def __init__(self, calendar: BusinessCalendar, as_of_time: datetime):
        self.calendar = calendar
        self.end = as_of_time
        self.end_day = as_of_time.date()
        self._from_midnight: dict[date, timedelta] = {}  # local day -> working time from its 00:00 to end

    def since(self, moment: datetime) -> timedelta:
        day = moment.date()
        if day >= self.end_day:
            return self.calendar.business_time_between(moment, self.end)
        next_midnight = datetime.combine(day + timedelta(days=1), time())
        return self.calendar.business_time_between(moment, next_midnight) + self._from(day + timedelta(days=1))

    def _from(self, day: date) -> timedelta:
        cache = self._from_midnight
        if day in cache:
            return cache[day]
        # Walk forward to the nearest known day (or the as-of day), then fill in backwards.
        pending: list[date] = []
        d = day
        while d not in cache and d < self.end_day:
            pending.append(d)
            d += timedelta(days=1)
        if d not in cache:
            cache[d] = self.calendar.business_time_between(datetime.combine(d, time()), self.end)
        total = cache[d]
        for p in reversed(pending):
            midnight = datetime.combine(p, time())
            total += self.calendar.business_time_between(midnight, midnight + timedelta(days=1))
            cache[p] = total
        return cache[day]


def evaluate_clock(name: str, duration: Duration, calendar: BusinessCalendar, start: datetime,
                   stopped: datetime | None, stop_unknown: bool, paused: bool, as_of_time: datetime,
                   at_risk_share: float, until_as_of: UntilAsOf | None = None) -> Clock:
    """The status of one clock as of ``as_of_time`` (see docs/sla.md for the definitions).

    ``until_as_of`` (optional, same calendar and instant) makes lateness of long-open items cheap.
    """
    deadline = calendar.add(start, duration)
    if stopped is not None and stopped < start:
        # Answered or resolved before it was created: the export's times are wrong; counting it on
        # time would raise the timely rate on bad data.
        return Clock(name, duration, deadline, UNKNOWN, note="结束时间早于创建时间，导出的时间有误")
    if stopped is not None:
        if stopped <= deadline:
            return Clock(name, duration, deadline, MET, stopped=stopped)
        return Clock(name, duration, deadline, BREACHED, stopped=stopped, late=_span(calendar, duration, deadline, stopped))
    if stop_unknown:
        return Clock(name, duration, deadline, UNKNOWN, note="已关闭但没有时间记录")
    past_deadline = as_of_time > deadline
    if paused:
        # Without a status history we cannot know since when it waits: report, never escalate.
        note = "等客户回复，暂停计时（导出没有状态历史，按当前状态判断）"
        if past_deadline:
            return Clock(name, duration, deadline, PAUSED, note=note + "；已过原截止时间")
    elif past_deadline:
        if until_as_of is not None and not duration.wall:
            late = until_as_of.since(deadline)
        else:
            late = _span(calendar, duration, deadline, as_of_time)
        return Clock(name, duration, deadline, OPEN_BREACHED, late=late)
    # Share of the target used so far (both spans are at most the target long: cheap to count).
    elapsed = _span(calendar, duration, start, as_of_time)
    total = _span(calendar, duration, start, deadline)
    share = elapsed / total if total > timedelta(0) else 1.0
    if paused:
        return Clock(name, duration, deadline, PAUSED, elapsed=elapsed, share_used=share, note=note)
    status = AT_RISK if share >= at_risk_share else OPEN_WITHIN
    return Clock(name, duration, deadline, status, elapsed=elapsed, share_used=share)


def late_text(clock: Clock) -> str:
    """'已超时 3.5 个工作小时' (hours with at most one decimal); under an hour '已超时 45 个工作分钟';
    under a minute (a deadline passed after the last working hour of a date-only run's day)
    '已超时（不足 1 个工作分钟）'. Wall-clock targets say 小时 / 分钟."""
    seconds = (clock.late or timedelta(0)).total_seconds()
    work = "" if clock.target.wall else "个工作"
    if seconds >= 3600:
        number = f"{seconds / 3600:.1f}".rstrip("0").rstrip(".")
        return f"已超时 {number} {work}小时"
    if seconds >= 60:
        return f"已超时 {int(seconds // 60)} {work}分钟"
    return f"已超时（不足 1 {work}分钟）"


# --------------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SlaItem:
    """The SLA picture of one tracked interaction (a row of sla.xlsx)."""

    customer: Customer
    interaction: Interaction
    tier: str | None
    handler: str | None  # the interaction's staff, else the customer's 客户经理
    target: Target | None
    clocks: list[Clock]
    resolved: bool
    notes: list[str] = field(default_factory=list)
    task_text: str | None = None
    # Summary flags, set once by finish() (the KPI tallies read them many times).
    statuses: tuple[str, ...] = ()
    breached: bool = False  # some clock is late (closed late or open past its deadline)
    decided: bool = False  # counts in the timely-handling rate: every clock ended, or one is late
    timely: bool = False  # every clock ended on time
    open: bool = False  # some clock still runs (within, at risk, late or paused)
    open_state: str | None = None  # the open item's worst state: open_breached > at_risk > paused

    def finish(self) -> None:
        statuses = self.statuses = tuple([c.status for c in self.clocks])
        self.breached = BREACHED in statuses or OPEN_BREACHED in statuses
        ended = bool(statuses) and all([s in ENDED for s in statuses])
        self.decided = self.target is not None and (ended or self.breached)
        self.timely = self.target is not None and ended and not self.breached
        self.open = any([s in RUNNING for s in statuses])
        for state in (OPEN_BREACHED, AT_RISK, PAUSED):
            if state in statuses:
                self.open_state = state
                break

    def clock(self, name: str) -> Clock | None:
        for c in self.clocks:
            if c.name == name:
                return c
        return None


# How export_state takes items apart: the fields other than these four travel as they are.
_ITEM_REST_NAMES = tuple(f.name for f in fields(SlaItem) if f.name not in ("customer", "interaction", "target", "clocks"))
_ITEM_REST = attrgetter(*_ITEM_REST_NAMES)
_CLOCKS = TupleCodec(Clock)


@dataclass(slots=True)
class _Tally:
    """KPI counters of one group."""

    tracked: int = 0
    resolved: int = 0
    decided: int = 0
    timely: int = 0
    rated: int = 0
    satisfaction_sum: int = 0
    open_breached: int = 0
    at_risk: int = 0
    paused: int = 0

    def add(self, item: SlaItem) -> None:
        self.tracked += 1
        self.resolved += item.resolved
        self.decided += item.decided
        self.timely += item.timely
        if item.interaction.satisfaction is not None:
            self.rated += 1
            self.satisfaction_sum += item.interaction.satisfaction
        state = item.open_state
        if state is not None:
            if state == OPEN_BREACHED:
                self.open_breached += 1
            elif state == AT_RISK:
                self.at_risk += 1
            else:
                self.paused += 1

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved / self.tracked if self.tracked else None

    @property
    def timely_rate(self) -> float | None:
        return self.timely / self.decided if self.decided else None

    @property
    def avg_satisfaction(self) -> float | None:
        return round(self.satisfaction_sum / self.rated, 2) if self.rated else None


# KPI groupings: (dimension label, how to get the group of an item)
UNASSIGNED = "（未分配）"
NO_TIER = "（未分层）"
NO_VALUE = "（未填写）"


def _tier_group(tier: Any) -> str:
    """The KPI group of a value_tier as text: the tag is whatever the policies set (高/中/低, or
    numbers such as 1/2/3, or 是/否), and groups of one dimension are sorted together."""
    if tier is None or tier == "":
        return NO_TIER
    if isinstance(tier, bool):
        return "是" if tier else "否"
    if isinstance(tier, float) and tier.is_integer():
        return str(int(tier))
    return str(tier)


KPI_DIMENSIONS = (
    ("总体", lambda item: "全部"),
    ("互动类型", lambda item: item.interaction.type or NO_VALUE),
    ("价值等级", lambda item: _tier_group(item.tier)),
    ("处理人", lambda item: item.handler or UNASSIGNED),
    ("客户经理", lambda item: item.customer.owner or UNASSIGNED),
    ("渠道", lambda item: item.interaction.channel or NO_VALUE),
)

ITEM_COLUMNS = [
    Column("客户编号"),
    Column("客户名称"),
    Column("互动编号"),
    Column("类型"),
    Column("渠道"),
    Column("价值等级"),
    Column("处理人"),
    Column("客户经理"),
    Column("工单状态"),
    Column("创建时间", kind="datetime"),
    Column("首次响应时限"),
    Column("首次响应截止", kind="datetime"),
    Column("首次响应时间", kind="datetime"),
    Column("首次响应结果"),
    Column("首次响应超时(小时)", kind="number"),
    Column("解决时限"),
    Column("解决截止", kind="datetime"),
    Column("解决时间", kind="datetime"),
    Column("解决结果"),
    Column("解决超时(小时)", kind="number"),
    Column("满意度", kind="int"),
    Column("任务"),
    Column("时限规则"),
    Column("规则位置"),
    Column("日历"),
    Column("说明", width=50),
]

KPI_COLUMNS = [
    Column("维度"),
    Column("分组"),
    Column("跟踪数", kind="int"),
    Column("已解决数", kind="int"),
    Column("问题解决率\n=已解决数÷跟踪数", kind="percent"),
    Column("及时率计算数\n=已完成或已超时", kind="int"),
    Column("及时数\n=全部时限按时", kind="int"),
    Column("处理及时率\n=及时数÷计算数", kind="percent"),
    Column("评分数", kind="int"),
    Column("平均满意度\n=评分合计÷评分数", kind="number"),
    Column("超时未完成", kind="int"),
    Column("临近超时", kind="int"),
    Column("暂停", kind="int"),
]

KPI_DEFINITIONS = [
    ("跟踪数", "as-of 时点前创建、类型在 track_types 中、且有适用时限规则的互动（咨询、投诉、建议）数。"),
    ("已解决数", "跟踪的互动中，as-of 时点前有解决时间，或状态为已解决/已关闭（closed_statuses）的数目。"),
    ("问题解决率", "已解决数 ÷ 跟踪数。"),
    ("及时率计算数", "跟踪的互动中，所有考核时限都已完成（按时或超时），或任一时限已超时（含超时未完成）的数目。"
                "仍在时限内、临近超时、暂停或无法判断且未超时的互动不计入。"),
    ("及时数", "及时率计算数中，所有考核时限（首次响应、解决）都按时完成的数目。"),
    ("处理及时率", "及时数 ÷ 及时率计算数（按投诉类型分组即为制度中的“投诉处理及时率”）。"),
    ("平均满意度", "跟踪的互动中有满意度评分（1–5）的，评分之和 ÷ 评分数；没有评分时为空。"),
    ("超时未完成", "任一时限已过截止时间、仍未完成的互动数（已升级给 escalation_role）。"),
    ("临近超时", "未超时、但已用时限达到 at_risk_share 的互动数（已提醒处理人）。"),
    ("暂停", "状态为等客户回复（paused_statuses）、未超时也未临近超时的未完成互动数。"),
    ("分组", "处理人 = 互动的处理人，没有时为客户经理；价值等级 = 分类阶段的 value_tier。"),
]


class SlaStage:
    stage = "sla"

    def __init__(self, policy: SlaPolicy, setup: StageSetup):
        self.policy = policy
        self.as_of = setup.as_of
        self.as_of_time = setup.as_of_time
        self.org = setup.builder.org
        self.task_calendar = setup.builder.calendar
        self._escalation_due: datetime | None = None
        self.track = frozenset(policy.track_types)
        self.items: list[SlaItem] = []
        self.until_as_of = {t.calendar_name: UntilAsOf(t.calendar, setup.as_of_time) for t in policy.targets}
        # Created at or after this local midnight = inside the window (created within the last
        # window_days days, as-of day included); one comparison per interaction instead of date arithmetic.
        try:
            self.window_opens = datetime.combine(setup.as_of - timedelta(days=policy.window_days - 1), time())
        except OverflowError:  # a window reaching back before year 1: everything is inside
            self.window_opens = datetime.min

    # ---- per customer --------------------------------------------------------------------------

    def process(self, facts: CustomerFacts) -> StageOutput:
        out = StageOutput()
        customer, features = facts.customer, facts.features
        counts = dict.fromkeys(FEATURES, 0)
        window_decided = window_timely = 0
        context: dict[str, Any] | None = None
        # Most interactions are skipped below (other types, closed history): keep that loop lean.
        track, as_of_time, start_field, window_opens = self.track, self.as_of_time, self.policy.start_field, self.window_opens
        for it in facts.interactions:
            if it.type not in track:
                continue
            created = getattr(it, start_field)
            if created is None or created > as_of_time:
                continue
            in_window = created >= window_opens
            if not in_window and not self._still_open(it):
                continue  # closed before the window: history, not tracked (keeps sla.xlsx to what matters)
            if context is None:
                context = dict(features)
            context.update(type=it.type, channel=it.channel, status=it.status, category=it.category, staff=it.staff)
            target = self._target(context)
            item = self._item(customer, it, features, target, created)
            self.items.append(item)
            if target is None:
                continue
            task = self._task(item)
            if task is not None:
                out.tasks.append(task)
            out.firings.append(self._firing(item, context, task))
            counts["sla_open"] += item.open
            if item.open_state is not None:
                counts[_OPEN_FEATURE[item.open_state]] += 1
            if in_window:
                counts["sla_breached_window"] += item.breached
                window_decided += item.decided
                window_timely += item.timely
        counts["sla_timely_rate_window"] = round(window_timely / window_decided, 4) if window_decided else None
        features.update(counts)
        return out

    def _still_open(self, it) -> bool:
        """Open as of the run: not resolved by then (a resolved time after the as-of instant had not
        happened yet, whatever the status says now), or without a resolved time, no closing status."""
        resolved = getattr(it, self.policy.resolved_field)
        if resolved is not None:
            return resolved > self.as_of_time
        return it.status not in self.policy.closed_statuses

    @property
    def escalation_due(self) -> datetime:
        """Escalations are due a fixed working time after the instant the run looks at.

        Worked out on first use, so building the stage (e.g. for ``validate``) needs no calendar year.
        """
        if self._escalation_due is None:
            self._escalation_due = self.task_calendar.add(self.as_of_time, self.policy.escalation_due)
        return self._escalation_due

    def _target(self, context: dict[str, Any]) -> Target | None:
        for target in self.policy.targets:
            if target.condition(context) is True:
                return target
        return None

    def _item(self, customer: Customer, it: Interaction, features: dict[str, Any], target: Target | None,
              created: datetime) -> SlaItem:
        policy, as_of_time = self.policy, self.as_of_time
        handler = it.staff or customer.owner
        # Times after the as-of instant had not happened yet as of the run.
        first_time = getattr(it, policy.first_response_field)
        first_time = first_time if first_time is not None and first_time <= as_of_time else None
        raw_resolved = getattr(it, policy.resolved_field)
        resolved_time = raw_resolved if raw_resolved is not None and raw_resolved <= as_of_time else None
        status = (it.status or "").strip()
        # A closing status stops the clocks only when the export has no resolved time at all.
        closed_by_status = raw_resolved is None and status in policy.closed_statuses
        paused = status in policy.paused_statuses
        resolved = resolved_time is not None or closed_by_status
        item = SlaItem(customer, it, features.get("value_tier"), handler, target, [], resolved)
        if target is None:
            item.notes.append("没有适用的时限规则")
            return item

        notes = item.notes
        # A resolution is also a response: the first-response clock stops at the earlier of the two.
        first_stop = first_time
        if resolved_time is not None and (first_time is None or resolved_time < first_time):
            first_stop = resolved_time
        resolution_stop = resolved_time
        resolution_unknown = False
        if resolution_stop is None and closed_by_status:
            if policy.closed_without_resolved_time == "first_response" and first_time is not None:
                resolution_stop = first_time
                notes.append("已关闭但没有解决时间，按首次响应时间计为解决时间")
            else:
                resolution_unknown = True
        calendar, until = target.calendar, self.until_as_of[target.calendar_name]
        if target.first_response is not None:
            item.clocks.append(evaluate_clock("first_response", target.first_response, calendar, created, first_stop,
                                              closed_by_status and first_stop is None, paused, as_of_time,
                                              policy.at_risk_share, until))
        if target.resolution is not None:
            item.clocks.append(evaluate_clock("resolution", target.resolution, calendar, created, resolution_stop,
                                              resolution_unknown, paused, as_of_time, policy.at_risk_share, until))
        for clock in item.clocks:
            if clock.note:
                notes.append(f"{CLOCK_LABELS[clock.name]}：{clock.note}")
        item.finish()
        return item

    def _task(self, item: SlaItem) -> Task | None:
        """Open breached → escalation; at risk → reminder to the handler; otherwise none."""
        late = [c for c in item.clocks if c.status == OPEN_BREACHED]
        at_risk = [c for c in item.clocks if c.status == AT_RISK]
        if not late and not at_risk:
            return None
        it, customer, target = item.interaction, item.customer, item.target
        assert target is not None
        kind_label = it.type or "工单"
        handler_text = item.handler or "（未分配）"
        if late:
            # Keyed by the overdue clock whose deadline passed last (first response, then resolution):
            # a resolution breach after an escalated first-response breach is new work, and when both
            # are late at first sight the one task (naming both) carries the resolution key, so later
            # runs neither issue the first-response escalation again nor lose the resolution one.
            worst = max(late, key=lambda c: (c.deadline, c.name == "resolution"))
            role = self.policy.escalation_role
            assignee, assignment = self.org.person_for(role, customer.customer_id)
            # Each overdue clock with its own lateness: "首次响应、解决已超时 18.5" gave both the larger one.
            title = f"超时升级：{kind_label} {it.interaction_id} " + "，".join(f"{CLOCK_LABELS[c.name]}{late_text(c)}" for c in late)
            deadlines = "；".join(f"{CLOCK_LABELS[c.name]}截止 {c.deadline:%Y-%m-%d %H:%M}，{late_text(c)}" for c in late)
            reason = f"{target.description}；{deadlines}；原处理人：{handler_text}"
            script = f"请督促原处理人 {handler_text} 立即处理，必要时直接联系客户致歉并说明处理进展。"
            due, kind = self.escalation_due, "escalation"
            item.task_text = f"升级：{assignee}（{role}）"
        else:
            worst = min(at_risk, key=lambda c: c.deadline)
            role, assignment = None, None
            assignee = item.handler
            if not assignee:  # no staff and no 客户经理: the unassigned role takes it
                role = self.org.unassigned_role
                assignee, assignment = self.org.person_for(role, customer.customer_id)
            used = round((worst.share_used or 0) * 100)
            title = (f"即将超时：{kind_label} {it.interaction_id} 请在 {worst.deadline:%Y-%m-%d %H:%M} 前完成"
                     f"{CLOCK_LABELS[worst.name]}")
            reason = f"{target.description}；已用时限 {used}%"
            script = f"客户反馈：{it.content}" if it.content else None
            due, kind = worst.deadline, "at_risk"
            item.task_text = f"提醒：{assignee}" + (f"（{role}）" if role else "")
        return Task(
            customer_id=customer.customer_id,
            customer_name=customer.name,
            assignee=assignee,
            role=role,
            title=title,
            reason=reason,
            rule_id=target.rule_id,
            policy_id=self.policy.policy_id,
            stage=self.stage,
            due=due,
            priority="高",
            script=script,
            category="service",
            # One reminder and one escalation per clock of a ticket, whatever day the run is for.
            key=f"{target.rule_id}|{customer.customer_id}|{it.interaction_id}|{worst.name}|{kind}",
            # A reminder to the ticket's 处理人; without one it goes to the 客户经理 as such.
            handler=role is None and bool(it.staff),
            assignment=assignment,
        )

    def _firing(self, item: SlaItem, context: dict[str, Any], task: Task | None) -> Firing:
        it, target = item.interaction, item.target
        assert target is not None
        inputs: dict[str, Any] = {
            "interaction_id": it.interaction_id,
            "type": it.type,
            "channel": it.channel,
            "status": it.status,
            "staff": it.staff,
            "created": getattr(it, self.policy.start_field),
            "first_response_time": getattr(it, self.policy.first_response_field),
            "resolved_time": getattr(it, self.policy.resolved_field),
            "as_of_time": self.as_of_time,
        }
        for name in target.names:
            inputs.setdefault(name, context.get(name))
        sla: dict[str, Any] = {"calendar": target.calendar_name}
        for clock in item.clocks:
            sla[clock.name] = clock.to_output()
        if item.notes:
            sla["notes"] = list(item.notes)
        outputs: list[dict[str, Any]] = [{"sla": sla}]
        if task is not None:
            # With its key, like every other task output: the guards mark it in the log when it was
            # already issued by an earlier run (explain, audit.xlsx and the report read that mark).
            outputs.append({"task": task_output(task)})
        return Firing(it.customer_id, self.stage, self.policy.policy_id, target.rule_id, target.source,
                      inputs, outputs)

    # ---- run files -----------------------------------------------------------------------------

    def kpis(self) -> list[tuple[str, str, _Tally]]:
        """(dimension, group, counters) for the KPI sheet: overall first, then each grouping."""
        tallies: dict[tuple[int, str], _Tally] = {}
        for item in self.items:
            if item.target is None:
                continue
            for index, (_, group_of) in enumerate(KPI_DIMENSIONS):
                key = (index, group_of(item))
                tally = tallies.get(key)
                if tally is None:  # (not setdefault: that would build a _Tally per item and dimension)
                    tally = tallies[key] = _Tally()
                tally.add(item)
        if not tallies:
            tallies[(0, "全部")] = _Tally()
        return [(KPI_DIMENSIONS[index][0], group, tallies[(index, group)]) for index, group in sorted(tallies)]

    def _item_row(self, item: SlaItem) -> list[Any]:
        it, target = item.interaction, item.target
        row: list[Any] = [
            item.customer.customer_id, item.customer.name, it.interaction_id, it.type, it.channel, item.tier,
            item.handler, item.customer.owner, it.status, getattr(it, self.policy.start_field),
        ]
        for name in ("first_response", "resolution"):
            clock = item.clock(name)
            if clock is None:
                row += ["不考核" if target is not None else None, None, None, None, None]
            else:
                row += [str(clock.target), clock.deadline, clock.stopped, STATUS_LABELS[clock.status], clock.late_hours]
        row += [
            it.satisfaction,
            item.task_text,
            target.rule_id if target else NO_TARGET_LABEL,
            target.source if target else None,
            target.calendar_name if target else None,
            "；".join(item.notes) or None,
        ]
        return row

    def workbooks(self) -> dict[str, Workbook]:
        kpi_rows = [
            (dimension, group, t.tracked, t.resolved, t.resolution_rate, t.decided, t.timely, t.timely_rate, t.rated,
             t.avg_satisfaction, t.open_breached, t.at_risk, t.paused)
            for dimension, group, t in self.kpis()
        ]
        definitions = [(name, text) for name, text in KPI_DEFINITIONS]
        definitions.append(("计算时点", f"{self.as_of_time:%Y-%m-%d %H:%M:%S}（--as-of）"))
        return {"sla.xlsx": Workbook([
            Sheet("服务时限", ITEM_COLUMNS, list(map(self._item_row, self.items))),
            Sheet("KPI", KPI_COLUMNS, kpi_rows),
            Sheet("指标说明", [Column("指标"), Column("定义", width=90)], definitions),
        ])}

    def export_state(self) -> tuple:
        """The tracked items as plain values (engine.transfer): each customer by id (the other process
        has it), each target by its place in the policy (it holds compiled code), interactions and
        clocks as tuples; SlaItem objects themselves pickle slowly (copyreg, one by one)."""
        items = self.items
        place = {id(target): i for i, target in enumerate(self.policy.targets)}
        return (
            [item.customer.customer_id for item in items],
            [None if item.target is None else place[id(item.target)] for item in items],
            INTERACTIONS.pack([item.interaction for item in items]),
            [[_CLOCKS.values(c) for c in item.clocks] for item in items],
            list(map(_ITEM_REST, items)),
        )

    def absorb(self, state: tuple, customers: dict[str, Customer]) -> None:
        customer_ids, target_places, interactions, clocks, rest = state
        targets, clock = self.policy.targets, _CLOCKS.cls
        for customer_id, target_at, interaction, item_clocks, values in zip(
                customer_ids, target_places, INTERACTIONS.unpack(interactions), clocks, rest):
            self.items.append(SlaItem(customers[customer_id], interaction, target=None if target_at is None else targets[target_at],
                                      clocks=[clock(*c) for c in item_clocks], **dict(zip(_ITEM_REST_NAMES, values))))

    def manifest_counts(self) -> dict[str, Any]:
        """For the run manifest: tracked items, and per clock how many are in each status; each clock's
        statuses add up to ``tracked`` ("not_measured": the target sets no such time). Counted per clock
        because one interaction can be first answered on time and resolved late."""
        counts: dict[str, Any] = {"tracked": 0, "no_target": 0}
        per_clock = {name: {status: 0 for status in (*STATUS_LABELS, "not_measured")} for name in CLOCK_LABELS}
        for item in self.items:
            if item.target is None:
                counts["no_target"] += 1
                continue
            counts["tracked"] += 1
            statuses = {clock.name: clock.status for clock in item.clocks}
            for name, tally in per_clock.items():
                tally[statuses.get(name, "not_measured")] += 1
        counts.update(per_clock)
        return counts


def build(setup: StageSetup) -> SlaStage | None:
    """The SLA stage for this policy set, or None when it has no ``kind: sla`` settings file."""
    policy = load_sla_policy(setup.policyset, setup.calendars)
    if policy is None:
        return None
    return SlaStage(policy, setup)
