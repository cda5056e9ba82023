"""Write a run's files: task sheets per assignee, messages per channel, customers, rejects, decision log.

Every writer takes plain data and a folder, so tests can call them directly and the run folder stays
the only place that knows about atomic renames.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from engine.decisions import Firing, Message, Task
from engine.model import Reject
from engine.outbox import write_jsonl
from engine.xlsx_out import Column, Sheet, write_workbook

PRIORITY_ORDER = {"高": 0, "中": 1, "低": 2}

TASK_COLUMNS = [
    Column("截止时间", kind="datetime"),
    Column("优先级"),
    Column("客户编号"),
    Column("客户名称"),
    Column("任务"),
    Column("原因"),
    Column("建议话术", width=60),
    Column("规则编号"),
    Column("阶段"),
    Column("分配方式"),
]

STAGE_LABELS = {"classification": "客户分类", "sla": "服务时限", "care": "客户关怀", "churn": "流失挽回"}


def safe_file_name(name: str) -> str:
    """A person's or channel's name as a file name on every OS (Chinese kept, separators removed)."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", name).strip(" .")
    return cleaned or "未命名"


def write_tasks(folder: Path, tasks: list[Task]) -> dict[str, int]:
    """One workbook per assignee: tasks/<assignee>.xlsx. Returns assignee → task count."""
    by_assignee: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        by_assignee[t.assignee].append(t)
    counts = {}
    (folder / "tasks").mkdir(parents=True, exist_ok=True)
    for assignee in sorted(by_assignee):
        items = sorted(by_assignee[assignee], key=lambda t: (t.due, PRIORITY_ORDER.get(t.priority, 9), t.customer_id, t.rule_id))
        rows = [
            (
                t.due, t.priority, t.customer_id, t.customer_name, t.title, t.reason, t.script, t.rule_id,
                STAGE_LABELS.get(t.stage, t.stage), f"角色：{t.role}" if t.role else "客户经理",
            )
            for t in items
        ]
        write_workbook(folder / "tasks" / f"{safe_file_name(assignee)}.xlsx", [Sheet(assignee, TASK_COLUMNS, rows)])
        counts[assignee] = len(items)
    return counts


MESSAGE_COLUMNS = [
    Column("客户编号"),
    Column("客户名称"),
    Column("发送地址"),
    Column("模板"),
    Column("类别"),
    Column("标题"),
    Column("内容", width=80),
    Column("规则编号"),
]


def write_messages(folder: Path, messages: list[Message]) -> dict[str, int]:
    """messages/<channel>/messages.jsonl for the sending system and messages.xlsx for review."""
    by_channel: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        by_channel[m.channel].append(m)
    counts = {}
    for channel in sorted(by_channel):
        items = sorted(by_channel[channel], key=lambda m: (m.customer_id, m.rule_id))
        out = folder / "messages" / safe_file_name(channel)
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(
            out / "messages.jsonl",
            (
                {
                    "key": m.key, "customer_id": m.customer_id, "channel": m.channel, "to": m.address,
                    "template": m.template, "category": m.category, "subject": m.subject, "body": m.body,
                    "rule_id": m.rule_id, "send_at": m.send_at,
                }
                for m in items
            ),
        )
        rows = [(m.customer_id, m.customer_name, m.address, m.template, m.category, m.subject, m.body, m.rule_id) for m in items]
        write_workbook(out / "messages.xlsx", [Sheet(channel, MESSAGE_COLUMNS, rows)])
        counts[channel] = len(items)
    return counts


def customer_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> list[tuple]:
    """The cells of customers.xlsx: one tuple per customer row, in ``columns`` order (key, header, kind)."""
    keys = [key for key, _, _ in columns]
    return [tuple(map(r.get, keys)) for r in rows]


def write_customers(folder: Path, table: list[tuple], columns: list[tuple[str, str, str]]) -> None:
    """customers.xlsx: every customer with its classifications (``table`` from ``customer_table``)."""
    sheet = Sheet("客户分类", [Column(header, kind=kind) for _, header, kind in columns], table)
    write_workbook(folder / "customers.xlsx", [sheet])


REJECT_COLUMNS = [
    Column("文件"),
    Column("工作表"),
    Column("行号", kind="int"),
    Column("列"),
    Column("原始值"),
    Column("代码"),
    Column("原因", width=70),
]


def write_rejects(folder: Path, rejects: Iterable[Reject]) -> None:
    rows = [
        (r.file, r.sheet, r.row, r.column, None if r.value is None else str(r.value), r.code, r.reason)
        for r in sorted(rejects, key=lambda r: (r.file, r.sheet, r.row, r.column or ""))
    ]
    write_workbook(folder / "rejects.xlsx", [Sheet("被拒绝的行", REJECT_COLUMNS, rows)])


DECISIONS_NAME = "decisions.jsonl"


def firing_record(f: Firing) -> dict[str, Any]:
    record = {
        "customer_id": f.customer_id,
        "stage": f.stage,
        "policy": f.policy_id,
        "rule_id": f.rule_id,
        "source": f.source,
        "inputs": f.inputs,
        "outputs": f.outputs,
    }
    if f.suppressed_by:
        record["suppressed_by"] = f.suppressed_by
    if f.note:
        record["note"] = f.note
    return record


def write_decisions(folder: Path, firings: Iterable[Firing]) -> None:
    write_jsonl(folder / DECISIONS_NAME, (firing_record(f) for f in firings))
