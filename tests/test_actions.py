"""Tasks built from rule outputs: titles and scripts rendered from the shipped organisation and calendar."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from engine.actions import ActionBuilder
from engine.calendar import load_calendars
from engine.errors import PolicyError
from engine.model import Customer, SourceRow
from engine.policy.loader import load_policies
from engine.policy.model import RuleSet, TaskSpec
from engine.render import make_environment

from conftest import SHIPPED_POLICIES, SHIPPED_TEMPLATES

AS_OF = date(2026, 11, 20)


@pytest.fixture(scope="module")
def shipped():
    return load_policies(SHIPPED_POLICIES)


@pytest.fixture()
def builder(shipped):
    org = shipped.organization
    calendar = load_calendars(SHIPPED_POLICIES / "calendar.yaml")[org.task_calendar]
    return ActionBuilder(org, calendar, make_environment(SHIPPED_TEMPLATES), AS_OF)


def rule_with_task(shipped, title: str, script: str | None = None):
    """The shipped CL-ASSIGN-DEDICATED-OWNER rule with its task's title and script replaced."""
    rs = next(rs for rs in shipped.all_rulesets() if rs.policy_id == "classification_actions")
    rule = next(r for r in rs.rules if r.rule_id == "CL-ASSIGN-DEDICATED-OWNER")
    return rs, rule, TaskSpec(title=title, assign_to="owner", due="2d", priority="中", script=script)


def titles(builder: ActionBuilder, rs: RuleSet, rule, spec: TaskSpec, people: list[dict]) -> list[tuple[str, str | None]]:
    out = []
    for n, features in enumerate(people):
        customer = Customer(customer_id=f"C{n}", source=SourceRow("customers.xlsx", "客户信息", n + 2),
                            name=features.pop("name", f"客户{n}"), owner="张伟")
        task = builder.task(spec, rule, rs, customer, features, builder.context(customer, features))
        out.append((task.title, task.script))
    return out


def test_titles_follow_each_customers_values(builder, shipped):
    # Customers with equal values share a rendering; any value that differs gives its own text.
    rs, rule, spec = rule_with_task(shipped, "为{{ customer.value_tier }}价值/{{ customer.need_type }}客户指派经理",
                                    "{{ customer.service_team }}：{% if customer.vip %}贵宾{% else %}普通{% endif %}")
    people = [
        {"value_tier": "高", "need_type": "战略", "service_team": "大客户部", "vip": True},
        {"value_tier": "高", "need_type": "战略", "service_team": "大客户部", "vip": True},
        {"value_tier": "高", "need_type": "普通", "service_team": "大客户部", "vip": True},
        {"value_tier": "高", "need_type": "战略", "service_team": "大客户部", "vip": False},
        {"value_tier": "低", "need_type": "战略", "service_team": "客服中心", "vip": None},
        {"value_tier": "高", "need_type": "战略", "service_team": "大客户部", "vip": True},
    ]
    assert titles(builder, rs, rule, spec, people) == [
        ("为高价值/战略客户指派经理", "大客户部：贵宾"),
        ("为高价值/战略客户指派经理", "大客户部：贵宾"),
        ("为高价值/普通客户指派经理", "大客户部：贵宾"),
        ("为高价值/战略客户指派经理", "大客户部：普通"),
        ("为低价值/战略客户指派经理", "客服中心：普通"),
        ("为高价值/战略客户指派经理", "大客户部：贵宾"),
    ]


def test_equal_numbers_of_other_types_render_as_themselves(builder, shipped):
    rs, rule, spec = rule_with_task(shipped, "回访间隔 {{ customer.revisit_interval_days }}")
    people = [{"revisit_interval_days": v} for v in (1, True, 1.0, 1, 0.0, -0.0, Decimal("1.0"), Decimal("1.00"),
                                                     datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=8))),
                                                     datetime(2026, 1, 1, 1, tzinfo=timezone.utc))]
    assert [title for title, _ in titles(builder, rs, rule, spec, people)] == [
        "回访间隔 1", "回访间隔 True", "回访间隔 1.0", "回访间隔 1", "回访间隔 0.0", "回访间隔 -0.0", "回访间隔 1.0",
        "回访间隔 1.00", "回访间隔 2026-01-01 09:00:00+08:00", "回访间隔 2026-01-01 01:00:00+00:00"]


def test_titles_reading_more_than_field_values_render_per_customer(builder, shipped):
    # The customer's name comes from the record; a method call and a list read whole are not plain values.
    rs, rule, spec = rule_with_task(shipped, "联系{{ customer.name }}（{{ customer.get('value_tier') }}）",
                                    "标签：{{ customer.labels|join('、') }}")
    people = [
        {"name": "甲公司", "value_tier": "高", "labels": ["老客户"]},
        {"name": "乙公司", "value_tier": "高", "labels": ["老客户", "投诉过"]},
        {"name": "乙公司", "value_tier": "低", "labels": []},
    ]
    assert titles(builder, rs, rule, spec, people) == [
        ("联系甲公司（高）", "标签：老客户"),
        ("联系乙公司（高）", "标签：老客户、投诉过"),
        ("联系乙公司（低）", "标签："),
    ]


def test_a_missing_field_fails_every_time(builder, shipped):
    rs, rule, spec = rule_with_task(shipped, "为{{ customer.no_such_field }}客户")
    for _ in range(2):  # a failed rendering is not kept for the next customer
        with pytest.raises(PolicyError) as err:
            titles(builder, rs, rule, spec, [{}])
        assert err.value.problems[0].code == "template-undefined"
        assert "no_such_field" in err.value.problems[0].message


def test_a_failing_title_names_the_customer_not_their_data(builder, shipped):
    rs, rule, spec = rule_with_task(shipped, "联系{{ params[customer.name] }}")
    with pytest.raises(PolicyError) as err:
        titles(builder, rs, rule, spec, [{"name": "星河贸易有限公司", "customer_id": "C0"}])
    message = err.value.problems[0].message
    assert message == (f"规则 {rule.rule_id}（客户 C0）的任务标题或话术无法生成 / "
                       f"rule {rule.rule_id} (customer C0): 'dict object' has no attribute '…'")
