"""Turn raw spreadsheet cells into typed values.

python-calamine hands us ``str``, ``float``, ``int``, ``bool``, ``datetime.date``, ``datetime.datetime``,
``datetime.time`` or ``datetime.timedelta`` (and ``""`` for an empty cell). Real exports put dates in
text cells, phone numbers in number cells, amounts with currency signs, full-width digits, and write
"—" or "无" for "nothing". Each converter below accepts all of that, returns the typed value (or
``None`` for an empty-looking cell) and raises :class:`CoercionError` for anything it cannot read.
The rules are documented for users in ``docs/inputs.md``.

Speed: the reader calls a converter once per cell (millions of cells), so each one checks the common
case first with ``type(v) is ...`` and only falls back to regular expressions / Unicode normalisation
for unusual text.
"""
from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

__all__ = [
    "CoercionError",
    "Coercer",
    "DEFAULT_BLANKS",
    "DEFAULT_TRUE",
    "DEFAULT_FALSE",
    "value_key",
    "spellings",
    "TYPES",
]

TYPES = ("id", "text", "person", "phone", "email", "date", "datetime", "number", "int", "bool", "enum")


class CoercionError(ValueError):
    """A cell that cannot be read as the column's type. ``code`` is a stable reject code."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


# Control characters (keeping tab and line breaks) that exports sometimes carry from pasted text:
# invisible in Excel, but they break sheet names and XML and reach a terminal as escape sequences.
# Zero-width space, word joiner and byte-order mark (U+200B, U+2060, U+FEFF) come along with text
# pasted from web pages and chat: invisible, but 'C000002\u200b' is not C000002. Dropped from text too.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u2060\ufeff]")
# In an id also the zero-width (non-)joiners U+200C/U+200D (kept in text: emoji and some scripts use them).
_ID_INVISIBLE = re.compile(r"[\x00-\x1f\x7f\u200b-\u200d\u2060\ufeff]")


def _without_controls(s: str) -> str:
    return _CONTROL_CHARS.sub("", s).strip()


def _nfkc(s: str) -> str:
    # Full-width digits/letters/punctuation (１２３，：￥) become their ASCII forms.
    return unicodedata.normalize("NFKC", s)


def value_key(s: str) -> str:
    """Comparison key for spellings: full-width folded, case folded, no spaces/underscores/hyphens."""
    s = _nfkc(s).casefold()
    return _KEY_DROP.sub("", s)


_KEY_DROP = re.compile(r"[\s_\-]+")

DEFAULT_BLANKS = ("", "-", "--", "—", "——", "－", "/", "N/A", "NA", "#N/A", "无", "暂无", "空", "null", "none",
                  "nil", "未填写")
DEFAULT_TRUE = ("是", "Y", "yes", "true", "T", "1", "√", "✓", "✔", "同意", "已同意", "允许", "接受", "有", "对")
DEFAULT_FALSE = ("否", "N", "no", "false", "F", "0", "×", "✗", "✘", "不同意", "未同意", "拒绝", "不允许", "不接受",
                 "没有", "不")


def spellings(token: str) -> set[str]:
    """The exact spellings we accept for ``token`` without normalising each cell: case variants and
    their full-width forms (so a set lookup on the stripped cell is enough)."""
    out: set[str] = set()
    for t in (token, token.upper(), token.lower(), token.title(), _nfkc(token)):
        out.add(t)
        # ASCII '!'..'~' -> full-width U+FF01..U+FF5E
        out.add("".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t))
    return out


_EPOCH = date(1899, 12, 30)  # Excel 1900 date system: serial 1 = 1900-01-01 (with the 1900 leap-year bug)
_EPOCH_DT = datetime(1899, 12, 30)
_SERIAL_MIN = 61  # 1900-03-01: before that, Excel serials are off by one day (Lotus bug), so refuse them
_SERIAL_MAX = 109575  # 2200-01-01: a larger number is no date an export means (240517 typed as yymmdd would be 2558-07-05)

_DATE_RE = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"  # 2024-05-17, 2024/5/17, 2024.5.17, 2024年5月17日
    r"(?:\s*T?\s*(\d{1,2})\s*[:时点]\s*(\d{1,2})\s*分?"  # 09:30, 9时30分
    r"(?:\s*:?\s*(\d{1,2})(?:\.\d{1,6})?\s*秒?)?)?$"  # :15, 15秒 (fractions of a second are dropped)
)
# A time with a UTC offset, as systems with an API export it: 2026-11-18T09:30:00+08:00, …Z, … +0800.
_OFFSET_RE = re.compile(r"^(.*\d)\s*(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_COMPACT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:\s*(\d{2}):?(\d{2})(?::?(\d{2}))?)?$")  # 20240517[ 0930[00]]
_SERIAL_TEXT_RE = re.compile(r"^\d{5}(?:\.\d+)?$")  # an Excel serial that was stored as text
_AMOUNT_RE = re.compile(
    r"^(?:(?:rmb|cny|人民币|¥)\s*)?([+-]?)\s*(?:(?:rmb|cny|¥)\s*)?"
    r"(\d{1,3}(?:,\d{3})+|\d+)?(\.\d+)?"  # 1,200.50 or 1200 or .5 (commas only as thousands separators)
    r"\s*(万元|万|元|块|圆|rmb|cny|yuan)?$",
    re.IGNORECASE,
)
_BRACKETED_RE = re.compile(r"^-?\s*((?:rmb|cny|人民币|¥)?)\s*\((.+)\)$", re.IGNORECASE)
# Amounts are yuan: a dollar or euro figure read as yuan would quietly change a customer's value tier.
_FOREIGN_CURRENCY_RE = re.compile(r"\$|usd|eur|€|£|gbp|hkd|jpy|円|美元|欧元|港币|港元|日元|英镑", re.IGNORECASE)
_PHONE_FAST_RE = re.compile(r"^1[3-9]\d{9}$")
_PHONE_SCI_RE = re.compile(r"^\d(?:\.\d+)?[eE]\+?\d{1,2}$")  # 1.3812345678E10
_PHONE_FLOAT_TEXT_RE = re.compile(r"^\d+\.0+$")
_PHONE_SPLIT_RE = re.compile(r"[/;,、|]")
_PHONE_DROP_RE = re.compile(r"[\s\-()（）.—]")
_MOBILE_RE = re.compile(r"(?:\+86|0086|86)?1[3-9]\d{9}")  # a mainland mobile number, separators dropped
_PHONE_OK_RE = re.compile(r"^\+?\d{5,20}$")
# After +86: an area code written without its trunk 0 (+86 10 12345678, +86 21 …, +86 755 …) and the number.
_PHONE_AREA_NO_TRUNK_RE = re.compile(r"^(?:10\d{8}|[2-9]\d{8,10})$")
# A mainland landline, separators dropped: with its area code (010, 02x, 0xxx) or a local number alone.
_LANDLINE_RE = re.compile(r"0(?:10|2\d|[3-9]\d{2})\d{7,8}|[2-9]\d{6,7}")
_YEAR_MONTH_TEXT_RE = re.compile(r"^\d{4}\.\d{1,2}$")  # "1985.05" typed as text
# An extension written after the number (010-12345678转8001, … ext 8001, … x8001, …#8001): dropped,
# it is dialled after the call connects (kept, it was glued onto the number: 010123456788001).
_PHONE_EXTENSION_RE = re.compile(r"\s*(?:转|分机|ext\.?|x|#)\s*\d{1,6}\s*$", re.IGNORECASE)
_PHONE_NOTE_RE = re.compile(r"\s*[(（][^\d()（）]*[)）]\s*$")  # a note after the number: 138…（微信同号）
_LANDLINE_WITH_EXTENSION_RE = re.compile(r"^(\(?0\d{2,3}\)?[-\s]?\d{7,8})[-\s]\d{1,6}$")  # 010-12345678-8001
# Person names (owner, staff): runs of spaces collapse to one, and a space between two CJK characters
# goes ("李 娜" and "李　娜" are 李娜, else a stray space would make a second person with own task sheet).
_SPACE_RUN_RE = re.compile(r"\s+")
_CJK_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_GAP_RE = re.compile(f"(?<=[{_CJK_CHARS}]) (?=[{_CJK_CHARS}])")
_EMAIL_RE = re.compile(r"^[^@\s<>;,]+@[^@\s<>;,]+\.[^@\s<>;,]+$")
_EMAIL_SPLIT_RE = re.compile(r"[;,、|]")
_EMAIL_ANGLED_RE = re.compile(r"<([^<>]+)>")


def _shown(v: Any) -> str:
    """How a value is quoted in a reject reason (never used for personal data in logs)."""
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _format_float(v: float) -> str:
    # 13812345678.0 -> "13812345678"; 12.5 -> "12.5"
    if v.is_integer():
        return str(int(v))
    return repr(v)


class _Memo(dict):
    """A converter's value for each distinct cell, computed when the cell is first looked up."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], Any]):
        super().__init__()
        self.fn = fn

    def __missing__(self, v: Any) -> Any:
        out = self[v] = self.fn(v)
        return out


class Coercer:
    """The per-type converters, bound to the empty/yes/no spellings of one ``columns.yaml``.

    Use the module-level functions (``to_date`` ...) for the defaults, or ``Coercer(...).for_field(...)``
    to get the one-argument function the reader maps over a column.
    """

    def __init__(
        self,
        blank_values: Iterable[str] = DEFAULT_BLANKS,
        true_values: Iterable[str] = DEFAULT_TRUE,
        false_values: Iterable[str] = DEFAULT_FALSE,
        time_zone: str = "Asia/Shanghai",
    ):
        # Times with an offset are converted to this zone's wall-clock time; other times are taken as
        # already in it (exports write local time).
        self.tz = ZoneInfo(time_zone)
        blanks: set[str] = set()
        for token in blank_values:
            blanks |= spellings(token.strip())
        self.blanks = frozenset(blanks)
        self.blank_keys = frozenset(value_key(t) for t in blank_values)
        bools: dict[str, bool] = {}
        for token in true_values:
            for s in spellings(token.strip()):
                bools[s] = True
        for token in false_values:
            for s in spellings(token.strip()):
                bools[s] = False
        self.bools = bools
        self.bool_keys = {value_key(k): v for k, v in bools.items()}

    # -- helpers --------------------------------------------------------------------------------
    def _blank(self, s: str) -> bool:
        """``s`` is already stripped."""
        return s in self.blanks or (not s.isascii() and value_key(s) in self.blank_keys)

    def is_blank(self, s: str) -> bool:
        """Does the text cell ``s`` look empty ("", spaces, "—", "无", "N/A", ... of blank_values)?"""
        s = s.strip()
        return not s or self._blank(s)

    # -- one converter per type ------------------------------------------------------------------
    def to_text(self, v: Any) -> str | None:
        t = type(v)
        if t is str:
            s = v.strip()
            # Control characters dropped; line breaks and tabs kept (multi-line notes are common: the
            # cheap check first, the regex only for text that has something else).
            if not s.isprintable() and not s.replace("\n", "").replace("\t", "").isprintable():
                s = _without_controls(s)
            if s in self.blanks:
                return None
            return s
        if v is None:
            return None
        if t is float:
            return _format_float(v)
        if t is bool:
            return "TRUE" if v else "FALSE"  # as Excel shows it
        if t is int:
            return str(v)
        if t is datetime:
            return v.isoformat(sep=" ")
        if t is date or t is time:
            return v.isoformat()
        return str(v)

    def to_person(self, v: Any) -> str | None:
        """A person's name: ``to_text``, then spaces tidied ("李 娜" -> "李娜", "Anna  Lee" -> "Anna Lee")."""
        s = self.to_text(v)
        if s is None or _SPACE_RUN_RE.search(s) is None:
            return s
        return _CJK_GAP_RE.sub("", _SPACE_RUN_RE.sub(" ", s))

    def to_id(self, v: Any) -> str | None:
        t = type(v)
        if t is str:
            s = v.strip()
            if not s.isascii():
                s = _nfkc(s).strip()  # Ｃ０００１ -> C0001
            if not s.isprintable():
                s = _ID_INVISIBLE.sub("", s).strip()
            if s[:1] == "'":  # '00123: the apostrophe some exports put before a number kept as text
                s = s[1:].strip()
            if s in self.blanks:
                return None
            return s
        if t is float:
            if v != v or v in (math.inf, -math.inf):
                raise CoercionError("bad-id", f"{_shown(v)} is not an id")
            if not -LONG_NUMBER_ID < v < LONG_NUMBER_ID:
                raise _long_number_id(v)
            return _format_float(v)  # 1001.0 -> "1001"
        if t is int:
            if not -LONG_NUMBER_ID < v < LONG_NUMBER_ID:
                raise _long_number_id(v)
            return str(v)
        if v is None:
            return None
        raise CoercionError("bad-id", f"{_shown(v)} ({t.__name__}) is not an id")

    def to_phone(self, v: Any) -> str | None:
        t = type(v)
        if t is str:
            s = v.strip()
            if _PHONE_FAST_RE.match(s):
                return s
            if s in self.blanks:
                return None
            s = _nfkc(s).strip().lstrip("'")  # '13800000000: a number kept as text by an apostrophe
            if self._blank(s):
                return None
            parts = [p.strip() for p in _PHONE_SPLIT_RE.split(s) if p.strip()]
            # Several numbers in one cell (0755-88881234/13812345678): the first mobile one (an SMS can
            # reach only a mobile; the task sheet's 电话 shows it too), else the first.
            s = next((p for p in parts if is_mobile(p)), parts[0]) if len(parts) > 1 else (parts[0] if parts else "")
            if _PHONE_SCI_RE.match(s):
                try:
                    d = Decimal(s)
                except InvalidOperation:
                    d = None
                if d is not None and d == d.to_integral_value():
                    number = str(int(d))
                    mantissa = sum(c.isdigit() for c in s.upper().split("E")[0])
                    if mantissa < len(number):  # 1.38123E+10: Excel showed 6 of 11 digits, the rest are gone
                        raise CoercionError("bad-phone", f"{_shown(v)} lost digits in scientific notation "
                                            f"(it would read as {number}): format the column as text in Excel and export again")
                    return number
                raise CoercionError("bad-phone", f"{_shown(v)} is not a phone number")
            if _PHONE_FLOAT_TEXT_RE.match(s):
                s = s.split(".")[0]  # "13812345678.0": a number cell that was converted to text
            s = _PHONE_NOTE_RE.sub("", s)
            s = _PHONE_EXTENSION_RE.sub("", s)
            s = _LANDLINE_WITH_EXTENSION_RE.sub(r"\1", s)
            s = _national(_PHONE_DROP_RE.sub("", s))
            if _PHONE_OK_RE.match(s):
                return s
            raise CoercionError("bad-phone", f"{_shown(v)} is not a phone number")
        if t is float or t is int:
            if 13e9 <= v < 2e10 and v == int(v):  # the usual number cell: a mobile number
                return str(int(v))  # 13812345678.0 -> "13812345678"
            if 0 < v < 1e16 and v == int(v):  # read as the same digits typed as text would be (110 is no number)
                return self.to_phone(str(int(v)))
            raise CoercionError("bad-phone", f"{_shown(v)} is not a phone number")
        if v is None:
            return None
        raise CoercionError("bad-phone", f"{_shown(v)} is not a phone number")

    def to_email(self, v: Any) -> str | None:
        if type(v) is str:
            s = v.strip()
            if not s.isascii():
                s = _nfkc(s).strip()  # ＠ -> @
            if _EMAIL_RE.match(s) and s[:7].lower() != "mailto:":
                return s
            if self._blank(s):
                return None
            # As mail programs and CRMs copy them: "mailto:a@b.cn", "张三 <a@b.cn>", "a@b.cn; c@d.cn" (the
            # first is used, as for phones). Kept as written, the address could not be mailed.
            first = next((p.strip() for p in _EMAIL_SPLIT_RE.split(s) if p.strip()), "")
            angled = _EMAIL_ANGLED_RE.search(first)
            address = angled.group(1).strip() if angled else first
            if address[:7].lower() == "mailto:":
                address = address[7:].strip()
            if _EMAIL_RE.match(address):
                return address
            raise CoercionError("bad-email", f"{_shown(v)} is not an email address")
        if v is None:
            return None
        raise CoercionError("bad-email", f"{_shown(v)} is not an email address")

    def to_date(self, v: Any) -> date | None:
        t = type(v)
        if t is date:
            return v
        if t is datetime:
            return v.date()
        if t is str:
            return self._date_text(v, want_time=False) if v else None
        if t is float or t is int:
            return _date_number(v, v)
        return self._other_date(v)

    def to_datetime(self, v: Any) -> datetime | None:
        t = type(v)
        if t is datetime:
            return v
        if t is date:
            return datetime(v.year, v.month, v.day)
        if t is str:
            return self._date_text(v, want_time=True) if v else None
        if t is float or t is int:
            return _datetime_number(v, v)
        return self._other_date(v)

    def to_number(self, v: Any) -> float | None:
        t = type(v)
        if t is float:
            if v - v == 0.0:  # finite (NaN and inf fail this)
                return v
            raise CoercionError("bad-number", f"{_shown(v)} is not a number")
        if t is int:
            return float(v)
        if t is str:
            return self._number_text(v)
        if v is None:
            return None
        raise CoercionError("bad-number", f"{_shown(v)} ({t.__name__}) is not a number")

    def to_int(self, v: Any) -> int | None:
        t = type(v)
        if t is int:
            return v
        x = self.to_number(v)
        if x is None:
            return None
        if not x.is_integer():
            raise CoercionError("bad-number", f"{_shown(v)} is not a whole number")
        return int(x)

    def to_bool(self, v: Any) -> bool | None:
        t = type(v)
        if t is bool:
            return v
        if t is str:
            s = v.strip()
            b = self.bools.get(s)
            if b is not None:
                return b
            if self._blank(s):
                return None
            b = self.bool_keys.get(value_key(s))
            if b is not None:
                return b
            raise CoercionError("bad-bool", f"{_shown(v)} is not a yes/no value")
        if t is float or t is int:
            if v == 1:
                return True
            if v == 0:
                return False
            raise CoercionError("bad-bool", f"{_shown(v)} is not a yes/no value (use 1 or 0)")
        if v is None:
            return None
        raise CoercionError("bad-bool", f"{_shown(v)} is not a yes/no value")

    def bool_with(self, values: Mapping[str, str]) -> Callable[[Any], bool | None]:
        """A yes/no converter that knows a column's own words first (``values``: spelling -> "true"/"false"),
        then the file-wide ones."""
        exact: dict[str, bool] = {}
        for spelling, meaning in values.items():
            for s in spellings(spelling):
                exact[s] = meaning == "true"
        keyed = {value_key(s): b for s, b in exact.items()}
        to_bool = self.to_bool

        def convert(v: Any) -> bool | None:
            if type(v) is str:
                s = v.strip()
                b = exact.get(s)
                if b is None:
                    b = keyed.get(value_key(s))
                if b is not None:
                    return b
            return to_bool(v)

        return convert

    def enum(self, values: Mapping[str, str], strict: bool = False) -> Callable[[Any], str | None]:
        """A converter for an enum column. ``values`` maps spellings to the canonical value."""
        exact = {}
        for spelling, canonical in values.items():
            for s in spellings(spelling):
                exact[s] = canonical
        keyed = {value_key(k): c for k, c in values.items()}
        to_text = self.to_text
        blank = self._blank

        def to_enum(v: Any) -> str | None:
            if type(v) is str:
                s = v.strip()
                hit = exact.get(s)  # the usual case: one dict lookup
                if hit is not None:
                    return hit
            else:
                s = to_text(v)
                if s is None:
                    return None
            if blank(s):
                return None
            hit = keyed.get(value_key(s))
            if hit is not None:
                return hit
            if strict:
                allowed = ", ".join(sorted(set(values.values())))
                raise CoercionError("bad-value", f"{_shown(s)} is not one of: {allowed}")
            return s  # kept as written

        return to_enum

    def for_field(
        self,
        type_: str,
        *,
        values: Mapping[str, str] | None = None,
        strict: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> Callable[[Any], Any]:
        """The one-argument converter for a column of type ``type_`` (chosen once per column)."""
        if type_ == "enum":
            return self.enum(values or {}, strict)
        if type_ == "bool" and values:
            return self.bool_with(values)
        base = {
            "id": self.to_id,
            "text": self.to_text,
            "person": self.to_person,
            "phone": self.to_phone,
            "email": self.to_email,
            "date": self.to_date,
            "datetime": self.to_datetime,
            "number": self.to_number,
            "int": self.to_int,
            "bool": self.to_bool,
        }.get(type_)
        if base is None:
            raise ValueError(f"unknown column type {type_!r}; expected one of {', '.join(TYPES)}")
        if min_value is None and max_value is None:
            return base
        lo = -math.inf if min_value is None else min_value
        hi = math.inf if max_value is None else max_value

        def in_range(v: Any) -> Any:
            x = base(v)
            if x is not None and not lo <= x <= hi:
                raise CoercionError("out-of-range", f"{_shown(x)} is outside {_num(lo)}..{_num(hi)}")
            return x

        return in_range

    # -- whole columns ---------------------------------------------------------------------------
    def convert_column(self, fn: Callable[[Any], Any], raw: Sequence[Any]) -> list:
        """``[fn(v) for v in raw]`` for a converter ``fn`` from ``for_field``; raises ``CoercionError``
        if any cell is bad.

        Columns with few distinct values (channels, statuses, yes/no flags, ratings, staff names, and
        customer ids in interaction/order exports, which repeat) convert each distinct value once, on
        its first occurrence, and look the rest up: one dict lookup per cell, about twice as fast as a
        call per cell (a set of the distinct values built first cost a second hash pass over the
        column). A small sample decides whether that is worth it.
        """
        n = len(raw)
        if n >= 64:
            sample = raw[:: max(1, n // 256)]
            if len(set(sample)) * 4 <= len(sample):
                memo = _Memo(fn)
                out = list(map(memo.__getitem__, raw))
                # True == 1 == 1.0 share one entry but may convert differently ("TRUE" vs "1"): a column
                # with Excel booleans and such an entry is converted cell by cell after all.
                if any(k in (0, 1) and type(k) in (bool, int, float) for k in memo) and bool in set(map(type, raw)):
                    return list(map(fn, raw))
                return out
        return list(map(fn, raw))

    # -- text parsing (slow paths) --------------------------------------------------------------
    def _date_text(self, v: str, want_time: bool) -> Any:
        s = v.strip()
        if not s:
            return None
        m = _DATE_RE.match(s) or _COMPACT_RE.match(s)
        if m is None:
            if s in self.blanks:
                return None
            s = _nfkc(s).strip()  # full-width digits, ：
            if self._blank(s):
                return None
            m = _DATE_RE.match(s) or _COMPACT_RE.match(s)
            if m is None:
                if _SERIAL_TEXT_RE.match(s):
                    x = float(s)
                    return _datetime_number(x, v) if want_time else _date_number(x, v)
                offset = _OFFSET_RE.match(s)
                if offset is not None and _DATE_RE.match(offset.group(1)):
                    return self._offset_time(v, offset.group(1), offset.group(2), want_time)
                if s.isdigit() or _YEAR_MONTH_TEXT_RE.match(s):
                    _refuse_year(float(s), v)  # "1985", "1985.05" typed as text: the same message as the number
                raise CoercionError("bad-date", f"{_shown(v)} is not a date this engine can read")
        y, mo, d, hh, mi, ss = m.groups()
        year = int(y)
        if not 1900 <= year <= 2999:
            raise CoercionError("bad-date", f"{_shown(v)}: year {year} is out of range")
        try:
            if not want_time:
                return date(year, int(mo), int(d))
            return datetime(year, int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
        except ValueError:
            raise CoercionError("bad-date", f"{_shown(v)} is not a real date or time") from None

    def _offset_time(self, v: str, local: str, offset: str, want_time: bool) -> Any:
        """``local`` + UTC ``offset`` as wall-clock time in ``self.tz`` (naive, like every other time)."""
        moment = self._date_text(local, True)
        if offset.upper() == "Z":
            zone = timezone.utc
        else:
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        here = moment.replace(tzinfo=zone).astimezone(self.tz).replace(tzinfo=None)
        return here if want_time else here.date()

    def _other_date(self, v: Any) -> None:
        if v is None:
            return None
        if type(v) is time:
            raise CoercionError("bad-date", f"{_shown(v)} is a time of day without a date")
        if type(v) is bool:
            raise CoercionError("bad-date", f"{_shown(v)} is not a date")
        raise CoercionError("bad-date", f"{_shown(v)} ({type(v).__name__}) is not a date")

    def _number_text(self, v: str) -> float | None:
        s = v.strip()
        if s in self.blanks:  # before float(): an exception per empty cell would be slow
            return None
        try:
            x = float(s)  # "1200", "1200.5", "1.2E3"
        except ValueError:
            pass
        else:
            if x - x == 0.0:
                return x
            raise CoercionError("bad-number", f"{_shown(v)} is not a number")
        s = _nfkc(s).strip()  # ￥ -> ¥, full-width digits and commas
        if self._blank(s):
            return None
        bracketed = _BRACKETED_RE.match(s)
        if bracketed is not None:  # accounting notation: (1,200), ¥(1,200) and -(1,200) are -1200
            inner = self._number_text(bracketed.group(1) + bracketed.group(2))
            if inner is not None and inner >= 0:
                return -inner
            raise CoercionError("bad-number", f"{_shown(v)} is not a number")
        m = _AMOUNT_RE.match(s)
        if m is None or (m.group(2) is None and m.group(3) is None):
            if _FOREIGN_CURRENCY_RE.search(s):
                raise CoercionError("bad-number", f"{_shown(v)} is not in yuan (元): convert it to yuan in the export")
            raise CoercionError("bad-number", f"{_shown(v)} is not a number")
        sign, whole, frac, unit = m.groups()
        x = float((whole or "0").replace(",", "") + (frac or ""))
        if unit in ("万", "万元"):
            x *= 10000
        return -x if sign == "-" else x


def _num(x: float) -> str:
    return _format_float(float(x)) if math.isfinite(x) else ("-inf" if x < 0 else "inf")


def _date_number(x: float, raw: Any) -> date:
    _refuse_year(x, raw)
    if _SERIAL_MIN <= x < _SERIAL_MAX:
        return _EPOCH + timedelta(days=int(x))  # Excel serial; a time-of-day fraction is dropped
    if 19000101 <= x <= 29991231 and x == int(x):  # 20240517 typed as a number
        n = int(x)
        try:
            return date(n // 10000, n // 100 % 100, n % 100)
        except ValueError:
            pass
    raise CoercionError("bad-date", f"{_shown(raw)} is not a date (not an Excel date serial or YYYYMMDD)")


def is_mobile(phone: str | None) -> bool:
    """Whether ``phone`` is a mainland Chinese mobile number, the only kind an SMS reaches: ``13812345678``,
    ``+8613812345678``, ``86 138-1234-5678`` (spaces, dashes, dots and brackets allowed)."""
    return bool(phone) and _MOBILE_RE.fullmatch(_PHONE_DROP_RE.sub("", phone)) is not None


def phone_kind(phone: str | None) -> str | None:
    """What kind of number ``phone`` is, to say why an SMS cannot reach it: ``"mobile"`` (``is_mobile``),
    ``"foreign"`` (another country's code: +852 9123 4567, 001 415 555 0100), ``"landline"`` (a mainland
    landline: 0755-8888 1234, +86 10 1234 5678, 8888 1234), else ``"other"`` (a 400 service number, a
    number missing a digit); None for no number."""
    if not phone:
        return None
    if is_mobile(phone):
        return "mobile"
    s = _national(_PHONE_DROP_RE.sub("", phone))  # +86 and 0086 dropped as the reader drops them
    if s.startswith(("+", "00")) and not s.startswith("+86"):
        return "foreign"
    return "landline" if _LANDLINE_RE.fullmatch(s) else "other"


def _national(s: str) -> str:
    """A Chinese number with its country code (+86, 0086, 86) in the form dialled within China, as the
    same number is written without it: a mobile as its 11 digits, a landline with its trunk 0
    (+86 010 12345678 and +86 10 12345678 -> 01012345678). Anything else is kept as written."""
    if s.startswith("0086"):  # the international prefix dialled from China
        s = "+86" + s[4:]
    if s.startswith("+86"):
        rest = s[3:]
        if _PHONE_FAST_RE.match(rest) or (rest[:1] == "0" and rest[1:2] != "0"):
            return rest
        if _PHONE_AREA_NO_TRUNK_RE.match(rest):
            return "0" + rest
        return s
    if len(s) == 13 and s.startswith("86") and _PHONE_FAST_RE.match(s[2:]):  # 86-13812345678, (86)138…
        return s[2:]
    return s


# An id kept as a number with more than 15 digits: Excel keeps 15 significant digits, so the rest are
# gone (202511200000012345 is stored as 202511200000012000) and different ids read as one.
LONG_NUMBER_ID = 1e15


def _long_number_id(v: Any) -> CoercionError:
    # The Chinese wording (此编号超过 15 位数字…) is engine/reject_text.py's, as for every code.
    return CoercionError("long-number-id", f"{_shown(v)} is an id of more than 15 digits stored as a number: Excel "
                                           "has lost its last digits; format the column as text in the export")


def _refuse_year(x: float, raw: Any) -> None:
    """A number 1900-2999 in a date column is a year typed alone (a birthday "1985"), or a year and month
    typed as a number ("1985.05"), not the Excel serial it would also be (1985 = 1905-06-07, 1985.05 the
    same day at 01:12): refuse it rather than invent a date."""
    if 1900 <= x < 3000:
        if x == int(x):
            raise CoercionError("bad-date", f"{_shown(raw)} looks like a year, not a date: write the whole date "
                                f"(e.g. {int(x)}-05-17)")
        raise CoercionError("bad-date", f"{_shown(raw)} looks like a year (and month) typed as a number, not a date: "
                            f"write the whole date (e.g. {int(x)}-05-17)")


def _datetime_number(x: float, raw: Any) -> datetime:
    _refuse_year(x, raw)
    if _SERIAL_MIN <= x < _SERIAL_MAX:
        # Round to the second: serials are binary fractions of a day.
        return _EPOCH_DT + timedelta(seconds=round(x * 86400))
    d = _date_number(x, raw)
    return datetime(d.year, d.month, d.day)


# Module-level converters with the default spellings (handy in code and tests).
DEFAULT = Coercer()
to_text = DEFAULT.to_text
to_person = DEFAULT.to_person
to_id = DEFAULT.to_id
to_phone = DEFAULT.to_phone
to_email = DEFAULT.to_email
to_date = DEFAULT.to_date
to_datetime = DEFAULT.to_datetime
to_number = DEFAULT.to_number
to_int = DEFAULT.to_int
to_bool = DEFAULT.to_bool
