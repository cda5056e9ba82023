"""Columns the policies need that the export does not have.

docs/inputs.md lets an export leave out optional columns (行业, 地区, 互动类型...), and then every
customer's value is empty. That is right for a column nobody uses, but a rule or table that reads
``industry`` then quietly never matches. ``unread_column_warnings`` says so once per column, with
the headers tried, and points at a header the reader did not recognise if one looks like it
(客户行业 for 行业: add it to the aliases in columns.yaml).
"""
from __future__ import annotations

from pathlib import Path

from jinja2 import DictLoader

from engine import expr
from engine.columns import ColumnsSpec, header_key
from engine.errors import WARNING, Location, PolicyError, Problem
from engine.features import feature_columns, feature_source_columns
from engine.model import SheetColumns
from engine.policy.loader import PolicySet
from engine.policy.model import MessageSpec, TaskSpec
from engine.render import make_environment, template_fields
from engine.validate import settings_rules

MAX_ALIASES_SHOWN = 6


def policy_reads(policyset: PolicySet, templates: Path) -> dict[str, Location]:
    """Each name the policies read from a customer (features, tags, contact fields) → where it is first
    read: rule conditions and decision-table inputs, stage settings' ``when:``, a task's or message's
    key and dates, and the ``customer.<name>`` of message templates and task texts."""
    reads: dict[str, Location] = {}

    def add(names, where: Location) -> None:
        for name in sorted(names):
            reads.setdefault(name, where)

    files = make_environment(templates)
    texts = make_environment(templates)
    read_by_file: dict[str, set[str]] = {}  # a template many rules send is parsed once
    for rs in policyset.all_rulesets():
        for rule in rs.rules:
            if rule.condition is not None:
                add(expr.free_names(rule.condition), rule.location)
            for out in rule.outputs:
                if isinstance(out, MessageSpec):
                    add({n for n in (out.key_by, out.send_on) if n}, rule.location)
                    channels = policyset.organization.channels if out.channel == "preferred" else [out.channel]
                    for channel in channels:
                        name = f"messages/{channel}/{out.template}.txt"
                        if name not in read_by_file:
                            read_by_file[name] = _customer_fields(files, name)
                        add(read_by_file[name], rule.location)
                elif isinstance(out, TaskSpec):
                    add({n for n in (out.key_by, out.due_by) if n}, rule.location)
                    for text in (out.title, out.script):
                        if text and "{" in text:  # plain text reads nothing
                            texts.loader = DictLoader({"text": text})
                            add(_customer_fields(texts, "text"), rule.location)
    for _stage, _rule_id, when, where in settings_rules(policyset):
        try:
            add(expr.free_names(expr.parse(when)), where)
        except PolicyError:  # validate has said what is wrong with it
            pass
    return reads


def _customer_fields(env, name: str) -> set[str]:
    """The ``customer.<field>`` names a template reads (none if it cannot be read: validate said why)."""
    try:
        used = template_fields(env, name)
    except PolicyError:
        return set()
    return {f.partition(".")[2] for f in used if f.startswith("customer.")}


def unread_column_warnings(policyset: PolicySet, templates: Path, sheets: list[SheetColumns],
                           columns: ColumnsSpec) -> list[Problem]:
    """A warning per optional export column that a name the policies read is computed from
    (``feature_columns``) and that a sheet read for its table lacks: every row of that sheet has the
    value empty. ``sheets``: what the reader read (``Dataset.sheets``)."""
    sources = feature_source_columns(policyset.features)
    if all(f in s.fields for s in sheets for table, f in sources if table == s.table):
        return []  # the usual export: the policies' texts need not be parsed again
    reads = policy_reads(policyset, templates)
    needed: dict[tuple[str, str], list[str]] = {}  # (table, field) → the names read that come from it
    for name in reads:
        for column in feature_columns(name, policyset.features):
            needed.setdefault(column, []).append(name)
    warnings = []
    for (table, field_name), names in needed.items():
        spec = columns.tables[table].fields.get(field_name)
        read = [s for s in sheets if s.table == table]
        lacking = [s for s in read if field_name not in s.fields]
        if spec is None or not lacking:
            continue  # not in columns.yaml (then the loader said so), or no sheet of that table (said too)
        warnings.append(_warning(table, spec.name, spec.aliases, names, reads[names[0]], lacking,
                                 len(lacking) == len(read), columns.path))
    return warnings


def _warning(table: str, field_name: str, aliases: tuple[str, ...], names: list[str], first: Location,
             lacking: list[SheetColumns], everyone: bool, columns_file: str) -> Problem:
    label = aliases[0]
    sheets_zh = "、".join(f"{s.file} 工作表 {s.sheet}" for s in lacking)
    sheets_en = ", ".join(f"sheet {s.sheet} of {s.file}" for s in lacking)
    shown = aliases[:MAX_ALIASES_SHOWN]
    more = "…" if len(aliases) > len(shown) else ""
    tried_zh, tried_en = "、".join(shown) + more, ", ".join(shown) + more
    names_zh, names_en = "、".join(names), ", ".join(names)
    if names == [field_name]:
        what_zh, what_en = f"{field_name}（{label}；见 {first} 等处）", f"{field_name} ({label}; read at {first} and maybe elsewhere)"
    else:
        what_zh = f"{names_zh}（来自{label}列 {table}.{field_name}；见 {first} 等处）"
        what_en = f"{names_en} (from the {label} column, {table}.{field_name}; read at {first} and maybe elsewhere)"
    # A header the reader did not recognise that looks like one of the aliases (客户行业 for 行业).
    keys = [k for k in map(header_key, aliases) if len(k) >= 2]
    alike = list(dict.fromkeys(h for s in lacking for h in s.unused
                               if any(k in header_key(h) or header_key(h) in k for k in keys if header_key(h))))
    unrecognised_zh = f"；有一列 {'、'.join(alike)} 没有识别" if alike else ""
    unrecognised_en = f"; column {', '.join(alike)} was not recognised" if alike else ""
    if not everyone:  # another sheet of the table has the column
        then_zh, then_en = f"这些工作表各行的{label}都按空值处理", f"the rows of these sheets are read with no {field_name}"
    elif table == "customers":
        then_zh, then_en = f"所有客户的 {names_zh} 都按空值处理", f"every customer's {names_en} is taken as empty"
    else:
        then_zh = f"所有客户的 {names_zh} 都按没有{label}计算（为空或 0）"
        then_en = f"every customer's {names_en} is computed as if no row had a {field_name} (empty or 0)"
    message = (f"策略用到 {what_zh}，但 {sheets_zh} 里没有这一列（试过的列名：{tried_zh}）{unrecognised_zh}，{then_zh} / "
               f"the policies read {what_en}, but {sheets_en} has no such column (headers tried: {tried_en})"
               f"{unrecognised_en}: {then_en}")
    if alike:
        fix = (f"若 {'、'.join(alike)} 就是{label}，把这个表头加到 {columns_file} 的 {table}.{field_name}.aliases 下 / "
               f"if {', '.join(alike)} holds {field_name}, add that header to {table}.{field_name}.aliases in {columns_file}")
    else:
        fix = (f"在导出里加上{label}列，或把导出里它的表头加到 {columns_file} 的 {table}.{field_name}.aliases 下；"
               f"若没有这项数据，检查用到 {names_zh} 的规则 / add the {label} column to the export, or add its header to "
               f"{table}.{field_name}.aliases in {columns_file}; if there is no such data, review the rules that read {names_en}")
    return Problem("unread-column", message, Location(file=lacking[0].file, sheet=lacking[0].sheet), WARNING, fix=fix)
