"""docs/features.md lists exactly the features the loader accepts."""
from __future__ import annotations

from conftest import ROOT
from engine.feature_docs import render


def test_features_doc_is_up_to_date():
    assert (ROOT / "docs" / "features.md").read_text(encoding="utf-8") == render(), \
        "regenerate with: python -m engine.feature_docs > docs/features.md"


def test_features_doc_names_stage_features():
    text = render()
    for name in ("monetary_365d", "days_since_last_order", "sla_breached_open", "churn_score", "days_until_birthday"):
        assert f"| `{name}` |" in text


def test_every_when_example_in_the_docs_validates(policy_copy):
    """Ops staff copy the examples: each ``when:`` line of docs/expressions.md and docs/policies.md,
    put into a rule of the shipped policies, must load without an error (unknown names included)."""
    import re

    from engine.validate import validate_policies

    examples = []
    for doc in ("expressions.md", "policies.md"):
        for line in (ROOT / "docs" / doc).read_text(encoding="utf-8").splitlines():
            m = re.match(r"^\s*when:\s*(.+?)\s*(#.*)?$", line)
            if m:
                examples.append(m.group(1))
    assert len(examples) >= 8
    rules = "".join(f"  - id: DOC-EXAMPLE-{n}\n    when: \"{text}\"\n    set: {{doc_example: true}}\n"
                    for n, text in enumerate(examples))
    (policy_copy / "classification" / "doc_examples.yaml").write_text(
        "kind: classification\nid: doc_examples\nhit_policy: collect\nrules:\n" + rules, encoding="utf-8")
    errors = [str(p) for p in validate_policies(policy_copy) if p.severity == "error"]
    assert errors == []
