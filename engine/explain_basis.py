"""The basis of what a stage module computed, in words, for ``crm-engine explain``.

The churn stage's reason (``churn_reason_basis``) and the care stage's dates and facts (``care_basis``):
which values they started from, which settings lines decided, and what came out, so an auditor can
check a result without reading the code. Only for one customer at a time (explain): no hot path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from engine.expr.render import value_text
from engine.features import INTERACTION_TYPE_KEYS
from engine.policy.yaml_source import YMap


@dataclass
class BasisLine:
    """One computed fact and how it came about."""

    feature: str  # e.g. birthday_greeting_due
    value: str  # its value as conditions show it (true, 2026-11-29, ...)
    basis: str  # how it was computed, with the values used
    source: str  # the settings line(s) that decided it, e.g. care.yaml:10:3 birthday.greeting_days_before


def _v(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value_text(value)


def setting_line(policyset: Any, kind: str, block: str | None, key: str) -> str:
    """Where ``block.key`` (``key`` alone when ``block`` is None) of the ``kind`` settings file is written,
    e.g. ``care.yaml:10:3``; a setting the file leaves out has its default (docs/<kind>.md)."""
    docs = [d for _p, d in policyset.documents.get(kind, []) if not any(k in d for k in ("rules", "table", "policies"))]
    node = (docs[0] if block is None else docs[0].get(block)) if docs else None
    if isinstance(node, YMap) and key in node:
        return str(node.key_loc(key))
    return f"默认值，见 docs/{kind}.md"


def settings_location(policyset: Any, kind: str, block: str | None, key: str) -> str:
    """``setting_line`` with the setting's name: ``care.yaml:10:3 birthday.greeting_days_before``."""
    name = key if block is None else f"{block}.{key}"
    where = setting_line(policyset, kind, block, key)
    return f"{name}（{where}）" if where.startswith("默认值") else f"{where} {name}"


# --------------------------------------------------------------------------------------------------
# SLA
# --------------------------------------------------------------------------------------------------


def sla_untracked(policyset: Any, module: Any, interactions: list[Any]) -> str:
    """Why no SLA target applies to any of the customer's interactions, after ``module``
    (engine.stages.sla.SlaStage) has processed this one customer: none of a tracked type, all older than
    the window and closed (history), or tracked but no target's condition holds."""
    policy = module.policy
    if module.items:
        return f"跟踪的 {len(module.items)} 条互动都没有适用的时限规则（条件按每条互动记录判断）"
    start = policy.start_field
    typed = [i for i in interactions if i.type in policy.track_types
             and getattr(i, start) is not None and getattr(i, start) <= module.as_of_time]
    if not typed:
        return (f"没有需要跟踪的互动：没有 {'、'.join(policy.track_types)} 类型的记录"
                f"（{settings_location(policyset, 'sla', None, 'track_types')}）")
    return (f"{policy.window_days} 天内没有需要跟踪的互动（{settings_location(policyset, 'sla', None, 'window_days')}）："
            f"{len(typed)} 条更早的互动已处理完，是历史记录")


# --------------------------------------------------------------------------------------------------
# Churn
# --------------------------------------------------------------------------------------------------


def churn_reason_basis(policyset: Any, settings: Any, level: dict[str, Any], records: list[dict[str, Any]],
                       features: dict[str, Any], interactions: list[Any], as_of: date) -> list[str]:
    """Why the churn stage chose ``churn_reason`` (engine.stages.churn.ChurnStage.process), in words, citing
    the settings lines: the known reasons of the signals that held, else the latest complaint if recent
    enough. ``level``: the run's ``churn_risk.level`` record; the complaint's date and age come from it
    (runs before they were recorded: from the replayed features)."""
    inputs = level.get("inputs") or {}
    reason = next((o["set"].get("churn_reason") for o in level.get("outputs") or [] if "set" in o), None)
    known: dict[str, float] = {}
    held = []
    for r in records:
        r_reason = next((o["reason"] for o in r.get("outputs") or [] if "reason" in o), None)
        points = next((o["score"].get("churn_score") for o in r.get("outputs") or [] if "score" in o), None)
        if r_reason is None:
            continue
        held.append(f"{r['rule_id']}（{r_reason}）")
        if r_reason != "未知" and isinstance(points, (int, float)):
            known[r_reason] = known.get(r_reason, 0) + points
    signals = "，".join(held) or "（无）"
    if known:
        weights = "，".join(f"{k} {_v(v)} 分" for k, v in known.items())
        return [f"原因 {reason}：满足的信号 {signals}；已知原因按权重相加 {weights}，取最大的（相同时取先声明的信号的）"]
    lines = [f"原因 {reason or '（无）'}：满足的信号 {signals}，都没有已知原因，所以看最近一次投诉"]
    category = inputs.get("last_complaint_category", features.get("last_complaint_category"))
    day = inputs.get("last_complaint_date", features.get("last_complaint_date"))
    since = inputs.get("days_since_last_complaint", features.get("days_since_last_complaint"))
    limit = f"complaint_reason_days {settings.complaint_reason_days} 天（{setting_line(policyset, 'churn', None, 'complaint_reason_days')}）"
    if day is None:
        lines.append(f"没有投诉记录：原因为未知（{limit}）")
        return lines
    day_text = day.isoformat() if isinstance(day, date) else str(day)
    latest = [i for i in interactions if INTERACTION_TYPE_KEYS.get(i.type or "") == "complaint"
              and (i.time.date() if isinstance(i.time, datetime) else i.time).isoformat() == day_text]
    which = f"最近一次投诉 {max(latest, key=lambda i: i.time).interaction_id}" if latest else "最近一次投诉"
    complaint = f"{which}（{day_text}，{category or '无类别'}）已过去 {since} 天"
    mapped = settings.complaint_reasons.get((category or "").strip())
    mapping = (f"complaint_reasons {category} → {mapped}，{setting_line(policyset, 'churn', 'complaint_reasons', category.strip())}"
               if mapped else f"类别 {category or '（空）'} 不在 complaint_reasons 中")
    if since is not None and since <= settings.complaint_reason_days:
        lines.append(f"{complaint}，在 {limit} 之内：按它的类别（{mapping}）")
    else:
        lines.append(f"{complaint}，超过 {limit}：不用它的类别（{mapping}），原因为未知")
    return lines


# --------------------------------------------------------------------------------------------------
# Care
# --------------------------------------------------------------------------------------------------


def _window(when: date, days_before: int, as_of: date | None = None, next_run: date | None = None) -> str:
    """The greeting window as engine.stages.care.window_open has it: ``days_before`` days up to the day
    (also across the year end: the rules count their year at the birthday, period_of), and why it is
    open already when it opens after ``as_of`` but before ``next_run``, the next working day."""
    first = when - timedelta(days=days_before)
    text = f"{first.isoformat()} 至 {when.isoformat()}"
    if as_of is not None and next_run is not None and as_of < first < next_run:
        text += (f"；下一个工作日是 {next_run.isoformat()}，窗口在那之前开始，提前到今天打开"
                 "（windows_over_holidays：节假日、周末不运行）")
    return text


def care_basis(policyset: Any, settings: Any, customer: Any, f: dict[str, Any], as_of: date,
               interval_rule: tuple[str, str] | None = None, next_run: date | None = None) -> list[BasisLine]:
    """The care stage's facts for one customer (engine.stages.care.CareStage.process has computed them
    into ``f``), each with its basis. ``interval_rule``: (rule id, source) of the rule that set
    revisit_interval_days (e.g. the service plan's SP-4, ``tables/service_plan.xlsx!服务方案!A6``), if one did.
    ``next_run``: the stage's next_run_day (windows that open before it are open today)."""
    def loc(block: str, key: str) -> str:
        return settings_location(policyset, "care", block, key)

    out: list[BasisLine] = []
    # Birthday
    if customer.birthday is None:
        out.append(BasisLine("birthday_greeting_due", _v(f.get("birthday_greeting_due")), "客户资料没有生日", ""))
    else:
        when = f["next_birthday_date"]
        recorded = (f"农历生日 {customer.birthday.month:02d}-{customer.birthday.day:02d}（客户资料）→ 换算成公历"
                    if customer.birthday_is_lunar else f"生日 {customer.birthday.month:02d}-{customer.birthday.day:02d}（客户资料）")
        born = f"{recorded}，下一个生日 next_birthday_date={when.isoformat()}，还有 days_until_birthday={f['days_until_birthday']} 天"
        out.append(BasisLine("birthday_greeting_due", _v(f["birthday_greeting_due"]),
                             f"{born}；生日前 {settings.birthday_greeting_days} 天至生日当天：{_window(when, settings.birthday_greeting_days, as_of, next_run)}",
                             loc("birthday", "greeting_days_before")))
        out.append(BasisLine("birthday_gift_due", _v(f["birthday_gift_due"]),
                             f"生日前 {settings.birthday_gift_days} 天至生日当天：{_window(when, settings.birthday_gift_days, as_of, next_run)}",
                             loc("birthday", "gift_days_before")))
    # Revisit
    basis_day = f.get("revisit_basis_date")
    origin = next((label for name, label in (("last_revisit_date", "最近一次回访/拜访"), ("signed_date", "签约日期"),
                                             ("first_order_date", "首次购买日")) if f.get(name) is not None), None)
    interval = f.get("revisit_interval_days")
    by = f"（{interval_rule[0]} 设置）" if interval_rule else ""
    if basis_day is None:
        text = "没有回访/拜访记录、签约日期或订单：没有起算日"
    elif f.get("next_revisit_date") is None:
        text = (f"起算日 revisit_basis_date={basis_day.isoformat()}（{origin}）；"
                f"回访间隔 revisit_interval_days={_v(interval)}{by}：没有可用的回访间隔（或起算日在 as-of 之后）")
    else:
        text = (f"起算日 revisit_basis_date={basis_day.isoformat()}（{origin}），回访间隔 revisit_interval_days={_v(interval)} 天{by}"
                f" → 下次回访 next_revisit_date={f['next_revisit_date'].isoformat()}；已过 {(as_of - basis_day).days} 天")
    out.append(BasisLine("revisit_due", _v(f.get("revisit_due")), text, interval_rule[1] if interval_rule else ""))
    # Post-purchase follow-up
    if f.get("post_purchase_order_id"):
        text = (f"订单 {f['post_purchase_order_id']}（{f['post_purchase_order_date'].isoformat()}）后 {settings.post_purchase_window_days} 天内回访，"
                f"最后一天 {f['post_purchase_followup_by'].isoformat()}；订单日之后"
                + ("还没有" if f["post_purchase_followup_needed"] else "已有") + f" {'/'.join(settings.followup_types)} 记录")
    else:
        text = f"近 {settings.post_purchase_window_days} 天内没有计入的购买"
    out.append(BasisLine("post_purchase_followup_needed", _v(f.get("post_purchase_followup_needed")), text,
                         loc("post_purchase", "window_days")))
    # Festivals and the member day: the same for every customer
    ahead = (f"；{settings.festival_look_ahead_days} 天内最近的节日 {f['festival_name']} {f['festival_date'].isoformat()}"
             if f.get("festival_name") else f"；{settings.festival_look_ahead_days} 天内没有节日")
    early = (f"；下一个工作日是 {next_run.isoformat()}，在那之前开始的窗口今天就打开（windows_over_holidays）"
             if next_run is not None and next_run > as_of + timedelta(days=1) else "")
    out.append(BasisLine("festivals_due", _v(f.get("festivals_due")), "今天处在问候窗口（节日前 greeting_days_before 天至节日当天）内的节日"
                         + early + ahead, loc("festivals", "days")))
    md = f.get("next_member_day")
    out.append(BasisLine("is_member_day", _v(f.get("is_member_day")),
                         f"下一个会员日 {md.isoformat()}（每月 {settings.member_day} 日），提前 {settings.member_day_days_before} 天提醒："
                         + _window(md, settings.member_day_days_before, as_of, next_run)
                         + ("；但会员日在下个月，提醒最早在那个月的 1 日打开"
                            if next_run is not None and md.month != as_of.month
                            and md - timedelta(days=settings.member_day_days_before) < next_run else "")
                         if md else "", loc("member_day", "days_before")))
    # Survey and unsatisfied complaints
    if f.get("survey_due"):
        text = f"投诉 {f['survey_interaction_id']} 已解决、没有满意度评分，在解决后 {settings.survey_window_days} 天内"
    else:
        text = f"没有解决后 {settings.survey_window_days} 天内、尚无评分的投诉"
    out.append(BasisLine("survey_due", _v(f.get("survey_due")), text, loc("survey", "window_days")))
    if f.get("unsatisfied_complaint"):
        text = (f"投诉 {f['unsatisfied_complaint_id']} 评分 {_v(f['unsatisfied_complaint_score'])} ≤ {settings.unsatisfied_at_most}，"
                f"在近 {settings.unsatisfied_window_days} 天内解决")
    else:
        text = f"近 {settings.unsatisfied_window_days} 天内解决的投诉没有评分 ≤ {settings.unsatisfied_at_most} 的"
    out.append(BasisLine("unsatisfied_complaint", _v(f.get("unsatisfied_complaint")), text, loc("survey", "unsatisfied_at_most")))
    return out
