"""Load a policy folder into one checked ``PolicySet``.

Every YAML file declares its ``kind``. Rule policies (classification, care, churn, sla rules) compile to
``RuleSet`` objects; decision tables in ``.xlsx`` are referenced from YAML with ``table:``. Problems are
collected across all files and raised together, each naming file:line:col or workbook!Sheet!Cell.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine import expr
from engine.customer_columns import RUN_COUNTS, column_headers
from engine.errors import Location, PolicyError, Problem
from engine.expr.check import set_at_fix, written_as_text
from engine.expr.lexer import locate
from engine.expr.render import value_text
from engine.features import FeatureConfig, feature_catalog
from engine.policy import decision_table
from engine.policy.model import (
    HIT_POLICIES,
    PERIODS,
    STAGES,
    AddScore,
    MessageSpec,
    Rule,
    RuleSet,
    SetTag,
    TaskSpec,
)
from engine.policy.schema import Problems, as_list, check_keys, condition_text, did_you_mean
from engine.policy.yaml_source import YList, YMap, load_yaml
from engine.stages import stage_feature_catalog, stage_feature_stages, stage_tag_requirements, whole_days

RULE_KINDS = STAGES
OTHER_KINDS = ("columns", "calendar", "features", "organization", "guards")
PRIORITIES = ("高", "中", "低")
MESSAGE_CATEGORIES = ("marketing", "service")
TASK_FIELDS = ("title", "assign_to", "due", "priority", "script", "category", "once_per", "key_by", "due_by", "replaces",
               "period_of", "min_gap_days")
MESSAGE_FIELDS = ("template", "channel", "category", "params", "once_per", "key_by", "send_on", "period_of",
                  "min_gap_days")
# What separates names in "李强、王芳": a person's name never holds one of these.
_NAME_SEPARATORS = (",", "，", "、", ";", "；", "/")
# A task's or message's field found at the rule's level was indented too little (check_keys says so).
_RULE_BLOCKS = {"task": TASK_FIELDS, "tasks": TASK_FIELDS, "message": MESSAGE_FIELDS, "messages": MESSAGE_FIELDS}


@dataclass(frozen=True)
class Channel:
    key: str
    label: str
    address_field: str  # the Customer field that holds the address: phone / email / wechat


@dataclass
class Organization:
    company: dict[str, Any] = field(default_factory=lambda: {"name": "本公司", "hotline": ""})
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role → the people who fill it (one or more)
    unassigned_role: str = "团队组长"
    task_calendar: str = "standard"
    channels: dict[str, Channel] = field(default_factory=dict)
    channel_aliases: dict[str, str] = field(default_factory=dict)  # 短信 → sms
    default_channel_order: tuple[str, ...] = ()

    def person_for(self, role: str, customer_id: str) -> tuple[str, str | None]:
        """Who takes a customer's task for ``role``, and, when the role has several people, how that
        one was chosen (for the task sheet and the decision log; None for a one-person role)."""
        people = self.roles.get(role) or (role,)
        if len(people) == 1:
            return people[0], None
        person = pick_person(people, customer_id)
        return person, f"按客户编号分配给 {person}（共 {len(people)} 人：{'、'.join(people)}）"

    def channel_key(self, recorded: str | None) -> str | None:
        if not recorded:
            return None
        text = recorded.strip()
        if text in self.channels:
            return text
        return self.channel_aliases.get(text) or self.channel_aliases.get(text.lower())


def pick_person(people: tuple[str, ...], customer_id: str) -> str:
    """One of a role's people for a customer, the same in every run: the one whose sha256 of
    (person, customer id) is highest (rendezvous hashing; never Python's hash(), which changes per
    process). Spreads customers about evenly; reordering the list changes nothing, a person added
    takes about 1/n of the customers from the others, a person removed hands on only their own."""
    def score(person: str) -> bytes:
        return hashlib.sha256(f"{person}\x00{customer_id}".encode("utf-8")).digest()
    return max(people, key=score)


@dataclass
class PolicySet:
    root: Path
    files: list[Path]  # every policy file read, for the manifest
    features: FeatureConfig
    organization: Organization
    rulesets: dict[str, list[RuleSet]]  # stage → rule sets in evaluation order
    schema: dict[str, Any]  # name → expr type, for every feature and tag
    documents: dict[str, list[tuple[Path, YMap]]]  # kind → raw documents (for stage-specific config)
    warnings: list = field(default_factory=list)

    def relpath(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def all_rulesets(self) -> list[RuleSet]:
        return [rs for stage in STAGES for rs in self.rulesets.get(stage, [])]


def policy_files(root: Path) -> list[Path]:
    """YAML files of a policy folder, in path order (policy tests under tests/ are not policies)."""
    return sorted(
        p for p in root.rglob("*.y*ml")
        if p.suffix in (".yaml", ".yml") and "tests" not in p.relative_to(root).parts[:-1]
    )


def _type_for_value(value: Any) -> Any:
    if isinstance(value, bool):
        return expr.types.BOOL
    if isinstance(value, (int, float)):
        return expr.types.NUMBER
    return expr.types.STRING


def _base_schema(config: FeatureConfig) -> dict[str, Any]:
    catalog = {**feature_catalog(config), **stage_feature_catalog()}
    return {name: expr.types.parse_type(type_name) for name, (type_name, _) in catalog.items()}


class _Loader:
    def __init__(self, root: Path):
        self.root = root
        self.problems = Problems()
        self.files: list[Path] = []
        self.documents: dict[str, list[tuple[Path, YMap]]] = {}
        self.key_by_refs: list[tuple[str, Location]] = []  # (feature name, where) of every key_by
        # (key, feature name, where) of every due_by, send_on and period_of: each names a date feature
        self.date_refs: list[tuple[str, str, Location]] = []
        self.replaces_refs: list[tuple[str, Location]] = []  # (rule id, where) of every task's replaces
        self.gap_refs: list[tuple[str, Location]] = []  # (feature name, where) of every min_gap_days naming a feature
        self.policy_ids: dict[str, Location] = {}  # policy id → where it was first declared
        # organization.yaml could not be read (e.g. a role typed twice): its roles and channels are
        # unknown, so rules naming them are not reported too (each would say "unknown role").
        self.organization_unreadable = False

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # -- reading ------------------------------------------------------------------------------
    def read_documents(self) -> None:
        for path in policy_files(self.root):
            self.files.append(path)
            try:
                doc = load_yaml(path, self.rel(path))
            except PolicyError as exc:
                self.problems.extend(exc.problems)
                self.organization_unreadable |= _declares_organization(path)
                continue
            loc = Location(file=self.rel(path), line=1, col=1)
            if not isinstance(doc, YMap):
                self.problems.error("not-a-mapping", "策略文件要以 'kind: ...' 开头，其余也是 '名称: 值' 的行 / "
                                                     "a policy file must start with 'kind: ...' and other 'key: value' lines", loc)
                continue
            kind = doc.get("kind")
            if kind is None:
                self.problems.error("missing-kind", "文件没有写明是哪一类策略：缺少 'kind:' 这一行 / "
                                                    "the file does not say what it is: add a 'kind:' line",
                                    loc, fix=f"可以是其中之一 / one of: {', '.join(RULE_KINDS + OTHER_KINDS)}")
                continue
            if kind not in RULE_KINDS + OTHER_KINDS:
                guess = did_you_mean(kind, RULE_KINDS + OTHER_KINDS)
                self.problems.error("unknown-kind", f"没有 '{kind}' 这一类策略" + (f"，是不是 '{guess}'？" if guess else "")
                                    + f" / unknown kind '{kind}'" + (f"; did you mean '{guess}'?" if guess else ""),
                                    doc.value_loc("kind"), fix=f"可以是其中之一 / one of: {', '.join(RULE_KINDS + OTHER_KINDS)}")
                continue
            self.documents.setdefault(kind, []).append((path, doc))

    # -- simple kinds -------------------------------------------------------------------------
    def features(self) -> FeatureConfig:
        config = self._feature_config()
        # "Closed" means one thing in a run: the SLA settings' closed statuses (their default included).
        from engine.stages.sla import closed_statuses_setting

        for _path, doc in self.documents.get("sla", [])[:1]:
            statuses = closed_statuses_setting(doc)
            if statuses is not None:
                config = replace(config, closed_statuses=frozenset(s.lower() for s in statuses))
        # The contacts that close a task on the 仍待处理 page: guards.yaml's still_open.contact_types.
        from engine.guards import contact_types_setting

        for _path, doc in self.documents.get("guards", [])[:1]:
            types = contact_types_setting(doc)
            if types is not None:
                config = replace(config, contact_types=frozenset(types))
        return config

    def _feature_config(self) -> FeatureConfig:
        docs = self.documents.get("features", [])
        if not docs:
            return FeatureConfig()
        path, doc = docs[0]
        check_keys(doc, "a features file", ("kind", "description", "windows_days", "satisfaction_window_days",
                                            "orders_not_counted"), (), self.problems, doc.loc)
        try:
            return FeatureConfig.from_policy(doc)
        except (TypeError, ValueError) as exc:
            if "orders_not_counted" in str(exc):
                self.problems.error("bad-value", "orders_not_counted 要写成订单状态的列表 / orders_not_counted must be a list of "
                                                 "order statuses", doc.value_loc("orders_not_counted"),
                                    fix="把状态写成列表，如 orders_not_counted: [已取消, 已退款, 待付款] / "
                                        "write the statuses as a list, e.g. orders_not_counted: [已取消, 已退款, 待付款]")
            else:
                self.problems.error("bad-value", "windows_days 要写成整数天数的列表 / windows_days must be a list of whole numbers "
                                                 "of days", doc.loc)
            return FeatureConfig()

    def organization(self) -> Organization:
        docs = self.documents.get("organization", [])
        org = Organization()
        if not docs:
            return org
        path, doc = docs[0]
        allowed = ("kind", "description", "company", "roles", "unassigned_role", "task_calendar", "channels",
                   "channel_aliases", "default_channel_order")
        check_keys(doc, "the organization file", allowed, ("roles", "channels"), self.problems, doc.loc)
        org.company = dict(doc.get("company") or org.company)
        roles = doc.get("roles") or YMap()
        if not isinstance(roles, YMap):
            self.problems.error("not-a-mapping", "roles: 下要逐行写 '角色: 担任的人' / roles: must be 'role: person' lines",
                                doc.value_loc("roles"), fix="每个角色一行，比 roles: 多缩进两个空格，如 客服主管: [李强, 王芳] / "
                                                            "one role per line, indented under roles:, e.g. 客服主管: [李强, 王芳]")
            roles = YMap()
        org.roles = {str(role): self._role_people(str(role), value, roles.key_loc(role), roles.value_loc(role))
                     for role, value in roles.items()}
        org.unassigned_role = str(doc.get("unassigned_role", org.unassigned_role))
        org.task_calendar = str(doc.get("task_calendar", org.task_calendar))
        if org.unassigned_role not in org.roles:
            self.problems.error("unknown-role", f"unassigned_role '{org.unassigned_role}' 不在 roles: 里 / "
                                                f"unassigned_role '{org.unassigned_role}' is not one of the roles",
                                doc.value_loc("unassigned_role"), fix=f"已有的角色 / roles: {', '.join(org.roles)}")
        channels = doc.get("channels") or YMap()
        for key, spec in channels.items():
            if not check_keys(spec, f"channel '{key}'", ("label", "address"), ("label", "address"), self.problems, channels.value_loc(key)):
                continue
            if spec.get("address") not in ("phone", "email", "wechat"):
                self.problems.error("bad-value", f"channel '{key}': address must be phone, email or wechat",
                                    spec.value_loc("address"))
            org.channels[str(key)] = Channel(str(key), str(spec.get("label")), str(spec.get("address")))
        org.channel_aliases = {str(k).lower(): str(v) for k, v in (doc.get("channel_aliases") or {}).items()}
        for label, key in list(org.channel_aliases.items()):
            if key not in org.channels:
                self.problems.error("unknown-channel", f"渠道别名 '{label}' 指向的渠道 '{key}' 不存在 / "
                                                       f"channel alias '{label}' points to unknown channel '{key}'",
                                    doc.value_loc("channel_aliases"), fix=f"已有的渠道 / channels: {', '.join(org.channels)}")
        for ch in org.channels.values():
            org.channel_aliases.setdefault(ch.label.lower(), ch.key)
        order = [str(c) for c in as_list(doc.get("default_channel_order"))] or list(org.channels)
        for c in order:
            if c not in org.channels:
                self.problems.error("unknown-channel", f"default_channel_order 里的渠道 '{c}' 不存在 / "
                                                       f"default_channel_order names unknown channel '{c}'",
                                    doc.value_loc("default_channel_order"), fix=f"已有的渠道 / channels: {', '.join(org.channels)}")
        org.default_channel_order = tuple(c for c in order if c in org.channels)
        return org

    def _role_people(self, role: str, value: Any, key_loc: Location, value_loc: Location) -> tuple[str, ...]:
        """The people a role names: one (``客服主管: 李强``) or a list (``客服主管: [李强, 王芳]``).
        Anything else is reported: it used to become one "person" called "['李强', '王芳']" or "None"."""
        list_fix = (f"几个人写成列表，如 {role}: [李强, 王芳]；一个人直接写 {role}: 李强 / "
                    f"write several people as a list, e.g. {role}: [李强, 王芳]; one person as {role}: 李强")
        if isinstance(value, YMap):
            self.problems.error("bad-role-person", f"角色 {role} 下面写成了一组 '名称: 值'，要写担任的人或人名列表 / "
                                                   f"role '{role}' holds 'key: value' lines; write a person or a list of people",
                                value_loc, fix=list_fix)
            return ()
        if not isinstance(value, YList):
            person = "" if value is None else str(value).strip()
            if not person:
                # YAML reads "客服主管:" as no value; its tasks went to a person called "None".
                self.problems.error("role-without-person", f"角色 {role} 没有写由谁担任 / role '{role}' names nobody",
                                    key_loc,
                                    fix=f"在冒号和一个空格后写担任这个角色的人，如 {role}: 李强 / write the person after the colon"
                                        f" and a space, e.g. {role}: 李强")
                return ()
            if self._several_in_one(role, person, value_loc, list_fix):
                return ()
            return (person,)
        if not value:
            self.problems.error("role-without-person", f"角色 {role} 的人名列表是空的 / role '{role}' has an empty list of people",
                                value_loc, fix=list_fix)
            return ()
        people: list[str] = []
        for n, item in enumerate(value, start=1):
            loc = value.item_loc(n - 1)
            if item is None or (isinstance(item, str) and not item.strip()):  # a bare "-", or ""
                self.problems.error("bad-role-person", f"角色 {role} 的第 {n} 项是空的 / item {n} of role '{role}' is empty",
                                    loc, fix="写上人名，或删掉这一项 / write the person's name or delete the item")
            elif isinstance(item, (YMap, YList)):
                self.problems.error("bad-role-person", f"角色 {role} 的第 {n} 项是嵌套的一组内容，不是人名 / "
                                                       f"item {n} of role '{role}' is a nested block, not a name",
                                    loc, fix=list_fix)
            elif not isinstance(item, str):  # YAML reads 1001 as a number, yes as true, 2026-01-01 as a date
                self.problems.error("bad-role-person", f"角色 {role} 的第 {n} 项 {item} 不是人名 / "
                                                       f"item {n} of role '{role}' ({item}) is not a name",
                                    loc, fix="写人名；工号之类要加引号，如 '1001' / write a name; quote a staff number: '1001'")
            elif item.strip() in people:
                self.problems.error("duplicate-person", f"角色 {role} 里 {item.strip()} 写了两次 / "
                                                        f"'{item.strip()}' is listed twice for role '{role}'",
                                    loc, fix="删掉重复的一个 / delete one of them")
            elif not self._several_in_one(role, item.strip(), loc, list_fix):
                people.append(item.strip())
        return tuple(people)

    def _several_in_one(self, role: str, person: str, loc: Location, fix: str) -> bool:
        """``客服主管: 李强、王芳`` is one text to YAML: tasks would go to a "person" called 李强、王芳."""
        if not any(sep in person for sep in _NAME_SEPARATORS):
            return False
        self.problems.error("bad-role-person", f"角色 {role} 写的 “{person}” 像是几个人：几个人要写成列表 / "
                                               f"role '{role}' reads '{person}', which looks like several people: write them as a list",
                            loc, fix=fix)
        return True

    # -- rule policies ------------------------------------------------------------------------
    def rule_policies(self, org: Organization) -> list[tuple[RuleSet, list[tuple[Rule, list[tuple[str, Location]]]]]]:
        """Parse every rule policy; conditions are parsed but type-checked later, in evaluation order."""
        parsed = []
        for stage in RULE_KINDS:
            self._files_without_rules(stage)
            for path, doc in self.documents.get(stage, []):
                if stage != "classification" and not any(k in doc for k in ("rules", "table", "policies")):
                    self._policy_id(doc)  # a settings file's id is a policy id too
                    continue  # a stage's own settings file (e.g. SLA targets): its stage module reads it
                for block, block_loc in self._policy_blocks(doc):
                    rs = self._ruleset(stage, path, block, block_loc, org)
                    if rs is not None:
                        parsed.append(rs)
        return parsed

    def _files_without_rules(self, stage: str) -> None:
        """A file of a stage with a settings file (sla, care, churn) that has neither rules: nor table:
        is read as a second settings file, and the stage then said "merge care.yaml into care/new.yaml".
        One with nothing but kind/id/description beside the real settings file is a rule file whose
        rules are still to be written (or were lost): say that."""
        settings = [(path, doc) for path, doc in self.documents.get(stage, [])
                    if not any(k in doc for k in ("rules", "table", "policies"))]
        if stage == "classification" or len(settings) < 2:
            return
        empty = [(path, doc) for path, doc in settings if set(doc) <= {"kind", "id", "description"}]
        if len(empty) == len(settings):
            empty = empty[1:]  # all empty: the first one is the settings file (with the defaults)
        for path, doc in empty:
            self.problems.error(
                "no-rules", f"{self.rel(path)} 没有 rules:（也没有 table:），不是一个规则文件 / {self.rel(path)} has no rules:"
                " (nor table:), so it holds no rules", doc.loc,
                fix=f"在 rules: 下写规则（可以照其他 kind: {stage} 的规则文件写），或删除这个文件 / write its rules under rules:"
                    f" (like the other kind: {stage} rule files), or delete the file")

    def _policy_blocks(self, doc: YMap):
        """A file holds one policy, or several under 'policies:'."""
        if "policies" in doc:
            blocks = doc.get("policies")
            if not isinstance(blocks, YList):
                self.problems.error("not-a-list", "'policies:' 下面要写成策略的列表（每条以 '- ' 开头） / "
                                                  "'policies:' must be a list of policies (lines starting with '- ')",
                                    doc.value_loc("policies"))
                return []
            return [(b, blocks.item_loc(i)) for i, b in enumerate(blocks)]
        return [(doc, doc.loc)]

    def _ruleset(self, stage: str, path: Path, block: Any, loc: Location, org: Organization):
        allowed = ("kind", "id", "description", "hit_policy", "rules", "table", "complete", "policies", "retired_rules")
        if not check_keys(block, f"policy in {self.rel(path)}", allowed, ("id",), self.problems, loc):
            return None
        policy_id = str(block.get("id", self.rel(path)))
        self._policy_id(block)
        hit = str(block.get("hit_policy", "collect"))
        if hit not in HIT_POLICIES:
            guess = did_you_mean(hit, HIT_POLICIES)
            self.problems.error("bad-hit-policy", f"没有 '{hit}' 这种 hit_policy" + (f"，是不是 '{guess}'？" if guess else "")
                                + f" / unknown hit_policy '{hit}'" + (f"; did you mean '{guess}'?" if guess else ""),
                                block.value_loc("hit_policy"), fix=f"可以是其中之一 / one of: {', '.join(HIT_POLICIES)}")
            hit = "collect"
        rs = RuleSet(
            policy_id=policy_id,
            stage=stage,
            description=str(block.get("description", "")),
            hit_policy=hit,
            rules=[],
            location=block.loc,
            source_file=self.rel(path),
            complete=bool(block.get("complete", False)),
        )
        # checked by validate.check_formerly (not a rule's id, not under formerly)
        rs.retired, rs.retired_at = self._rule_ids(block, "retired_rules", "CARE-VIP-CALL")
        if ("rules" in block) == ("table" in block):
            self.problems.error("rules-or-table", f"策略 '{policy_id}' 要有 'rules:'（规则）或 'table:'（表格），只能有其中一个 / "
                                                  f"policy '{policy_id}' needs either 'rules:' or 'table:' (one of them)", block.loc)
            return None
        if "table" in block:
            self._table_rules(rs, path, block)
        else:
            rules = block.get("rules")
            if not isinstance(rules, YList):
                self.problems.error("not-a-list", "'rules:' 下面要写成列表（每条规则以 '- ' 开头） / "
                                                  "'rules:' must be a list (lines starting with '- ')", block.value_loc("rules"))
                return None
            for i, rule_block in enumerate(rules):
                rule = self._yaml_rule(rule_block, rules.item_loc(i), org)
                if rule is not None:
                    rs.rules.append(rule)
        outputs = []
        for rule in rs.rules:
            for out in rule.outputs:
                if isinstance(out, (SetTag, AddScore)) and out.name not in outputs:
                    outputs.append(out.name)
        rs.outputs_declared = tuple(outputs)
        return rs

    def _policy_id(self, block: YMap) -> None:
        """Policy ids are unique across all policy files (docs/policies.md): report a second use."""
        if not isinstance(block, YMap) or block.get("id") is None:
            return
        policy_id, loc = str(block.get("id")), block.key_loc("id")
        if policy_id in self.policy_ids:
            self.problems.error("duplicate-policy-id", f"策略编号 '{policy_id}' 已经在 {self.policy_ids[policy_id]} 用过 / "
                                                       f"policy id '{policy_id}' is already used at {self.policy_ids[policy_id]}",
                                loc, fix="所有策略文件里的策略编号都不能重复 / policy ids must be unique across all policy files")
            return
        self.policy_ids[policy_id] = loc

    def _mapping_field(self, block: YMap, key: str, what: str, example: tuple[str, str]) -> YMap:
        """The ``key: {name: value, ...}`` block of ``block`` (empty if absent). Anything else is reported
        at the key, with the block to write (``example``: a name and a value to show when the user
        wrote a single value)."""
        value = block.get(key)
        if value is None:
            return YMap()
        if isinstance(value, YMap):
            return value
        name, sample = example
        shown = _shown(value)
        if not isinstance(value, (YMap, YList, dict, list)) and shown:
            sample = shown
        zh = f"'{key}:' 后面要写成 {{名称: 值}}，不能只写{'一个列表' if isinstance(value, YList) else ' ' + _quoted(value)}"
        message = f"'{key}:' must be a block of '{what}' pairs, not {_quoted(value)}"
        fix = (f"写出名称和它的值，如 {key}: {{{name}: {sample}}} / "
               f"write the {what.split(':')[0]} and its value, e.g. {key}: {{{name}: {sample}}}")
        colon = next((c for c in ("：", ":", "＝", "=") if isinstance(value, str) and c in value), None)
        if colon is not None:  # "need_type：战略" on the next line, "need_type:战略" or "need_type=战略": YAML read one text
            left, _, right = (part.strip() for part in value.partition(colon))
            right = right.lstrip("=＝").strip()  # need_type == 普通
            if left and right:
                zh += f"；是不是要写 '{left}: {right}'（半角冒号加一个空格）？"
                message += f"; did you mean '{left}: {right}' with a half-width colon and a space?"
                fix = f"写成 {key}: {{{left}: {right}}} / write {key}: {{{left}: {right}}}"
        message = f"{zh} / {message}"
        self.problems.error("not-a-mapping", message, block.key_loc(key), fix=fix)
        return YMap()

    def _parse_condition(self, text: Any, loc: Location) -> Any:
        if isinstance(text, bool):
            text = "true" if text else "false"
        try:
            return expr.parse(str(text), loc)
        except PolicyError as exc:
            self.problems.extend(exc.problems)
            return None

    def _yaml_rule(self, block: Any, loc: Location, org: Organization) -> Rule | None:
        allowed = ("id", "description", "when", "set", "score", "task", "tasks", "message", "messages", "priority", "formerly")
        if not check_keys(block, "a rule", allowed, ("id", "when"), self.problems, loc, nested=_RULE_BLOCKS):
            return None
        rule_id = str(block.get("id", "?"))
        cond_text = condition_text(block.get("when", "true"))
        condition = self._parse_condition(cond_text, block.value_loc("when"))
        outputs: list = []
        tags = self._mapping_field(block, "set", "tag name: value", ("need_type", "战略"))
        for name, value in tags.items():
            if not self._plain_name(name, value, "tag", tags):
                continue
            if value is None:
                self.problems.error("missing-value", f"标签 '{name}' 没有写值 / tag '{name}' has no value", tags.key_loc(name),
                                    fix=f"在冒号和一个空格后写值，如 set: {{{name}: 战略}} / "
                                        f"write the value after the colon and a space, e.g. set: {{{name}: 战略}}")
                continue
            outputs.append(SetTag(str(name), value, tags.value_loc(name)))
        scores = self._mapping_field(block, "score", "score name: points", ("risk_points", "10"))
        for name, value in scores.items():
            if not self._plain_name(name, value, "score", scores):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.problems.error("bad-value", f"分数 '{name}' 要写分值（数字） / score '{name}' must be a number of points",
                                    scores.value_loc(name))
                continue
            outputs.append(AddScore(str(name), float(value), scores.value_loc(name)))
        tasks = as_list(block.get("task")) + as_list(block.get("tasks"))
        for t in tasks:
            spec = self._task(t, block.value_loc("task" if "task" in block else "tasks"), org)
            if spec:
                outputs.append(spec)
        messages = as_list(block.get("message")) + as_list(block.get("messages"))
        for m in messages:
            spec = self._message(m, block.value_loc("message" if "message" in block else "messages"), org)
            if spec:
                outputs.append(spec)
        if not outputs:
            self.problems.warning("no-output", f"规则 '{rule_id}' 什么也不产生（没有 set、score、task 或 message） / "
                                               f"rule '{rule_id}' produces nothing (no set, score, task or message)", loc)
        priority = block.get("priority", 0)
        if isinstance(priority, bool) or not (isinstance(priority, int) or (isinstance(priority, float) and priority.is_integer())):
            self.problems.error("bad-value", f"规则的 priority 要写整数，不能是 {_quoted(priority)} / "
                                             f"priority must be a whole number, not {_quoted(priority)}", block.value_loc("priority"),
                                fix="hit_policy: priority 时满足条件的规则中数字最大的生效，如 priority: 10；任务的 高/中/低 写在 task: 下面 / "
                                    "under hit_policy: priority the matching rule with the highest number wins, e.g. priority: 10; "
                                    "a task's 高/中/低 goes under task:")
            priority = 0
        formerly, formerly_at = self._rule_ids(block, "formerly", "CARE-LOYALTY-MEMBER-DAY")  # checked by validate.check_formerly
        return Rule(
            rule_id=rule_id,
            description=str(block.get("description", "")),
            condition=condition,
            condition_text=str(cond_text),
            outputs=outputs,
            location=block.key_loc("id"),
            priority=int(priority),
            formerly=formerly,
            formerly_at=formerly_at,
        )

    def _plain_name(self, name: Any, value: Any, what: str, block: YMap) -> bool:
        """A tag or score name must be a plain name (letters, CJK characters, digits, _), usable in a
        ``when:`` condition. ``{need_type：特殊需求}`` (full-width colon) or ``{need_type:特殊需求}`` (no
        space) is read by YAML as one name without a value: say so, with the line to write."""
        if isinstance(name, str) and name.isidentifier():
            return True
        text = str(name)
        what_zh = "标签" if what == "tag" else "分数"
        zh = f"'{text}' 不能做{what_zh}名：名称只能用字母、汉字、数字和 _"
        message = f"'{text}' is not a plain {what} name; names use letters, digits and _ only"
        fix = (f"改名，如 {text.replace(' ', '_')} / rename the {what}, e.g. {text.replace(' ', '_')}"
               if isinstance(name, str) and " " in text.strip() else None)
        colon = next((c for c in ("：", ":") if c in text), None)
        if colon is not None:
            left, _, right = text.partition(colon)
            left, right = left.strip(), right.strip()
            if value is None and left and right:
                zh += f"；是不是要写 '{left}: {right}'（半角冒号加一个空格）？"
                message += f"; did you mean '{left}: {right}' with a half-width colon and a space?"
                block_name = "set" if what == "tag" else "score"
                fix = f"写成 {block_name}: {{{left}: {right}}} / write {block_name}: {{{left}: {right}}}"
            else:
                fix = ("名称里不能有冒号；写成 '名称: 值'（半角冒号加一个空格） / "
                       "a name cannot contain a colon; write 'name: value' with a half-width colon and a space")
        example = "need_type" if what == "tag" else "risk_points"
        self.problems.error("bad-name", f"{zh} / {message}", block.key_loc(name),
                            fix=fix or f"用 {example} 这样的名称 / use a name such as {example}")
        return False

    def _task(self, block: Any, loc: Location, org: Organization) -> TaskSpec | None:
        if not check_keys(block, "a task", TASK_FIELDS, ("title", "assign_to", "due"), self.problems, loc):
            return None
        assign = str(block.get("assign_to", "owner"))
        role = assign[5:] if assign.startswith("role:") else (None if assign == "owner" else assign)
        if role is not None and role not in org.roles and not self.organization_unreadable:
            guess = did_you_mean(role, org.roles)
            self.problems.error("unknown-role", f"没有 '{role}' 这个角色" + (f"，是不是 '{guess}'？" if guess else "")
                                + f" / unknown role '{role}'" + (f"; did you mean '{guess}'?" if guess else ""),
                                block.value_loc("assign_to"),
                                fix=f"写 owner（客户经理），或 organization.yaml 里的角色 / use 'owner' or one of the roles in "
                                    f"organization.yaml: {', '.join(org.roles)}")
        priority = str(block.get("priority", "中"))
        if priority not in PRIORITIES:
            self.problems.error("bad-value", f"任务的 priority 只能是 高、中 或 低，不能是 '{priority}' / "
                                             f"task priority must be 高, 中 or 低, not '{priority}'", block.value_loc("priority"))
        due = str(block.get("due", "3d"))
        try:
            from engine.calendar import parse_duration

            parse_duration(due)
        except PolicyError as exc:
            self.problems.error("bad-duration", exc.problems[0].message, block.value_loc("due"), fix=exc.problems[0].fix)
        return TaskSpec(
            title=str(block.get("title")),
            assign_to="owner" if role is None else f"role:{role}",
            due=due,
            priority=priority,
            script=None if block.get("script") is None else str(block.get("script")).strip(),
            category=str(block.get("category", "service")),
            once_per=self._period(block),
            key_by=self._key_by(block),
            due_by=self._date_feature(block, "due_by"),
            period_of=self._date_feature(block, "period_of"),
            replaces=self._replaces(block),
            min_gap_days=self._min_gap_days(block),
        )

    def _message(self, block: Any, loc: Location, org: Organization) -> MessageSpec | None:
        if not check_keys(block, "a message", MESSAGE_FIELDS, ("template", "category"), self.problems, loc):
            return None
        channel = str(block.get("channel", "preferred"))
        if channel != "preferred" and channel not in org.channels and not self.organization_unreadable:
            guess = did_you_mean(channel, org.channels)
            self.problems.error("unknown-channel", f"没有 '{channel}' 这个渠道" + (f"，是不是 '{guess}'？" if guess else "")
                                + f" / unknown channel '{channel}'" + (f"; did you mean '{guess}'?" if guess else ""),
                                block.value_loc("channel"),
                                fix=f"写 preferred（客户偏好的渠道），或其中之一 / 'preferred' or one of: {', '.join(org.channels)}")
        category = str(block.get("category"))
        if category not in MESSAGE_CATEGORIES:
            self.problems.error("bad-value", f"消息的 category 只能是 marketing（营销）或 service（服务），不能是 '{category}' / "
                                             f"message category must be marketing or service, not '{category}'",
                                block.value_loc("category"),
                                fix="营销消息要客户同意并计入发送次数上限，服务消息不用 / "
                                    "marketing messages need consent and count against caps; service messages do not")
        params = self._mapping_field(block, "params", "name: text", ("offer", "本月新品上市"))
        return MessageSpec(template=str(block.get("template")), channel=channel, category=category,
                           params=dict(params), once_per=self._period(block),
                           key_by=self._key_by(block), send_on=self._date_feature(block, "send_on"),
                           period_of=self._date_feature(block, "period_of"),
                           min_gap_days=self._min_gap_days(block))

    def _replaces(self, block: YMap) -> tuple[str, ...]:
        """``replaces: [RULE-ID, ...]``: rule ids, checked once every rule is known."""
        ids, _ = self._rule_ids(block, "replaces", "CARE-REVISIT-DUE")
        self.replaces_refs.extend((rule_id, block.value_loc("replaces")) for rule_id in ids)
        return ids

    def _rule_ids(self, block: YMap, key: str, example: str) -> tuple[tuple[str, ...], tuple[Location, ...]]:
        """``key: [RULE-ID, ...]`` (or one id): the ids, and where each is written."""
        value = block.get(key)
        if value is None:
            return (), ()
        items = list(value) if isinstance(value, (list, YList)) else [value]
        if not items or any(isinstance(v, (dict, list, YMap, YList)) or v is None for v in items):
            self.problems.error("bad-value", f"{key} 要写一个规则编号或规则编号的列表，如 {key}: [{example}] / "
                                             f"{key} must be a rule id or a list of rule ids, e.g. {key}: [{example}]",
                                block.value_loc(key))
            return (), ()
        ids = tuple(str(v).strip() for v in items)
        locs = tuple(value.item_loc(i) if isinstance(value, YList) else block.value_loc(key) for i in range(len(ids)))
        return ids, locs

    def _min_gap_days(self, block: YMap) -> int | str | None:
        """``min_gap_days``: a whole number of days ≥ 1, or the name of a numeric feature (checked
        against the schema with the conditions), e.g. revisit_interval_days."""
        value = block.get("min_gap_days")
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())  # "30" in quotes: the number meant
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value.strip()):
            self.gap_refs.append((value.strip(), block.value_loc("min_gap_days")))
            return value.strip()
        self.problems.error("bad-value", f"min_gap_days 要写正整数天数或数字特征的名称，不能是 '{value}' / "
                                         f"min_gap_days must be a whole number of days (1 or more) or a numeric feature, not '{value}'",
                            block.value_loc("min_gap_days"),
                            fix="如 min_gap_days: 20，或 min_gap_days: revisit_interval_days（服务方案的回访间隔） / "
                                "e.g. min_gap_days: 20, or min_gap_days: revisit_interval_days")
        return None

    def _date_feature(self, block: YMap, key: str) -> str | None:
        """A task's ``due_by``, a message's ``send_on`` and either's ``period_of`` name a date feature;
        checked against the schema with the conditions."""
        value = block.get(key)
        if value is None:
            return None
        self.date_refs.append((key, str(value), block.value_loc(key)))
        return str(value)

    def _key_by(self, block: YMap) -> str | None:
        """``key_by`` names a feature; checked against the schema with the conditions."""
        value = block.get("key_by")
        if value is None:
            return None
        self.key_by_refs.append((str(value), block.value_loc("key_by")))
        return str(value)

    def _period(self, block: YMap) -> str:
        period = str(block.get("once_per", "day"))
        if period not in PERIODS:
            guess = did_you_mean(period, PERIODS)
            self.problems.error("bad-value", f"once_per 只能是 {', '.join(PERIODS)} 之一，不能是 '{period}'"
                                + (f"，是不是 '{guess}'？" if guess else "")
                                + f" / once_per must be one of {', '.join(PERIODS)}, not '{period}'"
                                + (f"; did you mean '{guess}'?" if guess else ""), block.value_loc("once_per"))
            return "day"
        return period

    def _table_rules(self, rs: RuleSet, path: Path, block: YMap) -> None:
        ref = str(block.get("table"))
        file_part, _, sheet = ref.partition("#")
        table_path = (path.parent / file_part).resolve()
        workbook_name = self.rel(table_path) if table_path.is_relative_to(self.root.resolve()) else file_part
        try:
            sheet_data = decision_table.read_table_sheet(table_path, workbook_name, sheet or None)
        except PolicyError as exc:
            for p in exc.problems:  # point at the YAML line when the workbook itself is missing
                self.problems.append(p if p.location.sheet else Problem(p.code, p.message, block.value_loc("table"), p.severity, p.fix))
            return
        if table_path not in self.files:
            self.files.append(table_path)
        kinds, names = sheet_data.kinds, sheet_data.names
        for col, kind in enumerate(kinds):
            if kind in ("input", "output") and not names[col]:
                self.problems.error("table-name-missing", "第 2 行要写这一列的名称：条件列写特征名，结果列写结果名 / "
                                                          "row 2 must name the feature (for 条件) or the result (for 结果) of this column",
                                    sheet_data.cell_loc(2, col))
        if "output" not in kinds:
            self.problems.error("table-no-output", "表格没有 结果 列：第 1 行至少要有一列写 结果 / "
                                                   "the table has no 结果 (output) column", sheet_data.cell_loc(1, 0))
        seen_ids: set[str] = set()
        for row_number, values in sheet_data.rows:
            rule_id, description, priority, parts, cells, outputs = None, "", 0, [], {}, []
            for col, kind in enumerate(kinds):
                value = values[col]
                if kind == "rule_id" and value is not None:
                    rule_id = str(value).strip()
                elif kind == "description" and value is not None:
                    description = str(value).strip()
                elif kind == "priority" and value is not None:
                    try:
                        priority = int(float(value))
                    except ValueError:
                        self.problems.error("bad-value", f"优先级要写整数，不能是 '{value}' / priority must be a whole number, "
                                                         f"not '{value}'", sheet_data.cell_loc(row_number, col))
                elif kind == "input" and names[col]:
                    cond = decision_table.cell_condition(names[col], value)
                    if cond is not None:
                        cells[names[col]] = str(value)
                        node = self._parse_condition(cond, sheet_data.cell_loc(row_number, col))
                        if node is not None:
                            parts.append((node, cond))
                elif kind == "output" and names[col]:
                    out = decision_table.output_value(value)
                    if out is not None:
                        outputs.append(SetTag(names[col], out, sheet_data.cell_loc(row_number, col)))
            if rule_id is None:
                rule_id = f"{rs.policy_id}#{row_number}"
                if "rule_id" in kinds:  # the table has a 规则编号 column, and this row left it empty
                    self.problems.warning("missing-rule-id", f"第 {row_number} 行没有规则编号；决策日志和 explain 把它叫作 {rule_id}，"
                                          "上面加了行它就会变 / "
                                          f"row {row_number} has no rule id; the decision log and "
                                          f"explain call it {rule_id}, which changes when rows are added above it",
                                          sheet_data.cell_loc(row_number, kinds.index("rule_id")),
                                          fix="在 规则编号 列给这一行写一个自己的编号，如下一个没用过的编号 / "
                                              "give the row its own id in the 规则编号 column, e.g. the next free one")
            if rule_id in seen_ids:
                self.problems.error("duplicate-rule-id", f"规则编号 '{rule_id}' 在这张表里出现了两次 / "
                                                         f"rule id '{rule_id}' appears twice in this table",
                                    sheet_data.cell_loc(row_number, kinds.index("rule_id") if "rule_id" in kinds else 0))
            seen_ids.add(rule_id)
            condition_text = " and ".join(text for _, text in parts) or "true"
            if len(parts) > 1:
                condition = expr.BoolOp("and", tuple(node for node, _ in parts))
            else:
                condition = parts[0][0] if parts else expr.parse("true")
            rs.rules.append(
                Rule(
                    rule_id=rule_id,
                    description=description,
                    condition=condition,
                    condition_text=condition_text,
                    outputs=outputs,
                    location=Location(file=sheet_data.workbook_name, sheet=sheet_data.sheet, cell=f"A{row_number}"),
                    priority=priority,
                    cells=cells,
                    cell_conditions=[node for node, _ in parts],
                )
            )
        rs.table_sheet = sheet_data  # kept for validate (overlaps, gaps)


def _declares_organization(path: Path) -> bool:
    """Does a file YAML could not read say ``kind: organization``?"""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"(?m)^kind\s*[:：]\s*['\"]?organization\b", text) is not None


def _shown(value: Any, limit: int = 20) -> str:
    """A value as the user wrote it, shortened for a message."""
    text = str(value).strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _quoted(value: Any) -> str:
    if isinstance(value, YList):
        return "a list"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return f"'{_shown(value)}'"


def _order_rulesets(rulesets: list[RuleSet], problems: Problems) -> list[RuleSet]:
    """Evaluation order inside a stage: a policy that reads a tag runs after the policy that sets it.

    Ties keep file order, so the order is stable and predictable for policy authors.
    """
    writers: dict[str, list[int]] = {}
    for i, rs in enumerate(rulesets):
        for name in rs.outputs_declared:
            writers.setdefault(name, []).append(i)
    deps: dict[int, set[int]] = {i: set() for i in range(len(rulesets))}
    for i, rs in enumerate(rulesets):
        for rule in rs.rules:
            if rule.condition is None:
                continue
            for name in expr.free_names(rule.condition):
                for w in writers.get(name, []):
                    if w != i:
                        deps[i].add(w)
    ordered: list[int] = []
    done: set[int] = set()
    while len(ordered) < len(rulesets):
        ready = [i for i in range(len(rulesets)) if i not in done and deps[i] <= done]
        if not ready:
            stuck = [rulesets[i] for i in range(len(rulesets)) if i not in done]
            circle = ", ".join(f"{rs.policy_id} ({rs.source_file})" for rs in stuck)
            problems.error("policy-cycle", f"这几个策略互相读对方的结果，绕成了一个圈：{circle} / "
                                           f"these policies read each other's results in a circle: {circle}", stuck[0].location)
            ordered.extend(i for i in range(len(rulesets)) if i not in done)
            break
        ordered.append(ready[0])
        done.add(ready[0])
    return [rulesets[i] for i in ordered]


def _kind_text(value: Any, zh: bool = False) -> str:
    """What kind of value a tag is set to, with the value: text ('高'), a number (3), yes/no (true);
    with ``zh`` for the Chinese half of a message: 文字（'高'）, 数字（3）, 是/否（true）."""
    kind = _type_for_value(value)
    shown = value_text(_shown(value) if isinstance(value, str) else value)
    if zh:
        what = "数字" if kind == expr.types.NUMBER else "是/否" if kind == expr.types.BOOL else "文字"
        return f"{what}（{shown}）"
    what = "a number" if kind == expr.types.NUMBER else "yes/no" if kind == expr.types.BOOL else "text"
    return f"{what} ({shown})"


def _output_phrase(out: SetTag | AddScore, zh: bool = False) -> str:
    if isinstance(out, AddScore):
        points = int(out.points) if float(out.points).is_integer() else out.points
        return f"是分数（{value_text(points)} 分，数字）" if zh else f"a score ({value_text(points)} points, a number)"
    return f"设为{_kind_text(out.value, zh=True)}" if zh else f"set to {_kind_text(out.value)}"


def _whole_days_problem(name: str, value: Any, stage: str) -> tuple[str, str] | None:
    """(message, fix) if ``value`` is not a whole number of days (0 or more), else None."""
    if whole_days(value) is not None:
        return None
    number = re.match(r"\s*(\d+)", value) if isinstance(value, str) else None
    example = number.group(1) if number else "90"
    return (f"{name} 要写整数天数，不能是 {value_text(value)} / {name} must be a whole number of days, not {value_text(value)}",
            f"只写天数，如 {example}：{stage} 阶段按它计算到下次回访的天数 / "
            f"write the number of days alone, e.g. {example}: the {stage} stage counts the days to the next revisit from it")


# A check per kind of stage_tag_requirements(): (name, value, stage reading it) -> (message, fix) or None.
_TAG_KIND_CHECKS = {"days": _whole_days_problem}


def feature_labels(config: FeatureConfig) -> dict[str, str]:
    """Chinese label → feature name, as docs/features.md lists them: 行业 → industry."""
    labels: dict[str, str] = {}
    for name, (_, description) in {**feature_catalog(config), **stage_feature_catalog()}.items():
        label = re.split(r"[\s(（]", description, maxsplit=1)[0]
        if label and not label.isascii():
            labels.setdefault(label, name)
    return labels


def _unknown_headers(rs: RuleSet, schema: dict[str, Any], known: dict[str, str | None], labels: dict[str, str],
                     written_as: dict[str, tuple[str, str]], problems: Problems) -> set[str]:
    """One error at the row-2 cell of a decision table's 条件 column whose name is no field, instead
    of one per row below it. The names reported, so the rows' own unknown-name errors are dropped."""
    sheet = getattr(rs, "table_sheet", None)  # set by _table_rules on a decision table's rule set
    reported: set[str] = set()
    if sheet is None:
        return reported
    for col, (kind, name) in enumerate(zip(sheet.kinds, sheet.names)):
        if kind != "input" or not name or name in schema or name in reported:
            continue
        reported.add(name)
        label_of = labels.get(name)
        best = did_you_mean(name, sorted(set(known) - {name}))
        if name in written_as:
            message, fix = written_as_text(name, *written_as[name])
        elif label_of:
            message = (f"没有叫 '{name}' 的字段，是不是 '{label_of}'（{name}）？ / "
                       f"unknown name '{name}' (did you mean '{label_of}' ({name})?)")
            fix = (f"第 2 行写字段名 {label_of}，不写中文名 {name}（字段见 docs/features.md） / row 2 must name the field:"
                   f" write {label_of}, not its Chinese label {name} (docs/features.md lists the fields)")
        elif best:
            where = known.get(best)
            message = (f"没有叫 '{name}' 的字段，是不是 '{best}'（{where} 设置的）？ / unknown name '{name}' (did you mean "
                       f"'{best}', set at {where}?)" if where else
                       f"没有叫 '{name}' 的字段，是不是 '{best}'？ / unknown name '{name}' (did you mean '{best}'?)")
            fix = set_at_fix(best, where) if where else f"改成 '{best}' / write '{best}'"
        else:
            message = f"没有叫 '{name}' 的字段 / unknown name '{name}'"
            fix = ("第 2 行要写字段名（或前面的策略设置的结果名），如 industry（行业）；字段见 docs/features.md / row 2 must name"
                   " a field (or a result an earlier policy sets), e.g. industry (行业); docs/features.md lists the fields")
        problems.error("unknown-name", message, sheet.cell_loc(2, col), fix=fix)
    return reported


MAX_RESULTS_SHOWN = 8


def _chinese_result_headers(rulesets: list[RuleSet], builtin: set[str], known: dict[str, str | None],
                            problems: Problems) -> dict[str, tuple[str, str]]:
    """A warning at the row-2 cell of a decision table's 结果 column headed in Chinese: it sets a new
    result of that name, which the other policies, templates and customers.xlsx do not know. Names the
    result a header like 服务团队 stands for (customers.xlsx's headers), else lists the results the
    policies set, with their headers. Returns result name → (Chinese header, its cell) for the former."""
    headers = {name: header for name, header in column_headers().items() if name not in builtin and name not in RUN_COUNTS}
    by_label = {header: name for name, header in headers.items()}
    results = sorted({n for n, where in known.items() if n not in builtin and where is not None and n.isascii()} | set(headers))
    written_as: dict[str, tuple[str, str]] = {}
    for rs in rulesets:
        sheet = getattr(rs, "table_sheet", None)
        if sheet is None:
            continue
        for col, (kind, name) in enumerate(zip(sheet.kinds, sheet.names)):
            if kind != "output" or not name or name.isascii():
                continue
            cell = sheet.cell_loc(2, col)
            label = name if name in by_label else did_you_mean(name, by_label)
            if label:
                result = by_label[label]
                written_as.setdefault(result, (name, str(cell)))
                problems.warning("table-result-label", f"结果列写的是中文名 '{name}'，是不是 '{result}'（{label}）？ / "
                                 f"the result column is headed '{name}' in Chinese (did you mean '{result}' ({label})?)", cell,
                                 fix=f"第 2 行写结果名 {result}，不写中文名 {name}：别的策略、模板和 customers.xlsx 按 {result} 读它 / "
                                     f"row 2 must name the result: write {result}, not its Chinese label {name}; other "
                                     f"policies, templates and customers.xlsx read it as {result}")
                continue
            shown = results[:MAX_RESULTS_SHOWN]
            more = "…" if len(results) > len(shown) else ""
            shown_zh = "、".join(f"{n}（{headers[n]}）" if n in headers else n for n in shown) + more
            shown_en = ", ".join(f"{n} ({headers[n]})" if n in headers else n for n in shown) + more
            problems.warning("table-result-label", f"结果列写的是中文名 '{name}'：它设置一个叫 '{name}' 的新结果 / "
                             f"the result column is headed '{name}' in Chinese: it sets a new result called '{name}'", cell,
                             fix=f"第 2 行写结果名（字母、数字和下划线），策略设置的结果有：{shown_zh} / row 2 must "
                                 f"name the result in letters, digits and underscores; the policies set: {shown_en}")
    return written_as


def _typecheck(rulesets: list[RuleSet], schema: dict[str, Any], problems: Problems,
               labels: dict[str, str] | None = None) -> None:
    """Check conditions in evaluation order; each policy's tags become names later policies may use.

    Also: a tag or score named like a built-in feature (it would replace the customer's own value);
    one tag set to different kinds of value (text here, a number there: a comparison would stop the
    run); a tag a stage module reads set to a value it cannot use (revisit_interval_days: '90天');
    a condition reading a result of a stage that runs later (always empty there: a warning)."""
    builtin = set(schema)  # features of the customer and of the stage modules, before any tag
    # A misspelt name is suggested from every feature and every tag or score any policy sets, also one
    # set by a policy checked later (another file, another stage): the schema so far has only earlier ones.
    # A tag's did-you-mean names where it is set: a table's result column by its row-2 cell.
    known: dict[str, str | None] = dict.fromkeys(builtin)
    for rs in rulesets:
        for rule in rs.rules:
            for out in rule.outputs:
                if isinstance(out, (SetTag, AddScore)) and out.name not in known:
                    where = out.location or rule.location
                    if where is not None and where.sheet and where.cell:
                        where = replace(where, cell=re.sub(r"\d+$", "2", where.cell))
                    known[out.name] = str(where) if where is not None else None
    written_as = _chinese_result_headers(rulesets, builtin, known, problems)
    computed_by = stage_feature_stages()
    required = stage_tag_requirements()
    first_of: dict[str, SetTag | AddScore] = {}  # tag or score → its first non-null output, in evaluation order
    for rs in rulesets:
        headers = _unknown_headers(rs, schema, known, labels or {}, written_as, problems)
        for rule in rs.rules:
            if rule.condition is None:
                continue
            # A table row is checked cell by cell, so a problem names the cell that has it.
            for node in rule.cell_conditions or [rule.condition]:
                try:
                    expr.check(node, schema, expect=expr.BOOL, suggest=known, written_as=written_as)
                except PolicyError as exc:
                    problems.extend(p for p in exc.problems if not (
                        p.code == "unknown-name" and any(p.message.startswith(f"没有叫 '{h}' 的字段") for h in headers)))
        _later_stage_reads(rs, computed_by, problems)
        for rule in rs.rules:
            for out in rule.outputs:
                if not isinstance(out, (SetTag, AddScore)):
                    continue
                where = out.location or rule.location
                if out.name in builtin:
                    stage = computed_by.get(out.name)
                    what = f"computed by the {stage} stage" if stage else "a built-in feature"
                    what_zh = f"由 {stage} 阶段计算的结果" if stage else "内置特征"
                    if isinstance(out, SetTag):
                        effect = "" if stage else (f": the rules after this one would see {value_text(out.value)} "
                                                   f"instead of the customer's own {out.name}")
                        effect_zh = "" if stage else f"：后面的规则会看到 {value_text(out.value)}，而不是客户自己的 {out.name}"
                        problems.error("tag-shadows-feature", f"'{out.name}' 是{what_zh}，策略不能设置它{effect_zh} / "
                                                              f"'{out.name}' is {what}; a policy cannot set it{effect}",
                                       where, fix="给这个结果换一个名称（内置特征见 docs/features.md） / "
                                                  "choose another name for the result (docs/features.md lists the built-in features)")
                    else:
                        problems.error("score-shadows-feature", f"'{out.name}' 是{what_zh}，分数不能用这个名称：每位客户的 "
                                       f"{out.name} 都会被这个分数（从 0 起算）取代 / '{out.name}' is {what}; a score cannot use "
                                       f"its name: every customer's {out.name} would be replaced by the score (which starts at 0)",
                                       where, fix="给这个分数换一个名称（内置特征见 docs/features.md） / "
                                                  "choose another name for the score (docs/features.md lists the built-in features)")
                    continue
                value = out.value if isinstance(out, SetTag) else out.points
                if value is None:  # an empty result goes with any kind of value
                    schema.setdefault(out.name, _type_for_value(value))
                    continue
                if isinstance(out, SetTag) and out.name in required:
                    kind, reader = required[out.name]
                    bad = _TAG_KIND_CHECKS[kind](out.name, value, reader)
                    if bad is not None:
                        problems.error("bad-tag-value", bad[0], where, fix=bad[1])
                        continue
                new_type = _type_for_value(value)
                first = first_of.get(out.name)
                if first is None:
                    first_of[out.name] = out
                    schema[out.name] = new_type
                    continue
                first_value = first.value if isinstance(first, SetTag) else first.points
                if _type_for_value(first_value) != new_type:
                    here = _output_phrase(out)
                    if isinstance(out, SetTag) and isinstance(first, SetTag):
                        here = here.removeprefix("set ")
                    problems.error("tag-mixed-kinds", f"'{out.name}' 在 {first.location or '前面的规则'} "
                                   f"{_output_phrase(first, zh=True)}，这里却{_output_phrase(out, zh=True)}：一个标签只能放一种值 / "
                                   f"'{out.name}' is {_output_phrase(first)} at "
                                   f"{first.location or 'an earlier rule'} and {here} here; one tag holds one kind of value",
                                   where, fix=f"让 {out.name} 在各处都设为同一种值（都是文字、都是数字或都是是/否），或给其中一个"
                                              f"结果换一个名称 / set {out.name} to the same kind of value everywhere (all text, "
                                              "all numbers or all yes/no), or give one of the results another name")


def _later_stage_reads(rs: RuleSet, computed_by: dict[str, str], problems: Problems) -> None:
    """A warning where a condition reads a feature a later stage's module computes: stages run in
    order (classification → sla → care → churn), so here it is always empty and the rule never sees it.
    Once per rule and name; for a decision table once per column, at its name in row 2."""
    own = STAGES.index(rs.stage)
    seen: set[tuple[Any, str]] = set()
    for rule in rs.rules:
        for root in rule.cell_conditions or ([rule.condition] if rule.condition is not None else []):
            for node in root.walk():
                if not isinstance(node, expr.Name):
                    continue
                later = computed_by.get(node.name)
                if later is None or STAGES.index(later) <= own:
                    continue
                loc = locate(root.origin, node.line, node.col)
                if loc.sheet is not None and loc.cell:
                    loc = replace(loc, cell=loc.cell.rstrip("0123456789") + "2")  # the column's name
                    key: tuple[Any, str] = (loc.cell, node.name)
                else:
                    key = (rule.rule_id, node.name)
                if key in seen:
                    continue
                seen.add(key)
                move = f"the {later} stage" + (" or later" if later != STAGES[-1] else "")
                move_zh = f"{later} 阶段" + ("或之后的阶段" if later != STAGES[-1] else "")
                problems.warning("reads-later-stage", f"'{node.name}' 由 {later} 阶段计算，{later} 在 {rs.stage} 之后才运行："
                                 f"在这里它总是空的（null） / '{node.name}' is computed by the {later} stage, which runs after "
                                 f"{rs.stage}: here it is always empty (null)", loc,
                                 fix=f"把这条规则移到 {move_zh}（写 'kind: {later}' 的策略文件） / "
                                     f"move the rule to {move} (a policy file with 'kind: {later}')")


def _replaces_cycles(rulesets: list[RuleSet], loader: _Loader) -> None:
    """Rules that replace each other (A replaces B, B replaces A, or longer rings): when both fire for a
    customer, each task holds the other back and neither is issued. An error at the ``replaces`` that
    closes the ring."""
    edges: dict[str, list[str]] = {}
    for rs in rulesets:
        for rule in rs.rules:
            for out in rule.outputs:
                if isinstance(out, TaskSpec):
                    edges.setdefault(rule.rule_id, []).extend(r for r in out.replaces if r != rule.rule_id)
    where = {rule_id: loc for rule_id, loc in reversed(loader.replaces_refs)}  # the first place each id is named
    reported: set[frozenset[str]] = set()
    for start in edges:
        path, todo = [start], [(start, iter(edges.get(start, ())))]
        while todo:
            node, nexts = todo[-1]
            nxt = next(nexts, None)
            if nxt is None:
                todo.pop()
                path.pop()
                continue
            if nxt == start:
                ring = frozenset(path)
                if ring not in reported:
                    reported.add(ring)
                    chain = " → ".join([*path, start])
                    loader.problems.error("replaces-cycle", f"这几条规则的任务互相取代（{chain}）：同时成立时哪条任务都不会派出 / "
                                          f"these rules replace each other ({chain}): when they fire together, no task is issued",
                                          where.get(start), fix="只在一条规则上写 replaces（通常是更具体的那条，如流失回访取代定期回访） / "
                                          "keep replaces on one of them only (the more specific one)")
            elif nxt not in path and nxt in edges:
                path.append(nxt)
                todo.append((nxt, iter(edges[nxt])))


def _gap_families(rulesets: list[RuleSet]) -> None:
    """Fill in ``gap_family`` of every task with ``min_gap_days``: the rules whose earlier tasks count
    for its gap besides its own. ``A replaces B`` means A's work includes B's (a churn revisit or an
    apology call is also the periodic revisit), so a recent A holds back B; not the other way round:
    a routine revisit last week does not do the apology for a complaint. Rules that replace the same
    rule (siblings: the apology call and the churn revisit both replace the periodic revisit) are one
    visit too, so each counts for the other's gap (``gap_siblings`` says which replaced rule they share,
    for the guard's reason); a sibling without ``min_gap_days`` is never held back."""
    replaced_by: dict[str, set[str]] = {}
    formerly = {rule.rule_id: rule.formerly for rs in rulesets for rule in rs.rules if rule.formerly}
    for rs in rulesets:
        for rule in rs.rules:
            for out in rule.outputs:
                if isinstance(out, TaskSpec):
                    for other in out.replaces:
                        replaced_by.setdefault(other, set()).add(rule.rule_id)
    for rs in rulesets:
        for rule in rs.rules:
            for i, out in enumerate(rule.outputs):
                if isinstance(out, TaskSpec) and out.min_gap_days is not None:
                    family = replaced_by.get(rule.rule_id, set()) - {rule.rule_id}
                    # sibling → the first replaced rule (in replaces order) it shares; not a rule this one
                    # replaces itself: that one's work is part of this one's, not the whole of it
                    siblings: dict[str, str] = {}
                    for shared in out.replaces:
                        for other in sorted(replaced_by.get(shared, set()) - family - set(out.replaces) - {rule.rule_id}):
                            siblings.setdefault(other, shared)
                    # A family rule's former ids (formerly:) are that rule too: its earlier tasks count.
                    siblings.update((old, shared) for other, shared in list(siblings.items()) for old in formerly.get(other, ()))
                    family |= {old for other in family for old in formerly.get(other, ())}
                    if family or siblings:
                        rule.outputs[i] = replace(out, gap_family=tuple(sorted(family | set(siblings))),
                                                  gap_siblings=tuple(sorted(siblings.items())))


def load_policies(root: Path) -> PolicySet:
    """Load and check every policy file under ``root``; raise PolicyError listing all errors."""
    root = root.resolve()
    if not root.is_dir():
        raise PolicyError(Problem(code="policy-folder-missing", message=f"找不到策略文件夹 {root} / policy folder not found: {root}",
                                  location=Location(file=str(root)),
                                  fix="用 --policies 指定存放策略文件的文件夹 / pass --policies DIR with the folder that holds your "
                                      "policy files"))
    loader = _Loader(root)
    loader.read_documents()
    features = loader.features()
    org = loader.organization()
    parsed = loader.rule_policies(org)
    schema = _base_schema(features)
    seen_ids: dict[str, Location] = {}
    rulesets: dict[str, list[RuleSet]] = {}
    for rs in parsed:
        for rule in rs.rules:
            if rule.rule_id in seen_ids and not rule.location.sheet:
                loader.problems.error("duplicate-rule-id", f"规则编号 '{rule.rule_id}' 已经在 {seen_ids[rule.rule_id]} 用过 / "
                                                           f"rule id '{rule.rule_id}' is already used at {seen_ids[rule.rule_id]}",
                                      rule.location, fix="所有策略文件里的规则编号都不能重复，给这条规则换一个编号 / "
                                                         "rule ids must be unique across all policy files")
            seen_ids.setdefault(rule.rule_id, rule.location)
        rulesets.setdefault(rs.stage, []).append(rs)
    ordered_all: list[RuleSet] = []
    for stage in STAGES:
        rulesets[stage] = _order_rulesets(rulesets.get(stage, []), loader.problems)
        ordered_all.extend(rulesets[stage])
    # Types are checked once the files themselves are sound: a policy that failed to load would
    # otherwise make every name it sets look unknown elsewhere.
    if not loader.problems.errors:
        _typecheck(ordered_all, schema, loader.problems, feature_labels(features))
        for name, loc in loader.key_by_refs:
            if name not in schema:
                guess = did_you_mean(name, schema)
                loader.problems.error("unknown-name", f"key_by 写的 '{name}' 不是特征或标签" + (f"，是不是 '{guess}'？" if guess else "")
                                      + f" / key_by names '{name}', which is not a feature or tag"
                                      + (f"; did you mean '{guess}'?" if guess else ""), loc)
        examples = {"due_by": "post_purchase_followup_by", "send_on": "next_birthday_date", "period_of": "next_birthday_date"}
        for key, name, loc in loader.date_refs:
            # send_on may also name a time (survey_resolved_time): the message goes no earlier than that moment.
            types = (expr.types.DATE, expr.types.DATETIME) if key == "send_on" else (expr.types.DATE,)
            if schema.get(name) not in types:
                guess = did_you_mean(name, [n for n, t in schema.items() if t in types])
                loader.problems.error("unknown-name", f"{key} 写的 '{name}' 不是日期特征" + (f"，是不是 '{guess}'？" if guess else "")
                                      + f" / {key} names '{name}', which is not a date feature"
                                      + (f"; did you mean '{guess}'?" if guess else ""), loc,
                                      fix=f"{key} 要写一个日期特征，如 {examples[key]} / {key} takes a date feature, e.g. {examples[key]}")
        task_rules = {rule.rule_id for rs in ordered_all for rule in rs.rules if any(isinstance(o, TaskSpec) for o in rule.outputs)}
        for rule_id, loc in loader.replaces_refs:
            if rule_id not in task_rules:
                known = rule_id in seen_ids
                guess = None if known else did_you_mean(rule_id, sorted(task_rules))
                loader.problems.error("unknown-rule", f"replaces 写的 '{rule_id}' "
                                      + ("这条规则没有任务" if known else "不是任何规则的编号") + (f"，是不是 '{guess}'？" if guess else "")
                                      + f" / replaces names '{rule_id}', which is "
                                      + ("a rule without a task" if known else "no rule") + (f"; did you mean '{guess}'?" if guess else ""),
                                      loc, fix="replaces 写的是有了这条任务就不再需要其任务的规则编号，如 CARE-REVISIT-DUE / "
                                               "replaces lists the ids of rules whose task this task makes unnecessary, e.g. CARE-REVISIT-DUE")
        _replaces_cycles(ordered_all, loader)
        numbers = sorted(n for n, t in schema.items() if t == expr.types.NUMBER)
        for name, loc in loader.gap_refs:
            if schema.get(name) == expr.types.NUMBER:
                continue
            guess = None if name in schema else did_you_mean(name, numbers)
            what = ("不是数字特征" if name in schema else "不是特征或标签") + (f"，是不是 '{guess}'？" if guess else "")
            loader.problems.error("unknown-name", f"min_gap_days 写的 '{name}' {what} / min_gap_days names '{name}', which is "
                                  + ("not a numeric feature" if name in schema else "not a feature or tag")
                                  + (f"; did you mean '{guess}'?" if guess else ""), loc,
                                  fix="写正整数天数，或数字特征（如 revisit_interval_days） / a whole number of days, "
                                      "or a numeric feature such as revisit_interval_days")
        _gap_families(ordered_all)
    if loader.problems.errors:
        raise PolicyError(loader.problems.errors)
    return PolicySet(
        root=root,
        files=sorted(set(loader.files)),
        features=features,
        organization=org,
        rulesets=rulesets,
        schema=schema,
        documents=loader.documents,
        warnings=[p for p in loader.problems if p.severity != "error"],
    )
