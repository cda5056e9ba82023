"""Writing on two cores: results come back, failures are not lost, files are the same either way."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.parallel import run_two_groups


@pytest.fixture
def two_processes(monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "2")


def test_one_process_is_the_default(monkeypatch):
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


def test_one_process_and_two_give_identical_run_folders(tmp_path: Path, monkeypatch):
    from click.testing import CliRunner

    from conftest import ROOT
    from engine.cli import main

    for name, processes in (("one", "1"), ("two", "2")):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(ROOT / "inbox"), "--outbox", str(tmp_path / name),
                                           "--as-of", "2026-11-20"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    (a,) = [p for p in (tmp_path / "one").iterdir() if p.is_dir()]
    (b,) = [p for p in (tmp_path / "two").iterdir() if p.is_dir()]
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert Path("sla.xlsx") in files and Path("customers.xlsx") in files
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
