"""Task file names: one workbook per assignee whatever the names (collisions, device names, length)."""
from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, customer, write_inbox
from engine.cli import main
from engine.decisions import Task
from engine.outputs import write_tasks

# Pairs that one file system or another sees as one file, a device name, and a name too long for one.
COLLIDING = ["张伟/李娜", "张伟_李娜", "王芳", "王芳.", "Zhang Wei", "zhang wei"]
LONG_NAME = "欧阳" * 45  # 90 CJK characters: 270 bytes in UTF-8


def task(assignee: str, customer_id: str) -> Task:
    return Task(customer_id=customer_id, customer_name=f"客户{customer_id}", assignee=assignee, role=None,
                title="跟进", reason="测试", rule_id="R1", policy_id="P1", stage="classification",
                due=datetime(2026, 11, 24, 9, 0), priority="中", script=None)


def owners_by_file(folder: Path) -> dict[str, set[tuple[str, str]]]:
    """File name → {(负责人, 客户编号)} of every row in it, read back with openpyxl."""
    found = {}
    for path in sorted((folder / "tasks").iterdir()):
        rows = list(openpyxl.load_workbook(path).worksheets[0].iter_rows(values_only=True))
        col = {h: i for i, h in enumerate(rows[0])}
        found[path.name] = {(r[col["负责人"]], r[col["客户编号"]]) for r in rows[1:]}
    return found


def test_every_assignee_gets_their_own_file(tmp_path: Path):
    names = COLLIDING + ["CON", "李娜"]
    tasks = [task(name, f"C{i}") for i, name in enumerate(names)] + [task("李娜", "C99")]
    counts = write_tasks(tmp_path, tasks)
    assert counts == {name: 2 if name == "李娜" else 1 for name in names}
    assert len(list((tmp_path / "tasks").iterdir())) == len(names)  # none overwrote another
    found = owners_by_file(tmp_path)
    # Each file holds exactly one assignee's tasks, and every task is in one.
    assert {frozenset(rows) for rows in found.values()} == {
        frozenset((t.assignee, t.customer_id) for t in tasks if t.assignee == name) for name in names}
    # Distinct also where case does not count (Windows, macOS).
    assert len({name.casefold() for name in found}) == len(names)
    # Ordinary names as before; the others keep a readable stem and a suffix from the full name.
    assert {"李娜.xlsx", "张伟_李娜.xlsx", "王芳.xlsx"} <= set(found)
    assert found["李娜.xlsx"] == {("李娜", "C7"), ("李娜", "C99")}
    assert found["王芳.xlsx"] == {("王芳", "C2")}
    suffix = hashlib.sha256("王芳.".encode()).hexdigest()[:8]
    assert found[f"王芳-{suffix}.xlsx"] == {("王芳.", "C3")}


def test_device_and_long_names_are_safe(tmp_path: Path):
    write_tasks(tmp_path, [task("CON", "C1"), task("com1", "C2"), task(LONG_NAME, "C3")])
    files = sorted(p.name for p in (tmp_path / "tasks").iterdir())
    assert all(name.split(".")[0].upper() not in ("CON", "COM1") for name in files)
    assert all(len(name.encode("utf-8")) <= 255 for name in files)
    [long_file] = [name for name in files if name.startswith("欧阳")]
    assert len(long_file.encode("utf-8")) < 200
    wb = openpyxl.load_workbook(tmp_path / "tasks" / long_file)
    ws = wb.worksheets[0]
    assert len(ws.title) <= 31 and LONG_NAME.startswith(ws.title)  # Excel's sheet-name limit
    assert ws.cell(row=1, column=16).value == "负责人"
    assert ws.cell(row=2, column=16).value == LONG_NAME  # the full name is in the 负责人 column


def test_same_names_same_files_whatever_the_order(tmp_path: Path):
    tasks = [task(name, f"C{i}") for i, name in enumerate(COLLIDING + ["CON", LONG_NAME])]
    write_tasks(tmp_path / "a", tasks)
    write_tasks(tmp_path / "b", tasks[::-1])
    a = {p.name: p.read_bytes() for p in (tmp_path / "a" / "tasks").iterdir()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b" / "tasks").iterdir()}
    assert a == b and len(a) == len(tasks)


def test_run_writes_one_file_per_assignee(tmp_path: Path):
    """The reviewer's case end to end: intent customers of owners whose names collide (the run
    counted 6 assignees and wrote 4 files)."""
    owners = COLLIDING
    inbox = write_inbox(
        tmp_path / "inbox",
        customers=[customer(f"C{i}", 客户经理=owner) for i, owner in enumerate(owners)],
        # An inquiry a month ago and no order: each customer is an intent customer, its owner follows up.
        interactions=[[f"I{i}", f"C{i}", "2026-10-21 10:00", "电话", "咨询", "2026-10-21 10:30", "2026-10-21 11:00",
                       "已解决", 5, owner, None, "询价"] for i, owner in enumerate(owners)],
    )
    folders = []
    for n in (1, 2):
        outbox = tmp_path / f"out{n}"
        result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                           "--outbox", str(outbox), "--as-of", "2026-11-20"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"（{len(owners)} 人）" in result.output
        [folder] = [p for p in outbox.iterdir() if p.is_dir()]
        folders.append(folder)
    assert len(list((folders[0] / "tasks").iterdir())) == len(owners)
    found = owners_by_file(folders[0])
    assert {frozenset(rows) for rows in found.values()} == {frozenset({(owner, f"C{i}")}) for i, owner in enumerate(owners)}
    assert sorted(p.name for p in (folders[1] / "tasks").iterdir()) == sorted(found)


def test_the_assignment_column_says_how_each_task_was_assigned(tmp_path: Path):
    """分配方式: by role, to the ticket's handler (an SLA reminder: 林晓 handles the ticket, the 客户经理 is
    someone else), or to the 客户经理. SLA reminders used to say 客户经理."""
    from dataclasses import replace

    write_tasks(tmp_path, [task("张伟", "C1"), replace(task("林晓", "C2"), stage="sla", rule_id="sla-inquiry", handler=True),
                           replace(task("李强", "C3"), stage="sla", role="客服主管"),
                           replace(task("王磊", "C4"), stage="sla", rule_id="sla-complaint")])  # no 处理人: the 客户经理
    assigned = {}
    for path in (tmp_path / "tasks").iterdir():
        rows = list(openpyxl.load_workbook(path).worksheets[0].iter_rows(values_only=True))
        col = {h: i for i, h in enumerate(rows[0])}
        assigned.update({r[col["负责人"]]: r[col["分配方式"]] for r in rows[1:]})
    assert assigned == {"张伟": "客户经理", "林晓": "工单处理人", "李强": "角色：客服主管", "王磊": "客户经理"}
