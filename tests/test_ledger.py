"""Contact ledger: real SQLite files, same-run semantics, one-transaction records, exports, the CLI."""
from __future__ import annotations

import csv
import sqlite3
from datetime import date, datetime, timedelta, timezone

import openpyxl
import pytest
from click.testing import CliRunner

from engine.decisions import Message, Task
from engine.ledger import SCHEMA_VERSION, Ledger, LedgerError, export, format_table, show_rows
from engine.ledger_cli import ledger_command

AS_OF = datetime(2026, 11, 20, 23, 59, 59)


def task(cid: str = "C001", rule: str = "care.revisit", period: str = "2026-11", due: datetime | None = None) -> Task:
    return Task(customer_id=cid, customer_name="张三", assignee="王敏", role=None, title="回访", reason="到期", rule_id=rule,
                policy_id="care", stage="care", due=due or datetime(2026, 11, 23, 18, 0), priority="中", script=None,
                key=f"{rule}|{cid}|{period}")


def message(cid: str = "C001", rule: str = "care.festival", period: str = "2026-11-20", category: str = "marketing",
            send_at: datetime | None = datetime(2026, 11, 21, 10, 0)) -> Message:
    return Message(customer_id=cid, customer_name="张三", channel="sms", address="13800138000", template="festival",
                   category=category, subject=None, body="您好", rule_id=rule, policy_id="care", stage="care",
                   send_at=send_at, key=f"{rule}|{cid}|{period}")


def test_new_ledger_has_schema_version_and_tables(tmp_path):
    path = tmp_path / "sub" / "ledger.sqlite"
    with Ledger(path):
        pass
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "runs", "issued"} <= tables
    conn.close()
    with Ledger(path) as ledger:  # reopening an existing ledger is fine
        assert ledger.runs() == []


def test_record_and_was_issued(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record("run-1", AS_OF, [task()], [message()])
        entry = ledger.was_issued("care.festival|C001|2026-11-20")
        assert entry is not None
        assert (entry.kind, entry.customer_id, entry.run_id, entry.channel, entry.category) == ("message", "C001", "run-1", "sms", "marketing")
        assert entry.send_at == datetime(2026, 11, 21, 10, 0)
        assert entry.issued_at == AS_OF and entry.as_of == date(2026, 11, 20)
        assert ledger.was_issued("care.revisit|C001|2026-11", kind="task").due == datetime(2026, 11, 23, 18, 0)
        assert ledger.was_issued("care.revisit|C001|2026-11", kind="message") is None
        # The same run's own rows are not "earlier" when that run is re-executed.
        assert ledger.was_issued("care.festival|C001|2026-11-20", for_run="run-1") is None
        assert ledger.was_issued("nope|C001|2026") is None
        assert ledger.has_run("run-1") and not ledger.has_run("run-2")
        assert ledger.runs() == [{"run_id": "run-1", "seq": 1, "as_of": AS_OF, "tasks": 1, "messages": 1,
                                  "withdrawn_at": None, "withdrawn_reason": None}]


def test_no_personal_data_in_the_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.record("run-1", AS_OF, [task()], [message()])
    raw = path.read_bytes()
    for personal in ("张三", "13800138000", "您好"):
        assert personal.encode() not in raw


def test_issued_among_in_bulk(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        messages = [message(cid=f"C{i:04d}") for i in range(1000)]
        ledger.record("run-1", AS_OF, [], messages)
        wanted = [("message", m.key) for m in messages] + [("task", messages[0].key), ("message", "x|y|z")]
        found = ledger.issued_among(wanted)
        assert len(found) == 1000
        assert ("task", messages[0].key) not in found
        assert found[("message", messages[5].key)] == ("run-1", AS_OF)
        assert ledger.issued_among(wanted, for_run="run-1") == {}


def test_count_messages_window(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record("run-1", AS_OF, [], [
            message(period="a", send_at=datetime(2026, 11, 21, 10, 0)),
            message(period="b", send_at=datetime(2026, 11, 22, 10, 0), category="service"),
            message(period="c", send_at=datetime(2026, 11, 25, 10, 0)),
            message(cid="C002", period="a", send_at=datetime(2026, 11, 21, 10, 0)),
        ])
        since = datetime(2026, 11, 21, 10, 0)
        assert ledger.count_messages("C001", "marketing", since - timedelta(seconds=1)) == 2
        assert ledger.count_messages("C001", "marketing", since) == 1  # "after since": exclusive
        assert ledger.count_messages("C001", ["marketing", "service"], since - timedelta(days=1)) == 3
        assert ledger.count_messages("C001", "marketing", since - timedelta(days=1), until=datetime(2026, 11, 25, 10, 0)) == 1
        assert ledger.count_messages("C001", "marketing", since - timedelta(days=1), for_run="run-1") == 0
        history = ledger.messages_between(since - timedelta(days=1))
        assert history["C001"] == [("marketing", datetime(2026, 11, 21, 10, 0), "festival"),
                                   ("service", datetime(2026, 11, 22, 10, 0), "festival"),
                                   ("marketing", datetime(2026, 11, 25, 10, 0), "festival")]  # (template: the caps' cap_priority)


def test_record_replaces_the_same_run_and_is_one_transaction(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record("run-1", AS_OF, [task()], [message()])
        ledger.record("run-1", AS_OF, [task()], [message()])  # identical re-run: no duplicate-key error
        assert ledger.count() == 2
        ledger.record("run-1", AS_OF, [task()], [])  # the re-run kept less: its rows are replaced
        assert ledger.count() == 1 and ledger.count(kind="message") == 0

        # Another run recording an already issued key: refused, and nothing of it is written.
        with pytest.raises(LedgerError) as info:
            ledger.record("run-2", AS_OF + timedelta(days=1), [task(rule="care.other"), task()], [])
        assert info.value.problems[0].code == "ledger-duplicate"
        assert not ledger.has_run("run-2")
        assert ledger.was_issued("care.other|C001|2026-11") is None


def test_staged_rows_count_only_once_committed(tmp_path):
    """A batch run stages its rows while it writes its files and commits once its folder is in place:
    until then no other reader sees them, and a discard or a process that ends first leaves nothing."""
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger, Ledger(path) as other:
        ledger.stage("run-1", AS_OF, [task()], [message()])
        assert other.count() == 0 and not other.has_run("run-1")
        ledger.commit()
        assert other.count() == 2 and other.has_run("run-1")

        ledger.stage("run-2", AS_OF + timedelta(days=1), [task(rule="care.other")], [])
        ledger.discard()
        assert not ledger.has_run("run-2") and ledger.count() == 2
        ledger.discard()  # nothing staged: nothing to undo

    with Ledger(path) as ledger:
        ledger.stage("run-3", AS_OF + timedelta(days=2), [task(rule="care.third")], [])
    with Ledger(path) as ledger:  # closed without a commit, as if the run had been killed
        assert not ledger.has_run("run-3") and ledger.count() == 2


def test_an_item_without_a_key_is_refused_before_anything_is_written(tmp_path):
    import dataclasses

    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        with pytest.raises(ValueError, match="rule care.festival: a message without an idempotency key cannot be recorded"):
            ledger.record("run-1", AS_OF, [task()], [dataclasses.replace(message(), key="")])
        assert not ledger.has_run("run-1") and ledger.count() == 0 and not ledger.conn.in_transaction


def test_history_a_run_sees(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record("run-a", AS_OF, [], [message(period="a")])
        ledger.record("run-b", AS_OF + timedelta(days=1), [], [message(period="b", send_at=datetime(2026, 11, 22, 10, 0))])
        since = datetime(2026, 11, 1)
        # A new run sees every recorded run, a re-executed one only those recorded before it.
        assert ledger.count_messages("C001", "marketing", since, for_run="run-new") == 2
        assert ledger.count_messages("C001", "marketing", since, for_run="run-b") == 1
        assert ledger.count_messages("C001", "marketing", since, for_run="run-a") == 0
        assert ledger.was_issued("care.festival|C001|a", for_run="run-b").run_id == "run-a"
        assert ledger.was_issued("care.festival|C001|b", for_run="run-a") is None
        assert list(ledger.messages_between(since, for_run="run-b")) == ["C001"]
        # Re-recording the older run keeps its place in the order.
        ledger.record("run-a", AS_OF, [], [message(period="a")])
        assert [(r["run_id"], r["seq"]) for r in ledger.runs()] == [("run-a", 1), ("run-b", 2)]
        assert ledger.count_messages("C001", "marketing", since, for_run="run-a") == 0

        ledger.copy_to(tmp_path / "copy.sqlite")
    with Ledger(tmp_path / "copy.sqlite") as copy:
        assert copy.count() == 2 and [r["run_id"] for r in copy.runs()] == ["run-a", "run-b"]


def test_record_refuses_aware_times_and_missing_keys(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        with pytest.raises(ValueError):
            ledger.record("run-1", AS_OF.replace(tzinfo=timezone.utc), [task()], [])
        bad = task()
        bad.key = ""
        with pytest.raises(ValueError):
            ledger.record("run-1", AS_OF, [bad], [])
        assert ledger.count() == 0


def test_open_errors(tmp_path):
    with pytest.raises(LedgerError) as info:
        Ledger(tmp_path / "missing.sqlite", create=False)
    assert info.value.problems[0].code == "no-ledger"
    assert not (tmp_path / "missing.sqlite").exists()

    not_db = tmp_path / "notes.sqlite"
    not_db.write_text("这不是数据库 " * 200, encoding="utf-8")
    with pytest.raises(LedgerError) as info:
        Ledger(not_db)
    assert info.value.problems[0].code == "not-a-ledger"

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError) as info:
        Ledger(other)
    assert info.value.problems[0].code == "not-a-ledger"

    newer = tmp_path / "newer.sqlite"
    with Ledger(newer):
        pass
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError) as info:
        Ledger(newer)
    assert info.value.problems[0].code == "ledger-too-new"


def _two_runs(path):
    ledger = Ledger(path)
    ledger.record("run-1", datetime(2026, 11, 20, 10, 0), [task()], [message(), message(cid="C002")])
    ledger.record("run-2", datetime(2026, 11, 23, 10, 0), [task(cid="C002", period="2026-12")],
                  [message(cid="C001", rule="churn.winback", period="2026-11-23", category="service", send_at=datetime(2026, 11, 23, 10, 0))])
    return ledger


def test_entries_filters_and_show_rows(tmp_path):
    with _two_runs(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.count() == 5
        # Oldest run first; within a run by customer, kind, key.
        assert [e.key for e in ledger.entries(customer_id="C001")] == [
            "care.festival|C001|2026-11-20", "care.revisit|C001|2026-11", "churn.winback|C001|2026-11-23"]
        assert ledger.count(rule_id="care.festival") == 2
        assert ledger.count(since=date(2026, 11, 21)) == 2
        assert ledger.count(since=datetime(2026, 11, 20, 10, 0)) == 5
        assert ledger.count(kind="task") == 2
        assert ledger.count(run_id="run-2") == 2
        assert [e.run_id for e in ledger.entries(newest_first=True, limit=1)] == ["run-2"]

        rows, total = show_rows(ledger, customer_id="C001", limit=2)
        assert total == 3 and len(rows) == 2
        assert rows[0]["kind"] == "消息" and rows[0]["category"] == "服务"
        table = format_table(rows)
        assert "客户编号" in table and "churn.winback" in table


def test_export_xlsx_reads_back(tmp_path):
    with _two_runs(tmp_path / "ledger.sqlite") as ledger:
        n = export(ledger, tmp_path / "out" / "ledger.xlsx")
        assert n == 5
        n_c1 = export(ledger, tmp_path / "c1.xlsx", customer_id="C001")
        assert n_c1 == 3
    wb = openpyxl.load_workbook(tmp_path / "out" / "ledger.xlsx", read_only=True)
    ws = wb["联系台账"]
    rows = list(ws.iter_rows(values_only=True))
    wb.close()
    header = rows[0]
    assert header[0] == "批次时刻 as-of" and "幂等键 key" in header
    assert len(rows) == 6
    first = dict(zip(header, rows[1]))
    assert first["批次时刻 as-of"] == datetime(2026, 11, 20, 10, 0)
    assert first["类型 kind"] in ("任务", "消息")
    assert {dict(zip(header, r))["阶段 stage"] for r in rows[1:]} == {"客户关怀"}  # not the code "care"
    assert first["运行编号 run"] == "run-1"
    keys = {dict(zip(header, r))["幂等键 key"] for r in rows[1:]}
    assert "care.festival|C002|2026-11-20" in keys


def test_export_csv_utf8_bom(tmp_path):
    with _two_runs(tmp_path / "ledger.sqlite") as ledger:
        assert export(ledger, tmp_path / "ledger.csv", kind="message") == 3
        with pytest.raises(ValueError):
            export(ledger, tmp_path / "ledger.json")
    raw = (tmp_path / "ledger.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader((tmp_path / "ledger.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert len(rows) == 4 and rows[1][1] == "消息" and rows[1][0] == "2026-11-20 10:00"


def test_cli_show_and_export(tmp_path):
    outbox = tmp_path / "outbox"
    _two_runs(outbox / "ledger.sqlite").close()
    runner = CliRunner()
    policies = tmp_path / "no-policies"  # no guards file: the default ledger path inside --outbox
    result = runner.invoke(ledger_command, ["--outbox", str(outbox), "--policies", str(policies), "--customer", "C001"])
    assert result.exit_code == 0, result.output
    assert "churn.winback" in result.output and "共 3 条" in result.output
    assert "C002" not in result.output

    result = runner.invoke(ledger_command, ["--ledger", str(outbox / "ledger.sqlite"), "--export", str(tmp_path / "x.xlsx"),
                                            "--since", "2026-11-21"])
    assert result.exit_code == 0, result.output
    assert "2" in result.output
    wb = openpyxl.load_workbook(tmp_path / "x.xlsx", read_only=True)
    assert len(list(wb.active.iter_rows(values_only=True))) == 3
    wb.close()

    result = runner.invoke(ledger_command, ["--ledger", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 1
    assert "no contact ledger" in result.output
    assert not (tmp_path / "none.sqlite").exists()

    result = runner.invoke(ledger_command, ["--ledger", str(outbox / "ledger.sqlite"), "--since", "20.11.2026"])
    assert result.exit_code == 2


def test_cli_shows_tasks_as_tasks_and_messages_by_their_category(tmp_path):
    """类别 of a task is 任务 (tasks carry category "service" by default, which is no content kind of a
    task); messages keep 营销 / 服务. The same in the printed table and in the export."""
    outbox = tmp_path / "outbox"
    _two_runs(outbox / "ledger.sqlite").close()
    result = CliRunner().invoke(ledger_command, ["--ledger", str(outbox / "ledger.sqlite"), "--customer", "C001"])
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()[:4]
    assert header.split()[:7] == ["批次时刻", "类型", "客户编号", "规则", "渠道", "类别", "负责人"]
    # Newest first: the service message of run-2, then run-1's marketing message and task.
    assert [line.split()[2:7] for line in lines] == [
        ["消息", "C001", "churn.winback", "sms", "服务"],
        ["消息", "C001", "care.festival", "sms", "营销"],
        ["任务", "C001", "care.revisit", "任务", "王敏"],
    ]
    result = CliRunner().invoke(ledger_command, ["--ledger", str(outbox / "ledger.sqlite"), "--kind", "task",
                                                 "--export", str(tmp_path / "tasks.csv")])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader((tmp_path / "tasks.csv").read_text(encoding="utf-8-sig").splitlines()))
    category = rows[0].index("类别 category")
    assert [r[category] for r in rows[1:]] == ["任务", "任务"]


def test_cli_uses_ledger_path_from_guards_policy(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "guards.yaml").write_text("kind: guards\nledger:\n  path: state/contacts.sqlite\n", encoding="utf-8")
    outbox = tmp_path / "outbox"
    with Ledger(outbox / "state" / "contacts.sqlite") as ledger:
        ledger.record("run-1", AS_OF, [task()], [])
    result = CliRunner().invoke(ledger_command, ["--outbox", str(outbox), "--policies", str(policies)])
    assert result.exit_code == 0, result.output
    assert "care.revisit" in result.output


def test_a_lock_file_that_cannot_be_opened_is_a_clear_error(tmp_path):
    from engine.ledger import one_run_at_a_time

    (tmp_path / ".ledger.sqlite.lock").mkdir()  # something in the way that is not a file
    with pytest.raises(LedgerError) as info:
        with one_run_at_a_time(tmp_path / "ledger.sqlite", print):
            pass
    (problem,) = info.value.problems
    assert problem.code == "ledger-lock" and problem.location.file == str(tmp_path / ".ledger.sqlite.lock")
    assert "cannot open the ledger's lock file" in problem.message and "Is a directory" in problem.message


def test_a_withdrawn_run_no_longer_holds_anything_back(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.record("run-1", AS_OF, [task()], [message()])
        ledger.record("run-2", AS_OF + timedelta(hours=1), [task(cid="C002")], [])
        assert ledger.withdraw("run-1", "负责人读错", datetime(2026, 11, 21, 9, 30)) == (1, 1)
        # A new run: nothing of run-1 is issued any more, for dedupe and for the caps.
        assert ledger.was_issued("care.revisit|C001|2026-11") is None
        assert ledger.issued_among([("message", "care.festival|C001|2026-11-20"), ("task", "care.revisit|C002|2026-11")]) == {
            ("task", "care.revisit|C002|2026-11"): ("run-2", AS_OF + timedelta(hours=1))}
        assert ledger.count_messages("C001", "marketing", AS_OF - timedelta(days=30)) == 0
        assert ledger.messages_between(AS_OF - timedelta(days=30)) == {}
        # run-2 was recorded before the withdrawal: executed again, it sees run-1 as it did.
        assert ledger.was_issued("care.revisit|C001|2026-11", for_run="run-2").run_id == "run-1"
        assert ledger.count_messages("C001", "marketing", AS_OF - timedelta(days=30), for_run="run-2") == 1
        # What run-1 issued stays readable, marked.
        entries = list(ledger.entries(run_id="run-1"))
        assert [(e.kind, e.withdrawn_at) for e in entries] == [("message", datetime(2026, 11, 21, 9, 30)),
                                                              ("task", datetime(2026, 11, 21, 9, 30))]
        assert ledger.withdrawn("run-1") == (datetime(2026, 11, 21, 9, 30), "负责人读错")
        assert ledger.withdrawn("run-2") is None
        # The corrected batch issues the same item; a run after it is held back by it, not by run-1.
        ledger.record("run-3", AS_OF + timedelta(hours=2), [task()], [])
        assert ledger.was_issued("care.revisit|C001|2026-11").run_id == "run-3"
        # run-1 issued again (run --force): guarded against the later run-3, its message alone is new.
        assert ledger.was_issued("care.revisit|C001|2026-11", for_run="run-1").run_id == "run-3"
        assert ledger.was_issued("care.festival|C001|2026-11-20", for_run="run-1") is None
        ledger.record("run-1", AS_OF, [], [message()])
        assert ledger.withdrawn("run-1") is None
        assert [(e.kind, e.run_id, e.withdrawn_at) for e in ledger.entries(customer_id="C001")] == [
            ("message", "run-1", None), ("task", "run-3", None)]


def test_a_version_1_ledger_is_upgraded_and_keeps_its_rows(tmp_path):
    path = tmp_path / "ledger.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, as_of TEXT NOT NULL,
                           tasks INTEGER NOT NULL, messages INTEGER NOT NULL);
        CREATE TABLE issued (key TEXT NOT NULL, kind TEXT NOT NULL, customer_id TEXT NOT NULL, rule_id TEXT NOT NULL,
                             stage TEXT, channel TEXT, category TEXT, template TEXT, assignee TEXT, priority TEXT,
                             send_at TEXT, due TEXT, run_id TEXT NOT NULL, issued_at TEXT NOT NULL, PRIMARY KEY (kind, key));
        INSERT INTO schema_version VALUES (1);
        INSERT INTO runs VALUES ('old-run', 1, '2026-10-20T23:59:59', 1, 0);
        INSERT INTO issued VALUES ('care.revisit|C001|2026-10', 'task', 'C001', 'care.revisit', 'care', NULL, NULL, NULL,
                                   '王敏', '中', NULL, '2026-10-23T18:00:00', 'old-run', '2026-10-20T23:59:59');
    """)
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.was_issued("care.revisit|C001|2026-10").run_id == "old-run"
        assert ledger.withdraw("old-run", "测试", datetime(2026, 11, 1, 8, 0)) == (1, 0)
        assert ledger.was_issued("care.revisit|C001|2026-10") is None
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert conn.execute("SELECT COUNT(*) FROM recalls").fetchone()[0] == 0  # version 3: recalled messages
    conn.close()
