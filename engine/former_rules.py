"""Rules the contact ledger knows and the policies no longer have.

An item's idempotency key starts with its rule id, so a rule renamed (or merged into another) without
``formerly: [OLD-ID]`` on the rule that took over issues again what the old id issued this period. A
run stops before it evaluates anything (``check_former_rules``) while the old id's rows are recent
enough to matter, until the rule that took over lists the old id under ``formerly:`` or a policy
lists it under ``retired_rules:`` (deleted on purpose). ``validate --outbox`` says the same beforehand.
"""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from engine.errors import Location, Problem
from engine.ledger import Ledger
from engine.policy.model import MessageSpec, TaskSpec
from engine.policy.schema import did_you_mean
from engine.policy_tests import all_rule_ids

# How far back the ledger is read: the longest once_per most rules use is a month, and a greeting's
# window is at most 60 days (actions.FORMER_KEY_DAYS); rows older than this rarely hold anything back.
RECENT_DAYS = 60


def check_former_rules(policyset, ledger_path: Path, as_of: date, where: str, for_run: str | None = None) -> list[Problem]:
    """``former_rule_problems`` of the ledger at ``ledger_path``: reads only, and a ledger not there yet
    (the first run) has nothing to check, nor has a run the ledger recorded already. ``run`` stops on
    them; ``validate --outbox`` lists them."""
    if not ledger_path.is_file():
        return []
    with Ledger(ledger_path, create=False) as ledger:
        if for_run is not None and ledger.has_run(for_run):
            return []  # a run recorded already, executed again (run --force, verify): it issues what it did then
        return former_rule_problems(policyset, ledger, as_of, where, for_run)


def former_rule_problems(policyset, ledger: Ledger, as_of: date, where: str, for_run: str | None = None) -> list[Problem]:
    """One error per rule id that issued tasks or messages in the RECENT_DAYS up to ``as_of`` (in the
    history run ``for_run`` sees), is no rule's id now, is listed under no rule's ``formerly`` and
    under no policy's ``retired_rules``. ``where``: the ledger as the run names it. Ids and counts
    only: no customer data."""
    known = set(all_rule_ids(policyset))
    known.update(old for rs in policyset.all_rulesets() for rule in rs.rules for old in rule.formerly)
    known.update(old for rs in policyset.all_rulesets() for old in rs.retired)
    since = as_of - timedelta(days=RECENT_DAYS)
    problems = []
    for old in ledger.rule_ids():
        if old in known:
            continue
        rows = ledger.rule_issues_since(old, since, for_run)
        if not rows:
            continue
        tasks = sum(n for kind, _, _, n in rows if kind == "task")
        messages = sum(n for kind, _, _, n in rows if kind == "message")
        counts_zh = "、".join(([f"任务 {tasks} 项"] if tasks else []) + ([f"消息 {messages} 条"] if messages else []))
        counts_en = ", ".join(([f"{tasks} task{'s' * (tasks != 1)}"] if tasks else [])
                              + ([f"{messages} message{'s' * (messages != 1)}"] if messages else []))
        guess_zh, guess_en = _successor_text(policyset, old, rows)
        kinds = "、".join(sorted({stage for _, stage, _, _ in rows if stage}))
        kinds_zh, kinds_en = (f"（kind: {kinds}）", f" (kind: {kinds})") if kinds else ("", "")
        problems.append(Problem(
            code="former-rule-not-listed", severity="error", location=Location(file=where),
            message=f"联系台账里最近 {RECENT_DAYS} 天有{counts_zh}出自规则 {old}，现在的策略里没有这条规则，formerly 和 "
                    f"retired_rules 里也没有它：它若改了编号或并入了别的规则，接替的规则会把同一周期的任务和消息再派发一次，"
                    f"所以这次运行没有开始（什么也没有写出） / "
                    f"the contact ledger has {counts_en} from rule {old} in the last {RECENT_DAYS} days; no rule has that id "
                    "now and neither formerly nor retired_rules lists it: if it was renamed or merged, the rule that took "
                    "over would issue this period's items again, so the run did not start (nothing was written)",
            fix=f"改名或合并的，在接替它的规则上加一行 formerly: [{old}]{guess_zh}；确实停用的，在它原来所在的策略文件"
                f"{kinds_zh}里与 rules: 同级加一行 retired_rules: [{old}] / "
                f"if renamed or merged, add formerly: [{old}] to the rule that took over{guess_en}; if retired on purpose, "
                f"add retired_rules: [{old}] beside rules: in the policy file it was in{kinds_en}"))
    return problems


def _successor_text(policyset, old: str, rows: list[tuple]) -> tuple[str, str]:
    """A guess at the rule that took over ``old``'s work, as (Chinese, English) text to add to the fix:
    the one rule sending a template ``old`` sent, else the rule with the most similar id among those
    issuing the same kind in the same stage (then in any stage). ("", "") when nothing is close."""
    kinds = {kind for kind, _, _, _ in rows}
    stages = {stage for _, stage, _, _ in rows}
    templates = {template for _, _, template, _ in rows if template}
    issuing = []  # (rule id, stage, templates it sends) of the rules issuing one of those kinds
    for rs in policyset.all_rulesets():
        for rule in rs.rules:
            outs = [o for o in rule.outputs if isinstance(o, (TaskSpec, MessageSpec))
                    and ("task" if isinstance(o, TaskSpec) else "message") in kinds]
            if outs:
                issuing.append((rule.rule_id, rs.stage, {o.template for o in outs if isinstance(o, MessageSpec)}))
    same_template = sorted({rule_id for rule_id, _, sent in issuing if sent & templates})
    if len(same_template) == 1:
        shared = "、".join(sorted(templates & next(sent for r, _, sent in issuing if r == same_template[0])))
        return f"（是不是 {same_template[0]}？它也发模板 {shared}）", f" (perhaps {same_template[0]}: it sends template {shared} too)"
    guess = (did_you_mean(old, [rule_id for rule_id, stage, _ in issuing if stage in stages])
             or did_you_mean(old, [rule_id for rule_id, _, _ in issuing]))
    return (f"（是不是 {guess}？）", f" (perhaps {guess}?)") if guess else ("", "")
