"""Task sheets say whether a task is new or the same work given before: 上次派发 (the as-of date of
the latest earlier task of the same rule to the same customer, from the contact ledger) and 第几次
(1 for a first time). Read in one query for the whole run (``Ledger.task_history``); a re-run of the
same batch writes the same sheets."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, customer, run_cli, write_inbox
from engine.cli import main
from engine.xlsx_out import display_width

COLUMNS = ("客户编号", "规则编号", "去重键", "上次派发", "第几次")


def rows(folder: Path) -> list[tuple]:
    """The sheet's COLUMNS of every task row (one sheet: 张伟's)."""
    assert [p.name for p in (folder / "tasks").iterdir()] == ["张伟.xlsx"]
    header, *body = openpyxl.load_workbook(folder / "tasks" / "张伟.xlsx").active.iter_rows(values_only=True)
    at = [header.index(name) for name in COLUMNS]
    return [tuple(r[i] for i in at) for r in body]


def test_a_task_given_again_says_when_and_how_many_times(tmp_path: Path, monkeypatch):
    """A low-value customer (revisit every 90 days) bought in March: June brings the routine revisit,
    September and December the churn-risk revisit CH-WB-REVISIT, the second time with September's date."""
    monkeypatch.setenv("CRM_ENGINE_PROCESSES", "1")
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C1", 签约日期="2025-01-10")],
                        orders=[["O1", "C1", "2026-03-01", 800, "耗材", 1]])
    outbox = tmp_path / "outbox"

    assert rows(run_cli(inbox, outbox, "2026-06-10")) == [("C1", "CARE-REVISIT-DUE", "CARE-REVISIT-DUE|C1|2026-06", None, 1)]
    assert rows(run_cli(inbox, outbox, "2026-09-10")) == [("C1", "CH-WB-REVISIT", "CH-WB-REVISIT|C1|2026-09", None, 1)]
    december = run_cli(inbox, outbox, "2026-12-15")
    assert rows(december) == [("C1", "CH-WB-REVISIT", "CH-WB-REVISIT|C1|2026-12", datetime(2026, 9, 10), 2)]
    sheet = december / "tasks" / "张伟.xlsx"
    before = sheet.read_bytes()
    # The header and a date fit (CJK counted double, room for the filter button).
    ws = openpyxl.load_workbook(sheet).active
    widths = {cell.value: ws.column_dimensions[cell.column_letter].width for cell in ws[1]}
    assert widths["上次派发"] >= display_width("上次派发") + 2 and widths["上次派发"] >= len("2026-09-10")
    assert widths["第几次"] >= display_width("第几次") + 2

    # The same batch again: already done, the sheet is untouched.
    assert run_cli(inbox, outbox, "2026-12-15") == december
    assert sheet.read_bytes() == before
    # Run again with --force: its own ledger rows are not an earlier time; the same bytes.
    result = CliRunner().invoke(main, ["run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
                                       "--outbox", str(outbox), "--as-of", "2026-12-15", "--force"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sheet.read_bytes() == before


def test_the_same_cells_from_one_process_or_two(tmp_path: Path, monkeypatch):
    """With the writer helper the history travels to the second process: byte-identical sheets."""
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C1", 签约日期="2025-01-10"), customer("C2", 签约日期="2025-01-10")],
                        orders=[[f"O{i}", f"C{i}", "2026-03-01", 800, "耗材", 1] for i in (1, 2)])
    sheets = []
    for processes in ("1", "2"):
        monkeypatch.setenv("CRM_ENGINE_PROCESSES", processes)
        outbox = tmp_path / f"outbox-{processes}"
        run_cli(inbox, outbox, "2026-09-10")
        sheets.append(run_cli(inbox, outbox, "2026-12-15") / "tasks" / "张伟.xlsx")
    assert rows(sheets[0].parent.parent) == [
        ("C1", "CH-WB-REVISIT", "CH-WB-REVISIT|C1|2026-12", datetime(2026, 9, 10), 2),
        ("C2", "CH-WB-REVISIT", "CH-WB-REVISIT|C2|2026-12", datetime(2026, 9, 10), 2),
    ]
    assert sheets[0].read_bytes() == sheets[1].read_bytes()
