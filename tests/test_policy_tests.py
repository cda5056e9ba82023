"""crm-engine test: the shipped policy tests pass and cover every rule; a failing case shows a
readable difference; mistakes in a test file name their line."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from engine.cli_tools import test_command as policy_test_command
from engine.policy_tests import format_report, run_policy_tests

from conftest import SHIPPED_POLICIES


def test_shipped_policy_tests_pass_and_cover_every_rule():
    result = CliRunner().invoke(policy_test_command, ["--policies", str(SHIPPED_POLICIES)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-2].endswith("failed") and "失败 0" in lines[-2]
    report = run_policy_tests(SHIPPED_POLICIES)
    assert report.uncovered == [], f"rules no policy test exercises: {report.uncovered}"
    assert lines[-1] == f"覆盖率 coverage：{len(report.rules)}/{len(report.rules)} 条规则至少被一个用例触发"
    # every stage's rules are among them
    assert {"VT-1", "SP-5", "sla-complaint-high", "CARE-FESTIVAL-SPRING", "CH-SIG-FREQUENCY-DROP", "CH-WB-OFFER-REVIEW"} <= report.covered


def write_tests(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cases.yaml").write_text(text, encoding="utf-8")
    return folder


FAILING = """\
as_of: 2026-11-20
customer: {owner: 张伟, phone: '13800000000', marketing_consent: true, preferred_channel: 短信}
cases:
  - id: passes
    orders:
      - {days_ago: 40, amount: 120000}
    expect:
      tags: {value_tier: 高}
  - id: wrong-tier-and-outputs
    description: 期望写错了：实际是中价值
    orders:
      - {days_ago: 100, amount: 20000}
    expect:
      tags: {value_tier: 高, lifecycle_stage: 签约}
      fired: [VT-1]
      not_fired: [VT-3]
      tasks: [{rule: CARE-REVISIT-DUE, assignee: 李娜}]
      messages: [{rule: CL-LOW-VALUE-OFFER, channel: sms}]
"""


def test_failing_case_shows_what_differs(tmp_path: Path):
    tests = write_tests(tmp_path / "tests", FAILING)
    result = CliRunner().invoke(policy_test_command, ["--policies", str(SHIPPED_POLICIES), "--tests", str(tests), "-v"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("✓ 通过 PASS") and lines[0].endswith("passes")
    assert lines[1].startswith("✗ 失败 FAIL") and lines[1].endswith("wrong-tier-and-outputs  期望写错了：实际是中价值")
    assert lines[2:8] == [
        "    value_tier：期望 '高'，实际 '中'",
        "    规则 VT-1 应触发，但没有触发",
        "    规则 VT-3 应不触发，但触发了",
        "    缺少任务：CARE-REVISIT-DUE（assignee='李娜'） —— 该规则产生了，但 assignee 实际为 '张伟'",
        "    多出任务：CARE-REVISIT-DUE（assignee='张伟'，priority='中'，title='定期回访（专门客户服务小组，每60天）'，due='2026-11-27 09:00'）",
        "    缺少消息：CL-LOW-VALUE-OFFER（channel='sms'）",
    ]
    assert lines[8].startswith("    （实际触发的规则：") and "VT-3" in lines[8]
    assert lines[9] == "用例 2 个：通过 1，失败 1 / 2 cases: 1 passed, 1 failed"
    assert lines[10].startswith("覆盖率 coverage：") and "not exercised: " in lines[10] and "CH-WB-OFFER-REVIEW" in lines[10]


def test_a_task_due_can_be_written_as_a_day_or_a_time(tmp_path: Path):
    # The revisit task of a 中价值 customer is due 2026-11-27 09:00 (see the failing case above).
    case = """\
  - id: due-{n}
    orders:
      - {{days_ago: 100, amount: 20000}}
    expect:
      tasks: [{{rule: CARE-REVISIT-DUE, due: {due}}}]
"""
    dues = ["2026-11-27", "'2026-11-27 09:00'", "2026-11-27 09:00:00", "2026-11-28", "'2026-11-27 10:00'", "2026-11-27 09:00:30"]
    tests = write_tests(tmp_path / "tests", "as_of: 2026-11-20\ncases:\n" + "".join(case.format(n=n, due=d) for n, d in enumerate(dues)))
    report = run_policy_tests(SHIPPED_POLICIES, tests_dir=tests)
    assert not report.problems
    assert [bool(r.failures) for r in report.results] == [False, False, False, True, True, True]
    assert report.results[3].failures[0] == "缺少任务：CARE-REVISIT-DUE（due=2026-11-28） —— 该规则产生了，但 due 实际为 '2026-11-27 09:00'"


def test_mistakes_in_a_test_file_name_their_line(tmp_path: Path):
    tests = write_tests(tmp_path / "tests", """\
as_of: 2026-11-20
cases:
  - id: typo
    customer: {ownr: 张伟, birthday: '1990-13-45'}
    orders:
      - {days_ago: 3}
    expect:
      tags: {value_tire: 高}
""")
    report = run_policy_tests(SHIPPED_POLICIES, tests_dir=tests)
    shown = [f"{p.location}: {p.message}" for p in report.problems]
    assert (f"{tests / 'cases.yaml'}:4:16: 客户（customer:）里没有 'ownr' 这个字段，是不是 'owner'？ / "
            "unknown field 'ownr' in customer; did you mean 'owner'?") in shown
    assert f"{tests / 'cases.yaml'}:4:37: birthday 应为日期，如 2026-11-20，不是 '1990-13-45'" in shown
    assert f"{tests / 'cases.yaml'}:6:9: 订单需要 date（或 days_ago）和 amount" in shown
    assert f"{tests / 'cases.yaml'}:8:14: 客户没有 'value_tire' 这个分类或特征；是不是 'value_tier'？" in shown
    assert not report.ok


def test_an_impossible_date_is_reported_not_raised(tmp_path: Path):
    tests = write_tests(tmp_path / "tests", "as_of: 2026-11-20\ncases:\n  - id: x\n    customer: {birthday: 1990-13-45}\n    expect: {}\n")
    report = run_policy_tests(SHIPPED_POLICIES, tests_dir=tests)
    assert [p.code for p in report.problems] == ["bad-value"] and "month must be in 1..12" in report.problems[0].message


def test_sla_expectations_and_select(tmp_path: Path):
    tests = write_tests(tmp_path / "tests", """\
as_of: 2026-11-20T15:00
cases:
  - id: complaint-late
    interactions:
      - {id: C1, time: '2026-11-20 09:00', type: 投诉, status: 处理中, channel: 电话}
    expect:
      sla: {C1: {rule: sla-complaint, first_response: met}, C9: {resolution: met}}
  - id: other
    expect: {}
""")
    report = run_policy_tests(SHIPPED_POLICIES, tests_dir=tests, select="late")
    assert [r.case.case_id for r in report.results] == ["complaint-late"]
    assert report.results[0].failures == [
        "互动 C1 first_response 状态：期望 'met'，实际 'open_breached'",
        "互动 C9 没有服务时限判定（不是跟踪的类型，或没有适用的时限规则）",
    ]


def test_the_summary_never_counts_a_case_with_mistakes_as_passed(tmp_path: Path):
    """An expected tag that does not exist fails the case; a case with a bad order is not counted
    (without that order it would pass or fail for the wrong reason); a file whose as_of is not a date
    is not counted as a whole. Before, the summary said every case passed."""
    tests = write_tests(tmp_path / "tests", """\
as_of: 2026-11-20
cases:
  - id: typo-in-expect
    expect:
      tags: {value_tire: 低}
  - id: bad-order
    orders:
      - {days_ago: 3, amount: 1.5万}
    expect:
      tags: {value_tier: 低}
  - id: fine
    expect:
      tags: {value_tier: 低}
""")
    (tests / "other.yaml").write_text("as_of: 2026-11-31\ncases:\n  - id: x\n    expect: {}\n", encoding="utf-8")
    result = CliRunner().invoke(policy_test_command, ["--policies", str(SHIPPED_POLICIES), "--tests", str(tests)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("✗ 失败 FAIL") and "typo-in-expect" in line for line in lines)
    assert "    用例的 expect 写法有误，见上面的错误 / the case's expect has mistakes, see the errors above" in lines
    [summary] = [line for line in lines if line.startswith("用例 ")]
    assert summary == ("用例 2 个：通过 1，失败 1 / 2 cases: 1 passed, 1 failed；另有 2 项因写法错误不计入 / 2 not counted "
                       f"because of the mistakes above: {tests / 'cases.yaml'} bad-order, {tests / 'other.yaml'}（整个文件 whole file）")


def test_a_misspelt_rule_id_is_a_mistake_not_a_pass(tmp_path: Path):
    # not_fired: [VT_1] always held (no such rule fires): the case passed whatever the policies did.
    tests = write_tests(tmp_path / "tests", """\
as_of: 2026-11-20
cases:
  - id: typo
    orders:
      - {days_ago: 100, amount: 20000}
    expect:
      fired: [VT1]
      not_fired: [VT_1, CL-LOW-VALUE-OFER]
""")
    report = run_policy_tests(SHIPPED_POLICIES, tests_dir=tests)
    shown = [f"{p.location}: {p.message}" for p in report.problems]
    assert shown == [f"{tests / 'cases.yaml'}:7:15: 没有规则 VT1；是不是 VT-1？",
                     f"{tests / 'cases.yaml'}:8:19: 没有规则 VT_1；是不是 VT-1？",
                     f"{tests / 'cases.yaml'}:8:25: 没有规则 CL-LOW-VALUE-OFER；是不是 CL-LOW-VALUE-OFFER？"]
    assert not report.ok


def test_a_k_that_selects_nothing_fails_and_a_selection_lists_no_uncovered_rules():
    # The documented "-k value_tier" chose no case and exited 0: a typo in -k looked like a pass.
    report = run_policy_tests(SHIPPED_POLICIES, select="value_tier")
    assert not report.ok and [p.code for p in report.problems] == ["no-case-selected"]
    some = run_policy_tests(SHIPPED_POLICIES, select="vt1")
    assert some.ok and len(some.results) >= 1
    assert format_report(some)[-1].endswith("（只运行了 -k 选出的用例 / only the cases -k chose）")


def test_a_bad_file_as_of_is_reported_once_at_its_own_line(tmp_path: Path):
    """A file-level as_of like 2026/13/01 was reported at every case that used it (never at its line), and with -k
    those cases then looked missing: 'no case id contains …'."""
    tests = tmp_path / "tests"
    tests.mkdir()
    text = (SHIPPED_POLICIES / "tests" / "sla.yaml").read_text(encoding="utf-8")
    text = text.replace("as_of: 2026-11-20T15:00\n", "as_of: 2026/13/01\n", 1)
    (tests / "sla.yaml").write_text(text, encoding="utf-8")
    line = text.splitlines().index("as_of: 2026/13/01") + 1
    for extra in ([], ["-k", "sla-complaint-high"]):
        result = CliRunner().invoke(policy_test_command, ["--policies", str(SHIPPED_POLICIES), "--tests", str(tests), *extra])
        assert result.exit_code == 1
        bad = [row for row in result.output.splitlines() if "[bad-value]" in row]
        assert bad == [f"{tests / 'sla.yaml'}:{line}:8: 错误 error: as_of '2026/13/01' 不是日期（例如 2026-11-20 或 2026-11-20T10:00） / "
                       "as_of '2026/13/01' is not a date (e.g. 2026-11-20 or 2026-11-20T10:00) [bad-value]"]
        assert "no-case-selected" not in result.output
