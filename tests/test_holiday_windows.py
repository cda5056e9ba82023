"""Care windows over holidays, through real runs of the CLI on one contact ledger (an SQLite file in tmp).

The batch runs on the working days of the task calendar (organization.yaml task_calendar: standard,
with chinesecalendar's 2026 holidays). A window that opens on a day without a run opens on the last
working day before it (care.yaml windows_over_holidays: true). 2026: 春节 holidays 15–23 Feb (14 Feb,
a Saturday, is a 调休 working day), 中秋 25–27 Sep, 国庆 1–7 Oct (10 Oct, a Saturday, is a 调休 working
day). Birthday greeting window: 3 days; gift task: 7 days; member day: the 18th, from 2 days before.

Before, a run on the last working day before a holiday could not see the birthdays later in it, and
the run after the holiday was too late: those customers were never greeted, nor was the member day
of February (16–18 Feb, all inside 春节).
"""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from conftest import ROOT, customer, edit, run_cli as run, write_inbox
from engine.cli import main


def calls(people: list[list], *days: str) -> list[list]:
    """A 回访 call to each customer on each of ``days``: contacted within two weeks at every run, so no
    follow-up message (CL-INTENT-NOTE) takes one of the two marketing messages a week allows."""
    return [[f"I{p[0]}-{day}", p[0], f"{day} 10:00", "电话", "回访", None, None, "已完成", None, "杨帆", None, ""]
            for p in people for day in days]


def spring_inbox(folder: Path) -> Path:
    # 意向 customers (recorded so, no orders): the birthday greeting and 春节's, no member day. One birthday
    # on each day of the holidays, and around them.
    people = [customer(f"S{day}", 生日=f"1985-02-{day}", 客户阶段="意向") for day in (14, *range(15, 24), 24, 26, 27)]
    people.append(customer("G0302", 生日="1980-03-02", 客户阶段="意向", 需求类型="战略"))  # gift task from 7 days before
    people.append(customer("NC20", 生日="1985-02-20", 客户阶段="意向", 营销许可="否"))  # no consent: never greeted
    # Signed, middle value (no monthly low-value offer), no birthday: the member day.
    people.append(customer("M", 签约日期="2025-06-01"))
    return write_inbox(folder, people, interactions=calls(people, "2026-02-05", "2026-02-15", "2026-02-25"),
                       orders=[["OM", "M", "2025-12-01", 20000, "耗材", 1]])


def national_day_inbox(folder: Path) -> Path:
    people = [customer(f"N{day:02d}", 生日=f"1985-10-{day:02d}", 客户阶段="意向") for day in range(1, 12)]
    return write_inbox(folder, people, interactions=calls(people, "2026-09-20", "2026-10-01", "2026-10-10"))


def sent(folder: Path, prefix: str) -> list[tuple[str, str, str]]:
    """(customer, send day, key) of each message of rules starting with ``prefix`` in messages/<channel>/messages.jsonl."""
    out = []
    for path in sorted((folder / "messages").glob("*/messages.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = json.loads(line)
            if m["rule_id"].startswith(prefix):
                out.append((m["customer_id"], m["send_at"][:10], m["key"]))
    return sorted(out)


def gift_tasks(folder: Path) -> list[str]:
    """Keys of the gift tasks the run recorded in its decision log (tasks/<person>.xlsx lists the same)."""
    log = [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted(o["task"]["key"] for d in log if d["rule_id"] == "CARE-BIRTHDAY-GIFT" and not d.get("suppressed_by")
                  for o in d["outputs"] if "task" in o)


def greeting(cid: str, day: str) -> tuple[str, str, str]:
    return (cid, day, f"CARE-BIRTHDAY-GREETING|{cid}|2026|{day}")


def spring(*days: int) -> list[tuple[str, str, str]]:
    return sorted(greeting(f"S{d}", f"2026-02-{d}") for d in days)


def national(*days: int) -> list[tuple[str, str, str]]:
    return sorted(greeting(f"N{d:02d}", f"2026-10-{d:02d}") for d in days)


GIFT = "CARE-BIRTHDAY-GIFT|G0302|2026|2026-03-02"
MEMBER_DAY = [("M", "2026-02-14", "CARE-MEMBER-DAY|M|2026-02")]


def run_days(inbox: Path, outbox: Path, days: list[str], policies: Path = ROOT / "policies") -> dict[str, tuple]:
    """Per run day: (birthday greetings, gift task keys, member-day messages) that run issued."""
    written = {}
    for day in days:
        folder = run(inbox, outbox, day, policies)
        written[day] = (sent(folder, "CARE-BIRTHDAY-GREETING"), gift_tasks(folder), sent(folder, "CARE-MEMBER-DAY"))
    return written


def each_once(written: dict[str, tuple]) -> None:
    keys = [g[2] for greetings, _, _ in written.values() for g in greetings]
    assert len(keys) == len(set(keys)), keys


def test_working_day_runs_around_the_spring_festival_greet_every_birthday_once(tmp_path: Path):
    inbox, outbox = spring_inbox(tmp_path / "inbox"), tmp_path / "out"
    written = run_days(inbox, outbox, ["2026-02-12", "2026-02-13", "2026-02-14", "2026-02-24", "2026-02-25", "2026-02-26",
                                       "2026-02-27"])
    # 14 Feb is the last run before the holidays: it greets every birthday whose window opens before
    # 24 Feb (up to 26 Feb), each sent on the birthday; the gift task of 2 Mar (window from 23 Feb) and the
    # member day of 18 Feb (window 16–18 Feb) are issued then too. NC20 has no marketing consent.
    assert written == {
        "2026-02-12": (spring(14, 15), [], []),
        "2026-02-13": (spring(16), [], []),
        "2026-02-14": (spring(17, 18, 19, 20, 21, 22, 23, 24, 26), [GIFT], MEMBER_DAY),
        "2026-02-24": (spring(27), [], []),
        "2026-02-25": ([], [], []),
        "2026-02-26": ([], [], []),
        "2026-02-27": ([greeting("G0302", "2026-03-02")], [], []),
    }
    each_once(written)


def test_daily_runs_through_the_spring_festival_still_greet_once(tmp_path: Path):
    # Runs on the holidays too (someone runs the batch every day): the same greetings, on the same days;
    # the runs during the holidays find them in the ledger and issue nothing again.
    inbox, outbox = spring_inbox(tmp_path / "inbox"), tmp_path / "out"
    days = [f"2026-02-{d:02d}" for d in range(11, 28)]
    written = run_days(inbox, outbox, days)
    expected = {day: ([], [], []) for day in days}
    expected["2026-02-11"] = (spring(14), [], [])
    expected["2026-02-12"] = (spring(15), [], [])
    expected["2026-02-13"] = (spring(16), [], [])
    expected["2026-02-14"] = (spring(17, 18, 19, 20, 21, 22, 23, 24, 26), [GIFT], MEMBER_DAY)
    expected["2026-02-24"] = (spring(27), [], [])
    expected["2026-02-27"] = ([greeting("G0302", "2026-03-02")], [], [])
    assert written == expected
    each_once(written)


def test_working_day_runs_around_national_day_greet_every_birthday_once(tmp_path: Path):
    inbox, outbox = national_day_inbox(tmp_path / "inbox"), tmp_path / "out"
    written = run_days(inbox, outbox, ["2026-09-28", "2026-09-29", "2026-09-30", "2026-10-08", "2026-10-09", "2026-10-10",
                                       "2026-10-12"])
    # 30 Sep is the last run before 国庆 (1–7 Oct): the birthdays up to 10 Oct (window from 7 Oct) are
    # greeted then; 11 Oct's window opens on 8 Oct, a working day.
    assert {day: greetings for day, (greetings, _, _) in written.items()} == {
        "2026-09-28": national(1),
        "2026-09-29": national(2),
        "2026-09-30": national(3, 4, 5, 6, 7, 8, 9, 10),
        "2026-10-08": national(11),
        "2026-10-09": [],
        "2026-10-10": [],
        "2026-10-12": [],
    }
    each_once(written)


def test_windows_over_holidays_false_counts_calendar_days(tmp_path: Path, policy_copy: Path):
    # The company may want calendar days (someone runs on holidays): then the 14 Feb run greets only
    # the windows open that day (birthdays 14–17 Feb), and no member day yet.
    edit(policy_copy / "care.yaml", "windows_over_holidays: true", "windows_over_holidays: false")
    inbox, outbox = spring_inbox(tmp_path / "inbox"), tmp_path / "out"
    folder = run(inbox, outbox, "2026-02-14", policy_copy)
    assert sent(folder, "CARE-BIRTHDAY-GREETING") == spring(14, 15, 16, 17)
    assert sent(folder, "CARE-MEMBER-DAY") == [] and gift_tasks(folder) == []


def test_a_bad_windows_over_holidays_value_names_the_line(tmp_path: Path, policy_copy: Path):
    edit(policy_copy / "care.yaml", "windows_over_holidays: true", "windows_over_holidays: 是")
    line = next(n for n, text in enumerate((policy_copy / "care.yaml").read_text(encoding="utf-8").splitlines(), 1)
                if text.startswith("windows_over_holidays:"))
    result = CliRunner().invoke(main, ["validate", "--policies", str(policy_copy)])
    assert result.exit_code != 0
    assert (f"care.yaml:{line}:24: 错误 error: 'windows_over_holidays' 要写 true 或 false，不能是 '是' / "
            "'windows_over_holidays' must be true or false, not '是'") in result.output


def year_end_inbox(folder: Path) -> Path:
    # 4 Jan 2027 is a Monday; 1 Jan 2027 (a Friday) is 元旦, which chinesecalendar 1.11.0 does not know yet.
    return write_inbox(folder, [customer("J05", 生日="1985-01-05", 客户阶段="意向")])


def test_a_year_without_holiday_data_is_handled_as_the_calendar_says(tmp_path: Path, policy_copy: Path):
    inbox = year_end_inbox(tmp_path / "inbox")
    # error (as shipped): the 31 Dec run needs the next working day, in 2027: it stops with the calendar's message.
    result = CliRunner().invoke(main, ["run", "--policies", str(policy_copy), "--inbox", str(inbox), "--outbox",
                                       str(tmp_path / "error"), "--as-of", "2026-12-31"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert ": 错误 error: 日历 'standard' 需要 2027 年的法定节假日" in result.output
    assert "[calendar-year-not-covered]" in result.output and "on_uncovered_year: statutory" in result.output

    # statutory: 1 Jan 2027 is 元旦, 2–3 Jan a weekend; the next run is on 4 Jan, so J05's window (2–5 Jan)
    # opens on 31 Dec. The run goes on and says which holidays it used.
    edit(policy_copy / "calendar.yaml", "on_uncovered_year: error", "on_uncovered_year: statutory")
    folder = run(inbox, tmp_path / "statutory", "2026-12-31", policy_copy)
    assert sent(folder, "CARE-BIRTHDAY-GREETING") == [("J05", "2027-01-05", "CARE-BIRTHDAY-GREETING|J05|2027|2027-01-05")]
    warnings = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["warnings"]
    assert any("calendar-year-not-covered" in str(w) and "已按法定节假日计算" in str(w) for w in warnings), warnings

    # warn: weekends only, so 1 Jan 2027 counts as a working day: J05's window opens after the next run.
    edit(policy_copy / "calendar.yaml", "on_uncovered_year: statutory", "on_uncovered_year: warn")
    folder = run(inbox, tmp_path / "warn", "2026-12-31", policy_copy)
    assert sent(folder, "CARE-BIRTHDAY-GREETING") == []
    warnings = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["warnings"]
    assert any("calendar-year-not-covered" in str(w) and "只按每周的工作时间计算" in str(w) for w in warnings), warnings
