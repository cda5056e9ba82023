"""What an ops staff member met while adding rules to a copy of the policies (not a programmer's
mistakes: a template saved by Notepad in the wrong encoding, a brace left open, a number tag, a
column the export does not have, a complaint left open too long). Each test makes the edit on a
real copy of the shipped policies and checks what the user sees: validate's line, a run's printed
output and its files."""
from __future__ import annotations

import json
import re
import shutil
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from conftest import CUSTOMER_HEADERS, INTERACTION_HEADERS, ROOT, customer, edit, write_inbox, write_sheet
from engine.cli import main
from engine.features import derive_features, group_by_customer
from engine.policy.loader import load_policies
from engine.readers import load_columns, read_inbox
from engine.validate import format_problem, validate_policies

AS_OF = "2026-11-20"
SAVE_AS_UTF8 = ("把文件另存为 UTF-8 编码（记事本: 另存为 → 编码 → UTF-8；多数编辑器相同） / "
                "save the file as UTF-8 (Notepad: Save As → Encoding → UTF-8; most editors alike)")


def lines(policies: Path, severity: str | None = None) -> list[str]:
    """What validate prints, without the calendar's look-ahead warning (it depends on today's date)."""
    return [format_problem(p) for p in validate_policies(policies)
            if p.code != "calendar-year-ahead" and (severity is None or p.severity == severity)]


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- A. a template saved as "ANSI" (GBK) ----------------------------------------------------------

def save_as_gbk(path: Path) -> None:
    """What Notepad's "ANSI" does on Chinese Windows."""
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))


def test_a_template_saved_as_gbk_is_named_by_validate_run_and_test(tmp_path: Path, policy_copy: Path):
    """It used to end all three commands with a traceback (UnicodeDecodeError … position 46) that did
    not say which file."""
    template = policy_copy.parent / "templates" / "messages" / "wechat" / "festival.txt"
    template.write_text("{# greeting for a festival #}\n" + template.read_text(encoding="utf-8"), encoding="utf-8")
    save_as_gbk(template)
    data = template.read_bytes()
    bad_byte = next(i for i, b in enumerate(data) if b >= 0x80) + 1  # its first Chinese character, counted from 1
    assert data.count(b"\n", 0, bad_byte) == 1  # ...is on line 2
    expected = ("templates/messages/wechat/festival.txt:2:1: 错误 error: 文件不是 UTF-8 编码（第 2 行、文件第 "
                f"{bad_byte} 个字节读不出来，可能是用记事本“ANSI”或 GBK 保存的） / the file is not UTF-8 text "
                f"(byte {bad_byte}, on line 2, cannot be read; it was probably saved as ANSI or GBK) [not-utf8]"
                " — 修改建议: " + SAVE_AS_UTF8)
    assert lines(policy_copy) == [expected]

    outbox = tmp_path / "out"
    run = cli("run", "--policies", str(policy_copy), "--inbox", str(ROOT / "inbox"), "--outbox", str(outbox), "--as-of", AS_OF)
    assert run.exit_code == 1
    assert "templates/messages/wechat/festival.txt:2:1: 错误 error: 文件不是 UTF-8 编码（第 2 行" in run.output
    assert not outbox.exists() or not any(outbox.iterdir())  # it stopped before doing anything

    tested = cli("test", "--policies", str(policy_copy))
    assert tested.exit_code == 1
    assert expected in tested.output


def test_a_policy_file_saved_as_gbk_names_its_line(policy_copy: Path):
    save_as_gbk(policy_copy / "care" / "festivals.yaml")
    problems = [p for p in validate_policies(policy_copy) if p.code == "not-utf8"]
    assert [(str(p.location), p.fix) for p in problems] == [("care/festivals.yaml:1:1", SAVE_AS_UTF8)]


def test_a_template_saved_with_a_bom_and_windows_line_ends_still_works(tmp_path: Path, policy_copy: Path):
    """Notepad's "UTF-8 with BOM": the same messages as the file without the BOM."""
    outboxes = []
    for name, policies in (("plain", ROOT / "policies"), ("bom", policy_copy)):
        if name == "bom":
            for template in (policy_copy.parent / "templates" / "messages").rglob("*.txt"):
                text = template.read_text(encoding="utf-8")
                template.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
            assert lines(policy_copy, "error") == []
        outbox = tmp_path / name
        assert cli("run", "--policies", str(policies), "--inbox", str(ROOT / "inbox"), "--outbox", str(outbox),
                   "--as-of", AS_OF, "--ledger", str(tmp_path / f"{name}.sqlite")).exit_code == 0
        outboxes.append(outbox)
    sent = [sorted(p.read_text(encoding="utf-8") for p in o.rglob("messages*.jsonl")) for o in outboxes]
    assert sent[0] and sent[0] == sent[1]


# -- H. a template syntax slip -----------------------------------------------------------------------

def test_a_brace_left_open_in_a_template_names_its_line_in_chinese_first(policy_copy: Path):
    """It used to say only `templates/messages/wechat/festival.txt: 错误 error: unexpected '}'`."""
    template = policy_copy.parent / "templates" / "messages" / "wechat" / "festival.txt"
    template.write_text("{{ customer.name }}您好！\n值此{{ params.festival }}来临之际，祝您节日快乐！\n客服热线 {{ company.hotline }\n",
                        encoding="utf-8")
    assert lines(policy_copy) == [
        "templates/messages/wechat/festival.txt:3:1: 错误 error: 模板 templates/messages/wechat/festival.txt 第 3 行"
        "“客服热线 {{ company.hotline }”：括号没有配对：{{ 要用 }} 结束，{% 要用 %} 结束（可能少写了一个 }，或两种括号混用了）"
        " / template templates/messages/wechat/festival.txt line 3: unexpected '}' [template-syntax]"
        " — 修改建议: 把这一行的 {{ … } 补成 {{ … }}，{% … } 补成 {% … %} / close {{ with }} and {% with %} on this line"]


@pytest.mark.parametrize("text, line, chinese, fix", [
    ("{% if customer.name %}\n尊敬的{{ customer.name }}\n", 2,
     "{% if %} 没有对应的 {% endif %}，模板到结尾都没有结束它",
     "在 if 块应结束的地方加上 {% endif %} / add {% endif %} where the if block should end"),
    ("{% for x in [1, 2] %}\n{{ x }}\n", 2,
     "{% for %} 没有对应的 {% endfor %}，模板到结尾都没有结束它",
     "在 for 块应结束的地方加上 {% endfor %} / add {% endfor %} where the for block should end"),
    ("您好\n{% iff customer.name %}尊敬的{% endif %}\n", 2,
     "不认识的标签 {% iff %}（{% %} 里只能写 if、elif、else、endif、for、endfor、set 等）",
     "改正拼写；要输出变量请用 {{ 变量 }} 而不是 {% 变量 %} / correct the spelling; to print a value write {{ name }}, not {% name %}"),
    ("您好 {{ customer.name\n祝节日快乐\n", 2,
     "{{ … }} 没有用 }} 结束（在这一行或上面几行），或 }} 前面多了内容",
     "在变量后面加上 }}，一对 {{ }} 里只写一个变量或表达式 / end the value with }}; write one variable or expression inside each {{ }}"),
    ("{% if customer.name %}您好{% endfor %}\n", 1,
     "{% endfor %} 放错了位置：这里还在 if 块里，应先用 {% endif %} 结束它",
     "检查 if / for 的配对和先后顺序 / check that every if and for is closed, innermost first"),
    ("{{ customer.name）}}您好\n", 1,
     "{{ }} 或 {% %} 里有全角字符 ）",
     "括号、引号、逗号等改用半角（英文输入法）字符 / type brackets, quotes and commas in half width (English input)"),
], ids=["if-without-endif", "for-without-endfor", "unknown-tag", "print-left-open", "endfor-inside-if", "full-width-bracket"])
def test_common_template_slips_are_explained(policy_copy: Path, text: str, line: int, chinese: str, fix: str):
    (policy_copy.parent / "templates" / "messages" / "wechat" / "festival.txt").write_text(text, encoding="utf-8")
    (problem,) = [p for p in validate_policies(policy_copy) if p.code == "template-syntax"]
    assert str(problem.location) == f"templates/messages/wechat/festival.txt:{line}:1"
    zh, en = problem.message.split(" / ", 1)
    assert zh.startswith(f"模板 templates/messages/wechat/festival.txt 第 {line} 行") and zh.endswith("：" + chinese)
    assert en.startswith(f"template templates/messages/wechat/festival.txt line {line}: ")  # then Jinja's own words
    assert problem.fix == fix


def test_a_slip_in_a_task_title_is_shown_at_its_rule(policy_copy: Path):
    actions = policy_copy / "classification" / "actions.yaml"
    edit(actions, "{% endif %}指派专属客户经理", "指派专属客户经理")
    line = next(n for n, x in enumerate(actions.read_text(encoding="utf-8").splitlines(), 1) if "CL-ASSIGN-DEDICATED-OWNER" in x)
    assert lines(policy_copy) == [
        f"classification/actions.yaml:{line}:5: 错误 error: 规则 CL-ASSIGN-DEDICATED-OWNER 的任务标题：{{% if %}} 没有对应的"
        " {% endif %}，模板到结尾都没有结束它 / the title of rule CL-ASSIGN-DEDICATED-OWNER's task: Unexpected end of template."
        " Jinja was looking for the following tags: 'endif'. The innermost block that needs to be closed is 'if'."
        " [template-syntax] — 修改建议: 在 if 块应结束的地方加上 {% endif %} / add {% endif %} where the if block should end"]


# -- D. a tag set to numbers -------------------------------------------------------------------------

def write_visit_plan(policies: Path) -> None:
    """tables/visit_plan.xlsx, sheet 拜访次数: monthly_visits 4, 2, 1 by value tier."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "拜访次数"
    for row in (("规则编号", "条件", "结果", "说明"), (None, "value_tier", "monthly_visits", None),
                ("MV-1", "高", 4, "高价值：每月4次"), ("MV-2", "中", 2, None), ("MV-3", "-", 1, None)):
        ws.append(row)
    wb.save(policies / "tables" / "visit_plan.xlsx")


def test_a_number_tag_from_a_table_or_yaml_is_a_number_cell_in_customers_xlsx(tmp_path: Path, policy_copy: Path):
    """A table giving 1, 2, 4 wrote monthly_visits as the text '1', while 回访间隔(天) was a number."""
    write_visit_plan(policy_copy)
    (policy_copy / "classification" / "visit_plan.yaml").write_text(
        "kind: classification\nid: visit_plan\ndescription: 每月拜访次数\nhit_policy: first\ncomplete: true\n"
        "table: ../tables/visit_plan.xlsx#拜访次数\n", encoding="utf-8")
    (policy_copy / "classification" / "visit_weight.yaml").write_text(
        "kind: classification\nid: visit_weight\ndescription: 拜访权重\nhit_policy: first\nrules:\n"
        "  - id: VW-1\n    description: 高价值权重 1.5\n    when: value_tier == '高'\n"
        "    set: {visit_weight: 1.5, visit_note: 重点}\n", encoding="utf-8")
    assert lines(policy_copy, "error") == []
    outbox = tmp_path / "out"
    assert cli("run", "--policies", str(policy_copy), "--inbox", str(ROOT / "inbox"), "--outbox", str(outbox),
               "--as-of", AS_OF, "--ledger", str(tmp_path / "ledger.sqlite")).exit_code == 0
    (folder,) = outbox.iterdir()
    ws = openpyxl.load_workbook(folder / "customers.xlsx").active
    col = {c.value: c.column for c in ws[1]}
    tier = {row[col["价值等级"] - 1].value: row for row in ws.iter_rows(min_row=2)}
    high, middle, low = tier["高"], tier["中"], tier["低"]
    assert [(c.value, c.data_type) for c in (high[col["monthly_visits"] - 1], middle[col["monthly_visits"] - 1],
                                             low[col["monthly_visits"] - 1])] == [(4, "n"), (2, "n"), (1, "n")]
    assert (high[col["visit_weight"] - 1].value, high[col["visit_weight"] - 1].data_type) == (1.5, "n")
    assert (high[col["visit_note"] - 1].value, high[col["visit_note"] - 1].data_type) == ("重点", "s")  # text stays text
    assert low[col["visit_weight"] - 1].value is None


# -- C. a column the policies read that the export does not have -----------------------------------

FINANCE_POLICY = """kind: classification
id: finance
description: 金融行业客户
hit_policy: first
rules:
  - id: FIN-1
    description: 金融行业客户由客户经理季度走访
    when: {when}
    task:
      title: {title}
      assign_to: owner
      due: 5d
      priority: 中
      once_per: quarter
"""
INDUSTRY_TRIED = "行业、所属行业、行业类别、industry、sector"


def finance_run(tmp_path: Path, policy_copy: Path, headers: list[str], when: str = "industry == '金融'",
                title: str = "季度走访金融客户"):
    (policy_copy / "classification" / "finance.yaml").write_text(FINANCE_POLICY.format(when=when, title=title),
                                                                  encoding="utf-8")
    inbox = tmp_path / "inbox"
    rows = [customer("C1", 签约日期="2024-03-01"), customer("C2")]
    write_inbox(inbox, rows)
    if headers != CUSTOMER_HEADERS:  # the same customers, with an industry column
        write_sheet(inbox / "customers.xlsx", "客户信息", headers, [[*row, "金融"] for row in rows])
    outbox = tmp_path / "out"
    result = cli("run", "--policies", str(policy_copy), "--inbox", str(inbox), "--outbox", str(outbox), "--as-of", AS_OF,
                 "--ledger", str(tmp_path / "ledger.sqlite"))
    assert result.exit_code == 0, result.output
    (folder,) = outbox.iterdir()
    return result.output, folder


@pytest.mark.parametrize("when, title", [
    ("industry == '金融'", "季度走访金融客户"),  # a condition reads it
    ("has_owner", "季度走访{{ customer.industry }}客户"),  # a task's text does
], ids=["condition", "task-title"])
def test_a_column_the_policies_read_missing_from_the_export_is_said_once(tmp_path: Path, policy_copy: Path,
                                                                          when: str, title: str):
    """It used to say nothing: every customer's industry was empty and FIN-1 quietly never matched."""
    output, folder = finance_run(tmp_path, policy_copy, CUSTOMER_HEADERS, when, title)
    where = f"classification/finance.yaml:{line_of(policy_copy / 'classification' / 'finance.yaml', '- id: FIN-1')}:5"
    warning = ("customers.xlsx, sheet 客户信息: 警告 warning: 策略用到 industry（行业；见 " + where + " 等处），但 customers.xlsx 工作表"
               f" 客户信息 里没有这一列（试过的列名：{INDUSTRY_TRIED}），所有客户的 industry 都按空值处理 / the policies read"
               f" industry (行业; read at {where} and maybe elsewhere), but sheet 客户信息 of customers.xlsx has no such column"
               " (headers tried: 行业, 所属行业, 行业类别, industry, sector): every customer's industry is taken as empty"
               " [unread-column]\n"
               "    fix: 在导出里加上行业列，或把导出里它的表头加到 columns.yaml 的 customers.industry.aliases 下；若没有这项数据，"
               "检查用到 industry 的规则 / add the 行业 column to the export, or add its header to customers.industry.aliases in"
               " columns.yaml; if there is no such data, review the rules that read industry")
    assert output.count(warning) == 1
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert sum("策略用到 industry（行业" in w["message"] for w in manifest["warnings"]) == 1
    assert "策略用到 industry（行业" in (folder / "report.html").read_text(encoding="utf-8")


def test_a_column_nobody_reads_may_be_missing_without_a_word(tmp_path: Path, policy_copy: Path):
    output, _ = finance_run(tmp_path, policy_copy, CUSTOMER_HEADERS, when="has_owner")
    assert "策略用到 industry" not in output and "[unread-column]" in output  # (会员等级 and 积分 are read by care/member.yaml)


def test_an_unrecognised_header_like_the_column_is_named_with_the_alias_to_add(tmp_path: Path, policy_copy: Path):
    """客户行业 was reported only as 未使用的列：客户行业; nothing said the policies needed it."""
    output, folder = finance_run(tmp_path, policy_copy, [*CUSTOMER_HEADERS, "客户行业"])
    assert "有一列 客户行业 没有识别，所有客户的 industry 都按空值处理 / " in output
    assert ("    fix: 若 客户行业 就是行业，把这个表头加到 columns.yaml 的 customers.industry.aliases 下 / if 客户行业 holds "
            "industry, add that header to customers.industry.aliases in columns.yaml") in output
    assert not [d for d in decisions(folder) if d["rule_id"] == "FIN-1"]

    edit(policy_copy / "columns.yaml", "aliases: [行业, ", "aliases: [行业, 客户行业, ")
    shutil.rmtree(tmp_path / "out")
    output, folder = finance_run(tmp_path, policy_copy, [*CUSTOMER_HEADERS, "客户行业"])
    assert "策略用到 industry" not in output
    assert sorted(d["customer_id"] for d in decisions(folder) if d["rule_id"] == "FIN-1") == ["C1", "C2"]


def decisions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "decisions.jsonl").read_text(encoding="utf-8").splitlines()]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if text in line)


# -- C2. a column a stage module reads itself ------------------------------------------------------
# The SLA clocks, churn reasons and care's birthday/survey features read export columns no rule names:
# without the column the module quietly works as if every value were empty.

def stage_run(tmp_path: Path, policies: Path, customer_headers: list[str] = CUSTOMER_HEADERS,
              dropped: tuple[str, ...] = ()) -> str:
    """Run the policies on a small export whose interactions sheet lacks the ``dropped`` headers."""
    inbox = tmp_path / "inbox"
    rows = [customer("C1", 签约日期="2024-03-01", 生日="1990-11-21")]
    write_inbox(inbox, rows, [["I1", "C1", "2026-11-18 09:00", "电话", "投诉", None, None, "处理中", None, "李娜", "物流", ""]])
    if customer_headers != CUSTOMER_HEADERS:
        write_sheet(inbox / "customers.xlsx", "客户信息", customer_headers,
                    [[v for h, v in zip(CUSTOMER_HEADERS, row) if h in customer_headers] for row in rows])
    if dropped:
        keep = [i for i, h in enumerate(INTERACTION_HEADERS) if h not in dropped]
        ws = openpyxl.load_workbook(inbox / "interactions.xlsx").active
        write_sheet(inbox / "interactions.xlsx", "互动记录", [INTERACTION_HEADERS[i] for i in keep],
                    [[row[i] for i in keep] for row in ws.iter_rows(min_row=2, values_only=True)])
    result = cli("run", "--policies", str(policies), "--inbox", str(inbox), "--outbox", str(tmp_path / "out"),
                 "--as-of", AS_OF, "--ledger", str(tmp_path / "ledger.sqlite"))
    assert result.exit_code == 0, result.output
    return result.output


def unread(output: str) -> list[str]:
    """The unread-column warnings, but those of 积分 and 会员等级 (the small export never has them)."""
    return [line for line in output.splitlines() if line.endswith("[unread-column]")
            and not any(f"策略用到 {name}（" in line for name in ("points", "member_level"))]


def test_an_sla_clock_column_missing_from_the_export_names_the_setting(tmp_path: Path, policy_copy: Path):
    """Without 首次响应时间 every first-response clock ran on (escalations, sla.xlsx) and nothing said why."""
    output = stage_run(tmp_path, policy_copy, dropped=("首次响应时间",))
    where = f"sla.yaml:{line_of(policy_copy / 'sla.yaml', 'first_response: first_response_time')}:19"
    assert unread(output) == [
        "interactions.xlsx, sheet 互动记录: 警告 warning: 策略用到 服务时限设置 clock.first_response（来自首次响应时间列 "
        f"interactions.first_response_time；见 {where} 等处），但 interactions.xlsx 工作表 互动记录 里没有这一列（试过的列名："
        "首次响应时间、响应时间、首响时间、首次回复时间、first response time、first response…），所有互动记录的首次响应时间都按空值处理 / "
        "the policies read the SLA setting clock.first_response (from the 首次响应时间 column, interactions.first_response_time;"
        f" read at {where} and maybe elsewhere), but sheet 互动记录 of interactions.xlsx has no such column (headers tried: "
        "首次响应时间, 响应时间, 首响时间, 首次回复时间, first response time, first response…): every row of interactions is read"
        " with no first_response_time [unread-column]"]
    assert ("    fix: 在导出里加上首次响应时间列，或把导出里它的表头加到 columns.yaml 的 interactions.first_response_time.aliases 下；"
            "若没有这项数据，检查 服务时限设置 clock.first_response / add the 首次响应时间 column to the export, or add its header to"
            " interactions.first_response_time.aliases in columns.yaml; if there is no such data, review the SLA setting"
            " clock.first_response") in output


def test_sla_status_and_target_fields_missing_are_named_with_their_settings(tmp_path: Path, policy_copy: Path):
    output = stage_run(tmp_path, policy_copy, dropped=("状态", "渠道"))
    said = unread(output)
    assert len(said) == 2
    status = f"sla.yaml:{line_of(policy_copy / 'sla.yaml', 'closed_statuses:')}:20"
    assert f"策略用到 服务时限设置 clock.closed_statuses（来自状态列 interactions.status；见 {status} 等处）" in said[0] + said[1]
    hotline = line_of(policy_copy / "sla.yaml", "channel == '电话'")
    assert any(f"策略用到 服务时限设置 targets sla-inquiry-hotline when（来自渠道列 interactions.channel；见 sla.yaml:{hotline}:"
               in line for line in said)


def test_no_sla_settings_no_word_about_its_columns(tmp_path: Path, policy_copy: Path):
    (policy_copy / "sla.yaml").unlink()
    assert "服务时限设置" not in stage_run(tmp_path, policy_copy, dropped=("首次响应时间", "状态"))


def test_churn_reasons_without_a_category_column_name_the_setting(tmp_path: Path, policy_copy: Path):
    said = unread(stage_run(tmp_path, policy_copy, dropped=("问题分类",)))
    where = f"churn.yaml:{line_of(policy_copy / 'churn.yaml', 'complaint_reasons:')}:1"
    assert len(said) == 1
    assert "、流失挽回设置 complaint_reasons（来自问题分类列 interactions.category；" in said[0]
    assert "the churn setting complaint_reasons (from the 问题分类 column" in said[0]
    assert ": every row of interactions is read with no category, and last_complaint_category worked out so" in said[0]
    (policy_copy / "churn" / "win_back.yaml").unlink()  # the rule that reads last_complaint_category
    said = unread(stage_run(tmp_path / "again", policy_copy, dropped=("问题分类",)))
    assert f"策略用到 流失挽回设置 complaint_reasons（来自问题分类列 interactions.category；见 {where} 等处）" in said[0]


def test_a_care_feature_of_a_missing_column_names_the_care_module(tmp_path: Path, policy_copy: Path):
    """birthday_greeting_due is worked out by the care module from 生日: without the column, no greeting ever."""
    headers = [h for h in CUSTOMER_HEADERS if h != "生日"]
    (said,) = unread(stage_run(tmp_path, policy_copy, customer_headers=headers))
    assert "策略用到 birthday、客户关怀模块算出的 birthday_greeting_due、" in said
    assert "（来自生日列 customers.birthday；见 care/greetings.yaml:" in said
    assert "都按没有生日计算 / the policies read birthday, birthday_greeting_due, " in said
    assert " worked out by the care module (from the 生日 column, customers.birthday; read at care/greetings.yaml:" in said


# -- B. a complaint left open too long ---------------------------------------------------------------

COMPLAINT_RULE = """kind: classification
id: complaint_escalation
description: 高价值客户的投诉超过 3 天未解决
hit_policy: first
rules:
  - id: CL-COMPLAINT-OPEN-3D
    description: 高价值客户的投诉超过3天未解决：通知客户经理
    when: value_tier == '高' and oldest_open_complaint_days > 3
    task:
      title: 高价值客户投诉已 {{ customer.oldest_open_complaint_days }} 天未解决
      assign_to: owner
      due: 1d
      priority: 高
      once_per: week
"""


def complaint(iid: str, cid: str, created: str, status: str, resolved: str | None = None) -> list:
    """An interactions row (INTERACTION_HEADERS): a complaint created at ``created``."""
    return [iid, cid, created, "电话", "投诉", created, resolved, status, None, "李娜", "物流", "投诉"]


def test_oldest_open_complaint_days_counts_from_the_oldest_complaint_still_open(tmp_path: Path, policy_copy: Path):
    """"投诉超过 3 天未解决且客户是高价值的" could not be written: days_since_last_complaint is the newest
    complaint, resolved or not. Open means what open_complaints means: not in sla.yaml's closed_statuses,
    and a resolved time after the as-of date had not happened yet."""
    (policy_copy / "classification" / "complaint_escalation.yaml").write_text(COMPLAINT_RULE, encoding="utf-8")
    edit(policy_copy / "sla.yaml", "closed_statuses: [已解决, 已关闭]", "closed_statuses: [已解决, 已关闭, 已撤销]")
    assert lines(policy_copy, "error") == []
    big = [["O1", None, "2026-03-01", 60000, "系统", 1], ["O2", None, "2026-07-01", 60000, "系统", 1]]
    cids = ["C1", "C2", "C3", "C4", "C5"]
    inbox = write_inbox(
        tmp_path / "inbox", [customer(cid, 签约日期="2024-03-01") for cid in cids],
        interactions=[
            # C1: an old complaint resolved, one open for 5 days, a newer one open for 1 day → 5
            complaint("I1", "C1", "2026-11-01 09:00", "已解决", "2026-11-02 09:00"),
            complaint("I2", "C1", "2026-11-15 09:00", "处理中"),
            complaint("I3", "C1", "2026-11-19 09:00", "处理中"),
            # C2: marked 已解决 now, but resolved after the as-of date: still open then → 6
            complaint("I4", "C2", "2026-11-14 09:00", "已解决", "2026-11-25 09:00"),
            # C3: withdrawn, a closing status in sla.yaml → none open
            complaint("I5", "C3", "2026-11-10 09:00", "已撤销"),
            # C4: open, but only 2 days → 2
            complaint("I6", "C4", "2026-11-18 09:00", "待处理"),
            # C5: no complaint → null
        ],
        orders=[[f"{o[0]}-{cid}", cid, *o[2:]] for cid in cids for o in big])
    outbox = tmp_path / "out"
    result = cli("run", "--policies", str(policy_copy), "--inbox", str(inbox), "--outbox", str(outbox), "--as-of", AS_OF,
                 "--ledger", str(tmp_path / "ledger.sqlite"))
    assert result.exit_code == 0, result.output
    (folder,) = outbox.iterdir()
    fired = {d["customer_id"]: d["inputs"] for d in decisions(folder) if d["rule_id"] == "CL-COMPLAINT-OPEN-3D"}
    assert fired == {"C1": {"oldest_open_complaint_days": 5, "value_tier": "高"},
                     "C2": {"oldest_open_complaint_days": 6, "value_tier": "高"}}
    titles = {row[2]: row[9] for row in openpyxl.load_workbook(folder / "tasks" / "张伟.xlsx").active.iter_rows(
        min_row=2, values_only=True) if row[12] == "CL-COMPLAINT-OPEN-3D"}
    assert titles == {"C1": "高价值客户投诉已 5 天未解决", "C2": "高价值客户投诉已 6 天未解决"}

    policyset = load_policies(policy_copy)
    data = read_inbox(inbox, load_columns(policy_copy / "columns.yaml"), warnings=[])
    mine = group_by_customer(data.interactions)
    features = {c.customer_id: derive_features(c, [], mine.get(c.customer_id, []), date(2026, 11, 20), policyset.features)
                for c in data.customers}
    assert {cid: (f["oldest_open_complaint_days"], f["open_complaints"]) for cid, f in features.items()} == {
        "C1": (5, 2), "C2": (6, 1), "C3": (None, 0), "C4": (2, 1), "C5": (None, 0)}


def test_oldest_open_complaint_days_is_listed_for_policy_authors():
    text = (ROOT / "docs" / "features.md").read_text(encoding="utf-8")
    assert ("| `oldest_open_complaint_days` | number | 最早一条未解决投诉已过天数: days since the oldest complaint still open"
            " on the as-of date, open as in open_complaints (null if none) |") in text


# -- K. docs/policies.md: adding a rule, and where a table's path starts --------------------------------

def doc_section(title: str) -> str:
    doc = (ROOT / "docs" / "policies.md").read_text(encoding="utf-8")
    start = doc.index(title)
    end = doc.find("\n## ", start + 1)
    return doc[start:end if end > 0 else None]


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:yaml)?\n(.*?)```", text, flags=re.S)


def test_the_add_a_rule_example_says_how_to_update_the_shipped_test_cases(policy_copy: Path):
    """It said only "run validate, then diff": a new rule firing broadly then failed shipped cases with
    多出任务 and nothing said why or what to change. The example's output and fix are checked here."""
    section = doc_section("## 例子：加一条规则")
    assert "crm-engine test --policies policies" in section
    rule, shown = code_blocks(section)[0], next(b for b in code_blocks(section) if "多出任务" in b)
    broad = re.search(r"若只写了 `(when: [^`]+)`", section).group(1)
    actions = policy_copy / "classification" / "actions.yaml"
    actions.write_text(actions.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + re.sub(r"when: .*", broad, rule),
                       encoding="utf-8")
    failed = cli("test", "--policies", str(policy_copy))
    assert failed.exit_code == 1
    fail_line, extra_line, summary = [line.strip() for line in shown.strip().splitlines()]
    assert fail_line in failed.output and summary in failed.output
    assert extra_line.removesuffix("…）") in failed.output

    # The documented fix: the reported case's `tasks: []` becomes the line the section gives.
    fixed = re.search(r"`(tasks: \[\{rule: CL-HIGH-VALUE-REPEAT-COMPLAINTS[^`]*)`", section).group(1)
    case_line = int(re.search(r"第 (\d+) 行", section).group(1))
    cases = policy_copy / "tests" / "classification.yaml"
    found = cases.read_text(encoding="utf-8").split("\n")
    assert found[case_line - 1].strip() == "- id: vt1-big-spender"
    at = next(n for n in range(case_line, len(found)) if found[n].strip() == "tasks: []")
    found[at] = found[at].replace("tasks: []", fixed)
    cases.write_text("\n".join(found), encoding="utf-8")
    assert cli("test", "--policies", str(policy_copy), "-k", "vt1-big-spender").exit_code == 0


def test_the_decision_table_section_says_its_path_starts_at_the_yaml_files_folder(policy_copy: Path):
    section = doc_section("## Excel 决策表")
    right, wrong = re.findall(r"table: (\.?\.?/?tables/visit_plan\.xlsx#拜访次数)", section)[:2]
    assert (right, wrong) == ("../tables/visit_plan.xlsx#拜访次数", "tables/visit_plan.xlsx#拜访次数")
    write_visit_plan(policy_copy)
    plan = policy_copy / "classification" / "visit_plan.yaml"
    for table, expected in ((right, []), (wrong, ["table-missing"])):
        plan.write_text("kind: classification\nid: visit_plan\ndescription: 每月拜访次数\nhit_policy: first\n"
                        f"complete: true\ntable: {table}\n", encoding="utf-8")
        problems = [p for p in validate_policies(policy_copy) if p.severity == "error"]
        assert [p.code for p in problems] == expected
    assert "classification/tables/visit_plan.xlsx" in problems[0].message  # the path it looked for, as the doc says
