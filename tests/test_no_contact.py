"""A message for a customer with no phone, e-mail or WeChat is held back by the ``no-contact`` guard
like by any other guard (engine/guards.py, docs/guards.md): listed in guards.xlsx, counted in the
manifest and the run summary, and marked in the decision log with its key and reason."""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, customer, write_inbox
from engine.cli import main
from engine.decisions import Message
from engine.guards import GuardPolicy, apply_guards, no_contact_reason
from engine.model import Customer, SourceRow
from engine.policy.loader import load_policies

NO_CONTACT = "客户没有手机号、邮箱或微信，无法按客户偏好渠道发送"
OFFER_KEY = "CL-LOW-VALUE-OFFER|C3|2026-11"


def inbox_with_an_unreachable_customer(tmp_path: Path) -> Path:
    """Four low-value signed customers who consent to marketing (the monthly offer fires for each);
    C3 has no phone, e-mail or WeChat. C3 and C4 are the ones a second process evaluates."""
    return write_inbox(
        tmp_path / "inbox",
        customers=[
            customer("C1", 签约日期="2025-01-10"),
            customer("C2", 签约日期="2025-01-10"),
            customer("C3", 签约日期="2025-01-10", 手机号码=None, 邮箱=None, 微信号=None, 偏好渠道=None),
            customer("C4", 签约日期="2025-01-10", 手机号码=None, 邮箱="c4@example.com", 偏好渠道="短信"),
        ],
        orders=[[f"O{i}", f"C{i}", "2026-09-01", 800, "耗材", 1] for i in range(1, 5)],
    )


def run(inbox: Path, outbox: Path) -> tuple[str, Path]:
    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                       "--outbox", str(outbox), "--as-of", "2026-11-20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in outbox.iterdir() if p.is_dir()]
    return result.output, folder


def suppressed_rows(folder: Path) -> list[tuple]:
    wb = openpyxl.load_workbook(folder / "guards.xlsx", read_only=True)
    (sheet,) = [ws for ws in wb.worksheets if ws.title.startswith("被拦截")]
    header, *rows = [r for r in sheet.iter_rows(values_only=True) if any(v is not None for v in r)]
    assert header == ("客户编号", "类型", "规则编号", "保护规则", "原因", "幂等键")
    return rows


def test_no_contact_is_listed_counted_and_marked_like_the_other_guards(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    output, folder = run(inbox_with_an_unreachable_customer(tmp_path), tmp_path / "outbox")

    rows = suppressed_rows(folder)
    assert ("C3", "消息", "CL-LOW-VALUE-OFFER", "没有联系方式", NO_CONTACT, OFFER_KEY) in rows

    guards = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["counts"]["guards"]
    assert guards["suppressed_by_guard"].get("no-contact") == 1
    assert list(guards["suppressed_by_guard"])[0] == "no-contact"  # the first guard in the documented order
    assert guards["suppressed"] == len(rows) == sum(guards["suppressed_by_guard"].values())

    said = re.search(r"已拦截 (\d+) 项", output)
    assert said and int(said.group(1)) == guards["suppressed"], output

    log = [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    (offer,) = [d for d in log if d["customer_id"] == "C3" and d["rule_id"] == "CL-LOW-VALUE-OFFER"]
    assert offer["suppressed_by"] == "no-contact"
    (out,) = offer["outputs"]
    assert out["message"] == {"channel": None, "template": "offer", "category": "marketing", "key": OFFER_KEY,
                              "suppressed_by": "no-contact", "suppressed": NO_CONTACT}

    # C4 is reached by e-mail (no phone, preferred SMS); nothing goes to C3.
    sent = [json.loads(line) for p in (folder / "messages").rglob("*.jsonl") for line in p.read_text(encoding="utf-8").splitlines()]
    offers = {(m["customer_id"], m["channel"]) for m in sent if m["rule_id"] == "CL-LOW-VALUE-OFFER"}
    assert offers == {("C1", "sms"), ("C2", "sms"), ("C4", "email")}
    assert json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["counts"]["messages"] == len(sent)


def test_one_process_and_two_give_the_same_files(tmp_path: Path, monkeypatch):
    """C3 is evaluated in the second process: its unreachable message travels back like any other."""
    inbox = inbox_with_an_unreachable_customer(tmp_path)
    folders = []
    for processes in ("1", "2"):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        output, folder = run(inbox, tmp_path / f"outbox-{processes}")
        assert ("分两个进程评估" in output) == (processes == "2"), output
        folders.append(folder)
    one, two = folders
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    assert any(r[0] == "C3" and r[3] == "没有联系方式" for r in suppressed_rows(two))


def _unreachable(cid: str, rule: str, key: str) -> Message:
    return Message(cid, "张三", "", None, "offer", "marketing", None, NO_CONTACT, rule, "classification_actions",
                   "classification", key=key)


def test_no_contact_comes_first_and_is_not_dedupe():
    """Nothing to send: the message is held back as no-contact, before dedupe could see its key."""
    people = {"C1": Customer("C1", SourceRow("customers.xlsx", "客户", 2), marketing_consent=False)}
    twice = [_unreachable("C1", "r.a", "r.a|C1|2026-11"), _unreachable("C1", "r.a", "r.a|C1|2026-11")]
    result = apply_guards(GuardPolicy(), None, people, [], twice, datetime(2026, 11, 20, 10, 0), "run-1")
    assert result.kept_messages == []
    assert [(s.guard, s.reason) for s in result.suppressed] == [("no-contact", NO_CONTACT)] * 2
    assert result.counts()["suppressed_by_guard"] == {"no-contact": 2}


def test_the_reason_names_the_channel_the_rule_wanted():
    org = load_policies(ROOT / "policies").organization
    nobody = Customer("C1", SourceRow("customers.xlsx", "客户", 2), email="c1@example.com")
    assert no_contact_reason(org, "preferred", nobody) == NO_CONTACT
    assert no_contact_reason(org, "sms", nobody) == "客户没有手机号，无法按规则指定的短信渠道发送"
