"""When care messages go out and how many: a satisfaction survey never before the resolution it
follows, one member-day message a month, and a birthday greeting the frequency caps do not lose to
festival greetings or promotions. Real exports, real runs of the CLI, a real contact ledger."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import customer, run_cli as run, write_inbox


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
