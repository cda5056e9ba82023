"""Mistakes an operations author makes in a copy of the policies, and where validate points: at the
cell or line that holds the mistake, once, with advice that fits (found in a review by ops staff)."""
from __future__ import annotations

from pathlib import Path

import openpyxl

from engine.validate import format_problem, validate_policies


def edit_table(policies: Path, workbook: str, ref: str, text: str) -> None:
    path = policies / workbook
    wb = openpyxl.load_workbook(path)
    wb.worksheets[0][ref] = text
    wb.save(path)


def errors(policies: Path) -> list[str]:
    return [line for line in map(format_problem, validate_policies(policies)) if ": 错误 error: " in line]


# -- 1. the name in row 2 of a decision table's 条件 column ----------------------------------------

def test_misspelt_header_is_one_error_at_the_header_cell(policy_copy: Path):
    edit_table(policy_copy, "tables/value_tier.xlsx", "C2", "frequency_356d")
    assert errors(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!C2: 错误 error: 没有叫 'frequency_356d' 的字段，是不是 'frequency_365d'？ / "
        "unknown name 'frequency_356d' (did you mean 'frequency_365d'?) [unknown-name] — 修改建议: "
        "改成 'frequency_365d' / write 'frequency_365d'"]


def test_chinese_label_as_header_suggests_the_field(policy_copy: Path):
    edit_table(policy_copy, "tables/service_plan.xlsx", "B2", "行业")
    assert errors(policy_copy) == [
        "tables/service_plan.xlsx!服务方案!B2: 错误 error: 没有叫 '行业' 的字段，是不是 'industry'（行业）？ / "
        "unknown name '行业' (did you mean 'industry' (行业)?) [unknown-name] — 修改建议: "
        "第 2 行写字段名 industry，不写中文名 行业（字段见 docs/features.md） / "
        "row 2 must name the field: write industry, not its Chinese label 行业 (docs/features.md lists the fields)"]


def test_unknown_chinese_header_says_row_2_names_a_field(policy_copy: Path):
    edit_table(policy_copy, "tables/value_tier.xlsx", "B2", "客户价值")
    assert errors(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!B2: 错误 error: 没有叫 '客户价值' 的字段 / unknown name '客户价值' [unknown-name]"
        " — 修改建议: 第 2 行要写字段名（或前面的策略设置的结果名），如 industry（行业）；字段见 docs/features.md / "
        "row 2 must name a field (or a result an earlier policy sets), e.g. industry (行业); docs/features.md lists the fields"]


# -- 2. a misspelt result name: the reader's did-you-mean says where the tag is set --------------

def test_misspelt_result_column_is_named_where_the_tag_is_read(policy_copy: Path):
    edit_table(policy_copy, "tables/value_tier.xlsx", "E2", "value_teir")
    where = "tables/value_tier.xlsx!价值分层!E2"
    said = (f"没有叫 'value_tier' 的字段，是不是 'value_teir'（{where} 设置的）？ / unknown name 'value_tier' "
            f"(did you mean 'value_teir', set at {where}?) [unknown-name] — 修改建议: 改成 'value_teir'；如果拼错的是 {where} "
            f"那边，就改那里 / write 'value_teir', or if the misspelling is at {where}, correct it there")
    assert errors(policy_copy) == [f"tables/service_plan.xlsx!服务方案!C2: 错误 error: {said}",
                                   f"care/greetings.yaml:30:34: 错误 error: {said}",
                                   f"churn/marketing.yaml:34:11: 错误 error: {said}"]


# -- 3. dates and quotes in a condition -------------------------------------------------------------

MARKETING_34 = ("when: value_tier == '低' and lifecycle_stage == '签约' and need_type == '普通' and open_complaints == 0 and not "
                "(churn_level in ['高', '中'] and churn_reason in ['服务', '产品']) and not (order_count == 0 and tenure_days < 30)")


def edit_condition(policies: Path, condition: str) -> None:
    path = policies / "churn" / "marketing.yaml"
    text = path.read_text(encoding="utf-8")
    assert MARKETING_34 in text
    path.write_text(text.replace(MARKETING_34, "when: " + condition), encoding="utf-8")


DATE_FIX = ("日期写成 date('YYYY-MM-DD')，如 date('2024-05-17')（也可以写 date('2024/5/17')） / "
            "write the date as date('YYYY-MM-DD'), e.g. date('2024-05-17') (date('2024/5/17') works too)")


def test_invalid_date_says_what_is_wrong(policy_copy: Path):
    edit_condition(policy_copy, "value_tier == '低' and signed_date < date('2026/13/01')")
    assert errors(policy_copy) == [
        "churn/marketing.yaml:34:47: 错误 error: date('2026/13/01') 不是有效的日期：月份 13 不存在 / date('2026/13/01') is not"
        " a valid date: there is no month 13 [bad-date] — 修改建议: " + DATE_FIX]


def test_date_written_as_text_suggests_date(policy_copy: Path):
    edit_condition(policy_copy, "value_tier == '低' and signed_date < '2026-12-01'")
    assert errors(policy_copy) == [
        "churn/marketing.yaml:34:33: 错误 error: signed_date（日期）不能和 '2026-12-01'（文字）比较 / cannot compare signed_date"
        " (date) with '2026-12-01' (string) [type-mismatch] — 修改建议: 日期写成 date('2026-12-01') 而不是 '2026-12-01' / "
        "write the date as date('2026-12-01'), not '2026-12-01'"]


def test_condition_in_chinese_quotes_says_remove_them(policy_copy: Path):
    edit_condition(policy_copy, "“value_tier == '低' and open_complaints == 0”")
    inner = "value_tier == '低' and open_complaints == 0"
    assert errors(policy_copy) == [
        f"churn/marketing.yaml:34:11: 错误 error: 整个条件写在引号里，成了一段文字，不是条件：{inner} / the whole condition is"
        f" in quotes, which makes it text, not a condition: {inner} [type-mismatch] — 修改建议: 去掉条件外面的引号，写成 {inner}"
        f" / remove the quotes around the condition: {inner}"]
