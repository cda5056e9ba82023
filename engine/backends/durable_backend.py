"""The durable_rules backend: the same intermediate form, evaluated by durable_rules' Rete engine.

Each ``RuleSet`` becomes one durable_rules ruleset, written in its JSON form (the form
``durable.lang`` produces) and registered with a ``durable.engine.Host``. A customer's features
become one fact; every rule whose condition holds records its index, and our code (not durable_rules)
applies the hit policy afterwards, exactly as for the default backend.

How a condition is translated (details and the reasons in docs/durable.md):

* The condition is rewritten into negation normal form: ``not`` is pushed down to the tests, because
  durable_rules has no negation of an arbitrary test. Each test carries *guards*, the facts that must
  hold for its values to be non-null (``$ex`` of every attribute it reads, divisor not zero). Our
  null rules follow from that: a test with a null value is false, its negation true.
* A null value is a missing attribute (durable_rules treats an attribute set to JSON null as present).
* Dates become day numbers (``date.toordinal()``); ``days_since(d)`` is ``as_of - d`` in durable
  arithmetic. Numbers, text and booleans are passed as they are.
* durable_rules wants a fact attribute on the left of every test. When both sides are computed
  (``a + b > c * 2``) the test is written ``0 op (right - left)`` against the constant attribute
  ``_zero``; for finite numbers the sign of a difference is exact, so the result is the same.
* Functions other than days_since/days_until, ``%``, and text joined with ``+`` are pre-computed per
  customer by our function table into an extra attribute (``d0``, ``d1``, ...).
* Lists (``x in some_list_field``) use ``$iany``/``$iall``; ``lK_ok`` marks a list that is not null.

durable_rules' own issues are designed around: actions only record a match (an exception inside an
action is swallowed, issues #58/#305 — we check the state for one anyway); a catch-all rule makes
every fact "handled" (a fact no rule matches raises MessageNotHandledException, #286, and leaves the
session in a state where deleting it crashes); facts go in batches of at most ``BATCH_SIZE`` and the
session is deleted after each batch (spurious MessageObservedException near 100K facts, #376); no
background dispatch threads (they could take an action while we run the batch).

Values durable_rules cannot take exactly (see ``_Encoder``) raise ``durable-unsupported-value``
rather than give a different answer.
"""
from __future__ import annotations

import itertools
import json
import math
import operator
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterable

from engine import expr
from engine.errors import EngineError, Problem
from engine.expr.ast import (ARITHMETIC_OPS, Between, Binary, BoolOp, Call, Const, In, IsNull, Name, Node,
                             Unary)
from engine.expr.functions import FUNCTIONS
from engine.expr.lexer import locate
from engine.expr.render import to_source, value_text
from engine.policy.model import Rule, RuleSet

# Facts posted at once. Far below the ~100K facts near which durable_rules misreports facts as
# already observed (#376), and big enough that posting costs little per fact.
BATCH_SIZE = 500

# durable_rules compiles nested $and/$or into an expression sequence of at most 31 entries
# (ERR_EXPRESSION_LIMIT_EXCEEDED, code 113; about 14 nested groups). Conditions with more groups
# are split into one durable rule per alternative (their matches are merged).
MAX_GROUPS = 10
MAX_ALTERNATIVES = 256

# Integers beyond this lose precision in durable_rules' doubles and overflow its C longs sooner.
MAX_EXACT_INT = 2 ** 53

INSTALL_HELP_ZH = ("安装：pip install 'crm-policy-engine[durable]'（durable-rules 2.0.28 没有适合当前 Python 的 wheel，"
                   "要从源码编译：需要 C 编译器 gcc 和 Python 头文件，如 apt-get install gcc python3-dev）")
INSTALL_HELP = ("install it with: pip install 'crm-policy-engine[durable]' (durable-rules 2.0.28 has no wheel for "
                "current Pythons and builds from source: it needs a C compiler (gcc) and the Python headers, "
                "e.g. apt-get install gcc python3-dev)")

# Text that JSON writes with an escape is compared by durable_rules in its escaped form, so its order
# (< <= > >=) can differ from ours; equality is unaffected. Lone surrogates cannot be encoded at all.
_ESCAPED_CHARS = re.compile(r'["\\\x00-\x1f]')
_SURROGATES = re.compile("[\ud800-\udfff]")


# -- predicates over a fact (the durable_rules side) ------------------------------------------------

@dataclass(frozen=True, eq=False)
class Truth:
    value: bool


@dataclass(frozen=True, eq=False)
class Exists:
    attr: str


@dataclass(frozen=True, eq=False)
class Missing:
    attr: str


@dataclass(frozen=True, eq=False)
class Test:
    """``attr op rhs``; exact only where the guards it is combined with hold."""

    op: str  # "$eq" "$neq" "$lt" "$lte" "$gt" "$gte"
    attr: str
    rhs: Any  # a JSON constant, {"$m": attr} or a durable arithmetic expression


@dataclass(frozen=True, eq=False)
class AnyItem:
    """Some item of the list attribute equals rhs (the list attribute must exist)."""

    attr: str
    rhs: Any


@dataclass(frozen=True, eq=False)
class AllItemsDiffer:
    """Every item of the list attribute differs from rhs (the list attribute must exist)."""

    attr: str
    rhs: Any


@dataclass(frozen=True, eq=False)
class All:
    items: tuple


@dataclass(frozen=True, eq=False)
class AnyOf:
    items: tuple


TRUE = Truth(True)
FALSE = Truth(False)

_INVERSE = {"$eq": "$neq", "$neq": "$eq", "$lt": "$gte", "$gte": "$lt", "$gt": "$lte", "$lte": "$gt"}
_SWAPPED = {"$eq": "$eq", "$neq": "$neq", "$lt": "$gt", "$gt": "$lt", "$lte": "$gte", "$gte": "$lte"}
_OPS = {"==": "$eq", "!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_ORDERING = ("$lt", "$lte", "$gt", "$gte")
_PY_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
               ">=": operator.ge}


def negate(p: Any) -> Any:
    """The complement of a predicate. Tests flip their operator: right wherever their guards hold,
    and every test sits in an All with its guards, so the complement of the whole is exact."""
    if isinstance(p, Truth):
        return Truth(not p.value)
    if isinstance(p, Exists):
        return Missing(p.attr)
    if isinstance(p, Missing):
        return Exists(p.attr)
    if isinstance(p, Test):
        return Test(_INVERSE[p.op], p.attr, p.rhs)
    if isinstance(p, AnyItem):
        return AllItemsDiffer(p.attr, p.rhs)
    if isinstance(p, AllItemsDiffer):
        return AnyItem(p.attr, p.rhs)
    if isinstance(p, All):
        return any_of(*(negate(i) for i in p.items))
    if isinstance(p, AnyOf):
        return all_of(*(negate(i) for i in p.items))
    raise TypeError(p)


def to_json(p: Any) -> Any:
    """The durable_rules JSON form of a predicate (as ``durable.lang`` writes it)."""
    if isinstance(p, Truth):
        # Only reached inside a condition that was not simplified away; "_n" is on every fact.
        return {"$ex": {"_n": 1}} if p.value else {"$nex": {"_n": 1}}
    if isinstance(p, Exists):
        return {"$ex": {p.attr: 1}}
    if isinstance(p, Missing):
        return {"$nex": {p.attr: 1}}
    if isinstance(p, Test):
        return {p.attr: p.rhs} if p.op == "$eq" else {p.op: {p.attr: p.rhs}}
    if isinstance(p, AnyItem):
        return {"$iany": {p.attr: {"$i": p.rhs}}}
    if isinstance(p, AllItemsDiffer):
        return {"$iall": {p.attr: {"$neq": {"$i": p.rhs}}}}
    if isinstance(p, All):
        return {"$and": [to_json(i) for i in p.items]}
    if isinstance(p, AnyOf):
        return {"$or": [to_json(i) for i in p.items]}
    raise TypeError(p)


def _key(p: Any) -> str:
    return json.dumps(to_json(p), sort_keys=True, ensure_ascii=False)


def _combine(kind: type, items: Iterable[Any]) -> Any:
    unit, zero = (TRUE, FALSE) if kind is All else (FALSE, TRUE)
    flat: list[Any] = []
    seen: set[str] = set()
    for item in items:
        parts = item.items if isinstance(item, kind) else (item,)
        for part in parts:
            if isinstance(part, Truth):
                if part.value == zero.value:
                    return zero
                continue  # the unit changes nothing
            k = _key(part)
            if k not in seen:  # guards repeat a lot: keep each once
                seen.add(k)
                flat.append(part)
    if kind is All:
        # Inside "a and (... or ...)", the alternatives need not test a again: fewer nested groups.
        known = {_key(p) for p in flat if not isinstance(p, (All, AnyOf))}
        pruned = [_assuming(p, known) if isinstance(p, AnyOf) else p for p in flat]
        if any(isinstance(p, Truth) for p in pruned):
            return _combine(All, pruned)
        flat = pruned
    if not flat:
        return unit
    if len(flat) == 1:
        return flat[0]
    return kind(tuple(flat))


def _assuming(p: AnyOf, known: set[str]) -> Any:
    """``p`` simplified where the atoms in ``known`` hold."""
    alternatives = []
    for item in p.items:
        if isinstance(item, All):
            item = all_of(*(i for i in item.items if _key(i) not in known))
        elif _key(item) in known:
            item = TRUE
        alternatives.append(item)
    return any_of(*alternatives)


def all_of(*items: Any) -> Any:
    return _combine(All, items)


def any_of(*items: Any) -> Any:
    return _combine(AnyOf, items)


def _groups(p: Any) -> int:
    if isinstance(p, (All, AnyOf)):
        return 1 + sum(_groups(i) for i in p.items)
    return 0


class TooManyAlternatives(Exception):
    pass


def split_alternatives(p: Any) -> list[Any]:
    """Alternatives whose "or" is ``p``, each small enough for durable_rules (see MAX_GROUPS).
    Raises TooManyAlternatives past MAX_ALTERNATIVES."""
    out: list[Any] = []
    _split(p, out)
    return out


def _split(p: Any, out: list[Any]) -> None:
    if _groups(p) <= MAX_GROUPS:
        out.append(p)
        if len(out) > MAX_ALTERNATIVES:
            raise TooManyAlternatives()
        return
    if isinstance(p, AnyOf):
        for item in p.items:
            _split(item, out)
        return
    # An All with an AnyOf inside: distribute over the biggest AnyOf.
    inner = max((i for i in p.items if isinstance(i, AnyOf)), key=_groups)
    rest = [i for i in p.items if i is not inner]
    for alt in inner.items:
        _split(all_of(*rest, alt), out)


# -- values -----------------------------------------------------------------------------------------

class _Null:
    """A value that is null whatever the customer (e.g. the constant null, or ``x + null``)."""


NULL = _Null()
_NO_CONST = object()


@dataclass(frozen=True, eq=False)
class Value:
    rhs: Any  # how durable_rules reads it on the right of a test
    guards: tuple  # predicates that hold exactly when the value is not null
    attr: str | None = None  # set when the value is a plain fact attribute
    const: Any = _NO_CONST  # set when the value is a constant


@dataclass(frozen=True, eq=False)
class PredicateValue:
    """A true/false result used as a value, e.g. ``(a > 1) == flag``; never null."""

    pos: Any
    neg: Any


_PREDICATE_NODES = (BoolOp, In, Between, IsNull)


def _is_predicate(node: Node) -> bool:
    if isinstance(node, _PREDICATE_NODES):
        return True
    if isinstance(node, Unary) and node.op == "not":
        return True
    return isinstance(node, Binary) and node.op not in ARITHMETIC_OPS


def _is_constant(node: Node) -> bool:
    """No names and no as-of date: the value is the same for every customer."""
    for n in node.walk():
        if isinstance(n, Name):
            return False
        if isinstance(n, Call) and (n.func not in FUNCTIONS or FUNCTIONS[n.func].needs_as_of):
            return False
    return True


class UnsupportedError(EngineError):
    """A condition durable_rules cannot express (code ``durable-unsupported``)."""


# -- translation ------------------------------------------------------------------------------------

@dataclass
class Translation:
    """A rule set in durable_rules terms, plus what a fact must carry."""

    ruleset: RuleSet
    alternatives: list[list[Any]]  # per rule: predicates, any of which makes the rule match
    scalars: dict[str, str]  # feature name -> fact attribute
    lists: dict[str, str]  # feature name -> list attribute (with "<attr>_ok" when not null)
    derived: list[tuple[str, Callable[[Any], Any], Node]]  # pre-computed attribute, how, from what
    ordered: set[str]  # attributes compared with < <= > >= (text there must not need JSON escapes)
    truth: set[str]  # attributes used as a condition on their own (must hold true/false)
    calculated: set[str]  # attributes used in durable arithmetic (must hold numbers or dates)
    valued: set[str]  # attributes whose value is read (the others are only tested for null)


class _Translator:
    def __init__(self, ruleset: RuleSet, schema: dict[str, Any] | None = None):
        self.ruleset = ruleset
        self.schema = schema  # name -> engine.expr type, when known
        self.scalars: dict[str, str] = {}
        self.lists: dict[str, str] = {}
        self.derived: list[tuple[str, Callable[[Any], Any], Node]] = []
        self.derived_by_key: dict[str, str] = {}
        self.ordered: set[str] = set()
        self.truth: set[str] = set()
        self.calculated: set[str] = set()
        self.valued: set[str] = set()  # attributes whose value is read, not only tested for null
        self.rule: Rule | None = None

    # -- errors ---------------------------------------------------------------------------------

    def unsupported(self, node: Node, zh: str, en: str, fix: str | None = None) -> UnsupportedError:
        """What durable_rules cannot express, said in Chinese (``zh``) and English (``en``)."""
        rule = self.rule
        origin = getattr(rule.condition, "origin", None) if rule else None
        location = locate(origin, node.line, node.col) if origin else (rule.location if rule else self.ruleset.location)
        who_zh, who = (f"规则 {rule.rule_id}：", f"rule {rule.rule_id}: ") if rule else ("", "")
        return UnsupportedError(Problem(
            code="durable-unsupported", location=location,
            message=f"{who_zh}{zh}——durable_rules 引擎表达不了 / {who}{en} — the durable_rules engine cannot express this",
            fix=fix or "改写这个条件，或用默认引擎（--engine python） / rewrite the condition, or use the default engine (--engine python)"))

    # -- attributes -----------------------------------------------------------------------------

    def scalar_attr(self, name: str) -> str:
        if name not in self.scalars:
            self.scalars[name] = f"a{len(self.scalars)}"
        return self.scalars[name]

    def list_attr(self, name: str) -> str:
        if name not in self.lists:
            self.lists[name] = f"l{len(self.lists)}"
        return self.lists[name]

    def precomputed(self, node: Node) -> Value:
        """``node`` computed per customer by our own function table, as an extra attribute."""
        key = json.dumps(node.to_dict(), sort_keys=True, ensure_ascii=False, default=str)
        attr = self.derived_by_key.get(key)
        if attr is None:
            attr = f"d{len(self.derived)}"
            origin = getattr(self.rule.condition, "origin", None) if self.rule else None
            self.derived.append((attr, expr.compile_expr(node, origin), node))
            self.derived_by_key[key] = attr
        return Value(rhs={"$m": attr}, guards=(Exists(attr),), attr=attr)

    # -- constants ------------------------------------------------------------------------------

    def fold(self, node: Node) -> Any:
        try:
            return expr.compile_expr(node)({})
        except EngineError as exc:
            raise self.unsupported(node, f"{to_source(node)} 无法计算（{exc.problems[0].message}）",
                                   f"{to_source(node)} cannot be computed") from None

    def const_value(self, node: Node, value: Any) -> Value | _Null:
        if value is None:
            return NULL
        return Value(rhs=self.json_constant(node, value), guards=(), const=value)

    def json_constant(self, node: Node, value: Any) -> Any:
        problem = constant_problem(value)
        if problem:
            shown, source = value_text(value), to_source(node)
            inside = ("", "") if source == shown else (f"（{source} 里）", f" in {source}")  # 1e-05 is its own source
            raise self.unsupported(node, f"常量 {shown}{inside[0]}：{problem[0]}", f"the constant {shown}{inside[1]}: {problem[1]}")
        return _encode_scalar(value)

    # -- values ---------------------------------------------------------------------------------

    def operand(self, node: Node) -> Value | PredicateValue | _Null:
        if _is_constant(node):
            return self.const_value(node, self.fold(node))
        if _is_predicate(node):
            return PredicateValue(self.pred(node, True), self.pred(node, False))
        return self.value(node)

    def value(self, node: Node) -> Value | _Null:
        if _is_constant(node):
            return self.const_value(node, self.fold(node))
        if isinstance(node, Name):
            attr = self.scalar_attr(node.name)
            return Value(rhs={"$m": attr}, guards=(Exists(attr),), attr=attr)
        if _is_predicate(node):
            raise self.unsupported(node, f"是/否的结果用在了计算里（{to_source(node)}）",
                                   f"a true/false result used in a calculation ({to_source(node)})")
        if isinstance(node, Binary):
            return self.arithmetic(node)
        if isinstance(node, Unary):  # unary minus: 0 - x
            v = self.value(node.operand)
            if v is NULL:
                return NULL
            self.in_arithmetic(v)
            return Value(rhs={"$sub": {"$l": 0, "$r": v.rhs}}, guards=v.guards)
        if isinstance(node, Call):
            return self.call(node)
        raise self.unsupported(node, f"写法 {to_source(node)}（{type(node).__name__}）", f"{type(node).__name__} {to_source(node)}")

    def arithmetic(self, node: Binary) -> Value | _Null:
        if node.op == "%":
            return self.precomputed(node)  # durable_rules has + - * / only
        left, right = self.value(node.left), self.value(node.right)
        if left is NULL or right is NULL:
            return NULL  # arithmetic with null is null
        if node.op == "+" and self.may_be_text(node.left) and self.may_be_text(node.right):
            # Possibly joining text, which durable_rules cannot do (it adds numbers only).
            return self.precomputed(node)
        self.in_arithmetic(left, right)
        guards = left.guards + right.guards
        if node.op == "/":
            if right.const is not _NO_CONST:
                if right.const == 0:
                    return NULL  # division by zero is null
            elif right.attr is not None:
                guards += (Test("$neq", right.attr, 0),)
            else:
                guards += (Test("$neq", "_zero", right.rhs),)
            # x * 1.0 first: durable_rules divides two integers as integers (7 / 2 = 3). A constant
            # numerator becomes a float here: durable_rules gets a product of two constants wrong
            # (1 == 1 / n was false for n = 1).
            if type(left.const) in (int, float):
                numerator = float(left.const)
            else:
                numerator = {"$mul": {"$l": left.rhs, "$r": 1.0}}
            return Value(rhs={"$div": {"$l": numerator, "$r": right.rhs}}, guards=guards)
        op = {"+": "$add", "-": "$sub", "*": "$mul"}[node.op]
        return Value(rhs={op: {"$l": left.rhs, "$r": right.rhs}}, guards=guards)

    def may_be_text(self, node: Node) -> bool:
        """Could ``node`` be text? Names are, unless the schema (when given) says otherwise."""
        if isinstance(node, Const):
            return isinstance(node.value, str)
        if isinstance(node, Name):
            if self.schema is None:
                return True
            t = self.schema.get(node.name)
            return t is None or t.name in ("string", "any", "null")
        if isinstance(node, Binary):
            return node.op == "+" and self.may_be_text(node.left) and self.may_be_text(node.right)
        if isinstance(node, Call):
            return node.func in ("coalesce", "min", "max") and any(self.may_be_text(a) for a in node.args)
        return False  # unary minus, predicates

    def in_arithmetic(self, *values: Value) -> None:
        # durable_rules cannot add text (Python joins it): the encoder refuses text in these.
        self.calculated.update(v.attr for v in values if v.attr is not None)
        self.valued.update(v.attr for v in values if v.attr is not None)

    def call(self, node: Call) -> Value | _Null:
        if node.func in ("days_since", "days_until") and len(node.args) == 1:
            # Dates are day numbers on the fact, so these are differences of two attributes.
            as_of = self.value(Name("as_of", line=node.line, col=node.col))
            day = self.value(node.args[0])
            if day is NULL:
                return NULL
            left, right = (as_of, day) if node.func == "days_since" else (day, as_of)
            self.in_arithmetic(left, right)
            return Value(rhs={"$sub": {"$l": left.rhs, "$r": right.rhs}}, guards=as_of.guards + day.guards)
        return self.precomputed(node)

    # -- predicates -----------------------------------------------------------------------------

    def condition(self, rule: Rule) -> Any:
        self.rule = rule
        node = rule.condition
        if _is_constant(node):
            return Truth(self.fold(node) is True)  # a rule fires only on exactly true
        return self.pred(node, True)

    def pred(self, node: Node, pos: bool) -> Any:
        """The predicate for ``node`` being true (pos) or for ``not node`` being true."""
        if _is_constant(node):
            truthy = bool(self.fold(node))  # and/or/not treat values by truth, null as false
            return Truth(truthy if pos else not truthy)
        if isinstance(node, Unary) and node.op == "not":
            return self.pred(node.operand, not pos)
        if isinstance(node, BoolOp):
            parts = [self.pred(o, pos) for o in node.operands]
            return all_of(*parts) if (node.op == "and") == pos else any_of(*parts)
        if isinstance(node, Binary) and node.op not in ARITHMETIC_OPS:
            return self.polarity(self.compare(node), pos)
        if isinstance(node, In):
            return self.polarity(self.membership(node), pos)
        if isinstance(node, Between):
            return self.polarity(self.between(node), pos)
        if isinstance(node, IsNull):
            return self.polarity(self.is_null(node), pos)
        # A value used as a condition (a true/false field or function): true only if it is true.
        v = self.value(node)
        if v is NULL:
            return Truth(not pos)
        if v.attr is None:
            raise self.unsupported(node, f"{to_source(node)} 是计算，不是是/否的条件", f"{to_source(node)} is a calculation, not true/false")
        self.truth.add(v.attr)
        self.valued.add(v.attr)
        return self.polarity(all_of(*v.guards, Test("$eq", v.attr, True)), pos)

    @staticmethod
    def polarity(p: Any, pos: bool) -> Any:
        return p if pos else negate(p)

    def test(self, node: Node, left: Value, op: str, right: Value) -> Any:
        """``left op right`` for two non-null values, with their guards."""
        if left.const is not _NO_CONST and right.const is not _NO_CONST:
            try:
                return Truth(bool(_PY_COMPARE[op](_encode_scalar(left.const), _encode_scalar(right.const))))
            except TypeError:
                raise self.unsupported(node, f"比较 {value_text(left.const)} 和 {value_text(right.const)}",
                                       f"comparing {value_text(left.const)} with {value_text(right.const)}") from None
        dop = _OPS[op]
        if left.attr is not None:
            test = Test(dop, left.attr, right.rhs)
        elif right.attr is not None:
            test = Test(_SWAPPED[dop], right.attr, left.rhs)
        else:
            # Both sides computed: 0 op (right - left), with "_zero" (always 0) on the left.
            test = Test(dop, "_zero", {"$sub": {"$l": right.rhs, "$r": left.rhs}})
        attrs = [a for a in (left.attr, right.attr) if a is not None]
        self.valued.update(attrs)
        if dop in _ORDERING:
            self.ordered.update(attrs)
        return all_of(*left.guards, *right.guards, test)

    def compare(self, node: Binary) -> Any:
        left, right = self.operand(node.left), self.operand(node.right)
        if left is NULL or right is NULL:
            return FALSE  # every comparison with null is false
        if isinstance(left, PredicateValue) or isinstance(right, PredicateValue):
            return self.compare_truths(node, left, right)
        return self.test(node, left, node.op, right)

    def compare_truths(self, node: Binary, left: Any, right: Any) -> Any:
        """``p == q`` / ``p != q`` where at least one side is a true/false result."""
        if node.op not in ("==", "!="):
            raise self.unsupported(node, f"比较是/否结果的大小（{to_source(node)}）", f"ordering true/false results ({to_source(node)})")
        if not isinstance(left, PredicateValue):
            left, right = right, left
        equal = node.op == "=="
        if isinstance(right, PredicateValue):
            same = any_of(all_of(left.pos, right.pos), all_of(left.neg, right.neg))
            return same if equal else negate(same)
        if right.const is not _NO_CONST:  # p == true: as Python compares True/False with the constant
            when_true = Truth((True == right.const) == equal)  # noqa: E712 - the comparison is the point
            when_false = Truth((False == right.const) == equal)  # noqa: E712
            return any_of(all_of(left.pos, when_true), all_of(left.neg, when_false))
        if right.attr is None:
            raise self.unsupported(node, f"拿是/否的结果和计算比较（{to_source(node)}）",
                                   f"comparing a true/false result with a calculation ({to_source(node)})")
        op = "$eq" if equal else "$neq"
        self.valued.add(right.attr)
        return any_of(all_of(left.pos, *right.guards, Test(op, right.attr, True)),
                      all_of(left.neg, *right.guards, Test(op, right.attr, False)))

    def plain(self, node: Node) -> Value | _Null:
        v = self.operand(node)
        if isinstance(v, PredicateValue):
            raise self.unsupported(node, f"是/否的结果当作值用（{to_source(node)}）", f"a true/false result used as a value ({to_source(node)})")
        return v

    def membership(self, node: In) -> Any:
        """``x in ...`` or ``x not in ...`` (both false when x is null)."""
        value = self.plain(node.value)
        if value is NULL:
            return FALSE
        if value.attr is not None:
            self.valued.add(value.attr)
        if isinstance(node.options, Name):
            attr = self.list_attr(node.options.name)
            self.valued.add(attr)
            present = (*value.guards, Exists(f"{attr}_ok"))  # a null list contains nothing
            if node.negated:  # an empty list (attribute absent) contains nothing either
                return all_of(*present, any_of(Missing(attr), all_of(Exists(attr), AllItemsDiffer(attr, value.rhs))))
            return all_of(*present, Exists(attr), AnyItem(attr, value.rhs))
        items = [self.plain(o) for o in node.options]
        equal = [self.test(node, value, "==", item) for item in items if item is not NULL]  # null items never match
        if node.negated:
            return all_of(*value.guards, *(negate(e) for e in equal))
        return all_of(*value.guards, any_of(*equal))

    def between(self, node: Between) -> Any:
        value, low, high = self.plain(node.value), self.plain(node.low), self.plain(node.high)
        if NULL in (value, low, high):
            return FALSE
        op = "<=" if node.inclusive else "<"
        return all_of(self.test(node, low, op, value), self.test(node, value, op, high))

    def is_null(self, node: IsNull) -> Any:
        value = self.operand(node.value)
        if value is NULL:
            null = TRUE
        elif isinstance(value, PredicateValue) or value.const is not _NO_CONST:
            null = FALSE  # true/false results and constants are never null
        else:
            null = any_of(*(negate(g) for g in value.guards))
        return negate(null) if node.negated else null


def translate(ruleset: RuleSet, schema: dict[str, Any] | None = None) -> tuple[Translation | None, list[Problem]]:
    """The durable_rules form of a rule set, or the problems that prevent it (one per rule at most).

    ``schema`` (``PolicySet.schema``: name -> type) is optional; with it, ``a + b`` of two number
    fields is added by durable_rules instead of being pre-computed (without it, it could be text)."""
    t = _Translator(ruleset, schema)
    alternatives: list[list[Any]] = []
    problems: list[Problem] = []
    for rule in ruleset.rules:
        try:
            pred = t.condition(rule)
            try:
                alts = [] if isinstance(pred, Truth) and not pred.value else split_alternatives(pred)
            except TooManyAlternatives:
                raise t.unsupported(rule.condition, f"条件展开后超过 {MAX_ALTERNATIVES} 种情形",
                                    f"the condition expands to more than {MAX_ALTERNATIVES} alternatives for durable_rules",
                                    fix="把这条规则拆成几条简单些的规则 / split the rule into several simpler rules") from None
            alternatives.append(alts)
        except UnsupportedError as exc:
            problems.extend(exc.problems)
    if problems:
        return None, problems
    return Translation(ruleset, alternatives, t.scalars, t.lists, t.derived, t.ordered, t.truth, t.calculated, t.valued), []


def check_expressible(ruleset: RuleSet, schema: dict[str, Any] | None = None) -> list[Problem]:
    """Problems (code ``durable-unsupported``) for the rules durable_rules cannot express.

    Pure translation: works without durable_rules installed (``validate --engine durable``)."""
    return translate(ruleset, schema)[1]


# -- values on the fact -----------------------------------------------------------------------------

def constant_problem(value: Any) -> tuple[str, str] | None:
    """Why durable_rules cannot take ``value`` exactly (in Chinese, in English), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if abs(value) > MAX_EXACT_INT:
            return "超过 ±2^53 的整数在那里会失去精度", "whole numbers beyond ±2^53 lose precision there"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return "它没有 JSON 写法", "it has no JSON form"
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            # durable_rules' JSON reader rejects (or, in a fact, crashes on) '1e-05' / '1e+16'.
            return f"它的 JSON 写法 {text} durable_rules 读不了", f"its JSON form {text} cannot be read by durable_rules"
        return None
    if isinstance(value, str):
        if _SURROGATES.search(value):
            return "文字里有不成对的代理字符，无法编码", "text with unpaired surrogate characters cannot be encoded"
        return None
    if isinstance(value, datetime):
        return "不支持带时刻的日期时间（只支持日期）", "date-times (with a time of day) are not supported; dates are"
    if isinstance(value, date):
        return None
    return f"不支持 {type(value).__name__} 类型的值", f"values of type {type(value).__name__} are not supported"


def _encode_scalar(value: Any) -> Any:
    if isinstance(value, date):  # checked: not a datetime
        return value.toordinal()
    return value


class _Encoder:
    """Turns a customer's features into the fact for one translated rule set."""

    def __init__(self, t: Translation):
        self.t = t
        self.scalars = list(t.scalars.items())
        self.lists = list(t.lists.items())

    def error(self, name: str, value: Any, why: tuple[str, str]) -> EngineError:
        """``why``: the reason in Chinese and in English."""
        rs = self.t.ruleset
        return EngineError(Problem(
            code="durable-unsupported-value", location=rs.location,
            message=f"策略 {rs.policy_id}：'{name}' 的值 {value_text(value)} 不能用 durable_rules 准确计算：{why[0]} / "
                    f"policy {rs.policy_id}: the value {value_text(value)} of '{name}' cannot be evaluated by "
                    f"durable_rules exactly: {why[1]}",
            fix="这批数据用默认引擎（--engine python） / use the default engine (--engine python) for this data"))

    def scalar(self, name: str, attr: str, value: Any) -> Any:
        if attr not in self.t.valued:
            return True  # only tested for null (``x is null``): any value will do, even a list
        if isinstance(value, (list, tuple, set, frozenset, dict)):
            raise self.error(name, value, ("应为单个值，却是一个列表", "a list where a single value is expected"))
        problem = constant_problem(value)
        if problem:
            raise self.error(name, value, problem)
        if attr in self.t.truth and not isinstance(value, bool):
            raise self.error(name, value, ("用作条件，但它不是是/否", "used as a condition but it is not true/false"))
        if attr in self.t.calculated and (isinstance(value, (str, bool))):
            raise self.error(name, value, ("用在计算里，但它不是数字或日期", "used in a calculation but it is not a number or a date"))
        if isinstance(value, str) and attr in self.t.ordered and _ESCAPED_CHARS.search(value):
            raise self.error(name, value, ("带引号、反斜杠或控制字符的文字在那里排序不同",
                                           "text with quotes, backslashes or control characters is ordered differently there"))
        return _encode_scalar(value)

    def fact(self, features: dict, n: int) -> dict:
        fact: dict[str, Any] = {"_n": n, "_zero": 0}
        for name, attr in self.scalars:
            value = features.get(name)
            if value is not None:  # null is a missing attribute
                fact[attr] = self.scalar(name, attr, value)
        for name, attr in self.lists:
            items = features.get(name)
            if items is None:
                continue
            if isinstance(items, str) or not isinstance(items, (list, tuple, set, frozenset)):
                raise self.error(name, items, ("不是列表", "not a list"))
            encoded = [self.scalar(name, attr, item) for item in items if item is not None]  # null items never match
            fact[f"{attr}_ok"] = True
            if encoded:
                fact[attr] = encoded
        for attr, compute, node in self.t.derived:
            value = compute(features)
            if value is not None:
                fact[attr] = self.scalar(to_source(node), attr, value)
        return fact


# -- running on durable_rules -----------------------------------------------------------------------

def _load_durable() -> Any:
    try:
        from durable import engine as durable_engine
    except ImportError as exc:
        raise EngineError(Problem(code="durable-unavailable",
                                  message=f"durable_rules 引擎不可用（{exc}）；{INSTALL_HELP_ZH} / "
                                          f"the durable_rules engine is not available ({exc}); {INSTALL_HELP}",
                                  fix="或用默认引擎运行：--engine python / or run with the default engine: --engine python")) from None
    return durable_engine


_host: Any = None
_names = itertools.count()


def _get_host(durable_engine: Any) -> Any:
    """One durable_rules host for the process, without its background dispatch threads: they could
    take a pending action from under a batch we are running; every action here runs synchronously."""
    global _host
    if _host is None:
        class QuietHost(durable_engine.Host):
            def _run(self) -> None:  # Host.__init__ starts the dispatch timers here
                pass
        _host = QuietHost()
    return _host


class DurableRuleSet:
    """A rule set registered with durable_rules; ``matching`` posts a fact and reads the matches."""

    def __init__(self, translation: Translation, durable_engine: Any):
        self.translation = translation
        self.ruleset = translation.ruleset
        self._engine = durable_engine
        self._host = _get_host(durable_engine)
        self._encoder = _Encoder(translation)
        safe_id = re.sub(r"[^A-Za-z0-9_]", "_", self.ruleset.policy_id)
        self.name = f"{safe_id}_{next(_names)}"
        self._hits: list[set[int]] = []
        self._seen = 0
        definition: dict[str, Any] = {}
        for index, alternatives in enumerate(translation.alternatives):
            for k, alt in enumerate(alternatives):
                # "_n" is on every customer fact and not on durable_rules' own state fact, which a
                # test such as $nex would otherwise match (firing again at every state update).
                definition[f"r{index}_{k}"] = {"all": [{"m": to_json(all_of(Exists("_n"), alt))}],
                                               "run": self._recorder(index)}
        # The catch-all rule: every fact is "handled" (see the module docstring) and counted.
        definition["seen"] = {"all": [{"m": {"$ex": {"_n": 1}}}], "run": self._see}
        self.definition = definition
        try:
            self._host.register_rulesets({self.name: definition})
        except Exception as exc:  # durable_rules_engine.error: the C engine refused the ruleset
            raise EngineError(Problem(code="durable-unsupported", location=self.ruleset.location,
                                      message=f"durable_rules 不接受策略 {self.ruleset.policy_id} 的转换结果 / "
                                              f"durable_rules rejected the translation of policy {self.ruleset.policy_id}: {exc}",
                                      fix="用默认引擎（--engine python），并把这个策略文件报告给维护人员 / "
                                          "use the default engine (--engine python) and report this policy file")) from None

    def _recorder(self, index: int) -> Callable[[Any], None]:
        def record(c: Any) -> None:  # keep it trivial: durable_rules swallows exceptions raised here
            self._hits[c.m["_n"]].add(index)
        return record

    def _see(self, c: Any) -> None:
        self._seen += 1

    def matching(self, features: dict) -> list[int]:
        return self._post([features])[0]

    def matching_many(self, features_list: list[dict]) -> list[list[int]]:
        """``matching`` for many customers, posted in batches of BATCH_SIZE facts."""
        out: list[list[int]] = []
        for start in range(0, len(features_list), BATCH_SIZE):
            out.extend(self._post(features_list[start:start + BATCH_SIZE]))
        return out

    def _fail(self, zh: str, en: str) -> EngineError:
        return EngineError(Problem(code="durable-failed", location=self.ruleset.location,
                                   message=f"策略 {self.ruleset.policy_id}：{zh} / policy {self.ruleset.policy_id}: {en}",
                                   fix="用默认引擎（--engine python），并把这次运行的输入和策略报告给维护人员 / "
                                       "use the default engine (--engine python) and report this with the run's inputs and policies"))

    def _post(self, batch: list[dict]) -> list[list[int]]:
        facts = [self._encoder.fact(features, n) for n, features in enumerate(batch)]
        self._hits = [set() for _ in facts]
        self._seen = 0
        try:
            self._host.assert_facts(self.name, facts)
        except self._engine.MessageNotHandledException:
            # Cannot happen with the catch-all rule; if it does, nothing of the batch was stored.
            if len(facts) == 1:
                return [[]]
            raise self._fail("durable_rules 没有处理这一批数据", "durable_rules did not handle a batch of facts (MessageNotHandledException)") from None
        except self._engine.MessageObservedException:
            raise self._fail("durable_rules 说一条数据已经处理过", "durable_rules reported a fact as already observed (its issue #376)") from None
        state = self._host.get_state(self.name)
        self._host.delete_state(self.name)  # facts must not accumulate between batches
        if self._seen != len(facts):
            raise self._fail(f"durable_rules 只对 {len(facts)} 条数据中的 {self._seen} 条运行了规则",
                             f"durable_rules ran the rules on {self._seen} of {len(facts)} facts")
        if "exception" in state:
            raise self._fail("durable_rules 的一个动作出错", f"a durable_rules action failed: {state['exception']}")
        return [sorted(h) for h in self._hits]


class DurableBackend:
    name = "durable"

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self._engine = _load_durable()
        self.schema = schema  # optional PolicySet.schema, see translate()

    def compile(self, ruleset: RuleSet) -> DurableRuleSet:
        translation, problems = translate(ruleset, self.schema)
        if translation is None:
            raise UnsupportedError(problems)
        return DurableRuleSet(translation, self._engine)


# -- cross-check ------------------------------------------------------------------------------------

def diff_evaluations(left: Any, right: Any, left_name: str = "python", right_name: str = "durable",
                     limit: int = 20) -> list[str]:
    """The first ``limit`` differences between two evaluations' decision logs, in readable form."""
    from engine.outputs import firing_record

    def by_customer(evaluation: Any) -> dict[str, dict[tuple[str, str], dict]]:
        out: dict[str, dict[tuple[str, str], dict]] = {}
        for f in evaluation.firings:
            record = firing_record(f)
            out.setdefault(f.customer_id, {})[(f.policy_id, f.rule_id)] = record
        return out

    a, b = by_customer(left), by_customer(right)
    order = list(dict.fromkeys([*a, *b]))  # customers in the order the run met them
    differences: list[str] = []
    for cid in order:
        fa, fb = a.get(cid, {}), b.get(cid, {})
        for key in list(dict.fromkeys([*fa, *fb])):
            policy, rule_id = key
            ra, rb = fa.get(key), fb.get(key)
            who = f"客户 {cid}，规则 {rule_id}（{policy}）", f"customer {cid}, rule {rule_id} ({policy})"
            if ra is None or rb is None:
                fired, missed = (right_name, left_name) if ra is None else (left_name, right_name)
                differences.append(f"{who[0]}：{fired} 触发了，{missed} 没有 / {who[1]}: {fired} fired, {missed} did not")
            elif ra != rb:
                fields = [k for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)]
                shown = "; ".join(f"{k}: {left_name} {ra.get(k)!r}, {right_name} {rb.get(k)!r}" for k in fields)
                differences.append(f"{who[0]}：两个引擎的决策不同 / {who[1]}: the decisions differ ({shown})")
            if len(differences) >= limit:
                return differences
    return differences


def cross_check(policyset: Any, dataset: Any, as_of: date, templates: Any, limit: int = 20) -> list[str]:
    """Evaluate with the default and the durable_rules backend; the first differences (empty if none)."""
    from engine.run import evaluate_dataset

    python = evaluate_dataset(policyset, dataset, as_of, templates, engine="python")
    durable = evaluate_dataset(policyset, dataset, as_of, templates, engine="durable")
    return diff_evaluations(python, durable, "python", "durable", limit)
