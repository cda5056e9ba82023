"""Small Excel edits to a decision table that used to pass `validate` and silently change every
customer's result: a thousands separator read as a list, a formula read as "any value", a blank
row that dropped the rules below it, a merged cell read as "any value" below its first row, a list
after != read as one text. Each test edits a real copy of policies/tables/value_tier.xlsx
(sheet 价值分层; column D tests monetary_365d) or service_plan.xlsx."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from engine import expr
from engine.cli_tools import validate_command
from engine.policy.decision_table import CellError, cell_condition
from engine.policy.loader import load_policies
from engine.validate import format_problem, validate_policies

VALUE_TIER = "tables/value_tier.xlsx"
FORMULA_FIX = ("写值，不要写公式：“等于 5”写 5；以 = 开头的文字先输入单引号，如 '= 5 / a formula, write the value:"
               " for 'equals 5' write 5; for text starting with = type an apostrophe first ('= 5)")
BLANK_FIX = ("删除空行；说明文字写在说明列或表格右侧没有表头的列 / delete the empty row; put notes in the 说明 column"
             " or in a column right of the table with no header")


def edit_table(policies: Path, workbook: str, change) -> Path:
    path = policies / workbook
    wb = openpyxl.load_workbook(path)
    change(wb.worksheets[0])
    wb.save(path)
    return path


def set_text(ws, ref: str, text: str) -> None:
    """Text as Excel keeps it (a typed '= 5 or a text-formatted cell), not a formula."""
    ws[ref] = text
    ws[ref].data_type = "s"


def lines(policies: Path) -> list[str]:
    return [format_problem(p) for p in validate_policies(policies)]


def condition_of(policies: Path, policy_id: str, rule_id: str) -> str:
    ps = load_policies(policies)
    rs = next(rs for stage in ps.rulesets.values() for rs in stage if rs.policy_id == policy_id)
    return next(rule.condition_text for rule in rs.rules if rule.rule_id == rule_id)


def ruleset_of(policies: Path, policy_id: str):
    ps = load_policies(policies)
    return next(rs for stage in ps.rulesets.values() for rs in stage if rs.policy_id == policy_id)


def first_match(policies: Path, policy_id: str, features: dict) -> str | None:
    """The rule a hit_policy: first table picks for these features."""
    rules = ruleset_of(policies, policy_id).rules
    return next((rule.rule_id for rule in rules if expr.evaluate(rule.condition, features) is True), None)


# -- 1. numbers with thousands separators -------------------------------------------------------

@pytest.mark.parametrize(
    "cell, condition",
    [
        ("100,000", "(monetary_365d) == 100000"),  # was monetary_365d in [100, 0]
        ("１００，０００", "(monetary_365d) == 100000"),
        ("1,200.50", "(monetary_365d) == 1200.50"),
        (">= 100,000", "(monetary_365d) >= 100000"),  # was a type-mismatch error
        ("≥ １００，０００", "(monetary_365d) >= 100000"),
        ("10,000..50,000", "(monetary_365d) between 10000 and 50000"),
        ("100,000、200,000", "(monetary_365d) in [100000, 200000]"),
        ("100, 200", "(monetary_365d) in [100, 200]"),
        ("100、200", "(monetary_365d) in [100, 200]"),
    ],
)
def test_number_cells_with_commas(policy_copy: Path, cell: str, condition: str):
    edit_table(policy_copy, VALUE_TIER, lambda ws: set_text(ws, "D3", cell))
    assert condition_of(policy_copy, "value_tier", "VT-1") == condition
    assert not [line for line in lines(policy_copy) if ": 错误 error: " in line]


@pytest.mark.parametrize(
    "cell, read, one, several",
    [("100,00", "100,00", "10000", ("100、00", "100, 00")), ("1,2, 3", "1,2", "12", ("1、2", "1, 2"))],
)
def test_commas_that_do_not_group_thousands_are_an_error_at_the_cell(policy_copy: Path, cell, read, one, several):
    edit_table(policy_copy, VALUE_TIER, lambda ws: set_text(ws, "D3", cell))
    assert lines(policy_copy) == [
        f"tables/value_tier.xlsx!价值分层!D3: 错误 error: “{read}” 读不出：数字之间的逗号是千位分隔符，须每 3 位一个"
        f" / cannot read '{read}': a comma between digits is a thousands separator and needs groups of 3 digits"
        f" [table-bad-number] — 修改建议: 一个数写 {one}（或 >= {one}）；其中之一的几个数用顿号或逗号加空格分开、前面不写 >= 这类比较，"
        f"如 {several[0]} / one number: {one} (or >= {one}); one of several numbers, with no >= before them: {several[1]}"
    ]


def test_text_lists_still_split_at_every_comma():
    assert cell_condition("x", "高,中") == "(x) in ['高', '中']"
    assert cell_condition("x", "高，中、低") == "(x) in ['高', '中', '低']"
    assert cell_condition("x", "A1,2B") == "(x) in ['A1', '2B']"
    with pytest.raises(CellError):
        cell_condition("x", "100,0")  # never the list [100, 0]


# -- 2. formulas --------------------------------------------------------------------------------

FORMULA_ERROR = ("tables/value_tier.xlsx!价值分层!D3: 错误 error: D3 是公式（=100000）：决策表只读写入的值"
                 " / D3 holds a formula (=100000); a decision table reads only values [table-formula] — 修改建议: " + FORMULA_FIX)


def test_formula_without_cached_value_is_an_error(policy_copy: Path):
    # openpyxl writes the formula with no cached value; read as data only it was blank = any value.
    edit_table(policy_copy, VALUE_TIER, lambda ws: ws.__setitem__("D3", "=100000"))
    assert lines(policy_copy) == [FORMULA_ERROR]
    result = CliRunner().invoke(validate_command, ["--policies", str(policy_copy)])
    assert result.exit_code == 1 and "[table-formula]" in result.output


def test_formula_with_cached_value_is_an_error_too(policy_copy: Path):
    path = edit_table(policy_copy, VALUE_TIER, lambda ws: ws.__setitem__("D3", "=100000"))
    # Give the formula a cached value, as Excel would save it (it may be stale, so it is not used).
    with zipfile.ZipFile(path) as z:
        parts = {name: z.read(name) for name in z.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    xml = parts[sheet].decode("utf-8")
    xml, n = re.subn(r'(<c r="D3"[^>]*>)<f>100000</f>(<v\s*/>|<v></v>)?', r"\1<f>100000</f><v>100000</v>", xml)
    assert n == 1
    parts[sheet] = xml.encode("utf-8")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    assert openpyxl.load_workbook(path, data_only=True).worksheets[0]["D3"].value == 100000
    assert lines(policy_copy) == [FORMULA_ERROR]


def test_formula_in_a_description_cell_is_an_error(policy_copy: Path):
    edit_table(policy_copy, VALUE_TIER, lambda ws: ws.__setitem__("F4", '="近90天"&"有购买"'))
    assert lines(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!F4: 错误 error: F4 是公式（=\"近90天\"&\"有购买\"）：决策表只读写入的值"
        " / F4 holds a formula (=\"近90天\"&\"有购买\"); a decision table reads only values [table-formula] — 修改建议: "
        + FORMULA_FIX
    ]


def test_equality_written_as_text_with_equals_sign(policy_copy: Path):
    # '= 5 typed with a leading apostrophe is text, not a formula.
    edit_table(policy_copy, VALUE_TIER, lambda ws: set_text(ws, "C4", "= 5"))
    assert condition_of(policy_copy, "value_tier", "VT-2") == (
        "(days_since_last_order) < 90 and (frequency_365d) == 5 and (monetary_365d) >= 50000")


# -- 3. blank rows ------------------------------------------------------------------------------

def test_blank_row_in_the_middle_is_an_error(policy_copy: Path):
    edit_table(policy_copy, VALUE_TIER, lambda ws: ws.insert_rows(5))
    assert lines(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!A5: 错误 error: 第 5 行是空行，其后的规则（VT-3、VT-4、VT-5）没有被读入"
        " / row 5 is empty; the rules below it (VT-3, VT-4, VT-5) were not read [table-blank-row] — 修改建议: " + BLANK_FIX
    ]


def test_blank_rows_in_a_table_without_complete(policy_copy: Path):
    # service_plan has no complete: true, so nothing else noticed the lost rules.
    edit_table(policy_copy, "tables/service_plan.xlsx", lambda ws: ws.insert_rows(4, 2))
    assert lines(policy_copy) == [
        "tables/service_plan.xlsx!服务方案!A4: 错误 error: 第 4–5 行是空行，其后的规则（SP-2、SP-3、SP-4…）没有被读入"
        " / rows 4–5 are empty; the rules below it (SP-2, SP-3, SP-4…) were not read [table-blank-row] — 修改建议: " + BLANK_FIX
    ]


def test_note_below_trailing_blank_rows_is_an_error(policy_copy: Path):
    edit_table(policy_copy, VALUE_TIER, lambda ws: set_text(ws, "A10", "注：金额单位为元"))
    assert lines(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!A8: 错误 error: 第 8–9 行是空行，其后的规则（注：金额单位为元）没有被读入"
        " / rows 8–9 are empty; the rules below it (注：金额单位为元) were not read [table-blank-row] — 修改建议: " + BLANK_FIX
    ]


def test_trailing_blank_rows_and_notes_right_of_the_table_are_fine(policy_copy: Path):
    def change(ws):
        set_text(ws, "H5", "注：金额单位为元")  # a column with no kind in row 1
        set_text(ws, "H12", "2024 年修订")
        ws["A9"] = "  "  # blank text counts as blank
    edit_table(policy_copy, VALUE_TIER, change)
    assert not [line for line in lines(policy_copy) if ": 错误 error: " in line]
    assert condition_of(policy_copy, "value_tier", "VT-5") == "true"


def test_a_row_without_a_rule_id_is_warned_about(policy_copy: Path):
    """Its made-up id (value_tier#5) changes whenever a row is added above it: say so at the cell."""
    import openpyxl as _openpyxl

    from engine.validate import format_problem, validate_policies

    path = policy_copy / "tables" / "value_tier.xlsx"
    wb = _openpyxl.load_workbook(path)
    wb["价值分层"]["A5"] = None
    wb.save(path)
    warnings = [format_problem(p) for p in validate_policies(policy_copy) if p.code == "missing-rule-id"]
    assert warnings == ["tables/value_tier.xlsx!价值分层!A5: 警告 warning: 第 5 行没有规则编号；决策日志和 explain 把它叫作 "
                        "value_tier#5，上面加了行它就会变 / row 5 has no rule id; the decision log and explain call "
                        "it value_tier#5, which changes when rows are added above it [missing-rule-id] — 修改建议: 在 规则编号 列"
                        "给这一行写一个自己的编号，如下一个没用过的编号 / give "
                        "the row its own id in the 规则编号 column, e.g. the next free one"]


# -- 4. merged cells ----------------------------------------------------------------------------

def test_merged_condition_cell_counts_for_every_row(policy_copy: Path):
    # D3 (>= 100000) merged down over D4: Excel shows >= 100000 for VT-2 as well; read only, D4 was
    # blank, i.e. any amount, and this customer got 高 from VT-2.
    edit_table(policy_copy, VALUE_TIER, lambda ws: ws.merge_cells("D3:D4"))
    assert not [line for line in lines(policy_copy) if ": 错误 error: " in line]
    assert condition_of(policy_copy, "value_tier", "VT-2") == (
        "(days_since_last_order) < 90 and (frequency_365d) >= 4 and (monetary_365d) >= 100000")
    customer = {"days_since_last_order": 10, "frequency_365d": 5, "monetary_365d": 20000}
    assert first_match(policy_copy, "value_tier", customer) == "VT-3"


def test_merged_output_and_description_cells_count_for_every_row(policy_copy: Path):
    def change(ws):
        for ref in ("E3:E4", "F3:F4", "H3:H4"):  # 是 / 30 / the description, for SP-1 and SP-2
            ws.merge_cells(ref)
    edit_table(policy_copy, "tables/service_plan.xlsx", change)
    assert not [line for line in lines(policy_copy) if ": 错误 error: " in line]
    sp2 = next(rule for rule in ruleset_of(policy_copy, "service_plan").rules if rule.rule_id == "SP-2")
    assert {out.name: out.value for out in sp2.outputs} == {
        "service_team": "专属客户服务团队", "dedicated_owner_required": True, "revisit_interval_days": 30,
        "offer_plan": "价格折扣、增值服务、优先体验新产品"}
    assert sp2.description == "战略客户：专属团队一对一服务，定期安排高层沟通"


MERGED_HEADER_FIX = ("取消合并，在每一列分别写种类和名称（如 条件 / monetary_365d） / unmerge the cells and write the kind and"
                     " name in each column (e.g. 条件 / monetary_365d)")


@pytest.mark.parametrize("merged, cell", [("B1:D1", "B1"), ("E2:E3", "E2")])
def test_merged_header_cells_are_an_error_at_the_cell(policy_copy: Path, merged: str, cell: str):
    # 条件 over B1:D1 left C and D without a kind: their conditions were silently dropped. E2 merged
    # into E3 left VT-1 without its result. A1:A2 (规则编号 over both header rows) is fine.
    def change(ws):
        ws.merge_cells("A1:A2")
        ws.merge_cells(merged)
    edit_table(policy_copy, VALUE_TIER, change)
    assert lines(policy_copy) == [
        f"tables/value_tier.xlsx!价值分层!{cell}: 错误 error: 表头单元格 {merged} 是合并的：每个条件、结果各占一列，第 1 行写种类、"
        f"第 2 行写名称 / header cells {merged} are merged; a table needs one column per input/output, its kind in row 1"
        " and its name in row 2 [table-merged-header] — 修改建议: " + MERGED_HEADER_FIX
    ]


# -- 5. lists after == and != --------------------------------------------------------------------

def test_not_equal_to_a_list_means_none_of(policy_copy: Path):
    # Was need_type != '战略、特殊需求': true for 战略 and 特殊需求 customers too.
    edit_table(policy_copy, "tables/service_plan.xlsx", lambda ws: set_text(ws, "B4", "!= 战略、特殊需求"))
    assert condition_of(policy_copy, "service_plan", "SP-2") == "(need_type) not in ['战略', '特殊需求'] and (value_tier) == '高'"
    assert not [line for line in lines(policy_copy) if "service_plan.xlsx" in line]
    sp2 = next(rule for rule in ruleset_of(policy_copy, "service_plan").rules if rule.rule_id == "SP-2")
    fires = {need: expr.evaluate(sp2.condition, {"need_type": need, "value_tier": "高"}) is True
             for need in ("普通", "战略", "特殊需求", None)}
    # A customer with no need type is in no list, so not "none of" either (docs/expressions.md, as != 战略).
    assert fires == {"普通": True, "战略": False, "特殊需求": False, None: False}


def test_equal_to_a_list_means_one_of(policy_copy: Path):
    edit_table(policy_copy, VALUE_TIER, lambda ws: set_text(ws, "D3", "== 100000, 200000"))
    assert condition_of(policy_copy, "value_tier", "VT-1") == "(monetary_365d) in [100000, 200000]"
    assert first_match(policy_copy, "value_tier", {"monetary_365d": 200000}) == "VT-1"


def test_a_list_after_another_comparison_is_an_error_at_the_cell(policy_copy: Path):
    edit_table(policy_copy, VALUE_TIER, lambda ws: set_text(ws, "D3", ">= 100000, 200000"))
    assert lines(policy_copy) == [
        "tables/value_tier.xlsx!价值分层!D3: 错误 error: “>= 100000, 200000” 读不出：>= 后面只能写一个值，不能写列表"
        " / cannot read '>= 100000, 200000': >= takes one value, not a list [table-bad-cell] — 修改建议:"
        " 写一个比较，如 >= 100000；“其中之一”写 100000, 200000（或 == 100000, 200000），“都不是”写 != 100000, 200000"
        " / write one comparison, e.g. >= 100000; for 'one of' write 100000, 200000 (or == 100000, 200000),"
        " for 'none of' write != 100000, 200000"
    ]
