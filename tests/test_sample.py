"""The sample data generator: deterministic, realistic, messy in the documented ways, and readable."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook

from engine.columns import load_columns
from engine.readers import read_inbox
from engine.sample import CUSTOMER_HEADERS, INTERACTION_HEADERS, ORDER_HEADERS, write_sample

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 11, 20)
NAMES = ("customers.xlsx", "interactions.xlsx", "orders.xlsx")


@pytest.fixture(scope="module")
def columns():
    return load_columns(ROOT / "policies" / "columns.yaml")


@pytest.fixture(scope="module")
def messy(tmp_path_factory, columns):
    out = tmp_path_factory.mktemp("messy")
    paths = write_sample(out, 200, seed=11)
    return paths, read_inbox(out, columns)


def raw_rows(path: Path) -> list[list]:
    wb = CalamineWorkbook.from_path(str(path))
    try:
        return wb.get_sheet_by_name(wb.sheet_names[0]).to_python(skip_empty_area=False)
    finally:
        wb.close()


def test_byte_identical_for_the_same_arguments(tmp_path):
    a = write_sample(tmp_path / "a", 60, seed=5)
    b = write_sample(tmp_path / "b", 60, seed=5)
    assert [p.name for p in a] == list(NAMES)
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    c = write_sample(tmp_path / "c", 60, seed=6)
    assert all(pa.read_bytes() != pc.read_bytes() for pa, pc in zip(a, c))


def test_reads_back_with_exact_counts_and_the_planted_rejects(messy):
    _, ds = messy
    assert (len(ds.customers), len(ds.interactions), len(ds.orders)) == (200, 2000, 600)
    assert sorted(r.code for r in ds.rejects) == sorted(
        ["missing-value", "duplicate-id", "bad-date", "unknown-customer", "bad-value", "summary-row"])
    by_code = {r.code: r for r in ds.rejects}
    assert by_code["summary-row"].value == "合计" and by_code["summary-row"].file == "orders.xlsx"
    assert by_code["bad-value"].column == "Quantity"
    assert by_code["missing-value"].column == "客户编号"
    assert by_code["bad-date"].value == "2025-13-45 10:00"


def test_clean_sample_has_no_rejects_and_header_on_row_1(tmp_path, columns):
    write_sample(tmp_path, 50, seed=2, messy=False, interactions_per_customer=4, orders_per_customer=2.5)
    ds = read_inbox(tmp_path, columns)
    assert ds.rejects == []
    assert (len(ds.customers), len(ds.interactions), len(ds.orders)) == (50, 200, 125)
    assert min(c.source.row for c in ds.customers) == 2
    rows = raw_rows(tmp_path / "customers.xlsx")
    assert rows[0] == CUSTOMER_HEADERS
    # Nothing messy: phones are text, dates are real date cells, amounts are numbers.
    assert all(isinstance(r[3], str) for r in rows[1:] if r[3] != "")
    assert all(isinstance(r[3], float) for r in raw_rows(tmp_path / "orders.xlsx")[1:])


def test_layout_sheets_and_headers(messy):
    paths, _ = messy
    sheets = [CalamineWorkbook.from_path(str(p)).sheet_names for p in paths]
    assert sheets == [["客户信息"], ["互动记录"], ["订单"]]
    cust = raw_rows(paths[0])
    assert cust[0][0] == "客户信息导出 2026-11-20" and cust[1] == [""] * len(cust[1])
    assert cust[2] == CUSTOMER_HEADERS
    assert raw_rows(paths[1])[0] == INTERACTION_HEADERS
    orders = raw_rows(paths[2])
    assert orders[0] == ORDER_HEADERS and orders[-1][0] == "合计"


def test_messy_cells_are_there(tmp_path):
    # Enough customers that every kind of mess (3% of cells, several styles each) shows up.
    paths = write_sample(tmp_path, 1000, seed=3, interactions_per_customer=1, orders_per_customer=1)
    cust = raw_rows(paths[0])[3:]
    phones = [r[3] for r in cust]
    assert any(isinstance(p, float) for p in phones)  # phone stored as a number
    assert any(isinstance(p, str) and (" " in p.strip() or "-" in p or "E10" in p or p.startswith("+86")) for p in phones)
    birthdays = [r[7] for r in cust]
    assert any(isinstance(b, date) for b in birthdays) and any(isinstance(b, str) and b for b in birthdays)
    assert any(isinstance(r[4], str) and r[4].strip() in ("—", "无", "N/A", "-", "") and r[4] != "" for r in cust)
    orders = raw_rows(paths[2])[1:-1]
    assert any(isinstance(r[3], str) and ("¥" in r[3] or "￥" in r[3] or "元" in r[3] or "RMB" in r[3]) for r in orders)
    inter = raw_rows(paths[1])[1:]
    assert any(isinstance(r[1], str) and "Ｃ" in r[1] for r in inter)  # full-width customer id
    assert any(isinstance(r[4], str) and r[4].isascii() for r in inter)  # English interaction type
    assert any(isinstance(r[2], str) for r in inter) and any(isinstance(r[2], float) for r in inter)


def test_realistic_content(messy):
    _, ds = messy
    customers = {c.customer_id: c for c in ds.customers}
    phone = re.compile(r"^(\+86)?1[3-9]\d{9}$")
    assert all(phone.match(c.phone) for c in ds.customers if c.phone)
    assert all(len(c.name) >= 2 for c in ds.customers)
    lunar = sum(c.birthday_is_lunar for c in ds.customers) / sum(c.birthday is not None for c in ds.customers)
    assert 0.05 < lunar < 0.3
    owners = Counter(c.owner for c in ds.customers)
    assert 6 <= len([o for o in owners if o]) <= 8 and 0 < owners[None] < 30
    consent = sum(c.marketing_consent is True for c in ds.customers) / len(ds.customers)
    assert 0.55 < consent < 0.85
    assert {c.lifecycle_stage for c in ds.customers} == {"潜在", "意向", "签约", "流失"}
    assert {c.preferred_channel for c in ds.customers} >= {"短信", "邮件", "微信"}
    assert any(c.opt_out for c in ds.customers) or len(ds.customers) < 100

    start = datetime(2024, 11, 20)
    assert all(start <= i.time < datetime(2026, 11, 20) for i in ds.interactions)
    assert {i.type for i in ds.interactions} == {"咨询", "投诉", "建议", "回访", "拜访", "关怀", "购买"}
    assert {i.channel for i in ds.interactions} == {"电话", "邮件", "微信", "在线客服", "上门拜访", "官网留言"}
    complaints = [i for i in ds.interactions if i.type == "投诉"]
    assert all(i.category in ("产品质量", "服务态度", "物流", "价格", "竞争对手") for i in complaints)
    resolved = [i for i in complaints if i.resolved_time is not None]
    assert resolved and all(i.time < i.first_response_time < i.resolved_time for i in resolved)
    recent_open = [i for i in complaints if i.resolved_time is None and i.time > datetime(2026, 11, 15)]
    assert len(recent_open) >= 3 and {i.status for i in recent_open} <= {"待处理", "处理中", "待客户回复"}
    assert all(1 <= i.satisfaction <= 5 for i in ds.interactions if i.satisfaction is not None)

    buyers = {o.customer_id for o in ds.orders}
    assert all(c.customer_id not in buyers for c in ds.customers if c.lifecycle_stage == "潜在")
    assert all(o.amount > 0 and AS_OF - timedelta(days=731) <= o.date < AS_OF for o in ds.orders)
    per_customer = defaultdict(list)
    for o in ds.orders:
        per_customer[o.customer_id].append(o.date)
    last_year = lambda ds_: sum(AS_OF - timedelta(days=730) <= d < AS_OF - timedelta(days=365) for d in ds_)
    recent = lambda ds_: sum(d >= AS_OF - timedelta(days=120) for d in ds_)
    fading = [c for c, ds_ in per_customer.items() if last_year(ds_) >= 3 and recent(ds_) == 0]
    growing = [c for c, ds_ in per_customer.items() if recent(ds_) >= 2 and last_year(ds_) <= 1]
    assert fading and growing
    assert customers[fading[0]].lifecycle_stage in ("签约", "流失")


def test_fractional_rates_and_arguments(tmp_path, columns):
    write_sample(tmp_path, 7, seed=1, interactions_per_customer=2.5, orders_per_customer=0.5,
                 as_of=date(2025, 6, 30))
    ds = read_inbox(tmp_path, columns)
    assert (len(ds.customers), len(ds.interactions), len(ds.orders)) == (7, 18, 4)  # round(17.5), round(3.5)
    assert all(i.time < datetime(2025, 6, 30) for i in ds.interactions)
    assert raw_rows(tmp_path / "customers.xlsx")[0][0] == "客户信息导出 2025-06-30"
    with pytest.raises(ValueError):
        write_sample(tmp_path, 0, seed=1)
