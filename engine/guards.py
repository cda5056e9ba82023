"""Guards: what stands between the decisions of a run and the customers.

The stages decide *what* to do; the guards decide whether and when it may go out. They run after
evaluation and before the run folder is written, in this fixed order (documented in docs/guards.md):

1. ``no-contact`` — messages: a message for a customer without an address on the channel(s) the
   rule allows (no phone, e-mail or WeChat; for SMS, no mainland mobile number: ``engine.coerce.is_mobile``) has
   nothing to go to. Evaluation still builds it, with no
   channel and the reason as its body (``unreachable_message``), so that this guard lists it like
   any other; first, because there is nothing to send.
2. ``dedupe`` — tasks and messages: an item whose idempotency key (rule, customer, period) an
   earlier run already issued (the contact ledger says so; also under the key an earlier version
   gave it: without its key_by value, or with the run's period instead of its period_of day's) is
   suppressed; so is a second item with the same kind and key within this run, and a task that
   another task of this run for the same customer replaces (``task.replaces`` in the policy: the
   same work, e.g. a churn revisit and the periodic revisit) — whether that other task is new or
   already issued in its period (already issued: left to min-gap when the replaced task has a gap).
3. ``min-gap`` — tasks and messages of a rule with ``min_gap_days: N``: held back when the ledger
   shows the same rule, or a rule of its family (the rules whose task replaces it: their work includes
   its work), issued to the same customer on an as-of date less than N days before this run's
   (counted between as-of dates: issued 2026-11-30 with N = 30, the next may go from 2026-12-30).
   So a monthly rule does not go out on 30 Nov and again on 1 Dec. Items of this run are left to
   dedupe (``replaces``).
4. ``opt-out`` — messages: a customer who opted out gets no marketing message (and, if the policy
   says so, no service message either).
5. ``consent`` — marketing messages need ``marketing_consent`` true; what an unrecorded consent
   means is declared in the policy (default: no consent).
6. ``quiet-hours`` — messages are not suppressed but scheduled: ``send_at`` becomes the first
   allowed time on or after the run's send time (or the message's own requested time, if later:
   a rule's ``send_on`` day at the send time, e.g. the birthday of a greeting issued ahead).
7. ``frequency-cap`` — messages: at most N messages of the capped categories per customer within
   D days, counting earlier runs (from the ledger) and what this run already kept. The policy's
   ``cap_priority`` (message templates, most important first: birthday, festival) ranks them: a
   message counts only the messages at least as important as itself, so a promotion or member-day
   reminder sent earlier in the week never holds back a birthday greeting, while greetings still
   count against promotions. Within a run, by customer, then that rank, then the fixed order.

Messages earlier runs issued ahead (a ``send_on`` day) and not sent yet are checked again with the
no-contact, opt-out and consent rules: ``find_recalls`` lists those the customer no longer wants or
can receive, for the sending system to cancel (docs/guards.md, "Recalling messages issued ahead").

Tasks pass only the dedupe and min-gap guards. Outputs come back in that same fixed order, so a run's files do
not depend on the order in which modules produced their decisions.

A task held back because an earlier run issued the same work (dedupe against the ledger, or min-gap of
its own rule) is still open work: the result lists it (``StillOpen``) for the task sheets' 仍待处理 page.

Times are naive local wall-clock times in the policy's time zone (like the business calendar);
an aware as-of or send time is converted to that zone first.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.coerce import is_mobile, phone_kind
from engine.decisions import CATEGORY_LABELS, Firing, Message, Task
from engine.errors import PolicyError
from engine.features import CONTACT_TYPES, INTERACTION_TYPE_KEYS
from engine.ledger import DEFAULT_LEDGER_NAME, Ledger
from engine.policy.loader import MESSAGE_CATEGORIES, policy_files
from engine.policy.model import STAGES, MessageSpec
from engine.policy.schema import Problems, as_list, check_keys, did_you_mean
from engine.policy.yaml_source import YList, YMap, load_yaml
from engine.xlsx_out import Column, Sheet, Workbook

GUARDS = ("no-contact", "dedupe", "min-gap", "opt-out", "consent", "quiet-hours", "frequency-cap")
GUARD_LABELS = {
    "no-contact": "没有联系方式",
    "dedupe": "已发出过或重复",
    "min-gap": "间隔不足",
    "opt-out": "退订",
    "consent": "营销同意",
    "quiet-hours": "免打扰时段",
    "frequency-cap": "频次上限",
}
# Guards whose items are no lost work: issued before (or covered by another task of the customer), so
# not issued again. The run summary and audit.xlsx tell them apart from real holds (no contact, consent...).
NOT_AGAIN_GUARDS = ("dedupe", "min-gap")
NOT_RECORDED_CHOICES = ("no_consent", "consent")
_STAGE_ORDER = {stage: i for i, stage in enumerate(STAGES)}


# -- the policy ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuietHours:
    """A daily period in which no message is scheduled. ``start > end`` spans midnight (21:00–09:00)."""

    start: time
    end: time
    categories: tuple[str, ...] = MESSAGE_CATEGORIES

    def contains(self, moment: datetime) -> bool:
        t = moment.time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def first_allowed(self, moment: datetime) -> datetime:
        """``moment`` itself if it is outside the quiet hours, else the end of the quiet period."""
        if not self.contains(moment):
            return moment
        end_today = datetime.combine(moment.date(), self.end)
        if self.start > self.end and moment.time() >= self.start:
            return end_today + timedelta(days=1)  # evening part: the quiet period ends tomorrow morning
        return end_today

    def label(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


@dataclass(frozen=True)
class FrequencyCap:
    cap_id: str
    categories: tuple[str, ...]
    max_messages: int
    days: int


# Personal greetings before festival greetings before everything else (promotions, member day, ...):
# the seeds call the birthday greeting the most touching care of all (《客户维护细则》07).
DEFAULT_CAP_PRIORITY = ("birthday", "festival")

DEFAULT_CAPS = (
    FrequencyCap("marketing-7d", ("marketing",), 2, 7),
    FrequencyCap("marketing-30d", ("marketing",), 4, 30),
)


@dataclass(frozen=True)
class GuardPolicy:
    """The guards policy (``kind: guards``). The defaults are the shipped policies/guards.yaml."""

    marketing_requires_consent: bool = True
    consent_not_recorded: str = "no_consent"  # what a blank marketing_consent means
    opt_out_blocks_service: bool = False
    time_zone: str = "Asia/Shanghai"
    send_time: time = time(10, 0)  # default send time on the as-of day
    quiet_hours: QuietHours | None = QuietHours(time(21, 0), time(9, 0))
    caps: tuple[FrequencyCap, ...] = DEFAULT_CAPS
    # Message templates the caps keep first, most important first; a message counts only those at least
    # as important as itself (unlisted templates come last, together). See docs/guards.md.
    cap_priority: tuple[str, ...] = DEFAULT_CAP_PRIORITY
    ledger_path: str = DEFAULT_LEDGER_NAME  # relative paths: inside the outbox folder
    # Interaction types that are staff contacting the customer: one logged at or after an earlier task
    # was issued closes it on the 仍待处理 page (still_open.contact_types; () lists every task until its rule stops).
    contact_types: tuple[str, ...] = CONTACT_TYPES
    source: str | None = None  # the file it came from, for messages

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


_TOP_KEYS = ("kind", "description", "time_zone", "consent", "opt_out", "send_time", "quiet_hours",
             "frequency_caps", "cap_priority", "still_open", "ledger")


def load_guard_policy(policyset: Any) -> GuardPolicy:
    """The guards policy of a loaded policy set (``policyset.documents['guards']``); the defaults
    if the folder has no guards file. Mistakes raise PolicyError naming file:line:col; so does a
    ``cap_priority`` template no message rule uses (a typo would silently rank it last)."""
    templates = {out.template for rs in policyset.all_rulesets() for rule in rs.rules for out in rule.outputs
                 if isinstance(out, MessageSpec)} if hasattr(policyset, "all_rulesets") else None
    return parse_guard_documents(policyset.documents.get("guards", []), templates)


def load_guard_policy_folder(root: Path) -> GuardPolicy:
    """The guards policy of a policy folder without loading the whole policy set (for the
    ``ledger`` command, which only needs the ledger path). Files that do not parse are skipped here:
    ``validate`` and ``run`` report them."""
    docs = []
    root = Path(root)
    if root.is_dir():
        for path in policy_files(root):
            try:
                doc = load_yaml(path, path.relative_to(root).as_posix())
            except PolicyError:
                continue
            if isinstance(doc, YMap) and doc.get("kind") == "guards":
                docs.append((path, doc))
    return parse_guard_documents(docs)


def parse_guard_documents(docs: list[tuple[Path, YMap]], templates: set[str] | None = None) -> GuardPolicy:
    """``templates``: the message templates the policy's rules use, to check ``cap_priority`` against."""
    if not docs:
        return GuardPolicy()
    problems = Problems()
    for _path, extra in docs[1:]:
        problems.error("duplicate-guards", "一个策略文件夹里只能有一个发送限制文件（kind: guards） / "
                                           "only one guards file is allowed in a policy folder", extra.value_loc("kind"),
                       fix=f"把它的内容合并到 {docs[0][1].loc.file} / merge it into {docs[0][1].loc.file}")
    _path, doc = docs[0]
    check_keys(doc, "the guards file", _TOP_KEYS, (), problems, doc.loc)
    values: dict[str, Any] = {"source": doc.loc.file}

    if "time_zone" in doc:
        name = str(doc.get("time_zone"))
        try:
            ZoneInfo(name)
            values["time_zone"] = name
        except (ZoneInfoNotFoundError, ValueError):
            problems.error("bad-value", f"没有 '{name}' 这个时区 / unknown time zone '{name}'", doc.value_loc("time_zone"),
                           fix="如 / e.g. Asia/Shanghai")

    consent = doc.get("consent")
    if consent is not None and check_keys(consent, "consent", ("marketing_requires_consent", "not_recorded"), (), problems, doc.value_loc("consent")):
        if "marketing_requires_consent" in consent:
            values["marketing_requires_consent"] = _bool(consent, "marketing_requires_consent", problems)
        if "not_recorded" in consent:
            choice = consent.get("not_recorded")
            if choice not in NOT_RECORDED_CHOICES:
                problems.error("bad-value", f"consent.not_recorded 只能是 {', '.join(NOT_RECORDED_CHOICES)} 之一，不能是 '{choice}' / "
                                            f"consent.not_recorded must be one of {', '.join(NOT_RECORDED_CHOICES)}, not '{choice}'",
                               consent.value_loc("not_recorded"),
                               fix="no_consent：未记录按未同意处理（最稳妥） / no_consent: not recorded counts as no consent (safest)")
            else:
                values["consent_not_recorded"] = choice

    opt_out = doc.get("opt_out")
    if opt_out is not None and check_keys(opt_out, "opt_out", ("blocks_service",), (), problems, doc.value_loc("opt_out")):
        if "blocks_service" in opt_out:
            values["opt_out_blocks_service"] = _bool(opt_out, "blocks_service", problems)

    if "send_time" in doc:
        clock = _clock(doc, "send_time", problems)
        if clock is not None:
            values["send_time"] = clock

    if "quiet_hours" in doc:
        values["quiet_hours"] = _quiet_hours(doc, problems)

    if "frequency_caps" in doc:
        values["caps"] = _caps(doc, problems)

    if "cap_priority" in doc:
        values["cap_priority"] = _cap_priority(doc, templates, problems)

    still_open = doc.get("still_open")
    if still_open is not None and check_keys(still_open, "still_open", ("contact_types",), (), problems, doc.value_loc("still_open")):
        if "contact_types" in still_open:
            values["contact_types"] = _contact_types(still_open, problems)

    ledger = doc.get("ledger")
    if ledger is not None and check_keys(ledger, "ledger", ("path",), (), problems, doc.value_loc("ledger")):
        path = ledger.get("path")
        if not isinstance(path, str) or not path.strip():
            problems.error("bad-value", "ledger.path 要写文件名或路径，如 ledger.sqlite / "
                                        "ledger.path must be a file name or path, e.g. ledger.sqlite", ledger.value_loc("path"))
        else:
            values["ledger_path"] = path.strip()

    if problems.errors:
        raise PolicyError(problems.errors)
    return GuardPolicy(**values)


def contact_types_setting(doc: Any) -> tuple[str, ...] | None:
    """still_open.contact_types of a guards document as written (None: not written), unchecked: for
    the features (``last_staff_contact_time``), which the loader sets up before the guards are parsed;
    ``parse_guard_documents`` reports its mistakes."""
    block = doc.get("still_open") if isinstance(doc, YMap) else None
    if not isinstance(block, YMap) or "contact_types" not in block:
        return None
    return tuple(str(v).strip() for v in as_list(block.get("contact_types")))


def _contact_types(block: YMap, problems: Problems) -> tuple[str, ...]:
    """still_open.contact_types: interaction types (互动类型, as columns.yaml spells them); [] for none."""
    value = block.get("contact_types")
    if value is None or isinstance(value, YMap):
        problems.error("bad-value", "still_open.contact_types 要写成互动类型的列表，如 [回访, 拜访]；不用就写 [] / "
                                    "still_open.contact_types must be a list of interaction types, e.g. [回访, 拜访]; [] for none",
                       block.value_loc("contact_types"), fix="contact_types: [回访, 拜访]")
        return CONTACT_TYPES
    known = tuple(INTERACTION_TYPE_KEYS)
    types: list[str] = []
    for i, item in enumerate(as_list(value)):
        name = str(item).strip()
        if name not in known:
            loc = value.item_loc(i) if isinstance(value, YList) else block.value_loc("contact_types")
            guess = did_you_mean(name, known)
            problems.error("bad-value", f"still_open.contact_types 里的 '{name}' 不是互动类型 / "
                                        f"'{name}' in still_open.contact_types is not an interaction type", loc,
                           fix=(f"是不是 '{guess}'？" if guess else "") + f"可以是其中之一（columns.yaml 里的中文名）：{', '.join(known)} / "
                               + (f"did you mean '{guess}'? " if guess else "") + f"one of (the Chinese names in columns.yaml): {', '.join(known)}")
        elif name not in types:
            types.append(name)
    return tuple(types)


def _bool(block: YMap, key: str, problems: Problems) -> bool:
    value = block.get(key)
    if not isinstance(value, bool):
        problems.error("bad-value", f"{key} 只能写 true 或 false，不能是 '{value}' / {key} must be true or false, not '{value}'",
                       block.value_loc(key))
        return False
    return value


def _clock(block: YMap, key: str, problems: Problems) -> time | None:
    value = block.get(key)
    loc = block.value_loc(key)
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 21:00 as the number 1260 (base 60); as a time it was probably that.
        meant = f'"{value // 60:02d}:{value % 60:02d}"' if 0 <= value < 24 * 60 else '"21:00"'
        problems.error("bad-value", f"{key}: 时间要加引号 / write times in quotes", loc, fix=f"{key}: {meant}")
        return None
    text = str(value).strip() if value is not None else ""
    try:
        hours, minutes = text.split(":")
        clock = time(int(hours), int(minutes))
        if len(minutes) != 2:
            raise ValueError
        return clock
    except ValueError:
        problems.error("bad-value", f"{key} 要写成 \"21:00\" 这样的时间，不能是 '{value}' / "
                                    f"{key} must be a time like \"21:00\", not '{value}'", loc)
        return None


def _categories(block: YMap, key: str, problems: Problems) -> tuple[str, ...]:
    """A list of message categories; () after reporting a problem."""
    values = [str(v) for v in as_list(block.get(key))]
    unknown = [v for v in values if v not in MESSAGE_CATEGORIES]
    for v in unknown:
        problems.error("bad-value", f"{key} 里的 '{v}' 不是消息类别 / unknown message category '{v}' in {key}", block.value_loc(key),
                       fix=f"可以是其中之一 / one of: {', '.join(MESSAGE_CATEGORIES)}")
    if not values:
        problems.error("bad-value", f"{key} 至少要写一个消息类别 / {key} must name at least one message category", block.value_loc(key),
                       fix=f"可以是其中之一 / one of: {', '.join(MESSAGE_CATEGORIES)}")
    if unknown or not values:
        return ()
    return tuple(c for c in MESSAGE_CATEGORIES if c in values)


def _quiet_hours(doc: YMap, problems: Problems) -> QuietHours | None:
    block = doc.get("quiet_hours")
    if block is False or block is None:  # "quiet_hours: off" (YAML reads off as false) switches them off
        return None
    if not check_keys(block, "quiet_hours", ("start", "end", "categories"), ("start", "end"), problems, doc.value_loc("quiet_hours")):
        return None
    start, end = _clock(block, "start", problems), _clock(block, "end", problems)
    categories = _categories(block, "categories", problems) if "categories" in block else MESSAGE_CATEGORIES
    if start is None or end is None:
        return None
    if start == end:
        problems.error("bad-value", "quiet_hours 的 start 和 end 是同一个时间 / quiet_hours start and end are the same time",
                       block.value_loc("end"),
                       fix="不要免打扰时段就写 'quiet_hours: off' / to switch quiet hours off write 'quiet_hours: off'")
        return None
    return QuietHours(start, end, categories)


def _caps(doc: YMap, problems: Problems) -> tuple[FrequencyCap, ...]:
    block = doc.get("frequency_caps")
    if block is None or block is False:
        return ()
    if not isinstance(block, YList):
        problems.error("bad-value", "frequency_caps 下面要写成列表（每条以 '- ' 开头） / "
                                    "frequency_caps must be a list of caps (lines starting with '- ')", doc.value_loc("frequency_caps"))
        return ()
    caps: list[FrequencyCap] = []
    seen: set[str] = set()
    for i, item in enumerate(block):
        loc = block.item_loc(i)
        if not check_keys(item, f"frequency cap #{i + 1}", ("id", "categories", "max", "days"), ("id", "categories", "max", "days"), problems, loc):
            continue
        cap_id = str(item.get("id"))
        if cap_id in seen:
            problems.error("duplicate-id", f"有两个发送次数上限都叫 '{cap_id}' / two frequency caps are called '{cap_id}'",
                           item.value_loc("id"))
        seen.add(cap_id)
        categories = _categories(item, "categories", problems)
        limit, days = item.get("max"), item.get("days")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            problems.error("bad-value", f"上限 '{cap_id}'：max 要写大于等于 0 的整数，不能是 '{limit}' / "
                                        f"cap '{cap_id}': max must be a whole number ≥ 0, not '{limit}'", item.value_loc("max"))
            continue
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            problems.error("bad-value", f"上限 '{cap_id}'：days 要写大于等于 1 的整数，不能是 '{days}' / "
                                        f"cap '{cap_id}': days must be a whole number ≥ 1, not '{days}'", item.value_loc("days"))
            continue
        if categories:
            caps.append(FrequencyCap(cap_id, categories, limit, days))
    return tuple(caps)


def _cap_priority(doc: YMap, templates: set[str] | None, problems: Problems) -> tuple[str, ...]:
    """``cap_priority: [birthday, festival]``: message template names, most important first."""
    block = doc.get("cap_priority")
    loc = doc.value_loc("cap_priority")
    if block is None or block is False:
        return ()
    names = [str(v).strip() for v in as_list(block)]
    if not isinstance(block, YList) or any(not n or isinstance(v, (dict, list)) for n, v in zip(names, as_list(block))):
        problems.error("bad-value", "cap_priority 要写成模板名称的列表，最重要的在前，如 [birthday, festival] / "
                                    "cap_priority must be a list of template names, most important first, e.g. [birthday, festival]", loc)
        return DEFAULT_CAP_PRIORITY
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.error("bad-value", f"cap_priority 里 '{name}' 写了两次 / '{name}' is listed twice in cap_priority",
                           block.item_loc(i), fix="每个模板只写一次，写在它的位置上 / list each template once, in its place")
        elif templates is not None and name not in templates:
            guess = did_you_mean(name, templates)
            problems.error("bad-value", f"cap_priority 里的 '{name}' 不是任何消息规则用的模板" + (f"，是不是 '{guess}'？" if guess else "")
                           + f" / '{name}' in cap_priority is no template a message rule uses" + (f"; did you mean '{guess}'?" if guess else ""),
                           block.item_loc(i), fix="写规则里 message 的 template，如 birthday、festival / "
                                                  "name the template of a rule's message, e.g. birthday, festival")
    return tuple(dict.fromkeys(names))


def resolve_ledger_path(policy: GuardPolicy, outbox: Path, override: Path | None = None) -> Path:
    """Where the ledger file is: ``--ledger PATH`` if given, else the policy's ``ledger.path``;
    a relative policy path is inside the outbox folder (default ``<outbox>/ledger.sqlite``)."""
    if override is not None:
        return Path(override)
    path = Path(policy.ledger_path)
    return path if path.is_absolute() else Path(outbox) / path


# -- applying the guards --------------------------------------------------------------------------------

@dataclass(slots=True)  # not frozen: a frozen dataclass is slow to build, and a run may build 100,000s
class Suppression:
    key: str
    kind: str  # "task" | "message"
    guard: str  # one of GUARDS
    reason: str  # for people (Chinese); names ids and dates only, never personal data
    customer_id: str = ""
    rule_id: str = ""


@dataclass(slots=True)
class Reschedule:
    """A message moved out of the quiet hours (not suppressed)."""

    key: str
    customer_id: str
    rule_id: str
    requested: datetime  # the run's send time, or the message's own later send time
    send_at: datetime
    reason: str


@dataclass
class GuardResult:
    """Kept items in the fixed order; suppressions guard by guard (no-contact first; dedupe: tasks,
    then messages), each in that order; quiet-hours moves in message order. ``still_open``: the
    tasks held back only because the same work was issued by an earlier run (``StillOpen``)."""

    kept_tasks: list[Task]
    kept_messages: list[Message]
    suppressed: list[Suppression] = field(default_factory=list)
    rescheduled: list[Reschedule] = field(default_factory=list)
    still_open: list["StillOpen"] = field(default_factory=list)
    recalled: list["Recall"] = field(default_factory=list)  # earlier runs' messages recalled (``find_recalls``)

    def counts(self) -> dict[str, Any]:
        """For the run manifest."""
        by_guard: dict[str, int] = {}
        for s in self.suppressed:
            by_guard[s.guard] = by_guard.get(s.guard, 0) + 1
        return {
            "suppressed": len(self.suppressed),
            "suppressed_by_guard": {g: by_guard[g] for g in GUARDS if g in by_guard},
            "rescheduled": len(self.rescheduled),
            "recalled": len(self.recalled),
            "recalled_by_guard": recalled_by_guard(self.recalled),
        }


@dataclass(slots=True)
class StillOpen:
    """A task this run's rules called for again but held back because an earlier run issued it: the
    work is still open (the task sheets' 仍待处理 page). ``origin_key``: the key of the ledger row
    that holds it (dedupe); empty: the latest task of its own rule to the customer (min-gap).
    ``origin_rule``: the rule id of that row: the task's own, or a former id of its rule (formerly:)."""

    task: Task
    guard: str  # "dedupe" | "min-gap"
    origin_key: str = ""
    origin_rule: str = ""


def recalled_by_guard(recalls: Iterable["Recall"]) -> dict[str, int]:
    """How many recalls each guard caused, in the guards' order (manifest, run summary)."""
    by_guard = Counter(r.guard for r in recalls)
    return {g: by_guard[g] for g in GUARDS if by_guard[g]}


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    """A naive local time in ``tz`` (aware times are converted; naive ones are taken as local)."""
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment.astimezone(tz).replace(tzinfo=None)
    return moment


# The documented order: customer, stage (classification → sla → care → churn), rule, then key; the
# last fields only break ties between items that share a key (the dedupe guard keeps the first).
def _task_order(t: Task) -> tuple:
    return (t.customer_id, _STAGE_ORDER.get(t.stage, len(STAGES)), t.rule_id, t.key, t.assignee, t.title)


def _message_order(m: Message) -> tuple:
    return (m.customer_id, _STAGE_ORDER.get(m.stage, len(STAGES)), m.rule_id, m.key, m.channel, m.template)


def _with_send_at(message: Message, send_at: datetime) -> Message:
    """A copy of ``message`` with ``send_at`` set (dataclasses.replace is several times slower,
    which shows at hundreds of thousands of messages)."""
    copy = Message.__new__(Message)
    copy.__dict__.update(message.__dict__)
    copy.send_at = send_at
    return copy


def send_from(as_of: date, as_of_time: datetime | None) -> datetime:
    """From when a run's messages may go out: its instant, or for a date alone (the batch of that
    day) the start of that day, so they go at the day's send time. Facts are still read up to the
    end of the day; only the sending is the day's: a birthday greeting decided on the birthday goes
    out that day, not the next morning."""
    return as_of_time or datetime.combine(as_of, time.min)


def _without_key_by(key: str) -> str:
    """rule|customer|period of a key (``engine.actions.ActionBuilder.key``), without its key_by part."""
    return "|".join(key.split("|", 3)[:3])


def _same_item_keys(item: Task | Message) -> list[str]:
    """The keys under which a ledger row, whenever issued, is ``item``: its own key; for a key with a
    key_by part (rule|customer|period|value), the key an earlier version of the rule gave before key_by
    was added (rule|customer|period: adding key_by must not issue everything again); and each of those
    under the rule's former ids (``formerly:``: a renamed or merged rule must not issue again)."""
    keys = [item.key]
    if item.key.count("|") >= 3:
        keys.append(_without_key_by(item.key))
    return keys + _under_former_ids(keys, item) if item.formerly else keys


def _earlier_period_keys(item: Task | Message) -> list[str]:
    """The keys a rule whose period counts at its period_of day (a greeting keyed by the birthday's
    year) gave while the period was the run date's: on 30 Dec under 2025 for 2 Jan
    (``actions.ActionBuilder.former_keys``), under its former ids too; they count only for rows issued
    from ``item.former_since`` on."""
    keys = list(item.former_keys)
    return keys + _under_former_ids(keys, item) if item.formerly else keys


def _under_former_ids(keys: list[str], item: Task | Message) -> list[str]:
    """``keys`` (each starting ``<rule id>|``) as they read under each former id of the item's rule."""
    cut = len(item.rule_id)
    return [old + key[cut:] for old in item.formerly for key in keys]


def late_date_only_run(policy: GuardPolicy, as_of: date, now: datetime) -> str | None:
    """A date-only batch sends from its day's send time; started when that time has passed and the
    quiet hours have begun (22:30), a sending system would send its messages at once, at night. The
    warning to say so (only printed: the run's files do not depend on the clock), or None."""
    quiet = policy.quiet_hours
    send = run_send_time(policy, send_from(as_of, None))
    local_now = _local(now, policy.tz)
    if quiet is None or local_now <= send or not quiet.contains(local_now):
        return None
    return (f"注意：这一批按 as-of {as_of} 当天 {send:%H:%M} 发送，现在已是免打扰时段；发送系统若立即发出，客户会在夜间收到。"
            "晚间运行请用 --as-of 写出时刻（或不写 --as-of），消息会排到免打扰结束后 / the batch's send time has passed and "
            "it is quiet hours now: give --as-of with the time (or leave it out) for a run this late")


def message_send_time(policy: GuardPolicy, base: datetime, category: str, send_on: date | None,
                      not_before: datetime | None) -> tuple[datetime, datetime]:
    """(requested, scheduled) send time of a message: the run's ``base`` (``run_send_time``), or its
    rule's ``send_on`` day at the send time if later (a birthday), or the moment ``not_before`` if later
    still (a time feature: a survey's resolution); then moved out of the quiet hours for its category.
    Also what ``explain`` says of a rule that did not fire."""
    requested = base
    if send_on is not None:
        requested = max(base, datetime.combine(send_on, policy.send_time))
    if not_before is not None:
        requested = max(requested, _local(not_before, policy.tz))
    quiet = policy.quiet_hours
    if quiet is not None and category in quiet.categories:
        return requested, quiet.first_allowed(requested)
    return requested, requested


def run_send_time(policy: GuardPolicy, moment: datetime) -> datetime:
    """The earliest send time of a run from ``moment`` (``send_from``): the policy's send time on that
    day, or ``moment`` if later (a run at 14:00 does not schedule messages for 10:00 that morning)."""
    now = _local(moment, policy.tz)
    return max(datetime.combine(now.date(), policy.send_time), now)


# The Customer fields that hold a channel's address (organization.yaml channels: address), for reasons.
ADDRESS_LABELS = {"phone": "手机号", "email": "邮箱", "wechat": "微信"}

# Channels that reach only a mainland mobile number: an SMS sent to a landline (0755-8888 1234) or to
# another country's mobile (+852 9123 4567) is lost.
MOBILE_ONLY_CHANNELS = frozenset({"sms"})


def channel_address(channel: Any, customer: Any) -> str | None:
    """The customer's address on ``channel`` (an organization.yaml channel), or None when there is
    none it can reach: no address recorded, or for SMS a number that is not a mainland mobile number."""
    address = getattr(customer, channel.address_field, None)
    if address and channel.key in MOBILE_ONLY_CHANNELS and not is_mobile(address):
        return None
    return address or None


# Why an SMS cannot go to a number that is not a mainland mobile (engine.coerce.phone_kind): said as
# it is, since a landline can still be called, a foreign number perhaps reached on another channel.
NOT_MOBILE_REASONS = {
    "landline": "客户只有座机号码，短信无法送达",
    "foreign": "客户的号码是境外号码，不是中国大陆手机号（短信只发大陆手机）",
    "other": "客户的号码不是中国大陆手机号（短信只发大陆手机）",
}


def _not_mobile_reason(number: str) -> str:
    return NOT_MOBILE_REASONS.get(phone_kind(number), NOT_MOBILE_REASONS["other"])


def missing_address_reason(channel: Any, customer: Any) -> str:
    """Why ``channel`` cannot reach ``customer`` (``channel_address`` is None): no address recorded,
    or for SMS a number that is no mainland mobile (a landline, a foreign number)."""
    number = getattr(customer, channel.address_field, None)
    if channel.key in MOBILE_ONLY_CHANNELS and number:  # a number an SMS cannot reach
        return _not_mobile_reason(number)
    return f"客户没有{ADDRESS_LABELS.get(channel.address_field, channel.address_field)}"


def no_contact_reason(org: Any, wanted: str, customer: Any) -> str:
    """Why a message for ``customer`` has nothing to go to, naming the channel the rule wanted:
    ``wanted`` is a channel key, or ``preferred`` (the customer's preferred channel, then the
    organization's default order: every address tried is missing, or an SMS number is no mainland
    mobile: a landline, a foreign number)."""
    if wanted != "preferred":
        channel = org.channels[wanted]
        return f"{missing_address_reason(channel, customer)}，无法按规则指定的{channel.label}渠道发送"
    tried = {org.channel_key(customer.preferred_channel), *org.default_channel_order}
    channels = [c for key, c in org.channels.items() if key in tried]  # organization.yaml order
    not_mobile = [c for c in channels if c.key in MOBILE_ONLY_CHANNELS and getattr(customer, c.address_field, None)]
    fields = list(dict.fromkeys(ADDRESS_LABELS.get(c.address_field, c.address_field) for c in channels
                                if c not in not_mobile))
    missing = "或".join(["、".join(fields[:-1]), fields[-1]]) if len(fields) > 1 else "".join(fields)
    if not_mobile:
        why = "；".join(dict.fromkeys(_not_mobile_reason(getattr(customer, c.address_field)) for c in not_mobile))
        return f"{why}；也没有{missing}，无法按客户偏好渠道发送" if missing else f"{why}，无法按客户偏好渠道发送"
    return f"客户没有{missing or '联系方式'}，无法按客户偏好渠道发送"


def unreachable_message(org: Any, spec: Any, rule: Any, rs: Any, customer: Any, key: str) -> Message:
    """The message a rule wanted to send to a customer who cannot be reached on its channel: no
    channel (``""``), no address, nothing rendered; its body is the reason (``no_contact_reason``),
    which the no-contact guard lists. It never gets past that guard."""
    return Message(customer.customer_id, customer.name, "", None, spec.template, spec.category, None,
                   no_contact_reason(org, spec.channel, customer), rule.rule_id, rs.policy_id, rs.stage, key=key)


def apply_guards(policy: GuardPolicy, ledger: Ledger | None, customers_by_id: Mapping[str, Any],
                 tasks: Iterable[Task], messages: Iterable[Message], moment: datetime, run_id: str,
                 recalled: Iterable[Recall] = ()) -> GuardResult:
    """Apply the guards in their fixed order (module doc). The ledger history is what ``run_id``
    sees (engine.ledger: every recorded run for a new run; for a re-executed run, the runs recorded
    before it). ``ledger`` None: nothing counts as issued before and caps see only this run (for
    policy tests). ``recalled``: earlier messages this run recalls (``find_recalls``), which the caps
    no longer count. Input objects are not modified: kept messages are copies with ``send_at`` set."""
    tz = policy.tz
    tasks = sorted(tasks, key=_task_order)
    messages = sorted(messages, key=_message_order)
    suppressed: list[Suppression] = []
    rescheduled: list[Reschedule] = []

    def drop(item: Task | Message, kind: str, guard: str, reason: str) -> None:
        suppressed.append(Suppression(item.key, kind, guard, reason, item.customer_id, item.rule_id))

    # 1. no-contact: a message without a channel has nothing to go to (``unreachable_message``).
    reachable: list[Message] = []
    for m in messages:
        if m.channel:
            reachable.append(m)
        else:
            drop(m, "message", "no-contact", m.body or "客户没有手机号、邮箱或微信，无法发送")
    messages = reachable

    # 2. dedupe: against other runs (ledger), then within this run.
    # Every key an earlier row of the same item may have (``_same_item_keys``, ``_earlier_period_keys``).
    # Made as the ledger takes them (not at all when it has no history: a first run).
    wanted = chain((("task", k) for t in tasks for k in (*_same_item_keys(t), *_earlier_period_keys(t))),
                   (("message", k) for m in messages for k in (*_same_item_keys(m), *_earlier_period_keys(m))))
    earlier = ledger.issued_among(wanted, for_run=run_id) if ledger is not None else {}
    seen: set[tuple[str, str]] = set()
    already: dict[tuple[str, datetime], str] = {}  # the reason's start, once per earlier run
    still_open: dict[str, StillOpen] = {}  # by the task's key: a key asked twice is one piece of work

    def issued_before(item: Task | Message, kind: str) -> tuple[tuple[str, datetime], str] | None:
        """(run id, issued at) and the key of the ledger row that already holds ``item``, or None."""
        if not earlier:  # nothing issued before (a first run): no keys to make and try
            return None
        for key in _same_item_keys(item):
            found = earlier.get((kind, key))
            if found is not None:
                return found, key
        for key in _earlier_period_keys(item):
            # Only a row issued in the window before the day: the same key of a year earlier is the
            # previous 元旦's greeting (keyed by its own year), not this one.
            found = earlier.get((kind, key))
            if found is not None and found[1].date() >= item.former_since:
                return found, key
        return None

    def fresh(item: Task | Message, kind: str) -> bool:
        ident = (kind, item.key)
        before = issued_before(item, kind)
        if before is not None:
            earlier_run, key = before
            start = already.get(earlier_run)
            if start is None:
                run, issued_at = earlier_run
                start = already[earlier_run] = f"已在 {issued_at:%Y-%m-%d} 的运行 {run} 中发出（同一规则、客户、周期："
            rule_id = key.split("|", 1)[0]
            renamed = f"；{rule_id} 是 {item.rule_id} 以前的规则编号（formerly）" if rule_id != item.rule_id else ""
            drop(item, kind, "dedupe", start + key + "）" + renamed)
            if kind == "task":
                still_open.setdefault(item.key, StillOpen(item, "dedupe", key, rule_id))
            return False
        if ident in seen:
            drop(item, kind, "dedupe", f"本次运行中已有同一幂等键的{'任务' if kind == 'task' else '消息'}（{item.key}）")
            return False
        seen.add(ident)
        return True

    # Tasks made unnecessary by another task of this run for the same customer (task.replaces). The
    # replacing task counts even when the ledger holds it back: it was issued earlier in its period and
    # still stands (the owner's churn revisit this month covers the periodic revisit). Unless the
    # replaced task has a min_gap_days its family counts for: then that gap says how long an issued
    # replacing task covers it (an apology issued once per complaint, months ago, is no revisit today).
    replacing = {(t.customer_id, r): t for t in tasks for r in t.replaces} if any(t.replaces for t in tasks) else {}

    def not_replaced(t: Task) -> bool:
        other = replacing.get((t.customer_id, t.rule_id))
        by = other.rule_id if other is not None else None
        if by is None or by == t.rule_id:
            return True
        if t.min_gap is not None and by in t.min_gap.rules and issued_before(other, "task") is not None:
            return True  # left to the min-gap guard
        drop(t, "task", "dedupe", f"与规则 {by} 的任务是同一项工作（策略中 {by} 的 task.replaces 列有 {t.rule_id}），"
                                   f"不另派（{t.key}）")
        return False

    kept_tasks = [t for t in tasks if fresh(t, "task") and not_replaced(t)]
    candidates = [m for m in messages if fresh(m, "message")]

    # 3. min-gap: against the latest issue of the rule or its family (ledger), one query for the run.
    gapped = [(t, "task") for t in kept_tasks if t.min_gap is not None]
    gapped += [(m, "message") for m in candidates if m.min_gap is not None]
    if gapped and ledger is not None:
        today = _local(moment, tz).date()
        widest = max(x.min_gap.days for x, _ in gapped)
        wanted = ((kind, x.customer_id, rule_id) for x, kind in gapped for rule_id in x.min_gap.rules)  # as above
        latest = ledger.latest_issues(wanted, today - timedelta(days=widest - 1), today, for_run=run_id)
        held: set[int] = set()
        for x, kind in gapped:
            reason = _gap_reason(x, kind, latest, today) if latest else None
            if reason is not None:
                drop(x, kind, "min-gap", reason)
                held.add(id(x))
                # Held by its own rule's earlier task (not only a family rule's; under a former id, too):
                # that task is still open.
                own = max(((day, rule_id) for rule_id in (x.rule_id, *x.formerly)
                           if (day := latest.get((kind, x.customer_id, rule_id))) is not None), default=None)
                if kind == "task" and own is not None and (today - own[0]).days < x.min_gap.days:
                    still_open.setdefault(x.key, StillOpen(x, "min-gap", origin_rule=own[1]))
        if held:
            kept_tasks = [t for t in kept_tasks if id(t) not in held]
            candidates = [m for m in candidates if id(m) not in held]

    # 4–5. opt-out and consent.
    allowed: list[Message] = []
    for m in candidates:
        held = consent_hold(policy, customers_by_id.get(m.customer_id), m.category)
        if held is not None:
            drop(m, "message", *held)
            continue
        allowed.append(m)

    # 6. quiet hours: every kept message gets a send time outside them.
    base = run_send_time(policy, moment)
    quiet = policy.quiet_hours
    scheduled: list[Message] = []
    for m in allowed:
        requested, send_at = message_send_time(policy, base, m.category, m.send_on, m.send_at)
        if send_at != requested:
            rescheduled.append(Reschedule(m.key, m.customer_id, m.rule_id, requested, send_at,
                                          f"免打扰时段 {quiet.label()}，改为 {send_at:%Y-%m-%d %H:%M} 发送"))
        scheduled.append(_with_send_at(m, send_at))

    # 7. frequency caps: earlier runs (ledger) plus this run's kept messages. Each customer's messages
    # in cap_priority order (birthday, festival, the rest), so a run keeps the most important; each
    # counts only messages at least as important as itself, so earlier runs' promotions hold back no greeting.
    caps = policy.caps
    order = {template: i for i, template in enumerate(policy.cap_priority)}
    last = len(policy.cap_priority)  # every template not listed: promotions, member day, ...

    def rank(template: str | None) -> int:
        return order.get(template, last)
    history: dict[str, list[tuple[str | None, datetime, str | None]]] = {}
    if caps and scheduled and ledger is not None:
        widest = timedelta(days=max(c.days for c in caps))
        times = [m.send_at for m in scheduled]
        history = ledger.messages_between(min(times) - widest, max(times) + widest, for_run=run_id)
        for r in recalled:  # recalled by this run: not sent, so not counted (the ledger knows from the next run on)
            earlier_times = history.get(r.customer_id, [])
            if (r.category, r.send_at, r.template) in earlier_times:
                earlier_times.remove((r.category, r.send_at, r.template))
    this_run: dict[str, list[tuple[str, datetime, str]]] = {}
    kept: set[int] = set()
    for m in sorted(scheduled, key=lambda m: (m.customer_id, rank(m.template))):  # stable: fixed order within a rank
        reason = None
        own = rank(m.template)
        for cap in caps:
            if m.category not in cap.categories:
                continue
            before = _count_within(history.get(m.customer_id, []), cap, m.send_at, rank, own)
            now = _count_within(this_run.get(m.customer_id, []), cap, m.send_at, rank, own)
            if before + now >= cap.max_messages:
                names = "、".join(CATEGORY_LABELS.get(c, c) for c in cap.categories)
                counted = (f"（按 cap_priority 只算同等或更重要的：{'、'.join(policy.cap_priority[:own + 1])}）"
                           if own < last else "")
                reason = (f"频次上限 {cap.cap_id}：发送时间前后 {cap.days} 天内已有 {before + now} 条{names}消息{counted}"
                          f"（以前的运行 {before} 条，本次运行 {now} 条；上限 {cap.max_messages} 条）")
                break
        if reason is not None:
            drop(m, "message", "frequency-cap", reason)
            continue
        this_run.setdefault(m.customer_id, []).append((m.category, m.send_at, m.template))
        kept.add(id(m))
    kept_messages = [m for m in scheduled if id(m) in kept]  # back in the fixed order

    # A task another task of this run replaces is no open work of its own: that task covers it (new,
    # or itself still open).
    open_tasks = [o for o in still_open.values()
                  if replacing.get((o.task.customer_id, o.task.rule_id), o.task).rule_id == o.task.rule_id]
    return GuardResult(kept_tasks, kept_messages, suppressed, rescheduled, open_tasks)


def consent_hold(policy: GuardPolicy, customer: Any, category: str | None) -> tuple[str, str] | None:
    """The opt-out and consent guards (4–5) for one message of ``category`` to ``customer`` (None: not
    in the export): (guard, reason) if it may not go, else None. Used for new messages and, by
    ``find_recalls``, for messages issued ahead by earlier runs."""
    opted_out = bool(getattr(customer, "opt_out", False))
    if opted_out and category == "marketing":
        return "opt-out", "客户已退订（opt-out），不发送营销消息"
    if opted_out and policy.opt_out_blocks_service:
        return "opt-out", "客户已退订（opt-out），按 guards.yaml（opt_out.blocks_service）服务消息也不发送"
    if category == "marketing" and policy.marketing_requires_consent:
        if customer is None:
            return "consent", "找不到客户资料，无法确认营销同意，按未同意处理"
        consent = getattr(customer, "marketing_consent", None)
        if consent is False:
            return "consent", "客户未同意接收营销消息"
        if consent is None and policy.consent_not_recorded == "no_consent":
            return "consent", "客户资料未记录营销同意，按未同意处理（guards.yaml consent.not_recorded）"
    return None


# -- recalling messages issued ahead --------------------------------------------------------------------

@dataclass(slots=True)
class Recall:
    """A message an earlier run issued for later (a ``send_on`` day: a birthday greeting issued a few
    days ahead) that would now be held back: the sending system must not send it."""

    key: str
    customer_id: str
    rule_id: str
    channel: str | None
    template: str | None
    category: str | None
    send_at: datetime | None
    issued_by: str  # the run that issued it
    issued_at: datetime  # that run's as-of instant
    guard: str  # no-contact, opt-out or consent
    reason: str  # for people (Chinese); ids only


def find_recalls(policy: GuardPolicy, org: Any, ledger: Ledger, customers_by_id: Mapping[str, Any],
                 moment: datetime, run_id: str) -> list[Recall]:
    """The messages earlier runs issued (as ``run_id`` sees the ledger: not withdrawn runs, not
    recalled already) whose send time is after ``moment`` (``send_from``: not sent yet) and that the
    guards would now hold back: the customer has no address on the message's channel any more
    (no-contact), opted out or has no marketing consent (``consent_hold``), as in this export. A
    customer missing from the export is not checked (an export may hold only some customers); nor is
    the quiet-hours or cap guard (the message's time and count were fine when issued). In ledger
    order: customer, send time, key."""
    recalls = []
    for entry in ledger.pending_messages(_local(moment, policy.tz), for_run=run_id):
        customer = customers_by_id.get(entry.customer_id)
        if customer is None:
            continue
        channel = org.channels.get(entry.channel) if entry.channel else None
        held = None
        if channel is not None and channel_address(channel, customer) is None:
            held = "no-contact", f"{missing_address_reason(channel, customer)}，原定的{channel.label}消息无法送达"
        held = held or consent_hold(policy, customer, entry.category)
        if held is not None:
            recalls.append(Recall(entry.key, entry.customer_id, entry.rule_id, entry.channel, entry.template, entry.category,
                                  entry.send_at, entry.run_id, entry.issued_at, *held))
    return recalls


def _gap_reason(item: Task | Message, kind: str, latest: Mapping[tuple[str, str, str], date], today: date) -> str | None:
    """Why ``item`` is held back by its ``min_gap``, or None: the latest earlier issue (on or before
    ``today``) of its rule or family to the same customer, if fewer than the gap's days ago. Ties on
    the date name the item's own rule first, then the others in id order."""
    gap = item.min_gap
    found = None
    for rule_id in gap.rules:  # own rule first, then the family in id order
        day = latest.get((kind, item.customer_id, rule_id))
        if day is not None and (today - day).days < gap.days and (found is None or day > found[0]):
            found = (day, rule_id)
    if found is None:
        return None
    day, rule_id = found
    verb = "派" if kind == "task" else "发"
    basis = f"（{gap.feature}）" if gap.feature else ""
    shared = dict(gap.siblings).get(rule_id)  # a sibling: say why its task counts for this rule's gap
    why = f"（它和 {item.rule_id} 都取代 {shared}，算同一项工作）" if shared else ""
    if rule_id in item.formerly:
        why = f"（{item.rule_id} 以前的规则编号，formerly）"
    return (f"间隔不足：{day:%Y-%m-%d} 已{verb} {rule_id}{why}，间隔要求 {gap.days} 天{basis}，"
            f"最早 {day + timedelta(days=gap.days):%Y-%m-%d} 可再{verb}（{item.key}）")


_GAP_REASON = re.compile(r"间隔不足：(\d{4}-\d{2}-\d{2}) 已[派发] ([^（，\s]+)")  # as _gap_reason writes it


def held_by_run(record: Mapping[str, Any], run_id: str, as_of: date, issued: set[tuple[str, str]]) -> bool:
    """Whether a decision-log record (decisions.jsonl) has an output the dedupe or min-gap guard held
    back because of run ``run_id``'s ledger rows: a dedupe reason naming that run (``fresh``), or a
    min-gap reason naming its as-of date and a rule it issued to that customer (``_gap_reason``;
    ``issued``: that run's (customer id, rule id) pairs). For withdrawn runs (ledger --withdraw, explain)."""
    for out in record.get("outputs") or []:
        item = (out.get("task") or out.get("message")) if isinstance(out, dict) else None
        if not isinstance(item, dict):
            continue
        reason = str(item.get("suppressed") or "")
        if item.get("suppressed_by") == "dedupe" and f"的运行 {run_id} 中发出" in reason:
            return True
        found = _GAP_REASON.match(reason) if item.get("suppressed_by") == "min-gap" else None
        if found:
            day, rule_id = found.groups()
            if day == as_of.isoformat() and (record.get("customer_id"), rule_id) in issued:
                return True
    return False


def _count_within(items: list[tuple[str | None, datetime, str | None]], cap: FrequencyCap, send_at: datetime,
                  rank: Any, own: int) -> int:
    """Messages of the cap's categories "within D days": sent less than D days before or after
    ``send_at`` (after, too: an earlier run may have scheduled a message for later), whose template
    ranks at least as high as ``own`` (``rank``: its place in cap_priority, lower is more important)."""
    window = timedelta(days=cap.days)
    return sum(1 for category, moment, template in items
               if category in cap.categories and abs(moment - send_at) < window and rank(template) <= own)


# -- the decision log ---------------------------------------------------------------------------------

def annotate_firings(firings: Iterable[Firing], suppressed: Iterable[Suppression],
                     rescheduled: Iterable[Reschedule] = (), kept_messages: Iterable[Message] = ()) -> int:
    """Write the guards' verdicts into the decision log. Each firing output ``{"task": {...}}`` or
    ``{"message": {...}}`` whose ``"key"`` matches gets ``"suppressed_by"`` (the guard) and
    ``"suppressed"`` (the reason), or ``"send_at"`` and ``"rescheduled"`` for a quiet-hours move;
    a kept message with a ``send_on`` day gets its ``"send_at"`` (``kept_messages``);
    the firing's ``suppressed_by`` names the guard(s). Returns how many outputs were annotated."""
    verdicts = {(s.kind, s.key): s for s in suppressed}
    moves = {r.key: r for r in rescheduled}
    scheduled = {m.key: m.send_at for m in kept_messages if m.send_on is not None}
    annotated = 0
    for firing in firings:
        for output in firing.outputs:
            # Most outputs set a tag: two lookups tell them apart (a million firings at 100,000 customers).
            if "task" in output:
                kind = "task"
            elif "message" in output:
                kind = "message"
            else:
                continue
            detail = output[kind]
            if not isinstance(detail, dict) or not detail.get("key"):
                continue
            verdict = verdicts.get((kind, detail["key"]))
            if verdict is not None:
                detail["suppressed_by"] = verdict.guard
                detail["suppressed"] = verdict.reason
                guards = firing.suppressed_by.split(", ") if firing.suppressed_by else []
                if verdict.guard not in guards:
                    firing.suppressed_by = ", ".join([*guards, verdict.guard])
                annotated += 1
            elif kind == "message" and detail["key"] in moves:
                move = moves[detail["key"]]
                detail["send_at"] = move.send_at
                detail["rescheduled"] = move.reason
                annotated += 1
            elif kind == "message" and detail["key"] in scheduled:
                detail["send_at"] = scheduled[detail["key"]]
                annotated += 1
    return annotated


def guard_evaluation(policy: GuardPolicy, ledger: Ledger | None, customers_by_id: Mapping[str, Any], evaluation: Any,
                     moment: datetime, run_id: str, org: Any = None) -> GuardResult:
    """What run.py needs in one call (``moment``: ``send_from``): apply the guards to an ``engine.run.Evaluation``, replace its
    tasks and messages by the kept ones, annotate its decision log and fix the per-customer
    task/message counts; with a ledger and the organization (its channels), find the earlier runs'
    messages to recall (``find_recalls``). Returns the result (for the manifest counts and ``write_guard_report``)."""
    recalled = find_recalls(policy, org, ledger, customers_by_id, moment, run_id) if ledger is not None and org is not None else []
    result = apply_guards(policy, ledger, customers_by_id, evaluation.tasks, evaluation.messages, moment, run_id, recalled)
    result.recalled = recalled
    annotate_firings(evaluation.firings, result.suppressed, result.rescheduled, result.kept_messages)
    evaluation.tasks = result.kept_tasks
    evaluation.messages = result.kept_messages
    task_counts: dict[str, int] = {}
    message_counts: dict[str, int] = {}
    for t in result.kept_tasks:
        task_counts[t.customer_id] = task_counts.get(t.customer_id, 0) + 1
    for m in result.kept_messages:
        message_counts[m.customer_id] = message_counts.get(m.customer_id, 0) + 1
    for row in evaluation.customer_rows:
        cid = row.get("customer_id")
        if "task_count" in row:
            row["task_count"] = task_counts.get(cid, 0)
        if "message_count" in row:
            row["message_count"] = message_counts.get(cid, 0)
    return result


SUPPRESSED_COLUMNS = [Column("客户编号"), Column("类型"), Column("规则编号"), Column("保护规则"), Column("原因", width=70), Column("幂等键")]
RESCHEDULED_COLUMNS = [Column("客户编号"), Column("规则编号"), Column("原定时间", kind="datetime"), Column("发送时间", kind="datetime"),
                       Column("原因", width=50), Column("幂等键")]
RECALLED_COLUMNS = [Column("客户编号"), Column("规则编号"), Column("渠道"), Column("模板"), Column("原定发送时间", kind="datetime"),
                    Column("保护规则"), Column("原因", width=60), Column("发出的运行", width=24), Column("幂等键")]


GUARD_REPORT_NAME = "guards.xlsx"


def write_guard_report(folder: Path, result: GuardResult) -> dict[str, Any]:
    """``guards.xlsx`` in the run folder (``guard_report``); returns the result's counts."""
    guard_report(result).write(Path(folder) / GUARD_REPORT_NAME)
    return result.counts()


def guard_report(result: GuardResult) -> Workbook:
    """``guards.xlsx``: what the guards held back, what they moved and which earlier runs' messages
    they recalled, for ops staff who wonder why a customer got nothing. Ids only, no personal data."""
    suppressed_rows = [
        (s.customer_id, "任务" if s.kind == "task" else "消息", s.rule_id, GUARD_LABELS.get(s.guard, s.guard), s.reason, s.key)
        for s in result.suppressed
    ]
    moved_rows = [(r.customer_id, r.rule_id, r.requested, r.send_at, r.reason, r.key) for r in result.rescheduled]
    return Workbook([
        Sheet("被拦截 suppressed", SUPPRESSED_COLUMNS, suppressed_rows),
        Sheet("已改期 rescheduled", RESCHEDULED_COLUMNS, moved_rows),
        Sheet("已撤回 recalled", RECALLED_COLUMNS, recalled_rows(result.recalled)),
    ], title="发送保护 guards")


def recalled_rows(recalls: Iterable["Recall"]) -> list[tuple]:
    """The rows of a 已撤回 sheet (``RECALLED_COLUMNS``): guards.xlsx's and audit.xlsx's."""
    return [(r.customer_id, r.rule_id, r.channel, r.template, r.send_at, GUARD_LABELS.get(r.guard, r.guard), r.reason,
             r.issued_by, r.key) for r in recalls]
