"""Parse expression text into the IR (``ast.py``) by recursive descent.

Grammar, loosest binding first::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=") sum
                      | ["not"] "in" ( "[" [expr ("," expr)*] "]" | NAME )
                      | "between" sum "and" sum
                      | "is" ["not"] "null" ]
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | primary
    primary    := NUMBER | STRING | "true" | "false" | "null"
                | NAME | NAME "(" [expr ("," expr)*] ")" | "(" expr ")"

Comparisons do not chain (``a < b < c`` is an error that suggests ``a < b and b < c``).
``-`` followed by a number is folded into a negative constant. Syntax errors raise ExprError with
one Problem of code ``expr-syntax`` at the absolute position of the offending token.
"""
from __future__ import annotations

from dataclasses import replace

from ..errors import ExprError, Location
from .ast import COMPARISON_OPS, Between, Binary, BoolOp, Call, Const, In, IsNull, Name, Node, Unary
from .lexer import Token, locate, syntax_error, tokenize


def parse(text: str, location: Location | None = None) -> Node:
    """Parse ``text``. ``location`` is where the text starts in the policy file (file, line, col)."""
    node = _Parser(text, location).parse()
    return replace(node, origin=location) if location is not None else node


def _describe(tok: Token) -> str:
    """How a token is named in an error message."""
    if tok.kind == "eof":
        return "the end of the expression"
    return f"'{tok.text}'" if tok.kind != "string" else tok.text


def _describe_zh(tok: Token) -> str:
    """The same, in the Chinese half of a message."""
    return "条件的结尾" if tok.kind == "eof" else _describe(tok)


class _Parser:
    def __init__(self, text: str, location: Location | None):
        self.location = location
        self.tokens = tokenize(text, location)
        self.pos = 0

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def at(self, kind: str, value: object = None) -> bool:
        tok = self.tok
        return tok.kind == kind and (value is None or tok.value == value)

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.value in ops

    def at_keyword(self, *words: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.value in words

    def peek_keyword(self, word: str) -> bool:
        nxt = self.tokens[min(self.pos + 1, len(self.tokens) - 1)]
        return nxt.kind == "keyword" and nxt.value == word

    def fail(self, tok: Token, message: str, fix: str | None = None) -> ExprError:
        return syntax_error(self.location, tok.line, tok.col, message, fix)

    def where(self, tok: Token) -> tuple[str, str]:
        """('第 L 行第 C 列', 'line L, col C') of a token, absolute in the file when the file position is known."""
        loc = locate(self.location, tok.line, tok.col)
        return f"第 {loc.line} 行第 {loc.col} 列", f"line {loc.line}, col {loc.col}"

    def expect_closing(self, opener: Token, closer: str, what: tuple[str, str]) -> Token:
        if self.at_op(closer):
            return self.advance()
        if self.at("eof"):
            raise self.fail(opener, f"这个 '{opener.text}' 没有配对的 '{closer}' / this '{opener.text}' is never closed",
                            f"在{what[0]}加上 '{closer}' / add '{closer}' {what[1]}")
        zh, en = self.where(opener)
        raise self.fail(
            self.tok,
            f"{zh}的 '{opener.text}' 应该用 '{closer}' 配对，这里却是 {_describe_zh(self.tok)} / "
            f"expected '{closer}' to close the '{opener.text}' at {en}, found {_describe(self.tok)}",
        )

    # -- grammar ---------------------------------------------------------------------------------

    def parse(self) -> Node:
        if self.at("eof"):
            raise self.fail(self.tok, "条件是空的 / the condition is empty",
                            "写一个条件，如 monetary_365d >= 50000；对所有客户都适用就写 true / "
                            "write a condition such as monetary_365d >= 50000; for every customer write true")
        node = self.expr()
        if not self.at("eof"):
            tok = self.tok
            if self.at_op(")"):
                raise self.fail(tok, "多了一个 ')'，前面没有和它配对的 '(' / there is a ')' without a matching '('",
                                "删掉多余的 ')'，或在前面补上 '(' / delete the extra ')' or add the missing '('")
            if self.at_op("]"):
                raise self.fail(tok, "多了一个 ']'，前面没有和它配对的 '[' / there is a ']' without a matching '['")
            raise self.fail(tok, f"这里应该是 'and'、'or' 或条件结束，却是 {_describe_zh(tok)} / "
                                 f"expected 'and', 'or' or the end of the expression, found {_describe(tok)}",
                            "两个条件之间是不是漏了 'and' 或 'or'，或者漏了比较符号？ / "
                            "did you forget 'and' or 'or' between two conditions, or an operator?")
        return node

    def expr(self) -> Node:
        return self.bool_op("or", self.and_expr)

    def and_expr(self) -> Node:
        return self.bool_op("and", self.not_expr)

    def bool_op(self, word: str, operand) -> Node:
        first = operand()
        operands = [first]
        while self.at_keyword(word):
            self.advance()
            operands.append(operand())
        if len(operands) == 1:
            return first
        return BoolOp(word, tuple(operands), line=first.line, col=first.col)

    def not_expr(self) -> Node:
        if self.at_keyword("not"):
            tok = self.advance()
            return Unary("not", self.not_expr(), line=tok.line, col=tok.col)
        return self.comparison()

    def comparison(self) -> Node:
        node = self.single_comparison()
        if self.at_op(*COMPARISON_OPS):
            # A comparison was just read (otherwise this operator would have been consumed).
            raise self.fail(self.tok, f"比较后面不能紧接着再比较 '{self.tok.text}' / "
                                      f"a second comparison '{self.tok.text}' cannot follow directly",
                            "用 'and' 把两个比较连起来，如 a < b and b < c / "
                            "join the comparisons with 'and', e.g. a < b and b < c")
        return node

    def single_comparison(self) -> Node:
        left = self.sum()
        pos = {"line": left.line, "col": left.col}
        if self.at_op(*COMPARISON_OPS):
            op = self.advance().value
            return Binary(op, left, self.sum(), **pos)
        if self.at_keyword("in") or (self.at_keyword("not") and self.peek_keyword("in")):
            negated = self.at_keyword("not")
            if negated:
                self.advance()
            self.advance()
            return In(left, self.in_options(), negated, **pos)
        if self.at_keyword("not") and self.peek_keyword("between"):
            raise self.fail(self.tok, "不支持 'not between' / 'not between' is not supported",
                            "写成 not (x between a and b)，或 x < a or x > b / "
                            "write not (x between a and b), or x < a or x > b")
        if self.at_keyword("between"):
            self.advance()
            low = self.sum()
            if not self.at_keyword("and"):
                raise self.fail(self.tok, f"'between ... and ...' 里缺少 'and'，这里是 {_describe_zh(self.tok)} / "
                                          f"expected 'and' in 'between ... and ...', found {_describe(self.tok)}",
                                "例如 monetary_365d between 10000 and 50000 / "
                                "write e.g. monetary_365d between 10000 and 50000")
            self.advance()
            high = self.sum()
            return Between(left, low, high, True, **pos)
        if self.at_keyword("is"):
            self.advance()
            negated = self.at_keyword("not")
            if negated:
                self.advance()
            if not self.at_keyword("null"):
                raise self.fail(self.tok, f"'is' 后面要写 'null' 或 'not null'，这里是 {_describe_zh(self.tok)} / "
                                          f"after 'is' write 'null' or 'not null', found {_describe(self.tok)}",
                                "判断是/否字段写成 opt_out == true 这样 / "
                                "to test a yes/no field write e.g. opt_out == true")
            self.advance()
            return IsNull(left, negated, **pos)
        return left

    def in_options(self) -> tuple[Node, ...] | Name:
        if self.at("name"):
            tok = self.advance()
            if self.at_op("("):
                raise self.fail(tok, "'in' 后面要写一个列表（如 ['高', '中']）或列表字段的名字 / "
                                     "after 'in' write a list like ['高', '中'] or the name of a list field",
                                "在文字里查找用 contains(text, 'word') / to search text use contains(text, 'word')")
            return Name(tok.value, line=tok.line, col=tok.col)
        if not self.at_op("["):
            raise self.fail(self.tok,
                            f"'in' 后面要写一个列表（如 ['高', '中']）或列表字段的名字，这里是 {_describe_zh(self.tok)} / "
                            f"after 'in' write a list like ['高', '中'] or the name of a list field, "
                            f"found {_describe(self.tok)}")
        opener = self.advance()
        items = self.comma_list(opener, "]", ("列表", "list"))
        return tuple(items)

    def comma_list(self, opener: Token, closer: str, what: tuple[str, str]) -> list[Node]:
        """Items up to ``closer`` (already past ``opener``), separated by commas. ``what``: (中文, English)."""
        items: list[Node] = []
        if self.at_op(closer):
            self.advance()
            return items
        while True:
            items.append(self.expr())
            if self.at_op(","):
                self.advance()
                continue
            if self.at_op(closer) or self.at("eof"):
                self.expect_closing(opener, closer, (f"{what[0]}末尾", f"at the end of the {what[1]}"))
                return items
            raise self.fail(self.tok, f"{what[0]}里这里应该是 ',' 或 '{closer}'，却是 {_describe_zh(self.tok)} / "
                                      f"expected ',' or '{closer}' in the {what[1]}, found {_describe(self.tok)}",
                            "各项之间用英文逗号隔开 / separate the items with commas")

    def sum(self) -> Node:
        node = self.product()
        while self.at_op("+", "-"):
            op = self.advance().value
            node = Binary(op, node, self.product(), line=node.line, col=node.col)
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.at_op("*", "/", "%"):
            op = self.advance().value
            node = Binary(op, node, self.unary(), line=node.line, col=node.col)
        return node

    def unary(self) -> Node:
        if self.at_op("-"):
            tok = self.advance()
            operand = self.unary()
            if isinstance(operand, Const) and isinstance(operand.value, (int, float)) \
                    and not isinstance(operand.value, bool):
                # A negative number is a constant, not an operation: simpler IR for every backend.
                return Const(-operand.value, line=tok.line, col=tok.col)
            return Unary("-", operand, line=tok.line, col=tok.col)
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind in ("number", "string"):
            self.advance()
            return Const(tok.value, line=tok.line, col=tok.col, written=tok.text)
        if tok.kind == "keyword" and tok.value in ("true", "false", "null"):
            self.advance()
            value = {"true": True, "false": False, "null": None}[tok.value]
            return Const(value, line=tok.line, col=tok.col)
        if tok.kind == "name":
            self.advance()
            if self.at_op("("):
                opener = self.advance()
                args = self.comma_list(opener, ")", (f"{tok.value}(...) 的参数", f"arguments of {tok.value}(...)"))
                return Call(tok.value, tuple(args), line=tok.line, col=tok.col)
            return Name(tok.value, line=tok.line, col=tok.col)
        if self.at_op("("):
            opener = self.advance()
            if self.at_op(")"):
                raise self.fail(self.tok, "括号 '( )' 里是空的 / expected a value inside '( )', found ')'")
            node = self.expr()
            self.expect_closing(opener, ")", ("括号里那部分的后面", "after the part in brackets"))
            return node
        if self.at_op("["):
            raise self.fail(tok, "[...] 列表只能写在 'in' 后面 / a list in [...] can only follow 'in'",
                            "例如 lifecycle_stage in ['签约', '意向'] / write e.g. lifecycle_stage in ['签约', '意向']")
        raise self.expected_value(tok)

    def expected_value(self, tok: Token) -> ExprError:
        prev = self.tokens[self.pos - 1] if self.pos > 0 else None
        found = _describe(tok)
        if prev is not None and prev.kind in ("op", "keyword") and prev.value not in (")", "]"):
            return self.fail(tok, f"'{prev.text}' 后面缺少一个值，这里是 {_describe_zh(tok)} / "
                                  f"expected a value after '{prev.text}', found {found}")
        return self.fail(tok, f"这里应该是一个值（字段名、数字、引号里的文字或 '('），却是 {_describe_zh(tok)} / "
                              f"expected a value (a name, a number, text in quotes or '('), found {found}")
