"""Policy loading: the shipped policies, YAML and decision-table errors with exact locations,
hit policies and evaluation order."""
from __future__ import annotations

import shutil
from pathlib import Path

import openpyxl
import pytest

from engine.backends.python_backend import PythonBackend
from engine.errors import PolicyError
from engine.evaluate import Evaluator, apply_hit_policy
from engine.policy.decision_table import cell_condition
from engine.policy.loader import load_policies

SHIPPED = Path(__file__).resolve().parent.parent / "policies"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A copy of the shipped policy folder that a test may break."""
    target = tmp_path / "policies"
    shutil.copytree(SHIPPED, target)
    return target


def errors_of(folder: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policies(folder)
    return [str(p).split("\n")[0] for p in info.value.problems]


def test_shipped_policies_load_in_dependency_order():
    ps = load_policies(SHIPPED)
    order = [rs.policy_id for rs in ps.rulesets["classification"]]
    # service_plan reads value_tier and need_type; the actions read service_plan's outputs.
    assert order.index("value_tier") < order.index("service_plan")
    assert order.index("need_type") < order.index("service_plan")
    assert order.index("service_plan") < order.index("classification_actions")
    assert not [w for w in ps.warnings if w.severity == "error"]


def test_decision_table_rows_become_rules_with_cell_locations():
    ps = load_policies(SHIPPED)
    table = next(rs for rs in ps.rulesets["classification"] if rs.policy_id == "value_tier")
    assert table.hit_policy == "first"
    rule = table.rules[1]
    assert rule.rule_id == "VT-2"
    assert str(rule.location) == "tables/value_tier.xlsx!价值分层!A4"
    assert rule.condition_text == "(days_since_last_order) < 90 and (frequency_365d) >= 4 and (monetary_365d) >= 50000"


@pytest.mark.parametrize(
    "cell, expected",
    [
        (None, None),
        ("-", None),
        (">= 50000", "(x) >= 50000"),
        ("≤ 3", "(x) <= 3"),
        ("10..50", "(x) between 10 and 50"),
        ("高, 中", "(x) in ['高', '中']"),
        ("高，中、低", "(x) in ['高', '中', '低']"),
        ("战略", "(x) == '战略'"),
        ("空", "(x) is null"),
        ("非空", "(x) is not null"),
        ("是", "(x) == true"),
        (5, "(x) == 5"),
        ("!= 流失", "(x) != '流失'"),
        # A list after == / != is one of / none of, not one text "制造业、金融".
        ("!= 制造业、金融", "(x) not in ['制造业', '金融']"),
        ("!= a, b", "(x) not in ['a', 'b']"),
        ("≠ 100、200", "(x) not in [100, 200]"),
        ("== a, b", "(x) in ['a', 'b']"),
        ("= 高，中", "(x) in ['高', '中']"),
    ],
)
def test_table_cell_syntax(cell, expected):
    assert cell_condition("x", cell) == expected


def test_unknown_field_has_line_and_did_you_mean(policies: Path):
    path = policies / "classification" / "need_type.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("    when: recorded_need_type == '战略'", "    whne: recorded_need_type == '战略'"), encoding="utf-8")
    errors = errors_of(policies)
    assert ("classification/need_type.yaml:10:5: 错误 error: 规则里没有 'whne' 这个字段，是不是 'when'？ / "
            "unknown field 'whne' in a rule; did you mean 'when'? [unknown-field]") in errors
    assert any("a rule needs a 'when' field" in e for e in errors)


def test_type_mismatch_in_condition_points_into_the_expression(policies: Path):
    path = policies / "classification" / "risk_level.yaml"
    text = path.read_text(encoding="utf-8").replace("when: open_complaints >= 1 or", "when: open_complaints >= date('2024-01-01') or")
    path.write_text(text, encoding="utf-8")
    errors = errors_of(policies)
    assert len(errors) == 1
    assert errors[0].startswith("classification/risk_level.yaml:15:11: 错误 error: ")
    assert "open_complaints" in errors[0] and "date" in errors[0] and "[type-mismatch]" in errors[0]


def test_unknown_name_suggests_feature(policies: Path):
    path = policies / "classification" / "risk_level.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("open_complaints >= 2", "open_complaint >= 2"), encoding="utf-8")
    errors = errors_of(policies)
    assert len(errors) == 1
    assert errors[0].startswith("classification/risk_level.yaml:10:11: 错误 error:")
    assert "open_complaints" in errors[0]


def test_yaml_syntax_error_and_duplicate_key(policies: Path):
    (policies / "classification" / "broken.yaml").write_text("kind: classification\nid: x\nrules:\n  - id: A\n    when: true\n   set: {a: 1}\n", encoding="utf-8")
    (policies / "classification" / "dup.yaml").write_text("kind: classification\nid: y\nid: z\nrules: []\n", encoding="utf-8")
    errors = errors_of(policies)
    assert any(e.startswith("classification/broken.yaml:6:") and "[yaml-syntax]" in e for e in errors)
    assert ("classification/dup.yaml:3:1: 错误 error: 同一块里 'id' 写了两次，只有最后一个会生效 / "
            "the key 'id' appears twice in the same block; YAML would silently keep only the last one [duplicate-key]") in errors


def test_unknown_role_and_priority(policies: Path):
    path = policies / "classification" / "actions.yaml"
    text = path.read_text(encoding="utf-8").replace("assign_to: role:团队组长", "assign_to: role:团队主管", 1)
    text = text.replace("priority: 中", "priority: 紧急", 1)
    path.write_text(text, encoding="utf-8")
    errors = errors_of(policies)
    assert "classification/actions.yaml:13:18: 错误 error: 没有 '团队主管' 这个角色 / unknown role '团队主管' [unknown-role]" in errors
    assert any("task priority must be 高, 中 or 低, not '紧急'" in e for e in errors)


def test_decision_table_errors_name_workbook_sheet_and_cell(policies: Path):
    path = policies / "tables" / "value_tier.xlsx"
    wb = openpyxl.load_workbook(path)
    ws = wb["价值分层"]
    ws["C4"] = ">= 4 次"  # not a number: the condition compares a number with text
    ws["D1"] = "条 件x"
    wb.save(path)
    errors = errors_of(policies)
    assert "tables/value_tier.xlsx!价值分层!D1: 错误 error: 第 1 行的 '条 件x' 不是列的种类 / unknown column kind '条 件x' [table-column-kind]" in errors
    wb = openpyxl.load_workbook(path)
    wb["价值分层"]["D1"] = "条件"
    wb.save(path)
    errors = errors_of(policies)
    assert len(errors) == 1 and errors[0].startswith("tables/value_tier.xlsx!价值分层!C4: 错误 error:")


def test_missing_table_sheet(policies: Path):
    path = policies / "classification" / "value_tier.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("#价值分层", "#分层"), encoding="utf-8")
    errors = errors_of(policies)
    assert errors == ["classification/value_tier.yaml:9:8: 错误 error: 工作簿里没有叫 '分层' 的工作表（有：价值分层） / "
                      "the workbook has no sheet named '分层' (it has: 价值分层) [table-sheet-missing]"]


def test_duplicate_rule_id_across_files(policies: Path):
    (policies / "classification" / "extra.yaml").write_text(
        "kind: classification\nid: extra\nrules:\n  - id: NT-NORMAL\n    when: true\n    set: {extra_tag: 是}\n", encoding="utf-8")
    errors = errors_of(policies)
    assert len(errors) == 1
    assert errors[0] == ("classification/need_type.yaml:29:5: 错误 error: 规则编号 'NT-NORMAL' 已经在 classification/extra.yaml:4:5 用过 / "
                         "rule id 'NT-NORMAL' is already used at classification/extra.yaml:4:5 [duplicate-rule-id]")


def test_policies_reading_each_other_in_a_circle(policies: Path):
    (policies / "classification" / "a.yaml").write_text(
        "kind: classification\nid: a\nrules:\n  - id: A1\n    when: tag_b == 1\n    set: {tag_a: 1}\n", encoding="utf-8")
    (policies / "classification" / "b.yaml").write_text(
        "kind: classification\nid: b\nrules:\n  - id: B1\n    when: tag_a == 1\n    set: {tag_b: 1}\n", encoding="utf-8")
    errors = errors_of(policies)
    assert any("[policy-cycle]" in e and "a (classification/a.yaml)" in e and "b (classification/b.yaml)" in e for e in errors)


def _hit_policy_set(tmp_path: Path, hit: str) -> Evaluator:
    folder = tmp_path / "p"
    (folder / "classification").mkdir(parents=True)
    for name in ("organization.yaml", "features.yaml", "calendar.yaml", "columns.yaml"):
        shutil.copy(SHIPPED / name, folder / name)
    (folder / "classification" / "t.yaml").write_text(
        f"""kind: classification
id: t
hit_policy: {hit}
rules:
  - id: LOW
    when: monetary_365d >= 100
    set: {{tier: 低}}
    priority: 1
  - id: HIGH
    when: monetary_365d >= 1000
    set: {{tier: 高}}
    priority: 5
  - id: ANY
    when: true
    set: {{tier: 低}}
""",
        encoding="utf-8",
    )
    return Evaluator(load_policies(folder).rulesets, PythonBackend())


@pytest.mark.parametrize(
    "hit, fired, tier, note",
    [
        ("first", ["LOW"], "低", None),
        ("collect", ["LOW", "HIGH", "ANY"], "低", None),
        ("priority", ["HIGH"], "高", None),
        ("unique", ["LOW"], "低", "hit policy unique, but 3 rows matched (LOW, HIGH, ANY); the first was used"),
        ("any", ["LOW"], "低", "hit policy any, but matching rows disagree (LOW, HIGH, ANY); the first was used"),
    ],
)
def test_hit_policies(tmp_path: Path, hit, fired, tier, note):
    evaluator = _hit_policy_set(tmp_path, hit)
    features = {"monetary_365d": 5000}
    evaluator.prepare(features)
    hits = evaluator.run_stage(0, features)
    assert [h.rule.rule_id for h in hits] == fired
    assert features["tier"] == tier
    assert hits[0].note == note
    assert hits[0].inputs == ({"monetary_365d": 5000} if hits[0].rule.rule_id != "ANY" else {})


def test_apply_hit_policy_no_match():
    from engine.policy.model import RuleSet
    from engine.errors import Location

    rs = RuleSet("x", "classification", "", "unique", [], Location(), "x.yaml")
    assert apply_hit_policy(rs, []) == ([], None)


def test_impossible_date_in_yaml_names_its_line(policies: Path):
    (policies / "classification" / "dates.yaml").write_text(
        "kind: classification\nid: dates\nrules:\n  - id: D1\n    when: signed_date > date('2024-01-01')\n    set: {since: 2027-02-30}\n",
        encoding="utf-8")
    assert errors_of(policies) == [
        "classification/dates.yaml:6:18: 错误 error: '2027-02-30' 不是真实的日期 / '2027-02-30' is not a real date (day is out of range "
        "for month) [bad-value]"]
