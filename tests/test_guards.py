"""Guards: consent, opt-out, quiet hours, frequency caps across runs, idempotent re-runs, decision log."""
from __future__ import annotations

import dataclasses
import random
import textwrap
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import openpyxl
import pytest

from conftest import english
from engine.decisions import Firing, Message, Task
from engine.errors import PolicyError
from engine.guards import (
    FrequencyCap,
    GuardPolicy,
    QuietHours,
    annotate_firings,
    apply_guards,
    guard_evaluation,
    load_guard_policy,
    load_guard_policy_folder,
    resolve_ledger_path,
    run_send_time,
    write_guard_report,
)
from engine.ledger import Ledger
from engine.model import Customer, SourceRow
from engine.policy.loader import load_policies

REPO = Path(__file__).resolve().parent.parent
POLICY = GuardPolicy()
MORNING = datetime(2026, 11, 20, 10, 0)


def customer(cid: str = "C001", consent: bool | None = True, opt_out: bool = False) -> Customer:
    return Customer(customer_id=cid, source=SourceRow("customers.xlsx", "客户", 2), name="张三", phone="13800138000",
                    marketing_consent=consent, opt_out=opt_out)


def message(cid: str = "C001", rule: str = "care.festival", category: str = "marketing", period: str = "2026-11-20",
            stage: str = "care", send_at: datetime | None = None) -> Message:
    return Message(customer_id=cid, customer_name="张三", channel="sms", address="13800138000", template="festival",
                   category=category, subject=None, body="您好", rule_id=rule, policy_id=stage, stage=stage,
                   send_at=send_at, key=f"{rule}|{cid}|{period}")


def task(cid: str = "C001", rule: str = "churn.winback", period: str = "2026-11", stage: str = "churn") -> Task:
    return Task(customer_id=cid, customer_name="张三", assignee="王敏", role=None, title="挽回", reason="流失风险",
                rule_id=rule, policy_id=stage, stage=stage, due=datetime(2026, 11, 23, 18, 0), priority="高",
                script=None, key=f"{rule}|{cid}|{period}")


def guard(messages=(), tasks=(), customers=None, as_of=MORNING, run_id="run-1", ledger=None, policy=POLICY):
    customers = customers if customers is not None else {"C001": customer(), "C002": customer("C002")}
    return apply_guards(policy, ledger, customers, list(tasks), list(messages), as_of, run_id)


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "guards.yaml").write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return folder


# -- the policy file ------------------------------------------------------------------------------------

def test_shipped_guards_file_is_the_documented_default():
    policyset = load_policies(REPO / "policies")
    loaded = load_guard_policy(policyset)
    assert loaded == dataclasses.replace(GuardPolicy(), source="guards.yaml")
    assert load_guard_policy_folder(REPO / "policies") == loaded
    assert loaded.quiet_hours == QuietHours(time(21, 0), time(9, 0), ("marketing", "service"))
    assert [c.cap_id for c in loaded.caps] == ["marketing-7d", "marketing-30d"]


def test_no_guards_file_gives_defaults(tmp_path):
    assert load_guard_policy(SimpleNamespace(documents={})) == GuardPolicy()
    assert load_guard_policy_folder(tmp_path / "missing") == GuardPolicy()


def test_guards_file_settings(tmp_path):
    folder = write(tmp_path, """
        kind: guards
        time_zone: Asia/Shanghai
        consent: {marketing_requires_consent: true, not_recorded: consent}
        opt_out: {blocks_service: true}
        send_time: "08:30"
        quiet_hours: off
        frequency_caps:
          - {id: all-3d, categories: [marketing, service], max: 3, days: 3}
        ledger: {path: /var/lib/crm/ledger.sqlite}
    """)
    p = load_guard_policy_folder(folder)
    assert p.consent_not_recorded == "consent" and p.opt_out_blocks_service
    assert p.send_time == time(8, 30) and p.quiet_hours is None
    assert p.caps == (FrequencyCap("all-3d", ("marketing", "service"), 3, 3),)
    assert resolve_ledger_path(p, Path("outbox")) == Path("/var/lib/crm/ledger.sqlite")
    assert resolve_ledger_path(GuardPolicy(), Path("outbox")) == Path("outbox/ledger.sqlite")
    assert resolve_ledger_path(p, Path("outbox"), Path("x.sqlite")) == Path("x.sqlite")


def test_guards_file_errors_name_file_and_line(tmp_path):
    folder = write(tmp_path, """
        kind: guards
        consent:
          not_recorded: maybe
        opt_out: {block_service: true}
        quiet_hours:
          start: 21:00
          end: "9:00"
          categories: [marketing, promo]
        frequency_caps:
          - {id: a, categories: [marketing], max: 2, days: 0}
          - {id: a, categories: [marketing], max: -1, days: 7}
        time_zone: Mars/Olympus
    """)
    with pytest.raises(PolicyError) as info:
        load_guard_policy_folder(folder)
    text = str(info.value)
    problems = {(p.code, p.location.line) for p in info.value.problems}
    assert ("bad-value", 3) in problems  # not_recorded: maybe
    assert ("unknown-field", 4) in problems and "did you mean 'blocks_service'" in text
    assert ("bad-value", 6) in problems and 'write times in quotes' in text  # unquoted 21:00 is the number 1260
    assert ("bad-value", 8) in problems and "promo" in text
    assert ("bad-value", 10) in problems and ("duplicate-id", 11) in problems and ("bad-value", 11) in problems
    assert ("bad-value", 12) in problems and "Mars/Olympus" in text
    assert all(p.location.file == "guards.yaml" for p in info.value.problems)


def test_two_guards_files_are_an_error(tmp_path):
    folder = write(tmp_path, "kind: guards\n")
    (folder / "more.yaml").write_text("kind: guards\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_guard_policy_folder(folder)
    assert info.value.problems[0].code == "duplicate-guards"


# -- consent and opt-out ---------------------------------------------------------------------------------

@pytest.mark.parametrize("consent, kept", [(True, True), (False, False), (None, False)])
def test_marketing_consent(consent, kept):
    result = guard([message()], customers={"C001": customer(consent=consent)})
    assert bool(result.kept_messages) is kept
    if not kept:
        [s] = result.suppressed
        assert s.guard == "consent" and s.kind == "message" and s.key == "care.festival|C001|2026-11-20"
        assert ("未记录" in s.reason) is (consent is None)


def test_unrecorded_consent_can_be_declared_as_consent():
    policy = dataclasses.replace(POLICY, consent_not_recorded="consent")
    assert guard([message()], customers={"C001": customer(consent=None)}, policy=policy).kept_messages
    assert not guard([message()], customers={"C001": customer(consent=False)}, policy=policy).kept_messages


def test_service_messages_need_no_consent_and_unknown_customers_get_no_marketing():
    result = guard([message(category="service"), message(cid="C404")], customers={"C001": customer(consent=False)})
    assert [m.category for m in result.kept_messages] == ["service"]
    assert result.suppressed[0].guard == "consent" and result.suppressed[0].customer_id == "C404"


def test_opt_out_blocks_marketing_not_service_unless_declared():
    customers = {"C001": customer(consent=True, opt_out=True)}
    msgs = [message(), message(rule="sla.survey", category="service", stage="sla")]
    result = guard(msgs, customers=customers)
    assert [m.rule_id for m in result.kept_messages] == ["sla.survey"]
    assert [(s.guard, s.rule_id) for s in result.suppressed] == [("opt-out", "care.festival")]

    strict = dataclasses.replace(POLICY, opt_out_blocks_service=True)
    result = guard(msgs, customers=customers, policy=strict)
    assert result.kept_messages == []
    assert [s.guard for s in result.suppressed] == ["opt-out", "opt-out"]


def test_tasks_pass_consent_and_opt_out():
    result = guard([message()], [task()], customers={"C001": customer(consent=False, opt_out=True)})
    assert [t.key for t in result.kept_tasks] == ["churn.winback|C001|2026-11"]
    assert result.kept_messages == []


# -- quiet hours -----------------------------------------------------------------------------------------

def test_run_at_night_schedules_next_morning():
    result = guard([message()], as_of=datetime(2026, 11, 20, 22, 30))
    assert result.kept_messages[0].send_at == datetime(2026, 11, 21, 9, 0)
    [move] = result.rescheduled
    assert move.requested == datetime(2026, 11, 20, 22, 30) and move.send_at == datetime(2026, 11, 21, 9, 0)
    assert "21:00–09:00" in move.reason and not result.suppressed


def test_run_at_ten_sends_at_ten_and_early_runs_wait_for_send_time():
    assert guard([message()], as_of=MORNING).kept_messages[0].send_at == MORNING
    result = guard([message()], as_of=datetime(2026, 11, 20, 7, 15))
    assert result.kept_messages[0].send_at == datetime(2026, 11, 20, 10, 0)
    assert result.rescheduled == []  # waiting for the send time is not a quiet-hours move
    # A date-only run looks at the end of the day: its messages go out the next morning.
    assert guard([message()], as_of=datetime(2026, 11, 20, 23, 59, 59)).kept_messages[0].send_at == datetime(2026, 11, 21, 9, 0)
    # Just after midnight: the same morning.
    assert guard([message()], as_of=datetime(2026, 11, 21, 0, 30)).kept_messages[0].send_at == datetime(2026, 11, 21, 10, 0)


def test_quiet_hours_respect_a_later_requested_time_and_convert_aware_times():
    later = guard([message(send_at=datetime(2026, 11, 25, 22, 0))]).kept_messages[0]
    assert later.send_at == datetime(2026, 11, 26, 9, 0)
    earlier = guard([message(send_at=datetime(2026, 11, 1, 12, 0))]).kept_messages[0]
    assert earlier.send_at == MORNING  # never in the past of the run
    # 14:30 UTC is 22:30 in Shanghai.
    aware = guard([message()], as_of=datetime(2026, 11, 20, 14, 30, tzinfo=timezone.utc)).kept_messages[0]
    assert aware.send_at == datetime(2026, 11, 21, 9, 0) and aware.send_at.tzinfo is None


def test_a_send_on_day_is_sent_at_that_days_send_time():
    """A rule's ``send_on`` (a birthday greeting issued 3 days ahead): that day at send_time, never before
    the run's own send time, and quiet hours still apply to the resulting time."""
    birthday = dataclasses.replace(message(rule="care.birthday"), send_on=date(2026, 11, 23))
    assert guard([birthday]).kept_messages[0].send_at == datetime(2026, 11, 23, 10, 0)
    # A run at 14:00 on the day itself: at once, not at 10:00 that morning.
    today = dataclasses.replace(birthday, send_on=date(2026, 11, 20))
    assert guard([today], as_of=datetime(2026, 11, 20, 14, 0)).kept_messages[0].send_at == datetime(2026, 11, 20, 14, 0)
    # A run late in the evening of the day before the birthday: the birthday's send time, no quiet-hours move.
    late = guard([dataclasses.replace(birthday, send_on=date(2026, 11, 21))], as_of=datetime(2026, 11, 20, 22, 30))
    assert late.kept_messages[0].send_at == datetime(2026, 11, 21, 10, 0) and late.rescheduled == []
    # A send time inside the quiet hours is moved out of them, as for any message.
    early = dataclasses.replace(POLICY, send_time=time(8, 0))
    moved = guard([birthday], policy=early)
    assert moved.kept_messages[0].send_at == datetime(2026, 11, 23, 9, 0) and len(moved.rescheduled) == 1
    assert birthday.send_at is None  # the input is not changed


def test_caps_and_ledger_use_the_send_on_day(tmp_path):
    """Caps count around the day a message goes out; the ledger records that time; a later run of the
    window issues the same greeting no more (dedupe)."""
    birthday = dataclasses.replace(message(rule="care.birthday", period="2026"), send_on=date(2026, 12, 1))
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = run(ledger, "run-1", datetime(2026, 11, 28, 10, 0), [birthday])
        assert [m.send_at for m in first.kept_messages] == [datetime(2026, 12, 1, 10, 0)]
        assert [e.send_at for e in ledger.entries(customer_id="C001")] == [datetime(2026, 12, 1, 10, 0)]
        again = run(ledger, "run-2", datetime(2026, 12, 1, 10, 0), [birthday])
        assert again.kept_messages == [] and [s.guard for s in again.suppressed] == ["dedupe"]
        # Two marketing messages on 12-03: the greeting on 12-01 counts (7-day cap), one of them is held back.
        later = run(ledger, "run-3", datetime(2026, 12, 3, 10, 0), [message(rule="care.a", period="a"), message(rule="care.b", period="b")])
        assert len(later.kept_messages) == 1 and later.suppressed[0].guard == "frequency-cap"
        # On 11-20 (11 days before it) the greeting is out of the 7-day window: two may go.
        before = run(ledger, "run-4", MORNING, [message(rule="care.c", period="c"), message(rule="care.d", period="d")])
        assert len(before.kept_messages) == 2


def test_quiet_hours_only_for_declared_categories_and_inputs_untouched():
    policy = dataclasses.replace(POLICY, quiet_hours=QuietHours(time(21, 0), time(9, 0), ("marketing",)))
    original = message(rule="sla.notice", stage="sla", category="service")
    result = guard([original, message()], as_of=datetime(2026, 11, 20, 22, 30), policy=policy)
    by_category = {m.category: m.send_at for m in result.kept_messages}
    assert by_category == {"service": datetime(2026, 11, 20, 22, 30), "marketing": datetime(2026, 11, 21, 9, 0)}
    assert original.send_at is None


def test_quiet_hours_within_one_day():
    lunch = QuietHours(time(12, 0), time(14, 0))
    assert lunch.first_allowed(datetime(2026, 11, 20, 12, 30)) == datetime(2026, 11, 20, 14, 0)
    assert lunch.first_allowed(datetime(2026, 11, 20, 14, 0)) == datetime(2026, 11, 20, 14, 0)
    assert lunch.first_allowed(datetime(2026, 11, 20, 11, 59)) == datetime(2026, 11, 20, 11, 59)
    night = QuietHours(time(21, 0), time(9, 0))
    assert night.first_allowed(datetime(2026, 11, 20, 21, 0)) == datetime(2026, 11, 21, 9, 0)
    assert night.first_allowed(datetime(2026, 11, 21, 8, 59)) == datetime(2026, 11, 21, 9, 0)
    assert night.first_allowed(datetime(2026, 11, 21, 9, 0)) == datetime(2026, 11, 21, 9, 0)
    assert run_send_time(POLICY, datetime(2026, 11, 20, 15, 0)) == datetime(2026, 11, 20, 15, 0)


# -- frequency caps ----------------------------------------------------------------------------------------

def test_cap_within_one_run_keeps_the_first_in_stage_and_rule_order():
    msgs = [
        message(rule="churn.offer", stage="churn"),
        message(rule="care.member_day", stage="care"),
        message(rule="care.birthday", stage="care"),
        message(rule="sla.survey", stage="sla", category="service"),
        message(cid="C002", rule="churn.offer", stage="churn"),
    ]
    result = guard(msgs)
    assert [(m.customer_id, m.rule_id) for m in result.kept_messages] == [
        ("C001", "sla.survey"), ("C001", "care.birthday"), ("C001", "care.member_day"), ("C002", "churn.offer")]
    [s] = result.suppressed
    assert (s.guard, s.rule_id) == ("frequency-cap", "churn.offer")
    assert "marketing-7d" in s.reason and "本次运行 2 条" in s.reason


def test_service_messages_are_exempt_unless_a_cap_lists_them():
    many = [message(rule=f"sla.notice{i}", stage="sla", category="service") for i in range(5)]
    assert len(guard(many).kept_messages) == 5
    policy = dataclasses.replace(POLICY, caps=(FrequencyCap("service-1d", ("service",), 3, 1),))
    result = guard(many, policy=policy)
    assert len(result.kept_messages) == 3 and {s.guard for s in result.suppressed} == {"frequency-cap"}


def run(ledger: Ledger, run_id: str, as_of: datetime, messages=(), tasks=(), customers=None):
    """One run as run.py does it: guard, then record what was kept."""
    result = guard(messages, tasks, customers=customers, as_of=as_of, run_id=run_id, ledger=ledger)
    ledger.record(run_id, as_of, result.kept_tasks, result.kept_messages)
    return result


def test_caps_across_runs(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = run(ledger, "run-1", MORNING, [message(rule="care.birthday"), message(rule="care.member_day")])
        assert len(first.kept_messages) == 2

        three_days = MORNING + timedelta(days=3)
        second = run(ledger, "run-2", three_days, [message(rule="churn.offer", stage="churn", period="2026-11-23")])
        assert second.kept_messages == []
        [s] = second.suppressed
        assert s.guard == "frequency-cap" and "以前的运行 2 条" in s.reason and "marketing-7d" in s.reason

        eight_days = MORNING + timedelta(days=8)
        third = run(ledger, "run-3", eight_days, [message(rule="churn.offer", stage="churn", period="2026-11-28")])
        assert [m.send_at for m in third.kept_messages] == [eight_days]

        # The 30-day cap: 2 + 1 sent, one more is fine, the fifth is not.
        fourth = run(ledger, "run-4", MORNING + timedelta(days=16), [message(rule="care.a", period="x")])
        assert len(fourth.kept_messages) == 1
        fifth = run(ledger, "run-5", MORNING + timedelta(days=24), [message(rule="care.b", period="y")])
        assert fifth.kept_messages == [] and "marketing-30d" in fifth.suppressed[0].reason
        # Other customers are not affected by C001's history.
        other = run(ledger, "run-6", MORNING + timedelta(days=24), [message(cid="C002", rule="care.b", period="y")])
        assert len(other.kept_messages) == 1


def test_caps_count_messages_an_earlier_run_scheduled_for_later(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        run(ledger, "run-1", MORNING, [message(rule="care.a", send_at=MORNING + timedelta(days=5)),
                                       message(rule="care.b", send_at=MORNING + timedelta(days=5))])
        result = run(ledger, "run-2", MORNING + timedelta(days=1), [message(rule="care.c", period="z")])
        assert result.kept_messages == [] and result.suppressed[0].guard == "frequency-cap"


# -- idempotency -------------------------------------------------------------------------------------------

def test_second_run_with_the_same_keys_issues_nothing_new(tmp_path):
    msgs = [message(), message(rule="sla.survey", stage="sla", category="service")]
    tasks = [task(), task(cid="C002")]
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = run(ledger, "20261120-aaaa", MORNING, msgs, tasks)
        assert len(first.kept_messages) == 2 and len(first.kept_tasks) == 2
        # Later the same day, the exports changed a little: a new run id, the same keys.
        second = run(ledger, "20261120-bbbb", MORNING + timedelta(hours=4), msgs, tasks)
        assert second.kept_messages == [] and second.kept_tasks == []
        assert {s.guard for s in second.suppressed} == {"dedupe"}
        assert all("20261120-aaaa" in s.reason and "2026-11-20" in s.reason for s in second.suppressed)
        assert ledger.count() == 4  # nothing new recorded


def test_same_run_reexecuted_reproduces_identical_output(tmp_path):
    msgs = [message(rule="care.a"), message(rule="care.b"), message(rule="care.c"),
            message(rule="sla.survey", stage="sla", category="service")]
    tasks = [task()]
    night = datetime(2026, 11, 20, 22, 30)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = run(ledger, "run-1", night, msgs, tasks)
        again = run(ledger, "run-1", night, msgs, tasks)
        assert again == first
        assert len(first.kept_messages) == 3 and first.suppressed[0].guard == "frequency-cap"
        assert ledger.count() == 4 and ledger.runs()[0]["messages"] == 3


def test_reexecuting_an_older_run_after_a_newer_one_reproduces_it(tmp_path):
    """run --force or verify of an older run: it sees only the runs recorded before it."""
    day1 = [message(rule="care.a"), message(rule="care.b"), message(rule="care.c")]  # the cap keeps a and b
    day3 = [message(rule="care.c"), message(rule="care.d", period="2026-11-30")]
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = run(ledger, "run-1", MORNING, day1)
        assert [m.rule_id for m in first.kept_messages] == ["care.a", "care.b"]
        later = run(ledger, "run-2", MORNING + timedelta(days=10), day3)
        assert [m.rule_id for m in later.kept_messages] == ["care.c", "care.d"]
        again = run(ledger, "run-1", MORNING, day1)
        assert again == first  # care.c is still capped, not "already issued by run-2"
        # A verify-style re-run on a copy of the ledger gives the same and leaves the original alone.
        ledger.copy_to(tmp_path / "copy.sqlite")
        with Ledger(tmp_path / "copy.sqlite") as copy:
            assert run(copy, "run-2", MORNING + timedelta(days=10), day3) == later
        # A new run the same day as run-1 sees both runs.
        new = guard(day1, as_of=MORNING + timedelta(hours=2), run_id="run-3", ledger=ledger)
        assert new.kept_messages == [] and {s.guard for s in new.suppressed} == {"dedupe"}


def test_duplicate_key_within_one_run():
    result = guard([message(), message()], [task(), task()])
    assert len(result.kept_messages) == 1 and len(result.kept_tasks) == 1
    assert [(s.kind, s.guard) for s in result.suppressed] == [("task", "dedupe"), ("message", "dedupe")]
    assert all("本次运行" in s.reason for s in result.suppressed)


def test_a_task_and_a_message_may_share_a_key():
    same = task(rule="care.festival", period="2026-11-20", stage="care")
    result = guard([message()], [same])
    assert len(result.kept_messages) == 1 and len(result.kept_tasks) == 1


def test_output_order_does_not_depend_on_input_order(tmp_path):
    msgs = [message(cid=f"C{i % 7:03d}", rule=f"{stage}.r{i}", stage=stage, period=str(i))
            for i, stage in enumerate(["care", "churn", "sla", "classification"] * 6)]
    tasks = [task(cid=f"C{i % 5:03d}", rule=f"churn.t{i}", period=str(i)) for i in range(10)]
    customers = {f"C{i:03d}": customer(f"C{i:03d}") for i in range(7)}
    results = []
    for seed in range(3):
        rng = random.Random(seed)
        shuffled_m, shuffled_t = msgs[:], tasks[:]
        rng.shuffle(shuffled_m)
        rng.shuffle(shuffled_t)
        results.append(guard(shuffled_m, shuffled_t, customers=customers))
    assert results[0] == results[1] == results[2]
    stages = ["classification", "sla", "care", "churn"]
    order = [(m.customer_id, stages.index(m.stage), m.rule_id) for m in results[0].kept_messages]
    assert order == sorted(order)


# -- decision log and report --------------------------------------------------------------------------------

def firing_for(item: Task | Message, kind: str) -> Firing:
    return Firing(item.customer_id, item.stage, item.policy_id, item.rule_id, "care.yaml:3:5", {},
                  outputs=[{"set": {"x": 1}}, {kind: {"template": "t", "key": item.key}}])


def test_annotate_firings_names_guard_and_reason(tmp_path):
    ok, capped, no_consent = message(rule="care.a"), message(rule="care.c"), message(cid="C002", rule="care.a")
    t = task()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        run(ledger, "run-1", MORNING, [], [t])
        result = guard([ok, message(rule="care.b"), capped, no_consent], [t], ledger=ledger, run_id="run-2",
                       as_of=datetime(2026, 11, 20, 22, 0),
                       customers={"C001": customer(), "C002": customer("C002", consent=None)})
    firings = [firing_for(ok, "message"), firing_for(capped, "message"), firing_for(no_consent, "message"), firing_for(t, "task")]
    assert annotate_firings(firings, result.suppressed, result.rescheduled) == 4
    sent, capped_f, consent_f, task_f = firings
    assert sent.suppressed_by is None
    assert sent.outputs[1]["message"]["send_at"] == datetime(2026, 11, 21, 9, 0)
    assert "免打扰" in sent.outputs[1]["message"]["rescheduled"]
    assert capped_f.suppressed_by == "frequency-cap"
    assert capped_f.outputs[1]["message"]["suppressed_by"] == "frequency-cap"
    assert "marketing-7d" in capped_f.outputs[1]["message"]["suppressed"]
    assert consent_f.suppressed_by == "consent"
    assert task_f.suppressed_by == "dedupe" and "run-1" in task_f.outputs[1]["task"]["suppressed"]
    assert sent.outputs[0] == {"set": {"x": 1}}


def test_annotate_firings_gives_the_send_time_of_a_send_on_message():
    greeting = dataclasses.replace(message(rule="care.birthday"), send_on=date(2026, 11, 23))
    plain = message(rule="care.a")
    result = guard([greeting, plain])
    firings = [firing_for(greeting, "message"), firing_for(plain, "message")]
    assert annotate_firings(firings, result.suppressed, result.rescheduled, result.kept_messages) == 1
    assert firings[0].outputs[1]["message"]["send_at"] == datetime(2026, 11, 23, 10, 0)
    assert "send_at" not in firings[1].outputs[1]["message"]  # the run's send time, as the run says


def test_annotate_keeps_earlier_suppression_and_joins_guards():
    m1, m2 = message(rule="care.a"), message(rule="care.a", period="other")
    f = Firing("C001", "care", "care", "care.a", "care.yaml:1:1", {}, suppressed_by="no-contact",
               outputs=[{"message": {"key": m1.key}}, {"message": {"key": m2.key}}])
    result = guard([m1, m2], customers={"C001": customer(consent=False)})
    annotate_firings([f], result.suppressed)
    assert f.suppressed_by == "no-contact, consent"


def test_guard_evaluation_updates_the_evaluation_and_report(tmp_path):
    msgs = [message(), message(cid="C002")]
    evaluation = SimpleNamespace(
        tasks=[task()], messages=msgs,
        firings=[firing_for(m, "message") for m in msgs],
        customer_rows=[{"customer_id": "C001", "task_count": 1, "message_count": 1},
                       {"customer_id": "C002", "task_count": 0, "message_count": 1}],
    )
    customers = {"C001": customer(), "C002": customer("C002", opt_out=True)}
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        result = guard_evaluation(POLICY, ledger, customers, evaluation, datetime(2026, 11, 20, 22, 30), "run-1")
    assert [m.customer_id for m in evaluation.messages] == ["C001"]
    assert evaluation.customer_rows[1]["message_count"] == 0 and evaluation.customer_rows[0]["message_count"] == 1
    assert evaluation.firings[1].suppressed_by == "opt-out"
    assert result.counts() == {"suppressed": 1, "suppressed_by_guard": {"opt-out": 1}, "rescheduled": 1,
                               "recalled": 0, "recalled_by_guard": {}}

    write_guard_report(tmp_path, result)
    wb = openpyxl.load_workbook(tmp_path / "guards.xlsx", read_only=True)
    suppressed = list(wb["被拦截 suppressed"].iter_rows(values_only=True))
    moved = list(wb["已改期 rescheduled"].iter_rows(values_only=True))
    wb.close()
    assert suppressed[1][:4] == ("C002", "消息", "care.festival", "退订")
    assert moved[1][3] == datetime(2026, 11, 21, 9, 0)
    raw = (tmp_path / "guards.xlsx").read_bytes()
    assert b"13800138000" not in raw


@pytest.mark.parametrize("written, meant", [("20:00", '"20:00"'), ("9:30", '"09:30"'), ("8:00", '"08:00"')])
def test_an_unquoted_time_is_told_to_take_quotes_around_itself(tmp_path, written, meant):
    # The fix always said "21:00", whatever time was written: copying it set the wrong time.
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "guards.yaml").write_text(f"kind: guards\nsend_time: {written}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_guard_policy_folder(folder)
    [problem] = info.value.problems
    assert problem.message == "send_time: 时间要加引号 / write times in quotes" and problem.fix == f"send_time: {meant}"


def test_a_date_only_run_late_in_the_evening_is_warned_about():
    # Its messages go from 10:00 that day; at 22:30 a sending system would send them at once, at night.
    from datetime import date as day
    from engine.guards import late_date_only_run

    policy = load_guard_policy_folder(REPO / "policies")
    assert late_date_only_run(policy, day(2026, 11, 20), datetime(2026, 11, 20, 22, 30)).startswith("注意：这一批按 as-of 2026-11-20 当天 10:00 发送")
    assert late_date_only_run(policy, day(2026, 11, 20), datetime(2026, 11, 20, 15, 0)) is None  # past 10:00, not quiet hours
    assert late_date_only_run(policy, day(2026, 11, 20), datetime(2026, 11, 20, 8, 0)) is None  # before the send time


def test_a_message_recalled_by_this_run_no_longer_counts_for_its_caps(tmp_path):
    """A greeting issued on 11-28 for 12-01 on SMS; on 11-29 the customer has no phone number any more:
    the run recalls it (no-contact) and its own marketing e-mail is not capped by it (7-day cap of 2:
    the offer of 11-28 and the recalled greeting would have made 2)."""
    org = load_policies(REPO / "policies").organization
    greeting = dataclasses.replace(message(rule="care.birthday", period="2026"), send_on=date(2026, 12, 1))
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = run(ledger, "run-1", datetime(2026, 11, 28, 10, 0), [greeting, message(rule="care.offer", period="2026-11")])
        assert len(first.kept_messages) == 2
        no_phone = dataclasses.replace(customer(), phone=None, email="c001@example.com")
        mail = dataclasses.replace(message(rule="care.news", period="2026-11-29"), channel="email", address="c001@example.com")
        evaluation = SimpleNamespace(tasks=[], messages=[mail], firings=[], customer_rows=[])
        result = guard_evaluation(POLICY, ledger, {"C001": no_phone}, evaluation, datetime(2026, 11, 29, 10, 0), "run-2", org)
    assert [(r.key, r.guard, r.reason, r.issued_by) for r in result.recalled] == [
        ("care.birthday|C001|2026", "no-contact", "客户没有手机号，原定的短信消息无法送达", "run-1")]
    assert [m.key for m in result.kept_messages] == ["care.news|C001|2026-11-29"] and result.suppressed == []


def test_caps_keep_the_birthday_then_festival_greetings_before_promotions_whatever_their_stage():
    # One run: a classification-stage promotion comes first in the fixed order, yet the cap's two go to the
    # greetings (cap_priority: birthday, festival); the order of the returned messages stays the fixed one.
    promo = dataclasses.replace(message(rule="cl.offer", stage="classification"), template="offer")
    birthday = dataclasses.replace(message(rule="care.zz_birthday", period="2026|2026-11-22"), template="birthday",
                                   send_on=date(2026, 11, 22))
    festival = message(rule="care.festival")
    result = guard([festival, promo, birthday])
    assert [m.rule_id for m in result.kept_messages] == ["care.festival", "care.zz_birthday"]
    [s] = result.suppressed
    assert (s.guard, s.rule_id) == ("frequency-cap", "cl.offer")
    assert "cap_priority" not in s.reason  # a promotion counts every message


def test_promotions_of_earlier_runs_hold_back_no_greeting_but_greetings_hold_back_promotions(tmp_path):
    offer = dataclasses.replace(message(rule="churn.offer", stage="churn"), template="offer")
    note = dataclasses.replace(offer, rule_id="churn.note", key="churn.note|C001|2026-11")
    birthday = dataclasses.replace(message(rule="care.birthday", period="2026|2026-11-22"), template="birthday",
                                   send_on=date(2026, 11, 22))
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert len(run(ledger, "run-1", MORNING, [offer, note]).kept_messages) == 2
        second = run(ledger, "run-2", MORNING + timedelta(days=1), [birthday, message(rule="care.festival")])
        # The birthday counts only birthdays; the festival greeting counts birthdays and festivals (1, the cap is 2).
        assert [m.rule_id for m in second.kept_messages] == ["care.birthday", "care.festival"]
        third = run(ledger, "run-3", MORNING + timedelta(days=2), [dataclasses.replace(offer, key="churn.offer|C001|x")])
        assert third.kept_messages == [] and "以前的运行 4 条" in third.suppressed[0].reason
        # Two birthday greetings in the week do hold back a third greeting: the cap, among equals.
        late = dataclasses.replace(birthday, rule_id="care.birthday2", key="care.birthday2|C001|2026")
        fourth = run(ledger, "run-4", MORNING + timedelta(days=2),
                     [late, dataclasses.replace(birthday, rule_id="care.birthday3", key="care.birthday3|C001|2026")])
        assert [m.rule_id for m in fourth.kept_messages] == ["care.birthday2"]
        assert fourth.suppressed[0].reason == ("频次上限 marketing-7d：发送时间前后 7 天内已有 2 条营销消息（按 cap_priority 只算同等或更重要的：birthday）"
                                               "（以前的运行 1 条，本次运行 1 条；上限 2 条）")


def test_cap_priority_mistakes_name_the_line(tmp_path):
    folder = write(tmp_path, """
        kind: guards
        cap_priority: [birthdy, festival, festival]
    """)
    (tmp_path / "policies" / "care.yaml").write_text(textwrap.dedent("""
        kind: care
        id: greet
        rules:
          - id: G1
            when: birthday_greeting_due
            message: {template: birthday, channel: preferred, category: marketing, once_per: year}
    """).lstrip("\n"), encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_guard_policy(load_policies(folder))
    problems = err.value.problems
    assert [(str(p.location), english(p.message)) for p in problems] == [
        ("guards.yaml:2:16", "'birthdy' in cap_priority is no template a message rule uses; did you mean 'birthday'?"),
        ("guards.yaml:2:25", "'festival' in cap_priority is no template a message rule uses"),
        ("guards.yaml:2:35", "'festival' is listed twice in cap_priority"),
    ]
