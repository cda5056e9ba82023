"""``crm-engine diff``: what a policy change would do, before it goes live.

Both policy versions run on the same inputs and as-of date (``engine.run.evaluate_dataset``, then
each version's guards without the contact ledger, so the answer does not depend on what earlier runs
sent). Reported:

* classifications: per tag (value_tier, need_type, churn_level, ...) the customers whose value changes,
  counted per (from → to) pair, and each customer;
* tasks and messages added and removed (by rule and customer); a task counts as the same when its
  customer, rule, assignee, title, priority and due time are the same; a message when its customer,
  rule, channel and template are;
* SLA: interactions whose target rule, target durations, deadlines or status change (read from the
  ``{"sla": ...}`` outputs of the SLA stage's decisions);
* how often each rule fires, where that changes.

A rule of the new version with ``formerly: [OLD-ID]`` is the base's OLD-ID renamed (or merged into
it): its tasks, messages and firings are compared with OLD-ID's, under the new id, and the rename is
named (not OLD-ID's items removed and all of them added again).

The base may be a folder or a git revision (``git:HEAD~1``): that revision's policy folder (and the
templates folder beside it, if the revision has one) is exported with ``git archive`` into a
temporary folder; the commit the revision named then is recorded, so the workbook stays traceable
after the branch moves. The policy edits themselves are listed too (``engine.policy_changes``: each
file's sha256 in both versions, changed YAML lines and decision-table cells, old → new, with their
rules), and tags are named as customers.xlsx heads them (``engine.run.customer_columns``).
"""
from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine.audit import SLA_STATUS_LABELS
from engine.decisions import CATEGORY_LABELS, jsonable
from engine.errors import EngineError, Location, Problem
from engine.expr.render import value_text
from engine.outbox import sha256_file
from engine.outputs import STAGE_LABELS
from engine.policy.model import SetTag
from engine.policy_changes import FileChange, compare_policy_files
from engine.xlsx_out import Column, Sheet, write_workbook

CLOCKS = (("first_response", "首次响应"), ("resolution", "解决"))


class DiffError(EngineError):
    """A policy version cannot be obtained (e.g. an unknown git revision)."""


@dataclass
class Side:
    label: str
    policies: Path
    templates: Path
    commit: str | None = None  # the commit a git:<revision> base resolved to


@dataclass
class DiffResult:
    base: str
    new: str
    as_of: str
    customers: int
    tag_pairs: dict[str, Counter] = field(default_factory=dict)  # tag → Counter((from, to))
    customer_changes: list[tuple] = field(default_factory=list)  # (customer_id, name, tag, from, to)
    tasks_added: list[dict] = field(default_factory=list)
    tasks_removed: list[dict] = field(default_factory=list)
    messages_added: list[dict] = field(default_factory=list)
    messages_removed: list[dict] = field(default_factory=list)
    sla_changes: list[dict] = field(default_factory=list)
    rule_counts: list[tuple] = field(default_factory=list)  # (stage, rule_id, base count, new count)
    base_commit: str | None = None  # the commit git:<revision> resolved to
    files: list[FileChange] = field(default_factory=list)  # every policy file of either version, and its edits
    tag_labels: dict[str, str] = field(default_factory=dict)  # tag → its customers.xlsx header (价值等级, ...)
    rule_info: dict[str, tuple[str, str]] = field(default_factory=dict)  # rule id → (description, location)
    renamed: dict[str, str] = field(default_factory=dict)  # base rule id → the new version's rule listing it under formerly

    def tag_label(self, tag: str) -> str:
        label = self.tag_labels.get(tag, tag)
        return label if label == tag else f"{label}（{tag}）"

    @property
    def edited_files(self) -> list[FileChange]:
        return [f for f in self.files if f.status != "相同"]

    @property
    def unchanged(self) -> bool:
        return not (self.customer_changes or self.tasks_added or self.tasks_removed or self.messages_added
                    or self.messages_removed or self.sla_changes or self.rule_counts)


# --------------------------------------------------------------------------------------------------
# Getting the base from git
# --------------------------------------------------------------------------------------------------


def _git(args: list[str], cwd: Path) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise DiffError(Problem(code="git-missing", message="找不到 git 命令", location=Location(file=str(cwd)),
                                fix="安装 git，或用 --base 指定旧版本策略所在的文件夹")) from None
    if done.returncode != 0:
        raise DiffError(Problem(code="git-failed", message=f"git {' '.join(args)} 失败：{done.stderr.decode(errors='replace').strip()}",
                                location=Location(file=str(cwd)), fix="检查版本写法，例如 git:HEAD~1、git:main、git:<提交编号>"))
    return done.stdout


def _extract(archive: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        # "data" filter: no absolute paths, links out of the folder or device files (Python ≥ 3.11.4).
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - older Pythons: refuse anything unusual ourselves
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
                    raise DiffError(Problem(code="git-archive-unsafe", message=f"unexpected entry {member.name} in git archive"))
            tar.extractall(dest)


def export_git_revision(revision: str, new_policies: Path, dest: Path) -> Side:
    """Export ``revision``'s version of the policy folder (and templates beside it) into ``dest``."""
    new_policies = Path(new_policies).resolve()
    try:
        top = Path(_git(["rev-parse", "--show-toplevel"], new_policies).decode().strip()).resolve()
    except DiffError as exc:
        if exc.problems[0].code != "git-failed":
            raise
        raise DiffError(Problem(code="not-in-git", message=f"策略文件夹 {new_policies} 不在 git 仓库里，没有 git:{revision} 可比",
                                location=Location(file=str(new_policies)),
                                fix="用 --base 指定旧版本策略所在的文件夹（例如备份的 policies 文件夹）")) from None
    prefix = new_policies.relative_to(top).as_posix()
    commit = _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], top).decode().strip()
    if not _git(["ls-tree", "--name-only", revision, "--", prefix], top).strip():
        # git archive would fail with "pathspec did not match", and the advice to check the revision mislead.
        raise DiffError(Problem(code="git-no-policies", message=f"版本 {revision} 里还没有策略文件夹 {prefix}/",
                                location=Location(file=f"git:{revision}"),
                                fix=f"先提交（git add {prefix} && git commit），或换一个已有这个文件夹的版本，或用 --base 指定文件夹"))
    _extract(_git(["archive", "--format=tar", revision, "--", prefix], top), dest)
    policies = dest / prefix
    templates_prefix = (Path(prefix).parent / "templates").as_posix()
    try:
        _extract(_git(["archive", "--format=tar", revision, "--", templates_prefix], top), dest)
    except DiffError:
        pass  # that revision has no templates folder: the new one's is used
    templates = dest / templates_prefix
    return Side(f"git:{revision}", policies, templates, commit)


# --------------------------------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------------------------------


def _evaluate_side(role: str, side: Side, inbox: Path, as_of: date, as_of_time: datetime | None, datasets: dict[str, Any]):
    """``_evaluate``, with an error saying which version it is in: both versions name the same files."""
    try:
        return _evaluate(side, inbox, as_of, as_of_time, datasets)
    except EngineError as exc:
        if any(p.code == "diff-side" for p in exc.problems):
            raise
        first = Problem(code="diff-side", message=f"{role}的策略或输入有误：{side.label} / the {role.split()[-1]} version "
                        f"cannot be run: {side.label}", location=Location(file=side.label),
                        fix=f"修正下面的问题（它们在 {side.label} 中）后再比较 / fix the problems below (in {side.label})")
        raise DiffError([first, *exc.problems]) from None


def _evaluate(side: Side, inbox: Path, as_of: date, as_of_time: datetime | None, datasets: dict[str, Any]):
    from engine.guards import guard_evaluation, load_guard_policy, send_from
    from engine.readers import load_columns, read_inbox
    from engine.run import evaluate_dataset
    from engine.validate import load_checked_policies

    policyset = load_checked_policies(side.policies, side.templates)
    columns_path = side.policies / "columns.yaml"
    key = sha256_file(columns_path)
    if key not in datasets:  # the same column mapping reads the inbox the same way: read it once
        datasets[key] = read_inbox(inbox, load_columns(columns_path))
    dataset = datasets[key]
    evaluation = evaluate_dataset(policyset, dataset, as_of, side.templates, as_of_time=as_of_time)
    # Each version's guards (consent, opt-out, caps), without the contact ledger: the comparison is
    # between policies, not between what earlier runs happened to send.
    guard_evaluation(load_guard_policy(policyset), None, {c.customer_id: c for c in dataset.customers}, evaluation,
                     send_from(as_of, as_of_time), "diff")
    return policyset, dataset, evaluation


def _tag_names(policysets, evaluations) -> list[str]:
    names: dict[str, None] = {}
    for ps in policysets:
        for rs in ps.all_rulesets():
            for rule in rs.rules:
                for out in rule.outputs:
                    if isinstance(out, SetTag):
                        names[out.name] = None
    for ev in evaluations:  # stage modules set tags too (e.g. churn_level), seen in their decisions
        for f in ev.firings:
            for out in f.outputs:
                if "set" in out:
                    for name in out["set"]:
                        names.setdefault(name, None)
    return list(names)


def _task_key(t, renamed: dict[str, str]) -> tuple:
    return (t.customer_id, renamed.get(t.rule_id, t.rule_id), t.assignee, t.title, t.priority, jsonable(t.due))


def _message_key(m, renamed: dict[str, str]) -> tuple:
    return (m.customer_id, renamed.get(m.rule_id, m.rule_id), m.channel, m.template)


def _renames(base_ps, new_ps) -> dict[str, str]:
    """Base rule id → the new version's rule that lists it under ``formerly`` (renamed or merged into it),
    for ids that are a rule of the base and no longer one of the new version."""
    from engine.policy_tests import all_rule_ids

    base_ids, new_ids = set(all_rule_ids(base_ps)), set(all_rule_ids(new_ps))
    return {old: rule.rule_id for rs in new_ps.all_rulesets() for rule in rs.rules for old in rule.formerly
            if old in base_ids and old not in new_ids}


def _multiset_diff(base: list, new: list, key, renamed: dict[str, str]) -> tuple[list, list]:
    """Items only in new (added) and only in base (removed), counting duplicates; a base item of a
    renamed rule (``renamed``) compares as its new id's."""
    base_count = Counter(key(x, renamed) for x in base)
    new_count = Counter(key(x, {}) for x in new)
    added, removed = [], []
    seen_new: Counter = Counter()
    for x in new:
        k = key(x, {})
        seen_new[k] += 1
        if seen_new[k] > base_count.get(k, 0):
            added.append(x)
    seen_base: Counter = Counter()
    for x in base:
        k = key(x, renamed)
        seen_base[k] += 1
        if seen_base[k] > new_count.get(k, 0):
            removed.append(x)
    return added, removed


def _sla_items(evaluation) -> dict[tuple[str, str], dict[str, Any]]:
    items = {}
    for f in evaluation.firings:
        if f.stage != "sla":
            continue
        sla = next((o["sla"] for o in f.outputs if "sla" in o), None)
        if sla is None:
            continue
        inputs = f.inputs or {}
        items[(f.customer_id, str(inputs.get("interaction_id")))] = {"rule": f.rule_id, "type": inputs.get("type"), "sla": sla}
    return items


def _clock_text(sla: dict[str, Any], clock: str, part: str) -> str | None:
    c = sla.get(clock)
    if not c:
        return "不考核" if part == "target" else None
    value = c.get(part)
    return None if value is None else str(jsonable(value))


def diff_evaluations(base: Side, new: Side, inbox: Path, as_of: date, as_of_time: datetime | None = None) -> DiffResult:
    datasets: dict[str, Any] = {}
    base_ps, base_data, base_ev = _evaluate_side("旧版本 base", base, inbox, as_of, as_of_time, datasets)
    new_ps, new_data, new_ev = _evaluate_side("新版本 new", new, inbox, as_of, as_of_time, datasets)
    result = DiffResult(base.label, new.label, (as_of_time or as_of).isoformat(), len(new_data.customers),
                        base_commit=base.commit, files=compare_policy_files(base_ps, new_ps))
    result.tag_labels, result.rule_info = _labels(base_ps, new_ps, base_ev, new_ev)
    result.renamed = renamed = _renames(base_ps, new_ps)

    # Classifications, customer by customer.
    base_rows = {r.get("customer_id"): r for r in base_ev.customer_rows}
    for tag in _tag_names((base_ps, new_ps), (base_ev, new_ev)):
        pairs: Counter = Counter()
        for row in new_ev.customer_rows:
            cid = row.get("customer_id")
            before = base_rows.get(cid, {}).get(tag)
            after = row.get(tag)
            if jsonable(before) != jsonable(after):
                pairs[(jsonable(before), jsonable(after))] += 1
                result.customer_changes.append((cid, row.get("name"), tag, jsonable(before), jsonable(after)))
        if pairs:
            result.tag_pairs[tag] = pairs

    added, removed = _multiset_diff(base_ev.tasks, new_ev.tasks, _task_key, renamed)
    result.tasks_added = [_task_row(t) for t in added]
    result.tasks_removed = [_task_row(t) for t in removed]
    added, removed = _multiset_diff(base_ev.messages, new_ev.messages, _message_key, renamed)
    result.messages_added = [_message_row(m) for m in added]
    result.messages_removed = [_message_row(m) for m in removed]

    base_sla, new_sla = _sla_items(base_ev), _sla_items(new_ev)
    for key in sorted(set(base_sla) | set(new_sla)):
        b, n = base_sla.get(key), new_sla.get(key)
        change = {"customer_id": key[0], "interaction_id": key[1], "type": (n or b)["type"],
                  "base_rule": b and b["rule"], "new_rule": n and n["rule"]}
        changed = change["base_rule"] != change["new_rule"]
        for clock, _label in CLOCKS:
            for part in ("target", "deadline", "status"):
                before = _clock_text(b["sla"], clock, part) if b else None
                after = _clock_text(n["sla"], clock, part) if n else None
                change[f"{clock}_{part}"] = (before, after)
                changed = changed or before != after
        if changed:
            result.sla_changes.append(change)

    base_counts = Counter((f.stage, renamed.get(f.rule_id, f.rule_id)) for f in base_ev.firings)
    new_counts = Counter((f.stage, f.rule_id) for f in new_ev.firings)
    order = {stage: i for i, stage in enumerate(STAGE_LABELS)}
    for key in sorted(set(base_counts) | set(new_counts), key=lambda k: (order.get(k[0], 9), k[1])):
        if base_counts[key] != new_counts[key]:
            result.rule_counts.append((key[0], key[1], base_counts[key], new_counts[key]))
    return result


def _labels(base_ps, new_ps, base_ev, new_ev) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Tag → its customers.xlsx header; rule id → (description, where it is written: the new version's
    place, else the old one's; for a stage module's decision, the source its decisions record)."""
    from engine.run import customer_columns
    from engine.validate import settings_descriptions, settings_rules

    labels = {key: header for ps in (base_ps, new_ps) for key, header, _kind in customer_columns(ps)}
    info: dict[str, tuple[str, str]] = {}
    for ev in (base_ev, new_ev):  # later wins: the new version
        for f in ev.firings:
            info[f.rule_id] = ("", f.source)
    for ps in (base_ps, new_ps):
        descriptions = settings_descriptions(ps)
        for _stage, rule_id, _when, loc in settings_rules(ps):
            info[rule_id] = (descriptions.get(rule_id, ""), str(loc))
        for rs in ps.all_rulesets():
            for rule in rs.rules:
                info[rule.rule_id] = (rule.description, str(rule.location))
    return labels, info


def _task_row(t) -> dict[str, Any]:
    return {"customer_id": t.customer_id, "customer_name": t.customer_name, "rule_id": t.rule_id, "stage": t.stage,
            "assignee": t.assignee, "title": t.title, "priority": t.priority, "due": t.due}


def _message_row(m) -> dict[str, Any]:
    return {"customer_id": m.customer_id, "customer_name": m.customer_name, "rule_id": m.rule_id, "stage": m.stage,
            "channel": m.channel, "template": m.template, "category": m.category}


def run_diff(base: str, new: Path, inbox: Path, as_of: date, as_of_time: datetime | None = None,
             templates: Path | None = None) -> DiffResult:
    """``base``: a folder, or ``git:<revision>`` of the repository that holds ``new``."""
    from engine.run import default_templates

    new = Path(new).resolve()
    new_side = Side(new.as_posix(), new, Path(templates).resolve() if templates else default_templates(new))
    if base.startswith("git:"):
        with tempfile.TemporaryDirectory(prefix="crm-diff-") as tmp:
            base_side = export_git_revision(base[4:], new, Path(tmp))
            if not base_side.policies.is_dir():
                raise DiffError(Problem(code="git-no-policies", message=f"{base} 中没有策略文件夹 {new.name}/",
                                        location=Location(file=base)))
            if not base_side.templates.is_dir():
                base_side.templates = new_side.templates
            return diff_evaluations(base_side, new_side, inbox, as_of, as_of_time)
    base_path = Path(base).resolve()
    if not base_path.is_dir():
        raise DiffError(Problem(code="policy-folder-missing", message=f"找不到旧版本策略文件夹 {base}",
                                location=Location(file=base), fix="--base 写策略文件夹，或 git:<版本>，例如 git:HEAD~1"))
    base_templates = default_templates(base_path)
    if not base_templates.is_dir():
        base_templates = new_side.templates
    return diff_evaluations(Side(base_path.as_posix(), base_path, base_templates), new_side, inbox, as_of, as_of_time)


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, bool):  # as decision tables and report.html write them
        return "是" if value else "否"
    return "（空）" if value is None else (value if isinstance(value, str) else value_text(value))


def _by_rule(items: list[dict]) -> list[tuple[str, int]]:
    return sorted(Counter(i["rule_id"] for i in items).items(), key=lambda kv: (-kv[1], kv[0]))


def format_diff(result: DiffResult, top: int = 10) -> list[str]:
    lines = [f"影响分析 diff：{result.base} → {result.new}（as-of {result.as_of}，客户 {result.customers} 位）"]
    if result.base_commit:
        lines.append(f"旧版本 {result.base} = 提交 commit {result.base_commit}")
    lines.append("策略文件变化 policy edits:" + ("" if result.edited_files else " （无 none）"))
    for f in result.edited_files:
        lines.append(f"  {f.status} {f.path}")
        for e in f.edits[:top]:
            rules = f"（{e['rules']}）" if e["rules"] else ""
            lines.append(f"    {e['where']}{rules}：{e['old'] or '（空）'} → {e['new'] or '（空）'}")
        if len(f.edits) > top:
            lines.append(f"    …… 另有 {len(f.edits) - top} 处修改，见 diff.xlsx")
    for old, new in sorted(result.renamed.items()):
        lines.append(f"规则改名 renamed：{old} → {new}（formerly），按同一条规则比较 / compared as one rule")
    if result.unchanged:
        lines.append("两个版本在这些输入上的决定完全相同 / no differences")
        return lines
    lines.append("分类变化 classification changes:")
    if not result.tag_pairs:
        lines.append("  （无）")
    for tag, pairs in result.tag_pairs.items():
        lines.append(f"  {result.tag_label(tag)}：{sum(pairs.values())} 位客户变化")
        for (before, after), count in sorted(pairs.items(), key=lambda kv: (-kv[1], str(kv[0])))[:top]:
            lines.append(f"    {_show(before)} → {_show(after)}   {count}")
        if len(pairs) > top:
            lines.append(f"    …… 另有 {len(pairs) - top} 种变化，见 diff.xlsx")
    for label, added, removed in (("任务 tasks", result.tasks_added, result.tasks_removed),
                                  ("消息 messages", result.messages_added, result.messages_removed)):
        lines.append(f"{label}：新增 +{len(added)}，减少 −{len(removed)}")
        for rule_id, count in _by_rule(added)[:top]:
            lines.append(f"  + {rule_id}   {count}")
        for rule_id, count in _by_rule(removed)[:top]:
            lines.append(f"  − {rule_id}   {count}")
    lines.append(f"服务时限 SLA：{len(result.sla_changes)} 条互动的时限或状态变化")
    pairs = Counter()
    for c in result.sla_changes:
        for clock, label in CLOCKS:
            before, after = c[f"{clock}_target"]
            if before != after:
                pairs[(label, before, after)] += 1
        if c["base_rule"] != c["new_rule"]:
            pairs[("时限规则", c["base_rule"], c["new_rule"])] += 1
    for (label, before, after), count in sorted(pairs.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {label} {_show(before)} → {_show(after)}   {count}")
    if result.rule_counts:
        lines.append("规则触发次数变化 rule firings:")
        for stage, rule_id, before, after in result.rule_counts[: top * 2]:
            formerly = "、".join(old for old, new in sorted(result.renamed.items()) if new == rule_id)
            was = f"，原 {formerly}" if formerly else ""
            lines.append(f"  {rule_id}（{STAGE_LABELS.get(stage, stage)}{was}）{before} → {after}")
    return lines


def write_diff_workbook(path: Path, result: DiffResult) -> None:
    summary = [("旧版本 base", result.base), *([("旧版本提交 base commit", result.base_commit)] if result.base_commit else []),
               ("新版本 new", result.new), ("as-of", result.as_of), ("客户数", result.customers),
               ("修改的策略文件", len(result.edited_files)),
               ("分类变化的客户（按分类计）", len(result.customer_changes)), ("新增任务", len(result.tasks_added)),
               ("减少任务", len(result.tasks_removed)), ("新增消息", len(result.messages_added)),
               ("减少消息", len(result.messages_removed)), ("服务时限变化", len(result.sla_changes))]
    summary += [(f"规则改名 {old}", f"→ {new}（formerly，按同一条规则比较）") for old, new in sorted(result.renamed.items())]
    # Each compared policy file's sha256 in both versions: the workbook names exactly what it compared.
    summary += [(f"sha256 {f.path}", f"旧 {f.base_sha256 or '（无）'} / 新 {f.new_sha256 or '（无）'}") for f in result.files]
    pairs = [(result.tag_label(tag), _show(b), _show(a), n) for tag, counter in result.tag_pairs.items()
             for (b, a), n in sorted(counter.items(), key=lambda kv: -kv[1])]
    task_rows = [(sign, t["customer_id"], t["customer_name"], t["rule_id"], STAGE_LABELS.get(t["stage"], t["stage"]),
                  t["assignee"], t["title"], t["priority"], t["due"])
                 for sign, items in (("新增", result.tasks_added), ("减少", result.tasks_removed)) for t in items]
    message_rows = [(sign, m["customer_id"], m["customer_name"], m["rule_id"], STAGE_LABELS.get(m["stage"], m["stage"]),
                     m["channel"], m["template"], CATEGORY_LABELS.get(m["category"] or "", m["category"]))
                    for sign, items in (("新增", result.messages_added), ("减少", result.messages_removed)) for m in items]
    sla_rows = []
    for c in result.sla_changes:
        row = [c["customer_id"], c["interaction_id"], c["type"], c["base_rule"], c["new_rule"]]
        for clock, _label in CLOCKS:
            for part in ("target", "deadline", "status"):
                pair = c[f"{clock}_{part}"]
                if part == "status":  # as report.html says them (按时, 超时未完成, ...), not the codes
                    pair = tuple(SLA_STATUS_LABELS.get(v, v) for v in pair)
                row.extend(pair)
        sla_rows.append(row)
    sla_columns = [Column("客户编号"), Column("互动编号"), Column("类型"), Column("旧时限规则"), Column("新时限规则")]
    for _clock, label in CLOCKS:
        for part in ("时限", "截止", "状态"):
            sla_columns += [Column(f"{label}{part}（旧）"), Column(f"{label}{part}（新）")]
    write_workbook(Path(path), [
        Sheet("概要", [Column("项目"), Column("值")], summary),
        Sheet("分类变化汇总", [Column("分类"), Column("原值"), Column("新值"), Column("客户数", kind="int")], pairs),
        Sheet("客户分类变化", [Column("客户编号"), Column("客户名称"), Column("分类"), Column("原值"), Column("新值")],
              [(cid, name, result.tag_label(tag), _show(b), _show(a)) for cid, name, tag, b, a in result.customer_changes]),
        Sheet("任务变化", [Column("变化"), Column("客户编号"), Column("客户名称"), Column("规则编号"), Column("阶段"),
                        Column("负责人"), Column("任务", width=50), Column("优先级"), Column("截止时间", kind="datetime")], task_rows),
        Sheet("消息变化", [Column("变化"), Column("客户编号"), Column("客户名称"), Column("规则编号"), Column("阶段"),
                        Column("渠道"), Column("模板"), Column("类别")], message_rows),
        Sheet("服务时限变化", sla_columns, sla_rows),
        Sheet("规则触发次数", [Column("阶段"), Column("规则编号"), Column("规则说明", width=50), Column("位置", width=40),
                           Column("旧版本次数", kind="int"), Column("新版本次数", kind="int")],
              [(STAGE_LABELS.get(s, s), r, *result.rule_info.get(r, ("", "")), b, n) for s, r, b, n in result.rule_counts]),
        Sheet("策略修改", [Column("文件", width=36), Column("变化"), Column("位置", width=40), Column("规则编号"),
                       Column("原内容", width=50), Column("新内容", width=50)],
              [(f.path, f.status, e["where"], e["rules"], e["old"], e["new"]) for f in result.edited_files
               for e in (f.edits or [{"where": "", "rules": "", "old": "", "new": ""}])]),
        Sheet("策略文件", [Column("文件", width=36), Column("变化"), Column("旧版本 sha256", width=66), Column("新版本 sha256", width=66)],
              [(f.path, f.status, f.base_sha256, f.new_sha256) for f in result.files]),
    ], title="策略变更影响分析 diff")
