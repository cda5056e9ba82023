"""Cells python-calamine reads as empty that are not: Excel error values (#N/A from a VLOOKUP, #DIV/0!,
#VALUE!, #REF!) and formulas saved without their result (a workbook a program wrote and nobody opened in
Excel). They were blanked without a word: a customer's phone from a failed VLOOKUP was simply gone, and
an order whose amount was a formula was "required but empty". Now every such cell is in the rejects,
saying what the cell holds.

Real workbooks: xlsxwriter writes formulas with the cached results Excel would save (errors included),
openpyxl writes formulas without any result.
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from openpyxl.cell.rich_text import CellRichText, TextBlock
from openpyxl.cell.text import InlineFont

from engine.columns import load_columns
from engine.readers import read_inbox
from engine.reject_text import reject_outcome, reject_reason

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def columns():
    return load_columns(ROOT / "policies" / "columns.yaml")


def customers_with_errors(path: Path) -> None:
    """客户信息 as an export assembled in Excel: 手机号码 looked up with VLOOKUP (#N/A where it failed), 积分
    computed (#DIV/0!), 生日 from DATEVALUE (#VALUE!), one 客户编号 a broken reference (#REF!), and a formula
    that rightly gave an empty text (IF(…,"")): not a problem."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("客户信息")
    ws.write_row(0, 0, ["客户编号", "客户名称", "手机号码", "生日", "积分", "备注"])
    ws.write_row(1, 0, ["C001", "甲公司"])
    ws.write_formula(1, 2, "=VLOOKUP(A2,通讯录!A:B,2,FALSE)", None, "#N/A")
    ws.write_row(2, 0, ["C002", "乙公司", "13812345678"])
    ws.write_formula(2, 3, '=DATEVALUE("x")', None, "#VALUE!")
    ws.write_formula(2, 4, "=1/0", None, "#DIV/0!")
    ws.write_formula(3, 0, "=#REF!", None, "#REF!")
    ws.write_row(3, 1, ["丙公司", "13912345678"])
    ws.write_row(4, 0, ["C004", "丁公司", "13712345678"])
    ws.write_formula(4, 4, '=IF(TRUE,"","x")', None, "")
    wb.close()


def test_error_values_are_reported_not_blanked_silently(tmp_path, columns):
    inbox = tmp_path / "inbox"
    customers_with_errors(inbox / "customers.xlsx")
    ds = read_inbox(inbox, columns, warnings=[])

    assert [c.customer_id for c in ds.customers] == ["C001", "C002", "C004"]
    by_id = {c.customer_id: c for c in ds.customers}
    assert by_id["C001"].phone is None and by_id["C002"].birthday is None
    got = [(r.row, r.column, r.value, r.code, r.cause) for r in ds.rejects]
    assert got == [
        (2, "手机号码", "#N/A", "bad-value", "error-cell"),
        (3, "生日", "#VALUE!", "bad-value", "error-cell"),
        (3, "积分", "#DIV/0!", "bad-value", "error-cell"),
        (4, "客户编号", "#REF!", "error-cell", None),  # the required id: the row is not read, and says why
    ]
    kept, skipped = ds.rejects[0], ds.rejects[3]
    assert kept.reason == "kept the row, left phone empty: the cell holds the Excel error #N/A [error-cell]"
    assert reject_outcome(kept) == "保留此行，此格按空白处理"
    assert reject_reason(kept)[0] == "「手机号码」是 Excel 错误值（如 #N/A、#DIV/0!、#REF!），没有内容可读"
    assert skipped.reason == "客户编号 (customer_id) is required: the cell holds the Excel error #REF!; row skipped"
    assert reject_outcome(skipped) == "整行未读入"


def test_formulas_saved_without_their_result_are_named(tmp_path, columns):
    # An orders workbook written by a program (openpyxl): 订单金额 = 数量 × 单价 as formulas, never
    # calculated. Required: each such order was "required but empty" with a blank raw value.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "客户信息"
    ws.append(["客户编号", "客户名称"])
    ws.append(["C001", "甲公司"])
    wb.save(inbox / "customers.xlsx")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "订单"
    ws.append(["订单编号", "客户编号", "下单日期", "订单金额", "数量", "单价"])
    ws.append(["O1", "C001", date(2026, 3, 1), "=E2*F2", 2, 50])
    ws.append(["O2", "C001", date(2026, 4, 1), 300, 3, 100])
    wb.save(inbox / "orders.xlsx")

    ds = read_inbox(inbox, columns, warnings=[])
    assert [o.order_id for o in ds.orders] == ["O2"]
    [reject] = ds.rejects
    assert (reject.file, reject.sheet, reject.row, reject.column, reject.code) == ("orders.xlsx", "订单", 2, "订单金额", "formula-no-value")
    assert reject.reason == "订单金额 (amount) is required: the cell holds a formula saved without its result; row skipped"
    reason, fix = reject_reason(reject)
    assert reason.startswith("「订单金额」是公式，但文件里没有保存它的计算结果")
    assert fix.startswith("用 Excel 打开这个文件、保存后再放进收件箱")


def test_rich_text_and_plain_cells_are_no_problem(tmp_path, columns):
    # Rich text (a run with its own font: <rPr><family …/>) is written inline by openpyxl; "<f" in it is
    # no formula. Nothing to report.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "客户信息"
    ws.append(["客户编号", "客户名称", "备注"])
    ws.append(["C001", CellRichText([TextBlock(InlineFont(family=2, b=True), "甲"), "公司"]), "VIP"])
    ws.append(["C002", "乙公司", datetime(2026, 1, 1)])
    wb.save(inbox / "customers.xlsx")
    ds = read_inbox(inbox, columns, warnings=[])
    assert [(c.customer_id, c.name) for c in ds.customers] == [("C001", "甲公司"), ("C002", "乙公司")]
    assert ds.rejects == []


def test_the_rejects_workbook_shows_the_error_value(tmp_path):
    from click.testing import CliRunner

    from engine.cli import main

    inbox = tmp_path / "inbox"
    customers_with_errors(inbox / "customers.xlsx")
    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                       "--outbox", str(tmp_path / "out"), "--as-of", "2026-11-20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "被拒绝的行 4" in result.output
    (folder,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    sheet = openpyxl.load_workbook(folder / "rejects.xlsx").active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    header = rows[0]
    first = dict(zip(header, rows[1]))
    assert (first["行号"], first["列"], first["原始值"], first["处理结果"]) == (2, "手机号码", "#N/A", "保留此行，此格按空白处理")
    assert first["原因"] == "「手机号码」是 Excel 错误值（如 #N/A、#DIV/0!、#REF!），没有内容可读"
