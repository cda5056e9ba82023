"""Reading real-world Excel exports: coercion rules, header matching, rejects, duplicates, layouts.

Every reader test writes a real .xlsx (xlsxwriter or openpyxl) into tmp_path and reads it back with
``read_inbox``; row numbers in rejects are spreadsheet rows (1-based, as Excel shows them).
"""
from __future__ import annotations

import dataclasses
import gc
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Sequence

import openpyxl
import pytest
import xlsxwriter

from engine.coerce import (
    Coercer,
    CoercionError,
    to_bool,
    to_date,
    to_datetime,
    to_email,
    to_id,
    to_int,
    to_number,
    to_phone,
    to_text,
)
from engine.columns import header_key, load_columns
from engine.errors import InputError, PolicyError, Problem
from engine.model import Customer, Interaction, Order, SourceRow
from engine.readers import read_inbox

ROOT = Path(__file__).resolve().parent.parent
COLUMNS_PATH = ROOT / "policies" / "columns.yaml"


@pytest.fixture(scope="module")
def columns():
    return load_columns(COLUMNS_PATH)


def write_book(path: Path, sheets: dict[str, Sequence[Sequence[Any]]]) -> Path:
    """Write ``{sheet: rows}`` with xlsxwriter; dates/datetimes get date formats like a CRM export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path))
    dfmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    tfmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    for name, rows in sheets.items():
        ws = wb.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                if v is None:
                    continue
                if isinstance(v, datetime):
                    ws.write_datetime(r, c, v, tfmt)
                elif isinstance(v, date):
                    ws.write_datetime(r, c, v, dfmt)
                elif isinstance(v, str):
                    ws.write_string(r, c, v)
                else:
                    ws.write(r, c, v)
    wb.close()
    return path


CUST_HEAD = ["客户编号", "客户名称", "手机号码", "客户经理", "生日", "农历生日", "营销许可", "退订"]
INTER_HEAD = ["互动编号", "客户编号", "创建时间", "互动类型", "渠道", "满意度"]
ORDER_HEAD = ["订单编号", "客户编号", "下单日期", "订单金额", "产品"]


def basic_inbox(tmp: Path, customers=None, interactions=None, orders=None) -> Path:
    inbox = tmp / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [CUST_HEAD] + (customers if customers is not None else [
        ["C1", "张三", "13812345678", "王磊", date(1990, 5, 17), "否", "是", "否"],
        ["C2", "李四", "13912345678", "李娜", date(1985, 1, 2), "是", "否", None],
    ])})
    write_book(inbox / "interactions.xlsx", {"互动记录": [INTER_HEAD] + (interactions if interactions is not None else [
        ["I1", "C1", datetime(2026, 11, 1, 9, 30), "投诉", "电话", 3],
        ["I2", "C2", datetime(2026, 10, 1, 10, 0), "咨询", "微信", None],
    ])})
    write_book(inbox / "orders.xlsx", {"订单": [ORDER_HEAD] + (orders if orders is not None else [
        ["O1", "C1", date(2026, 3, 1), 1200.5, "标准版软件"],
    ])})
    return inbox


def codes(ds) -> list[tuple[str, int, str]]:
    return [(r.file, r.row, r.code) for r in ds.rejects]


# -- coercion rules (exact outputs) ---------------------------------------------------------------

BLANKS = [None, "", "  ", "-", "—", "N/A", "无", "null", "NULL", "#N/A", "\u3000"]


@pytest.mark.parametrize("raw", BLANKS)
@pytest.mark.parametrize("fn", [to_text, to_id, to_phone, to_email, to_date, to_datetime, to_number, to_int, to_bool])
def test_blank_looking_cells_are_none(fn, raw):
    assert fn(raw) is None


@pytest.mark.parametrize("raw, expected", [
    (45429.0, date(2024, 5, 17)),  # Excel serial, 1900 date system
    (45429, date(2024, 5, 17)),
    (45429.75, date(2024, 5, 17)),  # time of day dropped for a date
    ("45429", date(2024, 5, 17)),  # serial stored as text
    (date(2024, 5, 17), date(2024, 5, 17)),
    (datetime(2024, 5, 17, 9, 30), date(2024, 5, 17)),
    ("2024/5/17", date(2024, 5, 17)),
    ("2024-05-17", date(2024, 5, 17)),
    (" 2024-05-17 ", date(2024, 5, 17)),
    ("2024-05-17 09:30", date(2024, 5, 17)),
    ("2024/5/17 9:30:15", date(2024, 5, 17)),
    ("2024年5月17日", date(2024, 5, 17)),
    ("2024年5月17日 9时30分", date(2024, 5, 17)),
    ("20240517", date(2024, 5, 17)),
    (20240517.0, date(2024, 5, 17)),  # YYYYMMDD typed as a number
    ("2024.5.17", date(2024, 5, 17)),
    ("２０２４－０５－１７", date(2024, 5, 17)),  # full-width
    ("２０２４年５月１７日", date(2024, 5, 17)),
])
def test_dates(raw, expected):
    assert to_date(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    (45429.5, datetime(2024, 5, 17, 12, 0)),
    (45429.396527777775, datetime(2024, 5, 17, 9, 31)),  # rounded to the second
    (datetime(2024, 5, 17, 9, 30), datetime(2024, 5, 17, 9, 30)),
    (date(2024, 5, 17), datetime(2024, 5, 17)),
    ("2024-05-17", datetime(2024, 5, 17)),
    ("2024-05-17 09:30", datetime(2024, 5, 17, 9, 30)),
    ("2024-05-17T09:30:00", datetime(2024, 5, 17, 9, 30)),
    ("2024/5/17 9:30:15", datetime(2024, 5, 17, 9, 30, 15)),
    ("2024年5月17日 9时30分", datetime(2024, 5, 17, 9, 30)),
    ("2024年5月17日9时30分15秒", datetime(2024, 5, 17, 9, 30, 15)),
    ("20240517 0930", datetime(2024, 5, 17, 9, 30)),
    ("２０２４/５/１７ ９：３０", datetime(2024, 5, 17, 9, 30)),
    # with a UTC offset (API exports): converted to columns.yaml's time_zone, shipped Asia/Shanghai
    ("2024-05-17T09:30:00+08:00", datetime(2024, 5, 17, 9, 30)),
    ("2024-05-17T01:30:00Z", datetime(2024, 5, 17, 9, 30)),
    ("2024-05-17 09:30 +0800", datetime(2024, 5, 17, 9, 30)),
    ("2024-05-16T20:30:00-05:00", datetime(2024, 5, 17, 9, 30)),
])
def test_datetimes(raw, expected):
    assert to_datetime(raw) == expected


def test_offset_times_follow_the_columns_time_zone(tmp_path):
    """columns.yaml time_zone: an export's 2024-05-17T01:30:00Z is 09:30 in Shanghai, 10:30 in Tokyo;
    an unknown zone is an error at its line."""
    text = COLUMNS_PATH.read_text(encoding="utf-8")
    path = tmp_path / "columns.yaml"
    path.write_text(text.replace("time_zone: Asia/Shanghai", "time_zone: Asia/Tokyo", 1), encoding="utf-8")
    assert load_columns(path).coercer().to_datetime("2024-05-17T01:30:00Z") == datetime(2024, 5, 17, 10, 30)
    path.write_text(text.replace("time_zone: Asia/Shanghai", "time_zone: Asia/Beijing", 1), encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_columns(path)
    assert "time_zone: unknown time zone 'Asia/Beijing'" in str(exc.value)


@pytest.mark.parametrize("fn", [to_date, to_datetime])
@pytest.mark.parametrize("raw", ["2024-02-30", "2024-13-01", "yesterday", "5/17/2024", "2024-05-17 25:00x", 30.0,
                                 -5.0, time(9, 30), True, "0024-05-17"])
def test_bad_dates(fn, raw):
    with pytest.raises(CoercionError) as exc:
        fn(raw)
    assert exc.value.code == "bad-date"


def test_bad_time_of_day():
    with pytest.raises(CoercionError) as exc:
        to_datetime("2024-05-17 24:00")
    assert exc.value.code == "bad-date"
    assert to_date("2024-05-17 24:00") == date(2024, 5, 17)  # a date column ignores the time part


@pytest.mark.parametrize("raw, expected", [
    (13812345678.0, "13812345678"),
    (13812345678, "13812345678"),
    ("13812345678", "13812345678"),
    ("1.3812345678E10", "13812345678"),
    ("1.3812345678e+10", "13812345678"),
    ("13812345678.0", "13812345678"),
    ("138 1234 5678", "13812345678"),
    ("138-1234-5678", "13812345678"),
    ("+86 138 1234 5678", "13812345678"),  # a mobile with +86: its 11 digits
    ("+86-13812345678", "13812345678"),
    ("１３８１２３４５６７８", "13812345678"),
    ("0571-88886666", "057188886666"),
    ("13812345678 / 13987654321", "13812345678"),  # several numbers: the first
    # an extension is dropped (it was glued on: 010123456788001); 0086 is +86
    ("010-12345678-8001", "01012345678"),
    ("010-12345678转8001", "01012345678"),
    ("010-12345678 ext. 8001", "01012345678"),
    ("0086 138 1234 5678", "13812345678"),
])
def test_phones(raw, expected):
    assert to_phone(raw) == expected


@pytest.mark.parametrize("raw", ["138****5678", "call me", "1.5", 12.5, True])
def test_bad_phones(raw):
    with pytest.raises(CoercionError) as exc:
        to_phone(raw)
    assert exc.value.code == "bad-phone"


def test_a_phone_whose_digits_scientific_notation_lost_is_refused():
    # What Excel shows for 13812345678 in a General column, kept as text: 13812300000 got the SMS.
    with pytest.raises(CoercionError) as exc:
        to_phone("1.38123E+10")
    assert exc.value.reason == ("1.38123E+10 lost digits in scientific notation (it would read as 13812300000): "
                                "format the column as text in Excel and export again")


@pytest.mark.parametrize("raw", [240517, 2024051, 1000000, 240517.0])
def test_a_number_past_2199_is_no_date(raw):
    # 240517 typed as yymmdd was the Excel serial of 2558-07-05: a birthday greeting on the wrong day.
    for fn in (to_date, to_datetime):
        with pytest.raises(CoercionError) as exc:
            fn(raw)
        assert exc.value.code == "bad-date"


@pytest.mark.parametrize("raw, expected", [
    (1200.5, 1200.5),
    (1200, 1200.0),
    ("1200", 1200.0),
    ("1200.50", 1200.5),
    ("¥1,200.50", 1200.5),
    ("￥1200", 1200.0),
    ("1,200元", 1200.0),
    ("RMB 1200", 1200.0),
    ("rmb1,200.00", 1200.0),
    ("CNY 99.9", 99.9),
    ("人民币500元", 500.0),
    ("1.5万", 15000.0),
    ("2万元", 20000.0),
    ("-¥30", -30.0),
    ("¥-30", -30.0),
    ("１，２００．５", 1200.5),  # full-width digits and comma
    ("(1,200)", -1200.0),  # accounting notation for a negative amount
    ("（¥1,200.50）", -1200.5),
    ("￥(1,200)", -1200.0),
    ("RMB(1,200)", -1200.0),
    ("-(1,200)", -1200.0),
    ("1.2E3", 1200.0),
    (" 7 ", 7.0),
])
def test_numbers(raw, expected):
    assert to_number(raw) == expected


@pytest.mark.parametrize("raw", ["12,00", "abc", "¥", "1.2.3", "nan", "inf", True, date(2024, 1, 1)])
def test_bad_numbers(raw):
    with pytest.raises(CoercionError) as exc:
        to_number(raw)
    assert exc.value.code == "bad-number"


@pytest.mark.parametrize("raw", ["$1,500", "USD 1200", "1200美元", "€99", "HKD 300", "US$ 20"])
def test_amounts_in_other_currencies_are_not_read_as_yuan(raw):
    with pytest.raises(CoercionError) as exc:
        to_number(raw)
    assert (exc.value.code, exc.value.reason) == ("bad-number", f"{raw} is not in yuan (元): convert it to yuan in the export")


@pytest.mark.parametrize("fn", [to_date, to_datetime])
@pytest.mark.parametrize("raw", [1985, 1985.0, 2024, "1985"])
def test_a_year_alone_is_not_a_date(fn, raw):
    """1985 typed in a birthday cell is a year, not Excel serial 1985 (1905-06-07)."""
    with pytest.raises(CoercionError) as exc:
        fn(raw)
    assert exc.value.code == "bad-date" and "looks like a year, not a date" in exc.value.reason


def test_ints_and_ranges():
    assert to_int("5") == 5 and to_int(4.0) == 4 and to_int(3) == 3 and to_int("４") == 4
    with pytest.raises(CoercionError) as exc:
        to_int(4.5)
    assert exc.value.code == "bad-number"
    rating = Coercer().for_field("int", min_value=1, max_value=5)
    assert rating(5.0) == 5 and rating("1") == 1 and rating("") is None
    with pytest.raises(CoercionError) as exc:
        rating(6)
    assert exc.value.code == "out-of-range"
    assert "6 is outside 1..5" in exc.value.reason


@pytest.mark.parametrize("raw, expected", [
    ("是", True), ("否", False), ("Y", True), ("N", False), ("y", True), ("n", False), ("true", True),
    ("FALSE", False), ("1", True), ("0", False), ("√", True), ("同意", True), ("不同意", False), (1.0, True),
    (0.0, False), (True, True), (False, False), (" 是 ", True), ("Ｙ", True), ("yes", True), ("No", False),
])
def test_bools(raw, expected):
    assert to_bool(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", 2.0, "待定"])
def test_bad_bools(raw):
    with pytest.raises(CoercionError) as exc:
        to_bool(raw)
    assert exc.value.code == "bad-bool"


def test_ids_text_and_email():
    assert to_id(1001.0) == "1001" and to_id(1001) == "1001" and to_id(" C0001 ") == "C0001"
    assert to_id("Ｃ０００１") == "C0001" and to_id(12.5) == "12.5"
    with pytest.raises(CoercionError) as exc:
        to_id(date(2024, 1, 1))
    assert exc.value.code == "bad-id"
    assert to_text(12.0) == "12" and to_text(" 张三 ") == "张三" and to_text(0.5) == "0.5"
    assert to_text(date(2024, 5, 17)) == "2024-05-17" and to_text(True) == "TRUE"
    assert to_email(" a.b@qq.com ") == "a.b@qq.com" and to_email("a＠qq.com") == "a@qq.com"
    with pytest.raises(CoercionError) as exc:
        to_email("not-an-email")
    assert exc.value.code == "bad-email"


@pytest.mark.parametrize("raw, expected", [
    ("mailto:a.b@qq.com", "a.b@qq.com"),  # a link copied from a mail program: mailed as written, it bounced
    ("MAILTO: a.b@qq.com", "a.b@qq.com"),
    ("张三 <a.b@qq.com>", "a.b@qq.com"),
    ("<a.b@qq.com>", "a.b@qq.com"),
    ("a.b@qq.com; c@163.com", "a.b@qq.com"),  # several: the first, as for phones
    ("a.b@qq.com，c@163.com", "a.b@qq.com"),
])
def test_emails_as_mail_programs_copy_them(raw, expected):
    assert to_email(raw) == expected


@pytest.mark.parametrize("raw", ["mailto:", "张三 <>", "a@b", "a@@b.com"])
def test_bad_emails(raw):
    with pytest.raises(CoercionError) as exc:
        to_email(raw)
    assert exc.value.code == "bad-email"


def test_an_apostrophe_that_kept_a_number_as_text_is_not_part_of_it(tmp_path, columns):
    # '00123 in an interaction export did not match customer 00123: every interaction was unknown-customer.
    assert to_id("'00123") == "00123" and to_id("＇C001") == "C001" and to_id("'") is None
    assert to_phone("'13812345678") == "13812345678"
    inbox = basic_inbox(tmp_path, customers=[["00123", "张三", "'13812345678", None, None, None, None, None]],
                        interactions=[["I1", "'00123", datetime(2026, 11, 1, 9, 30), "咨询", "电话", None]], orders=[])
    ds = read_inbox(inbox, columns)
    assert [(i.interaction_id, i.customer_id) for i in ds.interactions] == [("I1", "00123")]
    assert ds.customers[0].phone == "13812345678" and ds.rejects == []


def test_enum_synonyms_from_columns_yaml(columns):
    spec = columns.tables["interactions"].fields["type"]
    fn = columns.coercer().for_field("enum", values=spec.values)
    assert [fn(v) for v in ["complaint", "Follow-up", "follow up", "投诉", " inquiry ", "CARE", "purchase", "visit",
                            "suggestion", "其他", "", "—"]] == \
        ["投诉", "回访", "回访", "投诉", "咨询", "关怀", "购买", "拜访", "建议", "其他", None, None]
    stage = columns.tables["customers"].fields["lifecycle_stage"]
    fn = columns.coercer().for_field("enum", values=stage.values)
    assert [fn(v) for v in ["prospect", "潜在客户", "Churned", "已签约", "意向"]] == ["潜在", "潜在", "流失", "签约", "意向"]
    strict = Coercer().for_field("enum", values={"A": "A", "a1": "A"}, strict=True)
    assert strict("a1") == "A"
    with pytest.raises(CoercionError) as exc:
        strict("B")
    assert exc.value.code == "bad-value"


def test_convert_column_matches_cell_by_cell(columns):
    co = columns.coercer()
    spec = columns.tables["interactions"].fields["channel"]
    fn = co.for_field("enum", values=spec.values)
    raw = ["电话", "phone", "", "微信", "WeChat"] * 40
    assert co.convert_column(fn, raw) == [fn(v) for v in raw]
    flags = co.for_field("bool")
    mixed = [True, 1.0, "", "是", False, 0.0] * 30  # True == 1.0 must not share a memo entry
    assert co.convert_column(flags, mixed) == [flags(v) for v in mixed]
    texts = co.for_field("text")
    mixed_text = [True, 1.0, "x"] * 40
    assert co.convert_column(texts, mixed_text) == [texts(v) for v in mixed_text]


# -- header matching ------------------------------------------------------------------------------


def test_header_key_normalisation():
    assert header_key("客户编号：") == header_key("*客户 编号") == header_key("客户编号*") == "客户编号"
    assert header_key("Customer_ID") == header_key("customer-id") == header_key("ＣＵＳＴＯＭＥＲ ＩＤ") == "customerid"
    assert header_key(None) == "" and header_key(3.0) == ""


@pytest.mark.parametrize("title_rows", [1, 2, 5, 13])  # 13: an export's filter lines above the table
def test_header_found_below_title_rows(tmp_path, columns, title_rows):
    above: list[list[Any]] = [["客户信息导出 2026-11-20"]] + [[] for _ in range(title_rows - 1)]
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": above + [CUST_HEAD, ["C1", "张三"], ["C2", "李四"], [None, "王五"]]})
    ds = read_inbox(inbox, columns)
    assert [c.customer_id for c in ds.customers] == ["C1", "C2"]
    header_row = title_rows + 1
    assert ds.customers[0].source == SourceRow("customers.xlsx", "客户信息", header_row + 1)
    assert codes(ds) == [("customers.xlsx", header_row + 3, "missing-value")]


def test_english_full_width_and_decorated_headers(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "clients.xlsx", {"Clients": [
        ["ＣｕｓｔｏｍｅｒＩＤ", "*Customer Name", "Mobile：", "account_manager", "Marketing-Consent", "Opt Out"],
        ["C1", "Zhang San", "138-1234-5678", "王磊", "Y", "N"],
    ]})
    write_book(inbox / "orders.xlsx", {"Orders": [
        ["Order No", "customer id", "Order Date", "订单金额（元）", "QTY"],
        ["O1", "C1", "2026/3/1", "¥1,200.50", "2"],
    ]})
    ds = read_inbox(inbox, columns)
    c = ds.customers[0]
    assert (c.customer_id, c.name, c.phone, c.owner, c.marketing_consent, c.opt_out) == \
        ("C1", "Zhang San", "13812345678", "王磊", True, False)
    o = ds.orders[0]
    assert (o.order_id, o.customer_id, o.date, o.amount, o.quantity) == ("O1", "C1", date(2026, 3, 1), 1200.5, 2.0)
    assert ds.rejects == []


def test_unknown_columns_are_ignored_with_a_warning(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称", "内部评级", "QQ号"], ["C1", "张三", "A", "123"]]})
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert len(ds.customers) == 1
    unknown = [w for w in warnings if w.code == "unknown-column"]
    assert len(unknown) == 1 and unknown[0].severity == "warning"
    assert unknown[0].message == "未使用的列：内部评级, QQ号 / columns not used: 内部评级, QQ号"
    assert str(unknown[0].location) == "customers.xlsx, sheet 客户信息"


def test_control_characters_in_cells_are_dropped_and_never_printed(tmp_path, columns):
    # Pasted text can carry invisible control characters: escape sequences reached the terminal, and a
    # \x01 in an owner's name made that owner's task workbook invalid XML.
    from engine.validate import format_problem

    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称", "客户经理", "备注\x1b]0;TITLE\x07"],
                                                       ["C1\x00", "张三\x1b[2J", "张\x01伟", "x"],
                                                       ["C2", "第一行\n第二行", "李娜", "y"]]})
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert [(c.customer_id, c.name, c.owner) for c in ds.customers] == [("C1", "张三[2J", "张伟"), ("C2", "第一行\n第二行", "李娜")]
    [unknown] = [w for w in warnings if w.code == "unknown-column"]
    assert "\x1b" not in str(unknown) and "\x07" not in format_problem(unknown)
    assert "备注?]0;TITLE?" in str(unknown)


def test_a_broken_link_in_the_inbox_stops_the_run(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "张三"]]})
    (inbox / "interactions.xlsx").symlink_to(tmp_path / "gone" / "interactions.xlsx")
    with pytest.raises(InputError) as exc:  # it was skipped: the batch ran with no interactions at all
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert (problem.code, str(problem.location)) == ("unreadable-file", "interactions.xlsx")
    gone = tmp_path / "gone" / "interactions.xlsx"
    assert problem.message == (f"interactions.xlsx 是指向 {gone} 的链接，但那个文件不存在 / "
                               f"interactions.xlsx is a link to {gone}, which does not exist")


def test_a_sheet_whose_used_range_is_enormous_is_refused_before_it_is_parsed(tmp_path, columns):
    # One stray cell in the last row and column: parsing it asked for 512 GiB and aborted the process.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = xlsxwriter.Workbook(str(inbox / "customers.xlsx"))
    ws = wb.add_worksheet("客户信息")
    ws.write_row(0, 0, ["客户编号", "客户名称"])
    ws.write_row(1, 0, ["C1", "张三"])
    ws.write(1048575, 16383, ".")
    wb.close()
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert (problem.code, str(problem.location)) == ("unreadable-file", "customers.xlsx, sheet 客户信息")
    assert problem.message.startswith("工作表 客户信息 无法读取：它的使用区域是 A1:XFD1048576，远多于一份导出的单元格")
    assert "/ sheet 客户信息 cannot be read: its used range is A1:XFD1048576, far more cells" in problem.message
    assert problem.fix.startswith("删掉数据后面的空行和空列")


def test_an_enormous_used_range_is_refused_in_an_openpyxl_workbook_too(tmp_path, columns):
    # openpyxl writes <Relationship Target=… Id=…>, the other order than Excel's: the check found no
    # sheet in such a workbook and calamine was left to abort on it.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "客户信息"
    ws.append(["客户编号", "客户名称"])
    ws.append(["C1", "张三"])
    ws.cell(1048576, 16384, ".")
    wb.save(inbox / "customers.xlsx")
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert problem.message.startswith("工作表 客户信息 无法读取：它的使用区域是 A1:XFD1048576，远多于一份导出的单元格")
    assert "/ sheet 客户信息 cannot be read: its used range is A1:XFD1048576, far more cells" in problem.message
    assert problem.fix.startswith("删掉数据后面的空行和空列")


def test_a_damaged_sheet_is_reported_not_a_zlib_traceback(tmp_path, columns):
    # A workbook whose sheet was damaged in transit (bytes changed inside its compressed XML): the check of
    # the used range read it first and the run ended in "zlib.error: Error -3 while decompressing data".
    # Now calamine says which sheet cannot be read, like any unreadable file.
    import zipfile

    inbox = tmp_path / "inbox"
    write_book(tmp_path / "good.xlsx", {"客户信息": [["客户编号", "客户名称"], *[[f"C{n}", f"客户{n}"] for n in range(2000)]]})
    data = bytearray((tmp_path / "good.xlsx").read_bytes())
    with zipfile.ZipFile(tmp_path / "good.xlsx") as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the member's compressed data
    for k in range(start + 200, start + 400):
        data[k] ^= 0x5A
    inbox.mkdir()
    (inbox / "customers.xlsx").write_bytes(bytes(data))
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert (problem.code, str(problem.location)) == ("unreadable-file", "customers.xlsx, sheet 客户信息")
    assert problem.message == "工作表 客户信息 无法读取（I/O error: corrupt deflate stream） / sheet 客户信息 cannot be read (I/O error: corrupt deflate stream)"


def test_each_workbook_package_is_opened_once(tmp_path, columns, monkeypatch):
    # The date system, the used-range guard and the scan for error cells each opened the zip package
    # (three times per workbook): one pass now serves them all, with the same results.
    import zipfile

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = xlsxwriter.Workbook(str(inbox / "orders.xlsx"), {"date_1904": True})
    ws = wb.add_worksheet("订单")
    ws.write_row(0, 0, ["订单编号", "客户编号", "订单日期", "订单金额", "数量"])
    ws.write_row(1, 0, ["O1", "C1", 44834, 100])  # 2026-10-01 in the 1904 system, a General number
    ws.write_formula(1, 4, "=1/0", None, "#DIV/0!")
    wb.close()
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "甲"]]})
    opened: list[str] = []

    class CountingZipFile(zipfile.ZipFile):
        def __init__(self, file, *args, **kwargs):
            opened.append(Path(file).name)
            super().__init__(file, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", CountingZipFile)
    ds = read_inbox(inbox, columns)
    assert sorted(opened) == ["customers.xlsx", "orders.xlsx"]
    assert [(o.order_id, o.date) for o in ds.orders] == [("O1", date(2026, 10, 1))]
    assert [(r.row, r.column, r.value, r.cause) for r in ds.rejects] == [(2, "数量", "#DIV/0!", "error-cell")]

def test_missing_required_column_message(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户名称", "手机号码"], ["张三", "13812345678"]]})
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert problem.code == "missing-column"
    assert problem.location.file == "customers.xlsx" and problem.location.sheet == "客户信息"
    text = str(exc.value)
    assert problem.message.startswith("customers.xlsx 的工作表 客户信息 缺少必需的列 customers.customer_id：在前 30 行里找过这些表头：")
    assert "最像表头的是第 1 行：客户名称, 手机号码" in text
    assert "no column for customers.customer_id (required) in customers.xlsx, sheet 客户信息." in text
    aliases = columns.tables["customers"].fields["customer_id"].aliases
    assert "matching any of: " + ", ".join(aliases) + "." in text
    for alias in ("客户编号", "客户ID", "客户代码", "customer_id", "Customer ID", "CustomerID"):
        assert alias in aliases
    assert "row 1, has: 客户名称, 手机号码" in text
    assert problem.fix == (f"加一列，表头写 客户编号；或把你的表头加进 {columns.path} 的 customers.customer_id.aliases / "
                           f"add a column headed 客户编号, or add your header to {columns.path} under "
                           "customers.customer_id.aliases")
    assert "fix: 加一列，表头写 客户编号" in text


def test_missing_columns_in_orders_each_reported(tmp_path, columns):
    inbox = basic_inbox(tmp_path)
    write_book(inbox / "orders.xlsx", {"订单": [["订单编号", "客户编号", "产品"], ["O1", "C1", "x"]]})
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    assert [(p.code, p.location.file, p.location.sheet) for p in exc.value.problems] == \
        [("missing-column", "orders.xlsx", "订单")] * 2
    assert "orders.date" in exc.value.problems[0].message and "orders.amount" in exc.value.problems[1].message


def test_file_hint_explains_missing_columns(tmp_path, columns):
    inbox = basic_inbox(tmp_path)
    write_book(inbox / "orders.xlsx", {"Sheet1": [["订单编号", "客户编号", "金额"], ["O1", "C1", 5]]})
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert problem.message.startswith("orders.xlsx 的工作表 Sheet1 缺少必需的列 orders.date：")
    assert "/ no column for orders.date (required) in orders.xlsx, sheet Sheet1." in problem.message


# -- rejects --------------------------------------------------------------------------------------


def test_bad_required_cells_reject_rows_with_spreadsheet_row_numbers(tmp_path, columns):
    inbox = basic_inbox(tmp_path, orders=[
        ["O1", "C1", date(2026, 3, 1), 100, "a"],  # row 2
        ["O2", "C1", "2026-02-30", 100, "b"],  # row 3: impossible date
        ["O3", "C1", "2026-03-02", "一百", "c"],  # row 4: amount unreadable
        ["O4", None, "2026-03-02", 100, "d"],  # row 5: no customer id
        ["O5", "C2", "2026年3月5日", "¥1,000", "e"],  # row 6: fine
    ])
    ds = read_inbox(inbox, columns)
    assert [o.order_id for o in ds.orders] == ["O1", "O5"]
    assert [(r.row, r.column, r.value, r.code) for r in ds.rejects] == [
        (3, "下单日期", "2026-02-30", "bad-date"),
        (4, "订单金额", "一百", "bad-number"),
        (5, "客户编号", None, "missing-value"),
    ]
    assert ds.rejects[0].reason == "下单日期 (date) is required: 2026-02-30 is not a real date or time; row skipped"
    assert ds.rejects[2].reason == "客户编号 (customer_id) is required but empty; row skipped"
    assert all(r.file == "orders.xlsx" and r.sheet == "订单" for r in ds.rejects)


def test_several_bad_cells_in_one_row_give_one_reject(tmp_path, columns):
    inbox = basic_inbox(tmp_path, orders=[["O1", "C1", "someday", "lots", "a"]])
    ds = read_inbox(inbox, columns)
    [r] = ds.rejects
    assert (r.row, r.code, r.column) == (2, "bad-date", "下单日期")
    assert "also 订单金额: lots is not a number" in r.reason


def test_bad_optional_cell_keeps_the_row(tmp_path, columns):
    inbox = basic_inbox(tmp_path, customers=[
        ["C1", "张三", "138****5678", "王磊", "去年", "maybe", "是", "否"],
    ])
    ds = read_inbox(inbox, columns)
    [c] = ds.customers
    assert (c.customer_id, c.phone, c.birthday, c.birthday_is_lunar, c.marketing_consent) == ("C1", None, None, False, True)
    got = [(r.row, r.column, r.value, r.code, r.reason) for r in ds.rejects if r.file == "customers.xlsx"]
    assert got == [
        (2, "农历生日", "maybe", "bad-value", "kept the row, left birthday_is_lunar empty: maybe is not a yes/no value [bad-bool]"),
        (2, "手机号码", "138****5678", "bad-value", "kept the row, left phone empty: 138****5678 is not a phone number [bad-phone]"),
        (2, "生日", "去年", "bad-value", "kept the row, left birthday empty: 去年 is not a date this engine can read [bad-date]"),
    ]



def test_opt_out_column_words_and_unreadable_cells_count_as_opted_out(tmp_path, columns):
    """退订 means yes in the opt-out column (its own words in columns.yaml), and a cell nobody can read
    counts as opted out: the customer gets no marketing, and rejects.xlsx says so. Before, 退订/已退订
    were "not a yes/no value", the cell was left empty, and empty means not opted out."""
    inbox = basic_inbox(tmp_path, customers=[
        ["C1", "张三", "13812345678", "王磊", None, None, "是", "退订"],
        ["C2", "李四", "13912345678", "李娜", None, None, "是", "已退订"],
        ["C3", "王五", "13712345678", "李娜", None, None, "是", "未退订"],
        ["C4", "赵六", "13612345678", "李娜", None, None, "是", "看情况"],
        ["C5", "钱七", "13512345678", "李娜", None, None, "是", None],
        ["C6", "孙八", "13412345678", "李娜", None, None, "是", "是"],
    ])
    ds = read_inbox(inbox, columns)
    assert {c.customer_id: c.opt_out for c in ds.customers} == {
        "C1": True, "C2": True, "C3": False, "C4": True, "C5": False, "C6": True}
    got = [(r.row, r.column, r.value, r.code, r.reason) for r in ds.rejects if r.file == "customers.xlsx"]
    assert got == [(5, "退订", "看情况", "bad-value", "kept the row, took opt_out as 是 (yes) to be safe "
                    "(columns.yaml if_unreadable): 看情况 is not a yes/no value [bad-bool]")]


def test_a_columns_own_yes_no_words_apply_to_that_column_only(tmp_path, columns):
    """退订 in the marketing-consent column is not a yes: only the opt-out column lists it."""
    inbox = basic_inbox(tmp_path, customers=[["C1", "张三", "13812345678", "王磊", None, None, "退订", None]])
    ds = read_inbox(inbox, columns)
    [c] = ds.customers
    assert c.marketing_consent is None and c.opt_out is False
    assert [(r.column, r.reason) for r in ds.rejects if r.file == "customers.xlsx"] == [
        ("营销许可", "kept the row, left marketing_consent empty: 退订 is not a yes/no value [bad-bool]")]


def test_columns_yaml_if_unreadable_and_bool_values_are_checked(tmp_path):
    text = COLUMNS_PATH.read_text(encoding="utf-8")
    path = tmp_path / "columns.yaml"
    bad = text.replace("        if_unreadable: true", "        if_unreadable: maybe", 1)
    assert bad != text
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_columns(path)
    assert "tables.customers.fields.opt_out.if_unreadable: only a yes/no (bool) column takes if_unreadable" in str(exc.value)
    clash = text.replace("false: [未退订,", "false: [退订, 未退订,", 1)
    assert clash != text
    path.write_text(clash, encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_columns(path)
    assert [p.code for p in exc.value.problems] == ["duplicate-alias"]
    assert "'退订' is listed under both true and false" in str(exc.value)


def test_counts_titles_and_notes_under_the_customers_table_are_not_customers(tmp_path, columns):
    """The customers table needs only its id, so any text in that column used to become a customer
    ("合计:3条", a page title, a footnote with a name and phone). A row whose id cell is its only filled
    cell is skipped with a reject; a real customer with a sparse row is kept."""
    inbox = basic_inbox(tmp_path, customers=[
        ["C1", "张三", "13812345678", "王磊", None, None, "是", "否"],
        ["C2", None, None, None, None, None, None, None, "VIP"],  # only an unread column besides the id: kept
        ["C900"],  # a new lead with nothing but its id: a customer, kept
        ["合计:3条"],
        ["Total (3 customers)"],
        [3],
        ["客户信息导出 2026-11-20(第2页)"],
        ["注:以上数据截至2026-11-20,导出人:王芳 13912345678"],
    ])
    ds = read_inbox(inbox, columns, warnings=[])
    assert [c.customer_id for c in ds.customers] == ["C1", "C2", "C900"]
    got = [(r.row, r.code) for r in ds.rejects if r.file == "customers.xlsx"]
    assert got == [(5, "summary-row"), (6, "summary-row"), (7, "not-a-record"), (8, "not-a-record"), (9, "not-a-record")]
    [note] = [r for r in ds.rejects if r.row == 9]
    assert note.reason == ("only 客户编号 is filled in this row: a title, note or count under the table, not a record; "
                           "skipped")


def test_hidden_sheets_are_not_read(tmp_path, columns):
    """A hidden backup sheet with the customers' headers is not read: its stale rows replaced the
    visible ones (duplicate ids keep the later row), so an opted-out customer was reachable again."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = xlsxwriter.Workbook(str(inbox / "customers.xlsx"))
    for name, opt_out, hidden in (("客户信息", "是", False), ("客户信息备份", "否", True)):
        ws = wb.add_worksheet(name)
        ws.write_row(0, 0, ["客户编号", "客户名称", "退订"])
        ws.write_row(1, 0, ["C1", "张三", opt_out])
        if hidden:
            ws.hide()
    wb.close()
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    [c] = ds.customers
    assert c.opt_out is True and not [r for r in ds.rejects if r.code == "duplicate-id"]
    assert [(w.code, w.location.sheet, w.message) for w in warnings if w.code == "hidden-sheet"] == [
        ("hidden-sheet", "客户信息备份", "工作表 客户信息备份 是隐藏的，没有读取 / sheet 客户信息备份 is hidden and was not read")]


def test_a_hidden_customers_sheet_is_named_when_no_customers_are_found(tmp_path, columns):
    """The only customers sheet is hidden: the error that stops the read says so, with how to fix it,
    instead of only asking for a customers sheet (the hidden one is named like one)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = xlsxwriter.Workbook(str(inbox / "export.xlsx"))
    wb.add_worksheet("说明").write(0, 0, "本文件为客户导出")
    ws = wb.add_worksheet("客户信息")
    ws.write_row(0, 0, ["客户编号", "客户名称"])
    ws.write_row(1, 0, ["C1", "张三"])
    ws.hide()
    wb.close()
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    codes = [p.code for p in exc.value.problems]
    assert codes[-1] == "hidden-sheet" and "missing-table" in codes
    hint = exc.value.problems[-1]
    assert (hint.location.file, hint.location.sheet, hint.message) == ("export.xlsx", "客户信息", "工作表 客户信息 是隐藏的，没有读取 / sheet 客户信息 is hidden and was not read")
    assert hint.fix.startswith("如果它有要读的行，在 Excel 里取消隐藏")
    assert "/ if it holds rows to read, unhide it in Excel" in hint.fix


def test_a_pivot_sheet_with_customer_headers_does_not_replace_the_customers(tmp_path, columns):
    """A sheet recognised only by its headers (a pivot table: 客户编号, 客户名称, 求和项:订单金额) is not read
    when the customers come from a sheet named for them; before, its rows replaced the real ones."""
    inbox = tmp_path / "inbox"
    write_book(inbox / "CRM导出.xlsx", {
        "客户信息": [CUST_HEAD, ["C1", "张三", "13812345678", "王磊", None, None, "是", "是"]],
        "数据透视表": [["客户编号", "客户名称", "求和项:订单金额"], ["C1", "张三", 1200]],
    })
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    [c] = ds.customers
    assert (c.owner, c.opt_out, c.marketing_consent) == ("王磊", True, True)
    assert not [r for r in ds.rejects if r.code == "duplicate-id"]
    [w] = [w for w in warnings if w.code == "ignored-sheet"]
    assert (w.location.file, w.location.sheet) == ("CRM导出.xlsx", "数据透视表")
    assert w.message == ("工作表 数据透视表 没有读取（1 行）：它的表头像客户，但列比本工作簿的客户工作表少，像是数据透视表或汇总表 / "
                         "sheet 数据透视表 was not read (1 rows): its headers look like customers, but with fewer of "
                         "their columns than the customers sheet of this workbook, like a pivot or summary table")


def test_the_rest_of_a_table_on_a_generic_sheet_or_in_another_file_is_read(tmp_path, columns):
    """Sheet2 with the same columns as 客户信息 holds more customers, and 订单2026.xlsx (sheet Sheet1) more
    orders than 订单2025.xlsx (sheet 订单): all are read, as before pivots were told apart."""
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {
        "客户信息": [CUST_HEAD, ["C1", "张三", "13812345678", "王磊", None, None, "是", "否"]],
        "Sheet2": [CUST_HEAD, ["C2", "李四", "13912345678", "李娜", None, None, "是", "否"]],
    })
    write_book(inbox / "订单2025.xlsx", {"订单": [ORDER_HEAD, ["O1", "C1", date(2025, 3, 1), 100, None]]})
    write_book(inbox / "订单2026.xlsx", {"Sheet1": [ORDER_HEAD, ["O2", "C2", date(2026, 3, 1), 200000, None]]})
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert [c.customer_id for c in ds.customers] == ["C1", "C2"]
    assert [o.order_id for o in ds.orders] == ["O1", "O2"]
    assert not [w for w in warnings if w.code == "ignored-sheet"]


def test_order_status_column_is_read_with_canonical_values(tmp_path, columns):
    """订单状态 is read (it was an unknown column): cancelled, refunded and unpaid orders are then left
    out of the purchase features (features.yaml orders_not_counted)."""
    inbox = basic_inbox(tmp_path, orders=[
        ["O1", "C1", date(2026, 1, 1), 100, None, "交易成功"],
        ["O2", "C1", date(2026, 1, 2), 100, None, "已作废"],
        ["O3", "C1", date(2026, 1, 3), 100, None, "Refunded"],
        ["O4", "C1", date(2026, 1, 4), 100, None, "未付款"],
        ["O5", "C1", date(2026, 1, 5), 100, None, None],
        ["O6", "C1", date(2026, 1, 6), 100, None, "部分发货"],
    ])
    for path in (inbox / "orders.xlsx",):  # add the status header to the basic orders sheet
        rows = [ORDER_HEAD + ["订单状态"]] + [list(r) for r in
                openpyxl.load_workbook(path).worksheets[0].iter_rows(min_row=2, values_only=True)]
        write_book(path, {"订单": rows})
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert [(o.order_id, o.status) for o in ds.orders] == [
        ("O1", "已完成"), ("O2", "已取消"), ("O3", "已退款"), ("O4", "待付款"), ("O5", None), ("O6", "部分发货")]
    assert not [w for w in warnings if w.code == "unknown-column"]
    # A status columns.yaml does not know counts as a purchase: said, with how many orders have it.
    [unknown] = [w for w in warnings if w.code == "unknown-order-status"]
    assert unknown.message == "order statuses columns.yaml does not know: 部分发货 ×1; these orders are counted as purchases"

def test_summary_repeated_header_and_blank_rows(tmp_path, columns):
    inbox = basic_inbox(tmp_path, orders=[
        ["O1", "C1", date(2026, 3, 1), 100, "a"],  # 2
        [None, None, None, None, None],  # 3 blank: skipped silently
        ["  ", None, "", None, None],  # 4 blank-looking: skipped silently
        ORDER_HEAD,  # 5 repeated header (a second page pasted below)
        ["O2", "C1", date(2026, 3, 2), 50, "b"],  # 6
        ["合计", None, None, 150, None],  # 7 total in the id column
        [None, None, "总计：", 150, None],  # 8 total label elsewhere
        ["Total", None, None, 150, None],  # 9
    ])
    ds = read_inbox(inbox, columns)
    assert [o.order_id for o in ds.orders] == ["O1", "O2"]
    assert [(r.row, r.code) for r in ds.rejects] == [(5, "repeated-header"), (7, "summary-row"), (8, "summary-row"),
                                                     (9, "summary-row")]
    assert ds.rejects[1].value == "合计" and ds.rejects[1].column == "订单编号"


def test_unknown_customer(tmp_path, columns):
    inbox = basic_inbox(tmp_path, interactions=[
        ["I1", "C1", datetime(2026, 11, 1, 9, 30), "投诉", "电话", 3],
        ["I2", "C404", datetime(2026, 11, 2, 9, 30), "咨询", "电话", None],
    ], orders=[["O1", "C404", date(2026, 1, 1), 10, None]])
    ds = read_inbox(inbox, columns)
    assert [i.interaction_id for i in ds.interactions] == ["I1"] and ds.orders == []
    assert [(r.file, r.row, r.code, r.value) for r in ds.rejects] == [
        ("interactions.xlsx", 3, "unknown-customer", "C404"), ("orders.xlsx", 2, "unknown-customer", "C404")]
    assert ds.rejects[0].reason == "interaction for customer id C404, which is not in the customers export; skipped"


def test_duplicate_ids_keep_the_last_row(tmp_path, columns):
    inbox = basic_inbox(tmp_path, customers=[
        ["C1", "张三", "13812345678", "王磊"],  # row 2: superseded by row 4
        ["C2", "李四", None, "李娜"],
        ["C1", "张三", "13900000000", "赵敏"],  # row 4: kept (newer)
    ], interactions=[
        ["I1", "C1", datetime(2026, 1, 1), "咨询", "电话", None],
        ["I1", "C1", datetime(2026, 1, 2), "投诉", "电话", None],
    ])
    ds = read_inbox(inbox, columns)
    c1 = next(c for c in ds.customers if c.customer_id == "C1")
    assert (c1.phone, c1.owner, c1.source.row) == ("13900000000", "赵敏", 4)
    assert len(ds.customers) == 2
    dups = [r for r in ds.rejects if r.code == "duplicate-id"]
    assert [(r.file, r.row, r.value) for r in dups] == [("customers.xlsx", 2, "C1"), ("interactions.xlsx", 2, "I1")]
    assert dups[0].reason == ("customer id C1 appears again at customers.xlsx, sheet 客户信息, row 4; "
                              "the later row is kept")
    assert [i.type for i in ds.interactions] == ["投诉"]


def test_duplicates_across_files_keep_the_later_file(tmp_path, columns):
    inbox = basic_inbox(tmp_path)
    write_book(inbox / "customers_2.xlsx", {"客户信息": [CUST_HEAD, ["C2", "李四(新)"]]})
    ds = read_inbox(inbox, columns)
    assert next(c for c in ds.customers if c.customer_id == "C2").name == "李四(新)"
    assert [(r.file, r.row, r.code) for r in ds.rejects] == [("customers.xlsx", 3, "duplicate-id")]


def test_file_order_decides_whatever_the_file_sizes(tmp_path, columns):
    # Workbooks are parsed on threads, the biggest first; duplicates and warnings still follow the
    # files' name order.
    inbox = basic_inbox(tmp_path)
    many = [[f"C{n}", f"客户{n}", None, None, None, None, None, None, "x"] for n in range(3, 400)]
    write_book(inbox / "x_customers.xlsx", {"客户信息": [CUST_HEAD + ["备注A"], ["C2", "李四(旧)"], *many]})
    write_book(inbox / "y_customers.xlsx", {"客户信息": [CUST_HEAD + ["备注B"], ["C2", "李四(新)"]]})
    warnings: list = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert max(inbox.iterdir(), key=lambda p: p.stat().st_size).name == "x_customers.xlsx"
    assert next(c for c in ds.customers if c.customer_id == "C2").name == "李四(新)"
    assert [(r.file, r.row, r.code) for r in ds.rejects] == [
        ("customers.xlsx", 3, "duplicate-id"), ("x_customers.xlsx", 2, "duplicate-id")]
    assert [(w.code, w.location.file) for w in warnings] == [
        ("unknown-column", "x_customers.xlsx"), ("unknown-column", "y_customers.xlsx")]


def test_customer_ids_match_across_number_and_text_cells(tmp_path, columns):
    inbox = basic_inbox(tmp_path, customers=[[1001, "张三"], ["1002", "李四"]],
                        interactions=[["I1", "1001", datetime(2026, 1, 1), None, None, None],
                                      ["I2", 1002.0, datetime(2026, 1, 1), None, None, None],
                                      ["I3", "１００１", datetime(2026, 1, 2), None, None, None]],
                        orders=[])
    ds = read_inbox(inbox, columns)
    assert [(i.interaction_id, i.customer_id) for i in ds.interactions] == [("I1", "1001"), ("I3", "1001"), ("I2", "1002")]
    assert ds.rejects == []


# -- layouts --------------------------------------------------------------------------------------


def test_sheets_of_one_workbook(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "crm_export.xlsx", {
        "说明": [["本文件由CRM导出"], ["请勿修改"]],
        "客户": [["客户ID", "姓名", "电话"], ["C1", "张三", 13812345678.0]],
        "服务记录": [["工单号", "客户代码", "受理时间", "服务类型", "问题分类"],
                 ["T1", "C1", "2026/11/18 14:05", "complaint", "物流"]],
        "Sheet3": [["订单号", "客户编号", "成交日期", "成交金额"], ["S1", "C1", 46000.0, "1,200元"]],  # by headers
    })
    write_book(inbox / "~$crm_export.xlsx", {"x": [["garbage"]]})  # Excel lock file: not read, said
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert [(c.customer_id, c.name, c.phone) for c in ds.customers] == [("C1", "张三", "13812345678")]
    [i] = ds.interactions
    assert (i.interaction_id, i.time, i.type, i.category, i.source.sheet) == \
        ("T1", datetime(2026, 11, 18, 14, 5), "投诉", "物流", "服务记录")
    [o] = ds.orders
    assert (o.order_id, o.date, o.amount, o.source) == ("S1", date(2025, 12, 9), 1200.0,
                                                        SourceRow("crm_export.xlsx", "Sheet3", 2))
    assert ds.input_files == [str(inbox / "crm_export.xlsx")]
    assert [(w.code, w.location.file, w.location.sheet) for w in warnings] == [
        ("workbook-open", "crm_export.xlsx", None), ("ignored-sheet", "crm_export.xlsx", "说明")]


def test_interactions_without_id_column_get_row_ids(tmp_path, columns):
    inbox = basic_inbox(tmp_path)
    write_book(inbox / "interactions.xlsx", {"互动记录": [
        ["客户编号", "时间", "类型"], ["C1", "2026-01-01 10:00", "咨询"], ["C1", "2026-01-02 10:00", "建议"]]})
    ds = read_inbox(inbox, columns)
    assert [i.interaction_id for i in ds.interactions] == ["interactions.xlsx!互动记录!2", "interactions.xlsx!互动记录!3"]


def test_openpyxl_written_file_and_defaults(tmp_path, columns):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "客户信息"
    ws.append(["客户编号", "退订", "农历生日", "积分", "签约日期"])
    ws.append(["C1", None, None, "1,200", datetime(2025, 1, 2)])
    ws.append(["C2", "是", "是", 5, "2025/1/3"])
    wb.save(inbox / "customers.xlsx")
    ds = read_inbox(inbox, columns)
    c1, c2 = ds.customers
    assert (c1.opt_out, c1.birthday_is_lunar, c1.points, c1.signed_date) == (False, False, 1200.0, date(2025, 1, 2))
    assert (c2.opt_out, c2.birthday_is_lunar, c2.points, c2.signed_date) == (True, True, 5.0, date(2025, 1, 3))
    assert c1.marketing_consent is None  # column absent: not recorded


def test_output_is_sorted_and_files_listed(tmp_path, columns):
    inbox = basic_inbox(tmp_path, customers=[["C3"], ["C1"], ["C2"]], interactions=[
        ["I9", "C2", datetime(2026, 1, 3), None, None, None],
        ["I2", "C1", datetime(2026, 1, 5), None, None, None],
        ["I1", "C1", datetime(2026, 1, 5), None, None, None],
        ["I3", "C1", datetime(2026, 1, 1), None, None, None],
    ], orders=[["O2", "C2", date(2026, 1, 1), 1, None], ["O1", "C2", date(2026, 1, 1), 1, None],
               ["O0", "C3", date(2025, 1, 1), 1, None]])
    (inbox / "notes.csv").write_text("x", encoding="utf-8")
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert [c.customer_id for c in ds.customers] == ["C1", "C2", "C3"]
    assert [i.interaction_id for i in ds.interactions] == ["I3", "I1", "I2", "I9"]
    assert [o.order_id for o in ds.orders] == ["O1", "O2", "O0"]
    assert ds.input_files == sorted(ds.input_files) and len(ds.input_files) == 3
    assert [w.code for w in warnings] == ["ignored-file"]


def test_no_customers_sheet_is_an_error(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "orders.xlsx", {"订单": [ORDER_HEAD, ["O1", "C1", date(2026, 1, 1), 1, None]]})
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    assert exc.value.problems[0].code == "missing-table"
    with pytest.raises(InputError) as exc:
        read_inbox(tmp_path / "empty", columns)
    assert exc.value.problems[0].code == "no-input"


def test_unreadable_file(tmp_path, columns):
    inbox = basic_inbox(tmp_path)
    (inbox / "broken.xlsx").write_bytes(b"not a zip")
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    assert exc.value.problems[0].code == "unreadable-file" and exc.value.problems[0].location.file == "broken.xlsx"


def test_a_password_protected_or_old_xls_file_is_named_as_such(tmp_path, columns):
    """Excel saves a password-protected workbook (and an old .xls) as an OLE file, not a zip: the error
    says what it probably is and how to fix it, not only 'invalid Zip archive'."""
    inbox = basic_inbox(tmp_path)
    (inbox / "locked.xlsx").write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 504)
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert problem.message.startswith("locked.xlsx 无法作为 Excel 工作簿打开：它设了密码，或是改名为 .xlsx 的旧版 .xls 文件（")
    assert "/ locked.xlsx cannot be opened as an Excel workbook: it is password-protected or an old-format .xls file " \
           "renamed .xlsx (" in problem.message
    assert problem.fix.startswith("在 Excel 里打开它，去掉密码")


def test_files_parsed_in_parallel_report_in_file_order(tmp_path, columns):
    """The workbooks are converted as their parses end (the small ones first), but warnings, facts and
    the first error come in file-name order, whatever finished first."""
    inbox = tmp_path / "inbox"
    # a_customers.xlsx is big (its parse ends last), b_orders.xlsx tiny; both carry a column not used.
    write_book(inbox / "a_customers.xlsx", {"客户信息": [["客户编号", "客户名称", "内部评级"]] + [
        [f"C{i:05d}", f"客户{i}", "A"] for i in range(30_000)]})
    write_book(inbox / "b_orders.xlsx", {"订单": [["订单编号", "客户编号", "下单日期", "订单金额", "QQ号"],
                                                 ["O1", "C00001", date(2026, 3, 1), 10.0, "123"]]})
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert [(w.location.file, w.message) for w in warnings if w.code == "unknown-column"] == [
        ("a_customers.xlsx", "未使用的列：内部评级 / columns not used: 内部评级"),
        ("b_orders.xlsx", "未使用的列：QQ号 / columns not used: QQ号")]
    assert len(ds.customers) == 30_000 and [o.order_id for o in ds.orders] == ["O1"]

    # Two files that cannot be opened: the error names the first by name.
    (inbox / "0_broken.xlsx").write_bytes(b"not a zip")
    (inbox / "z_broken.xlsx").write_bytes(b"not a zip either")
    for _ in range(5):
        with pytest.raises(InputError) as exc:
            read_inbox(inbox, columns)
        assert [p.location.file for p in exc.value.problems] == ["0_broken.xlsx"]


# -- columns.yaml ---------------------------------------------------------------------------------


def test_shipped_columns_cover_every_fact_field(columns):
    for name, cls in (("customers", Customer), ("interactions", Interaction), ("orders", Order)):
        fields = {f.name for f in dataclasses.fields(cls)} - {"source"}
        assert set(columns.tables[name].fields) == fields, name
    must = {
        ("customers", "customer_id"): ["客户编号", "客户ID", "客户代码", "customer_id", "Customer ID", "CustomerID"],
        ("customers", "owner"): ["客户经理", "负责人", "归属销售", "owner", "account manager"],
        ("customers", "birthday_is_lunar"): ["农历生日", "是否农历", "lunar birthday"],
        ("customers", "marketing_consent"): ["营销许可", "是否同意营销", "接收营销", "marketing consent"],
        ("customers", "opt_out"): ["退订", "拒收", "opt out"],
        ("interactions", "type"): ["类型", "互动类型", "服务类型", "type"],
        ("interactions", "time"): ["时间", "创建时间", "发生时间", "受理时间", "created at", "time"],
    }
    for (table, field), aliases in must.items():
        spec = columns.tables[table]
        assert all(spec.field_for_header(a) == field for a in aliases), (table, field)


def test_columns_yaml_errors(tmp_path):
    text = COLUMNS_PATH.read_text(encoding="utf-8")
    bad = text.replace("      notes:\n        type: text\n", "      nickname:\n        type: text\n", 1)
    path = tmp_path / "columns.yaml"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_columns(path)
    assert [p.code for p in exc.value.problems] == ["unknown-field"]
    assert "tables.customers.fields.nickname" in str(exc.value)
    # The error points at the line of the misspelt field, so ops staff can find it.
    nickname_line = bad.splitlines().index("      nickname:") + 1
    loc = exc.value.problems[0].location
    assert (loc.file, loc.line, loc.col) == (str(path), nickname_line, 7)

    dup = text.replace("aliases: [联系人, 联系人姓名", "aliases: [客户经理, 联系人, 联系人姓名", 1)
    path.write_text(dup, encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_columns(path)
    assert [p.code for p in exc.value.problems] == ["duplicate-alias"]
    # Reported at the aliases list of the field read second, which also says 客户经理.
    assert "客户经理" in dup.splitlines()[exc.value.problems[0].location.line - 1]

    optional_time = text.replace("      time:\n        type: datetime\n        required: true\n",
                                 "      time:\n        type: datetime\n        required: false\n", 1)
    path.write_text(optional_time, encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_columns(path)
    assert "tables.interactions.fields.time: must be 'required: true'" in str(exc.value)
    lines = optional_time.splitlines()
    time_line = next(i for i, line in enumerate(lines, 1) if line == "      time:" and lines[i + 1] == "        required: false")
    assert exc.value.problems[0].location.line == time_line + 2  # the 'required: false' line

    path.write_text("tables: [", encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_columns(path)
    assert exc.value.problems[0].code == "yaml-syntax" and exc.value.problems[0].location.line == 1


def test_missing_column_message_does_not_quote_possible_data_cells(tmp_path, columns):
    # With a single recognised header the "header" may be a data row: other cells are only counted.
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["王小明", "13812345678", "电话"]]})
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    text = str(exc.value)
    assert "The best header candidate, row 1, has: 电话 and 2 other cells." in text
    assert "王小明" not in text and "13812345678" not in text


def test_extra_sheet_that_looks_like_a_table_is_skipped_when_the_table_is_elsewhere(tmp_path, columns):
    inbox = basic_inbox(tmp_path)
    write_book(inbox / "customers.xlsx", {
        "客户信息": [CUST_HEAD, ["C1", "张三"], ["C2", "李四"]],
        "客户统计": [["客户经理", "地区", "客户数"], ["王磊", "上海", 12]],  # a pivot table, no ids
    })
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert len(ds.customers) == 2
    [w] = [w for w in warnings if w.code == "ignored-sheet"]
    assert w.message == ("工作表 客户统计 没有读取：它像客户，但没有「客户编号」列；客户已从其他工作表读取 / "
                         "sheet 客户统计 was not read: it looks like customers but has no column for customer_id; "
                         "customers were read from other sheets")


def test_sheet_that_looks_like_customers_without_ids_is_an_error_when_alone(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "export.xlsx", {"客户统计": [["客户经理", "地区", "客户名称"], ["王磊", "上海", "张三"]]})
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert problem.code == "missing-column" and "customers.customer_id" in problem.message
    assert problem.location.sheet == "客户统计"


def test_reading_leaves_no_reference_cycles(columns):
    # A bad cell's error is kept for the rejects report; with its traceback it would keep the frames of
    # the reader, and so the sheet's raw rows, alive until a full garbage collection (hundreds of MB at
    # 1M interactions, and for the whole run while evaluation pauses the collector).
    gc.collect()
    gc.disable()
    try:
        dataset = read_inbox(ROOT / "inbox", columns)
        assert any(r.code == "bad-date" for r in dataset.rejects)
        del dataset
        assert gc.collect() == 0  # everything was already freed by reference counting
    finally:
        gc.enable()


def test_an_export_without_customer_rows_is_said(tmp_path, columns):
    """A customers sheet with its header only (or every row rejected) reads as no customers: the run
    would decide nothing, so it is said, with the rejects if there were any."""
    inbox = basic_inbox(tmp_path, customers=[])
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert ds.customers == [] and [o.order_id for o in ds.orders] == []  # orders of unknown customers: rejected
    (said,) = [w for w in warnings if w.code == "no-customers"]
    assert said.message == "收件箱 inbox 的客户表没有一行可用：不会为任何人做决定 / the customers sheet in the inbox inbox has no usable row; nothing is decided for anyone"
    assert "listed in rejects.xlsx" in said.fix
    warnings = []
    read_inbox(basic_inbox(tmp_path / "ok"), columns, warnings=warnings)
    assert [w for w in warnings if w.code == "no-customers"] == []


def test_a_header_too_far_down_is_explained(tmp_path, columns):
    """A header below the rows looked at: the error says so and how to fix it, rather than asking for a
    column the sheet does have."""
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [[f"筛选条件 {i}"] for i in range(32)] + [CUST_HEAD, ["C1", "张三"]]})
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    assert ("No row there looks like a header (if the header is further down, delete the rows above it so it is "
            "within the first 30).") in exc.value.problems[0].message


def test_an_empty_workbook_in_the_inbox_is_said(tmp_path, columns):
    inbox = basic_inbox(tmp_path)
    write_book(inbox / "extra.xlsx", {"Sheet1": []})
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert ds.customers
    assert [(w.code, w.location.file, w.message) for w in warnings if w.location.file == "extra.xlsx"] == [
        ("empty-file", "extra.xlsx", "extra.xlsx 的所有工作表都没有数据，没有读取 / extra.xlsx has no data in any sheet and was not read")]


def test_of_two_columns_for_one_field_the_first_alias_is_read(tmp_path, columns):
    """状态 and 订单状态 both name the order status: 订单状态, listed first in columns.yaml, is read whatever
    the column order, and the warning says which column was read instead (it asked to add a header that
    columns.yaml already has)."""
    inbox = basic_inbox(tmp_path)
    write_book(inbox / "orders.xlsx", {"订单": [ORDER_HEAD + ["状态", "订单状态"],
                                                ["O1", "C1", date(2026, 1, 1), 150000, None, "已付款", "已退款"]]})
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert [o.status for o in ds.orders] == ["已退款"]
    assert [w.message for w in warnings if w.code == "unknown-column"] == [
        "状态 列没有读取：orders.status 读的是 订单状态 列 / column 状态 was not read: orders.status is read from column 订单状态"]


def test_a_copy_saved_beside_an_export_is_read_after_it(tmp_path, columns):
    # "customers (1).xlsx" (the newer download) sorted before "customers.xlsx" by full name, so the older rows won.
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "旧名"]]})
    write_book(inbox / "customers (1).xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "新名"]]})
    write_book(inbox / "customers - 副本.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C2", "副本"]]})
    ds = read_inbox(inbox, columns)
    assert [p.rsplit("/", 1)[-1] for p in map(str, ds.input_files)] == ["customers.xlsx", "customers (1).xlsx", "customers - 副本.xlsx"]
    assert {c.customer_id: c.name for c in ds.customers} == {"C1": "新名", "C2": "副本"}


def test_a_unit_in_a_header_is_applied_not_dropped(tmp_path, columns):
    # 订单金额（万元） 1.2 is 12,000 元 (it was read as 1.2 元); times headed (UTC) are UTC (read as Beijing time).
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "张三"]]})
    write_book(inbox / "orders.xlsx", {"订单": [["订单编号", "客户编号", "订单日期", "订单金额（万元）"],
                                               ["O1", "C1", date(2026, 10, 1), 1.2], ["O2", "C1", date(2026, 10, 2), "3.5"]]})
    write_book(inbox / "interactions.xlsx", {"互动记录": [["互动编号", "客户编号", "创建时间 (UTC)", "互动类型", "渠道"],
                                                       ["I1", "C1", datetime(2026, 11, 19, 1, 0), "投诉", "电话"]]})
    ds = read_inbox(inbox, columns)
    assert [o.amount for o in ds.orders] == [12000.0, 35000.0]
    assert ds.interactions[0].time == datetime(2026, 11, 19, 9, 0)


def test_a_second_header_row_of_english_names_is_part_of_the_header(tmp_path, columns):
    # A bilingual export: Customer ID under 客户编号. Read as a row, it was taken for the header of a
    # second table and every customer under it was dropped (0 customers, one reject per row).
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称", "手机号码", "备注"],
                                                    ["Customer ID", "Name", "Mobile", "Remarks"],
                                                    ["C1", "张三", "13812345678", None], ["C2", "李四", None, "老客户"]]})
    ds = read_inbox(inbox, columns)
    assert [(c.customer_id, c.name, c.phone) for c in ds.customers] == [("C1", "张三", "13812345678"), ("C2", "李四", None)]
    assert ds.rejects == []
    assert ds.customers[0].source.row == 3


def test_a_row_of_units_under_the_header_applies_them(tmp_path, columns):
    # The unit written on its own row under the header: （万元） under 订单金额 means what 订单金额（万元） means.
    # Read as a row it was a reject ("订单编号 is required but empty") and 1.2 was read as 1.2 元.
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "张三"]]})
    write_book(inbox / "orders.xlsx", {"订单": [["订单编号", "客户编号", "订单日期", "订单金额", "数量"],
                                               [None, None, None, "（万元）", "单位：件"],
                                               ["O1", "C1", date(2026, 10, 1), 1.2, 2]]})
    write_book(inbox / "interactions.xlsx", {"互动记录": [["互动编号", "客户编号", "创建时间", "互动类型", "渠道"],
                                                       ["", "", "UTC", "", ""],
                                                       ["I1", "C1", datetime(2026, 11, 19, 1, 0), "投诉", "电话"]]})
    ds = read_inbox(inbox, columns)
    assert [(o.order_id, o.amount, o.quantity, o.source.row) for o in ds.orders] == [("O1", 12000.0, 2.0, 3)]
    assert ds.interactions[0].time == datetime(2026, 11, 19, 9, 0)
    assert ds.rejects == []


def test_a_row_under_the_header_with_a_value_is_a_record(tmp_path, columns):
    # Text alone is not enough: a name without an id is still a record with its id missing.
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称", "金额单位"], [None, "张三", "万元"],
                                                    ["C1", "李四", None]]})
    ds = read_inbox(inbox, columns)
    assert codes(ds) == [("customers.xlsx", 2, "missing-value")]
    assert [c.customer_id for c in ds.customers] == ["C1"]


def test_amounts_in_a_foreign_currency_stop_the_run(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "张三"]]})
    write_book(inbox / "orders.xlsx", {"订单": [["订单编号", "客户编号", "订单日期", "Amount (USD)"], ["O1", "C1", date(2026, 10, 1), 1200]]})
    with pytest.raises(InputError) as exc:
        read_inbox(inbox, columns)
    [problem] = exc.value.problems
    assert (problem.code, str(problem.location)) == ("foreign-currency", "orders.xlsx, sheet 订单, column Amount (USD)")
    assert problem.message == "column Amount (USD) is in USD: the engine counts amounts in 元 (CNY)"


def test_a_unit_that_is_only_a_label_changes_nothing(tmp_path, columns):
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "张三"]]})
    write_book(inbox / "orders.xlsx", {"订单": [["订单编号", "客户编号", "订单日期", "订单金额(元)", "数量（件）"],
                                               ["O1", "C1", date(2026, 10, 1), 1200, 2]]})
    ds = read_inbox(inbox, columns)
    assert (ds.orders[0].amount, ds.orders[0].quantity) == (1200.0, 2.0)


def test_merged_cells_count_for_every_row_they_cover(tmp_path, columns):
    # Group-style reports merge 客户经理 over a group of customers and 客户编号 over an order's lines:
    # only the first row had the value (no owner for C002/C003; O2/O3 rejected for an empty id).
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "客户信息"
    for row in (["客户编号", "客户名称", "客户经理"], ["C001", "甲", "张伟"], ["C002", "乙", None], ["C003", "丙", None]):
        ws.append(row)
    ws.merge_cells("C2:C4")
    orders = wb.create_sheet("订单")
    for row in (["订单编号", "客户编号", "订单日期", "订单金额"], ["O1", "C001", "2026-10-01", 1000],
                ["O2", None, "2026-10-02", 2000], ["O3", None, "2026-10-03", 3000]):
        orders.append(row)
    orders.merge_cells("B2:B4")
    wb.save(inbox / "crm.xlsx")
    ds = read_inbox(inbox, columns)
    assert [(c.customer_id, c.owner) for c in ds.customers] == [("C001", "张伟"), ("C002", "张伟"), ("C003", "张伟")]
    assert [(o.order_id, o.customer_id) for o in ds.orders] == [("O1", "C001"), ("O2", "C001"), ("O3", "C001")]
    assert ds.rejects == []


def test_an_export_without_ids_saved_twice_is_read_once(tmp_path, columns):
    # No 编号 column: ids are "file!sheet!row", so the second copy's complaint counted again (two open
    # complaints, 风险等级 高, two escalations).
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C001", "甲"]]})
    rows = [["客户编号", "创建时间", "互动类型", "渠道", "状态"], ["C001", datetime(2026, 11, 18, 10, 0), "投诉", "电话", "处理中"],
            ["C001", datetime(2026, 11, 19, 11, 0), "咨询", "电话", "处理中"]]
    write_book(inbox / "服务记录-11月.xlsx", {"互动记录": rows})
    write_book(inbox / "服务记录-11月 (1).xlsx", {"互动记录": rows[:2]})  # a second copy of part of it
    ds = read_inbox(inbox, columns)
    assert [(i.type, i.source.file) for i in ds.interactions] == [("投诉", "服务记录-11月 (1).xlsx"), ("咨询", "服务记录-11月.xlsx")]
    [reject] = ds.rejects
    assert (reject.file, reject.row, reject.code) == ("服务记录-11月.xlsx", 2, "duplicate-row")
    assert reject.reason.startswith("the same interaction as 服务记录-11月 (1).xlsx, sheet 互动记录, row 2 (every column equal")


def test_ids_that_come_back_for_another_customer_are_warned_about(tmp_path, columns):
    # Two monthly exports whose 编号 numbers each export's rows: November's 1 and 2 replaced October's records
    # of other customers without a word beyond a reject each.
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C001", "甲"], ["C002", "乙"], ["C003", "丙"]]})
    header = ["编号", "客户编号", "创建时间", "互动类型", "渠道"]
    write_book(inbox / "互动-10月.xlsx", {"互动记录": [header, [1, "C001", datetime(2026, 10, 5, 9, 0), "投诉", "电话"],
                                                      [2, "C002", datetime(2026, 10, 6, 9, 0), "咨询", "电话"]]})
    write_book(inbox / "互动-11月.xlsx", {"互动记录": [header, [1, "C003", datetime(2026, 11, 5, 9, 0), "咨询", "电话"],
                                                      [2, "C002", datetime(2026, 11, 6, 9, 0), "咨询", "电话"]]})
    warnings: list[Problem] = []
    read_inbox(inbox, columns, warnings=warnings)
    [warning] = [w for w in warnings if w.code == "id-for-two-customers"]
    assert warning.message == ("1 条互动记录的编号又出现在另一位客户名下（如编号 1：互动-10月.xlsx 工作表 互动记录 第 2 行是 C001，"
                               "互动-11月.xlsx 工作表 互动记录 第 2 行是 C003）：编号列像是行号，不是记录自己的编号，前面的行丢了 / "
                               "1 interaction ids came back with another customer (e.g. interaction id 1: C001 at 互动-10月.xlsx, "
                               "sheet 互动记录, row 2, then C003 at 互动-11月.xlsx, sheet 互动记录, row 2): the id column looks like a "
                               "row number, not the record's id, and the earlier rows are lost")


def test_columns_with_values_but_no_header_are_named(tmp_path, columns):
    # A header over two rows: 联系方式 merged over three columns, 手机/邮箱/微信 below. Only the phone was read,
    # and e-mail and WeChat were lost without the warning an unknown header gets.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "客户信息"
    for row in (["客户编号", "客户名称", "联系方式", None, None], [None, None, "手机", "邮箱", "微信"],
                ["C001", "甲", "13800000001", "a@example.com", "wx_a"]):
        ws.append(row)
    ws.merge_cells("C1:E1")  # merged across: not copied into D1 and E1 (they would all read 联系方式)
    wb.save(inbox / "customers.xlsx")
    warnings: list[Problem] = []
    ds = read_inbox(inbox, columns, warnings=warnings)
    assert ds.customers[0].phone == "13800000001"
    [warning] = [w for w in warnings if w.code == "unnamed-column"]
    assert warning.message == "D, E 列有内容但没有表头，没有读取 / columns D, E have values but no header and were not read"


def test_a_second_table_below_the_first_is_not_read_with_its_columns(tmp_path, columns):
    # 联系人明细 under the customers, with columns 客户编号 | 手机号码 | 联系人: read with the first header's
    # mapping, C001's name became its phone number and its owner was lost.
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [
        ["客户编号", "客户名称", "客户经理"], ["C001", "甲公司", "张伟"], ["C002", "乙公司", "李娜"], [],
        ["联系人明细"], ["客户编号", "手机号码", "联系人"], ["C001", "13900000001", "王一"], ["C002", "13900000002", "王二"]]})
    ds = read_inbox(inbox, columns)
    assert [(c.customer_id, c.name, c.owner) for c in ds.customers] == [("C001", "甲公司", "张伟"), ("C002", "乙公司", "李娜")]
    second = [r for r in ds.rejects if r.code == "second-table"]
    assert [r.row for r in second] == [6, 7, 8]
    assert second[0].reason == "below another header at row 6 (a second table on the sheet, with other columns); not read"


@pytest.mark.parametrize("headers", [("日期", "时间"), ("创建日期", "创建时间")])
def test_a_date_and_a_time_in_two_columns_are_read_together(tmp_path, columns, headers):
    # 时间 (or 创建时间) was read alone: every interaction was rejected as "a time of day without a date".
    inbox = tmp_path / "inbox"
    date_header, time_header = headers
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C001", "甲"]]})
    write_book(inbox / "interactions.xlsx", {"互动记录": [
        ["互动编号", "客户编号", date_header, time_header, "互动类型", "渠道"],
        ["I1", "C001", date(2026, 11, 18), "10:00", "投诉", "电话"],
        ["I2", "C001", "2026/11/19", "9:30:15", "咨询", "电话"]]})
    ds = read_inbox(inbox, columns)
    assert [i.time for i in ds.interactions] == [datetime(2026, 11, 18, 10, 0), datetime(2026, 11, 19, 9, 30, 15)]
    assert ds.rejects == []


def test_a_1904_workbooks_plain_number_dates_count_from_1904(tmp_path, columns):
    # Old Mac Excel's date system: date cells were right, but a date kept as a plain number (or text) came out
    # four years and a day early (2026-10-01 read as 2022-09-30).
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb = xlsxwriter.Workbook(str(inbox / "crm.xlsx"), {"date_1904": True})
    ws = wb.add_worksheet("订单")
    ws.write_row(0, 0, ["订单编号", "客户编号", "订单日期", "订单金额"])
    ws.write_row(1, 0, ["O1", "C1", 44834, 100])  # 2026-10-01 in the 1904 system, a General number
    ws.write_row(2, 0, ["O2", "C1", "44834", 100])  # the same kept as text
    ws.write_datetime(3, 2, datetime(2026, 10, 1), wb.add_format({"num_format": "yyyy-mm-dd"}))
    ws.write_row(3, 0, ["O3", "C1"])
    ws.write(3, 3, 100)
    customers = wb.add_worksheet("客户信息")
    customers.write_row(0, 0, ["客户编号", "客户名称"])
    customers.write_row(1, 0, ["C1", "甲"])
    wb.close()
    ds = read_inbox(inbox, columns)
    assert [(o.order_id, o.date) for o in ds.orders] == [("O1", date(2026, 10, 1)), ("O2", date(2026, 10, 1)), ("O3", date(2026, 10, 1))]


def test_a_zone_in_a_header_converts_once_and_keeps_its_sign(tmp_path, columns):
    # A cell with its own offset under (UTC) was converted twice (18:00 for 10:00); (UTC-5) lost its minus
    # sign and was taken as a label (02:00 stayed 02:00).
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [["客户编号", "客户名称"], ["C1", "甲"]]})
    write_book(inbox / "interactions.xlsx", {"互动记录": [
        ["互动编号", "客户编号", "创建时间(UTC)", "首次响应时间（UTC-5）", "互动类型", "渠道"],
        ["I1", "C1", "2026-11-20T02:00:00Z", datetime(2026, 11, 19, 21, 0), "投诉", "电话"],
        ["I2", "C1", datetime(2026, 11, 20, 2, 0), datetime(2026, 11, 20, 2, 0), "投诉", "电话"]]})
    ds = read_inbox(inbox, columns)
    assert [(i.time, i.first_response_time) for i in ds.interactions] == [
        (datetime(2026, 11, 20, 10, 0), datetime(2026, 11, 20, 10, 0)), (datetime(2026, 11, 20, 10, 0), datetime(2026, 11, 20, 15, 0))]


def test_a_repeated_header_with_a_blank_cell_is_still_the_same_table(tmp_path, columns):
    # Two pages pasted together, the second page's header missing one cell: not a second table (every row
    # below it was thrown away as one).
    inbox = tmp_path / "inbox"
    write_book(inbox / "customers.xlsx", {"客户信息": [
        ["客户编号", "客户名称", "客户经理"], ["C001", "甲公司", "张伟"], ["客户编号", "客户名称", None], ["C002", "乙公司", "李娜"]]})
    ds = read_inbox(inbox, columns)
    assert [c.customer_id for c in ds.customers] == ["C001", "C002"]
    assert [r.code for r in ds.rejects] == ["repeated-header"]


def test_every_reject_code_has_chinese_wording():
    """A reject code added to the readers or the coercion rules without wording in engine/reject_text.py
    would reach staff as 无法使用这一行 / 见“说明”列."""
    import re

    from engine.reject_text import _TEXT

    root = Path(__file__).resolve().parents[1]
    coerce_codes = set(re.findall(r'CoercionError\("([a-z-]+)"', (root / "engine" / "coerce.py").read_text(encoding="utf-8")))
    reader_codes = set(re.findall(r'Reject\([^"]*?"([a-z][a-z-]+)"', (root / "engine" / "readers.py").read_text(encoding="utf-8"), re.S))
    reader_codes |= set(re.findall(r'"(repeated-header)" if', (root / "engine" / "readers.py").read_text(encoding="utf-8")))
    assert {"bad-date", "bad-phone", "out-of-range"} <= coerce_codes
    assert {"missing-value", "duplicate-id", "unknown-customer", "second-table", "repeated-header"} <= reader_codes
    assert sorted((coerce_codes | reader_codes) - set(_TEXT)) == []


def test_a_missing_or_shapeless_columns_file_is_said_in_chinese_first(tmp_path):
    with pytest.raises(PolicyError) as exc:
        load_columns(tmp_path / "columns.yaml")
    [problem] = exc.value.problems
    assert problem.code == "missing-file"
    assert problem.message == f"{tmp_path / 'columns.yaml'}: 找不到这个文件 / file not found"
    assert problem.fix.startswith("把随本工具提供的 policies/columns.yaml 复制到策略文件夹")
    (tmp_path / "columns.yaml").write_text("- 客户编号\n- 客户名称\n", encoding="utf-8")
    with pytest.raises(PolicyError) as exc:
        load_columns(tmp_path / "columns.yaml", display="columns.yaml")
    [problem] = exc.value.problems
    assert str(problem.location).startswith("columns.yaml")
    assert problem.message == "top level: 文件里应有 tables: 一节，每张表一项 / expected a mapping with a 'tables' section"
