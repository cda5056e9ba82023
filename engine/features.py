"""Per-customer features as of a date: what policy conditions are written over.

Only facts dated on or before the as-of date count, so a run for a past date gives the answer it
would have given that day. Every feature has a name, a type and a description (``feature_catalog``)
that ``validate`` checks conditions against and ``docs/features.md`` lists for policy authors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Iterable

from engine.model import Customer, Interaction, Order

# Interaction types as recorded (Chinese) → the key used in feature names.
INTERACTION_TYPE_KEYS = {
    "咨询": "inquiry",
    "投诉": "complaint",
    "建议": "suggestion",
    "回访": "follow_up",
    "拜访": "visit",
    "关怀": "care",
    "购买": "purchase",
}
# The interaction types that are staff contacting the customer (guards.yaml still_open.contact_types):
# a task on the 仍待处理 page counts as done once one of these is logged after it was issued.
CONTACT_TYPES = ("回访", "拜访")
# A complaint counts as open unless it has a resolved time or one of these statuses.
CLOSED_STATUSES = frozenset({"已解决", "已关闭", "已完成", "关闭", "完成", "resolved", "closed", "done"})


# Orders with these statuses (canonical spellings, columns.yaml) are not purchases.
ORDERS_NOT_COUNTED = frozenset({"已取消", "已退款", "待付款"})


@dataclass(frozen=True)
class FeatureConfig:
    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    satisfaction_window_days: int = 365
    orders_not_counted: frozenset[str] = ORDERS_NOT_COUNTED
    # A complaint with one of these statuses (lower case) and no resolved time is closed: sla.yaml's
    # clock.closed_statuses when there is one (engine.policy.loader), so SLA and churn agree.
    closed_statuses: frozenset[str] = CLOSED_STATUSES
    # The interaction types last_staff_contact_time counts: guards.yaml's still_open.contact_types when
    # there is one (engine.policy.loader), so the 仍待处理 page and policies read the same contacts.
    contact_types: frozenset[str] = frozenset(CONTACT_TYPES)

    @classmethod
    def from_policy(cls, data: dict | None) -> "FeatureConfig":
        if not data:
            return cls()
        windows = tuple(sorted({int(w) for w in data.get("windows_days", cls.windows_days)}))
        not_counted = data.get("orders_not_counted", sorted(ORDERS_NOT_COUNTED))
        if not isinstance(not_counted, list) or not all(isinstance(s, str) for s in not_counted):
            raise ValueError("orders_not_counted must be a list of order statuses")
        return cls(
            windows_days=windows,
            satisfaction_window_days=int(data.get("satisfaction_window_days", cls.satisfaction_window_days)),
            orders_not_counted=frozenset(s.strip() for s in not_counted),
        )


def counted_orders(orders: list[Order], config: FeatureConfig) -> list[Order]:
    """The orders that count: not cancelled, refunded or unpaid (``orders_not_counted``). Every order
    feature looks only at these; a negative amount among them (a refund row) lowers spending but is no
    purchase (``purchases``)."""
    excluded = config.orders_not_counted
    if not excluded:
        return orders
    return [o for o in orders if o.status not in excluded]


def purchases(orders: list[Order], config: FeatureConfig) -> list[Order]:
    """The counted orders that are purchases: a refund row (negative amount) is not."""
    return [o for o in counted_orders(orders, config) if o.amount >= 0]


def feature_catalog(config: FeatureConfig) -> dict[str, tuple[str, str]]:
    """name → (type name, description). Type names are those of ``engine.expr.types``."""
    cat: dict[str, tuple[str, str]] = {
        "as_of": ("date", "the run's as-of date"),
        "customer_id": ("string", "客户编号"),
        "name": ("string", "客户名称"),
        "owner": ("string", "客户经理 (null if none)"),
        "has_owner": ("bool", "the customer has a 客户经理"),
        "gender": ("string", "性别"),
        "industry": ("string", "行业"),
        "region": ("string", "地区"),
        "company_size": ("string", "公司规模"),
        "source_channel": ("string", "来源渠道"),
        "recorded_lifecycle_stage": ("string", "合作阶段 as recorded in the export (潜在/意向/签约/流失)"),
        "recorded_sales_stage": ("string", "销售阶段 as recorded (咨询/首面/意向/谈价/成交/售后)"),
        "recorded_need_type": ("string", "需求类型 as recorded (战略/普通/特殊需求)"),
        "marketing_consent": ("bool", "同意接收营销信息 (null if not recorded)"),
        "opt_out": ("bool", "已退订"),
        "preferred_channel": ("string", "偏好渠道 as recorded"),
        "member_level": ("string", "会员等级"),
        "points": ("number", "积分"),
        "birthday": ("date", "生日 (solar, or lunar month/day when birthday_is_lunar)"),
        "birthday_is_lunar": ("bool", "生日按农历"),
        "signed_date": ("date", "签约日期 (null when it is after the as-of date)"),
        "tenure_days": ("number", "days since the signed date"),
        "has_phone": ("bool", "a phone number is recorded"),
        "has_email": ("bool", "an e-mail address is recorded"),
        "has_wechat": ("bool", "a WeChat id is recorded"),
        "order_count": ("number", "orders up to the as-of date (every order feature leaves out cancelled, refunded and unpaid orders: features.yaml orders_not_counted; a negative amount, a refund row, only lowers the amounts)"),
        "monetary_total": ("number", "amount of all orders up to the as-of date (元)"),
        "first_order_date": ("date", "date of the first order"),
        "last_order_date": ("date", "date of the latest order"),
        "days_since_last_order": ("number", "recency: days since the latest order (null if none)"),
        "interaction_count": ("number", "interactions up to the as-of date"),
        "last_contact_date": ("date", "date of the latest interaction of any type"),
        "days_since_last_contact": ("number", "days since the latest interaction (null if none)"),
        "last_revisit_date": ("date", "date of the latest 回访 or 拜访"),
        "days_since_last_revisit": ("number", "days since the latest 回访 or 拜访 (null if none)"),
        "last_staff_contact_time": ("datetime", "最近一次员工联系客户的时刻: time of the latest interaction of the contact types "
                                    "(guards.yaml still_open.contact_types; shipped: 回访, 拜访) up to the as-of date"),
        "open_complaints": ("number", "complaints not yet resolved on the as-of date"),
        "oldest_open_complaint_days": ("number", "最早一条未解决投诉已过天数: days since the oldest complaint still open on "
                                       "the as-of date, open as in open_complaints (null if none)"),
        "last_complaint_category": ("string", "reason category of the latest complaint"),
        "last_complaint_id": ("string", "最近一次投诉的记录编号: interaction id of the latest complaint (the one last_complaint_category is of)"),
        f"avg_satisfaction_{config.satisfaction_window_days}d": (
            "number",
            f"average satisfaction (1–5) over {config.satisfaction_window_days} days (null if none rated)",
        ),
        f"min_satisfaction_{config.satisfaction_window_days}d": (
            "number",
            f"lowest satisfaction over {config.satisfaction_window_days} days (null if none rated)",
        ),
    }
    for w in config.windows_days:
        cat[f"frequency_{w}d"] = ("number", f"orders in the last {w} days")
        cat[f"monetary_{w}d"] = ("number", f"order amount in the last {w} days (元)")
        cat[f"frequency_prev_{w}d"] = ("number", f"orders in the {w} days before the last {w} days")
        cat[f"monetary_prev_{w}d"] = ("number", f"order amount in the {w} days before the last {w} days")
        cat[f"interactions_{w}d"] = ("number", f"interactions of any type in the last {w} days")
        for key in INTERACTION_TYPE_KEYS.values():
            cat[f"{key}_count_{w}d"] = ("number", f"{key} interactions in the last {w} days")
    for label, key in INTERACTION_TYPE_KEYS.items():
        cat[f"last_{key}_date"] = ("date", f"date of the latest {label}")
        cat[f"days_since_last_{key}"] = ("number", f"days since the latest {label} (null if none)")
    return cat


# Features read from one optional customers column (columns.yaml): without it they are empty for everyone.
# (birthday_is_lunar is left out: without its column every birthday is solar, the usual case.)
_CUSTOMER_COLUMN = {
    "name": "name", "owner": "owner", "has_owner": "owner", "gender": "gender", "industry": "industry",
    "region": "region", "company_size": "company_size", "source_channel": "source_channel",
    "recorded_lifecycle_stage": "lifecycle_stage", "recorded_sales_stage": "sales_stage",
    "recorded_need_type": "need_type", "marketing_consent": "marketing_consent", "opt_out": "opt_out",
    "preferred_channel": "preferred_channel", "member_level": "member_level", "points": "points",
    "birthday": "birthday", "signed_date": "signed_date", "tenure_days": "signed_date",
    "has_phone": "phone", "has_email": "email", "has_wechat": "wechat",
}
_TYPE_KEYS = "|".join(INTERACTION_TYPE_KEYS.values())
# Features that tell complaints, visits... apart by the interaction's type.
_BY_TYPE = re.compile(rf"(?:{_TYPE_KEYS})_count_\d+d|last_(?:{_TYPE_KEYS}|revisit)_date|days_since_last_(?:{_TYPE_KEYS}|revisit)"
                      r"|open_complaints|oldest_open_complaint_days|last_complaint_id")


def feature_columns(name: str, config: FeatureConfig) -> tuple[tuple[str, str], ...]:
    """The optional export columns, as (table, field) of columns.yaml, that feature ``name`` is computed
    from: if the export lacks one, the feature is empty (or 0) for every customer, whatever the policies
    say. Features of required columns or of several alternatives (a complaint is open by its status or
    its resolved time) give ()."""
    if name in _CUSTOMER_COLUMN:
        return (("customers", _CUSTOMER_COLUMN[name]),)
    if name in (f"avg_satisfaction_{config.satisfaction_window_days}d", f"min_satisfaction_{config.satisfaction_window_days}d"):
        return (("interactions", "satisfaction"),)
    if name == "last_complaint_category":
        return ("interactions", "type"), ("interactions", "category")
    return (("interactions", "type"),) if _BY_TYPE.fullmatch(name) else ()


def feature_source_columns(config: FeatureConfig) -> set[tuple[str, str]]:
    """Every column ``feature_columns`` names for some feature."""
    return {column for name in feature_catalog(config) for column in feature_columns(name, config)}


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _customer_features(c: Customer, as_of: date) -> dict[str, Any]:
    return {
        "as_of": as_of,
        "customer_id": c.customer_id,
        "name": c.name,
        "owner": c.owner,
        "has_owner": bool(c.owner),
        "gender": c.gender,
        "industry": c.industry,
        "region": c.region,
        "company_size": c.company_size,
        "source_channel": c.source_channel,
        "recorded_lifecycle_stage": c.lifecycle_stage,
        "recorded_sales_stage": c.sales_stage,
        "recorded_need_type": c.need_type,
        "marketing_consent": c.marketing_consent,
        "opt_out": bool(c.opt_out),
        "preferred_channel": c.preferred_channel,
        "member_level": c.member_level,
        "points": c.points,
        "birthday": c.birthday,
        "birthday_is_lunar": bool(c.birthday_is_lunar),
        # A contract signed after the as-of date had not been signed yet (a run for a past date).
        "signed_date": c.signed_date if c.signed_date and c.signed_date <= as_of else None,
        "tenure_days": (as_of - c.signed_date).days if c.signed_date and c.signed_date <= as_of else None,
        "has_phone": bool(c.phone),
        "has_email": bool(c.email),
        "has_wechat": bool(c.wechat),
    }


@lru_cache(maxsize=None)
def _order_window_names(windows: tuple[int, ...]) -> tuple[tuple[int, str, str, str, str], ...]:
    """(window, frequency, monetary, previous frequency, previous monetary) feature names, built once:
    formatting them per order was a measurable share of a 300,000-order run."""
    return tuple((w, f"frequency_{w}d", f"monetary_{w}d", f"frequency_prev_{w}d", f"monetary_prev_{w}d") for w in windows)


@lru_cache(maxsize=None)
def _order_window_zeros(windows: tuple[int, ...]) -> dict[str, Any]:
    """The window features of a customer without orders, in their order: copied per customer (never
    modified itself), cheaper than setting each name."""
    f: dict[str, Any] = {}
    for _, freq, money, freq_prev, money_prev in _order_window_names(windows):
        f[freq] = 0
        f[money] = 0.0
        f[freq_prev] = 0
        f[money_prev] = 0.0
    return f


def _order_features(orders: Iterable[Order], as_of: date, windows: tuple[int, ...]) -> dict[str, Any]:
    names = _order_window_names(windows)
    f = dict(_order_window_zeros(windows))
    longest = 2 * max(windows, default=0)  # an older order is in no window (nor the one before it)
    seen, count, total, first, last = False, 0, 0.0, None, None
    for o in orders:
        d = o.date
        if d > as_of:
            continue
        seen = True
        amount = o.amount
        total += amount
        age = (as_of - d).days
        if amount < 0:  # a refund or correction row: it lowers spending, it is not a purchase
            if age < longest:
                for w, _, money, _, money_prev in names:
                    if age < w:
                        f[money] += amount
                    elif age < 2 * w:
                        f[money_prev] += amount
            continue
        count += 1
        if first is None or d < first:
            first = d
        if last is None or d > last:
            last = d
        if age < longest:
            for w, freq, money, freq_prev, money_prev in names:
                if age < w:
                    f[freq] += 1
                    f[money] += amount
                elif age < 2 * w:
                    f[freq_prev] += 1
                    f[money_prev] += amount
    if seen:  # round money once, so sums do not show float noise (without orders every sum is 0.0)
        for _, _, money, _, money_prev in names:
            f[money] = round(f[money], 2)
            f[money_prev] = round(f[money_prev], 2)
    f["order_count"] = count
    f["monetary_total"] = round(total, 2)
    f["first_order_date"] = first
    f["last_order_date"] = last
    f["days_since_last_order"] = (as_of - last).days if last else None
    return f


@lru_cache(maxsize=None)
def _interaction_window_names(windows: tuple[int, ...]) -> tuple[tuple[int, str, dict[str, str]], ...]:
    """(window, interactions_<w>d, {type key: <key>_count_<w>d}) built once (1M interactions × windows)."""
    return tuple((w, f"interactions_{w}d", {key: f"{key}_count_{w}d" for key in INTERACTION_TYPE_KEYS.values()})
                 for w in windows)


@lru_cache(maxsize=None)
def _interaction_window_zeros(windows: tuple[int, ...]) -> dict[str, int]:
    """The window counts of a customer without interactions, in their order (copied per customer,
    never modified itself)."""
    return {name: 0 for _, total_name, by_type in _interaction_window_names(windows)
            for name in (total_name, *by_type.values())}


# (type key, last_<key>_date, days_since_last_<key>), formatted once.
_LAST_NAMES = tuple((key, f"last_{key}_date", f"days_since_last_{key}") for key in INTERACTION_TYPE_KEYS.values())


def is_open(i: Interaction, as_of: date, closed_statuses: frozenset[str] = CLOSED_STATUSES) -> bool:
    """Still open on the as-of day: not resolved by then (a resolved time after it had not happened
    yet, whatever the status says now), or, without a resolved time, not in a closing status."""
    if i.resolved_time is not None:
        return _day(i.resolved_time) > as_of
    return (i.status or "").strip().lower() not in closed_statuses


def _interaction_features(
    interactions: Iterable[Interaction], as_of: date, config: FeatureConfig
) -> dict[str, Any]:
    names = _interaction_window_names(config.windows_days)
    f = dict(_interaction_window_zeros(config.windows_days))
    longest = max(config.windows_days, default=0)  # an older interaction is in no window
    last_by_key: dict[str, date] = {}
    count, last_contact, open_complaints, oldest_open = 0, None, 0, None
    last_complaint_time, last_complaint_category, last_complaint_id = None, None, None
    contact_types, last_staff_contact = config.contact_types, None
    sat_window = config.satisfaction_window_days
    sat_sum, sat_n, sat_min = 0, 0, None
    for i in interactions:
        t = i.time
        d = t.date() if isinstance(t, datetime) else t  # _day, inline: this loop runs per interaction
        if d > as_of:
            continue
        count += 1
        age = (as_of - d).days
        if last_contact is None or d > last_contact:
            last_contact = d
        key = INTERACTION_TYPE_KEYS.get(i.type or "")
        if age < longest:
            for w, total_name, by_type in names:
                if age < w:
                    f[total_name] += 1
                    if key:
                        f[by_type[key]] += 1
        if key:
            prev = last_by_key.get(key)
            if prev is None or d > prev:
                last_by_key[key] = d
        if i.type in contact_types and (last_staff_contact is None or t > last_staff_contact):
            last_staff_contact = t
        if key == "complaint":
            if is_open(i, as_of, config.closed_statuses):
                open_complaints += 1
                if oldest_open is None or d < oldest_open:
                    oldest_open = d
            if last_complaint_time is None or t >= last_complaint_time:
                last_complaint_time, last_complaint_category, last_complaint_id = t, i.category, i.interaction_id
        if i.satisfaction is not None and age < sat_window:
            sat_sum += i.satisfaction
            sat_n += 1
            sat_min = i.satisfaction if sat_min is None else min(sat_min, i.satisfaction)
    f["interaction_count"] = count
    f["last_contact_date"] = last_contact
    f["days_since_last_contact"] = (as_of - last_contact).days if last_contact else None
    for key, last_name, since_name in _LAST_NAMES:
        last = last_by_key.get(key)
        f[last_name] = last
        f[since_name] = (as_of - last).days if last else None
    revisit = max((d for d in (last_by_key.get("follow_up"), last_by_key.get("visit")) if d), default=None)
    f["last_revisit_date"] = revisit
    f["days_since_last_revisit"] = (as_of - revisit).days if revisit else None
    f["last_staff_contact_time"] = last_staff_contact
    f["open_complaints"] = open_complaints
    f["oldest_open_complaint_days"] = (as_of - oldest_open).days if oldest_open else None
    f["last_complaint_category"] = last_complaint_category
    f["last_complaint_id"] = last_complaint_id
    f[f"avg_satisfaction_{sat_window}d"] = round(sat_sum / sat_n, 2) if sat_n else None
    f[f"min_satisfaction_{sat_window}d"] = sat_min
    return f


def group_by_customer(items: list, key: str = "customer_id") -> dict[str, list]:
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(getattr(item, key), []).append(item)
    return groups


def derive_features(
    customer: Customer,
    orders: list[Order],
    interactions: list[Interaction],
    as_of: date,
    config: FeatureConfig,
) -> dict[str, Any]:
    features = _customer_features(customer, as_of)
    features.update(_order_features(counted_orders(orders, config), as_of, config.windows_days))
    features.update(_interaction_features(interactions, as_of, config))
    return features

