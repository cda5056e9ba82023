"""Value types of the expression language, and the rules for combining them.

A type is a small frozen value: ``NUMBER``, ``STRING``, ``BOOL``, ``DATE``, ``DATETIME``, ``ANY``
(unknown: checked at run time only), ``NULL`` (the type of the literal ``null``, fits anywhere) and
``LIST(T)``. The checker (``check.py``), the function table (``functions.py``) and other backends all
use the helpers here, so the rules live in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class Type:
    name: str  # "number", "string", "bool", "date", "datetime", "any", "null", "list"
    item: "Type | None" = None  # element type, for lists only

    def __str__(self) -> str:
        if self.name == "list":
            return f"list of {self.item}"
        return self.name

    @property
    def is_list(self) -> bool:
        return self.name == "list"


NUMBER = Type("number")
STRING = Type("string")
BOOL = Type("bool")
DATE = Type("date")
DATETIME = Type("datetime")
ANY = Type("any")
NULL = Type("null")


def LIST(item: Type = ANY) -> Type:  # noqa: N802 - reads like the other type constants
    """The type "list of ``item``"."""
    return Type("list", item)


_BY_NAME = {t.name: t for t in (NUMBER, STRING, BOOL, DATE, DATETIME, ANY)}


def parse_type(text: str) -> Type:
    """``"number"``, ``"list of string"``, ... -> Type. For schemas written as text."""
    words = text.strip().lower()
    if words.startswith("list of "):
        return LIST(parse_type(words[len("list of "):]))
    if words == "list":
        return LIST(ANY)
    try:
        return _BY_NAME[words]
    except KeyError:
        raise ValueError(f"unknown type {text!r}; use one of: {', '.join(_BY_NAME)}, list of ...") from None


def type_of_value(value: Any) -> Type:
    """The type of a Python value as the evaluator sees it (``None`` -> NULL)."""
    if value is None:
        return NULL
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, datetime):  # before date: datetime is a subclass of date
        return DATETIME
    if isinstance(value, date):
        return DATE
    if isinstance(value, (list, tuple, set, frozenset)):
        return LIST(ANY)
    return ANY


def is_unknown(t: Type) -> bool:
    """ANY and NULL fit anywhere: the checker cannot object to them."""
    return t.name in ("any", "null")


def is_dateish(t: Type) -> bool:
    return t.name in ("date", "datetime")


def comparable(a: Type, b: Type) -> bool:
    """Can ``a == b`` be meaningful? Dates compare with datetimes (by their date part)."""
    if is_unknown(a) or is_unknown(b):
        return True
    if is_dateish(a) and is_dateish(b):
        return True
    if a.is_list and b.is_list:
        return comparable(a.item or ANY, b.item or ANY)
    return a == b


def orderable(a: Type, b: Type) -> bool:
    """Can ``a < b`` be meaningful? Only numbers, strings and dates have an order."""
    ordered = ("number", "string", "date", "datetime", "any", "null")
    return a.name in ordered and b.name in ordered and comparable(a, b)


def accepts(allowed: tuple[Type, ...], actual: Type) -> bool:
    """Is ``actual`` one of ``allowed``? ``LIST(ANY)`` in ``allowed`` means any list."""
    if is_unknown(actual) or ANY in allowed:
        return True
    for t in allowed:
        if t == actual:
            return True
        if t.is_list and actual.is_list and (t.item == ANY or accepts((t.item or ANY,), actual.item or ANY)):
            return True
    return False


def unify(types: list[Type]) -> Type | None:
    """The one type all of ``types`` share (ANY/NULL fit anything); None if they differ."""
    known = [t for t in types if not is_unknown(t)]
    if not known:
        return ANY
    first = known[0]
    for t in known[1:]:
        if t != first:
            if first.is_list and t.is_list:
                item = unify([first.item or ANY, t.item or ANY])
                if item is None:
                    return None
                first = LIST(item)
                continue
            return None
    return first


def arithmetic_result(op: str, left: Type, right: Type) -> Type | None:
    """Result type of ``left op right`` for + - * / %, or None if the combination is not allowed.

    number op number -> number; string + string -> string; date + number, number + date,
    date - number -> date (number = days); date - date -> number (days). Same for datetime.
    """
    lu, ru = is_unknown(left), is_unknown(right)
    if lu and ru:
        return ANY
    if lu or ru:
        other = right if lu else left
        if op in ("*", "/", "%"):
            return NUMBER if other == NUMBER else None
        if op == "+":
            if other == NUMBER:
                return ANY  # could be number + number or date + number
            return other if other in (STRING, DATE, DATETIME) else None
        # "-"
        if other == NUMBER:
            return ANY if lu else NUMBER  # ? - n: date or number; n - ?: only n - n is allowed
        return ANY if is_dateish(other) else None
    if left == NUMBER and right == NUMBER:
        return NUMBER
    if op == "+":
        if left == STRING and right == STRING:
            return STRING
        if is_dateish(left) and right == NUMBER:
            return left
        if left == NUMBER and is_dateish(right):
            return right
        return None
    if op == "-":
        if is_dateish(left) and right == NUMBER:
            return left
        if is_dateish(left) and is_dateish(right):
            return NUMBER
    return None
