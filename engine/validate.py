"""``crm-engine validate``: check a policy folder without running a batch.

Loading (``engine.policy.loader``) already checks YAML syntax, fields (with did-you-mean), expressions
and their types, decision-table cells, roles and channels of rules. This module adds what only
shows up when the pieces are put together:

* the stage settings files (sla.yaml, care.yaml, churn.yaml, guards.yaml) and the calendars they name;
* message templates: that each exists for every channel a rule may use, and that every variable it
  reads is one a message gets (``customer.<feature or tag>``, ``company.<key>``, ``as_of``,
  ``params.<key the rule sets>``); the same for task titles and scripts;
* rule ids used twice anywhere (YAML rules, table rows, SLA targets, churn signals);
* the logic of each rule list or decision table (see "Rule logic" below): rules that can never
  apply under the hit policy, overlapping rows in ``unique`` tables, and input combinations no row
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

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

from jinja2 import DictLoader, TemplateSyntaxError, nodes

from engine import expr
from engine.audit import check_report_template
from engine.calendar import load_calendars
from engine.errors import ERROR, WARNING, EngineError, Location, PolicyError, Problem
from engine.expr.render import value_text
from engine.features import derive_features
from engine.model import Customer, SourceRow
from engine.policy import decision_table
from engine.policy.loader import PolicySet, load_policies
from engine.policy.model import AddScore, MessageSpec, Rule, RuleSet, SetTag, TaskSpec
from engine.policy.schema import did_you_mean
from engine.policy.yaml_source import YList, YMap
from engine.readers import load_columns
from engine.render import CONTEXT_VARIABLES, make_environment, template_fields

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
    calendars = None
    for loader, name in ((load_columns, "columns.yaml"), (load_calendars, "calendar.yaml")):
        path = policies / name
        if not path.is_file():
            problems.append(Problem(code="file-missing", message=f"策略文件夹里缺少 {name}",
                                    location=Location(file=name), fix=f"从随附的 policies/ 文件夹复制一份 {name}"))
            continue
        try:
            result = loader(path)
        except EngineError as exc:
            problems.extend(exc.problems)
            continue
        if name == "calendar.yaml":
            calendars = result
    if calendars is not None:
        problems.extend(check_stage_settings(policyset, calendars, templates))
    problems.extend(check_duplicate_ids(policyset))
    problems.extend(check_templates(policyset, templates))
    problems.extend(check_report_template(templates))
    problems.extend(check_rule_logic(policyset))
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
    """One line: ``where: severity: message [code] — 修改建议: fix``."""
    text = f"{p.location}: {p.severity}: {p.message} [{p.code}]"
    if p.fix:
        text += f" — 修改建议: {p.fix}"
    return text.replace("\n", " ")


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
        problems.append(Problem(
            code="unknown-calendar",
            message=f"task_calendar '{org.task_calendar}' 在 calendar.yaml 中没有定义" + _guess(org.task_calendar, calendars),
            location=_value_loc(policyset, "organization", "task_calendar"),
            fix=f"可用的日历: {', '.join(calendars)}",
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
            module.build(setup)
        except EngineError as exc:
            problems.extend(exc.problems)
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


def _guess(word: str, choices) -> str:
    guess = did_you_mean(word, list(choices))
    return f"；是不是 '{guess}'？" if guess else ""


# --------------------------------------------------------------------------------------------------
# Duplicate rule ids
# --------------------------------------------------------------------------------------------------


def settings_rules(policyset: PolicySet) -> list[tuple[str, str, str, Location]]:
    """Rule-like entries of stage settings files (SLA targets, churn signals, ...): (stage, id, when, location).

    Found generically: a mapping with ``id`` and ``when`` inside a ``kind: sla/care/churn`` file that
    is not a rule policy. They fire as decisions with their id, so the id must be unique too."""
    found: list[tuple[str, str, str, Location]] = []

    def walk(node: Any, stage: str) -> None:
        if isinstance(node, YMap):
            if "id" in node and "when" in node:
                when = node.get("when")
                when = ("true" if when else "false") if isinstance(when, bool) else str(when)
                found.append((stage, str(node.get("id")), when, node.key_loc("id")))
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


def _duplicate(rule_id: str, first: Location, here: Location) -> Problem:
    return Problem(code="duplicate-rule-id", message=f"规则编号 '{rule_id}' 已在 {first} 使用过",
                   location=here, fix="规则编号在所有策略文件中必须唯一，请改用一个新的编号")


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------


def _shown_path(path: Path, templates: Path) -> str:
    base = templates.parent
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else path.as_posix()


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

    def fields(self, env, name: str, location: Location) -> tuple[set[str], set[str]] | None:
        """(fields used, filters used) of a template, or None after reporting a syntax error."""
        try:
            tree = env.parse(env.loader.get_source(env, name)[0])
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
        except TemplateSyntaxError as exc:  # e.g. an unknown test (``is foo``)
            self.problems.append(Problem("template-syntax", f"{exc.message}", location))
            return None
        return fields, filters

    def field_problems(self, used: set[str], filters: set[str], where: str, file_loc: Callable[[str], Location],
                       params: dict | None, rule: Rule) -> None:
        """``where``: how to name the template in messages. ``params``: the rule's params (None: a task text)."""
        for f in sorted(used):
            base, _, attr = f.partition(".")
            if base not in CONTEXT_VARIABLES:
                self.problems.append(Problem(
                    code="template-variable",
                    message=f"{where} 使用了变量 '{base}'，但模板只能使用 {', '.join(CONTEXT_VARIABLES)}" + _guess(base, CONTEXT_VARIABLES),
                    location=file_loc(base), fix="客户的字段写成 customer.<字段>，规则自己的值写成 params.<名称>"))
            elif base == "customer" and attr and attr not in self.customer_fields:
                self.problems.append(Problem(
                    code="template-variable",
                    message=f"{where} 使用了 customer.{attr}，但客户没有 '{attr}' 这个字段或分类" + _guess(attr, self.customer_fields),
                    location=file_loc(f), fix="字段名见 docs/features.md；分类结果用规则 set: 的名称"))
            elif base == "company" and attr and attr not in self.company_fields:
                self.problems.append(Problem(
                    code="template-variable",
                    message=f"{where} 使用了 company.{attr}，但 organization.yaml 的 company: 中没有 '{attr}'" + _guess(attr, self.company_fields),
                    location=file_loc(f), fix=f"在 organization.yaml 的 company: 下加上 {attr}，或改用已有的: {', '.join(sorted(self.company_fields))}"))
            elif base == "params" and attr and params is None:
                self.problems.append(Problem(
                    code="template-variable",
                    message=f"规则 {rule.rule_id} 的任务文字使用了 params.{attr}，但任务没有 params",
                    location=rule.location, fix="任务标题和话术只能使用 customer、company 和 as_of"))
            elif base == "params" and attr and attr not in params:
                self.problems.append(Problem(
                    code="template-param-missing",
                    message=f"规则 {rule.rule_id} 使用的 {where} 需要 params.{attr}，但规则的 params 中没有 '{attr}'"
                            + _guess(attr, params),
                    location=rule.location, fix=f"在这条规则的 message 下加上 params: {{{attr}: ...}}，或在模板中写 params.get('{attr}') 使它可选"))
        for name in sorted(filters - set(self.env.filters)):
            self.problems.append(Problem(
                code="template-filter", message=f"{where} 使用了不存在的过滤器 '{name}'" + _guess(name, self.env.filters),
                location=file_loc(name), fix="可用的过滤器见 templates/README.md，例如 date、money、mask_phone"))

    def message(self, rule: Rule, spec: MessageSpec) -> None:
        org = self.policyset.organization
        channels = list(org.channels) if spec.channel == "preferred" else [spec.channel]
        for channel in channels:
            if channel not in org.channels:
                continue  # the loader reports unknown channels
            name = f"messages/{channel}/{spec.template}.txt"
            path = self.templates / name
            shown = _shown_path(path, self.templates)
            if not path.is_file():
                self.problems.append(Problem(
                    code="unknown-template",
                    message=f"规则 {rule.rule_id} 在 {channel} 渠道发送模板 '{spec.template}'，但 {shown} 不存在",
                    location=rule.location, fix=f"新建 {shown}，或改正模板名称"))
                continue
            result = self.fields(self.env, name, Location(file=shown))
            if result is None:
                continue
            used, filters = result
            # Problems inside the template file are reported once; params problems once per rule.
            first_time = name not in self._file_checked
            self._file_checked.add(name)
            if not first_time:
                used = {f for f in used if f.startswith("params.")}
                filters = set()

            def file_loc(needle: str, path: Path = path, shown: str = shown) -> Location:
                return Location(file=shown, line=_line_of(path, needle))

            self.field_problems(used, filters, f"模板 {shown}", file_loc, spec.params, rule)

    def task(self, rule: Rule, spec: TaskSpec) -> None:
        texts = {"title": spec.title, "script": spec.script}
        for label, text in texts.items():
            if not text or "{" not in text:
                continue
            env = make_environment(self.templates)
            env.loader = DictLoader({"inline": text})  # the same parser and filters, text from the policy
            result = self.fields(env, "inline", rule.location)
            if result is None:
                continue
            used, filters = result
            self.field_problems(used, filters, f"规则 {rule.rule_id} 的任务{'标题' if label == 'title' else '话术'}",
                                lambda _needle: rule.location, None, rule)


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
                    checker.message(rule, out)
                elif isinstance(out, TaskSpec):
                    checker.task(rule, out)
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


def _same_condition_checks(rs: RuleSet) -> list[Problem]:
    """For rule lists that are not analysed: an earlier catch-all or the very same condition."""
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
                why = "条件为 true（对所有客户成立）" if catch_all else "条件完全相同"
                problems.append(Problem(
                    code="unreachable-rule",
                    message=f"规则 {rule.rule_id} 永远不会生效：命中策略为 {rs.hit_policy}，{earlier.rule_id} 排在它前面且{why}",
                    location=rule.location, severity=WARNING, fix=_unreachable_fix(rs, rule, [i])))
                break
    return problems


def _unreachable_fix(rs: RuleSet, rule: Rule, winners) -> str:
    if rs.hit_policy == "priority":
        return f"提高 {rule.rule_id} 的优先级，或删除这条规则"
    return f"把 {rule.rule_id} 移到 {rs.rules[min(winners)].rule_id} 之前，或删除/修改这条规则"


def check_ruleset_logic(rs: RuleSet, knowledge: _Knowledge) -> list[Problem]:
    is_table = getattr(rs, "table_sheet", None) is not None
    grid = table_grid(rs, knowledge) if is_table else rules_grid(rs, knowledge)
    what = "表" if is_table else "规则列表"
    if grid is None or not rs.rules:
        problems = _same_condition_checks(rs)
        if rs.complete and not is_table:
            problems.append(Problem(code="gap-check-skipped", severity=WARNING, location=rs.location,
                                    message=f"{rs.policy_id} 声明 complete: true，但它的条件含计算或函数，无法检查是否覆盖所有情况"))
        return problems
    if grid.size() > MAX_GRID:
        return _same_condition_checks(rs) + [Problem(
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
        if rs.hit_policy in ("unique", "any") and len(hits) > 1:
            for a, b in itertools.combinations(hits, 2):
                overlaps.setdefault((a, b), point)
    match_sets = [set(m) for m in matches]
    for j, rule in enumerate(rs.rules):
        if not matches[j]:
            problems.append(Problem(
                code="never-matches", severity=WARNING, location=rule.location,
                message=f"规则 {rule.rule_id} 的条件对任何客户都不成立，永远不会生效",
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
                message=f"规则 {rule.rule_id} 永远不会生效：命中策略为 {rs.hit_policy}，满足它的客户都会先满足 {_rule_names(rs, winners)}"
                        + ("（其中之一）" if len(winners) > 1 else ""),
                fix=_unreachable_fix(rs, rule, winners)))
    for (a, b), point in sorted(overlaps.items()):
        ra, rb = rs.rules[a], rs.rules[b]
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


def check_rule_logic(policyset: PolicySet) -> list[Problem]:
    knowledge = _Knowledge(policyset)
    problems: list[Problem] = []
    for rs in policyset.all_rulesets():
        problems.extend(check_ruleset_logic(rs, knowledge))
    return problems
