"""Facts and decisions packed for the trip between the main process and its helpers (engine.parallel).

Pickle takes a dataclass instance apart through ``copyreg``, in Python, one by one; the same field
values as plain tuples are pickled in C: 10,000 customers' facts take 0.6 s instead of 2.2 s to pack
and pickle. So decisions travel as tuples in field order and are rebuilt with their class on the other
side. Facts (``FactCodec``) travel as columns, one list per field, a ``SourceRow`` as its three
columns; and a column of dates or datetimes as their ordinals or the bytes pickle keeps of each,
which pickle in one piece: pickle reduces each date or datetime through a call, ~1 µs apiece, over
half the cost of the facts. The values arrive exactly as they were (a datetime's ``fold`` too).
"""
from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import fields
from datetime import date, datetime
from operator import attrgetter
from typing import Any

from engine.decisions import Firing, Message, Task
from engine.guards import Reschedule, Suppression
from engine.model import Customer, Interaction, Order, source_rows


class TupleCodec:
    """Takes objects of one dataclass apart into tuples (field order) and builds them again."""

    def __init__(self, cls: type):
        self.cls = cls
        self.values = attrgetter(*[f.name for f in fields(cls)])

    def pack(self, objs: list) -> list[tuple]:
        return list(map(self.values, objs))

    def unpack(self, rows: list[tuple]) -> list:
        cls = self.cls
        return [cls(*row) for row in rows]


class FactCodec:
    """Takes facts of one class (Customer, Interaction, Order) apart into columns and builds them again."""

    def __init__(self, cls: type):
        self.cls = cls
        self.names = [f.name for f in fields(cls)]
        self.source_at = self.names.index("source")

    def pack(self, objs: list) -> tuple[int, list, tuple[list, list, list]]:
        columns = [_encode(list(map(attrgetter(name), objs))) for name in self.names if name != "source"]
        sources = list(map(_SOURCE, objs))
        return len(objs), columns, (list(map(_FILE, sources)), list(map(_SHEET, sources)), list(map(_ROW, sources)))

    def unpack(self, packed: tuple[int, list, tuple[list, list, list]]) -> list:
        n, columns, (files, sheets, rows) = packed
        values = list(map(_decode, columns))
        values.insert(self.source_at, source_rows(n, files, sheets, rows))
        return list(map(self.cls, *values))


_SOURCE, _FILE, _SHEET, _ROW, _TZINFO = (attrgetter(name) for name in ("source", "file", "sheet", "row", "tzinfo"))
_DATES, _DATETIMES = "dates", "datetimes"
_STATE_BYTES = 10  # a naive datetime's state as pickle keeps it: date, time and fold
_NO_DATETIME = bytes(_STATE_BYTES)  # for None (month 0: no datetime's state)


def _encode(column: list) -> Any:
    """``column`` as it travels: a list of values, or a tagged encoding of dates or datetimes (or None)."""
    kinds = set(map(type, column)) - {type(None)}
    if kinds == {datetime} and not any(map(_TZINFO, filter(None, column))):
        # The state pickle itself keeps of each (its __reduce_ex__; protocol 4+ keeps fold), joined.
        states = b"".join([_NO_DATETIME if v is None else v.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[1][0] for v in column])
        if len(states) == _STATE_BYTES * len(column):
            return _DATETIMES, states
    elif kinds == {date}:
        return _DATES, [None if v is None else v.toordinal() for v in column]
    return column


def _decode(column: Any) -> list:
    if type(column) is not tuple:
        return column
    kind, payload = column
    if kind == _DATES:
        return [None if d is None else date.fromordinal(d) for d in payload]
    # datetime(state) is how pickle builds a datetime again from that state.
    return [None if (state := payload[i:i + _STATE_BYTES]) == _NO_DATETIME else datetime(state)
            for i in range(0, len(payload), _STATE_BYTES)]


_CUSTOMERS, INTERACTIONS, _ORDERS = FactCodec(Customer), FactCodec(Interaction), FactCodec(Order)
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
