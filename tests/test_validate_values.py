"""crm-engine validate, from a review by an ops user: edits that silently change results.

* ``collect-conflict``: under hit policy collect (the default when ``hit_policy`` is not written) two
  rules or rows that can match one customer set the same tag to different values; the later wins.
* ``unknown-value``: a condition compares a tag, an enum field or a festival with a text it can never
  have (``in [...]``, ``!=``, ``==``), or a settings list names one (sla.yaml track_types, ...).
* ``untested-value``: ``set:`` gives a tag a value nothing tests while a close value is tested.

Each test copies the shipped policies, edits them as a user would and checks the exact line validate prints.
"""
from __future__ import annotations

from pathlib import Path

import openpyxl

from engine.validate import format_problem, validate_policies

from conftest import SHIPPED_POLICIES, edit

NEW_CODES = ("[collect-conflict]", "[unknown-value]", "[untested-value]")
COLLECT_FIX = "修改建议: 改用 hit_policy: first（从上到下第一条满足的{what}生效），或修改条件使 {a} 和 {b} 互斥"
TAG_FIX = "修改建议: 改成其中一个取值；确实需要这个取值时，先在规则的 set: 或决策表的结果列中设置它"
ENUM_FIX = ("修改建议: 改成 columns.yaml 中的取值（导出里的其他写法读入时会换成它）；确实有新的取值时，"
            "先把它加到 columns.yaml 中这个字段的 values: 下")
TYPES = "'咨询'、'投诉'、'建议'、'回访'、'拜访'、'关怀'、'购买'"


def lines(folder: Path) -> list[str]:
    return [format_problem(p) for p in validate_policies(folder)]


def at(folder: Path, file: str, text: str, col: int) -> str:
    """``file:line:col`` of the line holding the text."""
    n = next(n for n, line in enumerate((folder / file).read_text(encoding="utf-8").splitlines(), start=1) if text in line)
    return f"{file}:{n}:{col}"


def col_of(folder: Path, file: str, line_text: str, needle: str) -> int:
    line = next(line for line in (folder / file).read_text(encoding="utf-8").splitlines() if line_text in line)
    return line.index(needle) + 1


def with_code(out: list[str], code: str) -> list[str]:
    return [line for line in out if f"[{code}]" in line]


def test_shipped_policies_have_none_of_these_warnings():
    out = lines(SHIPPED_POLICIES)
    assert not [line for line in out if any(code in line for code in NEW_CODES)], out


# --------------------------------------------------------------------------------------------------
# collect-conflict
# --------------------------------------------------------------------------------------------------


def test_value_tier_table_without_hit_policy_collects_and_the_last_row_wins(policy_copy: Path):
    edit(policy_copy / "classification/value_tier.yaml", "hit_policy: first      # 从上到下，第一条满足的规则生效\n", "")
    out = lines(policy_copy)
    assert ("tables/value_tier.xlsx!价值分层!A5: 警告 warning: 命中策略为 collect（没有写 hit_policy 时的默认值），满足条件的行都会生效："
            "VT-1 和 VT-3 可能同时满足，却把 value_tier 设为不同的值（'高' 和 '中'），后面的 VT-3 会覆盖 VT-1，例如：days_since_last_order = 89、"
            "frequency_365d = 2、monetary_365d = 100000 [collect-conflict] — " + COLLECT_FIX.format(what="行", a="VT-1", b="VT-3")) in out
    assert ("tables/value_tier.xlsx!价值分层!A7: 警告 warning: 命中策略为 collect（没有写 hit_policy 时的默认值），满足条件的行都会生效："
            "VT-4 和 VT-5 可能同时满足，却把 value_tier 设为不同的值（'中' 和 '低'），后面的 VT-5 会覆盖 VT-4，例如：days_since_last_order = 89、"
            "frequency_365d = 3、monetary_365d = 9999 [collect-conflict] — " + COLLECT_FIX.format(what="行", a="VT-4", b="VT-5")) in out
    # Every pair of rows with different tiers can meet (VT-1/VT-2 and VT-3/VT-4 agree): 2 × 2 + 2 × 1 + 2.
    assert len(with_code(out, "collect-conflict")) == 8, out
    assert not [line for line in out if "error" in line.split(": ")[1]], out


def test_value_tier_table_with_hit_policy_collect_written(policy_copy: Path):
    edit(policy_copy / "classification/value_tier.yaml", "hit_policy: first ", "hit_policy: collect ")
    out = with_code(lines(policy_copy), "collect-conflict")
    assert len(out) == 8
    assert out[0].startswith("tables/value_tier.xlsx!价值分层!A5: 警告 warning: 命中策略为 collect，满足条件的行都会生效：VT-1 和 VT-3 可能同时满足")


def test_yaml_rule_list_under_collect_with_a_catch_all(policy_copy: Path):
    edit(policy_copy / "classification/risk_level.yaml", "hit_policy: first\n", "hit_policy: collect\n")
    out = lines(policy_copy)
    low = at(policy_copy, "classification/risk_level.yaml", "- id: RISK-LOW", 5)
    assert (f"{low}: 警告 warning: 命中策略为 collect，满足条件的规则都会生效：RISK-MEDIUM 和 RISK-LOW 可能同时满足，却把 risk_level 设为不同的值"
            "（'中' 和 '低'），后面的 RISK-LOW 会覆盖 RISK-MEDIUM，例如：avg_satisfaction_365d = 2.5、min_satisfaction_365d = 1、"
            "open_complaints = 0 [collect-conflict] — " + COLLECT_FIX.format(what="规则", a="RISK-MEDIUM", b="RISK-LOW")) in out
    assert len(with_code(out, "collect-conflict")) == 3, out  # HIGH/MEDIUM, HIGH/LOW, MEDIUM/LOW


def test_collect_rules_with_calculations_exclusive_or_not(policy_copy: Path):
    """Conditions the grid cannot analyse (arithmetic): the same calculation is one yes/no, so a rule
    and its negation never meet; two different calculations may."""
    path = policy_copy / "classification/risk_level.yaml"
    edit(path, "hit_policy: first\n", "hit_policy: collect\n")
    edit(path, "when: open_complaints >= 2 or min_satisfaction_365d <= 2", "when: open_complaints * 2 >= 4")
    edit(path, "when: open_complaints >= 1 or avg_satisfaction_365d < 3.5", "when: not (open_complaints * 2 >= 4)")
    edit(path, "when: true", "when: open_complaints * 2 >= 4 and open_complaints > 5")
    out = with_code(lines(policy_copy), "collect-conflict")
    low = at(policy_copy, "classification/risk_level.yaml", "- id: RISK-LOW", 5)
    # HIGH and MEDIUM exclude each other; MEDIUM and LOW too; HIGH and LOW can meet.
    assert [line.split(" [")[0] for line in out] == [
        f"{low}: 警告 warning: 命中策略为 collect，满足条件的规则都会生效：RISK-HIGH 和 RISK-LOW 可能同时满足，却把 risk_level 设为不同的值"
        "（'高' 和 '低'），后面的 RISK-LOW 会覆盖 RISK-HIGH，例如：（open_complaints * 2 >= 4） = true、open_complaints = 6"]


def test_collect_rules_setting_the_same_value_are_fine(policy_copy: Path):
    path = policy_copy / "classification/risk_level.yaml"
    edit(path, "hit_policy: first\n", "hit_policy: collect\n")
    edit(path, "set: {risk_level: 中}", "set: {risk_level: 高}")
    edit(path, "    when: true\n", "    when: open_complaints == 0 and min_satisfaction_365d > 2 and avg_satisfaction_365d >= 3.5\n")
    assert with_code(lines(policy_copy), "collect-conflict") == []


# --------------------------------------------------------------------------------------------------
# unknown-value in conditions
# --------------------------------------------------------------------------------------------------


def test_misspelt_tag_value_in_an_in_list(policy_copy: Path):
    file = "churn/marketing.yaml"
    edit(policy_copy / file, "when: value_tier == '低' and lifecycle_stage == '签约'", "when: value_tier in ['高价值', '中'] and lifecycle_stage == '签约'")
    out = lines(policy_copy)
    where = at(policy_copy, file, "value_tier in ['高价值', '中']", col_of(policy_copy, file, "value_tier in [", "'高价值'"))
    assert (f"{where}: 警告 warning: 规则 CL-LOW-VALUE-OFFER 的条件把 value_tier 和 '高价值' 比较，但 value_tier 只会是 '高'、'中'、'低'"
            f"（规则和决策表设置的值），列表中的这一项永远匹配不上；是不是 '高'？ [unknown-value] — {TAG_FIX}") in out
    assert len(with_code(out, "unknown-value")) == 1


def test_misspelt_tag_value_after_not_equal(policy_copy: Path):
    file = "classification/actions.yaml"
    edit(policy_copy / file, "when: lifecycle_stage == '潜在' and has_owner", "when: value_tier != '高价值' and has_owner")
    out = lines(policy_copy)
    where = at(policy_copy, file, "value_tier != '高价值'", 25)
    assert (f"{where}: 警告 warning: 规则 CL-PROSPECT-CONVERT 的条件把 value_tier 和 '高价值' 比较，但 value_tier 只会是 '高'、'中'、'低'"
            f"（规则和决策表设置的值），这个比较只要有值就成立；是不是 '高'？ [unknown-value] — {TAG_FIX}") in out


def test_input_spelling_of_a_lifecycle_stage_and_a_festival_name(policy_copy: Path):
    file = "care/festivals.yaml"
    edit(policy_copy / file, "'元旦' in festivals_due and lifecycle_stage in ['意向', '签约']",
         "'元旦' in festivals_due and lifecycle_stage in ['意向', '已签约']")
    edit(policy_copy / file, "'中秋' in festivals_due", "'中秋节' in festivals_due")
    out = lines(policy_copy)
    stage = at(policy_copy, file, "lifecycle_stage in ['意向', '已签约']", col_of(policy_copy, file, "'已签约'", "'已签约'"))
    assert (f"{stage}: 警告 warning: 规则 CARE-FESTIVAL-NEW-YEAR 的条件把 lifecycle_stage 和 '已签约' 比较，但 lifecycle_stage 只会是 "
            "'流失'、'签约'、'意向'、'潜在'（规则和决策表设置的值），列表中的这一项永远匹配不上；是不是 '签约'？"
            f"（columns.yaml 把 '已签约' 列为它的另一种写法） [unknown-value] — {TAG_FIX}") in out
    festival = at(policy_copy, file, "'中秋节' in festivals_due", col_of(policy_copy, file, "'中秋节' in", "'中秋节'"))
    assert festival.endswith(":12")  # inside the quoted YAML text: the position of the festival's own quote
    # The names listed are care.yaml's festivals, whatever they are at the time.
    from engine.policy.loader import load_policies
    from engine.stages.care import load_care_settings

    names = "、".join(f"'{f.name}'" for f in load_care_settings(load_policies(policy_copy)).festivals)
    assert "'中秋'" in names
    assert (f"{festival}: 警告 warning: 规则 CARE-FESTIVAL-MID-AUTUMN 的条件把 festivals_due 和 '中秋节' 比较，但 festivals_due 只会是 {names}"
            "（care.yaml 中的节日名称），这个条件永远不成立；是不是 '中秋'？ [unknown-value] — "
            "修改建议: 改成 care.yaml festivals: days: 中的节日名称，或在那里加上这个节日") in out


def test_misspelt_value_in_a_table_cell_replaces_never_matches(policy_copy: Path):
    path = policy_copy / "tables/service_plan.xlsx"
    wb = openpyxl.load_workbook(path)
    wb.worksheets[0]["C4"] = "高价值"
    wb.save(path)
    out = lines(policy_copy)
    assert ("tables/service_plan.xlsx!服务方案!C4: 警告 warning: 规则 SP-2 的条件把 value_tier 和 '高价值' 比较，但 value_tier 只会是 "
            f"'高'、'中'、'低'（规则和决策表设置的值），这个比较永远不成立；是不是 '高'？ [unknown-value] — {TAG_FIX}") in out
    assert with_code(out, "never-matches") == []  # one warning for one typo


def test_sla_conditions_and_lists_against_columns_yaml(policy_copy: Path):
    file = "sla.yaml"
    path = policy_copy / file
    edit(path, "when: type == '投诉' and (value_tier", "when: type == '投述' and (value_tier")
    edit(path, "channel == '电话'", "channel == '电活'")
    edit(path, "track_types: [投诉, 咨询, 建议]", "track_types: [投诉, 咨询, 建意]")
    edit(path, "closed_statuses: [已解决, 已关闭]", "closed_statuses: [已解决, 已关比]")
    out = with_code(lines(policy_copy), "unknown-value")
    type_at = at(policy_copy, file, "type == '投述'", 19)
    channel_at = at(policy_copy, file, "channel == '电活'", col_of(policy_copy, file, "channel == '电活'", "'电活'"))
    assert (f"{type_at}: 警告 warning: SLA 时限 sla-complaint-high 的条件把 type 和 '投述' 比较，"
            f"但 type 的取值是 {TYPES}（columns.yaml 中 interactions.type 的取值）；是不是 '投诉'？ [unknown-value] — {ENUM_FIX}") in out
    assert (f"{channel_at}: 警告 warning: "
            "SLA 时限 sla-inquiry-hotline 的条件把 channel 和 '电活' 比较，但 channel 的取值是 '电话'、'邮件'、'微信'、'在线客服'、'上门拜访'、"
            f"'官网留言'、'短信'（columns.yaml 中 interactions.channel 的取值）；是不是 '电话'？ [unknown-value] — {ENUM_FIX}") in out
    assert (f"{at(policy_copy, file, 'track_types: [', 23)}: 警告 warning: sla.yaml 的 track_types 中的 '建意' 不是 columns.yaml 中 "
            f"interactions.type 的取值：{TYPES}；是不是 '建议'？ [unknown-value] — {ENUM_FIX}") in out
    assert (f"{at(policy_copy, file, 'closed_statuses: [', 26)}: 警告 warning: sla.yaml 的 clock.closed_statuses 中的 '已关比' 不是 "
            "columns.yaml 中 interactions.status 的取值：'待处理'、'处理中'、'待客户回复'、'已解决'、'已关闭'；是不是 '已关闭'？ "
            f"[unknown-value] — {ENUM_FIX}") in out
    assert len(out) == 4, out


def test_an_export_spelling_of_an_enum_value_is_named(policy_copy: Path):
    """已签约 is how an export may write 签约: the reader turns it into 签约, so a condition never sees it."""
    file = "classification/lifecycle_stage.yaml"
    edit(policy_copy / file, "recorded_lifecycle_stage == '意向'", "recorded_lifecycle_stage == '意向客户'")
    out = with_code(lines(policy_copy), "unknown-value")
    assert [line.split(": 警告 warning: ")[1].split(" [")[0] for line in out] == [
        "规则 LC-INTENT 的条件把 recorded_lifecycle_stage 和 '意向客户' 比较，但 recorded_lifecycle_stage 的取值是 '潜在'、'意向'、'签约'、'流失'"
        "（columns.yaml 中 customers.lifecycle_stage 的取值）；是不是 '意向'？（columns.yaml 把 '意向客户' 列为它的另一种写法）"]


def test_free_text_fields_are_not_checked(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "'大型企业'", "'大型企业集团'")  # company_size is free text
    edit(policy_copy / "sla.yaml", "when: type == '建议'", "when: type == '建议' and category != '物流问题'")  # so is category
    assert with_code(lines(policy_copy), "unknown-value") == []


# --------------------------------------------------------------------------------------------------
# untested-value
# --------------------------------------------------------------------------------------------------


def test_a_tag_set_to_a_value_nothing_tests(policy_copy: Path):
    file = "classification/need_type.yaml"
    edit(policy_copy / file, "set: {need_type: 战略}", "set: {need_type: 战略客户}")
    out = with_code(lines(policy_copy), "untested-value")
    where = at(policy_copy, file, "set: {need_type: 战略客户}", 22)
    assert out == [
        f"{where}: 警告 warning: 规则 NT-STRATEGIC-RECORDED 把 need_type 设为 '战略客户'，但没有任何条件或决策表检查这个值"
        "（检查的是 '战略'、'特殊需求'、'普通'）；是不是 '战略'？ [untested-value] — 修改建议: 改成 '战略'，或在用到 need_type 的条件中也检查 '战略客户'"]
