"""Columns the policies need that the export does not have.

docs/inputs.md lets an export leave out optional columns (行业, 地区, 互动类型...), and then every
customer's value is empty. That is right for a column nobody uses, but a rule or table that reads
``industry`` then quietly never matches. ``unread_column_warnings`` says so once per column, with
the headers tried, and points at a header the reader did not recognise if one looks like it
(客户行业 for 行业: add it to the aliases in columns.yaml).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import DictLoader

from engine import expr
from engine.columns import ColumnsSpec, header_key
from engine.errors import WARNING, Location, PolicyError, Problem
from engine.features import feature_columns, feature_source_columns
from engine.model import SheetColumns
from engine.policy.loader import PolicySet
from engine.outputs import STAGE_LABELS
from engine.policy.model import MessageSpec, TaskSpec
from engine.readers import TABLE_ZH
from engine.render import make_environment, template_fields
from engine.stages import ColumnRead, stage_column_reads, stage_feature_columns, stage_feature_stages
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


@dataclass(frozen=True)
class _Reader:
    """Something that reads a column, as the warning names it: a name rules read, or a stage setting."""

    where: Location
    name: str | None = None  # the name rules read; None for a stage module's own setting
    stage: str | None = None  # the stage module that works the name out, or whose setting it is
    setting: str | None = None


def unread_column_warnings(policyset: PolicySet, templates: Path, sheets: list[SheetColumns],
                           columns: ColumnsSpec) -> list[Problem]:
    """A warning per optional export column that a sheet read for its table lacks (every row of that
    sheet has the value empty) and that is read: by a name the policies read (``feature_columns``, or
    ``FEATURE_COLUMNS`` of a stage module), or by a stage module itself (its ``column_reads``: the SLA
    clocks, churn reasons). ``sheets``: what the reader read (``Dataset.sheets``)."""
    stage_columns = stage_feature_columns()
    module_reads = stage_column_reads(policyset)
    sources = (feature_source_columns(policyset.features) | {c for cs in stage_columns.values() for c in cs}
               | {(r.table, r.field) for _stage, r in module_reads})
    if all(f in s.fields for s in sheets for table, f in sources if table == s.table):
        return []  # the usual export: the policies' texts need not be parsed again
    needed: dict[tuple[str, str], list[_Reader]] = {}  # (table, field) → what reads it
    stages = stage_feature_stages()
    for name, where in policy_reads(policyset, templates).items():
        for column in feature_columns(name, policyset.features):
            needed.setdefault(column, []).append(_Reader(where, name))
        for column in stage_columns.get(name, ()):
            needed.setdefault(column, []).append(_Reader(where, name, stages[name]))
    for stage, read in module_readers(module_reads):
        needed.setdefault((read.table, read.field), []).append(_Reader(read.where, stage=stage, setting=read.setting))
    warnings = []
    for (table, field_name), readers in needed.items():
        spec = columns.tables[table].fields.get(field_name)
        read = [s for s in sheets if s.table == table]
        lacking = [s for s in read if field_name not in s.fields]
        if spec is None or not lacking:
            continue  # not in columns.yaml (then the loader said so), or no sheet of that table (said too)
        warnings.append(_warning(table, spec.name, spec.aliases, readers, lacking, len(lacking) == len(read), columns.path))
    return warnings


def module_readers(module_reads: list[tuple[str, ColumnRead]]) -> list[tuple[str, ColumnRead]]:
    """The first setting of each stage that reads a column (type is read by track_types and by every
    target's when: naming the first is enough)."""
    seen: set[tuple[str, str, str]] = set()
    first = []
    for stage, read in module_reads:
        if (stage, read.table, read.field) not in seen:
            seen.add((stage, read.table, read.field))
            first.append((stage, read))
    return first


def _named(readers: list[_Reader]) -> tuple[str, str]:
    """The readers as the warning names them (Chinese, English): the names rules read, those a stage
    module works out grouped after them, then the stage settings."""
    plain = [r.name for r in readers if r.name and not r.stage]
    worked: dict[str, list[str]] = {}
    for r in readers:
        if r.name and r.stage:
            worked.setdefault(r.stage, []).append(r.name)
    settings = [r for r in readers if r.setting]
    zh = plain + [f"{STAGE_LABELS[stage]}模块算出的 {'、'.join(names)}" for stage, names in worked.items()]
    zh += [f"{STAGE_LABELS[r.stage]}设置 {r.setting}" for r in settings]
    en = plain + [f"{', '.join(names)} worked out by the {stage} module" for stage, names in worked.items()]
    en += [f"the {_STAGE_EN.get(r.stage, r.stage)} setting {r.setting}" for r in settings]
    return "、".join(zh), ", ".join(en)


_STAGE_EN = {"sla": "SLA"}


def _warning(table: str, field_name: str, aliases: tuple[str, ...], readers: list[_Reader],
             lacking: list[SheetColumns], everyone: bool, columns_file: str) -> Problem:
    label, first = aliases[0], readers[0].where
    sheets_zh = "、".join(f"{s.file} 工作表 {s.sheet}" for s in lacking)
    sheets_en = ", ".join(f"sheet {s.sheet} of {s.file}" for s in lacking)
    shown = aliases[:MAX_ALIASES_SHOWN]
    more = "…" if len(aliases) > len(shown) else ""
    tried_zh, tried_en = "、".join(shown) + more, ", ".join(shown) + more
    names_zh, names_en = _named(readers)
    if [r.name for r in readers if not r.stage] == [field_name] and len(readers) == 1:
        what_zh, what_en = f"{field_name}（{label}；见 {first} 等处）", f"{field_name} ({label}; read at {first} and maybe elsewhere)"
    else:
        what_zh = f"{names_zh}（来自{label}列 {table}.{field_name}；见 {first} 等处）"
        what_en = f"{names_en} (from the {label} column, {table}.{field_name}; read at {first} and maybe elsewhere)"
    # What the readers get: a name rules read is per customer; a stage setting reads every row.
    features_zh = "、".join(r.name for r in readers if r.name)
    features_en = ", ".join(r.name for r in readers if r.name)
    # A header the reader did not recognise that looks like one of the aliases (客户行业 for 行业).
    keys = [k for k in map(header_key, aliases) if len(k) >= 2]
    alike = list(dict.fromkeys(h for s in lacking for h in s.unused
                               if any(k in header_key(h) or header_key(h) in k for k in keys if header_key(h))))
    unrecognised_zh = f"；有一列 {'、'.join(alike)} 没有识别" if alike else ""
    unrecognised_en = f"; column {', '.join(alike)} was not recognised" if alike else ""
    if not everyone:  # another sheet of the table has the column
        then_zh, then_en = f"这些工作表各行的{label}都按空值处理", f"the rows of these sheets are read with no {field_name}"
    elif any(r.setting for r in readers):  # a stage module reads the column itself
        then_zh = f"所有{TABLE_ZH[table]}的{label}都按空值处理" + (f"，{features_zh} 也按此计算" if features_zh else "")
        then_en = f"every row of {table} is read with no {field_name}" + (f", and {features_en} worked out so" if features_en else "")
    elif any(r.stage for r in readers):
        then_zh = f"所有客户的 {features_zh} 都按没有{label}计算"
        then_en = f"every customer's {features_en} is worked out as if there were no {field_name}"
    elif table == "customers":
        then_zh, then_en = f"所有客户的 {features_zh} 都按空值处理", f"every customer's {features_en} is taken as empty"
    else:
        then_zh = f"所有客户的 {features_zh} 都按没有{label}计算（为空或 0）"
        then_en = f"every customer's {features_en} is computed as if no row had a {field_name} (empty or 0)"
    message = (f"策略用到 {what_zh}，但 {sheets_zh} 里没有这一列（试过的列名：{tried_zh}）{unrecognised_zh}，{then_zh} / "
               f"the policies read {what_en}, but {sheets_en} has no such column (headers tried: {tried_en})"
               f"{unrecognised_en}: {then_en}")
    if not any(r.setting for r in readers):
        review_zh, review_en = f"用到 {features_zh} 的规则", f"the rules that read {features_en}"
    else:
        review_zh, review_en = f" {names_zh}", names_en
    if alike:
        fix = (f"若 {'、'.join(alike)} 就是{label}，把这个表头加到 {columns_file} 的 {table}.{field_name}.aliases 下 / "
               f"if {', '.join(alike)} holds {field_name}, add that header to {table}.{field_name}.aliases in {columns_file}")
    else:
        fix = (f"在导出里加上{label}列，或把导出里它的表头加到 {columns_file} 的 {table}.{field_name}.aliases 下；"
               f"若没有这项数据，检查{review_zh} / add the {label} column to the export, or add its header to "
               f"{table}.{field_name}.aliases in {columns_file}; if there is no such data, review {review_en}")
    return Problem("unread-column", message, Location(file=lacking[0].file, sheet=lacking[0].sheet), WARNING, fix=fix)
