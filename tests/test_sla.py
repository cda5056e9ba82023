"""SLA stage: deadlines on the real calendar, each clock status, tasks, decisions, KPIs, policy errors.

Every expected value below is worked out by hand on the standard calendar (Mon-Fri 09:00-12:00 and
13:30-18:00, i.e. 7.5 working hours a day, Chinese public holidays and 调休).
"""
from __future__ import annotations

import json
import re
import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from engine.actions import ActionBuilder
from engine.calendar import load_calendars
from engine.errors import PolicyError
from engine.model import Customer, Interaction, SourceRow
from engine.policy.loader import load_policies
from engine.render import make_environment
from engine.run import RunOptions, run_batch
from engine.stages import CustomerFacts, StageSetup, build_stage_modules
from engine.stages import sla as sla_module
from engine.stages.sla import FEATURES, build, late_text

from conftest import CUSTOMER_HEADERS, INTERACTION_HEADERS, ORDER_HEADERS, SHIPPED_POLICIES, SHIPPED_TEMPLATES

SRC = SourceRow("interactions.xlsx", "互动记录", 2)
SLA_FILE = SHIPPED_POLICIES / "sla.yaml"


def rule_location(rule_id: str) -> str:
    """Where a target starts in the shipped sla.yaml ("sla.yaml:LINE:COL" of its id)."""
    for number, line in enumerate(SLA_FILE.read_text(encoding="utf-8").splitlines(), start=1):
        match = re.match(r"(\s*- )id: (\S+)$", line)
        if match and match.group(2) == rule_id:
            return f"sla.yaml:{number}:{len(match.group(1)) + 1}"
    raise AssertionError(f"{rule_id} not in sla.yaml")


# --------------------------------------------------------------------------------------------------
# Setting up a stage the way a run does: real policies, calendars and action builder
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_policies(SHIPPED_POLICIES)


@pytest.fixture(scope="module")
def calendars():
    return load_calendars(SHIPPED_POLICIES / "calendar.yaml")


def make_stage(policyset, calendars, as_of_time: datetime):
    org = policyset.organization
    builder = ActionBuilder(org, calendars[org.task_calendar], make_environment(SHIPPED_TEMPLATES), as_of_time.date())
    return build(StageSetup(policyset, calendars, builder, as_of_time.date(), as_of_time))


def customer(cid: str = "C1", owner: str | None = "张伟", name: str | None = None) -> Customer:
    return Customer(customer_id=cid, source=SourceRow("customers.xlsx", "客户信息", 2), name=name or f"客户{cid}", owner=owner)


def interaction(iid: str, created: datetime, type: str = "投诉", first: datetime | None = None,
                resolved: datetime | None = None, status: str | None = "处理中", channel: str = "微信",
                staff: str | None = "马丽", satisfaction: int | None = None, cid: str = "C1") -> Interaction:
    return Interaction(interaction_id=iid, customer_id=cid, time=created, source=SRC, channel=channel, type=type,
                       first_response_time=first, resolved_time=resolved, status=status, satisfaction=satisfaction,
                       staff=staff, content="产品无法登录")


def run_one(shipped, calendars, as_of_time: datetime, *items: Interaction, tier: str = "中",
            cust: Customer | None = None):
    """Process one customer; returns (stage, output, features)."""
    stage = make_stage(shipped, calendars, as_of_time)
    features = {"value_tier": tier, "need_type": "普通"}
    out = stage.process(CustomerFacts(cust or customer(), list(items), [], features))
    return stage, out, features


def clocks(stage, iid: str) -> dict:
    item = next(i for i in stage.items if i.interaction.interaction_id == iid)
    return {c.name: c for c in item.clocks}


# --------------------------------------------------------------------------------------------------
# Shipped policy
# --------------------------------------------------------------------------------------------------


def test_shipped_policy_loads(shipped, calendars):
    policy = sla_module.load_sla_policy(shipped, calendars)
    assert policy.policy_id == "sla" and policy.source_file == "sla.yaml"
    assert policy.calendar_name == "standard"
    assert policy.at_risk_share == 0.75
    assert policy.escalation_role == "客服主管"
    assert policy.track_types == ("投诉", "咨询", "建议")
    assert policy.paused_statuses == frozenset({"待客户回复"})
    assert [(t.rule_id, str(t.first_response) if t.first_response else None, str(t.resolution), t.calendar_name)
            for t in policy.targets] == [
        ("sla-complaint-high", "2h", "2d", "standard"),
        ("sla-complaint", "4h", "2d", "standard"),
        ("sla-inquiry-hotline", "1h", "1d", "hotline_24x7"),
        ("sla-inquiry", "2h", "1d", "standard"),
        ("sla-suggestion", None, "3d", "standard"),
    ]


def test_stage_is_built_by_the_stage_registry(shipped, calendars):
    org = shipped.organization
    as_of = datetime(2024, 5, 17, 23, 59, 59)
    builder = ActionBuilder(org, calendars[org.task_calendar], make_environment(SHIPPED_TEMPLATES), as_of.date())
    modules = build_stage_modules(StageSetup(shipped, calendars, builder, as_of.date(), as_of))
    assert type(modules["sla"]).__name__ == "SlaStage"


def test_no_sla_file_means_no_stage(tmp_path, calendars):
    import shutil
    shutil.copytree(SHIPPED_POLICIES, tmp_path / "policies")
    (tmp_path / "policies" / "sla.yaml").unlink()
    policyset = load_policies(tmp_path / "policies")
    assert make_stage(policyset, calendars, datetime(2024, 5, 17, 18)) is None


# --------------------------------------------------------------------------------------------------
# Clock statuses
# --------------------------------------------------------------------------------------------------


def test_met_both_clocks(shipped, calendars):
    # Mon 10:00 + 4h = Mon 15:30 (lunch 12:00-13:30 not counted); + 2 working days = Wed 10:00.
    it = interaction("I1", datetime(2024, 5, 13, 10, 0), first=datetime(2024, 5, 13, 11, 30),
                     resolved=datetime(2024, 5, 14, 16, 0), status="已解决")
    stage, out, features = run_one(shipped, calendars, datetime(2024, 5, 20, 23, 59, 59), it)
    c = clocks(stage, "I1")
    assert (c["first_response"].deadline, c["first_response"].status) == (datetime(2024, 5, 13, 15, 30), "met")
    assert (c["resolution"].deadline, c["resolution"].status) == (datetime(2024, 5, 15, 10, 0), "met")
    assert c["first_response"].late is None and c["resolution"].late is None
    assert out.tasks == []
    assert features["sla_open"] == 0 and features["sla_breached_window"] == 0
    assert features["sla_timely_rate_window"] == 1.0


def test_window_starts_at_midnight_window_days_back(shipped, calendars):
    # as-of 2024-05-20 with window_days 90: created on or after 2024-02-21 00:00 is in the window.
    # Closed items before it are history; open ones are tracked but do not count in the window.
    closed = dict(first=datetime(2024, 2, 21, 9, 30), resolved=datetime(2024, 2, 21, 10, 0), status="已解决")
    items = [
        interaction("IN", datetime(2024, 2, 21, 0, 0), **closed),
        interaction("OUT", datetime(2024, 2, 20, 23, 59, 59), **closed),
        interaction("OUT-CLOSED-BY-STATUS", datetime(2024, 2, 20, 10, 0), status="已关闭"),
        interaction("OLD-OPEN", datetime(2024, 2, 20, 10, 0)),
        interaction("OLD-RESOLVED-LATER", datetime(2024, 2, 20, 10, 0), resolved=datetime(2024, 5, 21, 9, 0)),
    ]
    stage, out, features = run_one(shipped, calendars, datetime(2024, 5, 20, 23, 59, 59), *items)
    assert [i.interaction.interaction_id for i in stage.items] == ["IN", "OLD-OPEN", "OLD-RESOLVED-LATER"]
    assert features["sla_open"] == 2 and features["sla_breached_open"] == 2
    assert features["sla_breached_window"] == 0 and features["sla_timely_rate_window"] == 1.0


def test_breached_closed_is_recorded_not_tasked(shipped, calendars):
    it = interaction("I2", datetime(2024, 5, 13, 10, 0), first=datetime(2024, 5, 13, 16, 30),
                     resolved=datetime(2024, 5, 15, 15, 0), status="已解决")
    stage, out, features = run_one(shipped, calendars, datetime(2024, 5, 20, 23, 59, 59), it)
    c = clocks(stage, "I2")
    # First response: 15:30 → 16:30 is 1 working hour late.
    assert c["first_response"].status == "breached" and c["first_response"].late == timedelta(hours=1)
    # Resolution: Wed 10:00 → 15:00 is 10:00-12:00 + 13:30-15:00 = 3.5 working hours late.
    assert c["resolution"].status == "breached" and c["resolution"].late == timedelta(hours=3.5)
    assert c["resolution"].late_hours == 3.5
    assert out.tasks == []  # closed breaches only count in the KPIs
    assert features["sla_breached_open"] == 0 and features["sla_breached_window"] == 1
    assert features["sla_timely_rate_window"] == 0.0
    firing = out.firings[0]
    assert firing.outputs == [{"sla": {
        "calendar": "standard",
        "first_response": {"target": "4h", "deadline": datetime(2024, 5, 13, 15, 30), "status": "breached",
                           "stopped": datetime(2024, 5, 13, 16, 30), "late_minutes": 60.0},
        "resolution": {"target": "2d", "deadline": datetime(2024, 5, 15, 10, 0), "status": "breached",
                       "stopped": datetime(2024, 5, 15, 15, 0), "late_minutes": 210.0},
    }}]


def test_an_escalation_gives_each_overdue_clock_its_own_lateness(shipped, calendars):
    # Created Mon 10:00, no answer by Thu 12:00: first response (due Mon 15:30) 20.5 h late, resolution
    # (due Wed 10:00) 9.5 h. The title said "首次响应、解决已超时 20.5 个工作小时".
    it = interaction("I5", datetime(2024, 5, 13, 10, 0), status="待处理", staff="马丽")
    _, out, _ = run_one(shipped, calendars, datetime(2024, 5, 16, 12, 0), it)
    [task] = out.tasks
    assert task.title == "超时升级：投诉 I5 首次响应已超时 20.5 个工作小时，解决已超时 9.5 个工作小时"
    assert "首次响应截止 2024-05-13 15:30，已超时 20.5 个工作小时；解决截止 2024-05-15 10:00，已超时 9.5 个工作小时" in task.reason


def test_open_breached_is_escalated_to_the_role_holder(shipped, calendars):
    # No response yet on Tue 10:00: the Mon 15:30 deadline is 15:30-18:00 + 09:00-10:00 = 3.5 h behind.
    it = interaction("I3", datetime(2024, 5, 13, 10, 0), status="待处理", staff="马丽")
    stage, out, features = run_one(shipped, calendars, datetime(2024, 5, 14, 10, 0), it)
    c = clocks(stage, "I3")
    assert c["first_response"].status == "open_breached"
    assert c["first_response"].late == timedelta(hours=3.5)
    # Resolution (due Wed 10:00) has used 6.5 + 1 = 7.5 of 15 working hours: within target.
    assert c["resolution"].status == "open_within" and c["resolution"].share_used == 0.5
    assert len(out.tasks) == 1
    task = out.tasks[0]
    assert task.assignee == "李强" and task.role == "客服主管"  # organization.yaml roles
    assert task.title == "超时升级：投诉 I3 首次响应已超时 3.5 个工作小时"
    assert "原处理人：马丽" in task.reason and "截止 2024-05-13 15:30" in task.reason
    assert task.priority == "高" and task.stage == "sla" and task.rule_id == "sla-complaint"
    assert task.due == datetime(2024, 5, 14, 12, 0)  # escalation_due 2h after the run's instant
    assert task.key == "sla-complaint|C1|I3|first_response|escalation"
    assert features["sla_open"] == 1 and features["sla_breached_open"] == 1 and features["sla_at_risk_open"] == 0
    assert features["sla_breached_window"] == 1 and features["sla_timely_rate_window"] == 0.0
    assert out.firings[0].outputs[1] == {"task": {"assignee": "李强", "title": task.title, "due": task.due, "priority": "高",
                                                                   "key": task.key}}


def test_at_risk_threshold_and_reminder_to_staff(shipped, calendars):
    # Responded; resolution due Wed 10:00 after 15 working hours. 75 % = 11.25 h, reached Tue 15:15.
    it = interaction("I4", datetime(2024, 5, 13, 10, 0), first=datetime(2024, 5, 13, 11, 0), staff="吴倩")
    stage, out, features = run_one(shipped, calendars, datetime(2024, 5, 14, 15, 14), it)
    assert clocks(stage, "I4")["first_response"].status == "met"
    assert clocks(stage, "I4")["resolution"].status == "open_within"
    assert out.tasks == [] and features["sla_at_risk_open"] == 0

    stage, out, features = run_one(shipped, calendars, datetime(2024, 5, 14, 15, 15), it)
    res = clocks(stage, "I4")["resolution"]
    assert res.status == "at_risk" and res.elapsed == timedelta(hours=11.25) and res.share_used == 0.75
    assert len(out.tasks) == 1
    task = out.tasks[0]
    assert (task.assignee, task.role, task.priority) == ("吴倩", None, "高")
    assert task.due == datetime(2024, 5, 15, 10, 0)  # the deadline itself
    assert task.title == "即将超时：投诉 I4 请在 2024-05-15 10:00 前完成解决"
    assert task.key == "sla-complaint|C1|I4|resolution|at_risk"
    assert features["sla_open"] == 1 and features["sla_at_risk_open"] == 1 and features["sla_breached_open"] == 0
    assert features["sla_timely_rate_window"] is None  # nothing finished or late yet


def test_at_risk_without_staff_goes_to_owner_then_unassigned_role(shipped, calendars):
    it = interaction("I5", datetime(2024, 5, 13, 10, 0), first=datetime(2024, 5, 13, 11, 0), staff=None)
    as_of = datetime(2024, 5, 14, 16, 0)
    _, out, _ = run_one(shipped, calendars, as_of, it, cust=customer(owner="张伟"))
    assert (out.tasks[0].assignee, out.tasks[0].role, out.tasks[0].handler) == ("张伟", None, False)  # as 客户经理
    _, out, _ = run_one(shipped, calendars, as_of, it, cust=customer(owner=None))
    assert (out.tasks[0].assignee, out.tasks[0].role) == ("王敏", "团队组长")  # unassigned_role
    # With a 处理人 the reminder goes to them as the ticket's handler (the task sheet's 分配方式 says so).
    with_staff = interaction("I5", datetime(2024, 5, 13, 10, 0), first=datetime(2024, 5, 13, 11, 0), staff="林晓")
    _, out, _ = run_one(shipped, calendars, as_of, with_staff, cust=customer(owner="张伟"))
    assert (out.tasks[0].assignee, out.tasks[0].role, out.tasks[0].handler) == ("林晓", None, True)


def test_paused_ticket_is_reported_not_escalated(shipped, calendars):
    # Waiting on the customer, and already past the Wed 10:00 resolution deadline on Thursday.
    it = interaction("I6", datetime(2024, 5, 13, 10, 0), first=datetime(2024, 5, 13, 11, 0), status="待客户回复")
    stage, out, features = run_one(shipped, calendars, datetime(2024, 5, 16, 12, 0), it)
    c = clocks(stage, "I6")
    assert c["first_response"].status == "met"
    assert c["resolution"].status == "paused" and c["resolution"].late is None
    assert out.tasks == []
    assert features["sla_open"] == 1 and features["sla_paused_open"] == 1 and features["sla_breached_open"] == 0
    assert stage.items[0].notes == ["解决：等客户回复，暂停计时（导出没有状态历史，按当前状态判断）；已过原截止时间"]

    # Paused before its deadline: the share used is still shown (Mon 6.5 h + Tue 3 h of 15 h).
    stage, out, _ = run_one(shipped, calendars, datetime(2024, 5, 14, 12, 0), it)
    res = clocks(stage, "I6")["resolution"]
    assert (res.status, res.elapsed, res.share_used) == ("paused", timedelta(hours=9.5), 9.5 / 15)
    assert out.tasks == []


def test_closed_without_resolved_time_uses_first_response(shipped, calendars):
    it = interaction("I7", datetime(2024, 5, 14, 9, 0), type="咨询", channel="邮件",
                     first=datetime(2024, 5, 14, 10, 0), status="已关闭")
    stage, _, _ = run_one(shipped, calendars, datetime(2024, 5, 17, 18, 0), it)
    c = clocks(stage, "I7")
    assert (c["first_response"].deadline, c["first_response"].status) == (datetime(2024, 5, 14, 11, 0), "met")
    assert (c["resolution"].deadline, c["resolution"].stopped, c["resolution"].status) == (
        datetime(2024, 5, 15, 9, 0), datetime(2024, 5, 14, 10, 0), "met")
    assert stage.items[0].target.rule_id == "sla-inquiry"


def test_closed_without_any_time_is_unknown(shipped, calendars):
    it = interaction("I8", datetime(2024, 5, 14, 9, 0), status="已解决")
    stage, out, features = run_one(shipped, calendars, datetime(2024, 5, 17, 18, 0), it)
    assert [c.status for c in stage.items[0].clocks] == ["unknown", "unknown"]
    assert out.tasks == [] and features["sla_open"] == 0 and features["sla_timely_rate_window"] is None
    assert stage.items[0].resolved


def test_only_tracked_types_created_by_the_as_of_time(shipped, calendars):
    as_of = datetime(2024, 5, 17, 12, 0)
    visit = interaction("V1", datetime(2024, 5, 13, 10, 0), type="回访")
    later = interaction("L1", datetime(2024, 5, 17, 12, 1))
    # A response recorded after the as-of instant had not happened yet then.
    future_reply = interaction("F1", datetime(2024, 5, 17, 9, 0), first=datetime(2024, 5, 17, 15, 0))
    stage, out, _ = run_one(shipped, calendars, as_of, visit, later, future_reply)
    assert [i.interaction.interaction_id for i in stage.items] == ["F1"]
    # Fri 09:00-12:00 is 3 of the 4 working hours: exactly 75 %, so at risk.
    assert clocks(stage, "F1")["first_response"].status == "at_risk"
    assert clocks(stage, "F1")["first_response"].share_used == 0.75


# --------------------------------------------------------------------------------------------------
# Targets: tier, channel, calendars, holidays
# --------------------------------------------------------------------------------------------------


def test_high_value_complaint_gets_two_hours(shipped, calendars):
    # Fri 17:00 + 2 working hours = Mon 10:00 (the weekend does not count).
    it = interaction("H1", datetime(2024, 5, 17, 17, 0), status="待处理")
    stage, out, _ = run_one(shipped, calendars, datetime(2024, 5, 17, 18, 0), it, tier="高")
    item = stage.items[0]
    assert item.target.rule_id == "sla-complaint-high"
    assert clocks(stage, "H1")["first_response"].deadline == datetime(2024, 5, 20, 10, 0)
    assert out.firings[0].rule_id == "sla-complaint-high"
    assert out.firings[0].source == rule_location("sla-complaint-high")
    assert out.firings[0].inputs["value_tier"] == "高" and out.firings[0].inputs["type"] == "投诉"

    stage, out, _ = run_one(shipped, calendars, datetime(2024, 5, 17, 18, 0), it, tier="中")
    assert stage.items[0].target.rule_id == "sla-complaint"
    assert clocks(stage, "H1")["first_response"].deadline == datetime(2024, 5, 20, 12, 0)
    assert out.firings[0].source == rule_location("sla-complaint")


def test_national_day_2024_holiday_does_not_count(shipped, calendars):
    # Mon 30 Sep 16:00: 2 h that day, then 1-7 Oct are public holidays; work resumes Tue 8 Oct.
    it = interaction("N1", datetime(2024, 9, 30, 16, 0), status="待处理", staff="郑浩")
    stage, out, _ = run_one(shipped, calendars, datetime(2024, 10, 8, 10, 0), it)
    c = clocks(stage, "N1")
    assert c["first_response"].deadline == datetime(2024, 10, 8, 11, 0)
    assert c["resolution"].deadline == datetime(2024, 10, 9, 16, 0)
    # After the holiday 3 of 4 working hours are used: at risk, not breached.
    assert c["first_response"].status == "at_risk" and c["first_response"].elapsed == timedelta(hours=3)
    assert c["resolution"].status == "open_within"
    assert [(t.assignee, t.due) for t in out.tasks] == [("郑浩", datetime(2024, 10, 8, 11, 0))]


def test_spring_festival_2025_and_adjusted_working_sunday(shipped, calendars):
    # Fri 24 Jan 2025 17:00 inquiry: 1 h on Friday, Sun 26 Jan is a 调休 working day → 10:00 that Sunday.
    it = interaction("S1", datetime(2025, 1, 24, 17, 0), type="咨询", channel="邮件",
                     first=datetime(2025, 1, 26, 9, 30), resolved=datetime(2025, 2, 5, 9, 0), status="已解决")
    stage, _, _ = run_one(shipped, calendars, datetime(2025, 2, 10, 18, 0), it)
    c = clocks(stage, "S1")
    assert (c["first_response"].deadline, c["first_response"].status) == (datetime(2025, 1, 26, 10, 0), "met")
    assert c["resolution"].deadline == datetime(2025, 1, 26, 17, 0)
    # Late: Sun 17:00-18:00 and Mon 27 Jan (7.5 h); 28 Jan-4 Feb are the Spring Festival holiday.
    assert c["resolution"].status == "breached" and c["resolution"].late == timedelta(hours=8.5)


def test_hotline_inquiry_runs_on_the_24x7_calendar(shipped, calendars):
    it = interaction("T1", datetime(2024, 5, 18, 22, 30), type="咨询", channel="电话", status="待处理")
    stage, out, _ = run_one(shipped, calendars, datetime(2024, 5, 19, 0, 0), it)
    item = stage.items[0]
    assert item.target.rule_id == "sla-inquiry-hotline" and item.target.calendar_name == "hotline_24x7"
    c = clocks(stage, "T1")
    assert c["first_response"].deadline == datetime(2024, 5, 18, 23, 30)
    assert c["first_response"].status == "open_breached" and c["first_response"].late == timedelta(minutes=30)
    assert out.tasks[0].title == "超时升级：咨询 T1 首次响应已超时 30 个工作分钟"  # under an hour: minutes


def test_suggestion_has_only_a_reply_clock(shipped, calendars):
    it = interaction("G1", datetime(2024, 5, 15, 10, 0), type="建议", channel="官网留言")
    stage, _, _ = run_one(shipped, calendars, datetime(2024, 5, 17, 18, 0), it)
    c = clocks(stage, "G1")
    assert list(c) == ["resolution"]
    assert c["resolution"].deadline == datetime(2024, 5, 20, 10, 0)


def test_lateness_of_long_open_items_matches_the_calendar(calendars):
    # The per-day shortcut gives the same working time as the calendar itself, across holidays.
    standard = calendars["standard"]
    end = datetime(2025, 2, 10, 23, 59, 59)
    until = sla_module.UntilAsOf(standard, end)
    moments = [datetime(2024, 1, 2, 10, 0) + timedelta(days=d, hours=d % 13, minutes=7 * d) for d in range(0, 400, 9)]
    moments += [datetime(2025, 2, 10, 10, 30), datetime(2024, 9, 29, 17, 0), datetime(2025, 1, 26, 8, 0)]
    for moment in reversed(moments):  # later days first, so the cache is extended backwards too
        assert until.since(moment) == standard.business_time_between(moment, end), moment


def test_late_text():
    clock = sla_module.Clock("resolution", sla_module.parse_duration("2d"), datetime(2024, 5, 15, 10), "open_breached",
                             late=timedelta(hours=3, minutes=30))
    assert late_text(clock) == "已超时 3.5 个工作小时"
    clock.late = timedelta(hours=2)
    assert late_text(clock) == "已超时 2 个工作小时"


# --------------------------------------------------------------------------------------------------
# End to end: a small workbook → sla.xlsx with hand-computed KPIs
# --------------------------------------------------------------------------------------------------


def write_xlsx(path: Path, sheet: str, headers: list[str], rows: list[list]) -> None:
    """Write an export the way a CRM does, with real date cells (xlsxwriter)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    book = xlsxwriter.Workbook(str(path))
    ws = book.add_worksheet(sheet)
    stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    ws.write_row(0, 0, headers)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, datetime):
                ws.write_datetime(r, c, value, stamp)
            elif isinstance(value, date):
                ws.write_datetime(r, c, datetime.combine(value, datetime.min.time()), day)
            elif isinstance(value, (int, float)):
                ws.write_number(r, c, value)
            else:
                ws.write_string(r, c, value)
    book.close()


def customer_row(cid: str, name: str, owner: str | None) -> list:
    values = {"客户编号": cid, "客户名称": name, "手机号码": "13800000000", "客户经理": owner, "客户阶段": "签约",
              "营销许可": "是", "退订": "否", "偏好渠道": "短信"}
    return [values.get(h) for h in CUSTOMER_HEADERS]


def interaction_row(iid, cid, created, channel, kind, first, resolved, status, satisfaction, staff) -> list:
    values = {"互动编号": iid, "客户编号": cid, "创建时间": created, "渠道": channel, "互动类型": kind,
              "首次响应时间": first, "解决时间": resolved, "状态": status, "满意度": satisfaction, "处理人": staff,
              "内容": "测试"}
    return [values.get(h) for h in INTERACTION_HEADERS]


def small_inbox(folder: Path) -> Path:
    d = datetime
    write_xlsx(folder / "customers.xlsx", "客户信息", CUSTOMER_HEADERS, [
        customer_row("C1", "北京星辰科技", "张伟"),
        customer_row("C2", "上海云帆", "李娜"),
        customer_row("C3", "广州远景", None),
    ])
    write_xlsx(folder / "interactions.xlsx", "互动记录", INTERACTION_HEADERS, [
        # met / met
        interaction_row("I1", "C1", d(2024, 5, 13, 10), "微信", "投诉", d(2024, 5, 13, 11), d(2024, 5, 14, 10), "已解决", 4, "马丽"),
        # breached / breached (closed late)
        interaction_row("I2", "C1", d(2024, 5, 13, 10), "电话", "投诉", d(2024, 5, 13, 16, 30), d(2024, 5, 15, 15), "已解决", 2, "马丽"),
        # inquiry closed without resolved time: resolved at the first response, met / met
        interaction_row("I3", "C2", d(2024, 5, 14, 9), "邮件", "咨询", d(2024, 5, 14, 10), None, "已关闭", 5, "吴倩"),
        # no response: first response due Thu 14:30 → open breached; escalated
        interaction_row("I4", "C2", d(2024, 5, 16, 9), "在线客服", "投诉", None, None, "待处理", None, "吴倩"),
        # suggestion due Mon 10:00, 21.5 of 22.5 h used → at risk; C3 has no owner → 团队组长
        interaction_row("I5", "C3", d(2024, 5, 15, 10), "官网留言", "建议", None, None, "处理中", None, None),
        # hotline inquiry answered, waiting on the customer → resolution paused
        interaction_row("I6", "C3", d(2024, 5, 17, 14), "电话", "咨询", d(2024, 5, 17, 14, 20), None, "待客户回复", None, "郑浩"),
        # not tracked: a follow-up, and a complaint after the as-of day
        interaction_row("I7", "C1", d(2024, 5, 14, 10), "电话", "回访", None, None, "已完成", 5, "张伟"),
        interaction_row("I8", "C2", d(2024, 5, 18, 10), "微信", "投诉", None, None, "待处理", None, "吴倩"),
    ])
    write_xlsx(folder / "orders.xlsx", "订单", ORDER_HEADERS, [
        ["O1", "C1", date(2024, 3, 1), 120000, "企业版", 1],
    ])
    return folder


def read_sheet(path: Path, name: str) -> list[tuple]:
    wb = openpyxl.load_workbook(path)
    return [row for row in wb[name].iter_rows(values_only=True) if any(v is not None for v in row)]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sla_run")
    inbox = small_inbox(tmp / "inbox")
    result = run_batch(RunOptions(policies=SHIPPED_POLICIES, inbox=inbox, outbox=tmp / "out", as_of=date(2024, 5, 17),
                                  templates=SHIPPED_TEMPLATES))
    return result.folder


def test_sla_sheet_lists_every_tracked_interaction(run_folder):
    rows = read_sheet(run_folder / "sla.xlsx", "服务时限")
    header = rows[0]
    col = {h: i for i, h in enumerate(header)}
    by_id = {r[col["互动编号"]]: r for r in rows[1:]}
    assert sorted(by_id) == ["I1", "I2", "I3", "I4", "I5", "I6"]
    i2 = by_id["I2"]
    # C1 bought for 120,000 this year: 高 tier, so 2 working hours (Mon 10:00 → 12:00; answered 16:30).
    assert (i2[col["首次响应时限"]], i2[col["首次响应截止"]], i2[col["首次响应结果"]], i2[col["首次响应超时(小时)"]]) == (
        "2h", datetime(2024, 5, 13, 12, 0), "超时（已完成）", 3)
    assert (i2[col["解决截止"]], i2[col["解决时间"]], i2[col["解决结果"]], i2[col["解决超时(小时)"]]) == (
        datetime(2024, 5, 15, 10, 0), datetime(2024, 5, 15, 15, 0), "超时（已完成）", 3.5)
    assert i2[col["价值等级"]] == "高" and i2[col["时限规则"]] == "sla-complaint-high"
    assert i2[col["规则位置"]] == rule_location("sla-complaint-high")
    # I4: due Thu 14:30; by Fri 23:59:59 Thu 14:30-18:00 and all of Friday have passed: 11 working hours.
    assert by_id["I4"][col["首次响应结果"]] == "超时未完成" and by_id["I4"][col["首次响应超时(小时)"]] == 11
    assert by_id["I4"][col["解决结果"]] == "临近超时"  # due Mon 09:00, 15 of 15 h used
    assert by_id["I4"][col["任务"]] == "升级：李强（客服主管）"
    assert by_id["I5"][col["解决结果"]] == "临近超时" and by_id["I5"][col["首次响应时限"]] == "不考核"
    assert by_id["I5"][col["任务"]] == "提醒：王敏（团队组长）"
    assert by_id["I6"][col["解决结果"]] == "暂停（等客户回复）" and by_id["I6"][col["日历"]] == "hotline_24x7"
    assert by_id["I3"][col["解决时间"]] == datetime(2024, 5, 14, 10, 0)


def test_kpi_sheet_matches_hand_computed_figures(run_folder):
    rows = read_sheet(run_folder / "sla.xlsx", "KPI")
    header = [h.split("\n")[0] for h in rows[0]]
    assert header == ["维度", "分组", "跟踪数", "已解决数", "问题解决率", "及时率计算数", "及时数", "处理及时率", "评分数",
                      "平均满意度", "超时未完成", "临近超时", "暂停"]
    kpi = {(r[0], r[1]): r[2:] for r in rows[1:]}
    # tracked, resolved, resolution rate, decided, timely, timely rate, rated, avg satisfaction, late, at risk, paused
    # Overall: 6 tracked; resolved I1 I2 I3; decided I1 I2 I3 I4 (I4 is late), timely I1 I3; ratings 4, 2, 5.
    expected = {
        ("总体", "全部"): (6, 3, 0.5, 4, 2, 0.5, 3, 3.67, 1, 1, 1),
        ("互动类型", "投诉"): (3, 2, 2 / 3, 3, 1, 1 / 3, 2, 3, 1, 0, 0),
        ("互动类型", "咨询"): (2, 1, 0.5, 1, 1, 1, 1, 5, 0, 0, 1),
        ("互动类型", "建议"): (1, 0, 0, 0, 0, None, 0, None, 0, 1, 0),
        ("价值等级", "高"): (2, 2, 1, 2, 1, 0.5, 2, 3, 0, 0, 0),
        ("处理人", "马丽"): (2, 2, 1, 2, 1, 0.5, 2, 3, 0, 0, 0),
        ("处理人", "吴倩"): (2, 1, 0.5, 2, 1, 0.5, 1, 5, 1, 0, 0),
        ("处理人", "郑浩"): (1, 0, 0, 0, 0, None, 0, None, 0, 0, 1),
        ("处理人", "（未分配）"): (1, 0, 0, 0, 0, None, 0, None, 0, 1, 0),
        ("客户经理", "张伟"): (2, 2, 1, 2, 1, 0.5, 2, 3, 0, 0, 0),
        ("客户经理", "李娜"): (2, 1, 0.5, 2, 1, 0.5, 1, 5, 1, 0, 0),
        ("客户经理", "（未分配）"): (2, 0, 0, 0, 0, None, 0, None, 0, 1, 1),
        ("渠道", "电话"): (2, 1, 0.5, 1, 0, 0, 1, 2, 0, 0, 1),
        ("渠道", "微信"): (1, 1, 1, 1, 1, 1, 1, 4, 0, 0, 0),
        ("渠道", "邮件"): (1, 1, 1, 1, 1, 1, 1, 5, 0, 0, 0),
        ("渠道", "在线客服"): (1, 0, 0, 1, 0, 0, 0, None, 1, 0, 0),
        ("渠道", "官网留言"): (1, 0, 0, 0, 0, None, 0, None, 0, 1, 0),
    }
    for key, values in expected.items():
        assert kpi[key] == pytest.approx(values), key
    # C2 and C3 have no orders: both in the same tier, which holds the other 4 items.
    other_tiers = {k: v for k, v in kpi.items() if k[0] == "价值等级" and k[1] != "高"}
    assert sum(v[0] for v in other_tiers.values()) == 4
    assert list(kpi)[0] == ("总体", "全部")
    notes = read_sheet(run_folder / "sla.xlsx", "指标说明")
    assert ("问题解决率", "已解决数 ÷ 跟踪数。") in notes
    assert notes[-1] == ("计算时点", "2024-05-17 23:59:59（--as-of）")


def test_run_tasks_and_decisions(run_folder):
    lead = read_sheet(run_folder / "tasks" / "李强.xlsx", "李强")
    task, rule = lead[0].index("任务"), lead[0].index("规则编号")
    assert [(r[0], r[2], r[task]) for r in lead[1:]] == [
        (datetime(2024, 5, 20, 9, 0), "C1", "客户对投诉处理不满意（I2，评分 2）：重新处理"),  # care: CARE-COMPLAINT-REDO
        (datetime(2024, 5, 20, 11, 0), "C2", "超时升级：投诉 I4 首次响应已超时 11 个工作小时"),
    ]
    team = read_sheet(run_folder / "tasks" / "王敏.xlsx", "王敏")
    assert [(r[0], r[2], r[task]) for r in team[1:] if r[rule] == "sla-suggestion"] == [
        (datetime(2024, 5, 20, 10, 0), "C3", "即将超时：建议 I5 请在 2024-05-20 10:00 前完成解决"),
    ]
    log = [json.loads(line) for line in (run_folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    sla = [d for d in log if d["stage"] == "sla"]
    assert sorted(d["inputs"]["interaction_id"] for d in sla) == ["I1", "I2", "I3", "I4", "I5", "I6"]
    i4 = next(d for d in sla if d["inputs"]["interaction_id"] == "I4")
    assert i4["rule_id"] == "sla-complaint" and i4["source"] == rule_location("sla-complaint")
    first = i4["outputs"][0]["sla"]["first_response"]
    assert datetime.fromisoformat(first.pop("deadline")) == datetime(2024, 5, 16, 14, 30)
    assert first == {"target": "4h", "status": "open_breached", "late_minutes": 660}
    assert i4["outputs"][1]["task"]["assignee"] == "李强"
    manifest = json.loads((run_folder / "manifest.json").read_text(encoding="utf-8"))
    sla_counts = manifest["counts"]["sla"]
    assert sla_counts["tracked"] == 6
    assert sla_counts["first_response"]["open_breached"] == 1
    # per clock, every tracked interaction is in exactly one status
    assert sum(sla_counts["first_response"].values()) == sum(sla_counts["resolution"].values()) == 6


# --------------------------------------------------------------------------------------------------
# Policy errors name file:line:col
# --------------------------------------------------------------------------------------------------

GOOD_SLA = """\
kind: sla
id: sla
calendar: standard
escalation_role: 客服主管
at_risk_share: 0.75
targets:
  - id: t-complaint
    when: type == '投诉' and value_tier == '高'
    first_response: 2h
    resolution: 2d
  - id: t-other
    when: true
    resolution: 1d
"""


def policies_with_sla(tmp_path: Path, text: str) -> Path:
    import shutil
    root = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, root)
    (root / "sla.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def sla_problems(tmp_path: Path, calendars, text: str) -> list:
    policyset = load_policies(policies_with_sla(tmp_path, text))
    with pytest.raises(PolicyError) as exc:
        sla_module.load_sla_policy(policyset, calendars)
    return exc.value.problems


def test_good_small_policy_loads(tmp_path, calendars):
    policyset = load_policies(policies_with_sla(tmp_path, GOOD_SLA))
    policy = sla_module.load_sla_policy(policyset, calendars)
    assert [t.rule_id for t in policy.targets] == ["t-complaint", "t-other"]
    assert str(policy.targets[1].location) == "sla.yaml:11:5"


def test_unknown_escalation_role(tmp_path, calendars):
    problems = sla_problems(tmp_path, calendars, GOOD_SLA.replace("escalation_role: 客服主管", "escalation_role: 客服经理"))
    assert [(p.code, str(p.location)) for p in problems] == [("unknown-role", "sla.yaml:4:18")]
    assert "客服经理" in problems[0].message and "客服主管" in problems[0].fix


def test_bad_duration(tmp_path, calendars):
    problems = sla_problems(tmp_path, calendars, GOOD_SLA.replace("first_response: 2h", "first_response: 2 hours"))
    assert [(p.code, str(p.location)) for p in problems] == [("bad-duration", "sla.yaml:9:21")]


def test_unknown_name_in_when(tmp_path, calendars):
    problems = sla_problems(tmp_path, calendars, GOOD_SLA.replace("value_tier == '高'", "value_teir == '高'"))
    # "    when: type == '投诉' and " is 27 characters: the misspelt name starts in column 28.
    assert [(p.code, str(p.location)) for p in problems] == [("unknown-name", "sla.yaml:8:28")]
    assert "value_tier" in (problems[0].fix or "") + problems[0].message


def test_unknown_calendar_and_bad_share_and_stage_feature_in_when(tmp_path, calendars):
    text = (GOOD_SLA.replace("calendar: standard", "calendar: office")
            .replace("at_risk_share: 0.75", "at_risk_share: 75")
            .replace("when: true", "when: sla_open > 0"))
    problems = sla_problems(tmp_path, calendars, text)
    assert [(p.code, str(p.location)) for p in problems] == [
        ("unknown-calendar", "sla.yaml:3:11"),
        ("bad-value", "sla.yaml:5:16"),
        ("unknown-name", "sla.yaml:12:11"),
    ]


def test_unknown_field_and_missing_clock(tmp_path, calendars):
    text = GOOD_SLA.replace("    resolution: 1d\n", "    resolve: 1d\n")
    problems = sla_problems(tmp_path, calendars, text)
    assert [(p.code, str(p.location)) for p in problems] == [
        ("unknown-field", "sla.yaml:13:5"),
        ("missing-field", "sla.yaml:11:5"),
    ]
    assert "resolution" in problems[0].fix  # the allowed fields are listed


def test_stage_features_are_declared():
    assert set(FEATURES) == {"sla_open", "sla_at_risk_open", "sla_breached_open", "sla_paused_open",
                             "sla_breached_window", "sla_timely_rate_window"}
    assert all(type_name == "number" for type_name, _ in FEATURES.values())


# --------------------------------------------------------------------------------------------------
# Daily batches on one outbox and ledger: each deadline's escalation is issued once
# --------------------------------------------------------------------------------------------------


def sla_task_rows(folder: Path, sheet: str, interaction_id: str) -> list[tuple[str, str, object]]:
    """(去重键, 任务, 截止时间 or 原截止时间) of one ticket's SLA rows on a page of 李强's (客服主管) task workbook."""
    rows = read_sheet(folder / "tasks" / "李强.xlsx", sheet)
    header = rows[0]
    key, title = header.index("去重键"), header.index("任务")
    due = header.index("原截止时间") if "原截止时间" in header else 0
    return sorted((r[key], r[title], r[due]) for r in rows[1:] if r[key].startswith("sla-") and f"|{interaction_id}|" in r[key])


@pytest.fixture(scope="module")
def daily_runs(tmp_path_factory) -> list[Path]:
    """Three date-only daily batches (24, 25, 26 Nov 2026) on one outbox and ledger, two complaints left open."""
    from conftest import customer, run_cli, write_inbox

    tmp = tmp_path_factory.mktemp("sla_daily")
    d = datetime
    # Strategic customers (需求类型 战略): 2 working hours to respond, 2 working days to resolve.
    inbox = write_inbox(tmp / "inbox", [customer("C200", 需求类型="战略"), customer("C201", 需求类型="战略")], [
        # Tue 16:00, never answered: response due 18:00 the same day, resolution due Thu 26 Nov 16:00.
        ["I90000001", "C200", d(2026, 11, 24, 16), "电话", "投诉", None, None, "待处理", None, "吴倩", None, "测试"],
        # Thu 19 Nov 10:00, never answered: both deadlines long past when the first batch sees it.
        ["I90000002", "C201", d(2026, 11, 19, 10), "微信", "投诉", None, None, "待处理", None, "吴倩", None, "测试"],
    ])
    return [run_cli(inbox, tmp / "outbox", day) for day in ("2026-11-24", "2026-11-25", "2026-11-26")]


def test_a_resolution_breach_after_an_escalated_first_response_is_escalated_again(daily_runs):
    day1, day2, day3 = daily_runs
    d = datetime
    key = "sla-complaint-high|C200|I90000001|{}|escalation"
    assert sla_task_rows(day1, "李强", "I90000001") == [
        (key.format("first_response"), "超时升级：投诉 I90000001 首次响应已超时（不足 1 个工作分钟）", d(2026, 11, 25, 11)),
    ]
    assert sla_task_rows(day2, "李强", "I90000001") == []
    assert sla_task_rows(day2, "仍待处理", "I90000001") == [
        (key.format("first_response"), "超时升级：投诉 I90000001 首次响应已超时 7.5 个工作小时", d(2026, 11, 25, 11)),
    ]
    # Thu 16:00 the resolution deadline passes too: new work with its own key and due time.
    assert sla_task_rows(day3, "李强", "I90000001") == [
        (key.format("resolution"), "超时升级：投诉 I90000001 首次响应已超时 15 个工作小时，解决已超时 2 个工作小时",
         d(2026, 11, 27, 11)),
    ]
    assert sla_task_rows(day3, "仍待处理", "I90000001") == []


def test_both_deadlines_late_at_first_sight_give_one_escalation_never_repeated(daily_runs):
    d = datetime
    # One task names both clocks and carries the resolution key: the first-response breach is part of it.
    key = "sla-complaint-high|C201|I90000002|resolution|escalation"
    day1, day2, day3 = daily_runs
    assert sla_task_rows(day1, "李强", "I90000002") == [
        (key, "超时升级：投诉 I90000002 首次响应已超时 27 个工作小时，解决已超时 14 个工作小时", d(2026, 11, 25, 11)),
    ]
    for day, first, resolution in ((day2, "34.5", "21.5"), (day3, "42", "29")):
        assert sla_task_rows(day, "李强", "I90000002") == []
        assert sla_task_rows(day, "仍待处理", "I90000002") == [
            (key, f"超时升级：投诉 I90000002 首次响应已超时 {first} 个工作小时，解决已超时 {resolution} 个工作小时",
             d(2026, 11, 25, 11)),
        ]


def test_late_text_under_an_hour_says_minutes_not_zero_hours():
    clock = sla_module.Clock("first_response", sla_module.parse_duration("2h"), datetime(2026, 11, 24, 18),
                             "open_breached", late=timedelta(0))
    # A date-only run (23:59:59) after an 18:00 deadline: no working time has passed since.
    assert late_text(clock) == "已超时（不足 1 个工作分钟）"
    clock.late = timedelta(minutes=45, seconds=30)
    assert late_text(clock) == "已超时 45 个工作分钟"
    clock.target = sla_module.parse_duration("48h wall")
    assert late_text(clock) == "已超时 45 分钟"
    clock.late = timedelta(hours=1)
    assert late_text(clock) == "已超时 1 小时"


def test_explain_and_sla_sheet_agree_on_a_breach_with_no_working_time_yet(daily_runs):
    from click.testing import CliRunner

    from engine.cli import main

    # 24 Nov, date-only run: the 18:00 response deadline passed, no working time since.
    shown = CliRunner().invoke(main, ["explain", "C200", "--run", str(daily_runs[0])], catch_exceptions=False).output
    assert "首次响应 2h 截止 2026-11-24T18:00:00 → open_breached，超时不足 1 分钟" in shown
    assert "超时升级：投诉 I90000001 首次响应已超时（不足 1 个工作分钟）" in shown
    rows = read_sheet(daily_runs[0] / "sla.xlsx", "服务时限")
    header, row = rows[0], next(r for r in rows[1:] if r[2] == "I90000001")
    assert row[header.index("首次响应结果")] == "超时未完成"
    assert row[header.index("首次响应超时(小时)")] == 0
