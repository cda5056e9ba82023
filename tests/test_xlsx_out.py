from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
import zipfile

import openpyxl
import pytest

from engine.xlsx_out import (
    MAX_WIDTH,
    Column,
    Sheet,
    display_width,
    escape_text,
    sanitize_sheet_name,
    sheet_from_dicts,
    write_workbook,
)

COLUMNS = [
    Column("客户编号"),
    Column("客户名称"),
    Column("金额", kind="money"),
    Column("件数", kind="int"),
    Column("跟进日期", kind="date"),
    Column("创建时间", kind="datetime"),
    Column("占比", kind="percent"),
    Column("得分", kind="number"),
]


def sample_rows() -> list[list]:
    return [
        ["C001", "星河贸易有限公司", 1200.5, 3, date(2026, 11, 20), datetime(2026, 11, 20, 9, 30), 0.125, 4.5],
        ["C002", "Acme", Decimal("99.99"), 10, date(2026, 1, 2), datetime(2026, 1, 2, 18, 5), 1, -2],
        ["C003", None, None, None, None, None, None, None],
    ]


def write_and_load(tmp_path: Path, sheets: list[Sheet], name: str = "out.xlsx", **kwargs):
    path = tmp_path / name
    write_workbook(path, sheets, **kwargs)
    return openpyxl.load_workbook(path)


def test_header_style_freeze_and_autofilter(tmp_path):
    wb = write_and_load(tmp_path, [Sheet("任务", COLUMNS, sample_rows())])
    ws = wb["任务"]
    assert [c.value for c in ws[1]] == [c.header for c in COLUMNS]
    header = ws["A1"]
    assert header.font.b is True
    assert header.fill.fill_type == "solid"
    assert header.border.bottom.style == "thin"
    assert header.alignment.wrap_text is True
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:H4"


def test_empty_sheet_still_has_header_and_filter(tmp_path):
    wb = write_and_load(tmp_path, [Sheet("空", [Column("a"), Column("b")], [])])
    ws = wb["空"]
    assert [c.value for c in ws[1]] == ["a", "b"]
    assert ws.max_row == 1  # no data rows
    assert ws.auto_filter.ref == "A1:B2"  # the filter covers the header and one empty row
    assert ws.freeze_panes == "A2"


def test_cell_types_and_number_formats(tmp_path):
    ws = write_and_load(tmp_path, [Sheet("s", COLUMNS, sample_rows())])["s"]
    money, count, day, stamp, share, score = (ws.cell(row=2, column=c) for c in range(3, 9))
    assert money.value == 1200.5 and money.data_type == "n" and money.number_format == "0.00"
    assert count.value == 3 and count.number_format == "0"
    assert day.value == datetime(2026, 11, 20) and day.is_date and day.number_format == "yyyy-mm-dd"
    assert stamp.value == datetime(2026, 11, 20, 9, 30) and stamp.number_format == "yyyy-mm-dd hh:mm"
    assert share.value == 0.125 and share.number_format == "0.00%"
    assert score.value == 4.5 and score.number_format == "General"
    assert ws["C3"].value == pytest.approx(99.99)  # Decimal written as a number
    # None -> empty cell
    assert all(ws.cell(row=4, column=c).value is None for c in range(2, 9))


def test_non_numbers_in_number_columns_are_kept_as_text(tmp_path):
    cols = [Column("金额", kind="money"), Column("日期", kind="date")]
    ws = write_and_load(tmp_path, [Sheet("s", cols, [["n/a", "2026-13-01"], [True, "=1"]])])["s"]
    assert (ws["A2"].value, ws["A2"].data_type) == ("n/a", "s")
    assert (ws["B2"].value, ws["B2"].data_type) == ("2026-13-01", "s")
    assert ws["A3"].value == "是"
    assert ws["B3"].value == "'=1"


@pytest.mark.parametrize(
    "text, stored",
    [
        ("=1+2", "'=1+2"),
        ("=HYPERLINK(\"http://x\",\"点我\")", "'=HYPERLINK(\"http://x\",\"点我\")"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
        ("- 客户要求回电", "'- 客户要求回电"),
        # plain signed numbers / phone numbers stay readable and unchanged
        ("-5", "-5"),
        ("+86 138 0013 8000", "+86 138 0013 8000"),
        ("-1,200.50", "-1,200.50"),
        # not at the start: untouched
        ("a=1", "a=1"),
        ("张三", "张三"),
    ],
)
def test_formula_injection_escaping(tmp_path, text, stored):
    assert escape_text(text) == stored
    wb = write_and_load(tmp_path, [Sheet("s", [Column("备注")], [[text]])])
    cell = wb["s"]["A2"]
    assert cell.data_type == "s"
    assert cell.value == stored.replace("\r", "\n")  # CR is stored as Excel's line break


def test_control_characters_cleaned(tmp_path):
    rows = [["第一行\r\n第二行"], ["a\x01b\x7f"], ["tab\there"]]
    ws = write_and_load(tmp_path, [Sheet("s", [Column("备注")], rows)])["s"]
    assert [ws.cell(row=r, column=1).value for r in (2, 3, 4)] == ["第一行\n第二行", "ab", "tab\there"]


@pytest.mark.parametrize("text", ["\x01=HYPERLINK(\"http://evil.example\",\"点我\")", "\x02=1+2", "\x0b+cmd|' /C calc'!A0", "\x00@SUM(A1)"])
def test_a_control_character_does_not_hide_a_formula(tmp_path, text):
    # The control character is dropped before the check: dropped after it, "=…" was stored bare.
    ws = write_and_load(tmp_path, [Sheet("s", [Column(text)], [[text]])])["s"]
    assert ws["A1"].value.startswith("'") and ws["A2"].value.startswith("'")
    assert ws["A2"].value[1:] == text[1:]


def test_control_characters_in_sheet_names_are_replaced(tmp_path):
    wb = write_and_load(tmp_path, [Sheet("张\x01伟", [Column("x")], [[1]]), Sheet("a\x00b", [Column("x")], [[1]])])
    assert wb.sheetnames == ["张_伟", "a_b"]  # a raw \x01 in workbook.xml made the file unreadable


def test_no_cell_is_a_formula(tmp_path):
    evil = ["=1+2", "+1", "-1+A1", "@x", "=cmd|'/c calc'!A1"]
    cols = [Column(f"c{i}") for i in range(len(evil))] + [Column("=header")]
    wb = write_and_load(tmp_path, [Sheet("s", cols, [evil + ["=x"]] * 3)])
    ws = wb["s"]
    cells = [c for row in ws.iter_rows() for c in row]
    assert cells and all(c.data_type != "f" for c in cells)
    assert ws.cell(row=1, column=len(cols)).value == "'=header"
    # Also in the raw XML: no <f> element anywhere.
    import zipfile

    with zipfile.ZipFile(tmp_path / "out.xlsx") as z:
        assert b"<f>" not in z.read("xl/worksheets/sheet1.xml")


def test_widths_fit_chinese_text(tmp_path):
    cols = [Column("a"), Column("b"), Column("c", width=33), Column("d")]
    rows = [["星河贸易有限公司", "abcdefgh", "x", "长" * 200]]
    ws = write_and_load(tmp_path, [Sheet("s", cols, rows)])["s"]
    width = {k: ws.column_dimensions[k].width for k in "ABCD"}
    assert width["A"] > width["B"]  # 8 CJK chars are wider than 8 ASCII chars
    assert width["C"] == pytest.approx(33, abs=1)  # explicit width wins
    assert width["D"] <= MAX_WIDTH + 1  # capped
    assert display_width("星河贸易") == 8
    assert display_width("ＡＢ") == 4  # full-width forms
    assert display_width("ab\n长长长") == 6


def test_sheet_name_sanitising(tmp_path):
    taken: set[str] = set()
    assert sanitize_sheet_name("a[b]c:d*e?f/g\\h", taken) == "a_b_c_d_e_f_g_h"
    long_name = "客户" * 20
    first = sanitize_sheet_name(long_name, taken)
    second = sanitize_sheet_name(long_name, taken)
    assert len(first) == 31 and len(second) == 31 and first != second
    assert second.endswith("~2")
    assert sanitize_sheet_name("Tasks", taken) == "Tasks"
    assert sanitize_sheet_name("TASKS", taken) == "TASKS~2"
    assert sanitize_sheet_name("'quoted'", taken) == "quoted"
    assert sanitize_sheet_name("", taken) == "Sheet"
    assert sanitize_sheet_name("History", taken) == "History_"

    sheets = [Sheet(n, [Column("x")], [[1]]) for n in ["a/b", "a:b", "A?B", "x" * 40]]
    wb = write_and_load(tmp_path, sheets)
    assert wb.sheetnames == ["a_b", "a_b~2", "A_B~3", "x" * 31]


def test_byte_identical_output(tmp_path):
    def sheets():
        return [
            Sheet("任务", COLUMNS, sample_rows()),
            Sheet("other", [Column("x"), Column("y", kind="int")], ((f"r{i}", i) for i in range(50))),
        ]

    a, b = tmp_path / "a.xlsx", tmp_path / "sub" / "b.xlsx"
    b.parent.mkdir()
    write_workbook(a, sheets())
    write_workbook(b, sheets())
    assert a.read_bytes() == b.read_bytes()
    # No zip member carries the clock.
    with zipfile.ZipFile(a) as z:
        assert {info.date_time for info in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert b"2000-01-01T00:00:00Z" in z.read("docProps/core.xml")


def test_created_property(tmp_path):
    created = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
    wb = write_and_load(tmp_path, [Sheet("s", [Column("x")], [])], created=created)
    assert wb.properties.created == datetime(2026, 11, 20, 8, 0)
    assert wb.properties.modified == datetime(2026, 11, 20, 8, 0)


def test_title_property(tmp_path):
    wb = write_and_load(tmp_path, [Sheet("s", [Column("x")], [])], title="审计 <audit> & more")
    assert wb.properties.title == "审计 <audit> & more"


def test_duplicate_headers_rejected(tmp_path):
    path = tmp_path / "dup.xlsx"
    with pytest.raises(ValueError, match="same header"):
        write_workbook(path, [Sheet("s", [Column("a"), Column("a")], [])])
    assert not path.exists()


def test_sheet_from_dicts_and_generator_rows(tmp_path):
    records = ({"id": f"C{i:03d}", "名称": "客户", "amount": i * 1.5} for i in range(3))
    cols = [Column("编号", key="id"), Column("名称"), Column("金额", kind="money", key="amount"), Column("缺")]
    ws = write_and_load(tmp_path, [sheet_from_dicts("s", records, cols)])["s"]
    assert [[c.value for c in row] for row in ws.iter_rows(min_row=2)] == [
        ["C000", "客户", 0, None],
        ["C001", "客户", 1.5, None],
        ["C002", "客户", 3, None],
    ]


def test_row_length_mismatch_removes_partial_file(tmp_path):
    path = tmp_path / "bad.xlsx"
    with pytest.raises(ValueError, match="row 2"):
        write_workbook(path, [Sheet("s", [Column("a"), Column("b")], [[1, 2], [1]])])
    assert not path.exists()


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="kind"):
        Column("a", kind="currency")


def test_large_sheet_constant_memory(tmp_path):
    cols = [Column("编号"), Column("名称"), Column("金额", kind="money"), Column("日期", kind="date")]
    n = 20_000
    rows = ((f"C{i:06d}", f"客户{i}", i / 3, date(2026, 1, 1)) for i in range(n))
    path = tmp_path / "big.xlsx"
    write_workbook(path, [Sheet("big", cols, rows)])
    wb = openpyxl.load_workbook(path, read_only=True)
    ws = wb["big"]
    assert ws.max_row == n + 1
    wb.close()


def test_whole_numbers_are_integer_cells_and_floats_stay_floats(tmp_path):
    # rust_xlsxwriter writes every number as <v>1.0</v>: a count read back (openpyxl, pandas) was 1.0.
    columns = [Column("次数", kind="int"), Column("金额", kind="money"), Column("混合", kind="number"),
               Column("是否", kind="number")]
    rows = [[1, 1200.0, 3, True], [59, 99.5, 2.0, False], [-7, 10, 2.5, 0], [2 ** 60, None, None, None]]
    path = tmp_path / "ints.xlsx"
    write_workbook(path, [Sheet("s", columns, rows)])
    got = [[(v, type(v).__name__) for v in r] for r in openpyxl.load_workbook(path)["s"].iter_rows(min_row=2, values_only=True)]
    assert got == [
        [(1, "int"), (1200.0, "float"), (3, "int"), ("是", "str")],
        [(59, "int"), (99.5, "float"), (2.0, "float"), ("否", "str")],
        [(-7, "int"), (10, "int"), (2.5, "float"), (0, "int")],
        [(float(2 ** 60), "float"), (None, "NoneType"), (None, "NoneType"), (None, "NoneType")],  # beyond a double's whole numbers
    ]
    xml = zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml").decode()
    assert '<c r="A3" s="2"><v>59</v></c>' in xml or '<c r="A3"><v>59</v></c>' in xml
    assert "<v>1200.0</v>" in xml and "<v>2.0</v>" in xml


def test_a_sheet_past_the_limit_keeps_whole_numbers_as_the_writer_wrote_them(tmp_path, monkeypatch):
    # The XML rewrite is skipped for big sheets (customers.xlsx at 100,000 customers): its cost in time
    # and memory is the run's, the gain only how a program reads 1 (1.0); Excel shows 1 either way.
    import engine.xlsx_out as xlsx_out
    monkeypatch.setattr(xlsx_out, "INT_CELLS_MAX_ROWS", 2)
    columns = [Column("次数", kind="int")]
    write_workbook(tmp_path / "small.xlsx", [Sheet("s", columns, [[1], [2]])])
    write_workbook(tmp_path / "big.xlsx", [Sheet("s", columns, [[1], [2], [3]])])
    read = lambda name: [r[0] for r in openpyxl.load_workbook(tmp_path / name)["s"].iter_rows(min_row=2, values_only=True)]
    assert [type(v) for v in read("small.xlsx")] == [int, int]
    assert read("big.xlsx") == [1.0, 2.0, 3.0] and [type(v) for v in read("big.xlsx")] == [float] * 3


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None  # every member's CRC matches its data
        return {name: z.read(name) for name in z.namelist()}


def test_package_is_a_valid_zip_whatever_member_is_copied_or_rewritten(tmp_path):
    # Most members keep the bytes rust_xlsxwriter compressed; core.xml and the sheets with whole
    # numbers are rewritten. Both kinds must read back, in any zip reader.
    sheets = lambda: [Sheet("文本", [Column("x")], [[f"行{i}"] for i in range(2000)]),
                      Sheet("整数", [Column("n", kind="int")], [[i] for i in range(2000)])]
    path = tmp_path / "out.xlsx"
    write_workbook(path, sheets(), title="标题")
    members = _members(path)
    assert list(members)[:2] == ["[Content_Types].xml", "_rels/.rels"]
    assert b"<v>1999</v>" in members["xl/worksheets/sheet2.xml"]
    wb = openpyxl.load_workbook(path)
    assert [r[0] for r in wb["文本"].iter_rows(min_row=2, values_only=True)] == [f"行{i}" for i in range(2000)]
    assert [r[0] for r in wb["整数"].iter_rows(min_row=2, values_only=True)] == list(range(2000))
    assert wb.properties.title == "标题"
    again = tmp_path / "again.xlsx"
    write_workbook(again, sheets(), title="标题")
    assert again.read_bytes() == path.read_bytes()


def test_a_package_too_big_for_a_plain_zip_is_written_by_zipfile(tmp_path, monkeypatch):
    # Past 4 GiB a zip needs ZIP64 records, which zipfile writes: the same content comes out.
    import engine.xlsx_out as xlsx_out
    sheets = lambda: [Sheet("任务", COLUMNS, sample_rows())]
    write_workbook(tmp_path / "plain.xlsx", sheets())
    monkeypatch.setattr(xlsx_out, "_ZIP32_LIMIT", 1000)
    write_workbook(tmp_path / "zip64.xlsx", sheets())
    assert _members(tmp_path / "zip64.xlsx") == _members(tmp_path / "plain.xlsx")
    assert (tmp_path / "zip64.xlsx").read_bytes() != (tmp_path / "plain.xlsx").read_bytes()


def test_whole_numbers_past_column_z_are_integer_cells(tmp_path):
    # Column letters are matched whole: B's rewrite must not touch AB's floats, nor miss AB's ints.
    columns = [Column(f"c{i}", kind="number") for i in range(28)]
    rows = [[float(i) + 0.5 for i in range(28)] for _ in range(3)]
    for row in rows:
        row[1], row[27] = 5, 7  # B and AB: whole numbers
    rows[0][26] = 9  # AA: one whole number among floats
    path = tmp_path / "wide.xlsx"
    write_workbook(path, [Sheet("s", columns, rows)])
    got = list(openpyxl.load_workbook(path)["s"].iter_rows(min_row=2, values_only=True))
    assert [type(v) for v in got[0]] == [float, int] + [float] * 24 + [int, int]
    assert [type(v) for v in got[1]] == [float, int] + [float] * 25 + [int]
    assert got[0][26] == 9 and got[1][26] == 26.5 and got[2][27] == 7
