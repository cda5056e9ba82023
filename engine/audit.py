"""Audit outputs of a run: ``audit.xlsx`` (for auditors who filter and sort) and ``report.html`` (for
everyone: one page with charts that opens offline in any browser).

* ``audit.xlsx``: 运行清单 (the manifest: version, as-of, counts), 文件 (every input, policy and
  template file with its sha256), 规则汇总 (each rule: how often it fired, for how many customers, what
  it produced, how often a guard held an output back; rules that never fired are listed with 0), 已撤回
  (earlier runs' messages this run recalled, as guards.xlsx lists them) and 决策日志 (the decision log, one row per firing, with the autofilter on; split over several sheets
  when it is longer than one sheet may be).
* ``report.html``: counts by class, SLA figures, churn levels, tasks and still-open tasks per person,
  messages per channel, top rules, guard suppressions and recalls. Charts are inline SVG drawn here from the run's data: no script, no
  network, nothing to install; the page prints as it shows. Rendered from
  ``templates/report/report.html.j2`` with Jinja's sandbox and HTML autoescaping.

Both are byte-for-byte reproducible (no clock time), so ``crm-engine verify`` can compare them.
Everything is read from the run's own data (the ``Evaluation`` and the manifest), so the files work
for every stage, including stage modules' decisions (``{"sla": ...}`` outputs, churn levels).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

from jinja2 import FileSystemLoader, StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.customer_columns import column_headers
from engine.decisions import Firing, jsonable
from engine.errors import Location, PolicyError, Problem, decode_utf8
from engine.outbox import file_entry
from engine.outputs import STAGE_LABELS
from engine.policy.model import STAGES
from engine.render import template_error_line, template_syntax_problem
from engine.xlsx_out import EXCEL_MAX_ROWS, Column, Sheet, write_workbook

AUDIT_NAME = "audit.xlsx"
REPORT_NAME = "report.html"
REPORT_TEMPLATE = "report.html.j2"
LOG_SHEET_ROWS = 1_000_000  # decision-log rows per sheet (Excel's limit is 1,048,575)
# Rows of the decision log copied into audit.xlsx. Writing a styled cell costs ~50 µs, so a 100,000-
# customer run (over a million decisions) would spend minutes here (50,000 rows: ~7 s); decisions.jsonl has them all.
LOG_ROWS_DEFAULT = 50_000
MAX_CATEGORIES = 12  # a tag with more distinct values than this is not charted (e.g. free text)
SLA_STATUS_LABELS = {"met": "按时", "breached": "超时（已完成）", "open_within": "未完成（时限内）", "at_risk": "临近超时",
                     "open_breached": "超时未完成", "paused": "暂停", "unknown": "无法判断"}
SLA_COLORS = {"met": "#5b9f5b", "breached": "#e39b3c", "open_within": "#7fa7d9", "at_risk": "#f2c94c",
              "open_breached": "#d9534f", "paused": "#b0b0b0", "unknown": "#777777"}
BAR_COLOR = "#4472c4"


def refresh_outputs(manifest: dict[str, Any], folder: Path, known: Mapping[str, dict[str, Any]] | None = None) -> None:
    """List every file of the run folder (except the manifest) in ``manifest["outputs"]`` again, so the
    audit files written after ``build_manifest`` are hashed too. ``known``: entries (``file_entry``)
    already made for some files, by their path in the folder, once they were written for good."""
    folder = Path(folder)
    known = known or {}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != "manifest.json")
    entries = (known.get(p.relative_to(folder).as_posix()) or file_entry(p, folder) for p in files)
    manifest["outputs"] = sorted(entries, key=lambda e: e["path"])


# --------------------------------------------------------------------------------------------------
# Summaries shared by both files
# --------------------------------------------------------------------------------------------------


def _output_labels(out: dict[str, Any]) -> list[str]:
    """Short labels of one decision output, for counting what a rule produced."""
    if "set" in out:
        return [f"{k}={_text(v)}" for k, v in out["set"].items()]
    if "score" in out:
        return [f"{k}+{_text(v)}" for k, v in out["score"].items()]
    if "task" in out:
        return ["任务" + _held_label(out["task"].get("suppressed_by"))]
    if "message" in out:
        m = out["message"]
        return [f"消息 {m.get('channel') or '未发送'}" + _held_label(m.get("suppressed_by"))]
    if "sla" in out:
        sla = out["sla"]
        return [f"{label} {SLA_STATUS_LABELS.get(sla[clock].get('status'), sla[clock].get('status'))}"
                for clock, label in (("first_response", "首次响应"), ("resolution", "解决")) if sla.get(clock)]
    if "reason" in out:
        return [f"原因 {out['reason']}"]
    return [json.dumps(jsonable(out), ensure_ascii=False, sort_keys=True)]


def _held_label(guard: str | None) -> str:
    """How a guard's verdict reads after 任务/消息: issued before (dedupe, min-gap) is no lost work, so it
    is not called 被拦截 (held back)."""
    if not guard:
        return ""
    from engine.guards import GUARD_LABELS, NOT_AGAIN_GUARDS

    return f"（{GUARD_LABELS.get(guard, guard)}）" if guard in NOT_AGAIN_GUARDS else "（被拦截）"


def _text(value: Any) -> str:
    if type(value) is str:  # most values; this runs for every tag of every customer
        return value
    value = jsonable(value)
    if value is True:
        return "是"
    if value is False:
        return "否"
    return "空" if value is None else str(value)


@dataclass
class RuleStats:
    stage: str
    policy: str
    rule_id: str
    source: str
    description: str = ""
    fired: int = 0
    customers: int = 0  # how many customers it fired for
    produced: Counter = field(default_factory=Counter)
    suppressed: int = 0


@dataclass
class FiringSummary:
    """What audit.xlsx and report.html show about the decision log. Built once per run
    (``summarize_firings``) and shared by both files: a large run has over a million firings."""

    rules: list[RuleStats]  # as ``rule_summary`` returns them
    classification_tags: list[str]  # tags set with text or yes/no values, in order of first use
    sla_tracked: int  # SLA outputs (one per tracked interaction)
    sla_status: dict[str, Counter]  # clock ("first_response", "resolution") → status → count
    by_rule: Counter  # "rule id（stage）" → firings
    guards: Counter  # guard → firings it held back


@dataclass(slots=True)
class _RuleFirings:
    """One rule's firings, as ``_gather_by_rule`` collects them."""

    source: str  # of the first firing
    classification: bool  # a rule of the classification stage
    # Distinct customers, counted as the customer id changes: exact while each rule's firings come by
    # customer id (``in_order``), as a run's do; a set of a million ids cost ~0.3 s and ~40 MB.
    customers: int = 0
    last_customer: Any = None
    in_order: bool = True
    suppressed_by: list = field(default_factory=list)  # of the firings a guard held back
    # Runs of firings in a row with the same outputs list (a tag-only rule's firings all share one):
    # each run's list and its length. Two flat lists rather than a pair per run, as a large run has
    # ~500,000 runs and every new container is one more for the garbage collector to scan.
    run_outputs: list = field(default_factory=list)
    run_lengths: list = field(default_factory=list)


def summarize_firings(firings: list[Firing], policyset: Any = None) -> FiringSummary:
    """Everything both audit files show about the firings. ``policyset`` (optional) adds the rules
    that never fired to ``rules``."""
    by_rule_key, tag_names = _gather_by_rule(firings)
    stats = _rule_entries(policyset)
    by_rule_id = {key[1]: key for key in stats if key[0] == ""}
    customers: dict[tuple[str, str], int] = {}
    recount: set[tuple[str, str]] = set()  # rules whose customers _gather_by_rule could not count
    labels_of: dict[Any, list[str]] = {}
    sla_status: dict[str, Counter] = {"first_response": Counter(), "resolution": Counter()}
    sla_tracked = 0
    by_rule: Counter = Counter()
    guards: Counter = Counter()
    for (policy_id, rule_id, stage), entry in by_rule_key.items():
        key = (policy_id, rule_id)
        s = stats.get(key)
        if s is None:
            placeholder = by_rule_id.pop(rule_id, None)  # a settings rule: now we know its policy id
            if placeholder is not None:
                s = stats.pop(placeholder)
                s.policy = policy_id
            else:
                s = RuleStats(stage, policy_id, rule_id, entry.source)
            stats[key] = s
        fired = sum(entry.run_lengths)
        s.fired += fired
        if key in customers or not entry.in_order:  # the same rule id in two stages, or out of order
            recount.add(key)
        customers[key] = entry.customers
        s.suppressed += len(entry.suppressed_by)
        by_rule[f"{rule_id}（{STAGE_LABELS.get(stage, stage)}）"] += fired
        for suppressed_by in entry.suppressed_by:
            for g in str(suppressed_by).split(","):
                guards[g.strip()] += 1
        for outputs, n in zip(entry.run_outputs, entry.run_lengths):  # each run's list once, n times
            for label in _labels(outputs, labels_of):
                s.produced[label] += n
            if stage == "sla":
                for out in outputs:
                    if "sla" in out:
                        sla_tracked += n
                        for clock, counter in sla_status.items():
                            if out["sla"].get(clock):
                                counter[out["sla"][clock].get("status")] += n
    customers.update(_distinct_customers(firings, recount) if recount else {})
    for key, n in customers.items():
        stats[key].customers = n
    order = {stage: i for i, stage in enumerate(STAGES)}
    # Stage order; within a stage, evaluation order of the policy set, then ids as first seen in the log.
    rules = sorted(stats.values(), key=lambda s: order.get(s.stage, 9))
    return FiringSummary(rules, list(tag_names), sla_tracked, sla_status, by_rule, guards)


def _gather_by_rule(firings: list[Firing]) -> tuple[dict[tuple[str, str, str], _RuleFirings], dict[str, None]]:
    """The firings by (policy id, rule id, stage), in order of first firing, and the classification
    tags set with text or yes/no values, in order of first use. The only loop over every firing (but
    for a rule out of customer order: ``_distinct_customers``): with a million of them, each a
    separate object in memory, every pass costs (~0.3 s)."""
    by_rule_key: dict[tuple[str, str, str], _RuleFirings] = {}
    tag_names: dict[str, None] = {}
    for f in firings:
        key = (f.policy_id, f.rule_id, f.stage)
        entry = by_rule_key.get(key)
        if entry is None:
            entry = by_rule_key[key] = _RuleFirings(f.source, f.stage == "classification")
        customer_id = f.customer_id
        if customer_id != entry.last_customer or not entry.customers:
            if entry.customers and customer_id < entry.last_customer:
                entry.in_order = False
            entry.customers += 1
            entry.last_customer = customer_id
        if f.suppressed_by:
            entry.suppressed_by.append(f.suppressed_by)
        outputs = f.outputs
        if entry.run_outputs and outputs is entry.run_outputs[-1]:
            entry.run_lengths[-1] += 1
            continue
        entry.run_outputs.append(outputs)
        entry.run_lengths.append(1)
        if entry.classification:  # a list's first firing always starts a run: names in log order
            for out in outputs:
                for name, value in out.get("set", {}).items():
                    if isinstance(value, (str, bool)):
                        tag_names.setdefault(name, None)
    return by_rule_key, tag_names


def _distinct_customers(firings: list[Firing], keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """How many distinct customers each (policy id, rule id) of ``keys`` fired for, by a set of ids: for
    the rules ``_gather_by_rule`` could not count (out of customer order, or in two stages)."""
    ids: dict[tuple[str, str], set] = {key: set() for key in keys}
    for f in firings:
        found = ids.get((f.policy_id, f.rule_id))
        if found is not None:
            found.add(f.customer_id)
    return {key: len(found) for key, found in ids.items()}


def _rule_entries(policyset: Any) -> dict[tuple[str, str], RuleStats]:
    """An empty entry for every rule of the policy set, keyed by (policy id, rule id); settings
    rules (stage modules' own) under policy id "" until a firing names their policy."""
    stats: dict[tuple[str, str], RuleStats] = {}
    if policyset is not None:
        from engine.validate import settings_descriptions, settings_rules

        for rs in policyset.all_rulesets():
            for rule in rs.rules:
                stats[(rs.policy_id, rule.rule_id)] = RuleStats(rs.stage, rs.policy_id, rule.rule_id, str(rule.location), rule.description)
        by_id = {key[1]: key for key in stats}
        descriptions = settings_descriptions(policyset)
        for stage, rule_id, _when, loc in settings_rules(policyset):
            if rule_id not in by_id:
                stats[("", rule_id)] = RuleStats(stage, "", rule_id, str(loc), descriptions.get(rule_id, ""))
    return stats


def _exact(value: Any) -> Any:
    """``value`` as a key that keeps apart values that are equal but print differently: Decimal("1.0")
    and Decimal("1.00") (floats print alike when equal: _text shows 0.0 and -0.0 as 0)."""
    return str(value) if type(value) is Decimal else value


def _labels(outputs: list[dict[str, Any]], labels_of: dict[Any, list[str]]) -> list[str]:
    """The labels of one firing's outputs. Those of tags and scores are kept in ``labels_of``: the
    same few values (churn_score+10) repeat across many lists, and ``_text`` is the slow part."""
    result = []
    for out in outputs:
        if "set" in out:
            tag, kind = out["set"], "set"
        elif "score" in out:
            tag, kind = out["score"], "score"
        else:  # quick to label
            result += _output_labels(out)
            continue
        # With the types (True == 1 but shows as 是) and decimals as written.
        key = (kind, *tag.keys(), *map(_exact, tag.values()), *map(type, tag.values()))
        try:
            labels = labels_of.get(key)
        except TypeError:  # an unhashable value (a list): labelled every time
            labels = _output_labels(out)
        if labels is None:
            labels = labels_of[key] = _output_labels(out)
        result += labels
    return result


def rule_summary(firings: list[Firing], policyset: Any = None) -> list[RuleStats]:
    """One entry per rule: every rule of the policy set (0 if it never fired) and every rule id seen in
    the decisions (stage modules' own), in stage order."""
    return summarize_firings(firings, policyset).rules


def _produced_text(counter: Counter) -> str:
    return "；".join(f"{label} ×{n}" for label, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


# --------------------------------------------------------------------------------------------------
# audit.xlsx
# --------------------------------------------------------------------------------------------------


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            yield from _flatten(f"{prefix}.{k}" if prefix else str(k), value[k])
    elif isinstance(value, list):
        yield prefix, "、".join(str(v) for v in value)
    else:
        yield prefix, value


# How 运行清单 names the parts of a manifest key (counts.guards.suppressed -> 数量 · 发送保护 · 被拦截); a
# part without a label (a person's name, a channel) is shown as written.
MANIFEST_LABELS = {
    "tool": "工具", "version": "版本", "run_id": "运行编号", "as_of": "数据截止日", "as_of_time": "数据截止时间",
    "engine": "计算引擎", "as_of_is_date": "只给了截止日期", "warnings": "警告", "counts": "数量",
    "customers": "客户", "interactions": "互动记录", "orders": "订单", "rejects": "拒收的行", "decisions": "决策",
    "tasks": "任务", "tasks_by_assignee": "任务（按负责人）", "open_tasks": "仍待处理的任务",
    "open_tasks_by_assignee": "仍待处理的任务（按负责人）", "messages": "消息", "messages_by_channel": "消息（按渠道）",
    "guards": "发送保护", "suppressed": "被拦截", "suppressed_by_guard": "被拦截（按保护规则）", "rescheduled": "已改期",
    "recalled": "已撤回", "recalled_by_guard": "已撤回（按保护规则）",
    "tracked": "跟踪的互动", "no_target": "无适用时限", "not_measured": "不计这项时限",
    "first_response": "首次响应", "resolution": "解决", **SLA_STATUS_LABELS,
    "levels": "风险等级", "reasons": "流失原因",
    "birthday_greeting_due": "生日祝福到期", "birthday_gift_due": "生日礼品到期", "festivals_due": "今天的节日",
    "is_member_day": "会员日", "post_purchase_followup_needed": "购后回访", "revisit_due": "回访到期",
    "survey_due": "满意度调查到期", "unsatisfied_complaint": "不满意的投诉",
}


def manifest_label(key: str) -> str:
    """The Chinese name of a dotted manifest key, part by part (stages and guards as elsewhere)."""
    from engine.guards import GUARD_LABELS

    labels = {**MANIFEST_LABELS, **STAGE_LABELS, **GUARD_LABELS}
    return " · ".join(labels.get(part, part) for part in key.split("."))


def _manifest_rows(manifest: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """The rows of 运行清单: (项目 in Chinese, the manifest's key, value). Numbers stay numbers."""
    # Not the folders the files were in ("roots"): they differ between machines and when verify
    # re-runs from moved folders, and audit.xlsx must be byte-identical for the same content.
    rows = []
    for key in ("tool", "version", "run_id", "as_of", "as_of_time", "engine"):
        if key in manifest:
            rows.append((key, manifest[key]))
    for key, value in _flatten("counts", manifest.get("counts", {})):
        rows.append((key, value if not isinstance(value, (dict, list)) else str(value)))
    for n, w in enumerate(manifest.get("warnings", []), 1):  # one row each, as the run printed it
        rows.append((f"warnings.{n}", f"{w.get('where', '')}: {w['message']} [{w['code']}]"
                                      + (f"; fix: {w['fix']}" if w.get("fix") else "")))
    for key in sorted(manifest):
        if key not in ("tool", "version", "run_id", "as_of", "as_of_time", "engine", "roots", "counts", "inputs",
                       "policies", "templates", "outputs", "warnings"):
            for k, v in _flatten(key, manifest[key]):
                rows.append((k, v))
    return [(manifest_label(k), k, v if v is None or isinstance(v, (int, float)) else str(v)) for k, v in rows]


GROUP_LABELS = {"inputs": "输入", "policies": "策略", "templates": "模板"}
LOG_COLUMNS = [Column("客户编号"), Column("阶段"), Column("策略"), Column("规则编号"), Column("位置"),
               Column("输入值", width=60), Column("结果", width=60), Column("被拦截"), Column("说明", width=40)]


# One encoder for every row: json.dumps with options builds a new one per call.
_INPUTS_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def _guard_names(codes: str | None, names: dict[str | None, str | None]) -> str | None:
    """'consent, no-contact' as guards.xlsx names them (营销同意、没有联系方式); memoised in ``names``."""
    shown = names.get(codes)
    if shown is None and codes:
        from engine.guards import GUARD_LABELS

        shown = names[codes] = "、".join(GUARD_LABELS.get(c.strip(), c.strip()) for c in codes.split(","))
    return shown


def _log_rows(firings: list[Firing]) -> Iterable[tuple]:
    labels_of: dict[Any, list[str]] = {}
    results: dict[int, str] = {}  # id of an outputs list → its 结果 text (tag-only rules share one list)
    guard_names: dict[str | None, str | None] = {}
    for f in firings:
        result = results.get(id(f.outputs))
        if result is None:
            result = results[id(f.outputs)] = "；".join(_labels(f.outputs, labels_of))
        yield (
            f.customer_id, STAGE_LABELS.get(f.stage, f.stage), f.policy_id, f.rule_id, f.source,
            _INPUTS_JSON.encode(jsonable(f.inputs)), result, _guard_names(f.suppressed_by, guard_names), f.note,
        )


def write_audit(folder: Path, manifest: dict[str, Any], evaluation: Any, policyset: Any = None,
                log_rows: int | None = LOG_ROWS_DEFAULT, summary: FiringSummary | None = None,
                recalls: Iterable[Any] = ()) -> Path:
    """Write ``audit.xlsx`` into the run folder. ``policyset`` (optional) lists rules that never fired.
    ``log_rows``: at most this many decision-log rows (None: all, over several sheets if needed).
    ``summary``: the run's ``summarize_firings(firings, policyset)`` if already made (else made here).
    ``recalls``: earlier runs' messages this run recalled (``engine.guards.Recall``), for 已撤回."""
    from engine.guards import RECALLED_COLUMNS, recalled_rows

    folder = Path(folder)
    files = [(GROUP_LABELS[g], e["path"], e["sha256"], e.get("size")) for g in GROUP_LABELS for e in manifest.get(g, [])]
    if summary is None:
        summary = summarize_firings(evaluation.firings, policyset)
    rule_rows = [(STAGE_LABELS.get(s.stage, s.stage), s.policy, s.rule_id, s.description or None, s.source, s.fired,
                  s.customers, _produced_text(s.produced) or None, s.suppressed) for s in summary.rules]
    sheets = [
        Sheet("运行清单", [Column("项目"), Column("键 key"), Column("值", width=60, kind="number")], _manifest_rows(manifest)),
        Sheet("文件", [Column("类别"), Column("文件"), Column("sha256", width=66), Column("字节", kind="int")], files),
        Sheet("规则汇总", [Column("阶段"), Column("策略"), Column("规则编号"), Column("说明", width=40), Column("位置"),
                        Column("触发次数", kind="int"), Column("客户数", kind="int"), Column("产出", width=60),
                        Column("被拦截次数", kind="int")], rule_rows),
        # Not in the decision log (earlier runs' messages): listed as guards.xlsx lists them.
        Sheet("已撤回", RECALLED_COLUMNS, recalled_rows(recalls)),
    ]
    firings = evaluation.firings
    manifest_rows = sheets[0].rows
    if log_rows is not None and len(firings) > log_rows:
        manifest_rows.append(("决策日志", "decisions.jsonl", f"本工作簿只列出前 {log_rows:,} 条决策（共 {len(firings):,} 条）；完整的决策日志见 decisions.jsonl"))
        firings = firings[:log_rows]
    per_sheet = min(LOG_SHEET_ROWS, EXCEL_MAX_ROWS - 1)
    parts = max(1, -(-len(firings) // per_sheet))
    for n in range(parts):
        name = "决策日志" if parts == 1 else f"决策日志{n + 1}"
        sheets.append(Sheet(name, LOG_COLUMNS, _log_rows(firings[n * per_sheet:(n + 1) * per_sheet])))
    path = folder / AUDIT_NAME
    write_workbook(path, sheets, title="审计 audit")
    return path


# --------------------------------------------------------------------------------------------------
# report.html
# --------------------------------------------------------------------------------------------------


@dataclass
class Bar:
    label: str
    value: float
    text: str  # the number as shown
    width: float  # px
    y: int
    color: str = BAR_COLOR


@dataclass
class Chart:
    chart_id: str
    title: str
    bars: list[Bar]
    note: str = ""
    width: int = 500
    label_width: int = 150
    row_height: int = 26

    @property
    def height(self) -> int:
        return self.row_height * len(self.bars) + 8

    @property
    def plot_width(self) -> int:
        return self.width - self.label_width - 70


def bar_chart(chart_id: str, title: str, counts: Iterable[tuple[str, float]], note: str = "", limit: int | None = None,
              colors: dict[str, str] | None = None) -> Chart | None:
    items = list(counts)
    if limit is not None and len(items) > limit:
        rest = sum(v for _, v in items[limit:])
        items = items[:limit] + [(f"其他 {len(items) - limit} 项", rest)]
    if not items:
        return None
    chart = Chart(chart_id, title, [], note)
    top = max((v for _, v in items), default=0) or 1
    for i, (label, value) in enumerate(items):
        shown = f"{value:.1%}" if chart_id.endswith("-rate") else f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
        width = round(chart.plot_width * value / top, 1) if value else 0
        chart.bars.append(Bar(str(label), value, shown, max(width, 1.0 if value else 0), i * chart.row_height + 4,
                              (colors or {}).get(label, BAR_COLOR)))
    return chart


def _by_count(counter: Counter) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))


def report_data(manifest: dict[str, Any], evaluation: Any, summary: FiringSummary | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain data (the template only lays it out). ``summary``: the
    run's ``summarize_firings`` if already made (else made here)."""
    rows, firings = evaluation.customer_rows, evaluation.firings
    if summary is None:
        summary = summarize_firings(firings)
    from engine.guards import GUARD_LABELS

    counts = manifest.get("counts", {})
    # Still-open tasks and recalls are known from the guards and the ledger, not from the decisions:
    # read from the manifest's counts (``engine.run``), as the console summary shows them.
    open_by_owner = counts.get("open_tasks_by_assignee") or {}
    recalled_by_guard = (counts.get("guards") or {}).get("recalled_by_guard") or {}
    cards = [("客户", counts.get("customers", len(rows))), ("互动记录", counts.get("interactions")),
             ("订单", counts.get("orders")), ("被拒绝的行", counts.get("rejects")),
             ("决策记录", counts.get("decisions", len(firings))), ("任务", len(evaluation.tasks)),
             ("仍待处理的任务", sum(open_by_owner.values())),
             ("消息", len(evaluation.messages)), ("撤回的消息", sum(recalled_by_guard.values()))]
    sections: list[dict[str, Any]] = []

    headers = column_headers()
    # Tag by tag, counted by Counter (in C): a large run has 100,000 rows (0.17 -> 0.09 s for its 8 tags).
    tag_counts = {tag: Counter(map(_text, [r.get(tag) for r in rows])) for tag in summary.classification_tags}
    class_charts = []
    for tag, counter in tag_counts.items():
        if len(counter) <= MAX_CATEGORIES:
            title = f"{headers[tag]} {tag}" if tag in headers else tag
            chart = bar_chart(f"class-{tag}", title, _by_count(counter))
            if chart:
                class_charts.append(chart)
    sections.append({"id": "classes", "title": "客户分类 Counts by class", "charts": class_charts,
                     "empty": "本次运行没有分类结果。"})

    # SLA: clock statuses from the SLA stage's decisions.
    status_counts, tracked = summary.sla_status, summary.sla_tracked
    if tracked:
        kpis = [("跟踪的互动", f"{tracked:,}")] + _sla_kpis(evaluation)
        charts = []
        for clock, label in (("first_response", "首次响应"), ("resolution", "解决")):
            c = status_counts[clock]
            chart = bar_chart(f"sla-{clock}", f"{label}：状态", [(SLA_STATUS_LABELS.get(s, s), n) for s, n in _by_count(c)],
                              colors={SLA_STATUS_LABELS[s]: SLA_COLORS[s] for s in SLA_STATUS_LABELS})
            if chart:
                charts.append(chart)
        sections.append({"id": "sla", "title": "服务时限 SLA", "kpis": kpis, "charts": charts,
                         "note": "指标按工单计，与 sla.xlsx 的 KPI 表相同（定义见其“指标说明”）；图按时限分别统计。"})

    if any(r.get("churn_level") is not None for r in rows):
        level_order = {"高": 0, "中": 1, "低": 2}
        levels = Counter(_text(r.get("churn_level")) for r in rows)
        charts = [bar_chart("churn-levels", "流失风险等级", sorted(levels.items(), key=lambda kv: (level_order.get(kv[0], 9), kv[0])),
                            colors={"高": "#d9534f", "中": "#e39b3c", "低": "#5b9f5b"})]
        reasons = Counter(_text(r.get("churn_reason")) for r in rows if r.get("churn_reason") is not None)
        if reasons:
            charts.append(bar_chart("churn-reasons", "流失原因（有信号的客户）", _by_count(reasons)))
        sections.append({"id": "churn", "title": "流失风险 Churn levels", "charts": [c for c in charts if c]})

    sections.append({"id": "tasks", "title": "任务 Tasks per owner", "charts": [c for c in [
        bar_chart("tasks-owner", "每人任务数", _by_count(Counter(t.assignee for t in evaluation.tasks)), limit=25),
        bar_chart("tasks-stage", "按阶段", _by_count(Counter(STAGE_LABELS.get(t.stage, t.stage) for t in evaluation.tasks))),
        bar_chart("tasks-open", "每人仍待处理的任务", _by_count(Counter(open_by_owner)), limit=25),
    ] if c], "empty": "本次运行没有任务。",
        "note": "仍待处理：以前的运行派过、今天仍然适用的任务，不再重派，列在各负责人任务表的“仍待处理”页。" if open_by_owner else ""})
    sections.append({"id": "messages", "title": "消息 Messages per channel", "charts": [c for c in [
        bar_chart("messages-channel", "每个渠道的消息数", _by_count(Counter(m.channel for m in evaluation.messages))),
        bar_chart("messages-template", "按模板", _by_count(Counter(m.template for m in evaluation.messages)), limit=15),
    ] if c], "empty": "本次运行没有消息。"})

    sections.append({"id": "rules", "title": "触发最多的规则 Top rules", "charts": [c for c in [
        bar_chart("rules-top", "触发次数最多的 15 条规则", _by_count(summary.by_rule)[:15])] if c], "empty": "没有规则触发。"})

    guards = summary.guards
    if guards or recalled_by_guard:
        def labelled(by_guard: Mapping[str, int]) -> list[tuple[str, int]]:  # as guards.xlsx names them
            return _by_count(Counter({GUARD_LABELS.get(g, g): n for g, n in by_guard.items()}))

        sections.append({"id": "guards", "title": "发送保护 Guards", "charts": [c for c in [
            bar_chart("guards", "被拦截的决策（按保护规则）", labelled(guards)),
            bar_chart("guards-recalled", "撤回的消息（按保护规则）", labelled(recalled_by_guard)),
        ] if c], "note": "撤回：以前的运行提前排期、还没发出的消息，客户已退订、撤回营销同意或没有了联系方式；"
                         "清单见 messages/recalls.jsonl、guards.xlsx 和 audit.xlsx 的“已撤回”页。" if recalled_by_guard else ""})

    files = [(GROUP_LABELS[g], e["path"], e["sha256"][:12]) for g in GROUP_LABELS for e in manifest.get(g, [])]
    warnings = [(w.get("where", ""), w["message"], w.get("fix") or "") for w in manifest.get("warnings", [])]
    return {"manifest": manifest, "cards": cards, "warnings": warnings, "sections": sections, "files": files}


def _report_environment(manifest: dict[str, Any]) -> ImmutableSandboxedEnvironment:
    """The report template from the run's templates folder, else the one shipped with the engine."""
    folders = []
    templates_root = (manifest.get("roots") or {}).get("templates")
    if templates_root:
        folders.append(str(Path(templates_root) / "report"))
    folders.append(str(Path(__file__).resolve().parent.parent / "templates" / "report"))
    return ImmutableSandboxedEnvironment(loader=FileSystemLoader(folders, encoding="utf-8"), autoescape=True,
                                         undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report(manifest: dict[str, Any], evaluation: Any, summary: FiringSummary | None = None) -> str:
    """report.html's text. A mistake in the report template (an edited copy in the run's templates
    folder) is a ``PolicyError`` naming the template file and line, not a traceback."""
    env = _report_environment(manifest)
    try:
        template = env.get_template(REPORT_TEMPLATE)
    except TemplateSyntaxError as exc:
        file = _shown_template_file(manifest, exc.filename)
        raise PolicyError(template_syntax_problem(exc, Location(file=file, line=exc.lineno), file)) from None
    except UnicodeDecodeError:  # an edited copy saved as ANSI/GBK: named, at its line, not a traceback
        path = next(p for p in (Path(f) / REPORT_TEMPLATE for f in env.loader.searchpath) if p.is_file())
        file = _shown_template_file(manifest, str(path))
        decode_utf8(path.read_bytes(), file)
        raise
    data = report_data(manifest, evaluation, summary)
    try:
        return template.render(data)
    except Exception as exc:  # a Jinja error, or an error of Python code the template called
        file = _shown_template_file(manifest, template.filename)
        line = template_error_line(exc, template.filename)
        code = "template-undefined" if isinstance(exc, UndefinedError) else "template-error"
        raise PolicyError(Problem(
            code=code, message=f"report template {file}{f' line {line}' if line else ''}: {type(exc).__name__}: {exc}",
            location=Location(file=file, line=line),
            fix="the report template gets manifest, cards, warnings, sections and files (see engine.audit.report_data); "
                "compare it with the shipped templates/report/report.html.j2")) from None


def _shown_template_file(manifest: dict[str, Any], filename: str | None) -> str:
    """The report template's path relative to the run's templates folder when it is in there."""
    root = (manifest.get("roots") or {}).get("templates")
    if filename and root:
        try:
            return Path(filename).relative_to(root).as_posix()
        except ValueError:
            pass
    return filename or REPORT_TEMPLATE


def check_report_template(templates: Path) -> list[Problem]:
    """The report template rendered with stand-in data (no customers, one warning): its syntax and the
    names it reads outside the charts, checked before a run spends its time (``validate`` does this)."""
    from engine.run import Evaluation

    manifest = {"tool": "crm-policy-engine", "version": "check", "run_id": "check", "as_of": "2026-01-01",
                "counts": {}, "roots": {"templates": str(Path(templates).resolve())},
                "warnings": [{"code": "check", "message": "check", "where": "check", "fix": "check"}]}
    try:
        render_report(manifest, Evaluation([], [], [], []))
    except PolicyError as exc:
        return list(exc.problems)
    return []


def _sla_kpis(evaluation: Any) -> list[tuple[str, str]]:
    """The service KPIs the seeds name, per ticket, as sla.xlsx's KPI sheet has them (overall, and the
    complaints row for 投诉处理及时率): the report showed per-clock rates and counted an overdue ticket
    once per overdue clock."""
    stage = getattr(evaluation, "modules", {}).get("sla")
    if stage is None or not hasattr(stage, "kpis"):
        return []
    rows = {(dimension, group): tally for dimension, group, tally in stage.kpis()}
    overall = rows.get(("总体", "全部"))
    if overall is None:
        return []
    complaints = rows.get(("互动类型", "投诉"))
    shown = [("问题解决率", overall.resolution_rate), ("处理及时率", overall.timely_rate),
             ("投诉处理及时率", complaints.timely_rate if complaints else None)]
    kpis = [(label, f"{rate:.1%}") for label, rate in shown if rate is not None]
    if overall.avg_satisfaction is not None:
        kpis.append(("平均满意度", f"{overall.avg_satisfaction:.2f}"))
    kpis.append(("超时未完成的工单", f"{overall.open_breached:,}"))
    return kpis


def write_report(folder: Path, manifest: dict[str, Any], evaluation: Any, summary: FiringSummary | None = None) -> Path:
    """Write ``report.html`` into the run folder. ``summary``: as for ``report_data``."""
    path = Path(folder) / REPORT_NAME
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(render_report(manifest, evaluation, summary))
    return path
