"""Policy edits an operations user made that `validate` let through (or answered with a misleading
message), each reproduced on a real copy of the shipped policies: a note typed on its own row of a
decision table, a column whose kind in row 1 was cleared, a role with nobody, one tag set by two
policies, an SLA target that can never apply, comparison signs typed in full width, and messages
that pointed the wrong way. Each test makes the edit (openpyxl or text) and checks the exact line
`validate` prints: file, line or cell, message and fix."""
from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from engine.validate import format_problem, validate_policies

from conftest import edit

VALUE_TIER = "tables/value_tier.xlsx"


def edit_table(policies: Path, workbook: str, change) -> None:
    path = policies / workbook
    wb = openpyxl.load_workbook(path)
    change(wb.worksheets[0])
    wb.save(path)


def lines(policies: Path, severity: str | None = None) -> list[str]:
    """What validate prints, without the calendar's look-ahead warning (it depends on today's date)."""
    return [format_problem(p) for p in validate_policies(policies)
            if p.code != "calendar-year-ahead" and (severity is None or p.severity == severity)]


def line_of(folder: Path, file: str, text: str) -> int:
    """The first line holding ``text`` (being exactly ``text`` when it ends with a newline)."""
    found = (folder / file).read_text(encoding="utf-8").splitlines()
    if text.endswith("\n"):
        return next(n for n, line in enumerate(found, start=1) if line == text[:-1])
    return next(n for n, line in enumerate(found, start=1) if text in line)


# -- 1. a note on a row of its own in a decision table ---------------------------------------------

NOTE_ROW_FIX = ("说明文字写在某条规则那一行的说明列，或写在表格右侧第 1 行没有种类的列，然后删除这一行；若它是一条规则，填上它的条件和结果"
                " / put the note in the 说明 column of a rule's row or in a column right of the table with nothing in row 1, and"
                " delete this row; if it is a rule, fill in its conditions and results")


def test_a_note_on_its_own_row_is_refused_at_its_cell(policy_copy: Path):
    """It used to become a rule with no condition and no result: under hit policy first it matched
    every customer below VT-2 and left 价值等级 empty for them."""
    def change(ws):
        ws.insert_rows(5)
        ws["F5"] = "以下为中价值"
    edit_table(policy_copy, VALUE_TIER, change)
    assert lines(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!F5: 错误 error: 第 5 行只有说明“以下为中价值”，没有条件也没有结果，不能算一条规则："
        "它对每位客户都成立却什么也不设置（命中策略为 first 时，下面的行都不会再生效） / row 5 has only the note '以下为中价值',"
        " no condition and no result, so it cannot be a rule: it would match every customer and set nothing (under hit policy"
        " first no row below it would apply) [table-empty-rule] — 修改建议: " + NOTE_ROW_FIX]


def test_a_row_with_only_an_id_and_any_value_cells_is_refused_too(policy_copy: Path):
    def change(ws):
        ws.insert_rows(5)
        for ref, value in (("A5", "VT-2b"), ("B5", "-"), ("C5", "-")):
            ws[ref] = value
    edit_table(policy_copy, VALUE_TIER, change)
    assert lines(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!A5: 错误 error: 第 5 行只有 A5“VT-2b”，没有条件也没有结果，不能算一条规则："
        "它对每位客户都成立却什么也不设置（命中策略为 first 时，下面的行都不会再生效） / row 5 has only A5 'VT-2b',"
        " no condition and no result, so it cannot be a rule: it would match every customer and set nothing (under hit policy"
        " first no row below it would apply) [table-empty-rule] — 修改建议: " + NOTE_ROW_FIX]


def test_a_catch_all_row_with_a_result_is_still_a_rule(policy_copy: Path):
    # VT-5 (all conditions '-', result 低) is the shipped catch-all; a row with conditions and no
    # result is a rule too (it stops a first table there): only rows with neither are refused.
    edit_table(policy_copy, VALUE_TIER, lambda ws: ws.__setitem__("E6", None))
    assert not lines(policy_copy, "error")


# -- 2. a column without its kind in row 1 ---------------------------------------------------------

def test_a_cleared_kind_in_row_1_is_an_error_at_that_cell(policy_copy: Path):
    """Clearing C1 (条件 above frequency_365d) used to drop that condition from every row, silently."""
    edit_table(policy_copy, VALUE_TIER, lambda ws: ws.__setitem__("C1", None))
    assert lines(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!C1: 错误 error: C1 是空的：第 1 行没有写这一列是什么（第 2 行写着 frequency_365d），整列被忽略"
        " / C1 is empty: row 1 does not say what this column is (row 2 names frequency_365d), so the whole column is ignored"
        " [table-kind-missing] — 修改建议: 在 C1 写 条件（这一列按 frequency_365d 筛选客户）或 结果（这一列设置 frequency_365d）；"
        "是备注就写 说明 / write 条件 in C1 (the column tests frequency_365d) or 结果 (it sets frequency_365d); for notes write 说明"]


def test_a_new_column_with_a_name_but_no_kind_is_an_error(policy_copy: Path):
    def change(ws):
        ws["G2"] = "complaint_count_90d"
        ws["G3"] = "< 2"
    edit_table(policy_copy, VALUE_TIER, change)
    assert [line.split(" / ")[0] for line in lines(policy_copy)] == [
        "tables/value_tier.xlsx!价值分层!G1: 错误 error: G1 是空的：第 1 行没有写这一列是什么（第 2 行写着 complaint_count_90d），整列被忽略"]


def test_a_column_inside_the_table_with_values_but_no_header_is_an_error(policy_copy: Path):
    def change(ws):
        ws["C1"] = None
        ws["C2"] = None
    edit_table(policy_copy, VALUE_TIER, change)
    assert [line.split(" / ")[0] for line in lines(policy_copy)] == [
        "tables/value_tier.xlsx!价值分层!C1: 错误 error: C1 是空的：第 1 行没有写这一列是什么（下面有内容），整列被忽略"]


# -- 3. a role with nobody -------------------------------------------------------------------------

def test_a_role_with_nobody_is_an_error_and_the_run_refuses(policy_copy: Path, tmp_path: Path):
    """`客服主管:` (the name deleted) used to pass: the run then wrote tasks/None.xlsx."""
    from click.testing import CliRunner

    from conftest import customer, write_inbox
    from engine.cli import main

    edit(policy_copy / "organization.yaml", "  客服主管: 李强", "  客服主管:")
    line = line_of(policy_copy, "organization.yaml", "  客服主管:\n")  # the role's line, not the comment's example
    expected = (f"organization.yaml:{line}:3: 错误 error: 角色 客服主管 没有写由谁担任"
                " / role '客服主管' names nobody [role-without-person] — 修改建议: 在冒号和一个空格后写担任这个角色的人，"
                "如 客服主管: 李强 / write the person after the colon and a space, e.g. 客服主管: 李强")
    assert lines(policy_copy) == [expected]
    inbox = write_inbox(tmp_path / "inbox", [customer("C1")])
    result = CliRunner().invoke(main, ["run", "--policies", str(policy_copy), "--inbox", str(inbox),
                                       "--outbox", str(tmp_path / "outbox"), "--as-of", "2026-11-20"])
    assert result.exit_code != 0 and "role-without-person" in result.output
    assert not list(tmp_path.glob("outbox/*/tasks/None.xlsx")) and not list(tmp_path.glob("outbox/*/tasks"))


# -- 4. one tag set by two policies ----------------------------------------------------------------

VIP = "kind: classification\nid: vip\nrules:\n  - id: VIP-1\n    when: {when}\n    set: {{value_tier: 高}}\n"


def test_a_tag_set_by_two_policies_names_both_and_the_winner(policy_copy: Path):
    (policy_copy / "classification" / "vip.yaml").write_text(VIP.format(when="monetary_365d > 200000"), encoding="utf-8")
    assert lines(policy_copy) == [
        "classification/vip.yaml:6:23: 警告 warning: value_tier 由两个策略设置：value_tier 的 VT-1 等 5 条规则"
        "（tables/value_tier.xlsx!价值分层!E3）和 vip 的 VIP-1（classification/vip.yaml:6:23）；两者对同一位客户都生效时，"
        "后运行的 vip 的值留下，value_tier 设置的值被覆盖（同一阶段中互不读取结果的策略按文件名顺序运行：classification/value_tier.yaml"
        " 在 classification/vip.yaml 之前） [tag-set-twice] — 修改建议: 只让一个策略设置 value_tier：把 VIP-1 并入 value_tier，"
        "或给其中一个结果换个名字；若 vip 是有意覆盖，在它的条件中读取 value_tier（如 value_tier != '高' and …），它就总在 value_tier 之后运行"]


def test_a_policy_that_reads_the_tag_it_overrides_is_not_reported(policy_copy: Path):
    (policy_copy / "classification" / "vip.yaml").write_text(
        VIP.format(when="value_tier != '高' and monetary_365d > 200000"), encoding="utf-8")
    assert lines(policy_copy) == []


# -- 5. an SLA target that can never apply ---------------------------------------------------------

def test_an_sla_target_after_a_broader_one_is_unreachable(policy_copy: Path):
    with (policy_copy / "sla.yaml").open("a", encoding="utf-8") as f:
        f.write("\n  - id: sla-inquiry-high\n    description: 高价值客户咨询\n"
                "    when: type == '咨询' and value_tier == '高'\n    first_response: 1h\n")
    line = line_of(policy_copy, "sla.yaml", "id: sla-inquiry-high")
    assert lines(policy_copy) == [
        f"sla.yaml:{line}:5: 警告 warning: SLA 时限 sla-inquiry-high 永远不会生效：时限从上到下第一条满足 when 的生效（first），"
        "满足它的互动都会先满足 sla-inquiry-hotline、sla-inquiry（其中之一） [unreachable-rule] — 修改建议: "
        "把 sla-inquiry-high 移到 sla-inquiry-hotline 之前，或删除/修改这条规则"]


def test_the_same_sla_target_before_the_broader_one_is_fine(policy_copy: Path):
    edit(policy_copy / "sla.yaml", "  - id: sla-inquiry-hotline\n",
         "  - id: sla-inquiry-high\n    when: type == '咨询' and value_tier == '高'\n    first_response: 1h\n\n"
         "  - id: sla-inquiry-hotline\n")
    assert lines(policy_copy) == []


# -- 6. full-width signs, units and words in table cells ---------------------------------------------

@pytest.mark.parametrize("cell, condition", [
    ("＜ 90", "(days_since_last_order) < 90 and (frequency_365d) >= 4 and (monetary_365d) >= 50000"),
    ("＞＝１０", "(days_since_last_order) >= 10 and (frequency_365d) >= 4 and (monetary_365d) >= 50000"),
])
def test_full_width_comparison_signs_are_read(policy_copy: Path, cell: str, condition: str):
    """A Chinese input method types ＜ and ＞＝: they were refused with an English type-mismatch message."""
    from engine.policy.loader import load_policies

    edit_table(policy_copy, VALUE_TIER, lambda ws: ws.__setitem__("B4", cell))
    assert not lines(policy_copy, "error")
    rules = next(rs for rs in load_policies(policy_copy).rulesets["classification"] if rs.policy_id == "value_tier").rules
    assert rules[1].condition_text == condition


UNIT_MESSAGE = "读不出：比较的值只写数字，不写单位 / cannot read '{cell}': a comparison takes a plain number, without a unit"
UNIT_FIX = "写 {write}（金额按元、天数按天、次数按次，只写数字） / write {write} (amounts in yuan, days in days, counts as numbers)"
WORD_MESSAGE = "读不出：比较要用符号写 / cannot read '{cell}': write the comparison with a sign"
WORD_FIX = "写 {write}（>= 大于等于，<= 小于等于，> 大于，< 小于，!= 不等于） / write {write}"


@pytest.mark.parametrize("ref, cell, message, fix, write", [
    ("D4", ">=5万", UNIT_MESSAGE, UNIT_FIX, ">= 50000"),
    ("D4", ">=50000元", UNIT_MESSAGE, UNIT_FIX, ">= 50000"),
    ("B4", "<90天", UNIT_MESSAGE, UNIT_FIX, "< 90"),
    ("B4", "小于90", WORD_MESSAGE, WORD_FIX, "< 90"),
])
def test_units_and_words_in_a_comparison_say_what_to_write(policy_copy: Path, ref: str, cell: str, message: str,
                                                            fix: str, write: str):
    edit_table(policy_copy, VALUE_TIER, lambda ws: ws.__setitem__(ref, cell))
    assert lines(policy_copy) == [
        f"tables/value_tier.xlsx!价值分层!{ref}: 错误 error: “{cell}” " + message.format(cell=cell)
        + " [table-bad-cell] — 修改建议: " + fix.format(write=write)]


# -- 7. messages that pointed the wrong way ----------------------------------------------------------

NEED_TYPE = "classification/need_type.yaml"
EMPTY_CONDITION = ("错误 error: 条件是空的 / the condition is empty [expr-syntax] — 修改建议: 写一个条件，如 monetary_365d >= 50000；"
                   "对所有客户都适用就写 true / write a condition such as monetary_365d >= 50000; for every customer write true")


def test_an_empty_when_says_the_condition_is_empty(policy_copy: Path):
    """It said "unknown name 'None' (did you mean 'owner'?)"."""
    edit(policy_copy / NEED_TYPE, "when: recorded_need_type == '战略'", "when:")
    line = line_of(policy_copy, NEED_TYPE, "    when:\n")
    assert lines(policy_copy) == [f"{NEED_TYPE}:{line}:10: {EMPTY_CONDITION}"]


def test_an_empty_when_of_an_sla_target_says_the_condition_is_empty(policy_copy: Path):
    edit(policy_copy / "sla.yaml", "when: type == '建议'", "when:")
    line = line_of(policy_copy, "sla.yaml", "    when:\n")
    assert lines(policy_copy) == [f"sla.yaml:{line}:10: {EMPTY_CONDITION}"]


def test_a_task_field_indented_out_of_task_says_so(policy_copy: Path):
    """It said "unknown field 'script' in a rule; did you mean 'description'?"."""
    actions = "classification/actions.yaml"
    edit(policy_copy / actions, "      script: 该客户属于", "    script: 该客户属于")
    assert lines(policy_copy) == [
        f"{actions}:{line_of(policy_copy, actions, '    script: 该客户属于')}:5: 错误 error: 'script' 是 task: 下的字段，"
        "多半是缩进少了，跑到了 task: 外面 / 'script' is a field of 'task:'; it probably belongs under task: (check its"
        " indentation) [misplaced-field] — 修改建议: 把 script: 这一行缩进到和 task: 下面的其他行对齐 / indent the script: line"
        " like the other lines under task:"]


@pytest.mark.parametrize("written", ["need_type=普通", "need_type = 普通", "need_type==普通"])
def test_set_with_an_equals_sign_suggests_the_colon(policy_copy: Path, written: str):
    """It suggested set: {need_type: need_type=普通}."""
    edit(policy_copy / NEED_TYPE, "set: {need_type: 普通}", f"set: {written}")
    assert lines(policy_copy) == [
        f"{NEED_TYPE}:{line_of(policy_copy, NEED_TYPE, f'set: {written}')}:5: 错误 error: 'set:' 后面要写成 {{名称: 值}}，不能只写 "
        f"'{written}'；是不是要写 'need_type: 普通'（半角冒号加一个空格）？ / 'set:' must be a block of 'tag name: value'"
        f" pairs, not '{written}'; did you mean 'need_type: 普通' with a half-width colon and a space? [not-a-mapping]"
        " — 修改建议: 写成 set: {need_type: 普通} / write set: {need_type: 普通}"]


def test_a_new_rule_file_with_only_its_kind_says_it_has_no_rules(policy_copy: Path):
    """It said "only one care settings file is allowed … merge care.yaml into care/new.yaml"."""
    (policy_copy / "care" / "new.yaml").write_text("kind: care\n", encoding="utf-8")
    assert lines(policy_copy) == [
        "care/new.yaml:1:1: 错误 error: care/new.yaml 没有 rules:（也没有 table:），不是一个规则文件 / care/new.yaml has no rules:"
        " (nor table:), so it holds no rules [no-rules] — 修改建议: 在 rules: 下写规则（可以照其他 kind: care 的规则文件写），"
        "或删除这个文件 / write its rules under rules: (like the other kind: care rule files), or delete the file"]


def test_a_second_care_settings_file_with_settings_is_still_a_duplicate(policy_copy: Path):
    (policy_copy / "care" / "new.yaml").write_text("kind: care\nmember_day: {day_of_month: 8}\n", encoding="utf-8")
    assert [line.split(" [")[1].split("]")[0] for line in lines(policy_copy)] == ["duplicate-care-settings"]


def test_a_quoted_whole_number_setting_says_remove_the_quotes(policy_copy: Path):
    edit(policy_copy / "care.yaml", "  greeting_days_before: 3   # 生日", '  greeting_days_before: "3"   # 生日')
    line = line_of(policy_copy, "care.yaml", 'greeting_days_before: "3"')
    assert lines(policy_copy) == [
        f"care.yaml:{line}:26: 错误 error: 'greeting_days_before' 要写 0 到 60 之间的整数，不能是加了引号的文字 \"3\" / "
        "'greeting_days_before' must be"
        ' a whole number from 0 to 60, not the text "3" (in quotes) [bad-value] — 修改建议: 去掉引号 / remove the quotes: '
        "greeting_days_before: 3"]


def test_a_role_typed_twice_is_one_error_without_follow_on_unknown_roles(policy_copy: Path):
    """organization.yaml could not be read, so every rule naming a role also said "unknown role … roles: " (empty)."""
    edit(policy_copy / "organization.yaml", "  客服主管: 李强\n", "  客服主管: 李强\n  客服主管: 张三\n")
    assert lines(policy_copy) == [
        f"organization.yaml:{line_of(policy_copy, 'organization.yaml', '客服主管: 张三')}:3: 错误 error: 同一块里 '客服主管' 写了两次，"
        "只有最后一个会生效 / the key '客服主管' appears twice in the same block; YAML would silently keep only the last one"
        " [duplicate-key] — 修改建议: 删掉其中一个，或给它改名 / delete or rename one of them"]


def test_unknown_roles_are_still_reported_when_organization_yaml_is_fine(policy_copy: Path):
    edit(policy_copy / "care" / "follow_up.yaml", "role:客服主管", "role:客服经理")
    assert [line.split(" [")[1].split("]")[0] for line in lines(policy_copy)] == ["unknown-role"]


# -- 8. a festival rule written with Chinese quotes ---------------------------------------------------

def test_a_festival_named_in_chinese_quotes_has_its_rule(policy_copy: Path):
    """“国庆” works at run time, but the check looked for '国庆' or "国庆" in the text and warned
    "festival '国庆' has no greeting rule"."""
    edit(policy_copy / "care" / "festivals.yaml", "when: \"'国庆' in festivals_due", "when: \"“国庆” in festivals_due")
    assert lines(policy_copy) == []


def test_a_festival_without_a_rule_is_still_reported(policy_copy: Path):
    edit(policy_copy / "care" / "festivals.yaml", "when: \"'国庆' in festivals_due", "when: \"'国庆节' in festivals_due")
    line = line_of(policy_copy, "care.yaml", "name: 国庆")
    assert (f"care.yaml:{line}:7: 警告 warning: 节日 '国庆' 没有祝福规则：不会给任何人发这个节日的祝福 / "
            "festival '国庆' has no greeting rule: nobody is greeted for it [festival-without-rule] — 修改建议: "
            "在 care/festivals.yaml 里复制一条规则，改它的 id、when: 里的节日名（'国庆' in festivals_due）和 params.festival / "
            "copy a rule in care/festivals.yaml and change its id, the festival's name in when: ('国庆' in festivals_due) and "
            "params.festival") in lines(policy_copy)
