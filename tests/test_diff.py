"""crm-engine diff: lowering VT-1's threshold from 100000 to 50000 in a copied value_tier.xlsx, against
a folder and against a git revision."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from engine.cli_tools import diff_command
from engine.diff import run_diff

from conftest import SHIPPED_POLICIES, SHIPPED_TEMPLATES, customer, write_inbox

AS_OF = datetime(2026, 11, 20, 15, 0)


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    return write_inbox(
        tmp_path_factory.mktemp("inbox"),
        customers=[customer("D1"), customer("D2"), customer("D3")],
        interactions=[["I1", "D1", "2026-11-20 09:00", "电话", "投诉", "2026-11-20 10:30", None, "处理中", None, "何欣", "物流", None]],
        orders=[["O1", "D1", "2026-09-21", 60000, "服务", 1],  # 中 today; 高 once VT-1 starts at 50000
                ["O2", "D2", "2026-09-21", 120000, "服务", 1],  # 高 either way
                ["O3", "D3", "2026-09-21", 5000, "服务", 1]],  # 低 either way
    )


def lower_vt1(policies: Path) -> None:
    path = policies / "tables" / "value_tier.xlsx"
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    assert (ws["A3"].value, ws["D3"].value) == ("VT-1", ">= 100000")
    ws["D3"] = ">= 50000"
    wb.save(path)


def check_threshold_diff(result) -> None:
    assert result.customers == 3
    assert dict(result.tag_pairs["value_tier"]) == {("中", "高"): 1}
    assert dict(result.tag_pairs["service_team"]) == {("专门客户服务小组", "专属客户服务团队"): 1}
    assert dict(result.tag_pairs["revisit_interval_days"]) == {(60, 30): 1}
    assert ("D1", "客户D1", "value_tier", "中", "高") in result.customer_changes
    assert {c[0] for c in result.customer_changes} == {"D1"}
    # the revisit task is still due, but its title names the new team and interval
    assert [(t["rule_id"], t["title"]) for t in result.tasks_added] == [("CARE-REVISIT-DUE", "定期回访（专属客户服务团队，每30天）")]
    assert [(t["rule_id"], t["title"]) for t in result.tasks_removed] == [("CARE-REVISIT-DUE", "定期回访（专门客户服务小组，每60天）")]
    assert result.messages_added == [] and result.messages_removed == []
    # D1's complaint now falls under the 高 target: 2h instead of 4h to respond
    [sla] = result.sla_changes
    assert (sla["customer_id"], sla["interaction_id"], sla["base_rule"], sla["new_rule"]) == ("D1", "I1", "sla-complaint", "sla-complaint-high")
    assert sla["first_response_target"] == ("4h", "2h")
    assert sla["first_response_status"] == ("met", "met")
    counts = {rule_id: (b, n) for _stage, rule_id, b, n in result.rule_counts}
    assert counts == {"VT-1": (1, 2), "VT-3": (1, 0), "SP-2": (1, 2), "SP-4": (1, 0),
                      "sla-complaint": (1, 0), "sla-complaint-high": (0, 1)}


def test_changed_threshold_between_folders(inbox: Path, policy_copy: Path):
    lower_vt1(policy_copy)
    check_threshold_diff(run_diff(str(SHIPPED_POLICIES), policy_copy, inbox, AS_OF.date(), AS_OF))


def test_cli_prints_summary_and_writes_workbook(inbox: Path, policy_copy: Path, tmp_path: Path):
    lower_vt1(policy_copy)
    out = tmp_path / "diff.xlsx"
    result = CliRunner().invoke(diff_command, ["--base", str(SHIPPED_POLICIES), "--new", str(policy_copy), "--inbox", str(inbox),
                                               "--as-of", "2026-11-20T15:00", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"影响分析 diff：{SHIPPED_POLICIES.as_posix()} → {policy_copy.resolve().as_posix()}（as-of 2026-11-20T15:00:00，客户 3 位）"
    assert "  价值等级（value_tier）：1 位客户变化" in lines and "    中 → 高   1" in lines
    # yes/no results read as in the decision tables (是/否), not false → true
    at = lines.index("  需配专属客户经理（dedicated_owner_required）：1 位客户变化")
    assert lines[at + 1] == "    否 → 是   1"
    assert "任务 tasks：新增 +1，减少 −1" in lines and "消息 messages：新增 +0，减少 −0" in lines
    assert "服务时限 SLA：1 条互动的时限或状态变化" in lines and "  首次响应 4h → 2h   1" in lines
    assert "  VT-1（客户分类）1 → 2" in lines
    assert lines[-1] == f"详细结果 details: {out}"
    wb = openpyxl.load_workbook(out, read_only=True)
    assert wb.sheetnames == ["概要", "分类变化汇总", "客户分类变化", "任务变化", "消息变化", "服务时限变化", "规则触发次数",
                             "策略修改", "策略文件"]
    pairs = [tuple(r) for r in wb["分类变化汇总"].iter_rows(min_row=2, values_only=True)]
    assert ("价值等级（value_tier）", "中", "高", 1) in pairs
    assert all(type(p[3]) is int for p in pairs)  # counts as whole numbers, not 1.0
    firings = list(wb["规则触发次数"].iter_rows(min_row=2, values_only=True))
    assert firings and all(type(r[4]) is int and type(r[5]) is int for r in firings)
    tasks = [tuple(r[:4]) for r in wb["任务变化"].iter_rows(min_row=2, values_only=True)]
    assert tasks == [("新增", "D1", "客户D1", "CARE-REVISIT-DUE"), ("减少", "D1", "客户D1", "CARE-REVISIT-DUE")]
    sla = list(wb["服务时限变化"].iter_rows(min_row=2, values_only=True))
    assert sla[0][:7] == ("D1", "I1", "投诉", "sla-complaint", "sla-complaint-high", "4h", "2h")
    assert sla[0][9:11] == ("按时", "按时")  # statuses in words, not "met"


def test_no_changes(inbox: Path):
    result = run_diff(str(SHIPPED_POLICIES), SHIPPED_POLICIES, inbox, AS_OF.date(), AS_OF)
    assert result.unchanged


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_base_from_a_git_revision(inbox: Path, tmp_path: Path):
    repo = tmp_path / "repo"
    shutil.copytree(SHIPPED_POLICIES, repo / "policies")
    shutil.copytree(SHIPPED_TEMPLATES, repo / "templates")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "shipped policies")
    lower_vt1(repo / "policies")  # edited, not committed: the working folder is the new version
    check_threshold_diff(run_diff("git:HEAD", repo / "policies", inbox, AS_OF.date(), AS_OF))
    bad = CliRunner().invoke(diff_command, ["--base", "git:no-such-rev", "--new", str(repo / "policies"), "--inbox", str(inbox),
                                            "--as-of", "2026-11-20", "--out", str(tmp_path / "d.xlsx")])
    assert bad.exit_code == 1 and "[git-failed]" in bad.output
    # A policy folder the revision does not have yet, and one outside any repository: said as such.
    shutil.copytree(repo / "policies", repo / "drafts")
    later = CliRunner().invoke(diff_command, ["--base", "git:HEAD", "--new", str(repo / "drafts"), "--inbox", str(inbox),
                                              "--as-of", "2026-11-20", "--out", str(tmp_path / "d.xlsx")])
    assert later.exit_code == 1 and "git:HEAD: 错误 error: 版本 HEAD 里还没有策略文件夹 drafts/ [git-no-policies]" in later.output
    outside = tmp_path / "outside" / "policies"
    shutil.copytree(repo / "policies", outside)
    loose = CliRunner().invoke(diff_command, ["--base", "git:HEAD", "--new", str(outside), "--inbox", str(inbox),
                                              "--as-of", "2026-11-20", "--out", str(tmp_path / "d.xlsx")])
    assert loose.exit_code == 1 and f"策略文件夹 {outside} 不在 git 仓库里" in loose.output and "[not-in-git]" in loose.output


def test_an_error_says_which_version_has_it(inbox: Path, policy_copy: Path):
    """Both versions name the same files (churn.yaml:47), so the error says which folder it is in."""
    text = (policy_copy / "churn.yaml").read_text(encoding="utf-8")
    broken = text.replace("weight: 40", "weight: ten", 1)
    assert broken != text
    (policy_copy / "churn.yaml").write_text(broken, encoding="utf-8")
    for base, new, role in ((str(SHIPPED_POLICIES), policy_copy, "新版本 new"), (str(policy_copy), SHIPPED_POLICIES, "旧版本 base")):
        result = CliRunner().invoke(diff_command, ["--base", base, "--new", str(new), "--inbox", str(inbox),
                                                   "--as-of", "2026-11-20T15:00"])
        assert result.exit_code == 1
        lines = result.output.splitlines()
        assert lines[1].startswith(f"{policy_copy.resolve().as_posix()}: 错误 error: {role}的策略或输入有误：{policy_copy.resolve().as_posix()}")
        assert any("churn.yaml" in line and "'weight' must be a number" in line for line in lines[2:])


def test_a_rule_renamed_with_formerly_is_compared_as_one_rule(tmp_path: Path, policy_copy: Path):
    """CL-INTENT-NOTE renamed CL-INTENT-MESSAGE (formerly: [CL-INTENT-NOTE]) and its threshold lowered from
    14 to 10 days: one more follow-up message under the new id, not every message removed and added again."""
    from conftest import edit

    rule_file = policy_copy / "churn" / "marketing.yaml"
    edit(rule_file, "  - id: CL-INTENT-NOTE\n", "  - id: CL-INTENT-MESSAGE\n    formerly: [CL-INTENT-NOTE]\n")
    edit(rule_file, "days_since_last_contact >= 14", "days_since_last_contact >= 10")
    contact = lambda iid, cid, day: [iid, cid, f"{day} 09:00", "电话", "咨询", f"{day} 09:30", f"{day} 10:00", "已解决",
                                     None, "何欣", "产品", None]
    inbox = write_inbox(tmp_path / "inbox", customers=[customer(c, 客户阶段="意向") for c in ("E1", "E2", "E3")],
                        interactions=[contact("I1", "E1", "2026-11-08"),  # 12 days: only under the new threshold
                                      contact("I2", "E2", "2026-10-20")])  # 31 days, E3 never: both versions
    result = run_diff(str(SHIPPED_POLICIES), policy_copy, inbox, AS_OF.date(), AS_OF)
    assert result.renamed == {"CL-INTENT-NOTE": "CL-INTENT-MESSAGE"}
    assert [(m["customer_id"], m["rule_id"]) for m in result.messages_added] == [("E1", "CL-INTENT-MESSAGE")]
    assert result.messages_removed == []
    counts = {rule_id: (b, n) for _stage, rule_id, b, n in result.rule_counts}
    assert counts["CL-INTENT-MESSAGE"] == (2, 3) and "CL-INTENT-NOTE" not in counts

    shown = CliRunner().invoke(diff_command, ["--base", str(SHIPPED_POLICIES), "--new", str(policy_copy), "--inbox", str(inbox),
                                              "--as-of", "2026-11-20T15:00", "--out", str(tmp_path / "diff.xlsx")])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "规则改名 renamed：CL-INTENT-NOTE → CL-INTENT-MESSAGE（formerly），按同一条规则比较 / compared as one rule" in lines
    assert "消息 messages：新增 +1，减少 −1" not in lines and "消息 messages：新增 +1，减少 −0" in lines
    assert "  CL-INTENT-MESSAGE（流失挽回，原 CL-INTENT-NOTE）2 → 3" in lines
