"""What a review of the day's changes broke or left open, each on real files: rules that replace each other
(neither task was issued), a few new leads stopping a whole run, an SMS customer whose cell held a
landline and a mobile, customer ids that start like a total line (Total Energies, 合计科技), and a notes
column right of a decision table (allowed by the docs, refused by validate)."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import openpyxl
import xlsxwriter

from engine.coerce import to_phone
from engine.columns import load_columns
from engine.readers import read_inbox
from engine.validate import format_problem, validate_policies

ROOT = Path(__file__).resolve().parent.parent


def lines(policies: Path) -> list[str]:
    return [format_problem(p) for p in validate_policies(policies) if p.code != "calendar-year-ahead"]


def book(path: Path, sheet: str, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet(sheet)
    fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            if isinstance(v, (date, datetime)):
                ws.write_datetime(r, c, v, fmt)
            elif v is not None:
                ws.write(r, c, v)
    wb.close()


def test_rules_that_replace_each_other_are_an_error(policy_copy: Path):
    # CARE-REVISIT-DUE replacing the apology call that replaces it: each held the other back as
    # "dedupe" and the owner got neither task (23 apology calls lost on the sample).
    text = (policy_copy / "care" / "follow_up.yaml").read_text(encoding="utf-8")
    start = text.index("  - id: CARE-REVISIT-DUE\n")
    task = text.index("    task:\n", start) + len("    task:\n")
    (policy_copy / "care" / "follow_up.yaml").write_text(text[:task] + "      replaces: [CH-WB-APOLOGY-OWNER]\n" + text[task:],
                                                         encoding="utf-8")
    [line] = lines(policy_copy)
    assert "[replaces-cycle]" in line and line.startswith("churn/win_back.yaml:")
    assert "CARE-REVISIT-DUE → CH-WB-APOLOGY-OWNER → CARE-REVISIT-DUE" in line or \
        "CH-WB-APOLOGY-OWNER → CARE-REVISIT-DUE → CH-WB-APOLOGY-OWNER" in line


def test_a_few_new_leads_do_not_stop_the_run(tmp_path: Path):
    # 20 customers with their orders, and 10 interactions of one new lead not yet in the customers
    # export: 100% of the interactions' (one) customer id is unknown, which stopped the whole run.
    inbox = tmp_path / "inbox"
    book(inbox / "customers.xlsx", "客户信息", [["客户编号", "客户名称"], *[[f"C{n:03d}", f"客户{n}"] for n in range(1, 21)]])
    book(inbox / "orders.xlsx", "订单", [["订单编号", "客户编号", "下单日期", "订单金额"],
                                       *[[f"O{n}", f"C{n:03d}", datetime(2026, 3, 1), 100] for n in range(1, 21)]])
    book(inbox / "interactions.xlsx", "互动记录", [["互动编号", "客户编号", "创建时间", "互动类型", "渠道"],
                                               *[[f"I{n}", "C999", datetime(2026, 11, 1, 9), "咨询", "电话"] for n in range(10)]])
    warnings: list = []
    ds = read_inbox(inbox, load_columns(ROOT / "policies" / "columns.yaml"), warnings=warnings)
    assert len(ds.customers) == 20 and len(ds.orders) == 20 and ds.interactions == []
    assert [r.code for r in ds.rejects] == ["unknown-customer"] * 10
    assert [w.code for w in warnings] == ["many-unknown-customers"]  # said, not stopped


def test_a_cell_with_a_landline_and_a_mobile_gives_the_mobile():
    assert to_phone("0755-88881234/13812345678") == "13812345678"
    assert to_phone("13812345678/0755-88881234") == "13812345678"
    assert to_phone("0755-88881234；010-12345678") == "075588881234"  # no mobile: the first


def test_ids_that_start_like_a_total_line_are_customers(tmp_path: Path):
    inbox = tmp_path / "inbox"
    book(inbox / "customers.xlsx", "客户信息", [
        ["客户编号", "客户名称", "积分"],
        ["Total Energies", "道达尔", 10], ["Sum Holdings", "萨姆控股", 20], ["合计科技", "合计科技有限公司", 30],
        ["C001", "甲公司", 40],
        ["本页合计", None, 100], ["合计：4条", None, 100], ["Total: 4", None, 100]])
    ds = read_inbox(inbox, load_columns(ROOT / "policies" / "columns.yaml"), warnings=[])
    assert sorted(c.customer_id for c in ds.customers) == ["C001", "Sum Holdings", "Total Energies", "合计科技"]
    assert [(r.row, r.code) for r in ds.rejects] == [(6, "summary-row"), (7, "summary-row"), (8, "summary-row")]


def test_a_notes_column_right_of_a_decision_table_is_allowed(policy_copy: Path):
    # docs/policies.md: notes go in a column right of the table with nothing in row 1; 备注 in row 2 made
    # it a table-kind-missing error (and stopped every run).
    path = policy_copy / "tables" / "value_tier.xlsx"
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    ws["H2"], ws["H3"] = "备注", "2026 年 11 月调整过门槛"
    wb.save(path)
    assert lines(policy_copy) == []
    ws["H2"] = "frequency_365d"  # a feature's name there: a column whose kind was forgotten
    wb.save(path)
    [line] = lines(policy_copy)
    assert line.startswith("tables/value_tier.xlsx!价值分层!H1: 错误 error: H1 是空的") and "[table-kind-missing]" in line
