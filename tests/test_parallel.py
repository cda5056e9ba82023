"""Two cores: evaluating part of the customers in a second process, and writing on two; results come
back, failures are not lost, files are the same either way."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.parallel import run_two_groups


@pytest.fixture
def two_processes(monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "2")


def test_writing_in_one_process_is_the_default(monkeypatch):
    import os

    monkeypatch.delenv("CRM_ENGINE_PROCESSES", raising=False)
    child, parent = run_two_groups([os.getpid], [os.getpid])
    assert child == parent == [os.getpid()]


def test_results_of_both_groups_come_back_in_order(tmp_path: Path, two_processes):
    def write(name: str, text: str):
        def job():
            (tmp_path / name).write_text(text, encoding="utf-8")
            return {name: len(text)}
        return job

    child, parent = run_two_groups([write("a.txt", "甲乙"), write("b.txt", "丙")], [write("c.txt", "丁戊己")])
    assert child == [{"a.txt": 2}, {"b.txt": 1}] and parent == [{"c.txt": 3}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "c.txt"]


def test_the_second_process_is_another_process(two_processes):
    import os

    child, parent = run_two_groups([os.getpid], [os.getpid])
    assert parent == [os.getpid()] and child != parent


def test_a_failure_in_the_second_process_is_raised(two_processes):
    def boom():
        raise ValueError("disk full")

    with pytest.raises(RuntimeError, match="ValueError: disk full"):
        run_two_groups([boom], [lambda: 1])


def _run(tmp_path: Path, name: str, policies: Path | None = None):
    from click.testing import CliRunner

    from conftest import ROOT
    from engine.cli import main

    return CliRunner().invoke(main, ["run", "--policies", str(policies or ROOT / "policies"), "--inbox", str(ROOT / "inbox"),
                                     "--outbox", str(tmp_path / name), "--as-of", "2026-11-20"])


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
    assert "分两个进程评估" not in _run(tmp_path, "one").output  # already done: the same run id
    _assert_same_run_folders(tmp_path, "one", "two")


def test_evaluating_in_two_processes_gives_the_files_of_one(tmp_path: Path, monkeypatch):
    """The default for a large inbox: the last customers are evaluated in a second process and
    their decisions, SLA items and stage counts appended. Every file must be byte-identical."""
    import engine.parallel

    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    one = _run(tmp_path, "one")
    assert one.exit_code == 0 and "分两个进程评估" not in one.output, one.output
    monkeypatch.delenv("CRM_ENGINE_PROCESSES")
    monkeypatch.setattr(engine.parallel, "SPLIT_MIN_INBOX_BYTES", 1)  # the sample is small: split it anyway
    monkeypatch.setattr(engine.parallel, "_usable_cores", lambda: 2)
    two = _run(tmp_path, "two")
    assert two.exit_code == 0, two.output
    assert "分两个进程评估：本进程 265 位客户，另一进程 235 位" in two.output
    _assert_same_run_folders(tmp_path, "one", "two")
    import multiprocessing

    assert multiprocessing.active_children() == []  # the second process has ended


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
    assert errors["one"] == errors["two"]
    assert "sms/offer.txt:1:1: error:" in errors["two"] and "[template-error]" in errors["two"], errors["two"]
