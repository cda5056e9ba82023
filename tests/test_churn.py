"""Churn stage: scores, levels and reasons on hand-computed customers, and every win-back branch.

The shipped policies/churn.yaml weights (points): no purchase > 90 days 20, > 180 days +15, no contact
> 60 days 10, frequency drop (previous 90 days ≥ 2 orders, drop ≥ 50%) 30, open complaint 20, ≥ 2
complaints in 90 days 20, low satisfaction 20, stage already 流失 40; cap 100; 高 ≥ 60, 中 ≥ 30.
All runs go through engine.run.evaluate_dataset with the real policy folder.
"""
from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from engine.errors import PolicyError
from engine.model import Customer, Dataset, Interaction, Order, SourceRow
from engine.policy.loader import load_policies
from engine.run import evaluate_dataset
from engine.stages.churn import load_churn_settings

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
SRC = SourceRow("test.xlsx", "Sheet1", 2)
AS_OF = date(2026, 6, 30)


def ago(days: int, hour: int = 10) -> datetime:
    return datetime.combine(AS_OF - timedelta(days=days), datetime.min.time()).replace(hour=hour)


def day_ago(days: int) -> date:
    return AS_OF - timedelta(days=days)


def customer(cid: str, **kw) -> Customer:
    base = dict(name=f"客户{cid}", owner="张伟", phone="13800000000", marketing_consent=True, preferred_channel="短信",
                signed_date=date(2024, 1, 1))
    base.update(kw)
    return Customer(customer_id=cid, source=SRC, **base)


def complaint(iid: str, cid: str, days: int, category: str, resolved_after: int | None = None, satisfaction: int | None = None):
    resolved = ago(days) + timedelta(days=resolved_after) if resolved_after is not None else None
    return Interaction(iid, cid, ago(days), SRC, type="投诉", category=category, resolved_time=resolved,
                       status="已解决" if resolved else "处理中", satisfaction=satisfaction,
                       first_response_time=ago(days) + timedelta(hours=1))


def order(oid: str, cid: str, days: int, amount: float = 1000.0) -> Order:
    return Order(oid, cid, day_ago(days), amount, SRC)


# Hand-computed cases: (customer id, orders (days ago), interactions) → expected score, level, reason, signals.
CUSTOMERS = {
    # Orders 20, 100, 120, 150 days ago: 1 in the last 90 days, 3 in the 90 before: drop 2/3 → 30 → 中, reason unknown.
    "A": ([order("A1", "A", 20), order("A2", "A", 100), order("A3", "A", 120), order("A4", "A", 150)], []),
    # Open 服务态度 complaint 5 days ago + resolved 物流 complaint 30 days ago rated 2:
    # open 20 + two complaints in 90 days 20 + low satisfaction 20 = 60 → 高; latest complaint 服务态度 → 服务.
    "B": ([order("B1", "B", 10)],
          [complaint("B-I1", "B", 30, "物流", resolved_after=1, satisfaction=2), complaint("B-I2", "B", 5, "服务态度")]),
    # Last order 100 days ago 20 (unknown) + open 产品质量 complaint 20 (产品) = 40 → 中, reason 产品.
    "C": ([order("C1", "C", 100)], [complaint("C-I1", "C", 10, "产品质量")]),
    # No purchase for 200 days 20 + 15 + 竞争对手 complaint rated 1: 20 = 55 → 中, reason 竞争对手.
    "D": ([order("D1", "D", 200)], [complaint("D-I1", "D", 20, "竞争对手", resolved_after=1, satisfaction=1)]),
    # Only unknown-reason signals (no purchase 100 days 20, no contact 70 days 10 = 30 → 中); a 价格 complaint
    # 70 days ago is recent (≤ 180 days) and explains them → 价格.
    "E": ([order("E1", "E", 100)], [complaint("E-I1", "E", 70, "价格", resolved_after=1, satisfaction=4)]),
    # Same, but the complaint is 300 days old: it explains nothing → 未知.
    "E2": ([order("E2-1", "E2", 100)], [complaint("E2-I1", "E2", 300, "价格", resolved_after=1, satisfaction=4)]),
    # Last order 400 days ago → lifecycle 流失: 20 + 15 + 40 = 75 → 高, reason unknown.
    "F": ([order("F1", "F", 400)], []),
    # Everything: 20 + 15 + no contact 70 days 10 + open 20 + repeat 20 + low 20 + 流失 40 = 145 → capped 100;
    # latest complaint (70 days ago) 产品质量 → 产品.
    "G": ([order("G1", "G", 400)],
          [complaint("G-I1", "G", 80, "服务态度", resolved_after=1, satisfaction=1), complaint("G-I2", "G", 70, "产品质量")]),
    # Bought 10 days ago, asked something 5 days ago: no signal.
    "H": ([order("H1", "H", 10)],
          [Interaction("H-I1", "H", ago(5), SRC, type="咨询", status="已关闭", first_response_time=ago(5, 11))]),
}
EXPECTED = {
    "A": (30, "中", "未知", "CH-SIG-FREQUENCY-DROP"),
    "B": (60, "高", "服务", "CH-SIG-OPEN-COMPLAINT, CH-SIG-REPEAT-COMPLAINTS, CH-SIG-LOW-SATISFACTION"),
    "C": (40, "中", "产品", "CH-SIG-NO-PURCHASE-90, CH-SIG-OPEN-COMPLAINT"),
    "D": (55, "中", "竞争对手", "CH-SIG-NO-PURCHASE-90, CH-SIG-NO-PURCHASE-180, CH-SIG-LOW-SATISFACTION"),
    "E": (30, "中", "价格", "CH-SIG-NO-PURCHASE-90, CH-SIG-NO-CONTACT-60"),
    "E2": (30, "中", "未知", "CH-SIG-NO-PURCHASE-90, CH-SIG-NO-CONTACT-60"),
    "F": (75, "高", "未知", "CH-SIG-NO-PURCHASE-90, CH-SIG-NO-PURCHASE-180, CH-SIG-STAGE-CHURNED"),
    "G": (100, "高", "产品", "CH-SIG-NO-PURCHASE-90, CH-SIG-NO-PURCHASE-180, CH-SIG-NO-CONTACT-60, CH-SIG-OPEN-COMPLAINT, "
                          "CH-SIG-REPEAT-COMPLAINTS, CH-SIG-LOW-SATISFACTION, CH-SIG-STAGE-CHURNED"),
    "H": (0, "低", None, ""),
}


@pytest.fixture(scope="module")
def policyset():
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def evaluation(policyset):
    customers = [customer(cid) for cid in CUSTOMERS]
    orders = sorted((o for os, _ in CUSTOMERS.values() for o in os), key=lambda o: o.date)
    interactions = [i for _, its in CUSTOMERS.values() for i in its]
    return evaluate_dataset(policyset, Dataset(customers=customers, orders=orders, interactions=interactions), AS_OF, TEMPLATES)


@pytest.fixture(scope="module")
def rows(evaluation):
    return {r["customer_id"]: r for r in evaluation.customer_rows}


def task_rules(evaluation, cid: str) -> dict:
    return {t.rule_id: t for t in evaluation.tasks if t.customer_id == cid and t.stage == "churn"}


def message_rules(evaluation, cid: str) -> dict:
    """The win-back messages (churn/win_back.yaml); the classification marketing messages are decided in the
    churn stage too (churn/marketing.yaml), and are not win-back actions."""
    return {m.rule_id: m for m in evaluation.messages if m.customer_id == cid and m.stage == "churn"
            and m.policy_id == "churn_win_back"}


@pytest.mark.parametrize("cid", list(EXPECTED))
def test_scores_levels_and_reasons(rows, cid):
    score, level, reason, signals = EXPECTED[cid]
    row = rows[cid]
    assert (row["churn_score"], row["churn_level"], row["churn_reason"], row["churn_signals"]) == (score, level, reason, signals)


def test_frequency_drop_ratio(rows):
    assert rows["A"]["frequency_90d"] == 1 and rows["A"]["frequency_prev_90d"] == 3
    assert rows["A"]["frequency_drop_ratio"] == 0.6667
    assert rows["C"]["frequency_drop_ratio"] == 1.0  # 1 → 0 orders, but fewer than 2 before: no signal
    assert rows["H"]["frequency_drop_ratio"] is None  # nothing in the previous window


def test_lifecycle_inputs(rows):
    assert rows["F"]["lifecycle_stage"] == "流失" and rows["G"]["lifecycle_stage"] == "流失"
    assert rows["A"]["lifecycle_stage"] == "签约"


def test_decision_log_records_each_signal_with_its_weight_and_source(evaluation):
    text = (REPO / "policies" / "churn.yaml").read_text(encoding="utf-8").splitlines()
    line = next(n for n, t in enumerate(text, 1) if "id: CH-SIG-FREQUENCY-DROP" in t)
    fired = [f for f in evaluation.firings if f.customer_id == "A" and f.stage == "churn" and f.policy_id == "churn_risk"]
    assert [f.rule_id for f in fired] == ["CH-SIG-FREQUENCY-DROP", "churn_risk.level"]
    signal = fired[0]
    assert signal.source == f"churn.yaml:{line}:5"
    assert signal.inputs == {"frequency_drop_ratio": 0.6667, "frequency_prev_90d": 3}
    assert signal.outputs == [{"score": {"churn_score": 30.0}}, {"reason": "未知"}]
    assert fired[1].outputs == [{"set": {"churn_score": 30, "churn_level": "中", "churn_reason": "未知"}}]
    b = [f for f in evaluation.firings if f.customer_id == "B" and f.policy_id == "churn_risk"]
    assert [f.outputs[1] for f in b[:-1]] == [{"reason": "服务"}] * 3
    assert not [f for f in evaluation.firings if f.customer_id == "H" and f.policy_id == "churn_risk"]


def test_equal_churn_outputs_share_one_list(evaluation):
    # A large run logs hundreds of thousands of churn firings with a few dozen distinct outputs: one
    # list per distinct content keeps the decision log small in memory.
    fired = [f for f in evaluation.firings if f.policy_id == "churn_risk"]
    contents = {(f.rule_id, repr(f.outputs)) for f in fired}  # per signal: two may log alike
    assert len(fired) > len(contents)
    assert len({id(f.outputs) for f in fired}) == len(contents)


def test_service_and_product_reasons_get_apology_and_supervisor_tasks(evaluation):
    for cid, category in (("B", "服务态度"), ("C", "产品质量")):
        tasks = task_rules(evaluation, cid)
        assert set(tasks) == {"CH-WB-APOLOGY-OWNER", "CH-WB-APOLOGY-SUPERVISOR"}, cid
        owner, supervisor = tasks["CH-WB-APOLOGY-OWNER"], tasks["CH-WB-APOLOGY-SUPERVISOR"]
        assert owner.assignee == "张伟" and owner.priority == "高"
        assert owner.title == f"流失风险客户：致电道歉并提出解决方案（最近投诉：{category}）"
        assert "诚恳道歉" in owner.script
        assert supervisor.role == "客服主管" and supervisor.assignee == "李强"
        # Once per complaint: keyed by the complaint that gave the reason (churn_reason_source), not by month.
        complaint_id = {"B": "B-I2", "C": "C-I1"}[cid]
        assert owner.key == f"CH-WB-APOLOGY-OWNER|{cid}|ever|{complaint_id}"
        assert supervisor.key == f"CH-WB-APOLOGY-SUPERVISOR|{cid}|ever|{complaint_id}"


def test_the_reason_source_names_the_complaint_that_gave_the_reason(evaluation):
    """churn_reason_source in the decision log's level record: the latest complaint when its category gave
    the reason (by a 投诉原因 signal, or as the recent complaint behind unknown-reason signals), else null."""
    sources = {f.customer_id: f.inputs["churn_reason_source"] for f in evaluation.firings if f.rule_id == "churn_risk.level"}
    assert sources == {"A": None, "B": "B-I2", "C": "C-I1", "D": "D-I1", "E": "E-I1", "E2": None, "F": None, "G": "G-I2"}


def test_a_signal_that_names_its_reason_is_the_source(policy_copy, tmp_path):
    """A signal whose reason is written out (reason: 产品) gives the reason itself: the source is its id."""
    path = policy_copy / "churn.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("    weight: 20\n    reason: 投诉原因\n", "    weight: 20\n    reason: 产品\n", 1), encoding="utf-8")
    policies = load_policies(policy_copy)
    data = Dataset(customers=[customer("C")], orders=[order("C1", "C", 100)], interactions=[complaint("C-I1", "C", 10, "服务态度")])
    result = evaluate_dataset(policies, data, AS_OF, TEMPLATES)
    (level,) = [f for f in result.firings if f.rule_id == "churn_risk.level"]
    assert (level.outputs[0]["set"]["churn_reason"], level.inputs["churn_reason_source"]) == ("产品", "CH-SIG-OPEN-COMPLAINT")
    assert {t.key for t in result.tasks if t.rule_id == "CH-WB-APOLOGY-OWNER"} == {"CH-WB-APOLOGY-OWNER|C|ever|CH-SIG-OPEN-COMPLAINT"}


def test_price_and_competitor_reasons_get_an_offer_review(evaluation):
    for cid in ("D", "E"):
        tasks = task_rules(evaluation, cid)
        assert set(tasks) == {"CH-WB-OFFER-REVIEW"}, cid
        assert tasks["CH-WB-OFFER-REVIEW"].role == "销售主管" and tasks["CH-WB-OFFER-REVIEW"].assignee == "赵磊"
        assert "竞争对手" in tasks["CH-WB-OFFER-REVIEW"].script


def test_unknown_reason_gets_a_revisit(evaluation):
    for cid in ("A", "E2"):
        tasks = task_rules(evaluation, cid)
        assert set(tasks) == {"CH-WB-REVISIT"}, cid
        assert tasks["CH-WB-REVISIT"].assignee == "张伟"


def test_churned_customers_get_the_periodic_follow_up_and_win_back_message(evaluation):
    tasks = task_rules(evaluation, "F")
    assert set(tasks) == {"CH-CHURNED-FOLLOW-UP"}  # no CH-WB-REVISIT: the periodic follow-up covers it
    assert tasks["CH-CHURNED-FOLLOW-UP"].key == "CH-CHURNED-FOLLOW-UP|F|2026-Q2"
    msg = message_rules(evaluation, "F")["CH-CHURNED-WIN-BACK-MESSAGE"]
    assert msg.category == "marketing" and msg.channel == "sms" and "好久不见" in msg.body
    assert msg.key == "CH-CHURNED-WIN-BACK-MESSAGE|F|2026-Q2"
    # A churned customer with a known reason gets both the reason's actions and the follow-up.
    assert set(task_rules(evaluation, "G")) == {"CH-WB-APOLOGY-OWNER", "CH-WB-APOLOGY-SUPERVISOR", "CH-CHURNED-FOLLOW-UP"}


def test_low_risk_gets_no_win_back_action(evaluation):
    assert not task_rules(evaluation, "H") and not message_rules(evaluation, "H")


# -- settings errors ----------------------------------------------------------------------------------


def _broken(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    folder = tmp_path / "policies"
    shutil.copytree(REPO / "policies", folder)
    path = folder / "churn.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if new.strip() in t)
    return folder, line


def test_unknown_name_in_a_signal_is_reported_with_its_line(tmp_path):
    folder, line = _broken(tmp_path, "when: days_since_last_contact > 60", "when: days_since_last_contct > 60")
    with pytest.raises(PolicyError) as info:
        load_churn_settings(load_policies(folder))
    problem = info.value.problems[0]
    assert problem.code == "unknown-name"
    assert (problem.location.file, problem.location.line, problem.location.col) == ("churn.yaml", line, 11)
    assert "days_since_last_contact" in str(problem)  # the suggestion


def test_bad_reason_and_weight_are_reported(tmp_path):
    folder, line = _broken(tmp_path, "    reason: 投诉原因\n", "    reason: 服务问题\n")
    with pytest.raises(PolicyError) as info:
        load_churn_settings(load_policies(folder))
    assert [(p.code, p.location.line) for p in info.value.problems] == [("bad-value", line)]
    assert "did you mean '服务'" in info.value.problems[0].message

    folder2, line2 = _broken(tmp_path / "w", "    weight: 30\n", "    weight: 300\n")
    with pytest.raises(PolicyError) as info:
        load_churn_settings(load_policies(folder2))
    assert [(p.code, p.location.line) for p in info.value.problems] == [("bad-value", line2)]


def test_a_signal_may_not_read_the_score(tmp_path):
    folder, line = _broken(tmp_path, "when: lifecycle_stage == '流失'", "when: churn_score > 10")
    with pytest.raises(PolicyError) as info:
        load_churn_settings(load_policies(folder))
    assert info.value.problems[0].code == "churn-signal-reads-result"
    assert info.value.problems[0].location.line == line


def test_open_complaints_use_the_sla_settings_closed_statuses(tmp_path: Path):
    # A team that closes complaints as 已撤销 (sla.yaml closed_statuses): SLA saw it closed, while churn and
    # risk counted it open from a list of their own (CH-SIG-OPEN-COMPLAINT, 风险等级 中).
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    sla = policies / "sla.yaml"
    sla.write_text(sla.read_text(encoding="utf-8").replace("closed_statuses: [已解决, 已关闭]", "closed_statuses: [已解决, 已关闭, 已撤销]", 1),
                   encoding="utf-8")
    policyset = load_policies(policies)
    withdrawn = Interaction("W1", "W", ago(5), SRC, type="投诉", category="物流", status="已撤销",
                            first_response_time=ago(5) + timedelta(hours=1))
    evaluation = evaluate_dataset(policyset, Dataset([customer("W")], [withdrawn], [order("W1", "W", 10)]), AS_OF, TEMPLATES)
    [row] = evaluation.customer_rows
    assert row["open_complaints"] == 0
    assert "CH-SIG-OPEN-COMPLAINT" not in {f.rule_id for f in evaluation.firings}
    shipped = evaluate_dataset(load_policies(REPO / "policies"), Dataset([customer("W")], [withdrawn], [order("W1", "W", 10)]),
                               AS_OF, TEMPLATES)
    assert shipped.customer_rows[0]["open_complaints"] == 1  # not a closing status there


def test_without_closed_statuses_in_sla_yaml_both_use_its_default(tmp_path: Path):
    # No clock.closed_statuses: SLA took [已解决, 已关闭] while churn kept a list of its own with 已完成 in it.
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    sla = policies / "sla.yaml"
    sla.write_text(sla.read_text(encoding="utf-8").replace("  closed_statuses: [已解决, 已关闭]\n", "", 1), encoding="utf-8")
    done = Interaction("D1", "D", ago(5), SRC, type="投诉", category="物流", status="已完成",
                       first_response_time=ago(5) + timedelta(hours=1))
    evaluation = evaluate_dataset(load_policies(policies), Dataset([customer("D")], [done], [order("D1", "D", 10)]), AS_OF, TEMPLATES)
    assert evaluation.customer_rows[0]["open_complaints"] == 1  # open for SLA too: 已完成 is no closing status there


def test_one_apology_per_complaint_over_daily_runs(tmp_path):
    """A 物流 complaint of 20 Oct, resolved and rated 2: the reason stays 服务 for 180 days. The apology
    and the supervisor's follow-up go once (2 Nov); on 2 Dec (a new month, 30 days on) they are not issued
    again, and the periodic revisit they stood for goes again (strategic: every 30 days). A new complaint
    on 3 Dec is a new apology. Real runs over one contact ledger."""
    from conftest import customer as customer_row, write_inbox
    from test_min_gap import held_back, issued, run

    customers = [customer_row("C1", 签约日期="2025-01-10", 客户阶段="签约", 需求类型="战略")]
    orders = [["O1", "C1", "2026-07-01", 800, "耗材", 1]]
    first = ["I1", "C1", "2026-10-20 10:00", "电话", "投诉", "2026-10-20 10:30", "2026-10-21 16:00", "已解决", 2, "何欣", "物流", "到货晚"]
    outbox = tmp_path / "out"
    apology = {("task", "C1", "CH-WB-APOLOGY-OWNER"), ("task", "C1", "CH-WB-APOLOGY-SUPERVISOR")}

    nov_2, _ = run(write_inbox(tmp_path / "inbox-1", customers, [first], orders), outbox, "2026-11-02")
    assert apology <= issued(nov_2)
    assert ("task", "C1", "CARE-REVISIT-DUE") not in issued(nov_2)  # the apology call is this revisit

    dec_2, _ = run(write_inbox(tmp_path / "inbox-2", customers, [first], orders), outbox, "2026-12-02")
    # Before: a new month and 30 days on, the same complaint got a second apology pair.
    assert not apology & issued(dec_2)
    assert ("task", "C1", "CARE-REVISIT-DUE") in issued(dec_2)
    done = held_back(dec_2, "已发出过或重复")
    run_id = nov_2.name
    assert done[("任务", "C1", "CH-WB-APOLOGY-OWNER")] == (
        f"已在 2026-11-02 的运行 {run_id} 中发出（同一规则、客户、周期：CH-WB-APOLOGY-OWNER|C1|ever|I1）")

    second = ["I2", "C1", "2026-12-03 09:00", "电话", "投诉", "2026-12-03 09:20", None, "处理中", None, "何欣", "产品质量", "破损"]
    dec_4, _ = run(write_inbox(tmp_path / "inbox-3", customers, [first, second], orders), outbox, "2026-12-04")
    assert apology <= issued(dec_4)
    log = [json.loads(line) for line in (dec_4 / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    (owner,) = [d for d in log if d["rule_id"] == "CH-WB-APOLOGY-OWNER"]
    assert owner["outputs"][0]["task"]["key"] == "CH-WB-APOLOGY-OWNER|C1|ever|I2"
