"""Operations staff read validate's and the run's messages: each is Chinese first, then English.

A regression guard walks copies of the shipped policies, each broken the way a person editing them
would (at least one per family: decision tables, stage settings files and calendar.yaml, the loader's
checks), and runs the batch the ways that stop it; every message and fix it gets must have Chinese in
it, so a new English-only message is noticed. The did-you-mean of a misspelt tag offers tags of every
policy file."""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.cli_tools import validate_command
from engine.validate import format_problem, validate_policies

from conftest import customer, edit, english, write_inbox

HAN = re.compile(r"[\u4e00-\u9fff]")
AS_OF = "2026-11-20"


def lines(policies: Path) -> list[str]:
    """What validate prints for the folder, without the calendar's look-ahead warning (it depends on today)."""
    result = CliRunner().invoke(validate_command, ["--policies", str(policies), "--as-of", AS_OF])
    return [line for line in result.output.splitlines() if "[calendar-year-ahead]" not in line]


def line_of(policies: Path, file: str, text: str) -> int:
    return next(n for n, line in enumerate((policies / file).read_text(encoding="utf-8").splitlines(), start=1) if text in line)


# -- did you mean: a tag set by another policy file --------------------------------------------------


@pytest.mark.parametrize("written, meant, set_at, where", [
    ("value_teir", "value_tier", "tables/value_tier.xlsx!价值分层!E2",
     "set by the decision table of classification/value_tier.yaml, checked after need_type"),
    ("risk_leve", "risk_level", "classification/risk_level.yaml:11:23",
     "set by classification/risk_level.yaml, checked after need_type (it offered churn_level)"),
])
def test_a_misspelt_tag_of_another_policy_file_is_suggested(policy_copy: Path, written: str, meant: str, set_at: str,
                                                            where: str):
    edit(policy_copy / "classification/need_type.yaml", "when: suggestion_count_365d >= 3",
         f"when: suggestion_count_365d >= 3 or {written} == '高'")
    line = line_of(policy_copy, "classification/need_type.yaml", written)
    assert lines(policy_copy) == [
        f"classification/need_type.yaml:{line}:41: 错误 error: 没有叫 '{written}' 的字段，是不是 '{meant}'（{set_at} 设置的）？"
        f" / unknown name '{written}' (did you mean '{meant}', set at {set_at}?) [unknown-name] — 修改建议: 改成 '{meant}'；"
        f"如果拼错的是 {set_at} 那边，就改那里 / write '{meant}', or if the misspelling is at {set_at}, correct it there",
        "错误 1 个，警告 0 个 / 1 error(s), 0 warning(s)"], where


def test_a_tag_set_only_by_a_later_stage_is_not_offered_as_itself(policy_copy: Path):
    edit(policy_copy / "care/member.yaml", "      once_per: month\n",
         "      once_per: month\n  - id: ZZ-CARE\n    when: true\n    set: {care_flag: 是}\n")
    edit(policy_copy / "classification/need_type.yaml", "when: suggestion_count_365d >= 3",
         "when: suggestion_count_365d >= 3 or care_flag")
    line = line_of(policy_copy, "classification/need_type.yaml", "care_flag")
    assert lines(policy_copy) == [
        f"classification/need_type.yaml:{line}:41: 错误 error: 没有叫 'care_flag' 的字段 / unknown name 'care_flag' "
        "[unknown-name] — 修改建议: 对照字段列表检查拼写 / check the spelling against the list of fields",
        "错误 1 个，警告 0 个 / 1 error(s), 0 warning(s)"]


# -- every message has Chinese in it -----------------------------------------------------------------


def yaml_edit(file: str, old: str, new: str) -> Callable[[Path], None]:
    return lambda policies: edit(policies / file, old, new)


def table_edit(file: str, cells: dict[str, object]) -> Callable[[Path], None]:
    def change(policies: Path) -> None:
        wb = openpyxl.load_workbook(policies / file)
        for cell, value in cells.items():
            wb.worksheets[0][cell] = value
        wb.save(policies / file)
    return change


def template_edit(file: str, old: str, new: str) -> Callable[[Path], None]:
    """A change to a message template (templates/ beside the policies folder)."""
    return lambda policies: edit(policies.parent / "templates" / file, old, new)


def new_file(file: str, text: str) -> Callable[[Path], None]:
    return lambda policies: (policies / file).write_text(text, encoding="utf-8")


VALUE_TIER = "tables/value_tier.xlsx"
# (id, the break, the code it causes, the English half of that message)
TEMPLATE_BREAKS = [
    ("template-variable", template_edit("messages/sms/offer.txt", "{{ params.offer }}", "{{ params.offer }}{{ custmer.name }}"),
     "template-variable", "template templates/messages/sms/offer.txt uses the variable 'custmer', but templates can use only "
                          "customer, company, as_of, params; did you mean 'customer'?"),
    ("template-customer-field", template_edit("messages/sms/offer.txt", "{{ params.offer }}", "{{ params.offer }}{{ customer.nmae }}"),
     "template-variable", "template templates/messages/sms/offer.txt uses customer.nmae, but customers have no field or tag 'nmae'; "
                          "did you mean 'name'?"),
    ("template-company-field", template_edit("messages/sms/offer.txt", "{{ params.offer }}", "{{ params.offer }}{{ company.nmae }}"),
     "template-variable", "template templates/messages/sms/offer.txt uses company.nmae, but company: in organization.yaml has no "
                          "'nmae'; did you mean 'name'?"),
    ("task-params", yaml_edit("classification/actions.yaml", "title: 跟进意向客户，推进签约", "title: 跟进意向客户{{ params.x }}"),
     "template-variable", "the task text of rule CL-INTENT-FOLLOW-UP uses params.x, but tasks have no params"),
    ("template-param-missing", yaml_edit("churn/marketing.yaml", "        offer: 本月新品上市，老客户下单享九五折\n", "        ofer: 九五折\n"),
     "template-param-missing", "template templates/messages/sms/offer.txt, used by rule CL-LOW-VALUE-OFFER, needs params.offer, but "
                               "the rule's params have no 'offer'; did you mean 'ofer'?"),
    ("template-filter", template_edit("messages/sms/offer.txt", "{{ params.offer }}", "{{ params.offer|moneyy }}"),
     "template-filter", "template templates/messages/sms/offer.txt uses the filter 'moneyy', which does not exist; "
                        "did you mean 'money'?"),
]
CYCLE = ("kind: classification\nid: zz_{a}\nrules:\n  - id: ZZ-{A}\n    when: zz_{b} == '是'\n    set: {{zz_{a}: 是}}\n")

# (id, the break, a code it must cause)
BROKEN = [
    # decision tables
    ("table-missing", yaml_edit("classification/value_tier.yaml", "value_tier.xlsx#", "value_tiers.xlsx#"), "table-missing"),
    ("table-sheet-missing", yaml_edit("classification/value_tier.yaml", "#价值分层", "#分层"), "table-sheet-missing"),
    ("table-column-kind", table_edit(VALUE_TIER, {"D1": "条 件x"}), "table-column-kind"),
    ("table-name-missing", table_edit(VALUE_TIER, {"C2": None}), "table-name-missing"),
    ("table-no-output", table_edit(VALUE_TIER, {"E1": "条件"}), "table-no-output"),
    ("table-priority", table_edit(VALUE_TIER, {"F1": "优先级", "F3": "高"}), "bad-value"),
    ("table-duplicate-rule-id", table_edit(VALUE_TIER, {"A4": "VT-1"}), "duplicate-rule-id"),
    ("table-missing-rule-id", table_edit(VALUE_TIER, {"A5": None}), "missing-rule-id"),
    # stage settings files
    ("sla-calendar", yaml_edit("sla.yaml", "calendar: standard", "calendar: standrd"), "unknown-calendar"),
    ("sla-at-risk-share", yaml_edit("sla.yaml", "at_risk_share: 0.75", "at_risk_share: 75%"), "bad-value"),
    ("sla-window-days", yaml_edit("sla.yaml", "window_days: 90", "window_days: 0"), "bad-value"),
    ("sla-role", yaml_edit("sla.yaml", "escalation_role: 客服主管", "escalation_role: 客服经理"), "unknown-role"),
    ("sla-paused-and-closed", yaml_edit("sla.yaml", "paused_statuses: [待客户回复]", "paused_statuses: [已关闭]"),
     "status-conflict"),
    ("sla-clock-field", yaml_edit("sla.yaml", "start: time ", "start: created "), "unknown-field"),
    ("sla-duration", yaml_edit("sla.yaml", "escalation_due: 2h", "escalation_due: true"), "bad-duration"),
    ("care-festival-date", yaml_edit("care.yaml", 'solar: "10-01"', 'solar: "10-32"'), "bad-date"),
    ("care-festival-twice", yaml_edit("care.yaml", "{name: 元宵,", "{name: 春节,"), "duplicate-festival"),
    ("care-member-day", yaml_edit("care.yaml", "days_before: 2 ", "days_before: 20 "), "bad-value"),
    ("care-festival-without-rule", yaml_edit("care.yaml", '    - {name: 元旦, solar: "01-01"}\n',
                                             '    - {name: 元旦, solar: "01-01"}\n    - {name: 七夕, lunar: "07-07"}\n'),
     "festival-without-rule"),
    ("churn-weight", yaml_edit("churn.yaml", "    weight: 20\n", "    weight: 200\n"), "bad-value"),
    ("churn-reason", yaml_edit("churn.yaml", "    reason: 未知\n", "    reason: 未明\n"), "bad-value"),
    ("churn-levels", yaml_edit("churn.yaml", "{level: 中, min_score: 30}", "{level: 中, min_score: 70}"), "bad-value"),
    ("churn-window", yaml_edit("churn.yaml", "frequency_window_days: 90", "frequency_window_days: 60"), "bad-value"),
    ("guards-time-zone", yaml_edit("guards.yaml", "time_zone: Asia/Shanghai", "time_zone: Beijing"), "bad-value"),
    ("guards-quiet-hours", yaml_edit("guards.yaml", 'end: "09:00"', 'end: "21:00"'), "bad-value"),
    ("guards-cap", yaml_edit("guards.yaml", "    max: 2\n", "    max: -1\n"), "bad-value"),
    ("guards-cap-field", yaml_edit("guards.yaml", "    days: 7\n", "    day: 7\n"), "unknown-field"),
    ("guards-consent", yaml_edit("guards.yaml", "not_recorded: no_consent", "not_recorded: ask"), "bad-value"),
    ("guards-category", yaml_edit("guards.yaml", "categories: [marketing, service]", "categories: [marketing, notice]"),
     "bad-value"),
    ("calendar-time-range", yaml_edit("calendar.yaml", 'mon-fri: ["09:00-12:00"', 'mon-fri: ["09:00-25:00"'), "bad-time-range"),
    ("calendar-weekday", yaml_edit("calendar.yaml", "mon-fri:", "mon-fry:"), "unknown-weekday"),
    ("calendar-time-zone", yaml_edit("calendar.yaml", "time_zone: Asia/Shanghai", "time_zone: UTC+8"), "bad-time-zone"),
    ("calendar-closed-day", yaml_edit("calendar.yaml", "closed_days: []", 'closed_days: ["2026-02-30"]'), "bad-date"),
    ("calendar-mode", yaml_edit("calendar.yaml", "on_uncovered_year: error", "on_uncovered_year: maybe"), "bad-value"),
    # the loader's checks
    ("replaces-unknown", yaml_edit("churn/win_back.yaml", "replaces: [CARE-REVISIT-DUE]", "replaces: [CARE-REVISIT]"),
     "unknown-rule"),
    ("replaces-not-ids", yaml_edit("churn/win_back.yaml", "replaces: [CARE-REVISIT-DUE]", "replaces: {a: b}"), "bad-value"),
    ("send-on", yaml_edit("care/greetings.yaml", "send_on: next_birthday_date", "send_on: next_birthday"), "unknown-name"),
    ("tag-shadows-feature", yaml_edit("classification/need_type.yaml", "set: {need_type: 战略}",
                                      "set: {need_type: 战略, owner: 王总}"), "tag-shadows-feature"),
    ("score-shadows-feature", yaml_edit("classification/need_type.yaml", "    set: {need_type: 普通}\n",
                                        "    set: {need_type: 普通}\n    score: {points: 5}\n"), "score-shadows-feature"),
    ("score-not-a-number", yaml_edit("classification/need_type.yaml", "    set: {need_type: 普通}\n",
                                     "    set: {need_type: 普通}\n    score: {zz_points: 很多}\n"), "bad-value"),
    ("tag-mixed-kinds", table_edit("tables/value_tier.xlsx", {"E5": 2}), "tag-mixed-kinds"),
    ("reads-later-stage", yaml_edit("classification/need_type.yaml", "when: suggestion_count_365d >= 3",
                                    "when: suggestion_count_365d >= 3 or churn_level == '中'"), "reads-later-stage"),
    ("bad-tag-value", table_edit("tables/service_plan.xlsx", {"F7": "90天"}), "bad-tag-value"),
    ("policy-cycle", lambda policies: (new_file("classification/zz_a.yaml", CYCLE.format(a="a", A="A", b="b"))(policies),
                                       new_file("classification/zz_b.yaml", CYCLE.format(a="b", A="B", b="a"))(policies)),
     "policy-cycle"),
    ("policies-not-a-list", new_file("classification/zz.yaml", "kind: classification\npolicies: zz\n"), "not-a-list"),
    ("windows-days", yaml_edit("features.yaml", "windows_days: [30, 90, 180, 365]", "windows_days: [30天]"), "bad-value"),
    # templates: message files and task texts
    *((name, change, code) for name, change, code, _ in TEMPLATE_BREAKS),
]


@pytest.mark.parametrize("change, code", [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_every_message_of_a_broken_policy_folder_has_chinese(policy_copy: Path, change, code: str):
    change(policy_copy)
    problems = validate_policies(policy_copy)
    assert code in {p.code for p in problems}, [format_problem(p) for p in problems]
    english_only = [format_problem(p) for p in problems
                    if not HAN.search(p.message) or (p.fix is not None and not HAN.search(p.fix))]
    assert english_only == []


def small_inbox(folder: Path) -> Path:
    return write_inbox(folder, [customer("C1", 客户阶段="签约")])


def test_every_line_a_stopped_or_repeated_run_prints_has_chinese(tmp_path: Path, policy_copy: Path):
    runner = CliRunner()
    inbox = small_inbox(tmp_path / "inbox")

    def run(*args: str) -> tuple[int, list[str]]:
        result = runner.invoke(main, ["run", "--policies", str(policy_copy), *args])
        return result.exit_code, result.output.splitlines()

    def said(output: list[str], after: str) -> list[str]:
        """The lines from the first one starting with ``after`` (click's usage lines are its own)."""
        return output[next(i for i, line in enumerate(output) if line.startswith(after)):]

    code, output = run("--inbox", str(tmp_path / "no-inbox"), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)
    assert code == 2 and said(output, "错误 / Error:") == [
        f"错误 / Error: 选项 '--inbox' 的值不对：收件箱文件夹 {tmp_path / 'no-inbox'} 不存在 / "
        f"invalid value for '--inbox': the inbox folder {tmp_path / 'no-inbox'} does not exist"]
    code, output = run("--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", "2026-11-20T23:59:59")
    assert code == 2 and all(HAN.search(line) for line in said(output, "错误 / Error:"))
    code, output = run("--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", "2026-13-01")
    assert code == 2 and said(output, "错误 / Error:") == [
        "错误 / Error: 选项 '--as-of' 的值不对：'2026-13-01' 不是 2026-11-20 这样的日期，也不是 2026-11-20T12:00 这样的时间 / "
        "invalid value for '--as-of': '2026-13-01' is not a date like 2026-11-20 or a time like 2026-11-20T12:00"]
    assert [line for line in output if line and not HAN.search(line)] == ["Usage: main run [OPTIONS]"]  # click's usage line
    (tmp_path / "shared").write_text("a file where a folder should be")
    code, output = run("--inbox", str(inbox), "--outbox", str(tmp_path / "shared" / "out"), "--as-of", AS_OF)
    assert code == 1 and all(HAN.search(line) for line in said(output, "发现 1 个问题"))
    assert run("--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)[0] == 0
    code, output = run("--inbox", str(inbox), "--outbox", str(tmp_path / "out"), "--as-of", AS_OF)  # the same batch again
    assert code == 0 and output[-1] == ("没有发出新的内容；要重新运行这一批，加 --force / "
                                        "This exact batch was already run; nothing new was issued. Use --force to run it again.")
    assert [line for line in output if not HAN.search(line)] == []


@pytest.mark.parametrize("change, code, said", [case[1:] for case in TEMPLATE_BREAKS], ids=[case[0] for case in TEMPLATE_BREAKS])
def test_template_messages_are_chinese_then_english(policy_copy: Path, change, code: str, said: str):
    """validate's messages about templates (message files, task titles) were Chinese only."""
    change(policy_copy)
    problems = [p for p in validate_policies(policy_copy) if p.code == code]
    assert problems, [format_problem(p) for p in validate_policies(policy_copy)]
    assert english(problems[0].message) == said
    assert all(english(p.message) and english(p.fix) for p in problems)


def test_a_task_title_syntax_error_met_while_evaluating_is_said_as_validate_says_it(policy_copy: Path, tmp_path: Path):
    """explain (and anything evaluating policies validate has not checked) stopped with Jinja's words
    after the rule id; now the title, what is wrong in Chinese, Jinja's words and a fix, as validate."""
    from engine.errors import PolicyError
    from engine.explain import explain_from_inputs

    edit(policy_copy / "classification/actions.yaml", "title: 跟进意向客户，推进签约", "title: 跟进意向客户{{ customer.name }，推进签约")
    (checked,) = [p for p in validate_policies(policy_copy) if p.code == "template-syntax"]
    with pytest.raises(PolicyError) as stopped:
        explain_from_inputs("C1", policy_copy, write_inbox(tmp_path / "inbox", [customer("C1", 客户阶段="意向")]),
                            date(2026, 11, 20))
    (problem,) = stopped.value.problems
    assert problem == checked
    assert problem.message == ("规则 CL-INTENT-FOLLOW-UP 的任务标题“跟进意向客户{{ customer.name }，推进签约”：括号没有配对："
                               "{{ 要用 }} 结束，{% 要用 %} 结束（可能少写了一个 }，或两种括号混用了） / "
                               "the title of rule CL-INTENT-FOLLOW-UP's task: unexpected '}'")
    assert english(problem.fix) == "close {{ with }} and {% with %} on this line"
