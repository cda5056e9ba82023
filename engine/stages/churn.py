"""Churn stage: a risk score from declared signals, a level, and the most likely reason.

The ``kind: churn`` settings file (``policies/churn.yaml``) declares the signals: each has an id, a
description, a condition (``when:``, in the policy expression language, checked against the schema
when the run starts, errors with file:line:col), a weight in points and a reason category. Per
customer the module adds:

* ``churn_score`` — sum of the weights of the signals that hold, capped at ``max_score`` (100);
* ``churn_level`` — the first declared level whose ``min_score`` the score reaches (高/中/低);
* ``churn_reason`` — 服务 / 产品 / 价格 / 竞争对手 / 未知: the known reason with the largest total
  weight among the signals that hold (ties: the signal declared first); if none of them names a
  reason, the category of the customer's latest complaint when it is recent (``complaint_reason_days``);
  otherwise 未知. Null when no signal holds;
* ``churn_reason_source`` — what the reason came from: the id of the latest complaint when its category
  gave the reason (``last_complaint_id``), else the ids of the signals that name the reason themselves;
  null when the reason is 未知 or no signal holds. Win-back rules key by it (``key_by``) to act once per
  complaint, not again every month while the reason stays the same;
* ``churn_signals`` — the ids of the signals that hold, for the customer sheet;
* ``frequency_drop_ratio`` — how much the purchase frequency fell from the previous window to the
  recent one (a fact the signals use).

Each signal that holds is recorded as a decision (``Firing``: stage churn, policy = the settings id,
rule = the signal id, source = its line, inputs = the values its condition read), plus one decision
for the level, so the decision log says why a customer is at risk. The win-back *actions* are
ordinary rules in ``policies/churn/*.yaml`` over these features. See docs/churn.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine import expr
from engine.decisions import Firing
from engine.errors import Location, PolicyError
from engine.model import Customer
from engine.policy.schema import Problems, check_keys, condition_text, did_you_mean
from engine.policy.yaml_source import YList, YMap
from engine.stages import ColumnRead, CustomerFacts, StageOutput, StageSetup, settings_documents
from engine.xlsx_out import Workbook

__all__ = ["FEATURES", "ChurnSettings", "ChurnStage", "Signal", "build", "load_churn_settings"]

FEATURES: dict[str, tuple[str, str]] = {
    "frequency_drop_ratio": ("number", "购买频率下降比例：(前一窗口订单数 − 近期窗口订单数) ÷ 前一窗口订单数；前一窗口无订单为 null"),
    "churn_score": ("number", "流失风险分（满足的流失信号权重之和，最高 100）"),
    "churn_level": ("string", "流失风险等级（高/中/低）"),
    "churn_reason": ("string", "最可能的流失原因：服务/产品/价格/竞争对手/未知（无流失信号为 null）"),
    "churn_reason_source": ("string", "流失原因的来源：原因取自投诉类别时为那条投诉的记录编号（last_complaint_id），"
                                      "取自信号本身写明的原因时为这些信号的编号（逗号分隔）；原因未知或无流失信号为 null"),
    "churn_signals": ("string", "满足的流失信号编号，逗号分隔"),
}
# Names a signal may not read: the module computes them from the signals.
_OWN_RESULTS = ("churn_score", "churn_level", "churn_reason", "churn_reason_source", "churn_signals")

REASONS = ("服务", "产品", "价格", "竞争对手", "未知")
FROM_COMPLAINT = "投诉原因"  # a signal's reason: the category of the customer's latest complaint
UNKNOWN = "未知"

_TOP_KEYS = ("kind", "id", "description", "max_score", "frequency_window_days", "levels", "complaint_reasons",
             "complaint_reason_days", "signals")
_SIGNAL_KEYS = ("id", "description", "when", "weight", "reason")
_LEVEL_KEYS = ("level", "min_score")


@dataclass(frozen=True)
class Signal:
    signal_id: str
    description: str
    condition_text: str
    condition: Any  # compiled engine.expr function: features -> value
    names: tuple[str, ...]  # names the condition reads (recorded as decision inputs)
    weight: float
    reason: str  # one of REASONS, or FROM_COMPLAINT
    location: Location
    source: str  # str(location), for the decision log


@dataclass
class ChurnSettings:
    settings_id: str
    source_file: str
    max_score: float
    frequency_window_days: int
    levels: list[tuple[str, float]]  # (level, min_score), highest first
    levels_location: Location
    complaint_reasons: dict[str, str]  # complaint category → reason
    complaint_reason_days: int  # how recent the latest complaint must be to explain other signals
    signals: list[Signal] = field(default_factory=list)


def _number(block: YMap, key: str, default: float | None, problems: Problems, low: float = 0, high: float = 100) -> float | None:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        problems.error("bad-value", f"'{key}' 要写 {low:g} 到 {high:g} 之间的数，不能是 '{value}' / "
                                    f"'{key}' must be a number from {low:g} to {high:g}, not '{value}'", block.value_loc(key))
        return default
    return float(value)


def _reason(value: Any, loc: Location, problems: Problems) -> str:
    text = str(value).strip()
    if text not in REASONS + (FROM_COMPLAINT,):
        guess = did_you_mean(text, REASONS + (FROM_COMPLAINT,))
        problems.error("bad-value", f"没有 '{text}' 这种流失原因" + (f"，是不是 '{guess}'？" if guess else "")
                       + f" / unknown reason '{text}'" + (f"; did you mean '{guess}'?" if guess else ""), loc,
                       fix=f"写其中之一：{', '.join(REASONS)}，或 {FROM_COMPLAINT}（取最近一次投诉的类别） / "
                           f"one of: {', '.join(REASONS)}, or {FROM_COMPLAINT} (the category of the latest complaint)")
        return UNKNOWN
    return text


def _signal(block: Any, loc: Location, schema: dict, problems: Problems, seen: set[str]) -> Signal | None:
    if not check_keys(block, "a churn signal", _SIGNAL_KEYS, ("id", "when", "weight", "reason"), problems, loc):
        return None
    signal_id = str(block.get("id", "?"))
    if signal_id in seen:
        problems.error("duplicate-rule-id", f"信号编号 '{signal_id}' 用了两次 / signal id '{signal_id}' appears twice",
                       block.key_loc("id"))
    seen.add(signal_id)
    text = condition_text(block.get("when", "true"))
    where = block.value_loc("when")
    try:
        node = expr.parse(text, where)
        expr.check(node, schema, expect=expr.BOOL)
    except PolicyError as exc:
        problems.extend(exc.problems)
        return None
    names = tuple(sorted(expr.free_names(node)))
    own = [n for n in names if n in _OWN_RESULTS]
    if own:
        problems.error("churn-signal-reads-result", f"信号 '{signal_id}' 读了 {', '.join(own)}，这是信号本身算出的结果 / "
                                                    f"signal '{signal_id}' reads {', '.join(own)}, which the signals themselves produce",
                       where, fix="条件只能用客户特征和分类标签来写 / write the condition over customer features and classification tags")
        return None
    weight = _number(block, "weight", None, problems)
    reason = _reason(block.get("reason"), block.value_loc("reason"), problems)
    if weight is None:
        return None
    return Signal(signal_id, str(block.get("description", "")), text, expr.compile_expr(node, where), names, weight,
                  reason, block.key_loc("id"), str(block.key_loc("id")))


def load_churn_settings(policyset: Any) -> ChurnSettings | None:
    """Read and check the ``kind: churn`` settings file; None if the policy folder has none.

    Raises PolicyError listing every problem (unknown names in a signal, bad weights, levels out of
    order, ...), each with file:line:col. ``validate`` can call this without running a batch."""
    docs = settings_documents(policyset, "churn")
    if not docs:
        return None
    problems = Problems()
    path, doc = docs[0]
    rel = policyset.relpath(path)
    for other_path, other in docs[1:]:
        problems.error("duplicate-churn-settings", f"流失设置文件只能有一个，{rel} 已经是了 / "
                                                   f"only one churn settings file is allowed, but {rel} already is one",
                       other.loc, fix=f"把 {policyset.relpath(other_path)} 的内容合并到 {rel} / "
                                      f"merge {policyset.relpath(other_path)} into {rel}")
    check_keys(doc, "the churn settings file", _TOP_KEYS, ("signals", "levels"), problems, doc.loc)
    max_score = _number(doc, "max_score", 100.0, problems, 1, 10000)
    window = doc.get("frequency_window_days", 90)
    windows = policyset.features.windows_days
    if window not in windows:
        shown = ", ".join(map(str, windows))
        problems.error("bad-value", f"frequency_window_days 只能是特征的统计天数（{shown}）之一，不能是 '{window}' / "
                                    f"frequency_window_days must be one of the feature windows ({shown}), not '{window}'",
                       doc.value_loc("frequency_window_days"),
                       fix="或者把这个天数加到 features.yaml 的 windows_days 里 / or add the window to windows_days in features.yaml")
        window = 90

    levels: list[tuple[str, float]] = []
    raw_levels = doc.get("levels")
    if not isinstance(raw_levels, YList) or not raw_levels:
        problems.error("not-a-list", "'levels:' 下面要写成列表，如 - {level: 高, min_score: 60} / "
                                     "'levels:' must be a list such as - {level: 高, min_score: 60}", doc.value_loc("levels"))
    else:
        for i, item in enumerate(raw_levels):
            if not check_keys(item, "a churn level", _LEVEL_KEYS, _LEVEL_KEYS, problems, raw_levels.item_loc(i)):
                continue
            score = _number(item, "min_score", 0.0, problems, 0, max_score or 100)
            if levels and score >= levels[-1][1]:
                problems.error("bad-value", "levels 要按 min_score 从高到低排列 / levels must go from the highest min_score to the lowest",
                               item.value_loc("min_score"))
            levels.append((str(item.get("level")).strip(), score))
        if levels and levels[-1][1] != 0:
            problems.error("bad-value", "最后一个等级的 min_score 要是 0，这样每个客户都有等级 / "
                                        "the last level must have min_score 0, so every customer gets a level",
                           raw_levels.item_loc(len(raw_levels) - 1))

    complaint_reasons: dict[str, str] = {}
    raw_reasons = doc.get("complaint_reasons") or YMap()
    if not isinstance(raw_reasons, YMap):
        problems.error("not-a-mapping", "'complaint_reasons:' 下面要写 '投诉类别: 流失原因'，如 产品质量: 产品 / "
                                        "'complaint_reasons:' must map complaint categories to reasons, e.g. 产品质量: 产品",
                       doc.value_loc("complaint_reasons"))
    else:
        for category, reason in raw_reasons.items():
            loc = raw_reasons.value_loc(category)
            text = _reason(reason, loc, problems)
            if text == FROM_COMPLAINT:
                problems.error("bad-value", f"投诉类别 '{category}' 要对应一个流失原因，不能是 {FROM_COMPLAINT} / "
                                            f"complaint category '{category}' must map to a reason, not to {FROM_COMPLAINT}", loc)
            complaint_reasons[str(category).strip()] = text

    recent = _number(doc, "complaint_reason_days", 180.0, problems, 0, 3650)
    settings = ChurnSettings(
        settings_id=str(doc.get("id", "churn")),
        source_file=rel,
        max_score=max_score or 100.0,
        frequency_window_days=int(window),
        levels=levels,
        levels_location=doc.key_loc("levels"),
        complaint_reasons=complaint_reasons,
        complaint_reason_days=int(recent or 0),
    )
    raw_signals = doc.get("signals")
    if not isinstance(raw_signals, YList):
        problems.error("not-a-list", "'signals:' 下面要写成列表（每条以 '- ' 开头） / "
                                     "'signals:' must be a list (lines starting with '- ')", doc.value_loc("signals"))
    else:
        seen: set[str] = set()
        for i, item in enumerate(raw_signals):
            signal = _signal(item, raw_signals.item_loc(i), policyset.schema, problems, seen)
            if signal is not None:
                settings.signals.append(signal)
    if problems.errors:
        raise PolicyError(problems.errors)
    return settings


class ChurnStage:
    stage = "churn"

    def __init__(self, settings: ChurnSettings):
        self.settings = settings
        self.level_counts = {level: 0 for level, _ in settings.levels}
        self.reason_counts: dict[str, int] = {}
        # Decision-log outputs, one list per distinct content, shared by every firing with that content
        # and never modified afterwards (as run.py does for tag-only rules): a 100,000-customer run has
        # ~240,000 churn firings but a few dozen distinct outputs.
        self.shared_outputs: dict[tuple, list[dict[str, Any]]] = {}
        self.levels_source = str(settings.levels_location)

    def process(self, facts: CustomerFacts) -> StageOutput:
        s = self.settings
        f = facts.features
        cid = facts.customer.customer_id
        recent = f.get(f"frequency_{s.frequency_window_days}d") or 0
        previous = f.get(f"frequency_prev_{s.frequency_window_days}d") or 0
        f["frequency_drop_ratio"] = round((previous - recent) / previous, 4) if previous else None

        complaint_reason = s.complaint_reasons.get((f.get("last_complaint_category") or "").strip())
        # A complaint explains signals that name no reason (e.g. no purchase for 90 days) only while it is
        # recent: a two-year-old 物流 complaint says little about why someone stopped buying today.
        since = f.get("days_since_last_complaint")
        recent_reason = complaint_reason if since is not None and since <= s.complaint_reason_days else None
        out = StageOutput()
        score = 0.0
        held: list[Signal] = []
        by_reason: dict[str, float] = {}  # known reason → total weight; dict order = first signal's order
        from_complaint: set[str] = set()  # known reasons that the latest complaint's category gave
        named_by: dict[str, list[str]] = {}  # known reason → the signals that name it themselves
        for signal in s.signals:
            if signal.condition(f) is not True:  # null counts as false, as in rules
                continue
            held.append(signal)
            score += signal.weight
            reason = (complaint_reason or UNKNOWN) if signal.reason == FROM_COMPLAINT else signal.reason
            if reason != UNKNOWN:
                by_reason[reason] = by_reason.get(reason, 0.0) + signal.weight
                if signal.reason == FROM_COMPLAINT:
                    from_complaint.add(reason)
                else:
                    named_by.setdefault(reason, []).append(signal.signal_id)
            outputs = self.shared_outputs.get((signal.signal_id, reason))
            if outputs is None:
                outputs = self.shared_outputs[(signal.signal_id, reason)] = [
                    {"score": {"churn_score": signal.weight}}, {"reason": reason}]
            out.firings.append(Firing(cid, "churn", s.settings_id, signal.signal_id, signal.source,
                                      {n: f.get(n) for n in signal.names}, outputs))
        score = min(score, s.max_score)
        level = next(name for name, minimum in s.levels if score >= minimum)
        source = None
        if not held:
            reason = None
        elif by_reason:
            reason = max(by_reason, key=lambda r: by_reason[r])  # max keeps the first of equal totals
            # The complaint when it gave the reason (also when a signal names the same reason): one
            # complaint, one apology; a new complaint is a new source.
            source = f.get("last_complaint_id") if reason in from_complaint else ", ".join(named_by[reason])
        else:
            reason = recent_reason or UNKNOWN
            source = f.get("last_complaint_id") if recent_reason else None
        f["churn_score"] = int(score) if float(score).is_integer() else score
        f["churn_level"] = level
        f["churn_reason"] = reason
        f["churn_reason_source"] = source
        f["churn_signals"] = ", ".join(sig.signal_id for sig in held)
        self.level_counts[level] = self.level_counts.get(level, 0) + 1
        if held:
            self.reason_counts[reason] = self.reason_counts.get(reason, 0) + 1
            key = (".level", f["churn_score"], level, reason)  # the score is an int when whole, so 1 and 1.0 never meet
            outputs = self.shared_outputs.get(key)
            if outputs is None:
                outputs = self.shared_outputs[key] = [
                    {"set": {"churn_score": f["churn_score"], "churn_level": level, "churn_reason": reason}}]
            # The latest complaint's date and age too: they decide whether its category may name the reason.
            out.firings.append(Firing(cid, "churn", s.settings_id, f"{s.settings_id}.level", self.levels_source,
                                      {"churn_signals": f["churn_signals"], "churn_reason_source": source,
                                       "last_complaint_category": f.get("last_complaint_category"),
                                       "last_complaint_date": f.get("last_complaint_date"), "days_since_last_complaint": since},
                                      outputs))
        return out

    def workbooks(self) -> dict[str, Workbook]:
        return {}  # No file of its own: scores are on the customer sheet, reasons in the decision log.

    def export_state(self) -> tuple[dict[str, int], dict[str, int]]:
        return self.level_counts, self.reason_counts

    def absorb(self, state: tuple[dict[str, int], dict[str, int]], customers: dict[str, Customer]) -> None:
        levels, reasons = state
        # Keys new to this process go last, in the order the other met them: the order one process
        # evaluating every customer would have given.
        for counts, more in ((self.level_counts, levels), (self.reason_counts, reasons)):
            for key, count in more.items():
                counts[key] = counts.get(key, 0) + count

    def manifest_counts(self) -> dict[str, Any]:
        return {"levels": dict(self.level_counts), "reasons": dict(sorted(self.reason_counts.items()))}


def column_reads(policyset: Any) -> list[ColumnRead]:
    """The interaction columns this module reads itself: churn reasons (on the customer sheet and in
    the decision log) come from the latest complaint's category when ``complaint_reasons`` maps any."""
    docs = settings_documents(policyset, "churn")
    reasons = docs[0][1].get("complaint_reasons") if docs else None
    if not isinstance(reasons, YMap) or not reasons:
        return []
    where = docs[0][1].key_loc("complaint_reasons")
    return [ColumnRead("interactions", f, "complaint_reasons", where) for f in ("type", "category")]


def build(setup: StageSetup) -> ChurnStage | None:
    settings = load_churn_settings(setup.policyset)
    return ChurnStage(settings) if settings is not None else None
