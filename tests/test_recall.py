"""Recalling messages issued ahead: a birthday greeting issued on 11-20 for the birthday on 11-23 must
not go out when the customer opts out, withdraws consent or loses the address before that day. Real
runs of the CLI on real exports, one outbox and its contact ledger."""
from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, customer, write_inbox
from engine.cli import main
from engine.ledger import Ledger

GREETING = "CARE-BIRTHDAY-GREETING"
KEY_C1 = f"{GREETING}|C1|2026|2026-11-23"


def export(tmp_path: Path, name: str, c1: dict | None = None, c2: dict | None = None, with_c1: bool = True) -> Path:
    """An export with C1 and C2, both signed, both with a birthday on 11-23 (a greeting is issued from
    11-20, for 11-23 10:00); ``c1``/``c2`` change their cells."""
    rows = []
    if with_c1:
        rows.append(customer("C1", **{"签约日期": "2025-01-10", "生日": "1990-11-23", **(c1 or {})}))
    rows.append(customer("C2", **{"签约日期": "2025-01-10", "生日": "1988-11-23", "手机号码": "13900000000", **(c2 or {})}))
    return write_inbox(tmp_path / name, customers=rows)


def run(inbox: Path, outbox: Path, as_of: str):
    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                       "--outbox", str(outbox), "--as-of", as_of], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_id,) = re.findall(r"运行完成 run ([\w-]+)", result.output)
    return result, outbox / run_id


def recalls(folder: Path) -> list[dict]:
    path = folder / "messages" / "recalls.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def recalled_sheet(folder: Path) -> list[tuple]:
    sheet = openpyxl.load_workbook(folder / "guards.xlsx")["已撤回 recalled"]
    return [tuple(row) for row in sheet.iter_rows(values_only=True)]


def greetings(folder: Path) -> list[str]:
    return [json.loads(line)["key"] for p in (folder / "messages").rglob("messages.jsonl")
            for line in p.read_text(encoding="utf-8").splitlines() if json.loads(line)["rule_id"] == GREETING]


def test_a_greeting_issued_ahead_is_recalled_once_the_customer_opts_out(tmp_path: Path):
    outbox = tmp_path / "out"
    _, first = run(export(tmp_path, "in1"), outbox, "2026-11-20")
    assert sorted(greetings(first)) == [KEY_C1, f"{GREETING}|C2|2026|2026-11-23"]

    # C1 opts out (退订) on 11-21; C2 still consents. The run of 11-21 recalls C1's greeting only.
    result, second = run(export(tmp_path, "in2", c1={"退订": "是"}), outbox, "2026-11-21")
    assert recalls(second) == [{
        "key": KEY_C1, "customer_id": "C1", "channel": "sms", "template": "birthday", "category": "marketing",
        "rule_id": GREETING, "send_at": "2026-11-23T10:00:00", "issued_by": first.name, "guard": "opt-out",
        "reason": "客户已退订（opt-out），不发送营销消息"}]
    assert recalled_sheet(second) == [
        ("客户编号", "规则编号", "渠道", "模板", "原定发送时间", "保护规则", "原因", "发出的运行", "幂等键"),
        ("C1", GREETING, "sms", "birthday", datetime(2026, 11, 23, 10, 0), "退订",
         "客户已退订（opt-out），不发送营销消息", first.name, KEY_C1)]
    assert ("  撤回 1 条此前已排期的消息（退订 1）：见 messages/recalls.jsonl 和 guards.xlsx（已撤回） / "
            "recalled 1 message issued ahead by earlier runs") in result.output.splitlines()
    assert "13800000000" not in result.output and "客户C1" not in result.output  # no personal data on the console
    manifest = json.loads((second / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["guards"]["recalled"] == 1
    assert manifest["counts"]["guards"]["recalled_by_guard"] == {"opt-out": 1}
    assert "messages/recalls.jsonl" in {f["path"] for f in manifest["outputs"]}

    # The ledger knows: a third run does not recall it again, and the ledger shows who recalled it.
    result, third = run(export(tmp_path, "in3", c1={"退订": "是"}), outbox, "2026-11-22")
    assert recalls(third) == [] and recalled_sheet(third)[1:] == [] and "撤回" not in result.output
    with Ledger(outbox / "ledger.sqlite") as ledger:
        [entry] = ledger.entries(customer_id="C1", rule_id=GREETING)
    assert entry.recalled_by == second.name and entry.run_id == first.name
    shown = CliRunner().invoke(main, ["ledger", "--ledger", str(outbox / "ledger.sqlite"), "--customer", "C1"])
    assert shown.exit_code == 0 and second.name in shown.output and "已撤回发送的运行" in shown.output


def test_consent_withdrawn_and_address_lost_are_recalled_too_a_missing_customer_is_not(tmp_path: Path):
    outbox = tmp_path / "out"
    _, first = run(export(tmp_path, "in1"), outbox, "2026-11-20")
    _, second = run(export(tmp_path, "in2", c1={"营销许可": "否"}, c2={"手机号码": None}), outbox, "2026-11-21T08:30")
    assert [(r["customer_id"], r["guard"], r["reason"]) for r in recalls(second)] == [
        ("C1", "consent", "客户未同意接收营销消息"),
        ("C2", "no-contact", "客户没有手机号，原定的短信消息无法送达"),
    ]
    # A customer missing from today's export (a partial export) is not recalled: nothing is known of them.
    outbox2 = tmp_path / "out2"
    run(export(tmp_path, "in1"), outbox2, "2026-11-20")
    _, partial = run(export(tmp_path, "in4", c2={"退订": "是"}, with_c1=False), outbox2, "2026-11-21")
    assert [r["customer_id"] for r in recalls(partial)] == ["C2"]


def test_a_message_already_due_is_not_recalled_and_a_withdrawn_recall_counts_for_nothing(tmp_path: Path):
    outbox = tmp_path / "out"
    run(export(tmp_path, "in1"), outbox, "2026-11-20")
    # On the birthday after its send time (10:00) the greeting has gone: nothing to recall.
    _, late = run(export(tmp_path, "in2", c1={"退订": "是"}), outbox, "2026-11-23T11:00")
    assert recalls(late) == []
    # Before 10:00 that day it is still pending.
    _, early = run(export(tmp_path, "in3", c1={"退订": "是"}), outbox, "2026-11-23T09:00")
    assert [r["key"] for r in recalls(early)] == [KEY_C1]
    # The recalling run withdrawn (its files were not acted on): the greeting is pending again.
    withdrawn = CliRunner().invoke(main, ["ledger", "--ledger", str(outbox / "ledger.sqlite"), "--outbox", str(outbox),
                                          "--withdraw", early.name, "--reason", "测试", "--yes"])
    assert withdrawn.exit_code == 0, withdrawn.output
    assert "它撤回的 1 条此前已排期的消息（messages/recalls.jsonl）也不再算撤回：之后的运行会重新核对它们。" in withdrawn.output
    _, again = run(export(tmp_path, "in4", c1={"退订": "是"}), outbox, "2026-11-23T09:30")
    assert [r["key"] for r in recalls(again)] == [KEY_C1]


def test_a_recalled_message_no_longer_counts_for_the_caps_but_keeps_its_key(tmp_path: Path):
    """Recalled: not sent, so the frequency caps do not count it (they count what reaches the customer).
    Its key stays used: the same greeting is not issued again for this birthday even if the customer
    consents again (docs/guards.md)."""
    outbox = tmp_path / "out"
    run(export(tmp_path, "in1"), outbox, "2026-11-20")
    run(export(tmp_path, "in2", c1={"营销许可": "否"}), outbox, "2026-11-21")
    with Ledger(outbox / "ledger.sqlite") as ledger:  # greetings sent from 11-22 on: C2's only
        assert ledger.count_messages("C1", "marketing", datetime(2026, 11, 22)) == 0
        assert ledger.count_messages("C2", "marketing", datetime(2026, 11, 22)) == 1
    _, third = run(export(tmp_path, "in3"), outbox, "2026-11-22")  # C1 consents again
    assert greetings(third) == []
    log = [json.loads(line) for line in (third / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    [c1] = [d for d in log if d["customer_id"] == "C1" and d["rule_id"] == GREETING]
    assert c1["suppressed_by"] == "dedupe"


def test_verify_reproduces_a_run_that_recalled(tmp_path: Path):
    """Same inputs, policies and ledger history: byte-identical files, the recall list included."""
    outbox = tmp_path / "out"
    run(export(tmp_path, "in1"), outbox, "2026-11-20")
    _, second = run(export(tmp_path, "in2", c1={"退订": "是"}), outbox, "2026-11-21")
    run(export(tmp_path, "in3", c1={"退订": "是"}), outbox, "2026-11-22")
    before = (second / "messages" / "recalls.jsonl").read_bytes()
    verified = CliRunner().invoke(main, ["verify", str(second), "--ledger", str(outbox / "ledger.sqlite")])
    assert verified.exit_code == 0, verified.output
    forced = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(tmp_path / "in2"),
                                       "--outbox", str(outbox), "--as-of", "2026-11-21", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (second / "messages" / "recalls.jsonl").read_bytes() == before
    conn = sqlite3.connect(outbox / "ledger.sqlite")
    assert conn.execute("SELECT key, issued_by, run_id, guard FROM recalls").fetchall() == [
        (KEY_C1, [p for p in outbox.iterdir() if p.name.startswith("2026-11-20_")][0].name, second.name, "opt-out")]


def test_explain_of_the_run_shows_the_recall(tmp_path: Path):
    outbox = tmp_path / "out"
    _, first = run(export(tmp_path, "in1"), outbox, "2026-11-20")
    _, second = run(export(tmp_path, "in2", c1={"退订": "是"}), outbox, "2026-11-21")
    shown = CliRunner().invoke(main, ["explain", "C1", "--run", str(second)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    at = lines.index("撤回此前已排期的消息 recalled（1 条，不再发送）：")
    assert lines[at + 1] == (f"  {GREETING}（sms，模板 birthday，原定 2026-11-23 10:00，运行 {first.name} 发出）："
                             f"客户已退订（opt-out），不发送营销消息（{KEY_C1}）")
    other = CliRunner().invoke(main, ["explain", "C2", "--run", str(second)])
    assert other.exit_code == 0 and "撤回此前已排期的消息" not in other.output


def test_verify_of_a_run_whose_message_a_later_run_recalled_is_identical(tmp_path: Path):
    """The auditor's case: 11-20 issued a greeting ahead, 11-23 (before its send time) recalled it. The
    later recall does not change what 11-20 issued: both runs verify identical. What 11-23 recalled is
    part of its own ledger rows: a recall row gone from the ledger is named."""
    outbox, ledger = tmp_path / "out", tmp_path / "out" / "ledger.sqlite"
    _, first = run(export(tmp_path, "in1"), outbox, "2026-11-20")
    _, second = run(export(tmp_path, "in2", c1={"退订": "是"}), outbox, "2026-11-23T09:00")
    assert [r["key"] for r in recalls(second)] == [KEY_C1]
    for folder in (first, second):
        verified = CliRunner().invoke(main, ["verify", str(folder)])
        assert verified.exit_code == 0, verified.output
        assert "一致 identical" in verified.output and "ledger row differs" not in verified.output
    with sqlite3.connect(ledger) as conn:
        conn.execute("DELETE FROM recalls")
    verified = CliRunner().invoke(main, ["verify", str(second)])
    assert verified.exit_code == 1
    assert f"  联系台账缺少 ledger lacks: recall {KEY_C1}（以后的运行不再算它已撤回）" in verified.output.splitlines()


def withdraw(outbox: Path, run_id: str, reason: str):
    result = CliRunner().invoke(main, ["ledger", "--ledger", str(outbox / "ledger.sqlite"), "--outbox", str(outbox),
                                       "--withdraw", run_id, "--reason", reason, "--yes"])
    assert result.exit_code == 0, result.output
    return result


def explain_lines(customer_id: str, folder: Path) -> list[str]:
    shown = CliRunner().invoke(main, ["explain", customer_id, "--run", str(folder)])
    assert shown.exit_code == 0, shown.output
    return shown.output.splitlines()


def test_withdrawn_runs_are_named_by_explain_and_withdraw_names_the_runs_that_relied_on_them(tmp_path: Path):
    """11-20 issued both greetings; 11-21 recalled C1's (opted out) and held C2's back by dedupe (issued by
    11-20). Withdrawing 11-20 names 11-21 (it relied on 11-20's rows); explain then says so for C2 in
    11-21, and explain of a withdrawn run says it was withdrawn, when and why."""
    outbox = tmp_path / "out"
    _, first = run(export(tmp_path, "in1"), outbox, "2026-11-20")
    _, second = run(export(tmp_path, "in2", c1={"退订": "是"}), outbox, "2026-11-21")
    _, third = run(export(tmp_path, "in3", c1={"退订": "是"}), outbox, "2026-11-22")  # relied on nothing of 11-21

    result = withdraw(outbox, first.name, "客户经理列读错")
    assert (f"  注意：之后的运行 {second.name}、{third.name} 已因它发出的项拦下了任务或消息（去重、间隔）" in result.output)
    assert "13800000000" not in result.output and "客户C" not in result.output  # ids only

    [held] = [line for line in explain_lines("C2", second) if line.startswith("! 已撤回")]
    assert held.startswith(f"! 已撤回 withdrawn：下面拦截依据的运行 {first.name} 已于 ")
    assert "撤回（原因：客户经理列读错）：它的任务和消息作废，撤回之后的运行会重新派发 / " in held
    [own] = [line for line in explain_lines("C1", first) if line.startswith("! 已撤回")]
    assert own.startswith("! 已撤回 withdrawn：本次运行已于 ") and "（原因：客户经理列读错）" in own

    result = withdraw(outbox, second.name, "退订列读错")
    assert "注意：之后的运行" not in result.output  # 11-22 held nothing back because of 11-21
    lines = explain_lines("C1", second)
    [own] = [line for line in lines if line.startswith("! 已撤回 withdrawn：本次运行")]
    assert "（原因：退订列读错）" in own and "它撤回的此前已排期的消息也不再算撤回" in own
    assert "撤回此前已排期的消息 recalled（1 条，不再发送）：" in lines
