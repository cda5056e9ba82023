"""Split expression text into tokens, each with its 1-based line and column.

Columns count characters (a Chinese character or a tab is one column). Names are anything Python
accepts as an identifier, so ``lifecycle_stage`` and ``客户等级`` both work. Keywords (``and``,
``or``, ``not``, ``in``, ``between``, ``is``, ``null``, ``true``, ``false``) are recognised in any
letter case. Strings are written in '...' or "..."; the full-width quotes ‘...’ and “...” that
Chinese input methods produce are accepted too. Common slips (``=``, ``&&``, ``<>``, full-width
brackets, ...) get an error that says what to type instead.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..errors import ExprError, Location, Problem

KEYWORDS = frozenset({"and", "or", "not", "in", "between", "is", "null", "true", "false"})

# Longest first, so "<=" wins over "<".
OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "[", "]", ",")

# Opening quote -> closing quote.
QUOTES = {"'": "'", '"': '"', "‘": "’", "“": "”"}

ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "’": "’", "”": "”"}

# Things people type by habit (from SQL, Excel, other languages or a Chinese input method), and
# what to write instead. Longest first.
SLIPS = (
    # Two-character comparisons typed with a Chinese input method, wholly or half full-width.
    ("＞＝", ">="), ("＜＝", "<="), ("！＝", "!="), ("＝＝", "=="), (">＝", ">="), ("<＝", "<="), ("!＝", "!="),
    ("＝=", "=="), ("=＝", "=="), ("＞=", ">="), ("＜=", "<="), ("！=", "!="),
    ("&&", "and"), ("||", "or"), ("<>", "!="), ("=<", "<="), ("=>", ">="),
    ("=", "=="), ("!", "not"), ("&", "and"), ("|", "or"),
    ("≥", ">="), ("≤", "<="), ("≠", "!="), ("＝", "=="), ("＞", ">"), ("＜", "<"),
    ("（", "("), ("）", ")"), ("，", ","), ("【", "["), ("】", "]"), ("［", "["), ("］", "]"),
    ("！", "not"), ("≧", ">="), ("≦", "<="), ("、", ","), ("「", "'"), ("」", "'"), ("『", "'"), ("』", "'"),
)

_COMPARISONS = frozenset(("==", "!=", "<=", ">=", "<", ">"))
_CHINESE_UNITS = {"万": 10_000, "千": 1_000, "亿": 100_000_000, "百": 100}

FULL_WIDTH = frozenset("＝＞＜（），【】［］！、「」『』")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "name", "number", "string", "keyword", "op", "eof"
    value: Any  # name text, number, decoded string, lower-case keyword, operator text
    text: str  # exactly as written
    line: int
    col: int


def locate(base: Location | None, line: int, col: int) -> Location:
    """Absolute location of expression position (line, col), given where the expression starts.

    Line 1 of the expression starts at ``base``'s column; later lines start at column 1 of the
    following file lines. Without ``base`` the position is relative to the expression text.
    """
    if base is None:
        return Location(line=line, col=col)
    positions = getattr(base, "positions", None)  # a multi-line YAML value: engine.policy.yaml_source
    if positions:
        at = positions.get((line, col))
        if at is None and (line, col - 1) in positions:  # just after the last character
            at = (positions[(line, col - 1)][0], positions[(line, col - 1)][1] + 1)
        if at is not None:
            return Location(file=base.file, line=at[0], col=at[1])
    if line == 1:
        return base.shifted(0, (base.col or 1) + col - 1)
    return base.shifted(line - 1, col)


def syntax_error(base: Location | None, line: int, col: int, message: str, fix: str | None = None) -> ExprError:
    return ExprError(Problem(code="expr-syntax", message=message, location=locate(base, line, col), fix=fix))


def _half_width_fix(good: str) -> str:
    return (f"改成 '{good}'（把输入法切换到半角/英文） / "
            f"type '{good}' instead (switch the input method to half-width/English)")


def _is_name_start(ch: str) -> bool:
    return ch.isidentifier()  # letters, CJK characters and "_"; not digits


def _is_name_char(ch: str) -> bool:
    return ("a" + ch).isidentifier()  # also digits and combining marks


def tokenize(text: str, location: Location | None = None) -> list[Token]:
    """All tokens of ``text``, ending with an "eof" token. Raises ExprError on the first bad character."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    line, line_start = 1, 0  # line_start: index of the first character of the current line

    def fail(at: int, message: str, fix: str | None = None) -> ExprError:
        return syntax_error(location, line, at - line_start + 1, message, fix)

    while i < n:
        ch = text[i]
        col = i - line_start + 1
        if ch == "\n":
            line, line_start = line + 1, i + 1
            i += 1
            continue
        if ch.isspace():  # includes "\r", tabs and the full-width space
            i += 1
            continue

        if ch.isdigit() and ch.isascii():
            j = i
            while j < n and text[j].isascii() and text[j].isdigit():
                j += 1
            is_float = False
            if j + 1 < n and text[j] == "." and text[j + 1].isascii() and text[j + 1].isdigit():
                is_float = True
                j += 1
                while j < n and text[j].isascii() and text[j].isdigit():
                    j += 1
            # Exponent (1e6, 2.5E-3) only when digits follow, so "2e" stays an error below.
            if j < n and text[j] in "eE":
                k = j + 1
                if k < n and text[k] in "+-":
                    k += 1
                if k < n and text[k].isascii() and text[k].isdigit():
                    is_float = True
                    j = k
                    while j < n and text[j].isascii() and text[j].isdigit():
                        j += 1
            if (not is_float and text.startswith(",", j) and re.match(r",\d{3}(?!\d)", text[j:])
                    and tokens and tokens[-1].kind == "op" and tokens[-1].value in _COMPARISONS):
                # >= 50,000: a thousands separator (in a table cell it is one; here a comma separates
                # values, so only right after a comparison, never in [30,180] or f(x,100)).
                whole = re.match(r"\d+(?:,\d{3})+(?!\d)(?:\.\d+)?", text[i:]).group(0)
                raise fail(i, f"'{whole}' 带了千位分隔符 / '{whole}' has a thousands separator",
                           f"去掉逗号，写成 {whole.replace(',', '')} / write {whole.replace(',', '')} without the commas")
            if j < n and text[j] in _CHINESE_UNITS:
                # 5万: the amount in full is what a condition compares.
                amount = float(text[i:j]) * _CHINESE_UNITS[text[j]]
                shown = int(amount) if amount.is_integer() else amount
                raise fail(i, f"'{text[i:j + 1]}' 不是数字 / '{text[i:j + 1]}' is not a number",
                           f"把金额写全: {shown} / write the amount in full: {shown}")
            if j < n and (_is_name_char(text[j]) or text[j] == "."):
                # "365d" or "1.2.3": neither a number nor a name.
                k = j
                while k < n and (_is_name_char(text[k]) or text[k] == "."):
                    k += 1
                raise fail(i, f"'{text[i:k]}' 既不是数字，也不是字段名（字段名不能以数字开头） / "
                              f"'{text[i:k]}' is not a number, and a name cannot start with a digit",
                           "写一个普通数字（如 365 或 0.5），或以字母开头的字段名 / "
                           "write a plain number such as 365 or 0.5, or a name that starts with a letter")
            word = text[i:j]
            value: Any = float(word) if is_float else int(word)
            if value == float("inf"):
                raise fail(i, f"数字 {word} 太大 / the number {word} is too large")
            tokens.append(Token("number", value, word, line, col))
            i = j
            continue

        if _is_name_start(ch):
            j = i + 1
            while j < n and _is_name_char(text[j]):
                j += 1
            word = text[i:j]
            if word.lower() in KEYWORDS:
                tokens.append(Token("keyword", word.lower(), word, line, col))
            else:
                tokens.append(Token("name", word, word, line, col))
            i = j
            continue

        if ch in QUOTES:
            close = QUOTES[ch]
            j = i + 1
            chars: list[str] = []
            while True:
                if j >= n or text[j] == "\n":
                    raise fail(i, f"以 {ch} 开头的文字缺少结尾的 {close} / the text starting with {ch} has no closing {close}",
                               f"在这段文字末尾加上 {close} / add {close} at the end of the text")
                c = text[j]
                if c == close:
                    break
                if c == "\\" and j + 1 < n and text[j + 1] in ESCAPES:
                    chars.append(ESCAPES[text[j + 1]])
                    j += 2
                    continue
                chars.append(c)  # a lone backslash (e.g. C:\data) is kept as written
                j += 1
            tokens.append(Token("string", "".join(chars), text[i:j + 1], line, col))
            i = j + 1
            continue

        slip = next(((bad, good) for bad, good in SLIPS if len(bad) == 2 and text.startswith(bad, i)), None)
        if slip is not None:  # before operators, so that "<>" is not read as "<" then ">"
            if any(c in FULL_WIDTH for c in slip[0]):
                raise fail(i, f"'{slip[0]}' 是全角字符 / '{slip[0]}' is typed with full-width characters", _half_width_fix(slip[1]))
            raise fail(i, f"这里不能用 '{slip[0]}' / '{slip[0]}' is not an operator here",
                       f"改成 '{slip[1]}' / write '{slip[1]}' instead")

        op = next((o for o in OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(Token("op", op, op, line, col))
            i += len(op)
            continue

        slip = next(((bad, good) for bad, good in SLIPS if text.startswith(bad, i)), None)
        if slip is not None:
            bad, good = slip
            if bad == "=":
                raise fail(i, "'=' 不是比较符号 / '=' is not a comparison",
                           "判断两个值是否相等要写两个等号 '==' / use '==' to test whether two values are equal")
            if bad in FULL_WIDTH:
                raise fail(i, f"'{bad}' 是全角或特殊字符 / '{bad}' is a full-width or special character", _half_width_fix(good))
            raise fail(i, f"这里不能用 '{bad}' / '{bad}' is not an operator here", f"改成 '{good}' / write '{good}' instead")
        if unicodedata.east_asian_width(ch) == "F":  # full-width digits and letters: ５００００
            raise fail(i, f"'{ch}' 是全角字符 / '{ch}' is a full-width character", _half_width_fix(unicodedata.normalize('NFKC', ch)))
        raise fail(i, f"条件里不能出现字符 '{ch}' / unexpected character '{ch}'")

    tokens.append(Token("eof", None, "", line, n - line_start + 1))
    return tokens
