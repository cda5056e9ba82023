"""The durable_rules backend from the command line: run --engine durable, --cross-check,
validate --engine durable, and the shipped policy tests under both engines."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, customer, write_inbox
from engine.cli import main

pytest.importorskip("durable.lang", reason="durable-rules is not installed (pip install '.[durable]')")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def small_inbox(tmp_path: Path) -> Path:
    return write_inbox(
        tmp_path / "inbox",
        customers=[customer("C1", 客户经理=None, 签约日期="2024-03-01"), customer("C2", 签约日期="2025-01-10"),
                   customer("C3", 客户经理="李娜")],
        interactions=[["I1", "C3", "2026-10-21 10:00", "电话", "咨询", "2026-10-21 10:30", "2026-10-21 11:00", "已解决", 5, "李娜", None, "询价"],
                      ["I2", "C2", "2026-11-19 10:00", "电话", "投诉", "2026-11-19 10:20", None, "处理中", None, "王芳", "产品质量", "坏了"]],
        orders=[["O1", "C1", "2026-03-01", 120000, "系统", 1], ["O2", "C2", "2026-09-01", 800, "耗材", 1]],
    )


def test_cross_check_passes_and_durable_run_gives_the_same_files(tmp_path: Path):
    inbox = small_inbox(tmp_path)
    checked = invoke("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "a"),
                     "--as-of", "2026-11-20", "--cross-check")
    assert checked.exit_code == 0, checked.output
    assert "交叉核对通过" in checked.output
    durable = invoke("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "b"),
                     "--as-of", "2026-11-20", "--engine", "durable")
    assert durable.exit_code == 0, durable.output
    (a,) = [p for p in (tmp_path / "a").iterdir() if p.is_dir()]
    (b,) = [p for p in (tmp_path / "b").iterdir() if p.is_dir()]
    assert (a / "decisions.jsonl").read_bytes() == (b / "decisions.jsonl").read_bytes()
    assert json.loads((b / "manifest.json").read_text(encoding="utf-8"))["engine"] == "durable"
    # The same batch again: nothing is evaluated, so it says it did not cross-check (it said nothing).
    again = invoke("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "a"),
                   "--as-of", "2026-11-20", "--cross-check")
    assert again.exit_code == 0 and "没有做交叉核对" in again.output and "交叉核对通过" not in again.output


def test_validate_names_what_durable_rules_cannot_express(policy_copy: Path):
    path = policy_copy / "classification" / "risk_level.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("avg_satisfaction_365d < 3.5", "avg_satisfaction_365d < 0.00001"),
                    encoding="utf-8")
    plain = invoke("validate", "--policies", str(policy_copy))
    assert plain.exit_code == 0, plain.output
    durable = invoke("validate", "--policies", str(policy_copy), "--engine", "durable")
    assert durable.exit_code == 1
    assert durable.output.splitlines()[0] == (
        "classification/risk_level.yaml:15:59: 错误 error: 规则 RISK-MEDIUM：常量 1e-05：它的 JSON 写法 1e-05 durable_rules 读不了"
        "——durable_rules 引擎表达不了 / rule RISK-MEDIUM: the constant 1e-05: its JSON form 1e-05 cannot be read by durable_rules "
        "— the durable_rules engine cannot express this [durable-unsupported] — 修改建议: 改写这个条件，或用默认引擎（--engine python） / "
        "rewrite the condition, or use the default engine (--engine python)")


def test_shipped_policy_tests_pass_under_durable_rules():
    result = invoke("test", "--policies", str(ROOT / "policies"), "--engine", "durable")
    assert result.exit_code == 0, result.output
