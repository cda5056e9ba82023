"""The column mapping (``policies/columns.yaml``) and header matching.

``load_columns`` reads and checks the mapping; ``find_header`` finds the header row of a sheet and
maps its columns to fact fields. Header texts are compared by :func:`header_key`, which ignores case,
spaces, underscores, hyphens, full-width vs half-width forms, a leading/trailing ``*`` or ``:`` and a
trailing unit in brackets ("金额（元）").
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .policy.yaml_source import YList, YMap, load_yaml

from .coerce import DEFAULT_BLANKS, DEFAULT_FALSE, DEFAULT_TRUE, TYPES, Coercer, value_key
from .errors import Location, PolicyError, Problem
from .model import Customer, Interaction, Order

__all__ = [
    "FieldSpec",
    "TableSpec",
    "ColumnsSpec",
    "HeaderMatch",
    "TABLE_CLASSES",
    "header_key",
    "load_columns",
    "find_header",
]

TABLE_CLASSES: dict[str, type] = {"customers": Customer, "interactions": Interaction, "orders": Order}
HEADER_SCAN_ROWS = 30  # the header row must be among the first 30 rows (exports put filter lines above it)

_EDGE = re.compile(r"^[*:]+|[*:]+$")
_TRAILING_UNIT = re.compile(r"\([^()]*\)$")


def header_key(text: Any) -> str:
    """Comparison key of a header cell (or alias): ``"客户编号："`` and ``"*客户 编号"`` -> ``"客户编号"``."""
    if not isinstance(text, str):
        return ""
    key = value_key(text)  # NFKC (full-width -> half-width), casefold, drop spaces/_/-
    return _EDGE.sub("", key)


def _without_unit(key: str) -> str:
    """``"金额(元)"`` -> ``"金额"``: tried when the full header matches nothing."""
    return _TRAILING_UNIT.sub("", key)


def unit_text(text: str) -> str:
    """A header or cell as units are compared (HeaderMatch.units): half-width, lower case, no spaces.
    Unlike ``header_key`` it keeps hyphens, so a unit keeps its sign: UTC-5 is not UTC+5."""
    return unicodedata.normalize("NFKC", text).casefold().replace(" ", "")


def _unit(key: str) -> str:
    """``"金额(万元)"`` -> ``"万元"`` (the header key's trailing bracket), ``""`` if none."""
    m = _TRAILING_UNIT.search(key)
    return m.group(0)[1:-1] if m else ""


# Units in a header's brackets that change what a cell means (compared as header keys: half-width,
# lower case, no spaces). A scale multiplies a number column (金额（万元）: 1.2 is 12,000 元); a time
# zone converts a time column to columns.yaml's time_zone (创建时间(UTC)); a foreign currency is refused
# (the engine counts 元). Any other unit (元, 件, 次, %) is only a label.
HEADER_SCALES = {"万元": 10_000, "万": 10_000, "千元": 1_000, "千": 1_000, "百万元": 1_000_000, "百万": 1_000_000,
                 "亿元": 100_000_000, "亿": 100_000_000}
HEADER_ZONES = {"utc": "UTC", "gmt": "UTC", "utc+0": "UTC", "utc+00:00": "UTC", "z": "UTC",
                "utc+8": "Asia/Shanghai", "utc+08:00": "Asia/Shanghai", "北京时间": "Asia/Shanghai", "gmt+8": "Asia/Shanghai"}
HEADER_CURRENCIES = {"usd", "$", "us$", "美元", "hkd", "hk$", "港币", "港元", "eur", "€", "欧元", "jpy", "日元", "gbp", "£",
                     "英镑", "twd", "nt$", "台币", "新台币", "krw", "韩元", "sgd", "新加坡元"}


@dataclass(frozen=True)
class FieldSpec:
    name: str  # field name of the fact dataclass
    type: str  # one of coerce.TYPES
    required: bool
    aliases: tuple[str, ...]  # as written in columns.yaml (for messages)
    values: dict[str, str] = field(default_factory=dict)  # enum: spelling -> canonical value; bool: spelling -> "true"/"false"
    strict: bool = False  # enum: refuse values not listed
    min: float | None = None
    max: float | None = None
    if_unreadable: Any = None  # bool: the value a cell that cannot be read stands for (the safe side), else left empty


@dataclass(frozen=True)
class TableSpec:
    name: str  # "customers" | "interactions" | "orders"
    sheet_aliases: tuple[str, ...]
    file_hints: tuple[str, ...]
    id_field: str
    fields: dict[str, FieldSpec]  # in columns.yaml order
    alias_index: dict[str, str]  # header_key(alias) -> field name

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields.values() if f.required]

    def field_for_header(self, text: Any) -> str | None:
        key = header_key(text)
        if not key:
            return None
        name = self.alias_index.get(key)
        if name is None:
            name = self.alias_index.get(_without_unit(key))
        return name


@dataclass(frozen=True)
class ColumnsSpec:
    """Everything in ``columns.yaml``: one ``TableSpec`` per table plus the shared spellings."""

    tables: dict[str, TableSpec]
    blank_values: tuple[str, ...]
    true_values: tuple[str, ...]
    false_values: tuple[str, ...]
    summary_markers: tuple[str, ...]
    path: str  # where it was loaded from, for messages
    time_zone: str = "Asia/Shanghai"  # times with a UTC offset are converted to this zone's local time

    def coercer(self) -> Coercer:
        return Coercer(self.blank_values, self.true_values, self.false_values, self.time_zone)

    def table_for_sheet_name(self, sheet: str, exact: bool = False) -> str | None:
        """The table whose sheet alias matches ``sheet`` (exactly, else -- unless ``exact`` -- the longest
        alias contained in it, e.g. "客户信息导出" -> customers). ``None`` if none or ambiguous."""
        key = header_key(sheet)
        if not key:
            return None
        best: list[tuple[int, str]] = []
        for table in self.tables.values():
            for alias in table.sheet_aliases:
                a = header_key(alias)
                if a == key:
                    return table.name
                if a and a in key:
                    best.append((len(a), table.name))
        if not best or exact:
            return None
        top = max(n for n, _ in best)
        names = {t for n, t in best if n == top}
        return names.pop() if len(names) == 1 else None

    def table_for_file_name(self, file_name: str) -> str | None:
        """The table whose file-name hint appears in ``file_name`` (longest hint wins)."""
        key = header_key(Path(file_name).stem)
        hits = sorted(
            ((len(header_key(h)), t.name) for t in self.tables.values() for h in t.file_hints if header_key(h) in key),
            reverse=True,
        )
        if not hits or (len(hits) > 1 and hits[0][0] == hits[1][0] and hits[0][1] != hits[1][1]):
            return None
        return hits[0][1]


@dataclass
class HeaderMatch:
    """Where a sheet's header row is and which column holds which field."""

    table: str
    row_index: int  # 0-based index into the sheet's rows (spreadsheet row = row_index + 1)
    columns: dict[str, int]  # field name -> 0-based column index
    headers: dict[str, str]  # field name -> header text as written
    unknown: list[str]  # non-empty header cells that match no field (ignored)
    missing_required: list[str]  # required fields with no column
    units: dict[str, str] = field(default_factory=dict)  # field name -> its header's bracketed unit (header key form)
    # Rows under the header row that belong to the header (an English name or a unit under each
    # column, engine/readers.py _header_rows_below): the data start after them.
    rows_below: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing_required


def match_header_row(cells: Sequence[Any], table: TableSpec, row_index: int) -> HeaderMatch:
    columns: dict[str, int] = {}
    headers: dict[str, str] = {}
    unknown: list[str] = []
    for i, cell in enumerate(cells):
        if not isinstance(cell, str) or not cell.strip():
            continue
        name = table.field_for_header(cell)
        if name is None:
            unknown.append(cell.strip())
            continue
        if name in columns:
            # Two columns for one field (付款状态 and 订单状态): the one whose header comes earlier in the
            # field's aliases is read (columns.yaml lists the specific names first); the other is not.
            if _alias_rank(table, name, cell) < _alias_rank(table, name, headers[name]):
                unknown.append(headers[name])
                columns[name] = i
                headers[name] = cell.strip()
            else:
                unknown.append(cell.strip())
            continue
        columns[name] = i
        headers[name] = cell.strip()
    missing = [f for f in table.required if f not in columns]
    units = {name: _unit(unit_text(text)) for name, text in headers.items()
             if _unit(header_key(text)) and header_key(text) not in table.alias_index}
    return HeaderMatch(table.name, row_index, columns, headers, unknown, missing, units)


def _alias_rank(table: TableSpec, field_name: str, header: str) -> int:
    """Position of ``header`` among the field's aliases (as compared); after them if it matched otherwise."""
    key = header_key(header)
    keys = [header_key(a) for a in table.fields[field_name].aliases]
    return keys.index(key) if key in keys else len(keys)


def find_header(rows: Sequence[Sequence[Any]], table: TableSpec, scan: int = HEADER_SCAN_ROWS) -> HeaderMatch | None:
    """The header row for ``table`` among the first ``scan`` rows: the first row with the most matching
    columns among rows that have every required column. If no row has all required columns, the row
    with the most matches (so the caller can say what is missing); ``None`` if nothing matches at all.
    """
    best_ok: HeaderMatch | None = None
    best_any: HeaderMatch | None = None
    for i, cells in enumerate(rows[:scan]):
        m = match_header_row(cells, table, i)
        if not m.columns:
            continue
        if m.ok and (best_ok is None or len(m.columns) > len(best_ok.columns)):
            best_ok = m
        if best_any is None or len(m.columns) > len(best_any.columns):
            best_any = m
    return best_ok or best_any


# -- loading ----------------------------------------------------------------------------------------


def _problem(loc: Location, where: str, message: str, code: str = "bad-columns-file", fix: str | None = None) -> Problem:
    """A problem at ``loc`` (file:line:col); ``where`` is the YAML path, e.g. tables.customers.fields.name."""
    return Problem(code=code, message=f"{where}: {message}", location=loc, fix=fix)


def _at(container: Any, key: Any, fallback: Location) -> Location:
    """Where ``container[key]`` is written (the key's own line if it has no value)."""
    if isinstance(container, YMap):
        return container.value_loc(key)  # the mapping's own line when the key is absent
    if isinstance(container, YList):
        return container.item_loc(key)
    return fallback


def _key_at(container: Any, key: Any, fallback: Location) -> Location:
    """Where the key ``key`` itself is written."""
    return container.key_loc(key) if isinstance(container, YMap) else fallback


def _str_list(value: Any, loc: Location, where: str, problems: list[Problem]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(_problem(loc, where, "expected a list, e.g. [客户编号, customer id]"))
        return ()
    out = []
    for i, item in enumerate(value):
        if item is None or isinstance(item, (dict, list)):
            problems.append(_problem(_at(value, i, loc), where, f"{item!r} is not a text; put it in quotes"))
            continue
        if isinstance(item, bool):  # YAML reads unquoted yes/no/true/false as booleans
            item = "true" if item else "false"
        out.append(str(item))
    return tuple(out)


def load_columns(path: Path | str, display: str | None = None) -> ColumnsSpec:
    """Read and check ``columns.yaml``. Raises ``PolicyError`` listing every problem found, each
    with the file, line and column of the setting. ``display``: the file's name in problems and
    warnings (a run names policy files relative to the policies folder); else the path as given."""
    path_s = display or str(path)
    file_loc = Location(file=path_s)
    if not Path(path).is_file():
        raise PolicyError(_problem(Location(file=str(path)), str(path), "找不到这个文件 / file not found", code="missing-file",
                                   fix="把随本工具提供的 policies/columns.yaml 复制到策略文件夹 / copy the policies/columns.yaml "
                                       "that ships with the tool into the policies folder"))
    data = load_yaml(Path(path), display_name=path_s)
    if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
        where = _at(data, "tables", file_loc) if isinstance(data, dict) else getattr(data, "loc", file_loc)  # a list has no "tables" key
        raise PolicyError(_problem(where, "top level",
                                   "文件里应有 tables: 一节，每张表一项 / expected a mapping with a 'tables' section",
                                   fix="照随本工具提供的 policies/columns.yaml 的样子写 / write it like the policies/columns.yaml "
                                       "that ships with the tool"))

    problems: list[Problem] = []
    blanks = _str_list(data.get("blank_values", list(DEFAULT_BLANKS)), _at(data, "blank_values", file_loc),
                       "blank_values", problems)
    bool_values = data.get("bool_values") or {}
    bools_loc = _at(data, "bool_values", file_loc)
    # YAML turns the keys `true:`/`false:` into booleans; accept both spellings.
    true_key = True if True in bool_values else "true"
    false_key = False if False in bool_values else "false"
    trues = _str_list(bool_values.get(true_key, list(DEFAULT_TRUE)), _at(bool_values, true_key, bools_loc),
                      "bool_values.true", problems)
    falses = _str_list(bool_values.get(false_key, list(DEFAULT_FALSE)), _at(bool_values, false_key, bools_loc),
                       "bool_values.false", problems)
    markers = _str_list(data.get("summary_markers", []), _at(data, "summary_markers", file_loc), "summary_markers",
                        problems)
    time_zone = str(data.get("time_zone", "Asia/Shanghai"))
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(_problem(_at(data, "time_zone", file_loc), "time_zone", f"unknown time zone {time_zone!r}",
                                 fix="write an IANA zone name such as Asia/Shanghai"))
        time_zone = "Asia/Shanghai"

    raw_tables = data["tables"]
    tables: dict[str, TableSpec] = {}
    for name, cls in TABLE_CLASSES.items():
        raw = raw_tables.get(name)
        if not isinstance(raw, dict):
            problems.append(_problem(_at(raw_tables, name, file_loc), f"tables.{name}",
                                     "missing; every table needs a section",
                                     fix=f"add a 'tables.{name}' section (see docs/inputs.md)"))
            continue
        table = _load_table(name, cls, raw, _at(raw_tables, name, file_loc), problems)
        if table is not None:
            tables[name] = table
    for name in raw_tables:
        if name not in TABLE_CLASSES:
            problems.append(_problem(_key_at(raw_tables, name, file_loc), f"tables.{name}", f"unknown table; expected one of "
                                     f"{', '.join(TABLE_CLASSES)}", code="unknown-table"))
    if problems:
        raise PolicyError(problems)
    return ColumnsSpec(tables, blanks, trues, falses, markers, path_s, time_zone)


def _bool_field_values(raw: Any, loc: Location, where: str, problems: list[Problem]) -> dict[str, str]:
    """A yes/no column's own spellings (``values: {true: [已退订], false: [未退订]}``), read before the
    file-wide ``bool_values``: a word like 退订 means yes in an opt-out column and nothing elsewhere."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not set(raw) <= {True, False, "true", "false"}:
        problems.append(_problem(loc, f"{where}.values", "a yes/no column's values are 'true: [...]' and 'false: [...]'"))
        return {}
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key, spellings in raw.items():
        meaning = "true" if key in (True, "true") else "false"
        for s in _str_list(spellings, _at(raw, key, loc), f"{where}.values.{meaning}", problems):
            other = seen.setdefault(value_key(s), meaning)
            if other != meaning:
                problems.append(_problem(loc, f"{where}.values", f"{s!r} is listed under both true and false",
                                         code="duplicate-alias"))
            out[s] = meaning
    return out


def _load_table(name: str, cls: type, raw: dict, table_loc: Location, problems: list[Problem]) -> TableSpec | None:
    model_fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    id_field = raw.get("id_field")
    if id_field not in model_fields:
        problems.append(_problem(_at(raw, "id_field", table_loc), f"tables.{name}.id_field", f"{id_field!r} is not a field of {name}"))
        return None
    raw_fields = raw.get("fields")
    if not isinstance(raw_fields, dict):
        problems.append(_problem(_at(raw, "fields", table_loc), f"tables.{name}.fields", "expected a mapping of field name -> settings"))
        return None
    fields: dict[str, FieldSpec] = {}
    alias_index: dict[str, str] = {}
    fields_loc = _at(raw, "fields", table_loc)
    for fname, fraw in raw_fields.items():
        where = f"tables.{name}.fields.{fname}"
        key_loc = _key_at(raw_fields, fname, fields_loc)
        field_loc = _at(raw_fields, fname, fields_loc)
        if fname not in model_fields:
            problems.append(_problem(key_loc, where, f"{name} has no field {fname!r}; known fields: "
                                     f"{', '.join(model_fields)}", code="unknown-field"))
            continue
        if not isinstance(fraw, dict):
            problems.append(_problem(field_loc, where, "expected type/required/aliases settings"))
            continue
        ftype = fraw.get("type")
        if ftype not in TYPES:
            problems.append(_problem(_at(fraw, "type", field_loc), where, f"type {ftype!r} is not one of {', '.join(TYPES)}"))
            continue
        required = bool(fraw.get("required", False))
        # A field the fact cannot do without must be required (only the id of interactions/orders may be
        # left out: the reader then uses "file!sheet!row").
        has_default = (model_fields[fname].default is not dataclasses.MISSING
                       or model_fields[fname].default_factory is not dataclasses.MISSING)
        if not required and not has_default and not (fname == id_field and name != "customers"):
            problems.append(_problem(_at(fraw, "required", key_loc), where, "must be 'required: true' (every row needs it)"))
        aliases_loc = _at(fraw, "aliases", key_loc)
        aliases = _str_list(fraw.get("aliases"), aliases_loc, f"{where}.aliases", problems)
        if not aliases:
            problems.append(_problem(aliases_loc, where, "needs at least one alias (a header text)"))
        for alias in aliases:
            key = header_key(alias)
            other = alias_index.get(key)
            if other is not None and other != fname:
                problems.append(_problem(aliases_loc, f"{where}.aliases", f"header {alias!r} is also an alias of "
                                         f"{other}; a header can mean only one field", code="duplicate-alias"))
                continue
            alias_index[key] = fname
        values: dict[str, str] = {}
        raw_values = fraw.get("values")
        if ftype == "bool":
            values = _bool_field_values(raw_values, _at(fraw, "values", key_loc), where, problems)
        if ftype == "enum":
            if raw_values is not None and not isinstance(raw_values, dict):
                problems.append(_problem(_at(fraw, "values", key_loc), f"{where}.values", "expected canonical value -> [other spellings]"))
                raw_values = {}
            seen: dict[str, str] = {}  # value_key -> canonical, to catch one spelling with two meanings
            for canonical, spellings in (raw_values or {}).items():
                values_loc = _at(raw_values, canonical, _at(fraw, "values", key_loc))
                canonical = str(canonical)
                for s in (canonical, *_str_list(spellings, values_loc, f"{where}.values.{canonical}", problems)):
                    other = seen.setdefault(value_key(s), canonical)
                    if other != canonical:
                        problems.append(_problem(values_loc, f"{where}.values", f"{s!r} is listed under both "
                                                 f"{other} and {canonical}", code="duplicate-alias"))
                    values[s] = canonical
        lo, hi = fraw.get("min"), fraw.get("max")
        for label, bound in (("min", lo), ("max", hi)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
                problems.append(_problem(_at(fraw, label, key_loc), f"{where}.{label}", f"{bound!r} is not a number"))
        unreadable = fraw.get("if_unreadable")
        if unreadable is not None and (ftype != "bool" or not isinstance(unreadable, bool)):
            problems.append(_problem(_at(fraw, "if_unreadable", key_loc), f"{where}.if_unreadable",
                                     "only a yes/no (bool) column takes if_unreadable, and it must be true or false"))
            unreadable = None
        fields[fname] = FieldSpec(fname, ftype, required, aliases, values, bool(fraw.get("strict", False)),
                                  lo if isinstance(lo, (int, float)) else None,
                                  hi if isinstance(hi, (int, float)) else None, unreadable)
    for fname, f in model_fields.items():
        if fname not in fields and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if fname == id_field and name != "customers":
                continue
            problems.append(_problem(fields_loc, f"tables.{name}.fields", f"field {fname!r} is missing; every row needs it"))
    sheet_aliases = _str_list(raw.get("sheet_aliases"), _at(raw, "sheet_aliases", table_loc),
                              f"tables.{name}.sheet_aliases", problems)
    file_hints = _str_list(raw.get("file_hints"), _at(raw, "file_hints", table_loc), f"tables.{name}.file_hints", problems)
    return TableSpec(name, sheet_aliases, file_hints, id_field, fields, alias_index)
