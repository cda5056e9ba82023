"""docs/features.md is generated from the feature catalog, so the list policy authors read is the
list the loader checks against. ``python -m engine.feature_docs > docs/features.md`` regenerates it;
a test fails when the file is out of date."""
from __future__ import annotations

from engine.features import FeatureConfig, feature_catalog
from engine.stages import stage_feature_catalog

HEADER = """# 特征一览 / Features conditions can use

条件（`when:`、决策表的“条件”列）里可以用下面这些名字。数值按 `--as-of` 日期计算，只统计该日期及以前的数据。
窗口天数来自 `policies/features.yaml` 的 `windows_days`（下表按出厂设置 30/90/180/365 天列出）。
分类结果（如 `value_tier`、`need_type`、`lifecycle_stage`、`service_team`、`revisit_interval_days`）由前面的策略设置，
后面的策略可以直接使用。

Names usable in conditions, computed as of the run's `--as-of` date (only data on or before it counts).
Window lengths come from `windows_days` in `policies/features.yaml` (shipped: 30/90/180/365).
Generated from the code by `python -m engine.feature_docs`; do not edit by hand.
"""


def render() -> str:
    lines = [HEADER, "## 客户、订单、互动 Customer, orders, interactions", "", "| 名称 name | 类型 type | 含义 meaning |", "| --- | --- | --- |"]
    for name, (type_name, description) in feature_catalog(FeatureConfig()).items():
        lines.append(f"| `{name}` | {type_name} | {description} |")
    lines += ["", "## 阶段模块计算的特征 Computed by the stage modules (SLA, care, churn)", "",
              "| 名称 name | 类型 type | 含义 meaning |", "| --- | --- | --- |"]
    for name, (type_name, description) in stage_feature_catalog().items():
        lines.append(f"| `{name}` | {type_name} | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
