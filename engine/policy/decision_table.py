"""Decision tables kept in Excel, the way operations staff like to edit rules.

Sheet layout (documented in docs/policies.md, example in policies/tables/):

    row 1:  规则编号 | 条件           | 条件            | 结果        | 优先级 | 说明
    row 2:           | monetary_365d  | frequency_365d  | value_tier  |        |
    row 3+: VT-1     | >= 50000       | >= 4            | 高          | 10     | 大客户

Row 1 says what each column is (Chinese or English: rule id/input/output/priority/description),
row 2 names the feature (or expression) an input column tests and the tag an output column sets.
Each input cell is a test on that column's value:

    (blank) or -        any value
    >= 50000, < 30, != 流失, = 5      a comparison
    10..50              between, both ends included
    高, 中   or  '高','中'              one of
    空 / null           no value;  非空 / not null: has a value
    anything else       equal to it (numbers compare as numbers)

The first blank row ends the table. Each row compiles to a ``Rule`` whose condition is an ordinary
expression, so tables and YAML rules share one intermediate form.
"""
from __future__ import annotations

import re
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
_RANGE = re.compile(r"^\[?\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*\]?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_ANY = {"", "-", "—", "任意", "any", "*"}
_NULL = {"空", "null", "无值"}
_NOT_NULL = {"非空", "not null", "有值"}
_TRUE = {"是", "true", "真", "yes", "y"}
_FALSE = {"否", "false", "假", "no", "n"}


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
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise PolicyError(
            Problem(code="table-missing", message=f"decision table workbook not found: {workbook_name}",
                    location=Location(file=workbook_name), fix="check the 'table:' path in the YAML file")
        ) from None
    except Exception as exc:  # a corrupt or non-xlsx file
        raise PolicyError(
            Problem(code="table-unreadable", message=f"cannot read the workbook ({exc})",
                    location=Location(file=workbook_name), fix="save it again from Excel as .xlsx")
        ) from None
    try:
        if sheet is None:
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            raise PolicyError(
                Problem(code="table-sheet-missing",
                        message=f"the workbook has no sheet named '{sheet}' (it has: {', '.join(wb.sheetnames)})",
                        location=Location(file=workbook_name), fix="correct the sheet name after '#' in 'table:'")
            )
        all_rows = [list(r) for r in ws.iter_rows(values_only=True)]
        sheet_name = ws.title
    finally:
        wb.close()
    if len(all_rows) < 2:
        raise PolicyError(
            Problem(code="table-empty", message="a decision table needs a header row (kinds) and a names row",
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
                    message=f"unknown column kind '{raw}'",
                    location=Location(file=workbook_name, sheet=sheet_name, cell=f"{get_column_letter(i + 1)}1"),
                    fix="row 1 must say 规则编号, 条件, 结果, 优先级 or 说明 (rule id, input, output, priority, description)",
                )
            )
        kinds.append(kind)
    names = ["" if v is None else str(v).strip() for v in names_raw]
    rows: list[tuple[int, list[Any]]] = []
    for offset, values in enumerate(all_rows[2:]):
        values = (values + [None] * width)[:width]
        if all(v is None or str(v).strip() == "" for v in values):
            break  # the first blank row ends the table
        rows.append((offset + 3, values))
    return TableSheet(workbook_name, sheet_name, kinds, names, rows)


def _literal(text: str) -> str:
    """An expression literal for a cell value: numbers stay numbers, anything else is quoted text."""
    text = text.strip()
    if _NUMBER.match(text):
        return text
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
    m = _COMPARISON.match(text)
    if m:
        op = {"=": "==", "≥": ">=", "≤": "<=", "≠": "!="}.get(m.group(1), m.group(1))
        return f"({subject}) {op} {_literal(m.group(2))}"
    m = _RANGE.match(text)
    if m:
        return f"({subject}) between {m.group(1)} and {m.group(2)}"
    parts = [p for p in re.split(r"[,，、]", text) if p.strip()]
    if len(parts) > 1:
        return f"({subject}) in [{', '.join(_literal(p) for p in parts)}]"
    return f"({subject}) == {_literal(text)}"


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
