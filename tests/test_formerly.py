"""A renamed or merged rule lists its old ids under ``formerly:``: what the contact ledger holds under
them is this rule's for dedupe, min_gap_days and the task sheets' 上次派发/第几次. A run whose ledger
shows recent items of a rule id the policies no longer have, no rule lists under formerly and no policy
lists under retired_rules stops before it evaluates or writes anything, naming each id.
Real exports, real runs of the CLI on one outbox, a real contact ledger."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, customer, edit, english, run_cli, write_inbox
from engine.cli import main
from engine.validate import validate_policies
from test_care_timing import member_inbox, messages

MEMBER = "care/member.yaml"
FORMERLY_LINE = "    formerly: [CARE-LOYALTY-MEMBER-DAY]\n"

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


# -- the shipped merge: CARE-LOYALTY-MEMBER-DAY into CARE-MEMBER-DAY ---------------------------------------


def old_member_day(policy_copy: Path) -> None:
    """The copy as it was before the merge, for the member-day reminder: the rule under its old id."""
    edit(policy_copy / MEMBER, FORMERLY_LINE, "")
    edit(policy_copy / MEMBER, "- id: CARE-MEMBER-DAY", "- id: CARE-LOYALTY-MEMBER-DAY")


def test_the_upgrade_sends_no_second_member_day_message(tmp_path: Path, policy_copy: Path):
    # 16 Nov under the old id; 17 Nov with the shipped policies (CARE-MEMBER-DAY formerly the old id).
    old_member_day(policy_copy)
    outbox = tmp_path / "out"
    first = run_cli(member_inbox(tmp_path / "in16", 1200), outbox, "2026-11-16", policy_copy)
    assert [(c, r) for c, r, _ in messages(first) if "MEMBER-DAY" in r] == [("M", "CARE-LOYALTY-MEMBER-DAY")]
    output = run_with_output(member_inbox(tmp_path / "in17", 1200), outbox, "2026-11-17", ROOT / "policies")
    (second,) = [p for p in outbox.iterdir() if p.name.startswith("2026-11-17_")]
    assert [r for _, r, _ in messages(second) if "MEMBER-DAY" in r] == []
    [held] = [o["message"] for o in decisions(second, "CARE-MEMBER-DAY")]
    assert (held["key"], held["suppressed_by"]) == ("CARE-MEMBER-DAY|M|2026-11", "dedupe")
    guards = openpyxl.load_workbook(second / "guards.xlsx")
    text = " ".join(str(v) for ws in guards.worksheets for row in ws.iter_rows(values_only=True) for v in row if v)
    assert "CARE-LOYALTY-MEMBER-DAY|M|2026-11" in text and "CARE-LOYALTY-MEMBER-DAY 是 CARE-MEMBER-DAY 以前的规则编号" in text
    assert "former-rule-not-listed" not in output and manifest_warnings(second, "former-rule-not-listed") == []


def outbox_state(outbox: Path) -> dict[str, bytes]:
    """Every file of the outbox, by path: what a stopped run must leave as it was."""
    return {p.relative_to(outbox).as_posix(): p.read_bytes() for p in sorted(outbox.rglob("*")) if p.is_file()}


def run_stopped(inbox: Path, outbox: Path, as_of: str, policies: Path) -> str:
    """`crm-engine run` that must stop: its output, after checking that the outbox is as it was."""
    before = outbox_state(outbox)
    result = CliRunner().invoke(main, ["run", "--policies", str(policies), "--inbox", str(inbox), "--outbox", str(outbox),
                                       "--as-of", as_of], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert outbox_state(outbox) == before  # no run folder, no ledger rows, nothing else
    return result.output


def test_without_formerly_the_run_stops_naming_each_old_id_and_the_rule_that_took_over(tmp_path: Path, policy_copy: Path):
    # 16 Nov: the member-day reminder under its old id and a weekly call. Then the reminder is renamed
    # without formerly and the call rule deleted: the 17th's run stops before anything goes out.
    old_member_day(policy_copy)
    write_call_rule(policy_copy, "CARE-VIP-CALL")
    outbox = tmp_path / "out"
    inbox = member_inbox(tmp_path / "in17", 1200)
    run_cli(member_inbox(tmp_path / "in16", 1200), outbox, "2026-11-16", policy_copy)
    edit(policy_copy / MEMBER, "- id: CARE-LOYALTY-MEMBER-DAY", "- id: CARE-MEMBER-DAY")  # renamed, no formerly
    (policy_copy / "care" / "vip_call.yaml").unlink()
    output = run_stopped(inbox, outbox, "2026-11-17", policy_copy)
    assert "发现 2 个问题 / 2 problem(s):" in output
    assert ("ledger.sqlite: 错误 error: 联系台账里最近 60 天有消息 1 条出自规则 CARE-LOYALTY-MEMBER-DAY" in output
            and "ledger.sqlite: 错误 error: 联系台账里最近 60 天有任务 1 项出自规则 CARE-VIP-CALL" in output), output
    assert ("the contact ledger has 1 message from rule CARE-LOYALTY-MEMBER-DAY in the last 60 days; no rule has that id "
            "now and neither formerly nor retired_rules lists it: if it was renamed or merged, the rule that took over "
            "would issue this period's items again, so the run did not start (nothing was written)") in output
    assert ("if renamed or merged, add formerly: [CARE-LOYALTY-MEMBER-DAY] to the rule that took over (perhaps "
            "CARE-MEMBER-DAY: it sends template member_day too); if retired on purpose, add retired_rules: "
            "[CARE-LOYALTY-MEMBER-DAY] beside rules: in the policy file it was in (kind: care)") in output
    assert "add retired_rules: [CARE-VIP-CALL] beside rules: in the policy file it was in (kind: care)" in output
    assert "[former-rule-not-listed]" in output

    # validate --outbox says the same before the run, as errors.
    result = CliRunner().invoke(main, ["validate", "--policies", str(policy_copy), "--outbox", str(outbox),
                                       "--as-of", "2026-11-17"])
    assert result.exit_code == 1, result.output
    assert [line.split("error: ")[1].split("，")[0] for line in result.output.splitlines() if "former-rule-not-listed" in line] == [
        "联系台账里最近 60 天有消息 1 条出自规则 CARE-LOYALTY-MEMBER-DAY", "联系台账里最近 60 天有任务 1 项出自规则 CARE-VIP-CALL"]

    # The two lines the error offers: formerly on the rule that took over, retired_rules for the one deleted.
    edit(policy_copy / MEMBER, "- id: CARE-MEMBER-DAY\n", "- id: CARE-MEMBER-DAY\n" + FORMERLY_LINE)
    edit(policy_copy / MEMBER, "hit_policy: collect\n", "hit_policy: collect\nretired_rules: [CARE-VIP-CALL]\n")
    result = CliRunner().invoke(main, ["validate", "--policies", str(policy_copy), "--outbox", str(outbox),
                                       "--as-of", "2026-11-17"])
    assert result.exit_code == 0 and "former-rule-not-listed" not in result.output, result.output
    second = run_cli(inbox, outbox, "2026-11-17", policy_copy)
    assert [r for _, r, _ in messages(second) if "MEMBER-DAY" in r] == []  # the month's reminder went out on the 16th
    assert manifest_warnings(second, "former-rule-not-listed") == []


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


def test_a_renamed_task_rule_without_formerly_stops_the_run(tmp_path: Path, policy_copy: Path):
    inbox = write_inbox(tmp_path / "inbox", [customer("C1", 签约日期="2025-06-01")])
    outbox = tmp_path / "out"
    write_call_rule(policy_copy, "CARE-VIP-CALL")
    run_cli(inbox, outbox, "2026-11-16", policy_copy)
    write_call_rule(policy_copy, "CARE-VIP-PHONE-CALL")
    output = run_stopped(inbox, outbox, "2026-11-17", policy_copy)
    assert "the contact ledger has 1 task from rule CARE-VIP-CALL in the last 60 days" in output
    assert "add formerly: [CARE-VIP-CALL] to the rule that took over (perhaps CARE-VIP-PHONE-CALL?)" in output
    # With the line the error offers, the run goes ahead and the week's call is not given again.
    write_call_rule(policy_copy, "CARE-VIP-PHONE-CALL", formerly="CARE-VIP-CALL")
    tuesday = run_cli(inbox, outbox, "2026-11-17", policy_copy)
    assert [r for r in pages(tuesday)["张伟"] if "VIP" in r["规则编号"]] == []


# -- validate: the mistakes -------------------------------------------------------------------------


def formerly_problems(policies: Path) -> list:
    return [p for p in validate_policies(policies) if p.code.startswith("formerly")]


def test_validate_rejects_an_old_id_that_is_still_a_rule(policy_copy: Path):
    edit(policy_copy / MEMBER, FORMERLY_LINE, "    formerly: [CARE-SURVEY, CARE-MEMBER-DAY]\n")
    survey, own = formerly_problems(policy_copy)
    assert (survey.code, str(survey.location), survey.severity) == ("formerly-in-use", f"{MEMBER}:18:16", "error")
    assert english(survey.message).startswith("formerly names 'CARE-SURVEY', still a rule id at care/follow_up.yaml:")
    assert english(survey.fix).startswith("if it was merged into CARE-MEMBER-DAY, delete the rule at care/follow_up.yaml:")
    assert (own.code, str(own.location)) == ("formerly-in-use", f"{MEMBER}:18:29")
    assert english(own.message) == "formerly names 'CARE-MEMBER-DAY', this rule's own id"


def test_validate_rejects_an_old_id_listed_by_two_rules(policy_copy: Path):
    write_call_rule(policy_copy, "CARE-VIP-PHONE-CALL", formerly="CARE-LOYALTY-MEMBER-DAY")
    [twice] = formerly_problems(policy_copy)
    assert twice.code == "formerly-twice" and str(twice.location) == "care/vip_call.yaml:6:16"
    assert english(twice.message) == (f"'CARE-LOYALTY-MEMBER-DAY' is already listed under formerly of rule CARE-MEMBER-DAY "
                                      f"(at {MEMBER}:18:16): an old id's ledger rows can count for one rule only")


def test_validate_rejects_a_formerly_that_is_no_list_of_ids(policy_copy: Path):
    edit(policy_copy / MEMBER, FORMERLY_LINE, "    formerly: {old: CARE-LOYALTY-MEMBER-DAY}\n")
    [bad] = [p for p in validate_policies(policy_copy) if p.code == "bad-value"]
    assert str(bad.location) == f"{MEMBER}:18:15"
    assert english(bad.message) == ("formerly must be a rule id or a list of rule ids, "
                                    "e.g. formerly: [CARE-LOYALTY-MEMBER-DAY]")


def test_a_renamed_family_rule_still_holds_back_the_revisit_it_replaces(tmp_path: Path, policy_copy: Path):
    """CH-WB-REVISIT replaces CARE-REVISIT-DUE: its churn revisit on 1 Dec holds back the periodic revisit
    for a revisit interval. Renamed on 8 Dec (formerly: [CH-WB-REVISIT]), it still does."""
    people = [customer("C3", 签约日期="2025-01-10", 客户阶段="签约", 需求类型="普通")]
    orders = [["O3", "C3", "2026-05-20", 800, "耗材", 1]]
    outbox = tmp_path / "out"
    day_1 = run_cli(write_inbox(tmp_path / "inbox-1", people, orders=orders), outbox, "2026-12-01")
    assert [o["task"].get("suppressed_by") for o in decisions(day_1, "CH-WB-REVISIT")] == [None]
    edit(policy_copy / "churn" / "win_back.yaml", "  - id: CH-WB-REVISIT\n",
         "  - id: CH-WB-CHURN-REVISIT\n    formerly: [CH-WB-REVISIT]\n")
    later = write_inbox(tmp_path / "inbox-8", people, orders=[*orders, ["O5", "C3", "2026-12-05", 800, "耗材", 1]])
    day_8 = run_cli(later, outbox, "2026-12-08", policy_copy)
    [held] = [o["task"] for o in decisions(day_8, "CARE-REVISIT-DUE")]
    assert held["suppressed_by"] == "min-gap"
    guards = openpyxl.load_workbook(day_8 / "guards.xlsx")
    assert [v for ws in guards.worksheets for row in ws.iter_rows(values_only=True) for v in row
            if isinstance(v, str) and v.startswith("间隔不足") and "CARE-REVISIT-DUE|C3" in v] == [
        "间隔不足：2026-12-01 已派 CH-WB-REVISIT，间隔要求 90 天（revisit_interval_days），最早 2027-03-01 可再派"
        "（CARE-REVISIT-DUE|C3|2026-12）"]


def test_validate_rejects_a_retired_id_that_is_still_a_rule_or_under_formerly(policy_copy: Path):
    edit(policy_copy / MEMBER, "hit_policy: collect\n",
         "hit_policy: collect\nretired_rules: [CARE-SURVEY, CARE-LOYALTY-MEMBER-DAY, CARE-GONE]\n")
    rule, former = [p for p in validate_policies(policy_copy) if p.code == "retired-in-use"]
    assert (str(rule.location), rule.severity) == (f"{MEMBER}:15:17", "error")
    assert english(rule.message).startswith("retired_rules names 'CARE-SURVEY', still a rule id at care/follow_up.yaml:")
    assert english(rule.fix).startswith("if the rule is still in use, take CARE-SURVEY out of retired_rules; if it is "
                                        "retired, delete the rule at care/follow_up.yaml:")
    assert str(former.location) == f"{MEMBER}:15:30"
    assert english(former.message) == ("retired_rules names 'CARE-LOYALTY-MEMBER-DAY', which rule CARE-MEMBER-DAY lists "
                                       f"under formerly (at {MEMBER}:19:16): its ledger rows are that rule's")


def test_validate_rejects_a_retired_rules_that_is_no_list_of_ids(policy_copy: Path):
    edit(policy_copy / MEMBER, "hit_policy: collect\n", "hit_policy: collect\nretired_rules: {id: CARE-VIP-CALL}\n")
    [bad] = [p for p in validate_policies(policy_copy) if p.code == "bad-value"]
    assert str(bad.location) == f"{MEMBER}:15:16"
    assert english(bad.message) == "retired_rules must be a rule id or a list of rule ids, e.g. retired_rules: [CARE-VIP-CALL]"
