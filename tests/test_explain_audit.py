"""Defects an auditor found in ``crm-engine explain``: each test runs the command on real run folders
or real exports (policy copies in tmp_path) and reads what it prints."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner
from conftest import customer, write_inbox

from engine.cli_tools import explain_command
from engine.run import RunOptions, run_batch


def invoke(args: list) -> list[str]:
    result = CliRunner().invoke(explain_command, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def run(policies: Path, inbox: Path, outbox: Path, moment: datetime) -> Path:
    return run_batch(RunOptions(policies=policies, inbox=inbox, outbox=outbox, as_of=moment.date(), as_of_time=moment)).folder


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip() == text)


# -- 1. a fired rule is cited where the run's decision log recorded it --------------------------------

def test_fired_rule_shows_the_recorded_source_and_where_it_is_now(policy_copy: Path, tmp_path: Path):
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C000001", 签约日期="2024-06-04")])
    folder = run(policy_copy, inbox, tmp_path / "outbox", datetime(2026, 11, 20, 15, 0))
    lifecycle = policy_copy / "classification" / "lifecycle_stage.yaml"
    recorded = line_of(lifecycle, "- id: LC-SIGNED")
    logged = [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["source"] for r in logged if r["rule_id"] == "LC-SIGNED"] == [f"classification/lifecycle_stage.yaml:{recorded}:5"]

    lifecycle.write_text("# 新加的说明\n# 第二行\n" + lifecycle.read_text(encoding="utf-8"), encoding="utf-8")
    out = invoke(["C000001", "--run", folder])
    fired = next(i for i, line in enumerate(out) if "✓ 触发  LC-SIGNED" in line)
    assert f"classification/lifecycle_stage.yaml:{recorded}:5" in out[fired]
    note = next(line for line in out[fired + 1:] if "说明" in line)
    assert f"现在在第 {recorded + 2} 行" in note and f"lifecycle_stage.yaml:{recorded + 2}:5" in note
    # A rule that did not fire is evaluated on the current file: its current line.
    unfired = next(line for line in out if "✗ 未触发  LC-CHURNED-RECORDED" in line)
    assert f"lifecycle_stage.yaml:{line_of(lifecycle, '- id: LC-CHURNED-RECORDED')}:5" in unfired

    # Unchanged file: no note.
    again = invoke(["C000001", "--policies", policy_copy, "--inbox", inbox, "--as-of", "2026-11-20T15:00"])
    fired = next(i for i, line in enumerate(again) if "✓ 触发  LC-SIGNED" in line)
    assert f":{recorded + 2}:5" in again[fired] and "现在在第" not in again[fired + 3]
