"""crm-engine verify: an untouched run re-runs identically; tampered outputs, inputs, policies and the
manifest are each named."""
from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli_tools import verify_command
from engine.run import RunOptions, run_batch
from engine.verify import format_verify, verify_run

from conftest import customer, write_inbox


@pytest.fixture
def finished_run(tmp_path: Path, policy_copy: Path):
    inbox = write_inbox(
        tmp_path / "inbox",
        customers=[customer("V1"), customer("V2", 客户阶段="意向"), customer("V3", 签约日期="2026-10-01")],
        interactions=[["I1", "V1", "2026-11-20 09:00", "电话", "投诉", None, None, "处理中", None, "何欣", "服务态度", None]],
        orders=[["O1", "V1", "2026-10-11", 120000, "服务", 1]],
    )
    result = run_batch(RunOptions(policies=policy_copy, inbox=inbox, outbox=tmp_path / "outbox", as_of=date(2026, 11, 20),
                                  as_of_time=datetime(2026, 11, 20, 15, 0)))
    return result.folder, inbox, policy_copy


def outputs_of(folder: Path) -> list[str]:
    return [e["path"] for e in json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["outputs"]]


def test_untouched_run_is_identical(finished_run):
    folder, _, _ = finished_run
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"核对运行 verify {folder.name}",
        f"一致 identical：{len(outputs_of(folder))} 个输出文件的 sha256 与清单相同，清单内容也相同",
    ]


def test_tampered_output_file(finished_run):
    folder, _, _ = finished_run
    with open(folder / "decisions.jsonl", "a", encoding="utf-8") as f:
        f.write('{"customer_id":"V9","rule_id":"VT-1"}\n')
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 1
    assert "  不同 differs: decisions.jsonl（运行文件夹中的文件被改过）" in result.output.splitlines()
    assert result.output.splitlines()[-1] == f"不一致 NOT identical：1 个文件不同，{len(outputs_of(folder)) - 1} 个相同"


def test_a_file_added_to_the_run_folder_is_named(finished_run):
    """A forged task sheet put into the run folder afterwards is in no manifest: verify names it."""
    folder, _, _ = finished_run
    shutil.copy(folder / "customers.xlsx", folder / "tasks" / "extra.xlsx")
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "  清单里没有的文件 not in the manifest: tasks/extra.xlsx（运行之后才放进运行文件夹）" in lines
    assert lines[-1] == f"不一致 NOT identical：1 个文件不同，{len(outputs_of(folder))} 个相同"


def test_edited_manifest_counts_are_named(finished_run):
    """The manifest is what auditors read the counts from; it is not in its own list of hashes, so
    its content is compared with the re-run's."""
    folder, _, _ = finished_run
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["counts"]["tasks"] -= 1
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "  清单 manifest.json 的 counts 与重新运行的不同 differs" in lines
    assert lines[-1] == f"不一致 NOT identical：0 个文件不同，清单内容不同，{len(outputs_of(folder))} 个相同"


def test_tampered_manifest_hash(finished_run):
    folder, _, _ = finished_run
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    entry = next(e for e in manifest["outputs"] if e["path"] == "customers.xlsx")
    entry["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    result = verify_run(folder)
    assert result.differ == ["customers.xlsx"] and not result.identical


def test_changed_input_and_missing_policy_stop_before_rerunning(finished_run):
    folder, inbox, policies = finished_run
    with open(inbox / "orders.xlsx", "ab") as f:
        f.write(b"\0")
    (policies / "care" / "member.yaml").unlink()
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"核对运行 verify {folder.name}",
        "无法重新运行：运行时读取的文件已缺失或被修改 / recorded files changed:",
        f"  输入 {(inbox / 'orders.xlsx').as_posix()}：已修改 changed",
        f"  策略 {(policies / 'care' / 'member.yaml').as_posix()}：缺失 missing",
    ]


def test_new_file_the_run_did_not_read(finished_run):
    folder, _, policies = finished_run
    (policies.parent / "templates" / "messages" / "sms" / "extra.txt").write_text("新模板", encoding="utf-8")
    result = verify_run(folder)
    assert result.new_inputs == [("templates", "messages/sms/extra.txt")]
    assert not result.rerun and not result.identical  # stopped before re-running another batch
    assert "  新文件 模板 messages/sms/extra.txt：运行时没有" in format_verify(result)


def test_inputs_moved_elsewhere(finished_run, tmp_path: Path):
    folder, inbox, _ = finished_run
    moved = tmp_path / "archive" / "inbox"
    shutil.move(str(inbox), moved)
    assert not verify_run(folder).identical  # the recorded folder is gone
    assert verify_run(folder, inbox=moved).identical


def test_runs_sharing_a_contact_ledger_verify_with_the_history_they_saw(finished_run):
    first, inbox, policies = finished_run
    outbox = first.parent
    second = run_batch(RunOptions(policies=policies, inbox=inbox, outbox=outbox, as_of=date(2026, 11, 21))).folder
    guards = json.loads((second / "manifest.json").read_text(encoding="utf-8"))["counts"]["guards"]
    assert guards["suppressed_by_guard"].get("dedupe"), "the second day must find items the first day issued"
    # each run is re-run with a copy of the ledger and sees only the runs recorded before it
    assert verify_run(second).identical
    assert verify_run(first).identical
    ledger = outbox / "ledger.sqlite"
    before = ledger.read_bytes()
    verify_run(second)
    assert ledger.read_bytes() == before, "verify must not change the real ledger"
    ledger.rename(outbox / "moved.sqlite")
    result = verify_run(second)
    assert not result.identical and result.notes[0].startswith(f"联系台账 {ledger.as_posix()} 不在了")
    assert verify_run(second, ledger=outbox / "moved.sqlite").identical


def test_a_run_with_warnings_given_relative_folders_verifies_identical(tmp_path: Path, policy_copy: Path, monkeypatch):
    """The run's warnings are kept in report.html and audit.xlsx: they name the inbox by its name and
    policy files relative to the policies folder, so verify (which re-runs from the recorded absolute
    folders, or from moved ones) finds the same files. Each warning is printed once."""
    from conftest import write_sheet
    from engine.cli import main

    inbox = tmp_path / "exports"
    write_sheet(inbox / "customers.xlsx", "客户信息", ["客户编号", "客户名称", "内部评级"], [["W1", "王五", "A"]])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "--policies", "policies", "--inbox", "exports", "--outbox", "out",
                                       "--as-of", "2026-06-01"])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if ": 警告 warning: " in line]
    # This export has none of the columns the policies read (签约日期, 客户经理...): a warning each, once.
    unread = [line for line in said if line.endswith("[unread-column]")]
    assert len(unread) == len(set(unread)) == 9
    said = [line for line in said if line not in unread]
    assert said == [
        "customers.xlsx, sheet 客户信息: 警告 warning: 未使用的列：内部评级 / columns not used: 内部评级 [unknown-column]",
        "exports: 警告 warning: 收件箱 exports 里没有互动记录工作表，本次运行没有互动记录 / no interactions sheet found in the inbox "
        "exports; continuing without interactions [missing-table]",
        "exports: 警告 warning: 收件箱 exports 里没有订单工作表，本次运行没有订单 / no orders sheet found in the inbox exports; "
        "continuing without orders [missing-table]",
    ]
    assert "add its header to columns.yaml under customers.<field>.aliases" in result.output
    (folder,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert [w["code"] for w in manifest["warnings"]] == ["unknown-column", "missing-table", "missing-table", *["unread-column"] * 9]
    assert verify_run(folder).identical
    moved = tmp_path / "archive"
    shutil.copytree(tmp_path / "policies", moved / "policies")
    shutil.copytree(tmp_path / "templates", moved / "templates")
    shutil.copytree(inbox, moved / "exports")
    assert verify_run(folder, inbox=moved / "exports", policies=moved / "policies", templates=moved / "templates").identical


def test_ledger_rows_removed_for_the_run_are_named(finished_run):
    """The contact ledger's rows for the run keep later runs from issuing its items again: rows
    deleted from it (or changed) make the run NOT identical, with each missing key named."""
    import sqlite3

    folder, _, _ = finished_run
    ledger = folder.parent / "ledger.sqlite"
    with sqlite3.connect(ledger) as conn:
        removed = sorted(f"{kind} {key}" for kind, key in
                         conn.execute("SELECT kind, key FROM issued WHERE customer_id = 'V1'"))
        conn.execute("DELETE FROM issued WHERE customer_id = 'V1'")
    conn.close()
    assert removed
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert [line for line in lines if "联系台账缺少" in line] == [
        f"  联系台账缺少 ledger lacks: {item}（以后的运行会再次发出）" for item in removed]
    assert lines[-1] == (f"不一致 NOT identical：0 个文件不同，联系台账 {len(removed)} 条不符，"
                         f"{len(outputs_of(folder))} 个相同")


def test_a_workbook_added_to_the_inbox_stops_before_rerunning(finished_run):
    """The re-run would read it (another batch, another run id, differences everywhere): say so and stop,
    as for a changed input."""
    folder, inbox, _ = finished_run
    shutil.copy(inbox / "orders.xlsx", inbox / "orders_extra.xlsx")
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == [
        "无法重新运行：文件夹里有运行时没有的文件，重新运行会读入它们 / new files since the run:",
        "  新文件 输入 orders_extra.xlsx：运行时没有",
        "  把它们移出，或用 --inbox 指定只有原文件的文件夹 / move them out, or give --inbox",
    ]


def test_a_template_or_policy_file_added_since_stops_before_rerunning(finished_run):
    """A draft template for a new festival, a new policy file: the re-run would be another batch, and every
    output was listed as differing. Documentation (README.md) changes no output and is no part of the run."""
    folder, _, policies = finished_run
    templates = policies.parent / "templates"
    (templates / "README.md").write_text("edited notes", encoding="utf-8")
    assert verify_run(folder).identical
    (templates / "messages" / "sms" / "draft.txt").write_text("草稿", encoding="utf-8")
    (policies / "care" / "draft.yaml").write_text("kind: care\nid: draft\nrules: []\n", encoding="utf-8")
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == [
        "无法重新运行：文件夹里有运行时没有的文件，重新运行会读入它们 / new files since the run:",
        "  新文件 策略 care/draft.yaml：运行时没有",
        "  新文件 模板 messages/sms/draft.txt：运行时没有",
        "  把它们移出，或用 --policies、--templates 指定只有原文件的文件夹 / move them out, or give --policies / --templates",
    ]


def test_a_ledger_row_recorded_differently_is_named_as_such_not_as_missing(finished_run):
    """Its key is still in the ledger, so nothing is issued again: it was called "lacks … will be issued
    again", which was not true."""
    import sqlite3

    folder, _, _ = finished_run
    with sqlite3.connect(folder.parent / "ledger.sqlite") as conn:
        kind, key = conn.execute("SELECT kind, key FROM issued WHERE kind = 'task' ORDER BY key LIMIT 1").fetchone()
        conn.execute("UPDATE issued SET assignee = 'X' WHERE kind = ? AND key = ?", (kind, key))
    conn.close()
    result = CliRunner().invoke(verify_command, [str(folder)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert not [line for line in lines if "联系台账缺少" in line]
    assert [line for line in lines if "联系台账记录内容不同" in line] == [
        f"  联系台账记录内容不同 ledger row differs: {kind} {key}（仍算已发出，但记录的内容与本次运行不符）"]
    assert lines[-1].startswith("不一致 NOT identical：0 个文件不同，联系台账 1 条不符，")


def test_a_run_for_a_date_alone_verifies_identical(tmp_path: Path, policy_copy: Path):
    """A date alone sends from that day's send_time; re-run as the instant 23:59:59 its messages would
    move to the next morning: the manifest says which it was."""
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("D1", 签约日期="2025-01-10")],
                        orders=[["O1", "D1", "2026-09-01", 800, "耗材", 1]])
    folder = run_batch(RunOptions(policies=policy_copy, inbox=inbox, outbox=tmp_path / "outbox", as_of=date(2026, 11, 20))).folder
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["as_of_time"], manifest["as_of_is_date"]) == ("2026-11-20T23:59:59", True)
    sent = json.loads((folder / "messages" / "sms" / "messages.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert sent["send_at"] == "2026-11-20T10:00:00"
    assert verify_run(folder).identical
