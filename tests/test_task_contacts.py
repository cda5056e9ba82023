"""Task sheets say whom to call and how (联系人, 电话, 邮箱, 微信, 偏好渠道 from the customer export) and
end with the task's 去重键, which matches it to its decision-log record and its contact-ledger row
(engine/outputs.py ``TASK_COLUMNS``, ``task_contacts``). The same cells whether the writer helper
writes the sheets or the main process does; the contact data never reaches the console."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from conftest import ROOT, customer, write_inbox
from engine.cli import main
from engine.xlsx_out import display_width

HEADER = ("截止时间", "优先级", "客户编号", "客户名称", "联系人", "电话", "邮箱", "微信", "偏好渠道", "任务", "原因",
          "建议话术", "规则编号", "阶段", "分配方式", "负责人", "去重键", "上次派发", "第几次")
CONTACT = slice(4, 9)
KEY = HEADER.index("去重键")


def run(inbox: Path, outbox: Path) -> tuple[str, Path]:
    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                       "--outbox", str(outbox), "--as-of", "2026-11-20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in outbox.iterdir() if p.is_dir()]
    return result.output, folder


def sheet_rows(path: Path) -> list[tuple]:
    return list(openpyxl.load_workbook(path).active.iter_rows(values_only=True))


def test_the_task_sheets_of_a_real_run_say_whom_to_call(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    output, folder = run(ROOT / "inbox", tmp_path / "outbox")

    # 刘洋's company customer C000216: the sheet names the person to call and the numbers.
    ws = openpyxl.load_workbook(folder / "tasks" / "刘洋.xlsx").active
    header, *rows = list(ws.iter_rows(values_only=True))
    assert header == HEADER
    mine = [r for r in rows if r[2] == "C000216"]
    assert mine and all(r[3] == "深圳瑞丰教育科技有限公司" for r in mine)
    assert {r[CONTACT] for r in mine} == {("林佳", "19486827276", "zhangchen4376@gmail.com", "wxid_2rud7h7y2c", "短信")}
    # The columns fit their content (CJK counted double), the e-mail address included.
    widths = {cell.value: ws.column_dimensions[cell.column_letter].width for cell in ws[1]}
    for name in ("联系人", "电话", "邮箱", "微信", "偏好渠道", "去重键"):
        at = HEADER.index(name)
        assert widths[name] >= max(display_width(str(r[at])) for r in rows if r[at] is not None), name
    # Nothing of it on the console.
    for text in ("林佳", "19486827276", "zhangchen4376@gmail.com", "wxid_2rud7h7y2c"):
        assert text not in output

    # Every row's 去重键 is its task's key in the decision log and in the contact ledger.
    keys = [r[KEY] for p in sorted((folder / "tasks").glob("*.xlsx")) for r in sheet_rows(p)[1:]]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert len(keys) == len(set(keys)) == manifest["counts"]["tasks"]
    logged = {out["task"]["key"]
              for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()
              for out in json.loads(line)["outputs"] if "task" in out and "suppressed_by" not in out["task"]}
    with sqlite3.connect(tmp_path / "outbox" / "ledger.sqlite") as db:
        recorded = {k for (k,) in db.execute("SELECT key FROM issued WHERE kind = 'task'")}
    assert set(keys) == logged == recorded


def contacts_inbox(tmp_path: Path) -> Path:
    """Two signed low-value customers due for their revisit (a task each for 张伟): C1 a person whose
    contact cells start like formulas; C2 a company with a 联系人 and a landline."""
    return write_inbox(
        tmp_path / "inbox",
        customers=[
            customer("C1", 签约日期="2025-01-10", 联系人='=HYPERLINK("http://x","点")', 微信号="@wx1", 手机号码="+86 138 1234 5678"),
            customer("C2", 签约日期="2025-01-10", 客户名称="深圳某某科技有限公司", 联系人="王五", 手机号码="0755-8888 1234",
                     邮箱="-c2@example.com", 偏好渠道="电话"),
        ],
        orders=[[f"O{i}", f"C{i}", "2026-09-01", 800, "耗材", 1] for i in (1, 2)],
    )


def test_contact_cells_are_escaped_and_the_same_from_one_process_or_two(tmp_path: Path, monkeypatch):
    """The second customer is evaluated in the second process and the sheets written by the writer
    helper: the contact cells travel with the tasks and the files are byte-identical."""
    inbox = contacts_inbox(tmp_path)
    folders = []
    for processes in ("1", "2"):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        output, folder = run(inbox, tmp_path / f"outbox-{processes}")
        assert ("分两个进程评估" in output) == (processes == "2"), output
        folders.append(folder)
    one, two = folders
    assert [p.name for p in (one / "tasks").iterdir()] == ["张伟.xlsx"]
    assert (one / "tasks" / "张伟.xlsx").read_bytes() == (two / "tasks" / "张伟.xlsx").read_bytes()

    header, *rows = sheet_rows(two / "tasks" / "张伟.xlsx")
    assert header == HEADER
    contacts = {r[2]: r[CONTACT] for r in rows}
    # A text that Excel could read as a formula gets a leading apostrophe; a +86 number stays as it is.
    assert contacts == {
        "C1": ('\'=HYPERLINK("http://x","点")', "13812345678", None, "'@wx1", "短信"),
        "C2": ("王五", "075588881234", "'-c2@example.com", None, "电话"),
    }
    assert {r[2]: r[KEY] for r in rows} == {"C1": "CARE-REVISIT-DUE|C1|2026-11", "C2": "CARE-REVISIT-DUE|C2|2026-11"}


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_run_with_no_task_left_writes_no_task_sheet(tmp_path: Path, monkeypatch, processes: str):
    """A second batch the same day (a corrected export) whose every task was issued already: no
    task goes out, and the writer helper gets empty lists (it used to miss them: KeyError)."""
    inbox = contacts_inbox(tmp_path)
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    run(inbox, tmp_path / "outbox")
    write_inbox(inbox, customers=[customer("C1", 签约日期="2025-01-10", 联系人="李四"),
                                  customer("C2", 签约日期="2025-01-10", 联系人="王五")],
                orders=[[f"O{i}", f"C{i}", "2026-09-01", 800, "耗材", 1] for i in (1, 2)])
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                       "--outbox", str(tmp_path / "outbox"), "--as-of", "2026-11-20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "任务 0（0 人）" in result.output, result.output
