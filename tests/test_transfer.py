"""What the second evaluating process is sent and sends back arrives equal: facts, decisions, stage
states and errors, after a real pickle round trip."""
from __future__ import annotations

import pickle
from datetime import date, datetime, timezone

import pytest

from conftest import ROOT
from engine.calendar import CalendarCoverageError
from engine.errors import InputError, Location, PolicyError, Problem
from engine.readers import load_columns, read_inbox
from engine.run import evaluate_dataset
from engine.model import Customer, Interaction, Order, SourceRow
from engine.transfer import DECISION_KINDS, drain_decisions, pack_facts, unpack_part, unpack_facts
from engine.validate import load_checked_policies


def _round_trip(obj):
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


@pytest.fixture(scope="module")
def sample():
    return read_inbox(ROOT / "inbox", load_columns(ROOT / "policies" / "columns.yaml"))


def test_facts_arrive_equal_with_their_source_rows(sample):
    customers, interactions, orders = unpack_facts(_round_trip(pack_facts(sample.customers, sample.interactions, sample.orders)))
    assert customers == sample.customers and interactions == sample.interactions and orders == sample.orders
    assert str(interactions[0].source) == str(sample.interactions[0].source)  # e.g. "interactions.xlsx, sheet 互动记录, row 2"
    assert customers[0] is not sample.customers[0]


def test_dates_and_times_arrive_exactly():
    """Date and datetime columns travel encoded: None, microseconds, fold and time zones come back as they were."""
    here = SourceRow("互动.xlsx", "Sheet1", 2)
    times = [datetime(2026, 11, 18, 9, 30), datetime(1990, 9, 16, 1, 30, 0, 7, fold=1), datetime(2026, 1, 1, 0, 0)]
    interactions = [Interaction(f"I{i}", "C1", t, SourceRow(here.file, here.sheet, i + 2), first_response_time=r)
                    for i, (t, r) in enumerate(zip(times, [None, times[0], None]))]
    aware = [Interaction("I9", "C1", datetime(2026, 11, 18, 1, 30, tzinfo=timezone.utc), here)]  # never read so; kept anyway
    customers = [Customer("C1", here, birthday=date(1985, 5, 17)), Customer("C2", here)]
    orders = [Order("O1", "C1", date(2026, 11, 1), 12.5, here)]
    got = unpack_facts(_round_trip(pack_facts(customers, interactions + aware, orders)))
    assert got == (customers, interactions + aware, orders)
    assert [i.time.fold for i in got[1]] == [0, 1, 0, 0]
    assert got[1][-1].time.tzinfo is timezone.utc
    assert type(got[0][0].birthday) is date and got[0][1].birthday is None


def test_decisions_arrive_equal_in_parts_and_in_order(sample):
    policyset = load_checked_policies(ROOT / "policies", ROOT / "templates", "python")
    evaluation = evaluate_dataset(policyset, sample, date(2026, 11, 20), ROOT / "templates")
    lists = (evaluation.customer_rows, evaluation.tasks, evaluation.messages, evaluation.firings)
    sent = [list(items) for items in lists]
    parts = [_round_trip(part) for part in drain_decisions(*sent, size=100)]
    assert sent == [[], [], [], []]  # taken out as they were packed
    assert [kind for kind, _ in parts] == sorted((kind for kind, _ in parts), key=DECISION_KINDS.index)
    assert sum(kind == "firings" for kind, _ in parts) == -(-len(evaluation.firings) // 100)
    got = {kind: [] for kind in DECISION_KINDS}
    for kind, packed in parts:
        got[kind] += unpack_part(kind, packed)
    for kind, original in zip(DECISION_KINDS, lists):
        assert got[kind] == original, kind
    assert got["tasks"] and got["messages"] and got["firings"]


def test_stage_states_are_absorbed_as_if_evaluated_here(sample):
    """Evaluate the sample in two halves; the first half's modules absorbing the second's state
    count and list exactly what evaluating all of it at once gives."""
    policyset = load_checked_policies(ROOT / "policies", ROOT / "templates", "python")
    as_of = date(2026, 11, 20)

    def evaluate(customers):
        ids = {c.customer_id for c in customers}
        part = type(sample)(customers, [i for i in sample.interactions if i.customer_id in ids],
                            [o for o in sample.orders if o.customer_id in ids])
        return evaluate_dataset(policyset, part, as_of, ROOT / "templates")

    whole = evaluate(sample.customers)
    first, second = evaluate(sample.customers[:200]), evaluate(sample.customers[200:])
    by_id = {c.customer_id: c for c in sample.customers}
    for stage, module in first.modules.items():
        module.absorb(_round_trip(second.modules[stage].export_state()), by_id)
        assert module.manifest_counts() == whole.modules[stage].manifest_counts(), stage
    sla, whole_sla = first.modules["sla"], whole.modules["sla"]
    assert [sla._item_row(i) for i in sla.items] == [whole_sla._item_row(i) for i in whole_sla.items]
    assert all(item.customer is by_id[item.customer.customer_id] for item in sla.items)
    assert {id(item.target) for item in sla.items if item.target} <= {id(t) for t in sla.policy.targets}


@pytest.mark.parametrize("error", [
    PolicyError(Problem("bad-rule", "规则写错了", Location(file="rules.yaml", line=3, col=5), fix="改正")),
    InputError([Problem("a", "one"), Problem("b", "two", Location(file="x.xlsx", sheet="客户", row=7))]),
    CalendarCoverageError(Problem("calendar-coverage", "2027 年没有节假日安排", Location(file="calendar.yaml")), 2027, "default"),
])
def test_errors_arrive_with_their_problems(error):
    back = _round_trip(error)
    assert type(back) is type(error) and back.problems == error.problems and str(back) == str(error)
    assert back.__dict__ == error.__dict__
