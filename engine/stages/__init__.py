"""Stage modules: the parts of a stage that are more than rules over customer features.

Each stage (classification → sla → care → churn) runs, per customer, first its module (if it has
one) and then its rule policies. A module may add features that its own and later stages' rules can
read (e.g. the SLA module adds ``sla_breached_open``; churn rules can test it), and may itself issue
tasks, messages and decisions (e.g. SLA escalations). The module also gives its own run files
(e.g. ``sla.xlsx``) at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from engine.decisions import Firing, Message, Task
from engine.errors import Location
from engine.model import Customer, Interaction, Order
from engine.xlsx_out import Workbook


@dataclass
class CustomerFacts:
    customer: Customer
    interactions: list[Interaction]
    orders: list[Order]
    features: dict[str, Any]  # read and extended by the stages


@dataclass
class StageOutput:
    tasks: list[Task] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)


class StageModule(Protocol):
    stage: str

    def process(self, facts: CustomerFacts) -> StageOutput:
        """Work out this stage's own decisions for one customer; may add features."""

    def manifest_counts(self) -> dict[str, Any]:
        """Counts for the run manifest (no I/O: known before any file is written)."""

    def workbooks(self) -> dict[str, Workbook]:
        """This stage's run files by file name, their rows as lists (plain values: the writer
        helper may write them)."""

    def export_state(self) -> Any:
        """What this module gathered over its customers, picklable (for the second evaluating process)."""

    def absorb(self, state: Any, customers: dict[str, Customer]) -> None:
        """Add ``export_state()`` of the same module in the second process, which evaluated the
        customers after this one's: afterwards this module is as if it had evaluated them all."""


@dataclass(frozen=True)
class ColumnRead:
    """An export column a stage module reads itself, whatever the rules say (the SLA clocks, churn
    reasons): ``table``/``field`` of columns.yaml, the ``setting`` that makes the module read it and
    where that setting is written (the file itself when the setting is left to its default)."""

    table: str
    field: str
    setting: str
    where: Location


def settings_documents(policyset: Any, stage: str) -> list[tuple[Any, Any]]:
    """(path, document) of the stage's settings files: its ``kind:`` documents that are not rule
    policies (those have rules:, table: or policies:). Only one is allowed; the loaders say so."""
    return [(p, d) for p, d in policyset.documents.get(stage, []) if not any(k in d for k in ("rules", "table", "policies"))]


@dataclass
class StageSetup:
    """What a stage module gets when a run starts."""

    policyset: Any  # engine.policy.loader.PolicySet
    calendars: dict[str, Any]
    builder: Any  # engine.actions.ActionBuilder
    as_of: date
    as_of_time: datetime  # the instant the run looks at (naive, local time of the calendars)


def _stage_modules():
    # Imported here, not at the top: each module imports this one for the shared types.
    from engine.stages import care, churn, sla

    return (sla, care, churn)


def stage_feature_catalog() -> dict[str, tuple[str, str]]:
    """Features that stage modules add, so policy conditions using them type-check at load time."""
    catalog: dict[str, tuple[str, str]] = {}
    for module in _stage_modules():
        catalog.update(module.FEATURES)
    return catalog


def whole_days(value: Any) -> int | None:
    """A number of days as an int: a whole number 0 or more (30, 30.0); None for anything else
    (text such as '90天', 是/否, 30.5, a negative number, null)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if value >= 0 else None


def stage_feature_stages() -> dict[str, str]:
    """Feature name → the stage whose module computes it. Before that stage runs the feature is
    empty (null), so a rule of an earlier stage that reads it never sees a value."""
    return {name: module.__name__.rsplit(".", 1)[1] for module in _stage_modules() for name in module.FEATURES}


def stage_feature_columns() -> dict[str, tuple[tuple[str, str], ...]]:
    """Feature a stage module adds → the optional export columns (table, field) it is worked out from
    (``FEATURE_COLUMNS`` of the module): without one, the feature is empty or false for everyone."""
    return {name: columns for module in _stage_modules() for name, columns in getattr(module, "FEATURE_COLUMNS", {}).items()}


def stage_column_reads(policyset: Any) -> list[tuple[str, ColumnRead]]:
    """(stage, read) of each export column the configured stage modules read themselves."""
    return [(module.__name__.rsplit(".", 1)[1], read) for module in _stage_modules()
            for read in (module.column_reads(policyset) if hasattr(module, "column_reads") else ())]


def stage_tag_requirements() -> dict[str, tuple[str, str]]:
    """Tags that stage modules read, set by the policies, which must hold one kind of value:
    tag name → (kind, the stage that reads it). Kinds: ``days`` (a whole number of days, 0 or more).
    The loader reports a rule or table cell that sets such a tag to anything else."""
    needs: dict[str, tuple[str, str]] = {}
    for module in _stage_modules():
        for name, kind in getattr(module, "READS_TAGS", {}).items():
            needs[name] = (kind, module.__name__.rsplit(".", 1)[1])
    return needs


def build_stage_modules(setup: StageSetup) -> dict[str, StageModule]:
    """The stage modules this policy set needs (a stage with no settings file has none)."""
    modules: dict[str, StageModule] = {}
    for module in _stage_modules():
        built = module.build(setup)
        if built is not None:
            modules[module.__name__.rsplit(".", 1)[1]] = built
    return modules
