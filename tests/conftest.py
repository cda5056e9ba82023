"""Shared test helpers: write small, real Excel exports the way a CRM would."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import openpyxl
import pytest
from hypothesis import settings

# Property tests (Hypothesis) draw new examples on every run, so a developer's `make test` keeps
# looking for disagreements and prints any it finds. CI (.ci/run sets CI=1) uses a fixed set of
# examples: a landing must not fail on a newly drawn one.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_POLICIES = ROOT / "policies"
SHIPPED_TEMPLATES = ROOT / "templates"

CUSTOMER_HEADERS = ["客户编号", "客户名称", "联系人", "手机号码", "邮箱", "微信号", "生日", "农历生日", "公司规模",
                    "客户经理", "客户阶段", "销售阶段", "需求类型", "签约日期", "营销许可", "退订", "偏好渠道"]
INTERACTION_HEADERS = ["互动编号", "客户编号", "创建时间", "渠道", "互动类型", "首次响应时间", "解决时间", "状态", "满意度",
                       "处理人", "问题分类", "内容"]
ORDER_HEADERS = ["Order ID", "Customer ID", "Order Date", "Amount", "Product", "Quantity"]


def write_sheet(path: Path, sheet: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(list(headers))
    for row in rows:
        ws.append(list(row))
    # openpyxl would store text starting with "=" as a formula; an export holds it as plain text.
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def customer(cid: str, **fields: Any) -> list[Any]:
    """A customer row; unspecified fields are blank (owner 张伟, consent yes, SMS preferred by default)."""
    defaults = {"客户名称": f"客户{cid}", "手机号码": "13800000000", "客户经理": "张伟", "营销许可": "是", "退订": "否",
                "偏好渠道": "短信"}
    defaults.update({k: v for k, v in fields.items()})
    return [cid if h == "客户编号" else defaults.get(h) for h in CUSTOMER_HEADERS]


def write_inbox(folder: Path, customers: list[list[Any]], interactions: list[list[Any]] = (), orders: list[list[Any]] = ()) -> Path:
    write_sheet(folder / "customers.xlsx", "客户信息", CUSTOMER_HEADERS, customers)
    write_sheet(folder / "interactions.xlsx", "互动记录", INTERACTION_HEADERS, list(interactions))
    write_sheet(folder / "orders.xlsx", "订单", ORDER_HEADERS, list(orders))
    return folder



def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in a policy file with ``new``, as a user editing it would."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")

@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    """A copy of the shipped policies (and templates beside them) that a test may change."""
    shutil.copytree(SHIPPED_POLICIES, tmp_path / "policies")
    shutil.copytree(SHIPPED_TEMPLATES, tmp_path / "templates")
    return tmp_path / "policies"


def english(text: str | None) -> str:
    """The English half of a bilingual "中文 / English" message or fix, after checking that the
    Chinese half is there (validate's readers are Chinese operations staff)."""
    import re

    assert text is not None
    zh, sep, en = text.partition(" / ")
    assert sep and re.search(r"[\u4e00-\u9fff]", zh), f"not bilingual (中文 / English): {text!r}"
    return en


def run_cli(inbox: Path, outbox: Path, as_of: str, policies: Path = ROOT / "policies") -> Path:
    """`crm-engine run` in this process; the run folder it wrote for ``as_of`` (the outbox may hold others)."""
    from click.testing import CliRunner

    from engine.cli import main

    result = CliRunner().invoke(main, ["run", "--policies", str(policies), "--inbox", str(inbox), "--outbox", str(outbox),
                                       "--as-of", as_of], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in outbox.iterdir() if p.is_dir() and p.name.startswith(as_of + "_")]
    return folder
