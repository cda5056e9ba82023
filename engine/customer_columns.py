"""The columns of the run's customers.xlsx and their Chinese headers.

Kept apart from engine.run so that the policy loader can use the headers too: an author who types a
result's header (服务团队) into a decision table's row 2 is told its name (service_team).
"""
from __future__ import annotations

# customers.xlsx columns: (feature or tag key, header, cell kind)
CUSTOMER_COLUMNS = [
    ("customer_id", "客户编号", "text"),
    ("name", "客户名称", "text"),
    ("owner", "客户经理", "text"),
    ("value_tier", "价值等级", "text"),
    ("need_type", "需求类型", "text"),
    ("lifecycle_stage", "合作阶段", "text"),
    ("sales_stage", "销售阶段", "text"),
    ("risk_level", "风险等级", "text"),
    ("service_team", "服务团队", "text"),
    ("revisit_interval_days", "回访间隔(天)", "int"),
    ("days_since_last_order", "距上次购买(天)", "int"),
    ("frequency_365d", "近365天购买次数", "int"),
    ("monetary_365d", "近365天消费额", "money"),
    ("days_since_last_contact", "距上次联系(天)", "int"),
    ("open_complaints", "未解决投诉", "int"),
    ("churn_score", "流失风险分", "int"),
    ("churn_level", "流失风险等级", "text"),
    ("churn_reason", "流失原因", "text"),
    ("churn_signals", "流失信号", "text"),
    ("next_birthday_date", "下次生日", "date"),
    ("task_count", "任务数", "int"),
    ("message_count", "消息数", "int"),
]
# Headers of the shipped policies' other tags; a tag or score a policy adds is headed by its name.
TAG_LABELS = {"dedicated_owner_required": "需配专属客户经理", "offer_plan": "优惠方案"}
RUN_COUNTS = ("task_count", "message_count")  # the run's own counts, not results a policy sets


def column_headers() -> dict[str, str]:
    """Feature or tag name → its customers.xlsx header (service_team → 服务团队)."""
    return {**TAG_LABELS, **{key: header for key, header, _kind in CUSTOMER_COLUMNS}}
