"""``crm-engine validate``: check a policy folder without running a batch.

Loading already checks YAML syntax, fields, expressions and types, decision tables, roles and
channels. On top of that this module checks what only shows up when pieces are combined: every
message template a rule may use exists for every channel it may go out on.
"""
from __future__ import annotations

from pathlib import Path

from engine.calendar import load_calendars
from engine.errors import EngineError, Location, Problem
from engine.policy.loader import PolicySet, load_policies
from engine.policy.model import MessageSpec
from engine.readers import load_columns


def check_templates(policyset: PolicySet, templates: Path) -> list[Problem]:
    problems: list[Problem] = []
    org = policyset.organization
    for rs in policyset.all_rulesets():
        for rule in rs.rules:
            for out in rule.outputs:
                if not isinstance(out, MessageSpec):
                    continue
                channels = list(org.channels) if out.channel == "preferred" else [out.channel]
                for channel in channels:
                    path = templates / "messages" / channel / f"{out.template}.txt"
                    if not path.is_file():
                        problems.append(Problem(
                            code="unknown-template",
                            message=f"rule {rule.rule_id} sends template '{out.template}' on {channel}, but {path.relative_to(templates.parent) if templates.parent in path.parents else path} does not exist",
                            location=rule.location,
                            fix=f"create templates/messages/{channel}/{out.template}.txt or correct the template name",
                        ))
    return problems


def validate_policies(policies: Path, templates: Path | None = None) -> list[Problem]:
    problems: list[Problem] = []
    policies = policies.resolve()
    templates = (templates or policies.parent / "templates").resolve()
    try:
        policyset = load_policies(policies)
    except EngineError as exc:
        return list(exc.problems)
    problems.extend(policyset.warnings)
    for loader, name in ((load_columns, "columns.yaml"), (load_calendars, "calendar.yaml")):
        path = policies / name
        if not path.is_file():
            problems.append(Problem(code="file-missing", message=f"{name} is missing from the policy folder",
                                    location=Location(file=name), fix=f"copy {name} from the shipped policies/ folder"))
            continue
        try:
            loader(path)
        except EngineError as exc:
            problems.extend(exc.problems)
    problems.extend(check_templates(policyset, templates))
    return problems
