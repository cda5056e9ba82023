"""Small helpers to check the shape of YAML policy blocks, with did-you-mean for unknown fields."""
from __future__ import annotations

import difflib
from typing import Any, Iterable

from engine.errors import ERROR, Location, Problem
from engine.policy.yaml_source import YList, YMap


class Problems(list):
    """Problems collected while loading, so one pass reports as many as possible."""

    def error(self, code: str, message: str, location: Location, fix: str | None = None) -> None:
        self.append(Problem(code=code, message=message, location=location, severity=ERROR, fix=fix))

    def warning(self, code: str, message: str, location: Location, fix: str | None = None) -> None:
        self.append(Problem(code=code, message=message, location=location, severity="warning", fix=fix))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self if p.severity == ERROR]


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def check_keys(
    block: Any,
    where: str,
    allowed: Iterable[str],
    required: Iterable[str],
    problems: Problems,
    fallback: Location,
    nested: dict[str, tuple[str, ...]] | None = None,
) -> bool:
    """Report unknown and missing keys of a mapping. Returns False if ``block`` is not a mapping.

    ``nested``: sub-block name → its fields (a rule's ``task:`` → title, script, ...). An unknown key
    that is one of them was most likely indented too little, out of its block: say that, not a
    did-you-mean to some similar field of the outer block."""
    if not isinstance(block, YMap):
        loc = getattr(block, "loc", fallback)
        problems.error("not-a-mapping", f"{where} must be a block of 'key: value' lines", loc)
        return False
    allowed = list(allowed)
    for key in block:
        if key not in allowed:
            parent = _parent_block(key, block, nested or {})
            if parent is not None:
                problems.error(
                    "misplaced-field",
                    f"'{key}' 是 {parent}: 下的字段，多半是缩进少了，跑到了 {parent}: 外面 / '{key}' is a field of '{parent}:';"
                    f" it probably belongs under {parent}: (check its indentation)",
                    block.key_loc(key),
                    fix=f"把 {key}: 这一行缩进到和 {parent}: 下面的其他行对齐 / indent the {key}: line like the other lines"
                        f" under {parent}:",
                )
                continue
            guess = did_you_mean(key, allowed)
            problems.error(
                "unknown-field",
                f"unknown field '{key}' in {where}" + (f"; did you mean '{guess}'?" if guess else ""),
                block.key_loc(key),
                fix=f"rename it to '{guess}'" if guess else f"allowed fields: {', '.join(allowed)}",
            )
    for key in required:
        if key not in block:
            problems.error("missing-field", f"{where} needs a '{key}' field", block.loc)
    return True


def _parent_block(key: Any, block: YMap, nested: dict[str, tuple[str, ...]]) -> str | None:
    """The sub-block an out-of-place ``key`` belongs to: one the block has first, else the first that has the field."""
    owners = [name for name, fields in nested.items() if key in fields]
    present = [name for name in owners if name in block]
    return (present or owners or [None])[0]


def condition_text(value: Any) -> str:
    """The text of a ``when:`` value: ``when: true`` is read by YAML as a yes/no, and a bare ``when:``
    as null, which must read as an empty condition (said so by the parser), never as the name None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, YList)):
        return list(value)
    return [value]
