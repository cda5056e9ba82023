"""Plain data passed between stages: facts read from the exports, and decisions made about them.

Facts carry the spreadsheet position they came from (``SourceRow``) so that any decision can be
traced back to a cell an auditor can open.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class SourceRow:
    file: str  # file name relative to the inbox
    sheet: str
    row: int  # 1-based spreadsheet row

    def __str__(self) -> str:
        return f"{self.file}, sheet {self.sheet}, row {self.row}"


def source_rows(n: int, files: Iterable[str], sheets: Iterable[str], rows: Iterable[int]) -> list[SourceRow]:
    """``n`` ``SourceRow(file, sheet, row)``, one per value of the three, built at C speed.

    SourceRow is a frozen dataclass whose ``__init__`` costs ~1.2 µs (frozen assignment goes through
    ``object.__setattr__``); for a million rows that is a second. Setting the slots directly through
    their descriptors gives the same objects (equal, same hash) at less than half the cost.
    """
    objs = list(map(SourceRow.__new__, [SourceRow] * n))
    deque(map(SourceRow.file.__set__, objs, files), 0)
    deque(map(SourceRow.sheet.__set__, objs, sheets), 0)
    deque(map(SourceRow.row.__set__, objs, rows), 0)
    return objs


@dataclass(slots=True)
class Customer:
    customer_id: str
    source: SourceRow
    name: str | None = None
    contact_person: str | None = None
    phone: str | None = None
    email: str | None = None
    wechat: str | None = None
    gender: str | None = None
    birthday: date | None = None
    birthday_is_lunar: bool = False  # True: ``birthday`` holds lunar month/day (year as recorded)
    industry: str | None = None
    company_size: str | None = None
    region: str | None = None
    source_channel: str | None = None
    referrer: str | None = None
    owner: str | None = None  # 客户经理 / account manager
    lifecycle_stage: str | None = None  # as recorded in the export: 潜在/意向/签约/流失
    sales_stage: str | None = None  # as recorded: 咨询/首面/意向/谈价/成交/售后
    need_type: str | None = None  # as recorded, if the export has it: 战略/普通/特殊需求
    signed_date: date | None = None
    marketing_consent: bool | None = None  # None: not recorded
    opt_out: bool = False
    preferred_channel: str | None = None
    member_level: str | None = None
    points: float | None = None
    notes: str | None = None


@dataclass(slots=True)
class Interaction:
    interaction_id: str
    customer_id: str
    time: datetime
    source: SourceRow
    channel: str | None = None  # 电话/邮件/微信/在线客服/上门拜访/官网留言
    type: str | None = None  # 咨询/投诉/建议/回访/拜访/关怀/购买
    first_response_time: datetime | None = None
    resolved_time: datetime | None = None
    status: str | None = None  # e.g. 待处理/处理中/待客户回复/已解决/已关闭
    satisfaction: int | None = None  # 1..5
    staff: str | None = None
    category: str | None = None  # reason category: 产品质量/服务态度/价格/竞争对手/...
    content: str | None = None


@dataclass(slots=True)
class Order:
    order_id: str
    customer_id: str
    date: date
    amount: float
    source: SourceRow
    product: str | None = None
    quantity: float | None = None
    status: str | None = None  # 订单状态 as recorded (canonical: 已完成/已取消/已退款/待付款); None: not recorded


@dataclass(frozen=True)
class Reject:
    """A row that could not be used. It goes to ``rejects.xlsx``; the run continues."""

    file: str
    sheet: str
    row: int
    column: str | None
    value: Any
    code: str  # stable: "bad-date", "missing-value", "duplicate-id", "unknown-customer", ...
    reason: str  # the detail, in English (rejects.xlsx 说明); the Chinese wording is engine/reject_text.py's
    # A kept row (code "bad-value": an optional cell nobody can read): the rule the cell failed
    # ("bad-phone", ...), and, for a field with if_unreadable, the value taken instead of an empty cell.
    cause: str | None = None
    kept_as: bool | None = None


@dataclass(frozen=True)
class SheetColumns:
    """One sheet the reader read: which fields had a column, and the headers that matched none."""

    table: str  # "customers" | "interactions" | "orders"
    file: str
    sheet: str
    fields: frozenset[str]
    unused: tuple[str, ...]


@dataclass
class Dataset:
    """Everything read from one inbox."""

    customers: list[Customer] = field(default_factory=list)
    interactions: list[Interaction] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    input_files: list[str] = field(default_factory=list)  # paths read, for the manifest
    sheets: list[SheetColumns] = field(default_factory=list)  # the sheets read (by table, in file order)
