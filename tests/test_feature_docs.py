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
