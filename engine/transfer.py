"""Facts and decisions packed for the trip between the main process and its helpers (engine.parallel).

Pickle takes a dataclass instance apart through ``copyreg``, in Python, one by one; the same field
values as plain tuples are pickled in C: 10,000 customers' facts take 0.6 s instead of 2.2 s to pack
and pickle. So objects travel as tuples in field order and are rebuilt with their class on the other
side; a fact's ``SourceRow`` travels as ``(file, sheet, row)``. The values themselves (dates,
Decimals, dicts of inputs) go as pickle carries them, exactly.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from operator import attrgetter
from typing import Any

from engine.decisions import Firing, Message, Task
from engine.guards import Reschedule, Suppression
from engine.model import Customer, Interaction, Order, SourceRow

_SOURCE = attrgetter("file", "sheet", "row")


class TupleCodec:
    """Takes objects of one dataclass apart into tuples (field order) and builds them again."""

    def __init__(self, cls: type, source_row: bool = False):
        self.cls = cls
        names = [f.name for f in fields(cls)]
        # A fact's SourceRow would pickle through copyreg: it travels as its three values, beside.
        self.source_at = names.index("source") if source_row else None
        if source_row:
            names.remove("source")
        self.values = attrgetter(*names)

    def pack(self, objs: list) -> tuple[list[tuple], list[tuple] | None]:
        rows = list(map(self.values, objs))
        if self.source_at is None:
            return rows, None
        return rows, [_SOURCE(obj.source) for obj in objs]

    def unpack(self, packed: tuple[list[tuple], list[tuple] | None]) -> list:
        rows, sources = packed
        cls, at = self.cls, self.source_at
        if at is None:
            return [cls(*row) for row in rows]
        return [cls(*row[:at], SourceRow(*source), *row[at:]) for row, source in zip(rows, sources)]


_CUSTOMERS, INTERACTIONS, _ORDERS = (TupleCodec(cls, source_row=True) for cls in (Customer, Interaction, Order))
_TASKS, _MESSAGES, _FIRINGS = TupleCodec(Task), TupleCodec(Message), TupleCodec(Firing)
_SUPPRESSED, _RESCHEDULED = TupleCodec(Suppression), TupleCodec(Reschedule)


def pack_facts(customers: list[Customer], interactions: list[Interaction], orders: list[Order]) -> tuple:
    return _CUSTOMERS.pack(customers), INTERACTIONS.pack(interactions), _ORDERS.pack(orders)


def unpack_facts(packed: tuple) -> tuple[list[Customer], list[Interaction], list[Order]]:
    customers, interactions, orders = packed
    return _CUSTOMERS.unpack(customers), INTERACTIONS.unpack(interactions), _ORDERS.unpack(orders)


DECISION_KINDS = ("rows", "tasks", "messages", "firings")
# Lists sent in parts: customer rows (dicts, or the tuples of customers.xlsx), the columns of
# customers.xlsx, the task sheets' contact cells ((客户编号, cells) pairs), ledger history
# (((rule id, 客户编号), (date, count)) pairs) and the still-open tasks' origins ((key, cells) pairs)
# go as they are.
_PART_CODECS = {"rows": None, "columns": None, "contacts": None, "history": None, "origins": None, "tasks": _TASKS,
                "open_tasks": _TASKS, "messages": _MESSAGES, "firings": _FIRINGS, "suppressed": _SUPPRESSED,
                "rescheduled": _RESCHEDULED}


def pack_part(kind: str, items: list) -> Any:
    codec = _PART_CODECS[kind]
    return items if codec is None else codec.pack(items)


def unpack_part(kind: str, packed: Any) -> list:
    codec = _PART_CODECS[kind]
    return packed if codec is None else codec.unpack(packed)


def drain_decisions(rows: list[dict[str, Any]], tasks: list[Task], messages: list[Message], firings: list[Firing],
                    size: int) -> Iterator[tuple[str, Any]]:
    """``(kind, packed part)`` of at most ``size`` items each, kinds in ``DECISION_KINDS`` order. Each
    part is taken out of its list as it is packed: the sender frees it while the receiver builds its
    copy, so that the two processes do not hold all of it twice at the same time."""
    for kind, items in zip(DECISION_KINDS, (rows, tasks, messages, firings)):
        while items:
            part = items[:size]
            del items[:size]
            yield kind, pack_part(kind, part)
