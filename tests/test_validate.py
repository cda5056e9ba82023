"""crm-engine validate: one broken copy of the shipped policies per problem kind, checking the exact
line the user sees (location, severity, message, fix), the JSON form and the exit code."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from engine.cli_tools import validate_command
from engine.errors import PolicyError
from engine.validate import format_problem, load_checked_policies, validate_policies

from conftest import SHIPPED_POLICIES, edit

Place = tuple[str, str, int] | str  # (file, text on the line, column), or a workbook cell as printed


def at(folder: Path, place: Place) -> str:
    """``file:line:col`` of the line holding the text (policy files change; their content stays
    findable); a workbook cell (``file!sheet!A4``) as given."""
    if isinstance(place, str):
        return place
    file, text, col = place
    n = next(n for n, line in enumerate((folder / file).read_text(encoding="utf-8").splitlines(), start=1) if text in line)
    return f"{file}:{n}:{col}"


def lines(folder: Path) -> list[str]:
    return [format_problem(p) for p in validate_policies(folder)]


def set_cells(path: Path, cells: dict[str, object], delete_row: int | None = None) -> None:
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    for ref, value in cells.items():
        ws[ref] = value
    if delete_row:
        ws.delete_rows(delete_row)
    wb.save(path)


def yaml_edit(file: str, old: str, new: str) -> Callable[[Path], None]:
    return lambda folder: edit(folder / file, old, new)


def table_edit(file: str, cells: dict[str, object], delete_row: int | None = None) -> Callable[[Path], None]:
    return lambda folder: set_cells(folder / file, cells, delete_row)


def case(change: Callable[[Path], None], where: Place, text: str, *, also: Place | None = None, same_code: int = 1,
         id: str):
    """One way to break the policies: the line validate must print (``where: text``; ``{also}`` in the
    text stands for a second place) and how many lines carry the same problem code."""
    return pytest.param(change, where, text, also, same_code, id=id)


ONE_BREAK_EACH = [
    case(yaml_edit("classification/need_type.yaml", "  - id: NT-SPECIAL-SUGGESTIONS\n    description:", "  - description:"),
         ("classification/need_type.yaml", "近一年提出3条及以上建议", 5),
         "错误 error: 规则缺少 'id' 字段 / a rule needs a 'id' field [missing-field] — 修改建议: "
         "加上一行 id: ...（和同一级的其他字段对齐） / add a 'id:' line, indented like the other fields", id="missing-field"),
    case(yaml_edit("churn/marketing.yaml", "      template: offer", "      templat: offer"),
         ("churn/marketing.yaml", "templat: offer", 7),
         "错误 error: 消息（message:）里没有 'templat' 这个字段，是不是 'template'？ / unknown field 'templat' in a message; "
         "did you mean 'template'? [unknown-field] — 修改建议: 改成 'template' / rename it to 'template'",
         id="unknown-field-did-you-mean"),
    case(yaml_edit("classification/need_type.yaml", "when: suggestion_count_365d >= 3", "when: signed_date >= 3"),
         ("classification/need_type.yaml", "when: signed_date >= 3", 11),
         "错误 error: signed_date（日期）不能和 3（数字）比较 / cannot compare signed_date (date) with 3 (number) [type-mismatch]", id="type-mismatch"),
    case(yaml_edit("churn/marketing.yaml", "      template: offer", "      template: ofer"),
         ("churn/marketing.yaml", "- id: CL-LOW-VALUE-OFFER", 5),
         "错误 error: 规则 CL-LOW-VALUE-OFFER 在 sms 渠道发送模板 'ofer'，但 templates/messages/sms/ofer.txt 不存在；是不是 offer.txt？ / "
         "rule CL-LOW-VALUE-OFFER sends template 'ofer' on channel sms, but templates/messages/sms/ofer.txt does not exist (did "
         "you mean offer.txt?) [unknown-template] — 修改建议: 把模板名称改成 'offer'，或把 offer.txt 改名为 ofer.txt / "
         "write template: offer, or rename offer.txt to ofer.txt",
         same_code=3, id="unknown-template"),  # sms, email, wechat
    case(yaml_edit("churn/marketing.yaml", "      params:\n        offer: 本月新品上市，老客户下单享九五折\n", ""),
         ("churn/marketing.yaml", "- id: CL-LOW-VALUE-OFFER", 5),
         "错误 error: 规则 CL-LOW-VALUE-OFFER 使用的 模板 templates/messages/sms/offer.txt 需要 params.offer，但规则的 params 中没有 'offer' / "
         "template templates/messages/sms/offer.txt, used by rule CL-LOW-VALUE-OFFER, needs params.offer, but the rule's params have "
         "no 'offer' [template-param-missing] — 修改建议: 在这条规则的 message 下加上 params: {offer: ...}，或在模板中写 "
         "params.get('offer') 使它可选 / add params: {offer: ...} under this rule's message, or write params.get('offer') in the "
         "template to make it optional",
         same_code=3, id="template-param-missing"),
    case(yaml_edit("classification/actions.yaml", "title: 联系潜在客户，了解兴趣点和关注点", "title: 联系{{ customer.nmae }}"),
         ("classification/actions.yaml", "- id: CL-PROSPECT-CONVERT", 5),
         "错误 error: 规则 CL-PROSPECT-CONVERT 的任务标题 使用了 customer.nmae，但客户没有 'nmae' 这个字段或分类；是不是 'name'？ / "
         "the title of rule CL-PROSPECT-CONVERT's task uses customer.nmae, but customers have no field or tag 'nmae'; did you mean "
         "'name'? [template-variable] — 修改建议: 字段名见 docs/features.md；分类结果用规则 set: 的名称 / the fields are listed in "
         "docs/features.md; a tag is named as a rule's set: names it", id="task-title-variable"),
    case(table_edit("tables/value_tier.xlsx", {"D4": ">= 150000"}),  # VT-2 now only catches VT-1's customers
         "tables/value_tier.xlsx!价值分层!A4",
         "警告 warning: 规则 VT-2 永远不会生效：命中策略为 first，满足它的客户都会先满足 VT-1 [unreachable-rule] — 修改建议: "
         "把 VT-2 移到 VT-1 之前，或删除/修改这条规则", id="table-row-shadowed-by-a-wider-earlier-row"),
    case(yaml_edit("classification/risk_level.yaml", "when: open_complaints >= 2 or min_satisfaction_365d <= 2", "when: true"),
         ("classification/risk_level.yaml", "- id: RISK-MEDIUM", 5),
         "警告 warning: 规则 RISK-MEDIUM 永远不会生效：命中策略为 first，满足它的客户都会先满足 RISK-HIGH [unreachable-rule] — 修改建议: "
         "把 RISK-MEDIUM 移到 RISK-HIGH 之前，或删除/修改这条规则", same_code=2, id="yaml-rules-after-when-true"),  # and RISK-LOW
    case(yaml_edit("classification/service_plan.yaml", "hit_policy: first", "hit_policy: unique"),
         "tables/service_plan.xlsx!服务方案!A4",
         "错误 error: 唯一命中（unique）的表中 SP-1 和 SP-2 可能同时满足，例如：need_type = '战略'、value_tier = '高' [table-overlap] "
         "— 修改建议: 收紧 SP-1 或 SP-2 的条件使它们互不重叠，或把 hit_policy 改为 first",
         same_code=6, id="overlapping-rows-in-a-unique-table"),  # 战略 or 特殊需求 against each value tier: 2 × 3 pairs
    case(table_edit("tables/value_tier.xlsx", {}, delete_row=7),  # remove the catch-all row VT-5
         "tables/value_tier.xlsx!价值分层!A7",
         "错误 error: value_tier 声明覆盖所有情况（complete: true），但没有任何一行适用于：days_since_last_order = 89、frequency_365d = 2、"
         "monetary_365d = 9999 [table-gap] — 修改建议: 为这种情况加一行（规则），或在最后加一行所有条件都为 - 的兜底行",
         id="gap-in-a-complete-table"),
    # value_tier always has one of 高/中/低 (its table is complete); member_level is free text.
    case(table_edit("tables/service_plan.xlsx", {"C2": "member_level"}),
         "tables/service_plan.xlsx!服务方案!A8",
         "错误 error: service_plan 声明覆盖所有情况（complete: true），但没有任何一行适用于：need_type = '普通'、member_level 为其他值 "
         "[table-gap] — 修改建议: 为这种情况加一行（规则），或在最后加一行所有条件都为 - 的兜底行", id="gap-with-a-free-text-column"),
    case(table_edit("tables/value_tier.xlsx", {"A5": "LC-SIGNED"}),
         "tables/value_tier.xlsx!价值分层!A5",
         "错误 error: 规则编号 'LC-SIGNED' 已在 {also} 使用过 [duplicate-rule-id] — 修改建议: 规则编号在所有策略文件中必须唯一，请改用一个新的编号",
         also=("classification/lifecycle_stage.yaml", "- id: LC-SIGNED", 5), id="duplicate-rule-id-table-row-and-yaml-rule"),
    case(yaml_edit("churn.yaml", "  - id: CH-SIG-STAGE-CHURNED", "  - id: CH-WB-REVISIT"),
         ("churn.yaml", "- id: CH-WB-REVISIT", 5),
         "错误 error: 规则编号 'CH-WB-REVISIT' 已在 {also} 使用过 [duplicate-rule-id] — 修改建议: 规则编号在所有策略文件中必须唯一，请改用一个新的编号",
         also=("churn/win_back.yaml", "- id: CH-WB-REVISIT", 5), id="duplicate-rule-id-churn-signal-and-rule"),
    case(yaml_edit("organization.yaml", "task_calendar: standard", "task_calendar: standrd"),
         ("organization.yaml", "task_calendar: standrd", 16),
         "错误 error: task_calendar 'standrd' 在 calendar.yaml 中没有定义；是不是 'standard'？ / task_calendar 'standrd' is not "
         "defined in calendar.yaml; did you mean 'standard'? [unknown-calendar] — 修改建议: 可用的日历：standard, hotline_24x7 / "
         "calendars defined: standard, hotline_24x7", id="unknown-task-calendar"),
    case(yaml_edit("sla.yaml", "calendar: hotline_24x7", "calendar: hotline"),
         ("sla.yaml", "calendar: hotline", 15),
         "错误 error: calendar.yaml 里没有日历 'hotline' / calendar 'hotline' is not defined in calendar.yaml [unknown-calendar] "
         "— 修改建议: 已有的日历 / calendars: standard, hotline_24x7",
         id="unknown-calendar-in-an-sla-target"),
    case(yaml_edit("classification/actions.yaml", "assign_to: role:销售主管", "assign_to: role:销售主任"),
         ("classification/actions.yaml", "assign_to: role:销售主任", 18),
         "错误 error: 没有 '销售主任' 这个角色，是不是 '销售主管'？ / unknown role '销售主任'; did you mean '销售主管'? [unknown-role] — "
         "修改建议: 写 owner（客户经理），或 organization.yaml 里的角色 / use 'owner' or one of the roles in "
         "organization.yaml: 团队组长, 客服主管, 销售主管, 市场专员", id="unknown-role"),
    case(yaml_edit("churn/win_back.yaml", "      template: win_back\n      channel: preferred", "      template: win_back\n      channel: sms2"),
         ("churn/win_back.yaml", "channel: sms2", 16),
         "错误 error: 没有 'sms2' 这个渠道，是不是 'sms'？ / unknown channel 'sms2'; did you mean 'sms'? [unknown-channel] — "
         "修改建议: 写 preferred（客户偏好的渠道），或其中之一 / 'preferred' or one of: sms, email, wechat",
         id="unknown-channel"),
]


def test_shipped_policies_have_no_problems():
    assert validate_policies(SHIPPED_POLICIES) == []


@pytest.mark.parametrize("change, where, text, also, same_code", ONE_BREAK_EACH)
def test_each_break_prints_its_exact_line(policy_copy: Path, change, where: Place, text: str, also: Place | None,
                                          same_code: int):
    change(policy_copy)
    out = lines(policy_copy)
    expected = f"{at(policy_copy, where)}: {text}".replace("{also}", at(policy_copy, also) if also else "{also}")
    assert expected in out
    code = re.search(r"\[[a-z-]+\]", text).group()
    assert len([line for line in out if code in line]) == same_code, out


def test_template_customer_field_and_filter_that_do_not_exist(policy_copy: Path):
    sms = policy_copy.parent / "templates/messages/sms/offer.txt"
    sms.write_text("第一行\n{{ customer.nmae }}您好，{{ params.offer|moneyy }}\n", encoding="utf-8")
    out = lines(policy_copy)
    assert ("templates/messages/sms/offer.txt:2:1: 错误 error: 模板 templates/messages/sms/offer.txt 使用了 customer.nmae，"
            "但客户没有 'nmae' 这个字段或分类；是不是 'name'？ / template templates/messages/sms/offer.txt uses customer.nmae, but "
            "customers have no field or tag 'nmae'; did you mean 'name'? [template-variable] — 修改建议: 字段名见 docs/features.md；"
            "分类结果用规则 set: 的名称 / the fields are listed in docs/features.md; a tag is named as a rule's set: names it") in out
    assert ("templates/messages/sms/offer.txt:2:1: 错误 error: 模板 templates/messages/sms/offer.txt 使用了不存在的过滤器 'moneyy'；"
            "是不是 'money'？ / template templates/messages/sms/offer.txt uses the filter 'moneyy', which does not exist; did you mean "
            "'money'? [template-filter] — 修改建议: 可用的过滤器见 templates/README.md，例如 date、money、mask_phone / the filters "
            "are listed in templates/README.md, e.g. date, money, mask_phone") in out


def test_run_and_validate_refuse_the_same_errors(policy_copy: Path):
    set_cells(policy_copy / "tables/value_tier.xlsx", {}, delete_row=7)
    try:
        load_checked_policies(policy_copy)
    except PolicyError as exc:
        assert [p.code for p in exc.problems] == ["table-gap"]
    else:
        raise AssertionError("a gap in a complete table must stop a run")


def test_cli_text_json_and_exit_code(policy_copy: Path):
    runner = CliRunner()
    ok = runner.invoke(validate_command, ["--policies", str(SHIPPED_POLICIES), "--as-of", "2026-06-01"])
    assert ok.exit_code == 0 and ok.output.splitlines() == ["策略检查通过 / policies OK"]
    # Planned for a day whose coming weeks reach a year without declared holidays: said, as the run says it.
    ahead = runner.invoke(validate_command, ["--policies", str(SHIPPED_POLICIES), "--as-of", "2026-11-20"])
    assert ahead.exit_code == 0
    assert ahead.output.splitlines()[0].startswith("calendar.yaml:")
    assert "no public holidays for 2027 yet" in ahead.output and "[calendar-year-ahead]" in ahead.output
    assert ahead.output.splitlines()[-1] == "错误 0 个，警告 1 个 / 0 error(s), 1 warning(s)"
    edit(policy_copy / "organization.yaml", "task_calendar: standard", "task_calendar: standrd")
    bad = runner.invoke(validate_command, ["--policies", str(policy_copy)])
    assert bad.exit_code == 1
    where = at(policy_copy, ("organization.yaml", "task_calendar: standrd", 16))
    assert bad.output.splitlines()[0].startswith(f"{where}: 错误 error: task_calendar 'standrd'")
    assert bad.output.splitlines()[-1] == "错误 1 个，警告 0 个 / 1 error(s), 0 warning(s)"
    as_json = runner.invoke(validate_command, ["--policies", str(policy_copy), "--format", "json"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert data[0]["code"] == "unknown-calendar" and data[0]["where"] == where
    assert data[0]["location"] == {"file": "organization.yaml", "line": int(where.split(":")[1]), "col": 16}


def test_a_missing_templates_folder_is_one_problem(policy_copy: Path):
    """A policy copy whose templates/ is not beside it: one problem naming the folder and the option,
    not one per rule and channel."""
    import shutil

    from engine.validate import validate_policies

    shutil.rmtree(policy_copy.parent / "templates")
    errors = [p for p in validate_policies(policy_copy) if p.severity == "error"]
    assert [(p.code, p.location.file) for p in errors] == [("templates-missing", str(policy_copy.parent / "templates"))]
    assert "pass --templates DIR" in errors[0].fix


def test_calendar_mistakes_are_named_relative_to_the_policies_folder(policy_copy: Path):
    """Like every other policy file: calendar.yaml:35:24, not the full path of the copy."""
    edit(policy_copy / "calendar.yaml", "    on_uncovered_year: error", "    on_uncovered_year: maybe")
    [problem] = [p for p in validate_policies(policy_copy) if p.severity == "error"]
    assert problem.location.file == "calendar.yaml" and format_problem(problem).startswith("calendar.yaml:35:")


def test_a_settings_warning_of_a_stage_is_shown(policy_copy: Path):
    # An SLA settings file without targets tracks nothing; the loader said so, but nobody showed it.
    text = (policy_copy / "sla.yaml").read_text(encoding="utf-8")
    (policy_copy / "sla.yaml").write_text(text[:text.index("\ntargets:")] + "\ntargets: []\n", encoding="utf-8")
    shown = [format_problem(p) for p in validate_policies(policy_copy) if p.code == "no-targets"]
    line = next(n for n, text in enumerate((policy_copy / "sla.yaml").read_text(encoding="utf-8").splitlines(), start=1)
                if text.startswith("targets:"))
    assert shown == [f"sla.yaml:{line}:10: 警告 warning: SLA 设置文件的 targets: 是空的：不会跟踪任何时限 / "
                     "the SLA settings file has no targets: nothing will be tracked [no-targets]"]


def test_a_template_reading_a_later_stages_result_is_an_error(policy_copy: Path):
    # customer.churn_level in the care stage's birthday greeting, and in a classification task title: validate
    # said nothing and the run stopped with "'collections.ChainMap object' has no attribute 'churn_level'".
    templates = policy_copy.parent / "templates"
    edit(templates / "messages" / "sms" / "birthday.txt", "祝您生日快乐！", "祝您生日快乐！{{ customer.churn_level }}")
    edit(policy_copy / "classification" / "actions.yaml", "title: 跟进意向客户，推进签约", "title: 跟进意向客户（{{ customer.sla_open }}）")
    shown = [format_problem(p) for p in validate_policies(policy_copy) if p.code == "reads-later-stage"]
    assert shown == [
        "classification/actions.yaml:21:5: 错误 error: 规则 CL-INTENT-FOLLOW-UP 的任务标题 使用了 customer.sla_open，它由 sla 阶段算出；"
        "classification 阶段的规则用它时还没有这个值，运行会停下 / the title of rule CL-INTENT-FOLLOW-UP's task uses "
        "customer.sla_open, which the sla stage computes: a rule of the classification stage does not have it yet, and the run "
        "would stop [reads-later-stage] — 修改建议: 把规则移到 sla 阶段（kind: sla）或更后，或不在这里使用 sla_open / move the "
        "rule to the sla stage (kind: sla) or later, or do not use sla_open here",
        "templates/messages/sms/birthday.txt:1:1: 错误 error: 模板 "
        "templates/messages/sms/birthday.txt 使用了 customer.churn_level，它由 churn 阶段算出；care 阶段的规则用它时"
        "还没有这个值，运行会停下 / template templates/messages/sms/birthday.txt uses customer.churn_level, which the churn stage "
        "computes: a rule of the care stage does not have it yet, and the run would stop [reads-later-stage] — 修改建议: "
        "把规则移到 churn 阶段（kind: churn）或更后，或不在这里使用 churn_level / move the rule to the churn stage (kind: churn) "
        "or later, or do not use churn_level here",
    ]


def test_a_festival_that_no_rule_greets_is_warned_about(policy_copy: Path):
    # Added to care.yaml without a rule in care/festivals.yaml, 七夕 was computed every year and greeted never.
    edit(policy_copy / "care.yaml", '    - {name: 元旦, solar: "01-01"}\n', '    - {name: 元旦, solar: "01-01"}\n    - {name: 七夕, lunar: "07-07"}\n')
    shown = [format_problem(p) for p in validate_policies(policy_copy) if p.code == "festival-without-rule"]
    assert shown == ["care.yaml:30:7: 警告 warning: 节日 '七夕' 没有祝福规则：不会给任何人发这个节日的祝福 / "
                     "festival '七夕' has no greeting rule: nobody is greeted for it [festival-without-rule] "
                     "— 修改建议: 在 care/festivals.yaml 里复制一条规则，改它的 id、when: 里的节日名（'七夕' in festivals_due）和 "
                     "params.festival / copy a rule in care/festivals.yaml and change its id, the festival's name in when: "
                     "('七夕' in festivals_due) and params.festival"]
