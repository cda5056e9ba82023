"""The built-in functions: one table shared by the checker, the evaluator and other backends.

Each entry says which argument types are accepted, the result type, how many arguments it takes,
and how it treats null. Unless ``null_in_null_out`` is False, a function returns null as soon as
any argument is null (the implementation is then only called with non-null values).
``needs_as_of`` functions get the evaluation date (context key ``"as_of"``) as first argument.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Callable

from .types import ANY, BOOL, DATE, DATETIME, LIST, NUMBER, STRING, Type

DATES = (DATE, DATETIME)


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[tuple[Type, ...], ...]  # accepted types per argument; the last one repeats if variadic
    result: Type | None  # None: the common type of the arguments (coalesce, min, max)
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: no upper limit
    summary: str  # one line for users, used in docs and error messages
    needs_as_of: bool = False
    null_in_null_out: bool = True
    pure: bool = True  # result depends only on the arguments: may be computed once when all are constant

    def param_types(self, index: int) -> tuple[Type, ...]:
        return self.params[min(index, len(self.params) - 1)]

    def arity_text(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.min_args == self.max_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"{self.min_args} to {self.max_args} arguments"


def as_date(value: date) -> date:
    """The date part of a date or datetime."""
    return value.date() if isinstance(value, datetime) else value


_DATE_TEXT = re.compile(r"\s*(\d{4})[-/](\d{1,2})[-/](\d{1,2})\s*")


def parse_date_text(text: str) -> date:
    """'2024-05-17' or '2024/5/17' -> date. ValueError if it is not a real calendar date."""
    m = _DATE_TEXT.fullmatch(text)
    if not m:
        raise ValueError(text)
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def _days_since(as_of: date, d: date) -> int:
    return (as_date(as_of) - as_date(d)).days


def _days_until(as_of: date, d: date) -> int:
    return (as_date(d) - as_date(as_of)).days


def _date(value: Any) -> date:
    if isinstance(value, date):
        return as_date(value)
    if not isinstance(value, str):
        raise TypeError("date() needs text")
    return parse_date_text(value)


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _min(*values: Any) -> Any:
    present = [v for v in values if v is not None]  # nulls are skipped, like a spreadsheet's MIN
    return min(present) if present else None


def _max(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


ROUND_PLACES = 10  # round(x, n) takes n from -10 (to ten billions) to 10 decimal places


class ArgumentError(ValueError):
    """A function got an argument it cannot work with; the message says which and what it takes."""


def round_places_problem(digits: Any) -> str | None:
    """Why ``digits`` cannot be round()'s number of decimal places, or None if it can."""
    if isinstance(digits, bool) or not isinstance(digits, (int, float)):
        return None  # a type the checker or the evaluator reports itself
    if not (isinstance(digits, int) or digits.is_integer()) or abs(digits) > ROUND_PLACES:
        shown = int(digits) if isinstance(digits, float) and digits.is_integer() else digits
        return (f"round() takes a whole number of decimal places from -{ROUND_PLACES} to {ROUND_PLACES}, "
                f"not {shown}")
    return None


def _round(x: float, digits: float = 0) -> float | int:
    # Halves round away from zero (2.5 -> 3, 2.675 -> 2.68) as people expect, not to even as
    # Python's round() does. str() first so that 2.675 is not seen as 2.67499999...
    problem = round_places_problem(digits)
    if problem is not None:
        raise ArgumentError(problem)
    n = int(digits)
    value = Decimal(str(x))
    if not value.is_finite():
        return x
    # Enough digits for the whole result: the default context's 28 would make round(1e20, 10)
    # fail with InvalidOperation.
    context = Context(prec=max(28, value.adjusted() + n + 2))
    rounded = value.quantize(Decimal(1).scaleb(-n), rounding=ROUND_HALF_UP, context=context)
    return int(rounded) if n <= 0 else float(rounded)


def _len(value: Any) -> int:
    if not isinstance(value, (str, list, tuple, set, frozenset)):
        raise TypeError("len() needs text or a list")
    return len(value)


def _contains(text: str, part: str) -> bool:
    if not isinstance(text, str) or not isinstance(part, str):
        raise TypeError("contains() needs text")
    return part in text


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("days_since", (DATES,), NUMBER, _days_since, 1, 1,
                 "whole days from the date d to the as-of date (positive if d is in the past)",
                 needs_as_of=True, pure=False),
        Function("days_until", (DATES,), NUMBER, _days_until, 1, 1,
                 "whole days from the as-of date to the date d (positive if d is in the future)",
                 needs_as_of=True, pure=False),
        Function("date", ((STRING, DATE, DATETIME),), DATE, _date, 1, 1,
                 "the date written as 'YYYY-MM-DD' (or 'YYYY/M/D'); of a datetime, its date part"),
        Function("coalesce", ((ANY,),), None, _coalesce, 2, None,
                 "the first argument that is not null (null if all are null)", null_in_null_out=False),
        Function("abs", ((NUMBER,),), NUMBER, abs, 1, 1, "the number without its sign"),
        Function("min", ((NUMBER, STRING, DATE, DATETIME),), None, _min, 2, None,
                 "the smallest argument, skipping nulls (null if all are null)", null_in_null_out=False),
        Function("max", ((NUMBER, STRING, DATE, DATETIME),), None, _max, 2, None,
                 "the largest argument, skipping nulls (null if all are null)", null_in_null_out=False),
        Function("round", ((NUMBER,), (NUMBER,)), NUMBER, _round, 1, 2,
                 "x rounded to n decimal places (default 0); halves round away from zero"),
        Function("len", ((STRING, LIST(ANY)),), NUMBER, _len, 1, 1,
                 "the number of characters in a text, or of items in a list"),
        Function("contains", ((STRING,), (STRING,)), BOOL, _contains, 2, 2,
                 "true if the text contains the part (exact, case-sensitive)"),
        Function("year", (DATES,), NUMBER, lambda d: d.year, 1, 1, "the year of a date, e.g. 2024"),
        Function("month", (DATES,), NUMBER, lambda d: d.month, 1, 1, "the month of a date, 1 to 12"),
        Function("day", (DATES,), NUMBER, lambda d: d.day, 1, 1, "the day of the month of a date, 1 to 31"),
    )
}
