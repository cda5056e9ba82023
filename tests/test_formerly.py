"""A renamed or merged rule lists its old ids under ``formerly:``: what the contact ledger holds under
them is this rule's for dedupe, min_gap_days and the task sheets' 上次派发/第几次. A run whose ledger
shows recent items of a rule id the policies no longer have, and no rule lists, warns by name.
Real exports, real runs of the CLI on one outbox, a real contact ledger."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import customer, english, run_cli, write_inbox
from engine.cli import main

# A weekly call, at least 10 days apart; written by the tests under its old and new id.
CALL_RULES = """kind: care
id: vip_call
description: 签约客户电话问候
rules:
  - id: {rule_id}
{formerly}    when: lifecycle_stage == '签约'
    task:
      title: 电话问候
      assign_to: owner
      due: 1d
      priority: 中
      once_per: week
      min_gap_days: 10
"""


def write_call_rule(policies: Path, rule_id: str, formerly: str = "") -> None:
    (policies / "care" / "vip_call.yaml").write_text(
        CALL_RULES.format(rule_id=rule_id, formerly=f"    formerly: [{formerly}]\n" if formerly else ""), encoding="utf-8")


def decisions(folder: Path, rule_id: str) -> list[dict]:
    """The outputs the decision log records for ``rule_id``."""
    log = [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    return [o for d in log if d["rule_id"] == rule_id for o in d["outputs"]]


def pages(folder: Path) -> dict[str, list[dict]]:
    """张伟's task sheet: each page's rows as header → value."""
    book = openpyxl.load_workbook(folder / "tasks" / "张伟.xlsx")
    out = {}
    for ws in book.worksheets:
        header, *body = ws.iter_rows(values_only=True)
        out[ws.title] = [dict(zip(header, row)) for row in body]
    return out


def manifest_warnings(folder: Path, code: str) -> list[dict]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return [w for w in manifest["warnings"] if w["code"] == code]


def run_with_output(inbox: Path, outbox: Path, as_of: str, policies: Path) -> str:
    result = CliRunner().invoke(main, ["run", "--policies", str(policies), "--inbox", str(inbox), "--outbox", str(outbox),
                                       "--as-of", as_of], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


# -- a task rule renamed: dedupe, 仍待处理, min-gap, 上次派发/第几次 -----------------------------------------


def test_a_renamed_task_rule_counts_the_tasks_under_its_old_id(tmp_path: Path, policy_copy: Path, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    inbox = write_inbox(tmp_path / "inbox", [customer("C1", 签约日期="2025-06-01")])
    outbox = tmp_path / "out"
    write_call_rule(policy_copy, "CARE-VIP-CALL")
    first = run_cli(inbox, outbox, "2026-11-16", policy_copy)
    assert [(r["规则编号"], r["第几次"]) for r in pages(first)["张伟"] if "VIP" in r["规则编号"]] == [("CARE-VIP-CALL", 1)]

    write_call_rule(policy_copy, "CARE-VIP-PHONE-CALL", formerly="CARE-VIP-CALL")
    # The same week: held back as issued (dedupe); the 仍待处理 page finds the task under the old id.
    tuesday = run_cli(inbox, outbox, "2026-11-17", policy_copy)
    sheet = pages(tuesday)
    assert [r for r in sheet["张伟"] if "VIP" in r["规则编号"]] == []
    [still] = [r for r in sheet["仍待处理"] if "VIP" in r["规则编号"]]
    assert (still["去重键"], still["上次派发"], still["派发运行"]) == (
        "CARE-VIP-PHONE-CALL|C1|2026-W47", datetime(2026, 11, 16), first.name)
    [held] = [o["task"] for o in decisions(tuesday, "CARE-VIP-PHONE-CALL")]
    assert held["suppressed_by"] == "dedupe"

    # The next week, 7 days on: min_gap_days 10 counts the old id's task.
    monday = run_cli(inbox, outbox, "2026-11-23", policy_copy)
    [held] = [o["task"] for o in decisions(monday, "CARE-VIP-PHONE-CALL")]
    assert held["suppressed_by"] == "min-gap"
    guards = openpyxl.load_workbook(monday / "guards.xlsx")
    reasons = [str(v) for ws in guards.worksheets for row in ws.iter_rows(values_only=True) for v in row
               if isinstance(v, str) and v.startswith("间隔不足") and "CARE-VIP-PHONE-CALL|" in v]
    assert reasons == ["间隔不足：2026-11-16 已派 CARE-VIP-CALL（CARE-VIP-PHONE-CALL 以前的规则编号，formerly），间隔要求 10 天，"
                       "最早 2026-11-26 可再派（CARE-VIP-PHONE-CALL|C1|2026-W48）"]
    [still] = [r for r in pages(monday)["仍待处理"] if "VIP" in r["规则编号"]]
    assert (still["上次派发"], still["派发运行"]) == (datetime(2026, 11, 16), first.name)

    # 10 days on: issued, the second time, the first under the old id.
    thursday = run_cli(inbox, outbox, "2026-11-26", policy_copy)
    assert [(r["规则编号"], r["上次派发"], r["第几次"]) for r in pages(thursday)["张伟"] if "VIP" in r["规则编号"]] == [
        ("CARE-VIP-PHONE-CALL", datetime(2026, 11, 16), 2)]
    assert manifest_warnings(thursday, "former-rule-not-listed") == []


def test_a_renamed_task_rule_without_formerly_is_given_again_and_said(tmp_path: Path, policy_copy: Path):
    inbox = write_inbox(tmp_path / "inbox", [customer("C1", 签约日期="2025-06-01")])
    outbox = tmp_path / "out"
    write_call_rule(policy_copy, "CARE-VIP-CALL")
    run_cli(inbox, outbox, "2026-11-16", policy_copy)
    write_call_rule(policy_copy, "CARE-VIP-PHONE-CALL")
    tuesday = run_cli(inbox, outbox, "2026-11-17", policy_copy)
    assert [(r["规则编号"], r["第几次"]) for r in pages(tuesday)["张伟"] if "VIP" in r["规则编号"]] == [("CARE-VIP-PHONE-CALL", 1)]
    [warning] = manifest_warnings(tuesday, "former-rule-not-listed")
    assert "1 tasks from rule CARE-VIP-CALL" in english(warning["message"])
    assert english(warning["fix"]).startswith("add formerly: [CARE-VIP-CALL] to the rule that took over (perhaps CARE-VIP-PHONE-CALL?)")
