"""min_gap_days: daily runs over one contact ledger do not issue the same work again a day later just
because a new week, month or quarter began (30 Nov, then 1 Dec), and a revisit of one rule holds back
the revisit of the rule it replaces for the gap (not the other way round). Real runs of the CLI, a
real SQLite ledger in a temporary folder, the shipped policies (or a copy a test edits)."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, customer, edit, english, write_inbox
from engine.cli import main
from engine.ledger import Ledger

POLICIES = ROOT / "policies"


def run(inbox: Path, outbox: Path, as_of: str, policies: Path = POLICIES) -> tuple[Path, str]:
    result = CliRunner().invoke(main, ["run", "--policies", str(policies), "--inbox", str(inbox), "--outbox", str(outbox),
                                       "--as-of", as_of], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in outbox.iterdir() if p.is_dir() and p.name.startswith(as_of)]
    return folder, result.output


def issued(folder: Path) -> set[tuple[str, str, str]]:
    """(kind, customer, rule) of every task and message the run issued, from its decision log."""
    out = set()
    for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for output in record["outputs"]:
            for kind in ("task", "message"):
                if kind in output and not output[kind].get("suppressed_by"):
                    out.add((kind, record["customer_id"], record["rule_id"]))
    return out


def held_back(folder: Path, guard: str = "间隔不足") -> dict[tuple[str, str, str], str]:
    """(类型, customer, rule) → reason of the guards.xlsx rows of ``guard``."""
    sheet = openpyxl.load_workbook(folder / "guards.xlsx").worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("客户编号", "类型", "规则编号", "保护规则", "原因", "幂等键")
    return {(kind, cid, rule): reason for cid, kind, rule, by, reason, _key in rows[1:] if by == guard}


def low_value_customer() -> list:
    """Signed in 2025, one small order in October: a low-value ordinary customer (90-day revisits,
    the monthly offer), consent given, reachable by SMS, no churn signal before January."""
    return customer("C1", 签约日期="2025-01-10", 客户阶段="签约", 需求类型="普通")


def test_the_day_after_the_month_changes_the_revisit_and_the_offer_are_held_back(tmp_path: Path):
    inbox = write_inbox(tmp_path / "inbox", customers=[low_value_customer()],
                        orders=[["O1", "C1", "2026-10-15", 800, "耗材", 1]])
    outbox = tmp_path / "out"
    first, _ = run(inbox, outbox, "2026-11-30")
    assert {("task", "C1", "CARE-REVISIT-DUE"), ("message", "C1", "CL-LOW-VALUE-OFFER")} <= issued(first)

    second, output = run(inbox, outbox, "2026-12-01")
    # Before: a new month, a new key, the same revisit task and the same promo SMS again.
    assert not issued(second) & {("task", "C1", "CARE-REVISIT-DUE"), ("message", "C1", "CL-LOW-VALUE-OFFER")}
    assert held_back(second) == {
        ("任务", "C1", "CARE-REVISIT-DUE"): "间隔不足：2026-11-30 已派 CARE-REVISIT-DUE，间隔要求 90 天（revisit_interval_days），"
                                            "最早 2027-02-28 可再派（CARE-REVISIT-DUE|C1|2026-12）",
        ("消息", "C1", "CL-LOW-VALUE-OFFER"): "间隔不足：2026-11-30 已发 CL-LOW-VALUE-OFFER，间隔要求 20 天，"
                                              "最早 2026-12-20 可再发（CL-LOW-VALUE-OFFER|C1|2026-12）",
    }
    # Counted in the summary and the manifest, marked in the decision log, explained.
    assert "间隔不足 2" in output
    manifest = json.loads((second / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["guards"]["suppressed_by_guard"]["min-gap"] == 2
    log = [json.loads(line) for line in (second / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    [offer] = [d for d in log if d["customer_id"] == "C1" and d["rule_id"] == "CL-LOW-VALUE-OFFER"]
    assert offer["suppressed_by"] == "min-gap"
    assert offer["outputs"][0]["message"]["suppressed_by"] == "min-gap"
    assert offer["outputs"][0]["message"]["suppressed"].startswith("间隔不足：2026-11-30 已发 CL-LOW-VALUE-OFFER")
    explained = CliRunner().invoke(main, ["explain", "C1", "--run", str(second)])
    assert explained.exit_code == 0, explained.output
    assert ("被拦截 间隔不足：2026-11-30 已派 CARE-REVISIT-DUE，间隔要求 90 天（revisit_interval_days），最早 2027-02-28 可再派"
            in explained.output)
    assert "[被拦截：间隔不足]" in explained.output


def test_the_offer_goes_again_once_the_gap_has_passed(tmp_path: Path):
    """N days count between as-of dates: issued 30 Nov with a 20-day gap, held on 19 Dec, sent on 20 Dec."""
    inbox = write_inbox(tmp_path / "inbox", customers=[low_value_customer()],
                        orders=[["O1", "C1", "2026-10-15", 800, "耗材", 1]])
    outbox = tmp_path / "out"
    run(inbox, outbox, "2026-11-30")
    day_19, _ = run(inbox, outbox, "2026-12-19")
    assert ("消息", "C1", "CL-LOW-VALUE-OFFER") in held_back(day_19)
    day_20, _ = run(inbox, outbox, "2026-12-20")
    assert ("message", "C1", "CL-LOW-VALUE-OFFER") in issued(day_20)
    assert ("消息", "C1", "CL-LOW-VALUE-OFFER") not in held_back(day_20)
    # The revisit's 90 days have not passed: still held, naming the first day.
    assert held_back(day_20)[("任务", "C1", "CARE-REVISIT-DUE")].startswith("间隔不足：2026-11-30 已派 CARE-REVISIT-DUE")


def test_a_churn_revisit_holds_back_the_periodic_revisit_but_not_the_other_way_round(tmp_path: Path):
    """CH-WB-REVISIT and CH-WB-APOLOGY-OWNER replace CARE-REVISIT-DUE: their call is also the periodic
    revisit, not the reverse. C3's churn revisit on 1 Dec holds back the periodic revisit on 8 Dec,
    after a new order ended the churn risk. C4's and C5's periodic revisits on 1 Dec do not hold back
    what 8 Dec brings: C4's churn revisit (94 days without an order, 129 without contact) and C5's
    apology for a logistics complaint of 5 Dec."""
    customers = [customer(cid, 签约日期="2025-01-10", 客户阶段="签约", 需求类型="普通") for cid in ("C3", "C4", "C5")]
    orders = [["O3", "C3", "2026-05-20", 800, "耗材", 1], ["O4", "C4", "2026-09-05", 800, "耗材", 1],
              ["O6", "C5", "2026-09-05", 800, "耗材", 1]]
    inquiries = [["I4", "C4", "2026-08-01 10:00", "电话", "咨询", "2026-08-01 10:05", "2026-08-01 11:00", "已解决", 5, "何欣", None, "询价"],
                 ["I5", "C5", "2026-08-01 10:00", "电话", "咨询", "2026-08-01 10:05", "2026-08-01 11:00", "已解决", 5, "何欣", None, "询价"]]
    complaint = ["I6", "C5", "2026-12-05 10:00", "电话", "投诉", "2026-12-05 10:30", None, "处理中", None, "何欣", "物流", "到货晚"]
    outbox = tmp_path / "out"
    day_1, _ = run(write_inbox(tmp_path / "inbox-1", customers, inquiries, orders), outbox, "2026-12-01")
    assert {("task", "C3", "CH-WB-REVISIT"), ("task", "C4", "CARE-REVISIT-DUE"), ("task", "C5", "CARE-REVISIT-DUE")} <= issued(day_1)
    assert ("task", "C4", "CH-WB-REVISIT") not in issued(day_1)

    later = write_inbox(tmp_path / "inbox-8", customers, [*inquiries, complaint], [*orders, ["O5", "C3", "2026-12-05", 800, "耗材", 1]])
    day_8, _ = run(later, outbox, "2026-12-08")
    revisits = {x for x in issued(day_8) if x[2] in ("CARE-REVISIT-DUE", "CH-WB-REVISIT", "CH-WB-APOLOGY-OWNER")}
    # Before: C4's churn revisit and C5's apology were held back by the routine revisit of 1 Dec.
    assert revisits == {("task", "C4", "CH-WB-REVISIT"), ("task", "C5", "CH-WB-APOLOGY-OWNER")}
    reasons = held_back(day_8)
    assert reasons[("任务", "C3", "CARE-REVISIT-DUE")] == (
        "间隔不足：2026-12-01 已派 CH-WB-REVISIT，间隔要求 90 天（revisit_interval_days），最早 2027-03-01 可再派"
        "（CARE-REVISIT-DUE|C3|2026-12）")
    assert not {k for k in reasons if k[1] in ("C4", "C5")}


def test_a_ledger_made_before_the_index_gets_it_and_the_gap_still_holds(tmp_path: Path):
    """The min-gap lookup reads the ledger by (rule, customer): a ledger an older version made has no
    such index; the first run builds it, and the answer is the same."""
    inbox = write_inbox(tmp_path / "inbox", customers=[low_value_customer()],
                        orders=[["O1", "C1", "2026-10-15", 800, "耗材", 1]])
    outbox = tmp_path / "out"
    run(inbox, outbox, "2026-11-30")
    with Ledger(outbox / "ledger.sqlite") as ledger:
        ledger.conn.execute("DROP INDEX issued_by_rule")
    second, _ = run(inbox, outbox, "2026-12-01")
    assert ("消息", "C1", "CL-LOW-VALUE-OFFER") in held_back(second)
    with Ledger(outbox / "ledger.sqlite") as ledger:
        plan = ledger.conn.execute(
            "EXPLAIN QUERY PLAN SELECT MAX(issued_at) FROM issued WHERE rule_id = ? AND customer_id = ? AND kind = ?",
            ("CL-LOW-VALUE-OFFER", "C1", "message")).fetchall()
        assert "issued_by_rule" in str(plan)
        assert ledger.latest_issues([("message", "C1", "CL-LOW-VALUE-OFFER"), ("task", "C1", "CL-LOW-VALUE-OFFER")],
                                    date(2026, 11, 1), date(2026, 12, 1)) == {("message", "C1", "CL-LOW-VALUE-OFFER"): date(2026, 11, 30)}


def validate(policies: Path) -> list[str]:
    result = CliRunner().invoke(main, ["validate", "--policies", str(policies)])
    assert result.exit_code != 0, result.output
    return [line for line in result.output.splitlines() if "min_gap_days" in line and "错误" in line]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def test_validate_names_a_min_gap_days_that_is_no_whole_number_of_days(policy_copy: Path):
    marketing, win_back = policy_copy / "churn" / "marketing.yaml", policy_copy / "churn" / "win_back.yaml"
    edit(marketing, "min_gap_days: 20", "min_gap_days: 0")
    edit(win_back, "min_gap_days: 30", "min_gap_days: 30天")
    zero, days = validate(policy_copy)
    assert zero == (f"churn/marketing.yaml:{line_of(marketing, 'min_gap_days: 0')}:21: 错误 error: "
                    "min_gap_days 要写正整数天数或数字特征的名称，不能是 '0' / "
                    "min_gap_days must be a whole number of days (1 or more) or a numeric feature, not '0' [bad-value] — "
                    "修改建议: 如 min_gap_days: 20，或 min_gap_days: revisit_interval_days（服务方案的回访间隔） / "
                    "e.g. min_gap_days: 20, or min_gap_days: revisit_interval_days")
    assert days.startswith(f"churn/win_back.yaml:{line_of(win_back, 'min_gap_days: 30天')}:21: 错误 error: "
                           "min_gap_days 要写正整数天数或数字特征的名称，不能是 '30天' / ")


def test_validate_names_a_min_gap_days_feature_that_is_unknown_or_not_a_number(policy_copy: Path):
    follow_up, actions = policy_copy / "care" / "follow_up.yaml", policy_copy / "classification" / "actions.yaml"
    edit(follow_up, "min_gap_days: revisit_interval_days", "min_gap_days: revisit_interval_dayz")
    edit(actions, "min_gap_days: 5", "min_gap_days: value_tier")
    errors = validate(policy_copy)
    assert len(errors) == 2, errors
    [typo] = [e for e in errors if "revisit_interval_dayz" in e]
    [text] = [e for e in errors if "value_tier" in e]
    assert typo.startswith(f"care/follow_up.yaml:{line_of(follow_up, 'revisit_interval_dayz')}:21: 错误 error: "
                           "min_gap_days 写的 'revisit_interval_dayz' 不是特征或标签，是不是 'revisit_interval_days'？ / "
                           "min_gap_days names 'revisit_interval_dayz', which is not a feature or tag; did you mean "
                           "'revisit_interval_days'? [unknown-name]")
    assert text.startswith(f"classification/actions.yaml:{line_of(actions, 'min_gap_days: value_tier')}:21: 错误 error: "
                           "min_gap_days 写的 'value_tier' 不是数字特征 / min_gap_days names 'value_tier', which is not a "
                           "numeric feature [unknown-name]")
    assert english(text).endswith("a whole number of days, or a numeric feature such as revisit_interval_days")


def test_a_numeric_feature_or_a_quoted_number_is_accepted(policy_copy: Path):
    edit(policy_copy / "churn" / "marketing.yaml", "min_gap_days: 20", 'min_gap_days: "20"')
    edit(policy_copy / "churn" / "win_back.yaml", "min_gap_days: 30", "min_gap_days: revisit_interval_days")
    result = CliRunner().invoke(main, ["validate", "--policies", str(policy_copy)])
    assert result.exit_code == 0, result.output


def test_an_apology_call_holds_back_the_churn_revisit_that_replaces_the_same_revisit(tmp_path: Path):
    """CH-WB-APOLOGY-OWNER and CH-WB-REVISIT both replace CARE-REVISIT-DUE: both are the owner's visit.
    C7's apology on 1 Dec (an open logistics complaint) holds back the churn revisit that 7 Dec brings
    once the export has the complaint corrected to an inquiry (reason 服务 → 未知), for CH-WB-REVISIT's
    30 days. The other way, nothing is held back: the apology has no min_gap_days, so C8's churn revisit
    on 1 Dec does not hold back the apology for the complaint C8 makes on 4 Dec."""
    customers = [customer(cid, 签约日期="2025-01-10", 客户阶段="签约", 需求类型="普通") for cid in ("C7", "C8")]
    orders = [["O7", "C7", "2026-05-20", 800, "耗材", 1], ["O8", "C8", "2026-05-20", 800, "耗材", 1]]
    complaint = ["I7", "C7", "2026-11-28 10:00", "电话", "投诉", "2026-11-28 10:30", None, "处理中", None, "何欣", "物流", "到货晚"]
    outbox = tmp_path / "out"
    day_1, _ = run(write_inbox(tmp_path / "inbox-1", customers, [complaint], orders), outbox, "2026-12-01")
    visits = ("CARE-REVISIT-DUE", "CH-WB-REVISIT", "CH-WB-APOLOGY-OWNER")
    assert {x for x in issued(day_1) if x[2] in visits} == {("task", "C7", "CH-WB-APOLOGY-OWNER"), ("task", "C8", "CH-WB-REVISIT")}

    # The export of 7 Dec: C7's "complaint" was an inquiry after all (corrected in the CRM), C8 complained on 4 Dec.
    inquiry = ["I7", "C7", "2026-11-28 10:00", "电话", "咨询", "2026-11-28 10:30", "2026-11-28 11:00", "已解决", 5, "何欣", None, "询价"]
    new_complaint = ["I8", "C8", "2026-12-04 10:00", "电话", "投诉", "2026-12-04 10:30", None, "处理中", None, "何欣", "物流", "到货晚"]
    day_7, _ = run(write_inbox(tmp_path / "inbox-7", customers, [inquiry, new_complaint], orders), outbox, "2026-12-07")
    # Before: C7's churn revisit went out six days after the owner's apology call.
    assert {x for x in issued(day_7) if x[2] in visits} == {("task", "C8", "CH-WB-APOLOGY-OWNER")}
    reasons = held_back(day_7)
    assert reasons[("任务", "C7", "CH-WB-REVISIT")] == (
        "间隔不足：2026-12-01 已派 CH-WB-APOLOGY-OWNER（它和 CH-WB-REVISIT 都取代 CARE-REVISIT-DUE，算同一项工作），"
        "间隔要求 30 天，最早 2026-12-31 可再派（CH-WB-REVISIT|C7|2026-12）")
    assert not {k for k in reasons if k[1] == "C8"}


def test_a_sibling_holds_back_for_the_later_rules_own_gap(policy_copy: Path, tmp_path: Path):
    """The gap is that of the rule being issued: with CH-WB-REVISIT at min_gap_days: 10, the apology of
    1 Dec holds it back on 10 Dec and lets it go on 11 Dec."""
    edit(policy_copy / "churn" / "win_back.yaml", "min_gap_days: 30\n", "min_gap_days: 10\n")
    customers = [customer("C7", 签约日期="2025-01-10", 客户阶段="签约", 需求类型="普通")]
    orders = [["O7", "C7", "2026-05-20", 800, "耗材", 1]]
    complaint = ["I7", "C7", "2026-11-28 10:00", "电话", "投诉", "2026-11-28 10:30", None, "处理中", None, "何欣", "物流", "到货晚"]
    inquiry = ["I7", "C7", "2026-11-28 10:00", "电话", "咨询", "2026-11-28 10:30", "2026-11-28 11:00", "已解决", 5, "何欣", None, "询价"]
    outbox = tmp_path / "out"
    day_1, _ = run(write_inbox(tmp_path / "inbox-1", customers, [complaint], orders), outbox, "2026-12-01", policy_copy)
    assert ("task", "C7", "CH-WB-APOLOGY-OWNER") in issued(day_1)
    corrected = write_inbox(tmp_path / "inbox-10", customers, [inquiry], orders)
    day_10, _ = run(corrected, outbox, "2026-12-10", policy_copy)
    assert held_back(day_10)[("任务", "C7", "CH-WB-REVISIT")].endswith("间隔要求 10 天，最早 2026-12-11 可再派（CH-WB-REVISIT|C7|2026-12）")
    day_11, _ = run(corrected, outbox, "2026-12-11", policy_copy)
    assert ("task", "C7", "CH-WB-REVISIT") in issued(day_11)
