"""The second core: part of the customers evaluated and some files written in helper processes
(engine/parallel.py). The files must be byte-identical to one process's, errors must come back as
one process would raise them, and the helpers must end with the run."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

import engine.parallel


@pytest.fixture
def helpers_for_any_size(monkeypatch):
    """Auto mode (the default), with the size threshold lowered so the 500-customer sample uses the
    helpers, and small chunks and parts so that facts and results travel in several of each."""
    monkeypatch.delenv("CRM_ENGINE_PROCESSES", raising=False)
    monkeypatch.setattr(engine.parallel, "SPLIT_MIN_INBOX_BYTES", 1)
    monkeypatch.setattr(engine.parallel, "CHUNK_CUSTOMERS", 40)
    monkeypatch.setattr(engine.parallel, "PART_ITEMS", 300)
    monkeypatch.setattr(engine.parallel, "_usable_cores", lambda: 2)


def _run(tmp_path: Path, name: str, policies: Path | None = None, *more: str):
    from click.testing import CliRunner

    from conftest import ROOT
    from engine.cli import main

    return CliRunner().invoke(main, ["run", "--policies", str(policies or ROOT / "policies"), "--inbox", str(ROOT / "inbox"),
                                     "--outbox", str(tmp_path / name), "--as-of", "2026-11-20", *more])


def _assert_same_run_folders(tmp_path: Path, one: str, other: str) -> None:
    (a,) = [p for p in (tmp_path / one).iterdir() if p.is_dir()]
    (b,) = [p for p in (tmp_path / other).iterdir() if p.is_dir()]
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert Path("sla.xlsx") in files and Path("customers.xlsx") in files
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_one_process_and_two_give_identical_run_folders(tmp_path: Path, monkeypatch):
    for name, processes in (("one", "1"), ("two", "2")):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        result = _run(tmp_path, name)
        assert result.exit_code == 0, result.output
    _assert_same_run_folders(tmp_path, "one", "two")
    again = _run(tmp_path, "two")  # already done (the same run id): the helpers are not used, and end
    assert again.exit_code == 0 and "分两个进程评估" not in again.output, again.output
    assert multiprocessing.active_children() == []


def test_the_helpers_give_the_files_of_one_process(tmp_path: Path, helpers_for_any_size, monkeypatch):
    """The default for a large inbox: the last customers are evaluated in a second process (their
    decisions, SLA items and stage counts appended) and customers.xlsx, tasks/ and messages/ are
    written by a third while this one writes the rest. Every file must be byte-identical."""
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    one = _run(tmp_path, "one")
    assert one.exit_code == 0 and "分两个进程评估" not in one.output, one.output
    monkeypatch.delenv("CRM_ENGINE_PROCESSES")
    two = _run(tmp_path, "two")
    assert two.exit_code == 0, two.output
    assert "分两个进程评估：本进程 265 位客户，另一进程 235 位" in two.output
    _assert_same_run_folders(tmp_path, "one", "two")
    assert multiprocessing.active_children() == []  # both helpers have ended


def test_the_helpers_evaluate_with_durable_rules_too(tmp_path: Path, monkeypatch):
    pytest.importorskip("durable.lang", reason="durable-rules is not installed (pip install '.[durable]')")
    for name, processes in (("one", "1"), ("two", "2")):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        result = _run(tmp_path, name, None, "--engine", "durable")
        assert result.exit_code == 0, result.output
        assert ("分两个进程评估" in result.output) == (processes == "2")
    _assert_same_run_folders(tmp_path, "one", "two")


def test_facts_start_finds_each_customers_slice():
    from engine.model import Interaction, SourceRow
    from engine.parallel import facts_start

    class C:
        def __init__(self, cid):
            self.customer_id = cid

    customers = [C("C1"), C("C2"), C("C3"), C("C5")]
    facts = [Interaction(f"I{n}", cid, None, SourceRow("f", "s", n)) for n, cid in enumerate(["C1", "C1", "C3", "C5", "C5"])]
    assert [facts_start(facts, customers, i) for i in range(5)] == [0, 2, 2, 3, 5]
    assert facts_start(facts, customers, 3, lo=3) == 3 and facts_start(facts, customers, 9) == 5


def test_the_evaluating_helper_reads_while_it_works_and_its_results_wait_in_this_process(monkeypatch):
    """Neither side waits for the other's pipe: sending every chunk of facts returns while the helper
    has not evaluated any (its reading thread takes them in), and the helper sends all its decisions
    and ends before ``receive`` is called (this process's reading thread keeps them). What arrives is
    what evaluating the same customers in one process gives, in order."""
    from datetime import date

    from conftest import ROOT
    from engine.parallel import SecondEvaluator
    from engine.readers import load_columns, read_inbox
    from engine.run import BatchEvaluator, evaluate_dataset
    from engine.transfer import DECISION_KINDS
    from engine.validate import load_checked_policies

    monkeypatch.setattr(engine.parallel, "CHUNK_CUSTOMERS", 25)  # 20 chunks, ~0.7 MB: more than a pipe holds (~0.2 MB)
    policies, templates, as_of = ROOT / "policies", ROOT / "templates", date(2026, 11, 20)
    policyset = load_checked_policies(policies, templates)
    dataset = read_inbox(ROOT / "inbox", load_columns(policies / "columns.yaml"))
    go = multiprocessing.get_context("fork").Event()

    def start_when_told():
        if not go.wait(30):
            raise RuntimeError("send() did not return while this helper was busy")
        return BatchEvaluator(policyset, as_of, templates, release_facts=True)

    helper = SecondEvaluator(start_when_told)
    try:
        helper.send(dataset.customers, dataset.interactions, dataset.orders)  # would block here without the helper's reader
        assert not go.is_set() and helper._process.is_alive()
        go.set()
        helper._process.join(60)  # it ends once everything is sent: nobody had to receive() yet
        assert helper._process.exitcode == 0
        theirs, (states, warnings) = helper.receive()
    finally:
        helper.close()
    ours = evaluate_dataset(policyset, dataset, as_of, templates, release_facts=True)
    assert warnings == ours.warnings == []
    assert len(theirs["firings"]) > 5000
    for kind, mine in zip(DECISION_KINDS, (ours.customer_rows, ours.tasks, ours.messages, ours.firings)):
        assert theirs[kind] == mine, kind
    assert states == {stage: module.export_state() for stage, module in ours.modules.items()}


def test_one_core_means_one_process(tmp_path: Path, helpers_for_any_size, monkeypatch):
    monkeypatch.setattr(engine.parallel, "_usable_cores", lambda: 1)
    result = _run(tmp_path, "out")
    assert result.exit_code == 0 and "分两个进程评估" not in result.output, result.output


@pytest.mark.parametrize("platform, setting, expected", [
    ("linux", None, True), ("darwin", None, False), ("darwin", "2", True), ("linux", "1", False), ("linux", "auto", True),
])
def test_when_the_helpers_are_used(helpers_for_any_size, monkeypatch, platform, setting, expected):
    """Auto mode only on Linux (macOS can fork, but its system libraries are not fork-safe); 2 asks
    for them anywhere fork exists; 1 never."""
    from conftest import ROOT

    monkeypatch.setattr(engine.parallel.sys, "platform", platform)
    if setting is not None:
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", setting)
    assert engine.parallel.wants_helpers(ROOT / "inbox") is expected


def test_a_small_inbox_is_evaluated_in_one_process(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("CRM_ENGINE_PROCESSES", raising=False)
    result = _run(tmp_path, "out")
    assert result.exit_code == 0 and "分两个进程评估" not in result.output, result.output


def test_an_error_in_the_second_process_is_the_error_one_process_gives(tmp_path: Path, monkeypatch, policy_copy: Path):
    """A message template that fails while rendering, only for the last customers (those the second
    process gets): the run stops with the same problem, file and line as in one process, and writes
    nothing."""
    for template in (policy_copy.parent / "templates" / "messages").rglob("*.txt"):
        text = template.read_text(encoding="utf-8")
        template.write_text("{% if customer.customer_id >= 'C000450' %}{{ '%d' % customer.customer_id }}{% endif %}" + text,
                            encoding="utf-8")
    errors = {}
    for name, processes in (("one", "1"), ("two", "2")):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        result = _run(tmp_path, name, policy_copy)
        assert result.exit_code != 0
        assert "分两个进程评估" in result.output if processes == "2" else "分两个进程评估" not in result.output
        errors[name] = result.output[result.output.index("发现"):]
        outbox = tmp_path / name
        assert not outbox.exists() or not any(p.is_dir() and not p.name.startswith(".") for p in outbox.iterdir())
        assert multiprocessing.active_children() == []
    assert errors["one"] == errors["two"]
    assert "sms/offer.txt:1:1: 错误 error:" in errors["two"] and "[template-error]" in errors["two"], errors["two"]


def test_a_calendar_without_next_years_holidays_is_said_once_by_one_process_or_two(tmp_path: Path, monkeypatch,
                                                                                   policy_copy: Path, helpers_for_any_size):
    """With on_uncovered_year: warn, a run on 2026-12-28 computes deadlines in 2027 with weekends only:
    it says so once (met by both processes), besides the warning ahead, and the files are the same."""
    from click.testing import CliRunner

    from conftest import ROOT
    from engine.cli import main

    calendar = policy_copy / "calendar.yaml"
    calendar.write_text(calendar.read_text(encoding="utf-8").replace("on_uncovered_year: error", "on_uncovered_year: warn"),
                        encoding="utf-8")
    for name, processes in (("one", "1"), ("two", "2")):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        result = CliRunner().invoke(main, ["run", "--policies", str(policy_copy), "--inbox", str(ROOT / "inbox"),
                                           "--outbox", str(tmp_path / name), "--as-of", "2026-12-28"])
        assert result.exit_code == 0, result.output
        assert ("分两个进程评估" in result.output) == (processes == "2")
        said = [line for line in result.output.splitlines() if "warning:" in line and "calendar" in line]
        assert [line.rsplit("[", 1)[1] for line in said] == ["calendar-year-ahead]", "calendar-year-not-covered]"], said
        assert "calendar 'standard' needs the public holidays of 2027" in said[1]
        assert said[1].endswith("; only the weekly schedule was used (weekends are rest days, holidays ignored) [calendar-year-not-covered]")
    _assert_same_run_folders(tmp_path, "one", "two")


def test_the_evaluating_helper_sends_back_its_warnings(policy_copy: Path):
    from datetime import date

    from conftest import ROOT
    from engine.parallel import SecondEvaluator, facts_start
    from engine.readers import load_columns, read_inbox
    from engine.run import BatchEvaluator
    from engine.validate import load_checked_policies

    calendar = policy_copy / "calendar.yaml"
    calendar.write_text(calendar.read_text(encoding="utf-8").replace("on_uncovered_year: error", "on_uncovered_year: warn"),
                        encoding="utf-8")
    templates = policy_copy.parent / "templates"
    policyset = load_checked_policies(policy_copy, templates)
    dataset = read_inbox(ROOT / "inbox", load_columns(policy_copy / "columns.yaml"))
    helper = SecondEvaluator(lambda: BatchEvaluator(policyset, date(2026, 12, 28), templates, release_facts=True))
    try:
        last = len(dataset.customers) - 50
        helper.send(dataset.customers[last:], dataset.interactions[facts_start(dataset.interactions, dataset.customers, last):],
                    dataset.orders[facts_start(dataset.orders, dataset.customers, last):])
        _, (_, warnings) = helper.receive()
    finally:
        helper.close()
    assert [(w.code, w.severity) for w in warnings] == [("calendar-year-not-covered", "warning")]
    assert "calendar 'standard' needs the public holidays of 2027" in warnings[0].message


def test_no_helpers_while_other_threads_run(tmp_path: Path, helpers_for_any_size):
    """Forking a process that runs threads can deadlock the child: an embedding program's threads
    keep the run in one process."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        result = _run(tmp_path, "out")
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0 and "分两个进程评估" not in result.output, result.output


def test_a_helper_that_dies_is_a_clear_error():
    from engine.errors import EngineError
    from engine.parallel import SecondEvaluator

    def killed():  # as if the out-of-memory killer stopped it
        import os

        os._exit(9)

    helper = SecondEvaluator(killed)
    try:
        with pytest.raises(EngineError) as err:  # from send or receive, whichever notices first
            helper.send([], [], [])
            helper.receive()
    finally:
        helper.close()
    problem = err.value.problems[0]
    assert problem.code == "helper-process-ended" and "exit code 9" in problem.message
    assert "CRM_ENGINE_PROCESSES=1" in problem.fix


def test_the_writer_writes_what_it_is_sent_and_its_errors_come_back(tmp_path: Path):
    import openpyxl

    from engine.errors import InputError, Location, Problem
    from engine.parallel import SecondWriter
    from engine.xlsx_out import Column, Sheet, Workbook

    def write(folder: Path, listed: dict):
        if not listed.get("rows"):
            raise InputError(Problem("nothing", "没有客户行", Location(file="customers.xlsx")))
        (folder / "rows.txt").write_text("\n".join("|".join(map(str, row)) for row in listed["rows"]), encoding="utf-8")
        return len(listed["rows"])

    early = {"early.xlsx": Workbook([Sheet("服务时限", [Column("客户编号"), Column("数量", kind="int")], [("C1", 3), ("C2", 4)])])}
    writer = SecondWriter(write)
    try:
        writer.begin(tmp_path, early)  # written at once, before the lists arrive
        writer.write_workbooks({"later.xlsx": Workbook([Sheet("表", [Column("列")], [("值",)])], title="标题")})
        writer.start({"rows": [("C1", "甲", 3), ("C2", None, 0)] * 15_000, "tasks": []})
        assert writer.finish() == 30_000  # sent in parts, received whole and in order
    finally:
        writer.close()
    assert (tmp_path / "rows.txt").read_text(encoding="utf-8").splitlines()[:3] == ["C1|甲|3", "C2|None|0", "C1|甲|3"]
    sheet = openpyxl.load_workbook(tmp_path / "early.xlsx").active
    assert sheet.title == "服务时限" and [list(r) for r in sheet.values] == [["客户编号", "数量"], ["C1", 3], ["C2", 4]]
    later = openpyxl.load_workbook(tmp_path / "later.xlsx")
    assert later.properties.title == "标题" and [list(r) for r in later.active.values] == [["列"], ["值"]]

    writer = SecondWriter(write)
    try:
        writer.begin(tmp_path, {})
        writer.start({"rows": []})
        with pytest.raises(InputError) as err:
            writer.finish()
    finally:
        writer.close()
    assert str(err.value) == "customers.xlsx: 错误 error: 没有客户行 [nothing]"

    writer = SecondWriter(write)  # an early workbook that cannot be written: its error, once all has arrived
    try:
        writer.begin(tmp_path / "gone", early)
        writer.start({"rows": [("C1", "甲", 3)] * 50_000})
        with pytest.raises(FileNotFoundError, match="early.xlsx"):
            writer.finish()
    finally:
        writer.close()


@pytest.mark.skipif(not Path("/proc/sys/net/core/wmem_max").exists(), reason="Linux socket limits")
def test_the_pipes_have_buffers_of_megabytes():
    """Each side reads on a thread that gets the GIL only now and then: with the default ~200 KB
    buffer the sender waits (at 100,000 customers the hand-over of facts took ~2 s longer)."""
    import os
    import socket

    from engine.parallel import PIPE_BUFFER_BYTES, SecondWriter

    writer = SecondWriter(lambda folder, listed: None)
    try:
        with socket.socket(fileno=os.dup(writer._conn.fileno())) as sock:
            sent, received = (sock.getsockopt(socket.SOL_SOCKET, option) for option in (socket.SO_SNDBUF, socket.SO_RCVBUF))
    finally:
        writer.close()
    most = min(int(Path(f"/proc/sys/net/core/{name}").read_text()) for name in ("wmem_max", "rmem_max"))
    assert min(sent, received) >= min(PIPE_BUFFER_BYTES, most)  # Linux reports twice what was asked
