"""The contact ledger across real runs of the CLI: nothing is issued twice, later runs issue only
what is new, caps count earlier runs, and the decision log says which guard stopped what."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from conftest import ROOT, customer, edit, write_inbox
from engine.cli import main


def run(inbox: Path, outbox: Path, as_of: str, policies: Path = ROOT / "policies"):
    result = CliRunner().invoke(main, ["run", "--policies", str(policies), "--inbox", str(inbox),
                                       "--outbox", str(outbox), "--as-of", as_of], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def folder_for(outbox: Path, as_of: str) -> Path:
    (folder,) = [p for p in outbox.iterdir() if p.is_dir() and p.name.startswith(as_of[:10])
                 and json.loads((p / "manifest.json").read_text(encoding="utf-8"))["as_of_time"].startswith(as_of.replace(" ", "T"))]
    return folder


def issued(folder: Path) -> tuple[int, int]:
    counts = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["counts"]
    return counts["tasks"], counts["messages"]



def start_a_run_that_waits(inbox: Path, outbox: Path):
    """Start ``crm-engine run`` as a process while the test holds the ledger; return it and the line
    where it said it is waiting."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "engine.cli", "run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
               "--outbox", str(outbox), "--as-of", "2026-11-20"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stderr:
        if "等待另一次运行结束" in line:
            return process, line
    raise AssertionError("the run did not say it was waiting")

def inbox_with_two_customers(tmp_path: Path) -> Path:
    return write_inbox(
        tmp_path / "inbox",
        customers=[
            customer("C1", 签约日期="2025-01-10", 营销许可="是"),
            customer("C2", 签约日期="2025-01-10", 营销许可="否"),  # no consent: no offer
        ],
        orders=[["O1", "C1", "2026-09-01", 800, "耗材", 1], ["O2", "C2", "2026-09-01", 800, "耗材", 1]],
    )


def test_second_run_issues_nothing_new_and_the_next_day_only_what_is_due(tmp_path: Path):
    inbox = inbox_with_two_customers(tmp_path)
    outbox = tmp_path / "out"
    run(inbox, outbox, "2026-11-20T10:00")
    first = folder_for(outbox, "2026-11-20T10:00")
    tasks, messages = issued(first)
    assert tasks > 0 and messages > 0
    offers = [json.loads(line) for p in (first / "messages").rglob("messages.jsonl") for line in p.read_text(encoding="utf-8").splitlines()]
    assert {(m["customer_id"], m["rule_id"]) for m in offers} >= {("C1", "CL-LOW-VALUE-OFFER")}
    assert ("C2", "CL-LOW-VALUE-OFFER") not in {(m["customer_id"], m["rule_id"]) for m in offers}
    log = [json.loads(line) for line in (first / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    c2_offer = [d for d in log if d["customer_id"] == "C2" and d["rule_id"] == "CL-LOW-VALUE-OFFER"]
    assert c2_offer and c2_offer[0]["suppressed_by"] == "consent"

    # The same batch again: the folder exists, nothing new.
    again = run(inbox, outbox, "2026-11-20T10:00")
    assert "nothing new was issued" in again.output

    # Later the same day: a new run folder, but every task and message was already issued.
    later = run(inbox, outbox, "2026-11-20T16:00")
    assert issued(folder_for(outbox, "2026-11-20T16:00")) == (0, 0)
    # The summary line names the guards that stopped something, with their counts, and no others; what
    # was issued before is said apart from the real holds: it is no lost work.
    guards = json.loads((folder_for(outbox, "2026-11-20T16:00") / "manifest.json").read_text(encoding="utf-8"))["counts"]["guards"]
    by_guard = guards["suppressed_by_guard"]
    assert by_guard == {"dedupe": 3, "consent": 1} and guards["suppressed"] == 4
    assert ("  不再重复派发 3 项（已发出过或重复 3）；已拦截 1 项（营销同意 1），改期 0 条（免打扰时段）：见 guards.xlsx"
            in later.output.splitlines())

    # A month later the monthly offer is due again; weekly and quarterly items are not repeated blindly.
    run(inbox, outbox, "2026-12-21T10:00")
    december = folder_for(outbox, "2026-12-21T10:00")
    offers = [json.loads(line) for p in (december / "messages").rglob("messages.jsonl") for line in p.read_text(encoding="utf-8").splitlines()]
    assert ("C1", "CL-LOW-VALUE-OFFER", "CL-LOW-VALUE-OFFER|C1|2026-12") in {(m["customer_id"], m["rule_id"], m["key"]) for m in offers}

    listing = CliRunner().invoke(main, ["ledger", "--ledger", str(outbox / "ledger.sqlite"), "--customer", "C1"])
    assert listing.exit_code == 0, listing.output
    offer_lines = [line for line in listing.output.splitlines() if "CL-LOW-VALUE-OFFER" in line]
    assert [line.split()[0] for line in offer_lines] == ["2026-12-21", "2026-11-20"]
    assert all(" C1 " in line for line in offer_lines)



def test_an_sla_escalation_issued_earlier_is_marked_in_the_later_runs_log(tmp_path: Path):
    """SLA tasks go through the dedupe guard like every other task, and the decision log says so:
    before, their log outputs had no key, so a deduped escalation read as issued again."""
    inbox = write_inbox(
        tmp_path / "inbox",
        customers=[customer("C1", 签约日期="2025-01-10")],
        interactions=[["I1", "C1", "2026-11-19 09:00", "电话", "投诉", None, None, "处理中", None, "何欣", "服务态度", "多次来电"]],
    )
    outbox = tmp_path / "out"
    run(inbox, outbox, "2026-11-20T10:00")
    run(inbox, outbox, "2026-11-20T16:00")

    def sla_tasks(folder: Path) -> list[dict]:
        log = [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
        return [out["task"] for d in log if d["stage"] == "sla" for out in d["outputs"] if "task" in out]

    [first] = sla_tasks(folder_for(outbox, "2026-11-20T10:00"))
    assert first["key"].startswith("sla-complaint|C1|I1|") and "suppressed_by" not in first
    [later] = sla_tasks(folder_for(outbox, "2026-11-20T16:00"))
    assert later["key"] == first["key"] and later["suppressed_by"] == "dedupe"

def test_messages_are_never_scheduled_in_quiet_hours(tmp_path: Path):
    inbox = inbox_with_two_customers(tmp_path)
    run(inbox, tmp_path / "out", "2026-11-20T22:30")
    folder = folder_for(tmp_path / "out", "2026-11-20T22:30")
    sends = [json.loads(line)["send_at"] for p in (folder / "messages").rglob("messages.jsonl") for line in p.read_text(encoding="utf-8").splitlines()]
    assert sends and set(sends) == {"2026-11-21T09:00:00"}


def test_a_run_killed_while_writing_its_files_issues_nothing(tmp_path: Path):
    """The ledger rows are written while the run folder is, and committed only after it is in place:
    a run killed in between leaves no run folder and nothing recorded, and the next run issues it all."""
    import os
    import signal
    import subprocess
    import sys

    from engine.ledger import Ledger
    from engine.sample import write_sample

    inbox = tmp_path / "inbox"
    write_sample(inbox, customers=3000, seed=5)  # the files take ~1 s to write: time to kill it meanwhile
    outbox = tmp_path / "outbox"
    command = [sys.executable, "-m", "engine.cli", "run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox),
               "--outbox", str(outbox), "--as-of", "2026-11-20"]
    env = {**os.environ, "CRM_ENGINE_PROCESSES": "2", "PYTHONUNBUFFERED": "1"}  # rows staged while files are written
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    for line in proc.stdout:
        if "发送保护已检查" in line:  # the guards are done: rows are being staged, files written
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # No run folder. Killed inside the staging transaction, SQLite leaves its rollback journal (a busy
    # machine makes that likely); opening the ledger next rolls the transaction back.
    assert sorted(p.name for p in outbox.iterdir() if not p.name.startswith(".")
                  and p.name != "ledger.sqlite-journal") == ["ledger.sqlite"]
    (left,) = [p.name for p in outbox.iterdir() if p.name.startswith(".tmp-")]  # the killed run could not tidy up
    with Ledger(outbox / "ledger.sqlite") as ledger:
        assert ledger.runs() == [] and ledger.count() == 0

    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"已删除 {left}（一次被中断的运行留下的临时文件夹）" in done.stderr  # the next run did (progress lines go to stderr)
    assert [p.name for p in outbox.iterdir() if p.name.startswith(".")] == [".ledger.sqlite.lock"]  # no working folder
    with Ledger(outbox / "ledger.sqlite") as ledger:
        (recorded,) = ledger.runs()
        assert recorded["tasks"] > 0 and ledger.count() == recorded["tasks"] + recorded["messages"]


def test_an_overwrite_killed_half_way_gets_its_run_folder_back(tmp_path: Path):
    """``run --force`` sets the run folder aside before renaming the new one in; killed in between, the
    outbox would lack the run. The next run puts it back, and then finds the run already done."""
    import subprocess
    import sys

    from engine.outbox import _this_host

    inbox = inbox_with_two_customers(tmp_path)
    outbox = tmp_path / "out"
    run(inbox, outbox, "2026-11-20")
    folder = folder_for(outbox, "2026-11-20")
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    aside = outbox / f".old-{folder.name}-{_this_host()}-{ended.pid}-89abcdef"
    folder.rename(aside)  # as a killed overwrite leaves it

    again = run(inbox, outbox, "2026-11-20")
    assert f"已恢复 {folder.name}（替换它的一次运行中途被中断）" in again.output
    assert "这一批数据已经运行过" in again.output  # found done: nothing written, nothing issued again
    assert not aside.exists() and sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before


def test_a_second_run_on_the_same_ledger_waits_for_the_first(tmp_path: Path):
    """While another run holds the ledger (between its guards and its commit), a run says it is
    waiting and waits; once the first lets go it goes on, and sees what the first recorded."""
    import subprocess
    import sys
    import time

    from engine.ledger import Ledger, one_run_at_a_time

    inbox = inbox_with_two_customers(tmp_path)
    outbox = tmp_path / "out"
    said: list[str] = []
    with one_run_at_a_time(outbox / "ledger.sqlite", said.append):  # as the other run would hold it
        assert said == []  # nobody else held it
        second, line = start_a_run_that_waits(inbox, outbox)
        assert f"联系台账 {outbox / 'ledger.sqlite'}" in line
        time.sleep(0.5)
        assert second.poll() is None  # still waiting
        assert not [p for p in outbox.iterdir() if p.is_dir() and not p.name.startswith(".")]  # nothing written yet
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0 and "运行完成" in out
    with Ledger(outbox / "ledger.sqlite") as ledger:
        assert len(ledger.runs()) == 1
    # A killed holder does not leave it locked: the lock goes with the process.
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from engine.ledger import one_run_at_a_time\n"
                               f"with one_run_at_a_time({str(outbox / 'ledger.sqlite')!r}, print):\n"
                               "    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with one_run_at_a_time(outbox / "ledger.sqlite", said.append):
        assert said == []



def test_the_same_batch_started_twice_at_once_is_done_once(tmp_path: Path):
    """Two identical runs started together: the second waits for the ledger, then finds the first's
    run folder and says the batch was already run (exit 0), instead of failing with run-exists."""
    import shutil

    from engine.ledger import one_run_at_a_time

    inbox = inbox_with_two_customers(tmp_path)
    first_outbox, outbox = tmp_path / "first", tmp_path / "out"
    run(inbox, first_outbox, "2026-11-20")
    [done] = [p for p in first_outbox.iterdir() if p.is_dir() and not p.name.startswith(".")]
    with one_run_at_a_time(outbox / "ledger.sqlite", print):  # the first run, between its guards and its commit
        second, _ = start_a_run_that_waits(inbox, outbox)
        shutil.copytree(done, outbox / done.name)  # the first run's folder lands
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "nothing new was issued" in out + err and "run-exists" not in out + err


def test_a_lunar_birthday_that_falls_twice_in_one_year_is_greeted_both_times(tmp_path: Path, policy_copy: Path):
    # Lunar 十一月二十 is 2026-01-08 (lunar year 2025) and 2026-12-28 (lunar year 2026): two birthdays in
    # one solar year. Keyed by the year alone, the second greeting was stopped as "already sent".
    # (The December run's SLA deadlines may reach 2027: statutory holidays stand in for its schedule.)
    edit(policy_copy / "calendar.yaml", "on_uncovered_year: error", "on_uncovered_year: statutory")
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C1", 生日="1980-11-20", 农历生日="是", 签约日期="2025-01-10")],
                        orders=[["O1", "C1", "2025-12-01", 800, "耗材", 1]])
    outbox = tmp_path / "outbox"
    greetings = []
    for as_of in ("2026-01-07", "2026-01-08", "2026-12-27"):
        run(inbox, outbox, as_of, policy_copy)
        folder = folder_for(outbox, as_of)
        sms = folder / "messages" / "sms" / "messages.jsonl"  # no file when nothing goes out by SMS
        sent = [json.loads(line) for line in sms.read_text(encoding="utf-8").splitlines()] if sms.exists() else []
        greetings.append([m["key"] for m in sent if m["rule_id"] == "CARE-BIRTHDAY-GREETING"])
    assert greetings == [["CARE-BIRTHDAY-GREETING|C1|2026|2026-01-08"], [], ["CARE-BIRTHDAY-GREETING|C1|2026|2026-12-28"]]


def test_adding_key_by_to_a_rule_issues_nothing_again(tmp_path: Path, policy_copy: Path):
    # The birthday rules gained key_by: next_birthday_date. Ledger rows of earlier runs carry the key without
    # it (CARE-BIRTHDAY-GREETING|C1|2026): a customer greeted yesterday must not be greeted again today.
    greetings = policy_copy / "care" / "greetings.yaml"
    shipped = greetings.read_text(encoding="utf-8")
    greetings.write_text(shipped.replace("      key_by: next_birthday_date\n", ""), encoding="utf-8")
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C1", 生日="1980-11-22", 签约日期="2025-01-10")],
                        orders=[["O1", "C1", "2026-09-01", 800, "耗材", 1]])
    outbox = tmp_path / "outbox"
    run(inbox, outbox, "2026-11-20", policy_copy)
    sms = folder_for(outbox, "2026-11-20") / "messages" / "sms" / "messages.jsonl"
    assert "CARE-BIRTHDAY-GREETING|C1|2026" in [json.loads(line)["key"] for line in sms.read_text(encoding="utf-8").splitlines()]
    greetings.write_text(shipped, encoding="utf-8")
    run(inbox, outbox, "2026-11-21", policy_copy)
    log = [json.loads(line) for line in (folder_for(outbox, "2026-11-21") / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]
    [greeting] = [d for d in log if d["rule_id"] == "CARE-BIRTHDAY-GREETING"]
    assert greeting["outputs"][0]["message"]["key"] == "CARE-BIRTHDAY-GREETING|C1|2026|2026-11-22"
    assert greeting["outputs"][0]["message"]["suppressed_by"] == "dedupe"


def test_a_withdrawn_run_holds_nothing_back_and_the_corrected_batch_issues_it(tmp_path: Path):
    """Tasks went to the wrong owners (客户经理 read from the wrong column): ops withdraw the run, fix
    the export, and the corrected batch issues the same items. Before, the ledger held them back as
    already issued: the customers never got the offer, and nothing could take the run back."""
    inbox = inbox_with_two_customers(tmp_path)
    outbox = tmp_path / "out"
    run(inbox, outbox, "2026-11-20T10:00")
    first = folder_for(outbox, "2026-11-20T10:00")
    tasks, messages = issued(first)
    ledger_args = ["ledger", "--ledger", str(outbox / "ledger.sqlite"), "--outbox", str(outbox)]

    no_reason = CliRunner().invoke(main, [*ledger_args, "--withdraw", first.name])
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    unknown = CliRunner().invoke(main, [*ledger_args, "--withdraw", first.name[:-1], "--reason", "x", "--yes"])
    assert unknown.exit_code == 1 and f"是不是 {first.name}" in unknown.output
    declined = CliRunner().invoke(main, [*ledger_args, "--withdraw", first.name, "--reason", "客户经理列读错"], input="n\n")
    assert declined.exit_code == 0 and "未撤回" in declined.output

    done = CliRunner().invoke(main, [*ledger_args, "--withdraw", first.name, "--reason", "客户经理列读错"], input="y\n")
    assert done.exit_code == 0, done.output
    assert f"已撤回运行 {first.name}：任务 {tasks}，消息 {messages} 不再计入台账" in done.output
    assert f"{first} 里的任务表和消息作废" in done.output
    again = CliRunner().invoke(main, [*ledger_args, "--withdraw", first.name, "--reason", "x", "--yes"])
    assert again.exit_code == 1 and "已于" in again.output and "撤回（客户经理列读错）" in again.output

    # The same batch again: its folder is there, and the run says it was withdrawn.
    same = run(inbox, outbox, "2026-11-20T10:00")
    assert "撤回（客户经理列读错）：它的任务和消息作废" in same.output and "[run-withdrawn]" in same.output

    # The corrected export (a new batch) issues what the withdrawn run had issued.
    fixed = write_inbox(tmp_path / "fixed", customers=[customer("C1", 签约日期="2025-01-10", 营销许可="是", 客户经理="李娜"),
                                  customer("C2", 签约日期="2025-01-10", 营销许可="否", 客户经理="李娜")],
                        orders=[["O1", "C1", "2026-09-01", 800, "耗材", 1], ["O2", "C2", "2026-09-01", 800, "耗材", 1]])
    run(fixed, outbox, "2026-11-20T10:00")
    corrected = [p for p in outbox.iterdir() if p.is_dir() and p.name.startswith("2026-11-20") and p != first]
    assert len(corrected) == 1
    offers = [json.loads(line) for p in (corrected[0] / "messages").rglob("messages.jsonl")
              for line in p.read_text(encoding="utf-8").splitlines()]
    assert ("C1", "CL-LOW-VALUE-OFFER|C1|2026-11") in {(m["customer_id"], m["key"]) for m in offers}
    assert issued(corrected[0])[1] == messages

    # The ledger still shows what the withdrawn run issued, marked; --runs lists it as withdrawn.
    runs = CliRunner().invoke(main, [*ledger_args, "--runs"])
    assert runs.exit_code == 0, runs.output
    [line] = [line for line in runs.output.splitlines() if line.startswith(first.name)]
    assert line.endswith("客户经理列读错")
    [line] = [line for line in runs.output.splitlines() if line.startswith(corrected[0].name)]
    assert "客户经理列读错" not in line
    entries = CliRunner().invoke(main, [*ledger_args, "--run", first.name])
    assert entries.exit_code == 0 and f"共 {tasks + messages} 条" in entries.output

    # The withdrawn run still verifies: its folder is what it issued then.
    verified = CliRunner().invoke(main, ["verify", str(first), "--ledger", str(outbox / "ledger.sqlite")])
    assert verified.exit_code == 0, verified.output
