"""``crm-engine validate``: check a policy folder without running a batch.

Loading (``engine.policy.loader``) already checks YAML syntax, fields (with did-you-mean), expressions
and their types, decision-table cells, roles and channels of rules. This module adds what only
shows up when the pieces are put together:

* the stage settings files (sla.yaml, care.yaml, churn.yaml, guards.yaml) and the calendars they name;
* message templates: that each exists for every channel a rule may use, and that every variable it
  reads is one a message gets (``customer.<feature or tag>``, ``company.<key>``, ``as_of``,
  ``params.<key the rule sets>``); the same for task titles and scripts;
* rule ids used twice anywhere (YAML rules, table rows, SLA targets, churn signals), and ``formerly:``
  ids still in use or listed by two rules, and ``retired_rules:`` ids still a rule or under ``formerly:``;
* one tag set by two policies (the later one's value stays, and the file names decide which is later);
* the logic of each rule list, decision table and the SLA targets (see "Rule logic" below): rules
  that can never apply under the hit policy, overlapping rows in ``unique`` tables, and input combinations no row
  covers in policies that declare ``complete: true``.

``check_policies`` is the one function ``validate`` and ``run`` share: it returns the loaded policy
set and every problem found. ``load_checked_policies`` raises on errors (for ``run``).

Rule logic, and why it is exact enough: every variable a policy tests (a table column, or a name in a
YAML condition) is only ever compared with constants, so the constants cut each variable's values
into a few ranges (for ``>= 50000``: below, exactly, above). One representative value per range,
plus "empty" where the value can be empty and "another text" for text, gives a small grid of
example customers; a rule's condition is the same on every customer of one grid cell. So checking
the grid answers "can this row ever apply?" and "is there a customer no row covers?" without
guessing. Conditions that do arithmetic or call functions are not analysed (only an earlier
``when: true`` or an identical earlier condition is reported for them).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

from jinja2 import DictLoader, TemplateSyntaxError, nodes

from engine import expr
from engine.audit import check_report_template
from engine.calendar import load_calendars
from engine.errors import ERROR, SEVERITY_TEXT, WARNING, EngineError, Location, PolicyError, Problem, printable
from engine.expr.lexer import locate
from engine.expr.render import value_text
from engine.features import derive_features
from engine.model import Customer, SourceRow
from engine.policy import decision_table
from engine.policy.loader import PolicySet, load_policies
from engine.policy.model import STAGES, AddScore, MessageSpec, Rule, RuleSet, SetTag, TaskSpec
from engine.policy.schema import condition_text, did_you_mean
from engine.policy.yaml_source import YList, YMap
from engine.readers import load_columns
from engine.render import CONTEXT_VARIABLES, make_environment, template_fields, template_source, template_syntax_problem
from engine.stages import stage_feature_stages

# What a message or task template sees as ``customer`` besides features and tags (engine.actions.customer_context).
CONTACT_FIELDS = ("name", "contact_person", "phone", "email", "wechat", "gender")
STAGE_MODULES = ("sla", "care", "churn")
MAX_GRID = 200_000  # example customers per policy; above this the logic checks are skipped (with a warning)
CHECK_DATE = date(2026, 1, 5)  # the as-of day stage modules are built for when checking their settings
OTHER_TEXT = "〈其他值〉"  # stands for "a text none of the rules names"


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def check_policies(policies: Path, templates: Path | None = None, engine: str = "python") -> tuple[PolicySet | None, list[Problem]]:
    """Load the policy folder and run every check. Returns (policy set or None if it did not load, problems).
    With ``engine="durable"`` it also reports rules the durable_rules backend cannot express."""
    policies = Path(policies).resolve()
    templates = Path(templates).resolve() if templates else policies.parent / "templates"
    try:
        policyset = load_policies(policies)
    except EngineError as exc:
        return None, list(exc.problems)
    problems: list[Problem] = list(policyset.warnings)
    calendars = columns = None
    for loader, name in ((load_columns, "columns.yaml"), (load_calendars, "calendar.yaml")):
        path = policies / name
        if not path.is_file():
            problems.append(Problem(code="file-missing", message=f"策略文件夹里缺少 {name}",
                                    location=Location(file=name), fix=f"从随附的 policies/ 文件夹复制一份 {name}"))
            continue
        try:
            result = loader(path, display=name)  # named like the other policy files, not by its full path
        except EngineError as exc:
            problems.extend(exc.problems)
            continue
        if name == "calendar.yaml":
            calendars = result
        else:
            columns = result
    if calendars is not None:
        problems.extend(check_stage_settings(policyset, calendars, templates))
    problems.extend(check_duplicate_ids(policyset))
    problems.extend(check_formerly(policyset))
    problems.extend(check_templates(policyset, templates))
    problems.extend(check_report_template(templates))
    values = _ValueChecker(policyset, columns)
    values.check()
    # A rule whose comparison names a value that cannot occur is reported once, with that value
    # (unknown-value), not again as "never matches".
    problems.extend(check_rule_logic(policyset, explained=values.rules_with_unknown_values))
    problems.extend(check_tags_set_twice(policyset))
    problems.extend(values.problems)
    if engine == "durable":
        problems.extend(check_durable(policyset))
    return policyset, _unique(problems)


def check_durable(policyset: PolicySet) -> list[Problem]:
    """Rules the durable_rules backend cannot express, and whether durable_rules is installed."""
    from engine.backends.durable_backend import DurableBackend, check_expressible

    problems: list[Problem] = []
    for rs in policyset.all_rulesets():
        problems.extend(check_expressible(rs, policyset.schema))
    try:
        DurableBackend()
    except EngineError as exc:
        problems.extend(exc.problems)
    return problems


def validate_policies(policies: Path, templates: Path | None = None, engine: str = "python") -> list[Problem]:
    """Every problem of the policy folder (errors and warnings), in a stable order."""
    return check_policies(policies, templates, engine)[1]


def load_checked_policies(policies: Path, templates: Path | None = None, engine: str = "python") -> PolicySet:
    """The policy set, checked like ``validate`` does; raises PolicyError listing every error.
    Warnings are left in ``policyset.warnings``. ``run`` uses this so it refuses what validate rejects."""
    policyset, problems = check_policies(policies, templates, engine)
    errors = [p for p in problems if p.severity == ERROR]
    if errors or policyset is None:
        raise PolicyError(errors or problems)
    policyset.warnings = [p for p in problems if p.severity != ERROR]
    return policyset



def format_problem(p: Problem) -> str:
    """One line: ``where: 错误 error: message [code] — 修改建议: fix``."""
    text = f"{p.location}: {SEVERITY_TEXT.get(p.severity, p.severity)}: {p.message} [{p.code}]"
    if p.fix:
        text += f" — 修改建议: {p.fix}"
    return printable(text.replace("\n", " "))


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple] = set()
    out = []
    for p in problems:
        key = (p.code, p.message, str(p.location), p.severity)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# --------------------------------------------------------------------------------------------------
# Stage settings, calendars, guards
# --------------------------------------------------------------------------------------------------


def check_stage_settings(policyset: PolicySet, calendars: dict[str, Any], templates: Path) -> list[Problem]:
    """Load each stage's settings file the way a run does, so its mistakes show up now."""
    problems: list[Problem] = []
    org = policyset.organization
    if org.task_calendar not in calendars:
        zh, en = _guess(org.task_calendar, calendars)
        problems.append(Problem(
            code="unknown-calendar",
            message=f"task_calendar '{org.task_calendar}' 在 calendar.yaml 中没有定义{zh} / "
                    f"task_calendar '{org.task_calendar}' is not defined in calendar.yaml{en}",
            location=_value_loc(policyset, "organization", "task_calendar"),
            fix=f"可用的日历：{', '.join(calendars)} / calendars defined: {', '.join(calendars)}",
        ))
        return problems  # the stage modules need the task calendar to be built at all
    from engine.actions import ActionBuilder
    from engine.run import end_of_day
    from engine.stages import StageSetup

    # Any day will do for building the modules; a fixed one in a year the holiday data covers, so
    # validating does not depend on today's date (nor fail in a year not yet declared).
    as_of = CHECK_DATE
    builder = ActionBuilder(org, calendars[org.task_calendar], make_environment(templates), as_of)
    setup = StageSetup(policyset, calendars, builder, as_of, end_of_day(as_of))
    for name in STAGE_MODULES:
        try:
            module = __import__(f"engine.stages.{name}", fromlist=["build"])
        except ModuleNotFoundError:
            continue
        try:
            stage = module.build(setup)
        except EngineError as exc:
            problems.extend(exc.problems)
            continue
        # Said while loading, not fatal (e.g. an SLA settings file without targets): a run would
        # go ahead without a word, so validate says them.
        settings = getattr(stage, "policy", None) or getattr(stage, "settings", None)
        problems.extend(getattr(settings, "warnings", None) or [])
    try:
        from engine.guards import load_guard_policy
    except ImportError:
        return problems
    try:
        load_guard_policy(policyset)
    except EngineError as exc:
        problems.extend(exc.problems)
    return problems


def _value_loc(policyset: PolicySet, kind: str, key: str) -> Location:
    for _path, doc in policyset.documents.get(kind, []):
        if isinstance(doc, YMap):
            return doc.value_loc(key)
    return Location(file=f"{kind}.yaml")


def _guess(word: str, choices) -> tuple[str, str]:
    """The did-you-mean after a message's Chinese and English halves (empty when nothing is close)."""
    guess = did_you_mean(word, list(choices))
    return (f"；是不是 '{guess}'？", f"; did you mean '{guess}'?") if guess else ("", "")


# --------------------------------------------------------------------------------------------------
# Duplicate rule ids
# --------------------------------------------------------------------------------------------------


def _settings_entries(policyset: PolicySet) -> list[tuple[str, YMap]]:
    """(stage, mapping) of every rule-like entry of the stage settings files: a mapping with ``id`` and
    ``when`` inside a ``kind: sla/care/churn`` file that is not a rule policy."""
    found: list[tuple[str, YMap]] = []

    def walk(node: Any, stage: str) -> None:
        if isinstance(node, YMap):
            if "id" in node and "when" in node:
                found.append((stage, node))
            for value in node.values():
                walk(value, stage)
        elif isinstance(node, YList):
            for item in node:
                walk(item, stage)

    for stage in STAGE_MODULES:
        for _path, doc in policyset.documents.get(stage, []):
            if isinstance(doc, YMap) and not any(k in doc for k in ("rules", "table", "policies")):
                walk(doc, stage)
    return found


def calendar_ahead_warnings(policies: Path, as_of: date, policyset: PolicySet | None = None) -> list[Problem]:
    """The warnings a run on ``as_of`` gives about calendar years without holiday data in the coming
    weeks (``engine.calendar.coverage_warnings``), saying from about which as-of date runs stop when
    ``policyset`` is given; none if calendar.yaml cannot be read (validate says why)."""
    from engine.calendar import coverage_warnings

    try:
        calendars = load_calendars(Path(policies) / "calendar.yaml", display="calendar.yaml")
        offsets = deadline_offsets(policyset, calendars) if policyset is not None else None
        return coverage_warnings(calendars, as_of, offsets=offsets)
    except EngineError:
        return []


def deadline_offsets(policyset: PolicySet, calendars: dict[str, Any]) -> dict[str, list[tuple[Any, str]]]:
    """Calendar name → (duration, what it is) of every offset a run counts forward from its as-of date
    on that calendar: task due dates (``due:``, on the task calendar), the SLA escalation's due and the
    SLA targets (counted from the interaction's time, at most the as-of). For the calendar warning's
    "runs stop from about as-of …" (``engine.calendar.first_stopping_day``); one entry per duration,
    the first rule (in policy order) that uses it. An SLA file that does not load adds none."""
    from engine.calendar import parse_duration
    from engine.stages.sla import load_sla_policy

    found: dict[str, dict[Any, str]] = {}

    def add(calendar: str, duration: Any, what: str) -> None:
        found.setdefault(calendar, {}).setdefault(duration, what)

    task_calendar = policyset.organization.task_calendar
    for rs in policyset.all_rulesets():
        for rule in rs.rules:
            for out in rule.outputs:
                if isinstance(out, TaskSpec):
                    add(task_calendar, parse_duration(out.due), f"{rule.rule_id} due: {out.due}")
    try:
        sla = load_sla_policy(policyset, calendars)
    except EngineError:
        sla = None
    if sla is not None:
        add(task_calendar, sla.escalation_due, f"escalation_due: {sla.escalation_due}")
        for target in sla.targets:
            for field_name in ("first_response", "resolution"):
                duration = getattr(target, field_name)
                if duration is not None:
                    add(target.calendar_name, duration, f"{target.rule_id} {field_name}: {duration}")
    return {name: list(items.items()) for name, items in found.items()}


def settings_rules(policyset: PolicySet) -> list[tuple[str, str, str, Location]]:
    """Rule-like entries of stage settings files (SLA targets, churn signals, ...): (stage, id, when, location).
    They fire as decisions with their id, so the id must be unique too."""
    found = []
    for stage, node in _settings_entries(policyset):
        when = condition_text(node.get("when"))
        found.append((stage, str(node.get("id")), when, node.key_loc("id")))
    return found


def settings_descriptions(policyset: PolicySet) -> dict[str, str]:
    """id → description of the settings entries (SLA targets, churn signals) that have one."""
    return {str(node.get("id")): str(node.get("description")) for _stage, node in _settings_entries(policyset)
            if node.get("description")}


def check_duplicate_ids(policyset: PolicySet) -> list[Problem]:
    """Ids used twice. The loader already reports two YAML rules (and two rows of one table) with the
    same id; this adds a table row against any other rule, and settings entries against rules."""
    problems: list[Problem] = []
    first: dict[str, tuple[Location, str]] = {}  # id → (where, which ruleset)
    for rs in policyset.all_rulesets():
        for rule in rs.rules:
            here = (rule.location, rs.policy_id)
            seen = first.get(rule.rule_id)
            if seen is None:
                first[rule.rule_id] = here
                continue
            both_yaml = not rule.location.sheet and not seen[0].sheet
            same_table = rule.location.sheet and seen[1] == rs.policy_id
            if both_yaml or same_table:
                continue  # the loader reports these
            problems.append(_duplicate(rule.rule_id, seen[0], rule.location))
    for stage, rule_id, _when, loc in settings_rules(policyset):
        seen = first.get(rule_id)
        if seen is None:
            first[rule_id] = (loc, f"{stage}-settings")
            continue
        if stage == "sla" and seen[1] != "churn-settings":
            continue  # the SLA loader reports its own duplicates and clashes with rules
        problems.append(_duplicate(rule_id, seen[0], loc))
    return problems


def check_formerly(policyset: PolicySet) -> list[Problem]:
    """``formerly:`` ids that cannot be a rule's former id: one still used by a rule (or SLA target,
    churn signal): its ledger rows are that rule's, and the two would hold back each other's items;
    one listed by two rules: its rows can count for one of them only."""
    current = {rule.rule_id: rule.location for rs in policyset.all_rulesets() for rule in rs.rules}
    for _stage, rule_id, _when, loc in settings_rules(policyset):
        current.setdefault(rule_id, loc)
    problems: list[Problem] = []
    listed: dict[str, tuple[str, Location]] = {}  # former id → (the rule listing it, where)
    for rs in policyset.all_rulesets():
        for rule in rs.rules:
            for old, loc in zip(rule.formerly, rule.formerly_at):
                if old == rule.rule_id:
                    problems.append(Problem(code="formerly-in-use", location=loc,
                                            message=f"formerly 写的 '{old}' 是这条规则自己的编号 / "
                                                    f"formerly names '{old}', this rule's own id",
                                            fix="formerly 只写这条规则以前用过的编号 / list only ids this rule had before"))
                elif old in current:
                    problems.append(Problem(
                        code="formerly-in-use", location=loc,
                        message=f"formerly 写的 '{old}' 仍是 {current[old]} 的规则编号：它的台账记录算那条规则的 / "
                                f"formerly names '{old}', still a rule id at {current[old]}: its ledger rows are that rule's",
                        fix=f"旧规则已并入 {rule.rule_id} 的，删掉 {current[old]} 那条规则；旧规则还要用的，从 formerly 里去掉 / "
                            f"if it was merged into {rule.rule_id}, delete the rule at {current[old]}; if it is still in use, "
                            "take it out of formerly"))
                elif old in listed and listed[old][0] != rule.rule_id:
                    other, first = listed[old]
                    problems.append(Problem(
                        code="formerly-twice", location=loc,
                        message=f"'{old}' 已经写在规则 {other} 的 formerly 里（{first}）：一个旧编号的台账记录只能算作一条规则的 / "
                                f"'{old}' is already listed under formerly of rule {other} (at {first}): an old id's "
                                "ledger rows can count for one rule only",
                        fix=f"只在接替 {old} 的那一条规则上写 / keep it on the one rule that took over {old}'s work"))
                listed.setdefault(old, (rule.rule_id, loc))
    problems.extend(_retired_in_use(policyset, current, listed))
    return problems


def _retired_in_use(policyset: PolicySet, current: dict[str, Location], listed: dict[str, tuple[str, Location]]) -> list[Problem]:
    """``retired_rules:`` ids that are not retired: still a rule's id (``current``: id → where), or a
    former id of a rule (``listed``: id → the rule listing it, where): their ledger rows are that rule's."""
    problems: list[Problem] = []
    for rs in policyset.all_rulesets():
        for old, loc in zip(rs.retired, rs.retired_at):
            if old in current:
                problems.append(Problem(
                    code="retired-in-use", location=loc,
                    message=f"retired_rules 写的 '{old}' 仍是 {current[old]} 的规则编号 / "
                            f"retired_rules names '{old}', still a rule id at {current[old]}",
                    fix=f"规则还要用的，从 retired_rules 里去掉 {old}；确实停用的，删掉 {current[old]} 那条规则 / "
                        f"if the rule is still in use, take {old} out of retired_rules; if it is retired, delete the rule at "
                        f"{current[old]}"))
            elif old in listed:
                other, where = listed[old]
                problems.append(Problem(
                    code="retired-in-use", location=loc,
                    message=f"retired_rules 写的 '{old}' 也写在规则 {other} 的 formerly 里（{where}）：它的台账记录算那条规则的 / "
                            f"retired_rules names '{old}', which rule {other} lists under formerly (at {where}): its ledger "
                            "rows are that rule's",
                    fix=f"{other} 接替了它的，从 retired_rules 里去掉 {old}；确实停用的，从 {other} 的 formerly 里去掉 / "
                        f"if {other} took over its work, take {old} out of retired_rules; if it is retired, take it out of "
                        f"{other}'s formerly"))
    return problems


def _duplicate(rule_id: str, first: Location, here: Location) -> Problem:
    return Problem(code="duplicate-rule-id", message=f"规则编号 '{rule_id}' 已在 {first} 使用过",
                   location=here, fix="规则编号在所有策略文件中必须唯一，请改用一个新的编号")


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------


def _shown_path(path: Path, templates: Path) -> str:
    base = templates.parent
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else path.as_posix()


def _missing_template(rule: Rule, channel: str, template: str, path: Path, shown: str) -> Problem:
    """A message template file that is not there, with the file the author probably meant: the same
    name with another or a doubled extension (生日祝福.txt.txt: Explorer hid the .txt), another
    letter case, or a name one slip away."""
    zh = f"规则 {rule.rule_id} 在 {channel} 渠道发送模板 '{template}'，但 {shown} 不存在"
    en = f"rule {rule.rule_id} sends template '{template}' on channel {channel}, but {shown} does not exist"
    files = sorted(f.name for f in path.parent.iterdir() if f.is_file()) if path.parent.is_dir() else []
    renamed = [f for f in files if f.lower() in (path.name.lower(), template.lower()) or f.lower().startswith(template.lower() + ".")]
    stems = {f.removesuffix(".txt"): f for f in files if f.endswith(".txt")}
    near = did_you_mean(template, stems)
    if renamed:
        found = renamed[0]
        hidden = "" if found.lower() == path.name.lower() else "（Windows 资源管理器可能隐藏了扩展名：在“查看”里勾选“文件扩展名”）"
        hidden_en = "" if found.lower() == path.name.lower() else " (Windows Explorer may hide extensions: tick View → File name extensions)"
        return Problem("unknown-template", f"{zh}；有一个文件 {found}，是不是它？ / {en} (did you mean the file {found}?)",
                       rule.location, fix=f"把 {found} 改名为 {path.name}{hidden} / rename {found} to {path.name}{hidden_en}")
    if near:
        found = stems[near]
        return Problem("unknown-template", f"{zh}；是不是 {found}？ / {en} (did you mean {found}?)", rule.location,
                       fix=f"把模板名称改成 '{near}'，或把 {found} 改名为 {path.name} / write template: {near}, or rename {found} "
                           f"to {path.name}")
    return Problem("unknown-template", f"{zh} / {en}", rule.location,
                   fix=f"新建 {shown}，或改正模板名称 / create {shown}, or correct the template name")


def _line_of(path: Path, needle: str) -> int | None:
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if needle in line:
                return number
    except OSError:
        pass
    return None


class _TemplateChecker:
    """Checks the variables and filters templates use against what the rule's context provides."""

    def __init__(self, policyset: PolicySet, templates: Path):
        self.policyset = policyset
        self.templates = templates
        self.env = make_environment(templates)
        self.customer_fields = set(policyset.schema) | set(CONTACT_FIELDS)
        self.company_fields = set(policyset.organization.company)
        self.problems: list[Problem] = []
        self._file_checked: set[str] = set()
        self.computed_by = stage_feature_stages()  # feature → the stage module that computes it
        self._later_checked: set[tuple[str, str, str]] = set()

    def later_stage(self, used: set[str], stage: str, where: tuple[str, str], file_loc: Callable[[str], Location]) -> None:
        """A template of a rule in ``stage`` that reads a result a later stage computes: the run stops
        there (the value does not exist yet), so it is an error here, once per template and stage.
        ``where``: how to name the template (Chinese, English)."""
        for f in sorted(used):
            base, _, attr = f.partition(".")
            later = self.computed_by.get(attr) if base == "customer" else None
            if later is None or STAGES.index(later) <= STAGES.index(stage) or (where, attr, stage) in self._later_checked:
                continue
            self._later_checked.add((where, attr, stage))
            self.problems.append(Problem(
                code="reads-later-stage",
                message=f"{where[0]} 使用了 customer.{attr}，它由 {later} 阶段算出；{stage} 阶段的规则用它时还没有这个值，运行会停下 / "
                        f"{where[1]} uses customer.{attr}, which the {later} stage computes: a rule of the {stage} stage "
                        "does not have it yet, and the run would stop",
                location=file_loc(f), fix=f"把规则移到 {later} 阶段（kind: {later}）或更后，或不在这里使用 {attr} / "
                                          f"move the rule to the {later} stage (kind: {later}) or later, or do not use {attr} here"))

    def fields(self, env, name: str, location: Location, what: tuple[str, str] | None = None) -> tuple[set[str], set[str]] | None:
        """(fields used, filters used) of a template, or None after reporting a syntax error.
        ``what``: how to name a text that is no template file (Chinese, English)."""
        try:
            source = template_source(env, name)
        except PolicyError as exc:  # not UTF-8: named as validate names template files, at its line
            self.problems.extend(replace(p, location=replace(location, line=p.location.line or location.line))
                                 for p in exc.problems)
            return None
        try:
            tree = env.parse(source)
            filters = {n.name for n in tree.find_all(nodes.Filter)}
            unknown = filters - set(env.filters)
            if unknown:
                # Jinja will not even compile a template with an unknown filter; to still find its
                # variables, look at it with stand-ins for those filters (they are reported anyway).
                if env is self.env:  # leave the shared environment as it is
                    env = make_environment(self.templates)
                env.filters.update({f: (lambda value, *args, **kwargs: value) for f in unknown})
            fields = template_fields(env, name)
        except PolicyError as exc:
            for p in exc.problems:
                self.problems.append(Problem(p.code, p.message, p.location if p.location.file else location, p.severity, p.fix))
            return None
        except TemplateSyntaxError as exc:  # a slip such as {{ x }, or an unknown test (``is foo``)
            if what is None:  # a template file: at its own line
                self.problems.append(template_syntax_problem(exc, replace(location, line=exc.lineno), location.file))
            else:  # a task's text: at its rule in the policy file
                self.problems.append(template_syntax_problem(exc, location, location.file, what))
            return None
        return fields, filters

    def field_problems(self, used: set[str], filters: set[str], where: tuple[str, str], file_loc: Callable[[str], Location],
                       params: dict | None, rule: Rule) -> None:
        """``where``: how to name the template in messages (Chinese, English). ``params``: the rule's
        params (None: a task text)."""
        zh, en = where
        variables = ", ".join(CONTEXT_VARIABLES)
        for f in sorted(used):
            base, _, attr = f.partition(".")
            if base not in CONTEXT_VARIABLES:
                guess = _guess(base, CONTEXT_VARIABLES)
                self.problems.append(Problem(
                    code="template-variable",
                    message=f"{zh} 使用了变量 '{base}'，但模板只能使用 {variables}{guess[0]} / "
                            f"{en} uses the variable '{base}', but templates can use only {variables}{guess[1]}",
                    location=file_loc(base), fix="客户的字段写成 customer.<字段>，规则自己的值写成 params.<名称> / "
                                                 "write a customer's field as customer.<field>, the rule's own values as params.<name>"))
            elif base == "customer" and attr and attr not in self.customer_fields:
                guess = _guess(attr, self.customer_fields)
                self.problems.append(Problem(
                    code="template-variable",
                    message=f"{zh} 使用了 customer.{attr}，但客户没有 '{attr}' 这个字段或分类{guess[0]} / "
                            f"{en} uses customer.{attr}, but customers have no field or tag '{attr}'{guess[1]}",
                    location=file_loc(f), fix="字段名见 docs/features.md；分类结果用规则 set: 的名称 / "
                                              "the fields are listed in docs/features.md; a tag is named as a rule's set: names it"))
            elif base == "company" and attr and attr not in self.company_fields:
                guess = _guess(attr, self.company_fields)
                known = ", ".join(sorted(self.company_fields))
                self.problems.append(Problem(
                    code="template-variable",
                    message=f"{zh} 使用了 company.{attr}，但 organization.yaml 的 company: 中没有 '{attr}'{guess[0]} / "
                            f"{en} uses company.{attr}, but company: in organization.yaml has no '{attr}'{guess[1]}",
                    location=file_loc(f), fix=f"在 organization.yaml 的 company: 下加上 {attr}，或改用已有的：{known} / "
                                              f"add {attr} under company: in organization.yaml, or use one it has: {known}"))
            elif base == "params" and attr and params is None:
                self.problems.append(Problem(
                    code="template-variable",
                    message=f"规则 {rule.rule_id} 的任务文字使用了 params.{attr}，但任务没有 params / "
                            f"the task text of rule {rule.rule_id} uses params.{attr}, but tasks have no params",
                    location=rule.location, fix="任务标题和话术只能使用 customer、company 和 as_of / "
                                                "a task's title and script can use only customer, company and as_of"))
            elif base == "params" and attr and attr not in params:
                guess = _guess(attr, params)
                self.problems.append(Problem(
                    code="template-param-missing",
                    message=f"规则 {rule.rule_id} 使用的 {zh} 需要 params.{attr}，但规则的 params 中没有 '{attr}'{guess[0]} / "
                            f"{en}, used by rule {rule.rule_id}, needs params.{attr}, but the rule's params have no '{attr}'{guess[1]}",
                    location=rule.location,
                    fix=f"在这条规则的 message 下加上 params: {{{attr}: ...}}，或在模板中写 params.get('{attr}') 使它可选 / "
                        f"add params: {{{attr}: ...}} under this rule's message, or write params.get('{attr}') in the template "
                        "to make it optional"))
        for name in sorted(filters - set(self.env.filters)):
            guess = _guess(name, self.env.filters)
            self.problems.append(Problem(
                code="template-filter", message=f"{zh} 使用了不存在的过滤器 '{name}'{guess[0]} / "
                                                f"{en} uses the filter '{name}', which does not exist{guess[1]}",
                location=file_loc(name), fix="可用的过滤器见 templates/README.md，例如 date、money、mask_phone / "
                                             "the filters are listed in templates/README.md, e.g. date, money, mask_phone"))

    def message(self, rule: Rule, spec: MessageSpec, stage: str) -> None:
        org = self.policyset.organization
        channels = list(org.channels) if spec.channel == "preferred" else [spec.channel]
        for channel in channels:
            if channel not in org.channels:
                continue  # the loader reports unknown channels
            name = f"messages/{channel}/{spec.template}.txt"
            path = self.templates / name
            shown = _shown_path(path, self.templates)
            if not path.is_file():
                self.problems.append(_missing_template(rule, channel, spec.template, path, shown))
                continue
            result = self.fields(self.env, name, Location(file=shown))
            if result is None:
                continue
            used, filters = result

            def file_loc(needle: str, path: Path = path, shown: str = shown) -> Location:
                return Location(file=shown, line=_line_of(path, needle))

            self.later_stage(used, stage, (f"模板 {shown}", f"template {shown}"), file_loc)
            # Problems inside the template file are reported once; params problems once per rule.
            first_time = name not in self._file_checked
            self._file_checked.add(name)
            if not first_time:
                used = {f for f in used if f.startswith("params.")}
                filters = set()
            self.field_problems(used, filters, (f"模板 {shown}", f"template {shown}"), file_loc, spec.params, rule)

    def task(self, rule: Rule, spec: TaskSpec, stage: str) -> None:
        texts = {"title": spec.title, "script": spec.script}
        for label, text in texts.items():
            if not text or "{" not in text:
                continue
            env = make_environment(self.templates)
            env.loader = DictLoader({"inline": text})  # the same parser and filters, text from the policy
            where = (f"规则 {rule.rule_id} 的任务{'标题' if label == 'title' else '话术'}", f"the {label} of rule {rule.rule_id}'s task")
            result = self.fields(env, "inline", rule.location, where)
            if result is None:
                continue
            used, filters = result
            self.later_stage(used, stage, where, lambda _needle: rule.location)
            self.field_problems(used, filters, where, lambda _needle: rule.location, None, rule)


def check_templates(policyset: PolicySet, templates: Path) -> list[Problem]:
    sends = any(isinstance(out, MessageSpec) for rs in policyset.all_rulesets() for rule in rs.rules for out in rule.outputs)
    if sends and not (Path(templates) / "messages").is_dir():
        # One problem, not one per rule and channel: the folder itself is wrong (e.g. a policy copy
        # elsewhere, whose default templates/ beside it does not exist).
        return [Problem(code="templates-missing", message=f"模板文件夹 {templates} 里没有 messages/（消息模板）"
                                                          f" / the templates folder {templates} has no messages/ folder",
                        location=Location(file=str(templates)),
                        fix="用 --templates 指定模板文件夹（默认是策略文件夹旁边的 templates/）"
                            " / pass --templates DIR (by default templates/ beside the policies folder)")]
    checker = _TemplateChecker(policyset, templates)
    for rs in policyset.all_rulesets():
        for rule in rs.rules:
            for out in rule.outputs:
                if isinstance(out, MessageSpec):
                    checker.message(rule, out, rs.stage)
                elif isinstance(out, TaskSpec):
                    checker.task(rule, out, rs.stage)
    return checker.problems


# --------------------------------------------------------------------------------------------------
# Rule logic: unreachable rules, overlaps, gaps
# --------------------------------------------------------------------------------------------------


@dataclass
class Grid:
    """Example customers for one policy: each variable with its representative values, and per rule
    a test ``point -> bool``. ``labels`` say how to show a variable (a column name or a feature)."""

    variables: list[str]
    values: dict[str, list[Any]]
    tests: list[Callable[[dict[str, Any]], bool]]
    labels: dict[str, str] = field(default_factory=dict)

    def size(self) -> int:
        n = 1
        for v in self.variables:
            n *= len(self.values[v])
        return n

    def points(self):
        for combo in itertools.product(*(self.values[v] for v in self.variables)):
            yield dict(zip(self.variables, combo))

    def describe(self, point: dict[str, Any]) -> str:
        parts = []
        for v in self.variables:
            value, label = point[v], self.labels.get(v, v)
            if value is None:
                parts.append(f"{label} 为空")
            elif value == OTHER_TEXT:
                parts.append(f"{label} 为其他值")
            else:
                parts.append(f"{label} = {value_text(value)}")
        return "、".join(parts) if parts else "任意客户"


class _Knowledge:
    """What is known about the values of names: which can be empty, and the values a tag can take."""

    def __init__(self, policyset: PolicySet):
        self.schema = policyset.schema
        # A built-in feature can be empty if it is empty for a customer with no data at all.
        probe = derive_features(Customer("", SourceRow("", "", 0)), [], [], date(2026, 1, 1), policyset.features)
        self.never_empty = {name for name, value in probe.items() if value is not None}
        self.domains: dict[str, list[Any]] = {}
        always_set: set[str] = set()
        for rs in policyset.all_rulesets():
            sets_all: set[str] | None = None
            for rule in rs.rules:
                names = set()
                for out in rule.outputs:
                    if isinstance(out, SetTag):
                        if out.value not in self.domains.setdefault(out.name, []):
                            self.domains[out.name].append(out.value)
                        names.add(out.name)
                    elif isinstance(out, AddScore):
                        self.never_empty.add(out.name)  # scores start at 0
                sets_all = names if sets_all is None else sets_all & names
                # A catch-all rule (when: true) in a first/priority list always sets its tags.
                if rs.hit_policy != "collect" and isinstance(rule.condition, expr.Const) and rule.condition.value is True:
                    always_set |= names
            if rs.complete and sets_all:
                always_set |= sets_all  # a table that claims to be complete (checked separately)
        self.never_empty |= always_set
        self.tags = set(self.domains)
        # Policies that do not write hit_policy (so they collect): where each one is, as RuleSet.location.
        self.default_hit_policy: set[Location] = set()
        for docs in policyset.documents.values():
            for _path, doc in docs:
                blocks = doc.get("policies") if isinstance(doc, YMap) and "policies" in doc else [doc]
                for block in blocks if isinstance(blocks, (list, YList)) else []:
                    if isinstance(block, YMap) and ("rules" in block or "table" in block) and "hit_policy" not in block:
                        self.default_hit_policy.add(block.loc)

    def type_of(self, name: str) -> expr.Type | None:
        t = self.schema.get(name)
        return t if isinstance(t, expr.Type) else None

    def values(self, name: str | None, typ: expr.Type | None, constants: list[Any], nullable: bool) -> list[Any] | None:
        """Representative values, or None if this kind of value is not analysed."""
        if name is not None and name in self.tags and all(not isinstance(v, float) for v in self.domains[name]):
            values = list(self.domains[name])
        elif typ == expr.BOOL or (typ is None and constants and all(isinstance(c, bool) for c in constants)):
            values = [True, False]
        elif typ == expr.NUMBER or (typ is None and constants and all(_is_number(c) for c in constants)):
            values = _number_points(sorted({c for c in constants if _is_number(c)}))
        elif typ == expr.STRING or (typ is None and constants and all(isinstance(c, str) for c in constants)):
            values = [c for c in dict.fromkeys(constants) if isinstance(c, str)] + [OTHER_TEXT]
        elif typ in (expr.DATE, expr.DATETIME) and not constants:
            values = [date(2000, 1, 1) if typ == expr.DATE else datetime(2000, 1, 1)]  # only tested for empty
        else:
            return None
        if nullable and None not in values:
            values.append(None)
        return values


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number_points(bounds: list[float]) -> list[float]:
    """One value per range the bounds cut the number line into: each bound, one just below the
    lowest, one just above each (integers where they fit, so examples read naturally)."""
    if not bounds:
        return [0]
    points = [bounds[0] - 1]
    for i, b in enumerate(bounds):
        points.append(b)
        nxt = bounds[i + 1] if i + 1 < len(bounds) else None
        if nxt is None or nxt - b > 1:
            points.append(b + 1)
        else:
            points.append((b + nxt) / 2)
    return [int(p) if float(p).is_integer() else p for p in points]


_ORDERING = ("<", "<=", ">", ">=")


def _orders_text(node: expr.Node) -> bool:
    """``name > 'abc'``: text ordered against text. The grid only knows "equal to one of the named
    texts" or "another text", which cannot stand for ranges of text, so such policies are not analysed."""
    return any(isinstance(n, expr.Binary) and n.op in _ORDERING
               and any(isinstance(c, expr.Const) and isinstance(c.value, str) for c in (n.left, n.right))
               for n in node.walk())


def _constants(node: expr.Node) -> list[Any]:
    return [n.value for n in node.walk() if isinstance(n, expr.Const) and n.value is not None]


def _predicate(node: expr.Node) -> Callable[[dict], bool]:
    compiled = expr.compile_expr(node)

    def test(point: dict) -> bool:
        try:
            return compiled(point) is True
        except Exception:  # e.g. a type the example value does not fit: treat as "does not match"
            return False

    return test


def table_grid(rs: RuleSet, knowledge: _Knowledge) -> Grid | None:
    """The grid of a decision table: one variable per distinct column subject."""
    sheet = getattr(rs, "table_sheet", None)
    if sheet is None or len(sheet.rows) != len(rs.rules):
        return None
    columns = [(i, sheet.names[i]) for i, kind in enumerate(sheet.kinds) if kind == "input" and sheet.names[i]]
    subjects = list(dict.fromkeys(name for _, name in columns))
    var = {subject: f"__v{n}" for n, subject in enumerate(subjects)}  # placeholders stand for the subject
    constants: dict[str, list[Any]] = {s: [] for s in subjects}
    row_tests: list[list[tuple[str, Callable]]] = []
    for _row_number, values in sheet.rows:
        tests = []
        for col, subject in columns:
            text = decision_table.cell_condition(var[subject], values[col])
            if text is None:
                continue
            try:
                node = expr.parse(text)
            except PolicyError:
                return None  # the loader reported it
            if _orders_text(node):
                return None
            constants[subject].extend(_constants(node))
            tests.append((var[subject], _predicate(node)))
        row_tests.append(tests)
    grid = Grid([], {}, [], {})
    for subject in subjects:
        is_name = subject in knowledge.schema
        typ = knowledge.type_of(subject) if is_name else None
        nullable = not (is_name and subject in knowledge.never_empty)
        values = knowledge.values(subject if is_name else None, typ, constants[subject], nullable)
        if values is None:
            return None
        grid.variables.append(var[subject])
        grid.values[var[subject]] = values
        grid.labels[var[subject]] = subject
    for tests in row_tests:
        grid.tests.append(lambda point, tests=tests: all(t(point) for _, t in tests))
    return grid


_SIMPLE_TYPES = (expr.NUMBER, expr.STRING, expr.BOOL)


def _analysable(node: expr.Node, knowledge: _Knowledge) -> bool:
    """True if every name is compared only with constants (or used as a yes/no value)."""
    def operand_ok(n: expr.Node) -> bool:
        return isinstance(n, expr.Const) or (isinstance(n, expr.Name) and knowledge.type_of(n.name) in _SIMPLE_TYPES)

    if isinstance(node, expr.Const):
        return True
    if isinstance(node, expr.Name):
        return knowledge.type_of(node.name) == expr.BOOL
    if isinstance(node, expr.BoolOp):
        return all(_analysable(o, knowledge) for o in node.operands)
    if isinstance(node, expr.Unary) and node.op == "not":
        return _analysable(node.operand, knowledge)
    if isinstance(node, expr.Binary) and node.op in expr.ast.COMPARISON_OPS:
        names = [n for n in (node.left, node.right) if isinstance(n, expr.Name)]
        return len(names) == 1 and operand_ok(node.left) and operand_ok(node.right)
    if isinstance(node, expr.In):
        return (isinstance(node.value, expr.Name) and operand_ok(node.value) and isinstance(node.options, tuple)
                and all(isinstance(o, expr.Const) for o in node.options))
    if isinstance(node, expr.Between):
        return isinstance(node.value, expr.Name) and operand_ok(node.value) and all(
            isinstance(b, expr.Const) for b in (node.low, node.high))
    if isinstance(node, expr.IsNull):
        return isinstance(node.value, expr.Name) and knowledge.type_of(node.value.name) is not None \
            and not knowledge.type_of(node.value.name).is_list
    return False


def rules_grid(rs: RuleSet, knowledge: _Knowledge) -> Grid | None:
    """The grid of a YAML rule list whose conditions are all simple comparisons."""
    if any(r.condition is None or not _analysable(r.condition, knowledge) or _orders_text(r.condition) for r in rs.rules):
        return None
    names = sorted({n for r in rs.rules for n in expr.free_names(r.condition)})
    constants: dict[str, list[Any]] = {n: [] for n in names}
    for rule in rs.rules:
        for node in rule.condition.walk():
            # Constants compared with a name belong to that name.
            if isinstance(node, (expr.Binary, expr.In, expr.Between)):
                target = next((c.name for c in node.children() if isinstance(c, expr.Name)), None)
                if target:
                    constants[target].extend(_constants(node))
    grid = Grid([], {}, [], {})
    for name in names:
        values = knowledge.values(name, knowledge.type_of(name), constants[name], name not in knowledge.never_empty)
        if values is None:
            return None
        grid.variables.append(name)
        grid.values[name] = values
    grid.tests = [_predicate(r.condition) for r in rs.rules]
    return grid


def _rule_names(rs: RuleSet, indexes) -> str:
    return "、".join(rs.rules[i].rule_id for i in sorted(indexes))


def _wins_over(rs: RuleSet, i: int, j: int) -> bool:
    """Under the hit policy, does rule i take precedence over rule j when both match?"""
    if rs.hit_policy == "priority":
        return (rs.rules[i].priority, -i) > (rs.rules[j].priority, -j)
    return i < j


def _gap_location(rs: RuleSet) -> Location:
    sheet = getattr(rs, "table_sheet", None)
    if sheet is not None:
        last = sheet.rows[-1][0] if sheet.rows else 2
        return Location(file=sheet.workbook_name, sheet=sheet.sheet, cell=f"A{last + 1}")
    return rs.location


def _same_condition_checks(rs: RuleSet, words: _Words | None = None) -> list[Problem]:
    """For rule lists that are not analysed: an earlier catch-all or the very same condition."""
    words = words or _Words.of(rs)
    problems = []
    if rs.hit_policy not in ("first", "priority"):
        return problems
    for j, rule in enumerate(rs.rules):
        if rule.condition is None:
            continue
        for i, earlier in enumerate(rs.rules):
            if i == j or earlier.condition is None or not _wins_over(rs, i, j):
                continue
            catch_all = isinstance(earlier.condition, expr.Const) and earlier.condition.value is True
            if catch_all or expr.to_source(earlier.condition) == expr.to_source(rule.condition):
                why = f"条件为 true（对所有{words.subject}成立）" if catch_all else "条件完全相同"
                problems.append(Problem(
                    code="unreachable-rule",
                    message=f"{words.noun} {rule.rule_id} 永远不会生效：{words.order}，{earlier.rule_id} 排在它前面且{why}",
                    location=rule.location, severity=WARNING, fix=_unreachable_fix(rs, rule, [i])))
                break
    return problems


def _unreachable_fix(rs: RuleSet, rule: Rule, winners) -> str:
    if rs.hit_policy == "priority":
        return f"提高 {rule.rule_id} 的优先级，或删除这条规则"
    return f"把 {rule.rule_id} 移到 {rs.rules[min(winners)].rule_id} 之前，或删除/修改这条规则"


@dataclass(frozen=True)
class _Words:
    """How messages name a rule, what it applies to, and its hit policy (SLA targets say it their way)."""

    noun: str
    subject: str
    order: str

    @staticmethod
    def of(rs: RuleSet) -> _Words:
        return _Words("规则", "客户", f"命中策略为 {rs.hit_policy}")


def check_ruleset_logic(rs: RuleSet, knowledge: _Knowledge, explained: set[tuple[str, str]] = frozenset(),
                        words: _Words | None = None) -> list[Problem]:
    """``explained``: (policy id, rule id) of rules already reported for comparing with an unknown value."""
    words = words or _Words.of(rs)
    is_table = getattr(rs, "table_sheet", None) is not None
    grid = table_grid(rs, knowledge) if is_table else rules_grid(rs, knowledge)
    what = "表" if is_table else "规则列表"
    if grid is None or not rs.rules:
        problems = _same_condition_checks(rs, words) + _collect_conflicts(rs, knowledge, None, {})
        if rs.complete and not is_table:
            problems.append(Problem(code="gap-check-skipped", severity=WARNING, location=rs.location,
                                    message=f"{rs.policy_id} 声明 complete: true，但它的条件含计算或函数，无法检查是否覆盖所有情况"))
        return problems
    if grid.size() > MAX_GRID:
        return _same_condition_checks(rs, words) + _collect_conflicts(rs, knowledge, None, {}) + [Problem(
            code="logic-check-skipped", severity=WARNING, location=rs.location,
            message=f"{rs.policy_id} 的条件组合太多（{grid.size()} 种），没有检查重叠、遗漏和无法生效的规则")]
    problems: list[Problem] = []
    n = len(rs.rules)
    matches = [[] for _ in range(n)]  # per rule: the example points it matches (as indexes)
    points: list[dict] = []
    gap_example = None
    overlaps: dict[tuple[int, int], dict] = {}
    for point in grid.points():
        hits = [i for i in range(n) if grid.tests[i](point)]
        k = len(points)
        points.append(point)
        for i in hits:
            matches[i].append(k)
        if not hits and gap_example is None:
            gap_example = point
        if rs.hit_policy in ("unique", "any", "collect") and len(hits) > 1:
            for a, b in itertools.combinations(hits, 2):
                overlaps.setdefault((a, b), point)
    match_sets = [set(m) for m in matches]
    for j, rule in enumerate(rs.rules):
        if not matches[j]:
            if (rs.policy_id, rule.rule_id) in explained:
                continue
            problems.append(Problem(
                code="never-matches", severity=WARNING, location=rule.location,
                message=f"{words.noun} {rule.rule_id} 的条件对任何{words.subject}都不成立，永远不会生效",
                fix="检查条件是否自相矛盾（例如 >= 100 又 < 50），或取值是否写错"))
            continue
        if rs.hit_policy not in ("first", "priority"):
            continue
        winners: set[int] = set()
        shadowed = True
        for k in matches[j]:
            better = [i for i in range(n) if i != j and _wins_over(rs, i, j) and k in match_sets[i]]
            if not better:
                shadowed = False
                break
            winners.add(min(better, key=lambda i: (-rs.rules[i].priority, i)) if rs.hit_policy == "priority" else min(better))
        if shadowed:
            problems.append(Problem(
                code="unreachable-rule", severity=WARNING, location=rule.location,
                message=f"{words.noun} {rule.rule_id} 永远不会生效：{words.order}，满足它的{words.subject}都会先满足 {_rule_names(rs, winners)}"
                        + ("（其中之一）" if len(winners) > 1 else ""),
                fix=_unreachable_fix(rs, rule, winners)))
    problems.extend(_collect_conflicts(rs, knowledge, grid, overlaps))
    for (a, b), point in sorted(overlaps.items()):
        ra, rb = rs.rules[a], rs.rules[b]
        if rs.hit_policy == "collect":
            continue
        if rs.hit_policy == "any" and repr(ra.outputs) == repr(rb.outputs):
            continue
        if rs.hit_policy == "unique":
            problems.append(Problem(
                code="table-overlap", location=rb.location,
                message=f"唯一命中（unique）的{what}中 {ra.rule_id} 和 {rb.rule_id} 可能同时满足，例如：{grid.describe(point)}",
                fix=f"收紧 {ra.rule_id} 或 {rb.rule_id} 的条件使它们互不重叠，或把 hit_policy 改为 first"))
        else:
            problems.append(Problem(
                code="table-overlap", severity=WARNING, location=rb.location,
                message=f"命中策略 any 要求同时满足的行结果相同，但 {ra.rule_id} 和 {rb.rule_id} 结果不同，且可能同时满足，例如：{grid.describe(point)}",
                fix="让两行的结果一致，或收紧条件"))
    if rs.complete and gap_example is not None:
        problems.append(Problem(
            code="table-gap", location=_gap_location(rs),
            message=f"{rs.policy_id} 声明覆盖所有情况（complete: true），但没有任何{'一行' if is_table else '规则'}适用于：{grid.describe(gap_example)}",
            fix="为这种情况加一行（规则），或在最后加一行所有条件都为 - 的兜底行"))
    return problems


def check_rule_logic(policyset: PolicySet, explained: set[tuple[str, str]] = frozenset()) -> list[Problem]:
    knowledge = _Knowledge(policyset)
    problems: list[Problem] = []
    for rs in policyset.all_rulesets():
        problems.extend(check_ruleset_logic(rs, knowledge, explained))
    problems.extend(check_sla_target_logic(policyset, knowledge))
    return problems


def check_sla_target_logic(policyset: PolicySet, knowledge: _Knowledge) -> list[Problem]:
    """SLA targets are a first-hit rule list too (engine.stages.sla): a target every interaction of
    which an earlier target already takes (``type == '咨询' and value_tier == '高'`` after
    ``type == '咨询'``) never applies. Checked like rule lists, with the interaction's fields as names."""
    from engine.stages.sla import WHEN_FIELDS

    settings = [(path, doc) for path, doc in policyset.documents.get("sla", [])
                if isinstance(doc, YMap) and not any(k in doc for k in ("rules", "table", "policies"))]
    blocks = settings[0][1].get("targets") if settings else None
    if not isinstance(blocks, YList):
        return []
    rules = []
    for block in blocks:
        if not isinstance(block, YMap) or "id" not in block:
            return []  # the SLA stage reports it
        when = condition_text(block.get("when", "true"))
        try:
            node = expr.parse(when, block.value_loc("when"))
        except PolicyError:
            return []  # the SLA stage reports it
        rules.append(Rule(str(block.get("id")), str(block.get("description", "")), node, when, [], block.key_loc("id")))
    path, doc = settings[0]
    rs = RuleSet(str(doc.get("id", "sla")), "sla", "", "first", rules, doc.value_loc("targets"), policyset.relpath(path))
    local = copy.copy(knowledge)
    local.schema = {**knowledge.schema, **WHEN_FIELDS}
    return check_ruleset_logic(rs, local, words=_Words("SLA 时限", "互动", "时限从上到下第一条满足 when 的生效（first）"))


# --------------------------------------------------------------------------------------------------
# One tag set by two policies
# --------------------------------------------------------------------------------------------------


def check_tags_set_twice(policyset: PolicySet) -> list[Problem]:
    """``tag-set-twice``: two policies set the same tag. Policies run one after the other (stage
    order, then a policy reading a tag after the one setting it, then the order of the file paths),
    and the later one's value stays: for two policies that do not read each other that is decided by
    the file names alone. A policy whose own conditions read the tag it sets overrides on purpose
    (it always runs after the others that set it), so it is left alone. Whether both can fire for one
    customer is not analysed: the warning says "when both apply"."""
    problems: list[Problem] = []
    writers: dict[str, list[tuple[RuleSet, list[tuple[Rule, SetTag]]]]] = {}  # tag → policies in run order
    for rs in policyset.all_rulesets():
        sets: dict[str, list[tuple[Rule, SetTag]]] = {}
        for rule in rs.rules:
            for out in rule.outputs:
                if isinstance(out, SetTag):
                    sets.setdefault(out.name, []).append((rule, out))
        for tag, found in sets.items():
            writers.setdefault(tag, []).append((rs, found))
    for tag, policies in writers.items():
        for (a, a_sets), (b, b_sets) in itertools.combinations(policies, 2):
            if any(tag in expr.free_names(rule.condition) for rule in b.rules if rule.condition is not None):
                continue  # b reads the tag: an intended override, run after a whatever the file names
            values = {repr(out.value) for _, out in a_sets + b_sets}
            if len(values) == 1:
                continue  # both set the same value: whichever wins, the result is the same
            problems.append(Problem(
                code="tag-set-twice", severity=WARNING, location=b_sets[0][1].location or b_sets[0][0].location,
                message=f"{tag} 由两个策略设置：{_setters(a, a_sets)}和 {_setters(b, b_sets)}；两者对同一位客户都生效时，"
                        f"后运行的 {b.policy_id} 的值留下，{a.policy_id} 设置的值被覆盖（{_run_order(a, b)}）",
                fix=f"只让一个策略设置 {tag}：把 {b_sets[0][0].rule_id} 并入 {a.policy_id}，或给其中一个结果换个名字；"
                    f"若 {b.policy_id} 是有意覆盖，在它的条件中读取 {tag}（如 {tag} != {value_text(b_sets[0][1].value)} and …），"
                    f"它就总在 {a.policy_id} 之后运行"))
    return problems


def _setters(rs: RuleSet, sets: list[tuple[Rule, SetTag]]) -> str:
    """``vip 的 VIP-1（classification/vip.yaml:6:12）``, with how many more rules of the policy set it."""
    rule, out = sets[0]
    more = f" 等 {len(sets)} 条规则" if len(sets) > 1 else ""
    return f"{rs.policy_id} 的 {rule.rule_id}{more}（{out.location or rule.location}）"


def _run_order(a: RuleSet, b: RuleSet) -> str:
    """Why ``a`` runs before ``b``."""
    if a.stage != b.stage:
        return f"{a.stage} 阶段在 {b.stage} 阶段之前运行"
    read = {n for rule in b.rules if rule.condition is not None for n in expr.free_names(rule.condition)}
    if read & set(a.outputs_declared):
        return f"{b.policy_id} 读取 {a.policy_id} 的结果，所以在它之后运行"
    if a.source_file == b.source_file:
        return f"在 {a.source_file} 中 {a.policy_id} 写在 {b.policy_id} 前面"
    return f"同一阶段中互不读取结果的策略按文件名顺序运行：{a.source_file} 在 {b.source_file} 之前"


# Under hit policy collect every matching rule fires, in order: two that set one tag to different
# values leave the later one's value (the earlier one is silently lost).


def _tag_conflict(earlier: Rule, later: Rule) -> tuple[str, Any, Any] | None:
    """The first tag both rules set, to different values: (tag, earlier value, later value)."""
    first = {o.name: o.value for o in earlier.outputs if isinstance(o, SetTag)}
    for out in later.outputs:
        if isinstance(out, SetTag) and out.name in first and repr(first[out.name]) != repr(out.value):
            return out.name, first[out.name], out.value
    return None


def _abstracted(node: expr.Node, knowledge: _Knowledge, atoms: dict[str, str]) -> expr.Node:
    """``node`` with each part the grid cannot analyse (arithmetic, functions, ...) replaced by a yes/no
    placeholder: the same text gets the same placeholder. Anything that can hold for a customer
    can hold for some yes/no choice, so "these two can never both hold" stays true of the original."""
    if _analysable(node, knowledge) and not _orders_text(node):
        return node
    if isinstance(node, expr.BoolOp):
        return expr.BoolOp(node.op, tuple(_abstracted(o, knowledge, atoms) for o in node.operands))
    if isinstance(node, expr.Unary) and node.op == "not":
        return expr.Unary("not", _abstracted(node.operand, knowledge, atoms))
    return expr.Name(atoms.setdefault(expr.to_source(node), f"__c{len(atoms)}"))


def _pair_example(rs: RuleSet, a: int, b: int, knowledge: _Knowledge) -> str | None:
    """A customer both rules a and b match, described; None if there is none; "" if it cannot be told
    (then the two are taken to overlap)."""
    atoms: dict[str, str] = {}
    if rs.rules[a].condition is None or rs.rules[b].condition is None:
        return ""
    rules = [replace(rs.rules[i], condition=_abstracted(rs.rules[i].condition, knowledge, atoms)) for i in (a, b)]
    placeholders = set(atoms.values())
    local = copy.copy(knowledge)
    local.schema = {**knowledge.schema, **{name: expr.BOOL for name in placeholders}}
    local.never_empty = knowledge.never_empty | placeholders
    grid = rules_grid(replace(rs, rules=rules), local)
    if grid is None or grid.size() > MAX_GRID:
        return ""
    grid.labels.update({name: f"（{text}）" for text, name in atoms.items()})
    for point in grid.points():
        if grid.tests[0](point) and grid.tests[1](point):
            return grid.describe(point)
    return None


def _collect_conflicts(rs: RuleSet, knowledge: _Knowledge, grid: Grid | None, overlaps: dict) -> list[Problem]:
    """``collect-conflict``: two rules (rows) of a collect policy that can both match one customer set
    the same tag to different values. ``grid``/``overlaps``: the policy's own grid and the first example
    of each pair matching together, when the grid could be built (exact); otherwise each pair is
    checked on its own."""
    if rs.hit_policy != "collect":
        return []
    is_table = getattr(rs, "table_sheet", None) is not None
    what = "行" if is_table else "规则"
    problems: list[Problem] = []
    for a, b in itertools.combinations(range(len(rs.rules)), 2):
        ra, rb = rs.rules[a], rs.rules[b]
        conflict = _tag_conflict(ra, rb)
        if conflict is None:
            continue
        if grid is not None:
            point = overlaps.get((a, b))
            example = None if point is None else grid.describe(point)
        else:
            example = _pair_example(rs, a, b, knowledge)
        if example is None:
            continue  # they never match the same customer
        tag, first, second = conflict
        default = "（没有写 hit_policy 时的默认值）" if rs.location in knowledge.default_hit_policy else ""
        problems.append(Problem(
            code="collect-conflict", severity=WARNING, location=rb.location,
            message=f"命中策略为 collect{default}，满足条件的{what}都会生效：{ra.rule_id} 和 {rb.rule_id} 可能同时满足，"
                    f"却把 {tag} 设为不同的值（{value_text(first)} 和 {value_text(second)}），后面的 {rb.rule_id} 会覆盖 {ra.rule_id}"
                    + (f"，例如：{example}" if example else ""),
            fix=f"改用 hit_policy: first（从上到下第一条满足的{what}生效），或修改条件使 {ra.rule_id} 和 {rb.rule_id} 互斥"))
    return problems


# --------------------------------------------------------------------------------------------------
# Values: texts compared with (or set on) names whose possible values are known
# --------------------------------------------------------------------------------------------------

# Features read straight from an enum column of the customer export: (columns.yaml table, field).
ENUM_FEATURES: dict[str, tuple[str, str]] = {
    "gender": ("customers", "gender"),
    "recorded_lifecycle_stage": ("customers", "lifecycle_stage"),
    "recorded_sales_stage": ("customers", "sales_stage"),
    "recorded_need_type": ("customers", "need_type"),
    "preferred_channel": ("customers", "preferred_channel"),
}
# Interaction fields an SLA target's ``when`` may test that are enum columns (category, staff are free text).
SLA_ENUM_FIELDS: dict[str, tuple[str, str]] = {
    "type": ("interactions", "type"),
    "channel": ("interactions", "channel"),
    "status": ("interactions", "status"),
}
# Settings that list values of an enum column: (kind of settings file, keys down to the list, (table, field)).
SETTINGS_VALUE_LISTS: tuple[tuple[str, tuple[str, ...], tuple[str, str]], ...] = (
    ("sla", ("track_types",), ("interactions", "type")),
    ("sla", ("clock", "closed_statuses"), ("interactions", "status")),
    ("sla", ("clock", "paused_statuses"), ("interactions", "status")),
    ("care", ("post_purchase", "followup_types"), ("interactions", "type")),
    ("care", ("survey", "complaint_types"), ("interactions", "type")),
    ("features", ("orders_not_counted",), ("orders", "status")),
)
FESTIVAL_FEATURES = ("festivals_due", "festival_name")  # names of festivals declared in care.yaml
SETTINGS_WHO = {"sla": "SLA 时限", "churn": "流失信号", "care": "关怀设置"}
ENUM_FIX = ("改成 columns.yaml 中的取值（导出里的其他写法读入时会换成它）；确实有新的取值时，"
            "先把它加到 columns.yaml 中这个字段的 values: 下")


@dataclass
class _Vocabulary:
    """The values a name can have. ``closed``: no other value is possible (tags, festival names);
    enum columns keep a spelling columns.yaml does not list as written, so for them it is a likely typo."""

    values: list[str]
    source: str  # where the values come from, for the message
    fix: str
    closed: bool
    aliases: dict[str, str] = field(default_factory=dict)  # value_key(other spelling) → canonical value

    def listing(self) -> str:
        return "、".join(value_text(v) for v in self.values)

    def hint(self, word: str) -> str:
        from engine.coerce import value_key

        canonical = self.aliases.get(value_key(word))
        if canonical is not None and canonical in self.values and canonical != word:
            return f"；是不是 {value_text(canonical)}？（columns.yaml 把 {value_text(word)} 列为它的另一种写法）"
        guess = close_value(word, self.values)
        return f"；是不是 {value_text(guess)}？" if guess else ""


def close_value(word: str, choices) -> str | None:
    """The known value ``word`` was probably meant to be: a did-you-mean that also knows short
    Chinese words (高价值 → 高, 投述 → 投诉), where difflib's ratio alone is too strict."""
    choices = [c for c in dict.fromkeys(str(c) for c in choices) if c != word]
    guess = did_you_mean(word, choices)
    if guess:
        return guess
    inside = [c for c in choices if c and (c in word or word in c)]
    if len(inside) == 1:
        return inside[0]
    one_off = [c for c in choices if len(c) == len(word) >= 2 and sum(x != y for x, y in zip(c, word)) == 1]
    return one_off[0] if len(one_off) == 1 else None


_IN_LIST = {
    "==": "这个比较永远不成立",
    "!=": "这个比较只要有值就成立",
    "in": "列表中的这一项永远匹配不上",
    "not in": "列表中的这一项不起作用",
    "contains": "这个条件永远不成立",
    "not contains": "这个条件总是成立",
}


class _ValueChecker:
    """``unknown-value``: a condition compares a tag, an enum field or a festival name with a text it
    can never have (``value_tier in ['高价值', '中']``, ``type == '投述'``, ``'中秋节' in festivals_due``),
    or a settings list names one (``track_types: [建意]``). ``untested-value``: a rule sets a tag to
    a value no condition or table tests, while a close one is tested (``need_type: 战略客户`` vs 战略)."""

    def __init__(self, policyset: PolicySet, columns: Any):
        self.policyset = policyset
        self.columns = columns
        self.problems: list[Problem] = []
        self.rules_with_unknown_values: set[tuple[str, str]] = set()  # (policy id, rule id)
        self.tested: dict[str, list[str]] = {}  # tag → texts conditions compare it with
        knowledge = _Knowledge(policyset)
        self.tag_values = knowledge.domains
        self.vocab: dict[str, _Vocabulary] = {}
        for name, values in knowledge.domains.items():
            if values and all(isinstance(v, str) for v in values):
                same_column = self._enum_field(("customers", name))
                self.vocab[name] = _Vocabulary(
                    list(values), "规则和决策表设置的值", "改成其中一个取值；确实需要这个取值时，先在规则的 set: 或决策表的结果列中设置它",
                    closed=True, aliases=self._aliases(same_column))
        for name, where in ENUM_FEATURES.items():
            vocab = self._enum_vocab(where)
            if vocab and name not in self.vocab:
                self.vocab[name] = vocab
        festivals = self._festival_names()
        if festivals:
            for name in FESTIVAL_FEATURES:
                self.vocab.setdefault(name, _Vocabulary(
                    festivals, "care.yaml 中的节日名称", "改成 care.yaml festivals: days: 中的节日名称，或在那里加上这个节日", closed=True))
        self.sla_vocab = dict(self.vocab)
        for name, where in SLA_ENUM_FIELDS.items():
            vocab = self._enum_vocab(where)
            if vocab:
                self.sla_vocab[name] = vocab

    # -- what is known -----------------------------------------------------------------------------
    def _enum_field(self, where: tuple[str, str]):
        table = self.columns.tables.get(where[0]) if self.columns is not None else None
        spec = table.fields.get(where[1]) if table is not None else None
        return spec if spec is not None and spec.type == "enum" and spec.values else None

    @staticmethod
    def _aliases(spec) -> dict[str, str]:
        from engine.coerce import value_key

        return {value_key(s): c for s, c in spec.values.items()} if spec is not None else {}

    def _enum_vocab(self, where: tuple[str, str]) -> _Vocabulary | None:
        spec = self._enum_field(where)
        if spec is None:
            return None
        return _Vocabulary(list(dict.fromkeys(spec.values.values())), f"columns.yaml 中 {where[0]}.{where[1]} 的取值", ENUM_FIX,
                           closed=bool(spec.strict), aliases=self._aliases(spec))

    def _festival_names(self) -> list[str]:
        try:
            from engine.stages.care import load_care_settings

            settings = load_care_settings(self.policyset)
        except (ImportError, EngineError):
            return []  # a broken care.yaml is reported by the care stage's own checks
        return [f.name for f in settings.festivals] if settings is not None else []

    # -- the checks ------------------------------------------------------------------------------
    def check(self) -> None:
        for rs in self.policyset.all_rulesets():
            for rule in rs.rules:
                for node in rule.cell_conditions or ([rule.condition] if rule.condition is not None else []):
                    if self.condition(node, f"规则 {rule.rule_id}", self.vocab):
                        self.rules_with_unknown_values.add((rs.policy_id, rule.rule_id))
        for stage, rule_id, node in self._settings_conditions():
            self.condition(node, f"{SETTINGS_WHO.get(stage, stage)} {rule_id}", self.sla_vocab if stage == "sla" else self.vocab)
        self.settings_lists()
        self.set_values()

    def condition(self, root: expr.Node, who: str, vocab: dict[str, _Vocabulary]) -> bool:
        """Report every unknown text in one condition; True if there was one."""
        found = False
        for node in root.walk():
            pairs: list[tuple[str, expr.Const, str]] = []  # (name, constant, how they are compared)
            if isinstance(node, expr.Binary) and node.op in ("==", "!="):
                name = next((n.name for n in (node.left, node.right) if isinstance(n, expr.Name)), None)
                const = next((n for n in (node.left, node.right) if isinstance(n, expr.Const)), None)
                if name and const is not None:
                    pairs.append((name, const, node.op))
            elif isinstance(node, expr.In) and isinstance(node.value, expr.Name) and isinstance(node.options, tuple):
                pairs += [(node.value.name, o, "not in" if node.negated else "in") for o in node.options if isinstance(o, expr.Const)]
            elif isinstance(node, expr.In) and isinstance(node.value, expr.Const) and isinstance(node.options, expr.Name):
                pairs.append((node.options.name, node.value, "not contains" if node.negated else "contains"))
            for name, const, how in pairs:
                if not isinstance(const.value, str):
                    continue
                if name in self.tag_values:
                    self.tested.setdefault(name, []).append(const.value)
                known = vocab.get(name)
                if known is None or const.value in known.values:
                    continue
                found = True
                self.problems.append(Problem(
                    code="unknown-value", severity=WARNING,
                    location=locate(root.origin, const.line, const.col),
                    message=f"{who} 的条件把 {name} 和 {value_text(const.value)} 比较，但 {name} "
                            f"{'只会是' if known.closed else '的取值是'} {known.listing()}（{known.source}）"
                            + (f"，{_IN_LIST[how]}" if known.closed else "") + known.hint(const.value),
                    fix=known.fix))
        return found

    def _settings_conditions(self):
        """(stage, id, parsed condition) of the rule-like entries of stage settings files (SLA targets, churn signals)."""
        def walk(node: Any, stage: str):
            if isinstance(node, YMap):
                if "id" in node and isinstance(node.get("when"), str):
                    try:
                        yield stage, str(node.get("id")), expr.parse(node.get("when"), node.value_loc("when"))
                    except PolicyError:
                        pass  # the stage's own checks report it
                for value in node.values():
                    yield from walk(value, stage)
            elif isinstance(node, YList):
                for item in node:
                    yield from walk(item, stage)

        for stage in STAGE_MODULES:
            for _path, doc in self.policyset.documents.get(stage, []):
                if isinstance(doc, YMap) and not any(k in doc for k in ("rules", "table", "policies")):
                    yield from walk(doc, stage)

    def settings_lists(self) -> None:
        for kind, keys, where in SETTINGS_VALUE_LISTS:
            vocab = self._enum_vocab(where)
            if vocab is None:
                continue
            for path, doc in self.policyset.documents.get(kind, []):
                node: Any = doc
                for key in keys:
                    node = node.get(key) if isinstance(node, YMap) else None
                if not isinstance(node, YList):
                    continue
                for i, item in enumerate(node):
                    if isinstance(item, (str, int, float)) and not isinstance(item, bool) and str(item).strip() not in vocab.values:
                        word = str(item).strip()
                        self.problems.append(Problem(
                            code="unknown-value", severity=WARNING, location=node.item_loc(i),
                            message=f"{self.policyset.relpath(path)} 的 {'.'.join(keys)} 中的 {value_text(word)} 不是 "
                                    f"{vocab.source}：{vocab.listing()}{vocab.hint(word)}",
                            fix=vocab.fix))

    def set_values(self) -> None:
        """A tag set to a text nothing tests, while a close text is tested: the set (or the tests) misspell it."""
        set_blocks = self._set_blocks()
        for rs in self.policyset.all_rulesets():
            for rule in rs.rules:
                for out in rule.outputs:
                    tested = self.tested.get(out.name) if isinstance(out, SetTag) else None
                    if not tested or not isinstance(out.value, str) or out.value in tested:
                        continue
                    tested = list(dict.fromkeys(tested))
                    guess = close_value(out.value, tested)
                    if guess is None:
                        continue  # e.g. a catch-all value (普通) no rule needs to test
                    self.problems.append(Problem(
                        code="untested-value", severity=WARNING, location=self._set_location(rs, rule, out.name, set_blocks),
                        message=f"规则 {rule.rule_id} 把 {out.name} 设为 {value_text(out.value)}，但没有任何条件或决策表检查这个值"
                                f"（检查的是 {'、'.join(value_text(v) for v in tested)}）；是不是 {value_text(guess)}？",
                        fix=f"改成 {value_text(guess)}，或在用到 {out.name} 的条件中也检查 {value_text(out.value)}"))

    def _set_blocks(self) -> dict[Location, YMap]:
        """Where each YAML rule is (its id) → its ``set:`` block."""
        found: dict[Location, YMap] = {}

        def walk(node: Any) -> None:
            if isinstance(node, YMap):
                if "id" in node and isinstance(node.get("set"), YMap):
                    found[node.key_loc("id")] = node.get("set")
                for value in node.values():
                    walk(value)
            elif isinstance(node, YList):
                for item in node:
                    walk(item)

        for docs in self.policyset.documents.values():
            for _path, doc in docs:
                walk(doc)
        return found

    @staticmethod
    def _set_location(rs: RuleSet, rule: Rule, tag: str, set_blocks: dict[Location, YMap]) -> Location:
        sheet = getattr(rs, "table_sheet", None)
        if sheet is not None and rule.location.cell:
            row = int(rule.location.cell[1:])
            col = next((i for i, (kind, name) in enumerate(zip(sheet.kinds, sheet.names)) if kind == "output" and name == tag), None)
            return sheet.cell_loc(row, col) if col is not None else rule.location
        block = set_blocks.get(rule.location)
        return block.value_loc(tag) if block is not None else rule.location
