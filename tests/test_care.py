"""Care stage: lunar birthdays, festivals, post-purchase follow-up, revisits by tier, member day, survey.

Dates were checked against lunar-python 1.4.8 and a printed 万年历: 中秋 2025-10-06 and 2026-09-25;
春节 2026-02-17 and 2027-02-06; 腊月初八 of lunar 2025 is 2026-01-26; lunar 2025 has 闰六月 (六月初十
2025-07-04, 闰六月初十 2025-08-03); 腊月 of lunar 2025 has 29 days (除夕 2026-02-16), of lunar 2023 30
days (除夕 2024-02-09). Tests load the real policies/ folder and run the real per-customer path
(engine.run.evaluate_dataset), no mocks.
"""
from __future__ import annotations

import random
import shutil
from datetime import date, datetime
from pathlib import Path

import pytest

from engine.errors import PolicyError
from engine.model import Customer, Dataset, Interaction, Order, SourceRow
from engine.policy.loader import load_policies
from engine.run import evaluate_dataset
from engine.stages import CustomerFacts
from engine.stages.care import (
    CareStage,
    load_care_settings,
    lunar_to_solar,
    next_birthday,
    next_lunar_date,
    window_open,
)

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
SRC = SourceRow("test.xlsx", "Sheet1", 2)


@pytest.fixture(scope="module")
def policyset():
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def settings(policyset):
    return load_care_settings(policyset)


def customer(cid: str, **kw) -> Customer:
    base = dict(name=f"客户{cid}", owner="张伟", phone="13800000000", marketing_consent=True, preferred_channel="短信",
                signed_date=date(2024, 1, 1))
    base.update(kw)
    return Customer(customer_id=cid, source=SRC, **base)


def order(oid: str, cid: str, day: date, amount: float = 1000.0) -> Order:
    return Order(oid, cid, day, amount, SRC)


def interaction(iid: str, cid: str, when: datetime, kind: str, **kw) -> Interaction:
    return Interaction(iid, cid, when, SRC, type=kind, **kw)


def run(policyset, as_of: date, customers, orders=(), interactions=()):
    data = Dataset(customers=list(customers), orders=sorted(orders, key=lambda o: o.date), interactions=list(interactions))
    ev = evaluate_dataset(policyset, data, as_of, TEMPLATES)
    rows = {r["customer_id"]: r for r in ev.customer_rows}
    return ev, rows


def tasks_of(ev, rule_id: str) -> dict:
    return {t.customer_id: t for t in ev.tasks if t.rule_id == rule_id}


def messages_of(ev, rule_id: str) -> dict:
    return {m.customer_id: m for m in ev.messages if m.rule_id == rule_id}


# -- lunar and solar dates ------------------------------------------------------------------------


def test_lunar_birthday_across_the_solar_year_boundary():
    # 腊月初八: the lunar-2025 occurrence is in January 2026, after the solar year has turned.
    assert next_lunar_date(12, 8, date(2025, 12, 20)) == date(2026, 1, 26)
    # From 5 Jan 2026 the lunar year is still 2025: a naive "lunar date in this solar year" gives 2027-01-15.
    assert next_lunar_date(12, 8, date(2026, 1, 5)) == date(2026, 1, 26)
    assert next_lunar_date(12, 8, date(2026, 1, 26)) == date(2026, 1, 26)  # the day itself
    assert next_lunar_date(12, 8, date(2026, 1, 27)) == date(2027, 1, 15)


def test_leap_month_birthday_stays_in_the_ordinary_month():
    assert lunar_to_solar(2025, 6, 10) == date(2025, 7, 4)  # 六月初十, not 闰六月初十 (2025-08-03)
    # After the ordinary 六月初十 has passed, the next birthday is next year's, not the leap month's.
    assert next_lunar_date(6, 10, date(2025, 8, 1)) == date(2026, 7, 23)


def test_day_30_in_a_29_day_month_is_the_last_day():
    assert lunar_to_solar(2025, 12, 30) == date(2026, 2, 16)  # 腊月 has 29 days: 除夕 is 廿九
    assert lunar_to_solar(2023, 12, 30) == date(2024, 2, 9)  # 腊月 has 30 days
    assert next_birthday(date(1985, 12, 30), True, date(2026, 1, 1)) == date(2026, 2, 16)


def test_fast_conversion_agrees_with_the_library():
    # lunar_to_solar goes through each month's first Julian day (fast); Lunar.fromYmd is the library's
    # documented, slower way. They must agree, leap years and 30th days included.
    from lunar_python import Lunar, LunarMonth

    rng = random.Random(4)
    for _ in range(40):
        year, month, day = rng.randint(1940, 2080), rng.randint(1, 12), rng.choice((1, 15, 29, 30))
        last = min(day, LunarMonth.fromYm(year, month).getDayCount())
        solar = Lunar.fromYmd(year, month, last).getSolar()
        assert lunar_to_solar(year, month, day) == date(solar.getYear(), solar.getMonth(), solar.getDay()), (year, month, day)


def test_solar_birthdays_including_29_february():
    assert next_birthday(date(1990, 3, 5), False, date(2026, 3, 5)) == date(2026, 3, 5)
    assert next_birthday(date(1990, 3, 5), False, date(2026, 3, 6)) == date(2027, 3, 5)
    assert next_birthday(date(1992, 2, 29), False, date(2026, 1, 10)) == date(2026, 2, 28)
    assert next_birthday(date(1992, 2, 29), False, date(2027, 12, 1)) == date(2028, 2, 29)


def test_windows_run_across_the_year_end():
    # A birthday on 2 January is greeted from 30 December on; before, the window was cut at 31 December
    # (its key had the run's year), so a batch on 1 or 2 January did not greet at all.
    first, last = date(2025, 12, 30), date(2026, 1, 2)
    assert window_open(date(2025, 12, 31), first, last)
    assert window_open(date(2026, 1, 1), first, last)
    assert window_open(date(2026, 1, 2), first, last)
    assert not window_open(date(2025, 12, 29), first, last)
    assert not window_open(date(2026, 1, 3), first, last)


# -- festivals ------------------------------------------------------------------------------------


def stage_at(settings, day: date) -> CareStage:
    return CareStage(settings, day)


def test_festival_dates_in_two_different_years(settings):
    by_name = {f.name: f for f in settings.festivals}
    assert by_name["中秋"].next_date(date(2025, 9, 1)) == date(2025, 10, 6)
    assert by_name["中秋"].next_date(date(2025, 10, 7)) == date(2026, 9, 25)
    assert by_name["春节"].next_date(date(2025, 12, 1)) == date(2026, 2, 17)
    assert by_name["春节"].next_date(date(2026, 2, 18)) == date(2027, 2, 6)
    assert by_name["端午"].next_date(date(2025, 5, 1)) == date(2025, 5, 31)
    assert by_name["元宵"].next_date(date(2026, 2, 18)) == date(2026, 3, 3)
    assert by_name["国庆"].next_date(date(2025, 10, 2)) == date(2026, 10, 1)


def test_festivals_due_follow_each_festivals_lead_days(settings):
    # 29 Sep 2025: 国庆 in 2 days is due; 中秋 (6 Oct) is 7 days away, beyond its 3-day lead.
    s = stage_at(settings, date(2025, 9, 29))
    assert s.festivals_due == ["国庆"]
    assert s.festival == (date(2025, 10, 1), "国庆")
    assert stage_at(settings, date(2025, 10, 3)).festivals_due == ["中秋"]
    assert stage_at(settings, date(2026, 9, 23)).festivals_due == ["中秋"]
    # 春节 has a 7-day lead in care.yaml.
    assert stage_at(settings, date(2026, 2, 10)).festivals_due == ["春节"]
    assert stage_at(settings, date(2026, 2, 9)).festivals_due == []
    assert stage_at(settings, date(2027, 2, 1)).festivals_due == ["春节"]
    # 元旦: the window 29 Dec..1 Jan crosses the year end; every day of it has 元旦 2026's date, whose year
    # the festival rules count once_per: year at (period_of: festivals_due_date).
    for day in (date(2025, 12, 29), date(2025, 12, 31), date(2026, 1, 1)):
        s = stage_at(settings, day)
        assert (s.festivals_due, s.festivals_due_date) == (["元旦"], date(2026, 1, 1)), day
    assert stage_at(settings, date(2025, 12, 28)).festivals_due == []
    assert stage_at(settings, date(2026, 1, 2)).festivals_due == []
    assert stage_at(settings, date(2026, 2, 10)).festivals_due_date == date(2026, 2, 17)


def test_a_festival_of_next_year_waits_while_one_of_this_year_is_due(settings):
    # A company day on 31 Dec (window 29..31 Dec) and 元旦 (29 Dec..1 Jan): on one day, festivals_due_date
    # can give only one year. 元旦 waits until the company day's window is over, and is greeted on 1 Jan.
    from dataclasses import replace

    from engine.stages.care import Festival

    with_company_day = replace(settings, festivals=settings.festivals + (Festival("公司年会", "solar", 12, 31, 2),))
    for day in (date(2025, 12, 29), date(2025, 12, 30), date(2025, 12, 31)):
        s = stage_at(with_company_day, day)
        assert (s.festivals_due, s.festivals_due_date) == (["公司年会"], date(2025, 12, 31)), day
    s = stage_at(with_company_day, date(2026, 1, 1))
    assert (s.festivals_due, s.festivals_due_date) == (["元旦"], date(2026, 1, 1))


def test_festival_greeting_through_the_rules(policyset):
    c = customer("C1")
    ev, rows = run(policyset, date(2025, 10, 3), [c])
    assert rows["C1"]["festival_name"] == "中秋"
    assert rows["C1"]["festival_date"] == date(2025, 10, 6)
    assert rows["C1"]["days_until_festival"] == 3
    msg = messages_of(ev, "CARE-FESTIVAL-MID-AUTUMN")["C1"]
    assert msg.channel == "sms" and msg.category == "marketing"
    assert "值此中秋节来临之际" in msg.body  # right before the festival and on the day
    assert msg.key == "CARE-FESTIVAL-MID-AUTUMN|C1|2025"
    assert not messages_of(ev, "CARE-FESTIVAL-NATIONAL-DAY")

    ev, rows = run(policyset, date(2026, 9, 23), [c])
    assert messages_of(ev, "CARE-FESTIVAL-MID-AUTUMN")["C1"].key == "CARE-FESTIVAL-MID-AUTUMN|C1|2026"


# -- birthdays through the rules ------------------------------------------------------------------


def test_lunar_birthday_greeting_and_gift_task(policyset):
    # 腊月初八 (lunar), high value (120,000 in the last year) → greeting 3 days before, gift task 7 days before.
    c = customer("C1", birthday=date(1980, 12, 8), birthday_is_lunar=True)
    orders = [order("O1", "C1", date(2025, 12, 1), 120000.0)]
    ev, rows = run(policyset, date(2026, 1, 23), [c], orders)
    row = rows["C1"]
    assert row["next_birthday_date"] == date(2026, 1, 26)
    assert row["days_until_birthday"] == 3
    assert row["birthday_greeting_due"] is True and row["value_tier"] == "高"
    msg = messages_of(ev, "CARE-BIRTHDAY-GREETING")["C1"]
    assert "生日快乐" in msg.body and msg.key == "CARE-BIRTHDAY-GREETING|C1|2026|2026-01-26"
    assert msg.send_on == date(2026, 1, 26)  # issued 3 days ahead, sent on the birthday (send_on: next_birthday_date)
    task = tasks_of(ev, "CARE-BIRTHDAY-GIFT")["C1"]
    assert task.assignee == "张伟"
    assert task.title == "为客户准备生日贺卡和礼物（农历12月8日生日）"

    ev, rows = run(policyset, date(2026, 1, 22), [c], orders)  # 4 days before: gift task only
    assert rows["C1"]["days_until_birthday"] == 4
    assert not messages_of(ev, "CARE-BIRTHDAY-GREETING")
    assert "C1" in tasks_of(ev, "CARE-BIRTHDAY-GIFT")

    ev, rows = run(policyset, date(2026, 1, 18), [c], orders)  # 8 days before: nothing yet
    assert not tasks_of(ev, "CARE-BIRTHDAY-GIFT")


def test_ordinary_customer_gets_greeting_but_no_gift_task(policyset):
    c = customer("C2", birthday=date(1990, 1, 2))
    ev, rows = run(policyset, date(2025, 12, 30), [c])
    assert rows["C2"]["value_tier"] == "低"
    assert rows["C2"]["birthday_greeting_due"] is True
    assert "C2" in messages_of(ev, "CARE-BIRTHDAY-GREETING")
    assert not tasks_of(ev, "CARE-BIRTHDAY-GIFT")
    assert messages_of(ev, "CARE-BIRTHDAY-GREETING")["C2"].key == "CARE-BIRTHDAY-GREETING|C2|2026|2026-01-02"
    # 1 Jan: the birthday is tomorrow, still in the window; the same key as on 30 Dec (the birthday's
    # year, not the run's), so the ledger lets only one of the two runs greet.
    ev, rows = run(policyset, date(2026, 1, 1), [c])
    assert rows["C2"]["days_until_birthday"] == 1
    assert rows["C2"]["birthday_greeting_due"] is True
    assert messages_of(ev, "CARE-BIRTHDAY-GREETING")["C2"].key == "CARE-BIRTHDAY-GREETING|C2|2026|2026-01-02"


def test_no_birthday_recorded(policyset):
    ev, rows = run(policyset, date(2026, 1, 23), [customer("C3")])
    assert rows["C3"]["next_birthday_date"] is None and rows["C3"]["days_until_birthday"] is None
    assert rows["C3"]["birthday_greeting_due"] is False


# -- post-purchase follow-up ------------------------------------------------------------------------


def test_post_purchase_follow_up_window(policyset):
    as_of = date(2026, 3, 10)
    customers = [customer(cid) for cid in ("C1", "C2", "C3", "C4", "C5", "C6")]
    orders = [
        order("O1", "C1", date(2026, 3, 7)),  # 3 days ago, no 回访 → needed
        order("O2", "C2", date(2026, 3, 7)),  # 3 days ago, 回访 the next day → not needed
        order("O3", "C3", date(2026, 2, 28)),  # 10 days ago → outside the week
        order("O4", "C4", date(2026, 3, 7)),  # 回访 before the order does not count
        order("O5", "C5", date(2026, 3, 4)),  # day 6 of the window → needed
        order("O6", "C6", date(2026, 3, 3)),  # day 7 → outside
    ]
    interactions = [
        interaction("I2", "C2", datetime(2026, 3, 8, 10, 0), "回访"),
        interaction("I4", "C4", datetime(2026, 3, 5, 10, 0), "回访"),
    ]
    ev, rows = run(policyset, as_of, customers, orders, interactions)
    needed = {cid for cid, r in rows.items() if r["post_purchase_followup_needed"]}
    assert needed == {"C1", "C4", "C5"}
    assert rows["C1"]["post_purchase_order_id"] == "O1"
    assert rows["C3"]["post_purchase_order_id"] is None
    tasks = tasks_of(ev, "CARE-POST-PURCHASE-FOLLOW-UP")
    assert set(tasks) == {"C1", "C4", "C5"}
    assert tasks["C1"].assignee == "张伟"
    assert tasks["C1"].title == "购买后回访（2026-03-07 的订单 O1）"
    assert tasks["C1"].key == "CARE-POST-PURCHASE-FOLLOW-UP|C1|ever|O1"


# -- periodic revisits by tier ------------------------------------------------------------------------


def test_revisit_intervals_by_tier(policyset):
    as_of = date(2026, 6, 30)
    amounts = {"高": 120000.0, "中": 20000.0, "低": 500.0}
    intervals = {"高": 30, "中": 60, "低": 90}
    customers, orders, interactions = [], [], []
    for n, (tier, amount) in enumerate(amounts.items()):
        for suffix, age in (("due", intervals[tier]), ("early", intervals[tier] - 1)):
            cid = f"{tier}-{suffix}"
            customers.append(customer(cid))
            orders.append(order(f"O{cid}", cid, date(2026, 3, 22), amount))  # 100 days ago
            interactions.append(interaction(f"I{cid}", cid, datetime.combine(date.fromordinal(as_of.toordinal() - age),
                                                                             datetime.min.time()), "回访"))
    # Never revisited: counts from the signed date (90 days before as-of for this 低 customer).
    customers.append(customer("低-signed", signed_date=date(2026, 4, 1)))
    orders.append(order("O-signed", "低-signed", date(2026, 3, 22), 500.0))
    ev, rows = run(policyset, as_of, customers, orders, interactions)
    for tier, interval in intervals.items():
        due, early = rows[f"{tier}-due"], rows[f"{tier}-early"]
        assert due["value_tier"] == tier and due["revisit_interval_days"] == interval
        assert due["revisit_due"] is True, tier
        assert early["revisit_due"] is False, tier
    assert rows["低-signed"]["revisit_basis_date"] == date(2026, 4, 1)
    assert rows["低-signed"]["next_revisit_date"] == date(2026, 6, 30)
    tasks = tasks_of(ev, "CARE-REVISIT-DUE")
    assert set(tasks) == {"高-due", "中-due", "低-due", "低-signed"}
    assert tasks["高-due"].title == "定期回访（专属客户服务团队，每30天）"
    assert tasks["低-due"].title == "定期回访（标准化服务，每90天）"
    assert tasks["高-due"].key == "CARE-REVISIT-DUE|高-due|2026-06"


# -- satisfaction survey ------------------------------------------------------------------------------


def test_survey_after_a_resolved_complaint(policyset):
    as_of = date(2026, 6, 30)
    customers = [customer(cid) for cid in ("C1", "C2", "C3")]
    interactions = [
        interaction("I1", "C1", datetime(2026, 6, 27, 10, 0), "投诉", resolved_time=datetime(2026, 6, 29, 15, 0), status="已解决"),
        interaction("I2", "C2", datetime(2026, 6, 27, 10, 0), "投诉", resolved_time=datetime(2026, 6, 29, 15, 0), status="已解决",
                    satisfaction=4),
        interaction("I3", "C3", datetime(2026, 6, 20, 10, 0), "投诉", resolved_time=datetime(2026, 6, 27, 9, 0), status="已解决"),
    ]
    ev, rows = run(policyset, as_of, customers, (), interactions)
    assert rows["C1"]["survey_due"] is True and rows["C1"]["survey_interaction_id"] == "I1"
    assert rows["C2"]["survey_due"] is False  # already rated
    assert rows["C3"]["survey_due"] is False  # resolved 3 days before: window 27..29 June
    msg = messages_of(ev, "CARE-SURVEY")
    assert set(msg) == {"C1"} and msg["C1"].category == "service" and "1-5" in msg["C1"].body
    # Resolved on 30 June: the window runs on into July (CARE-SURVEY is keyed by the complaint, so the
    # ledger stops a second survey; the window is not cut at the month's end).
    late = [interaction("I9", "C1", datetime(2026, 6, 29, 10, 0), "投诉", resolved_time=datetime(2026, 6, 30, 11, 0))]
    for day, due in ((date(2026, 6, 30), True), (date(2026, 7, 2), True), (date(2026, 7, 3), False)):
        ev, rows = run(policyset, day, [customer("C1")], (), late)
        assert rows["C1"]["survey_due"] is due
        assert [m.key for m in ev.messages if m.rule_id == "CARE-SURVEY"] == (["CARE-SURVEY|C1|ever|I9"] if due else [])


# -- member day (with points) --------------------------------------------------------------------------


def test_member_day_and_loyalty_messages(policyset):
    customers = [customer("C1", points=1200.0, member_level="金卡"), customer("C2")]
    ev, rows = run(policyset, date(2026, 11, 16), customers)
    assert rows["C1"]["is_member_day"] is True
    assert rows["C1"]["next_member_day"] == date(2026, 11, 18) and rows["C1"]["days_until_member_day"] == 2
    member = messages_of(ev, "CARE-MEMBER-DAY")
    assert set(member) == {"C1", "C2"}  # one member-day message each; with points, they are in it
    # The reminder gives the member day's date ...
    assert member["C1"].body == "【示例科技有限公司】客户C1您好，本月会员日是11月18日。您是金卡会员，积分1200分，会员日可兑换礼品或抵扣消费。退订回T"
    assert member["C2"].body == "【示例科技有限公司】客户C2您好，本月会员日是11月18日，会员专享礼遇等您来享。退订回T"
    assert member["C1"].key == "CARE-MEMBER-DAY|C1|2026-11"
    # ... and the same words on the day itself (a late run's message goes out the next morning).
    ev, _ = run(policyset, date(2026, 11, 18), customers)
    member = messages_of(ev, "CARE-MEMBER-DAY")
    assert member["C1"].body == "【示例科技有限公司】客户C1您好，本月会员日是11月18日。您是金卡会员，积分1200分，会员日可兑换礼品或抵扣消费。退订回T"
    assert member["C2"].body == "【示例科技有限公司】客户C2您好，本月会员日是11月18日，会员专享礼遇等您来享。退订回T"

    _, rows = run(policyset, date(2026, 11, 15), customers)
    assert rows["C1"]["is_member_day"] is False
    _, rows = run(policyset, date(2026, 11, 19), customers)
    assert rows["C1"]["next_member_day"] == date(2026, 12, 18) and rows["C1"]["is_member_day"] is False


def test_prospects_get_no_greetings(policyset):
    # No signed date, no orders, no contact: 潜在 — the care rules leave them alone.
    c = customer("C1", signed_date=None, birthday=date(1990, 10, 5))
    ev, rows = run(policyset, date(2025, 10, 3), [c])
    assert rows["C1"]["lifecycle_stage"] == "潜在" and rows["C1"]["birthday_greeting_due"] is True
    assert not [m for m in ev.messages if m.customer_id == "C1"]


# -- settings errors ----------------------------------------------------------------------------------


def test_settings_errors_name_file_and_line(tmp_path):
    folder = tmp_path / "policies"
    shutil.copytree(REPO / "policies", folder)
    path = folder / "care.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace('{name: 中秋, lunar: "08-15"}', '{name: 中秋, lunar: "13-15"}')
    text = text.replace("day_of_month: 18", "day_of_month: 31")
    path.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    bad_lunar = next(i for i, line in enumerate(lines, 1) if "13-15" in line)
    bad_day = next(i for i, line in enumerate(lines, 1) if "day_of_month: 31" in line)
    with pytest.raises(PolicyError) as info:
        load_care_settings(load_policies(folder))
    where = {(p.location.file, p.location.line) for p in info.value.problems}
    assert ("care.yaml", bad_lunar) in where and ("care.yaml", bad_day) in where


def test_module_adds_only_declared_features(policyset, settings):
    from engine.stages.care import FEATURES

    facts = CustomerFacts(customer("C1", birthday=date(1990, 5, 1)), [], [], {"revisit_interval_days": 30})
    CareStage(settings, date(2026, 4, 29)).process(facts)
    assert set(facts.features) - {"revisit_interval_days"} == set(FEATURES)
