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


def warnings(policies: Path, code: str) -> list[str]:
    return [line for line in map(format_problem, validate_policies(policies)) if line.split(" — ")[0].endswith(f"[{code}]")]


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


def test_a_quoted_part_of_a_condition_is_shown_as_typed(policy_copy: Path):
    """It showed 'value_tier == \\'低\\'': quotes the author never typed."""
    for typed in ("\"value_tier == '低'\"", "“value_tier == '低'”"):
        edit_condition(policy_copy, f"open_complaints == 0 and {typed}")
        assert errors(policy_copy) == [
            f"churn/marketing.yaml:34:36: 错误 error: 'and' 连接的两边都要是条件，但 {typed} 是文字 / 'and' combines true/false"
            f" conditions, but {typed} has type string [type-mismatch] — 修改建议: 去掉这段条件外面的引号: value_tier == '低' / "
            "remove the quotes around this part of the condition: value_tier == '低'"]
        MARKETING_34_NOW = "when: open_complaints == 0 and " + typed
        path = policy_copy / "churn" / "marketing.yaml"
        path.write_text(path.read_text(encoding="utf-8").replace(MARKETING_34_NOW, MARKETING_34), encoding="utf-8")


# -- 4. a decision table's result column headed in Chinese ------------------------------------------

def test_a_result_header_typed_as_its_chinese_label_names_the_result(policy_copy: Path):
    """优惠方案 instead of offer_plan: it quietly set a new result 优惠方案 (customers.xlsx had two columns)."""
    edit_table(policy_copy, "tables/service_plan.xlsx", "G2", "优惠方案")
    assert warnings(policy_copy, "table-result-label") == [
        "tables/service_plan.xlsx!服务方案!G2: 警告 warning: 结果列写的是中文名 '优惠方案'，是不是 'offer_plan'（优惠方案）？ / the"
        " result column is headed '优惠方案' in Chinese (did you mean 'offer_plan' (优惠方案)?) [table-result-label] — 修改建议: "
        "第 2 行写结果名 offer_plan，不写中文名 优惠方案：别的策略、模板和 customers.xlsx 按 offer_plan 读它 / row 2 must name the"
        " result: write offer_plan, not its Chinese label 优惠方案; other policies, templates and customers.xlsx read it as offer_plan"]


def test_a_rule_reading_a_result_whose_table_header_is_chinese_is_told_where(policy_copy: Path):
    """价值等级 instead of value_tier: the readers said only 没有叫 'value_tier' 的字段, with no did-you-mean."""
    edit_table(policy_copy, "tables/value_tier.xlsx", "E2", "价值等级")
    where = "tables/value_tier.xlsx!价值分层!E2"
    said = (f"没有叫 'value_tier' 的字段：{where} 的结果列写的是中文名 '价值等级'，是不是它？ / unknown name 'value_tier' (the"
            f" result column at {where} is headed '价值等级' in Chinese: is that it?) [unknown-name] — 修改建议: 把 {where} 的"
            f" '价值等级' 改成 value_tier / write value_tier instead of '价值等级' at {where}")
    assert errors(policy_copy) == [f"tables/service_plan.xlsx!服务方案!C2: 错误 error: {said}",
                                   f"care/greetings.yaml:30:34: 错误 error: {said}",
                                   f"churn/marketing.yaml:34:11: 错误 error: {said}"]


def test_a_chinese_result_header_with_no_label_lists_the_results(policy_copy: Path):
    edit_table(policy_copy, "tables/service_plan.xlsx", "G2", "推荐方案")
    assert warnings(policy_copy, "table-result-label") == [
        "tables/service_plan.xlsx!服务方案!G2: 警告 warning: 结果列写的是中文名 '推荐方案'：它设置一个叫 '推荐方案' 的新结果 / the"
        " result column is headed '推荐方案' in Chinese: it sets a new result called '推荐方案' [table-result-label] — 修改建议: "
        "第 2 行写结果名（字母、数字和下划线），策略设置的结果有：dedicated_owner_required（需配专属客户经理）、lifecycle_stage（合作阶段）、"
        "need_type（需求类型）、offer_plan（优惠方案）、revisit_interval_days（回访间隔(天)）、risk_level（风险等级）、"
        "sales_stage（销售阶段）、service_team（服务团队）… / row 2 must name the result in letters, digits and underscores; the"
        " policies set: dedicated_owner_required (需配专属客户经理), lifecycle_stage (合作阶段), need_type (需求类型), offer_plan"
        " (优惠方案), revisit_interval_days (回访间隔(天)), risk_level (风险等级), sales_stage (销售阶段), service_team (服务团队)…"]
    assert errors(policy_copy) == []


# -- 5. a message template file named nearly right --------------------------------------------------

def test_a_template_file_with_a_hidden_doubled_extension_is_named(policy_copy: Path):
    """生日祝福.txt.txt: Explorer hides .txt, the author typed it again."""
    sms = policy_copy.parent / "templates" / "messages" / "sms"
    (sms / "birthday.txt").rename(sms / "birthday.txt.txt")
    assert errors(policy_copy) == [
        "care/greetings.yaml:12:5: 错误 error: 规则 CARE-BIRTHDAY-GREETING 在 sms 渠道发送模板 'birthday'，但"
        " templates/messages/sms/birthday.txt 不存在；有一个文件 birthday.txt.txt，是不是它？ / rule CARE-BIRTHDAY-GREETING sends"
        " template 'birthday' on channel sms, but templates/messages/sms/birthday.txt does not exist (did you mean the file"
        " birthday.txt.txt?) [unknown-template] — 修改建议: 把 birthday.txt.txt 改名为 birthday.txt（Windows 资源管理器可能隐藏了"
        "扩展名：在“查看”里勾选“文件扩展名”） / rename birthday.txt.txt to birthday.txt (Windows Explorer may hide extensions:"
        " tick View → File name extensions)"]


def test_a_template_name_one_slip_from_a_file_is_named(policy_copy: Path):
    sms = policy_copy.parent / "templates" / "messages" / "sms"
    (sms / "birthday.txt").rename(sms / "生日祝福.txt")
    path = policy_copy / "care" / "greetings.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("template: birthday", "template: 生日祝副", 1), encoding="utf-8")
    said = [line for line in errors(policy_copy) if "渠道 sms" in line or "sms 渠道" in line]
    assert said == [
        "care/greetings.yaml:12:5: 错误 error: 规则 CARE-BIRTHDAY-GREETING 在 sms 渠道发送模板 '生日祝副'，但"
        " templates/messages/sms/生日祝副.txt 不存在；是不是 生日祝福.txt？ / rule CARE-BIRTHDAY-GREETING sends template '生日祝副'"
        " on channel sms, but templates/messages/sms/生日祝副.txt does not exist (did you mean 生日祝福.txt?) [unknown-template]"
        " — 修改建议: 把模板名称改成 '生日祝福'，或把 生日祝福.txt 改名为 生日祝副.txt / write template: 生日祝福, or rename"
        " 生日祝福.txt to 生日祝副.txt"]
