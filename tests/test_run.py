"""End to end: real Excel exports in, the crm-engine CLI, real run folders out."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import openpyxl
from click.testing import CliRunner

from conftest import ROOT, customer, write_inbox, write_sheet, CUSTOMER_HEADERS
from engine.cli import main

AS_OF = "2026-11-20"  # a Friday


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run_folder(outbox: Path) -> Path:
    folders = [p for p in outbox.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def read_rows(path: Path) -> list[tuple]:
    wb = openpyxl.load_workbook(path)
    return list(wb.worksheets[0].iter_rows(values_only=True))


def decisions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]


def small_inbox(folder: Path) -> Path:
    return write_inbox(
        folder,
        customers=[
            # High value (120,000 yuan this year) and nobody looks after it.
            customer("C1", 客户经理=None, 签约日期="2024-03-01"),
            # Asked a question a month ago, never bought: an intent customer.
            customer("C2", 客户经理="李娜", 客户名称="北京星辰科技"),
            # Bought once for little money; prefers WeChat and agreed to marketing.
            customer("C3", 偏好渠道="微信", 微信号="wx_c3", 签约日期="2025-01-10"),
            # Same, but opted out: no offer.
            customer("C4", 退订="是", 签约日期="2025-01-10"),
            # A name that a spreadsheet would run as a formula.
            customer("C5", 客户名称="=HYPERLINK(\"http://x\",\"点我\")", 客户经理="李娜"),
        ],
        interactions=[
            ["I1", "C2", "2026-10-21 10:00", "电话", "咨询", "2026-10-21 10:30", "2026-10-21 11:00", "已解决", 5, "李娜", None, "询价"],
        ],
        orders=[
            ["O1", "C1", "2026-03-01", 60000, "系统", 1],
            ["O2", "C1", "2026-07-01", 60000, "系统", 1],
            ["O3", "C3", "2026-09-01", "¥1,200.50", "耗材", 2],
            ["O4", "C4", "2026-09-01", 800, "耗材", 1],
        ],
    )


def test_run_classifies_and_issues_tasks_and_messages(tmp_path: Path):
    inbox = small_inbox(tmp_path / "inbox")
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    folder = run_folder(tmp_path / "out")
    assert "客户 5，互动 1，订单 4" in result.output
    assert str(folder) in result.output

    customers = {r[0]: r for r in read_rows(folder / "customers.xlsx")[1:]}
    header = read_rows(folder / "customers.xlsx")[0]
    col = {h: i for i, h in enumerate(header)}
    assert customers["C1"][col["价值等级"]] == "高"
    assert customers["C1"][col["合作阶段"]] == "签约"
    assert customers["C1"][col["服务团队"]] == "专属客户服务团队"
    assert customers["C1"][col["近365天消费额"]] == 120000
    assert customers["C2"][col["合作阶段"]] == "意向"
    assert customers["C2"][col["价值等级"]] == "低"
    assert customers["C3"][col["近365天消费额"]] == 1200.5
    # The service plan's other results are there too, yes/no in words as in the decision table.
    assert customers["C1"][col["需配专属客户经理"]] == "是" and customers["C3"][col["需配专属客户经理"]] == "否"
    assert customers["C1"][col["优惠方案"]] == "价格折扣、增值服务、优先体验新产品"
    assert header[-2:] == ("任务数", "消息数")

    # The team lead gets the assignment task, due two working days after Friday's start of work.
    lead = read_rows(folder / "tasks" / "王敏.xlsx")
    assert lead[0] == ("截止时间", "优先级", "客户编号", "客户名称", "联系人", "电话", "邮箱", "微信", "偏好渠道", "任务",
                       "原因", "建议话术", "规则编号", "阶段", "分配方式", "负责人", "去重键", "上次派发", "第几次")
    col = {h: i for i, h in enumerate(lead[0])}
    assert lead[1][:3] == (datetime(2026, 11, 24, 9, 0), "高", "C1")
    assert lead[1][-2:] == (None, 1)  # a new ledger: the first time
    assert lead[1][col["任务"]] == "为高价值客户指派专属客户经理"
    assert lead[1][col["规则编号"]] == "CL-ASSIGN-DEDICATED-OWNER"

    # The intent customer's owner gets a follow-up task; the formula-like name is text, not a formula.
    owner_rows = read_rows(folder / "tasks" / "李娜.xlsx")
    follow = [r for r in owner_rows[1:] if r[2] == "C2"]
    assert [(r[col["任务"]], r[0]) for r in follow] == [("跟进意向客户，推进签约", datetime(2026, 11, 25, 9, 0))]
    wb = openpyxl.load_workbook(folder / "tasks" / "李娜.xlsx")
    ws = wb.worksheets[0]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref.startswith("A1:")
    assert ws["A1"].font.bold
    c5 = [row for row in ws.iter_rows(min_row=2) if row[2].value == "C5"]
    assert c5 and c5[0][3].value == "'=HYPERLINK(\"http://x\",\"点我\")" and c5[0][3].data_type == "s"

    # Messages: the intent note by SMS, the offer by WeChat to C3, nothing to C4 who opted out.
    sms = [json.loads(line) for line in (folder / "messages" / "sms" / "messages.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(m["customer_id"], m["rule_id"]) for m in sms] == [("C2", "CL-INTENT-NOTE")]
    assert "北京星辰科技" in sms[0]["body"] and sms[0]["to"] == "13800000000"
    wechat = [json.loads(line) for line in (folder / "messages" / "wechat" / "messages.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(m["customer_id"], m["rule_id"], m["key"]) for m in wechat] == [("C3", "CL-LOW-VALUE-OFFER", "CL-LOW-VALUE-OFFER|C3|2026-11")]
    assert "本月新品上市" in wechat[0]["body"]
    # The review workbook shows when each message goes out and the key it is deduped on, as the JSON does.
    review = read_rows(folder / "messages" / "wechat" / "messages.xlsx")
    assert review[0] == ("发送时间", "客户编号", "客户名称", "发送地址", "模板", "类别", "标题", "内容", "规则编号", "去重键")
    assert review[1][:2] == (datetime.fromisoformat(wechat[0]["send_at"]), "C3") and review[1][5] == "营销"
    assert review[1][7] == wechat[0]["body"] and review[1][9] == "CL-LOW-VALUE-OFFER|C3|2026-11"
    # Long reasons and scripts wrap in their cells instead of being cut off by the next column.
    assert [ws.cell(row=1, column=c).value for c in (11, 12)] == ["原因", "建议话术"]
    assert ws.cell(row=2, column=11).alignment.wrap_text and ws.cell(row=2, column=12).alignment.wrap_text
    assert not ws.cell(row=2, column=10).alignment.wrap_text  # 任务

    # The decision log says which table row set the tier, and on which values.
    log = decisions(folder)
    tier = [d for d in log if d["customer_id"] == "C1" and d["policy"] == "value_tier"]
    assert tier == [{
        "customer_id": "C1", "stage": "classification", "policy": "value_tier", "rule_id": "VT-1",
        "source": "tables/value_tier.xlsx!价值分层!A3",
        "inputs": {"monetary_365d": 120000},
        "outputs": [{"set": {"value_tier": "高"}}],
    }]
    assign = [d for d in log if d["rule_id"] == "CL-ASSIGN-DEDICATED-OWNER"]
    assert assign[0]["source"] == "classification/actions.yaml:8:5"
    assert assign[0]["inputs"] == {"dedicated_owner_required": True, "has_owner": False}
    assert assign[0]["outputs"][0]["task"]["assignee"] == "王敏"

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["as_of"] == AS_OF
    assert [f["path"] for f in manifest["inputs"]] == ["customers.xlsx", "interactions.xlsx", "orders.xlsx"]
    assert "classification/actions.yaml" in [f["path"] for f in manifest["policies"]]
    assert "tables/value_tier.xlsx" in [f["path"] for f in manifest["policies"]]
    assert "messages/sms/offer.txt" in [f["path"] for f in manifest["templates"]]
    assert manifest["counts"]["customers"] == 5


def test_same_batch_gives_byte_identical_files_and_is_not_issued_twice(tmp_path: Path):
    inbox = small_inbox(tmp_path / "inbox")
    for out in ("a", "b"):
        assert run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / out), "--as-of", AS_OF).exit_code == 0
    a, b = run_folder(tmp_path / "a"), run_folder(tmp_path / "b")
    assert a.name == b.name
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 8
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    again = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "a"), "--as-of", AS_OF)
    assert again.exit_code == 0
    assert "nothing new was issued" in again.output


def test_a_tag_a_policy_author_adds_is_a_column_of_customers_xlsx(tmp_path: Path, policy_copy: Path):
    # Before, customers.xlsx had a fixed set of columns: a new classification never showed there.
    (policy_copy / "classification" / "key_account.yaml").write_text(
        "kind: classification\nid: key_account\ndescription: 重点客户\nhit_policy: first\nrules:\n"
        "  - id: KA-1\n    description: 近一年消费五万以上\n    when: monetary_365d >= 50000\n"
        "    set: {key_account: true, segment: 重点}\n    score: {care_points: 5}\n", encoding="utf-8")
    inbox = small_inbox(tmp_path / "inbox")
    result = run_cli("run", "--policies", str(policy_copy), "--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    rows = read_rows(run_folder(tmp_path / "out") / "customers.xlsx")
    col = {h: i for i, h in enumerate(rows[0])}
    # After the usual columns, in policy file order (key_account.yaml before service_plan.yaml).
    assert rows[0][-7:] == ("key_account", "segment", "care_points", "需配专属客户经理", "优惠方案", "任务数", "消息数")
    by_id = {r[0]: r for r in rows[1:]}
    assert (by_id["C1"][col["key_account"]], by_id["C1"][col["segment"]], by_id["C1"][col["care_points"]]) == ("是", "重点", 5)
    assert (by_id["C2"][col["key_account"]], by_id["C2"][col["segment"]]) == (None, None)


def test_a_failed_run_leaves_the_outbox_as_it_was(tmp_path: Path, policy_copy: Path):
    inbox = small_inbox(tmp_path / "inbox")
    template = policy_copy.parent / "templates" / "messages" / "wechat" / "offer.txt"
    template.write_text("{{ customer.no_such_field }}", encoding="utf-8")
    outbox = tmp_path / "out"
    outbox.mkdir()
    (outbox / "earlier-run").mkdir()
    result = run_cli("run", "--policies", str(policy_copy), "--inbox", str(inbox), "--outbox", str(outbox), "--as-of", AS_OF)
    assert result.exit_code == 1
    assert "messages/wechat/offer.txt" in result.output and "no_such_field" in result.output
    assert sorted(p.name for p in outbox.iterdir()) == ["earlier-run"]


def test_missing_required_column_names_file_sheet_and_aliases(tmp_path: Path):
    inbox = small_inbox(tmp_path / "inbox")
    headers = ["编号" if h == "客户编号" else h for h in CUSTOMER_HEADERS]
    write_sheet(inbox / "customers.xlsx", "客户信息", headers, [customer("C1")])
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)
    assert result.exit_code == 1
    assert "customers.xlsx" in result.output and "客户信息" in result.output
    assert "客户编号" in result.output and "Customer ID" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_rows_are_rejected_and_counted(tmp_path: Path):
    inbox = small_inbox(tmp_path / "inbox")
    write_sheet(inbox / "orders.xlsx", "订单", ["Order ID", "Customer ID", "Order Date", "Amount"],
                [["O1", "C1", "2026-03-01", 100], ["O2", "C1", "2026-02-30", 100], ["O3", "C9", "2026-03-01", 100]])
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)
    assert result.exit_code == 0
    assert "被拒绝的行 2" in result.output
    rows = read_rows(run_folder(tmp_path / "out") / "rejects.xlsx")
    assert rows[0] == ("文件", "工作表", "行号", "列", "原始值", "处理结果", "原因", "怎么改", "代码", "说明")
    assert [(r[0], r[2], r[8]) for r in rows[1:]] == [("orders.xlsx", 3, "bad-date"), ("orders.xlsx", 4, "unknown-customer")]
    # Staff read what happened, why and what to change in Chinese; the English detail stays beside it.
    assert rows[1][3:8] == ("Order Date", "2026-02-30", "整行未读入", "「Order Date」不是能读懂的日期或时间",
                            "写成 2024-05-17、2024/5/17 或 2024年5月17日（可带时刻，如 2024-05-17 09:30），或设为 Excel 日期格式")
    assert rows[1][9] == "Order Date (date) is required: 2026-02-30 is not a real date or time; row skipped"
    assert rows[2][5:8] == ("整行未读入", "客户编号不在客户导出里", "把这位客户一并导出到客户表，或核对客户编号是否写错")


def test_rejects_say_in_chinese_when_a_row_was_kept(tmp_path: Path):
    """An unreadable optional cell keeps its row: rejects.xlsx says so, and for a field with if_unreadable
    which value was taken instead."""
    inbox = small_inbox(tmp_path / "inbox")
    write_sheet(inbox / "customers.xlsx", "客户", ["客户编号", "客户名称", "手机", "是否退订"],
                [["C1", "甲公司", "138****5678", "否"], ["C2", "乙公司", "13800000002", "看情况"]])
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    rows = read_rows(run_folder(tmp_path / "out") / "rejects.xlsx")
    by_column = {r[3]: r for r in rows[1:]}
    assert by_column["手机"][5:9] == ("保留此行，此格按空白处理", "「手机」不是完整的电话号码",
                                      "写完整号码：11 位手机号或带区号的座机；Excel 显示成科学计数法（1.38E+10）的，先把该列设为文本格式再导出",
                                      "bad-value")
    assert by_column["是否退订"][5] == "保留此行，此格按“是”处理（稳妥起见，见 columns.yaml 的 if_unreadable）"
    assert by_column["是否退订"][6] == "「是否退订」不是“是/否”"


def test_shipped_sample_gives_real_work(tmp_path: Path):
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(ROOT / "inbox"), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    folder = run_folder(tmp_path / "out")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    assert counts["customers"] >= 490 and counts["tasks"] > 50 and counts["messages"] > 50 and counts["rejects"] > 0
    assert (folder / "tasks" / "王敏.xlsx").exists()
    log = decisions(folder)
    rules = {d["rule_id"] for d in log}
    assert {"CL-ASSIGN-DEDICATED-OWNER", "CL-INTENT-FOLLOW-UP", "CL-LOW-VALUE-OFFER", "VT-1", "VT-5"} <= rules
    # SLA: real at-risk and breached open items, each with its task.
    sla_status = [d["outputs"][0]["sla"] for d in log if d["stage"] == "sla"]
    statuses = {clock["status"] for s in sla_status for clock in (s.get("first_response") or {}, s.get("resolution") or {}) if clock}
    assert {"at_risk", "open_breached", "met", "breached"} <= statuses
    escalations = read_rows(folder / "tasks" / "李强.xlsx")  # 客服主管
    assert any(str(r[escalations[0].index("任务")]).startswith("超时升级") for r in escalations[1:])
    # Care messages and churn tasks.
    sent = [json.loads(line) for p in (folder / "messages").rglob("messages.jsonl") for line in p.read_text(encoding="utf-8").splitlines()]
    assert any(m["rule_id"].startswith("CARE-") for m in sent)
    churn_tasks = [d for d in log if d["stage"] == "churn" and any("task" in o for o in d["outputs"]) and not d.get("suppressed_by")]
    assert churn_tasks


def test_sample_command_is_deterministic(tmp_path: Path):
    for out in ("a", "b"):
        assert run_cli("sample", "--customers", "40", "--seed", "3", "--out", str(tmp_path / out)).exit_code == 0
    for name in ("customers.xlsx", "interactions.xlsx", "orders.xlsx"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_command_ends_at_once_with_its_output_and_exit_status(tmp_path: Path, policy_copy: Path):
    """The real command (a process, its output piped): after the work it ends without freeing its
    objects one by one (engine.cli.console_main), yet every line is printed and the exit status is
    the command's: 0 after a run, 1 after an error, 2 for a usage error."""
    import subprocess
    import sys

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT)

    ok = command("run", "--policies", str(ROOT / "policies"), "--inbox", str(ROOT / "inbox"), "--outbox", str(tmp_path / "out"),
                 "--as-of", "2026-11-20")
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == "运行完成 run 2026-11-20_81c67e6c（as-of 2026-11-20）"
    assert lines[-1] == f"结果在 Results in: {tmp_path / 'out' / '2026-11-20_81c67e6c'}"
    assert "结果文件已写入，联系台账已更新" in ok.stderr

    (policy_copy / "organization.yaml").write_text(
        (policy_copy / "organization.yaml").read_text(encoding="utf-8").replace("task_calendar: standard", "task_calendar: standrd"),
        encoding="utf-8")
    bad = command("validate", "--policies", str(policy_copy))
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1] == "错误 1 个，警告 0 个 / 1 error(s), 0 warning(s)"
    assert command("run", "--no-such-option").returncode == 2


def test_the_real_command_prints_each_input_warning_once(tmp_path: Path):
    """The reader's warnings are printed once, at the end of the run (they used to be logged as well,
    and Python prints an unhandled logger's warnings: each came out twice)."""
    import subprocess
    import sys

    from conftest import write_sheet

    write_sheet(tmp_path / "inbox" / "customers.xlsx", "客户信息", ["客户编号", "客户名称", "内部评级"], [["W1", "王五", "A"]])
    done = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--policies", str(ROOT / "policies"),
                           "--inbox", str(tmp_path / "inbox"), "--outbox", str(tmp_path / "out"), "--as-of", "2026-06-01"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("columns not used: 内部评级 [unknown-column]") == 1
    assert done.stderr.count("no orders sheet found in the inbox inbox") == 1


def test_an_outbox_that_cannot_be_written_is_said_before_the_batch_is_read(tmp_path: Path):
    inbox = small_inbox(tmp_path / "inbox")
    (tmp_path / "shared").write_text("a file where a folder should be")
    blocked = tmp_path / "shared" / "outbox"
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(blocked), "--as-of", AS_OF)
    assert result.exit_code == 1
    assert "读取" not in result.output  # stopped before reading the exports
    assert (f"{blocked}: 错误 error: 无法写入结果文件夹（Not a directory） / cannot write into the outbox folder (Not a directory) "
            "[outbox-not-writable]\n    fix: 换一个 --outbox，或让运行批处理的账号可以写这个文件夹 / choose another --outbox, or make "
            "this folder writable for the account that runs the batch\n") in result.output


def test_a_ledger_that_cannot_be_written_is_an_error_not_a_traceback(tmp_path: Path):
    inbox = small_inbox(tmp_path / "inbox")
    (tmp_path / "shared").write_text("a file where a folder should be")
    ledger = tmp_path / "shared" / "ledger.sqlite"
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "out"),
                     "--as-of", AS_OF, "--ledger", str(ledger))
    assert result.exit_code == 1 and "Traceback" not in result.output
    shared = tmp_path / "shared"
    reason = f"[Errno 17] File exists: '{shared}'"  # the ledger's folder cannot be made: a file is there
    assert (f"{shared}: 错误 error: 运行无法写出结果或联系台账（{reason}）：什么也没有发出 / the run could not write its results or "
            f"the contact ledger ({reason}); nothing was issued [cannot-write]\n    fix: 检查结果文件夹和台账文件是否可写、磁盘是否已满 / "
            "check that the outbox folder and the ledger file are writable and the disk is not full\n") in result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # nothing published


def test_a_renamed_policy_file_is_another_batch_a_moved_folder_is_not(tmp_path: Path, policy_copy: Path):
    import shutil

    inbox = small_inbox(tmp_path / "inbox")
    outbox = tmp_path / "out"

    def run_id(policies: Path) -> str:
        result = run_cli("run", "--policies", str(policies), "--inbox", str(inbox), "--outbox", str(outbox), "--as-of", AS_OF)
        assert result.exit_code == 0, result.output
        return result.output.split("2026-11-20_")[1][:8]

    first = run_id(policy_copy)
    moved = tmp_path / "elsewhere" / "policies"
    shutil.copytree(policy_copy, moved)
    shutil.copytree(policy_copy.parent / "templates", moved.parent / "templates")
    assert run_id(moved) == first  # the same files under the same names: the same batch
    (moved / "classification" / "need_type.yaml").rename(moved / "classification" / "need_typf.yaml")
    renamed = run_id(moved)
    assert renamed != first  # its decision log cites need_typf.yaml: not the batch run before
    log = decisions(outbox / f"2026-11-20_{renamed}")
    assert any(d["source"].startswith("classification/need_typf.yaml:") for d in log)


def test_a_date_alone_is_that_days_batch_its_messages_go_that_day(tmp_path: Path):
    # A birthday greeting decided on the birthday: with a date alone it goes at the day's send time
    # (it went the next morning, the end of the day being in the quiet hours); a run given the
    # instant 22:30 still respects the quiet hours.
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C1", 生日="1990-11-20", 签约日期="2025-01-10")],
                        orders=[["O1", "C1", "2026-09-01", 800, "耗材", 1]])
    sent = {}
    for as_of in (AS_OF, f"{AS_OF}T22:30"):
        outbox = tmp_path / as_of.replace(":", "")
        result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(outbox), "--as-of", as_of)
        assert result.exit_code == 0, result.output
        lines = (run_folder(outbox) / "messages" / "sms" / "messages.jsonl").read_text(encoding="utf-8").splitlines()
        sent[as_of] = [(m["rule_id"], m["send_at"]) for m in map(json.loads, lines)]
    assert sent == {AS_OF: [("CARE-BIRTHDAY-GREETING", "2026-11-20T10:00:00"), ("CL-LOW-VALUE-OFFER", "2026-11-20T10:00:00")],
                    f"{AS_OF}T22:30": [("CARE-BIRTHDAY-GREETING", "2026-11-21T09:00:00"), ("CL-LOW-VALUE-OFFER", "2026-11-21T09:00:00")]}


def test_a_run_for_an_instant_says_the_instant(tmp_path: Path):
    inbox = small_inbox(tmp_path / "inbox")
    result = run_cli("run", "--policies", str(ROOT / "policies"), "--inbox", str(inbox), "--outbox", str(tmp_path / "out"),
                     "--as-of", f"{AS_OF}T12:00")
    assert result.exit_code == 0, result.output
    assert f"（as-of {AS_OF} 12:00）" in result.output  # it said only the day
