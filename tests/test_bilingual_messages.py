"""Operations staff read validate's and the run's messages: each is Chinese first, then English.
The did-you-mean of a misspelt tag offers tags of every policy file."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli_tools import validate_command

from conftest import edit

AS_OF = "2026-11-20"


def lines(policies: Path) -> list[str]:
    """What validate prints for the folder, without the calendar's look-ahead warning (it depends on today)."""
    result = CliRunner().invoke(validate_command, ["--policies", str(policies), "--as-of", AS_OF])
    return [line for line in result.output.splitlines() if "[calendar-year-ahead]" not in line]


def line_of(policies: Path, file: str, text: str) -> int:
    return next(n for n, line in enumerate((policies / file).read_text(encoding="utf-8").splitlines(), start=1) if text in line)


# -- did you mean: a tag set by another policy file --------------------------------------------------


@pytest.mark.parametrize("written, meant, where", [
    ("value_teir", "value_tier", "set by the decision table of classification/value_tier.yaml, checked after need_type"),
    ("risk_leve", "risk_level", "set by classification/risk_level.yaml, checked after need_type (it offered churn_level)"),
])
def test_a_misspelt_tag_of_another_policy_file_is_suggested(policy_copy: Path, written: str, meant: str, where: str):
    edit(policy_copy / "classification/need_type.yaml", "when: suggestion_count_365d >= 3",
         f"when: suggestion_count_365d >= 3 or {written} == '高'")
    line = line_of(policy_copy, "classification/need_type.yaml", written)
    assert lines(policy_copy) == [
        f"classification/need_type.yaml:{line}:41: 错误 error: 没有叫 '{written}' 的字段，是不是 '{meant}'？ / unknown name "
        f"'{written}' (did you mean '{meant}'?) [unknown-name] — 修改建议: 改成 '{meant}' / write '{meant}'",
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
