"""Write styled, deterministic ``.xlsx`` workbooks (task sheets, rejects, audit).

The writer is rustpy-xlsxwriter (Python binding of John McNamara's rust_xlsxwriter, the Rust port of
XlsxWriter): about ten times faster per cell than XlsxWriter, which matters at 100,000 customers.

What every sheet gets:

* a styled header row (bold, fill, border, wrapped), frozen so it stays visible when scrolling;
* an autofilter over the header and all data rows;
* column widths that fit the content, counting CJK / full-width characters as 2 display units
  (capped at ``MAX_WIDTH``; an explicit ``Column.width`` wins);
* cells converted by column kind (text, number, date) before they reach the writer; a text cell
  is always stored as text, never as a formula, whatever it starts with.

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
"modified" property is set to ``created`` (default ``FIXED_CREATED``) and every zip member gets a
constant 1980 timestamp; nothing else in the file depends on the clock.

Strings are stored inline (no shared-string table); Excel, WPS, LibreOffice and openpyxl read both.
"""
from __future__ import annotations

import io
import math
import os
import re
import struct
import zipfile
import zlib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import rustpy_xlsxwriter as rx

# Default "created" property: a constant so output does not depend on the clock.
FIXED_CREATED = datetime(2000, 1, 1, tzinfo=timezone.utc)

MAX_WIDTH = 60.0  # display units; longer text wraps/clips in Excel, that's fine
MIN_WIDTH = 6.0
FILTER_BUTTON = 2  # room for the autofilter drop-down arrow in the header cell
PADDING = 2

KINDS = ("text", "number", "money", "int", "date", "datetime", "percent")
_NUMBER_KINDS = ("number", "money", "int", "percent")

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

HEADER_FILL = "#DDEBF7"  # header row: bold, this fill, thin border, wrapped, vertically centred

_INJECTION_START = ("=", "+", "-", "@", "\t", "\r", "\n")  # \r is stored as \n (_clean_text)
# A signed number or phone number: harmless even as a formula (no letters, no references).
_PLAIN_SIGNED_NUMBER = re.compile(r"[+-][0-9][0-9 .,\-]*")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # keeps \t and \n
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\\x00-\x1f\x7f]")  # and control characters: invalid XML
SHEET_NAME_MAX = 31


@dataclass(frozen=True)
class Column:
    header: str
    width: float | None = None  # None: fit the content
    kind: str = "text"  # one of KINDS
    key: str | None = None  # record key for sheet_from_dicts(); default: header
    wrap: bool = False  # long text (reasons, scripts, message bodies) wraps in the cell instead of being cut off

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


def _quick_width(text: str) -> int:
    """``display_width`` estimated from the UTF-8 length, for whole columns: ASCII counts 1 and CJK
    (3 bytes in UTF-8) counts 2, like ``display_width``; other scripts are rounded up. Exact
    enough for a column width and ten times faster than asking unicodedata per character."""
    if "\n" in text:
        return display_width(text)
    return (len(text.encode("utf-8")) + len(text) + 1) // 2


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


@dataclass
class Workbook:
    """A workbook to write later or in another process (engine.parallel): its sheets, their rows
    as lists, and its title."""

    sheets: list[Sheet]
    title: str | None = None

    def write(self, path: Path) -> None:
        write_workbook(path, self.sheets, title=self.title)


def write_workbooks(folder: Path, workbooks: Mapping[str, Workbook]) -> None:
    """Each workbook into ``folder`` under its file name."""
    for name, workbook in workbooks.items():
        workbook.write(Path(folder) / name)


def write_workbook(
    path: Path,
    sheets: list[Sheet],
    *,
    created: datetime | None = None,
    title: str | None = None,
) -> None:
    """Write ``sheets`` to ``path`` (overwritten). Rows are consumed once. If writing fails no
    partial file is left behind and the error is re-raised."""
    path = Path(path)
    buffer = io.BytesIO()
    writer = rx.FastExcel(buffer, output_format="xlsx")
    taken: set[str] = set()
    whole: dict[str, tuple[set[str], set[str]]] = {}  # sheet part -> its cells that hold Python ints
    for number, sheet in enumerate(sheets, start=1):
        name = sanitize_sheet_name(sheet.name, taken)
        data, options, ints = _sheet_data(sheet)
        writer.sheet(name, data, **options)
        if ints[0] or ints[1]:
            whole[f"xl/worksheets/sheet{number}.xml"] = ints
    writer.freeze(row=1).save()
    tmp = path.with_name(path.name + ".tmp")
    try:
        _write_reproducible_zip(buffer.getvalue(), tmp, created or FIXED_CREATED, title, whole)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sheet_data(sheet: Sheet) -> tuple[Any, dict[str, Any], tuple[set[str], set[str]]]:
    """The rows as records keyed by header, the sheet's options (widths, formats, filter), and where
    it holds whole numbers (``_int_cells``)."""
    columns = sheet.columns
    headers = [escape_text(_clean_text(c.header)) for c in columns]
    if len(set(headers)) != len(headers):
        raise ValueError(f"sheet {sheet.name!r}: two columns have the same header")
    ncols = len(columns)
    rows: list[Sequence[Any]] = sheet.rows if isinstance(sheet.rows, list) else list(sheet.rows)
    if len(rows) >= EXCEL_MAX_ROWS:
        # Losing tasks quietly is worse than failing.
        raise ValueError(f"sheet {sheet.name!r}: more than {EXCEL_MAX_ROWS - 1} data rows")
    for row_index, values in enumerate(rows, start=1):
        if len(values) != ncols:
            raise ValueError(
                f"sheet {sheet.name!r} data row {row_index}: {len(values)} values for {ncols} columns"
            )
    # Converted column by column: one tight loop per column is several times faster than cell by cell.
    widths = []
    cells_by_column = []
    for col, column in enumerate(columns):
        cells = _convert_column(column.kind, [row[col] for row in rows])
        cells_by_column.append(cells)
        if column.width is not None:
            widths.append(column.width)
        else:
            shown = max(display_width(headers[col]) + FILTER_BUTTON, _column_width(column.kind, cells))
            widths.append(min(max(shown + PADDING, MIN_WIDTH), MAX_WIDTH))
    del rows
    # Rewriting a big sheet's XML costs ~2 s and ~250 MB at 100,000 customers (customers.xlsx): past
    # INT_CELLS_MAX_ROWS its whole numbers stay as rust_xlsxwriter writes them (1.0; Excel shows 1).
    ints = _int_cells(columns, cells_by_column) if len(cells_by_column[0] if cells_by_column else ()) <= INT_CELLS_MAX_ROWS else (set(), set())
    formats = {headers[col]: _number_format(c.kind) for col, c in enumerate(columns) if c.kind in NUM_FORMATS}
    formats.update({headers[col]: rx.Format().set_text_wrap().set_align("top") for col, c in enumerate(columns)
                    if c.wrap and c.kind == "text"})
    options: dict[str, Any] = {"header_format": _header_format(), "autofilter": True, "column_widths": widths}
    if formats:
        options["column_formats"] = formats
    # Records are made one at a time as the writer takes them. No rows: one record of empty cells
    # gives the header row and its filter (a list of no records would give an empty sheet).
    data: Any = ((dict(zip(headers, cells)) for cells in zip(*cells_by_column)) if cells_by_column and cells_by_column[0]
                 else [dict.fromkeys(headers)])
    return data, options, ints


INT_CELLS_MAX_ROWS = 50_000


def _int_cells(columns: list[Column], cells_by_column: list[list[Any]]) -> tuple[set[str], set[str]]:
    """The columns (letters) whose numbers are all Python ints, and the int cells (``"B7"``) of columns
    that mix them with floats. rust_xlsxwriter writes every number as ``<v>1.0</v>``, which openpyxl
    and other readers take for a float; ``_write_reproducible_zip`` writes these as ``<v>1</v>``."""
    letters: set[str] = set()
    cells: set[str] = set()
    for col, values in enumerate(cells_by_column):
        # Only number kinds hold numbers (``_convert_column`` makes anything else text or a date).
        if columns[col].kind not in _NUMBER_KINDS or not any(type(v) is int for v in values):
            continue
        letter = _column_letter(col)
        if not any(type(v) is float for v in values):
            letters.add(letter)
        else:
            cells.update(f"{letter}{row}" for row, v in enumerate(values, start=2) if type(v) is int)
    return letters, cells


def _column_letter(col: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _header_format() -> rx.Format:
    return (rx.Format().set_bold().set_background_color(HEADER_FILL).set_border("thin")
            .set_text_wrap().set_align("vcenter"))


def _number_format(kind: str) -> rx.Format:
    return rx.Format().set_num_format(NUM_FORMATS[kind])


# Every zip member gets the same timestamp and the document properties a fixed "created" time, so
# the same sheets give the same bytes. rust_xlsxwriter already stamps every member 1980-01-01, but it
# stamps core.xml's properties with the clock and has no setting for that in the Python binding, so
# the package is copied with core.xml replaced.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_W3CDTF = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _ints_as_ints(xml: bytes, columns: set[str], cells: set[str]) -> bytes:
    """``xml`` with the whole-number cells of ``columns`` / ``cells`` written as integers: rust_xlsxwriter
    writes ``<c r="D2" s="1"><v>59.0</v></c>``, this makes it ``<v>59</v>``."""
    # Only cells of these columns can match: twice as fast as matching every number cell first.
    letters = sorted(columns | {cell.rstrip("0123456789") for cell in cells})
    pattern = re.compile(rb'(<c r="(' + "|".join(letters).encode() + rb')(\d+)"(?: s="\d+")?><v>-?\d+)\.0</v>')
    if not cells:
        return pattern.sub(rb"\1</v>", xml)
    wanted = {c.encode() for c in columns}
    refs = {c.encode() for c in cells}

    def integer(m: re.Match) -> bytes:
        if m.group(2) in wanted or m.group(2) + m.group(3) in refs:
            return m.group(1) + b"</v>"
        return m.group(0)

    return pattern.sub(integer, xml)


def _write_reproducible_zip(package: bytes, target: Path, created: datetime, title: str | None,
                            whole: Mapping[str, tuple[set[str], set[str]]] | None = None) -> None:
    """``package`` (the .xlsx rust_xlsxwriter made) into ``target`` with core.xml's clock stamp replaced
    by ``created`` (and ``title`` added), and the whole numbers of the sheets in ``whole`` written as
    integers. Only those members are decompressed and compressed again; every other member's compressed
    bytes are copied as they are (at 100,000 customers recompressing them cost ~1 CPU-s of the run)."""
    stamp = created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    whole = whole or {}
    with zipfile.ZipFile(io.BytesIO(package)) as src:
        members = []
        for info in src.infolist():
            data = _changed_content(src, info, stamp, title, whole)
            members.append(_Member(info.filename, info.compress_type, info.CRC, info.file_size, _raw_data(package, info))
                           if data is None else _deflated(info.filename, data))
        if len(members) < 0xFFFF and all(m.size < _ZIP32_LIMIT for m in members) \
                and sum(len(m.data) + 2 * len(m.name) + 200 for m in members) < _ZIP32_LIMIT:
            target.write_bytes(_zip_archive(members))
            return
        # Past what a zip without ZIP64 records holds (never at 100,000 customers): zipfile writes them.
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = _changed_content(src, info, stamp, title, whole)
                data = src.read(info) if data is None else data
                member = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
                member.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(member, data, compresslevel=_compress_level(data))


def _changed_content(src: zipfile.ZipFile, info: zipfile.ZipInfo, stamp: bytes, title: str | None,
                     whole: Mapping[str, tuple[set[str], set[str]]]) -> bytes | None:
    """The new content of a member that ``_write_reproducible_zip`` changes, None for the others."""
    if info.filename == "docProps/core.xml":
        data = _W3CDTF.sub(stamp, src.read(info))
        if title:
            data = data.replace(b"<dc:creator>", f"<dc:title>{xml_escape(title)}</dc:title><dc:creator>".encode(), 1)
        return data
    if info.filename in whole:
        return _ints_as_ints(src.read(info), *whole[info.filename])
    return None


def _compress_level(data: bytes) -> int:
    # Level 1 on the big sheet parts: they are on the hot path of a 100,000-row run.
    return 1 if len(data) > 1_000_000 else 6


@dataclass(frozen=True)
class _Member:
    name: str
    method: int  # zipfile.ZIP_DEFLATED or ZIP_STORED
    crc: int
    size: int  # uncompressed
    data: bytes  # as stored in the archive


def _deflated(name: str, data: bytes) -> _Member:
    compressor = zlib.compressobj(_compress_level(data), zlib.DEFLATED, -15)  # raw deflate, as a zip stores it
    return _Member(name, zipfile.ZIP_DEFLATED, zlib.crc32(data), len(data), compressor.compress(data) + compressor.flush())


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")
_END_OF_CENTRAL_DIRECTORY = struct.Struct("<4s4H2LH")
_ZIP32_LIMIT = 0xFFFFFFFF  # sizes and offsets at or past it need ZIP64 records
_DOS_DATE = (_ZIP_TIME[0] - 1980) << 9 | _ZIP_TIME[1] << 5 | _ZIP_TIME[2]  # DOS time 0 is 00:00:00
_VERSION = 20  # "2.0": deflate


def _raw_data(package: bytes, info: zipfile.ZipInfo) -> bytes:
    """A member's data as stored (compressed), found through its local header (ZIP spec 4.3.7)."""
    offset = info.header_offset
    signature, *_, name_length, extra_length = _LOCAL_HEADER.unpack_from(package, offset)
    if signature != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{info.filename}: no local file header at {offset}")
    start = offset + _LOCAL_HEADER.size + name_length + extra_length
    return package[start:start + info.compress_size]


def _zip_archive(members: list[_Member]) -> bytes:
    """A zip archive of ``members`` in order, each stamped ``_ZIP_TIME`` (ZIP spec 4.3; no ZIP64).
    Written here because Python's zipfile cannot store data that is already compressed."""
    body = io.BytesIO()
    central = io.BytesIO()
    for m in members:
        name = m.name.encode("utf-8")
        flags = 0 if m.name.isascii() else 0x800  # bit 11: the name is UTF-8
        offset = body.tell()
        body.write(_LOCAL_HEADER.pack(b"PK\x03\x04", _VERSION, flags, m.method, 0, _DOS_DATE,
                                      m.crc, len(m.data), m.size, len(name), 0))
        body.write(name)
        body.write(m.data)
        central.write(_CENTRAL_HEADER.pack(b"PK\x01\x02", 3 << 8 | _VERSION, _VERSION, flags, m.method, 0, _DOS_DATE,
                                           m.crc, len(m.data), m.size, len(name), 0, 0, 0, 0, 0o100644 << 16, offset))
        central.write(name)
    directory = central.getvalue()
    end = _END_OF_CENTRAL_DIRECTORY.pack(b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), body.tell(), 0)
    return body.getvalue() + directory + end


def _convert_column(kind: str, values: list[Any]) -> list[Any]:
    """The values as they go into the cells: text cleaned and escaped, whole numbers (Python ints, not
    bools) as ints, other numbers as floats, dates as dates; ``None`` for an empty cell. Anything that
    does not fit the kind is kept as text."""
    if kind == "text":
        # Fast path: an ordinary printable string needs no change.
        return [v if type(v) is str and v and v.isprintable() and not v.startswith(_INJECTION_START)
                and len(v) <= MAX_STRING else _cell(kind, v) for v in values]
    if kind in ("date", "datetime"):
        return [v if type(v) is date or (type(v) is datetime and v.tzinfo is None) else _cell(kind, v)
                for v in values]
    return [v if type(v) is int and -_EXACT_INT < v < _EXACT_INT
            else float(v) if (type(v) is float or type(v) is int) and math.isfinite(v) else _cell(kind, v)
            for v in values]


_EXACT_INT = 2 ** 53  # beyond it a cell's number (a double) no longer holds every whole number


def _column_width(kind: str, cells: list[Any]) -> int:
    """Display width of the widest cell (the caller caps it at ``MAX_WIDTH``)."""
    texts = {c for c in cells if type(c) is str}
    best = max(map(_quick_width, texts), default=0)
    if kind in _DATE_WIDTH:
        if any(isinstance(c, date) for c in cells):
            best = max(best, _DATE_WIDTH[kind])
    elif kind != "text":
        numbers = {c for c in cells if type(c) is float or type(c) is int}
        if numbers:
            best = max(best, max(len(_number_display(kind, n)) for n in (min(numbers), max(numbers))))
            if kind == "number":  # %g output is not monotone in the value
                best = max(best, max(len(_number_display(kind, n)) for n in numbers))
    return best


def _cell(kind: str, value: Any) -> Any:
    """One value as it goes into a cell (the careful path of ``_convert_column``)."""
    if value is None or value == "":
        return None
    if kind == "text":
        return _text(_to_text(value))
    if kind in ("date", "datetime"):
        if isinstance(value, (date, datetime)):  # datetime is a date subclass
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.replace(tzinfo=None)  # Excel has no time zones: keep the wall-clock time
            return value
        # Not a date (e.g. an unparsed export value): keep it visible as text.
        return _text(_to_text(value))
    # number, money, int, percent
    number = _to_number(value)
    if number is None:
        return _text(_to_text(value))
    return number


def _text(text: str) -> str | None:
    # Cleaned first: "\x01=HYPERLINK(…)" would lose its control character only after the check.
    text = escape_text(_clean_text(text))
    if len(text) > MAX_STRING:
        text = text[:MAX_STRING]  # Excel's hard limit for one cell
    return text or None


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
