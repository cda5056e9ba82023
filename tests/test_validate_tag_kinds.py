"""Tags, scores and stage results that validate used to pass and a run then broke on (or silently
ignored): a tag set to text by one rule and to a number by another, a tag or score named like a
built-in feature, a condition reading a result of a later stage, a revisit interval that is not a
number of days, and round() with more decimal places than it can compute.

Each case edits a copy of the shipped policies the way a user would and checks the exact line
``crm-engine validate`` prints (file:line:col or workbook!Sheet!Cell)."""
from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest

from engine import expr
from engine.errors import PolicyError
from engine.expr.evaluate import EvaluationError
from engine.expr.functions import FUNCTIONS
from engine.model import Customer, Dataset, Interaction, Order, SourceRow
from engine.policy.loader import load_policies
from engine.policy.model import SetTag
from engine.run import evaluate_dataset
from engine.validate import format_problem, load_checked_policies, validate_policies

from conftest import SHIPPED_POLICIES, SHIPPED_TEMPLATES, edit

SRC = SourceRow("test.xlsx", "Sheet1", 2)


def at(folder: Path, file: str, text: str) -> str:
    """``file:line:col`` of ``text`` in the policy file (its first line holding it)."""
    lines = (folder / file).read_text(encoding="utf-8").splitlines()
    n, line = next((n, line) for n, line in enumerate(lines, start=1) if text in line)
    return f"{file}:{n}:{line.index(text) + 1}"


def problems(folder: Path, severity: str) -> list[str]:
    return [format_problem(p) for p in validate_policies(folder) if p.severity == severity]


def later_stage_warnings(folder: Path) -> list[str]:
    return [line for line in problems(folder, "warning") if "[reads-later-stage]" in line]


def set_cells(path: Path, cells: dict[str, object]) -> None:
    wb = openpyxl.load_workbook(path)
    for ref, value in cells.items():
        wb.worksheets[0][ref] = value
    wb.save(path)


def add_policy(folder: Path, file: str, text: str) -> None:
    (folder / file).write_text(text, encoding="utf-8")


# -- A. one tag, one kind of value ------------------------------------------------------------------

ZZ = """kind: classification
id: zz
hit_policy: first
rules:
  - id: ZZ-1
    when: monetary_365d >= 100000
    set: {zz_level: 高}
  - id: ZZ-2
    when: true
    set: {zz_level: 3}
"""


def test_a_tag_set_to_text_and_to_a_number_is_an_error_at_the_second(policy_copy: Path):
    add_policy(policy_copy, "classification/zz.yaml", ZZ)
    add_policy(policy_copy, "classification/zz_use.yaml",
               "kind: classification\nid: zz_use\nrules:\n  - id: ZZ-USE\n    when: zz_level >= 2\n    set: {zz_flag: 是}\n")
    expected = ("classification/zz.yaml:10:21: 错误 error: 'zz_level' 在 classification/zz.yaml:7:21 设为文字（'高'），这里却设为数字"
                "（3）：一个标签只能放一种值 / 'zz_level' is set to text ('高') at classification/zz.yaml:7:21 and to "
                "a number (3) here; one tag holds one kind of value [tag-mixed-kinds] — 修改建议: 让 zz_level 在各处都设为同一种值"
                "（都是文字、都是数字或都是是/否），或给其中一个结果换一个名称 / set zz_level to the same kind "
                "of value everywhere (all text, all numbers or all yes/no), or give one of the results another name")
    assert expected in problems(policy_copy, "error")
    with pytest.raises(PolicyError):  # run refuses it instead of stopping with eval-type-mismatch
        load_checked_policies(policy_copy)


def test_a_table_output_column_with_a_number_among_texts(policy_copy: Path):
    set_cells(policy_copy / "tables/value_tier.xlsx", {"E5": 2})  # VT-3: 中 → 2
    assert problems(policy_copy, "error") == [
        "tables/value_tier.xlsx!价值分层!E5: 错误 error: 'value_tier' 在 tables/value_tier.xlsx!价值分层!E3 设为文字（'高'），"
        "这里却设为数字（2）：一个标签只能放一种值 / 'value_tier' is set to text ('高') at tables/value_tier.xlsx!价值分层!E3 "
        "and to a number (2) here; one tag holds one kind of value [tag-mixed-kinds] — 修改建议: 让 value_tier 在各处都设为"
        "同一种值（都是文字、都是数字或都是是/否），或给其中一个结果换一个名称 / set value_tier to the same "
        "kind of value everywhere (all text, all numbers or all yes/no), or give one of the results another name"]


def test_a_tag_set_to_yes_no_and_to_text_in_another_stage(policy_copy: Path):
    edit(policy_copy / "care/member.yaml", "      once_per: month\n",
         "      once_per: month\n  - id: ZZ-CARE\n    when: true\n    set: {dedicated_owner_required: 否则}\n")
    assert problems(policy_copy, "error") == [
        f"{at(policy_copy, 'care/member.yaml', '否则')}: 错误 error: 'dedicated_owner_required' 在 tables/service_plan.xlsx!服务方案!E3 "
        "设为是/否（true），这里却设为文字（'否则'）：一个标签只能放一种值 / 'dedicated_owner_required' is set to yes/no (true) at "
        "tables/service_plan.xlsx!服务方案!E3 and to text ('否则') here; one tag holds one kind of value [tag-mixed-kinds] "
        "— 修改建议: 让 dedicated_owner_required 在各处都设为同一种值（都是文字、都是数字或都是是/否），或给其中一个结果换一个名称 / "
        "set dedicated_owner_required to the same kind of value everywhere (all text, all numbers or all yes/no), "
        "or give one of the results another name"]


# -- B. tags and scores named like built-in features -----------------------------------------------


def test_a_score_named_like_a_feature_is_an_error(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "    set: {need_type: 普通}\n",
         "    set: {need_type: 普通}\n    score: {points: 5}\n")
    assert problems(policy_copy, "error") == [
        f"{at(policy_copy, 'classification/need_type.yaml', '5}')}: 错误 error: 'points' 是内置特征，分数不能用这个名称：每位客户的 "
        "points 都会被这个分数（从 0 起算）取代 / 'points' is a built-in feature; a score cannot use its name: every "
        "customer's points would be replaced by the score (which starts at 0) [score-shadows-feature] — 修改建议: "
        "给这个分数换一个名称（内置特征见 docs/features.md） / choose "
        "another name for the score (docs/features.md lists the built-in features)"]


def test_a_tag_named_like_a_feature_of_the_same_type_is_an_error(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "    set: {need_type: 战略}\n", "    set: {need_type: 战略, owner: 王总}\n")
    assert problems(policy_copy, "error") == [
        f"{at(policy_copy, 'classification/need_type.yaml', '王总')}: 错误 error: 'owner' 是内置特征，策略不能设置它：后面的规则会看到 "
        "'王总'，而不是客户自己的 owner / 'owner' is a built-in feature; a policy cannot set it: the rules after "
        "this one would see '王总' instead of the customer's own owner [tag-shadows-feature] — 修改建议: "
        "给这个结果换一个名称（内置特征见 docs/features.md） / choose another name "
        "for the result (docs/features.md lists the built-in features)"]


def test_a_tag_named_like_a_later_stage_result_is_an_error(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "    set: {need_type: 普通}\n", "    set: {need_type: 普通, churn_level: 低}\n")
    assert problems(policy_copy, "error") == [
        f"{at(policy_copy, 'classification/need_type.yaml', '低}')}: 错误 error: 'churn_level' 是由 churn 阶段计算的结果，策略不能设置它 / "
        "'churn_level' is computed by the churn stage; a policy cannot set it "
        "[tag-shadows-feature] — 修改建议: 给这个结果换一个名称（内置特征见 docs/features.md） / "
        "choose another name for the result (docs/features.md lists the built-in features)"]


# -- C. reading a result a later stage computes -----------------------------------------------------


def test_a_classification_rule_reading_churn_and_sla_results_is_warned(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "when: suggestion_count_365d >= 3",
         "when: suggestion_count_365d >= 3 or churn_level == '中' or sla_breached_open > 0")
    assert problems(policy_copy, "error") == []
    assert later_stage_warnings(policy_copy) == [
        f"{at(policy_copy, 'classification/need_type.yaml', 'churn_level')}: 警告 warning: 'churn_level' 由 churn 阶段计算，churn 在 "
        "classification 之后才运行：在这里它总是空的（null） / 'churn_level' is computed by the churn stage, which runs after "
        "classification: here it is always empty (null) [reads-later-stage] — 修改建议: 把这条规则移到 churn 阶段（写 'kind: churn' "
        "的策略文件） / move the rule to the churn stage (a policy file with 'kind: churn')",
        f"{at(policy_copy, 'classification/need_type.yaml', 'sla_breached_open')}: 警告 warning: 'sla_breached_open' 由 sla 阶段计算，"
        "sla 在 classification 之后才运行：在这里它总是空的（null） / 'sla_breached_open' is computed by the sla stage, which runs after "
        "classification: here it is always empty (null) [reads-later-stage] — 修改建议: 把这条规则移到 sla 阶段或之后的阶段（写 "
        "'kind: sla' 的策略文件） / move the rule to the sla stage or later (a policy file with 'kind: sla')"]


def test_a_care_rule_reading_the_churn_level_is_warned_but_not_a_churn_rule(policy_copy: Path):
    edit(policy_copy / "care/member.yaml", "when: is_member_day and lifecycle_stage == '签约'",
         "when: is_member_day and lifecycle_stage == '签约' and sla_open == 0 and churn_level != '高'")
    assert later_stage_warnings(policy_copy) == [
        f"{at(policy_copy, 'care/member.yaml', 'churn_level')}: 警告 warning: 'churn_level' 由 churn 阶段计算，churn 在 care 之后才运行："
        "在这里它总是空的（null） / 'churn_level' is computed by the churn stage, which runs after care: here it is "
        "always empty (null) [reads-later-stage] — 修改建议: 把这条规则移到 churn 阶段（写 'kind: churn' 的策略文件） / "
        "move the rule to the churn stage (a policy file with 'kind: churn')"]
    # Results of earlier stages (and of the churn stage itself) are there when a churn rule runs.
    edit(policy_copy / "churn/win_back.yaml", "when: ", "when: sla_breached_open >= 0 and revisit_due != true and value_tier != '低' "
                                                       "and churn_level != '无' and ")
    assert problems(policy_copy, "error") == []
    assert len(later_stage_warnings(policy_copy)) == 1


def test_a_table_column_reading_a_later_result_is_warned_once_at_its_name(policy_copy: Path):
    set_cells(policy_copy / "tables/service_plan.xlsx", {"C2": "churn_level"})
    assert later_stage_warnings(policy_copy) == [
        "tables/service_plan.xlsx!服务方案!C2: 警告 warning: 'churn_level' 由 churn 阶段计算，churn 在 classification 之后才运行："
        "在这里它总是空的（null） / 'churn_level' is computed by the churn stage, which runs after "
        "classification: here it is always empty (null) [reads-later-stage] — 修改建议: 把这条规则移到 churn 阶段（写 "
        "'kind: churn' 的策略文件） / move the rule to the churn stage (a policy file with 'kind: churn')"]


# -- D. a tag a stage module reads must hold what it needs ------------------------------------------


@pytest.mark.parametrize("value, shown, example", [("90天", "'90天'", "90"), (30.5, "30.5", "90"), ("是", "true", "90")])
def test_a_revisit_interval_that_is_no_number_of_days(policy_copy: Path, value, shown: str, example: str):
    set_cells(policy_copy / "tables/service_plan.xlsx", {"F7": value})
    assert problems(policy_copy, "error") == [
        f"tables/service_plan.xlsx!服务方案!F7: 错误 error: revisit_interval_days 要写整数天数，不能是 {shown} / "
        f"revisit_interval_days must be a whole number of days, not {shown} "
        f"[bad-tag-value] — 修改建议: 只写天数，如 {example}：care 阶段按它计算到下次回访的天数 / "
        f"write the number of days alone, e.g. {example}: the care stage counts the days to the next revisit from it"]


def test_a_revisit_interval_set_in_yaml(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "    set: {need_type: 普通}\n",
         "    set: {need_type: 普通, revisit_interval_days: 60天}\n")
    assert problems(policy_copy, "error") == [
        f"{at(policy_copy, 'classification/need_type.yaml', '60天')}: 错误 error: revisit_interval_days 要写整数天数，不能是 '60天' / "
        "revisit_interval_days must be a whole number of days, not '60天' "
        "[bad-tag-value] — 修改建议: 只写天数，如 60：care 阶段按它计算到下次回访的天数 / write the number of days alone, "
        "e.g. 60: the care stage counts the days to the next revisit from it"]


def test_the_care_stage_does_not_stop_on_an_interval_that_slipped_through():
    policyset = load_policies(SHIPPED_POLICIES)
    (plan,) = [rs for rs in policyset.rulesets["classification"] if rs.policy_id == "service_plan"]
    for rule in plan.rules:  # as if the table said 90天 and nothing had checked it
        rule.outputs = [dataclasses.replace(o, value="90天") if isinstance(o, SetTag) and o.name == "revisit_interval_days"
                        else o for o in rule.outputs]
    cust = Customer(customer_id="C1", source=SRC, name="客户C1", owner="张伟", phone="13800000000", marketing_consent=True,
                    preferred_channel="短信", signed_date=date(2024, 1, 1))
    data = Dataset(customers=[cust], orders=[Order("O1", "C1", date(2026, 1, 5), 1000.0, SRC)], interactions=[])
    ev = evaluate_dataset(policyset, data, date(2026, 6, 1), SHIPPED_TEMPLATES)
    (row,) = ev.customer_rows
    assert row["revisit_interval_days"] == "90天" and row["revisit_due"] is False and row["next_revisit_date"] is None


def test_sla_kpis_group_a_numeric_value_tier_beside_customers_without_one():
    policyset = load_policies(SHIPPED_POLICIES)
    (tiers,) = [rs for rs in policyset.rulesets["classification"] if rs.policy_id == "value_tier"]
    tiers.rules = [dataclasses.replace(r, outputs=[dataclasses.replace(o, value=1) for o in r.outputs])
                   for r in tiers.rules if r.rule_id == "VT-1"]  # only big spenders get a (numeric) tier
    customers = [Customer(customer_id=c, source=SRC, name=c, owner="张伟", phone="13800000000") for c in ("C1", "C2")]
    complaints = [Interaction(f"I{c}", c, datetime(2026, 5, 28, 10, 0), SRC, type="投诉") for c in ("C1", "C2")]
    data = Dataset(customers=customers, orders=[Order("O1", "C1", date(2026, 5, 1), 200000.0, SRC)], interactions=complaints)
    ev = evaluate_dataset(policyset, data, date(2026, 6, 1), SHIPPED_TEMPLATES)
    groups = [group for dimension, group, _ in ev.modules["sla"].kpis() if dimension == "价值等级"]
    assert groups == ["1", "（未分层）"]


# -- E. round() with too many decimal places --------------------------------------------------------


def test_round_with_a_constant_number_of_places_out_of_range(policy_copy: Path):
    edit(policy_copy / "classification/need_type.yaml", "when: suggestion_count_365d >= 3",
         "when: suggestion_count_365d >= 3 or round(monetary_365d, 30) > 1")
    assert problems(policy_copy, "error") == [
        f"{at(policy_copy, 'classification/need_type.yaml', '30)')}: 错误 error: round() takes a whole number of decimal places from -10 to 10, "
        "not 30 [bad-argument] — 修改建议: e.g. round(x, 2) for cents, round(x, -3) for thousands"]


def test_round_at_run_time():
    run = expr.compile_expr(expr.parse("round(m, d) > 1"))
    assert run({"m": 1e20, "d": 10}) is True  # 31 digits: the default decimal context (28) gave InvalidOperation
    assert FUNCTIONS["round"].impl(123456.785, 2) == 123456.79
    with pytest.raises(EvaluationError) as exc:
        run({"m": 123456.78, "d": 30})
    assert format_problem(exc.value.problems[0]) == (
        "line 1, col 1: 错误 error: cannot compute round(m, d): round() takes a whole number of decimal places from -10 to 10, "
        "not 30 [eval-bad-argument]")
