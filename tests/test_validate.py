"""crm-engine validate: one broken copy of the shipped policies per problem kind, checking the exact
line the user sees (location, severity, message, fix), the JSON form and the exit code."""
from __future__ import annotations

import json
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from engine.cli_tools import validate_command
from engine.errors import PolicyError
from engine.validate import format_problem, load_checked_policies, validate_policies

from conftest import SHIPPED_POLICIES


def at(folder: Path, file: str, text: str, col: int) -> str:
    """``file:line:col`` of the line holding ``text`` (policy files change; their content stays findable)."""
    n = next(n for n, line in enumerate((folder / file).read_text(encoding="utf-8").splitlines(), start=1) if text in line)
    return f"{file}:{n}:{col}"


def lines(folder: Path) -> list[str]:
    return [format_problem(p) for p in validate_policies(folder)]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def set_cells(path: Path, cells: dict[str, object], delete_row: int | None = None) -> None:
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    for ref, value in cells.items():
        ws[ref] = value
    if delete_row:
        ws.delete_rows(delete_row)
    wb.save(path)


def test_shipped_policies_have_no_problems():
    assert validate_policies(SHIPPED_POLICIES) == []


def test_missing_field(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "  - id: NT-SPECIAL-SUGGESTIONS\n    description:", "  - description:")
    where = at(policy_copy, "classification/need_type.yaml", "近一年提出3条及以上建议", 5)
    assert f"{where}: error: a rule needs a 'id' field [missing-field]" in lines(policy_copy)


def test_unknown_field_with_did_you_mean(policy_copy: Path):
    edit(policy_copy / "classification/actions.yaml", "      template: offer", "      templat: offer")
    where = at(policy_copy, "classification/actions.yaml", "templat: offer", 7)
    assert (f"{where}: error: unknown field 'templat' in a message; did you mean 'template'? "
            "[unknown-field] — 修改建议: rename it to 'template'") in lines(policy_copy)


def test_type_mismatch_date_against_number(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "when: suggestion_count_365d >= 3", "when: signed_date >= 3")
    found = [line for line in lines(policy_copy) if "[type-mismatch]" in line]
    assert found and found[0].startswith(at(policy_copy, "classification/need_type.yaml", "when: signed_date >= 3", 11) + ": error: ")
    assert "date" in found[0] and "number" in found[0]


def test_unknown_template(policy_copy: Path):
    edit(policy_copy / "classification/actions.yaml", "      template: offer", "      template: ofer")
    out = lines(policy_copy)
    where = at(policy_copy, "classification/actions.yaml", "- id: CL-LOW-VALUE-OFFER", 5)
    assert (f"{where}: error: 规则 CL-LOW-VALUE-OFFER 在 sms 渠道发送模板 'ofer'，"
            "但 templates/messages/sms/ofer.txt 不存在 [unknown-template] — 修改建议: 新建 templates/messages/sms/ofer.txt，或改正模板名称") in out
    assert len([line for line in out if "[unknown-template]" in line]) == 3  # sms, email, wechat


def test_template_param_the_rule_does_not_set(policy_copy: Path):
    edit(policy_copy / "classification/actions.yaml", "      params:\n        offer: 本月新品上市，老客户下单享九五折\n", "")
    where = at(policy_copy, "classification/actions.yaml", "- id: CL-LOW-VALUE-OFFER", 5)
    assert (f"{where}: error: 规则 CL-LOW-VALUE-OFFER 使用的 模板 templates/messages/sms/offer.txt "
            "需要 params.offer，但规则的 params 中没有 'offer' [template-param-missing] — 修改建议: 在这条规则的 message 下加上 "
            "params: {offer: ...}，或在模板中写 params.get('offer') 使它可选") in lines(policy_copy)


def test_template_customer_field_and_filter_that_do_not_exist(policy_copy: Path):
    sms = policy_copy.parent / "templates/messages/sms/offer.txt"
    sms.write_text("第一行\n{{ customer.nmae }}您好，{{ params.offer|moneyy }}\n", encoding="utf-8")
    out = lines(policy_copy)
    assert ("templates/messages/sms/offer.txt:2:1: error: 模板 templates/messages/sms/offer.txt 使用了 customer.nmae，"
            "但客户没有 'nmae' 这个字段或分类；是不是 'name'？ [template-variable] — 修改建议: 字段名见 docs/features.md；"
            "分类结果用规则 set: 的名称") in out
    assert any(line.startswith("templates/messages/sms/offer.txt:2:1: error: 模板 templates/messages/sms/offer.txt 使用了不存在的过滤器 'moneyy'；是不是 'money'？")
               for line in out)


def test_task_title_variable(policy_copy: Path):
    edit(policy_copy / "classification/actions.yaml", "title: 联系潜在客户，了解兴趣点和关注点", "title: 联系{{ customer.nmae }}")
    where = at(policy_copy, "classification/actions.yaml", "- id: CL-PROSPECT-CONVERT", 5)
    assert any(line.startswith(f"{where}: error: 规则 CL-PROSPECT-CONVERT 的任务标题 使用了 customer.nmae")
               for line in lines(policy_copy))


def test_unreachable_table_row_shadowed_by_a_wider_earlier_row(policy_copy: Path):
    set_cells(policy_copy / "tables/value_tier.xlsx", {"D4": ">= 150000"})  # VT-2 now only catches VT-1's customers
    assert ("tables/value_tier.xlsx!价值分层!A4: warning: 规则 VT-2 永远不会生效：命中策略为 first，满足它的客户都会先满足 VT-1 "
            "[unreachable-rule] — 修改建议: 把 VT-2 移到 VT-1 之前，或删除/修改这条规则") in lines(policy_copy)


def test_unreachable_yaml_rule_after_when_true(policy_copy: Path):
    edit(policy_copy / "classification/risk_level.yaml", "when: open_complaints >= 2 or min_satisfaction_365d <= 2", "when: true")
    out = lines(policy_copy)
    assert (at(policy_copy, "classification/risk_level.yaml", "- id: RISK-MEDIUM", 5) + ": warning: 规则 RISK-MEDIUM 永远不会生效：命中策略为 first，满足它的客户都会先满足 RISK-HIGH "
            "[unreachable-rule] — 修改建议: 把 RISK-MEDIUM 移到 RISK-HIGH 之前，或删除/修改这条规则") in out
    where = at(policy_copy, "classification/risk_level.yaml", "- id: RISK-LOW", 5)
    assert any(line.startswith(f"{where}: warning: 规则 RISK-LOW 永远不会生效") for line in out)


def test_overlapping_rows_in_unique_table(policy_copy: Path):
    edit(policy_copy / "classification/service_plan.yaml", "hit_policy: first", "hit_policy: unique")
    out = lines(policy_copy)
    assert ("tables/service_plan.xlsx!服务方案!A4: error: 唯一命中（unique）的表中 SP-1 和 SP-2 可能同时满足，例如：need_type = '战略'、"
            "value_tier = '高' [table-overlap] — 修改建议: 收紧 SP-1 或 SP-2 的条件使它们互不重叠，或把 hit_policy 改为 first") in out
    # 战略 or 特殊需求 against each value tier: 2 × 3 overlapping pairs
    assert len([line for line in out if "[table-overlap]" in line]) == 6


def test_gap_in_complete_table(policy_copy: Path):
    set_cells(policy_copy / "tables/value_tier.xlsx", {}, delete_row=7)  # remove the catch-all row VT-5
    assert ("tables/value_tier.xlsx!价值分层!A7: error: value_tier 声明覆盖所有情况（complete: true），但没有任何一行适用于："
            "days_since_last_order = 89、frequency_365d = 2、monetary_365d = 9999 [table-gap] — 修改建议: "
            "为这种情况加一行（规则），或在最后加一行所有条件都为 - 的兜底行") in lines(policy_copy)


def test_gap_example_with_a_free_text_column(policy_copy: Path):
    # value_tier always has one of 高/中/低 (its table is complete); member_level is free text.
    set_cells(policy_copy / "tables/service_plan.xlsx", {"C2": "member_level"})
    assert ("tables/service_plan.xlsx!服务方案!A8: error: service_plan 声明覆盖所有情况（complete: true），但没有任何一行适用于："
            "need_type = '普通'、member_level 为其他值 [table-gap] — 修改建议: 为这种情况加一行（规则），或在最后加一行所有条件都为 - 的兜底行"
            ) in lines(policy_copy)


def test_duplicate_rule_id_between_a_table_row_and_a_yaml_rule(policy_copy: Path):
    set_cells(policy_copy / "tables/value_tier.xlsx", {"A5": "LC-SIGNED"})
    first = at(policy_copy, "classification/lifecycle_stage.yaml", "- id: LC-SIGNED", 5)
    assert (f"tables/value_tier.xlsx!价值分层!A5: error: 规则编号 'LC-SIGNED' 已在 {first} 使用过 "
            "[duplicate-rule-id] — 修改建议: 规则编号在所有策略文件中必须唯一，请改用一个新的编号") in lines(policy_copy)


def test_duplicate_rule_id_between_a_churn_signal_and_a_rule(policy_copy: Path):
    edit(policy_copy / "churn.yaml", "  - id: CH-SIG-STAGE-CHURNED", "  - id: CH-WB-REVISIT")
    here, first = at(policy_copy, "churn.yaml", "- id: CH-WB-REVISIT", 5), at(policy_copy, "churn/win_back.yaml", "- id: CH-WB-REVISIT", 5)
    assert any(line.startswith(f"{here}: error: 规则编号 'CH-WB-REVISIT' 已在 {first} 使用过")
               for line in lines(policy_copy))


def test_unknown_task_calendar(policy_copy: Path):
    edit(policy_copy / "organization.yaml", "task_calendar: standard", "task_calendar: standrd")
    where = at(policy_copy, "organization.yaml", "task_calendar: standrd", 16)
    assert (f"{where}: error: task_calendar 'standrd' 在 calendar.yaml 中没有定义；是不是 'standard'？ "
            "[unknown-calendar] — 修改建议: 可用的日历: standard, hotline_24x7") in lines(policy_copy)


def line_number(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if text in line)


def test_unknown_calendar_in_sla_target(policy_copy: Path):
    edit(policy_copy / "sla.yaml", "calendar: hotline_24x7", "calendar: hotline")
    n = line_number(policy_copy / "sla.yaml", "calendar: hotline")
    assert any(line.startswith(f"sla.yaml:{n}:15: error: calendar 'hotline' is not defined in calendar.yaml [unknown-calendar]")
               for line in lines(policy_copy))


def test_unknown_role(policy_copy: Path):
    edit(policy_copy / "classification/actions.yaml", "assign_to: role:销售主管", "assign_to: role:销售主任")
    where = at(policy_copy, "classification/actions.yaml", "assign_to: role:销售主任", 18)
    assert (f"{where}: error: unknown role '销售主任'; did you mean '销售主管'? [unknown-role] — 修改建议: "
            "use 'owner' or one of the roles in organization.yaml: 团队组长, 客服主管, 销售主管, 市场专员") in lines(policy_copy)


def test_unknown_channel(policy_copy: Path):
    edit(policy_copy / "churn/win_back.yaml", "      template: win_back\n      channel: preferred", "      template: win_back\n      channel: sms2")
    where = at(policy_copy, "churn/win_back.yaml", "channel: sms2", 16)
    assert any(line.startswith(f"{where}: error: unknown channel 'sms2'; did you mean 'sms'? [unknown-channel]")
               for line in lines(policy_copy))


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
    ok = runner.invoke(validate_command, ["--policies", str(SHIPPED_POLICIES)])
    assert ok.exit_code == 0 and "策略检查通过" in ok.output
    edit(policy_copy / "organization.yaml", "task_calendar: standard", "task_calendar: standrd")
    bad = runner.invoke(validate_command, ["--policies", str(policy_copy)])
    assert bad.exit_code == 1
    where = at(policy_copy, "organization.yaml", "task_calendar: standrd", 16)
    assert bad.output.splitlines()[0].startswith(f"{where}: error: task_calendar 'standrd'")
    assert bad.output.splitlines()[-1] == "错误 1 个，警告 0 个 / 1 error(s), 0 warning(s)"
    as_json = runner.invoke(validate_command, ["--policies", str(policy_copy), "--format", "json"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert data[0]["code"] == "unknown-calendar" and data[0]["where"] == where
    assert data[0]["location"] == {"file": "organization.yaml", "line": int(where.split(":")[1]), "col": 16}
