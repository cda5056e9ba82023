"""Read an inbox of Excel exports into facts.

``read_inbox`` opens every ``*.xlsx`` in the inbox with python-calamine, recognises which sheets hold
customers, interactions and orders (by sheet name, else by headers, else by file name), finds the header
row, converts each column with the converters of ``engine.coerce`` and returns a ``Dataset``.

Rows that cannot be used become ``Reject`` records (the run continues); see ``docs/inputs.md`` for the
rules (reject codes, the duplicate-id rule, bad optional cells). Only an export that cannot be used at
all (no customers table, a required column missing, an unreadable file) raises ``InputError``.

Speed: the work is done column by column with ``map`` over the values calamine returns, so the
per-cell cost is one call of a converter; rows are only looked at one by one when something is wrong.
"""
from __future__ import annotations

import dataclasses
import html
import logging
import os
import re
import zipfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import time, timedelta, timezone
from itertools import compress, islice, repeat
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, Callable, Sequence
from zoneinfo import ZoneInfo

from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook, SheetVisibleEnum

from .coerce import Coercer, CoercionError, spellings
from .columns import (
    HEADER_CURRENCIES,
    HEADER_SCALES,
    HEADER_SCAN_ROWS,
    HEADER_ZONES,
    TABLE_CLASSES,
    ColumnsSpec,
    HeaderMatch,
    TableSpec,
    find_header,
    header_key,
    load_columns,
    unit_text,
)
from .memory import gc_paused, release_free_memory
from .errors import WARNING, InputError, Location, Problem
from .model import Dataset, Reject, SheetColumns, SourceRow, source_rows

__all__ = ["read_inbox", "load_columns", "export_files"]

log = logging.getLogger(__name__)

PARSE_THREADS = 2  # the machine we size for has two cores

_OLE_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")  # the OLE2 header: .xls, and Office's encrypted files

_HIDDEN = "hidden"  # _parse_workbook's mark for a sheet it did not parse because it is hidden


class _Oversized(str):
    """_parse_workbook's mark for a sheet it did not parse because its used range is enormous (the text: that range)."""

_NOT_EXPORTS = ("~$", "._", ".")  # name starts: Excel lock files, macOS metadata, hidden files


def export_files(inbox: Path) -> list[Path]:
    """The workbooks ``read_inbox`` reads from ``inbox``, in the order it reads them: by name without
    the extension, so a copy saved beside an export ("customers (1).xlsx", "customers - 副本.xlsx",
    "客户信息-新.xlsx") comes after it and its rows win (by full name " ", "(" and "-" sort before ".")."""
    return sorted((p for p in Path(inbox).iterdir() if p.is_file() and not p.name.startswith(_NOT_EXPORTS)
                   and p.suffix.lower() == ".xlsx"), key=lambda p: (p.stem, p.name))


_OTHER_SPREADSHEETS = (".xls", ".xlsm", ".xlsb", ".csv", ".ods", ".et")
TABLE_ZH = {"customers": "客户", "interactions": "互动记录", "orders": "订单"}  # in bilingual warnings


def read_inbox(inbox: Path, columns: ColumnsSpec, *, warnings: list[Problem] | None = None) -> Dataset:
    """Read every ``*.xlsx`` export in ``inbox``.

    ``warnings`` (optional): a list that receives non-fatal ``Problem``s (ignored columns, sheets and
    files); the caller reports them (``crm-engine run`` prints them once, at the end), and they are
    logged at INFO. Without the list they are logged as warnings. Never with cell values.
    """
    inbox = Path(inbox)
    warn = warnings if warnings is not None else []
    if not inbox.is_dir():
        raise InputError(Problem("no-input", f"收件箱文件夹 {inbox} 不存在 / the inbox folder {inbox} does not exist",
                                 Location(file=str(inbox)),
                                 fix="建好这个文件夹，把 Excel 导出（*.xlsx）放进去 / create it and put the Excel exports "
                                     "(*.xlsx) in it"))
    files = export_files(inbox)
    for p in sorted(inbox.iterdir(), key=lambda p: p.name):
        if p.suffix.lower() == ".xlsx" and p.is_symlink() and not p.exists():
            # Skipping it would run the batch without that export (e.g. no interactions: no SLA, no churn).
            raise InputError(Problem("unreadable-file", f"{p.name} 是指向 {os.readlink(p)} 的链接，但那个文件不存在 / "
                                     f"{p.name} is a link to {os.readlink(p)}, which does not exist", Location(file=p.name),
                                     fix="把导出文件本身复制进收件箱，或修好这个链接 / copy the export itself into the inbox, "
                                         "or fix the link"))
        if p.is_file() and p.name.startswith("~$") and p.suffix.lower() in (".xlsx", *_OTHER_SPREADSHEETS):
            _warn(warn, _open_in_excel(p.name, files))
        if p.is_file() and not p.name.startswith(_NOT_EXPORTS) and p.suffix.lower() in _OTHER_SPREADSHEETS:
            _warn(warn, Problem("ignored-file", f"{p.name} 不是 .xlsx 文件，没有读取 / {p.name} is not an .xlsx file "
                                "and was not read", Location(file=p.name), WARNING,
                                fix="在 Excel 里另存为 .xlsx（Excel 工作簿） / save it as .xlsx (Excel Workbook)"))
    if not files:
        raise InputError(Problem("no-input", f"{inbox} 里没有 .xlsx 文件 / no .xlsx files in {inbox}",
                                 Location(file=str(inbox)),
                                 fix="把客户、互动记录和订单的导出（*.xlsx）放进收件箱 / put the customer, interaction and "
                                     "order exports (*.xlsx) in the inbox"))

    with gc_paused():  # millions of new objects and no reference cycles
        dataset = _read_files(inbox, files, columns, warn)
    if warnings is None:  # nobody else will say them
        for problem in warn:
            log.warning("%s", problem)
    return dataset


def _open_in_excel(lock: str, files: list[Path]) -> Problem:
    """The warning for Excel's lock file ``~$…``: the workbook is open, and what is read is what was last
    saved. Excel names the lock file after the workbook, with the first two characters of a longer name
    replaced by ``~$`` (客户信息表(1).xlsx: ~$客户信息表(1).xlsx or ~$信息表(1).xlsx)."""
    rest = lock[2:]
    book = next((f.name for f in files if f.name == rest), None) or next(
        (f.name for f in files if f.name.endswith(rest) and len(f.name) == len(rest) + 2), None)
    what = book or lock
    return Problem("workbook-open", f"{what} 正在 Excel 中打开（收件箱里有它的锁定文件 {lock}），可能有没保存的修改；读取的是上次保存的内容 / "
                   f"{what} is open in Excel (its lock file {lock} is in the inbox) and may have unsaved changes; "
                   "what was last saved is read", Location(file=what), WARNING,
                   fix="在 Excel 里保存并关闭它，再运行一次 / save and close it in Excel, then run again")


def _read_files(inbox: Path, files: list[Path], columns: ColumnsSpec, warn: list[Problem]) -> Dataset:
    parts: dict[str, list] = {name: [] for name in TABLE_CLASSES}
    found: dict[str, list[SheetColumns]] = {}  # tables seen in some sheet (even with no data rows) → those sheets
    rejects: list[Reject] = []
    coercer = columns.coercer()
    near_misses: list[tuple[HeaderMatch, list[Problem]]] = []  # sheets like a table but lacking a column
    dropped: dict[str, SourceRow] = {}  # customer id -> the row of it that was not read (a reject)
    # calamine parses a sheet without holding the GIL: the workbooks are parsed on two threads, the
    # biggest first, while this thread converts each one as soon as it is parsed (the small ones while
    # the biggest is still being parsed). What each file gave is then taken in file order, so the
    # result, the warnings and the first error do not depend on which parse ended first.
    read: dict[Path, _FileRead] = {}
    with ThreadPoolExecutor(max_workers=PARSE_THREADS) as pool:
        by_size = sorted(files, key=lambda f: f.stat().st_size, reverse=True)
        # One pass over each workbook's zip package: its start here (the date system, and the used ranges
        # calamine must not be asked to parse), the rest -- each sheet's XML, for the cells calamine reads as
        # empty and the hidden rows -- by whichever thread is free (the small workbooks' parse ends long before
        # the biggest one's).
        packages = {path: _open_package(path) for path in by_size}
        parsing = {pool.submit(_parse_workbook, path, packages[path].oversized): path for path in by_size}
        scanning = {path: pool.submit(_scan_package, packages[path]) for path in by_size}
        for future in as_completed(parsing):
            path = parsing.pop(future)
            read[path] = one = _FileRead()
            try:
                one.tables = _read_workbook(path, future.result(), columns, coercer, one.warnings, one.near_misses,
                                            packages[path].date1904)
            except InputError as exc:
                one.error = exc
            del future
            release_free_memory()  # the workbook's cells and raw rows are gone; don't keep their pages
    # Per workbook and table, the most columns a sheet named for the table has (see below).
    named: dict[tuple[Path, str], int] = {}
    for path, one in read.items():
        for part in one.tables:
            if part.by_name:
                named[path, part.table] = max(named.get((path, part.table), 0), part.columns)
    # Hidden sheets, said with any error that stops the read: a hidden 客户信息 is the likely fix.
    hidden = [p for one in read.values() for p in one.warnings if p.code == "hidden-sheet"]
    for path in files:
        one = read.pop(path)
        if one.error is not None:
            raise InputError([*one.error.problems, *hidden])
        for problem in one.warnings:
            _warn(warn, problem)
        near_misses.extend(one.near_misses)
        for part in one.tables:
            if not part.by_name and part.columns < named.get((path, part.table), 0):
                # A pivot or summary beside the table in the same workbook (客户编号, 客户名称, 求和项:…):
                # its rows would replace the real ones (duplicate ids keep the later row). A sheet with as
                # many of the table's columns (the rest of the rows on Sheet2) is read.
                zh = TABLE_ZH[part.table]
                _warn(warn, Problem("ignored-sheet", f"工作表 {part.sheet} 没有读取（{len(part.facts)} 行）：它的表头像{zh}，"
                                    f"但列比本工作簿的{zh}工作表少，像是数据透视表或汇总表 / sheet {part.sheet} was not read "
                                    f"({len(part.facts)} rows): its headers look like {part.table}, but with fewer of "
                                    f"their columns than the {part.table} sheet of this workbook, like a pivot or summary table",
                                    Location(file=path.name, sheet=part.sheet), WARNING,
                                    fix=f"若要读取它的行，给它与{zh}工作表相同的列，或照{zh}工作表命名（见 {columns.path} 的 "
                                        f"sheet_aliases） / if its rows should be read, give it the same columns as the "
                                        f"{part.table} sheet or name it like it (see sheet_aliases in {columns.path})"))
                continue
            found.setdefault(part.table, []).append(SheetColumns(part.table, path.name, part.sheet, frozenset(part.header.columns),
                                                                 tuple(part.header.unknown)))
            parts[part.table].extend(part.facts)
            if part.table == "customers":
                dropped.update(part.dropped)
            package = scanning[path].result()
            cells = package.cells.get(part.sheet)
            if cells:
                _report_empty_looking_cells(part, columns.tables[part.table], cells, path.name)
            hidden_rows = package.hidden_rows.get(part.sheet)
            if hidden_rows:
                _warn_hidden_rows(part, hidden_rows, part.sheet in package.filtered, path.name, warn)
            rejects.extend(part.rejects)
    # A sheet that looks like customers/interactions/orders but lacks a required column stops the run,
    # unless that table was read from another sheet (then it is an extra sheet, e.g. a pivot table).
    fatal = [p for match, problems in near_misses if match.table not in found for p in problems]
    if fatal:
        raise InputError([*fatal, *hidden])
    for match, problems in near_misses:
        sheet, zh, lacking = problems[0].location.sheet, TABLE_ZH[match.table], ", ".join(match.missing_required)
        lacking_zh = "、".join(columns.tables[match.table].fields[f].aliases[0] for f in match.missing_required)
        _warn(warn, Problem("ignored-sheet", f"工作表 {sheet} 没有读取：它像{zh}，但没有「{lacking_zh}」列；{zh}已从其他工作表读取 / "
                            f"sheet {sheet} was not read: it looks like {match.table} but has no column for {lacking}; "
                            f"{match.table} were read from other sheets", problems[0].location, WARNING))
    if "customers" not in found:
        aliases = ", ".join(columns.tables["customers"].sheet_aliases[:4])
        raise InputError([Problem(
            "missing-table", f"{inbox} 的 {len(files)} 个文件里都没有客户工作表 / none of the {len(files)} files in "
                             f"{inbox} has a customers sheet",
            Location(file=str(inbox)),
            fix=f"放入客户导出，或把它的工作表命名为 {aliases} 之类（见 {columns.path}） / add the customer export, or name "
                f"its sheet like {aliases} (see {columns.path})"), *hidden])
    for table in ("interactions", "orders"):
        if table not in found:
            # The inbox by its name, not its path: the warning is kept in the run folder, which must
            # read the same when verify re-runs it from the recorded (absolute) folders.
            zh = TABLE_ZH[table]
            _warn(warn, Problem("missing-table", f"收件箱 {inbox.name} 里没有{zh}工作表，本次运行没有{zh} / no {table} sheet "
                                f"found in the inbox {inbox.name}; continuing without {table}",
                                Location(file=inbox.name), WARNING))

    customers = _dedupe(parts["customers"], "customer_id", "customer id", rejects)
    if not customers:  # a header and no rows, or every row rejected: the run has nothing to decide
        _warn(warn, Problem("no-customers", f"收件箱 {inbox.name} 的客户表没有一行可用：不会为任何人做决定 / "
                            f"the customers sheet in the inbox {inbox.name} has no usable row; nothing is decided for anyone",
                            Location(file=inbox.name), WARNING,
                            fix="检查客户导出是完整的，而不只有表头（用不了的行列在 rejects.xlsx 里） / check that the customer "
                                "export is the full one, not only its header row (rows that could not be used are listed "
                                "in rejects.xlsx)"))
    interactions = _same_rows_in_two_files(_dedupe(parts["interactions"], "interaction_id", "interaction id", rejects, warn),
                                           "interaction_id", "interaction", rejects)
    orders = _same_rows_in_two_files(_dedupe(parts["orders"], "order_id", "order id", rejects, warn), "order_id", "order", rejects)
    _warn_unknown_order_statuses(orders, columns, warn)

    known = set(map(attrgetter("customer_id"), customers))
    not_read = {cid: where for cid, where in dropped.items() if cid not in known}  # not another row of the id
    of_not_read = _match_customer_ids(customers, known, [("interactions", interactions), ("orders", orders)], warn,
                                      not_read)
    interactions = _known_customers(interactions, known, "interaction", rejects, of_not_read)
    orders = _known_customers(orders, known, "order", rejects, of_not_read)

    # Deterministic order whatever the order of files and rows.
    customers.sort(key=attrgetter("customer_id"))
    interactions.sort(key=attrgetter("customer_id", "time", "interaction_id"))
    orders.sort(key=attrgetter("customer_id", "date", "order_id"))
    rejects.sort(key=lambda r: (r.file, r.sheet, r.row, r.column or ""))
    log.info("read %d customers, %d interactions, %d orders, %d rejects from %d files",
             len(customers), len(interactions), len(orders), len(rejects), len(files))
    return Dataset(customers, interactions, orders, rejects, [str(p) for p in files], [s for t in found.values() for s in t])


@dataclasses.dataclass
class _SheetRead:
    """One recognised sheet: its table, facts and rejects; ``by_name``: the sheet's name says the table
    (客户信息, 订单明细), rather than only its headers."""
    table: str
    sheet: str
    facts: list
    rejects: list[Reject]
    by_name: bool
    columns: int  # how many of the table's fields the sheet has a column for
    header: HeaderMatch | None = None  # where the header is and which column holds which field
    dropped: dict[str, SourceRow] = dataclasses.field(default_factory=dict)  # _read_rows


@dataclasses.dataclass
class _FileRead:
    """What one workbook gave: its tables (``_read_workbook``), or the error that stopped it."""
    tables: list[_SheetRead] = dataclasses.field(default_factory=list)
    warnings: list[Problem] = dataclasses.field(default_factory=list)
    near_misses: list[tuple[HeaderMatch, list[Problem]]] = dataclasses.field(default_factory=list)
    error: InputError | None = None


def _warn(warnings: list[Problem], problem: Problem) -> None:
    warnings.append(problem)
    log.info("%s", problem)  # messages name files, sheets and headers only, never cell values


# -- one workbook ---------------------------------------------------------------------------------


def _parse_workbook(path: Path, oversized: dict[str, str]) -> tuple[CalamineWorkbook,
                                                                    list[tuple[str, CalamineSheet | None, str]]]:
    """Open and parse every sheet (runs on a worker thread): ``(sheet name, parsed sheet or None,
    error text)`` per sheet, in sheet order; a sheet of ``oversized`` (``_open_package``) is not parsed.
    Raises ``InputError`` if the file cannot be opened."""
    try:
        wb = CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError) as exc:
        what_zh, what = "", ""
        fix = "在 Excel 里打开它，再另存为 .xlsx / open it in Excel and save it again as .xlsx"
        if _starts_with(path, _OLE_MAGIC):  # an encrypted .xlsx and an old .xls are both OLE files
            what_zh = "：它设了密码，或是改名为 .xlsx 的旧版 .xls 文件"
            what = ": it is password-protected or an old-format .xls file renamed .xlsx"
            fix = ("在 Excel 里打开它，去掉密码（文件 > 信息 > 保护工作簿），另存为 .xlsx（Excel 工作簿） / open it in Excel, "
                   "remove the password (File > Info > Protect Workbook) and save it as .xlsx (Excel Workbook)")
        raise InputError(Problem("unreadable-file", f"{path.name} 无法作为 Excel 工作簿打开{what_zh}（{exc}） / "
                                 f"{path.name} cannot be opened as an Excel workbook{what} ({exc})",
                                 Location(file=path.name), fix=fix)) from None
    sheets: list[tuple[str, CalamineSheet | None, str]] = []
    for meta in wb.sheets_metadata:
        sheet = meta.name
        if meta.visible != SheetVisibleEnum.Visible:
            sheets.append((sheet, None, _HIDDEN))
            continue
        if sheet in oversized:  # parsing it would need memory for every cell of that range (and abort)
            sheets.append((sheet, None, _Oversized(oversized[sheet])))
            continue
        try:
            sheets.append((sheet, wb.get_sheet_by_name(sheet), ""))
        except CalamineError as exc:
            sheets.append((sheet, None, str(exc)))
    return wb, sheets


# A sheet whose used range spans more cells than this is refused before calamine parses it: it makes
# a dense grid of the range (A1:XFD1048576 asks for 512 GiB and aborts the process). A million rows
# of 100 columns still pass.
MAX_SHEET_CELLS = 100_000_000
_SHEET_ENTRY = re.compile(r'<(?:\w+:)?sheet\b[^>]*?\bname="([^"]*)"[^>]*?\br:id="([^"]+)"')
_RELATIONSHIP = re.compile(r"<Relationship\b[^>]*>")
_ATTRIBUTE = re.compile(r'\b(Id|Target)="([^"]*)"')
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="[A-Z]*\d*:?([A-Z]+)(\d+)"')


def _another_layout(cells: Sequence[Any], match: HeaderMatch, table: TableSpec) -> bool:
    """Is this header-like row the header of another table (other columns), not the first one repeated?
    Yes if a column now names another field, or most columns differ; a repeated header with a blank or
    a slightly other cell (a page break's copy) is still the same table."""
    differ = 0
    for f, col in match.columns.items():
        if col >= len(cells) or cells[col] in ("", None) or header_key(cells[col]) == header_key(match.headers[f]):
            continue
        if table.field_for_header(cells[col]) not in (None, f):
            return True
        differ += 1
    return differ * 2 > len(match.columns)


# Units written alone in a cell under a header ("（万元）", "单位：元", "USD"): the bracketed ones of
# columns.HEADER_SCALES/_ZONES/_CURRENCIES and the labels that change nothing.
_LABEL_UNITS = {"元", "人民币", "rmb", "cny", "件", "个", "次", "天", "人", "%", "分"}
_UNIT_PREFIX = re.compile(r"^单位:?")


def _unit_cell(text: str) -> str | None:
    """The unit a cell holds on its own, in the form of HeaderMatch.units (half-width, lower case, no
    spaces, its sign kept: UTC-5), else None."""
    unit = _UNIT_PREFIX.sub("", unit_text(text))
    if unit.startswith("(") and unit.endswith(")"):
        unit = unit[1:-1]
    known = unit in _LABEL_UNITS or unit in HEADER_SCALES or unit in HEADER_ZONES or unit in HEADER_CURRENCIES
    return unit if known or _UTC_OFFSET_UNIT.fullmatch(unit) else None


def _header_rows_below(rows: list, match: HeaderMatch, table: TableSpec) -> int:
    """How many rows right under the header row belong to it (at most two): a row of the same fields'
    other names (Customer ID under 客户编号: a bilingual export) or of units ("（万元）" under 注册资本),
    with nothing but such text in it. Read as data, such a row was a reject ("客户编号 is required") or,
    worse, taken for the header of a second table, and every row under it was dropped. A unit found
    there applies to its column as if the header said it (金额 over （万元）: 1.2 is 12,000 元)."""
    n = 0
    units: dict[str, str] = {}
    field_at = {col: f for f, col in match.columns.items()}
    for cells in islice(rows, match.row_index + 1, match.row_index + 3):
        header_like = False
        for col, cell in enumerate(cells):
            if cell is None or cell == "":
                continue
            if not isinstance(cell, str):
                return n  # a number or a date: a record
            if not cell.strip():
                continue
            f = field_at.get(col)
            unit = _unit_cell(cell)
            if f is not None and table.field_for_header(cell) == f:
                header_like = True
            elif unit is not None:
                header_like = True
                if f is not None:
                    units[f] = unit
            elif f is not None:
                return n  # a value in a read column (a name, an id): a record
        if not header_like:
            return n
        n += 1
        for f, unit in units.items():
            match.units.setdefault(f, unit)  # a unit in the header row itself wins
        units = {}
    return n


def _unnamed_columns_with_values(rows: list, header_row: int) -> list[str]:
    """Column letters whose header cell is empty while a cell below it has a value."""
    header = rows[header_row]
    empty = [c for c, h in enumerate(header) if h == "" or h is None]
    found = [c for c in empty
             if any(r[c] != "" and r[c] is not None for r in islice(rows, header_row + 1, None) if c < len(r))]
    return [_column_letters(c + 1) for c in found]


def _column_letters(n: int) -> str:
    """1 → A, 27 → AA."""
    letters = ""
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _fill_merged_cells(rows: list, merged: list | None) -> None:
    """Give every row of a cell merged down a column its value, as the sheet shows it: a report that
    merges 客户经理 over a group of customers, or 客户编号 over an order's lines, gave the value to the
    first row only (the others had no owner, or were rejected for an empty id)."""
    for (r1, c1), (r2, c2) in merged or ():
        # Down a column only: a cell merged across columns is a title or a group header (联系方式 over
        # 手机/邮箱/微信), whose columns are named below it; copied across, every column had its name.
        if c2 != c1 or r1 >= len(rows) or c1 >= len(rows[r1]):
            continue
        value = rows[r1][c1]
        if value == "" or value is None:
            continue
        for r in range(r1 + 1, min(r2, len(rows) - 1) + 1):
            row = rows[r]
            if c1 < len(row) and (row[c1] == "" or row[c1] is None):
                row[c1] = value


_DATE_1904 = re.compile(rb'<(?:\w+:)?workbookPr\b[^>]*\bdate1904="(?:1|true)"')
DAYS_1900_TO_1904 = 1462  # serial 0 of the 1904 date system is serial 1462 of the 1900 one


def _serials_from_1904(raw: Sequence[Any]) -> list:
    """Date serials of a 1904 workbook as 1900-system serials (the coercer's): numbers and serials kept as
    text (45429), not a year typed alone (1985) nor YYYYMMDD (20240517), which the coercer reads itself."""
    out = list(raw)
    for i, v in enumerate(out):
        if type(v) in (int, float) and 0 < v < 100_000 and not 1900 <= v <= 2999:
            out[i] = v + DAYS_1900_TO_1904
        elif isinstance(v, str) and v.strip().isdigit() and len(v.strip()) <= 5 and not 1900 <= int(v) <= 2999:
            out[i] = str(int(v) + DAYS_1900_TO_1904)
    return out


# What reading a workbook's zip package can raise (RuntimeError: an encrypted member; NotImplementedError:
# a compression method zipfile lacks). A package this cannot read is left to calamine, which says what is
# wrong with it (a damaged sheet: "sheet 客户信息 cannot be read (… corrupt deflate stream)").
_PACKAGE_ERRORS = (zipfile.BadZipFile, OSError, KeyError, ValueError, EOFError, zlib.error, RuntimeError,
                   NotImplementedError)
_HEAD_BYTES = 4096  # a sheet's <dimension> is in its first few hundred bytes


@dataclasses.dataclass
class _Package:
    """What one pass over a workbook's zip package finds. ``_open_package`` (before calamine parses the
    workbook) reads the date system and each sheet's used range; ``_scan_package`` (on a parse thread)
    streams on through each sheet's XML for the cells calamine reads as empty and the hidden rows. A
    package the pass cannot read keeps what was found before the problem (nothing, mostly)."""
    date1904: bool = False  # the 1904 date system (old Mac Excel): a date kept as a plain number counts from 1904
    oversized: dict[str, str] = dataclasses.field(default_factory=dict)  # sheet → used range, over MAX_SHEET_CELLS
    cells: dict[str, dict[tuple[int, int], str]] = dataclasses.field(default_factory=dict)  # see _scan_package
    hidden_rows: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # sheet → row numbers (1-based)
    filtered: set[str] = dataclasses.field(default_factory=set)  # sheets with an AutoFilter
    # Between the two halves: the open package and each sheet's XML stream, read up to where ``head`` ends.
    zip: zipfile.ZipFile | None = None
    sheets: list[tuple[str, IO[bytes], bytes]] = dataclasses.field(default_factory=list)


def _open_package(path: Path) -> _Package:
    """The start of the pass over ``path``'s package: ``xl/workbook.xml`` (the date system, the sheets) and
    the first few KB of each sheet's XML, whose ``<dimension ref>`` gives the sheets over ``MAX_SHEET_CELLS``.
    The sheet streams are left open where they stopped, for ``_scan_package`` to go on from."""
    package = _Package()
    try:
        z = zipfile.ZipFile(path)
    except _PACKAGE_ERRORS:
        return package
    try:
        names = set(z.namelist())
        if "xl/workbook.xml" not in names:
            z.close()
            return package
        workbook = z.read("xl/workbook.xml")
        package.date1904 = bool(_DATE_1904.search(workbook[:20_000]))
        for name, member in _sheet_members(z, names, workbook):
            f = z.open(member)
            package.sheets.append((name, f, b""))
            head = f.read(_HEAD_BYTES)
            package.sheets[-1] = (name, f, head)
            m = _DIMENSION.search(head)
            if m and _column_number(m.group(1).decode()) * int(m.group(2)) > MAX_SHEET_CELLS:
                package.oversized[name] = re.search(rb'ref="([^"]+)"', head[m.start():]).group(1).decode()
    except _PACKAGE_ERRORS:
        _close_package(package, z)
        return package
    package.zip = z
    return package


def _close_package(package: _Package, z: zipfile.ZipFile) -> None:
    for _, f, _ in package.sheets:
        f.close()
    package.sheets = []
    package.zip = None
    z.close()


def _sheet_members(z: zipfile.ZipFile, names: set[str], workbook: bytes) -> list[tuple[str, str]]:
    """(sheet name, its XML member in the package) for each sheet ``xl/workbook.xml`` (``workbook``) lists;
    [] for a package without the usual parts (calamine says what is wrong with it)."""
    if "xl/_rels/workbook.xml.rels" not in names:
        return []
    targets = {}
    for element in _RELATIONSHIP.findall(z.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace")):
        attributes = dict(_ATTRIBUTE.findall(element))  # in any order (openpyxl writes Target before Id)
        targets[attributes.get("Id")] = attributes.get("Target", "")
    out = []
    for name, rid in _SHEET_ENTRY.findall(workbook.decode("utf-8", "replace")):
        target = targets.get(rid, "")
        member = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        if member in names:
            out.append((html.unescape(name), member))
    return out


_MARKERS = (b't="e"', b"<f")  # an error cell's type; a formula
_CELL_REF = re.compile(rb'<c\b[^>]*?\br="([A-Z]+)(\d+)"')
_FORMULA = re.compile(rb"<f[\s>/]")  # <f>, <f t="shared" …/>; not <family> in a rich-text run
_CELL_VALUE = re.compile(rb"<v>([^<]*)</v>")
_SCAN_BYTES = 4 << 20
# A row hidden in Excel, by hand or by a filter (AutoFilter hides the rows it filters out the same way).
_HIDDEN_MARK = b'hidden="'
_HIDDEN_ROW = re.compile(rb'<(?:\w+:)?row\b[^>]*?\bhidden="(?:1|true)"[^>]*>')
_ROW_NUMBER = re.compile(rb'\br="(\d+)"')
_AUTOFILTER = re.compile(rb"<(?:\w+:)?autoFilter\b")


def _scan_package(package: _Package) -> _Package:
    """The rest of the pass (``_open_package``), on a parse thread: each sheet's XML streamed on to its end
    for the cells python-calamine gives as empty ("") that are not: Excel error values (#N/A from a
    VLOOKUP, #DIV/0!, #REF!; python-calamine does not tell them apart, dimastbk/python-calamine#105) and
    formulas saved without their result (a workbook written by a program and never opened in Excel).
    ``package.cells``: sheet name → {(row, column), 0-based: the error text, or "" for a formula without
    its result}. In the same pass, the rows Excel hides (``<row hidden="1">``: hidden by hand or filtered
    out by an AutoFilter; calamine reads them like the others): ``package.hidden_rows``, sheet name → their
    row numbers, and ``package.filtered``, the sheets with an AutoFilter. The package is closed.

    Each sheet's XML is inflated once (~1.2 s for the 500 MB of a million-row sheet, on a parse thread:
    zlib lets go of the GIL); only the stretches holding a marker are looked at cell by cell. A sheet this
    cannot read leaves ``cells`` empty (calamine reports it)."""
    z = package.zip
    if z is None:
        return package
    found: dict[str, dict[tuple[int, int], str]] = {}
    hidden_rows: dict[str, list[int]] = {}
    filtered: set[str] = set()
    try:
        for name, f, head in package.sheets:
            cells: dict[tuple[int, int], str] = {}
            hidden: list[int] = []
            tail = head
            while True:
                chunk = f.read(_SCAN_BYTES)
                if not chunk:
                    break
                text = tail + chunk
                end = text.rfind(b"</row>") + 6  # whole rows only; the rest waits for the next chunk
                if end < 6:
                    tail = text
                    continue
                part, tail = text[:end], text[end:]
                if _MARKERS[0] in part or _MARKERS[1] in part:
                    _problem_cells(part, cells)
                if _HIDDEN_MARK in part:
                    _hidden_rows(part, hidden)
            if tail and (_MARKERS[0] in tail or _MARKERS[1] in tail):
                _problem_cells(tail, cells)
            if tail and _HIDDEN_MARK in tail:
                _hidden_rows(tail, hidden)
            if cells:
                found[name] = cells
            if hidden:
                hidden_rows[name] = hidden
            if _AUTOFILTER.search(tail):  # after the rows (<sheetData>), so in the last stretch
                filtered.add(name)
        package.cells, package.hidden_rows, package.filtered = found, hidden_rows, filtered
    except _PACKAGE_ERRORS:
        pass
    finally:
        _close_package(package, z)
    return package


def _problem_cells(xml: bytes, cells: dict[tuple[int, int], str]) -> None:
    """Add the error cells and the formulas without a result of ``xml`` (whole ``<c>`` elements) to ``cells``."""
    for marker in _MARKERS:
        at = xml.find(marker)
        while at >= 0:
            start = xml.rfind(b"<c ", 0, at)
            stop = xml.find(b"</c>", at)
            if start < 0 or stop < 0:
                break
            cell = xml[start:stop]
            head = _CELL_REF.match(cell)
            if head is not None and b"</c" not in cell[4:]:
                tag = cell[:cell.find(b">") + 1]  # the cell's start tag: its type t="…"
                value = _CELL_VALUE.search(cell)
                key = (int(head.group(2)) - 1, _column_number(head.group(1).decode()) - 1)
                if b't="e"' in tag:
                    cells[key] = html.unescape(value.group(1).decode("utf-8", "replace")) if value else "#N/A"
                elif value is None and _FORMULA.search(cell):
                    cells[key] = ""  # a formula with no saved result: no <v>, or <v/> (<v></v>: it gave "")
            at = xml.find(marker, stop)


def _hidden_rows(xml: bytes, rows: list[int]) -> None:
    """Add the numbers of the hidden rows of ``xml`` (whole ``<row>`` start tags) to ``rows``."""
    for m in _HIDDEN_ROW.finditer(xml):
        number = _ROW_NUMBER.search(m.group(0))
        if number is not None:  # Excel always writes r=; a row without it cannot be named
            rows.append(int(number.group(1)))


def _warn_hidden_rows(part: _SheetRead, rows: list[int], filtered: bool, file: str, warn: list[Problem]) -> None:
    """One warning for the hidden rows of ``part``'s sheet that were read as records: staff hide or filter
    out rows before exporting and may expect them to be left out, but data is data and they are read.
    Hidden rows with nothing read from them (empty rows below the table, a hidden total line, which the
    rejects list) are not counted."""
    records = {o.source.row for o in part.facts}
    rows = sorted(r for r in set(rows) if r in records)
    if not rows:
        return
    n, shown, more = len(rows), rows[:5], len(rows) > 5
    zh = "、".join(map(str, shown)) + (" 行…" if more else " 行")
    en = ", ".join(map(str, shown)) + (", …" if more else "")
    how_zh, how_en = ("被隐藏或被筛选掉", "hidden or filtered out") if filtered else ("被隐藏", "hidden")
    _warn(warn, Problem(
        "hidden-rows", f"工作表 {part.sheet} 有 {n} 行在 Excel 里{how_zh}（第 {zh}），仍按正常数据读取 / sheet "
                       f"{part.sheet}: {n} {'row is' if n == 1 else 'rows are'} {how_en} in Excel ({'row' if n == 1 else 'rows'} "
                       f"{en}); {'it was' if n == 1 else 'they were'} read as normal data",
        Location(file=file, sheet=part.sheet), WARNING,
        fix="若这些行不该处理，请在 Excel 里删除它们（取消隐藏" + ("或清除筛选" if filtered else "") + "后可见），再放进收件箱 / "
            "if these rows should not be processed, delete them in Excel (unhide the rows"
            + (" or clear the filter" if filtered else "") + " to see them) and put the workbook in the inbox again"))


def _report_empty_looking_cells(part: _SheetRead, table: TableSpec, cells: dict[tuple[int, int], str], file: str) -> None:
    """Say, in ``part``'s rejects, why cells of its table's columns were read as empty (``_scan_package``):
    a required one's "missing-value" reject names the error or the formula; an optional one, left empty
    in a kept row, gets a reject of its own (nothing is blanked without a word)."""
    match = part.header
    if match is None:
        return
    fields = {col: f for f, col in match.columns.items()}
    first = match.row_index + 1 + match.rows_below  # 0-based row of the first data row
    skipped = {r.row for r in part.rejects if r.cause is None and r.kept_as is None}
    missing = {(r.row, r.column): k for k, r in enumerate(part.rejects) if r.code == "missing-value"}
    for (r, c), error in sorted(cells.items()):
        f = fields.get(c)
        if f is None or r < first:
            continue
        row, header = r + 1, match.headers[f]
        code = "error-cell" if error else "formula-no-value"
        what = f"the cell holds the Excel error {error}" if error else "the cell holds a formula saved without its result"
        if row in skipped:  # a required cell: its row was skipped as empty; say why it was empty
            k = missing.get((row, header))
            if k is not None:
                part.rejects[k] = dataclasses.replace(part.rejects[k], value=error or None, code=code,
                                                      reason=f"{header} ({f}) is required: {what}; row skipped")
            continue
        if table.fields[f].required:
            continue  # read after all (an error cell in an id column another rule dropped)
        part.rejects.append(Reject(file, part.sheet, row, header, error or None, "bad-value",
                                   f"kept the row, left {f} empty: {what} [{code}]", cause=code))


def _column_number(letters: str) -> int:
    """A → 1, Z → 26, AA → 27, XFD → 16384."""
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _read_workbook(path: Path, parsed: tuple[CalamineWorkbook, list[tuple[str, CalamineSheet | None, str]]],
                   columns: ColumnsSpec, coercer: Coercer, warn: list[Problem],
                   near_misses: list[tuple[HeaderMatch, list[Problem]]], date1904: bool = False) -> list[_SheetRead]:
    """Read one parsed workbook: a ``_SheetRead`` per recognised sheet, in sheet order. Hidden sheets
    are not read (a warning says so), nor is a workbook with no cells (warned too). Sheets that look like a
    table but lack a required column go to ``near_misses`` (the caller decides once every file is read) and
    warnings to ``warn`` (logged by the caller, in file order).
    Duplicates and unknown customers are checked later, across files. ``date1904``: the workbook uses the
    1904 date system (``_open_package``)."""
    name = path.name
    wb, sheets = parsed
    try:
        out: list[_SheetRead] = []
        unresolved: list[tuple[str, list]] = []
        empty = 0  # visible sheets without a single cell
        while sheets:
            sheet, data, error = sheets.pop(0)  # dropped as soon as it is converted (memory)
            if error is _HIDDEN:
                warn.append(Problem("hidden-sheet", f"工作表 {sheet} 是隐藏的，没有读取 / sheet {sheet} is hidden and was not read",
                                    Location(file=name, sheet=sheet), WARNING,
                                    fix="如果它有要读的行，在 Excel 里取消隐藏（右键工作表标签 > 取消隐藏）后保存；隐藏的工作表常是旧副本"
                                        "或辅助表 / if it holds rows to read, unhide it in Excel (right-click a sheet tab, "
                                        "Unhide) and save; hidden sheets are often old copies or helper tables"))
                continue
            if isinstance(error, _Oversized):
                raise InputError(Problem(
                    "unreadable-file", f"工作表 {sheet} 无法读取：它的使用区域是 {error}，远多于一份导出的单元格，数据右边或下面很远处有个"
                    f"单元格 / sheet {sheet} cannot be read: its used range is {error}, far more cells than an export "
                    "holds (a cell far below or to the right of the data)", Location(file=name, sheet=sheet),
                    fix="删掉数据后面的空行和空列（选中它们，右键，删除）后保存 / delete the empty rows and columns after the "
                        "data (select them, right-click, Delete) and save"))
            try:
                if data is None:
                    raise CalamineError(error)
                rows = data.to_python(skip_empty_area=False)
                _fill_merged_cells(rows, data.merged_cell_ranges)
                del data
            except CalamineError as exc:
                raise InputError(Problem("unreadable-file", f"工作表 {sheet} 无法读取（{exc}） / sheet {sheet} cannot be read ({exc})",
                                         Location(file=name, sheet=sheet),
                                         fix="在 Excel 里打开它，再另存为 .xlsx / open it in Excel and save it again as .xlsx")) from None
            if not any(c != "" and c is not None for row in rows for c in row):  # stops at the first cell
                empty += 1
                continue
            match = _recognise(rows, columns, name, sheet)
            if match is None:
                unresolved.append((sheet, rows))
                continue
            table = columns.tables[match.table]
            if not match.ok:
                near_misses.append((match, _missing_columns(columns, table, match, name, sheet)))
                continue
            unknown = [h for h in match.unknown if table.field_for_header(h) is None]
            doubles = [h for h in match.unknown if table.field_for_header(h) is not None]
            unnamed = _unnamed_columns_with_values(rows, match.row_index)
            if unnamed:  # e.g. 邮箱 and 微信 under a 联系方式 merged over three columns, on a second header row
                letters = ", ".join(unnamed)
                warn.append(Problem("unnamed-column", f"{letters} 列有内容但没有表头，没有读取 / columns {letters} have "
                                    "values but no header and were not read", Location(file=name, sheet=sheet), WARNING,
                                    fix="在表头行给每一列写上它自己的表头（跨两行或合并多列的表头只算第一列） / give each "
                                        "column its own header in the header row (a header over two rows, or merged over "
                                        "several columns, names only the first)"))
            if unknown:
                listed = ", ".join(unknown)
                warn.append(Problem("unknown-column", f"未使用的列：{listed} / columns not used: {listed}",
                                    Location(file=name, sheet=sheet), WARNING,
                                    fix=f"若其中某列要读取，把它的表头加到 {columns.path} 的 {table.name}.<字段>.aliases 下 / "
                                        f"if one of them should be read, add its header to {columns.path} "
                                        f"under {table.name}.<field>.aliases"))
            for h in doubles:  # a second column for a field: say which one was read instead
                field_name = table.field_for_header(h)
                other = match.headers[field_name]
                warn.append(Problem("unknown-column", f"{h} 列没有读取：{table.name}.{field_name} 读的是 {other} 列 / "
                                    f"column {h} was not read: {table.name}.{field_name} is read from column {other}",
                                    Location(file=name, sheet=sheet), WARNING,
                                    fix=f"读的是 {columns.path} 里 {table.name}.{field_name}.aliases 中排在前面的表头；要读另一列，"
                                        f"调整别名的顺序 / the header listed first under {table.name}.{field_name}.aliases "
                                        f"in {columns.path} is read; reorder the aliases to read the other column"))
            match.rows_below = _header_rows_below(rows, match, table)
            objs, rejects, dropped = _read_rows(table, match, rows, name, sheet, coercer, columns.summary_markers,
                                                date1904)
            out.append(_SheetRead(table.name, sheet, objs, rejects, columns.table_for_sheet_name(sheet) == table.name,
                                  len(match.columns), match, dropped))
        if empty and not out and not unresolved and empty == len(wb.sheet_names):
            warn.append(Problem("empty-file", f"{name} 的所有工作表都没有数据，没有读取 / {name} has no data in any sheet and "
                                "was not read", Location(file=name), WARNING,
                                fix="检查导出是否完成；空的工作簿可以从收件箱移走 / check that the export finished; an empty "
                                    "workbook can be removed from the inbox"))
        hint = columns.table_for_file_name(name)
        for sheet, rows in unresolved:
            if hint is not None and all(part.table != hint for part in out):
                # The file name says what it is, but no sheet has the table's headers: explain which.
                table = columns.tables[hint]
                match = find_header(rows, table) or HeaderMatch(hint, 0, {}, {}, [], table.required)
                near_misses.append((match, _missing_columns(columns, table, match, name, sheet)))
                continue
            warn.append(Problem("ignored-sheet", f"工作表 {sheet} 没有读取：它的名称和表头都不像客户、互动记录或订单 / "
                                f"sheet {sheet} was not read: its name and headers match no table (customers, "
                                "interactions, orders)", Location(file=name, sheet=sheet), WARNING,
                                fix=f"给工作表改名（如 客户信息、互动记录、订单），或把它的表头加到 {columns.path} / rename the "
                                    f"sheet (e.g. 客户信息, 互动记录, 订单) or add its headers to {columns.path}"))
        return out
    finally:
        wb.close()


def _recognise(rows: list, columns: ColumnsSpec, file: str, sheet: str) -> HeaderMatch | None:
    """Which table a sheet holds, with its header row; ``None`` if it holds none of them. A returned
    match that is not ``ok`` is a near miss: the sheet looks like that table but lacks a required column.

    1. A sheet named exactly like a table (客户信息, 订单, ...) is that table; a missing required column is
       an error right away.
    2. A sheet whose name contains an alias (客户信息导出) is that table if its headers fit.
    3. Otherwise the table that matches the most columns (on a tie: the one with all its required
       columns, then the one the name or the file name hints at, then customers, interactions, orders).
       Two or more matching columns make a near miss; fewer means "not a table".
    """
    exact = columns.table_for_sheet_name(sheet, exact=True)
    if exact is not None:
        table = columns.tables[exact]
        match = find_header(rows, table)
        if match is None or not match.ok:
            raise InputError(_missing_columns(columns, table, match, file, sheet))
        return match
    by_name = columns.table_for_sheet_name(sheet)
    if by_name is not None:
        match = find_header(rows, columns.tables[by_name])
        if match is not None and match.ok:
            return match
    hint = by_name or columns.table_for_file_name(file)
    matches = [m for m in (find_header(rows, t) for t in columns.tables.values()) if m is not None]
    if not matches:
        return None
    best = max(matches, key=lambda m: (len(m.columns), m.ok, m.table == hint))
    if best.ok or len(best.columns) >= 2 or best.table == hint:
        return best
    return None


def _missing_columns(columns: ColumnsSpec, table: TableSpec, match: HeaderMatch | None,
                     file: str, sheet: str) -> list[Problem]:
    missing = match.missing_required if match is not None else table.required
    if match is not None and match.columns:
        cells = ", ".join(match.headers.values())
        seen_zh = f"最像表头的是第 {match.row_index + 1} 行：{cells}"
        seen = f" The best header candidate, row {match.row_index + 1}, has: {cells}"
        if len(match.columns) >= 2:
            # Surely the header row, so its other cells are headers too (maybe a misspelt one). With
            # a single match the row could be a data row: its cells may be names or phone numbers,
            # which must not end up in messages and logs, so they are only counted.
            others = "".join(f", {text[:30]}" for text in match.unknown)
            seen_zh += others + "。"
            seen += others + "."
        elif match.unknown:
            seen_zh += f"，另有 {len(match.unknown)} 个单元格。"
            seen += f" and {len(match.unknown)} other cells."
        else:
            seen_zh += "。"
            seen += "."
    else:
        seen_zh = f"那里没有像表头的行（表头若在更下面，删掉它上面的行，让它在前 {HEADER_SCAN_ROWS} 行内）。"
        seen = (f" No row there looks like a header (if the header is further down, delete the rows above it so "
                f"it is within the first {HEADER_SCAN_ROWS}).")
    problems = []
    for field in missing:
        spec = table.fields[field]
        problems.append(Problem(
            "missing-column",
            f"{file} 的工作表 {sheet} 缺少必需的列 {table.name}.{field}：在前 {HEADER_SCAN_ROWS} 行里找过这些表头："
            f"{', '.join(spec.aliases)}。{seen_zh} / "
            f"no column for {table.name}.{field} (required) in {file}, sheet {sheet}. Looked in the first "
            f"{HEADER_SCAN_ROWS} rows for a header matching any of: {', '.join(spec.aliases)}.{seen}",
            Location(file=file, sheet=sheet),
            fix=f"加一列，表头写 {spec.aliases[0]}；或把你的表头加进 {columns.path} 的 {table.name}.{field}.aliases / "
                f"add a column headed {spec.aliases[0]}, or add your header to {columns.path} under "
                f"{table.name}.{field}.aliases",
        ))
    return problems


# -- rows of one sheet ----------------------------------------------------------------------------


# Rows skipped as no record at all: their id cell holds no record's id.
_NOT_RECORDS = frozenset({"summary-row", "repeated-header", "second-table"})


def _read_rows(table: TableSpec, match: HeaderMatch, rows: list, file: str, sheet: str, coercer: Coercer,
               summary_markers: Sequence[str], date1904: bool = False
               ) -> tuple[list, list[Reject], dict[str, SourceRow]]:
    """The facts and rejects of a sheet's rows, and the ids of the records skipped (a required cell empty
    or unreadable; a lone id that looked like no record): id -> the row."""
    data = rows[match.row_index + 1 + match.rows_below:]
    n = len(data)
    if n == 0:
        return [], [], {}
    first = match.row_index + 2 + match.rows_below  # spreadsheet row number of data[0]
    width = max(match.columns.values()) + 1
    shortest = min(map(len, data))
    if shortest < width:  # calamine returns rectangular rows; be safe anyway
        data = [list(r) + [""] * (width - len(r)) for r in data]
        shortest = min(map(len, data))
    transposed = _columns_of(data, shortest)

    rejects: list[Reject] = []
    values: dict[str, list] = {}
    problems: dict[int, list[tuple[str, CoercionError]]] = {}  # row index -> (field, error)
    for fname, col in match.columns.items():
        spec = table.fields[fname]
        fn = coercer.for_field(spec.type, values=spec.values, strict=spec.strict, min_value=spec.min,
                               max_value=spec.max)
        raw = transposed[col]
        if date1904 and spec.type in ("date", "datetime"):
            raw = _serials_from_1904(raw)
        if spec.type == "datetime" and _times_of_day_only(raw):
            raw = _with_the_date_beside(raw, rows[match.row_index], transposed, col, coercer)
        try:
            values[fname] = coercer.convert_column(fn, raw)
        except CoercionError:
            values[fname] = _convert_slowly(fn, raw, fname, problems)
        if fname in match.units:
            values[fname] = _in_header_unit(values[fname], raw, match.units[fname], spec.type, match.headers[fname], coercer,
                                            file, sheet)

    # Rows that are not data: blank, summary ("合计") and repeated header rows.
    skip: dict[int, Reject | None] = {}
    required = table.required
    special = _special_spellings(table, match, summary_markers)
    for fname in required:
        if table.fields[fname].type != "id":
            continue
        hits = special.intersection(values[fname])
        for i, v in enumerate(values[fname]) if hits else ():
            if v in hits and i not in skip:
                repeated = table.field_for_header(v) == fname
                if repeated and _another_layout(data[i], match, table):
                    # A second table further down (联系人明细 under the customers): its columns are not
                    # the first header's; read with that mapping, its rows overwrote real customers.
                    for k in range(i, n):
                        skip[k] = Reject(file, sheet, first + k, None, None, "second-table",
                                         f"below another header at row {first + i} (a second table on the sheet, "
                                         "with other columns); not read")
                    break
                skip[i] = Reject(file, sheet, first + i, match.headers[fname], v,
                                 "repeated-header" if repeated else "summary-row",
                                 "a repeated header row, skipped" if repeated
                                 else "a summary (total) row, not a record; skipped")
    # A total line whose id cell holds a marker among other text (本页合计, 合计：500条, Total (500)), with
    # figures in other columns (积分, 金额): it would be read as a record.
    for fname, col in match.columns.items():
        if table.fields[fname].type != "id":
            continue
        found = _summary_ids(values[fname], summary_markers)
        for i, v in enumerate(values[fname]) if found else ():
            if v in found and i not in skip:
                skip[i] = Reject(file, sheet, first + i, match.headers[fname], data[i][col], "summary-row",
                                 "a summary (total) row, not a record; skipped")
    markers = {header_key(m) for m in summary_markers}
    for fname in required:
        vals = values[fname]
        if None not in vals:
            continue
        for i, v in enumerate(vals):
            if v is None and i not in skip and not any(f == fname for f, _ in problems.get(i, ())):
                skip[i] = _empty_required_row(data[i], i, table, match, file, sheet, first, markers, problems, coercer)

    if table.id_field in values and len(required) == 1:
        _lone_id_rows(table, match, values, data, file, sheet, first, markers, skip, problems)

    # Cells that failed to convert: a required one drops the row, an optional one is left empty. An
    # interaction's or order's own id that lost digits in Excel (long-number-id) makes the row a record of
    # its own, with the "file!sheet!row" id of an export without ids: the lost digits made the ids equal.
    def own_record(f: str, e: CoercionError) -> bool:
        return f == table.id_field and table.name != "customers" and e.code == "long-number-id"

    for i, errs in sorted(problems.items()):
        if i in skip:
            continue
        req = [(f, e) for f, e in errs if table.fields[f].required and not own_record(f, e)]
        if req:
            f, e = req[0]
            more = "".join(f"; also {match.headers[g]}: {x.reason}" for g, x in req[1:])
            skip[i] = Reject(file, sheet, first + i, match.headers[f], data[i][match.columns[f]], e.code,
                             f"{match.headers[f]} ({f}) is required: {e.reason}{more}; row skipped")
            continue
        for f, e in errs:
            if own_record(f, e):
                values[f][i] = own = f"{file}!{sheet}!{first + i}"
                rejects.append(Reject(file, sheet, first + i, match.headers[f], data[i][match.columns[f]], "bad-value",
                                      f"kept the row as a record of its own (id {own}): {e.reason} [{e.code}]",
                                      cause=e.code))
                continue
            safe = table.fields[f].if_unreadable
            if safe is None:
                kept = f"kept the row, left {f} empty"
            else:  # e.g. an opt-out cell nobody can read: treat the customer as opted out, not as reachable
                values[f][i] = safe
                kept = f"kept the row, took {f} as {'是 (yes)' if safe else '否 (no)'} to be safe (columns.yaml if_unreadable)"
            rejects.append(Reject(file, sheet, first + i, match.headers[f], data[i][match.columns[f]], "bad-value",
                                  f"{kept}: {e.reason} [{e.code}]", cause=e.code, kept_as=safe))
    rejects.extend(r for r in skip.values() if r is not None)

    # Build the facts, one column per dataclass field, then drop the skipped rows.
    cls = TABLE_CLASSES[table.name]
    args: list[Any] = []
    for f in dataclasses.fields(cls):
        if f.name == "source":
            args.append(source_rows(n, repeat(file), repeat(sheet), range(first, first + n)))
        elif f.name in values:
            vals = values[f.name]
            if f.default is not dataclasses.MISSING and f.default is not None and None in vals:
                vals = [f.default if v is None else v for v in vals]  # e.g. opt_out: empty -> False
            args.append(vals)
        elif f.name == table.id_field:  # optional id column missing: "file!sheet!row"
            args.append([f"{file}!{sheet}!{first + i}" for i in range(n)])
        else:
            args.append(repeat(f.default, n))
    if table.id_field in values and not table.fields[table.id_field].required:
        ids = values[table.id_field]
        if None in ids:
            pos = [f.name for f in dataclasses.fields(cls)].index(table.id_field)
            args[pos] = [f"{file}!{sheet}!{first + i}" if v is None else v for i, v in enumerate(ids)]
    objs = list(map(cls, *args))
    dropped: dict[str, SourceRow] = {}
    if skip:
        keep = [True] * n
        for i in skip:
            keep[i] = False
        objs = list(compress(objs, keep))
        # A customer skipped here is not a stranger to the interactions and orders that name it
        # (_match_customer_ids): they are said to be its (rejected-customer), not matched to another.
        ids = values.get(table.id_field)
        for i, r in sorted(skip.items()) if ids is not None else ():
            if r is not None and r.code not in _NOT_RECORDS and ids[i] is not None:
                dropped[ids[i]] = SourceRow(file, sheet, first + i)
    return objs, rejects, dropped


# Rows transposed this many at a time: the cells of a block stay in the CPU cache while its columns are
# gathered (zip(*data) over a million rows walks the whole sheet once per column: ~2.5x slower).
_TRANSPOSE_ROWS = 256


def _columns_of(data: list, width: int) -> list[list]:
    """The first ``width`` columns of ``data`` (rows at least that long), each a list."""
    columns: list[list] = [[] for _ in range(width)]
    for start in range(0, len(data), _TRANSPOSE_ROWS):
        for column, part in zip(columns, zip(*data[start:start + _TRANSPOSE_ROWS])):
            column.extend(part)
    return columns


_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}(:\d{2})?")


def _times_of_day_only(raw: Sequence[Any]) -> bool:
    """A time column holding times of day without dates (the date in a column of its own: 日期 | 时间)."""
    seen = False
    for v in raw:
        if v == "" or v is None:
            continue
        if not (isinstance(v, time) or (isinstance(v, str) and _TIME_OF_DAY.fullmatch(v.strip()))):
            return False
        seen = True
    return seen


def _with_the_date_beside(times: Sequence[Any], header: Sequence[Any], columns: list, col: int, coercer: Coercer) -> list:
    """The times joined with the dates of a 日期/date column of the same sheet (the nearest one), as
    "2026-11-18 10:00:00" text the datetime converter reads; the times alone if there is none (every
    row is then rejected as a time without a date, which says what is wrong)."""
    candidates = sorted((abs(c - col), c) for c, h in enumerate(header)
                        if c != col and c < len(columns) and isinstance(h, str) and ("日期" in h or "date" in h.lower()))
    for _, c in candidates:
        dates = columns[c]
        sample = [d for d in dates if d != "" and d is not None][:20]
        try:
            if not sample or any(coercer.to_date(d) is None for d in sample):
                continue
        except CoercionError:
            continue
        joined = []
        for d, t in zip(dates, times):
            if d == "" or d is None or t == "" or t is None:
                joined.append(t if d == "" or d is None else d)
                continue
            try:
                day = coercer.to_date(d)
            except CoercionError:
                day = None
            joined.append(t if day is None else f"{day.isoformat()} {t.isoformat() if isinstance(t, time) else t.strip()}")
        return joined
    return list(times)


def _in_header_unit(values: list, raw: Sequence[Any], unit: str, type_: str, header: str, coercer: Coercer, file: str,
                    sheet: str) -> list:
    """A column's values in the unit its header names (columns.HEADER_SCALES, _ZONES, _CURRENCIES):
    dropping 万元 or UTC would read every cell wrong without a word."""
    if type_ in ("number", "int") and unit in HEADER_CURRENCIES:
        raise InputError(Problem(
            "foreign-currency", f"column {header} is in {unit.upper()}: the engine counts amounts in 元 (CNY)",
            Location(file=file, sheet=sheet, column=header),
            fix="export the amounts in 元, or convert them to 元 in a column of their own and read that one"))
    if type_ in ("number", "int") and unit in HEADER_SCALES:
        factor = HEADER_SCALES[unit]
        return [None if v is None else round(v * factor, 6) for v in values]
    zone = _header_zone(unit) if type_ == "datetime" else None
    if zone is not None:
        # Cells that carried their own offset (…Z, …+08:00) were converted already by the coercer.
        return [v if v is None or (isinstance(r, str) and _OWN_OFFSET.search(r)) else
                v.replace(tzinfo=zone).astimezone(coercer.tz).replace(tzinfo=None) for v, r in zip(values, raw)]
    return values


_UTC_OFFSET_UNIT = re.compile(r"(?:utc|gmt)([+-])(\d{1,2})(?::?(\d{2}))?")
_OWN_OFFSET = re.compile(r"(?:z|[+-]\d{2}:?\d{2})\s*$", re.IGNORECASE)


def _header_zone(unit: str) -> Any:
    """The time zone a header's unit names: (UTC), (GMT), (北京时间), (UTC+8), (UTC-5), or None."""
    if unit in HEADER_ZONES:
        return ZoneInfo(HEADER_ZONES[unit])
    m = _UTC_OFFSET_UNIT.fullmatch(unit)
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
        return timezone(timedelta(minutes=minutes if m.group(1) == "+" else -minutes))
    return None


def _convert_slowly(fn: Callable[[Any], Any], raw: Sequence[Any], fname: str,
                    problems: dict[int, list[tuple[str, CoercionError]]]) -> list:
    """Convert a column that has bad cells, recording each failure and leaving ``None`` in its place.

    Runs ``map`` from one bad cell to the next rather than a Python loop over every cell: when a
    converter raises, ``list.extend`` has kept the values before it and the bad cell has been consumed
    from the shared iterator, so its index is ``len(out)``.
    """
    out: list = []
    cells = iter(raw)
    while True:
        try:
            out.extend(map(fn, cells))
            break
        except CoercionError as exc:
            # Kept without its traceback and context: their frames would keep this whole sheet's raw
            # rows (and, up the call chain, the run's dataset) alive in a reference cycle.
            exc.__context__ = None
            problems.setdefault(len(out), []).append((fname, exc.with_traceback(None)))
            out.append(None)
    assert len(out) == len(raw)
    return out


def _special_spellings(table: TableSpec, match: HeaderMatch, markers: Sequence[str]) -> frozenset[str]:
    """Exact id-cell texts that mark a summary or repeated header row (checked with one set lookup per
    column instead of normalising every cell)."""
    out: set[str] = set()
    for m in markers:
        for s in spellings(m):
            out.update((s, s + ":", s + "："))
    for fname in match.columns:
        if table.fields[fname].type == "id":
            out.add(match.headers[fname])
            for alias in table.fields[fname].aliases:
                out |= spellings(alias)
    return frozenset(out)


def _empty_required_row(cells: Sequence[Any], i: int, table: TableSpec, match: HeaderMatch, file: str, sheet: str,
                        first: int, markers: set[str],
                        problems: dict[int, list[tuple[str, CoercionError]]], coercer: Coercer) -> Reject | None:
    """A row with an empty required cell: ``None`` (skip silently) if the whole row is empty or
    blank-looking (" ", "—", "无"), a "summary-row" reject if any cell says 合计/total, else a
    "missing-value" reject."""
    texts = []
    for c in cells:
        if isinstance(c, str):
            c = c.strip()
            if c and not coercer.is_blank(c):
                texts.append(c)
        elif c is not None and c != "":
            texts.append(c)
    if not texts:
        return None  # fully blank row
    for c in texts:
        if isinstance(c, str) and header_key(c) in markers:
            return Reject(file, sheet, first + i, None, c, "summary-row",
                          "a summary (total) row, not a record; skipped")
    empty = [f for f in table.required if f in match.columns and _cell_empty(cells[match.columns[f]])
             and not any(g == f for g, _ in problems.get(i, ()))]
    f = empty[0] if empty else table.required[0]
    header = match.headers[f]
    others = f" (also empty: {', '.join(match.headers[g] for g in empty[1:])})" if len(empty) > 1 else ""
    return Reject(file, sheet, first + i, header, None, "missing-value",
                  f"{header} ({f}) is required but empty{others}; row skipped")


def _lone_id_rows(table: TableSpec, match: HeaderMatch, values: dict[str, list], data: list, file: str, sheet: str,
                  first: int, markers: set[str], skip: dict[int, Reject | None],
                  problems: dict[int, list[tuple[str, CoercionError]]]) -> None:
    """Rows of a table that needs only its id (customers) whose id cell is the only filled cell and holds
    no id: a count, total, page title or footnote under the table ("合计:3条", "注:以上数据截至…", a bare "3"
    under ids like C001), not a record. Such a row would become a customer whose "id" is that text; it is
    skipped with a reject instead. A row with an id-shaped text (letters, digits, - _ . / #) is a customer
    with nothing else filled, and kept. Only in a sheet whose other rows carry more than the id: an
    export of ids alone is taken as it is."""
    id_field = table.id_field
    ids = values[id_field]
    candidates = [i for i, v in enumerate(ids) if v is not None and i not in skip and i not in problems]
    id_col = match.columns[id_field]
    for fname, vals in values.items():  # cheap first pass: any other read field filled keeps the row
        if fname != id_field and candidates:
            candidates = [i for i in candidates if vals[i] is None]
    lone = [i for i in candidates if all(_cell_empty(c) for j, c in enumerate(data[i]) if j != id_col)]
    if len(lone) == sum(1 for i, v in enumerate(ids) if v is not None and i not in skip):
        return  # nothing but ids in this sheet
    # A lead with only its id (C900) is a customer: only texts no id looks like are dropped.
    lone_set = set(lone)
    others = [v for i, v in enumerate(ids) if v is not None and i not in lone_set][:1000]
    numeric_ids = sum(map(str.isdigit, others)) * 2 > len(others)
    for i in lone:
        text = ids[i]
        key = header_key(text)
        if _ID_SHAPE.match(text) and (numeric_ids or not text.isdigit()):
            continue
        if any(key.startswith(m) for m in markers):
            skip[i] = Reject(file, sheet, first + i, match.headers[id_field], text, "summary-row",
                             "a summary (total) row, not a record; skipped")
        else:
            skip[i] = Reject(file, sheet, first + i, match.headers[id_field], text, "not-a-record",
                             f"only {match.headers[id_field]} is filled in this row: a title, note or count under "
                             "the table, not a record; skipped")


_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-./#]*$")  # C000001, KH-2024-001, 1001


def _summary_ids(ids: Sequence[str | None], markers: Sequence[str]) -> set[str]:
    """The id values (converted; ``None`` for empty) that are a summary line's label rather than an id:
    not id-shaped and holding a summary marker -- a Chinese one anywhere as the end of a word (本页合计,
    合计：500条, 总计(500); not 合计科技), an English one only at the start and followed by no other word
    (Total: 500, Sum (3); not Summit Ltd, Total Energies).

    Looked for in one text of all the column's values joined by line breaks (searched at C speed, a
    million ids in a few hundredths of a second); only the lines a marker is found on are looked at."""
    text = "\n" + "\n".join(filter(None, ids)) + "\n"
    low = text.lower()
    if len(low) != len(text):  # a character whose lower case is longer: positions differ, check value by value
        return {v for v in set(ids) - {None} if _summary_id(v, markers)}
    found: set[str] = set()
    for m in markers:
        m = m.lower()
        needle = m if not m.isascii() else "\n" + m
        at = low.find(needle)
        while at >= 0:
            start = text.rfind("\n", 0, at + 1) + 1
            end = text.find("\n", at + 1)
            value = text[start:end]
            if _summary_id(value, markers):
                found.add(value)
            at = low.find(needle, end)
    return found


def _summary_id(value: str, markers: Sequence[str]) -> bool:
    """One id value as ``_summary_ids`` judges it."""
    if _ID_SHAPE.match(value):
        return False  # an id (Total alone is a repeated marker, _special_spellings)
    low = value.lower()
    for m in markers:
        m = m.lower()
        if not m.isascii():
            # The marker ends a word: 本页合计, 合计：500条, 总计(500); not 合计科技 (a name that starts so).
            at = low.find(m)
            while at >= 0:
                after = low[at + len(m):at + len(m) + 1]
                if not ("\u4e00" <= after <= "\u9fff"):
                    return True
                at = low.find(m, at + 1)
        elif low.startswith(m) and not low[len(m):].lstrip()[:1].isalpha():
            return True  # Total: 500, Sum (3), Total 500; not Summit Ltd, Total Energies, Sum Holdings
    return False


def _cell_empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or v == ""


# -- across files ---------------------------------------------------------------------------------


def _warn_unknown_order_statuses(orders: list, columns: ColumnsSpec, warn: list[Problem]) -> None:
    """Order statuses columns.yaml does not know (部分退款): such orders count as purchases, which may
    be wrong, so each status is named with how many orders have it."""
    spec = columns.tables["orders"].fields.get("status")
    if spec is None:
        return
    known = set(spec.values.values())
    unknown = Counter(o.status for o in orders if o.status is not None and o.status not in known)
    if unknown:
        listed = "、".join(f"{status} ×{n}" for status, n in sorted(unknown.items()))
        _warn(warn, Problem("unknown-order-status", f"order statuses columns.yaml does not know: {listed}; these orders "
                            "are counted as purchases", Location(file=columns.path), WARNING,
                            fix=f"add each to {columns.path} under orders.status.values (e.g. as 已退款), or, if such "
                                "orders are not purchases, to orders_not_counted in features.yaml"))


def _dedupe(objs: list, id_field: str, label: str, rejects: list[Reject], warn: list[Problem] | None = None) -> list:
    """Keep the LAST record for each id (exports append newer records); earlier ones become
    "duplicate-id" rejects naming the row that replaced them. ``warn``: for interactions and orders,
    a warning when ids come back with another customer (a row number read as the id)."""
    get_id = attrgetter(id_field)
    ids = list(map(get_id, objs))
    if len(set(ids)) == len(ids):  # the usual case, checked cheaply
        return objs
    last = dict(zip(ids, range(len(ids))))  # later rows overwrite earlier ones
    kept = []
    other_customer: list[tuple[Any, Any]] = []
    for i, o in enumerate(objs):
        j = last[ids[i]]
        if j == i:
            kept.append(o)
            continue
        newer = objs[j]
        if warn is not None and newer.customer_id != o.customer_id:
            other_customer.append((o, newer))
        rejects.append(Reject(o.source.file, o.source.sheet, o.source.row, None, get_id(o), "duplicate-id",
                              f"{label} {get_id(o)} appears again at {newer.source}; the later row is kept"))
    if other_customer:
        o, newer = other_customer[0]
        zh = TABLE_ZH[label.split()[0] + "s"]
        _warn(warn, Problem(
            "id-for-two-customers", f"{len(other_customer)} 条{zh}的编号又出现在另一位客户名下（如编号 {get_id(o)}：{_where_zh(o.source)}"
            f"是 {o.customer_id}，{_where_zh(newer.source)}是 {newer.customer_id}）：编号列像是行号，不是记录自己的编号，前面的行丢了 / "
            f"{len(other_customer)} {label}s came back with another customer (e.g. {label} "
            f"{get_id(o)}: {o.customer_id} at {o.source}, then {newer.customer_id} at {newer.source}): the id column looks "
            "like a row number, not the record's id, and the earlier rows are lost",
            Location(file=o.source.file, sheet=o.source.sheet), WARNING,
            fix="若“编号”只是每份导出里的行号，把它从 columns.yaml 里该编号的 aliases 中去掉（每行就各是一条记录），或导出系统自己的"
                "记录编号 / if 编号 numbers the rows of each export, take it out of the id's aliases in columns.yaml "
                "(each row is then its own record), or export the system's own record id"))
    return kept


def _where_zh(source: SourceRow) -> str:
    return f"{source.file} 工作表 {source.sheet} 第 {source.row} 行"


def _same_rows_in_two_files(objs: list, id_field: str, label: str, rejects: list[Reject]) -> list:
    """Records without an id column get "file!sheet!row" ids, so an export saved twice ("服务记录.xlsx"
    and "服务记录 (1).xlsx") was read twice: every complaint counted double, escalated twice. A row
    equal in every field to a row of another file is that record again: the later is kept."""
    get_id = attrgetter(id_field)
    if not any("!" in get_id(o) for o in objs):  # the usual case: the exports have ids
        return objs
    names = [f.name for f in dataclasses.fields(objs[0]) if f.name not in (id_field, "source")]
    content = attrgetter(*names)
    last: dict[tuple, int] = {}
    for i, o in enumerate(objs):
        if get_id(o).startswith(f"{o.source.file}!"):
            last[content(o)] = i
    kept = []
    for i, o in enumerate(objs):
        j = last.get(content(o), i) if get_id(o).startswith(f"{o.source.file}!") else i
        if j != i and objs[j].source.file != o.source.file:
            rejects.append(Reject(o.source.file, o.source.sheet, o.source.row, None, None, "duplicate-row",
                                  f"the same {label} as {objs[j].source} (every column equal; the export has no id "
                                  "column): a second copy of the export? the later row is kept"))
            continue
        kept.append(o)
    return kept


def _zero_stripped(cid: str) -> str:
    return cid.lstrip("0") or "0"


def _match_customer_ids(customers: list, known: set[str], tables: list[tuple[str, list]], warn: list[Problem],
                        not_read: dict[str, SourceRow] | None = None) -> dict[str, tuple[str, SourceRow]]:
    """Check the customer ids of the interactions and orders against the customers, on distinct ids.

    ``not_read``: customer ids whose row in the customers export was not read (a reject) -> that row. An id
    of the interactions or orders that is one of them, exactly or once leading zeros are ignored, is
    returned (id -> (the customer's id, its row)): its rows are that customer's, reported as such by
    ``_known_customers``, not matched to another customer and not counted as strangers below.

    Ids of digits only that match a customer once their leading zeros are ignored (000001 and 1: one
    export kept the 客户编号 column as numbers, which drops the zeros) are changed to the customer's id,
    with one warning; only when no customer has the id exactly, nor had it in a row not read, and the
    zero-stripped form is unique among the customers, those whose row was not read included. Then, if
    (nearly) every id names no customer (95%, at least 10 ids, and at least half as many as there are
    customers), the exports do not belong together and the run stops: it would decide for everyone on no
    interactions or orders; more than half gives a warning. Without customers at all, the no-customers
    warning has said it already."""
    not_read = not_read or {}
    of_not_read: dict[str, tuple[str, SourceRow]] = {}
    if not customers:
        return of_not_read
    by_stripped: dict[str, str] | None = None
    changed: dict[str, int] = {}  # table -> distinct ids changed
    changed_files: set[str] = set()
    fatal: list[Problem] = []
    customer_files = None
    for table, objs in tables:
        named = set(map(attrgetter("customer_id"), objs))
        missing = named - known
        for c in missing & not_read.keys():
            of_not_read[c] = (c, not_read[c])
        digits = [c for c in missing if c.isascii() and c.isdigit() and c not in not_read]
        if digits:
            if by_stripped is None:
                ids = [k for k in (*known, *not_read) if k.isascii() and k.isdigit()]
                forms = Counter(map(_zero_stripped, ids))
                by_stripped = {_zero_stripped(k): k for k in ids if forms[_zero_stripped(k)] == 1}
            matched = {c: by_stripped[_zero_stripped(c)] for c in digits if _zero_stripped(c) in by_stripped}
            remap = {c: k for c, k in matched.items() if k in known}
            for c, k in matched.items():
                if k not in known:  # 0100 for the customer 100 whose row was not read
                    of_not_read[c] = (k, not_read[k])
            if remap:  # rare: only in a mismatched export, so a loop over its rows is fine
                for o in objs:
                    new = remap.get(o.customer_id)
                    if new is not None:
                        o.customer_id = new
                        changed_files.add(o.source.file)
                changed[table] = len(remap)
                missing -= remap.keys()
        missing -= of_not_read.keys()  # customers of the export, whose rows rejects.xlsx lists
        if not missing:
            continue
        if customer_files is None:
            customer_files = _files_of(customers)
        files = _files_of(objs)
        zh, n, bad = TABLE_ZH[table], len(named), len(missing)
        # As many strangers as customers: another export. A few new leads not yet in the customers export
        # (10 interactions of one) are only warned about.
        if n >= 10 and bad * 100 >= n * 95 and bad * 2 >= len(known):
            fatal.append(Problem(
                "customers-not-matched",
                f"{files} 的 {n} 个客户编号中有 {bad} 个不在客户导出 {customer_files} 里：两份导出对不上，照此运行会把每位客户"
                f"都当作没有{zh}来决定，所以没有运行 / {bad} of the {n} customer ids in {files} are not in the customers "
                f"export {customer_files}: the exports do not belong together, and every customer would be decided on "
                f"no {table}; nothing was run",
                Location(file=files), fix=(
                    f"核对 {files} 与 {customer_files} 是否出自同一系统、同一时间的导出，客户导出是否完整（没有筛选），两边的"
                    "客户编号是否同一种写法（如 C000001 与 1） / check that both exports come from the same system and "
                    "time, that the customers export is complete (not filtered), and that both write the customer ids "
                    "the same way")))
        elif bad * 2 > n:
            _warn(warn, Problem(
                "many-unknown-customers",
                f"{files} 的 {n} 个客户编号中有 {bad} 个不在客户导出 {customer_files} 里，这些{zh}都没有读入（见 rejects.xlsx），"
                f"这些客户按没有{zh}来决定 / {bad} of the {n} customer ids in {files} are not in the customers export "
                f"{customer_files}: their {table} were not read (see rejects.xlsx)",
                Location(file=files), WARNING, fix=(
                    f"核对客户导出 {customer_files} 是否完整（没有筛选），两份导出是否出自同一系统 / check that the customers "
                    "export is complete (not filtered) and that both exports come from the same system")))
    if changed:
        files = "、".join(sorted(changed_files))
        count = "，".join(f"{TABLE_ZH[t]} {n} 个" for t, n in changed.items())
        count_en = ", ".join(f"{n} in {t}" for t, n in changed.items())
        _warn(warn, Problem(
            "customer-id-leading-zeros",
            f"{files} 里有客户编号（{count}）只有忽略开头的 0 才与客户导出 {customer_files or _files_of(customers)} 对得上"
            f"（如 000123 与 123）：一份导出把客户编号存成了数字，开头的 0 丢了；已按忽略开头 0 的编号匹配 / customer ids in "
            f"{files} ({count_en}) match the customers export only when leading zeros are ignored (000123 and 123): "
            "one export kept 客户编号 as numbers, which drops them; they were matched that way",
            Location(file=files), WARNING,
            fix="导出时把「客户编号」列设为文本（Excel：选中该列 → 设置单元格格式 → 文本） / format the 客户编号 column "
                "as text (文本) in the export"))
    if fatal:
        raise InputError(fatal)
    return of_not_read


def _files_of(objs: list) -> str:
    return "、".join(sorted({o.source.file for o in objs}))


def _known_customers(objs: list, known: set[str], label: str, rejects: list[Reject],
                     of_not_read: dict[str, tuple[str, SourceRow]] | None = None) -> list:
    """The records of ``objs`` whose customer was read; the others become rejects: "rejected-customer"
    for a customer whose own row was not read (``_match_customer_ids``), else "unknown-customer"."""
    ids = list(map(attrgetter("customer_id"), objs))
    if known.issuperset(ids):
        return objs
    of_not_read = of_not_read or {}
    kept = []
    for o, cid in zip(objs, ids):
        if cid in known:
            kept.append(o)
        elif cid in of_not_read:
            customer, where = of_not_read[cid]
            same = "" if customer == cid else f" (customer {customer} once leading zeros are ignored)"
            rejects.append(Reject(o.source.file, o.source.sheet, o.source.row, None, cid, "rejected-customer",
                                  f"{label} for customer id {cid}{same}, whose own row in the customers export "
                                  f"({where}) was not read (see that row in rejects.xlsx); skipped"))
        else:
            rejects.append(Reject(o.source.file, o.source.sheet, o.source.row, None, cid, "unknown-customer",
                                  f"{label} for customer id {cid}, which is not in the customers export; skipped"))
    return kept
