"""Several people in one role (organization.yaml ``客服主管: [李强, 王芳]``).

The list used to become one "person" called "['李强', '王芳']" (tasks/['李强', '王芳'].xlsx) and an
empty list one called "[]". Now each customer's tasks for the role go to one of its people, chosen by
the customer id; validate refuses the shapes that cannot be meant. Real runs of the shipped sample
export with a copy of the shipped policies, the task sheets read back with openpyxl."""
from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, edit
from engine.cli import main
from engine.policy.loader import pick_person
from engine.validate import format_problem, validate_policies

SUPERVISORS = ("李强", "王芳")  # 客服主管 (rules' role:客服主管 and sla.yaml's escalation_role)
LEADS = ("王敏", "吴昊")  # 团队组长, the unassigned_role: customers without 客户经理


def expected_person(people: tuple[str, ...], customer_id: str) -> str:
    """The documented choice, computed here on its own: the person with the highest sha256 of
    "person NUL customer id" (docs/policies.md)."""
    return max(people, key=lambda p: hashlib.sha256(f"{p}\x00{customer_id}".encode("utf-8")).digest())


def two_person_roles(policies: Path, supervisors: str = "[李强, 王芳]") -> None:
    edit(policies / "organization.yaml", "  客服主管: 李强", f"  客服主管: {supervisors}")
    edit(policies / "organization.yaml", "  团队组长: 王敏", "  团队组长:\n    - 王敏\n    - 吴昊")


def run(policies: Path, outbox: Path) -> Path:
    result = CliRunner().invoke(main, ["run", "--policies", str(policies), "--inbox", str(ROOT / "inbox"),
                                       "--outbox", str(outbox), "--as-of", "2026-11-20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in outbox.iterdir() if p.is_dir()]
    return folder


def task_rows(folder: Path) -> dict[str, list[dict]]:
    """Task file name → its rows as {header: value}."""
    found = {}
    for path in sorted((folder / "tasks").iterdir()):
        rows = list(openpyxl.load_workbook(path).worksheets[0].iter_rows(values_only=True))
        found[path.name] = [dict(zip(rows[0], r)) for r in rows[1:]]
    return found


def by_role(rows: dict[str, list[dict]], role: str) -> dict[str, set[str]]:
    """Customer → the task files holding that customer's tasks for ``role``."""
    files = defaultdict(set)
    for name, items in rows.items():
        for r in items:
            if r["分配方式"].startswith(f"角色：{role}"):
                files[r["客户编号"]].add(name)
    return files


def test_a_role_with_two_people_splits_its_customers_between_two_task_sheets(policy_copy: Path, tmp_path: Path):
    two_person_roles(policy_copy)
    folder = run(policy_copy, tmp_path / "out1")
    rows = task_rows(folder)
    assert {"李强.xlsx", "王芳.xlsx", "王敏.xlsx", "吴昊.xlsx"} <= set(rows)
    assert not [name for name in rows if any(c in name for c in "[]'")]

    for role, people in (("客服主管", SUPERVISORS), ("团队组长", LEADS)):
        files = by_role(rows, role)
        # Each customer's tasks for the role are in exactly one sheet: the documented person's.
        assert {cid: names for cid, names in files.items()} == {
            cid: {f"{expected_person(people, cid)}.xlsx"} for cid in files}
        # Both people have work (the sample has dozens of such customers).
        assert {name for names in files.values() for name in names} == {f"{p}.xlsx" for p in people}
        for name, items in rows.items():
            for r in items:
                if r["分配方式"].startswith(f"角色：{role}"):
                    assert r["分配方式"] == f"角色：{role}，按客户编号分配给 {r['负责人']}（共 2 人：{'、'.join(people)}）"
                    assert name == f"{r['负责人']}.xlsx"

    # The SLA escalations (sla.yaml escalation_role: 客服主管) are split by the same rule.
    escalations = [(name, r["客户编号"]) for name, items in rows.items() for r in items
                   if r["阶段"] == "服务时限" and r["任务"].startswith("超时升级")]
    assert escalations and all(name == f"{expected_person(SUPERVISORS, cid)}.xlsx" for name, cid in escalations)

    # The decision log names the role and how the person was chosen; explain says it too.
    logged = [o["task"] for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()
              for o in json.loads(line)["outputs"] if "task" in o and o["task"].get("role") == "客服主管"]
    assert logged and all(t["assigned"] == f"按客户编号分配给 {t['assignee']}（共 2 人：李强、王芳）" for t in logged)
    cid = next(iter(by_role(rows, "客服主管")))
    explained = CliRunner().invoke(main, ["explain", cid, "--run", str(folder)], catch_exceptions=False).output
    assert f"[角色 客服主管，按客户编号分配给 {expected_person(SUPERVISORS, cid)}（共 2 人：李强、王芳）]" in explained


def test_the_split_is_the_same_in_every_run_and_whatever_the_order_of_the_list(policy_copy: Path, tmp_path: Path):
    two_person_roles(policy_copy)
    first = run(policy_copy, tmp_path / "out1")
    second = run(policy_copy, tmp_path / "out2")  # a fresh ledger: the same batch again
    for path in sorted((first / "tasks").iterdir()):
        assert path.read_bytes() == (second / "tasks" / path.name).read_bytes(), path.name

    edit(policy_copy / "organization.yaml", "  客服主管: [李强, 王芳]", "  客服主管: [王芳, 李强]")
    reordered = by_role(task_rows(run(policy_copy, tmp_path / "out3")), "客服主管")
    assert reordered == by_role(task_rows(first), "客服主管")


def test_a_person_added_takes_customers_only_from_the_others_and_about_evenly():
    ids = [f"C{n:06d}" for n in range(1, 3001)]
    two = {cid: pick_person(SUPERVISORS, cid) for cid in ids}
    three = {cid: pick_person(SUPERVISORS + ("赵磊",), cid) for cid in ids}
    assert all(three[cid] in (two[cid], "赵磊") for cid in ids)  # nobody moved between 李强 and 王芳
    for people, chosen in ((SUPERVISORS, two), (SUPERVISORS + ("赵磊",), three)):
        share = len(ids) / len(people)
        assert all(0.9 * share < list(chosen.values()).count(p) < 1.1 * share for p in people)
    shuffled = list(SUPERVISORS + ("赵磊",))
    random.Random(1).shuffle(shuffled)
    assert all(pick_person(tuple(shuffled), cid) == three[cid] for cid in ids)


# -- validate ---------------------------------------------------------------------------------------

def problems(policies: Path) -> list[str]:
    """What validate prints, without the calendar's look-ahead warning (it depends on today's date)."""
    return [format_problem(p) for p in validate_policies(policies) if p.code != "calendar-year-ahead"]


def line_of(policies: Path, text: str) -> int:
    lines = (policies / "organization.yaml").read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if line.startswith(text))  # not a comment's example


LIST_FIX = ("修改建议: 几个人写成列表，如 客服主管: [李强, 王芳]；一个人直接写 客服主管: 李强 / write several people as a list,"
            " e.g. 客服主管: [李强, 王芳]; one person as 客服主管: 李强")


def test_an_empty_list_names_nobody(policy_copy: Path):
    edit(policy_copy / "organization.yaml", "  客服主管: 李强", "  客服主管: []")
    n = line_of(policy_copy, "  客服主管: []")
    assert problems(policy_copy) == [
        f"organization.yaml:{n}:9: 错误 error: 角色 客服主管 的人名列表是空的 / role '客服主管' has an empty list of people"
        f" [role-without-person] — {LIST_FIX}"]


def test_the_same_person_twice_in_a_role(policy_copy: Path):
    edit(policy_copy / "organization.yaml", "  客服主管: 李强", "  客服主管: [李强, 王芳, 李强]")
    n = line_of(policy_copy, "  客服主管: [")
    assert problems(policy_copy) == [
        f"organization.yaml:{n}:18: 错误 error: 角色 客服主管 里 李强 写了两次 / '李强' is listed twice for role '客服主管'"
        " [duplicate-person] — 修改建议: 删掉重复的一个 / delete one of them"]


def test_an_empty_item_and_an_item_that_is_no_name(policy_copy: Path):
    edit(policy_copy / "organization.yaml", "  客服主管: 李强", '  客服主管:\n    - 李强\n    -\n    - 1001\n    - ""\n    - [王芳]')
    n = line_of(policy_copy, "  客服主管:")
    assert problems(policy_copy) == [
        f"organization.yaml:{n + 2}:6: 错误 error: 角色 客服主管 的第 2 项是空的 / item 2 of role '客服主管' is empty"
        " [bad-role-person] — 修改建议: 写上人名，或删掉这一项 / write the person's name or delete the item",
        f"organization.yaml:{n + 3}:7: 错误 error: 角色 客服主管 的第 3 项 1001 不是人名 / item 3 of role '客服主管' (1001)"
        " is not a name [bad-role-person] — 修改建议: 写人名；工号之类要加引号，如 '1001' / write a name; quote a staff"
        " number: '1001'",
        f"organization.yaml:{n + 4}:8: 错误 error: 角色 客服主管 的第 4 项是空的 / item 4 of role '客服主管' is empty"
        " [bad-role-person] — 修改建议: 写上人名，或删掉这一项 / write the person's name or delete the item",
        f"organization.yaml:{n + 5}:7: 错误 error: 角色 客服主管 的第 5 项是嵌套的一组内容，不是人名 / item 5 of role"
        f" '客服主管' is a nested block, not a name [bad-role-person] — {LIST_FIX}"]


def test_a_nested_mapping_under_a_role(policy_copy: Path):
    edit(policy_copy / "organization.yaml", "  客服主管: 李强", "  客服主管:\n    组长: 李强")
    n = line_of(policy_copy, "    组长: 李强")
    assert problems(policy_copy) == [
        f"organization.yaml:{n}:5: 错误 error: 角色 客服主管 下面写成了一组 '名称: 值'，要写担任的人或人名列表 / role '客服主管'"
        f" holds 'key: value' lines; write a person or a list of people [bad-role-person] — {LIST_FIX}"]


def test_several_names_in_one_text(policy_copy: Path):
    """YAML reads 李强、王芳 as one text: the tasks would go to a "person" called 李强、王芳."""
    edit(policy_copy / "organization.yaml", "  客服主管: 李强", "  客服主管: 李强、王芳")
    n = line_of(policy_copy, "  客服主管: 李强、王芳")
    assert problems(policy_copy) == [
        f"organization.yaml:{n}:9: 错误 error: 角色 客服主管 写的 “李强、王芳” 像是几个人：几个人要写成列表 / role '客服主管'"
        f" reads '李强、王芳', which looks like several people: write them as a list [bad-role-person] — {LIST_FIX}"]


def test_a_run_with_a_bad_role_list_writes_nothing(policy_copy: Path, tmp_path: Path):
    edit(policy_copy / "organization.yaml", "  客服主管: 李强", "  客服主管: []")
    result = CliRunner().invoke(main, ["run", "--policies", str(policy_copy), "--inbox", str(ROOT / "inbox"),
                                       "--outbox", str(tmp_path / "out"), "--as-of", "2026-11-20"])
    assert result.exit_code != 0 and "role-without-person" in result.output
    assert not list(tmp_path.glob("out/*/tasks"))
