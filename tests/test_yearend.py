"""Greetings across the year end, through real runs of the CLI on one contact ledger (an SQLite file
in tmp): birthdays on 1–3 January and 31 December (solar and lunar), the high-value gift task, 元旦.

Each birthday is greeted exactly once, sent on the birthday, whichever days of its window the batch
runs on (every day, with a gap, or once); re-running sends nothing twice; and greetings recorded by
the engine before the birthday's year counted at the birthday (keys with the run's year) are not sent
again. The year end 2025→2026 is used: the business calendar covers it (2027 is not covered yet).
1–3 January 2026 are 元旦 holidays (4 January a 调休 working Sunday): a window that opens on one of
them opens on 31 December, the last working day before (H5's, 2–5 January; see test_holiday_windows.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from conftest import ROOT, customer, edit, run_cli as run, write_inbox
from engine.cli import main

BIRTHDAYS = {"D31": "2025-12-31", "J1": "2026-01-01", "J2": "2026-01-02", "J3": "2026-01-03",
             "L13": "2026-01-01",  # lunar 十一月十三: 2026-01-01
             "H5": "2026-01-05"}  # high value: a gift task from 7 days before


def year_end_inbox(folder: Path, order_day: str = "2025-10-01") -> Path:
    customers = [customer("D31", 生日="1980-12-31", 签约日期="2025-01-10"),
                 customer("J1", 生日="1980-01-01", 签约日期="2025-01-10"),
                 customer("J2", 生日="1980-01-02", 签约日期="2025-01-10"),
                 customer("J3", 生日="1980-01-03", 签约日期="2025-01-10"),
                 customer("L13", 生日="1980-11-13", 农历生日="是", 签约日期="2025-01-10"),
                 customer("H5", 生日="1980-01-05", 签约日期="2025-01-10")]
    # Middle value (20,000 in the last half year), so no monthly low-value offer whose marketing cap
    # (2 in 7 days) would hold a greeting back; H5 is high value (150,000).
    orders = [[f"O{c[0]}", c[0], order_day, 150000 if c[0] == "H5" else 20000, "耗材", 1] for c in customers]
    return write_inbox(folder, customers, orders=orders)


def greetings(folder: Path) -> list[tuple[str, str, str, str]]:
    """(customer, rule, send day, key) of each birthday and festival greeting in messages/<channel>/messages.jsonl."""
    out = []
    for path in sorted((folder / "messages").glob("*/messages.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = json.loads(line)
            if m["rule_id"].startswith(("CARE-BIRTHDAY", "CARE-FESTIVAL")):
                out.append((m["customer_id"], m["rule_id"][5:], m["send_at"][:10], m["key"]))
    return sorted(out)


def gift_tasks(folder: Path) -> list[tuple[str, str]]:
    """(customer, key) of each gift task on the task sheets (tasks/<person>.xlsx)."""
    out = []
    for path in sorted((folder / "tasks").glob("*.xlsx")) if (folder / "tasks").exists() else []:
        rows = list(openpyxl.load_workbook(path, read_only=True).active.iter_rows(values_only=True))
        at = {name: i for i, name in enumerate(rows[0])}
        out += [(r[at["客户编号"]], r[at["去重键"]]) for r in rows[1:] if r[at["规则编号"]] == "CARE-BIRTHDAY-GIFT"]
    return sorted(out)


def birthday(cid: str) -> tuple[str, str, str, str]:
    day = BIRTHDAYS[cid]
    return (cid, "BIRTHDAY-GREETING", day, f"CARE-BIRTHDAY-GREETING|{cid}|{day[:4]}|{day}")


def new_year(cid: str, sent: str) -> tuple[str, str, str, str]:
    return (cid, "FESTIVAL-NEW-YEAR", sent, f"CARE-FESTIVAL-NEW-YEAR|{cid}|2026")


GIFT_H5 = [("H5", "CARE-BIRTHDAY-GIFT|H5|2026|2026-01-05")]
EVERYONE = ("D31", "H5", "J1", "J2", "J3", "L13")


def test_daily_runs_across_the_year_end_greet_each_birthday_once_on_its_day(tmp_path: Path):
    inbox, outbox = year_end_inbox(tmp_path / "inbox"), tmp_path / "out"
    written = {}
    for day in ("2025-12-28", "2025-12-29", "2025-12-30", "2025-12-31", "2026-01-01", "2026-01-02", "2026-01-03"):
        folder = run(inbox, outbox, day)
        written[day] = (greetings(folder), gift_tasks(folder))
    # Each greeting is written by the first run in its window (3 days before the birthday; 元旦 too; the
    # gift task 7 days), sent on the birthday, and keyed by the year of the day it greets: a January
    # birthday greeted in December has the key of 2026, which the January runs find in the ledger.
    # H5's window (2–5 Jan) opens in the 元旦 holidays (1–3 Jan): the 31 Dec run, the last before them, greets.
    assert written == {
        "2025-12-28": ([birthday("D31")], []),
        "2025-12-29": (sorted([birthday("J1"), birthday("L13")] + [new_year(c, "2025-12-29") for c in EVERYONE]), GIFT_H5),
        "2025-12-30": ([birthday("J2")], []),
        "2025-12-31": (sorted([birthday("H5"), birthday("J3")]), []),
        "2026-01-01": ([], []),
        "2026-01-02": ([], []),
        "2026-01-03": ([], []),
    }
    # The same batch again: its run folder exists, nothing is written twice.
    again = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(outbox),
                                      "--as-of", "2026-01-02"])
    assert again.exit_code == 0 and "nothing new was issued" in again.output


def test_no_batch_on_31_december_and_1_january(tmp_path: Path):
    # J3's window is 31 Dec..3 Jan. Cut at 31 Dec (the key had the run's year), a batch that did not run
    # that day never greeted J3; now the 2 January batch does, for the 3rd.
    inbox, outbox = year_end_inbox(tmp_path / "inbox"), tmp_path / "out"
    written = {day: (greetings(folder := run(inbox, outbox, day)), gift_tasks(folder))
               for day in ("2025-12-29", "2025-12-30", "2026-01-02")}
    assert written == {
        "2025-12-29": (sorted([birthday("D31"), birthday("J1"), birthday("L13")] + [new_year(c, "2025-12-29") for c in EVERYONE]),
                       GIFT_H5),
        "2025-12-30": ([birthday("J2")], []),
        "2026-01-02": ([birthday("H5"), birthday("J3")], []),
    }


@pytest.mark.parametrize(("day", "greeted", "gift"), [
    ("2025-12-28", ["D31"], False),
    ("2025-12-29", ["D31", "J1", "L13"], True),
    ("2025-12-31", ["D31", "H5", "J1", "J2", "J3", "L13"], True),  # H5: its window opens in the 元旦 holidays
    ("2026-01-01", ["H5", "J1", "J2", "J3", "L13"], True),  # before: nothing at all (the windows were cut at 31 Dec)
    ("2026-01-02", ["H5", "J2", "J3"], True),
    ("2026-01-03", ["H5", "J3"], True),
])
def test_a_single_run_on_any_day_of_the_window_greets(tmp_path: Path, day: str, greeted: list[str], gift: bool):
    folder = run(year_end_inbox(tmp_path / "inbox"), tmp_path / "out", day)
    # 元旦 is greeted from 29 Dec to 1 Jan, as 2026's (the day of the festival), also on the day itself.
    festival = [new_year(c, day) for c in EVERYONE] if "2025-12-29" <= day <= "2026-01-01" else []
    assert greetings(folder) == sorted([birthday(c) for c in greeted] + festival)
    assert gift_tasks(folder) == (GIFT_H5 if gift else [])


@pytest.mark.parametrize("former", ["period_of", "period_of and key_by"])
def test_greetings_recorded_under_the_former_keys_are_not_sent_again(tmp_path: Path, policy_copy: Path, former: str):
    # The ledger of an engine that counted once_per at the run's date: on 30 Dec it recorded the greetings
    # for 1 and 2 January, 元旦 and the gift task under 2025 (CARE-BIRTHDAY-GREETING|J2|2025|2026-01-02;
    # before key_by, CARE-BIRTHDAY-GREETING|J2|2025). The rules without period_of give exactly those keys.
    inbox, outbox = year_end_inbox(tmp_path / "inbox"), tmp_path / "out"
    files = [policy_copy / "care" / "greetings.yaml", policy_copy / "care" / "festivals.yaml"]
    shipped = [path.read_text(encoding="utf-8") for path in files]
    for path, text in zip(files, shipped):
        lines = [line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("period_of:")
                 and not (former == "period_of and key_by" and line.lstrip().startswith("key_by:"))]
        path.write_text("".join(lines).replace(" period_of: festivals_due_date,", ""), encoding="utf-8")
    old = greetings(run(inbox, outbox, "2025-12-30", policy_copy))
    by_key_by = former == "period_of"
    assert ("J2", "BIRTHDAY-GREETING", "2026-01-02",
            "CARE-BIRTHDAY-GREETING|J2|2025" + ("|2026-01-02" if by_key_by else "")) in old
    assert ("J2", "FESTIVAL-NEW-YEAR", "2025-12-30", "CARE-FESTIVAL-NEW-YEAR|J2|2025") in old

    # The rules as shipped: the same greetings have the keys of 2026 now, and are still not sent again.
    for path, text in zip(files, shipped):
        path.write_text(text, encoding="utf-8")
    december = run(inbox, outbox, "2025-12-31", policy_copy)
    # J3's window starts today, H5's in the 元旦 holidays that follow: new
    assert greetings(december) == sorted([birthday("H5"), birthday("J3")])
    assert gift_tasks(december) == []
    assert greetings(run(inbox, outbox, "2026-01-01", policy_copy)) == []
    # The decision log names the ledger row that holds the greeting back.
    log = [json.loads(line) for line in (december / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    [j2] = [d["outputs"][0]["message"] for d in log if d["customer_id"] == "J2" and d["rule_id"] == "CARE-BIRTHDAY-GREETING"]
    assert j2["key"] == "CARE-BIRTHDAY-GREETING|J2|2026|2026-01-02" and j2["suppressed_by"] == "dedupe"
    assert j2["suppressed"].endswith("（同一规则、客户、周期：CARE-BIRTHDAY-GREETING|J2|2025" + ("|2026-01-02）" if by_key_by else "）"))


def test_next_years_greetings_are_not_held_back_by_this_years(tmp_path: Path, policy_copy: Path):
    # 元旦 2026 greeted on 1 Jan 2026 has the key CARE-FESTIVAL-NEW-YEAR|J1|2026, the year a 30 Dec 2026 run
    # would have keyed 元旦 2027 with before; a former key counts only if recorded in the window before the day.
    # (Runs in late 2026 reach 2027, which the holiday data does not cover yet: statutory holidays stand in.
    # The order of October 2026 keeps the customers 签约 then; in January they are by their 签约日期.)
    edit(policy_copy / "calendar.yaml", "on_uncovered_year: error", "on_uncovered_year: statutory")
    inbox, outbox = year_end_inbox(tmp_path / "inbox", order_day="2026-10-01"), tmp_path / "out"
    first = greetings(run(inbox, outbox, "2026-01-01", policy_copy))
    assert birthday("J1") in first and new_year("J1", "2026-01-01") in first
    later = greetings(run(inbox, outbox, "2026-12-30", policy_copy))
    assert ("J1", "BIRTHDAY-GREETING", "2027-01-01", "CARE-BIRTHDAY-GREETING|J1|2027|2027-01-01") in later
    assert ("J1", "FESTIVAL-NEW-YEAR", "2026-12-30", "CARE-FESTIVAL-NEW-YEAR|J1|2027") in later
