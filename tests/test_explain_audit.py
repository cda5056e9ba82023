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


# -- 2. the churn reason: the complaint's date and age, and the reason settings' lines -----------------

def test_churn_reason_says_the_complaint_is_too_old_and_cites_the_reason_settings(policy_copy: Path, tmp_path: Path):
    churn = policy_copy / "churn.yaml"
    # Two customers not contacted for over 60 days (a signal without a reason): one complained about
    # 物流 443 days ago (older than complaint_reason_days 180), the other 100 days ago.
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C000001"), customer("C000002")], interactions=[
        ["I00000004", "C000001", "2025-09-03 10:00", "电话", "投诉", "2025-09-03 11:00", "2025-09-04 10:00", "已解决", 4, "吴倩", "物流", ""],
        ["I00000005", "C000002", "2026-08-12 10:00", "电话", "投诉", "2026-08-12 11:00", "2026-08-13 10:00", "已解决", 4, "吴倩", "物流", ""],
    ])
    folder = run(policy_copy, inbox, tmp_path / "outbox", datetime(2026, 11, 20, 15, 0))
    level = next(json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()
                 if '"C000001"' in line and '"churn_risk.level"' in line)
    assert level["inputs"]["last_complaint_date"] == "2025-09-03" and level["inputs"]["days_since_last_complaint"] == 443

    days_line = line_of(churn, "complaint_reason_days: 180")
    mapping_line = line_of(churn, "物流: 服务")
    out = invoke(["C000001", "--run", folder])
    at = next(i for i, line in enumerate(out) if "✓ 触发  churn_risk.level" in line)
    basis = "\n".join(out[at + 1:at + 4])
    assert "last_complaint_date='2025-09-03'" in basis and "days_since_last_complaint=443" in basis
    assert "最近一次投诉 I00000004（2025-09-03，物流）已过去 443 天" in basis
    assert f"超过 complaint_reason_days 180 天（churn.yaml:{days_line}:1）" in basis
    assert f"complaint_reasons 物流 → 服务，churn.yaml:{mapping_line}:3" in basis and "原因为未知" in basis

    out = invoke(["C000002", "--run", folder, "--format", "json"])
    churn_stage = next(s for s in json.loads("\n".join(out))["stages"] if s["stage"] == "churn")
    level = next(r for r in churn_stage["module"] if r["rule_id"] == "churn_risk.level")
    assert "churn_reason = '服务'" in level["outputs"][0]
    assert any("I00000005（2026-08-12，物流）已过去 100 天，在 complaint_reason_days 180 天" in b
               and f"物流 → 服务，churn.yaml:{mapping_line}:3" in b for b in level["basis"]), level["basis"]


# -- 3. the care stage's facts have their basis: next birthday, window, revisit basis and interval -----

def test_care_facts_show_the_computed_dates_and_the_settings_lines(policy_copy: Path, tmp_path: Path):
    care = policy_copy / "care.yaml"
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C000024", 生日="1980-10-21", 农历生日="是", 签约日期="2024-06-04")],
                        interactions=[["I1", "C000024", "2026-07-20 10:00", "电话", "回访", None, None, "已完成", None, "杨帆", None, ""]],
                        orders=[["O1", "C000024", "2026-06-11", 20000, "服务", 1]])
    out = invoke(["C000024", "--policies", policy_copy, "--inbox", inbox, "--as-of", "2026-11-27"])
    text = "\n".join(out)
    greeting = line_of(care, "greeting_days_before: 3   # 生日祝福：生日前 3 天到生日当天之间生成（birthday_greeting_due），定在生日当天发送（规则的 send_on）")
    at = out.index(f"    · birthday_greeting_due = true  care.yaml:{greeting}:3 birthday.greeting_days_before")
    assert "农历生日 10-21" in out[at + 1] and "next_birthday_date=2026-11-29" in out[at + 1]
    assert "days_until_birthday=2 天" in out[at + 1] and "2026-11-26 至 2026-11-29" in out[at + 1]
    assert "起算日 revisit_basis_date=2026-07-20（最近一次回访/拜访），回访间隔 revisit_interval_days=60 天" in text
    assert "next_revisit_date=2026-09-18" in text

    js = json.loads("\n".join(invoke(["C000024", "--policies", policy_copy, "--inbox", inbox, "--as-of", "2026-11-27",
                                      "--format", "json"])))
    basis = {b["feature"]: b for b in next(s for s in js["stages"] if s["stage"] == "care")["basis"]}
    assert basis["birthday_greeting_due"]["value"] == "true"
    assert basis["birthday_greeting_due"]["source"] == f"care.yaml:{greeting}:3 birthday.greeting_days_before"
    assert basis["revisit_due"]["value"] == "true" and "SP-" in basis["revisit_due"]["basis"]
    assert basis["revisit_due"]["source"].startswith("tables/service_plan.xlsx!")


# -- 4. SLA targets that apply to nothing say why, instead of pointing at decisions that are not there --

def test_sla_lines_say_the_interactions_are_older_than_the_window(policy_copy: Path, tmp_path: Path):
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C000001"), customer("C000002")], interactions=[
        ["I1", "C000001", "2026-07-01 10:00", "电话", "投诉", "2026-07-01 11:00", "2026-07-02 10:00", "已解决", 4, "吴倩", "物流", ""],
        ["I2", "C000001", "2026-06-01 10:00", "电话", "咨询", "2026-06-01 11:00", "2026-06-01 12:00", "已解决", 5, "吴倩", None, ""],
    ])
    window = line_of(policy_copy / "sla.yaml", "window_days: 90")
    out = invoke(["C000001", "--policies", policy_copy, "--inbox", inbox, "--as-of", "2026-11-20"])
    complaint = next(i for i, line in enumerate(out) if "✗ 未触发  sla-complaint " in line + " ")
    assert f"90 天内没有需要跟踪的互动（sla.yaml:{window}:1 window_days）：2 条更早的互动已处理完" in out[complaint + 1]
    assert not any("见上面已生效的判定" in line for line in out)

    out = invoke(["C000002", "--policies", policy_copy, "--inbox", inbox, "--as-of", "2026-11-20"])
    assert any("没有需要跟踪的互动：没有 投诉、咨询、建议 类型的记录" in line for line in out), out


# -- 5. both modes print the decision log's values the same way: seconds kept, numbers as written -------

def test_inputs_and_run_modes_print_the_same_values(policy_copy: Path, tmp_path: Path):
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C000001", 签约日期="2024-06-04")], interactions=[
        ["I1", "C000001", "2026-11-18 17:49:28", "电话", "投诉", "2026-11-18 18:02:05", None, "处理中", None, "吴倩", "物流", ""],
    ], orders=[["O1", "C000001", "2026-05-11", 20000, "服务", 1]])
    moment = datetime(2026, 11, 20, 15, 0)
    folder = run(policy_copy, inbox, tmp_path / "outbox", moment)
    from_run = invoke(["C000001", "--run", folder])
    from_inputs = invoke(["C000001", "--policies", policy_copy, "--inbox", inbox, "--as-of", "2026-11-20T15:00"])
    assert any("created='2026-11-18T17:49:28'" in line for line in from_inputs), from_inputs
    assert "        结果 加分 churn_score += 20" in from_run  # the weight as written, not 20.0
    assert from_inputs[2:] == from_run[2:]  # all but the line saying where the explanation comes from
