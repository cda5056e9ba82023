"""Error taxonomy shared by every stage.

Every problem has a stable ``code`` that people and tools can filter on, a location that says where
(``file:line:col``, ``workbook!Sheet!B7`` or ``file, sheet, row N``), a message a non-programmer
understands and, where obvious, the fix. The CLI, ``rejects.xlsx`` and ``--format json`` all render
the same objects.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

ERROR = "error"
WARNING = "warning"
# The severity as people read it (Chinese first): every printed problem, validate's lines and Problem.__str__.
SEVERITY_TEXT = {ERROR: "错误 error", WARNING: "警告 warning"}


@dataclass(frozen=True)
class Location:
    """Where a problem is. Only the parts that apply are set."""

    file: str | None = None
    line: int | None = None  # 1-based, in a text file
    col: int | None = None  # 1-based, in a text file
    sheet: str | None = None  # in a workbook
    cell: str | None = None  # e.g. "B7"
    row: int | None = None  # 1-based spreadsheet row, for data rows
    column: str | None = None  # header text of a data column

    def __str__(self) -> str:
        if self.file is None:
            if self.line is not None:
                return f"line {self.line}, col {self.col or 1}"
            return "<unknown>"
        if self.sheet is not None and self.cell is not None:
            return f"{self.file}!{self.sheet}!{self.cell}"
        if self.sheet is not None:
            parts = [self.file, f"sheet {self.sheet}"]
            if self.row is not None:
                parts.append(f"row {self.row}")
            if self.column is not None:
                parts.append(f"column {self.column}")
            return ", ".join(parts)
        if self.line is not None:
            return f"{self.file}:{self.line}:{self.col or 1}"
        return self.file

    def shifted(self, line_offset: int = 0, col: int | None = None) -> "Location":
        """The location ``line_offset`` lines further down (for positions inside an expression)."""
        return Location(
            file=self.file,
            line=(self.line or 1) + line_offset,
            col=col if col is not None else self.col,
            sheet=self.sheet,
            cell=self.cell,
            row=self.row,
            column=self.column,
        )


# Control characters other than line breaks: text from an export (a header, a name) printed to a
# terminal must not carry escape sequences that clear the screen or retitle the window.
_UNPRINTABLE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character but ``\n`` shown as ``?``."""
    return text if text.isprintable() else _UNPRINTABLE.sub("?", text)


@dataclass(frozen=True)
class Problem:
    code: str  # stable, kebab-case: "unknown-field", "type-mismatch", "missing-column", ...
    message: str
    location: Location = field(default_factory=Location)
    severity: str = ERROR
    fix: str | None = None

    def __str__(self) -> str:
        text = f"{self.location}: {SEVERITY_TEXT.get(self.severity, self.severity)}: {self.message} [{self.code}]"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return printable(text)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["location"] = {k: v for k, v in data["location"].items() if v is not None}
        data["where"] = str(self.location)
        return data


def _rebuild_error(cls: type, problems: list[Problem], state: dict[str, Any]) -> "EngineError":
    error = cls.__new__(cls)
    EngineError.__init__(error, problems)
    error.__dict__.update(state)
    return error


class EngineError(Exception):
    """Base class: carries one or more problems."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __reduce__(self):
        # Pickled with its problems and attributes (helper processes send their errors back,
        # engine.parallel): by default the class would be called with the message text.
        state = {k: v for k, v in self.__dict__.items() if k != "problems"}
        return _rebuild_error, (type(self), self.problems, state)


class PolicyError(EngineError):
    """A policy file (YAML or decision table) is wrong."""


class InputError(EngineError):
    """An input export cannot be used at all (e.g. a required column is missing)."""


class ExprError(PolicyError):
    """An expression in a policy does not parse or does not type-check."""



def not_utf8_problem(file: str, data: bytes, exc: UnicodeDecodeError) -> Problem:
    """The problem with a text file (policy YAML, message template) whose bytes ``data`` are not
    UTF-8, e.g. saved by Notepad as "ANSI" (GBK on Chinese Windows). ``exc``: the error decoding all
    of ``data``. Names the line and the byte so the user can find what was saved wrongly."""
    line = data.count(b"\n", 0, exc.start) + 1
    return Problem(
        code="not-utf8",
        message=f"文件不是 UTF-8 编码（第 {line} 行、文件第 {exc.start + 1} 个字节读不出来，"
                f"可能是用记事本“ANSI”或 GBK 保存的） / the file is not UTF-8 text (byte {exc.start + 1}, "
                f"on line {line}, cannot be read; it was probably saved as ANSI or GBK)",
        location=Location(file=file, line=line),
        fix="把文件另存为 UTF-8 编码（记事本: 另存为 → 编码 → UTF-8；多数编辑器相同） / "
            "save the file as UTF-8 (Notepad: Save As → Encoding → UTF-8; most editors alike)",
    )


def decode_utf8(data: bytes, file: str) -> str:
    """The text of a file's bytes; raises PolicyError [not-utf8] naming ``file`` when they are not
    UTF-8. A leading BOM (Notepad's "UTF-8 with BOM") is dropped."""
    try:
        text = data.decode("utf-8")  # not utf-8-sig: its error positions would not count the BOM
    except UnicodeDecodeError as exc:
        raise PolicyError(not_utf8_problem(file, data, exc)) from None
    return text.removeprefix("\ufeff")
