"""crm-engine validate speaks to the operations staff who edit policies/: the most common editing
mistakes print one line, Chinese first then English ("中文 / English"), with the severity as
"错误 error" / "警告 warning". Each case breaks a copy of the shipped policies the way a person
would and runs the real command."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli_tools import validate_command
from engine.errors import Location, Problem
from engine.validate import format_problem

from conftest import edit

ACTIONS = "classification/actions.yaml"


def run_validate(policies: Path) -> list[str]:
    result = CliRunner().invoke(validate_command, ["--policies", str(policies), "--as-of", "2026-11-20"])
    assert result.exit_code == 1, result.output
    return result.output.splitlines()


def line_no(policies: Path, text: str) -> int:
    return next(n for n, line in enumerate((policies / ACTIONS).read_text(encoding="utf-8").splitlines(), start=1)
                if text in line)


# (id, text on the line to change, what it becomes, text to find the reported line, column, the rest of the line)
CASES = [
    ("equals-for-comparison", "lifecycle_stage == '意向' and", "lifecycle_stage = '意向' and", "lifecycle_stage = '意向'", 27,
     "错误 error: '=' 不是比较符号 / '=' is not a comparison [expr-syntax] — 修改建议: 判断两个值是否相等要写两个等号 '==' / "
     "use '==' to test whether two values are equal"),
    ("extra-closing-bracket", "days_since_last_contact >= 14)", "days_since_last_contact >= 14))", ">= 14))", 105,
     "错误 error: 多了一个 ')'，前面没有和它配对的 '(' / there is a ')' without a matching '(' [expr-syntax] — 修改建议: "
     "删掉多余的 ')'，或在前面补上 '(' / delete the extra ')' or add the missing '('"),
    ("unclosed-bracket", "days_since_last_contact >= 14)", "days_since_last_contact >= 14", "days_since_last_contact >= 14", 39,
     "错误 error: 这个 '(' 没有配对的 ')' / this '(' is never closed [expr-syntax] — 修改建议: 在括号里那部分的后面加上 ')' / "
     "add ')' after the part in brackets"),
    ("misspelt-feature", "lifecycle_stage == '意向' and", "lifecycle_stag == '意向' and", "lifecycle_stag ==", 11,
     "错误 error: 没有叫 'lifecycle_stag' 的字段，是不是 'lifecycle_stage'（classification/lifecycle_stage.yaml:13:28 设置的）？ / unknown name "
     "'lifecycle_stag' (did you mean 'lifecycle_stage', set at classification/lifecycle_stage.yaml:13:28?) [unknown-name] — 修改建议: "
     "改成 'lifecycle_stage'；如果拼错的是 classification/lifecycle_stage.yaml:13:28 那边，就改那里 / write 'lifecycle_stage', or if the misspelling is at "
     "classification/lifecycle_stage.yaml:13:28, correct it there"),
    ("number-compared-with-text", "days_since_last_contact >= 14)", "days_since_last_contact >= '14')", ">= '14'", 75,
     "错误 error: days_since_last_contact（数字）不能和 '14'（文字）比较 / cannot compare days_since_last_contact (number) "
     "with '14' (string) [type-mismatch] — 修改建议: 数字不要加引号: 写 14 而不是 '14' / write the number without quotes: 14, not '14'"),
    ("value-without-quotes", "lifecycle_stage == '意向' and", "lifecycle_stage == 意向 and", "lifecycle_stage == 意向", 30,
     "错误 error: 没有叫 '意向' 的字段 / unknown name '意向' [unknown-name] — 修改建议: 如果 意向 是一个取值而不是字段，要加引号: '意向'；"
     "否则对照字段列表检查拼写 / if 意向 is a value, not a field, put it in quotes: '意向'; else check the spelling against the list of fields"),
    ("full-width-bracket", "(days_since_last_contact is null", "（days_since_last_contact is null", "（days_since", 39,
     "错误 error: '（' 是全角或特殊字符 / '（' is a full-width or special character [expr-syntax] — 修改建议: "
     "改成 '('（把输入法切换到半角/英文） / type '(' instead (switch the input method to half-width/English)"),
    ("misspelt-task-field", "      due: 3d\n", "      deu: 3d\n", "deu: 3d", 7,
     "错误 error: 任务（task:）里没有 'deu' 这个字段，是不是 'due'？ / unknown field 'deu' in a task; did you mean 'due'? "
     "[unknown-field] — 修改建议: 改成 'due' / rename it to 'due'"),
    ("indented-too-far", "      assign_to: owner\n      due: 3d", "      assign_to: owner\n        due: 3d", "        due: 3d", 12,
     "错误 error: YAML 格式错误（这里不能出现 '名称: 值'，多半是缩进多了，或值里有冒号却没加引号） / YAML syntax error: mapping values "
     "are not allowed here [yaml-syntax] — 修改建议: 检查缩进（同一级的行要对齐，下级比上级多缩进两个空格），以及每个 '名称: 值' 的冒号后面有"
     "一个空格 / check the indentation and that every 'key: value' has a space after the colon"),
    ("unknown-role", "role:团队组长", "role:团队主管", "role:团队主管", 18,
     "错误 error: 没有 '团队主管' 这个角色 / unknown role '团队主管' [unknown-role] — 修改建议: 写 owner（客户经理），或 "
     "organization.yaml 里的角色 / use 'owner' or one of the roles in organization.yaml: 团队组长, 客服主管, 销售主管, 市场专员"),
    ("ambiguous-days", "      due: 3d", "      due: 3天", "due: 3天", 12,
     "错误 error: 时长 '3天' 看不懂：'天' 不明确：工作日写 '个工作日'，自然日在后面加 '自然时间' / cannot read the duration '3天': "
     "'天' is ambiguous: write '个工作日' for working days or add '自然时间' for calendar days [bad-duration] — 修改建议: "
     "写成下面的一种 / write it in one of these forms: 2h, 30m, 3d, 1d4h, 1h30m (working time); 48h wall, 2d wall "
     "(clock time); 2小时, 30分钟, 3个工作日, 1个工作日4小时 (working time); 48小时 自然时间, 2天 自然时间 (clock time)"),
]


@pytest.mark.parametrize("old, new, find, col, rest", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_common_mistake_prints_one_bilingual_line(policy_copy: Path, old: str, new: str, find: str, col: int, rest: str):
    edit(policy_copy / ACTIONS, old, new)
    out = run_validate(policy_copy)
    line = line_no(policy_copy, find)
    assert f"{ACTIONS}:{line}:{col}: {rest}" in out, "\n".join(out)


def test_a_rule_id_used_twice_names_the_first_place(policy_copy: Path):
    edit(policy_copy / ACTIONS, "  - id: CL-PROSPECT-CONVERT", "  - id: CL-INTENT-FOLLOW-UP")
    out = run_validate(policy_copy)
    first = line_no(policy_copy, "- id: CL-INTENT-FOLLOW-UP")
    second = first + next(n for n, line in enumerate(
        (policy_copy / ACTIONS).read_text(encoding="utf-8").splitlines()[first:], start=1) if "- id: CL-INTENT-FOLLOW-UP" in line)
    assert (f"{ACTIONS}:{second}:5: 错误 error: 规则编号 'CL-INTENT-FOLLOW-UP' 已经在 {ACTIONS}:{first}:5 用过 / rule id "
            f"'CL-INTENT-FOLLOW-UP' is already used at {ACTIONS}:{first}:5 [duplicate-rule-id] — 修改建议: "
            "所有策略文件里的规则编号都不能重复，给这条规则换一个编号 / rule ids must be unique across all policy files") in out


def test_the_severity_word_is_bilingual_only_in_validates_line():
    problem = Problem(code="x", message="信息 / message", location=Location(file="a.yaml", line=1, col=2), fix="改 / fix")
    assert format_problem(problem) == "a.yaml:1:2: 错误 error: 信息 / message [x] — 修改建议: 改 / fix"
    warning = Problem(code="x", message="信息 / message", location=Location(file="a.yaml"), severity="warning")
    assert format_problem(warning) == "a.yaml: 警告 warning: 信息 / message [x]"
    assert str(problem) == "a.yaml:1:2: 错误 error: 信息 / message [x]\n    fix: 改 / fix"  # logs and exceptions: the severity in both languages too
