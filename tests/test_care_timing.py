"""When care messages go out and how many: a satisfaction survey never before the resolution it
follows, one member-day message a month, and a birthday greeting the frequency caps do not lose to
festival greetings or promotions. Real exports, real runs of the CLI, a real contact ledger."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import CUSTOMER_HEADERS, customer, run_cli as run, write_inbox, write_sheet


def messages(folder: Path, prefix: str = "") -> list[tuple[str, str, str]]:
    """(customer, rule, send_at) of each message a run wrote (messages/<channel>/messages.jsonl)."""
    out = []
    for path in sorted((folder / "messages").glob("*/messages.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = json.loads(line)
            if m["rule_id"].startswith(prefix):
                out.append((m["customer_id"], m["rule_id"], m["send_at"]))
    return sorted(out)


def complaint(iid: str, cid: str, resolved: str) -> list:
    return [iid, cid, "2026-11-18 09:00", "电话", "投诉", "2026-11-18 09:30", resolved, "已解决", None, "杨帆", "物流", ""]


# -- (a) the survey follows the resolution ------------------------------------------------------------


def test_a_survey_is_never_scheduled_before_the_resolution_it_follows(tmp_path: Path):
    people = [customer(c, 签约日期="2025-06-01") for c in ("LATE", "NIGHT", "EARLY", "BEFORE")]
    inbox = write_inbox(tmp_path / "inbox", people, interactions=[
        complaint("I1", "LATE", "2026-11-20 16:00"),    # resolved late on the run's day: not at the day's 10:00
        complaint("I2", "NIGHT", "2026-11-20 22:30"),   # in the quiet hours: when they end, the next morning
        complaint("I3", "EARLY", "2026-11-20 08:15"),   # before the send time: at the send time
        complaint("I4", "BEFORE", "2026-11-19 17:00"),  # the day before: at the run's send time
    ])
    folder = run(inbox, tmp_path / "out", "2026-11-20")
    assert messages(folder, "CARE-SURVEY") == [
        ("BEFORE", "CARE-SURVEY", "2026-11-20T10:00:00"),
        ("EARLY", "CARE-SURVEY", "2026-11-20T10:00:00"),
        ("LATE", "CARE-SURVEY", "2026-11-20T16:00:00"),
        ("NIGHT", "CARE-SURVEY", "2026-11-21T09:00:00"),
    ]
    log = [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    (late,) = [o["message"] for d in log if d["rule_id"] == "CARE-SURVEY" and d["customer_id"] == "LATE" for o in d["outputs"]]
    assert late["send_on"] == "2026-11-20" and late["send_at"] == "2026-11-20T16:00:00"


# -- (b) one member-day message a month --------------------------------------------------------------


def member_inbox(folder: Path, points: int | None) -> Path:
    """A signed customer (M) and the export's 积分 column, as the CRM exports it on the day. Middle value
    (one large order): no monthly low-value offer shares the week's two marketing messages."""
    inbox = write_inbox(folder, [], orders=[["OM", "M", "2026-10-01", 20000, "耗材", 1]])
    write_sheet(inbox / "customers.xlsx", "客户信息", [*CUSTOMER_HEADERS, "积分", "会员等级"],
                [customer("M", 签约日期="2025-06-01") + [points, "金卡" if points else None]])
    return inbox


def test_points_earned_inside_the_window_do_not_bring_a_second_member_day_message(tmp_path: Path):
    # Member day 18 Nov, reminded from the 16th. On the 16th M has no points: the plain reminder. By the 17th
    # the export shows 1200 points: M must not get a second member-day message (with the points) that month.
    outbox = tmp_path / "out"
    first = run(member_inbox(tmp_path / "in16", None), outbox, "2026-11-16")
    assert [(c, r) for c, r, _ in messages(first) if "MEMBER-DAY" in r] == [("M", "CARE-MEMBER-DAY")]
    second = run(member_inbox(tmp_path / "in17", 1200), outbox, "2026-11-17")
    assert [r for _, r, _ in messages(second) if "MEMBER-DAY" in r] == []
    log = [json.loads(line) for line in (second / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    held = [o["message"] for d in log if "MEMBER-DAY" in d["rule_id"] for o in d["outputs"]]
    assert [(m["key"], m["suppressed_by"]) for m in held] == [("CARE-MEMBER-DAY|M|2026-11", "dedupe")]
    with sqlite3.connect(outbox / "ledger.sqlite") as db:
        rows = db.execute("SELECT rule_id, run_id FROM issued WHERE kind = 'message' AND rule_id LIKE '%MEMBER-DAY'").fetchall()
    assert rows == [("CARE-MEMBER-DAY", first.name)]
    # December is a new month: the reminder, now with the points.
    december = run(member_inbox(tmp_path / "in1216", 1200), outbox, "2026-12-16")
    assert [(c, r) for c, r, _ in messages(december) if "MEMBER-DAY" in r] == [("M", "CARE-MEMBER-DAY")]
    body = json.loads((december / "messages" / "sms" / "messages.jsonl").read_text(encoding="utf-8").splitlines()[0])["body"]
    assert "本月会员日是12月18日。您是金卡会员，积分1200分" in body


# -- (c) the frequency caps keep the birthday greeting ------------------------------------------------


def test_a_birthday_in_the_spring_festival_week_is_greeted_though_the_week_had_two_marketing_messages(tmp_path: Path):
    # B: signed, low value (the monthly offer), birthday 15 Feb 2026. 春节 (17 Feb) is greeted from 10 Feb, with
    # February's offer: two marketing messages, the 7-day cap's two. On 12 Feb the birthday greeting (for the
    # 15th) must still go: greetings rank before promotions (guards.yaml cap_priority), and the offer sent
    # earlier holds back no greeting. The member day (18 Feb, reminded on the 14th) ranks with promotions: held.
    inbox = write_inbox(tmp_path / "inbox", [customer("B", 生日="1985-02-15", 签约日期="2025-06-01")],
                        orders=[["O1", "B", "2026-01-05", 300, "耗材", 1]])
    outbox = tmp_path / "out"
    assert messages(run(inbox, outbox, "2026-02-10")) == [
        ("B", "CARE-FESTIVAL-SPRING", "2026-02-10T10:00:00"), ("B", "CL-LOW-VALUE-OFFER", "2026-02-10T10:00:00")]
    assert messages(run(inbox, outbox, "2026-02-12")) == [("B", "CARE-BIRTHDAY-GREETING", "2026-02-15T10:00:00")]
    day14 = run(inbox, outbox, "2026-02-14")
    assert messages(day14) == []
    log = [json.loads(line) for line in (day14 / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    (member,) = [o["message"] for d in log if d["rule_id"] == "CARE-MEMBER-DAY" for o in d["outputs"]]
    assert member["suppressed_by"] == "frequency-cap"
    assert member["suppressed"].startswith("频次上限 marketing-7d：发送时间前后 7 天内已有 3 条营销消息")
