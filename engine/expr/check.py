"""Type-check an expression against a schema (name -> Type) before it runs on any data.

Finds, in one pass, every unknown name (with a did-you-mean suggestion), unknown function, wrong
number of arguments, type mismatch (e.g. a date compared with a number), comparison with ``null``
(always false: use ``is null``) and invalid ``date('...')`` literal, and raises one ExprError
holding all of them. Problem codes: ``unknown-name``, ``unknown-function``, ``wrong-arg-count``,
``type-mismatch``, ``null-comparison``, ``bad-date``, ``bad-argument``.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from ..errors import ExprError, Location, Problem
from .ast import COMPARISON_OPS, Between, Binary, BoolOp, Call, Const, In, IsNull, Name, Node, Unary
from .functions import _DATE_TEXT, FUNCTIONS, parse_date_text, round_places_problem
from .lexer import locate
from .render import to_source
from .suggestions import did_you_mean, hint
from .types import (ANY, BOOL, DATE, NULL, NUMBER, Type, accepts, arithmetic_result, comparable, is_unknown,
                    orderable, parse_type, type_of_value, unify)


def _constant_number(node: Node) -> float | int | None:
    """The number ``node`` is when it is written as one (``30``, ``-2``), else None."""
    if isinstance(node, Unary) and node.op == "-":
        inner = _constant_number(node.operand)
        return -inner if inner is not None else None
    if isinstance(node, Const) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    return None


def check(node: Node, schema: Mapping[str, Type | str], location: Location | None = None,
          expect: Type | None = None, suggest: Iterable[str] | None = None,
          written_as: Mapping[str, tuple[str, str]] | None = None) -> Type:
    """The type of ``node``; raises ExprError with every problem found.

    ``schema`` gives the type of each name (a Type, or text such as "number" or "list of string").
    ``as_of`` has type date unless the schema says otherwise. ``location`` is where the expression
    starts in the policy file (default: the one ``parse`` recorded). With ``expect`` (e.g. BOOL for a rule condition), a result of
    another type is a problem too. ``suggest``: the names an unknown name's did-you-mean may offer
    (default: the schema's), e.g. also the tags of policies that are checked later; a mapping gives
    where each is set (a tag's table cell or YAML line), which the did-you-mean then names.
    ``written_as``: result name → (the Chinese header a decision table gives it instead, that cell), so
    a rule reading service_team is told the table's row 2 says 服务团队.
    """
    checker = _Checker(schema, location or node.origin, suggest, written_as)
    result = checker.visit(node)
    if expect is not None and not is_unknown(result) and result != expect:
        fix = None
        if expect == BOOL and isinstance(node, Const) and isinstance(node.value, str) and node.value.strip():
            inner = node.value.strip()  # “value_tier == '高' and ...”: the whole condition in quotes
            message = (f"整个条件写在引号里，成了一段文字，不是条件：{inner} / "
                       f"the whole condition is in quotes, which makes it text, not a condition: {inner}")
            fix = f"去掉条件外面的引号，写成 {inner} / remove the quotes around the condition: {inner}"
        elif expect == BOOL:
            message = (f"条件的结果必须是成立或不成立（true/false），但 {to_source(node)} 是{type_zh(result)} / "
                       f"a condition must be true or false, but {to_source(node)} has type {result}")
        else:
            message = (f"这里需要{type_zh(expect)}，但 {to_source(node)} 是{type_zh(result)} / "
                       f"expected a value of type {expect}, but {to_source(node)} has type {result}")
        checker.problem(node, "type-mismatch", message, fix)
    if checker.problems:
        raise ExprError(checker.problems)
    return result


def _types_text(types: tuple[Type, ...]) -> str:
    return " or ".join("list" if t.is_list and t.item == ANY else str(t) for t in types)


_TYPE_ZH = {"number": "数字", "string": "文字", "bool": "是/否", "date": "日期", "datetime": "日期时间",
            "any": "任意值", "null": "空值"}


def type_zh(t: Type) -> str:
    """A type as the Chinese half of a message names it: 数字, 文字, 日期, 文字列表, ..."""
    if t.is_list:
        return "列表" if t.item in (None, ANY) else f"{type_zh(t.item)}列表"
    return _TYPE_ZH.get(t.name, t.name)


def _types_zh(types: tuple[Type, ...]) -> str:
    return "或".join(type_zh(t) for t in types)


def _bad_date_reason(text: str) -> tuple[str, str]:
    """What is wrong with the text of an invalid date('...'), Chinese and English: '：月份 13 不存在'."""
    m = _DATE_TEXT.fullmatch(text)
    if not m:
        return "：写法不对", ": it is not written as year-month-day"
    year, month, day = (int(g) for g in m.groups())
    if not 1 <= month <= 12:
        return f"：月份 {month} 不存在", f": there is no month {month}"
    return f"：{year} 年 {month} 月没有 {day} 日", f": {year}-{month:02d} has no day {day}"


def _compare_fix(left: Node, lt: Type, right: Node, rt: Type) -> str | None:
    """The fix for comparing a number with text written as a number ('14'): drop the quotes; for
    comparing a date with text written as a date ('2026-12-01'): write date('2026-12-01')."""
    for side, other in ((right, lt), (left, rt)):
        if other == DATE and isinstance(side, Const) and isinstance(side.value, str) and _DATE_TEXT.fullmatch(side.value):
            return (f"日期写成 date({to_source(side)}) 而不是 {to_source(side)} / "
                    f"write the date as date({to_source(side)}), not {to_source(side)}")
        if other == NUMBER and isinstance(side, Const) and isinstance(side.value, str):
            try:
                float(side.value)
            except ValueError:
                return None
            return (f"数字不要加引号: 写 {side.value} 而不是 {to_source(side)} / "
                    f"write the number without quotes: {side.value}, not {to_source(side)}")
    return None


def _as_typed(node: Node) -> str:
    """A part of a condition as the author typed it: a text in its own quotes (“value_tier == '低'”),
    not re-quoted with escapes ('value_tier == \\'低\\'')."""
    return node.written if isinstance(node, Const) and node.written else to_source(node)


def written_as_text(name: str, header: str, where: str) -> tuple[str, str]:
    """(message, fix) for a name read that a decision table sets under its Chinese header at ``where``."""
    return (f"没有叫 '{name}' 的字段：{where} 的结果列写的是中文名 '{header}'，是不是它？ / unknown name '{name}' (the result "
            f"column at {where} is headed '{header}' in Chinese: is that it?)",
            f"把 {where} 的 '{header}' 改成 {name} / write {name} instead of '{header}' at {where}")


def set_at_fix(best: str, where: str) -> str:
    """The fix for a name one slip away from a tag set at ``where``: either side may hold the typo."""
    return (f"改成 '{best}'；如果拼错的是 {where} 那边，就改那里 / "
            f"write '{best}', or if the misspelling is at {where}, correct it there")


class _Checker:
    def __init__(self, schema: Mapping[str, Type | str], location: Location | None, suggest: Iterable[str] | None = None,
                 written_as: Mapping[str, tuple[str, str]] | None = None):
        self.schema = {name: parse_type(t) if isinstance(t, str) else t for name, t in schema.items()}
        self.schema.setdefault("as_of", DATE)
        self.suggest = set(self.schema) if suggest is None else set(suggest) | set(self.schema)
        self.set_at = {name: where for name, where in suggest.items() if where} if isinstance(suggest, Mapping) else {}
        self.location = location
        self.written_as = written_as or {}
        self.problems: list[Problem] = []

    def problem(self, node: Node, code: str, message: str, fix: str | None = None) -> None:
        self.problems.append(Problem(code=code, message=message, location=locate(self.location, node.line, node.col),
                                     fix=fix))

    def mismatch(self, node: Node, message: str, fix: str | None = None) -> None:
        self.problem(node, "type-mismatch", message, fix)

    def visit(self, node: Node) -> Type:
        method = getattr(self, "visit_" + type(node).__name__)
        return method(node)

    def visit_Const(self, node: Const) -> Type:
        return type_of_value(node.value)

    def visit_Name(self, node: Name) -> Type:
        if node.name in self.schema:
            return self.schema[node.name]
        if node.name in self.written_as:  # set by a table whose header is its Chinese label
            self.problem(node, "unknown-name", *written_as_text(node.name, *self.written_as[node.name]))
            return ANY
        candidates = self.suggest - {node.name}  # a name known elsewhere is no suggestion for itself
        best = did_you_mean(node.name, candidates)
        if best:
            fix = f"改成 '{best[0]}' / write '{best[0]}'"
        elif not node.name.isascii():  # value_tier == 高: a value written without its quotes
            fix = (f"如果 {node.name} 是一个取值而不是字段，要加引号: '{node.name}'；否则对照字段列表检查拼写 / "
                   f"if {node.name} is a value, not a field, put it in quotes: '{node.name}'; "
                   f"else check the spelling against the list of fields")
        else:
            fix = "对照字段列表检查拼写 / check the spelling against the list of fields"
        guess, guess_en = (f"，是不是 '{best[0]}'？", hint(node.name, candidates)) if best else ("", "")
        if best and best[0] in self.set_at:  # a tag: say which table cell or line sets it
            where = self.set_at[best[0]]
            guess, guess_en = f"，是不是 '{best[0]}'（{where} 设置的）？", f" (did you mean '{best[0]}', set at {where}?)"
            fix = set_at_fix(best[0], where)
        self.problem(node, "unknown-name", f"没有叫 '{node.name}' 的字段{guess} / "
                                           f"unknown name '{node.name}'{guess_en}", fix)
        return ANY  # keeps one misspelling from causing a cascade of type errors

    def visit_Unary(self, node: Unary) -> Type:
        t = self.visit(node.operand)
        if node.op == "not":
            if not (is_unknown(t) or t == BOOL):
                self.mismatch(node, f"'not' 后面要跟一个条件，但 {to_source(node.operand)} 是{type_zh(t)} / "
                                    f"'not' needs a true/false condition, but {to_source(node.operand)} has type {t}")
            return BOOL
        if not (is_unknown(t) or t == NUMBER):
            self.mismatch(node, f"{to_source(node.operand)}（{type_zh(t)}）前面不能加 '-'：只有数字可以是负数 / "
                                f"cannot put '-' before {to_source(node.operand)} ({t}): only numbers can be negative")
        return NUMBER

    def visit_BoolOp(self, node: BoolOp) -> Type:
        for operand in node.operands:
            t = self.visit(operand)
            if not (is_unknown(t) or t == BOOL):
                typed = _as_typed(operand)
                self.mismatch(operand, f"'{node.op}' 连接的两边都要是条件，但 {typed} 是{type_zh(t)} / "
                                       f"'{node.op}' combines true/false conditions, but {typed} has type {t}",
                              f"去掉这段条件外面的引号: {operand.value} / remove the quotes around this part of the condition: "
                              f"{operand.value}" if isinstance(operand, Const) and isinstance(operand.value, str) else None)
        return BOOL

    def visit_Binary(self, node: Binary) -> Type:
        lt, rt = self.visit(node.left), self.visit(node.right)
        left, right = to_source(node.left), to_source(node.right)
        if node.op in COMPARISON_OPS:
            nulls = [isinstance(side, Const) and side.value is None for side in (node.left, node.right)]
            if any(nulls):
                other = right if nulls[0] else left
                fix = {"==": f"改成 {other} is null / write {other} is null",
                       "!=": f"改成 {other} is not null / write {other} is not null"}.get(
                    node.op, "判断有没有值用 'is null' 或 'is not null' / "
                             "use 'is null' or 'is not null' to test for a missing value")
                self.problem(node, "null-comparison",
                             f"{to_source(node)} 永远不成立：和 null 比较总是不成立 / "
                             f"{to_source(node)} is never true: a comparison with null is always false", fix)
            elif not comparable(lt, rt):
                self.mismatch(node, f"{left}（{type_zh(lt)}）不能和 {right}（{type_zh(rt)}）比较 / "
                                    f"cannot compare {left} ({lt}) with {right} ({rt})",
                              _compare_fix(node.left, lt, node.right, rt))
            elif node.op not in ("==", "!=") and not orderable(lt, rt):
                self.mismatch(node, f"{left}（{type_zh(lt)}）和 {right}（{type_zh(rt)}）不能用 '{node.op}' 比大小："
                                    f"只有数字、文字和日期有大小 / "
                                    f"cannot use '{node.op}' with {left} ({lt}) and {right} ({rt}): "
                                    f"only numbers, text and dates have an order")
            return BOOL
        result = arithmetic_result(node.op, lt, rt)
        if result is None:
            self.mismatch(node, f"{left}（{type_zh(lt)}）和 {right}（{type_zh(rt)}）不能做 '{node.op}' 运算 / "
                                f"cannot use '{node.op}' with {left} ({lt}) and {right} ({rt})")
            return ANY
        return result

    def visit_In(self, node: In) -> Type:
        vt = self.visit(node.value)
        value = to_source(node.value)
        if isinstance(node.options, tuple):
            for option in node.options:
                ot = self.visit(option)
                if not comparable(vt, ot):
                    self.mismatch(option, f"{value}（{type_zh(vt)}）不能和 {to_source(option)}（{type_zh(ot)}）比较 / "
                                          f"cannot compare {value} ({vt}) with {to_source(option)} ({ot})",
                                  _compare_fix(node.value, vt, option, ot))
        else:
            ct = self.visit(node.options)
            name = node.options.name
            if not (is_unknown(ct) or ct.is_list):
                self.mismatch(node.options, f"'in' 后面的 {name} 必须是列表，但它是{type_zh(ct)} / "
                                            f"after 'in', {name} must be a list, but it has type {ct}",
                              f"在文字里查找用 contains({name}, {value}) / to search text use contains({name}, {value})"
                              if ct.name == "string" else None)
            elif ct.is_list and not comparable(vt, ct.item or ANY):
                self.mismatch(node, f"{value}（{type_zh(vt)}）不能和 {name}（{type_zh(ct)}）里的项比较 / "
                                    f"cannot compare {value} ({vt}) with the items of {name} ({ct})")
        return BOOL

    def visit_Between(self, node: Between) -> Type:
        vt = self.visit(node.value)
        for bound in (node.low, node.high):
            bt = self.visit(bound)
            if not orderable(vt, bt):
                self.mismatch(bound, f"{to_source(node.value)}（{type_zh(vt)}）不能和 {to_source(bound)}（{type_zh(bt)}）比较 / "
                                     f"cannot compare {to_source(node.value)} ({vt}) with {to_source(bound)} ({bt})",
                              _compare_fix(node.value, vt, bound, bt))
        return BOOL

    def visit_IsNull(self, node: IsNull) -> Type:
        self.visit(node.value)
        return BOOL

    def visit_Call(self, node: Call) -> Type:
        arg_types = [self.visit(a) for a in node.args]
        func = FUNCTIONS.get(node.func)
        if func is None:
            best = did_you_mean(node.func, FUNCTIONS)
            guess = f"，是不是 '{best[0]}'？" if best else ""
            self.problem(node, "unknown-function", f"没有叫 '{node.func}' 的函数{guess} / "
                                                   f"unknown function '{node.func}'{hint(node.func, FUNCTIONS)}",
                         "可以用的函数 / available functions: " + ", ".join(sorted(FUNCTIONS)))
            return ANY
        n = len(node.args)
        if n < func.min_args or (func.max_args is not None and n > func.max_args):
            self.problem(node, "wrong-arg-count",
                         f"{func.name}() 的参数个数不对（这里给了 {n} 个） / "
                         f"{func.name}() takes {func.arity_text()}, but {n} {'was' if n == 1 else 'were'} given")
            return func.result or ANY
        ok = True
        for i, (arg, at) in enumerate(zip(node.args, arg_types)):
            allowed = func.param_types(i)
            if not accepts(allowed, at):
                ok = False
                self.mismatch(arg, f"{func.name}() 的第 {i + 1} 个参数要是{_types_zh(allowed)}，"
                                   f"但 {to_source(arg)} 是{type_zh(at)} / "
                                   f"{func.name}() needs {_types_text(allowed)} as argument {i + 1}, "
                                   f"but {to_source(arg)} has type {at}")
        if func.name == "round" and n == 2:
            places = _constant_number(node.args[1])
            problem = round_places_problem(places) if places is not None else None
            if problem is not None:
                self.problem(node.args[1], "bad-argument", problem,
                             "e.g. round(x, 2) for cents, round(x, -3) for thousands")
        if func.name == "date" and isinstance(node.args[0], Const) and isinstance(node.args[0].value, str):
            try:
                parse_date_text(node.args[0].value)
            except ValueError:
                why, why_en = _bad_date_reason(node.args[0].value)
                self.problem(node, "bad-date", f"{to_source(node)} 不是有效的日期{why} / {to_source(node)} is not a valid date{why_en}",
                             "日期写成 date('YYYY-MM-DD')，如 date('2024-05-17')（也可以写 date('2024/5/17')） / "
                             "write the date as date('YYYY-MM-DD'), e.g. date('2024-05-17') (date('2024/5/17') works too)")
        if func.result is not None:
            return func.result
        common = unify([t for t in arg_types if t != NULL])
        if common is None:
            if ok:
                self.mismatch(node, f"{func.name}() 的参数要是同一种类型，这里却是 " + "、".join(type_zh(t) for t in arg_types)
                                    + f" / {func.name}() needs arguments of the same type, but got "
                                    + ", ".join(str(t) for t in arg_types))
            return ANY
        return common
