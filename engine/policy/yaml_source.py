"""YAML loading that remembers where every key and value came from.

Policy errors must name ``file:line:col``. PyYAML's plain ``safe_load`` forgets positions, so this
loader builds ``YMap``/``YList`` containers that keep the position of each key and value. Scalars stay
plain Python values; their positions live in the container that holds them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Location, PolicyError, Problem, decode_utf8


class YMap(dict):
    """A mapping with the source position of itself, its keys and its values."""

    loc: Location
    key_locs: dict[Any, Location]
    value_locs: dict[Any, Location]

    def key_loc(self, key: Any) -> Location:
        return self.key_locs.get(key, self.loc)

    def value_loc(self, key: Any) -> Location:
        return self.value_locs.get(key, self.loc)


class YList(list):
    """A sequence with the source position of itself and each item."""

    loc: Location
    item_locs: list[Location]

    def item_loc(self, index: int) -> Location:
        return self.item_locs[index] if index < len(self.item_locs) else self.loc


def _node_location(file: str, node: yaml.Node) -> Location:
    mark = node.start_mark
    line, col = mark.line + 1, mark.column + 1
    # A block scalar (``when: >`` or ``when: |``) starts its text on the next line.
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        text_line = mark.buffer.split("\n")[mark.line + 1] if mark.buffer else ""
        indent = len(text_line) - len(text_line.lstrip(" "))
        line, col = line + 1, indent + 1
    elif isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        col += 1  # point at the first character inside the quotes
    loc = Location(file=file, line=line, col=col)
    if isinstance(node, yaml.ScalarNode) and node.end_mark.line > mark.line and mark.buffer:
        positions = _value_positions(node)
        if positions is not None:
            # Where each character of a multi-line value is in the file (engine.expr.lexer.locate reads
            # it): YAML folds the lines of a plain, folded or quoted value into one, so a position
            # counted in the value is not the file's. Not a field: it compares and prints as before.
            object.__setattr__(loc, "positions", positions)
    return loc


# Raw characters that may stand between two characters of the value: folding, indentation, quotes.
_BETWEEN = frozenset(" \t\r\n'\"\\")


def _value_positions(node: yaml.ScalarNode) -> dict[tuple[int, int], tuple[int, int]] | None:
    """(line, col) in the value's own text → (line, col) in the file, for each character of a
    multi-line string scalar; None if the raw text cannot be lined up with the value (escapes)."""
    value = node.value
    buffer = node.start_mark.buffer
    r, end = node.start_mark.index, node.end_mark.index
    line, line_start = node.start_mark.line + 1, r - node.start_mark.column  # the file line at r, where it begins
    if node.style in ("|", ">"):  # the text starts after the header line (| or >, with its indicators)
        r = buffer.find("\n", r, end) + 1 or end
        line, line_start = line + 1, r
    positions: dict[tuple[int, int], tuple[int, int]] = {}
    vline, vcol = 1, 1
    for ch in value:
        while r < end and buffer[r] != ch:
            if buffer[r] not in _BETWEEN:
                return None
            if buffer[r] == "\n":
                line, line_start = line + 1, r + 1
            r += 1
        if r >= end:
            return None
        positions[(vline, vcol)] = (line, r - line_start + 1)
        if ch == "\n":
            line, line_start = line + 1, r + 1
            vline, vcol = vline + 1, 1
        else:
            vcol += 1
        r += 1
    return positions


class _PositionLoader(yaml.SafeLoader):
    source_name = "<policy>"

    def construct_yaml_map(self, node):  # type: ignore[override]
        data = YMap()
        yield data
        data.loc = _node_location(self.source_name, node)
        data.key_locs = {}
        data.value_locs = {}
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in data:
                raise PolicyError(
                    Problem(
                        code="duplicate-key",
                        message=f"同一块里 '{key}' 写了两次，只有最后一个会生效 / "
                                f"the key '{key}' appears twice in the same block; YAML would silently keep only the last one",
                        location=_node_location(self.source_name, key_node),
                        fix="删掉其中一个，或给它改名 / delete or rename one of them",
                    )
                )
            data[key] = self.construct_object(value_node, deep=True)
            data.key_locs[key] = _node_location(self.source_name, key_node)
            data.value_locs[key] = _node_location(self.source_name, value_node)

    def construct_yaml_seq(self, node):  # type: ignore[override]
        data = YList()
        yield data
        data.loc = _node_location(self.source_name, node)
        data.item_locs = [_node_location(self.source_name, child) for child in node.value]
        data.extend(self.construct_object(child, deep=True) for child in node.value)


_PositionLoader.add_constructor("tag:yaml.org,2002:map", _PositionLoader.construct_yaml_map)
_PositionLoader.add_constructor("tag:yaml.org,2002:seq", _PositionLoader.construct_yaml_seq)


def load_yaml(path: Path, display_name: str | None = None) -> Any:
    """Load one YAML file; syntax errors become a PolicyError naming file, line and column."""
    name = display_name or str(path)
    text = decode_utf8(path.read_bytes(), name)
    return load_yaml_text(text, name)


def load_yaml_text(text: str, name: str) -> Any:
    loader = _PositionLoader(text)
    loader.source_name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return loader.construct_document(node)
        except ValueError as exc:  # e.g. an impossible date such as 2027-02-30, which PyYAML reports without a place
            raise PolicyError(_value_problem(name, node, exc)) from None
    except yaml.MarkedYAMLError as exc:
        raise PolicyError(_syntax_problem(text, name, exc)) from None
    finally:
        loader.dispose()


def _syntax_problem(text: str, name: str, exc: yaml.MarkedYAMLError) -> Problem:
    """Where a YAML syntax error really is, and the likely fix.

    PyYAML notices some mistakes far from where they are: an unclosed quote only at the end of the
    file ("found unexpected end of stream"). Its ``context_mark`` then points at where the unfinished
    thing (quoted text, key, ``[``/``{`` list) starts, which is the line to fix. "while parsing a
    block mapping" contexts are left out: they point at the start of the enclosing block, and the
    problem mark (the badly indented line) is the better place there.
    """
    problem, context = exc.problem_mark, exc.context_mark
    context_text = exc.context or ""
    use_context = context is not None and context_text.startswith(("while scanning a", "while parsing a flow"))
    mark = context if use_context or problem is None else problem
    loc = Location(file=name, line=mark.line + 1, col=mark.column + 1) if mark else Location(file=name)
    message = f"YAML 格式错误（{_syntax_zh(exc.problem or '')}） / YAML syntax error: {exc.problem}"
    if use_context:
        if problem is not None and problem.line != context.line:
            message += f" (at line {problem.line + 1}, column {problem.column + 1})"
        message += f" {context_text} that starts here"
    lines = text.splitlines()
    near = sorted({m.line for m in (problem, context) if m is not None} | ({problem.line - 1} if problem else set()))
    hint = ("检查缩进（同一级的行要对齐，下级比上级多缩进两个空格），以及每个 '名称: 值' 的冒号后面有一个空格 / "
            "check the indentation and that every 'key: value' has a space after the colon")
    full_width = next((_full_width_key(lines[n]) for n in near if 0 <= n < len(lines) and _full_width_key(lines[n])), None)
    if full_width is not None:
        hint = (f"'{full_width[0]}' 用了全角冒号 '：'，要用半角冒号加一个空格: {full_width[1]} / "
                f"'{full_width[0]}' uses the full-width colon '：'; YAML needs a half-width colon and a space: {full_width[1]}")
    elif any("\t" in line[: len(line) - len(line.lstrip(" \t"))] for line in lines if line.strip()):
        hint = "缩进不能用 Tab 键，要用空格 / YAML does not allow tab characters for indentation; use spaces"
    elif use_context and context_text == "while scanning a quoted scalar":
        quote = lines[context.line][context.column] if context.line < len(lines) and context.column < len(lines[context.line]) else '"'
        hint = (f"这里以 {quote} 开头的文字，末尾要有配对的 {quote} / "
                f"the text that starts with {quote} here needs a closing {quote} at its end")
    return Problem(code="yaml-syntax", message=message, location=loc, fix=hint)


# PyYAML's problem texts, most common first, in plain Chinese for the first half of the message.
_SYNTAX_ZH = (
    ("mapping values are not allowed here", "这里不能出现 '名称: 值'，多半是缩进多了，或值里有冒号却没加引号"),
    ("expected <block end>", "缩进没有对齐"),
    ("could not find expected ':'", "缺少冒号，或缩进没有对齐"),
    ("found character '\\t'", "有 Tab 字符"),
    ("found unexpected end of stream", "引号或括号没有配对"),
    ("found unexpected ':'", "多了一个冒号"),
    ("expected ',' or ']'", "[...] 列表没有写完整"),
    ("expected ',' or '}'", "{...} 没有写完整"),
    ("found undefined alias", "值不能以 * 开头，要加引号"),
    ("found character '@'", "值不能以 @ 或 ` 开头，要加引号"),
    ("found character '`'", "值不能以 @ 或 ` 开头，要加引号"),
)


def _syntax_zh(problem: str) -> str:
    return next((zh for en, zh in _SYNTAX_ZH if problem.startswith(en)), "文件的格式不对")


def _full_width_key(line: str) -> tuple[str, str] | None:
    """``(what was written, what to write)`` if the line is a ``key：value`` written with the full-width
    colon (outside quotes and comments), e.g. ``priority：低`` → ``priority: 低``."""
    code = re.sub(r'"[^"]*"|\'[^\']*\'', lambda m: " " * len(m.group()), line)
    code = re.sub(r"(^|\s)#.*", "", code)
    at = code.find("：")
    if at < 0 or ":" in code[:at]:
        return None  # no full-width colon, or it is inside a value ("title: 注意：…")
    key, value = line[:at].strip(), line[at + 1:].split(" #")[0].strip()
    if key.startswith("- "):
        key = key[2:].strip()
    if not key:
        return None
    return line.strip(), f"{key}: {value}" if value else f"{key}:"


def _value_problem(name: str, root: yaml.Node, exc: ValueError) -> Problem:
    """Find the scalar PyYAML could not turn into a value (a date that does not exist) and say where."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            stack.extend(v for pair in reversed(node.value) for v in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif node.tag == "tag:yaml.org,2002:timestamp":
            try:
                yaml.SafeLoader("").construct_yaml_timestamp(node)
            except ValueError:
                return Problem(code="bad-value", message=f"'{node.value}' 不是真实的日期 / '{node.value}' is not a real date ({exc})",
                               location=_node_location(name, node), fix="改正日期（YYYY-MM-DD） / correct the date (YYYY-MM-DD)")
    return Problem(code="bad-value", message=f"有一个值读不出 / a value cannot be read: {exc}", location=Location(file=name))
