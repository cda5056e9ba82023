"""Exports that went wrong in ways a reviewer met in real workbooks: customer ids that lost their
leading zeros, an interactions export from another system, order numbers longer than Excel keeps,
total lines with figures, a year-and-month typed as a number, phone numbers with +86, invisible
characters in ids, a workbook still open in Excel, rows of blank-looking cells.

Every test writes real .xlsx files and reads them back (``read_inbox``) or runs the CLI on them.
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, Sequence

import openpyxl
import pytest
import xlsxwriter
from click.testing import CliRunner

from engine.cli import main
from engine.coerce import CoercionError, to_date, to_datetime, to_id, to_phone, to_text
from engine.columns import load_columns
from engine.errors import InputError, Problem
from engine.readers import read_inbox
from engine.reject_text import reject_outcome, reject_reason

ROOT = Path(__file__).resolve().parent.parent
AS_OF = "2026-11-20"

CUST = ["客户编号", "客户名称", "手机号码", "生日", "积分"]
INTER = ["互动编号", "客户编号", "创建时间", "互动类型", "渠道"]
ORDER = ["订单编号", "客户编号", "下单日期", "订单金额"]


@pytest.fixture(scope="module")
def columns():
    return load_columns(ROOT / "policies" / "columns.yaml")


def book(path: Path, sheet: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """One sheet as a CRM writes it (xlsxwriter): numbers as number cells, text as text cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet(sheet)
    dfmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    ws.write_row(0, 0, header)
    for r, row in enumerate(rows, 1):
        for c, v in enumerate(row):
            if v is None:
                continue
            if isinstance(v, (date, datetime)):
                ws.write_datetime(r, c, v, dfmt)
            elif isinstance(v, str):
                ws.write_string(r, c, v)
            else:
                ws.write_number(r, c, v)
    wb.close()
    return path


def inbox_of(tmp: Path, customers, interactions, orders) -> Path:
    inbox = tmp / "inbox"
    book(inbox / "customers.xlsx", "客户信息", CUST, customers)
    book(inbox / "interactions.xlsx", "互动记录", INTER, interactions)
    book(inbox / "orders.xlsx", "订单", ORDER, orders)
    return inbox


def read(inbox: Path, columns) -> tuple[Any, list[Problem]]:
    warnings: list[Problem] = []
    return read_inbox(inbox, columns, warnings=warnings), warnings


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- 1. customer ids that lost their leading zeros; an export of another system ---------------------


def test_ids_that_lost_their_leading_zeros_match_with_one_warning(tmp_path, columns):
    # The customers export kept 客户编号 as numbers (1, 2, …), the others as text ('000001'): every
    # interaction and order was an unknown-customer reject and everyone was decided on no data.
    inbox = inbox_of(tmp_path, [[float(n), f"客户{n}"] for n in range(1, 13)],
                     [[f"I{n}", f"{n:06d}", datetime(2026, 11, 1, 9), "咨询", "电话"] for n in range(1, 13)],
                     [[f"O{n}", f"{n:06d}", date(2026, 3, 1), 100.0] for n in range(1, 13)])
    ds, warnings = read(inbox, columns)
    assert [i.customer_id for i in ds.interactions] == sorted(str(n) for n in range(1, 13))
    assert len(ds.orders) == 12 and not ds.rejects
    [w] = [w for w in warnings if w.code == "customer-id-leading-zeros"]
    assert [w.code for w in warnings] == ["customer-id-leading-zeros"]
    assert w.severity == "warning" and w.location.file == "interactions.xlsx、orders.xlsx"
    assert w.message.startswith("interactions.xlsx、orders.xlsx 里有客户编号（互动记录 12 个，订单 12 个）只有忽略开头的 0 "
                                "才与客户导出 customers.xlsx 对得上")
    assert "(12 in interactions, 12 in orders)" in w.message
    assert w.fix.startswith("导出时把「客户编号」列设为文本") and "format the 客户编号 column as text" in w.fix


def test_zeros_lost_in_the_customers_export_match_too(tmp_path, columns):
    inbox = inbox_of(tmp_path, [[f"{n:06d}", f"客户{n}"] for n in range(1, 4)],
                     [["I1", 2.0, datetime(2026, 11, 1, 9), "咨询", "电话"]], [["O1", 3.0, date(2026, 3, 1), 100.0]])
    ds, warnings = read(inbox, columns)
    assert [i.customer_id for i in ds.interactions] == ["000002"] and [o.customer_id for o in ds.orders] == ["000003"]
    assert [w.code for w in warnings] == ["customer-id-leading-zeros"]


def test_an_exact_id_wins_and_an_ambiguous_one_is_not_guessed(tmp_path, columns):
    # Customers 7 and 0007 both exist: 0007 is that customer exactly, 007 could be either.
    inbox = inbox_of(tmp_path, [["7", "甲"], ["0007", "乙"], ["12", "丙"]],
                     [["I1", "0007", datetime(2026, 11, 1, 9), "咨询", "电话"],
                      ["I2", "007", datetime(2026, 11, 2, 9), "咨询", "电话"],
                      ["I3", "012", datetime(2026, 11, 3, 9), "咨询", "电话"]], [])
    ds, warnings = read(inbox, columns)
    assert [(i.interaction_id, i.customer_id) for i in ds.interactions] == [("I1", "0007"), ("I3", "12")]
    assert [(r.row, r.code, r.value) for r in ds.rejects] == [(3, "unknown-customer", "007")]
    assert [w.code for w in warnings] == ["customer-id-leading-zeros"]


def test_interactions_of_a_customer_whose_row_was_rejected_are_not_given_to_another(tmp_path, columns):
    # columns.yaml makes 客户名称 required; customer 0100's row has none and is rejected. Customer 100 is
    # another company. Its interactions were matched "by leading zeros" to customer 100 (0100 was missing,
    # 100 the only customer of that form): customer 100 got another company's complaint.
    text = (ROOT / "policies" / "columns.yaml").read_text(encoding="utf-8")
    name = "      name:\n        type: text\n"
    assert name in text
    (tmp_path / "columns.yaml").write_text(text.replace(name, name + "        required: true\n", 1), encoding="utf-8")
    strict = load_columns(tmp_path / "columns.yaml")
    inbox = inbox_of(tmp_path, [["0100", None], ["100", "乙公司"], ["200", None], ["0007", "丙公司"]],
                     [["I1", "0100", datetime(2026, 11, 1, 9), "投诉", "电话"],   # the rejected customer, exactly
                      ["I2", "100", datetime(2026, 11, 2, 9), "咨询", "电话"],    # customer 100
                      ["I3", "00100", datetime(2026, 11, 3, 9), "咨询", "电话"],  # 0100 or 100: not guessed
                      ["I4", "0200", datetime(2026, 11, 4, 9), "投诉", "电话"],   # rejected 200, by its zeros
                      ["I5", "7", datetime(2026, 11, 5, 9), "咨询", "电话"]], [])  # 0007: zeros lost, matched
    ds, warnings = read(inbox, strict)
    assert [(i.interaction_id, i.customer_id) for i in ds.interactions] == [("I5", "0007"), ("I2", "100")]
    assert [(r.file, r.row, r.code, r.value) for r in ds.rejects] == [
        ("customers.xlsx", 2, "missing-value", None), ("customers.xlsx", 4, "missing-value", None),
        ("interactions.xlsx", 2, "rejected-customer", "0100"), ("interactions.xlsx", 4, "unknown-customer", "00100"),
        ("interactions.xlsx", 5, "rejected-customer", "0200")]
    exact, by_zeros = ds.rejects[2], ds.rejects[4]
    assert exact.reason == ("interaction for customer id 0100, whose own row in the customers export (customers.xlsx, "
                            "sheet 客户信息, row 2) was not read (see that row in rejects.xlsx); skipped")
    assert by_zeros.reason == ("interaction for customer id 0200 (customer 200 once leading zeros are ignored), whose own "
                               "row in the customers export (customers.xlsx, sheet 客户信息, row 4) was not read (see that "
                               "row in rejects.xlsx); skipped")
    assert reject_outcome(exact) == "整行未读入"
    assert reject_reason(exact) == ("这位客户在客户导出里的那一行没有读入，它的记录也就没有读入",
                                    "先改好客户导出里这位客户的那一行（位置见“说明”列，原因见本表中那一行），再重新运行")
    [w] = warnings
    assert w.code == "customer-id-leading-zeros" and "（互动记录 1 个）" in w.message

def test_interactions_of_another_system_stop_the_run(tmp_path, columns):
    # Not one of the 12 customers the interactions name is in the customers export: decided on no
    # interactions, every customer looked lost and got a win-back message.
    inbox = inbox_of(tmp_path, [[f"C{n:03d}", f"客户{n}"] for n in range(1, 13)],
                     [[f"I{n}", f"K{n:05d}", datetime(2026, 11, 1, 9), "咨询", "电话"] for n in range(1, 13)],
                     [["O1", "C001", date(2026, 3, 1), 100.0]])
    with pytest.raises(InputError) as exc:
        read(inbox, columns)
    [p] = exc.value.problems
    assert p.code == "customers-not-matched" and p.location.file == "interactions.xlsx"
    assert p.message.startswith("interactions.xlsx 的 12 个客户编号中有 12 个不在客户导出 customers.xlsx 里")
    assert "12 of the 12 customer ids in interactions.xlsx are not in the customers export customers.xlsx" in p.message
    assert "同一系统" in p.fix and "same system" in p.fix


def test_the_run_stops_before_anything_is_issued(tmp_path):
    inbox = inbox_of(tmp_path, [[f"C{n:03d}", f"客户{n}"] for n in range(1, 13)], [],
                     [[f"O{n}", f"X{n}", date(2026, 3, 1), 100.0] for n in range(1, 11)])
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox",
                     str(tmp_path / "out"), "--as-of", AS_OF)
    assert result.exit_code == 1
    assert "orders.xlsx 的 10 个客户编号中有 10 个不在客户导出 customers.xlsx 里" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_more_than_half_unknown_is_a_loud_warning_and_few_rows_are_not_stopped(tmp_path, columns):
    inbox = inbox_of(tmp_path, [[f"C{n}", f"客户{n}"] for n in range(1, 5)],
                     # 3 of the 4 distinct customers unknown (12 rows: counted on distinct ids, not rows)
                     [[f"I{n}", ["C1", "X2", "X3", "X4"][n % 4], datetime(2026, 11, 1, 9), "咨询", "电话"]
                      for n in range(12)],
                     # every one unknown, but only 3 rows: a few strays, not a wrong export
                     [["O1", "X9", date(2026, 3, 1), 100.0], ["O2", "X8", date(2026, 3, 1), 100.0],
                      ["O3", "X8", date(2026, 3, 2), 100.0]])
    ds, warnings = read(inbox, columns)
    assert len(ds.interactions) == 3 and not ds.orders
    assert [(w.code, w.location.file) for w in warnings] == [("many-unknown-customers", "interactions.xlsx"),
                                                             ("many-unknown-customers", "orders.xlsx")]
    assert warnings[0].message.startswith("interactions.xlsx 的 4 个客户编号中有 3 个不在客户导出 customers.xlsx 里")


# -- 2. ids longer than the 15 digits Excel keeps ----------------------------------------------------


def test_order_numbers_longer_than_excel_keeps_stay_orders_of_their_own(tmp_path, columns):
    # 202511200000012000 + i kept as numbers: Excel keeps 15 digits, so the 12 orders read as 2 ids,
    # 10 became duplicate-id rejects and "id-for-two-customers" blamed a row number.
    inbox = inbox_of(tmp_path, [["C1", "甲"], ["C2", "乙"]], [],
                     [[202511200000012000.0 + i, f"C{i % 2 + 1}", date(2026, 3, 1), 100.0] for i in range(12)])
    ds, warnings = read(inbox, columns)
    assert len(ds.orders) == 12 and not warnings
    assert sorted(o.order_id for o in ds.orders) == sorted(f"orders.xlsx!订单!{r}" for r in range(2, 14))
    assert {(r.code, r.cause) for r in ds.rejects} == {("bad-value", "long-number-id")}
    r = ds.rejects[0]
    assert (r.row, r.column) == (2, "订单编号")
    assert r.reason == ("kept the row as a record of its own (id orders.xlsx!订单!2): 2.02511200000012e+17 is an id of "
                        "more than 15 digits stored as a number: Excel has lost its last digits; format the column as "
                        "text in the export [long-number-id]")
    assert reject_outcome(r) == "保留此行，以“文件!工作表!行号”作为这条记录的编号"
    assert reject_reason(r) == ("「订单编号」此编号超过 15 位数字，Excel 已丢失末尾几位（不同的编号会变成同一个）",
                                "请在导出时把「订单编号」列设为文本（在 Excel 里先把该列设为“文本”格式，或让源系统导出为文本）后重新导出")


def test_a_customer_id_longer_than_excel_keeps_rejects_the_row(tmp_path, columns):
    inbox = inbox_of(tmp_path, [["C1", "甲"], [310101198001011234.0, "乙"]], [], [])
    ds, _ = read(inbox, columns)
    assert [c.customer_id for c in ds.customers] == ["C1"]
    [r] = ds.rejects
    assert (r.row, r.code, r.cause) == (3, "long-number-id", None)
    assert reject_outcome(r) == "整行未读入"
    assert reject_reason(r)[0] == "「客户编号」此编号超过 15 位数字，Excel 已丢失末尾几位（不同的编号会变成同一个）"
    with pytest.raises(CoercionError) as exc:
        to_id(10**15)
    assert exc.value.code == "long-number-id"
    assert to_id(999999999999999.0) == "999999999999999"  # 15 digits: kept whole


# -- 3. total lines with figures ----------------------------------------------------------------------


@pytest.mark.parametrize("label", ["本页合计", "合计：500条", "总计(500)", "小计 3", "Total: 500", "SUM (3 customers)"])
def test_a_total_line_with_figures_is_no_customer(tmp_path, columns, label):
    inbox = inbox_of(tmp_path, [["C1", "甲", None, None, 100.0], ["C2", "乙", None, None, 200.0], [label, None, None, None, 300.0]],
                     [], [])
    ds, _ = read(inbox, columns)
    assert [c.customer_id for c in ds.customers] == ["C1", "C2"]
    assert [(r.row, r.code, r.column) for r in ds.rejects] == [(4, "summary-row", "客户编号")]


def test_ids_that_only_look_like_totals_are_read(tmp_path, columns):
    # An id-shaped id is an id (SUM-001); an English marker counts only as the first word (Summit Ltd).
    inbox = inbox_of(tmp_path, [["SUM-001", "甲"], ["Summit Ltd", "乙"], ["Total-9", "丙"]], [], [])
    ds, _ = read(inbox, columns)
    assert [c.customer_id for c in ds.customers] == ["SUM-001", "Summit Ltd", "Total-9"] and not ds.rejects


def test_a_total_line_under_interactions_and_orders(tmp_path, columns):
    inbox = inbox_of(tmp_path, [["C1", "甲"]],
                     [["I1", "C1", datetime(2026, 11, 1, 9), "咨询", "电话"], ["本页合计：1条", "C1", datetime(2026, 11, 1, 9)]],
                     [["O1", "C1", date(2026, 3, 1), 100.0], ["合计(1)", "C1", date(2026, 3, 1), 100.0]])
    ds, _ = read(inbox, columns)
    assert [i.interaction_id for i in ds.interactions] == ["I1"] and [o.order_id for o in ds.orders] == ["O1"]
    assert [(r.file, r.row, r.code) for r in ds.rejects] == [("interactions.xlsx", 3, "summary-row"),
                                                             ("orders.xlsx", 3, "summary-row")]


# -- 4. a year and month typed as a number ------------------------------------------------------------


@pytest.mark.parametrize("raw", [1985.05, 1990.1, "1985.05"])
def test_a_year_and_month_typed_as_a_number_is_not_a_date(raw):
    # 1985.05 was the Excel serial of 1905-06-07: a birthday greeting for the wrong day, silently.
    for fn in (to_date, to_datetime):
        with pytest.raises(CoercionError) as exc:
            fn(raw)
        assert exc.value.code == "bad-date"
        assert "looks like a year (and month) typed as a number, not a date: write the whole date" in exc.value.reason


def test_a_birthday_or_order_date_typed_1985_05(tmp_path, columns):
    inbox = inbox_of(tmp_path, [["C1", "甲", None, 1985.05], ["C2", "乙", None, date(1990, 1, 2)]], [],
                     [["O1", "C1", 2024.05, 100.0], ["O2", "C2", date(2024, 5, 1), 100.0]])
    ds, _ = read(inbox, columns)
    assert [(c.customer_id, c.birthday) for c in ds.customers] == [("C1", None), ("C2", date(1990, 1, 2))]
    assert [o.order_id for o in ds.orders] == ["O2"]
    assert [(r.file, r.row, r.code, r.cause) for r in ds.rejects] == [("customers.xlsx", 2, "bad-value", "bad-date"),
                                                                      ("orders.xlsx", 2, "bad-date", None)]


# -- 5. phone numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("+86 138 1234 5678", "13812345678"),
    ("86-13812345679", "13812345679"),
    ("+86-138-1234-5680", "13812345680"),
    ("0086 13812345681", "13812345681"),
    ("(86)13812345682", "13812345682"),
    ("86 13812345687", "13812345687"),
    (8613812345678.0, "13812345678"),
    ("+86 010 12345678", "01012345678"),  # the trunk 0 kept, as 010-12345678 is written
    ("+86 10 1234 5678", "01012345678"),  # the international form drops it: put back
    ("+86 755 8888 1234", "075588881234"),
    ("010-12345678", "01012345678"),
    ("+852 2345 6789", "+85223456789"),  # not a Chinese mainland number: as written
    ("138 1234 5683（微信同号）", "13812345683"),  # a note after the number
])
def test_one_form_for_chinese_numbers(raw, expected):
    assert to_phone(raw) == expected


@pytest.mark.parametrize("raw", [110, 110.0, "110", 12.0, float("nan"), float("inf"), -13812345678.0])
def test_a_number_cell_and_its_text_are_read_alike(raw):
    with pytest.raises(CoercionError) as exc:
        to_phone(raw)
    assert exc.value.code == "bad-phone"


def test_phones_of_an_export(tmp_path, columns):
    inbox = inbox_of(tmp_path, [["C1", "甲", "+86 138 1234 5678"], ["C2", "乙", 8613912345678.0], ["C3", "丙", 110.0]], [], [])
    ds, _ = read(inbox, columns)
    assert [c.phone for c in ds.customers] == ["13812345678", "13912345678", None]
    assert [(r.row, r.cause) for r in ds.rejects] == [(4, "bad-phone")]


# -- 6. invisible characters, a workbook open in Excel, blank-looking rows ----------------------------


@pytest.mark.parametrize("ch", ["\u200b", "\ufeff", "\u200c", "\u200d", "\u2060"])
def test_invisible_characters_are_not_part_of_an_id(tmp_path, columns, ch):
    assert to_id(f"C000002{ch}") == "C000002" and to_id(f"{ch}C000002") == "C000002"
    inbox = inbox_of(tmp_path, [[f"{ch}C1", "甲"]], [["I1", f"C1{ch}", datetime(2026, 11, 1, 9), "咨询", "电话"]], [])
    ds, _ = read(inbox, columns)
    assert [c.customer_id for c in ds.customers] == ["C1"] and [i.customer_id for i in ds.interactions] == ["C1"]
    assert not ds.rejects


def test_invisible_spaces_leave_text(tmp_path):
    assert to_text("张\u200b三\ufeff") == "张三" and to_text("王\u2060五") == "王五"
    assert to_text("👨\u200d👩\u200d👧") == "👨\u200d👩\u200d👧"  # a joiner inside an emoji is part of it


@pytest.mark.parametrize("lock", ["~$客户信息表(1).xlsx", "~$信息表(1).xlsx"])
def test_a_workbook_open_in_excel_is_said(tmp_path, columns, lock):
    inbox = tmp_path / "inbox"
    book(inbox / "客户信息表(1).xlsx", "客户信息表(1)", CUST, [["C1", "甲"]])
    (inbox / lock).write_bytes(b"\x05admin" + b" " * 50)
    ds, warnings = read(inbox, columns)
    assert [c.customer_id for c in ds.customers] == ["C1"]
    [w] = [w for w in warnings if w.code == "workbook-open"]
    assert w.location.file == "客户信息表(1).xlsx"
    assert w.message == (f"客户信息表(1).xlsx 正在 Excel 中打开（收件箱里有它的锁定文件 {lock}），可能有没保存的修改；读取的是上次保存"
                         f"的内容 / 客户信息表(1).xlsx is open in Excel (its lock file {lock} is in the inbox) and may have "
                         "unsaved changes; what was last saved is read")


def test_a_row_of_blank_looking_cells_is_skipped_silently(tmp_path, columns):
    inbox = inbox_of(tmp_path, [["C1", "甲"]],
                     [["I1", "C1", datetime(2026, 11, 1, 9), "咨询", "电话"], [" ", None, None, "—", "无"]], [])
    ds, _ = read(inbox, columns)
    assert len(ds.interactions) == 1 and not ds.rejects


def test_rejects_xlsx_of_a_run_says_it_in_chinese(tmp_path):
    inbox = inbox_of(tmp_path, [[f"C{n}", f"客户{n}"] for n in range(1, 3)], [],
                     [[202511200000012000.0 + i, "C1", date(2026, 3, 1), 100.0] for i in range(2)])
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox",
                     str(tmp_path / "out"), "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    [folder] = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    rows = list(openpyxl.load_workbook(folder / "rejects.xlsx").worksheets[0].iter_rows(values_only=True))
    assert [(r[2], r[5], r[8]) for r in rows[1:]] == [(2, "保留此行，以“文件!工作表!行号”作为这条记录的编号", "bad-value"),
                                                      (3, "保留此行，以“文件!工作表!行号”作为这条记录的编号", "bad-value")]
    assert "id-for-two-customers" not in result.output


# -- 7. the reader's warnings in Chinese first, as the rest of the console --------------------------


def test_the_readers_warnings_say_it_in_chinese_first(tmp_path, columns):
    inbox = tmp_path / "inbox"
    book(inbox / "customers.xlsx", "客户信息", [*CUST, "内部评级"], [["C1", "甲", None, None, None, "A"]])
    book(inbox / "说明.xlsx", "说明", ["本文件由CRM导出"], [])
    (inbox / "订单.csv").write_text("订单编号\n", encoding="utf-8")
    _, warnings = read(inbox, columns)
    assert [(w.code, w.message) for w in warnings] == [
        ("ignored-file", "订单.csv 不是 .xlsx 文件，没有读取 / 订单.csv is not an .xlsx file and was not read"),
        ("unknown-column", "未使用的列：内部评级 / columns not used: 内部评级"),
        ("ignored-sheet", "工作表 说明 没有读取：它的名称和表头都不像客户、互动记录或订单 / sheet 说明 was not read: its name "
                          "and headers match no table (customers, interactions, orders)"),
        ("missing-table", "收件箱 inbox 里没有互动记录工作表，本次运行没有互动记录 / no interactions sheet found in the inbox "
                          "inbox; continuing without interactions"),
        ("missing-table", "收件箱 inbox 里没有订单工作表，本次运行没有订单 / no orders sheet found in the inbox inbox; "
                          "continuing without orders"),
    ]
    assert warnings[0].fix == "在 Excel 里另存为 .xlsx（Excel 工作簿） / save it as .xlsx (Excel Workbook)"


# -- 8. rows hidden or filtered out in Excel --------------------------------------------------------


def test_hidden_rows_are_read_and_said_once_per_sheet(tmp_path, columns):
    # Staff hide the customers they think are done with (rows 5, 9, 17, … of 客户信息) and export: the rows
    # were read like the others, without a word. They are still read (data is data), with one warning that
    # counts them. A hidden title row above the header and hidden empty rows under the table are no records.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "客户信息"
    ws.append(["客户信息导出 2026-11-20"])
    ws.append(CUST)
    for n in range(1, 21):
        ws.append([f"C{n:03d}", f"客户{n}", f"1381234{n:04d}"])
    hidden = [5, 9, 17, 18, 20, 22]
    for r in [1, *hidden, 30, 31]:
        ws.row_dimensions[r].hidden = True
    wb.save(inbox / "customers.xlsx")
    book(inbox / "orders.xlsx", "订单", ORDER, [["O1", "C001", date(2026, 3, 1), 100.0]])  # nothing hidden

    ds, warnings = read(inbox, columns)
    assert len(ds.customers) == 20 and not ds.rejects
    assert [w.code for w in warnings] == ["hidden-rows", "missing-table"]
    w = warnings[0]
    assert str(w.location) == "customers.xlsx, sheet 客户信息" and w.severity == "warning"
    assert w.message == ("工作表 客户信息 有 6 行在 Excel 里被隐藏（第 5、9、17、18、20 行…），仍按正常数据读取 / sheet 客户信息: "
                         "6 rows are hidden in Excel (rows 5, 9, 17, 18, 20, …); they were read as normal data")
    assert w.fix == ("若这些行不该处理，请在 Excel 里删除它们（取消隐藏后可见），再放进收件箱 / if these rows should not be "
                     "processed, delete them in Excel (unhide the rows to see them) and put the workbook in the inbox again")


def test_rows_filtered_out_by_an_autofilter_are_said_too(tmp_path, columns):
    # An interactions export filtered on 渠道 = 电话 before it was saved: Excel hides the other rows
    # (<row hidden="1">); all of them are read, and the warning says the sheet has a filter.
    inbox = tmp_path / "inbox"
    book(inbox / "customers.xlsx", "客户信息", CUST, [["C001", "甲"]])
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "互动记录"
    ws.append(INTER)
    channels = ["电话", "微信", "电话", "邮件"]
    for n, channel in enumerate(channels, 1):
        ws.append([f"I{n}", "C001", datetime(2026, 11, n, 9), "咨询", channel])
    ws.auto_filter.ref = f"A1:E{len(channels) + 1}"
    ws.auto_filter.add_filter_column(4, ["电话"])
    for r, channel in enumerate(channels, 2):
        ws.row_dimensions[r].hidden = channel != "电话"
    wb.save(inbox / "interactions.xlsx")

    ds, warnings = read(inbox, columns)
    assert [i.interaction_id for i in ds.interactions] == ["I1", "I2", "I3", "I4"]
    [w] = [w for w in warnings if w.code == "hidden-rows"]
    assert str(w.location) == "interactions.xlsx, sheet 互动记录"
    assert w.message == ("工作表 互动记录 有 2 行在 Excel 里被隐藏或被筛选掉（第 3、5 行），仍按正常数据读取 / sheet 互动记录: "
                         "2 rows are hidden or filtered out in Excel (rows 3, 5); they were read as normal data")
    assert "取消隐藏或清除筛选后可见" in w.fix and "unhide the rows or clear the filter" in w.fix


def test_a_stray_space_in_an_owner_name_is_not_a_second_person(tmp_path):
    # 客户经理 typed "李 娜" (real name 李娜) on one row: the same person, one task sheet; English names
    # keep one space between their parts.
    from conftest import customer, run_cli, write_inbox

    inbox = write_inbox(tmp_path / "inbox", [customer("C1", 客户经理="李 娜", 客户阶段="潜在"),
                                             customer("C2", 客户经理="李娜", 客户阶段="潜在"),
                                             customer("C3", 客户经理="Anna   Lee", 客户阶段="潜在")])
    folder = run_cli(inbox, tmp_path / "out", AS_OF)
    assert sorted(p.name for p in (folder / "tasks").iterdir()) == ["Anna Lee.xlsx", "李娜.xlsx"]
    rows = list(openpyxl.load_workbook(folder / "tasks" / "李娜.xlsx").worksheets[0].iter_rows(values_only=True))
    col = rows[0].index("负责人")
    assert sorted((r[col], r[rows[0].index("客户编号")]) for r in rows[1:]) == [("李娜", "C1"), ("李娜", "C2")]


@pytest.mark.parametrize("raw, expected", [("李 娜", "李娜"), (" 李　娜 ", "李娜"), ("欧阳  小 明", "欧阳小明"),
                                           ("Anna  Lee", "Anna Lee"), ("王 Anna", "王 Anna"), ("李娜", "李娜")])
def test_person_names_have_their_spaces_tidied(columns, raw, expected):
    assert columns.coercer().for_field("person")(raw) == expected
