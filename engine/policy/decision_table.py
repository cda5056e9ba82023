"""Decision tables kept in Excel, the way operations staff like to edit rules.

Sheet layout (documented in docs/policies.md, example in policies/tables/):

    row 1:  规则编号 | 条件           | 条件            | 结果        | 优先级 | 说明
    row 2:           | monetary_365d  | frequency_365d  | value_tier  |        |
    row 3+: VT-1     | >= 50000       | >= 4            | 高          | 10     | 大客户

Row 1 says what each column is (Chinese or English: rule id/input/output/priority/description),
row 2 names the feature (or expression) an input column tests and the tag an output column sets.
Each input cell is a test on that column's value:

    (blank) or -        any value
    >= 50000, < 30, != 流失      a comparison (>= 100,000 too; full-width ＞＝ ＜ too)
    10..50              between, both ends included
    高, 中   or  '高','中'   or  100、200      one of (== 高, 中 too)
    != 高, 中           none of (null is in no list, so it is not "none of" either)
    空 / null           no value;  非空 / not null: has a value
    100,000             one number: a comma between two digits is a thousands separator
    anything else       equal to it (numbers compare as numbers)

Mistakes that would silently change every customer's result are errors at the cell: a formula
(``=100000``; Excel also turns a typed ``= 5`` into one), a comma between digits that is not a
thousands separator (``100,00``), a list after ``>=``/``<``…, a unit or words in a comparison
(``>=5万``, ``<90天``, ``小于90``), a header cell merged over several
columns, a column with no kind in row 1 but a name in row 2 (or values between the table's
columns), a blank row with more table content below it, and a row with no condition and no result
(a note typed on a row of its own would match everyone and set nothing). A merged cell in the
rules counts for every row and column it covers. Each row
compiles to a ``Rule`` whose condition is an ordinary expression, so tables and YAML rules share
one intermediate form.
"""
from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils import get_column_letter

from engine.errors import Location, PolicyError, Problem

COLUMN_KINDS = {
    "规则编号": "rule_id", "规则id": "rule_id", "编号": "rule_id", "ruleid": "rule_id", "rule": "rule_id", "id": "rule_id",
    "条件": "input", "输入": "input", "input": "input", "when": "input",
    "结果": "output", "输出": "output", "output": "output", "then": "output",
    "优先级": "priority", "priority": "priority",
    "说明": "description", "描述": "description", "备注": "description", "description": "description",
}
_COMPARISON = re.compile(r"^(>=|<=|!=|==|=|>|<|≥|≤|≠)\s*(.+)$", re.S)
_RANGE = re.compile(r"^\[?\s*(-?[\d.,]+)\s*\.\.\s*(-?[\d.,]+)\s*\]?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# 100,000 or 1,200.50: Excel reads a comma between digits as a thousands separator, so do we.
_GROUPED = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_DIGITS_AND_COMMAS = re.compile(r"^-?\d+(,\d+)+(\.\d+)?$")
_FULL_WIDTH = str.maketrans("０１２３４５６７８９，．－", "0123456789,.-")
# List separators: 、 always; a comma unless it stands between two digits (that one groups thousands).
_LIST_SEPARATOR = re.compile(r"、|(?<!\d)[,，]|[,，](?!\d)")
# A comparison with a unit (>=5万, <90天) or in words (小于90): refused with the number to write.
_WITH_UNIT = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s*(万元|万|千元|千|[wWkK]|元|块|天|日|次|个|件|人|岁|单|笔|分|小时)$")
_UNIT_FACTOR = {"万元": 10000, "万": 10000, "w": 10000, "W": 10000, "千元": 1000, "千": 1000, "k": 1000, "K": 1000}
_WORD_OPS = {"大于等于": ">=", "小于等于": "<=", "不小于": ">=", "不大于": "<=", "不少于": ">=", "不多于": "<=",
             "不低于": ">=", "不高于": "<=", "不超过": "<=", "至少": ">=", "至多": "<=", "不等于": "!=", "大于": ">",
             "小于": "<", "高于": ">", "低于": "<", "超过": ">", "等于": "=="}
_WORD_COMPARISON = re.compile(r"^(" + "|".join(_WORD_OPS) + r")\s*(.+)$")
_ANY = {"", "-", "—", "任意", "any", "*"}
_NULL = {"空", "null", "无值"}
_NOT_NULL = {"非空", "not null", "有值"}
_TRUE = {"是", "true", "真", "yes", "y"}
_FALSE = {"否", "false", "假", "no", "n"}


class CellError(ValueError):
    """A condition cell that cannot be read safely; read_table_sheet reports it at the cell."""

    def __init__(self, message: str, fix: str, code: str = "table-bad-number"):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code


class TableSheet:
    """The raw content of one decision-table sheet, with cell positions."""

    def __init__(self, workbook_name: str, sheet: str, kinds: list[str], names: list[str], rows: list[tuple[int, list[Any]]]):
        self.workbook_name = workbook_name
        self.sheet = sheet
        self.kinds = kinds
        self.names = names
        self.rows = rows  # (excel row number, cell values)

    def cell_loc(self, row: int, col_index: int) -> Location:
        return Location(file=self.workbook_name, sheet=self.sheet, cell=f"{get_column_letter(col_index + 1)}{row}")


def _norm(text: Any) -> str:
    return re.sub(r"[\s_:：]+", "", str(text or "")).lower()


def read_table_sheet(path: Path, workbook_name: str, sheet: str | None) -> TableSheet:
    try:
        # Not read_only: there only the top-left cell of a merged range has its value, and the rows
        # below it read as blank, i.e. "any value". Tables are small.
        wb = openpyxl.load_workbook(path)
    except FileNotFoundError:
        raise PolicyError(
            Problem(code="table-missing", message=f"找不到决策表工作簿 {workbook_name} / decision table workbook not found: {workbook_name}",
                    location=Location(file=workbook_name),
                    fix="检查 YAML 文件里 'table:' 写的路径 / check the 'table:' path in the YAML file")
        ) from None
    except Exception as exc:  # a corrupt or non-xlsx file
        raise PolicyError(
            Problem(code="table-unreadable", message=f"工作簿读不出（{exc}） / cannot read the workbook ({exc})",
                    location=Location(file=workbook_name),
                    fix="用 Excel 重新另存为 .xlsx 格式 / save it again from Excel as .xlsx")
        ) from None
    try:
        if sheet is None:
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            raise PolicyError(
                Problem(code="table-sheet-missing",
                        message=f"工作簿里没有叫 '{sheet}' 的工作表（有：{', '.join(wb.sheetnames)}） / "
                                f"the workbook has no sheet named '{sheet}' (it has: {', '.join(wb.sheetnames)})",
                        location=Location(file=workbook_name),
                        fix="改正 'table:' 里 '#' 后面的工作表名 / correct the sheet name after '#' in 'table:'")
            )
        # Not data_only: a formula's cached value may be stale or missing (openpyxl writes none,
        # and data_only then reads None, i.e. "any value"), so formulas are found and refused below.
        all_cells = [[(c.value, c.data_type == "f") for c in r] for r in ws.iter_rows()]
        merged = [r.bounds for r in ws.merged_cells.ranges]  # (min_col, min_row, max_col, max_row), 1-based
        sheet_name = ws.title
    finally:
        wb.close()
    all_rows = [[v for v, _ in r] for r in all_cells]
    if len(all_rows) < 2:
        raise PolicyError(
            Problem(code="table-empty", message="决策表要有两行表头：第 1 行写每列的种类，第 2 行写名称 / "
                                                "a decision table needs a header row (kinds) and a names row",
                    location=Location(file=workbook_name, sheet=sheet_name, cell="A1"))
        )
    width = max(len(r) for r in all_rows[:2])
    kinds_raw = (all_rows[0] + [None] * width)[:width]
    names_raw = (all_rows[1] + [None] * width)[:width]
    kinds: list[str] = []
    for i, raw in enumerate(kinds_raw):
        if raw is None or str(raw).strip() == "":
            kinds.append("")
            continue
        kind = COLUMN_KINDS.get(_norm(raw))
        if kind is None:
            raise PolicyError(
                Problem(
                    code="table-column-kind",
                    message=f"第 1 行的 '{raw}' 不是列的种类 / unknown column kind '{raw}'",
                    location=Location(file=workbook_name, sheet=sheet_name, cell=f"{get_column_letter(i + 1)}1"),
                    fix="第 1 行只能写 规则编号、条件、结果、优先级 或 说明 / "
                        "row 1 must say 规则编号, 条件, 结果, 优先级 or 说明 (rule id, input, output, priority, description)",
                )
            )
        kinds.append(kind)
    names = ["" if v is None else str(v).strip() for v in names_raw]
    table = TableSheet(workbook_name, sheet_name, kinds, names, [])
    columns = [i for i, kind in enumerate(kinds) if kind]  # the table's columns; notes may sit right of them
    problems: list[Problem] = []
    for r, cells in enumerate(all_cells):
        for col in columns:
            if col < len(cells) and cells[col][1]:
                where = table.cell_loc(r + 1, col)
                problems.append(Problem(
                    code="table-formula",
                    message=f"{where.cell} 是公式（{cells[col][0]}）：决策表只读写入的值 / {where.cell} holds a formula"
                            f" ({cells[col][0]}); a decision table reads only values",
                    location=where,
                    fix="写值，不要写公式：“等于 5”写 5；以 = 开头的文字先输入单引号，如 '= 5"
                        " / a formula, write the value: for 'equals 5' write 5; for text starting with = type an apostrophe first ('= 5)",
                ))
    for min_col, min_row, max_col, max_row in sorted(merged, key=lambda b: (b[1], b[0])):
        if min_row <= 2 and any(kinds[col - 1] for col in range(min_col, min(max_col, width) + 1)):
            if max_col > min_col or max_row > 2:
                problems.append(_merged_header_problem(table, min_col, min_row, max_col, max_row))
        elif min_row >= 3:
            # 合并单元格: the value (a formula too: reported once, at its top-left cell above) holds
            # for every row and column of the range, as the reader of the sheet sees it.
            top_left = all_rows[min_row - 1][min_col - 1]
            for r in range(min_row, max_row + 1):
                all_rows[r - 1].extend([None] * (max_col - len(all_rows[r - 1])))
                all_rows[r - 1][min_col - 1:max_col] = [top_left] * (max_col - min_col + 1)
    body = [(n, (values + [None] * width)[:width]) for n, values in enumerate(all_rows[2:], start=3)]
    in_merged_header = {col - 1 for min_col, min_row, max_col, _ in merged if min_row <= 2 for col in range(min_col, max_col + 1)}
    problems.extend(_unlabelled_columns(table, names, body, in_merged_header))
    filled = [(n, values) for n, values in body if not _blank(values, columns)]
    rows: list[tuple[int, list[Any]]] = []
    after_blank = False
    for n, values in filled:
        previous = rows[-1][0] if rows else 2
        if n > previous + 1:
            # A blank row used to end the table and silently drop the rules below it; only
            # trailing blank rows are fine, so anything below a blank row is an error.
            problems.append(_blank_row_problem(table, previous + 1, n - 1, [r for r in filled if r[0] >= n]))
            after_blank = True
        rows.append((n, values))
        tests = 0
        for col in columns:
            if kinds[col] == "input":
                try:
                    tests += cell_condition("x", values[col]) is not None
                except CellError as exc:
                    tests += 1
                    problems.append(Problem(code=exc.code, message=exc.message,
                                            location=table.cell_loc(n, col), fix=exc.fix))
        results = sum(output_value(values[col]) is not None for col in columns if kinds[col] == "output")
        if not tests and not results and not after_blank:  # below a blank row the blank-row error says it
            problems.append(_no_rule_problem(table, n, values))
    if problems:
        raise PolicyError(problems)
    table.rows = rows
    return table


def _blank(values: list[Any], columns: list[int]) -> bool:
    return all(values[col] is None or str(values[col]).strip() == "" for col in columns)


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # how features and tags are named (monetary_365d)


def _unlabelled_columns(table: TableSheet, names: list[str], body: list[tuple[int, list[Any]]],
                        in_merged_header: set[int]) -> list[Problem]:
    """Columns with no kind in row 1 that are evidently part of the table: a name in row 2, or
    values between the table's columns. They used to be ignored, silently dropping a condition
    (or a result) from every row. A column right of the table is notes (备注 in row 2 or nothing)
    unless row 2 names a feature or tag (frequency_365d);
    columns under a merged header cell are reported as that (table-merged-header)."""
    kinds = table.kinds
    last = max((i for i, kind in enumerate(kinds) if kind), default=-1)
    problems = []
    for col, kind in enumerate(kinds):
        if kind or col in in_merged_header:
            continue
        name = names[col]
        if col > last:
            # Right of the table: notes (备注, a remark), unless row 2 names a feature or tag the way a
            # condition or result column does (frequency_365d): a column whose kind was forgotten.
            if not _IDENTIFIER.match(name):
                continue
        elif not name and not any(not _blank(values, [col]) for _, values in body):
            continue
        where = table.cell_loc(1, col)
        shown = f"第 2 行写着 {name}" if name else "下面有内容"
        shown_en = f"row 2 names {name}" if name else "it has values"
        subject = name or "…"
        problems.append(Problem(
            code="table-kind-missing",
            message=f"{where.cell} 是空的：第 1 行没有写这一列是什么（{shown}），整列被忽略"
                    f" / {where.cell} is empty: row 1 does not say what this column is ({shown_en}), so the whole column is ignored",
            location=where,
            fix=f"在 {where.cell} 写 条件（这一列按 {subject} 筛选客户）或 结果（这一列设置 {subject}）；是备注就写 说明"
                f" / write 条件 in {where.cell} (the column tests {subject}) or 结果 (it sets {subject}); for notes write 说明",
        ))
    return problems


def _no_rule_problem(table: TableSheet, n: int, values: list[Any]) -> Problem:
    """A row with no condition and no result: under hit policy first it matches every customer and
    sets nothing, so every row below it is never reached. The table format has no comment rows
    (notes go in the 说明 column of a rule or right of the table), so it is refused, not skipped:
    a rule whose results were cleared by mistake must not silently vanish either."""
    kinds = table.kinds
    note_col = next((c for c, kind in enumerate(kinds) if kind == "description" and not _blank(values, [c])), None)
    col = note_col if note_col is not None else next((c for c, kind in enumerate(kinds) if kind and not _blank(values, [c])), 0)
    where = table.cell_loc(n, col)
    if note_col is not None:
        note = str(values[note_col]).strip()
        what, what_en = f"只有说明“{note}”", f"only the note '{note}'"
    else:
        what, what_en = f"只有 {where.cell}“{str(values[col]).strip()}”", f"only {where.cell} '{str(values[col]).strip()}'"
    return Problem(
        code="table-empty-rule",
        message=f"第 {n} 行{what}，没有条件也没有结果，不能算一条规则：它对每位客户都成立却什么也不设置"
                f"（命中策略为 first 时，下面的行都不会再生效） / row {n} has {what_en}, no condition and no result, so it"
                " cannot be a rule: it would match every customer and set nothing (under hit policy first no row below it would apply)",
        location=where,
        fix="说明文字写在某条规则那一行的说明列，或写在表格右侧第 1 行没有种类的列，然后删除这一行；若它是一条规则，填上它的条件和结果"
            " / put the note in the 说明 column of a rule's row or in a column right of the table with nothing in row 1, and delete"
            " this row; if it is a rule, fill in its conditions and results",
    )


def _merged_header_problem(table: TableSheet, min_col: int, min_row: int, max_col: int, max_row: int) -> Problem:
    """A merged range in rows 1–2 over several columns, or reaching into the rules below."""
    where = table.cell_loc(min_row, min_col - 1)
    ref = f"{where.cell}:{get_column_letter(max_col)}{max_row}"
    return Problem(
        code="table-merged-header",
        message=f"表头单元格 {ref} 是合并的：每个条件、结果各占一列，第 1 行写种类、第 2 行写名称"
                f" / header cells {ref} are merged; a table needs one column per input/output, its kind in row 1"
                " and its name in row 2",
        location=where,
        fix="取消合并，在每一列分别写种类和名称（如 条件 / monetary_365d） / unmerge the cells and write the kind and"
            " name in each column (e.g. 条件 / monetary_365d)",
    )


def _blank_row_problem(table: TableSheet, first: int, last: int, later: list[tuple[int, list[Any]]]) -> Problem:
    """Blank rows first..last with table content below them."""
    id_col = table.kinds.index("rule_id") if "rule_id" in table.kinds else None
    labels = []
    for n, values in later:
        value = values[id_col] if id_col is not None else None
        labels.append(str(value).strip() if value is not None and str(value).strip() else f"第 {n} 行")
    more = "…" if len(labels) > 3 else ""
    rows_zh = f"第 {first} 行" if first == last else f"第 {first}–{last} 行"
    rows_en = f"row {first} is" if first == last else f"rows {first}–{last} are"
    return Problem(
        code="table-blank-row",
        message=f"{rows_zh}是空行，其后的规则（{'、'.join(labels[:3])}{more}）没有被读入"
                f" / {rows_en} empty; the rules below it ({', '.join(labels[:3])}{more}) were not read",
        location=table.cell_loc(first, 0),
        fix="删除空行；说明文字写在说明列或表格右侧没有表头的列 / delete the empty row; put notes in the 说明 column"
            " or in a column right of the table with no header",
    )


def _number_text(text: str) -> str | None:
    """The number a cell's text spells (thousands separators and full-width digits allowed), or None."""
    plain = text.strip().translate(_FULL_WIDTH)
    if _NUMBER.match(plain):
        return plain
    if _GROUPED.match(plain):
        return plain.replace(",", "")
    if _DIGITS_AND_COMMAS.match(plain):
        # 100,00 or 1,2: neither a number Excel would accept nor a clearly written list.
        pieces = plain.split(",")
        raise CellError(
            f"“{text.strip()}” 读不出：数字之间的逗号是千位分隔符，须每 3 位一个 / cannot read '{text.strip()}':"
            " a comma between digits is a thousands separator and needs groups of 3 digits",
            f"一个数写 {''.join(pieces)}（或 >= {''.join(pieces)}）；其中之一的几个数用顿号或逗号加空格分开、前面不写 >= 这类比较，"
            f"如 {'、'.join(pieces)} / one number: {''.join(pieces)} (or >= {''.join(pieces)}); one of several numbers, "
            f"with no >= before them: {', '.join(pieces)}",
        )
    return None


def _literal(text: str) -> str:
    """An expression literal for a cell value: numbers stay numbers, anything else is quoted text."""
    text = text.strip()
    number = _number_text(text)
    if number is not None:
        return number
    low = text.lower()
    if low in _TRUE:
        return "true"
    if low in _FALSE:
        return "false"
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cell_condition(subject: str, value: Any) -> str | None:
    """The condition text for one input cell, or None when the cell matches anything."""
    if value is None:
        return None
    if isinstance(value, bool):
        return f"({subject}) == {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"({subject}) == {value!r}"
    text = str(value).strip()
    low = text.lower()
    if low in _ANY:
        return None
    if low in _NULL:
        return f"({subject}) is null"
    if low in _NOT_NULL:
        return f"({subject}) is not null"
    # NFKC: full-width signs typed with a Chinese input method (＜ 90, ＞＝１００００) are the signs.
    normal = unicodedata.normalize("NFKC", text)
    _refuse_units_and_words(text, normal)
    m = _COMPARISON.match(normal)
    if m:
        text = normal
        op = {"=": "==", "≥": ">=", "≤": "<=", "≠": "!="}.get(m.group(1), m.group(1))
        parts = _list_parts(m.group(2))
        items = [_literal(p) for p in parts]  # 100,00 in a list is still a bad number
        # != 制造业、金融 was compared with the text "制造业、金融" as a whole: true for every customer.
        if len(parts) > 1 and op in ("==", "!="):
            return f"({subject}) {'in' if op == '==' else 'not in'} [{', '.join(items)}]"
        if len(parts) > 1:
            rest, first = m.group(2).strip(), parts[0].strip()
            raise CellError(
                f"“{text}” 读不出：{m.group(1)} 后面只能写一个值，不能写列表 / cannot read '{text}':"
                f" {m.group(1)} takes one value, not a list",
                f"写一个比较，如 {op} {first}；“其中之一”写 {rest}（或 == {rest}），“都不是”写 != {rest}"
                f" / write one comparison, e.g. {op} {first}; for 'one of' write {rest} (or == {rest}),"
                f" for 'none of' write != {rest}",
                code="table-bad-cell",
            )
        return f"({subject}) {op} {_literal(m.group(2))}"
    m = _RANGE.match(text.translate(_FULL_WIDTH))
    if m:
        low_end, high_end = (_number_text(g) or g for g in m.groups())
        return f"({subject}) between {low_end} and {high_end}"
    number = _number_text(text)  # 100,000 is one number, never the list [100, 0]
    if number is not None:
        return f"({subject}) == {number}"
    parts = _list_parts(text)
    if len(parts) > 1:
        return f"({subject}) in [{', '.join(_literal(p) for p in parts)}]"
    return f"({subject}) == {_literal(text)}"


def _refuse_units_and_words(text: str, normal: str) -> None:
    """``>=5万``, ``>=50000元``, ``<90天`` (a number with a unit after a comparison sign) and ``小于90``
    (a comparison in words) cannot be read; say what to write instead. ``100人`` alone stays a text
    (company_size has such values), and so does ``!= 100人``."""
    m = _COMPARISON.match(normal)
    word = None if m else _WORD_COMPARISON.match(normal)
    if word:
        op, value = _WORD_OPS[word.group(1)], word.group(2).strip()
    elif m and m.group(1) in ("<", ">", "<=", ">=", "≥", "≤"):
        op, value = {"≥": ">=", "≤": "<="}.get(m.group(1), m.group(1)), m.group(2).strip()
    else:
        return
    unit = _WITH_UNIT.match(value)
    number = _number_text(unit.group(1)) if unit else _number_text(value) if word else None
    if number is None:
        return
    if unit and unit.group(2) in _UNIT_FACTOR:
        number = format((Decimal(number) * _UNIT_FACTOR[unit.group(2)]).normalize(), "f")
    write = number if op == "==" else f"{op} {number}"
    shown = text.strip()
    if word:
        message = (f"“{shown}” 读不出：比较要用符号写 / cannot read '{shown}': write the comparison with a sign")
        fix = f"写 {write}（>= 大于等于，<= 小于等于，> 大于，< 小于，!= 不等于） / write {write}"
    else:
        message = (f"“{shown}” 读不出：比较的值只写数字，不写单位 / cannot read '{shown}': a comparison takes a plain number,"
                   " without a unit")
        fix = (f"写 {write}（金额按元、天数按天、次数按次，只写数字） / write {write} (amounts in yuan, days in days,"
               " counts as numbers)")
    raise CellError(message, fix, code="table-bad-cell")


def _list_parts(text: str) -> list[str]:
    """The items of a list cell (高, 中 / 100、200); one item when the text is no list (100,000 too)."""
    parts = []
    for part in _LIST_SEPARATOR.split(text):
        # Text such as A1,2B keeps splitting at every comma, as before; numbers do not.
        if "," in part.translate(_FULL_WIDTH) and not _DIGITS_AND_COMMAS.match(part.strip().translate(_FULL_WIDTH)):
            parts.extend(re.split(r"[,，]", part))
        else:
            parts.append(part)
    return [p for p in parts if p.strip()]


def output_value(value: Any) -> Any:
    """An output cell's value: numbers as numbers, 是/否 as booleans, text trimmed; blank → None."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float, bool)):
        return value
    text = str(value).strip()
    if text == "":
        return None
    if _NUMBER.match(text):
        return float(text) if "." in text else int(text)
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    return text
