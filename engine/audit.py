"""Audit outputs of a run: ``audit.xlsx`` (for auditors who filter and sort) and ``report.html`` (for
everyone: one page with charts that opens offline in any browser).

* ``audit.xlsx``: 运行清单 (the manifest: version, as-of, counts), 文件 (every input, policy and
  template file with its sha256), 规则汇总 (each rule: how often it fired, for how many customers, what
  it produced, how often a guard held an output back; rules that never fired are listed with 0), and
  决策日志 (the decision log, one row per firing, with the autofilter on; split over several sheets
  when it is longer than one sheet may be).
* ``report.html``: counts by class, SLA figures, churn levels, tasks per person, messages per channel,
  top rules, guard suppressions. Charts are inline SVG drawn here from the run's data: no script, no
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
from pathlib import Path
from typing import Any, Iterable

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.decisions import Firing, jsonable
from engine.outbox import file_entry
from engine.outputs import STAGE_LABELS
from engine.policy.model import STAGES
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


def refresh_outputs(manifest: dict[str, Any], folder: Path) -> None:
    """List every file of the run folder (except the manifest) in ``manifest["outputs"]`` again, so the
    audit files written after ``build_manifest`` are hashed too."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != "manifest.json")
    manifest["outputs"] = sorted((file_entry(p, folder) for p in files), key=lambda e: e["path"])


# --------------------------------------------------------------------------------------------------
# Summaries shared by both files
# --------------------------------------------------------------------------------------------------


def _output_labels(out: dict[str, Any]) -> Iterable[str]:
    """Short labels of one decision output, for counting what a rule produced."""
    if "set" in out:
        for k, v in out["set"].items():
            yield f"{k}={_text(v)}"
    elif "score" in out:
        for k, v in out["score"].items():
            yield f"{k}+{_text(v)}"
    elif "task" in out:
        yield "任务" + ("（被拦截）" if out["task"].get("suppressed_by") else "")
    elif "message" in out:
        m = out["message"]
        yield f"消息 {m.get('channel') or '未发送'}" + ("（被拦截）" if m.get("suppressed_by") else "")
    elif "sla" in out:
        for clock, label in (("first_response", "首次响应"), ("resolution", "解决")):
            if out["sla"].get(clock):
                yield f"{label} {SLA_STATUS_LABELS.get(out['sla'][clock].get('status'), out['sla'][clock].get('status'))}"
    elif "reason" in out:
        yield f"原因 {out['reason']}"
    else:
        yield json.dumps(jsonable(out), ensure_ascii=False, sort_keys=True)


def _text(value: Any) -> str:
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
    customers: set = field(default_factory=set)
    produced: Counter = field(default_factory=Counter)
    suppressed: int = 0


def rule_summary(firings: list[Firing], policyset: Any = None) -> list[RuleStats]:
    """One entry per rule: every rule of the policy set (0 if it never fired) and every rule id seen in
    the decisions (stage modules' own), in stage order."""
    stats: dict[tuple[str, str], RuleStats] = {}
    if policyset is not None:
        from engine.validate import settings_rules

        for rs in policyset.all_rulesets():
            for rule in rs.rules:
                stats[(rs.policy_id, rule.rule_id)] = RuleStats(rs.stage, rs.policy_id, rule.rule_id, str(rule.location), rule.description)
        by_id = {key[1]: key for key in stats}
        for stage, rule_id, _when, loc in settings_rules(policyset):
            if rule_id not in by_id:
                stats[("", rule_id)] = RuleStats(stage, "", rule_id, str(loc))
    by_rule_id = {key[1]: key for key in stats if key[0] == ""}
    labels_of: dict[Any, tuple[str, ...]] = {}  # most outputs repeat (value_tier=高): label each kind once
    for f in firings:
        key = (f.policy_id, f.rule_id)
        s = stats.get(key)
        if s is None:
            placeholder = by_rule_id.pop(f.rule_id, None)  # a settings rule: now we know its policy id
            if placeholder is not None:
                s = stats.pop(placeholder)
                s.policy = f.policy_id
            else:
                s = RuleStats(f.stage, f.policy_id, f.rule_id, f.source)
            stats[key] = s
        s.fired += 1
        s.customers.add(f.customer_id)
        for out in f.outputs:
            tag = out.get("set") or out.get("score")
            key = None
            if tag is not None:
                try:
                    key = ("set" in out, *tag.items())
                    hash(key)
                except TypeError:  # an unhashable value: label it the slow way
                    key = None
            labels = labels_of.get(key) if key is not None else None
            if labels is None:
                labels = tuple(_output_labels(out))
                if key is not None:
                    labels_of[key] = labels
            for label in labels:
                s.produced[label] += 1
        if f.suppressed_by:
            s.suppressed += 1
    order = {stage: i for i, stage in enumerate(STAGES)}
    # Stage order; within a stage, evaluation order of the policy set, then ids as first seen in the log.
    return sorted(stats.values(), key=lambda s: order.get(s.stage, 9))


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


def _manifest_rows(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    # Not the folders the files were in ("roots"): they differ between machines and when verify
    # re-runs from moved folders, and audit.xlsx must be byte-identical for the same content.
    rows = []
    for key in ("tool", "version", "run_id", "as_of", "as_of_time", "engine"):
        if key in manifest:
            rows.append((key, manifest[key]))
    for key, value in _flatten("counts", manifest.get("counts", {})):
        rows.append((key, value if not isinstance(value, (dict, list)) else str(value)))
    for key in sorted(manifest):
        if key not in ("tool", "version", "run_id", "as_of", "as_of_time", "engine", "roots", "counts", "inputs",
                       "policies", "templates", "outputs"):
            for k, v in _flatten(key, manifest[key]):
                rows.append((k, v))
    return [(k, None if v is None else (v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))) for k, v in rows]


GROUP_LABELS = {"inputs": "输入", "policies": "策略", "templates": "模板"}
LOG_COLUMNS = [Column("客户编号"), Column("阶段"), Column("策略"), Column("规则编号"), Column("位置"),
               Column("输入值", width=60), Column("结果", width=60), Column("被拦截"), Column("说明", width=40)]


def _log_rows(firings: list[Firing]) -> Iterable[tuple]:
    for f in firings:
        yield (
            f.customer_id, STAGE_LABELS.get(f.stage, f.stage), f.policy_id, f.rule_id, f.source,
            json.dumps(jsonable(f.inputs), ensure_ascii=False, sort_keys=True),
            "；".join(label for out in f.outputs for label in _output_labels(out)),
            f.suppressed_by, f.note,
        )


def write_audit(folder: Path, manifest: dict[str, Any], evaluation: Any, policyset: Any = None,
                log_rows: int | None = LOG_ROWS_DEFAULT) -> Path:
    """Write ``audit.xlsx`` into the run folder. ``policyset`` (optional) lists rules that never fired.
    ``log_rows``: at most this many decision-log rows (None: all, over several sheets if needed)."""
    folder = Path(folder)
    files = [(GROUP_LABELS[g], e["path"], e["sha256"], e.get("size")) for g in GROUP_LABELS for e in manifest.get(g, [])]
    summary = rule_summary(evaluation.firings, policyset)
    rule_rows = [(STAGE_LABELS.get(s.stage, s.stage), s.policy, s.rule_id, s.description or None, s.source, s.fired,
                  len(s.customers), _produced_text(s.produced) or None, s.suppressed) for s in summary]
    sheets = [
        Sheet("运行清单", [Column("项目"), Column("值", width=60)], _manifest_rows(manifest)),
        Sheet("文件", [Column("类别"), Column("文件"), Column("sha256", width=66), Column("字节", kind="int")], files),
        Sheet("规则汇总", [Column("阶段"), Column("策略"), Column("规则编号"), Column("说明", width=40), Column("位置"),
                        Column("触发次数", kind="int"), Column("客户数", kind="int"), Column("产出", width=60),
                        Column("被拦截次数", kind="int")], rule_rows),
    ]
    firings = evaluation.firings
    manifest_rows = sheets[0].rows
    if log_rows is not None and len(firings) > log_rows:
        manifest_rows.append(("决策日志", f"本工作簿只列出前 {log_rows:,} 条决策（共 {len(firings):,} 条）；完整的决策日志见 decisions.jsonl"))
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


def _classification_tags(firings: list[Firing]) -> list[str]:
    names: dict[str, None] = {}
    for f in firings:
        if f.stage == "classification":
            for out in f.outputs:
                for name, value in out.get("set", {}).items():
                    if isinstance(value, (str, bool)):
                        names.setdefault(name, None)
    return list(names)


def report_data(manifest: dict[str, Any], evaluation: Any) -> dict[str, Any]:
    """Everything the report shows, as plain data (the template only lays it out)."""
    rows, firings = evaluation.customer_rows, evaluation.firings
    counts = manifest.get("counts", {})
    cards = [("客户", counts.get("customers", len(rows))), ("互动记录", counts.get("interactions")),
             ("订单", counts.get("orders")), ("被拒绝的行", counts.get("rejects")),
             ("决策记录", counts.get("decisions", len(firings))), ("任务", len(evaluation.tasks)),
             ("消息", len(evaluation.messages))]
    sections: list[dict[str, Any]] = []

    from engine.run import CUSTOMER_COLUMNS

    headers = {key: header for key, header, _kind in CUSTOMER_COLUMNS}
    class_charts = []
    for tag in _classification_tags(firings):
        counter = Counter(_text(r.get(tag)) for r in rows)
        if len(counter) <= MAX_CATEGORIES:
            title = f"{headers[tag]} {tag}" if tag in headers else tag
            chart = bar_chart(f"class-{tag}", title, _by_count(counter))
            if chart:
                class_charts.append(chart)
    sections.append({"id": "classes", "title": "客户分类 Counts by class", "charts": class_charts,
                     "empty": "本次运行没有分类结果。"})

    # SLA: clock statuses from the SLA stage's decisions.
    status_counts: dict[str, Counter] = {"first_response": Counter(), "resolution": Counter()}
    tracked = 0
    for f in firings:
        if f.stage != "sla":
            continue
        for out in f.outputs:
            if "sla" in out:
                tracked += 1
                for clock in status_counts:
                    if out["sla"].get(clock):
                        status_counts[clock][out["sla"][clock].get("status")] += 1
    if tracked:
        kpis = [("跟踪的互动", f"{tracked:,}")]
        charts = []
        for clock, label in (("first_response", "首次响应"), ("resolution", "解决")):
            c = status_counts[clock]
            decided = c["met"] + c["breached"] + c["open_breached"]
            if decided:
                kpis.append((f"{label}按时率", f"{c['met'] / decided:.1%}"))
            chart = bar_chart(f"sla-{clock}", f"{label}：状态", [(SLA_STATUS_LABELS.get(s, s), n) for s, n in _by_count(c)],
                              colors={SLA_STATUS_LABELS[s]: SLA_COLORS[s] for s in SLA_STATUS_LABELS})
            if chart:
                charts.append(chart)
        open_breached = status_counts["first_response"]["open_breached"] + status_counts["resolution"]["open_breached"]
        kpis.append(("超时未完成（时钟数）", f"{open_breached:,}"))
        sections.append({"id": "sla", "title": "服务时限 SLA", "kpis": kpis, "charts": charts,
                         "note": "按时率 = 按时 ÷（按时 + 超时已完成 + 超时未完成），按互动记录计；详见 sla.xlsx。"})

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
    ] if c], "empty": "本次运行没有任务。"})
    sections.append({"id": "messages", "title": "消息 Messages per channel", "charts": [c for c in [
        bar_chart("messages-channel", "每个渠道的消息数", _by_count(Counter(m.channel for m in evaluation.messages))),
        bar_chart("messages-template", "按模板", _by_count(Counter(m.template for m in evaluation.messages)), limit=15),
    ] if c], "empty": "本次运行没有消息。"})

    by_rule = Counter(f"{f.rule_id}（{STAGE_LABELS.get(f.stage, f.stage)}）" for f in firings)
    sections.append({"id": "rules", "title": "触发最多的规则 Top rules", "charts": [c for c in [
        bar_chart("rules-top", "触发次数最多的 15 条规则", _by_count(by_rule)[:15])] if c], "empty": "没有规则触发。"})

    guards = Counter()
    for f in firings:
        if f.suppressed_by:
            for g in str(f.suppressed_by).split(","):
                guards[g.strip()] += 1
    if guards:
        sections.append({"id": "guards", "title": "发送保护 Guards", "charts": [
            bar_chart("guards", "被拦截的决策（按保护规则）", _by_count(guards))]})

    files = [(GROUP_LABELS[g], e["path"], e["sha256"][:12]) for g in GROUP_LABELS for e in manifest.get(g, [])]
    return {"manifest": manifest, "cards": cards, "sections": sections, "files": files}


def _report_environment(manifest: dict[str, Any]) -> ImmutableSandboxedEnvironment:
    """The report template from the run's templates folder, else the one shipped with the engine."""
    folders = []
    templates_root = (manifest.get("roots") or {}).get("templates")
    if templates_root:
        folders.append(str(Path(templates_root) / "report"))
    folders.append(str(Path(__file__).resolve().parent.parent / "templates" / "report"))
    return ImmutableSandboxedEnvironment(loader=FileSystemLoader(folders, encoding="utf-8"), autoescape=True,
                                         undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report(manifest: dict[str, Any], evaluation: Any) -> str:
    env = _report_environment(manifest)
    return env.get_template(REPORT_TEMPLATE).render(report_data(manifest, evaluation))


def write_report(folder: Path, manifest: dict[str, Any], evaluation: Any) -> Path:
    """Write ``report.html`` into the run folder."""
    path = Path(folder) / REPORT_NAME
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(render_report(manifest, evaluation))
    return path
