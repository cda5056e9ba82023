"""The auditors' commands as people type them: ``crm-engine explain`` and ``crm-engine ledger`` on real
runs (ids typed full-width or with spaces, moved folders, a manifest without its folders, a run id the
ledger does not know, dedupe reasons, task titles of rules that did not fire, --only-fired)."""
from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHIPPED_POLICIES, SHIPPED_TEMPLATES, customer, write_inbox

from engine.cli_tools import explain_command
from engine.ledger_cli import ledger_command
from engine.run import RunOptions, run_batch

DAY1 = datetime(2026, 11, 20, 15, 0)
DAY2 = datetime(2026, 11, 21, 15, 0)


# The line of CARE-REVISIT-DUE's id in the shipped care/follow_up.yaml (explain names rules by file:line).
REVISIT_LINE = next(n for n, line in enumerate(
    (Path(__file__).resolve().parent.parent / "policies" / "care" / "follow_up.yaml").read_text(encoding="utf-8").splitlines(), 1)
    if line.strip() == "- id: CARE-REVISIT-DUE")

def make_project(base: Path) -> tuple[Path, Path]:
    """Copies of the shipped policies and templates, and an inbox with one signed customer who is due
    a revisit (a task that is issued once a month: the second day's run dedupes it)."""
    shutil.copytree(SHIPPED_POLICIES, base / "policies")
    shutil.copytree(SHIPPED_TEMPLATES, base / "templates")
    inbox = write_inbox(base / "inbox", customers=[customer("C000001", 签约日期="2024-06-04")],
                        orders=[["O1", "C000001", "2026-10-11", 20000, "服务", 1]])
    return base / "policies", inbox


def run(policies: Path, inbox: Path, outbox: Path, moment: datetime) -> Path:
    return run_batch(RunOptions(policies=policies, inbox=inbox, outbox=outbox, as_of=moment.date(), as_of_time=moment)).folder


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("project")
    policies, inbox = make_project(base)
    day1 = run(policies, inbox, base / "outbox", DAY1)
    day2 = run(policies, inbox, base / "outbox", DAY2)
    return {"policies": policies, "inbox": inbox, "outbox": base / "outbox", "day1": day1, "day2": day2}


def invoke(command, args: list[str]):
    return CliRunner().invoke(command, [str(a) for a in args])


def lines(result) -> list[str]:
    return result.output.splitlines()


FIRST_LINE_DAY1 = "客户 C000001 客户C000001（客户经理 张伟），as-of 2026-11-20 15:00:00"


# -- 1. customer ids are read like the exports' 客户编号 cells ------------------------------------------

@pytest.mark.parametrize("typed", ["Ｃ０００００１", " C000001", "C000001 ", "\tＣ０００００１ "])
def test_explain_run_normalises_the_typed_customer_id(project, typed):
    result = invoke(explain_command, [typed, "--run", project["day1"]])
    assert result.exit_code == 0, result.output
    assert lines(result)[:2] == [FIRST_LINE_DAY1, f"来源：运行结果 {project['day1'].as_posix()}"]


def test_explain_inputs_normalises_the_typed_customer_id(project):
    result = invoke(explain_command, ["Ｃ０００００１ ", "--policies", project["policies"], "--inbox", project["inbox"],
                                      "--as-of", "2026-11-20T15:00", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["customer_id"] == "C000001"


def test_unknown_full_width_id_is_named_normalised_with_a_suggestion(project):
    result = invoke(explain_command, ["Ｃ０００００２", "--run", project["day1"]])
    assert result.exit_code == 1
    assert lines(result) == [
        "发现 1 个问题 / 1 problem(s):",
        "C000002: 错误 error: 输入数据中没有客户 C000002；是不是 C000001？ [unknown-customer] — 修改建议: 客户编号见 customers.xlsx 或导出文件的“客户编号”列",
    ]


@pytest.mark.parametrize("typed", ["Ｃ０００００１", " C000001 "])
def test_ledger_customer_is_normalised(project, typed):
    plain = invoke(ledger_command, ["--outbox", project["outbox"], "--policies", project["policies"], "--customer", "C000001"])
    assert plain.exit_code == 0 and "C000001" in plain.output and "No matching entries" not in plain.output
    typed_result = invoke(ledger_command, ["--outbox", project["outbox"], "--policies", project["policies"], "--customer", typed])
    assert typed_result.exit_code == 0
    assert lines(typed_result) == lines(plain)


# -- 2. explain --run with folders that moved -------------------------------------------------------

@pytest.fixture
def moved(tmp_path: Path):
    """A run whose inbox, policies and templates were all moved elsewhere afterwards."""
    policies, inbox = make_project(tmp_path / "old")
    folder = run(policies, inbox, tmp_path / "outbox", DAY1)
    shutil.move(tmp_path / "old", tmp_path / "new")
    return folder, tmp_path


def test_explain_run_says_which_recorded_folders_are_gone(moved):
    folder, base = moved
    result = invoke(explain_command, ["C000001", "--run", folder])
    assert result.exit_code == 1
    fix = "修改建议: 用 --inbox/--policies/--templates 说明它现在在哪里 / use --inbox/--policies/--templates to say where it is now"
    assert lines(result) == [
        "发现 3 个问题 / 3 problem(s):",
        *(f"manifest.json: 错误 error: 运行记录的 {key} 文件夹 {(base / 'old' / key).resolve().as_posix()} 已不存在（挪走或删除了）"
          f" / the run's {key} folder is gone [moved-folder] — {fix}" for key in ("inbox", "policies", "templates")),
    ]


def test_explain_run_accepts_the_folders_where_they_are_now(moved):
    folder, base = moved
    new = base / "new"
    result = invoke(explain_command, ["C000001", "--run", folder, "--inbox", new / "inbox", "--policies", new / "policies",
                                      "--templates", new / "templates", "--only-fired"])
    assert result.exit_code == 0, result.output
    out = lines(result)
    # the files are the recorded ones (same sha256): nothing to warn about; the customer's orders follow
    assert out[:5] == [FIRST_LINE_DAY1, f"来源：运行结果 {folder.as_posix()}", "订单 orders（1 笔，as-of 之前）：",
                       "  O1  2026-10-11  20,000.00 元  计入", ""]
    assert f"    ✓ 触发  CARE-REVISIT-DUE  care/follow_up.yaml:{REVISIT_LINE}:5  距上次回访已达到服务方案的回访间隔（高价值30天、中60天、低90天）：定期回访" in out


def test_explain_run_names_a_given_folder_that_does_not_exist(moved):
    folder, base = moved
    new = base / "new"
    result = invoke(explain_command, ["C000001", "--run", folder, "--inbox", base / "nowhere", "--policies", new / "policies",
                                      "--templates", new / "templates"])
    assert result.exit_code == 1
    assert lines(result) == [
        "发现 1 个问题 / 1 problem(s):",
        (f"{(base / 'nowhere').resolve().as_posix()}: 错误 error: --inbox 给出的文件夹 {(base / 'nowhere').resolve().as_posix()} 不存在"
         " [no-folder] — 修改建议: 用 --inbox 给出它现在所在的文件夹"),
    ]


# -- 3. a manifest without its folders -----------------------------------------------------------------

def test_manifest_without_roots_is_a_clean_error(project, tmp_path: Path):
    folder = tmp_path / project["day1"].name
    shutil.copytree(project["day1"], folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["roots"]
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")

    result = invoke(explain_command, ["C000001", "--run", folder])
    assert result.exit_code == 1 and not isinstance(result.exception, KeyError)
    assert lines(result) == ["发现 1 个问题 / 1 problem(s):",
                             "manifest.json: 错误 error: manifest.json 没有记录 inbox 文件夹 [bad-manifest] — 修改建议: 用 --inbox 指定"]
    result = invoke(explain_command, ["C000001", "--run", folder, "--inbox", project["inbox"]])
    assert lines(result)[1] == "manifest.json: 错误 error: manifest.json 没有记录 policies 文件夹 [bad-manifest] — 修改建议: 用 --policies 指定"
    # saying where all three are explains the run
    result = invoke(explain_command, ["C000001", "--run", folder, "--inbox", project["inbox"], "--policies", project["policies"],
                                      "--templates", project["policies"].parent / "templates"])
    assert result.exit_code == 0, result.output
    assert lines(result)[0] == FIRST_LINE_DAY1


# -- 4. smaller ones ---------------------------------------------------------------------------------

def test_dedupe_says_which_run_issued_it(project):
    result = invoke(explain_command, ["C000001", "--run", project["day2"], "--only-fired"])
    assert result.exit_code == 0, result.output
    day1 = project["day1"].name
    out = lines(result)
    i = out.index(f"    ✓ 触发  CARE-REVISIT-DUE  care/follow_up.yaml:{REVISIT_LINE}:5  距上次回访已达到服务方案的回访间隔（高价值30天、中60天、低90天）：定期回访")
    assert out[i + 1:i + 4] == [
        "        条件 revisit_due(=true) and lifecycle_stage(='签约') == '签约' → 成立",
        "        结果 任务 → 张伟：定期回访（专门客户服务小组，每60天）（截止 2026-11-30T09:00:00，优先级 中） [被拦截：去重（已发出或重复）]"
        f" [仍待处理：2026-11-20 运行 {day1} 派给 张伟 的任务（CARE-REVISIT-DUE|C000001|2026-11，截止 2026-11-27 09:00）仍然有效，"
        "本次不重派，列在 张伟 的任务表的“仍待处理”页]",
        f"        被拦截 去重（已发出或重复）：已在 2026-11-20 的运行 {day1} 中发出（同一规则、客户、周期：CARE-REVISIT-DUE|C000001|2026-11）",
    ]


def test_task_titles_of_unfired_rules_are_rendered_or_marked(project):
    result = invoke(explain_command, ["C000001", "--run", project["day1"]])
    assert result.exit_code == 0, result.output
    out = lines(result)
    # rendered with this customer's values
    assert "        会产生 任务 → 角色 销售主管：流失风险客户：评估针对性优惠方案（客户经理 张伟）" in out
    assert "        会产生 任务 → 角色 团队组长：为中价值客户指派专属客户经理" in out
    # a value tested in {% if %} and empty: rendered as the run would
    assert "        会产生 任务 → 客户经理：流失风险客户：致电道歉并提出解决方案" in out
    # a value printed but empty for this customer: the template text, marked
    assert ("        会产生 任务 → 客户经理：购买后回访（{{ customer.post_purchase_order_date }} 的订单 "
            "{{ customer.post_purchase_order_id }}）（标题模板：这位客户的 post_purchase_order_date、post_purchase_order_id 为空）") in out
    assert ("        会产生 任务 → 客户经理：为客户准备生日贺卡和礼物（{% if customer.birthday_is_lunar %}农历{% endif %}"
            "{{ customer.birthday.month }}月{{ customer.birthday.day }}日生日）（标题模板：这位客户的 birthday 为空）") in out
    assert not [line for line in out if "{{" in line and "标题模板" not in line]


def test_ledger_unknown_run_lists_the_newest_runs(project):
    ledger = (project["outbox"] / "ledger.sqlite").as_posix()
    day1, day2 = project["day1"].name, project["day2"].name
    result = invoke(ledger_command, ["--outbox", project["outbox"], "--policies", project["policies"], "--run", "nope"])
    assert result.exit_code == 1
    assert lines(result) == [
        "发现 1 个问题 / 1 problem(s):",
        f"{ledger}: 错误 error: 台账中没有运行 nope / no such run: nope [unknown-run]",
        f"    fix: 最近的运行 newest runs: {day2}，{day1}",
    ]
    typo = invoke(ledger_command, ["--outbox", project["outbox"], "--policies", project["policies"], "--run", day1[:-1]])
    assert typo.exit_code == 1
    assert lines(typo)[1] == f"{ledger}: 错误 error: 台账中没有运行 {day1[:-1]} / no such run: {day1[:-1]}；是不是 {day1}？ [unknown-run]"
    known = invoke(ledger_command, ["--outbox", project["outbox"], "--policies", project["policies"], "--run", day1])
    assert known.exit_code == 0 and "CARE-REVISIT-DUE" in known.output


def test_only_fired_leaves_out_stages_where_nothing_fired(project):
    full = lines(invoke(explain_command, ["C000001", "--run", project["day1"]]))
    assert "【服务时限 sla】" in full  # listed with its unfired targets
    result = invoke(explain_command, ["C000001", "--run", project["day1"], "--only-fired"])
    assert result.exit_code == 0, result.output
    out = lines(result)
    headings = [line for line in out if line.startswith("【")]
    assert headings == ["【客户分类 classification】", "【客户关怀 care】"]
    for n, line in enumerate(out):
        if line.startswith("【"):
            assert out[n - 1] == "" and out[n + 1].startswith("  "), out[n - 1:n + 2]
    assert out[-1] != ""



def test_explain_lists_the_orders_and_which_count(tmp_path: Path):
    """A cancelled order and a refund row are shown with why they do not count as purchases."""
    inbox = write_inbox(tmp_path / "inbox", customers=[customer("C1")], orders=[
        ["O1", "C1", "2026-09-01", 3000, "服务", 1], ["O2", "C1", "2026-10-01", 90000, "服务", 1],
        ["R1", "C1", "2026-10-05", -500, "服务", 1], ["O9", "C1", "2026-12-01", 100, "服务", 1]])
    import openpyxl as _openpyxl

    wb = _openpyxl.load_workbook(inbox / "orders.xlsx")
    ws = wb.active
    ws.cell(row=1, column=7, value="订单状态")
    ws.cell(row=3, column=7, value="已取消")
    wb.save(inbox / "orders.xlsx")
    result = invoke(explain_command, ["C1", "--policies", SHIPPED_POLICIES, "--inbox", inbox, "--as-of", "2026-11-20"])
    assert result.exit_code == 0, result.output
    out = lines(result)
    start = out.index("订单 orders（3 笔，as-of 之前）：")
    assert out[start + 1:start + 4] == [
        "  R1  2026-10-05  -500.00 元  退款行：只减少消费额，不算购买",
        "  O2  2026-10-01  90,000.00 元（已取消）  不计入：状态在 features.yaml orders_not_counted 中",
        "  O1  2026-09-01  3,000.00 元  计入",
    ]


# -- an --as-of with a UTC offset, and "now", are read in the policies' time zone -----------------------

@pytest.mark.parametrize("typed", ["2026-11-20T07:00Z", "2026-11-20T07:00+00:00", "2026-11-20T15:00+08:00", "2026-11-20 15:00"])
def test_explain_reads_an_as_of_with_an_offset_in_the_policies_zone(project, typed):
    result = invoke(explain_command, ["C000001", "--policies", project["policies"], "--inbox", project["inbox"],
                                      "--as-of", typed, "--format", "json"])
    assert result.exit_code == 0, result.output  # an offset was a TypeError traceback (aware vs naive times)
    assert json.loads(result.output)["as_of"] == "2026-11-20 15:00:00"


def test_now_is_the_policies_wall_clock_whatever_the_machine_zone(monkeypatch):
    import time

    from engine.cli_tools import split_as_of
    from zoneinfo import ZoneInfo

    monkeypatch.setenv("TZ", "America/Los_Angeles")  # a server whose clock is far from Beijing time
    time.tzset()
    try:
        day, moment = split_as_of(None, SHIPPED_POLICIES)
        beijing = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert moment.tzinfo is None and abs((beijing - moment).total_seconds()) < 120 and day == moment.date()


def test_an_as_of_with_seconds_is_refused_not_cut(project):
    # 23:59:59 became 23:59 without a word: another instant, another run.
    result = invoke(explain_command, ["C000001", "--policies", project["policies"], "--inbox", project["inbox"],
                                      "--as-of", "2026-11-20T23:59:59"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == ("错误 / Error: 选项 '--as-of' 的值不对：'2026-11-20T23:59:59'：时间只写到分钟，如 "
                                              "2026-11-20T23:59 / invalid value for '--as-of': '2026-11-20T23:59:59': give the "
                                              "time to the minute, e.g. 2026-11-20T23:59")
