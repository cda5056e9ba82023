"""Each task sheet's second page, 仍待处理: the tasks this run's rules called for again but held back
because an earlier run issued them (dedupe, or min-gap of the task's own rule). Without it a task
given yesterday and still applying today vanished from its owner's sheet. Listed for today's owner
(the customer's owner may have changed), with the earlier task's due date, as-of date, run and owner."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, customer, edit, run_cli, write_inbox
from engine.cli import main

# A low-value customer (revisit every 90 days) who bought in March: by September the churn-risk
# revisit CH-WB-REVISIT (once a month, at least 30 days apart) is due, and stays due.
ORDERS = [["O1", "C1", "2026-03-01", 800, "耗材", 1]]
KEY = "CH-WB-REVISIT|C1|2026-09"


def pages(sheet: Path) -> dict[str, list[dict]]:
    """Each page of a task workbook as rows by header."""
    wb = openpyxl.load_workbook(sheet)
    out = {}
    for ws in wb.worksheets:
        header, *body = ws.iter_rows(values_only=True)
        out[ws.title] = [dict(zip(header, r)) for r in body]
    return out


def test_a_task_given_yesterday_is_still_open_today(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    # "=1+2" as a name: the page escapes formulas as the first one does.
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C1", 签约日期="2025-01-10", 客户名称="=1+2")], orders=ORDERS)
    outbox = tmp_path / "outbox"
    day1 = run_cli(inbox, outbox, "2026-09-10")
    first = pages(day1 / "tasks" / "张伟.xlsx")
    assert list(first) == ["张伟", "仍待处理"] and first["仍待处理"] == []
    [issued] = first["张伟"]
    assert issued["去重键"] == KEY and issued["客户名称"] == "'=1+2"

    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(outbox),
                                       "--as-of", "2026-09-11"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "任务 0（0 人），仍待处理 1（" in result.output
    (day2,) = [p for p in outbox.iterdir() if p.name.startswith("2026-09-11_")]
    second = pages(day2 / "tasks" / "张伟.xlsx")
    assert second["张伟"] == []  # not issued again
    [still] = second["仍待处理"]
    assert still == {
        "原截止时间": issued["截止时间"], "优先级": "中", "客户编号": "C1", "客户名称": "'=1+2", "联系人": None, "电话": "13800000000",
        "邮箱": None, "微信": None, "偏好渠道": "短信", "任务": issued["任务"], "原因": issued["原因"], "建议话术": issued["建议话术"],
        "规则编号": "CH-WB-REVISIT", "阶段": "流失挽回", "分配方式": "客户经理", "负责人": "张伟", "去重键": KEY,
        "上次派发": datetime(2026, 9, 10), "派发运行": day1.name, "原负责人": "张伟", "未重派原因": "已发出过或重复",
    }
    counts = json.loads((day2 / "manifest.json").read_text(encoding="utf-8"))["counts"]
    assert (counts["tasks"], counts["open_tasks"], counts["open_tasks_by_assignee"]) == (0, 1, {"张伟": 1})

    # A new month, fewer than 30 days on: held back by min-gap, still the same open task of 10 September.
    october = pages(run_cli(inbox, outbox, "2026-10-01") / "tasks" / "张伟.xlsx")
    assert october["张伟"] == []
    [(key, since, run, why)] = [(r["去重键"], r["上次派发"], r["派发运行"], r["未重派原因"]) for r in october["仍待处理"]]
    assert (key, since, run, why) == ("CH-WB-REVISIT|C1|2026-10", datetime(2026, 9, 10), day1.name, "间隔不足")


def test_an_owner_change_moves_the_open_task_to_the_new_owner(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    outbox = tmp_path / "outbox"
    day1 = run_cli(write_inbox(tmp_path / "before", customers=[customer("C1", 签约日期="2025-01-10")], orders=ORDERS),
                   outbox, "2026-09-10")
    assert [p.name for p in (day1 / "tasks").iterdir()] == ["张伟.xlsx"]
    day2 = run_cli(write_inbox(tmp_path / "after", customers=[customer("C1", 签约日期="2025-01-10", 客户经理="李娜")], orders=ORDERS),
                   outbox, "2026-09-11")
    assert [p.name for p in (day2 / "tasks").iterdir()] == ["李娜.xlsx"]  # 张伟 has nothing left to do
    sheet = pages(day2 / "tasks" / "李娜.xlsx")
    assert sheet["李娜"] == []
    assert [(r["去重键"], r["负责人"], r["原负责人"], r["上次派发"]) for r in sheet["仍待处理"]] == [
        (KEY, "李娜", "张伟", datetime(2026, 9, 10))]


def test_the_open_page_is_the_same_again_and_from_two_processes(tmp_path: Path, monkeypatch):
    """Run again with --force, or with the writer helper (the open tasks travel to it): the same bytes."""
    customers = [customer(f"C{i}", 签约日期="2025-01-10") for i in (1, 2)]
    inbox = write_inbox(tmp_path / "inbox", customers=customers,
                        orders=[[f"O{i}", f"C{i}", "2026-03-01", 800, "耗材", 1] for i in (1, 2)])
    sheets = []
    for processes in ("1", "2"):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        outbox = tmp_path / f"outbox-{processes}"
        run_cli(inbox, outbox, "2026-09-10")
        sheets.append(run_cli(inbox, outbox, "2026-09-11") / "tasks" / "张伟.xlsx")
    assert [r["去重键"] for r in pages(sheets[0])["仍待处理"]] == [KEY, "CH-WB-REVISIT|C2|2026-09"]
    before = sheets[0].read_bytes()
    assert before == sheets[1].read_bytes()
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                       "--outbox", str(tmp_path / "outbox-1"), "--as-of", "2026-09-11", "--force"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sheets[0].read_bytes() == before


# A churned customer: CH-CHURNED-FOLLOW-UP (once a quarter) reads only that the customer is 流失, not
# whether anyone called: without the contact check it stayed on the 仍待处理 page for months.
CHURNED = customer("C1", 签约日期="2025-01-10", 客户阶段="流失")
CHURN_KEY = "CH-CHURNED-FOLLOW-UP|C1|2026-Q4"


def follow_up(when: str, kind: str = "回访", iid: str = "I1") -> list:
    """An interaction row (INTERACTION_HEADERS): a 回访 logged by the owner unless ``kind`` says otherwise."""
    return [iid, "C1", when, "电话", kind, None, None, "已解决", None, "张伟", None, "跟踪回访"]


def run_at(inbox: Path, outbox: Path, as_of: str, policies: Path = ROOT / "policies") -> Path:
    """`crm-engine run --as-of <date>T<time>`; the run folder it wrote (folders are named by the date only)."""
    before = set(outbox.iterdir()) if outbox.exists() else set()
    result = CliRunner().invoke(main, ["run", "--policies", str(policies), "--inbox", str(inbox), "--outbox", str(outbox),
                                       "--as-of", as_of], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in set(outbox.iterdir()) - before if p.is_dir()]
    return folder


def open_keys(folder: Path) -> list[str]:
    """The 去重键 of every 仍待处理 row of a run folder, over all task workbooks."""
    return sorted(r["去重键"] for sheet in sorted((folder / "tasks").glob("*.xlsx")) for r in pages(sheet)["仍待处理"])


def test_a_follow_up_logged_after_the_task_closes_it_on_the_open_page(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    outbox = tmp_path / "outbox"
    day1 = run_at(write_inbox(tmp_path / "day1", customers=[CHURNED]), outbox, "2026-11-20T09:00")
    assert [r["去重键"] for r in pages(day1 / "tasks" / "张伟.xlsx")["张伟"]] == [CHURN_KEY]
    # Day 2, nothing logged: still open.
    assert open_keys(run_at(write_inbox(tmp_path / "day2", customers=[CHURNED]), outbox, "2026-11-21T09:00")) == [CHURN_KEY]
    # Day 3: a 回访 logged on day 1 before the task was issued (08:30 < 09:00) does not close it ...
    before = run_at(write_inbox(tmp_path / "day3a", customers=[CHURNED], interactions=[follow_up("2026-11-20 08:30")]),
                     outbox, "2026-11-23T09:00")
    assert open_keys(before) == [CHURN_KEY]
    # ... one logged after it (day 1, 15:00) does: the work was done.
    day3 = run_at(write_inbox(tmp_path / "day3b", customers=[CHURNED],
                              interactions=[follow_up("2026-11-20 08:30"), follow_up("2026-11-20 15:00", iid="I2")]),
                  outbox, "2026-11-23T10:00")
    assert open_keys(day3) == []
    counts = json.loads((day3 / "manifest.json").read_text(encoding="utf-8"))["counts"]
    assert (counts["tasks"], counts["open_tasks"]) == (0, 0)


def test_an_inbound_complaint_does_not_close_an_open_task(tmp_path: Path, monkeypatch):
    """Only the contact kinds of guards.yaml (回访, 拜访) are staff doing the work: a complaint the customer
    phones in is no follow-up, and an SLA escalation of a ticket still open stays open (even after a 回访:
    a call does not resolve the ticket)."""
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    signed = CHURNED
    # Both deadlines long past on day 1: one escalation (keyed by the resolution deadline) that stays the same work.
    ticket = ["T1", "C1", "2026-11-10 10:00", "电话", "投诉", None, None, "待处理", None, "王芳", "产品质量", "设备故障"]
    outbox = tmp_path / "outbox"
    day1 = run_at(write_inbox(tmp_path / "day1", customers=[signed], interactions=[ticket]), outbox, "2026-11-20T09:00")
    issued = sorted(r["去重键"] for sheet in (day1 / "tasks").glob("*.xlsx") for r in pages(sheet)[sheet.stem])
    escalations = [k for k in issued if k.startswith("sla-") and k.endswith("|escalation")]
    assert escalations, issued
    churn = [CHURN_KEY]  # the churned customer's quarterly follow-up
    assert CHURN_KEY in issued
    complaint = follow_up("2026-11-21 10:00", kind="投诉", iid="I2")
    complaint[7] = "已解决"
    held = open_keys(run_at(write_inbox(tmp_path / "day2", customers=[signed], interactions=[ticket, complaint]),
                             outbox, "2026-11-23T09:00"))
    assert set(escalations) <= set(held) and set(churn) <= set(held)
    # A 回访 after day 1 closes the churn work, not the escalation of the ticket still open.
    called = open_keys(run_at(write_inbox(tmp_path / "day3", customers=[signed], interactions=[ticket, complaint,
                                                                                                 follow_up("2026-11-23 11:00", iid="I3")]),
                               outbox, "2026-11-24T09:00"))
    assert set(escalations) <= set(called) and not set(churn) & set(called)


def test_the_contact_kinds_are_a_setting(tmp_path: Path, policy_copy: Path, monkeypatch):
    """still_open.contact_types in guards.yaml: [] lists every task as before; a mistake names its line."""
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    guards = policy_copy / "guards.yaml"
    edit(guards, "contact_types: [回访, 拜访]", "contact_types: []")
    outbox = tmp_path / "outbox"
    run_at(write_inbox(tmp_path / "day1", customers=[CHURNED]), outbox, "2026-11-20T09:00", policies=policy_copy)
    day2 = run_at(write_inbox(tmp_path / "day2", customers=[CHURNED], interactions=[follow_up("2026-11-20 15:00")]),
                   outbox, "2026-11-21T09:00", policies=policy_copy)
    assert open_keys(day2) == [CHURN_KEY]

    edit(guards, "contact_types: []", "contact_types: [回访, 拜仿]")
    line = next(n for n, text in enumerate(guards.read_text(encoding="utf-8").splitlines(), 1) if "拜仿" in text)
    result = CliRunner().invoke(main, ["validate", "--policies", str(policy_copy)], catch_exceptions=False)
    assert result.exit_code != 0
    assert f"guards.yaml:{line}:" in result.output
    assert "'拜仿' in still_open.contact_types is not an interaction type" in result.output
    assert "不是互动类型" in result.output and "one of (the Chinese names in columns.yaml): 咨询, 投诉, 建议, 回访, 拜访" in result.output


def test_explain_of_a_task_held_back_after_an_owner_change_names_the_open_task(tmp_path: Path, monkeypatch):
    """Not only "任务 → 李娜 … [被拦截：去重]": the open task is 张伟's of 10 September (its due time), now on
    李娜's 仍待处理 page."""
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    outbox = tmp_path / "outbox"
    day1 = run_cli(write_inbox(tmp_path / "before", customers=[customer("C1", 签约日期="2025-01-10")], orders=ORDERS),
                   outbox, "2026-09-10")
    [issued] = pages(day1 / "tasks" / "张伟.xlsx")["张伟"]
    day2 = run_cli(write_inbox(tmp_path / "after", customers=[customer("C1", 签约日期="2025-01-10", 客户经理="李娜")], orders=ORDERS),
                   outbox, "2026-09-11")
    shown = CliRunner().invoke(main, ["explain", "C1", "--run", str(day2)])
    assert shown.exit_code == 0, shown.output
    [line] = [line for line in shown.output.splitlines() if "CH-WB-REVISIT" in line and "任务 → 李娜" in line]
    assert line.endswith(f"[被拦截：去重（已发出或重复）] [仍待处理：2026-09-10 运行 {day1.name} 派给 张伟 的任务（{KEY}，截止 "
                         f"{issued['截止时间']:%Y-%m-%d %H:%M}）仍然有效，本次不重派，列在 李娜 的任务表的“仍待处理”页]"), line

    # Held back by min-gap of its own rule (a new month, fewer than 30 days on): the same open task.
    october = run_cli(write_inbox(tmp_path / "october", customers=[customer("C1", 签约日期="2025-01-10", 客户经理="李娜")],
                                  orders=ORDERS), outbox, "2026-10-01")
    shown = CliRunner().invoke(main, ["explain", "C1", "--run", str(october)])
    [line] = [line for line in shown.output.splitlines() if "CH-WB-REVISIT" in line and "任务 → 李娜" in line]
    assert f"[仍待处理：2026-09-10 运行 {day1.name} 派给 张伟 的任务（CH-WB-REVISIT，截止 " in line, line


def test_withdrawing_a_run_names_a_later_run_whose_min_gap_hold_relied_on_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C1", 签约日期="2025-01-10")], orders=ORDERS)
    outbox = tmp_path / "outbox"
    day1 = run_cli(inbox, outbox, "2026-09-10")
    october = run_cli(inbox, outbox, "2026-10-01")  # held back by min-gap: 间隔不足：2026-09-10 已派 CH-WB-REVISIT
    result = CliRunner().invoke(main, ["ledger", "--outbox", str(outbox), "--policies", str(ROOT / "policies"),
                                       "--withdraw", day1.name, "--reason", "导出读错", "--yes"])
    assert result.exit_code == 0, result.output
    assert f"  注意：之后的运行 {october.name} 已因它发出的项拦下了任务或消息（去重、间隔）" in result.output
    shown = CliRunner().invoke(main, ["explain", "C1", "--run", str(october)])
    assert f"! 已撤回 withdrawn：下面拦截依据的运行 {day1.name} 已于 " in shown.output
