"""Write styled, deterministic ``.xlsx`` workbooks (task sheets, rejects, audit) with XlsxWriter.

What every sheet gets:

* a styled header row (bold, fill, border, wrapped), frozen so it stays visible when scrolling;
* an autofilter over the header and all data rows;
* column widths that fit the content, counting CJK / full-width characters as 2 display units
  (capped at ``MAX_WIDTH``; an explicit ``Column.width`` wins);
* cells written by column kind with explicit ``write_string`` / ``write_number`` /
  ``write_datetime`` calls. We never call ``worksheet.write()`` with data: it would turn a text
  like ``=HYPERLINK(...)`` into a live formula.

Formula-injection guard (OWASP "CSV injection" advice): a text cell whose first character is one of
``= + - @``, TAB or CR is written with a literal apostrophe in front, e.g. ``=1+2`` is stored as the
text ``'=1+2``. The cell is a plain string cell either way; the apostrophe additionally keeps the
value inert if someone edits the cell in Excel/WPS or saves the sheet as CSV and opens it elsewhere.
Exception, so ordinary data stays readable: a text that is only a signed number or phone number
(a ``+``/``-`` followed by digits, spaces, ``.``, ``,``, ``-``; e.g. ``-5``, ``+86 138 0013 8000``)
is written unchanged, because such a text cannot call a function or reference anything even if
Excel did evaluate it. Text is also cleaned: CR LF / CR become LF (Excel's in-cell line break) and
other control characters are dropped.

Deterministic bytes: the same sheets produce a byte-identical file. The document "created" /
"modified" property is set to ``created`` (default ``FIXED_CREATED``), and XlsxWriter itself stamps
every zip member with a constant 1980 timestamp; nothing else in the file depends on the clock.

Memory: by default the workbook is written in XlsxWriter's ``constant_memory`` mode, so a 100,000
row sheet is streamed row by row to disk instead of being held in memory. Rows are consumed in one
pass: column widths are measured while the rows are written and set at the end (XlsxWriter writes
the ``<cols>`` element when it assembles the sheet, so late ``set_column`` calls are fine in this
mode), and the autofilter is set once the last row is known. In this mode strings are stored
inline rather than in the shared-string table; Excel, WPS, LibreOffice and openpyxl read both.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import xlsxwriter

# Default "created" property: a constant so output does not depend on the clock.
FIXED_CREATED = datetime(2000, 1, 1, tzinfo=timezone.utc)

MAX_WIDTH = 60.0  # display units; longer text wraps/clips in Excel, that's fine
MIN_WIDTH = 6.0
FILTER_BUTTON = 2  # room for the autofilter drop-down arrow in the header cell
PADDING = 2

KINDS = ("text", "number", "money", "int", "date", "datetime", "percent")

# Number formats per kind ("General" for plain numbers).
NUM_FORMATS = {
    "money": "0.00",
    "int": "0",
    "date": "yyyy-mm-dd",
    "datetime": "yyyy-mm-dd hh:mm",
    "percent": "0.00%",
}
# Display width of a formatted date/datetime cell.
_DATE_WIDTH = {"date": 10, "datetime": 16}

EXCEL_MAX_ROWS = 1_048_576  # including the header row
MAX_STRING = 32767  # Excel's limit for one cell's text

HEADER_STYLE = {
    "bold": True,
    "bg_color": "#DDEBF7",
    "border": 1,
    "text_wrap": True,
    "valign": "vcenter",
}

_INJECTION_START = ("=", "+", "-", "@", "\t", "\r")
# A signed number or phone number: harmless even as a formula (no letters, no references).
_PLAIN_SIGNED_NUMBER = re.compile(r"[+-][0-9][0-9 .,\-]*")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # keeps \t and \n
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
SHEET_NAME_MAX = 31


@dataclass(frozen=True)
class Column:
    header: str
    width: float | None = None  # None: fit the content
    kind: str = "text"  # one of KINDS
    key: str | None = None  # record key for sheet_from_dicts(); default: header

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.header!r}: unknown kind {self.kind!r}, expected one of {KINDS}")


@dataclass
class Sheet:
    name: str
    columns: list[Column]
    rows: Iterable[Sequence[Any]]  # consumed once, may be a generator


def sheet_from_dicts(name: str, records: Iterable[Mapping[str, Any]], columns: list[Column]) -> Sheet:
    """A sheet whose rows are taken from mappings by ``column.key`` (or the header). Lazy: a
    generator of records stays a generator. A missing key gives an empty cell."""
    keys = [c.key if c.key is not None else c.header for c in columns]
    rows = ([record.get(k) for k in keys] for record in records)
    return Sheet(name=name, columns=list(columns), rows=rows)


def escape_text(text: str) -> str:
    """The text as it is stored in a cell: with a leading ``'`` if Excel could read it as a
    formula (see module doc)."""
    if text.startswith(_INJECTION_START) and not _PLAIN_SIGNED_NUMBER.fullmatch(text):
        return "'" + text
    return text


def display_width(text: str) -> int:
    """Width in Excel column units: CJK / full-width characters count 2, others 1. For multi-line
    text the longest line counts."""
    if "\n" in text:
        return max(display_width(line) for line in text.split("\n"))
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def sanitize_sheet_name(name: str, taken: set[str] | None = None) -> str:
    """A valid, unique Excel sheet name: no ``[]:*?/\\`` (replaced by ``_``), no leading/trailing
    apostrophe, at most 31 (UTF-16) characters, not "History" (reserved by Excel), and not equal,
    ignoring case, to a name in ``taken`` (a ``~2``, ``~3``... suffix is added). ``taken`` holds
    lower-cased names and is updated."""
    clean = _BAD_SHEET_CHARS.sub("_", name).strip().strip("'").strip()
    if not clean:
        clean = "Sheet"
    if clean.lower() == "history":
        clean += "_"
    clean = _truncate_utf16(clean, SHEET_NAME_MAX)
    if taken is None:
        return clean
    candidate = clean
    n = 1
    while candidate.lower() in taken:
        n += 1
        suffix = f"~{n}"
        candidate = _truncate_utf16(clean, SHEET_NAME_MAX - len(suffix)).rstrip("'") + suffix
    taken.add(candidate.lower())
    return candidate


def _truncate_utf16(text: str, limit: int) -> str:
    while _utf16_len(text) > limit:
        text = text[:-1]
    return text


def write_workbook(
    path: Path,
    sheets: list[Sheet],
    *,
    created: datetime | None = None,
    title: str | None = None,
    constant_memory: bool = True,
) -> None:
    """Write ``sheets`` to ``path`` (overwritten). Rows are consumed once. If writing fails the
    partial file is removed and the error re-raised."""
    path = Path(path)
    options = {
        "constant_memory": constant_memory,
        # Belt and braces: never guess types from strings, we write explicitly by kind anyway.
        "strings_to_formulas": False,
        "strings_to_numbers": False,
        "strings_to_urls": False,
        # Aware datetimes: keep the wall-clock time (Excel has no time zones).
        "remove_timezone": True,
    }
    workbook = xlsxwriter.Workbook(str(path), options)
    try:
        props: dict[str, Any] = {"created": created or FIXED_CREATED}
        if title:
            props["title"] = title
        workbook.set_properties(props)
        formats = _Formats(workbook)
        taken: set[str] = set()
        for sheet in sheets:
            _write_sheet(workbook, formats, sheet, sanitize_sheet_name(sheet.name, taken))
    except BaseException:
        # Don't leave a half-written workbook behind; close() also removes XlsxWriter's temp files.
        try:
            workbook.close()
        finally:
            path.unlink(missing_ok=True)
        raise
    workbook.close()


class _Formats:
    """One XlsxWriter Format per kind (formats must be created on the workbook)."""

    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        self.header = workbook.add_format(HEADER_STYLE)
        self.by_kind = {kind: None for kind in KINDS}
        for kind, num_format in NUM_FORMATS.items():
            self.by_kind[kind] = workbook.add_format({"num_format": num_format})


def _write_sheet(workbook: xlsxwriter.Workbook, formats: _Formats, sheet: Sheet, name: str) -> None:
    ws = workbook.add_worksheet(name)
    columns = sheet.columns
    ncols = len(columns)
    if ncols == 0:
        return
    # Widths measured while writing (one pass over the rows).
    widths = [display_width(c.header) + FILTER_BUTTON for c in columns]
    measure = [c.width is None for c in columns]

    for col, column in enumerate(columns):
        ws.write_string(0, col, _clean_text(escape_text(column.header)), formats.header)
    ws.freeze_panes(1, 0)

    kinds = [c.kind for c in columns]
    cell_formats = [formats.by_kind[k] for k in kinds]
    row_index = 0
    for row_index, values in enumerate(sheet.rows, start=1):
        if row_index >= EXCEL_MAX_ROWS:
            # XlsxWriter would silently drop the rest; losing tasks quietly is worse than failing.
            raise ValueError(f"sheet {sheet.name!r}: more than {EXCEL_MAX_ROWS - 1} data rows")
        if len(values) != ncols:
            raise ValueError(
                f"sheet {sheet.name!r} data row {row_index}: {len(values)} values for {ncols} columns"
            )
        for col in range(ncols):
            value = values[col]
            if value is None or value == "":
                continue  # empty cell
            floor = widths[col] if measure[col] else MAX_STRING
            shown = _write_cell(ws, row_index, col, kinds[col], value, cell_formats[col], floor)
            if shown > widths[col]:
                widths[col] = shown
                if shown >= MAX_WIDTH:
                    measure[col] = False  # capped: stop measuring this column

    last_row = row_index
    ws.autofilter(0, 0, last_row, ncols - 1)
    for col, column in enumerate(columns):
        if column.width is not None:
            width = column.width
        else:
            width = min(max(widths[col] + PADDING, MIN_WIDTH), MAX_WIDTH)
        ws.set_column(col, col, width)


def _write_cell(ws, row: int, col: int, kind: str, value: Any, fmt, floor: int) -> int:
    """Write one non-empty value; return its display width, or 0 if it is surely not wider than
    ``floor`` (measuring every text is the slow part)."""
    if kind == "text":
        return _write_text(ws, row, col, _to_text(value), floor)
    if kind in ("date", "datetime"):
        if isinstance(value, (date, datetime)):  # datetime is a date subclass
            ws.write_datetime(row, col, value, fmt)
            return _DATE_WIDTH[kind]
        if isinstance(value, time):
            ws.write_datetime(row, col, value, fmt)
            return _DATE_WIDTH[kind]
        # Not a date (e.g. an unparsed export value): keep it visible as text.
        return _write_text(ws, row, col, _to_text(value), floor)
    # number, money, int, percent
    number = _to_number(value)
    if number is None:
        return _write_text(ws, row, col, _to_text(value), floor)
    ws.write_number(row, col, number, fmt)
    return len(_number_display(kind, number))


def _write_text(ws, row: int, col: int, text: str, floor: int) -> int:
    text = _clean_text(escape_text(text))
    if len(text) > MAX_STRING:
        text = text[:MAX_STRING]  # Excel's hard limit; XlsxWriter would truncate with a warning
    ws.write_string(row, col, text)
    if 2 * len(text) <= floor:
        return 0  # at most 2 units a character: cannot be wider than the column already is
    return display_width(text)


def _clean_text(text: str) -> str:
    """Line breaks as ``\n`` (what Excel uses inside a cell) and no other control characters:
    XlsxWriter would store them as ``_x000D_``-style escapes that many readers show verbatim."""
    if text.isprintable():
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL_CHARS.sub("", text)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _to_number(value: Any) -> float | None:
    """A finite float, or None if the value is not a number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return None
    return number


def _number_display(kind: str, number: float) -> str:
    if kind == "money":
        return f"{number:.2f}"
    if kind == "int":
        return f"{number:.0f}"
    if kind == "percent":
        return f"{number * 100:.2f}%"
    return f"{number:g}" if abs(number) < 1e15 else repr(number)
