"""What was edited between two versions of a policy folder, for ``crm-engine diff``.

Every policy file either version reads (the YAML files, the decision tables they name, columns.yaml)
is compared by sha256. For a changed YAML file: the changed lines, old text → new text, and the rules
(or settings entries: SLA targets, churn signals) those lines belong to. For a changed decision table:
the changed cells, old value → new value, and the rule of the cell's row (``value_tier.xlsx!价值分层!D3
'>= 100000' → '>= 50000'（VT-1）``). So the diff workbook says which edit it is the impact of, and
stays traceable: both versions' sha256 of every file.
"""
from __future__ import annotations

import difflib
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils.cell import coordinate_to_tuple

from engine.outbox import sha256_file

MAX_DETAILS = 500  # per file: a rewritten file is "changed", its every line is not news
_TEXT_WIDTH = 120


@dataclass
class FileChange:
    path: str  # relative to the policy folder
    status: str  # 相同 / 修改 / 新增 / 删除
    base_sha256: str | None
    new_sha256: str | None
    edits: list[dict[str, str]] = field(default_factory=list)  # where, rules, old, new


def _files(policyset: Any) -> dict[str, Path]:
    """The policy files of a version as the run manifest lists them: every file read, and columns.yaml."""
    paths = {*policyset.files, policyset.root / "columns.yaml"}
    return {p.relative_to(policyset.root).as_posix(): p for p in paths if p.is_file()}


def _rule_places(policyset: Any) -> dict[str, list[tuple[Any, str]]]:
    """File → [(line or (sheet, row), rule id)] of its rules and settings entries, sorted."""
    from engine.validate import settings_rules

    places: dict[str, list[tuple[Any, str]]] = {}
    locations = [(rule.location, rule.rule_id) for rs in policyset.all_rulesets() for rule in rs.rules]
    locations += [(loc, rule_id) for _stage, rule_id, _when, loc in settings_rules(policyset)]
    for loc, rule_id in locations:
        if loc.file is None:
            continue
        if loc.sheet is not None and loc.cell:
            places.setdefault(loc.file, []).append(((loc.sheet, coordinate_to_tuple(loc.cell)[0]), rule_id))
        elif loc.line is not None:
            places.setdefault(loc.file, []).append((loc.line, rule_id))
    for items in places.values():
        items.sort(key=lambda item: (str(item[0]), item[1]) if isinstance(item[0], tuple) else (item[0], item[1]))
    return places


def _short(lines: list[str]) -> str:
    text = " / ".join(line.strip() for line in lines if line.strip())
    return text if len(text) <= _TEXT_WIDTH else text[: _TEXT_WIDTH - 1] + "…"


def _rules_at(starts: list[tuple[int, str]], first: int, last: int) -> list[str]:
    """The rules whose text spans any of lines first..last: a rule runs from its id line to the next
    rule's (``starts`` sorted by line; lines before the first rule belong to none)."""
    lines = [line for line, _ in starts]
    low, high = bisect_right(lines, first) - 1, bisect_right(lines, last) - 1
    return list(dict.fromkeys(rule_id for _, rule_id in starts[max(low, 0):high + 1])) if high >= 0 else []


def _yaml_edits(rel: str, base: Path, new: Path, base_places: list, new_places: list) -> list[dict[str, str]]:
    old_lines = base.read_text(encoding="utf-8", errors="replace").splitlines()
    new_lines = new.read_text(encoding="utf-8", errors="replace").splitlines()
    base_starts = [(line, rid) for line, rid in base_places if isinstance(line, int)]
    new_starts = [(line, rid) for line, rid in new_places if isinstance(line, int)]
    edits = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if j2 > j1:
            where = f"{rel}:{j1 + 1}" if j2 == j1 + 1 else f"{rel}:{j1 + 1}-{j2}"
            rules = _rules_at(new_starts, j1 + 1, j2)
        else:  # lines only deleted: say where they were in the old file
            where = f"{rel}:{i1 + 1}（旧版本）" if i2 == i1 + 1 else f"{rel}:{i1 + 1}-{i2}（旧版本）"
            rules = []
        rules += [r for r in (_rules_at(base_starts, i1 + 1, i2) if i2 > i1 else []) if r not in rules]
        edits.append({"where": where, "rules": ", ".join(rules), "old": _short(old_lines[i1:i2]), "new": _short(new_lines[j1:j2])})
    return edits


def _cells(path: Path) -> dict[tuple[str, str], Any]:
    """(sheet, cell) → value of every non-empty cell, formulas as written (as the table reader reads them)."""
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return {(ws.title, cell.coordinate): cell.value for ws in wb.worksheets for row in ws.iter_rows()
                for cell in row if cell.value is not None and hasattr(cell, "coordinate")}
    finally:
        wb.close()


def _table_edits(rel: str, base: Path, new: Path, places: list) -> list[dict[str, str]]:
    rows = {key: rule_id for key, rule_id in places if isinstance(key, tuple)}
    old, now = _cells(base), _cells(new)
    edits = []
    for sheet, cell in sorted(set(old) | set(now), key=lambda k: (k[0], *coordinate_to_tuple(k[1]))):  # row, column
        before, after = old.get((sheet, cell)), now.get((sheet, cell))
        if before == after:
            continue
        edits.append({"where": f"{rel}!{sheet}!{cell}", "rules": rows.get((sheet, coordinate_to_tuple(cell)[0]), ""),
                      "old": "" if before is None else str(before), "new": "" if after is None else str(after)})
    return edits


def compare_policy_files(base_ps: Any, new_ps: Any) -> list[FileChange]:
    """Every policy file of either version, in path order, with what changed in it."""
    base_files, new_files = _files(base_ps), _files(new_ps)
    base_places, new_places = _rule_places(base_ps), _rule_places(new_ps)
    changes = []
    for rel in sorted(set(base_files) | set(new_files)):
        b, n = base_files.get(rel), new_files.get(rel)
        change = FileChange(rel, "相同", b and sha256_file(b), n and sha256_file(n))
        if b is None or n is None:
            change.status = "新增" if b is None else "删除"
        elif change.base_sha256 != change.new_sha256:
            change.status = "修改"
            if rel.endswith((".xlsx", ".xlsm")):
                change.edits = _table_edits(rel, b, n, new_places.get(rel, []))
            else:
                change.edits = _yaml_edits(rel, b, n, base_places.get(rel, []), new_places.get(rel, []))
            change.edits = change.edits[:MAX_DETAILS]
        changes.append(change)
    return changes
