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


# How check_keys' ``where`` reads in the Chinese half of a message. A ``where`` not listed here
# (a key name such as quiet_hours) is used as it is.
_WHERE_ZH = {
    "a rule": "规则", "a task": "任务（task:）", "a message": "消息（message:）",
    "a features file": "特征设置文件 features.yaml", "the organization file": "组织设置文件 organization.yaml",
    "a churn signal": "流失信号", "the churn settings file": "流失设置文件 churn.yaml", "a churn level": "流失等级",
    "a festival": "节日", "the care settings file": "关怀设置文件 care.yaml", "the SLA settings file": "SLA 设置文件 sla.yaml",
    "an SLA target": "SLA 目标", "clock": "clock:", "the guards file": "发送限制文件 guards.yaml",
    "a test case": "测试用例", "a policy test file": "策略测试文件", "expect": "expect:", "customer": "客户（customer:）",
}


def where_zh(where: str) -> str:
    """``where`` (as check_keys gets it) for the Chinese half of a message."""
    if where in _WHERE_ZH:
        return _WHERE_ZH[where]
    if where.startswith("policy in "):
        return f"{where[len('policy in '):]} 中的策略"
    if where.startswith("channel "):
        return f"渠道 {where[len('channel '):]}"
    if where.startswith("frequency cap #"):  # guards.yaml frequency_caps, numbered from 1
        return f"发送次数上限 #{where[len('frequency cap #'):]} "
    return where


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
        problems.error("not-a-mapping", f"{where_zh(where)}要写成若干行 '名称: 值' / {where} must be a block of 'key: value' lines",
                       loc, fix="每行写 '名称: 值'（冒号是半角的，后面有一个空格），下级内容要比上一级多缩进两个空格 / "
                                "write 'key: value' lines (half-width colon and a space), indented under their block")
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
                f"{where_zh(where)}里没有 '{key}' 这个字段" + (f"，是不是 '{guess}'？" if guess else "") + " / "
                f"unknown field '{key}' in {where}" + (f"; did you mean '{guess}'?" if guess else ""),
                block.key_loc(key),
                fix=f"改成 '{guess}' / rename it to '{guess}'" if guess
                else f"可以用的字段 / allowed fields: {', '.join(allowed)}",
            )
    for key in required:
        if key not in block:
            problems.error("missing-field", f"{where_zh(where)}缺少 '{key}' 字段 / {where} needs a '{key}' field", block.loc,
                           fix=f"加上一行 {key}: ...（和同一级的其他字段对齐） / add a '{key}:' line, indented like the other fields")
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
