"""One batch run: read the inbox, derive features, evaluate the stages, write the run folder.

The run folder is built in a temporary folder and renamed into place at the end (engine.outbox), so
a failed run leaves the outbox as it was. Same inputs, policies, templates and as-of date give the
same run id and byte-identical files.
"""
from __future__ import annotations

import gc
import hashlib
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from time import perf_counter
from typing import Any, Callable, Iterable, Mapping

from engine.actions import ActionBuilder
from engine.audit import refresh_outputs, summarize_firings, write_audit, write_report
from engine.backends import get_backend
from engine.calendar import load_calendars
from engine.decisions import Firing, Message, Task, task_output
from engine.errors import EngineError, Location, PolicyError, Problem
from engine.evaluate import Evaluator
from engine.expr import types as expr_types
from engine.guards import (GUARD_LABELS, GUARD_REPORT_NAME, StillOpen, guard_evaluation, guard_report, late_date_only_run,
                           load_guard_policy, resolve_ledger_path, send_from, unreachable_message, write_guard_report)
from engine.ledger import Ledger, one_run_at_a_time
from engine.features import derive_features, group_by_customer
from engine.former_rules import check_former_rules
from engine.memory import gc_paused
from engine.model import Dataset
from engine.outbox import RunFolder, build_manifest, check_writable, file_entry, make_run_id, sha256_file, tidy_after_killed_runs, write_json
from engine.parallel import SecondEvaluator, SecondWriter, facts_start, helpers
from engine.outputs import (DECISIONS_NAME, customer_table, task_contacts, write_customers, write_decisions, write_messages,
                            write_recalls, write_rejects, write_tasks)
from engine.policy.loader import PolicySet
from engine.policy.model import STAGES, AddScore, MessageSpec, SetTag, TaskSpec
from engine.readers import load_columns, read_inbox
from engine.render import make_environment
from engine.unread_columns import unread_column_warnings
from engine.validate import calendar_ahead_warnings, load_checked_policies
from engine.customer_columns import CUSTOMER_COLUMNS, TAG_LABELS
from engine.stages import CustomerFacts, StageSetup, build_stage_modules, stage_feature_catalog
from engine.xlsx_out import write_workbooks

# customers.xlsx column kind of a tag, by the value type the policy loader gave it.
_TAG_COLUMN_KINDS = {expr_types.NUMBER: "number", expr_types.BOOL: "yesno"}


def customer_columns(policyset: PolicySet) -> list[tuple[str, str, str]]:
    """The columns of customers.xlsx (key, header, kind): CUSTOMER_COLUMNS, then every other tag and
    score the policies set (in policy order) before the task and message counts, so that a tag a policy
    author adds shows there without anything else to change. The kind is the one the loader found for
    the tag (one tag holds one kind of value, ``tag-mixed-kinds``): a score or a tag set to numbers
    (in YAML or a decision table) is a number cell; "yesno", a tag set to true/false, is written
    是/否 (``customer_table``); any other tag is text."""
    known = {key for key, _, _ in CUSTOMER_COLUMNS}
    extra: dict[str, tuple[str, str, str]] = {}
    for rs in policyset.all_rulesets():
        for rule in rs.rules:
            for out in rule.outputs:
                if type(out) not in (SetTag, AddScore) or out.name in known or out.name in extra:
                    continue
                kind = _TAG_COLUMN_KINDS.get(policyset.schema.get(out.name), "text")
                extra[out.name] = (out.name, TAG_LABELS.get(out.name, out.name), kind)
    return [*CUSTOMER_COLUMNS[:-2], *extra.values(), *CUSTOMER_COLUMNS[-2:]]


@dataclass
class RunOptions:
    policies: Path
    inbox: Path
    outbox: Path
    as_of: date
    templates: Path | None = None
    as_of_time: datetime | None = None  # default: the end of the as-of day
    ledger: Path | None = None  # the contact ledger; default from guards.yaml (inside the outbox)
    cross_check: bool = False  # evaluate with both backends and fail if they disagree
    engine: str = "python"
    force: bool = False


@dataclass
class RunResult:
    run_id: str
    folder: Path
    already_done: bool = False
    counts: dict[str, Any] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    # The run's facts and decisions, freed with the result rather than as run_batch returns: a
    # command that ends right after (engine.cli.console_main) need not free them one by one.
    retained: Any = field(default=None, repr=False, compare=False)


def default_templates(policies: Path) -> Path:
    """Templates live beside the policy folder (``templates/`` next to ``policies/``)."""
    return policies.resolve().parent / "templates"


def template_files(templates: Path) -> list[Path]:
    """The files of a templates folder that a run reads and records (run id, manifest): not its
    documentation (README.md), which changes no output."""
    if not templates.is_dir():
        return []
    return sorted(p for p in templates.rglob("*") if p.is_file() and not p.name.startswith("~$") and p.suffix.lower() != ".md")


@dataclass
class Evaluation:
    """Everything decided for a dataset: per-customer rows, tasks, messages and the decision log."""

    customer_rows: list[dict[str, Any]]
    tasks: list[Task]
    messages: list[Message]
    firings: list[Firing]
    modules: dict[str, Any] = field(default_factory=dict)  # stage modules, to write their own files
    # Said, not fatal: a year without holiday data met by a calendar with on_uncovered_year: warn.
    warnings: list[Problem] = field(default_factory=list)


def end_of_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59))


def evaluate_dataset(policyset: PolicySet, dataset: Dataset, as_of: date, templates: Path, engine: str = "python",
                     progress: Callable[[int, int], None] | None = None, as_of_time: datetime | None = None,
                     release_facts: bool = False) -> Evaluation:
    batch = BatchEvaluator(policyset, as_of, templates, engine, as_of_time, release_facts=release_facts)
    orders_by_customer = group_by_customer(dataset.orders)
    interactions_by_customer = group_by_customer(dataset.interactions)
    if release_facts:
        # A batch run needs each customer's facts only while that customer is evaluated: dropping
        # the flat lists lets them be freed customer by customer (about 1 GiB at 1M interactions).
        dataset.interactions = []
        dataset.orders = []
    batch.add(dataset.customers, interactions_by_customer, orders_by_customer, progress)
    return batch.evaluation


class BatchEvaluator:
    """``evaluate_dataset`` in steps, for customers whose facts arrive in parts (the evaluating helper,
    engine/parallel.py): set up once, then ``add`` customers in order, as often as needed.
    ``evaluation`` holds what was decided so far; a caller may take items out of its lists meanwhile.

    ``release_facts``: a batch run's rows keep only the features its outputs show, and facts are
    dropped once their customer is evaluated."""

    def __init__(self, policyset: PolicySet, as_of: date, templates: Path, engine: str = "python",
                 as_of_time: datetime | None = None, release_facts: bool = False):
        calendars = load_calendars(policyset.root / "calendar.yaml", display="calendar.yaml")
        org = policyset.organization
        if org.task_calendar not in calendars:
            raise PolicyError(Problem(code="unknown-calendar",
                                      message=f"task_calendar '{org.task_calendar}' 在 calendar.yaml 中没有定义 / "
                                              f"task_calendar '{org.task_calendar}' is not defined in calendar.yaml",
                                      location=Location(file="organization.yaml"), fix=f"已有的日历 / calendars: {', '.join(calendars)}"))
        self.policyset = policyset
        self.as_of = as_of
        self.builder = ActionBuilder(org, calendars[org.task_calendar], make_environment(templates), as_of)
        self.evaluator = Evaluator(policyset.rulesets, get_backend(engine))
        modules = build_stage_modules(StageSetup(policyset, calendars, self.builder, as_of, as_of_time or end_of_day(as_of)))
        self.tag_outputs = {
            rule.rule_id: [{"set": {o.name: o.value}} if type(o) is SetTag else {"score": {o.name: o.points}} for o in rule.outputs]
            for rs in policyset.all_rulesets() for rule in rs.rules
            if all(type(o) in (SetTag, AddScore) for o in rule.outputs)
        }
        self.kept_names = list(dict.fromkeys([key for key, _, _ in CUSTOMER_COLUMNS] + self.evaluator.tag_names
                                              + self.evaluator.score_names + list(stage_feature_catalog())
                                              + ["last_staff_contact_time"]))  # the 仍待处理 page (still_open_work)
        self.release_facts = release_facts
        self.calendars = calendars
        self.evaluation = Evaluation([], [], [], [], modules)

    def add(self, customers: list, interactions_by_customer: dict[str, list], orders_by_customer: dict[str, list],
            progress: Callable[[int, int], None] | None = None) -> None:
        """Evaluate ``customers`` (in order) with their facts, grouped by customer id (each group is
        taken out of its dict as its customer is evaluated)."""
        policyset, as_of, builder, evaluator = self.policyset, self.as_of, self.builder, self.evaluator
        tag_outputs, kept_names, release_facts = self.tag_outputs, self.kept_names, self.release_facts
        modules = self.evaluation.modules
        tasks, messages = self.evaluation.tasks, self.evaluation.messages
        firings, rows = self.evaluation.firings, self.evaluation.customer_rows
        total = len(customers)
        for n, customer in enumerate(customers):
            cid = customer.customer_id
            interactions, orders = interactions_by_customer.pop(cid, []), orders_by_customer.pop(cid, [])
            features = derive_features(customer, orders, interactions, as_of, policyset.features)
            facts = CustomerFacts(customer, interactions, orders, features)
            evaluator.prepare(features)
            task_count = message_count = 0
            for stage_index, stage in enumerate(STAGES):
                context = None  # templates see the features as they stand at this stage
                module = modules.get(stage)
                if module is not None:
                    out = module.process(facts)
                    tasks.extend(out.tasks)
                    messages.extend(out.messages)
                    firings.extend(out.firings)
                    task_count += len(out.tasks)
                    message_count += len(out.messages)
                for rs, rule, inputs, note in evaluator.fire(stage_index, features):
                    shared = tag_outputs.get(rule.rule_id)
                    if shared is not None:
                        # Rules that only set tags or scores log the same outputs for every customer:
                        # one shared, never-modified list instead of a million equal ones.
                        firings.append(Firing(cid, rs.stage, rs.policy_id, rule.rule_id, rule.source, inputs, shared, note=note))
                        continue
                    firing = Firing(cid, rs.stage, rs.policy_id, rule.rule_id, rule.source, inputs, note=note)
                    for out in rule.outputs:
                        if type(out) is SetTag:
                            firing.outputs.append({"set": {out.name: out.value}})
                        elif type(out) is AddScore:
                            firing.outputs.append({"score": {out.name: out.points}})
                        elif type(out) is TaskSpec:
                            context = context or builder.context(customer, features)
                            task = builder.task(out, rule, rs, customer, features, context)
                            tasks.append(task)
                            task_count += 1
                            firing.outputs.append({"task": task_output(task)})
                        elif type(out) is MessageSpec:
                            channel, address = builder.pick_channel(out, customer)
                            if channel is None:
                                # Nowhere to send it: a message without a channel, which the no-contact
                                # guard (engine/guards.py) holds back, lists and marks like any other. The
                                # firing says so already (an evaluation without guards shows it too).
                                firing.suppressed_by = "no-contact"
                                msg = unreachable_message(builder.org, out, rule, rs, customer,
                                                          builder.key(out, rule, customer, features))
                                messages.append(msg)
                                firing.outputs.append({"message": {"channel": None, "template": out.template,
                                                                   "category": out.category, "key": msg.key}})
                                continue
                            context = context or builder.context(customer, features)
                            msg = builder.message(out, rule, rs, customer, features, channel, address, context)
                            messages.append(msg)
                            message_count += 1
                            detail = {"channel": channel, "template": out.template, "category": out.category, "key": msg.key}
                            if msg.send_on is not None:  # the rule's send_on day (e.g. the birthday)
                                detail["send_on"] = msg.send_on
                            firing.outputs.append({"message": detail})
                    firings.append(firing)
            if release_facts:  # a batch run keeps only what its outputs show (~4 KiB less per customer)
                row = dict(zip(kept_names, map(features.get, kept_names)))
            else:
                row = features  # tools (explain, diff, policy tests) may look at any feature
            row["task_count"] = task_count
            row["message_count"] = message_count
            rows.append(row)
            if progress and (n + 1) % 5000 == 0:
                progress(n + 1, total)
        self.evaluation.warnings = merge_warnings(cal.warnings for cal in self.calendars.values())


def merge_warnings(lists: Iterable[list[Problem]]) -> list[Problem]:
    """The warnings of several lists, each once, in a stable order."""
    return sorted({str(w): w for ws in lists for w in ws}.values(), key=str)


def run_batch(options: RunOptions, progress: Callable[[str], None] | None = None) -> RunResult:
    try:
        with ExitStack() as cleanup:
            return _run_batch(options, progress, cleanup)
    finally:
        gc.unfreeze()  # hand what the run kept out of the cyclic collector back to it (long-lived callers)


def _run_batch(options: RunOptions, progress: Callable[[str], None] | None, cleanup: ExitStack) -> RunResult:
    started = perf_counter()
    report = progress or (lambda _msg: None)

    def say(message: str) -> None:  # progress lines carry the elapsed time, so long runs show where they are
        report(f"[{perf_counter() - started:6.1f}s] {message}")

    policies = options.policies.resolve()
    templates = (options.templates or default_templates(policies)).resolve()
    policyset = load_checked_policies(policies, templates, "durable" if options.cross_check else options.engine)
    guard_policy = load_guard_policy(policyset)
    if options.as_of_time is None:  # console only: the run folder never depends on the clock
        late = late_date_only_run(guard_policy, options.as_of, datetime.now(guard_policy.tz))
        if late:
            report(late)
    columns_path = policies / "columns.yaml"
    columns = load_columns(columns_path, display="columns.yaml")  # named as the other policy files
    # "2027 has no holiday data yet", said weeks before a deadline reaches it and stops a run.
    ahead = calendar_ahead_warnings(policyset.root, options.as_of, policyset)

    def evaluate_part(part: Dataset, progress: Callable[[int, int], None] | None = None) -> Evaluation:
        return evaluate_dataset(policyset, part, options.as_of, templates, options.engine, progress=progress,
                                as_of_time=options.as_of_time, release_facts=True)

    def start_evaluating() -> BatchEvaluator:  # in the evaluating helper, if there is one
        return BatchEvaluator(policyset, options.as_of, templates, options.engine, options.as_of_time, release_facts=True)

    # Forked now, before the facts exist, so that they share none of them (engine/parallel.py).
    evaluator, writer = (None, None) if options.cross_check else cleanup.enter_context(
        helpers(start_evaluating, write_listed_files, options.inbox))
    check_writable(options.outbox)
    for line in tidy_after_killed_runs(options.outbox):  # before "already done?" is asked: it may put a run folder back
        say(line)
    say(f"读取 {options.inbox} …")
    input_warnings: list[Problem] = []  # unknown columns, ignored sheets: said, not fatal
    with gc_paused(freeze=True):  # the facts live for the whole run: later collections need not rescan them
        dataset = read_inbox(options.inbox, columns, warnings=input_warnings)
    # An optional column the export leaves out is empty for everyone: said when the policies read it.
    input_warnings.extend(unread_column_warnings(policyset, templates, dataset.sheets, columns))
    say(f"客户 {len(dataset.customers)}，互动记录 {len(dataset.interactions)}，订单 {len(dataset.orders)}，被拒绝的行 {len(dataset.rejects)}")

    input_files = [Path(p) for p in dataset.input_files]
    used_templates = template_files(templates)
    digest = hashlib.sha256()
    digest.update((options.as_of_time or end_of_day(options.as_of)).isoformat().encode())  # the instant looked at
    digest.update(options.engine.encode())
    inbox_root = options.inbox.resolve()
    for root, paths in ((inbox_root, input_files), (policies, [*policyset.files, columns_path]), (templates, used_templates)):
        for path in paths:
            # Names count too: a renamed policy file is cited under its new name in the decision log.
            digest.update(_relative_name(path, root).encode())
            digest.update(sha256_file(path).encode())
    as_of_time = options.as_of_time or end_of_day(options.as_of)
    run_id = make_run_id(options.as_of, digest.hexdigest())
    target = options.outbox / run_id
    ledger_path = resolve_ledger_path(guard_policy, options.outbox, options.ledger)
    if target.exists() and not options.force:
        warnings = []
        with Ledger(ledger_path) as ledger:
            if not ledger.has_run(run_id):  # the run folder landed but the ledger commit did not
                warnings.append(Problem(code="run-not-in-ledger", severity="warning", location=Location(file=str(ledger_path)),
                                        message=f"运行 {run_id} 有结果文件夹，但不在联系台账里：它的任务和消息可能会再发一次 / "
                                                f"run {run_id} has a folder but is not in the contact ledger; its items may be issued again",
                                        fix="加 --force 再运行一次，把它记入台账 / run again with --force to record it"))
            elif withdrawn := ledger.withdrawn(run_id):  # taken back: nothing of it counts as issued
                when, why = withdrawn
                warnings.append(Problem(code="run-withdrawn", severity="warning", location=Location(file=str(ledger_path)),
                                        message=f"运行 {run_id} 已于 {when:%Y-%m-%d %H:%M} 撤回（{why}）：它的任务和消息作废 / "
                                                f"run {run_id} was withdrawn; its tasks and messages do not stand",
                                        fix="修正导出或策略后再运行（会是新的一批）；要原样重新发出这一批，加 --force / "
                                            "correct the exports or policies and run again; --force issues this batch again"))
        return RunResult(run_id, target, already_done=True, warnings=[*ahead, *warnings])

    # A rule renamed without formerly: would issue this period's items again: the run stops before it
    # evaluates or writes anything, until formerly: or retired_rules: says what became of the old id.
    if stop := check_former_rules(policyset, ledger_path, options.as_of, _ledger_root(ledger_path, options.outbox), run_id):
        raise PolicyError(stop)
    fact_counts = {"interactions": len(dataset.interactions), "orders": len(dataset.orders)}
    # Evaluating builds millions of objects without reference cycles: the cyclic collector would only
    # rescan them (at 100,000 customers four full passes, and one more owed right after, ~8 s).
    # Frozen at the end, later collections (guards, writers) skip them too.
    with gc_paused(freeze=True):
        if evaluator is not None:
            evaluation = _evaluate_in_two(evaluate_part, evaluator, dataset, say)
        else:
            evaluation = evaluate_dataset(
                policyset, dataset, options.as_of, templates, options.engine,
                progress=lambda done, total: say(f"已评估 {done}/{total} 位客户"),
                as_of_time=options.as_of_time, release_facts=not options.cross_check,
            )
    say(f"评估完成：拟派任务 {len(evaluation.tasks)}，拟发消息 {len(evaluation.messages)}（发送保护检查前）")
    if options.cross_check:
        _cross_check(evaluation, policyset, dataset, options, templates, say)
    warnings = [*policyset.warnings, *input_warnings, *ahead, *evaluation.warnings]  # printed, and kept in the manifest
    # From the guards' check against the ledger to the commit of this run's rows, no other run on the
    # same ledger may be in between (it waits here, then sees this run's rows); let go when the run ends.
    cleanup.enter_context(one_run_at_a_time(ledger_path, say))
    if target.exists() and not options.force:
        # The same batch, started a moment earlier, finished while this run waited: it is done.
        return RunResult(run_id, target, already_done=True, warnings=[*ahead])
    ledger = Ledger(ledger_path)
    recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-engine-ledger")
    cleanup.callback(recorder.shutdown)
    staged: Future | None = None
    try:
        with RunFolder(options.outbox, run_id, overwrite=options.force) as folder:
            # The stage modules' files (sla.xlsx) do not depend on the guards: the writer helper, if
            # there is one, writes them while the guards are checked here.
            stage_files = {name: book for module in evaluation.modules.values() for name, book in module.workbooks().items()}
            if writer is not None:
                writer.begin(folder.path, stage_files)
            else:  # written now: their rows need not be held until the other files are written
                write_workbooks(folder.path, stage_files)
            del stage_files
            # The guards build 100,000s of objects without reference cycles, kept to the end of the run, and
            # the writers below many short-lived ones: the cyclic collector would only rescan them (~1.5 s
            # at 100,000 customers). Reference counting frees the short-lived ones as usual.
            with gc_paused(freeze=True):
                customers_by_id = {c.customer_id: c for c in dataset.customers}
                guards = guard_evaluation(guard_policy, ledger, customers_by_id, evaluation,
                                          send_from(options.as_of, options.as_of_time), run_id, policyset.organization)
                # 上次派发 and 第几次 of the task sheets: read before this run's rows are staged.
                history = ledger.task_history({(t.rule_id, t.customer_id): None for t in evaluation.tasks}, as_of_time, run_id,
                                              formerly={t.rule_id: t.formerly for t in evaluation.tasks if t.formerly})
                # The 仍待处理 page: the earlier task each still-open one is (one query, as the history).
                open_work = still_open_work(guards.still_open, ledger, options.as_of, run_id,
                                            staff_contacts(evaluation.customer_rows, guards.still_open))
            say("发送保护已检查，写入结果文件 …")
            # The ledger rows are written in a transaction committed only once the run folder is in
            # place: a crash before leaves nothing issued, and a ledger error stops the run before its
            # folder lands. With the helpers, on a thread while the files are written (SQLite lets go
            # of the GIL); in one process, after them (its page cache would add to the memory peak).
            if writer is not None:
                staged = recorder.submit(ledger.stage, run_id, as_of_time, evaluation.tasks, evaluation.messages, guards.recalled)
            with gc_paused():
                counts = _write_run_folder(folder, options, policies, templates, policyset, columns_path, dataset, fact_counts,
                                           evaluation, guards, input_files, used_templates, run_id, as_of_time, ledger_path,
                                           writer, warnings, customers_by_id, history, open_work)
            if staged is not None:
                staged.result()
            else:
                ledger.stage(run_id, as_of_time, evaluation.tasks, evaluation.messages, guards.recalled)
        ledger.commit()
        say("结果文件已写入，联系台账已更新")
    except BaseException:
        if staged is not None:
            futures_wait([staged])  # the thread may still be writing rows: roll back once it is done
        ledger.discard()
        raise
    finally:
        ledger.close()
    return RunResult(run_id, target, counts=counts, warnings=warnings,
                     retained=(dataset, evaluation, guards))


def _relative_name(path: Path, root: Path) -> str:
    path = path.resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def write_listed_files(folder: Path, listed: dict[str, list]) -> None:
    """customers.xlsx and tasks/: the files made of ``listed`` "rows" (``customer_table``), "tasks"
    and their customers' "contacts" (``task_contacts`` items) and ledger "history"
    (``Ledger.task_history`` items), the "open_tasks" and their "origins" (``still_open_work``) alone
    (written by the writer helper when there is one)."""
    write_customers(folder, listed["rows"], listed["columns"])
    write_tasks(folder, listed["tasks"], dict(listed["contacts"]), dict(listed["history"]),
                listed["open_tasks"], dict(listed["origins"]))


def staff_contacts(rows: list[dict[str, Any]], still_open: list[StillOpen]) -> dict[str, datetime]:
    """customer id → the latest staff contact (feature ``last_staff_contact_time``: an interaction of
    guards.yaml's still_open.contact_types), for the customers with still-open tasks that had one."""
    wanted = {o.task.customer_id for o in still_open}
    return {cid: row["last_staff_contact_time"] for row in rows
            if (cid := row.get("customer_id")) in wanted and row.get("last_staff_contact_time") is not None}


# SLA reminders and escalations are about a ticket, not a contact: a call does not resolve it. They leave
# the 仍待处理 page when the ticket is resolved (their own clock stops asking for them).
NOT_CLOSED_BY_CONTACT = frozenset({"sla"})


def still_open_work(still_open: list[StillOpen], ledger: Ledger, as_of: date, run_id: str,
                    contacts: Mapping[str, datetime] = {}) -> tuple[list[Task], list[tuple[str, tuple]]]:
    """The tasks of the 仍待处理 pages and their origins as ``write_tasks`` takes them: (task key,
    (due, as-of date, run id, assignee of the earlier task, the guard's label)) pairs. A task whose
    customer had a staff contact (``contacts``, from ``staff_contacts``) at or after the earlier task
    was issued is done, and left out (not for the stages of ``NOT_CLOSED_BY_CONTACT``)."""
    if not still_open:
        return [], []
    # The earlier row may be under a former id of the task's rule (formerly:): looked up under that id.
    found = ledger.task_origins([(o.origin_rule or o.task.rule_id, o.task.customer_id, o.origin_key) for o in still_open],
                                as_of, run_id)
    tasks, origins = [], []
    for o in still_open:
        day, earlier_run, due, assignee, issued_at = found.get((o.origin_rule or o.task.rule_id, o.task.customer_id, o.origin_key),
                                                               (None,) * 5)
        contact = contacts.get(o.task.customer_id)
        if (contact is not None and issued_at is not None and contact >= issued_at
                and o.task.stage not in NOT_CLOSED_BY_CONTACT):
            continue  # done: staff contacted the customer since the earlier task was issued
        tasks.append(o.task)
        origins.append((o.task.key, (due, day, earlier_run, assignee, GUARD_LABELS.get(o.guard, o.guard))))
    return tasks, origins


# The second process gets this share of the customers: less than half, because this process packs
# its facts before evaluating and unpacks its results after (measured at 100,000 customers).
SECOND_PROCESS_SHARE = 0.47


def _evaluate_in_two(evaluate_part: Callable[..., Evaluation], helper: SecondEvaluator, dataset: Dataset,
                     say: Callable[[str], None]) -> Evaluation:
    """Evaluate the first customers here and the last ones in the second process; the result is the
    one evaluating every customer here would give (the second process's part is appended in order)."""
    customers = dataset.customers
    mine = len(customers) - round(len(customers) * SECOND_PROCESS_SHARE)
    # read_inbox sorts customers, interactions and orders by customer id: each part is one slice.
    cut_i, cut_o = facts_start(dataset.interactions, customers, mine), facts_start(dataset.orders, customers, mine)
    helper.send(customers[mine:], dataset.interactions[cut_i:], dataset.orders[cut_o:])
    # Only ``part`` holds this process's facts: evaluating frees each customer's once done.
    part = Dataset(customers[:mine], dataset.interactions[:cut_i], dataset.orders[:cut_o])
    dataset.interactions, dataset.orders = [], []
    say(f"分两个进程评估：本进程 {mine} 位客户，另一进程 {len(customers) - mine} 位")
    evaluation = evaluate_part(part, progress=lambda done, total: say(f"已评估 {done}/{total} 位客户（本进程）"))
    theirs, (states, their_warnings) = helper.receive()
    evaluation.customer_rows += theirs["rows"]
    evaluation.tasks += theirs["tasks"]
    evaluation.messages += theirs["messages"]
    evaluation.firings += theirs["firings"]
    by_id = {c.customer_id: c for c in customers[mine:]}
    for stage, module in evaluation.modules.items():
        module.absorb(states[stage], by_id)
    evaluation.warnings = merge_warnings([evaluation.warnings, their_warnings])
    say(f"已评估 {len(customers)}/{len(customers)} 位客户（两个进程）")
    return evaluation


def _cross_check(evaluation: Evaluation, policyset: PolicySet, dataset: Dataset, options: RunOptions, templates: Path,
                 say: Callable[[str], None]) -> None:
    """Evaluate again with the other backend; any difference stops the run before anything is written."""
    from engine.backends.durable_backend import diff_evaluations

    other_name = "durable" if options.engine == "python" else "python"
    say(f"交叉核对：用 {other_name} 引擎再评估一遍 …")
    other = evaluate_dataset(policyset, dataset, options.as_of, templates, other_name, as_of_time=options.as_of_time)
    differences = diff_evaluations(evaluation, other, options.engine, other_name)
    if differences:
        raise EngineError(Problem(code="cross-check-failed", location=Location(file=str(options.policies)),
                                  message=f"{options.engine} 和 {other_name} 两个引擎的结果不一致 / "
                                          f"the {options.engine} and {other_name} engines disagree:\n" + "\n".join(differences),
                                  fix="把这次运行的输入和策略报告给维护人员；在此之前用默认引擎的结果 / "
                                      "report this with the run's inputs and policies; use the default engine's results meanwhile"))
    say(f"交叉核对通过：{options.engine} 与 {other_name} 的决策完全一致")


def _ledger_root(ledger_path: Path, outbox: Path) -> str:
    """The ledger's path for the manifest: relative to the outbox when it lives there (the default)."""
    ledger_path, outbox = ledger_path.resolve(), outbox.resolve()
    return ledger_path.relative_to(outbox).as_posix() if ledger_path.is_relative_to(outbox) else str(ledger_path)


def _write_run_folder(folder, options, policies, templates, policyset, columns_path, dataset, fact_counts, evaluation, guards,
                      input_files, used_templates, run_id, as_of_time, ledger_path, writer: SecondWriter | None,
                      warnings: list[Problem], customers_by_id: dict[str, Any],
                      history: dict[tuple[str, str], tuple[Any, int]],
                      open_work: tuple[list[Task], list[tuple[str, tuple]]]) -> dict[str, Any]:
    """Every file of the run folder but the stage modules' (sla.xlsx, written earlier); returns the
    counts that go into the manifest."""
    out = folder.path
    # Files made of plain lists: the writer helper, if there is one, writes them while this process
    # writes the others (at 100,000 customers: guards.xlsx 1 s, customers.xlsx 4 s and tasks 3 s there;
    # decision-log summary 1 s, decisions.jsonl 1.3 s, messages 0.7 s, audit.xlsx 0.6 s and report.html
    # 0.4 s here, CPU). sla.xlsx (2 s) was written there already.
    columns = customer_columns(policyset)
    open_tasks, origins = open_work
    listed = {"rows": customer_table(evaluation.customer_rows, columns), "columns": columns, "tasks": evaluation.tasks,
              "contacts": list(task_contacts([*evaluation.tasks, *open_tasks], customers_by_id).items()),
              "history": list(history.items()), "open_tasks": open_tasks, "origins": origins}
    if writer is not None:
        writer.write_workbooks({GUARD_REPORT_NAME: guard_report(guards)})
        writer.start(listed)
    else:
        write_guard_report(out, guards)
        write_listed_files(out, listed)
    counts = {
        "customers": len(dataset.customers),
        "interactions": fact_counts["interactions"],
        "orders": fact_counts["orders"],
        "rejects": len(dataset.rejects),
        "decisions": len(evaluation.firings),
        "tasks": len(evaluation.tasks),
        "tasks_by_assignee": dict(sorted(Counter(t.assignee for t in evaluation.tasks).items())),
        # Held back as issued before, listed on the owners' 仍待处理 pages (engine.outputs.OPEN_SHEET_NAME).
        "open_tasks": len(open_tasks),
        "open_tasks_by_assignee": dict(sorted(Counter(t.assignee for t in open_tasks).items())),
        "messages": len(evaluation.messages),
        "messages_by_channel": dict(sorted(Counter(m.channel for m in evaluation.messages).items())),
        **{stage: module.manifest_counts() for stage, module in evaluation.modules.items()},
        "guards": guards.counts(),
    }
    manifest = build_manifest(run_id=run_id, as_of=options.as_of, counts=counts,
                              extra={"engine": options.engine, "as_of_time": as_of_time.isoformat(),
                                     # A date alone: the facts end with the day, its messages go from its send_time.
                                     "as_of_is_date": options.as_of_time is None,
                                     "roots": {"inbox": str(options.inbox.resolve()), "policies": str(policies),
                                               "templates": str(templates), "ledger": _ledger_root(ledger_path, options.outbox)}})
    # Each file is named relative to its own folder, so the manifest reads the same wherever
    # the folders live; "roots" says where they were for this run.
    manifest["inputs"] = [file_entry(p, options.inbox.resolve()) for p in input_files]
    manifest["policies"] = [file_entry(p, policies) for p in sorted({*policyset.files, columns_path})]
    manifest["templates"] = [file_entry(p, templates) for p in used_templates]
    # What the run said besides its results (unknown columns, a year without holiday data, ...): an
    # auditor reads them here and in report.html, long after the console is gone.
    manifest["warnings"] = [w.to_dict() for w in warnings]
    # What audit.xlsx and report.html show about the decision log, gathered once for both (at 100k
    # customers ~1 s for 1.1M firings; each file on its own would take as long again).
    firing_summary = summarize_firings(evaluation.firings, policyset)
    write_messages(out, evaluation.messages, policyset.organization.channels)
    write_recalls(out, guards.recalled)
    write_report(out, manifest, evaluation, summary=firing_summary)
    write_rejects(out, dataset.rejects)
    write_decisions(out, evaluation.firings)
    with ThreadPoolExecutor(max_workers=1) as hasher:
        # sha256 lets go of the GIL: the decision log (330 MB at 100,000 customers) is hashed for the
        # manifest while audit.xlsx is written.
        decisions_entry = hasher.submit(file_entry, out / DECISIONS_NAME, out)
        write_audit(out, manifest, evaluation, policyset, summary=firing_summary, recalls=guards.recalled)
        if writer is not None:
            writer.finish()
        refresh_outputs(manifest, folder.path, known={DECISIONS_NAME: decisions_entry.result()})  # every output file's hash
    write_json(folder.path / "manifest.json", manifest)
    return counts
