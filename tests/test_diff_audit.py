"""Defects an auditor found in ``crm-engine diff``: the workbook must stay traceable (the commit a git
revision named, every policy file's sha256 in both versions), list the policy edits themselves
(changed YAML lines and decision-table cells with their rules), name tags as customers.xlsx does, and
say what each counted rule is and where it is written."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from conftest import SHIPPED_POLICIES, SHIPPED_TEMPLATES, customer, write_inbox

from engine.cli_tools import diff_command
from engine.outbox import sha256_file


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args], cwd=repo, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


def rows(path: Path, sheet: str) -> list[tuple]:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return [tuple(r) for r in wb[sheet].iter_rows(min_row=2, values_only=True)]
    finally:
        wb.close()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_base_is_traceable_and_the_edits_are_listed(tmp_path: Path):
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("D1"), customer("D2")],
                        orders=[["O1", "D1", "2026-09-21", 60000, "服务", 1], ["O2", "D2", "2026-09-21", 5000, "服务", 1]])
    repo = tmp_path / "repo"
    shutil.copytree(SHIPPED_POLICIES, repo / "policies")
    shutil.copytree(SHIPPED_TEMPLATES, repo / "templates")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "shipped policies")
    commit = git(repo, "rev-parse", "HEAD")
    table = repo / "policies" / "tables" / "value_tier.xlsx"
    old_table_sha = sha256_file(table)
    wb = openpyxl.load_workbook(table)
    wb.worksheets[0]["D3"] = ">= 50000"
    wb.save(table)
    churn = repo / "policies" / "churn.yaml"
    lines = churn.read_text(encoding="utf-8").splitlines(keepends=True)
    signal = next(n for n, line in enumerate(lines, 1) if line.strip() == "- id: CH-SIG-NO-CONTACT-60")
    weight = next(n for n in range(signal, len(lines) + 1) if lines[n - 1].strip() == "weight: 10")
    lines[weight - 1] = lines[weight - 1].replace("weight: 10", "weight: 15")
    churn.write_text("".join(lines), encoding="utf-8")

    out = tmp_path / "diff.xlsx"
    result = CliRunner().invoke(diff_command, ["--base", "git:HEAD", "--new", str(repo / "policies"), "--inbox", str(inbox),
                                               "--as-of", "2026-11-20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    console = result.output.splitlines()
    assert f"旧版本 git:HEAD = 提交 commit {commit}" in console
    assert "  修改 tables/value_tier.xlsx" in console and "  修改 churn.yaml" in console
    assert "    tables/value_tier.xlsx!价值分层!D3（VT-1）：>= 100000 → >= 50000" in console
    assert f"    churn.yaml:{weight}（CH-SIG-NO-CONTACT-60）：weight: 10 → weight: 15" in console
    assert "  价值等级（value_tier）：1 位客户变化" in console

    git(repo, "commit", "-q", "-am", "HEAD moves on")  # the workbook still names what was compared
    summary = dict(rows(out, "概要"))
    assert summary["旧版本提交 base commit"] == commit
    assert summary["sha256 tables/value_tier.xlsx"] == f"旧 {old_table_sha} / 新 {sha256_file(table)}"
    assert summary["修改的策略文件"] == "2"
    files = {r[0]: r[1:] for r in rows(out, "策略文件")}
    assert files["tables/value_tier.xlsx"] == ("修改", old_table_sha, sha256_file(table))
    assert files["classification/lifecycle_stage.yaml"][0] == "相同"
    edits = rows(out, "策略修改")
    assert ("tables/value_tier.xlsx", "修改", "tables/value_tier.xlsx!价值分层!D3", "VT-1", ">= 100000", ">= 50000") in edits
    assert ("churn.yaml", "修改", f"churn.yaml:{weight}", "CH-SIG-NO-CONTACT-60", "weight: 10", "weight: 15") in edits
    assert ("价值等级（value_tier）", "D1", "客户D1") == next((r[2], r[0], r[1]) for r in rows(out, "客户分类变化")
                                                         if r[2].endswith("（value_tier）"))
    counts = {r[1]: r for r in rows(out, "规则触发次数")}
    assert counts["VT-1"][2:4] == ("近一年消费10万元及以上：业务贡献大", "tables/value_tier.xlsx!价值分层!A3")
