"""An SMS reaches only a mobile number: a customer whose phone is a landline (0755-8888 1234 转 801)
is treated for SMS like one without a number (engine/coerce.py ``is_mobile``, engine/guards.py ``channel_address``;
docs/guards.md): ``channel: preferred`` falls back to the next channel with an address, and with
none left the message is held back as 没有联系方式, its reason saying 只有座机号码，短信无法送达."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, customer, write_inbox
from engine.cli import main
from engine.coerce import is_mobile
from engine.guards import no_contact_reason
from engine.model import Customer, SourceRow
from engine.policy.loader import load_policies

LANDLINE = "0755-8888 1234 转 801"
OFFER = "CL-LOW-VALUE-OFFER"
LANDLINE_ONLY = "客户只有座机号码，短信无法送达；也没有邮箱或微信，无法按客户偏好渠道发送"


@pytest.mark.parametrize("phone", ["13812345678", "+8613812345678", "8613812345678", "19912345678", "+86 138 1234 5678"])
def test_mobile_numbers(phone: str):
    assert is_mobile(phone)


@pytest.mark.parametrize("phone", ["075588881234", "01012345678", "88881234", "12812345678", "1381234567",
                                   "138123456789", "+85291234567", "", None])
def test_landlines_and_others_are_not_mobile(phone):
    assert not is_mobile(phone)


def inbox(tmp_path: Path) -> Path:
    """Four low-value signed customers who consent to marketing, all preferring SMS (the monthly
    offer, channel: preferred, fires for each): C1 has a mobile number; C2 only a landline; C3 a
    landline and an e-mail address; C4 a mobile number written with +86."""
    return write_inbox(
        tmp_path / "inbox",
        customers=[
            customer("C1", 签约日期="2025-01-10", 手机号码="13912345678"),
            customer("C2", 签约日期="2025-01-10", 手机号码=LANDLINE),
            customer("C3", 签约日期="2025-01-10", 手机号码=LANDLINE, 邮箱="c3@example.com"),
            customer("C4", 签约日期="2025-01-10", 手机号码="+86 138 1234 5678"),
        ],
        orders=[[f"O{i}", f"C{i}", "2026-09-01", 800, "耗材", 1] for i in range(1, 5)],
    )


def run(inbox: Path, outbox: Path) -> Path:
    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                       "--outbox", str(outbox), "--as-of", "2026-11-20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert LANDLINE not in result.output and "88881234" not in result.output  # no phone numbers on the console
    (folder,) = [p for p in outbox.iterdir() if p.is_dir()]
    return folder


@pytest.mark.parametrize("processes", ["1", "2"])
def test_no_sms_to_a_landline(tmp_path: Path, monkeypatch, processes: str):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
    folder = run(inbox(tmp_path), tmp_path / "outbox")

    sent = [json.loads(line) for p in (folder / "messages").rglob("*.jsonl") for line in p.read_text(encoding="utf-8").splitlines()]
    offers = {(m["customer_id"], m["channel"], m["to"]) for m in sent if m["rule_id"] == OFFER}
    assert offers == {("C1", "sms", "13912345678"), ("C3", "email", "c3@example.com"), ("C4", "sms", "13812345678")}  # +86 138… is read as its 11 digits (engine.coerce)
    assert not any(m["channel"] == "sms" and not is_mobile(m["to"]) for m in sent)

    log = [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    (c2,) = [d for d in log if d["customer_id"] == "C2" and d["rule_id"] == OFFER]
    assert c2["suppressed_by"] == "no-contact"
    assert c2["outputs"][0]["message"]["channel"] is None
    assert c2["outputs"][0]["message"]["suppressed"] == LANDLINE_ONLY

    import openpyxl
    wb = openpyxl.load_workbook(folder / "guards.xlsx", read_only=True)
    rows = [r for ws in wb.worksheets if ws.title.startswith("被拦截") for r in ws.iter_rows(values_only=True)]
    assert ("C2", "消息", OFFER, "没有联系方式", LANDLINE_ONLY, f"{OFFER}|C2|2026-11") in rows


def test_the_reason_says_the_number_is_a_landline():
    org = load_policies(ROOT / "policies").organization
    landline = Customer("C1", SourceRow("customers.xlsx", "客户", 2), phone="075588881234", preferred_channel="短信")
    assert no_contact_reason(org, "sms", landline) == "客户只有座机号码，短信无法送达，无法按规则指定的短信渠道发送"
    assert no_contact_reason(org, "preferred", landline) == LANDLINE_ONLY
    nothing = Customer("C2", SourceRow("customers.xlsx", "客户", 3))
    assert no_contact_reason(org, "sms", nothing) == "客户没有手机号，无法按规则指定的短信渠道发送"
    assert no_contact_reason(org, "preferred", nothing) == "客户没有手机号、邮箱或微信，无法按客户偏好渠道发送"


FOREIGN = "客户的号码是境外号码，不是中国大陆手机号（短信只发大陆手机）"
NOT_MOBILE = "客户的号码不是中国大陆手机号（短信只发大陆手机）"


NUMBERS = [("+85291234567", FOREIGN), ("+852 9123 4567", FOREIGN), ("+14155550100", FOREIGN), ("0085291234567", FOREIGN),
           ("075588881234", "客户只有座机号码，短信无法送达"), ("+86 755 8888 1234", "客户只有座机号码，短信无法送达"),
           ("88881234", "客户只有座机号码，短信无法送达"),
           ("4008001234", NOT_MOBILE), ("1381234567", NOT_MOBILE), ("+861234", NOT_MOBILE)]


@pytest.mark.parametrize("phone, why", NUMBERS, ids=[phone for phone, _ in NUMBERS])
def test_the_reason_says_what_the_number_is(phone: str, why: str):
    # A Hong Kong or US mobile was "客户只有座机号码": staff looked for a landline that is not there.
    org = load_policies(ROOT / "policies").organization
    someone = Customer("C1", SourceRow("customers.xlsx", "客户", 2), phone=phone, preferred_channel="短信")
    assert no_contact_reason(org, "sms", someone) == f"{why}，无法按规则指定的短信渠道发送"
    assert no_contact_reason(org, "preferred", someone) == f"{why}；也没有邮箱或微信，无法按客户偏好渠道发送"


def test_a_foreign_mobile_is_held_back_saying_so(tmp_path: Path):
    # C1's number is a Hong Kong mobile, C2's a US one: no SMS reaches them, and the run says that of
    # their numbers, not that they are landlines. C3's e-mail takes the offer instead.
    inbox = write_inbox(
        tmp_path / "inbox",
        customers=[customer("C1", 签约日期="2025-01-10", 手机号码="+852 9123 4567"),
                   customer("C2", 签约日期="2025-01-10", 手机号码="+1 415 555 0100"),
                   customer("C3", 签约日期="2025-01-10", 手机号码="+852 9123 4568", 邮箱="c3@example.com")],
        orders=[[f"O{i}", f"C{i}", "2026-09-01", 800, "耗材", 1] for i in range(1, 4)],
    )
    folder = run(inbox, tmp_path / "outbox")
    sent = [json.loads(line) for p in (folder / "messages").rglob("*.jsonl") for line in p.read_text(encoding="utf-8").splitlines()]
    assert {(m["customer_id"], m["channel"]) for m in sent if m["rule_id"] == OFFER} == {("C3", "email")}
    import openpyxl
    wb = openpyxl.load_workbook(folder / "guards.xlsx", read_only=True)
    rows = [r for ws in wb.worksheets if ws.title.startswith("被拦截") for r in ws.iter_rows(values_only=True)]
    reason = f"{FOREIGN}；也没有邮箱或微信，无法按客户偏好渠道发送"
    assert ("C1", "消息", OFFER, "没有联系方式", reason, f"{OFFER}|C1|2026-11") in rows
    assert ("C2", "消息", OFFER, "没有联系方式", reason, f"{OFFER}|C2|2026-11") in rows
