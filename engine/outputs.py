"""Write a run's files: task sheets per assignee, messages per channel, customers, rejects, decision log.

Every writer takes plain data and a folder, so tests can call them directly and the run folder stays
the only place that knows about atomic renames.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from datetime import date
from operator import attrgetter
from pathlib import Path
from typing import Any, Iterable, Mapping

from engine.decisions import CATEGORY_LABELS, Firing, Message, Task
from engine.model import Customer, Reject
from engine.reject_text import reject_outcome, reject_reason
from engine.outbox import write_jsonl
from engine.xlsx_out import Column, Sheet, write_workbook

PRIORITY_ORDER = {"高": 0, "中": 1, "低": 2}

TASK_COLUMNS = [
    Column("截止时间", kind="datetime"),
    Column("优先级"),
    Column("客户编号"),
    Column("客户名称"),
    # Whom to call and how (a company's 联系人; a landline, which SMS cannot reach, can still be called):
    # the cells of ``task_contacts``.
    Column("联系人"),
    Column("电话"),
    Column("邮箱"),
    Column("微信"),
    Column("偏好渠道"),
    Column("任务"),
    Column("原因", width=40, wrap=True),
    Column("建议话术", width=60, wrap=True),
    Column("规则编号"),
    Column("阶段"),
    Column("分配方式"),
    Column("负责人"),  # the full name: the file and sheet names may be shortened or carry a suffix
    Column("去重键"),  # the idempotency key: matches the task to its decision-log record and ledger row
    # From the contact ledger (``Ledger.task_history``): the as-of date of the latest earlier task of
    # the same rule to the same customer (empty: none), and which time this is (1: the first).
    Column("上次派发", kind="date"),
    Column("第几次", kind="int"),
]

# The 仍待处理 (still open) page: tasks this run's rules called for again but held back because an
# earlier run issued them (engine.guards.StillOpen), with that earlier task's due date (most overdue
# first), as-of date, run and assignee, and the guard that held it back; the middle cells as above.
OPEN_SHEET_NAME = "仍待处理"
OPEN_TASK_COLUMNS = [
    Column("原截止时间", kind="datetime"),
    *TASK_COLUMNS[1:17],  # 优先级 … 去重键 (this run's key, as in guards.xlsx and the decision log)
    Column("上次派发", kind="date"),
    Column("派发运行"),
    Column("原负责人"),  # who had it then: the customer's owner may have changed since
    Column("未重派原因"),
]
_NO_ORIGIN = (None, None, None, None, None)

# The Customer fields behind 联系人 … 偏好渠道, in TASK_COLUMNS order.
_CONTACT_CELLS = attrgetter("contact_person", "phone", "email", "wechat", "preferred_channel")
_NO_CONTACT_CELLS = (None,) * 5  # a customer missing from the export
_CUSTOMER_ID = attrgetter("customer_id")

STAGE_LABELS = {"classification": "客户分类", "sla": "服务时限", "care": "客户关怀", "churn": "流失挽回"}


_UNSAFE_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')
# Windows refuses these as a file name's part before the first dot, in any case ("con.xlsx" too).
_RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789¹²³")}
# Bytes (UTF-8) of a file name before its extension: far under the usual 255-byte limit, with room
# for ".xlsx.tmp" and a deep run folder. 40 CJK characters still fit unchanged.
MAX_NAME_BYTES = 120
SUFFIX_HEX = 8


def safe_file_name(name: str) -> str:
    """A person's or channel's name as a file name on every OS (Chinese kept, separators removed).
    Not unique and not length-limited: ``file_names`` gives each name its own file name."""
    cleaned = _UNSAFE_CHARS.sub("_", name).strip(" .")
    return cleaned or "未命名"


def file_names(names: Iterable[str]) -> dict[str, str]:
    """A file name (without extension) for each name, distinct from the others on every OS.

    A name that is already a good file name is kept as it is. A name with unsafe characters,
    leading or trailing dots or spaces, a Windows device name (CON, COM1, ...), a name over
    ``MAX_NAME_BYTES``, or one equal to another name ignoring case and Unicode normalisation
    (Windows and macOS would give both one file) gets its ``safe_file_name`` form, cut to fit,
    then ``-`` and the first 8 hex digits of the sha256 of the full name. The result depends only
    on the set of names, never on their order."""
    names = sorted(set(names))
    kept = {n for n in names if safe_file_name(n) == n and not _reserved(n) and len(n.encode()) <= MAX_NAME_BYTES}
    clashing = _clashes(kept)
    result = {n: n if n in kept and _fold(n) not in clashing else _with_suffix(n, SUFFIX_HEX) for n in names}
    # A name someone actually spelled "王芳-1a2b3c4d", or two equal 8-digit hashes: the suffixed
    # names among them take the whole hash.
    clashing = _clashes(result.values())
    for n in names:
        if _fold(result[n]) in clashing and result[n] != n:
            result[n] = _with_suffix(n, 64)
    if _clashes(result.values()):
        raise ValueError("two names would share one file")  # unreachable in practice; never overwrite
    return result


def _fold(name: str) -> str:
    """What case-insensitive file systems compare: Windows and macOS see "Zhang Wei" and "zhang wei"
    (and composed and decomposed "é") as one file."""
    return unicodedata.normalize("NFC", name).casefold()


def _clashes(names: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    twice: set[str] = set()
    for n in map(_fold, names):
        (twice if n in seen else seen).add(n)
    return twice


def _reserved(name: str) -> bool:
    return name.split(".")[0].rstrip(" ").upper() in _RESERVED_NAMES


def _with_suffix(name: str, digits: int) -> str:
    """The safe form cut to fit (by UTF-8 bytes, never inside a character) + ``-`` + hash digits."""
    suffix = "-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:digits]
    head = safe_file_name(name).encode("utf-8")[:MAX_NAME_BYTES - len(suffix) - 1].decode("utf-8", "ignore")
    # "CON.a/b" → "CON.a_b-…" would still start with a device name.
    return ("_" if _reserved(head + suffix) else "") + head + suffix


def _assigned_as(task: Task) -> str:
    """The 分配方式 column: by role, else the ticket's handler (an SLA reminder goes to the 处理人, who
    is not always the 客户经理), else the customer's 客户经理."""
    if task.role:
        return f"角色：{task.role}" + (f"，{task.assignment}" if task.assignment else "")
    return "工单处理人" if task.handler else "客户经理"


def _times(earlier: tuple[date, int] | None) -> tuple[date | None, int]:
    """The 上次派发 and 第几次 cells of a task given its rule's earlier tasks to the customer."""
    return (None, 1) if earlier is None else (earlier[0], earlier[1] + 1)


def task_contacts(tasks: Iterable[Task], customers_by_id: Mapping[str, Customer]) -> dict[str, tuple]:
    """客户编号 → the task sheets' contact cells (联系人, 电话, 邮箱, 微信, 偏好渠道), for the customers
    who have tasks only. Plain tuples: the writer helper gets them with the tasks (engine.parallel)."""
    contacts = {}
    for cid in dict.fromkeys(map(_CUSTOMER_ID, tasks)):  # each customer once, in task order
        customer = customers_by_id.get(cid)
        if customer is not None:
            contacts[cid] = _CONTACT_CELLS(customer)
    return contacts


def write_tasks(folder: Path, tasks: list[Task], contacts: Mapping[str, tuple] | None = None,
                history: Mapping[tuple[str, str], tuple[date, int]] | None = None,
                open_tasks: Iterable[Task] = (), origins: Mapping[str, tuple] | None = None) -> dict[str, int]:
    """One workbook per assignee: tasks/<assignee>.xlsx (the name from ``file_names``), the
    customer's contact cells from ``contacts`` (``task_contacts``; blank for a customer not in it),
    上次派发 and 第几次 from ``history`` ((rule id, customer id) → (latest earlier as-of date, earlier
    task count), ``Ledger.task_history``; none: a first time). A second page, 仍待处理, lists the
    assignee's ``open_tasks`` (``engine.guards.StillOpen``) with their ``origins`` (task key → (due,
    as-of date, run id, assignee of the earlier task, guard label)); an assignee with only those gets
    a workbook too. Returns assignee → task count (new tasks only)."""
    contacts = contacts or {}
    history = history or {}
    origins = origins or {}
    by_assignee: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        by_assignee[t.assignee].append(t)
    open_by_assignee: dict[str, list[Task]] = defaultdict(list)
    for t in open_tasks:
        open_by_assignee[t.assignee].append(t)
    counts = {}
    (folder / "tasks").mkdir(parents=True, exist_ok=True)
    names = file_names([*by_assignee, *open_by_assignee])
    for assignee in sorted(names):
        items = sorted(by_assignee.get(assignee, ()), key=lambda t: (t.due, PRIORITY_ORDER.get(t.priority, 9), t.customer_id, t.rule_id))
        rows = [(t.due, *_task_cells(t, contacts), *_times(history.get((t.rule_id, t.customer_id)))) for t in items]
        still = sorted(((t, origins.get(t.key, _NO_ORIGIN)) for t in open_by_assignee.get(assignee, ())), key=_most_overdue_first)
        open_rows = [(origin[0], *_task_cells(t, contacts), *origin[1:]) for t, origin in still]
        write_workbook(folder / "tasks" / f"{names[assignee]}.xlsx",
                       [Sheet(assignee, TASK_COLUMNS, rows), Sheet(OPEN_SHEET_NAME, OPEN_TASK_COLUMNS, open_rows)])
        if items:
            counts[assignee] = len(items)
    return counts


def _task_cells(t: Task, contacts: Mapping[str, tuple]) -> tuple:
    """The cells 优先级 … 去重键 of a task, on both pages."""
    return (t.priority, t.customer_id, t.customer_name, *contacts.get(t.customer_id, _NO_CONTACT_CELLS), t.title, t.reason,
            t.script, t.rule_id, STAGE_LABELS.get(t.stage, t.stage), _assigned_as(t), t.assignee, t.key)


def _most_overdue_first(item: tuple[Task, tuple]) -> tuple:
    """The earliest original due date first (none: last), then as the first page."""
    t, (due, *_) = item
    return (due is None, due or t.due, PRIORITY_ORDER.get(t.priority, 9), t.customer_id, t.rule_id, t.key)


MESSAGE_COLUMNS = [
    Column("发送时间", kind="datetime"),  # after the guards: quiet hours may have moved it
    Column("客户编号"),
    Column("客户名称"),
    Column("发送地址"),
    Column("模板"),
    Column("类别"),
    Column("标题"),
    Column("内容", width=80, wrap=True),
    Column("规则编号"),
    Column("去重键"),  # the key the contact ledger and the sending system dedupe on (as in messages.jsonl)
]


def write_messages(folder: Path, messages: list[Message], channels: Iterable[str] = ()) -> dict[str, int]:
    """messages/<channel>/messages.jsonl for the sending system and messages.xlsx for review. Every
    channel of ``channels`` (organization.yaml's) gets its messages.jsonl, empty on a day without
    messages for it: a sending system polling for the file would take a missing one as a failed run."""
    by_channel: dict[str, list[Message]] = {channel: [] for channel in channels}
    for m in messages:
        by_channel.setdefault(m.channel, []).append(m)
    counts = {}
    names = file_names(by_channel)
    for channel in sorted(by_channel):
        items = sorted(by_channel[channel], key=lambda m: (m.customer_id, m.rule_id))
        out = folder / "messages" / names[channel]
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
        if not items:
            counts[channel] = 0
            continue
        rows = [(m.send_at, m.customer_id, m.customer_name, m.address, m.template,
                 CATEGORY_LABELS.get(m.category, m.category), m.subject, m.body, m.rule_id, m.key) for m in items]
        write_workbook(out / "messages.xlsx", [Sheet(channel, MESSAGE_COLUMNS, rows)])
        counts[channel] = len(items)
    return counts


RECALLS_NAME = "messages/recalls.jsonl"


def write_recalls(folder: Path, recalls: list[Any]) -> None:
    """messages/recalls.jsonl for the sending system: messages earlier runs issued ahead that must not
    be sent after all (``engine.guards.find_recalls``), one JSON object per line, by customer, send
    time and key. Written only when there are some. Ids only: no address, no text."""
    if not recalls:
        return
    (folder / "messages").mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / RECALLS_NAME, (
        {"key": r.key, "customer_id": r.customer_id, "channel": r.channel, "template": r.template, "category": r.category,
         "rule_id": r.rule_id, "send_at": r.send_at, "issued_by": r.issued_by, "guard": r.guard, "reason": r.reason}
        for r in recalls))


def customer_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> list[tuple]:
    """The cells of customers.xlsx: one tuple per customer row, in ``columns`` order (key, header, kind)."""
    keys = [key for key, _, _ in columns]
    table = [tuple(map(r.get, keys)) for r in rows]
    yes_no = [i for i, (_, _, kind) in enumerate(columns) if kind == "yesno"]
    if yes_no:  # a yes/no tag reads 是/否, as in the decision tables, not TRUE/FALSE
        for n, row in enumerate(table):
            if any(row[i] is True or row[i] is False for i in yes_no):
                cells = list(row)
                for i in yes_no:
                    if cells[i] is True or cells[i] is False:
                        cells[i] = "是" if cells[i] else "否"
                table[n] = tuple(cells)
    return table


def write_customers(folder: Path, table: list[tuple], columns: list[tuple[str, str, str]]) -> None:
    """customers.xlsx: every customer with its classifications (``table`` from ``customer_table``)."""
    sheet = Sheet("客户分类", [Column(header, kind="text" if kind == "yesno" else kind) for _, header, kind in columns], table)
    write_workbook(folder / "customers.xlsx", [sheet])


REJECT_COLUMNS = [
    Column("文件"),
    Column("工作表"),
    Column("行号", kind="int"),
    Column("列"),
    Column("原始值"),
    Column("处理结果", width=24, wrap=True),
    Column("原因", width=40, wrap=True),
    Column("怎么改", width=50, wrap=True),
    Column("代码"),
    Column("说明", width=60, wrap=True),
]


def write_rejects(folder: Path, rejects: Iterable[Reject]) -> None:
    """rejects.xlsx: per row what the run did with it, why and what to change in the export (in
    Chinese, engine/reject_text.py), then the stable code and the English detail."""
    rows = [
        (r.file, r.sheet, r.row, r.column, None if r.value is None else str(r.value),
         reject_outcome(r), *reject_reason(r), r.code, r.reason)
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
