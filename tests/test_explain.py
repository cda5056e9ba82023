"""crm-engine explain: one customer of each stage, from inputs and from a finished run's folder."""
from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli_tools import explain_command
from engine.explain import FIRED, MATCHED, NOT_MATCHED, explain_from_inputs, explain_from_run
from engine.run import RunOptions, run_batch

from conftest import SHIPPED_POLICIES, customer, write_inbox

AS_OF = datetime(2026, 11, 20, 15, 0)


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inbox")
    return write_inbox(
        folder,
        customers=[
            customer("A1"),  # a big spender: value tier 高
            customer("A2", 签约日期="2026-10-01"),  # an open complaint, late
            customer("A3", 生日="1990-11-22", 客户阶段="意向"),  # birthday in two days
            customer("A4", 客户阶段="流失"),  # recorded as churned
            customer("A5", 手机号码=None, 客户阶段="意向"),  # no way to reach them
            customer("A6", 营销许可="否", 客户阶段="意向"),  # no marketing consent: the guard holds the message
        ],
        interactions=[
            ["I1", "A1", "2026-11-17 10:00", "电话", "回访", None, None, "已完成", None, "何欣", None, None],
            ["I2", "A2", "2026-11-20 09:00", "电话", "投诉", None, None, "处理中", None, "何欣", "服务态度", "还没人联系我"],
            ["I3", "A3", "2026-11-15 10:00", "微信", "咨询", "2026-11-15 10:30", "2026-11-15 11:00", "已解决", 5, "吴倩", None, None],
        ],
        orders=[["O1", "A1", "2026-10-11", 120000, "年度服务", 1]],
    )


def lines_of(result) -> list[str]:
    from engine.explain import format_explanation

    return format_explanation(result)


def rule(result, rule_id):
    for stage in result.stages:
        for line in stage.module:
            if line.rule_id == rule_id:
                return line
        for policy in stage.policies:
            for line in policy.rules:
                if line.rule_id == rule_id:
                    return line
    raise AssertionError(f"{rule_id} not in the explanation")


def test_classification_rules_with_values_and_hit_policy(inbox: Path):
    result = explain_from_inputs("A1", SHIPPED_POLICIES, inbox, AS_OF.date(), AS_OF)
    vt1, vt2, vt5 = rule(result, "VT-1"), rule(result, "VT-2"), rule(result, "VT-5")
    assert (vt1.status, vt1.source, vt1.condition, vt1.value) == (FIRED, "tables/value_tier.xlsx!价值分层!A3",
                                                                  "monetary_365d(=120000.0) >= 100000", True)
    assert vt1.outputs == ["设置 value_tier = '高'"]
    assert vt2.status == NOT_MATCHED and vt2.condition.startswith("days_since_last_order(=40) < 90 and frequency_365d(=1) >= 4")
    assert vt5.status == MATCHED and vt5.note == "条件成立，但命中策略 first 下生效的是 VT-1"
    # a later policy sees the tag an earlier one set
    assert rule(result, "SP-2").condition == "value_tier(='高') == '高'"
    text = lines_of(result)
    assert text[0] == "客户 A1 客户A1（客户经理 张伟），as-of 2026-11-20 15:00:00"
    assert "    ✓ 触发  VT-1  tables/value_tier.xlsx!价值分层!A3  近一年消费10万元及以上：业务贡献大" in text
    assert "        条件 monetary_365d(=120000.0) >= 100000 → 成立" in text
    assert "        结果 设置 value_tier = '高'" in text


def test_sla_decision_of_the_stage_module(inbox: Path):
    result = explain_from_inputs("A2", SHIPPED_POLICIES, inbox, AS_OF.date(), AS_OF)
    line = rule(result, "sla-complaint")
    n = next(n for n, text in enumerate((SHIPPED_POLICIES / "sla.yaml").read_text(encoding="utf-8").splitlines(), start=1)
             if text == "  - id: sla-complaint")
    assert line.status == FIRED and line.source == f"sla.yaml:{n}:5"
    assert "interaction_id='I2'" in line.condition and "type='投诉'" in line.condition
    # times as decisions.jsonl holds them, with their seconds (what explain --run shows too)
    assert line.outputs[0] == ("服务时限（standard 日历）：首次响应 4h 截止 2026-11-20T14:30:00 → open_breached，超时 30 分钟；"
                               "解决 2d 截止 2026-11-24T09:00:00 → open_within")
    assert line.outputs[1].startswith("任务 → 李强：超时升级：投诉 I2 首次响应")
    # targets that did not apply to this customer's interactions are listed, evaluated per interaction
    other = rule(result, "sla-inquiry")
    assert other.status == NOT_MATCHED and other.note == "按每条互动记录判断（见上面已生效的判定）"


def test_care_rule_fired_with_its_message(inbox: Path):
    result = explain_from_inputs("A3", SHIPPED_POLICIES, inbox, AS_OF.date(), AS_OF)
    greeting = rule(result, "CARE-BIRTHDAY-GREETING")
    assert greeting.status == FIRED
    assert greeting.condition == "birthday_greeting_due(=true) and lifecycle_stage(='意向') in ['意向', '签约', '流失']"
    # Issued 2 days ahead, sent on the birthday (the rule's send_on: next_birthday_date).
    assert greeting.outputs == ["消息 → sms，模板 birthday（marketing） [定于 2026-11-22 10:00 发送（send_on）]"]
    gift = rule(result, "CARE-BIRTHDAY-GIFT")
    assert gift.status == NOT_MATCHED and gift.value is False


def test_churn_signals_level_and_win_back(inbox: Path):
    result = explain_from_inputs("A4", SHIPPED_POLICIES, inbox, AS_OF.date(), AS_OF)
    signal = rule(result, "CH-SIG-STAGE-CHURNED")
    assert signal.status == FIRED and signal.outputs == ["加分 churn_score += 40", "原因 未知"]
    silent = rule(result, "CH-SIG-NO-CONTACT-60")
    # a comparison with an empty value is false (docs/expressions.md)
    assert (silent.status, silent.condition, silent.value) == (NOT_MATCHED, "days_since_last_contact(=null) > 60", False)
    # in decisions.jsonl's key order, as explain --run shows it
    assert rule(result, "churn_risk.level").outputs == ["设置 churn_level = '中'，churn_reason = '未知'，churn_score = 40"]
    follow_up = rule(result, "CH-CHURNED-FOLLOW-UP")
    assert follow_up.status == FIRED and follow_up.outputs[0].startswith("任务 → 张伟：流失客户季度跟踪回访")
    text = lines_of(result)
    assert "【流失挽回 churn】" in text
    assert "        条件 days_since_last_contact(=null) > 60 → 不成立" in text


def test_suppressed_message_shows_why(inbox: Path):
    result = explain_from_inputs("A5", SHIPPED_POLICIES, inbox, AS_OF.date(), AS_OF)
    note = rule(result, "CL-INTENT-NOTE")
    assert note.status == FIRED and note.suppressed == "没有可用的联系方式"
    assert note.outputs == ["消息 follow_up：未发送（客户没有手机号、邮箱或微信，无法按客户偏好渠道发送）"]
    assert "        被拦截 没有可用的联系方式" in lines_of(result)


def test_guard_suppression_from_inputs_and_from_the_run(inbox: Path, tmp_path: Path):
    note = rule(explain_from_inputs("A6", SHIPPED_POLICIES, inbox, AS_OF.date(), AS_OF), "CL-INTENT-NOTE")
    assert note.status == FIRED and note.suppressed == "没有营销同意"
    assert note.outputs == ["消息 → sms，模板 follow_up（marketing） [被拦截：没有营销同意]"]
    run = run_batch(RunOptions(policies=SHIPPED_POLICIES, inbox=inbox, outbox=tmp_path / "outbox", as_of=AS_OF.date(),
                               as_of_time=AS_OF))
    from_run = rule(explain_from_run("A6", run.folder), "CL-INTENT-NOTE")
    assert from_run.suppressed == "没有营销同意" and from_run.outputs == note.outputs


def test_from_a_run_folder_uses_its_manifest_and_decision_log(inbox: Path, tmp_path: Path):
    run = run_batch(RunOptions(policies=SHIPPED_POLICIES, inbox=inbox, outbox=tmp_path / "outbox", as_of=AS_OF.date(),
                               as_of_time=AS_OF))
    result = explain_from_run("A1", run.folder)
    assert result.source == run.folder.as_posix() and result.as_of == "2026-11-20 15:00:00"
    assert rule(result, "VT-1").status == FIRED and not result.warnings
    cli = CliRunner().invoke(explain_command, ["A1", "--run", str(run.folder), "--format", "json", "--only-fired"])
    assert cli.exit_code == 0
    data = json.loads(cli.output)
    assert data["customer_id"] == "A1" and data["stages"][0]["stage"] == "classification"


def test_cli_text_and_unknown_customer(inbox: Path):
    runner = CliRunner()
    ok = runner.invoke(explain_command, ["A1", "--policies", str(SHIPPED_POLICIES), "--inbox", str(inbox),
                                         "--as-of", "2026-11-20T15:00", "--only-fired"])
    assert ok.exit_code == 0
    assert "    ✗ 未触发" not in ok.output and "    ✓ 触发  VT-1" in ok.output
    bad = runner.invoke(explain_command, ["A9", "--policies", str(SHIPPED_POLICIES), "--inbox", str(inbox), "--as-of", "2026-11-20"])
    assert bad.exit_code == 1
    assert "A9: 错误 error: 输入数据中没有客户 A9 [unknown-customer] — 修改建议: 客户编号见 customers.xlsx 或导出文件的“客户编号”列" in bad.output


def test_an_id_typed_with_a_zero_too_few_suggests_that_customer():
    # C00002 is C000002 with a zero missing; the closest spelling, C000402, was suggested.
    from conftest import ROOT
    from engine.explain import ExplainError

    with pytest.raises(ExplainError) as exc:
        explain_from_inputs("C00002", ROOT / "policies", ROOT / "inbox", date(2026, 11, 20))
    assert exc.value.problems[0].message == "输入数据中没有客户 C00002；是不是 C000002？"


def test_a_message_sent_on_a_time_feature_is_said_at_that_moment(policy_copy: Path, tmp_path: Path):
    """The survey's send_on names a time (survey_resolved_time): explain says it goes no earlier than
    that moment, with the customer's time and when it would go out (the day's send time if later,
    after the quiet hours), not "on that day". A date feature (the birthday) is that day's send time."""
    from conftest import edit

    # The survey fires only for high-value customers now: for these it is a rule that would produce a message.
    edit(policy_copy / "care" / "follow_up.yaml", "when: survey_due\n", "when: survey_due and value_tier == '高'\n")
    people = [customer(c, 签约日期="2025-06-01") for c in ("LATE", "NIGHT", "EARLY")]
    people.append(customer("BDAY", 签约日期="2025-06-01", 生日="1990-12-25"))  # a birthday too far off for a greeting
    complaints = [[f"I{n}", cid, "2026-11-18 09:00", "电话", "投诉", "2026-11-18 09:30", resolved, "已解决", None, "杨帆", "物流", ""]
                  for n, (cid, resolved) in enumerate((("LATE", "2026-11-20 16:00"), ("NIGHT", "2026-11-20 22:30"),
                                                       ("EARLY", "2026-11-20 08:15")))]
    folder = write_inbox(tmp_path / "inbox", people, interactions=complaints)
    rule_text = "不早于 survey_resolved_time 那一刻发送，早于当天的发送时间 10:00 的在 10:00 发送，落在免打扰时段的推到时段结束"
    for cid, when in (("LATE", "2026-11-20 16:00，定于 2026-11-20 16:00"), ("NIGHT", "2026-11-20 22:30，定于 2026-11-21 09:00"),
                      ("EARLY", "2026-11-20 08:15，定于 2026-11-20 10:00")):
        survey = rule(explain_from_inputs(cid, policy_copy, folder, date(2026, 11, 20)), "CARE-SURVEY")
        assert survey.status == NOT_MATCHED
        assert survey.outputs == [f"消息 → preferred，模板 survey（service，{rule_text}：survey_resolved_time 为 {when} 发送）"]
    # A run late in the day: never before the run's own time.
    survey = rule(explain_from_inputs("EARLY", policy_copy, folder, date(2026, 11, 20), datetime(2026, 11, 20, 18, 5)), "CARE-SURVEY")
    assert survey.outputs[0].endswith("survey_resolved_time 为 2026-11-20 08:15，定于 2026-11-20 18:05 发送）")

    greeting = rule(explain_from_inputs("LATE", policy_copy, folder, date(2026, 11, 20)), "CARE-BIRTHDAY-GREETING")
    assert greeting.outputs == ["消息 → preferred，模板 birthday（marketing，在 next_birthday_date 当天的发送时间 10:00 发送，"
                                "这位客户的 next_birthday_date 为空）"]
    greeting = rule(explain_from_inputs("BDAY", policy_copy, folder, date(2026, 11, 20)), "CARE-BIRTHDAY-GREETING")
    assert greeting.outputs == ["消息 → preferred，模板 birthday（marketing，在 next_birthday_date 当天的发送时间 10:00 发送："
                                "next_birthday_date 为 2026-12-25，定于 2026-12-25 10:00 发送）"]
