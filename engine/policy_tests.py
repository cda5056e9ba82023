"""Policy tests: small, hand-written cases that pin down what the policies decide.

A test file (``policies/tests/*.yaml``) holds cases. Each case describes one customer (its record, its
interactions and orders), an as-of date, and the decisions expected. ``crm-engine test`` builds a
``Dataset`` from each case and runs the real ``engine.run.evaluate_dataset`` on it, then the guards (``engine.guards``: opt-out, consent, quiet hours,
frequency caps, dedupe within the case) without a contact ledger, so nothing counts as sent before:
the same code a batch run uses. File format::

    description: 价值分层
    as_of: 2026-11-20                 # default for the cases below (a date, or 2026-11-20T10:00)
    customer: {owner: 张伟}            # fields every case's customer starts with (optional)
    cases:
      - id: vt1-big-spender
        description: 近一年消费10万元以上：高价值
        customer: {lifecycle_stage: 签约, marketing_consent: true, phone: '13800000000'}
        orders:                       # date: 2026-10-01, or days_ago: 30 (before as_of)
          - {days_ago: 30, amount: 120000}
        interactions:                 # time: '2026-11-18 10:00', or days_ago: 2 (+ at: '10:00')
          - {id: I1, days_ago: 2, type: 投诉, status: 处理中, channel: 电话}
        expect:
          tags: {value_tier: 高}       # any tag, score or feature of the customer after all stages
          fired: [VT-1]               # these rules fire (others may fire too)
          not_fired: [VT-2]
          tasks: [{rule: CL-ASSIGN-DEDICATED-OWNER, assignee: 王敏}]   # exactly these tasks
          messages: [{rule: CL-LOW-VALUE-OFFER, channel: sms}]      # exactly these messages (sent)
          suppressed: [{rule: CL-INTENT-NOTE, guard: consent}]       # exactly these held back by a guard
          sla: {I1: {rule: sla-complaint-high, first_response: open_breached}}

``tasks`` and ``messages`` list every task/message of the case (``[]``: none); an item names the
rule and, optionally, ``assignee``/``priority``/``title``/``due`` (tasks), ``channel``/``template``/``send_at``
(messages) or ``guard``/``kind`` (suppressed: dedupe, opt-out, consent, frequency-cap; task or
message). Leave the key out to not check them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from engine.errors import EngineError, Location, PolicyError, Problem
from engine.model import Customer, Dataset, Interaction, Order, SourceRow
from engine.outputs import firing_record
from engine.policy.loader import PolicySet
from engine.policy.schema import Problems, check_keys, did_you_mean
from engine.policy.yaml_source import YList, YMap, load_yaml

FILE_KEYS = ("kind", "description", "as_of", "customer", "cases")
CASE_KEYS = ("id", "description", "as_of", "customer", "interactions", "orders", "expect")
EXPECT_KEYS = ("tags", "fired", "not_fired", "tasks", "messages", "suppressed", "sla")
TASK_KEYS = ("rule", "assignee", "priority", "title", "due")  # due as 'YYYY-MM-DD HH:MM', or a day alone
MESSAGE_KEYS = ("rule", "channel", "template", "send_at")  # send_at as 'YYYY-MM-DD HH:MM', or a day alone
SUPPRESSED_KEYS = ("rule", "guard", "kind")
SLA_KEYS = ("rule", "first_response", "resolution")

# Field kinds of the fact records, for reading YAML values (everything else is text).
_DATE_FIELDS = {"birthday", "signed_date", "date"}
_DATETIME_FIELDS = {"time", "first_response_time", "resolved_time"}
_BOOL_FIELDS = {"birthday_is_lunar", "marketing_consent", "opt_out"}
_NUMBER_FIELDS = {"points", "amount", "quantity"}
_INT_FIELDS = {"satisfaction"}


@dataclass
class Case:
    case_id: str
    description: str
    file: str
    location: Location
    as_of: date
    as_of_time: datetime | None
    dataset: Dataset
    expect: YMap
    has_mistakes: bool = False  # its customer, orders or interactions had errors: checked, not counted


@dataclass
class CaseResult:
    case: Case
    failures: list[str] = field(default_factory=list)
    fired: set[str] = field(default_factory=set)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class TestReport:
    results: list[CaseResult]
    problems: list[Problem]  # mistakes in the test files (or the policies), with locations
    rules: dict[str, str]  # every rule id → where it is defined
    covered: set[str]
    not_run: list[str] = field(default_factory=list)  # cases (or whole files) not run because of mistakes in them
    selected: bool = False  # only the cases -k chose ran: coverage says nothing about the other rules

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def uncovered(self) -> list[str]:
        return [r for r in self.rules if r not in self.covered]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run and not [p for p in self.problems if p.severity == "error"]


# --------------------------------------------------------------------------------------------------
# Reading cases
# --------------------------------------------------------------------------------------------------


def _as_of(value: Any, loc: Location, problems: Problems) -> tuple[date, datetime | None] | None:
    if isinstance(value, datetime):
        return value.date(), value.replace(tzinfo=None)
    if isinstance(value, date):
        return value, None
    try:
        text = str(value).strip().replace(" ", "T")
        if "T" in text:
            moment = datetime.fromisoformat(text)
            return moment.date(), moment
        return date.fromisoformat(text), None
    except ValueError:
        problems.error("bad-value", f"as_of '{value}' 不是日期（例如 2026-11-20 或 2026-11-20T10:00） / "
                                    f"as_of '{value}' is not a date (e.g. 2026-11-20 or 2026-11-20T10:00)", loc)
        return None


def _convert(name: str, value: Any, loc: Location, problems: Problems) -> Any:
    """A YAML value as the fact field ``name`` holds it; a wrong value is reported and becomes None."""
    if value is None:
        return None
    try:
        if name in _DATE_FIELDS:
            if isinstance(value, datetime):
                return value.date()
            return value if isinstance(value, date) else date.fromisoformat(str(value).strip())
        if name in _DATETIME_FIELDS:
            if isinstance(value, datetime):
                return value.replace(tzinfo=None)
            if isinstance(value, date):
                return datetime.combine(value, time(0, 0))
            return datetime.fromisoformat(str(value).strip())
        if name in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if name in _NUMBER_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            return float(value)
        if name in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
            return value
    except ValueError:
        kind = ("日期，如 2026-11-20" if name in _DATE_FIELDS else "时间，如 '2026-11-20 10:00'" if name in _DATETIME_FIELDS
                else "true 或 false" if name in _BOOL_FIELDS else "数字")
        problems.error("bad-value", f"{name} 应为{kind}，不是 '{value}'", loc)
        return None
    return str(value)


def _fields_of(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _record(cls, block: Any, loc: Location, fixed: dict[str, Any], extra: tuple[str, ...], what: str,
            problems: Problems) -> dict[str, Any] | None:
    """Field values for ``cls`` from a YAML mapping (unknown keys reported with a suggestion)."""
    allowed = [n for n in _fields_of(cls) if n not in ("source", "customer_id")] + list(extra)
    if not check_keys(block, what, allowed, (), problems, loc):
        return None
    values = dict(fixed)
    for key, value in block.items():
        if key in extra or key not in allowed:
            continue  # unknown keys were reported by check_keys
        values[key] = _convert(key, value, block.value_loc(key), problems)
    return values


def _relative_day(block: YMap, as_of: date, problems: Problems) -> date | None:
    days = block.get("days_ago")
    if isinstance(days, bool) or not isinstance(days, int):
        problems.error("bad-value", f"days_ago 应为整数天数，不是 '{days}'", block.value_loc("days_ago"))
        return None
    return as_of - timedelta(days=days)


def _build_case(block: YMap, loc: Location, file: str, defaults: dict[str, Any], file_as_of: Any,
                problems: Problems) -> Case | None:
    if not check_keys(block, "a test case", CASE_KEYS, ("id", "expect"), problems, loc):
        return None
    case_id = str(block.get("id", "?"))
    raw_as_of = block.get("as_of", file_as_of)
    if raw_as_of is None:
        problems.error("missing-field", f"用例 {case_id} 没有 as_of（可写在用例里或文件开头）", block.loc)
        return None
    when = _as_of(raw_as_of, block.value_loc("as_of") if "as_of" in block else block.loc, problems)
    if when is None:
        return None
    as_of, as_of_time = when
    source = SourceRow(file, case_id, block.loc.line or 0)

    customer_block = block.get("customer") or YMap()
    if not isinstance(customer_block, YMap):
        problems.error("not-a-mapping", "customer 应为 '字段: 值' 的块", block.value_loc("customer"))
        return None
    values = dict(defaults)
    fields = _record(Customer, customer_block, block.value_loc("customer"), {}, ("customer_id",), "customer", problems)
    if fields is None:
        return None
    values.update(fields)
    customer_id = str(customer_block.get("customer_id", defaults.get("customer_id", "T0001")))
    customer = Customer(customer_id=customer_id, source=source, **{k: v for k, v in values.items() if k != "customer_id"})

    interactions = []
    items = block.get("interactions") or YList()
    for n, item in enumerate(items, start=1):
        item_loc = items.item_loc(n - 1) if isinstance(items, YList) else block.loc
        fields = _record(Interaction, item, item_loc, {}, ("id", "days_ago", "at"), "an interaction", problems)
        if fields is None:
            continue
        fields.pop("interaction_id", None)
        if "days_ago" in item:
            day = _relative_day(item, as_of, problems)
            at = _convert("time", f"2000-01-01 {item.get('at', '10:00')}", item.value_loc("at"), problems)
            fields["time"] = datetime.combine(day, at.time()) if day and at else None
        if fields.get("time") is None:
            if "time" not in item and "days_ago" not in item:
                problems.error("missing-field", "互动记录需要 time（如 '2026-11-18 10:00'）或 days_ago", item_loc)
            continue
        interactions.append(Interaction(interaction_id=str(item.get("id", f"I{n}")), customer_id=customer_id,
                                        source=SourceRow(file, case_id, item_loc.line or 0), **fields))
    orders = []
    items = block.get("orders") or YList()
    for n, item in enumerate(items, start=1):
        item_loc = items.item_loc(n - 1) if isinstance(items, YList) else block.loc
        fields = _record(Order, item, item_loc, {}, ("id", "days_ago"), "an order", problems)
        if fields is None:
            continue
        fields.pop("order_id", None)
        if "days_ago" in item:
            fields["date"] = _relative_day(item, as_of, problems)
        if fields.get("date") is None or fields.get("amount") is None:
            if ("date" not in item and "days_ago" not in item) or "amount" not in item:
                problems.error("missing-field", "订单需要 date（或 days_ago）和 amount", item_loc)
            continue
        orders.append(Order(order_id=str(item.get("id", f"O{n}")), customer_id=customer_id,
                            source=SourceRow(file, case_id, item_loc.line or 0), **fields))

    expect = block.get("expect")
    if not check_keys(expect, "expect", EXPECT_KEYS, (), problems, block.value_loc("expect")):
        return None
    return Case(case_id, str(block.get("description", "")), file, block.key_loc("id"), as_of, as_of_time,
                Dataset(customers=[customer], interactions=interactions, orders=orders), expect)


def load_cases(tests_dir: Path, display_root: Path | None = None) -> tuple[list[Case], list[Problem], list[str]]:
    """Every case of every ``*.yaml`` file in ``tests_dir``, the mistakes found in them, and the cases
    not run because of a mistake (a case with a bad value would run without it and fail for the wrong
    reason; a file that cannot be read is named as a whole)."""
    problems = Problems()
    cases: list[Case] = []
    not_run: list[str] = []
    root = display_root or tests_dir.parent
    for path in sorted(tests_dir.glob("*.y*ml")):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        try:
            doc = load_yaml(path, name)
        except PolicyError as exc:
            problems.extend(exc.problems)
            not_run.append(f"{name}（整个文件 whole file）")
            continue
        except ValueError as exc:  # PyYAML builds dates itself: 2026-13-45 raises here, without a position
            problems.error("bad-value", f"文件中有无法读取的值（{exc}），例如不存在的日期", Location(file=name),
                           fix="日期写成 2026-11-20 这样的真实日期")
            not_run.append(f"{name}（整个文件 whole file）")
            continue
        if not check_keys(doc, "a policy test file", FILE_KEYS, ("cases",), problems, Location(file=name, line=1, col=1)):
            not_run.append(f"{name}（整个文件 whole file）")
            continue
        defaults: dict[str, Any] = {}
        if "customer" in doc:
            defaults = _record(Customer, doc.get("customer"), doc.value_loc("customer"), {}, ("customer_id",),
                               "customer", problems) or {}
            if isinstance(doc.get("customer"), YMap) and "customer_id" in doc["customer"]:
                defaults["customer_id"] = str(doc["customer"]["customer_id"])
        blocks = doc.get("cases")
        if not isinstance(blocks, YList):
            problems.error("not-a-list", "cases: 应为用例列表（每个用例以 '- id:' 开头）", doc.value_loc("cases"))
            not_run.append(f"{name}（整个文件 whole file）")
            continue
        # The file's as_of is checked once, at its own line: a bad one was reported at every case using it.
        file_as_of_bad = "as_of" in doc and _as_of(doc.get("as_of"), doc.value_loc("as_of"), problems) is None
        seen: dict[str, Location] = {}
        for i, block in enumerate(blocks):
            if file_as_of_bad and isinstance(block, YMap) and "as_of" not in block:
                not_run.append(f"{name} {block.get('id') or f'第 {i + 1} 个用例'}")
                continue
            errors_before = len(problems.errors)
            case = _build_case(block, blocks.item_loc(i), name, defaults, doc.get("as_of"), problems)
            if case is None or len(problems.errors) > errors_before:
                case_id = block.get("id") if isinstance(block, YMap) else None
                not_run.append(f"{name} {case_id or f'第 {i + 1} 个用例'}")
                if case is None:
                    continue
                # Still checked, so every mistake in it is reported at once; its result is not counted
                # (without the bad order it would fail, or pass, for the wrong reason).
                case.has_mistakes = True
            if case.case_id in seen:
                problems.error("duplicate-case-id", f"用例编号 '{case.case_id}' 已在 {seen[case.case_id]} 使用过", case.location)
            seen.setdefault(case.case_id, case.location)
            cases.append(case)
    return cases, list(problems), not_run


# --------------------------------------------------------------------------------------------------
# Checking a case
# --------------------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "空"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and not isinstance(expected, bool):
        return abs(expected - actual) < 1e-9 and isinstance(actual, bool) == isinstance(expected, bool)
    if isinstance(expected, datetime) and isinstance(actual, str):  # unquoted 2026-11-27 18:00:00 in YAML
        return expected.strftime("%Y-%m-%d %H:%M") == actual and not expected.second
    if isinstance(expected, date) and isinstance(actual, str):
        # A day alone matches that day, at any time: due: 2026-11-27 matches '2026-11-27 18:00'.
        day = expected.isoformat()
        return actual == day or actual.startswith(day + " ")
    if isinstance(expected, YList) or isinstance(expected, list):
        return isinstance(actual, (list, tuple)) and list(actual) == list(expected)
    return expected == actual


def _match_items(kind: str, expected: Any, actual: list[dict[str, Any]], keys: tuple[str, ...], loc: Location,
                 problems: Problems) -> list[str]:
    """Compare the expected list with what was produced, as multisets on the fields each item names."""
    if not isinstance(expected, (list, YList)):
        problems.error("not-a-list", f"expect.{kind} 应为列表（没有时写 []）", loc)
        return []
    label = {"tasks": "任务", "messages": "消息", "suppressed": "被拦截"}[kind]
    remaining = list(actual)
    failures = []
    for i, item in enumerate(expected):
        item_loc = expected.item_loc(i) if isinstance(expected, YList) else loc
        if isinstance(item, str):
            item = {"rule": item}
        elif not check_keys(item, f"an expected {kind[:-1]}", keys, ("rule",), problems, item_loc):
            continue
        found = next((a for a in remaining if all(_same(v, a.get(k)) for k, v in item.items())), None)
        if found is None:
            failures.append(f"缺少{label}：{_describe(item)}" + _near(item, remaining))
        else:
            remaining.remove(found)
    for a in remaining:
        failures.append(f"多出{label}：{_describe({k: a.get(k) for k in keys})}")
    return failures


def _describe(item: dict[str, Any]) -> str:
    rule = item.get("rule")
    rest = "，".join(f"{k}={_shown(v)}" for k, v in item.items() if k != "rule" and v is not None)
    return f"{rule}" + (f"（{rest}）" if rest else "")


def _near(item: dict[str, Any], actual: list[dict[str, Any]]) -> str:
    """When the rule produced something, but with other details, say what it produced."""
    same_rule = [a for a in actual if a.get("rule") == item.get("rule")]
    if not same_rule:
        return ""
    a = same_rule[0]
    diffs = "，".join(f"{k} 实际为 {_shown(a.get(k))}" for k in item if k != "rule" and not _same(item[k], a.get(k)))
    return f" —— 该规则产生了，但 {diffs}" if diffs else ""


def check_case(case: Case, evaluation, guards, problems: Problems, rule_ids: dict[str, str] | None = None) -> CaseResult:
    """``rule_ids``: every rule id of the policies (``all_rule_ids``): an expected rule that is none of
    them is a mistake in the case (not_fired: [VT_1] would always pass)."""
    result = CaseResult(case)
    cid = case.dataset.customers[0].customer_id
    records = [firing_record(f) for f in evaluation.firings if f.customer_id == cid]
    result.fired = {r["rule_id"] for r in records}
    row = next((r for r in evaluation.customer_rows if r.get("customer_id") == cid), {})
    expect = case.expect
    failures = result.failures

    tags = expect.get("tags") or YMap()
    if not isinstance(tags, YMap):
        problems.error("not-a-mapping", "expect.tags 应为 '名称: 值' 的块", expect.value_loc("tags"))
        tags = {}
    for name, value in tags.items():
        if name not in row:
            guess = did_you_mean(name, list(row))
            problems.error("unknown-name", f"客户没有 '{name}' 这个分类或特征" + (f"；是不是 '{guess}'？" if guess else ""),
                           tags.key_loc(name))
        elif not _same(value, row.get(name)):
            failures.append(f"{name}：期望 {_shown(value)}，实际 {_shown(row.get(name))}")

    for key, should_fire in (("fired", True), ("not_fired", False)):
        wanted = expect.get(key)
        if wanted is None:
            continue
        items = wanted if isinstance(wanted, (list, YList)) else [wanted]
        for i, rule_id in enumerate(items):
            rule_id = str(rule_id)
            if rule_ids is not None and rule_id not in rule_ids:
                guess = did_you_mean(rule_id, list(rule_ids))
                problems.error("unknown-rule", f"没有规则 {rule_id}" + (f"；是不是 {guess}？" if guess else ""),
                               items.item_loc(i) if isinstance(items, YList) else expect.value_loc(key),
                               fix="规则编号见策略文件的 id: 和决策表的“规则编号”列")
                continue
            if (rule_id in result.fired) != should_fire:
                failures.append(f"规则 {rule_id} 应{'触发，但没有触发' if should_fire else '不触发，但触发了'}")

    if "tasks" in expect:
        actual = [{"rule": t.rule_id, "assignee": t.assignee, "priority": t.priority, "title": t.title,
                   "due": t.due.strftime("%Y-%m-%d %H:%M")} for t in evaluation.tasks if t.customer_id == cid]
        failures.extend(_match_items("tasks", expect["tasks"], actual, TASK_KEYS, expect.value_loc("tasks"), problems))
    if "messages" in expect:
        actual = [{"rule": m.rule_id, "channel": m.channel, "template": m.template,
                   "send_at": m.send_at.strftime("%Y-%m-%d %H:%M") if m.send_at else None}
                  for m in evaluation.messages if m.customer_id == cid]
        failures.extend(_match_items("messages", expect["messages"], actual, MESSAGE_KEYS, expect.value_loc("messages"), problems))

    if "suppressed" in expect:
        actual = [{"rule": x.rule_id, "guard": x.guard, "kind": x.kind} for x in guards.suppressed if x.customer_id == cid]
        failures.extend(_match_items("suppressed", expect["suppressed"], actual, SUPPRESSED_KEYS,
                                     expect.value_loc("suppressed"), problems))

    if "sla" in expect:
        sla = expect["sla"]
        by_interaction = {}
        for r in records:
            if r["stage"] == "sla":
                out = next((o["sla"] for o in r["outputs"] if "sla" in o), {})
                by_interaction[str(r["inputs"].get("interaction_id"))] = (r["rule_id"], out)
        if not isinstance(sla, YMap):
            problems.error("not-a-mapping", "expect.sla 应为 '互动编号: {first_response: 状态}' 的块", expect.value_loc("sla"))
            sla = {}
        for interaction_id, wanted in sla.items():
            if not check_keys(wanted, f"expect.sla.{interaction_id}", SLA_KEYS, (), problems, sla.value_loc(interaction_id)):
                continue
            got = by_interaction.get(str(interaction_id))
            if got is None:
                failures.append(f"互动 {interaction_id} 没有服务时限判定（不是跟踪的类型，或没有适用的时限规则）")
                continue
            rule_id, out = got
            for clock, status in wanted.items():
                actual_value = rule_id if clock == "rule" else (out.get(clock) or {}).get("status")
                if not _same(status, actual_value):
                    what = "时限规则" if clock == "rule" else f"{clock} 状态"
                    failures.append(f"互动 {interaction_id} {what}：期望 {_shown(status)}，实际 {_shown(actual_value)}")
    return result


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def all_rule_ids(policyset: PolicySet) -> dict[str, str]:
    """Every rule id a test can exercise (rules, table rows, SLA targets, churn signals) → its location."""
    from engine.validate import settings_rules

    rules = {rule.rule_id: str(rule.location) for rs in policyset.all_rulesets() for rule in rs.rules}
    for _stage, rule_id, _when, loc in settings_rules(policyset):
        rules.setdefault(rule_id, str(loc))
    return rules


def run_policy_tests(policies: Path, templates: Path | None = None, tests_dir: Path | None = None,
                     select: str | None = None, engine: str = "python") -> TestReport:
    """Load the policies (checked like ``validate``), run every case, and report."""
    from engine.guards import guard_evaluation, load_guard_policy, send_from
    from engine.run import default_templates, evaluate_dataset
    from engine.validate import load_checked_policies

    policies = Path(policies).resolve()
    templates = Path(templates).resolve() if templates else default_templates(policies)
    tests_dir = Path(tests_dir).resolve() if tests_dir else policies / "tests"
    try:
        policyset = load_checked_policies(policies, templates)
    except EngineError as exc:
        return TestReport([], list(exc.problems), {}, set())
    guard_policy = load_guard_policy(policyset)
    cases, problems, not_run = load_cases(tests_dir, display_root=policies)
    problems = Problems(problems)
    if select:
        chosen = [c for c in cases if select in c.case_id or select in c.file]
        # A typo in -k looked like "0 cases, all passed"; cases that could not be read are not a typo.
        if cases and not chosen and not any(select in n for n in not_run):
            problems.error("no-case-selected", f"没有用例的编号或文件名包含 '{select}' / no case id or file name contains '{select}'",
                           Location(file=str(tests_dir or "tests")),
                           fix="用例编号如 " + "、".join(c.case_id for c in cases[:3]) + "；文件名如 classification、care")
        cases = chosen
    results: list[CaseResult] = []
    covered: set[str] = set()
    rule_ids = all_rule_ids(policyset)
    for case in cases:
        try:
            evaluation = evaluate_dataset(policyset, case.dataset, case.as_of, templates, engine, as_of_time=case.as_of_time)
            # No ledger: a case is its customer's first run, so nothing counts as sent before.
            guards = guard_evaluation(guard_policy, None, {c.customer_id: c for c in case.dataset.customers}, evaluation,
                                      send_from(case.as_of, case.as_of_time), f"test:{case.case_id}")
        except EngineError as exc:
            result = CaseResult(case, [f"运行出错：{p.message}（{p.location}）" for p in exc.problems])
            if not case.has_mistakes:
                results.append(result)
            continue
        errors_before = len(problems.errors)
        result = check_case(case, evaluation, guards, problems, rule_ids)
        if case.has_mistakes:
            continue  # named among the cases not run
        if len(problems.errors) > errors_before:  # e.g. an expected tag that does not exist: not a pass
            result.failures.append("用例的 expect 写法有误，见上面的错误 / the case's expect has mistakes, see the errors above")
        covered |= result.fired
        results.append(result)
    return TestReport(results, list(problems), rule_ids, covered, not_run, selected=bool(select))


def format_report(report: TestReport, verbose: bool = False) -> list[str]:
    """The lines ``crm-engine test`` prints."""
    from engine.validate import format_problem

    lines = [format_problem(p) for p in report.problems]
    for r in report.results:
        case = r.case
        title = f"{case.location}  {case.case_id}" + (f"  {case.description}" if case.description else "")
        if r.passed:
            if verbose:
                lines.append(f"✓ 通过 PASS  {title}")
            continue
        lines.append(f"✗ 失败 FAIL  {title}")
        lines.extend(f"    {f}" for f in r.failures)
        lines.append(f"    （实际触发的规则：{', '.join(sorted(r.fired)) or '无'}）")
    passed = len(report.results) - len(report.failed)
    summary = (f"用例 {len(report.results)} 个：通过 {passed}，失败 {len(report.failed)} / "
               f"{len(report.results)} cases: {passed} passed, {len(report.failed)} failed")
    if report.not_run:
        summary += (f"；另有 {len(report.not_run)} 项因写法错误不计入 / {len(report.not_run)} not counted because of the "
                    f"mistakes above: {', '.join(report.not_run)}")
    lines.append(summary)
    if report.rules:
        uncovered = report.uncovered
        covered = len(report.rules) - len(uncovered)
        line = f"覆盖率 coverage：{covered}/{len(report.rules)} 条规则至少被一个用例触发"
        if report.selected:
            line += "（只运行了 -k 选出的用例 / only the cases -k chose）"
        elif uncovered:
            line += "；没有用例触发的规则 not exercised: " + ", ".join(f"{r} ({report.rules[r]})" for r in uncovered)
        lines.append(line)
    return lines
