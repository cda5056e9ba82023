"""``crm-engine explain``: why one customer got (or did not get) each decision.

For one customer, every stage's policies in evaluation order, and in each policy every rule: whether
it fired, its condition with the customer's actual values filled in, what it produced, the guard that
held an output back (if the run's decision log says so) and where the rule is written. Decisions a
stage module makes itself (SLA clocks per interaction, churn signals and level) are listed from the
decision log of the stage; how the churn reason was chosen and the facts the care stage computes
(next birthday, revisit dates, ...) are shown with their basis (``engine.explain_basis``).

Two sources:

* inputs (``--policies``, ``--inbox``, ``--as-of``): the customer is evaluated now with the same code
  a run uses (``engine.run.evaluate_dataset``, then the guards, without the contact ledger: what
  earlier runs sent is not taken into account);
* a finished run (``--run outbox/<run-id>``): inputs, policies and the as-of instant come from the
  run's manifest, and what fired comes from the run's ``decisions.jsonl`` (so guard suppressions
  show). If a recorded file changed since, the explanation says so.

Conditions are shown with the values each policy saw when it ran: the evaluation is replayed policy by
policy (the same compiled conditions and hit policies as ``engine.evaluate``), taking a copy of the
customer's features before each one; tags set by earlier policies are visible, later ones are not.
"""
from __future__ import annotations

import json
import re
from collections import ChainMap
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine import expr
from engine.actions import ActionBuilder
from engine.backends import get_backend
from engine.calendar import load_calendars
from engine.coerce import to_id
from engine.errors import EngineError, Location, Problem
from engine.evaluate import Evaluator, apply_hit_policy
from engine.explain_basis import BasisLine, care_basis, churn_reason_basis, sla_untracked
from engine.features import counted_orders, derive_features, purchases
from engine.model import Dataset
from engine.outbox import MANIFEST_NAME, jsonl_record, sha256_file
from engine.outputs import DECISIONS_NAME, RECALLS_NAME, STAGE_LABELS, firing_record
from engine.policy.loader import PolicySet, load_policies
from engine.policy.model import STAGES, AddScore, MessageSpec, RuleSet, SetTag, TaskSpec
from engine.policy.schema import did_you_mean
from engine.readers import load_columns, read_inbox
from engine.render import make_environment
from engine.stages import CustomerFacts, StageSetup, build_stage_modules

FIRED, MATCHED, NOT_MATCHED = "fired", "matched", "not-matched"
GUARD_LABELS = {"dedupe": "去重（已发出或重复）", "min-gap": "间隔不足", "opt-out": "客户已退订", "consent": "没有营销同意",
                "quiet-hours": "免打扰时段", "frequency-cap": "频次上限", "no-contact": "没有可用的联系方式"}


class ExplainError(EngineError):
    """The customer or the run folder cannot be explained (not found, unreadable)."""


def normalise_customer_id(text: str) -> str:
    """A customer id typed by a person, normalised as the readers normalise the 客户编号 cells
    (``engine.coerce.to_id``: surrounding spaces dropped, full-width Ｃ０００１ → C0001)."""
    cid = to_id(text)
    if cid is None:
        raise ExplainError(Problem(code="unknown-customer", message=f"客户编号 '{text}' 是空的",
                                   location=Location(file=str(text)), fix="给出客户编号，如 C000001"))
    return cid


@dataclass
class RuleLine:
    rule_id: str
    description: str
    source: str
    status: str  # fired / matched (but not used under the hit policy) / not-matched
    condition: str  # the condition with values, e.g. monetary_365d(=62000.0) >= 50000
    value: Any  # what the condition evaluated to: True, False or None (empty: counts as false)
    outputs: list[str] = field(default_factory=list)  # what it produced (fired) or would produce
    suppressed: str | None = None  # guard(s) that held an output back
    note: str | None = None
    basis: list[str] = field(default_factory=list)  # how a stage module got its result (e.g. the churn reason)


@dataclass
class PolicyBlock:
    policy_id: str
    description: str
    hit_policy: str
    source: str
    rules: list[RuleLine] = field(default_factory=list)


@dataclass
class StageBlock:
    stage: str
    label: str
    module: list[RuleLine] = field(default_factory=list)  # decisions of the stage module itself
    basis: list[BasisLine] = field(default_factory=list)  # facts the stage module computed (care), with their basis
    policies: list[PolicyBlock] = field(default_factory=list)


@dataclass
class Explanation:
    customer_id: str
    customer_name: str | None
    owner: str | None
    as_of: str
    source: str  # "inputs" or the run folder
    stages: list[StageBlock] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)  # each order up to the as-of date, and whether it counts
    # With --run: earlier runs' messages (issued ahead) this run recalled for the customer (messages/recalls.jsonl).
    recalls: list[str] = field(default_factory=list)
    # With --run: the run, or a run whose ledger rows held this customer's items back, withdrawn since (ledger --withdraw).
    withdrawn: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Describing outputs
# --------------------------------------------------------------------------------------------------


def _v(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a weight of 20 reads 20, whether computed now or read back from decisions.jsonl (20.0)
    return expr.render.value_text(value) if not isinstance(value, (dict, list)) else json.dumps(value, ensure_ascii=False)


def describe_output(out: dict[str, Any]) -> str:
    """One output of a decision-log record, in words."""
    if "set" in out:
        return "设置 " + "，".join(f"{k} = {_v(v)}" for k, v in out["set"].items())
    if "score" in out:
        return "加分 " + "，".join(f"{k} += {_v(v)}" for k, v in out["score"].items())
    if "task" in out:
        t = out["task"]
        text = f"任务 → {t.get('assignee')}：{t.get('title')}（截止 {t.get('due')}，优先级 {t.get('priority')}）"
        if t.get("assigned"):  # a role with several people: which role, and how this one was chosen
            text += f" [角色 {t.get('role')}，{t['assigned']}]"
        text += f" [被拦截：{GUARD_LABELS.get(t['suppressed_by'], t['suppressed_by'])}]" if t.get("suppressed_by") else ""
        return text + (f" [{t['still_open']}]" if t.get("still_open") else "")
    if "message" in out:
        m = out["message"]
        if m.get("suppressed") and not m.get("channel"):
            return f"消息 {m.get('template')}：未发送（{m['suppressed']}）"
        text = f"消息 → {m.get('channel')}，模板 {m.get('template')}（{m.get('category')}）"
        if m.get("send_on") and not m.get("suppressed_by"):
            when = str(m.get("send_at") or m["send_on"]).replace("T", " ")[:16]  # 2026-12-01 10:00
            text += f" [定于 {when} 发送（send_on）]"
        if m.get("suppressed_by"):
            text += f" [被拦截：{GUARD_LABELS.get(m['suppressed_by'], m['suppressed_by'])}]"
        if m.get("rescheduled"):
            text += f" [改期到 {m.get('send_at')}：{m['rescheduled']}]"
        return text
    if "sla" in out:
        s = out["sla"]
        parts = []
        for clock, label in (("first_response", "首次响应"), ("resolution", "解决")):
            c = s.get(clock)
            if c:
                late = c.get("late_minutes")
                # Past the deadline with no working time since (a date-only run's 23:59:59): say so, not "0".
                late = "" if late is None else f"，超时 {late} 分钟" if late >= 1 else "，超时不足 1 分钟"
                parts.append(f"{label} {c.get('target')} 截止 {c.get('deadline')} → {c.get('status')}{late}")
        notes = f"（{'；'.join(s['notes'])}）" if s.get("notes") else ""
        return f"服务时限（{s.get('calendar')} 日历）：" + "；".join(parts) + notes
    if "reason" in out:
        return f"原因 {out['reason']}"
    return json.dumps(out, ensure_ascii=False, sort_keys=True)


_CUSTOMER_FIELD = re.compile(r"\bcustomer\.(\w+)")


class _Empty(str):
    """Stands for an empty value while rendering a title: false in ``{% if %}``, visible when printed."""

    def __bool__(self) -> bool:
        return False


_EMPTY = _Empty("\x00empty\x00")


def task_title(title: str, env=None, context: dict[str, Any] | None = None) -> str:
    """The title of a task a rule would produce. A title with ``{{ customer.… }}`` is rendered with the
    customer's values (``context``, as ``ActionBuilder.context`` makes it); when it cannot be, or it
    would print a value this customer does not have, the template text is shown, marked as such."""
    if "{" not in title:
        return title
    if env is None or context is None:
        return f"{title}（标题模板，未代入客户的值）"
    customer = context["customer"]
    empty = sorted({name for name in _CUSTOMER_FIELD.findall(title) if name in customer and customer[name] is None})
    try:
        template = env.from_string(title)
        if empty:  # printed or used (not just tested in {% if %})? the run would show nothing there
            probe = dict(context, customer=ChainMap({name: _EMPTY for name in empty}, customer))
            try:
                used = _EMPTY in template.render(probe)
            except Exception:  # noqa: BLE001 - e.g. birthday.month of an empty birthday
                used = True
            if used:
                return f"{title}（标题模板：这位客户的 {'、'.join(empty)} 为空）"
        return template.render(context)
    except Exception:  # noqa: BLE001 - a variable this customer does not have, a filter given a wrong type
        return f"{title}（标题模板，无法代入这位客户的值）"


def order_lines(orders: list[Any], as_of: date, config: Any) -> list[str]:
    """The customer's orders up to ``as_of``, newest first, each saying whether the order features count
    it (engine.features.counted_orders: a cancelled, refunded or unpaid status does not) and whether it is a
    purchase (engine.features.purchases: a refund row only lowers the amounts)."""
    counted = {id(o) for o in counted_orders(orders, config)}
    bought = {id(o) for o in purchases(orders, config)}
    lines = []
    for o in sorted((o for o in orders if o.date <= as_of), key=lambda o: (o.date, o.order_id), reverse=True):
        status = f"（{o.status}）" if o.status else ""
        if id(o) not in counted:
            verdict = "不计入：状态在 features.yaml orders_not_counted 中"
        elif id(o) not in bought:
            verdict = "退款行：只减少消费额，不算购买"
        else:
            verdict = "计入"
        lines.append(f"{o.order_id}  {o.date.isoformat()}  {o.amount:,.2f} 元{status}  {verdict}")
    return lines


@dataclass
class SendTiming:
    """What is needed to say when a message rule's ``send_on`` would have its message go out: the
    guards policy, the run's earliest send time (``engine.guards.run_send_time``), the customer's
    features as the policy saw them and the policy set's types (a date or a time feature)."""

    policy: Any  # engine.guards.GuardPolicy
    base: datetime
    features: dict[str, Any]
    schema: dict[str, Any]

    def describe(self, out: MessageSpec) -> str:
        from engine.guards import message_send_time

        value = self.features.get(out.send_on)
        send_time = f"{self.policy.send_time:%H:%M}"
        if self.schema.get(out.send_on) == expr.types.DATETIME:  # a moment (a survey's resolution)
            when = (f"不早于 {out.send_on} 那一刻发送，早于当天的发送时间 {send_time} 的在 {send_time} 发送，"
                    "落在免打扰时段的推到时段结束")
            if not isinstance(value, datetime):
                return f"{when}，这位客户的 {out.send_on} 为空"
            _, at = message_send_time(self.policy, self.base, out.category, value.date(), value)
            return f"{when}：{out.send_on} 为 {value:%Y-%m-%d %H:%M}，定于 {at:%Y-%m-%d %H:%M} 发送"
        when = f"在 {out.send_on} 当天的发送时间 {send_time} 发送"
        if not isinstance(value, date):
            return f"{when}，这位客户的 {out.send_on} 为空"
        day = value.date() if isinstance(value, datetime) else value
        _, at = message_send_time(self.policy, self.base, out.category, day, None)
        return f"{when}：{out.send_on} 为 {day}，定于 {at:%Y-%m-%d %H:%M} 发送"


def describe_spec(out: Any, env=None, context: dict[str, Any] | None = None, timing: SendTiming | None = None) -> str:
    """What a rule would produce, from its declared outputs. ``env``, ``context``: for rendering a task
    title with the customer's values (see ``task_title``); ``timing``: for when a message with
    ``send_on`` would go out."""
    if isinstance(out, SetTag):
        return f"设置 {out.name} = {_v(out.value)}"
    if isinstance(out, AddScore):
        return f"加分 {out.name} += {_v(out.points)}"
    if isinstance(out, TaskSpec):
        who = "客户经理" if out.assign_to == "owner" else out.assign_to.replace("role:", "角色 ")
        return f"任务 → {who}：{task_title(out.title, env, context)}"
    if isinstance(out, MessageSpec):
        when = "" if not out.send_on else f"，{timing.describe(out)}" if timing else f"，按 {out.send_on} 发送（send_on）"
        return f"消息 → {out.channel}，模板 {out.template}（{out.category}{when}）"
    return str(out)


# Guards whose reason says more than their label: which earlier run issued the item, which earlier item
# is too recent (min_gap_days), which cap was reached.
_DETAILED_GUARDS = ("dedupe", "min-gap", "frequency-cap")


def _suppressed(record: dict[str, Any]) -> str | None:
    """The guards that held an output back, with what each said (e.g. which run already issued it)."""
    guards = record.get("suppressed_by")
    if not guards:
        return None
    details: dict[str, list[str]] = {}
    for out in record.get("outputs") or []:
        item = out.get("task") or out.get("message") if isinstance(out, dict) else None
        if isinstance(item, dict) and item.get("suppressed_by") and item.get("suppressed"):
            texts = details.setdefault(str(item["suppressed_by"]).strip(), [])
            if item["suppressed"] not in texts:
                texts.append(str(item["suppressed"]))
    parts = []
    for g in (g.strip() for g in str(guards).split(",")):
        label = GUARD_LABELS.get(g, g)
        texts = [t.removeprefix(label + "：") for t in details.get(g, ())]  # "间隔不足：…" says its label already
        parts.append(label + ("：" + "；".join(texts) if texts and g in _DETAILED_GUARDS else ""))
    return "，".join(parts)


# --------------------------------------------------------------------------------------------------
# The replay
# --------------------------------------------------------------------------------------------------


def _apply(rule, features: dict[str, Any]) -> None:
    # Same as engine.evaluate.Evaluator.run_stage: tags and scores are visible to later policies.
    for out in rule.outputs:
        if type(out) is SetTag:
            features[out.name] = out.value
        elif type(out) is AddScore:
            features[out.name] = (features.get(out.name) or 0) + out.points


def _condition(rule, snapshot: dict[str, Any]) -> tuple[str, Any]:
    if rule.condition is None:
        return rule.condition_text, None
    try:
        value = expr.compile_expr(rule.condition)(snapshot)
    except Exception as exc:  # a runtime error in a condition: show it rather than fail the explanation
        return f"{expr.explain(rule.condition, snapshot)}（出错：{exc}）", None
    return expr.explain(rule.condition, snapshot), value


_ID_PARTS = re.compile(r"(\D*)0*(\d+)")


def _id_guess(typed: str, ids: list[str]) -> str | None:
    """The id the user most likely meant: the same number with other leading zeros (C00002 →
    C000002: a close spelling such as C000402 is less likely), else the closest spelling."""
    m = _ID_PARTS.fullmatch(typed)
    if m:
        same_number = [i for i in ids if (n := _ID_PARTS.fullmatch(i)) and n.group(1) == m.group(1) and n.group(2) == m.group(2)]
        if same_number:
            return same_number[0]
    return did_you_mean(typed, ids)


def explain_customer(policyset: PolicySet, dataset: Dataset, customer_id: str, as_of: date, templates: Path,
                     as_of_time: datetime | None = None, records: list[dict[str, Any]] | None = None,
                     source: str = "inputs") -> Explanation:
    """Explain one customer. ``records``: the decision-log records of a finished run for this customer;
    without them the customer is evaluated now."""
    from engine.run import end_of_day, evaluate_dataset

    customer_id = normalise_customer_id(customer_id)
    customer = next((c for c in dataset.customers if c.customer_id == customer_id), None)
    if customer is None:
        ids = [c.customer_id for c in dataset.customers]
        guess = _id_guess(customer_id, ids)
        raise ExplainError(Problem(code="unknown-customer", message=f"输入数据中没有客户 {customer_id}"
                                   + (f"；是不是 {guess}？" if guess else ""), location=Location(file=customer_id),
                                   fix="客户编号见 customers.xlsx 或导出文件的“客户编号”列"))
    interactions = [i for i in dataset.interactions if i.customer_id == customer_id]
    orders = [o for o in dataset.orders if o.customer_id == customer_id]
    single = Dataset(customers=[customer], interactions=interactions, orders=orders)
    moment = as_of_time or end_of_day(as_of)
    from engine.guards import guard_evaluation, load_guard_policy, run_send_time, send_from

    guard_policy = load_guard_policy(policyset)
    if records is None:
        evaluation = evaluate_dataset(policyset, single, as_of, templates, as_of_time=as_of_time)
        # The guards as a run applies them, without the contact ledger (what earlier runs sent is not known here).
        guard_evaluation(guard_policy, None, {customer_id: customer}, evaluation, send_from(as_of, as_of_time), "explain")
        records = [jsonl_record(firing_record(f)) for f in evaluation.firings]  # exactly as in decisions.jsonl

    # Replay with fresh stage modules, taking the features each policy saw.
    calendars = load_calendars(policyset.root / "calendar.yaml", display="calendar.yaml")
    org = policyset.organization
    builder = ActionBuilder(org, calendars[org.task_calendar], make_environment(templates), as_of)
    modules = build_stage_modules(StageSetup(policyset, calendars, builder, as_of, moment))
    evaluator = Evaluator(policyset.rulesets, get_backend("python"))
    facts = CustomerFacts(customer, interactions, orders, {})
    features = facts.features
    features.update(derive_features(customer, orders, interactions, as_of, policyset.features))
    evaluator.prepare(features)
    timing = SendTiming(guard_policy, run_send_time(guard_policy, send_from(as_of, as_of_time)), {}, policyset.schema)

    from engine.validate import settings_descriptions, settings_rules

    settings = settings_rules(policyset)
    descriptions = settings_descriptions(policyset)  # SLA targets and churn signals say what they are too
    result = Explanation(customer_id, customer.name, customer.owner, moment.isoformat(sep=" "), source,
                         orders=order_lines(orders, as_of, policyset.features))
    for stage_index, stage in enumerate(STAGES):
        block = StageBlock(stage, STAGE_LABELS.get(stage, stage))
        module = modules.get(stage)
        if module is not None:
            module.process(facts)
            if stage == "care":
                block.basis = care_basis(policyset, module.settings, customer, features, as_of, _interval_rule(result),
                                         module.next_run_day)
        stage_records = [r for r in records if r["stage"] == stage]
        rule_keys = {(rs.policy_id, rule.rule_id) for rs in policyset.rulesets.get(stage, []) for rule in rs.rules}
        module_records = [r for r in stage_records if (r["policy"], r["rule_id"]) not in rule_keys]
        for r in module_records:
            inputs = "，".join(f"{k}={_v(v)}" for k, v in sorted(r["inputs"].items()))
            line = RuleLine(r["rule_id"], descriptions.get(r["rule_id"], ""), r["source"], FIRED, inputs, True,
                            [describe_output(o) for o in r["outputs"]], _suppressed(r), r.get("note"))
            if stage == "churn" and module is not None and r["rule_id"] == f"{module.settings.settings_id}.level":
                line.basis = churn_reason_basis(policyset, module.settings, r, module_records, features, interactions, as_of)
            block.module.append(line)
        fired_module_ids = {r["rule_id"] for r in module_records}
        per_interaction = "按每条互动记录判断（见上面已生效的判定）"
        if stage == "sla" and module is not None and not module_records:
            per_interaction = sla_untracked(policyset, module, interactions)  # nothing above to refer to
        for st, rule_id, when, loc in settings:
            if st != stage or rule_id in fired_module_ids:
                continue
            line = RuleLine(rule_id, descriptions.get(rule_id, ""), str(loc), NOT_MATCHED, when, False)
            try:
                node = expr.parse(when)
                if expr.free_names(node) <= set(features):
                    line.condition, line.value = expr.explain(node, features), expr.compile_expr(node)(features)
                else:
                    line.note = per_interaction
            except Exception:
                line.note = "条件无法在这里计算"
            block.module.append(line)
        for rs, compiled, _names in evaluator.stages[stage_index][1]:
            block.policies.append(_explain_policy(rs, compiled, features, stage_records, customer, builder, timing))
        result.stages.append(block)
    return result


_LINE = re.compile(r"(.*):(\d+):\d+")


def _moved_note(recorded: str, current: str) -> str | None:
    """What to say when a fired rule's recorded source (the decision log's) is not where the rule is
    written now: the policy file was edited after the run."""
    if recorded == current:
        return None
    was, now = _LINE.fullmatch(recorded), _LINE.fullmatch(current)
    if was and now and was.group(1) == now.group(1):
        return f"位置是运行时决策日志记录的；文件改过，这条规则现在在第 {now.group(2)} 行（{current}）"
    return f"位置是运行时决策日志记录的；文件改过，这条规则现在在 {current}"


def _interval_rule(result: Explanation) -> tuple[str, str] | None:
    """(rule id, source) of the fired rule that set revisit_interval_days (the service plan), if any."""
    for stage in result.stages:
        for p in stage.policies:
            for r in p.rules:
                if r.status == FIRED and any("revisit_interval_days" in o for o in r.outputs):
                    return r.rule_id, r.source
    return None


def _explain_policy(rs: RuleSet, compiled, features: dict[str, Any], stage_records: list[dict[str, Any]],
                    customer=None, builder: ActionBuilder | None = None, timing: SendTiming | None = None) -> PolicyBlock:
    snapshot = dict(features)
    if timing is not None:
        timing = replace(timing, features=snapshot)  # the values this policy saw
    env = context = None
    if customer is not None and builder is not None:
        env, context = builder.env, builder.context(customer, snapshot)  # the values this policy saw
    matched = compiled.matching(features)
    fired, note = apply_hit_policy(rs, matched)
    for i in fired:
        _apply(rs.rules[i], features)
    logged = {r["rule_id"]: r for r in stage_records if r["policy"] == rs.policy_id}
    block = PolicyBlock(rs.policy_id, rs.description, rs.hit_policy, rs.source_file)
    winner = ", ".join(rs.rules[i].rule_id for i in fired)
    for i, rule in enumerate(rs.rules):
        text, value = _condition(rule, snapshot)
        record = logged.get(rule.rule_id)
        if record is not None:
            # Where the run says the rule was: the file may have been edited since (lines moved).
            line = RuleLine(rule.rule_id, rule.description, record.get("source") or str(rule.location), FIRED, text, value,
                            [describe_output(o) for o in record["outputs"]], _suppressed(record), record.get("note"))
            moved = _moved_note(line.source, str(rule.location))
            if moved:
                line.note = ((line.note + "；") if line.note else "") + moved
        elif i in matched:
            line = RuleLine(rule.rule_id, rule.description, str(rule.location), MATCHED, text, value,
                            [describe_spec(o, env, context, timing) for o in rule.outputs],
                            note=f"条件成立，但命中策略 {rs.hit_policy} 下生效的是 {winner or '其他规则'}")
        else:
            line = RuleLine(rule.rule_id, rule.description, str(rule.location), NOT_MATCHED, text, value,
                            [describe_spec(o, env, context, timing) for o in rule.outputs])
            if value is None:
                line.note = "条件的值为空（缺少数据），按不成立处理"
        if (i in fired) != (record is not None):
            line.note = ((line.note + "；") if line.note else "") + \
                "注意：决策日志与按当前文件重新计算的结果不一致（运行后策略或数据是否改过？）"
        block.rules.append(line)
    return block


# --------------------------------------------------------------------------------------------------
# From inputs, or from a run folder
# --------------------------------------------------------------------------------------------------


def explain_from_inputs(customer_id: str, policies: Path, inbox: Path, as_of: date, as_of_time: datetime | None = None,
                        templates: Path | None = None) -> Explanation:
    from engine.run import default_templates

    customer_id = normalise_customer_id(customer_id)
    policies = Path(policies).resolve()
    templates = Path(templates).resolve() if templates else default_templates(policies)
    policyset = load_policies(policies)
    dataset = read_inbox(Path(inbox), load_columns(policies / "columns.yaml"))
    return explain_customer(policyset, dataset, customer_id, as_of, templates, as_of_time)


def read_manifest(run_folder: Path) -> dict[str, Any]:
    path = Path(run_folder) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExplainError(Problem(code="not-a-run-folder", message=f"{run_folder} 不是运行结果文件夹（没有 {MANIFEST_NAME}）",
                                   location=Location(file=str(run_folder)), fix="传入 outbox/<运行编号> 文件夹")) from None
    except (OSError, ValueError) as exc:
        raise ExplainError(Problem(code="bad-manifest", message=f"无法读取 {path}：{exc}", location=Location(file=str(path)))) from None


def changed_files(manifest: dict[str, Any], roots: dict[str, Path] | None = None) -> list[tuple[str, str, str]]:
    """Recorded input, policy and template files that are missing or changed: (group, path, "missing"/"changed")."""
    roots = roots or {}
    out = []
    for group, root_key in (("inputs", "inbox"), ("policies", "policies"), ("templates", "templates")):
        root = Path(roots.get(root_key) or manifest.get("roots", {}).get(root_key, "."))
        for entry in manifest.get(group, []):
            path = Path(entry["path"]) if Path(entry["path"]).is_absolute() else root / entry["path"]
            if not path.is_file():
                out.append((group, path.as_posix(), "missing"))
            elif sha256_file(path) != entry["sha256"]:
                out.append((group, path.as_posix(), "changed"))
    return out


def run_roots(manifest: dict[str, Any], inbox: Path | None = None, policies: Path | None = None,
              templates: Path | None = None) -> dict[str, Path]:
    """The inbox, policy and template folders of a run: the ones given (the files moved) or else the
    ones its manifest recorded. The same rules as ``crm-engine verify`` (``engine.verify._roots``: a
    manifest without a folder is a ``bad-manifest`` problem); in addition every folder must exist."""
    # engine.verify imports this module: import it when needed
    from engine.verify import _roots

    roots = _roots(manifest, inbox, policies, templates)
    given = {"inbox": inbox, "policies": policies, "templates": templates}
    problems = []
    for key, folder in roots.items():
        if folder.is_dir():
            continue
        if given[key] is not None:
            problems.append(Problem(code="no-folder", message=f"--{key} 给出的文件夹 {folder.as_posix()} 不存在",
                                    location=Location(file=folder.as_posix()), fix=f"用 --{key} 给出它现在所在的文件夹"))
        else:
            problems.append(Problem(code="moved-folder",
                                    message=f"运行记录的 {key} 文件夹 {folder.as_posix()} 已不存在（挪走或删除了）"
                                            f" / the run's {key} folder is gone",
                                    location=Location(file="manifest.json"),
                                    fix="用 --inbox/--policies/--templates 说明它现在在哪里"
                                        " / use --inbox/--policies/--templates to say where it is now"))
    if problems:
        raise ExplainError(problems)
    return roots


def explain_from_run(customer_id: str, run_folder: Path, inbox: Path | None = None, policies: Path | None = None,
                     templates: Path | None = None) -> Explanation:
    """``inbox``, ``policies``, ``templates``: where the run's folders are now, if they moved (as for verify)."""
    customer_id = normalise_customer_id(customer_id)
    run_folder = Path(run_folder)
    manifest = read_manifest(run_folder)
    roots = run_roots(manifest, inbox, policies, templates)
    try:
        as_of_time = (datetime.fromisoformat(manifest["as_of_time"])
                      if manifest.get("as_of_time") and not manifest.get("as_of_is_date") else None)
        as_of = date.fromisoformat(manifest["as_of"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExplainError(Problem(code="bad-manifest", message=f"manifest.json 没有记录有效的 as-of（{exc}）",
                                   location=Location(file=(run_folder / MANIFEST_NAME).as_posix()))) from None
    records = []
    try:
        with open(run_folder / DECISIONS_NAME, encoding="utf-8") as f:
            for line in f:
                if f'"{customer_id}"' in line:  # cheap pre-filter; the JSON decides
                    record = json.loads(line)
                    if record.get("customer_id") == customer_id:
                        records.append(record)
    except FileNotFoundError:
        raise ExplainError(Problem(code="not-a-run-folder", message=f"{run_folder} 中没有决策日志 {DECISIONS_NAME}",
                                   location=Location(file=run_folder.as_posix()), fix="传入 outbox/<运行编号> 文件夹")) from None
    mark_still_open(records, run_folder, manifest, as_of)
    policyset = load_policies(roots["policies"])
    dataset = read_inbox(roots["inbox"], load_columns(roots["policies"] / "columns.yaml"))
    result = explain_customer(policyset, dataset, customer_id, as_of, roots["templates"], as_of_time, records=records,
                              source=run_folder.as_posix())
    result.recalls = recall_lines(run_folder, customer_id)
    result.withdrawn = withdrawn_lines(run_folder, manifest, customer_id, records, bool(result.recalls))
    for group, path, what in changed_files(manifest, {k: str(v) for k, v in roots.items()}):
        result.warnings.append(f"{path} {'已不存在' if what == 'missing' else '在运行之后被修改过'}：未触发规则的条件按现在的文件计算，可能与运行时不同")
    return result


_DEDUPE_REASON = re.compile(r"的运行 \S+ 中发出（同一规则、客户、周期：([^）]+)）")  # as engine.guards writes it
_GAP_OWN_RULE = re.compile(r"间隔不足：\d{4}-\d{2}-\d{2} 已派 ([^（，\s]+)")


def mark_still_open(records: list[dict[str, Any]], run_folder: Path, manifest: dict[str, Any], as_of: date) -> None:
    """A task the run held back because an earlier run issued it (dedupe, or min-gap of its own rule) is
    still open work, on the 仍待处理 page of its assignee now: give its task output a ``still_open`` text
    naming the earlier task (run, assignee then, due), from the run's contact ledger as the run saw it
    (``Ledger.task_origins``, as the page does)."""
    from engine.ledger import Ledger
    from engine.verify import _ledger_path

    held = []  # (task output, (origin rule, customer id, origin key))
    for record in records:
        for out in record.get("outputs") or []:
            t = out.get("task") if isinstance(out, dict) else None
            if not isinstance(t, dict) or t.get("suppressed_by") not in ("dedupe", "min-gap"):
                continue
            reason = str(t.get("suppressed") or "")
            found = _DEDUPE_REASON.search(reason) if t["suppressed_by"] == "dedupe" else _GAP_OWN_RULE.match(reason)
            if found is None:
                continue
            if t["suppressed_by"] == "dedupe":
                held.append((t, (found.group(1).split("|", 1)[0], record.get("customer_id"), found.group(1))))
            elif found.group(1) == record.get("rule_id") or "以前的规则编号，formerly" in reason:
                held.append((t, (found.group(1), record.get("customer_id"), "")))
    path = _ledger_path(run_folder, manifest, None)
    if not held or path is None or not path.is_file():
        return
    with Ledger(path, create=False) as ledger:
        origins = ledger.task_origins([w for _, w in held], as_of, manifest.get("run_id", run_folder.name))
    for t, wanted in held:
        if wanted not in origins:
            continue
        day, earlier_run, due, assignee, _issued_at = origins[wanted]
        due_text = f"，截止 {due:%Y-%m-%d %H:%M}" if due else ""
        t["still_open"] = (f"仍待处理：{day:%Y-%m-%d} 运行 {earlier_run} 派给 {assignee} 的任务（{wanted[2] or wanted[0]}{due_text}）"
                           f"仍然有效，本次不重派，列在 {t.get('assignee')} 的任务表的“仍待处理”页")


def withdrawn_lines(run_folder: Path, manifest: dict[str, Any], customer_id: str, records: list[dict[str, Any]],
                    recalled: bool) -> list[str]:
    """From the run's contact ledger: whether the run was withdrawn since (when, why), and which withdrawn
    runs' rows held this customer's tasks or messages back in it (dedupe, min-gap: ``held_by_run``)."""
    from engine.guards import held_by_run
    from engine.ledger import Ledger
    from engine.verify import _ledger_path

    path = _ledger_path(run_folder, manifest, None)
    if path is None or not path.is_file():
        return []
    run_id = manifest.get("run_id", run_folder.name)
    lines = []
    with Ledger(path, create=False) as ledger:
        for run in ledger.runs():
            if run["withdrawn_at"] is None:
                continue
            when = f"{run['withdrawn_at']:%Y-%m-%d %H:%M}"
            if run["run_id"] == run_id:
                also = "；它撤回的此前已排期的消息也不再算撤回" if recalled else ""
                lines.append(f"本次运行已于 {when} 撤回（原因：{run['withdrawn_reason']}）：它的任务和消息作废，不再拦截之后的运行{also}"
                             f" / this run was withdrawn on {when}: its tasks and messages are void")
                continue
            issued = {(e.customer_id, e.rule_id) for e in ledger.entries(customer_id=customer_id, run_id=run["run_id"])}
            if issued and any(held_by_run(r, run["run_id"], run["as_of"].date(), issued) for r in records):
                lines.append(f"下面拦截依据的运行 {run['run_id']} 已于 {when} 撤回（原因：{run['withdrawn_reason']}）：它的任务和消息作废，"
                             f"撤回之后的运行会重新派发 / run {run['run_id']}, whose items held this customer's back here, "
                             f"was withdrawn on {when}")
    return lines


def recall_lines(run_folder: Path, customer_id: str) -> list[str]:
    """The run's recalls (``messages/recalls.jsonl``, engine.outputs.write_recalls) for one customer, in words."""
    path = run_folder / RECALLS_NAME
    if not path.exists():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r.get("customer_id") == customer_id:
            when = datetime.fromisoformat(r["send_at"])  # pending messages always have a send time
            lines.append(f"{r['rule_id']}（{r['channel']}，模板 {r['template']}，原定 {when:%Y-%m-%d %H:%M}，"
                         f"运行 {r['issued_by']} 发出）：{r['reason']}（{r['key']}）")
    return lines


# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------

_MARKS = {FIRED: "✓ 触发", MATCHED: "○ 成立未采用", NOT_MATCHED: "✗ 未触发"}


def _truth(value: Any) -> str:
    return "成立" if value is True else ("为空（按不成立）" if value is None else "不成立")


def format_explanation(ex: Explanation, only_fired: bool = False) -> list[str]:
    lines = [f"客户 {ex.customer_id} {ex.customer_name or ''}（客户经理 {ex.owner or '无'}），as-of {ex.as_of}",
             f"来源：{'输入文件（现在计算）' if ex.source == 'inputs' else '运行结果 ' + ex.source}"]
    lines.extend(f"! {w}" for w in ex.warnings)
    lines.extend(f"! 已撤回 withdrawn：{w}" for w in ex.withdrawn)
    if ex.orders:
        lines.append(f"订单 orders（{len(ex.orders)} 笔，as-of 之前）：")
        lines.extend(f"  {line}" for line in ex.orders[:20])
        if len(ex.orders) > 20:
            lines.append(f"  ……另有 {len(ex.orders) - 20} 笔更早的订单")
    if ex.recalls:
        lines.append(f"撤回此前已排期的消息 recalled（{len(ex.recalls)} 条，不再发送）：")
        lines.extend(f"  {line}" for line in ex.recalls)
    for stage in ex.stages:
        heading = ["", f"【{stage.label} {stage.stage}】"]
        lines.extend(heading)
        start = len(lines)
        if stage.basis and not only_fired:
            lines.append("  阶段计算（按设置文件）:")
            for b in stage.basis:
                lines.append(f"    · {b.feature} = {b.value}" + (f"  {b.source}" if b.source else ""))
                if b.basis:
                    lines.append(f"        依据 {b.basis}")
        if stage.module and (not only_fired or any(r.status == FIRED for r in stage.module)):
            lines.append("  阶段计算（按设置文件）:")
            for r in stage.module:
                if only_fired and r.status != FIRED:
                    continue
                lines.append(f"    {_MARKS[r.status]}  {r.rule_id}  {r.source}")
                if r.status == FIRED:
                    lines.append(f"        依据 {r.condition}")
                    lines.extend(f"        依据 {b}" for b in r.basis)
                else:
                    lines.append(f"        条件 {r.condition}" + (f" → {_truth(r.value)}" if r.note is None else f"（{r.note}）"))
                lines.extend(f"        结果 {o}" for o in r.outputs if r.status == FIRED)
                if r.suppressed:
                    lines.append(f"        被拦截 {r.suppressed}")
        for p in stage.policies:
            if only_fired and not any(r.status == FIRED for r in p.rules):
                continue
            lines.append(f"  策略 {p.policy_id} {p.description} · 命中策略 {p.hit_policy} · {p.source}")
            for r in p.rules:
                if only_fired and r.status != FIRED:
                    continue
                lines.append(f"    {_MARKS[r.status]}  {r.rule_id}  {r.source}" + (f"  {r.description}" if r.description else ""))
                lines.append(f"        条件 {r.condition} → {_truth(r.value)}")
                label = "结果" if r.status == FIRED else "会产生"
                lines.extend(f"        {label} {o}" for o in r.outputs)
                if r.suppressed:
                    lines.append(f"        被拦截 {r.suppressed}")
                if r.note:
                    lines.append(f"        说明 {r.note}")
        if only_fired and len(lines) == start:
            del lines[start - len(heading):]  # nothing fired in this stage: no empty heading
    return lines
