"""Run an expression against one context (a mapping of names to values), fast.

``compile_expr(node)`` turns the tree into nested Python closures once; calling the result per
customer does no parsing, no dict building and no ``eval``. Constants (including ``date('...')``)
are computed at compile time.

Null rules (``None`` is null; a name missing from the context is null):

* Arithmetic (+ - * / %, unary -) with a null operand gives null. Division or ``%`` by zero gives null.
* A comparison (== != < <= > >=) with a null operand is false: both ``x == null`` and
  ``x != null`` are false. Use ``x is null`` / ``x is not null``.
* ``in``, ``not in`` and ``between`` with a null value are false (so is ``in`` a null list, and
  ``between`` a null bound). A null item in a list never matches.
* ``not``, ``and``, ``or`` use plain two-valued logic: a null reaching them counts as false, so
  ``not (x > 3)`` is true when x is null. ``and``/``or`` short-circuit and always give true/false.
* Functions give null when an argument is null, except ``coalesce`` (first non-null), ``min``
  and ``max`` (skip nulls; null only if all are null).

Dates: a date compares with a date, a datetime with a datetime; a date with a datetime compares
the date part. ``d1 - d2`` is the number of whole days between their dates; ``d + n`` and
``d - n`` move a date by n days. ``days_since``/``days_until`` use the context's ``"as_of"``.

A value of an unexpected type at run time (possible only where the checker saw type ``any``)
raises EvaluationError (code ``eval-type-mismatch``) naming the expression and the values.
"""
from __future__ import annotations

import operator
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping

from ..errors import ExprError, Location, Problem
from .ast import ARITHMETIC_OPS, Between, Binary, BoolOp, Call, Const, In, IsNull, Name, Node, Unary
from .functions import FUNCTIONS, ArgumentError, Function, as_date
from .lexer import locate
from .render import to_source, value_text
from .types import type_of_value

Compiled = Callable[[Mapping[str, Any]], Any]

_NOT_CONST = object()  # marker: the node's value depends on the context

_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge}


class EvaluationError(ExprError):
    """An expression met a value it cannot work with while running (or could not be compiled)."""


def compile_expr(node: Node, location: Location | None = None) -> Compiled:
    """A function ``ctx -> value`` computing ``node``. ``location``: where the text starts, for errors."""
    return _Compiler(location or node.origin).compile(node)


def evaluate(node: Node, ctx: Mapping[str, Any]) -> Any:
    """Compile and run once (convenient for tests and one-off use; compile once for many contexts)."""
    return compile_expr(node)(ctx)


# -- value helpers shared by the closures -------------------------------------------------------

def _same_kind(a: Any, b: Any) -> tuple[Any, Any]:
    """A date against a datetime: compare their date parts."""
    if isinstance(a, datetime):
        if isinstance(b, date) and not isinstance(b, datetime):
            return a.date(), b
    elif isinstance(b, datetime) and isinstance(a, date):
        return a, b.date()
    return a, b


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _move(d: date, days: Any) -> date:
    if not _is_number(days):
        raise TypeError("days must be a number")
    return d + timedelta(days=days)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, date):
        return _move(a, b)
    if isinstance(b, date):
        return _move(b, a)
    if isinstance(a, str) != isinstance(b, str):
        raise TypeError("text + number")
    return a + b


def _sub(a: Any, b: Any) -> Any:
    if isinstance(a, date):
        if isinstance(b, date):
            return (as_date(a) - as_date(b)).days  # whole days between the two dates
        return _move(a, -b if _is_number(b) else b)
    return a - b


def _numbers_only(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        # Python would repeat text ('ab' * 2) or format it ('%s' % x); not meaningful here.
        if not (_is_number(a) and _is_number(b)):
            raise TypeError("numbers only")
        return op(a, b)
    return run


def _div(a: Any, b: Any) -> Any:
    return None if b == 0 else a / b  # division by zero gives null, not an error


def _mod(a: Any, b: Any) -> Any:
    return None if b == 0 else a % b


_ARITHMETIC = {"+": _add, "-": _sub, "*": _numbers_only(operator.mul), "/": _numbers_only(_div),
               "%": _numbers_only(_mod)}


def _kind(value: Any) -> str:
    return f"{value_text(value)} ({type_of_value(value)})"


class _Compiler:
    def __init__(self, location: Location | None):
        self.location = location

    def error(self, node: Node, code: str, message: str) -> EvaluationError:
        return EvaluationError(Problem(code=code, message=message, location=locate(self.location, node.line, node.col)))

    def type_error(self, node: Node, *values: Any) -> EvaluationError:
        shown = ", ".join(_kind(v) for v in values)
        return self.error(node, "eval-type-mismatch", f"cannot compute {to_source(node)} with {shown}")

    # -- constants -------------------------------------------------------------------------------

    def const_value(self, node: Node) -> Any:
        """The value of ``node`` if it does not depend on the context, else _NOT_CONST."""
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Call):
            func = self.function(node)
            if func.pure:
                args = [self.const_value(a) for a in node.args]
                if all(a is not _NOT_CONST for a in args):
                    if func.null_in_null_out and None in args:
                        return None
                    return self.call(node, func, args)  # e.g. date('2024-05-17') once, not per customer
        return _NOT_CONST

    def function(self, node: Call) -> Function:
        func = FUNCTIONS.get(node.func)
        if func is None:
            raise self.error(node, "unknown-function", f"unknown function '{node.func}'")
        n = len(node.args)
        if n < func.min_args or (func.max_args is not None and n > func.max_args):
            raise self.error(node, "wrong-arg-count", f"{func.name}() takes {func.arity_text()}, but {n} given")
        return func

    def call(self, node: Call, func: Function, args: list[Any]) -> Any:
        shown = args[1:] if func.needs_as_of else args  # the as-of date is not something the user wrote
        try:
            return func.impl(*args)
        except ArgumentError as exc:
            raise self.error(node, "eval-bad-argument", f"cannot compute {to_source(node)}: {exc}") from None
        except ValueError:
            if func.name == "date":
                raise self.error(node, "bad-date", f"{value_text(args[0])} is not a valid date in {to_source(node)}")
            raise self.type_error(node, *shown) from None
        except (TypeError, AttributeError, ArithmeticError):  # ArithmeticError: decimal's InvalidOperation, OverflowError
            raise self.type_error(node, *shown) from None

    # -- nodes -----------------------------------------------------------------------------------

    def compile(self, node: Node) -> Compiled:
        value = self.const_value(node)
        if value is not _NOT_CONST:
            return lambda ctx: value
        method = getattr(self, "compile_" + type(node).__name__)
        return method(node)

    def compile_Name(self, node: Name) -> Compiled:
        name = node.name
        return lambda ctx: ctx.get(name)  # missing -> None (null)

    def compile_Unary(self, node: Unary) -> Compiled:
        if node.op == "not" and isinstance(node.operand, Name):
            name = node.operand.name
            return lambda ctx: not ctx.get(name)  # null counts as false, so not null is true
        f = self.compile(node.operand)
        if node.op == "not":
            return lambda ctx: not f(ctx)  # null counts as false, so not null is true

        def negate(ctx: Mapping[str, Any]) -> Any:
            v = f(ctx)
            if v is None:
                return None
            if not _is_number(v):
                raise self.type_error(node, v)
            return -v
        return negate

    def compile_BoolOp(self, node: BoolOp) -> Compiled:
        fs = tuple(self.compile(o) for o in node.operands)
        if node.op == "and":
            if len(fs) == 2:
                a, b = fs
                return lambda ctx: True if a(ctx) and b(ctx) else False

            def all_true(ctx: Mapping[str, Any]) -> bool:
                for f in fs:
                    if not f(ctx):
                        return False
                return True
            return all_true
        if len(fs) == 2:
            a, b = fs
            return lambda ctx: True if a(ctx) or b(ctx) else False

        def any_true(ctx: Mapping[str, Any]) -> bool:
            for f in fs:
                if f(ctx):
                    return True
            return False
        return any_true

    def compile_Binary(self, node: Binary) -> Compiled:
        if node.op in ARITHMETIC_OPS:
            return self.arithmetic(node)
        return self.comparison(node)

    def arithmetic(self, node: Binary) -> Compiled:
        op = _ARITHMETIC[node.op]
        lf, rf = self.compile(node.left), self.compile(node.right)

        def run(ctx: Mapping[str, Any]) -> Any:
            a = lf(ctx)
            if a is None:
                return None
            b = rf(ctx)
            if b is None:
                return None
            try:
                return op(a, b)
            except TypeError:
                raise self.type_error(node, a, b) from None
        return run

    def comparison(self, node: Binary) -> Compiled:
        op = _COMPARE[node.op]
        lf = self.compile(node.left)
        k = self.const_value(node.right)
        if k is None or self.const_value(node.left) is None:
            return lambda ctx: False  # a comparison with null is always false
        if k is not _NOT_CONST:
            # The usual shape, `field >= 50000`: compare against the constant directly. Values of
            # the constant's own kind (ints and floats together) skip the date/datetime adjustment.
            fast = {int, float} if _is_number(k) else {k.__class__}
            if isinstance(node.left, Name):
                # The commonest shape of all, `feature >= 50000`: the name looked up here, not by a
                # closure of its own (one call less per condition per customer).
                name = node.left.name

                def name_with_const(ctx: Mapping[str, Any]) -> bool:
                    a = ctx.get(name)
                    if a is None:
                        return False
                    try:
                        if a.__class__ in fast:
                            return op(a, k)
                        return op(*_same_kind(a, k))
                    except TypeError:
                        raise self.type_error(node, a, k) from None
                return name_with_const

            def with_const(ctx: Mapping[str, Any]) -> bool:
                a = lf(ctx)
                if a is None:
                    return False
                try:
                    if a.__class__ in fast:
                        return op(a, k)
                    return op(*_same_kind(a, k))
                except TypeError:
                    raise self.type_error(node, a, k) from None
            return with_const

        rf = self.compile(node.right)

        def run(ctx: Mapping[str, Any]) -> bool:
            a = lf(ctx)
            if a is None:
                return False
            b = rf(ctx)
            if b is None:
                return False
            try:
                if a.__class__ is b.__class__:
                    return op(a, b)
                return op(*_same_kind(a, b))
            except TypeError:
                raise self.type_error(node, a, b) from None
        return run

    def compile_In(self, node: In) -> Compiled:
        vf = self.compile(node.value)
        negated = node.negated
        if isinstance(node.options, Name):
            container = node.options.name

            def in_name(ctx: Mapping[str, Any]) -> bool:
                v = vf(ctx)
                if v is None:
                    return False
                items = ctx.get(container)
                if items is None:
                    return False
                if isinstance(items, str) or not isinstance(items, (list, tuple, set, frozenset)):
                    raise self.type_error(node, items)
                if not isinstance(v, date):
                    return (v in items) != negated  # null items never equal a non-null value
                for item in items:  # dates: a date matches a datetime on the same day
                    if item is not None:
                        a, b = _same_kind(v, item)
                        if a == b:
                            return not negated
                return negated
            return in_name

        consts = [self.const_value(o) for o in node.options]
        if all(c is not _NOT_CONST for c in consts) and not any(isinstance(c, date) for c in consts):
            # Usual case, `stage in ['签约', '意向']`: a set built once. Null items never match.
            options = frozenset(c for c in consts if c is not None)
            if isinstance(node.value, Name):
                name = node.value.name  # `feature in [...]`: looked up here, as in comparisons

                def name_in_set(ctx: Mapping[str, Any]) -> bool:
                    v = ctx.get(name)
                    if v is None:
                        return False
                    try:
                        return (v in options) != negated
                    except TypeError:  # an unhashable value, e.g. a list
                        raise self.type_error(node, v) from None
                return name_in_set

            def in_set(ctx: Mapping[str, Any]) -> bool:
                v = vf(ctx)
                if v is None:
                    return False
                try:
                    return (v in options) != negated
                except TypeError:  # an unhashable value, e.g. a list
                    raise self.type_error(node, v) from None
            return in_set

        fs = tuple(self.compile(o) for o in node.options)

        def in_list(ctx: Mapping[str, Any]) -> bool:
            v = vf(ctx)
            if v is None:
                return False
            for f in fs:
                item = f(ctx)
                if item is not None:
                    a, b = _same_kind(v, item)
                    if a == b:
                        return not negated
            return negated
        return in_list

    def compile_Between(self, node: Between) -> Compiled:
        vf, lof, hif = self.compile(node.value), self.compile(node.low), self.compile(node.high)
        inclusive = node.inclusive

        def run(ctx: Mapping[str, Any]) -> bool:
            v = vf(ctx)
            if v is None:
                return False
            lo, hi = lof(ctx), hif(ctx)
            if lo is None or hi is None:
                return False
            try:
                v1, lo = _same_kind(v, lo)
                v2, hi = _same_kind(v, hi)
                if inclusive:
                    return lo <= v1 and v2 <= hi
                return lo < v1 and v2 < hi
            except TypeError:
                raise self.type_error(node, v, lo, hi) from None
        return run

    def compile_IsNull(self, node: IsNull) -> Compiled:
        if isinstance(node.value, Name):
            name = node.value.name
            if node.negated:
                return lambda ctx: ctx.get(name) is not None
            return lambda ctx: ctx.get(name) is None
        f = self.compile(node.value)
        if node.negated:
            return lambda ctx: f(ctx) is not None
        return lambda ctx: f(ctx) is None

    def compile_Call(self, node: Call) -> Compiled:
        func = self.function(node)
        fs = tuple(self.compile(a) for a in node.args)
        impl = func.impl
        null_in_null_out = func.null_in_null_out

        if func.needs_as_of and len(fs) == 1 and null_in_null_out:
            (f0,) = fs  # days_since(d), days_until(d): the hot case, without building lists

            def one_arg_as_of(ctx: Mapping[str, Any]) -> Any:
                v = f0(ctx)
                if v is None:
                    return None
                as_of = ctx.get("as_of")
                if as_of is None:
                    raise self.error(node, "missing-as-of",
                                     f"{func.name}() needs the as-of date, but the context has no 'as_of'")
                try:
                    return impl(as_of, v)
                except (TypeError, AttributeError, ValueError):
                    return self.call(node, func, [as_of, v])  # re-run to raise the right EvaluationError
            return one_arg_as_of

        if func.needs_as_of:
            def with_as_of(ctx: Mapping[str, Any]) -> Any:
                args = [f(ctx) for f in fs]
                if null_in_null_out and None in args:
                    return None
                as_of = ctx.get("as_of")
                if as_of is None:
                    raise self.error(node, "missing-as-of",
                                     f"{func.name}() needs the as-of date, but the context has no 'as_of'")
                return self.call(node, func, [as_of, *args])
            return with_as_of

        if len(fs) == 1 and null_in_null_out:
            (f0,) = fs

            def one_arg(ctx: Mapping[str, Any]) -> Any:
                v = f0(ctx)
                if v is None:
                    return None
                try:
                    return impl(v)
                except (TypeError, AttributeError, ValueError):
                    return self.call(node, func, [v])  # re-run to raise the right EvaluationError
            return one_arg

        def run(ctx: Mapping[str, Any]) -> Any:
            args = [f(ctx) for f in fs]
            if null_in_null_out and None in args:
                return None
            return self.call(node, func, args)
        return run
