"""Mistakes ops staff make when editing policy YAML by hand: each must be one clear line from
``crm-engine validate`` (file:line:col, message, fix), never a traceback, and ``run`` must refuse it.

Each case edits a copy of the shipped policies the way a user would (text replace) and checks the
exact line validate prints."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli_tools import validate_command
from engine.errors import PolicyError
from engine.validate import format_problem, load_checked_policies, validate_policies

from conftest import edit

NEED_TYPE = "classification/need_type.yaml"
ACTIONS = "classification/actions.yaml"
MARKETING = "churn/marketing.yaml"  # the offer's rule: marketing messages are decided in the churn stage
OFFER_PARAMS = "      params:\n        offer: 本月新品上市，老客户下单享九五折\n"
# Where YAML notices an unclosed quote: the end of actions.yaml, one line after its last.
ACTIONS_END = len((Path(__file__).resolve().parent.parent / "policies" / ACTIONS).read_text(encoding="utf-8").splitlines()) + 1


def line_of(folder: Path, file: str, text: str) -> int:
    """The line number (1-based) of the first line of ``file`` holding ``text`` (being exactly ``text``
    when it ends with a newline)."""
    lines = (folder / file).read_text(encoding="utf-8").splitlines()
    if text.endswith("\n"):
        return next(n for n, line in enumerate(lines, start=1) if line == text[:-1])
    return next(n for n, line in enumerate(lines, start=1) if text in line)


def errors(folder: Path) -> list[str]:
    return [format_problem(p) for p in validate_policies(folder) if p.severity == "error"]


def case(file: str, old: str, new: str, line_text: str, col: int, text: str, *, id: str):
    """Replace ``old`` by ``new`` in ``file``; validate must print exactly one error:
    ``file:<line holding line_text>:col: text``."""
    return pytest.param(file, old, new, line_text, col, text, id=id)


MISTAKES = [
    # 1. set / score / params that are not 'name: value' blocks
    case(NEED_TYPE, "set: {need_type: 战略}", "set: 战略", "set: 战略", 5,
         "错误 error: 'set:' 后面要写成 {名称: 值}，不能只写 '战略' / 'set:' must be a block of 'tag name: value' pairs, not '战略' "
         "[not-a-mapping] — 修改建议: 写出名称和它的值，如 set: {need_type: 战略} / write the tag name and its value, e.g. set: "
         "{need_type: 战略}", id="set-a-single-value"),
    case(NEED_TYPE, "set: {need_type: 战略}", "set: [a, b]", "set: [a, b]", 5,
         "错误 error: 'set:' 后面要写成 {名称: 值}，不能只写一个列表 / 'set:' must be a block of 'tag name: value' pairs, not a list "
         "[not-a-mapping] — 修改建议: 写出名称和它的值，如 set: {need_type: 战略} / write the tag name and its value, e.g. set: "
         "{need_type: 战略}", id="set-a-list"),
    case(NEED_TYPE, "set: {need_type: 战略}", "score: 10", "score: 10", 5,
         "错误 error: 'score:' 后面要写成 {名称: 值}，不能只写 10 / 'score:' must be a block of 'score name: points' pairs, not "
         "10 [not-a-mapping] — 修改建议: 写出名称和它的值，如 score: {risk_points: 10} / write the score name and its value, "
         "e.g. score: {risk_points: 10}", id="score-a-number"),
    case(MARKETING, OFFER_PARAMS, "      params: 本月新品上市，老客户下单享九五折\n", "params: 本月新品上市", 7,
         "错误 error: 'params:' 后面要写成 {名称: 值}，不能只写 '本月新品上市，老客户下单享九五折' / 'params:' must be a block of 'name: text' "
         "pairs, not '本月新品上市，老客户下单享九五折' [not-a-mapping] — 修改建议: 写出名称和它的值，如 params: {offer: 本月新品上市，老客户下单享九五折} / "
         "write the name and its value, e.g. params: {offer: 本月新品上市，老客户下单享九五折}", id="params-a-text"),
    case(MARKETING, OFFER_PARAMS, "      params: 5\n", "params: 5", 7,
         "错误 error: 'params:' 后面要写成 {名称: 值}，不能只写 5 / 'params:' must be a block of 'name: text' pairs, not 5 [not-a-mapping] "
         "— 修改建议: 写出名称和它的值，如 params: {offer: 5} / write the name and its value, e.g. params: {offer: 5}", id="params-a-number"),
    # 2. a colon inside a tag name; a tag without a value
    case(NEED_TYPE, "set: {need_type: 特殊需求}", "set: {need_type：特殊需求}", "set: {need_type：特殊需求}", 11,
         "错误 error: 'need_type：特殊需求' 不能做标签名：名称只能用字母、汉字、数字和 _；是不是要写 'need_type: 特殊需求'（半角冒号加一个空格）？ / 'need_type：特殊需求' "
         "is not a plain tag name; names use letters, digits and _ only; did you mean 'need_type: 特殊需求' with a "
         "half-width colon and a space? [bad-name] — 修改建议: 写成 set: {need_type: 特殊需求} / write set: {need_type: "
         "特殊需求}",
         id="full-width-colon-in-set"),
    case(NEED_TYPE, "set: {need_type: 特殊需求}", "set: {need_type:特殊需求}", "set: {need_type:特殊需求}", 11,
         "错误 error: 'need_type:特殊需求' 不能做标签名：名称只能用字母、汉字、数字和 _；是不是要写 'need_type: 特殊需求'（半角冒号加一个空格）？ / 'need_type:特殊需求' "
         "is not a plain tag name; names use letters, digits and _ only; did you mean 'need_type: 特殊需求' with a "
         "half-width colon and a space? [bad-name] — 修改建议: 写成 set: {need_type: 特殊需求} / write set: {need_type: "
         "特殊需求}",
         id="no-space-after-colon-in-set"),
    case(NEED_TYPE, "    set: {need_type: 特殊需求}", "    set:\n      need_type：特殊需求", "    set:\n", 5,
         "错误 error: 'set:' 后面要写成 {名称: 值}，不能只写 'need_type：特殊需求'；是不是要写 'need_type: 特殊需求'（半角冒号加一个空格）？ / 'set:' must "
         "be a block of 'tag name: value' pairs, not 'need_type：特殊需求'; did you mean 'need_type: 特殊需求' with a half-width "
         "colon and a space? [not-a-mapping] — 修改建议: 写成 set: {need_type: 特殊需求} / write set: {need_type: 特殊需求}",
         id="full-width-colon-in-a-set-block"),
    case(NEED_TYPE, "set: {need_type: 特殊需求}", "set: {need_type: }", "set: {need_type: }", 11,
         "错误 error: 标签 'need_type' 没有写值 / tag 'need_type' has no value [missing-value] — 修改建议: 在冒号和一个空格后写值，如 set: "
         "{need_type: 战略} / write the value after the colon and a space, e.g. set: {need_type: 战略}", id="tag-without-value"),
    # 4. rule priority that is not a number
    case(NEED_TYPE, "    set: {need_type: 战略}\n", "    set: {need_type: 战略}\n    priority: 高\n", "priority: 高", 15,
         "错误 error: 规则的 priority 要写整数，不能是 '高' / priority must be a whole number, not '高' [bad-value] — 修改建议: hit_policy: "
         "priority 时满足条件的规则中数字最大的生效，如 priority: 10；任务的 高/中/低 写在 task: 下面 / under hit_policy: priority the matching "
         "rule with the highest number wins, e.g. priority: 10; a task's 高/中/低 goes under task:", id="rule-priority-not-a-number"),
    # 5. YAML syntax errors: the place to fix and the hint that fits
    case(ACTIONS, "title: 跟进意向客户，推进签约", 'title: "跟进意向客户，推进签约', 'title: "跟进意向客户', 14,
         f"错误 error: YAML 格式错误（引号或括号没有配对） / YAML syntax error: found unexpected end of stream (at line {ACTIONS_END}, column "
         '1) while scanning a quoted scalar that starts here [yaml-syntax] — 修改建议: 这里以 " 开头的文字，末尾要有配对的 " / the '
         'text that starts with " here needs a closing " at its end',
         id="unclosed-quote"),
    case(ACTIONS, "      priority: 高\n      once_per: week       # 未指派前", "      priority：高\n      once_per: week       # 未指派前",
         "priority：高", 7,
         "错误 error: YAML 格式错误（缺少冒号，或缩进没有对齐） / YAML syntax error: could not find expected ':' (at line 16, column "
         "7) while scanning a simple key that starts here [yaml-syntax] — 修改建议: 'priority：高' 用了全角冒号 '：'，要用半角冒号加一个空格: "
         "priority: 高 / 'priority：高' uses the full-width colon '：'; YAML needs a half-width colon and a space: "
         "priority: 高", id="full-width-colon-after-a-key"),
    case(MARKETING, "offer: 本月新品上市，老客户下单享九五折\n", 'offer: "本月新品上市\t老客户下单享九五折"\n   bad: 1\n', "   bad: 1", 4,
         "错误 error: YAML 格式错误（缩进没有对齐） / YAML syntax error: expected <block end>, but found '<block mapping start>' "
         "[yaml-syntax] — 修改建议: 检查缩进（同一级的行要对齐，下级比上级多缩进两个空格），以及每个 '名称: 值' 的冒号后面有一个空格 / check the indentation and "
         "that every 'key: value' has a space after the colon", id="tab-inside-quotes-is-no-hint"),
    case(ACTIONS, "      priority: 中\n      once_per: week\n", "      priority: 中\n\t    once_per: week\n", "\t    once_per: week", 1,
         "错误 error: YAML 格式错误（有 Tab 字符） / YAML syntax error: found character '\\t' that cannot start any token "
         "[yaml-syntax] — 修改建议: 缩进不能用 Tab 键，要用空格 / YAML does not allow tab characters for indentation; use spaces", id="tab-in-indentation"),
]


@pytest.mark.parametrize("file, old, new, line_text, col, text", MISTAKES)
def test_each_mistake_is_one_clear_line(policy_copy: Path, file: str, old: str, new: str, line_text: str, col: int, text: str):
    edit(policy_copy / file, old, new)
    expected = f"{file}:{line_of(policy_copy, file, line_text)}:{col}: {text}"
    assert errors(policy_copy) == [expected]
    with pytest.raises(PolicyError) as exc:  # run refuses it too (it loads policies the same way)
        load_checked_policies(policy_copy)
    assert [format_problem(p) for p in exc.value.problems] == [expected]


def test_unclosed_quote_is_reported_where_the_quote_is_not_at_the_end(policy_copy: Path):
    """The reviewer's case: an unclosed quote near the end of a file was reported at the last line."""
    edit(policy_copy / ACTIONS, "title: 跟进意向客户，推进签约", 'title: "跟进意向客户，推进签约')
    total = len((policy_copy / ACTIONS).read_text(encoding="utf-8").splitlines())
    (line,) = errors(policy_copy)
    quote_line = line_of(policy_copy, ACTIONS, 'title: "跟进')
    assert line.startswith(f"{ACTIONS}:{quote_line}:14: ")
    assert not line.startswith(f"{ACTIONS}:{total + 1}:")


def test_duplicate_policy_id_names_both_places(policy_copy: Path):
    edit(policy_copy / ACTIONS, "id: classification_actions", "id: value_tier")
    first = f"{ACTIONS}:{line_of(policy_copy, ACTIONS, 'id: value_tier')}:1"
    here = f"classification/value_tier.yaml:{line_of(policy_copy, 'classification/value_tier.yaml', 'id: value_tier')}:1"
    assert errors(policy_copy) == [
        f"{here}: 错误 error: 策略编号 'value_tier' 已经在 {first} 用过 / policy id 'value_tier' is already used at {first} "
        "[duplicate-policy-id] — 修改建议: 所有策略文件里的策略编号都不能重复 / policy ids must be unique across all policy files"]


def test_duplicate_policy_id_with_a_settings_file(policy_copy: Path):
    """churn.yaml (the churn settings) declares a policy id too; files are read in path order."""
    edit(policy_copy / "churn/win_back.yaml", "id: churn_win_back", "id: churn_risk")
    first = f"churn/win_back.yaml:{line_of(policy_copy, 'churn/win_back.yaml', 'id: churn_risk')}:1"
    here = f"churn.yaml:{line_of(policy_copy, 'churn.yaml', 'id: churn_risk')}:1"
    assert errors(policy_copy) == [
        f"{here}: 错误 error: 策略编号 'churn_risk' 已经在 {first} 用过 / policy id 'churn_risk' is already used at {first} "
        "[duplicate-policy-id] — 修改建议: 所有策略文件里的策略编号都不能重复 / policy ids must be unique across all policy files"]


def test_cli_prints_the_error_not_a_traceback(policy_copy: Path):
    edit(policy_copy / NEED_TYPE, "set: {need_type: 战略}", "set: 战略")
    result = CliRunner().invoke(validate_command, ["--policies", str(policy_copy)])
    assert result.exit_code == 1 and isinstance(result.exception, (SystemExit, type(None))), result.exception
    assert "Traceback" not in result.output
    assert result.output.splitlines()[0] == (
        f"{NEED_TYPE}:{line_of(policy_copy, NEED_TYPE, 'set: 战略')}:5: 错误 error: 'set:' 后面要写成 {{名称: 值}}，不能只写 '战略' / "
        "'set:' must be a block of 'tag name: value' pairs, not '战略' [not-a-mapping] — 修改建议: 写出名称和它的值，"
        "如 set: {need_type: 战略} / write the tag name and its value, e.g. set: {need_type: 战略}")


def test_whole_number_rule_priorities_still_load(policy_copy: Path):
    edit(policy_copy / NEED_TYPE, "hit_policy: first", "hit_policy: priority")
    edit(policy_copy / NEED_TYPE, "    set: {need_type: 战略}\n", "    set: {need_type: 战略}\n    priority: 10\n")
    policyset = load_checked_policies(policy_copy)
    rules = {r.rule_id: r for rs in policyset.all_rulesets() for r in rs.rules}
    assert rules["NT-STRATEGIC-RECORDED"].priority == 10 and rules["NT-NORMAL"].priority == 0


def test_orders_not_counted_must_be_a_list_of_statuses(policy_copy: Path):
    edit(policy_copy / "features.yaml", "orders_not_counted: [已取消, 已退款, 待付款]", "orders_not_counted: 已取消")
    line = line_of(policy_copy, "features.yaml", "orders_not_counted:")
    assert errors(policy_copy) == [f"features.yaml:{line}:21: 错误 error: orders_not_counted 要写成订单状态的列表 / orders_not_counted "
                                   "must be a list of order statuses [bad-value] — 修改建议: 把状态写成列表，如 orders_not_counted: "
                                   "[已取消, 已退款, 待付款] / write the statuses as a list, e.g. orders_not_counted: [已取消, 已退款, 待付款]"]


def test_due_by_must_name_a_date_feature(policy_copy: Path):
    edit(policy_copy / "care" / "follow_up.yaml", "due_by: post_purchase_followup_by", "due_by: post_purchase_order_id")
    line = line_of(policy_copy, "care/follow_up.yaml", "due_by: post_purchase_order_id")
    assert errors(policy_copy) == [
        f"care/follow_up.yaml:{line}:15: 错误 error: due_by 写的 'post_purchase_order_id' 不是日期特征，是不是 "
        "'post_purchase_order_date'？ / due_by names 'post_purchase_order_id', which is not a date feature; did you "
        "mean 'post_purchase_order_date'? [unknown-name] — 修改建议: due_by 要写一个日期特征，如 post_purchase_followup_by / "
        "due_by takes a date feature, e.g. post_purchase_followup_by"]


@pytest.mark.parametrize("written, guess_zh, guess", [
    ("next_birthday", "，是不是 'next_birthday_date'？", "; did you mean 'next_birthday_date'?"),
    ("days_until_birthday", "", ""),
])
def test_send_on_must_name_a_date_feature(policy_copy: Path, written: str, guess_zh: str, guess: str):
    edit(policy_copy / "care" / "greetings.yaml", "send_on: next_birthday_date", f"send_on: {written}")
    line = line_of(policy_copy, "care/greetings.yaml", f"send_on: {written}")
    assert errors(policy_copy) == [
        f"care/greetings.yaml:{line}:16: 错误 error: send_on 写的 '{written}' 不是日期特征{guess_zh} / "
        f"send_on names '{written}', which is not a date feature{guess} [unknown-name] "
        "— 修改建议: send_on 要写一个日期特征，如 next_birthday_date / send_on takes a date feature, e.g. next_birthday_date"]


def test_period_of_must_name_a_date_feature(policy_copy: Path):
    # The period a greeting is counted in is the one of a date (the birthday); a number of days is not one.
    edit(policy_copy / "care" / "greetings.yaml", "period_of: next_birthday_date\n", "period_of: days_until_birthday\n")
    line = line_of(policy_copy, "care/greetings.yaml", "period_of: days_until_birthday")
    assert errors(policy_copy) == [
        f"care/greetings.yaml:{line}:18: 错误 error: period_of 写的 'days_until_birthday' 不是日期特征 / "
        "period_of names 'days_until_birthday', which is not a date feature [unknown-name] "
        "— 修改建议: period_of 要写一个日期特征，如 next_birthday_date / period_of takes a date feature, e.g. next_birthday_date"]


@pytest.mark.parametrize("when", [
    "monetary_365d > 1 and\n      monetry_365d > 2",  # plain: YAML folds it into one line
    ">\n      monetary_365d > 1 and\n      monetry_365d > 2",
    "|\n      monetary_365d > 1 and\n        monetry_365d > 2",  # literal: the indentation beyond the block's counts
    "\"monetary_365d > 1 and\n      monetry_365d > 2\"",
    "'monetary_365d > 1 and\n      monetry_365d > 2'",
], ids=["plain", "folded", "literal", "double-quoted", "single-quoted"])
def test_a_mistake_on_the_second_line_of_a_condition_is_shown_where_it_is(policy_copy: Path, when: str):
    # Every position was counted on the value's first line (5:38, past the end of line 5).
    (policy_copy / "classification" / "zz.yaml").write_text(
        f"kind: classification\nid: zz\ndescription: test\nrules:\n  - id: ZZ-1\n    when: {when}\n    set: {{zz_a: 是}}\n",
        encoding="utf-8")
    [problem] = [p for p in validate_policies(policy_copy) if p.code == "unknown-name"]
    text = (policy_copy / "classification" / "zz.yaml").read_text(encoding="utf-8").splitlines()
    line, col = problem.location.line, problem.location.col
    assert text[line - 1][col - 1:].startswith("monetry_365d > 2")


@pytest.mark.parametrize("written, message", [
    ("CARE-REVISIT-DU", "replaces 写的 'CARE-REVISIT-DU' 不是任何规则的编号，是不是 'CARE-REVISIT-DUE'？ / "
                        "replaces names 'CARE-REVISIT-DU', which is no rule; did you mean 'CARE-REVISIT-DUE'?"),
    ("CARE-SURVEY", "replaces 写的 'CARE-SURVEY' 这条规则没有任务 / replaces names 'CARE-SURVEY', which is a rule without a task"),
])
def test_replaces_must_name_a_rule_with_a_task(policy_copy: Path, written: str, message: str):
    edit(policy_copy / "churn" / "win_back.yaml", "replaces: [CARE-REVISIT-DUE]", f"replaces: [{written}]")
    line = line_of(policy_copy, "churn/win_back.yaml", f"replaces: [{written}]")
    assert errors(policy_copy) == [
        f"churn/win_back.yaml:{line}:17: 错误 error: {message} [unknown-rule] — 修改建议: replaces 写的是有了这条任务就不再需要"
        "其任务的规则编号，如 CARE-REVISIT-DUE / replaces lists the ids of rules whose task "
        "this task makes unnecessary, e.g. CARE-REVISIT-DUE"]
