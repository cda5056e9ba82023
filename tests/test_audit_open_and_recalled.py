"""The auditors' files show what the guards and the ledger found beyond this run's decisions: tasks
still open from an earlier run (the 仍待处理 pages) and messages issued ahead that this run recalled.
A real two-day run of the CLI on real exports: day 1 issues a revisit task and birthday greetings
for 11-23; on day 2 the revisit is still open and C2, who opted out, has the greeting recalled."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from conftest import customer, run_cli, write_inbox

ORDERS = [["O1", "C1", "2026-03-01", 800, "耗材", 1]]  # a low-value customer: the monthly revisit is due
GREETING_C2 = "CARE-BIRTHDAY-GREETING|C2|2026|2026-11-23"


def export(folder: Path, c2: dict | None = None) -> Path:
    return write_inbox(folder, orders=ORDERS, customers=[
        customer("C1", 签约日期="2025-01-10", 生日="1990-11-23"),
        customer("C2", **{"签约日期": "2025-01-10", "生日": "1988-11-23", "手机号码": "13900000000", **(c2 or {})})])


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("two-days")
    first = run_cli(export(tmp / "in1"), tmp / "out", "2026-11-20")
    second = run_cli(export(tmp / "in2", c2={"退订": "是"}), tmp / "out", "2026-11-21")
    return first, second


class Report:
    """report.html's cards (label → number), chart bars (chart id → ["label：number"]) and notes."""

    def __init__(self, html: str):
        self.cards = {label: n for n, label in re.findall(r'<div class="n">([^<]*)</div><div class="l">([^<]*)</div>', html)}
        self.charts = {chart: re.findall(r"<title>([^<]*)</title>", svg)
                       for chart, svg in re.findall(r'<svg class="chart" id="chart-([\w-]+)"(.*?)</svg>', html, re.S)}
        self.notes = re.findall(r'<p class="note">([^<]*)</p>', html)


def test_report_shows_still_open_tasks_by_owner_and_recalls_by_guard(days):
    _, second = days
    report = Report((second / "report.html").read_text(encoding="utf-8"))
    assert (report.cards["任务"], report.cards["仍待处理的任务"], report.cards["消息"], report.cards["撤回的消息"]) == ("0", "2", "0", "1")
    assert report.charts["tasks-open"] == ["张伟：2"]
    assert report.charts["guards-recalled"] == ["退订：1"]  # named as guards.xlsx names the guard
    assert "仍待处理：以前的运行派过、今天仍然适用的任务，不再重派，列在各负责人任务表的“仍待处理”页。" in report.notes
    assert any(n.startswith("撤回：以前的运行提前排期、还没发出的消息") and "messages/recalls.jsonl" in n for n in report.notes)
    assert "13900000000" not in (second / "report.html").read_text(encoding="utf-8")


def test_report_of_a_first_day_shows_none(days):
    first, _ = days
    report = Report((first / "report.html").read_text(encoding="utf-8"))
    assert (report.cards["仍待处理的任务"], report.cards["撤回的消息"]) == ("0", "0")
    assert "tasks-open" not in report.charts and "guards-recalled" not in report.charts
    assert not [n for n in report.notes if n.startswith(("仍待处理：", "撤回："))]


def test_audit_workbook_lists_the_recalls_and_counts_the_open_tasks(days):
    first, second = days
    wb = openpyxl.load_workbook(second / "audit.xlsx", read_only=True)
    assert wb.sheetnames == ["运行清单", "文件", "规则汇总", "已撤回", "决策日志"]
    assert list(wb["已撤回"].iter_rows(values_only=True)) == [
        ("客户编号", "规则编号", "渠道", "模板", "原定发送时间", "保护规则", "原因", "发出的运行", "幂等键"),
        ("C2", "CARE-BIRTHDAY-GREETING", "sms", "birthday", datetime(2026, 11, 23, 10, 0), "退订",
         "客户已退订（opt-out），不发送营销消息", first.name, GREETING_C2)]
    # The same rows as guards.xlsx's 已撤回 page.
    guards = openpyxl.load_workbook(second / "guards.xlsx", read_only=True)["已撤回 recalled"]
    assert list(guards.iter_rows(values_only=True)) == list(wb["已撤回"].iter_rows(values_only=True))
    info = {key: value for _, key, value in wb["运行清单"].iter_rows(min_row=2, values_only=True)}
    assert (info["counts.open_tasks"], info["counts.open_tasks_by_assignee.张伟"]) == (2, 2)
    assert (info["counts.guards.recalled"], info["counts.guards.recalled_by_guard.opt-out"]) == (1, 1)
    # Day 1 recalled nothing: the sheet is there, with its header only.
    assert [r for r in openpyxl.load_workbook(first / "audit.xlsx", read_only=True)["已撤回"].iter_rows(values_only=True)] == [
        ("客户编号", "规则编号", "渠道", "模板", "原定发送时间", "保护规则", "原因", "发出的运行", "幂等键")]
    assert re.fullmatch(r"2026-11-20_[0-9a-f]{8}", first.name)
